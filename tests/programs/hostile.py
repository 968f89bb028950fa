#!/usr/bin/python3
"""Hostile and broken peers for tests/tests/hostile.rs, made with scapy.

Run with Debian's python3 (python3-scapy) inside the test's clients'
namespace:

    hostile.py ATTACK IFACE DST PORT [ARGS...]

IFACE is the clients' end of the link, DST:PORT the server. Every
attack sends a bounded number of frames, only on IFACE, from addresses
inside 198.18.0.0/16 (the test's link), and prints `sent N` (the frames
or segments it sent) and then `NAME VALUE` lines of what it saw.

Attacks:
  synflood COUNT   COUNT SYNs, each from a different spoofed on-link
                   address (198.18.1.0 on) and port, none of which will
                   ever answer the SYN-ACK.
  inject PORTFILE ROUNDS
                   against the legitimate client's connection (its local
                   port in PORTFILE): ROUNDS rounds of a RST in the window
                   but not at RCV.NXT, a SYN, data whose ACK is far outside
                   the acceptable range, data far outside the window, and
                   a RST with a random sequence number (RFC 5961). The
                   window is taken from one sniffed segment: the worst case
                   of a blind attacker, whose guess landed in it.
  garbage COUNT    COUNT rounds, to the listening port from the clients'
                   address: a bad TCP checksum, a bad IP checksum, an IP
                   total length beyond the frame and one below the header,
                   a TCP data offset past the segment, garbage TCP options
                   (lengths 0 and 1, one running past the header), garbage
                   IP options, a loose source route.
  overlap          a raw connection (from a spoofed on-link address whose
                   ARP we announce) sends its request as overlapping
                   segments whose overlaps disagree, out of order, plus
                   segments far outside the window; prints `ok 1` if the
                   page comes back (the first copy of each byte won).
  tinymss          a raw connection announcing MSS 1 fetches the big file
                   for a second; prints the largest segment it received.
  zerowindow SECS  a raw connection that requests the big file with its
                   window closed and keeps it closed for SECS, answering
                   every zero-window probe; prints the probes it saw.
  oooflood COUNT   a raw connection sends COUNT one-byte segments, each
                   its own hole beyond RCV.NXT.
  arpspoof COUNT   COUNT ARP frames claiming the clients' address
                   (198.18.0.1) for another MAC: unsolicited replies to the
                   server and gratuitous broadcasts, over about 2 s.

Kernel-socket peers (no scapy):
  legit PORTFILE STOPFILE PATH FILE
                   the legitimate client: one keep-alive connection (its
                   local port written to PORTFILE) fetching PATH again and
                   again until STOPFILE exists, checking every byte against
                   FILE; prints its fetches, failures and reconnections.
  neverread CONNS SECS PATH
                   CONNS connections each requesting PATH (large) and never
                   reading, held SECS, then closed.
"""
import os
import random
import select
import socket
import struct
import sys
import time

MAC_FAKE = "02:66:66:66:66:66"


def spoofed(i):
    """The i-th spoofed address: 198.18.1.0 + i (on-link in the /16)."""
    import ipaddress

    return str(ipaddress.IPv4Address("198.18.1.0") + i)


def server_mac(dst):
    from scapy.all import conf, getmacbyip

    conf.verb = 0
    mac = getmacbyip(dst)
    if mac is None:
        sys.exit(f"no ARP answer from {dst}")
    return mac


def synflood(iface, dst, port, args):
    from scapy.all import IP, TCP, Ether, conf, sendp

    conf.verb = 0
    count = int(args[0])
    mac = server_mac(dst)
    frames = [
        Ether(dst=mac)
        / IP(src=spoofed(i), dst=dst)
        / TCP(sport=10000 + i % 50000, dport=port, flags="S", seq=1000 * i, options=[("MSS", 1460)])
        for i in range(count)
    ]
    sendp(frames, iface=iface)
    return len(frames), {}


# ----- raw frames -----------------------------------------------------


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def mac_bytes(mac):
    return bytes(int(x, 16) for x in mac.split(":"))


