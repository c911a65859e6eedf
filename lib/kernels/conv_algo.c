/*
 * conv_algo.c - one convolution interface, three algorithms: im2col + BLIS
 * for any shape on any CPU (one GEMM per group), direct AVX-512 kernels for
 * the stride-1 convolutions with 16k filters that dominate CNN training,
 * and direct depthwise kernels (groups == in_c), for which im2col + GEMM
 * would be thousands of GEMMs of 9 x 1. The layer asks tli_conv_choose()
 * once and passes the answer back in every call.
 *
 * The direct input gradient gathers: each input pixel sums the output
 * pixels' gradients that its cell fed, times the kernel transposed per tap
 * (conv_bwd_avx512.c), so nothing is scattered, zeroed or cropped.
 *
 * Groups on the GEMM path: the kernel (k_h*k_w*cg, filters) holds group
 * grp's filters in its columns [grp*fg, (grp+1)*fg) (cg = in_c/groups, fg =
 * filters/groups), and the output's channels likewise, so each group's GEMM
 * reads and writes strided views of the whole tensors: nothing is copied.
 */
#include <string.h>

#include "conv_direct.h"
#include "conv_wino.h"

/* A 1x1 convolution whose output pixels are the input's: the input itself
 * is the im2col matrix (row stride in_c; a group's columns start at its
 * first channel). */
static bool is_pointwise(const tli_conv_geom *g)
{
    return g->k_h == 1 && g->k_w == 1 && g->s_h == 1 && g->s_w == 1 && g->pad_t == 0 && g->pad_l == 0 &&
           g->out_h == g->in_h && g->out_w == g->in_w;
}

bool tli_conv_algo_ok(tli_conv_algo algo, const tli_conv_geom *g, uint32_t filters)
{
    switch (algo) {
    case TLI_CONV_GEMM: return true;
    case TLI_CONV_DEPTHWISE: return g->groups == g->in_c && filters % g->in_c == 0;
    case TLI_CONV_DIRECT:
#ifdef TLI_HAVE_AVX512
        /* The direct kernels read a padded copy of the input with adjacent
         * taps and one kernel for all channels; strides 1 and 2 (ResNet's
         * downsampling convolutions and projections). */
        return tli_cpu_has_avx512() && g->s_h <= 2 && g->s_w <= 2 && filters % 16 == 0 && g->groups == 1 &&
               g->d_h == 1 && g->d_w == 1 && (size_t)g->k_h * g->k_w <= TLI_DIRECT_MAX_TAPS;
#else
        (void)g, (void)filters;
        return false;
#endif
    case TLI_CONV_WINO:
#ifdef TLI_HAVE_AVX512
        /* 3x3, stride 1, one zero cell on every side: the output is the
         * input's size (conv_wino_avx512.c); dx and dw are Winograd too (dw
         * where wino_wgrad_pays). */
        return tli_conv_algo_ok(TLI_CONV_DIRECT, g, filters) && g->k_h == 3 && g->k_w == 3 && g->s_h == 1 &&
               g->s_w == 1 && g->pad_t == 1 && g->pad_l == 1 && g->out_h == g->in_h && g->out_w == g->in_w;
#else
        return false;
#endif
    }
    return false;
}

/* Winograd against the direct forward, one thread, user time per call,
 * best of 4 alternating rounds (same kernel, bias and ReLU; in = out
 * channels; Zen 5, AVX-512), direct / Winograd:
 *
 *              batch 64                batch 1
 *   channels   16    32    64          16    32    64
 *   32x32      1.89  2.16  2.28        1.97  2.49  2.60
 *   16x16      1.95  2.36  2.91        1.83  2.47  2.92
 *   8x8        2.33  2.52  2.88        1.56  2.46  2.95
 *   7x7        1.86        2.41        1.71        2.47
 *   6x6              1.55                    1.58
 *   5x5                    1.34                    1.34
 *   4x4        2.79        3.04        0.64        0.84
 *   2x2        1.11        0.85        0.24        0.24
 *   in_c 3, 8, 12 (16 filters, 32x32): 0.83, 1.27, 1.51 (both batches)
 *
 * A 4x4 image is one tile: batch 1 computes the products for 4 tiles
 * (the micro-kernel's smallest height) and loses. Hence Winograd from 8
 * input channels on images of at least 5x5. (Training transforms the
 * kernel in every call: 20 us for 64 x 64 channels, 2% of a batch-64 8x8
 * layer.) */
