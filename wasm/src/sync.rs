//! Syncing from the browser: the core's engine driven over `fetch`, with the server's event
//! stream for announcements. The engine decides every request; this module only runs them,
//! stores checkpoints when asked, and tells the app what happened.

use std::cell::RefCell;
use std::rc::Rc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use js_sys::Function;
use serde::{Deserialize, Serialize};
use tidemark_core::sync::{Step, SyncEngine, SyncError, SyncEvent};
use tidemark_core::{DeviceKey, SpaceKey, validate_collection_name};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{JsFuture, spawn_local};
use web_sys::AbortController;

use crate::api::{Api, ApiError, send_to_store};
use crate::disk::Disk;
use crate::error::StoreError;
use crate::js::{self, Pending};
use crate::store::{Inner, Store};

/// The longest the driver sleeps without looking at the engine again.
const MAX_SLEEP_MS: u64 = 60_000;
/// Pause before reopening a dropped event stream (polling covers the gap).
const STREAM_RETRY_MS: u64 = 3_000;

/// Where and how this store syncs, kept in IndexedDB so it resumes by itself.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Connection {
    pub(crate) server: String,
    pub(crate) token: String,
    pub(crate) space: String,
    /// Sync is paused (`pause`): kept across reloads until `connect()` resumes it.
    #[serde(default)]
    pub(crate) paused: bool,
}

impl Connection {
    pub(crate) fn parse(json: &str) -> Result<Connection, StoreError> {
        serde_json::from_str(json)
            .map_err(|e| StoreError::Corrupt(format!("the sync connection: {e}")))
    }
}

/// What `connect` takes from JavaScript.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ConnectOptions {
    server: Option<String>,
    invite: Option<String>,
    token: Option<String>,
    space: Option<String>,
    name: Option<String>,
    /// The space's end-to-end key, as a share link carries it.
    space_key: Option<String>,
    /// Make a new space key when there is none (the first device of an encrypted space).
    encrypt: Option<bool>,
}

/// The running sync of a store.
#[derive(Debug)]
pub(crate) struct SyncState {
    connection: Connection,
    /// This start's number (from 1; 0 once stopped): a driver loop whose number is not the
    /// current one ends.
    run: u64,
    wake: Rc<Wakeup>,
    stream: Option<AbortController>,
    last_event_id: Option<String>,
    link: Link,
}

impl SyncState {
    /// Wakes the driver: something changed that it should look at now (a local write).
    pub(crate) fn nudge(&self) {
        self.wake.wake();
    }
}

/// What the app sees of the link.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
struct Link {
    /// The last request to the server or the store got an answer.
    online: bool,
    /// Announcements are flowing.
    live: bool,
    last_pushed_at: Option<u64>,
    last_synced_at: Option<u64>,
    error: Option<ErrorInfo>,
    /// A refusal only the space key can mend. Unlike `error` it outlives a successful round:
    /// it is cleared by a round that refused nothing for it.
    key_problem: Option<ErrorInfo>,
    key_problem_this_round: bool,
    /// Syncing stopped for good (device revoked, server key changed).
    stopped: bool,
}

#[derive(Clone, Debug, Serialize)]
struct ErrorInfo {
    code: String,
    message: String,
}

impl From<&SyncError> for ErrorInfo {
    fn from(error: &SyncError) -> ErrorInfo {
        ErrorInfo {
            code: error.code().to_string(),
            message: error.to_string(),
        }
    }
}

impl From<ApiError> for StoreError {
    fn from(error: ApiError) -> StoreError {
        StoreError::Server {
            code: error.code().to_string(),
            message: error.to_string(),
        }
    }
}

/// A sleep that can be cut short.
#[derive(Debug, Default)]
struct Wakeup {
    waiting: RefCell<Option<Function>>,
}

impl Wakeup {
    async fn sleep(&self, millis: u64) {
        let pending = Pending::new();
        js::set_timeout(&pending.resolve, millis);
        *self.waiting.borrow_mut() = Some(pending.resolve.clone());
        let _ = JsFuture::from(pending.promise).await;
    }

