/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The one error contract of hm (after crun's libcrun_error):
 *
 *   Every fallible function is `int f(..., hm_error_t *err)`.  It returns >= 0
 *   on success and leaves *err untouched (NULL).  On failure it returns < 0 and
 *   sets *err to an allocated error whose `code` is an errno value (0 if none)
 *   and whose `msg` says what failed, lowercase, no trailing period, quoting
 *   the subject: "open 'config.json': No such file or directory".
 *
 *   Callers either propagate (`if (r < 0) return r;`), add context
 *   (`return hm_error_wrap(err, "step '%s'", key);`) or consume the error
 *   (print it in cmd/, or hm_error_release()).  Only cmd/ prints errors.
 *
 *   hm_error_set() always returns -(code) - 1, so the return value is
 *   negative even when code is 0.  Out-of-memory aborts (see xmalloc).
 */
#ifndef HM_ERROR_H
#define HM_ERROR_H

#include <stdarg.h>

struct hm_error {
        int code;  /* errno value, 0 if none */
        int exit;  /* suggested process exit code for cmd/ (0: default 1) */
        char *msg;
};
typedef struct hm_error *hm_error_t;

int hm_error_set(hm_error_t *err, int code, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
int hm_error_setv(hm_error_t *err, int code, const char *fmt, va_list ap)
        __attribute__((format(printf, 3, 0)));
/* Set an error carrying a process exit code (e.g. 7 for invalid IR). */
int hm_error_set_exit(hm_error_t *err, int exit_code, int code, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
/* Prefix the existing error with context: "ctx: inner".  Returns the same negative value. */
int hm_error_wrap(hm_error_t *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Free and reset to NULL; accepts NULL and *err == NULL. */
void hm_error_release(hm_error_t *err);
/* Exit code cmd/ should use for this error (err->exit or 1). */
int hm_error_exit_code(const struct hm_error *err);

#endif
