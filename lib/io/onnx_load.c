/*
 * onnx_load.c - tl_model_load_onnx(): an ONNX graph into a libtl model.
 *
 * The file is read and checked first (onnx_read.c); then the graph is
 * walked in its (topological) node order, each tensor name standing for a
 * constant (initializer, Constant node), a layer's output or the model's
 * input (tli_ov), and each node becoming at most one layer (onnx_ops.c):
 * through the public add functions, weights through tl_layer_set_weights()
 * after the NCHW -> NHWC permutation of layout.c. Any failure frees the
 * model being built: a caller gets a whole model or none.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "../options.h"
#include "onnx_load.h"

TLI_OPTIONS_TYPE_V1(onnx_load_type, tl_onnx_load_options, TL_ONNX_LOAD_OPTIONS);

#define FN "tl_model_load_onnx"

tl_status tl_onnx_load_options_init(tl_onnx_load_options *opts, unsigned int version)
{
    const tl_onnx_load_options d = TL_ONNX_LOAD_OPTIONS_INIT;
    return tli_options_init(opts, version, &d, &onnx_load_type, "tl_onnx_load_options_init");
}

/* ---- values by name ------------------------------------------------------------ */

static uint64_t hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ULL;
    return h;
}

tli_ov *tli_ov_find(tli_onnx_ctx *c, const char *name)
{
    for (size_t i = hash(name) & (c->cap - 1);; i = (i + 1) & (c->cap - 1)) {
        if (c->vals[i].name == NULL)
            return NULL;
        if (strcmp(c->vals[i].name, name) == 0)
            return &c->vals[i];
    }
}

tli_ov *tli_ov_add(tli_onnx_ctx *c, const char *name)
{
    size_t i = hash(name) & (c->cap - 1);
    for (; c->vals[i].name != NULL; i = (i + 1) & (c->cap - 1))
        if (strcmp(c->vals[i].name, name) == 0)
            return &c->vals[i];
    /* The table has room for every name the graph can define (see load). */
    c->vals[i].name = name;
    c->vals[i].producer = -1;
    c->vals[i].consumer = -1;
    return &c->vals[i];
}

/* ---- messages --------------------------------------------------------------------- */

static void node_desc(char *buf, size_t cap, const tli_onnx_ctx *c, const tli_onnx_node *n)
{
    snprintf(buf, cap, "%s: %s: byte %llu: node '%.200s' (%.100s, opset %lld)", c->fn, c->path,
             (unsigned long long)n->off, n->name, n->op_type, (long long)c->om->opset);
}

tl_status tli_onnx_nerr(const tli_onnx_ctx *c, const tli_onnx_node *n, tl_status st, const char *fmt, ...)
{
    char head[512], text[640];
    node_desc(head, sizeof head, c, n);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    return tli_error(st, "%s: %s", head, text);
}

tl_status tli_onnx_nprefix(const tli_onnx_ctx *c, const tli_onnx_node *n, tl_status st)
{
    if (st == TL_OK)
        return st;
    char head[512];
    node_desc(head, sizeof head, c, n);
    tli_error_prefix("%s", head);
    return st;
}

/* ---- attributes ------------------------------------------------------------------------ */

static const char *attr_type_str(int32_t t)
{
    static const char *const names[] = {"UNDEFINED", "FLOAT", "INT", "STRING", "TENSOR", "GRAPH", "FLOATS", "INTS"};
    return t >= 0 && t < 8 ? names[t] : "another type";
}

tl_status tli_onnx_attr_get(const tli_onnx_attr **out, const tli_onnx_ctx *c, const tli_onnx_node *n, const char *name,
                        int32_t type)
{
    *out = NULL;
    for (size_t i = 0; i < n->nattrs; i++) {
        const tli_onnx_attr *a = &n->attrs[i];
        if (strcmp(a->name, name) != 0)
            continue;
        if (a->type != type)
            return tli_onnx_nerr(c, n, TL_EFORMAT, "attribute '%s' is %s, expected %s", name, attr_type_str(a->type),
                                 attr_type_str(type));
        if (type == TLI_ONNX_ATTR_TENSOR && a->t == NULL)
            return tli_onnx_nerr(c, n, TL_EFORMAT, "attribute '%s' has no tensor", name);
        *out = a;
        return TL_OK;
    }
    return TL_OK;
}