static bool wino_pays(const tli_conv_geom *g)
{
    return g->in_c >= 8 && g->out_h >= 5 && g->out_w >= 5;
}

/* Winograd's weight gradient (conv_wino_avx512.c) against the direct
 * one, one thread, CPU time per call, best of 8 alternating rounds (Zen 5,
 * batch 64, in = out channels unless given), direct / Winograd:
 *
 *   32x32 c16 1.45   16x16 c32 2.16   8x8 c64 2.58   (ResNet-20's layers)
 *   16x16 c16 1.71   8x8 c16 1.60   7x7 c16 1.38   7x7 c64 1.99
 *   6x6 c16 1.12   6x6 c32 1.33   5x5 c16 0.84   5x5 c32 1.01   5x5 c64 1.08
 *   in_c 8 (16 filters): 32x32 0.79, 8x8 0.87, 5x5 0.42; in_c 12 16x16 1.23
 *   batch 1: 32x32 c16 1.76, 16x16 c32 1.88, 8x8 c64 1.07, 8x8 c32 1.01
 *   two threads: 32x32 c16 1.27, 16x16 c32 1.94, 8x8 c64 1.64
 *
 * Its transforms cost per tile and channel, its products per tile and
 * channel pair (a 5x5 image is 4 tiles of 8x8 cells): Winograd from 12
 * channels on images of at least 6x6; the other Winograd layers keep the
 * direct weight gradient (and training's padded copy of the input). */
static bool wino_wgrad_pays(const tli_conv_geom *g)
{
    return g->in_c >= 12 && g->out_h >= 6 && g->out_w >= 6;
}

tli_conv_algo tli_conv_choose(const tli_conv_geom *g, uint32_t filters)
{
    if (g->groups > 1 && tli_conv_algo_ok(TLI_CONV_DEPTHWISE, g, filters))
        return TLI_CONV_DEPTHWISE;
    if (tli_conv_algo_ok(TLI_CONV_WINO, g, filters) && wino_pays(g))
        return TLI_CONV_WINO;
    return tli_conv_algo_ok(TLI_CONV_DIRECT, g, filters) ? TLI_CONV_DIRECT : TLI_CONV_GEMM;
}

/* ---- scratch layouts ------------------------------------------------------- */

/* The blocks the forward pass uses come first and their sizes depend only
 * on the geometry, so forward and backward agree on where they are. */
typedef struct conv_scratch {
    float *xpad;     /* DIRECT, training: padded input (kept for the weight gradient) */
    float *edge;     /* DIRECT, padded: per-thread window rows over the border (conv_direct.h) */
    float *col;      /* GEMM: im2col matrices (one per group, each m x k), reused for dcol; DIRECT: dcol */
    float *partials; /* DEPTHWISE: the weight gradient's per-image sums */
    float *wt;       /* DIRECT: kernel transposed per tap to (k_h, k_w, filters, in_c) */
    float *dzbuf;    /* DIRECT: per-thread dz buffers of the input gradient (conv_direct.h) */
    float *wbuf;     /* WINO: per-thread tile buffers (conv_wino.h) */
    float *wu;       /* WINO: the transformed kernel, when the caller has none */
    float *wgrad;    /* WINO, training: the weight gradient's sums and tile buffers (conv_wino.h) */
} conv_scratch;

/* Height and width of the padded input the windows read. */
static uint32_t padded_h(const tli_conv_geom *g)
{
    return (g->out_h - 1) * g->s_h + g->k_h;
}
static uint32_t padded_w(const tli_conv_geom *g)
{
    return (g->out_w - 1) * g->s_w + g->k_w;
}
static bool needs_pad(const tli_conv_geom *g)
{
    return padded_h(g) != g->in_h || padded_w(g) != g->in_w || g->pad_t || g->pad_l;
}

