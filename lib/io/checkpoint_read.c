/*
 * checkpoint_read.c - the checkpoint parser. The file is hostile until
 * proven otherwise, so the order of checks is fixed: header (magic,
 * version, header CRC, sizes against the real file size and the limits),
 * CRC of the compressed bytes, then the decompressed sections one by one,
 * every length checked against what is left before anything is allocated
 * or read, and at the end the CRC of the decompressed payload. The payload
 * is inflated as it is parsed, straight into its destination, so a model
 * never needs two copies of its parameters in memory.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "bytes.h"
#include "checkpoint.h"
#include "file.h"
#include "zalloc.h"

/* Per declared layer: what its TENS sections must look like. */
typedef struct layer_slots {
    uint32_t nparams;
    size_t count[TLI_MAX_TENSORS];
    tli_role role[TLI_MAX_TENSORS];
    uint32_t filled; /* bit slot * TLI_MAX_TENSORS + tensor */
} layer_slots;

_Static_assert((TLI_SLOT_STATE1 + 1) * TLI_MAX_TENSORS <= 32, "the filled mask holds every slot of every tensor");

typedef struct parser {
    const char *fn, *path;
    const tli_ckpt_visitor *v;
    tli_rfile file;
    uint8_t *stored;
    z_stream z;
    bool z_live;
    uint64_t pos, size; /* decompressed payload: bytes consumed, total */
    uint32_t crc, want_crc;
    uint32_t major, minor;
    bool have_model, have_optim, have_schedule, have_loss, have_early;
    tli_ckpt_model model;
    tli_ckpt_optim optim;
    layer_slots *slots;
    tl_model *shell;  /* the layers declared so far, built without values */
    size_t nlayers;   /* LAYR sections seen */
    uint64_t section;  /* payload offset of the current section */
    uint64_t cut;      /* bytes of the current small section beyond its buffer */
    char where[512];
} parser;

