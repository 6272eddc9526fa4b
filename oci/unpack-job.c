/* SPDX-License-Identifier: Apache-2.0 */
#include "oci/unpack-job.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "lib/util.h"
#include "oci/manifest.h"
#include "oci/store.h"
#include "sched/loop.h"

#define MSG_MAX 4096

struct oci_unpack_job {
        struct hm_loop *loop;
        pid_t pid;  /* 0 once reaped */
        int pidfd;  /* on the loop until the child is reaped */
        int msg_fd; /* on the loop until EOF */
        char msg[MSG_MAX];
        size_t n_msg;
        oci_unpack_done_fn done;
        void *data;
};

pid_t oci_unpack_job_pid(const struct oci_unpack_job *j) { return j->pid; }

static int sys_pidfd_open(pid_t pid)
{
#ifdef SYS_pidfd_open
        return (int) syscall(SYS_pidfd_open, pid, 0);
#else
        errno = ENOSYS;
        return -1;
#endif
}

static int sys_pidfd_kill(int pidfd)
{
#ifdef SYS_pidfd_send_signal
        if (pidfd >= 0)
                return (int) syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
#endif
        errno = ENOSYS;
        return -1;
}

static int sys_close_range(unsigned first, unsigned last)
{
#ifdef SYS_close_range
        return (int) syscall(SYS_close_range, first, last, 0);
#else
        errno = ENOSYS;
        return -1;
#endif
}

/* ------------------------------------------------------------ the child */

static void close_fds(unsigned first, unsigned last)
{
        if (sys_close_range(first, last) == 0)
                return;
        struct rlimit rl;
        unsigned max = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (1u << 20) ? (unsigned) rl.rlim_cur : 1u << 20;
        for (unsigned fd = first; fd <= last && fd < max; fd++)
                (void) close((int) fd);
}

/* Close every fd >= 3 but a and b. */
static void close_all_but(int a, int b)
{
        unsigned keep[2] = { (unsigned) (a < b ? a : b), (unsigned) (a < b ? b : a) };
        unsigned first = 3;
        for (int i = 0; i < 3; i++) {
                if (i < 2 && keep[i] < first)
                        continue;
                unsigned last = i < 2 ? keep[i] - 1 : ~0U;
                if (first <= last)
                        close_fds(first, last);
                if (i < 2)
                        first = keep[i] + 1;
        }
}

static void report(int fd, int r, const struct hm_error *e, uint64_t bytes)
{
        char line[MSG_MAX];
        int n = r < 0 ? snprintf(line, sizeof line, "%d %s", e ? e->code : 0, e ? e->msg : "unknown error")
                      : snprintf(line, sizeof line, "ok %llu", (unsigned long long) bytes);
        size_t len = n < 0 ? 0 : (size_t) n < sizeof line ? (size_t) n : sizeof line - 1;
        for (size_t i = 0; i < len; i++) /* one line, whatever libarchive said */
                if (line[i] == '\n' || line[i] == '\r')
                        line[i] = ' ';
        (void) write_all(fd, line, len);
}

static _Noreturn void child_run(const struct oci_unpack_args *a, int blob_fd, int msg_fd, pid_t parent)
{
        (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) /* hm died before the line above */
                _exit(127);
        close_all_but(blob_fd, msg_fd);
        (void) prctl(PR_SET_NAME, "hm-unpack"); /* after the close: test-unpack-job counts the fds then */
        hm_error_t err = NULL;
        struct oci_unpack_stats st = { 0 };
        char hex[65];
        int r = oci_digest_fd(blob_fd, true, a->size_limit, hex, &err);
        const char *want = oci_digest_hex(a->diff_id);
        if (r >= 0 && (!want || strcmp(hex, want)))
                r = hm_error_set(&err, EBADMSG, "uncompressed digest sha256:%s does not match the config's diff_id %s",
                                 hex, a->diff_id);
        if (r >= 0)
                r = oci_unpack_layer(blob_fd, a->dir, a->xattr_prefix, a->size_limit, &st, &err);
        (void) unlink(a->blob);
        report(msg_fd, r, err, st.bytes);
        _exit(r < 0 ? 1 : 0); /* no atexit handlers, no stdio flush: those are the parent's */
}

/* ------------------------------------------------------------ the parent */

static void read_msg(struct oci_unpack_job *j, bool *ret_eof)
{
        *ret_eof = false;
        for (;;) {
                char sink[512];
                bool full = j->n_msg >= sizeof j->msg - 1;
                ssize_t n = full ? read(j->msg_fd, sink, sizeof sink)
                                 : read(j->msg_fd, j->msg + j->n_msg, sizeof j->msg - 1 - j->n_msg);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno != EAGAIN)
                        *ret_eof = true;
                if (n == 0)
                        *ret_eof = true;
                if (n <= 0)
                        return;
                if (!full)
                        j->n_msg += (size_t) n;
        }
}

static void msg_close(struct oci_unpack_job *j)
{
        if (j->msg_fd < 0)
                return;
        hm_loop_del_fd(j->loop, j->msg_fd);
        j->msg_fd = safe_close(j->msg_fd);
}

