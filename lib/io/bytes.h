/*
 * bytes.h - little-endian encoding whatever the host, a growable write
 * buffer, and a bounds-checked read cursor. Every multi-byte field of the
 * file formats goes through these, so no reader ever trusts a length it has
 * not checked against the bytes it holds.
 */
#ifndef TLI_IO_BYTES_H
#define TLI_IO_BYTES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline uint16_t tli_le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (uint16_t)p[1] << 8);
}
static inline uint32_t tli_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t tli_le64(const uint8_t *p)
{
    return (uint64_t)tli_le32(p) | (uint64_t)tli_le32(p + 4) << 32;
}
static inline void tli_put_le16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static inline void tli_put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static inline void tli_put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint32_t tli_f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}
static inline float tli_bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* True when floats in memory are already little-endian IEEE-754, so
 * tensors can be copied as they are. */
static inline bool tli_host_is_le(void)
{
#if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__)
    return __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__;
#else
    const uint32_t one = 1;
    uint8_t b;
    memcpy(&b, &one, 1);
    return b == 1;
#endif
}

/* Turn n floats between host order and little-endian, in place (a no-op on
 * little-endian hosts; the same operation in both directions). */
void tli_f32_swap_le(float *v, size_t n);

/* A growable byte buffer. A failed allocation is sticky: later puts do
 * nothing and `failed` stays set, so a writer checks once at the end. */
typedef struct tli_wbuf {
    uint8_t *data;
    size_t len, cap;
    bool failed;
} tli_wbuf;

void tli_wbuf_free(tli_wbuf *w);
/* Make room for n more bytes; false (and failed) when it cannot. */
bool tli_wbuf_reserve(tli_wbuf *w, size_t n);
void tli_wbuf_bytes(tli_wbuf *w, const void *p, size_t n);
void tli_wbuf_u8(tli_wbuf *w, uint8_t v);
void tli_wbuf_u16(tli_wbuf *w, uint16_t v);
void tli_wbuf_u32(tli_wbuf *w, uint32_t v);
void tli_wbuf_u64(tli_wbuf *w, uint64_t v);
void tli_wbuf_f32(tli_wbuf *w, float v);
void tli_wbuf_str(tli_wbuf *w, const char *s);
/* printf-style text (JSON numbers and the like). */
void tli_wbuf_fmt(tli_wbuf *w, const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* `s` as a JSON string literal with its quotes, escaped as RFC 8259 asks. */
void tli_wbuf_json_str(tli_wbuf *w, const char *s);

/* A read cursor over len bytes. Every get checks that the bytes are there;
 * after a short read `pos` stays put and the get returns false. */
typedef struct tli_rbuf {
    const uint8_t *data;
    size_t len, pos;
} tli_rbuf;

static inline size_t tli_rbuf_left(const tli_rbuf *r)
{
    return r->len - r->pos;
}
bool tli_rbuf_u8(tli_rbuf *r, uint8_t *out);
bool tli_rbuf_u32(tli_rbuf *r, uint32_t *out);
bool tli_rbuf_f32(tli_rbuf *r, float *out);
/* A pointer to the next n bytes (not copied), or NULL when fewer remain. */
const uint8_t *tli_rbuf_bytes(tli_rbuf *r, size_t n);

#endif /* TLI_IO_BYTES_H */
