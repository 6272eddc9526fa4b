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

/*
 * Commits of one cache tag by concurrent runs.  A runner holds this lock from
 * before it looks at or moves the backend's tag (engine: the old-image lookup
 * and the commit; ns: the layer commit) until the scheduler wrote the index
 * entry (step_result.commit_lock_fd).  The index then always names what the tag
 * names after the last commit, and a tag moved by another run is seen (and its
 * old snapshot dropped) instead of orphaned.  A backend and tag hash to one
 * of 256 files under <index dir>/commit-locks/ (kept, as unlinking a lock file
 * races, and bounded in number; tags that share one take turns).
 *
 * Runners never wait for it inside the loop: they try again after
 * CACHE_COMMIT_LOCK_RETRY_MS while the loop runs on.
 *
 * cache_index_commit_lock_path: heap path.  cache_commit_lock: flock
 * LOCK_EX|LOCK_NB; 1 with *ret_fd held, 0 when another holder has it (another
 * run, or another step of this one), < 0 on error.
 */
char *cache_index_commit_lock_path(const struct cache_index *ci, const char *backend, const char *tag);
int cache_commit_lock(const char *path, int *ret_fd, hm_error_t *err);
/* how often a runner that found the lock taken tries again (the loop runs on meanwhile) */
#define CACHE_COMMIT_LOCK_RETRY_MS 20
/*
 * Test only: $HM_TEST_COMMIT_PAUSE_MS, the time a runner waits inside that
 * window (engine: between the old-image lookup and the commit; ns: between
 * the commit and on_done), so a test can start a second commit of the same
 * tag there (tests/integration/test_cache_race.py).  0 when unset.
 */
int64_t cache_test_commit_pause_ms(void);

#endif
