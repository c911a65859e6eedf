/* pb_write.c - protobuf wire encoding (see pb_write.h). */
#include "pb_write.h"

void tli_pbw_free(tli_pbw *w)
{
    tli_wbuf_free(&w->buf);
    w->depth = 0;
}

static bool pbw_ok(const tli_pbw *w)
{
    return !w->buf.failed && !w->too_big && !w->unbalanced;
}

/* The varint of v into b (at most 10 bytes); its length. */
static size_t varint_encode(uint8_t b[10], uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        b[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    b[n++] = (uint8_t)v;
    return n;
}

void tli_pbw_varint(tli_pbw *w, uint64_t v)
{
    uint8_t b[10];
    if (pbw_ok(w))
        tli_wbuf_bytes(&w->buf, b, varint_encode(b, v));
}

void tli_pbw_tag(tli_pbw *w, uint32_t field, unsigned wire)
{
    /* Field numbers are 29-bit; ONNX's are all below 32. */
    tli_pbw_varint(w, (uint64_t)field << 3 | (wire & 7u));
}

void tli_pbw_uint(tli_pbw *w, uint32_t field, uint64_t v)
{
    tli_pbw_tag(w, field, TLI_PB_VARINT);
    tli_pbw_varint(w, v);
}

void tli_pbw_int(tli_pbw *w, uint32_t field, int64_t v)
{
    tli_pbw_uint(w, field, (uint64_t)v);
}

void tli_pbw_float(tli_pbw *w, uint32_t field, float v)
{
    uint8_t b[4];
    tli_put_le32(b, tli_f32_bits(v));
    tli_pbw_tag(w, field, TLI_PB_FIXED32);
    if (pbw_ok(w))
        tli_wbuf_bytes(&w->buf, b, sizeof b);
}

/* Tag and length of a length-delimited field of n bytes; false when it
 * cannot be written. */
static bool len_head(tli_pbw *w, uint32_t field, uint64_t n)
{
    if (n > TLI_PB_MAX_LEN)
        w->too_big = true;
    tli_pbw_tag(w, field, TLI_PB_LEN);
    tli_pbw_varint(w, n);
    return pbw_ok(w);
}

void tli_pbw_bytes(tli_pbw *w, uint32_t field, const void *p, size_t n)
{
    if (len_head(w, field, n))
        tli_wbuf_bytes(&w->buf, p, n);
}

void tli_pbw_string(tli_pbw *w, uint32_t field, const char *s)
{
    tli_pbw_bytes(w, field, s, strlen(s));
}

void tli_pbw_ints(tli_pbw *w, uint32_t field, const int64_t *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        tli_pbw_int(w, field, v[i]);
}

void tli_pbw_ints_packed(tli_pbw *w, uint32_t field, const int64_t *v, size_t n)
{
    uint64_t len = 0;
    uint8_t b[10];
    for (size_t i = 0; i < n; i++)
        len += varint_encode(b, (uint64_t)v[i]);
    if (!len_head(w, field, len))
        return;
    for (size_t i = 0; i < n; i++)
        tli_pbw_varint(w, (uint64_t)v[i]);
}

void tli_pbw_begin(tli_pbw *w, uint32_t field)
{
    if (w->depth == TLI_PB_MAX_DEPTH) {
        w->unbalanced = true;
        return;
    }
    tli_pbw_tag(w, field, TLI_PB_LEN);
    w->open[w->depth++] = w->buf.len;
}

void tli_pbw_end(tli_pbw *w)
{
    if (w->depth == 0) {
        w->unbalanced = true;
        return;
    }
    const size_t start = w->open[--w->depth];
    if (!pbw_ok(w))
        return;
    const size_t n = w->buf.len - start;
    if (n > TLI_PB_MAX_LEN) {
        w->too_big = true;
        return;
    }
    uint8_t b[10];
    const size_t k = varint_encode(b, n);
    if (!tli_wbuf_reserve(&w->buf, k))
        return;
    uint8_t *p = w->buf.data + start;
    memmove(p + k, p, n);
    memcpy(p, b, k);
    w->buf.len += k;
}

void tli_pbw_head(tli_pbw *w, uint32_t field, uint64_t n)
{
    len_head(w, field, n);
}

tl_status tli_pbw_status(const tli_pbw *w, const char *fn, const char *path)
{
    if (w->unbalanced || (w->depth != 0 && pbw_ok(w)))
        return tli_error(TL_EINVAL, "%s: %s: unbalanced protobuf messages (a bug in libtl)", fn, path);
    if (w->too_big)
        return tli_error(TL_ETOOBIG, "%s: %s: a protobuf message would exceed 2 GiB, protobuf's limit", fn, path);
    if (w->buf.failed)
        return tli_error(TL_ENOMEM, "%s: %s: out of memory while encoding", fn, path);
    return TL_OK;
}
