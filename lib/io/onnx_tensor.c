/*
 * onnx_tensor.c - an ONNX TensorProto's values: from raw_data, the typed
 * repeated fields or an external file beside the model, their size checked
 * against the shape, converted to float (FLOAT16 and BFLOAT16 exactly, by
 * half.c; DOUBLE rounded) or to int64 (shapes, pads, axes).
 *
 * External data: "location" is a path relative to the model's folder; an
 * absolute path, a ".." component, or a path that resolves (through
 * symbolic links) outside the folder is refused, so a model file cannot
 * make libtl read other files.
 */
#define _XOPEN_SOURCE 700 /* realpath */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bytes.h"
#include "file.h"
#include "onnx_model.h"
#include "safetensors.h"

static tl_status terr(const tli_onnx_model *m, const tli_onnx_tensor *t, tl_status st, const char *fmt,
                      const char *a, unsigned long long x, unsigned long long y)
{
    char text[512];
    snprintf(text, sizeof text, fmt, a, x, y);
    return tli_error(st, "%s: %s: byte %llu: tensor '%.200s': %s", m->src.fn, m->src.path,
                     (unsigned long long)t->off, t->name, text);
}

static size_t elem_size(int32_t dtype)
{
    switch (dtype) {
    case TLI_ONNX_FLOAT: case TLI_ONNX_INT32: return 4;
    case TLI_ONNX_INT64: case TLI_ONNX_DOUBLE: return 8;
    case TLI_ONNX_FLOAT16: case TLI_ONNX_BFLOAT16: return 2;
    default: return 0;
    }
}

/* The location's checks; then the file is opened relative to the folder. */
static tl_status external_path(char **out, const tli_onnx_model *m, const tli_onnx_tensor *t)
{
    const char *loc = t->location;
    if (loc[0] == '\0' || loc[0] == '/')
        return terr(m, t, TL_EFORMAT, "external data location '%.200s' is absolute or empty; it must be a path "
                    "relative to the model's folder", loc, 0, 0);
    for (const char *p = loc; *p;) {
        const char *e = strchr(p, '/');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n == 2 && p[0] == '.' && p[1] == '.')
            return terr(m, t, TL_EFORMAT, "external data location '%.200s' has a '..' component: it must stay in "
                        "the model's folder", loc, 0, 0);
        if (memchr(p, '\\', n))
            return terr(m, t, TL_EFORMAT, "external data location '%.200s' has a backslash", loc, 0, 0);
        p += n + (e != NULL);
    }
    size_t dl = strlen(m->dir), ll = strlen(loc);
    char *path = tli_malloc(dl + ll + 2);
    if (path == NULL)
        return tli_error(TL_ENOMEM, "%s: %s: out of memory", m->src.fn, m->src.path);
    snprintf(path, dl + ll + 2, "%s/%s", m->dir, loc);
    /* A symbolic link inside the folder may still point out of it. */
    char *rdir = realpath(m->dir, NULL), *rfile = realpath(path, NULL);
    bool inside = rdir && rfile && strncmp(rfile, rdir, strlen(rdir)) == 0 &&
                  (rfile[strlen(rdir)] == '/' || strcmp(rdir, "/") == 0);
    bool missing = rfile == NULL;
    free(rdir);
    free(rfile);
    if (!inside && !missing) {
        tli_free(path);
        return terr(m, t, TL_EFORMAT, "external data location '%.200s' resolves to a file outside the model's "
                    "folder", loc, 0, 0);
    }
    *out = path;
    return TL_OK;
}

/* The tensor's bytes (count * size): a view of raw_data, or `buf` filled
 * from the external file. *data NULL: the values are in a typed field. */
