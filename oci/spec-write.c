/* SPDX-License-Identifier: Apache-2.0 */
/* struct oci_spec -> runtime-spec JSON (the inverse of spec-parse.c). */
#include <inttypes.h>
#include <yajl/yajl_gen.h>

#include "lib/handles.h"
#include "lib/util.h"
#include "oci/spec-internal.h"
#include "oci/spec.h"

static void g_str(yajl_gen g, const char *s)
{
        yajl_gen_string(g, (const unsigned char *) s, strlen(s));
}

static void g_key_str(yajl_gen g, const char *k, const char *v)
{
        g_str(g, k);
        g_str(g, v);
}

static void g_key_bool(yajl_gen g, const char *k, bool v)
{
        g_str(g, k);
        yajl_gen_bool(g, v);
}

static void g_key_i64(yajl_gen g, const char *k, int64_t v)
{
        g_str(g, k);
        yajl_gen_integer(g, v);
}

/* yajl_gen_integer takes long long: write unsigned 64-bit values as raw numbers. */
static void g_key_u64(yajl_gen g, const char *k, uint64_t v)
{
        char buf[32];
        int n = snprintf(buf, sizeof buf, "%" PRIu64, v);
        g_str(g, k);
        yajl_gen_number(g, buf, (size_t) n);
}

static void g_strv(yajl_gen g, const char *k, char *const *v)
{
        g_str(g, k);
        yajl_gen_array_open(g);
        for (size_t i = 0; v && v[i]; i++)
                g_str(g, v[i]);
        yajl_gen_array_close(g);
}

static void g_caps(yajl_gen g, const char *k, uint64_t mask)
{
        g_str(g, k);
        yajl_gen_array_open(g);
        for (int cap = 0; cap < 64; cap++)
                if ((mask & (UINT64_C(1) << cap)) && oci_cap_to_name(cap))
                        g_str(g, oci_cap_to_name(cap));
        yajl_gen_array_close(g);
}

static void write_user(yajl_gen g, const struct oci_user *u)
{
        g_str(g, "user");
        yajl_gen_map_open(g);
        g_key_u64(g, "uid", u->uid);
        g_key_u64(g, "gid", u->gid);
        if (u->umask_present)
                g_key_u64(g, "umask", u->umask);
        if (u->n_additional_gids) {
                g_str(g, "additionalGids");
                yajl_gen_array_open(g);
                for (size_t i = 0; i < u->n_additional_gids; i++)
                        yajl_gen_integer(g, u->additional_gids[i]);
                yajl_gen_array_close(g);
        }
        yajl_gen_map_close(g);
}

static void write_process(yajl_gen g, const struct oci_process *p)
{
        g_str(g, "process");
        yajl_gen_map_open(g);
        g_key_bool(g, "terminal", p->terminal);
        if (p->console_height || p->console_width) {
                g_str(g, "consoleSize");
                yajl_gen_map_open(g);
                g_key_u64(g, "height", p->console_height);
                g_key_u64(g, "width", p->console_width);
                yajl_gen_map_close(g);
        }
        write_user(g, &p->user);
        g_strv(g, "args", p->args);
        g_strv(g, "env", p->env);
        g_key_str(g, "cwd", p->cwd ? p->cwd : "/");
        g_str(g, "capabilities");
        yajl_gen_map_open(g);
        g_caps(g, "bounding", p->capabilities.bounding);
        g_caps(g, "effective", p->capabilities.effective);
        g_caps(g, "inheritable", p->capabilities.inheritable);
        g_caps(g, "permitted", p->capabilities.permitted);
        g_caps(g, "ambient", p->capabilities.ambient);
        yajl_gen_map_close(g);
        if (p->n_rlimits) {
                g_str(g, "rlimits");
                yajl_gen_array_open(g);
                for (size_t i = 0; i < p->n_rlimits; i++) {
                        yajl_gen_map_open(g);
                        g_key_str(g, "type", oci_rlimit_to_name(p->rlimits[i].type));
                        g_key_u64(g, "hard", p->rlimits[i].hard);
                        g_key_u64(g, "soft", p->rlimits[i].soft);
                        yajl_gen_map_close(g);
                }
                yajl_gen_array_close(g);
        }
        g_key_bool(g, "noNewPrivileges", p->no_new_privileges);
        if (p->oom_score_adj_present)
                g_key_i64(g, "oomScoreAdj", p->oom_score_adj);
        yajl_gen_map_close(g);
}

static void write_mounts(yajl_gen g, const struct oci_spec *s)
{
        g_str(g, "mounts");
        yajl_gen_array_open(g);
        for (size_t i = 0; i < s->n_mounts; i++) {
                const struct oci_mount *m = &s->mounts[i];
                yajl_gen_map_open(g);
                g_key_str(g, "destination", m->destination);
                if (m->type)
                        g_key_str(g, "type", m->type);
                if (m->source)
                        g_key_str(g, "source", m->source);
                if (m->options)
                        g_strv(g, "options", m->options);
                yajl_gen_map_close(g);
        }
        yajl_gen_array_close(g);
}

