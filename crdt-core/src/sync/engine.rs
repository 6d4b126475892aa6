//! [`SyncEngine`]: the state machine that decides every request a device makes.

use std::collections::{BTreeMap, VecDeque};

use crate::certificate::ServerPublicKey;
use crate::device::{DeviceId, DeviceKey, SpaceKey};
use crate::error::PackError;
use crate::pack::{LEVEL_COUNT, OpenOptions, Pack};
use crate::replica::{Changed, Replica, Writer};
use crate::state::State;
use crate::sync::backoff::Jitter;
use crate::sync::checkpoint;
use crate::sync::events::ServerEvent;
use crate::sync::grant::Grant;
use crate::sync::levels::{OwnLevel, PlannedWrite, plan_push};
use crate::sync::{
    HttpMethod, HttpOutcome, HttpRequest, RequestId, Step, SyncConfig, SyncError, SyncEvent,
};

/// One device's sync of one space. See the [module docs](crate::sync) for the driver loop.
#[derive(Debug)]
pub struct SyncEngine {
    config: SyncConfig,
    key: DeviceKey,
    pub(super) replica: Replica,
    /// The server key learned when joining; grants must be signed by it.
    pub(super) server_key: Option<ServerPublicKey>,
    pub(super) grant: Option<Grant>,
    grant_fetch: Retry,
    /// Set when the grant must be replaced before it expires: a 403 from the store, a new
    /// device, a new collection. See `grant_went_stale`.
    grant_stale: bool,
    /// The grant went stale while one was being fetched: that one may predate the reason (a
    /// device registered just after the server made it), so another is fetched after it.
    grant_stale_again: bool,
    pub(super) collections: BTreeMap<String, CollectionSync>,
    round: Round,
    live: bool,
    in_flight: BTreeMap<RequestId, Target>,
    next_request: u64,
    /// The durable part changed since the last [`Step::Persist`].
    dirty: bool,
    /// Writes wait until then before being pushed (bursts become one PUT).
    push_due_at: Option<u64>,
    stopped: Option<SyncError>,
    events: Vec<SyncEvent>,
    /// [`Step::Announce`]s to hand out, one per level written.
    announcements: VecDeque<Step>,
    jitter: Jitter,
}

/// The sync of one collection.
#[derive(Clone, Debug)]
pub(super) struct CollectionSync {
    /// Write transactions not yet in the bucket, oldest first. Durable.
    pub(super) outbox: Vec<State>,
    /// This device's levels as last written. Durable.
    pub(super) levels: Vec<OwnLevel>,
    /// What was merged from each device's levels (this device's own included). Durable.
    pub(super) remotes: BTreeMap<DeviceId, Vec<RemoteLevel>>,
    /// The push under way, if any. Not durable: rebuilt from the outbox after a restart.
    push: Option<Push>,
    /// Whether this device's own levels were read back since the engine started. Pushing
    /// waits for it, so a device restored from an old checkpoint (or a new install with the
    /// same key) never writes a level with less than the bucket holds.
    own_levels_read: bool,
}

impl CollectionSync {
    pub(super) fn new() -> CollectionSync {
        CollectionSync {
            outbox: Vec::new(),
            levels: vec![OwnLevel::default(); usize::from(LEVEL_COUNT)],
            remotes: BTreeMap::new(),
            push: None,
            own_levels_read: false,
        }
    }

    fn remote(&mut self, device: DeviceId) -> &mut [RemoteLevel] {
        self.remotes
            .entry(device)
            .or_insert_with(|| vec![RemoteLevel::default(); usize::from(LEVEL_COUNT)])
    }
}

/// What is known of one level pack of one device.
#[derive(Clone, Debug, Default)]
pub(super) struct RemoteLevel {
    /// ETag of the pack last merged (or last refused for good): the next GET's
    /// `If-None-Match`. Durable, together with the merged state.
    pub(super) etag: Option<String>,
    /// Highest generation merged: an older one is a replay. Durable.
    pub(super) generation: u64,
    /// It should be read.
    wanted: bool,
    /// It was announced while a read was in flight: the answer on its way may predate the
    /// announced pack, so the level is read once more after it.
    again: bool,
    retry: Retry,
}

impl RemoteLevel {
    /// An answer for this level was handled: it is read again only if it was announced
    /// while the answer was on its way.
    fn settled(&mut self) {
        self.wanted = std::mem::take(&mut self.again);
    }

    /// A level known to be merged up to `etag` and `generation` (from a checkpoint).
    pub(super) fn merged(etag: Option<String>, generation: u64) -> RemoteLevel {
        RemoteLevel {
            etag,
            generation,
            ..RemoteLevel::default()
        }
    }
}

/// A push: the planned writes, highest level first, and how many outbox transactions it
/// carries.
#[derive(Clone, Debug)]
struct Push {
    writes: VecDeque<PlannedWrite>,
    carried: usize,
    retry: Retry,
}

/// Failure count and the time before which not to try again.
#[derive(Clone, Debug, Default)]
struct Retry {
    in_flight: bool,
    failures: u32,
    not_before: u64,
}

impl Retry {
    fn ready(&self, now: u64) -> bool {
        !self.in_flight && now >= self.not_before
    }
}

/// A polling round.
#[derive(Clone, Debug, Default)]
struct Round {
    next_at: u64,
    interval: u64,
    active: bool,
    changed: bool,
    count: u32,
    /// `sync_now` was called during this round, after some levels were read: another round
    /// starts as soon as this one ends.
    again: bool,
}

