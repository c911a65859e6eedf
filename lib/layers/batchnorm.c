/*
 * batchnorm.c - batch normalization over the channels (the last axis) of
 * an (h, w, c) or a flat (units) input: Keras' BatchNormalization(axis=-1),
 * PyTorch's BatchNorm2d / BatchNorm1d.
 *
 * Tensors, in this order: gamma (parameter, ones; PyTorch "weight"; when
 * `scale`), beta (parameter, zeros; "bias"; when `center`), moving_mean
 * (state, zeros; "running_mean") and moving_variance (state, ones;
 * "running_var").
 *
 * Training mode - the pass trains (ex->training) and the layer is
 * trainable - normalizes with the batch's mean and biased variance over
 * its batch * h * w positions, and moves the moving statistics in forward
 * (Keras' momentum: moving = momentum * moving + (1 - momentum) * batch,
 * the variance unbiased as PyTorch's running_var). Otherwise - inference,
 * or a frozen layer (Keras' rule) - it normalizes with the moving
 * statistics and leaves them alone; backward is then the per-channel
 * scale dy * gamma / sqrt(moving_var + eps), with no parameter gradients
 * (a frozen layer has none).
 *
 * Scratch: the batch's mean and inverse standard deviation per channel
 * (training forward keeps them for backward, which recomputes x-hat from
 * x), three per-channel buffers and the kernels' partial sums.
 */
#include <math.h>
#include <stddef.h>

#include "../io/onnx_export.h"
#include "layer.h"

typedef struct bn_cfg {
    float epsilon;
    float momentum;
    uint32_t center, scale;
} bn_cfg;

typedef struct bn_geom {
    uint32_t c;                 /* channels (the last axis) */
    uint32_t positions;         /* per example: h * w, or 1 for a flat input */
    int gamma, beta, mean, var; /* tensor indices; -1: absent */
} bn_geom;

_Static_assert(sizeof(bn_cfg) <= TLI_CFG_BYTES, "batchnorm settings fit a layer");
_Static_assert(sizeof(bn_geom) <= TLI_GEOM_BYTES, "batchnorm geometry fits a layer");

/* The bits of 1e-3f and 0.99f, Keras' defaults (checked in tests/test_batchnorm.c). */
#define BN_EPSILON_BITS 0x3a83126fu
#define BN_MOMENTUM_BITS 0x3f7d70a4u

/* The order is the checkpoint's: fields are only ever appended. */
static const tli_field bn_fields[] = {
    {"epsilon", TLI_FIELD_F32, offsetof(bn_cfg, epsilon), 0, BN_EPSILON_BITS, NULL},
    {"momentum", TLI_FIELD_F32, offsetof(bn_cfg, momentum), 0, BN_MOMENTUM_BITS, NULL},
    {"center", TLI_FIELD_BOOL, offsetof(bn_cfg, center), 0, 1, NULL},
    {"scale", TLI_FIELD_BOOL, offsetof(bn_cfg, scale), 0, 1, NULL},
};

