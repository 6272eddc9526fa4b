/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The parsed, validated pipeline: what the scheduler runs.  Everything here
 * is decided before anything runs (no I/O after plan_parse returns): steps,
 * edges, predecessor/successor lists, chains, a topological order and the
 * cache tags.  See ../shared/docs/hm-compat.md §2-§4.
 */
#ifndef HM_PLAN_H
#define HM_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/error.h"

/* Exit code for invalid pipelines (hm-compat §5.6). */
#define HM_EXIT_INVALID_IR 7

enum edge_kind { EDGE_BUILDS_IN, EDGE_DEPENDS_ON };

struct plan_edge {
        uint32_t src, dst;
        enum edge_kind kind;
};

struct plan_env {
        char *key;
        char *value;
};

struct plan_step {
        uint32_t index;
        char *key;
        char *cmd;
        char *label;        /* NULL when absent */
        char *display_name; /* label, else trimmed cmd (<= 40 chars, char-based, '…') */
        char *image;        /* NULL when absent (children) */
        char *runner;       /* NULL when absent */
        uint32_t timeout_seconds; /* 0: none */
        char *cache_policy; /* NULL when no cache object */
        char *cache_key;    /* NULL when absent */
        char *cache_tag;    /* "harmont-cache/<repo>:<16 hex>", NULL when not cacheable */
        struct plan_env *env; /* node env, sorted by key */
        size_t n_env;
        int32_t parent;     /* first builds_in predecessor (lowest edge position), or -1 */
        uint32_t *preds;    /* every predecessor, either kind, deduplicated, ascending */
        size_t n_preds;
        uint32_t *succs;    /* every successor, either kind, deduplicated, ascending */
        size_t n_succs;
        uint32_t chain_id;  /* hm-compat §4.4 */
        uint32_t chain_pos; /* position within its chain, 0-based */
};

struct plan {
        char *source;        /* where it came from: a path, "-" or ".hm/x.py" */
        char *slug;          /* pipeline slug if known, else NULL */
        char *version;       /* NULL when absent */
        char *default_image; /* parsed, unused (as upstream) */
        uint32_t timeout_seconds; /* 0: none */
        bool legacy;         /* parsed from the legacy steps[] form (§2.9) */
        struct plan_step *steps;
        size_t n_steps;
        struct plan_edge *edges;
        size_t n_edges;
        uint32_t *order;     /* a topological order of step indices */
        uint32_t n_chains;
};

/*
 * Parse and validate v0 IR (graph form, or the legacy steps[] form).
 * `source` names the document in messages.  On failure the error's exit
 * code is HM_EXIT_INVALID_IR and its message is one line:
 *   "<source>: <json path>: <reason>"   e.g.  "ci.json: graph.edges[3][1]: node index 9 out of range (4 nodes)"
 * Cycles are named by step keys: "graph: cycle: a -> b -> a".
 */
int plan_parse(const char *json, size_t len, const char *source, struct plan **ret, hm_error_t *err);
void plan_free(struct plan *plan);
static inline void plan_freep(struct plan **p) { plan_free(*p); }
#define _cleanup_plan_ __attribute__((cleanup(plan_freep)))

/* "harmont-cache/<sanitized key>:<first 16 of cache key>", a valid image reference. */
char *plan_cache_tag(const char *step_key, const char *cache_key);

/*
 * Find and load the pipeline for `hm run [SLUG] [-d DIR] [-f FILE|-]`:
 * file != NULL: that file ("-" = stdin).  Else DIR/.hm/: *.json files hold IR
 * (slug = file name without .json), *.py files are rendered with python3 when
 * the `harmont` package is importable (hm-compat §3.1).  Slug selection as
 * upstream: explicit wins, else exactly one, else an error listing them.
 */
int plan_load(const char *dir, const char *file, const char *slug, struct plan **ret, hm_error_t *err);

/* Print the plan (steps, chains, order, image, runner) for --dry-run. */
struct _IO_FILE;
void plan_print(const struct plan *plan, const char *runner_name, struct _IO_FILE *out);

#endif