    fn wake(&self) {
        if let Some(resolve) = self.waiting.borrow_mut().take() {
            let _ = resolve.call0(&JsValue::NULL);
        }
    }
}

#[wasm_bindgen]
impl Store {
    /// Connects to a server and starts syncing. `{ server, invite }` joins the space of an
    /// invite; `{ server, token, space }` uses a session the app already has; `{}` resumes
    /// the connection this store had. Resolves once the device is registered; syncing goes on
    /// in the background (see `syncStatus` and `onSyncEvent`). Writes made before connecting
    /// are pushed to the space joined; a store cannot join a second space
    /// (`sync.other_space`).
    pub async fn connect(&self, options: JsValue) -> Result<JsValue, JsValue> {
        Ok(self.connect_with(options).await?)
    }

    /// Pauses syncing and keeps the connection (an "offline" switch, a metered network):
    /// writes wait on this device, also across reloads, until `connect()` resumes.
    pub async fn pause(&self) -> Result<(), JsValue> {
        let mut connection = self.connection()?;
        connection.paused = true;
        self.save(&connection).await?;
        self.start_sync(connection);
        emit_status(&self.inner);
        Ok(())
    }

    /// Makes an invite to this store's space (an admin device's right): `{ role, expiresInSecs,
    /// maxUses }` → the server's answer (`code`, `role`, `expiresAt`, `joinUrl`, …) plus
    /// `link`, the join link that also carries the space key when the space is encrypted.
    pub async fn invite(&self, options: JsValue) -> Result<JsValue, JsValue> {
        let connection = self.connection()?;
        let options: serde_json::Value = if options.is_undefined() || options.is_null() {
            serde_json::json!({ "role": "writer" })
        } else {
            serde_wasm_bindgen::from_value(options)
                .map_err(|e| StoreError::BadArgument(format!("invite options: {e}")))?
        };
        let api = Api::new(&connection.server, Some(&connection.token));
        let mut invite = api
            .create_invite(&connection.space, &options)
            .await
            .map_err(StoreError::from)?;
        let join_url = invite["joinUrl"].as_str().unwrap_or_default().to_string();
        let link = match self.space_key() {
            Some(key) => format!("{join_url}&key={key}"),
            None => join_url,
        };
        invite["link"] = link.into();
        Ok(js::from_json(&invite))
    }

    /// Stops syncing and forgets the connection: the store keeps working locally, and its
    /// writes wait until `connect` is called again.
    pub async fn disconnect(&self) -> Result<(), JsValue> {
        self.stop_sync();
        self.inner.borrow_mut().sync = None;
        self.disk.save_connection(None).await?;
        Ok(())
    }

    /// `{ connected, server, space, device, online, live, pendingWrites, lastPushedAt,
    /// lastSyncedAt, error, stopped }`.
    #[wasm_bindgen(js_name = syncStatus)]
    pub fn sync_status(&self) -> JsValue {
        js::from_json(&status(&self.inner.borrow()))
    }

    /// Syncs now (e.g. when the browser comes back online) instead of at the next poll.
    #[wasm_bindgen(js_name = syncNow)]
    pub fn sync_now(&self) {
        let mut inner = self.inner.borrow_mut();
        inner.engine.sync_now(js::now_millis());
        if let Some(sync) = &inner.sync {
            sync.wake.wake();
        }
    }

    /// Calls `callback({ type, ... })` for every sync event: `status` (the link changed),
    /// `acknowledged` (writes reached the bucket), `changed` (remote changes merged),
    /// `rejected` (a pack was refused), `problem` (a transient error), `stopped`.
    #[wasm_bindgen(js_name = onSyncEvent)]
    pub fn on_sync_event(&self, callback: Function) {
        self.inner.borrow_mut().sync_listeners.push(callback);
    }

    /// The space's end-to-end key, to put in a join link's fragment (`#join=…&key=…`), or
    /// `undefined` when the space is not encrypted. Treat it like a password: whoever has
    /// it can read the space.
    #[wasm_bindgen(js_name = spaceKey)]
    pub fn space_key(&self) -> Option<String> {
        let inner = self.inner.borrow();
        inner.engine.space_key().map(encode_space_key)
    }

