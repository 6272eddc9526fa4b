/* SPDX-License-Identifier: Apache-2.0 */
/* oci/spec: parse, serialise, refuse with JSON paths; the default spec. */
#include <sys/mount.h>
#include <sys/resource.h>
#include <linux/capability.h>

#include "lib/util.h"
#include "oci/spec.h"
#include "runtime/runtime.h"
#include "tests/unit/tap.h"

#define PROC "\"process\":{\"args\":[\"sh\"],\"cwd\":\"/\"}"
#define BASE "\"ociVersion\":\"1.0.2\"," PROC ",\"root\":{\"path\":\"rootfs\"}"

static const char full_config[] =
        "{\"ociVersion\":\"1.0.2\",\"process\":{\"terminal\":true,\"consoleSize\":{\"height\":24,\"width\":80},\"user\":{\"uid\":1000,\"gid\":100,"
        "\"additionalGids\":[5,6],\"umask\":18},\"args\":[\"/bin/sh\",\"-c\",\"echo hi\"],"
        "\"env\":[\"PATH=/bin\",\"A=b=c\"],\"cwd\":\"/work\",\"capabilities\":{\"bounding\":[\"CAP_CHOWN\",\"CAP_KILL\"],"
        "\"effective\":[\"CAP_KILL\"]},\"rlimits\":[{\"type\":\"RLIMIT_NOFILE\",\"hard\":1024,\"soft\":512},"
        "{\"type\":\"RLIMIT_CORE\",\"hard\":18446744073709551615,\"soft\":0}],\"noNewPrivileges\":true,"
        "\"oomScoreAdj\":-500,\"apparmorProfile\":\"\"},\"root\":{\"path\":\"rootfs\",\"readonly\":true},"
        "\"hostname\":\"box\",\"mounts\":[{\"destination\":\"/proc\",\"type\":\"proc\",\"source\":\"proc\"},"
        "{\"destination\":\"/data\",\"type\":\"bind\",\"source\":\"/srv\",\"options\":[\"rbind\",\"ro\",\"nosuid\",\"rprivate\"]},"
        "{\"destination\":\"/tmp\",\"type\":\"tmpfs\",\"source\":\"tmpfs\",\"options\":[\"nodev\",\"mode=1777\",\"size=1m\"]}],"
        "\"annotations\":{\"org.example\":\"yes\"},"
        "\"hooks\":{\"prestart\":[{\"path\":\"/bin/true\",\"args\":[\"true\"],\"timeout\":5}]},"
        "\"linux\":{\"namespaces\":[{\"type\":\"pid\"},{\"type\":\"network\",\"path\":\"/run/netns/x\"},{\"type\":\"mount\"}],"
        "\"uidMappings\":[{\"containerID\":0,\"hostID\":100000,\"size\":65536}],"
        "\"maskedPaths\":[\"/proc/kcore\"],\"readonlyPaths\":[\"/proc/sys\"],\"sysctl\":{\"net.ipv4.ip_forward\":\"1\"},"
        "\"resources\":{\"memory\":{\"limit\":67108864},\"pids\":{\"limit\":32},\"cpu\":{\"quota\":50000,\"period\":100000,\"shares\":512,\"cpus\":\"0-1,3\",\"mems\":\"0\"},"
        "\"devices\":[{\"allow\":false,\"access\":\"rwm\"},{\"allow\":true,\"type\":\"c\",\"major\":1,\"minor\":3,\"access\":\"rw\"}]},"
        "\"cgroupsPath\":\"/hm/x\",\"rootfsPropagation\":\"rshared\","
        "\"devices\":[{\"path\":\"/dev/fuse\",\"type\":\"c\",\"major\":10,\"minor\":229,\"fileMode\":438,\"uid\":0,\"gid\":5},"
        "{\"path\":\"/dev/tty9\",\"type\":\"u\",\"major\":4,\"minor\":9},{\"path\":\"/run/fifo\",\"type\":\"p\"}],"
        "\"seccomp\":{\"defaultAction\":\"SCMP_ACT_ERRNO\",\"defaultErrnoRet\":38,\"architectures\":[\"SCMP_ARCH_X86_64\"],"
        "\"syscalls\":[{\"names\":[\"read\",\"write\"],\"action\":\"SCMP_ACT_ALLOW\"},"
        "{\"names\":[\"clone\"],\"action\":\"SCMP_ACT_ALLOW\",\"args\":[{\"index\":0,\"value\":2114060288,\"valueTwo\":0,\"op\":\"SCMP_CMP_MASKED_EQ\"}]}]}}}";

