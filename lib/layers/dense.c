/* dense.c - fully connected layer: y = act(x W + b), W is (inputs, units),
 * any activation fused. An activation whose derivative needs the
 * pre-activation z = x W + b (tli_act_needs_input: leaky_relu, silu,
 * hard_swish) has z kept in the layer's scratch in training. */
#include <stddef.h>
#include <string.h>

#include "../io/onnx_export.h"
#include "layer.h"

typedef struct dense_cfg {
    uint32_t units;
    /* since 1.1 (format 1.1 fields) */
    uint32_t k_init, b_init; /* tl_initializer; TL_INIT_DEFAULT: Glorot-uniform, zeros */
    float alpha;             /* leaky_relu's slope (activation_alpha) */
} dense_cfg;

_Static_assert(sizeof(dense_cfg) <= TLI_CFG_BYTES, "dense settings fit a layer");

/* The order is the checkpoint's: fields are only ever appended. */
static const tli_field dense_fields[] = {
    {"units", TLI_FIELD_U32, offsetof(dense_cfg, units), 0, 0, NULL},
    /* 1.1 */
    {"kernel_initializer", TLI_FIELD_ENUM, offsetof(dense_cfg, k_init), TLI_INIT_MAX, TL_INIT_DEFAULT,
     tli_initializer_names},
    {"bias_initializer", TLI_FIELD_ENUM, offsetof(dense_cfg, b_init), TLI_INIT_MAX, TL_INIT_DEFAULT,
     tli_initializer_names},
    {"activation_alpha", TLI_FIELD_F32, offsetof(dense_cfg, alpha), 0, TLI_ACT_ALPHA_DEFAULT_BITS, NULL},
};

static tl_status dense_build(tl_layer *l)
{
    char sb[64];
    dense_cfg *c = (dense_cfg *)l->cfg;
    uint32_t units = c->units;
    if (units == 0)
        return tli_error(TL_EINVAL, TLI_LFMT ": units must be > 0", TLI_LARG(l));
    tl_status st = tli_check_initializer(l, "kernel_initializer", c->k_init);
    if (st == TL_OK)
        st = tli_check_initializer(l, "bias_initializer", c->b_init);
    if (st == TL_OK)
        st = tli_check_act_alpha(l, &c->alpha);
    if (st)
        return st;
    if (l->in_shape.rank != 1)
        return tli_error(TL_ESHAPE, TLI_LFMT " needs a flat input, got %s; add a flatten layer first", TLI_LARG(l),
                         tli_shape_str(&l->in_shape, sb, sizeof sb));
    uint64_t kernel = (uint64_t)l->in_size * units;
    if (kernel > TLI_MAX_ELEMS)
        return tli_error(TL_ETOOBIG, TLI_LFMT ": kernel %zu x %u exceeds 2^31 values", TLI_LARG(l), l->in_size,
                         units);
    l->out_shape = tli_shape1(units);
    l->out_size = units;
    /* The kernel's fans: inputs and units. */
    tli_tensor_set(l, 0, "kernel", "weight", TLI_ROLE_PARAM, tli_init_resolve(c->k_init, TLI_INIT_GLOROT_UNIFORM),
                   TLI_TORCH_DENSE_KERNEL, (tl_shape){2, {(uint32_t)l->in_size, units, 0, 0}});
    if (l->use_bias) {
        tli_tensor_set(l, 1, "bias", "bias", TLI_ROLE_PARAM, tli_init_resolve(c->b_init, TLI_INIT_ZEROS),
                       TLI_TORCH_SAME, tli_shape1(units));
        tli_tensor_set_fans(l, 1, 0);
        l->bias_index = 1;
    }
    return TL_OK;
}