/* An error at the current section: "fn: path: payload byte N: ...". */
static tl_status perr(parser *p, tl_status st, const char *fmt, ...) TLI_PRINTF(3, 4);
static tl_status perr(parser *p, tl_status st, const char *fmt, ...)
{
    char text[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    return tli_error(st, "%s: %s: payload byte %llu: %s", p->fn, p->path, (unsigned long long)p->section, text);
}

/* A value this reader does not know: a newer minor version may have added
 * it (TL_EVERSION); in a file no newer than this reader it is corruption. */
static tl_status unknown_value(parser *p, const char *what, uint32_t value)
{
    if (p->minor > TL_CHECKPOINT_VERSION_MINOR)
        return perr(p, TL_EVERSION, "%s %u is not known to this libtl (the file is format %u.%u, this libtl reads up to %u.%u)",
                    what, value, p->major, p->minor, TL_CHECKPOINT_VERSION_MAJOR, TL_CHECKPOINT_VERSION_MINOR);
    return perr(p, TL_EFORMAT, "%s %u is not valid", what, value);
}

/* ---- header and stored bytes ---------------------------------------------- */

static tl_status read_header(parser *p, uint8_t h[TLI_CKPT_HEADER_SIZE])
{
    const char *fn = p->fn, *path = p->path;
    const uint64_t size = p->file.size;
    size_t have = size < TLI_CKPT_HEADER_SIZE ? (size_t)size : TLI_CKPT_HEADER_SIZE;
    tl_status st = tli_rfile_read(&p->file, h, have, 0);
    if (st)
        return st;
    size_t magic_have = have < 8 ? have : 8;
    if (memcmp(h, TLI_CKPT_MAGIC, magic_have) != 0)
        return tli_error(TL_EFORMAT, "%s: %s: byte 0: not a libtl checkpoint (wrong magic number)", fn, path);
    if (have < 12)
        return tli_error(TL_ETRUNCATED, "%s: %s: byte %zu: the file ends inside the %d-byte header (it has %zu bytes)",
                         fn, path, have, TLI_CKPT_HEADER_SIZE, have);
    p->major = tli_le16(h + 8);
    p->minor = tli_le16(h + 10);
    /* The version comes before the header CRC: another major version may
     * lay its header out differently. */
    if (p->major != TL_CHECKPOINT_VERSION_MAJOR)
        return tli_error(TL_EVERSION, "%s: %s: byte 8: format version %u.%u; this libtl reads version %u.x", fn, path,
                         p->major, p->minor, TL_CHECKPOINT_VERSION_MAJOR);
    if (have < TLI_CKPT_HEADER_SIZE)
        return tli_error(TL_ETRUNCATED, "%s: %s: byte %zu: the file ends inside the %d-byte header (it has %zu bytes)",
                         fn, path, have, TLI_CKPT_HEADER_SIZE, have);
    uint32_t want = tli_le32(h + 44), got = (uint32_t)crc32(0L, h, 44);
    if (want != got)
        return tli_error(TL_ECHECKSUM, "%s: %s: byte 44: header CRC-32 is %08x but the header's bytes give %08x", fn,
                         path, want, got);
    if (h[12] != TLI_CKPT_COMPRESSION_ZLIB)
        return tli_error(TL_EVERSION, "%s: %s: byte 12: compression method %u is not known to this libtl", fn, path,
                         h[12]);
    return TL_OK;
}

static tl_status read_stored(parser *p, const uint8_t h[TLI_CKPT_HEADER_SIZE])
{
    const char *fn = p->fn, *path = p->path;
    uint64_t payload = tli_le64(h + 16), stored = tli_le64(h + 24);
    uint64_t avail = p->file.size - TLI_CKPT_HEADER_SIZE;
    if (payload > TLI_CKPT_MAX_PAYLOAD)
        return tli_error(TL_ETOOBIG, "%s: %s: byte 16: a payload of %llu bytes exceeds the limit of %llu", fn, path,
                         (unsigned long long)payload, (unsigned long long)TLI_CKPT_MAX_PAYLOAD);
    if (stored > TLI_CKPT_MAX_PAYLOAD)
        return tli_error(TL_ETOOBIG, "%s: %s: byte 24: %llu compressed bytes exceed the limit of %llu", fn, path,
                         (unsigned long long)stored, (unsigned long long)TLI_CKPT_MAX_PAYLOAD);
    if (stored > avail)
        return tli_error(TL_ETRUNCATED, "%s: %s: byte %llu: the file is cut: the header announces %llu compressed bytes, "
                         "%llu are there", fn, path, (unsigned long long)p->file.size, (unsigned long long)stored,
                         (unsigned long long)avail);
    if (stored < avail)
        return tli_error(TL_EFORMAT, "%s: %s: byte %llu: %llu unexpected bytes after the compressed payload", fn, path,
                         (unsigned long long)(TLI_CKPT_HEADER_SIZE + stored), (unsigned long long)(avail - stored));
    /* Deflate expands at most ~1032:1; a larger claim is not a zlib stream,
     * and the bound keeps every later allocation proportional to the file. */
    if (payload > stored * 1032 + 1024)
        return tli_error(TL_EFORMAT, "%s: %s: byte 16: %llu decompressed bytes cannot come from %llu compressed ones", fn,
                         path, (unsigned long long)payload, (unsigned long long)stored);
    if ((uint64_t)(size_t)stored != stored)
        return tli_error(TL_ETOOBIG, "%s: %s: the file is too large for this machine", fn, path);
    p->stored = tli_malloc((size_t)stored);
    if (p->stored == NULL)
        return tli_error(TL_ENOMEM, "%s: %s: out of memory for %llu compressed bytes", fn, path,
                         (unsigned long long)stored);
    tl_status st = tli_rfile_read(&p->file, p->stored, (size_t)stored, TLI_CKPT_HEADER_SIZE);
    if (st)
        return st;
    uint32_t want = tli_le32(h + 36), got = 0;
    got = (uint32_t)crc32(0L, Z_NULL, 0);
    for (uint64_t off = 0; off < stored;) {
        uInt chunk = stored - off > (1u << 30) ? (1u << 30) : (uInt)(stored - off);
        got = (uint32_t)crc32(got, p->stored + off, chunk);
        off += chunk;
    }
    if (want != got)
        return tli_error(TL_ECHECKSUM, "%s: %s: byte 36: the compressed payload's CRC-32 is %08x, the header says %08x; "
                         "the file is damaged", fn, path, got, want);
    p->size = payload;
    p->want_crc = tli_le32(h + 32);
    p->z.zalloc = tli_zalloc;
    p->z.zfree = tli_zfree;
    p->z.opaque = Z_NULL;
    p->z.next_in = p->stored;
    p->z.avail_in = 0;
    int rc = inflateInit(&p->z);
    if (rc != Z_OK)
        return tli_error(rc == Z_MEM_ERROR ? TL_ENOMEM : TL_EFORMAT, "%s: %s: cannot start zlib (%d)", fn, path, rc);
    p->z_live = true;
    /* zlib counts input in uInt; larger payloads are fed in pieces. */
    p->z.avail_in = stored > UINT32_MAX ? UINT32_MAX : (uInt)stored;
    p->crc = (uint32_t)crc32(0L, Z_NULL, 0);
    return TL_OK;
}

/* ---- the decompressed stream ------------------------------------------------ */

static void refill(parser *p)
{
    if (p->z.avail_in > 0)
        return;
    uint64_t used = (uint64_t)(p->z.next_in - p->stored), total = p->file.size - TLI_CKPT_HEADER_SIZE;
    uint64_t left = total - used;
    p->z.avail_in = left > UINT32_MAX ? UINT32_MAX : (uInt)left;
}

/* Inflate exactly n payload bytes into dst. The caller checked that they
 * are within the announced payload size. */
static tl_status pull(parser *p, void *dst, size_t n)
{
    uint8_t *out = dst;
    while (n > 0) {
        uInt chunk = n > (1u << 30) ? (1u << 30) : (uInt)n;
        refill(p);
        p->z.next_out = out;
        p->z.avail_out = chunk;
        int rc = inflate(&p->z, Z_NO_FLUSH);
        size_t got = chunk - p->z.avail_out;
        p->crc = (uint32_t)crc32(p->crc, out, (uInt)got);
        out += got;
        n -= got;
        p->pos += got;
        if (rc == Z_OK || (rc == Z_STREAM_END && n == 0))
            continue;
        if (rc == Z_MEM_ERROR)
            return tli_error(TL_ENOMEM, "%s: %s: out of memory decompressing", p->fn, p->path);
        if (rc == Z_STREAM_END)
            return tli_error(TL_EFORMAT, "%s: %s: payload byte %llu: the compressed stream ends before the %llu bytes "
                             "the header announces", p->fn, p->path, (unsigned long long)p->pos,
                             (unsigned long long)p->size);
        return tli_error(TL_EFORMAT, "%s: %s: payload byte %llu: the compressed payload is not a valid zlib stream (%s)",
                         p->fn, p->path, (unsigned long long)p->pos, p->z.msg ? p->z.msg : "incomplete");
    }
    return TL_OK;
}

static tl_status skip(parser *p, uint64_t n)
{
    uint8_t scratch[4096];
    while (n > 0) {
        size_t chunk = n < sizeof scratch ? (size_t)n : sizeof scratch;
        tl_status st = pull(p, scratch, chunk);
        if (st)
            return st;
        n -= chunk;
    }
    return TL_OK;
}

/* ---- sections ------------------------------------------------------------------ */

/* Read a small section body: its first min(len, cap) bytes into buf, the
 * rest skipped. `known` is how many bytes this reader understands; a
 * longer body is only allowed from a newer minor version. */
static tl_status small_body(parser *p, uint64_t len, uint8_t *buf, size_t cap, size_t *got)
{
    size_t take = len < cap ? (size_t)len : cap;
    tl_status st = pull(p, buf, take);
    if (st)
        return st;
    *got = take;
    p->cut = len - take;
    return skip(p, p->cut);
}

/* `extra` bytes of the buffered body (plus any cut off) follow the last
 * field this reader knows. */
static tl_status extra_bytes(parser *p, const char *tag, size_t extra)
{
    uint64_t all = extra + p->cut;
    if (all == 0 || p->minor > TL_CHECKPOINT_VERSION_MINOR)
        return TL_OK; /* a later minor version's fields: skipped */
    return perr(p, TL_EFORMAT, "section '%s' has %llu bytes after its last field", tag, (unsigned long long)all);
}

static bool valid_shape(const tl_shape *s)
{
    if (s->rank < 1 || s->rank > TL_MAX_RANK)
        return false;
    for (uint32_t i = 0; i < s->rank; i++)
        if (s->dims[i] == 0)
            return false;
    return true;
}

static uint64_t shape_count(const tl_shape *s)
{
    uint64_t n = 1;
    for (uint32_t i = 0; i < s->rank; i++) {
        if (n > TLI_MAX_ELEMS)
            return UINT64_MAX;
        n *= s->dims[i];
    }
    return n;
}

static bool read_shape(tli_rbuf *r, tl_shape *s)
{
    memset(s, 0, sizeof *s);
    if (!tli_rbuf_u32(r, &s->rank) || s->rank < 1 || s->rank > TL_MAX_RANK)
        return false;
    for (uint32_t i = 0; i < s->rank; i++)
        if (!tli_rbuf_u32(r, &s->dims[i]))
            return false;
    return true;
}

static tl_status parse_model(parser *p, const uint8_t *b, size_t len)
{
    if (p->have_model)
        return perr(p, TL_EFORMAT, "a second MODL section");
    if (len < TLI_MODL_SIZE)
        return perr(p, TL_EFORMAT, "section 'MODL' has %zu bytes, at least %d expected", len, TLI_MODL_SIZE);
    tli_ckpt_model *m = &p->model;
    m->major = p->major;
    m->minor = p->minor;
    m->input = tli_shape3(tli_le32(b), tli_le32(b + 4), tli_le32(b + 8));
    m->seed = tli_le64(b + 12);
    m->threads_req = tli_le32(b + 20);
    m->num_layers = tli_le32(b + 24);
    for (int i = 0; i < 4; i++)
        m->train_rng[i] = tli_le64(b + 28 + 8 * i);
    if (!valid_shape(&m->input))
        return perr(p, TL_EFORMAT, "the input shape (%u, %u, %u) has a zero dimension", m->input.dims[0],
                    m->input.dims[1], m->input.dims[2]);
    if (shape_count(&m->input) > TLI_MAX_ELEMS)
        return perr(p, TL_ETOOBIG, "the input shape (%u, %u, %u) exceeds 2^31 values", m->input.dims[0],
                    m->input.dims[1], m->input.dims[2]);
    if (m->threads_req > 1024)
        return perr(p, TL_EFORMAT, "a thread request of %u is more than the limit of 1024", m->threads_req);
    if (m->num_layers > TLI_CKPT_MAX_LAYERS)
        return perr(p, TL_ETOOBIG, "%u layers exceed the limit of %u", m->num_layers, TLI_CKPT_MAX_LAYERS);
    /* Each layer needs a LAYR section; refuse counts the payload cannot hold
     * before allocating anything for them. */
    if ((uint64_t)m->num_layers * (TLI_SECTION_HEAD + 16) > p->size - p->pos)
        return perr(p, TL_EFORMAT, "%u layers cannot fit in the %llu payload bytes that remain", m->num_layers,
                    (unsigned long long)(p->size - p->pos));
    tl_status st = extra_bytes(p, "MODL", len - TLI_MODL_SIZE);
    if (st)
        return st;
    size_t n = m->num_layers ? m->num_layers : 1;
    p->slots = tli_calloc(n, sizeof *p->slots);
    if (p->slots == NULL)
        return tli_error(TL_ENOMEM, "%s: %s: out of memory for %u layers", p->fn, p->path, m->num_layers);
    if ((st = tl_model_create(&p->shell, m->input.dims[0], m->input.dims[1], m->input.dims[2], m->seed))) {
        tli_error_prefix("%s", p->where);
        return st;
    }
    p->shell->shell = true;
    p->have_model = true;
    return p->v->model ? p->v->model(p->v->ctx, m, p->where) : TL_OK;
}

static bool name_ok(const char *name, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)name[i] < 0x20 || name[i] == '"' || name[i] == '\\')
            return false;
    return true;
}

