/*
 * loadgen: the small server and load generator of scripts/bench, for the
 * workloads no Debian tool covers (64-byte request/response, one bulk
 * stream, memcached's text protocol, an idle connection). One epoll loop
 * per process, no threads: it runs the same plain (on the kernel's TCP)
 * and under LD_PRELOAD=libaccel.so (on accel's stack). Built by
 * scripts/bench with `cc -O2`.
 *
 *   loadgen serve PORT             echo on PORT, sink on PORT+1, and on
 *                                  PORT+2 echo 64 bytes, then close
 *                                  (0.0.0.0)
 *   loadgen probe HOST PORT SECS   connect until one succeeds (at most SECS)
 *   loadgen rr HOST PORT CONNS SIZE SECS WARM
 *                                  CONNS connections, each with one SIZE-byte
 *                                  message in flight to an echo server,
 *                                  every byte checked
 *   loadgen mc HOST PORT CONNS SECS WARM
 *                                  memcached text protocol, one request in
 *                                  flight per connection: 1 set (32-byte
 *                                  value) per 9 gets of the keys set, every
 *                                  reply checked byte for byte
 *   loadgen conn HOST PORT CONNS SECS WARM
 *                                  new connections to PORT+2: CONNS at a
 *                                  time, each connect, one 64-byte round
 *                                  trip (checked), the server's close (so
 *                                  TIME_WAIT is the server's, as with
 *                                  HTTP's Connection: close), close
 *   loadgen bulk HOST PORT SECS    one stream to the sink for SECS; the sink
 *                                  answers the byte count at end of stream
 *   loadgen idle HOST PORT SECS    one connection, silent for SECS
 *
 * Clients print `key value` lines: requests, seconds, rps, p50_us, p99_us
 * (rr also p90_us, p999_us, max_us)
 * (round trips counted and timed after WARM seconds, until SECS more have
 * passed), or bytes, seconds, gbps; conn adds errors (connections that
 * failed and were replaced); rr and mc add all_requests (every round trip,
 * the warm-up's too: the divisor for a server's CPU time over the whole
 * run). Every loop is bounded in time; a wrong byte,
 * a lost connection or 10 s without progress exits with status 1 and a
 * line on stderr. An epoll event for a connection already closed (which
 * the kernel never reports) is counted and ignored: the server and conn
 * print `stale_events N` when there are any.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 4096
#define MAX_MSG 4096
#define MAX_SAMPLES (8u << 20)
#define STALL_NS (10ull * 1000000000ull)
#define ONCE_SIZE 64 /* what PORT+2 echoes before it closes */

static void die(const char *what) {
    fprintf(stderr, "loadgen: %s: %s\n", what, errno ? strerror(errno) : "failed");
    exit(1);
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void nonblock(int fd) {
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) die("fcntl");
}

static void nodelay(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static struct sockaddr_in addr_of(const char *host, const char *port) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(port))};
    if (inet_pton(AF_INET, host, &a.sin_addr) != 1) {
        fprintf(stderr, "loadgen: %s is not an IPv4 address\n", host);
        exit(2);
    }
    return a;
}

/* A blocking connect, retried (a refused or unreachable peer) until
 * `deadline`; -1 if none succeeded. */
static int connect_until(const struct sockaddr_in *a, uint64_t deadline) {
    for (;;) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0) die("socket");
        if (connect(fd, (const struct sockaddr *)a, sizeof *a) == 0) {
            nodelay(fd);
            return fd;
        }
        if (getenv("LOADGEN_DEBUG")) fprintf(stderr, "loadgen: connect: %s\n", strerror(errno));
        close(fd);
        if (now_ns() >= deadline) return -1;
        usleep(100000);
    }
}

/* ---------------------------------------------------------------- server */

/* An epoll event's data: a connection's slot and the generation the slot
 * had when it was registered. The kernel never reports an fd after
 * EPOLL_CTL_DEL and close(); an event whose generation is not its slot's
 * current one (the connection it was for has closed) is counted as a
 * stale event, printed, and ignored rather than acted on. */
#define TAG(slot, gen) ((uint64_t)(gen) << 32 | (uint32_t)(slot))
#define TAG_SLOT(tag) ((uint32_t)(tag))
#define TAG_GEN(tag) ((uint32_t)((tag) >> 32))
#define MAX_SERVED (4 * MAX_CONNS) /* connections open at once */
#define LISTENERS 3

