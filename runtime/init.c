/* SPDX-License-Identifier: Apache-2.0 */
/*
 * pid 1 of the container (bubblewrap's do_init, tini's job).  It runs our
 * code only, never execs, so it gets no seccomp filter; it keeps nothing of
 * the caller: every fd is closed (including the sync fd, so the parent sees
 * EOF only when the command execs), every capability but CAP_KILL is
 * dropped (the bounding set emptied), with no_new_privs set, and it is not
 * dumpable, so the command cannot reach it through ptrace or /proc/1.  The
 * command waits for all of that before its exec (EOF on a pipe whose write
 * end pid 1 closes last).
 *
 * Every signal sent to it (but SIGCHLD; SIGKILL/SIGSTOP cannot be caught)
 * is forwarded to the command.  Signals stay blocked and are taken with
 * sigwaitinfo(): a blocked signal is never discarded, not even for a
 * namespace's init (kernel sig_ignored()), so forwarding works without
 * handlers.
 */
#include "runtime/init.h"

#include <errno.h>
#include <linux/capability.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runtime/syscalls.h"


/*
 * Non-dumpable: the command (same uid) can then neither ptrace us (we run
 * without the command's seccomp filter) nor open /proc/1/exe, /proc/1/mem
 * or /proc/1/root: /proc/1/exe is hm's binary on the host (CVE-2019-5736
 * class).  The bounding set is emptied while CAP_SETPCAP is still held.
 */
static void drop_privileges(void)
{
        (void) prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
        for (int cap = 0; cap < 64; cap++)
                if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno == EINVAL)
                        break;
        struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
        struct __user_cap_data_struct d[2] = { { 1u << CAP_KILL, 1u << CAP_KILL, 0 }, { 0, 0, 0 } };
        (void) rt_capset(&h, d);
        (void) prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
}

static int status_to_code(int st)
{
        if (WIFEXITED(st))
                return WEXITSTATUS(st);
        if (WIFSIGNALED(st))
                return 128 + WTERMSIG(st);
        return 255;
}

/* Reap everything that has exited; returns true once main_pid is among them. */
static bool reap(pid_t main_pid, int *code)
{
        bool done = false;
        int st;
        pid_t pid;
        while ((pid = waitpid(-1, &st, WNOHANG)) > 0)
                if (pid == main_pid) {
                        *code = status_to_code(st);
                        done = true;
                }
        return done;
}

_Noreturn void rt_init_run(pid_t main_pid, bool subreaper)
{
        if (subreaper)
                (void) prctl(PR_SET_CHILD_SUBREAPER, 1);
        (void) prctl(PR_SET_NAME, "hm-init");
        drop_privileges();
        /*
         * After the drop: closing our end of the "ready" pipe tells the
         * command (child.c, before exec) that pid 1 holds nothing any more.
         */
        if (rt_close_range(0, ~0U, 0) < 0) {
                /* before 5.9: one by one, up to the fd limit (--preserve-fds can push the pipe past 1024) */
                struct rlimit rl;
                int max = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (1u << 20) ? (int) rl.rlim_cur : 1 << 20;
                for (int fd = 0; fd < max; fd++)
                        close(fd);
        }

        /* every signal but SIGCHLD is forwarded (OCI kill sends any signal to this pid) */
        sigset_t set;
        sigfillset(&set);
        int code = 255;
        for (;;) {
                if (reap(main_pid, &code))
                        _exit(code);
                siginfo_t si;
                int sig = sigwaitinfo(&set, &si);
                if (sig > 0 && sig != SIGCHLD)
                        kill(main_pid, sig);
        }
}
