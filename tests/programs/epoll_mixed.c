/*
 * epoll_mixed.c: one epoll set holding an accelerated TCP socket, both
 * ends of a pipe, an eventfd and a loopback kernel TCP socket; every
 * event it reports must be the kernel's.
 *
 * The accelerated socket is a connection to the echo service at
 * 198.18.0.1:7001 (tests/programs/peer.py in the peer namespace); the
 * loopback socket is a connection to a listener of our own on 127.0.0.1.
 * Each phase makes a state (data written, data drained, ends closed),
 * waits with poll() until every fd has reached it (bounded, 5 s), then
 * calls epoll_wait(0) and compares the whole event list with what the
 * kernel reports in that state (the table `want` of each phase). It
 * prints one line per phase, `phase NAME: got [tag:EVENTS]...`, and
 * `MISMATCH` lines; it exits 0 only if every phase matched.
 *
 * Tags: 1 accelerated socket (IN|OUT|RDHUP), 2 pipe read end (IN),
 * 3 eventfd (IN), 4 loopback socket (IN|RDHUP), 5 pipe write end
 * (OUT, edge-triggered), 6 the same accelerated socket in a second epoll
 * set (IN, edge-triggered), 7 an accelerated listener on the wildcard (IN,
 * never connected to: never reported).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int failures;

static const char *evs(uint32_t e, char *buf)
{
	static const struct { uint32_t bit; const char *name; } names[] = {
		{ EPOLLIN, "IN" }, { EPOLLPRI, "PRI" }, { EPOLLOUT, "OUT" }, { EPOLLERR, "ERR" },
		{ EPOLLHUP, "HUP" }, { EPOLLRDHUP, "RDHUP" },
	};
	buf[0] = 0;
	for (size_t k = 0; k < sizeof names / sizeof names[0]; k++)
		if (e & names[k].bit)
			sprintf(buf + strlen(buf), "%s%s", buf[0] ? "|" : "", names[k].name);
	if (e & ~(EPOLLIN | EPOLLPRI | EPOLLOUT | EPOLLERR | EPOLLHUP | EPOLLRDHUP))
		sprintf(buf + strlen(buf), "|0x%x", e);
	return buf;
}

/* epoll_wait(ep, 0) must report exactly `want` (tag, events) pairs. */
static void phase(const char *name, int ep, const uint32_t want[][2], int n_want)
{
	struct epoll_event e[16];
	char got[512] = "", wanted[512] = "", b[64];
	int n = epoll_wait(ep, e, 16, 0);
	if (n < 0) {
		printf("phase %s: epoll_wait failed: %s\nMISMATCH\n", name, strerror(errno));
		failures++;
		return;
	}
	for (int i = 0; i < n; i++)
		for (int j = i + 1; j < n; j++)
			if (e[j].data.u32 < e[i].data.u32) {
				struct epoll_event t = e[i];
				e[i] = e[j];
				e[j] = t;
			}
	for (int i = 0; i < n; i++)
		sprintf(got + strlen(got), " [%u:%s]", e[i].data.u32, evs(e[i].events, b));
	for (int i = 0; i < n_want; i++)
		if (want[i][0] != 0) /* NOTHING */
			sprintf(wanted + strlen(wanted), " [%u:%s]", want[i][0], evs(want[i][1], b));
	printf("phase %s: got%s\n", name, n ? got : " nothing");
	if (strcmp(got, wanted) != 0) {
		printf("MISMATCH in phase %s: the kernel reports%s\n", name, wanted[0] ? wanted : " nothing");
		failures++;
	}
	fflush(stdout);
}

/* Waits until poll reports all of `want` on fd (5 s). */
static void await(int fd, short ev, short want, const char *what)
{
	struct timespec t0, t;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		struct pollfd p = { fd, ev, 0 };
		if (poll(&p, 1, 100) > 0 && (p.revents & want) == want)
			return;
		clock_gettime(CLOCK_MONOTONIC, &t);
		if (t.tv_sec - t0.tv_sec > 5) {
			printf("timed out waiting for %s\nMISMATCH\n", what);
			exit(1);
		}
		usleep(5000);
	}
}

static void add(int ep, int fd, uint32_t events, uint32_t tag)
{
	struct epoll_event e = { .events = events, .data.u32 = tag };
	if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e) < 0) {
		printf("epoll_ctl ADD tag %u: %s\n", tag, strerror(errno));
		exit(1);
	}
}

#define PHASE(name, ep, ...)                                                       \
	do {                                                                       \
		const uint32_t w_[][2] = { __VA_ARGS__ };                          \
		phase(name, ep, w_, (int)(sizeof w_ / sizeof w_[0]));              \
	} while (0)
#define NOTHING { 0, 0 }

