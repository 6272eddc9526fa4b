/* SPDX-License-Identifier: Apache-2.0 */
/*
 * config.json -> struct oci_spec, with one dispatch table per JSON object
 * (the systemd nspawn-oci shape).  Each callback validates and converts,
 * and every error names its JSON path.  Unknown fields are refused; known
 * fields the runtime does not implement are refused as "not supported"
 * unless they carry their empty/default value.
 */
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <sys/resource.h>
#include <yajl/yajl_tree.h>

#include "lib/handles.h"
#include "lib/strbuf.h"
#include "lib/util.h"
#include "oci/spec-internal.h"
#include "oci/spec.h"

struct pctx {
        struct strbuf path;
        hm_error_t *err;
        const char *file; /* error prefix; NULL: "config.json" */
};

struct oci_field;
typedef int (*parse_fn)(struct pctx *c, yajl_val v, void *base, const struct oci_field *f);

enum { F_MANDATORY = 1 };

struct oci_field {
        const char *name;
        parse_fn parse;
        size_t offset;
        unsigned flags;
        size_t count_offset;            /* arrays of objects: where the count goes */
        const struct oci_field *elem;   /* arrays of objects / nested objects */
        size_t elem_size;
        size_t present_offset;          /* optional scalars: bool _present (0: none) */
        void (*elem_init)(void *elem);  /* arrays of objects: defaults of one element */
};

#define FIELD_PTR(base, f) ((char *) (base) + (f)->offset)

