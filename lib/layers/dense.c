/* dense.c - fully connected layer: y = act(x W + b), W is (inputs, units). */
#include "layer.h"

static tl_status dense_build(tl_layer *l)
{
    char sb[64];
    uint32_t units = l->cfg.dense.units;
    if (units == 0)
        return tli_error(TL_EINVAL, "layer '%s' (dense, index %zu): units must be > 0", l->name, l->index);
    if (l->in_shape.rank != 1)
        return tli_error(TL_ESHAPE,
                         "layer '%s' (dense, index %zu) needs a flat input, got %s; add a flatten layer first",
                         l->name, l->index, tli_shape_str(&l->in_shape, sb, sizeof sb));
    uint64_t kernel = (uint64_t)l->in_size * units;
    if (kernel > TLI_MAX_ELEMS)
        return tli_error(TL_ETOOBIG, "layer '%s' (dense, index %zu): kernel %zu x %u exceeds 2^31 values", l->name,
                         l->index, l->in_size, units);
    l->out_shape = tli_shape1(units);
    l->out_size = units;
    tli_param *k = &l->params[0];
    k->name = "kernel";
    k->shape = (tl_shape){2, {(uint32_t)l->in_size, units, 0, 0}};
    k->count = (size_t)kernel;
    l->nparams = 1;
    if (l->use_bias) {
        tli_param *b = &l->params[1];
        b->name = "bias";
        b->shape = tli_shape1(units);
        b->count = units;
        l->nparams = 2;
    }
    return TL_OK;
}

static size_t dense_scratch_bytes(const tl_layer *l, size_t batch, uint32_t threads, bool training)
{
    (void)l, (void)batch, (void)threads, (void)training;
    return 0;
}

static void dense_forward(tl_layer *l, const tli_exec *ex, const float *x, float *y, tl_activation act)
{
    const size_t k = l->in_size, n = l->out_size;
    tli_gemm(ex->threads, ex->batch, n, k, 1.0f, x, (ptrdiff_t)k, 1, l->params[0].value, (ptrdiff_t)n, 1, 0.0f,
             y, (ptrdiff_t)n, 1);
    tli_bias_act_forward(ex->threads, y, l->use_bias ? l->params[1].value : NULL, ex->batch, n, act);
}

static void dense_backward(tl_layer *l, const tli_exec *ex, const float *x, const float *y, float *dy, float *dx,
                           tl_activation act, bool param_grads)
{
    const size_t k = l->in_size, n = l->out_size, m = ex->batch;
    tli_act_backward(ex->threads, act, y, dy, m, n,
                     param_grads && l->use_bias && !ex->bias_grad_done ? l->params[1].grad : NULL);
    if (param_grads) /* dW (k x n) = x^T (k x m) * dz (m x n) */
        tli_gemm(ex->threads, k, n, m, 1.0f, x, 1, (ptrdiff_t)k, dy, (ptrdiff_t)n, 1, 0.0f, l->params[0].grad,
                 (ptrdiff_t)n, 1);
    if (dx) /* dx (m x k) = dz (m x n) * W^T (n x k) */
        tli_gemm(ex->threads, m, k, n, 1.0f, dy, (ptrdiff_t)n, 1, l->params[0].value, 1, (ptrdiff_t)n, 0.0f, dx,
                 (ptrdiff_t)k, 1);
}

const tli_layer_ops tli_dense_ops = {
    .kind = TL_LAYER_DENSE,
    .type_name = "dense",
    .auto_name = "dense",
    .build = dense_build,
    .scratch_bytes = dense_scratch_bytes,
    .forward = dense_forward,
    .backward = dense_backward,
    .is_view = false,
};
