/*
 * safetensors_read.c - open a .safetensors file and check everything about
 * it before a single tensor is read: the 8-byte header length against the
 * limit and the file size, the header as strict JSON, each entry's fields,
 * dtype, shape and size (overflow-checked), and the data offsets, which must
 * cover the data exactly - no overlap, no hole, nothing after the last
 * tensor - as the safetensors project requires.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bytes.h"
#include "safetensors.h"

static const struct {
    const char *name;
    size_t size;
    tli_st_dtype kind;
} dtypes[] = {
    {"F32", 4, TLI_ST_F32},     {"F16", 2, TLI_ST_F16},     {"BF16", 2, TLI_ST_BF16},  {"F64", 8, TLI_ST_OTHER},
    {"I64", 8, TLI_ST_OTHER},   {"U64", 8, TLI_ST_OTHER},   {"I32", 4, TLI_ST_OTHER},  {"U32", 4, TLI_ST_OTHER},
    {"I16", 2, TLI_ST_OTHER},   {"U16", 2, TLI_ST_OTHER},   {"I8", 1, TLI_ST_OTHER},   {"U8", 1, TLI_ST_OTHER},
    {"BOOL", 1, TLI_ST_OTHER},  {"F8_E5M2", 1, TLI_ST_OTHER}, {"F8_E4M3", 1, TLI_ST_OTHER},
};

typedef struct ctx {
    const char *fn, *path;
} ctx;

static tl_status ferr(const ctx *c, tl_status st, size_t at, const char *fmt, ...) TLI_PRINTF(4, 5);
static tl_status ferr(const ctx *c, tl_status st, size_t at, const char *fmt, ...)
{
    char text[640];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    return tli_error(st, "%s: %s: byte %zu: %s", c->fn, c->path, at, text);
}

static tl_status read_entry(const ctx *c, const tli_json *j, const tli_json_node *e, tli_st_tensor *t)
{
    t->name = e->key;
    t->offset = e->offset;
    if (e->type != TLI_JSON_OBJECT)
        return ferr(c, TL_EFORMAT, e->offset, "tensor '%.200s' is a JSON %s, not an object", t->name,
                    tli_json_type_str(e->type));
    const tli_json_node *dtype = NULL, *shape = NULL, *offs = NULL;
    uint32_t k = e->child;
    for (uint32_t i = 0; i < e->count; i++, k = j->nodes[k].next) {
        const tli_json_node *m = &j->nodes[k];
        if (strcmp(m->key, "dtype") == 0)
            dtype = m;
        else if (strcmp(m->key, "shape") == 0)
            shape = m;
        else if (strcmp(m->key, "data_offsets") == 0)
            offs = m;
        else
            return ferr(c, TL_EFORMAT, m->offset, "tensor '%.200s' has an unknown field '%.100s'", t->name, m->key);
    }
    if (dtype == NULL || shape == NULL || offs == NULL)
        return ferr(c, TL_EFORMAT, e->offset, "tensor '%.200s' lacks '%s'", t->name,
                    dtype == NULL ? "dtype" : shape == NULL ? "shape" : "data_offsets");
    if (dtype->type != TLI_JSON_STRING)
        return ferr(c, TL_EFORMAT, dtype->offset, "tensor '%.200s': dtype is a %s, not a string", t->name,
                    tli_json_type_str(dtype->type));
    t->dtype = dtype->str;
    for (size_t i = 0; i < sizeof dtypes / sizeof *dtypes; i++)
        if (strcmp(dtype->str, dtypes[i].name) == 0) {
            t->kind = dtypes[i].kind;
            t->elem_size = dtypes[i].size;
        }
    if (shape->type != TLI_JSON_ARRAY)
        return ferr(c, TL_EFORMAT, shape->offset, "tensor '%.200s': shape is a %s, not an array", t->name,
                    tli_json_type_str(shape->type));
    if (shape->count > TLI_ST_MAX_RANK)
        return ferr(c, TL_ETOOBIG, shape->offset, "tensor '%.200s' has rank %u, more than %u", t->name, shape->count,
                    TLI_ST_MAX_RANK);
    t->rank = shape->count;
    size_t count = 1;
    k = shape->child;
    for (uint32_t i = 0; i < shape->count; i++, k = j->nodes[k].next) {
        if (!tli_json_u64(&j->nodes[k], &t->dims[i]))
            return ferr(c, TL_EFORMAT, j->nodes[k].offset,
                        "tensor '%.200s': shape dimension %u is not a non-negative integer", t->name, i);
        if ((uint64_t)(size_t)t->dims[i] != t->dims[i] || !tli_mul_ok(count, (size_t)t->dims[i], &count))
            return ferr(c, TL_ETOOBIG, shape->offset, "tensor '%.200s': the shape's element count overflows",
                        t->name);
    }
    t->count = count;
    if (offs->type != TLI_JSON_ARRAY || offs->count != 2 || !tli_json_u64(&j->nodes[offs->child], &t->begin) ||
        !tli_json_u64(&j->nodes[j->nodes[offs->child].next], &t->end))
        return ferr(c, TL_EFORMAT, offs->offset, "tensor '%.200s': data_offsets is not [begin, end] in integers",
                    t->name);
    if (t->begin > t->end)
        return ferr(c, TL_EFORMAT, offs->offset, "tensor '%.200s': data_offsets [%llu, %llu] end before they begin",
                    t->name, (unsigned long long)t->begin, (unsigned long long)t->end);
    size_t bytes;
    if (t->elem_size && !tli_mul_ok(count, t->elem_size, &bytes))
        return ferr(c, TL_ETOOBIG, shape->offset, "tensor '%.200s': its size in bytes overflows", t->name);
    if (t->elem_size && bytes != t->end - t->begin)
        return ferr(c, TL_EFORMAT, offs->offset,
                    "tensor '%.200s': data_offsets [%llu, %llu] hold %llu bytes, but %s of %zu elements needs %zu",
                    t->name, (unsigned long long)t->begin, (unsigned long long)t->end,
                    (unsigned long long)(t->end - t->begin), t->dtype, count, bytes);
    return TL_OK;
}

static tl_status read_metadata(const ctx *c, const tli_json *j, const tli_json_node *m)
{
    if (m->type != TLI_JSON_OBJECT)
        return ferr(c, TL_EFORMAT, m->offset, "__metadata__ is a JSON %s, not an object", tli_json_type_str(m->type));
    uint32_t k = m->child;
    for (uint32_t i = 0; i < m->count; i++, k = j->nodes[k].next)
        if (j->nodes[k].type != TLI_JSON_STRING)
            return ferr(c, TL_EFORMAT, j->nodes[k].offset, "__metadata__ '%.200s' is a %s; values must be strings",
                        j->nodes[k].key, tli_json_type_str(j->nodes[k].type));
    return TL_OK;
}

static int by_begin(const void *a, const void *b)
{
    const tli_st_tensor *x = *(const tli_st_tensor *const *)a, *y = *(const tli_st_tensor *const *)b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    return (x->end > y->end) - (x->end < y->end);
}

/* The tensors must tile [0, data_len): sorted by offset, each begins where
 * the previous ended. */
