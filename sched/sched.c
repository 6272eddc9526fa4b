/* SPDX-License-Identifier: Apache-2.0 */
#include "sched/sched.h"
#include "sched/events.h"
#include "sched/loop.h"
#include "sched/runner.h"
#include "pipeline/cache.h"
#include "pipeline/plan.h"
#include "lib/strbuf.h"
#include "lib/util.h"

#include <signal.h>
#include <sys/random.h>
#include <sys/signalfd.h>

#define MAX_LINE (64 * 1024) /* longer lines are delivered in pieces */

enum step_state {
        S_WAITING,  /* predecessors not done */
        S_READY,    /* in the ready queue, waiting for a slot */
        S_RUNNING,
        S_PASSED,
        S_FAILED,
        S_SKIPPED,
        S_CANCELED,
};

struct sstep {
        const struct plan_step *ps;
        enum step_state state;
        uint32_t n_waiting;      /* predecessors not yet passed */
        char step_id[37];
        struct step_exec x;
        char *snapshot;          /* committed snapshot (owned) */
        bool ephemeral;          /* snapshot to drop at run end */
        char *cache_hit_snapshot;
        char *commit_lock;       /* x.commit_lock (owned) */
        int64_t started_ms;
        uint64_t timeout_timer;
        uint64_t kill_timer;
        bool timed_out;
        bool stopping;           /* cancel requested by the scheduler */
        struct strbuf line[3];   /* partial lines per stream */
};

struct sched {
        const struct plan *plan;
        struct hm_runner *runner;
        struct hm_loop *loop;
        const struct workspace *ws;
        const struct sched_options *o;
        struct hm_sink *sink;
        struct sstep *steps;
        char run_id[37];
        char run_hex[33];
        uint32_t *ready;         /* FIFO of step indices */
        size_t ready_head, ready_tail;
        unsigned running;
        size_t terminal;         /* steps in a terminal state */
        bool failed;             /* some step failed */
        bool stopping;           /* fail-fast / timeout / signal: start nothing new */
        bool run_timed_out;
        bool signaled;
        bool force;              /* second signal: no grace */
        bool late_signal;        /* a signal came once every step was terminal */
        uint64_t run_timer;
        int64_t start_ms;
        bool finishing;
        bool done;
        char **env_home;         /* default env head */
};

/*
 * Random bytes for ids, drawn from getrandom() a pool at a time: a
 * 100k-step run needs 100k step ids, one syscall each was a fifth of the
 * scheduler's time.  The pool is consumed once and wiped as it goes.
 */
static void random_bytes(uint8_t *out, size_t n)
{
        static uint8_t pool[4096];
        static size_t avail;
        while (n > 0) {
                if (avail == 0) {
                        size_t got = 0;
                        while (got < sizeof pool) {
                                ssize_t r = getrandom(pool + got, sizeof pool - got, 0);
                                if (r < 0 && errno == EINTR)
                                        continue;
                                if (r < 0)
                                        abort();
                                got += (size_t) r;
                        }
                        avail = sizeof pool;
                }
                size_t take = n < avail ? n : avail;
                uint8_t *src = pool + sizeof pool - avail;
                memcpy(out, src, take);
                memset(src, 0, take);
                avail -= take;
                out += take;
                n -= take;
        }
}

void hm_uuid4(char out[37])
{
        static const char hex[] = "0123456789abcdef";
        uint8_t b[16];
        random_bytes(b, sizeof b);
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        char *p = out;
        for (int i = 0; i < 16; i++) {
                if (i == 4 || i == 6 || i == 8 || i == 10)
                        *p++ = '-';
                *p++ = hex[b[i] >> 4];
                *p++ = hex[b[i] & 15];
        }
        *p = 0;
}

static struct hm_event ev_for(struct sched *s, enum hm_event_kind kind, struct sstep *st)
{
        struct hm_event ev = { .kind = kind, .ts_ns = now_realtime_ns(), .step_index = -1 };
        if (st) {
                ev.step_index = (int32_t) st->ps->index;
                ev.key = st->ps->key;
                ev.step_id = st->step_id[0] ? st->step_id : NULL;
        }
        return ev;
}

static void emit(struct sched *s, const struct hm_event *ev) { s->sink->emit(s->sink, ev); }

static void flush_sink(void *data)
{
        struct hm_sink *sink = data;
        sink->flush(sink);
}

