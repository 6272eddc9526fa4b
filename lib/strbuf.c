/* SPDX-License-Identifier: Apache-2.0 */
#include "lib/strbuf.h"
#include "lib/util.h"

#include <stdint.h>
#include <stdio.h>

char strbuf_empty_[1];

void strbuf_init(struct strbuf *sb, size_t hint)
{
        sb->alloc = sb->len = 0;
        sb->buf = strbuf_empty_;
        if (hint)
                strbuf_grow(sb, hint);
}

void strbuf_release(struct strbuf *sb)
{
        if (sb->alloc)
                free(sb->buf);
        strbuf_init(sb, 0);
}

char *strbuf_detach(struct strbuf *sb, size_t *ret_len)
{
        if (!sb->alloc)
                strbuf_grow(sb, 0);
        char *r = sb->buf;
        if (ret_len)
                *ret_len = sb->len;
        strbuf_init(sb, 0);
        return r;
}

void strbuf_grow(struct strbuf *sb, size_t extra)
{
        size_t need = sb->len + extra + 1;
        if (need <= sb->alloc)
                return;
        size_t n = sb->alloc ? sb->alloc : 64;
        while (n < need)
                n = n * 3 / 2 + 16;
        if (!sb->alloc) {
                sb->buf = xmalloc(n);
                sb->buf[0] = 0;
        } else {
                sb->buf = xrealloc(sb->buf, n);
        }
        sb->alloc = n;
}

void strbuf_reset(struct strbuf *sb)
{
        sb->len = 0;
        if (sb->alloc)
                sb->buf[0] = 0;
}

void strbuf_add(struct strbuf *sb, const void *data, size_t n)
{
        strbuf_grow(sb, n);
        memcpy(sb->buf + sb->len, data, n);
        sb->len += n;
        sb->buf[sb->len] = 0;
}

void strbuf_addstr(struct strbuf *sb, const char *s) { strbuf_add(sb, s, strlen(s)); }

void strbuf_addch(struct strbuf *sb, char c)
{
        strbuf_grow(sb, 1);
        sb->buf[sb->len++] = c;
        sb->buf[sb->len] = 0;
}

void strbuf_vaddf(struct strbuf *sb, const char *fmt, va_list ap)
{
        va_list cp;
        va_copy(cp, ap);
        char probe[1]; /* measure first; a NULL buffer trips gcc's -Wformat-truncation at -O1 */
        int n = vsnprintf(probe, sizeof probe, fmt, cp);
        va_end(cp);
        if (n < 0)
                return;
        strbuf_grow(sb, (size_t) n);
        vsnprintf(sb->buf + sb->len, (size_t) n + 1, fmt, ap);
        sb->len += (size_t) n;
}

void strbuf_addf(struct strbuf *sb, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        strbuf_vaddf(sb, fmt, ap);
        va_end(ap);
}

void strbuf_consume(struct strbuf *sb, size_t n)
{
        if (n >= sb->len) {
                strbuf_reset(sb);
                return;
        }
        memmove(sb->buf, sb->buf + n, sb->len - n);
        sb->len -= n;
        sb->buf[sb->len] = 0;
}

/* Length of the valid UTF-8 sequence at p (1..4), or 0 if invalid. */
static size_t utf8_seq_len(const unsigned char *p, size_t n)
{
        unsigned char c = p[0];
        size_t len;
        uint32_t cp;
        if (c < 0x80)
                return 1;
        else if ((c & 0xe0) == 0xc0)
                len = 2, cp = c & 0x1f;
        else if ((c & 0xf0) == 0xe0)
                len = 3, cp = c & 0x0f;
        else if ((c & 0xf8) == 0xf0)
                len = 4, cp = c & 0x07;
        else
                return 0;
        if (len > n)
                return 0;
        for (size_t i = 1; i < len; i++) {
                if ((p[i] & 0xc0) != 0x80)
                        return 0;
                cp = (cp << 6) | (p[i] & 0x3f);
        }
        /* reject overlong forms, surrogates and out-of-range code points */
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
            (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
                return 0;
        return len;
}

void strbuf_add_json_string(struct strbuf *sb, const char *data, size_t n)
{
        const unsigned char *p = (const unsigned char *) data;
        strbuf_grow(sb, n + 2);
        strbuf_addch(sb, '"');
        size_t i = 0;
        while (i < n) {
                unsigned char c = p[i];
                if (c >= 0x80) {
                        size_t l = utf8_seq_len(p + i, n - i);
                        if (l == 0) {
                                strbuf_add(sb, "\xef\xbf\xbd", 3);
                                i++;
                        } else {
                                strbuf_add(sb, p + i, l);
                                i += l;
                        }
                        continue;
                }
                switch (c) {
                case '"': strbuf_add(sb, "\\\"", 2); break;
                case '\\': strbuf_add(sb, "\\\\", 2); break;
                case '\n': strbuf_add(sb, "\\n", 2); break;
                case '\r': strbuf_add(sb, "\\r", 2); break;
                case '\t': strbuf_add(sb, "\\t", 2); break;
                default:
                        if (c < 0x20 || c == 0x7f)
                                strbuf_addf(sb, "\\u%04x", c);
                        else
                                strbuf_addch(sb, (char) c);
                }
                i++;
        }
        strbuf_addch(sb, '"');
}
