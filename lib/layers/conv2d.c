/*
 * conv2d.c - 2-D convolution as im2col + one GEMM per batch.
 *
 * The arithmetic lives in lib/kernels (tli_conv_*): im2col + BLIS, or
 * direct AVX-512 kernels where the CPU has them. This file checks settings
 * and shapes, owns the parameters and picks the algorithm once.
 */
#include <stddef.h>

#include "layer.h"

typedef struct conv_cfg {
    uint32_t filters, k_h, k_w, s_h, s_w;
    uint32_t padding; /* tl_padding */
} conv_cfg;

typedef struct conv_geom {
    tli_conv_geom g;
    tli_conv_algo algo; /* chosen at build time for this CPU */
} conv_geom;

_Static_assert(sizeof(conv_cfg) <= TLI_CFG_BYTES, "conv2d settings fit a layer");
_Static_assert(sizeof(conv_geom) <= TLI_GEOM_BYTES, "conv2d geometry fits a layer");

/* The order is the checkpoint's: fields are only ever appended. */
static const tli_field conv_fields[] = {
    {"filters", TLI_FIELD_U32, offsetof(conv_cfg, filters), 0, 0, NULL},
    {"kernel_h", TLI_FIELD_U32, offsetof(conv_cfg, k_h), 0, 3, NULL},
    {"kernel_w", TLI_FIELD_U32, offsetof(conv_cfg, k_w), 0, 3, NULL},
    {"stride_h", TLI_FIELD_U32, offsetof(conv_cfg, s_h), 0, 1, NULL},
    {"stride_w", TLI_FIELD_U32, offsetof(conv_cfg, s_w), 0, 1, NULL},
    {"padding", TLI_FIELD_ENUM, offsetof(conv_cfg, padding), TL_PAD_SAME, TL_PAD_VALID, tli_padding_names},
};

static tl_status conv_build(tl_layer *l)
{
    const conv_cfg *c = (const conv_cfg *)l->cfg;
    conv_geom *cg = (conv_geom *)l->geom;
    tli_conv_geom *g = &cg->g;
    char sb[64];
    if (c->filters == 0 || c->k_h == 0 || c->k_w == 0 || c->s_h == 0 || c->s_w == 0)
        return tli_error(TL_EINVAL, TLI_LFMT ": filters (%u), kernel (%ux%u) and strides (%ux%u) must be > 0",
                         TLI_LARG(l), c->filters, c->k_h, c->k_w, c->s_h, c->s_w);
    if (c->padding != TL_PAD_VALID && c->padding != TL_PAD_SAME)
        return tli_error(TL_EINVAL, TLI_LFMT ": unknown padding %u", TLI_LARG(l), c->padding);
    if (l->in_shape.rank != 3)
        return tli_error(TL_ESHAPE, TLI_LFMT " needs an (h, w, c) input, got %s", TLI_LARG(l),
                         tli_shape_str(&l->in_shape, sb, sizeof sb));
    g->in_h = l->in_shape.dims[0];
    g->in_w = l->in_shape.dims[1];
    g->in_c = l->in_shape.dims[2];
    g->k_h = c->k_h;
    g->k_w = c->k_w;
    g->s_h = c->s_h;
    g->s_w = c->s_w;
    if (!tli_window(g->in_h, g->k_h, g->s_h, (tl_padding)c->padding, &g->out_h, &g->pad_t) ||
        !tli_window(g->in_w, g->k_w, g->s_w, (tl_padding)c->padding, &g->out_w, &g->pad_l))
        return tli_error(TL_ESHAPE, TLI_LFMT ": kernel %ux%u is larger than its input %s with valid padding",
                         TLI_LARG(l), c->k_h, c->k_w, tli_shape_str(&l->in_shape, sb, sizeof sb));
    uint64_t out = tli_mul_sat(tli_mul_sat(g->out_h, g->out_w), c->filters);
    uint64_t kernel = tli_mul_sat(tli_mul_sat(tli_mul_sat(c->k_h, c->k_w), g->in_c), c->filters);
    if (out > TLI_MAX_ELEMS || kernel > TLI_MAX_ELEMS)
        return tli_error(TL_ETOOBIG, TLI_LFMT ": output or kernel exceeds 2^31 values", TLI_LARG(l));
    l->out_shape = tli_shape3(g->out_h, g->out_w, c->filters);
    l->out_size = (size_t)out;
    cg->algo = tli_conv_choose(g, c->filters);
    tli_tensor_set(l, 0, "kernel", "weight", TLI_ROLE_PARAM, TLI_INIT_GLOROT_UNIFORM, TLI_TORCH_CONV_KERNEL,
                   (tl_shape){4, {c->k_h, c->k_w, g->in_c, c->filters}});
    if (l->use_bias) {
        tli_tensor_set(l, 1, "bias", "bias", TLI_ROLE_PARAM, TLI_INIT_ZEROS, TLI_TORCH_SAME,
                       tli_shape1(c->filters));
        l->bias_index = 1;
    }
    return TL_OK;
}

