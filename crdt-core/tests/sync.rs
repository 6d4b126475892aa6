//! The sync engine against an in-memory bucket that behaves like S3 for the requests the engine
//! makes (conditional GETs, whole-object PUTs, ETags), with injectable faults and crashes.
//! The real stores and the real server are exercised by `tests/` at the workspace root; here
//! the point is the engine's decisions, step by step and reproducibly.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use tidemark_core::sync::{
    HttpMethod, HttpOutcome, RequestId, Step, SyncConfig, SyncEngine, SyncEvent,
};
use tidemark_core::{
    DeviceCertificate, DeviceId, DeviceKey, LEVEL_COUNT, Pack, PackHeader, Revocation,
    RevocationList, Role, ServerKey, SpaceKey, State, Value,
};

const SPACE: &str = "kitchen";
const T0: u64 = 1_780_000_000_000;

/// The bucket, the server's keys, and the devices' checkpoints.
struct World {
    server: ServerKey,
    objects: BTreeMap<String, (Vec<u8>, String)>,
    etag_counter: u64,
    devices: Vec<(DeviceId, Role)>,
    revoked: Vec<Revocation>,
    /// Requests served, by (method, status).
    served: BTreeMap<(&'static str, u16), u64>,
    /// Fault injection: fail every n-th request (0 = never), cycling through fault kinds.
    fail_every: u64,
    requests: u64,
    grant_ttl: u64,
}

impl World {
    fn new() -> World {
        World {
            server: ServerKey::from_seed([9; 32]),
            objects: BTreeMap::new(),
            etag_counter: 0,
            devices: Vec::new(),
            revoked: Vec::new(),
            served: BTreeMap::new(),
            fail_every: 0,
            requests: 0,
            grant_ttl: 3_600_000,
        }
    }

    fn enroll(&mut self, seed: u8, role: Role) -> DeviceKey {
        let key = DeviceKey::from_seed([seed; 32]);
        self.devices.push((key.device_id(), role));
        key
    }

    fn url(device: &DeviceId, collection: &str, level: u8) -> String {
        format!("mem://{SPACE}/d/{device}/{collection}/L{level}?sig")
    }

    fn grant(&self, device: DeviceId, collections: &[String], now: u64) -> Vec<u8> {
        let role = self
            .devices
            .iter()
            .find(|(d, _)| *d == device)
            .map(|(_, r)| *r)
            .unwrap();
        let levels = |d: &DeviceId, c: &str| -> Vec<String> {
            (0..LEVEL_COUNT).map(|l| World::url(d, c, l)).collect()
        };
        let mut put = serde_json::Map::new();
        let mut get = serde_json::Map::new();
        for c in collections {
            if role.can_write() {
                put.insert(c.clone(), levels(&device, c).into());
            }
            let per_device: serde_json::Map<String, serde_json::Value> = self
                .devices
                .iter()
                .map(|(d, _)| (d.to_string(), levels(d, c).into()))
                .collect();
            get.insert(c.clone(), per_device.into());
        }
        let certificates: Vec<String> = self
            .devices
            .iter()
            .map(|(d, r)| {
                let cert = DeviceCertificate {
                    space: SPACE.into(),
                    device: *d,
                    user: "u".into(),
                    role: *r,
                    issued_at_millis: now - 1,
                    expires_at_millis: now + 10 * self.grant_ttl,
                };
                STANDARD.encode(cert.sign(&self.server).unwrap())
            })
            .collect();
        let revocations = RevocationList {
            space: SPACE.into(),
            issued_at_millis: now,
            revoked: self.revoked.clone(),
        };
        serde_json::json!({
            "space": SPACE,
            "device": device,
            "role": role,
            "serverTime": now,
            "expiresAt": now + self.grant_ttl,
            "levels": LEVEL_COUNT,
            "put": put,
            "get": get,
            "certificates": certificates,
            "revocations": STANDARD.encode(revocations.sign(&self.server).unwrap()),
            "serverPublicKey": self.server.public_key(),
        })
        .to_string()
        .into_bytes()
    }

