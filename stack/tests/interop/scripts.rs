//! The Python programs the interop tests run in the namespace, on the
//! kernel's sockets (`python3 -c SCRIPT ARGS...`). Each is bounded: socket
//! timeouts inside, and `timeout` around it. The echo client builds the
//! pattern of [`super::apps::Pattern`] (same chunking, same xorshift64).

/// Echo client: `HOST PORT TOTAL SEED`. Streams TOTAL bytes of the pattern
/// and reads the echo at the same time (one thread, non-blocking: no GIL
/// hand-offs between a sender and a receiver thread), comparing every
/// chunk; prints `OK bytes=.. seconds=.. MiB/s=..` and exits 0, or says
/// where the echo first differs and exits 1.
pub const ECHO_CLIENT: &str = r#"
import select, socket, sys, time
host, port, total, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
CHUNK, BATCH, M = 65536, 16, (1 << 64) - 1
x, base = seed | 1, bytearray()
for _ in range(CHUNK // 8):
    x ^= (x << 13) & M; x ^= x >> 7; x ^= (x << 17) & M
    base += x.to_bytes(8, 'little')
BODY = bytes(base[8:])
def chunk(k):
    return k.to_bytes(8, 'little') + BODY
def fail(msg):
    print('FAIL ' + msg, flush=True); sys.exit(1)
s = socket.create_connection((host, port), timeout=10)
s.setblocking(False)
poller = select.poll()
poller.register(s, select.POLLIN | select.POLLOUT)
start = time.monotonic()
out, sent, next_chunk, shut = memoryview(b''), 0, 0, False
pending, verified, eof = bytearray(), 0, False
while not eof:
    events = poller.poll(30000)
    if not events:
        fail('stalled 30 s: sent %d, verified %d' % (sent, verified))
    ev = events[0][1]
    if ev & select.POLLOUT and not shut:
        if not out:
            batch = b''.join(chunk(next_chunk + i) for i in range(BATCH))[:total - sent]
            next_chunk += BATCH
            out = memoryview(batch)
        try:
            n = s.send(out)
            out = out[n:]; sent += n
        except BlockingIOError:
            pass
        if sent == total:
            s.shutdown(socket.SHUT_WR); shut = True
            poller.modify(s, select.POLLIN)
    if ev & (select.POLLIN | select.POLLHUP | select.POLLERR):
        try:
            data = s.recv(1 << 20)
        except BlockingIOError:
            continue
        except OSError as e:
            fail('recv after %d bytes: %r' % (verified + len(pending), e))
        if not data:
            eof = True
        pending += data
        while pending:
            want = chunk(verified // CHUNK)[:min(CHUNK, total - verified)]
            if not want:
                fail('extra bytes after %d' % total)
            if len(pending) < len(want):
                break
            if pending[:len(want)] != want:
                got = pending[:len(want)]
                i = next(j for j in range(len(want)) if got[j] != want[j])
                fail('mismatch at offset %d' % (verified + i))
            del pending[:len(want)]
            verified += len(want)
elapsed = time.monotonic() - start
if verified != total or pending:
    fail('short echo: %d verified of %d, %d left over' % (verified, total, len(pending)))
s.close()
print('OK bytes=%d seconds=%.3f MiB/s=%.1f' % (total, elapsed, total / elapsed / 2**20))
"#;

/// Echo server: `HOST PORT`. Prints `LISTENING`, serves one connection
/// (echoing until the peer's FIN, then shutting down its own side), prints
/// `OK bytes=..` and exits 0.
pub const ECHO_SERVER: &str = r#"
import socket, sys, time
host, port = sys.argv[1], int(sys.argv[2])
l = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind((host, port)); l.listen(1); l.settimeout(30)
print('LISTENING', flush=True)
c, peer = l.accept()
c.settimeout(30)
start, n = time.monotonic(), 0
while True:
    data = c.recv(1 << 20)
    if not data:
        break
    c.sendall(data); n += len(data)
c.shutdown(socket.SHUT_WR)
while c.recv(4096):
    pass
c.close()
elapsed = time.monotonic() - start
print('OK bytes=%d seconds=%.3f peer=%s:%d' % (n, elapsed, peer[0], peer[1]), flush=True)
"#;

/// Probes: `HOST`. A UDP datagram to closed port 9 must end in
/// `ECONNREFUSED` on a connected socket (ICMP port unreachable); a TCP
/// connect to closed port 9 must be refused at once (RST); a datagram to
/// UDP port 7 must come back unchanged; a connection to TCP port 7777 (an
/// echo server) is reset by the kernel (`SO_LINGER` 0) after one echo; one
/// to port 5555 (a server that closes without reading) must be reset by
/// the stack. Prints one line per probe.
pub const PROBES: &str = r#"
import socket, struct, sys, time
host = sys.argv[1]
ok = True
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.connect((host, 9)); u.settimeout(0.5)
refused = False
for attempt in range(10):
    try:
        u.send(b'anyone on port 9?')
        u.recv(100)
    except ConnectionRefusedError:
        refused = True; break
    except socket.timeout:
        continue
print('udp-closed-port: %s after %d datagram(s)' % ('ECONNREFUSED' if refused else 'NO ANSWER', attempt + 1))
ok &= refused
t0 = time.monotonic()
try:
    socket.create_connection((host, 9), timeout=5)
    print('tcp-closed-port: CONNECTED?!'); ok = False
except ConnectionRefusedError:
    print('tcp-closed-port: ECONNREFUSED in %.1f ms' % ((time.monotonic() - t0) * 1000))
except Exception as e:
    print('tcp-closed-port: %r' % e); ok = False
e = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
e.connect((host, 7)); e.settimeout(0.5)
echoed = False
for attempt in range(10):
    msg = b'echo me %d' % attempt
    try:
        e.send(msg)
        echoed = e.recv(2048) == msg
        break
    except socket.timeout:
        continue
print('udp-echo: %s' % ('OK' if echoed else 'NO ECHO'))
ok &= echoed
r = socket.create_connection((host, 7777), timeout=5)
r.sendall(b'hello')
echo = r.recv(100)
r.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
r.close()
print('rst-to-stack: sent after an echo of %r' % echo)
ok &= echo == b'hello'
a = socket.create_connection((host, 5555), timeout=5)
a.sendall(b'x' * 1000)
try:
    data = a.recv(100)
    print('abort-from-stack: got %r instead of a reset' % data); ok = False
except ConnectionResetError:
    print('abort-from-stack: ECONNRESET')
except Exception as e:
    print('abort-from-stack: %r' % e); ok = False
sys.exit(0 if ok else 1)
"#;

/// Stalled reader: `HOST PORT N STALL`. With a 16 KiB receive buffer, asks
/// for `GET /N`, reads nothing for STALL seconds (the window closes), then
/// reads everything; prints `OK status=.. bytes=.. sha256=..`.
pub const STALLED_READER: &str = r#"
import hashlib, socket, sys, time
host, port, n, stall = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
s.settimeout(20)
s.connect((host, port))
s.sendall(b'GET /%d HTTP/1.0\r\nHost: stack\r\n\r\n' % n)
time.sleep(stall)
data = bytearray()
while True:
    chunk = s.recv(1 << 16)
    if not chunk:
        break
    data += chunk
head, _, body = bytes(data).partition(b'\r\n\r\n')
status = head.split(b' ')[1].decode() if b' ' in head else '?'
print('OK status=%s bytes=%d sha256=%s' % (status, len(body), hashlib.sha256(body).hexdigest()))
"#;
