/*
 * onnx_read.c - an ONNX file (a protobuf ModelProto) into tli_onnx_model:
 * only the messages and fields a CNN needs, each field's wire type and
 * value checked, counts limited before arrays are allocated (each repeated
 * field is counted in a first pass over its message), every other field
 * skipped. The file is read whole (at most 2 GiB, protobuf's own limit);
 * strings and arrays live in an arena freed at once.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bytes.h"
#include "file.h"
#include "onnx_model.h"

/* ---- arena ------------------------------------------------------------------ */

struct tli_onnx_arena {
    struct tli_onnx_arena *next;
    size_t used, cap;
    max_align_t data[];
};

static void *arena_alloc(tli_onnx_model *m, size_t bytes)
{
    bytes = (bytes + 15) & ~(size_t)15;
    tli_onnx_arena *a = m->arena;
    if (a == NULL || a->cap - a->used < bytes) {
        size_t cap = bytes > 65536 ? bytes : 65536;
        a = tli_malloc(sizeof *a + cap);
        if (a == NULL)
            return NULL;
        a->used = 0;
        a->cap = cap;
        a->next = m->arena;
        m->arena = a;
    }
    void *p = (uint8_t *)a->data + a->used;
    a->used += bytes;
    return p;
}

/* n elements of `size` bytes, zeroed; NULL when it does not fit or fails. */
static void *arena_array(tli_onnx_model *m, size_t n, size_t size)
{
    size_t bytes;
    if (!tli_mul_ok(n, size, &bytes))
        return NULL;
    void *p = arena_alloc(m, bytes ? bytes : 1);
    if (p)
        memset(p, 0, bytes);
    return p;
}

static tl_status nomem(const tli_onnx_model *m, const char *what)
{
    return tli_error(TL_ENOMEM, "%s: %s: out of memory for %s", m->src.fn, m->src.path, what);
}

/* ---- fields ------------------------------------------------------------------- */

static tl_status get_string(tli_onnx_model *m, const tli_pb *r, const tli_pb_field *f, const char **out,
                            const char *what)
{
    tl_status st = tli_pb_want(r, f, TLI_PB_LEN, what);
    if (st)
        return st;
    if (f->n > TLI_ONNX_MAX_STRING)
        return tli_pb_err(r, TL_ETOOBIG, f->off, "%s is %zu bytes, more than libtl's limit of %u", what, f->n,
                          TLI_ONNX_MAX_STRING);
    if (memchr(f->bytes, 0, f->n))
        return tli_pb_err(r, TL_EFORMAT, f->off, "%s contains a NUL byte", what);
    char *s = arena_alloc(m, f->n + 1);
    if (s == NULL)
        return nomem(m, what);
    memcpy(s, f->bytes, f->n);
    s[f->n] = '\0';
    *out = s;
    return TL_OK;
}

/* Count the values of a repeated scalar field over a whole message (they
 * may come packed, unpacked or both, in several runs). */
typedef enum { REP_INT64, REP_FLOAT } rep_kind;

static tl_status count_repeated(const tli_pb *msg, uint32_t num, rep_kind kind, size_t *total, const char *what)
{
    tli_pb r = *msg;
    r.pos = 0;
    tli_pb_field f;
    bool more;
    size_t n = 0;
    tl_status st;
    while (!(st = tli_pb_next(&r, &f, &more)) && more) {
        if (f.num != num)
            continue;
        size_t k;
        st = kind == REP_INT64 ? tli_pb_count_int64s(&r, &f, &k, what) : tli_pb_count_floats(&r, &f, &k, what);
        if (st)
            return st;
        n += k; /* k <= the message's bytes: no overflow */
    }
    *total = n;
    return st;
}