    fn serve(
        &mut self,
        method: HttpMethod,
        url: &str,
        inm: Option<&str>,
        body: &[u8],
    ) -> HttpOutcome {
        self.requests += 1;
        if self.fail_every > 0 && self.requests.is_multiple_of(self.fail_every) {
            return match (self.requests / self.fail_every) % 4 {
                0 => HttpOutcome::Failed {
                    reason: "connection reset".into(),
                },
                1 => self.answer(method, 503, None, Vec::new()),
                2 if method == HttpMethod::Get => {
                    // A body cut short on the way.
                    let (bytes, etag) = match self.objects.get(url) {
                        Some(o) => o.clone(),
                        None => return self.answer(method, 404, None, Vec::new()),
                    };
                    self.answer(method, 200, Some(etag), bytes[..bytes.len() / 2].to_vec())
                }
                _ => {
                    // The PUT lands, but the answer is lost.
                    if method == HttpMethod::Put {
                        self.store(url, body);
                    }
                    HttpOutcome::Failed {
                        reason: "connection dropped after sending".into(),
                    }
                }
            };
        }
        match method {
            HttpMethod::Put => {
                let etag = self.store(url, body);
                self.answer(method, 200, Some(etag), Vec::new())
            }
            HttpMethod::Get => match self.objects.get(url).cloned() {
                None => self.answer(method, 404, None, Vec::new()),
                Some((_, etag)) if inm == Some(etag.as_str()) => {
                    self.answer(method, 304, Some(etag), Vec::new())
                }
                Some((bytes, etag)) => self.answer(method, 200, Some(etag), bytes),
            },
        }
    }

    fn store(&mut self, url: &str, body: &[u8]) -> String {
        self.etag_counter += 1;
        let etag = format!("\"{}\"", self.etag_counter);
        self.objects
            .insert(url.to_string(), (body.to_vec(), etag.clone()));
        etag
    }

    fn answer(
        &mut self,
        method: HttpMethod,
        status: u16,
        etag: Option<String>,
        body: Vec<u8>,
    ) -> HttpOutcome {
        let name = if method == HttpMethod::Get {
            "GET"
        } else {
            "PUT"
        };
        *self.served.entry((name, status)).or_default() += 1;
        HttpOutcome::Response {
            status,
            etag,
            body,
            retry_after_secs: None,
        }
    }
}

/// A device: its engine, its last persisted checkpoint, its wall clock.
struct Device {
    key: DeviceKey,
    engine: SyncEngine,
    saved: Option<Vec<u8>>,
    now: u64,
    events: Vec<SyncEvent>,
}

fn config() -> SyncConfig {
    SyncConfig {
        push_delay_millis: 0,
        ..SyncConfig::new(SPACE).with_collections(["orders"])
    }
}

impl Device {
    fn new(world: &World, key: DeviceKey, config: SyncConfig) -> Device {
        let engine = SyncEngine::new(config, key.clone(), Some(world.server.public_key()));
        Device {
            key,
            engine,
            saved: None,
            now: T0,
            events: Vec::new(),
        }
    }

    /// Runs the driver loop (one request at a time) until the engine has nothing to do now,
    /// advancing the clock to each wakeup up to `until`. `crash_after_puts` stops after that
    /// many successful PUTs, as a process kill would.
    fn run(&mut self, world: &mut World, until: u64, mut crash_after_puts: Option<usize>) -> bool {
        loop {
            while let Some(step) = self.engine.poll(self.now) {
                match step {
                    Step::Persist => self.saved = Some(self.engine.checkpoint()),
                    Step::FetchGrant { collections } => {
                        let grant = world.grant(self.key.device_id(), &collections, self.now);
                        self.engine.on_grant(self.now, &grant).unwrap();
                    }
                    Step::Announce { .. } => {}
                    Step::Http(request) => {
                        let outcome = world.serve(
                            request.method,
                            &request.url,
                            request.if_none_match.as_deref(),
                            &request.body,
                        );
                        let landed = request.method == HttpMethod::Put
                            && matches!(outcome, HttpOutcome::Response { status: 200, .. });
                        self.engine.on_response(self.now, request.id, outcome);
                        if landed && let Some(left) = &mut crash_after_puts {
                            *left -= 1;
                            if *left == 0 {
                                return false;
                            }
                        }
                    }
                }
                self.now += 1;
            }
            self.events.extend(self.engine.take_events());
            match self.engine.next_wakeup() {
                // poll() just said there is nothing to do now: a wakeup that is already due
                // would make a driver spin.
                Some(at) if at <= self.now => {
                    panic!(
                        "wakeup {at} is due but poll has nothing: {:?}",
                        self.engine.status()
                    )
                }
                Some(at) if at <= until => self.now = at,
                _ => return true,
            }
        }
    }

    /// Takes the engine's steps, serving every request except the first whose URL `hold`
    /// picks: that one is served now but its answer is returned, not handed to the engine.
    fn hold_request(
        &mut self,
        world: &mut World,
        hold: impl Fn(&str) -> bool,
    ) -> (RequestId, HttpOutcome) {
        loop {
            match self.engine.poll(self.now).expect("a step") {
                Step::Persist => self.saved = Some(self.engine.checkpoint()),
                Step::FetchGrant { collections } => {
                    let grant = world.grant(self.key.device_id(), &collections, self.now);
                    self.engine.on_grant(self.now, &grant).unwrap();
                }
                Step::Announce { .. } => {}
                Step::Http(request) => {
                    let outcome = world.serve(
                        request.method,
                        &request.url,
                        request.if_none_match.as_deref(),
                        &request.body,
                    );
                    if hold(&request.url) {
                        return (request.id, outcome);
                    }
                    self.engine.on_response(self.now, request.id, outcome);
                }
            }
        }
    }