struct sconn {
    int fd;            /* -1: the slot is free */
    uint32_t gen;      /* bumped at every close */
    int sink;          /* counts and discards; else echoes */
    int once;          /* echo: closes once ONCE_SIZE bytes are echoed */
    uint64_t count;    /* sink, once: bytes received */
    char *pending;     /* echo: bytes not yet written back */
    size_t plen, poff;
};

static struct sconn served[MAX_SERVED];
static uint64_t stale_events;

static void sclose(int ep, struct sconn *c) {
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c->pending);
    c->pending = NULL;
    c->plen = c->poff = 0;
    c->fd = -1;
    c->gen++;
}

/* Counts an event for a connection already closed; prints the count at
 * 1, 2, 4, 8, ... (scripts/bench reads the last `stale_events N` line). */
static void stale(uint32_t events) {
    stale_events++;
    if ((stale_events & (stale_events - 1)) == 0) {
        fprintf(stderr, "loadgen: an event (0x%x) for a connection already closed\n", events);
        printf("stale_events %llu\n", (unsigned long long)stale_events);
    }
}

static int listener(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (fd < 0) die("socket");
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0) die("bind");
    if (listen(fd, 1024) < 0) die("listen");
    nonblock(fd);
    return fd;
}

/* Echo: writes back what is pending; 0 when all is written, 1 when the
 * socket is full, -1 on error. */
static int flush(struct sconn *c) {
    while (c->poff < c->plen) {
        ssize_t n = write(c->fd, c->pending + c->poff, c->plen - c->poff);
        if (n < 0) return errno == EAGAIN ? 1 : -1;
        c->poff += (size_t)n;
    }
    c->plen = c->poff = 0;
    return 0;
}

/* Watches `c` (slot `slot`) for `events`. */
static void watch(int ep, int op, struct sconn *c, uint32_t slot, uint32_t events) {
    struct epoll_event ev = {.events = events, .data.u64 = TAG(slot, c->gen)};
    if (epoll_ctl(ep, op, c->fd, &ev) < 0) die("epoll_ctl");
}

static _Noreturn void serve(int port) {
    static char buf[1 << 16];
    int ep = epoll_create1(0);
    /* The listeners: echo, sink, echo once; tagged MAX_SERVED + i. */
    int lfds[LISTENERS];
    for (int i = 0; i < LISTENERS; i++) {
        lfds[i] = listener(port + i);
        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = TAG(MAX_SERVED + i, 0)};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, lfds[i], &ev) < 0) die("epoll_ctl");
    }
    for (uint32_t i = 0; i < MAX_SERVED; i++) served[i].fd = -1;
    uint32_t next_free = 0; /* where the search for a free slot starts */
    signal(SIGPIPE, SIG_IGN);
    printf("serving %d %d %d\n", port, port + 1, port + 2);
    fflush(stdout);
    for (;;) {
        struct epoll_event evs[256];
        int n = epoll_wait(ep, evs, 256, -1);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) die("epoll_wait");
        for (int i = 0; i < n; i++) {
            uint32_t slot = TAG_SLOT(evs[i].data.u64);
            if (slot >= MAX_SERVED) {
                int which = (int)(slot - MAX_SERVED), fd;
                while ((fd = accept4(lfds[which], NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    uint32_t k = 0;
                    while (k < MAX_SERVED && served[(next_free + k) % MAX_SERVED].fd >= 0) k++;
                    if (k == MAX_SERVED) {
                        errno = 0;
                        die("more than MAX_SERVED connections at once");
                    }
                    uint32_t s = (next_free + k) % MAX_SERVED;
                    next_free = (s + 1) % MAX_SERVED;
                    struct sconn *c = &served[s];
                    c->fd = fd;
                    c->sink = which == 1;
                    c->once = which == 2;
                    c->count = 0;
                    nodelay(fd);
                    watch(ep, EPOLL_CTL_ADD, c, s, EPOLLIN);
                }
                continue;
            }
            struct sconn *c = &served[slot];
            if (c->fd < 0 || c->gen != TAG_GEN(evs[i].data.u64)) {
                stale(evs[i].events);
                continue;
            }
            int dead = 0;
            if (c->plen) { /* EPOLLOUT: finish the echo, then read again */
                int r = flush(c);
                if (r < 0) dead = 1;
                if (r == 0 && c->once && c->count >= ONCE_SIZE) dead = 1;
                if (r == 0 && !dead) watch(ep, EPOLL_CTL_MOD, c, slot, EPOLLIN);
                if (r != 0 || dead) {
                    if (dead) sclose(ep, c);
                    continue;
                }
            }
            for (int rounds = 0; rounds < 16 && !dead; rounds++) {
                ssize_t got = read(c->fd, buf, sizeof buf);
                if (got < 0 && errno == EAGAIN) break;
                if (got <= 0) {
                    if (got == 0 && c->sink) {
                        /* End of stream: answer the count (8 bytes fit). */
                        ssize_t w = write(c->fd, &c->count, sizeof c->count);
                        (void)w;
                    }
                    dead = 1;
                    break;
                }
                c->count += (uint64_t)got;
                if (c->sink) continue;
                c->pending = realloc(c->pending, (size_t)got);
                if (!c->pending) die("realloc");
                memcpy(c->pending, buf, (size_t)got);
                c->plen = (size_t)got;
                c->poff = 0;
                int r = flush(c);
                if (r < 0 || (r == 0 && c->once && c->count >= ONCE_SIZE)) dead = 1;
                if (r == 1) {
                    watch(ep, EPOLL_CTL_MOD, c, slot, EPOLLOUT);
                    break;
                }
            }
            if (dead) sclose(ep, c);
        }
    }
}

