//! A native device: a profile (server, space, session, device key), the sync engine, and the
//! driver that carries out the engine's steps over real HTTP.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tidemark_core::sync::{
    HttpMethod, HttpOutcome, HttpRequest, RequestId, Step, SyncConfig, SyncEngine, SyncEvent,
};
use tidemark_core::{DeviceId, DeviceKey, ServerPublicKey, SpaceKey, State, WriteError, Writer};
use tokio::sync::{mpsc, oneshot};

use crate::api::{Api, ApiError};
use crate::events::{ServerEvent, read_events};

/// How long a stopping watch waits for the answers of requests already sent.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server refused or could not be reached.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The sync engine refused (a write, a checkpoint, a grant).
    #[error("{} ({})", .0, .0.code())]
    Sync(#[from] tidemark_core::sync::SyncError),
    /// Reading or writing the client's folder failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The folder holds no profile, or a damaged one.
    #[error("{0}")]
    Profile(String),
    /// The process was killed (fault injection, [`ClientOptions::kill_after_puts`]).
    #[error("killed by fault injection")]
    Killed,
    /// A sync did not finish in time.
    #[error("sync did not finish within {0:?}; {1}")]
    Timeout(Duration, String),
    /// A write sent through a [`WriteQueue`] found no client watching to make it.
    #[error("the client is not watching; the write was not made")]
    NotWatching,
}

/// What a device remembers about where it syncs: `profile.json` in its folder (mode 0600, it
/// holds the device key and the session token).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    /// The server's base URL.
    pub server: String,
    /// The space.
    pub space: String,
    /// The member this device belongs to.
    pub user: String,
    /// Session token for the server API.
    pub token: String,
    /// The device key's secret seed, hex.
    pub device_seed: String,
    /// The server's public key, pinned when joining.
    pub server_public_key: ServerPublicKey,
    /// The space key for end-to-end encryption, hex, if the space uses it.
    #[serde(default)]
    pub space_key: Option<String>,
    /// Collections synced.
    #[serde(default)]
    pub collections: Vec<String>,
}

impl Profile {
    fn device_key(&self) -> Result<DeviceKey, ClientError> {
        let seed: [u8; 32] = hex::decode(&self.device_seed)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| {
                ClientError::Profile("profile: deviceSeed must be 64 hex digits".into())
            })?;
        Ok(DeviceKey::from_seed(seed))
    }

    fn space_key(&self) -> Result<Option<SpaceKey>, ClientError> {
        self.space_key
            .as_deref()
            .map(|hex_key| {
                hex::decode(hex_key)
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .map(SpaceKey::from_bytes)
                    .ok_or_else(|| {
                        ClientError::Profile("profile: spaceKey must be 64 hex digits".into())
                    })
            })
            .transpose()
    }
}

/// Where the engine's checkpoint lives.
#[derive(Clone, Debug)]
pub enum Storage {
    /// `profile.json` and `sync.bin` in this folder; the checkpoint is replaced atomically
    /// (written beside, synced, renamed).
    Dir(PathBuf),
    /// Kept in memory: for tests that simulate a crash by restoring the last checkpoint.
    Memory,
}

/// Knobs of the native driver.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Time limit of one request to object storage.
    pub request_timeout: Duration,
    /// Engine settings beyond space, collections and key (budgets, polling, retries).
    pub tune: fn(SyncConfig) -> SyncConfig,
    /// Fault injection for tests: a sync stops dead, as a killed process would, right after
    /// this many PUTs landed in the store and before the engine heard of the last one.
    pub kill_after_puts: Option<usize>,
}

impl Default for ClientOptions {
    fn default() -> ClientOptions {
        ClientOptions {
            request_timeout: Duration::from_secs(30),
            tune: |config| config,
            kill_after_puts: None,
        }
    }
}