    /// Runs until idle and one whole polling round has completed.
    fn settle(&mut self, world: &mut World) {
        self.engine.sync_now(self.now);
        let start = self.engine.status().rounds;
        let limit = self.now + 3_600_000;
        while self.now < limit {
            self.run(world, self.now + 1_000, None);
            if self.engine.status().rounds > start && self.engine.is_idle() {
                return;
            }
            self.now += 1_000;
        }
        panic!("device did not settle: {:?}", self.engine.status());
    }

    fn restart(&mut self, world: &World, config: SyncConfig) {
        self.engine = match &self.saved {
            Some(saved) => SyncEngine::restore(config, self.key.clone(), saved).unwrap(),
            None => SyncEngine::new(config, self.key.clone(), Some(world.server.public_key())),
        };
    }

    fn write(&mut self, collection: &str, id: &str, field: &str, value: impl Into<Value>) {
        let value = value.into();
        self.engine
            .write(self.now, |w| w.set(collection, id, field, value))
            .unwrap();
        self.now += 1;
    }

    fn state(&self) -> Vec<u8> {
        self.engine.replica().state().encode()
    }

    fn rejected_codes(&self) -> Vec<&'static str> {
        self.events
            .iter()
            .filter_map(|e| match e {
                SyncEvent::Rejected { error, .. } => Some(error.code()),
                _ => None,
            })
            .collect()
    }
}

fn text(device: &Device, id: &str) -> Option<String> {
    let doc = device.engine.replica().get("orders", id)?;
    doc.get("text").and_then(|v| v.as_str().map(str::to_string))
}

#[test]
fn two_devices_converge_and_an_idle_round_costs_only_conditional_gets() {
    let mut world = World::new();
    let a_key = world.enroll(1, Role::Writer);
    let b_key = world.enroll(2, Role::Writer);
    let mut a = Device::new(&world, a_key, config());
    let mut b = Device::new(&world, b_key, config());

    a.write("orders", "o1", "text", "two coffees");
    b.write("orders", "o2", "text", "one tea");
    a.settle(&mut world);
    b.settle(&mut world);
    a.settle(&mut world);
    assert_eq!(a.state(), b.state());
    assert_eq!(text(&b, "o1").as_deref(), Some("two coffees"));
    assert_eq!(a.engine.pending_writes(), 0);

    world.served.clear();
    a.settle(&mut world);
    b.settle(&mut world);
    let statuses: Vec<_> = world.served.keys().copied().collect();
    assert_eq!(statuses, [("GET", 304)], "idle rounds: {:?}", world.served);
    assert_eq!(world.served[&("GET", 304)], 2, "one L0 per other device");
}

#[test]
fn folds_move_content_up_and_a_fresh_device_reads_every_level() {
    let mut world = World::new();
    let a_key = world.enroll(1, Role::Writer);
    let c_key = world.enroll(3, Role::Writer);
    let small = SyncConfig {
        level0_budget: 512,
        level_growth: 4,
        ..config()
    };
    let mut a = Device::new(&world, a_key, small.clone());
    for i in 0..400 {
        a.write(
            "orders",
            &format!("o{i:04}"),
            "text",
            format!("order number {i}"),
        );
        if i % 7 == 0 {
            a.settle(&mut world);
        }
    }
    a.settle(&mut world);
    let occupied: Vec<u8> = (0..LEVEL_COUNT)
        .filter(|l| {
            world
                .objects
                .get(&World::url(&a.key.device_id(), "orders", *l))
                .is_some_and(|(bytes, _)| {
                    !Pack::open(bytes, &Default::default())
                        .unwrap()
                        .state
                        .is_empty()
                })
        })
        .collect();
    assert!(
        occupied.iter().any(|l| *l >= 2),
        "content folded up the levels: {occupied:?}"
    );

    let mut c = Device::new(&world, c_key, small);
    c.settle(&mut world);
    assert_eq!(c.engine.replica().documents("orders").count(), 400);
    assert_eq!(c.state(), a.state());
}

#[test]
fn a_crash_between_the_writes_of_a_fold_loses_nothing() {
    let mut world = World::new();
    let a_key = world.enroll(1, Role::Writer);
    let b_key = world.enroll(2, Role::Writer);
    let small = SyncConfig {
        level0_budget: 256,
        ..config()
    };
    let mut a = Device::new(&world, a_key, small.clone());
    let mut b = Device::new(&world, b_key, small.clone());
    for i in 0..10 {
        a.write("orders", &format!("o{i}"), "text", "x".repeat(30));
    }
    a.settle(&mut world);
    // This push folds (L1 first, then an emptied L0): crash right after the first PUT.
    for i in 10..20 {
        a.write("orders", &format!("o{i}"), "text", "y".repeat(30));
    }
    let finished = a.run(&mut world, a.now + 10, Some(1));
    assert!(!finished, "the crash happened mid-push");
    a.restart(&world, small.clone());
    a.settle(&mut world);
    b.settle(&mut world);
    assert_eq!(b.engine.replica().documents("orders").count(), 20);
    assert_eq!(a.state(), b.state());
    assert_eq!(a.engine.pending_writes(), 0);
}

