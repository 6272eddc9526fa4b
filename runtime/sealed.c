/* SPDX-License-Identifier: Apache-2.0 */
/* Re-executing hm from a sealed memfd copy of itself (runtime/sealed.h). */
#include "runtime/sealed.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "lib/util.h"

#ifndef MFD_EXEC
#define MFD_EXEC 0x0010U /* 6.3: exempt from vm.memfd_noexec */
#endif

extern char **environ;

bool rt_running_sealed(void)
{
        _cleanup_close_ int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return false;
        return memfd_contents_sealed(fd);
}

/* argv of this process, from /proc/self/cmdline (the verbs get a shifted argv) */
static char **self_argv(void)
{
        _cleanup_free_ char *buf = NULL;
        size_t len;
        if (read_file("/proc/self/cmdline", 1 << 20, &buf, &len) < 0 || !len)
                return NULL;
        char **argv = NULL;
        for (size_t i = 0; i < len; i += strlen(buf + i) + 1)
                strv_push(&argv, buf + i);
        return argv;
}

static int copy_all(int out, int in, hm_error_t *err)
{
        struct stat st;
        if (fstat(in, &st) < 0)
                return hm_error_set(err, errno, "sealed copy of hm: stat /proc/self/exe: %s", strerror(errno));
        off_t off = 0;
        while (off < st.st_size) {
                ssize_t n = sendfile(out, in, &off, (size_t) (st.st_size - off));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return hm_error_set(err, n < 0 ? errno : EIO, "sealed copy of hm: copy the binary: %s",
                                            n < 0 ? strerror(errno) : "short copy");
        }
        return 0;
}

#define OPT_OUT " (HM_INSECURE_NO_SEALED_EXE=1 runs without it)"

int rt_exec_sealed_self(hm_error_t *err)
{
        const char *off = getenv("HM_INSECURE_NO_SEALED_EXE");
        if (off && !strcmp(off, "1"))
                return 0;
        if (rt_running_sealed()) {
                (void) prctl(PR_SET_NAME, "hm"); /* not "memfd:hm": ps, pgrep and logs keep the name */
                return 0;
        }
        _cleanup_close_ int in = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
        if (in < 0)
                return hm_error_set(err, errno, "sealed copy of hm: open /proc/self/exe: %s" OPT_OUT, strerror(errno));
        int fd = memfd_create("hm", MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_EXEC);
        if (fd < 0 && errno == EINVAL)
                fd = memfd_create("hm", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        if (fd < 0)
                return hm_error_set(err, errno, "sealed copy of hm: memfd_create: %s" OPT_OUT, strerror(errno));
        _cleanup_close_ int mfd = fd;
        int r = copy_all(mfd, in, err);
        if (r < 0)
                return r;
        if (fchmod(mfd, 0555) < 0)
                return hm_error_set(err, errno, "sealed copy of hm: chmod: %s" OPT_OUT, strerror(errno));
        r = memfd_seal_contents(mfd);
        if (r < 0)
                return hm_error_set(err, -r, "sealed copy of hm: seal: %s" OPT_OUT, strerror(-r));
        _cleanup_strv_ char **argv = self_argv();
        if (!argv)
                return hm_error_set(err, EINVAL, "sealed copy of hm: cannot read /proc/self/cmdline");
        /* the fd is CLOEXEC: the new image does not keep it (it has its own /proc/self/exe) */
        syscall(SYS_execveat, mfd, "", argv, environ, AT_EMPTY_PATH);
        return hm_error_set(err, errno, "sealed copy of hm: exec: %s" OPT_OUT, strerror(errno));
}
