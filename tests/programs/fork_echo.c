/*
 * fork_echo.c: an echo server for the fork tests (tests/tests/fork.rs).
 *
 *     fork_echo PORT fork|inline
 *
 * Listens on 0.0.0.0:PORT. `fork`: each accepted connection is served by
 * a child of fork, and the parent closes its copy at once (PostgreSQL's
 * postmaster, inetd, Apache prefork). `inline`: the parent serves every
 * connection itself, in one poll loop. Echoes whatever it reads until the
 * peer ends the stream. Prints "echo ready" once listening.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX 256

/* Echoes one read's worth; 0 at the end of the stream or an error. */
static int echo_once(int fd)
{
	char buf[65536];
	ssize_t n = read(fd, buf, sizeof buf);
	if (n <= 0)
		return 0;
	for (ssize_t off = 0; off < n;) {
		ssize_t w = write(fd, buf + off, n - off);
		if (w <= 0)
			return 0;
		off += w;
	}
	return 1;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: %s PORT fork|inline\n", argv[0]);
		return 2;
	}
	int forking = strcmp(argv[2], "fork") == 0, one = 1;
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[1])) };
	int l = socket(AF_INET, SOCK_STREAM, 0);
	signal(SIGCHLD, SIG_IGN); /* children reaped by the kernel */
	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (bind(l, (struct sockaddr *)&a, sizeof a) < 0 || listen(l, 128) < 0) {
		perror("listen");
		return 1;
	}
	printf("echo ready\n");
	fflush(stdout);
	struct pollfd p[MAX];
	int n = 1;
	p[0] = (struct pollfd){ l, POLLIN, 0 };
	for (;;) {
		if (poll(p, n, -1) < 0) {
			if (errno == EINTR)
				continue;
			perror("poll");
			return 1;
		}
		if (p[0].revents & POLLIN) {
			int c = accept(l, NULL, NULL);
			if (c >= 0) {
				setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
				if (forking) {
					pid_t pid = fork();
					if (pid == 0) {
						close(l);
						while (echo_once(c))
							;
						_exit(0);
					}
					close(c);
				} else if (n < MAX) {
					p[n++] = (struct pollfd){ c, POLLIN, 0 };
				} else {
					close(c);
				}
			}
		}
		for (int i = 1; i < n; i++) {
			if (p[i].revents && !echo_once(p[i].fd)) {
				close(p[i].fd);
				p[i--] = p[--n];
			}
		}
	}
}
