/*
 * nsbind mount steps, the path half: resolving a step's target (inside a root
 * or on the host) and creating what is missing, for mountsteps.c.  Internal:
 * not seen by cffi, not exported from the extension.  Async-signal-safe like
 * the rest (raw syscalls, stack buffers only).
 */
#ifndef NSBIND_INROOT_H
#define NSBIND_INROOT_H

#include "mountsteps.h"

#include <sys/stat.h>

/* What a missing target (and its missing parents) are created with:
 * directories NSB_CREATE_DIR_MODE, an empty file (CREATE_FILE) NSB_CREATE_FILE_MODE. */
#define NSB_CREATE_DIR_MODE 0755
#define NSB_CREATE_FILE_MODE 0644

/* nsb_open_target: the target is missing and the step is OPTIONAL (skip it). */
#define NSB_TARGET_SKIP (-2)

/* What to make at the last component of a missing path. */
enum nsb_make_what { NSB_MAKE_DIR, NSB_MAKE_FILE, NSB_MAKE_DEVICE, NSB_MAKE_SYMLINK };

struct nsb_make {
    enum nsb_make_what what;
    unsigned int mode;      /* DIR, DEVICE */
    unsigned long long dev; /* DEVICE */
    const char *link;       /* SYMLINK: what it points to */
};

static inline void nsb_close_keep_errno(int fd)
{
    int saved = errno;
    if (fd >= 0)
        syscall(__NR_close, fd);
    errno = saved;
}

/* The end of a step: close its mount and target fds (either may be -1), keep
 * errno, return rc. */
static inline int nsb_done(int rc, int mnt, int target)
{
    nsb_close_keep_errno(mnt);
    nsb_close_keep_errno(target);
    return rc;
}

/* What a step returns when nsb_open_target gave no fd: a skipped optional
 * target is success, anything else the failure it is. */
static inline int nsb_skipped(int target)
{
    return target == NSB_TARGET_SKIP ? 0 : -1;
}

#pragma GCC visibility push(hidden)

/* openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS) of path below dirfd, O_CLOEXEC. */
int nsb_openat2_path(int dirfd, const char *path, unsigned long long flags);
/* Path relative to the root: leading slashes dropped, "" becomes ".". */
const char *nsb_rel(const char *path);
/* What fd itself is (AT_EMPTY_PATH: a symlink opened O_PATH is not followed). */
int nsb_lstat_fd(int fd, struct stat *st);
/* Close ctx->dir (the directory the last creation was made in). */
void nsb_forget_dir(struct nsb_mount_ctx *ctx);
/* mkdir -p path inside root, the last component as *make (see inroot.c). */
int nsb_create_in_root(int root, const char *path, const struct nsb_make *make,
                       struct nsb_mount_ctx *ctx);
/* The target of a step, O_PATH: the fd, -1 with errno and *phase, or NSB_TARGET_SKIP. */
int nsb_open_target(const struct nsb_mount_step *st, struct nsb_mount_ctx *ctx,
                    int create_file, int *phase, struct stat *sb_out);

#pragma GCC visibility pop

#endif /* NSBIND_INROOT_H */
