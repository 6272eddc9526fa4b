/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Static multitool for test bundles and security tests (crun's tests/init.c,
 * bubblewrap's try-syscall.c): no busybox needed inside a test rootfs.
 *
 *   init true | echo ARGS | cat FILE | id | caps | pid | hostname | sleep N |
 *        exit N | ls DIR | fds | write FILE [TEXT] | try-syscall NAME |
 *        forkbomb N | stderr TEXT | mknod-open PATH b|c MAJ MIN |
 *        attack NAME ARGS (tests/security: prints "VERDICT: BLOCKED|ESCAPED why")
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/reboot.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

static int num(const char *s) { return (int) strtol(s, NULL, 10); }

static int cmd_cat(const char *path)
{
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
                fprintf(stderr, "cat %s: %s\n", path, strerror(errno));
                return 1;
        }
        char buf[4096];
        ssize_t n;
        while ((n = read(fd, buf, sizeof buf)) > 0)
                fwrite(buf, 1, (size_t) n, stdout);
        close(fd);
        return n < 0 ? 1 : 0;
}

static int cmd_id(void)
{
        gid_t groups[64];
        int n = getgroups(64, groups);
        printf("uid=%u gid=%u euid=%u egid=%u groups=", getuid(), getgid(), geteuid(), getegid());
        for (int i = 0; i < n; i++)
                printf("%s%u", i ? "," : "", groups[i]);
        printf("\n");
        return 0;
}

static int cmd_caps(void)
{
        FILE *f = fopen("/proc/self/status", "re");
        if (!f) {
                perror("open /proc/self/status");
                return 1;
        }
        char line[256];
        while (fgets(line, sizeof line, f))
                if (!strncmp(line, "CapEff:", 7) || !strncmp(line, "CapBnd:", 7) || !strncmp(line, "CapPrm:", 7) ||
                    !strncmp(line, "CapInh:", 7) || !strncmp(line, "CapAmb:", 7) || !strncmp(line, "NoNewPrivs:", 11) ||
                    !strncmp(line, "Seccomp:", 8))
                        fputs(line, stdout);
        fclose(f);
        return 0;
}

static int cmd_ls(const char *dir)
{
        DIR *d = opendir(dir);
        if (!d) {
                fprintf(stderr, "ls %s: %s\n", dir, strerror(errno));
                return 1;
        }
        struct dirent *de;
        while ((de = readdir(d)))
                if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
                        printf("%s\n", de->d_name);
        closedir(d);
        return 0;
}

static int cmd_fds(void)
{
        DIR *d = opendir("/proc/self/fd");
        if (!d) {
                perror("opendir /proc/self/fd");
                return 1;
        }
        int self = dirfd(d);
        struct dirent *de;
        while ((de = readdir(d))) {
                if (de->d_name[0] == '.' || num(de->d_name) == self)
                        continue;
                char path[300], target[256] = "";
                snprintf(path, sizeof path, "/proc/self/fd/%s", de->d_name);
                ssize_t n = readlink(path, target, sizeof target - 1);
                target[n > 0 ? n : 0] = 0;
                printf("%s %s\n", de->d_name, target);
        }
        closedir(d);
        return 0;
}

static int cmd_write(const char *path, const char *text)
{
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0 || write(fd, text, strlen(text)) < 0) {
                printf("write %s: %s\n", path, strerror(errno));
                return 1;
        }
        close(fd);
        printf("write %s: ok\n", path);
        return 0;
}

static long try_one(const char *name)
{
        if (!strcmp(name, "mount"))
                return mount("none", "/tmp", "tmpfs", 0, NULL);
        if (!strcmp(name, "umount"))
                return umount2("/proc", MNT_DETACH);
        if (!strcmp(name, "unshare"))
                return unshare(CLONE_NEWNS);
        if (!strcmp(name, "unshare-user"))
                return unshare(CLONE_NEWUSER);
        if (!strcmp(name, "keyctl"))
                return syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3, 0);
        if (!strcmp(name, "add_key"))
                return syscall(SYS_add_key, "user", "hm", "x", 1, -3);
        if (!strcmp(name, "setns"))
                return setns(0, 0);
        if (!strcmp(name, "ptrace"))
                return ptrace(PTRACE_TRACEME, 0, NULL, NULL);
        if (!strcmp(name, "pivot_root"))
                return syscall(SYS_pivot_root, "/", "/");
        if (!strcmp(name, "reboot"))
                return reboot(RB_DISABLE_CAD); /* harmless even if it were allowed */
        if (!strcmp(name, "init_module"))
                return syscall(SYS_init_module, NULL, 0, "");
        if (!strcmp(name, "bpf"))
                return syscall(SYS_bpf, 0, NULL, 0);
        if (!strcmp(name, "perf_event_open"))
                return syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0);
        if (!strcmp(name, "clone3"))
                return syscall(SYS_clone3, NULL, 0);
        if (!strcmp(name, "clone-newns"))
                return syscall(SYS_clone, CLONE_NEWNS | SIGCHLD, NULL, NULL, NULL, NULL);
        if (!strcmp(name, "personality"))
                return syscall(SYS_personality, 0x0040000 /* ADDR_NO_RANDOMIZE */);
        if (!strcmp(name, "getpid"))
                return syscall(SYS_getpid);
        errno = EINVAL;
        return -2;
}

