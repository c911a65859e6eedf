/*
 * pb_read.h - a strict reader of the protobuf wire format (what ONNX files
 * are made of), over bytes already in memory.
 *
 * A message is a sequence of fields, each a varint tag (field number << 3 |
 * wire type) and a value: a varint (wire type 0), 8 bytes (1), a length and
 * that many bytes (2: strings, bytes, nested messages, packed arrays) or 4
 * bytes (5). The reader checks every tag and length against the bytes of
 * the message it is in before anything uses them, refuses the deprecated
 * groups (3, 4) and the unused wire types 6 and 7, limits nesting, and
 * reports each error with the file offset of the byte at fault. Callers
 * skip the fields they do not know by simply going on to the next one.
 */
#ifndef TLI_IO_PB_READ_H
#define TLI_IO_PB_READ_H

#include "../core.h"

/* Deepest nesting a reader enters (an ONNX CNN needs 7: model, graph,
 * value info, type, tensor type, shape, dimension). */
#define TLI_PB_MAX_DEPTH 16u

enum { TLI_PB_VARINT = 0, TLI_PB_I64 = 1, TLI_PB_LEN = 2, TLI_PB_I32 = 5 };

/* Who reads, for messages: "fn: path: byte N: ...". */
typedef struct tli_pb_src {
    const char *fn, *path;
} tli_pb_src;

/* A cursor over one message. */
typedef struct tli_pb {
    const uint8_t *p;      /* the message's bytes */
    size_t len, pos;
    uint64_t base;         /* file offset of p[0] */
    uint64_t file_len;     /* the whole file's length: past it is TL_ETRUNCATED */
    unsigned depth;        /* 0: the file's top message */
    const tli_pb_src *src;
} tli_pb;

/* One field as read: its number, wire type, file offset of its tag, and
 * its value (u for varints and fixed-size values, bytes/n for wire type 2,
 * pointing into the message, not copied). */
typedef struct tli_pb_field {
    uint32_t num;
    unsigned wire;
    uint64_t off;
    uint64_t u;
    const uint8_t *bytes;
    size_t n;
} tli_pb_field;

/* The top message: the whole file of len bytes. */
void tli_pb_init(tli_pb *r, const uint8_t *p, size_t len, const tli_pb_src *src);

/* Read the next field into *f; *more is false (and f untouched) at the
 * message's end. Errors: TL_ETRUNCATED (a tag or value runs past the end
 * of the file), TL_EFORMAT (past the end of an enclosing message, field
 * number 0, a varint longer than 10 bytes, a group or wire type 6/7). */
tl_status tli_pb_next(tli_pb *r, tli_pb_field *f, bool *more);

/* Record an error about the byte at file offset `off` of r's file. */
tl_status tli_pb_err(const tli_pb *r, tl_status st, uint64_t off, const char *fmt, ...) TLI_PRINTF(4, 5);

/* TL_EFORMAT naming `what` unless f has wire type `wire`. */
tl_status tli_pb_want(const tli_pb *r, const tli_pb_field *f, unsigned wire, const char *what);

/* A cursor over the nested message in field f (wire type 2), one level
 * deeper. Errors: TL_EFORMAT (another wire type), TL_ETOOBIG (nested
 * deeper than TLI_PB_MAX_DEPTH). */
tl_status tli_pb_enter(tli_pb *sub, const tli_pb *r, const tli_pb_field *f, const char *what);

/* Typed values of a field. int64 and int32 are varints read as two's
 * complement (protobuf's int64/int32/enum); an int32 must fit. A float is
 * wire type 5. */
tl_status tli_pb_int64(const tli_pb *r, const tli_pb_field *f, int64_t *out, const char *what);
tl_status tli_pb_int32(const tli_pb *r, const tli_pb_field *f, int32_t *out, const char *what);
tl_status tli_pb_float(const tli_pb *r, const tli_pb_field *f, float *out, const char *what);

/* A repeated int64 / float field holds one value per field unpacked, or
 * any number packed in a wire-type-2 field. Count the values of f
 * (checking a packed run is whole varints / whole floats), then read them
 * into out[0..count). */
tl_status tli_pb_count_int64s(const tli_pb *r, const tli_pb_field *f, size_t *count, const char *what);
void tli_pb_get_int64s(const tli_pb_field *f, int64_t *out);
tl_status tli_pb_count_floats(const tli_pb *r, const tli_pb_field *f, size_t *count, const char *what);
void tli_pb_get_floats(const tli_pb_field *f, float *out);

#endif /* TLI_IO_PB_READ_H */
