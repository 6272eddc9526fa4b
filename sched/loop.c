/* SPDX-License-Identifier: Apache-2.0 */
#include "sched/loop.h"
#include "lib/util.h"

struct io_entry {
        hm_io_fn fn;
        void *data;
        short events;
        bool used;
        int slot; /* index in the pollfd array of the current iteration, or -1 */
};

struct timer {
        int64_t deadline;
        uint64_t id;
        hm_timer_fn fn;
        void *data;
};

struct hm_loop {
        struct io_entry *io; /* indexed by fd */
        int io_cap;
        unsigned n_fds;
        struct timer *heap; /* min-heap on (deadline, id) */
        size_t n_heap, cap_heap;
        uint64_t *dead; /* cancelled ids not yet popped (lazy deletion) */
        size_t n_dead, cap_dead;
        uint64_t next_id;
        struct pollfd *pfd;
        int *pfd_fd;
        size_t cap_pfd;
        bool stop;
        void (*prepare)(void *);
        void *prepare_data;
};

void hm_loop_set_prepare(struct hm_loop *l, void (*fn)(void *), void *data)
{
        l->prepare = fn;
        l->prepare_data = data;
}

struct hm_loop *hm_loop_new(void)
{
        struct hm_loop *l = xzalloc(sizeof *l);
        l->next_id = 1;
        return l;
}

void hm_loop_free(struct hm_loop *l)
{
        if (!l)
                return;
        free(l->io);
        free(l->heap);
        free(l->dead);
        free(l->pfd);
        free(l->pfd_fd);
        free(l);
}

int hm_loop_add_fd(struct hm_loop *l, int fd, short events, hm_io_fn fn, void *data, hm_error_t *err)
{
        if (fd < 0)
                return hm_error_set(err, EBADF, "loop: invalid fd %d", fd);
        if (fd >= l->io_cap) {
                int n = l->io_cap ? l->io_cap : 64;
                while (n <= fd)
                        n *= 2;
                l->io = xreallocarray(l->io, (size_t) n, sizeof *l->io);
                memset(l->io + l->io_cap, 0, (size_t) (n - l->io_cap) * sizeof *l->io);
                l->io_cap = n;
        }
        if (l->io[fd].used)
                return hm_error_set(err, EEXIST, "loop: fd %d registered twice", fd);
        l->io[fd] = (struct io_entry){ .fn = fn, .data = data, .events = events, .used = true, .slot = -1 };
        l->n_fds++;
        return 0;
}

bool hm_loop_has_fd(struct hm_loop *l, int fd)
{
        return fd >= 0 && fd < l->io_cap && l->io[fd].used;
}

void hm_loop_mod_fd(struct hm_loop *l, int fd, short events)
{
        if (hm_loop_has_fd(l, fd))
                l->io[fd].events = events;
}

void hm_loop_del_fd(struct hm_loop *l, int fd)
{
        if (!hm_loop_has_fd(l, fd))
                return;
        l->io[fd].used = false;
        l->io[fd].slot = -1;
        l->n_fds--;
}

static bool timer_less(const struct timer *a, const struct timer *b)
{
        return a->deadline < b->deadline || (a->deadline == b->deadline && a->id < b->id);
}

static void heap_swap(struct timer *h, size_t a, size_t b)
{
        struct timer t = h[a];
        h[a] = h[b];
        h[b] = t;
}

static void heap_push(struct hm_loop *l, struct timer t)
{
        if (l->n_heap == l->cap_heap) {
                l->cap_heap = l->cap_heap ? l->cap_heap * 2 : 64;
                l->heap = xreallocarray(l->heap, l->cap_heap, sizeof *l->heap);
        }
        size_t i = l->n_heap++;
        l->heap[i] = t;
        while (i > 0 && timer_less(&l->heap[i], &l->heap[(i - 1) / 2])) {
                heap_swap(l->heap, i, (i - 1) / 2);
                i = (i - 1) / 2;
        }
}

static struct timer heap_pop(struct hm_loop *l)
{
        struct timer top = l->heap[0];
        l->heap[0] = l->heap[--l->n_heap];
        size_t i = 0;
        for (;;) {
                size_t a = 2 * i + 1, b = a + 1, m = i;
                if (a < l->n_heap && timer_less(&l->heap[a], &l->heap[m]))
                        m = a;
                if (b < l->n_heap && timer_less(&l->heap[b], &l->heap[m]))
                        m = b;
                if (m == i)
                        break;
                heap_swap(l->heap, i, m);
                i = m;
        }
        return top;
}