def tcp_bytes(src, dst, sport, dport, seq, ack, flags, window, payload=b"", options=b""):
    """A TCP header and payload with a correct checksum; options padded
    to a multiple of 4 only if the caller did."""
    off = (20 + len(options)) // 4
    hdr = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, off << 4, flags, window, 0, 0)
    seg = hdr + options + payload
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, len(seg))
    c = csum(pseudo + seg)
    return seg[:16] + struct.pack("!H", c) + seg[18:]


def fix_tcp_sum(src, dst, seg):
    """`seg` with its TCP checksum computed again (after a mangling)."""
    seg = bytes(seg[:16]) + b"\0\0" + bytes(seg[18:])
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, len(seg))
    return seg[:16] + struct.pack("!H", csum(pseudo + seg)) + seg[18:]


def ip_bytes(src, dst, payload, options=b"", total=None, proto=6):
    ihl = (20 + len(options)) // 4
    total = 20 + len(options) + len(payload) if total is None else total
    hdr = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, total, random.randrange(65536), 0x4000, 64, proto, 0,
                      socket.inet_aton(src), socket.inet_aton(dst)) + options
    c = csum(hdr)
    return hdr[:10] + struct.pack("!H", c) + hdr[12:] + payload


FIN, SYN, RST, PSH, ACK = 1, 2, 4, 8, 16


class Link:
    """An AF_PACKET socket on IFACE: raw frames out, parsed segments in."""

    def __init__(self, iface, dst):
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
        # The legitimate client's transfer shares the interface: every one of
        # its frames queues here too, and a small buffer would drop the
        # segments a scenario waits for (SO_RCVBUFFORCE: we are root).
        self.sock.setsockopt(socket.SOL_SOCKET, 33, 16 << 20)
        self.sock.bind((iface, 0))
        with open(f"/sys/class/net/{iface}/address") as f:
            self.mac = f.read().strip()
        self.dmac = server_mac(dst)
        self.dst = dst
        self.sent = 0

    def send_ip(self, packet, src_mac=None):
        eth = mac_bytes(self.dmac) + mac_bytes(src_mac or self.mac) + b"\x08\x00"
        self.sock.send(eth + packet)
        self.sent += 1

    def arp(self, op, sender_mac, sender_ip, target_mac, target_ip, eth_dst):
        body = struct.pack("!HHBBH", 1, 0x0800, 6, 4, op) + mac_bytes(sender_mac) + socket.inet_aton(sender_ip)
        body += mac_bytes(target_mac) + socket.inet_aton(target_ip)
        eth = mac_bytes(eth_dst) + mac_bytes(sender_mac) + b"\x08\x06"
        self.sock.send(eth + body)
        self.sent += 1

    def drain(self):
        """Forgets the frames queued since the socket was opened."""
        while select.select([self.sock], [], [], 0)[0]:
            self.sock.recv(65535)

    def recv(self, want, timeout):
        """The next TCP segment for which want(seg) holds, as a dict, or
        None after `timeout` seconds."""
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return None
            r, _, _ = select.select([self.sock], [], [], left)
            if not r:
                return None
            frame = self.sock.recv(65535)
            if len(frame) < 54 or frame[12:14] != b"\x08\x00" or frame[23] != 6:
                continue
            ihl = (frame[14] & 15) * 4
            total = struct.unpack("!H", frame[16:18])[0]
            t = 14 + ihl
            sport, dport, seq, ack, off, flags, win = struct.unpack("!HHIIBBH", frame[t:t + 16])
            doff = (off >> 4) * 4
            seg = {
                "src": socket.inet_ntoa(frame[26:30]),
                "dst": socket.inet_ntoa(frame[30:34]),
                "sport": sport,
                "dport": dport,
                "seq": seq,
                "ack": ack,
                "flags": flags,
                "win": win,
                "payload": frame[t + doff:14 + total],
            }
            if want(seg):
                return seg


