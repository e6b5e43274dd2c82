/*
 * nsbind spawn engine: a plan filled by Python, executed in C by a child made
 * with clone3 - on its own stack with CLONE_VM (vfork style) where the plan
 * allows it - that runs no Python, takes no lock and allocates no memory
 * between clone3 and execve.
 *
 * The child's steps, in this fixed order (nsb_child_main in spawn.c; the order
 * runc and crun follow), each named by its enum nsb_spawn_step:
 *   wait for the parent (it writes the user namespace id maps)   SYNC
 *   join cgroup v1 hierarchies (write "0" to each cgroup.procs;   CGROUP
 *     v2 needs no step: CLONE_INTO_CGROUP)
 *   join prepared namespaces (a warm pool), in the order the      SETNS
 *     plan lists them: Python sorts them by
 *     nsbind.flags.NAMESPACE_ORDER (USER, NET, UTS, IPC, CGROUP,
 *     PID, TIME, MNT): the user namespace first (it grants the
 *     privileges the other joins need), the mount namespace last
 *   unshare (a private copy of a joined mount namespace)          UNSHARE
 *   fd mapping (dup3 as dup2), close every other fd (before any   DUP2, CLOSE_RANGE
 *     chdir)
 *   setsid / setpgid                                              SETSID, SETPGID
 *   hostname, domainname                                          HOSTNAME, DOMAINNAME
 *   bring lo up in a new network namespace                        LOOPBACK
 *   mounts, in the order given (mountsteps.h: resolved in the     MOUNT
 *     root for a rootfs); then the fds the steps were handed
 *     (plan->mounts[].fd, .userns_fd) are closed
 *   into the new root (fchdir to the fd of the root the mount     PIVOT_ROOT
 *     steps set - a rootfs's path is looked up once, by its ROOT
 *     step - else chdir plan->pivot_root), pivot_root(".", "."),
 *     detach the old root, chdir "/"
 *   with a terminal (plan->console_sock; terminal.h): a new pty   TERMINAL
 *     from the root's /dev/ptmx, its peer bound onto a fresh        CONSOLE
 *     /dev/console (with a root), the window size, the master
 *     sent to the parent, setsid, the peer as controlling
 *     terminal and as fds 0, 1 and 2
 *   chdir to the working directory                                CHDIR
 *   rlimits                                                       RLIMIT
 *   bounding set drop (needs CAP_SETPCAP: before setuid), then    CAPBSET, SETUID
 *     PR_SET_KEEPCAPS when the uid changes
 *   setgroups / setresgid / setresuid (keeping capabilities)      SETGROUPS, SETGID, SETUID
 *   capset, ambient clear and raise (or, without capabilities     CAPSET, AMBIENT
 *     to set, clear the inheritable and ambient sets)
 *   no_new_privs, parent-death signal, umask (cannot fail)        NO_NEW_PRIVS, PDEATHSIG
 *   with init: fork; the parent stays as PID 1, closes every fd   INIT
 *     (it keeps none: init.h) and forwards signals and reaps
 *   default signal handlers, empty signal mask                    SIGNALS
 *   with a start gate (plan->gate_fd: runc's exec.fifo; gate.h):  GATE
 *     probe /proc/self/fd/N for writing, report "parked" (a
 *     report with step GATE and err 0) over err_fd and close it,
 *     then block opening the FIFO for writing until a reader
 *     comes, write "0", close it.  Needs procfs at /proc in the
 *     new root.  After this step failures show only as the exit
 *     status (127): the parent no longer reads err_fd; with
 *     use_vm it runs on in the child's memory, so errno is left
 *     alone from the report on (rawsys.h; nsbind.sharedchild
 *     keeps the stack and the plan until the child has gone on)
 *   load the seccomp filter (seccomp(2), SECCOMP_SET_MODE_FILTER: SECCOMP
 *     the kernel wants no_new_privs or CAP_SYS_ADMIN in the
 *     child's user namespace, and by now the child may have
 *     dropped its capabilities: else EACCES); after the init
 *     fork, so that the command is filtered and the init is not.
 *     Under the filter a failed exec still reports into shared
 *     memory; over err_fd only if write(2) is allowed, else the
 *     parent sees the exec as done and the child exit 127 (or die
 *     by SIGILL if exit_group is refused too)
 *   execve, trying each candidate path                            EXEC
 * The first failing step is reported as a struct nsb_spawn_report - straight
 * into plan->report when the parent is suspended (CLONE_VM|CLONE_VFORK: no pipe
 * needed), else over err_fd (close-on-exec: EOF means the exec succeeded) -
 * and the child exits with status NSB_EXIT_FAILED (127, as a shell's exec).
 * The report's index says which item of a list failed (mount, rlimit, fd,
 * exec path, namespace, ...); for the steps that have no list it names the
 * sub-step instead (enum nsb_spawn_substep).
 */
