/* SPDX-License-Identifier: Apache-2.0 */
/* Human renderers: --logs lines (hm-compat §5.4) and the live TTY view. */
#include "sched/events.h"
#include "sched/loop.h"
#include "sched/runner.h"
#include "lib/strbuf.h"
#include "lib/util.h"

#include <sys/ioctl.h>

static const int palette[6] = { 31, 32, 33, 34, 35, 36 };

static int key_color(const char *key)
{
        uint32_t h = 0;
        for (const unsigned char *p = (const unsigned char *) key; p && *p; p++)
                h = h * 31 + *p;
        return palette[h % 6];
}

static void add_key(struct strbuf *sb, const char *key, bool color)
{
        /* once per log line: no printf */
        if (color) {
                int c = key_color(key);
                char esc[5] = { '\033', '[', (char) ('0' + c / 10), (char) ('0' + c % 10), 'm' };
                strbuf_add(sb, esc, sizeof esc);
        }
        strbuf_addch(sb, '[');
        strbuf_addstr(sb, key ? key : "?");
        strbuf_addch(sb, ']');
        if (color)
                strbuf_addstr(sb, "\033[0m");
}

/* ---- --logs lines ------------------------------------------------------ */

struct lines_sink {
        struct hm_sink base;
        int fd;
        bool color;
        struct strbuf buf;
        char **seen; /* isolation notices already shown: each is printed once per run */
};

/* True if this notice repeats one already shown (reduced isolation is a per-run fact). */
static bool notice_seen(char ***seen, const struct hm_event *ev)
{
        if (ev->kind != EV_NOTICE || !ev->notice_kind || strcmp(ev->notice_kind, "isolation"))
                return false;
        for (char **p = *seen; p && *p; p++)
                if (!strcmp(*p, ev->message))
                        return true;
        strv_push(seen, ev->message);
        return false;
}

static void lines_format(const struct hm_event *ev, bool color, struct strbuf *sb)
{
        switch (ev->kind) {
        case EV_BUILD_START:
                strbuf_addf(sb, "build: %zu steps in %zu chain(s)\n", ev->step_count, ev->chain_count);
                break;
        case EV_STEP_QUEUED:
                break;
        case EV_STEP_START:
                add_key(sb, ev->key, color);
                if (ev->image)
                        strbuf_addf(sb, " start (runner=%s image=%s)\n", ev->runner, ev->image);
                else
                        strbuf_addf(sb, " start (runner=%s)\n", ev->runner);
                break;
        case EV_STEP_LOG:
                add_key(sb, ev->key, color);
                strbuf_addch(sb, ' ');
                strbuf_add(sb, ev->line, ev->line_len);
                strbuf_addch(sb, '\n');
                break;
        case EV_STEP_CACHE_HIT:
                add_key(sb, ev->key, color);
                strbuf_addf(sb, " cache hit (%s)\n", ev->tag);
                break;
        case EV_STEP_END:
                add_key(sb, ev->key, color);
                strbuf_addf(sb, " end exit=%d duration=%lldms\n", ev->exit_code, (long long) ev->duration_ms);
                break;
        case EV_CHAIN_FAILED:
                strbuf_addf(sb, "chain %u: FAILED at step '%s' (exit=%d): %s\n", ev->chain_idx, ev->key,
                            ev->exit_code, ev->message);
                break;
        case EV_STEP_SKIPPED:
        case EV_STEP_CANCELED:
                add_key(sb, ev->key, color);
                strbuf_addf(sb, " %s: %s\n", ev->kind == EV_STEP_SKIPPED ? "skipped" : "canceled", ev->reason);
                break;
        case EV_NOTICE:
                if (ev->key)
                        add_key(sb, ev->key, color);
                else
                        strbuf_addstr(sb, "hm:");
                strbuf_addf(sb, " %s: %s\n", ev->notice_kind, ev->message);
                break;
        case EV_BUILD_END:
                strbuf_addf(sb, "build: end exit=%d duration=%lldms\n", ev->exit_code, (long long) ev->duration_ms);
                break;
        }
}

static void lines_flush(struct hm_sink *s)
{
        struct lines_sink *l = (struct lines_sink *) s;
        if (l->buf.len)
                (void) write_all(l->fd, l->buf.buf, l->buf.len);
        strbuf_reset(&l->buf);
}

static void lines_emit(struct hm_sink *s, const struct hm_event *ev)
{
        struct lines_sink *l = (struct lines_sink *) s;
        if (notice_seen(&l->seen, ev))
                return;
        lines_format(ev, l->color, &l->buf);
        if (l->buf.len >= HM_SINK_BUFFER || ev->kind == EV_BUILD_END)
                lines_flush(s);
}

static void lines_free(struct hm_sink *s)
{
        struct lines_sink *l = (struct lines_sink *) s;
        lines_flush(s);
        strbuf_release(&l->buf);
        strv_free(l->seen);
        free(l);
}

