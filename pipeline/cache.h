/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The per-user cache index: which cache tags exist on which backend, with
 * LRU bookkeeping.  File: $XDG_CACHE_HOME/hm/index (default ~/.cache/hm).
 * Concurrent hm runs share it safely: every change is made under an flock()
 * on a lock file, by reading the current file, applying the change and
 * writing a new file that is fsync'd and renamed into place.
 *
 * `backend` names the store a tag lives in ("docker:/run/x.sock",
 * "podman:/run/y.sock", "ns:/var/lib/hm"); the same tag on two backends is
 * two entries.
 */
#ifndef HM_CACHE_H
#define HM_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "lib/error.h"

#define HM_CACHE_DEFAULT_CAPACITY 64

struct cache_entry {
        char *backend;
        char *tag;
        char *snapshot;      /* backend's reference for the tag (image id, layer id) */
        int64_t accessed_at; /* unix seconds */
};

struct cache_index;

/* path NULL: the default location.  Creates directories as needed. */
int cache_index_open(const char *path, struct cache_index **ret, hm_error_t *err);
void cache_index_free(struct cache_index *ci);
/* Look up (and on a hit bump accessed_at, persisted).  Returns 1 hit, 0 miss. */
int cache_index_get(struct cache_index *ci, const char *backend, const char *tag, char **ret_snapshot,
                    hm_error_t *err);
int cache_index_put(struct cache_index *ci, const char *backend, const char *tag, const char *snapshot,
                    hm_error_t *err);
int cache_index_remove(struct cache_index *ci, const char *backend, const char *tag, hm_error_t *err);
/*
 * Evict least recently used entries of `backend` beyond `capacity`; the
 * removed entries are returned (caller frees with cache_entries_free) so the
 * runner can delete their snapshots.  Called once at the end of a run.
 */
int cache_index_evict(struct cache_index *ci, const char *backend, size_t capacity,
                      struct cache_entry **ret, size_t *ret_n, hm_error_t *err);
/* A snapshot of all entries (for `hm cache ls`). */
int cache_index_list(struct cache_index *ci, struct cache_entry **ret, size_t *ret_n, hm_error_t *err);
void cache_entries_free(struct cache_entry *e, size_t n);

#endif