/* --------------------------------------------------- request/response */

struct cconn {
    int fd;
    uint64_t sent_at;
    uint64_t op;          /* requests sent on this connection */
    size_t got;           /* bytes of the reply received */
    const char *expect;   /* the reply, byte for byte */
    size_t expect_len;
    char req[MAX_MSG];
    char reply[MAX_MSG];
    size_t req_len;
};

enum mode { RR, MC };

struct load {
    enum mode mode;
    int size;     /* RR: message size */
    char mc_value[33];
    char mc_stored[16];
};

/* Makes connection `i`'s next request and the reply it expects. */
static void next_request(struct load *l, struct cconn *c, int i) {
    if (l->mode == RR) {
        /* A message of `size` bytes that differs per round and connection. */
        for (int k = 0; k < l->size; k++) c->req[k] = (char)('a' + (c->op + (uint64_t)k + (uint64_t)i) % 26);
        c->req_len = (size_t)l->size;
        c->expect = c->req;
        c->expect_len = c->req_len;
    } else {
        /* Keys k<conn>_<slot>: slot 0 is set, slots 1..9 read it back. */
        int slot = (int)(c->op % 10);
        if (slot == 0) {
            c->req_len = (size_t)snprintf(c->req, MAX_MSG, "set k%05d 0 0 32\r\n%s\r\n", i, l->mc_value);
            c->expect = "STORED\r\n";
            c->expect_len = 8;
        } else {
            c->req_len = (size_t)snprintf(c->req, MAX_MSG, "get k%05d\r\n", i);
            c->expect_len = (size_t)snprintf(c->reply, MAX_MSG, "VALUE k%05d 0 32\r\n%s\r\nEND\r\n", i,
                                             l->mc_value);
            c->expect = c->reply;
        }
    }
    c->got = 0;
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static int send_all(int fd, const char *p, size_t n) {
    /* The request is small: the socket takes it whole, or we wait briefly. */
    uint64_t deadline = now_ns() + STALL_NS;
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EAGAIN) {
            if (now_ns() > deadline) return -1;
            continue;
        }
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int request_response(struct load *l, const char *host, const char *port, int conns, double secs,
                            double warm) {
    struct sockaddr_in a = addr_of(host, port);
    if (conns < 1 || conns > MAX_CONNS) {
        fprintf(stderr, "loadgen: 1 to %d connections\n", MAX_CONNS);
        return 2;
    }
    memset(l->mc_value, 'v', 32);
    l->mc_value[32] = 0;
    struct cconn *cs = calloc((size_t)conns, sizeof *cs);
    uint32_t *samples = malloc(MAX_SAMPLES * sizeof *samples);
    if (!cs || !samples) die("malloc");
    int ep = epoll_create1(0);
    uint64_t deadline = now_ns() + 30ull * 1000000000ull;
    for (int i = 0; i < conns; i++) {
        cs[i].fd = connect_until(&a, deadline);
        if (cs[i].fd < 0) die("connect");
        nonblock(cs[i].fd);
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &ev) < 0) die("epoll_ctl");
    }
    uint64_t start = now_ns();
    uint64_t t_warm = start + (uint64_t)(warm * 1e9), t_end = t_warm + (uint64_t)(secs * 1e9);
    uint64_t measured = 0, all = 0, nsamples = 0, last_progress = start, t_first = 0, t_last = 0;
    for (int i = 0; i < conns; i++) {
        next_request(l, &cs[i], i);
        cs[i].sent_at = now_ns();
        if (send_all(cs[i].fd, cs[i].req, cs[i].req_len) < 0) die("write");
    }
    /* After t_end no request goes out; the replies still due are read
     * (for at most 2 s), so that no connection closes with data unread
     * (which would reset it, and servers log that). */
    int outstanding = conns;
    while (outstanding > 0) {
        struct epoll_event evs[256];
        int n = epoll_wait(ep, evs, 256, 100);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) die("epoll_wait");
        uint64_t t = now_ns();
        if (t > t_end + 2000000000ull) break;
        if (t - last_progress > STALL_NS) {
            errno = 0;
            die("no reply for 10 s");
        }
        for (int e = 0; e < n; e++) {
            int i = (int)evs[e].data.u32;
            struct cconn *c = &cs[i];
            char buf[MAX_MSG];
            ssize_t got = read(c->fd, buf, c->expect_len - c->got);
            if (got < 0 && errno == EAGAIN) continue;
            if (got <= 0) {
                if (got == 0) errno = ECONNRESET;
                die("read");
            }
            if (memcmp(buf, c->expect + c->got, (size_t)got) != 0) {
                fprintf(stderr, "loadgen: connection %d, request %llu: wrong reply\n", i,
                        (unsigned long long)c->op);
                exit(1);
            }
            c->got += (size_t)got;
            if (c->got < c->expect_len) continue;
            t = now_ns();
            last_progress = t;
            all++;
            if (c->sent_at >= t_warm && t <= t_end) {
                if (!t_first) t_first = c->sent_at;
                t_last = t;
                measured++;
                if (nsamples < MAX_SAMPLES) {
                    uint64_t d = t - c->sent_at;
                    samples[nsamples++] = d > UINT32_MAX ? UINT32_MAX : (uint32_t)d;
                }
            }
            if (t > t_end) {
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                outstanding--;
                continue;
            }
            c->op++;
            next_request(l, c, i);
            c->sent_at = t;
            if (send_all(c->fd, c->req, c->req_len) < 0) die("write");
        }
    }
    if (!nsamples) {
        errno = 0;
        die("no round trip was measured");
    }
    qsort(samples, nsamples, sizeof *samples, cmp_u32);
    double elapsed = (double)(t_last - t_first) / 1e9;
    printf("requests %llu\nseconds %.3f\nrps %.1f\np50_us %.2f\np99_us %.2f\nall_requests %llu\n",
           (unsigned long long)measured, elapsed, elapsed > 0 ? (double)measured / elapsed : 0.0,
           samples[nsamples / 2] / 1e3, samples[(uint64_t)(nsamples * 0.99)] / 1e3, (unsigned long long)all);
    printf("p90_us %.2f\np999_us %.2f\nmax_us %.2f\n", samples[(uint64_t)(nsamples * 0.9)] / 1e3,
           samples[(uint64_t)(nsamples * 0.999)] / 1e3, samples[nsamples - 1] / 1e3);
    for (int i = 0; i < conns; i++) close(cs[i].fd);
    return 0;
}

