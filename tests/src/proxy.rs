//! A fault-injecting HTTP/1.1 reverse proxy that sits between native sync clients and an
//! S3-compatible object store.
//!
//! Clients are handed presigned SigV4 URLs whose host is the proxy's address; the proxy
//! forwards each request to the upstream store byte for byte (request line, every header in
//! its original spelling and order — `Host` included, since the signature covers it — and the
//! body) and relays the store's answer byte for byte, unless it injects a fault (see
//! [`Faults`]).
//!
//! It is written by hand over [`tokio::net::TcpStream`] rather than with an HTTP framework
//! for two reasons: frameworks normalise headers (a client library adds `accept`, rewrites
//! `Host`, re-frames bodies), which would make "the store saw exactly what the client signed"
//! unprovable; and the interesting faults — closing a connection without an answer, or after
//! half a body — are exactly what a well-behaved server framework will not let a handler do.
//!
//! Shape of the traffic:
//! - Client side: HTTP/1.1 keep-alive, one request at a time per connection (no pipelining),
//!   request bodies framed by `Content-Length` or `Transfer-Encoding: chunked`,
//!   `Expect: 100-continue` answered by the proxy itself.
//! - Upstream side: a fresh connection per request, so a fault never leaves a half-used
//!   pooled connection behind. Whole responses are buffered before anything is sent on,
//!   which keeps truncation and byte counting simple; test objects are small enough.
//! - When the upstream cannot be reached or answers garbage the client gets a `502`, marked
//!   with `x-fault-proxy: upstream-failed` (injected statuses carry `x-fault-proxy: injected`).

use std::collections::BTreeMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

use crate::random::SplitMix64;

/// Longest request or response head (start line plus headers) the proxy accepts.
const MAX_HEAD_BYTES: u64 = 64 * 1024;

/// Longest line inside a chunked body (a chunk-size line or a trailer).
const MAX_CHUNK_LINE_BYTES: u64 = 4 * 1024;

/// Seconds announced in the `Retry-After` header of an injected `429`.
const RETRY_AFTER_SECS: u32 = 1;

/// A running fault-injecting proxy. Dropping it stops it: the listener closes and every open
/// client connection is cut.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

/// What can go wrong with a request, as probabilities in `0.0..=1.0`.
///
/// For each request the proxy draws one number and walks the probabilities in field order
/// (`drop_before_forward`, `drop_after_forward`, `status_500`, `status_503`, `status_429`,
/// `truncate_body`), so a request suffers at most one fault; if they add up to more than 1
/// the later ones are squeezed out. `Faults::default()` is a faithful proxy.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Close the client connection without forwarding: the request never reached the store.
    pub drop_before_forward: f64,
    /// Forward the request (the store applies a `PUT`!) and then close the client connection
    /// without answering: the ambiguous failure where the client cannot know what happened.
    pub drop_after_forward: f64,
    /// Answer `500 Internal Server Error` without forwarding.
    pub status_500: f64,
    /// Answer `503 Service Unavailable` (S3's `SlowDown`) without forwarding.
    pub status_503: f64,
    /// Answer `429 Too Many Requests` with `Retry-After: 1` without forwarding.
    pub status_429: f64,
    /// Forward, then send the response head unchanged (with its original `Content-Length`)
    /// but only part of the body, then close. Responses without a body (a `PUT`'s answer,
    /// `304`, `HEAD`) cannot be truncated: they pass through and no fault is counted. (A
    /// body delimited by closing the connection, which HTTP/1.1 servers rarely send, would
    /// look complete to the client.)
    pub truncate_body: f64,
    /// Delay every request by a uniformly random duration in `min..=max` before it is
    /// forwarded or answered, as a slow link would. A delay is not counted as a fault.
    pub delay: Option<(Duration, Duration)>,
}

/// A snapshot of what the proxy has seen since it started or since [`FaultProxy::reset_stats`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Requests received from clients.
    pub requests: u64,
    /// Statuses the clients saw, by method: forwarded answers (truncated ones included),
    /// injected statuses and `502`s. Dropped requests saw no status and are not here.
    pub by_method_status: BTreeMap<(String, u16), u64>,
    /// Faults injected (drops, injected statuses, truncations; not delays).
    pub faults_injected: u64,
    /// Request body bytes forwarded to the upstream (payload bytes, without chunk framing).
    pub bytes_to_upstream: u64,
    /// Response body bytes received from the upstream (payload bytes, without chunk framing),
    /// whether or not the client got them all.
    pub bytes_from_upstream: u64,
}