class RawConn:
    """A TCP connection played by hand from a spoofed on-link address
    (whose ARP we announce, so the server sends to our card; the kernel
    here drops what is not for its own address, without a reset)."""

    def __init__(self, link, port, last):
        self.link, self.port = link, port
        self.ip = f"198.18.0.{last}"
        self.sport = random.randrange(20000, 60000)
        self.seq = random.randrange(1 << 32)
        self.ack = 0
        # "Who has DST? Tell IP": the server learns our address.
        link.arp(1, link.mac, self.ip, "00:00:00:00:00:00", link.dst, "ff:ff:ff:ff:ff:ff")
        time.sleep(0.05)

    def send(self, flags, payload=b"", seq=None, ack=None, window=65535, options=b""):
        seq = self.seq if seq is None else seq
        ack = self.ack if ack is None else ack
        tcp = tcp_bytes(self.ip, self.link.dst, self.sport, self.port, seq, ack, flags, window, payload, options)
        self.link.send_ip(ip_bytes(self.ip, self.link.dst, tcp))

    def mine(self, seg):
        return seg["dst"] == self.ip and seg["dport"] == self.sport

    def recv(self, timeout=2.0):
        return self.link.recv(self.mine, timeout)

    def connect(self, mss=1460, window=65535):
        self.send(SYN, ack=0, window=window, options=struct.pack("!BBH", 2, 4, mss))
        sa = self.link.recv(lambda s: self.mine(s) and s["flags"] & SYN, 3.0)
        if sa is None:
            sys.exit(f"no SYN-ACK for {self.ip}:{self.sport}")
        self.seq = (self.seq + 1) & 0xFFFFFFFF
        self.ack = (sa["seq"] + 1) & 0xFFFFFFFF
        self.send(ACK, window=window)
        return sa

    def request(self, path, window=65535):
        req = f"GET {path} HTTP/1.1\r\nHost: hostile\r\n\r\n".encode()
        self.send(ACK | PSH, req, window=window)
        self.seq = (self.seq + len(req)) & 0xFFFFFFFF

    def reset(self):
        self.send(RST | ACK)


# ----- attacks on the legitimate connection ---------------------------


def inject(iface, dst, port, args):
    portfile, rounds = args[0], int(args[1])
    with open(portfile) as f:
        cport = int(f.read())
    link = Link(iface, dst)
    client = "198.18.0.1"
    # One segment of the client's, for the window (a fresh one).
    link.drain()
    seen = link.recv(lambda s: s["src"] == client and s["sport"] == cport and s["dport"] == port, 5.0)
    if seen is None:
        sys.exit(f"saw nothing of the client's connection from port {cport}")
    seq, ack = seen["seq"], seen["ack"]

    def forge(flags, s, a, payload=b""):
        tcp = tcp_bytes(client, dst, cport, port, s, a, flags, 65535, payload)
        link.send_ip(ip_bytes(client, dst, tcp), MAC_FAKE)

    for i in range(rounds):
        forge(RST, seq + 1000 + 97 * i, 0)  # in the window, not exact
        forge(SYN, random.randrange(1 << 32), 0)
        forge(ACK | PSH, seq + 12000 + 29 * i, ack + (1 << 30) + i, b"GET /evil HTTP/1.1\r\n\r\n")  # in the window, ACK of nothing sent
        forge(ACK | PSH, seq + (1 << 30), ack, b"far away")  # outside the window
        forge(RST, random.randrange(1 << 32), 0)  # blind
        if i % 50 == 49:
            time.sleep(0.01)
    return link.sent, {}


def garbage(iface, dst, port, args):
    count = int(args[0])
    link = Link(iface, dst)
    src = "198.18.0.1"
    mss = struct.pack("!BBH", 2, 4, 1460)
    for i in range(count):
        sp = 30000 + i

        def syn(options=mss):
            return tcp_bytes(src, dst, sp, port, 1000 * i, 0, SYN, 65535, b"", options)

        t = bytearray(syn())
        t[16] ^= 0x5A  # TCP checksum
        link.send_ip(ip_bytes(src, dst, bytes(t)))
        p = bytearray(ip_bytes(src, dst, syn()))
        p[10] ^= 0x5A  # IP checksum
        link.send_ip(bytes(p))
        link.send_ip(ip_bytes(src, dst, syn(), total=200))  # longer than the frame
        link.send_ip(ip_bytes(src, dst, syn(), total=16))  # shorter than the header
        t = bytearray(syn())
        t[12] = 0xF0  # data offset 60 > 24
        link.send_ip(ip_bytes(src, dst, fix_tcp_sum(src, dst, t)))
        for opts in (b"\x99\x00\x00\x00", b"\x02\x01\x05\xb4", b"\x01\x01\x08\x0a\x00\x00\x00\x00"):
            # kind 0x99 length 0; MSS with length 1; timestamps running past
            link.send_ip(ip_bytes(src, dst, syn(opts)))
        link.send_ip(ip_bytes(src, dst, syn(), options=b"\x99\x00\xff\xff"))  # IP option length 0
        link.send_ip(ip_bytes(src, dst, syn(), options=b"\x83\x07\x04\xc6\x12\x00\x01\x00"))  # LSRR
        time.sleep(0.002)  # paced: every frame must reach the stack to be counted
    return link.sent, {}