static void try_start(struct sched *s);
static void maybe_finish(struct sched *s);

static void set_terminal(struct sched *s, struct sstep *st, enum step_state state)
{
        st->state = state;
        s->terminal++;
}

/* Skip every not-yet-started dependent of st, transitively (-k). */
static void skip_dependents(struct sched *s, struct sstep *failed)
{
        size_t n = 0, cap = 16;
        _cleanup_free_ uint32_t *stack = xmalloc(cap * sizeof *stack);
        stack[n++] = failed->ps->index;
        while (n > 0) {
                struct sstep *cur = &s->steps[stack[--n]];
                for (size_t i = 0; i < cur->ps->n_succs; i++) {
                        struct sstep *d = &s->steps[cur->ps->succs[i]];
                        if (d->state != S_WAITING)
                                continue;
                        _cleanup_free_ char *reason = xasprintf("dependency '%s' %s", cur->ps->key,
                                                                cur == failed ? "failed" : "was skipped");
                        struct hm_event ev = ev_for(s, EV_STEP_SKIPPED, d);
                        ev.reason = reason;
                        emit(s, &ev);
                        set_terminal(s, d, S_SKIPPED);
                        if (n == cap) {
                                cap *= 2;
                                stack = xreallocarray(stack, cap, sizeof *stack);
                        }
                        stack[n++] = d->ps->index;
                }
        }
}

static void kill_timer_fired(struct hm_loop *loop, uint64_t id, void *data)
{
        struct sstep *st = data;
        struct sched *s = st->x.sched_data;
        st->kill_timer = 0;
        if (st->state == S_RUNNING)
                s->runner->ops->cancel(s->runner, &st->x, true);
}

/* Ask a running step to stop: SIGTERM now, SIGKILL after the grace period. */
static void stop_step(struct sched *s, struct sstep *st)
{
        if (st->state != S_RUNNING)
                return;
        if (s->force) {
                hm_loop_del_timer(s->loop, st->kill_timer);
                st->kill_timer = 0;
                st->stopping = true;
                s->runner->ops->cancel(s->runner, &st->x, true);
                return;
        }
        if (st->stopping)
                return;
        st->stopping = true;
        s->runner->ops->cancel(s->runner, &st->x, false);
        if (st->state == S_RUNNING && !st->kill_timer)
                st->kill_timer = hm_loop_add_timer(s->loop, s->o->grace_ms, kill_timer_fired, st);
}

/* Fail-fast, pipeline timeout or signal: stop running steps, cancel the rest. */
static void stop_run(struct sched *s, const char *why)
{
        bool first = !s->stopping;
        s->stopping = true;
        if (first) {
                for (size_t i = 0; i < s->plan->n_steps; i++) {
                        struct sstep *st = &s->steps[i];
                        if (st->state != S_WAITING && st->state != S_READY)
                                continue;
                        struct hm_event ev = ev_for(s, EV_STEP_CANCELED, st);
                        ev.reason = why;
                        emit(s, &ev);
                        set_terminal(s, st, S_CANCELED);
                }
        }
        for (size_t i = 0; i < s->plan->n_steps; i++)
                stop_step(s, &s->steps[i]);
        maybe_finish(s);
}

static void flush_line(struct sched *s, struct sstep *st, int stream, const char *p, size_t n)
{
        if (n && p[n - 1] == '\r')
                n--;
        struct hm_event ev = ev_for(s, EV_STEP_LOG, st);
        ev.stream = stream;
        ev.line = p;
        ev.line_len = n;
        emit(s, &ev);
}

static void on_log(struct step_exec *x, int stream, const char *buf, size_t n)
{
        struct sched *s = x->sched_data;
        struct sstep *st = &s->steps[x->step->index];
        if (stream != HM_STREAM_STDERR)
                stream = HM_STREAM_STDOUT;
        struct strbuf *lb = &st->line[stream];
        while (n > 0) {
                const char *nl = memchr(buf, '\n', n);
                size_t take = nl ? (size_t) (nl - buf) : n;
                if (nl && lb->len == 0) {
                        flush_line(s, st, stream, buf, take); /* common case: no copy */
                } else {
                        strbuf_add(lb, buf, take);
                        if (nl) {
                                flush_line(s, st, stream, lb->buf, lb->len);
                                strbuf_reset(lb);
                        } else if (lb->len >= MAX_LINE) {
                                flush_line(s, st, stream, lb->buf, lb->len);
                                strbuf_reset(lb);
                        }
                }
                if (!nl)
                        break;
                buf += take + 1;
                n -= take + 1;
        }
}