static tl_status tensor_bytes(const uint8_t **data, uint8_t **buf, const tli_onnx_model *m, const tli_onnx_tensor *t,
                              size_t size, bool read)
{
    *data = NULL;
    *buf = NULL;
    const uint64_t want = t->count * size; /* count <= 2^31, size <= 8 */
    if (t->external) {
        if (t->has_length && t->ext_length != want)
            return terr(m, t, TL_EFORMAT, "%sexternal data length %llu does not match its shape's %llu bytes", "",
                        t->ext_length, want);
        char *path = NULL;
        tl_status st = external_path(&path, m, t);
        if (st)
            return st;
        tli_rfile f;
        if ((st = tli_rfile_open(&f, path, m->src.fn))) {
            /* "fn: <data file>: cannot open: why", after the model and the tensor. */
            char why[600];
            snprintf(why, sizeof why, "%s", tl_last_error());
            const size_t skip = strlen(m->src.fn) + 2;
            tli_error(st, "%s: %s: byte %llu: tensor '%.200s': external data: %s", m->src.fn, m->src.path,
                      (unsigned long long)t->off, t->name, strlen(why) > skip ? why + skip : why);
            tli_free(path);
            return st;
        }
        if (t->ext_offset > f.size || f.size - t->ext_offset < want) {
            tli_rfile_close(&f);
            st = tli_error(TL_ETRUNCATED, "%s: %s: byte %llu: tensor '%.200s': external file '%.200s' has %llu bytes, "
                           "too few for %llu bytes at offset %llu", m->src.fn, m->src.path,
                           (unsigned long long)t->off, t->name, t->location, (unsigned long long)f.size,
                           (unsigned long long)want, (unsigned long long)t->ext_offset);
            tli_free(path);
            return st;
        }
        if (!read) {
            tli_rfile_close(&f);
            tli_free(path);
            return TL_OK;
        }
        *buf = tli_malloc(want ? (size_t)want : 1);
        if (*buf == NULL) {
            tli_rfile_close(&f);
            tli_free(path);
            return tli_error(TL_ENOMEM, "%s: %s: out of memory for tensor '%.200s'", m->src.fn, m->src.path, t->name);
        }
        st = want ? tli_rfile_read(&f, *buf, (size_t)want, t->ext_offset) : TL_OK;
        tli_rfile_close(&f);
        tli_free(path);
        if (st) {
            tli_free(*buf);
            *buf = NULL;
            return st;
        }
        *data = *buf;
        return TL_OK;
    }
    if (t->has_raw) {
        if (t->nfloats || t->ni32 || t->ni64)
            return terr(m, t, TL_EFORMAT, "%shas both raw_data and typed values", "", 0, 0);
        if (t->raw_len != want)
            return terr(m, t, TL_EFORMAT, "%sraw_data has %llu bytes; its shape needs %llu", "", t->raw_len, want);
        *data = t->raw;
    }
    return TL_OK;
}

tl_status tli_onnx_tensor_floats(float *out, const tli_onnx_model *m, const tli_onnx_tensor *t)
{
    const size_t size = elem_size(t->dtype);
    if (size == 0 || t->dtype == TLI_ONNX_INT32 || t->dtype == TLI_ONNX_INT64)
        return terr(m, t, TL_EUNSUPPORTED, "%sdata type %llu is not FLOAT, FLOAT16, BFLOAT16 or DOUBLE", "",
                    (unsigned long long)t->dtype, 0);
    const uint8_t *data;
    uint8_t *buf;
    tl_status st = tensor_bytes(&data, &buf, m, t, size, true);
    if (st)
        return st;
    const size_t n = (size_t)t->count;
    if (data) {
        for (size_t i = 0; i < n; i++) {
            const uint8_t *p = data + i * size;
            switch (t->dtype) {
            case TLI_ONNX_FLOAT: out[i] = tli_bits_f32(tli_le32(p)); break;
            case TLI_ONNX_FLOAT16: out[i] = tli_f16_to_f32(tli_le16(p)); break;
            case TLI_ONNX_BFLOAT16: out[i] = tli_bf16_to_f32(tli_le16(p)); break;
            default: {
                double d;
                uint64_t u = tli_le64(p);
                memcpy(&d, &u, sizeof d);
                out[i] = (float)d;
            }
            }
        }
        tli_free(buf);
        return TL_OK;
    }
    if (t->dtype == TLI_ONNX_FLOAT) {
        if (t->nfloats != n || t->ni32 || t->ni64)
            return terr(m, t, TL_EFORMAT, "%sfloat_data has %llu values; its shape needs %llu", "", t->nfloats, n);
        memcpy(out, t->floats, n * sizeof *out);
        return TL_OK;
    }
    if (t->dtype == TLI_ONNX_FLOAT16 || t->dtype == TLI_ONNX_BFLOAT16) {
        /* Halves are stored one per int32_data value, in its low 16 bits. */
        if (t->ni32 != n || t->nfloats || t->ni64)
            return terr(m, t, TL_EFORMAT, "%sint32_data has %llu values; its shape needs %llu", "", t->ni32, n);
        for (size_t i = 0; i < n; i++) {
            if (t->i32[i] < 0 || t->i32[i] > 0xffff)
                return terr(m, t, TL_EFORMAT, "%sa 16-bit float in int32_data is %llu, beyond 16 bits", "",
                            (unsigned long long)t->i32[i], 0);
            uint16_t h = (uint16_t)t->i32[i];
            out[i] = t->dtype == TLI_ONNX_FLOAT16 ? tli_f16_to_f32(h) : tli_bf16_to_f32(h);
        }
        return TL_OK;
    }
    return terr(m, t, TL_EUNSUPPORTED, "%sa DOUBLE tensor without raw_data (double_data is not read)", "", 0, 0);
}

