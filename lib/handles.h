/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Cleanup helpers for third-party library handles.  Each block is guarded by
 * the library's own header guard, so a file gets only the helpers of the
 * libraries it already includes (runtime/ never includes yajl, curl or
 * libarchive, and so never sees theirs).  Include this after the library
 * headers.
 */
#ifndef HM_HANDLES_H
#define HM_HANDLES_H

#ifdef YAJL_TREE_H
static inline void yajl_tree_freep(yajl_val *v) { if (*v) yajl_tree_free(*v); }
#define _cleanup_yajl_tree_ __attribute__((cleanup(yajl_tree_freep)))
#endif
#ifdef __YAJL_GEN_H__
static inline void yajl_gen_freep(yajl_gen *g) { if (*g) yajl_gen_free(*g); }
#define _cleanup_yajl_gen_ __attribute__((cleanup(yajl_gen_freep)))
#endif
#ifdef CURLINC_CURL_H
static inline void curl_easy_cleanupp(CURL **c) { if (*c) curl_easy_cleanup(*c); }
#define _cleanup_curl_easy_ __attribute__((cleanup(curl_easy_cleanupp)))
static inline void curl_slist_free_allp(struct curl_slist **l) { if (*l) curl_slist_free_all(*l); }
#define _cleanup_curl_slist_ __attribute__((cleanup(curl_slist_free_allp)))
static inline void curl_freep(char **p) { if (*p) curl_free(*p); }
#define _cleanup_curl_free_ __attribute__((cleanup(curl_freep)))
#endif
#ifdef ARCHIVE_H_INCLUDED
static inline void archive_read_freep(struct archive **a) { if (*a) archive_read_free(*a); }
#define _cleanup_archive_read_ __attribute__((cleanup(archive_read_freep)))
static inline void archive_write_freep(struct archive **a) { if (*a) archive_write_free(*a); }
#define _cleanup_archive_write_ __attribute__((cleanup(archive_write_freep)))
#endif
#ifdef ARCHIVE_ENTRY_H_INCLUDED
static inline void archive_entry_freep(struct archive_entry **e) { if (*e) archive_entry_free(*e); }
#define _cleanup_archive_entry_ __attribute__((cleanup(archive_entry_freep)))
#endif
#ifdef _SECCOMP_H
static inline void seccomp_releasep(scmp_filter_ctx *c) { if (*c) seccomp_release(*c); }
#define _cleanup_seccomp_ __attribute__((cleanup(seccomp_releasep)))
#endif
#ifdef _SYS_CAPABILITY_H
static inline void cap_freep(void *p) { if (*(void **) p) cap_free(*(void **) p); }
#define _cleanup_cap_ __attribute__((cleanup(cap_freep)))
#endif

#endif