uint64_t hm_loop_add_timer(struct hm_loop *l, int64_t ms, hm_timer_fn fn, void *data)
{
        struct timer t = { .deadline = now_ms() + (ms > 0 ? ms : 0), .id = l->next_id++, .fn = fn, .data = data };
        heap_push(l, t);
        return t.id;
}

void hm_loop_del_timer(struct hm_loop *l, uint64_t id)
{
        if (!id)
                return;
        for (size_t i = 0; i < l->n_heap; i++) {
                if (l->heap[i].id != id)
                        continue;
                if (l->n_dead == l->cap_dead) {
                        l->cap_dead = l->cap_dead ? l->cap_dead * 2 : 16;
                        l->dead = xreallocarray(l->dead, l->cap_dead, sizeof *l->dead);
                }
                l->dead[l->n_dead++] = id;
                return;
        }
}

static bool take_dead(struct hm_loop *l, uint64_t id)
{
        for (size_t i = 0; i < l->n_dead; i++) {
                if (l->dead[i] == id) {
                        l->dead[i] = l->dead[--l->n_dead];
                        return true;
                }
        }
        return false;
}

unsigned hm_loop_n_fds(struct hm_loop *l) { return l->n_fds; }
unsigned hm_loop_n_timers(struct hm_loop *l) { return (unsigned) (l->n_heap - l->n_dead); }

static void run_timers(struct hm_loop *l)
{
        int64_t now = now_ms();
        /* Only timers due now; ones added by callbacks wait for the next iteration. */
        uint64_t limit = l->next_id;
        while (l->n_heap > 0 && l->heap[0].deadline <= now && l->heap[0].id < limit) {
                struct timer t = heap_pop(l);
                if (l->n_dead && take_dead(l, t.id))
                        continue;
                t.fn(l, t.id, t.data);
        }
}

int hm_loop_iterate(struct hm_loop *l, int max_wait_ms, hm_error_t *err)
{
        if (l->prepare)
                l->prepare(l->prepare_data);
        size_t n = 0;
        if (l->cap_pfd < l->n_fds) {
                l->cap_pfd = l->n_fds + 16;
                l->pfd = xreallocarray(l->pfd, l->cap_pfd, sizeof *l->pfd);
                l->pfd_fd = xreallocarray(l->pfd_fd, l->cap_pfd, sizeof *l->pfd_fd);
        }
        for (int fd = 0; fd < l->io_cap && n < l->n_fds; fd++) {
                if (!l->io[fd].used)
                        continue;
                l->pfd[n] = (struct pollfd){ .fd = l->io[fd].events ? fd : -1, .events = l->io[fd].events };
                l->pfd_fd[n] = fd;
                l->io[fd].slot = (int) n;
                n++;
        }

        int timeout = max_wait_ms;
        while (l->n_heap > 0 && l->n_dead && take_dead(l, l->heap[0].id))
                heap_pop(l);
        if (l->n_heap > 0) {
                int64_t d = l->heap[0].deadline - now_ms();
                if (d < 0)
                        d = 0;
                if (timeout < 0 || d < timeout)
                        timeout = d > 1000000 ? 1000000 : (int) d;
        }

        int r = poll(l->pfd, n, timeout);
        if (r < 0) {
                if (errno != EINTR)
                        return hm_error_set(err, errno, "poll");
                r = 0;
        }
        for (size_t i = 0; r > 0 && i < n; i++) {
                if (!l->pfd[i].revents)
                        continue;
                int fd = l->pfd_fd[i];
                /* the fd may have been removed or re-registered by an earlier callback */
                if (!hm_loop_has_fd(l, fd) || l->io[fd].slot != (int) i)
                        continue;
                l->io[fd].fn(l, fd, l->pfd[i].revents, l->io[fd].data);
        }
        run_timers(l);
        return 0;
}

int hm_loop_run(struct hm_loop *l, hm_error_t *err)
{
        l->stop = false;
        while (!l->stop) {
                int r = hm_loop_iterate(l, -1, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

void hm_loop_stop(struct hm_loop *l) { l->stop = true; }
bool hm_loop_stopped(struct hm_loop *l) { return l->stop; }
