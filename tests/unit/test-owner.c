/* SPDX-License-Identifier: Apache-2.0 */
/*
 * oci/owner.h: label forms and the judgement across pid namespaces.  The
 * cross-namespace cases need root (a child in a new pid namespace); skipped
 * otherwise.
 */
#include <dirent.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/handles.h"
#include "lib/util.h"
#include "oci/owner.h"
#include "oci/store.h"
#include "tap.h"

static enum owner_state judge(const char *label)
{
        struct hm_owner o;
        if (!owner_parse(label, &o))
                return (enum owner_state) -1;
        return owner_judge(&o, NULL);
}

int main(void)
{
        tap_plan_later();
        struct hm_owner o;
        char buf[256];

        /* forms */
        tap_ok(owner_parse("4242:81234", &o) && o.pid == 4242 && o.start == 81234 && !o.pidns && !o.boot[0],
               "old label <pid>:<start> parses, no namespace recorded");
        tap_ok(owner_parse("7:99:4026532451:0b6e2c1a-1111-2222-3333-444455556666", &o) && o.pid == 7 &&
                       o.start == 99 && o.pidns == 4026532451ULL && strcmp(o.boot, "0b6e2c1a-1111-2222-3333-444455556666") == 0,
               "new label <pid>:<start>:<pidns>:<boot> parses");
        tap_ok(owner_parse("7:99:4026532451:", &o) && o.pidns == 4026532451ULL && !o.boot[0],
               "new label with an empty boot id parses");
        const char *bad[] = { "", "x", "7", "7:", "0:5", "7:0", "7:5:", "7:5:x:y", "7:5:0:ab", "7:5:12:ZZ", "7:5:12:ab:cd" };
        for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
                tap_ok(!owner_parse(bad[i], &o), "malformed label '%s' refused", bad[i]);

        /* self */
        char *self = owner_self_label();
        tap_ok(owner_parse(self, &o) && o.pid == getpid() && o.pidns == owner_self_pidns() && o.pidns != 0,
               "own label %s round-trips", self);
        tap_ok(judge(self) == OWNER_ALIVE, "own label judged alive");
        snprintf(buf, sizeof buf, "%d:%llu", (int) getpid(), (unsigned long long) oci_proc_starttime(getpid()));
        tap_ok(judge(buf) == OWNER_ALIVE, "old form of own label judged alive (own namespace)");
        snprintf(buf, sizeof buf, "%d:%llu:%llu:%s", (int) getpid(), (unsigned long long) oci_proc_starttime(getpid()) + 1,
                 (unsigned long long) owner_self_pidns(), owner_self_boot());
        tap_ok(judge(buf) == OWNER_DEAD, "own pid with another start time judged dead");
        if (owner_self_boot()[0]) {
                snprintf(buf, sizeof buf, "%d:%llu:%llu:00000000-0000-0000-0000-000000000000", (int) getpid(),
                         (unsigned long long) oci_proc_starttime(getpid()), (unsigned long long) owner_self_pidns());
                tap_ok(judge(buf) == OWNER_DEAD, "own pid and start time under another boot id judged dead");
        }
        free(self);

        /*
         * Another pid namespace: a grandchild, pid 1 of a new one.  The middle
         * child unshares, so that this process keeps forking normally (LeakSanitizer
         * clones at exit, which a dead pid namespace for children would refuse).
         */
        if (geteuid() != 0) {
                tap_diag("skip: cross-namespace cases need root (unshare(CLONE_NEWPID))");
                return tap_done();
        }
        char store_dir[] = "/tmp/hm-test-owner-XXXXXX";
        hm_error_t err = NULL;
        struct oci_store *store = NULL;
        if (!mkdtemp(store_dir) || oci_store_open(store_dir, &store, &err) < 0)
                return 1;
        int p[2], q[2];
        if (pipe(p) < 0 || pipe(q) < 0)
                return 1;
        pid_t middle = fork();
        if (middle == 0) {
                close(p[0]);
                if (unshare(CLONE_NEWPID) < 0)
                        _exit(1);
                pid_t child = fork();
                if (child == 0) {
                        /* a store tmp dir of its own, named with its pid, start time and namespace */
                        char *dir = NULL;
                        hm_error_t e = NULL;
                        if (oci_store_mkdtemp(store, "probe", &dir, &e) < 0)
                                _exit(1);
                        char *l = owner_self_label();
                        (void) !write(p[1], l, strlen(l) + 1);
                        close(p[1]);
                        pause();
                        _exit(0);
                }
                close(p[1]);
                (void) !write(q[1], &child, sizeof child);
                waitpid(child, NULL, 0);
                _exit(0);
        }
        pid_t child = -1;
        close(q[1]);
        (void) !read(q[0], &child, sizeof child);
        close(q[0]);
        close(p[1]);
        char label[256] = "";
        ssize_t n = read(p[0], label, sizeof label - 1);
        close(p[0]);
        tap_ok(n > 0 && owner_parse(label, &o) && o.pid == 1 && o.pidns != owner_self_pidns(),
               "a child in a new pid namespace labels itself pid 1 there: %s", label);
        tap_ok(judge(label) == OWNER_ALIVE, "it is judged alive from the parent namespace (found through /proc/*/ns/pid)");
        /* control: the same pid and start time read as our own namespace: pid 1 here is another process */
        snprintf(buf, sizeof buf, "%d:%llu", o.pid, (unsigned long long) o.start);
        tap_ok(judge(buf) == OWNER_DEAD, "control: the old label form (pid 1 in our namespace) would judge it dead");
        snprintf(buf, sizeof buf, "2:%llu:%llu:%s", (unsigned long long) o.start, (unsigned long long) o.pidns, o.boot);
        tap_ok(judge(buf) == OWNER_DEAD, "another pid of that live namespace judged dead");

        /* the store judges its tmp/ names the same way */
        char **removed = NULL;
        int r = oci_store_reap(store, true, &removed, &err);
        tap_ok(r == 0 && strv_len(removed) == 0, "store reap keeps the live child's tmp dir (%zu listed)", strv_len(removed));
        strv_free(removed);
        removed = NULL;
        /* control: the same dir named the old way (no p<pidns>) is judged in our namespace: dead */
        _cleanup_free_ char *tmpdir = xasprintf("%s/tmp", store_dir);
        _cleanup_closedir_ DIR *d = opendir(tmpdir);
        struct dirent *de;
        _cleanup_free_ char *old_name = NULL, *new_name = NULL;
        while (d && (de = readdir(d)))
                if (str_has_prefix(de->d_name, "probe-")) {
                        new_name = xasprintf("%s/%s", tmpdir, de->d_name);
                        const char *pns = strstr(de->d_name, "-p");
                        const char *rest = pns ? strchr(pns + 2, '-') : NULL;
                        if (rest)
                                old_name = xasprintf("%s/%.*s%s", tmpdir, (int) (pns - de->d_name), de->d_name, rest);
                }
        tap_ok(old_name && rename(new_name, old_name) == 0 && oci_store_reap(store, true, &removed, &err) == 0 &&
                       strv_len(removed) == 1,
               "control: named the old way (%s), the live child's tmp dir would be reaped", old_name ? old_name : "?");
        strv_free(removed);
        removed = NULL;
        if (old_name)
                (void) rename(old_name, new_name);
        if (child > 0)
                kill(child, SIGKILL);
        waitpid(middle, NULL, 0);
        enum owner_state gone = judge(label);
        bool init_ns = owner_self_pidns() == OWNER_INIT_PIDNS;
        if (init_ns)
                tap_ok(gone == OWNER_DEAD, "after it died, root in the initial pid namespace judges it dead (namespace gone)");
        else
                tap_ok(gone == OWNER_FOREIGN, "after it died, a judge outside the initial pid namespace cannot tell: foreign");
        r = oci_store_reap(store, false, &removed, &err);
        tap_ok(r == 0 && strv_len(removed) == (init_ns ? 1 : 0), "store reap then %s its tmp dir",
               init_ns ? "removes" : "keeps");
        strv_free(removed);
        removed = NULL;

        /*
         * A foreign owner: a pid namespace nobody can find (inode 999).  A judge
         * outside the initial pid namespace (pid 1 of a new one) keeps its dir and
         * lists it as left; root in the initial one knows it is gone.
         */
        _cleanup_free_ char *foreign = xasprintf("%s/tmp/probe-5-123-p999-abcd", store_dir);
        (void) mkdir(foreign, 0700);
        int rp[2];
        if (pipe(rp) < 0)
                return 1;
        middle = fork();
        if (middle == 0) {
                if (unshare(CLONE_NEWPID) < 0)
                        _exit(1);
                pid_t judge_pid = fork();
                if (judge_pid == 0) {
                        char **rm = NULL, **lf = NULL;
                        hm_error_t e = NULL;
                        int counts[2] = { -1, -1 };
                        if (oci_store_reap_full(store, true, &rm, &lf, &e) == 0) {
                                counts[0] = (int) strv_len(rm);
                                counts[1] = (int) strv_len(lf);
                                for (size_t i = 0; lf && lf[i]; i++)
                                        tap_diag("judge in a new pid namespace: left %s", lf[i]);
                        }
                        (void) !write(rp[1], counts, sizeof counts);
                        _exit(0);
                }
                waitpid(judge_pid, NULL, 0);
                _exit(0);
        }
        close(rp[1]);
        int counts[2] = { -1, -1 };
        (void) !read(rp[0], counts, sizeof counts);
        close(rp[0]);
        waitpid(middle, NULL, 0);
        tap_ok(counts[0] == 0 && counts[1] == 1,
               "a judge in another pid namespace keeps the dir of an owner it cannot see and lists it as left "
               "(removed %d, left %d)", counts[0], counts[1]);
        char **left = NULL;
        r = oci_store_reap_full(store, true, &removed, &left, &err);
        if (init_ns)
                tap_ok(r == 0 && strv_len(removed) == 1 && strv_len(left) == 0,
                       "control: root in the initial pid namespace judges the same owner dead (namespace gone)");
        else
                tap_ok(r == 0 && strv_len(removed) == 0 && strv_len(left) == 1,
                       "outside the initial pid namespace this process cannot tell either: left");
        strv_free(removed);
        strv_free(left);
        hm_error_release(&err);
        oci_store_free(store);
        rm_rf(store_dir);
        return tap_done();
}