#[test]
fn a_device_that_lost_its_local_store_recovers_its_levels_before_writing_them() {
    let mut world = World::new();
    let a_key = world.enroll(1, Role::Writer);
    let b_key = world.enroll(2, Role::Writer);
    let mut a = Device::new(&world, a_key.clone(), config());
    let mut b = Device::new(&world, b_key, config());
    a.write("orders", "o1", "text", "first");
    a.settle(&mut world);

    // The device loses its storage entirely and starts over with the same key.
    a.saved = None;
    a.restart(&world, config());
    a.write("orders", "o2", "text", "second");
    a.settle(&mut world);
    assert_eq!(
        text(&a, "o1").as_deref(),
        Some("first"),
        "own levels read back"
    );
    b.settle(&mut world);
    assert_eq!(
        text(&b, "o1").as_deref(),
        Some("first"),
        "nothing overwritten"
    );
    assert_eq!(text(&b, "o2").as_deref(), Some("second"));
    assert!(b.rejected_codes().is_empty(), "{:?}", b.rejected_codes());
}

#[test]
fn faults_on_every_third_request_still_converge_without_losing_writes() {
    let mut world = World::new();
    let keys: Vec<DeviceKey> = (1..=4).map(|s| world.enroll(s, Role::Writer)).collect();
    let small = SyncConfig {
        level0_budget: 1_024,
        ..config()
    };
    let mut devices: Vec<Device> = keys
        .into_iter()
        .map(|k| Device::new(&world, k, small.clone()))
        .collect();
    world.fail_every = 3;
    for round in 0..30 {
        for (i, d) in devices.iter_mut().enumerate() {
            d.write(
                "orders",
                &format!("d{i}-{round}"),
                "text",
                format!("{i}/{round}"),
            );
            d.write("orders", "shared", "text", format!("{i}/{round}"));
            d.run(&mut world, d.now + 200, None);
        }
    }
    for _ in 0..3 {
        for d in &mut devices {
            d.settle(&mut world);
        }
    }
    let first = devices[0].state();
    for d in &devices {
        assert_eq!(d.state(), first, "converged");
        assert_eq!(d.engine.replica().documents("orders").count(), 4 * 30 + 1);
        assert_eq!(d.engine.pending_writes(), 0);
    }
    let truncated = devices
        .iter()
        .flat_map(|d| d.rejected_codes())
        .filter(|c| *c == "pack.truncated" || *c == "pack.malformed")
        .count();
    assert!(truncated > 0, "truncated bodies were seen and retried");
}

#[test]
fn forged_replayed_and_misplaced_packs_are_refused_and_change_nothing() {
    let mut world = World::new();
    let a_key = world.enroll(1, Role::Writer);
    let b_key = world.enroll(2, Role::Writer);
    let evil = world.enroll(6, Role::Writer);
    let mut a = Device::new(&world, a_key.clone(), config());
    let mut b = Device::new(&world, b_key, config());
    a.write("orders", "o1", "text", "v1");
    a.settle(&mut world);
    let a_l0 = World::url(&a.key.device_id(), "orders", 0);
    let old_pack = world.objects[&a_l0].0.clone();
    a.write("orders", "o1", "text", "v2");
    a.settle(&mut world);
    b.settle(&mut world);
    let before = b.state();

    // A replayed old pack of device a.
    world.store(&a_l0, &old_pack);
    // Entries stamped by device a, in a pack signed by the malicious device.
    let evil_url = World::url(&evil.device_id(), "orders", 0);
    let stolen = a.engine.replica().state().authored_by(&a.key.device_id());
    let header = PackHeader {
        space: SPACE.into(),
        author: evil.device_id(),
        collection: "orders".into(),
        level: 0,
        generation: 1,
        version_vector: Default::default(),
        encrypted: false,
    };
    assert!(
        Pack::seal(&header, &stolen, &evil, None).is_err(),
        "honest seal refuses"
    );
    let mut forged = Pack::seal(&header, &State::new(), &evil, None).unwrap();
    // Sign a body the sealer would refuse by building it by hand: swap in a's entries is not
    // possible without a's key, so the forgery is a pack for another space instead.
    let other_space = PackHeader {
        space: "elsewhere".into(),
        ..header.clone()
    };
    let mut wrong_space_state = State::new();
    let mut evil_replica = tidemark_core::Replica::new(evil.device_id());
    wrong_space_state.merge(
        &evil_replica
            .write(T0, |w| w.set("orders", "o1", "text", Value::from("hijack")))
            .unwrap(),
    );
    let wrong_space = Pack::seal(&other_space, &wrong_space_state, &evil, None).unwrap();
    world.store(&evil_url, &wrong_space);
    // And a tampered byte in a real pack.
    forged[10] ^= 1;
    world.store(&World::url(&evil.device_id(), "orders", 1), &forged);

    b.settle(&mut world);
    assert_eq!(b.state(), before, "state unchanged");
    let codes = b.rejected_codes();
    assert!(codes.contains(&"sync.replayed_pack"), "{codes:?}");
    assert!(codes.contains(&"pack.wrong_space"), "{codes:?}");
    assert_eq!(text(&b, "o1").as_deref(), Some("v2"));

    // Refused authentic packs are remembered by ETag: the next round does not fetch them.
    world.served.clear();
    b.events.clear();
    b.settle(&mut world);
    assert!(
        !world.served.contains_key(&("GET", 200)),
        "{:?}",
        world.served
    );
}

