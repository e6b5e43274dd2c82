/* The start gate of a spawn: see gate.h. */
#include "gate.h"
#include "rawsys.h"

#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

/* The FIFO behind gate_fd opened for writing (flags: O_NONBLOCK or 0): the fd,
 * or -errno (rawsys.h: errno untouched). */
static long nsb_gate_open(int gate_fd, int flags)
{
    char path[48];
    long fd;
    nsb_gate_path(path, sizeof(path), gate_fd);
    do {
        fd = nsb_raw3(__NR_openat, AT_FDCWD, (long)path, flags | O_WRONLY | O_CLOEXEC);
    } while (fd == -EINTR);
    return fd;
}

/* Whether the exec will find its program: the first candidate that is a regular
 * file this uid may execute, as runc's LookPath before its FIFO.  -1 (errno, and
 * *bad the candidate reported) only when every candidate is missing or refused;
 * anything else (a filter refusing the check) leaves it to the exec itself. */
static int nsb_gate_exec_check(char *const *paths, int *bad)
{
    struct stat st;
    int i, err = ENOENT;
    for (i = 0; paths[i]; i++) {
        if (syscall(__NR_newfstatat, AT_FDCWD, paths[i], &st, 0) == 0 && !S_ISREG(st.st_mode))
            errno = EACCES;
        else if (syscall(__NR_faccessat, AT_FDCWD, paths[i], X_OK) == 0)
            return 0;
        if (errno == EACCES && err == ENOENT)
            *bad = i, err = EACCES;
        else if (errno != ENOENT && errno != ENOTDIR && errno != ELOOP && errno != EACCES)
            return 0;
    }
    if (err == ENOENT)
        *bad = i > 0 ? i - 1 : 0;
    errno = err;
    return -1;
}

int nsb_gate_probe(int gate_fd, int *wfd, char *const *exec_paths, int *bad)
{
    long fd;
    *wfd = -1;
    if (nsb_gate_exec_check(exec_paths, bad) < 0)
        return -1;
    fd = nsb_gate_open(gate_fd, O_NONBLOCK);
    if (fd >= 0) {
        *wfd = (int)fd; /* already a reader: no need to wait */
        return 0;
    }
    if (fd == -ENXIO)
        return 0;
    errno = (int)-fd;
    return -1;
}

int nsb_gate_wait(int gate_fd, int wfd)
{
    long n;
    long fd = wfd >= 0 ? wfd : nsb_gate_open(gate_fd, 0);
    if (fd < 0)
        return -1;
    do {
        n = nsb_raw3(__NR_write, fd, (long)"0", 1);
    } while (n == -EINTR);
    nsb_raw3(__NR_close, fd, 0, 0);
    nsb_raw3(__NR_close, gate_fd, 0, 0);
    return n == 1 ? 0 : -1;
}
