/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Per-run sandbox options applied to a container spec (the --seccomp,
 * --cap-add/--cap-drop, --read-only, --tmpfs-tmp and --user flags), and the
 * seccomp profile reader for --seccomp=FILE.
 *
 * A profile is either the OCI linux.seccomp object or Docker's format
 * (moby profiles/seccomp/default.json): the same keys plus "archMap",
 * per-rule "name" (one syscall), "comment", and "includes"/"excludes"
 * conditions on capabilities, architectures and minimum kernel.  Docker's
 * conditions are decided here, against the container's capabilities and
 * this machine, so both formats end in the same struct oci_seccomp.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/utsname.h>
#include <yajl/yajl_tree.h>

#include "lib/handles.h"
#include "lib/util.h"
#include "oci/spec-internal.h"
#include "oci/spec.h"

/* ---- capabilities ---- */

int oci_cap_parse(const char *name, hm_error_t *err)
{
        char buf[64] = "CAP_";
        size_t k = 4;
        const char *s = name;
        if (!strncasecmp(s, "CAP_", 4))
                s += 4;
        for (; *s && k < sizeof buf - 1; s++)
                buf[k++] = (char) (*s >= 'a' && *s <= 'z' ? *s - 'a' + 'A' : *s);
        buf[k] = 0;
        int cap = *s ? -1 : oci_cap_from_name(buf);
        if (cap < 0)
                return hm_error_set(err, EINVAL, "unknown capability '%s'", name);
        return cap;
}

static uint64_t all_caps(void)
{
        uint64_t all = 0;
        for (int cap = 0; cap < 64 && oci_cap_to_name(cap); cap++)
                all |= UINT64_C(1) << cap;
        return all;
}

static int caps_mask(char *const *names, const char *flag, uint64_t *ret, bool *ret_all, hm_error_t *err)
{
        *ret = 0;
        *ret_all = false;
        for (size_t i = 0; names && names[i]; i++) {
                if (!strcasecmp(names[i], "ALL")) {
                        *ret_all = true;
                        continue;
                }
                int cap = oci_cap_parse(names[i], err);
                if (cap < 0)
                        return hm_error_wrap(err, "%s", flag);
                *ret |= UINT64_C(1) << cap;
        }
        return 0;
}

/* Docker's order: drop ALL empties the set before adds; add ALL fills it before drops. */
int oci_caps_adjust(uint64_t base, char *const *add, char *const *drop, uint64_t *ret, hm_error_t *err)
{
        uint64_t a, d;
        bool add_all, drop_all;
        int r = caps_mask(add, "--cap-add", &a, &add_all, err);
        if (r >= 0)
                r = caps_mask(drop, "--cap-drop", &d, &drop_all, err);
        if (r < 0)
                return r;
        uint64_t caps = base;
        if (add_all)
                caps = all_caps();
        if (drop_all)
                caps = 0;
        *ret = ((caps & ~d) | a) & all_caps();
        if (add_all && !drop_all)
                *ret = all_caps() & ~d;
        return 0;
}

void oci_spec_set_capabilities(struct oci_spec *s, uint64_t caps)
{
        /*
         * bounding = permitted = effective = the set; inheritable and ambient
         * empty (CVE-2022-24769: an inheritable set lets file capabilities
         * come back after exec).  A non-root user keeps none of them across
         * execve, as with Docker.
         */
        s->process.capabilities = (struct oci_capabilities) {
                .bounding = caps, .effective = caps, .permitted = caps, .inheritable = 0, .ambient = 0,
        };
}

/* ---- run options ---- */

static int parse_id(const char *s, const char *what, const char *user, uint32_t *ret, hm_error_t *err)
{
        char *end;
        errno = 0;
        unsigned long v = strtoul(s, &end, 10);
        if (!*s || *end || errno || v > UINT32_MAX - 1 || s[0] == '-' || s[0] == '+')
                return hm_error_set(err, EINVAL, "--user '%s': %s '%s' is not a numeric id", user, what, s);
        *ret = (uint32_t) v;
        return 0;
}