/* Inputs of a layer (format 1.1; a 1.0 file's layers take the previous
 * one). Each must be an earlier layer: a file cannot hold a cycle. */
static tl_status parse_inputs(parser *p, tli_rbuf *r, tli_ckpt_layer *l, size_t index)
{
    if (p->minor < 1) {
        l->ninputs = 1;
        l->inputs[0] = index ? (uint32_t)(index - 1) : TLI_INPUT_MODEL;
        return TL_OK;
    }
    uint32_t n;
    if (!tli_rbuf_u32(r, &n) || n == 0 || n > TLI_MAX_INPUTS)
        return perr(p, TL_EFORMAT, "layer %zu ('%s'): an input count of 1..%d is missing or out of range", index,
                    l->name, TLI_MAX_INPUTS);
    l->ninputs = n;
    for (uint32_t k = 0; k < n; k++) {
        if (!tli_rbuf_u32(r, &l->inputs[k]))
            return perr(p, TL_EFORMAT, "layer %zu ('%s'): the section ends inside its inputs", index, l->name);
        if (l->inputs[k] != TLI_INPUT_MODEL && l->inputs[k] >= index)
            return perr(p, TL_EFORMAT, "layer %zu ('%s'): input %u is layer %u, not an earlier layer", index, l->name,
                        k, l->inputs[k]);
    }
    return TL_OK;
}

/* The kind's settings, field by field. A 1.0 file holds the kind's first
 * nfields_v1_0 fields without a count; 1.1 writes the count. Fields this
 * reader does not have come from a newer minor version (skipped); fields
 * the file lacks keep their defaults. Values are checked by the kind's
 * build when the parser builds the layer. */
static tl_status parse_settings(parser *p, tli_rbuf *r, tli_ckpt_layer *l, size_t index)
{
    const tli_layer_ops *ops = l->ops;
    uint32_t n = (uint32_t)ops->nfields_v1_0;
    if (p->minor >= 1 && !tli_rbuf_u32(r, &n))
        return perr(p, TL_EFORMAT, "layer %zu ('%s'): the section ends before the settings", index, l->name);
    if (n > ops->nfields && p->minor <= TL_CHECKPOINT_VERSION_MINOR)
        return perr(p, TL_EFORMAT, "layer %zu ('%s', %s) has %u settings, this kind has %zu", index, l->name,
                    ops->type_name, n, ops->nfields);
    tli_cfg_defaults(ops, l->cfg);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t w;
        if (!tli_rbuf_u32(r, &w))
            return perr(p, TL_EFORMAT, "layer %zu ('%s'): the section ends inside the settings", index, l->name);
        if (i >= ops->nfields)
            continue;
        const tli_field *f = &ops->fields[i];
        if (f->type == TLI_FIELD_ENUM && w > f->max) {
            char what[96];
            snprintf(what, sizeof what, "layer %zu ('%s', %s): %s", index, l->name, ops->type_name, f->name);
            return unknown_value(p, what, w);
        }
        if (f->type == TLI_FIELD_BOOL && w > 1)
            return perr(p, TL_EFORMAT, "layer %zu ('%s', %s): %s %u must be 0 or 1", index, l->name, ops->type_name,
                        f->name, w);
        tli_field_set(l->cfg, f, w);
    }
    return TL_OK;
}