static void on_notice(struct step_exec *x, const char *kind, const char *msg)
{
        struct sched *s = x->sched_data;
        struct hm_event ev = ev_for(s, EV_NOTICE, &s->steps[x->step->index]);
        ev.notice_kind = kind;
        ev.message = msg;
        emit(s, &ev);
}

static void step_finished(struct sched *s, struct sstep *st, struct step_result *res)
{
        /* released on return: the index entry is written by then, and no other step started yet */
        _cleanup_close_ int commit_lock_fd = res->commit_locked ? TAKE_FD(res->commit_lock_fd) : -1;
        res->commit_locked = false;
        const struct plan_step *ps = st->ps;
        for (int i = 1; i <= 2; i++)
                if (st->line[i].len) {
                        flush_line(s, st, i, st->line[i].buf, st->line[i].len);
                        strbuf_reset(&st->line[i]);
                }
        hm_loop_del_timer(s->loop, st->timeout_timer);
        hm_loop_del_timer(s->loop, st->kill_timer);
        st->timeout_timer = st->kill_timer = 0;
        s->running--;

        int code;
        bool chain_failure = false;
        _cleanup_free_ char *msg = NULL;
        if (st->timed_out) {
                code = 124;
                chain_failure = true;
                msg = xasprintf("step '%s' timed out after %us", ps->key, ps->timeout_seconds);
        } else if (st->stopping && (res->canceled || res->exit_code != 0 || res->runner_error)) {
                code = 1; /* aborted by fail-fast, pipeline timeout or signal (hm-compat §4.12) */
        } else if (res->runner_error) {
                code = 1;
                chain_failure = true;
                msg = xasprintf("step '%s': %s", ps->key, res->error_msg ? res->error_msg : "runner error");
        } else {
                code = res->exit_code;
                chain_failure = code != 0;
                if (code)
                        msg = xasprintf("step '%s' exited with code %d", ps->key, code);
        }

        if (res->cache_hit) {
                struct hm_event ev = ev_for(s, EV_STEP_CACHE_HIT, st);
                ev.cache_key = ps->cache_key;
                ev.tag = ps->cache_tag;
                emit(s, &ev);
        }
        if (code != 0 && res->snapshot && !res->cache_hit) {
                /*
                 * Committed, then counted as failed (a cancel that arrived while
                 * the engine committed): nothing will use it, drop it at the end
                 * like any ephemeral snapshot instead of leaking it.
                 */
                st->snapshot = TAKE_PTR(res->snapshot);
                st->ephemeral = true;
        }
        if (code == 0 && res->snapshot) {
                st->snapshot = TAKE_PTR(res->snapshot);
                st->ephemeral = !ps->cache_tag;
                if (ps->cache_tag && !res->cache_hit && s->o->cache) {
                        hm_error_t e = NULL;
                        if (cache_index_put(s->o->cache, s->runner->backend_id, ps->cache_tag, st->snapshot, &e) < 0) {
                                /*
                                 * (a full disk) an entry the index does not hold would never be
                                 * evicted: the snapshot goes at the end of the run, and the run
                                 * fails so that the user sees it
                                 */
                                st->ephemeral = true;
                                code = 1;
                                chain_failure = true;
                                free(msg);
                                msg = xasprintf("step '%s': cache index: %s", ps->key, e->msg);
                                hm_error_release(&e);
                        }
                }
        }
        struct hm_event ev = ev_for(s, EV_STEP_END, st);
        ev.exit_code = code;
        ev.duration_ms = now_ms() - st->started_ms;
        ev.snapshot = code == 0 ? st->snapshot : NULL;
        emit(s, &ev);
        if (chain_failure) {
                struct hm_event cf = ev_for(s, EV_CHAIN_FAILED, st);
                cf.chain_idx = ps->chain_id;
                cf.exit_code = code;
                cf.message = msg;
                emit(s, &cf);
        }
        /* the scheduler takes the result's strings (runner.h): leave nothing for the runner to free */
        free(TAKE_PTR(res->snapshot));
        free(TAKE_PTR(res->error_msg));

        if (code == 0) {
                set_terminal(s, st, S_PASSED);
                for (size_t i = 0; i < ps->n_succs; i++) {
                        struct sstep *d = &s->steps[ps->succs[i]];
                        if (d->state == S_WAITING && --d->n_waiting == 0) {
                                d->state = S_READY;
                                s->ready[s->ready_tail++] = d->ps->index;
                        }
                }
        } else {
                set_terminal(s, st, S_FAILED);
                s->failed = true;
                skip_dependents(s, st);
                if (!s->o->keep_going && !s->stopping) {
                        _cleanup_free_ char *why = xasprintf("step '%s' failed (fail-fast; -k keeps going)", ps->key);
                        stop_run(s, why);
                }
        }
}

