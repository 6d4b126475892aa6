//! The server's event stream (server-sent events), parsed into what the engine needs.

use serde::Deserialize;
use tidemark_core::DeviceId;

use crate::api::ApiError;

/// An event from `GET /v1/spaces/{space}/events`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerEvent {
    /// The stream is up.
    Hello {
        /// Event id, to resume after.
        id: Option<String>,
    },
    /// Announcements may have been missed: poll everything.
    Reset {
        /// Event id.
        id: Option<String>,
    },
    /// A device wrote a level pack.
    Pack {
        /// Event id.
        id: Option<String>,
        /// The writer.
        device: DeviceId,
        /// The collection.
        collection: String,
        /// The level written.
        level: u8,
        /// Its new ETag.
        etag: Option<String>,
    },
    /// The space's devices changed: a new grant is needed.
    Devices {
        /// Event id.
        id: Option<String>,
    },
    /// Internal to the driver: time to reconnect the stream.
    Reconnect,
}

#[derive(Deserialize)]
struct PackData {
    device: DeviceId,
    collection: String,
    level: u8,
    etag: Option<String>,
}

/// Parses one event block (`event:`, `data:`, `id:` lines). Unknown or malformed events are
/// skipped: a newer server may send kinds this client does not know.
pub fn parse_event(block: &str) -> Option<ServerEvent> {
    let (mut kind, mut data, mut id) = ("message", String::new(), None);
    for line in block.lines() {
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => kind = value,
            "data" => {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(value);
            }
            "id" => id = Some(value.to_string()),
            _ => {}
        }
    }
    match kind {
        "hello" => Some(ServerEvent::Hello { id }),
        "reset" => Some(ServerEvent::Reset { id }),
        "devices" => Some(ServerEvent::Devices { id }),
        "pack" => {
            let pack: PackData = serde_json::from_str(&data).ok()?;
            Some(ServerEvent::Pack {
                id,
                device: pack.device,
                collection: pack.collection,
                level: pack.level,
                etag: pack.etag,
            })
        }
        _ => None,
    }
}

/// Reads events from an open stream until it ends, handing each to `on_event`.
pub async fn read_events(
    mut response: reqwest::Response,
    mut on_event: impl FnMut(ServerEvent),
) -> Result<(), ApiError> {
    let mut buffer = String::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| ApiError::Unreachable(e.to_string()))?
    {
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        // Events end with a blank line; normalise CRLF so one rule finds them.
        if buffer.contains('\r') {
            buffer = buffer.replace("\r\n", "\n");
        }
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            if let Some(event) = parse_event(&block) {
                on_event(event);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pack_announcements_and_skips_unknown_events() {
        let device = DeviceId::from_bytes([3; 32]);
        let block = format!(
            "id: 7.12\nevent: pack\ndata: {{\"device\":\"{device}\",\"collection\":\"orders\",\"level\":0,\"etag\":\"\\\"abc\\\"\",\"at\":1}}\n\n"
        );
        assert_eq!(
            parse_event(&block),
            Some(ServerEvent::Pack {
                id: Some("7.12".into()),
                device,
                collection: "orders".into(),
                level: 0,
                etag: Some("\"abc\"".into()),
            })
        );
        assert_eq!(parse_event("event: future-kind\ndata: {}\n\n"), None);
        assert_eq!(parse_event(": keep-alive\n\n"), None);
        assert_eq!(
            parse_event("event: hello\nid: 1.0\ndata: {}\n\n"),
            Some(ServerEvent::Hello {
                id: Some("1.0".into())
            })
        );
    }
}