int oci_parse_user(const char *user, uid_t *ret_uid, gid_t *ret_gid, hm_error_t *err)
{
        _cleanup_free_ char *copy = xstrdup(user);
        char *colon = strchr(copy, ':');
        if (colon)
                *colon = 0;
        uint32_t uid, gid;
        int r = parse_id(copy, "uid", user, &uid, err);
        if (r < 0)
                return r;
        gid = uid;
        if (colon && (r = parse_id(colon + 1, "gid", user, &gid, err)) < 0)
                return r;
        *ret_uid = uid;
        *ret_gid = gid;
        return 0;
}

static bool has_mount(const struct oci_spec *s, const char *dest)
{
        for (size_t i = 0; i < s->n_mounts; i++)
                if (!strcmp(s->mounts[i].destination, dest))
                        return true;
        return false;
}

int oci_spec_apply_run_options(struct oci_spec *s, const struct oci_run_options *o, hm_error_t *err)
{
        if (o->cap_add || o->cap_drop) {
                uint64_t caps;
                int r = oci_caps_adjust(s->process.capabilities.bounding, o->cap_add, o->cap_drop, &caps, err);
                if (r < 0)
                        return r;
                oci_spec_set_capabilities(s, caps);
        }
        if (o->user) {
                int r = oci_parse_user(o->user, &s->process.user.uid, &s->process.user.gid, err);
                if (r < 0)
                        return r;
                free(s->process.user.additional_gids);
                s->process.user.additional_gids = NULL;
                s->process.user.n_additional_gids = 0;
        }
        if (o->readonly_rootfs)
                s->root.readonly = true;
        if (o->tmpfs_tmp && !has_mount(s, "/tmp")) {
                s->mounts = xrealloc(s->mounts, (s->n_mounts + 1) * sizeof *s->mounts);
                struct oci_mount *m = &s->mounts[s->n_mounts++];
                *m = (struct oci_mount) { .destination = xstrdup("/tmp"), .type = xstrdup("tmpfs"),
                                          .source = xstrdup("tmpfs"), .options = NULL };
                strv_push(&m->options, "nosuid");
                strv_push(&m->options, "nodev");
                strv_push(&m->options, "mode=1777");
                strv_push(&m->options, "size=65536k");
        }
        return 0;
}

/* ---- seccomp profiles ---- */

struct sctx {
        const char *file;
        uint64_t caps;
        hm_error_t *err;
};

static int bad(struct sctx *c, const char *path, const char *what)
{
        return hm_error_set(c->err, EINVAL, "%s: %s: %s", c->file, path, what);
}

static yajl_val get(yajl_val obj, const char *key)
{
        for (size_t i = 0; obj && YAJL_IS_OBJECT(obj) && i < obj->u.object.len; i++)
                if (!strcmp(obj->u.object.keys[i], key))
                        return obj->u.object.values[i];
        return NULL;
}

static int get_u64(struct sctx *c, yajl_val v, const char *path, uint64_t max, uint64_t *ret)
{
        if (!v || !YAJL_IS_INTEGER(v) || YAJL_GET_INTEGER(v) < 0 || (uint64_t) YAJL_GET_INTEGER(v) > max) {
                /* yajl keeps values above INT64_MAX only as doubles/strings: take the string */
                if (v && YAJL_IS_NUMBER(v) && v->u.number.r && v->u.number.r[0] != '-') {
                        char *end;
                        errno = 0;
                        unsigned long long u = strtoull(v->u.number.r, &end, 10);
                        if (!*end && !errno && u <= max) {
                                *ret = u;
                                return 0;
                        }
                }
                return bad(c, path, "not an unsigned integer in range");
        }
        *ret = (uint64_t) YAJL_GET_INTEGER(v);
        return 0;
}

static int get_strv(struct sctx *c, yajl_val v, const char *path, char ***ret)
{
        if (!YAJL_IS_ARRAY(v))
                return bad(c, path, "not an array of strings");
        for (size_t i = 0; i < v->u.array.len; i++) {
                if (!YAJL_IS_STRING(v->u.array.values[i]))
                        return bad(c, path, "not an array of strings");
                strv_push(ret, YAJL_GET_STRING(v->u.array.values[i]));
        }
        return 0;
}