static inline tli_wino_geom wino_geom(const tli_conv_geom *g, uint32_t filters)
{
    tli_wino_geom w = {g->in_h, g->in_w, g->in_c, filters};
    return w;
}

/* The input gradient of a 3x3 stride-1 pad-1 convolution is one too: of
 * dz, with the kernel turned 180 degrees and its channels and filters
 * swapped. */
static inline tli_wino_geom wino_dx_geom(const tli_conv_geom *g, uint32_t filters)
{
    tli_wino_geom w = {g->in_h, g->in_w, filters, g->in_c};
    return w;
}

static tli_direct_geom direct_geom(const tli_conv_geom *g, uint32_t filters)
{
    tli_direct_geom d = {padded_h(g), padded_w(g), g->in_c, g->out_h, g->out_w,
                         g->k_h,       g->k_w,       filters,  g->s_h,   g->s_w};
    return d;
}

static size_t mul3(size_t a, size_t b, size_t c)
{
    size_t r;
    if (!tli_mul_ok(a, b, &r) || !tli_mul_ok(r, c, &r))
        return SIZE_MAX;
    return r;
}

/* Lay the scratch out (base NULL: only add up); returns the bytes or SIZE_MAX. */
static size_t layout(tli_conv_algo algo, const tli_conv_geom *g, uint32_t filters, size_t batch, uint32_t threads,
                     bool training, bool need_dx, char *base, conv_scratch *out)
{
    size_t sizes[9] = {0}; /* xpad, edge, col, partials, wt, dzbuf, wbuf, wu, wgrad */
    const size_t pix = (size_t)g->out_h * g->out_w, k = tli_conv_k(g);
    const size_t wsize = k * filters;
    if (algo == TLI_CONV_DEPTHWISE) {
        if (training) /* see conv_depthwise_impl.h */
            sizes[3] = batch > 1 ? mul3(batch - 1, (size_t)g->k_h * g->k_w, filters) : 0;
    } else if (algo == TLI_CONV_GEMM) {
        if (!is_pointwise(g))
            sizes[2] = mul3(mul3(batch, pix, k), g->groups, 1);
    } else {
        /* Training keeps the padded input for the direct weight gradient
         * (Winograd's reads the input); inference reads the input in
         * place, with only the window rows over the border copied
         * (conv_fwd_avx512.c). */
        if (needs_pad(g)) {
            if (training && (algo == TLI_CONV_DIRECT || !wino_wgrad_pays(g)))
                sizes[0] = mul3(batch, (size_t)padded_h(g) * padded_w(g), g->in_c);
            tli_direct_geom d = direct_geom(g, filters);
            if (algo == TLI_CONV_DIRECT)
                sizes[1] = mul3(threads, tli_direct_edge_floats(&d), 1);
        }
#ifdef TLI_HAVE_AVX512
        if (algo == TLI_CONV_WINO) { /* after the backward's blocks: the forward's own */
            tli_wino_geom wg = wino_geom(g, filters), dg = wino_dx_geom(g, filters);
            const size_t fb = tli_wino_buffer_floats(&wg), db = tli_wino_buffer_floats(&dg);
            /* the input gradient runs them on dz too (with in_c a multiple of 16) */
            sizes[6] = mul3(threads, training && need_dx && fb < db ? db : fb, 1);
            sizes[7] = tli_wino_weight_floats(&wg);
            if (training && wino_wgrad_pays(g))
                sizes[8] = tli_wino_wgrad_floats(&wg, batch, threads);
        }
#endif
        if (training && need_dx) {
            if (g->in_c % 16 == 0) {
                tli_dx_shape d = tli_direct_dx_shape(g, filters);
                sizes[4] = wsize;
                sizes[5] = mul3(threads, tli_direct_dx_floats(&d), 1);
            } else {
                sizes[2] = mul3(batch, pix, k); /* dcol for col2im */
            }
        }
    }
    size_t off = 0;
    float **slots[9] = {&out->xpad, &out->edge,  &out->col, &out->partials, &out->wt,
                        &out->dzbuf, &out->wbuf, &out->wu,  &out->wgrad};
    for (int i = 0; i < 9; i++) {
        *slots[i] = NULL;
        if (sizes[i] == 0)
            continue;
        if (sizes[i] == SIZE_MAX || sizes[i] > (SIZE_MAX - off - 64) / sizeof(float))
            return SIZE_MAX;
        *slots[i] = base ? (float *)(void *)(base + off) : NULL;
        off += (sizes[i] * sizeof(float) + 63) & ~(size_t)63;
    }
    return off;
}

