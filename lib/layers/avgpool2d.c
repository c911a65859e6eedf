/* avgpool2d.c - average pooling. Under same padding a border window covers
 * zeros: count_include_pad says whether they count in the divisor
 * (PyTorch's default) or not (Keras'; libtl's default). */
#include <stddef.h>

#include "layer.h"

typedef struct avg_cfg {
    uint32_t p_h, p_w, s_h, s_w;
    uint32_t padding; /* tl_padding */
    uint32_t count_include_pad;
} avg_cfg;

_Static_assert(sizeof(avg_cfg) <= TLI_CFG_BYTES, "avgpool2d settings fit a layer");
_Static_assert(sizeof(tli_pool_geom) <= TLI_GEOM_BYTES, "avgpool2d geometry fits a layer");

static const tli_field avg_fields[] = {
    {"pool_h", TLI_FIELD_U32, offsetof(avg_cfg, p_h), 0, 2, NULL},
    {"pool_w", TLI_FIELD_U32, offsetof(avg_cfg, p_w), 0, 2, NULL},
    {"stride_h", TLI_FIELD_U32, offsetof(avg_cfg, s_h), 0, 0, NULL},
    {"stride_w", TLI_FIELD_U32, offsetof(avg_cfg, s_w), 0, 0, NULL},
    {"padding", TLI_FIELD_ENUM, offsetof(avg_cfg, padding), TL_PAD_SAME, TL_PAD_VALID, tli_padding_names},
    {"count_include_pad", TLI_FIELD_BOOL, offsetof(avg_cfg, count_include_pad), 0, 0, NULL},
};

static tl_status avg_build(tl_layer *l)
{
    avg_cfg *c = (avg_cfg *)l->cfg;
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
    c->count_include_pad = c->count_include_pad ? 1 : 0;
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

static size_t avg_scratch_bytes(const tl_layer *l, size_t batch, uint32_t threads, bool training)
{
    (void)l, (void)batch, (void)threads, (void)training;
    return 0;
}

static void avg_forward(tl_layer *l, const tli_exec *ex, const float *const *x, float *y, tl_activation act)
{
    (void)act;
    const avg_cfg *c = (const avg_cfg *)l->cfg;
    tli_avgpool_forward(ex->threads, (const tli_pool_geom *)l->geom, c->count_include_pad != 0, x[0], ex->batch, y);
}

static void avg_backward(tl_layer *l, const tli_exec *ex, const float *const *x, const float *y, float *dy,
                         float *const *dx, tl_activation act, bool param_grads)
{
    (void)x, (void)y, (void)act, (void)param_grads;
    const avg_cfg *c = (const avg_cfg *)l->cfg;
    if (dx[0])
        tli_avgpool_backward(ex->threads, (const tli_pool_geom *)l->geom, c->count_include_pad != 0, dy, ex->batch,
                             dx[0]);
}

static void avg_from_options(void *cfg, tl_activation *act, int *use_bias, const void *opts)
{
    const tl_avgpool2d_options *o = opts;
    avg_cfg *c = cfg;
    *c = (avg_cfg){o->pool_h, o->pool_w, o->stride_h, o->stride_w, (uint32_t)o->padding,
                   o->count_include_pad ? 1u : 0u};
    *act = TL_ACT_LINEAR;
    *use_bias = 0;
}

const tli_layer_ops tli_avgpool2d_ops = {
    .kind = TL_LAYER_AVGPOOL2D,
    .type_name = "avgpool2d",
    .auto_name = "average_pooling2d",
    .cfg_size = sizeof(avg_cfg),
    .fields = avg_fields,
    .nfields = sizeof avg_fields / sizeof avg_fields[0],
    .min_inputs = 1,
    .max_inputs = 1,
    .build = avg_build,
    .scratch_bytes = avg_scratch_bytes,
    .forward = avg_forward,
    .backward = avg_backward,
    .from_options = avg_from_options,
};