tl_status tli_onnx_get_int(int64_t *out, const tli_onnx_ctx *c, const tli_onnx_node *n, const char *name,
                            int64_t def)
{
    const tli_onnx_attr *a;
    tl_status st = tli_onnx_attr_get(&a, c, n, name, TLI_ONNX_ATTR_INT);
    *out = a ? a->i : def;
    return st;
}

tl_status tli_onnx_get_float(float *out, const tli_onnx_ctx *c, const tli_onnx_node *n, const char *name, float def)
{
    const tli_onnx_attr *a;
    tl_status st = tli_onnx_attr_get(&a, c, n, name, TLI_ONNX_ATTR_FLOAT);
    *out = a ? a->f : def;
    return st;
}

tl_status tli_onnx_get_ints(int64_t *out, bool *present, const tli_onnx_ctx *c, const tli_onnx_node *n,
                             const char *name, size_t want)
{
    const tli_onnx_attr *a;
    tl_status st = tli_onnx_attr_get(&a, c, n, name, TLI_ONNX_ATTR_INTS);
    *present = a != NULL;
    if (st || a == NULL)
        return st;
    if (a->nints != want)
        return tli_onnx_nerr(c, n, TL_EUNSUPPORTED, "attribute '%s' has %zu values; libtl takes %zu here (a 2-D "
                             "image operation)", name, a->nints, want);
    memcpy(out, a->ints, want * sizeof *out);
    return TL_OK;
}

tl_status tli_onnx_get_str(const char **out, const tli_onnx_ctx *c, const tli_onnx_node *n, const char *name,
                            const char *def)
{
    const tli_onnx_attr *a;
    tl_status st = tli_onnx_attr_get(&a, c, n, name, TLI_ONNX_ATTR_STRING);
    *out = a ? a->s : def;
    return st;
}

/* ---- inputs and outputs ---------------------------------------------------------------- */

tl_status tli_onnx_in_layer(tli_ov **out, tli_onnx_ctx *c, const tli_onnx_node *n, size_t k)
{
    if (k >= n->ninputs || n->inputs[k][0] == '\0')
        return tli_onnx_nerr(c, n, TL_EFORMAT, "input %zu is missing", k);
    tli_ov *v = tli_ov_find(c, n->inputs[k]);
    if (v == NULL || v->kind == TLI_OV_NONE)
        return tli_onnx_nerr(c, n, TL_EFORMAT, "input %zu '%.200s' is not defined before the node (the graph must be "
                             "in topological order)", k, n->inputs[k]);
    if (v->kind != TLI_OV_LAYER)
        return tli_onnx_nerr(c, n, TL_EUNSUPPORTED, "input %zu '%.200s' is a constant%s where libtl needs a layer's "
                             "output", k, n->inputs[k], v->kind == TLI_OV_SHAPE ? " (integers from shapes)" : "");
    if (v->layer == NULL && tl_model_num_layers(c->model) > 0)
        return tli_onnx_nerr(c, n, TL_EUNSUPPORTED, "takes the graph's input, which an earlier node already took; "
                             "libtl's first layer is the only one that reads the model's input");
    *out = v;
    return TL_OK;
}

tl_status tli_onnx_in_const(const tli_onnx_tensor **out, tli_onnx_ctx *c, const tli_onnx_node *n, size_t k,
                            bool optional)
{
    *out = NULL;
    if (k >= n->ninputs || n->inputs[k][0] == '\0') {
        if (optional)
            return TL_OK;
        return tli_onnx_nerr(c, n, TL_EFORMAT, "input %zu is missing", k);
    }
    tli_ov *v = tli_ov_find(c, n->inputs[k]);
    if (v == NULL || v->kind == TLI_OV_NONE)
        return tli_onnx_nerr(c, n, TL_EFORMAT, "input %zu '%.200s' is not defined before the node", k, n->inputs[k]);
    if (v->kind != TLI_OV_CONST)
        return tli_onnx_nerr(c, n, TL_EUNSUPPORTED, "input %zu '%.200s' is computed by the graph; libtl needs a "
                             "constant (an initializer) there", k, n->inputs[k]);
    /* All the data there before a layer of its size is allocated. (The
     * message names the file, the tensor and its offset.) */
    tl_status st = tli_onnx_tensor_check(c->om, v->t);
    if (st)
        return st;
    *out = v->t;
    return TL_OK;
}

tl_status tli_onnx_floats(float **out, tli_onnx_ctx *c, const tli_onnx_node *n, const tli_onnx_tensor *t)
{
    float *v = tli_malloc(t->count ? (size_t)t->count * sizeof *v : 1);
    if (v == NULL)
        return tli_onnx_nerr(c, n, TL_ENOMEM, "out of memory for tensor '%.200s' (%llu values)", t->name,
                             (unsigned long long)t->count);
    tl_status st = tli_onnx_tensor_floats(v, c->om, t);
    if (st) {
        tli_free(v);
        return st;
    }
    *out = v;
    return TL_OK;
}

