/* SPDX-License-Identifier: Apache-2.0 */
/* hm image import SOURCE NAME | ls | rm NAME: images of the built-in runtime's store. */
#include "cmd/cmd.h"
#include "lib/util.h"
#include "oci/image.h"
#include "oci/store.h"

#include <stdio.h>

static const char usage[] = "usage: hm image [--store DIR] import SOURCE NAME | ls | rm NAME\n"
                            "  SOURCE: an OCI layout dir or tar, a `docker save` tar, a rootfs tarball,\n"
                            "          docker://NAME or podman://NAME (exported by that engine)\n";

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
        if (!((!strcmp(verb, "import") && nargs == 2) || (!strcmp(verb, "ls") && nargs == 0) ||
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
        else if (!strcmp(verb, "ls"))
                r = do_ls(s, err);
        else if ((r = oci_store_image_rm(s, argv[i + 1], err)) >= 0)
                printf("removed %s\n", argv[i + 1]);
        return r < 0 ? r : 0;
}