/// What a request in flight is for.
#[derive(Clone, Debug)]
enum Target {
    Level {
        collection: String,
        device: DeviceId,
        level: u8,
    },
    Push {
        collection: String,
    },
}

/// A summary for status displays.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncStatus {
    /// Write transactions not yet in the bucket.
    pub pending_writes: usize,
    /// Whether a grant is held.
    pub has_grant: bool,
    /// When the grant expires (server time), if one is held.
    pub grant_expires_at: Option<u64>,
    /// Requests in flight.
    pub in_flight: usize,
    /// Completed polling rounds since start.
    pub rounds: u32,
    /// Why syncing stopped, if it did.
    pub stopped: Option<String>,
}

impl SyncEngine {
    /// A new device's engine, empty. `server_key` is the server's public key from
    /// `GET /v1/info` (or from the device's registration), pinned from now on.
    pub fn new(
        config: SyncConfig,
        key: DeviceKey,
        server_key: Option<ServerPublicKey>,
    ) -> SyncEngine {
        let replica = Replica::new(key.device_id());
        let mut engine = SyncEngine::assemble(config, key, replica);
        engine.server_key = server_key;
        engine
    }

    /// An engine resumed from a [`SyncEngine::checkpoint`].
    pub fn restore(
        config: SyncConfig,
        key: DeviceKey,
        checkpoint: &[u8],
    ) -> Result<SyncEngine, SyncError> {
        let saved = checkpoint::decode(checkpoint)?;
        if saved.space != config.space {
            return Err(SyncError::CheckpointMismatch(format!(
                "space {:?}, not {:?}",
                saved.space, config.space
            )));
        }
        if saved.device != key.device_id() {
            return Err(SyncError::CheckpointMismatch(format!(
                "device {}",
                saved.device
            )));
        }
        let mut replica = Replica::from_state(key.device_id(), saved.state);
        replica.clock_mut().restore(saved.clock);
        replica.clock_mut().set_offset_millis(saved.offset_millis);
        replica.set_eviction(saved.eviction);
        let mut engine = SyncEngine::assemble(config, key, replica);
        engine.server_key = saved.server_key;
        if let Some(raw) = saved.grant {
            // A grant that no longer parses (e.g. a newer build's) is simply fetched again.
            engine.grant = Grant::parse(
                &raw,
                &engine.config.space,
                saved.device,
                saved.server_key.as_ref(),
            )
            .ok();
        }
        for (name, collection) in saved.collections {
            engine.config.collections.insert(name.clone());
            let slot = engine
                .collections
                .entry(name)
                .or_insert_with(CollectionSync::new);
            slot.outbox = collection.outbox;
            slot.levels = collection.levels;
            slot.remotes = collection.remotes;
        }
        if engine.collections.values().any(|c| !c.outbox.is_empty()) {
            engine.push_due_at = Some(0);
        }
        Ok(engine)
    }

    fn assemble(config: SyncConfig, key: DeviceKey, replica: Replica) -> SyncEngine {
        // Inserted, not collected: see `Grant::parse`.
        let mut collections = BTreeMap::new();
        for c in &config.collections {
            collections.insert(c.clone(), CollectionSync::new());
        }
        let jitter = Jitter::new(config.jitter_seed);
        let round = Round {
            interval: config.poll_min_millis,
            ..Round::default()
        };
        SyncEngine {
            config,
            key,
            replica,
            server_key: None,
            grant: None,
            grant_fetch: Retry::default(),
            grant_stale: false,
            grant_stale_again: false,
            collections,
            round,
            live: false,
            in_flight: BTreeMap::new(),
            next_request: 0,
            dirty: false,
            push_due_at: None,
            stopped: None,
            events: Vec::new(),
            announcements: VecDeque::new(),
            jitter,
        }
    }

    /// The durable state, to store on [`Step::Persist`]: the replica, the outbox, this
    /// device's levels, what was merged from whom, and the grant. Restore it with
    /// [`SyncEngine::restore`]. The space key is not in it.
    ///
    /// Taking it also settles any pending [`Step::Persist`]: a driver that stores a
    /// checkpoint on its own (e.g. right after a write, to acknowledge it) is not asked to
    /// store the same state again.
    pub fn checkpoint(&mut self) -> Vec<u8> {
        self.dirty = false;
        checkpoint::encode(self)
    }

    /// The replica, for reads and queries.
    pub fn replica(&self) -> &Replica {
        &self.replica
    }

    /// The space.
    pub fn space(&self) -> &str {
        &self.config.space
    }

    /// This device.
    pub fn device(&self) -> DeviceId {
        self.key.device_id()
    }

    /// The pinned server key.
    pub fn server_key(&self) -> Option<ServerPublicKey> {
        self.server_key
    }

    /// The collections synced.
    pub fn collections(&self) -> impl Iterator<Item = &str> {
        self.collections.keys().map(String::as_str)
    }

    /// Starts syncing `collection` too (a grant covering it is fetched).
    pub fn subscribe(&mut self, collection: &str) {
        if !self.collections.contains_key(collection) {
            self.config.collections.insert(collection.to_string());
            self.collections
                .insert(collection.to_string(), CollectionSync::new());
            self.grant_went_stale();
            self.dirty = true;
        }
    }

