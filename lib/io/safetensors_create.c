/*
 * safetensors_create.c - tl_model_create_from_safetensors(): the model a
 * safetensors file written by libtl describes in its "libtl.architecture"
 * metadata, built and filled from the file's tensors.
 *
 * The description is untrusted text like the rest of the file. It is parsed
 * with tight limits (layers, names, nesting), and every layer is rebuilt
 * through tli_model_append - the add functions' own checks and each kind's
 * build - first as a shell (shapes and settings, no values), so a file is
 * held to its output shapes and to the size of its tensor data before a
 * single parameter is allocated. Settings are read generically through the
 * kind's field table (tli_field), as the checkpoint reads them: nothing
 * here knows a kind. The tensors are then loaded by
 * tl_model_load_safetensors() in the layout the file names, strictly.
 *
 * libtl 1.0 described a chain (no "inputs") of its four kinds, with
 * conv2d's and maxpool2d's window settings as pairs ("kernel_size":[h,w],
 * "strides", "pool_size"); those pairs map onto the fields "<x>_h", "<x>_w"
 * of the same kind (the table `pairs` below), so 1.0 files are read too.
 */
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h" /* TLI_CKPT_MAX_LAYERS: a created model can be checkpointed */
#include "safetensors.h"

/* Limits of the description: as many layers as a checkpoint holds; a
 * valid description nests 4 deep (object, layers, layer, inputs) and has
 * at most ~40 values per layer. */
#define ARCH_MAX_LAYERS TLI_CKPT_MAX_LAYERS
#define ARCH_MAX_DEPTH 8u
#define ARCH_MAX_STRING 4096u
#define ARCH_MAX_NODES (64u + (size_t)ARCH_MAX_LAYERS * 64u)

_Static_assert(TLI_CFG_BYTES / 4 <= 32, "a kind's fields fit the 32-bit 'seen' mask");

/* libtl 1.0's window pairs: member -> the two fields it holds. */
static const struct {
    const char *member, *h, *w;
} pairs[] = {
    {"kernel_size", "kernel_h", "kernel_w"},
    {"strides", "stride_h", "stride_w"},
    {"pool_size", "pool_h", "pool_w"},
};

typedef struct creator {
    const char *fn, *path;
    size_t at;          /* file byte of the "libtl.architecture" member */
    const tli_json *j;  /* the parsed description */
    char version[32];   /* the libtl that wrote it, for messages */
    unsigned major, minor;
    bool newer;         /* written by a later minor version than this libtl */
    bool v1_0;          /* written by libtl 1.0 */
    tl_model *shell;
    uint32_t *names;    /* open-addressing table of layer index + 1, 0: empty */
    size_t nnames;      /* power of two */
} creator;