static void test_full_parse(void)
{
        struct oci_spec *s = NULL;
        hm_error_t err = NULL;
        int r = oci_spec_parse(full_config, strlen(full_config), &s, &err);
        tap_ok(r == 0, "full config parses%s%s", err ? ": " : "", err ? err->msg : "");
        if (r < 0) {
                hm_error_release(&err);
                return;
        }
        tap_ok(s->process.user.uid == 1000 && s->process.user.gid == 100 && s->process.user.n_additional_gids == 2 &&
                       s->process.user.umask_present && s->process.user.umask == 18,
               "process.user");
        TAP_IS_STR(s->process.args[2], "echo hi", "process.args");
        TAP_IS_STR(s->process.env[1], "A=b=c", "process.env");
        tap_ok(s->process.capabilities.bounding == ((1u << CAP_CHOWN) | (1u << CAP_KILL)) &&
                       s->process.capabilities.effective == (1u << CAP_KILL) && !s->process.capabilities.ambient,
               "capabilities as bitmasks");
        tap_ok(s->process.n_rlimits == 2 && s->process.rlimits[0].type == RLIMIT_NOFILE &&
                       s->process.rlimits[0].soft == 512 && s->process.rlimits[1].hard == UINT64_MAX,
               "rlimits: names to RLIMIT_*, 2^64-1 kept");
        tap_ok(s->process.oom_score_adj_present && s->process.oom_score_adj == -500, "oomScoreAdj");
        tap_ok(s->root.readonly && !strcmp(s->root.path, "rootfs"), "root");
        tap_ok(s->n_mounts == 3 && !strcmp(s->mounts[1].source, "/srv"), "mounts");
        struct oci_mount_flags f;
        hm_error_t e2 = NULL;
        oci_mount_parse_options(s->mounts[1].options, &f, &e2);
        tap_ok(f.bind && f.recursive && f.flags == (MS_RDONLY | MS_NOSUID) && f.propagation == (MS_PRIVATE | MS_REC) && !f.data,
               "rbind,ro,nosuid,rprivate -> flags");
        oci_mount_flags_release(&f);
        oci_mount_parse_options(s->mounts[2].options, &f, &e2);
        tap_ok(f.flags == MS_NODEV && f.data && !strcmp(f.data, "mode=1777,size=1m"), "tmpfs options -> flags + data '%s'",
               f.data ? f.data : "");
        oci_mount_flags_release(&f);
        const struct oci_namespace *net = oci_spec_find_namespace(s, OCI_NS_NETWORK);
        tap_ok(net && net->path && !strcmp(net->path, "/run/netns/x") && !oci_spec_find_namespace(s, OCI_NS_USER),
               "namespaces with path");
        tap_ok(s->linux_.n_uid_mappings == 1 && s->linux_.uid_mappings[0].host_id == 100000, "uidMappings");
        const struct oci_resources *res = &s->linux_.resources;
        tap_ok(res->memory_limit == 67108864 && res->pids_limit == 32 && res->cpu_quota == 50000 && res->cpu_period == 100000 &&
                       res->cpu_shares == 512,
               "resources");
        tap_ok(res->cpu_cpus && !strcmp(res->cpu_cpus, "0-1,3") && res->cpu_mems && !strcmp(res->cpu_mems, "0"),
               "linux.resources.cpu.cpus/mems");
        const struct oci_device *dv = s->linux_.devices;
        tap_ok(s->linux_.n_devices == 3 && !strcmp(dv[0].path, "/dev/fuse") && dv[0].type == 'c' && dv[0].major == 10 &&
                       dv[0].minor == 229 && dv[0].file_mode_present && dv[0].file_mode == 0666 && dv[0].uid_present &&
                       dv[0].gid == 5 && dv[1].type == 'c' && !dv[1].file_mode_present && !dv[1].uid_present &&
                       dv[2].type == 'p',
               "linux.devices: nodes with mode/uid/gid, 'u' as 'c', a fifo");
        tap_ok(s->linux_.rootfs_propagation == (MS_SHARED | MS_REC), "linux.rootfsPropagation rshared");
        tap_ok(s->process.terminal && s->process.console_height == 24 && s->process.console_width == 80,
               "process.terminal and consoleSize");
        tap_ok(res->n_devices == 2 && res->devices[0].type == 'a' && res->devices[0].major == -1 &&
                       res->devices[1].type == 'c' && res->devices[1].minor == 3,
               "device rules with defaults");
        tap_ok(s->linux_.seccomp && s->linux_.seccomp->default_errno_ret == 38 && s->linux_.seccomp->n_syscalls == 2 &&
                       s->linux_.seccomp->syscalls[1].args[0].op == OCI_SECCOMP_OP_MASKED_EQ,
               "seccomp");
        tap_ok(s->n_annotations == 1 && s->hooks.n_hooks[OCI_HOOK_PRESTART] == 1 &&
                       s->hooks.hooks[OCI_HOOK_PRESTART][0].timeout == 5,
               "annotations kept, hooks parsed");

        /* round trip: text -> spec -> text -> spec -> text is stable */
        char *j1 = NULL, *j2 = NULL;
        oci_spec_to_json(s, false, &j1, &err);
        struct oci_spec *s2 = NULL;
        r = oci_spec_parse(j1, strlen(j1), &s2, &err);
        tap_ok(r == 0, "serialised config parses again%s%s", err ? ": " : "", err ? err->msg : "");
        if (r == 0)
                oci_spec_to_json(s2, false, &j2, &err);
        TAP_IS_STR(j2, j1, "round trip is stable");
        hm_error_release(&err);
        free(j1);
        free(j2);
        oci_spec_free(s2);
        oci_spec_free(s);
}

