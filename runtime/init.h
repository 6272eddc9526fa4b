/* SPDX-License-Identifier: Apache-2.0 */
/* The container's pid 1 (forked at step 4b of child.c). */
#ifndef HM_RT_INIT_H
#define HM_RT_INIT_H

#include <stdbool.h>
#include <sys/types.h>

/*
 * Reap every child, forward every signal but SIGCHLD to main_pid, exit
 * with its status (128+N when killed by signal N).
 * subreaper: set PR_SET_CHILD_SUBREAPER (no pid namespace of our own).
 * Expects every signal blocked.  Never returns.
 */
_Noreturn void rt_init_run(pid_t main_pid, bool subreaper);

#endif
