/*
 * conv2d.c - 2-D convolution: strides, dilation, valid / same / explicit
 * zero padding, groups (depthwise when groups == input channels), any
 * activation fused.
 *
 * The arithmetic lives in lib/kernels (tli_conv_*): im2col + BLIS (one GEMM
 * per group), direct AVX-512 kernels where the CPU has them, or the direct
 * depthwise kernels. This file checks settings and shapes, owns the
 * parameters and picks the algorithm once. An activation whose derivative
 * needs the pre-activation z (tli_act_needs_input: leaky_relu, silu,
 * hard_swish) has z kept in training, before the kernels' scratch.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "../io/onnx_export.h"
#include "layer.h"

typedef struct conv_cfg {
    uint32_t filters, k_h, k_w, s_h, s_w;
    uint32_t padding; /* tl_padding */
    /* since 1.1 (format 1.1 fields) */
    uint32_t groups;
    uint32_t d_h, d_w;
    uint32_t pad_t, pad_b, pad_l, pad_r; /* TL_PAD_EXPLICIT only */
    uint32_t k_init, b_init;             /* tl_initializer; TL_INIT_DEFAULT: Glorot-uniform, zeros */
    float alpha;                         /* leaky_relu's slope (activation_alpha) */
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
    {"padding", TLI_FIELD_ENUM, offsetof(conv_cfg, padding), TL_PAD_EXPLICIT, TL_PAD_VALID, tli_padding_names},
    /* 1.1 */
    {"groups", TLI_FIELD_U32, offsetof(conv_cfg, groups), 0, 1, NULL},
    {"dilation_h", TLI_FIELD_U32, offsetof(conv_cfg, d_h), 0, 1, NULL},
    {"dilation_w", TLI_FIELD_U32, offsetof(conv_cfg, d_w), 0, 1, NULL},
    {"pad_top", TLI_FIELD_U32, offsetof(conv_cfg, pad_t), 0, 0, NULL},
    {"pad_bottom", TLI_FIELD_U32, offsetof(conv_cfg, pad_b), 0, 0, NULL},
    {"pad_left", TLI_FIELD_U32, offsetof(conv_cfg, pad_l), 0, 0, NULL},
    {"pad_right", TLI_FIELD_U32, offsetof(conv_cfg, pad_r), 0, 0, NULL},
    {"kernel_initializer", TLI_FIELD_ENUM, offsetof(conv_cfg, k_init), TLI_INIT_MAX, TL_INIT_DEFAULT,
     tli_initializer_names},
    {"bias_initializer", TLI_FIELD_ENUM, offsetof(conv_cfg, b_init), TLI_INIT_MAX, TL_INIT_DEFAULT,
     tli_initializer_names},
    {"activation_alpha", TLI_FIELD_F32, offsetof(conv_cfg, alpha), 0, TLI_ACT_ALPHA_DEFAULT_BITS, NULL},
};

/* Output length and the padding before / after along one axis of n cells,
 * for a kernel spanning `span` cells (dilation included) at stride s.
 * False when the (padded) input is shorter than the span. */
static bool conv_axis(uint32_t n, uint32_t span, uint32_t s, tl_padding pad, uint32_t before, uint32_t after,
                      uint32_t *out, uint32_t *pad_before, uint32_t *pad_after)
{
    if (pad == TL_PAD_EXPLICIT) {
        uint64_t padded = (uint64_t)n + before + after;
        if (padded < span)
            return false;
        *out = (uint32_t)((padded - span) / s + 1);
        *pad_before = before;
        *pad_after = after;
        return true;
    }
    if (!tli_window(n, span, s, pad, out, pad_before))
        return false;
    /* 'same': what the last window needs past the end (TensorFlow puts the
     * odd cell there); 'valid': the last window ends inside. */
    uint64_t end = (uint64_t)(*out - 1) * s + span;
    *pad_after = end > (uint64_t)n + *pad_before ? (uint32_t)(end - n - *pad_before) : 0;
    return true;
}

