"""A thread-per-connection echo server: Python's socketserver.ThreadingTCPServer,
as a new user would write one (issue 11). Each connection gets a thread that
reads and echoes back until EOF, with plain blocking calls.

    threaded_echo.py ADDR PORT

Prints "echo ready" once it listens; runs until killed, or until SIGTERM,
which ends it normally (exit status 0, so that what runs at exit runs).

With ECHO_CLOSE_OTHER_FDS=1 it first closes every fd above 2, as a daemon
does (one by one from /proc/self/fd, then os.closerange), and prints how
many closes the kernel (or a preloaded library) refused with EBADF.
"""

import errno
import os
import signal
import socketserver
import sys


class Echo(socketserver.BaseRequestHandler):
    def handle(self):
        while True:
            data = self.request.recv(65536)
            if not data:
                return
            self.request.sendall(data)


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 1024


if os.environ.get("ECHO_CLOSE_OTHER_FDS") == "1":
    refused = 0
    for fd in sorted(int(n) for n in os.listdir("/proc/self/fd")):
        if fd > 2:
            try:
                os.close(fd)
            except OSError as e:
                if e.errno != errno.EBADF:
                    raise
                refused += 1
    os.closerange(3, 65536)
    print(f"closed other fds; {refused} refused", flush=True)

signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
with Server((sys.argv[1], int(sys.argv[2])), Echo) as server:
    print("echo ready", flush=True)
    server.serve_forever()
