/* SPDX-License-Identifier: Apache-2.0 */
/*
 * v0 IR parsing and validation (hm-compat §2) into a struct plan.
 *
 * Two passes: the first walks the yajl tree and checks every field's type,
 * building steps and edges; the second (the graph computations at the end
 * of this file) computes predecessor/successor lists, parents, chains and a
 * topological order, rejecting cycles.  Everything is O(V + E) except the
 * ready-queue heap of the topological sort (O(V log V)); a 100k-step,
 * 10 MB document parses and validates in about 0.35 s here, most of it
 * malloc and page faults.  JSON text is parsed by our own arena-backed tree
 * builder (see "Our own tree builder" below), not yajl_tree_parse.
 *
 * Deliberate differences from upstream (which is laxer), all reported as
 * invalid IR (exit 7) with a JSON path:
 *  - cycles and self-loops are rejected at parse time (upstream: exit 4 from
 *    the scheduler, after the archive was built);
 *  - step keys must be unique and non-empty, cmd non-empty;
 *  - a field given twice in one object is an error (serde does the same for
 *    struct fields), and so is a duplicate env name;
 *  - env names must be non-empty and contain no '=' (they become "K=V");
 *  - step.env (ignored by the local backend) must still be object-or-null.
 *  - strings containing "\u0000" are rejected (C strings would cut them);
 *  - nesting deeper than PLAN_MAX_DEPTH is rejected.
 * Several builds_in parents are allowed: `parent` is the
 * source of the first builds_in edge into the step in edge order, as
 * upstream's "first builds_in predecessor".
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include <yajl/yajl_parse.h>
#include <yajl/yajl_tree.h>

#include "lib/strbuf.h"
#include "lib/util.h"
#include "pipeline/plan-internal.h"
#include "pipeline/plan.h"

#define DISPLAY_NAME_MAX 40 /* characters (code points), hm-compat §2.4 */
#define CYCLE_SHOW_MAX 16   /* keys named in a cycle message before eliding */

struct parser {
        const char *source;
        hm_error_t *err;
        struct plan *plan;
        /* step key -> index+1, open addressing, power-of-two size */
        uint32_t *keys;
        size_t keys_mask;
};

/* ---- errors and small JSON helpers --------------------------------------------------------- */

static int invalid(struct parser *p, const char *path, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/*
 * Messages quote user strings (keys, kinds, names): control characters are
 * escaped so the message stays one line, and it is cut (at a character
 * boundary) so a megabyte-long key cannot flood the terminal.
 */
#define MESSAGE_MAX 1024

static void add_printable(struct strbuf *out, const char *s)
{
        for (; *s && out->len < MESSAGE_MAX; s++) {
                unsigned char c = (unsigned char) *s;
                if (c < 0x20 || c == 0x7f)
                        strbuf_addf(out, "\\x%02x", c);
                else
                        strbuf_addch(out, (char) c);
        }
        if (*s) {
                while (out->len > 0 && ((unsigned char) out->buf[out->len - 1] & 0xC0) == 0x80)
                        out->len--;
                if (out->len > 0 && ((unsigned char) out->buf[out->len - 1] & 0x80))
                        out->len--; /* the lead byte of the cut character */
                out->buf[out->len] = 0;
                strbuf_addstr(out, "…");
        }
}

static int invalid(struct parser *p, const char *path, const char *fmt, ...)
{
        _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;
        _cleanup_strbuf_ struct strbuf out = STRBUF_INIT;
        va_list ap;
        va_start(ap, fmt);
        strbuf_vaddf(&sb, fmt, ap);
        va_end(ap);
        add_printable(&out, sb.buf);
        return hm_error_set_exit(p->err, HM_EXIT_INVALID_IR, 0, "%s: %s: %s", p->source, path, out.buf);
}

const char *plan_json_type_name(yajl_val v)
{
        if (!v)
                return "nothing";
        switch (v->type) {
        case yajl_t_string: return "a string";
        case yajl_t_number: return "a number";
        case yajl_t_object: return "an object";
        case yajl_t_array: return "an array";
        case yajl_t_true:
        case yajl_t_false: return "a boolean";
        case yajl_t_null: return "null";
        default: return "an unknown value";
        }
}

static int type_error(struct parser *p, const char *path, const char *want, yajl_val got)
{
        return invalid(p, path, "expected %s, got %s", want, plan_json_type_name(got));
}

/* Look a field up; 1 found, 0 absent, <0 when given twice. */
static int field(struct parser *p, yajl_val obj, const char *path, const char *name, yajl_val *ret)
{
        yajl_val found = NULL;
        for (size_t i = 0; i < obj->u.object.len; i++) {
                if (strcmp(obj->u.object.keys[i], name) != 0)
                        continue;
                if (found)
                        return invalid(p, path, "duplicate field '%s'", name);
                found = obj->u.object.values[i];
        }
        *ret = found;
        return found != NULL;
}

/* "a.b" + "c" -> "a.b.c" in buf (paths are short: names and indices only). */
static const char *subpath(char *buf, size_t size, const char *path, const char *name)
{
        bool root = path[0] == '$' && path[1] == 0;
        size_t pl = root ? 0 : strlen(path), nl = strlen(name);
        if (pl + nl + 2 > size) {
                snprintf(buf, size, "%s.%s", path, name); /* truncated: only long env names */
                return buf;
        }
        memcpy(buf, path, pl);
        if (!root)
                buf[pl++] = '.';
        memcpy(buf + pl, name, nl + 1);
        return buf;
}

/* Required or optional string; with nullable, JSON null counts as absent. */
static int get_string(struct parser *p, yajl_val obj, const char *path, const char *name, bool required,
                      bool nullable, char **ret)
{
        char sub[160];
        yajl_val v;
        int r = field(p, obj, path, name, &v);
        if (r < 0)
                return r;
        if (r == 0 || (nullable && YAJL_IS_NULL(v))) {
                if (required)
                        return invalid(p, path, "missing field '%s'", name);
                return 0;
        }
        if (!YAJL_IS_STRING(v))
                return type_error(p, subpath(sub, sizeof sub, path, name),
                                  nullable ? "a string or null" : "a string", v);
        *ret = xstrdup(v->u.string);
        return 1;
}

/* An integer in 1..max (JSON null = absent, 0 = error as NonZeroU32). */
static int parse_uint(struct parser *p, yajl_val v, const char *path, uint64_t min, uint64_t max,
                      uint64_t *ret)
{
        if (!YAJL_IS_NUMBER(v))
                return type_error(p, path, "an integer", v);
        const char *text = v->u.number.r;
        if (strpbrk(text, ".eE"))
                return invalid(p, path, "expected an integer, got %s", text);
        bool int_valid = v->u.number.flags & YAJL_NUMBER_INT_VALID;
        if (text[0] == '-' && !(int_valid && v->u.number.i == 0))
                return invalid(p, path, "negative number %s not allowed", text);
        if (!int_valid)
                return invalid(p, path, "number %s out of range (%llu..%llu)", text,
                               (unsigned long long) min, (unsigned long long) max);
        long long i = v->u.number.i;
        if ((uint64_t) i < min) {
                if (i == 0)
                        return invalid(p, path, "must not be 0 (expected %llu..%llu)",
                                       (unsigned long long) min, (unsigned long long) max);
                return invalid(p, path, "number %s out of range (%llu..%llu)", text,
                               (unsigned long long) min, (unsigned long long) max);
        }
        if ((uint64_t) i > max)
                return invalid(p, path, "number %s out of range (%llu..%llu)", text,
                               (unsigned long long) min, (unsigned long long) max);
        *ret = (uint64_t) i;
        return 0;
}

static int get_timeout(struct parser *p, yajl_val obj, const char *path, uint32_t *ret)
{
        char sub[160];
        yajl_val v;
        int r = field(p, obj, path, "timeout_seconds", &v);
        if (r <= 0 || YAJL_IS_NULL(v))
                return r < 0 ? r : 0;
        uint64_t t;
        r = parse_uint(p, v, subpath(sub, sizeof sub, path, "timeout_seconds"), 1, UINT32_MAX, &t);
        if (r < 0)
                return r;
        *ret = (uint32_t) t;
        return 0;
}

static int env_cmp(const void *a, const void *b)
{
        return strcmp(((const struct plan_env *) a)->key, ((const struct plan_env *) b)->key);
}

static void env_free(struct plan_env *env, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                free(env[i].key);
                free(env[i].value);
        }
        free(env);
}

