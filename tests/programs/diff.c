/*
 * diff.c: the differential harness. The same sequence of socket calls,
 * run once on the kernel and once under libaccel.so; every call prints
 *
 *     case NAME step K: ret=R errno=E  # the call
 *
 * (errno only when R < 0; `ret=fd` for a new descriptor, whose number
 * the shim's own fds may shift; an ephemeral port prints as `ephemeral`),
 * and values read back print as
 * `case NAME step K: what=value`. tests/tests/differential.rs runs both
 * and diffs the outputs line by line: any difference is the shim behaving
 * otherwise than the kernel.
 *
 * Topology (the same addresses in both runs): this program is 198.18.0.2;
 * tests/programs/peer.py serves at 198.18.0.1 (echo 7001 tcp+udp, a
 * listener that never accepts 7002, closed 7003, hello-and-close 7004,
 * reset 7005, a dialer 7006 that connects back to us, the wire 7007 that
 * reports what we sent as seen on the wire and can mute its side, a sink
 * 7009). 198.18.0.3 never answers. Sockets on the wildcard or 198.18.0.2, and connections to
 * 198.18.0.1, are the accelerated ones; loopback cases stay in the kernel.
 *
 * Nothing printed depends on timing: every wait is for a state (poll for
 * readiness, FIONREAD for a byte count) with a bound of 5 s, and what a
 * wait observed is printed only once the state is reached. The socket
 * option cases whose effect is a time (keepalive, TCP_USER_TIMEOUT,
 * SO_LINGER, TCP_CORK's ceiling, TCP_DEFER_ACCEPT, TCP_QUICKACK) print it
 * only as a range wide enough for a loaded machine (a second of margin
 * for the seconds-long ones), or as the peer's coarse classes. Ports: case i
 * uses BASE + 8 i .. BASE + 8 i + 7 (BASE is argv[1]). Each case runs
 * under alarm(20) with a SIGSEGV/SIGALRM handler, so a crash or a hang in
 * one case is printed and the next case runs.
 *
 *     diff BASE [CASE...]     run every case, or only those named
 *
 * Built with -O2 -D_FORTIFY_SOURCE=2 -D_FILE_OFFSET_BITS=64, so that the
 * fortified (__read_chk, __recv_chk, __recvfrom_chk, __poll_chk,
 * __fdelt_chk) and 64-bit (fcntl64, sendfile64) entry points are the ones
 * called, as in Debian's binaries.
 *
 * The table of cases is at the end of the file.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <linux/close_range.h>
#include <time.h>
#include <unistd.h>
#include <linux/sockios.h>

/* ---- output -------------------------------------------------------- */

static const char *cur;
static int stepno, case_index, base;

static const char *en(int e)
{
	static char buf[16];
	switch (e) {
#define X(n) case n: return #n;
	X(EPERM) X(ENOENT) X(EINTR) X(EBADF) X(EAGAIN) X(ENOMEM) X(EFAULT) X(EEXIST)
	X(EINVAL) X(ENFILE) X(EMFILE) X(ENOTTY) X(EPIPE) X(ENOSYS) X(ENOTSOCK)
	X(EDESTADDRREQ) X(EMSGSIZE) X(EPROTOTYPE) X(ENOPROTOOPT) X(EPROTONOSUPPORT)
	X(ESOCKTNOSUPPORT) X(EOPNOTSUPP) X(EAFNOSUPPORT) X(EADDRINUSE) X(EADDRNOTAVAIL)
	X(ENETDOWN) X(ENETUNREACH) X(ECONNABORTED) X(ECONNRESET) X(ENOBUFS) X(EISCONN)
	X(ENOTCONN) X(ETIMEDOUT) X(ECONNREFUSED) X(EHOSTUNREACH) X(EALREADY)
	X(EINPROGRESS) X(EIO) X(ENXIO) X(ESPIPE)
#undef X
	}
	snprintf(buf, sizeof buf, "E%d", e);
	return buf;
}

static void line(const char *what, long r, int e, int is_fd)
{
	++stepno;
	if (r < 0)
		printf("case %s step %d: ret=%ld errno=%s  # %s\n", cur, stepno, r, en(e), what);
	else if (is_fd)
		printf("case %s step %d: ret=fd  # %s\n", cur, stepno, what);
	else
		printf("case %s step %d: ret=%ld  # %s\n", cur, stepno, r, what);
	fflush(stdout);
}

/* S(call): print the result of a call; F(call): of a call returning an fd. */
#define S(x) ({ errno = 0; long r_ = (long)(x); int e_ = errno; line(#x, r_, e_, 0); errno = e_; r_; })
#define F(x) ({ errno = 0; long r_ = (long)(x); int e_ = errno; line(#x, r_, e_, 1); errno = e_; (int)r_; })