static tl_status bn_build(tl_layer *l)
{
    bn_cfg *c = (bn_cfg *)l->cfg;
    bn_geom *g = (bn_geom *)l->geom;
    char sb[64];
    if (!(c->epsilon > 0.0f) || isinf(c->epsilon))
        return tli_error(TL_EINVAL, TLI_LFMT ": epsilon %g must be finite and > 0", TLI_LARG(l), (double)c->epsilon);
    if (!(c->momentum >= 0.0f && c->momentum <= 1.0f))
        return tli_error(TL_EINVAL,
                         TLI_LFMT ": momentum %g must be in [0, 1] (Keras' convention: 0.99 is PyTorch's 0.01)",
                         TLI_LARG(l), (double)c->momentum);
    c->center = c->center ? 1 : 0;
    c->scale = c->scale ? 1 : 0;
    if (l->in_shape.rank != 3 && l->in_shape.rank != 1)
        return tli_error(TL_ESHAPE, TLI_LFMT " needs an (h, w, c) or a flat input, got %s", TLI_LARG(l),
                         tli_shape_str(&l->in_shape, sb, sizeof sb));
    g->c = l->in_shape.dims[l->in_shape.rank - 1];
    if (g->c == 0)
        return tli_error(TL_ESHAPE, TLI_LFMT ": input %s has no channels", TLI_LARG(l),
                         tli_shape_str(&l->in_shape, sb, sizeof sb));
    g->positions = (uint32_t)(l->in_size / g->c);
    l->out_shape = l->in_shape;
    l->out_size = l->in_size;
    size_t i = 0;
    g->gamma = g->beta = -1;
    if (c->scale) {
        g->gamma = (int)i;
        tli_tensor_set(l, i++, "gamma", "weight", TLI_ROLE_PARAM, TLI_INIT_ONES, TLI_TORCH_SAME, tli_shape1(g->c));
    }
    if (c->center) {
        g->beta = (int)i;
        tli_tensor_set(l, i++, "beta", "bias", TLI_ROLE_PARAM, TLI_INIT_ZEROS, TLI_TORCH_SAME, tli_shape1(g->c));
    }
    g->mean = (int)i;
    tli_tensor_set(l, i++, "moving_mean", "running_mean", TLI_ROLE_STATE, TLI_INIT_ZEROS, TLI_TORCH_SAME,
                   tli_shape1(g->c));
    g->var = (int)i;
    tli_tensor_set(l, i, "moving_variance", "running_var", TLI_ROLE_STATE, TLI_INIT_ONES, TLI_TORCH_SAME,
                   tli_shape1(g->c));
    return TL_OK;
}

/* Scratch: 5 per-channel float buffers (mean, inv_std, t0..t2), then the
 * partial sums (64-byte aligned). */
static size_t floats_part(const bn_geom *g)
{
    return ((size_t)5 * g->c + 15) & ~(size_t)15;
}

static size_t bn_scratch_bytes(const tl_layer *l, size_t batch, uint32_t threads, bool training)
{
    (void)threads, (void)training; /* a frozen layer in a training pass needs them too: always the same */
    const bn_geom *g = (const bn_geom *)l->geom;
    size_t rows;
    if (!tli_mul_ok(batch, g->positions, &rows))
        return SIZE_MAX;
    size_t partial = tli_bn_partial_count(rows, g->c), bytes;
    if (!tli_mul_ok(partial, sizeof(double), &bytes) || bytes > SIZE_MAX - floats_part(g) * sizeof(float))
        return SIZE_MAX;
    return floats_part(g) * sizeof(float) + bytes;
}

/* The kernels' view of the layer for `batch` examples. */
static tli_bn bn_view(tl_layer *l, size_t batch)
{
    const bn_cfg *c = (const bn_cfg *)l->cfg;
    const bn_geom *g = (const bn_geom *)l->geom;
    float *f = l->scratch;
    tli_bn bn = {
        .rows = batch * g->positions,
        .c = g->c,
        .epsilon = c->epsilon,
        .momentum = c->momentum,
        .gamma = g->gamma >= 0 ? l->params[g->gamma].value : NULL,
        .beta = g->beta >= 0 ? l->params[g->beta].value : NULL,
        .moving_mean = l->params[g->mean].value,
        .moving_var = l->params[g->var].value,
        .mean = f,
        .inv_std = f + g->c,
        .t0 = f + 2 * (size_t)g->c,
        .t1 = f + 3 * (size_t)g->c,
        .t2 = f + 4 * (size_t)g->c,
        .partial = (double *)(void *)(f + floats_part(g)),
    };
    return bn;
}

/* Batch statistics only in a training pass of a trainable layer. */
static bool training_mode(const tl_layer *l, const tli_exec *ex)
{
    return ex->training && l->trainable;
}

