/* layer.c - what every layer kind shares: the table of kinds, creation,
 * tensors, settings fields, getters. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../rng.h"
#include "layer.h"

extern const tli_layer_ops tli_conv2d_ops;
extern const tli_layer_ops tli_maxpool2d_ops;
extern const tli_layer_ops tli_flatten_ops;
extern const tli_layer_ops tli_dense_ops;
extern const tli_layer_ops tli_add_ops;
extern const tli_layer_ops tli_concatenate_ops;
extern const tli_layer_ops tli_global_avgpool2d_ops;
extern const tli_layer_ops tli_avgpool2d_ops;
extern const tli_layer_ops tli_batchnorm_ops;
extern const tli_layer_ops tli_dropout_ops;
extern const tli_layer_ops tli_activation_ops;
extern const tli_layer_ops tli_normalization_ops;

/* Every kind, one line each. */
static const tli_layer_ops *const kinds[] = {
    &tli_conv2d_ops,
    &tli_maxpool2d_ops,
    &tli_flatten_ops,
    &tli_dense_ops,
    &tli_add_ops,
    &tli_concatenate_ops,
    &tli_global_avgpool2d_ops,
    &tli_avgpool2d_ops,
    &tli_batchnorm_ops,
    &tli_dropout_ops,
    &tli_activation_ops,
    &tli_normalization_ops,
};

const tli_layer_ops *tli_layer_ops_for(tl_layer_kind kind)
{
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (kinds[i]->kind == kind)
            return kinds[i];
    return NULL;
}
const char *tl_layer_kind_str(tl_layer_kind kind)
{
    const tli_layer_ops *ops = tli_layer_ops_for(kind);
    return ops ? ops->type_name : "unknown";
}

const char *tl_activation_str(tl_activation act)
{
    switch (act) {
    case TL_ACT_LINEAR: return "linear";
    case TL_ACT_RELU: return "relu";
    case TL_ACT_SOFTMAX: return "softmax";
    case TL_ACT_SIGMOID: return "sigmoid";
    case TL_ACT_TANH: return "tanh";
    case TL_ACT_RELU6: return "relu6";
    case TL_ACT_LEAKY_RELU: return "leaky_relu";
    case TL_ACT_SILU: return "silu";
    case TL_ACT_HARD_SWISH: return "hard_swish";
    case TL_ACT_HARD_SIGMOID: return "hard_sigmoid";
    }
    return "unknown";
}

size_t tl_shape_count(const tl_shape *s)
{
    if (s == NULL)
        return 0;
    size_t n = 1;
    for (uint32_t i = 0; i < s->rank && i < TL_MAX_RANK; i++)
        n *= s->dims[i];
    return n;
}

tl_shape tli_shape3(uint32_t h, uint32_t w, uint32_t c)
{
    tl_shape s = {3, {h, w, c, 0}};
    return s;
}

tl_shape tli_shape1(uint32_t n)
{
    tl_shape s = {1, {n, 0, 0, 0}};
    return s;
}

bool tli_shape_eq(const tl_shape *a, const tl_shape *b)
{
    if (a->rank != b->rank)
        return false;
    for (uint32_t i = 0; i < a->rank; i++)
        if (a->dims[i] != b->dims[i])
            return false;
    return true;
}

const char *tli_shape_str(const tl_shape *s, char *buf, size_t cap)
{
    size_t len = 0;
    len += (size_t)snprintf(buf, cap, "(");
    for (uint32_t i = 0; i < s->rank && i < TL_MAX_RANK && len < cap; i++)
        len += (size_t)snprintf(buf + len, cap - len, i ? ", %u" : "%u", s->dims[i]);
    if (len < cap)
        snprintf(buf + len, cap - len, s->rank == 1 ? ",)" : ")");
    return buf;
}

bool tli_window(uint32_t n, uint32_t k, uint32_t s, tl_padding pad, uint32_t *out_len, uint32_t *pad_before)
{
    if (pad == TL_PAD_SAME) {
        uint32_t out = n / s + (n % s != 0);
        uint64_t span = (uint64_t)(out - 1) * s + k;
        *out_len = out;
        *pad_before = span > n ? (uint32_t)((span - n) / 2) : 0;
        return true;
    }
    if (k > n)
        return false;
    *out_len = (n - k) / s + 1;
    *pad_before = 0;
    return true;
}