#[test]
fn encrypted_space_device_without_the_key_verifies_but_cannot_read() {
    let mut world = World::new();
    let a_key = world.enroll(1, Role::Writer);
    let b_key = world.enroll(2, Role::Writer);
    let key = SpaceKey::from_bytes([7; 32]);
    let sealed = SyncConfig {
        space_key: Some(key.clone()),
        ..config()
    };
    let mut a = Device::new(&world, a_key, sealed.clone());
    let mut b = Device::new(&world, b_key, config());
    a.write("orders", "o1", "text", "secret recipe");
    a.settle(&mut world);
    for (bytes, _) in world.objects.values() {
        assert!(
            !bytes.windows(6).any(|w| w == b"secret"),
            "no plaintext in the bucket"
        );
        assert!(
            Pack::verify(bytes).is_ok(),
            "authorship checks without the key"
        );
    }
    b.settle(&mut world);
    assert!(b.engine.replica().get("orders", "o1").is_none());
    assert!(b.rejected_codes().contains(&"pack.key_required"));

    let c_key = world.enroll(3, Role::Writer);
    let mut c = Device::new(&world, c_key, sealed);
    c.settle(&mut world);
    assert_eq!(text(&c, "o1").as_deref(), Some("secret recipe"));
}

#[test]
fn expired_urls_fetch_a_new_grant_and_readers_cannot_write() {
    let mut world = World::new();
    let a_key = world.enroll(1, Role::Writer);
    let r_key = world.enroll(2, Role::Reader);
    world.grant_ttl = 60_000;
    let mut a = Device::new(&world, a_key, config());
    a.write("orders", "o1", "text", "hello");
    a.settle(&mut world);
    // Two hours later the grant has long expired: the engine refreshes it before syncing.
    a.now += 7_200_000;
    a.write("orders", "o1", "text", "later");
    a.settle(&mut world);
    assert_eq!(a.engine.pending_writes(), 0);

    let mut reader = Device::new(&world, r_key, config());
    reader.settle(&mut world);
    assert_eq!(text(&reader, "o1").as_deref(), Some("later"));
    let refused = reader.engine.write(reader.now, |w| {
        w.set("orders", "o1", "text", Value::from("no"))
    });
    assert_eq!(refused.unwrap_err().code(), "sync.read_only");
}

#[test]
fn checkpoints_round_trip_and_refuse_the_wrong_device_or_damage() {
    let mut world = World::new();
    let a_key = world.enroll(1, Role::Writer);
    let mut a = Device::new(&world, a_key.clone(), config());
    a.write("orders", "o1", "text", "kept");
    a.run(&mut world, a.now, None);
    let saved = a.saved.clone().expect("persisted");
    let mut restored = SyncEngine::restore(config(), a_key, &saved).unwrap();
    assert_eq!(restored.replica().state().encode(), a.state());
    assert_eq!(restored.checkpoint(), saved, "canonical");

    let other = DeviceKey::from_seed([2; 32]);
    let err = SyncEngine::restore(config(), other, &saved).unwrap_err();
    assert_eq!(err.code(), "sync.checkpoint_mismatch");
    for cut in [0, 3, saved.len() / 2, saved.len() - 1] {
        let err = SyncEngine::restore(config(), DeviceKey::from_seed([1; 32]), &saved[..cut])
            .unwrap_err();
        assert_eq!(err.code(), "sync.bad_checkpoint");
    }
}

