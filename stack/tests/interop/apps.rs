//! The programs the stack runs in the interop tests, each a state machine
//! that a [`Driver`](super::driver::Driver) steps between polls: an echo
//! server, an HTTP server answering `GET /<n>` with `n` bytes of the
//! test pattern, and a client that streams the pattern to an echo server
//! and checks every byte that comes back.
//!
//! The pattern ([`Pattern`]) is made of 64 KiB chunks: chunk `k` is `k` as
//! 8 little-endian bytes, then the rest of a block of xorshift64 output.
//! Data lost, duplicated or moved by any amount shows up as a mismatch. The
//! Python programs of [`super::scripts`] build the same pattern.

use std::net::{Ipv4Addr, SocketAddrV4};

use accel_stack::iface::{Interface, TcpHandle};
use accel_stack::{Errno, Instant};

/// Bytes per pattern chunk.
pub const CHUNK: usize = 65536;
/// Seed of the pattern's xorshift64 generator.
pub const SEED: u64 = 0x243f_6a88_85a3_08d3;

/// The test pattern.
pub struct Pattern {
    base: Vec<u8>,
}

impl Default for Pattern {
    fn default() -> Self {
        Self::new()
    }
}

impl Pattern {
    /// The pattern for [`SEED`].
    pub fn new() -> Pattern {
        let mut x = SEED | 1;
        let mut base = Vec::with_capacity(CHUNK);
        for _ in 0..CHUNK / 8 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            base.extend_from_slice(&x.to_le_bytes());
        }
        Pattern { base }
    }

    /// Writes the pattern's bytes from offset `off` into `out`.
    pub fn fill(&self, mut off: u64, out: &mut [u8]) {
        let mut pos = 0;
        while pos < out.len() {
            let k = off / CHUNK as u64;
            let within = (off % CHUNK as u64) as usize;
            let n = (CHUNK - within).min(out.len() - pos);
            let dst = &mut out[pos..pos + n];
            dst.copy_from_slice(&self.base[within..within + n]);
            let header = k.to_le_bytes();
            for (i, b) in (within..8.min(within + n)).zip(dst.iter_mut()) {
                *b = header[i];
            }
            pos += n;
            off += n as u64;
        }
    }

    /// The first `len` bytes.
    pub fn bytes(&self, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.fill(0, &mut v);
        v
    }

    /// The offset of the first byte of `data` (which starts at stream
    /// offset `off`) that differs from the pattern.
    pub fn mismatch(&self, off: u64, data: &[u8], scratch: &mut Vec<u8>) -> Option<u64> {
        scratch.resize(data.len(), 0);
        self.fill(off, scratch);
        let i = data.iter().zip(scratch.iter()).position(|(a, b)| a != b)?;
        Some(off + i as u64)
    }
}

/// A window onto the pattern for sending: regenerates only when the
/// sender has moved past what it holds.
pub struct Source {
    start: u64,
    buf: Vec<u8>,
}

impl Source {
    /// An empty window of `cap` bytes.
    pub fn new(cap: usize) -> Source {
        Source {
            start: u64::MAX,
            buf: Vec::with_capacity(cap),
        }
    }

    /// The pattern's bytes from `at`, at most `max` of them.
    pub fn view(&mut self, pattern: &Pattern, at: u64, max: u64) -> &[u8] {
        let end = self.start.saturating_add(self.buf.len() as u64);
        if at < self.start || at >= end {
            let len = (self.buf.capacity() as u64).min(max) as usize;
            self.buf.resize(len, 0);
            pattern.fill(at, &mut self.buf);
            self.start = at;
        }
        let from = (at - self.start) as usize;
        let n = (self.buf.len() - from).min(max as usize);
        &self.buf[from..from + n]
    }
}

/// A listening socket on `port` (any address of ours).
pub fn listen(iface: &mut Interface, port: u16) -> TcpHandle {
    let l = iface.tcp.socket_new();
    iface
        .tcp_bind(l, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port))
        .expect("bind the listener");
    iface.tcp.listen(l, 128).expect("listen");
    l
}

/// An echo server: every connection gets back what it sends, and is
/// closed after the peer's FIN once everything is echoed.
pub struct EchoServer {
    listener: TcpHandle,
    conns: Vec<EchoConn>,
    /// Connections accepted.
    pub accepted: usize,
    /// Connections finished (echoed everything, closed).
    pub finished: usize,
    /// Bytes echoed.
    pub bytes: u64,
    /// What went wrong, if anything.
    pub errors: Vec<String>,
    /// Until then, connections are accepted but not read (their receive
    /// windows close).
    pub stall_until: Option<Instant>,
}