/* V(what, fmt, ...): print a value read back. */
static void V(const char *what, const char *fmt, ...)
{
	va_list ap;
	printf("case %s step %d: %s=", cur, ++stepno, what);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

/* ---- addresses and helpers (these print nothing) ---------------------- */

static struct sockaddr_in in4(const char *ip, int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	inet_pton(AF_INET, ip, &a.sin_addr);
	return a;
}
#define PEER(p) in4("198.18.0.1", p)
#define ME(p) in4("198.18.0.2", p)
#define ANY(p) in4("0.0.0.0", p)
#define LO(p) in4("127.0.0.1", p)
#define SA(a) ((struct sockaddr *)&(a))
#define L ((socklen_t)sizeof(struct sockaddr_in))

/* Port k of this case. */
static int P(int k) { return base + 8 * case_index + k; }

static const char *show(const struct sockaddr_in *a)
{
	static char buf[4][40];
	static int i;
	char ip[INET_ADDRSTRLEN];
	i = (i + 1) % 4;
	inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
	/* An ephemeral port (32768 and up here) differs from run to run. */
	if (ntohs(a->sin_port) >= 32768)
		snprintf(buf[i], sizeof buf[i], "%s:ephemeral", ip);
	else
		snprintf(buf[i], sizeof buf[i], "%s:%d", ip, ntohs(a->sin_port));
	return buf[i];
}

static const char *show_ip(const struct sockaddr_in *a)
{
	static char ip[INET_ADDRSTRLEN];
	inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
	return ip;
}

static const char *evs(uint32_t e)
{
	static char buf[8][128];
	static int i;
	static const struct { uint32_t bit; const char *name; } names[] = {
		{ EPOLLIN, "IN" }, { EPOLLPRI, "PRI" }, { EPOLLOUT, "OUT" }, { EPOLLERR, "ERR" },
		{ EPOLLHUP, "HUP" }, { POLLNVAL, "NVAL" }, { EPOLLRDNORM, "RDNORM" },
		{ EPOLLRDBAND, "RDBAND" }, { EPOLLWRNORM, "WRNORM" }, { EPOLLWRBAND, "WRBAND" },
		{ EPOLLMSG, "MSG" }, { EPOLLRDHUP, "RDHUP" },
	};
	i = (i + 1) % 8;
	buf[i][0] = 0;
	for (size_t k = 0; k < sizeof names / sizeof names[0]; k++)
		if (e & names[k].bit) {
			if (buf[i][0])
				strcat(buf[i], "|");
			strcat(buf[i], names[k].name);
			e &= ~names[k].bit;
		}
	if (e)
		sprintf(buf[i] + strlen(buf[i]), "%s0x%x", buf[i][0] ? "|" : "", e);
	if (!buf[i][0])
		strcpy(buf[i], "0");
	return buf[i];
}

static int tcp(void) { return socket(AF_INET, SOCK_STREAM, 0); }
static int udp(void) { return socket(AF_INET, SOCK_DGRAM, 0); }

static void timeouts(int fd)
{
	struct timeval tv = { 5, 0 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

static void nonblock(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }
static int geti(int fd, int level, int name)
{
	int v = -12345;
	socklen_t len = sizeof v;
	if (getsockopt(fd, level, name, &v, &len) < 0)
		return -errno;
	return v;
}
static void seti(int fd, int level, int name, int v) { setsockopt(fd, level, name, &v, sizeof v); }

static long ms_since(const struct timespec *t0)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (t.tv_sec - t0->tv_sec) * 1000 + (t.tv_nsec - t0->tv_nsec) / 1000000;
}

/* A blocking TCP connection to the peer's port, -1 if it failed. */
static int conn(int port)
{
	int s = tcp();
	struct sockaddr_in a = PEER(port);
	timeouts(s);
	if (connect(s, SA(a), L) < 0) {
		int e = errno;
		close(s);
		errno = e;
		return -1;
	}
	return s;
}

/* A listener on the wildcard, port p (SO_REUSEADDR), -1 if it failed. */
static int listener(int p)
{
	int s = tcp();
	struct sockaddr_in a = ANY(p);
	seti(s, SOL_SOCKET, SO_REUSEADDR, 1);
	timeouts(s);
	if (bind(s, SA(a), L) < 0 || listen(s, 16) < 0) {
		close(s);
		return -1;
	}
	return s;
}

/* poll one fd; the revents, 0 on timeout, -1 on error. */
static int poll1(int fd, short ev, int ms)
{
	struct pollfd p = { fd, ev, 0 };
	int r = poll(&p, 1, ms);
	return r > 0 ? p.revents : r;
}

/* Waits until poll on fd reports any of `want` (5 s); the last revents. */
static int wait_ev(int fd, short ev, short want)
{
	struct timespec t0;
	int r = 0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (ms_since(&t0) < 5000) {
		r = poll1(fd, ev, 100);
		if (r > 0 && (r & want))
			return r;
		if (r > 0)
			usleep(10000);
	}
	return r;
}

/* Waits until at least n bytes are readable (5 s); the count seen. */
static int wait_inq(int fd, int n)
{
	struct timespec t0;
	int q = 0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (ms_since(&t0) < 5000) {
		if (ioctl(fd, FIONREAD, &q) < 0)
			return -errno;
		if (q >= n)
			return q;
		poll1(fd, POLLIN, 50);
		usleep(2000);
	}
	return q;
}

/* Reads exactly n bytes (5 s); how many it got. */
static long read_exact(int fd, void *buf, size_t n)
{
	struct timespec t0;
	size_t got = 0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (got < n && ms_since(&t0) < 5000) {
		if (poll1(fd, POLLIN, 100) <= 0)
			continue;
		ssize_t r = recv(fd, (char *)buf + got, n - got, MSG_DONTWAIT);
		if (r == 0 || (r < 0 && errno != EAGAIN))
			break;
		if (r > 0)
			got += r;
	}
	return got;
}

/* Asks the peer's dialer to connect to our port p in `mode`; the control
 * connection (close it to end a `hold` or `send` connection), -1 if the
 * dialer could not connect. */
static int dial(int p, const char *mode)
{
	char msg[64], reply[8] = { 0 };
	int c = conn(7006);
	if (c < 0)
		return -1;
	int n = snprintf(msg, sizeof msg, "%d %s\n", p, mode);
	if (write(c, msg, n) != n || read_exact(c, reply, 3) != 3 || strcmp(reply, "ok\n") != 0) {
		close(c);
		return -1;
	}
	return c;
}

/* epoll_wait on ep for up to ms, printing the events sorted by tag. */
static int ep_show(int ep, int ms)
{
	struct epoll_event e[16];
	char buf[512] = "";
	int n = epoll_wait(ep, e, 16, ms), err = errno;
	if (n < 0) {
		V("epoll_wait", "-1 errno=%s", en(err));
		return n;
	}
	for (int i = 0; i < n; i++)
		for (int j = i + 1; j < n; j++)
			if (e[j].data.u64 < e[i].data.u64) {
				struct epoll_event t = e[i];
				e[i] = e[j];
				e[j] = t;
			}
	for (int i = 0; i < n; i++)
		sprintf(buf + strlen(buf), " [%llu:%s]", (unsigned long long)e[i].data.u64, evs(e[i].events));
	V("epoll_wait", "%d%s", n, buf);
	return n;
}

/* epoll_wait on ep (at most max events, up to ms), printing the events in
 * the order reported: the order in which their members became ready. */
static int ep_order(int ep, int max, int ms)
{
	struct epoll_event e[16];
	char buf[512] = "";
	int n = epoll_wait(ep, e, max, ms), err = errno;
	if (n < 0) {
		V("epoll_wait", "-1 errno=%s", en(err));
		return n;
	}
	for (int i = 0; i < n; i++)
		sprintf(buf + strlen(buf), " [%llu:%s]", (unsigned long long)e[i].data.u64, evs(e[i].events));
	V("epoll_order", "%d%s", n, buf);
	return n;
}

static int ep_add(int ep, int fd, uint32_t events, uint64_t tag)
{
	struct epoll_event e = { .events = events, .data.u64 = tag };
	return epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
}

static int ep_mod(int ep, int fd, uint32_t events, uint64_t tag)
{
	struct epoll_event e = { .events = events, .data.u64 = tag };
	return epoll_ctl(ep, EPOLL_CTL_MOD, fd, &e);
}

static void names(int fd)
{
	struct sockaddr_in a;
	socklen_t len = L;
	memset(&a, 0, sizeof a);
	if (getsockname(fd, SA(a), &len) == 0)
		V("sockname", "%s", show(&a));
	else
		V("sockname", "errno=%s", en(errno));
	len = L;
	memset(&a, 0, sizeof a);
	if (getpeername(fd, SA(a), &len) == 0)
		V("peername", "%s", show(&a));
	else
		V("peername", "errno=%s", en(errno));
}

/* The local address without its (ephemeral) port. */
static void sockname_ip(int fd)
{
	struct sockaddr_in a;
	socklen_t len = L;
	memset(&a, 0, sizeof a);
	if (getsockname(fd, SA(a), &len) == 0)
		V("sockname_ip", "%s port_nonzero=%d", show_ip(&a), a.sin_port != 0);
	else
		V("sockname_ip", "errno=%s", en(errno));
}

static void echo_check(int s, const char *msg)
{
	char buf[256] = { 0 };
	size_t n = strlen(msg);
	S(send(s, msg, n, MSG_NOSIGNAL));
	V("echoed", "%ld %.*s", read_exact(s, buf, n), (int)n, buf);
}

/* Bad arguments the compiler must not see through. */
static void *volatile nullp;
static volatile int minus1 = -1;

static int pipefd[2];
static char buf[1 << 16];

/* ---- the peer's wire service (7007): what we sent, seen on the wire ---- */

/* The local port of connection fd. */
static int local_port(int fd)
{
	struct sockaddr_in a = { 0 };
	socklen_t l = sizeof a;
	if (getsockname(fd, SA(a), &l) < 0)
		return -1;
	return ntohs(a.sin_port);
}

/* One line from fd, without its newline, waiting up to ms ("" if none). */
static const char *line_in(int fd, int ms)
{
	static char line[256];
	size_t n = 0;
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (n < sizeof line - 1 && ms_since(&t0) < ms) {
		if (poll1(fd, POLLIN, 100) <= 0)
			continue;
		ssize_t r = recv(fd, line + n, 1, MSG_DONTWAIT);
		if (r == 0 || (r < 0 && errno != EAGAIN))
			break;
		if (r == 1 && line[n] == '\n')
			break;
		if (r == 1)
			n++;
	}
	line[n] = 0;
	return line;
}

/* Sends a command to the wire service on w; its one-line answer (up to ms). */
static const char *ask(int w, int ms, const char *fmt, ...)
{
	char cmd[128];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(cmd, sizeof cmd - 1, fmt, ap);
	va_end(ap);
	cmd[n++] = '\n';
	if (write(w, cmd, n) != n)
		return "(not sent)";
	return line_in(w, ms);
}

/* setsockopt of an int, printed with the option's name. */
#define SETI(fd, level, name, v) ({ errno = 0; long r_ = setsockopt(fd, level, name, &(int){ v }, sizeof(int)); \
	int e_ = errno; line("setsockopt(" #fd ", " #level ", " #name ", " #v ")", r_, e_, 0); errno = e_; r_; })

/* ---- socket ------------------------------------------------------------ */

/* First in the table: a blocking connect is the process's first
 * accelerated call, so under the shim it is the one that starts the stack. */
static void connect_starts_the_stack(void)
{
	int s = tcp();
	struct sockaddr_in a = PEER(7001);
	S(connect(s, SA(a), L));
	echo_check(s, "first");
	close(s);
}

static void socket_errors(void)
{
	S(socket(12345, SOCK_STREAM, 0));
	S(socket(AF_INET, 77, 0));
	S(socket(AF_INET, SOCK_STREAM, IPPROTO_UDP));
	S(socket(AF_INET, SOCK_STREAM | 0x40000000, 0));
}

static void socket_flags(void)
{
	int s = F(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
	struct sockaddr_in a = ANY(P(0));
	S(fcntl(s, F_GETFL) & (O_NONBLOCK | O_ACCMODE));
	S(fcntl(s, F_GETFD));
	S(bind(s, SA(a), L));
	S(listen(s, 4));
	S(fcntl(s, F_GETFL) & (O_NONBLOCK | O_ACCMODE));
	S(accept(s, NULL, NULL));
	S(close(s));
}

static void socketpair_calls(void)
{
	int sv[2], sv2[2];
	S(socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
	S(write(sv[0], "ab", 2));
	S(read(sv[1], buf, 2));
	S(socketpair(AF_INET, SOCK_STREAM, 0, sv2));
	S(socketpair(AF_UNIX, SOCK_STREAM, 0, NULL));
	close(sv[0]);
	close(sv[1]);
}

/* ---- bind ---------------------------------------------------------------- */

static void bind_wildcard(void)
{
	int s = tcp();
	struct sockaddr_in a = ANY(P(0));
	S(bind(s, SA(a), L));
	names(s);
	S(listen(s, 4));
	names(s);
	close(s);
}

static void bind_stack_address(void)
{
	int s = tcp(), c, a;
	struct sockaddr_in me = ME(P(0));
	seti(s, SOL_SOCKET, SO_REUSEADDR, 1);
	S(bind(s, SA(me), L));
	S(listen(s, 4));
	names(s);
	S((c = dial(P(0), "send")) >= 0);
	V("listener_ready", "%s", evs(wait_ev(s, POLLIN, POLLIN)));
	a = F(accept(s, NULL, NULL));
	names(a);
	V("read", "%ld", read_exact(a, buf, 7));
	close(c);
	close(a);
	close(s);
}

static void bind_port_zero(void)
{
	int s = tcp();
	struct sockaddr_in a = ANY(0);
	S(bind(s, SA(a), L));
	sockname_ip(s);
	close(s);
}

static void bind_twice(void)
{
	int s = tcp();
	struct sockaddr_in a = ANY(P(0)), b = ANY(P(1));
	S(bind(s, SA(a), L));
	S(bind(s, SA(b), L));
	S(bind(s, SA(a), L));
	close(s);
}

static void bind_in_use(void)
{
	int a = tcp(), b = tcp(), c = tcp();
	struct sockaddr_in any = ANY(P(0)), me = ME(P(0));
	S(bind(a, SA(any), L));
	S(listen(a, 4));
	S(bind(b, SA(any), L));
	S(bind(c, SA(me), L));
	close(a);
	close(b);
	close(c);
}

static void bind_reuseaddr_listening(void)
{
	int a = tcp(), b = tcp();
	struct sockaddr_in any = ANY(P(0));
	seti(a, SOL_SOCKET, SO_REUSEADDR, 1);
	seti(b, SOL_SOCKET, SO_REUSEADDR, 1);
	S(bind(a, SA(any), L));
	S(listen(a, 4));
	S(bind(b, SA(any), L));
	close(a);
	close(b);
}

static void bind_reuseaddr_bound(void)
{
	int a = tcp(), b = tcp();
	struct sockaddr_in any = ANY(P(0));
	seti(a, SOL_SOCKET, SO_REUSEADDR, 1);
	seti(b, SOL_SOCKET, SO_REUSEADDR, 1);
	S(bind(a, SA(any), L));
	S(bind(b, SA(any), L));
	S(listen(a, 4));
	S(listen(b, 4));
	close(a);
	close(b);
}

static void bind_errors(void)
{
	int s = tcp();
	struct sockaddr_in a = ANY(P(0)), foreign = in4("198.18.0.77", P(0));
	struct sockaddr_in6 six = { .sin6_family = AF_INET6, .sin6_port = htons(P(0)) };
	S(bind(s, SA(a), 3));
	S(bind(s, (struct sockaddr *)&six, L));
	S(bind(s, SA(foreign), L));
	S(bind(-1, SA(a), L));
	S(bind(999, SA(a), L));
	S(bind(pipefd[0], SA(a), L));
	S(bind(s, NULL, L));
	close(s);
}

/* ---- listen --------------------------------------------------------------- */

static void listen_unbound(void)
{
	int s = tcp();
	S(listen(s, 8));
	sockname_ip(s);
	S(geti(s, SOL_SOCKET, SO_ACCEPTCONN));
	close(s);
}

static void listen_twice(void)
{
	int s = tcp();
	struct sockaddr_in a = ANY(P(0));
	S(bind(s, SA(a), L));
	S(geti(s, SOL_SOCKET, SO_ACCEPTCONN));
	S(listen(s, 8));
	S(listen(s, 64));
	S(geti(s, SOL_SOCKET, SO_ACCEPTCONN));
	close(s);
}

static void listen_errors(void)
{
	int u = udp(), c;
	S(listen(u, 4));
	S(listen(-1, 4));
	S(listen(pipefd[0], 4));
	S((c = conn(7001)) >= 0);
	S(listen(c, 4));
	close(u);
	close(c);
}

/* ---- accept --------------------------------------------------------------- */

static void accept_empty_nonblocking(void)
{
	int l = listener(P(0));
	nonblock(l);
	S(accept(l, NULL, NULL));
	S(accept4(l, NULL, NULL, SOCK_CLOEXEC));
	close(l);
}

static void accept_not_listening(void)
{
	int s = tcp(), u = tcp();
	struct sockaddr_in a = ANY(P(0));
	S(bind(s, SA(a), L));
	S(accept(s, NULL, NULL));
	S(accept(u, NULL, NULL));
	close(s);
	close(u);
}

static void accept_dialed(void)
{
	int l = listener(P(0)), c, a;
	struct sockaddr_in from;
	socklen_t len = L;
	S((c = dial(P(0), "send")) >= 0);
	V("listener", "%s", evs(wait_ev(l, POLLIN | POLLOUT, POLLIN)));
	a = F(accept(l, SA(from), &len));
	V("addrlen", "%d", len);
	V("from", "%s", show_ip(&from));
	names(a);
	memset(buf, 0, 8);
	V("read", "%ld %.6s", read_exact(a, buf, 7), buf);
	close(c);
	V("after_close", "%s", evs(wait_ev(a, POLLIN | POLLRDHUP, POLLRDHUP)));
	S(read(a, buf, 10));
	close(a);
	close(l);
}

static void accept4_flags(void)
{
	int l = listener(P(0)), c, a;
	S((c = dial(P(0), "hold")) >= 0);
	wait_ev(l, POLLIN, POLLIN);
	a = F(accept4(l, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC));
	S(fcntl(a, F_GETFL) & (O_NONBLOCK | O_ACCMODE));
	S(fcntl(a, F_GETFD));
	S(read(a, buf, 10));
	close(c);
	close(a);
	close(l);
}

static void accept_does_not_inherit_nonblock(void)
{
	int l = listener(P(0)), c, a;
	nonblock(l);
	S((c = dial(P(0), "hold")) >= 0);
	wait_ev(l, POLLIN, POLLIN);
	a = F(accept(l, NULL, NULL));
	S(fcntl(a, F_GETFL) & (O_NONBLOCK | O_ACCMODE));
	S(fcntl(a, F_GETFD));
	close(c);
	close(a);
	close(l);
}

static void accept_small_addrlen(void)
{
	int l = listener(P(0)), c, a;
	struct sockaddr_in from = { 0 };
	socklen_t len = 4;
	S((c = dial(P(0), "hold")) >= 0);
	wait_ev(l, POLLIN, POLLIN);
	a = F(accept(l, SA(from), &len));
	V("addrlen", "%d family=%d", len, from.sin_family);
	close(c);
	close(a);
	close(l);
}

static void accept_errors(void)
{
	int l = listener(P(0)), u = udp();
	S(accept4(l, NULL, NULL, 0x1234));
	S(accept(-1, NULL, NULL));
	S(accept(pipefd[0], NULL, NULL));
	S(accept(u, NULL, NULL));
	close(l);
	close(u);
}

static void accept_timeout(void)
{
	int l = listener(P(0));
	struct timeval tv = { 0, 100000 };
	struct timespec t0;
	S(setsockopt(l, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv));
	clock_gettime(CLOCK_MONOTONIC, &t0);
	S(accept(l, NULL, NULL));
	V("waited_at_least_90ms", "%d", ms_since(&t0) >= 90);
	close(l);
}

static void accept_after_peer_closed(void)
{
	int l = listener(P(0)), c, a;
	S((c = dial(P(0), "close")) >= 0);
	wait_ev(l, POLLIN, POLLIN);
	a = F(accept(l, NULL, NULL));
	V("accepted", "%s", evs(wait_ev(a, POLLIN | POLLRDHUP, POLLRDHUP)));
	S(read(a, buf, 10));
	close(c);
	close(a);
	close(l);
}

/* ---- connect ------------------------------------------------------------- */

static void connect_blocking(void)
{
	int s = tcp();
	struct sockaddr_in a = PEER(7001);
	timeouts(s);
	S(connect(s, SA(a), L));
	sockname_ip(s);
	names(s);
	echo_check(s, "hello");
	close(s);
}

static void connect_refused(void)
{
	int s = tcp();
	struct sockaddr_in closed = PEER(7003), echo = PEER(7001);
	timeouts(s);
	S(connect(s, SA(closed), L));
	S(geti(s, SOL_SOCKET, SO_ERROR));
	S(send(s, "x", 1, MSG_NOSIGNAL));
	S(connect(s, SA(echo), L));
	echo_check(s, "again");
	close(s);
}

static void connect_refused_nonblocking(void)
{
	int s = tcp();
	struct sockaddr_in closed = PEER(7003);
	nonblock(s);
	S(connect(s, SA(closed), L));
	V("revents", "%s", evs(wait_ev(s, POLLOUT, POLLOUT | POLLERR | POLLHUP)));
	S(geti(s, SOL_SOCKET, SO_ERROR));
	S(geti(s, SOL_SOCKET, SO_ERROR));
	S(recv(s, buf, 1, 0));
	close(s);
}

static void connect_nonblocking(void)
{
	int s = tcp();
	struct sockaddr_in echo = PEER(7001);
	nonblock(s);
	S(connect(s, SA(echo), L));
	V("revents", "%s", evs(wait_ev(s, POLLOUT, POLLOUT)));
	S(geti(s, SOL_SOCKET, SO_ERROR));
	S(connect(s, SA(echo), L));
	echo_check(s, "nb");
	close(s);
}

static void connect_twice(void)
{
	int s = tcp();
	struct sockaddr_in echo = PEER(7001), other = PEER(7004);
	timeouts(s);
	S(connect(s, SA(echo), L));
	S(connect(s, SA(echo), L));
	S(connect(s, SA(other), L));
	close(s);
}

static void connect_in_progress(void)
{
	int s = tcp();
	struct sockaddr_in nobody = in4("198.18.0.3", 80);
	nonblock(s);
	S(connect(s, SA(nobody), L));
	S(connect(s, SA(nobody), L));
	S(connect(s, SA(nobody), L));
	S(poll1(s, POLLOUT, 0));
	S(geti(s, SOL_SOCKET, SO_ERROR));
	S(getpeername(s, SA(nobody), &(socklen_t){ L }));
	close(s);
}

static void connect_sndtimeo(void)
{
	int s = tcp();
	struct sockaddr_in nobody = in4("198.18.0.3", 80);
	struct timeval tv = { 0, 200000 };
	S(setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv));
	S(connect(s, SA(nobody), L));
	S(connect(s, SA(nobody), L));
	close(s);
}

static void connect_errors(void)
{
	int s = tcp();
	struct sockaddr_in a = PEER(7001);
	struct sockaddr_in6 six = { .sin6_family = AF_INET6, .sin6_port = htons(7001) };
	S(connect(s, SA(a), 3));
	S(connect(s, (struct sockaddr *)&six, L));
	S(connect(s, NULL, L));
	S(connect(-1, SA(a), L));
	S(connect(pipefd[0], SA(a), L));
	S(connect(s, SA(a), L));
	close(s);
}

static void connect_listening(void)
{
	int l = listener(P(0));
	struct sockaddr_in a = PEER(7001);
	S(connect(l, SA(a), L));
	close(l);
}

static void connect_unspec(void)
{
	int s = conn(7001);
	struct sockaddr unspec = { .sa_family = AF_UNSPEC };
	struct sockaddr_in a = PEER(7001);
	S(s >= 0);
	S(connect(s, &unspec, sizeof unspec));
	S(getpeername(s, SA(a), &(socklen_t){ L }));
	a = PEER(7001);
	S(connect(s, SA(a), L));
	echo_check(s, "back");
	close(s);
}

/* ---- data ------------------------------------------------------------------ */

static void write_read(void)
{
	int s = conn(7001);
	S(s >= 0);
	S(write(s, "hello", 5));
	S(wait_inq(s, 5));
	memset(buf, 0, 8);
	S(read(s, buf, sizeof buf));
	V("data", "%s", buf);
	close(s);
}

static void readv_writev(void)
{
	int s = conn(7001);
	char a[2], b[10] = { 0 };
	struct iovec out[3] = { { "ab", 2 }, { "cde", 3 }, { "f", 1 } };
	struct iovec in[2] = { { a, 2 }, { b, 10 } };
	S(writev(s, out, 3));
	S(wait_inq(s, 6));
	S(readv(s, in, 2));
	V("data", "%.2s|%s", a, b);
	S(writev(s, out, 0));
	S(writev(s, out, minus1));
	close(s);
}

static void send_recv_flags(void)
{
	int s = conn(7001);
	memset(buf, 0, 16);
	S(send(s, "peekaboo", 8, 0));
	S(wait_inq(s, 8));
	S(recv(s, buf, 4, MSG_PEEK));
	V("peeked", "%.4s", buf);
	S(recv(s, buf, 8, 0));
	V("data", "%.8s", buf);
	S(recv(s, buf, 8, MSG_DONTWAIT));
	S(send(s, "wait", 4, 0));
	S(recv(s, buf, 4, MSG_WAITALL));
	V("data", "%.4s", buf);
	close(s);
}

static void recv_nonblocking_empty(void)
{
	int s = conn(7001);
	struct iovec iov = { buf, 10 };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
	nonblock(s);
	S(recv(s, buf, 10, 0));
	S(read(s, buf, 10));
	S(readv(s, &iov, 1));
	S(recvmsg(s, &m, 0));
	S(recvfrom(s, buf, 10, 0, NULL, NULL));
	close(s);
}

static void recvfrom_tcp_addr(void)
{
	int s = conn(7001);
	struct sockaddr_in from;
	socklen_t len = L;
	memset(&from, 0xab, sizeof from);
	S(send(s, "abc", 3, 0));
	S(wait_inq(s, 3));
	S(recvfrom(s, buf, 10, 0, SA(from), &len));
	V("addrlen", "%d", len);
	close(s);
}

static void sendto_tcp(void)
{
	int s = conn(7001), u = tcp();
	struct sockaddr_in other = PEER(9999), b = ANY(P(0));
	S(sendto(s, "abc", 3, 0, SA(other), L));
	V("read", "%ld", read_exact(s, buf, 3));
	S(bind(u, SA(b), L));
	S(sendto(u, "abc", 3, MSG_NOSIGNAL, SA(other), L));
	close(s);
	close(u);
}

static void send_unconnected(void)
{
	int s = tcp();
	struct sockaddr_in a = ANY(P(0));
	S(bind(s, SA(a), L));
	S(send(s, "x", 1, MSG_NOSIGNAL));
	S(write(s, "x", 1));
	S(recv(s, buf, 1, 0));
	S(read(s, buf, 1));
	S(getpeername(s, SA(a), &(socklen_t){ L }));
	close(s);
}

static void sendmsg_recvmsg(void)
{
	int s = conn(7001);
	char in[32] = { 0 };
	struct iovec out[2] = { { "send", 4 }, { "msg", 3 } };
	struct iovec iov = { in, sizeof in };
	struct sockaddr_in name;
	struct msghdr mo = { .msg_iov = out, .msg_iovlen = 2 };
	struct msghdr mi = { .msg_name = &name, .msg_namelen = L, .msg_iov = &iov, .msg_iovlen = 1 };
	S(sendmsg(s, &mo, 0));
	S(wait_inq(s, 7));
	S(recvmsg(s, &mi, 0));
	V("data", "%s flags=%d namelen=%d", in, mi.msg_flags, mi.msg_namelen);
	close(s);
}

static void sendmmsg_recvmmsg_tcp(void)
{
	int s = conn(7001);
	char in[2][16];
	struct iovec o[2] = { { "aa", 2 }, { "bb", 2 } }, i[2] = { { in[0], 16 }, { in[1], 16 } };
	struct mmsghdr mo[2] = { { .msg_hdr = { .msg_iov = &o[0], .msg_iovlen = 1 } },
				 { .msg_hdr = { .msg_iov = &o[1], .msg_iovlen = 1 } } };
	struct mmsghdr mi[2] = { { .msg_hdr = { .msg_iov = &i[0], .msg_iovlen = 1 } },
				 { .msg_hdr = { .msg_iov = &i[1], .msg_iovlen = 1 } } };
	S(sendmmsg(s, mo, 2, 0));
	V("sent", "%u %u", mo[0].msg_len, mo[1].msg_len);
	S(wait_inq(s, 4));
	S(recvmmsg(s, mi, 2, MSG_DONTWAIT, NULL));
	V("got", "%u %.4s", mi[0].msg_len, in[0]);
	close(s);
}

static void msg_trunc_tcp(void)
{
	int s = conn(7001);
	memset(buf, 0, 16);
	S(send(s, "abcdef", 6, 0));
	S(wait_inq(s, 6));
	S(recv(s, NULL, 3, MSG_TRUNC));
	S(recv(s, buf, 10, 0));
	V("rest", "%s", buf);
	close(s);
}

static void shutdown_wr(void)
{
	int s = conn(7001);
	S(write(s, "bye", 3));
	S(shutdown(s, SHUT_WR));
	V("read", "%ld", read_exact(s, buf, 3));
	V("eof", "%s", evs(wait_ev(s, POLLIN | POLLRDHUP, POLLRDHUP)));
	S(read(s, buf, 10));
	S(write(s, "x", 1));
	S(send(s, "x", 1, MSG_NOSIGNAL));
	S(shutdown(s, SHUT_WR));
	close(s);
}

static void shutdown_rd(void)
{
	int s = conn(7001);
	S(shutdown(s, SHUT_RD));
	S(recv(s, buf, 10, 0));
	S(write(s, "x", 1));
	close(s);
}

static void shutdown_errors(void)
{
	int s = tcp(), c = conn(7001);
	S(shutdown(s, SHUT_RDWR));
	S(shutdown(c, 7));
	S(shutdown(-1, SHUT_WR));
	S(shutdown(pipefd[0], SHUT_WR));
	close(s);
	close(c);
}

static void shutdown_listener(void)
{
	int l = listener(P(0));
	S(shutdown(l, SHUT_RDWR));
	S(geti(l, SOL_SOCKET, SO_ACCEPTCONN));
	S(accept4(l, NULL, NULL, SOCK_NONBLOCK));
	close(l);
}

static void peer_reset(void)
{
	int s = conn(7005);
	S(s >= 0);
	V("revents", "%s", evs(wait_ev(s, POLLIN, POLLERR | POLLHUP)));
	S(recv(s, buf, 10, 0));
	S(recv(s, buf, 10, 0));
	S(send(s, "x", 1, MSG_NOSIGNAL));
	S(geti(s, SOL_SOCKET, SO_ERROR));
	close(s);
}

static void peer_closed_epipe(void)
{
	int s = conn(7004);
	memset(buf, 0, 8);
	V("read", "%ld %s", read_exact(s, buf, 6), buf);
	V("eof", "%s", evs(wait_ev(s, POLLIN | POLLRDHUP, POLLRDHUP)));
	S(read(s, buf, 10));
	S(write(s, "x", 1));
	V("after_reset", "%s", evs(wait_ev(s, POLLIN | POLLOUT, POLLERR | POLLHUP)));
	S(write(s, "x", 1));
	S(write(s, "x", 1));
	close(s);
}

static void write_until_eagain(void)
{
	int s = conn(7002), eagain = 0, i;
	nonblock(s);
	memset(buf, 'x', sizeof buf);
	for (i = 0; i < 10000; i++) {
		ssize_t r = send(s, buf, sizeof buf, MSG_NOSIGNAL);
		if (r < 0) {
			eagain = errno == EAGAIN;
			break;
		}
	}
	V("stopped_with_eagain", "%d", eagain);
	S(send(s, buf, sizeof buf, MSG_NOSIGNAL));
	close(s);
}

static void fionread_siocoutq(void)
{
	int s = conn(7001), l = listener(P(0)), n = -1;
	S(ioctl(s, FIONREAD, &n));
	V("fionread", "%d", n);
	S(write(s, "12345", 5));
	S(wait_inq(s, 5));
	S(ioctl(s, FIONREAD, &n));
	V("fionread", "%d", n);
	S(ioctl(s, SIOCOUTQ, &n));
	V("siocoutq", "%d", n);
	S(ioctl(l, FIONREAD, &n));
	S(ioctl(s, 0x89ff1234, &n));
	close(s);
	close(l);
}

static void fionbio(void)
{
	int s = conn(7001), on = 1, off = 0;
	S(ioctl(s, FIONBIO, &on));
	S(recv(s, buf, 1, 0));
	S(fcntl(s, F_GETFL) & O_NONBLOCK);
	S(ioctl(s, FIONBIO, &off));
	S(fcntl(s, F_GETFL) & O_NONBLOCK);
	close(s);
}

static void fcntl_ops(void)
{
	int s = conn(7001), d, e;
	S(fcntl(s, F_SETFL, O_NONBLOCK));
	S(fcntl(s, F_GETFL) & (O_NONBLOCK | O_ACCMODE));
	S(recv(s, buf, 1, 0));
	S(fcntl(s, F_SETFD, FD_CLOEXEC));
	S(fcntl(s, F_GETFD));
	d = fcntl(s, F_DUPFD, 100);
	V("dupfd_at_least_100", "%d", d >= 100);
	S(fcntl(d, F_GETFD));
	S(fcntl(d, F_GETFL) & O_NONBLOCK);
	e = fcntl(s, F_DUPFD_CLOEXEC, 0);
	S(fcntl(e, F_GETFD));
	echo_check(d, "dup");
	S(fcntl(s, 9999));
	S(fcntl(-1, F_GETFL));
	close(s);
	close(d);
	close(e);
}

/* ---- options and names -------------------------------------------------- */

static void sockopt_ints(void)
{
	int s = tcp();
	struct sockaddr_in a = ANY(P(0));
	S(geti(s, SOL_SOCKET, SO_TYPE));
	S(geti(s, SOL_SOCKET, SO_DOMAIN));
	S(geti(s, SOL_SOCKET, SO_PROTOCOL));
	S(geti(s, SOL_SOCKET, SO_REUSEADDR));
	seti(s, SOL_SOCKET, SO_REUSEADDR, 1);
	S(geti(s, SOL_SOCKET, SO_REUSEADDR));
	S(bind(s, SA(a), L));
	S(listen(s, 4));
	S(geti(s, SOL_SOCKET, SO_ACCEPTCONN));
	S(geti(s, SOL_SOCKET, SO_TYPE));
	S(geti(s, SOL_SOCKET, SO_ERROR));
	close(s);
	s = conn(7001);
	S(geti(s, IPPROTO_TCP, TCP_NODELAY));
	S(setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &(int){ 1 }, sizeof(int)));
	S(geti(s, IPPROTO_TCP, TCP_NODELAY));
	S(geti(s, SOL_SOCKET, SO_KEEPALIVE));
	S(setsockopt(s, SOL_SOCKET, SO_KEEPALIVE, &(int){ 1 }, sizeof(int)));
	S(geti(s, SOL_SOCKET, SO_KEEPALIVE));
	S(geti(s, SOL_SOCKET, SO_ACCEPTCONN));
	S(geti(s, SOL_SOCKET, SO_ERROR));
	close(s);
}

static void sockopt_buffers(void)
{
	int s = conn(7001);
	S(setsockopt(s, SOL_SOCKET, SO_SNDBUF, &(int){ 65536 }, sizeof(int)));
	S(geti(s, SOL_SOCKET, SO_SNDBUF));
	S(setsockopt(s, SOL_SOCKET, SO_RCVBUF, &(int){ 65536 }, sizeof(int)));
	S(geti(s, SOL_SOCKET, SO_RCVBUF));
	echo_check(s, "buffers");
	close(s);
}

static void sockopt_timeouts_linger(void)
{
	int s = conn(7001);
	struct timeval tv = { 0, 250000 }, got = { 0 };
	struct linger lg = { 1, 5 }, lgot = { 0 };
	socklen_t len = sizeof got;
	S(setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv));
	S(getsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &got, &len));
	V("rcvtimeo", "%ld.%06ld len=%d", (long)got.tv_sec, (long)got.tv_usec, len);
	S(recv(s, buf, 1, 0));
	S(setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof lg));
	len = sizeof lgot;
	S(getsockopt(s, SOL_SOCKET, SO_LINGER, &lgot, &len));
	V("linger", "%d %d", lgot.l_onoff, lgot.l_linger);
	close(s);
}