    /// What the attachment code (JavaScript: it needs `Blob`s and upload progress) needs to
    /// call the server for this device: `{ server, token, space, device }`.
    #[wasm_bindgen(js_name = syncAccess)]
    pub fn sync_access(&self) -> Result<JsValue, JsValue> {
        let connection = self.connection()?;
        if connection.paused {
            return Err(StoreError::Paused.into());
        }
        Ok(js::from_json(&serde_json::json!({
            "server": connection.server,
            "token": connection.token,
            "space": connection.space,
            "device": self.inner.borrow().engine.device().to_string(),
        })))
    }

    /// The space's devices as the server lists them (name, role, last seen, last push).
    pub async fn devices(&self) -> Result<JsValue, JsValue> {
        let connection = self.connection()?;
        let api = Api::new(&connection.server, Some(&connection.token));
        let devices = api
            .devices(&connection.space)
            .await
            .map_err(StoreError::from)?;
        Ok(js::from_json(&devices))
    }
}

impl Store {
    fn connection(&self) -> Result<Connection, StoreError> {
        self.inner
            .borrow()
            .sync
            .as_ref()
            .map(|s| s.connection.clone())
            .ok_or(StoreError::NotConnected)
    }

    async fn connect_with(&self, options: JsValue) -> Result<JsValue, StoreError> {
        let options: ConnectOptions = if options.is_undefined() || options.is_null() {
            serde_json::from_value(serde_json::json!({})).expect("all fields are optional")
        } else {
            serde_wasm_bindgen::from_value(options)
                .map_err(|e| StoreError::BadArgument(format!("connect options: {e}")))?
        };
        // Checked before any request, so a bad key changes nothing.
        let given_key = options
            .space_key
            .as_deref()
            .map(decode_space_key)
            .transpose()?;
        let Some(server) = options.server else {
            let mut connection = self.connection()?;
            if connection.paused {
                connection.paused = false;
                self.save(&connection).await?;
            }
            self.start_sync(connection);
            emit_status(&self.inner);
            return Ok(self.sync_status());
        };
        let api = Api::new(&server, None);
        let info = api.info().await?;
        let (token, space) = match (&options.invite, &options.token) {
            (Some(invite), _) => {
                let session = api.accept_invite(invite.trim()).await?;
                let space = session.space.or(options.space).ok_or_else(|| {
                    StoreError::BadArgument("the invite names no space; give `space`".into())
                })?;
                (session.token, space)
            }
            (None, Some(token)) => {
                let space = options.space.ok_or_else(|| {
                    StoreError::BadArgument("with a `token`, give the `space` too".into())
                })?;
                (token.clone(), space)
            }
            (None, None) => {
                return Err(StoreError::BadArgument(
                    "connect with { server, invite } or { server, token, space }".into(),
                ));
            }
        };
        let space_key = match (given_key, options.encrypt) {
            (Some(key), _) => Some(key),
            (None, Some(true)) => match self.inner.borrow().engine.space_key() {
                Some(key) => Some(key.clone()),
                None => {
                    let mut bytes = [0u8; 32];
                    js::random_bytes(&mut bytes)?;
                    Some(SpaceKey::from_bytes(bytes))
                }
            },
            (None, _) => self.inner.borrow().engine.space_key().cloned(),
        };
        let seed = self.inner.borrow().device_seed;
        let name = options.name.unwrap_or_else(|| "browser".into());
        Api::new(&server, Some(&token))
            .register_device(&space, &DeviceKey::from_seed(seed), &name)
            .await?;
        {
            // Joining first: it refuses another space or server before anything changes,
            // and a store that has written packs (the only case where the key cannot be
            // set) was joined already, so a refused key leaves it as it was.
            let mut inner = self.inner.borrow_mut();
            inner.engine.join(&space, info.server_public_key)?;
            inner.engine.set_space_key(space_key.clone())?;
        }
        // The key is stored before any pack is sealed with it.
        self.disk
            .save_space_key(space_key.as_ref().map(SpaceKey::as_bytes))
            .await?;
        let checkpoint = self.inner.borrow_mut().checkpoint();
        checkpoint.store(&self.disk).await?;
        let connection = Connection {
            server,
            token,
            space,
            paused: false,
        };
        self.save(&connection).await?;
        self.start_sync(connection);
        Ok(self.sync_status())
    }

