/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Small shared helpers: allocation that aborts on OOM, scope-based cleanup
 * (systemd/crun style) and ownership transfer.
 *
 * Rules (kernel cleanup.h): declare a _cleanup_ variable at the point of
 * acquisition; never mix goto with cleanup variables in one function; hand
 * ownership out with TAKE_PTR()/TAKE_FD().
 */
#ifndef HM_UTIL_H
#define HM_UTIL_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <dirent.h>

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _unused_ __attribute__((unused))
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#define TAKE_PTR(p)                              \
        ({                                       \
                __typeof__(p) _tp_ = (p);        \
                (p) = NULL;                      \
                _tp_;                            \
        })
#define TAKE_FD(fd)                              \
        ({                                       \
                int _tf_ = (fd);                 \
                (fd) = -1;                       \
                _tf_;                            \
        })

void *xmalloc(size_t n);
void *xzalloc(size_t n);
void *xcalloc(size_t n, size_t m);
void *xrealloc(void *p, size_t n);
void *xreallocarray(void *p, size_t n, size_t m);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static inline void freep(void *p) { free(*(void **)p); }
#define _cleanup_free_ _cleanup_(freep)

static inline void closep(int *fd)
{
        if (*fd >= 0) {
                int saved = errno;
                close(*fd);
                errno = saved;
        }
        *fd = -1;
}
#define _cleanup_close_ _cleanup_(closep)

static inline void fclosep(FILE **f)
{
        if (*f)
                fclose(*f);
}
#define _cleanup_fclose_ _cleanup_(fclosep)

static inline void closedirp(DIR **d)
{
        if (*d)
                closedir(*d);
}
#define _cleanup_closedir_ _cleanup_(closedirp)

/* NULL-terminated string vectors. */
void strv_free(char **v);
static inline void strv_freep(char ***v) { strv_free(*v); }
#define _cleanup_strv_ _cleanup_(strv_freep)
size_t strv_len(char *const *v);
/* Append a copy of s; *v may be NULL. */
void strv_push(char ***v, const char *s);
void strv_push_take(char ***v, char *s);
char **strv_copy(char *const *v);

/* Monotonic milliseconds, and wall clock in nanoseconds since the epoch. */
int64_t now_ms(void);
int64_t now_realtime_ns(void);

/* Close fd if >= 0, return -1 (for `fd = safe_close(fd);`). */
int safe_close(int fd);

bool str_has_prefix(const char *s, const char *prefix);
bool str_has_suffix(const char *s, const char *suffix);

/* Write all of buf to fd, retrying on EINTR/short writes. -errno on failure. */
int write_all(int fd, const void *buf, size_t n);
/* Read a whole file (size cap `max`, 0 = 64 MiB) into a NUL-terminated buffer. */
int read_file(const char *path, size_t max, char **ret, size_t *ret_len);
/* mkdir -p with mode; returns 0 or -errno. */
int mkdir_p(const char *path, mode_t mode);
/* rm -rf of a directory tree, without crossing mount points; returns 0 or -errno. */
int rm_rf(const char *path);

/*
 * Make a memfd's contents immutable for good: no write, truncate or growth
 * through any fd, no new writable shared mapping, no more seals.  The write
 * seal is F_SEAL_FUTURE_WRITE (5.1): F_SEAL_WRITE also waits for every extra
 * page reference to go and fails with EBUSY when one stays (seen under load:
 * every hm start of a CI phase failed so), while it adds nothing for a memfd
 * that was only ever written with write()/sendfile() and never mapped, which
 * is what the callers make.  Older kernels (EINVAL) get F_SEAL_WRITE.
 * Returns 0 or -errno.
 */
int memfd_seal_contents(int fd);
/* Whether fd carries the seals memfd_seal_contents() adds. */
bool memfd_contents_sealed(int fd);

/*
 * Real root: euid 0 with CAP_SYS_ADMIN in the initial user namespace.  uid 0
 * inside a container without CAP_SYS_ADMIN (Docker's and Podman's default
 * capability sets) or inside a user namespace is not: mounts, trusted.*
 * xattrs and cgroup writes are refused there, so hm takes the rootless paths.
 */
bool hm_privileged(void);

#endif
