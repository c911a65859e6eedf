/*
 * tar.c - reading tar headers (ustar as in POSIX.1-1988, the GNU long-name
 * header and pax extended headers) from a stream.
 */
#include <stdio.h>
#include <string.h>

#include "tar.h"

#define BLOCK 512
/* A pax header longer than this is not a dataset archive's. */
#define PAX_MAX ((uint64_t)1 << 20)

/* Header fields: offset and length within the 512-byte block. */
enum {
    F_NAME = 0, L_NAME = 100,
    F_SIZE = 124, L_SIZE = 12,
    F_CHKSUM = 148, L_CHKSUM = 8,
    F_TYPE = 156,
    F_MAGIC = 257,
    F_PREFIX = 345, L_PREFIX = 155
};

/* "member NAME (data from byte X)" for truncation messages. */
#define TLI_TAR_WHAT 320
static const char *member_what(char *buf, const tli_tar *t)
{
    snprintf(buf, TLI_TAR_WHAT, "member %.256s (data from byte %llu, %llu bytes)", t->entry.name,
             (unsigned long long)t->entry.data_offset, (unsigned long long)t->entry.size);
    return buf;
}

void tli_tar_init(tli_tar *t, tli_stream *s)
{
    memset(t, 0, sizeof *t);
    t->s = s;
}

/* An octal field (leading spaces, digits, then a space or NUL ends it), or
 * the GNU base-256 form (first byte 0x80, big-endian binary) used for sizes
 * of 8 GiB and more. False when it is neither or does not fit 63 bits. */
static bool parse_number(const unsigned char *f, size_t len, uint64_t *out)
{
    uint64_t v = 0;
    if (f[0] & 0x80) {
        if (f[0] != 0x80) /* negative, or beyond 2^88 */
            return false;
        for (size_t i = 1; i < len; i++) {
            if (v >> 55)
                return false;
            v = v << 8 | f[i];
        }
        *out = v;
        return true;
    }
    size_t i = 0;
    while (i < len && f[i] == ' ')
        i++;
    for (; i < len && f[i] >= '0' && f[i] <= '7'; i++) {
        if (v >> 60)
            return false;
        v = v * 8 + (uint64_t)(f[i] - '0');
    }
    if (i < len && f[i] != ' ' && f[i] != '\0')
        return false;
    *out = v;
    return true;
}

static bool all_zero(const unsigned char *b)
{
    for (size_t i = 0; i < BLOCK; i++)
        if (b[i])
            return false;
    return true;
}

/* Copy a field that is NUL-terminated unless it fills its whole length. */
static size_t field_len(const unsigned char *f, size_t len)
{
    size_t n = 0;
    while (n < len && f[n])
        n++;
    return n;
}

static void set_name(tli_tar_entry *e, const char *src, size_t len, bool truncated)
{
    while (len >= 2 && src[0] == '.' && src[1] == '/') {
        src += 2;
        len -= 2;
        while (len > 0 && src[0] == '/') {
            src++;
            len--;
        }
    }
    if (len > TLI_TAR_NAME_MAX) {
        len = TLI_TAR_NAME_MAX;
        truncated = true;
    }
    memcpy(e->name, src, len);
    e->name[len] = '\0';
    e->name_truncated = truncated;
}

/* Read a member's data, of which only the first `cap` bytes are kept, then
 * its padding. *out_len: bytes kept. */
static tl_status read_small(tli_tar *t, char *dst, size_t cap, uint64_t size, size_t *out_len, const char *what)
{
    size_t keep = size < cap ? (size_t)size : cap;
    tl_status st = tli_stream_read_exact(t->s, dst, keep, NULL, what);
    if (st == TL_OK)
        st = tli_stream_skip(t->s, size - keep + (BLOCK - size % BLOCK) % BLOCK, what);
    *out_len = keep;
    return st;
}

/* Apply the records of a pax extended header ("LEN key=value\n" each):
 * path and size are the ones a reader of datasets must honour. */