/* TCP_INFO: a connection's state and the fields both stacks must agree on
 * (the timing ones only as "measured"), a truncated copy, a listener with
 * one connection waiting. */
static void sockopt_tcp_info(void)
{
	struct tcp_info ti;
	socklen_t len = sizeof ti;
	int s = conn(7001), l, c;
	struct sockaddr_in me = ME(P(0));
	echo_check(s, "tcp_info");
	memset(&ti, 0xff, sizeof ti);
	S(getsockopt(s, IPPROTO_TCP, TCP_INFO, &ti, &len));
	V("conn", "len=%d state=%u retransmits=%u unacked=%u rtt_measured=%d rto_set=%d cwnd_set=%d",
	  len == sizeof ti, ti.tcpi_state, ti.tcpi_retransmits, ti.tcpi_unacked,
	  ti.tcpi_rtt > 0, ti.tcpi_rto >= 200000, ti.tcpi_snd_cwnd > 0);
	len = 1;
	ti.tcpi_state = 0;
	S(getsockopt(s, IPPROTO_TCP, TCP_INFO, &ti, &len));
	V("truncated", "len=%d state=%u", len, ti.tcpi_state);
	len = (socklen_t)-1;
	S(getsockopt(s, IPPROTO_TCP, TCP_INFO, &ti, &len));
	close(s);
	l = tcp();
	seti(l, SOL_SOCKET, SO_REUSEADDR, 1);
	S(bind(l, SA(me), L));
	S(listen(l, 4));
	S((c = dial(P(0), "send")) >= 0);
	V("listener_ready", "%s", evs(wait_ev(l, POLLIN, POLLIN)));
	len = sizeof ti;
	S(getsockopt(l, IPPROTO_TCP, TCP_INFO, &ti, &len));
	V("listener", "state=%u queued=%u backlog=%u", ti.tcpi_state, ti.tcpi_unacked, ti.tcpi_sacked);
	close(c);
	close(l);
}

static void sockopt_errors(void)
{
	int s = conn(7001), v = 0;
	socklen_t len = sizeof v;
	S(getsockopt(s, 9999, 1, &v, &len));
	S(getsockopt(s, SOL_SOCKET, 9999, &v, &len));
	S(setsockopt(s, SOL_SOCKET, SO_KEEPALIVE, &v, 1));
	S(getsockopt(s, SOL_SOCKET, SO_TYPE, &v, NULL));
	S(getsockopt(s, SOL_SOCKET, SO_TYPE, NULL, &len));
	S(setsockopt(s, SOL_SOCKET, SO_KEEPALIVE, NULL, sizeof v));
	S(getsockopt(-1, SOL_SOCKET, SO_TYPE, &v, &len));
	S(getsockopt(pipefd[0], SOL_SOCKET, SO_TYPE, &v, &len));
	S(setsockopt(pipefd[0], SOL_SOCKET, SO_KEEPALIVE, &v, sizeof v));
	close(s);
}

/* ---- options with an effect on the wire (issue 10) ---------------------- */

/* Keepalive's ranges and defaults; probes a second apart after a second of
 * silence, answered: three in 3.5 s. */
static void sockopt_keepalive(void)
{
	int s = tcp(), w = conn(7007), c = conn(7009);
	S(geti(s, IPPROTO_TCP, TCP_KEEPIDLE));
	S(geti(s, IPPROTO_TCP, TCP_KEEPINTVL));
	S(geti(s, IPPROTO_TCP, TCP_KEEPCNT));
	SETI(s, IPPROTO_TCP, TCP_KEEPIDLE, 0);
	SETI(s, IPPROTO_TCP, TCP_KEEPIDLE, 32768);
	SETI(s, IPPROTO_TCP, TCP_KEEPIDLE, 32767);
	SETI(s, IPPROTO_TCP, TCP_KEEPINTVL, 0);
	SETI(s, IPPROTO_TCP, TCP_KEEPINTVL, 32768);
	SETI(s, IPPROTO_TCP, TCP_KEEPCNT, 0);
	SETI(s, IPPROTO_TCP, TCP_KEEPCNT, 128);
	SETI(s, IPPROTO_TCP, TCP_KEEPCNT, 127);
	S(geti(s, IPPROTO_TCP, TCP_KEEPIDLE));
	S(geti(s, IPPROTO_TCP, TCP_KEEPCNT));
	close(s);
	SETI(c, IPPROTO_TCP, TCP_KEEPIDLE, 1);
	SETI(c, IPPROTO_TCP, TCP_KEEPINTVL, 1);
	SETI(c, IPPROTO_TCP, TCP_KEEPCNT, 5);
	SETI(c, SOL_SOCKET, SO_KEEPALIVE, 1);
	S(geti(c, IPPROTO_TCP, TCP_KEEPIDLE));
	S(geti(c, IPPROTO_TCP, TCP_KEEPINTVL));
	V("wire", "%s", ask(w, 6000, "watch %d 3500 probes,data,rst", local_port(c)));
	S(geti(c, SOL_SOCKET, SO_ERROR));
	close(c);
	close(w);
}

/* With the peer's answers dropped: two unanswered probes, then a RST and
 * ETIMEDOUT, 3 s after the connection went quiet. */
static void sockopt_keepalive_timeout(void)
{
	int w = conn(7007), c = conn(7009), port = local_port(c);
	struct timespec t0;
	SETI(c, IPPROTO_TCP, TCP_KEEPIDLE, 1);
	SETI(c, IPPROTO_TCP, TCP_KEEPINTVL, 1);
	SETI(c, IPPROTO_TCP, TCP_KEEPCNT, 2);
	SETI(c, SOL_SOCKET, SO_KEEPALIVE, 1);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	V("mute", "%s", ask(w, 2000, "mute 4000"));
	V("dead", "%s", evs(wait_ev(c, POLLIN, POLLERR)));
	long ms = ms_since(&t0);
	V("after_2s_before_4.5s", "%d", ms >= 2000 && ms < 4500);
	S(geti(c, SOL_SOCKET, SO_ERROR));
	S(recv(c, buf, 1, 0));
	V("unmuted", "%s", line_in(w, 6000));
	V("wire", "%s", ask(w, 2000, "watch %d 0 probes,rst", port));
	close(c);
	close(w);
}