    /// Runs a write transaction (see [`Replica::write`]) and queues its changes for pushing.
    /// Acknowledged once the next [`Step::Persist`] is done.
    pub fn write(
        &mut self,
        local_wall_millis: u64,
        f: impl FnOnce(&mut Writer<'_>) -> Result<(), crate::WriteError>,
    ) -> Result<State, SyncError> {
        if let Some(grant) = &self.grant
            && !grant.role.can_write()
        {
            return Err(SyncError::ReadOnly(self.config.space.clone()));
        }
        let changes = self.replica.write(local_wall_millis, f)?;
        for name in changes.collection_names() {
            self.subscribe(name);
            let collection = self.collections.get_mut(name).expect("subscribed above");
            collection.outbox.push(changes.collection(name));
        }
        if !changes.is_empty() {
            self.dirty = true;
            let due = local_wall_millis.saturating_add(self.config.push_delay_millis);
            self.push_due_at = Some(self.push_due_at.map_or(due, |d| d.min(due)));
        }
        Ok(changes)
    }

    /// Like [`SyncEngine::write`], for a driver that keeps a write-ahead journal: the write
    /// asks for no [`Step::Persist`]. Instead the driver appends the returned changes to its
    /// journal and acknowledges the write once that append is durable; after a restart it
    /// hands every entry newer than the checkpoint to [`SyncEngine::replay_journaled`].
    ///
    /// A browser store needs this: a checkpoint holds the whole replica, while a journal
    /// entry holds one transaction, so acknowledging a write costs bytes in proportion to the
    /// write, not to the database. The driver folds the journal into a checkpoint now and then
    /// (and on every [`Step::Persist`]), dropping the entries the checkpoint holds.
    pub fn write_journaled(
        &mut self,
        local_wall_millis: u64,
        f: impl FnOnce(&mut Writer<'_>) -> Result<(), crate::WriteError>,
    ) -> Result<State, SyncError> {
        let was_dirty = self.dirty;
        let known_collections = self.collections.len();
        let changes = self.write(local_wall_millis, f)?;
        // A newly synced collection changes the durable sync state, not only the replica:
        // that still asks for a checkpoint.
        self.dirty = was_dirty || self.collections.len() != known_collections;
        Ok(changes)
    }

    /// Re-applies a journaled write (see [`SyncEngine::write_journaled`]) after a restart:
    /// joins it into the replica, moves the clock past its stamps so later writes win over
    /// it, and queues it for pushing again. Replaying an entry the bucket already holds is
    /// harmless: merge is idempotent, and so is pushing the same entries twice.
    pub fn replay_journaled(&mut self, local_wall_millis: u64, changes: &State) -> Changed {
        let own = changes.version_vector().get(&self.device());
        self.replica.clock_mut().restore(own);
        let changed = self.replica.merge(changes, local_wall_millis);
        for name in changes.collection_names() {
            self.subscribe(name);
            let collection = self.collections.get_mut(name).expect("subscribed above");
            collection.outbox.push(changes.collection(name));
        }
        if !changes.is_empty() {
            self.push_due_at = Some(0);
        }
        changed
    }

    /// Forgets `collection` on this device (see [`Replica::evict_collection`]); asks for a
    /// [`Step::Persist`]. Its packs are still read, and their entries dropped on merge.
    pub fn evict_collection(&mut self, collection: &str) -> usize {
        self.dirty = true;
        self.replica.evict_collection(collection)
    }

    /// Forgets some documents on this device (see [`Replica::evict_documents`]); asks for a
    /// [`Step::Persist`].
    pub fn evict_documents<'i>(
        &mut self,
        collection: &str,
        ids: impl IntoIterator<Item = &'i str>,
    ) -> usize {
        self.dirty = true;
        self.replica.evict_documents(collection, ids)
    }

    /// The space key in use, if the space is end-to-end encrypted.
    pub fn space_key(&self) -> Option<&SpaceKey> {
        self.config.space_key.as_ref()
    }

    /// Sets the space key of a device that has not written any pack yet (it is joining):
    /// from now on its packs are sealed with it and plaintext packs are refused. Packs
    /// refused before (for want of the key, or under another one) are read again. A device
    /// that has written packs keeps its key: they would otherwise stay unreadable or
    /// plaintext in the bucket (`sync.space_key_locked`).
    pub fn set_space_key(&mut self, key: Option<SpaceKey>) -> Result<(), SyncError> {
        if self.config.space_key == key {
            return Ok(());
        }
        let written = self
            .collections
            .values()
            .any(|c| c.levels.iter().any(|level| level.generation > 0));
        if written {
            return Err(SyncError::SpaceKeyLocked);
        }
        self.config.space_key = key;
        for collection in self.collections.values_mut() {
            for level in collection.remotes.values_mut().flatten() {
                level.etag = None;
            }
        }
        self.dirty = true;
        Ok(())
    }

    /// Binds a device that has not joined any space yet to `space`, pinning `server_key`.
    /// A browser store is usable before it connects: its writes wait in the outbox under a
    /// placeholder space and are pushed to the space it joins. Joining again with the same
    /// space and key is a no-op; a store that already belongs to another space or server is
    /// refused, so two spaces' data never mix.
    pub fn join(&mut self, space: &str, server_key: ServerPublicKey) -> Result<(), SyncError> {
        match self.server_key {
            Some(pinned) if pinned != server_key => return Err(SyncError::ServerKeyChanged),
            Some(_) if self.config.space != space => {
                return Err(SyncError::OtherSpace {
                    joined: self.config.space.clone(),
                    requested: space.to_string(),
                });
            }
            Some(_) => return Ok(()),
            None => {}
        }
        crate::validate_space_id(space).map_err(|e| SyncError::BadGrant(e.to_string()))?;
        self.config.space = space.to_string();
        self.server_key = Some(server_key);
        self.grant = None;
        self.dirty = true;
        Ok(())
    }

    /// Write transactions not yet in the bucket.
    pub fn pending_writes(&self) -> usize {
        self.collections.values().map(|c| c.outbox.len()).sum()
    }

    /// A summary for status displays.
    pub fn status(&self) -> SyncStatus {
        SyncStatus {
            pending_writes: self.pending_writes(),
            has_grant: self.grant.is_some(),
            grant_expires_at: self.grant.as_ref().map(|g| g.expires_at),
            in_flight: self.in_flight.len(),
            rounds: self.round.count,
            stopped: self.stopped.as_ref().map(ToString::to_string),
        }
    }

    /// Whether nothing is left to do until the next round: no pending writes, nothing wanted
    /// or in flight.
    pub fn is_idle(&self) -> bool {
        self.in_flight.is_empty()
            && !self.dirty
            && self.collections.values().all(|c| {
                c.outbox.is_empty()
                    && c.push.is_none()
                    && c.remotes.values().flatten().all(|l| !l.wanted)
            })
    }

    /// Whether syncing stopped for good, and why.
    pub fn stopped(&self) -> Option<&SyncError> {
        self.stopped.as_ref()
    }

    /// Events since the last call.
    pub fn take_events(&mut self) -> Vec<SyncEvent> {
        std::mem::take(&mut self.events)
    }

    /// Starts a polling round now (e.g. the app came to the foreground, the network is back,
    /// the event stream reconnected), with a fresh grant so that devices that joined
    /// meanwhile are read too.
    pub fn sync_now(&mut self, local_wall_millis: u64) {
        self.grant_went_stale();
        self.round.again |= self.round.active;
        self.round.next_at = local_wall_millis;
        self.round.interval = self.config.poll_min_millis;
        for collection in self.collections.values_mut() {
            for level in collection.remotes.values_mut().flatten() {
                level.retry.not_before = 0;
            }
            if let Some(push) = &mut collection.push {
                push.retry.not_before = 0;
            }
        }
        self.grant_fetch.not_before = 0;
    }

    /// The driver stopped waiting for the answers of the requests in flight (it is shutting
    /// down, or gave up on a deadline): they are forgotten, and what they were for is done
    /// again when syncing goes on. A PUT that landed is sent again, which is harmless; a
    /// level read is read again.
    pub fn abandon_requests(&mut self) {
        for target in std::mem::take(&mut self.in_flight).into_values() {
            match target {
                Target::Level {
                    collection,
                    device,
                    level,
                } => {
                    if let Some(sync) = self.collections.get_mut(&collection) {
                        sync.remote(device)[usize::from(level)].retry.in_flight = false;
                    }
                }
                Target::Push { collection } => {
                    if let Some(push) = self
                        .collections
                        .get_mut(&collection)
                        .and_then(|c| c.push.as_mut())
                    {
                        push.retry.in_flight = false;
                    }
                }
            }
        }
        // A grant still wanted is fetched anew, after every reason so far.
        self.grant_fetch.in_flight = false;
        self.grant_stale_again = false;
    }

    /// Whether announcements are arriving. While they do, polling is only a slow safety net.
    pub fn set_live(&mut self, live: bool) {
        self.live = live;
    }

    /// An announcement: `device` wrote `level` of `collection`.
    pub fn on_announcement(
        &mut self,
        device: DeviceId,
        collection: &str,
        level: u8,
        etag: Option<&str>,
    ) {
        if device == self.device() || level >= LEVEL_COUNT {
            return;
        }
        let Some(grant) = &self.grant else { return };
        if !grant.authors.contains(&device) || grant.get_url(collection, &device, level).is_none() {
            // A device this grant does not know yet: a new grant will have its URLs and its
            // certificate.
            if self.collections.contains_key(collection) && !grant.revoked.contains_key(&device) {
                self.grant_went_stale();
            }
            return;
        }
        let Some(sync) = self.collections.get_mut(collection) else {
            return;
        };
        let remote = &mut sync.remote(device)[usize::from(level)];
        if etag.is_none() || remote.etag.as_deref() != etag {
            remote.again |= remote.retry.in_flight;
            remote.wanted = true;
            remote.retry.not_before = 0;
        }
    }

    /// The device list changed (a `devices` event): fetch a new grant.
    pub fn on_devices_changed(&mut self) {
        self.grant_went_stale();
    }

    /// When to call [`SyncEngine::poll`] again if nothing arrives first.
    pub fn next_wakeup(&self) -> Option<u64> {
        if self.stopped.is_some() {
            return None;
        }
        let mut times = Vec::new();
        let fetching = self.grant_fetch.in_flight;
        match &self.grant {
            None if !fetching => times.push(self.grant_fetch.not_before),
            None => {}
            Some(grant) => {
                if self.grant_stale && !fetching {
                    times.push(self.grant_fetch.not_before);
                }
                times.push(self.grant_refresh_at(grant));
                if !self.round.active {
                    times.push(self.round.next_at);
                }
            }
        }
        if self.in_flight.len() >= self.config.max_in_flight {
            // No request can start until one ends, and its answer wakes the driver: a wakeup
            // for a waiting request now would make a driver spin.
            return times.into_iter().min();
        }
        let can_start_push =
            |c: &CollectionSync| c.own_levels_read && c.push.is_none() && !c.outbox.is_empty();
        if let Some(due) = self.push_due_at
            && self.collections.values().any(can_start_push)
        {
            times.push(due);
        }
        for collection in self.collections.values() {
            if let Some(push) = &collection.push
                && !push.retry.in_flight
            {
                times.push(push.retry.not_before);
            }
            for level in collection.remotes.values().flatten() {
                if level.wanted && !level.retry.in_flight {
                    times.push(level.retry.not_before);
                }
            }
        }
        times.into_iter().min()
    }

    /// The next thing to do, or `None` until something arrives or [`SyncEngine::next_wakeup`].
    pub fn poll(&mut self, local_wall_millis: u64) -> Option<Step> {
        let now = local_wall_millis;
        if self.dirty {
            self.dirty = false;
            return Some(Step::Persist);
        }
        if let Some(step) = self.announcements.pop_front() {
            return Some(step);
        }
        if self.stopped.is_some() {
            return None;
        }
        if let Some(step) = self.poll_grant(now) {
            return Some(step);
        }
        self.grant.as_ref()?;
        self.start_round_if_due(now);
        if self.in_flight.len() >= self.config.max_in_flight {
            return None;
        }
        if let Some(step) = self.poll_push(now) {
            return Some(step);
        }
        if let Some(step) = self.poll_read(now) {
            return Some(step);
        }
        if self.finish_round_if_done(now) {
            // Another round was asked for while this one ran: it starts in this same poll.
            return self.poll(local_wall_millis);
        }
        None
    }

    fn grant_refresh_at(&self, grant: &Grant) -> u64 {
        let lifetime = grant.expires_at.saturating_sub(grant.server_time);
        let margin = self.config.grant_refresh_margin_millis.min(lifetime / 4);
        // Server time to local time: subtract the offset learned with the grant.
        let refresh_server_time = grant.expires_at.saturating_sub(margin);
        let offset = self.replica.clock().offset_millis();
        (i128::from(refresh_server_time) - i128::from(offset)).max(0) as u64
    }

    fn poll_grant(&mut self, now: u64) -> Option<Step> {
        let needed = match &self.grant {
            None => true,
            Some(grant) => {
                self.grant_stale
                    || now >= self.grant_refresh_at(grant)
                    || self.collections.keys().any(|c| !grant.covers(c))
            }
        };
        if !needed || !self.grant_fetch.ready(now) {
            return None;
        }
        self.grant_fetch.in_flight = true;
        Some(Step::FetchGrant {
            collections: self.collections.keys().cloned().collect(),
        })
    }

    /// Hands a grant from the server (the JSON body) to the engine.
    pub fn on_grant(&mut self, local_wall_millis: u64, body: &[u8]) -> Result<(), SyncError> {
        self.grant_fetch.in_flight = false;
        let grant = match Grant::parse(
            body,
            &self.config.space,
            self.device(),
            self.server_key.as_ref(),
        ) {
            Ok(grant) => grant,
            Err(error) => {
                if error == SyncError::ServerKeyChanged {
                    self.stop(error.clone());
                } else {
                    self.grant_failed(local_wall_millis);
                    self.events.push(SyncEvent::Problem(error.clone()));
                }
                return Err(error);
            }
        };
        self.grant_fetch.failures = 0;
        self.grant_stale = std::mem::take(&mut self.grant_stale_again);
        self.server_key = Some(grant.server_key);
        // The grant carries the server's time: writes are stamped in it from now on.
        let offset = i128::from(grant.server_time) - i128::from(local_wall_millis);
        self.replica
            .clock_mut()
            .set_offset_millis(offset.clamp(i64::MIN.into(), i64::MAX.into()) as i64);
        let new_authors = match &self.grant {
            Some(old) => grant.authors.difference(&old.authors).count(),
            None => grant.authors.len(),
        };
        let newly_covered: Vec<String> = self
            .collections
            .keys()
            .filter(|c| grant.covers(c) && !self.grant.as_ref().is_some_and(|old| old.covers(c)))
            .cloned()
            .collect();
        if new_authors > 0 || !newly_covered.is_empty() {
            // New devices or collections: read them now rather than at the next round. A
            // round under way read from the old grant: another one starts once it ends.
            self.round.again |= self.round.active;
            self.round.next_at = self.round.next_at.min(local_wall_millis);
            self.round.interval = self.config.poll_min_millis;
        }
        // A collection first written while a round was under way (before any grant covered
        // it) must read its own levels back before it can push: do that now, not at the
        // next round, which may be minutes away on a live device.
        let me = self.key.device_id();
        for name in &newly_covered {
            let collection = self.collections.get_mut(name).expect("listed above");
            if !collection.own_levels_read {
                for level in collection.remote(me) {
                    level.wanted = true;
                }
            }
        }
        self.grant = Some(grant);
        self.dirty = true;
        Ok(())
    }

    /// Hands an event of the server's stream to the engine: `hello` and `reset` mean the
    /// device is live (announcements flow) and may have missed some, so everything is polled
    /// now; `pack` names a level to read; `devices` asks for a new grant.
    pub fn on_server_event(&mut self, local_wall_millis: u64, event: &ServerEvent) {
        match event {
            ServerEvent::Hello { .. } | ServerEvent::Reset { .. } => {
                self.set_live(true);
                self.sync_now(local_wall_millis);
            }
            ServerEvent::Pack {
                device,
                collection,
                level,
                etag,
                ..
            } => self.on_announcement(*device, collection, *level, etag.as_deref()),
            ServerEvent::Devices { .. } => self.on_devices_changed(),
        }
    }

    /// The grant request failed: `status` is the server's HTTP status, or `None` if it could
    /// not be reached. 403 and 404 (device revoked, member removed, space gone) stop syncing;
    /// anything else is retried.
    pub fn on_grant_failed(&mut self, local_wall_millis: u64, status: Option<u16>, message: &str) {
        self.grant_fetch.in_flight = false;
        match status {
            Some(status @ (403 | 404)) => self.stop(SyncError::AccessDenied {
                status,
                message: message.to_string(),
            }),
            _ => {
                self.grant_failed(local_wall_millis);
                self.events
                    .push(SyncEvent::Problem(SyncError::GrantUnavailable(
                        message.to_string(),
                    )));
            }
        }
    }

    /// The grant must be replaced. A grant already on its way does not settle that: it may
    /// have been made before the reason arose.
    fn grant_went_stale(&mut self) {
        self.grant_stale = true;
        self.grant_stale_again |= self.grant_fetch.in_flight;
    }

    fn grant_failed(&mut self, now: u64) {
        // The next try is asked for after every reason so far: one more is not needed.
        self.grant_stale_again = false;
        self.grant_fetch.failures += 1;
        self.grant_fetch.not_before = now
            + self
                .config
                .retry
                .delay(self.grant_fetch.failures, &mut self.jitter);
    }

    fn stop(&mut self, error: SyncError) {
        self.events.push(SyncEvent::Stopped(error.clone()));
        self.stopped = Some(error);
    }

    fn start_round_if_due(&mut self, now: u64) {
        if self.round.active || now < self.round.next_at {
            return;
        }
        let Some(grant) = &self.grant else { return };
        let full = self
            .round
            .count
            .is_multiple_of(self.config.full_round_every.max(1));
        let me = self.key.device_id();
        for (name, collection) in &mut self.collections {
            if !collection.own_levels_read {
                for level in collection.remote(me) {
                    level.wanted = true;
                }
            }
            for author in grant.authors.iter().filter(|d| **d != me) {
                if grant.get_url(name, author, 0).is_none() {
                    continue;
                }
                let levels = collection.remote(*author);
                let read = if full { levels.len() } else { 1 };
                for level in &mut levels[..read] {
                    level.wanted = true;
                }
            }
        }
        self.round.active = true;
        self.round.changed = false;
    }

    /// Ends the round if nothing is left to read; whether another one must start now.
    fn finish_round_if_done(&mut self, now: u64) -> bool {
        if !self.round.active {
            return false;
        }
        let pending = self
            .collections
            .values()
            .any(|c| c.remotes.values().flatten().any(|l| l.wanted));
        if pending {
            return false;
        }
        self.round.active = false;
        self.round.count += 1;
        self.round.interval = if self.round.changed {
            self.config.poll_min_millis
        } else {
            (self.round.interval * 2)
                .clamp(self.config.poll_min_millis, self.config.poll_max_millis)
        };
        let interval = if self.live {
            self.config.poll_live_millis
        } else {
            self.round.interval
        };
        // A round asked for while this one ran may not have seen what prompted it (a pack
        // pushed after this round read that level): it starts now.
        let again = std::mem::take(&mut self.round.again);
        self.round.next_at = if again { now } else { now + interval };
        self.events.push(SyncEvent::RoundComplete {
            changed: self.round.changed,
        });
        again
    }

    fn next_id(&mut self, target: Target) -> RequestId {
        self.next_request += 1;
        let id = RequestId(self.next_request);
        self.in_flight.insert(id, target);
        id
    }

    fn poll_push(&mut self, now: u64) -> Option<Step> {
        let grant = self.grant.as_ref()?;
        if !grant.role.can_write() {
            return None;
        }
        let due = self.push_due_at.is_some_and(|due| now >= due);
        let mut chosen = None;
        for (name, collection) in &mut self.collections {
            if !collection.own_levels_read || grant.put_url(name, 0).is_none() {
                continue;
            }
            if collection.push.is_none() && due && !collection.outbox.is_empty() {
                let mut outbox = State::new();
                for batch in &collection.outbox {
                    outbox.merge(batch);
                }
                match plan_push(
                    &self.config,
                    name,
                    &collection.levels,
                    &outbox,
                    &self.key,
                    self.config.space_key.as_ref(),
                ) {
                    Ok(writes) => {
                        collection.push = Some(Push {
                            writes: writes.into(),
                            carried: collection.outbox.len(),
                            retry: Retry::default(),
                        })
                    }
                    // Only a bug makes an outbox unsealable: report it, keep the outbox.
                    Err(error) => self.events.push(SyncEvent::Problem(error.into())),
                }
            }
            if let Some(push) = &mut collection.push
                && push.retry.ready(now)
                && let Some(write) = push.writes.front()
                && let Some(url) = grant.put_url(name, write.level)
            {
                push.retry.in_flight = true;
                chosen = Some((name.clone(), url.to_string(), write.bytes.clone()));
                break;
            }
        }
        if due
            && self
                .collections
                .values()
                .all(|c| c.outbox.is_empty() || c.push.is_some())
        {
            self.push_due_at = None;
        }
        let (collection, url, body) = chosen?;
        let id = self.next_id(Target::Push { collection });
        Some(Step::Http(HttpRequest {
            id,
            method: HttpMethod::Put,
            url,
            if_none_match: None,
            body,
        }))
    }

    fn poll_read(&mut self, now: u64) -> Option<Step> {
        let grant = self.grant.as_ref()?;
        let mut chosen = None;
        'search: for (name, collection) in &mut self.collections {
            for (device, levels) in &mut collection.remotes {
                for (level, remote) in levels.iter_mut().enumerate() {
                    if !remote.wanted || !remote.retry.ready(now) {
                        continue;
                    }
                    let level = level as u8;
                    match grant.get_url(name, device, level) {
                        Some(url) => {
                            remote.retry.in_flight = true;
                            chosen = Some((
                                name.clone(),
                                *device,
                                level,
                                url.to_string(),
                                remote.etag.clone(),
                            ));
                            break 'search;
                        }
                        // Not in this grant (revoked, or not yet known): nothing to read.
                        None => remote.wanted = false,
                    }
                }
            }
        }
        let (collection, device, level, url, etag) = chosen?;
        let id = self.next_id(Target::Level {
            collection,
            device,
            level,
        });
        Some(Step::Http(HttpRequest {
            id,
            method: HttpMethod::Get,
            url,
            if_none_match: etag,
            body: Vec::new(),
        }))
    }

