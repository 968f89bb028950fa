"""Socket, readiness, fd and file calls on 127.0.0.1 only, printing results
that do not depend on timing, fd numbers or ports: the shim's end-to-end
test runs this with and without libaccel.so and compares the output."""

import errno
import fcntl
import os
import select
import socket
import struct
import sys
import termios
import threading

scratch = sys.argv[1]


def say(*args):
    print(*args, flush=True)


def err(f):
    try:
        f()
        return "ok"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))


# socketpair: send/recv, FIONREAD, shutdown.
a, b = socket.socketpair()
a.sendall(b"hello")
avail = struct.unpack("i", fcntl.ioctl(b.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0]
say("socketpair", avail, b.recv(5))
a.shutdown(socket.SHUT_WR)
say("socketpair eof", b.recv(5))
a.close()
b.close()

# TCP over loopback: 1 MiB echoed through a server thread.
srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 0))
srv.listen(8)
port = srv.getsockname()[1]


def echo():
    conn, _ = srv.accept()
    with conn:
        while True:
            data = conn.recv(65536)
            if not data:
                break
            conn.sendall(data)


server = threading.Thread(target=echo)
server.start()
cli = socket.create_connection(("127.0.0.1", port))
cli.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
say("tcp nodelay", cli.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0)
say("tcp peer is the server", cli.getpeername() == ("127.0.0.1", port))
payload = bytes(range(256)) * 4096


def send_all():
    cli.sendall(payload)
    cli.shutdown(socket.SHUT_WR)


sender = threading.Thread(target=send_all)
sender.start()
got = bytearray()
while True:
    data = cli.recv(65536)
    if not data:
        break
    got += data
sender.join()
server.join()
cli.close()
say("tcp echo", len(got), got == payload)

# Errors keep their errno.
closed = socket.socket()
closed.bind(("127.0.0.1", 0))
closed_port = closed.getsockname()[1]
closed.close()
refused = socket.socket()
say("connect to a closed port", err(lambda: refused.connect(("127.0.0.1", closed_port))))
refused.close()
say("close of a bad fd", err(lambda: os.close(1_000_000)))
busy = socket.socket()
say("bind to a port in use", err(lambda: busy.bind(("127.0.0.1", port))))
busy.close()
srv.close()

# UDP: sendto/recvfrom, sendmsg/recvmsg, recv_into, MSG_DONTWAIT on empty.
u1 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u1.bind(("127.0.0.1", 0))
u2 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u2.bind(("127.0.0.1", 0))
u2.sendto(b"dgram", u1.getsockname())
data, addr = u1.recvfrom(100)
say("udp recvfrom", data, addr == u2.getsockname())
u2.sendmsg([b"gather", b"ed"], [], 0, u1.getsockname())
say("udp recvmsg", u1.recvmsg(100)[0])
u2.connect(u1.getsockname())
u2.send(b"connected")
buf = bytearray(32)
n = u1.recv_into(buf)
say("udp recv_into", bytes(buf[:n]))
say("udp empty", err(lambda: u1.recv(10, socket.MSG_DONTWAIT)))

# Readiness: epoll (level and edge triggered), poll, select.
r, w = os.pipe()
ep = select.epoll()
ep.register(r, select.EPOLLIN)
ep.register(u1.fileno(), select.EPOLLIN)
say("epoll nothing", ep.poll(0))
os.write(w, b"x")
u2.send(b"y")
say("epoll both", sorted((fd == r, ev) for fd, ev in ep.poll(1)))
ep.modify(r, select.EPOLLIN | select.EPOLLET)
say("epoll edge once", [(fd == r, ev) for fd, ev in ep.poll(0) if fd == r])
say("epoll edge again", [(fd == r, ev) for fd, ev in ep.poll(0) if fd == r])
ep.unregister(r)
ep.unregister(u1.fileno())
ep.close()
os.read(r, 1)
u1.recv(10)
p = select.poll()
p.register(r, select.POLLIN)
p.register(w, select.POLLOUT)
say("poll", sorted((fd == r, ev) for fd, ev in p.poll(100)))
rl, wl, xl = select.select([r], [w], [], 0)
say("select", [fd == r for fd in rl], [fd == w for fd in wl], xl)

# fd numbers: dup, dup2, fcntl (F_DUPFD_CLOEXEC, flags), O_NONBLOCK.
d = os.dup(r)
os.dup2(w, d)
os.write(d, b"z")
say("dup2 now writes the pipe", os.read(r, 1))
d2 = fcntl.fcntl(r, fcntl.F_DUPFD_CLOEXEC, 100)
say("F_DUPFD_CLOEXEC", d2 >= 100, fcntl.fcntl(d2, fcntl.F_GETFD) & fcntl.FD_CLOEXEC)
fcntl.fcntl(r, fcntl.F_SETFL, fcntl.fcntl(r, fcntl.F_GETFL) | os.O_NONBLOCK)
say("nonblocking empty read", err(lambda: os.read(r, 1)))
for fd in (d, d2, r, w):
    os.close(fd)

# Files: variadic open with a mode, pwrite/pread, fsync, fstat, sendfile.
os.umask(0o022)
path = os.path.join(scratch, "file")
fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o640)
say("open mode", oct(os.fstat(fd).st_mode & 0o777))
os.pwrite(fd, b"0123456789", 0)
os.pwrite(fd, b"abc", 10)
os.fsync(fd)
say("pread", os.pread(fd, 5, 8), os.fstat(fd).st_size)
a, b = socket.socketpair()
say("sendfile", os.sendfile(a.fileno(), fd, 2, 6), b.recv(6))
a.close()
b.close()
os.close(fd)
dirfd = os.open(scratch, os.O_RDONLY | os.O_DIRECTORY)
fd = os.open("file", os.O_RDONLY, dir_fd=dirfd)
say("openat", os.read(fd, 4))
os.close(fd)
os.close(dirfd)

# fork: the child writes through a pipe and exits.
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(r)
    os.write(w, b"from the child")
    os._exit(7)
os.close(w)
say("fork", os.read(r, 100), os.WEXITSTATUS(os.waitpid(pid, 0)[1]))
os.close(r)

# closerange (close_range or closefrom): the fds above 3 go, stdio stays.
keep = os.open(path, os.O_RDONLY)
os.closerange(3, 4096)
say("closerange", err(lambda: os.fstat(keep)))
say("done")