void tli_layer_free_state(tl_layer *l)
{
    for (size_t i = 0; i < l->nparams; i++)
        for (int k = 0; k < 2; k++) {
            tli_free_aligned(l->params[i].state[k]);
            l->params[i].state[k] = NULL;
        }
}

void tli_layer_free(tl_layer *l)
{
    if (l == NULL)
        return;
    tli_layer_free_state(l);
    for (size_t i = 0; i < l->nparams; i++) {
        tli_free_aligned(l->params[i].value);
        tli_free_aligned(l->params[i].grad);
    }
    tli_free_aligned(l->cache);
    tli_free(l);
}

bool tli_layer_learns(const tl_layer *l)
{
    if (!l->trainable)
        return false;
    for (size_t i = 0; i < l->nparams; i++)
        if (l->params[i].role == TLI_ROLE_PARAM)
            return true;
    return false;
}

size_t tli_layer_count(const tl_layer *l, tli_role role)
{
    size_t n = 0;
    for (size_t i = 0; i < l->nparams; i++)
        if (l->params[i].role == role)
            n += l->params[i].count;
    return n;
}

/* Fans of a kernel (..., in, out) as Keras computes them: the leading
 * (receptive field) dims multiply into both. For libtl's layouts these are
 * also PyTorch's fans (conv2d: kh * kw * in / groups and kh * kw * filters). */
static void fans(const tl_shape *s, double *fan_in, double *fan_out)
{
    if (s->rank < 2) {
        *fan_in = *fan_out = s->rank ? s->dims[0] : 1;
        return;
    }
    double receptive = 1.0;
    for (uint32_t d = 0; d + 2 < s->rank; d++)
        receptive *= s->dims[d];
    *fan_in = receptive * s->dims[s->rank - 2];
    *fan_out = receptive * s->dims[s->rank - 1];
}

void tli_tensor_set(tl_layer *l, size_t i, const char *name, const char *torch_name, tli_role role, tli_init init,
                    tli_torch_layout torch_layout, tl_shape shape)
{
    tli_param *p = &l->params[i];
    p->name = name;
    p->torch_name = torch_name;
    p->role = role;
    p->init = init;
    p->torch_layout = torch_layout;
    p->shape = shape;
    p->count = tl_shape_count(&shape);
    p->preset = false;
    fans(&shape, &p->fan_in, &p->fan_out);
    if (i >= l->nparams)
        l->nparams = i + 1;
}

void tli_tensor_set_preset(tl_layer *l, size_t i)
{
    l->params[i].preset = true;
}

void tli_tensor_set_fans(tl_layer *l, size_t i, size_t from)
{
    l->params[i].fan_in = l->params[from].fan_in;
    l->params[i].fan_out = l->params[from].fan_out;
}

const char *const tli_initializer_names[] = {
    "default", "zeros", "ones", "glorot_uniform", "glorot_truncated_normal", "he_uniform", "he_truncated_normal",
    "he_normal_fan_out", "uniform_inv_sqrt_fan_in", "normal_stddev_0.01",
};
_Static_assert(sizeof tli_initializer_names / sizeof tli_initializer_names[0] == TLI_INIT_MAX + 1,
               "a name for every tl_initializer");

tl_status tli_check_act_alpha(tl_layer *l, float *alpha)
{
    if (!isfinite(*alpha))
        return tli_error(TL_EINVAL, TLI_LFMT ": activation_alpha %g must be finite", TLI_LARG(l), (double)*alpha);
    if (l->act != TL_ACT_LEAKY_RELU)
        *alpha = TLI_ACT_ALPHA_DEFAULT;
    return TL_OK;
}

tl_status tli_check_initializer(const tl_layer *l, const char *option, uint32_t word)
{
    if (word > TLI_INIT_MAX)
        return tli_error(TL_EINVAL, TLI_LFMT ": unknown %s %u (tl_initializer: 0 to %d)", TLI_LARG(l), option, word,
                         TLI_INIT_MAX);
    return TL_OK;
}