    async fn save(&self, connection: &Connection) -> Result<(), StoreError> {
        let json = serde_json::to_string(connection).expect("a connection serializes");
        self.disk.save_connection(Some(&json)).await
    }

    /// Starts (or restarts) the driver loop and the event stream; a paused connection is
    /// only installed.
    pub(crate) fn start_sync(&self, connection: Connection) {
        self.stop_sync();
        let mut inner = self.inner.borrow_mut();
        inner.sync_runs += 1;
        let paused = connection.paused;
        // A paused connection gets run 0, which no driver loop has.
        let run = if paused { 0 } else { inner.sync_runs };
        inner.sync = Some(SyncState {
            connection,
            run,
            wake: Rc::new(Wakeup::default()),
            stream: None,
            last_event_id: None,
            link: Link::default(),
        });
        if paused {
            return;
        }
        inner.engine.sync_now(js::now_millis());
        drop(inner);
        spawn_local(drive(Rc::clone(&self.inner), Rc::clone(&self.disk), run));
        spawn_local(listen(Rc::clone(&self.inner), run));
    }

    /// Syncs `collection` from now on: a collection this device only reads (a kitchen screen
    /// reading the counter's orders) is synced as well as those it writes.
    pub(crate) fn follow(&self, collection: &str) {
        let mut inner = self.inner.borrow_mut();
        if validate_collection_name(collection).is_err()
            || inner.engine.collections().any(|c| c == collection)
        {
            return;
        }
        inner.engine.subscribe(collection);
        if let Some(sync) = &inner.sync {
            // The grant for it is fetched now, not at the next poll.
            sync.wake.wake();
        }
    }

    /// Stops the driver loop and the event stream (the connection stays stored).
    pub(crate) fn stop_sync(&self) {
        let mut inner = self.inner.borrow_mut();
        if let Some(sync) = &mut inner.sync {
            // A number no loop has: the running ones end.
            sync.run = 0;
            if let Some(stream) = sync.stream.take() {
                stream.abort();
            }
            sync.wake.wake();
        }
        inner.engine.set_live(false);
    }
}

/// Whether the loop numbered `run` should go on.
fn running(inner: &Inner, run: u64) -> bool {
    !inner.closed && inner.sync.as_ref().is_some_and(|s| s.run == run)
}

/// The driver loop: takes the engine's steps, hands back outcomes, sleeps until the next
/// wakeup or until an answer or an announcement wakes it.
async fn drive(inner: Rc<RefCell<Inner>>, disk: Rc<Disk>, run: u64) {
    loop {
        let (wake, connection) = {
            let guard = inner.borrow();
            if !running(&guard, run) {
                return;
            }
            let sync = guard.sync.as_ref().expect("running");
            (Rc::clone(&sync.wake), sync.connection.clone())
        };
        loop {
            let step = inner.borrow_mut().engine.poll(js::now_millis());
            let Some(step) = step else { break };
            match step {
                Step::Persist => {
                    // Must be stored before any later step is taken.
                    let checkpoint = inner.borrow_mut().checkpoint();
                    if let Err(error) = checkpoint.store(&disk).await {
                        inner
                            .borrow_mut()
                            .failed
                            .get_or_insert_with(|| error.to_string());
                        return;
                    }
                }
                Step::FetchGrant { collections } => {
                    let (inner, wake, connection) =
                        (Rc::clone(&inner), Rc::clone(&wake), connection.clone());
                    spawn_local(async move {
                        let api = Api::new(&connection.server, Some(&connection.token));
                        let device = inner.borrow().engine.device();
                        let answer = api.grant(&connection.space, device, &collections).await;
                        let mut guard = inner.borrow_mut();
                        let now = js::now_millis();
                        match answer {
                            // A refused grant comes back as an engine event.
                            Ok(body) => drop(guard.engine.on_grant(now, &body)),
                            Err(error) => guard.engine.on_grant_failed(
                                now,
                                error.status(),
                                &error.to_string(),
                            ),
                        }
                        wake.wake();
                    });
                }
                Step::Http(request) => {
                    let (inner, wake) = (Rc::clone(&inner), Rc::clone(&wake));
                    spawn_local(async move {
                        let outcome = send_to_store(&request).await;
                        inner.borrow_mut().engine.on_response(
                            js::now_millis(),
                            request.id,
                            outcome,
                        );
                        wake.wake();
                    });
                }
                Step::Announce {
                    collection,
                    level,
                    etag,
                } => {
                    let (inner, connection) = (Rc::clone(&inner), connection.clone());
                    spawn_local(async move {
                        let api = Api::new(&connection.server, Some(&connection.token));
                        let device = inner.borrow().engine.device();
                        // Best effort: others find the change by polling anyway.
                        let _ = api
                            .announce(
                                &connection.space,
                                device,
                                &collection,
                                level,
                                etag.as_deref(),
                            )
                            .await;
                    });
                }
            }
        }
        dispatch_events(&inner);
        let sleep = {
            let guard = inner.borrow();
            let now = js::now_millis();
            guard
                .engine
                .next_wakeup()
                .map_or(MAX_SLEEP_MS, |at| at.saturating_sub(now).min(MAX_SLEEP_MS))
        };
        // Always through the event loop, even for 0 ms: the answers that free the engine's
        // request slots are delivered there.
        wake.sleep(sleep).await;
    }
}