#ifndef NSBIND_SPAWN_H
#define NSBIND_SPAWN_H

#include "mountsteps.h"

/* ---- cdef-begin ---- */

/* The exit status of a child whose step failed (it reported why first). */
#define NSB_EXIT_FAILED 127

enum nsb_spawn_step {
    NSB_STEP_NONE = 0,
    NSB_STEP_SYNC = 1,
    NSB_STEP_SETSID = 2,
    NSB_STEP_SETPGID = 3,
    NSB_STEP_HOSTNAME = 4,
    NSB_STEP_DOMAINNAME = 5,
    NSB_STEP_MOUNT = 6,
    NSB_STEP_PIVOT_ROOT = 7,
    NSB_STEP_CHDIR = 8,
    NSB_STEP_RLIMIT = 9,
    NSB_STEP_SETGROUPS = 10,
    NSB_STEP_SETGID = 11,
    NSB_STEP_SETUID = 12,
    NSB_STEP_CAPBSET = 13,
    NSB_STEP_CAPSET = 14,
    NSB_STEP_AMBIENT = 15,
    NSB_STEP_NO_NEW_PRIVS = 16,
    NSB_STEP_PDEATHSIG = 17,
    NSB_STEP_DUP2 = 18,
    NSB_STEP_CLOSE_RANGE = 19,
    NSB_STEP_SIGNALS = 20,
    NSB_STEP_EXEC = 21,
    NSB_STEP_LOOPBACK = 22,
    NSB_STEP_INIT = 23,
    NSB_STEP_SETNS = 24,
    NSB_STEP_CGROUP = 25,
    NSB_STEP_UNSHARE = 26,
    NSB_STEP_SECCOMP = 27,
    NSB_STEP_GATE = 28,
    NSB_STEP_TERMINAL = 29,
    NSB_STEP_CONSOLE = 30
};

