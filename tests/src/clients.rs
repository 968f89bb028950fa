//! Small blocking clients the tests drive servers with, from a thread
//! inside the clients' namespace: RESP (redis) and memcached's text
//! protocol, each storing a set of keys and reading every one back; and
//! an echo round-trip client over many connections at once ([`echo_rr`]).
//!
//! The data set is deterministic ([`dataset`]): random-looking keys and
//! values whose sizes span 0 bytes to the largest value the test asks for,
//! a few at the maximum. Commands go out in pipelined batches (the
//! replies of a batch are read before the next is sent, so neither side
//! waits on a full buffer for long); every socket has a read and write
//! timeout, and a whole run a deadline, so a server that stops answering
//! fails the test instead of hanging it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::bytes;

/// One key and its value.
pub struct Item {
    /// The key: printable, unique.
    pub key: String,
    /// The value: pseudo-random bytes.
    pub value: Vec<u8>,
}

/// `n` items; value sizes: every 1000th is `max` bytes, another every
/// 1000th empty, every 100th a quarter of `max` at most, the rest up to
/// 4 KiB.
pub fn dataset(n: usize, max: usize, seed: u64) -> Vec<Item> {
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..n)
        .map(|i| {
            let r = next();
            let len = if i % 1000 == 7 {
                max
            } else if i % 1000 == 11 {
                0
            } else if i % 100 == 3 {
                (r as usize) % (max / 4 + 1)
            } else {
                (r as usize) % 4097
            };
            Item {
                key: format!("k{i}:{r:016x}"),
                value: bytes(len, r),
            }
        })
        .collect()
}

/// What a store-and-fetch run measured.
pub struct Transfer {
    /// Wall time of the stores and the fetches.
    pub elapsed: Duration,
    /// Value bytes stored plus fetched.
    pub bytes: u64,
    /// Requests (stores plus fetches).
    pub requests: u64,
}

impl Transfer {
    /// Requests per second.
    pub fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    /// Megabytes (10^6) of values per second.
    pub fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.elapsed.as_secs_f64()
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

fn line(r: &mut impl BufRead, what: &str) -> String {
    let mut l = String::new();
    let n = r
        .read_line(&mut l)
        .unwrap_or_else(|e| panic!("reading the reply to {what}: {e}"));
    assert!(
        n > 0,
        "the server closed the connection before replying to {what}"
    );
    l
}

/// Batch size: commands sent before their replies are read.
const BATCH: usize = 64;

/// The longest a whole store-and-fetch run may take.
const DEADLINE: Duration = Duration::from_secs(180);

fn in_time(start: Instant, what: &str) {
    assert!(start.elapsed() < DEADLINE, "{what}: not done within {DEADLINE:?}");
}

/// Stores every item with SET and reads each back with GET, checking the
/// bytes; panics on the first difference.
pub fn redis_set_get(addr: SocketAddr, items: &[Item]) -> Transfer {
    let s = connect(addr);
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::with_capacity(1 << 16, s);
    let start = Instant::now();
    let mut total = 0u64;
    for batch in items.chunks(BATCH) {
        in_time(start, "redis SETs");
        let mut out = Vec::new();
        for it in batch {
            write!(
                out,
                "*3\r\n$3\r\nSET\r\n${}\r\n{}\r\n${}\r\n",
                it.key.len(),
                it.key,
                it.value.len()
            )
            .unwrap();
            out.extend_from_slice(&it.value);
            out.extend_from_slice(b"\r\n");
            total += it.value.len() as u64;
        }
        w.write_all(&out).expect("send SETs");
        for it in batch {
            let l = line(&mut r, &format!("SET {}", it.key));
            assert_eq!(l, "+OK\r\n", "SET {}", it.key);
        }
    }
    for batch in items.chunks(BATCH) {
        in_time(start, "redis GETs");
        let mut out = Vec::new();
        for it in batch {
            write!(out, "*2\r\n$3\r\nGET\r\n${}\r\n{}\r\n", it.key.len(), it.key).unwrap();
        }
        w.write_all(&out).expect("send GETs");
        for it in batch {
            let what = format!("GET {}", it.key);
            let l = line(&mut r, &what);
            let len: usize = l
                .strip_prefix('$')
                .and_then(|n| n.trim_end().parse().ok())
                .unwrap_or_else(|| panic!("{what}: not a bulk string: {l:?}"));
            assert_eq!(len, it.value.len(), "{what}: length");
            let mut got = vec![0; len + 2];
            r.read_exact(&mut got).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert!(
                got[..len] == it.value[..] && &got[len..] == b"\r\n",
                "{what}: the value differs"
            );
            total += len as u64;
        }
    }
    Transfer {
        elapsed: start.elapsed(),
        bytes: total,
        requests: 2 * items.len() as u64,
    }
}

/// Stores every item with `set` and reads each back with `get`, checking
/// the bytes and the flags; panics on the first difference.
pub fn memcached_set_get(addr: SocketAddr, items: &[Item]) -> Transfer {
    let s = connect(addr);
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::with_capacity(1 << 16, s);
    let start = Instant::now();
    let mut total = 0u64;
    for (b, batch) in items.chunks(BATCH).enumerate() {
        in_time(start, "memcached sets");
        let mut out = Vec::new();
        for (i, it) in batch.iter().enumerate() {
            write!(out, "set {} {} 0 {}\r\n", it.key, b * BATCH + i, it.value.len()).unwrap();
            out.extend_from_slice(&it.value);
            out.extend_from_slice(b"\r\n");
            total += it.value.len() as u64;
        }
        w.write_all(&out).expect("send sets");
        for it in batch {
            let l = line(&mut r, &format!("set {}", it.key));
            assert_eq!(l, "STORED\r\n", "set {}", it.key);
        }
    }
    for (b, batch) in items.chunks(BATCH).enumerate() {
        in_time(start, "memcached gets");
        let mut out = Vec::new();
        for it in batch {
            write!(out, "get {}\r\n", it.key).unwrap();
        }
        w.write_all(&out).expect("send gets");
        for (i, it) in batch.iter().enumerate() {
            let what = format!("get {}", it.key);
            let l = line(&mut r, &what);
            let want = format!("VALUE {} {} {}\r\n", it.key, b * BATCH + i, it.value.len());
            assert_eq!(l, want, "{what}");
            let mut got = vec![0; it.value.len() + 2];
            r.read_exact(&mut got).unwrap_or_else(|e| panic!("{what}: {e}"));
            let len = it.value.len();
            assert!(
                got[..len] == it.value[..] && &got[len..] == b"\r\n",
                "{what}: the value differs"
            );
            assert_eq!(line(&mut r, &what), "END\r\n", "{what}");
            total += len as u64;
        }
    }
    Transfer {
        elapsed: start.elapsed(),
        bytes: total,
        requests: 2 * items.len() as u64,
    }
}

/// Opens `conns` connections at once (each its own source port, so its
/// own flow hash) and asks memcached's `version` on each; panics unless
/// every one answers. Spreads flows over a multi-queue device's queues.
pub fn memcached_versions(addr: SocketAddr, conns: usize) {
    let open: Vec<TcpStream> = (0..conns).map(|_| connect(addr)).collect();
    for (i, s) in open.iter().enumerate() {
        (&*s).write_all(b"version\r\n").expect("send version");
        let l = line(&mut BufReader::new(s), &format!("version on connection {i}"));
        assert!(l.starts_with("VERSION "), "version on connection {i}: {l:?}");
    }
}

/// What a round-trip run measured.
pub struct RoundTrips {
    /// Round trips completed (every one checked).
    pub count: u64,
    /// Wall time of the whole run.
    pub elapsed: Duration,
    /// Round-trip times, sorted.
    pub times: Vec<Duration>,
}

impl RoundTrips {
    /// Round trips per second.
    pub fn rps(&self) -> f64 {
        self.count as f64 / self.elapsed.as_secs_f64()
    }