#[test]
fn a_write_is_persisted_before_any_request_carries_it() {
    let mut world = World::new();
    let a_key = world.enroll(1, Role::Writer);
    let mut a = Device::new(&world, a_key, config());
    a.settle(&mut world);
    a.write("orders", "o1", "text", "x");
    assert_eq!(a.engine.poll(a.now), Some(Step::Persist));
    match a.engine.poll(a.now) {
        Some(Step::Http(r)) => assert_eq!(r.method, HttpMethod::Put),
        other => panic!("expected the push, got {other:?}"),
    }
}

#[test]
fn journaled_writes_survive_a_restart_from_an_older_checkpoint_and_still_reach_the_bucket() {
    let mut world = World::new();
    let a_key = world.enroll(1, Role::Writer);
    let b_key = world.enroll(2, Role::Writer);
    let mut a = Device::new(&world, a_key.clone(), config());
    let mut b = Device::new(&world, b_key, config());
    a.write("orders", "o1", "text", "checkpointed");
    a.run(&mut world, a.now, None);
    assert!(a.saved.is_some());

    // Two journaled writes after the checkpoint: neither asks for a Persist step.
    let mut journal = Vec::new();
    for text in ["first", "second"] {
        let changes = a
            .engine
            .write_journaled(a.now, |w| w.set("orders", "o2", "text", text))
            .unwrap();
        journal.push(changes.encode());
        a.now += 1;
        assert_ne!(a.engine.poll(a.now), Some(Step::Persist));
    }
    let written = a.state();

    // A crash before anything else was stored: the checkpoint plus the journal give it all back.
    let mut restored = SyncEngine::restore(config(), a_key, a.saved.as_ref().unwrap()).unwrap();
    for entry in &journal {
        let changes = State::decode(entry).unwrap();
        restored.replay_journaled(a.now, &changes);
    }
    assert_eq!(restored.replica().state().encode(), written);
    assert_eq!(
        restored.pending_writes(),
        2,
        "replayed writes are pushed again"
    );
    a.engine = restored;

    // A later write beats the replayed ones: the clock moved past their stamps.
    a.engine
        .write_journaled(a.now, |w| w.set("orders", "o2", "text", "third"))
        .unwrap();
    assert_eq!(text(&a, "o2").as_deref(), Some("third"));

    a.settle(&mut world);
    b.settle(&mut world);
    assert_eq!(text(&b, "o1").as_deref(), Some("checkpointed"));
    assert_eq!(text(&b, "o2").as_deref(), Some("third"));
    assert_eq!(a.state(), b.state());
}

#[test]
fn a_store_written_before_joining_pushes_its_writes_to_the_space_it_joins() {
    let mut world = World::new();
    let a_key = world.enroll(1, Role::Writer);
    let b_key = world.enroll(2, Role::Writer);
    let offline = SyncConfig {
        push_delay_millis: 0,
        ..SyncConfig::new("local")
    };
    let mut a = Device {
        engine: SyncEngine::new(offline, a_key.clone(), None),
        key: a_key,
        saved: None,
        now: T0,
        events: Vec::new(),
    };
    a.write("orders", "o1", "text", "before joining");
    // Nothing can be fetched or pushed without a server key and a space.
    assert!(
        a.engine
            .join("Not A Space!", world.server.public_key())
            .is_err()
    );
    a.engine.join(SPACE, world.server.public_key()).unwrap();
    a.engine.join(SPACE, world.server.public_key()).unwrap();
    let err = a
        .engine
        .join("elsewhere", world.server.public_key())
        .unwrap_err();
    assert_eq!(err.code(), "sync.other_space");
    let err = a
        .engine
        .join(SPACE, ServerKey::from_seed([3; 32]).public_key())
        .unwrap_err();
    assert_eq!(err.code(), "sync.server_key_changed");

    let mut b = Device::new(&world, b_key, config());
    a.settle(&mut world);
    b.settle(&mut world);
    assert_eq!(text(&b, "o1").as_deref(), Some("before joining"));
}

#[test]
fn with_every_request_slot_taken_the_engine_asks_for_no_wakeup_that_is_already_due() {
    let mut world = World::new();
    let a_key = world.enroll(1, Role::Writer);
    let b_key = world.enroll(2, Role::Writer);
    let mut b = Device::new(&world, b_key, config());
    b.write("orders", "o1", "text", "from b");
    b.settle(&mut world);
    let one_at_a_time = SyncConfig {
        max_in_flight: 1,
        ..config()
    };
    let mut a = Device::new(&world, a_key, one_at_a_time);
    a.engine.sync_now(a.now);
    // Take steps until a request is out, and leave its answer undelivered.
    let (held, outcome) = a.hold_request(&mut world, |_| true);
    // More reads are wanted (b's level, a's own levels), but the one slot is taken.
    assert_eq!(a.engine.poll(a.now), None);
    assert!(
        a.engine.next_wakeup().is_none_or(|at| at > a.now),
        "a due wakeup with no step to take makes a driver spin: {:?}",
        a.engine.next_wakeup()
    );
    // Its answer frees the slot, and the reads go on to convergence.
    a.engine.on_response(a.now, held, outcome);
    a.settle(&mut world);
    assert_eq!(text(&a, "o1").as_deref(), Some("from b"));
}