# ----- raw connections -----------------------------------------------------


def overlap(iface, dst, port, args):
    link = Link(iface, dst)
    c = RawConn(link, port, 60)
    c.connect()
    req = b"GET / HTTP/1.1\r\nHost: hostile\r\nConnection: close\r\n\r\n"
    base = c.seq
    lie = b"\0" * 5  # a NUL in a request line or header: nginx answers 400
    c.send(ACK, req[0:20], seq=base)  # in order
    c.send(ACK, req[30:40], seq=base + 30)  # out of order: held
    c.send(ACK, req[25:30] + lie, seq=base + 25)  # new [25, 30); its [30, 35) disagrees with what is held
    c.send(ACK, req[20:25], seq=base + 20)  # fills the hole: [0, 40) in order
    c.send(ACK, lie[:2] + req[40:], seq=base + 38)  # [38, 40) disagrees with what was taken
    c.send(ACK, b"far ahead", seq=base + (1 << 30))
    c.send(ACK, b"far behind", seq=base - (1 << 30))
    c.seq = base + len(req)
    body = b""
    end = time.monotonic() + 3
    while time.monotonic() < end:
        seg = c.recv(0.5)
        if seg is None:
            continue
        if seg["payload"] and seg["seq"] == c.ack:
            body += seg["payload"]
            c.ack = (c.ack + len(seg["payload"])) & 0xFFFFFFFF
            c.send(ACK)
        if seg["flags"] & FIN:
            c.ack = (c.ack + 1) & 0xFFFFFFFF
            c.send(ACK)
            break
    c.reset()
    ok = body.startswith(b"HTTP/1.1 200") and body.endswith(b"hostile peers test page\n")
    return link.sent, {"ok": int(ok)}


def tinymss(iface, dst, port, args):
    link = Link(iface, dst)
    c = RawConn(link, port, 61)
    c.connect(mss=1)
    c.request("/big.bin")
    largest, got = 0, 0
    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        seg = c.recv(0.3)
        if seg is None:
            continue
        n = len(seg["payload"])
        largest = max(largest, n)
        if n and seg["seq"] == c.ack:
            got += n
            c.ack = (c.ack + n) & 0xFFFFFFFF
            c.send(ACK)
    c.reset()
    return link.sent, {"largest_segment": largest, "bytes": got}


def zerowindow(iface, dst, port, args):
    # Held until `want` probes were answered or `secs` passed: the probe
    # interval follows the RTO, which this slow peer stretches (it reads
    # every frame of the legitimate client's transfer to find the SYN-ACK:
    # seconds on a loaded machine, the handshake's RTT sample).
    want, secs = int(args[0]), float(args[1])
    link = Link(iface, dst)
    c = RawConn(link, port, 62)
    c.connect(window=0)
    c.request("/big.bin", window=0)
    probes, data = 0, 0
    end = time.monotonic() + secs
    while time.monotonic() < end and probes < want:
        seg = c.recv(0.5)
        if seg is None:
            continue
        if seg["payload"]:
            data += len(seg["payload"])
        # A probe (Linux's form and ours: SND.UNA - 1, no data) or any
        # segment: answer with the window still closed.
        if seg["seq"] == (c.ack - 1) & 0xFFFFFFFF:
            probes += 1
        c.send(ACK, window=0)
    c.reset()
    return link.sent, {"probes": probes, "bytes_past_window": data}


