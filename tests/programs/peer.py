"""Kernel peer services for the differential harness (tests/programs/diff.c).

Runs, plain (never under libaccel.so), in the peer namespace that holds
198.18.0.1, and serves on every address there:

  7001 tcp  echo: sends back what it receives until EOF, then closes
  7001 udp  echo: sends each datagram back to its sender
  7002 tcp  a listener that never accepts
  7003      nothing (a closed port: RST for TCP, ICMP port unreachable for UDP)
  7004 tcp  sends "hello\n" and closes at once
  7005 tcp  closes at once with SO_LINGER {1, 0}: a reset
  7006 tcp  dialer: reads "PORT MODE\n", connects to 198.18.0.2:PORT and
            replies "ok\n" once connected ("err ERRNO\n" if not); MODE hold
            keeps the connection until the control connection ends, send
            first writes "dialed\n", say-WORD first writes "WORD\n",
            close closes it at once
  7007 tcp  the wire: commands, one a line, each answered with one line
            (socket options whose effect is on the wire, tests/programs/
            diff.c's sockopt_* cases):
              watch PORT MS FIELDS  after MS ms, what 198.18.0.2 sent from
                  its TCP port PORT since that connection's SYN, as
                  FIELD=VALUE for each comma-separated field: data (payload
                  sizes of the segments with new data), gaps (per data
                  segment after the first, the time since the one before:
                  s < 100 ms <= m < 1 s <= l), probes (keepalive probes:
                  empty, one below the next sequence number), rst (RSTs),
                  fin (1 if a FIN came), tos (the TOS bytes seen, in order),
                  mss (the SYN's MSS option), bytes (bytes the sink read
                  from it), rcvmss (the sink's TCP_INFO rcv_mss)
              poke PORT   writes one byte to the sink connection from PORT
                  and answers how soon 198.18.0.2 acknowledged it:
                  ack=now (< 20 ms), ack=delayed, ack=none (not in 1 s)
              mute MS     answers "ok", then 50 ms later drops everything
                  this namespace sends to 198.18.0.2 (its neighbour entry
                  points at a MAC nobody has) for MS ms, then answers
                  "unmuted"
              tfo PORT    connects to 198.18.0.2:PORT twice with TCP Fast
                  Open (MSG_FASTOPEN, "hi\n"), answers syndata=A,B: whether
                  each SYN's data was acknowledged
  7007 udp  TOS echo: answers each datagram with "tos=0xNN", its TOS byte
  7009 tcp  sink: reads and counts until EOF, then closes

A raw socket sees every TCP segment 198.18.0.2 sends here (the kernel's
receive timestamps), for the wire's answers.

Prints "peer ready" once everything listens; runs until killed.
"""

import shutil
import socket
import struct
import subprocess
import sys
import threading
import time

STACK = "198.18.0.2"


def tcp_listener(port, backlog=128):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(backlog)
    return s


def serve(listener, handle):
    def loop():
        while True:
            conn, _ = listener.accept()
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    threading.Thread(target=loop, daemon=True).start()


def echo(conn):
    with conn:
        while True:
            data = conn.recv(65536)
            if not data:
                return
            conn.sendall(data)


def hello(conn):
    conn.sendall(b"hello\n")
    conn.close()


def reset(conn):
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def dialer(ctl):
    with ctl:
        line = b""
        while not line.endswith(b"\n"):
            chunk = ctl.recv(100)
            if not chunk:
                return
            line += chunk
        port, mode = line.decode().split()
        d = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        d.settimeout(5)
        try:
            d.connect((STACK, int(port)))
        except OSError as e:
            ctl.sendall(b"err %d\n" % (e.errno or 0))
            return
        d.settimeout(None)
        if mode == "send":
            d.sendall(b"dialed\n")
        if mode.startswith("say-"):
            d.sendall(mode[4:].encode() + b"\n")
        if mode == "close":
            d.close()
            ctl.sendall(b"ok\n")
            return
        if mode == "rst":
            # Resets the connection when the control connection says so.
            ctl.sendall(b"ok\n")
            if ctl.recv(100):
                d.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                d.close()
            while ctl.recv(100):
                pass
            return
        if mode == "echo":
            # Echoes until the stack's side ends the stream, then closes
            # both (the control connection's end says it saw the end).
            ctl.sendall(b"ok\n")
            echo(d)
            return
        ctl.sendall(b"ok\n")
        while ctl.recv(100):
            pass
        d.close()


def udp_echo(u):
    while True:
        data, addr = u.recvfrom(65536)
        u.sendto(data, addr)