size_t tli_conv_scratch_bytes(tli_conv_algo algo, const tli_conv_geom *g, uint32_t filters, size_t batch,
                              uint32_t threads, bool training, bool need_dx)
{
    conv_scratch s;
    return layout(algo, g, filters, batch, threads, training, need_dx, NULL, &s);
}

/* ---- helpers ------------------------------------------------------------- */

/* The depthwise kernels: the AVX-512 build where the CPU has it (the same
 * bits as the portable one). */
static void depthwise_forward(uint32_t threads, const tli_conv_geom *g, uint32_t filters, const float *x,
                              const float *w, const float *bias, int clamp, float *y, size_t batch)
{
#ifdef TLI_HAVE_AVX512
    if (tli_cpu_has_avx512()) {
        tli_depthwise_forward_avx512(threads, g, filters, x, w, bias, clamp, y, batch);
        return;
    }
#endif
    tli_depthwise_forward_c(threads, g, filters, x, w, bias, clamp, y, batch);
}

static void depthwise_input_grad(uint32_t threads, const tli_conv_geom *g, uint32_t filters, const float *dz,
                                 const float *w, float *dx, size_t batch)
{
#ifdef TLI_HAVE_AVX512
    if (tli_cpu_has_avx512()) {
        tli_depthwise_input_grad_avx512(threads, g, filters, dz, w, dx, batch);
        return;
    }
#endif
    tli_depthwise_input_grad_c(threads, g, filters, dz, w, dx, batch);
}

static void depthwise_weight_grad(uint32_t threads, const tli_conv_geom *g, uint32_t filters, const float *x,
                                  const float *dz, float *dw, float *partials, size_t batch)
{
#ifdef TLI_HAVE_AVX512
    if (tli_cpu_has_avx512()) {
        tli_depthwise_weight_grad_avx512(threads, g, filters, x, dz, dw, partials, batch);
        return;
    }
#endif
    tli_depthwise_weight_grad_c(threads, g, filters, x, dz, dw, partials, batch);
}

/* ---- forward --------------------------------------------------------------- */

/* The forward pass also runs the direct forward kernel for a GEMM-path
 * convolution whose only obstacle was a filter count that is not a
 * multiple of 16 (the kernel masks the last vector; only the gradient
 * kernels need whole vectors, and the backward pass stays on BLIS), where
 * no window leaves the input (no edge rows or padded copy: the GEMM
 * scratch has no buffer for them), and in training only for a pointwise
 * one (otherwise the weight gradient reads the forward's im2col matrix):
 * MobileNetV2's 1x1 projections to 24 channels, which in inference as
 * BLIS calls plus a bias and a residual pass took 12% of the time for 7%
 * of the multiply-adds. */
static bool direct_forward_ok(tli_conv_algo algo, const tli_conv_geom *g, bool training)
{
#ifdef TLI_HAVE_AVX512
    return algo == TLI_CONV_GEMM && tli_cpu_has_avx512() && g->groups == 1 && g->d_h == 1 && g->d_w == 1 &&
           g->s_h <= 2 && g->s_w <= 2 && (size_t)g->k_h * g->k_w <= TLI_DIRECT_MAX_TAPS && !needs_pad(g) &&
           (!training || is_pointwise(g));
#else
    (void)algo, (void)g, (void)training;
    return false;
#endif
}