static int cmd_try_syscall(const char *name)
{
        errno = 0;
        long r = try_one(name);
        if (r == -2 && errno == EINVAL) {
                fprintf(stderr, "try-syscall: unknown '%s'\n", name);
                return 2;
        }
        if (r == 0 && !strcmp(name, "clone-newns"))
                _exit(0);
        if (r >= 0)
                printf("%s: ok\n", name);
        else
                printf("%s: %s\n", name, errno == EPERM ? "EPERM" : errno == ENOSYS ? "ENOSYS" : strerror(errno));
        return 0;
}

/* mknod a device node and try to open it: the devices cgroup must refuse. */
static int cmd_mknod_open(const char *path, const char *type, const char *maj, const char *min)
{
        mode_t mode = (type[0] == 'b' ? S_IFBLK : S_IFCHR) | 0600;
        unlink(path);
        if (mknod(path, mode, makedev((unsigned) num(maj), (unsigned) num(min))) < 0) {
                printf("mknod: %s\n", errno == EPERM ? "EPERM" : strerror(errno));
                return 0;
        }
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        printf("mknod: ok\nopen: %s\n", fd >= 0 ? "ok" : errno == EPERM ? "EPERM" : strerror(errno));
        if (fd >= 0)
                close(fd);
        unlink(path);
        return 0;
}

/* Fork up to n children that sleep; print how many forks succeeded. */
static int cmd_forkbomb(int n)
{
        int ok = 0;
        for (int i = 0; i < n; i++) {
                pid_t p = fork();
                if (p < 0)
                        break;
                if (p == 0) {
                        sleep(30);
                        _exit(0);
                }
                ok++;
        }
        printf("forked %d\n", ok);
        fflush(stdout);
        kill(0, SIGKILL); /* ourselves and the sleepers: the whole process group */
        return 0;
}


/* ---- attack probes: each prints one "VERDICT: BLOCKED|ESCAPED <why>" line ---- */

static int verdict(bool escaped, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int verdict(bool escaped, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        printf("VERDICT: %s ", escaped ? "ESCAPED" : "BLOCKED");
        vprintf(fmt, ap);
        printf("\n");
        va_end(ap);
        return 0;
}

static const char *ename(int e)
{
        static char buf[64];
        switch (e) {
        case EPERM: return "EPERM";
        case EACCES: return "EACCES";
        case ENOSYS: return "ENOSYS";
        case ENOENT: return "ENOENT";
        case EROFS: return "EROFS";
        case ETXTBSY: return "ETXTBSY";
        case ESRCH: return "ESRCH";
        case EINVAL: return "EINVAL";
        case EFAULT: return "EFAULT";
        case EBADF: return "EBADF";
        case ELOOP: return "ELOOP";
        default: snprintf(buf, sizeof buf, "errno %d (%s)", e, strerror(e)); return buf;
        }
}

/* Does fd hold `token`?  (reads at most 4 KiB) */
static bool fd_has_token(int fd, const char *token)
{
        char buf[4096];
        ssize_t n = read(fd, buf, sizeof buf - 1);
        if (n <= 0)
                return false;
        buf[n] = 0;
        return strstr(buf, token) != NULL;
}

static int atk_read(const char *path, const char *token)
{
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return verdict(false, "open %s: %s", path, ename(errno));
        bool hit = fd_has_token(fd, token);
        close(fd);
        return verdict(hit, hit ? "read the host canary through %s" : "%s opened but holds no canary", path);
}

static int atk_create(const char *path)
{
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0)
                return verdict(false, "create %s: %s", path, ename(errno));
        (void) !write(fd, "escaped\n", 8);
        close(fd);
        /* the suite decides by looking at the host: the file may only exist in here */
        return verdict(true, "created %s (suite checks the host)", path);
}

