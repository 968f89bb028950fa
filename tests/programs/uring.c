/*
 * uring.c: io_uring (liburing) on sockets, for tests/tests/uring.rs.
 *
 *     uring HOST PORT LPORT [conn]
 *
 * Listens on 0.0.0.0:LPORT, connects to the echo server at HOST:PORT with
 * a plain connect() (prints "listening"), then through io_uring: SEND
 * "ping" and RECV its echo, WRITE "pong" and READ its echo, on the
 * connection; ACCEPT on the listener; CONNECT a new socket to HOST:PORT.
 * With `conn`, only the four operations on the connection. One line per
 * operation: its name and result (a count, "fd", or the error's name),
 * and the data read. Every completion is awaited for 5 s at most: a
 * request that does not complete prints "no completion" and the program
 * exits with status 3. SIGPIPE is ignored.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <liburing.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static struct io_uring ring;

/* Submits the prepared request and prints its result as `name`. */
static int run(const char *name, char *data)
{
	struct io_uring_cqe *cqe;
	struct __kernel_timespec ts = { 5, 0 };
	int r = io_uring_submit(&ring);
	if (r != 1) {
		printf("%s submit %d\n", name, r);
		exit(2);
	}
	if (io_uring_wait_cqe_timeout(&ring, &cqe, &ts) != 0) {
		printf("%s no completion\n", name);
		fflush(stdout);
		exit(3);
	}
	r = cqe->res;
	io_uring_cqe_seen(&ring, cqe);
	if (r < 0)
		printf("%s %s\n", name, strerrorname_np(-r));
	else if (data)
		printf("%s %d %.*s\n", name, r, r, data);
	else if (!strcmp(name, "accept"))
		printf("%s fd\n", name);
	else
		printf("%s %d\n", name, r);
	fflush(stdout);
	return r;
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: %s HOST PORT LPORT [conn]\n", argv[0]);
		return 2;
	}
	int conn_only = argc > 4 && !strcmp(argv[4], "conn");
	struct sockaddr_in peer = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[2])) };
	struct sockaddr_in me = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[3])) };
	char buf[64];
	signal(SIGPIPE, SIG_IGN);
	inet_pton(AF_INET, argv[1], &peer.sin_addr);
	int l = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &(int){ 1 }, sizeof(int));
	if (bind(l, (struct sockaddr *)&me, sizeof me) < 0 || listen(l, 8) < 0) {
		perror("listen");
		return 1;
	}
	int s = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(s, (struct sockaddr *)&peer, sizeof peer) < 0) {
		perror("connect");
		return 1;
	}
	printf("listening\n");
	fflush(stdout);
	if (io_uring_queue_init(8, &ring, 0) < 0) {
		perror("io_uring_queue_init");
		return 1;
	}

	io_uring_prep_send(io_uring_get_sqe(&ring), s, "ping", 4, 0);
	run("send", NULL);
	memset(buf, 0, sizeof buf);
	io_uring_prep_recv(io_uring_get_sqe(&ring), s, buf, 4, MSG_WAITALL);
	run("recv", buf);
	io_uring_prep_write(io_uring_get_sqe(&ring), s, "pong", 4, 0);
	run("write", NULL);
	memset(buf, 0, sizeof buf);
	io_uring_prep_read(io_uring_get_sqe(&ring), s, buf, 4, 0);
	run("read", buf);
	if (!conn_only) {
		io_uring_prep_accept(io_uring_get_sqe(&ring), l, NULL, NULL, 0);
		run("accept", NULL);
		int c = socket(AF_INET, SOCK_STREAM, 0);
		io_uring_prep_connect(io_uring_get_sqe(&ring), c, (struct sockaddr *)&peer, sizeof peer);
		run("connect", NULL);
		close(c);
	}
	io_uring_queue_exit(&ring);
	close(l);
	close(s);
	printf("done\n");
	return 0;
}