static void write_idmaps(yajl_gen g, const char *k, const struct oci_id_mapping *m, size_t n)
{
        if (!n)
                return;
        g_str(g, k);
        yajl_gen_array_open(g);
        for (size_t i = 0; i < n; i++) {
                yajl_gen_map_open(g);
                g_key_u64(g, "containerID", m[i].container_id);
                g_key_u64(g, "hostID", m[i].host_id);
                g_key_u64(g, "size", m[i].size);
                yajl_gen_map_close(g);
        }
        yajl_gen_array_close(g);
}

static void write_seccomp_rule(yajl_gen g, const struct oci_seccomp_rule *r)
{
        yajl_gen_map_open(g);
        g_strv(g, "names", r->names);
        g_key_str(g, "action", oci_seccomp_action_to_string(r->action));
        if (r->errno_ret_present)
                g_key_u64(g, "errnoRet", r->errno_ret);
        if (r->n_args) {
                g_str(g, "args");
                yajl_gen_array_open(g);
                for (size_t k = 0; k < r->n_args; k++) {
                        yajl_gen_map_open(g);
                        g_key_u64(g, "index", r->args[k].index);
                        g_key_u64(g, "value", r->args[k].value);
                        g_key_u64(g, "valueTwo", r->args[k].value_two);
                        g_key_str(g, "op", oci_seccomp_op_to_string(r->args[k].op));
                        yajl_gen_map_close(g);
                }
                yajl_gen_array_close(g);
        }
        yajl_gen_map_close(g);
}

static void write_seccomp(yajl_gen g, const struct oci_seccomp *s)
{
        g_str(g, "seccomp");
        yajl_gen_map_open(g);
        g_key_str(g, "defaultAction", oci_seccomp_action_to_string(s->default_action));
        if (s->default_errno_ret_present)
                g_key_u64(g, "defaultErrnoRet", s->default_errno_ret);
        if (s->architectures)
                g_strv(g, "architectures", s->architectures);
        g_str(g, "syscalls");
        yajl_gen_array_open(g);
        for (size_t i = 0; i < s->n_syscalls; i++)
                write_seccomp_rule(g, &s->syscalls[i]);
        yajl_gen_array_close(g);
        yajl_gen_map_close(g);
}

static void write_devices(yajl_gen g, const struct oci_resources *r)
{
        g_str(g, "devices");
        yajl_gen_array_open(g);
        for (size_t i = 0; i < r->n_devices; i++) {
                const struct oci_device_rule *d = &r->devices[i];
                char type[2] = { d->type, 0 };
                yajl_gen_map_open(g);
                g_key_bool(g, "allow", d->allow);
                g_key_str(g, "type", type);
                if (d->major >= 0)
                        g_key_i64(g, "major", d->major);
                if (d->minor >= 0)
                        g_key_i64(g, "minor", d->minor);
                g_key_str(g, "access", d->access);
                yajl_gen_map_close(g);
        }
        yajl_gen_array_close(g);
}

static void write_resources(yajl_gen g, const struct oci_resources *r)
{
        g_str(g, "resources");
        yajl_gen_map_open(g);
        if (r->memory_limit_present) {
                g_str(g, "memory");
                yajl_gen_map_open(g);
                g_key_i64(g, "limit", r->memory_limit);
                yajl_gen_map_close(g);
        }
        if (r->pids_limit_present) {
                g_str(g, "pids");
                yajl_gen_map_open(g);
                g_key_i64(g, "limit", r->pids_limit);
                yajl_gen_map_close(g);
        }
        if (r->cpu_quota_present || r->cpu_period_present || r->cpu_shares_present || r->cpu_cpus || r->cpu_mems) {
                g_str(g, "cpu");
                yajl_gen_map_open(g);
                if (r->cpu_quota_present)
                        g_key_i64(g, "quota", r->cpu_quota);
                if (r->cpu_period_present)
                        g_key_u64(g, "period", r->cpu_period);
                if (r->cpu_shares_present)
                        g_key_u64(g, "shares", r->cpu_shares);
                if (r->cpu_cpus)
                        g_key_str(g, "cpus", r->cpu_cpus);
                if (r->cpu_mems)
                        g_key_str(g, "mems", r->cpu_mems);
                yajl_gen_map_close(g);
        }
        write_devices(g, r);
        yajl_gen_map_close(g);
}

