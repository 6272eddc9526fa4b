/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The run's workspace: the source tree of `-d DIR`, archived once per run.
 * Inside a git work tree: the files git tracks or would not ignore
 * (.gitignore, .git/info/exclude, core.excludesFile); elsewhere every file.
 * Entries named .git or .hm are never included, at any depth; hidden files
 * are; symlinks stay symlinks; modes are kept.
 *
 * The archive is an uncompressed tar in an anonymous memfd whose entries all
 * live under "workspace/" (a "workspace/" directory entry first), so an engine
 * can extract it at "/" and the ns runner can unpack it into a layer.
 */
#ifndef HM_WORKSPACE_H
#define HM_WORKSPACE_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>
#include "lib/error.h"

struct workspace_lazy;

struct workspace {
        int fd;         /* memfd, O_CLOEXEC; read it with pread() from 0 to size (-1 while deferred) */
        uint64_t size;  /* bytes of tar */
        size_t n_files; /* regular files + symlinks archived */
        size_t n_entries; /* entries below workspace/ (files, links, directories) */
        char *root;     /* absolute source root */
        struct workspace_lazy *lazy; /* workspace_defer(): archived by the first workspace_open() */
};

/* uid/gid: numeric owner written into every header (the step user). */
int workspace_build(const char *dir, unsigned uid, unsigned gid, struct workspace **ret, hm_error_t *err);
/*
 * Resolve and check `dir` now, archive it only when a consumer first asks
 * (workspace_open): a run whose steps are all cache hits never lists or
 * reads the tree (no git subprocess).
 */
int workspace_defer(const char *dir, unsigned uid, unsigned gid, struct workspace **ret, hm_error_t *err);
/* The archive's memfd (owned by ws) and size; archives a deferred workspace on the first call. */
int workspace_open(const struct workspace *ws, int *ret_fd, uint64_t *ret_size, hm_error_t *err);
/*
 * After a successful workspace_open(): true when the archive holds nothing
 * but the workspace/ directory itself, so a runner may create an empty
 * /workspace instead of unpacking or uploading.
 */
bool workspace_empty(const struct workspace *ws);
void workspace_free(struct workspace *ws);

#endif
