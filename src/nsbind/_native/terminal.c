/* The terminal of a spawn: see terminal.h. */
#include "terminal.h"

#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <termios.h>

#ifndef TIOCGPTPEER
#define TIOCGPTPEER _IO('T', 0x41)
#endif

/* Close fd (if open) without changing errno: the failure being reported keeps its. */
static void nsb_tty_close(int fd)
{
    int saved = errno;
    if (fd >= 0)
        syscall(__NR_close, fd);
    errno = saved;
}

/* TERMINAL: a new pty from /dev/ptmx: its master and its unlocked peer. */
static int nsb_tty_open(int *master, int *peer, int *sub)
{
    int unlock = 0;
    *sub = NSB_SUB_TTY_PTMX;
    *master = (int)syscall(__NR_openat, AT_FDCWD, "/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (*master < 0)
        return -1;
    *sub = NSB_SUB_TTY_UNLOCK;
    if (syscall(__NR_ioctl, *master, TIOCSPTLCK, &unlock) < 0)
        return -1;
    *sub = NSB_SUB_TTY_PEER;
    *peer = (int)syscall(__NR_ioctl, *master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
    return *peer < 0 ? -1 : 0;
}

/* CONSOLE: the peer bound onto a fresh /dev/console, fd to fd (CVE-2025-52565). */
static int nsb_console_mount(int peer, int *sub)
{
    struct stat st;
    int dev, file = -1, tree = -1, rc = -1;
    *sub = NSB_SUB_CONSOLE_DEV;
    dev = (int)syscall(__NR_openat, AT_FDCWD, "/dev",
                       O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dev < 0)
        return -1;
    if (fstatat(dev, "", &st, AT_EMPTY_PATH) < 0)
        goto out;
    if (!S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        goto out;
    }
    *sub = NSB_SUB_CONSOLE_UNLINK; /* a symlink, node or file the root left there */
    if (syscall(__NR_unlinkat, dev, "console", 0) < 0 && errno != ENOENT)
        goto out;
    *sub = NSB_SUB_CONSOLE_CREATE;
    file = (int)syscall(__NR_openat, dev, "console",
                        O_RDONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
    if (file < 0)
        goto out;
    *sub = NSB_SUB_CONSOLE_CLONE;
    tree = nsb_open_tree(peer, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH);
    if (tree < 0)
        goto out;
    *sub = NSB_SUB_CONSOLE_MOUNT;
    rc = nsb_move_mount(tree, "", file, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH);
out:
    nsb_tty_close(tree);
    nsb_tty_close(file);
    nsb_tty_close(dev);
    return rc;
}

/* TERMINAL: the master to the parent, one SCM_RIGHTS fd and one byte. */
static int nsb_tty_send(int sock, int master)
{
    union {
        struct cmsghdr hdr;
        char buf[CMSG_SPACE(sizeof(int))];
    } ctl;
    struct msghdr msg;
    struct iovec iov;
    struct cmsghdr *cmsg;
    char byte = 't';
    long n;
    memset(&ctl, 0, sizeof(ctl));
    memset(&msg, 0, sizeof(msg));
    iov.iov_base = &byte;
    iov.iov_len = 1;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = ctl.buf;
    msg.msg_controllen = sizeof(ctl.buf);
    cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cmsg), &master, sizeof(int));
    do {
        n = syscall(__NR_sendmsg, sock, &msg, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n == 0)
        errno = EPIPE;
    return n == 1 ? 0 : -1;
}

/* TERMINAL: a session of our own with the peer as its terminal and as stdio. */
static int nsb_tty_stdio(const struct nsb_spawn_plan *plan, int peer, int *sub)
{
    int fd;
    *sub = NSB_SUB_TTY_SETSID;
    if (!plan->setsid && syscall(__NR_setsid) < 0)
        return -1;
    *sub = NSB_SUB_TTY_SETCTTY;
    if (syscall(__NR_ioctl, peer, TIOCSCTTY, 0) < 0)
        return -1;
    *sub = NSB_SUB_TTY_STDIO;
    for (fd = 0; fd < 3; fd++) {
        if (peer != fd && syscall(__NR_dup3, peer, fd, 0) < 0)
            return -1;
    }
    return 0;
}

int nsb_terminal(const struct nsb_spawn_plan *plan, int *sub)
{
    int master = -1, peer = -1, step = NSB_STEP_TERMINAL;
    if (nsb_tty_open(&master, &peer, sub) < 0)
        goto fail;
    if (plan->console_mount && nsb_console_mount(peer, sub) < 0) {
        step = NSB_STEP_CONSOLE;
        goto fail;
    }
    if (plan->console_rows || plan->console_cols) {
        struct winsize ws;
        memset(&ws, 0, sizeof(ws));
        ws.ws_row = plan->console_rows;
        ws.ws_col = plan->console_cols;
        *sub = NSB_SUB_TTY_WINSIZE;
        if (syscall(__NR_ioctl, peer, TIOCSWINSZ, &ws) < 0)
            goto fail;
    }
    *sub = NSB_SUB_TTY_SEND;
    if (nsb_tty_send(plan->console_sock, master) < 0)
        goto fail;
    nsb_tty_close(master); /* the parent has it now: no copy stays in the container */
    master = -1;
    nsb_tty_close(plan->console_sock);
    if (nsb_tty_stdio(plan, peer, sub) < 0)
        goto fail;
    if (peer > 2)
        nsb_tty_close(peer);
    return 0;
fail:
    nsb_tty_close(master);
    if (peer > 2)
        nsb_tty_close(peer);
    return step;
}
