/* SPDX-License-Identifier: Apache-2.0 */
/*
 * rt_seccomp_compact (runtime/seccomp.c): the shorter program must decide
 * exactly as libseccomp's.  Both are run by a small classic-BPF interpreter
 * on the same inputs (x86_64, i386 and x32 syscall numbers, two arches the
 * filter does not know, several argument sets); a control shows the
 * comparison sees a one-constant change.  Hand-made programs check the
 * edge cases: a jump landing inside a run, values out of order, duplicates,
 * runs to different targets.
 */
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/util.h"
#include "oci/spec.h"
#include "runtime/runtime.h"
#include "tap.h"

/* classic BPF over struct seccomp_data, the instructions seccomp allows; UINT32_MAX+ on a bad program */
static uint64_t run_bpf(const struct sock_filter *p, size_t n, const struct seccomp_data *d)
{
        uint32_t a = 0, x = 0, mem[BPF_MEMWORDS] = { 0 };
        for (size_t pc = 0; pc < n;) {
                const struct sock_filter *f = &p[pc++];
                uint32_t src = BPF_SRC(f->code) == BPF_X ? x : f->k;
                switch (BPF_CLASS(f->code)) {
                case BPF_LD:
                        if (BPF_MODE(f->code) == BPF_ABS && f->k % 4 == 0 && f->k + 4 <= sizeof *d)
                                memcpy(&a, (const char *) d + f->k, 4);
                        else if (BPF_MODE(f->code) == BPF_IMM)
                                a = f->k;
                        else if (BPF_MODE(f->code) == BPF_MEM && f->k < BPF_MEMWORDS)
                                a = mem[f->k];
                        else
                                return UINT64_MAX;
                        break;
                case BPF_LDX:
                        x = BPF_MODE(f->code) == BPF_MEM && f->k < BPF_MEMWORDS ? mem[f->k] : f->k;
                        break;
                case BPF_ST:
                case BPF_STX:
                        if (f->k >= BPF_MEMWORDS)
                                return UINT64_MAX;
                        mem[f->k] = BPF_CLASS(f->code) == BPF_ST ? a : x;
                        break;
                case BPF_ALU:
                        switch (BPF_OP(f->code)) {
                        case BPF_ADD: a += src; break;
                        case BPF_SUB: a -= src; break;
                        case BPF_AND: a &= src; break;
                        case BPF_OR: a |= src; break;
                        case BPF_LSH: a <<= src & 31; break;
                        case BPF_RSH: a >>= src & 31; break;
                        default: return UINT64_MAX;
                        }
                        break;
                case BPF_JMP: {
                        bool c;
                        switch (BPF_OP(f->code)) {
                        case BPF_JA: pc += f->k; continue;
                        case BPF_JEQ: c = a == src; break;
                        case BPF_JGT: c = a > src; break;
                        case BPF_JGE: c = a >= src; break;
                        case BPF_JSET: c = (a & src) != 0; break;
                        default: return UINT64_MAX;
                        }
                        pc += c ? f->jt : f->jf;
                        break;
                }
                case BPF_RET: return BPF_RVAL(f->code) == BPF_A ? a : f->k;
                case BPF_MISC: if (BPF_MISCOP(f->code) == BPF_TAX) x = a; else a = x; break;
                default: return UINT64_MAX;
                }
        }
        return UINT64_MAX; /* fell off the end */
}

/* Inputs that differ in everything the profiles look at; the number of disagreements. */
static size_t compare(const struct sock_filter *p1, size_t n1, const struct sock_filter *p2, size_t n2, size_t *ret_inputs)
{
        static const uint32_t arches[] = { AUDIT_ARCH_X86_64, AUDIT_ARCH_I386, AUDIT_ARCH_AARCH64, 0 };
        static const uint64_t argv[] = { 0, 1, 2, 8, 0x10000, 0x20000000, 0x7e020000, 0xffffffff, 0x100000000ull,
                                         0xffffffffffffffffull, 0x80000000ull, 0x4000000 };
        size_t bad = 0, inputs = 0;
        uint32_t seed = 1;
        for (size_t ai = 0; ai < ARRAY_SIZE(arches); ai++)
                for (uint32_t base = 0; base <= 0x40000000u; base += 0x40000000u)
                        for (uint32_t nr = base; nr < base + 1100; nr++)
                                for (int set = 0; set < 6; set++) {
                                        struct seccomp_data d = { .nr = (int) nr, .arch = arches[ai] };
                                        for (int k = 0; k < 6; k++) {
                                                seed = seed * 1103515245u + 12345u;
                                                d.args[k] = set == 0 ? 0 : set == 1 ? ~0ull : argv[(seed >> 16) % ARRAY_SIZE(argv)];
                                        }
                                        inputs++;
                                        bad += run_bpf(p1, n1, &d) != run_bpf(p2, n2, &d);
                                }
        *ret_inputs = inputs;
        return bad;
}

