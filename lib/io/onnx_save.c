/*
 * onnx_save.c - tl_model_save_onnx(): the model as an ONNX ModelProto in
 * inference form (docs/format-onnx.md, "Export").
 *
 * The layers are walked in order and each kind adds its own nodes and
 * weights through its ops' onnx_export hook (onnx_export.h says how);
 * this file adds what belongs to the whole graph - the input (and its
 * Transpose for NHWC), the output, the metadata, the opset - encodes the
 * ModelProto (pb_write.h) and writes it atomically like every libtl save.
 * The hooks run twice: the first pass makes the nodes and measures the
 * weights (a message's length comes before it), the second streams the
 * weights into the file, one tensor at a time (write_file).
 */
#include <stdio.h>

#include "../options.h"
#include "file.h"
#include "onnx_write.h"

TLI_OPTIONS_TYPE_V1(onnx_save_type, tl_onnx_save_options, TL_ONNX_SAVE_OPTIONS);

tl_status tl_onnx_save_options_init(tl_onnx_save_options *opts, unsigned int version)
{
    const tl_onnx_save_options d = TL_ONNX_SAVE_OPTIONS_INIT;
    return tli_options_init(opts, version, &d, &onnx_save_type, "tl_onnx_save_options_init");
}

#define OPSET_DEFAULT 13
#define OPSET_MAX 17

/* The IR version that goes with an opset (onnx/helper.py's table): opsets
 * 13 and 14 came with IR 7, 15 to 17 with IR 8. */
static int64_t ir_version(int64_t opset)
{
    return opset >= 15 ? 8 : 7;
}

/* A graph input or output: a float tensor (N, dims...). */
static void value_info(tli_pbw *w, uint32_t field, const char *name, const int64_t *dims, size_t rank)
{
    tli_pbw_begin(w, field);
    tli_pbw_string(w, ONNX_VALUE_NAME, name);
    tli_pbw_begin(w, ONNX_VALUE_TYPE);
    tli_pbw_begin(w, ONNX_TYPE_TENSOR);
    tli_pbw_uint(w, ONNX_TYPE_TENSOR_ELEM_TYPE, ONNX_TENSOR_FLOAT);
    tli_pbw_begin(w, ONNX_TYPE_TENSOR_SHAPE);
    tli_pbw_begin(w, ONNX_SHAPE_DIM);
    tli_pbw_string(w, ONNX_DIM_PARAM, "N");
    tli_pbw_end(w);
    for (size_t i = 0; i < rank; i++) {
        tli_pbw_begin(w, ONNX_SHAPE_DIM);
        tli_pbw_int(w, ONNX_DIM_VALUE, dims[i]);
        tli_pbw_end(w);
    }
    tli_pbw_end(w);
    tli_pbw_end(w);
    tli_pbw_end(w);
    tli_pbw_end(w);
}

/* The graph's dims (batch left out) of a libtl shape: (h, w, c) is
 * (c, h, w), or (h, w, c) itself at an NHWC end. */
static size_t graph_dims(const tl_shape *s, bool nhwc, int64_t d[TL_MAX_RANK])
{
    for (uint32_t i = 0; i < s->rank; i++)
        d[i] = s->dims[i];
    if (s->rank == 3 && !nhwc) {
        d[0] = s->dims[2];
        d[1] = s->dims[0];
        d[2] = s->dims[1];
    }
    return s->rank;
}

static bool is_layer_name(const tl_model *m, const char *name)
{
    for (size_t i = 0; i < m->nlayers; i++)
        if (strcmp(m->layers[i]->name, name) == 0)
            return true;
    return false;
}

/* A Transpose node from x to a new tensor "<x>/<what>". */
static const char *transpose(tli_onnx *g, const char *x, const char *what, const int64_t perm[4])
{
    const char *y = tli_onnx_str(g, x, "/", what);
    tli_onnx_node(g, "Transpose", tli_onnx_str(g, x, "/", "Transpose"), &x, 1, y);
    tli_onnx_attr_ints(g, "perm", perm, 4);
    tli_onnx_node_end(g);
    return y;
}

/* The layers' nodes. *graph_in and *graph_out receive the graph's input
 * and output tensors. */
