/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Growable byte buffer (after git's strbuf).
 *
 * Invariants: `buf` is never NULL after strbuf_init() and is always
 * NUL-terminated at buf[len]; `len` excludes that NUL.  strbuf_detach()
 * hands the buffer to the caller and leaves the strbuf empty but valid.
 * strbuf_release() frees and re-initialises, so it may be called twice.
 */
#ifndef HM_STRBUF_H
#define HM_STRBUF_H

#include <stdarg.h>
#include <stddef.h>

struct strbuf {
        size_t alloc;
        size_t len;
        char *buf;
};

#define STRBUF_INIT { 0, 0, strbuf_empty_ }
extern char strbuf_empty_[];

void strbuf_init(struct strbuf *sb, size_t hint);
void strbuf_release(struct strbuf *sb);
static inline void strbuf_releasep(struct strbuf *sb) { strbuf_release(sb); }
#define _cleanup_strbuf_ __attribute__((cleanup(strbuf_releasep)))
char *strbuf_detach(struct strbuf *sb, size_t *ret_len);
void strbuf_grow(struct strbuf *sb, size_t extra);
void strbuf_reset(struct strbuf *sb);
void strbuf_add(struct strbuf *sb, const void *data, size_t n);
void strbuf_addstr(struct strbuf *sb, const char *s);
void strbuf_addch(struct strbuf *sb, char c);
void strbuf_addf(struct strbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void strbuf_vaddf(struct strbuf *sb, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
/* Drop the first n bytes. */
void strbuf_consume(struct strbuf *sb, size_t n);

/*
 * Append `data` as a JSON string literal, quotes included.  Control
 * characters are escaped; invalid UTF-8 sequences become U+FFFD, so the
 * result is always valid JSON whatever bytes a step printed.
 */
void strbuf_add_json_string(struct strbuf *sb, const char *data, size_t n);
static inline void strbuf_add_json_str(struct strbuf *sb, const char *s);

#include <string.h>
static inline void strbuf_add_json_str(struct strbuf *sb, const char *s)
{
        if (s)
                strbuf_add_json_string(sb, s, strlen(s));
        else
                strbuf_add(sb, "null", 4);
}

#endif