static tl_status conv_build(tl_layer *l)
{
    conv_cfg *c = (conv_cfg *)l->cfg;
    conv_geom *cg = (conv_geom *)l->geom;
    tli_conv_geom *g = &cg->g;
    char sb[64];
    if (c->filters == 0 || c->k_h == 0 || c->k_w == 0 || c->s_h == 0 || c->s_w == 0)
        return tli_error(TL_EINVAL, TLI_LFMT ": filters (%u), kernel (%ux%u) and strides (%ux%u) must be > 0",
                         TLI_LARG(l), c->filters, c->k_h, c->k_w, c->s_h, c->s_w);
    if (c->groups == 0 || c->d_h == 0 || c->d_w == 0)
        return tli_error(TL_EINVAL, TLI_LFMT ": groups (%u) and dilation (%ux%u) must be > 0", TLI_LARG(l),
                         c->groups, c->d_h, c->d_w);
    if (c->padding != TL_PAD_VALID && c->padding != TL_PAD_SAME && c->padding != TL_PAD_EXPLICIT)
        return tli_error(TL_EINVAL, TLI_LFMT ": unknown padding %u", TLI_LARG(l), c->padding);
    tl_status st = tli_check_initializer(l, "kernel_initializer", c->k_init);
    if (st == TL_OK)
        st = tli_check_initializer(l, "bias_initializer", c->b_init);
    if (st == TL_OK)
        st = tli_check_act_alpha(l, &c->alpha);
    if (st)
        return st;
    const bool pads = c->pad_t || c->pad_b || c->pad_l || c->pad_r;
    if (pads && c->padding != TL_PAD_EXPLICIT)
        return tli_error(TL_EINVAL, TLI_LFMT ": pads (top %u, bottom %u, left %u, right %u) need padding 'explicit', "
                         "not '%s'", TLI_LARG(l), c->pad_t, c->pad_b, c->pad_l, c->pad_r,
                         tli_padding_names[c->padding]);
    /* Explicit padding of nothing is valid padding: stored as such, so
     * that a file libtl 1.0 could read stays one. */
    if (c->padding == TL_PAD_EXPLICIT && !pads)
        c->padding = TL_PAD_VALID;
    /* The kernel's extent with its dilation: d*(k-1) + 1 cells. */
    const uint64_t span_h = (uint64_t)c->d_h * (c->k_h - 1) + 1, span_w = (uint64_t)c->d_w * (c->k_w - 1) + 1;
    if (span_h > UINT32_MAX || span_w > UINT32_MAX)
        return tli_error(TL_EINVAL, TLI_LFMT ": dilation %ux%u of a %ux%u kernel is too large", TLI_LARG(l),
                         c->d_h, c->d_w, c->k_h, c->k_w);
    static const char *const side[4] = {"pad_top", "pad_bottom", "pad_left", "pad_right"};
    const uint32_t pad_v[4] = {c->pad_t, c->pad_b, c->pad_l, c->pad_r};
    for (int i = 0; i < 4; i++) {
        uint64_t span = i < 2 ? span_h : span_w;
        if (pad_v[i] > span)
            return tli_error(TL_EINVAL, TLI_LFMT ": %s %u is larger than the kernel's %s (%llu%s)", TLI_LARG(l),
                             side[i], pad_v[i], i < 2 ? "height" : "width", (unsigned long long)span,
                             (i < 2 ? c->d_h : c->d_w) > 1 ? ", dilated" : "");
    }
    if (l->in_shape.rank != 3)
        return tli_error(TL_ESHAPE, TLI_LFMT " needs an (h, w, c) input, got %s", TLI_LARG(l),
                         tli_shape_str(&l->in_shape, sb, sizeof sb));
    g->in_h = l->in_shape.dims[0];
    g->in_w = l->in_shape.dims[1];
    g->in_c = l->in_shape.dims[2];
    if (g->in_c % c->groups != 0 || c->filters % c->groups != 0)
        return tli_error(TL_EINVAL, TLI_LFMT ": groups %u must divide the input channels (%u) and the filters (%u)",
                         TLI_LARG(l), c->groups, g->in_c, c->filters);
    g->k_h = c->k_h;
    g->k_w = c->k_w;
    g->s_h = c->s_h;
    g->s_w = c->s_w;
    g->d_h = c->d_h;
    g->d_w = c->d_w;
    g->groups = c->groups;
    const tl_padding pad = (tl_padding)c->padding;
    if (!conv_axis(g->in_h, (uint32_t)span_h, g->s_h, pad, c->pad_t, c->pad_b, &g->out_h, &g->pad_t, &g->pad_b) ||
        !conv_axis(g->in_w, (uint32_t)span_w, g->s_w, pad, c->pad_l, c->pad_r, &g->out_w, &g->pad_l, &g->pad_r)) {
        char dil[64] = "";
        if (c->d_h > 1 || c->d_w > 1)
            snprintf(dil, sizeof dil, " (dilation %ux%u: %llux%llu cells)", c->d_h, c->d_w,
                     (unsigned long long)span_h, (unsigned long long)span_w);
        return tli_error(TL_ESHAPE, TLI_LFMT ": kernel %ux%u%s is larger than its input %s%s", TLI_LARG(l), c->k_h,
                         c->k_w, dil, tli_shape_str(&l->in_shape, sb, sizeof sb),
                         pad == TL_PAD_VALID ? " with valid padding" : " and its padding");
    }
    uint64_t out = tli_mul_sat(tli_mul_sat(g->out_h, g->out_w), c->filters);
    uint64_t kernel = tli_mul_sat(tli_mul_sat(tli_mul_sat(c->k_h, c->k_w), g->in_c / c->groups), c->filters);
    if (out > TLI_MAX_ELEMS || kernel > TLI_MAX_ELEMS)
        return tli_error(TL_ETOOBIG, TLI_LFMT ": output or kernel exceeds 2^31 values", TLI_LARG(l));
    l->out_shape = tli_shape3(g->out_h, g->out_w, c->filters);
    l->out_size = (size_t)out;
    cg->algo = tli_conv_choose(g, c->filters);
    /* The kernel's fans: kh * kw * in / groups and kh * kw * filters. */
    tli_tensor_set(l, 0, "kernel", "weight", TLI_ROLE_PARAM, tli_init_resolve(c->k_init, TLI_INIT_GLOROT_UNIFORM),
                   TLI_TORCH_CONV_KERNEL, (tl_shape){4, {c->k_h, c->k_w, g->in_c / c->groups, c->filters}});
    if (l->use_bias) {
        tli_tensor_set(l, 1, "bias", "bias", TLI_ROLE_PARAM, tli_init_resolve(c->b_init, TLI_INIT_ZEROS),
                       TLI_TORCH_SAME, tli_shape1(c->filters));
        tli_tensor_set_fans(l, 1, 0);
        l->bias_index = 1;
    }
    return TL_OK;
}

