//! The IndexedDB layout.
//!
//! ```text
//! database "tidemark:{name}", version 1
//!   meta     "device"     → Uint8Array(32)  the device key's seed, made on first open
//!            "space"      → string          the space the checkpoint belongs to
//!            "checkpoint" → Uint8Array      the sync engine's checkpoint: replica, outbox,
//!                                           levels, ETags, grant (see tidemark-core)
//!            "connection" → string (JSON)   where and how this store syncs (server, token)
//!            "spaceKey"   → Uint8Array(32)  the space's end-to-end key, when it has one
//!   journal  seq: number  → Uint8Array      one write batch (an encoded State), in order
//! ```
//!
//! Cold start reads one checkpoint and the (short) journal: one record decoded in wasm in one
//! call, never one record per document. A write batch is acknowledged when its journal record
//! is committed; now and then the journal is folded into a new checkpoint, in one transaction
//! that also deletes the journal records the checkpoint holds, so the two never disagree.

use indexed_db_futures::database::{Database, ObjectStoreName, VersionChangeEvent};
use indexed_db_futures::prelude::*;
use indexed_db_futures::transaction::{Transaction, TransactionMode};
use js_sys::Uint8Array;
use wasm_bindgen::{JsCast, JsValue};

use crate::error::StoreError;

const SCHEMA_VERSION: u32 = 1;
const META: &str = "meta";
const JOURNAL: &str = "journal";
const DEVICE_KEY: &str = "device";
const SPACE_KEY: &str = "space";
const CHECKPOINT_KEY: &str = "checkpoint";
const CONNECTION_KEY: &str = "connection";
const SPACE_KEY_KEY: &str = "spaceKey";

/// What a store keeps in IndexedDB, as read on open.
#[derive(Debug, Default)]
pub struct Stored {
    /// The device key's seed.
    pub device_seed: Option<[u8; 32]>,
    /// The space of the checkpoint.
    pub space: Option<String>,
    /// The last checkpoint.
    pub checkpoint: Option<Vec<u8>>,
    /// Write batches newer than the checkpoint, oldest first, with their sequence numbers.
    pub journal: Vec<(u64, Vec<u8>)>,
    /// The sync connection, as JSON.
    pub connection: Option<String>,
    /// The space's end-to-end key.
    pub space_key: Option<[u8; 32]>,
}

/// One store's IndexedDB database.
#[derive(Debug)]
pub struct Disk {
    db: Database,
}

impl Disk {
    /// The database name of the store called `name`.
    pub fn database_name(name: &str) -> String {
        format!("tidemark:{name}")
    }

    /// Opens (creating when new) the database of the store called `name`.
    pub async fn open(name: &str) -> Result<Disk, StoreError> {
        let db = Database::open(&Disk::database_name(name))
            .with_version(SCHEMA_VERSION)
            .with_on_upgrade_needed(|event: VersionChangeEvent, db: Database| {
                if event.old_version() < 1.0 {
                    db.create_object_store(META).build()?;
                    db.create_object_store(JOURNAL).build()?;
                }
                Ok(())
            })
            .await?;
        Ok(Disk { db })
    }

    /// Reads everything, in one read-only transaction.
    pub async fn load(&self) -> Result<Stored, StoreError> {
        let tx = self
            .db
            .transaction([META, JOURNAL])
            .with_mode(TransactionMode::Readonly)
            .build()?;
        let meta = tx.object_store(META)?;
        let journal = tx.object_store(JOURNAL)?;
        let device: Option<JsValue> = meta.get(DEVICE_KEY).primitive()?.await?;
        let space: Option<JsValue> = meta.get(SPACE_KEY).primitive()?.await?;
        let checkpoint: Option<JsValue> = meta.get(CHECKPOINT_KEY).primitive()?.await?;
        let connection: Option<JsValue> = meta.get(CONNECTION_KEY).primitive()?.await?;
        let space_key: Option<JsValue> = meta.get(SPACE_KEY_KEY).primitive()?.await?;
        let keys: Vec<JsValue> = journal
            .get_all_keys()
            .primitive()?
            .await?
            .collect::<Result<_, _>>()?;
        let values: Vec<JsValue> = journal
            .get_all()
            .primitive()?
            .await?
            .collect::<Result<_, _>>()?;

        let device_seed = device.map(|v| key_of("the device key", &v)).transpose()?;
        let space_key = space_key.map(|v| key_of("the space key", &v)).transpose()?;
        let space = match space {
            None => None,
            Some(value) => Some(
                value
                    .as_string()
                    .ok_or_else(|| StoreError::Corrupt("the space is not a string".into()))?,
            ),
        };
        let checkpoint = checkpoint
            .map(|value| bytes_of("the checkpoint", &value))
            .transpose()?;
        if keys.len() != values.len() {
            return Err(StoreError::Storage(
                "journal keys and records disagree".into(),
            ));
        }
        let mut entries = Vec::with_capacity(keys.len());
        for (key, value) in keys.iter().zip(&values) {
            let seq = key
                .as_f64()
                .filter(|k| k.fract() == 0.0 && *k >= 0.0)
                .ok_or_else(|| StoreError::Corrupt(format!("journal key {key:?}")))?;
            entries.push((seq as u64, bytes_of("a journal record", value)?));
        }
        let connection = match connection {
            None => None,
            Some(value) => Some(
                value
                    .as_string()
                    .ok_or_else(|| StoreError::Corrupt("the connection is not a string".into()))?,
            ),
        };
        Ok(Stored {
            device_seed,
            space,
            checkpoint,
            journal: entries,
            connection,
            space_key,
        })
    }

