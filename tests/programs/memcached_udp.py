#!/usr/bin/env python3
"""memcached's UDP protocol, as a client: sets keys and gets them back.

    memcached_udp.py HOST PORT

Every request is one datagram: the 8-byte frame header (request id,
sequence number 0, total datagrams 1, reserved 0) and a text command. A
reply is one or more datagrams with the request's id, each carrying its
sequence number and the total; the client puts them together in sequence
order (memcached 1.6 sends a multi-key get's reply as one such message
per key). memcached cuts replies at 1400 bytes of payload, so a value longer
than that, or a multi-key get, comes back in several datagrams; a request
must fit one datagram (and one 1500-byte frame: the stack drops IP
fragments), so the long values are built with `append`.

Checks: every reply is the one expected, byte for byte. Only the first
request (`version`, until the server is up, for up to 30 s) is retried;
after that a reply that does not come within 5 s fails the run, since a
retried `append` would not be idempotent. Prints one summary line.
"""
import random
import socket
import struct
import sys
import time

HOST, PORT = sys.argv[1], int(sys.argv[2])
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
rid = 0
max_datagrams = 0


def request(cmd, timeout=5.0, multi=False):
    """Sends `cmd` and returns the whole reply, or None on timeout.

    A reply is a message of one or more datagrams (sequence 0 to total - 1).
    memcached 1.6 answers a multi-key get (`multi`) with one message per
    key and a last one for `END`, all with the request's id and each
    numbered from 0: messages are read until one ends with `END`.
    """
    global rid, max_datagrams
    rid = (rid + 1) & 0xFFFF
    sock.sendto(struct.pack("!HHHH", rid, 0, 1, 0) + cmd, (HOST, PORT))
    reply = b""
    end = time.monotonic() + timeout
    while True:
        parts, total = {}, None
        while total is None or len(parts) < total:
            left = end - time.monotonic()
            if left <= 0:
                return None
            sock.settimeout(left)
            try:
                data, _ = sock.recvfrom(65536)
            except socket.timeout:
                return None
            if len(data) < 8:
                sys.exit(f"a datagram of {len(data)} bytes: no frame header")
            r, seq, tot, reserved = struct.unpack("!HHHH", data[:8])
            if r != rid:
                continue  # a late reply to an earlier request
            if tot == 0 or seq >= tot or (total is not None and tot != total) or seq in parts:
                sys.exit(f"bad frame header: seq {seq} total {tot} (had {total}, {sorted(parts)})")
            total = tot
            parts[seq] = data[8:]
        max_datagrams = max(max_datagrams, total)
        reply += b"".join(parts[i] for i in range(total))
        if not multi or reply.endswith(b"END\r\n"):
            return reply


def must(cmd, want, what):
    got = request(cmd, multi=cmd.startswith(b"get "))
    if got is None:
        sys.exit(f"{what}: no reply within 5 s")
    if got != want:
        sys.exit(f"{what}: got {got[:200]!r}... ({len(got)} B), want {want[:200]!r}... ({len(want)} B)")


def value_reply(items):
    out = b""
    for key, flags, value in items:
        out += b"VALUE %s %d %d\r\n%s\r\n" % (key, flags, len(value), value)
    return out + b"END\r\n"


def probe():
    """Whether memcached answers (its address may not exist yet: an
    accelerated server's tap appears when its stack starts)."""
    try:
        return request(b"version\r\n", timeout=0.5) is not None
    except OSError:
        time.sleep(0.2)
        return False


end = time.monotonic() + 30
while not probe():
    if time.monotonic() > end:
        sys.exit("memcached does not answer over UDP within 30 s")

rng = random.Random(7)
items = []
for i in range(1500):
    n = 0 if i % 100 == 5 else rng.randrange(0, 1301)
    items.append((b"k%d:%x" % (i, rng.getrandbits(32)), i * 7, rng.randbytes(n)))
for key, flags, value in items:
    must(b"set %s %d 0 %d\r\n%s\r\n" % (key, flags, len(value), value), b"STORED\r\n", f"set {key}")
for key, flags, value in items:
    must(b"get %s\r\n" % key, value_reply([(key, flags, value)]), f"get {key}")
# Multi-key gets: 21 messages each.
multi = 0
for start in range(0, len(items), 20):
    batch = items[start:start + 20]
    must(b"get " + b" ".join(k for k, _, _ in batch) + b"\r\n", value_reply(batch), f"get of {len(batch)} keys")
    multi += 1
# Long values, built 1000 bytes at a time: up to 60 KB, 44 datagrams.
longs = []
for j, size in enumerate([1401, 2800, 9999, 30000, 60000]):
    key = b"long%d" % j
    value = rng.randbytes(size)
    must(b"set %s 3 0 0\r\n\r\n" % key, b"STORED\r\n", f"set {key}")
    for off in range(0, size, 1000):
        piece = value[off:off + 1000]
        must(b"append %s 0 0 %d\r\n%s\r\n" % (key, len(piece), piece), b"STORED\r\n", f"append {key}")
    must(b"get %s\r\n" % key, value_reply([(key, 3, value)]), f"get {key} ({size} B)")
    longs.append((key, 3, value))
must(b"get " + b" ".join(k for k, _, _ in longs) + b"\r\n", value_reply(longs), "get of the long values")
must(b"delete %s\r\n" % items[0][0], b"DELETED\r\n", "delete")
must(b"get %s\r\n" % items[0][0], b"END\r\n", "get after delete")
print(f"ok: {len(items)} sets and gets, {multi} multi-gets, {len(longs)} long values; "
      f"at most {max_datagrams} datagrams in a reply")
