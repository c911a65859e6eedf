/* layer.c - what every layer kind shares: creation, parameters, getters. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../rng.h"
#include "layer.h"

const tli_layer_ops *tli_layer_ops_for(tl_layer_kind kind)
{
    switch (kind) {
    case TL_LAYER_CONV2D: return &tli_conv2d_ops;
    case TL_LAYER_MAXPOOL2D: return &tli_maxpool2d_ops;
    case TL_LAYER_FLATTEN: return &tli_flatten_ops;
    case TL_LAYER_DENSE: return &tli_dense_ops;
    }
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
    tli_free(l);
}

tl_status tli_layer_new(tl_layer **out, const tli_layer_ops *ops, const void *cfg, tl_activation act,
                        int use_bias, const tl_shape *in_shape, const char *name, size_t index)
{
    *out = NULL;
    tl_layer *l = tli_calloc(1, sizeof *l);
    if (l == NULL)
        return tli_error(TL_ENOMEM, "out of memory allocating a %s layer", ops->type_name);
    l->ops = ops;
    l->act = act;
    l->use_bias = use_bias ? 1 : 0;
    l->trainable = 1;
    l->lr_scale = 1.0f;
    l->in_shape = *in_shape;
    l->in_size = tl_shape_count(in_shape);
    l->index = index;
    snprintf(l->name, sizeof l->name, "%s", name);
    if (cfg) {
        switch (ops->kind) {
        case TL_LAYER_CONV2D: l->cfg.conv = *(const tli_conv_cfg *)cfg; break;
        case TL_LAYER_MAXPOOL2D: l->cfg.pool = *(const tli_pool_cfg *)cfg; break;
        case TL_LAYER_DENSE: l->cfg.dense = *(const tli_dense_cfg *)cfg; break;
        case TL_LAYER_FLATTEN: break;
        }
    }
    tl_status st = ops->build(l);
    if (st != TL_OK) {
        tli_free(l);
        return st;
    }
    for (size_t i = 0; i < l->nparams; i++) {
        tli_param *p = &l->params[i];
        size_t bytes;
        /* Read from p before freeing the layer that holds it. */
        const char *pname = p->name;
        const size_t count = p->count;
        if (!tli_mul_ok(count, sizeof(float), &bytes)) {
            tli_layer_free(l);
            return tli_error(TL_ETOOBIG, "layer '%s' (%s, index %zu): parameter '%s' is too large", name,
                             ops->type_name, index, pname);
        }
        p->value = tli_malloc_aligned(bytes);
        p->grad = tli_malloc_aligned(bytes);
        if (p->value == NULL || p->grad == NULL) {
            tli_layer_free(l);
            return tli_error(TL_ENOMEM, "layer '%s' (%s, index %zu): out of memory allocating %zu parameters",
                             name, ops->type_name, index, count);
        }
        memset(p->value, 0, bytes);
        memset(p->grad, 0, bytes);
    }
    *out = l;
    return TL_OK;
}

void tli_layer_init_params(tl_layer *l, uint64_t seed, uint64_t stream)
{
    tli_rng rng;
    tli_rng_seed(&rng, seed, stream);
    for (size_t i = 0; i < l->nparams; i++) {
        tli_param *p = &l->params[i];
        if (strcmp(p->name, "bias") == 0) {
            memset(p->value, 0, sizeof(float) * p->count);
            continue;
        }
        /* Glorot-uniform as Keras: fans of a kernel (..., in, out) multiply
         * the leading (receptive field) dims into both. */
        const tl_shape *s = &p->shape;
        double receptive = 1.0;
        for (uint32_t d = 0; d + 2 < s->rank; d++)
            receptive *= s->dims[d];
        double fan_in = receptive * s->dims[s->rank - 2];
        double fan_out = receptive * s->dims[s->rank - 1];
        float limit = (float)sqrt(6.0 / (fan_in + fan_out));
        for (size_t j = 0; j < p->count; j++)
            p->value[j] = (2.0f * tli_rng_uniform(&rng) - 1.0f) * limit;
    }
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
    memcpy(layer->params[index].value, values, sizeof(float) * count);
    return TL_OK;
}

tl_status tl_layer_set_trainable(tl_layer *layer, int trainable)
{
    if (layer == NULL)
        return tli_error(TL_EINVAL, "tl_layer_set_trainable: layer is NULL");
    layer->trainable = trainable ? 1 : 0;
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

float tl_layer_lr_scale(const tl_layer *layer)
{
    return layer ? layer->lr_scale : 0.0f;
}