struct EchoConn {
    h: TcpHandle,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
}

impl EchoServer {
    /// Listens on `port`.
    pub fn new(iface: &mut Interface, port: u16) -> EchoServer {
        EchoServer {
            listener: listen(iface, port),
            conns: Vec::new(),
            accepted: 0,
            finished: 0,
            bytes: 0,
            errors: Vec::new(),
            stall_until: None,
        }
    }

    /// One turn: accept, then move data on every connection.
    pub fn step(&mut self, iface: &mut Interface, now: Instant) -> bool {
        let mut worked = false;
        while let Ok((h, _)) = iface.tcp.accept(self.listener) {
            self.accepted += 1;
            worked = true;
            self.conns.push(EchoConn {
                h,
                buf: vec![0; 256 * 1024],
                start: 0,
                end: 0,
                eof: false,
            });
        }
        if self.stall_until.is_some_and(|t| now < t) {
            return worked;
        }
        let mut i = 0;
        while i < self.conns.len() {
            let (progress, done) = self.echo(iface, now, i);
            worked |= progress;
            if done {
                self.conns.swap_remove(i);
            } else {
                i += 1;
            }
        }
        worked
    }

    /// Moves data on connection `i`; returns (progress, finished).
    fn echo(&mut self, iface: &mut Interface, now: Instant, i: usize) -> (bool, bool) {
        let c = &mut self.conns[i];
        let mut progress = false;
        for _ in 0..64 {
            if c.start == c.end && !c.eof {
                match iface.tcp.recv(c.h, &mut c.buf) {
                    Ok(0) => c.eof = true,
                    Ok(n) => (c.start, c.end) = (0, n),
                    Err(Errno::EAGAIN) => break,
                    Err(e) => {
                        self.errors.push(format!("echo recv: {e}"));
                        let _ = iface.tcp.close(c.h, now);
                        return (true, true);
                    }
                }
                progress = true;
            }
            if c.start < c.end {
                match iface.tcp.send(c.h, &c.buf[c.start..c.end]) {
                    Ok(n) => {
                        c.start += n;
                        self.bytes += n as u64;
                        progress = true;
                    }
                    Err(Errno::EAGAIN) => break,
                    Err(e) => {
                        self.errors.push(format!("echo send: {e}"));
                        let _ = iface.tcp.close(c.h, now);
                        return (true, true);
                    }
                }
                if c.start < c.end {
                    break;
                }
            } else if c.eof {
                if let Err(e) = iface.tcp.close(c.h, now) {
                    self.errors.push(format!("echo close: {e}"));
                }
                self.finished += 1;
                return (true, true);
            }
        }
        (progress, false)
    }
}

/// An HTTP/1.x server: `GET /<n>` gets `n` bytes of the pattern; HTTP/1.1
/// keeps the connection unless asked to close, HTTP/1.0 closes it unless
/// asked to keep it. Anything else gets a 404 (or a 400) and a close.
pub struct HttpServer {
    listener: TcpHandle,
    conns: Vec<HttpConn>,
    source: Source,
    pattern: Pattern,
    /// Connections accepted.
    pub accepted: usize,
    /// Requests answered.
    pub requests: usize,
    /// Connections the server closed or saw closed.
    pub closed: usize,
    /// Counters of the closed connections, added up.
    pub totals: accel_stack::tcp::TcpStats,
    /// What went wrong, if anything.
    pub errors: Vec<String>,
}

#[derive(Default)]
struct HttpConn {
    h: Option<TcpHandle>,
    req: Vec<u8>,
    head: Vec<u8>,
    head_sent: usize,
    body_len: u64,
    body_sent: u64,
    responding: bool,
    keep_alive: bool,
    peer_closed: bool,
}

/// Longest request head accepted.
const MAX_HEAD: usize = 16 * 1024;
/// Largest body served.
const MAX_BODY: u64 = 1 << 32;

impl HttpServer {
    /// Listens on `port`.
    pub fn new(iface: &mut Interface, port: u16) -> HttpServer {
        HttpServer {
            listener: listen(iface, port),
            conns: Vec::new(),
            source: Source::new(64 * 1024),
            pattern: Pattern::new(),
            accepted: 0,
            requests: 0,
            closed: 0,
            totals: Default::default(),
            errors: Vec::new(),
        }
    }

