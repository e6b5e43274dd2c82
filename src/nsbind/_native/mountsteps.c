/*
 * nsbind mount steps: see mountsteps.h.  Everything here is async-signal-safe
 * (raw syscalls, stack buffers, no errno-dependent library state besides
 * errno itself) because the spawn child runs it between clone3 and execve.
 */
#include "mountsteps.h"

#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#define NSB_PATH_BUF 4096

static void nsb_close_keep_errno(int fd)
{
    int saved = errno;
    if (fd >= 0)
        syscall(__NR_close, fd);
    errno = saved;
}

static int nsb_fail_step(struct nsb_mount_report *rep, int index, int phase)
{
    rep->index = index;
    rep->err = errno;
    rep->phase = phase;
    return -1;
}

/* The last error message of an fs context ("e overlay: ..."), into rep->msg. */
static void nsb_fs_message(int fsfd, struct nsb_mount_report *rep)
{
    char buf[sizeof(rep->msg)];
    int saved = errno;
    for (;;) {
        ssize_t n = read(fsfd, buf, sizeof(buf) - 1);
        if (n <= 0)
            break;
        buf[n] = 0;
        if (buf[0] == 'e' && buf[1] == ' ') {
            memcpy(rep->msg, buf + 2, (size_t)n - 1); /* includes the NUL */
        }
    }
    errno = saved;
}

static int nsb_openat2_path(int dirfd, const char *path, unsigned long long flags)
{
    struct open_how how;
    memset(&how, 0, sizeof(how));
    how.flags = flags | O_CLOEXEC;
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    for (int tries = 0;; tries++) {
        int fd = nsb_openat2(dirfd, path, &how, sizeof(how));
        /* EAGAIN: a rename raced with a ".." walk; the kernel asks to retry */
        if (fd >= 0 || errno != EAGAIN || tries == 64)
            return fd;
    }
}

/* Path relative to the root: leading slashes dropped, "" becomes ".". */
static const char *nsb_rel(const char *path)
{
    while (*path == '/')
        path++;
    return *path ? path : ".";
}

/* What to make at the last component of a missing path. */
struct nsb_make {
    int what;               /* 0: directory, 1: empty file, 2: device node, 3: symlink */
    unsigned int mode;
    unsigned long long dev;
    const char *link;
};

static int nsb_make_last(int parent, const char *name, const struct nsb_make *make,
                         struct nsb_mount_ctx *ctx)
{
    int fd;
    long rc;
    switch (make->what) {
    case 0:
        rc = syscall(__NR_mkdirat, parent, name, make->mode);
        return rc < 0 && errno == EEXIST ? 0 : (int)rc;
    case 1:
        fd = (int)syscall(__NR_openat, parent, name,
                          O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (fd < 0)
            return errno == EEXIST ? 0 : -1;
        syscall(__NR_close, fd);
        return 0;
    case 2:
        if (ctx->umask < 0)
            ctx->umask = (int)syscall(__NR_umask, 0); /* restored by nsb_mount_steps */
        return (int)syscall(__NR_mknodat, parent, name, make->mode, (unsigned int)make->dev);
    default:
        return (int)syscall(__NR_symlinkat, make->link, parent, name);
    }
}

static void nsb_forget_dir(struct nsb_mount_ctx *ctx)
{
    nsb_close_keep_errno(ctx->dir);
    ctx->dir = -1;
    ctx->dir_key = NULL;
}

/*
 * Create path inside root (mkdir -p), the last component as *make.  Every
 * component is created relative to the fd its parent resolved to inside the
 * root, so a symlink anywhere on the way (or swapped in meanwhile) can only
 * lead to another place inside the root.  With a ctx, the parent's fd is kept
 * for the next creation in the same directory (see struct nsb_mount_ctx).
 */
static int nsb_create_in_root(int root, const char *path, const struct nsb_make *make,
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
        size_t e;
        int last, fd;
        while (buf[s] == '/')
            s++;
        if (!buf[s]) {
            errno = EEXIST; /* the root itself */
            nsb_close_keep_errno(parent);
            return -1;
        }
        for (e = s; buf[e] && buf[e] != '/'; e++) {
        }
        last = 1;
        {
            size_t t = e;
            while (buf[t] == '/')
                t++;
            if (buf[t])
                last = 0;
        }
        buf[e] = 0;
        if (last) {
            int rc = nsb_make_last(parent >= 0 ? parent : root, buf + s, make, ctx);
            if (parent >= 0 && !path[e]) {
                /* keep the parent for a next creation beside this one */
                ctx->dir = parent;
                ctx->dir_key = path;
                ctx->dir_len = s;
                return rc;
            }
            nsb_close_keep_errno(parent);
            return rc;
        }
        fd = nsb_openat2_path(root, nsb_rel(buf), O_PATH | O_DIRECTORY);
        if (fd < 0 && errno == ENOENT) {
            if (syscall(__NR_mkdirat, parent >= 0 ? parent : root, buf + s, 0755) < 0 &&
                errno != EEXIST) {
                nsb_close_keep_errno(parent);
                return -1;
            }
            fd = nsb_openat2_path(root, nsb_rel(buf), O_PATH | O_DIRECTORY);
        }
        if (fd < 0) {
            nsb_close_keep_errno(parent);
            return -1;
        }
        nsb_close_keep_errno(parent);
        parent = fd;
        buf[e] = '/';
        s = e;
    }
}