static void on_done(struct step_exec *x, struct step_result *res)
{
        struct sched *s = x->sched_data;
        step_finished(s, &s->steps[x->step->index], res);
        try_start(s);
        maybe_finish(s);
}

static void step_timeout_fired(struct hm_loop *loop, uint64_t id, void *data)
{
        struct sstep *st = data;
        struct sched *s = st->x.sched_data;
        st->timeout_timer = 0;
        if (st->state != S_RUNNING)
                return;
        st->timed_out = true;
        stop_step(s, st);
}

static char **step_env(const struct plan_step *ps)
{
        char **env = NULL;
        bool has_home = false;
        for (size_t i = 0; i < ps->n_env; i++)
                if (!strcmp(ps->env[i].key, "HOME"))
                        has_home = true;
        if (!has_home)
                strv_push(&env, "HOME=/root");
        for (size_t i = 0; i < ps->n_env; i++)
                strv_push_take(&env, xasprintf("%s=%s", ps->env[i].key, ps->env[i].value));
        if (!env)
                env = xcalloc(1, sizeof(char *));
        return env;
}

static void start_step(struct sched *s, struct sstep *st)
{
        const struct plan_step *ps = st->ps;
        hm_uuid4(st->step_id);
        st->state = S_RUNNING;
        s->running++;
        st->started_ms = now_ms();

        const char *parent_key = ps->parent >= 0 ? s->plan->steps[ps->parent].key : NULL;
        struct hm_event ev = ev_for(s, EV_STEP_QUEUED, st);
        ev.chain_idx = ps->chain_pos;
        ev.parent_key = parent_key;
        ev.display_name = ps->display_name;
        emit(s, &ev);

        struct step_exec *x = &st->x;
        memset(x, 0, sizeof *x);
        x->plan = s->plan;
        x->step = ps;
        x->run_id = s->run_hex;
        x->parent_snapshot = ps->parent >= 0 ? s->steps[ps->parent].snapshot : NULL;
        x->image = x->parent_snapshot ? NULL : (ps->image ? ps->image : s->o->default_image);
        x->cache_tag = ps->cache_tag;
        x->env = step_env(ps);
        x->ws = s->ws;
        x->on_log = on_log;
        x->on_notice = on_notice;
        x->on_done = on_done;
        x->sched_data = s;
        if (ps->cache_tag && s->o->cache) {
                /* HM_TEST_NO_COMMIT_LOCK=1: test-only, the control of test_cache_race.py */
                const char *nolock = getenv("HM_TEST_NO_COMMIT_LOCK");
                free(st->commit_lock);
                st->commit_lock = nolock && !strcmp(nolock, "1")
                                          ? NULL
                                          : cache_index_commit_lock_path(s->o->cache, s->runner->backend_id,
                                                                         ps->cache_tag);
                x->commit_lock = st->commit_lock;
                hm_error_t e = NULL;
                char *snap = NULL;
                int r = cache_index_get(s->o->cache, s->runner->backend_id, ps->cache_tag, &snap, &e);
                if (r < 0) {
                        on_notice(x, "cache", e->msg);
                        hm_error_release(&e);
                }
                free(snap);
                x->cache_lookup = r > 0;
        }

        ev = ev_for(s, EV_STEP_START, st);
        ev.runner = s->runner->ops->name;
        ev.image = ps->parent >= 0 ? NULL : x->image;
        emit(s, &ev);

        if (ps->timeout_seconds)
                st->timeout_timer = hm_loop_add_timer(s->loop, (int64_t) ps->timeout_seconds * 1000,
                                                      step_timeout_fired, st);
        hm_error_t e = NULL;
        if (s->runner->ops->start(s->runner, x, &e) < 0) {
                struct step_result res = { .exit_code = 1, .runner_error = true, .error_msg = xstrdup(e->msg) };
                hm_error_release(&e);
                step_finished(s, st, &res);
        }
}

