/*
 * onnx_graph.c - the graph builder the layer kinds export themselves into
 * (onnx_export.h): names, nodes, initializers, and the bookkeeping of
 * which tensor holds which layer's output. Nodes and initializers are
 * encoded as they come (pb_write.h); onnx_save.c puts them into the
 * GraphProto.
 */
#include <stdio.h>

#include "onnx_write.h"

tl_status tli_onnx_setup(tli_onnx *g, const tl_model *m, int64_t opset, bool fold, const char *fn,
                         const char *path)
{
    g->m = m;
    g->opset = opset;
    g->fold = fold;
    g->fn = fn;
    g->path = path;
    const size_t n = m->nlayers ? m->nlayers : 1;
    g->out = tli_calloc(n, sizeof *g->out);
    g->absorbed = tli_calloc(n, sizeof *g->absorbed);
    g->chw = tli_calloc(n, sizeof *g->chw);
    if (g->out == NULL || g->absorbed == NULL || g->chw == NULL)
        return g->st = tli_error(TL_ENOMEM, "%s: %s: out of memory", fn, path);
    return TL_OK;
}

static void free_strs(tli_onnx *g)
{
    for (size_t i = 0; i < g->nstrs; i++)
        tli_free(g->strs[i]);
    g->nstrs = 0;
}

void tli_onnx_second_pass(tli_onnx *g, tli_afile *file)
{
    const size_t n = g->m->nlayers;
    free_strs(g);
    g->ntensors = 0;
    memset(g->out, 0, n * sizeof *g->out);
    memset(g->absorbed, 0, n * sizeof *g->absorbed);
    memset(g->chw, 0, n * sizeof *g->chw);
    g->input = NULL;
    g->cur = NULL;
    g->in_node = false;
    g->nodes.buf.len = 0; /* keeps its memory: the same nodes come again */
    g->file = file;
}

void tli_onnx_release(tli_onnx *g)
{
    free_strs(g);
    tli_free(g->strs);
    tli_free(g->tensors);
    tli_free(g->out);
    tli_free(g->absorbed);
    tli_free(g->chw);
    tli_free(g->scratch);
    tli_pbw_free(&g->nodes);
}

void tli_onnx_fail(tli_onnx *g, tl_status st)
{
    if (g->st == TL_OK)
        g->st = st;
}

static void oom(tli_onnx *g)
{
    if (g->st == TL_OK)
        g->st = tli_error(TL_ENOMEM, "%s: %s: out of memory", g->fn, g->path);
}

/* A new capacity for an array of `cap` elements of `elem` bytes that is
 * full, and its bytes; false on overflow. */
static bool next_cap(size_t cap, size_t elem, size_t *out, size_t *bytes)
{
    *out = cap ? 2 * cap : 64;
    return *out > cap && tli_mul_ok(*out, elem, bytes);
}

const char *tli_onnx_str(tli_onnx *g, const char *a, const char *sep, const char *b)
{
    if (g->st || a == NULL)
        return NULL;
    size_t la = strlen(a), ls = b ? strlen(sep) : 0, lb = b ? strlen(b) : 0;
    char *s = tli_malloc(la + ls + lb + 1);
    size_t cap, bytes;
    if (s != NULL && g->nstrs == g->cap_strs) {
        char **p = next_cap(g->cap_strs, sizeof *p, &cap, &bytes) ? tli_realloc(g->strs, bytes) : NULL;
        if (p) {
            g->strs = p;
            g->cap_strs = cap;
        }
    }
    if (s == NULL || g->nstrs == g->cap_strs) {
        tli_free(s);
        oom(g);
        return NULL;
    }
    memcpy(s, a, la);
    if (b) {
        memcpy(s + la, sep, ls);
        memcpy(s + la + ls, b, lb);
    }
    s[la + ls + lb] = '\0';
    g->strs[g->nstrs++] = s;
    return s;
}

