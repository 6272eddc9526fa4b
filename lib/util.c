/* SPDX-License-Identifier: Apache-2.0 */
#include "lib/util.h"

#include <fcntl.h>
#include <stdarg.h>
#include <linux/capability.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>

static void oom(void)
{
        static const char msg[] = "hm: out of memory\n";
        (void) !write(STDERR_FILENO, msg, sizeof msg - 1);
        abort();
}

void *xmalloc(size_t n)
{
        void *p = malloc(n ? n : 1);
        if (!p)
                oom();
        return p;
}

void *xzalloc(size_t n) { return xcalloc(1, n); }

void *xcalloc(size_t n, size_t m)
{
        void *p = calloc(n ? n : 1, m ? m : 1);
        if (!p)
                oom();
        return p;
}

void *xrealloc(void *p, size_t n)
{
        p = realloc(p, n ? n : 1);
        if (!p)
                oom();
        return p;
}

void *xreallocarray(void *p, size_t n, size_t m)
{
        if (m && n > SIZE_MAX / m)
                oom();
        return xrealloc(p, n * m);
}

char *xstrdup(const char *s)
{
        char *r = strdup(s);
        if (!r)
                oom();
        return r;
}

char *xstrndup(const char *s, size_t n)
{
        char *r = strndup(s, n);
        if (!r)
                oom();
        return r;
}

char *xasprintf(const char *fmt, ...)
{
        char *r;
        va_list ap;
        va_start(ap, fmt);
        if (vasprintf(&r, fmt, ap) < 0)
                oom();
        va_end(ap);
        return r;
}

void strv_free(char **v)
{
        if (!v)
                return;
        for (char **p = v; *p; p++)
                free(*p);
        free(v);
}

size_t strv_len(char *const *v)
{
        size_t n = 0;
        while (v && v[n])
                n++;
        return n;
}

void strv_push_take(char ***v, char *s)
{
        size_t n = strv_len(*v);
        *v = xreallocarray(*v, n + 2, sizeof(char *));
        (*v)[n] = s;
        (*v)[n + 1] = NULL;
}

void strv_push(char ***v, const char *s) { strv_push_take(v, xstrdup(s)); }

char **strv_copy(char *const *v)
{
        char **r = xcalloc(strv_len(v) + 1, sizeof(char *));
        for (size_t i = 0; v && v[i]; i++)
                r[i] = xstrdup(v[i]);
        return r;
}

int64_t now_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t now_realtime_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t) ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int safe_close(int fd)
{
        if (fd >= 0)
                close(fd);
        return -1;
}

bool str_has_prefix(const char *s, const char *prefix)
{
        return strncmp(s, prefix, strlen(prefix)) == 0;
}

bool str_has_suffix(const char *s, const char *suffix)
{
        size_t a = strlen(s), b = strlen(suffix);
        return a >= b && memcmp(s + a - b, suffix, b) == 0;
}