static int nsb_lstat_fd(int fd, struct stat *st)
{
    return (int)syscall(__NR_newfstatat, fd, "", st, AT_EMPTY_PATH);
}

/*
 * Open the target of a step (O_PATH).  In the root: resolved inside it, the
 * last component not followed (a symlink there: ELOOP), created when missing
 * and asked for.  Returns the fd, -1 with errno, or -2 for a missing optional
 * target; with sb, also what the fd is (the stat the in-root check makes anyway).
 */
static int nsb_open_target(const struct nsb_mount_step *st, struct nsb_mount_ctx *ctx,
                           int create_file, int *phase, struct stat *sb_out)
{
    int root = ctx->root;
    struct stat sb;
    int fd;

    if (!(st->opts & NSB_MNTF_IN_ROOT)) {
        *phase = NSB_PH_RESOLVE;
        fd = (int)syscall(__NR_openat, AT_FDCWD, st->target, O_PATH | O_CLOEXEC);
        if (fd < 0 && errno == ENOENT && (st->opts & NSB_MNTF_OPTIONAL))
            return -2;
        if (fd >= 0 && sb_out && nsb_lstat_fd(fd, sb_out) < 0) {
            nsb_close_keep_errno(fd);
            return -1;
        }
        return fd;
    }
    if (root < 0) {
        *phase = NSB_PH_ROOT;
        errno = EBADF;
        return -1;
    }
    *phase = NSB_PH_RESOLVE;
    fd = nsb_openat2_path(root, nsb_rel(st->target), O_PATH | O_NOFOLLOW);
    if (fd < 0 && errno == ENOENT) {
        struct nsb_make make = {create_file ? 1 : 0, 0755, 0, NULL};
        if (st->opts & NSB_MNTF_OPTIONAL)
            return -2;
        if (!(st->opts & (NSB_MNTF_CREATE_DIR | NSB_MNTF_CREATE_FILE)))
            return -1;
        *phase = NSB_PH_CREATE;
        if (nsb_create_in_root(root, st->target, &make, ctx) < 0)
            return -1;
        *phase = NSB_PH_RESOLVE;
        fd = nsb_openat2_path(root, nsb_rel(st->target), O_PATH | O_NOFOLLOW);
    }
    if (fd < 0)
        return -1;
    if (nsb_lstat_fd(fd, &sb) < 0) {
        nsb_close_keep_errno(fd);
        return -1;
    }
    if (S_ISLNK(sb.st_mode)) {
        syscall(__NR_close, fd);
        *phase = NSB_PH_ROOT;
        errno = ELOOP;
        return -1;
    }
    if (sb_out)
        *sb_out = sb;
    return fd;
}

static int nsb_attach(int mnt_fd, int target_fd)
{
    return nsb_move_mount(mnt_fd, "", target_fd, "",
                          MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH);
}