static tl_status read_repeated(tli_onnx_model *m, const tli_pb *msg, uint32_t num, rep_kind kind, void **out,
                               size_t *count, size_t max, const char *what)
{
    size_t n;
    tl_status st = count_repeated(msg, num, kind, &n, what);
    if (st)
        return st;
    if (n > max)
        return tli_pb_err(msg, TL_ETOOBIG, msg->base, "%s has %zu values, more than libtl's limit of %zu", what, n,
                          max);
    void *arr = arena_array(m, n, kind == REP_INT64 ? sizeof(int64_t) : sizeof(float));
    if (arr == NULL)
        return nomem(m, what);
    tli_pb r = *msg;
    r.pos = 0;
    tli_pb_field f;
    bool more;
    size_t at = 0;
    while (!(st = tli_pb_next(&r, &f, &more)) && more) {
        if (f.num != num)
            continue;
        size_t k;
        if (kind == REP_INT64) {
            tli_pb_count_int64s(&r, &f, &k, what);
            tli_pb_get_int64s(&f, (int64_t *)arr + at);
        } else {
            tli_pb_count_floats(&r, &f, &k, what);
            tli_pb_get_floats(&f, (float *)arr + at);
        }
        at += k;
    }
    *out = arr;
    *count = n;
    return st;
}

/* ---- TensorProto ------------------------------------------------------------ */

static tl_status read_entry(tli_onnx_model *m, const tli_pb *r, const tli_pb_field *f, tli_onnx_tensor *t)
{
    tli_pb e;
    tl_status st = tli_pb_enter(&e, r, f, "an external_data entry");
    if (st)
        return st;
    const char *key = NULL, *value = NULL;
    tli_pb_field g;
    bool more;
    while (!(st = tli_pb_next(&e, &g, &more)) && more) {
        if (g.num == 1)
            st = get_string(m, &e, &g, &key, "an external_data key");
        else if (g.num == 2)
            st = get_string(m, &e, &g, &value, "an external_data value");
        if (st)
            return st;
    }
    if (st)
        return st;
    if (key == NULL || value == NULL)
        return tli_pb_err(r, TL_EFORMAT, f->off, "tensor '%.200s': an external_data entry without a %s",
                          t->name, key ? "value" : "key");
    if (strcmp(key, "location") == 0) {
        t->location = value;
        return TL_OK;
    }
    if (strcmp(key, "offset") == 0 || strcmp(key, "length") == 0) {
        char *end;
        if (value[0] < '0' || value[0] > '9')
            return tli_pb_err(r, TL_EFORMAT, f->off, "tensor '%.200s': external_data %s '%.40s' is not a number",
                              t->name, key, value);
        unsigned long long v = strtoull(value, &end, 10);
        if (*end != '\0' || v == ULLONG_MAX)
            return tli_pb_err(r, TL_EFORMAT, f->off, "tensor '%.200s': external_data %s '%.40s' is not a number",
                              t->name, key, value);
        if (key[0] == 'o') {
            t->ext_offset = v;
        } else {
            t->ext_length = v;
            t->has_length = true;
        }
    }
    return TL_OK; /* "checksum" and others: not needed */
}