void tli_onnx_claim(tli_onnx *g, const char *name)
{
    if (g->st || name == NULL)
        return;
    for (size_t i = 0; i < g->ntensors; i++)
        if (strcmp(g->tensors[i], name) == 0) {
            if (g->cur)
                g->st = tli_error(TL_EINVAL, "%s: %s: two ONNX tensors would be called '%s' (the second from layer "
                                  "'%s'); rename a layer", g->fn, g->path, name, g->cur->name);
            else
                g->st = tli_error(TL_EINVAL, "%s: %s: two ONNX tensors would be called '%s'; rename a layer", g->fn,
                                  g->path, name);
            return;
        }
    if (g->ntensors == g->cap_tensors) {
        size_t cap, bytes;
        const char **p = next_cap(g->cap_tensors, sizeof *p, &cap, &bytes) ? tli_realloc(g->tensors, bytes) : NULL;
        if (p == NULL) {
            oom(g);
            return;
        }
        g->tensors = p;
        g->cap_tensors = cap;
    }
    g->tensors[g->ntensors++] = name;
}

int64_t tli_onnx_opset(const tli_onnx *g)
{
    return g->opset;
}

bool tli_onnx_folding(const tli_onnx *g)
{
    return g->fold;
}

const char *tli_onnx_in(const tli_onnx *g, const tl_layer *l, size_t k)
{
    if (g->st)
        return NULL;
    const uint32_t i = l->inputs[k];
    return i == TLI_INPUT_MODEL ? g->input : g->out[i];
}

const char *tli_onnx_out(tli_onnx *g, const tl_layer *l)
{
    if (g->out[l->index] == NULL)
        g->out[l->index] = tli_onnx_str(g, l->name, NULL, NULL);
    return g->out[l->index];
}

const char *tli_onnx_sub(tli_onnx *g, const tl_layer *l, const char *what)
{
    return tli_onnx_str(g, l->name, "/", what);
}

const char *tli_onnx_weight(tli_onnx *g, const tl_layer *l, const char *what)
{
    return tli_onnx_str(g, l->name, ".", what);
}

void tli_onnx_alias(tli_onnx *g, const tl_layer *l, const char *name)
{
    if (g->st || name == NULL)
        return;
    g->out[l->index] = name;
    if (l->ninputs == 1 && l->inputs[0] != TLI_INPUT_MODEL)
        g->chw[l->index] = g->chw[l->inputs[0]];
}

void tli_onnx_node(tli_onnx *g, const char *op, const char *name, const char *const *in, size_t nin,
                   const char *out)
{
    if (g->st)
        return;
    if (g->in_node) { /* a hook forgot tli_onnx_node_end: close it, and say it is a bug */
        g->st = tli_error(TL_EINVAL, "%s: %s: layer '%s' left an ONNX node open (a bug in libtl)", g->fn, g->path,
                          g->cur ? g->cur->name : "?");
        return;
    }
    tli_onnx_claim(g, out);
    if (g->st)
        return;
    tli_pbw *w = &g->nodes;
    tli_pbw_begin(w, ONNX_GRAPH_NODE);
    for (size_t k = 0; k < nin; k++)
        tli_pbw_string(w, ONNX_NODE_INPUT, in[k] ? in[k] : "");
    tli_pbw_string(w, ONNX_NODE_OUTPUT, out);
    tli_pbw_string(w, ONNX_NODE_NAME, name ? name : out);
    tli_pbw_string(w, ONNX_NODE_OP_TYPE, op);
    g->in_node = true;
}

void tli_onnx_attr_int(tli_onnx *g, const char *name, int64_t v)
{
    if (g->st || !g->in_node)
        return;
    tli_pbw *w = &g->nodes;
    tli_pbw_begin(w, ONNX_NODE_ATTRIBUTE);
    tli_pbw_string(w, ONNX_ATTR_NAME, name);
    tli_pbw_int(w, ONNX_ATTR_I, v);
    tli_pbw_uint(w, ONNX_ATTR_TYPE, ONNX_ATTR_TYPE_INT);
    tli_pbw_end(w);
}

void tli_onnx_attr_float(tli_onnx *g, const char *name, float v)
{
    if (g->st || !g->in_node)
        return;
    tli_pbw *w = &g->nodes;
    tli_pbw_begin(w, ONNX_NODE_ATTRIBUTE);
    tli_pbw_string(w, ONNX_ATTR_NAME, name);
    tli_pbw_float(w, ONNX_ATTR_F, v);
    tli_pbw_uint(w, ONNX_ATTR_TYPE, ONNX_ATTR_TYPE_FLOAT);
    tli_pbw_end(w);
}