/* In training, z (batch x units) when the activation needs it. */
static size_t dense_scratch_bytes(const tl_layer *l, size_t batch, uint32_t threads, bool training)
{
    (void)threads;
    size_t z = 0;
    if (training && tli_act_needs_input(l->act) &&
        (!tli_mul_ok(batch, l->out_size, &z) || !tli_mul_ok(z, sizeof(float), &z)))
        return SIZE_MAX;
    return z;
}

static void dense_forward(tl_layer *l, const tli_exec *ex, const float *const *x, float *y, tl_activation act)
{
    const size_t k = l->in_size, n = l->out_size;
    const float alpha = ((const dense_cfg *)l->cfg)->alpha;
    const float *bias = l->use_bias ? l->params[1].value : NULL;
    float *z = ex->training && tli_act_needs_input(act) ? l->scratch : NULL;
    tli_gemm(ex->threads, ex->batch, n, k, 1.0f, x[0], (ptrdiff_t)k, 1, l->params[0].value, (ptrdiff_t)n, 1, 0.0f,
             z ? z : y, (ptrdiff_t)n, 1);
    if (z)
        tli_bias_act_forward_keep(ex->threads, z, bias, y, ex->batch, n, act, alpha);
    else
        tli_bias_act_forward(ex->threads, y, bias, ex->batch, n, act, alpha);
}

static void dense_backward(tl_layer *l, const tli_exec *ex, const float *const *x, const float *y, float *dy,
                           float *const *dx, tl_activation act, bool param_grads)
{
    const size_t k = l->in_size, n = l->out_size, m = ex->batch;
    const float *z = tli_act_needs_input(act) ? l->scratch : NULL;
    tli_act_backward(ex->threads, act, ((const dense_cfg *)l->cfg)->alpha, z, y, dy, m, n,
                     param_grads && l->use_bias && !ex->bias_grad_done ? l->params[1].grad : NULL);
    if (param_grads) /* dW (k x n) = x^T (k x m) * dz (m x n) */
        tli_gemm(ex->threads, k, n, m, 1.0f, x[0], 1, (ptrdiff_t)k, dy, (ptrdiff_t)n, 1, 0.0f, l->params[0].grad,
                 (ptrdiff_t)n, 1);
    if (dx[0]) /* dx (m x k) = dz (m x n) * W^T (n x k) */
        tli_gemm(ex->threads, m, k, n, 1.0f, dy, (ptrdiff_t)n, 1, l->params[0].value, 1, (ptrdiff_t)n, 0.0f, dx[0],
                 (ptrdiff_t)k, 1);
}

static void dense_set_units(void *cfg, uint32_t units)
{
    ((dense_cfg *)cfg)->units = units;
}

static void dense_from_options(void *cfg, tl_activation *act, int *use_bias, const void *opts)
{
    const tl_dense_options *o = opts;
    dense_cfg *c = cfg;
    c->units = o->units;
    c->k_init = (uint32_t)o->kernel_initializer;
    c->b_init = (uint32_t)o->bias_initializer;
    c->alpha = o->activation_alpha;
    *act = o->activation;
    *use_bias = o->use_bias;
}

static void dense_get_options(const tl_layer *l, void *opts, unsigned int version)
{
    tl_dense_options *o = opts;
    o->units = ((const dense_cfg *)l->cfg)->units;
    o->activation = l->act;
    o->use_bias = l->use_bias;
    o->name = l->name;
    if (version >= 2) {
        const dense_cfg *c = (const dense_cfg *)l->cfg;
        o->input = NULL;
        o->kernel_initializer = (tl_initializer)c->k_init;
        o->bias_initializer = (tl_initializer)c->b_init;
        o->activation_alpha = c->alpha;
    }
}

/* ONNX: Gemm(x, W, b) with transB = 1, W as PyTorch's Linear has it
 * (units, inputs), then the activation. When the input is a flatten left in
 * ONNX's (c, h, w) order, the kernel's rows are permuted to it: row
 * (y * w + x) * c + k of libtl's kernel is column (k * h + y) * w + x.
 * With fold_batchnorm, a linear dense layer whose only consumer is a
 * per-channel affine layer (batchnorm) takes it into its weights, as
 * conv2d does. */