/* struct nsb_spawn_report.index of the steps that have sub-steps, not a list. */
enum nsb_spawn_substep {
    NSB_SUB_SYNC_WAIT = 0,     /* SYNC: read the parent's byte */
    NSB_SUB_SYNC_ROOT = 1,     /* SYNC: setresgid/setresuid 0 in the new user namespace */
    NSB_SUB_PIVOT_ENTER = 0,   /* PIVOT_ROOT: fchdir (or chdir) into the new root */
    NSB_SUB_PIVOT_ROOT = 1,    /* PIVOT_ROOT: pivot_root(".", ".") */
    NSB_SUB_PIVOT_DETACH = 2,  /* PIVOT_ROOT: umount2(".", MNT_DETACH) of the old root */
    NSB_SUB_PIVOT_CHDIR = 3,   /* PIVOT_ROOT: chdir("/") in the new root */
    NSB_SUB_LOOPBACK_SOCKET = 0,   /* LOOPBACK: the socket for the ioctls */
    NSB_SUB_LOOPBACK_GETFLAGS = 1, /* LOOPBACK: SIOCGIFFLAGS */
    NSB_SUB_LOOPBACK_SETFLAGS = 2, /* LOOPBACK: SIOCSIFFLAGS (IFF_UP) */
    NSB_SUB_SETUID_ID = 0,         /* SETUID: setresuid */
    NSB_SUB_SETUID_KEEPCAPS = 1,   /* SETUID: PR_SET_KEEPCAPS before it */
    NSB_SUB_CAPSET_SETS = 0,       /* CAPSET: the plan's sets */
    NSB_SUB_CAPSET_CLEAR_INHERITABLE = 1, /* CAPSET: capget/capset emptying inheritable */
    NSB_SUB_AMBIENT_CLEAR = -1,    /* AMBIENT: clear all (else index is the capability raised) */
    NSB_SUB_SIGNALS_MASK = 0,      /* SIGNALS: the empty mask (else index is the signal reset) */
    NSB_SUB_TTY_PTMX = 0,          /* TERMINAL: open /dev/ptmx */
    NSB_SUB_TTY_UNLOCK = 1,        /* TERMINAL: ioctl TIOCSPTLCK 0 (unlock the peer) */
    NSB_SUB_TTY_PEER = 2,          /* TERMINAL: ioctl TIOCGPTPEER (open the peer) */
    NSB_SUB_TTY_WINSIZE = 3,       /* TERMINAL: ioctl TIOCSWINSZ */
    NSB_SUB_TTY_SEND = 4,          /* TERMINAL: send the master (SCM_RIGHTS) */
    NSB_SUB_TTY_SETSID = 5,        /* TERMINAL: setsid */
    NSB_SUB_TTY_SETCTTY = 6,       /* TERMINAL: ioctl TIOCSCTTY (controlling terminal) */
    NSB_SUB_TTY_STDIO = 7,         /* TERMINAL: dup3 the peer onto 0, 1, 2 */
    NSB_SUB_CONSOLE_DEV = 0,       /* CONSOLE: open /dev (O_DIRECTORY|O_NOFOLLOW) */
    NSB_SUB_CONSOLE_UNLINK = 1,    /* CONSOLE: unlinkat whatever /dev/console was */
    NSB_SUB_CONSOLE_CREATE = 2,    /* CONSOLE: a fresh file (O_CREAT|O_EXCL|O_NOFOLLOW) */
    NSB_SUB_CONSOLE_CLONE = 3,     /* CONSOLE: open_tree(peer, CLONE|AT_EMPTY_PATH) */
    NSB_SUB_CONSOLE_MOUNT = 4      /* CONSOLE: move_mount of that onto the file */
};

struct nsb_spawn_report {
    int step;    /* enum nsb_spawn_step */
    int err;     /* errno */
    int index;   /* which mount, rlimit, fd, exec path, ...; or enum nsb_spawn_substep */
    int phase;   /* mounts: enum nsb_mount_phase */
    char msg[NSB_REPORT_MSG_SIZE]; /* mounts: the kernel's fs-context message, or "" */
};

struct nsb_rlimit {
    int resource;
    unsigned long long soft;
    unsigned long long hard;
};

struct nsb_fd_map {
    int from;               /* an fd above every target (the parent arranges it) */
    int to;
};

