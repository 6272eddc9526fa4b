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
#include <linux/filter.h>
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

/*
 * Shorter, equivalent classic BPF.  libseccomp (2.5) tests each allowed
 * syscall with its own JEQ: the default profile is ~1,175 instructions, and
 * the kernel checks, converts and JIT-compiles every one at each load (once
 * per step: ~1 ms here).  Runs of JEQs on the accumulator that all jump to
 * the same place when equal and fall through otherwise are turned into
 * range tests: a set of values {lo..hi} becomes JGE lo / JGT hi (2
 * instructions), a lone value stays a JEQ.  A run ends at any instruction
 * another jump lands on.  The values of a run all lead to one target, so
 * their order does not matter; A is not changed by a jump.  Each run gets
 * no longer, so no jump offset grows (checked anyway: on any doubt the
 * input is returned unchanged).  Returns the new length; out has room for n.
 */
#define JEQ_K (BPF_JMP | BPF_JEQ | BPF_K)

struct cins {
        struct sock_filter f;
        size_t jt_to, jf_to; /* old index of the target, or SIZE_MAX: f.jt/f.jf is already relative */
};

static int cmp_u32(const void *a, const void *b)
{
        uint32_t x = *(const uint32_t *) a, y = *(const uint32_t *) b;
        return x < y ? -1 : x > y;
}

static bool is_cond_jump(const struct sock_filter *f)
{
        return BPF_CLASS(f->code) == BPF_JMP && BPF_OP(f->code) != BPF_JA;
}

/* 0 and the new length in *ret_m, or -1 to keep the input */
static int compact(const struct sock_filter *in, size_t n, struct cins *c, size_t *map, uint32_t *vals, bool *target,
                   struct sock_filter *out, size_t *ret_m)
{
        for (size_t i = 0; i < n; i++) {
                const struct sock_filter *f = &in[i];
                if (BPF_CLASS(f->code) != BPF_JMP)
                        continue;
                size_t a = i + 1 + (BPF_OP(f->code) == BPF_JA ? f->k : f->jt), b = i + 1 + f->jf;
                if (a >= n || b >= n)
                        return -1; /* the kernel refuses these anyway */
                /* a fall-through (offset 0) is the normal flow, not a landing */
                if (a > i + 1)
                        target[a] = true;
                if (BPF_OP(f->code) != BPF_JA && b > i + 1)
                        target[b] = true;
        }
        size_t m = 0;
        for (size_t i = 0; i < n;) {
                const struct sock_filter *f = &in[i];
                size_t t = i + 1 + f->jt, j = i;
                if (f->code == JEQ_K && f->jf == 0)
                        while (j < n && in[j].code == JEQ_K && in[j].jf == 0 && j + 1 + in[j].jt == t &&
                               (j == i || !target[j]))
                                j++;
                if (j - i < 2) {
                        map[i] = m;
                        bool ja = f->code == (BPF_JMP | BPF_JA);
                        c[m++] = (struct cins) { *f, is_cond_jump(f) ? i + 1 + f->jt : ja ? i + 1 + f->k : SIZE_MAX,
                                                 is_cond_jump(f) ? i + 1 + f->jf : SIZE_MAX };
                        i++;
                        continue;
                }
                size_t nv = 0;
                for (size_t k = i; k < j; k++)
                        vals[nv++] = in[k].k;
                qsort(vals, nv, sizeof *vals, cmp_u32);
                for (size_t k = i; k < j; k++)
                        map[k] = m; /* only i can be a target */
                for (size_t a = 0; a < nv;) {
                        size_t b = a;
                        while (b + 1 < nv && (vals[b + 1] == vals[b] || vals[b + 1] == vals[b] + 1))
                                b++;
                        if (vals[a] == vals[b]) {
                                c[m++] = (struct cins) { BPF_JUMP(JEQ_K, vals[a], 0, 0), t, SIZE_MAX };
                        } else {
                                /* A < lo: skip the next test; A > hi: go on; else the run's target */
                                c[m++] = (struct cins) { BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, vals[a], 0, 1), SIZE_MAX,
                                                         SIZE_MAX };
                                c[m++] = (struct cins) { BPF_JUMP(BPF_JMP | BPF_JGT | BPF_K, vals[b], 0, 0), SIZE_MAX, t };
                        }
                        a = b + 1;
                }
                i = j;
        }
        for (size_t i = 0; i < m; i++) {
                struct sock_filter f = c[i].f;
                size_t to[2] = { c[i].jt_to, c[i].jf_to };
                for (int w = 0; w < 2; w++) {
                        if (to[w] == SIZE_MAX)
                                continue;
                        size_t nt = map[to[w]];
                        if (nt <= i || (f.code != (BPF_JMP | BPF_JA) && nt - i - 1 > 255))
                                return -1;
                        if (f.code == (BPF_JMP | BPF_JA))
                                f.k = (uint32_t) (nt - i - 1);
                        else
                                *(w ? &f.jf : &f.jt) = (uint8_t) (nt - i - 1);
                }
                out[i] = f;
        }
        *ret_m = m;
        return 0;
}

size_t rt_seccomp_compact(const struct sock_filter *in, size_t n, struct sock_filter *out)
{
        if (!n || n > BPF_MAXINSNS) {
                memmove(out, in, n * sizeof *in);
                return n;
        }
        _cleanup_free_ bool *target = xcalloc(n + 1, sizeof *target);
        _cleanup_free_ struct cins *c = xcalloc(n, sizeof *c);
        _cleanup_free_ size_t *map = xcalloc(n, sizeof *map);
        _cleanup_free_ uint32_t *vals = xcalloc(n, sizeof *vals);
        /* written to a copy first: out may be in, and a refusal keeps the input whole */
        _cleanup_free_ struct sock_filter *tmp = xcalloc(n, sizeof *tmp);
        size_t m;
        if (compact(in, n, c, map, vals, target, tmp, &m) < 0) {
                memmove(out, in, n * sizeof *in);
                return n;
        }
        memcpy(out, tmp, m * sizeof *tmp);
        return m;
}

int rt_seccomp_compile_raw(const struct oci_seccomp *s, void **ret_bpf, size_t *ret_len, hm_error_t *err)
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

int rt_seccomp_compile(const struct oci_seccomp *s, void **ret_bpf, size_t *ret_len, hm_error_t *err)
{
        void *bpf = NULL;
        size_t len = 0;
        int r = rt_seccomp_compile_raw(s, &bpf, &len, err);
        if (r < 0)
                return r;
        if (len % sizeof(struct sock_filter)) {
                free(bpf);
                return hm_error_set(err, EINVAL, "export seccomp filter: %zu bytes is no whole program", len);
        }
        len = rt_seccomp_compact(bpf, len / sizeof(struct sock_filter), bpf) * sizeof(struct sock_filter);
        *ret_bpf = bpf;
        *ret_len = len;
        return 0;
}