static tl_status dense_onnx(const tl_layer *l, tli_onnx *g)
{
    const dense_cfg *c = (const dense_cfg *)l->cfg;
    const size_t n_in = l->in_size, units = c->units;
    tl_shape hwc;
    const bool chw = tli_onnx_chw_input(g, l, 0, &hwc);
    const tl_layer *bn;
    float *scale;
    const tl_status fs = tli_onnx_fold_affine(g, l, units, &scale, &bn);
    if (fs != TL_OK)
        return fs;
    const float *shift = scale ? scale + units : NULL;
    const char *out = bn ? tli_onnx_out(g, bn) : tli_onnx_out(g, l);
    const char *y = l->act == TL_ACT_LINEAR ? out : tli_onnx_sub(g, l, "gemm");
    const char *in[3] = {tli_onnx_in(g, l, 0), tli_onnx_weight(g, l, "weight"),
                         l->use_bias || bn ? tli_onnx_weight(g, l, "bias") : NULL};
    const int64_t wd[2] = {(int64_t)units, (int64_t)n_in};
    float *w = tli_onnx_init(g, in[1], 2, wd);
    const float *k = l->params[0].value; /* (inputs, units) */
    if (w) {
        const size_t hh = chw ? hwc.dims[0] : 1, ww = chw ? hwc.dims[1] : 1, cc = chw ? hwc.dims[2] : n_in;
        for (size_t r = 0; r < n_in; r++) {
            const size_t ch = r % cc, pos = r / cc; /* pos = y * w + x */
            const size_t q = chw ? (ch * hh + pos / ww) * ww + pos % ww : r;
            for (size_t o = 0; o < units; o++)
                w[o * n_in + q] = k[r * units + o] * (bn ? scale[o] : 1.0f);
        }
    }
    tli_onnx_init_end(g);
    if (in[2]) {
        const int64_t bd[1] = {(int64_t)units};
        float *b = tli_onnx_init(g, in[2], 1, bd);
        for (size_t o = 0; b && o < units; o++) {
            const float b0 = l->use_bias ? l->params[1].value[o] : 0.0f;
            b[o] = bn ? b0 * scale[o] + shift[o] : b0;
        }
        tli_onnx_init_end(g);
    }
    tli_free(scale);
    tli_onnx_node(g, "Gemm", l->name, in, in[2] ? 3 : 2, y);
    tli_onnx_attr_int(g, "transB", 1);
    tli_onnx_node_end(g);
    if (bn)
        tli_onnx_alias(g, l, out);
    if (l->act != TL_ACT_LINEAR)
        tli_onnx_activation(g, l, l->act, c->alpha, y, out);
    return TL_OK;
}

/* in_size * units multiply-adds forward, as many for each gradient. */
static void dense_flops(const tl_layer *l, double out[3])
{
    out[0] = out[1] = out[2] = 2.0 * (double)l->in_size * (double)l->out_size;
}

const tli_layer_ops tli_dense_ops = {
    .kind = TL_LAYER_DENSE,
    .type_name = "dense",
    .auto_name = "dense",
    .cfg_size = sizeof(dense_cfg),
    .fields = dense_fields,
    .nfields = sizeof dense_fields / sizeof dense_fields[0],
    .nfields_v1_0 = 1,
    .min_inputs = 1,
    .max_inputs = 1,
    .has_activation = true,
    .has_bias = true,
    .build = dense_build,
    .scratch_bytes = dense_scratch_bytes,
    .forward = dense_forward,
    .backward = dense_backward,
    .set_units = dense_set_units,
    .get_options = dense_get_options,
    .from_options = dense_from_options,
    .onnx_export = dense_onnx,
    .onnx_flat = TLI_ONNX_FLAT_TAKES,
    .flops = dense_flops,
};
