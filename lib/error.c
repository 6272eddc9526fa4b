/* SPDX-License-Identifier: Apache-2.0 */
#include "lib/error.h"
#include "lib/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int hm_error_setv(hm_error_t *err, int code, const char *fmt, va_list ap)
{
        if (err) {
                hm_error_release(err);
                struct hm_error *e = xzalloc(sizeof *e);
                e->code = code;
                if (vasprintf(&e->msg, fmt, ap) < 0)
                        abort();
                *err = e;
        }
        return -code - 1;
}

int hm_error_set(hm_error_t *err, int code, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        int r = hm_error_setv(err, code, fmt, ap);
        va_end(ap);
        return r;
}

int hm_error_set_exit(hm_error_t *err, int exit_code, int code, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        int r = hm_error_setv(err, code, fmt, ap);
        va_end(ap);
        if (err && *err)
                (*err)->exit = exit_code;
        return r;
}

int hm_error_wrap(hm_error_t *err, const char *fmt, ...)
{
        if (!err || !*err)
                return -1;
        char *ctx = NULL;
        va_list ap;
        va_start(ap, fmt);
        if (vasprintf(&ctx, fmt, ap) < 0)
                abort();
        va_end(ap);
        char *msg = NULL;
        if (asprintf(&msg, "%s: %s", ctx, (*err)->msg) < 0)
                abort();
        free(ctx);
        free((*err)->msg);
        (*err)->msg = msg;
        return -(*err)->code - 1;
}

void hm_error_release(hm_error_t *err)
{
        if (!err || !*err)
                return;
        free((*err)->msg);
        free(*err);
        *err = NULL;
}

int hm_error_exit_code(const struct hm_error *err)
{
        return err && err->exit ? err->exit : 1;
}
