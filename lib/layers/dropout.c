/* dropout.c - inverted dropout (Keras' Dropout, PyTorch's nn.Dropout). In
 * training each value is kept with probability 1 - rate and scaled by
 * 1 / (1 - rate), or zeroed; the mask stays in the scratch for backward.
 * In inference the layer copies its input. The random numbers come from
 * ex->rng_key, which the engine draws from the model's training stream once
 * per training forward pass (tli_exec_draw_key): element i of the batch's
 * output is decided by tli_hash64(tli_hash64(key, layer index), i), so the
 * mask is the same for every thread count, and training repeats and
 * resumes from a checkpoint bit for bit. */
#include <stddef.h>
#include <string.h>

#include "../rng.h"
#include "../io/onnx_export.h"
#include "layer.h"

typedef struct dropout_cfg {
    float rate;
} dropout_cfg;

_Static_assert(sizeof(dropout_cfg) <= TLI_CFG_BYTES, "dropout settings fit a layer");

static const tli_field dropout_fields[] = {
    {"rate", TLI_FIELD_F32, offsetof(dropout_cfg, rate), 0, 0x3f000000u /* 0.5f */, NULL},
};

static tl_status dropout_build(tl_layer *l)
{
    const float rate = ((const dropout_cfg *)l->cfg)->rate;
    if (!(rate >= 0.0f && rate < 1.0f))
        return tli_error(TL_EINVAL, TLI_LFMT ": rate %g must be in [0, 1)", TLI_LARG(l), (double)rate);
    l->out_shape = l->in_shape;
    l->out_size = l->in_size;
    return TL_OK;
}

/* Training: one mask byte per value. */
static size_t dropout_scratch_bytes(const tl_layer *l, size_t batch, uint32_t threads, bool training)
{
    (void)threads;
    size_t bytes;
    if (!training)
        return 0;
    return tli_mul_ok(batch, l->out_size, &bytes) ? bytes : SIZE_MAX;
}

static void dropout_forward(tl_layer *l, const tli_exec *ex, const float *const *x, float *y, tl_activation act)
{
    (void)act;
    const size_t n = ex->batch * l->out_size;
    if (!ex->training) {
        memcpy(y, x[0], n * sizeof(float));
        return;
    }
    const float rate = ((const dropout_cfg *)l->cfg)->rate;
    tli_dropout_forward(ex->threads, tli_hash64(ex->rng_key, l->index), rate, x[0], y, l->scratch, n);
}

static void dropout_backward(tl_layer *l, const tli_exec *ex, const float *const *x, const float *y, float *dy,
                             float *const *dx, tl_activation act, bool param_grads)
{
    (void)x, (void)y, (void)act, (void)param_grads;
    if (dx[0])
        tli_dropout_backward(ex->threads, ((const dropout_cfg *)l->cfg)->rate, l->scratch, dy, dx[0],
                             ex->batch * l->out_size);
}

static void dropout_from_options(void *cfg, tl_activation *act, int *use_bias, const void *opts)
{
    const tl_dropout_options *o = opts;
    ((dropout_cfg *)cfg)->rate = o->rate;
    *act = TL_ACT_LINEAR;
    *use_bias = 0;
}

/* ONNX (inference form): no node; the output is the input. */
static tl_status dropout_onnx(const tl_layer *l, tli_onnx *g)
{
    tli_onnx_alias(g, l, tli_onnx_in(g, l, 0));
    return TL_OK;
}

const tli_layer_ops tli_dropout_ops = {
    .kind = TL_LAYER_DROPOUT,
    .type_name = "dropout",
    .auto_name = "dropout",
    .cfg_size = sizeof(dropout_cfg),
    .fields = dropout_fields,
    .nfields = sizeof dropout_fields / sizeof dropout_fields[0],
    .min_inputs = 1,
    .max_inputs = 1,
    .draws_random = true,
    .build = dropout_build,
    .scratch_bytes = dropout_scratch_bytes,
    .forward = dropout_forward,
    .backward = dropout_backward,
    .from_options = dropout_from_options,
    .onnx_export = dropout_onnx,
    .onnx_flat = TLI_ONNX_FLAT_PASSES,
};