static tl_status walk(tli_onnx *g, bool nhwc, const char **graph_in, const char **graph_out)
{
    static const int64_t to_nchw[4] = {0, 3, 1, 2}, to_nhwc[4] = {0, 2, 3, 1};
    const tl_model *m = g->m;
    /* "input", unless a layer has that name (its output tensor will). */
    char name[32] = "input";
    for (unsigned k = 1; is_layer_name(m, name); k++)
        snprintf(name, sizeof name, "input_%u", k);
    *graph_in = tli_onnx_str(g, name, NULL, NULL);
    tli_onnx_claim(g, *graph_in);
    g->input = nhwc ? transpose(g, *graph_in, "nchw", to_nchw) : *graph_in;
    for (size_t i = 0; i < m->nlayers && g->st == TL_OK; i++) {
        const tl_layer *l = m->layers[i];
        g->cur = l;
        if (g->absorbed[i])
            continue;
        if (l->ops->onnx_export == NULL)
            return tli_error(TL_EUNSUPPORTED, "%s: %s: " TLI_LFMT " has no ONNX equivalent", g->fn, g->path,
                             TLI_LARG(l));
        tl_status st = l->ops->onnx_export(l, g);
        if (st) {
            tli_error_prefix("%s: %s", g->fn, g->path);
            return st;
        }
        if (g->st == TL_OK && g->out[i] == NULL)
            return tli_error(TL_EINVAL, "%s: %s: " TLI_LFMT " made no ONNX output (a bug in libtl)", g->fn, g->path,
                             TLI_LARG(l));
    }
    g->cur = NULL;
    if (g->st)
        return g->st;
    const tl_layer *last = m->layers[m->nlayers - 1];
    const char *out = g->out[last->index];
    if (nhwc && last->out_shape.rank == 3) {
        out = transpose(g, out, "nhwc", to_nhwc);
    } else if (strcmp(out, *graph_in) == 0) { /* the model passes its input through */
        const char *y = tli_onnx_sub(g, last, "output");
        tli_onnx_node(g, "Identity", tli_onnx_sub(g, last, "Identity"), &out, 1, y);
        tli_onnx_node_end(g);
        out = y;
    }
    *graph_out = out;
    return g->st;
}

/* metadata_props: libtl's version, the input layout, and the layers as a
 * JSON list: name, kind, and the ONNX tensor that holds the layer's
 * output. */
static void metadata(tli_pbw *w, const tli_onnx *g, bool nhwc)
{
    const tl_model *m = g->m;
    tli_wbuf j = {0};
    tli_wbuf_u8(&j, '[');
    for (size_t i = 0; i < m->nlayers; i++) {
        const tl_layer *l = m->layers[i];
        tli_wbuf_str(&j, i ? ",{\"name\":" : "{\"name\":");
        tli_wbuf_json_str(&j, l->name);
        tli_wbuf_fmt(&j, ",\"kind\":\"%s\",\"tensor\":", l->ops->type_name);
        tli_wbuf_json_str(&j, g->out[i] ? g->out[i] : "");
        tli_wbuf_u8(&j, '}');
    }
    tli_wbuf_str(&j, "]");
    tli_wbuf_u8(&j, '\0');
    const char *kv[3][2] = {{"libtl.version", TL_VERSION_STRING},
                            {"libtl.input_layout", nhwc ? "NHWC" : "NCHW"},
                            {"libtl.layers", j.failed ? "" : (const char *)j.data}};
    for (int i = 0; i < 3; i++) {
        tli_pbw_begin(w, ONNX_MODEL_METADATA);
        tli_pbw_string(w, ONNX_ENTRY_KEY, kv[i][0]);
        tli_pbw_string(w, ONNX_ENTRY_VALUE, kv[i][1]);
        tli_pbw_end(w);
    }
    w->buf.failed |= j.failed;
    tli_wbuf_free(&j);
}

/* The ModelProto in pieces: head (the model's first fields and the
 * graph's tag and length), the nodes (g->nodes), the initializers (written
 * by the second pass), gtail (the graph's name, input and output), tail
 * (opset and metadata). */
static void model_pieces(tli_pbw *head, tli_pbw *gtail, tli_pbw *tail, const tli_onnx *g, bool nhwc, const char *in,
                         const char *out)
{
    const tl_model *m = g->m;
    int64_t d[TL_MAX_RANK];
    tli_pbw_string(gtail, ONNX_GRAPH_NAME, "libtl");
    value_info(gtail, ONNX_GRAPH_INPUT, in, d, graph_dims(&m->input, nhwc, d));
    const tl_shape *os = &m->layers[m->nlayers - 1]->out_shape;
    value_info(gtail, ONNX_GRAPH_OUTPUT, out, d, graph_dims(os, nhwc, d));
    tli_pbw_int(head, ONNX_MODEL_IR_VERSION, ir_version(g->opset));
    tli_pbw_string(head, ONNX_MODEL_PRODUCER_NAME, "libtl");
    tli_pbw_string(head, ONNX_MODEL_PRODUCER_VERSION, TL_VERSION_STRING);
    tli_pbw_string(head, ONNX_MODEL_DOC_STRING, "A libtl model in inference form.");
    /* A sum past 2 GiB - 1 is refused by tli_pbw_head (TL_ETOOBIG). */
    tli_pbw_head(head, ONNX_MODEL_GRAPH, (uint64_t)g->nodes.buf.len + g->inits_len + gtail->buf.len);
    tli_pbw_begin(tail, ONNX_MODEL_OPSET_IMPORT);
    tli_pbw_string(tail, ONNX_OPSET_DOMAIN, "");
    tli_pbw_int(tail, ONNX_OPSET_VERSION, g->opset);
    tli_pbw_end(tail);
    metadata(tail, g, nhwc);
}

