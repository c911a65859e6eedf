/*
 * pb_read.c - the protobuf wire format, read strictly (see pb_read.h).
 * Nothing here allocates: values point into the caller's bytes.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "bytes.h"
#include "pb_read.h"

void tli_pb_init(tli_pb *r, const uint8_t *p, size_t len, const tli_pb_src *src)
{
    memset(r, 0, sizeof *r);
    r->p = p;
    r->len = len;
    r->file_len = len;
    r->src = src;
}

tl_status tli_pb_err(const tli_pb *r, tl_status st, uint64_t off, const char *fmt, ...)
{
    char text[640];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    return tli_error(st, "%s: %s: byte %llu: %s", r->src->fn, r->src->path, (unsigned long long)off, text);
}

/* Running out of a message that ends where the file ends means the file
 * was cut; running out of one that ends earlier means a length inside the
 * file is wrong. */
static tl_status short_of(const tli_pb *r, uint64_t off, uint32_t num, const char *what)
{
    if (r->base + r->len >= r->file_len)
        return tli_pb_err(r, TL_ETRUNCATED, off, "the file ends inside %s (field %u)", what, num);
    return tli_pb_err(r, TL_EFORMAT, off, "%s (field %u) runs past the end of its enclosing message, at byte %llu",
                      what, num, (unsigned long long)(r->base + r->len));
}

/* A varint at p[*pos..len): at most 10 bytes, the 10th at most 1 (64 bits).
 * 0, -1 when the bytes run out, -2 when it is too long. */
static int get_varint(const uint8_t *p, size_t len, size_t *pos, uint64_t *out)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < 10; i++) {
        if (*pos >= len)
            return -1;
        uint8_t b = p[(*pos)++];
        if (i == 9 && b > 1)
            return -2;
        v |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return -2;
}

tl_status tli_pb_next(tli_pb *r, tli_pb_field *f, bool *more)
{
    if (r->pos >= r->len) {
        *more = false;
        return TL_OK;
    }
    const uint64_t at = r->base + r->pos;
    size_t pos = r->pos;
    uint64_t tag;
    int e = get_varint(r->p, r->len, &pos, &tag);
    if (e == -1)
        return short_of(r, at, 0, "a field's tag");
    if (e == -2)
        return tli_pb_err(r, TL_EFORMAT, at, "a field's tag is a varint longer than 64 bits");
    const unsigned wire = (unsigned)(tag & 7);
    const uint64_t num = tag >> 3;
    if (num == 0 || num > 0x1fffffffu)
        return tli_pb_err(r, TL_EFORMAT, at, "field number %llu is outside 1 to 2^29 - 1", (unsigned long long)num);
    tli_pb_field g;
    memset(&g, 0, sizeof g);
    g.num = (uint32_t)num;
    g.wire = wire;
    g.off = at;
    switch (wire) {
    case TLI_PB_VARINT:
        e = get_varint(r->p, r->len, &pos, &g.u);
        if (e == -1)
            return short_of(r, at, g.num, "a varint");
        if (e == -2)
            return tli_pb_err(r, TL_EFORMAT, at, "field %u: a varint longer than 64 bits", g.num);
        break;
    case TLI_PB_I64:
        if (r->len - pos < 8)
            return short_of(r, at, g.num, "an 8-byte value");
        g.u = tli_le64(r->p + pos);
        pos += 8;
        break;
    case TLI_PB_I32:
        if (r->len - pos < 4)
            return short_of(r, at, g.num, "a 4-byte value");
        g.u = tli_le32(r->p + pos);
        pos += 4;
        break;
    case TLI_PB_LEN: {
        uint64_t n;
        e = get_varint(r->p, r->len, &pos, &n);
        if (e == -1)
            return short_of(r, at, g.num, "a length");
        if (e == -2)
            return tli_pb_err(r, TL_EFORMAT, at, "field %u: a length longer than 64 bits", g.num);
        /* Checked against the bytes that are there before anyone uses it. */
        if (n > r->len - pos)
            return short_of(r, at, g.num, "a length-delimited value");
        g.bytes = r->p + pos;
        g.n = (size_t)n;
        pos += (size_t)n;
        break;
    }
    case 3:
    case 4:
        return tli_pb_err(r, TL_EFORMAT, at, "field %u: wire type %u (a group, which ONNX never uses)", g.num, wire);
    default:
        return tli_pb_err(r, TL_EFORMAT, at, "field %u: wire type %u does not exist", g.num, wire);
    }
    r->pos = pos;
    *f = g;
    *more = true;
    return TL_OK;
}