static void profile(const char *what, const struct oci_seccomp *sc)
{
        void *raw = NULL, *cmp = NULL;
        size_t rlen = 0, clen = 0;
        hm_error_t e = NULL;
        bool ok = rt_seccomp_compile_raw(sc, &raw, &rlen, &e) == 0 && rt_seccomp_compile(sc, &cmp, &clen, &e) == 0;
        tap_ok(ok, "%s compiles%s%s", what, e ? ": " : "", e ? e->msg : "");
        hm_error_release(&e);
        if (!ok) {
                free(raw);
                free(cmp);
                return;
        }
        size_t rn = rlen / sizeof(struct sock_filter), cn = clen / sizeof(struct sock_filter), inputs;
        tap_ok(cn < rn, "%s: %zu instructions instead of %zu", what, cn, rn);
        size_t bad = compare(raw, rn, cmp, cn, &inputs);
        tap_ok(bad == 0, "%s: the same verdict on all %zu inputs (%zu differ)", what, inputs, bad);
        /* control: one range bound off by one must show */
        struct sock_filter *mut = cmp;
        size_t i = 0;
        while (i < cn && mut[i].code != (BPF_JMP | BPF_JGT | BPF_K))
                i++;
        if (i < cn) {
                mut[i].k--;
                bad = compare(raw, rn, mut, cn, &inputs);
                tap_ok(bad > 0, "%s: control: a range's upper bound one lower changes %zu verdicts", what, bad);
        } else {
                tap_ok(false, "%s: control: no range test in the compacted program", what);
        }
        free(raw);
        free(cmp);
}

#define LD_NR BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr))
#define JEQ(v, t, f) BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (v), (t), (f))
#define RET(v) BPF_STMT(BPF_RET | BPF_K, (v))

static void hand_made(void)
{
        /* 5 JEQs to ALLOW with values out of order and a duplicate; 7 and 9 are lone values */
        struct sock_filter a[] = {
                LD_NR, JEQ(3, 6, 0), JEQ(1, 5, 0), JEQ(2, 4, 0), JEQ(2, 3, 0), JEQ(7, 2, 0), JEQ(9, 1, 0),
                RET(SECCOMP_RET_ERRNO | 1), RET(SECCOMP_RET_ALLOW),
        };
        /* a jump from before the run lands at its 3rd JEQ (jt of insn 1 to insn 4) */
        struct sock_filter b[] = {
                LD_NR, JEQ(100, 2, 0), JEQ(1, 4, 0), JEQ(2, 3, 0), JEQ(3, 2, 0), JEQ(4, 1, 0),
                RET(SECCOMP_RET_ERRNO | 1), RET(SECCOMP_RET_ALLOW),
        };
        /* two runs to different targets, interleaved values */
        struct sock_filter c[] = {
                LD_NR, JEQ(1, 5, 0), JEQ(2, 4, 0), JEQ(3, 3, 0), JEQ(5, 3, 0), JEQ(6, 2, 0), JEQ(4, 1, 0),
                RET(SECCOMP_RET_KILL_PROCESS), RET(SECCOMP_RET_ALLOW), RET(SECCOMP_RET_ERRNO | 13),
        };
        struct {
                const char *what;
                struct sock_filter *p;
                size_t n;
        } cases[] = { { "values out of order, a duplicate, lone values", a, ARRAY_SIZE(a) },
                      { "a jump landing inside a run", b, ARRAY_SIZE(b) },
                      { "runs to different targets", c, ARRAY_SIZE(c) } };
        for (size_t k = 0; k < ARRAY_SIZE(cases); k++) {
                struct sock_filter out[16];
                size_t m = rt_seccomp_compact(cases[k].p, cases[k].n, out), inputs;
                size_t bad = compare(cases[k].p, cases[k].n, out, m, &inputs);
                tap_ok(bad == 0 && m <= cases[k].n, "%s: %zu -> %zu instructions, %zu of %zu verdicts differ",
                       cases[k].what, cases[k].n, m, bad, inputs);
        }
        /* a: {1,2,3} is one range (2 insns), 7 and 9 stay JEQs: 1 + 2 + 2 + 2 */
        struct sock_filter out[16];
        tap_ok(rt_seccomp_compact(a, ARRAY_SIZE(a), out) == 7, "{3,1,2,2,7,9} -> one range and two JEQs");
        /* b: the landing splits the run in {1,2} and {3,4}: two ranges, as long as the four JEQs */
        size_t m = rt_seccomp_compact(b, ARRAY_SIZE(b), out);
        tap_ok(m == ARRAY_SIZE(b), "a landing inside the run keeps it apart (%zu instructions)", m);
        /* a jump past the end: returned as it is */
        struct sock_filter bad[] = { LD_NR, JEQ(1, 9, 0), JEQ(2, 8, 0), RET(SECCOMP_RET_ALLOW) };
        m = rt_seccomp_compact(bad, ARRAY_SIZE(bad), out);
        tap_ok(m == ARRAY_SIZE(bad) && !memcmp(out, bad, sizeof bad), "a jump out of the program: left unchanged");
}

int main(void)
{
        struct oci_spec *spec = oci_spec_new_default();
        profile("the default profile", spec->linux_.seccomp);
        oci_spec_free(spec);
        hand_made();
        return tap_done();
}