tl_shape tli_onnx_shape(const tli_onnx_ctx *c, const tli_ov *v)
{
    tl_shape s;
    if (v->layer)
        tl_layer_output_shape(&s, v->layer);
    else
        tl_model_input_shape(&s, c->model);
    return s;
}

tl_status tli_onnx_set_out(tli_onnx_ctx *c, const tli_onnx_node *n, size_t k, tl_layer *layer)
{
    if (k >= n->noutputs || n->outputs[k][0] == '\0')
        return tli_onnx_nerr(c, n, TL_EFORMAT, "has no output %zu", k);
    tli_ov *v = tli_ov_find(c, n->outputs[k]);
    if (v == NULL || v->kind != TLI_OV_NONE)
        return tli_onnx_nerr(c, n, TL_EFORMAT, "output '%.200s' is defined twice", n->outputs[k]);
    v->kind = TLI_OV_LAYER;
    v->layer = layer;
    return TL_OK;
}

tl_status tli_onnx_unused_out(tli_onnx_ctx *c, const tli_onnx_node *n, size_t k)
{
    if (k >= n->noutputs || n->outputs[k][0] == '\0')
        return TL_OK;
    tli_ov *v = tli_ov_find(c, n->outputs[k]);
    if (v && v->uses > 0)
        return tli_onnx_nerr(c, n, TL_EUNSUPPORTED, "its output %zu '%.200s' is used; libtl computes only output 0 "
                             "of %s", k, n->outputs[k], n->op_type);
    return TL_OK;
}

/* ---- names --------------------------------------------------------------------------------- */

static bool name_taken(const tl_model *m, const char *name)
{
    for (size_t i = 0; i < m->nlayers; i++)
        if (strcmp(m->layers[i]->name, name) == 0)
            return true;
    return false;
}

static bool ends_with(const char *s, const char *suffix, size_t *stem)
{
    size_t n = strlen(s), k = strlen(suffix);
    *stem = n - k;
    return n > k && strcmp(s + n - k, suffix) == 0;
}

const char *tli_onnx_layer_name(char *buf, size_t cap, const tli_onnx_ctx *c, const tli_onnx_node *n,
                                const char *weight)
{
    char base[TL_MAX_NAME + 1] = "";
    size_t stem;
    /* PyTorch's parameter names: "<module>.weight" (conv, linear, batchnorm). */
    if (weight && ends_with(weight, ".weight", &stem) && stem <= TL_MAX_NAME) {
        memcpy(base, weight, stem);
        base[stem] = '\0';
    } else {
        const char *s = n->name;
        while (*s == '/')
            s++;
        /* torch.onnx's scoped names "/layer1/layer1.0/conv1/Conv": the part
         * before the operator is the module's path. */
        const char *last = strrchr(s, '/');
        size_t len = strlen(s);
        if (weight && last && last > s) {
            const char *prev = last;
            while (prev > s && prev[-1] != '/')
                prev--;
            s = prev;
            len = (size_t)(last - prev);
        }
        if (len > TL_MAX_NAME) { /* keep the end, the most specific part */
            s += len - TL_MAX_NAME;
            len = TL_MAX_NAME;
        }
        memcpy(base, s, len);
        base[len] = '\0';
    }
    for (char *p = base; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == '"' || *p == '\\')
            *p = '_';
    if (base[0] == '\0')
        return NULL;
    snprintf(buf, cap, "%s", base);
    for (unsigned k = 1; name_taken(c->model, buf); k++) {
        char suffix[16];
        int sl = snprintf(suffix, sizeof suffix, "_%u", k);
        size_t keep = strlen(base);
        if (keep + (size_t)sl > TL_MAX_NAME)
            keep = TL_MAX_NAME - (size_t)sl;
        snprintf(buf, cap, "%.*s%s", (int)keep, base, suffix);
    }
    return buf;
}

/* ---- the graph ------------------------------------------------------------------------------ */

static tl_status check_opset(const tli_onnx_model *om, const char *fn, const char *path)
{
    if (om->opset == 0)
        return tli_error(TL_EFORMAT, "%s: %s: byte 0: the model imports no ai.onnx opset", fn, path);
    if (om->opset < 11 || om->opset > 17)
        return tli_error(TL_EUNSUPPORTED, "%s: %s: byte %llu: ai.onnx opset %lld; libtl reads opsets 11 to 17", fn,
                         path, (unsigned long long)om->opset_off, (long long)om->opset);
    return TL_OK;
}

