/*
 * model_add.c - the public add functions: each reads its caller's options
 * (only the bytes of their version), resolves the inputs to earlier
 * layers, and appends a layer of its kind through tli_model_append. What
 * the settings mean is the kind's business (lib/layers/).
 */
#include <math.h>
#include <string.h>

#include "model.h"
#include "options.h"

TLI_OPTIONS_TYPE_V3(conv2d_type, tl_conv2d_options, TL_CONV2D_OPTIONS, input, groups);
TLI_OPTIONS_TYPE_V3(maxpool2d_type, tl_maxpool2d_options, TL_MAXPOOL2D_OPTIONS, input, pad_top);
TLI_OPTIONS_TYPE_V2(dense_type, tl_dense_options, TL_DENSE_OPTIONS, input);
TLI_OPTIONS_TYPE_V1(dropout_type, tl_dropout_options, TL_DROPOUT_OPTIONS);
TLI_OPTIONS_TYPE_V1(activation_type, tl_activation_options, TL_ACTIVATION_OPTIONS);
TLI_OPTIONS_TYPE_V2(avgpool2d_type, tl_avgpool2d_options, TL_AVGPOOL2D_OPTIONS, pad_top);
TLI_OPTIONS_TYPE_V1(batchnorm_type, tl_batchnorm_options, TL_BATCHNORM_OPTIONS);
TLI_OPTIONS_TYPE_V1(normalization_type, tl_normalization_options, TL_NORMALIZATION_OPTIONS);

/* Append a layer of `kind` with one input (`input` NULL: the previous
 * layer) and the settings of its public options `o` (NULL: none). */
static tl_status add_one(tl_layer **out, tl_model *m, tl_layer_kind kind, const void *o, const tl_layer *input,
                         const char *name, const char *fn)
{
    const tli_layer_ops *ops = tli_layer_ops_for(kind);
    _Alignas(8) unsigned char cfg[TLI_CFG_BYTES];
    tli_cfg_defaults(ops, cfg);
    tl_activation act = TL_ACT_LINEAR;
    int use_bias = 0;
    if (o && ops->from_options)
        ops->from_options(cfg, &act, &use_bias, o);
    uint32_t in;
    tl_status st = tli_model_input_index(&in, m, input, fn);
    if (st)
        return st;
    return tli_model_append(out, m, ops, cfg, act, use_bias, &in, 1, name, fn);
}

tl_status tl_model_add_conv2d(tl_layer **out, tl_model *m, const tl_conv2d_options *opts)
{
    const char *fn = "tl_model_add_conv2d";
    if (m == NULL || opts == NULL)
        return tli_error(TL_EINVAL, "%s: %s is NULL", fn, m ? "options" : "model");
    tl_conv2d_options o = TL_CONV2D_OPTIONS_INIT;
    tl_status st = tli_options_read(&o, opts, &conv2d_type, fn);
    return st ? st : add_one(out, m, TL_LAYER_CONV2D, &o, o.input, o.name, fn);
}

tl_status tl_model_add_maxpool2d(tl_layer **out, tl_model *m, const tl_maxpool2d_options *opts)
{
    const char *fn = "tl_model_add_maxpool2d";
    if (m == NULL || opts == NULL)
        return tli_error(TL_EINVAL, "%s: %s is NULL", fn, m ? "options" : "model");
    tl_maxpool2d_options o = TL_MAXPOOL2D_OPTIONS_INIT;
    tl_status st = tli_options_read(&o, opts, &maxpool2d_type, fn);
    return st ? st : add_one(out, m, TL_LAYER_MAXPOOL2D, &o, o.input, o.name, fn);
}

tl_status tl_model_add_avgpool2d(tl_layer **out, tl_model *m, const tl_avgpool2d_options *opts)
{
    const char *fn = "tl_model_add_avgpool2d";
    if (m == NULL || opts == NULL)
        return tli_error(TL_EINVAL, "%s: %s is NULL", fn, m ? "options" : "model");
    tl_avgpool2d_options o = TL_AVGPOOL2D_OPTIONS_INIT;
    tl_status st = tli_options_read(&o, opts, &avgpool2d_type, fn);
    return st ? st : add_one(out, m, TL_LAYER_AVGPOOL2D, &o, o.input, o.name, fn);
}

