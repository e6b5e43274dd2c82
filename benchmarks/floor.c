/*
 * The C floor for spawn latency: one raw clone3 (CLONE_VM|CLONE_VFORK on its own
 * stack, as nsbind's engine) + execve + waitid, with the given namespace flags,
 * and nothing else.  Built by the benchmarks as a shared object and called once
 * per round through ctypes, so that it is timed side by side with nsbind.spawn.
 */
#define _GNU_SOURCE
#include <linux/sched.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define STACK_SIZE (64 * 1024)

static const char *target;

static int child(void *arg)
{
    char *argv[] = {(char *)target, NULL};
    char *envp[] = {NULL};
    (void)arg;
    syscall(SYS_execve, target, argv, envp);
    syscall(SYS_exit_group, 127);
    return 127;
}

static long clone3_call(struct clone_args *cl)
{
    long ret;
    register void *r12 __asm__("r12") = (void *)child;
    __asm__ volatile(
        "syscall\n\t"
        "test %%rax, %%rax\n\t"
        "jnz 1f\n\t"
        "and $-16, %%rsp\n\t"
        "call *%%r12\n\t"
        "mov $231, %%eax\n\t"
        "syscall\n\t"
        "1:\n\t"
        : "=a"(ret)
        : "a"((long)SYS_clone3), "D"(cl), "S"(sizeof(*cl)), "r"(r12)
        : "rcx", "r11", "memory");
    return ret;
}

/* returns the child's exit status, or -errno */
int floor_spawn(const char *path, unsigned long long flags, int use_vm)
{
    static void *stack;
    struct clone_args cl;
    siginfo_t info;
    long pid;

    target = path;
    if (!stack)
        stack = mmap(NULL, STACK_SIZE, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    memset(&cl, 0, sizeof(cl));
    cl.flags = flags;
    cl.exit_signal = SIGCHLD;
    if (use_vm) {
        cl.flags |= CLONE_VM | CLONE_VFORK;
        cl.stack = (unsigned long long)(uintptr_t)stack;
        cl.stack_size = STACK_SIZE;
    }
    pid = clone3_call(&cl);
    if (pid < 0)
        return (int)pid;
    if (waitid(P_PID, (id_t)pid, &info, WEXITED) < 0)
        return -1;
    return info.si_status;
}
