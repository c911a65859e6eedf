/* activation.c - an activation as a layer of its own (Keras' Activation,
 * LeakyReLU, ReLU; PyTorch's nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.SiLU,
 * nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.Tanh, nn.Softmax). The
 * activation is the layer's l->act, as for conv2d and dense, so the engine
 * treats it alike: it passes TL_ACT_LINEAR when the loss takes the last
 * layer's logits (softmax), and a max-pool above may fold its ReLU. Its
 * backward pass reads the input x, with the formulas conv2d and dense use
 * for the activations whose derivative needs their pre-activation
 * (leaky_relu, silu, hard_swish). The one setting is leaky_relu's slope
 * alpha; softmax is over the last axis. */
#include <math.h>
#include <stddef.h>

#include "../io/onnx_export.h"
#include "layer.h"

typedef struct act_cfg {
    float alpha;
} act_cfg;

_Static_assert(sizeof(act_cfg) <= TLI_CFG_BYTES, "activation settings fit a layer");

static const tli_field act_fields[] = {
    {"alpha", TLI_FIELD_F32, offsetof(act_cfg, alpha), 0, TLI_ACT_ALPHA_DEFAULT_BITS /* 0.01f */, NULL},
};

static tl_status act_build(tl_layer *l)
{
    const float alpha = ((const act_cfg *)l->cfg)->alpha;
    if (!isfinite(alpha))
        return tli_error(TL_EINVAL, TLI_LFMT ": alpha %g must be finite", TLI_LARG(l), (double)alpha);
    if (l->in_shape.rank == 0 || l->in_size == 0)
        return tli_error(TL_ESHAPE, TLI_LFMT ": the input has no values", TLI_LARG(l));
    l->out_shape = l->in_shape;
    l->out_size = l->in_size;
    return TL_OK;
}

static size_t act_scratch_bytes(const tl_layer *l, size_t batch, uint32_t threads, bool training)
{
    (void)l, (void)batch, (void)threads, (void)training;
    return 0;
}

/* Width of the last axis: softmax's rows. */
static size_t act_cols(const tl_layer *l)
{
    return l->out_shape.dims[l->out_shape.rank - 1];
}

static void act_forward(tl_layer *l, const tli_exec *ex, const float *const *x, float *y, tl_activation act)
{
    const size_t cols = act_cols(l), rows = ex->batch * (l->out_size / cols);
    tli_act_forward(ex->threads, act, ((const act_cfg *)l->cfg)->alpha, x[0], y, rows, cols);
}

static void act_backward(tl_layer *l, const tli_exec *ex, const float *const *x, const float *y, float *dy,
                         float *const *dx, tl_activation act, bool param_grads)
{
    (void)param_grads;
    if (dx[0] == NULL)
        return;
    const size_t cols = act_cols(l), rows = ex->batch * (l->out_size / cols);
    /* ReLU and ReLU6 from the output (0 < y, 0 < y < 6: the same cells as
     * from the input): the layer below may have written y itself and not
     * its own output (tli_layer_ops.forward_act). */
    const float *in = act == TL_ACT_RELU || act == TL_ACT_RELU6 ? y : x[0];
    tli_act_input_backward(ex->threads, act, ((const act_cfg *)l->cfg)->alpha, in, y, dy, dx[0], rows, cols);
}

static void act_from_options(void *cfg, tl_activation *act, int *use_bias, const void *opts)
{
    const tl_activation_options *o = opts;
    ((act_cfg *)cfg)->alpha = o->alpha;
    *act = o->activation;
    *use_bias = 0;
}

/* ONNX: the activation's operator(s) (lib/layers/onnx_act.c). */
static tl_status act_onnx(const tl_layer *l, tli_onnx *g)
{
    tli_onnx_activation(g, l, l->act, ((const act_cfg *)l->cfg)->alpha, tli_onnx_in(g, l, 0), tli_onnx_out(g, l));
    return TL_OK;
}

const tli_layer_ops tli_activation_ops = {
    .kind = TL_LAYER_ACTIVATION,
    .type_name = "activation",
    .auto_name = "activation",
    .cfg_size = sizeof(act_cfg),
    .fields = act_fields,
    .nfields = sizeof act_fields / sizeof act_fields[0],
    .min_inputs = 1,
    .max_inputs = 1,
    .has_activation = true,
    .is_activation = true,
    .build = act_build,
    .scratch_bytes = act_scratch_bytes,
    .forward = act_forward,
    .backward = act_backward,
    .from_options = act_from_options,
    .onnx_export = act_onnx,
};