static const char *native_docker_arch(void)
{
#if defined(__x86_64__)
        return "amd64";
#elif defined(__aarch64__)
        return "arm64";
#elif defined(__i386__)
        return "x86";
#else
        return "";
#endif
}

static bool kernel_at_least(const char *want)
{
        struct utsname u;
        unsigned a = 0, b = 0, x = 0, y = 0;
        if (uname(&u) < 0 || sscanf(u.release, "%u.%u", &a, &b) < 1 || sscanf(want, "%u.%u", &x, &y) < 1)
                return true;
        return a > x || (a == x && b >= y);
}

/*
 * Docker's conditions (moby seccomp_linux.go): "includes" keeps a rule when
 * every listed cap is held, the arch is listed and the kernel is at least
 * minKernel; "excludes" drops it when any listed cap is held, the arch is
 * listed or the kernel is at least minKernel.
 */
static int condition(struct sctx *c, yajl_val cond, const char *path, bool exclude, bool *ret)
{
        *ret = !exclude; /* an empty condition: include everything, exclude nothing */
        if (!cond || YAJL_IS_NULL(cond))
                return 0;
        if (!YAJL_IS_OBJECT(cond))
                return bad(c, path, "includes/excludes: not an object");
        bool all = true, any = false;
        for (size_t i = 0; i < cond->u.object.len; i++) {
                const char *k = cond->u.object.keys[i];
                yajl_val v = cond->u.object.values[i];
                _cleanup_strv_ char **items = NULL;
                if (!strcmp(k, "minKernel")) {
                        if (!YAJL_IS_STRING(v))
                                return bad(c, path, "minKernel: not a string");
                        bool ok = kernel_at_least(YAJL_GET_STRING(v));
                        all = all && ok;
                        any = any || ok;
                        continue;
                }
                if (strcmp(k, "caps") && strcmp(k, "arches"))
                        return bad(c, path, "includes/excludes: unknown condition");
                if (get_strv(c, v, path, &items) < 0)
                        return -1;
                if (!items || !items[0])
                        continue;
                bool key_all = true, key_any = false;
                for (size_t n = 0; items[n]; n++) {
                        bool held;
                        if (!strcmp(k, "caps")) {
                                int cap = oci_cap_parse(items[n], c->err);
                                if (cap < 0)
                                        return hm_error_wrap(c->err, "%s: %s", c->file, path);
                                held = c->caps & (UINT64_C(1) << cap);
                        } else {
                                held = !strcmp(items[n], native_docker_arch());
                        }
                        key_all = key_all && held;
                        key_any = key_any || held;
                }
                /* arches: "this arch is listed" either way */
                all = all && (!strcmp(k, "caps") ? key_all : key_any);
                any = any || key_any;
        }
        *ret = exclude ? any : all;
        return 0;
}

static int parse_action(struct sctx *c, yajl_val v, const char *path, enum oci_seccomp_action *ret)
{
        int a = YAJL_IS_STRING(v) ? oci_seccomp_action_from_string(YAJL_GET_STRING(v)) : -1;
        if (a < 0)
                return bad(c, path, "unknown action");
        *ret = (enum oci_seccomp_action) a;
        return 0;
}

static int parse_args(struct sctx *c, yajl_val v, const char *path, struct oci_seccomp_rule *rule)
{
        if (!YAJL_IS_ARRAY(v))
                return bad(c, path, "not an array");
        if (v->u.array.len > 6)
                return bad(c, path, "more than 6 conditions");
        rule->args = xcalloc(v->u.array.len + 1, sizeof *rule->args);
        for (size_t i = 0; i < v->u.array.len; i++) {
                yajl_val a = v->u.array.values[i];
                struct oci_seccomp_arg *out = &rule->args[i];
                rule->n_args = i + 1;
                uint64_t index;
                yajl_val op = get(a, "op");
                int o = op && YAJL_IS_STRING(op) ? oci_seccomp_op_from_string(YAJL_GET_STRING(op)) : -1;
                if (!YAJL_IS_OBJECT(a) || get_u64(c, get(a, "index"), path, 5, &index) < 0 ||
                    get_u64(c, get(a, "value"), path, UINT64_MAX, &out->value) < 0)
                        return bad(c, path, "each condition needs index (0..5), value and op");
                if (o < 0)
                        return bad(c, path, "unknown op");
                if (get(a, "valueTwo") && get_u64(c, get(a, "valueTwo"), path, UINT64_MAX, &out->value_two) < 0)
                        return -1;
                out->index = (unsigned) index;
                out->op = (enum oci_seccomp_op) o;
        }
        return 0;
}

