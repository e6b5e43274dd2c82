/*
 * nsbind mount steps: see mountsteps.h.  Everything here is async-signal-safe
 * (raw syscalls, stack buffers, no errno-dependent library state besides
 * errno itself) because the spawn child runs it between clone3 and execve.
 *
 * Layout: mount helpers, then one function per step kind (nsb_step_<kind>),
 * then the table nsb_step_fns that nsb_mount_steps dispatches through; the
 * paths a step resolves or creates (inside a root or not) are inroot.c's.  A
 * step function returns 0, or -1 with errno; before each call that can fail it
 * sets *phase (enum nsb_mount_phase) to the sub-step it is in, which is what
 * the report names.
 */
#include "inroot.h"

#include <string.h>
#include <sys/sysmacros.h>

/* The longest key of a "key=value" FS option, NUL included (filesystem parameter
 * names are a few dozen bytes; a longer key is EINVAL, as the kernel would say). */
#define NSB_FS_KEY_SIZE 128
/* The device a file mask binds: /dev/null is character device 1:3. */
#define NSB_NULL_MAJOR 1
#define NSB_NULL_MINOR 3

typedef int (*nsb_step_fn)(const struct nsb_mount_step *st, struct nsb_mount_ctx *ctx,
                           int *phase, struct nsb_mount_report *rep);