    /// One turn: accept, then serve every connection.
    pub fn step(&mut self, iface: &mut Interface, now: Instant) -> bool {
        let mut worked = false;
        while let Ok((h, _)) = iface.tcp.accept(self.listener) {
            self.accepted += 1;
            worked = true;
            self.conns.push(HttpConn {
                h: Some(h),
                ..HttpConn::default()
            });
        }
        let mut conns = std::mem::take(&mut self.conns);
        for c in &mut conns {
            worked |= self.serve(iface, now, c);
        }
        conns.retain(|c| c.h.is_some());
        self.conns = conns;
        worked
    }

    fn close(&mut self, iface: &mut Interface, now: Instant, c: &mut HttpConn) {
        if let Some(h) = c.h.take() {
            if let Some(st) = iface.tcp.socket(h).map(|s| s.stats()) {
                let t = &mut self.totals;
                t.segs_out += st.segs_out;
                t.retransmits += st.retransmits;
                t.timeouts += st.timeouts;
                t.window_probes += st.window_probes;
                t.bytes_sent += st.bytes_sent;
            }
            if let Err(e) = iface.tcp.close(h, now) {
                self.errors.push(format!("http close: {e}"));
            }
            self.closed += 1;
        }
    }

    fn serve(&mut self, iface: &mut Interface, now: Instant, c: &mut HttpConn) -> bool {
        let mut progress = false;
        let mut chunk = [0u8; 4096];
        for _ in 0..64 {
            let Some(h) = c.h else { break };
            if c.responding {
                let sent = if c.head_sent < c.head.len() {
                    iface
                        .tcp
                        .send(h, &c.head[c.head_sent..])
                        .map(|n| c.head_sent += n)
                } else if c.body_sent < c.body_len {
                    let data = self
                        .source
                        .view(&self.pattern, c.body_sent, c.body_len - c.body_sent);
                    iface.tcp.send(h, data).map(|n| c.body_sent += n as u64)
                } else {
                    c.responding = false;
                    self.requests += 1;
                    if !c.keep_alive {
                        self.close(iface, now, c);
                    }
                    progress = true;
                    continue;
                };
                match sent {
                    Ok(()) => progress = true,
                    Err(Errno::EAGAIN) => break,
                    Err(e) => {
                        self.errors.push(format!("http send: {e}"));
                        self.close(iface, now, c);
                    }
                }
                continue;
            }
            if let Some(end) = c.req.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&c.req[..end]).into_owned();
                c.req.drain(..end + 4);
                let (response, body_len, keep_alive) = respond(&head);
                c.head = response.into_bytes();
                (c.head_sent, c.body_len, c.body_sent) = (0, body_len, 0);
                c.keep_alive = keep_alive && !c.peer_closed;
                c.responding = true;
                progress = true;
                continue;
            }
            if c.peer_closed || c.req.len() > MAX_HEAD {
                if c.req.len() > MAX_HEAD {
                    self.errors.push("http: request head too long".to_owned());
                }
                self.close(iface, now, c);
                progress = true;
                break;
            }
            match iface.tcp.recv(h, &mut chunk) {
                Ok(0) => c.peer_closed = true,
                Ok(n) => c.req.extend_from_slice(&chunk[..n]),
                Err(Errno::EAGAIN) => break,
                Err(e) => {
                    self.errors.push(format!("http recv: {e}"));
                    self.close(iface, now, c);
                }
            }
            progress = true;
        }
        progress
    }
}

/// The response head, body length and whether to keep the connection, for
/// the request head `head` (without its final blank line).
fn respond(head: &str) -> (String, u64, bool) {
    let mut lines = head.split("\r\n");
    let request = lines.next().unwrap_or_default();
    let mut words = request.split(' ');
    let (method, target, version) = (words.next(), words.next(), words.next());
    let connection = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("connection"))
        .map(|(_, v)| v.trim().to_ascii_lowercase());
    let (version, keep_alive) = match version {
        Some("HTTP/1.1") => ("HTTP/1.1", connection.as_deref() != Some("close")),
        Some("HTTP/1.0") => ("HTTP/1.0", connection.as_deref() == Some("keep-alive")),
        _ => {
            return (
                "HTTP/1.0 400 Bad Request\r\nContent-Length: 0\r\n\r\n".to_owned(),
                0,
                false,
            )
        }
    };
    let size = target
        .and_then(|t| t.strip_prefix('/'))
        .and_then(|n| n.parse::<u64>().ok())
        .filter(|&n| n <= MAX_BODY);
    let (status, len, keep_alive) = match (method, size) {
        (Some("GET"), Some(n)) => ("200 OK", n, keep_alive),
        _ => ("404 Not Found", 0, false),
    };
    let connection = if keep_alive { "keep-alive" } else { "close" };
    let head = format!(
        "{version} {status}\r\nServer: accel-stack-interop\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {len}\r\nConnection: {connection}\r\n\r\n"
    );
    (head, len, keep_alive)
}

