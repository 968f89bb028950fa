"""Connections that one process's stack took and it never accepted, taken
over by the next process on a shared port (issue 12: what an nginx
reload's old worker leaves behind). Three roles:

    adrift.py first PORT GO      listens, never accepts; exits once the file
                                 GO exists (the connections are adrift)
    adrift.py second PORT N      listens, accepts N connections, answers
                                 each `hello I` with `ok I`; prints `served N`
    adrift.py client HOST PORT N opens N connections, sends `hello I` on
                                 each, prints `sent N`, then waits for every
                                 `ok I` and prints `answered N`

Any failure prints what failed and exits 1.
"""

import os
import select
import socket
import sys
import time


def listener(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Both processes listen on the port for a while, as two programs may.
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind(("0.0.0.0", port))
    s.listen(64)
    return s


def first(port, go):
    s = listener(port)
    print("listening", flush=True)
    end = time.monotonic() + 60
    while not os.path.exists(go) and time.monotonic() < end:
        # Waits on the listener (which starts the stack under the shim)
        # but never accepts.
        select.select([s], [], [], 0.05)
    # Exits with the connections in the accept queue.
    sys.exit(0)


def read_line(c, what):
    """One line from socket `c`; exits saying so if `what` closes first."""
    got = b""
    while not got.endswith(b"\n"):
        part = c.recv(100)
        if not part:
            print(f"{what} closed after {got!r}", flush=True)
            sys.exit(1)
        got += part
    return got


def second(port, n):
    s = listener(port)
    s.settimeout(30)
    print("listening", flush=True)
    for _ in range(n):
        c, _ = s.accept()
        c.settimeout(10)
        got = read_line(c, "connection")
        word, i = got.split()
        if word != b"hello":
            print(f"got {got!r}", flush=True)
            sys.exit(1)
        c.sendall(b"ok " + i + b"\n")
        c.close()
    print("served", n, flush=True)


def client(host, port, n):
    conns = []
    for i in range(n):
        c = socket.create_connection((host, port), timeout=10)
        c.sendall(b"hello %d\n" % i)
        conns.append(c)
    print("sent", n, flush=True)
    for i, c in enumerate(conns):
        c.settimeout(40)
        got = read_line(c, f"connection {i}")
        if got != b"ok %d\n" % i:
            print(f"connection {i}: {got!r}", flush=True)
            sys.exit(1)
    print("answered", n, flush=True)


def main():
    role = sys.argv[1]
    if role == "first":
        first(int(sys.argv[2]), sys.argv[3])
    elif role == "second":
        second(int(sys.argv[2]), int(sys.argv[3]))
    else:
        client(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))


if __name__ == "__main__":
    main()
