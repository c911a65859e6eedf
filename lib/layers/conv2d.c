/*
 * conv2d.c - 2-D convolution as im2col + one GEMM per batch.
 *
 * The arithmetic lives in lib/kernels (tli_conv_*): im2col + BLIS, or
 * direct AVX-512 kernels where the CPU has them. This file checks settings
 * and shapes, owns the parameters and picks the algorithm once.
 */
#include "layer.h"

static tl_status conv_build(tl_layer *l)
{
    const tli_conv_cfg *c = &l->cfg.conv;
    char sb[64];
    if (c->filters == 0 || c->k_h == 0 || c->k_w == 0 || c->s_h == 0 || c->s_w == 0)
        return tli_error(TL_EINVAL,
                         "layer '%s' (conv2d, index %zu): filters (%u), kernel (%ux%u) and strides (%ux%u) must be > 0",
                         l->name, l->index, c->filters, c->k_h, c->k_w, c->s_h, c->s_w);
    if (c->padding != TL_PAD_VALID && c->padding != TL_PAD_SAME)
        return tli_error(TL_EINVAL, "layer '%s' (conv2d, index %zu): unknown padding %d", l->name, l->index,
                         (int)c->padding);
    if (l->in_shape.rank != 3)
        return tli_error(TL_ESHAPE, "layer '%s' (conv2d, index %zu) needs an (h, w, c) input, got %s", l->name,
                         l->index, tli_shape_str(&l->in_shape, sb, sizeof sb));
    tli_conv_geom *g = &l->geom.conv;
    g->in_h = l->in_shape.dims[0];
    g->in_w = l->in_shape.dims[1];
    g->in_c = l->in_shape.dims[2];
    g->k_h = c->k_h;
    g->k_w = c->k_w;
    g->s_h = c->s_h;
    g->s_w = c->s_w;
    if (!tli_window(g->in_h, g->k_h, g->s_h, c->padding, &g->out_h, &g->pad_t) ||
        !tli_window(g->in_w, g->k_w, g->s_w, c->padding, &g->out_w, &g->pad_l))
        return tli_error(TL_ESHAPE,
                         "layer '%s' (conv2d, index %zu): kernel %ux%u is larger than its input %s with valid padding",
                         l->name, l->index, c->k_h, c->k_w, tli_shape_str(&l->in_shape, sb, sizeof sb));
    uint64_t out = tli_mul_sat(tli_mul_sat(g->out_h, g->out_w), c->filters);
    uint64_t kernel = tli_mul_sat(tli_mul_sat(tli_mul_sat(c->k_h, c->k_w), g->in_c), c->filters);
    if (out > TLI_MAX_ELEMS || kernel > TLI_MAX_ELEMS)
        return tli_error(TL_ETOOBIG, "layer '%s' (conv2d, index %zu): output or kernel exceeds 2^31 values", l->name,
                         l->index);
    l->out_shape = tli_shape3(g->out_h, g->out_w, c->filters);
    l->conv_algo = tli_conv_choose(g, c->filters);
    l->out_size = (size_t)out;
    tli_param *k = &l->params[0];
    k->name = "kernel";
    k->shape = (tl_shape){4, {c->k_h, c->k_w, g->in_c, c->filters}};
    k->count = (size_t)kernel;
    l->nparams = 1;
    if (l->use_bias) {
        tli_param *b = &l->params[1];
        b->name = "bias";
        b->shape = tli_shape1(c->filters);
        b->count = c->filters;
        l->nparams = 2;
    }
    return TL_OK;
}

static size_t conv_scratch_bytes(const tl_layer *l, size_t batch, uint32_t threads, bool training)
{
    /* The first layer never needs an input gradient. */
    return tli_conv_scratch_bytes(l->conv_algo, &l->geom.conv, l->cfg.conv.filters, batch, threads, training,
                                  training && l->index > 0);
}

static void conv_forward(tl_layer *l, const tli_exec *ex, const float *x, float *y, tl_activation act)
{
    tli_conv_forward(ex->threads, l->conv_algo, &l->geom.conv, l->cfg.conv.filters, x, l->params[0].value,
                     l->use_bias ? l->params[1].value : NULL, act, y, ex->batch, l->scratch);
}

static void conv_backward(tl_layer *l, const tli_exec *ex, const float *x, const float *y, float *dy, float *dx,
                          tl_activation act, bool param_grads)
{
    const size_t m = ex->batch * l->geom.conv.out_h * l->geom.conv.out_w;
    const uint32_t n = l->cfg.conv.filters;
    tli_act_backward(ex->threads, act, y, dy, m, n,
                     param_grads && l->use_bias && !ex->bias_grad_done ? l->params[1].grad : NULL);
    tli_conv_backward(ex->threads, l->conv_algo, &l->geom.conv, n, x, dy, l->params[0].value,
                      param_grads ? l->params[0].grad : NULL, dx, ex->batch, l->scratch);
}

const tli_layer_ops tli_conv2d_ops = {
    .kind = TL_LAYER_CONV2D,
    .type_name = "conv2d",
    .auto_name = "conv2d",
    .build = conv_build,
    .scratch_bytes = conv_scratch_bytes,
    .forward = conv_forward,
    .backward = conv_backward,
    .is_view = false,
};
