/* avgpool2d.c - average pooling. Under same padding a border window covers
 * zeros: count_include_pad says whether they count in the divisor
 * (PyTorch's default) or not (Keras'; libtl's default). */
#include <stddef.h>

#include "../io/onnx_export.h"
#include "layer.h"

typedef struct avg_cfg {
    tli_pool_window w;
    uint32_t count_include_pad;
} avg_cfg;

_Static_assert(sizeof(avg_cfg) <= TLI_CFG_BYTES, "avgpool2d settings fit a layer");
_Static_assert(sizeof(tli_pool_geom) <= TLI_GEOM_BYTES, "avgpool2d geometry fits a layer");

static const tli_field avg_fields[] = {
    {"pool_h", TLI_FIELD_U32, offsetof(avg_cfg, w.p_h), 0, 2, NULL},
    {"pool_w", TLI_FIELD_U32, offsetof(avg_cfg, w.p_w), 0, 2, NULL},
    {"stride_h", TLI_FIELD_U32, offsetof(avg_cfg, w.s_h), 0, 0, NULL},
    {"stride_w", TLI_FIELD_U32, offsetof(avg_cfg, w.s_w), 0, 0, NULL},
    {"padding", TLI_FIELD_ENUM, offsetof(avg_cfg, w.padding), TL_PAD_EXPLICIT, TL_PAD_VALID, tli_padding_names},
    {"count_include_pad", TLI_FIELD_BOOL, offsetof(avg_cfg, count_include_pad), 0, 0, NULL},
    {"pad_top", TLI_FIELD_U32, offsetof(avg_cfg, w.pad_t), 0, 0, NULL},
    {"pad_bottom", TLI_FIELD_U32, offsetof(avg_cfg, w.pad_b), 0, 0, NULL},
    {"pad_left", TLI_FIELD_U32, offsetof(avg_cfg, w.pad_l), 0, 0, NULL},
    {"pad_right", TLI_FIELD_U32, offsetof(avg_cfg, w.pad_r), 0, 0, NULL},
};

static tl_status avg_build(tl_layer *l)
{
    avg_cfg *c = (avg_cfg *)l->cfg;
    c->count_include_pad = c->count_include_pad ? 1 : 0;
    return tli_pool_window_build(l, &c->w, (tli_pool_geom *)l->geom);
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
    *c = (avg_cfg){{o->pool_h, o->pool_w, o->stride_h, o->stride_w, (uint32_t)o->padding, o->pad_top, o->pad_bottom,
                    o->pad_left, o->pad_right},
                   o->count_include_pad ? 1u : 0u};
    *act = TL_ACT_LINEAR;
    *use_bias = 0;
}

/* ONNX: AveragePool; count_include_pad means the same there (every window
 * lies inside the padded input, so its divisor is the pool's area). */
static tl_status avg_onnx(const tl_layer *l, tli_onnx *g)
{
    tli_pool_onnx(g, l, "AveragePool");
    tli_onnx_attr_int(g, "count_include_pad", ((const avg_cfg *)l->cfg)->count_include_pad ? 1 : 0);
    tli_onnx_node_end(g);
    return TL_OK;
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
    .onnx_export = avg_onnx,
};
