/*
 * stream.h - a forward-only byte source over a file, plain or gzip
 * (detected by the magic bytes 1f 8b, never by the file name), decoded
 * through zlib's inflate a buffer at a time so that neither the compressed
 * nor the decompressed file is ever held in memory.
 *
 * Offsets are counted in decompressed bytes (what the format's offsets
 * mean); gzip errors also give the compressed offset. Every error message
 * starts with the file name; the public caller adds its own name in front.
 */
#ifndef TLI_STREAM_H
#define TLI_STREAM_H

#include "../core.h"

typedef struct tli_stream tli_stream;

/* Open `path`. With `detect_gzip`, a file that starts with 1f 8b is
 * decompressed (concatenated gzip members are one stream); otherwise bytes
 * are returned as they are.
 * Errors: TL_ENOTFOUND, TL_EIO (errno text), TL_ENOMEM. *out is NULL then. */
tl_status tli_stream_open(tli_stream **out, const char *path, bool detect_gzip);

void tli_stream_close(tli_stream *s);

/* Read up to n bytes; *got < n only at the end of the data.
 * Errors: TL_EIO (read failed), TL_EFORMAT (corrupt gzip data, or bytes
 * after the last gzip member that are not another member), TL_ETRUNCATED
 * (the file ends inside a gzip member), TL_ENOMEM. */
tl_status tli_stream_read(tli_stream *s, void *buf, size_t n, size_t *got);

/* Read exactly n bytes. When the data ends first: TL_ETRUNCATED with the
 * message "<path>: ends at byte X, inside <what>" (what: e.g. "the header"),
 * and *got (may be NULL) tells how many bytes were read. */
tl_status tli_stream_read_exact(tli_stream *s, void *buf, size_t n, size_t *got, const char *what);

/* Discard n bytes; like read_exact. */
tl_status tli_stream_skip(tli_stream *s, uint64_t n, const char *what);

/* Succeed when no byte is left (which, for gzip, also makes inflate check
 * the CRC-32 and length of the last member). TL_EFORMAT when data remains:
 * "<path>: byte X: <what>". */
tl_status tli_stream_expect_end(tli_stream *s, const char *what);

/* Decompressed bytes delivered so far: the offset of the next byte. */
uint64_t tli_stream_pos(const tli_stream *s);

/* The path given to open (for messages). */
const char *tli_stream_path(const tli_stream *s);

bool tli_stream_is_gzip(const tli_stream *s);

/* The file's size in bytes when it is a regular file (false otherwise). */
bool tli_stream_file_size(const tli_stream *s, uint64_t *out);

/* False when the rest of the file certainly cannot hold `bytes` more
 * decompressed bytes: a plain file's remaining size, or 1032 times a gzip
 * file's remaining compressed size (deflate's best ratio) plus slack. Lets
 * a reader refuse an absurd header before allocating for it. Unknown sizes
 * (pipes) always pass. *out_limit gets the bound (UINT64_MAX if unknown). */
bool tli_stream_may_hold(const tli_stream *s, uint64_t bytes, uint64_t *out_limit);

#endif /* TLI_STREAM_H */