    /// Hands the outcome of a [`Step::Http`] request to the engine.
    pub fn on_response(&mut self, local_wall_millis: u64, id: RequestId, outcome: HttpOutcome) {
        let Some(target) = self.in_flight.remove(&id) else {
            return;
        };
        match target {
            Target::Level {
                collection,
                device,
                level,
            } => self.on_level_response(local_wall_millis, &collection, device, level, outcome),
            Target::Push { collection } => {
                self.on_push_response(local_wall_millis, &collection, outcome)
            }
        }
        self.update_own_levels_read();
    }

    fn on_level_response(
        &mut self,
        now: u64,
        collection: &str,
        device: DeviceId,
        level: u8,
        outcome: HttpOutcome,
    ) {
        let Some(sync) = self.collections.get_mut(collection) else {
            return;
        };
        let slot = usize::from(level);
        sync.remote(device)[slot].retry.in_flight = false;
        let (status, etag, body, retry_after) = match outcome {
            HttpOutcome::Response {
                status,
                etag,
                body,
                retry_after_secs,
            } => (status, etag, body, retry_after_secs),
            HttpOutcome::Failed { reason } => {
                self.retry_level(now, collection, device, level, None);
                self.events
                    .push(SyncEvent::Problem(SyncError::StoreUnavailable(reason)));
                return;
            }
        };
        match status {
            200 => self.merge_pack(now, collection, device, level, etag, &body),
            304 | 404 => self.level_done(collection, device, level),
            403 => {
                // Presigned URLs stop working when the grant expires: get a new one, then
                // read again.
                self.grant_went_stale();
                self.retry_level(now, collection, device, level, None);
            }
            429 | 500..=599 => {
                self.retry_level(now, collection, device, level, retry_after);
                self.events
                    .push(SyncEvent::Problem(SyncError::StoreUnavailable(format!(
                        "GET answered {status}"
                    ))));
            }
            _ => {
                self.retry_level(now, collection, device, level, None);
                self.events
                    .push(SyncEvent::Problem(SyncError::StoreRefused {
                        method: "GET",
                        status,
                    }));
            }
        }
    }