/* open for writing only: never writes (core_pattern, sysrq-trigger, /sys knobs) */
static int atk_open_wr(const char *path)
{
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0)
                return verdict(false, "open %s for writing: %s", path, ename(errno));
        close(fd);
        return verdict(true, "%s is open for writing", path);
}

static int atk_read_some(const char *path)
{
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return verdict(false, "open %s: %s", path, ename(errno));
        char buf[64];
        ssize_t n = read(fd, buf, sizeof buf);
        int e = errno;
        close(fd);
        if (n <= 0)
                return verdict(false, "%s reads %s", path, n == 0 ? "empty (masked)" : ename(e));
        return verdict(true, "read %zd bytes of %s", n, path);
}

/* Reached the kernel past seccomp and the capability checks? */
static bool denied(int e) { return e == EPERM || e == ENOSYS || e == EACCES; }

static long sys_one(const char *name)
{
        if (!strcmp(name, "mount"))
                return mount("none", "/tmp", "tmpfs", 0, NULL) == 0 ? umount2("/tmp", MNT_DETACH) : -1;
        if (!strcmp(name, "unshare-ns"))
                return unshare(CLONE_NEWNS);
        if (!strcmp(name, "unshare-user"))
                return unshare(CLONE_NEWUSER);
        if (!strcmp(name, "clone-newuser")) {
                long r = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, NULL, NULL, NULL, NULL);
                if (r == 0)
                        _exit(0);
                if (r > 0)
                        waitpid((pid_t) r, NULL, 0);
                return r;
        }
        if (!strcmp(name, "keyctl"))
                return syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3 /* session */, 1);
        if (!strcmp(name, "init_module"))
                return syscall(SYS_init_module, NULL, 0, "");
        if (!strcmp(name, "finit_module"))
                return syscall(SYS_finit_module, -1, "", 0);
        if (!strcmp(name, "bpf"))
                return syscall(SYS_bpf, 0, NULL, 0);
        if (!strcmp(name, "perf_event_open"))
                return syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0);
        if (!strcmp(name, "userfaultfd"))
                return syscall(SYS_userfaultfd, 0);
        if (!strcmp(name, "kexec_load")) /* bad flags: EINVAL once past CAP_SYS_BOOT */
                return syscall(SYS_kexec_load, 0, 0, NULL, 0xdead0000UL);
        if (!strcmp(name, "reboot")) /* bad magic: EINVAL once past CAP_SYS_BOOT */
                return syscall(SYS_reboot, 0, 0, 0, NULL);
        if (!strcmp(name, "swapon"))
                return syscall(SYS_swapon, "/nonexistent-hm-swap", 0);
        if (!strcmp(name, "pivot_root"))
                return syscall(SYS_pivot_root, "/nonexistent-a", "/nonexistent-b");
        if (!strcmp(name, "setns"))
                return setns(-1, 0);
        errno = EINVAL;
        return -2;
}

static int atk_sys(const char *name)
{
        errno = 0;
        long r = sys_one(name);
        if (r == -2 && errno == EINVAL) {
                fprintf(stderr, "attack sys: unknown '%s'\n", name);
                return 2;
        }
        if (r >= 0)
                return verdict(true, "%s succeeded", name);
        if (denied(errno))
                return verdict(false, "%s: %s", name, ename(errno));
        return verdict(true, "%s reached the kernel (%s)", name, ename(errno));
}

static int atk_fds(void)
{
        DIR *d = opendir("/proc/self/fd");
        if (!d)
                return verdict(false, "opendir /proc/self/fd: %s", ename(errno));
        char extra[512] = "";
        struct dirent *de;
        while ((de = readdir(d))) {
                int fd = num(de->d_name);
                if (de->d_name[0] == '.' || fd == dirfd(d) || fd <= 2)
                        continue;
                size_t n = strlen(extra);
                snprintf(extra + n, sizeof extra - n, " %d", fd);
        }
        closedir(d);
        return verdict(extra[0] != 0, extra[0] ? "inherited fds:%s" : "only 0, 1, 2 are open", extra);
}