/* Tensor names and shapes (and roles, from 1.1) as the file declares them. */
static tl_status parse_tensors(parser *p, tli_rbuf *r, tli_ckpt_layer *l, size_t index)
{
    uint32_t n;
    if (!tli_rbuf_u32(r, &n))
        return perr(p, TL_EFORMAT, "layer %zu ('%s'): the section ends before the tensor count", index, l->name);
    if (n > TLI_MAX_TENSORS)
        return perr(p, TL_EFORMAT, "layer %zu ('%s'): %u tensors, more than the limit of %d", index, l->name, n,
                    TLI_MAX_TENSORS);
    char sa[64];
    for (uint32_t i = 0; i < n; i++) {
        tli_ckpt_param *pr = &l->params[i];
        uint8_t plen, role = TLI_ROLE_PARAM;
        const uint8_t *pname;
        if (!tli_rbuf_u8(r, &plen) || (pname = tli_rbuf_bytes(r, plen)) == NULL ||
            (p->minor >= 1 && !tli_rbuf_u8(r, &role)) || !read_shape(r, &pr->shape))
            return perr(p, TL_EFORMAT, "layer %zu ('%s'): the section ends inside tensor %u", index, l->name, i);
        if (plen == 0 || plen > TL_MAX_NAME || !name_ok((const char *)pname, plen) || memchr(pname, 0, plen))
            return perr(p, TL_EFORMAT, "layer %zu ('%s'): tensor %u has an empty or invalid name", index, l->name, i);
        memcpy(pr->name, pname, plen);
        pr->name[plen] = '\0';
        if (role > TLI_ROLE_STATE)
            return unknown_value(p, "tensor role", role);
        pr->role = (tli_role)role;
        uint64_t count = shape_count(&pr->shape);
        if (count > TLI_MAX_ELEMS)
            return perr(p, TL_ETOOBIG, "layer %zu ('%s'): %s %s exceeds 2^31 values", index, l->name, pr->name,
                        tli_shape_str(&pr->shape, sa, sizeof sa));
        if (!valid_shape(&pr->shape))
            return perr(p, TL_EFORMAT, "layer %zu ('%s'): %s has a zero dimension", index, l->name, pr->name);
        pr->count = (size_t)count;
    }
    l->nparams = n;
    return TL_OK;
}

/* Build the record's layer (a shell) on the layers before it - the kind's
 * own checks of settings and shapes - and hold the file to it. */
static tl_status build_shell(parser *p, const tli_ckpt_layer *l, size_t index)
{
    char prefix[600], sa[64], sb[64];
    snprintf(prefix, sizeof prefix, "%s: layer %zu", p->where, index);
    tl_layer *b;
    tl_status st = tli_model_append(&b, p->shell, l->ops, l->cfg, l->act, l->use_bias, l->inputs, l->ninputs,
                                    l->name, prefix);
    if (st == TL_EINVAL || st == TL_ESHAPE) {
        /* The file's settings are at fault, not a caller's: a format error. */
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", tl_last_error());
        return tli_error(TL_EFORMAT, "%s", msg);
    }
    if (st)
        return st;
    b->trainable = l->trainable;
    b->lr_scale = l->lr_scale;
    if (!tli_shape_eq(&b->out_shape, &l->out_shape))
        return perr(p, TL_EFORMAT, "layer %zu ('%s'): the file says its output is %s, its settings give %s", index,
                    l->name, tli_shape_str(&l->out_shape, sa, sizeof sa), tli_shape_str(&b->out_shape, sb, sizeof sb));
    if (b->nparams != l->nparams)
        return perr(p, TL_EFORMAT, "layer %zu ('%s', %s%s) has %zu tensors, %zu expected", index, l->name,
                    l->ops->type_name, l->use_bias ? " with bias" : "", l->nparams, b->nparams);
    for (size_t i = 0; i < l->nparams; i++) {
        const tli_param *want = &b->params[i];
        const tli_ckpt_param *got = &l->params[i];
        if (strcmp(got->name, want->name) != 0)
            return perr(p, TL_EFORMAT, "layer %zu ('%s'): tensor %zu is called '%s', not '%s'", index, l->name, i,
                        got->name, want->name);
        if (!tli_shape_eq(&got->shape, &want->shape))
            return perr(p, TL_EFORMAT, "layer %zu ('%s'): %s is %s in the file, but the layer's settings give %s",
                        index, l->name, got->name, tli_shape_str(&got->shape, sa, sizeof sa),
                        tli_shape_str(&want->shape, sb, sizeof sb));
        if (p->minor >= 1 && got->role != want->role)
            return perr(p, TL_EFORMAT, "layer %zu ('%s'): %s is a %s in the file, a %s in this kind", index, l->name,
                        got->name, got->role == TLI_ROLE_STATE ? "state" : "parameter",
                        want->role == TLI_ROLE_STATE ? "state" : "parameter");
    }
    return TL_OK;
}

