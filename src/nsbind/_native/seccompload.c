/* libseccomp opened at run time: see seccompload.h. */
#include "seccompload.h"

#include <dlfcn.h>
#include <stddef.h>

static struct {
    void *(*init)(uint32_t);
    void (*release)(void *);
    int (*arch_add)(void *, uint32_t);
    uint32_t (*arch_resolve_name)(const char *);
    int (*attr_set)(void *, int, uint32_t);
    int (*syscall_resolve_name)(const char *);
    int (*rule_add_array)(void *, uint32_t, int, unsigned int,
                          const struct nsb_scmp_arg_cmp *);
    int (*export_bpf)(void *, int);
    const unsigned int *(*version)(void); /* const struct scmp_version *: 3 unsigned */
} nsb_scmp;

static const char *nsb_scmp_message = "libseccomp is not opened";

int nsb_scmp_open(const char *name)
{
    static const char *const names[] = {
        "seccomp_init", "seccomp_release", "seccomp_arch_add", "seccomp_arch_resolve_name",
        "seccomp_attr_set", "seccomp_syscall_resolve_name", "seccomp_rule_add_array",
        "seccomp_export_bpf", "seccomp_version"};
    void *found[sizeof(names) / sizeof(names[0])];
    void *handle;
    size_t i;
    _Static_assert(sizeof(found) == sizeof(nsb_scmp), "one pointer per function");
    handle = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        nsb_scmp_message = dlerror();
        return -1;
    }
    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        found[i] = dlsym(handle, names[i]);
        if (!found[i]) {
            nsb_scmp_message = dlerror();
            dlclose(handle);
            return -1;
        }
    }
    __builtin_memcpy(&nsb_scmp, found, sizeof(nsb_scmp));
    return 0;
}

const char *nsb_scmp_error(void) { return nsb_scmp_message; }

void *nsb_scmp_init(uint32_t def_action) { return nsb_scmp.init(def_action); }
void nsb_scmp_release(void *ctx) { nsb_scmp.release(ctx); }
int nsb_scmp_arch_add(void *ctx, uint32_t arch) { return nsb_scmp.arch_add(ctx, arch); }
uint32_t nsb_scmp_arch_resolve_name(const char *name)
{
    return nsb_scmp.arch_resolve_name(name);
}
int nsb_scmp_attr_set(void *ctx, int attr, uint32_t value)
{
    return nsb_scmp.attr_set(ctx, attr, value);
}
int nsb_scmp_syscall_resolve_name(const char *name)
{
    return nsb_scmp.syscall_resolve_name(name);
}
int nsb_scmp_rule_add_array(void *ctx, uint32_t action, int syscall, unsigned int arg_cnt,
                            const struct nsb_scmp_arg_cmp *arg_array)
{
    return nsb_scmp.rule_add_array(ctx, action, syscall, arg_cnt, arg_array);
}
int nsb_scmp_export_bpf(void *ctx, int fd) { return nsb_scmp.export_bpf(ctx, fd); }
void nsb_scmp_version(unsigned int out[3])
{
    const unsigned int *v = nsb_scmp.version();
    out[0] = v[0];
    out[1] = v[1];
    out[2] = v[2];
}