/* ------------------------------------------------------ new connections */

struct nconn {
    int fd;          /* -1: the slot is done */
    uint32_t gen;    /* bumped at every close (see TAG) */
    int replying;    /* connected, the message sent: reading the echo */
    uint64_t started;
    size_t got;
};

/* Starts slot `i`'s next connection (non-blocking connect, then EPOLLOUT). */
static void conn_start(int ep, struct nconn *c, int i, const struct sockaddr_in *a) {
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (c->fd < 0) die("socket");
    nodelay(c->fd);
    c->replying = 0;
    c->got = 0;
    c->started = now_ns();
    if (connect(c->fd, (const struct sockaddr *)a, sizeof *a) < 0 && errno != EINPROGRESS) die("connect");
    struct epoll_event ev = {.events = EPOLLOUT, .data.u64 = TAG(i, c->gen)};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) die("epoll_ctl");
}

static void conn_end(int ep, struct nconn *c) {
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    c->gen++;
}

/* `conns` connections at a time to PORT+2 (echo 64 bytes, then close),
 * each a new one: connect, the 64-byte round trip, the server's FIN, close.
 * A connection that fails (refused, reset, a short echo) is counted in
 * `errors` and replaced. */
static int connections(const char *host, const char *port, int conns, double secs, double warm) {
    struct sockaddr_in a = addr_of(host, port);
    a.sin_port = htons((uint16_t)(ntohs(a.sin_port) + 2));
    if (conns < 1 || conns > MAX_CONNS) {
        fprintf(stderr, "loadgen: 1 to %d connections\n", MAX_CONNS);
        return 2;
    }
    char msg[ONCE_SIZE];
    for (int k = 0; k < ONCE_SIZE; k++) msg[k] = (char)('A' + k % 26);
    struct nconn *cs = calloc((size_t)conns, sizeof *cs);
    uint32_t *samples = malloc(MAX_SAMPLES * sizeof *samples);
    if (!cs || !samples) die("malloc");
    signal(SIGPIPE, SIG_IGN);
    int ep = epoll_create1(0);
    /* The first connection waits for the server like the other modes. */
    int first = connect_until(&a, now_ns() + 30ull * 1000000000ull);
    if (first < 0) die("connect");
    close(first);
    uint64_t start = now_ns();
    uint64_t t_warm = start + (uint64_t)(warm * 1e9), t_end = t_warm + (uint64_t)(secs * 1e9);
    uint64_t measured = 0, nsamples = 0, errors = 0, last_progress = start, t_first = 0, t_last = 0;
    for (int i = 0; i < conns; i++) conn_start(ep, &cs[i], i, &a);
    int outstanding = conns;
    while (outstanding > 0) {
        struct epoll_event evs[256];
        int n = epoll_wait(ep, evs, 256, 100);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) die("epoll_wait");
        uint64_t t = now_ns();
        if (t > t_end + 2000000000ull) break;
        if (t - last_progress > STALL_NS) {
            errno = 0;
            die("no connection completed for 10 s");
        }
        for (int e = 0; e < n; e++) {
            int i = (int)TAG_SLOT(evs[e].data.u64);
            struct nconn *c = &cs[i];
            if (c->fd < 0 || c->gen != TAG_GEN(evs[e].data.u64)) {
                stale(evs[e].events);
                continue;
            }
            int failed = 0, done = 0;
            if (!c->replying) {
                int err = 0;
                socklen_t len = sizeof err;
                if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
                if (err == 0 && (evs[e].events & (EPOLLERR | EPOLLHUP))) err = ECONNRESET;
                if (err) {
                    if (getenv("LOADGEN_DEBUG")) fprintf(stderr, "loadgen: connect: %s\n", strerror(err));
                    failed = 1;
                } else if (send_all(c->fd, msg, sizeof msg) < 0) {
                    failed = 1;
                } else {
                    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = TAG(i, c->gen)};
                    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0) die("epoll_ctl");
                    c->replying = 1;
                }
            } else {
                char buf[ONCE_SIZE + 1];
                ssize_t got = read(c->fd, buf, sizeof buf);
                if (got < 0 && errno == EAGAIN) continue;
                if (got > 0 && (c->got + (size_t)got > ONCE_SIZE || memcmp(buf, msg + c->got, (size_t)got))) {
                    fprintf(stderr, "loadgen: connection %d: wrong echo\n", i);
                    exit(1);
                }
                if (got > 0) c->got += (size_t)got;
                if (got == 0 && c->got == ONCE_SIZE) done = 1;
                if (got < 0 || (got == 0 && !done)) failed = 1;
            }
            if (!failed && !done) continue;
            conn_end(ep, c);
            t = now_ns();
            if (done) {
                last_progress = t;
                if (c->started >= t_warm && t <= t_end) {
                    if (!t_first) t_first = c->started;
                    t_last = t;
                    measured++;
                    if (nsamples < MAX_SAMPLES) {
                        uint64_t d = t - c->started;
                        samples[nsamples++] = d > UINT32_MAX ? UINT32_MAX : (uint32_t)d;
                    }
                }
            } else {
                errors++;
            }
            if (t > t_end) {
                outstanding--;
                continue;
            }
            conn_start(ep, c, i, &a);
        }
    }
    for (int i = 0; i < conns; i++)
        if (cs[i].fd >= 0) close(cs[i].fd);
    if (!nsamples) {
        errno = 0;
        die("no connection was measured");
    }
    qsort(samples, nsamples, sizeof *samples, cmp_u32);
    double elapsed = (double)(t_last - t_first) / 1e9;
    printf("requests %llu\nerrors %llu\nstale_events %llu\nseconds %.3f\nrps %.1f\np50_us %.2f\np99_us %.2f\n",
           (unsigned long long)measured, (unsigned long long)errors, (unsigned long long)stale_events, elapsed,
           elapsed > 0 ? (double)measured / elapsed : 0.0, samples[nsamples / 2] / 1e3,
           samples[(uint64_t)(nsamples * 0.99)] / 1e3);
    return 0;
}