static tl_status parse_layer(parser *p, const uint8_t *b, size_t len)
{
    if (!p->have_model)
        return perr(p, TL_EFORMAT, "a LAYR section before the MODL section");
    size_t index = p->nlayers;
    if (index >= p->model.num_layers)
        return perr(p, TL_EFORMAT, "more LAYR sections than the %u layers the MODL section declares",
                    p->model.num_layers);
    if (p->have_optim)
        return perr(p, TL_EFORMAT, "a LAYR section after the OPTM section");
    tli_ckpt_layer l;
    memset(&l, 0, sizeof l);
    tli_rbuf r = {b, len, 0};
    uint32_t kind;
    uint8_t act, bias, trainable, name_len;
    if (!tli_rbuf_u32(&r, &kind) || !tli_rbuf_u8(&r, &act) || !tli_rbuf_u8(&r, &bias) ||
        !tli_rbuf_u8(&r, &trainable) || !tli_rbuf_u8(&r, &name_len) || !tli_rbuf_f32(&r, &l.lr_scale))
        return perr(p, TL_EFORMAT, "layer %zu: the LAYR section is only %zu bytes", index, len);
    const uint8_t *name = tli_rbuf_bytes(&r, name_len);
    if (name == NULL || name_len == 0 || name_len > TL_MAX_NAME)
        return perr(p, TL_EFORMAT, "layer %zu: a name of %u bytes (1..%d, within the section)", index, name_len,
                    TL_MAX_NAME);
    memcpy(l.name, name, name_len);
    l.name[name_len] = '\0';
    if (!name_ok(l.name, name_len) || strlen(l.name) != name_len)
        return perr(p, TL_EFORMAT, "layer %zu: the name contains a control character, quote or backslash", index);
    /* From 1.1 the kind's name follows, so a reader that does not know the
     * kind can say which it is. */
    char kind_name[32] = "";
    if (p->minor >= 1) {
        uint8_t klen;
        const uint8_t *kn;
        if (!tli_rbuf_u8(&r, &klen) || klen == 0 || klen >= sizeof kind_name || (kn = tli_rbuf_bytes(&r, klen)) == NULL ||
            !name_ok((const char *)kn, klen) || memchr(kn, 0, klen))
            return perr(p, TL_EFORMAT, "layer %zu ('%s'): the kind's name is missing or invalid", index, l.name);
        memcpy(kind_name, kn, klen);
        kind_name[klen] = '\0';
    }
    l.ops = tli_layer_ops_for((tl_layer_kind)kind);
    if (l.ops == NULL) {
        /* Every kind of the file's minor version is known to a reader of
         * that version or later: only a newer file can hold a new one. */
        if (p->minor > TL_CHECKPOINT_VERSION_MINOR)
            return perr(p, TL_EVERSION, "layer %zu ('%s') is a '%s' layer (kind %u), which this libtl (%s, format "
                        "%u.%u) does not know; the file is format %u.%u", index, l.name,
                        kind_name[0] ? kind_name : "?", kind, TL_VERSION_STRING, TL_CHECKPOINT_VERSION_MAJOR,
                        TL_CHECKPOINT_VERSION_MINOR, p->major, p->minor);
        return perr(p, TL_EFORMAT, "layer %zu ('%s'): layer kind %u%s%s%s is not valid in format %u.%u", index,
                    l.name, kind, kind_name[0] ? " ('" : "", kind_name, kind_name[0] ? "')" : "", p->major, p->minor);
    }
    if (kind_name[0] && strcmp(kind_name, l.ops->type_name) != 0)
        return perr(p, TL_EFORMAT, "layer %zu ('%s'): kind %u is '%s', but the file calls it '%s'", index, l.name,
                    kind, l.ops->type_name, kind_name);
    /* Format 1.0 had kinds 1..4 (conv2d .. dense) only. Not "no 1.0
     * settings": add, concatenate and global_avgpool2d have no settings
     * either, and are as new. */
    if (p->minor < 1 && kind > TL_LAYER_DENSE)
        return perr(p, TL_EFORMAT, "layer %zu ('%s'): kind '%s' did not exist in format 1.0", index, l.name,
                    l.ops->type_name);
    /* relu6 .. hard_sigmoid came with format 1.1. */
    if (act > TL_ACT_HARD_SIGMOID || (p->minor < 1 && act > TL_ACT_TANH))
        return unknown_value(p, "activation", act);
    if (bias > 1 || trainable > 1)
        return perr(p, TL_EFORMAT, "layer %zu ('%s'): use_bias %u and trainable %u must be 0 or 1", index, l.name,
                    bias, trainable);
    if (!(l.lr_scale >= 0.0f) || !isfinite(l.lr_scale))
        return perr(p, TL_EFORMAT, "layer %zu ('%s'): learning-rate scale %g must be finite and >= 0", index, l.name,
                    (double)l.lr_scale);
    l.act = (tl_activation)act;
    l.use_bias = bias;
    l.trainable = trainable;
    tl_status st;
    if ((st = parse_inputs(p, &r, &l, index)) || (st = parse_settings(p, &r, &l, index)))
        return st;
    if (!read_shape(&r, &l.out_shape) || !valid_shape(&l.out_shape))
        return perr(p, TL_EFORMAT, "layer %zu ('%s'): the output shape is missing or has rank 0, over %d or a zero "
                    "dimension", index, l.name, TL_MAX_RANK);
    if (shape_count(&l.out_shape) > TLI_MAX_ELEMS)
        return perr(p, TL_ETOOBIG, "layer %zu ('%s'): the output exceeds 2^31 values", index, l.name);
    if ((st = parse_tensors(p, &r, &l, index)))
        return st;
    uint64_t bytes = 0;
    for (size_t i = 0; i < l.nparams; i++)
        bytes += l.params[i].count * sizeof(float) + TLI_SECTION_HEAD + TLI_TENS_META;
    /* The values must follow in this payload: refuse sizes it cannot hold
     * before anything is allocated for them. */
    if (bytes > p->size - p->pos)
        return perr(p, TL_EFORMAT, "layer %zu ('%s') declares %llu bytes of tensors, but only %llu payload bytes "
                    "remain", index, l.name, (unsigned long long)bytes, (unsigned long long)(p->size - p->pos));
    if ((st = extra_bytes(p, "LAYR", tli_rbuf_left(&r))))
        return st;
    if ((st = build_shell(p, &l, index)))
        return st;
    p->slots[index].nparams = (uint32_t)l.nparams;
    for (size_t i = 0; i < l.nparams; i++) {
        p->slots[index].count[i] = l.params[i].count;
        p->slots[index].role[i] = l.params[i].role;
    }
    p->nlayers++;
    return p->v->layer ? p->v->layer(p->v->ctx, index, &l, p->where) : TL_OK;
}

static tl_status parse_optim(parser *p, const uint8_t *b, size_t len)
{
    if (!p->have_model || p->nlayers != p->model.num_layers)
        return perr(p, TL_EFORMAT, "an OPTM section before the last of the %u layers", p->model.num_layers);
    if (p->have_optim)
        return perr(p, TL_EFORMAT, "a second OPTM section");
    if (len < TLI_OPTM_SIZE)
        return perr(p, TL_EFORMAT, "section 'OPTM' has %zu bytes, at least %d expected", len, TLI_OPTM_SIZE);
    tli_ckpt_optim *o = &p->optim;
    uint32_t kind = tli_le32(b), loss = tli_le32(b + 4);
    if (kind < TL_OPT_SGD || kind > TL_OPT_ADAMW)
        return unknown_value(p, "optimizer kind", kind);
    if (loss < TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY || loss > TL_LOSS_MEAN_SQUARED_ERROR)
        return unknown_value(p, "loss", loss);
    o->kind = (tl_optimizer_kind)kind;
    o->loss = (tl_loss)loss;
    o->steps = tli_le64(b + 8);
    o->lr = tli_bits_f32(tli_le32(b + 16));
    o->beta1 = tli_bits_f32(tli_le32(b + 20));
    o->beta2 = tli_bits_f32(tli_le32(b + 24));
    o->eps = tli_bits_f32(tli_le32(b + 28));
    o->momentum = tli_bits_f32(tli_le32(b + 32));
    o->weight_decay = tli_bits_f32(tli_le32(b + 36));
    if (b[40] > 1)
        return perr(p, TL_EFORMAT, "nesterov %u must be 0 or 1", b[40]);
    o->nesterov = b[40];
    tl_status st = extra_bytes(p, "OPTM", len - TLI_OPTM_SIZE);
    if (st)
        return st;
    p->have_optim = true;
    return p->v->optim ? p->v->optim(p->v->ctx, o, p->where) : TL_OK;
}

static double f64_at(const uint8_t *b)
{
    uint64_t bits = tli_le64(b);
    double v;
    memcpy(&v, &bits, sizeof v);
    return v;
}

/* SCHD (since 1.1): the optimizer's learning-rate schedule, its settings
 * held to tl_optimizer_set_schedule()'s checks and its counters to what
 * those settings allow. */