/* The graph's one real input (not an initializer): its shape gives the
 * model's (h, w, c). */
static tl_status make_model(tli_onnx_ctx *c, const tl_onnx_load_options *o)
{
    tli_onnx_model *om = c->om;
    const tli_onnx_value *in = NULL;
    for (size_t i = 0; i < om->ninputs; i++) {
        tli_ov *v = tli_ov_find(c, om->inputs[i].name);
        if (v && v->kind == TLI_OV_CONST)
            continue; /* IR version < 4 lists initializers as inputs too */
        if (in)
            return tli_error(TL_EUNSUPPORTED, "%s: %s: byte %llu: the graph has a second input '%.200s' (after "
                             "'%.200s'); libtl models take one image input", c->fn, c->path,
                             (unsigned long long)om->inputs[i].off, om->inputs[i].name, in->name);
        in = &om->inputs[i];
    }
    if (in == NULL)
        return tli_error(TL_EFORMAT, "%s: %s: byte 0: the graph has no input", c->fn, c->path);
    if (in->elem_type != TLI_ONNX_FLOAT)
        return tli_error(TL_EUNSUPPORTED, "%s: %s: byte %llu: input '%.200s' has element type %d; libtl takes FLOAT "
                         "(1) images", c->fn, c->path, (unsigned long long)in->off, in->name, (int)in->elem_type);
    if (!in->has_shape || in->rank != 4)
        return tli_error(TL_EUNSUPPORTED, "%s: %s: byte %llu: input '%.200s' is not a 4-D (N, C, H, W) tensor (rank "
                         "%u); libtl models take images", c->fn, c->path, (unsigned long long)in->off, in->name,
                         in->has_shape ? in->rank : 0);
    int64_t chw[3] = {in->dims[1], in->dims[2], in->dims[3]};
    const uint32_t want[3] = {0, o->input_height, o->input_width};
    static const char *const axis[3] = {"channels", "height", "width"};
    for (int k = 0; k < 3; k++) {
        if (want[k] && chw[k] >= 0 && chw[k] != (int64_t)want[k])
            return tli_error(TL_ESHAPE, "%s: %s: byte %llu: input '%.200s' has %s %lld, but the options ask for %u",
                             c->fn, c->path, (unsigned long long)in->off, in->name, axis[k], (long long)chw[k],
                             want[k]);
        if (chw[k] < 0)
            chw[k] = want[k];
        if (chw[k] <= 0 || chw[k] > UINT32_MAX)
            return tli_error(TL_EUNSUPPORTED, "%s: %s: byte %llu: input '%.200s' leaves its %s %s; %s", c->fn,
                             c->path, (unsigned long long)in->off, in->name, axis[k],
                             chw[k] == 0 ? "at 0 or symbolic" : "too large",
                             k ? "set tl_onnx_load_options' input_height and input_width" : "libtl needs it fixed");
    }
    c->batch = in->dims[0];
    tl_status st = tl_model_create(&c->model, (uint32_t)chw[1], (uint32_t)chw[2], (uint32_t)chw[0], o->seed);
    if (st) {
        tli_error_prefix("%s: %s: input '%.200s'", c->fn, c->path, in->name);
        return st;
    }
    tli_ov *v = tli_ov_add(c, in->name);
    v->kind = TLI_OV_LAYER;
    v->layer = NULL;
    return TL_OK;
}