/* ---------------------------------------------------------- bulk, idle */

static int bulk(const char *host, const char *port, double secs) {
    static char buf[1 << 16];
    struct sockaddr_in a = addr_of(host, port);
    for (size_t i = 0; i < sizeof buf; i++) buf[i] = (char)(i % 251);
    signal(SIGPIPE, SIG_IGN);
    int fd = connect_until(&a, now_ns() + 30ull * 1000000000ull);
    if (fd < 0) die("connect");
    uint64_t start = now_ns(), end = start + (uint64_t)(secs * 1e9), sent = 0;
    while (now_ns() < end) {
        ssize_t w = write(fd, buf, sizeof buf);
        if (w <= 0) die("write");
        sent += (uint64_t)w;
    }
    shutdown(fd, SHUT_WR);
    uint64_t count = 0;
    size_t have = 0;
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    while (have < sizeof count) {
        ssize_t r = read(fd, (char *)&count + have, sizeof count - have);
        if (r <= 0) die("the sink's count");
        have += (size_t)r;
    }
    double elapsed = (double)(now_ns() - start) / 1e9;
    if (count != sent) {
        fprintf(stderr, "loadgen: sent %llu bytes, the sink counted %llu\n", (unsigned long long)sent,
                (unsigned long long)count);
        return 1;
    }
    printf("bytes %llu\nseconds %.3f\ngbps %.3f\n", (unsigned long long)sent, elapsed, sent * 8 / elapsed / 1e9);
    close(fd);
    return 0;
}

