//! Errors, and how they reach JavaScript: an `Error` whose `code` is stable and whose message
//! says what happened.

#[cfg(feature = "store")]
use tidemark_core::sync::SyncError;
use tidemark_core::{DecodeError, QueryError, WriteError};
use wasm_bindgen::JsValue;

/// Everything the store can refuse or fail at.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A write was refused (bad name, too large, not found, …); nothing was stored.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// The sync engine refused (another space, a read-only device, …).
    #[cfg(feature = "store")]
    #[error(transparent)]
    Sync(#[from] SyncError),
    /// A query is malformed.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// Bytes handed to a replica are not a state encoding (damaged, cut short, not ours).
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// An argument from JavaScript has the wrong shape.
    #[error("{0}")]
    BadArgument(String),
    /// IndexedDB failed (quota, a closed connection, a browser refusing storage).
    #[error("IndexedDB failed: {0}")]
    Storage(String),
    /// A stored record cannot be read. The record is left as it is, so nothing is lost by
    /// opening: a newer build may read it, and `export` of the raw records still works.
    #[error("stored data is damaged ({0}); nothing was changed")]
    Corrupt(String),
    /// The store was closed.
    #[error("the store is closed")]
    Closed,
    /// Needs a connection (`sync.connect`) the store does not have.
    #[error("this store is not connected (call sync.connect first)")]
    NotConnected,
    /// Sync is paused (`pause`); `connect()` resumes it.
    #[error("sync is paused (call sync.connect() to resume)")]
    Paused,
    /// The sync server refused or could not be reached (its code, or `sync.unreachable`).
    #[error("{message}")]
    Server {
        /// The server's stable code.
        code: String,
        /// What happened.
        message: String,
    },
}

impl StoreError {
    /// The stable code of this error.
    pub fn code(&self) -> &str {
        match self {
            StoreError::Server { code, .. } => code,
            StoreError::Write(e) => e.code(),
            #[cfg(feature = "store")]
            StoreError::Sync(e) => e.code(),
            StoreError::Query(e) => e.code(),
            StoreError::Decode(e) => e.code(),
            StoreError::BadArgument(_) => "store.bad_argument",
            StoreError::Storage(_) => "store.storage",
            StoreError::Corrupt(_) => "store.corrupt",
            StoreError::Closed => "store.closed",
            StoreError::NotConnected => "sync.not_connected",
            StoreError::Paused => "sync.paused",
        }
    }

    /// The error as a JavaScript `Error` with `name` `"TidemarkError"` and a `code`.
    pub fn to_js(&self) -> JsValue {
        let error = js_sys::Error::new(&self.to_string());
        error.set_name("TidemarkError");
        // Setting a property on a fresh Error object cannot fail.
        let _ = js_sys::Reflect::set(&error, &"code".into(), &self.code().into());
        error.into()
    }
}

impl From<StoreError> for JsValue {
    fn from(error: StoreError) -> JsValue {
        error.to_js()
    }
}

#[cfg(feature = "store")]
impl From<indexed_db_futures::error::Error> for StoreError {
    fn from(error: indexed_db_futures::error::Error) -> StoreError {
        StoreError::Storage(error.to_string())
    }
}

#[cfg(feature = "store")]
impl From<indexed_db_futures::error::OpenDbError> for StoreError {
    fn from(error: indexed_db_futures::error::OpenDbError) -> StoreError {
        StoreError::Storage(error.to_string())
    }
}