/// Keeps the server's event stream open while the loop `run` goes on; reopens it when it
/// drops (polling covers the gap).
async fn listen(inner: Rc<RefCell<Inner>>, run: u64) {
    loop {
        let (connection, last_event_id, controller) = {
            let mut guard = inner.borrow_mut();
            if !running(&guard, run) {
                return;
            }
            let Ok(controller) = AbortController::new() else {
                return;
            };
            let sync = guard.sync.as_mut().expect("running");
            sync.stream = Some(controller.clone());
            (
                sync.connection.clone(),
                sync.last_event_id.clone(),
                controller,
            )
        };
        let api = Api::new(&connection.server, Some(&connection.token));
        let events = Rc::clone(&inner);
        let _ = api
            .events(
                &connection.space,
                last_event_id.as_deref(),
                &controller.signal(),
                move |event| {
                    let mut guard = events.borrow_mut();
                    guard.engine.on_server_event(js::now_millis(), &event);
                    if let Some(sync) = &mut guard.sync {
                        if let Some(id) = event.id() {
                            sync.last_event_id = Some(id.to_string());
                        }
                        sync.link.live = true;
                        sync.wake.wake();
                    }
                },
            )
            .await;
        let wake = {
            let mut guard = inner.borrow_mut();
            guard.engine.set_live(false);
            match &mut guard.sync {
                Some(sync) => {
                    sync.link.live = false;
                    Rc::clone(&sync.wake)
                }
                None => return,
            }
        };
        wake.wake();
        // A fresh sleeper: the driver's own wakeup must not be consumed here.
        Wakeup::default().sleep(STREAM_RETRY_MS).await;
    }
}