/* y = act(conv(x, w) + bias + res) (res may be NULL), z the pre-activation
 * when not NULL; `training`: a backward pass follows (the direct kernels
 * leave the padded input in the scratch for it). */
static void forward(uint32_t threads, tli_conv_algo algo, const tli_conv_geom *g, uint32_t filters, const float *x,
                    const float *w, const float *prep, const float *bias, const float *res, tl_activation act,
                    float alpha, float *y, float *z, size_t batch, void *scratch, bool training)
{
    conv_scratch s;
    const size_t m = batch * g->out_h * g->out_w, k = tli_conv_k(g);
    (void)prep; /* read by the Winograd kernels only */
    /* Only the leading blocks are used here; see conv_scratch. */
    layout(algo, g, filters, batch, threads, training, false, scratch, &s);
    /* The direct and depthwise kernels add the bias and apply a ReLU or
     * ReLU6 themselves (the direct ones add the residual too); any other
     * activation follows in one pass over their output, which is z when
     * it is kept. */
#ifdef TLI_HAVE_AVX512
    const bool direct = algo == TLI_CONV_DIRECT || algo == TLI_CONV_WINO || direct_forward_ok(algo, g, training);
#else
    const bool direct = false; /* never chosen without the kernels */
#endif
    const int relu_clamp = tli_clamp_of(act == TL_ACT_RELU, act == TL_ACT_RELU6);
    if (direct || algo == TLI_CONV_DEPTHWISE) {
        const int clamp = z != NULL ? TLI_CLAMP_NONE : relu_clamp;
        float *out = z ? z : y;
#ifdef TLI_HAVE_AVX512
        if (algo == TLI_CONV_WINO) {
            tli_wino_geom wg = wino_geom(g, filters);
            if (prep == NULL) { /* training: the kernel changes every step */
                tli_wino_weights(&wg, w, s.wu);
                prep = s.wu;
            }
            tli_wino_forward_avx512(threads, &wg, x, prep, bias, res, clamp, out, s.xpad, s.wbuf, batch);
            res = NULL; /* added */
        } else if (direct) {
            /* In training the kernel pads each image into s.xpad just
             * before reading it (the weight gradient reads s.xpad too). */
            tli_direct_geom d = direct_geom(g, filters);
            tli_direct_forward_avx512(threads, &d, x, g->in_h, g->in_w, g->pad_t, g->pad_l, s.xpad, s.edge, w, bias,
                                      res, clamp, out, batch);
            res = NULL; /* added */
        }
#endif
        if (algo == TLI_CONV_DEPTHWISE) {
            const int dclamp = res ? TLI_CLAMP_NONE : clamp; /* the residual comes before the clamp */
            depthwise_forward(threads, g, filters, x, w, bias, dclamp, out, batch);
            if (res) {
                const float *both[2] = {out, res};
                tli_sum(threads, out, both, 2, m * filters, clamp);
            }
        }
        if (z)
            tli_bias_act_forward_keep(threads, z, NULL, y, m, filters, act, alpha);
        else if (clamp == TLI_CLAMP_NONE && act != TL_ACT_LINEAR)
            tli_bias_act_forward(threads, y, NULL, m, filters, act, alpha);
        return;
    }
    float *out = z ? z : y;
    const size_t fg = filters / g->groups, cg = tli_conv_group_c(g);
    for (uint32_t grp = 0; grp < g->groups; grp++) {
        /* out[:, grp*fg ..] (m x fg) = col_grp (m x k) * w[:, grp*fg ..] (k x fg) */
        const float *col = x + (size_t)grp * cg;
        ptrdiff_t rs = (ptrdiff_t)g->in_c;
        if (!is_pointwise(g)) {
            col = s.col + (size_t)grp * m * k;
            rs = (ptrdiff_t)k;
            tli_im2col_group(threads, g, x, batch, grp, s.col + (size_t)grp * m * k);
        }
        tli_gemm(threads, m, fg, k, 1.0f, col, rs, 1, w + (size_t)grp * fg, (ptrdiff_t)filters, 1, 0.0f,
                 out + (size_t)grp * fg, (ptrdiff_t)filters, 1);
    }
    if (res) { /* bias, then the residual and a ReLU / ReLU6 in one more pass; other activations after */
        tli_bias_act_forward(threads, out, bias, m, filters, TL_ACT_LINEAR, alpha);
        const float *both[2] = {out, res};
        tli_sum(threads, out, both, 2, m * filters, z ? TLI_CLAMP_NONE : relu_clamp);
        if (z)
            tli_bias_act_forward_keep(threads, z, NULL, y, m, filters, act, alpha);
        else if (relu_clamp == TLI_CLAMP_NONE && act != TL_ACT_LINEAR)
            tli_bias_act_forward(threads, y, NULL, m, filters, act, alpha);
        return;
    }
    if (z)
        tli_bias_act_forward_keep(threads, z, bias, y, m, filters, act, alpha);
    else
        tli_bias_act_forward(threads, y, bias, m, filters, act, alpha);
}