static tl_status read_tensor(tli_onnx_model *m, const tli_pb *r, const tli_pb_field *f, tli_onnx_tensor *t)
{
    tli_pb msg;
    tl_status st = tli_pb_enter(&msg, r, f, "a tensor");
    if (st)
        return st;
    memset(t, 0, sizeof *t);
    t->name = "";
    t->off = f->off;
    tli_pb_field g;
    bool more;
    int64_t v;
    int32_t v32;
    /* First the name, so that later messages can use it. */
    while (!(st = tli_pb_next(&msg, &g, &more)) && more)
        if (g.num == 8 && (st = get_string(m, &msg, &g, &t->name, "a tensor's name")))
            return st;
    if (st)
        return st;
    msg.pos = 0;
    while (!(st = tli_pb_next(&msg, &g, &more)) && more) {
        switch (g.num) {
        case 1: { /* dims: repeated int64, packed or not */
            size_t k;
            if ((st = tli_pb_count_int64s(&msg, &g, &k, "a tensor's dims")))
                return st;
            if (k > TLI_ONNX_MAX_RANK - t->rank)
                return tli_pb_err(&msg, TL_ETOOBIG, g.off, "tensor '%.200s' has more than %u dimensions", t->name,
                                  TLI_ONNX_MAX_RANK);
            tli_pb_get_int64s(&g, t->dims + t->rank);
            t->rank += (uint32_t)k;
            break;
        }
        case 2:
            if ((st = tli_pb_int32(&msg, &g, &v32, "a tensor's data_type")))
                return st;
            t->dtype = v32;
            break;
        case 9:
            if ((st = tli_pb_want(&msg, &g, TLI_PB_LEN, "a tensor's raw_data")))
                return st;
            t->raw = g.bytes;
            t->raw_len = g.n;
            t->has_raw = true;
            break;
        case 13:
            if ((st = read_entry(m, &msg, &g, t)))
                return st;
            break;
        case 14:
            if ((st = tli_pb_int64(&msg, &g, &v, "a tensor's data_location")))
                return st;
            if (v != 0 && v != 1)
                return tli_pb_err(&msg, TL_EFORMAT, g.off, "tensor '%.200s': data_location %lld is neither DEFAULT (0) "
                                  "nor EXTERNAL (1)", t->name, (long long)v);
            t->external = v == 1;
            break;
        case 3:
            return tli_pb_err(&msg, TL_EUNSUPPORTED, g.off, "tensor '%.200s' is split into segments, which libtl does "
                              "not read", t->name);
        default: break;
        }
    }
    if (st)
        return st;
    void *arr;
    if ((st = read_repeated(m, &msg, 4, REP_FLOAT, &arr, &t->nfloats, SIZE_MAX, "a tensor's float_data")))
        return st;
    t->floats = arr;
    if ((st = read_repeated(m, &msg, 7, REP_INT64, &arr, &t->ni64, SIZE_MAX, "a tensor's int64_data")))
        return st;
    t->i64 = arr;
    if ((st = read_repeated(m, &msg, 5, REP_INT64, &arr, &t->ni32, SIZE_MAX, "a tensor's int32_data")))
        return st;
    t->i32 = arr;
    uint64_t count = 1;
    for (uint32_t d = 0; d < t->rank; d++) {
        if (t->dims[d] < 0)
            return tli_pb_err(&msg, TL_EFORMAT, t->off, "tensor '%.200s': dimension %u is %lld", t->name, d,
                              (long long)t->dims[d]);
        count = tli_mul_sat(count, (uint64_t)t->dims[d]);
    }
    if (count > TLI_ONNX_MAX_ELEMS)
        return tli_pb_err(&msg, TL_ETOOBIG, t->off, "tensor '%.200s' has more than 2^31 values", t->name);
    t->count = count;
    if (t->external && t->location == NULL)
        return tli_pb_err(&msg, TL_EFORMAT, t->off, "tensor '%.200s' has external data without a location", t->name);
    return TL_OK;
}

/* ---- AttributeProto, NodeProto --------------------------------------------- */

static tl_status read_attr(tli_onnx_model *m, const tli_pb *r, const tli_pb_field *f, tli_onnx_attr *a)
{
    tli_pb msg;
    tl_status st = tli_pb_enter(&msg, r, f, "an attribute");
    if (st)
        return st;
    memset(a, 0, sizeof *a);
    a->name = "";
    a->s = "";
    a->off = f->off;
    tli_pb_field g;
    bool more;
    while (!(st = tli_pb_next(&msg, &g, &more)) && more) {
        switch (g.num) {
        case 1: st = get_string(m, &msg, &g, &a->name, "an attribute's name"); break;
        case 20: st = tli_pb_int32(&msg, &g, &a->type, "an attribute's type"); break;
        case 2: st = tli_pb_float(&msg, &g, &a->f, "an attribute's float"); break;
        case 3: st = tli_pb_int64(&msg, &g, &a->i, "an attribute's int"); break;
        case 4: st = get_string(m, &msg, &g, &a->s, "an attribute's string"); break;
        case 5:
            if ((a->t = arena_array(m, 1, sizeof *a->t)) == NULL)
                return nomem(m, "an attribute's tensor");
            st = read_tensor(m, &msg, &g, a->t);
            break;
        default: break; /* subgraphs and the rest: the node is refused later */
        }
        if (st)
            return st;
    }
    if (st)
        return st;
    void *arr;
    if ((st = read_repeated(m, &msg, 8, REP_INT64, &arr, &a->nints, TLI_ONNX_MAX_INTS, "an attribute's ints")))
        return st;
    a->ints = arr;
    if ((st = read_repeated(m, &msg, 7, REP_FLOAT, &arr, &a->nfloats, TLI_ONNX_MAX_INTS, "an attribute's floats")))
        return st;
    a->floats = arr;
    return TL_OK;
}