tl_status tli_onnx_tensor_ints(int64_t *out, size_t cap, size_t *count, const tli_onnx_model *m,
                               const tli_onnx_tensor *t)
{
    if (t->dtype != TLI_ONNX_INT64 && t->dtype != TLI_ONNX_INT32)
        return terr(m, t, TL_EFORMAT, "%sdata type %llu where INT64 or INT32 was expected", "",
                    (unsigned long long)t->dtype, 0);
    if (t->count > cap)
        return terr(m, t, TL_EUNSUPPORTED, "%s%llu values where at most %llu were expected", "", t->count, cap);
    const size_t size = elem_size(t->dtype), n = (size_t)t->count;
    const uint8_t *data;
    uint8_t *buf;
    tl_status st = tensor_bytes(&data, &buf, m, t, size, true);
    if (st)
        return st;
    if (data) {
        for (size_t i = 0; i < n; i++)
            out[i] = size == 8 ? (int64_t)tli_le64(data + 8 * i) : (int64_t)(int32_t)tli_le32(data + 4 * i);
        tli_free(buf);
    } else {
        const int64_t *src = t->dtype == TLI_ONNX_INT64 ? t->i64 : t->i32;
        size_t have = t->dtype == TLI_ONNX_INT64 ? t->ni64 : t->ni32;
        if (have != n)
            return terr(m, t, TL_EFORMAT, "%s%llu values; its shape needs %llu", "", have, n);
        memcpy(out, src, n * sizeof *out);
    }
    *count = n;
    return TL_OK;
}

tl_status tli_onnx_tensor_check(const tli_onnx_model *m, const tli_onnx_tensor *t)
{
    const size_t size = elem_size(t->dtype);
    if (size == 0)
        return terr(m, t, TL_EUNSUPPORTED, "%sdata type %llu is not FLOAT, FLOAT16, BFLOAT16, DOUBLE, INT32 or INT64",
                    "", (unsigned long long)t->dtype, 0);
    const uint8_t *data;
    uint8_t *buf;
    tl_status st = tensor_bytes(&data, &buf, m, t, size, false);
    if (st || t->external || t->has_raw)
        return st;
    size_t have;
    const char *field;
    switch (t->dtype) {
    case TLI_ONNX_FLOAT: have = t->nfloats, field = "float_data"; break;
    case TLI_ONNX_INT64: have = t->ni64, field = "int64_data"; break;
    case TLI_ONNX_DOUBLE:
        return terr(m, t, TL_EUNSUPPORTED, "%sa DOUBLE tensor without raw_data (double_data is not read)", "", 0, 0);
    default: have = t->ni32, field = "int32_data"; break;
    }
    if (have != t->count)
        return terr(m, t, TL_EFORMAT, "%s has %llu values; its shape needs %llu", field, have, t->count);
    return TL_OK;
}
