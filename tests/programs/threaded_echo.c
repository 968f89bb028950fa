/*
 * threaded_echo.c: a thread-per-connection echo server in C, the twin of
 * threaded_echo.py without Python's interpreter lock (issue 11): what the
 * shim's threads cost, with nothing else serialising them.
 *
 *     threaded_echo ADDR PORT
 *
 * Listens on ADDR:PORT; the main thread accepts, and each connection gets
 * a detached thread that reads and echoes back with plain blocking calls
 * until the peer ends the stream. Prints "echo ready" once listening; runs
 * until killed, or until SIGTERM, which exits normally (status 0) once
 * every connection has ended (2 s at most), after one line:
 *
 *     served: connections=N bytes=B open=K
 *
 * N connections ended, B bytes echoed over them (each counted once it was
 * sent back), K connections still open: the server's own count of what
 * it returned, to set beside what the clients received.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static _Atomic unsigned long served, echoed, open_conns;

static void on_term(int sig)
{
	(void)sig;
	stop = 1;
}

static void *serve(void *arg)
{
	int fd = (int)(intptr_t)arg;
	char buf[65536];
	unsigned long bytes = 0;
	for (;;) {
		ssize_t n = recv(fd, buf, sizeof buf, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		for (ssize_t off = 0; off < n;) {
			ssize_t w = send(fd, buf + off, n - off, MSG_NOSIGNAL);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0)
				goto out;
			off += w;
		}
		bytes += (unsigned long)n;
	}
out:
	close(fd);
	echoed += bytes;
	served += 1;
	open_conns -= 1;
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: %s ADDR PORT\n", argv[0]);
		return 2;
	}
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_term; /* no SA_RESTART: accept ends with EINTR */
	sigaction(SIGTERM, &sa, NULL);
	int l = socket(AF_INET, SOCK_STREAM, 0);
	int one = 1;
	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2]))};
	if (l < 0 || inet_pton(AF_INET, argv[1], &a.sin_addr) != 1 ||
	    bind(l, (struct sockaddr *)&a, sizeof a) || listen(l, 1024)) {
		perror("listen");
		return 1;
	}
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	printf("echo ready\n");
	fflush(stdout);
	while (!stop) {
		int c = accept(l, NULL, NULL);
		if (c < 0) {
			if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE)
				continue;
			perror("accept");
			return 1;
		}
		pthread_t t;
		open_conns += 1;
		if (pthread_create(&t, &attr, serve, (void *)(intptr_t)c) != 0) {
			open_conns -= 1;
			close(c);
		}
	}
	/* The connections' threads see their peers' ends: 2 s for the last. */
	for (int i = 0; i < 200 && open_conns > 0; i++)
		usleep(10000);
	printf("served: connections=%lu bytes=%lu open=%lu\n", (unsigned long)served,
	       (unsigned long)echoed, (unsigned long)open_conns);
	return 0;
}
