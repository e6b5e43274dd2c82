/*
 * nsbind spawn engine, the parent's side (spawn.h): clone3 - on a stack of the
 * child's own with CLONE_VM where the plan allows it - and the wait for the
 * child's exec or its report.  The child's side is spawn.c.
 */
#include "spawn.h"
#include "spawnchild.h"
#include "rawsys.h"

#include <signal.h>
#include <sys/mman.h>
#include <string.h>

#define NSB_STACK_SIZE (256 * 1024)
/* Raw syscall results in -NSB_MAX_ERRNO..-1 are -errno (the kernel's MAX_ERRNO). */
#define NSB_MAX_ERRNO 4095

/* One stack per calling thread for vfork-style children: the thread is
 * suspended while its child runs on it, so it is never used twice at once. */
static __thread void *nsb_thread_stack;

/*
 * clone3, and in the child call fn(arg) on whatever stack the kernel gave it,
 * then exit.  Needed because with a new stack the child cannot return into
 * the caller's frames.  Returns the child's pid, or -1 and errno.
 */
static long nsb_clone3_call(struct clone_args *cl, int (*fn)(void *), void *arg)
{
#if defined(__x86_64__)
    long ret;
    register void *r12 __asm__("r12") = (void *)fn;
    register void *r13 __asm__("r13") = arg;
    __asm__ volatile(
        "syscall\n\t"
        "test %%rax, %%rax\n\t"
        "jnz 1f\n\t"
        "xor %%ebp, %%ebp\n\t"
        "mov %%r13, %%rdi\n\t"
        "and $-16, %%rsp\n\t"
        "call *%%r12\n\t"
        "mov %%eax, %%edi\n\t"
        "mov %[exit_nr], %%eax\n\t"
        "syscall\n\t"
        "hlt\n\t"
        "1:\n\t"
        : "=a"(ret)
        : "a"((long)__NR_clone3), "D"(cl), "S"(sizeof(*cl)), "r"(r12), "r"(r13),
          [exit_nr] "i"(__NR_exit_group)
        : "rcx", "r11", "memory");
    if (ret < 0 && ret >= -NSB_MAX_ERRNO) {
        errno = (int)-ret;
        return -1;
    }
    return ret;
#else
    /* no trampoline for this architecture: only the copy-on-write child */
    long ret;
    if (cl->stack) {
        errno = ENOSYS;
        return -1;
    }
    ret = syscall(__NR_clone3, cl, sizeof(*cl));
    if (ret == 0)
        syscall(__NR_exit_group, fn(arg));
    return ret;
#endif
}

int nsb_spawn_has_vm_clone(void)
{
#if defined(__x86_64__)
    return 1;
#else
    return 0;
#endif
}

int nsb_spawn(const struct nsb_spawn_plan *plan, struct nsb_spawn_result *out)
{
    struct clone_args cl;
    sigset_t all, old;
    long pid;
    int saved;

    memset(&cl, 0, sizeof(cl));
    out->pid = -1;
    out->pidfd = -1;
    out->stack = NULL;
    out->stack_size = 0;

    cl.flags = plan->clone_flags | CLONE_PIDFD | CLONE_CLEAR_SIGHAND;
    cl.pidfd = (unsigned long long)(uintptr_t)&out->pidfd;
    cl.exit_signal = SIGCHLD;
    if (plan->cgroup_fd >= 0) {
        cl.flags |= CLONE_INTO_CGROUP;
        cl.cgroup = (unsigned long long)plan->cgroup_fd;
    }
    if (plan->use_vm) {
        /* a child that lets its parent run before its exec - it waits for the id
         * maps (sync) or parks at a start gate - gets a stack of its own */
        int runs_on = plan->sync_fd >= 0 || plan->gate_fd >= 0;
        void *stack = runs_on ? NULL : nsb_thread_stack;
        if (!stack) {
            stack = mmap(NULL, NSB_STACK_SIZE, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
            if (stack == MAP_FAILED)
                return -1;
            if (runs_on)
                out->stack = stack; /* nsb_spawn_release, or nsb_spawn_free_stack */
            else
                nsb_thread_stack = stack;
        }
        cl.stack = (unsigned long long)(uintptr_t)stack;
        cl.stack_size = NSB_STACK_SIZE;
        cl.flags |= CLONE_VM;
        if (!runs_on)
            cl.flags |= CLONE_VFORK;
    }

    /* no signal handler may run in the child before it resets them */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    pid = nsb_clone3_call(&cl, nsb_child_main, (void *)plan);
    saved = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);

    if (pid < 0 && out->stack) {
        munmap(out->stack, NSB_STACK_SIZE);
        out->stack = NULL;
    }
    if (out->stack)
        out->stack_size = NSB_STACK_SIZE;
    if (pid < 0) {
        errno = saved;
        return -1;
    }
    out->pid = (int)pid;
    return 0;
}

void nsb_spawn_free_stack(struct nsb_spawn_result *res)
{
    if (res->stack) {
        munmap(res->stack, res->stack_size);
        res->stack = NULL;
    }
}

int nsb_spawn_release(int sync_w, int err_r, struct nsb_spawn_result *res,
                      struct nsb_spawn_report *report)
{
    size_t got = 0;
    int rc = 0, saved = 0, parked;

    if (err_r < 0)
        return report->step != 0;
    if (sync_w >= 0) {
        char go = 'g';
        if (write(sync_w, &go, 1) != 1) {
            rc = -1;
            saved = errno; /* returned with -1, past the close and reads below */
        }
        close(sync_w);
    }
    /* wait for the exec (EOF) or the child's report; errno is not to be trusted
     * while a child sharing our memory runs (rawsys.h) */
    while (got < sizeof(*report)) {
        long n = nsb_raw3(__NR_read, err_r, (long)((char *)report + got),
                          (long)(sizeof(*report) - got));
        if (n == -EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    parked = got == sizeof(*report) && report->step == NSB_STEP_GATE && report->err == 0;
    /* only now is the child off its stack - unless it is parked on it */
    if (!parked)
        nsb_spawn_free_stack(res);
    if (rc < 0) {
        errno = saved;
        return -1;
    }
    return got == sizeof(*report) ? 1 : 0;
}