impl Stats {
    /// How many times clients saw `status` in answer to `method` (for example `("GET", 304)`).
    pub fn count(&self, method: &str, status: u16) -> u64 {
        self.by_method_status
            .get(&(method.to_owned(), status))
            .copied()
            .unwrap_or(0)
    }
}

impl FaultProxy {
    /// Starts a proxy on a fresh port of `127.0.0.1` forwarding to `upstream`, with no faults.
    /// `seed` makes the fault draws reproducible (see [`FaultProxy::set_faults`]).
    pub async fn start(upstream: SocketAddr, seed: u64) -> io::Result<FaultProxy> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        Self::start_on(listener, upstream, seed).await
    }

    /// Starts a proxy on an already bound listener, so its address can be handed out (for
    /// example baked into the upstream server's presigning config) before the upstream starts.
    /// Must be called inside a tokio runtime.
    pub async fn start_on(
        listener: TcpListener,
        upstream: SocketAddr,
        seed: u64,
    ) -> io::Result<FaultProxy> {
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream,
            faults: Mutex::new(Faults::default()),
            rng: Mutex::new(SplitMix64(seed)),
            stats: Mutex::new(Stats::default()),
        });
        let accept = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        Ok(FaultProxy {
            addr,
            shared,
            accept,
        })
    }

    /// The address clients should talk to (and presigned URLs should name).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Replaces the fault configuration; requests whose fate is drawn after this call use it.
    ///
    /// Draws come from one seeded generator shared by all connections, so a given seed gives
    /// the same sequence of fates for the same sequence of requests; with concurrent
    /// requests the assignment of fates to requests follows their arrival order.
    pub fn set_faults(&self, faults: Faults) {
        *lock(&self.shared.faults) = faults;
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        lock(&self.shared.stats).clone()
    }

    /// Sets every counter back to zero.
    pub fn reset_stats(&self) {
        *lock(&self.shared.stats) = Stats::default();
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // The accept task owns the listener and the `JoinSet` of connection tasks, so
        // aborting it closes the port and cuts every open connection too.
        self.accept.abort();
    }
}

/// State shared by the handle and every connection task.
#[derive(Debug)]
struct Shared {
    upstream: SocketAddr,
    faults: Mutex<Faults>,
    rng: Mutex<SplitMix64>,
    stats: Mutex<Stats>,
}

/// Locks `mutex`, ignoring poisoning: the guarded values stay consistent even if a holder
/// panicked (every update is a single assignment or increment).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What the proxy does with one request.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Fate {
    Forward,
    DropBeforeForward,
    DropAfterForward,
    Status(u16),
    /// Send only this fraction (`0.0..1.0`) of the response body.
    TruncateBody(f64),
}

impl Shared {
    /// Draws the fate and delay of the next request.
    fn draw(&self) -> (Fate, Option<Duration>) {
        let faults = lock(&self.faults).clone();
        let mut rng = lock(&self.rng);
        // Always draw the same numbers, whatever the configuration, so that one request's
        // fate does not shift the draws of the following ones when probabilities change.
        let roll = rng.next_f64();
        let fraction = rng.next_f64();
        let delay_roll = rng.next_f64();
        drop(rng);

        let candidates = [
            (faults.drop_before_forward, Fate::DropBeforeForward),
            (faults.drop_after_forward, Fate::DropAfterForward),
            (faults.status_500, Fate::Status(500)),
            (faults.status_503, Fate::Status(503)),
            (faults.status_429, Fate::Status(429)),
            (faults.truncate_body, Fate::TruncateBody(fraction)),
        ];
        let mut threshold = 0.0;
        let mut fate = Fate::Forward;
        for (probability, candidate) in candidates {
            threshold += probability.max(0.0);
            if roll < threshold {
                fate = candidate;
                break;
            }
        }

        let delay = faults.delay.map(|(a, b)| {
            let (low, high) = if a <= b { (a, b) } else { (b, a) };
            low + (high - low).mul_f64(delay_roll)
        });
        (fate, delay)
    }