int write_all(int fd, const void *buf, size_t n)
{
        const char *p = buf;
        while (n > 0) {
                ssize_t w = write(fd, p, n);
                if (w < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += w;
                n -= (size_t) w;
        }
        return 0;
}

int read_file(const char *path, size_t max, char **ret, size_t *ret_len)
{
        if (!max)
                max = 64u << 20;
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        size_t cap = 4096, len = 0;
        _cleanup_free_ char *buf = xmalloc(cap + 1);
        for (;;) {
                if (len == cap) {
                        if (cap >= max)
                                return -EFBIG;
                        cap *= 2;
                        buf = xrealloc(buf, cap + 1);
                }
                ssize_t r = read(fd, buf + len, cap - len);
                if (r < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (r == 0)
                        break;
                len += (size_t) r;
        }
        if (len > max)
                return -EFBIG;
        buf[len] = 0;
        if (ret_len)
                *ret_len = len;
        *ret = TAKE_PTR(buf);
        return 0;
}

int mkdir_p(const char *path, mode_t mode)
{
        _cleanup_free_ char *p = xstrdup(path);
        for (char *s = p + 1; *s; s++) {
                if (*s != '/')
                        continue;
                *s = 0;
                if (mkdir(p, mode) < 0 && errno != EEXIST)
                        return -errno;
                *s = '/';
        }
        if (mkdir(p, mode) < 0 && errno != EEXIST)
                return -errno;
        return 0;
}

static int open_subdir(int dfd, const char *name)
{
        return openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
}

static int rm_rf_at(int dfd, dev_t dev)
{
        _cleanup_closedir_ DIR *d = fdopendir(dfd);
        if (!d) {
                close(dfd);
                return -errno;
        }
        int ret = 0;
        struct dirent *de;
        while ((de = readdir(d))) {
                if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
                        continue;
                struct stat st;
                if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
                        if (errno != ENOENT && !ret)
                                ret = -errno;
                        continue;
                }
                if (S_ISDIR(st.st_mode)) {
                        if (st.st_dev != dev) {
                                ret = ret ? ret : -EBUSY;
                                continue;
                        }
                        int sub = open_subdir(dirfd(d), de->d_name);
                        if (sub < 0 && errno == EACCES) {
                                /* a dir left 0000 by a step: make it ours again */
                                (void) fchmodat(dirfd(d), de->d_name, 0700, 0);
                                sub = open_subdir(dirfd(d), de->d_name);
                        }
                        if (sub < 0) {
                                ret = ret ? ret : -errno;
                                continue;
                        }
                        int r = rm_rf_at(sub, dev);
                        if (r < 0 && !ret)
                                ret = r;
                        if (unlinkat(dirfd(d), de->d_name, AT_REMOVEDIR) < 0 && errno != ENOENT && !ret)
                                ret = -errno;
                } else if (unlinkat(dirfd(d), de->d_name, 0) < 0 && errno != ENOENT && !ret) {
                        ret = -errno;
                }
        }
        return ret;
}

int rm_rf(const char *path)
{
        struct stat st;
        if (lstat(path, &st) < 0)
                return errno == ENOENT ? 0 : -errno;
        if (!S_ISDIR(st.st_mode))
                return unlink(path) < 0 ? -errno : 0;
        int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        int r = rm_rf_at(fd, st.st_dev);
        if (rmdir(path) < 0 && errno != ENOENT && !r)
                r = -errno;
        return r;
}

static bool in_initial_userns(void)
{
        char *map = NULL;
        if (read_file("/proc/self/uid_map", 4096, &map, NULL) < 0)
                return true; /* no /proc: nothing says otherwise */
        unsigned long inside, outside, count;
        bool init = sscanf(map, "%lu %lu %lu", &inside, &outside, &count) == 3 && inside == 0 && outside == 0 &&
                    count == 4294967295UL;
        free(map);
        return init;
}

bool hm_privileged(void)
{
        struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
        struct __user_cap_data_struct d[2] = { { 0 } };
        bool admin = syscall(SYS_capget, &h, d) == 0 && (d[CAP_SYS_ADMIN / 32].effective & (1U << (CAP_SYS_ADMIN % 32)));
        return geteuid() == 0 && admin && in_initial_userns();
}

#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x0010
#endif

#define SEALS_BASE (F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW)

int memfd_seal_contents(int fd)
{
        if (fcntl(fd, F_ADD_SEALS, SEALS_BASE | F_SEAL_FUTURE_WRITE) == 0)
                return 0;
        if (errno != EINVAL)
                return -errno;
        return fcntl(fd, F_ADD_SEALS, SEALS_BASE | F_SEAL_WRITE) == 0 ? 0 : -errno;
}

bool memfd_contents_sealed(int fd)
{
        int seals = fcntl(fd, F_GET_SEALS);
        return seals >= 0 && (seals & SEALS_BASE) == SEALS_BASE && (seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE));
}
