/*
 * nsbind mount steps: the mounts of a spawn plan (or of mounts.apply), run in
 * C by the same code in both places.  Async-signal-safe: no allocation, no
 * locks, syscalls only, so the spawn child can run them between clone3 and
 * execve.
 *
 * Paths inside a root filesystem (a step with NSB_MNTF_IN_ROOT) are resolved
 * against the root fd set by the last NSB_MNT_ROOT step with
 * openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS): `..`, absolute symlinks
 * and symlinks swapped in by a racing process all stay inside the root.  The
 * last component of a target is never followed (a symlink there is refused
 * with ELOOP), missing targets are created inside the root (mkdir -p through
 * resolved directory fds), and every mount is attached onto the resolved fd
 * with move_mount(MOVE_MOUNT_T_EMPTY_PATH), never onto a string path that
 * could be swapped between the check and the use.
 *
 * The root itself is looked up once: a ROOT step either binds its (PINNED)
 * target onto itself and keeps the attached mount's fd (SELF_BIND), or takes
 * the mount the step before it attached (LAST_MOUNT: an overlay made on its
 * mount point); the spawn child pivots into that fd.  A PINNED host target is
 * resolved with no symlink on the way and must still be the directory whose
 * identity (st_dev, st_ino) the step records: a path swapped since is refused
 * (ESTALE, phase PINNED), never followed to a decoy.
 */
#ifndef NSBIND_MOUNTSTEPS_H
#define NSBIND_MOUNTSTEPS_H

#include "nsbind.h"

/* ---- cdef-begin ---- */

enum nsb_mount_kind {
    NSB_MNT_CLASSIC = 0,   /* mount(source, target, fstype, flags, data): host paths only */
    NSB_MNT_FS = 1,        /* fsopen(fstype) + "source" + options; fsmount(attr); attach */
    NSB_MNT_BIND = 2,      /* open_tree(source, CLONE); mount_setattr(attr, idmap fd); attach */
    NSB_MNT_ROOT = 3,      /* target becomes the root of the following IN_ROOT steps */
    NSB_MNT_MASK = 4,      /* directory: empty read-only tmpfs; else the host /dev/null (1:3) */
    NSB_MNT_READONLY = 5,  /* bind the target onto itself, read-only (recursive) */
    NSB_MNT_MKDIR = 6,     /* mkdir (mode) */
    NSB_MNT_DEVICE = 7,    /* mknod (mode, dev); EPERM (user ns): bind the host's source */
    NSB_MNT_SYMLINK = 8,   /* symlink target -> source */
    NSB_MNT_PROPAGATION = 9, /* mount_setattr propagation (flags: MS_PRIVATE, ...) on target */
    NSB_MNT_SETATTR = 10,   /* mount_setattr attr_set = flags (MOUNT_ATTR_*): a mount's root */
    NSB_MNT_KIND_COUNT      /* not a kind: one past the last (the size of the dispatch table) */
};

enum nsb_mount_opt {
    NSB_MNTF_IN_ROOT = 1,     /* resolve target inside the root (see above) */
    NSB_MNTF_OPTIONAL = 2,    /* a missing target skips the step */
    NSB_MNTF_CREATE_DIR = 4,  /* create a missing target as a directory (and its parents) */
    NSB_MNTF_CREATE_FILE = 8, /* create a missing target as an empty file (parents: dirs) */
    NSB_MNTF_RECURSIVE = 16,  /* BIND, READONLY, PROPAGATION: the whole tree */
    NSB_MNTF_ATTACH_FD = 32,  /* BIND: fd is a detached tree made for this step alone:
                                 attach it as it is, not a clone (a tree detached in
                                 another mount namespace cannot be cloned here) */
    NSB_MNTF_PINNED = 64,     /* a host target (not IN_ROOT): resolved without following
                                 any symlink (RESOLVE_NO_SYMLINKS; one is ELOOP), it must
                                 be the directory pin_dev/pin_ino (else ESTALE) */
    NSB_MNTF_SELF_BIND = 128, /* ROOT: clone the target's mount (RECURSIVE: with its
                                 submounts), attach it onto the target's fd and make the
                                 attached mount the root: the target is looked up once */
    NSB_MNTF_LAST_MOUNT = 256 /* ROOT: the mount the step just before attached (FS, BIND)
                                 is the root; the target is not looked up (EBADF, phase
                                 ROOT, if that step attached nothing) */
};

/*
 * The sub-step a failing mount step was in: struct nsb_mount_report.phase, and
 * struct nsb_spawn_report.phase for NSB_STEP_MOUNT (whose index is the step's
 * place in the list).  Python names them from lib (nsbind.mountstep.MountPhase).
 */
