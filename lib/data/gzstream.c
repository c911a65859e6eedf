/* gzstream.c - the byte source of stream.h: plain reads or zlib inflate. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "files.h"
#include "stream.h"

/* Big enough that fread and inflate calls are few; small next to any image set. */
#define TLI_STREAM_BUF ((size_t)1 << 16)

struct tli_stream {
    FILE *f;
    char *path;
    bool gz;
    bool z_ready;     /* inflateInit2 succeeded; inflateEnd is owed */
    bool member_done; /* inflate reached the end of the current gzip member */
    bool file_eof;    /* fread found the end of the file */
    bool size_known;
    /* z.next_in / z.avail_in describe the raw bytes read but not yet used,
     * in plain mode too, so both modes share one buffer. */
    z_stream z;
    unsigned char *buf;
    uint64_t raw_read;  /* bytes fread from the file */
    uint64_t file_size; /* when size_known */
    uint64_t pos;       /* decompressed bytes delivered */
};

/* zlib's allocations go through libtl's, so tests can make them fail too. */
static voidpf z_alloc(voidpf opaque, uInt items, uInt size)
{
    (void)opaque;
    size_t bytes;
    if (!tli_mul_ok(items, size, &bytes))
        return Z_NULL;
    return tli_malloc(bytes);
}

static void z_free(voidpf opaque, voidpf p)
{
    (void)opaque;
    tli_free(p);
}

static unsigned long long consumed(const tli_stream *s)
{
    return (unsigned long long)(s->raw_read - s->z.avail_in);
}

/* Load the next raw bytes when none are buffered. At the end of the file
 * avail_in stays 0 and file_eof is set. */
static tl_status refill(tli_stream *s)
{
    if (s->z.avail_in > 0 || s->file_eof)
        return TL_OK;
    size_t k = fread(s->buf, 1, TLI_STREAM_BUF, s->f);
    if (k == 0) {
        if (ferror(s->f)) {
            char eb[128];
            return tli_error(TL_EIO, "%s: read failed at byte %llu: %s", s->path, (unsigned long long)s->raw_read,
                             tli_errno_text(errno, eb, sizeof eb));
        }
        s->file_eof = true;
    }
    s->z.next_in = s->buf;
    s->z.avail_in = (uInt)k;
    s->raw_read += k;
    return TL_OK;
}

void tli_stream_close(tli_stream *s)
{
    if (s == NULL)
        return;
    if (s->z_ready)
        inflateEnd(&s->z);
    if (s->f)
        fclose(s->f);
    tli_free(s->buf);
    tli_free(s->path);
    tli_free(s);
}