    fn level_done(&mut self, collection: &str, device: DeviceId, level: u8) {
        if let Some(sync) = self.collections.get_mut(collection) {
            let remote = &mut sync.remote(device)[usize::from(level)];
            remote.settled();
            remote.retry.failures = 0;
        }
    }

    fn retry_level(
        &mut self,
        now: u64,
        collection: &str,
        device: DeviceId,
        level: u8,
        retry_after_secs: Option<u64>,
    ) {
        let Some(sync) = self.collections.get_mut(collection) else {
            return;
        };
        let remote = &mut sync.remote(device)[usize::from(level)];
        remote.retry.failures += 1;
        let backoff = self
            .config
            .retry
            .delay(remote.retry.failures, &mut self.jitter);
        let asked = retry_after_secs.unwrap_or(0).saturating_mul(1_000);
        remote.retry.not_before = now + backoff.max(asked);
    }

    fn merge_pack(
        &mut self,
        now: u64,
        collection: &str,
        device: DeviceId,
        level: u8,
        etag: Option<String>,
        body: &[u8],
    ) {
        let me = self.device();
        if level == 0 && device != me {
            // L0 changed: a fold may have moved content up, so read the higher levels too,
            // whatever this pack turns out to be.
            if let Some(sync) = self.collections.get_mut(collection) {
                for higher in &mut sync.remote(device)[1..] {
                    higher.wanted = true;
                }
            }
        }
        let options = OpenOptions {
            space_key: self.config.space_key.as_ref(),
            require_encryption: self.config.space_key.is_some(),
            space: Some(&self.config.space),
            author: Some(device),
            collection: Some(collection),
        };
        let pack = match Pack::open(body, &options) {
            Ok(pack) if pack.header.level != level => {
                let error = PackError::Malformed("pack is stored under another level's key");
                self.refuse(collection, device, level, etag, error.into());
                return;
            }
            Ok(pack) => pack,
            Err(error) if bytes_damaged(&error) => {
                // What arrived is not what the author signed (cut short, corrupted on the way):
                // read it again soon, it may be fine in the bucket. After a few tries in a row
                // the pack itself is taken to be bad, until a later round or announcement.
                self.retry_level(now, collection, device, level, None);
                if let Some(sync) = self.collections.get_mut(collection) {
                    let remote = &mut sync.remote(device)[usize::from(level)];
                    if remote.retry.failures >= DAMAGED_PACK_TRIES {
                        remote.settled();
                        remote.retry.failures = 0;
                    }
                }
                self.events.push(SyncEvent::Rejected {
                    device,
                    collection: collection.to_string(),
                    level,
                    error: error.into(),
                });
                return;
            }
            Err(error) => {
                self.refuse(collection, device, level, etag, error.into());
                return;
            }
        };
        let sync = self
            .collections
            .get_mut(collection)
            .expect("the caller checked");
        let slot = usize::from(level);
        let seen = sync.remote(device)[slot].generation;
        if pack.header.generation < seen && device != me {
            self.refuse(
                collection,
                device,
                level,
                etag,
                SyncError::Replayed {
                    seen,
                    found: pack.header.generation,
                },
            );
            return;
        }
        if device == me {
            // This device's own level, read back after a start: whatever the bucket holds
            // that the checkpoint does not (a write whose success was never persisted, or a
            // lost local store) is adopted, so the next write of the level includes it.
            let own = &mut sync.levels[slot];
            own.state.merge(&pack.state);
            if pack.header.generation >= own.generation {
                own.generation = pack.header.generation;
                own.etag = etag.clone();
            }
            let mine = pack.state.version_vector().get(&me);
            self.replica.clock_mut().restore(mine);
        }
        let remote = &mut sync.remote(device)[slot];
        remote.etag = etag;
        remote.generation = remote.generation.max(pack.header.generation);
        remote.settled();
        remote.retry.failures = 0;
        let changed = self.replica.merge(&pack.state, now);
        self.dirty = true;
        if !changed.is_empty() {
            self.round.changed = true;
            self.events.push(SyncEvent::Changed(changed));
        }
    }