/// Traffic to object storage, counted by the driver.
#[derive(Debug, Default)]
pub struct Traffic {
    /// Requests sent.
    pub requests: AtomicU64,
    /// Of those, PUTs: the requests object stores charge most for.
    pub puts: AtomicU64,
    /// GETs answered 304.
    pub not_modified: AtomicU64,
    /// GETs answered 404: levels never written.
    pub not_found: AtomicU64,
    /// Body bytes sent (PUTs).
    pub bytes_sent: AtomicU64,
    /// Body bytes received (GETs).
    pub bytes_received: AtomicU64,
}

/// One native device.
#[derive(Debug)]
pub struct Client {
    profile: Profile,
    storage: Storage,
    options: ClientOptions,
    api: Api,
    http: reqwest::Client,
    engine: SyncEngine,
    /// The last checkpoint stored (for [`Storage::Memory`]).
    saved: Option<Vec<u8>>,
    last_event_id: Option<String>,
    traffic: Arc<Traffic>,
    events: Vec<SyncEvent>,
}

/// What happened during a completion of the driver loop.
enum Done {
    Http(RequestId, HttpMethod, HttpOutcome),
    Grant(Result<Vec<u8>, ApiError>),
    Announced,
    Server(ServerEvent),
    StreamDown,
    /// Time to open the event stream again.
    Reconnect,
}