SYN, FIN, RST = 0x02, 0x01, 0x04
SO_TIMESTAMPNS = 35
MASK = 0xFFFFFFFF
lock = threading.Lock()
wire_log = {}  # 198.18.0.2's TCP port -> [(ns, tos, flags, seq, ack, len, mss)]
sinks = {}  # 198.18.0.2's TCP port -> {"sock": s, "bytes": n}


def after(a, b):
    """Sequence number a is after b."""
    return a != b and ((a - b) & MASK) < 0x80000000


def sniff():
    r = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
    r.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    r.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    stack = socket.inet_aton(STACK)
    while True:
        pkt, anc, _, _ = r.recvmsg(65536, 64)
        ns = time.time_ns()
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
                sec, nsec = struct.unpack("qq", data[:16])
                ns = sec * 1_000_000_000 + nsec
        if len(pkt) < 40 or pkt[12:16] != stack:
            continue
        ihl = (pkt[0] & 0xF) * 4
        total = struct.unpack("!H", pkt[2:4])[0]
        tcp = pkt[ihl:total]
        if len(tcp) < 20:
            continue
        sport, _, seq, ack, off = struct.unpack("!HHIIH", tcp[:14])
        doff = (off >> 12) * 4
        flags = off & 0x3F
        mss, opts, i = None, tcp[20:doff], 0
        while i < len(opts) and opts[i] != 0:
            if opts[i] == 1:
                i += 1
                continue
            if i + 1 >= len(opts) or opts[i + 1] < 2:
                break
            if opts[i] == 2 and opts[i + 1] == 4 and i + 4 <= len(opts):
                mss = struct.unpack("!H", opts[i + 2 : i + 4])[0]
            i += opts[i + 1]
        entry = (ns, pkt[1], flags, seq, ack, len(tcp) - doff, mss)
        with lock:
            if flags & SYN:
                wire_log[sport] = []
            wire_log.setdefault(sport, []).append(entry)


def gap_class(ns):
    return "s" if ns < 100_000_000 else "m" if ns < 1_000_000_000 else "l"


def caught_up(port, nbytes):
    """Waits (2 s at most) until the sniffer has seen nbytes of data from
    198.18.0.2's port: then it has seen every segment that came before."""
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        if sum(report_values(port)[0]) >= nbytes:
            return
        time.sleep(0.002)


def report(port, fields):
    data, gaps, probes, rst, fin, tos, mss = report_values(port)
    with lock:
        sink = sinks.get(port)
    values = {
        "data": ",".join(map(str, data)),
        "gaps": ",".join(gaps),
        "probes": probes,
        "rst": rst,
        "fin": fin,
        "tos": ",".join("0x%02x" % t for t in tos),
        "mss": mss,
        "bytes": sink["bytes"] if sink else "none",
    }
    if "rcvmss" in fields:
        try:
            info = sink["sock"].getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
            values["rcvmss"] = struct.unpack("I", info[20:24])[0]
        except (OSError, TypeError):
            values["rcvmss"] = "none"
    return " ".join("%s=%s" % (f, values.get(f, "?")) for f in fields)


def report_values(port):
    """What 198.18.0.2 sent from port: new data sizes, gap classes, probes,
    RSTs, FIN, TOS bytes, the SYN's MSS."""
    with lock:
        log = list(wire_log.get(port, []))
    nxt, last, fin = None, None, 0
    data, gaps, probes, rst, tos, mss = [], [], 0, 0, [], "none"
    for ns, t, flags, seq, _, n, m in log:
        if t not in tos:
            tos.append(t)
        if flags & SYN:
            mss = m if m is not None else "none"
            nxt = (seq + 1) & MASK
            continue
        if flags & RST:
            rst += 1
            continue
        if nxt is None:
            nxt = seq
        end = (seq + n + (1 if flags & FIN else 0)) & MASK
        if n > 0 and after((seq + n) & MASK, nxt):
            data.append(n)
            if last is not None:
                gaps.append(gap_class(ns - last))
            last = ns
        elif n == 0 and not flags & FIN and seq == (nxt - 1) & MASK:
            probes += 1
        if flags & FIN:
            fin = 1
        if after(end, nxt):
            nxt = end
    return data, gaps, probes, rst, fin, tos, mss


