/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Shared between pipeline/plan.c and pipeline/load.c only (not a public
 * API): load.c reads envelopes (hm-compat §2.10) whose `definition` objects
 * are already-parsed yajl trees, so it builds plans from trees directly.
 */
#ifndef HM_PLAN_INTERNAL_H
#define HM_PLAN_INTERNAL_H

#include <stddef.h>
#include <yajl/yajl_tree.h>

#include "lib/error.h"
#include "pipeline/plan.h"

/* Deepest nesting plan_json_parse accepts (yajl_tree_free recurses; IR needs ~6). */
#define PLAN_MAX_DEPTH 64

/*
 * A parsed JSON document: a tree of yajl's public struct yajl_val_s (use
 * yajl_tree_get on it, never yajl_tree_free), allocated in one arena.
 */
struct plan_json;
void plan_json_free(struct plan_json *j);
static inline void plan_json_freep(struct plan_json **j) { plan_json_free(*j); }
#define _cleanup_plan_json_ __attribute__((cleanup(plan_json_freep)))
yajl_val plan_json_root(const struct plan_json *j);

/*
 * Parse JSON text.  Errors (exit HM_EXIT_INVALID_IR) are one line:
 * "<source>: line L, column C: <yajl's reason>", "<source>: $: empty document".
 */
int plan_json_parse(const char *json, size_t len, const char *source, struct plan_json **ret, hm_error_t *err);

/* Validate a parsed document (graph or legacy form) into a plan. */
int plan_from_tree(yajl_val root, const char *source, struct plan **ret, hm_error_t *err);

const char *plan_json_type_name(yajl_val v);

#endif