/* The checks every kind shares, before its own build. */
static tl_status check_common(const tl_layer *l)
{
    const tli_layer_ops *ops = l->ops;
    if (l->ninputs < ops->min_inputs || l->ninputs > ops->max_inputs) {
        if (ops->min_inputs == ops->max_inputs)
            return tli_error(TL_EINVAL, TLI_LFMT " takes %zu input%s, not %zu", TLI_LARG(l), ops->min_inputs,
                             ops->min_inputs == 1 ? "" : "s", l->ninputs);
        return tli_error(TL_EINVAL, TLI_LFMT " takes %zu to %zu inputs, not %zu", TLI_LARG(l), ops->min_inputs,
                         ops->max_inputs, l->ninputs);
    }
    if (!ops->has_activation && l->act != TL_ACT_LINEAR)
        return tli_error(TL_EINVAL, TLI_LFMT " has no activation of its own (%s given)", TLI_LARG(l),
                         tl_activation_str(l->act));
    if (!ops->has_bias && l->use_bias)
        return tli_error(TL_EINVAL, TLI_LFMT " has no bias", TLI_LARG(l));
    return TL_OK;
}

tl_status tli_layer_new(tl_layer **out, const tli_layer_spec *spec, const char *name, size_t index, bool shell)
{
    const tli_layer_ops *ops = spec->ops;
    *out = NULL;
    tl_layer *l = tli_calloc(1, sizeof *l);
    if (l == NULL)
        return tli_error(TL_ENOMEM, "out of memory allocating a %s layer", ops->type_name);
    l->ops = ops;
    l->act = spec->act;
    l->use_bias = spec->use_bias ? 1 : 0;
    l->trainable = 1;
    l->lr_scale = 1.0f;
    l->index = index;
    l->bias_index = -1;
    l->gslot = -1;
    snprintf(l->name, sizeof l->name, "%s", name);
    l->ninputs = spec->ninputs;
    if (l->ninputs > TLI_MAX_INPUTS) {
        tli_free(l);
        return tli_error(TL_EINVAL, "layer '%s' (%s, index %zu): %zu inputs are more than the limit of %d", name,
                         ops->type_name, index, spec->ninputs, TLI_MAX_INPUTS);
    }
    for (size_t k = 0; k < l->ninputs; k++) {
        l->inputs[k] = spec->inputs[k];
        l->in_shapes[k] = spec->in_shapes[k];
    }
    if (l->ninputs > 0) {
        l->in_shape = l->in_shapes[0];
        l->in_size = tl_shape_count(&l->in_shape);
    }
    /* A kind's settings struct must fit the space every layer has for it. */
    if (ops->cfg_size > TLI_CFG_BYTES) {
        tli_free(l);
        return tli_error(TL_EINVAL, "the %s kind's settings do not fit a layer", ops->type_name);
    }
    if (spec->cfg)
        memcpy(l->cfg, spec->cfg, ops->cfg_size);
    else
        tli_cfg_defaults(ops, l->cfg);
    tl_status st = check_common(l);
    if (st == TL_OK)
        st = ops->build(l);
    if (st != TL_OK) {
        tli_free(l);
        return st;
    }
    for (size_t i = 0; i < l->nparams && !shell; i++) {
        tli_param *p = &l->params[i];
        size_t bytes;
        /* Read from p before freeing the layer that holds it. */
        const char *pname = p->name;
        const size_t count = p->count;
        if (count > TLI_MAX_ELEMS || !tli_mul_ok(count, sizeof(float), &bytes)) {
            tli_layer_free(l);
            return tli_error(TL_ETOOBIG, "layer '%s' (%s, index %zu): tensor '%s' is too large", name,
                             ops->type_name, index, pname);
        }
        p->value = tli_malloc_aligned(bytes);
        if (p->role == TLI_ROLE_PARAM)
            p->grad = tli_malloc_aligned(bytes);
        if (p->value == NULL || (p->role == TLI_ROLE_PARAM && p->grad == NULL)) {
            tli_layer_free(l);
            return tli_error(TL_ENOMEM, "layer '%s' (%s, index %zu): out of memory allocating %zu values", name,
                             ops->type_name, index, count);
        }
        memset(p->value, 0, bytes);
        if (p->grad)
            memset(p->grad, 0, bytes);
    }
    *out = l;
    return TL_OK;
}