static tl_status read_node(tli_onnx_model *m, const tli_pb *r, const tli_pb_field *f, tli_onnx_node *n)
{
    tli_pb msg;
    tl_status st = tli_pb_enter(&msg, r, f, "a node");
    if (st)
        return st;
    memset(n, 0, sizeof *n);
    n->name = n->op_type = n->domain = "";
    n->off = f->off;
    tli_pb_field g;
    bool more;
    size_t cnt[3] = {0, 0, 0}; /* inputs, outputs, attributes */
    while (!(st = tli_pb_next(&msg, &g, &more)) && more) {
        int k = g.num == 1 ? 0 : g.num == 2 ? 1 : g.num == 5 ? 2 : -1;
        if (k >= 0 && ++cnt[k] > (k == 2 ? TLI_ONNX_MAX_ATTRS : TLI_ONNX_MAX_IO))
            return tli_pb_err(&msg, TL_ETOOBIG, g.off, "a node has more than %u %s", k == 2 ? TLI_ONNX_MAX_ATTRS :
                              TLI_ONNX_MAX_IO, k == 0 ? "inputs" : k == 1 ? "outputs" : "attributes");
    }
    if (st)
        return st;
    n->inputs = arena_array(m, cnt[0], sizeof *n->inputs);
    n->outputs = arena_array(m, cnt[1], sizeof *n->outputs);
    n->attrs = arena_array(m, cnt[2], sizeof *n->attrs);
    if (n->inputs == NULL || n->outputs == NULL || n->attrs == NULL)
        return nomem(m, "a node");
    msg.pos = 0;
    while (!(st = tli_pb_next(&msg, &g, &more)) && more) {
        switch (g.num) {
        case 1: st = get_string(m, &msg, &g, &n->inputs[n->ninputs++], "a node's input"); break;
        case 2: st = get_string(m, &msg, &g, &n->outputs[n->noutputs++], "a node's output"); break;
        case 3: st = get_string(m, &msg, &g, &n->name, "a node's name"); break;
        case 4: st = get_string(m, &msg, &g, &n->op_type, "a node's op_type"); break;
        case 7: st = get_string(m, &msg, &g, &n->domain, "a node's domain"); break;
        case 5: st = read_attr(m, &msg, &g, &n->attrs[n->nattrs++]); break;
        default: break;
        }
        if (st)
            return st;
    }
    return st;
}

/* ---- ValueInfoProto (TypeProto.Tensor with its TensorShapeProto) ---------- */

static tl_status read_dim(const tli_pb *r, const tli_pb_field *f, tli_onnx_value *v)
{
    tli_pb msg;
    tl_status st = tli_pb_enter(&msg, r, f, "a dimension");
    if (st)
        return st;
    if (v->rank >= TLI_ONNX_MAX_RANK)
        return tli_pb_err(r, TL_ETOOBIG, f->off, "value '%.200s' has more than %u dimensions", v->name,
                          TLI_ONNX_MAX_RANK);
    int64_t d = -1;
    tli_pb_field g;
    bool more;
    while (!(st = tli_pb_next(&msg, &g, &more)) && more)
        if (g.num == 1 && (st = tli_pb_int64(&msg, &g, &d, "a dim_value")))
            return st;
    if (st)
        return st;
    v->dims[v->rank++] = d < 0 ? -1 : d; /* dim_param or nothing: symbolic */
    return TL_OK;
}