static tl_status parse_schedule(parser *p, const uint8_t *b, size_t len)
{
    if (p->minor < 1)
        return perr(p, TL_EFORMAT, "a SCHD section in a format %u.%u file (schedules came with 1.1)", p->major,
                    p->minor);
    if (!p->have_optim)
        return perr(p, TL_EFORMAT, "a SCHD section before the OPTM section");
    if (p->have_schedule)
        return perr(p, TL_EFORMAT, "a second SCHD section");
    if (len < TLI_SCHD_SIZE)
        return perr(p, TL_EFORMAT, "section 'SCHD' has %zu bytes, at least %d expected", len, TLI_SCHD_SIZE);
    tli_schedule s;
    memset(&s, 0, sizeof s);
    tl_schedule_options *o = &s.o;
    uint32_t kind = tli_le32(b), monitor = tli_le32(b + 4);
    if (kind == TL_SCHEDULE_CONSTANT)
        return perr(p, TL_EFORMAT, "schedule kind 0 (constant) is not stored");
    if (kind > TL_SCHEDULE_REDUCE_ON_PLATEAU)
        return unknown_value(p, "schedule kind", kind);
    if (monitor > TL_MONITOR_VAL_ACCURACY)
        return unknown_value(p, "schedule monitor", monitor);
    o->version = TL_SCHEDULE_OPTIONS_VERSION;
    o->kind = (tl_schedule_kind)kind;
    o->monitor = (tl_schedule_monitor)monitor;
    o->gamma = tli_bits_f32(tli_le32(b + 8));
    o->step_size = tli_le32(b + 12);
    o->num_milestones = tli_le32(b + 16);
    if (o->num_milestones > TL_SCHEDULE_MAX_MILESTONES)
        return perr(p, TL_EFORMAT, "%u schedule milestones, at most %d", o->num_milestones,
                    TL_SCHEDULE_MAX_MILESTONES);
    for (int i = 0; i < TL_SCHEDULE_MAX_MILESTONES; i++)
        o->milestones[i] = tli_le32(b + 20 + 4 * i);
    o->total_steps = tli_le64(b + 84);
    o->warmup_steps = tli_le64(b + 92);
    o->warmup_start_factor = tli_bits_f32(tli_le32(b + 100));
    o->min_lr = tli_bits_f32(tli_le32(b + 104));
    o->pct_start = tli_bits_f32(tli_le32(b + 108));
    o->div_factor = tli_bits_f32(tli_le32(b + 112));
    o->final_div_factor = tli_bits_f32(tli_le32(b + 116));
    o->factor = tli_bits_f32(tli_le32(b + 120));
    o->patience = tli_le32(b + 124);
    o->min_delta = tli_bits_f32(tli_le32(b + 128));
    o->cooldown = tli_le32(b + 132);
    if (tli_schedule_check(o, "the saved schedule")) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", tl_last_error());
        return perr(p, TL_EFORMAT, "%s", msg);
    }
    s.origin = tli_le64(b + 136);
    s.total = tli_le64(b + 144);
    s.epoch = tli_le32(b + 152);
    s.bad = tli_le32(b + 156);
    s.cooldown_left = tli_le32(b + 160);
    s.best = f64_at(b + 168);
    s.scale = f64_at(b + 176);
    const char *name = tli_schedule_kind_str(o->kind);
    if (s.origin > p->optim.steps)
        return perr(p, TL_EFORMAT, "the %s schedule started at step %llu, after the optimizer's %llu steps", name,
                    (unsigned long long)s.origin, (unsigned long long)p->optim.steps);
    if (s.total != o->total_steps && !(tli_schedule_per_step(o->kind) && o->total_steps == 0))
        return perr(p, TL_EFORMAT, "the %s schedule's total_steps in effect, %llu, is not its setting %llu", name,
                    (unsigned long long)s.total, (unsigned long long)o->total_steps);
    if (o->kind == TL_SCHEDULE_COSINE && s.total && o->warmup_steps > s.total)
        return perr(p, TL_EFORMAT, "the cosine schedule's warmup_steps %llu exceed its total_steps in effect %llu",
                    (unsigned long long)o->warmup_steps, (unsigned long long)s.total);
    if (s.bad > o->patience || s.cooldown_left > o->cooldown)
        return perr(p, TL_EFORMAT, "the %s schedule's %u bad epochs and %u cooldown epochs left exceed its patience "
                    "%u and cooldown %u", name, s.bad, s.cooldown_left, o->patience, o->cooldown);
    if (!(s.scale >= 0.0 && s.scale <= 1.0) || isnan(s.best))
        return perr(p, TL_EFORMAT, "the %s schedule's reduction %g must be in [0, 1] and its best value %g a number",
                    name, s.scale, s.best);
    tl_status st = extra_bytes(p, "SCHD", len - TLI_SCHD_SIZE);
    if (st)
        return st;
    p->have_schedule = true;
    return p->v->schedule ? p->v->schedule(p->v->ctx, &s, p->where) : TL_OK;
}

/* LOSS (since 1.1): the loss's options, held to tl_model_set_loss_options()'s
 * checks. Read as it streams: its class weights may not fit a small body. */
static tl_status parse_loss(parser *p, uint64_t len)
{
    if (p->minor < 1)
        return perr(p, TL_EFORMAT, "a LOSS section in a format %u.%u file (loss options came with 1.1)", p->major,
                    p->minor);
    if (!p->have_optim)
        return perr(p, TL_EFORMAT, "a LOSS section before the OPTM section");
    if (p->have_loss)
        return perr(p, TL_EFORMAT, "a second LOSS section");
    if (len < TLI_LOSS_SIZE)
        return perr(p, TL_EFORMAT, "section 'LOSS' has %llu bytes, at least %d expected", (unsigned long long)len,
                    TLI_LOSS_SIZE);
    uint8_t head[TLI_LOSS_SIZE];
    tl_status st = pull(p, head, sizeof head);
    if (st)
        return st;
    const uint32_t count = tli_le32(head);
    const float smoothing = tli_bits_f32(tli_le32(head + 4));
    const size_t outputs = tli_model_out_size(p->shell);
    if (count != 0 && count != outputs)
        return perr(p, TL_EFORMAT, "%u class weights, but the model has %zu outputs", count, outputs);
    if ((uint64_t)count * 4 > len - TLI_LOSS_SIZE)
        return perr(p, TL_EFORMAT, "section 'LOSS' has %llu bytes, too few for its %u class weights",
                    (unsigned long long)len, count);
    float *w = NULL;
    if (count) {
        w = tli_malloc((size_t)count * sizeof *w);
        if (w == NULL)
            return perr(p, TL_ENOMEM, "out of memory for %u class weights", count);
        if ((st = pull(p, w, (size_t)count * sizeof *w))) {
            tli_free(w);
            return st;
        }
        for (uint32_t c = 0; c < count; c++)
            w[c] = tli_bits_f32(tli_le32((const uint8_t *)&w[c]));
    }
    if (smoothing == 0.0f && w == NULL)
        return perr(p, TL_EFORMAT, "a LOSS section with the default options, which are never stored");
    if (tli_loss_options_check(p->optim.loss, smoothing, w, count, outputs, "the saved loss options")) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", tl_last_error());
        tli_free(w);
        return perr(p, TL_EFORMAT, "%s", msg);
    }
    p->cut = 0;
    const uint64_t extra = len - TLI_LOSS_SIZE - (uint64_t)count * 4;
    if ((st = extra_bytes(p, "LOSS", (size_t)extra)) == TL_OK && (st = skip(p, extra)) == TL_OK) {
        p->have_loss = true;
        if (p->v->loss)
            st = p->v->loss(p->v->ctx, smoothing, w, count, p->where);
    }
    tli_free(w);
    return st;
}