/* The scratch: in training, when the activation needs it, the
 * pre-activation z first; then the kernels' scratch. Each part is rounded
 * to 64 bytes, so the kernels' blocks stay aligned. (forward_affine's
 * folded kernel and bias live in l->cache, kept across calls.) */
static size_t conv_z_bytes(const tl_layer *l, size_t batch)
{
    size_t z;
    if (!tli_mul_ok(batch, l->out_size, &z) || !tli_mul_ok(z, sizeof(float), &z) || z > SIZE_MAX - 63)
        return SIZE_MAX;
    return (z + 63) & ~(size_t)63;
}

/* Bytes of z in the scratch of a pass (by the layer's own activation,
 * so that forward and backward agree whatever activation they apply). */
static size_t conv_zpart(const tl_layer *l, size_t batch, bool training)
{
    return training && tli_act_needs_input(l->act) ? conv_z_bytes(l, batch) : 0;
}

static size_t conv_head_bytes(const tl_layer *l, size_t batch, bool training)
{
    return conv_zpart(l, batch, training);
}

static size_t conv_scratch_bytes(const tl_layer *l, size_t batch, uint32_t threads, bool training)
{
    const conv_geom *cg = (const conv_geom *)l->geom;
    const conv_cfg *c = (const conv_cfg *)l->cfg;
    /* A layer on the model's input never needs an input gradient. */
    bool need_dx = training && l->inputs[0] != TLI_INPUT_MODEL;
    size_t bytes = tli_conv_scratch_bytes(cg->algo, &cg->g, c->filters, batch, threads, training, need_dx);
    size_t head = conv_head_bytes(l, batch, training);
    return bytes == SIZE_MAX || head == SIZE_MAX || head > SIZE_MAX - bytes ? SIZE_MAX : head + bytes;
}

