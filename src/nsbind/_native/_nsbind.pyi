"""Types for the compiled cffi module (from constants.h and the cdef sections of build.HEADERS)."""

from typing import Any

import _cffi_backend

ffi: _cffi_backend.FFI

class _Lib:
    CLONE_VM: int
    CLONE_FS: int
    CLONE_FILES: int
    CLONE_SIGHAND: int
    CLONE_PIDFD: int
    CLONE_PTRACE: int
    CLONE_VFORK: int
    CLONE_PARENT: int
    CLONE_THREAD: int
    CLONE_NEWNS: int
    CLONE_SYSVSEM: int
    CLONE_SETTLS: int
    CLONE_PARENT_SETTID: int
    CLONE_CHILD_CLEARTID: int
    CLONE_UNTRACED: int
    CLONE_CHILD_SETTID: int
    CLONE_NEWCGROUP: int
    CLONE_NEWUTS: int
    CLONE_NEWIPC: int
    CLONE_NEWUSER: int
    CLONE_NEWPID: int
    CLONE_NEWNET: int
    CLONE_IO: int
    CLONE_NEWTIME: int
    CLONE_CLEAR_SIGHAND: int
    CLONE_INTO_CGROUP: int
    CLONE_ARGS_SIZE_VER0: int
    CLONE_ARGS_SIZE_VER1: int
    CLONE_ARGS_SIZE_VER2: int
    MS_RDONLY: int
    MS_NOSUID: int
    MS_NODEV: int
    MS_NOEXEC: int
    MS_SYNCHRONOUS: int
    MS_REMOUNT: int
    MS_MANDLOCK: int
    MS_DIRSYNC: int
    MS_NOSYMFOLLOW: int
    MS_NOATIME: int
    MS_NODIRATIME: int
    MS_BIND: int
    MS_MOVE: int
    MS_REC: int
    MS_SILENT: int
    MS_POSIXACL: int
    MS_UNBINDABLE: int
    MS_PRIVATE: int
    MS_SLAVE: int
    MS_SHARED: int
    MS_RELATIME: int
    MS_STRICTATIME: int
    MS_LAZYTIME: int
    MNT_FORCE: int
    MNT_DETACH: int
    MNT_EXPIRE: int
    UMOUNT_NOFOLLOW: int
    FSOPEN_CLOEXEC: int
    FSMOUNT_CLOEXEC: int
    FSCONFIG_SET_FLAG: int
    FSCONFIG_SET_STRING: int
    FSCONFIG_SET_BINARY: int
    FSCONFIG_SET_PATH: int
    FSCONFIG_SET_PATH_EMPTY: int
    FSCONFIG_SET_FD: int
    FSCONFIG_CMD_CREATE: int
    FSCONFIG_CMD_RECONFIGURE: int
    OPEN_TREE_CLONE: int
    OPEN_TREE_CLOEXEC: int
    MOVE_MOUNT_F_SYMLINKS: int
    MOVE_MOUNT_F_AUTOMOUNTS: int
    MOVE_MOUNT_F_EMPTY_PATH: int
    MOVE_MOUNT_T_SYMLINKS: int
    MOVE_MOUNT_T_AUTOMOUNTS: int
    MOVE_MOUNT_T_EMPTY_PATH: int
    MOVE_MOUNT_SET_GROUP: int
    MOUNT_ATTR_RDONLY: int
    MOUNT_ATTR_NOSUID: int
    MOUNT_ATTR_NODEV: int
    MOUNT_ATTR_NOEXEC: int
    MOUNT_ATTR__ATIME: int
    MOUNT_ATTR_RELATIME: int
    MOUNT_ATTR_NOATIME: int
    MOUNT_ATTR_STRICTATIME: int
    MOUNT_ATTR_NODIRATIME: int
    MOUNT_ATTR_IDMAP: int
    MOUNT_ATTR_NOSYMFOLLOW: int
    MOUNT_ATTR_SIZE_VER0: int
    RESOLVE_NO_XDEV: int
    RESOLVE_NO_MAGICLINKS: int
    RESOLVE_NO_SYMLINKS: int
    RESOLVE_BENEATH: int
    RESOLVE_IN_ROOT: int
    RESOLVE_CACHED: int
    AT_FDCWD: int
    AT_SYMLINK_NOFOLLOW: int
    AT_SYMLINK_FOLLOW: int
    AT_REMOVEDIR: int
    AT_NO_AUTOMOUNT: int
    AT_EMPTY_PATH: int
    AT_RECURSIVE: int
    P_PIDFD: int
    PIDFD_NONBLOCK: int
    WEXITED: int
    WSTOPPED: int
    WCONTINUED: int
    WNOHANG: int
    WNOWAIT: int
    CLD_EXITED: int
    CLD_KILLED: int
    CLD_DUMPED: int
    CLD_TRAPPED: int
    CLD_STOPPED: int
    CLD_CONTINUED: int
    CLOSE_RANGE_UNSHARE: int
    CLOSE_RANGE_CLOEXEC: int
    PR_SET_PDEATHSIG: int
    PR_GET_PDEATHSIG: int
    PR_SET_DUMPABLE: int
    PR_GET_DUMPABLE: int
    PR_SET_KEEPCAPS: int
    PR_GET_KEEPCAPS: int
    PR_SET_NAME: int
    PR_GET_NAME: int
    PR_SET_NO_NEW_PRIVS: int
    PR_GET_NO_NEW_PRIVS: int
    PR_CAPBSET_READ: int
    PR_CAPBSET_DROP: int
    PR_CAP_AMBIENT: int
    PR_CAP_AMBIENT_IS_SET: int
    PR_CAP_AMBIENT_RAISE: int
    PR_CAP_AMBIENT_LOWER: int
    PR_CAP_AMBIENT_CLEAR_ALL: int
    PR_SET_CHILD_SUBREAPER: int
    PR_GET_CHILD_SUBREAPER: int
    PR_SET_SECUREBITS: int
    PR_GET_SECUREBITS: int
    CAP_LAST_CAP: int
    CAP_CHOWN: int
    CAP_DAC_OVERRIDE: int
    CAP_DAC_READ_SEARCH: int
    CAP_FOWNER: int
    CAP_FSETID: int
    CAP_KILL: int
    CAP_SETGID: int
    CAP_SETUID: int
    CAP_SETPCAP: int
    CAP_LINUX_IMMUTABLE: int
    CAP_NET_BIND_SERVICE: int
    CAP_NET_BROADCAST: int
    CAP_NET_ADMIN: int
    CAP_NET_RAW: int
    CAP_IPC_LOCK: int
    CAP_IPC_OWNER: int
    CAP_SYS_MODULE: int
    CAP_SYS_RAWIO: int
    CAP_SYS_CHROOT: int
    CAP_SYS_PTRACE: int
    CAP_SYS_PACCT: int
    CAP_SYS_ADMIN: int
    CAP_SYS_BOOT: int
    CAP_SYS_NICE: int
    CAP_SYS_RESOURCE: int
    CAP_SYS_TIME: int
    CAP_SYS_TTY_CONFIG: int
    CAP_MKNOD: int
    CAP_LEASE: int
    CAP_AUDIT_WRITE: int
    CAP_AUDIT_CONTROL: int
    CAP_SETFCAP: int
    CAP_MAC_OVERRIDE: int
    CAP_MAC_ADMIN: int
    CAP_SYSLOG: int
    CAP_WAKE_ALARM: int
    CAP_BLOCK_SUSPEND: int
    CAP_AUDIT_READ: int
    CAP_PERFMON: int
    CAP_BPF: int
    CAP_CHECKPOINT_RESTORE: int
    NS_GET_USERNS: int
    NS_GET_PARENT: int
    NS_GET_NSTYPE: int
    NS_GET_OWNER_UID: int
    PROC_SUPER_MAGIC: int
    SYSFS_MAGIC: int
    TMPFS_MAGIC: int
    CGROUP_SUPER_MAGIC: int
    CGROUP2_SUPER_MAGIC: int
    NSFS_MAGIC: int
    OVERLAYFS_SUPER_MAGIC: int
    DEVPTS_SUPER_MAGIC: int
    NSB_MNT_CLASSIC: int
    NSB_MNT_FS: int
    NSB_MNT_BIND: int
    NSB_MNT_ROOT: int
    NSB_MNT_MASK: int
    NSB_MNT_READONLY: int
    NSB_MNT_MKDIR: int
    NSB_MNT_DEVICE: int
    NSB_MNT_SYMLINK: int
    NSB_MNT_PROPAGATION: int
    NSB_MNT_SETATTR: int
    NSB_MNT_KIND_COUNT: int
    NSB_MNTF_IN_ROOT: int
    NSB_MNTF_OPTIONAL: int
    NSB_MNTF_CREATE_DIR: int
    NSB_MNTF_CREATE_FILE: int
    NSB_MNTF_RECURSIVE: int
    NSB_MNTF_ATTACH_FD: int
    NSB_MNTF_PINNED: int
    NSB_MNTF_SELF_BIND: int
    NSB_MNTF_LAST_MOUNT: int
    NSB_PH_MOUNT: int
    NSB_PH_RESOLVE: int
    NSB_PH_CREATE: int
    NSB_PH_SOURCE: int
    NSB_PH_CONFIG: int
    NSB_PH_SETATTR: int
    NSB_PH_VERIFY: int
    NSB_PH_ROOT: int
    NSB_PH_PINNED: int
    NSB_PH_PROC: int
    NSB_PH_COUNT: int
    NSB_REPORT_MSG_SIZE: int
    NSB_EXIT_FAILED: int
    NSB_STEP_NONE: int
    NSB_STEP_SYNC: int
    NSB_STEP_SETSID: int
    NSB_STEP_SETPGID: int
    NSB_STEP_HOSTNAME: int
    NSB_STEP_DOMAINNAME: int
    NSB_STEP_MOUNT: int
    NSB_STEP_PIVOT_ROOT: int
    NSB_STEP_CHDIR: int
    NSB_STEP_RLIMIT: int
    NSB_STEP_SETGROUPS: int
    NSB_STEP_SETGID: int
    NSB_STEP_SETUID: int
    NSB_STEP_CAPBSET: int
    NSB_STEP_CAPSET: int
    NSB_STEP_AMBIENT: int
    NSB_STEP_NO_NEW_PRIVS: int
    NSB_STEP_PDEATHSIG: int
    NSB_STEP_DUP2: int
    NSB_STEP_CLOSE_RANGE: int
    NSB_STEP_SIGNALS: int
    NSB_STEP_EXEC: int
    NSB_STEP_LOOPBACK: int
    NSB_STEP_INIT: int
    NSB_STEP_SETNS: int
    NSB_STEP_CGROUP: int
    NSB_STEP_UNSHARE: int
    NSB_STEP_SECCOMP: int
    NSB_STEP_GATE: int
    NSB_STEP_TERMINAL: int
    NSB_STEP_CONSOLE: int
    NSB_SUB_SYNC_WAIT: int
    NSB_SUB_SYNC_ROOT: int
    NSB_SUB_PIVOT_ENTER: int
    NSB_SUB_PIVOT_ROOT: int
    NSB_SUB_PIVOT_DETACH: int
    NSB_SUB_PIVOT_CHDIR: int
    NSB_SUB_LOOPBACK_SOCKET: int
    NSB_SUB_LOOPBACK_GETFLAGS: int
    NSB_SUB_LOOPBACK_SETFLAGS: int
    NSB_SUB_SETUID_ID: int
    NSB_SUB_SETUID_KEEPCAPS: int
    NSB_SUB_CAPSET_SETS: int
    NSB_SUB_CAPSET_CLEAR_INHERITABLE: int
    NSB_SUB_AMBIENT_CLEAR: int
    NSB_SUB_SIGNALS_MASK: int
    NSB_SUB_TTY_PTMX: int
    NSB_SUB_TTY_UNLOCK: int
    NSB_SUB_TTY_PEER: int
    NSB_SUB_TTY_WINSIZE: int
    NSB_SUB_TTY_SEND: int
    NSB_SUB_TTY_SETSID: int
    NSB_SUB_TTY_SETCTTY: int
    NSB_SUB_TTY_STDIO: int
    NSB_SUB_CONSOLE_DEV: int
    NSB_SUB_CONSOLE_UNLINK: int
    NSB_SUB_CONSOLE_CREATE: int
    NSB_SUB_CONSOLE_CLONE: int
    NSB_SUB_CONSOLE_MOUNT: int
    def nsb_clone3(self, args: Any, size: int, /) -> int: ...
    def nsb_unshare(self, flags: int, /) -> int: ...
    def nsb_setns(self, fd: int, nstype: int, /) -> int: ...
    def nsb_pidfd_open(self, pid: int, flags: int, /) -> int: ...
    def nsb_pidfd_send_signal(self, pidfd: int, sig: int, flags: int, /) -> int: ...
    def nsb_pidfd_getfd(self, pidfd: int, targetfd: int, flags: int, /) -> int: ...
    def nsb_waitid_pidfd(self, pidfd: int, options: int, out: Any, /) -> int: ...
    def nsb_pivot_root(self, new_root: Any, put_old: Any, /) -> int: ...
    def nsb_mount(self, source: Any, target: Any, fstype: Any, flags: int, data: Any, /) -> int: ...
    def nsb_umount2(self, target: Any, flags: int, /) -> int: ...
    def nsb_fsopen(self, fsname: Any, flags: int, /) -> int: ...
    def nsb_fsconfig(self, fd: int, cmd: int, key: Any, value: Any, aux: int, /) -> int: ...
    def nsb_fsmount(self, fd: int, flags: int, attr_flags: int, /) -> int: ...
    def nsb_move_mount(self, from_dfd: int, from_path: Any, to_dfd: int, to_path: Any, flags: int, /) -> int: ...
    def nsb_open_tree(self, dfd: int, path: Any, flags: int, /) -> int: ...
    def nsb_mount_setattr(self, dfd: int, path: Any, flags: int, attr: Any, size: int, /) -> int: ...
    def nsb_openat2(self, dfd: int, path: Any, how: Any, size: int, /) -> int: ...
    def nsb_sethostname(self, name: Any, len: int, /) -> int: ...
    def nsb_setdomainname(self, name: Any, len: int, /) -> int: ...
    def nsb_close_range(self, first: int, last: int, flags: int, /) -> int: ...
    def nsb_prctl(self, option: int, a2: int, a3: int, a4: int, a5: int, /) -> int: ...
    def nsb_kcmp_vm(self, pid1: int, pid2: int, /) -> int: ...
    def nsb_capget(self, pid: int, out: Any, /) -> int: ...
    def nsb_capset(self, caps: Any, /) -> int: ...
    def nsb_ioctl(self, fd: int, request: int, /) -> int: ...
    def nsb_fstatfs_type(self, fd: int, /) -> int: ...
    def nsb_scmp_open(self, name: bytes, /) -> int: ...
    def nsb_scmp_error(self) -> Any: ...
    def nsb_scmp_init(self, def_action: int, /) -> Any: ...
    def nsb_scmp_release(self, ctx: Any, /) -> None: ...
    def nsb_scmp_arch_add(self, ctx: Any, arch_token: int, /) -> int: ...
    def nsb_scmp_arch_resolve_name(self, arch_name: bytes, /) -> int: ...
    def nsb_scmp_attr_set(self, ctx: Any, attr: int, value: int, /) -> int: ...
    def nsb_scmp_syscall_resolve_name(self, name: bytes, /) -> int: ...
    def nsb_scmp_rule_add_array(self, ctx: Any, action: int, syscall: int, arg_cnt: int,
                                arg_array: Any, /) -> int: ...
    def nsb_scmp_export_bpf(self, ctx: Any, fd: int, /) -> int: ...
    def nsb_scmp_version(self, out: Any, /) -> None: ...
    def nsb_bpf_load_cgroup_device(self, insns: Any, n: int, log: Any, log_size: int, /) -> int: ...
    def nsb_bpf_attach_cgroup_device(self, prog_fd: int, cgroup_fd: int, flags: int, /) -> int: ...
    def nsb_bpf_detach_cgroup_device(self, prog_fd: int, cgroup_fd: int, /) -> int: ...
    def nsb_mount_steps(self, steps: Any, n: int, ctx: Any, report: Any, /) -> int: ...
    def nsb_mount_ctx_init(self, ctx: Any, /) -> None: ...
    def nsb_spawn_plan_init(self, plan: Any, /) -> None: ...
    def nsb_strv_fill(self, blob: Any, out: Any, counts: Any, ngroups: int, /) -> None: ...
    def nsb_mount_ctx_close(self, ctx: Any, /) -> None: ...
    def nsb_spawn(self, plan: Any, out: Any, /) -> int: ...
    def nsb_spawn_release(self, sync_w: int, err_r: int, res: Any, report: Any, /) -> int: ...
    def nsb_spawn_has_vm_clone(self, /) -> int: ...
    def nsb_spawn_free_stack(self, res: Any, /) -> None: ...
    def nsb_clone3_python(self, args: Any, size: int, /) -> int: ...

lib: _Lib
