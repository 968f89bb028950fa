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

Prints "peer ready" once everything listens; runs until killed.
"""

import socket
import struct
import sys
import threading

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
        ctl.sendall(b"ok\n")
        while ctl.recv(100):
            pass
        d.close()


def udp_echo(u):
    while True:
        data, addr = u.recvfrom(65536)
        u.sendto(data, addr)


serve(tcp_listener(7001), echo)
never = tcp_listener(7002)
serve(tcp_listener(7004), hello)
serve(tcp_listener(7005), reset)
serve(tcp_listener(7006), dialer)
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind(("0.0.0.0", 7001))
threading.Thread(target=udp_echo, args=(udp,), daemon=True).start()
print("peer ready", flush=True)
threading.Event().wait()
sys.exit(0)
