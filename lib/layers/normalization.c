/*
 * normalization.c - fixed per-channel normalization of the last axis, the
 * preprocessing inside the model: y = (x * scale + offset - mean[k]) /
 * std[k] for channel k of an (h, w, c) input, or unit k of a flat one.
 * Keras' Normalization (with std = sqrt(variance)) after its Rescaling
 * (scale, offset); torchvision's Normalize(mean, std) after ToTensor's
 * 1/255.
 *
 * Settings: scale (F32, 1), offset (F32, 0), channels (U32: the length of
 * the statistics, which build sets to the input's last axis when it is 0
 * and otherwise checks against it).
 *
 * Tensors: mean (c, zeros) and std (c, ones), both state - never trained,
 * saved, copied, transferred and loaded like batchnorm's moving
 * statistics - and preset: the user sets them (options, adapt,
 * tl_layer_set_weights), so a structure clone copies them and
 * tl_model_init_params keeps them. check_values refuses a mean that is
 * not finite and a std that is not finite and > 0, naming the channel.
 *
 * Forward is one vectorized pass (tli_normalize_forward); backward is
 * dx = dy * scale / std, with no parameter gradients. The layer has no
 * parameter, so it never "learns": the engine runs its backward only
 * when a layer below it learns. Scratch: the kernels' per-channel pattern.
 */
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "../io/onnx_export.h"
#include "layer.h"

typedef struct norm_cfg {
    float scale;
    float offset;
    uint32_t channels;
} norm_cfg;

typedef struct norm_geom {
    uint32_t c;      /* channels: the last axis */
    uint32_t period; /* tli_normalize_period(c) */
} norm_geom;

_Static_assert(sizeof(norm_cfg) <= TLI_CFG_BYTES, "normalization settings fit a layer");
_Static_assert(sizeof(norm_geom) <= TLI_GEOM_BYTES, "normalization geometry fits a layer");

enum { NORM_MEAN = 0, NORM_STD = 1 };

/* The order is the checkpoint's: fields are only ever appended. */
static const tli_field norm_fields[] = {
    {"scale", TLI_FIELD_F32, offsetof(norm_cfg, scale), 0, 0x3f800000u /* 1.0f */, NULL},
    {"offset", TLI_FIELD_F32, offsetof(norm_cfg, offset), 0, 0, NULL},
    {"channels", TLI_FIELD_U32, offsetof(norm_cfg, channels), 0, 0, NULL},
};

static tl_status norm_build(tl_layer *l)
{
    norm_cfg *c = (norm_cfg *)l->cfg;
    norm_geom *g = (norm_geom *)l->geom;
    char sb[64];
    if (!isfinite(c->scale) || c->scale == 0.0f)
        return tli_error(TL_EINVAL, TLI_LFMT ": scale %g must be finite and not 0 (1/255 = 0.00392 for 8-bit pixels)",
                         TLI_LARG(l), (double)c->scale);
    if (!isfinite(c->offset))
        return tli_error(TL_EINVAL, TLI_LFMT ": offset %g must be finite", TLI_LARG(l), (double)c->offset);
    if (l->in_shape.rank == 0 || l->in_size == 0)
        return tli_error(TL_ESHAPE, TLI_LFMT ": the input has no values", TLI_LARG(l));
    const uint32_t in_c = l->in_shape.dims[l->in_shape.rank - 1];
    if (c->channels == 0)
        c->channels = in_c;
    else if (c->channels != in_c)
        return tli_error(TL_ESHAPE, TLI_LFMT ": statistics of %u channels, but the input %s has %u on its last axis",
                         TLI_LARG(l), c->channels, tli_shape_str(&l->in_shape, sb, sizeof sb), in_c);
    g->c = in_c;
    g->period = (uint32_t)tli_normalize_period(in_c);
    l->out_shape = l->in_shape;
    l->out_size = l->in_size;
    tli_tensor_set(l, NORM_MEAN, "mean", "mean", TLI_ROLE_STATE, TLI_INIT_ZEROS, TLI_TORCH_SAME, tli_shape1(in_c));
    tli_tensor_set(l, NORM_STD, "std", "std", TLI_ROLE_STATE, TLI_INIT_ONES, TLI_TORCH_SAME, tli_shape1(in_c));
    tli_tensor_set_preset(l, NORM_MEAN);
    tli_tensor_set_preset(l, NORM_STD);
    return TL_OK;
}

static size_t norm_scratch_bytes(const tl_layer *l, size_t batch, uint32_t threads, bool training)
{
    (void)batch, (void)threads, (void)training;
    return (size_t)2 * ((const norm_geom *)l->geom)->period * sizeof(float);
}

