/*
 * tar.h - a small reader of tar archives (POSIX ustar, GNU and pax
 * extensions for long names and sizes) over a tli_stream, one member at a
 * time and forward only, so a .tar.gz is read as it is decompressed.
 *
 * Only what the dataset readers need: each member's name, type and size,
 * and its data. Links, devices and directories are reported and skipped
 * by the caller; nothing is ever written to disk.
 */
#ifndef TLI_TAR_H
#define TLI_TAR_H

#include "stream.h"

/* Longest member name kept; longer GNU/pax names are marked truncated and
 * match nothing. */
#define TLI_TAR_NAME_MAX 4096

typedef struct tli_tar_entry {
    char name[TLI_TAR_NAME_MAX + 1]; /* leading "./" removed */
    bool name_truncated;
    char type;                       /* '0' regular file (also for '\0' and '7'), '5' directory, ... */
    uint64_t size;                   /* data bytes */
    uint64_t header_offset;          /* decompressed offset of the member's ustar header */
    uint64_t data_offset;            /* decompressed offset of its first data byte */
} tli_tar_entry;

typedef struct tli_tar {
    tli_stream *s;      /* borrowed */
    tli_tar_entry entry;
    uint64_t remaining; /* data bytes of the current entry not yet read */
    uint64_t padding;   /* zero bytes after the data up to the next 512 boundary */
    bool ended;
    /* What GNU 'L' and pax 'x' headers say about the next member. */
    char next_name[TLI_TAR_NAME_MAX + 1];
    bool has_next_name, next_name_truncated, has_next_size;
    uint64_t next_size;
} tli_tar;

/* Start reading the archive in `s` (which stays the caller's). */
void tli_tar_init(tli_tar *t, tli_stream *s);

/* Skip what is left of the current member and read the next header; the
 * extension headers (GNU 'L'/'K', pax 'x'/'g') are applied and not returned.
 * *out_end is true at the end of the archive (two zero blocks, or the data
 * ending exactly between members).
 * Errors: TL_EFORMAT (not a tar header, bad number field, bad pax record),
 * TL_ECHECKSUM (a header's checksum does not match), TL_ETRUNCATED (the
 * data ends inside a header or a member), TL_EIO, TL_ENOMEM, and the
 * stream's gzip errors. Messages give the decompressed byte offset. */
tl_status tli_tar_next(tli_tar *t, bool *out_end);

/* Read exactly n bytes of the current member's data (n <= what remains).
 * Errors: TL_ETRUNCATED when the archive ends first, stream errors. */
tl_status tli_tar_read(tli_tar *t, void *buf, size_t n);

#endif /* TLI_TAR_H */