int main(void)
{
	int p[2], efd, acc, lo_l, lo_c, lo_s, ep, ep2, wl;
	struct sockaddr_in any = { .sin_family = AF_INET };
	struct sockaddr_in echo = { .sin_family = AF_INET, .sin_port = htons(7001) };
	struct sockaddr_in lo = { .sin_family = AF_INET };
	socklen_t len = sizeof lo;
	char buf[64];
	eventfd_t v;

	inet_pton(AF_INET, "198.18.0.1", &echo.sin_addr);
	inet_pton(AF_INET, "127.0.0.1", &lo.sin_addr);
	if (pipe(p) < 0 || (efd = eventfd(0, EFD_NONBLOCK)) < 0)
		return 1;
	/* A wildcard listener, in the set first: the accelerated listener
	 * (idle, so never reported), and under the shim the call that starts
	 * the stack (a blocking connect that does is tested by diff.c's
	 * connect_starts_the_stack). */
	ep = epoll_create1(0);
	ep2 = epoll_create1(0);
	wl = socket(AF_INET, SOCK_STREAM, 0);
	if (bind(wl, (struct sockaddr *)&any, sizeof any) < 0 || listen(wl, 4) < 0)
		return 1;
	add(ep, wl, EPOLLIN, 7);
	acc = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(acc, (struct sockaddr *)&echo, sizeof echo) < 0) {
		printf("connect to the echo service: %s\n", strerror(errno));
		return 1;
	}
	lo_l = socket(AF_INET, SOCK_STREAM, 0);
	if (bind(lo_l, (struct sockaddr *)&lo, sizeof lo) < 0 || listen(lo_l, 1) < 0 ||
	    getsockname(lo_l, (struct sockaddr *)&lo, &len) < 0)
		return 1;
	lo_c = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(lo_c, (struct sockaddr *)&lo, sizeof lo) < 0 || (lo_s = accept(lo_l, NULL, NULL)) < 0)
		return 1;

	add(ep, acc, EPOLLIN | EPOLLOUT | EPOLLRDHUP, 1);
	add(ep, p[0], EPOLLIN, 2);
	add(ep, efd, EPOLLIN, 3);
	add(ep, lo_c, EPOLLIN | EPOLLRDHUP, 4);
	add(ep, p[1], EPOLLOUT | EPOLLET, 5);
	add(ep2, acc, EPOLLIN | EPOLLET, 6);

	/* Idle: only the writable ones; the edge-triggered pipe end once. */
	PHASE("idle", ep, { 1, EPOLLOUT }, { 5, EPOLLOUT });
	PHASE("idle-again", ep, { 1, EPOLLOUT });
	PHASE("idle-second-set", ep2, NOTHING);

	/* Everything readable. */
	if (write(p[1], "x", 1) != 1 || eventfd_write(efd, 3) < 0 || send(lo_s, "y", 1, 0) != 1 ||
	    send(acc, "ping", 4, 0) != 4)
		return 1;
	await(acc, POLLIN, POLLIN, "the echo");
	await(lo_c, POLLIN, POLLIN, "the loopback byte");
	PHASE("readable", ep, { 1, EPOLLIN | EPOLLOUT }, { 2, EPOLLIN }, { 3, EPOLLIN }, { 4, EPOLLIN });
	PHASE("readable-level", ep, { 1, EPOLLIN | EPOLLOUT }, { 2, EPOLLIN }, { 3, EPOLLIN }, { 4, EPOLLIN });
	PHASE("readable-second-set", ep2, { 6, EPOLLIN });
	PHASE("readable-second-set-edge", ep2, NOTHING);

	/* Drained. */
	if (read(p[0], buf, sizeof buf) != 1 || eventfd_read(efd, &v) < 0 || v != 3 ||
	    recv(lo_c, buf, sizeof buf, 0) != 1 || recv(acc, buf, sizeof buf, 0) != 4)
		return 1;
	PHASE("drained", ep, { 1, EPOLLOUT });

	/* Ends closed: our write side of the connection (the echo service then
	 * closes its side), the pipe's write end, the loopback peer. */
	if (shutdown(acc, SHUT_WR) < 0 || close(p[1]) < 0 || close(lo_s) < 0)
		return 1;
	await(acc, POLLIN | POLLRDHUP, POLLIN | POLLRDHUP, "the echo service's FIN");
	await(lo_c, POLLIN | POLLRDHUP, POLLIN | POLLRDHUP, "the loopback FIN");
	await(p[0], POLLIN, POLLHUP, "the pipe's hang-up");
	PHASE("closed", ep, { 1, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLHUP }, { 2, EPOLLHUP },
	      { 4, EPOLLIN | EPOLLRDHUP });
	PHASE("closed-second-set", ep2, { 6, EPOLLIN | EPOLLHUP });

	/* Removed and closed: nothing more. */
	if (epoll_ctl(ep, EPOLL_CTL_DEL, acc, NULL) < 0 || close(acc) < 0 || close(p[0]) < 0 || close(lo_c) < 0 ||
	    close(wl) < 0)
		return 1;
	PHASE("empty", ep, NOTHING);
	PHASE("empty-second-set", ep2, NOTHING);

	printf("%s\n", failures ? "FAILED" : "all phases as the kernel");
	return failures ? 1 : 0;
}