/* fsopen + source + options + create + fsmount: the detached mount's fd. */
static int nsb_make_fs(const struct nsb_mount_step *st, unsigned int attr,
                       struct nsb_mount_report *rep)
{
    int fsfd, mfd, i;
    fsfd = nsb_fsopen(st->fstype, FSOPEN_CLOEXEC);
    if (fsfd < 0)
        return -1;
    if (st->source && nsb_fsconfig(fsfd, FSCONFIG_SET_STRING, "source", st->source, 0) < 0)
        goto fail;
    for (i = 0; st->options && st->options[i]; i++) {
        const char *opt = st->options[i];
        const char *eq = strchr(opt, '=');
        char key[128];
        size_t klen;
        if (!eq) {
            if (nsb_fsconfig(fsfd, FSCONFIG_SET_FLAG, opt, NULL, 0) < 0)
                goto fail;
            continue;
        }
        klen = (size_t)(eq - opt);
        if (klen >= sizeof(key)) {
            errno = EINVAL;
            goto fail;
        }
        memcpy(key, opt, klen);
        key[klen] = 0;
        if (nsb_fsconfig(fsfd, FSCONFIG_SET_STRING, key, eq + 1, 0) < 0)
            goto fail;
    }
    if (nsb_fsconfig(fsfd, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
        goto fail;
    mfd = nsb_fsmount(fsfd, FSMOUNT_CLOEXEC, attr);
    if (mfd < 0)
        goto fail;
    syscall(__NR_close, fsfd);
    return mfd;
fail:
    nsb_fs_message(fsfd, rep);
    nsb_close_keep_errno(fsfd);
    return -1;
}

static int nsb_setattr(int tree, unsigned long long set, int userns_fd, int recursive)
{
    struct mount_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.attr_set = set;
    if (set & MOUNT_ATTR_IDMAP)
        attr.userns_fd = (unsigned long long)userns_fd;
    return nsb_mount_setattr(tree, "", AT_EMPTY_PATH | (recursive ? AT_RECURSIVE : 0), &attr,
                             sizeof(attr));
}

/* One step; -1 with errno and *phase on failure. */
static int nsb_mount_step(const struct nsb_mount_step *st, struct nsb_mount_ctx *ctx,
                          int *phase, struct nsb_mount_report *rep)
{
    int *root = &ctx->root;
    int rec = (st->opts & NSB_MNTF_RECURSIVE) != 0;
    int target = -1, mnt = -1, rc = -1;
    struct stat sb;

    *phase = NSB_PH_MOUNT;
    switch (st->kind) {
    case NSB_MNT_CLASSIC:
        return nsb_mount(st->source, st->target, st->fstype, st->flags, st->data);

    case NSB_MNT_ROOT:
        target = nsb_open_target(st, ctx, 0, phase, &sb);
        if (target < 0)
            return -1;
        if (!S_ISDIR(sb.st_mode)) {
            syscall(__NR_close, target);
            errno = ENOTDIR;
            return -1;
        }
        if (*root >= 0)
            syscall(__NR_close, *root);
        *root = target;
        return 0;

    case NSB_MNT_FS:
        target = nsb_open_target(st, ctx, 0, phase, NULL);
        if (target < 0)
            return target == -2 ? 0 : -1;
        *phase = NSB_PH_CONFIG;
        if (st->cwd) {
            /* relative option paths (an overlay's many layers in one short
             * string on kernels without lowerdir+) start from st->cwd */
            int saved_cwd = (int)syscall(__NR_openat, AT_FDCWD, ".",
                                         O_PATH | O_DIRECTORY | O_CLOEXEC);
            if (saved_cwd < 0)
                goto out;
            if (syscall(__NR_chdir, st->cwd) < 0) {
                nsb_close_keep_errno(saved_cwd);
                goto out;
            }
            mnt = nsb_make_fs(st, (unsigned int)st->flags, rep);
            if (syscall(__NR_fchdir, saved_cwd) < 0 && mnt >= 0) {
                syscall(__NR_close, mnt);
                mnt = -1;
            }
            nsb_close_keep_errno(saved_cwd);
        } else {
            mnt = nsb_make_fs(st, (unsigned int)st->flags, rep);
        }
        if (mnt < 0)
            goto out;
        *phase = NSB_PH_MOUNT;
        if (nsb_attach(mnt, target) < 0)
            goto out;
        if (st->fs_magic) {
            /* what the path shows now must be the filesystem just mounted */
            int check;
            long long type;
            *phase = NSB_PH_VERIFY;
            syscall(__NR_close, target);
            target = -1;
            if (st->opts & NSB_MNTF_IN_ROOT)
                check = nsb_openat2_path(*root, nsb_rel(st->target), O_PATH | O_NOFOLLOW);
            else
                check = (int)syscall(__NR_openat, AT_FDCWD, st->target, O_PATH | O_CLOEXEC);
            if (check < 0)
                goto out;
            type = nsb_fstatfs_type(check);
            syscall(__NR_close, check);
            if (type != st->fs_magic) {
                errno = type < 0 ? errno : EXDEV;
                goto out;
            }
        }
        rc = 0;
        goto out;

    case NSB_MNT_BIND:
        *phase = NSB_PH_SOURCE;
        if (st->fd >= 0)
            mnt = nsb_open_tree(st->fd, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC |
                                AT_EMPTY_PATH | (rec ? AT_RECURSIVE : 0));
        else
            mnt = nsb_open_tree(AT_FDCWD, st->source, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC |
                                (rec ? AT_RECURSIVE : 0));
        if (mnt < 0)
            return -1;
        if (nsb_lstat_fd(mnt, &sb) < 0)
            goto out;
        if (st->flags) {
            *phase = NSB_PH_SETATTR;
            if (nsb_setattr(mnt, st->flags, st->userns_fd, rec) < 0)
                goto out;
        }
        target = nsb_open_target(st, ctx, !S_ISDIR(sb.st_mode), phase, NULL);
        if (target < 0) {
            rc = target == -2 ? 0 : -1;
            goto out;
        }
        *phase = NSB_PH_MOUNT;
        rc = nsb_attach(mnt, target);
        goto out;

    case NSB_MNT_MASK:
        target = nsb_open_target(st, ctx, 0, phase, &sb);
        if (target < 0)
            return target == -2 ? 0 : -1;
        {
            int dir = S_ISDIR(sb.st_mode);
            int *made = dir ? &ctx->mask_dir : &ctx->mask_file;
            if (*made >= 0) {
                /* a clone of the mask this run already made and checked */
                *phase = NSB_PH_SOURCE;
                mnt = nsb_open_tree(*made, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC |
                                    AT_EMPTY_PATH);
            } else if (dir) {
                static const char *const none[] = {"size=0", NULL};
                struct nsb_mount_step tmp;
                memset(&tmp, 0, sizeof(tmp));
                tmp.fstype = "tmpfs";
                tmp.source = "tmpfs";
                tmp.options = none;
                *phase = NSB_PH_CONFIG;
                mnt = nsb_make_fs(&tmp, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID |
                                  MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC, rep);
            } else {
                struct stat null;
                /* the caller's /dev/null, checked to be the real one (CVE-2025-31133):
                 * never the root's own, which the image controls */
                *phase = NSB_PH_SOURCE;
                if (ctx->null_src >= 0) {
                    mnt = ctx->null_src; /* attached below: used once */
                    ctx->null_src = -1;
                } else {
                    mnt = nsb_open_tree(AT_FDCWD, "/dev/null",
                                        OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
                }
                if (mnt < 0)
                    goto out;
                *phase = NSB_PH_VERIFY;
                if (nsb_lstat_fd(mnt, &null) < 0)
                    goto out;
                if (!S_ISCHR(null.st_mode) || null.st_rdev != makedev(1, 3)) {
                    errno = ENODEV;
                    goto out;
                }
            }
            if (mnt < 0)
                goto out;
            *phase = NSB_PH_MOUNT;
            rc = nsb_attach(mnt, target);
            if (rc == 0 && *made < 0) {
                *made = mnt; /* attached now: the source of the next clones */
                mnt = -1;
            }
        }
        goto out;

    case NSB_MNT_READONLY:
        target = nsb_open_target(st, ctx, 0, phase, NULL);
        if (target < 0)
            return target == -2 ? 0 : -1;
        *phase = NSB_PH_SOURCE;
        mnt = nsb_open_tree(target, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH |
                            AT_RECURSIVE);
        if (mnt < 0)
            goto out;
        *phase = NSB_PH_SETATTR;
        if (nsb_setattr(mnt, MOUNT_ATTR_RDONLY | st->flags, -1, 1) < 0)
            goto out;
        *phase = NSB_PH_MOUNT;
        rc = nsb_attach(mnt, target);
        goto out;

    case NSB_MNT_MKDIR:
    case NSB_MNT_DEVICE:
    case NSB_MNT_SYMLINK: {
        struct nsb_make make;
        if (!(st->opts & NSB_MNTF_IN_ROOT) || *root < 0) {
            *phase = NSB_PH_ROOT;
            errno = EBADF;
            return -1;
        }
        make.what = st->kind == NSB_MNT_MKDIR ? 0 : st->kind == NSB_MNT_DEVICE ? 2 : 3;
        make.mode = st->mode;
        make.dev = st->dev;
        make.link = st->source;
        *phase = NSB_PH_CREATE;
        if (nsb_create_in_root(*root, st->target, &make, ctx) == 0)
            return 0;
        if (st->kind != NSB_MNT_DEVICE || errno != EPERM || !st->source)
            return -1;
        /* no mknod in a user namespace: bind the caller's device node instead */
        {
            struct nsb_mount_step bind;
            memcpy(&bind, st, sizeof(bind));
            bind.kind = NSB_MNT_BIND;
            bind.opts = NSB_MNTF_IN_ROOT | NSB_MNTF_CREATE_FILE;
            bind.fd = -1;
            bind.flags = 0;
            return nsb_mount_step(&bind, ctx, phase, rep);
        }
    }

    case NSB_MNT_PROPAGATION:
    case NSB_MNT_SETATTR: {
        struct mount_attr attr;
        target = nsb_open_target(st, ctx, 0, phase, NULL);
        if (target < 0)
            return target == -2 ? 0 : -1;
        memset(&attr, 0, sizeof(attr));
        if (st->kind == NSB_MNT_PROPAGATION)
            attr.propagation = st->flags;
        else
            attr.attr_set = st->flags;
        *phase = NSB_PH_SETATTR;
        rc = nsb_mount_setattr(target, "", AT_EMPTY_PATH | (rec ? AT_RECURSIVE : 0), &attr,
                               sizeof(attr));
        goto out;
    }

    default:
        errno = EINVAL;
        return -1;
    }
out:
    nsb_close_keep_errno(mnt);
    nsb_close_keep_errno(target);
    return rc;
}

void nsb_mount_ctx_init(struct nsb_mount_ctx *ctx)
{
    memset(ctx, 0, sizeof(*ctx));
    ctx->root = ctx->dir = ctx->mask_dir = ctx->mask_file = ctx->umask = ctx->null_src = -1;
}

void nsb_mount_ctx_close(struct nsb_mount_ctx *ctx)
{
    int *fds[] = {&ctx->root, &ctx->dir, &ctx->mask_dir, &ctx->mask_file, &ctx->null_src};
    for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++) {
        nsb_close_keep_errno(*fds[i]);
        *fds[i] = -1;
    }
    ctx->dir_key = NULL;
}

int nsb_mount_steps(const struct nsb_mount_step *steps, int n, struct nsb_mount_ctx *ctx,
                    struct nsb_mount_report *report)
{
    int i, rc = 0;
    report->msg[0] = 0;
    for (i = 0; i < n; i++) {
        int phase = NSB_PH_MOUNT;
        int kind = steps[i].kind;
        if (kind != NSB_MNT_MKDIR && kind != NSB_MNT_DEVICE && kind != NSB_MNT_SYMLINK)
            nsb_forget_dir(ctx);
        errno = 0;
        if (nsb_mount_step(&steps[i], ctx, &phase, report) < 0) {
            rc = nsb_fail_step(report, i, phase);
            break;
        }
    }
    nsb_forget_dir(ctx);
    if (ctx->umask >= 0) {
        syscall(__NR_umask, ctx->umask);
        ctx->umask = -1;
    }
    return rc;
}