static tl_status read_value(tli_onnx_model *m, const tli_pb *r, const tli_pb_field *f, tli_onnx_value *v)
{
    tli_pb msg, type, tensor, shape;
    tl_status st = tli_pb_enter(&msg, r, f, "a graph input or output");
    if (st)
        return st;
    memset(v, 0, sizeof *v);
    v->name = "";
    v->off = f->off;
    tli_pb_field g, h, k, d;
    bool more, more2, more3, more4;
    while (!(st = tli_pb_next(&msg, &g, &more)) && more) {
        if (g.num == 1 && (st = get_string(m, &msg, &g, &v->name, "a value's name")))
            return st;
        if (g.num != 2)
            continue;
        if ((st = tli_pb_enter(&type, &msg, &g, "a value's type")))
            return st;
        while (!(st = tli_pb_next(&type, &h, &more2)) && more2) {
            if (h.num != 1)
                continue; /* sequences, maps: not a tensor; refused where used */
            if ((st = tli_pb_enter(&tensor, &type, &h, "a tensor type")))
                return st;
            while (!(st = tli_pb_next(&tensor, &k, &more3)) && more3) {
                if (k.num == 1 && (st = tli_pb_int32(&tensor, &k, &v->elem_type, "an elem_type")))
                    return st;
                if (k.num != 2)
                    continue;
                if ((st = tli_pb_enter(&shape, &tensor, &k, "a tensor shape")))
                    return st;
                v->has_shape = true;
                v->rank = 0;
                while (!(st = tli_pb_next(&shape, &d, &more4)) && more4)
                    if (d.num == 1 && (st = read_dim(&shape, &d, v)))
                        return st;
                if (st)
                    return st;
            }
            if (st)
                return st;
        }
        if (st)
            return st;
    }
    return st;
}

/* ---- GraphProto, ModelProto ----------------------------------------------- */

static tl_status read_graph(tli_onnx_model *m, const tli_pb *r, const tli_pb_field *f)
{
    tli_pb msg;
    tl_status st = tli_pb_enter(&msg, r, f, "the graph");
    if (st)
        return st;
    /* Count first: nodes (1), initializers (5), inputs (11), outputs (12). */
    size_t nn = 0, ni = 0, nin = 0, nout = 0;
    tli_pb_field g;
    bool more;
    while (!(st = tli_pb_next(&msg, &g, &more)) && more) {
        size_t *c = g.num == 1 ? &nn : g.num == 5 ? &ni : g.num == 11 ? &nin : g.num == 12 ? &nout : NULL;
        if (c == NULL)
            continue;
        size_t lim = g.num == 1 ? TLI_ONNX_MAX_NODES : TLI_ONNX_MAX_TENSORS;
        if (++*c > lim)
            return tli_pb_err(&msg, TL_ETOOBIG, g.off, "the graph has more than %zu %s", lim,
                              g.num == 1 ? "nodes" : g.num == 5 ? "initializers" : g.num == 11 ? "inputs" : "outputs");
    }
    if (st)
        return st;
    m->nodes = arena_array(m, nn, sizeof *m->nodes);
    m->inits = arena_array(m, ni, sizeof *m->inits);
    m->inputs = arena_array(m, nin, sizeof *m->inputs);
    m->outputs = arena_array(m, nout, sizeof *m->outputs);
    if (!m->nodes || !m->inits || !m->inputs || !m->outputs)
        return nomem(m, "the graph");
    m->nnodes = m->ninits = m->ninputs = m->noutputs = 0;
    msg.pos = 0;
    while (!(st = tli_pb_next(&msg, &g, &more)) && more) {
        switch (g.num) {
        case 1: st = read_node(m, &msg, &g, &m->nodes[m->nnodes++]); break;
        case 5: st = read_tensor(m, &msg, &g, &m->inits[m->ninits++]); break;
        case 11: st = read_value(m, &msg, &g, &m->inputs[m->ninputs++]); break;
        case 12: st = read_value(m, &msg, &g, &m->outputs[m->noutputs++]); break;
        case 15:
            return tli_pb_err(&msg, TL_EUNSUPPORTED, g.off, "the graph has sparse initializers, which libtl does "
                              "not read");
        default: break;
        }
        if (st)
            return st;
    }
    m->has_graph = true;
    return st;
}