/* ESTP (since 1.1): an unfinished fit's early stopping, its counters
 * consistent with each other, then its best-weights copy, which must hold
 * every tensor of the model. Read as it streams: the copy is model-sized. */
static tl_status parse_early(parser *p, uint64_t len)
{
    if (p->minor < 1)
        return perr(p, TL_EFORMAT, "an ESTP section in a format %u.%u file (it came with 1.1)", p->major, p->minor);
    if (!p->have_optim)
        return perr(p, TL_EFORMAT, "an ESTP section before the OPTM section");
    if (p->have_early)
        return perr(p, TL_EFORMAT, "a second ESTP section");
    if (len < TLI_ESTP_SIZE)
        return perr(p, TL_EFORMAT, "section 'ESTP' has %llu bytes, at least %d expected", (unsigned long long)len,
                    TLI_ESTP_SIZE);
    uint8_t b[TLI_ESTP_SIZE];
    tl_status st = pull(p, b, sizeof b);
    if (st)
        return st;
    tli_ckpt_early e;
    const uint32_t monitor = tli_le32(b);
    if (monitor > TL_MONITOR_VAL_ACCURACY)
        return unknown_value(p, "early-stopping monitor", monitor);
    e.monitor = (tl_schedule_monitor)monitor;
    e.wait = tli_le32(b + 4);
    e.best_epoch = tli_le32(b + 8);
    e.epochs = tli_le32(b + 12);
    e.best = f64_at(b + 16);
    const uint64_t count = tli_le64(b + 24);
    if (e.wait > e.epochs || e.best_epoch > e.epochs)
        return perr(p, TL_EFORMAT, "early stopping's %u epochs without improvement and best epoch %u exceed its %u "
                    "epochs", e.wait, e.best_epoch, e.epochs);
    if ((e.best_epoch == 0) != (isnan(e.best) != 0))
        return perr(p, TL_EFORMAT, "early stopping's best value %g does not fit its best epoch %u (NaN exactly when "
                    "it is 0)", e.best, e.best_epoch);
    if (e.best_epoch && e.wait != e.epochs - e.best_epoch)
        return perr(p, TL_EFORMAT, "early stopping's %u epochs without improvement are not the %u since its best "
                    "epoch %u", e.wait, e.epochs - e.best_epoch, e.best_epoch);
    uint64_t values = 0;
    for (size_t i = 0; i < p->nlayers; i++)
        for (uint32_t k = 0; k < p->slots[i].nparams; k++)
            values += p->slots[i].count[k];
    if (count != 0 && count != values)
        return perr(p, TL_EFORMAT, "early stopping's best-weights copy has %llu values; the model's tensors have %llu",
                    (unsigned long long)count, (unsigned long long)values);
    if (count * sizeof(float) > len - TLI_ESTP_SIZE)
        return perr(p, TL_EFORMAT, "section 'ESTP' has %llu bytes, too few for its %llu values",
                    (unsigned long long)len, (unsigned long long)count);
    e.count = (size_t)count;
    const uint64_t extra = len - TLI_ESTP_SIZE - count * sizeof(float);
    p->cut = 0;
    if ((st = extra_bytes(p, "ESTP", (size_t)extra)))
        return st;
    float *dst = NULL;
    if (p->v->early && (st = p->v->early(&dst, p->v->ctx, &e, p->where)))
        return st;
    if (dst == NULL) {
        st = skip(p, count * sizeof(float));
    } else if ((st = pull(p, dst, e.count * sizeof(float))) == TL_OK) {
        tli_f32_swap_le(dst, e.count);
    }
    if (st == TL_OK)
        st = skip(p, extra);
    p->have_early = true;
    return st;
}

static tl_status parse_tensor(parser *p, uint64_t len)
{
    uint8_t b[TLI_TENS_META];
    if (len < TLI_TENS_META)
        return perr(p, TL_EFORMAT, "section 'TENS' has %llu bytes, at least %d expected", (unsigned long long)len,
                    TLI_TENS_META);
    tl_status st = pull(p, b, sizeof b);
    if (st)
        return st;
    uint32_t layer = tli_le32(b), param = tli_le32(b + 4), slot = tli_le32(b + 8), dtype = tli_le32(b + 12);
    uint64_t count = tli_le64(b + 16);
    if (count > TLI_MAX_ELEMS)
        return perr(p, TL_ETOOBIG, "a tensor of %llu values exceeds the limit of 2^31 - 1", (unsigned long long)count);
    if (layer >= p->nlayers)
        return perr(p, TL_EFORMAT, "a tensor for layer %u, which is not declared before it", layer);
    layer_slots *ls = &p->slots[layer];
    if (param >= ls->nparams)
        return perr(p, TL_EFORMAT, "a tensor for tensor %u of layer %u ('%s'), which has %u", param, layer,
                    p->shell->layers[layer]->name, ls->nparams);
    if (dtype != TLI_DTYPE_F32)
        return unknown_value(p, "tensor dtype", dtype);
    if (slot > TLI_SLOT_STATE1)
        return unknown_value(p, "tensor slot", slot);
    const char *lname = p->shell->layers[layer]->name;
    if (slot != TLI_SLOT_VALUE && (!p->have_optim || slot > tli_optim_kind_slots(p->optim.kind)))
        return perr(p, TL_EFORMAT, "optimizer state slot %u of layer %u ('%s') %s", slot, layer, lname,
                    p->have_optim ? "is not used by the saved optimizer" : "comes before the OPTM section");
    if (slot != TLI_SLOT_VALUE && ls->role[param] == TLI_ROLE_STATE)
        return perr(p, TL_EFORMAT, "optimizer state for tensor %u of layer %u ('%s'), which the optimizer never "
                    "updates", param, layer, lname);
    if (count != ls->count[param])
        return perr(p, TL_EFORMAT, "the tensor of layer %u ('%s') tensor %u has %llu values, its shape gives %zu",
                    layer, lname, param, (unsigned long long)count, ls->count[param]);
    if (len != TLI_TENS_META + count * sizeof(float))
        return perr(p, TL_EFORMAT, "section 'TENS' has %llu bytes; %llu values need %llu", (unsigned long long)len,
                    (unsigned long long)count, (unsigned long long)(TLI_TENS_META + count * sizeof(float)));
    uint32_t bit = 1u << (slot * TLI_MAX_TENSORS + param);
    if (ls->filled & bit)
        return perr(p, TL_EFORMAT, "a second tensor for layer %u ('%s') tensor %u slot %u", layer, lname, param,
                    slot);
    ls->filled |= bit;
    float *dst = NULL;
    if (p->v->tensor && (st = p->v->tensor(&dst, p->v->ctx, layer, param, slot, (size_t)count, p->where)))
        return st;
    if (dst == NULL)
        return skip(p, count * sizeof(float));
    if ((st = pull(p, dst, (size_t)count * sizeof(float))))
        return st;
    tli_f32_swap_le(dst, (size_t)count);
    return TL_OK;
}

