/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer harness for the tar reading path the workspace tests use (and
 * the ns runner's unpacking will use): libarchive restricted to the tar
 * format, reading from memory, visiting every header and all entry data.
 * Invariants checked: libarchive never reports more data than the header
 * size, and a successful read ends in ARCHIVE_EOF or a clean error.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -I. tests/fuzz/fuzz-tar.c \
 *         $(pkg-config --cflags --libs libarchive) -o fuzz-tar
 *   ./fuzz-tar -max_total_time=60 corpus/
 */
#include <archive.h>
#include <archive_entry.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/handles.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void read_entry(struct archive *a, struct archive_entry *e)
{
        /* the fields a consumer looks at; they must be readable whatever the input */
        const char *name = archive_entry_pathname(e);
        const char *link = archive_entry_symlink(e);
        volatile size_t sink = (name ? strlen(name) : 0) + (link ? strlen(link) : 0);
        (void) sink;
        (void) archive_entry_filetype(e);
        (void) archive_entry_perm(e);
        (void) archive_entry_uid(e);
        (void) archive_entry_gid(e);

        int64_t declared = archive_entry_size_is_set(e) ? archive_entry_size(e) : INT64_MAX;
        int64_t total = 0;
        char buf[4096];
        ssize_t n;
        while ((n = archive_read_data(a, buf, sizeof buf)) > 0)
                total += n;
        if (declared >= 0 && total > declared)
                abort(); /* more bytes than the header announced */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        _cleanup_archive_read_ struct archive *a = archive_read_new();
        if (!a)
                return 0;
        archive_read_support_format_tar(a);
        if (archive_read_open_memory(a, data, size) != ARCHIVE_OK)
                return 0;
        struct archive_entry *e;
        int r;
        while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK || r == ARCHIVE_WARN)
                read_entry(a, e);
        return 0;
}
