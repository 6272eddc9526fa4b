/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer harness for the IR parser (pipeline/plan.c).  Beyond "no crash,
 * no leak, no UB" it checks what the rest of hm relies on: a parsed plan has
 * a topological order that is a permutation, in-range parents and chains, a
 * one-line error otherwise, and plan_cache_tag always returns a valid image
 * reference.  Build: see tests/fuzz/run.sh.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/error.h"
#include "lib/util.h"
#include "pipeline/plan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool alnum_lower(char c)
{
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* harmont-cache/<component>:<tag> with the reference grammar's rules. */
static bool valid_tag(const char *t)
{
        const char *prefix = "harmont-cache/";
        if (strncmp(t, prefix, strlen(prefix)) != 0 || strlen(t) > 255)
                return false;
        const char *c = t + strlen(prefix), *colon = strchr(c, ':');
        if (!colon || colon == c || !alnum_lower(*c) || !alnum_lower(colon[-1]))
                return false;
        for (const char *p = c; p < colon; p++) {
                if (alnum_lower(*p))
                        continue;
                const char *run = p;
                while (p < colon && !alnum_lower(*p))
                        p++;
                size_t n = (size_t) (p - run);
                bool dashes = strspn(run, "-") >= n;
                if (!(dashes || (n == 1 && (*run == '.' || *run == '_')) || (n == 2 && run[0] == '_' && run[1] == '_')))
                        return false;
                p--;
        }
        const char *tag = colon + 1;
        size_t tl = strlen(tag);
        if (tl == 0 || tl > 128 || *tag == '.' || *tag == '-')
                return false;
        return strspn(tag, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") == tl;
}

static void check_plan(const struct plan *plan)
{
        bool *seen = xcalloc(plan->n_steps + 1, sizeof *seen);
        for (size_t k = 0; k < plan->n_steps; k++) {
                uint32_t i = plan->order[k];
                if (i >= plan->n_steps || seen[i])
                        abort();
                seen[i] = true;
                const struct plan_step *s = &plan->steps[i];
                if (s->parent >= (int32_t) plan->n_steps || s->chain_id >= plan->n_chains || !s->display_name)
                        abort();
                for (size_t p = 0; p < s->n_preds; p++)
                        if (!seen[s->preds[p]]) /* every predecessor comes earlier */
                                abort();
                if (s->cache_tag && !valid_tag(s->cache_tag))
                        abort();
        }
        free(seen);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static FILE *devnull;
        if (!devnull)
                devnull = fopen("/dev/null", "we");
        struct plan *plan = NULL;
        hm_error_t err = NULL;
        if (plan_parse((const char *) data, size, "fuzz.json", &plan, &err) == 0) {
                check_plan(plan);
                if (devnull)
                        plan_print(plan, "docker", devnull);
                plan_free(plan);
        } else {
                if (!err || hm_error_exit_code(err) != HM_EXIT_INVALID_IR || strchr(err->msg, '\n'))
                        abort();
                hm_error_release(&err);
        }
        /* the input, cut in two (each half ends at its first NUL), as step key and cache key */
        size_t cut = size / 2;
        char *key = xstrndup((const char *) data, cut), *ck = xstrndup((const char *) data + cut, size - cut);
        char *tag = plan_cache_tag(key, ck);
        if (!valid_tag(tag))
                abort();
        free(tag);
        free(key);
        free(ck);
        return 0;
}