static tl_status check_coverage(const ctx *c, tli_st_file *f)
{
    if (f->count == 0) {
        if (f->data_len != 0)
            return ferr(c, TL_EFORMAT, (size_t)f->data_start, "%llu bytes of data but no tensor",
                        (unsigned long long)f->data_len);
        return TL_OK;
    }
    const tli_st_tensor **order = tli_malloc(f->count * sizeof *order);
    if (order == NULL)
        return tli_error(TL_ENOMEM, "%s: %s: out of memory for %zu tensors", c->fn, c->path, f->count);
    for (size_t i = 0; i < f->count; i++)
        order[i] = &f->tensors[i];
    qsort(order, f->count, sizeof *order, by_begin);
    tl_status st = TL_OK;
    uint64_t at = 0;
    const tli_st_tensor *prev = NULL;
    for (size_t i = 0; i < f->count && st == TL_OK; i++) {
        const tli_st_tensor *t = order[i];
        if (t->begin > at)
            st = ferr(c, TL_EFORMAT, t->offset, "a hole: no tensor covers data bytes [%llu, %llu) before tensor '%.200s'",
                      (unsigned long long)at, (unsigned long long)t->begin, t->name);
        else if (t->begin < at)
            st = ferr(c, TL_EFORMAT, t->offset, "tensor '%.200s' (data [%llu, %llu)) overlaps tensor '%.200s'", t->name,
                      (unsigned long long)t->begin, (unsigned long long)t->end, prev ? prev->name : "?");
        at = t->end;
        prev = t;
    }
    if (st == TL_OK && at > f->data_len)
        st = ferr(c, TL_ETRUNCATED, (size_t)f->data_start,
                  "the file is cut: its tensors need %llu bytes of data after the header, it has %llu",
                  (unsigned long long)at, (unsigned long long)f->data_len);
    if (st == TL_OK && at < f->data_len)
        st = ferr(c, TL_EFORMAT, (size_t)(f->data_start + at), "%llu bytes after the last tensor's data",
                  (unsigned long long)(f->data_len - at));
    tli_free(order);
    return st;
}

