/* Calls that C programs make through glibc's fortified and variadic entry
 * points, printing results that do not depend on fd numbers or ports. The
 * shim's end-to-end test builds it with -O2 -D_FORTIFY_SOURCE=2 (so read,
 * recv, recvfrom, poll and FD_SET go through __read_chk, __recv_chk,
 * __recvfrom_chk, __poll_chk and __fdelt_chk), runs it with and without
 * libaccel.so and compares the output. Loopback only. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHECK(x) do { if (!(x)) { printf("FAILED: %s (errno %d) at line %d\n", #x, errno, __LINE__); exit(1); } } while (0)

/* Sizes the compiler cannot see, so the fortified versions are called. */
static volatile size_t want = 64;

int main(int argc, char **argv) {
    CHECK(argc == 2);
    char buf[64];
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);

    /* __read_chk, ioctl(FIONREAD) with a pointer. */
    CHECK(write(sv[0], "fortified", 9) == 9);
    int avail = 0;
    CHECK(ioctl(sv[1], FIONREAD, &avail) == 0);
    ssize_t n = read(sv[1], buf, want);
    printf("read %d %zd %.*s\n", avail, n, (int)n, buf);

    /* __recv_chk, and errno through a fortified call. */
    CHECK(send(sv[0], "again", 5, 0) == 5);
    n = recv(sv[1], buf, want, 0);
    printf("recv %zd %.*s\n", n, (int)n, buf);
    n = recv(sv[1], buf, want, MSG_DONTWAIT);
    printf("recv empty %zd %s\n", n, errno == EAGAIN ? "EAGAIN" : "?");

    /* __recvfrom_chk over UDP on 127.0.0.1. */
    int u = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t alen = sizeof a;
    CHECK(bind(u, (struct sockaddr *)&a, sizeof a) == 0);
    CHECK(getsockname(u, (struct sockaddr *)&a, &alen) == 0);
    CHECK(sendto(u, "dgram", 5, 0, (struct sockaddr *)&a, sizeof a) == 5);
    struct sockaddr_in from;
    socklen_t flen = sizeof from;
    n = recvfrom(u, buf, want, 0, (struct sockaddr *)&from, &flen);
    printf("recvfrom %zd %.*s %s\n", n, (int)n, buf, from.sin_port == a.sin_port ? "self" : "other");

    /* __poll_chk, __fdelt_chk (FD_SET of a run-time fd), select. */
    struct pollfd pfd[2] = { { .fd = sv[1], .events = POLLIN }, { .fd = sv[0], .events = POLLOUT } };
    volatile nfds_t npfd = 2;
    int ready = poll(pfd, npfd, 0);
    printf("poll %d %x %x\n", ready, pfd[0].revents, pfd[1].revents);
    fd_set w;
    FD_ZERO(&w);
    FD_SET(sv[0], &w);
    struct timeval tv = { 0, 0 };
    ready = select(sv[0] + 1, NULL, &w, NULL, &tv);
    printf("select %d %d\n", ready, FD_ISSET(sv[0], &w) != 0);

    /* epoll_pwait2 with a zero timeout, epoll_pwait. */
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = { .events = EPOLLOUT, .data.u32 = 42 };
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, sv[0], &ev) == 0);
    struct timespec zero = { 0, 0 };
    struct epoll_event out[4];
    int k = epoll_pwait2(ep, out, 4, &zero, NULL);
    printf("epoll_pwait2 %d %u %x\n", k, out[0].data.u32, out[0].events);
    printf("epoll_pwait %d\n", epoll_pwait(ep, out, 4, 0, NULL));

    /* Variadic open with O_CREAT and a mode; fcntl with and without an
     * argument; F_DUPFD with a minimum; dup3; close_range. */
    char path[4096];
    snprintf(path, sizeof path, "%s/created", argv[1]);
    umask(022);
    int fd = open(path, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0751);
    struct stat st;
    CHECK(fd >= 0 && fstat(fd, &st) == 0);
    printf("open mode %o\n", st.st_mode & 0777);
    CHECK(pwrite(fd, "0123456789", 10, 0) == 10);
    n = pread(fd, buf, 4, 3);
    printf("pread %.*s fsync %d\n", (int)n, buf, fsync(fd));
    int fl = fcntl(fd, F_GETFL);
    CHECK(fcntl(fd, F_SETFL, fl | O_NONBLOCK) == 0);
    printf("fcntl nonblock %d\n", (fcntl(fd, F_GETFL) & O_NONBLOCK) != 0);
    int high = fcntl(fd, F_DUPFD_CLOEXEC, 200);
    printf("F_DUPFD_CLOEXEC %d\n", high >= 200);
    int d3 = dup3(fd, high + 1, O_CLOEXEC);
    printf("dup3 %d %d\n", d3 == high + 1, fcntl(d3, F_GETFD) & FD_CLOEXEC);
    int r = close_range(high, high + 1, 0);
    printf("close_range %d %d\n", r, fcntl(high, F_GETFD) == -1 && errno == EBADF);
    r = close(high);
    printf("close bad fd %d %s\n", r, errno == EBADF ? "EBADF" : "?");
    int rel = openat(AT_FDCWD, path, O_RDONLY);
    printf("openat %d\n", rel >= 0);
    return 0;
}
