/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Owners of what a run leaves behind, and who may judge them dead.
 *
 * An owner is the hm process of a run: its pid, its start time (field 22 of
 * /proc/PID/stat, clock ticks since boot), the inode of its pid namespace
 * (/proc/self/ns/pid) and the machine's boot id
 * (/proc/sys/kernel/random/boot_id).  As a label:
 *
 *   <pid>:<starttime>:<pidns inode>:<boot id>     e.g. 4242:81234:4026532451:0b6e...-...
 *   <pid>:<starttime>                             older hm: read as "in the judge's pid namespace"
 *
 * A pid means something only in its own pid namespace: hm in a container
 * with the host's engine socket mounted has pid 7 there and some other pid
 * on the host.  The judgement:
 *
 *   - another boot id: dead (the machine rebooted since);
 *   - the judge's own pid namespace: alive iff /proc/<pid>/stat has that
 *     start time;
 *   - another pid namespace: the judge looks for the namespace among its
 *     /proc/<n>/ns/pid.  Found: alive iff a process of it has that pid there
 *     (the last NSpid of /proc/<n>/status) and that start time, else dead
 *     (a namespace visible at all is visible whole).  Not found: dead only
 *     when the judge is root in the initial pid namespace (which sees every
 *     process of the machine, so the namespace has no process left);
 *     otherwise foreign: not judgeable here, its objects are left alone.
 */
#ifndef HM_OCI_OWNER_H
#define HM_OCI_OWNER_H

#include <stdbool.h>
#include <stdint.h>

/* The kernel's fixed inode number of the initial pid namespace (PROC_PID_INIT_INO). */
#define OWNER_INIT_PIDNS 0xEFFFFFFCULL

struct hm_owner {
        int pid;
        uint64_t start;
        uint64_t pidns; /* 0: not recorded (old label): the judge's own */
        char boot[40];  /* "": not recorded */
};

enum owner_state {
        OWNER_ALIVE,
        OWNER_DEAD,
        OWNER_FOREIGN, /* another pid namespace this process cannot see into */
};

/* This process as an owner, and as a label (heap). */
void owner_self(struct hm_owner *ret);
char *owner_self_label(void);

/* Parse either label form; false for anything else (not ours to judge). */
bool owner_parse(const char *label, struct hm_owner *ret);

/* The judgement above.  Why (may be NULL) gets a static phrase for logs. */
enum owner_state owner_judge(const struct hm_owner *o, const char **ret_why);

/* This process's pid namespace inode (0 when unreadable) and boot id ("" when unreadable). */
uint64_t owner_self_pidns(void);
const char *owner_self_boot(void);

#endif