/// A write transaction, as [`Client::write`] takes it, boxed to travel to another task.
type Transaction = Box<dyn FnOnce(&mut Writer<'_>) -> Result<(), WriteError> + Send>;

/// A write waiting in a [`WriteInbox`], with where its outcome goes.
struct QueuedWrite {
    transaction: Transaction,
    outcome: oneshot::Sender<Result<State, ClientError>>,
}

/// Hands write transactions to a client that is in [`Client::watch_with_writes`]. `watch`
/// holds the client for as long as it runs, so this is how an app writes on a device that
/// stays live (announcements, pushes soon after each write) while its user edits.
#[derive(Clone, Debug)]
pub struct WriteQueue {
    sender: mpsc::UnboundedSender<QueuedWrite>,
}

/// The receiving end of a [`WriteQueue`], given to [`Client::watch_with_writes`].
#[derive(Debug)]
pub struct WriteInbox {
    receiver: mpsc::UnboundedReceiver<QueuedWrite>,
}

impl WriteQueue {
    /// A queue and the inbox its writes arrive in.
    pub fn new() -> (WriteQueue, WriteInbox) {
        let (sender, receiver) = mpsc::unbounded_channel();
        (WriteQueue { sender }, WriteInbox { receiver })
    }

    /// Runs `transaction` on the watching client as [`Client::write`] does: once this returns
    /// `Ok`, the write is stored durably and will reach the bucket. Fails with
    /// [`ClientError::NotWatching`] if the inbox was dropped (the watch ended) first.
    pub async fn write(
        &self,
        transaction: impl FnOnce(&mut Writer<'_>) -> Result<(), WriteError> + Send + 'static,
    ) -> Result<State, ClientError> {
        let (outcome, made) = oneshot::channel();
        let queued = QueuedWrite {
            transaction: Box::new(transaction),
            outcome,
        };
        self.sender
            .send(queued)
            .map_err(|_| ClientError::NotWatching)?;
        made.await.map_err(|_| ClientError::NotWatching)?
    }
}

impl WriteInbox {
    /// An inbox no write ever arrives in: watching without local writes.
    fn closed() -> WriteInbox {
        WriteQueue::new().1
    }
}

/// Milliseconds since the Unix epoch, from the system clock.
pub fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ClientError + '_ {
    move |source| ClientError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Splits a join link (`https://host/#join=tmi_…`) into server and invite code; a bare code
/// needs `server`.
pub fn parse_join(link: &str, server: Option<&str>) -> Result<(String, String), ClientError> {
    // Links are pasted: a stray space or newline around them is not part of the code.
    let link = link.trim();
    let server = server.map(str::trim).filter(|s| !s.is_empty());
    let (base, code) = match link.split_once("#join=") {
        Some((base, code)) => (Some(base.trim_end_matches('/')), code),
        None => (None, link),
    };
    if code.is_empty() {
        return Err(ClientError::Profile(
            "the join link or code holds no invite code".into(),
        ));
    }
    let server = server.or(base.filter(|b| !b.is_empty())).ok_or_else(|| {
        ClientError::Profile("give the join link (…/#join=…) or --server with the code".into())
    })?;
    Ok((server.to_string(), code.to_string()))
}

impl Client {
    /// Joins a space with an invite: opens a session, registers a new device key, and
    /// creates the device's profile in `storage`.
    pub async fn join(
        storage: Storage,
        server: &str,
        invite: &str,
        name: &str,
        space_key: Option<SpaceKey>,
        options: ClientOptions,
    ) -> Result<Client, ClientError> {
        if let Storage::Dir(dir) = &storage
            && dir.join("profile.json").exists()
        {
            return Err(ClientError::Profile(format!(
                "{} already holds a device; use another --dir",
                dir.display()
            )));
        }
        let http = reqwest::Client::new();
        let api = Api::new(server, http);
        let info = api.info().await?;
        let session = api.accept_invite(invite).await?;
        let space = session
            .space
            .clone()
            .ok_or_else(|| ClientError::Profile("the invite names no space".into()))?;
        let api = api.with_token(&session.token);
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| ClientError::Profile(e.to_string()))?;
        let key = DeviceKey::from_seed(seed);
        api.register_device(&space, &key, name).await?;
        let profile = Profile {
            server: api.base().to_string(),
            space,
            user: session.user,
            token: session.token,
            device_seed: hex::encode(seed),
            server_public_key: info.server_public_key,
            space_key: space_key.map(|k| hex::encode(k.as_bytes())),
            collections: Vec::new(),
        };
        let client = Client::assemble(profile, storage, options, None)?;
        client.save_profile()?;
        Ok(client)
    }

    /// Opens the device in `dir`.
    pub fn open(dir: &Path, options: ClientOptions) -> Result<Client, ClientError> {
        let path = dir.join("profile.json");
        let text = std::fs::read(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ClientError::Profile(format!(
                "no device in {}: run `tidemark join` first",
                dir.display()
            )),
            _ => ClientError::Io {
                path: path.clone(),
                source: e,
            },
        })?;
        let profile: Profile = serde_json::from_slice(&text)
            .map_err(|e| ClientError::Profile(format!("{}: {e}", path.display())))?;
        let checkpoint_path = dir.join("sync.bin");
        let checkpoint = match std::fs::read(&checkpoint_path) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io(&checkpoint_path)(e)),
        };
        Client::assemble(
            profile,
            Storage::Dir(dir.to_path_buf()),
            options,
            checkpoint,
        )
    }

    /// Rebuilds a device from its profile and last checkpoint: what a process restart does.
    /// Faults injected into the old process do not follow it into the new one.
    pub fn restart(self) -> Result<Client, ClientError> {
        let checkpoint = self.saved.clone();
        let options = ClientOptions {
            kill_after_puts: None,
            ..self.options
        };
        match &self.storage {
            Storage::Dir(dir) => Client::open(dir, options),
            Storage::Memory => Client::assemble(self.profile, Storage::Memory, options, checkpoint),
        }
    }

    fn assemble(
        profile: Profile,
        storage: Storage,
        options: ClientOptions,
        checkpoint: Option<Vec<u8>>,
    ) -> Result<Client, ClientError> {
        let key = profile.device_key()?;
        let config = (options.tune)(SyncConfig {
            space_key: profile.space_key()?,
            jitter_seed: u64::from_le_bytes(
                key.device_id().as_bytes()[..8]
                    .try_into()
                    .unwrap_or_default(),
            ) ^ now_millis(),
            ..SyncConfig::new(profile.space.clone())
                .with_collections(profile.collections.iter().cloned())
        });
        let engine = match &checkpoint {
            Some(bytes) => SyncEngine::restore(config, key, bytes)?,
            None => SyncEngine::new(config, key, Some(profile.server_public_key)),
        };
        let http = reqwest::Client::builder()
            .timeout(options.request_timeout)
            .build()
            .map_err(|e| ClientError::Profile(e.to_string()))?;
        let api = Api::new(&profile.server, reqwest::Client::new()).with_token(&profile.token);
        Ok(Client {
            profile,
            storage,
            options,
            api,
            http,
            engine,
            saved: checkpoint,
            last_event_id: None,
            traffic: Arc::new(Traffic::default()),
            events: Vec::new(),
        })
    }

    fn save_profile(&self) -> Result<(), ClientError> {
        let Storage::Dir(dir) = &self.storage else {
            return Ok(());
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let path = dir.join("profile.json");
        let json = serde_json::to_vec_pretty(&self.profile).expect("profile serializes");
        write_atomically(&path, &json, true)
    }

    fn persist(&mut self) -> Result<(), ClientError> {
        let checkpoint = self.engine.checkpoint();
        if let Storage::Dir(dir) = &self.storage {
            write_atomically(&dir.join("sync.bin"), &checkpoint, false)?;
        }
        self.saved = Some(checkpoint);
        Ok(())
    }

    /// The device's profile.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// The device id.
    pub fn device(&self) -> DeviceId {
        self.engine.device()
    }

    /// The engine, for reads and status.
    pub fn engine(&self) -> &SyncEngine {
        &self.engine
    }

    /// The server API client, with this device's session.
    pub fn api(&self) -> &Api {
        &self.api
    }

    /// Counted traffic to object storage.
    pub fn traffic(&self) -> &Traffic {
        &self.traffic
    }

    /// Sync events seen since the last call.
    pub fn take_events(&mut self) -> Vec<SyncEvent> {
        std::mem::take(&mut self.events)
    }

    /// Starts syncing `collection` too, and remembers it in the profile.
    pub fn subscribe(&mut self, collection: &str) -> Result<(), ClientError> {
        if !self.profile.collections.iter().any(|c| c == collection) {
            tidemark_core::validate_collection_name(collection)
                .map_err(|e| ClientError::Sync(e.into()))?;
            self.profile.collections.push(collection.to_string());
            self.save_profile()?;
        }
        self.engine.subscribe(collection);
        Ok(())
    }

    /// Runs a write transaction and stores it durably before returning: once this returns
    /// `Ok`, the write survives a crash and will reach the bucket.
    pub fn write(
        &mut self,
        f: impl FnOnce(&mut Writer<'_>) -> Result<(), tidemark_core::WriteError>,
    ) -> Result<State, ClientError> {
        let changes = self.engine.write(now_millis(), f)?;
        for collection in changes.collection_names() {
            if !self.profile.collections.iter().any(|c| c == collection) {
                self.profile.collections.push(collection.to_string());
                self.save_profile()?;
            }
        }
        self.persist()?;
        Ok(changes)
    }

    /// Syncs once: pushes pending writes and reads every device's changes, until a whole
    /// polling round has completed and nothing is left to do, or `limit` passes.
    pub async fn sync(&mut self, limit: Duration) -> Result<(), ClientError> {
        self.engine.sync_now(now_millis());
        let rounds = self.engine.status().rounds;
        let deadline = tokio::time::Instant::now() + limit;
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut pending = 0usize;
        loop {
            pending += self.turn(&tx, &mut |_, _| {})?;
            let engine = &self.engine;
            if pending == 0 && engine.status().rounds > rounds && engine.is_idle() {
                return Ok(());
            }
            tokio::select! {
                done = rx.recv() => {
                    pending -= 1;
                    self.complete(done.expect("the loop holds a sender"))?;
                }
                _ = tokio::time::sleep_until(self.wakeup().min(deadline)) => {
                    if tokio::time::Instant::now() >= deadline {
                        let error = self.timed_out(limit);
                        // Their answers will not be taken: what they were for is done again
                        // by the next sync.
                        self.engine.abandon_requests();
                        return Err(error);
                    }
                }
            }
        }
    }

    /// Syncs continuously with announcements from the server's event stream, until `stop`
    /// resolves; `on_event` sees every sync event as it happens.
    pub async fn watch(
        &mut self,
        stop: impl std::future::Future<Output = ()>,
        on_event: impl FnMut(&SyncEngine, &SyncEvent),
    ) -> Result<(), ClientError> {
        self.watch_with_writes(stop, WriteInbox::closed(), on_event)
            .await
    }

    /// [`Client::watch`], also making the writes that arrive in `writes` (from a
    /// [`WriteQueue`]) as they come; each is pushed after the engine's push delay, like any
    /// write. Writes still queued when `stop` resolves are not made; requests already sent get
    /// a moment to be answered.
    pub async fn watch_with_writes(
        &mut self,
        stop: impl std::future::Future<Output = ()>,
        mut writes: WriteInbox,
        mut on_event: impl FnMut(&SyncEngine, &SyncEvent),
    ) -> Result<(), ClientError> {
        tokio::pin!(stop);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut stream = Some(self.spawn_event_stream(tx.clone()));
        self.engine.sync_now(now_millis());
        loop {
            self.turn(&tx, &mut on_event)?;
            tokio::select! {
                _ = &mut stop => break,
                done = rx.recv() => match done.expect("the loop holds a sender") {
                    Done::StreamDown => {
                        self.engine.set_live(false);
                        // Reconnect after a pause; polling covers the gap.
                        stream = None;
                        let tx = tx.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            let _ = tx.send(Done::Reconnect);
                        });
                    }
                    Done::Reconnect => {
                        stream = Some(self.spawn_event_stream(tx.clone()));
                    }
                    done => self.complete(done)?,
                },
                // Disabled while no write arrives, and for good once every queue is dropped.
                Some(write) = writes.receiver.recv() => {
                    let _ = write.outcome.send(self.write(write.transaction));
                }
                _ = tokio::time::sleep_until(self.wakeup()) => {}
            }
        }
        if let Some(stream) = stream {
            stream.abort();
        }
        self.finish_requests(&mut rx).await
    }

    /// After the driver loop: takes the answers already on their way for a little while (a
    /// push that landed is then acknowledged, not pushed again next time), starts nothing new,
    /// forgets the rest and stores the checkpoint.
    async fn finish_requests(
        &mut self,
        rx: &mut mpsc::UnboundedReceiver<Done>,
    ) -> Result<(), ClientError> {
        let deadline = tokio::time::Instant::now() + STOP_GRACE;
        while self.engine.status().in_flight > 0 {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(done @ (Done::Http(..) | Done::Grant(_)))) => self.complete(done)?,
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        self.engine.abandon_requests();
        self.persist()
    }

    fn spawn_event_stream(&self, tx: mpsc::UnboundedSender<Done>) -> tokio::task::JoinHandle<()> {
        let api = self.api.clone();
        let space = self.profile.space.clone();
        let last = self.last_event_id.clone();
        tokio::spawn(async move {
            let sent = tx.clone();
            // However the stream ends (refused, dropped, server restart), the driver hears
            // `StreamDown`, falls back to polling and reconnects.
            if let Ok(response) = api.events(&space, last.as_deref()).await {
                let _ = read_events(response, |event| {
                    let _ = sent.send(Done::Server(event));
                })
                .await;
            }
            let _ = tx.send(Done::StreamDown);
        })
    }

    fn wakeup(&self) -> tokio::time::Instant {
        let now = now_millis();
        let wait = self
            .engine
            .next_wakeup()
            .map_or(Duration::from_secs(3_600), |at| {
                Duration::from_millis(at.saturating_sub(now))
            });
        tokio::time::Instant::now() + wait
    }

    /// One turn of the driver loop, the same for `sync` and `watch`: takes every step the
    /// engine has now, hands its events to `on_event` and keeps them for
    /// [`Client::take_events`], and fails once syncing has stopped for good. Returns how many
    /// tasks were started.
    fn turn(
        &mut self,
        tx: &mpsc::UnboundedSender<Done>,
        on_event: &mut impl FnMut(&SyncEngine, &SyncEvent),
    ) -> Result<usize, ClientError> {
        let started = self.run_steps(tx)?;
        for event in self.engine.take_events() {
            on_event(&self.engine, &event);
            self.events.push(event);
        }
        match self.engine.stopped() {
            Some(error) => Err(ClientError::Sync(error.clone())),
            None => Ok(started),
        }
    }

    /// The error of a sync that ran out of time, with what the engine was doing and its last
    /// problems: the clues to why.
    fn timed_out(&self, limit: Duration) -> ClientError {
        let status = self.engine.status();
        let problems: Vec<String> = self
            .events
            .iter()
            .rev()
            .filter_map(|e| match e {
                SyncEvent::Problem(p) => Some(format!("{} ({})", p, p.code())),
                _ => None,
            })
            .take(3)
            .collect();
        ClientError::Timeout(limit, format!("{status:?}; last problems: {problems:?}"))
    }

    /// Takes every step the engine has now. Returns how many tasks were started.
    fn run_steps(&mut self, tx: &mpsc::UnboundedSender<Done>) -> Result<usize, ClientError> {
        let mut started = 0;
        while let Some(step) = self.engine.poll(now_millis()) {
            match step {
                Step::Persist => self.persist()?,
                Step::FetchGrant { collections } => {
                    let api = self.api.clone();
                    let (space, device, tx) =
                        (self.profile.space.clone(), self.device(), tx.clone());
                    tokio::spawn(async move {
                        let grant = api.grant(&space, device, &collections).await;
                        let _ = tx.send(Done::Grant(grant));
                    });
                    started += 1;
                }
                Step::Announce {
                    collection,
                    level,
                    etag,
                } => {
                    let api = self.api.clone();
                    let (space, device, tx) =
                        (self.profile.space.clone(), self.device(), tx.clone());
                    tokio::spawn(async move {
                        // Best effort: others find the change by polling if this fails.
                        let _ = api
                            .announce(&space, device, &collection, level, etag.as_deref())
                            .await;
                        let _ = tx.send(Done::Announced);
                    });
                    started += 1;
                }
                Step::Http(request) => {
                    let (http, traffic, tx) = (self.http.clone(), self.traffic.clone(), tx.clone());
                    tokio::spawn(async move {
                        let (id, method) = (request.id, request.method);
                        let outcome = send(&http, &traffic, request).await;
                        let _ = tx.send(Done::Http(id, method, outcome));
                    });
                    started += 1;
                }
            }
        }
        Ok(started)
    }

    fn complete(&mut self, done: Done) -> Result<(), ClientError> {
        let now = now_millis();
        match done {
            Done::Http(id, method, outcome) => {
                let landed = method == HttpMethod::Put
                    && matches!(
                        outcome,
                        HttpOutcome::Response {
                            status: 200..=299,
                            ..
                        }
                    );
                if landed && let Some(left) = &mut self.options.kill_after_puts {
                    *left = left.saturating_sub(1);
                    if *left == 0 {
                        return Err(ClientError::Killed);
                    }
                }
                self.engine.on_response(now, id, outcome)
            }
            Done::Grant(Ok(body)) => {
                // A refused grant is reported as an event; the engine retries or stops.
                let _ = self.engine.on_grant(now, &body);
            }
            Done::Grant(Err(error)) => {
                self.engine
                    .on_grant_failed(now, error.status(), &error.to_string())
            }
            Done::Announced | Done::StreamDown => {}
            Done::Server(event) => {
                self.engine.on_server_event(now, &event);
                if let Some(id) = event.id() {
                    self.last_event_id = Some(id.to_string());
                }
            }
            Done::Reconnect => {}
        }
        Ok(())
    }
}