/* One rule; *ret_keep is false when Docker's includes/excludes rule it out. */
static int parse_rule(struct sctx *c, yajl_val v, size_t idx, struct oci_seccomp_rule *rule, bool *ret_keep)
{
        char path[64];
        snprintf(path, sizeof path, "syscalls[%zu]", idx);
        *ret_keep = true;
        if (!YAJL_IS_OBJECT(v))
                return bad(c, path, "not an object");
        for (size_t i = 0; i < v->u.object.len; i++) {
                const char *k = v->u.object.keys[i];
                yajl_val x = v->u.object.values[i];
                bool holds;
                int r = 0;
                if (!strcmp(k, "names"))
                        r = get_strv(c, x, path, &rule->names);
                else if (!strcmp(k, "name")) /* Docker's older one-name form */
                        r = YAJL_IS_STRING(x) ? (strv_push(&rule->names, YAJL_GET_STRING(x)), 0) : bad(c, path, "name: not a string");
                else if (!strcmp(k, "action"))
                        r = parse_action(c, x, path, &rule->action);
                else if (!strcmp(k, "errnoRet")) {
                        uint64_t e;
                        r = get_u64(c, x, path, 4095, &e);
                        rule->errno_ret = (uint32_t) e;
                        rule->errno_ret_present = true;
                } else if (!strcmp(k, "args")) {
                        r = x && YAJL_IS_NULL(x) ? 0 : parse_args(c, x, path, rule);
                } else if (!strcmp(k, "includes")) {
                        r = condition(c, x, path, false, &holds);
                        *ret_keep = *ret_keep && holds;
                } else if (!strcmp(k, "excludes")) {
                        r = condition(c, x, path, true, &holds);
                        *ret_keep = *ret_keep && !holds;
                } else if (strcmp(k, "comment")) {
                        r = bad(c, path, "unknown field");
                }
                if (r < 0)
                        return r;
        }
        if (!get(v, "action"))
                return bad(c, path, "action: missing");
        if (!rule->names)
                return bad(c, path, "names: missing");
        return 0;
}

static int parse_arches(struct sctx *c, yajl_val root, struct oci_seccomp *s)
{
        yajl_val v = get(root, "architectures");
        if (v && get_strv(c, v, "architectures", &s->architectures) < 0)
                return -1;
        /* Docker: archMap [{architecture, subArchitectures}]: the native entry and its subs */
        yajl_val map = get(root, "archMap");
        if (!map || YAJL_IS_NULL(map))
                return 0;
        if (!YAJL_IS_ARRAY(map))
                return bad(c, "archMap", "not an array");
        static const struct { const char *docker, *scmp; } native[] = {
                { "amd64", "SCMP_ARCH_X86_64" }, { "arm64", "SCMP_ARCH_AARCH64" }, { "x86", "SCMP_ARCH_X86" },
        };
        const char *mine = NULL;
        for (size_t i = 0; i < ARRAY_SIZE(native); i++)
                if (!strcmp(native[i].docker, native_docker_arch()))
                        mine = native[i].scmp;
        for (size_t i = 0; mine && i < map->u.array.len; i++) {
                yajl_val e = map->u.array.values[i];
                yajl_val a = get(e, "architecture");
                if (!a || !YAJL_IS_STRING(a))
                        return bad(c, "archMap", "architecture: missing");
                const char *an = YAJL_GET_STRING(a);
                if (!an || strcmp(an, mine))
                        continue;
                strv_push(&s->architectures, mine);
                yajl_val subs = get(e, "subArchitectures");
                if (subs && !YAJL_IS_NULL(subs) && get_strv(c, subs, "archMap.subArchitectures", &s->architectures) < 0)
                        return -1;
        }
        return 0;
}

