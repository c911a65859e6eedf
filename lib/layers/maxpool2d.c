/* maxpool2d.c - max pooling; training keeps each window's arg-max. */
#include <stddef.h>

#include "../io/onnx_export.h"
#include "layer.h"

typedef struct pool_cfg {
    tli_pool_window w; /* pads since 1.1 */
} pool_cfg;

_Static_assert(sizeof(pool_cfg) <= TLI_CFG_BYTES, "maxpool2d settings fit a layer");
_Static_assert(sizeof(tli_pool_geom) <= TLI_GEOM_BYTES, "maxpool2d geometry fits a layer");

static const tli_field pool_fields[] = {
    {"pool_h", TLI_FIELD_U32, offsetof(pool_cfg, w.p_h), 0, 2, NULL},
    {"pool_w", TLI_FIELD_U32, offsetof(pool_cfg, w.p_w), 0, 2, NULL},
    {"stride_h", TLI_FIELD_U32, offsetof(pool_cfg, w.s_h), 0, 0, NULL},
    {"stride_w", TLI_FIELD_U32, offsetof(pool_cfg, w.s_w), 0, 0, NULL},
    {"padding", TLI_FIELD_ENUM, offsetof(pool_cfg, w.padding), TL_PAD_EXPLICIT, TL_PAD_VALID, tli_padding_names},
    {"pad_top", TLI_FIELD_U32, offsetof(pool_cfg, w.pad_t), 0, 0, NULL},
    {"pad_bottom", TLI_FIELD_U32, offsetof(pool_cfg, w.pad_b), 0, 0, NULL},
    {"pad_left", TLI_FIELD_U32, offsetof(pool_cfg, w.pad_l), 0, 0, NULL},
    {"pad_right", TLI_FIELD_U32, offsetof(pool_cfg, w.pad_r), 0, 0, NULL},
};

static tl_status pool_build(tl_layer *l)
{
    return tli_pool_window_build(l, &((pool_cfg *)l->cfg)->w, (tli_pool_geom *)l->geom);
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
    *c = (pool_cfg){{o->pool_h, o->pool_w, o->stride_h, o->stride_w, (uint32_t)o->padding, o->pad_top,
                     o->pad_bottom, o->pad_left, o->pad_right}};
    *act = TL_ACT_LINEAR;
    *use_bias = 0;
}

static void pool_get_options(const tl_layer *l, void *opts, unsigned int version)
{
    const pool_cfg *c = (const pool_cfg *)l->cfg;
    tl_maxpool2d_options *o = opts;
    o->pool_h = c->w.p_h;
    o->pool_w = c->w.p_w;
    o->stride_h = c->w.s_h;
    o->stride_w = c->w.s_w;
    o->padding = (tl_padding)c->w.padding;
    o->name = l->name;
    if (version >= 2)
        o->input = NULL;
    if (version >= 3) {
        o->pad_top = c->w.pad_t;
        o->pad_bottom = c->w.pad_b;
        o->pad_left = c->w.pad_l;
        o->pad_right = c->w.pad_r;
    }
}

/* ONNX: MaxPool (padded cells never win, as here). */
static tl_status pool_onnx(const tl_layer *l, tli_onnx *g)
{
    tli_pool_onnx(g, l, "MaxPool");
    tli_onnx_node_end(g);
    return TL_OK;
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
    .onnx_export = pool_onnx,
};
