/* SPDX-License-Identifier: Apache-2.0 */
#include "tests/unit/tap.h"
#include <stdarg.h>
#include <stdio.h>

static int n_tests, n_failed;

void tap_plan_later(void) {}

bool tap_ok(bool cond, const char *fmt, ...)
{
        va_list ap;
        n_tests++;
        if (!cond)
                n_failed++;
        printf("%s %d - ", cond ? "ok" : "not ok", n_tests);
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        putchar('\n');
        fflush(stdout);
        return cond;
}

void tap_diag(const char *fmt, ...)
{
        va_list ap;
        printf("# ");
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        putchar('\n');
}

int tap_done(void)
{
        printf("1..%d\n", n_tests);
        return n_failed ? 1 : 0;
}
