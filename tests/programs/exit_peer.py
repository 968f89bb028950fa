"""The peer of tests/programs/exit_close.c (tests/tests/exit.rs), in the
clients' namespace: listens on PORT (on every address there: the tap
that brings 198.18.0.1 comes with the accelerated program), takes one
connection and reports what it saw of the other side's exit, one line:

    exit_peer.py PORT send N     reads until the end; prints
                                 "got BYTES eof" (all bytes checked against
                                 the pattern: "bad at OFFSET" otherwise) or
                                 "got BYTES reset"
    exit_peer.py PORT unread     sends 100 bytes, then reads; prints
                                 "reset" or "eof" or "data"
    exit_peer.py PORT wait       sends one byte, then reads; prints
                                 "reset MS" or "eof MS", MS the time
                                 from the byte sent to the end

Prints "listening" first. Bounded: 30 s per wait.
"""

import socket
import sys
import time

port, mode = int(sys.argv[1]), sys.argv[2]
l = socket.socket()
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("0.0.0.0", port))
l.listen(1)
l.settimeout(30)
print("listening", flush=True)
c, _ = l.accept()
c.settimeout(30)
if mode == "send":
    want = int(sys.argv[3])
    got = 0
    bad = None
    end = "eof"
    try:
        while True:
            d = c.recv(65536)
            if not d:
                break
            for i, b in enumerate(d):
                if bad is None and b != ((got + i) * 7 + 3) & 0xFF:
                    bad = got + i
            got += len(d)
    except ConnectionResetError:
        end = "reset"
    print(f"bad at {bad}" if bad is not None else f"got {got} {end}", flush=True)
elif mode == "wait":
    c.sendall(b"!")
    t0 = time.monotonic()
    end = "timeout"
    try:
        d = c.recv(100)
        end = "data" if d else "eof"
    except ConnectionResetError:
        end = "reset"
    except socket.timeout:
        pass
    print(f"{end} {int((time.monotonic() - t0) * 1000)}", flush=True)
else:
    c.sendall(b"x" * 100)
    try:
        d = c.recv(100)
        print("data" if d else "eof", flush=True)
    except ConnectionResetError:
        print("reset", flush=True)