struct hm_sink *hm_sink_lines_new(int fd, bool color)
{
        struct lines_sink *l = xzalloc(sizeof *l);
        l->base.emit = lines_emit;
        l->base.flush = lines_flush;
        l->base.free = lines_free;
        l->fd = fd;
        l->color = color;
        strbuf_init(&l->buf, 256);
        return &l->base;
}

/* ---- live TTY view ----------------------------------------------------- */

#define TAIL_LINES 20

enum tty_state { T_WAIT, T_RUN, T_PASS, T_FAIL, T_SKIP, T_CANCEL };

struct tty_step {
        char *key;
        char *name;
        enum tty_state state;
        int64_t started_ms;
        int64_t duration_ms;
        int exit_code;
        bool cache_hit;
        char *tail[TAIL_LINES]; /* ring of the last lines */
        unsigned n_tail;
};

struct tty_sink {
        struct hm_sink base;
        int fd;
        struct hm_loop *loop;
        struct tty_step *steps;
        size_t n_steps;
        unsigned live_lines; /* lines of the live area currently on screen */
        uint64_t timer;
        struct strbuf out;   /* permanent lines waiting to be printed above the live area */
        int64_t build_start_ms;
        bool ended;
        char **seen;
};

static int term_width(int fd)
{
        struct winsize ws;
        if (ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 20)
                return ws.ws_col;
        return 100;
}

static void fmt_duration(struct strbuf *sb, int64_t ms)
{
        if (ms < 60000)
                strbuf_addf(sb, "%.1fs", (double) ms / 1000.0);
        else
                strbuf_addf(sb, "%lldm%02llds", (long long) (ms / 60000), (long long) (ms / 1000 % 60));
}

/* Append s cut to at most `cols` display columns (counting UTF-8 code points). */
static void add_cut(struct strbuf *sb, const char *s, int cols)
{
        int used = 0;
        for (const unsigned char *p = (const unsigned char *) s; *p; p++) {
                if ((*p & 0xc0) != 0x80 && used++ >= cols)
                        break;
                if (*p >= 0x20 || *p == '\t')
                        strbuf_addch(sb, (char) (*p == '\t' ? ' ' : *p));
        }
}

static void tty_redraw(struct tty_sink *t)
{
        struct strbuf sb = STRBUF_INIT;
        if (t->live_lines)
                strbuf_addf(&sb, "\r\033[%uA\033[J", t->live_lines);
        else
                strbuf_addstr(&sb, "\r\033[J");
        strbuf_add(&sb, t->out.buf, t->out.len);
        strbuf_reset(&t->out);
        t->live_lines = 0;
        if (!t->ended) {
                static const char *spin[] = { "|", "/", "-", "\\" };
                int64_t now = now_ms();
                int width = term_width(t->fd);
                for (size_t i = 0; i < t->n_steps; i++) {
                        struct tty_step *s = &t->steps[i];
                        if (s->state != T_RUN)
                                continue;
                        struct strbuf line = STRBUF_INIT;
                        strbuf_addf(&line, "%s %s  ", spin[(now / 150) % 4], s->name);
                        fmt_duration(&line, now - s->started_ms);
                        if (s->n_tail) {
                                strbuf_addstr(&line, "  ");
                                strbuf_addstr(&line, s->tail[(s->n_tail - 1) % TAIL_LINES]);
                        }
                        add_cut(&sb, line.buf, width - 1);
                        strbuf_addch(&sb, '\n');
                        strbuf_release(&line);
                        t->live_lines++;
                }
        }
        (void) write_all(t->fd, sb.buf, sb.len);
        strbuf_release(&sb);
}

static void tty_tick(struct hm_loop *loop, uint64_t id, void *data)
{
        struct tty_sink *t = data;
        t->timer = 0;
        tty_redraw(t);
        if (!t->ended)
                t->timer = hm_loop_add_timer(loop, 150, tty_tick, t);
}

static void tty_summary(struct tty_sink *t, int exit_code, int64_t duration)
{
        static const char *names[] = { "waiting", "running", "passed", "failed", "skipped", "canceled" };
        struct strbuf *sb = &t->out;
        size_t w = 4;
        for (size_t i = 0; i < t->n_steps; i++)
                if (t->steps[i].key && strlen(t->steps[i].key) > w)
                        w = strlen(t->steps[i].key);
        if (w > 40)
                w = 40;
        strbuf_addf(sb, "\n%-*s  %-8s  %9s  %s\n", (int) w, "step", "status", "duration", "cache");
        for (size_t i = 0; i < t->n_steps; i++) {
                struct tty_step *s = &t->steps[i];
                if (!s->key)
                        continue;
                struct strbuf d = STRBUF_INIT;
                if (s->state == T_PASS || s->state == T_FAIL)
                        fmt_duration(&d, s->duration_ms);
                else
                        strbuf_addstr(&d, "-");
                char status[32];
                if (s->state == T_FAIL)
                        snprintf(status, sizeof status, "exit %d", s->exit_code);
                else
                        snprintf(status, sizeof status, "%s", names[s->state]);
                strbuf_addf(sb, "%-*.*s  %-8s  %9s  %s\n", (int) w, (int) w, s->key, status, d.buf,
                            s->cache_hit ? "hit" : "-");
                strbuf_release(&d);
        }
        strbuf_addf(sb, "%s Build %s in ", exit_code == 0 ? "\xe2\x9c\x93" : "\xe2\x9c\x97",
                    exit_code == 0 ? "succeeded" : "failed");
        fmt_duration(sb, duration);
        if (exit_code != 0)
                strbuf_addf(sb, " (exit %d)", exit_code);
        strbuf_addch(sb, '\n');
}