/* The layer's cache: the kernel and bias with the next layer's affine
 * folded in (conv_folded), then the kernel as the algorithm reads it when
 * that is not the kernel itself (tli_conv_prepare: Winograd's transform),
 * of the folded kernel or, without a fold, of the layer's own. */
static float *conv_cache(tl_layer *l, size_t *prep_at)
{
    const conv_geom *cg = (const conv_geom *)l->geom;
    const size_t n = ((const conv_cfg *)l->cfg)->filters, count = l->params[0].count;
    *prep_at = count + n;
    if (l->cache == NULL) {
        const size_t floats = count + n + tli_conv_prep_floats(cg->algo, &cg->g, (uint32_t)n);
        l->cache = tli_malloc_aligned(floats * sizeof(float));
    }
    return l->cache;
}

/* The layer's own kernel prepared for its algorithm (kept in l->cache
 * while the layer's version is unchanged), or NULL when the algorithm
 * reads the kernel as it is or the memory is missing (the kernels then
 * prepare it in their scratch). */
static const float *conv_prepared(tl_layer *l)
{
    const conv_geom *cg = (const conv_geom *)l->geom;
    const uint32_t n = ((const conv_cfg *)l->cfg)->filters;
    if (tli_conv_prep_floats(cg->algo, &cg->g, n) == 0)
        return NULL;
    const uint64_t key[4] = {3, l->version, 0, 0};
    size_t at;
    float *c = conv_cache(l, &at);
    if (c == NULL)
        return NULL;
    if (memcmp(l->cache_key, key, sizeof key) != 0) {
        l->cache_key[0] = 0; /* not valid while it is being written */
        tli_conv_prepare(cg->algo, &cg->g, n, l->params[0].value, c + at);
        memcpy(l->cache_key, key, sizeof key);
    }
    return c + at;
}

static void conv_forward(tl_layer *l, const tli_exec *ex, const float *const *x, float *y, tl_activation act)
{
    const conv_geom *cg = (const conv_geom *)l->geom;
    const conv_cfg *c = (const conv_cfg *)l->cfg;
    /* z only when the activation applied needs it (not when the loss takes the logits) */
    float *z = ex->training && tli_act_needs_input(act) ? l->scratch : NULL;
    char *kernel_scratch = (char *)l->scratch + conv_head_bytes(l, ex->batch, ex->training);
    const float *b = l->use_bias ? l->params[1].value : NULL;
    if (!ex->training) /* no backward follows: no padded copy kept for it */
        tli_conv_infer(ex->threads, cg->algo, &cg->g, c->filters, x[0], l->params[0].value, conv_prepared(l), b,
                       NULL, act, c->alpha, y, ex->batch, kernel_scratch);
    else
        tli_conv_forward(ex->threads, cg->algo, &cg->g, c->filters, x[0], l->params[0].value, b, act, c->alpha, y,
                         z, ex->batch, kernel_scratch);
}

/* The kernel and bias with `next`'s per-channel affine folded in, kept in
 * l->cache (conv_cache): kernel column f times scale[f], bias * scale +
 * shift, and the folded kernel prepared for the algorithm. Folded
 * anew only when this layer, `next` or the pairing changed since (their
 * versions; a structure change drops the cache with the workspace), so a
 * run of predictions folds once. NULL when `next` is not an affine in
 * this pass or the memory is missing. */
