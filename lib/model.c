/* model.c - a model's structure: creation, adding and removing layers,
 * names, look-up, parameter counts and initialisation. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "model.h"
#include "options.h"

tl_status tl_model_create(tl_model **out, uint32_t height, uint32_t width, uint32_t channels, uint64_t seed)
{
    if (out == NULL)
        return tli_error(TL_EINVAL, "tl_model_create: out is NULL");
    *out = NULL;
    if (height == 0 || width == 0 || channels == 0)
        return tli_error(TL_EINVAL, "tl_model_create: input shape (%u, %u, %u) has a zero dimension", height, width,
                         channels);
    uint64_t in_size = tli_mul_sat(tli_mul_sat(height, width), channels);
    if (in_size > TLI_MAX_ELEMS)
        return tli_error(TL_ETOOBIG, "tl_model_create: input shape (%u, %u, %u) exceeds 2^31 values", height, width,
                         channels);
    tl_model *m = tli_calloc(1, sizeof *m);
    if (m == NULL)
        return tli_error(TL_ENOMEM, "tl_model_create: out of memory");
    m->input = tli_shape3(height, width, channels);
    m->in_size = (size_t)in_size;
    m->seed = seed;
    m->threads_req = 0;
    m->threads = tli_cpu_count();
    tli_rng_seed(&m->train_rng, seed, TLI_STREAM_TRAIN);
    *out = m;
    return TL_OK;
}

void tl_model_free(tl_model *m)
{
    if (m == NULL)
        return;
    tli_workspace_free(m);
    for (size_t i = 0; i < m->nlayers; i++)
        tli_layer_free(m->layers[i]);
    tli_free(m->layers);
    if (m->opt) {
        m->opt->owned = false;
        tl_optimizer_free(m->opt);
    }
    tli_free(m);
}

uint64_t tl_model_seed(const tl_model *m)
{
    return m ? m->seed : 0;
}

size_t tli_model_out_size(const tl_model *m)
{
    return m->nlayers ? m->layers[m->nlayers - 1]->out_size : m->in_size;
}

/* ---- names ------------------------------------------------------------- */

static bool name_taken(const tl_model *m, const char *name, const tl_layer *except)
{
    for (size_t i = 0; i < m->nlayers; i++)
        if (m->layers[i] != except && strcmp(m->layers[i]->name, name) == 0)
            return true;
    return false;
}

static tl_status check_name(const tl_model *m, const char *name, const tl_layer *except, const char *fn)
{
    size_t len = strlen(name);
    if (len == 0)
        return tli_error(TL_EINVAL, "%s: a layer name must not be empty", fn);
    if (len > TL_MAX_NAME)
        return tli_error(TL_EINVAL, "%s: layer name '%.20s...' is %zu bytes, longer than TL_MAX_NAME (%d)", fn, name,
                         len, TL_MAX_NAME);
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)name[i] < 0x20 || name[i] == '"' || name[i] == '\\')
            return tli_error(TL_EINVAL, "%s: layer name contains a control character, quote or backslash at byte %zu",
                             fn, i);
    if (name_taken(m, name, except))
        return tli_error(TL_EINVAL, "%s: the model already has a layer named '%s'", fn, name);
    return TL_OK;
}

/* Keras' automatic names: the first conv2d is "conv2d", the next
 * "conv2d_1", ...; a number already used is skipped. */
static void auto_name(const tl_model *m, const tli_layer_ops *ops, char *buf, size_t cap)
{
    size_t same_kind = 0;
    for (size_t i = 0; i < m->nlayers; i++)
        if (m->layers[i]->ops == ops)
            same_kind++;
    for (size_t k = same_kind;; k++) {
        if (k == 0)
            snprintf(buf, cap, "%s", ops->auto_name);
        else
            snprintf(buf, cap, "%s_%zu", ops->auto_name, k);
        if (!name_taken(m, buf, NULL))
            return;
    }
}

tl_status tl_layer_set_name(tl_layer *layer, const char *name)
{
    if (layer == NULL || name == NULL)
        return tli_error(TL_EINVAL, "tl_layer_set_name: %s is NULL", layer ? "name" : "layer");
    tl_status st = check_name(layer->model, name, layer, "tl_layer_set_name");
    if (st)
        return st;
    snprintf(layer->name, sizeof layer->name, "%s", name);
    return TL_OK;
}

/* ---- adding layers ----------------------------------------------------- */

static bool act_valid(tl_activation a)
{
    return a == TL_ACT_LINEAR || a == TL_ACT_RELU || a == TL_ACT_SOFTMAX || a == TL_ACT_SIGMOID ||
           a == TL_ACT_TANH;
}