static tl_status finish(parser *p)
{
    if (!p->have_model)
        return perr(p, TL_EFORMAT, "the END section comes before a MODL section");
    if (p->nlayers != p->model.num_layers)
        return perr(p, TL_EFORMAT, "the file ends after %zu of the %u layers it declares", p->nlayers,
                    p->model.num_layers);
    for (size_t i = 0; i < p->nlayers; i++)
        for (uint32_t k = 0; k < p->slots[i].nparams; k++)
            if (!(p->slots[i].filled & (1u << k)))
                return perr(p, TL_EFORMAT, "layer %zu ('%s') tensor %u has no values", i, p->shell->layers[i]->name, k);
    if (p->pos != p->size)
        return perr(p, TL_EFORMAT, "%llu payload bytes follow the END section", (unsigned long long)(p->size - p->pos));
    if (tli_model_check_graph(p->shell, NULL)) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", tl_last_error());
        return perr(p, TL_EFORMAT, "%s", msg);
    }
    /* The zlib stream must end exactly here, with no input left over. */
    uint8_t extra;
    refill(p);
    p->z.next_out = &extra;
    p->z.avail_out = 1;
    int rc = inflate(&p->z, Z_NO_FLUSH);
    if (rc != Z_STREAM_END || p->z.avail_out != 1)
        return tli_error(TL_EFORMAT, "%s: %s: payload byte %llu: the compressed stream goes on after the announced "
                         "payload size", p->fn, p->path, (unsigned long long)p->size);
    uint64_t used = (uint64_t)(p->z.next_in - p->stored), total = p->file.size - TLI_CKPT_HEADER_SIZE;
    if (used != total)
        return tli_error(TL_EFORMAT, "%s: %s: byte %llu: %llu compressed bytes follow the end of the zlib stream",
                         p->fn, p->path, (unsigned long long)(TLI_CKPT_HEADER_SIZE + used),
                         (unsigned long long)(total - used));
    if (p->crc != p->want_crc)
        return tli_error(TL_ECHECKSUM, "%s: %s: byte 32: the payload's CRC-32 is %08x, the header says %08x; the file "
                         "is damaged", p->fn, p->path, p->crc, p->want_crc);
    return TL_OK;
}

/* ASCII letters, digits and space; not <ctype.h>, which follows the locale. */
static bool tag_char_ok(uint8_t c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == ' ';
}

static tl_status sections(parser *p)
{
    for (;;) {
        p->section = p->pos;
        snprintf(p->where, sizeof p->where, "%s: %s: payload byte %llu", p->fn, p->path, (unsigned long long)p->pos);
        if (p->size - p->pos < TLI_SECTION_HEAD)
            return perr(p, TL_EFORMAT, "the payload ends without an END section");
        uint8_t head[TLI_SECTION_HEAD];
        tl_status st = pull(p, head, sizeof head);
        if (st)
            return st;
        char tag[5];
        memcpy(tag, head, 4);
        tag[4] = '\0';
        uint64_t len = tli_le64(head + 4);
        for (int i = 0; i < 4; i++)
            if (!tag_char_ok(head[i]))
                return perr(p, TL_EFORMAT, "not a section tag (bytes %02x %02x %02x %02x)", head[0], head[1], head[2],
                            head[3]);
        if (len > p->size - p->pos)
            return perr(p, TL_EFORMAT, "section '%s' declares %llu bytes, but only %llu payload bytes remain", tag,
                        (unsigned long long)len, (unsigned long long)(p->size - p->pos));
        if (p->section == 0 && strcmp(tag, TLI_TAG_MODEL) != 0)
            return perr(p, TL_EFORMAT, "the first section is '%s', not 'MODL'", tag);
        /* Small sections are parsed from a buffer; anything past its size
         * belongs to a later minor version and is skipped. */
        uint8_t body[1024];
        size_t got;
        if (strcmp(tag, TLI_TAG_TENSOR) == 0) {
            st = parse_tensor(p, len);
        } else if (strcmp(tag, TLI_TAG_MODEL) == 0) {
            if (!(st = small_body(p, len, body, sizeof body, &got)))
                st = parse_model(p, body, got);
        } else if (strcmp(tag, TLI_TAG_LAYER) == 0) {
            if (!(st = small_body(p, len, body, sizeof body, &got)))
                st = parse_layer(p, body, got);
        } else if (strcmp(tag, TLI_TAG_OPTIM) == 0) {
            if (!(st = small_body(p, len, body, sizeof body, &got)))
                st = parse_optim(p, body, got);
        } else if (strcmp(tag, TLI_TAG_SCHEDULE) == 0) {
            if (!(st = small_body(p, len, body, sizeof body, &got)))
                st = parse_schedule(p, body, got);
        } else if (strcmp(tag, TLI_TAG_LOSS) == 0) {
            st = parse_loss(p, len);
        } else if (strcmp(tag, TLI_TAG_EARLY) == 0) {
            st = parse_early(p, len);
        } else if (strcmp(tag, TLI_TAG_END) == 0) {
            if (!(st = skip(p, len)))
                return finish(p);
        } else if (head[0] >= 'A' && head[0] <= 'Z') {
            return perr(p, TL_EVERSION, "critical section '%s' is not known to this libtl (the file is format %u.%u, "
                        "this libtl reads up to %u.%u)", tag, p->major, p->minor, TL_CHECKPOINT_VERSION_MAJOR,
                        TL_CHECKPOINT_VERSION_MINOR);
        } else {
            st = skip(p, len); /* ancillary: safe to ignore */
        }
        if (st)
            return st;
    }
}

tl_status tli_ckpt_read(const char *path, const tli_ckpt_visitor *v, const char *fn, tl_model **shell)
{
    parser p;
    memset(&p, 0, sizeof p);
    p.fn = fn;
    p.path = path;
    p.v = v;
    tl_status st = tli_rfile_open(&p.file, path, fn);
    if (st)
        return st;
    uint8_t h[TLI_CKPT_HEADER_SIZE];
    if (p.file.size == 0)
        st = tli_error(TL_ETRUNCATED, "%s: %s: byte 0: the file is empty", fn, path);
    if (st == TL_OK && (st = read_header(&p, h)) == TL_OK && (st = read_stored(&p, h)) == TL_OK)
        st = sections(&p);
    if (p.z_live)
        inflateEnd(&p.z);
    tli_free(p.stored);
    tli_free(p.slots);
    if (st == TL_OK && shell)
        *shell = p.shell;
    else
        tl_model_free(p.shell);
    tli_rfile_close(&p.file);
    return st;
}
