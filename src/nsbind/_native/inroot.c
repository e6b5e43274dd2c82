/*
 * nsbind mount steps, the path half: see inroot.h.  Async-signal-safe: raw
 * syscalls (fstatat, which POSIX lists as async-signal-safe, for the stat),
 * buffers on the stack, errno the only state besides the caller's ctx.
 */
#include "inroot.h"

#include <limits.h>
#include <string.h>

/* A path inside a root is copied into a buffer of this size to be walked. */
#define NSB_PATH_BUF PATH_MAX
/* openat2 gives EAGAIN when a rename races with a ".." walk; retries before giving up */
#define NSB_OPENAT2_RETRIES 64

int nsb_openat2_path(int dirfd, const char *path, unsigned long long flags)
{
    struct open_how how;
    memset(&how, 0, sizeof(how));
    how.flags = flags | O_CLOEXEC;
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    for (int tries = 0;; tries++) {
        int fd = nsb_openat2(dirfd, path, &how, sizeof(how));
        if (fd >= 0 || errno != EAGAIN || tries == NSB_OPENAT2_RETRIES)
            return fd;
    }
}

const char *nsb_rel(const char *path)
{
    while (*path == '/')
        path++;
    return *path ? path : ".";
}

int nsb_lstat_fd(int fd, struct stat *st)
{
    /* fstatat is async-signal-safe (POSIX) and, unlike a raw newfstatat, exists
     * under that name on every architecture (32-bit ones have fstatat64) */
    return fstatat(fd, "", st, AT_EMPTY_PATH);
}

static int nsb_make_last(int parent, const char *name, const struct nsb_make *make,
                         struct nsb_mount_ctx *ctx)
{
    int fd;
    long rc;
    switch (make->what) {
    case NSB_MAKE_DIR:
        rc = syscall(__NR_mkdirat, parent, name, make->mode);
        return rc < 0 && errno == EEXIST ? 0 : (int)rc;
    case NSB_MAKE_FILE:
        fd = (int)syscall(__NR_openat, parent, name,
                          O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC,
                          NSB_CREATE_FILE_MODE);
        if (fd < 0)
            return errno == EEXIST ? 0 : -1;
        syscall(__NR_close, fd);
        return 0;
    case NSB_MAKE_DEVICE:
        if (ctx->umask < 0)
            ctx->umask = (int)syscall(__NR_umask, 0); /* restored by nsb_mount_steps */
        return (int)syscall(__NR_mknodat, parent, name, make->mode, (unsigned int)make->dev);
    case NSB_MAKE_SYMLINK:
        return (int)syscall(__NR_symlinkat, make->link, parent, name);
    }
    errno = EINVAL;
    return -1;
}

void nsb_forget_dir(struct nsb_mount_ctx *ctx)
{
    nsb_close_keep_errno(ctx->dir);
    ctx->dir = -1;
    ctx->dir_key = NULL;
}

/* The directory buf names (buf is cut after the component that starts at
 * buf + s) inside root, made in parent (-1: the root) when missing: an O_PATH fd. */
static int nsb_walk_dir(int root, int parent, const char *buf, size_t s)
{
    int fd = nsb_openat2_path(root, nsb_rel(buf), O_PATH | O_DIRECTORY);
    if (fd >= 0 || errno != ENOENT)
        return fd;
    if (syscall(__NR_mkdirat, parent >= 0 ? parent : root, buf + s, NSB_CREATE_DIR_MODE) < 0 &&
        errno != EEXIST)
        return -1;
    return nsb_openat2_path(root, nsb_rel(buf), O_PATH | O_DIRECTORY);
}

/* The last component made in parent (-1: the root).  With a parent, the fd is
 * kept in ctx for the next creation beside this one when nothing follows the
 * name (path + s is the name, e its end); else it is closed. */
static int nsb_make_in(int root, int parent, const char *path, size_t s, size_t e,
                       const char *name, const struct nsb_make *make, struct nsb_mount_ctx *ctx)
{
    int rc = nsb_make_last(parent >= 0 ? parent : root, name, make, ctx);
    if (parent >= 0 && !path[e]) {
        ctx->dir = parent;
        ctx->dir_key = path;
        ctx->dir_len = s;
        return rc;
    }
    nsb_close_keep_errno(parent);
    return rc;
}

/*
 * Create path inside root (mkdir -p), the last component as *make.  Every
 * component is created relative to the fd its parent resolved to inside the
 * root, so a symlink anywhere on the way (or swapped in meanwhile) can only
 * lead to another place inside the root.  The parent's fd is kept for the
 * next creation in the same directory (see struct nsb_mount_ctx).
 */
int nsb_create_in_root(int root, const char *path, const struct nsb_make *make,
                       struct nsb_mount_ctx *ctx)
{
    char buf[NSB_PATH_BUF];
    size_t len = strlen(path), s = 0;
    int parent = -1;

