/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Static multitool for test bundles and security tests (crun's tests/init.c,
 * bubblewrap's try-syscall.c): no busybox needed inside a test rootfs.
 *
 *   init true | echo ARGS | cat FILE | id | caps | pid | hostname | sleep N |
 *        exit N | ls DIR | fds | write FILE [TEXT] | try-syscall NAME |
 *        forkbomb N | stderr TEXT | mknod-open PATH b|c MAJ MIN
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
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
        if (!strcmp(cmd, "forkbomb") && arg)
                return cmd_forkbomb(num(arg));
        fprintf(stderr, "usage: init true|echo ARGS|cat FILE|id|caps|pid|hostname|sleep N|exit N|ls DIR|fds|"
                        "write FILE [TEXT]|try-syscall NAME|forkbomb N|stderr TEXT|"
                        "mknod-open PATH b|c MAJ MIN\n");
        return 2;
}
