/* bytes.c - the little-endian write buffer and bounds-checked read cursor. */
#include "bytes.h"

#include <stdarg.h>
#include <stdio.h>

#include "../core.h"

void tli_f32_swap_le(float *v, size_t n)
{
    if (tli_host_is_le())
        return;
    for (size_t i = 0; i < n; i++) {
        uint8_t b[4];
        memcpy(b, &v[i], 4);
        uint32_t u = tli_le32(b);
        memcpy(&v[i], &u, 4);
    }
}

void tli_wbuf_free(tli_wbuf *w)
{
    tli_free(w->data);
    w->data = NULL;
    w->len = w->cap = 0;
}

bool tli_wbuf_reserve(tli_wbuf *w, size_t n)
{
    if (w->failed)
        return false;
    size_t need;
    if (!tli_add_ok(w->len, n, &need)) {
        w->failed = true;
        return false;
    }
    if (need <= w->cap)
        return true;
    size_t cap = w->cap ? w->cap : 256;
    while (cap < need) {
        if (!tli_mul_ok(cap, 2, &cap)) {
            cap = need;
            break;
        }
    }
    uint8_t *grown = tli_realloc(w->data, cap);
    if (grown == NULL) {
        w->failed = true;
        return false;
    }
    w->data = grown;
    w->cap = cap;
    return true;
}

void tli_wbuf_bytes(tli_wbuf *w, const void *p, size_t n)
{
    if (n == 0 || !tli_wbuf_reserve(w, n))
        return;
    memcpy(w->data + w->len, p, n);
    w->len += n;
}

void tli_wbuf_u8(tli_wbuf *w, uint8_t v)
{
    tli_wbuf_bytes(w, &v, 1);
}

void tli_wbuf_u16(tli_wbuf *w, uint16_t v)
{
    uint8_t b[2];
    tli_put_le16(b, v);
    tli_wbuf_bytes(w, b, sizeof b);
}

void tli_wbuf_u32(tli_wbuf *w, uint32_t v)
{
    uint8_t b[4];
    tli_put_le32(b, v);
    tli_wbuf_bytes(w, b, sizeof b);
}

void tli_wbuf_u64(tli_wbuf *w, uint64_t v)
{
    uint8_t b[8];
    tli_put_le64(b, v);
    tli_wbuf_bytes(w, b, sizeof b);
}

void tli_wbuf_f32(tli_wbuf *w, float v)
{
    tli_wbuf_u32(w, tli_f32_bits(v));
}

void tli_wbuf_str(tli_wbuf *w, const char *s)
{
    tli_wbuf_bytes(w, s, strlen(s));
}

void tli_wbuf_fmt(tli_wbuf *w, const char *fmt, ...)
{
    char small[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        w->failed = true;
        return;
    }
    if ((size_t)n < sizeof small) {
        tli_wbuf_bytes(w, small, (size_t)n);
        return;
    }
    if (!tli_wbuf_reserve(w, (size_t)n + 1))
        return;
    va_start(ap, fmt);
    vsnprintf((char *)w->data + w->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    w->len += (size_t)n;
}

void tli_wbuf_json_str(tli_wbuf *w, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    tli_wbuf_u8(w, '"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[6] = {'\\', 0, 0, 0, 0, 0};
        size_t n = 2;
        switch (*p) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        default:
            if (*p >= 0x20) {
                tli_wbuf_u8(w, *p);
                continue;
            }
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[*p >> 4];
            esc[5] = hex[*p & 15];
            n = 6;
        }
        tli_wbuf_bytes(w, esc, n);
    }
    tli_wbuf_u8(w, '"');
}

const uint8_t *tli_rbuf_bytes(tli_rbuf *r, size_t n)
{
    if (n > tli_rbuf_left(r))
        return NULL;
    const uint8_t *p = r->data + r->pos;
    r->pos += n;
    return p;
}

bool tli_rbuf_u8(tli_rbuf *r, uint8_t *out)
{
    const uint8_t *p = tli_rbuf_bytes(r, 1);
    if (p)
        *out = p[0];
    return p != NULL;
}

bool tli_rbuf_u32(tli_rbuf *r, uint32_t *out)
{
    const uint8_t *p = tli_rbuf_bytes(r, 4);
    if (p)
        *out = tli_le32(p);
    return p != NULL;
}

bool tli_rbuf_f32(tli_rbuf *r, float *out)
{
    uint32_t u;
    if (!tli_rbuf_u32(r, &u))
        return false;
    *out = tli_bits_f32(u);
    return true;
}
