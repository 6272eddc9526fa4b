/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Owner labels and their judgement across pid namespaces (see oci/owner.h).
 */
#include <ctype.h>
#include <errno.h>
#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/handles.h"
#include "lib/util.h"
#include "oci/owner.h"
#include "oci/store.h"

uint64_t owner_self_pidns(void)
{
        struct stat st;
        return stat("/proc/self/ns/pid", &st) == 0 ? (uint64_t) st.st_ino : 0;
}

const char *owner_self_boot(void)
{
        static char boot[40];
        static bool read_once;
        if (!read_once) {
                _cleanup_free_ char *s = NULL;
                read_once = true;
                if (read_file("/proc/sys/kernel/random/boot_id", 4096, &s, NULL) >= 0) {
                        size_t n = strspn(s, "0123456789abcdef-");
                        if (n > 0 && n < sizeof boot)
                                memcpy(boot, s, n);
                }
        }
        return boot;
}

void owner_self(struct hm_owner *ret)
{
        *ret = (struct hm_owner){ .pid = (int) getpid(), .start = oci_proc_starttime(0),
                                  .pidns = owner_self_pidns() };
        snprintf(ret->boot, sizeof ret->boot, "%s", owner_self_boot());
}

char *owner_self_label(void)
{
        struct hm_owner o;
        owner_self(&o);
        return xasprintf("%d:%" PRIu64 ":%" PRIu64 ":%s", o.pid, o.start, o.pidns, o.boot);
}

bool owner_parse(const char *label, struct hm_owner *ret)
{
        struct hm_owner o = { 0 };
        unsigned long long start = 0, ns = 0;
        int n = 0;
        if (!label || sscanf(label, "%d:%llu%n", &o.pid, &start, &n) != 2 || o.pid <= 0 || start == 0)
                return false;
        const char *rest = label + n;
        if (*rest) {
                /* ":<pidns>:<boot id>" (the boot id may be empty when it was unreadable) */
                int m = 0;
                if (sscanf(rest, ":%llu:%n", &ns, &m) != 1 || m == 0 || ns == 0)
                        return false;
                rest += m;
                size_t len = strspn(rest, "0123456789abcdef-");
                if (rest[len] || len >= sizeof o.boot)
                        return false;
                memcpy(o.boot, rest, len);
        }
        o.start = start;
        o.pidns = ns;
        *ret = o;
        return true;
}

/*
 * The pid a process has in its own (innermost) pid namespace: the last field
 * of NSpid; 0 unknown.  *ret_depth (may be NULL): how many fields (the
 * nesting depth of its pid namespace as seen from this /proc).
 */
static int innermost_pid(const char *proc_dir, int *ret_depth)
{
        _cleanup_free_ char *path = xasprintf("%s/status", proc_dir), *st = NULL;
        if (read_file(path, 1 << 16, &st, NULL) < 0)
                return 0;
        const char *p = strstr(st, "\nNSpid:");
        if (!p)
                return 0;
        p += 7;
        int last = 0, depth = 0;
        for (;;) {
                char *end;
                long v = strtol(p, &end, 10);
                if (end == p)
                        break;
                last = (int) v;
                depth++;
                p = end;
        }
        if (ret_depth)
                *ret_depth = depth;
        return last;
}

/*
 * Look for pid namespace `ns` among our /proc: 1 the owner is a live process
 * of it, 0 the namespace is there but the owner is not, -1 no process of it
 * is visible.
 */
static int scan_pidns(const struct hm_owner *o, bool *ret_hidden)
{
        _cleanup_closedir_ DIR *d = opendir("/proc");
        struct dirent *de;
        bool seen = false;
        int self_depth = 0;
        *ret_hidden = !d;
        (void) innermost_pid("/proc/self", &self_depth);
        while (d && (de = readdir(d))) {
                if (!isdigit((unsigned char) de->d_name[0]))
                        continue;
                char path[300];
                struct stat st;
                snprintf(path, sizeof path, "/proc/%s/ns/pid", de->d_name);
                if (stat(path, &st) < 0) {
                        /*
                         * Gone meanwhile, or not ours to look at (ptrace access, e.g. a
                         * non-dumpable process): one as deep as we are is in our own pid
                         * namespace (a process of a child namespace has more NSpid
                         * fields), else we do not see all.
                         */
                        int depth = 0;
                        snprintf(path, sizeof path, "/proc/%s", de->d_name);
                        if (errno != ENOENT && errno != ESRCH &&
                            (innermost_pid(path, &depth) == 0 || depth != self_depth || !self_depth))
                                *ret_hidden = true;
                        continue;
                }
                if ((uint64_t) st.st_ino != o->pidns)
                        continue;
                seen = true;
                snprintf(path, sizeof path, "/proc/%s", de->d_name);
                int host_pid = (int) strtol(de->d_name, NULL, 10); /* /proc entries starting with a digit are pids */
                if (innermost_pid(path, NULL) == o->pid && oci_proc_starttime(host_pid) == o->start)
                        return 1;
        }
        return seen ? 0 : -1;
}

enum owner_state owner_judge(const struct hm_owner *o, const char **ret_why)
{
        const char *why_dummy;
        const char **why = ret_why ? ret_why : &why_dummy;
        const char *boot = owner_self_boot();
        if (o->boot[0] && boot[0] && strcmp(o->boot, boot) != 0) {
                *why = "dead (before the last reboot)";
                return OWNER_DEAD;
        }
        uint64_t self_ns = owner_self_pidns();
        if (o->pidns == 0 || o->pidns == self_ns) {
                bool alive = oci_proc_starttime(o->pid) == o->start;
                *why = alive ? "alive" : "dead";
                return alive ? OWNER_ALIVE : OWNER_DEAD;
        }
        bool hidden = false;
        int r = scan_pidns(o, &hidden);
        if (r > 0) {
                *why = "alive (in another pid namespace)";
                return OWNER_ALIVE;
        }
        if (r == 0) {
                *why = "dead (its pid namespace has no such process)";
                return OWNER_DEAD;
        }
        /* root in the initial pid namespace sees every process: no process is left in that namespace */
        if (self_ns == OWNER_INIT_PIDNS && geteuid() == 0 && !hidden) {
                *why = "dead (its pid namespace is gone)";
                return OWNER_DEAD;
        }
        *why = "in another pid namespace, not visible from here";
        return OWNER_FOREIGN;
}
