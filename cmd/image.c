/* SPDX-License-Identifier: Apache-2.0 */
/* hm image import SOURCE NAME | pull REF | ls | rm NAME: images of the built-in runtime's store. */
#include "cmd/cmd.h"
#include "lib/strbuf.h"
#include "lib/util.h"
#include "oci/image.h"
#include "oci/registry.h"
#include "oci/store.h"

#include <signal.h>
#include <stdio.h>
#include <sys/signalfd.h>
#include <time.h>

#include "sched/loop.h"

static const char usage[] = "usage: hm image [--store DIR] import SOURCE NAME | pull REF [OPTIONS] | ls | rm NAME\n"
                            "  SOURCE: an OCI layout dir or tar, a `docker save` tar, a rootfs tarball,\n"
                            "          docker://NAME or podman://NAME (exported by that engine)\n"
                            "  pull options: --tls-verify=false   unverified TLS, else plain HTTP\n"
                            "                --format human|json  json: one `pull` event per line on stdout\n";

static void human_size(uint64_t n, char buf[32])
{
        static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
        double v = (double) n;
        size_t u = 0;
        while (v >= 1024 && u + 1 < ARRAY_SIZE(units)) {
                v /= 1024;
                u++;
        }
        snprintf(buf, 32, u ? "%.1f %s" : "%.0f %s", v, units[u]);
}

static int do_import(struct oci_store *s, const char *source, const char *name, hm_error_t *err)
{
        struct oci_import_result res;
        int r = oci_image_import(s, source, name, &res, err);
        if (r < 0)
                return r;
        char size[32];
        human_size(res.size, size);
        printf("imported %s (%s) from %s: %zu layers (%zu new), %s, id %.19s\n", res.name,
               oci_source_kind_name(res.kind), source, res.n_layers, res.n_new_layers, size, res.id);
        if (res.stats.skipped_devices)
                printf("note: skipped %zu device nodes (only root may create them)\n", res.stats.skipped_devices);
        oci_import_result_release(&res);
        return 0;
}

static int do_ls(struct oci_store *s, hm_error_t *err)
{
        struct oci_image **v = NULL;
        size_t n = 0;
        int r = oci_store_image_list(s, &v, &n, err);
        if (r < 0)
                return r;
        printf("%-40s %-19s %6s %10s\n", "NAME", "ID", "LAYERS", "SIZE");
        for (size_t i = 0; i < n; i++) {
                char size[32];
                human_size(v[i]->size, size);
                printf("%-40s %-19.19s %6zu %10s\n", v[i]->name, v[i]->id, strv_len(v[i]->layers), size);
        }
        oci_image_list_free(v, n);
        return 0;
}

/* ---- pull ---- */

struct pull_view {
        bool json, tty;
        uint64_t *done, *total; /* per layer */
        size_t n;
};

static void pull_json(const struct oci_pull_progress *pr)
{
        struct strbuf sb = STRBUF_INIT;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        strbuf_addf(&sb, "{\"kind\":\"pull\",\"ts\":%lld.%03ld,\"phase\":", (long long) ts.tv_sec, ts.tv_nsec / 1000000);
        strbuf_add_json_str(&sb, pr->phase);
        strbuf_addstr(&sb, ",\"image\":");
        strbuf_add_json_str(&sb, pr->image);
        strbuf_addstr(&sb, ",\"digest\":");
        if (pr->digest)
                strbuf_add_json_str(&sb, pr->digest);
        else
                strbuf_addstr(&sb, "null");
        strbuf_addf(&sb, ",\"layer\":%zu,\"layers\":%zu,\"done\":%llu,\"total\":%llu}\n", pr->layer, pr->n_layers,
                    (unsigned long long) pr->done, (unsigned long long) pr->total);
        fputs(sb.buf, stdout);
        fflush(stdout);
        strbuf_release(&sb);
}