tl_status tli_model_append(tl_layer **out, tl_model *m, const tli_layer_ops *ops, const void *cfg,
                           tl_activation act, int use_bias, const char *name, const char *fn)
{
    if (!act_valid(act))
        return tli_error(TL_EINVAL, "%s: unknown activation %d", fn, (int)act);
    char autoname[TL_MAX_NAME + 1];
    if (name) {
        tl_status st = check_name(m, name, NULL, fn);
        if (st)
            return st;
    } else {
        auto_name(m, ops, autoname, sizeof autoname);
        name = autoname;
    }
    if (m->nlayers == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 8;
        tl_layer **grown = tli_realloc(m->layers, cap * sizeof *grown);
        if (grown == NULL)
            return tli_error(TL_ENOMEM, "%s: out of memory growing the layer list", fn);
        m->layers = grown;
        m->cap = cap;
    }
    const tl_shape *in = m->nlayers ? &m->layers[m->nlayers - 1]->out_shape : &m->input;
    tl_layer *l;
    tl_status st = tli_layer_new(&l, ops, cfg, act, use_bias, in, name, m->nlayers);
    if (st) {
        tli_error_prefix("%s", fn);
        return st;
    }
    l->model = m;
    tli_layer_init_params(l, m->seed, l->index);
    m->layers[m->nlayers++] = l;
    tli_workspace_free(m);
    if (out)
        *out = l;
    return TL_OK;
}

TLI_OPTIONS_TYPE_V1(conv2d_type, tl_conv2d_options, TL_CONV2D_OPTIONS);
TLI_OPTIONS_TYPE_V1(maxpool2d_type, tl_maxpool2d_options, TL_MAXPOOL2D_OPTIONS);
TLI_OPTIONS_TYPE_V1(dense_type, tl_dense_options, TL_DENSE_OPTIONS);

tl_status tl_model_add_conv2d(tl_layer **out, tl_model *m, const tl_conv2d_options *opts)
{
    const char *fn = "tl_model_add_conv2d";
    if (m == NULL || opts == NULL)
        return tli_error(TL_EINVAL, "%s: %s is NULL", fn, m ? "options" : "model");
    tl_conv2d_options d = TL_CONV2D_OPTIONS_INIT, *o = &d;
    tl_status st = tli_options_read(&d, opts, &conv2d_type, fn);
    if (st)
        return st;
    tli_conv_cfg cfg = {o->filters, o->kernel_h, o->kernel_w, o->stride_h, o->stride_w, o->padding};
    return tli_model_append(out, m, &tli_conv2d_ops, &cfg, o->activation, o->use_bias, o->name, fn);
}

tl_status tl_model_add_maxpool2d(tl_layer **out, tl_model *m, const tl_maxpool2d_options *opts)
{
    const char *fn = "tl_model_add_maxpool2d";
    if (m == NULL || opts == NULL)
        return tli_error(TL_EINVAL, "%s: %s is NULL", fn, m ? "options" : "model");
    tl_maxpool2d_options d = TL_MAXPOOL2D_OPTIONS_INIT, *o = &d;
    tl_status st = tli_options_read(&d, opts, &maxpool2d_type, fn);
    if (st)
        return st;
    tli_pool_cfg cfg = {o->pool_h, o->pool_w, o->stride_h, o->stride_w, o->padding};
    return tli_model_append(out, m, &tli_maxpool2d_ops, &cfg, TL_ACT_LINEAR, 0, o->name, fn);
}

tl_status tl_model_add_dense(tl_layer **out, tl_model *m, const tl_dense_options *opts)
{
    const char *fn = "tl_model_add_dense";
    if (m == NULL || opts == NULL)
        return tli_error(TL_EINVAL, "%s: %s is NULL", fn, m ? "options" : "model");
    tl_dense_options d = TL_DENSE_OPTIONS_INIT, *o = &d;
    tl_status st = tli_options_read(&d, opts, &dense_type, fn);
    if (st)
        return st;
    tli_dense_cfg cfg = {o->units};
    return tli_model_append(out, m, &tli_dense_ops, &cfg, o->activation, o->use_bias, o->name, fn);
}

tl_status tl_model_add_flatten(tl_layer **out, tl_model *m, const char *name)
{
    if (m == NULL)
        return tli_error(TL_EINVAL, "tl_model_add_flatten: model is NULL");
    return tli_model_append(out, m, &tli_flatten_ops, NULL, TL_ACT_LINEAR, 0, name, "tl_model_add_flatten");
}

tl_status tl_conv2d_options_init(tl_conv2d_options *opts, unsigned int version)
{
    const tl_conv2d_options d = TL_CONV2D_OPTIONS_INIT;
    return tli_options_init(opts, version, &d, &conv2d_type, "tl_conv2d_options_init");
}

