/*
 * crash.c: a program that dies with a connection open, without closing it
 * (tests/tests/exit.rs). It connects to 198.18.0.1:PORT, waits for the
 * peer's first byte, sleeps 100 ms, then dies:
 *
 *     crash PORT kill    raise(SIGKILL)
 *     crash PORT segv    a write through a null pointer (SIGSEGV)
 *     crash PORT abort   abort() (SIGABRT)
 *     crash PORT _exit   _exit(3): no exit handlers run
 *
 * Prints "connected" first.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int *volatile nothing;

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[1])) };
	inet_pton(AF_INET, "198.18.0.1", &a.sin_addr);
	if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof a) < 0) {
		perror("connect");
		return 1;
	}
	printf("connected\n");
	fflush(stdout);
	char c;
	if (read(s, &c, 1) != 1) {
		perror("read");
		return 1;
	}
	usleep(100000);
	if (strcmp(argv[2], "kill") == 0)
		raise(SIGKILL);
	else if (strcmp(argv[2], "segv") == 0)
		*nothing = 1;
	else if (strcmp(argv[2], "abort") == 0)
		abort();
	else if (strcmp(argv[2], "_exit") == 0)
		_exit(3);
	return 2;
}