enum nsb_mount_phase {
    NSB_PH_MOUNT = 0,     /* the mount itself (mount, fsmount, move_mount) */
    NSB_PH_RESOLVE = 1,   /* resolving the target */
    NSB_PH_CREATE = 2,    /* creating a missing target */
    NSB_PH_SOURCE = 3,    /* opening the source (open_tree) */
    NSB_PH_CONFIG = 4,    /* fsopen / fsconfig / fsmount */
    NSB_PH_SETATTR = 5,   /* mount_setattr */
    NSB_PH_VERIFY = 6,    /* the mounted filesystem is not what was asked (fs_magic, 1:3) */
    NSB_PH_ROOT = 7,      /* the target is a symlink, or no root was set */
    NSB_PH_PINNED = 8,    /* a PINNED target is not the directory it was pinned to (ESTALE),
                             or a symlink is on the way to it (ELOOP) */
    NSB_PH_PROC = 9,      /* the target lies on procfs and the mount is not proc (EPERM) */
    NSB_PH_COUNT          /* not a phase: one past the last */
};

/* The size of the message buffer of a report (struct nsb_mount_report and
 * struct nsb_spawn_report): the kernel's fs-context message is read into a
 * buffer of this size (mountsteps.c asserts both structs agree). */
#define NSB_REPORT_MSG_SIZE 160

struct nsb_mount_step {
    int kind;               /* enum nsb_mount_kind */
    int opts;               /* enum nsb_mount_opt bits */
    const char *source;     /* NULL for none */
    const char *target;
    const char *fstype;     /* CLASSIC, FS */
    unsigned long flags;    /* CLASSIC: MS_*; FS, BIND, READONLY: MOUNT_ATTR_*; PROPAGATION: MS_* */
    const char *data;       /* CLASSIC: mount data */
    const char *const *options; /* FS: NULL-terminated "key=value" or "flag" strings */
    int fd;                 /* BIND: -1, or the source tree; with MOUNT_ATTR_IDMAP: see userns_fd */
    int userns_fd;          /* BIND with MOUNT_ATTR_IDMAP */
    unsigned int mode;      /* MKDIR, DEVICE */
    unsigned long long dev; /* DEVICE: makedev(major, minor) */
    long long fs_magic;     /* FS: 0, or the f_type the mounted target must show */
    const char *cwd;        /* FS: NULL, or the directory relative option paths start
                               from (the working directory while configuring) */
    unsigned long long pin_dev; /* PINNED: the st_dev and st_ino the target must have */
    unsigned long long pin_ino;
};

struct nsb_mount_report {
    int index;       /* which step */
    int err;         /* errno */
    int phase;       /* enum nsb_mount_phase */
    char msg[NSB_REPORT_MSG_SIZE]; /* the kernel's fs-context message (CONFIG), or "" */
};

/*
 * What a run of steps keeps from one step to the next.  Start with
 * nsb_mount_ctx_init; after the run, the root fd may be used (the spawn child
 * pivots into it) and nsb_mount_ctx_close closes every fd.
 *   root: the root of IN_ROOT steps (NSB_MNT_ROOT).
 *   dir, dir_key, dir_len: the directory the last MKDIR/DEVICE/SYMLINK step
 *     created in, and the target prefix that named it; the next such step in
 *     the same directory creates there without resolving it again.  Any other
 *     step forgets it (a mount may now cover that directory).
 *   mask_dir, mask_file: the empty read-only tmpfs and the /dev/null bind that
 *     the first MASK steps attached; later masks attach clones of them instead
 *     of new superblocks (one empty tmpfs per run, /dev/null checked once).
 *   umask: the umask before the first DEVICE step set it to 0, or -1.
 *   null_src: -1 (file masks bind "/dev/null" as the caller resolves it), or a
 *     detached bind of the caller's /dev/null for the first file mask (set by
 *     the caller after init; closed by nsb_mount_ctx_close if unused).
 *   last: the mount the step just run attached (FS, BIND), for a following
 *     ROOT LAST_MOUNT step; closed before any other step runs.
 */
struct nsb_mount_ctx {
    int root;
    int dir;
    const char *dir_key;
    size_t dir_len;
    int mask_dir;
    int mask_file;
    int umask;
    int null_src;
    int last;
};

void nsb_mount_ctx_init(struct nsb_mount_ctx *ctx);
void nsb_mount_ctx_close(struct nsb_mount_ctx *ctx);

/* Run n steps in order; 0, or -1 with *report filled.  The umask is restored
 * before returning; fds stay in *ctx. */
int nsb_mount_steps(const struct nsb_mount_step *steps, int n, struct nsb_mount_ctx *ctx,
                    struct nsb_mount_report *report);

/* ---- cdef-end ---- */

#endif /* NSBIND_MOUNTSTEPS_H */