static void try_start(struct sched *s)
{
        while (!s->stopping && s->running < s->o->parallelism && s->ready_head < s->ready_tail) {
                struct sstep *st = &s->steps[s->ready[s->ready_head++]];
                if (st->state != S_READY)
                        continue;
                start_step(s, st);
        }
}

static void emit_build_end(struct sched *s)
{
        struct hm_event ev = ev_for(s, EV_BUILD_END, NULL);
        ev.exit_code = s->run_timed_out ? 124 : s->signaled ? 130 : s->failed ? 1 : 0;
        ev.duration_ms = now_ms() - s->start_ms;
        emit(s, &ev);
        s->done = true;
        hm_loop_stop(s->loop);
}

static void snapshots_dropped(void *data)
{
        emit_build_end(data);
}

static void runner_warn(void *data, const char *msg)
{
        struct sched *s = data;
        struct hm_event ev = ev_for(s, EV_NOTICE, NULL);
        ev.notice_kind = "cleanup";
        ev.message = msg;
        emit(s, &ev);
}

/* Every step is terminal: reap ephemeral snapshots, apply cache eviction, end. */
static void finish(struct sched *s)
{
        /* counted, not strv_push: a 100k-step run drops 100k snapshots */
        size_t n_drop = 0, cap = 1;
        for (size_t i = 0; i < s->plan->n_steps; i++)
                cap += s->steps[i].snapshot && s->steps[i].ephemeral;
        char **drop = xcalloc(cap, sizeof *drop);
        for (size_t i = 0; i < s->plan->n_steps; i++)
                if (s->steps[i].snapshot && s->steps[i].ephemeral)
                        drop[n_drop++] = xstrdup(s->steps[i].snapshot);
        if (s->o->cache) {
                struct cache_entry *ev = NULL;
                size_t n = 0;
                hm_error_t e = NULL;
                if (cache_index_evict(s->o->cache, s->runner->backend_id, s->o->cache_capacity, &ev, &n, &e) < 0) {
                        runner_warn(s, e->msg);
                        hm_error_release(&e);
                }
                drop = xreallocarray(drop, n_drop + n + 1, sizeof *drop);
                for (size_t i = 0; i < n; i++)
                        drop[n_drop++] = xstrdup(ev[i].snapshot);
                drop[n_drop] = NULL;
                cache_entries_free(ev, n);
        }
        if (!n_drop) {
                free(drop);
                emit_build_end(s);
                return;
        }
        s->runner->ops->drop_snapshots(s->runner, drop, snapshots_dropped, s);
        strv_free(drop);
}

static void maybe_finish(struct sched *s)
{
        if (s->finishing || s->terminal < s->plan->n_steps || s->running > 0)
                return;
        s->finishing = true;
        hm_loop_del_timer(s->loop, s->run_timer);
        s->run_timer = 0;
        finish(s);
}

static void run_timeout_fired(struct hm_loop *loop, uint64_t id, void *data)
{
        struct sched *s = data;
        s->run_timer = 0;
        if (s->finishing)
                return;
        s->run_timed_out = true;
        _cleanup_free_ char *why = xasprintf("pipeline timed out after %us", s->plan->timeout_seconds);
        struct hm_event ev = ev_for(s, EV_NOTICE, NULL);
        ev.notice_kind = "timeout";
        ev.message = why;
        emit(s, &ev);
        stop_run(s, why);
}

static void signal_notice(struct sched *s, const char *why)
{
        struct hm_event ev = ev_for(s, EV_NOTICE, NULL);
        ev.notice_kind = "signal";
        ev.message = why;
        emit(s, &ev);
}

/* The second signal: no grace for the steps, and the runner stops waiting for what does not answer. */
static void go_without_grace(struct sched *s)
{
        s->force = true;
        if (s->runner->ops->hurry)
                s->runner->ops->hurry(s->runner);
}