tl_status tli_stream_open(tli_stream **out, const char *path, bool detect_gzip)
{
    *out = NULL;
    tli_stream *s = tli_calloc(1, sizeof *s);
    if (s == NULL)
        return tli_error(TL_ENOMEM, "%s: out of memory opening the file", path);
    s->path = tli_strdup(path);
    s->buf = tli_malloc(TLI_STREAM_BUF);
    if (s->path == NULL || s->buf == NULL) {
        tli_stream_close(s);
        return tli_error(TL_ENOMEM, "%s: out of memory opening the file", path);
    }
    tl_status st = tli_file_open(&s->f, path);
    if (st) {
        tli_stream_close(s);
        return st;
    }
    struct stat sb;
    if (fstat(fileno(s->f), &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size >= 0) {
        s->size_known = true;
        s->file_size = (uint64_t)sb.st_size;
    }
    /* Peek at the magic in the shared buffer: no rewind, so pipes work. */
    st = refill(s);
    if (st) {
        tli_stream_close(s);
        return st;
    }
    if (detect_gzip && s->z.avail_in >= 2 && s->buf[0] == 0x1f && s->buf[1] == 0x8b) {
        s->gz = true;
        s->z.zalloc = z_alloc;
        s->z.zfree = z_free;
        s->z.opaque = Z_NULL;
        int r = inflateInit2(&s->z, 16 + MAX_WBITS); /* 16: gzip wrapper only */
        if (r != Z_OK) {
            tli_stream_close(s);
            return tli_error(r == Z_MEM_ERROR ? TL_ENOMEM : TL_EFORMAT, "%s: cannot start gzip decoding: %s", path,
                             r == Z_MEM_ERROR ? "out of memory" : "zlib refused");
        }
        s->z_ready = true;
    }
    *out = s;
    return TL_OK;
}

static tl_status read_plain(tli_stream *s, unsigned char *out, size_t n, size_t *got)
{
    size_t done = 0;
    while (done < n) {
        if (s->z.avail_in > 0) {
            size_t k = n - done < s->z.avail_in ? n - done : s->z.avail_in;
            memcpy(out + done, s->z.next_in, k);
            s->z.next_in += k;
            s->z.avail_in -= (uInt)k;
            done += k;
            continue;
        }
        if (s->file_eof)
            break;
        if (n - done >= TLI_STREAM_BUF) {
            /* Large reads skip the buffer (one copy fewer). */
            size_t want = n - done;
            size_t k = fread(out + done, 1, want, s->f);
            s->raw_read += k;
            done += k;
            if (k < want) {
                if (ferror(s->f)) {
                    char eb[128];
                    s->pos += done;
                    *got = done;
                    return tli_error(TL_EIO, "%s: read failed at byte %llu: %s", s->path,
                                     (unsigned long long)s->raw_read, tli_errno_text(errno, eb, sizeof eb));
                }
                s->file_eof = true;
            }
            continue;
        }
        tl_status st = refill(s);
        if (st) {
            s->pos += done;
            *got = done;
            return st;
        }
    }
    s->pos += done;
    *got = done;
    return TL_OK;
}

static tl_status read_gzip(tli_stream *s, unsigned char *out, size_t n, size_t *got)
{
    size_t done = 0;
    tl_status st = TL_OK;
    while (done < n) {
        if (s->member_done) {
            /* gzip allows members back to back; anything else after the
             * end is not part of the data. */
            if ((st = refill(s)) != TL_OK)
                break;
            if (s->z.avail_in == 0)
                break; /* the clean end of the data */
            if (s->z.next_in[0] != 0x1f) {
                st = tli_error(TL_EFORMAT,
                               "%s: compressed byte %llu (after decompressed byte %llu): data after the end of "
                               "the gzip stream is not another gzip member",
                               s->path, consumed(s), (unsigned long long)(s->pos + done));
                break;
            }
            inflateReset(&s->z);
            s->member_done = false;
        }
        if ((st = refill(s)) != TL_OK)
            break;
        if (s->z.avail_in == 0) {
            st = tli_error(TL_ETRUNCATED,
                           "%s: the gzip stream is cut off at compressed byte %llu (decompressed byte %llu), "
                           "before its end",
                           s->path, consumed(s), (unsigned long long)(s->pos + done));
            break;
        }
        size_t want = n - done;
        uInt chunk = want > UINT_MAX ? UINT_MAX : (uInt)want;
        s->z.next_out = out + done;
        s->z.avail_out = chunk;
        int r = inflate(&s->z, Z_NO_FLUSH);
        size_t produced = chunk - s->z.avail_out;
        done += produced;
        if (r == Z_STREAM_END) {
            s->member_done = true;
        } else if (r == Z_MEM_ERROR) {
            st = tli_error(TL_ENOMEM, "%s: out of memory decoding gzip data", s->path);
            break;
        } else if (r != Z_OK && !(r == Z_BUF_ERROR && (produced > 0 || s->z.avail_in == 0))) {
            st = tli_error(TL_EFORMAT, "%s: corrupt gzip data at compressed byte %llu (decompressed byte %llu): %s",
                           s->path, consumed(s), (unsigned long long)(s->pos + done),
                           s->z.msg ? s->z.msg : "inflate failed");
            break;
        }
    }
    s->pos += done;
    *got = done;
    return st;
}

tl_status tli_stream_read(tli_stream *s, void *buf, size_t n, size_t *got)
{
    return s->gz ? read_gzip(s, buf, n, got) : read_plain(s, buf, n, got);
}

tl_status tli_stream_read_exact(tli_stream *s, void *buf, size_t n, size_t *got, const char *what)
{
    size_t k = 0;
    tl_status st = tli_stream_read(s, buf, n, &k);
    if (got)
        *got = k;
    if (st)
        return st;
    if (k < n)
        return tli_error(TL_ETRUNCATED, "%s: ends at byte %llu, inside %s", s->path, (unsigned long long)s->pos,
                         what);
    return TL_OK;
}

tl_status tli_stream_skip(tli_stream *s, uint64_t n, const char *what)
{
    unsigned char scratch[8192];
    while (n > 0) {
        size_t k = n < sizeof scratch ? (size_t)n : sizeof scratch;
        tl_status st = tli_stream_read_exact(s, scratch, k, NULL, what);
        if (st)
            return st;
        n -= k;
    }
    return TL_OK;
}

tl_status tli_stream_expect_end(tli_stream *s, const char *what)
{
    unsigned char b;
    size_t k;
    tl_status st = tli_stream_read(s, &b, 1, &k);
    if (st)
        return st;
    if (k > 0)
        return tli_error(TL_EFORMAT, "%s: byte %llu: %s", s->path, (unsigned long long)(s->pos - 1), what);
    return TL_OK;
}

uint64_t tli_stream_pos(const tli_stream *s)
{
    return s->pos;
}

const char *tli_stream_path(const tli_stream *s)
{
    return s->path;
}

bool tli_stream_is_gzip(const tli_stream *s)
{
    return s->gz;
}

bool tli_stream_file_size(const tli_stream *s, uint64_t *out)
{
    *out = s->file_size;
    return s->size_known;
}

bool tli_stream_may_hold(const tli_stream *s, uint64_t bytes, uint64_t *out_limit)
{
    uint64_t limit = UINT64_MAX;
    if (s->size_known) {
        uint64_t used = s->raw_read - s->z.avail_in;
        uint64_t rest = s->file_size > used ? s->file_size - used : 0;
        if (!s->gz)
            limit = rest;
        else if (rest <= (UINT64_MAX - ((uint64_t)1 << 20)) / 1032)
            limit = rest * 1032 + ((uint64_t)1 << 20);
    }
    if (out_limit)
        *out_limit = limit;
    return bytes <= limit;
}
