/* SPDX-License-Identifier: Apache-2.0 */
/*
 * CVE-2019-5736 class: every hm process a step can see (its pid 1, and pid 2
 * until the command's exec; and whatever a `#!/proc/self/exe` /bin/sh in the
 * image makes the kernel run) is a fork of the hm that started the run, so
 * its /proc/PID/exe is hm's binary.  rt_exec_sealed_self() re-executes the
 * calling hm once from a sealed memfd copy of its binary
 * (memfd_seal_contents(): F_SEAL_FUTURE_WRITE, _SHRINK, _GROW, _SEAL; lib/util.h
 * says why not F_SEAL_WRITE): from then on /proc/self/exe of hm and of every
 * process it forks is that copy, which nothing can write, and which is not
 * the host's file anyway.  One copy per run, shared by every step.
 *
 * Returns 0 when already running from a sealed copy (the second call, after
 * the exec) or when HM_INSECURE_NO_SEALED_EXE=1 (tests: the control that
 * shows the attack, and the cost measurement); on success it does not return.
 */
#ifndef HM_RT_SEALED_H
#define HM_RT_SEALED_H

#include <stdbool.h>

#include "lib/error.h"

int rt_exec_sealed_self(hm_error_t *err);
/* Is /proc/self/exe a memfd with the write seals? */
bool rt_running_sealed(void);

#endif
