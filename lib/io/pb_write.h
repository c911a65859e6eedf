/*
 * pb_write.h - protobuf wire encoding into a growable buffer: what the
 * ONNX writer (onnx_save.c) needs and nothing more.
 *
 * A message is a run of fields, each a tag (field number << 3 | wire type,
 * as a varint) and a value: a varint, a little-endian fixed32, or a
 * length-delimited run of bytes (strings, bytes, packed repeated scalars
 * and nested messages). A nested message's length comes before it but is
 * only known after it: tli_pbw_begin() notes where it starts and
 * tli_pbw_end() moves its bytes up by the size of the length's varint and
 * writes the length in front - every byte is moved once per nesting level
 * (a few copies of a model file in all), and no size pass is needed.
 *
 * Errors are sticky, as tli_wbuf's: a failed allocation, a length beyond
 * TLI_PB_MAX_LEN or unbalanced nesting marks the writer, later calls do
 * nothing, and tli_pbw_status() turns the mark into a status once at the
 * end.
 */
#ifndef TLI_IO_PB_WRITE_H
#define TLI_IO_PB_WRITE_H

#include "../core.h"
#include "bytes.h"

/* Wire types. */
enum { TLI_PB_VARINT = 0, TLI_PB_FIXED64 = 1, TLI_PB_LEN = 2, TLI_PB_FIXED32 = 5 };

/* The longest length-delimited value: protobuf's own limit for a message
 * (2 GiB - 1; its parsers refuse more), so every length fits an int32. */
#define TLI_PB_MAX_LEN ((uint64_t)INT32_MAX)
/* Deepest nesting of open messages (ONNX needs 5: model, graph, value
 * info, type, shape, dimension). */
#define TLI_PB_MAX_DEPTH 8

typedef struct tli_pbw {
    tli_wbuf buf;
    bool too_big;  /* a length beyond TLI_PB_MAX_LEN was asked for */
    bool unbalanced; /* begin/end misused (a bug in the caller) */
    size_t depth;
    size_t open[TLI_PB_MAX_DEPTH]; /* where each open message's bytes start */
} tli_pbw;

void tli_pbw_free(tli_pbw *w);

/* The raw pieces. */
void tli_pbw_varint(tli_pbw *w, uint64_t v);
void tli_pbw_tag(tli_pbw *w, uint32_t field, unsigned wire);

/* Scalar fields. int64 is protobuf's int64 (two's complement, so a
 * negative value takes ten bytes), not sint64's zig-zag. */
void tli_pbw_uint(tli_pbw *w, uint32_t field, uint64_t v);
void tli_pbw_int(tli_pbw *w, uint32_t field, int64_t v);
void tli_pbw_float(tli_pbw *w, uint32_t field, float v);

/* Length-delimited fields: n bytes, a NUL-terminated string. */
void tli_pbw_bytes(tli_pbw *w, uint32_t field, const void *p, size_t n);
void tli_pbw_string(tli_pbw *w, uint32_t field, const char *s);

/* Repeated int64: one field per value (proto2's default encoding, which
 * every reader of a proto2 schema such as onnx.proto parses), or packed
 * into one length-delimited field ([packed = true]; parsers must accept
 * both). */
void tli_pbw_ints(tli_pbw *w, uint32_t field, const int64_t *v, size_t n);
void tli_pbw_ints_packed(tli_pbw *w, uint32_t field, const int64_t *v, size_t n);

/* A nested message as field `field`: its fields go between the two calls. */
void tli_pbw_begin(tli_pbw *w, uint32_t field);
void tli_pbw_end(tli_pbw *w);

/* Only the tag and length of a length-delimited field of n bytes, for a
 * field whose bytes are written elsewhere (a message encoded in pieces
 * and streamed to a file: ONNX's weights go from a tensor's buffer
 * straight to the file). */
void tli_pbw_head(tli_pbw *w, uint32_t field, uint64_t n);

/* TL_OK, or the sticky error as a status with a message naming `fn` and
 * `path`: TL_ENOMEM, TL_ETOOBIG (a message past 2 GiB) or TL_EINVAL
 * (unbalanced nesting: a bug). */
tl_status tli_pbw_status(const tli_pbw *w, const char *fn, const char *path);

#endif /* TLI_IO_PB_WRITE_H */
