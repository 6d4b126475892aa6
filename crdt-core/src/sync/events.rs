//! The server's event stream (`GET /v1/spaces/{space}/events`, server-sent events), parsed
//! into what the engine needs. Pure parsing: drivers feed it the bytes as they arrive.

use serde::Deserialize;

use crate::device::DeviceId;

/// An event from the server's stream.
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
}

impl ServerEvent {
    /// The event's id, to send as `Last-Event-ID` when reconnecting.
    pub fn id(&self) -> Option<&str> {
        match self {
            ServerEvent::Hello { id }
            | ServerEvent::Reset { id }
            | ServerEvent::Pack { id, .. }
            | ServerEvent::Devices { id } => id.as_deref(),
        }
    }
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

/// Splits a stream's bytes, in whatever chunks they arrive, into events.
#[derive(Debug, Default)]
pub struct EventStream {
    pending: Vec<u8>,
}

impl EventStream {
    /// An empty stream.
    pub fn new() -> EventStream {
        EventStream::default()
    }

    /// Takes the next chunk of bytes; returns the events it completed.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<ServerEvent> {
        self.pending.extend_from_slice(chunk);
        let mut events = Vec::new();
        // Events end with a blank line (LF or CRLF line ends). A chunk may end inside a
        // UTF-8 sequence, so blocks are cut on bytes and decoded only when whole.
        while let Some((end, separator)) = find_blank_line(&self.pending) {
            let block: Vec<u8> = self.pending.drain(..end + separator).collect();
            let text = String::from_utf8_lossy(&block[..end]).replace("\r\n", "\n");
            events.extend(parse_event(&text));
        }
        events
    }
}

/// Where the first blank line starts and how long the separator is.
fn find_blank_line(bytes: &[u8]) -> Option<(usize, usize)> {
    (0..bytes.len()).find_map(|i| {
        if bytes[i..].starts_with(b"\n\n") {
            Some((i, 2))
        } else if bytes[i..].starts_with(b"\r\n\r\n") {
            Some((i, 4))
        } else {
            None
        }
    })
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

    #[test]
    fn events_split_across_chunks_and_line_ends_come_out_whole() {
        let text = "event: hello\r\nid: 1\r\ndata: {}\r\n\r\n: ping\n\nevent: devices\nid: 2\ndata: {\"é\":1}\n\n";
        for cut in 1..text.len() {
            let mut stream = EventStream::new();
            let bytes = text.as_bytes();
            let mut events = stream.push(&bytes[..cut]);
            events.extend(stream.push(&bytes[cut..]));
            assert_eq!(
                events,
                [
                    ServerEvent::Hello {
                        id: Some("1".into())
                    },
                    ServerEvent::Devices {
                        id: Some("2".into())
                    },
                ],
                "cut at {cut}"
            );
        }
    }
}
