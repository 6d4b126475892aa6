//! Announcements: per-space event channels with a short replay window.
//!
//! Event ids are `{boot}.{sequence}`: `boot` changes at every server start, so a client that
//! reconnects with a `Last-Event-ID` from before a restart (or from before the replay window)
//! gets a `reset` event, telling it to poll every pack once, instead of silently missing events.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

/// How many recent events per space are kept for reconnecting clients.
pub const REPLAY_EVENTS: usize = 256;
/// How many events a slow subscriber may fall behind before it is told to `reset`.
const SUBSCRIBER_BUFFER: usize = 1024;

/// One announcement.
#[derive(Debug)]
pub struct Event {
    /// `{boot}.{sequence}`.
    pub id: String,
    sequence: u64,
    /// Event name: `pack` or `devices`.
    pub kind: &'static str,
    /// JSON payload.
    pub data: String,
}

#[derive(Debug)]
struct SpaceChannel {
    sender: broadcast::Sender<Arc<Event>>,
    recent: VecDeque<Arc<Event>>,
    next_sequence: u64,
}

/// What a new subscriber gets.
#[derive(Debug)]
pub struct Subscription {
    /// Events after the client's `Last-Event-ID`, oldest first.
    pub replay: Vec<Arc<Event>>,
    /// The client's last event is unknown or too old: it must resynchronise.
    pub reset: bool,
    /// Live events.
    pub receiver: broadcast::Receiver<Arc<Event>>,
}

/// All spaces' channels.
#[derive(Debug)]
pub struct EventHub {
    boot: String,
    spaces: Mutex<HashMap<String, SpaceChannel>>,
    /// Set when the server shuts down: subscriptions end, so that the graceful shutdown does
    /// not wait for event streams that never finish.
    closed: AtomicBool,
}

impl EventHub {
    /// A hub whose event ids start with `boot`.
    pub fn new(boot: String) -> EventHub {
        EventHub {
            boot,
            spaces: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
        }
    }

    /// Ends every subscription, now and to come (their receivers see `Closed`).
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        // Dropping the senders closes the receivers.
        self.spaces
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    fn channel<'a>(
        spaces: &'a mut HashMap<String, SpaceChannel>,
        space: &str,
    ) -> &'a mut SpaceChannel {
        spaces
            .entry(space.to_owned())
            .or_insert_with(|| SpaceChannel {
                sender: broadcast::channel(SUBSCRIBER_BUFFER).0,
                recent: VecDeque::with_capacity(REPLAY_EVENTS),
                next_sequence: 1,
            })
    }

    /// Publishes an event to a space; its id.
    pub fn publish(&self, space: &str, kind: &'static str, data: String) -> String {
        let mut spaces = self.spaces.lock().unwrap_or_else(|e| e.into_inner());
        let channel = Self::channel(&mut spaces, space);
        let sequence = channel.next_sequence;
        channel.next_sequence += 1;
        let event = Arc::new(Event {
            id: format!("{}.{sequence}", self.boot),
            sequence,
            kind,
            data,
        });
        if channel.recent.len() == REPLAY_EVENTS {
            channel.recent.pop_front();
        }
        channel.recent.push_back(Arc::clone(&event));
        // No subscriber is not an error: the event waits in the replay window.
        let _ = channel.sender.send(Arc::clone(&event));
        event.id.clone()
    }

    /// Subscribes to a space, replaying what came after `last_event_id`.
    pub fn subscribe(&self, space: &str, last_event_id: Option<&str>) -> Subscription {
        let mut spaces = self.spaces.lock().unwrap_or_else(|e| e.into_inner());
        if self.closed.load(Ordering::SeqCst) {
            // A receiver whose sender is gone: the stream ends at once.
            return Subscription {
                replay: Vec::new(),
                reset: false,
                receiver: broadcast::channel(1).1,
            };
        }
        let channel = Self::channel(&mut spaces, space);
        let receiver = channel.sender.subscribe();
        let Some(last) = last_event_id.filter(|id| !id.is_empty()) else {
            return Subscription {
                replay: Vec::new(),
                reset: false,
                receiver,
            };
        };
        let sequence = last
            .split_once('.')
            .filter(|(boot, _)| *boot == self.boot)
            .and_then(|(_, sequence)| sequence.parse::<u64>().ok());
        let oldest_kept = channel
            .recent
            .front()
            .map_or(channel.next_sequence, |e| e.sequence);
        match sequence {
            // Everything after `sequence` is still in the window.
            Some(sequence) if sequence + 1 >= oldest_kept && sequence < channel.next_sequence => {
                Subscription {
                    replay: channel
                        .recent
                        .iter()
                        .filter(|e| e.sequence > sequence)
                        .cloned()
                        .collect(),
                    reset: false,
                    receiver,
                }
            }
            _ => Subscription {
                replay: Vec::new(),
                reset: true,
                receiver,
            },
        }
    }

    /// How many subscribers are connected, over all spaces.
    pub fn subscriber_count(&self) -> usize {
        let spaces = self.spaces.lock().unwrap_or_else(|e| e.into_inner());
        spaces.values().map(|c| c.sender.receiver_count()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::broadcast::error::TryRecvError;

    #[test]
    fn closing_ends_every_subscription() {
        let hub = EventHub::new("b1".into());
        let mut before = hub.subscribe("s", None).receiver;
        hub.close();
        assert!(matches!(before.try_recv(), Err(TryRecvError::Closed)));
        let mut after = hub.subscribe("s", None).receiver;
        assert!(matches!(after.try_recv(), Err(TryRecvError::Closed)));
    }

    #[test]
    fn reconnecting_client_gets_what_it_missed() {
        let hub = EventHub::new("b1".into());
        let first = hub.publish("s", "pack", "1".into());
        hub.publish("s", "pack", "2".into());
        hub.publish("s", "pack", "3".into());
        let subscription = hub.subscribe("s", Some(&first));
        assert!(!subscription.reset);
        let data: Vec<_> = subscription
            .replay
            .iter()
            .map(|e| e.data.as_str())
            .collect();
        assert_eq!(data, ["2", "3"]);
    }

    #[test]
    fn unknown_or_too_old_event_id_asks_for_reset() {
        let hub = EventHub::new("b2".into());
        let first = hub.publish("s", "pack", "0".into());
        for i in 0..REPLAY_EVENTS + 5 {
            hub.publish("s", "pack", i.to_string());
        }
        assert!(hub.subscribe("s", Some(&first)).reset);
        assert!(
            hub.subscribe("s", Some("b1.3")).reset,
            "id from another boot"
        );
        assert!(hub.subscribe("s", Some("garbage")).reset);
        assert!(
            hub.subscribe("s", Some("b2.99999")).reset,
            "id from the future"
        );
        assert!(!hub.subscribe("s", None).reset);
    }

    #[test]
    fn spaces_do_not_see_each_others_events() {
        let hub = EventHub::new("b".into());
        let mut other = hub.subscribe("other", None);
        hub.publish("s", "pack", "x".into());
        assert!(other.receiver.try_recv().is_err());
    }
}