    /// Refuses an authentic pack for good: remembers its ETag so it is not downloaded again
    /// (a newer pack under the key is read as usual), and reports it.
    fn refuse(
        &mut self,
        collection: &str,
        device: DeviceId,
        level: u8,
        etag: Option<String>,
        error: SyncError,
    ) {
        // A pack refused for want of the right space key is not remembered: it is read again
        // each round, so the refusal stays visible (a silent gap is worse than the bytes) and
        // the pack is merged as soon as the key is set.
        let key_problem = matches!(
            error,
            SyncError::Pack(
                PackError::KeyRequired | PackError::DecryptionFailed | PackError::NotEncrypted
            )
        );
        if let Some(sync) = self.collections.get_mut(collection) {
            let remote = &mut sync.remote(device)[usize::from(level)];
            remote.settled();
            if etag.is_some() && !key_problem {
                remote.etag = etag;
                self.dirty = true;
            }
        }
        self.events.push(SyncEvent::Rejected {
            device,
            collection: collection.to_string(),
            level,
            error,
        });
    }

    fn on_push_response(&mut self, now: u64, collection: &str, outcome: HttpOutcome) {
        let Some(sync) = self.collections.get_mut(collection) else {
            return;
        };
        let Some(push) = &mut sync.push else { return };
        push.retry.in_flight = false;
        let grant_expired = matches!(outcome, HttpOutcome::Response { status: 403, .. });
        let failure = match outcome {
            HttpOutcome::Response {
                status: 200..=299,
                etag,
                ..
            } => {
                let write = push.writes.pop_front().expect("a write was in flight");
                push.retry.failures = 0;
                let level = write.level;
                sync.levels[usize::from(level)] = OwnLevel {
                    state: write.state,
                    generation: write.generation,
                    etag: etag.clone(),
                };
                // Reading the level back (after a restart) should cost a 304.
                let me = self.key.device_id();
                let own = &mut sync.remote(me)[usize::from(level)];
                own.etag = etag.clone();
                own.generation = write.generation;
                if sync.push.as_ref().is_some_and(|p| p.writes.is_empty()) {
                    let carried = sync.push.take().map_or(0, |p| p.carried);
                    sync.outbox.drain(..carried);
                    self.events.push(SyncEvent::Acknowledged {
                        collection: collection.to_string(),
                        writes: carried,
                    });
                    if !sync.outbox.is_empty() {
                        self.push_due_at = Some(now);
                    }
                }
                self.dirty = true;
                self.announcements.push_back(Step::Announce {
                    collection: collection.to_string(),
                    level,
                    etag,
                });
                return;
            }
            // Presigned URLs stop working when the grant expires: a new grant is asked for
            // below, once `push` no longer borrows the collection; then the PUT goes again.
            HttpOutcome::Response { status: 403, .. } => (None, None),
            HttpOutcome::Response {
                status: status @ (429 | 500..=599),
                retry_after_secs,
                ..
            } => (
                Some(SyncError::StoreUnavailable(format!(
                    "PUT answered {status}"
                ))),
                retry_after_secs,
            ),
            HttpOutcome::Response { status, .. } => (
                Some(SyncError::StoreRefused {
                    method: "PUT",
                    status,
                }),
                None,
            ),
            HttpOutcome::Failed { reason } => (Some(SyncError::StoreUnavailable(reason)), None),
        };
        // The PUT may or may not have landed; sending the same bytes again is harmless.
        let (error, retry_after) = failure;
        push.retry.failures += 1;
        let backoff = self
            .config
            .retry
            .delay(push.retry.failures, &mut self.jitter);
        push.retry.not_before = now + backoff.max(retry_after.unwrap_or(0) * 1_000);
        if let Some(error) = error {
            self.events.push(SyncEvent::Problem(error));
        }
        if grant_expired {
            self.grant_went_stale();
        }
    }

    fn update_own_levels_read(&mut self) {
        let me = self.key.device_id();
        for collection in self.collections.values_mut() {
            if !collection.own_levels_read
                && collection
                    .remotes
                    .get(&me)
                    .is_some_and(|levels| levels.iter().all(|l| !l.wanted && !l.retry.in_flight))
            {
                collection.own_levels_read = true;
            }
        }
    }
}

/// How many times in a row a pack whose bytes fail to verify is read before giving up on it
/// for the round.
const DAMAGED_PACK_TRIES: u32 = 3;

/// Errors meaning the bytes received are not what the author signed: worth reading again.
fn bytes_damaged(error: &PackError) -> bool {
    matches!(
        error,
        PackError::NotAPack
            | PackError::Truncated(_)
            | PackError::Malformed(_)
            | PackError::BadSignature { .. }
    )
}