    /// Stores a new device's identity and space, before anything else is written.
    pub async fn init(&self, device_seed: &[u8; 32], space: &str) -> Result<(), StoreError> {
        let tx = self.read_write(META)?;
        let meta = tx.object_store(META)?;
        meta.put(JsValue::from(Uint8Array::from(&device_seed[..])))
            .with_key(DEVICE_KEY)
            .primitive()?;
        meta.put(JsValue::from(space))
            .with_key(SPACE_KEY)
            .primitive()?;
        tx.commit().await?;
        Ok(())
    }

    /// Appends one write batch to the journal; resolves once it is committed.
    pub async fn append(&self, seq: u64, batch: &[u8]) -> Result<(), StoreError> {
        let tx = self.read_write(JOURNAL)?;
        tx.object_store(JOURNAL)?
            .put(JsValue::from(Uint8Array::from(batch)))
            .with_key(seq as f64)
            .primitive()?;
        tx.commit().await?;
        Ok(())
    }

    /// Resolves once every transaction started before it has committed: IndexedDB runs
    /// read-write transactions over the same stores in the order they were made.
    pub async fn barrier(&self) -> Result<(), StoreError> {
        let tx = self.read_write([META, JOURNAL])?;
        tx.commit().await?;
        Ok(())
    }

    /// Replaces the checkpoint and drops the journal records up to `journal_upto` (which the
    /// checkpoint holds), in one transaction.
    pub async fn save_checkpoint(
        &self,
        space: &str,
        checkpoint: &[u8],
        journal_upto: Option<u64>,
    ) -> Result<(), StoreError> {
        let tx = self.read_write([META, JOURNAL])?;
        let meta = tx.object_store(META)?;
        meta.put(JsValue::from(space))
            .with_key(SPACE_KEY)
            .primitive()?;
        meta.put(JsValue::from(Uint8Array::from(checkpoint)))
            .with_key(CHECKPOINT_KEY)
            .primitive()?;
        if let Some(upto) = journal_upto {
            tx.object_store(JOURNAL)?
                .delete(0.0..=(upto as f64))
                .primitive()?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Stores the sync connection (JSON), or forgets it.
    pub async fn save_connection(&self, connection: Option<&str>) -> Result<(), StoreError> {
        self.put_meta(CONNECTION_KEY, connection.map(JsValue::from))
            .await
    }

    /// Stores the space key, or forgets it.
    pub async fn save_space_key(&self, key: Option<&[u8; 32]>) -> Result<(), StoreError> {
        let value = key.map(|k| JsValue::from(Uint8Array::from(&k[..])));
        self.put_meta(SPACE_KEY_KEY, value).await
    }

    async fn put_meta(&self, key: &str, value: Option<JsValue>) -> Result<(), StoreError> {
        let tx = self.read_write(META)?;
        let meta = tx.object_store(META)?;
        match value {
            Some(value) => {
                meta.put(value).with_key(key).primitive()?;
            }
            None => {
                meta.delete(key).primitive()?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    fn read_write<S: ObjectStoreName>(&self, stores: S) -> Result<Transaction<'_>, StoreError> {
        Ok(self
            .db
            .transaction(stores)
            .with_mode(TransactionMode::Readwrite)
            .build()?)
    }

    /// Closes the connection; later calls fail.
    pub fn close(self) {
        self.db.close();
    }
}

fn key_of(what: &str, value: &JsValue) -> Result<[u8; 32], StoreError> {
    let bytes = bytes_of(what, value)?;
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| StoreError::Corrupt(format!("{what} has {} bytes, not 32", bytes.len())))
}

fn bytes_of(what: &str, value: &JsValue) -> Result<Vec<u8>, StoreError> {
    value
        .dyn_ref::<Uint8Array>()
        .map(Uint8Array::to_vec)
        .ok_or_else(|| StoreError::Corrupt(format!("{what} is not bytes")))
}