/// Sends one request to object storage and reads the whole answer.
async fn send(http: &reqwest::Client, traffic: &Traffic, request: HttpRequest) -> HttpOutcome {
    traffic.requests.fetch_add(1, Ordering::Relaxed);
    let builder = match request.method {
        HttpMethod::Get => {
            let builder = http.get(&request.url);
            match &request.if_none_match {
                Some(etag) => builder.header("if-none-match", etag),
                None => builder,
            }
        }
        HttpMethod::Put => {
            traffic.puts.fetch_add(1, Ordering::Relaxed);
            traffic
                .bytes_sent
                .fetch_add(request.body.len() as u64, Ordering::Relaxed);
            http.put(&request.url).body(request.body)
        }
    };
    let response = match builder.send().await {
        Ok(response) => response,
        Err(error) => {
            return HttpOutcome::Failed {
                reason: error.to_string(),
            };
        }
    };
    let status = response.status().as_u16();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let etag = header("etag");
    let retry_after_secs = header("retry-after").and_then(|v| v.parse().ok());
    match response.bytes().await {
        Ok(body) => {
            let counted = match status {
                304 => Some(&traffic.not_modified),
                404 => Some(&traffic.not_found),
                _ => None,
            };
            if let Some(counter) = counted {
                counter.fetch_add(1, Ordering::Relaxed);
            }
            traffic
                .bytes_received
                .fetch_add(body.len() as u64, Ordering::Relaxed);
            HttpOutcome::Response {
                status,
                etag,
                body: body.to_vec(),
                retry_after_secs,
            }
        }
        // A body cut short: the connection dropped mid-answer.
        Err(error) => HttpOutcome::Failed {
            reason: format!("reading the answer: {error}"),
        },
    }
}