static tl_status apply_pax(tli_tar *t, const char *p, size_t len, uint64_t at)
{
    const char *path = tli_stream_path(t->s);
    size_t off = 0;
    while (off < len) {
        size_t rec = 0, i = off;
        while (i < len && p[i] >= '0' && p[i] <= '9') {
            if (rec > len)
                break;
            rec = rec * 10 + (size_t)(p[i] - '0');
            i++;
        }
        if (i == off || i >= len || p[i] != ' ' || rec <= i - off + 1 || rec > len - off || p[off + rec - 1] != '\n')
            return tli_error(TL_EFORMAT, "%s: byte %llu: malformed pax record in the extended header", path,
                             (unsigned long long)(at + off));
        const char *kv = p + i + 1, *end = p + off + rec - 1;
        const char *eq = memchr(kv, '=', (size_t)(end - kv));
        if (eq == NULL)
            return tli_error(TL_EFORMAT, "%s: byte %llu: pax record without '='", path,
                             (unsigned long long)(at + off));
        size_t klen = (size_t)(eq - kv), vlen = (size_t)(end - eq - 1);
        if (klen == 4 && memcmp(kv, "path", 4) == 0) {
            size_t keep = vlen < TLI_TAR_NAME_MAX ? vlen : TLI_TAR_NAME_MAX;
            memcpy(t->next_name, eq + 1, keep);
            t->next_name[keep] = '\0';
            t->next_name_truncated = keep < vlen;
            t->has_next_name = true;
        } else if (klen == 4 && memcmp(kv, "size", 4) == 0) {
            uint64_t v = 0;
            if (vlen == 0)
                return tli_error(TL_EFORMAT, "%s: byte %llu: empty pax size", path, (unsigned long long)(at + off));
            for (size_t j = 0; j < vlen; j++) {
                char c = eq[1 + j];
                if (c < '0' || c > '9' || v > (UINT64_MAX >> 1) / 10)
                    return tli_error(TL_EFORMAT, "%s: byte %llu: bad pax size '%.*s'", path,
                                     (unsigned long long)(at + off), (int)(vlen < 32 ? vlen : 32), eq + 1);
                v = v * 10 + (uint64_t)(c - '0');
            }
            t->next_size = v;
            t->has_next_size = true;
        }
        off += rec;
    }
    return TL_OK;
}

