//! Native devices syncing through the real server binary and real object stores: convergence
//! under random workloads, faults between devices and the store, crashes, idle cost, end-to-end
//! encryption and a malicious device.

use std::time::Duration;

use tidemark_cli::{Client, ClientError, ClientOptions};
use tidemark_core::sync::{SyncConfig, SyncEvent};
use tidemark_core::{Role, SpaceKey, Value};
use tidemark_tests::proxy::{FaultProxy, Faults};
use tidemark_tests::random::SplitMix64;
use tidemark_tests::server::{ExternalS3, ServerOptions, ServerProcess, free_port};

const COLLECTIONS: [&str; 3] = ["orders", "menu", "stock"];
const SYNC_LIMIT: Duration = Duration::from_secs(120);
/// Simulated days of the 20-device run (three months): each day every online device writes,
/// and one in ten of them syncs, which keeps the run within CI's two cores (debug builds)
/// while the others fold their levels many times.
const DAYS: usize = 90;
/// One online device in this many syncs on a given day.
const SYNC_ONE_IN: u64 = 10;

/// Tiny budgets so that a device's few dozen writes fold through several levels; fast
/// retries.
fn tuned(config: SyncConfig) -> SyncConfig {
    SyncConfig {
        level0_budget: 256,
        level_growth: 2,
        push_delay_millis: 0,
        poll_min_millis: 50,
        retry: tidemark_core::sync::RetryPolicy {
            base_millis: 20,
            max_millis: 500,
        },
        ..config.with_collections(COLLECTIONS)
    }
}

fn options() -> ClientOptions {
    ClientOptions {
        request_timeout: Duration::from_secs(10),
        tune: tuned,
        ..ClientOptions::default()
    }
}

/// One random transaction: sets, counter increments and deletes across the collections.
/// Returns what it set, to check later that every acknowledged write is present.
fn random_write(
    client: &mut Client,
    rng: &mut SplitMix64,
    tag: &str,
) -> Vec<(String, String, String)> {
    let mut set = Vec::new();
    let ops: Vec<(u64, u64, u64)> = (0..3)
        .map(|_| (rng.below(10), rng.below(3), rng.below(40)))
        .collect();
    client
        .write(|w| {
            for (i, (kind, coll, doc)) in ops.iter().enumerate() {
                let collection = COLLECTIONS[*coll as usize];
                let id = format!("doc-{doc}");
                match kind {
                    0 => w.delete(collection, &id)?,
                    1..=2 => w.increment(collection, &id, "count", 1)?,
                    _ => {
                        let value = format!("{tag}-{i}");
                        w.upsert(collection, &id, [("text", Value::from(value.clone()))])?;
                        set.push((collection.to_string(), id, value));
                    }
                }
            }
            Ok(())
        })
        .expect("write");
    set
}

async fn sync_all(devices: &mut [Client]) {
    for device in devices.iter_mut() {
        device.sync(SYNC_LIMIT).await.expect("sync");
    }
}

fn states(devices: &[Client]) -> Vec<Vec<u8>> {
    devices
        .iter()
        .map(|d| d.engine().replica().state().encode())
        .collect()
}

fn assert_converged(devices: &[Client]) {
    let states = states(devices);
    for (i, state) in states.iter().enumerate() {
        assert!(
            *state == states[0],
            "device {i} differs from device 0 ({} vs {} bytes)",
            state.len(),
            states[0].len()
        );
    }
}