/* Walk ".." from every open directory fd, then look for the host canary. */
static int atk_fd_walk(const char *canary, const char *token)
{
        for (int fd = 0; fd < 1024; fd++) {
                struct stat st;
                if (fstat(fd, &st) < 0 || !S_ISDIR(st.st_mode))
                        continue;
                if (fchdir(fd) < 0)
                        continue;
                for (int i = 0; i < 64; i++)
                        (void) !chdir("..");
                int c = open(canary + 1, O_RDONLY | O_CLOEXEC);
                if (c >= 0 && fd_has_token(c, token))
                        return verdict(true, "reached the host canary from fd %d", fd);
                if (c >= 0)
                        close(c);
        }
        char path[64];
        for (int fd = 0; fd < 64; fd++) {
                snprintf(path, sizeof path, "/proc/self/fd/%d/../../../../../..%s", fd, canary);
                int c = open(path, O_RDONLY | O_CLOEXEC);
                if (c >= 0 && fd_has_token(c, token))
                        return verdict(true, "reached the host canary through %s", path);
                if (c >= 0)
                        close(c);
        }
        return verdict(false, "no directory fd leads outside the root");
}

/* The classic chroot break: chroot into a subdir, walk up past it, chroot(".") */
static int atk_chroot(const char *canary, const char *token)
{
        (void) mkdir("/tmp/hm-chroot-jail", 0755);
        if (chroot("/tmp/hm-chroot-jail") < 0)
                return verdict(false, "chroot: %s", ename(errno));
        for (int i = 0; i < 64; i++)
                (void) !chdir("..");
        if (chroot(".") < 0)
                return verdict(false, "chroot(.): %s", ename(errno));
        int c = open(canary, O_RDONLY | O_CLOEXEC);
        if (c < 0)
                return verdict(false, "after the chroot walk %s: %s", canary, ename(errno));
        bool hit = fd_has_token(c, token);
        close(c);
        return verdict(hit, hit ? "chroot walk reached the host canary" : "no canary after the chroot walk");
}

/* setns into the namespaces of pid: only a namespace other than ours counts */
static int atk_setns(const char *pid)
{
        static const char *const types[] = { "mnt", "pid", "net", "ipc", "uts", "user", "cgroup" };
        char path[64], why[512] = "";
        for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
                struct stat theirs, ours;
                snprintf(path, sizeof path, "/proc/%s/ns/%s", pid, types[i]);
                int fd = open(path, O_RDONLY | O_CLOEXEC);
                size_t n = strlen(why);
                if (fd < 0) {
                        snprintf(why + n, sizeof why - n, " %s:%s", types[i], ename(errno));
                        continue;
                }
                snprintf(path, sizeof path, "/proc/self/ns/%s", types[i]);
                bool same = fstat(fd, &theirs) == 0 && stat(path, &ours) == 0 && theirs.st_ino == ours.st_ino;
                if (setns(fd, 0) == 0 && !same) {
                        close(fd);
                        return verdict(true, "setns into %s of pid %s", types[i], pid);
                }
                snprintf(why + n, sizeof why - n, " %s:%s", types[i], same ? "own-ns" : ename(errno));
                close(fd);
        }
        return verdict(false, "%s", why);
}