static void write_linux(yajl_gen g, const struct oci_linux *l)
{
        g_str(g, "linux");
        yajl_gen_map_open(g);
        g_str(g, "namespaces");
        yajl_gen_array_open(g);
        for (size_t i = 0; i < l->n_namespaces; i++) {
                yajl_gen_map_open(g);
                g_key_str(g, "type", oci_ns_type_to_string(l->namespaces[i].type));
                if (l->namespaces[i].path)
                        g_key_str(g, "path", l->namespaces[i].path);
                yajl_gen_map_close(g);
        }
        yajl_gen_array_close(g);
        write_idmaps(g, "uidMappings", l->uid_mappings, l->n_uid_mappings);
        write_idmaps(g, "gidMappings", l->gid_mappings, l->n_gid_mappings);
        g_strv(g, "maskedPaths", l->masked_paths);
        g_strv(g, "readonlyPaths", l->readonly_paths);
        write_resources(g, &l->resources);
        if (l->n_sysctl) {
                g_str(g, "sysctl");
                yajl_gen_map_open(g);
                for (size_t i = 0; i < l->n_sysctl; i++)
                        g_key_str(g, l->sysctl[i].key, l->sysctl[i].value);
                yajl_gen_map_close(g);
        }
        if (l->cgroups_path)
                g_key_str(g, "cgroupsPath", l->cgroups_path);
        if (l->rootfs_propagation)
                g_key_str(g, "rootfsPropagation", oci_propagation_to_string(l->rootfs_propagation));
        if (l->n_devices) {
                g_str(g, "devices");
                yajl_gen_array_open(g);
                for (size_t i = 0; i < l->n_devices; i++) {
                        const struct oci_device *d = &l->devices[i];
                        char type[2] = { d->type, 0 };
                        yajl_gen_map_open(g);
                        g_key_str(g, "path", d->path);
                        g_key_str(g, "type", type);
                        if (d->type != 'p') {
                                g_key_i64(g, "major", d->major);
                                g_key_i64(g, "minor", d->minor);
                        }
                        if (d->file_mode_present)
                                g_key_u64(g, "fileMode", d->file_mode);
                        if (d->uid_present)
                                g_key_u64(g, "uid", d->uid);
                        if (d->gid_present)
                                g_key_u64(g, "gid", d->gid);
                        yajl_gen_map_close(g);
                }
                yajl_gen_array_close(g);
        }
        if (l->seccomp)
                write_seccomp(g, l->seccomp);
        yajl_gen_map_close(g);
}

static const char *const hook_names[_OCI_HOOK_MAX] = {
        "prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop",
};

static void write_hooks(yajl_gen g, const struct oci_hooks *h)
{
        bool any = false;
        for (int k = 0; k < _OCI_HOOK_MAX; k++)
                any |= h->n_hooks[k] > 0;
        if (!any)
                return;
        g_str(g, "hooks");
        yajl_gen_map_open(g);
        for (int k = 0; k < _OCI_HOOK_MAX; k++) {
                if (!h->n_hooks[k])
                        continue;
                g_str(g, hook_names[k]);
                yajl_gen_array_open(g);
                for (size_t i = 0; i < h->n_hooks[k]; i++) {
                        const struct oci_hook *x = &h->hooks[k][i];
                        yajl_gen_map_open(g);
                        g_key_str(g, "path", x->path);
                        if (x->args)
                                g_strv(g, "args", x->args);
                        if (x->env)
                                g_strv(g, "env", x->env);
                        if (x->timeout_present)
                                g_key_i64(g, "timeout", x->timeout);
                        yajl_gen_map_close(g);
                }
                yajl_gen_array_close(g);
        }
        yajl_gen_map_close(g);
}

static void write_spec(yajl_gen g, const struct oci_spec *s)
{
        yajl_gen_map_open(g);
        g_key_str(g, "ociVersion", s->oci_version ? s->oci_version : "1.0.2");
        if (s->process_present)
                write_process(g, &s->process);
        g_str(g, "root");
        yajl_gen_map_open(g);
        g_key_str(g, "path", s->root.path ? s->root.path : "rootfs");
        g_key_bool(g, "readonly", s->root.readonly);
        yajl_gen_map_close(g);
        if (s->hostname)
                g_key_str(g, "hostname", s->hostname);
        write_mounts(g, s);
        write_hooks(g, &s->hooks);
        if (s->n_annotations) {
                g_str(g, "annotations");
                yajl_gen_map_open(g);
                for (size_t i = 0; i < s->n_annotations; i++)
                        g_key_str(g, s->annotations[i].key, s->annotations[i].value);
                yajl_gen_map_close(g);
        }
        write_linux(g, &s->linux_);
        yajl_gen_map_close(g);
}

int oci_spec_to_json(const struct oci_spec *s, bool pretty, char **ret, hm_error_t *err)
{
        _cleanup_yajl_gen_ yajl_gen g = yajl_gen_alloc(NULL);
        if (!g)
                return hm_error_set(err, ENOMEM, "allocate JSON generator");
        yajl_gen_config(g, yajl_gen_beautify, pretty ? 1 : 0);
        yajl_gen_config(g, yajl_gen_indent_string, "  ");
        yajl_gen_config(g, yajl_gen_validate_utf8, 1);
        write_spec(g, s);
        const unsigned char *buf;
        size_t len;
        yajl_gen_status st = yajl_gen_get_buf(g, &buf, &len);
        if (st != yajl_gen_status_ok)
                return hm_error_set(err, EINVAL, "serialise spec: generator error %d (invalid UTF-8 in a string?)", (int) st);
        *ret = xstrndup((const char *) buf, len);
        return 0;
}