static void pull_progress(void *data, const struct oci_pull_progress *pr)
{
        struct pull_view *v = data;
        if (v->json)
                return pull_json(pr);
        if (pr->n_layers && pr->n_layers != v->n) {
                v->n = pr->n_layers;
                v->done = xreallocarray(v->done, v->n, sizeof *v->done);
                v->total = xreallocarray(v->total, v->n, sizeof *v->total);
                memset(v->done, 0, v->n * sizeof *v->done);
                memset(v->total, 0, v->n * sizeof *v->total);
        }
        if (pr->layer && pr->layer <= v->n) {
                v->done[pr->layer - 1] = pr->done;
                v->total[pr->layer - 1] = pr->total;
        }
        if (!strcmp(pr->phase, "download") && v->tty) {
                uint64_t d = 0, t = 0;
                for (size_t i = 0; i < v->n; i++)
                        d += v->done[i], t += v->total[i];
                char ds[32], tsz[32];
                human_size(d, ds);
                human_size(t, tsz);
                fprintf(stderr, "\r\033[Kpulling %s: %s of %s", pr->image, ds, tsz);
                return;
        }
        if (!strcmp(pr->phase, "download"))
                return;
        if (v->tty)
                fputs("\r\033[K", stderr);
        if (!strcmp(pr->phase, "waiting"))
                fprintf(stderr, "waiting for another pull of %s\n", pr->image);
        else if (!strcmp(pr->phase, "store-locked"))
                fprintf(stderr, "%s: waiting for the store lock (another process holds it)\n", pr->image);
        else if (!strcmp(pr->phase, "resolved"))
                fprintf(stderr, "%s: manifest %s\n", pr->image, pr->digest);
        else if (!strcmp(pr->phase, "exists"))
                fprintf(stderr, "layer %zu/%zu %.19s: already in the store\n", pr->layer, pr->n_layers, pr->digest);
        else if (!strcmp(pr->phase, "unpacking"))
                fprintf(stderr, "layer %zu/%zu %.19s: downloaded, verifying and unpacking\n", pr->layer, pr->n_layers,
                        pr->digest);
        else if (!strcmp(pr->phase, "unpacked"))
                fprintf(stderr, "layer %zu/%zu %.19s: verified and unpacked\n", pr->layer, pr->n_layers, pr->digest);
}

/* The pull on a loop of its own, with SIGINT/SIGTERM/SIGHUP read from a signalfd: a stop cancels it cleanly. */
struct pull_run {
        struct oci_pull *pull;
        bool done;
        int rc, signo;
        char *stopped; /* what the stop kept (oci_pull_describe_stop) */
        hm_error_t err;
        struct oci_pull_result res;
};

static void on_pull_done(void *data, int r, hm_error_t *err, const struct oci_pull_result *res)
{
        struct pull_run *pr = data;
        pr->pull = NULL;
        pr->done = true;
        pr->rc = r;
        if (r < 0) {
                pr->err = TAKE_PTR(*err);
                return;
        }
        pr->res = *res;
        pr->res.name = xstrdup(res->name);
        pr->res.id = xstrdup(res->id ? res->id : "");
        pr->res.manifest_digest = xstrdup(res->manifest_digest ? res->manifest_digest : "");
}

static void on_stop_signal(struct hm_loop *loop, int fd, short revents, void *data)
{
        struct pull_run *pr = data;
        struct signalfd_siginfo si;
        if (read(fd, &si, sizeof si) != (ssize_t) sizeof si)
                return;
        pr->signo = (int) si.ssi_signo;
        pr->stopped = oci_pull_describe_stop(pr->pull);
        oci_pull_cancel(pr->pull); /* transfers and unpack children stop, tmp/ goes, locks are released */
        pr->pull = NULL;
}

static void loop_freep(struct hm_loop **l) { hm_loop_free(*l); }

static int pull_until_done(struct oci_store *s, const struct oci_pull_options *o, struct pull_run *pr, hm_error_t *err)
{
        sigset_t set, old;
        sigemptyset(&set);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGHUP);
        if (sigprocmask(SIG_BLOCK, &set, &old) < 0)
                return hm_error_set(err, errno, "sigprocmask: %s", strerror(errno));
        _cleanup_close_ int sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
        _cleanup_(loop_freep) struct hm_loop *loop = hm_loop_new();
        int r = sfd < 0 ? hm_error_set(err, errno, "signalfd: %s", strerror(errno))
                        : hm_loop_add_fd(loop, sfd, POLLIN, on_stop_signal, pr, err);
        if (r >= 0)
                r = oci_pull_start(loop, s, o, on_pull_done, pr, &pr->pull, err);
        while (r >= 0 && !pr->done && !pr->signo)
                r = hm_loop_iterate(loop, -1, err);
        struct signalfd_siginfo si;
        if (r >= 0 && pr->done && sfd >= 0 && read(sfd, &si, sizeof si) == (ssize_t) sizeof si)
                pr->signo = (int) si.ssi_signo; /* arrived with the end: said, not left pending to kill us unannounced */
        oci_pull_cancel(pr->pull);
        if (sfd >= 0)
                hm_loop_del_fd(loop, sfd);
        (void) sigprocmask(SIG_SETMASK, &old, NULL);
        return r;
}

