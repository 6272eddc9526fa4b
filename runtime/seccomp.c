/* SPDX-License-Identifier: Apache-2.0 */
/*
 * struct oci_seccomp -> raw BPF, with libseccomp, in the parent (style.md
 * lesson 8).  The child only loads the bytes with seccomp(2); libseccomp is
 * never called after clone.  Syscall names unknown to libseccomp or absent
 * on an architecture are skipped (profiles name syscalls of newer kernels,
 * as runc and crun do); everything else that cannot be honoured is an error
 * naming the JSON path.
 */
#include <fcntl.h>
#include <seccomp.h>
#include <sys/mman.h>

#include "lib/handles.h"
#include "lib/util.h"
#include "oci/spec.h"
#include "runtime/runtime.h"

static int to_action(enum oci_seccomp_action a, uint32_t errno_ret, bool errno_present, uint32_t *ret)
{
        switch (a) {
        case OCI_SECCOMP_KILL:
        case OCI_SECCOMP_KILL_THREAD: *ret = SCMP_ACT_KILL_THREAD; return 0;
        case OCI_SECCOMP_KILL_PROCESS: *ret = SCMP_ACT_KILL_PROCESS; return 0;
        case OCI_SECCOMP_TRAP: *ret = SCMP_ACT_TRAP; return 0;
        case OCI_SECCOMP_ERRNO: *ret = SCMP_ACT_ERRNO(errno_present ? errno_ret : EPERM); return 0;
        case OCI_SECCOMP_TRACE: *ret = SCMP_ACT_TRACE(errno_present ? errno_ret : EPERM); return 0;
        case OCI_SECCOMP_ALLOW: *ret = SCMP_ACT_ALLOW; return 0;
        case OCI_SECCOMP_LOG: *ret = SCMP_ACT_LOG; return 0;
        default: return -1;
        }
}

static const enum scmp_compare ops[] = {
        [OCI_SECCOMP_OP_NE] = SCMP_CMP_NE, [OCI_SECCOMP_OP_LT] = SCMP_CMP_LT,
        [OCI_SECCOMP_OP_LE] = SCMP_CMP_LE, [OCI_SECCOMP_OP_EQ] = SCMP_CMP_EQ,
        [OCI_SECCOMP_OP_GE] = SCMP_CMP_GE, [OCI_SECCOMP_OP_GT] = SCMP_CMP_GT,
        [OCI_SECCOMP_OP_MASKED_EQ] = SCMP_CMP_MASKED_EQ,
};

static int add_arches(scmp_filter_ctx ctx, char *const *arches, hm_error_t *err)
{
        for (size_t i = 0; arches && arches[i]; i++) {
                const char *a = arches[i];
                char name[64];
                size_t k = 0;
                for (const char *s = str_has_prefix(a, "SCMP_ARCH_") ? a + 10 : a; *s && k < sizeof name - 1; s++)
                        name[k++] = (char) (*s >= 'A' && *s <= 'Z' ? *s - 'A' + 'a' : *s);
                name[k] = 0;
                uint32_t token = seccomp_arch_resolve_name(name);
                if (!token)
                        return hm_error_set(err, EINVAL, "linux.seccomp.architectures[%zu]: unknown architecture '%s'", i, a);
                int r = seccomp_arch_add(ctx, token);
                if (r < 0 && r != -EEXIST)
                        return hm_error_set(err, -r, "linux.seccomp.architectures[%zu]: add '%s': %s", i, a, strerror(-r));
        }
        return 0;
}

static int add_rule(scmp_filter_ctx ctx, uint32_t def, const struct oci_seccomp_rule *rule, size_t idx, hm_error_t *err)
{
        uint32_t action;
        if (to_action(rule->action, rule->errno_ret, rule->errno_ret_present, &action) < 0)
                return hm_error_set(err, EINVAL, "linux.seccomp.syscalls[%zu].action: invalid", idx);
        if (action == def)
                return 0; /* libseccomp refuses rules equal to the default (and they change nothing) */
        struct scmp_arg_cmp cmp[6];
        if (rule->n_args > 6)
                return hm_error_set(err, EINVAL, "linux.seccomp.syscalls[%zu].args: more than 6", idx);
        for (size_t k = 0; k < rule->n_args; k++) {
                const struct oci_seccomp_arg *a = &rule->args[k];
                if (a->op >= _OCI_SECCOMP_OP_MAX)
                        return hm_error_set(err, EINVAL, "linux.seccomp.syscalls[%zu].args[%zu].op: invalid", idx, k);
                cmp[k] = (struct scmp_arg_cmp) { a->index, ops[a->op], a->value, a->value_two };
        }
        for (size_t n = 0; rule->names && rule->names[n]; n++) {
                int nr = seccomp_syscall_resolve_name(rule->names[n]);
                if (nr == __NR_SCMP_ERROR)
                        continue;
                int r = seccomp_rule_add_array(ctx, action, nr, (unsigned) rule->n_args, cmp);
                /* -EOPNOTSUPP/-EDOM: a pseudo syscall no architecture of the filter can express */
                if (r < 0 && r != -EOPNOTSUPP && r != -EDOM)
                        return hm_error_set(err, -r, "linux.seccomp.syscalls[%zu].names[%zu]: add rule for '%s': %s", idx,
                                            n, rule->names[n], strerror(-r));
        }
        return 0;
}

static int export_bpf(scmp_filter_ctx ctx, void **ret_bpf, size_t *ret_len, hm_error_t *err)
{
        _cleanup_close_ int fd = memfd_create("hm-seccomp", MFD_CLOEXEC);
        if (fd < 0)
                return hm_error_set(err, errno, "memfd_create: %s", strerror(errno));
        int r = seccomp_export_bpf(ctx, fd);
        if (r < 0)
                return hm_error_set(err, -r, "export seccomp filter: %s", strerror(-r));
        off_t len = lseek(fd, 0, SEEK_END);
        if (len <= 0)
                return hm_error_set(err, EINVAL, "export seccomp filter: empty program");
        _cleanup_free_ void *buf = xmalloc((size_t) len);
        if (pread(fd, buf, (size_t) len, 0) != len)
                return hm_error_set(err, errno ? errno : EIO, "read seccomp filter: %s", strerror(errno ? errno : EIO));
        *ret_bpf = TAKE_PTR(buf);
        *ret_len = (size_t) len;
        return 0;
}

int rt_seccomp_compile(const struct oci_seccomp *s, void **ret_bpf, size_t *ret_len, hm_error_t *err)
{
        uint32_t def;
        if (to_action(s->default_action, s->default_errno_ret, s->default_errno_ret_present, &def) < 0)
                return hm_error_set(err, EINVAL, "linux.seccomp.defaultAction: invalid");
        _cleanup_seccomp_ scmp_filter_ctx ctx = seccomp_init(def);
        if (!ctx)
                return hm_error_set(err, EINVAL, "linux.seccomp.defaultAction: seccomp_init failed");
        /* the runtime sets no_new_privs itself (or loads the filter with CAP_SYS_ADMIN) */
        int r = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0);
        if (r < 0)
                return hm_error_set(err, -r, "seccomp: clear NNP attribute: %s", strerror(-r));
        r = add_arches(ctx, s->architectures, err);
        for (size_t i = 0; r >= 0 && i < s->n_syscalls; i++)
                r = add_rule(ctx, def, &s->syscalls[i], i, err);
        if (r < 0)
                return r;
        return export_bpf(ctx, ret_bpf, ret_len, err);
}