static void test_default(void)
{
        _cleanup_oci_spec_ struct oci_spec *s = oci_spec_new_default();
        char *json = NULL;
        hm_error_t err = NULL;
        tap_ok(oci_spec_to_json(s, true, &json, &err) == 0, "default spec serialises");
        struct oci_spec *back = NULL;
        int r = oci_spec_parse(json, strlen(json), &back, &err);
        tap_ok(r == 0, "default spec is valid%s%s", err ? ": " : "", err ? err->msg : "");
        char *again = NULL;
        if (back)
                oci_spec_to_json(back, true, &again, &err);
        TAP_IS_STR(again, json, "default spec round trip");
        TAP_IS_STR(s->process.args[0], "sh", "default args [sh]");
        tap_ok(s->process.no_new_privileges && s->process.capabilities.bounding == oci_default_capabilities() &&
                       !s->process.capabilities.inheritable && !s->process.capabilities.ambient,
               "default: noNewPrivileges, the container capability set");
        tap_ok(oci_default_capabilities() == 0xa80425fbULL, "default capability mask is Docker's (0xa80425fb)");
        tap_ok(oci_spec_find_namespace(s, OCI_NS_PID) && oci_spec_find_namespace(s, OCI_NS_NETWORK) &&
                       oci_spec_find_namespace(s, OCI_NS_MOUNT) && oci_spec_find_namespace(s, OCI_NS_IPC) &&
                       oci_spec_find_namespace(s, OCI_NS_UTS) && !oci_spec_find_namespace(s, OCI_NS_USER) == (geteuid() == 0),
               "default namespaces (user only when not root)");
        void *bpf = NULL;
        size_t len = 0;
        r = rt_seccomp_compile(s->linux_.seccomp, &bpf, &len, &err);
        tap_ok(r == 0 && len > 100 * 8, "default seccomp profile compiles to %zu BPF instructions%s%s", len / 8,
               err ? ": " : "", err ? err->msg : "");
        free(bpf);
        hm_error_release(&err);
        free(json);
        free(again);
        oci_spec_free(back);
}

