/*
 * fuzz_gzip.c - the byte stream under every dataset reader (lib/data/
 * gzstream.c): gzip detection, inflate across members, trailing data,
 * truncation, and reads of every size (1 byte up to larger than the
 * stream's buffer, which takes the unbuffered path for plain files).
 */
#include <stdlib.h>
#include <string.h>

#include "data/stream.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static unsigned char buf[(size_t)1 << 17];

/* An error must come with a sentence that names the file. */
static void check_error(tl_status st, const char *path)
{
    if (st != TL_OK && strstr(tl_last_error(), path) == NULL)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const size_t sizes[] = {1, 3, 511, 4096, 70000, sizeof buf, 17};
    char path[512];
    fz_write(path, sizeof path, "in", data, size);
    tli_stream *s = NULL;
    tl_status st = tli_stream_open(&s, path, true);
    check_error(st, path);
    if (st)
        return 0;
    uint64_t limit = 0;
    (void)tli_stream_may_hold(s, size, &limit);
    for (unsigned k = 0;; k++) {
        size_t n = sizes[k % (sizeof sizes / sizeof *sizes)], got = 0;
        uint64_t before = tli_stream_pos(s);
        if (k % 5 == 4) {
            st = tli_stream_skip(s, n, "skipped bytes");
            check_error(st, path);
            if (st)
                break;
            continue;
        }
        st = tli_stream_read(s, buf, n, &got);
        check_error(st, path);
        if (got > n || tli_stream_pos(s) != before + got)
            abort();
        if (st || got < n)
            break;
    }
    if (st == TL_OK)
        check_error(tli_stream_expect_end(s, "data after the end"), path);
    tli_stream_close(s);
    return 0;
}