static tl_status parse_header(const ctx *c, tli_st_file *f, uint64_t n)
{
    if (n == 0 || f->header[0] != '{')
        return ferr(c, TL_EFORMAT, 8, "the header does not start with '{'");
    tli_json_limits lim = {TLI_ST_MAX_DEPTH, TLI_ST_MAX_STRING, (size_t)n / 2 + 1};
    tl_status st = tli_json_parse(&f->json, f->header, (size_t)n, &lim, 8);
    if (st) {
        tli_error_prefix("%s: %s", c->fn, c->path);
        return st;
    }
    const tli_json *j = &f->json;
    const tli_json_node *root = &j->nodes[0];
    if (root->type != TLI_JSON_OBJECT)
        return ferr(c, TL_EFORMAT, 8, "the header is a JSON %s, not an object", tli_json_type_str(root->type));
    f->tensors = tli_calloc(root->count ? root->count : 1, sizeof *f->tensors);
    if (f->tensors == NULL)
        return tli_error(TL_ENOMEM, "%s: %s: out of memory for %u tensors", c->fn, c->path, root->count);
    uint32_t k = root->child;
    for (uint32_t i = 0; i < root->count; i++, k = j->nodes[k].next) {
        const tli_json_node *e = &j->nodes[k];
        if (strcmp(e->key, "__metadata__") == 0)
            st = read_metadata(c, j, e);
        else
            st = read_entry(c, j, e, &f->tensors[f->count++]);
        if (st)
            return st;
    }
    return check_coverage(c, f);
}

tl_status tli_st_open(tli_st_file *f, const char *path, const char *fn)
{
    memset(f, 0, sizeof *f);
    ctx c = {fn, path};
    tl_status st = tli_rfile_open(&f->file, path, fn);
    if (st)
        return st;
    uint8_t len8[8];
    uint64_t n = 0;
    if (f->file.size < 8)
        st = ferr(&c, TL_ETRUNCATED, (size_t)f->file.size, "the file ends inside the 8-byte header length (it has %llu bytes)",
                  (unsigned long long)f->file.size);
    if (st == TL_OK && (st = tli_rfile_read(&f->file, len8, 8, 0)) == TL_OK) {
        n = tli_le64(len8);
        if (n > TLI_ST_MAX_HEADER)
            st = ferr(&c, TL_ETOOBIG, 0, "a header of %llu bytes exceeds the limit of %u", (unsigned long long)n,
                      TLI_ST_MAX_HEADER);
        else if (n > f->file.size - 8)
            st = ferr(&c, TL_ETRUNCATED, (size_t)f->file.size,
                      "the file is cut: it announces a %llu-byte header, %llu bytes follow", (unsigned long long)n,
                      (unsigned long long)(f->file.size - 8));
    }
    if (st == TL_OK) {
        f->header = tli_malloc((size_t)n + 1);
        if (f->header == NULL)
            st = tli_error(TL_ENOMEM, "%s: %s: out of memory for a %llu-byte header", fn, path, (unsigned long long)n);
    }
    if (st == TL_OK && (st = tli_rfile_read(&f->file, f->header, (size_t)n, 8)) == TL_OK) {
        f->data_start = 8 + n;
        f->data_len = f->file.size - f->data_start;
        st = parse_header(&c, f, n);
    }
    if (st)
        tli_st_close(f);
    return st;
}

void tli_st_close(tli_st_file *f)
{
    tli_rfile_close(&f->file);
    tli_json_free(&f->json);
    tli_free(f->header);
    tli_free(f->tensors);
    f->header = NULL;
    f->tensors = NULL;
    f->count = 0;
}