/// Takes the engine's events: changed documents go to live queries, the rest to the app's
/// listeners, called with no borrow held (they may call the store).
fn dispatch_events(inner: &Rc<RefCell<Inner>>) {
    let (calls, listeners) = {
        let mut guard = inner.borrow_mut();
        let events = guard.engine.take_events();
        if events.is_empty() {
            return;
        }
        let now = js::now_millis();
        let mut calls = Vec::new();
        for event in &events {
            if let SyncEvent::Changed(changed) = event {
                guard.note_changed(changed.iter(), inner);
            }
            let Some(sync) = guard.sync.as_mut() else {
                continue;
            };
            let link = &mut sync.link;
            let json = match event {
                SyncEvent::Changed(changed) => {
                    link.online = true;
                    serde_json::json!({ "type": "changed", "documents": changed.len() })
                }
                SyncEvent::Acknowledged { collection, writes } => {
                    link.online = true;
                    link.error = None;
                    link.last_pushed_at = Some(now);
                    serde_json::json!({ "type": "acknowledged", "collection": collection, "writes": writes })
                }
                SyncEvent::RoundComplete { changed } => {
                    link.online = true;
                    link.error = None;
                    if !std::mem::take(&mut link.key_problem_this_round) {
                        link.key_problem = None;
                    }
                    link.last_synced_at = Some(now);
                    serde_json::json!({ "type": "round", "changed": changed })
                }
                SyncEvent::Rejected {
                    device,
                    collection,
                    level,
                    error,
                } => {
                    if is_key_problem(error) {
                        // Not transient: the app must show it (a missing or wrong key).
                        link.key_problem = Some(error.into());
                        link.key_problem_this_round = true;
                    }
                    serde_json::json!({
                    "type": "rejected", "device": device.to_string(), "collection": collection,
                    "level": level, "code": error.code(), "message": error.to_string(),
                    })
                }
                SyncEvent::Problem(error) => {
                    if matches!(
                        error,
                        SyncError::StoreUnavailable(_) | SyncError::GrantUnavailable(_)
                    ) {
                        link.online = false;
                    }
                    link.error = Some(error.into());
                    serde_json::json!({ "type": "problem", "code": error.code(), "message": error.to_string() })
                }
                SyncEvent::Stopped(error) => {
                    link.stopped = true;
                    link.error = Some(error.into());
                    serde_json::json!({ "type": "stopped", "code": error.code(), "message": error.to_string() })
                }
            };
            calls.push(json);
        }
        calls.push(serde_json::json!({ "type": "status", "status": status(&guard) }));
        (calls, guard.sync_listeners.clone())
    };
    for call in calls {
        let value = js::from_json(&call);
        for listener in &listeners {
            let _ = listener.call1(&JsValue::NULL, &value);
        }
    }
}

/// Tells the app's listeners the status, after a change no engine event reports (pause,
/// resume).
fn emit_status(inner: &Rc<RefCell<Inner>>) {
    let (status, listeners) = {
        let guard = inner.borrow();
        let status = serde_json::json!({ "type": "status", "status": status(&guard) });
        (js::from_json(&status), guard.sync_listeners.clone())
    };
    for listener in &listeners {
        let _ = listener.call1(&JsValue::NULL, &status);
    }
}

fn status(inner: &Inner) -> serde_json::Value {
    let engine: &SyncEngine = &inner.engine;
    let link = inner
        .sync
        .as_ref()
        .map(|s| s.link.clone())
        .unwrap_or_default();
    serde_json::json!({
        "connected": inner.sync.is_some(),
        "paused": inner.sync.as_ref().is_some_and(|s| s.connection.paused),
        "server": inner.sync.as_ref().map(|s| s.connection.server.clone()),
        "space": inner.sync.as_ref().map(|s| s.connection.space.clone()),
        "device": engine.device().to_string(),
        "online": link.online,
        "live": link.live,
        "pendingWrites": engine.pending_writes(),
        "lastPushedAt": link.last_pushed_at,
        "lastSyncedAt": link.last_synced_at,
        "error": link.key_problem.as_ref().or(link.error.as_ref()),
        "stopped": link.stopped,
        "encrypted": engine.space_key().is_some(),
    })
}

/// A refusal that only the space key can mend: none where packs are sealed, another one, or
/// plaintext packs in an encrypted space.
fn is_key_problem(error: &SyncError) -> bool {
    matches!(
        error.code(),
        "pack.key_required" | "pack.decryption_failed" | "pack.not_encrypted"
    )
}

/// A space key as a share link carries it: base64url, no padding (43 characters).
fn encode_space_key(key: &SpaceKey) -> String {
    URL_SAFE_NO_PAD.encode(key.as_bytes())
}

fn decode_space_key(text: &str) -> Result<SpaceKey, StoreError> {
    let bad = || {
        StoreError::BadArgument(
            "spaceKey is the 43-character key of a join link (base64url, 32 bytes)".into(),
        )
    };
    let bytes = URL_SAFE_NO_PAD.decode(text.trim()).map_err(|_| bad())?;
    Ok(SpaceKey::from_bytes(bytes.try_into().map_err(|_| bad())?))
}