static void tty_emit(struct hm_sink *sk, const struct hm_event *ev)
{
        struct tty_sink *t = (struct tty_sink *) sk;
        struct tty_step *s = NULL;
        if (notice_seen(&t->seen, ev))
                return;
        if (ev->step_index >= 0 && (size_t) ev->step_index < t->n_steps) {
                s = &t->steps[ev->step_index];
                if (!s->key && ev->key)
                        s->key = xstrdup(ev->key);
        }
        switch (ev->kind) {
        case EV_BUILD_START:
                t->n_steps = ev->step_count;
                t->steps = xcalloc(t->n_steps, sizeof *t->steps);
                t->build_start_ms = now_ms();
                strbuf_addf(&t->out, "build: %zu steps in %zu chain(s)\n", ev->step_count, ev->chain_count);
                t->timer = hm_loop_add_timer(t->loop, 0, tty_tick, t);
                break;
        case EV_STEP_QUEUED:
                if (s && !s->name)
                        s->name = xstrdup(ev->display_name);
                break;
        case EV_STEP_START:
                if (s) {
                        s->state = T_RUN;
                        s->started_ms = now_ms();
                }
                break;
        case EV_STEP_LOG:
                if (s) {
                        free(s->tail[s->n_tail % TAIL_LINES]);
                        s->tail[s->n_tail % TAIL_LINES] = xstrndup(ev->line, ev->line_len);
                        s->n_tail++;
                }
                break;
        case EV_STEP_CACHE_HIT:
                if (s)
                        s->cache_hit = true;
                break;
        case EV_STEP_END:
                if (!s)
                        break;
                s->state = ev->exit_code == 0 ? T_PASS : T_FAIL;
                s->exit_code = ev->exit_code;
                s->duration_ms = ev->duration_ms;
                if (s->state == T_PASS) {
                        strbuf_addf(&t->out, "\033[32m\xe2\x9c\x93\033[0m %s  ", s->name ? s->name : s->key);
                        fmt_duration(&t->out, ev->duration_ms);
                        strbuf_addstr(&t->out, s->cache_hit ? "  (cached)\n" : "\n");
                } else {
                        strbuf_addf(&t->out, "\033[31m--- %s failed (exit %d) ---\033[0m\n",
                                    s->name ? s->name : s->key, ev->exit_code);
                        unsigned first = s->n_tail > TAIL_LINES ? s->n_tail - TAIL_LINES : 0;
                        for (unsigned i = first; i < s->n_tail; i++)
                                strbuf_addf(&t->out, "  %s\n", s->tail[i % TAIL_LINES]);
                }
                break;
        case EV_CHAIN_FAILED:
                strbuf_addf(&t->out, "chain %u: FAILED at step '%s' (exit=%d): %s\n", ev->chain_idx, ev->key,
                            ev->exit_code, ev->message);
                break;
        case EV_STEP_SKIPPED:
        case EV_STEP_CANCELED:
                if (s)
                        s->state = ev->kind == EV_STEP_SKIPPED ? T_SKIP : T_CANCEL;
                break;
        case EV_NOTICE:
                if (ev->notice_kind && !strcmp(ev->notice_kind, "pull"))
                        break; /* too chatty for the summary view */
                strbuf_addf(&t->out, "%s%s%s %s: %s\n", ev->key ? "[" : "hm:", ev->key ? ev->key : "",
                            ev->key ? "]" : "", ev->notice_kind, ev->message);
                break;
        case EV_BUILD_END:
                t->ended = true;
                hm_loop_del_timer(t->loop, t->timer);
                t->timer = 0;
                tty_summary(t, ev->exit_code, ev->duration_ms);
                tty_redraw(t);
                break;
        }
}

static void tty_free(struct hm_sink *sk)
{
        struct tty_sink *t = (struct tty_sink *) sk;
        if (t->timer)
                hm_loop_del_timer(t->loop, t->timer);
        for (size_t i = 0; i < t->n_steps; i++) {
                free(t->steps[i].key);
                free(t->steps[i].name);
                for (unsigned j = 0; j < TAIL_LINES; j++)
                        free(t->steps[i].tail[j]);
        }
        free(t->steps);
        strv_free(t->seen);
        strbuf_release(&t->out);
        free(t);
}

struct hm_sink *hm_sink_tty_new(int fd, struct hm_loop *loop)
{
        struct tty_sink *t = xzalloc(sizeof *t);
        t->base.emit = tty_emit;
        t->base.free = tty_free;
        t->fd = fd;
        t->loop = loop;
        strbuf_init(&t->out, 0);
        return &t->base;
}