#[test]
fn a_device_given_the_space_key_late_reads_what_it_refused_and_then_keeps_that_key() {
    let mut world = World::new();
    let a_key = world.enroll(1, Role::Writer);
    let b_key = world.enroll(2, Role::Writer);
    let key = SpaceKey::from_bytes([7; 32]);
    let sealed = SyncConfig {
        space_key: Some(key.clone()),
        ..config()
    };
    let mut a = Device::new(&world, a_key, sealed);
    a.write("orders", "o1", "text", "secret recipe");
    a.settle(&mut world);

    // b joins without the key: it refuses a's packs and remembers them as refused.
    let mut b = Device::new(&world, b_key, config());
    b.engine.subscribe("orders");
    b.settle(&mut world);
    assert!(b.rejected_codes().contains(&"pack.key_required"));
    assert_eq!(text(&b, "o1"), None);

    // Given the key before writing anything, it reads them again.
    b.engine.set_space_key(Some(key.clone())).unwrap();
    b.settle(&mut world);
    assert_eq!(text(&b, "o1").as_deref(), Some("secret recipe"));

    // Once it has written packs, its key stays.
    b.write("orders", "o2", "text", "sealed too");
    b.settle(&mut world);
    let err = b.engine.set_space_key(None).unwrap_err();
    assert_eq!(err.code(), "sync.space_key_locked");
    b.engine.set_space_key(Some(key)).unwrap();
    a.settle(&mut world);
    assert_eq!(text(&a, "o2").as_deref(), Some("sealed too"));
}

#[test]
fn a_pack_refused_for_want_of_the_key_is_refused_again_every_round_not_forgotten() {
    let mut world = World::new();
    let a_key = world.enroll(1, Role::Writer);
    let b_key = world.enroll(2, Role::Writer);
    let sealed = SyncConfig {
        space_key: Some(SpaceKey::from_bytes([7; 32])),
        ..config()
    };
    let mut a = Device::new(&world, a_key, sealed);
    a.write("orders", "o1", "text", "secret recipe");
    a.settle(&mut world);
    let mut b = Device::new(&world, b_key, config());
    b.engine.subscribe("orders");
    for _ in 0..3 {
        b.events.clear();
        b.settle(&mut world);
        assert!(
            b.rejected_codes().contains(&"pack.key_required"),
            "every round says so"
        );
    }
}

/// Two writers: b wrote "first" to o1, a is reading b's L0 and holds its answer (that first
/// version) when b writes "second" and pushes it. Returns the world, a, b's id and L0 URL,
/// and a's held request with its answer.
fn a_holds_a_stale_read_of_b() -> (World, Device, DeviceId, String, RequestId, HttpOutcome) {
    let mut world = World::new();
    let a_key = world.enroll(1, Role::Writer);
    let b_key = world.enroll(2, Role::Writer);
    let b_id = b_key.device_id();
    let mut b = Device::new(&world, b_key, config());
    b.write("orders", "o1", "text", "first");
    b.settle(&mut world);
    let mut a = Device::new(&world, a_key, config());
    a.engine.sync_now(a.now);
    let b_level0 = World::url(&b_id, "orders", 0);
    let (held, stale) = a.hold_request(&mut world, |url| url == b_level0);
    b.write("orders", "o1", "text", "second");
    b.settle(&mut world);
    (world, a, b_id, b_level0, held, stale)
}

#[test]
fn an_announcement_that_arrives_while_the_level_is_being_read_is_read_again() {
    let (mut world, mut a, b_id, b_level0, held, stale) = a_holds_a_stale_read_of_b();
    let etag = world.objects[&b_level0].1.clone();
    a.engine.on_announcement(b_id, "orders", 0, Some(&etag));
    a.engine.on_response(a.now, held, stale);

    // Without moving the clock to a later round: the announcement alone brings the second.
    a.run(&mut world, a.now, None);
    assert_eq!(text(&a, "o1").as_deref(), Some("second"));
}

#[test]
fn sync_now_during_a_round_runs_another_round_once_it_ends() {
    // The announcement of b's second write never reaches a (its event stream was
    // reconnecting); the stream's hello asks for a round now, while the round that read the
    // old pack is still running.
    let (mut world, mut a, _, _, held, stale) = a_holds_a_stale_read_of_b();
    a.engine.sync_now(a.now);
    a.engine.on_response(a.now, held, stale);

    a.run(&mut world, a.now, None);
    assert_eq!(text(&a, "o1").as_deref(), Some("second"));
}