void tli_conv_forward(uint32_t threads, tli_conv_algo algo, const tli_conv_geom *g, uint32_t filters,
                      const float *x, const float *w, const float *bias, tl_activation act, float alpha, float *y,
                      float *z, size_t batch, void *scratch)
{
    forward(threads, algo, g, filters, x, w, NULL, bias, NULL, act, alpha, y, z, batch, scratch, true);
}

void tli_conv_infer(uint32_t threads, tli_conv_algo algo, const tli_conv_geom *g, uint32_t filters,
                    const float *x, const float *w, const float *prep, const float *bias, const float *res,
                    tl_activation act, float alpha, float *y, size_t batch, void *scratch)
{
    forward(threads, algo, g, filters, x, w, prep, bias, res, act, alpha, y, NULL, batch, scratch, false);
}

size_t tli_conv_prep_floats(tli_conv_algo algo, const tli_conv_geom *g, uint32_t filters)
{
    tli_wino_geom wg = wino_geom(g, filters);
    return algo == TLI_CONV_WINO ? tli_wino_weight_floats(&wg) : 0;
}

void tli_conv_prepare(tli_conv_algo algo, const tli_conv_geom *g, uint32_t filters, const float *w, float *prep)
{
#ifdef TLI_HAVE_AVX512
    if (algo == TLI_CONV_WINO) {
        tli_wino_geom wg = wino_geom(g, filters);
        tli_wino_weights(&wg, w, prep);
    }
#else
    (void)algo, (void)g, (void)filters, (void)w, (void)prep;
#endif
}

/* ---- backward -------------------------------------------------------------- */

static void gemm_dx(uint32_t threads, const tli_conv_geom *g, uint32_t filters, const float *dz, const float *w,
                    float *dx, size_t batch, float *col)
{
    const size_t m = batch * g->out_h * g->out_w, k = tli_conv_k(g);
    const size_t fg = filters / g->groups, cg = tli_conv_group_c(g);
    for (uint32_t grp = 0; grp < g->groups; grp++) {
        /* dcol (m x k) = dz[:, grp*fg ..] (m x fg) * W_grp^T (fg x k); for a
         * pointwise convolution straight into the group's channels of dx. */
        const bool pw = is_pointwise(g);
        float *dcol = pw ? dx + (size_t)grp * cg : col + (size_t)grp * m * k;
        tli_gemm(threads, m, k, fg, 1.0f, dz + (size_t)grp * fg, (ptrdiff_t)filters, 1, w + (size_t)grp * fg, 1,
                 (ptrdiff_t)filters, 0.0f, dcol, pw ? (ptrdiff_t)g->in_c : (ptrdiff_t)k, 1);
        if (!pw)
            tli_col2im_group(threads, g, dcol, batch, grp, dx);
    }
}