    /// The `q` quantile (0..=1) of the round-trip times.
    pub fn quantile(&self, q: f64) -> Duration {
        let i = ((self.times.len() as f64 - 1.0) * q).round() as usize;
        self.times.get(i).copied().unwrap_or_default()
    }
}

/// `conns` connections to an echo server at once, each a thread doing
/// `rounds` round trips of `size` bytes (each message different, checked
/// byte for byte); every connection is made before the first round trip.
pub fn echo_rr(addr: SocketAddr, conns: usize, rounds: usize, size: usize) -> RoundTrips {
    let start_line = std::sync::Arc::new(std::sync::Barrier::new(conns + 1));
    let workers: Vec<_> = (0..conns)
        .map(|c| {
            let start_line = start_line.clone();
            std::thread::spawn(move || {
                let mut s = connect(addr);
                start_line.wait();
                let mut times = Vec::with_capacity(rounds);
                let mut back = vec![0u8; size];
                for r in 0..rounds {
                    let msg = bytes(size, (c * 1_000_003 + r) as u64);
                    let t = Instant::now();
                    s.write_all(&msg).expect("echo: send");
                    s.read_exact(&mut back)
                        .unwrap_or_else(|e| panic!("echo: connection {c}, round trip {r}: {e}"));
                    times.push(t.elapsed());
                    assert!(
                        back == msg,
                        "echo: connection {c}, round trip {r}: the bytes differ"
                    );
                }
                times
            })
        })
        .collect();
    start_line.wait();
    let start = Instant::now();
    let mut times = Vec::with_capacity(conns * rounds);
    for w in workers {
        times.extend(w.join().unwrap_or_else(|_| panic!("an echo connection failed")));
    }
    let elapsed = start.elapsed();
    times.sort_unstable();
    RoundTrips {
        count: times.len() as u64,
        elapsed,
        times,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dataset_spans_empty_to_max_with_unique_keys() {
        let items = dataset(10_000, 1 << 20, 1);
        let max = items.iter().map(|i| i.value.len()).max().unwrap();
        let min = items.iter().map(|i| i.value.len()).min().unwrap();
        assert_eq!((min, max), (0, 1 << 20));
        let keys: std::collections::HashSet<&str> = items.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(keys.len(), 10_000);
        assert_eq!(items.iter().filter(|i| i.value.len() == 1 << 20).count(), 10);
    }
}