#[test]
fn a_device_registered_while_a_grant_is_on_its_way_is_read_without_waiting_for_a_round() {
    let mut world = World::new();
    let a_key = world.enroll(1, Role::Writer);
    let mut a = Device::new(&world, a_key, config());
    a.engine.set_live(true);
    a.settle(&mut world);

    // Someone joins the space: `a` asks for a new grant, and the server makes it just before
    // the newcomer's device is registered.
    a.engine.on_devices_changed();
    let Some(Step::FetchGrant { collections }) = a.engine.poll(a.now) else {
        panic!("a stale grant is fetched first");
    };
    let made_too_early = world.grant(a.key.device_id(), &collections, a.now);
    let b_key = world.enroll(2, Role::Writer);
    let mut b = Device::new(&world, b_key, config());
    b.write("orders", "o2", "text", "from b");
    b.settle(&mut world);
    // The registration's event arrives while that grant is still on its way.
    a.engine.on_devices_changed();
    a.engine.on_grant(a.now, &made_too_early).unwrap();

    // Well before the next polling round (minutes away on a live device).
    let soon = a.now + 10_000;
    a.run(&mut world, soon, None);
    assert_eq!(text(&a, "o2").as_deref(), Some("from b"));
}

#[test]
fn a_grant_that_brings_a_new_device_during_a_round_has_it_read_when_the_round_ends() {
    // a, live (announcements arrive, so its polling rounds are minutes apart), has read c;
    // b is enrolled after a's grant was made.
    let mut world = World::new();
    let a_key = world.enroll(1, Role::Writer);
    let c_key = world.enroll(3, Role::Writer);
    let c_level0 = World::url(&c_key.device_id(), "orders", 0);
    let mut c = Device::new(&world, c_key, config());
    c.write("orders", "o1", "text", "from c");
    c.settle(&mut world);
    let mut a = Device::new(&world, a_key, config());
    a.engine.set_live(true);
    a.settle(&mut world);
    assert_eq!(text(&a, "o1").as_deref(), Some("from c"));
    let b_key = world.enroll(2, Role::Writer);
    let mut b = Device::new(&world, b_key, config());
    b.write("orders", "o2", "text", "from b");
    b.settle(&mut world);

    // The next polling round starts, reading from the old grant; its read of c is on its way
    // when b's registration asks for a new grant, which arrives during the round.
    a.now += config().poll_live_millis + 1;
    let (held, answer) = a.hold_request(&mut world, |url| url == c_level0);
    a.engine.on_devices_changed();
    a.run(&mut world, a.now, None);
    assert!(a.engine.status().has_grant);
    a.engine.on_response(a.now, held, answer);

    let soon = a.now + 10_000;
    a.run(&mut world, soon, None);
    assert_eq!(text(&a, "o2").as_deref(), Some("from b"));
}

#[test]
fn requests_whose_answers_the_driver_abandoned_are_made_again() {
    // A read: a stopped waiting for its answer (say its `sync` ran out of time).
    let (mut world, mut a, _, _, _held, _answer) = a_holds_a_stale_read_of_b();
    a.engine.abandon_requests();
    a.run(&mut world, a.now, None);
    assert_eq!(text(&a, "o1").as_deref(), Some("second"));
    assert!(a.engine.is_idle());

    // A push whose PUT landed but whose answer was abandoned: it is sent again.
    a.write("orders", "o2", "text", "from a");
    let a_level0 = World::url(&a.key.device_id(), "orders", 0);
    let (_held, landed) = a.hold_request(&mut world, |url| url == a_level0);
    assert!(matches!(landed, HttpOutcome::Response { status: 200, .. }));
    a.engine.abandon_requests();
    a.run(&mut world, a.now + 1_000, None);
    assert_eq!(a.engine.pending_writes(), 0);
    assert!(a.engine.is_idle());
}

#[test]
fn a_push_refused_for_an_expired_url_fetches_a_new_grant_and_lands() {
    let mut world = World::new();
    let a_key = world.enroll(1, Role::Writer);
    let a_level0 = World::url(&a_key.device_id(), "orders", 0);
    let mut a = Device::new(&world, a_key, config());
    a.settle(&mut world);
    a.write("orders", "o1", "text", "late");
    let (held, _) = a.hold_request(&mut world, |url| url == a_level0);
    let expired = HttpOutcome::Response {
        status: 403,
        etag: None,
        body: Vec::new(),
        retry_after_secs: None,
    };
    a.engine.on_response(a.now, held, expired);

    let Some(Step::FetchGrant { collections }) = a.engine.poll(a.now) else {
        panic!("a new grant comes first");
    };
    let grant = world.grant(a.key.device_id(), &collections, a.now);
    a.engine.on_grant(a.now, &grant).unwrap();
    a.run(&mut world, a.now + 60_000, None);
    assert_eq!(a.engine.pending_writes(), 0);
}