/* TCP_USER_TIMEOUT bounds keepalive too: probes go on past TCP_KEEPCNT
 * (10 would take 11 s) until the peer has been silent 2.5 s. */
static void sockopt_keepalive_user_timeout(void)
{
	int w = conn(7007), c = conn(7009), port = local_port(c);
	struct timespec t0;
	SETI(c, IPPROTO_TCP, TCP_KEEPIDLE, 1);
	SETI(c, IPPROTO_TCP, TCP_KEEPINTVL, 1);
	SETI(c, IPPROTO_TCP, TCP_KEEPCNT, 10);
	SETI(c, IPPROTO_TCP, TCP_USER_TIMEOUT, 2500);
	SETI(c, SOL_SOCKET, SO_KEEPALIVE, 1);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	V("mute", "%s", ask(w, 2000, "mute 4000"));
	V("dead", "%s", evs(wait_ev(c, POLLIN, POLLERR)));
	long ms = ms_since(&t0);
	V("after_2.5s_before_4.5s", "%d", ms >= 2500 && ms < 4500);
	S(geti(c, SOL_SOCKET, SO_ERROR));
	V("unmuted", "%s", line_in(w, 6000));
	V("wire", "%s", ask(w, 2000, "watch %d 0 probes,rst", port));
	close(c);
	close(w);
}

/* Data unacknowledged for TCP_USER_TIMEOUT (1.5 s) fails the connection
 * with ETIMEDOUT, without a RST. */
static void sockopt_user_timeout(void)
{
	int w = conn(7007), c = conn(7009), port = local_port(c);
	struct timespec t0;
	SETI(c, IPPROTO_TCP, TCP_USER_TIMEOUT, -1);
	S(geti(c, IPPROTO_TCP, TCP_USER_TIMEOUT));
	SETI(c, IPPROTO_TCP, TCP_USER_TIMEOUT, 1500);
	S(geti(c, IPPROTO_TCP, TCP_USER_TIMEOUT));
	V("mute", "%s", ask(w, 2000, "mute 4000"));
	usleep(100000);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	S(write(c, buf, 100));
	V("dead", "%s", evs(wait_ev(c, POLLIN, POLLERR)));
	long ms = ms_since(&t0);
	V("after_1s_before_3s", "%d", ms >= 1000 && ms < 3000);
	S(geti(c, SOL_SOCKET, SO_ERROR));
	S(write(c, buf, 1));
	V("unmuted", "%s", line_in(w, 6000));
	V("wire", "%s", ask(w, 2000, "watch %d 0 data,rst", port));
	close(c);
	close(w);
}

/* Corked, ten small writes leave as one segment when uncorked; a corked
 * byte with nothing in flight leaves an RTO (200 ms at least) later;
 * TCP_NODELAY pushes a corked byte at once. */
static void sockopt_cork(void)
{
	int s = tcp(), w = conn(7007), c = conn(7009), port = local_port(c);
	S(geti(s, IPPROTO_TCP, TCP_CORK));
	SETI(s, IPPROTO_TCP, TCP_CORK, 1);
	S(geti(s, IPPROTO_TCP, TCP_CORK));
	close(s);
	SETI(c, IPPROTO_TCP, TCP_NODELAY, 1);
	SETI(c, IPPROTO_TCP, TCP_CORK, 1);
	long sent = 0;
	for (int i = 0; i < 10; i++) {
		sent += write(c, buf, 100);
		usleep(5000);
	}
	V("written", "%ld", sent);
	SETI(c, IPPROTO_TCP, TCP_CORK, 0);
	V("wire", "%s", ask(w, 2000, "watch %d 300 data,bytes", port));
	S(write(c, buf, 1));
	SETI(c, IPPROTO_TCP, TCP_CORK, 1);
	S(write(c, buf, 1));
	V("wire", "%s", ask(w, 2000, "watch %d 800 data,gaps", port));
	S(write(c, buf, 1));
	SETI(c, IPPROTO_TCP, TCP_NODELAY, 1);
	V("wire", "%s", ask(w, 2000, "watch %d 100 data", port));
	S(geti(c, IPPROTO_TCP, TCP_CORK));
	close(c);
	close(w);
}

/* SO_LINGER {1, N}: close returns once the data is acknowledged; with the
 * acknowledgements dropped it waits N s (blocking or not), returns 0 and
 * the connection ends on its own, without a RST. */
static void sockopt_linger_timed(void)
{
	int w = conn(7007), c1 = conn(7009), c2 = conn(7009), c3 = conn(7009);
	int p1 = local_port(c1), p2 = local_port(c2);
	struct linger lg = { 1, 1 }, five = { 1, 5 }, got = { 0 };
	socklen_t len = sizeof got;
	struct timespec t0;
	S(write(c3, buf, 100));
	S(setsockopt(c3, SOL_SOCKET, SO_LINGER, &five, sizeof five));
	clock_gettime(CLOCK_MONOTONIC, &t0);
	S(close(c3));
	V("acknowledged_under_500ms", "%d", ms_since(&t0) < 500);
	V("mute", "%s", ask(w, 2000, "mute 3500"));
	usleep(100000);
	S(write(c1, buf, 100));
	S(setsockopt(c1, SOL_SOCKET, SO_LINGER, &lg, sizeof lg));
	S(getsockopt(c1, SOL_SOCKET, SO_LINGER, &got, &len));
	V("linger", "%d %d", got.l_onoff, got.l_linger);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	S(close(c1));
	long ms = ms_since(&t0);
	V("waited_about_1s", "%d", ms >= 800 && ms < 2000);
	nonblock(c2);
	S(write(c2, buf, 100));
	S(setsockopt(c2, SOL_SOCKET, SO_LINGER, &lg, sizeof lg));
	clock_gettime(CLOCK_MONOTONIC, &t0);
	S(close(c2));
	ms = ms_since(&t0);
	V("nonblocking_waited_about_1s", "%d", ms >= 800 && ms < 2000);
	V("unmuted", "%s", line_in(w, 6000));
	V("wire", "%s", ask(w, 2000, "watch %d 0 data,fin,rst", p1));
	V("wire", "%s", ask(w, 2000, "watch %d 0 data,fin,rst", p2));
	close(w);
}

/* TCP_DEFER_ACCEPT reads back rounded to Linux's SYN-ACK schedule; a
 * connection that sends nothing is accepted after the deferral, one that
 * sends at once is accepted at once. */
