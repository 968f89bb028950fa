"""CONNS connections, one thread each, to a redis at HOST:PORT: each SETs
N keys of SIZE bytes of its own, then GETs each and checks every byte.
Prints `ok TOTAL` (keys checked) and exits 0, or says what differed and
exits 1.

    redis_check.py HOST PORT CONNS N SIZE

Used over memif (issue 12), where the client must be accelerated too:
under the shim with ACCEL_QUEUES=Q its threads take the Q queue pairs in
turn, so the connections come to the server's queues in turn.
"""

import socket
import sys
import threading


def value(key, size):
    seed = key + b":"
    return (seed * (size // len(seed) + 1))[:size]


def read_line(f):
    line = f.readline()
    if not line.endswith(b"\r\n"):
        raise ValueError(f"connection ended: {line!r}")
    return line[:-2]


def check(host, port, t, n, size):
    s = socket.create_connection((host, port), timeout=20)
    f = s.makefile("rb")
    keys = [b"t%dk%d" % (t, i) for i in range(n)]
    for k in keys:
        v = value(k, size)
        s.sendall(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(k), k, len(v), v))
        got = read_line(f)
        if got != b"+OK":
            raise ValueError(f"SET {k!r}: {got!r}")
    for k in keys:
        s.sendall(b"*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(k), k))
        head = read_line(f)
        want = value(k, size)
        if head != b"$%d" % len(want):
            raise ValueError(f"GET {k!r}: {head!r}")
        got = f.read(len(want) + 2)
        if got != want + b"\r\n":
            raise ValueError(f"GET {k!r}: {len(got)} bytes differ")
    s.close()


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    conns, n, size = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    errors = []

    def run(t):
        try:
            check(host, port, t, n, size)
        except Exception as e:  # noqa: BLE001 - any failure is reported
            errors.append(f"connection {t}: {e!r}")

    threads = [threading.Thread(target=run, args=(t,)) for t in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        print("; ".join(errors), flush=True)
        sys.exit(1)
    print("ok", conns * n, flush=True)


if __name__ == "__main__":
    main()