static tl_status build(tli_onnx_ctx *c, const tl_onnx_load_options *o)
{
    tli_onnx_model *om = c->om;
    tl_status st = check_opset(om, c->fn, c->path);
    if (st)
        return st;
    /* Room for every name: initializers, graph inputs, node outputs. */
    size_t names = om->ninits + om->ninputs + 1;
    for (size_t i = 0; i < om->nnodes; i++)
        names += om->nodes[i].noutputs + om->nodes[i].ninputs;
    c->cap = 16;
    while (c->cap < 2 * names)
        c->cap *= 2;
    c->vals = tli_calloc(c->cap, sizeof *c->vals);
    c->done = tli_calloc(om->nnodes + 1, sizeof *c->done);
    c->silu = tli_calloc(om->nnodes + 1, sizeof *c->silu);
    if (!c->vals || !c->done || !c->silu)
        return tli_error(TL_ENOMEM, "%s: %s: out of memory for the graph's %zu names", c->fn, c->path, names);
    for (size_t i = 0; i < om->ninits; i++) {
        const tli_onnx_tensor *t = &om->inits[i];
        if (t->name[0] == '\0')
            return tli_error(TL_EFORMAT, "%s: %s: byte %llu: an initializer without a name", c->fn, c->path,
                             (unsigned long long)t->off);
        tli_ov *v = tli_ov_add(c, t->name);
        if (v->kind != TLI_OV_NONE)
            return tli_error(TL_EFORMAT, "%s: %s: byte %llu: initializer '%.200s' is defined twice", c->fn, c->path,
                             (unsigned long long)t->off, t->name);
        v->kind = TLI_OV_CONST;
        v->t = t;
    }
    /* Who uses what: fusing a layer with the node after it needs to know
     * that nothing else reads the first one's output. */
    for (size_t i = 0; i < om->nnodes; i++) {
        const tli_onnx_node *n = &om->nodes[i];
        for (size_t k = 0; k < n->ninputs; k++) {
            if (n->inputs[k][0] == '\0')
                continue;
            tli_ov *v = tli_ov_add(c, n->inputs[k]);
            v->uses++;
            v->consumer = (int64_t)i;
        }
        for (size_t k = 0; k < n->noutputs; k++) {
            if (n->outputs[k][0] == '\0')
                continue;
            tli_ov *v = tli_ov_add(c, n->outputs[k]);
            if (v->producer >= 0 || v->kind == TLI_OV_CONST)
                return tli_onnx_nerr(c, n, TL_EFORMAT, "output '%.200s' is defined twice", n->outputs[k]);
            v->producer = (int64_t)i;
        }
    }
    if (om->noutputs != 1)
        return tli_error(TL_EUNSUPPORTED, "%s: %s: byte 0: the graph has %zu outputs; libtl models have one", c->fn,
                         c->path, om->noutputs);
    tli_ov *out = tli_ov_add(c, om->outputs[0].name);
    out->uses++;
    out->consumer = -1;
    if ((st = make_model(c, o)))
        return st;
    /* Constants first (they have no inputs): a Clip's bounds written after
     * the Conv before it must be known when the Conv looks at the Clip to
     * fuse it. */
    for (size_t i = 0; i < om->nnodes; i++)
        if (strcmp(om->nodes[i].op_type, "Constant") == 0 && om->nodes[i].domain[0] == '\0' &&
            (st = tli_onnx_node_to_layers(c, i)))
            return st;
    for (size_t i = 0; i < om->nnodes; i++) {
        if (c->done[i])
            continue;
        if ((st = tli_onnx_node_to_layers(c, i)))
            return st;
    }
    out = tli_ov_find(c, om->outputs[0].name);
    size_t nl = tl_model_num_layers(c->model);
    if (out == NULL || out->kind != TLI_OV_LAYER || nl == 0 || out->layer != c->model->layers[nl - 1] ||
        out->padded)
        return tli_error(TL_EUNSUPPORTED, "%s: %s: byte %llu: the graph's output '%.200s' is %s", c->fn, c->path,
                         (unsigned long long)om->outputs[0].off, om->outputs[0].name,
                         out == NULL || out->kind == TLI_OV_NONE ? "never computed"
                         : out->kind != TLI_OV_LAYER ? "a constant"
                         : nl == 0 ? "the input itself (the graph has no layers)"
                                   : "not the last layer the graph computes (libtl's output is its last layer)");
    return tli_model_check_graph(c->model, c->fn);
}

tl_status tl_model_load_onnx(tl_model **out, const char *path, const tl_onnx_load_options *opts)
{
    if (out == NULL || path == NULL)
        return tli_error(TL_EINVAL, FN ": %s is NULL", out == NULL ? "out" : "path");
    tl_onnx_load_options o = TL_ONNX_LOAD_OPTIONS_INIT;
    tl_status st = tli_options_read(&o, opts, &onnx_load_type, FN);
    if (st)
        return st;
    tli_onnx_model om;
    if ((st = tli_onnx_read(&om, path, FN)))
        return st;
    tli_onnx_ctx c = {.fn = FN, .path = path, .om = &om, .batch = -1};
    st = build(&c, &o);
    tli_free(c.vals);
    tli_free(c.done);
    tli_free(c.silu);
    tli_onnx_free(&om);
    if (st) {
        tl_model_free(c.model);
        return st;
    }
    *out = c.model;
    return TL_OK;
}