/* A uniform double in (0, 1] with 53 random bits, for the normals (no
 * log(0), and tails to sqrt(-2 ln 2^-53) = 8.6 standard deviations). */
static double uniform_open0(tli_rng *rng)
{
    return (double)((tli_rng_next(rng) >> 11) + 1) * 0x1p-53;
}

/* A standard normal by Box-Muller (the cosine half). */
static double std_normal(tli_rng *rng)
{
    double u1 = uniform_open0(rng), u2 = uniform_open0(rng);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* Keras' truncated_normal with standard deviation sd: a normal of stddev
 * sd / 0.8796..., the stddev of a unit normal cut at +-2, values at 2 of
 * those or beyond redrawn. */
static void draw_truncated_normal(tli_rng *rng, float *v, size_t n, double sd)
{
    const double s = sd / 0.87962566103423978;
    for (size_t j = 0; j < n; j++) {
        double z;
        do
            z = std_normal(rng);
        while (fabs(z) >= 2.0);
        v[j] = (float)(z * s);
    }
}

static void draw_normal(tli_rng *rng, float *v, size_t n, double sd)
{
    for (size_t j = 0; j < n; j++)
        v[j] = (float)(std_normal(rng) * sd);
}

/* U(-limit, limit) from 24-bit floats: libtl 1.0's Glorot draw, bit for bit. */
static void draw_uniform(tli_rng *rng, float *v, size_t n, float limit)
{
    for (size_t j = 0; j < n; j++)
        v[j] = (2.0f * tli_rng_uniform(rng) - 1.0f) * limit;
}

void tli_layer_init_params(tl_layer *l, uint64_t seed, uint64_t stream, bool keep_preset)
{
    tli_rng rng;
    tli_rng_seed(&rng, seed, stream);
    tli_layer_touch(l);
    for (size_t i = 0; i < l->nparams; i++) {
        tli_param *p = &l->params[i];
        if (p->value == NULL || (keep_preset && p->preset))
            continue;
        const double fan_in = p->fan_in, fan_out = p->fan_out;
        switch (p->init) {
        case TLI_INIT_ZEROS: memset(p->value, 0, sizeof(float) * p->count); break;
        case TLI_INIT_ONES:
            for (size_t j = 0; j < p->count; j++)
                p->value[j] = 1.0f;
            break;
        case TLI_INIT_GLOROT_UNIFORM:
            draw_uniform(&rng, p->value, p->count, (float)sqrt(6.0 / (fan_in + fan_out)));
            break;
        case TLI_INIT_HE_UNIFORM: draw_uniform(&rng, p->value, p->count, (float)sqrt(6.0 / fan_in)); break;
        case TLI_INIT_UNIFORM_INV_SQRT_FAN_IN:
            draw_uniform(&rng, p->value, p->count, (float)(1.0 / sqrt(fan_in)));
            break;
        case TLI_INIT_GLOROT_TRUNCATED_NORMAL:
            draw_truncated_normal(&rng, p->value, p->count, sqrt(2.0 / (fan_in + fan_out)));
            break;
        case TLI_INIT_HE_TRUNCATED_NORMAL: draw_truncated_normal(&rng, p->value, p->count, sqrt(2.0 / fan_in)); break;
        case TLI_INIT_HE_NORMAL_FAN_OUT: draw_normal(&rng, p->value, p->count, sqrt(2.0 / fan_out)); break;
        case TLI_INIT_NORMAL_STDDEV_0_01: draw_normal(&rng, p->value, p->count, 0.01); break;
        }
    }
}

tl_status tli_layer_check_values(const tl_layer *l)
{
    if (l->ops->check_values == NULL)
        return TL_OK;
    for (size_t i = 0; i < l->nparams; i++)
        if (l->params[i].value) {
            tl_status st = l->ops->check_values(l, i, l->params[i].value);
            if (st)
                return st;
        }
    return TL_OK;
}

/* ---- settings fields ---------------------------------------------------- */

const char *const tli_padding_names[] = {"valid", "same", "explicit"};

uint32_t tli_field_get(const void *cfg, const tli_field *f)
{
    uint32_t w;
    memcpy(&w, (const unsigned char *)cfg + f->offset, sizeof w);
    return w;
}

void tli_field_set(void *cfg, const tli_field *f, uint32_t word)
{
    memcpy((unsigned char *)cfg + f->offset, &word, sizeof word);
}

void tli_cfg_defaults(const tli_layer_ops *ops, void *cfg)
{
    memset(cfg, 0, TLI_CFG_BYTES);
    for (size_t i = 0; i < ops->nfields; i++)
        tli_field_set(cfg, &ops->fields[i], ops->fields[i].def);
}

size_t tli_cfg_describe(const tl_layer *l, char *buf, size_t cap, bool json)
{
    size_t len = 0;
    if (cap)
        buf[0] = '\0';
    /* An activation layer's activation is its l->act, not a field: the
     * text names it first (the JSON writer adds "activation" for every
     * kind that has one). */
    if (!json && l->ops->is_activation) {
        int n = snprintf(buf, cap, "activation=%s", tl_activation_str(l->act));
        len += n > 0 ? (size_t)n : 0;
    }
    for (size_t i = 0; i < l->ops->nfields; i++) {
        const tli_field *f = &l->ops->fields[i];
        uint32_t w = tli_field_get(l->cfg, f);
        char v[48];
        if (f->type == TLI_FIELD_F32) {
            float x;
            memcpy(&x, &w, sizeof x);
            tli_format_number(v, sizeof v, x, true);
        } else if (f->type == TLI_FIELD_BOOL && json) {
            snprintf(v, sizeof v, "%s", w ? "true" : "false");
        } else if (f->type == TLI_FIELD_ENUM && f->names && w <= f->max) {
            snprintf(v, sizeof v, json ? "\"%s\"" : "%s", f->names[w]);
        } else {
            snprintf(v, sizeof v, "%u", w);
        }
        int n;
        if (json)
            n = snprintf(len < cap ? buf + len : NULL, len < cap ? cap - len : 0, ",\"%s\":%s", f->name, v);
        else
            n = snprintf(len < cap ? buf + len : NULL, len < cap ? cap - len : 0, "%s%s=%s", len ? ", " : "",
                         f->name, v);
        len += n > 0 ? (size_t)n : 0;
    }
    return len;
}

/* ---- public getters ---------------------------------------------------- */

tl_layer_kind tl_layer_get_kind(const tl_layer *layer)
{
    return layer ? layer->ops->kind : (tl_layer_kind)0;
}

const char *tl_layer_name(const tl_layer *layer)
{
    return layer ? layer->name : "";
}

size_t tl_layer_index(const tl_layer *layer)
{
    return layer ? layer->index : 0;
}

tl_status tl_layer_input_shape(tl_shape *out, const tl_layer *layer)
{
    if (out == NULL || layer == NULL)
        return tli_error(TL_EINVAL, "tl_layer_input_shape: %s is NULL", out ? "layer" : "out");
    *out = layer->in_shape;
    return TL_OK;
}

tl_status tl_layer_output_shape(tl_shape *out, const tl_layer *layer)
{
    if (out == NULL || layer == NULL)
        return tli_error(TL_EINVAL, "tl_layer_output_shape: %s is NULL", out ? "layer" : "out");
    *out = layer->out_shape;
    return TL_OK;
}

tl_activation tl_layer_activation(const tl_layer *layer)
{
    return layer ? layer->act : TL_ACT_LINEAR;
}

size_t tl_layer_num_params(const tl_layer *layer)
{
    return layer ? layer->nparams : 0;
}

size_t tl_layer_param_count(const tl_layer *layer)
{
    size_t n = 0;
    if (layer)
        for (size_t i = 0; i < layer->nparams; i++)
            n += layer->params[i].count;
    return n;
}

static tl_status check_param(const char *fn, const tl_layer *layer, size_t index)
{
    if (layer == NULL)
        return tli_error(TL_EINVAL, "%s: layer is NULL", fn);
    if (index >= layer->nparams)
        return tli_error(TL_ERANGE, "%s: layer '%s' (%s, index %zu) has %zu parameter tensor%s, not index %zu", fn,
                         layer->name, layer->ops->type_name, layer->index, layer->nparams,
                         layer->nparams == 1 ? "" : "s", index);
    return TL_OK;
}

tl_status tl_layer_param_info(tl_param_info *out, const tl_layer *layer, size_t index)
{
    if (out == NULL)
        return tli_error(TL_EINVAL, "tl_layer_param_info: out is NULL");
    tl_status st = check_param("tl_layer_param_info", layer, index);
    if (st)
        return st;
    const tli_param *p = &layer->params[index];
    out->name = p->name;
    out->shape = p->shape;
    out->count = p->count;
    return TL_OK;
}

static tl_status check_count(const char *fn, const tl_layer *layer, size_t index, size_t count)
{
    const tli_param *p = &layer->params[index];
    if (count != p->count) {
        char sb[64];
        return tli_error(TL_ESHAPE, "%s: layer '%s' %s has shape %s = %zu values, but the buffer holds %zu", fn,
                         layer->name, p->name, tli_shape_str(&p->shape, sb, sizeof sb), p->count, count);
    }
    return TL_OK;
}

tl_status tl_layer_get_weights(float *out, size_t count, const tl_layer *layer, size_t index)
{
    tl_status st = check_param("tl_layer_get_weights", layer, index);
    if (st)
        return st;
    if (out == NULL)
        return tli_error(TL_EINVAL, "tl_layer_get_weights: out is NULL");
    if ((st = check_count("tl_layer_get_weights", layer, index, count)))
        return st;
    memcpy(out, layer->params[index].value, sizeof(float) * count);
    return TL_OK;
}

tl_status tl_layer_set_weights(tl_layer *layer, size_t index, const float *values, size_t count)
{
    tl_status st = check_param("tl_layer_set_weights", layer, index);
    if (st)
        return st;
    if (values == NULL)
        return tli_error(TL_EINVAL, "tl_layer_set_weights: values is NULL");
    if ((st = check_count("tl_layer_set_weights", layer, index, count)))
        return st;
    if (layer->ops->check_values && (st = layer->ops->check_values(layer, index, values))) {
        tli_error_prefix("tl_layer_set_weights");
        return st;
    }
    memcpy(layer->params[index].value, values, sizeof(float) * count);
    tli_layer_touch(layer);
    return TL_OK;
}

tl_status tl_layer_set_trainable(tl_layer *layer, int trainable)
{
    if (layer == NULL)
        return tli_error(TL_EINVAL, "tl_layer_set_trainable: layer is NULL");
    layer->trainable = trainable ? 1 : 0;
    tli_layer_touch(layer); /* batchnorm's pass mode follows it */
    return TL_OK;
}

int tl_layer_is_trainable(const tl_layer *layer)
{
    return layer ? layer->trainable : 0;
}

tl_status tl_layer_set_lr_scale(tl_layer *layer, float scale)
{
    if (layer == NULL)
        return tli_error(TL_EINVAL, "tl_layer_set_lr_scale: layer is NULL");
    if (!(scale >= 0.0f) || isinf(scale))
        return tli_error(TL_EINVAL, "tl_layer_set_lr_scale: layer '%s': scale %g must be finite and >= 0",
                         layer->name, (double)scale);
    layer->lr_scale = scale;
    return TL_OK;
}

tl_status tl_layer_flops(double *out_forward, double *out_input_grad, double *out_param_grad, const tl_layer *layer)
{
    if (out_forward == NULL || out_input_grad == NULL || out_param_grad == NULL || layer == NULL)
        return tli_error(TL_EINVAL, "tl_layer_flops: %s is NULL",
                         layer == NULL ? "layer" : out_forward == NULL ? "out_forward"
                                                 : out_input_grad == NULL ? "out_input_grad" : "out_param_grad");
    double f[3] = {0.0, 0.0, 0.0};
    if (layer->ops->flops)
        layer->ops->flops(layer, f);
    *out_forward = f[0];
    *out_input_grad = f[1];
    *out_param_grad = f[2];
    return TL_OK;
}

float tl_layer_lr_scale(const tl_layer *layer)
{
    return layer ? layer->lr_scale : 0.0f;
}
