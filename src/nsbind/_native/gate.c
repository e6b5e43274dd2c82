/* The start gate of a spawn: see gate.h. */
#include "gate.h"

#include <fcntl.h>
#include <string.h>

/* "/proc/self/fd/" and the decimal fd: no snprintf in the spawn child. */
static void nsb_gate_path(char *out, size_t size, int fd)
{
    static const char prefix[] = "/proc/self/fd/";
    char digits[16];
    size_t n = 0, i;
    unsigned int v = (unsigned int)fd;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v && n < sizeof(digits));
    _Static_assert(sizeof(prefix) + 16 <= 48, "the path fits the callers' buffers");
    if (size < sizeof(prefix) + n)
        n = 0;
    memcpy(out, prefix, sizeof(prefix) - 1);
    for (i = 0; i < n; i++)
        out[sizeof(prefix) - 1 + i] = digits[n - 1 - i];
    out[sizeof(prefix) - 1 + n] = 0;
}

static int nsb_gate_open(int gate_fd, int flags)
{
    char path[48];
    long fd;
    nsb_gate_path(path, sizeof(path), gate_fd);
    do {
        fd = syscall(__NR_openat, AT_FDCWD, path, flags | O_WRONLY | O_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    return (int)fd;
}

int nsb_gate_probe(int gate_fd, int *wfd)
{
    int fd = nsb_gate_open(gate_fd, O_NONBLOCK);
    *wfd = -1;
    if (fd >= 0) {
        *wfd = fd; /* already a reader: no need to wait */
        return 0;
    }
    return errno == ENXIO ? 0 : -1;
}

int nsb_gate_wait(int gate_fd, int wfd)
{
    long n;
    int fd = wfd >= 0 ? wfd : nsb_gate_open(gate_fd, 0);
    if (fd < 0)
        return -1;
    do {
        n = syscall(__NR_write, fd, "0", 1);
    } while (n < 0 && errno == EINTR);
    syscall(__NR_close, fd);
    syscall(__NR_close, gate_fd);
    return n == 1 ? 0 : -1;
}