    if (len >= sizeof(buf)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    if (ctx->dir >= 0) {
        /* the same directory as the last creation: "<dir_key><name>" */
        const char *name = path + ctx->dir_len;
        if (len > ctx->dir_len && memcmp(path, ctx->dir_key, ctx->dir_len) == 0 &&
            !strchr(name, '/'))
            return nsb_make_last(ctx->dir, name, make, ctx);
        nsb_forget_dir(ctx);
    }
    memcpy(buf, path, len + 1);
    for (;;) {
        size_t e, t;
        int fd, last;
        while (buf[s] == '/')
            s++;
        if (!buf[s]) {
            errno = EEXIST; /* the root itself */
            nsb_close_keep_errno(parent);
            return -1;
        }
        for (e = s; buf[e] && buf[e] != '/'; e++) {
        }
        for (t = e; buf[t] == '/'; t++) {
        }
        last = !buf[t]; /* nothing but slashes follow */
        buf[e] = 0;
        if (last)
            return nsb_make_in(root, parent, path, s, e, buf + s, make, ctx);
        fd = nsb_walk_dir(root, parent, buf, s);
        nsb_close_keep_errno(parent);
        if (fd < 0)
            return -1;
        parent = fd;
        buf[e] = '/';
        s = e;
    }
}

/* A PINNED host target: resolved with no symlink anywhere on the way (ELOOP) and
 * still the directory the step was pinned to (ESTALE if it is another one: the
 * path was swapped since the caller pinned it).  Either refusal is phase PINNED. */
static int nsb_open_pinned(const struct nsb_mount_step *st, int *phase, struct stat *sb)
{
    struct open_how how;
    int fd;
    memset(&how, 0, sizeof(how));
    how.flags = O_PATH | O_DIRECTORY | O_CLOEXEC;
    how.resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
    fd = nsb_openat2(AT_FDCWD, st->target, &how, sizeof(how));
    if (fd < 0) {
        if (errno == ELOOP)
            *phase = NSB_PH_PINNED;
        return -1;
    }
    if (nsb_lstat_fd(fd, sb) < 0)
        return nsb_done(-1, -1, fd);
    if ((unsigned long long)sb->st_dev != st->pin_dev ||
        (unsigned long long)sb->st_ino != st->pin_ino) {
        *phase = NSB_PH_PINNED;
        errno = ESTALE;
        return nsb_done(-1, -1, fd);
    }
    return fd;
}

/* A host target (not IN_ROOT), as the caller's working directory and root resolve it. */
static int nsb_open_host_target(const struct nsb_mount_step *st, int *phase,
                                struct stat *sb_out)
{
    struct stat sb;
    int fd;
    if (st->opts & NSB_MNTF_PINNED) {
        fd = nsb_open_pinned(st, phase, &sb);
        if (fd >= 0 && sb_out)
            *sb_out = sb;
        return fd;
    }
    fd = (int)syscall(__NR_openat, AT_FDCWD, st->target, O_PATH | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT && (st->opts & NSB_MNTF_OPTIONAL))
        return NSB_TARGET_SKIP;
    if (fd >= 0 && sb_out && nsb_lstat_fd(fd, sb_out) < 0)
        return nsb_done(-1, -1, fd);
    return fd;
}

/*
 * Open the target of a step (O_PATH).  In the root: resolved inside it, the
 * last component not followed (a symlink there: ELOOP), created when missing
 * and asked for.  On the host: as the caller resolves it, or PINNED (see
 * nsb_open_pinned).  Returns the fd, -1 with errno, or NSB_TARGET_SKIP for a
 * missing optional target; with sb_out, also what the fd is (the stat the
 * in-root check makes anyway).
 */
int nsb_open_target(const struct nsb_mount_step *st, struct nsb_mount_ctx *ctx,
                    int create_file, int *phase, struct stat *sb_out)
{
    struct stat sb;
    int fd;

    *phase = NSB_PH_RESOLVE;
    if (!(st->opts & NSB_MNTF_IN_ROOT))
        return nsb_open_host_target(st, phase, sb_out);
    if (ctx->root < 0) {
        *phase = NSB_PH_ROOT;
        errno = EBADF;
        return -1;
    }
    fd = nsb_openat2_path(ctx->root, nsb_rel(st->target), O_PATH | O_NOFOLLOW);
    if (fd < 0 && errno == ENOENT) {
        struct nsb_make make = {create_file ? NSB_MAKE_FILE : NSB_MAKE_DIR,
                                NSB_CREATE_DIR_MODE, 0, NULL};
        if (st->opts & NSB_MNTF_OPTIONAL)
            return NSB_TARGET_SKIP;
        if (!(st->opts & (NSB_MNTF_CREATE_DIR | NSB_MNTF_CREATE_FILE)))
            return -1;
        *phase = NSB_PH_CREATE;
        if (nsb_create_in_root(ctx->root, st->target, &make, ctx) < 0)
            return -1;
        *phase = NSB_PH_RESOLVE;
        fd = nsb_openat2_path(ctx->root, nsb_rel(st->target), O_PATH | O_NOFOLLOW);
    }
    if (fd < 0)
        return -1;
    if (nsb_lstat_fd(fd, &sb) < 0)
        return nsb_done(-1, -1, fd);
    if (S_ISLNK(sb.st_mode)) {
        *phase = NSB_PH_ROOT;
        errno = ELOOP;
        return nsb_done(-1, -1, fd);
    }
    if (sb_out)
        *sb_out = sb;
    return fd;
}
