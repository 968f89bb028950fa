/*
 * An echo server whose threads each run their own epoll loop over their
 * own listening socket, all bound to one port with SO_REUSEPORT (the
 * shape of nginx's `reuseport` and of many multi-threaded servers: the
 * kernel spreads the connections over the listeners, each thread accepts
 * only its own).
 *
 *   reuseport_echo PORT THREADS
 *
 * Prints "reuseport ready" once every thread listens. On SIGTERM prints
 * "accepted: N0 N1 ..." (connections each thread accepted) and exits 0.
 * Any failed call prints what failed and exits 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_THREADS 16

static int port;
static atomic_long accepted[MAX_THREADS];
static atomic_int listening;

static void die(const char *what) {
    fprintf(stderr, "reuseport_echo: %s: %s\n", what, strerror(errno));
    fflush(stderr);
    _exit(1);
}

/* Writes all of buf on a blocking socket. */
static int write_all(int fd, const char *buf, size_t len) {
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

static void *serve(void *arg) {
    long me = (long)arg;
    int l = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (l < 0)
        die("socket");
    int one = 1;
    if (setsockopt(l, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0)
        die("SO_REUSEPORT");
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (bind(l, (struct sockaddr *)&a, sizeof a) < 0)
        die("bind");
    if (listen(l, 512) < 0)
        die("listen");
    int ep = epoll_create1(0);
    if (ep < 0)
        die("epoll_create1");
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = l};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, l, &ev) < 0)
        die("epoll_ctl listener");
    atomic_fetch_add(&listening, 1);
    struct epoll_event evs[64];
    char buf[16384];
    for (;;) {
        int n = epoll_wait(ep, evs, 64, -1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            die("epoll_wait");
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == l) {
                for (;;) {
                    int c = accept4(l, NULL, NULL, SOCK_CLOEXEC);
                    if (c < 0) {
                        if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED)
                            break;
                        die("accept4");
                    }
                    atomic_fetch_add(&accepted[me], 1);
                    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct epoll_event cev = {.events = EPOLLIN | EPOLLRDHUP, .data.fd = c};
                    if (epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev) < 0)
                        die("epoll_ctl connection");
                }
                continue;
            }
            ssize_t got = read(fd, buf, sizeof buf);
            if (got < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            if (got <= 0 || write_all(fd, buf, (size_t)got) < 0) {
                epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
                close(fd);
            }
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: reuseport_echo PORT THREADS\n");
        return 2;
    }
    port = atoi(argv[1]);
    int threads = atoi(argv[2]);
    if (threads < 1 || threads > MAX_THREADS) {
        fprintf(stderr, "reuseport_echo: 1 to %d threads\n", MAX_THREADS);
        return 2;
    }
    /* SIGTERM is taken by sigwait here, never by a serving thread. */
    sigset_t term;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &term, NULL);
    for (long t = 0; t < threads; t++) {
        pthread_t th;
        if (pthread_create(&th, NULL, serve, (void *)t) != 0)
            die("pthread_create");
    }
    while (atomic_load(&listening) < threads)
        usleep(1000);
    printf("reuseport ready\n");
    fflush(stdout);
    int sig;
    sigwait(&term, &sig);
    printf("accepted:");
    for (int t = 0; t < threads; t++)
        printf(" %ld", atomic_load(&accepted[t]));
    printf("\n");
    fflush(stdout);
    exit(0);
}