    fn record_status(&self, method: &str, status: u16) {
        *lock(&self.stats)
            .by_method_status
            .entry((method.to_owned(), status))
            .or_insert(0) += 1;
    }

    fn record_fault(&self) {
        lock(&self.stats).faults_injected += 1;
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        match listener.accept().await {
            Ok((stream, _peer)) => {
                connections.spawn(serve_connection(Arc::clone(&shared), stream));
            }
            // Accept errors are per-connection or transient (EMFILE); pause instead of
            // spinning, and keep serving.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
        // Reap finished connections so the set does not grow with every client.
        while connections.try_join_next().is_some() {}
    }
}

async fn serve_connection(shared: Arc<Shared>, stream: TcpStream) {
    // Heads and bodies go out as separate writes; without this Nagle's algorithm would
    // hold the second one back for a delayed ACK and add tens of milliseconds per request.
    let _ = stream.set_nodelay(true);
    let mut client = BufReader::new(stream);
    // An I/O error on the client connection just ends it, as it would for a real server.
    let _ = serve_requests(&shared, &mut client).await;
    // A FIN rather than a reset: the client has read everything it sent us, so it sees a
    // clean "closed without (complete) answer", which is the fault being modelled.
    let _ = client.get_mut().shutdown().await;
}

/// Serves requests until the connection should close.
async fn serve_requests(shared: &Shared, client: &mut BufReader<TcpStream>) -> io::Result<()> {
    loop {
        let request = match read_request(client).await {
            Ok(Some(request)) => request,
            Ok(None) => return Ok(()),
            Err(error) if error.kind() == io::ErrorKind::InvalidData => {
                // The stream is out of sync after a malformed request: answer and close.
                let answer = synthetic_response(400, "GET", "bad-request", true);
                return client.get_mut().write_all(&answer).await;
            }
            Err(error) => return Err(error),
        };
        lock(&shared.stats).requests += 1;

        let (fate, delay) = shared.draw();
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        if !answer(shared, client, &request, fate).await? {
            return Ok(());
        }
    }
}

/// Carries out `fate` for `request`; returns whether the client connection stays open.
async fn answer(
    shared: &Shared,
    client: &mut BufReader<TcpStream>,
    request: &Request,
    fate: Fate,
) -> io::Result<bool> {
    let method = request.method.as_str();
    match fate {
        Fate::DropBeforeForward => {
            shared.record_fault();
            Ok(false)
        }
        Fate::DropAfterForward => {
            shared.record_fault();
            // Whether the store accepted it or not, the client hears nothing.
            let _ = forward(shared, request).await;
            Ok(false)
        }
        Fate::Status(status) => {
            shared.record_fault();
            let close = !request.keep_alive;
            let answer = synthetic_response(status, method, "injected", close);
            client.get_mut().write_all(&answer).await?;
            shared.record_status(method, status);
            Ok(!close)
        }
        Fate::Forward | Fate::TruncateBody(_) => {
            let response = match forward(shared, request).await {
                Ok(response) => response,
                Err(_) => {
                    let close = !request.keep_alive;
                    let answer = synthetic_response(502, method, "upstream-failed", close);
                    client.get_mut().write_all(&answer).await?;
                    shared.record_status(method, 502);
                    return Ok(!close);
                }
            };
            let out = client.get_mut();
            out.write_all(&response.head).await?;
            match fate {
                Fate::TruncateBody(fraction) if !response.body.is_empty() => {
                    shared.record_fault();
                    // Strictly shorter than the full body, so the client always notices.
                    let keep = ((response.body.len() as f64 * fraction) as usize)
                        .min(response.body.len() - 1);
                    out.write_all(&response.body[..keep]).await?;
                    shared.record_status(method, response.status);
                    Ok(false)
                }
                _ => {
                    out.write_all(&response.body).await?;
                    shared.record_status(method, response.status);
                    Ok(request.keep_alive && !response.close)
                }
            }
        }
    }
}

/// One client request, as raw bytes to forward plus what the proxy needs to know about it.
#[derive(Debug)]
struct Request {
    method: String,
    /// Request line and headers, byte for byte, including the blank line that ends them.
    head: Vec<u8>,
    /// The body as framed on the wire (chunk framing included).
    body: Vec<u8>,
    /// Payload length of the body, without chunk framing.
    body_len: u64,
    /// Whether the client expects the connection to stay open after the answer.
    keep_alive: bool,
}

/// One upstream response, buffered whole.
#[derive(Debug)]
struct Response {
    status: u16,
    head: Vec<u8>,
    body: Vec<u8>,
    /// The upstream closed the connection or delimited the body by closing it; the client
    /// connection must then close after this answer too.
    close: bool,
}

/// Reads the next request; `None` when the client closed the connection between requests.
async fn read_request(client: &mut BufReader<TcpStream>) -> io::Result<Option<Request>> {
    let Some(head) = read_head(client).await? else {
        return Ok(None);
    };
    let parsed = Head::parse(&head)?;
    let mut parts = parsed.start_line.split(' ');
    let (Some(method), Some(_target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid("malformed request line"));
    };
    let keep_alive = match version {
        "HTTP/1.1" => !parsed.has_token("connection", "close"),
        // HTTP/1.0 keep-alive would need the answer to say so; the store's answers are
        // HTTP/1.1, so close after answering instead.
        "HTTP/1.0" => false,
        _ => return Err(invalid("unsupported HTTP version")),
    };
    let framing = request_framing(&parsed)?;

    // The client waits for this before sending the body; the store will send its own
    // `100 Continue` to the proxy, which `forward` skips.
    if framing != Framing::Empty && parsed.has_token("expect", "100-continue") {
        client
            .get_mut()
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await?;
    }
    let mut body = Vec::new();
    let body_len = read_body(client, framing, &mut body).await?;
    Ok(Some(Request {
        method: method.to_owned(),
        head,
        body,
        body_len,
        keep_alive,
    }))
}

/// Sends `request` to the upstream on a fresh connection and reads its whole answer.
async fn forward(shared: &Shared, request: &Request) -> io::Result<Response> {
    let stream = TcpStream::connect(shared.upstream).await?;
    stream.set_nodelay(true)?;
    let mut upstream = BufReader::new(stream);
    upstream.get_mut().write_all(&request.head).await?;
    upstream.get_mut().write_all(&request.body).await?;
    lock(&shared.stats).bytes_to_upstream += request.body_len;

    loop {
        let head = read_head(&mut upstream)
            .await?
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        let parsed = Head::parse(&head)?;
        let status = parsed
            .start_line
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse::<u16>().ok())
            .ok_or_else(|| invalid("malformed status line"))?;
        // Interim answers (`100 Continue`) were already given to the client by the proxy.
        if (100..200).contains(&status) {
            continue;
        }
        let framing = response_framing(&request.method, status, &parsed);
        let mut body = Vec::new();
        let body_len = read_body(&mut upstream, framing, &mut body).await?;
        lock(&shared.stats).bytes_from_upstream += body_len;
        return Ok(Response {
            status,
            head,
            body,
            close: framing == Framing::UntilClose || parsed.has_token("connection", "close"),
        });
    }
}

