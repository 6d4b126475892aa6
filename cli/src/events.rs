//! The server's event stream over reqwest. Parsing is the core's
//! ([`tidemark_core::sync::EventStream`]), shared with the browser driver.

use tidemark_core::sync::EventStream;
pub use tidemark_core::sync::ServerEvent;

use crate::api::ApiError;

/// Reads events from an open stream until it ends, handing each to `on_event`.
pub async fn read_events(
    mut response: reqwest::Response,
    mut on_event: impl FnMut(ServerEvent),
) -> Result<(), ApiError> {
    let mut stream = EventStream::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| ApiError::Unreachable(e.to_string()))?
    {
        stream.push(&chunk).into_iter().for_each(&mut on_event);
    }
    Ok(())
}