tl_status tli_tar_next(tli_tar *t, bool *out_end)
{
    const char *path = tli_stream_path(t->s);
    unsigned char h[BLOCK];
    *out_end = false;
    if (t->ended) {
        *out_end = true;
        return TL_OK;
    }
    if (t->remaining + t->padding > 0) {
        char what[TLI_TAR_WHAT];
        tl_status st = tli_stream_skip(t->s, t->remaining + t->padding, member_what(what, t));
        if (st)
            return st;
        t->remaining = t->padding = 0;
    }
    for (;;) {
        uint64_t at = tli_stream_pos(t->s);
        size_t got;
        tl_status st = tli_stream_read(t->s, h, BLOCK, &got);
        if (st)
            return st;
        /* Archives cut exactly between members (no end blocks) are common
         * enough from hand-made tools to accept; a partial header is not. */
        if (got == 0 || (got == BLOCK && all_zero(h))) {
            if (got == 0 && (t->has_next_name || t->has_next_size))
                return tli_error(TL_ETRUNCATED, "%s: ends at byte %llu, after an extended header but before its "
                                 "member", path, (unsigned long long)at);
            t->ended = true;
            *out_end = true;
            return TL_OK;
        }
        if (got < BLOCK)
            return tli_error(TL_ETRUNCATED, "%s: ends at byte %llu, inside the tar header that starts at byte %llu",
                             path, (unsigned long long)(at + got), (unsigned long long)at);

        uint64_t stored;
        bool ustar = memcmp(h + F_MAGIC, "ustar", 5) == 0;
        if (!parse_number(h + F_CHKSUM, L_CHKSUM, &stored))
            return tli_error(TL_EFORMAT, "%s: byte %llu: %s", path, (unsigned long long)at,
                             ustar ? "tar header has a malformed checksum field" : "not a tar header");
        /* The checksum counts its own field as spaces; old tars summed
         * signed chars, so accept either sum. */
        uint64_t usum = 0;
        int64_t ssum = 0;
        for (size_t i = 0; i < BLOCK; i++) {
            unsigned char c = (i >= F_CHKSUM && i < F_CHKSUM + L_CHKSUM) ? ' ' : h[i];
            usum += c;
            ssum += (signed char)c;
        }
        if (stored != usum && (int64_t)stored != ssum)
            return tli_error(ustar ? TL_ECHECKSUM : TL_EFORMAT, "%s: byte %llu: %s (checksum %llu, computed %llu)",
                             path, (unsigned long long)at,
                             ustar ? "tar header checksum does not match" : "not a tar header",
                             (unsigned long long)stored, (unsigned long long)usum);

        uint64_t size;
        if (!parse_number(h + F_SIZE, L_SIZE, &size))
            return tli_error(TL_EFORMAT, "%s: byte %llu: tar header has a malformed size field", path,
                             (unsigned long long)(at + F_SIZE));
        char type = (char)h[F_TYPE];
        if (type == 'L' || type == 'x') {
            /* Extension headers describe the member that follows. */
            if (type == 'L') {
                size_t len;
                st = read_small(t, t->next_name, TLI_TAR_NAME_MAX, size, &len, "a GNU long name");
                if (st)
                    return st;
                len = field_len((const unsigned char *)t->next_name, len);
                t->next_name[len] = '\0';
                t->next_name_truncated = size > TLI_TAR_NAME_MAX;
                t->has_next_name = true;
            } else {
                if (size > PAX_MAX)
                    return tli_error(TL_EFORMAT, "%s: byte %llu: pax extended header of %llu bytes (at most %llu)",
                                     path, (unsigned long long)at, (unsigned long long)size,
                                     (unsigned long long)PAX_MAX);
                char *pax = tli_malloc((size_t)size);
                if (pax == NULL)
                    return tli_error(TL_ENOMEM, "%s: out of memory reading a pax header", path);
                size_t len;
                st = read_small(t, pax, (size_t)size, size, &len, "a pax extended header");
                if (st == TL_OK)
                    st = apply_pax(t, pax, len, at + BLOCK);
                tli_free(pax);
                if (st)
                    return st;
            }
            continue;
        }
        if (type == 'K' || type == 'g') { /* link names and global pax: nothing a reader of data needs */
            st = tli_stream_skip(t->s, size + (BLOCK - size % BLOCK) % BLOCK, "a tar extension header");
            if (st)
                return st;
            continue;
        }

        tli_tar_entry *e = &t->entry;
        if (t->has_next_name) {
            set_name(e, t->next_name, strlen(t->next_name), t->next_name_truncated);
        } else {
            char full[L_PREFIX + 1 + L_NAME + 1];
            size_t n = 0;
            /* Only POSIX ustar ("ustar\0") has the prefix field; GNU keeps
             * other data there. */
            if (memcmp(h + F_MAGIC, "ustar\0", 6) == 0 && h[F_PREFIX]) {
                n = field_len(h + F_PREFIX, L_PREFIX);
                memcpy(full, h + F_PREFIX, n);
                full[n++] = '/';
            }
            size_t nl = field_len(h + F_NAME, L_NAME);
            memcpy(full + n, h + F_NAME, nl);
            n += nl;
            set_name(e, full, n, false);
        }
        if (t->has_next_size)
            size = t->next_size;
        t->has_next_name = t->has_next_size = t->next_name_truncated = false;
        e->type = (type == '\0' || type == '7') ? '0' : type;
        e->size = size;
        e->header_offset = at;
        e->data_offset = at + BLOCK;
        t->remaining = size;
        t->padding = (BLOCK - size % BLOCK) % BLOCK;
        return TL_OK;
    }
}

tl_status tli_tar_read(tli_tar *t, void *buf, size_t n)
{
    if (n > t->remaining)
        return tli_error(TL_EINVAL, "%s: reading %zu bytes past the end of member %s", tli_stream_path(t->s), n,
                         t->entry.name);
    char what[TLI_TAR_WHAT];
    tl_status st = tli_stream_read_exact(t->s, buf, n, NULL, member_what(what, t));
    if (st)
        return st;
    t->remaining -= n;
    return TL_OK;
}