/* An object of string -> string, returned sorted by name. */
static int parse_env(struct parser *p, yajl_val v, const char *path, struct plan_env **ret, size_t *ret_n)
{
        char sub[160];
        if (!YAJL_IS_OBJECT(v))
                return type_error(p, path, "an object of strings", v);
        size_t n = v->u.object.len;
        struct plan_env *env = n ? xcalloc(n, sizeof *env) : NULL;
        for (size_t i = 0; i < n; i++) {
                const char *k = v->u.object.keys[i];
                yajl_val val = v->u.object.values[i];
                if (!YAJL_IS_STRING(val)) {
                        env_free(env, i);
                        return type_error(p, subpath(sub, sizeof sub, path, k), "a string", val);
                }
                if (!*k || strchr(k, '=')) {
                        env_free(env, i);
                        return invalid(p, path, "invalid variable name '%s'", k);
                }
                env[i].key = xstrdup(k);
                env[i].value = xstrdup(val->u.string);
        }
        if (n > 1)
                qsort(env, n, sizeof *env, env_cmp);
        for (size_t i = 1; i < n; i++) {
                if (strcmp(env[i - 1].key, env[i].key) == 0) {
                        int r = invalid(p, path, "duplicate variable '%s'", env[i].key);
                        env_free(env, n);
                        return r;
                }
        }
        *ret = env;
        *ret_n = n;
        return 0;
}

/* ---- display name and cache tag ----------------------------------------------------------- */