static const float *conv_folded(tl_layer *l, const tli_exec *ex, tl_layer *next)
{
    /* next's answer depends on the pass kind (layer.h, affine) */
    const uint64_t key[4] = {ex->training ? 2u : 1u, l->version, next->version, (uint64_t)(uintptr_t)next};
    if (l->cache && memcmp(l->cache_key, key, sizeof key) == 0)
        return l->cache;
    const float *scale, *shift;
    if (!next->ops->affine(next, ex, &scale, &shift))
        return NULL;
    const size_t n = ((const conv_cfg *)l->cfg)->filters, count = l->params[0].count, k = count / n;
    size_t prep_at;
    if (conv_cache(l, &prep_at) == NULL)
        return NULL;
    l->cache_key[0] = 0; /* not valid while it is being written */
    float *w = l->cache, *b = w + count;
    const float *w0 = l->params[0].value, *b0 = l->use_bias ? l->params[1].value : NULL;
    for (size_t r = 0; r < k; r++) { /* distinct buffers: restrict lets the row vectorize */
        float *restrict wr = w + r * n;
        const float *restrict w0r = w0 + r * n, *restrict sc = scale;
        for (size_t f = 0; f < n; f++)
            wr[f] = w0r[f] * sc[f];
    }
    for (size_t f = 0; f < n; f++)
        b[f] = (b0 ? b0[f] * scale[f] : 0.0f) + shift[f];
    const conv_geom *cg = (const conv_geom *)l->geom;
    tli_conv_prepare(cg->algo, &cg->g, (uint32_t)n, w, w + prep_at);
    memcpy(l->cache_key, key, sizeof key);
    return w;
}

/* A pass with no backward through this layer (inference, a frozen base)
 * with the next layer's per-channel affine folded in (see conv_folded),
 * the residual added and activation `act` applied by the kernels: one
 * pass over y instead of three (four with the residual join). (No z: the
 * layer's own activation is linear.) */
static bool conv_forward_affine(tl_layer *l, const tli_exec *ex, const float *const *x, float *y, tl_layer *next,
                                const float *residual, tl_activation act)
{
    const conv_geom *cg = (const conv_geom *)l->geom;
    const conv_cfg *c = (const conv_cfg *)l->cfg;
    if (l->act != TL_ACT_LINEAR || tli_act_needs_input(act))
        return false;
    const float *w = conv_folded(l, ex, next);
    if (w == NULL)
        return false;
    const size_t count = l->params[0].count;
    const float *prep = tli_conv_prep_floats(cg->algo, &cg->g, c->filters) ? w + count + c->filters : NULL;
    tli_conv_infer(ex->threads, cg->algo, &cg->g, c->filters, x[0], w, prep, w + count, residual, act, c->alpha, y,
                   ex->batch, (char *)l->scratch + conv_head_bytes(l, ex->batch, ex->training));
    return true;
}

static void conv_backward(tl_layer *l, const tli_exec *ex, const float *const *x, const float *y, float *dy,
                          float *const *dx, tl_activation act, bool param_grads)
{
    const conv_geom *cg = (const conv_geom *)l->geom;
    const conv_cfg *c = (const conv_cfg *)l->cfg;
    const size_t m = ex->batch * cg->g.out_h * cg->g.out_w;
    const uint32_t n = c->filters;
    /* kept by the training forward pass */
    const float *z = tli_act_needs_input(act) ? (const float *)l->scratch : NULL;
    char *kernel_scratch = (char *)l->scratch + conv_head_bytes(l, ex->batch, true);
    tli_act_backward(ex->threads, act, c->alpha, z, y, dy, m, n,
                     param_grads && l->use_bias && !ex->bias_grad_done ? l->params[1].grad : NULL);
    tli_conv_backward(ex->threads, cg->algo, &cg->g, n, x[0], dy, l->params[0].value,
                      param_grads ? l->params[0].grad : NULL, dx[0], ex->batch, kernel_scratch);
}

static void conv_from_options(void *cfg, tl_activation *act, int *use_bias, const void *opts)
{
    const tl_conv2d_options *o = opts;
    conv_cfg *c = cfg;
    /* `opts` is a current-version struct (an older caller's missing
     * members hold the defaults); 0 groups or dilation mean 1. */
    *c = (conv_cfg){o->filters, o->kernel_h, o->kernel_w, o->stride_h, o->stride_w, (uint32_t)o->padding,
                    o->groups ? o->groups : 1, o->dilation_h ? o->dilation_h : 1, o->dilation_w ? o->dilation_w : 1,
                    o->pad_top, o->pad_bottom, o->pad_left, o->pad_right, (uint32_t)o->kernel_initializer,
                    (uint32_t)o->bias_initializer, o->activation_alpha};
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
    if (version >= 3) {
        o->groups = c->groups;
        o->dilation_h = c->d_h;
        o->dilation_w = c->d_w;
        o->pad_top = c->pad_t;
        o->pad_bottom = c->pad_b;
        o->pad_left = c->pad_l;
        o->pad_right = c->pad_r;
        o->kernel_initializer = (tl_initializer)c->k_init;
        o->bias_initializer = (tl_initializer)c->b_init;
        o->activation_alpha = c->alpha;
    }
}

