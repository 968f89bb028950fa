//! The kernel's own TCP over loopback, measured the same way as the stack
//! over memif: `std::net` on 127.0.0.1, the client on one CPU and the
//! server thread on the other, `TCP_NODELAY` on both ends.
//!
//! - [`rr`]: 64-byte request/response round trips on one connection, the
//!   server echoing each; every response is compared with its request.
//! - [`bulk`]: one stream client→server of [`BULK`](super::BULK) bytes; the
//!   server checks every byte against the pattern (byte `i` is `i mod 251`)
//!   and, at end of stream, answers the count it verified. Timed from the
//!   established connection to that answer.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant as Clock};

use super::driver::pin_to;
use super::{percentiles, Checker, MSG, RR_ROUNDS, RR_WARM};

/// Longest any read may wait before the run counts as stalled.
const STALL: Duration = Duration::from_secs(2);

fn pair(
    server_cpu: usize,
    serve: impl FnOnce(TcpStream) + Send + 'static,
) -> (TcpStream, thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    let addr = listener.local_addr().unwrap();
    let server = thread::spawn(move || {
        pin_to(server_cpu);
        let (s, _) = listener.accept().expect("accept");
        s.set_nodelay(true).unwrap();
        s.set_read_timeout(Some(STALL)).unwrap();
        serve(s);
    });
    let c = TcpStream::connect(addr).expect("connect to 127.0.0.1");
    c.set_nodelay(true).unwrap();
    c.set_read_timeout(Some(STALL)).unwrap();
    (c, server)
}

/// Median and 99th percentile of the round-trip time, in microseconds.
pub fn rr(client_cpu: usize, server_cpu: usize) -> (f64, f64) {
    pin_to(client_cpu);
    let (mut c, server) = pair(server_cpu, |mut s| {
        let mut buf = [0u8; MSG];
        while s.read_exact(&mut buf).is_ok() {
            s.write_all(&buf).expect("echo");
        }
    });
    let mut rtts = Vec::with_capacity(RR_ROUNDS);
    let (mut msg, mut got) = ([0u8; MSG], [0u8; MSG]);
    for round in 0..RR_WARM + RR_ROUNDS {
        accel_bench::message(&mut msg, 0, round as u64);
        let t0 = Clock::now();
        c.write_all(&msg).expect("send the request");
        c.read_exact(&mut got).expect("the response (a stall?)");
        let rtt = t0.elapsed();
        assert_eq!(got, msg, "kernel rr: wrong bytes in round {round}");
        if round >= RR_WARM {
            rtts.push(rtt);
        }
    }
    drop(c);
    server.join().expect("the echo thread");
    percentiles(&mut rtts)
}

/// Payload throughput of one stream, in Gbit/s.
pub fn bulk(client_cpu: usize, server_cpu: usize, total: u64) -> f64 {
    pin_to(client_cpu);
    let (mut c, server) = pair(server_cpu, move |mut s| {
        let mut check = Checker::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = s.read(&mut buf).expect("read the stream (a stall?)");
            if n == 0 {
                break;
            }
            check.feed(&buf[..n]);
        }
        s.write_all(&check.result().to_le_bytes()).expect("answer");
    });
    let pattern = super::pattern();
    let t0 = Clock::now();
    let mut sent = 0u64;
    while sent < total {
        let off = (sent % 251) as usize;
        let n = (total - sent).min(256 * 1024) as usize;
        c.write_all(&pattern[off..off + n]).expect("send");
        sent += n as u64;
    }
    c.shutdown(Shutdown::Write).unwrap();
    let mut answer = [0u8; 8];
    c.read_exact(&mut answer).expect("the count (a stall?)");
    let elapsed = t0.elapsed();
    server.join().expect("the sink thread");
    let verified = u64::from_le_bytes(answer);
    assert_eq!(
        verified, total,
        "kernel bulk: the server verified {verified} of {total} bytes"
    );
    total as f64 * 8.0 / elapsed.as_secs_f64() / 1e9
}