tl_status tl_model_add_batchnorm(tl_layer **out, tl_model *m, const tl_batchnorm_options *opts)
{
    const char *fn = "tl_model_add_batchnorm";
    if (m == NULL || opts == NULL)
        return tli_error(TL_EINVAL, "%s: %s is NULL", fn, m ? "options" : "model");
    tl_batchnorm_options o = TL_BATCHNORM_OPTIONS_INIT;
    tl_status st = tli_options_read(&o, opts, &batchnorm_type, fn);
    return st ? st : add_one(out, m, TL_LAYER_BATCHNORM, &o, o.input, o.name, fn);
}

tl_status tl_model_add_dense(tl_layer **out, tl_model *m, const tl_dense_options *opts)
{
    const char *fn = "tl_model_add_dense";
    if (m == NULL || opts == NULL)
        return tli_error(TL_EINVAL, "%s: %s is NULL", fn, m ? "options" : "model");
    tl_dense_options o = TL_DENSE_OPTIONS_INIT;
    tl_status st = tli_options_read(&o, opts, &dense_type, fn);
    return st ? st : add_one(out, m, TL_LAYER_DENSE, &o, o.input, o.name, fn);
}

tl_status tl_model_add_flatten(tl_layer **out, tl_model *m, const char *name)
{
    if (m == NULL)
        return tli_error(TL_EINVAL, "tl_model_add_flatten: model is NULL");
    return add_one(out, m, TL_LAYER_FLATTEN, NULL, NULL, name, "tl_model_add_flatten");
}

tl_status tl_model_add_flatten_from(tl_layer **out, tl_model *m, const tl_layer *input, const char *name)
{
    if (m == NULL)
        return tli_error(TL_EINVAL, "tl_model_add_flatten_from: model is NULL");
    return add_one(out, m, TL_LAYER_FLATTEN, NULL, input, name, "tl_model_add_flatten_from");
}

tl_status tl_model_add_global_avgpool2d(tl_layer **out, tl_model *m, const tl_layer *input, const char *name)
{
    if (m == NULL)
        return tli_error(TL_EINVAL, "tl_model_add_global_avgpool2d: model is NULL");
    return add_one(out, m, TL_LAYER_GLOBAL_AVGPOOL2D, NULL, input, name, "tl_model_add_global_avgpool2d");
}

/* add and concatenate: two or more inputs, all given. */
static tl_status add_many(tl_layer **out, tl_model *m, tl_layer_kind kind, const tl_layer *const *inputs, size_t n,
                          const char *name, const char *fn)
{
    if (m == NULL || inputs == NULL)
        return tli_error(TL_EINVAL, "%s: %s is NULL", fn, m ? "inputs" : "model");
    if (n < 2 || n > TLI_MAX_INPUTS)
        return tli_error(TL_EINVAL, "%s: n = %zu inputs; it takes 2 to %d", fn, n, TLI_MAX_INPUTS);
    uint32_t idx[TLI_MAX_INPUTS];
    for (size_t k = 0; k < n; k++) {
        if (inputs[k] == NULL)
            return tli_error(TL_EINVAL, "%s: inputs[%zu] is NULL", fn, k);
        tl_status st = tli_model_input_index(&idx[k], m, inputs[k], fn);
        if (st)
            return st;
    }
    return tli_model_append(out, m, tli_layer_ops_for(kind), NULL, TL_ACT_LINEAR, 0, idx, n, name, fn);
}

tl_status tl_model_add_add(tl_layer **out, tl_model *m, const tl_layer *const *inputs, size_t n, const char *name)
{
    return add_many(out, m, TL_LAYER_ADD, inputs, n, name, "tl_model_add_add");
}

tl_status tl_model_add_concatenate(tl_layer **out, tl_model *m, const tl_layer *const *inputs, size_t n,
                                   const char *name)
{
    return add_many(out, m, TL_LAYER_CONCATENATE, inputs, n, name, "tl_model_add_concatenate");
}

tl_status tl_model_add_dropout(tl_layer **out, tl_model *m, const tl_dropout_options *opts)
{
    const char *fn = "tl_model_add_dropout";
    if (m == NULL || opts == NULL)
        return tli_error(TL_EINVAL, "%s: %s is NULL", fn, m ? "options" : "model");
    tl_dropout_options o = TL_DROPOUT_OPTIONS_INIT;
    tl_status st = tli_options_read(&o, opts, &dropout_type, fn);
    return st ? st : add_one(out, m, TL_LAYER_DROPOUT, &o, o.input, o.name, fn);
}