/// Every value a device wrote and got acknowledged is there, unless a newer write replaced it.
fn assert_acknowledged_writes_present(device: &Client, writes: &[(String, String, String)]) {
    let state = device.engine().replica();
    for (collection, id, value) in writes {
        let Some(doc) = state.get_any(collection, id) else {
            panic!("{collection}/{id} is missing");
        };
        let stamp = doc.field_stamp("text");
        assert!(stamp.is_some(), "{collection}/{id} lost its text ({value})");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_devices_converge_across_offline_periods_and_many_compactions() {
    let server = ServerProcess::start(ServerOptions::default()).await;
    let mut devices = Vec::new();
    for _ in 0..20 {
        devices.push(server.device(Role::Writer, None, options()).await);
    }
    let mut rng = SplitMix64(0x5eed_1234_abcd);
    let mut written = Vec::new();
    // Device 19 goes offline for the whole run (the simulated months in which the others
    // write, sync and fold their levels many times), with writes of its own.
    let sleeper = 19;
    for day in 0..DAYS {
        for (i, device) in devices.iter_mut().enumerate() {
            if i != sleeper && rng.below(4) == 0 {
                continue; // offline today
            }
            written.extend(random_write(device, &mut rng, &format!("d{day}-{i}")));
            if i != sleeper && rng.below(SYNC_ONE_IN) == 0 {
                device.sync(SYNC_LIMIT).await.expect("sync");
            }
        }
    }
    // The others compacted many times while the sleeper was away: contents folded up to
    // the second level and beyond.
    let folded = server
        .stored_objects()
        .iter()
        .filter(|(path, _)| {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            matches!(name.as_deref(), Some("L2" | "L3" | "L4" | "L5"))
        })
        .count();
    assert!(folded > 0, "no level above L1 was written");
    // Everyone comes online; two passes bring every change to every device.
    sync_all(&mut devices).await;
    sync_all(&mut devices).await;
    assert_converged(&devices);
    for device in &devices {
        assert_eq!(device.engine().pending_writes(), 0);
    }
    assert_acknowledged_writes_present(&devices[0], &written);
}

/// A device's grant, as JSON, for requests the engine would never make.
async fn grant_json(client: &Client) -> serde_json::Value {
    let grant = client
        .api()
        .grant("default", client.device(), &["orders".to_string()])
        .await
        .unwrap();
    serde_json::from_slice(&grant).unwrap()
}

fn rejections(client: &mut Client) -> Vec<&'static str> {
    client
        .take_events()
        .into_iter()
        .filter_map(|e| match e {
            SyncEvent::Rejected { error, .. } => Some(error.code()),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_between_devices_and_store_and_a_killed_fold_lose_nothing_and_idle_rounds_cost_304s()
{
    // The proxy's port is chosen first: the server presigns URLs for it.
    let proxy_port = free_port();
    let server = ServerProcess::start(ServerOptions {
        store_origin: Some(format!("http://127.0.0.1:{proxy_port}")),
        ..ServerOptions::default()
    })
    .await;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", proxy_port))
        .await
        .unwrap();
    let proxy = FaultProxy::start_on(listener, server.addr, 42)
        .await
        .unwrap();

    let mut devices = Vec::new();
    for _ in 0..5 {
        devices.push(server.device(Role::Writer, None, options()).await);
    }
    let mut rng = SplitMix64(0xfa17);
    let mut written = Vec::new();
    proxy.set_faults(Faults {
        drop_before_forward: 0.04,
        drop_after_forward: 0.04,
        status_500: 0.03,
        status_503: 0.03,
        status_429: 0.03,
        truncate_body: 0.05,
        delay: Some((Duration::ZERO, Duration::from_millis(15))),
    });
    for round in 0..12 {
        for (i, device) in devices.iter_mut().enumerate() {
            written.extend(random_write(device, &mut rng, &format!("r{round}-{i}")));
            device
                .sync(SYNC_LIMIT)
                .await
                .expect("sync converges despite faults");
        }
    }
    let injected = proxy.stats().faults_injected;
    assert!(injected > 20, "faults were injected: {injected}");

    // A device is killed between the two writes of a fold: the higher level landed, the
    // emptied L0 did not, and the engine never heard of the first.
    let kill = ClientOptions {
        kill_after_puts: Some(1),
        ..options()
    };
    let mut victim = server.device(Role::Writer, None, kill).await;
    let mut victim_writes = Vec::new();
    victim
        .write(|w| {
            for i in 0..60 {
                let id = format!("bulk-{i}");
                let text = format!("bulk order {i} {}", "x".repeat(40));
                w.set("orders", &id, "text", Value::from(text.clone()))?;
                victim_writes.push(("orders".to_string(), id, text));
            }
            Ok(())
        })
        .unwrap();
    proxy.set_faults(Faults::default());
    let killed = victim.sync(SYNC_LIMIT).await;
    assert!(matches!(killed, Err(ClientError::Killed)), "{killed:?}");
    let mut victim = victim.restart().unwrap();
    assert_eq!(
        victim.engine().pending_writes(),
        1,
        "the write survived the kill"
    );
    victim.sync(SYNC_LIMIT).await.unwrap();
    assert_eq!(victim.engine().pending_writes(), 0);
    devices.push(victim);
    written.extend(victim_writes);

    sync_all(&mut devices).await;
    sync_all(&mut devices).await;
    assert_converged(&devices);
    assert_acknowledged_writes_present(&devices[0], &written);

    // An idle round: only conditional GETs of each other device's L0, answered 304 by the
    // embedded store (404 for collections a device never wrote: nothing to compare with).
    proxy.reset_stats();
    sync_all(&mut devices).await;
    let stats = proxy.stats();
    let pairs = devices.len() * COLLECTIONS.len();
    // At least one L0 per other device and collection (a device whose round count comes to
    // a multiple of 30 reads every level: still conditional GETs).
    assert!(
        stats.count("GET", 304) + stats.count("GET", 404)
            >= (devices.len() * (pairs - COLLECTIONS.len())) as u64,
        "{stats:?}"
    );
    assert!(
        stats.count("GET", 304) > stats.count("GET", 404),
        "{stats:?}"
    );
    assert_eq!(
        stats.requests,
        stats.count("GET", 304) + stats.count("GET", 404),
        "{stats:?}"
    );
    assert_eq!(stats.bytes_to_upstream, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_independent_s3_server_converges_too() {
    let s3 = ExternalS3::start().await;
    let server = ServerProcess::start(ServerOptions {
        external: Some(&s3),
        ..ServerOptions::default()
    })
    .await;
    let mut devices = Vec::new();
    for _ in 0..4 {
        devices.push(server.device(Role::Writer, None, options()).await);
    }
    let mut rng = SplitMix64(0x53);
    let mut written = Vec::new();
    for round in 0..10 {
        for (i, device) in devices.iter_mut().enumerate() {
            written.extend(random_write(device, &mut rng, &format!("s{round}-{i}")));
            device.sync(SYNC_LIMIT).await.unwrap();
        }
    }
    sync_all(&mut devices).await;
    sync_all(&mut devices).await;
    assert_converged(&devices);
    assert_acknowledged_writes_present(&devices[3], &written);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_to_end_encryption_leaves_no_plaintext_in_the_store() {
    let server = ServerProcess::start(ServerOptions::default()).await;
    let key = SpaceKey::from_bytes([0x5a; 32]);
    let mut a = server
        .device(Role::Writer, Some(key.clone()), options())
        .await;
    let mut b = server.device(Role::Writer, Some(key), options()).await;
    let mut outsider = server.device(Role::Writer, None, options()).await;
    let secrets = ["Margherita-with-truffle", "table-7-allergy-peanuts"];
    a.write(|w| w.set("orders", "o1", "text", Value::from(secrets[0])))
        .unwrap();
    b.write(|w| w.set("orders", "o2", "text", Value::from(secrets[1])))
        .unwrap();
    a.sync(SYNC_LIMIT).await.unwrap();
    b.sync(SYNC_LIMIT).await.unwrap();
    a.sync(SYNC_LIMIT).await.unwrap();
    assert_eq!(
        a.engine()
            .replica()
            .get("orders", "o2")
            .unwrap()
            .get("text")
            .as_deref(),
        Some(&Value::from(secrets[1]))
    );

    let objects = server.stored_objects();
    assert!(!objects.is_empty());
    for (path, bytes) in &objects {
        for secret in secrets {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{} holds plaintext {secret:?}",
                path.display()
            );
        }
    }

    // A device without the key verifies authorship but reads nothing.
    outsider.sync(SYNC_LIMIT).await.unwrap();
    assert!(outsider.engine().replica().get("orders", "o1").is_none());
    assert!(rejections(&mut outsider).contains(&"pack.key_required"));
    let reports = tidemark_cli::inspect::inspect(&outsider, Some(a.device()))
        .await
        .unwrap();
    assert!(!reports.is_empty());
    for report in reports {
        assert!(
            matches!(
                report.verdict,
                tidemark_cli::inspect::Verdict::Sealed { .. }
            ),
            "{report:?}"
        );
    }
}

/// LEB128, as the pack format's varints.
fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A pack signed by `evil` whose body is `body`, bypassing the honest sealer's checks: the
/// header of a real pack by `evil`, another body, a fresh signature.
fn forge(honest: &[u8], body: &tidemark_core::State, evil: &tidemark_core::DeviceKey) -> Vec<u8> {
    let mut at = 5;
    let (mut header_len, mut shift) = (0u64, 0);
    loop {
        let byte = honest[at];
        at += 1;
        header_len |= u64::from(byte & 0x7f) << shift;
        shift += 7;
        if byte < 0x80 {
            break;
        }
    }
    let mut out = honest[..at + header_len as usize].to_vec();
    let body = body.encode();
    varint(&mut out, body.len() as u64);
    out.extend_from_slice(&body);
    let signature = evil.sign(&[b"tidemark/pack/v1\0".as_slice(), &out].concat());
    out.extend_from_slice(&signature);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malicious_device_cannot_impersonate_replay_or_cross_spaces() {
    let server = ServerProcess::start(ServerOptions::default()).await;
    let mut a = server.device(Role::Writer, None, options()).await;
    let mut b = server.device(Role::Writer, None, options()).await;
    let mut evil = server.device(Role::Writer, None, options()).await;
    let http = reqwest::Client::new();

    a.write(|w| w.set("orders", "o1", "text", Value::from("from a")))
        .unwrap();
    evil.write(|w| w.set("orders", "e1", "text", Value::from("evil v1")))
        .unwrap();
    for device in [&mut a, &mut evil] {
        device.sync(SYNC_LIMIT).await.unwrap();
    }
    let grant = grant_json(&evil).await;
    let put = |level: usize| grant["put"]["orders"][level].as_str().unwrap().to_string();
    let get_l0 = grant["get"]["orders"][evil.device().to_string()][0]
        .as_str()
        .unwrap()
        .to_string();
    let old_pack = http
        .get(&get_l0)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    evil.write(|w| w.set("orders", "e1", "text", Value::from("evil v2")))
        .unwrap();
    evil.sync(SYNC_LIMIT).await.unwrap();
    b.sync(SYNC_LIMIT).await.unwrap();
    let before = b.engine().replica().state().encode();
    rejections(&mut b);

    // 1. A replay of its own older pack.
    let status = http
        .put(put(0))
        .body(old_pack.to_vec())
        .send()
        .await
        .unwrap();
    assert!(status.status().is_success());
    // 2. Entries stamped by device a, in a pack evil signed.
    let stolen = a
        .engine()
        .replica()
        .state()
        .authored_by(&a.device())
        .collection("orders");
    let key = tidemark_core::DeviceKey::from_seed(
        hex::decode(&evil.profile().device_seed)
            .unwrap()
            .try_into()
            .unwrap(),
    );
    let forged = forge(&old_pack, &stolen, &key);
    http.put(put(1)).body(forged).send().await.unwrap();
    // 3. A pack for another space.
    let header = tidemark_core::PackHeader {
        space: "elsewhere".into(),
        author: evil.device(),
        collection: "orders".into(),
        level: 2,
        generation: 1,
        version_vector: Default::default(),
        encrypted: false,
    };
    let own = evil
        .engine()
        .replica()
        .state()
        .authored_by(&evil.device())
        .collection("orders");
    let elsewhere = tidemark_core::Pack::seal(&header, &own, &key, None).unwrap();
    http.put(put(2)).body(elsewhere).send().await.unwrap();
    // Announce them, as an attacker would, so readers fetch at once.
    for level in 0..3 {
        evil.api()
            .announce("default", evil.device(), "orders", level, None)
            .await
            .unwrap();
    }

    b.sync(SYNC_LIMIT).await.unwrap();
    let codes = rejections(&mut b);
    assert!(codes.contains(&"sync.replayed_pack"), "{codes:?}");
    assert!(codes.contains(&"pack.foreign_entry"), "{codes:?}");
    assert!(codes.contains(&"pack.wrong_space"), "{codes:?}");
    assert_eq!(
        b.engine().replica().state().encode(),
        before,
        "state unchanged"
    );

    // The others still sync with each other.
    a.write(|w| w.set("orders", "o1", "text", Value::from("from a, later")))
        .unwrap();
    a.sync(SYNC_LIMIT).await.unwrap();
    b.sync(SYNC_LIMIT).await.unwrap();
    let text = b
        .engine()
        .replica()
        .get("orders", "o1")
        .unwrap()
        .get("text");
    assert_eq!(text.as_deref(), Some(&Value::from("from a, later")));
}
