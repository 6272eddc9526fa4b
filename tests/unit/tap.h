/* SPDX-License-Identifier: Apache-2.0 */
/* Minimal TAP producer for the C unit tests. */
#ifndef HM_TAP_H
#define HM_TAP_H
#include <stdbool.h>
void tap_plan_later(void);
bool tap_ok(bool cond, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void tap_diag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Print the plan line and return the process exit code (0 if all passed). */
int tap_done(void);
#define TAP_IS_STR(got, want, ...)                                                          \
        do {                                                                                \
                const char *g_ = (got), *w_ = (want);                                       \
                if (!tap_ok(g_ && w_ ? strcmp(g_, w_) == 0 : g_ == w_, __VA_ARGS__))        \
                        tap_diag("  got: '%s'\n  want: '%s'", g_ ? g_ : "(null)", w_ ? w_ : "(null)"); \
        } while (0)
#endif