struct nsb_spawn_plan {
    /* what to run */
    char *const *exec_paths;  /* candidate paths, NULL-terminated: tried in order */
    char *const *argv;
    char *const *envp;
    /* how to clone */
    unsigned long long clone_flags;  /* CLONE_NEW* and the like */
    int cgroup_fd;                   /* -1, or a cgroup v2 directory (CLONE_INTO_CGROUP) */
    int use_vm;                      /* child on its own stack, sharing memory: vfork style,
                                        or with sync_fd or gate_fd while the parent runs on */
    int sync_fd;                     /* -1, or read end: wait for one byte from the parent */
    int sync_peer_fd;                /* the parent's write end: the child's copy is closed */
    int userns_root;                 /* 1: after SYNC, become uid and gid 0 of the new user
                                        namespace (both mapped), so that the steps that make
                                        files (mount points, /dev) run as a mapped id */
    int err_fd;                      /* -1, or write end of the report pipe, close-on-exec */
    struct nsb_spawn_report *report; /* NULL, or where a CLONE_VM|CLONE_VFORK child reports */
    /* the steps */
    const int *cgroup_procs_fds;     /* cgroup.procs of v1 hierarchies: the child writes "0" */
    int n_cgroup_procs;
    const int *setns_fds;            /* namespaces to join first (e.g. from a NamespacePool) */
    const int *setns_types;          /* their CLONE_NEW* types */
    int n_setns;
    int unshare_flags;               /* 0, or CLONE_NEW* to unshare after the setns list (a
                                        copy of a joined mount namespace: RootFS.prepare) */
    int setsid;
    int pgid;                        /* -1: leave; 0: own group; else join that group */
    const char *hostname;
    const char *domainname;
    int loopback;                    /* 1: set IFF_UP on lo */
    const struct nsb_mount_step *mounts;
    int n_mounts;
    int null_mount_fd;               /* -1, or a detached bind of the caller's /dev/null that
                                        the first file MASK attaches (the child cannot reach
                                        the caller's /dev/null from a prepared root) */
    const char *pivot_root;          /* NULL, or the new root directory: entered by the fd
                                        of the mount steps' root if they set one, else
                                        by this path */
    const char *cwd;                 /* NULL: leave */
    const struct nsb_rlimit *rlimits;
    int n_rlimits;
    int set_groups;                  /* 1: setgroups(groups, n_groups) */
    const unsigned int *groups;
    int n_groups;
    long long gid;                   /* -1: leave */
    long long uid;                   /* -1: leave */
    int set_caps;                    /* 1: apply the four sets below */
    int clear_inheritable;           /* without set_caps: empty inheritable and ambient sets */
    unsigned long long cap_bounding; /* capabilities kept in the bounding set */
    unsigned long long cap_effective;
    unsigned long long cap_permitted;
    unsigned long long cap_inheritable;
    unsigned long long cap_ambient;
    int no_new_privs;
    int pdeathsig;                   /* 0: none */
    int umask;                       /* -1: leave */
    const struct nsb_fd_map *fds;
    int n_fds;
    const int *keep_fds;             /* sorted: the targets of fds, and err_fd */
    int n_keep_fds;
    int close_fds;                   /* 1: close every fd >= 3 not in keep_fds */
    int default_signals;             /* 1: SIGPIPE, SIGXFSZ back to SIG_DFL (as subprocess) */
    int init;                        /* 1: stay as a reaping init that keeps no fd, fork the
                                        command (no use_vm; init.h) */    const void *seccomp_filter;      /* NULL, or a BPF program: struct sock_filter[] (owned by
                                        the Python Plan), loaded right before the exec */
    unsigned short seccomp_len;      /* its length in instructions (struct sock_fprog.len) */
    unsigned int seccomp_flags;      /* SECCOMP_FILTER_FLAG_* for seccomp(2) */
    int gate_fd;                     /* -1, or an O_PATH fd of a FIFO (close-on-exec): the
                                        GATE step; needs err_fd and no CLONE_VFORK (the
                                        parent returns once the child is parked) */
    int console_sock;                /* -1, or an AF_UNIX socket (close-on-exec): the
                                        TERMINAL step sends the pty master over it */
    int console_mount;               /* 1: bind the pty peer onto a fresh /dev/console */
    unsigned short console_rows;     /* the window size; 0 and 0: leave it */
    unsigned short console_cols;
};

struct nsb_spawn_result {
    int pid;
    int pidfd;
    void *stack;          /* non-NULL: freed by nsb_spawn_release, or for a child parked
                             at its gate by nsb_spawn_free_stack once it exec'd or died */
    size_t stack_size;
};

/* A plan that does nothing but exec: every fd field -1, no ids, no umask, and the
 * subprocess defaults (signals back to SIG_DFL, inheritable capabilities cleared). */
void nsb_spawn_plan_init(struct nsb_spawn_plan *plan);
/* Point out[] at the n NUL-terminated strings packed one after another in blob,
 * with a NULL after each group: counts[0] strings, NULL, counts[1] strings, NULL,
 * ... (ngroups groups; out has n + ngroups slots).  One buffer for a whole
 * argv/envp instead of one per string. */
void nsb_strv_fill(char *blob, char **out, const int *counts, int ngroups);
int nsb_spawn(const struct nsb_spawn_plan *plan, struct nsb_spawn_result *out);
int nsb_spawn_release(int sync_w, int err_r, struct nsb_spawn_result *res,
                      struct nsb_spawn_report *report);
int nsb_spawn_has_vm_clone(void);
void nsb_spawn_free_stack(struct nsb_spawn_result *res);

/* ---- cdef-end ---- */

#endif /* NSBIND_SPAWN_H */