static void norm_forward(tl_layer *l, const tli_exec *ex, const float *const *x, float *y, tl_activation act)
{
    (void)act;
    const norm_cfg *c = (const norm_cfg *)l->cfg;
    const norm_geom *g = (const norm_geom *)l->geom;
    tli_normalize_forward(ex->threads, x[0], y, ex->batch * l->in_size, g->c, c->scale, c->offset,
                          l->params[NORM_MEAN].value, l->params[NORM_STD].value, l->scratch);
}

static void norm_backward(tl_layer *l, const tli_exec *ex, const float *const *x, const float *y, float *dy,
                          float *const *dx, tl_activation act, bool param_grads)
{
    (void)x, (void)y, (void)act, (void)param_grads;
    if (dx[0] == NULL)
        return;
    const norm_cfg *c = (const norm_cfg *)l->cfg;
    const norm_geom *g = (const norm_geom *)l->geom;
    tli_normalize_backward(ex->threads, dy, dx[0], ex->batch * l->in_size, g->c, c->scale,
                           l->params[NORM_STD].value, l->scratch);
}

static tl_status norm_check_values(const tl_layer *l, size_t i, const float *v)
{
    const size_t n = l->params[i].count;
    for (size_t k = 0; k < n; k++) {
        if (i == NORM_MEAN && !isfinite(v[k]))
            return tli_error(TL_EINVAL, TLI_LFMT ": mean[%zu] = %g must be finite", TLI_LARG(l), k, (double)v[k]);
        if (i == NORM_STD && !(isfinite(v[k]) && v[k] > 0.0f))
            return tli_error(TL_EINVAL,
                             TLI_LFMT ": std[%zu] = %g must be finite and > 0 (a constant channel: give it 1)",
                             TLI_LARG(l), k, (double)v[k]);
    }
    return TL_OK;
}

static void norm_from_options(void *cfg, tl_activation *act, int *use_bias, const void *opts)
{
    const tl_normalization_options *o = opts;
    norm_cfg *c = cfg;
    *c = (norm_cfg){o->scale, o->offset, o->channels};
    *act = TL_ACT_LINEAR;
    *use_bias = 0;
}

/* ONNX: the same arithmetic as the kernel, one operator per step:
 * Mul(scale) and Add(offset) when they are not 1 and 0, Sub(mean),
 * Div(std); mean and std per channel ((c, 1, 1) on an image). */
static tl_status norm_onnx(const tl_layer *l, tli_onnx *g)
{
    const norm_cfg *c = (const norm_cfg *)l->cfg;
    const uint32_t ch = ((const norm_geom *)l->geom)->c;
    const char *x = tli_onnx_in(g, l, 0);
    static const char *const step[4] = {"Mul", "Add", "Sub", "Div"};
    static const char *const what[4] = {"scale", "offset", "mean", "std"};
    const bool on[4] = {c->scale != 1.0f, c->offset != 0.0f, true, true};
    int last = 3;
    for (int t = 0; t < 4; t++) {
        if (!on[t])
            continue;
        const char *in[2] = {x, tli_onnx_weight(g, l, what[t])};
        if (t < 2) {
            tli_onnx_scalar(g, in[1], t == 0 ? c->scale : c->offset);
        } else {
            int64_t d[3];
            float *v = tli_onnx_init(g, in[1], tli_onnx_channel_dims(&l->in_shape, ch, d), d);
            if (v)
                memcpy(v, l->params[t == 2 ? NORM_MEAN : NORM_STD].value, ch * sizeof *v);
            tli_onnx_init_end(g);
        }
        const char *y = t == last ? tli_onnx_out(g, l) : tli_onnx_sub(g, l, what[t]);
        tli_onnx_node(g, step[t], t == last ? l->name : tli_onnx_sub(g, l, step[t]), in, 2, y);
        tli_onnx_node_end(g);
        x = y;
    }
    return TL_OK;
}

const tli_layer_ops tli_normalization_ops = {
    .kind = TL_LAYER_NORMALIZATION,
    .type_name = "normalization",
    .auto_name = "normalization",
    .cfg_size = sizeof(norm_cfg),
    .fields = norm_fields,
    .nfields = sizeof norm_fields / sizeof norm_fields[0],
    .min_inputs = 1,
    .max_inputs = 1,
    .build = norm_build,
    .scratch_bytes = norm_scratch_bytes,
    .forward = norm_forward,
    .backward = norm_backward,
    .from_options = norm_from_options,
    .check_values = norm_check_values,
    .onnx_export = norm_onnx,
};