def poke(port):
    # The sink may not have registered the connection yet, nor the
    # sniffer seen its handshake's last ACK.
    deadline = time.monotonic() + 2
    while True:
        with lock:
            sink = sinks.get(port)
            acks = [e[4] for e in wire_log.get(port, []) if not e[2] & SYN]
        if sink and acks:
            break
        if time.monotonic() > deadline:
            return "ack=none"
        time.sleep(0.005)
    want = (max(acks, key=lambda a: (a - acks[0]) & MASK) + 1) & MASK
    sent = time.time_ns()
    sink["sock"].sendall(b"x")
    deadline = time.monotonic() + 1
    while time.monotonic() < deadline:
        with lock:
            seen = [e[0] for e in wire_log.get(port, []) if e[0] >= sent and not after(want, e[4])]
        if seen:
            return "ack=now" if seen[0] - sent < 20_000_000 else "ack=delayed"
        time.sleep(0.005)
    return "ack=none"


def neighbour(mute):
    ip = shutil.which("ip") or "/usr/sbin/ip"
    route = subprocess.run([ip, "-o", "route", "get", STACK], capture_output=True, text=True).stdout.split()
    dev = route[route.index("dev") + 1]
    if mute:
        cmd = ["neigh", "replace", STACK, "lladdr", "02:00:00:00:00:99", "nud", "permanent", "dev", dev]
    else:
        cmd = ["neigh", "del", STACK, "dev", dev]
    subprocess.run([ip] + cmd, check=False)


def muted(conn, ms):
    time.sleep(0.05)
    neighbour(True)
    time.sleep(ms / 1000)
    neighbour(False)
    conn.sendall(b"unmuted\n")


def tfo(port):
    got = []
    for _ in range(2):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # Blocking (a Python timeout would make it non-blocking, and a
        # non-blocking MSG_FASTOPEN send ends in EINPROGRESS), but bounded.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", 5, 0))
        try:
            s.sendto(b"hi\n", socket.MSG_FASTOPEN, (STACK, port))
            info = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
            got.append("1" if info[5] & 0x20 else "0")  # TCPI_OPT_SYN_DATA
        except OSError as e:
            got.append("err%d" % (e.errno or 0))
        s.close()
    return "syndata=" + ",".join(got)


def wire(conn):
    me, read = conn.getpeername()[1], 0
    with conn:
        for line in conn.makefile("rb"):
            # Everything 198.18.0.2 sent before this command has been seen
            # once the command itself has (one raw socket, in order).
            read += len(line)
            caught_up(me, read)
            words = line.decode().split()
            if len(words) == 4 and words[0] == "watch":
                time.sleep(int(words[2]) / 1000)
                reply = report(int(words[1]), words[3].split(","))
            elif len(words) == 2 and words[0] == "poke":
                reply = poke(int(words[1]))
            elif len(words) == 2 and words[0] == "mute":
                threading.Thread(target=muted, args=(conn, int(words[1])), daemon=True).start()
                reply = "ok"
            elif len(words) == 2 and words[0] == "tfo":
                reply = tfo(int(words[1]))
            else:
                reply = "what?"
            conn.sendall(reply.encode() + b"\n")


def sink(conn, port):
    rec = {"sock": conn, "bytes": 0}
    with lock:
        sinks[port] = rec
    while True:
        try:
            data = conn.recv(65536)
        except OSError:
            break
        if not data:
            break
        rec["bytes"] += len(data)
    conn.close()


def serve_sinks(listener):
    def loop():
        while True:
            conn, addr = listener.accept()
            threading.Thread(target=sink, args=(conn, addr[1]), daemon=True).start()

    threading.Thread(target=loop, daemon=True).start()


def udp_tos(u):
    u.setsockopt(socket.IPPROTO_IP, socket.IP_RECVTOS, 1)
    while True:
        _, anc, _, addr = u.recvmsg(2048, 64)
        tos = [d[0] for level, kind, d in anc if level == socket.IPPROTO_IP and kind == socket.IP_TOS and d]
        u.sendto(b"tos=0x%02x" % (tos[0] if tos else 0xFF), addr)


serve(tcp_listener(7001), echo)
never = tcp_listener(7002)
serve(tcp_listener(7004), hello)
serve(tcp_listener(7005), reset)
serve(tcp_listener(7006), dialer)
serve(tcp_listener(7007), wire)
serve_sinks(tcp_listener(7009))
threading.Thread(target=sniff, daemon=True).start()
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind(("0.0.0.0", 7001))
threading.Thread(target=udp_echo, args=(udp,), daemon=True).start()
udp_t = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp_t.bind(("0.0.0.0", 7007))
threading.Thread(target=udp_tos, args=(udp_t,), daemon=True).start()
print("peer ready", flush=True)
threading.Event().wait()
sys.exit(0)