static void on_signal(struct hm_loop *loop, int fd, short revents, void *data)
{
        struct sched *s = data;
        struct signalfd_siginfo si;
        while (read(fd, &si, sizeof si) == (ssize_t) sizeof si) {
                const char *sig = strsignal((int) si.ssi_signo);
                if (s->finishing) {
                        /* the outcome stands; only the clean-up is left, which a second signal gives up */
                        bool second = s->signaled || s->late_signal;
                        s->late_signal = true;
                        if (second && !s->force) {
                                _cleanup_free_ char *why = xasprintf("interrupted by %s again: giving up the clean-up", sig);
                                signal_notice(s, why);
                                go_without_grace(s);
                        }
                        continue;
                }
                bool second = s->signaled;
                s->signaled = true;
                if (second)
                        go_without_grace(s);
                _cleanup_free_ char *why = xasprintf("interrupted by %s%s", sig, second ? " again: stopping without grace" : "");
                signal_notice(s, why);
                stop_run(s, why);
        }
}

int sched_run(const struct plan *plan, struct hm_runner *runner, struct hm_loop *loop, const struct workspace *ws,
              const struct sched_options *o, struct hm_sink *sink, int *ret_exit, hm_error_t *err)
{
        struct sched s = {
                .plan = plan, .runner = runner, .loop = loop, .ws = ws, .o = o, .sink = sink,
        };
        hm_uuid4(s.run_id);
        for (size_t i = 0, j = 0; s.run_id[i]; i++)
                if (s.run_id[i] != '-')
                        s.run_hex[j++] = s.run_id[i];
        s.steps = xcalloc(plan->n_steps ? plan->n_steps : 1, sizeof *s.steps);
        s.ready = xcalloc(plan->n_steps ? plan->n_steps : 1, sizeof *s.ready);
        runner->warn = runner_warn;
        runner->warn_data = &s;

        s.start_ms = now_ms();
        struct hm_event ev = ev_for(&s, EV_BUILD_START, NULL);
        ev.run_id = s.run_id;
        ev.step_count = plan->n_steps;
        ev.chain_count = plan->n_chains;
        ev.default_runner = runner->ops->name;
        emit(&s, &ev);
        if (o->reap_notice) {
                struct hm_event n = ev_for(&s, EV_NOTICE, NULL);
                n.notice_kind = "reap";
                n.message = o->reap_notice;
                emit(&s, &n);
        }

        /* seed the ready queue in topological order */
        for (size_t i = 0; i < plan->n_steps; i++) {
                struct sstep *st = &s.steps[plan->order[i]];
                st->ps = &plan->steps[plan->order[i]];
                st->n_waiting = (uint32_t) st->ps->n_preds;
                for (int k = 0; k < 3; k++)
                        strbuf_init(&st->line[k], 0);
                if (!st->n_waiting) {
                        st->state = S_READY;
                        s.ready[s.ready_tail++] = st->ps->index;
                }
        }
        int r = 0;
        if (sink->flush)
                hm_loop_set_prepare(loop, flush_sink, sink);
        if (o->signal_fd >= 0) {
                r = hm_loop_add_fd(loop, o->signal_fd, POLLIN, on_signal, &s, err);
                if (r < 0)
                        goto out; /* no cleanup variables in this function */
        }
        if (plan->timeout_seconds)
                s.run_timer = hm_loop_add_timer(loop, (int64_t) plan->timeout_seconds * 1000, run_timeout_fired, &s);
        try_start(&s);
        maybe_finish(&s);
        while (!s.done) {
                r = hm_loop_iterate(loop, -1, err);
                if (r < 0) {
                        /* the loop itself broke: kill what runs, nothing more can be driven */
                        s.force = true;
                        stop_run(&s, "internal error");
                        break;
                }
        }
        if (o->signal_fd >= 0)
                hm_loop_del_fd(loop, o->signal_fd);
        hm_loop_set_prepare(loop, NULL, NULL);
        if (sink->flush)
                sink->flush(sink);
        *ret_exit = s.run_timed_out ? 124 : s.signaled ? 130 : s.failed ? 1 : 0;
out:
        hm_loop_del_timer(loop, s.run_timer);
        for (size_t i = 0; i < plan->n_steps; i++) {
                struct sstep *st = &s.steps[i];
                hm_loop_del_timer(loop, st->timeout_timer);
                hm_loop_del_timer(loop, st->kill_timer);
                free(st->snapshot);
                free(st->commit_lock);
                strv_free((char **) st->x.env);
                for (int k = 0; k < 3; k++)
                        strbuf_release(&st->line[k]);
        }
        free(s.steps);
        free(s.ready);
        runner->warn = NULL;
        runner->warn_data = NULL;
        return r;
}