/* "fn: path: byte N: libtl.architecture: <text>". */
static tl_status aerr(const creator *c, tl_status st, const char *fmt, ...) TLI_PRINTF(3, 4);
static tl_status aerr(const creator *c, tl_status st, const char *fmt, ...)
{
    char text[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    return tli_error(st, "%s: %s: byte %zu: libtl.architecture: %s", c->fn, c->path, c->at, text);
}

/* A value or member this libtl does not know: from a later version it is
 * news (TL_EVERSION), otherwise the file is wrong (TL_EFORMAT). */
static tl_status unknown(const creator *c, const char *fmt, ...) TLI_PRINTF(2, 3);
static tl_status unknown(const creator *c, const char *fmt, ...)
{
    char text[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    if (c->newer)
        return aerr(c, TL_EVERSION, "%s, which this libtl (%s) does not know; the file was written by libtl %s",
                    text, TL_VERSION_STRING, c->version);
    return aerr(c, TL_EFORMAT, "%s, which is not valid", text);
}

/* ---- values ------------------------------------------------------------------------- */

static bool json_u32(const tli_json_node *n, uint32_t *out)
{
    uint64_t v;
    if (!tli_json_u64(n, &v) || v > UINT32_MAX)
        return false;
    *out = (uint32_t)v;
    return true;
}

/* A JSON number as the nearest float, whatever the C locale's decimal
 * point; false when it is not finite as a float. */
static bool json_f32(const tli_json_node *n, float *out)
{
    char buf[80];
    if (n->type != TLI_JSON_NUMBER || n->len == 0 || n->len >= sizeof buf)
        return false;
    memcpy(buf, n->str, n->len);
    buf[n->len] = '\0';
    const char *point = localeconv()->decimal_point;
    char *dot = strchr(buf, '.');
    if (dot && point && point[0] && point[1] == '\0')
        *dot = point[0];
    char *end;
    double d = strtod(buf, &end);
    if (end != buf + n->len || !isfinite(d))
        return false;
    float f = (float)d;
    if (!isfinite(f))
        return false;
    *out = f;
    return true;
}

/* A shape: 1..TL_MAX_RANK positive dimensions. */
static bool json_shape(const tli_json *j, const tli_json_node *n, tl_shape *s, uint32_t max_rank)
{
    if (n->type != TLI_JSON_ARRAY || n->count == 0 || n->count > max_rank)
        return false;
    memset(s, 0, sizeof *s);
    s->rank = n->count;
    uint32_t k = n->child;
    for (uint32_t i = 0; i < n->count; i++, k = j->nodes[k].next)
        if (!json_u32(&j->nodes[k], &s->dims[i]) || s->dims[i] == 0)
            return false;
    return true;
}

static const tli_layer_ops *kind_by_name(const char *name)
{
    /* Kinds are numbered from 1, densely; the bound leaves room for many more. */
    for (int k = 1; k < 256; k++) {
        const tli_layer_ops *ops = tli_layer_ops_for((tl_layer_kind)k);
        if (ops && strcmp(ops->type_name, name) == 0)
            return ops;
    }
    return NULL;
}

static int field_index(const tli_layer_ops *ops, const char *name)
{
    for (size_t i = 0; i < ops->nfields; i++)
        if (strcmp(ops->fields[i].name, name) == 0)
            return (int)i;
    return -1;
}

/* ---- names -------------------------------------------------------------------------- */

static uint64_t name_hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 0x100000001b3ULL;
    return h;
}

/* The index of the layer called `name` among those built so far, or -1. */
static long find_layer(const creator *c, const char *name)
{
    for (size_t i = (size_t)name_hash(name) & (c->nnames - 1);; i = (i + 1) & (c->nnames - 1)) {
        uint32_t v = c->names[i];
        if (v == 0)
            return -1;
        if (strcmp(c->shell->layers[v - 1]->name, name) == 0)
            return (long)(v - 1);
    }
}

static void add_name(creator *c, size_t index)
{
    size_t i = (size_t)name_hash(c->shell->layers[index]->name) & (c->nnames - 1);
    while (c->names[i] != 0)
        i = (i + 1) & (c->nnames - 1);
    c->names[i] = (uint32_t)(index + 1);
}

/* ---- one layer ---------------------------------------------------------------------- */

typedef struct layer_desc {
    const char *name;
    const tli_layer_ops *ops;
    _Alignas(8) unsigned char cfg[TLI_CFG_BYTES];
    tl_activation act;
    int use_bias, trainable;
    bool have_act, have_bias, have_inputs, have_shape;
    size_t ninputs;
    uint32_t inputs[TLI_MAX_INPUTS];
    tl_shape out_shape;
    uint32_t seen; /* fields set, bit per field */
} layer_desc;

/* "layer I ('NAME', KIND)" for messages. */
#define WHO_FMT "layer %zu ('%s', %s)"

static tl_status set_field(const creator *c, layer_desc *d, size_t index, size_t fi, const tli_json_node *v,
                           const char *member)
{
    const tli_field *f = &d->ops->fields[fi];
    const char *kt = d->ops->type_name;
    if (d->seen & (1u << fi))
        return aerr(c, TL_EFORMAT, WHO_FMT ": setting '%s' is given twice ('%s')", index, d->name, kt, f->name, member);
    d->seen |= 1u << fi;
    uint32_t w = 0;
    switch (f->type) {
    case TLI_FIELD_U32:
        if (!json_u32(v, &w))
            return aerr(c, TL_EFORMAT, WHO_FMT ": '%s' is not an integer 0..4294967295", index, d->name, kt, member);
        break;
    case TLI_FIELD_BOOL:
        if (v->type != TLI_JSON_TRUE && v->type != TLI_JSON_FALSE)
            return aerr(c, TL_EFORMAT, WHO_FMT ": '%s' is a %s, not true or false", index, d->name, kt, member,
                        tli_json_type_str(v->type));
        w = v->type == TLI_JSON_TRUE;
        break;
    case TLI_FIELD_F32: {
        float x;
        if (!json_f32(v, &x))
            return aerr(c, TL_EFORMAT, WHO_FMT ": '%s' is not a finite number", index, d->name, kt, member);
        memcpy(&w, &x, sizeof w);
        break;
    }
    case TLI_FIELD_ENUM:
        if (f->names) {
            if (v->type != TLI_JSON_STRING)
                return aerr(c, TL_EFORMAT, WHO_FMT ": '%s' is a %s, not a string", index, d->name, kt, member,
                            tli_json_type_str(v->type));
            for (w = 0; w <= f->max && strcmp(f->names[w], v->str) != 0; w++)
                ;
            if (w > f->max)
                return unknown(c, WHO_FMT ": '%s' is \"%.64s\"", index, d->name, kt, member, v->str);
        } else if (!json_u32(v, &w) || w > f->max) {
            return unknown(c, WHO_FMT ": '%s' is not one of 0..%u", index, d->name, kt, member, f->max);
        }
        break;
    }
    tli_field_set(d->cfg, f, w);
    return TL_OK;
}

/* Inputs: names of earlier layers, null for the model's input. */
static tl_status read_inputs(const creator *c, layer_desc *d, size_t index, const tli_json_node *v)
{
    const tli_json *j = c->j;
    const char *kt = d->ops->type_name;
    if (v->type != TLI_JSON_ARRAY || v->count == 0 || v->count > TLI_MAX_INPUTS)
        return aerr(c, TL_EFORMAT, WHO_FMT ": 'inputs' is not an array of 1..%d names", index, d->name, kt,
                    TLI_MAX_INPUTS);
    d->ninputs = v->count;
    uint32_t k = v->child;
    for (uint32_t i = 0; i < v->count; i++, k = j->nodes[k].next) {
        const tli_json_node *in = &j->nodes[k];
        if (in->type == TLI_JSON_NULL) {
            d->inputs[i] = TLI_INPUT_MODEL;
            continue;
        }
        if (in->type != TLI_JSON_STRING)
            return aerr(c, TL_EFORMAT, WHO_FMT ": input %u is a %s, not a layer's name or null", index, d->name, kt,
                        i, tli_json_type_str(in->type));
        long at = find_layer(c, in->str);
        if (at < 0)
            return aerr(c, TL_EFORMAT, WHO_FMT ": input %u names '%.64s', which is not a layer before it", index,
                        d->name, kt, i, in->str);
        d->inputs[i] = (uint32_t)at;
    }
    d->have_inputs = true;
    return TL_OK;
}

static tl_status read_member(const creator *c, layer_desc *d, size_t index, const tli_json_node *v)
{
    const char *key = v->key, *kt = d->ops->type_name;
    if (strcmp(key, "name") == 0 || strcmp(key, "kind") == 0)
        return TL_OK; /* read first */
    if (strcmp(key, "inputs") == 0)
        return read_inputs(c, d, index, v);
    if (strcmp(key, "output_shape") == 0) {
        if (!json_shape(c->j, v, &d->out_shape, TL_MAX_RANK))
            return aerr(c, TL_EFORMAT, WHO_FMT ": 'output_shape' is not an array of 1..%d positive integers", index,
                        d->name, kt, TL_MAX_RANK);
        d->have_shape = true;
        return TL_OK;
    }
    if (strcmp(key, "trainable") == 0 || (strcmp(key, "use_bias") == 0 && d->ops->has_bias)) {
        if (v->type != TLI_JSON_TRUE && v->type != TLI_JSON_FALSE)
            return aerr(c, TL_EFORMAT, WHO_FMT ": '%s' is a %s, not true or false", index, d->name, kt, key,
                        tli_json_type_str(v->type));
        if (key[0] == 't') {
            d->trainable = v->type == TLI_JSON_TRUE;
        } else {
            d->use_bias = v->type == TLI_JSON_TRUE;
            d->have_bias = true;
        }
        return TL_OK;
    }
    if (strcmp(key, "activation") == 0 && d->ops->has_activation) {
        if (v->type != TLI_JSON_STRING)
            return aerr(c, TL_EFORMAT, WHO_FMT ": 'activation' is a %s, not a string", index, d->name, kt,
                        tli_json_type_str(v->type));
        int a;
        for (a = 0; a <= (int)TL_ACT_HARD_SIGMOID && strcmp(tl_activation_str((tl_activation)a), v->str) != 0; a++)
            ;
        if (a > (int)TL_ACT_HARD_SIGMOID)
            return unknown(c, WHO_FMT ": activation \"%.64s\"", index, d->name, kt, v->str);
        if (c->v1_0 && a > (int)TL_ACT_TANH)
            return aerr(c, TL_EFORMAT, WHO_FMT ": activation '%s' did not exist in libtl 1.0", index, d->name, kt,
                        v->str);
        d->act = (tl_activation)a;
        d->have_act = true;
        return TL_OK;
    }
    int fi = field_index(d->ops, key);
    if (fi >= 0)
        return set_field(c, d, index, (size_t)fi, v, key);
    if (c->v1_0)
        for (size_t p = 0; p < sizeof pairs / sizeof *pairs; p++) {
            if (strcmp(key, pairs[p].member) != 0)
                continue;
            int h = field_index(d->ops, pairs[p].h), w = field_index(d->ops, pairs[p].w);
            if (h < 0 || w < 0)
                break;
            if (v->type != TLI_JSON_ARRAY || v->count != 2)
                return aerr(c, TL_EFORMAT, WHO_FMT ": '%s' is not an array [h, w]", index, d->name, kt, key);
            const tli_json_node *vh = &c->j->nodes[v->child];
            tl_status st = set_field(c, d, index, (size_t)h, vh, key);
            if (st == TL_OK)
                st = set_field(c, d, index, (size_t)w, &c->j->nodes[vh->next], key);
            return st;
        }
    return unknown(c, WHO_FMT ": a member '%.64s' for this kind", index, d->name, kt, key);
}

/* Read layer `index` of the description and build it on the shell. */
static tl_status read_layer(creator *c, size_t index, const tli_json_node *obj)
{
    const tli_json *j = c->j;
    char sa[64], sb[64];
    if (obj->type != TLI_JSON_OBJECT)
        return aerr(c, TL_EFORMAT, "layer %zu is a %s, not an object", index, tli_json_type_str(obj->type));
    layer_desc d;
    memset(&d, 0, sizeof d);
    const tli_json_node *name = tli_json_member(j, obj, "name"), *kind = tli_json_member(j, obj, "kind");
    if (name == NULL || name->type != TLI_JSON_STRING)
        return aerr(c, TL_EFORMAT, "layer %zu has no name (a string)", index);
    if (name->len == 0 || name->len > TL_MAX_NAME)
        return aerr(c, TL_EFORMAT, "layer %zu: a name of %zu bytes ('%.64s'), 1..%d expected", index, name->len,
                    name->str, TL_MAX_NAME);
    d.name = name->str;
    if (kind == NULL || kind->type != TLI_JSON_STRING)
        return aerr(c, TL_EFORMAT, "layer %zu ('%s') has no kind (a string)", index, d.name);
    d.ops = kind_by_name(kind->str);
    if (d.ops == NULL) {
        if (c->newer)
            return aerr(c, TL_EVERSION, "layer %zu ('%s') is a '%.64s' layer, a kind this libtl (%s) does not know; "
                        "the file was written by libtl %s", index, d.name, kind->str, TL_VERSION_STRING, c->version);
        return aerr(c, TL_EFORMAT, "layer %zu ('%s'): unknown kind '%.64s'", index, d.name, kind->str);
    }
    /* libtl 1.0 had conv2d, maxpool2d, flatten and dense (kinds 1..4). */
    if (c->v1_0 && d.ops->kind > TL_LAYER_DENSE)
        return aerr(c, TL_EFORMAT, "layer %zu ('%s'): kind '%s' did not exist in libtl 1.0", index, d.name,
                    d.ops->type_name);
    tli_cfg_defaults(d.ops, d.cfg);
    d.trainable = 1;
    uint32_t k = obj->child;
    for (uint32_t i = 0; i < obj->count; i++, k = j->nodes[k].next) {
        tl_status st = read_member(c, &d, index, &j->nodes[k]);
        if (st)
            return st;
    }
    const char *kt = d.ops->type_name;
    const char *lacks = !d.have_shape ? "output_shape"
                        : d.ops->has_activation && !d.have_act ? "activation"
                        : d.ops->has_bias && !d.have_bias ? "use_bias"
                        : !d.have_inputs && !c->v1_0 ? "inputs" : NULL;
    if (lacks)
        return aerr(c, TL_EFORMAT, WHO_FMT ": '%s' is missing", index, d.name, kt, lacks);
    char prefix[640];
    snprintf(prefix, sizeof prefix, "%s: %s: byte %zu: libtl.architecture: layer %zu", c->fn, c->path, c->at, index);
    tl_layer *l;
    /* No inputs (libtl 1.0): the layer before it, as the add functions do. */
    tl_status st = tli_model_append(&l, c->shell, d.ops, d.cfg, d.act, d.use_bias, d.have_inputs ? d.inputs : NULL,
                                    d.ninputs, d.name, prefix);
    if (st == TL_EINVAL || st == TL_ESHAPE) {
        /* The file's settings are at fault, not a caller's: a format error. */
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", tl_last_error());
        return tli_error(TL_EFORMAT, "%s", msg);
    }
    if (st)
        return st;
    l->trainable = d.trainable;
    if (!tli_shape_eq(&l->out_shape, &d.out_shape))
        return aerr(c, TL_EFORMAT, WHO_FMT ": the file says its output is %s, its settings and inputs give %s", index,
                    d.name, kt, tli_shape_str(&d.out_shape, sa, sizeof sa), tli_shape_str(&l->out_shape, sb, sizeof sb));
    add_name(c, index);
    return TL_OK;
}

/* ---- the description ---------------------------------------------------------------- */

/* "X.Y.Z" (Z and anything after it are not needed). */
static bool parse_version(const char *s, unsigned *major, unsigned *minor)
{
    unsigned v[2] = {0, 0};
    for (int i = 0; i < 2; i++) {
        if (*s < '0' || *s > '9')
            return false;
        for (; *s >= '0' && *s <= '9'; s++) {
            if (v[i] > 100000)
                return false;
            v[i] = v[i] * 10 + (unsigned)(*s - '0');
        }
        if (i == 0 && *s++ != '.')
            return false;
    }
    *major = v[0];
    *minor = v[1];
    return true;
}

/* Check the description's top level and build every layer on the shell. */
static tl_status read_description(creator *c)
{
    const tli_json *j = c->j;
    const tli_json_node *root = &j->nodes[0];
    if (root->type != TLI_JSON_OBJECT)
        return aerr(c, TL_EFORMAT, "the description is a JSON %s, not an object", tli_json_type_str(root->type));
    const tli_json_node *format = tli_json_member(j, root, "format"), *version = tli_json_member(j, root, "version");
    if (format == NULL || format->type != TLI_JSON_STRING || strcmp(format->str, "libtl") != 0)
        return aerr(c, TL_EFORMAT, "\"format\" is not \"libtl\"");
    if (version == NULL || version->type != TLI_JSON_STRING || !parse_version(version->str, &c->major, &c->minor))
        return aerr(c, TL_EFORMAT, "\"version\" is not a libtl version \"X.Y.Z\"");
    snprintf(c->version, sizeof c->version, "%.31s", version->str);
    if (c->major != TL_VERSION_MAJOR)
        return aerr(c, c->major > TL_VERSION_MAJOR ? TL_EVERSION : TL_EFORMAT,
                    "written by libtl %s; this libtl (%s) reads descriptions of libtl %d.x", c->version,
                    TL_VERSION_STRING, TL_VERSION_MAJOR);
    c->newer = c->minor > TL_VERSION_MINOR;
    c->v1_0 = c->minor == 0;
    const tli_json_node *input = NULL, *layers = NULL;
    uint32_t k = root->child;
    for (uint32_t i = 0; i < root->count; i++, k = j->nodes[k].next) {
        const tli_json_node *m = &j->nodes[k];
        if (strcmp(m->key, "input") == 0)
            input = m;
        else if (strcmp(m->key, "layers") == 0)
            layers = m;
        else if (strcmp(m->key, "format") != 0 && strcmp(m->key, "version") != 0)
            return unknown(c, "a member '%.64s' at the top level", m->key);
    }
    tl_shape in;
    if (input == NULL || !json_shape(j, input, &in, 3) || in.rank != 3)
        return aerr(c, TL_EFORMAT, "\"input\" is not an array [h, w, c] of positive integers");
    if (layers == NULL || layers->type != TLI_JSON_ARRAY)
        return aerr(c, TL_EFORMAT, "\"layers\" is not an array");
    if (layers->count > ARCH_MAX_LAYERS)
        return aerr(c, TL_ETOOBIG, "%u layers exceed the limit of %u", layers->count, ARCH_MAX_LAYERS);
    tl_status st = tl_model_create(&c->shell, in.dims[0], in.dims[1], in.dims[2], 0);
    if (st) {
        tli_error_prefix("%s: %s: byte %zu: libtl.architecture: the input", c->fn, c->path, c->at);
        return st == TL_EINVAL ? TL_EFORMAT : st;
    }
    c->shell->shell = true;
    for (c->nnames = 16; c->nnames < 2 * (size_t)layers->count; c->nnames *= 2)
        ;
    c->names = tli_calloc(c->nnames, sizeof *c->names);
    if (c->names == NULL)
        return tli_error(TL_ENOMEM, "%s: %s: out of memory for %u layer names", c->fn, c->path, layers->count);
    k = layers->child;
    for (uint32_t i = 0; i < layers->count; i++, k = j->nodes[k].next)
        if ((st = read_layer(c, i, &j->nodes[k])))
            return st;
    if (tli_model_check_graph(c->shell, NULL)) {
        char msg[600];
        snprintf(msg, sizeof msg, "%s", tl_last_error());
        return aerr(c, TL_EFORMAT, "%s", msg);
    }
    return TL_OK;
}

/* The metadata: the layout and the description's text. */
static tl_status read_metadata(creator *c, const tli_st_file *f, tl_tensor_layout *layout,
                               const tli_json_node **arch)
{
    const tli_json *j = &f->json;
    const tli_json_node *meta = tli_json_member(j, &j->nodes[0], "__metadata__");
    const tli_json_node *a = meta ? tli_json_member(j, meta, "libtl.architecture") : NULL;
    if (a == NULL)
        return tli_error(TL_EFORMAT, "%s: %s: the file has no \"libtl.architecture\" metadata: it carries weights only "
                         "(it was not written by libtl's tl_model_save_safetensors()). Build the model (the add "
                         "functions or the zoo) and load them with tl_model_load_safetensors()", c->fn, c->path);
    c->at = a->offset;
    const tli_json_node *lay = tli_json_member(j, meta, "libtl.layout");
    if (lay == NULL)
        return aerr(c, TL_EFORMAT, "the file has no \"libtl.layout\" metadata to say how its tensors are laid out");
    if (strcmp(lay->str, "keras") == 0)
        *layout = TL_LAYOUT_KERAS;
    else if (strcmp(lay->str, "pytorch") == 0)
        *layout = TL_LAYOUT_PYTORCH;
    else
        return tli_error(TL_EFORMAT, "%s: %s: byte %zu: libtl.layout \"%.64s\" is neither \"keras\" nor \"pytorch\"",
                         c->fn, c->path, lay->offset, lay->str);
    *arch = a;
    return TL_OK;
}

/* Every parameter comes from one tensor of a convertible dtype (strict
 * loading), so the tensors must hold at least as many values as the shell's
 * parameters: checked before the parameters are allocated. */
static tl_status check_sizes(const creator *c, const tli_st_file *f)
{
    uint64_t have = 0, need = 0;
    for (size_t i = 0; i < f->count; i++)
        if (f->tensors[i].kind != TLI_ST_OTHER)
            have += f->tensors[i].count;
    for (size_t i = 0; i < c->shell->nlayers; i++)
        for (size_t p = 0; p < c->shell->layers[i]->nparams; p++)
            need += c->shell->layers[i]->params[p].count;
    if (need > have)
        return aerr(c, TL_ENOTFOUND, "the layers have %llu parameter values, the file's tensors only %llu: tensors are "
                    "missing", (unsigned long long)need, (unsigned long long)have);
    return TL_OK;
}

/* The real model, from the checked shell: fails only for want of memory. */
static tl_status build_model(tl_model **out, const creator *c)
{
    const tl_model *s = c->shell;
    tl_model *m;
    tl_status st = tl_model_create(&m, s->input.dims[0], s->input.dims[1], s->input.dims[2], 0);
    if (st) {
        tli_error_prefix("%s: %s", c->fn, c->path);
        return st;
    }
    for (size_t i = 0; i < s->nlayers && st == TL_OK; i++) {
        const tl_layer *sl = s->layers[i];
        tl_layer *l;
        char prefix[600];
        snprintf(prefix, sizeof prefix, "%s: %s: layer %zu ('%s')", c->fn, c->path, i, sl->name);
        st = tli_model_append(&l, m, sl->ops, sl->cfg, sl->act, sl->use_bias, sl->inputs, sl->ninputs, sl->name,
                              prefix);
        if (st == TL_OK)
            l->trainable = sl->trainable;
    }
    if (st) {
        tl_model_free(m);
        return st == TL_EINVAL || st == TL_ESHAPE ? TL_EFORMAT : st;
    }
    *out = m;
    return TL_OK;
}

tl_status tl_model_create_from_safetensors(tl_model **out, const char *path, const tl_safetensors_options *opts)
{
    const char *fn = "tl_model_create_from_safetensors";
    if (out)
        *out = NULL;
    if (out == NULL || path == NULL)
        return tli_error(TL_EINVAL, "%s: %s is NULL", fn, out ? "path" : "out");
    tl_safetensors_options o;
    tl_status st = tli_st_options(&o, opts, TL_LAYOUT_KERAS, fn);
    if (st)
        return st;
    if (o.policy != TL_TRANSFER_STRICT)
        return tli_error(TL_EINVAL, "%s: policy must be TL_TRANSFER_STRICT: every parameter of the model it creates "
                         "comes from the file", fn);
    tli_st_file f;
    if ((st = tli_st_open(&f, path, fn)))
        return st;
    creator c;
    memset(&c, 0, sizeof c);
    c.fn = fn;
    c.path = path;
    tli_json arch;
    memset(&arch, 0, sizeof arch);
    c.j = &arch;
    tl_tensor_layout layout = TL_LAYOUT_KERAS;
    const tli_json_node *text = NULL;
    tl_model *m = NULL;
    if ((st = read_metadata(&c, &f, &layout, &text)))
        goto done;
    tli_json_limits lim = {ARCH_MAX_DEPTH, ARCH_MAX_STRING, ARCH_MAX_NODES};
    if ((st = tli_json_parse(&arch, text->str, text->len, &lim, 0))) {
        tli_error_prefix("%s: %s: byte %zu: libtl.architecture (in the decoded text)", fn, path, c.at);
        goto done;
    }
    if ((st = read_description(&c)) || (st = check_sizes(&c, &f)))
        goto done;
    /* The shell holds what is needed now; the file is opened again to load. */
    tli_json_free(&arch);
    tli_st_close(&f);
    tli_free(c.names);
    c.names = NULL;
    if ((st = build_model(&m, &c)))
        goto done;
    tl_model_free(c.shell);
    c.shell = NULL;
    o.policy = TL_TRANSFER_STRICT;
    if ((st = tl_model_load_safetensors(NULL, m, path, layout, &o))) {
        /* The loader's words, less what is about its report and a model
         * that are not handed out here. */
        static const char *const tails[] = {"; the model was not changed", " (and more: see the report)"};
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", tl_last_error());
        for (size_t t = 0; t < sizeof tails / sizeof *tails; t++) {
            size_t len = strlen(msg), tl = strlen(tails[t]);
            if (len >= tl && strcmp(msg + len - tl, tails[t]) == 0)
                msg[len - tl] = '\0';
        }
        tli_error(st, "%s: %s", fn, msg);
        tl_model_free(m);
        m = NULL;
    }
done:
    tli_json_free(&arch);
    tli_st_close(&f);
    tli_free(c.names);
    tl_model_free(c.shell);
    *out = m;
    return st;
}
