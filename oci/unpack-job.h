/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Verifying and unpacking one downloaded layer blob in a child process,
 * watched from the run's poll loop: on the loop itself a 1.5 GiB layer held
 * off signals, timers and every other transfer for 7 s.
 *
 * The child (fork, named "hm-unpack") checks the blob's uncompressed digest
 * against diff_id (oci_digest_fd), unpacks it into `dir` (oci_unpack_layer),
 * removes the blob and writes one line to a pipe: "ok <bytes>" or
 * "<errno> <message>".  The parent registers that pipe and the child's pidfd
 * on the loop and calls done once the child has exited and been reaped.
 *
 * The child keeps no fd of the parent but the blob and its end of the pipe:
 * a lock fd, a socket or another child's pipe it inherited would outlive the
 * parent's close of it (a flock belongs to the open file, not the process).
 * It dies with hm (PR_SET_PDEATHSIG), and keeps hm's signal mask: a Ctrl-C on
 * the terminal reaches hm's signalfd, and hm decides.  The caller owns `dir`
 * (made with oci_store_mkdtemp(), so its owner is hm for oci_store_reap())
 * and removes it on failure or cancel.
 *
 * fork() with libcurl's resolver thread possibly alive: the child only runs
 * our code, libarchive and glibc's malloc, whose locks glibc's fork() hands
 * over consistently; it never touches libcurl, stdio or NSS.
 */
#ifndef HM_OCI_UNPACK_JOB_H
#define HM_OCI_UNPACK_JOB_H

#include <stdint.h>
#include <sys/types.h>

#include "lib/error.h"

struct hm_loop;
struct oci_unpack_job;

struct oci_unpack_args {
        const char *blob;         /* the verified (compressed) blob: removed by the child when it is done */
        const char *diff_id;      /* "sha256:<hex>" of the uncompressed tar */
        const char *dir;          /* an empty dir to unpack into */
        const char *xattr_prefix; /* oci_store_xattr_prefix() */
        uint64_t size_limit;      /* oci_store_size_limit() */
};

/*
 * r < 0 with *err set (the callee releases it): the message says what failed
 * ("uncompressed digest ... does not match ...", "read layer: ...", "the
 * unpack process was killed by signal 9"), without the layer's name.
 * bytes: file data written.  Called once, from the loop, as the job's last
 * act: the callback may free the job.
 */
typedef void (*oci_unpack_done_fn)(void *data, int r, hm_error_t *err, uint64_t bytes);

int oci_unpack_job_start(struct hm_loop *loop, const struct oci_unpack_args *a, oci_unpack_done_fn done, void *data,
                         struct oci_unpack_job **ret, hm_error_t *err);
/* A running child is killed (SIGKILL) and reaped, its fds leave the loop; done is never called.  NULL is ignored. */
void oci_unpack_job_free(struct oci_unpack_job *j);
/* The child's pid (0 once reaped). */
pid_t oci_unpack_job_pid(const struct oci_unpack_job *j);

#endif
