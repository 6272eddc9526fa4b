/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The --dry-run plan: a header of "name: value" lines, then one line per step
 * in topological order, as space-separated key=value fields after the step's
 * position, index and key, so it greps and awks well:
 *
 *   pipeline: ci
 *   source: .hm/ci.json
 *   form: graph
 *   steps: 3
 *   edges: 2
 *   chains: 2
 *   runner: docker
 *   timeout: 1800s
 *   order index key chain parent image cache timeout after
 *   1 0 deps chain=0/0 parent=- image=alpine:3.20 cache=harmont-cache/deps:d225dea7549c88d9 timeout=- after=-
 *   2 1 tools chain=0/1 parent=deps image=(parent-snapshot) cache=- timeout=300s after=deps(builds_in)
 *
 * image is the step's image (ubuntu:24.04 when absent, as upstream) or
 * "(parent-snapshot)" for builds_in children; after= lists predecessors with
 * their edge kinds.  User strings are printed with whitespace and control bytes escaped as \xNN
 * so that every step stays one line with a fixed number of fields.
 */
#include <stdio.h>
#include <stdlib.h>

#include "lib/util.h"
#include "pipeline/plan.h"

static void put_token(FILE *out, const char *s)
{
        if (!s || !*s) {
                fputs("-", out);
                return;
        }
        for (; *s; s++) {
                unsigned char c = (unsigned char) *s;
                if (c <= ' ' || c == 0x7f || c == '\\')
                        fprintf(out, "\\x%02x", c);
                else
                        fputc(c, out);
        }
}

static int edge_cmp(const void *a, const void *b)
{
        const struct plan_edge *x = a, *y = b;
        if (x->dst != y->dst)
                return x->dst < y->dst ? -1 : 1;
        if (x->src != y->src)
                return x->src < y->src ? -1 : 1;
        return (int) x->kind - (int) y->kind;
}

/* "a(builds_in),b(depends_on),c(builds_in+depends_on)" from the sorted edges into dst. */
static void put_after(FILE *out, const struct plan *plan, const struct plan_edge *e, size_t n)
{
        if (n == 0) {
                fputs("-", out);
                return;
        }
        for (size_t i = 0; i < n;) {
                uint32_t src = e[i].src;
                bool bi = false, dep = false;
                for (; i < n && e[i].src == src; i++) {
                        if (e[i].kind == EDGE_BUILDS_IN)
                                bi = true;
                        else
                                dep = true;
                }
                put_token(out, plan->steps[src].key);
                fprintf(out, "(%s%s%s)%s", bi ? "builds_in" : "", bi && dep ? "+" : "", dep ? "depends_on" : "",
                        i < n ? "," : "");
        }
}

static void print_step(FILE *out, const struct plan *plan, size_t pos, const struct plan_step *s,
                       const struct plan_edge *in, size_t n_in)
{
        fprintf(out, "%zu %u ", pos + 1, s->index);
        put_token(out, s->key);
        fprintf(out, " chain=%u/%u parent=", s->chain_id, s->chain_pos);
        put_token(out, s->parent >= 0 ? plan->steps[s->parent].key : NULL);
        fputs(" image=", out);
        if (s->parent >= 0)
                fputs("(parent-snapshot)", out);
        else
                put_token(out, s->image ? s->image : "ubuntu:24.04");
        fputs(" cache=", out);
        put_token(out, s->cache_tag);
        if (s->timeout_seconds)
                fprintf(out, " timeout=%us", s->timeout_seconds);
        else
                fputs(" timeout=-", out);
        fputs(" after=", out);
        put_after(out, plan, in, n_in);
        fputc('\n', out);
}

void plan_print(const struct plan *plan, const char *runner_name, FILE *out)
{
        fputs("pipeline: ", out);
        put_token(out, plan->slug);
        fputs("\nsource: ", out);
        put_token(out, plan->source);
        fprintf(out, "\nform: %s\nsteps: %zu\nedges: %zu\nchains: %u\nrunner: ", plan->legacy ? "legacy" : "graph",
                plan->n_steps, plan->n_edges, plan->n_chains);
        put_token(out, runner_name);
        if (plan->timeout_seconds)
                fprintf(out, "\ntimeout: %us\n", plan->timeout_seconds);
        else
                fputs("\ntimeout: -\n", out);
        fputs("order index key chain parent image cache timeout after\n", out);

        _cleanup_free_ struct plan_edge *edges = xcalloc(plan->n_edges + 1, sizeof *edges);
        _cleanup_free_ size_t *start = xcalloc(plan->n_steps + 1, sizeof *start);
        if (plan->n_edges)
                memcpy(edges, plan->edges, plan->n_edges * sizeof *edges);
        qsort(edges, plan->n_edges, sizeof *edges, edge_cmp);
        for (size_t e = 0; e < plan->n_edges; e++)
                start[edges[e].dst + 1]++;
        for (size_t i = 0; i < plan->n_steps; i++)
                start[i + 1] += start[i];
        for (size_t k = 0; k < plan->n_steps; k++) {
                uint32_t i = plan->order[k];
                print_step(out, plan, k, &plan->steps[i], edges + start[i], start[i + 1] - start[i]);
        }
}