tl_status tl_maxpool2d_options_init(tl_maxpool2d_options *opts, unsigned int version)
{
    const tl_maxpool2d_options d = TL_MAXPOOL2D_OPTIONS_INIT;
    return tli_options_init(opts, version, &d, &maxpool2d_type, "tl_maxpool2d_options_init");
}

tl_status tl_dense_options_init(tl_dense_options *opts, unsigned int version)
{
    const tl_dense_options d = TL_DENSE_OPTIONS_INIT;
    return tli_options_init(opts, version, &d, &dense_type, "tl_dense_options_init");
}

tl_status tl_model_pop_layers(tl_model *m, size_t count)
{
    if (m == NULL)
        return tli_error(TL_EINVAL, "tl_model_pop_layers: model is NULL");
    if (count > m->nlayers)
        return tli_error(TL_ERANGE, "tl_model_pop_layers: cannot remove %zu layers from a model with %zu", count,
                         m->nlayers);
    for (size_t i = 0; i < count; i++)
        tli_layer_free(m->layers[--m->nlayers]);
    tli_workspace_free(m);
    tl_model_reset_optimizer(m);
    return TL_OK;
}

/* ---- look-up and counts ------------------------------------------------ */

size_t tl_model_num_layers(const tl_model *m)
{
    return m ? m->nlayers : 0;
}

tl_status tl_model_layer(tl_layer **out, const tl_model *m, size_t index)
{
    if (out == NULL || m == NULL)
        return tli_error(TL_EINVAL, "tl_model_layer: %s is NULL", out ? "model" : "out");
    if (index >= m->nlayers)
        return tli_error(TL_ERANGE, "tl_model_layer: index %zu is out of range (the model has %zu layers)", index,
                         m->nlayers);
    *out = m->layers[index];
    return TL_OK;
}

tl_status tl_model_layer_by_name(tl_layer **out, const tl_model *m, const char *name)
{
    if (out == NULL || m == NULL || name == NULL)
        return tli_error(TL_EINVAL, "tl_model_layer_by_name: %s is NULL", out == NULL ? "out" : m ? "name" : "model");
    for (size_t i = 0; i < m->nlayers; i++)
        if (strcmp(m->layers[i]->name, name) == 0) {
            *out = m->layers[i];
            return TL_OK;
        }
    return tli_error(TL_ENOTFOUND, "tl_model_layer_by_name: the model has no layer named '%s'", name);
}

tl_status tl_model_input_shape(tl_shape *out, const tl_model *m)
{
    if (out == NULL || m == NULL)
        return tli_error(TL_EINVAL, "tl_model_input_shape: %s is NULL", out ? "model" : "out");
    *out = m->input;
    return TL_OK;
}

tl_status tl_model_output_shape(tl_shape *out, const tl_model *m)
{
    if (out == NULL || m == NULL)
        return tli_error(TL_EINVAL, "tl_model_output_shape: %s is NULL", out ? "model" : "out");
    *out = m->nlayers ? m->layers[m->nlayers - 1]->out_shape : m->input;
    return TL_OK;
}

size_t tl_model_param_count(const tl_model *m)
{
    size_t n = 0;
    if (m)
        for (size_t i = 0; i < m->nlayers; i++)
            n += tl_layer_param_count(m->layers[i]);
    return n;
}

size_t tl_model_trainable_param_count(const tl_model *m)
{
    size_t n = 0;
    if (m)
        for (size_t i = 0; i < m->nlayers; i++)
            if (m->layers[i]->trainable)
                n += tl_layer_param_count(m->layers[i]);
    return n;
}

tl_status tl_model_init_params(tl_model *m, uint64_t seed)
{
    if (m == NULL)
        return tli_error(TL_EINVAL, "tl_model_init_params: model is NULL");
    m->seed = seed;
    for (size_t i = 0; i < m->nlayers; i++)
        tli_layer_init_params(m->layers[i], seed, i);
    tl_model_reset_optimizer(m);
    return TL_OK;
}

tl_status tl_model_set_threads(tl_model *m, uint32_t threads)
{
    if (m == NULL)
        return tli_error(TL_EINVAL, "tl_model_set_threads: model is NULL");
    if (threads > 1024)
        return tli_error(TL_EINVAL, "tl_model_set_threads: %u threads is more than the limit of 1024", threads);
    uint32_t resolved = threads ? threads : tli_cpu_count();
    /* Per-thread scratch (weight-gradient partial sums) is sized by it. */
    if (resolved != m->threads)
        tli_workspace_free(m);
    m->threads_req = threads;
    m->threads = resolved;
    return TL_OK;
}

uint32_t tl_model_threads(const tl_model *m)
{
    return m ? m->threads : 0;
}
