/*
 * fuzz_tar.c - the tar reader (lib/data/tar.c) over plain and gzip
 * streams: ustar, GNU long names and base-256 sizes, pax records. Reads
 * some members' data in pieces and leaves others for tli_tar_next to skip.
 */
#include <stdlib.h>
#include <string.h>

#include "data/tar.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static unsigned char buf[8192];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[512];
    fz_write(path, sizeof path, "in.tar", data, size);
    tli_stream *s = NULL;
    if (tli_stream_open(&s, path, true) != TL_OK)
        return 0;
    tli_tar *t = malloc(sizeof *t);
    if (t == NULL)
        abort();
    tli_tar_init(t, s);
    for (unsigned member = 0; member < 10000; member++) {
        bool end = false;
        tl_status st = tli_tar_next(t, &end);
        if (st != TL_OK && strstr(tl_last_error(), path) == NULL)
            abort(); /* every error names the archive */
        if (st || end)
            break;
        const tli_tar_entry *e = &t->entry;
        if (strlen(e->name) > TLI_TAR_NAME_MAX || e->data_offset != e->header_offset + 512 ||
            t->remaining != e->size)
            abort();
        if (member % 3 == 1)
            continue; /* left for tli_tar_next to skip */
        /* Read up to 3 pieces of this member's data. */
        for (int piece = 0; piece < 3 && t->remaining > 0; piece++) {
            size_t n = t->remaining < (piece == 0 ? 7 : sizeof buf) ? (size_t)t->remaining
                                                                   : (piece == 0 ? 7 : sizeof buf);
            if (tli_tar_read(t, buf, n) != TL_OK)
                goto done;
        }
        /* Asking for more than what is left is refused, never read. */
        if (tli_tar_read(t, buf, (size_t)t->remaining + 1) != TL_EINVAL)
            abort();
    }
done:
    free(t);
    tli_stream_close(s);
    return 0;
}