static void on_msg(struct hm_loop *loop, int fd, short revents, void *data)
{
        struct oci_unpack_job *j = data;
        bool eof;
        read_msg(j, &eof);
        if (eof) /* the rest is read when the child has exited */
                hm_loop_del_fd(loop, fd);
}

/* 1 reaped, 0 still running (WNOHANG), -errno */
static int wait_child(struct oci_unpack_job *j, siginfo_t *si, int flags)
{
        int r;
        memset(si, 0, sizeof *si);
        do
                r = j->pidfd >= 0 ? waitid((idtype_t) P_PIDFD, (id_t) j->pidfd, si, WEXITED | flags)
                                  : waitid(P_PID, (id_t) j->pid, si, WEXITED | flags);
        while (r < 0 && errno == EINTR);
        if (r < 0)
                return -errno;
        if (si->si_pid == 0)
                return 0;
        j->pid = 0;
        return 1;
}

static int outcome(struct oci_unpack_job *j, const siginfo_t *si, uint64_t *ret_bytes, hm_error_t *err)
{
        j->msg[j->n_msg] = 0;
        if (si->si_code == CLD_EXITED && si->si_status == 0 && !strncmp(j->msg, "ok ", 3)) {
                *ret_bytes = strtoull(j->msg + 3, NULL, 10);
                return 0;
        }
        char *text = NULL;
        long code = strtol(j->msg, &text, 10);
        if (si->si_code == CLD_EXITED && text != j->msg && *text == ' ' && text[1])
                return hm_error_set(err, code > 0 && code < 4096 ? (int) code : EIO, "%s", text + 1);
        if (si->si_code == CLD_KILLED || si->si_code == CLD_DUMPED)
                return hm_error_set(err, EINTR, "the unpack process was killed by signal %d (%s)", si->si_status,
                                    strsignal(si->si_status));
        return hm_error_set(err, EIO, "the unpack process exited with status %d without a report", si->si_status);
}

static void on_exit_ready(struct hm_loop *loop, int fd, short revents, void *data)
{
        struct oci_unpack_job *j = data;
        siginfo_t si;
        hm_error_t e = NULL;
        uint64_t bytes = 0;
        int r = wait_child(j, &si, WNOHANG);
        if (r == 0)
                return; /* not exited after all */
        hm_loop_del_fd(loop, fd);
        j->pidfd = safe_close(j->pidfd);
        if (r < 0) {
                j->pid = 0;
                r = hm_error_set(&e, -r, "wait for the unpack process: %s", strerror(-r));
        } else {
                bool eof;
                if (j->msg_fd >= 0)
                        read_msg(j, &eof); /* all it wrote is in the pipe now */
                r = outcome(j, &si, &bytes, &e);
        }
        msg_close(j);
        j->done(j->data, r, &e, bytes); /* last: it may free j */
        hm_error_release(&e);
}

int oci_unpack_job_start(struct hm_loop *loop, const struct oci_unpack_args *a, oci_unpack_done_fn done, void *data,
                         struct oci_unpack_job **ret, hm_error_t *err)
{
        _cleanup_close_ int blob_fd = open(a->blob, O_RDONLY | O_CLOEXEC);
        if (blob_fd < 0)
                return hm_error_set(err, errno, "open '%s': %s", a->blob, strerror(errno));
        int p[2];
        if (pipe2(p, O_CLOEXEC) < 0)
                return hm_error_set(err, errno, "pipe: %s", strerror(errno));
        _cleanup_close_ int rd = p[0];
        _cleanup_close_ int wr = p[1];
        if (fcntl(rd, F_SETFL, O_NONBLOCK) < 0)
                return hm_error_set(err, errno, "pipe: %s", strerror(errno));
        pid_t parent = getpid();
        pid_t pid = fork();
        if (pid < 0)
                return hm_error_set(err, errno, "fork the unpack process: %s", strerror(errno));
        if (pid == 0)
                child_run(a, blob_fd, wr, parent);
        struct oci_unpack_job *j = xzalloc(sizeof *j);
        j->loop = loop;
        j->pid = pid;
        j->msg_fd = TAKE_FD(rd);
        j->done = done;
        j->data = data;
        /* our own child, not reaped yet: its pid cannot have been reused */
        j->pidfd = sys_pidfd_open(pid);
        int r = j->pidfd < 0 ? hm_error_set(err, errno, "pidfd_open of the unpack process: %s (Linux 5.3 or later is needed)",
                                            strerror(errno))
                             : hm_loop_add_fd(loop, j->pidfd, POLLIN, on_exit_ready, j, err);
        if (r >= 0)
                r = hm_loop_add_fd(loop, j->msg_fd, POLLIN, on_msg, j, err);
        if (r < 0) {
                oci_unpack_job_free(j);
                return r;
        }
        *ret = j;
        return 0;
}

void oci_unpack_job_free(struct oci_unpack_job *j)
{
        if (!j)
                return;
        if (j->pid > 0) {
                siginfo_t si;
                if (sys_pidfd_kill(j->pidfd) < 0)
                        (void) kill(j->pid, SIGKILL);
                (void) wait_child(j, &si, 0);
        }
        if (j->pidfd >= 0)
                hm_loop_del_fd(j->loop, j->pidfd);
        safe_close(j->pidfd);
        msg_close(j);
        free(j);
}