void tli_conv_backward(uint32_t threads, tli_conv_algo algo, const tli_conv_geom *g, uint32_t filters,
                       const float *x, const float *dz, const float *w, float *dw, float *dx, size_t batch,
                       void *scratch)
{
    conv_scratch s;
    const size_t m = batch * g->out_h * g->out_w, k = tli_conv_k(g);
    layout(algo, g, filters, batch, threads, true, dx != NULL, scratch, &s);
#ifdef TLI_HAVE_AVX512
    if (algo == TLI_CONV_DIRECT || algo == TLI_CONV_WINO) { /* the direct forward padded x into s.xpad */
        tli_direct_geom d = direct_geom(g, filters);
        if (dw && algo == TLI_CONV_WINO && wino_wgrad_pays(g)) {
            tli_wino_geom wg = wino_geom(g, filters);
            tli_wino_weight_grad_avx512(threads, &wg, x, dz, dw, s.wgrad, batch);
        } else if (dw) {
            tli_direct_weight_grad_avx512(threads, &d, needs_pad(g) ? s.xpad : x, dz, dw, batch);
        }
        if (dx == NULL)
            return;
        if (g->in_c % 16 != 0) {
            gemm_dx(threads, g, filters, dz, w, dx, batch, s.col);
            return;
        }
        const size_t taps = (size_t)g->k_h * g->k_w, c = g->in_c, n = filters;
        if (algo == TLI_CONV_WINO) {
            /* dx = dz convolved with w turned 180 degrees (tap 8 - t),
             * (taps, filters, in_c): Winograd's forward on dz. */
            for (size_t t = 0; t < taps; t++)
                for (size_t ci = 0; ci < c; ci++)
                    for (size_t f = 0; f < n; f++)
                        s.wt[((taps - 1 - t) * n + f) * c + ci] = w[(t * c + ci) * n + f];
            tli_wino_geom dg = wino_dx_geom(g, filters);
            tli_wino_weights(&dg, s.wt, s.wu);
            tli_wino_forward_avx512(threads, &dg, dz, s.wu, NULL, NULL, TLI_CLAMP_NONE, dx, NULL, s.wbuf, batch);
            return;
        }
        /* (taps, in_c, filters) -> (taps, filters, in_c): the kernel reads
         * one row of channels per (tap, filter). */
        for (size_t t = 0; t < taps; t++)
            for (size_t ci = 0; ci < c; ci++)
                for (size_t f = 0; f < n; f++)
                    s.wt[(t * n + f) * c + ci] = w[(t * c + ci) * n + f];
        tli_dx_shape ds = tli_direct_dx_shape(g, filters);
        tli_direct_input_grad_avx512(threads, &ds, dz, s.wt, dx, s.dzbuf, batch);
        return;
    }
#endif
    if (algo == TLI_CONV_DEPTHWISE) {
        if (dw)
            depthwise_weight_grad(threads, g, filters, x, dz, dw, s.partials, batch);
        if (dx)
            depthwise_input_grad(threads, g, filters, dz, w, dx, batch);
        return;
    }
    const size_t fg = filters / g->groups, cg = tli_conv_group_c(g);
    for (uint32_t grp = 0; dw && grp < g->groups; grp++) {
        /* dW[:, grp*fg ..] (k x fg) = col_grp^T (k x m) * dz[:, grp*fg ..] (m x fg) */
        const bool pw = is_pointwise(g);
        const float *col = pw ? x + (size_t)grp * cg : s.col + (size_t)grp * m * k;
        const ptrdiff_t rs = pw ? (ptrdiff_t)g->in_c : (ptrdiff_t)k;
        tli_gemm(threads, k, fg, m, 1.0f, col, 1, rs, dz + (size_t)grp * fg, (ptrdiff_t)filters, 1, 0.0f,
                 dw + (size_t)grp * fg, (ptrdiff_t)filters, 1);
    }
    if (dx) /* after the weight gradient: it overwrites the im2col matrices */
        gemm_dx(threads, g, filters, dz, w, dx, batch, s.col);
}