tl_status tl_model_add_activation(tl_layer **out, tl_model *m, const tl_activation_options *opts)
{
    const char *fn = "tl_model_add_activation";
    if (m == NULL || opts == NULL)
        return tli_error(TL_EINVAL, "%s: %s is NULL", fn, m ? "options" : "model");
    tl_activation_options o = TL_ACTIVATION_OPTIONS_INIT;
    tl_status st = tli_options_read(&o, opts, &activation_type, fn);
    return st ? st : add_one(out, m, TL_LAYER_ACTIVATION, &o, o.input, o.name, fn);
}

/* A normalization's statistics from the options, checked before the layer
 * exists (on error the model stays as it was). */
static tl_status check_statistics(const tl_normalization_options *o, const char *fn)
{
    const char *who = o->name ? o->name : "(automatic name)";
    if ((o->mean || o->std) && o->channels == 0)
        return tli_error(TL_EINVAL, "%s: layer '%s': %s given with channels 0; set channels to the length of the "
                         "arrays (the input's last axis)", fn, who, o->mean ? "mean" : "std");
    for (uint32_t k = 0; o->mean && k < o->channels; k++)
        if (!isfinite(o->mean[k]))
            return tli_error(TL_EINVAL, "%s: layer '%s': mean[%u] = %g must be finite", fn, who, k,
                             (double)o->mean[k]);
    for (uint32_t k = 0; o->std && k < o->channels; k++)
        if (!(isfinite(o->std[k]) && o->std[k] > 0.0f))
            return tli_error(TL_EINVAL,
                             "%s: layer '%s': std[%u] = %g must be finite and > 0 (a constant channel: give it 1)", fn,
                             who, k, (double)o->std[k]);
    return TL_OK;
}

tl_status tl_model_add_normalization(tl_layer **out, tl_model *m, const tl_normalization_options *opts)
{
    const char *fn = "tl_model_add_normalization";
    if (m == NULL || opts == NULL)
        return tli_error(TL_EINVAL, "%s: %s is NULL", fn, m ? "options" : "model");
    tl_normalization_options o = TL_NORMALIZATION_OPTIONS_INIT;
    tl_status st = tli_options_read(&o, opts, &normalization_type, fn);
    if (st || (st = check_statistics(&o, fn)))
        return st;
    tl_layer *l;
    if ((st = add_one(&l, m, TL_LAYER_NORMALIZATION, &o, o.input, o.name, fn)))
        return st;
    /* build checked channels against the input: the arrays hold c values. */
    if (o.mean)
        memcpy(l->params[0].value, o.mean, l->params[0].count * sizeof(float));
    if (o.std)
        memcpy(l->params[1].value, o.std, l->params[1].count * sizeof(float));
    tli_layer_touch(l);
    if (out)
        *out = l;
    return TL_OK;
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

tl_status tl_avgpool2d_options_init(tl_avgpool2d_options *opts, unsigned int version)
{
    const tl_avgpool2d_options d = TL_AVGPOOL2D_OPTIONS_INIT;
    return tli_options_init(opts, version, &d, &avgpool2d_type, "tl_avgpool2d_options_init");
}

tl_status tl_batchnorm_options_init(tl_batchnorm_options *opts, unsigned int version)
{
    const tl_batchnorm_options d = TL_BATCHNORM_OPTIONS_INIT;
    return tli_options_init(opts, version, &d, &batchnorm_type, "tl_batchnorm_options_init");
}

tl_status tl_dense_options_init(tl_dense_options *opts, unsigned int version)
{
    const tl_dense_options d = TL_DENSE_OPTIONS_INIT;
    return tli_options_init(opts, version, &d, &dense_type, "tl_dense_options_init");
}

tl_status tl_dropout_options_init(tl_dropout_options *opts, unsigned int version)
{
    const tl_dropout_options d = TL_DROPOUT_OPTIONS_INIT;
    return tli_options_init(opts, version, &d, &dropout_type, "tl_dropout_options_init");
}

tl_status tl_activation_options_init(tl_activation_options *opts, unsigned int version)
{
    const tl_activation_options d = TL_ACTIVATION_OPTIONS_INIT;
    return tli_options_init(opts, version, &d, &activation_type, "tl_activation_options_init");
}

tl_status tl_normalization_options_init(tl_normalization_options *opts, unsigned int version)
{
    const tl_normalization_options d = TL_NORMALIZATION_OPTIONS_INIT;
    return tli_options_init(opts, version, &d, &normalization_type, "tl_normalization_options_init");
}