static int do_pull(struct oci_store *s, int argc, char **argv, hm_error_t *err)
{
        struct oci_pull_options o = { 0 };
        struct pull_view v = { .tty = isatty(2) };
        for (int i = 0; i < argc; i++) {
                const char *a = argv[i];
                if (!strcmp(a, "--tls-verify=false") || !strcmp(a, "--tls-verify=true") || !strcmp(a, "--tls-verify")) {
                        o.tls_verify_off = !strcmp(a, "--tls-verify=false");
                } else if (!strcmp(a, "--format=json") || !strcmp(a, "--format=human")) {
                        v.json = !strcmp(a, "--format=json");
                } else if (!strcmp(a, "--format") && i + 1 < argc) {
                        const char *f = argv[++i];
                        if (strcmp(f, "json") && strcmp(f, "human"))
                                return hm_error_set_exit(err, 2, EINVAL, "unknown --format '%s' (available: human, json)", f);
                        v.json = !strcmp(f, "json");
                } else if (a[0] == '-' || o.ref) {
                        return hm_error_set_exit(err, 2, EINVAL, "hm image pull: unexpected argument '%s'\n%s", a, usage);
                } else {
                        o.ref = a;
                }
        }
        if (!o.ref)
                return hm_error_set_exit(err, 2, EINVAL, "hm image pull: missing REF\n%s", usage);
        o.on_progress = pull_progress;
        o.data = &v;
        struct pull_run pr = { 0 };
        int r = pull_until_done(s, &o, &pr, err);
        free(v.done);
        free(v.total);
        if (v.tty && !v.json)
                fputs("\r\033[K", stderr);
        if (r < 0)
                return r;
        if (pr.signo && !pr.done) {
                r = hm_error_set_exit(err, 130, EINTR, "pull '%s': stopped by signal %s; %s", o.ref, strsignal(pr.signo),
                                      pr.stopped);
                free(pr.stopped);
                return r;
        }
        if (pr.signo && pr.rc >= 0) { /* it ended as the signal came: the image is complete */
                oci_pull_result_release(&pr.res);
                return hm_error_set_exit(err, 130, EINTR, "pull '%s': stopped by signal %s after the image was stored (it is in the store)",
                                         o.ref, strsignal(pr.signo));
        }
        if (pr.rc < 0) {
                *err = pr.err;
                return pr.rc;
        }
        struct oci_pull_result res = pr.res;
        char size[32];
        human_size(res.bytes_downloaded, size);
        if (!v.json)
                printf("pulled %s: %zu layers (%zu downloaded, %s), id %.19s, manifest %s\n", res.name, res.n_layers,
                       res.n_downloaded, size, res.id, res.manifest_digest);
        oci_pull_result_release(&res);
        return 0;
}

int cmd_image(int argc, char **argv, hm_error_t *err)
{
        const char *store = NULL;
        int i = 1;
        if (i + 1 < argc && !strcmp(argv[i], "--store")) {
                store = argv[i + 1];
                i += 2;
        } else if (i < argc && str_has_prefix(argv[i], "--store=")) {
                store = argv[i] + 8;
                i++;
        }
        if (i >= argc || !strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
                fputs(usage, i >= argc ? stderr : stdout);
                return i >= argc ? 2 : 0;
        }
        const char *verb = argv[i];
        int nargs = argc - i - 1;
        if (!((!strcmp(verb, "import") && nargs == 2) || (!strcmp(verb, "pull") && nargs >= 1) || (!strcmp(verb, "ls") && nargs == 0) ||
              (!strcmp(verb, "rm") && nargs == 1))) {
                fputs(usage, stderr);
                return 2;
        }
        _cleanup_oci_store_ struct oci_store *s = NULL;
        int r = oci_store_open(store, &s, err);
        if (r < 0)
                return r;
        if (!strcmp(verb, "import"))
                r = do_import(s, argv[i + 1], argv[i + 2], err);
        else if (!strcmp(verb, "pull"))
                r = do_pull(s, nargs, argv + i + 1, err);
        else if (!strcmp(verb, "ls"))
                r = do_ls(s, err);
        else if ((r = oci_store_image_rm(s, argv[i + 1], err)) >= 0)
                printf("removed %s\n", argv[i + 1]);
        return r < 0 ? r : 0;
}
