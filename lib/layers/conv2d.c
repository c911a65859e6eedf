/*
 * conv2d.c - 2-D convolution as im2col + one GEMM per batch.
 *
 * NHWC makes the GEMM's output (batch*out_h*out_w) x filters exactly the
 * next layer's input, and the kernel (kh, kw, in, filters) is already the
 * K x filters right-hand matrix. Backward reuses the forward pass's im2col
 * matrix for the weight gradient, then overwrites it with dcol.
 */
#include "layer.h"

/* A 1x1 stride-1 convolution's im2col matrix is its input. */
static bool is_pointwise(const tl_layer *l)
{
    const tli_conv_geom *g = &l->geom.conv;
    return g->k_h == 1 && g->k_w == 1 && g->s_h == 1 && g->s_w == 1;
}

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
    uint64_t out = (uint64_t)g->out_h * g->out_w * c->filters;
    uint64_t kernel = (uint64_t)c->k_h * c->k_w * g->in_c * c->filters;
    if (out > TLI_MAX_ELEMS || kernel > TLI_MAX_ELEMS)
        return tli_error(TL_ETOOBIG, "layer '%s' (conv2d, index %zu): output or kernel exceeds 2^31 values", l->name,
                         l->index);
    l->out_shape = tli_shape3(g->out_h, g->out_w, c->filters);
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

static size_t conv_scratch_bytes(const tl_layer *l, size_t batch, bool training)
{
    (void)training;
    if (is_pointwise(l))
        return 0;
    const tli_conv_geom *g = &l->geom.conv;
    size_t rows, elems, bytes;
    if (!tli_mul_ok(batch, (size_t)g->out_h * g->out_w, &rows) || !tli_mul_ok(rows, tli_conv_k(g), &elems) ||
        !tli_mul_ok(elems, sizeof(float), &bytes))
        return SIZE_MAX;
    return bytes;
}

static void conv_forward(tl_layer *l, const tli_exec *ex, const float *x, float *y, tl_activation act)
{
    const tli_conv_geom *g = &l->geom.conv;
    const size_t m = ex->batch * g->out_h * g->out_w;
    const size_t k = tli_conv_k(g);
    const size_t n = l->cfg.conv.filters;
    const float *col = x;
    if (!is_pointwise(l)) {
        tli_im2col(ex->threads, g, x, ex->batch, l->scratch);
        col = l->scratch;
    }
    tli_gemm(ex->threads, m, n, k, 1.0f, col, (ptrdiff_t)k, 1, l->params[0].value, (ptrdiff_t)n, 1, 0.0f, y,
             (ptrdiff_t)n, 1);
    tli_bias_act_forward(ex->threads, y, l->use_bias ? l->params[1].value : NULL, m, n, act);
}

static void conv_backward(tl_layer *l, const tli_exec *ex, const float *x, const float *y, float *dy, float *dx,
                          tl_activation act, bool param_grads)
{
    const tli_conv_geom *g = &l->geom.conv;
    const size_t m = ex->batch * g->out_h * g->out_w;
    const size_t k = tli_conv_k(g);
    const size_t n = l->cfg.conv.filters;
    const bool pointwise = is_pointwise(l);
    const float *col = pointwise ? x : l->scratch;
    float *db = param_grads && l->use_bias ? l->params[1].grad : NULL;
    tli_act_backward(ex->threads, act, y, dy, m, n, db);
    if (param_grads) /* dW (k x n) = col^T (k x m) * dz (m x n) */
        tli_gemm(ex->threads, k, n, m, 1.0f, col, 1, (ptrdiff_t)k, dy, (ptrdiff_t)n, 1, 0.0f, l->params[0].grad,
                 (ptrdiff_t)n, 1);
    if (dx == NULL)
        return;
    /* dcol (m x k) = dz (m x n) * W^T (n x k); the im2col matrix is no longer
     * needed, so dcol takes its place. */
    float *dcol = pointwise ? dx : l->scratch;
    tli_gemm(ex->threads, m, k, n, 1.0f, dy, (ptrdiff_t)n, 1, l->params[0].value, 1, (ptrdiff_t)n, 0.0f, dcol,
             (ptrdiff_t)k, 1);
    if (!pointwise)
        tli_col2im(ex->threads, g, dcol, ex->batch, dx);
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