static const struct {
        const char *json;
        const char *msg;
} bad[] = {
        { "{", "config.json: invalid JSON: parse error: premature EOF" },
        { "[]", "config.json: (root): not an object" },
        { "{" PROC ",\"root\":{\"path\":\"r\"}}", "config.json: ociVersion: missing" },
        { "{\"ociVersion\":\"2.0\"}", "config.json: ociVersion: version '2.0' not supported (want 1.x)" },
        { "{" BASE ",\"bogus\":1}", "config.json: bogus: unknown field" },
        { "{" BASE ",\"windows\":{}}", "config.json: windows: not supported" },
        { "{" BASE ",\"linux\":{\"intelRdt\":{}}}", "config.json: linux.intelRdt: not supported" },
        { "{\"ociVersion\":\"1.0.2\",\"process\":{\"args\":[\"sh\"],\"cwd\":\"/\",\"terminal\":1}}",
          "config.json: process.terminal: not a boolean" },
        { "{\"ociVersion\":\"1.0.2\",\"process\":{\"args\":[\"sh\"],\"cwd\":\"/\",\"consoleSize\":{\"height\":-1}}}",
          "config.json: process.consoleSize.height: not an unsigned integer" },
        { "{\"ociVersion\":\"1.0.2\",\"process\":{\"args\":[\"sh\"]}}", "config.json: process.cwd: missing" },
        { "{\"ociVersion\":\"1.0.2\",\"process\":{\"args\":[\"sh\"],\"cwd\":\"rel\"}}",
          "config.json: process.cwd: 'rel' is not an absolute path" },
        { "{\"ociVersion\":\"1.0.2\",\"process\":{\"args\":[\"sh\", 3],\"cwd\":\"/\"}}",
          "config.json: process.args[1]: not a string" },
        { "{\"ociVersion\":\"1.0.2\",\"process\":{\"args\":[\"sh\"],\"cwd\":\"/\",\"env\":[\"NOVALUE\"]}}",
          "config.json: process.env[0]: 'NOVALUE' is not KEY=VALUE" },
        { "{\"ociVersion\":\"1.0.2\",\"process\":{\"args\":[\"sh\"],\"cwd\":\"/\",\"rlimits\":["
          "{\"type\":\"RLIMIT_NOFILE\",\"hard\":1,\"soft\":1},{\"type\":\"RLIMIT_CORE\",\"hard\":1,\"soft\":1},"
          "{\"type\":\"RLIMIT_NPROC\",\"hard\":-1,\"soft\":1}]}}",
          "config.json: process.rlimits[2].hard: not an unsigned integer" },
        { "{\"ociVersion\":\"1.0.2\",\"process\":{\"args\":[\"sh\"],\"cwd\":\"/\",\"rlimits\":["
          "{\"type\":\"RLIMIT_BOGUS\",\"hard\":1,\"soft\":1}]}}",
          "config.json: process.rlimits[0].type: unknown rlimit 'RLIMIT_BOGUS'" },
        { "{\"ociVersion\":\"1.0.2\",\"process\":{\"args\":[\"sh\"],\"cwd\":\"/\",\"rlimits\":["
          "{\"type\":\"RLIMIT_CORE\",\"hard\":1.5,\"soft\":1}]}}",
          "config.json: process.rlimits[0].hard: not an unsigned integer" },
        { "{\"ociVersion\":\"1.0.2\",\"process\":{\"args\":[\"sh\"],\"cwd\":\"/\",\"rlimits\":["
          "{\"type\":\"RLIMIT_CORE\",\"hard\":1,\"soft\":2}]}}",
          "config.json: process.rlimits[0]: soft limit above hard limit" },
        { "{\"ociVersion\":\"1.0.2\",\"process\":{\"args\":[\"sh\"],\"cwd\":\"/\",\"capabilities\":{\"bounding\":[\"CAP_CHOWN\",\"CAP_FLY\"]}}}",
          "config.json: process.capabilities.bounding[1]: unknown capability 'CAP_FLY'" },
        { "{\"ociVersion\":\"1.0.2\",\"process\":{\"args\":[\"sh\"],\"cwd\":\"/\",\"user\":{\"uid\":0}}}",
          "config.json: process.user.gid: missing" },
        { "{\"ociVersion\":\"1.0.2\",\"process\":{\"args\":[\"sh\"],\"cwd\":\"/\",\"oomScoreAdj\":2000}}",
          "config.json: process.oomScoreAdj: 2000 out of range (-1000..1000)" },
        { "{\"ociVersion\":\"1.0.2\",\"process\":{\"args\":[\"sh\"],\"cwd\":\"/\",\"selinuxLabel\":\"x\"}}",
          "config.json: process.selinuxLabel: not supported" },
        { "{" BASE ",\"mounts\":[{\"destination\":\"/a\",\"type\":\"tmpfs\"},{\"destination\":\"b\"}]}",
          "config.json: mounts[1].destination: 'b' is not an absolute path" },
        { "{" BASE ",\"mounts\":[{\"destination\":\"/a\",\"type\":\"bind\",\"source\":\"/x\",\"options\":[\"rbind\",\"idmap\"]}]}",
          "config.json: mounts[0].options[1]: 'idmap' not supported" },
        { "{" BASE ",\"linux\":{\"namespaces\":[{\"type\":\"pid\"},{\"type\":\"pid\"}]}}",
          "config.json: linux.namespaces[1]: duplicate namespace 'pid'" },
        { "{" BASE ",\"linux\":{\"namespaces\":[{\"type\":\"galaxy\"}]}}",
          "config.json: linux.namespaces[0].type: unknown namespace type 'galaxy'" },
        { "{" BASE ",\"linux\":{\"resources\":{\"memory\":{\"limit\":\"1G\"}}}}",
          "config.json: linux.resources.memory.limit: not an integer" },
        { "{" BASE ",\"linux\":{\"resources\":{\"memory\":{\"swap\":1}}}}",
          "config.json: linux.resources.memory.swap: not supported" },
        { "{" BASE ",\"linux\":{\"resources\":{\"blockIO\":{\"weight\":0,\"leafWeight\":10}}}}",
          "config.json: linux.resources.blockIO: not supported" },
        { "{" BASE ",\"linux\":{\"resources\":{\"devices\":[{\"allow\":true,\"access\":\"rwx\"}]}}}",
          "config.json: linux.resources.devices[0].access: 'rwx' is not a subset of \"rwm\"" },
        { "{" BASE ",\"linux\":{\"seccomp\":{\"syscalls\":[]}}}", "config.json: linux.seccomp.defaultAction: missing" },
        { "{" BASE ",\"linux\":{\"seccomp\":{\"defaultAction\":\"SCMP_ACT_ALLOW\",\"syscalls\":[{\"names\":[\"x\"],\"action\":\"SCMP_ACT_NOTIFY\"}]}}}",
          "config.json: linux.seccomp.syscalls[0].action: action 'SCMP_ACT_NOTIFY' not supported" },
        { "{" BASE ",\"linux\":{\"seccomp\":{\"defaultAction\":\"SCMP_ACT_ALLOW\",\"syscalls\":[{\"names\":[\"x\"],\"action\":\"SCMP_ACT_ERRNO\","
          "\"args\":[{\"index\":6,\"value\":1,\"op\":\"SCMP_CMP_EQ\"}]}]}}}",
          "config.json: linux.seccomp.syscalls[0].args[0].index: 6 out of range (max 5)" },
        { "{" BASE ",\"linux\":{\"sysctl\":{\"net.ipv4.ip_forward\":1}}}",
          "config.json: linux.sysctl.net.ipv4.ip_forward: not a string" },
        { "{" BASE ",\"linux\":{\"rootfsPropagation\":\"sideways\"}}",
          "config.json: linux.rootfsPropagation: 'sideways' is not one of [r]private, [r]slave, [r]shared, [r]unbindable" },
        { "{" BASE ",\"linux\":{\"devices\":[{\"path\":\"/dev/fuse\"}]}}", "config.json: linux.devices[0].type: missing" },
        { "{" BASE ",\"linux\":{\"devices\":[{\"path\":\"dev/fuse\",\"type\":\"c\"}]}}",
          "config.json: linux.devices[0].path: 'dev/fuse' is not an absolute path" },
        { "{" BASE ",\"linux\":{\"devices\":[{\"path\":\"/dev/x\",\"type\":\"c\"},{\"path\":\"/dev/y\",\"type\":\"q\"}]}}",
          "config.json: linux.devices[1].type: 'q' is not one of c, u, b, p" },
        { "{" BASE ",\"linux\":{\"devices\":[{\"path\":\"/dev/x\",\"type\":\"c\",\"major\":-1}]}}",
          "config.json: linux.devices[0].major: -1 out of range (0..4294967295)" },
        { "{" BASE ",\"linux\":{\"devices\":[{\"path\":\"/dev/x\",\"type\":\"c\",\"fileMode\":65535}]}}",
          "config.json: linux.devices[0].fileMode: 65535 out of range (max 4095)" },
        { "{" BASE ",\"linux\":{\"resources\":{\"cpu\":{\"cpus\":\"0-\"}}}}",
          "config.json: linux.resources.cpu.cpus: '0-' is not a list like \"0-3,5\"" },
        { "{" BASE ",\"linux\":{\"resources\":{\"cpu\":{\"mems\":\"all\"}}}}",
          "config.json: linux.resources.cpu.mems: 'all' is not a list like \"0-3,5\"" },
        { "{" BASE ",\"linux\":{\"resources\":{\"cpu\":{\"realtimeRuntime\":1}}}}",
          "config.json: linux.resources.cpu.realtimeRuntime: not supported" },
        { "{" BASE ",\"hooks\":{\"prestart\":[{\"path\":\"rel\"}]}}",
          "config.json: hooks.prestart[0].path: 'rel' is not an absolute path" },
        { "{" BASE ",\"hostname\":\"a\",\"hostname\":\"b\"}", "config.json: hostname: duplicate key" },
        { "{" BASE ",\"annotations\":{\"a\":1}}", "config.json: annotations.a: not a string" },
        { "{" BASE ",\"linux\":{\"uidMappings\":[{\"containerID\":0,\"hostID\":4294967296,\"size\":1}]}}",
          "config.json: linux.uidMappings[0].hostID: 4294967296 out of range (max 4294967295)" },
};