/// Replaces `path` with `bytes` so that a crash leaves the old or the new file, never a mix.
fn write_atomically(path: &Path, bytes: &[u8], private: bool) -> Result<(), ClientError> {
    use std::io::Write as _;
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(&tmp).map_err(io(&tmp))?;
    file.write_all(bytes).map_err(io(&tmp))?;
    file.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(link: &str, server: Option<&str>) -> (String, String) {
        parse_join(link, server).unwrap_or_else(|e| panic!("{link:?}, {server:?}: {e}"))
    }

    fn refused(link: &str, server: Option<&str>) -> String {
        match parse_join(link, server) {
            Ok(parsed) => panic!("{link:?}, {server:?} was accepted as {parsed:?}"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn a_join_link_names_its_server_and_code() {
        let expected = ("https://tide.example".to_string(), "tmi_abc123".to_string());
        assert_eq!(
            joined("https://tide.example/#join=tmi_abc123", None),
            expected
        );
        assert_eq!(
            joined("https://tide.example#join=tmi_abc123", None),
            expected
        );
        // Pasted with the newline of the message it came in.
        assert_eq!(
            joined(" https://tide.example/#join=tmi_abc123\n", None),
            expected
        );
        // A server below a path keeps its path.
        assert_eq!(
            joined("http://127.0.0.1:8787/tidemark/#join=tmi_x", None),
            ("http://127.0.0.1:8787/tidemark".into(), "tmi_x".into())
        );
    }

    #[test]
    fn server_given_with_a_link_overrides_the_links_host() {
        // The host in the link may be a public name that this machine reaches otherwise.
        assert_eq!(
            joined(
                "https://tide.example/#join=tmi_abc",
                Some("http://10.0.0.5:8787")
            ),
            ("http://10.0.0.5:8787".into(), "tmi_abc".into())
        );
    }

    #[test]
    fn a_bare_code_needs_the_server() {
        assert_eq!(
            joined("tmi_abc123", Some("http://127.0.0.1:8787")),
            ("http://127.0.0.1:8787".into(), "tmi_abc123".into())
        );
        assert!(refused("tmi_abc123", None).contains("--server"));
        assert!(refused("tmi_abc123", Some("  ")).contains("--server"));
        // A link cut down to its fragment has lost its server.
        assert!(refused("#join=tmi_abc123", None).contains("--server"));
    }

    #[test]
    fn a_link_or_code_without_a_code_is_refused() {
        for link in ["", "   ", "https://tide.example/#join=", "#join="] {
            let error = refused(link, Some("http://127.0.0.1:8787"));
            assert!(error.contains("no invite code"), "{link:?}: {error}");
        }
    }
}