/* The last error message of an fs context ("e overlay: ..."), into rep->msg. */
static void nsb_fs_message(int fsfd, struct nsb_mount_report *rep)
{
    char buf[NSB_REPORT_MSG_SIZE];
    int saved = errno;
    /* a whole message read into buf fits rep->msg (less its "e " prefix) */
    _Static_assert(sizeof(buf) == sizeof(rep->msg), "fs message buffer != report msg");
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

/* ---------------------------------------------------------------- mount helpers */

static int nsb_attach(int mnt_fd, int target_fd)
{
    return nsb_move_mount(mnt_fd, "", target_fd, "",
                          MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH);
}

/* The end of a step that attached mnt onto target: target is closed, mnt kept
 * as ctx->last (the mount a following ROOT LAST_MOUNT step takes). */
static int nsb_attached(struct nsb_mount_ctx *ctx, int mnt, int target)
{
    nsb_close_keep_errno(target);
    nsb_close_keep_errno(ctx->last);
    ctx->last = mnt;
    return 0;
}

static void nsb_forget_last(struct nsb_mount_ctx *ctx)
{
    nsb_close_keep_errno(ctx->last);
    ctx->last = -1;
}

/* One FS option: "key=value" (a string) or "flag". */
static int nsb_fs_option(int fsfd, const char *opt)
{
    const char *eq = strchr(opt, '=');
    char key[NSB_FS_KEY_SIZE];
    size_t klen;
    if (!eq)
        return nsb_fsconfig(fsfd, FSCONFIG_SET_FLAG, opt, NULL, 0);
    klen = (size_t)(eq - opt);
    if (klen >= sizeof(key)) {
        errno = EINVAL;
        return -1;
    }
    memcpy(key, opt, klen);
    key[klen] = 0;
    return nsb_fsconfig(fsfd, FSCONFIG_SET_STRING, key, eq + 1, 0);
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
        if (nsb_fs_option(fsfd, st->options[i]) < 0)
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

/* nsb_make_fs with relative option paths starting from st->cwd (an overlay's
 * many layers in one short string on kernels without lowerdir+); the working
 * directory is restored after. */
static int nsb_make_fs_in_cwd(const struct nsb_mount_step *st, struct nsb_mount_report *rep)
{
    int saved_cwd, mnt;
    if (!st->cwd)
        return nsb_make_fs(st, (unsigned int)st->flags, rep);
    saved_cwd = (int)syscall(__NR_openat, AT_FDCWD, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (saved_cwd < 0)
        return -1;
    if (syscall(__NR_chdir, st->cwd) < 0)
        return nsb_done(-1, -1, saved_cwd);
    mnt = nsb_make_fs(st, (unsigned int)st->flags, rep);
    if (syscall(__NR_fchdir, saved_cwd) < 0 && mnt >= 0) {
        nsb_close_keep_errno(mnt);
        mnt = -1;
    }
    return nsb_done(mnt, -1, saved_cwd);
}

/* After an FS step with fs_magic: what the target path shows now must be the
 * filesystem just mounted (EXDEV if it is not). */
static int nsb_verify_fs(const struct nsb_mount_step *st, struct nsb_mount_ctx *ctx)
{
    long long type;
    int check;
    if (st->opts & NSB_MNTF_IN_ROOT)
        check = nsb_openat2_path(ctx->root, nsb_rel(st->target), O_PATH | O_NOFOLLOW);
    else
        check = (int)syscall(__NR_openat, AT_FDCWD, st->target, O_PATH | O_CLOEXEC);
    if (check < 0)
        return -1;
    type = nsb_fstatfs_type(check);
    nsb_close_keep_errno(check);
    if (type == st->fs_magic)
        return 0;
    if (type >= 0)
        errno = EXDEV;
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

/* ---------------------------------------------------------------- one function per kind */

static int nsb_step_classic(const struct nsb_mount_step *st, struct nsb_mount_ctx *ctx,
                            int *phase, struct nsb_mount_report *rep)
{
    return nsb_mount(st->source, st->target, st->fstype, st->flags, st->data);
}

/* ROOT SELF_BIND: the target's mount cloned (recursively with RECURSIVE) and
 * attached onto the target's own fd; the attached mount's fd, or -1. */
static int nsb_bind_self(const struct nsb_mount_step *st, int target, int *phase)
{
    unsigned int rec = (st->opts & NSB_MNTF_RECURSIVE) ? AT_RECURSIVE : 0;
    int mnt;
    *phase = NSB_PH_SOURCE;
    mnt = nsb_open_tree(target, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH | rec);
    if (mnt < 0)
        return -1;
    *phase = NSB_PH_MOUNT;
    if (nsb_attach(mnt, target) < 0)
        return nsb_done(-1, mnt, -1);
    return mnt;
}

static int nsb_step_root(const struct nsb_mount_step *st, struct nsb_mount_ctx *ctx,
                         int *phase, struct nsb_mount_report *rep)
{
    struct stat sb;
    int target;
    if (st->opts & NSB_MNTF_LAST_MOUNT) {
        target = ctx->last; /* what the step before attached: no lookup */
        ctx->last = -1;
        if (target < 0) {
            *phase = NSB_PH_ROOT;
            errno = EBADF;
            return -1;
        }
    } else {
        target = nsb_open_target(st, ctx, 0, phase, &sb);
        if (target < 0)
            return -1; /* a root is never optional */
        if (!S_ISDIR(sb.st_mode)) {
            errno = ENOTDIR;
            return nsb_done(-1, -1, target);
        }
        if (st->opts & NSB_MNTF_SELF_BIND) {
            int mnt = nsb_bind_self(st, target, phase);
            nsb_close_keep_errno(target);
            if (mnt < 0)
                return -1;
            target = mnt;
        }
    }
    nsb_close_keep_errno(ctx->root);
    ctx->root = target;
    return 0;
}

/* CVE-2019-19921, CVE-2023-27561: a target in the root that lies on procfs (found
 * through a symlink, or named) takes only proc itself or one of the few /proc files
 * runc lets lxcfs replace; any other mount there would shadow what the kernel shows
 * the container.  Checked on the fd the mount goes onto: no path to race. */
static int nsb_refuse_on_proc(const struct nsb_mount_step *st, int target, int *phase)
{
    static const char *const allowed[] = {
        "/proc/cpuinfo", "/proc/diskstats", "/proc/meminfo", "/proc/stat", "/proc/swaps",
        "/proc/uptime", "/proc/loadavg", "/proc/slabinfo", "/proc/net/dev",
        "/proc/sys/kernel/ns_last_pid", NULL};
    int i;
    if (!(st->opts & NSB_MNTF_IN_ROOT) || nsb_fstatfs_type(target) != PROC_SUPER_MAGIC ||
        (st->fstype && strcmp(st->fstype, "proc") == 0))
        return 0;
    for (i = 0; allowed[i]; i++) {
        if (strcmp(st->target, allowed[i]) == 0)
            return 0;
    }
    *phase = NSB_PH_PROC;
    errno = EPERM;
    return -1;
}

static int nsb_step_fs(const struct nsb_mount_step *st, struct nsb_mount_ctx *ctx,
                       int *phase, struct nsb_mount_report *rep)
{
    int mnt, target = nsb_open_target(st, ctx, 0, phase, NULL);
    if (target < 0)
        return nsb_skipped(target);
    if (nsb_refuse_on_proc(st, target, phase) < 0)
        return nsb_done(-1, -1, target);
    *phase = NSB_PH_CONFIG;
    mnt = nsb_make_fs_in_cwd(st, rep);
    if (mnt < 0)
        return nsb_done(-1, -1, target);
    *phase = NSB_PH_MOUNT;
    if (nsb_attach(mnt, target) < 0)
        return nsb_done(-1, mnt, target);
    nsb_attached(ctx, mnt, target);
    if (!st->fs_magic)
        return 0;
    *phase = NSB_PH_VERIFY;
    return nsb_verify_fs(st, ctx);
}

/* open_tree(CLONE) of a BIND step's source: its fd when given, else its path. */
static int nsb_bind_source(const struct nsb_mount_step *st, int rec)
{
    unsigned int flags = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | (rec ? AT_RECURSIVE : 0);
    if (st->fd >= 0 && (st->opts & NSB_MNTF_ATTACH_FD))
        return fcntl(st->fd, F_DUPFD_CLOEXEC, 0); /* closed after the attach: a copy */
    if (st->fd >= 0)
        return nsb_open_tree(st->fd, "", flags | AT_EMPTY_PATH);
    return nsb_open_tree(AT_FDCWD, st->source, flags);
}

static int nsb_step_bind(const struct nsb_mount_step *st, struct nsb_mount_ctx *ctx,
                         int *phase, struct nsb_mount_report *rep)
{
    int rec = (st->opts & NSB_MNTF_RECURSIVE) != 0;
    int mnt, target;
    struct stat sb;

    *phase = NSB_PH_SOURCE;
    mnt = nsb_bind_source(st, rec);
    if (mnt < 0)
        return -1;
    if (nsb_lstat_fd(mnt, &sb) < 0)
        return nsb_done(-1, mnt, -1);
    if (st->flags) {
        *phase = NSB_PH_SETATTR;
        if (nsb_setattr(mnt, st->flags, st->userns_fd, rec) < 0)
            return nsb_done(-1, mnt, -1);
    }
    /* a missing target is made like the source: a directory or a file */
    target = nsb_open_target(st, ctx, !S_ISDIR(sb.st_mode), phase, NULL);
    if (target < 0)
        return nsb_done(nsb_skipped(target), mnt, -1);
    if (nsb_refuse_on_proc(st, target, phase) < 0)
        return nsb_done(-1, mnt, target);
    *phase = NSB_PH_MOUNT;
    if (nsb_attach(mnt, target) < 0)
        return nsb_done(-1, mnt, target);
    return nsb_attached(ctx, mnt, target);
}

/* The empty read-only tmpfs a directory mask attaches. */
/* A directory mask: an empty read-only tmpfs, as runc mounts it. */
static int nsb_mask_tmpfs(struct nsb_mount_report *rep)
{
    static const char *const options[] = {"ro", NULL};
    struct nsb_mount_step tmp;
    memset(&tmp, 0, sizeof(tmp));
    tmp.fstype = "tmpfs";
    tmp.source = "tmpfs";
    tmp.options = options;
    return nsb_make_fs(&tmp, MOUNT_ATTR_RDONLY, rep);
}

/* The detached bind of /dev/null a file mask attaches: the root's own /dev/null
 * (as runc binds it) when, opened once without following links, it is the null
 * device itself; else the caller's.  Either is checked to be the real one
 * (CVE-2025-31133): whatever the image put there is never trusted by its path. */
static int nsb_mask_null(struct nsb_mount_ctx *ctx, int *phase)
{
    struct stat null;
    int mnt = -1, fd;
    *phase = NSB_PH_SOURCE;
    if (ctx->root >= 0 && (fd = nsb_openat2_path(ctx->root, "dev/null", O_PATH |
                                                 O_NOFOLLOW)) >= 0) {
        if (nsb_lstat_fd(fd, &null) == 0 && S_ISCHR(null.st_mode) &&
            null.st_rdev == makedev(NSB_NULL_MAJOR, NSB_NULL_MINOR))
            mnt = nsb_open_tree(fd, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH);
        syscall(__NR_close, fd);
    }
    if (mnt >= 0) {
        /* the root's, checked below like the caller's */
    } else if (ctx->null_src >= 0) {
        mnt = ctx->null_src; /* the caller's bind: used once */
        ctx->null_src = -1;
    } else {
        mnt = nsb_open_tree(AT_FDCWD, "/dev/null", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
        if (mnt < 0)
            return -1;
    }
    *phase = NSB_PH_VERIFY;
    if (nsb_lstat_fd(mnt, &null) < 0)
        return nsb_done(-1, mnt, -1);
    if (!S_ISCHR(null.st_mode) || null.st_rdev != makedev(NSB_NULL_MAJOR, NSB_NULL_MINOR)) {
        errno = ENODEV;
        return nsb_done(-1, mnt, -1);
    }
    return mnt;
}

static int nsb_step_mask(const struct nsb_mount_step *st, struct nsb_mount_ctx *ctx,
                         int *phase, struct nsb_mount_report *rep)
{
    struct stat sb;
    int mnt, *made, target = nsb_open_target(st, ctx, 0, phase, &sb);
    if (target < 0)
        return nsb_skipped(target);
    made = S_ISDIR(sb.st_mode) ? &ctx->mask_dir : &ctx->mask_file;
    if (*made >= 0) {
        /* a clone of the mask this run already made and checked */
        *phase = NSB_PH_SOURCE;
        mnt = nsb_open_tree(*made, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH);
    } else if (S_ISDIR(sb.st_mode)) {
        *phase = NSB_PH_CONFIG;
        mnt = nsb_mask_tmpfs(rep);
    } else {
        mnt = nsb_mask_null(ctx, phase);
    }
    if (mnt < 0)
        return nsb_done(-1, -1, target);
    *phase = NSB_PH_MOUNT;
    if (nsb_attach(mnt, target) < 0)
        return nsb_done(-1, mnt, target);
    if (*made < 0) {
        *made = mnt; /* attached now: the source of the next clones */
        mnt = -1;
    }
    return nsb_done(0, mnt, target);
}

static int nsb_step_readonly(const struct nsb_mount_step *st, struct nsb_mount_ctx *ctx,
                             int *phase, struct nsb_mount_report *rep)
{
    int mnt, target = nsb_open_target(st, ctx, 0, phase, NULL);
    if (target < 0)
        return nsb_skipped(target);
    *phase = NSB_PH_SOURCE;
    mnt = nsb_open_tree(target, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH |
                        AT_RECURSIVE);
    if (mnt < 0)
        return nsb_done(-1, -1, target);
    *phase = NSB_PH_SETATTR;
    if (nsb_setattr(mnt, MOUNT_ATTR_RDONLY | st->flags, -1, 1) < 0)
        return nsb_done(-1, mnt, target);
    *phase = NSB_PH_MOUNT;
    return nsb_done(nsb_attach(mnt, target), mnt, target);
}

/* MKDIR, DEVICE, SYMLINK: create the target inside the root, as `what`. */
static int nsb_create_step(const struct nsb_mount_step *st, struct nsb_mount_ctx *ctx,
                           int *phase, enum nsb_make_what what)
{
    struct nsb_make make = {what, st->mode, st->dev, st->source};
    if (!(st->opts & NSB_MNTF_IN_ROOT) || ctx->root < 0) {
        *phase = NSB_PH_ROOT;
        errno = EBADF;
        return -1;
    }
    *phase = NSB_PH_CREATE;
    return nsb_create_in_root(ctx->root, st->target, &make, ctx);
}

static int nsb_step_mkdir(const struct nsb_mount_step *st, struct nsb_mount_ctx *ctx,
                          int *phase, struct nsb_mount_report *rep)
{
    return nsb_create_step(st, ctx, phase, NSB_MAKE_DIR);
}

static int nsb_step_device(const struct nsb_mount_step *st, struct nsb_mount_ctx *ctx,
                           int *phase, struct nsb_mount_report *rep)
{
    struct nsb_mount_step bind;
    if (nsb_create_step(st, ctx, phase, NSB_MAKE_DEVICE) == 0)
        return 0;
    if (errno != EPERM || !st->source)
        return -1;
    /* no mknod in a user namespace: bind the caller's device node instead */
    memcpy(&bind, st, sizeof(bind));
    bind.kind = NSB_MNT_BIND;
    bind.opts = NSB_MNTF_IN_ROOT | NSB_MNTF_CREATE_FILE;
    bind.fd = -1;
    bind.flags = 0;
    *phase = NSB_PH_MOUNT;
    return nsb_step_bind(&bind, ctx, phase, rep);
}

static int nsb_step_symlink(const struct nsb_mount_step *st, struct nsb_mount_ctx *ctx,
                            int *phase, struct nsb_mount_report *rep)
{
    return nsb_create_step(st, ctx, phase, NSB_MAKE_SYMLINK);
}

/* PROPAGATION, SETATTR: mount_setattr(attr) on the mount at the target. */
static int nsb_setattr_target(const struct nsb_mount_step *st, struct nsb_mount_ctx *ctx,
                              int *phase, struct mount_attr *attr)
{
    int rec = (st->opts & NSB_MNTF_RECURSIVE) != 0;
    int rc, target = nsb_open_target(st, ctx, 0, phase, NULL);
    if (target < 0)
        return nsb_skipped(target);
    *phase = NSB_PH_SETATTR;
    rc = nsb_mount_setattr(target, "", AT_EMPTY_PATH | (rec ? AT_RECURSIVE : 0), attr,
                           sizeof(*attr));
    return nsb_done(rc, -1, target);
}

static int nsb_step_propagation(const struct nsb_mount_step *st, struct nsb_mount_ctx *ctx,
                                int *phase, struct nsb_mount_report *rep)
{
    struct mount_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.propagation = st->flags;
    return nsb_setattr_target(st, ctx, phase, &attr);
}

static int nsb_step_setattr(const struct nsb_mount_step *st, struct nsb_mount_ctx *ctx,
                            int *phase, struct nsb_mount_report *rep)
{
    struct mount_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.attr_set = st->flags;
    return nsb_setattr_target(st, ctx, phase, &attr);
}

/* ---------------------------------------------------------------- dispatch */

/* Indexed by enum nsb_mount_kind; a kind without an entry (NULL) is EINVAL. */
static const nsb_step_fn nsb_step_fns[NSB_MNT_KIND_COUNT] = {
    [NSB_MNT_CLASSIC] = nsb_step_classic,
    [NSB_MNT_FS] = nsb_step_fs,
    [NSB_MNT_BIND] = nsb_step_bind,
    [NSB_MNT_ROOT] = nsb_step_root,
    [NSB_MNT_MASK] = nsb_step_mask,
    [NSB_MNT_READONLY] = nsb_step_readonly,
    [NSB_MNT_MKDIR] = nsb_step_mkdir,
    [NSB_MNT_DEVICE] = nsb_step_device,
    [NSB_MNT_SYMLINK] = nsb_step_symlink,
    [NSB_MNT_PROPAGATION] = nsb_step_propagation,
    [NSB_MNT_SETATTR] = nsb_step_setattr,
};

/* Whether a kind creates in the root, where it may reuse ctx->dir; any other
 * step forgets that directory (a mount may now cover it). */
static int nsb_kind_creates(int kind)
{
    return kind == NSB_MNT_MKDIR || kind == NSB_MNT_DEVICE || kind == NSB_MNT_SYMLINK;
}

void nsb_mount_ctx_init(struct nsb_mount_ctx *ctx)
{
    memset(ctx, 0, sizeof(*ctx));
    ctx->root = ctx->dir = ctx->mask_dir = ctx->mask_file = ctx->umask = ctx->null_src = -1;
    ctx->last = -1;
}

void nsb_mount_ctx_close(struct nsb_mount_ctx *ctx)
{
    int *fds[] = {&ctx->root,      &ctx->dir,      &ctx->mask_dir,
                  &ctx->mask_file, &ctx->null_src, &ctx->last};
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
        const struct nsb_mount_step *st = &steps[i];
        int phase = NSB_PH_MOUNT;
        if (!nsb_kind_creates(st->kind))
            nsb_forget_dir(ctx);
        if (st->kind != NSB_MNT_ROOT || !(st->opts & NSB_MNTF_LAST_MOUNT))
            nsb_forget_last(ctx); /* only the step right after may take it */
        errno = 0;
        if (st->kind < 0 || st->kind >= NSB_MNT_KIND_COUNT || !nsb_step_fns[st->kind]) {
            errno = EINVAL;
            rc = -1;
        } else {
            rc = nsb_step_fns[st->kind](st, ctx, &phase, report);
        }
        if (rc < 0) {
            report->index = i;
            report->err = errno;
            report->phase = phase;
            break;
        }
    }
    nsb_forget_dir(ctx);
    nsb_forget_last(ctx);
    if (ctx->umask >= 0) {
        syscall(__NR_umask, ctx->umask);
        ctx->umask = -1;
    }
    return rc;
}
