/*
 * exit_close.c: a program that exits with connections open, to see what
 * its peer sees (tests/tests/exit.rs). It connects to 198.18.0.1:PORT and:
 *
 *     exit_close PORT send N     writes N bytes (a pattern) and exits
 *                                (exit(0), no close): the peer must get
 *                                all N bytes, then the end of the stream
 *     exit_close PORT unread     waits until the peer's bytes have come
 *                                in, reads none and exits: the peer must
 *                                see a reset
 *
 * Prints "connected" and "exiting"; exits 1 on a failed call.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

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
	if (strcmp(argv[2], "send") == 0 && argc > 3) {
		long n = atol(argv[3]), done = 0;
		static char buf[65536];
		while (done < n) {
			long k = n - done < (long)sizeof buf ? n - done : (long)sizeof buf;
			for (long i = 0; i < k; i++)
				buf[i] = (char)((done + i) * 7 + 3);
			ssize_t w = write(s, buf, k);
			if (w <= 0) {
				perror("write");
				return 1;
			}
			done += w;
		}
	} else if (strcmp(argv[2], "unread") == 0) {
		int q = 0;
		for (int i = 0; i < 500 && q == 0; i++) {
			struct pollfd p = { s, POLLIN, 0 };
			poll(&p, 1, 10);
			ioctl(s, FIONREAD, &q);
		}
		if (q == 0) {
			fprintf(stderr, "no data from the peer\n");
			return 1;
		}
	} else {
		return 2;
	}
	printf("exiting\n");
	fflush(stdout);
	exit(0);
}
