/* Exercises every group of accel_coro.h from C. Prints "N passed, 0 failed"
 * and exits 0 when every check holds; otherwise names the failed check. */
#include "accel_coro.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

static int passed, failed;
#define CHECK(cond)                                                        \
    do {                                                                   \
        if (cond) {                                                        \
            passed++;                                                      \
        } else {                                                           \
            failed++;                                                      \
            fprintf(stderr, "FAILED %s:%d: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                  \
    } while (0)

static accel_chan_t *ping, *pong;

static void *ponger(void *arg) {
    long rounds = (long)arg;
    for (long i = 0; i < rounds; i++) {
        void *m;
        if (accel_chan_recv(ping, &m) != 0) return (void *)-1;
        if (accel_chan_send(pong, (void *)((long)m + 1)) != 0) return (void *)-1;
    }
    return (void *)rounds;
}

static accel_lock_t *lock;
static long shared;
static void *locker(void *arg) {
    (void)arg;
    for (int i = 0; i < 100; i++) {
        if (accel_lock(lock) != 0) return (void *)-1;
        long v = shared;
        accel_yield(); /* held across a suspension */
        shared = v + 1;
        accel_unlock(lock);
    }
    return NULL;
}

static accel_signal_t *sig;
static void *sleeper(void *arg) {
    (void)arg;
    accel_sub_t *sub = accel_signal_subscribe(sig);
    if (!sub) return (void *)-2;
    int r = accel_sleep_ns(3600ull * 1000000000ull);
    accel_signal_unsubscribe(sub);
    return (void *)(long)r;
}

static void *cancelled(void *arg) {
    (void)arg;
    return (void *)(long)accel_sleep_ns(3600ull * 1000000000ull);
}

static void *writer(void *arg) {
    int fd = (int)(long)arg;
    accel_sleep_ns(2000000);
    return (void *)(long)write(fd, "x", 1);
}

static void *body(void *arg) {
    (void)arg;
    /* spawn, channels, join */
    ping = accel_chan_new(0);
    pong = accel_chan_new(4);
    accel_task_t *t = accel_spawn("ponger", ponger, (void *)1000L);
    CHECK(t != NULL);
    long sum = 0, errors = 0;
    for (long i = 0; i < 1000 && errors == 0; i++) {
        void *m;
        errors += accel_chan_send(ping, (void *)i) != 0;
        errors += accel_chan_recv(pong, &m) != 0;
        sum += (long)m;
    }
    CHECK(errors == 0);
    CHECK(sum == 1000L * 999 / 2 + 1000);
    void *res;
    CHECK(accel_join(t, &res) == 0 && (long)res == 1000);
    accel_chan_close(pong);
    void *m;
    CHECK(accel_chan_recv(pong, &m) == -EPIPE);
    accel_chan_free(ping);
    accel_chan_free(pong);

    /* lock */
    shared = 0;
    lock = accel_lock_new();
    accel_task_t *a = accel_spawn("a", locker, NULL), *b = accel_spawn("b", locker, NULL);
    CHECK(accel_join(a, NULL) == 0 && accel_join(b, NULL) == 0);
    CHECK(shared == 200);
    accel_lock_free(lock);

    /* signals interrupt a sleeper */
    sig = accel_signal_new();
    t = accel_spawn("sleeper", sleeper, NULL);
    accel_yield();
    accel_signal_fire(sig);
    CHECK(accel_join(t, &res) == 0 && (long)res == -EINTR);
    accel_signal_free(sig);

    /* cancellation */
    t = accel_spawn("cancelled", cancelled, NULL);
    accel_yield();
    accel_cancel(t);
    CHECK(accel_join(t, &res) == 0 && (long)res == -ECANCELED);

    /* wait_fd with and without readiness */
    int p[2];
    CHECK(pipe(p) == 0);
    CHECK(accel_wait_fd(p[0], EPOLLIN, 1000000) == -ETIMEDOUT);
    t = accel_spawn("writer", writer, (void *)(long)p[1]);
    int ev = accel_wait_fd(p[0], EPOLLIN, -1);
    CHECK(ev > 0 && (ev & EPOLLIN));
    CHECK(accel_join(t, &res) == 0 && (long)res == 1);
    close(p[0]);
    close(p[1]);

    /* wio */
    char path[] = "/tmp/accel-capi-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    fd = accel_wio_open(path, O_RDWR | O_TRUNC, 0600);
    CHECK(fd >= 0);
    CHECK(accel_wio_pwrite(fd, "hello world", 11, 0) == 11);
    CHECK(accel_wio_fsync(fd) == 0);
    char buf[16] = {0};
    CHECK(accel_wio_pread(fd, buf, 5, 6) == 5 && memcmp(buf, "world", 5) == 0);
    struct stat st;
    CHECK(accel_wio_fstat(fd, &st) == 0 && st.st_size == 11);
    CHECK(accel_wio_close(fd) == 0);
    errno = 0;
    CHECK(accel_wio_read(-1, buf, 1) == -1 && errno == EBADF);
    CHECK(accel_wio_open("/nonexistent/accel", O_RDONLY, 0) == -1 && errno == ENOENT);
    unlink(path);
    return (void *)42L;
}

int main(void) {
    void *res = NULL;
    int r = accel_run(body, NULL, &res);
    CHECK(r == 0 && (long)res == 42);
    /* a second worker on a thread that has none yet is fine afterwards */
    CHECK(accel_run(body, NULL, &res) == 0);
    /* outside a coroutine, spawning has no worker */
    CHECK(accel_spawn("x", body, NULL) == NULL);
    CHECK(accel_signal_subscribe(NULL) == NULL);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