/* The forward pass, with a fused clamp (TLI_CLAMP_NONE, or the ReLU /
 * ReLU6 of the activation layer after it: bn_forward_act). Both entry
 * points come here, so a change to how the layer normalizes is made once. */
static void bn_run(tl_layer *l, const tli_exec *ex, const float *x, const float *res, float *y, int clamp)
{
    tli_bn bn = bn_view(l, ex->batch);
    bn.clamp = clamp;
    bn.residual = res;
    bn.sync = ex->bn_sync; /* synchronized batchnorm (training only), or NULL */
    if (training_mode(l, ex))
        tli_bn_forward_train(ex->threads, &bn, x, y);
    else
        tli_bn_forward_infer(ex->threads, &bn, x, y);
}

static void bn_forward(tl_layer *l, const tli_exec *ex, const float *const *x, float *y, tl_activation act)
{
    (void)act;
    bn_run(l, ex, x[0], NULL, y, TLI_CLAMP_NONE);
}

/* The ReLU / ReLU6 layer after it, applied while normalizing (backward
 * reads x and dy, never y). */
static void bn_forward_act(tl_layer *l, const tli_exec *ex, const float *const *x, float *y, tl_activation act)
{
    bn_run(l, ex, x[0], NULL, y, tli_clamp_of(act == TL_ACT_RELU, act == TL_ACT_RELU6));
}

/* The residual add after it (and the ReLU / ReLU6 after that), added
 * while normalizing: the add's pass over memory, and a write of the
 * batchnorm's own output, fewer. */
static void bn_forward_residual(tl_layer *l, const tli_exec *ex, const float *const *x, const float *res, float *y,
                                tl_activation act)
{
    bn_run(l, ex, x[0], res, y, tli_clamp_of(act == TL_ACT_RELU, act == TL_ACT_RELU6));
}

/* The backward pass; with act_y (bn_backward_act), dy is the gradient of
 * the ReLU / ReLU6 after it, whose derivative the kernels apply first. */
static void bn_back(tl_layer *l, const tli_exec *ex, const float *x0, const float *act_y, int clamp, float *dy,
                    float *dx0, bool param_grads)
{
    const bn_geom *g = (const bn_geom *)l->geom;
    tli_bn bn = bn_view(l, ex->batch);
    bn.act_y = act_y;
    bn.clamp = clamp;
    float *const dx[1] = {dx0};
    const float *const x[1] = {x0};
    if (!training_mode(l, ex)) {
        if (dx[0])
            tli_bn_backward_infer(ex->threads, &bn, dy, dx[0]);
        return;
    }
    float *dgamma = param_grads && g->gamma >= 0 ? l->params[g->gamma].grad : NULL;
    float *dbeta = param_grads && g->beta >= 0 ? l->params[g->beta].grad : NULL;
    bn.sync = ex->bn_sync;
    /* Synchronized, every process sums even when it needs nothing back. */
    if (dx[0] || dgamma || dbeta || bn.sync)
        tli_bn_backward_train(ex->threads, &bn, x[0], dy, dx[0], dgamma, dbeta);
}

static void bn_backward(tl_layer *l, const tli_exec *ex, const float *const *x, const float *y, float *dy,
                        float *const *dx, tl_activation act, bool param_grads)
{
    (void)y, (void)act;
    bn_back(l, ex, x[0], NULL, TLI_CLAMP_NONE, dy, dx[0], param_grads);
}

static void bn_backward_act(tl_layer *l, const tli_exec *ex, const float *const *x, const float *act_y,
                            float *dy, float *const *dx, tl_activation act, bool param_grads)
{
    bn_back(l, ex, x[0], act_y, tli_clamp_of(act == TL_ACT_RELU, act == TL_ACT_RELU6), dy, dx[0], param_grads);
}

/* Inference mode is a per-channel map the layer before can fold in (the
 * engine's fusion); t1 and t2 of the scratch hold it. */