static size_t conv_scratch_bytes(const tl_layer *l, size_t batch, uint32_t threads, bool training)
{
    const conv_geom *cg = (const conv_geom *)l->geom;
    const conv_cfg *c = (const conv_cfg *)l->cfg;
    /* A layer on the model's input never needs an input gradient. */
    bool need_dx = training && l->inputs[0] != TLI_INPUT_MODEL;
    return tli_conv_scratch_bytes(cg->algo, &cg->g, c->filters, batch, threads, training, need_dx);
}

static void conv_forward(tl_layer *l, const tli_exec *ex, const float *const *x, float *y, tl_activation act)
{
    const conv_geom *cg = (const conv_geom *)l->geom;
    const conv_cfg *c = (const conv_cfg *)l->cfg;
    tli_conv_forward(ex->threads, cg->algo, &cg->g, c->filters, x[0], l->params[0].value,
                     l->use_bias ? l->params[1].value : NULL, act, y, ex->batch, l->scratch);
}

static void conv_backward(tl_layer *l, const tli_exec *ex, const float *const *x, const float *y, float *dy,
                          float *const *dx, tl_activation act, bool param_grads)
{
    const conv_geom *cg = (const conv_geom *)l->geom;
    const size_t m = ex->batch * cg->g.out_h * cg->g.out_w;
    const uint32_t n = ((const conv_cfg *)l->cfg)->filters;
    tli_act_backward(ex->threads, act, y, dy, m, n,
                     param_grads && l->use_bias && !ex->bias_grad_done ? l->params[1].grad : NULL);
    tli_conv_backward(ex->threads, cg->algo, &cg->g, n, x[0], dy, l->params[0].value,
                      param_grads ? l->params[0].grad : NULL, dx[0], ex->batch, l->scratch);
}

static void conv_from_options(void *cfg, tl_activation *act, int *use_bias, const void *opts)
{
    const tl_conv2d_options *o = opts;
    conv_cfg *c = cfg;
    *c = (conv_cfg){o->filters, o->kernel_h, o->kernel_w, o->stride_h, o->stride_w, (uint32_t)o->padding};
    *act = o->activation;
    *use_bias = o->use_bias;
}

static void conv_get_options(const tl_layer *l, void *opts, unsigned int version)
{
    const conv_cfg *c = (const conv_cfg *)l->cfg;
    tl_conv2d_options *o = opts;
    o->filters = c->filters;
    o->kernel_h = c->k_h;
    o->kernel_w = c->k_w;
    o->stride_h = c->s_h;
    o->stride_w = c->s_w;
    o->padding = (tl_padding)c->padding;
    o->activation = l->act;
    o->use_bias = l->use_bias;
    o->name = l->name;
    if (version >= 2)
        o->input = NULL; /* a file's layer has no handle */
}

const tli_layer_ops tli_conv2d_ops = {
    .kind = TL_LAYER_CONV2D,
    .type_name = "conv2d",
    .auto_name = "conv2d",
    .cfg_size = sizeof(conv_cfg),
    .fields = conv_fields,
    .nfields = sizeof conv_fields / sizeof conv_fields[0],
    .nfields_v1_0 = 6,
    .min_inputs = 1,
    .max_inputs = 1,
    .has_activation = true,
    .has_bias = true,
    .build = conv_build,
    .scratch_bytes = conv_scratch_bytes,
    .forward = conv_forward,
    .backward = conv_backward,
    .from_options = conv_from_options,
    .get_options = conv_get_options,
};