static bool is_space(char c)
{
        return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/*
 * Label, else the trimmed command cut to 40 characters (39 + "…").  Strings
 * are valid UTF-8.  To save an allocation per step the result may be `label`
 * or `cmd` itself; plan_free knows (see step_release).
 */
static char *display_name(char *label, char *cmd)
{
        if (label)
                return label;
        const char *s = cmd, *e = cmd + strlen(cmd);
        while (s < e && is_space(*s))
                s++;
        while (e > s && is_space(e[-1]))
                e--;
        size_t chars = 0, cut = 0;
        for (const char *c = s; c < e; c++) {
                if (((unsigned char) *c & 0xC0) == 0x80)
                        continue;
                if (chars == DISPLAY_NAME_MAX - 1)
                        cut = (size_t) (c - s);
                chars++;
        }
        if (chars <= DISPLAY_NAME_MAX)
                return s == cmd && !*e ? cmd : xstrndup(s, (size_t) (e - s));
        char *out = xmalloc(cut + sizeof "…");
        memcpy(out, s, cut);
        memcpy(out + cut, "…", sizeof "…");
        return out;
}

static bool is_lower_alnum(char c)
{
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static char ascii_lower(char c)
{
        return c >= 'A' && c <= 'Z' ? (char) (c - 'A' + 'a') : c;
}

/*
 * One repository path component, valid by the reference grammar:
 * [a-z0-9]+ ((\.|_|__|-+) [a-z0-9]+)*.  Runs of other characters become one
 * '-'; a separator run that is not itself valid becomes '-'.
 */
static void add_repo_component(struct strbuf *sb, const char *key)
{
        const size_t max = 200; /* whole reference name must stay < 256 */
        size_t start = sb->len;
        const char *s = key;
        while (*s && sb->len - start < max) {
                char c = ascii_lower(*s);
                if (is_lower_alnum(c)) {
                        strbuf_addch(sb, c);
                        s++;
                        continue;
                }
                const char *run = s;
                bool dashes = true;
                while (*s && !is_lower_alnum(ascii_lower(*s))) {
                        if (*s != '-')
                                dashes = false;
                        s++;
                }
                size_t n = (size_t) (s - run), room = max - (sb->len - start);
                if (n > room)
                        n = room;
                if (sb->len == start || !*s)
                        continue; /* leading or trailing separators are dropped */
                if (dashes)
                        strbuf_add(sb, run, n);
                else if ((n == 1 && (*run == '.' || *run == '_')) || (n == 2 && run[0] == '_' && run[1] == '_'))
                        strbuf_add(sb, run, n);
                else
                        strbuf_addch(sb, '-');
        }
        while (sb->len > start && !is_lower_alnum(sb->buf[sb->len - 1]))
                sb->len--;
        sb->buf[sb->len] = 0;
        if (sb->len == start)
                strbuf_addstr(sb, "step");
}

char *plan_cache_tag(const char *step_key, const char *cache_key)
{
        _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;
        strbuf_addstr(&sb, "harmont-cache/");
        add_repo_component(&sb, step_key ? step_key : "");
        strbuf_addch(&sb, ':');
        size_t start = sb.len;
        for (const char *c = cache_key ? cache_key : ""; *c && sb.len - start < 16; c++) {
                char l = ascii_lower(*c);
                strbuf_addch(&sb, is_lower_alnum(l) ? l : '-');
        }
        if (sb.len == start)
                strbuf_addstr(&sb, "nokey");
        else if (sb.buf[start] == '-')
                sb.buf[start] = '_'; /* a tag must not start with '-' or '.' */
        return strbuf_detach(&sb, NULL);
}

/* ---- step keys ----------------------------------------------------------------------------- */

static uint64_t hash_str(const char *s)
{
        uint64_t h = 1469598103934665603ull;
        for (; *s; s++)
                h = (h ^ (unsigned char) *s) * 1099511628211ull;
        return h;
}

static void keys_init(struct parser *p, size_t n)
{
        size_t size = 16;
        while (size < n * 2)
                size <<= 1;
        p->keys = xcalloc(size, sizeof *p->keys);
        p->keys_mask = size - 1;
}

/* Index of key, or -1. */
static int64_t keys_find(const struct parser *p, const char *key)
{
        for (size_t h = hash_str(key) & p->keys_mask;; h = (h + 1) & p->keys_mask) {
                uint32_t slot = p->keys[h];
                if (!slot)
                        return -1;
                if (strcmp(p->plan->steps[slot - 1].key, key) == 0)
                        return slot - 1;
        }
}

/* Insert step idx; returns the index of an earlier step with that key, or -1. */
static int64_t keys_insert(struct parser *p, uint32_t idx)
{
        const char *key = p->plan->steps[idx].key;
        size_t h = hash_str(key) & p->keys_mask;
        for (; p->keys[h]; h = (h + 1) & p->keys_mask)
                if (strcmp(p->plan->steps[p->keys[h] - 1].key, key) == 0)
                        return p->keys[h] - 1;
        p->keys[h] = idx + 1;
        return -1;
}

/* ---- steps --------------------------------------------------------------------------------- */

static int parse_cache(struct parser *p, yajl_val step, const char *path, struct plan_step *s)
{
        char sub[160];
        yajl_val v;
        int r = field(p, step, path, "cache", &v);
        if (r <= 0 || YAJL_IS_NULL(v))
                return r < 0 ? r : 0;
        subpath(sub, sizeof sub, path, "cache");
        if (!YAJL_IS_OBJECT(v))
                return type_error(p, sub, "an object or null", v);
        r = get_string(p, v, sub, "policy", true, false, &s->cache_policy);
        if (r < 0)
                return r;
        return get_string(p, v, sub, "key", false, true, &s->cache_key);
}

/* The CommandStep fields shared by both forms; `path` names the step object. */
static int parse_step_fields(struct parser *p, yajl_val step, const char *path, struct plan_step *s)
{
        char sub[160];
        int r = get_string(p, step, path, "key", true, false, &s->key);
        if (r < 0)
                return r;
        if (!*s->key)
                return invalid(p, subpath(sub, sizeof sub, path, "key"), "empty step key");
        r = get_string(p, step, path, "cmd", true, false, &s->cmd);
        if (r < 0)
                return r;
        if (!*s->cmd)
                return invalid(p, subpath(sub, sizeof sub, path, "cmd"), "empty command");
        static const char *const names[] = { "label", "image", "runner" };
        char **dst[] = { &s->label, &s->image, &s->runner };
        for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
                r = get_string(p, step, path, names[i], false, true, dst[i]);
                if (r < 0)
                        return r;
        }
        r = get_timeout(p, step, path, &s->timeout_seconds);
        if (r < 0)
                return r;
        r = parse_cache(p, step, path, s);
        if (r < 0)
                return r;
        s->display_name = display_name(s->label, s->cmd);
        if (s->cache_policy && strcmp(s->cache_policy, "none") != 0 && s->cache_key)
                s->cache_tag = plan_cache_tag(s->key, s->cache_key);
        return 0;
}

/* Optional step-level env (object or null); returns it parsed when wanted. */
static int parse_step_env(struct parser *p, yajl_val step, const char *path, struct plan_env **ret,
                          size_t *ret_n)
{
        char sub[160];
        yajl_val v;
        int r = field(p, step, path, "env", &v);
        if (r <= 0 || YAJL_IS_NULL(v))
                return r < 0 ? r : 0;
        struct plan_env *env = NULL;
        size_t n = 0;
        r = parse_env(p, v, subpath(sub, sizeof sub, path, "env"), &env, &n);
        if (r < 0)
                return r;
        if (ret) {
                *ret = env;
                *ret_n = n;
        } else {
                env_free(env, n);
        }
        return 0;
}

static int register_key(struct parser *p, uint32_t idx, const char *path, const char *list_name)
{
        int64_t other = keys_insert(p, idx);
        if (other < 0)
                return 0;
        char sub[160];
        return invalid(p, subpath(sub, sizeof sub, path, "key"), "duplicate step key '%s' (also %s[%lld])",
                       p->plan->steps[idx].key, list_name, (long long) other);
}

/* ---- graph form ---------------------------------------------------------------------------- */

/* prefix + idx + "]" without printf, which showed up in profiles of 100k-step documents. */
static void index_path(char *buf, size_t size, const char *prefix, size_t idx)
{
        char digits[24];
        size_t nd = 0, pl = strlen(prefix);
        do {
                digits[nd++] = (char) ('0' + idx % 10);
                idx /= 10;
        } while (idx);
        if (pl + nd + 2 > size)
                abort();
        memcpy(buf, prefix, pl);
        for (size_t k = 0; k < nd; k++)
                buf[pl + k] = digits[nd - 1 - k];
        buf[pl + nd] = ']';
        buf[pl + nd + 1] = 0;
}

static int parse_node(struct parser *p, yajl_val node, uint32_t idx)
{
        char path[64], sub[160];
        index_path(path, sizeof path, "graph.nodes[", idx);
        if (!YAJL_IS_OBJECT(node))
                return type_error(p, path, "an object", node);
        struct plan_step *s = &p->plan->steps[idx];
        s->index = idx;
        s->parent = -1;
        yajl_val step, env;
        int r = field(p, node, path, "step", &step);
        if (r < 0)
                return r;
        if (r == 0)
                return invalid(p, path, "missing field 'step'");
        subpath(sub, sizeof sub, path, "step");
        if (!YAJL_IS_OBJECT(step))
                return type_error(p, sub, "an object", step);
        r = parse_step_fields(p, step, sub, s);
        if (r < 0)
                return r;
        r = parse_step_env(p, step, sub, NULL, NULL);
        if (r < 0)
                return r;
        r = register_key(p, idx, sub, "graph.nodes");
        if (r < 0)
                return r;
        r = field(p, node, path, "env", &env);
        if (r < 0)
                return r;
        if (r == 0)
                return invalid(p, path, "missing field 'env'");
        return parse_env(p, env, subpath(sub, sizeof sub, path, "env"), &s->env, &s->n_env);
}

/* Edges are most of a big document: check the common valid shape without formatting paths. */
static bool edge_end_fast(yajl_val v, size_t n, uint32_t *ret)
{
        if (!YAJL_IS_NUMBER(v) || !(v->u.number.flags & YAJL_NUMBER_INT_VALID) || v->u.number.i < 0 ||
            (uint64_t) v->u.number.i >= n || strpbrk(v->u.number.r, ".eE-"))
                return false;
        *ret = (uint32_t) v->u.number.i;
        return true;
}

static bool parse_edge_fast(struct parser *p, yajl_val e, struct plan_edge *out)
{
        if (!YAJL_IS_ARRAY(e) || e->u.array.len != 3)
                return false;
        size_t n = p->plan->n_steps;
        yajl_val kind = e->u.array.values[2];
        if (!edge_end_fast(e->u.array.values[0], n, &out->src) || !edge_end_fast(e->u.array.values[1], n, &out->dst) ||
            out->src == out->dst || !YAJL_IS_STRING(kind))
                return false;
        if (strcmp(kind->u.string, "builds_in") == 0)
                out->kind = EDGE_BUILDS_IN;
        else if (strcmp(kind->u.string, "depends_on") == 0)
                out->kind = EDGE_DEPENDS_ON;
        else
                return false;
        return true;
}

static int parse_edge(struct parser *p, yajl_val e, size_t i, struct plan_edge *out)
{
        if (parse_edge_fast(p, e, out))
                return 0;
        char path[64], sub[80];
        snprintf(path, sizeof path, "graph.edges[%zu]", i);
        if (!YAJL_IS_ARRAY(e))
                return type_error(p, path, "an array [source, target, kind]", e);
        if (e->u.array.len != 3)
                return invalid(p, path, "expected 3 elements [source, target, kind], got %zu", e->u.array.len);
        size_t n = p->plan->n_steps;
        uint64_t ends[2];
        for (int k = 0; k < 2; k++) {
                snprintf(sub, sizeof sub, "%s[%d]", path, k);
                int r = parse_uint(p, e->u.array.values[k], sub, 0, UINT32_MAX, &ends[k]);
                if (r < 0)
                        return r;
                if (ends[k] >= n)
                        return invalid(p, sub, "node index %llu out of range (%zu nodes)",
                                       (unsigned long long) ends[k], n);
        }
        yajl_val kind = e->u.array.values[2];
        snprintf(sub, sizeof sub, "%s[2]", path);
        if (!YAJL_IS_STRING(kind))
                return type_error(p, sub, "an edge kind string", kind);
        if (strcmp(kind->u.string, "builds_in") == 0)
                out->kind = EDGE_BUILDS_IN;
        else if (strcmp(kind->u.string, "depends_on") == 0)
                out->kind = EDGE_DEPENDS_ON;
        else
                return invalid(p, sub, "unknown edge kind '%s' (expected 'builds_in' or 'depends_on')",
                               kind->u.string);
        if (ends[0] == ends[1])
                return invalid(p, path, "self-loop on step '%s'", p->plan->steps[ends[0]].key);
        out->src = (uint32_t) ends[0];
        out->dst = (uint32_t) ends[1];
        return 0;
}

static int get_array(struct parser *p, yajl_val obj, const char *path, const char *name, bool required,
                     yajl_val *ret)
{
        char sub[160];
        int r = field(p, obj, path, name, ret);
        if (r < 0)
                return r;
        if (r == 0) {
                if (required)
                        return invalid(p, path, "missing field '%s'", name);
                return 0;
        }
        if (!YAJL_IS_ARRAY(*ret))
                return type_error(p, subpath(sub, sizeof sub, path, name), "an array", *ret);
        return 1;
}

static int parse_graph(struct parser *p, yajl_val g)
{
        if (!YAJL_IS_OBJECT(g))
                return type_error(p, "graph", "an object", g);
        yajl_val nodes, holes, edges, prop;
        int r = get_array(p, g, "graph", "nodes", true, &nodes);
        if (r < 0)
                return r;
        r = get_array(p, g, "graph", "node_holes", false, &holes);
        if (r < 0)
                return r;
        if (r > 0 && holes->u.array.len > 0)
                return invalid(p, "graph.node_holes", "graph can not have holes (%zu given)", holes->u.array.len);
        r = field(p, g, "graph", "edge_property", &prop);
        if (r < 0)
                return r;
        if (r == 0)
                return invalid(p, "graph", "missing field 'edge_property'");
        if (!YAJL_IS_STRING(prop))
                return type_error(p, "graph.edge_property", "a string", prop);
        if (strcmp(prop->u.string, "directed") != 0)
                return invalid(p, "graph.edge_property", "edge property mismatch: expected 'directed', got '%s'",
                               prop->u.string);
        r = get_array(p, g, "graph", "edges", true, &edges);
        if (r < 0)
                return r;
        if (nodes->u.array.len > UINT32_MAX - 1)
                return invalid(p, "graph.nodes", "too many nodes");

        struct plan *plan = p->plan;
        plan->n_steps = nodes->u.array.len;
        plan->steps = xcalloc(plan->n_steps ? plan->n_steps : 1, sizeof *plan->steps);
        keys_init(p, plan->n_steps);
        for (size_t i = 0; i < plan->n_steps; i++) {
                r = parse_node(p, nodes->u.array.values[i], (uint32_t) i);
                if (r < 0)
                        return r;
        }
        plan->n_edges = edges->u.array.len;
        plan->edges = xcalloc(plan->n_edges ? plan->n_edges : 1, sizeof *plan->edges);
        for (size_t i = 0; i < plan->n_edges; i++) {
                r = parse_edge(p, edges->u.array.values[i], i, &plan->edges[i]);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* ---- legacy steps[] form (hm-compat §2.9) -------------------------------------------------- */

/* Node env = top-level env overridden by step env; both sorted, result sorted. */
static void merge_env(const struct plan_env *top, size_t n_top, struct plan_env *own, size_t n_own,
                      struct plan_env **ret, size_t *ret_n)
{
        struct plan_env *out = xcalloc(n_top + n_own + 1, sizeof *out);
        size_t i = 0, j = 0, n = 0;
        while (i < n_top || j < n_own) {
                int c = i == n_top ? 1 : j == n_own ? -1 : strcmp(top[i].key, own[j].key);
                if (c < 0) {
                        out[n].key = xstrdup(top[i].key);
                        out[n++].value = xstrdup(top[i++].value);
                        continue;
                }
                if (c == 0)
                        i++;
                out[n++] = own[j];
                own[j++] = (struct plan_env) { 0 };
        }
        *ret = out;
        *ret_n = n;
}

struct legacy_step {
        yajl_val obj;
        size_t pos; /* position in steps[] */
        bool wait;
};

static int legacy_classify(struct parser *p, yajl_val arr, struct legacy_step *ls, size_t *ret_n_cmd)
{
        char path[64];
        size_t n_cmd = 0;
        for (size_t i = 0; i < arr->u.array.len; i++) {
                yajl_val v = arr->u.array.values[i];
                snprintf(path, sizeof path, "steps[%zu]", i);
                if (!YAJL_IS_OBJECT(v))
                        return type_error(p, path, "an object", v);
                _cleanup_free_ char *type = NULL;
                int r = get_string(p, v, path, "type", true, false, &type);
                if (r < 0)
                        return r;
                ls[i] = (struct legacy_step) { .obj = v, .pos = i };
                if (strcmp(type, "wait") == 0) {
                        ls[i].wait = true;
                } else if (strcmp(type, "command") == 0) {
                        n_cmd++;
                } else {
                        char sub[80];
                        snprintf(sub, sizeof sub, "%s.type", path);
                        return invalid(p, sub, "unknown step type '%s' (expected 'command' or 'wait')", type);
                }
        }
        *ret_n_cmd = n_cmd;
        return 0;
}

static void push_edge(struct plan *plan, size_t *cap, uint32_t src, uint32_t dst, enum edge_kind kind)
{
        if (plan->n_edges == *cap) {
                *cap = *cap ? *cap * 2 : 16;
                plan->edges = xreallocarray(plan->edges, *cap, sizeof *plan->edges);
        }
        plan->edges[plan->n_edges++] = (struct plan_edge) { src, dst, kind };
}

static int legacy_step(struct parser *p, const struct legacy_step *ls, uint32_t idx, const struct plan_env *top,
                       size_t n_top)
{
        char path[64];
        snprintf(path, sizeof path, "steps[%zu]", ls->pos);
        struct plan_step *s = &p->plan->steps[idx];
        s->index = idx;
        s->parent = -1;
        int r = parse_step_fields(p, ls->obj, path, s);
        if (r < 0)
                return r;
        r = register_key(p, idx, path, "steps");
        if (r < 0)
                return r;
        struct plan_env *own = NULL;
        size_t n_own = 0;
        r = parse_step_env(p, ls->obj, path, &own, &n_own);
        if (r < 0)
                return r;
        merge_env(top, n_top, own, n_own, &s->env, &s->n_env);
        env_free(own, n_own);
        return 0;
}

/* builds_in edge (if any) then the barrier's depends_on edges, per command step in order. */
static int legacy_edges(struct parser *p, const struct legacy_step *ls, size_t n)
{
        struct plan *plan = p->plan;
        size_t cap = 0;
        _cleanup_free_ uint32_t *seg = xcalloc(plan->n_steps + 1, sizeof *seg);
        _cleanup_free_ uint32_t *barrier = xcalloc(plan->n_steps + 1, sizeof *barrier);
        size_t n_seg = 0, n_barrier = 0;
        uint32_t idx = 0;
        for (size_t i = 0; i < n; i++) {
                if (ls[i].wait) {
                        /* an empty segment (two waits in a row) keeps the previous barrier */
                        if (n_seg > 0) {
                                memcpy(barrier, seg, n_seg * sizeof *seg);
                                n_barrier = n_seg;
                                n_seg = 0;
                        }
                        continue;
                }
                char path[80];
                snprintf(path, sizeof path, "steps[%zu]", ls[i].pos);
                _cleanup_free_ char *parent = NULL;
                int r = get_string(p, ls[i].obj, path, "builds_in", false, true, &parent);
                if (r < 0)
                        return r;
                if (parent) {
                        int64_t src = keys_find(p, parent);
                        snprintf(path, sizeof path, "steps[%zu].builds_in", ls[i].pos);
                        if (src < 0)
                                return invalid(p, path, "unknown step key '%s'", parent);
                        if ((uint32_t) src == idx)
                                return invalid(p, path, "self-loop on step '%s'", parent);
                        push_edge(plan, &cap, (uint32_t) src, idx, EDGE_BUILDS_IN);
                }
                for (size_t b = 0; b < n_barrier; b++)
                        push_edge(plan, &cap, barrier[b], idx, EDGE_DEPENDS_ON);
                seg[n_seg++] = idx++;
        }
        return 0;
}

static int parse_legacy(struct parser *p, yajl_val root, yajl_val steps)
{
        struct plan *plan = p->plan;
        plan->legacy = true;
        if (!YAJL_IS_ARRAY(steps))
                return type_error(p, "steps", "an array", steps);
        struct plan_env *top = NULL;
        size_t n_top = 0;
        yajl_val env;
        int r = field(p, root, "$", "env", &env);
        if (r < 0)
                return r;
        if (r > 0 && !YAJL_IS_NULL(env)) {
                r = parse_env(p, env, "env", &top, &n_top);
                if (r < 0)
                        return r;
        }
        size_t n = steps->u.array.len, n_cmd = 0;
        _cleanup_free_ struct legacy_step *ls = xcalloc(n + 1, sizeof *ls);
        r = legacy_classify(p, steps, ls, &n_cmd);
        if (r < 0) {
                env_free(top, n_top);
                return r;
        }
        plan->n_steps = n_cmd;
        plan->steps = xcalloc(n_cmd + 1, sizeof *plan->steps);
        keys_init(p, n_cmd);
        uint32_t idx = 0;
        for (size_t i = 0; i < n && r >= 0; i++)
                if (!ls[i].wait)
                        r = legacy_step(p, &ls[i], idx++, top, n_top);
        env_free(top, n_top);
        if (r < 0)
                return r;
        return legacy_edges(p, ls, n);
}

/* ---- graph computations -------------------------------------------------------------------- */

/*
 * preds/succs, deduplicated and ascending, without sorting: bucket the raw
 * predecessors by target (CSR), then walk targets in ascending order to fill
 * successor lists (ascending, duplicates adjacent), then walk sources in
 * ascending order over those to fill predecessor lists.
 */
static void compute_adjacency(struct plan *plan)
{
        size_t n = plan->n_steps, m = plan->n_edges;
        _cleanup_free_ size_t *start = xcalloc(n + 1, sizeof *start);
        _cleanup_free_ uint32_t *raw = xcalloc(m + 1, sizeof *raw);
        _cleanup_free_ size_t *cnt = xcalloc(n + 1, sizeof *cnt);
        for (size_t e = 0; e < m; e++)
                start[plan->edges[e].dst + 1]++;
        for (size_t i = 0; i < n; i++)
                start[i + 1] += start[i];
        for (size_t e = 0; e < m; e++) {
                uint32_t d = plan->edges[e].dst;
                raw[start[d] + cnt[d]++] = plan->edges[e].src;
                if (plan->edges[e].kind == EDGE_BUILDS_IN && plan->steps[d].parent < 0)
                        plan->steps[d].parent = (int32_t) plan->edges[e].src;
        }
        /* successor counts upper bound, then fill ascending */
        memset(cnt, 0, (n + 1) * sizeof *cnt);
        for (size_t k = 0; k < m; k++)
                cnt[raw[k]]++;
        for (size_t i = 0; i < n; i++)
                plan->steps[i].succs = cnt[i] ? xcalloc(cnt[i], sizeof(uint32_t)) : NULL;
        for (uint32_t d = 0; d < n; d++) {
                for (size_t k = start[d]; k < start[d + 1]; k++) {
                        struct plan_step *s = &plan->steps[raw[k]];
                        if (s->n_succs && s->succs[s->n_succs - 1] == d)
                                continue;
                        s->succs[s->n_succs++] = d;
                }
        }
        memset(cnt, 0, (n + 1) * sizeof *cnt);
        for (size_t i = 0; i < n; i++)
                for (size_t k = 0; k < plan->steps[i].n_succs; k++)
                        cnt[plan->steps[i].succs[k]]++;
        for (size_t i = 0; i < n; i++)
                plan->steps[i].preds = cnt[i] ? xcalloc(cnt[i], sizeof(uint32_t)) : NULL;
        for (uint32_t i = 0; i < n; i++) {
                for (size_t k = 0; k < plan->steps[i].n_succs; k++) {
                        struct plan_step *t = &plan->steps[plan->steps[i].succs[k]];
                        t->preds[t->n_preds++] = i;
                }
        }
}

/* Min-heap of ready step indices, so ties break by ascending index. */
struct heap {
        uint32_t *v;
        size_t n;
};

static void heap_push(struct heap *h, uint32_t x)
{
        size_t i = h->n++;
        while (i > 0 && h->v[(i - 1) / 2] > x) {
                h->v[i] = h->v[(i - 1) / 2];
                i = (i - 1) / 2;
        }
        h->v[i] = x;
}

static uint32_t heap_pop(struct heap *h)
{
        uint32_t top = h->v[0], x = h->v[--h->n];
        size_t i = 0;
        for (;;) {
                size_t c = 2 * i + 1;
                if (c >= h->n)
                        break;
                if (c + 1 < h->n && h->v[c + 1] < h->v[c])
                        c++;
                if (h->v[c] >= x)
                        break;
                h->v[i] = h->v[c];
                i = c;
        }
        if (h->n)
                h->v[i] = x;
        return top;
}

/*
 * Name a cycle among the steps Kahn's algorithm could not order: each such
 * step has a predecessor that is also unordered, so walking predecessors from
 * any of them must revisit a step.  The cycle is printed forwards, starting
 * at its lowest index.
 */
static int report_cycle(struct parser *p, const uint32_t *indeg, const char *where)
{
        struct plan *plan = p->plan;
        size_t n = plan->n_steps;
        _cleanup_free_ size_t *seen = xcalloc(n, sizeof *seen); /* walk position + 1 */
        _cleanup_free_ uint32_t *walk = xcalloc(n + 1, sizeof *walk);
        uint32_t cur = 0;
        while (indeg[cur] == 0)
                cur++;
        size_t len = 0;
        while (!seen[cur]) {
                seen[cur] = len + 1;
                walk[len++] = cur;
                const struct plan_step *s = &plan->steps[cur];
                for (size_t k = 0; k < s->n_preds; k++) {
                        if (indeg[s->preds[k]] > 0) {
                                cur = s->preds[k];
                                break;
                        }
                }
        }
        /* walk[seen[cur]-1 .. len-1] is the cycle backwards: reverse it */
        uint32_t *cyc = walk + seen[cur] - 1;
        size_t clen = len - (seen[cur] - 1), lo = 0;
        for (size_t i = 0; i < clen / 2; i++) {
                uint32_t t = cyc[i];
                cyc[i] = cyc[clen - 1 - i];
                cyc[clen - 1 - i] = t;
        }
        for (size_t i = 1; i < clen; i++)
                if (cyc[i] < cyc[lo])
                        lo = i;
        _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;
        for (size_t i = 0; i <= clen; i++) {
                if (clen > CYCLE_SHOW_MAX && i == CYCLE_SHOW_MAX / 2) {
                        strbuf_addf(&sb, " -> ... (%zu more)", clen - CYCLE_SHOW_MAX);
                        i = clen - CYCLE_SHOW_MAX / 2;
                }
                strbuf_addf(&sb, "%s%s", i ? " -> " : "", plan->steps[cyc[(lo + i) % clen]].key);
        }
        return invalid(p, where, "cycle: %s", sb.buf);
}

static int compute_order(struct parser *p)
{
        struct plan *plan = p->plan;
        size_t n = plan->n_steps, done = 0;
        _cleanup_free_ uint32_t *indeg = xcalloc(n + 1, sizeof *indeg);
        struct heap h = { xcalloc(n + 1, sizeof(uint32_t)), 0 };
        plan->order = xcalloc(n + 1, sizeof *plan->order);
        for (uint32_t i = 0; i < n; i++) {
                indeg[i] = (uint32_t) plan->steps[i].n_preds;
                if (!indeg[i])
                        heap_push(&h, i);
        }
        while (h.n) {
                uint32_t i = heap_pop(&h);
                plan->order[done++] = i;
                for (size_t k = 0; k < plan->steps[i].n_succs; k++)
                        if (--indeg[plan->steps[i].succs[k]] == 0)
                                heap_push(&h, plan->steps[i].succs[k]);
        }
        free(h.v);
        if (done < n)
                return report_cycle(p, indeg, plan->legacy ? "steps" : "graph");
        return 0;
}

/* hm-compat §4.4: linear runs of builds_in edges. */
static void compute_chains(struct plan *plan)
{
        size_t n = plan->n_steps;
        _cleanup_free_ uint32_t *bi_count = xcalloc(n + 1, sizeof *bi_count);
        _cleanup_free_ uint32_t *bi_child = xcalloc(n + 1, sizeof *bi_child);
        _cleanup_free_ uint32_t *stamp = xcalloc(n + 1, sizeof *stamp);
        _cleanup_free_ bool *assigned = xcalloc(n + 1, sizeof *assigned);
        /* count distinct builds_in children: visit targets in order, stamp sources */
        _cleanup_free_ size_t *start = xcalloc(n + 1, sizeof *start);
        _cleanup_free_ uint32_t *src = xcalloc(plan->n_edges + 1, sizeof *src);
        _cleanup_free_ size_t *fill = xcalloc(n + 1, sizeof *fill);
        for (size_t e = 0; e < plan->n_edges; e++)
                if (plan->edges[e].kind == EDGE_BUILDS_IN)
                        start[plan->edges[e].dst + 1]++;
        for (size_t i = 0; i < n; i++)
                start[i + 1] += start[i];
        for (size_t e = 0; e < plan->n_edges; e++) {
                const struct plan_edge *ed = &plan->edges[e];
                if (ed->kind == EDGE_BUILDS_IN)
                        src[start[ed->dst] + fill[ed->dst]++] = ed->src;
        }
        for (uint32_t d = 0; d < n; d++) {
                for (size_t k = start[d]; k < start[d + 1]; k++) {
                        if (stamp[src[k]] == d + 1)
                                continue;
                        stamp[src[k]] = d + 1;
                        bi_count[src[k]]++;
                        bi_child[src[k]] = d;
                }
        }
        uint32_t chain = 0;
        for (uint32_t i = 0; i < n; i++) {
                if (assigned[i])
                        continue;
                uint32_t cur = i, pos = 0;
                for (;;) {
                        assigned[cur] = true;
                        plan->steps[cur].chain_id = chain;
                        plan->steps[cur].chain_pos = pos++;
                        if (bi_count[cur] != 1)
                                break;
                        uint32_t c = bi_child[cur];
                        if (assigned[c] || plan->steps[c].n_preds != 1)
                                break;
                        cur = c;
                }
                chain++;
        }
        plan->n_chains = chain;
}

/* ---- entry points -------------------------------------------------------------------------- */

static int parse_top(struct parser *p, yajl_val root)
{
        if (!YAJL_IS_OBJECT(root))
                return type_error(p, "$", "an object at the top level", root);
        struct plan *plan = p->plan;
        int r = get_string(p, root, "$", "version", false, false, &plan->version);
        if (r < 0)
                return r;
        r = get_string(p, root, "$", "default_image", false, true, &plan->default_image);
        if (r < 0)
                return r;
        r = get_timeout(p, root, "$", &plan->timeout_seconds);
        if (r < 0)
                return r;
        yajl_val graph, steps;
        r = field(p, root, "$", "graph", &graph);
        if (r < 0)
                return r;
        if (r > 0)
                return parse_graph(p, graph);
        r = field(p, root, "$", "steps", &steps);
        if (r < 0)
                return r;
        if (r > 0)
                return parse_legacy(p, root, steps);
        return invalid(p, "$", "missing field 'graph'");
}

int plan_from_tree(yajl_val root, const char *source, struct plan **ret, hm_error_t *err)
{
        _cleanup_plan_ struct plan *plan = xzalloc(sizeof *plan);
        struct parser p = { .source = source ? source : "-", .err = err, .plan = plan };
        plan->source = xstrdup(p.source);
        int r = parse_top(&p, root);
        free(p.keys);
        if (r < 0)
                return r;
        compute_adjacency(plan);
        r = compute_order(&p);
        if (r < 0)
                return r;
        compute_chains(plan);
        *ret = TAKE_PTR(plan);
        return 0;
}

/*
 * Our own tree builder.  yajl_tree_parse grows every array and object one
 * element at a time and mallocs every node (about 1 s for a 100k-step
 * document); this one builds the same public struct yajl_val_s (so
 * yajl_tree_get works on it) inside an arena that is freed at once, with
 * arrays grown geometrically.  It also bounds the depth and rejects "\u0000"
 * in strings, which a C string would silently cut.
 */
struct arena_chunk {
        struct arena_chunk *next;
        size_t used, size;
        max_align_t data[];
};

struct plan_json {
        yajl_val root;
        struct arena_chunk *chunks;
};

/*
 * Chunks double from 64 KiB to 32 MiB; chunks of 2 MiB and more ask for
 * transparent huge pages, because for big documents the time goes into page
 * faults rather than parsing (a 100k-step tree is tens of MiB).
 */
static struct arena_chunk *chunk_new(size_t min, size_t prev)
{
        const size_t huge = 2u << 20;
        size_t size = prev ? prev * 2 : (64u << 10);
        if (size > (32u << 20))
                size = 32u << 20;
        if (size < min + sizeof(struct arena_chunk))
                size = min + sizeof(struct arena_chunk);
        struct arena_chunk *c;
        if (size >= huge) {
                size = (size + huge - 1) & ~(huge - 1);
                c = aligned_alloc(huge, size);
                if (!c)
                        abort();
                (void) madvise(c, size, MADV_HUGEPAGE); /* a hint only */
        } else {
                c = xmalloc(size);
        }
        c->next = NULL;
        c->used = 0;
        c->size = size - sizeof *c;
        return c;
}

static void *arena_alloc(struct plan_json *j, size_t n, size_t align)
{
        struct arena_chunk *c = j->chunks;
        size_t at = c ? (c->used + align - 1) & ~(align - 1) : 0;
        if (!c || at > c->size || c->size - at < n) {
                struct arena_chunk *fresh = chunk_new(n, c ? c->size : 0);
                fresh->next = c;
                j->chunks = c = fresh;
                at = 0;
        }
        c->used = at + n;
        return (char *) c->data + at;
}

static char *arena_strndup(struct plan_json *j, const char *s, size_t n)
{
        char *p = arena_alloc(j, n + 1, 1);
        memcpy(p, s, n);
        p[n] = 0;
        return p;
}

/* Grow an arena array from `len` to 2*len (old space is left behind: at most 2x). */
static void *arena_grow(struct plan_json *j, void *old, size_t len, size_t *cap, size_t elem)
{
        *cap = *cap ? *cap * 2 : 4;
        void *p = arena_alloc(j, *cap * elem, sizeof(void *));
        if (len)
                memcpy(p, old, len * elem);
        return p;
}

void plan_json_free(struct plan_json *j)
{
        if (!j)
                return;
        while (j->chunks) {
                struct arena_chunk *next = j->chunks->next;
                free(j->chunks);
                j->chunks = next;
        }
        free(j);
}

struct frame {
        yajl_val v;
        size_t cap;
};

struct builder {
        struct plan_json *json;
        struct frame stack[PLAN_MAX_DEPTH];
        size_t depth;
        char *key; /* pending object key (arena) */
        const char *why; /* our reason for cancelling the parse */
};

static int add_value(struct builder *b, yajl_val v)
{
        struct plan_json *j = b->json;
        if (b->depth == 0) {
                j->root = v;
                return 1;
        }
        struct frame *f = &b->stack[b->depth - 1];
        if (f->v->type == yajl_t_object) {
                size_t len = f->v->u.object.len, cap = f->cap;
                if (len == f->cap) {
                        f->v->u.object.keys = arena_grow(j, f->v->u.object.keys, len, &cap, sizeof(char *));
                        f->v->u.object.values = arena_grow(j, f->v->u.object.values, len, &f->cap, sizeof(yajl_val));
                }
                f->v->u.object.keys[len] = TAKE_PTR(b->key);
                f->v->u.object.values[len] = v;
                f->v->u.object.len++;
                return 1;
        }
        size_t len = f->v->u.array.len;
        if (len == f->cap)
                f->v->u.array.values = arena_grow(j, f->v->u.array.values, len, &f->cap, sizeof(yajl_val));
        f->v->u.array.values[len] = v;
        f->v->u.array.len++;
        return 1;
}

static yajl_val new_value(struct builder *b, yajl_type type)
{
        yajl_val v = arena_alloc(b->json, sizeof *v, sizeof(void *));
        memset(v, 0, sizeof *v);
        v->type = type;
        return v;
}

static int on_null(void *ctx)
{
        return add_value(ctx, new_value(ctx, yajl_t_null));
}

static int on_boolean(void *ctx, int val)
{
        return add_value(ctx, new_value(ctx, val ? yajl_t_true : yajl_t_false));
}

static int on_number(void *ctx, const char *s, size_t len)
{
        struct builder *b = ctx;
        yajl_val v = new_value(b, yajl_t_number);
        char *r = arena_strndup(b->json, s, len), *end;
        v->u.number.r = r;
        errno = 0;
        v->u.number.i = strtoll(r, &end, 10);
        if (errno == 0 && *end == 0)
                v->u.number.flags |= YAJL_NUMBER_INT_VALID;
        errno = 0;
        v->u.number.d = strtod(r, &end);
        if (errno == 0 && *end == 0)
                v->u.number.flags |= YAJL_NUMBER_DOUBLE_VALID;
        return add_value(b, v);
}

static int on_string(void *ctx, const unsigned char *s, size_t len)
{
        struct builder *b = ctx;
        if (memchr(s, 0, len)) {
                b->why = "string contains a NUL character (\\u0000)";
                return 0;
        }
        yajl_val v = new_value(b, yajl_t_string);
        v->u.string = arena_strndup(b->json, (const char *) s, len);
        return add_value(b, v);
}

static int on_map_key(void *ctx, const unsigned char *s, size_t len)
{
        struct builder *b = ctx;
        if (memchr(s, 0, len)) {
                b->why = "object key contains a NUL character (\\u0000)";
                return 0;
        }
        b->key = arena_strndup(b->json, (const char *) s, len);
        return 1;
}

static int open_container(struct builder *b, yajl_type type)
{
        if (b->depth == PLAN_MAX_DEPTH) {
                b->why = "nesting too deep";
                return 0;
        }
        yajl_val v = new_value(b, type);
        add_value(b, v);
        b->stack[b->depth++] = (struct frame) { v, 0 };
        return 1;
}

static int on_start_map(void *ctx)
{
        return open_container(ctx, yajl_t_object);
}

static int on_start_array(void *ctx)
{
        return open_container(ctx, yajl_t_array);
}

static int on_end(void *ctx)
{
        struct builder *b = ctx;
        b->depth--;
        return 1;
}

static const yajl_callbacks tree_callbacks = {
        .yajl_null = on_null,
        .yajl_boolean = on_boolean,
        .yajl_number = on_number,
        .yajl_string = on_string,
        .yajl_start_map = on_start_map,
        .yajl_map_key = on_map_key,
        .yajl_end_map = on_end,
        .yajl_start_array = on_start_array,
        .yajl_end_array = on_end,
};

static void yajl_freep(yajl_handle *h)
{
        if (*h)
                yajl_free(*h);
}

static int syntax_error(struct parser *p, yajl_handle h, const struct builder *b, const char *json, size_t len,
                        size_t off)
{
        char msg[256] = "syntax error";
        if (b->why) {
                snprintf(msg, sizeof msg, "%s", b->why);
        } else {
                unsigned char *e = yajl_get_error(h, 0, NULL, 0);
                if (e) {
                        snprintf(msg, sizeof msg, "%s", (const char *) e);
                        yajl_free_error(h, e);
                }
        }
        /* yajl's message may span lines: keep the first, without its final period */
        msg[strcspn(msg, "\n")] = 0;
        size_t ml = strlen(msg);
        while (ml > 0 && (msg[ml - 1] == '.' || is_space(msg[ml - 1])))
                msg[--ml] = 0;
        size_t line = 1, col = 1;
        for (size_t k = 0; k < off && k < len; k++) {
                if (json[k] == '\n') {
                        line++;
                        col = 1;
                } else if (((unsigned char) json[k] & 0xC0) != 0x80) {
                        col++;
                }
        }
        char where[64];
        snprintf(where, sizeof where, "line %zu, column %zu", line, col);
        return invalid(p, where, "%s", msg);
}

int plan_json_parse(const char *json, size_t len, const char *source, struct plan_json **ret, hm_error_t *err)
{
        struct parser p = { .source = source ? source : "-", .err = err };
        size_t i = 0;
        while (i < len && is_space(json[i]))
                i++;
        if (i == len)
                return invalid(&p, "$", "empty document");
        _cleanup_plan_json_ struct plan_json *j = xzalloc(sizeof *j);
        struct builder b = { .json = j };
        __attribute__((cleanup(yajl_freep))) yajl_handle h = yajl_alloc(&tree_callbacks, NULL, &b);
        if (!h)
                abort();
        yajl_status st = yajl_parse(h, (const unsigned char *) json, len);
        /* yajl has consumed the offending token: point at its last byte */
        size_t off = yajl_get_bytes_consumed(h);
        off = off ? off - 1 : 0;
        if (st == yajl_status_ok) {
                st = yajl_complete_parse(h);
                off = len;
        }
        if (st != yajl_status_ok || !j->root)
                return syntax_error(&p, h, &b, json, len, off);
        *ret = TAKE_PTR(j);
        return 0;
}

yajl_val plan_json_root(const struct plan_json *j)
{
        return j->root;
}

int plan_parse(const char *json, size_t len, const char *source, struct plan **ret, hm_error_t *err)
{
        _cleanup_plan_json_ struct plan_json *j = NULL;
        int r = plan_json_parse(json, len, source, &j, err);
        if (r < 0)
                return r;
        return plan_from_tree(j->root, source, ret, err);
}

static void step_release(struct plan_step *s)
{
        free(s->key);
        free(s->cmd);
        free(s->label);
        if (s->display_name != s->label && s->display_name != s->cmd)
                free(s->display_name);
        free(s->image);
        free(s->runner);
        free(s->cache_policy);
        free(s->cache_key);
        free(s->cache_tag);
        env_free(s->env, s->n_env);
        free(s->preds);
        free(s->succs);
}

void plan_free(struct plan *plan)
{
        if (!plan)
                return;
        for (size_t i = 0; i < plan->n_steps && plan->steps; i++)
                step_release(&plan->steps[i]);
        free(plan->steps);
        free(plan->edges);
        free(plan->order);
        free(plan->source);
        free(plan->slug);
        free(plan->version);
        free(plan->default_image);
        free(plan);
}