static const char *wire_name(unsigned wire)
{
    switch (wire) {
    case TLI_PB_VARINT: return "a varint (wire type 0)";
    case TLI_PB_I64: return "8 bytes (wire type 1)";
    case TLI_PB_LEN: return "length-delimited (wire type 2)";
    case TLI_PB_I32: return "4 bytes (wire type 5)";
    default: return "an unknown wire type";
    }
}

tl_status tli_pb_want(const tli_pb *r, const tli_pb_field *f, unsigned wire, const char *what)
{
    if (f->wire == wire)
        return TL_OK;
    return tli_pb_err(r, TL_EFORMAT, f->off, "%s (field %u) is %s, expected %s", what, f->num, wire_name(f->wire),
                      wire_name(wire));
}

tl_status tli_pb_enter(tli_pb *sub, const tli_pb *r, const tli_pb_field *f, const char *what)
{
    tl_status st = tli_pb_want(r, f, TLI_PB_LEN, what);
    if (st)
        return st;
    if (r->depth + 1 > TLI_PB_MAX_DEPTH)
        return tli_pb_err(r, TL_ETOOBIG, f->off, "%s nests deeper than %u messages", what, TLI_PB_MAX_DEPTH);
    memset(sub, 0, sizeof *sub);
    sub->p = f->bytes;
    sub->len = f->n;
    sub->base = r->base + (uint64_t)(f->bytes - r->p);
    sub->file_len = r->file_len;
    sub->depth = r->depth + 1;
    sub->src = r->src;
    return TL_OK;
}

tl_status tli_pb_int64(const tli_pb *r, const tli_pb_field *f, int64_t *out, const char *what)
{
    tl_status st = tli_pb_want(r, f, TLI_PB_VARINT, what);
    if (st)
        return st;
    *out = (int64_t)f->u; /* two's complement, as protobuf's int64 */
    return TL_OK;
}

tl_status tli_pb_int32(const tli_pb *r, const tli_pb_field *f, int32_t *out, const char *what)
{
    int64_t v;
    tl_status st = tli_pb_int64(r, f, &v, what);
    if (st)
        return st;
    if (v < INT32_MIN || v > INT32_MAX)
        return tli_pb_err(r, TL_EFORMAT, f->off, "%s (field %u) is %lld, outside a 32-bit integer", what, f->num,
                          (long long)v);
    *out = (int32_t)v;
    return TL_OK;
}

tl_status tli_pb_float(const tli_pb *r, const tli_pb_field *f, float *out, const char *what)
{
    tl_status st = tli_pb_want(r, f, TLI_PB_I32, what);
    if (st)
        return st;
    *out = tli_bits_f32((uint32_t)f->u);
    return TL_OK;
}

tl_status tli_pb_count_int64s(const tli_pb *r, const tli_pb_field *f, size_t *count, const char *what)
{
    if (f->wire == TLI_PB_VARINT) {
        *count = 1;
        return TL_OK;
    }
    tl_status st = tli_pb_want(r, f, TLI_PB_LEN, what);
    if (st)
        return st;
    size_t pos = 0, n = 0;
    while (pos < f->n) {
        uint64_t v;
        size_t at = pos;
        if (get_varint(f->bytes, f->n, &pos, &v) != 0)
            return tli_pb_err(r, TL_EFORMAT, r->base + (uint64_t)(f->bytes - r->p) + at,
                              "%s (field %u): a packed varint is cut or longer than 64 bits", what, f->num);
        n++;
    }
    *count = n;
    return TL_OK;
}

void tli_pb_get_int64s(const tli_pb_field *f, int64_t *out)
{
    if (f->wire == TLI_PB_VARINT) {
        out[0] = (int64_t)f->u;
        return;
    }
    size_t pos = 0, n = 0;
    uint64_t v;
    while (pos < f->n && get_varint(f->bytes, f->n, &pos, &v) == 0)
        out[n++] = (int64_t)v;
}

tl_status tli_pb_count_floats(const tli_pb *r, const tli_pb_field *f, size_t *count, const char *what)
{
    if (f->wire == TLI_PB_I32) {
        *count = 1;
        return TL_OK;
    }
    tl_status st = tli_pb_want(r, f, TLI_PB_LEN, what);
    if (st)
        return st;
    if (f->n % 4)
        return tli_pb_err(r, TL_EFORMAT, f->off, "%s (field %u): %zu packed bytes are not whole 4-byte floats", what,
                          f->num, f->n);
    *count = f->n / 4;
    return TL_OK;
}

void tli_pb_get_floats(const tli_pb_field *f, float *out)
{
    if (f->wire == TLI_PB_I32) {
        out[0] = tli_bits_f32((uint32_t)f->u);
        return;
    }
    for (size_t i = 0; i < f->n / 4; i++)
        out[i] = tli_bits_f32(tli_le32(f->bytes + 4 * i));
}
