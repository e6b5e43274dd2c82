/*
 * libseccomp, opened at run time (dlopen): nsbind builds without its headers and
 * runs without it until a seccomp filter is asked for.  The prototypes below are
 * libseccomp 2.x's ABI (scmp_filter_ctx is a void *, struct scmp_arg_cmp as in
 * seccomp.h); nsb_scmp_open resolves every one of them or none.  Parent side
 * only: never called between clone and exec.
 */
#ifndef NSBIND_SECCOMPLOAD_H
#define NSBIND_SECCOMPLOAD_H

#include <stdint.h>

/* ---- cdef-begin ---- */
struct nsb_scmp_arg_cmp {
    unsigned int arg;
    int op;
    uint64_t datum_a;
    uint64_t datum_b;
};

/* dlopen(name) and resolve the functions below: 0, or -1 with the loader's
 * message in nsb_scmp_error(). */
int nsb_scmp_open(const char *name);
const char *nsb_scmp_error(void);

void *nsb_scmp_init(uint32_t def_action);
void nsb_scmp_release(void *ctx);
int nsb_scmp_arch_add(void *ctx, uint32_t arch_token);
uint32_t nsb_scmp_arch_resolve_name(const char *arch_name);
int nsb_scmp_attr_set(void *ctx, int attr, uint32_t value);
int nsb_scmp_syscall_resolve_name(const char *name);
int nsb_scmp_rule_add_array(void *ctx, uint32_t action, int syscall, unsigned int arg_cnt,
                            const struct nsb_scmp_arg_cmp *arg_array);
int nsb_scmp_export_bpf(void *ctx, int fd);
/* seccomp_version(): major, minor, micro */
void nsb_scmp_version(unsigned int out[3]);
/* ---- cdef-end ---- */

#endif /* NSBIND_SECCOMPLOAD_H */