/// A client that streams `total` bytes of the pattern to an echo server,
/// shuts down its sending side, and checks everything that comes back.
pub struct StreamClient {
    h: TcpHandle,
    total: u64,
    pattern: Pattern,
    source: Source,
    rx: Vec<u8>,
    scratch: Vec<u8>,
    /// Bytes sent.
    pub sent: u64,
    /// Bytes received (and checked).
    pub received: u64,
    /// Whether the connection was established.
    pub connected: Option<Instant>,
    shut: bool,
    eof: bool,
    closed: bool,
    /// The first offset where the echo differed from the pattern.
    pub mismatch: Option<u64>,
    /// An error the socket reported.
    pub error: Option<Errno>,
}

impl StreamClient {
    /// Connects to `remote` to stream `total` bytes.
    pub fn connect(iface: &mut Interface, remote: SocketAddrV4, total: u64, now: Instant) -> StreamClient {
        let h = iface.tcp.socket_new();
        iface.tcp_connect(h, remote, now).expect("connect");
        StreamClient {
            h,
            total,
            pattern: Pattern::new(),
            source: Source::new(256 * 1024),
            rx: vec![0; 256 * 1024],
            scratch: Vec::new(),
            sent: 0,
            received: 0,
            connected: None,
            shut: false,
            eof: false,
            closed: false,
            mismatch: None,
            error: None,
        }
    }

    /// Whether the exchange is over (the echo ended, or it failed).
    pub fn done(&self) -> bool {
        self.closed
    }

    /// The socket, for diagnostics.
    pub fn handle(&self) -> TcpHandle {
        self.h
    }

    /// One turn: send what fits, read and check what arrived.
    pub fn step(&mut self, iface: &mut Interface, now: Instant) -> bool {
        if self.closed {
            return false;
        }
        let mut progress = false;
        if self.connected.is_none() && iface.tcp.readiness(self.h).is_ok_and(|r| r.writable) {
            self.connected = Some(now);
        }
        for _ in 0..64 {
            if self.sent >= self.total {
                break;
            }
            let data = self.source.view(&self.pattern, self.sent, self.total - self.sent);
            match iface.tcp.send(self.h, data) {
                Ok(n) => {
                    self.sent += n as u64;
                    progress = true;
                }
                Err(Errno::EAGAIN) => break,
                Err(e) => return self.fail(iface, now, e),
            }
        }
        if self.sent == self.total && !self.shut && self.connected.is_some() {
            if let Err(e) = iface.tcp.shutdown(self.h, false, true) {
                return self.fail(iface, now, e);
            }
            self.shut = true;
            progress = true;
        }
        for _ in 0..64 {
            match iface.tcp.recv(self.h, &mut self.rx) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => {
                    if self.mismatch.is_none() {
                        let got = &self.rx[..n];
                        self.mismatch = self.pattern.mismatch(self.received, got, &mut self.scratch);
                    }
                    self.received += n as u64;
                    progress = true;
                }
                Err(Errno::EAGAIN) => break,
                Err(e) => return self.fail(iface, now, e),
            }
        }
        if self.eof {
            self.closed = true;
            iface.tcp.close(self.h, now).expect("close");
            progress = true;
        }
        progress
    }

    fn fail(&mut self, iface: &mut Interface, now: Instant, e: Errno) -> bool {
        self.error = Some(e);
        self.closed = true;
        let _ = iface.tcp.close(self.h, now);
        true
    }
}

/// A server that resets every connection: it accepts, waits for data, and
/// closes without reading it (an abortive close, as Linux does).
pub struct Aborter {
    listener: TcpHandle,
    conns: Vec<TcpHandle>,
    /// Connections reset.
    pub aborted: usize,
}

impl Aborter {
    /// Listens on `port`.
    pub fn new(iface: &mut Interface, port: u16) -> Aborter {
        Aborter {
            listener: listen(iface, port),
            conns: Vec::new(),
            aborted: 0,
        }
    }

    /// One turn.
    pub fn step(&mut self, iface: &mut Interface, now: Instant) -> bool {
        let mut worked = false;
        while let Ok((h, _)) = iface.tcp.accept(self.listener) {
            self.conns.push(h);
            worked = true;
        }
        let before = self.conns.len();
        self.conns.retain(|&h| {
            let readable = iface.tcp.readiness(h).is_ok_and(|r| r.readable);
            if readable {
                iface.tcp.close(h, now).expect("close");
            }
            !readable
        });
        self.aborted += before - self.conns.len();
        worked || before != self.conns.len()
    }
}