static void test_refused(void)
{
        for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
                struct oci_spec *s = NULL;
                hm_error_t err = NULL;
                int r = oci_spec_parse(bad[i].json, strlen(bad[i].json), &s, &err);
                if (r >= 0) {
                        tap_ok(false, "refused #%zu: %s", i, bad[i].msg);
                        oci_spec_free(s);
                        continue;
                }
                TAP_IS_STR(err->msg, bad[i].msg, "refused #%zu with its path", i);
                hm_error_release(&err);
        }
}

static void test_accepted_empty(void)
{
        static const char json[] = "{" BASE ",\"domainname\":\"\",\"linux\":{\"mountLabel\":\"\",\"devices\":[],"
                                   "\"resources\":{\"cpu\":{\"cpus\":\"\",\"shares\":0},\"blockIO\":{\"weight\":0}}}}";
        struct oci_spec *s = NULL;
        hm_error_t err = NULL;
        tap_ok(oci_spec_parse(json, strlen(json), &s, &err) == 0, "unsupported fields holding empty values are accepted%s%s",
               err ? ": " : "", err ? err->msg : "");
        tap_ok(s && !s->linux_.resources.cpu_shares_present && !s->linux_.resources.cpu_cpus,
               "Docker's zeros (cpu.shares 0, blockIO.weight 0, cpus \"\") mean unset");
        hm_error_release(&err);
        oci_spec_free(s);
}

