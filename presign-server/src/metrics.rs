//! Prometheus metrics, kept as plain atomics and rendered as the text exposition format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters the server keeps.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    /// Grants issued.
    pub grants: AtomicU64,
    /// URLs presigned.
    pub presigned_urls: AtomicU64,
    /// Announcements received.
    pub announcements: AtomicU64,
    /// Devices registered.
    pub registrations: AtomicU64,
    /// Sessions opened.
    pub sessions: AtomicU64,
    /// Requests refused by the rate limiter.
    pub rate_limited: AtomicU64,
}

impl Metrics {
    /// Counts one answered request of a route.
    pub fn count_request(&self, route: &str, status: u16) {
        let mut requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        *requests.entry((route.to_owned(), status)).or_default() += 1;
    }

    /// The text exposition format, with the gauges passed in.
    pub fn render(&self, subscribers: usize, uptime_secs: u64) -> String {
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, help: &str, value: &AtomicU64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
        };
        counter(
            &mut out,
            "tidemark_grants_total",
            "Grants issued.",
            &self.grants,
        );
        counter(
            &mut out,
            "tidemark_presigned_urls_total",
            "Object-store URLs presigned.",
            &self.presigned_urls,
        );
        counter(
            &mut out,
            "tidemark_announcements_total",
            "Pack announcements received.",
            &self.announcements,
        );
        counter(
            &mut out,
            "tidemark_device_registrations_total",
            "Devices registered.",
            &self.registrations,
        );
        counter(
            &mut out,
            "tidemark_sessions_total",
            "Sessions opened.",
            &self.sessions,
        );
        counter(
            &mut out,
            "tidemark_rate_limited_total",
            "Requests refused by the rate limiter.",
            &self.rate_limited,
        );
        let _ = writeln!(
            out,
            "# HELP tidemark_event_subscribers Connected event-stream subscribers.\n\
             # TYPE tidemark_event_subscribers gauge\ntidemark_event_subscribers {subscribers}"
        );
        let _ = writeln!(
            out,
            "# HELP tidemark_uptime_seconds Seconds since the server started.\n\
             # TYPE tidemark_uptime_seconds gauge\ntidemark_uptime_seconds {uptime_secs}"
        );
        let _ = writeln!(
            out,
            "# HELP tidemark_http_requests_total HTTP requests answered, by route and status.\n\
             # TYPE tidemark_http_requests_total counter"
        );
        let requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        for ((route, status), count) in requests.iter() {
            let route = route.replace('\\', "\\\\").replace('"', "\\\"");
            let _ = writeln!(
                out,
                "tidemark_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {count}"
            );
        }
        out
    }
}