static int idle(const char *host, const char *port, double secs) {
    struct sockaddr_in a = addr_of(host, port);
    int fd = connect_until(&a, now_ns() + 30ull * 1000000000ull);
    if (fd < 0) die("connect");
    printf("connected\n");
    fflush(stdout);
    struct timespec ts = {.tv_sec = (time_t)secs, .tv_nsec = (long)((secs - (double)(time_t)secs) * 1e9)};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
    close(fd);
    return 0;
}

static int probe(const char *host, const char *port, double secs) {
    struct sockaddr_in a = addr_of(host, port);
    int fd = connect_until(&a, now_ns() + (uint64_t)(secs * 1e9));
    if (fd < 0) return 1;
    close(fd);
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *m = argc > 1 ? argv[1] : "";
    if (!strcmp(m, "serve") && argc == 3) serve(atoi(argv[2]));
    if (!strcmp(m, "probe") && argc == 5) return probe(argv[2], argv[3], atof(argv[4]));
    if (!strcmp(m, "rr") && argc == 8) {
        struct load l = {.mode = RR, .size = atoi(argv[5])};
        if (l.size < 1 || l.size > MAX_MSG) {
            fprintf(stderr, "loadgen: size 1 to %d\n", MAX_MSG);
            return 2;
        }
        return request_response(&l, argv[2], argv[3], atoi(argv[4]), atof(argv[6]), atof(argv[7]));
    }
    if (!strcmp(m, "mc") && argc == 7) {
        struct load l = {.mode = MC};
        return request_response(&l, argv[2], argv[3], atoi(argv[4]), atof(argv[5]), atof(argv[6]));
    }
    if (!strcmp(m, "conn") && argc == 7)
        return connections(argv[2], argv[3], atoi(argv[4]), atof(argv[5]), atof(argv[6]));
    if (!strcmp(m, "bulk") && argc == 5) return bulk(argv[2], argv[3], atof(argv[4]));
    if (!strcmp(m, "idle") && argc == 5) return idle(argv[2], argv[3], atof(argv[4]));
    fprintf(stderr,
            "usage: loadgen serve PORT | probe HOST PORT SECS | rr HOST PORT CONNS SIZE SECS WARM\n"
            "       | mc HOST PORT CONNS SECS WARM | conn HOST PORT CONNS SECS WARM\n"
            "       | bulk HOST PORT SECS | idle HOST PORT SECS\n");
    return 2;
}