/// How a message body is delimited (RFC 9112 section 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    Empty,
    Length(u64),
    Chunked,
    UntilClose,
}

fn request_framing(head: &Head) -> io::Result<Framing> {
    if head.values("transfer-encoding").next().is_some() {
        // A request body is only self-delimiting when chunked is the final coding.
        return if head.last_token("transfer-encoding").as_deref() == Some("chunked") {
            Ok(Framing::Chunked)
        } else {
            Err(invalid("request transfer-encoding without final chunked"))
        };
    }
    Ok(match content_length(head)? {
        Some(length) => Framing::Length(length),
        None => Framing::Empty,
    })
}

fn response_framing(method: &str, status: u16, head: &Head) -> Framing {
    if method.eq_ignore_ascii_case("HEAD") || status == 204 || status == 304 {
        return Framing::Empty;
    }
    if head.values("transfer-encoding").next().is_some() {
        return if head.last_token("transfer-encoding").as_deref() == Some("chunked") {
            Framing::Chunked
        } else {
            Framing::UntilClose
        };
    }
    match content_length(head) {
        Ok(Some(length)) => Framing::Length(length),
        // A response with a bad length can still be read to the end of the connection.
        Ok(None) | Err(_) => Framing::UntilClose,
    }
}

/// The `Content-Length`, if any; repeated headers must agree.
fn content_length(head: &Head) -> io::Result<Option<u64>> {
    let mut length = None;
    for value in head.values("content-length") {
        for item in value.split(',') {
            let parsed: u64 = item
                .trim()
                .parse()
                .map_err(|_| invalid("malformed content-length"))?;
            if length.is_some_and(|known| known != parsed) {
                return Err(invalid("conflicting content-length headers"));
            }
            length = Some(parsed);
        }
    }
    Ok(length)
}

