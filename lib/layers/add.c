/* add.c - the element-wise sum of two or more inputs of one shape (Keras'
 * Add): the join of a residual connection. dL/dx_k = dL/dy for every k. */
#include "../io/onnx_export.h"
#include "layer.h"

static tl_status add_build(tl_layer *l)
{
    char sa[64], sb[64];
    for (size_t k = 1; k < l->ninputs; k++)
        if (!tli_shape_eq(&l->in_shapes[k], &l->in_shapes[0]))
            return tli_error(TL_ESHAPE, TLI_LFMT ": input %zu has shape %s but input 0 has %s; add needs one shape",
                             TLI_LARG(l), k, tli_shape_str(&l->in_shapes[k], sa, sizeof sa),
                             tli_shape_str(&l->in_shapes[0], sb, sizeof sb));
    l->out_shape = l->in_shape;
    l->out_size = l->in_size;
    return TL_OK;
}

static size_t add_scratch_bytes(const tl_layer *l, size_t batch, uint32_t threads, bool training)
{
    (void)l, (void)batch, (void)threads, (void)training;
    return 0;
}

static void add_forward(tl_layer *l, const tli_exec *ex, const float *const *x, float *y, tl_activation act)
{
    (void)act;
    tli_sum(ex->threads, y, x, l->ninputs, ex->batch * l->out_size, TLI_CLAMP_NONE);
}

/* The ReLU after a residual join, in the same pass (backward reads no y). */
static void add_forward_act(tl_layer *l, const tli_exec *ex, const float *const *x, float *y, tl_activation act)
{
    tli_sum(ex->threads, y, x, l->ninputs, ex->batch * l->out_size,
            tli_clamp_of(act == TL_ACT_RELU, act == TL_ACT_RELU6));
}

static void add_backward(tl_layer *l, const tli_exec *ex, const float *const *x, const float *y, float *dy,
                         float *const *dx, tl_activation act, bool param_grads)
{
    (void)x, (void)y, (void)act, (void)param_grads;
    for (size_t k = 0; k < l->ninputs; k++)
        if (dx[k])
            tli_accumulate(ex->threads, dx[k], dy, ex->batch * l->out_size, ex->dx_acc && ex->dx_acc[k]);
}

/* With the ReLU / ReLU6 after it: every input's gradient is the masked dy,
 * written in the same pass as the mask (no separate activation pass). */
static void add_backward_act(tl_layer *l, const tli_exec *ex, const float *const *x, const float *act_y,
                             float *dy, float *const *dx, tl_activation act, bool param_grads)
{
    (void)x, (void)param_grads;
    bool acc[TLI_MAX_INPUTS];
    for (size_t k = 0; k < l->ninputs; k++)
        acc[k] = ex->dx_acc && ex->dx_acc[k];
    tli_masked_grad(ex->threads, dx, acc, l->ninputs, dy, act_y, ex->batch * l->out_size,
                    tli_clamp_of(act == TL_ACT_RELU, act == TL_ACT_RELU6));
}

/* ONNX: Add for two inputs, Sum for more. */
static tl_status add_onnx(const tl_layer *l, tli_onnx *g)
{
    const char *in[TLI_MAX_INPUTS];
    for (size_t k = 0; k < l->ninputs; k++)
        in[k] = tli_onnx_in(g, l, k);
    tli_onnx_node(g, l->ninputs == 2 ? "Add" : "Sum", l->name, in, l->ninputs, tli_onnx_out(g, l));
    tli_onnx_node_end(g);
    return TL_OK;
}

const tli_layer_ops tli_add_ops = {
    .kind = TL_LAYER_ADD,
    .type_name = "add",
    .auto_name = "add",
    .min_inputs = 2,
    .max_inputs = TLI_MAX_INPUTS,
    .accumulates = true,
    .sums_inputs = true,
    .build = add_build,
    .scratch_bytes = add_scratch_bytes,
    .forward = add_forward,
    .backward = add_backward,
    .onnx_export = add_onnx,
    .forward_act = add_forward_act,
    .backward_act = add_backward_act,
};