void tli_onnx_attr_ints(tli_onnx *g, const char *name, const int64_t *v, size_t n)
{
    if (g->st || !g->in_node)
        return;
    tli_pbw *w = &g->nodes;
    tli_pbw_begin(w, ONNX_NODE_ATTRIBUTE);
    tli_pbw_string(w, ONNX_ATTR_NAME, name);
    tli_pbw_ints(w, ONNX_ATTR_INTS, v, n);
    tli_pbw_uint(w, ONNX_ATTR_TYPE, ONNX_ATTR_TYPE_INTS);
    tli_pbw_end(w);
}

void tli_onnx_node_end(tli_onnx *g)
{
    if (g->st || !g->in_node)
        return;
    tli_pbw_end(&g->nodes);
    g->in_node = false;
}

float *tli_onnx_init(tli_onnx *g, const char *name, size_t rank, const int64_t *dims)
{
    g->init_name = NULL;
    if (g->st || name == NULL)
        return NULL;
    if (rank > TLI_ONNX_MAX_RANK) {
        g->st = tli_error(TL_EINVAL, "%s: %s: initializer '%s' of rank %zu (a bug in libtl)", g->fn, g->path, name,
                          rank);
        return NULL;
    }
    size_t count = 1, bytes;
    for (size_t i = 0; i < rank; i++)
        if (dims[i] < 0 || !tli_mul_ok(count, (size_t)dims[i], &count)) {
            g->st = tli_error(TL_ETOOBIG, "%s: %s: initializer '%s' is too large", g->fn, g->path, name);
            return NULL;
        }
    if (!tli_mul_ok(count, sizeof(float), &bytes) || bytes > TLI_PB_MAX_LEN) {
        g->st = tli_error(TL_ETOOBIG, "%s: %s: initializer '%s' exceeds protobuf's 2 GiB", g->fn, g->path, name);
        return NULL;
    }
    tli_onnx_claim(g, name);
    if (g->st)
        return NULL;
    g->init_name = name;
    g->init_count = count;
    g->init_rank = rank;
    if (rank) /* dims may be NULL for a scalar */
        memcpy(g->init_dims, dims, rank * sizeof *dims);
    if (g->file == NULL) /* the first pass only counts */
        return NULL;
    if (count > g->scratch_cap) {
        float *s = tli_malloc(bytes ? bytes : sizeof(float));
        if (s == NULL) {
            g->init_name = NULL;
            oom(g);
            return NULL;
        }
        tli_free(g->scratch);
        g->scratch = s;
        g->scratch_cap = count;
    }
    memset(g->scratch, 0, (count ? count : 1) * sizeof(float));
    return g->scratch;
}

void tli_onnx_init_end(tli_onnx *g)
{
    if (g->st || g->init_name == NULL)
        return;
    const size_t bytes = g->init_count * sizeof(float);
    /* GraphProto.initializer's tag and length, then the TensorProto: its
     * small fields, raw_data's tag and length, and the floats. */
    tli_pbw t = {0}, h = {0};
    tli_pbw_ints(&t, ONNX_TENSOR_DIMS, g->init_dims, g->init_rank);
    tli_pbw_uint(&t, ONNX_TENSOR_DATA_TYPE, ONNX_TENSOR_FLOAT);
    tli_pbw_string(&t, ONNX_TENSOR_NAME, g->init_name);
    tli_pbw_head(&t, ONNX_TENSOR_RAW_DATA, bytes);
    tli_pbw_head(&h, ONNX_GRAPH_INITIALIZER, (uint64_t)t.buf.len + bytes);
    tl_status st = tli_pbw_status(&t, g->fn, g->path);
    if (st == TL_OK)
        st = tli_pbw_status(&h, g->fn, g->path);
    if (st == TL_OK && g->file) {
        tli_f32_swap_le(g->scratch, g->init_count); /* the scratch is ours: in place */
        if ((st = tli_afile_write(g->file, h.buf.data, h.buf.len)) == TL_OK &&
            (st = tli_afile_write(g->file, t.buf.data, t.buf.len)) == TL_OK)
            st = tli_afile_write(g->file, g->scratch, bytes);
    }
    if (st == TL_OK)
        g->inits_len += h.buf.len + t.buf.len + bytes;
    tli_pbw_free(&t);
    tli_pbw_free(&h);
    tli_onnx_fail(g, st);
    g->init_name = NULL;
}