/// Reads a message head up to and including its blank line; `None` on a clean end of
/// stream before the first byte.
async fn read_head<R: AsyncBufRead + Unpin>(reader: &mut R) -> io::Result<Option<Vec<u8>>> {
    let mut head = Vec::new();
    loop {
        let budget = MAX_HEAD_BYTES.saturating_sub(head.len() as u64);
        let start = head.len();
        let read = (&mut *reader)
            .take(budget)
            .read_until(b'\n', &mut head)
            .await?;
        if read == 0 && head.is_empty() {
            return Ok(None);
        }
        if !head.ends_with(b"\n") {
            return Err(if budget == read as u64 {
                invalid("message head too long")
            } else {
                io::ErrorKind::UnexpectedEof.into()
            });
        }
        let line = &head[start..];
        if line == b"\r\n" || line == b"\n" {
            if start == 0 {
                // RFC 9112 section 2.2: tolerate blank lines before a request line.
                head.clear();
                continue;
            }
            return Ok(Some(head));
        }
    }
}

/// Reads a body framed as `framing`, appending its wire bytes to `out`; returns the payload
/// length (chunk framing excluded).
async fn read_body<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    framing: Framing,
    out: &mut Vec<u8>,
) -> io::Result<u64> {
    match framing {
        Framing::Empty => Ok(0),
        Framing::Length(length) => {
            let read = (&mut *reader).take(length).read_to_end(out).await?;
            if read as u64 == length {
                Ok(length)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            }
        }
        Framing::UntilClose => Ok(reader.read_to_end(out).await? as u64),
        Framing::Chunked => {
            let mut payload = 0;
            loop {
                let line = read_line(reader, out).await?;
                let size = line
                    .split(';')
                    .next()
                    .map(str::trim)
                    .and_then(|hex| u64::from_str_radix(hex, 16).ok())
                    .ok_or_else(|| invalid("malformed chunk size"))?;
                if size == 0 {
                    // Trailer fields, then the blank line that ends the body.
                    while !read_line(reader, out).await?.is_empty() {}
                    return Ok(payload);
                }
                // The chunk's data and its closing CRLF.
                let wanted = size + 2;
                let read = (&mut *reader).take(wanted).read_to_end(out).await?;
                if read as u64 != wanted {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                if !out.ends_with(b"\r\n") {
                    return Err(invalid("chunk data not followed by CRLF"));
                }
                payload += size;
            }
        }
    }
}

/// Reads one line of a chunked body, appending its wire bytes to `out`; returns it without
/// the line ending.
async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    out: &mut Vec<u8>,
) -> io::Result<String> {
    let start = out.len();
    (&mut *reader)
        .take(MAX_CHUNK_LINE_BYTES)
        .read_until(b'\n', out)
        .await?;
    if !out.ends_with(b"\n") {
        return Err(invalid("chunked body line too long or cut short"));
    }
    let line = String::from_utf8_lossy(&out[start..]);
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// The parts of a message head the proxy looks at; the raw bytes are what it forwards.
#[derive(Debug)]
struct Head {
    start_line: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn parse(raw: &[u8]) -> io::Result<Head> {
        // Lossy is fine: non-UTF-8 bytes can only sit in values the proxy does not read,
        // and the forwarded bytes are the raw ones.
        let text = String::from_utf8_lossy(raw);
        let mut lines = text
            .split('\n')
            .map(|line| line.strip_suffix('\r').unwrap_or(line));
        let start_line = lines.next().unwrap_or_default().to_owned();
        let mut headers = Vec::new();
        for line in lines.take_while(|line| !line.is_empty()) {
            if line.starts_with([' ', '\t']) {
                return Err(invalid("obsolete header line folding"));
            }
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| invalid("header line without a colon"))?;
            headers.push((name.to_owned(), value.trim().to_owned()));
        }
        Ok(Head {
            start_line,
            headers,
        })
    }

    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> {
        self.headers
            .iter()
            .filter(move |(candidate, _)| candidate.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The comma-separated tokens of every `name` header, lowercased.
    fn tokens<'a>(&'a self, name: &'a str) -> impl Iterator<Item = String> {
        self.values(name)
            .flat_map(|value| value.split(','))
            .map(|token| token.trim().to_ascii_lowercase())
            .filter(|token| !token.is_empty())
    }

    fn has_token(&self, name: &str, token: &str) -> bool {
        self.tokens(name).any(|candidate| candidate == token)
    }

    fn last_token(&self, name: &str) -> Option<String> {
        self.tokens(name).last()
    }
}

fn invalid(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_owned())
}