/* FNV-1a of a buffer: the second pass must make the first pass's nodes. */
static uint64_t fnv1a(const tli_pbw *w)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < w->buf.len; i++)
        h = (h ^ w->buf.data[i]) * 0x100000001b3ULL;
    return h;
}

/* The file: the pieces, and between the nodes and the graph's tail the
 * initializers, which the second pass of the hooks writes as it makes
 * them - so the weights are never all in memory, only the largest
 * tensor at a time. */
static tl_status write_file(tli_onnx *g, const tli_pbw *head, const tli_pbw *gtail, const tli_pbw *tail, bool nhwc)
{
    const uint64_t nodes_len = g->nodes.buf.len, nodes_hash = fnv1a(&g->nodes), inits_len = g->inits_len;
    tli_afile f = {.fd = -1};
    tl_status st = tli_afile_open(&f, g->path, g->fn);
    if (st)
        return st;
    if ((st = tli_afile_write(&f, head->buf.data, head->buf.len)) == TL_OK)
        st = tli_afile_write(&f, g->nodes.buf.data, g->nodes.buf.len);
    if (st == TL_OK) {
        const char *in, *out;
        tli_onnx_second_pass(g, &f);
        g->inits_len = 0;
        st = walk(g, nhwc, &in, &out);
        if (st == TL_OK && (g->nodes.buf.len != nodes_len || fnv1a(&g->nodes) != nodes_hash ||
                            g->inits_len != inits_len))
            st = tli_error(TL_EINVAL, "%s: %s: the layers exported differently twice (a bug in libtl)", g->fn,
                           g->path);
    }
    if (st == TL_OK && (st = tli_afile_write(&f, gtail->buf.data, gtail->buf.len)) == TL_OK)
        st = tli_afile_write(&f, tail->buf.data, tail->buf.len);
    if (st == TL_OK)
        return tli_afile_commit(&f);
    tli_afile_abort(&f);
    return st;
}

tl_status tl_model_save_onnx(const tl_model *m, const char *path, const tl_onnx_save_options *opts)
{
    const char *fn = "tl_model_save_onnx";
    if (m == NULL || path == NULL)
        return tli_error(TL_EINVAL, "%s: %s is NULL", fn, m ? "path" : "model");
    tl_onnx_save_options o = TL_ONNX_SAVE_OPTIONS_INIT;
    tl_status st = tli_options_read(&o, opts, &onnx_save_type, fn);
    if (st)
        return st;
    const int64_t opset = o.opset ? o.opset : OPSET_DEFAULT;
    if (opset < OPSET_DEFAULT || opset > OPSET_MAX)
        return tli_error(TL_EINVAL, "%s: opset %lld is not one libtl writes (13 to 17; 0 means 13)", fn,
                         (long long)o.opset);
    if (m->nlayers == 0)
        return tli_error(TL_EINVAL, "%s: the model has no layers", fn);
    if ((st = tli_model_check_graph(m, fn)) != TL_OK)
        return st;
    tli_onnx g = {0};
    tli_pbw head = {0}, gtail = {0}, tail = {0};
    const char *in = NULL, *out = NULL;
    const bool nhwc = o.nhwc_input != 0;
    st = tli_onnx_setup(&g, m, opset, o.fold_batchnorm != 0, fn, path);
    if (st == TL_OK)
        st = walk(&g, nhwc, &in, &out);
    if (st == TL_OK && (st = tli_pbw_status(&g.nodes, fn, path)) == TL_OK) {
        model_pieces(&head, &gtail, &tail, &g, nhwc, in, out);
        if ((st = tli_pbw_status(&head, fn, path)) == TL_OK && (st = tli_pbw_status(&gtail, fn, path)) == TL_OK &&
            (st = tli_pbw_status(&tail, fn, path)) == TL_OK)
            st = write_file(&g, &head, &gtail, &tail, nhwc);
    }
    tli_onnx_release(&g);
    tli_pbw_free(&head);
    tli_pbw_free(&gtail);
    tli_pbw_free(&tail);
    return st;
}