static tl_status read_opset(tli_onnx_model *m, const tli_pb *r, const tli_pb_field *f)
{
    tli_pb msg;
    tl_status st = tli_pb_enter(&msg, r, f, "an opset_import");
    if (st)
        return st;
    const char *domain = "";
    int64_t version = 0;
    tli_pb_field g;
    bool more;
    while (!(st = tli_pb_next(&msg, &g, &more)) && more) {
        if (g.num == 1)
            st = get_string(m, &msg, &g, &domain, "an opset's domain");
        else if (g.num == 2)
            st = tli_pb_int64(&msg, &g, &version, "an opset's version");
        if (st)
            return st;
    }
    if (st)
        return st;
    if (domain[0] == '\0' || strcmp(domain, "ai.onnx") == 0) {
        m->opset = version;
        m->opset_off = f->off;
    }
    return TL_OK;
}

static tl_status read_model(tli_onnx_model *m)
{
    tli_pb r;
    tli_pb_init(&r, m->bytes, m->len, &m->src);
    tli_pb_field f;
    bool more;
    tl_status st;
    size_t nopsets = 0;
    while (!(st = tli_pb_next(&r, &f, &more)) && more) {
        switch (f.num) {
        case 1: st = tli_pb_int64(&r, &f, &m->ir_version, "ir_version"); break;
        case 8:
            if (++nopsets > TLI_ONNX_MAX_OPSETS)
                return tli_pb_err(&r, TL_ETOOBIG, f.off, "more than %u opset_import entries", TLI_ONNX_MAX_OPSETS);
            st = read_opset(m, &r, &f);
            break;
        case 7:
            if (m->has_graph)
                return tli_pb_err(&r, TL_EFORMAT, f.off, "a second graph");
            st = read_graph(m, &r, &f);
            break;
        default: break;
        }
        if (st)
            return st;
    }
    if (st)
        return st;
    if (!m->has_graph)
        return tli_error(TL_EFORMAT, "%s: %s: byte 0: not an ONNX model (no graph; %s)", m->src.fn, m->src.path,
                         m->len ? "the file is not a ModelProto" : "the file is empty");
    return TL_OK;
}

void tli_onnx_free(tli_onnx_model *m)
{
    while (m->arena) {
        tli_onnx_arena *next = m->arena->next;
        tli_free(m->arena);
        m->arena = next;
    }
    tli_free(m->bytes);
    tli_free(m->dir);
    memset(m, 0, sizeof *m);
}

tl_status tli_onnx_read(tli_onnx_model *m, const char *path, const char *fn)
{
    memset(m, 0, sizeof *m);
    m->src.fn = fn;
    m->src.path = path;
    tli_rfile file;
    tl_status st = tli_rfile_open(&file, path, fn);
    if (st)
        return st;
    if (file.size > TLI_ONNX_MAX_FILE) {
        tli_rfile_close(&file);
        return tli_error(TL_ETOOBIG, "%s: %s: byte 0: %llu bytes, more than protobuf's limit of 2 GiB", fn, path,
                         (unsigned long long)file.size);
    }
    m->len = (size_t)file.size;
    m->bytes = tli_malloc(m->len ? m->len : 1);
    const char *slash = strrchr(path, '/');
    m->dir = slash ? tli_malloc((size_t)(slash - path) + 2) : tli_strdup(".");
    if (m->bytes == NULL || m->dir == NULL) {
        tli_rfile_close(&file);
        tli_onnx_free(m);
        return tli_error(TL_ENOMEM, "%s: %s: out of memory for the file's %zu bytes", fn, path, (size_t)file.size);
    }
    if (slash) {
        size_t n = (size_t)(slash - path);
        memcpy(m->dir, path, n ? n : 1); /* "/model.onnx": the root, "/" */
        m->dir[n ? n : 1] = '\0';
    }
    st = m->len ? tli_rfile_read(&file, m->bytes, m->len, 0) : TL_OK;
    tli_rfile_close(&file);
    m->src.fn = fn;
    m->src.path = path;
    if (st == TL_OK)
        st = read_model(m);
    if (st) {
        tli_onnx_free(m);
        return st;
    }
    return TL_OK;
}