void tli_onnx_scalar(tli_onnx *g, const char *name, float v)
{
    float *p = tli_onnx_init(g, name, 0, NULL);
    if (p)
        *p = v;
    tli_onnx_init_end(g);
}

/* The layers that take l's output. */
static size_t consumers(const tli_onnx *g, const tl_layer *l, const tl_layer **first)
{
    size_t n = 0;
    *first = NULL;
    for (size_t j = l->index + 1; j < g->m->nlayers; j++) {
        const tl_layer *c = g->m->layers[j];
        for (size_t k = 0; k < c->ninputs; k++)
            if (c->inputs[k] == l->index) {
                if (n++ == 0)
                    *first = c;
                break;
            }
    }
    return n;
}

static bool is_last(const tli_onnx *g, const tl_layer *l)
{
    return l->index + 1 == g->m->nlayers;
}

const tl_layer *tli_onnx_sole_consumer(const tli_onnx *g, const tl_layer *l)
{
    const tl_layer *c;
    if (is_last(g, l) || consumers(g, l, &c) != 1)
        return NULL;
    /* Taken once, as input 0 (add(x, x) takes it twice). */
    return c->ninputs == 1 ? c : NULL;
}

void tli_onnx_absorb(tli_onnx *g, const tl_layer *l, const tl_layer *c)
{
    (void)l;
    g->absorbed[c->index] = true;
}

tl_status tli_onnx_fold_affine(tli_onnx *g, const tl_layer *l, size_t n, float **scale, const tl_layer **bn)
{
    const tl_layer *c = tli_onnx_sole_consumer(g, l);
    *scale = NULL;
    *bn = NULL;
    if (!tli_onnx_folding(g) || l->act != TL_ACT_LINEAR || c == NULL || c->ops->channel_affine == NULL)
        return TL_OK;
    float *s = tli_malloc(2 * n * sizeof *s);
    if (s == NULL)
        return tli_error(TL_ENOMEM, TLI_LFMT ": out of memory", TLI_LARG(l));
    c->ops->channel_affine(c, s, s + n);
    tli_onnx_absorb(g, l, c);
    *scale = s;
    *bn = c;
    return TL_OK;
}

/* Every consumer of l takes a (c, h, w)-ordered flat input, seeing through
 * the kinds that pass it on; none is the model's output. */
static bool takers(const tli_onnx *g, const tl_layer *l, int depth)
{
    if (is_last(g, l) || depth > 64)
        return false;
    for (size_t j = l->index + 1; j < g->m->nlayers; j++) {
        const tl_layer *c = g->m->layers[j];
        bool uses = false;
        for (size_t k = 0; k < c->ninputs; k++)
            uses |= c->inputs[k] == l->index;
        if (!uses)
            continue;
        if (c->ops->onnx_flat == TLI_ONNX_FLAT_PASSES) {
            if (!takers(g, c, depth + 1))
                return false;
        } else if (c->ops->onnx_flat != TLI_ONNX_FLAT_TAKES) {
            return false;
        }
    }
    return true;
}

bool tli_onnx_chw_takers(const tli_onnx *g, const tl_layer *l)
{
    return takers(g, l, 0);
}

void tli_onnx_set_chw(tli_onnx *g, const tl_layer *l, const tl_shape *hwc)
{
    g->chw[l->index] = *hwc;
}

bool tli_onnx_chw_input(const tli_onnx *g, const tl_layer *l, size_t k, tl_shape *hwc)
{
    const uint32_t i = l->inputs[k];
    if (i == TLI_INPUT_MODEL || g->chw[i].rank != 3)
        return false;
    *hwc = g->chw[i];
    return true;
}