static int parse_profile(struct sctx *c, yajl_val root, struct oci_seccomp *s)
{
        if (!YAJL_IS_OBJECT(root))
                return bad(c, "(root)", "not an object");
        /* a whole config.json: take its linux.seccomp */
        yajl_val lx = get(root, "linux");
        if (lx && get(lx, "seccomp"))
                root = get(lx, "seccomp");
        static const char *const known[] = { "defaultAction", "defaultErrnoRet", "architectures", "archMap",
                                             "syscalls", "flags", "listenerPath", "listenerMetadata", NULL };
        for (size_t i = 0; i < root->u.object.len; i++) {
                size_t k = 0;
                while (known[k] && strcmp(known[k], root->u.object.keys[i]))
                        k++;
                if (!known[k])
                        return bad(c, root->u.object.keys[i], "unknown field");
        }
        yajl_val flags = get(root, "flags");
        if (flags && !YAJL_IS_NULL(flags) && !(YAJL_IS_ARRAY(flags) && flags->u.array.len == 0))
                return bad(c, "flags", "not supported");
        if (get(root, "listenerPath"))
                return bad(c, "listenerPath", "not supported");
        yajl_val def = get(root, "defaultAction");
        if (!def)
                return bad(c, "defaultAction", "missing");
        if (parse_action(c, def, "defaultAction", &s->default_action) < 0)
                return -1;
        yajl_val de = get(root, "defaultErrnoRet");
        if (de) {
                uint64_t e;
                if (get_u64(c, de, "defaultErrnoRet", 4095, &e) < 0)
                        return -1;
                s->default_errno_ret = (uint32_t) e;
                s->default_errno_ret_present = true;
        }
        if (parse_arches(c, root, s) < 0)
                return -1;
        yajl_val sys = get(root, "syscalls");
        if (!sys || YAJL_IS_NULL(sys))
                return 0;
        if (!YAJL_IS_ARRAY(sys))
                return bad(c, "syscalls", "not an array");
        s->syscalls = xcalloc(sys->u.array.len + 1, sizeof *s->syscalls);
        for (size_t i = 0; i < sys->u.array.len; i++) {
                struct oci_seccomp_rule *rule = &s->syscalls[s->n_syscalls++];
                bool keep;
                if (parse_rule(c, sys->u.array.values[i], i, rule, &keep) < 0)
                        return -1;
                if (!keep) { /* ruled out by its conditions: forget it */
                        strv_free(rule->names);
                        free(rule->args);
                        *rule = (struct oci_seccomp_rule) { 0 };
                        s->n_syscalls--;
                }
        }
        return 0;
}

int oci_seccomp_profile_parse(const char *json, size_t len, const char *name, uint64_t caps,
                              struct oci_seccomp **ret, hm_error_t *err)
{
        char ebuf[256] = "";
        _cleanup_free_ char *copy = xstrndup(json, len);
        if (strlen(copy) != len)
                return hm_error_set(err, EINVAL, "%s: contains a NUL byte", name);
        _cleanup_yajl_tree_ yajl_val root = yajl_tree_parse(copy, ebuf, sizeof ebuf);
        if (!root)
                return hm_error_set(err, EINVAL, "%s: invalid JSON: %s", name, strtok(ebuf, "\n") ? ebuf : "parse error");
        struct sctx c = { name, caps, err };
        struct oci_seccomp *s = xzalloc(sizeof *s);
        if (parse_profile(&c, root, s) < 0) {
                oci_seccomp_free(s);
                return -1;
        }
        *ret = s;
        return 0;
}

int oci_seccomp_from_option(const char *opt, uint64_t caps, struct oci_seccomp **ret, hm_error_t *err)
{
        if (!opt || !strcmp(opt, "default")) {
                *ret = oci_seccomp_new_default();
                return 0;
        }
        if (!strcmp(opt, "unconfined")) {
                *ret = NULL;
                return 0;
        }
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        int r = read_file(opt, 4 << 20, &text, &len);
        if (r < 0)
                return hm_error_set(err, -r, "--seccomp: read '%s': %s", opt, strerror(-r));
        return oci_seccomp_profile_parse(text, len, opt, caps, ret, err);
}
