/* SPDX-License-Identifier: Apache-2.0 */
#include "lib/curl-loop.h"

#include <poll.h>

#include "lib/util.h"
#include "sched/loop.h"

struct hm_curl_loop {
        struct hm_loop *loop;
        CURLM *multi;
        hm_curl_done_fn done;
        hm_curl_idle_fn idle;
        void *data;
        uint64_t timer_id;
        int depth; /* > 0 while inside curl_multi_socket_action */
        int *fds;  /* fds registered on the loop for libcurl */
        size_t n_fds, cap_fds;
};

/* One round: let libcurl act on fd (or on its timeout), then report what ended. */
static void dispatch(struct hm_curl_loop *cl, curl_socket_t fd, int ev)
{
        int running = 0;
        cl->depth++;
        curl_multi_socket_action(cl->multi, fd, ev, &running);
        cl->depth--;

        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(cl->multi, &left))) {
                if (msg->msg != CURLMSG_DONE)
                        continue;
                /* msg is libcurl's until the next call into it: copy what done needs */
                CURL *easy = msg->easy_handle;
                CURLcode result = msg->data.result;
                char *priv = NULL;
                if (curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv) != CURLE_OK)
                        priv = NULL;
                cl->done(easy, priv, result, cl->data);
        }
        if (cl->idle)
                cl->idle(cl->data);
}

static void on_fd(struct hm_loop *loop, int fd, short revents, void *data)
{
        int ev = 0;
        if (revents & (POLLIN | POLLHUP))
                ev |= CURL_CSELECT_IN;
        if (revents & POLLOUT)
                ev |= CURL_CSELECT_OUT;
        if (revents & (POLLERR | POLLNVAL))
                ev |= CURL_CSELECT_ERR;
        dispatch(data, fd, ev);
}

static void on_timer(struct hm_loop *loop, uint64_t id, void *data)
{
        struct hm_curl_loop *cl = data;
        cl->timer_id = 0;
        dispatch(cl, CURL_SOCKET_TIMEOUT, 0);
}

static void fds_remove(struct hm_curl_loop *cl, int fd)
{
        for (size_t i = 0; i < cl->n_fds; i++) {
                if (cl->fds[i] == fd) {
                        cl->fds[i] = cl->fds[--cl->n_fds];
                        return;
                }
        }
}

static int socket_cb(CURL *e, curl_socket_t s, int what, void *userp, void *socketp)
{
        struct hm_curl_loop *cl = userp;
        if (what == CURL_POLL_REMOVE) {
                hm_loop_del_fd(cl->loop, s);
                fds_remove(cl, s);
                return 0;
        }
        short events = (short) (((what & CURL_POLL_IN) ? POLLIN : 0) | ((what & CURL_POLL_OUT) ? POLLOUT : 0));
        if (hm_loop_has_fd(cl->loop, s)) {
                hm_loop_mod_fd(cl->loop, s, events);
                return 0;
        }
        hm_error_t err = NULL;
        if (hm_loop_add_fd(cl->loop, s, events, on_fd, cl, &err) < 0) {
                hm_error_release(&err);
                return -1; /* libcurl fails the transfer */
        }
        if (cl->n_fds == cl->cap_fds) {
                cl->cap_fds = cl->cap_fds ? cl->cap_fds * 2 : 8;
                cl->fds = xreallocarray(cl->fds, cl->cap_fds, sizeof *cl->fds);
        }
        cl->fds[cl->n_fds++] = s;
        return 0;
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
        struct hm_curl_loop *cl = userp;
        if (cl->timer_id) {
                hm_loop_del_timer(cl->loop, cl->timer_id);
                cl->timer_id = 0;
        }
        if (timeout_ms >= 0)
                cl->timer_id = hm_loop_add_timer(cl->loop, timeout_ms, on_timer, cl);
        return 0;
}

#define MSETOPT(m, opt, val)                                                                   \
        do {                                                                                   \
                CURLMcode rc_ = curl_multi_setopt((m), (opt), (val));                          \
                if (rc_ != CURLM_OK)                                                           \
                        return hm_error_set(err, EINVAL, "curl multi option %s: %s", #opt,     \
                                            curl_multi_strerror(rc_));                         \
        } while (0)

int hm_curl_loop_new(struct hm_loop *loop, hm_curl_done_fn done, hm_curl_idle_fn idle, void *data,
                     struct hm_curl_loop **ret, hm_error_t *err)
{
        static bool global_done;
        if (!global_done) {
                CURLcode rc = curl_global_init(CURL_GLOBAL_DEFAULT);
                if (rc != CURLE_OK)
                        return hm_error_set(err, EIO, "curl_global_init: %s", curl_easy_strerror(rc));
                global_done = true;
        }
        _cleanup_curl_loop_ struct hm_curl_loop *cl = xzalloc(sizeof *cl);
        cl->loop = loop;
        cl->done = done;
        cl->idle = idle;
        cl->data = data;
        cl->multi = curl_multi_init();
        if (!cl->multi)
                return hm_error_set(err, ENOMEM, "curl_multi_init failed");
        MSETOPT(cl->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
        MSETOPT(cl->multi, CURLMOPT_SOCKETDATA, cl);
        MSETOPT(cl->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
        MSETOPT(cl->multi, CURLMOPT_TIMERDATA, cl);
        *ret = TAKE_PTR(cl);
        return 0;
}

void hm_curl_loop_free(struct hm_curl_loop *cl)
{
        if (!cl)
                return;
        for (size_t i = 0; i < cl->n_fds; i++)
                hm_loop_del_fd(cl->loop, cl->fds[i]);
        if (cl->timer_id)
                hm_loop_del_timer(cl->loop, cl->timer_id);
        if (cl->multi) {
                /* the loop may be gone by now: no more callbacks from the cleanup */
                curl_multi_setopt(cl->multi, CURLMOPT_SOCKETFUNCTION, NULL);
                curl_multi_setopt(cl->multi, CURLMOPT_TIMERFUNCTION, NULL);
                curl_multi_cleanup(cl->multi);
        }
        free(cl->fds);
        free(cl);
}

int hm_curl_loop_add(struct hm_curl_loop *cl, CURL *easy, hm_error_t *err)
{
        CURLMcode mc = curl_multi_add_handle(cl->multi, easy);
        if (mc != CURLM_OK)
                return hm_error_set(err, EIO, "curl_multi_add_handle: %s", curl_multi_strerror(mc));
        return 0;
}

void hm_curl_loop_remove(struct hm_curl_loop *cl, CURL *easy)
{
        curl_multi_remove_handle(cl->multi, easy);
}

CURLM *hm_curl_loop_multi(const struct hm_curl_loop *cl) { return cl->multi; }
bool hm_curl_loop_inside(const struct hm_curl_loop *cl) { return cl->depth > 0; }
unsigned hm_curl_loop_n_fds(const struct hm_curl_loop *cl) { return (unsigned) cl->n_fds; }
bool hm_curl_loop_timer_armed(const struct hm_curl_loop *cl) { return cl->timer_id != 0; }