/// A complete answer made up by the proxy, with an S3-style XML error body (omitted for
/// `HEAD`), marked with `x-fault-proxy: {marker}` so logs tell it from the store's own.
fn synthetic_response(status: u16, method: &str, marker: &str, close: bool) -> Vec<u8> {
    let (reason, code, message) = match status {
        400 => (
            "Bad Request",
            "BadRequest",
            "The proxy could not parse the request.",
        ),
        429 => (
            "Too Many Requests",
            "TooManyRequests",
            "Please reduce your request rate.",
        ),
        500 => (
            "Internal Server Error",
            "InternalError",
            "We encountered an internal error. Please try again.",
        ),
        502 => (
            "Bad Gateway",
            "BadGateway",
            "The proxy could not get an answer from the store.",
        ),
        503 => (
            "Service Unavailable",
            "SlowDown",
            "Please reduce your request rate.",
        ),
        _ => ("Error", "Error", "Injected error."),
    };
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <Error><Code>{code}</Code><Message>{message}</Message></Error>"
    );
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\n\
         content-type: application/xml\r\n\
         content-length: {}\r\n\
         x-fault-proxy: {marker}\r\n",
        body.len()
    );
    if status == 429 {
        head.push_str(&format!("retry-after: {RETRY_AFTER_SECS}\r\n"));
    }
    if close {
        head.push_str("connection: close\r\n");
    }
    head.push_str("\r\n");
    let mut answer = head.into_bytes();
    if !method.eq_ignore_ascii_case("HEAD") {
        answer.extend_from_slice(body.as_bytes());
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn chunked_body_is_kept_verbatim_and_counted_as_payload() {
        let wire = b"5;ext=1\r\nhello\r\n3\r\n, w\r\n0\r\ntrailer: x\r\n\r\nNEXT";
        let mut reader = BufReader::new(&wire[..]);
        let mut out = Vec::new();
        let payload = read_body(&mut reader, Framing::Chunked, &mut out)
            .await
            .unwrap();
        assert_eq!(payload, 8);
        assert_eq!(out, &wire[..wire.len() - 4]);
    }

    #[test]
    fn fates_follow_field_order_and_at_most_one_applies() {
        let shared = Shared {
            upstream: SocketAddr::from((Ipv4Addr::LOCALHOST, 1)),
            faults: Mutex::new(Faults {
                status_500: 0.7,
                status_503: 0.7,
                ..Faults::default()
            }),
            rng: Mutex::new(SplitMix64(1)),
            stats: Mutex::new(Stats::default()),
        };
        let fates: Vec<Fate> = (0..1000).map(|_| shared.draw().0).collect();
        let fives = fates.iter().filter(|f| **f == Fate::Status(500)).count();
        let threes = fates.iter().filter(|f| **f == Fate::Status(503)).count();
        assert_eq!(
            fives + threes,
            1000,
            "probabilities above 1 leave no pass-through"
        );
        assert!(
            (630..770).contains(&fives),
            "{fives} of 1000 should be about 700"
        );
    }
}
