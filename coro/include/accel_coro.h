/* accel_coro.h: the C API of accel's coroutine runtime (libaccel_coro.a).
 *
 * Conventions
 *  - Waiting calls return 0 (or a count) on success and a negative errno on
 *    failure: -EINTR (a signal the coroutine subscribed to fired),
 *    -ETIMEDOUT, -ECANCELED (the task was cancelled), -EPIPE (channel
 *    closed), -EINVAL (NULL object).
 *  - accel_wio_* behave like the libc calls they replace: -1 and errno.
 *    Inside a coroutine a pool thread performs the call while the coroutine
 *    is parked; outside one they call libc directly.
 *  - Objects are opaque; *_new creates, *_free releases.
 *  - Coroutines never move between threads; call these functions from the
 *    thread running accel_run (channels, signals and locks may be shared
 *    with other threads).
 *
 * Link: -laccel_coro -lpthread -ldl -lm
 */
#ifndef ACCEL_CORO_H
#define ACCEL_CORO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/stat.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct CTask accel_task_t;
typedef struct CChan accel_chan_t;
typedef struct CLock accel_lock_t;
typedef struct CSignal accel_signal_t;
typedef struct CSub accel_sub_t;

typedef void *(*accel_fn)(void *arg);

/* Creates a worker on the calling thread, runs fn(arg) as its first
 * coroutine and drives the worker until every coroutine has ended.
 * *result (if not NULL) receives fn's return value. 0 or -errno
 * (-EBUSY: this thread already runs a worker). */
int accel_run(accel_fn fn, void *arg, void **result);

/* Spawns a coroutine on the calling thread's worker. NULL and errno on
 * failure (no worker, no memory for a stack). */
accel_task_t *accel_spawn(const char *name, accel_fn fn, void *arg);
/* Waits for the task to end; frees t. 0, or -ECANCELED if it could not
 * finish (panicked or its worker shut down). Not interruptible. */
int accel_join(accel_task_t *t, void **result);
/* Makes t's waiting calls return -ECANCELED from now on. */
void accel_cancel(const accel_task_t *t);
/* Lets t run on unobserved; frees the handle. */
void accel_detach(accel_task_t *t);

void accel_yield(void);
/* Sleeps; 0, -EINTR or -ECANCELED. */
int accel_sleep_ns(uint64_t ns);
/* Waits until fd is ready for events (EPOLLIN, EPOLLOUT...); timeout_ns < 0
 * waits forever. Returns the ready EPOLL* bits or -ETIMEDOUT/-EINTR/... */
int accel_wait_fd(int fd, uint32_t events, int64_t timeout_ns);

/* Channels of pointers; cap 0 makes a rendezvous channel (send returns once
 * the value is received). */
accel_chan_t *accel_chan_new(size_t cap);
int accel_chan_send(const accel_chan_t *c, void *msg);
int accel_chan_recv(const accel_chan_t *c, void **msg);
/* No more sends; receivers drain what is queued, then get -EPIPE. */
void accel_chan_close(const accel_chan_t *c);
void accel_chan_free(accel_chan_t *c);

/* A FIFO lock that may be held across suspensions. */
accel_lock_t *accel_lock_new(void);
int accel_lock(const accel_lock_t *l); /* 0, -EINTR or -ECANCELED */
void accel_unlock(const accel_lock_t *l);
void accel_lock_free(accel_lock_t *l);

/* Interruption: firing wakes every subscriber's waiting call with -EINTR. */
accel_signal_t *accel_signal_new(void);
accel_sub_t *accel_signal_subscribe(const accel_signal_t *s); /* NULL outside a coroutine */
void accel_signal_unsubscribe(accel_sub_t *sub);
void accel_signal_fire(const accel_signal_t *s);
void accel_signal_free(accel_signal_t *s);

/* Blocking calls through the wio thread pool. */
int accel_wio_open(const char *path, int flags, mode_t mode);
int accel_wio_close(int fd);
ssize_t accel_wio_read(int fd, void *buf, size_t n);
ssize_t accel_wio_write(int fd, const void *buf, size_t n);
ssize_t accel_wio_pread(int fd, void *buf, size_t n, off_t off);
ssize_t accel_wio_pwrite(int fd, const void *buf, size_t n, off_t off);
int accel_wio_fsync(int fd);
int accel_wio_fstat(int fd, struct stat *st);

#ifdef __cplusplus
}
#endif
#endif /* ACCEL_CORO_H */