def oooflood(iface, dst, port, args):
    count = int(args[0])
    link = Link(iface, dst)
    c = RawConn(link, port, 63)
    c.connect()
    for i in range(count):
        c.send(ACK, b"x", seq=c.seq + 1000 + 2 * i)
        if i % 200 == 199:
            time.sleep(0.005)
    time.sleep(0.2)
    c.reset()
    return link.sent, {}


def arpspoof(iface, dst, port, args):
    count = int(args[0])
    link = Link(iface, dst)
    victim = "198.18.0.1"
    for i in range(count):
        if i % 2 == 0:
            link.arp(2, MAC_FAKE, victim, link.dmac, dst, link.dmac)  # unsolicited reply
        else:
            link.arp(1, MAC_FAKE, victim, "00:00:00:00:00:00", victim, "ff:ff:ff:ff:ff:ff")  # gratuitous
        time.sleep(2.0 / count)
    return link.sent, {}


# ----- kernel-socket peers ---------------------------------------------------


def legit(iface, dst, port, args):
    portfile, stopfile, path, file = args
    with open(file, "rb") as f:
        expected = f.read()
    req = f"GET {path} HTTP/1.1\r\nHost: legit\r\n\r\n".encode()
    fetches = failures = reconnects = nbytes = 0
    s = None
    end = time.monotonic() + 100
    while not os.path.exists(stopfile) and time.monotonic() < end:
        try:
            if s is None:
                s = socket.create_connection((dst, port), timeout=5)
                s.settimeout(5)
                if fetches + failures == 0:
                    with open(portfile + ".tmp", "w") as f:
                        f.write(str(s.getsockname()[1]))
                    os.rename(portfile + ".tmp", portfile)
                else:
                    reconnects += 1
            s.sendall(req)
            buf = b""
            while b"\r\n\r\n" not in buf:
                d = s.recv(65536)
                if not d:
                    raise ConnectionError("closed in the headers")
                buf += d
            head, body = buf.split(b"\r\n\r\n", 1)
            if not head.startswith(b"HTTP/1.1 200"):
                raise ValueError(head[:40])
            n = int([h.split(b":")[1] for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")][0])
            while len(body) < n:
                d = s.recv(min(1 << 20, n - len(body)))
                if not d:
                    raise ConnectionError("closed in the body")
                body += d
            if body != expected:
                raise ValueError("wrong bytes")
            fetches += 1
            nbytes += n
        except (OSError, ValueError) as e:
            print(f"failure: {e!r}", file=sys.stderr)
            failures += 1
            if s is not None:
                s.close()
            s = None
            time.sleep(0.1)
    return fetches, {"failures": failures, "reconnects": reconnects, "bytes": nbytes}


def neverread(iface, dst, port, args):
    conns, secs, path = int(args[0]), float(args[1]), args[2]
    socks = []
    for _ in range(conns):
        s = socket.create_connection((dst, port), timeout=5)
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: sloth\r\n\r\n".encode())
        socks.append(s)
    time.sleep(secs)
    queued = 0
    for s in socks:
        # What the kernel holds unread for us (FIONREAD).
        import fcntl
        import termios

        queued += struct.unpack("i", fcntl.ioctl(s, termios.FIONREAD, b"\0\0\0\0"))[0]
        s.close()
    return conns, {"unread_bytes": queued}


ATTACKS = {
    "synflood": synflood,
    "inject": inject,
    "garbage": garbage,
    "overlap": overlap,
    "tinymss": tinymss,
    "zerowindow": zerowindow,
    "oooflood": oooflood,
    "arpspoof": arpspoof,
    "legit": legit,
    "neverread": neverread,
}


def main():
    if len(sys.argv) < 5 or sys.argv[1] not in ATTACKS:
        sys.exit(__doc__)
    attack, iface, dst, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    n, seen = ATTACKS[attack](iface, dst, port, sys.argv[5:])
    print(f"sent {n}")
    for k, v in seen.items():
        print(f"{k} {v}")


if __name__ == "__main__":
    main()
