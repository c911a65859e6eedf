/* flatten.c - (h, w, c) -> (h*w*c). NHWC rows are already flat, so this
 * layer is a view: it moves no data in either direction. */
#include "layer.h"

static tl_status flatten_build(tl_layer *l)
{
    if (l->in_size > TLI_MAX_ELEMS)
        return tli_error(TL_ETOOBIG, TLI_LFMT ": input exceeds 2^31 values", TLI_LARG(l));
    l->out_shape = tli_shape1((uint32_t)l->in_size);
    l->out_size = l->in_size;
    return TL_OK;
}

static size_t flatten_scratch_bytes(const tl_layer *l, size_t batch, uint32_t threads, bool training)
{
    (void)l, (void)batch, (void)threads, (void)training;
    return 0;
}

/* Never called: the engine aliases a view's output to its input and passes
 * its gradient through. */
static void flatten_forward(tl_layer *l, const tli_exec *ex, const float *const *x, float *y, tl_activation act)
{
    (void)l, (void)ex, (void)x, (void)y, (void)act;
}

static void flatten_backward(tl_layer *l, const tli_exec *ex, const float *const *x, const float *y, float *dy,
                             float *const *dx, tl_activation act, bool param_grads)
{
    (void)l, (void)ex, (void)x, (void)y, (void)dy, (void)dx, (void)act, (void)param_grads;
}

const tli_layer_ops tli_flatten_ops = {
    .kind = TL_LAYER_FLATTEN,
    .type_name = "flatten",
    .auto_name = "flatten",
    .min_inputs = 1,
    .max_inputs = 1,
    .is_view = true,
    .build = flatten_build,
    .scratch_bytes = flatten_scratch_bytes,
    .forward = flatten_forward,
    .backward = flatten_backward,
};
