/* maxpool2d.c - max pooling; training keeps each window's arg-max. */
#include <stddef.h>

#include "layer.h"

typedef struct pool_cfg {
    uint32_t p_h, p_w, s_h, s_w;
    uint32_t padding; /* tl_padding */
} pool_cfg;

_Static_assert(sizeof(pool_cfg) <= TLI_CFG_BYTES, "maxpool2d settings fit a layer");
_Static_assert(sizeof(tli_pool_geom) <= TLI_GEOM_BYTES, "maxpool2d geometry fits a layer");

static const tli_field pool_fields[] = {
    {"pool_h", TLI_FIELD_U32, offsetof(pool_cfg, p_h), 0, 2, NULL},
    {"pool_w", TLI_FIELD_U32, offsetof(pool_cfg, p_w), 0, 2, NULL},
    {"stride_h", TLI_FIELD_U32, offsetof(pool_cfg, s_h), 0, 0, NULL},
    {"stride_w", TLI_FIELD_U32, offsetof(pool_cfg, s_w), 0, 0, NULL},
    {"padding", TLI_FIELD_ENUM, offsetof(pool_cfg, padding), TL_PAD_SAME, TL_PAD_VALID, tli_padding_names},
};

static tl_status pool_build(tl_layer *l)
{
    pool_cfg *c = (pool_cfg *)l->cfg;
    tli_pool_geom *g = (tli_pool_geom *)l->geom;
    char sb[64];
    if (c->s_h == 0)
        c->s_h = c->p_h;
    if (c->s_w == 0)
        c->s_w = c->p_w;
    if (c->p_h == 0 || c->p_w == 0)
        return tli_error(TL_EINVAL, TLI_LFMT ": pool size %ux%u must be > 0", TLI_LARG(l), c->p_h, c->p_w);
    if (c->padding != TL_PAD_VALID && c->padding != TL_PAD_SAME)
        return tli_error(TL_EINVAL, TLI_LFMT ": unknown padding %u", TLI_LARG(l), c->padding);
    if (l->in_shape.rank != 3)
        return tli_error(TL_ESHAPE, TLI_LFMT " needs an (h, w, c) input, got %s", TLI_LARG(l),
                         tli_shape_str(&l->in_shape, sb, sizeof sb));
    g->in_h = l->in_shape.dims[0];
    g->in_w = l->in_shape.dims[1];
    g->c = l->in_shape.dims[2];
    g->p_h = c->p_h;
    g->p_w = c->p_w;
    g->s_h = c->s_h;
    g->s_w = c->s_w;
    if (!tli_window(g->in_h, g->p_h, g->s_h, (tl_padding)c->padding, &g->out_h, &g->pad_t) ||
        !tli_window(g->in_w, g->p_w, g->s_w, (tl_padding)c->padding, &g->out_w, &g->pad_l))
        return tli_error(TL_ESHAPE, TLI_LFMT ": pool %ux%u is larger than its input %s with valid padding",
                         TLI_LARG(l), c->p_h, c->p_w, tli_shape_str(&l->in_shape, sb, sizeof sb));
    l->out_shape = tli_shape3(g->out_h, g->out_w, g->c);
    l->out_size = (size_t)g->out_h * g->out_w * g->c;
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

static void pool_forward(tl_layer *l, const tli_exec *ex, const float *const *x, float *y, tl_activation act)
{
    (void)act;
    tli_maxpool_forward(ex->threads, (const tli_pool_geom *)l->geom, x[0], ex->batch, y,
                        ex->training ? l->scratch : NULL);
}

static void pool_backward(tl_layer *l, const tli_exec *ex, const float *const *x, const float *y, float *dy,
                          float *const *dx, tl_activation act, bool param_grads)
{
    (void)x, (void)param_grads;
    if (dx[0])
        tli_maxpool_backward(ex->threads, (const tli_pool_geom *)l->geom, dy, l->scratch,
                             act == TL_ACT_RELU ? y : NULL, ex->fold_bias_grad, ex->batch, dx[0]);
}

static void pool_from_options(void *cfg, tl_activation *act, int *use_bias, const void *opts)
{
    const tl_maxpool2d_options *o = opts;
    pool_cfg *c = cfg;
    *c = (pool_cfg){o->pool_h, o->pool_w, o->stride_h, o->stride_w, (uint32_t)o->padding};
    *act = TL_ACT_LINEAR;
    *use_bias = 0;
}

static void pool_get_options(const tl_layer *l, void *opts, unsigned int version)
{
    const pool_cfg *c = (const pool_cfg *)l->cfg;
    tl_maxpool2d_options *o = opts;
    o->pool_h = c->p_h;
    o->pool_w = c->p_w;
    o->stride_h = c->s_h;
    o->stride_w = c->s_w;
    o->padding = (tl_padding)c->padding;
    o->name = l->name;
    if (version >= 2)
        o->input = NULL;
}

const tli_layer_ops tli_maxpool2d_ops = {
    .kind = TL_LAYER_MAXPOOL2D,
    .type_name = "maxpool2d",
    .auto_name = "max_pooling2d",
    .cfg_size = sizeof(pool_cfg),
    .fields = pool_fields,
    .nfields = sizeof pool_fields / sizeof pool_fields[0],
    .nfields_v1_0 = 5,
    .min_inputs = 1,
    .max_inputs = 1,
    .folds_input_relu = true,
    .build = pool_build,
    .scratch_bytes = pool_scratch_bytes,
    .forward = pool_forward,
    .backward = pool_backward,
    .from_options = pool_from_options,
    .get_options = pool_get_options,
};
