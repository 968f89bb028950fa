/* A library whose constructor makes intercepted calls (socket, close). Put
 * after libaccel.so in LD_PRELOAD, glibc runs its constructor before
 * libaccel.so's own: the calls arrive before the shim has started and must
 * go straight to libc. */
#include <sys/socket.h>
#include <unistd.h>

__attribute__((constructor)) static void early(void) {
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    if (s < 0 || close(s) != 0)
        _exit(99);
}