static void sockopt_defer_accept(void)
{
	int s = tcp(), l = tcp(), c1, c2, a;
	int vals[] = { 0, 1, 2, 3, 4, 7, 8, 30, -1, 100000 };
	struct sockaddr_in me = ME(P(0));
	struct timespec t0;
	for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
		SETI(s, IPPROTO_TCP, TCP_DEFER_ACCEPT, vals[i]);
		S(geti(s, IPPROTO_TCP, TCP_DEFER_ACCEPT));
	}
	close(s);
	seti(l, SOL_SOCKET, SO_REUSEADDR, 1);
	S(bind(l, SA(me), L));
	SETI(l, IPPROTO_TCP, TCP_DEFER_ACCEPT, 1);
	S(listen(l, 4));
	S(geti(l, IPPROTO_TCP, TCP_DEFER_ACCEPT));
	S((c1 = dial(P(0), "hold")) >= 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	V("at_once", "%s", evs(poll1(l, POLLIN, 300)));
	V("later", "%s", evs(wait_ev(l, POLLIN, POLLIN)));
	long ms = ms_since(&t0);
	V("after_600ms_before_2.5s", "%d", ms >= 600 && ms < 2500);
	a = F(accept(l, NULL, NULL));
	S(recv(a, buf, 1, MSG_DONTWAIT));
	close(a);
	S((c2 = dial(P(0), "send")) >= 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	V("with_data", "%s", evs(wait_ev(l, POLLIN, POLLIN)));
	V("under_500ms", "%d", ms_since(&t0) < 500);
	a = F(accept(l, NULL, NULL));
	S(wait_inq(a, 7));
	close(a);
	close(c1);
	close(c2);
	close(l);
}

/* TCP_QUICKACK 0: the peer's byte is acknowledged late (and that delayed
 * ACK leaves pingpong mode); 1: at once, and the next one too. A prompt
 * reply enters pingpong mode: it reads 0. */
static void sockopt_quickack(void)
{
	int s = tcp(), w = conn(7007), c = conn(7009), e = conn(7001), port = local_port(c);
	S(geti(s, IPPROTO_TCP, TCP_QUICKACK));
	SETI(s, IPPROTO_TCP, TCP_QUICKACK, 0);
	S(geti(s, IPPROTO_TCP, TCP_QUICKACK));
	close(s);
	S(geti(c, IPPROTO_TCP, TCP_QUICKACK));
	SETI(c, IPPROTO_TCP, TCP_QUICKACK, 0);
	S(geti(c, IPPROTO_TCP, TCP_QUICKACK));
	V("wire", "%s", ask(w, 3000, "poke %d", port));
	S(geti(c, IPPROTO_TCP, TCP_QUICKACK));
	SETI(c, IPPROTO_TCP, TCP_QUICKACK, 1);
	V("wire", "%s", ask(w, 3000, "poke %d", port));
	V("wire", "%s", ask(w, 3000, "poke %d", port));
	seti(e, IPPROTO_TCP, TCP_NODELAY, 1);
	S(write(e, "a", 1));
	S(read_exact(e, buf, 1));
	S(write(e, "b", 1));
	S(geti(e, IPPROTO_TCP, TCP_QUICKACK));
	close(e);
	close(c);
	close(w);
}

/* IP_TOS: ECN bits are the kernel's on a stream socket, not a datagram
 * one; every packet of a connection carries it, from the SYN on, and a new
 * value at once; a UDP socket's datagrams too. */
static void sockopt_tos(void)
{
	int s = tcp(), u = udp(), w = conn(7007), c = tcp();
	unsigned char byte = 0x20;
	struct sockaddr_in sink = PEER(7009), echo = PEER(7007);
	char reply[32] = { 0 };
	SETI(s, IPPROTO_IP, IP_TOS, 0x10);
	S(geti(s, IPPROTO_IP, IP_TOS));
	SETI(s, IPPROTO_IP, IP_TOS, 0xff);
	S(geti(s, IPPROTO_IP, IP_TOS));
	S(setsockopt(s, IPPROTO_IP, IP_TOS, &byte, 1));
	S(geti(s, IPPROTO_IP, IP_TOS));
	close(s);
	timeouts(c);
	SETI(c, IPPROTO_IP, IP_TOS, 0xb8);
	S(connect(c, SA(sink), L));
	S(write(c, buf, 10));
	usleep(50000);
	SETI(c, IPPROTO_IP, IP_TOS, 0x28);
	S(write(c, buf, 10));
	V("wire", "%s", ask(w, 2000, "watch %d 200 tos,data", local_port(c)));
	close(c);
	timeouts(u);
	SETI(u, IPPROTO_IP, IP_TOS, 0xff);
	S(geti(u, IPPROTO_IP, IP_TOS));
	SETI(u, IPPROTO_IP, IP_TOS, 0x48);
	S(sendto(u, "x", 1, 0, SA(echo), L));
	S(recv(u, reply, sizeof reply - 1, 0));
	V("udp", "%s", reply);
	SETI(u, IPPROTO_IP, IP_TOS, 0x88);
	S(sendto(u, "x", 1, 0, SA(echo), L));
	memset(reply, 0, sizeof reply);
	S(recv(u, reply, sizeof reply - 1, 0));
	V("udp", "%s", reply);
	close(u);
	close(w);
}

/* TCP_MAXSEG: Linux's limits; set before connecting it lowers the MSS of
 * the SYN and the segments both ways (the peer's rcv_mss: 500 less the
 * timestamps); on a connection it changes nothing; a listener's lowers its
 * SYN-ACK's. */
static void sockopt_maxseg(void)
{
	int s = tcp(), w = conn(7007), c = tcp(), l = tcp(), d, a;
	struct sockaddr_in sink = PEER(7009), me = ME(P(0));
	S(geti(s, IPPROTO_TCP, TCP_MAXSEG));
	SETI(s, IPPROTO_TCP, TCP_MAXSEG, 87);
	SETI(s, IPPROTO_TCP, TCP_MAXSEG, 32768);
	SETI(s, IPPROTO_TCP, TCP_MAXSEG, 88);
	S(geti(s, IPPROTO_TCP, TCP_MAXSEG));
	SETI(s, IPPROTO_TCP, TCP_MAXSEG, 0);
	S(geti(s, IPPROTO_TCP, TCP_MAXSEG));
	close(s);
	timeouts(c);
	SETI(c, IPPROTO_TCP, TCP_MAXSEG, 500);
	S(connect(c, SA(sink), L));
	S(geti(c, IPPROTO_TCP, TCP_MAXSEG));
	S(write(c, buf, 3000));
	V("wire", "%s", ask(w, 2000, "watch %d 300 mss,bytes,rcvmss", local_port(c)));
	SETI(c, IPPROTO_TCP, TCP_MAXSEG, 1000);
	S(geti(c, IPPROTO_TCP, TCP_MAXSEG));
	close(c);
	seti(l, SOL_SOCKET, SO_REUSEADDR, 1);
	S(bind(l, SA(me), L));
	SETI(l, IPPROTO_TCP, TCP_MAXSEG, 600);
	S(listen(l, 4));
	S(geti(l, IPPROTO_TCP, TCP_MAXSEG));
	S((d = dial(P(0), "hold")) >= 0);
	a = F(accept(l, NULL, NULL));
	S(geti(a, IPPROTO_TCP, TCP_MAXSEG));
	V("wire", "%s", ask(w, 2000, "watch %d 0 mss", P(0)));
	close(a);
	close(d);
	close(l);
	close(w);
}

/* SO_REUSEPORT reads back what was set (its effect, a port shared by
 * listeners, comes with multi-queue listener groups). */
static void sockopt_reuseport(void)
{
	int s = tcp(), c = conn(7001);
	struct sockaddr_in a = ANY(P(0));
	S(geti(s, SOL_SOCKET, SO_REUSEPORT));
	SETI(s, SOL_SOCKET, SO_REUSEPORT, 1);
	S(geti(s, SOL_SOCKET, SO_REUSEPORT));
	S(bind(s, SA(a), L));
	S(listen(s, 4));
	S(geti(s, SOL_SOCKET, SO_REUSEPORT));
	SETI(c, SOL_SOCKET, SO_REUSEPORT, 1);
	S(geti(c, SOL_SOCKET, SO_REUSEPORT));
	close(c);
	close(s);
}

/* TCP_FASTOPEN: Linux's limits (not on a connection); with this system's
 * default (server side off) a listener with it serves no TFO: a TFO
 * client's SYN data is not acknowledged, and the data comes after. */
static void sockopt_fastopen(void)
{
	int s = tcp(), l = tcp(), w = conn(7007), c = conn(7001), a1, a2;
	struct sockaddr_in me = ME(P(0));
	S(geti(s, IPPROTO_TCP, TCP_FASTOPEN));
	SETI(s, IPPROTO_TCP, TCP_FASTOPEN, -1);
	SETI(s, IPPROTO_TCP, TCP_FASTOPEN, 5);
	S(geti(s, IPPROTO_TCP, TCP_FASTOPEN));
	close(s);
	SETI(c, IPPROTO_TCP, TCP_FASTOPEN, 5);
	S(geti(c, IPPROTO_TCP, TCP_FASTOPEN));
	close(c);
	seti(l, SOL_SOCKET, SO_REUSEADDR, 1);
	S(bind(l, SA(me), L));
	SETI(l, IPPROTO_TCP, TCP_FASTOPEN, 16);
	S(listen(l, 4));
	S(geti(l, IPPROTO_TCP, TCP_FASTOPEN));
	V("wire", "%s", ask(w, 12000, "tfo %d", P(0)));
	a1 = F(accept(l, NULL, NULL));
	a2 = F(accept(l, NULL, NULL));
	S(wait_inq(a1, 3));
	S(wait_inq(a2, 3));
	close(a1);
	close(a2);
	close(l);
	close(w);
}

static void sock_names(void)
{
	int s = tcp(), c = conn(7001);
	struct sockaddr_in a = { 0 };
	socklen_t len = 4;
	names(s);
	sockname_ip(c);
	names(c);
	memset(&a, 0, sizeof a);
	S(getpeername(c, SA(a), &len));
	V("truncated", "len=%d family=%d", len, a.sin_family);
	len = L;
	S(getsockname(c, NULL, &len));
	S(getsockname(-1, SA(a), &len));
	S(getpeername(pipefd[0], SA(a), &len));
	close(s);
	close(c);
}

/* ---- dup and close -------------------------------------------------------- */

static void dup_accelerated(void)
{
	int s = conn(7001), d;
	d = F(dup(s));
	S(write(d, "via-dup", 7));
	V("read", "%ld", read_exact(s, buf, 7));
	S(close(s));
	echo_check(d, "after-close");
	names(d);
	S(close(d));
	S(close(d));
}

static void dup2_dup3(void)
{
	int s = conn(7001), t = conn(7004), u = tcp();
	S(dup2(s, s) == s);
	S(dup2(-1, s));
	S(dup3(s, s, 0));
	S(dup3(s, u, 0x1234));
	S(dup2(t, s) == s);
	memset(buf, 0, 8);
	V("read_through_old_number", "%ld %s", read_exact(s, buf, 6), buf);
	names(s);
	S(dup3(pipefd[1], u, O_CLOEXEC) == u);
	S(fcntl(u, F_GETFD));
	S(getsockname(u, SA((struct sockaddr_in){ 0 }), &(socklen_t){ L }));
	close(s);
	close(t);
	close(u);
}

static void close_errors(void)
{
	int s = conn(7001);
	S(close(-1));
	S(close(s));
	S(close(s));
	S(close(12345));
}

/* ---- epoll ----------------------------------------------------------------- */

static void epoll_create_errors(void)
{
	int ep;
	S(epoll_create(0));
	S(epoll_create(-1));
	S(epoll_create1(0x1234));
	ep = F(epoll_create1(EPOLL_CLOEXEC));
	S(fcntl(ep, F_GETFD));
	close(ep);
}

static void epoll_ctl_errors(void)
{
	int ep = epoll_create1(0), s = conn(7001), f = open("/proc/self/cmdline", O_RDONLY), t = tcp();
	struct epoll_event e = { .events = EPOLLIN };
	S(ep_add(ep, s, EPOLLIN, 1));
	S(ep_add(ep, s, EPOLLIN, 1));
	S(ep_mod(ep, t, EPOLLIN, 2));
	S(epoll_ctl(ep, EPOLL_CTL_DEL, t, &e));
	S(ep_add(ep, ep, EPOLLIN, 3));
	S(ep_add(ep, f, EPOLLIN, 4));
	S(ep_add(pipefd[0], s, EPOLLIN, 5));
	S(epoll_ctl(ep, 99, s, &e));
	S(ep_add(ep, -1, EPOLLIN, 6));
	S(ep_add(-1, s, EPOLLIN, 7));
	S(epoll_ctl(ep, EPOLL_CTL_ADD, t, NULL));
	S(ep_mod(ep, s, EPOLLIN | EPOLLEXCLUSIVE, 1));
	S(epoll_ctl(ep, EPOLL_CTL_DEL, s, NULL));
	S(epoll_ctl(ep, EPOLL_CTL_DEL, s, NULL));
	close(ep);
	close(s);
	close(f);
	close(t);
}

static void epoll_wait_errors(void)
{
	int ep = epoll_create1(0), efd = eventfd(1, 0);
	struct epoll_event e[1];
	S(ep_add(ep, efd, EPOLLIN, 1));
	S(epoll_wait(ep, e, 0, 0));
	S(epoll_wait(ep, e, minus1, 0));
	S(epoll_wait(pipefd[0], e, 1, 0));
	S(epoll_wait(-1, e, 1, 0));
	S(epoll_wait(ep, nullp, 1, 0));
	close(ep);
	close(efd);
}

static void epoll_level(void)
{
	int ep = epoll_create1(0), s = conn(7001);
	S(ep_add(ep, s, EPOLLIN, 1));
	ep_show(ep, 0);
	S(write(s, "ab", 2));
	S(wait_inq(s, 2));
	ep_show(ep, 0);
	ep_show(ep, 0);
	S(read(s, buf, 1));
	ep_show(ep, 0);
	S(read(s, buf, 1));
	ep_show(ep, 0);
	close(s);
	close(ep);
}

static void epoll_edge(void)
{
	int ep = epoll_create1(0), s = conn(7001);
	S(ep_add(ep, s, EPOLLIN | EPOLLET, 1));
	ep_show(ep, 0);
	S(write(s, "a", 1));
	ep_show(ep, 5000);
	ep_show(ep, 0);
	S(read(s, buf, 10));
	S(write(s, "b", 1));
	ep_show(ep, 5000);
	ep_show(ep, 0);
	S(write(s, "c", 1));
	S(wait_inq(s, 2));
	ep_show(ep, 0);
	close(s);
	close(ep);
}

static void epoll_edge_out(void)
{
	int ep = epoll_create1(0), s = conn(7001);
	S(ep_add(ep, s, EPOLLOUT | EPOLLET, 1));
	ep_show(ep, 0);
	ep_show(ep, 0);
	S(ep_mod(ep, s, EPOLLOUT | EPOLLET, 2));
	ep_show(ep, 0);
	ep_show(ep, 0);
	close(s);
	close(ep);
}

static void epoll_oneshot_mod(void)
{
	int ep = epoll_create1(0), s = conn(7001);
	S(ep_add(ep, s, EPOLLIN | EPOLLONESHOT, 1));
	S(write(s, "a", 1));
	ep_show(ep, 5000);
	S(write(s, "b", 1));
	S(wait_inq(s, 2));
	ep_show(ep, 0);
	S(ep_add(ep, s, EPOLLIN, 1));
	S(ep_mod(ep, s, EPOLLIN | EPOLLONESHOT, 2));
	ep_show(ep, 0);
	ep_show(ep, 0);
	S(ep_mod(ep, s, EPOLLIN, 3));
	ep_show(ep, 0);
	ep_show(ep, 0);
	close(s);
	close(ep);
}

static void epoll_rdhup(void)
{
	int ep = epoll_create1(0), s = conn(7004);
	S(ep_add(ep, s, EPOLLIN | EPOLLRDHUP, 1));
	V("eof", "%s", evs(wait_ev(s, POLLIN | POLLRDHUP, POLLRDHUP)));
	ep_show(ep, 0);
	S(read(s, buf, 6));
	ep_show(ep, 0);
	S(read(s, buf, 6));
	S(ep_mod(ep, s, EPOLLIN | EPOLLOUT | EPOLLRDHUP, 2));
	ep_show(ep, 0);
	close(s);
	close(ep);
}

static void epoll_refused(void)
{
	int ep = epoll_create1(0), s = tcp();
	struct sockaddr_in closed = PEER(7003);
	nonblock(s);
	S(ep_add(ep, s, EPOLLIN | EPOLLOUT | EPOLLRDHUP, 1));
	S(connect(s, SA(closed), L));
	V("revents", "%s", evs(wait_ev(s, POLLOUT, POLLERR | POLLHUP)));
	ep_show(ep, 0);
	S(geti(s, SOL_SOCKET, SO_ERROR));
	ep_show(ep, 0);
	close(s);
	close(ep);
}

static void epoll_two_sets(void)
{
	int e1 = epoll_create1(0), e2 = epoll_create1(0), s = conn(7001);
	S(ep_add(e1, s, EPOLLIN, 1));
	S(ep_add(e2, s, EPOLLIN | EPOLLET, 2));
	S(write(s, "x", 1));
	S(wait_inq(s, 1));
	ep_show(e1, 0);
	ep_show(e2, 0);
	ep_show(e1, 0);
	ep_show(e2, 0);
	S(epoll_ctl(e1, EPOLL_CTL_DEL, s, NULL));
	ep_show(e1, 0);
	S(write(s, "y", 1));
	S(wait_inq(s, 2));
	ep_show(e2, 0);
	close(s);
	close(e1);
	close(e2);
}

static void epoll_close_reuse(void)
{
	int ep = epoll_create1(0), s = conn(7001), n, t = conn(7001);
	S(ep_add(ep, s, EPOLLIN, 1));
	S(write(s, "a", 1));
	S(wait_inq(s, 1));
	ep_show(ep, 0);
	n = s;
	S(close(s));
	ep_show(ep, 0);
	/* Number n now names another connection (t's). */
	S(dup2(t, n) == n);
	S(close(t));
	ep_show(ep, 0);
	S(ep_mod(ep, n, EPOLLIN, 2));
	S(ep_add(ep, n, EPOLLIN, 2));
	S(write(n, "b", 1));
	ep_show(ep, 5000);
	close(n);
	close(ep);
}

static void epoll_dup_then_close(void)
{
	int ep = epoll_create1(0), s = conn(7001), d;
	S(ep_add(ep, s, EPOLLIN, 1));
	d = F(dup(s));
	S(close(s));
	S(write(d, "a", 1));
	S(wait_inq(d, 1));
	ep_show(ep, 0);
	S(epoll_ctl(ep, EPOLL_CTL_DEL, s, NULL));
	S(close(d));
	ep_show(ep, 0);
	close(ep);
}

static void epoll_listener(void)
{
	int ep = epoll_create1(0), l = listener(P(0)), c, a;
	S(ep_add(ep, l, EPOLLIN, 1));
	ep_show(ep, 0);
	S((c = dial(P(0), "hold")) >= 0);
	ep_show(ep, 5000);
	a = F(accept(l, NULL, NULL));
	ep_show(ep, 0);
	S(ep_add(ep, a, EPOLLIN | EPOLLRDHUP, 2));
	ep_show(ep, 0);
	close(c);
	V("eof", "%s", evs(wait_ev(a, POLLIN | POLLRDHUP, POLLRDHUP)));
	ep_show(ep, 0);
	close(a);
	close(l);
	close(ep);
}

static void epoll_mixed_waits(void)
{
	int ep = epoll_create1(0), efd = eventfd(0, EFD_NONBLOCK), s = conn(7001);
	struct epoll_event e[4];
	struct timespec zero = { 0, 0 };
	sigset_t mask;
	sigemptyset(&mask);
	S(ep_add(ep, efd, EPOLLIN, 1));
	S(ep_add(ep, s, EPOLLIN, 2));
	S(epoll_pwait(ep, e, 4, 0, &mask));
	S(eventfd_write(efd, 1));
	S(epoll_pwait(ep, e, 4, 0, &mask));
	S(write(s, "z", 1));
	S(wait_inq(s, 1));
	S(epoll_pwait2(ep, e, 4, &zero, NULL));
	S(epoll_pwait2(ep, e, 4, NULL, &mask));
	close(s);
	close(efd);
	close(ep);
}

static void epoll_exclusive(void)
{
	int ep = epoll_create1(0), s = conn(7001);
	S(ep_add(ep, s, EPOLLIN | EPOLLEXCLUSIVE, 1));
	S(ep_mod(ep, s, EPOLLIN, 1));
	S(write(s, "x", 1));
	ep_show(ep, 5000);
	close(s);
	close(ep);
}

static void epoll_wait_timeout(void)
{
	int ep = epoll_create1(0), s = conn(7001);
	struct timespec t0;
	S(ep_add(ep, s, EPOLLIN, 1));
	clock_gettime(CLOCK_MONOTONIC, &t0);
	ep_show(ep, 100);
	V("waited_at_least_90ms", "%d", ms_since(&t0) >= 90);
	close(s);
	close(ep);
}

/* ---- poll and select ------------------------------------------------------ */

static void poll_mixed(void)
{
	int s = conn(7001), dead = tcp();
	close(dead);
	struct pollfd p[4] = { { s, POLLIN | POLLOUT, 0 }, { pipefd[0], POLLIN, 0 }, { -1, POLLIN, 0 }, { dead, POLLIN, 0 } };
	S(poll(p, 4, 0));
	V("revents", "%s %s %s %s", evs(p[0].revents), evs(p[1].revents), evs(p[2].revents), evs(p[3].revents));
	S(write(s, "q", 1));
	S(wait_inq(s, 1));
	S(poll(p, 2, 0));
	V("revents", "%s %s", evs(p[0].revents), evs(p[1].revents));
	close(s);
}

static void ppoll_timeout(void)
{
	int s = conn(7001);
	struct pollfd p = { s, POLLIN, 0 };
	struct timespec ts = { 0, 100000000 }, t0;
	sigset_t mask;
	sigemptyset(&mask);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	S(ppoll(&p, 1, &ts, &mask));
	V("waited_at_least_90ms", "%d", ms_since(&t0) >= 90);
	S(write(s, "q", 1));
	S(wait_inq(s, 1));
	S(ppoll(&p, 1, &ts, NULL));
	V("revents", "%s", evs(p.revents));
	close(s);
}

static void select_calls(void)
{
	int s = conn(7001);
	fd_set r, w;
	struct timeval tv = { 0, 0 };
	FD_ZERO(&r);
	FD_ZERO(&w);
	FD_SET(s, &r);
	FD_SET(s, &w);
	S(select(s + 1, &r, &w, NULL, &tv));
	V("set", "r=%d w=%d", FD_ISSET(s, &r), FD_ISSET(s, &w));
	S(write(s, "q", 1));
	S(wait_inq(s, 1));
	FD_ZERO(&r);
	FD_SET(s, &r);
	tv.tv_sec = 1;
	S(select(s + 1, &r, NULL, NULL, &tv));
	V("set", "r=%d", FD_ISSET(s, &r));
	S(select(-1, &r, NULL, NULL, &tv));
	FD_ZERO(&r);
	FD_SET(1000, &r);
	tv = (struct timeval){ 0, 0 };
	S(select(1001, &r, NULL, NULL, &tv));
	close(s);
}

static void select_timeout(void)
{
	int s = conn(7001);
	fd_set r;
	struct timeval tv = { 0, 100000 };
	struct timespec ts = { 0, 50000000 };
	FD_ZERO(&r);
	FD_SET(s, &r);
	S(select(s + 1, &r, NULL, NULL, &tv));
	V("left", "%ld.%06ld r=%d", (long)tv.tv_sec, (long)tv.tv_usec, FD_ISSET(s, &r));
	FD_SET(s, &r);
	S(pselect(s + 1, &r, NULL, NULL, &ts, NULL));
	V("left", "%ld.%09ld", (long)ts.tv_sec, ts.tv_nsec);
	close(s);
}

/* ---- sendfile and fork ------------------------------------------------ */

static void sendfile_socket(void)
{
	char path[] = "/tmp/accel-diff-XXXXXX";
	int f = mkstemp(path), s = conn(7001);
	static char data[65536], back[65536];
	off_t off = 1000;
	for (size_t i = 0; i < sizeof data; i++)
		data[i] = (char)(i * 7 + i / 256);
	unlink(path);
	S(write(f, data, sizeof data) == sizeof data);
	S(sendfile(s, f, &off, 30000));
	V("offset", "%ld", (long)off);
	V("echoed", "%ld", read_exact(s, back, 30000));
	V("same", "%d", memcmp(back, data + 1000, 30000) == 0);
	S(lseek(f, 0, SEEK_SET));
	S(sendfile(s, f, NULL, 100));
	S(lseek(f, 0, SEEK_CUR));
	V("echoed", "%ld", read_exact(s, back, 100));
	S(sendfile(f, s, NULL, 10));
	S(sendfile(-1, f, NULL, 10));
	close(f);
	close(s);
}

static void fork_child_closes(void)
{
	int s = conn(7001), status = -1;
	pid_t pid;
	fflush(stdout);
	pid = fork();
	if (pid == 0)
		_exit(close(s) == 0 ? 7 : 1);
	S(pid > 0);
	S(waitpid(pid, &status, 0) == pid);
	V("child", "exit=%d", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	echo_check(s, "parent");
	close(s);
}

static void execve_inherits_sockets(void)
{
	int s = conn(7001), t = conn(7001), status = -1;
	char cmd[128];
	pid_t pid;
	S(fcntl(t, F_SETFD, FD_CLOEXEC));
	snprintf(cmd, sizeof cmd, "test -S /proc/self/fd/%d && echo s-open; test -e /proc/self/fd/%d || echo t-closed", s, t);
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		char *argv[] = { "sh", "-c", cmd, NULL };
		printf("case %s step %d: child=", cur, stepno + 1);
		fflush(stdout);
		execve("/bin/sh", argv, environ);
		_exit(127);
	}
	S(waitpid(pid, &status, 0) == pid);
	V("exit", "%d", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	echo_check(s, "still");
	close(s);
	close(t);
}

/* ---- fork after accept: the child serves the connection --------------- */

/* An accepted connection (the peer echoes) whose copy the parent keeps
 * (`hold`: the parent goes on) or closes (the child is then the only
 * holder); `go` is a pipe the child waits on until the parent has closed
 * its copy. */
static int fork_accepted(int l, int *c, const char *mode)
{
	S((*c = dial(P(0), mode)) >= 0);
	wait_ev(l, POLLIN, POLLIN);
	return F(accept(l, NULL, NULL));
}

static void child_waits(int go)
{
	char x;
	while (read(go, &x, 1) < 0 && errno == EINTR)
		;
}

static void fork_child_serves(void)
{
	int l = listener(P(0)), c, a, go[2], status = -1, ep;
	pid_t pid;
	a = fork_accepted(l, &c, "echo");
	if (pipe(go) < 0)
		return;
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		close(go[1]);
		close(l);
		child_waits(go[0]);
		echo_check(a, "child");
		{
			struct sockaddr_in x = PEER(9), from;
			socklen_t flen = sizeof from;
			S(sendto(a, "to", 2, MSG_NOSIGNAL, SA(x), L));
			V("read", "%ld", read_exact(a, buf, 2));
			S(write(a, "ab", 2));
			S(wait_inq(a, 2));
			S(recvfrom(a, buf, 2, 0, SA(from), &flen));
			V("fromlen", "%d", flen);
		}
		{
			/* sendmsg and recvmsg, two iovecs each. */
			char r1[2], r2[2];
			struct iovec v[2] = { { "ms", 2 }, { "g!", 2 } }, w[2] = { { r1, 2 }, { r2, 2 } };
			struct msghdr m = { .msg_iov = v, .msg_iovlen = 2 }, n = { .msg_iov = w, .msg_iovlen = 2 };
			S(sendmsg(a, &m, MSG_NOSIGNAL));
			S(wait_inq(a, 4));
			S(recvmsg(a, &n, 0));
			V("msg", "%.2s%.2s flags=%d", r1, r2, n.msg_flags);
		}
		{
			/* splice, pipe to socket and back. */
			int p[2];
			if (pipe(p) == 0) {
				S(write(p[1], "spl", 3));
				S(splice(p[0], NULL, a, NULL, 3, 0));
				S(wait_inq(a, 3));
				S(splice(a, NULL, p[1], NULL, 3, 0));
				memset(buf, 0, 8);
				S(read(p[0], buf, 3));
				V("spliced", "%.3s", buf);
				close(p[0]);
				close(p[1]);
			}
		}
		names(a);
		V("type", "%d", geti(a, SOL_SOCKET, SO_TYPE));
		V("error", "%d", geti(a, SOL_SOCKET, SO_ERROR));
		V("nodelay", "%d", geti(a, IPPROTO_TCP, TCP_NODELAY));
		SETI(a, IPPROTO_TCP, TCP_NODELAY, 1);
		V("nodelay", "%d", geti(a, IPPROTO_TCP, TCP_NODELAY));
		SETI(a, SOL_SOCKET, SO_KEEPALIVE, 1);
		SETI(a, IPPROTO_TCP, TCP_KEEPIDLE, 30);
		V("keepidle", "%d", geti(a, IPPROTO_TCP, TCP_KEEPIDLE));
		ep = epoll_create1(0);
		S(ep_add(ep, a, EPOLLIN, 1));
		S(write(a, "again", 5));
		ep_show(ep, 5000);
		memset(buf, 0, 8);
		V("read", "%ld %.5s", read_exact(a, buf, 5), buf);
		S(close(a));
		_exit(0);
	}
	close(go[0]);
	S(close(a));
	/* Shown after the child's lines: the child prints as soon as it
	   reads this, and both write to the same stdout. */
	ssize_t went = write(go[1], "g", 1);
	S(waitpid(pid, &status, 0) == pid);
	V("go", "%zd", went);
	V("child", "exit=%d", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	/* Both copies closed: the peer saw the end, and ended its control
	 * connection. */
	V("peer_done", "%s", evs(wait_ev(c, POLLIN | POLLRDHUP, POLLRDHUP)));
	S(read(c, buf, 10));
	close(go[1]);
	close(c);
	close(l);
}

static void fork_child_leaves_it_alone(void)
{
	int l = listener(P(0)), c, a, go[2], status = -1;
	pid_t pid;
	a = fork_accepted(l, &c, "echo");
	if (pipe(go) < 0)
		return;
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		/* redis's BGSAVE child: never touches the connection. */
		close(go[1]);
		child_waits(go[0]);
		_exit(3);
	}
	close(go[0]);
	/* The parent serves meanwhile; the child's copy takes nothing. */
	echo_check(a, "before");
	S(write(go[1], "g", 1));
	S(waitpid(pid, &status, 0) == pid);
	V("child", "exit=%d", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	echo_check(a, "after");
	/* A child that closes it without using it. */
	fflush(stdout);
	pid = fork();
	if (pid == 0)
		_exit(close(a) == 0 ? 4 : 1);
	S(waitpid(pid, &status, 0) == pid);
	V("child", "exit=%d", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	echo_check(a, "still");
	close(go[1]);
	close(a);
	close(c);
	close(l);
}

static void fork_child_shutdown_wr(void)
{
	int l = listener(P(0)), c, a, go[2], status = -1;
	pid_t pid;
	a = fork_accepted(l, &c, "echo");
	if (pipe(go) < 0)
		return;
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		close(go[1]);
		child_waits(go[0]);
		S(send(a, "abc", 3, MSG_NOSIGNAL));
		S(shutdown(a, SHUT_WR));
		memset(buf, 0, 8);
		V("read", "%ld %.3s", read_exact(a, buf, 3), buf);
		V("eof", "%s", evs(wait_ev(a, POLLIN | POLLRDHUP, POLLRDHUP)));
		S(read(a, buf, 10));
		S(send(a, "x", 1, MSG_NOSIGNAL));
		S(shutdown(a, 99));
		S(close(a));
		_exit(0);
	}
	close(go[0]);
	S(close(a));
	/* Shown after the child's lines: the child prints as soon as it
	   reads this, and both write to the same stdout. */
	ssize_t went = write(go[1], "g", 1);
	S(waitpid(pid, &status, 0) == pid);
	V("go", "%zd", went);
	V("child", "exit=%d", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	V("peer_done", "%s", evs(wait_ev(c, POLLIN | POLLRDHUP, POLLRDHUP)));
	close(go[1]);
	close(c);
	close(l);
}

/* A child killed (SIGKILL): what it held is let go, attached or not. */
static void fork_child_killed(void)
{
	int l = listener(P(0)), c, a, ready[2], status = -1;
	char x;
	pid_t pid;
	a = fork_accepted(l, &c, "echo");
	if (pipe(ready) < 0)
		return;
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		/* Never touches it. */
		close(ready[0]);
		if (write(ready[1], "r", 1) != 1)
			_exit(1);
		for (;;)
			pause();
	}
	S(read(ready[0], &x, 1));
	S(kill(pid, SIGKILL));
	S(waitpid(pid, &status, 0) == pid);
	V("child", "signal=%d", WIFSIGNALED(status) ? WTERMSIG(status) : -1);
	echo_check(a, "alive");
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		/* Uses it, then dies with it. */
		char b[8];
		if (write(a, "used", 4) != 4 || read_exact(a, b, 4) != 4 || write(ready[1], "r", 1) != 1)
			_exit(1);
		for (;;)
			pause();
	}
	S(close(a));
	S(read(ready[0], &x, 1));
	S(kill(pid, SIGKILL));
	S(waitpid(pid, &status, 0) == pid);
	V("child", "signal=%d", WIFSIGNALED(status) ? WTERMSIG(status) : -1);
	/* The last holder is gone: the peer saw the end. */
	V("peer_done", "%s", evs(wait_ev(c, POLLIN | POLLRDHUP, POLLRDHUP)));
	close(ready[0]);
	close(ready[1]);
	close(c);
	close(l);
}

/* The peer resets a connection a child holds alone. */
static void fork_child_peer_reset(void)
{
	int l = listener(P(0)), c, a, ready[2], status = -1;
	char x;
	pid_t pid;
	a = fork_accepted(l, &c, "rst");
	if (pipe(ready) < 0)
		return;
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		S(poll1(a, POLLIN, 0));
		if (write(ready[1], "r", 1) != 1)
			_exit(1);
		wait_ev(a, POLLIN, POLLIN);
		S(read(a, buf, 10));
		S(read(a, buf, 10));
		S(send(a, "x", 1, MSG_NOSIGNAL));
		S(close(a));
		_exit(0);
	}
	S(read(ready[0], &x, 1));
	S(close(a));
	/* Unprinted: the child's lines may come at once. */
	if (write(c, "x\n", 2) != 2)
		V("trigger", "failed");
	S(waitpid(pid, &status, 0) == pid);
	V("child", "exit=%d", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	close(ready[0]);
	close(ready[1]);
	close(c);
	close(l);
}

/* inetd: the child puts the connection on its standard input and runs a
 * program that reads it. */
static void fork_exec_serves(void)
{
	int l = listener(P(0)), c, a, go[2], status = -1;
	pid_t pid;
	a = fork_accepted(l, &c, "say-hello");
	if (pipe(go) < 0)
		return;
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		char *argv[] = { "sh", "-c", "head -c 6", NULL };
		close(go[1]);
		child_waits(go[0]);
		close(go[0]);
		dup2(a, 0);
		close(a);
		close(l);
		printf("case %s step %d: child=", cur, stepno + 1);
		fflush(stdout);
		execve("/bin/sh", argv, environ);
		_exit(127);
	}
	close(go[0]);
	S(close(a));
	/* Its result is shown after the child's: the child prints as soon as
	   it reads this, and both write to the same stdout. */
	ssize_t went = write(go[1], "g", 1);
	S(waitpid(pid, &status, 0) == pid);
	V("go", "%zd", went);
	V("exit", "%d", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	close(go[1]);
	close(c);
	close(l);
}

static void close_range_sockets(void)
{
	int ep = epoll_create1(0), s = conn(7001), d = dup(s);
	S(ep_add(ep, s, EPOLLIN, 1));
	S(close_range(s, s, 0));
	S(write(s, "x", 1));
	S(write(d, "y", 1));
	S(wait_inq(d, 1));
	ep_show(ep, 0);
	S(close_range(d, d, 0));
	ep_show(ep, 0);
	S(close_range(5, 4, 0));
	close(ep);
}

/* ---- udp -------------------------------------------------------------------- */

static void udp_echo(void)
{
	int u = udp();
	struct sockaddr_in me = ANY(P(0)), peer = PEER(7001), from;
	socklen_t len = L;
	timeouts(u);
	S(bind(u, SA(me), L));
	names(u);
	S(sendto(u, "ping", 4, 0, SA(peer), L));
	V("revents", "%s", evs(wait_ev(u, POLLIN, POLLIN)));
	memset(buf, 0, 8);
	S(recvfrom(u, buf, sizeof buf, 0, SA(from), &len));
	V("from", "%s len=%d data=%s", show(&from), len, buf);
	close(u);
}

static void udp_connected(void)
{
	int u = udp();
	struct sockaddr_in peer = PEER(7001);
	timeouts(u);
	S(connect(u, SA(peer), L));
	sockname_ip(u);
	names(u);
	S(send(u, "pong", 4, 0));
	memset(buf, 0, 8);
	S(recv(u, buf, sizeof buf, 0));
	V("data", "%s", buf);
	S(sendto(u, "to", 2, 0, SA(peer), L));
	S(recv(u, buf, sizeof buf, 0));
	close(u);
}

static void udp_refused(void)
{
	int u = udp();
	struct sockaddr_in closed = PEER(7003);
	timeouts(u);
	S(connect(u, SA(closed), L));
	S(send(u, "anyone", 6, 0));
	V("revents", "%s", evs(wait_ev(u, POLLIN, POLLERR)));
	S(recv(u, buf, sizeof buf, 0));
	S(geti(u, SOL_SOCKET, SO_ERROR));
	close(u);
}

static void udp_nonblocking_empty(void)
{
	int u = udp();
	struct sockaddr_in me = ANY(P(0)), again = ANY(P(0));
	S(bind(u, SA(me), L));
	S(recv(u, buf, 10, MSG_DONTWAIT));
	nonblock(u);
	S(recvfrom(u, buf, 10, 0, NULL, NULL));
	S(bind(udp(), SA(again), L));
	close(u);
}

static void udp_mmsg(void)
{
	int u = udp();
	struct sockaddr_in peer = PEER(7001);
	char in[3][16] = { { 0 } };
	struct iovec o[3] = { { "one", 3 }, { "two", 3 }, { "three", 5 } };
	struct iovec i[3] = { { in[0], 16 }, { in[1], 16 }, { in[2], 16 } };
	struct mmsghdr mo[3], mi[3];
	memset(mo, 0, sizeof mo);
	memset(mi, 0, sizeof mi);
	for (int k = 0; k < 3; k++) {
		mo[k].msg_hdr.msg_iov = &o[k];
		mo[k].msg_hdr.msg_iovlen = 1;
		mi[k].msg_hdr.msg_iov = &i[k];
		mi[k].msg_hdr.msg_iovlen = 1;
	}
	timeouts(u);
	S(connect(u, SA(peer), L));
	S(sendmmsg(u, mo, 3, 0));
	S(recvmmsg(u, mi, 3, 0, NULL));
	V("got", "%u:%s %u:%s %u:%s", mi[0].msg_len, in[0], mi[1].msg_len, in[1], mi[2].msg_len, in[2]);
	close(u);
}

static void udp_trunc(void)
{
	int u = udp();
	struct sockaddr_in peer = PEER(7001);
	char small[4];
	struct iovec iov = { small, sizeof small };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
	timeouts(u);
	S(connect(u, SA(peer), L));
	S(send(u, "0123456789", 10, 0));
	S(recv(u, small, sizeof small, MSG_TRUNC));
	S(send(u, "0123456789", 10, 0));
	S(recvmsg(u, &m, 0));
	V("flags", "trunc=%d", !!(m.msg_flags & MSG_TRUNC));
	close(u);
}

/* ---- loopback: stays in the kernel ---------------------------------------- */

static void loopback_kernel(void)
{
	int l = tcp(), c = tcp(), a;
	struct sockaddr_in lo = LO(0);
	socklen_t len = L;
	S(bind(l, SA(lo), L));
	S(listen(l, 4));
	S(getsockname(l, SA(lo), &len));
	S(connect(c, SA(lo), L));
	a = F(accept(l, NULL, NULL));
	S(write(c, "lo", 2));
	S(read_exact(a, buf, 2));
	sockname_ip(a);
	close(a);
	close(c);
	close(l);
}

static void wildcard_accepts_loopback_and_remote(void)
{
	int l = listener(P(0)), ep = epoll_create1(0), c = tcp(), d, a, b;
	struct sockaddr_in lo = LO(P(0));
	S(l >= 0);
	S(ep_add(ep, l, EPOLLIN, 1));
	S(connect(c, SA(lo), L));
	ep_show(ep, 5000);
	a = F(accept(l, NULL, NULL));
	names(a);
	ep_show(ep, 0);
	S((d = dial(P(0), "send")) >= 0);
	ep_show(ep, 5000);
	b = F(accept(l, NULL, NULL));
	sockname_ip(b);
	V("read", "%ld", read_exact(b, buf, 7));
	S(write(c, "kern", 4));
	V("read", "%ld", read_exact(a, buf, 4));
	close(a);
	close(b);
	close(c);
	close(d);
	close(l);
	close(ep);
}

/* ---- the table ---------------------------------------------------------- */

/* ---- order: ready events in the order their sockets became ready -------- */

/* Three connections made readable in the order 3, 1, 2: reported 3, 1, 2
 * (whatever order the sockets were made in); level-triggered members
 * reported go to the back, so one event at a time takes turns. */
static void epoll_order_data(void)
{
	int ep = epoll_create1(0), s[3];
	for (int i = 0; i < 3; i++) {
		s[i] = conn(7001);
		S(ep_add(ep, s[i], EPOLLIN, i + 1));
	}
	ep_order(ep, 16, 0);
	for (int k = 0, order[3] = { 2, 0, 1 }; k < 3; k++) {
		S(write(s[order[k]], "x", 1));
		S(wait_inq(s[order[k]], 1));
	}
	ep_order(ep, 16, 0);
	ep_order(ep, 16, 0);
	for (int k = 0; k < 4; k++)
		ep_order(ep, 1, 0);
	S(read(s[0], buf, 1));
	ep_order(ep, 16, 0);
	for (int i = 0; i < 3; i++)
		close(s[i]);
	close(ep);
}

/* Edge-triggered: a socket that gets more data keeps its first place until
 * reported; reported, it goes to the back with its next event. */
static void epoll_order_edge(void)
{
	int ep = epoll_create1(0), s[3];
	for (int i = 0; i < 3; i++) {
		s[i] = conn(7001);
		S(ep_add(ep, s[i], EPOLLIN | EPOLLET, i + 1));
	}
	for (int k = 0, order[4] = { 1, 2, 1, 0 }; k < 4; k++) {
		S(write(s[order[k]], "y", 1));
		S(wait_inq(s[order[k]], k == 2 ? 2 : 1));
	}
	ep_order(ep, 2, 0);
	for (int k = 0, order[2] = { 1, 2 }; k < 2; k++) {
		S(write(s[order[k]], "z", 1));
		S(wait_inq(s[order[k]], order[k] == 1 ? 3 : 2));
	}
	ep_order(ep, 16, 0);
	ep_order(ep, 16, 0);
	for (int i = 0; i < 3; i++)
		close(s[i]);
	close(ep);
}

/* New connections on three listeners, made in the order 3, 1, 2. */
static void epoll_order_accept(void)
{
	int ep = epoll_create1(0), l[3], c[3];
	for (int i = 0; i < 3; i++) {
		l[i] = listener(P(i));
		S(ep_add(ep, l[i], EPOLLIN, i + 1));
	}
	for (int k = 0, order[3] = { 2, 0, 1 }; k < 3; k++) {
		S((c[k] = dial(P(order[k]), "hold")) >= 0);
		V("ready", "%s", evs(wait_ev(l[order[k]], POLLIN, POLLIN)));
	}
	ep_order(ep, 16, 0);
	for (int i = 0; i < 3; i++) {
		close(c[i]);
		close(l[i]);
	}
	close(ep);
}

/* One listener's accept queue: connections are accepted in the order
 * their handshakes completed. */
static void accept_queue_order(void)
{
	int l = listener(P(0)), c[4], a;
	char mode[16], word[8];
	for (int k = 0; k < 4; k++) {
		snprintf(mode, sizeof mode, "say-c%d", k);
		S((c[k] = dial(P(0), mode)) >= 0);
	}
	for (int k = 0; k < 4; k++) {
		a = F(accept(l, NULL, NULL));
		memset(word, 0, sizeof word);
		S(read_exact(a, word, 3));
		V("accepted", "%s", word);
		close(a);
	}
	for (int k = 0; k < 4; k++)
		close(c[k]);
	close(l);
}

/* Three threads block in accept on one listener, 300 ms apart; three
 * connections come one at a time: the kernel hands each to the thread
 * that has waited longest (exclusive waits, oldest first). */
static int blocked_listener, blocked_pipe[2];

static void *blocked_acceptor(void *arg)
{
	char me = (char)(intptr_t)arg;
	int a = accept(blocked_listener, NULL, NULL);
	if (write(blocked_pipe[1], a >= 0 ? &me : "x", 1) != 1)
		return NULL;
	if (a >= 0)
		close(a);
	return NULL;
}

static void accept_blocked_threads_in_order(void)
{
	pthread_t t[3];
	char who;
	int c[3];
	blocked_listener = listener(P(0));
	S(pipe(blocked_pipe));
	for (int k = 0; k < 3; k++) {
		S(pthread_create(&t[k], NULL, blocked_acceptor, (void *)(intptr_t)('0' + k)) == 0);
		usleep(300000);
	}
	for (int k = 0; k < 3; k++) {
		S((c[k] = dial(P(0), "hold")) >= 0);
		S(read(blocked_pipe[0], &who, 1));
		V("accepted by thread", "%c", who);
	}
	for (int k = 0; k < 3; k++) {
		pthread_join(t[k], NULL);
		close(c[k]);
	}
	close(blocked_pipe[0]);
	close(blocked_pipe[1]);
	close(blocked_listener);
}

/* Hang-ups (the peer's FIN after ours) in the order 2, 3, 1. */
static void epoll_order_hangup(void)
{
	int ep = epoll_create1(0), s[3];
	for (int i = 0; i < 3; i++) {
		s[i] = conn(7001);
		S(ep_add(ep, s[i], EPOLLRDHUP, i + 1));
	}
	for (int k = 0, order[3] = { 1, 2, 0 }; k < 3; k++) {
		S(shutdown(s[order[k]], SHUT_WR));
		V("eof", "%s", evs(wait_ev(s[order[k]], POLLIN | POLLRDHUP, POLLRDHUP)));
	}
	ep_order(ep, 16, 0);
	for (int i = 0; i < 3; i++)
		close(s[i]);
	close(ep);
}

/* Data, a new connection and a hang-up, in the order hang-up, connection,
 * data. */
static void epoll_order_kinds(void)
{
	int ep = epoll_create1(0), l = listener(P(0)), d = conn(7001), h = conn(7001), c;
	S(ep_add(ep, l, EPOLLIN, 1));
	S(ep_add(ep, d, EPOLLIN, 2));
	S(ep_add(ep, h, EPOLLIN | EPOLLRDHUP, 3));
	S(shutdown(h, SHUT_WR));
	V("eof", "%s", evs(wait_ev(h, POLLIN | POLLRDHUP, POLLRDHUP)));
	S((c = dial(P(0), "hold")) >= 0);
	V("ready", "%s", evs(wait_ev(l, POLLIN, POLLIN)));
	S(write(d, "d", 1));
	S(wait_inq(d, 1));
	ep_order(ep, 16, 0);
	close(c);
	close(d);
	close(h);
	close(l);
	close(ep);
}

/* Accelerated and kernel members: an accelerated socket, then an eventfd,
 * then another accelerated socket become ready. The shim sees a kernel
 * member's readiness when it looks (its keeper thread looks while the
 * program computes: here, sleeps), so the program sleeps after the
 * eventfd's write, as a program busy with something else would. */
static void epoll_order_mixed(void)
{
	int ep = epoll_create1(0), efd = eventfd(0, EFD_NONBLOCK), s1 = conn(7001), s2 = conn(7001);
	S(ep_add(ep, s1, EPOLLIN, 1));
	S(ep_add(ep, efd, EPOLLIN, 2));
	S(ep_add(ep, s2, EPOLLIN, 3));
	S(write(s2, "b", 1));
	S(wait_inq(s2, 1));
	usleep(50000);
	S(eventfd_write(efd, 1));
	usleep(50000);
	S(write(s1, "a", 1));
	S(wait_inq(s1, 1));
	ep_order(ep, 16, 0);
	S(read(s2, buf, 1));
	ep_order(ep, 16, 0);
	close(s1);
	close(s2);
	close(efd);
	close(ep);
}

/* ---- blocking calls interrupted by a signal ---------------------------- */

/* A thread sends SIGUSR1 to the main thread every 20 ms (at most 500
 * times) while the main thread is blocked in a call; once `after` signals
 * were handled it runs `act` once, which lets the call complete (data
 * comes, a peer dials). Without SA_RESTART the first signal that finds
 * the call asleep ends it with EINTR; with SA_RESTART the call goes on
 * until `act` (or, for poll/epoll_wait/select and calls with a socket
 * timeout, which are never restarted, ends with EINTR too). A signal that
 * comes before the call sleeps is handled and the next one interrupts:
 * what is printed does not depend on timing. */
static volatile sig_atomic_t sig_hits;
static void on_usr1(int sig) { (void)sig; sig_hits++; }

struct kicker {
	pthread_t main, thread;
	volatile int stop;
	int after, fd, out;
	void (*act)(struct kicker *);
};

static void *kicker_run(void *p)
{
	struct kicker *k = p;
	int acted = 0;
	for (int n = 0; n < 500 && !k->stop; n++) {
		usleep(20000);
		if (k->stop)
			break;
		pthread_kill(k->main, SIGUSR1);
		if (k->act && !acted && sig_hits >= k->after) {
			k->act(k);
			acted = 1;
		}
	}
	return NULL;
}

static void kick(struct kicker *k, int restart, int after, void (*act)(struct kicker *))
{
	struct sigaction sa = { .sa_handler = on_usr1, .sa_flags = restart ? SA_RESTART : 0 };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
	sig_hits = 0;
	k->main = pthread_self();
	k->stop = 0;
	k->after = after;
	k->act = act;
	pthread_create(&k->thread, NULL, kicker_run, k);
}

static void unkick(struct kicker *k)
{
	k->stop = 1;
	pthread_join(k->thread, NULL);
	V("handler_ran", "%d", sig_hits > 0);
}

static void no_timeouts(int fd)
{
	struct timeval tv = { 0, 0 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

static void act_write(struct kicker *k) { (void)!write(k->fd, "x", 1); }
static void act_dial(struct kicker *k) { k->out = dial(k->fd, "hold"); }

static void act_sendto(struct kicker *k)
{
	struct sockaddr_in echo = PEER(7001);
	sendto(k->fd, "u", 1, 0, SA(echo), L);
}

/* Fills connection s's send buffer for good (the peer does not read, or
 * its acknowledgements are lost): non-blocking sends until EAGAIN, first
 * large, then of one byte, in rounds 100 ms apart (acknowledgements of
 * what was in flight make room) until a round sends nothing. */
static void fill(int s)
{
	int e = 0;
	for (int round = 0; round < 100; round++) {
		long sent = 0, r;
		for (int i = 0; i < 100000 && (r = send(s, buf, sizeof buf, MSG_DONTWAIT)) > 0; i++)
			sent += r;
		for (int i = 0; i < 100000 && (r = send(s, buf, 1, MSG_DONTWAIT)) > 0; i++)
			sent += r;
		e = errno;
		if (sent == 0 && round > 0)
			break;
		usleep(100000);
	}
	V("filled", "%s", en(e));
}

static void sig_recv(void)
{
	struct kicker k = { 0 };
	int s = conn(7001);
	no_timeouts(s);
	k.fd = s;
	kick(&k, 0, 0, NULL);
	S(recv(s, buf, sizeof buf, 0));
	unkick(&k);
	kick(&k, 1, 3, act_write);
	S(recv(s, buf, sizeof buf, 0));
	unkick(&k);
	kick(&k, 0, 0, NULL);
	S(read(s, buf, sizeof buf));
	unkick(&k);
	/* SO_RCVTIMEO: EINTR even with SA_RESTART. */
	timeouts(s);
	kick(&k, 1, 0, NULL);
	S(recv(s, buf, sizeof buf, 0));
	unkick(&k);
	close(s);
}

static void sig_accept(void)
{
	struct kicker k = { 0 };
	int l = listener(P(0)), a;
	no_timeouts(l);
	k.fd = P(0);
	kick(&k, 0, 0, NULL);
	S(accept(l, NULL, NULL));
	unkick(&k);
	k.out = -1;
	kick(&k, 1, 3, act_dial);
	a = F(accept(l, NULL, NULL));
	unkick(&k);
	V("dialed", "%d", k.out >= 0);
	close(a);
	close(k.out);
	timeouts(l);
	kick(&k, 1, 0, NULL);
	S(accept4(l, NULL, NULL, SOCK_CLOEXEC));
	unkick(&k);
	close(l);
}

static void sig_connect(void)
{
	struct kicker k = { 0 };
	struct sockaddr_in nobody = in4("198.18.0.3", P(0)), echo = PEER(7001);
	int s = tcp(), w;
	kick(&k, 0, 0, NULL);
	S(connect(s, SA(nobody), L));
	unkick(&k);
	nonblock(s);
	S(connect(s, SA(nobody), L));
	close(s);
	/* SO_SNDTIMEO: EINTR even with SA_RESTART. */
	s = tcp();
	timeouts(s);
	kick(&k, 1, 0, NULL);
	S(connect(s, SA(nobody), L));
	unkick(&k);
	close(s);
	/* SA_RESTART without a timeout: the connect goes on through the
	 * signals and completes once the peer's answers get through. */
	w = conn(7007);
	s = tcp();
	V("mute", "%s", ask(w, 2000, "mute 1200"));
	usleep(100000);
	kick(&k, 1, 0, NULL);
	S(connect(s, SA(echo), L));
	unkick(&k);
	V("unmuted", "%s", line_in(w, 6000));
	timeouts(s);
	echo_check(s, "restarted");
	close(s);
	close(w);
}

/* A send on a full buffer: the sink's acknowledgements are dropped (the
 * wire's mute) so that no room is made until they get through again. */
static void sig_send_full(void)
{
	struct kicker k = { 0 };
	int w = conn(7007), c = conn(7009);
	no_timeouts(c);
	V("mute", "%s", ask(w, 2000, "mute 2500"));
	usleep(100000);
	fill(c);
	kick(&k, 0, 0, NULL);
	S(send(c, buf, 1000, 0));
	unkick(&k);
	kick(&k, 0, 0, NULL);
	S(write(c, buf, 1000));
	unkick(&k);
	/* SO_SNDTIMEO: EINTR even with SA_RESTART. */
	timeouts(c);
	kick(&k, 1, 0, NULL);
	S(send(c, buf, 1000, 0));
	unkick(&k);
	/* SA_RESTART without a timeout: the send waits through the signals
	 * until the acknowledgements get through and make room. */
	no_timeouts(c);
	kick(&k, 1, 0, NULL);
	S(send(c, buf, 1000, 0));
	unkick(&k);
	V("unmuted", "%s", line_in(w, 6000));
	close(c);
	close(w);
}

/* poll, ppoll, select and epoll_wait end with EINTR with or without
 * SA_RESTART, and with or without a timeout. */
static void sig_poll_epoll(void)
{
	struct kicker k = { 0 };
	struct epoll_event ev[4];
	int s = conn(7001), ep = epoll_create1(0);
	struct pollfd p = { s, POLLIN, 0 };
	S(ep_add(ep, s, EPOLLIN, 1));
	for (int restart = 0; restart < 2; restart++) {
		fd_set r;
		struct timeval tv = { 5, 0 };
		kick(&k, restart, 0, NULL);
		S(poll(&p, 1, -1));
		unkick(&k);
		kick(&k, restart, 0, NULL);
		S(ppoll(&p, 1, &(struct timespec){ 5, 0 }, NULL));
		unkick(&k);
		kick(&k, restart, 0, NULL);
		S(epoll_wait(ep, ev, 4, -1));
		unkick(&k);
		kick(&k, restart, 0, NULL);
		S(epoll_wait(ep, ev, 4, 5000));
		unkick(&k);
		FD_ZERO(&r);
		FD_SET(s, &r);
		kick(&k, restart, 0, NULL);
		S(select(s + 1, &r, NULL, NULL, &tv));
		unkick(&k);
	}
	close(ep);
	close(s);
}

static void sig_udp_recv(void)
{
	struct kicker k = { 0 };
	struct sockaddr_in me = ANY(P(0));
	int u = udp();
	S(bind(u, SA(me), L));
	k.fd = u;
	kick(&k, 0, 0, NULL);
	S(recvfrom(u, buf, sizeof buf, 0, NULL, NULL));
	unkick(&k);
	kick(&k, 1, 3, act_sendto);
	S(recvfrom(u, buf, sizeof buf, 0, NULL, NULL));
	unkick(&k);
	timeouts(u);
	kick(&k, 1, 0, NULL);
	S(recv(u, buf, sizeof buf, 0));
	unkick(&k);
	close(u);
}

/* ---- splice between an accelerated socket and a pipe ------------------- */

static char pattern[200000], back[200000];

static void pattern_fill(void)
{
	for (size_t i = 0; i < sizeof pattern; i++)
		pattern[i] = (char)(i * 7 + i / 251);
}

/* Socket to pipe: len and what is there bound it, the pipe's room
 * (SPLICE_F_NONBLOCK or its O_NONBLOCK) and the socket's O_NONBLOCK say
 * EAGAIN, the stream's end 0; 200,000 bytes through it intact; the
 * argument errors. */
static void splice_socket_to_pipe(void)
{
	int s = conn(7001), p[2], f = open("/dev/null", O_WRONLY);
	loff_t off = 0;
	long moved = 0;
	S(pipe(p));
	S(write(s, "0123456789", 10));
	S(wait_inq(s, 10));
	S(splice(s, NULL, p[1], NULL, 4, 0));
	S(splice(s, NULL, p[1], NULL, 100, SPLICE_F_MOVE | SPLICE_F_MORE));
	memset(buf, 0, 16);
	S(read(p[0], buf, 100));
	V("piped", "%s", buf);
	S(splice(s, NULL, p[1], NULL, 0, 0));
	S(splice(s, NULL, p[1], NULL, 100, 0x100));
	S(splice(s, &off, p[1], NULL, 100, 0));
	S(splice(s, NULL, p[1], &off, 100, 0));
	S(splice(s, NULL, p[0], NULL, 100, 0));
	S(splice(s, NULL, s, NULL, 100, 0));
	S(splice(s, NULL, f, NULL, 100, 0));
	S(splice(s, NULL, 999, NULL, 100, 0));
	nonblock(s);
	S(splice(s, NULL, p[1], NULL, 100, 0));
	S(splice(s, NULL, p[1], NULL, 100, SPLICE_F_NONBLOCK));
	/* A full pipe: EAGAIN with SPLICE_F_NONBLOCK or the pipe's
	 * O_NONBLOCK, even with data waiting; the data stays. */
	nonblock(p[1]);
	for (int i = 0; i < 100 && write(p[1], buf, sizeof buf) > 0; i++)
		;
	for (int i = 0; i < 100000 && write(p[1], buf, 1) > 0; i++)
		;
	S(write(s, "abc", 3));
	S(wait_inq(s, 3));
	S(splice(s, NULL, p[1], NULL, 100, 0));
	fcntl(p[1], F_SETFL, 0);
	S(splice(s, NULL, p[1], NULL, 100, SPLICE_F_NONBLOCK));
	V("inq", "%d", wait_inq(s, 3));
	close(p[0]);
	close(p[1]);
	S(pipe(p));
	S(splice(s, NULL, p[1], NULL, 100, 0));
	S(read(p[0], buf, 100));
	/* 200,000 bytes: the peer echoes them; through the pipe in chunks. */
	pattern_fill();
	fcntl(s, F_SETFL, 0);
	S(send(s, pattern, sizeof pattern, 0));
	while (moved < (long)sizeof back) {
		if (poll1(s, POLLIN, 5000) <= 0)
			break;
		ssize_t n = splice(s, NULL, p[1], NULL, sizeof back - moved, 0), got = 0, r = 1;
		if (n <= 0)
			break;
		while (got < n && (r = read(p[0], back + moved + got, n - got)) > 0)
			got += r;
		if (got != n)
			break;
		moved += n;
	}
	V("moved", "%ld intact=%d", moved, memcmp(pattern, back, sizeof back) == 0);
	/* The end of the stream. */
	S(shutdown(s, SHUT_WR));
	V("eof", "%s", evs(wait_ev(s, POLLIN | POLLRDHUP, POLLRDHUP)));
	S(splice(s, NULL, p[1], NULL, 100, 0));
	/* tee and vmsplice take pipes only. */
	S(tee(p[0], s, 100, 0));
	S(tee(s, p[1], 100, 0));
	S(vmsplice(s, &(struct iovec){ buf, 10 }, 1, 0));
	close(p[0]);
	close(p[1]);
	close(f);
	close(s);
}

/* Pipe to socket: len and what the pipe holds bound it; an empty pipe
 * with SPLICE_F_NONBLOCK or O_NONBLOCK says EAGAIN, one without writer 0;
 * a full socket (the sink's acks muted) EAGAIN when non-blocking, the
 * pipe's data staying; a shut socket EPIPE; 200,000 bytes intact. */
static void splice_pipe_to_socket(void)
{
	int s = conn(7001), p[2], w, c;
	loff_t off = 0;
	long moved = 0;
	S(pipe(p));
	S(write(p[1], "abcdefghij", 10));
	S(splice(p[0], NULL, s, NULL, 4, 0));
	S(splice(p[0], NULL, s, NULL, 100, SPLICE_F_MORE));
	memset(buf, 0, 16);
	V("echoed", "%ld %s", read_exact(s, buf, 10), buf);
	S(splice(p[0], NULL, s, NULL, 100, SPLICE_F_NONBLOCK));
	S(splice(p[0], &off, s, NULL, 100, 0));
	S(splice(p[0], NULL, s, &off, 100, 0));
	S(splice(p[1], NULL, s, NULL, 100, 0));
	S(splice(p[0], NULL, p[0], NULL, 100, 0));
	nonblock(p[0]);
	S(splice(p[0], NULL, s, NULL, 100, 0));
	fcntl(p[0], F_SETFL, 0);
	/* 200,000 bytes, 50,000 at a time into the pipe, each echo read
	 * before the next. */
	pattern_fill();
	long got = 0;
	for (int round = 0; round < 4; round++) {
		if (write(p[1], pattern + round * 50000, 50000) != 50000)
			break;
		int q = 0;
		while (ioctl(p[0], FIONREAD, &q) == 0 && q > 0) {
			ssize_t n = splice(p[0], NULL, s, NULL, 65536, 0);
			if (n <= 0)
				break;
			moved += n;
		}
		got += read_exact(s, back + round * 50000, 50000);
	}
	V("moved", "%ld", moved);
	V("echoed", "%ld intact=%d", got, memcmp(pattern, back, sizeof back) == 0);
	close(p[1]);
	S(splice(p[0], NULL, s, NULL, 100, 0));
	close(p[0]);
	/* A full socket. */
	S(pipe(p));
	w = conn(7007);
	c = conn(7009);
	V("mute", "%s", ask(w, 2000, "mute 1500"));
	usleep(100000);
	fill(c);
	S(write(p[1], "0123456789", 10));
	nonblock(c);
	S(splice(p[0], NULL, c, NULL, 100, 0));
	S(splice(p[0], NULL, c, NULL, 100, SPLICE_F_NONBLOCK));
	int q = 0;
	S(ioctl(p[0], FIONREAD, &q));
	V("pipe_holds", "%d", q);
	V("unmuted", "%s", line_in(w, 6000));
	close(c);
	close(w);
	/* A socket shut for writing: EPIPE (SIGPIPE is ignored here). */
	S(shutdown(s, SHUT_WR));
	S(splice(p[0], NULL, s, NULL, 100, 0));
	S(ioctl(p[0], FIONREAD, &q));
	V("pipe_holds", "%d", q);
	close(p[0]);
	close(p[1]);
	close(s);
}

/* ---- connections to our own address ----------------------------------- */

/* A TCP connection to our own address (198.18.0.2): the kernel's lo, the
 * stack's own loopback. Names, data both ways (200,000 bytes intact), the
 * end of the stream, and a refused connect to a port nobody listens on. */
static void self_connect(void)
{
	int l = listener(P(0)), c = tcp(), a, d = tcp();
	struct sockaddr_in me = ME(P(0)), closed = ME(P(1));
	long sent = 0, got = 0;
	struct timespec t0;
	timeouts(c);
	S(connect(c, SA(me), L));
	a = F(accept(l, NULL, NULL));
	names(c);
	names(a);
	S(write(c, "hello", 5));
	memset(buf, 0, 16);
	S(read_exact(a, buf, 5));
	V("read", "%s", buf);
	S(send(a, "world", 5, 0));
	memset(buf, 0, 16);
	S(read_exact(c, buf, 5));
	V("read", "%s", buf);
	pattern_fill();
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (got < (long)sizeof pattern && ms_since(&t0) < 5000) {
		if (sent < (long)sizeof pattern) {
			ssize_t n = send(c, pattern + sent, sizeof pattern - sent, MSG_DONTWAIT);
			if (n > 0)
				sent += n;
		}
		ssize_t n = recv(a, back + got, sizeof back - got, MSG_DONTWAIT);
		if (n > 0)
			got += n;
		else
			poll1(a, POLLIN, 10);
	}
	V("moved", "%ld intact=%d", got, memcmp(pattern, back, sizeof back) == 0);
	S(shutdown(c, SHUT_WR));
	S(wait_ev(a, POLLIN, POLLIN));
	S(read(a, buf, 16));
	S(connect(d, SA(closed), L));
	close(d);
	close(a);
	close(c);
	close(l);
}

/* UDP datagrams to our own address, both ways. */
static void self_udp(void)
{
	int u = udp(), v = udp();
	struct sockaddr_in me = ME(P(0)), from;
	socklen_t fl = L;
	S(bind(u, SA(me), L));
	S(sendto(v, "dgram", 5, 0, SA(me), L));
	S(poll1(u, POLLIN, 5000));
	memset(buf, 0, 16);
	S(recvfrom(u, buf, sizeof buf, 0, SA(from), &fl));
	V("got", "%s from %s", buf, show_ip(&from));
	S(sendto(u, "reply", 5, 0, SA(from), fl));
	S(poll1(v, POLLIN, 5000));
	memset(buf, 0, 16);
	S(recv(v, buf, sizeof buf, 0));
	V("got", "%s", buf);
	close(u);
	close(v);
}

static const struct {
	const char *name;
	void (*run)(void);
} cases[] = {
#define C(f) { #f, f }
	C(connect_starts_the_stack), C(socket_errors), C(socket_flags), C(socketpair_calls),
	C(bind_wildcard), C(bind_stack_address), C(bind_port_zero), C(bind_twice), C(bind_in_use),
	C(bind_reuseaddr_listening), C(bind_reuseaddr_bound), C(bind_errors),
	C(listen_unbound), C(listen_twice), C(listen_errors),
	C(accept_empty_nonblocking), C(accept_not_listening), C(accept_dialed), C(accept4_flags),
	C(accept_does_not_inherit_nonblock), C(accept_small_addrlen), C(accept_errors),
	C(accept_timeout), C(accept_after_peer_closed),
	C(accept_blocked_threads_in_order),
	C(connect_blocking), C(connect_refused), C(connect_refused_nonblocking), C(connect_nonblocking),
	C(connect_twice), C(connect_in_progress), C(connect_sndtimeo), C(connect_errors),
	C(connect_listening), C(connect_unspec),
	C(write_read), C(readv_writev), C(send_recv_flags), C(recv_nonblocking_empty),
	C(recvfrom_tcp_addr), C(sendto_tcp), C(send_unconnected), C(sendmsg_recvmsg),
	C(sendmmsg_recvmmsg_tcp), C(msg_trunc_tcp), C(shutdown_wr), C(shutdown_rd), C(shutdown_errors),
	C(shutdown_listener), C(peer_reset), C(peer_closed_epipe), C(write_until_eagain),
	C(fionread_siocoutq), C(fionbio), C(fcntl_ops),
	C(sockopt_ints), C(sockopt_buffers), C(sockopt_timeouts_linger), C(sockopt_errors), C(sockopt_tcp_info),
	C(sockopt_keepalive), C(sockopt_keepalive_timeout), C(sockopt_keepalive_user_timeout),
	C(sockopt_user_timeout), C(sockopt_cork), C(sockopt_linger_timed), C(sockopt_defer_accept),
	C(sockopt_quickack), C(sockopt_tos), C(sockopt_maxseg), C(sockopt_reuseport), C(sockopt_fastopen),
	C(sock_names),
	C(dup_accelerated), C(dup2_dup3), C(close_errors),
	C(epoll_create_errors), C(epoll_ctl_errors), C(epoll_wait_errors), C(epoll_level), C(epoll_edge),
	C(epoll_edge_out), C(epoll_oneshot_mod), C(epoll_rdhup), C(epoll_refused), C(epoll_two_sets),
	C(epoll_close_reuse), C(epoll_dup_then_close), C(epoll_listener), C(epoll_mixed_waits),
	C(epoll_exclusive), C(epoll_wait_timeout),
	C(poll_mixed), C(ppoll_timeout), C(select_calls), C(select_timeout),
	C(sendfile_socket), C(fork_child_closes), C(execve_inherits_sockets), C(close_range_sockets),
	C(fork_child_serves), C(fork_child_leaves_it_alone), C(fork_child_shutdown_wr), C(fork_child_killed), C(fork_child_peer_reset), C(fork_exec_serves),
	C(udp_echo), C(udp_connected), C(udp_refused), C(udp_nonblocking_empty), C(udp_mmsg), C(udp_trunc),
	C(loopback_kernel), C(wildcard_accepts_loopback_and_remote),
	C(epoll_order_data), C(epoll_order_edge), C(epoll_order_accept), C(accept_queue_order),
	C(epoll_order_hangup), C(epoll_order_kinds), C(epoll_order_mixed),
	C(sig_recv), C(sig_accept), C(sig_connect), C(sig_send_full), C(sig_poll_epoll), C(sig_udp_recv),
	C(splice_socket_to_pipe), C(splice_pipe_to_socket), C(self_connect), C(self_udp),
#undef C
};

static sigjmp_buf escape;

static void on_signal(int sig)
{
	printf("case %s step %d: %s\n", cur, stepno + 1, sig == SIGALRM ? "timed out (20 s)" : strsignal(sig));
	fflush(stdout);
	siglongjmp(escape, 1);
}

int main(int argc, char **argv)
{
	size_t n = sizeof cases / sizeof cases[0], ran = 0;
	struct sigaction sa = { .sa_handler = on_signal, .sa_flags = SA_NODEFER };
	if (argc < 2 || (base = atoi(argv[1])) <= 0) {
		fprintf(stderr, "usage: %s BASE_PORT [CASE...]\n", argv[0]);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	sigaction(SIGSEGV, &sa, NULL);
	sigaction(SIGALRM, &sa, NULL);
	if (pipe(pipefd) < 0)
		return 1;
	for (size_t i = 0; i < n; i++) {
		int wanted = argc == 2;
		for (int a = 2; a < argc; a++)
			wanted |= strcmp(argv[a], cases[i].name) == 0;
		if (!wanted)
			continue;
		cur = cases[i].name;
		stepno = 0;
		case_index = (int)i;
		if (sigsetjmp(escape, 1) == 0) {
			alarm(20);
			cases[i].run();
		}
		alarm(0);
		ran++;
	}
	printf("done: %zu cases\n", ran);
	return 0;
}