static int fail(struct pctx *c, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(struct pctx *c, int code, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        _cleanup_free_ char *msg = NULL;
        if (vasprintf(&msg, fmt, ap) < 0)
                abort();
        va_end(ap);
        return hm_error_set(c->err, code, "%s: %s: %s", c->file ? c->file : "config.json", c->path.len ? c->path.buf : "(root)",
                            msg);
}

static size_t path_push_key(struct pctx *c, const char *key)
{
        size_t mark = c->path.len;
        if (mark)
                strbuf_addch(&c->path, '.');
        strbuf_addstr(&c->path, key);
        return mark;
}

static size_t path_push_index(struct pctx *c, size_t i)
{
        size_t mark = c->path.len;
        strbuf_addf(&c->path, "[%zu]", i);
        return mark;
}

static void path_pop(struct pctx *c, size_t mark)
{
        c->path.len = mark;
        c->path.buf[mark] = 0;
}

static void set_present(void *base, const struct oci_field *f)
{
        if (f->present_offset)
                *(bool *) ((char *) base + f->present_offset) = true;
}

/* ---- scalars ---- */

static int get_string(struct pctx *c, yajl_val v, const char **ret)
{
        if (!YAJL_IS_STRING(v))
                return fail(c, EINVAL, "not a string");
        *ret = YAJL_GET_STRING(v);
        return 0;
}

static int p_string(struct pctx *c, yajl_val v, void *base, const struct oci_field *f)
{
        const char *s = NULL;
        int r = get_string(c, v, &s);
        if (r < 0)
                return r;
        char **dst = (char **) FIELD_PTR(base, f);
        free(*dst);
        *dst = xstrdup(s);
        return 0;
}

static int p_abspath(struct pctx *c, yajl_val v, void *base, const struct oci_field *f)
{
        const char *s = NULL;
        int r = get_string(c, v, &s);
        if (r < 0)
                return r;
        if (s[0] != '/')
                return fail(c, EINVAL, "'%s' is not an absolute path", s);
        return p_string(c, v, base, f);
}

static int p_bool(struct pctx *c, yajl_val v, void *base, const struct oci_field *f)
{
        if (!YAJL_IS_TRUE(v) && !YAJL_IS_FALSE(v))
                return fail(c, EINVAL, "not a boolean");
        *(bool *) FIELD_PTR(base, f) = YAJL_IS_TRUE(v);
        return 0;
}

/* JSON integers only: yajl keeps the literal, so 2^64-1 and "1.0" are told apart here. */
static int get_u64(struct pctx *c, yajl_val v, uint64_t max, uint64_t *ret)
{
        const char *raw = YAJL_IS_NUMBER(v) ? YAJL_GET_NUMBER(v) : NULL;
        if (!raw || raw[0] == '-' || strpbrk(raw, ".eE"))
                return fail(c, EINVAL, "not an unsigned integer");
        errno = 0;
        char *end;
        unsigned long long n = strtoull(raw, &end, 10);
        if (errno || *end || n > max)
                return fail(c, ERANGE, "%s out of range (max %" PRIu64 ")", raw, max);
        *ret = n;
        return 0;
}

static int get_i64(struct pctx *c, yajl_val v, int64_t min, int64_t max, int64_t *ret)
{
        const char *raw = YAJL_IS_NUMBER(v) ? YAJL_GET_NUMBER(v) : NULL;
        if (!raw || strpbrk(raw, ".eE"))
                return fail(c, EINVAL, "not an integer");
        errno = 0;
        char *end;
        long long n = strtoll(raw, &end, 10);
        if (errno || *end || n < min || n > max)
                return fail(c, ERANGE, "%s out of range (%" PRId64 "..%" PRId64 ")", raw, min, max);
        *ret = n;
        return 0;
}

static int p_u64(struct pctx *c, yajl_val v, void *base, const struct oci_field *f)
{
        int r = get_u64(c, v, UINT64_MAX, (uint64_t *) FIELD_PTR(base, f));
        if (r >= 0)
                set_present(base, f);
        return r;
}

static int p_u32(struct pctx *c, yajl_val v, void *base, const struct oci_field *f)
{
        uint64_t n = 0;
        int r = get_u64(c, v, UINT32_MAX, &n);
        if (r < 0)
                return r;
        *(uint32_t *) FIELD_PTR(base, f) = (uint32_t) n;
        set_present(base, f);
        return 0;
}

static int p_i64(struct pctx *c, yajl_val v, void *base, const struct oci_field *f)
{
        int r = get_i64(c, v, INT64_MIN, INT64_MAX, (int64_t *) FIELD_PTR(base, f));
        if (r >= 0)
                set_present(base, f);
        return r;
}

static int p_umask(struct pctx *c, yajl_val v, void *base, const struct oci_field *f)
{
        uint64_t n = 0;
        int r = get_u64(c, v, 0777, &n);
        if (r < 0)
                return r;
        *(mode_t *) FIELD_PTR(base, f) = (mode_t) n;
        set_present(base, f);
        return 0;
}

static int p_oom_score_adj(struct pctx *c, yajl_val v, void *base, const struct oci_field *f)
{
        int64_t n = 0;
        int r = get_i64(c, v, -1000, 1000, &n);
        if (r < 0)
                return r;
        *(int *) FIELD_PTR(base, f) = (int) n;
        set_present(base, f);
        return 0;
}

static int p_timeout(struct pctx *c, yajl_val v, void *base, const struct oci_field *f)
{
        int64_t n = 0;
        int r = get_i64(c, v, 1, INT_MAX, &n);
        if (r < 0)
                return r;
        *(int *) FIELD_PTR(base, f) = (int) n;
        set_present(base, f);
        return 0;
}

static int p_strv_checked(struct pctx *c, yajl_val v, char ***dst, bool abspath)
{
        if (!YAJL_IS_ARRAY(v))
                return fail(c, EINVAL, "not an array");
        _cleanup_strv_ char **l = xcalloc(v->u.array.len + 1, sizeof(char *));
        for (size_t i = 0; i < v->u.array.len; i++) {
                size_t mark = path_push_index(c, i);
                const char *s = NULL;
                int r = get_string(c, v->u.array.values[i], &s);
                if (r >= 0 && abspath && s[0] != '/')
                        r = fail(c, EINVAL, "'%s' is not an absolute path", s);
                if (r < 0)
                        return r;
                path_pop(c, mark);
                l[i] = xstrdup(s);
        }
        strv_free(*dst);
        *dst = TAKE_PTR(l);
        return 0;
}

static int p_strv(struct pctx *c, yajl_val v, void *base, const struct oci_field *f)
{
        return p_strv_checked(c, v, (char ***) FIELD_PTR(base, f), false);
}

static int p_abspath_strv(struct pctx *c, yajl_val v, void *base, const struct oci_field *f)
{
        return p_strv_checked(c, v, (char ***) FIELD_PTR(base, f), true);
}

static int p_env(struct pctx *c, yajl_val v, void *base, const struct oci_field *f)
{
        char ***dst = (char ***) FIELD_PTR(base, f);
        int r = p_strv_checked(c, v, dst, false);
        for (size_t i = 0; r >= 0 && (*dst)[i]; i++)
                if (!strchr((*dst)[i], '=') || (*dst)[i][0] == '=') {
                        size_t mark = path_push_index(c, i);
                        r = fail(c, EINVAL, "'%s' is not KEY=VALUE", (*dst)[i]);
                        path_pop(c, mark);
                }
        return r;
}

/* Known but not implemented: refused unless it holds its empty value. */
static bool is_empty_value(yajl_val v)
{
        return !v || YAJL_IS_NULL(v) || YAJL_IS_FALSE(v) || (YAJL_IS_STRING(v) && !*YAJL_GET_STRING(v)) ||
               (YAJL_IS_ARRAY(v) && !v->u.array.len) || (YAJL_IS_OBJECT(v) && !v->u.object.len);
}

static int p_unsupported(struct pctx *c, yajl_val v, void *base, const struct oci_field *f)
{
        return fail(c, EOPNOTSUPP, "not supported");
}

static int p_unsupported_unless_empty(struct pctx *c, yajl_val v, void *base, const struct oci_field *f)
{
        return is_empty_value(v) ? 0 : p_unsupported(c, v, base, f);
}

/* Go engines write unset numbers as 0 (Docker: "blockIO":{"weight":0}): zeros count as empty. */
static bool is_zero_value(yajl_val v)
{
        if (is_empty_value(v) || (YAJL_IS_NUMBER(v) && !strcmp(YAJL_GET_NUMBER(v), "0")))
                return true;
        if (YAJL_IS_OBJECT(v)) {
                for (size_t i = 0; i < v->u.object.len; i++)
                        if (!is_zero_value(v->u.object.values[i]))
                                return false;
                return true;
        }
        if (YAJL_IS_ARRAY(v)) {
                for (size_t i = 0; i < v->u.array.len; i++)
                        if (!is_zero_value(v->u.array.values[i]))
                                return false;
                return true;
        }
        return false;
}

static int p_unsupported_unless_zero(struct pctx *c, yajl_val v, void *base, const struct oci_field *f)
{
        return is_zero_value(v) ? 0 : p_unsupported(c, v, base, f);
}

/* cpu.shares 0 is "unset" (the kernel would clamp a written 0 to the minimum, 2) */
static int p_shares(struct pctx *c, yajl_val v, void *base, const struct oci_field *f)
{
        uint64_t *dst = (uint64_t *) FIELD_PTR(base, f);
        int r = get_u64(c, v, UINT64_MAX, dst);
        if (r >= 0 && *dst)
                set_present(base, f);
        return r;
}

/* ---- objects and arrays of objects ---- */

static int dispatch(struct pctx *c, yajl_val v, const struct oci_field *table, void *base);

static int p_object(struct pctx *c, yajl_val v, void *base, const struct oci_field *f)
{
        return dispatch(c, v, f->elem, FIELD_PTR(base, f));
}

static int p_objects(struct pctx *c, yajl_val v, void *base, const struct oci_field *f)
{
        if (!YAJL_IS_ARRAY(v))
                return fail(c, EINVAL, "not an array");
        char **items = (char **) FIELD_PTR(base, f);
        size_t *n = (size_t *) ((char *) base + f->count_offset);
        if (*items)
                return fail(c, EINVAL, "given twice");
        *items = xcalloc(v->u.array.len ? v->u.array.len : 1, f->elem_size);
        for (size_t i = 0; i < v->u.array.len; i++) {
                size_t mark = path_push_index(c, i);
                /* count first, so a failure still frees what was parsed */
                *n = i + 1;
                if (f->elem_init)
                        f->elem_init(*items + i * f->elem_size);
                int r = dispatch(c, v->u.array.values[i], f->elem, *items + i * f->elem_size);
                if (r < 0)
                        return r;
                path_pop(c, mark);
        }
        return 0;
}

static int check_object(struct pctx *c, yajl_val v)
{
        if (!YAJL_IS_OBJECT(v))
                return fail(c, EINVAL, "not an object");
        for (size_t i = 0; i < v->u.object.len; i++)
                for (size_t j = 0; j < i; j++)
                        if (!strcmp(v->u.object.keys[i], v->u.object.keys[j])) {
                                size_t mark = path_push_key(c, v->u.object.keys[i]);
                                int r = fail(c, EINVAL, "duplicate key");
                                path_pop(c, mark);
                                return r;
                        }
        return 0;
}

static int dispatch(struct pctx *c, yajl_val v, const struct oci_field *table, void *base)
{
        int r = check_object(c, v);
        if (r < 0)
                return r;
        for (size_t i = 0; i < v->u.object.len; i++) {
                const char *key = v->u.object.keys[i];
                const struct oci_field *f = table;
                while (f->name && strcmp(f->name, key))
                        f++;
                size_t mark = path_push_key(c, key);
                r = f->name ? f->parse(c, v->u.object.values[i], base, f) : fail(c, EINVAL, "unknown field");
                if (r < 0)
                        return r;
                path_pop(c, mark);
        }
        for (const struct oci_field *f = table; f->name; f++) {
                if (!(f->flags & F_MANDATORY))
                        continue;
                const char *keys[] = { f->name, NULL };
                if (!yajl_tree_get(v, keys, yajl_t_any)) {
                        size_t mark = path_push_key(c, f->name);
                        r = fail(c, EINVAL, "missing");
                        path_pop(c, mark);
                        return r;
                }
        }
        return 0;
}

/* ---- converting fields ---- */

static int p_rlimit_type(struct pctx *c, yajl_val v, void *base, const struct oci_field *f)
{
        const char *s = NULL;
        int r = get_string(c, v, &s);
        if (r < 0)
                return r;
        int t = oci_rlimit_from_name(s);
        if (t < 0)
                return fail(c, EINVAL, "unknown rlimit '%s'", s);
        *(int *) FIELD_PTR(base, f) = t;
        return 0;
}

static int p_caps(struct pctx *c, yajl_val v, void *base, const struct oci_field *f)
{
        if (!YAJL_IS_ARRAY(v))
                return fail(c, EINVAL, "not an array");
        uint64_t mask = 0;
        for (size_t i = 0; i < v->u.array.len; i++) {
                size_t mark = path_push_index(c, i);
                const char *s = NULL;
                int r = get_string(c, v->u.array.values[i], &s);
                if (r < 0)
                        return r;
                int cap = oci_cap_from_name(s);
                if (cap < 0)
                        return fail(c, EINVAL, "unknown capability '%s'", s);
                mask |= UINT64_C(1) << cap;
                path_pop(c, mark);
        }
        *(uint64_t *) FIELD_PTR(base, f) = mask;
        return 0;
}

static int p_gids(struct pctx *c, yajl_val v, void *base, const struct oci_field *f)
{
        struct oci_user *u = base;
        if (!YAJL_IS_ARRAY(v))
                return fail(c, EINVAL, "not an array");
        free(u->additional_gids);
        u->additional_gids = xcalloc(v->u.array.len + 1, sizeof(gid_t));
        u->n_additional_gids = 0;
        for (size_t i = 0; i < v->u.array.len; i++) {
                size_t mark = path_push_index(c, i);
                uint64_t n = 0;
                int r = get_u64(c, v->u.array.values[i], UINT32_MAX - 1, &n);
                if (r < 0)
                        return r;
                path_pop(c, mark);
                u->additional_gids[u->n_additional_gids++] = (gid_t) n;
        }
        return 0;
}

static int p_uid(struct pctx *c, yajl_val v, void *base, const struct oci_field *f)
{
        uint64_t n = 0;
        int r = get_u64(c, v, UINT32_MAX - 1, &n); /* (uid_t)-1 means "unchanged" to setresuid */
        if (r < 0)
                return r;
        *(uint32_t *) FIELD_PTR(base, f) = (uint32_t) n;
        set_present(base, f);
        return 0;
}

static int p_ns_type(struct pctx *c, yajl_val v, void *base, const struct oci_field *f)
{
        const char *s = NULL;
        int r = get_string(c, v, &s);
        if (r < 0)
                return r;
        int t = oci_ns_type_from_string(s);
        if (t < 0)
                return fail(c, EINVAL, "unknown namespace type '%s'", s);
        if (t == OCI_NS_TIME)
                return fail(c, EOPNOTSUPP, "namespace 'time' not supported");
        *(enum oci_ns_type *) FIELD_PTR(base, f) = (enum oci_ns_type) t;
        return 0;
}

static int p_seccomp_action(struct pctx *c, yajl_val v, void *base, const struct oci_field *f)
{
        const char *s = NULL;
        int r = get_string(c, v, &s);
        if (r < 0)
                return r;
        int a = oci_seccomp_action_from_string(s);
        if (a < 0)
                return fail(c, !strcmp(s, "SCMP_ACT_NOTIFY") ? EOPNOTSUPP : EINVAL,
                            !strcmp(s, "SCMP_ACT_NOTIFY") ? "action '%s' not supported" : "unknown action '%s'", s);
        *(enum oci_seccomp_action *) FIELD_PTR(base, f) = (enum oci_seccomp_action) a;
        return 0;
}

static int p_seccomp_op(struct pctx *c, yajl_val v, void *base, const struct oci_field *f)
{
        const char *s = NULL;
        int r = get_string(c, v, &s);
        if (r < 0)
                return r;
        int op = oci_seccomp_op_from_string(s);
        if (op < 0)
                return fail(c, EINVAL, "unknown operator '%s'", s);
        *(enum oci_seccomp_op *) FIELD_PTR(base, f) = (enum oci_seccomp_op) op;
        return 0;
}

static int p_arg_index(struct pctx *c, yajl_val v, void *base, const struct oci_field *f)
{
        uint64_t n = 0;
        int r = get_u64(c, v, 5, &n);
        if (r >= 0)
                *(unsigned *) FIELD_PTR(base, f) = (unsigned) n;
        return r;
}

static int p_seccomp(struct pctx *c, yajl_val v, void *base, const struct oci_field *f);
static int p_sysctl(struct pctx *c, yajl_val v, void *base, const struct oci_field *f);
static int p_annotations(struct pctx *c, yajl_val v, void *base, const struct oci_field *f);
static int p_mount_options(struct pctx *c, yajl_val v, void *base, const struct oci_field *f);
static int p_version(struct pctx *c, yajl_val v, void *base, const struct oci_field *f);
static int p_propagation(struct pctx *c, yajl_val v, void *base, const struct oci_field *f)
{
        const char *s = NULL;
        int r = get_string(c, v, &s);
        if (r < 0)
                return r;
        unsigned long flags = *s ? oci_propagation_from_string(s) : 0;
        if (*s && !flags)
                return fail(c, EINVAL, "'%s' is not one of [r]private, [r]slave, [r]shared, [r]unbindable", s);
        *(unsigned long *) FIELD_PTR(base, f) = flags;
        return 0;
}

/* cpuset lists: "0-3,5" (digits, '-' and ','), written as is to cpuset.cpus/mems */
static int p_cpuset_list(struct pctx *c, yajl_val v, void *base, const struct oci_field *f)
{
        const char *s = NULL;
        int r = get_string(c, v, &s);
        if (r < 0)
                return r;
        if (!*s)
                return 0;
        bool digit = false;
        for (const char *p = s; *p; p++) {
                bool d = *p >= '0' && *p <= '9';
                if (!d && (!digit || (*p != '-' && *p != ',') || !p[1]))
                        return fail(c, EINVAL, "'%s' is not a list like \"0-3,5\"", s);
                digit = d;
        }
        return p_string(c, v, base, f);
}

static int p_node_type(struct pctx *c, yajl_val v, void *base, const struct oci_field *f)
{
        const char *s = NULL;
        int r = get_string(c, v, &s);
        if (r < 0)
                return r;
        if (strcmp(s, "c") && strcmp(s, "u") && strcmp(s, "b") && strcmp(s, "p"))
                return fail(c, EINVAL, "'%s' is not one of c, u, b, p", s);
        *FIELD_PTR(base, f) = s[0] == 'u' ? 'c' : s[0];
        return 0;
}

static int p_node_num(struct pctx *c, yajl_val v, void *base, const struct oci_field *f)
{
        return get_i64(c, v, 0, UINT32_MAX, (int64_t *) FIELD_PTR(base, f));
}

static int p_file_mode(struct pctx *c, yajl_val v, void *base, const struct oci_field *f)
{
        uint64_t n = 0;
        int r = get_u64(c, v, 07777, &n);
        if (r < 0)
                return r;
        *(mode_t *) FIELD_PTR(base, f) = (mode_t) n;
        set_present(base, f);
        return 0;
}

static int p_device_type(struct pctx *c, yajl_val v, void *base, const struct oci_field *f);
static int p_device_access(struct pctx *c, yajl_val v, void *base, const struct oci_field *f);
static int p_device_num(struct pctx *c, yajl_val v, void *base, const struct oci_field *f);

#define OFF(type, m) offsetof(type, m)
#define PRESENT(type, m) .present_offset = offsetof(type, m)
#define OBJECTS(type, m, n, etype, table) \
        p_objects, offsetof(type, m), 0, offsetof(type, n), table, sizeof(etype)

/* ---- tables ---- */

static const struct oci_field rlimit_fields[] = {
        { "type", p_rlimit_type, OFF(struct oci_rlimit, type), F_MANDATORY },
        { "soft", p_u64, OFF(struct oci_rlimit, soft), F_MANDATORY },
        { "hard", p_u64, OFF(struct oci_rlimit, hard), F_MANDATORY },
        {}
};

static const struct oci_field user_fields[] = {
        { "uid", p_uid, OFF(struct oci_user, uid), F_MANDATORY },
        { "gid", p_uid, OFF(struct oci_user, gid), F_MANDATORY },
        { "umask", p_umask, OFF(struct oci_user, umask), PRESENT(struct oci_user, umask_present) },
        { "additionalGids", p_gids, 0 },
        { "username", p_unsupported_unless_empty, 0 },
        {}
};

static const struct oci_field caps_fields[] = {
        { "bounding", p_caps, OFF(struct oci_capabilities, bounding) },
        { "effective", p_caps, OFF(struct oci_capabilities, effective) },
        { "inheritable", p_caps, OFF(struct oci_capabilities, inheritable) },
        { "permitted", p_caps, OFF(struct oci_capabilities, permitted) },
        { "ambient", p_caps, OFF(struct oci_capabilities, ambient) },
        {}
};

static const struct oci_field console_fields[] = {
        { "height", p_u32, OFF(struct oci_process, console_height) },
        { "width", p_u32, OFF(struct oci_process, console_width) },
        {}
};

static const struct oci_field process_fields[] = {
        { "terminal", p_bool, OFF(struct oci_process, terminal) },
        { "consoleSize", p_object, 0, 0, 0, console_fields },
        { "args", p_strv, OFF(struct oci_process, args), F_MANDATORY },
        { "env", p_env, OFF(struct oci_process, env) },
        { "cwd", p_abspath, OFF(struct oci_process, cwd), F_MANDATORY },
        { "user", p_object, OFF(struct oci_process, user), 0, 0, user_fields },
        { "rlimits", OBJECTS(struct oci_process, rlimits, n_rlimits, struct oci_rlimit, rlimit_fields) },
        { "capabilities", p_object, OFF(struct oci_process, capabilities), 0, 0, caps_fields },
        { "noNewPrivileges", p_bool, OFF(struct oci_process, no_new_privileges) },
        { "oomScoreAdj", p_oom_score_adj, OFF(struct oci_process, oom_score_adj), PRESENT(struct oci_process, oom_score_adj_present) },
        { "apparmorProfile", p_unsupported_unless_empty, 0 },
        { "selinuxLabel", p_unsupported_unless_empty, 0 },
        { "commandLine", p_unsupported, 0 },
        { "ioPriority", p_unsupported, 0 },
        { "scheduler", p_unsupported, 0 },
        { "execCPUAffinity", p_unsupported, 0 },
        {}
};

static const struct oci_field root_fields[] = {
        { "path", p_string, OFF(struct oci_root, path), F_MANDATORY },
        { "readonly", p_bool, OFF(struct oci_root, readonly) },
        {}
};

static const struct oci_field mount_fields[] = {
        { "destination", p_abspath, OFF(struct oci_mount, destination), F_MANDATORY },
        { "type", p_string, OFF(struct oci_mount, type) },
        { "source", p_string, OFF(struct oci_mount, source) },
        { "options", p_mount_options, OFF(struct oci_mount, options) },
        { "uidMappings", p_unsupported_unless_empty, 0 },
        { "gidMappings", p_unsupported_unless_empty, 0 },
        {}
};

static const struct oci_field namespace_fields[] = {
        { "type", p_ns_type, OFF(struct oci_namespace, type), F_MANDATORY },
        { "path", p_abspath, OFF(struct oci_namespace, path) },
        {}
};

static const struct oci_field idmap_fields[] = {
        { "containerID", p_u32, OFF(struct oci_id_mapping, container_id), F_MANDATORY },
        { "hostID", p_u32, OFF(struct oci_id_mapping, host_id), F_MANDATORY },
        { "size", p_u32, OFF(struct oci_id_mapping, size), F_MANDATORY },
        {}
};

static const struct oci_field seccomp_arg_fields[] = {
        { "index", p_arg_index, OFF(struct oci_seccomp_arg, index), F_MANDATORY },
        { "value", p_u64, OFF(struct oci_seccomp_arg, value), F_MANDATORY },
        { "valueTwo", p_u64, OFF(struct oci_seccomp_arg, value_two) },
        { "op", p_seccomp_op, OFF(struct oci_seccomp_arg, op), F_MANDATORY },
        {}
};

static const struct oci_field seccomp_rule_fields[] = {
        { "names", p_strv, OFF(struct oci_seccomp_rule, names), F_MANDATORY },
        { "action", p_seccomp_action, OFF(struct oci_seccomp_rule, action), F_MANDATORY },
        { "errnoRet", p_u32, OFF(struct oci_seccomp_rule, errno_ret), PRESENT(struct oci_seccomp_rule, errno_ret_present) },
        { "args", OBJECTS(struct oci_seccomp_rule, args, n_args, struct oci_seccomp_arg, seccomp_arg_fields) },
        { "comment", p_unsupported_unless_empty, 0 },
        {}
};

static const struct oci_field seccomp_fields[] = {
        { "defaultAction", p_seccomp_action, OFF(struct oci_seccomp, default_action), F_MANDATORY },
        { "defaultErrnoRet", p_u32, OFF(struct oci_seccomp, default_errno_ret), PRESENT(struct oci_seccomp, default_errno_ret_present) },
        { "architectures", p_strv, OFF(struct oci_seccomp, architectures) },
        { "syscalls", OBJECTS(struct oci_seccomp, syscalls, n_syscalls, struct oci_seccomp_rule, seccomp_rule_fields) },
        { "flags", p_unsupported_unless_empty, 0 },
        { "listenerPath", p_unsupported_unless_empty, 0 },
        { "listenerMetadata", p_unsupported_unless_empty, 0 },
        {}
};

static const struct oci_field memory_fields[] = {
        { "limit", p_i64, OFF(struct oci_resources, memory_limit), PRESENT(struct oci_resources, memory_limit_present) },
        { "reservation", p_unsupported, 0 },
        { "swap", p_unsupported, 0 },
        { "kernel", p_unsupported, 0 },
        { "kernelTCP", p_unsupported, 0 },
        { "swappiness", p_unsupported, 0 },
        { "disableOOMKiller", p_unsupported_unless_empty, 0 },
        { "useHierarchy", p_unsupported_unless_empty, 0 },
        { "checkBeforeUpdate", p_unsupported_unless_empty, 0 },
        {}
};

static const struct oci_field pids_fields[] = {
        { "limit", p_i64, OFF(struct oci_resources, pids_limit), PRESENT(struct oci_resources, pids_limit_present) },
        {}
};

static const struct oci_field cpu_fields[] = {
        { "quota", p_i64, OFF(struct oci_resources, cpu_quota), PRESENT(struct oci_resources, cpu_quota_present) },
        { "period", p_u64, OFF(struct oci_resources, cpu_period), PRESENT(struct oci_resources, cpu_period_present) },
        { "shares", p_shares, OFF(struct oci_resources, cpu_shares), PRESENT(struct oci_resources, cpu_shares_present) },
        { "burst", p_unsupported, 0 },
        { "realtimeRuntime", p_unsupported, 0 },
        { "realtimePeriod", p_unsupported, 0 },
        { "cpus", p_cpuset_list, OFF(struct oci_resources, cpu_cpus) },
        { "mems", p_cpuset_list, OFF(struct oci_resources, cpu_mems) },
        { "idle", p_unsupported_unless_empty, 0 },
        {}
};

static const struct oci_field device_fields[] = {
        { "allow", p_bool, OFF(struct oci_device_rule, allow), F_MANDATORY },
        { "type", p_device_type, OFF(struct oci_device_rule, type) },
        { "major", p_device_num, OFF(struct oci_device_rule, major) },
        { "minor", p_device_num, OFF(struct oci_device_rule, minor) },
        { "access", p_device_access, OFF(struct oci_device_rule, access) },
        {}
};

static const struct oci_field linux_device_fields[] = {
        { "path", p_abspath, OFF(struct oci_device, path), F_MANDATORY },
        { "type", p_node_type, OFF(struct oci_device, type), F_MANDATORY },
        { "major", p_node_num, OFF(struct oci_device, major) },
        { "minor", p_node_num, OFF(struct oci_device, minor) },
        { "fileMode", p_file_mode, OFF(struct oci_device, file_mode), PRESENT(struct oci_device, file_mode_present) },
        { "uid", p_uid, OFF(struct oci_device, uid), PRESENT(struct oci_device, uid_present) },
        { "gid", p_uid, OFF(struct oci_device, gid), PRESENT(struct oci_device, gid_present) },
        {}
};

static void device_rule_init(void *elem)
{
        struct oci_device_rule *d = elem;
        *d = (struct oci_device_rule) { .type = 'a', .major = -1, .minor = -1, .access = "rwm" };
}

/* The struct oci_resources is embedded: nested objects write into the same base. */
static int p_resources_nested(struct pctx *c, yajl_val v, void *base, const struct oci_field *f)
{
        return dispatch(c, v, f->elem, base);
}

static const struct oci_field resources_fields[] = {
        { "memory", p_resources_nested, 0, 0, 0, memory_fields },
        { "pids", p_resources_nested, 0, 0, 0, pids_fields },
        { "cpu", p_resources_nested, 0, 0, 0, cpu_fields },
        { "devices", OBJECTS(struct oci_resources, devices, n_devices, struct oci_device_rule, device_fields),
          .elem_init = device_rule_init },
        { "blockIO", p_unsupported_unless_zero, 0 },
        { "hugepageLimits", p_unsupported_unless_empty, 0 },
        { "network", p_unsupported_unless_empty, 0 },
        { "rdma", p_unsupported_unless_empty, 0 },
        { "unified", p_unsupported_unless_empty, 0 },
        {}
};

static const struct oci_field linux_fields[] = {
        { "namespaces", OBJECTS(struct oci_linux, namespaces, n_namespaces, struct oci_namespace, namespace_fields) },
        { "uidMappings", OBJECTS(struct oci_linux, uid_mappings, n_uid_mappings, struct oci_id_mapping, idmap_fields) },
        { "gidMappings", OBJECTS(struct oci_linux, gid_mappings, n_gid_mappings, struct oci_id_mapping, idmap_fields) },
        { "maskedPaths", p_abspath_strv, OFF(struct oci_linux, masked_paths) },
        { "readonlyPaths", p_abspath_strv, OFF(struct oci_linux, readonly_paths) },
        { "seccomp", p_seccomp, OFF(struct oci_linux, seccomp) },
        { "resources", p_object, OFF(struct oci_linux, resources), 0, 0, resources_fields },
        { "sysctl", p_sysctl, 0 },
        { "cgroupsPath", p_string, OFF(struct oci_linux, cgroups_path) },
        { "rootfsPropagation", p_propagation, OFF(struct oci_linux, rootfs_propagation) },
        { "mountLabel", p_unsupported_unless_empty, 0 },
        { "devices", OBJECTS(struct oci_linux, devices, n_devices, struct oci_device, linux_device_fields) },
        { "intelRdt", p_unsupported, 0 },
        { "personality", p_unsupported, 0 },
        { "timeOffsets", p_unsupported, 0 },
        { "memoryPolicy", p_unsupported, 0 },
        { "netDevices", p_unsupported_unless_empty, 0 },
        { "uidMappingsSeeded", p_unsupported, 0 },
        {}
};

static const struct oci_field hook_fields[] = {
        { "path", p_abspath, OFF(struct oci_hook, path), F_MANDATORY },
        { "args", p_strv, OFF(struct oci_hook, args) },
        { "env", p_env, OFF(struct oci_hook, env) },
        { "timeout", p_timeout, OFF(struct oci_hook, timeout), PRESENT(struct oci_hook, timeout_present) },
        {}
};

#define HOOKS(name, kind)                                                                      \
        { name, p_objects, offsetof(struct oci_hooks, hooks[kind]), 0,                         \
          offsetof(struct oci_hooks, n_hooks[kind]), hook_fields, sizeof(struct oci_hook) }
static const struct oci_field hooks_fields[] = {
        HOOKS("prestart", OCI_HOOK_PRESTART),
        HOOKS("createRuntime", OCI_HOOK_CREATE_RUNTIME),
        HOOKS("createContainer", OCI_HOOK_CREATE_CONTAINER),
        HOOKS("startContainer", OCI_HOOK_START_CONTAINER),
        HOOKS("poststart", OCI_HOOK_POSTSTART),
        HOOKS("poststop", OCI_HOOK_POSTSTOP),
        {}
};

static int p_process(struct pctx *c, yajl_val v, void *base, const struct oci_field *f)
{
        ((struct oci_spec *) base)->process_present = true;
        return p_object(c, v, base, f);
}

static const struct oci_field spec_fields[] = {
        { "ociVersion", p_version, OFF(struct oci_spec, oci_version), F_MANDATORY },
        { "process", p_process, OFF(struct oci_spec, process), 0, 0, process_fields },
        { "root", p_object, OFF(struct oci_spec, root), 0, 0, root_fields },
        { "hostname", p_string, OFF(struct oci_spec, hostname) },
        { "domainname", p_unsupported_unless_empty, 0 },
        { "mounts", OBJECTS(struct oci_spec, mounts, n_mounts, struct oci_mount, mount_fields) },
        { "linux", p_object, OFF(struct oci_spec, linux_), 0, 0, linux_fields },
        { "hooks", p_object, OFF(struct oci_spec, hooks), 0, 0, hooks_fields },
        { "annotations", p_annotations, 0 },
        { "solaris", p_unsupported, 0 },
        { "windows", p_unsupported, 0 },
        { "vm", p_unsupported, 0 },
        { "zos", p_unsupported, 0 },
        { "freebsd", p_unsupported, 0 },
        { "domain", p_unsupported, 0 },
        {}
};

/* ---- special fields ---- */

static int p_version(struct pctx *c, yajl_val v, void *base, const struct oci_field *f)
{
        const char *s = NULL;
        int r = get_string(c, v, &s);
        if (r < 0)
                return r;
        if (strncmp(s, "1.", 2))
                return fail(c, EOPNOTSUPP, "version '%s' not supported (want 1.x)", s);
        return p_string(c, v, base, f);
}

static int p_seccomp(struct pctx *c, yajl_val v, void *base, const struct oci_field *f)
{
        struct oci_seccomp **dst = (struct oci_seccomp **) FIELD_PTR(base, f);
        if (*dst)
                return fail(c, EINVAL, "given twice");
        *dst = xzalloc(sizeof **dst);
        return dispatch(c, v, seccomp_fields, *dst);
}

static int p_kv_object(struct pctx *c, yajl_val v, struct oci_sysctl **items, size_t *n)
{
        int r = check_object(c, v);
        if (r < 0)
                return r;
        *items = xcalloc(v->u.object.len + 1, sizeof **items);
        for (size_t i = 0; i < v->u.object.len; i++) {
                size_t mark = path_push_key(c, v->u.object.keys[i]);
                const char *s = NULL;
                r = get_string(c, v->u.object.values[i], &s);
                if (r < 0)
                        return r;
                path_pop(c, mark);
                (*items)[i].key = xstrdup(v->u.object.keys[i]);
                (*items)[i].value = xstrdup(s);
                *n = i + 1;
        }
        return 0;
}

static int p_sysctl(struct pctx *c, yajl_val v, void *base, const struct oci_field *f)
{
        struct oci_linux *l = base;
        int r = p_kv_object(c, v, &l->sysctl, &l->n_sysctl);
        for (size_t i = 0; r >= 0 && i < l->n_sysctl; i++) {
                const char *k = l->sysctl[i].key;
                if (!*k || strstr(k, "..") || k[0] == '.' || k[0] == '/' || strchr(k, '\n')) {
                        size_t mark = path_push_key(c, k);
                        r = fail(c, EINVAL, "invalid sysctl name");
                        path_pop(c, mark);
                }
        }
        return r;
}

static int p_annotations(struct pctx *c, yajl_val v, void *base, const struct oci_field *f)
{
        struct oci_spec *s = base;
        /* struct oci_annotation and struct oci_sysctl have the same shape */
        return p_kv_object(c, v, (struct oci_sysctl **) &s->annotations, &s->n_annotations);
}

static int p_mount_options(struct pctx *c, yajl_val v, void *base, const struct oci_field *f)
{
        int r = p_strv(c, v, base, f);
        if (r < 0)
                return r;
        struct oci_mount_flags mf;
        hm_error_t e = NULL;
        r = oci_mount_parse_options(*(char ***) FIELD_PTR(base, f), &mf, &e);
        if (r < 0) {
                /* e->msg is "options[N]: ..."; our path already ends in ".options" */
                const char *bracket = strchr(e->msg, '[');
                r = hm_error_set(c->err, e->code, "%s: %s%s", c->file ? c->file : "config.json", c->path.buf,
                                 bracket ? bracket : e->msg);
                hm_error_release(&e);
                return r;
        }
        oci_mount_flags_release(&mf);
        return 0;
}

static int p_device_type(struct pctx *c, yajl_val v, void *base, const struct oci_field *f)
{
        const char *s = NULL;
        int r = get_string(c, v, &s);
        if (r < 0)
                return r;
        if (strcmp(s, "a") && strcmp(s, "c") && strcmp(s, "b"))
                return fail(c, EINVAL, "'%s' is not one of a, c, b", s);
        *FIELD_PTR(base, f) = s[0];
        return 0;
}

static int p_device_num(struct pctx *c, yajl_val v, void *base, const struct oci_field *f)
{
        return get_i64(c, v, -1, UINT32_MAX, (int64_t *) FIELD_PTR(base, f));
}

static int p_device_access(struct pctx *c, yajl_val v, void *base, const struct oci_field *f)
{
        const char *s = NULL;
        int r = get_string(c, v, &s);
        if (r < 0)
                return r;
        if (strlen(s) > 3 || strspn(s, "rwm") != strlen(s))
                return fail(c, EINVAL, "'%s' is not a subset of \"rwm\"", s);
        memcpy(FIELD_PTR(base, f), s, strlen(s) + 1);
        return 0;
}

/* ---- cross-field checks ---- */

static int check_unique_namespaces(struct pctx *c, const struct oci_linux *l)
{
        for (size_t i = 0; i < l->n_namespaces; i++)
                for (size_t j = 0; j < i; j++)
                        if (l->namespaces[i].type == l->namespaces[j].type) {
                                strbuf_reset(&c->path);
                                strbuf_addf(&c->path, "linux.namespaces[%zu]", i);
                                return fail(c, EINVAL, "duplicate namespace '%s'",
                                            oci_ns_type_to_string(l->namespaces[i].type));
                        }
        return 0;
}

static int check_unique_rlimits(struct pctx *c, const struct oci_process *p)
{
        for (size_t i = 0; i < p->n_rlimits; i++) {
                bool dup = false;
                for (size_t j = 0; j < i; j++)
                        dup |= p->rlimits[i].type == p->rlimits[j].type;
                strbuf_reset(&c->path);
                strbuf_addf(&c->path, "process.rlimits[%zu]", i);
                if (dup)
                        return fail(c, EINVAL, "duplicate rlimit '%s'", oci_rlimit_to_name(p->rlimits[i].type));
                if (p->rlimits[i].soft > p->rlimits[i].hard)
                        return fail(c, EINVAL, "soft limit above hard limit");
        }
        return 0;
}

static int check_spec(struct pctx *c, struct oci_spec *s)
{
        int r = check_unique_namespaces(c, &s->linux_);
        if (r >= 0)
                r = check_unique_rlimits(c, &s->process);
        return r;
}

static void pctx_release(struct pctx *c) { strbuf_release(&c->path); }

static void set_defaults(struct oci_spec *s)
{
        s->linux_.resources.memory_limit = -1;
        s->linux_.resources.cpu_quota = -1;
}

int oci_spec_parse(const char *json, size_t len, struct oci_spec **ret, hm_error_t *err)
{
        char ebuf[256] = "";
        _cleanup_free_ char *copy = xstrndup(json, len); /* yajl_tree_parse wants a C string */
        if (strlen(copy) != len)
                return hm_error_set(err, EINVAL, "config.json: contains a NUL byte");
        _cleanup_yajl_tree_ yajl_val tree = yajl_tree_parse(copy, ebuf, sizeof ebuf);
        if (!tree) {
                ebuf[strcspn(ebuf, "\n")] = 0;
                return hm_error_set(err, EINVAL, "config.json: invalid JSON: %s", *ebuf ? ebuf : "parse error");
        }
        _cleanup_oci_spec_ struct oci_spec *s = xzalloc(sizeof *s);
        set_defaults(s);
        _cleanup_(pctx_release) struct pctx c = { STRBUF_INIT, err, NULL };
        int r = dispatch(&c, tree, spec_fields, s);
        if (r >= 0)
                r = check_spec(&c, s);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(s);
        return 0;
}

int oci_spec_replace_process(struct oci_spec *s, const char *json, size_t len, const char *name, hm_error_t *err)
{
        char ebuf[256] = "";
        _cleanup_free_ char *copy = xstrndup(json, len);
        if (strlen(copy) != len)
                return hm_error_set(err, EINVAL, "%s: contains a NUL byte", name);
        _cleanup_yajl_tree_ yajl_val tree = yajl_tree_parse(copy, ebuf, sizeof ebuf);
        if (!tree) {
                ebuf[strcspn(ebuf, "\n")] = 0;
                return hm_error_set(err, EINVAL, "%s: invalid JSON: %s", name, *ebuf ? ebuf : "parse error");
        }
        /* parsed into a scratch spec: on failure s is untouched, on success the old process goes with it */
        _cleanup_oci_spec_ struct oci_spec *t = xzalloc(sizeof *t);
        set_defaults(t);
        _cleanup_(pctx_release) struct pctx c = { STRBUF_INIT, err, name };
        int r = dispatch(&c, tree, process_fields, &t->process);
        if (r >= 0)
                r = check_unique_rlimits(&c, &t->process);
        if (r < 0)
                return r;
        struct oci_process old = s->process;
        s->process = t->process;
        t->process = old;
        s->process_present = true;
        return 0;
}