/* ONNX: Conv with the kernel in OIHW, explicit pads (libtl's, 'same'
 * included: TensorFlow's split, the odd cell after), the activation as
 * nodes after it. With fold_batchnorm, a linear convolution whose only
 * consumer is a per-channel affine layer (batchnorm) takes it into its
 * weights: W' = W * scale[o], b' = b * scale[o] + shift[o]. */
static tl_status conv_onnx(const tl_layer *l, tli_onnx *g)
{
    const conv_cfg *c = (const conv_cfg *)l->cfg;
    const tli_conv_geom *cg = &((const conv_geom *)l->geom)->g;
    const uint32_t o_n = c->filters, i_n = cg->in_c / c->groups, kh = c->k_h, kw = c->k_w;
    const tl_layer *bn;
    float *scale;
    const tl_status fs = tli_onnx_fold_affine(g, l, o_n, &scale, &bn);
    if (fs != TL_OK)
        return fs;
    const float *shift = scale ? scale + o_n : NULL;
    const char *out = bn ? tli_onnx_out(g, bn) : tli_onnx_out(g, l);
    const char *y = l->act == TL_ACT_LINEAR ? out : tli_onnx_sub(g, l, "conv");
    const char *in[3] = {tli_onnx_in(g, l, 0), tli_onnx_weight(g, l, "weight"),
                         l->use_bias || bn ? tli_onnx_weight(g, l, "bias") : NULL};
    const int64_t wd[4] = {o_n, i_n, kh, kw};
    float *w = tli_onnx_init(g, in[1], 4, wd);
    const float *k = l->params[0].value; /* (kh, kw, in, out) */
    if (w)
        for (uint32_t o = 0; o < o_n; o++)
            for (uint32_t i = 0; i < i_n; i++)
                for (uint32_t r = 0; r < kh * kw; r++)
                    w[((size_t)o * i_n + i) * kh * kw + r] = k[((size_t)r * i_n + i) * o_n + o] * (bn ? scale[o] : 1.0f);
    tli_onnx_init_end(g);
    if (in[2]) {
        const int64_t bd[1] = {o_n};
        float *b = tli_onnx_init(g, in[2], 1, bd);
        for (uint32_t o = 0; b && o < o_n; o++) {
            const float b0 = l->use_bias ? l->params[1].value[o] : 0.0f;
            b[o] = bn ? b0 * scale[o] + shift[o] : b0;
        }
        tli_onnx_init_end(g);
    }
    tli_free(scale);
    tli_onnx_node(g, "Conv", l->name, in, in[2] ? 3 : 2, y);
    const int64_t ks[2] = {kh, kw}, st[2] = {c->s_h, c->s_w}, dl[2] = {c->d_h, c->d_w};
    const int64_t pads[4] = {cg->pad_t, cg->pad_l, cg->pad_b, cg->pad_r};
    tli_onnx_attr_ints(g, "kernel_shape", ks, 2);
    tli_onnx_attr_ints(g, "strides", st, 2);
    tli_onnx_attr_ints(g, "pads", pads, 4);
    tli_onnx_attr_ints(g, "dilations", dl, 2);
    tli_onnx_attr_int(g, "group", c->groups);
    tli_onnx_node_end(g);
    if (bn)
        tli_onnx_alias(g, l, out);
    if (l->act != TL_ACT_LINEAR)
        tli_onnx_activation(g, l, l->act, c->alpha, y, out);
    return TL_OK;
}

/* Every output cell takes k_h * k_w * in_c / groups multiply-adds; the
 * input and the kernel gradients take as many again each. */
static void conv_flops(const tl_layer *l, double out[3])
{
    const conv_geom *cg = (const conv_geom *)l->geom;
    const double macs = (double)l->out_size * cg->g.k_h * cg->g.k_w * (cg->g.in_c / cg->g.groups);
    out[0] = out[1] = out[2] = 2.0 * macs;
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
    .onnx_export = conv_onnx,
    .flops = conv_flops,
    .forward_affine = conv_forward_affine,
};