static bool bn_affine(tl_layer *l, const tli_exec *ex, const float **scale, const float **shift)
{
    if (training_mode(l, ex))
        return false;
    tli_bn bn = bn_view(l, ex->batch);
    tli_bn_infer_affine(&bn, bn.t1, bn.t2);
    *scale = bn.t1;
    *shift = bn.t2;
    return true;
}

static void bn_from_options(void *cfg, tl_activation *act, int *use_bias, const void *opts)
{
    const tl_batchnorm_options *o = opts;
    bn_cfg *c = cfg;
    *c = (bn_cfg){o->epsilon, o->momentum, o->center ? 1u : 0u, o->scale ? 1u : 0u};
    *act = TL_ACT_LINEAR;
    *use_bias = 0;
}

/* Inference: y = (x - mean) * gamma / sqrt(var + eps) + beta per channel. */
static void bn_channel_affine(const tl_layer *l, float *scale, float *shift)
{
    const bn_cfg *c = (const bn_cfg *)l->cfg;
    const bn_geom *g = (const bn_geom *)l->geom;
    for (uint32_t j = 0; j < g->c; j++) {
        const double inv = 1.0 / sqrt((double)l->params[g->var].value[j] + (double)c->epsilon);
        const double s = (g->gamma >= 0 ? (double)l->params[g->gamma].value[j] : 1.0) * inv;
        scale[j] = (float)s;
        shift[j] = (float)((g->beta >= 0 ? (double)l->params[g->beta].value[j] : 0.0) -
                           (double)l->params[g->mean].value[j] * s);
    }
}

/* ONNX: BatchNormalization with the moving statistics (inference form);
 * a missing gamma (scale off) is written as ones, a missing beta as zeros,
 * since the operator takes all four. */
static tl_status bn_onnx(const tl_layer *l, tli_onnx *g)
{
    const bn_cfg *c = (const bn_cfg *)l->cfg;
    const bn_geom *bg = (const bn_geom *)l->geom;
    static const char *const torch[4] = {"weight", "bias", "running_mean", "running_var"};
    const int idx[4] = {bg->gamma, bg->beta, bg->mean, bg->var};
    const char *in[5] = {tli_onnx_in(g, l, 0)};
    const int64_t d[1] = {bg->c};
    for (int t = 0; t < 4; t++) {
        in[t + 1] = tli_onnx_weight(g, l, torch[t]);
        float *v = tli_onnx_init(g, in[t + 1], 1, d);
        for (uint32_t j = 0; v && j < bg->c; j++)
            v[j] = idx[t] >= 0 ? l->params[idx[t]].value[j] : (t == 0 ? 1.0f : 0.0f);
        tli_onnx_init_end(g);
    }
    tli_onnx_node(g, "BatchNormalization", l->name, in, 5, tli_onnx_out(g, l));
    tli_onnx_attr_float(g, "epsilon", c->epsilon);
    tli_onnx_node_end(g);
    return TL_OK;
}

const tli_layer_ops tli_batchnorm_ops = {
    .kind = TL_LAYER_BATCHNORM,
    .type_name = "batchnorm",
    .auto_name = "batch_normalization",
    .cfg_size = sizeof(bn_cfg),
    .fields = bn_fields,
    .nfields = sizeof bn_fields / sizeof bn_fields[0],
    .min_inputs = 1,
    .torch_batch_counter = true,
    .trains_state = true,
    .max_inputs = 1,
    .build = bn_build,
    .scratch_bytes = bn_scratch_bytes,
    .forward = bn_forward,
    .backward = bn_backward,
    .from_options = bn_from_options,
    .onnx_export = bn_onnx,
    .channel_affine = bn_channel_affine,
    .affine = bn_affine,
    .forward_act = bn_forward_act,
    .forward_residual = bn_forward_residual,
    .backward_act = bn_backward_act,
};
