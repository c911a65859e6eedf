/* maxpool2d.c - max pooling; training keeps each window's arg-max. */
#include "layer.h"

static tl_status pool_build(tl_layer *l)
{
    tli_pool_cfg *c = &l->cfg.pool;
    char sb[64];
    if (c->s_h == 0)
        c->s_h = c->p_h;
    if (c->s_w == 0)
        c->s_w = c->p_w;
    if (c->p_h == 0 || c->p_w == 0)
        return tli_error(TL_EINVAL, "layer '%s' (maxpool2d, index %zu): pool size %ux%u must be > 0", l->name,
                         l->index, c->p_h, c->p_w);
    if (c->padding != TL_PAD_VALID && c->padding != TL_PAD_SAME)
        return tli_error(TL_EINVAL, "layer '%s' (maxpool2d, index %zu): unknown padding %d", l->name, l->index,
                         (int)c->padding);
    if (l->in_shape.rank != 3)
        return tli_error(TL_ESHAPE, "layer '%s' (maxpool2d, index %zu) needs an (h, w, c) input, got %s", l->name,
                         l->index, tli_shape_str(&l->in_shape, sb, sizeof sb));
    tli_pool_geom *g = &l->geom.pool;
    g->in_h = l->in_shape.dims[0];
    g->in_w = l->in_shape.dims[1];
    g->c = l->in_shape.dims[2];
    g->p_h = c->p_h;
    g->p_w = c->p_w;
    g->s_h = c->s_h;
    g->s_w = c->s_w;
    if (!tli_window(g->in_h, g->p_h, g->s_h, c->padding, &g->out_h, &g->pad_t) ||
        !tli_window(g->in_w, g->p_w, g->s_w, c->padding, &g->out_w, &g->pad_l))
        return tli_error(TL_ESHAPE,
                         "layer '%s' (maxpool2d, index %zu): pool %ux%u is larger than its input %s with valid padding",
                         l->name, l->index, c->p_h, c->p_w, tli_shape_str(&l->in_shape, sb, sizeof sb));
    l->out_shape = tli_shape3(g->out_h, g->out_w, g->c);
    l->out_size = (size_t)g->out_h * g->out_w * g->c;
    l->nparams = 0;
    return TL_OK;
}

static size_t pool_scratch_bytes(const tl_layer *l, size_t batch, uint32_t threads, bool training)
{
    size_t elems, bytes;
    (void)threads;
    if (!training)
        return 0;
    if (!tli_mul_ok(batch, l->out_size, &elems) || !tli_mul_ok(elems, sizeof(int32_t), &bytes))
        return SIZE_MAX;
    return bytes;
}

static void pool_forward(tl_layer *l, const tli_exec *ex, const float *x, float *y, tl_activation act)
{
    (void)act;
    tli_maxpool_forward(ex->threads, &l->geom.pool, x, ex->batch, y, ex->training ? l->scratch : NULL);
}

static void pool_backward(tl_layer *l, const tli_exec *ex, const float *x, const float *y, float *dy, float *dx,
                          tl_activation act, bool param_grads)
{
    (void)x, (void)param_grads;
    if (dx)
        tli_maxpool_backward(ex->threads, &l->geom.pool, dy, l->scratch, act == TL_ACT_RELU ? y : NULL,
                             ex->fold_bias_grad, ex->batch, dx);
}

const tli_layer_ops tli_maxpool2d_ops = {
    .kind = TL_LAYER_MAXPOOL2D,
    .type_name = "maxpool2d",
    .auto_name = "max_pooling2d",
    .build = pool_build,
    .scratch_bytes = pool_scratch_bytes,
    .forward = pool_forward,
    .backward = pool_backward,
    .is_view = false,
};