/* Is pid 1 a binary of the container?  Same file by path inside our root. */
static bool exe_is_ours(const char *link, int fd)
{
        char target[4096];
        ssize_t n = readlink(link, target, sizeof target - 1);
        struct stat a, b;
        if (n <= 0 || fstat(fd, &a) < 0)
                return false;
        target[n] = 0;
        return stat(target, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

/* Attaching to a process of our own sandbox (pid 1 = the step's shell on engines) is no escape. */
static int atk_ptrace(const char *pid)
{
        pid_t p = (pid_t) num(pid);
        if (ptrace(PTRACE_SEIZE, p, NULL, NULL) < 0)
                return verdict(false, "ptrace seize %s: %s", pid, ename(errno));
        (void) ptrace(PTRACE_DETACH, p, NULL, NULL);
        char exe[64];
        snprintf(exe, sizeof exe, "/proc/%s/exe", pid);
        int efd = open(exe, O_RDONLY | O_CLOEXEC);
        bool ours = efd >= 0 && exe_is_ours(exe, efd) && getppid() != 0;
        if (efd >= 0)
                close(efd);
        if (ours && p == 1)
                return verdict(false, "attached pid 1, but it runs a binary of the container itself (same sandbox)");
        return verdict(true, "ptrace-attached pid %s", pid);
}

/* /proc/PID/exe or /proc/PID/mem of a process running a host binary (CVE-2019-5736 class) */
static int atk_proc_exe(const char *pid, const char *what, const char *mode)
{
        char exe[64], path[64];
        snprintf(exe, sizeof exe, "/proc/%s/exe", pid);
        snprintf(path, sizeof path, "/proc/%s/%s", pid, what);
        int flags = !strcmp(mode, "w") ? O_WRONLY : !strcmp(mode, "rw") ? O_RDWR : O_RDONLY;
        int fd = open(path, flags | O_CLOEXEC);
        if (fd < 0)
                return verdict(false, "open %s (%s): %s", path, mode, ename(errno));
        int efd = open(exe, O_RDONLY | O_CLOEXEC);
        bool ours = efd >= 0 && exe_is_ours(exe, efd);
        if (efd >= 0)
                close(efd);
        close(fd);
        if (ours)
                return verdict(false, "%s opened, but pid %s runs a binary of the container itself", path, pid);
        return verdict(true, "%s of a host binary is open (%s)", path, mode);
}

/* A block device node made in the container, opened and read */
static int atk_mknod(const char *maj, const char *min)
{
        const char *path = "/tmp/hm-sec-blk";
        unlink(path);
        if (mknod(path, S_IFBLK | 0600, makedev((unsigned) num(maj), (unsigned) num(min))) < 0)
                return verdict(false, "mknod b %s:%s: %s", maj, min, ename(errno));
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        int e = errno;
        unlink(path);
        if (fd < 0)
                return verdict(false, "mknod ok, open: %s", ename(e));
        char buf[512];
        ssize_t n = read(fd, buf, sizeof buf);
        close(fd);
        return verdict(n > 0, n > 0 ? "read the host disk %s:%s" : "device opened but unreadable", maj, min);
}

static int atk_cgroup(void)
{
        static const char *const dirs[] = { "/sys/fs/cgroup", "/sys/fs/cgroup/pids", "/sys/fs/cgroup/memory",
                                            "/sys/fs/cgroup/devices" };
        char path[256], why[512] = "";
        for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
                size_t n = strlen(why);
                snprintf(path, sizeof path, "%s/hm-sec-escape", dirs[i]);
                struct statfs fs;
                if (statfs(dirs[i], &fs) == 0 && fs.f_type != 0x27e0eb /* cgroup */ && fs.f_type != 0x63677270 /* cgroup2 */) {
                        snprintf(why + n, sizeof why - n, " %s:not-a-cgroupfs", dirs[i]);
                        continue;
                }
                if (mkdir(path, 0755) == 0) {
                        rmdir(path);
                        return verdict(true, "created cgroup %s", path);
                }
                snprintf(why + n, sizeof why - n, " mkdir %s:%s", dirs[i], ename(errno));
                static const char *const files[] = { "cgroup.procs", "release_agent", "notify_on_release" };
                for (size_t k = 0; k < 3; k++) {
                        snprintf(path, sizeof path, "%s/%s", dirs[i], files[k]);
                        int fd = open(path, O_WRONLY | O_CLOEXEC);
                        if (fd >= 0) {
                                close(fd);
                                return verdict(true, "%s is open for writing", path);
                        }
                }
        }
        return verdict(false, "%s", why);
}

/* "shocker": open_by_handle_at with a handle from name_to_handle_at */
static int atk_handle(void)
{
        struct {
                struct file_handle fh;
                unsigned char bytes[128];
        } h;
        h.fh.handle_bytes = sizeof h.bytes;
        int mnt_id;
        if (syscall(SYS_name_to_handle_at, AT_FDCWD, "/", &h.fh, &mnt_id, 0) < 0)
                return verdict(false, "name_to_handle_at: %s", ename(errno));
        int mfd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        long fd = syscall(SYS_open_by_handle_at, mfd, &h.fh, O_RDONLY | O_CLOEXEC);
        int e = errno;
        close(mfd);
        if (fd < 0)
                return verdict(false, "open_by_handle_at: %s", ename(e));
        close((int) fd);
        return verdict(true, "open_by_handle_at opened an inode by handle");
}

/* raw sockets: allowed by design (CAP_NET_RAW, as Docker) but only lo exists */
static int atk_raw(void)
{
        int s = socket(AF_INET, SOCK_RAW, IPPROTO_ICMP);
        int e = errno;
        if (s >= 0)
                close(s);
        struct if_nameindex *ifs = if_nameindex();
        char names[256] = "";
        bool outside = false;
        for (struct if_nameindex *i = ifs; i && i->if_index; i++) {
                size_t n = strlen(names);
                snprintf(names + n, sizeof names - n, " %s", i->if_name);
                if (strcmp(i->if_name, "lo"))
                        outside = true;
        }
        if (ifs)
                if_freenameindex(ifs);
        return verdict(s >= 0 && outside, "raw socket %s; interfaces:%s", s >= 0 ? "opened" : ename(e), names);
}

static int cmd_attack(int argc, char **argv)
{
        const char *a = argv[0];
        const char *x = argc > 1 ? argv[1] : "", *y = argc > 2 ? argv[2] : "", *z = argc > 3 ? argv[3] : "";
        if (!strcmp(a, "read")) return atk_read(x, y);
        if (!strcmp(a, "create")) return atk_create(x);
        if (!strcmp(a, "open-wr")) return atk_open_wr(x);
        if (!strcmp(a, "read-some")) return atk_read_some(x);
        if (!strcmp(a, "sys")) return atk_sys(x);
        if (!strcmp(a, "fds")) return atk_fds();
        if (!strcmp(a, "fd-walk")) return atk_fd_walk(x, y);
        if (!strcmp(a, "chroot")) return atk_chroot(x, y);
        if (!strcmp(a, "setns")) return atk_setns(x);
        if (!strcmp(a, "ptrace")) return atk_ptrace(x);
        if (!strcmp(a, "proc-exe")) return atk_proc_exe(x, y, z);
        if (!strcmp(a, "mknod")) return atk_mknod(x, y);
        if (!strcmp(a, "cgroup")) return atk_cgroup();
        if (!strcmp(a, "handle")) return atk_handle();
        if (!strcmp(a, "raw")) return atk_raw();
        fprintf(stderr, "attack: unknown '%s'\n", a);
        return 2;
}

int main(int argc, char **argv)
{
        setvbuf(stdout, NULL, _IOLBF, 0);
        const char *cmd = argc > 1 ? argv[1] : "";
        const char *arg = argc > 2 ? argv[2] : NULL;
        if (!strcmp(cmd, "true"))
                return 0;
        if (!strcmp(cmd, "echo")) {
                for (int i = 2; i < argc; i++)
                        printf("%s%s", argv[i], i + 1 < argc ? " " : "");
                printf("\n");
                return 0;
        }
        if (!strcmp(cmd, "stderr") && arg) {
                fprintf(stderr, "%s\n", arg);
                return 0;
        }
        if (!strcmp(cmd, "cat") && arg)
                return cmd_cat(arg);
        if (!strcmp(cmd, "id"))
                return cmd_id();
        if (!strcmp(cmd, "caps"))
                return cmd_caps();
        if (!strcmp(cmd, "pid")) {
                printf("pid=%d ppid=%d\n", getpid(), getppid());
                return 0;
        }
        if (!strcmp(cmd, "hostname")) {
                char h[256] = "";
                gethostname(h, sizeof h - 1);
                printf("%s\n", h);
                return 0;
        }
        if (!strcmp(cmd, "sleep") && arg) {
                sleep((unsigned) num(arg));
                return 0;
        }
        if (!strcmp(cmd, "exit") && arg)
                return num(arg);
        if (!strcmp(cmd, "ls") && arg)
                return cmd_ls(arg);
        if (!strcmp(cmd, "fds"))
                return cmd_fds();
        if (!strcmp(cmd, "write") && arg)
                return cmd_write(arg, argc > 3 ? argv[3] : "hm\n");
        if (!strcmp(cmd, "try-syscall") && arg)
                return cmd_try_syscall(arg);
        if (!strcmp(cmd, "mknod-open") && argc > 5)
                return cmd_mknod_open(argv[2], argv[3], argv[4], argv[5]);
        if (!strcmp(cmd, "attack") && arg)
                return cmd_attack(argc - 2, argv + 2);
        if (!strcmp(cmd, "forkbomb") && arg)
                return cmd_forkbomb(num(arg));
        fprintf(stderr, "usage: init true|echo ARGS|cat FILE|id|caps|pid|hostname|sleep N|exit N|ls DIR|fds|"
                        "write FILE [TEXT]|try-syscall NAME|forkbomb N|stderr TEXT|"
                        "mknod-open PATH b|c MAJ MIN|attack NAME ARGS\n");
        return 2;
}
