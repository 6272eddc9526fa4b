/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer harness for layer extraction (oci_unpack_layer): every input is
 * unpacked as an image layer into a fresh directory.  Besides crashes and
 * sanitizer reports it checks the one property that matters: nothing is ever
 * written outside that directory (a sibling canary stays intact and no new
 * entry appears beside the layer dir).
 */
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "lib/util.h"
#include "oci/store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *base; /* $TMPDIR/hm-fuzz-layer-XXXXXX, removed at exit */
static char *canary;

static void remove_base(void)
{
        if (base)
                (void) rm_rf(base);
}

static size_t count_entries(const char *dir)
{
        size_t n = 0;
        DIR *d = opendir(dir);
        struct dirent *de;
        while (d && (de = readdir(d)))
                n++;
        if (d)
                closedir(d);
        return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (!canary) {
                const char *tmp = getenv("TMPDIR");
                base = xasprintf("%s/hm-fuzz-layer-XXXXXX", tmp && *tmp ? tmp : "/tmp");
                if (!mkdtemp(base))
                        abort();
                atexit(remove_base);
                canary = xasprintf("%s/canary", base);
                int fd = open(canary, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
                if (fd < 0 || write(fd, "c", 1) != 1)
                        abort();
                close(fd);
        }
        int fd = memfd_create("layer", MFD_CLOEXEC);
        if (fd < 0 || write_all(fd, data, size) < 0)
                abort();
        _cleanup_free_ char *dir = xasprintf("%s/layer", base);
        if (mkdir(dir, 0755) < 0)
                abort();
        size_t before = count_entries(base);
        struct oci_unpack_stats st = { 0 };
        hm_error_t err = NULL;
        (void) oci_unpack_layer(fd, dir, "user.", 1u << 24, &st, &err);
        hm_error_release(&err);
        close(fd);
        struct stat s;
        if (stat(canary, &s) < 0 || s.st_size != 1 || count_entries(base) != before)
                abort(); /* an entry escaped the layer directory */
        if (rm_rf(dir) < 0)
                abort();
        return 0;
}