/* OCI exec --process FILE: a process object alone replaces spec->process, or leaves it untouched */
static void test_replace_process(void)
{
        struct oci_spec *s = oci_spec_new_default();
        hm_error_t err = NULL;
        static const char ok[] = "{\"args\":[\"ls\",\"-l\"],\"env\":[\"A=b\"],\"cwd\":\"/tmp\",\"terminal\":true,"
                                 "\"user\":{\"uid\":5,\"gid\":6,\"additionalGids\":[7]},\"noNewPrivileges\":true,"
                                 "\"capabilities\":{\"bounding\":[\"CAP_KILL\"]},\"apparmorProfile\":\"\"}";
        int r = oci_spec_replace_process(s, ok, strlen(ok), "p.json", &err);
        tap_ok(r == 0, "a process object is accepted%s%s", err ? ": " : "", err ? err->msg : "");
        tap_ok(r == 0 && !strcmp(s->process.args[1], "-l") && !strcmp(s->process.env[0], "A=b") && !s->process.env[1] &&
                       !strcmp(s->process.cwd, "/tmp") && s->process.terminal && s->process.user.uid == 5 &&
                       s->process.user.gid == 6 && s->process.user.n_additional_gids == 1 &&
                       s->process.capabilities.bounding == UINT64_C(1) << CAP_KILL && s->process_present,
               "it replaces args, env, cwd, terminal, user and capabilities");
        hm_error_release(&err);
        static const char *const bad_process[][2] = {
                { "{\"args\":[\"x\"],\"cwd\":\"rel\"}", "p.json: cwd: 'rel' is not an absolute path" },
                { "{\"args\":[\"x\"],\"cwd\":\"/\",\"bogus\":1}", "p.json: bogus: unknown field" },
                { "{\"cwd\":\"/\"}", "p.json: args: missing" },
                { "[1]", "p.json: (root): not an object" },
                { "{", "p.json: invalid JSON" },
        };
        for (size_t i = 0; i < ARRAY_SIZE(bad_process); i++) {
                const char *json = bad_process[i][0], *want = bad_process[i][1];
                r = oci_spec_replace_process(s, json, strlen(json), "p.json", &err);
                tap_ok(r < 0 && err && str_has_prefix(err->msg, want), "refused #%zu: %s (got: %s)", i, want,
                       err ? err->msg : "accepted");
                hm_error_release(&err);
        }
        tap_ok(!strcmp(s->process.args[0], "ls") && !strcmp(s->process.cwd, "/tmp"), "a refused one leaves the process as it was");
        oci_spec_free(s);
}

int main(void)
{
        test_replace_process();
        test_full_parse();
        test_default();
        test_refused();
        test_accepted_empty();
        return tap_done();
}
