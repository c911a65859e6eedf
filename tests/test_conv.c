/* test_conv.c - convolution algorithms and settings.
 *
 *  - The algorithms agree: direct AVX-512 against im2col + BLIS (many
 *    shapes, paddings, explicit pads, thread counts; skipped without
 *    AVX-512), the depthwise kernels against a double-precision reference
 *    and against the grouped GEMM path, their portable and AVX-512 builds
 *    bit for bit, 1 and 2 threads bit for bit.
 *  - Groups: a grouped convolution equals each group run as a convolution
 *    of its own (results concatenated), forward and backward; a depthwise
 *    one equals single-channel convolutions.
 *  - Forward by hand through the public API: a dilated 3x3, PyTorch's
 *    padding=1 at stride 2 against TensorFlow's 'same' on an even input,
 *    and explicit pads on max and average pooling.
 *  - Files: a checkpoint of a model with every new setting (format 1.1,
 *    settings back as options), settings at their defaults in a 1.0 file,
 *    and a grouped kernel through the safetensors PyTorch layout.
 *  - Bad settings: TL_EINVAL naming the layer and the value.
 *  - Inference fusion: a prediction with batch normalization (and the
 *    activation after it) folded into the convolution before equals the
 *    layers run one by one (a training pass with every layer frozen, whose
 *    batch normalizations run in inference mode), for ResNet-20 and the
 *    CIFAR MobileNetV2 with random statistics: 3x3 direct, stride-2 and
 *    1x1 GEMM, depthwise, ReLU and ReLU6, BN before an add.
 */
#include <stdio.h>
#include <unistd.h>

#include "helpers.h"
#include "engine.h"
#include "io/safetensors.h"
#include "kernels/conv_direct.h"
#include "kernels/kernels.h"
#include "layers/layer.h"
#include "model.h"

/* ---- geometry ---------------------------------------------------------------- */

typedef struct conv_spec {
    uint32_t h, w, c, filters, k_h, k_w, s_h, s_w;
    tl_padding pad;
    uint32_t d_h, d_w, groups;   /* 0: 1 */
    uint32_t pt, pb, pl, pr;     /* TL_PAD_EXPLICIT */
} conv_spec;

/* The geometry conv2d builds for these settings. */
static tli_conv_geom geom_of(const conv_spec *sc)
{
    const uint32_t d_h = sc->d_h ? sc->d_h : 1, d_w = sc->d_w ? sc->d_w : 1;
    tli_conv_geom g = {sc->h, sc->w, sc->c, 0, 0, sc->k_h, sc->k_w, sc->s_h, sc->s_w, 0, 0,
                       d_h, d_w, 0, 0, sc->groups ? sc->groups : 1};
    const uint32_t span_h = d_h * (sc->k_h - 1) + 1, span_w = d_w * (sc->k_w - 1) + 1;
    if (sc->pad == TL_PAD_EXPLICIT) {
        g.pad_t = sc->pt;
        g.pad_l = sc->pl;
        g.out_h = (sc->h + sc->pt + sc->pb - span_h) / sc->s_h + 1;
        g.out_w = (sc->w + sc->pl + sc->pr - span_w) / sc->s_w + 1;
    } else {
        ck_assert(tli_window(sc->h, span_h, sc->s_h, sc->pad, &g.out_h, &g.pad_t));
        ck_assert(tli_window(sc->w, span_w, sc->s_w, sc->pad, &g.out_w, &g.pad_l));
    }
    long b = (long)(g.out_h - 1) * g.s_h + span_h - g.in_h - g.pad_t;
    long r = (long)(g.out_w - 1) * g.s_w + span_w - g.in_w - g.pad_l;
    g.pad_b = b > 0 ? (uint32_t)b : 0;
    g.pad_r = r > 0 ? (uint32_t)r : 0;
    return g;
}

static double max_rel_diff(const float *a, const float *b, size_t n)
{
    double scale = 1e-6, worst = 0.0;
    for (size_t i = 0; i < n; i++)
        scale = fmax(scale, fabs((double)a[i]));
    for (size_t i = 0; i < n; i++)
        worst = fmax(worst, fabs((double)a[i] - (double)b[i]) / scale);
    return worst;
}

static float *fnew(size_t n)
{
    float *v = malloc((n ? n : 1) * sizeof *v);
    ck_assert_ptr_nonnull(v);
    return v;
}

/* One run of an algorithm: forward (relu), then backward from dz. */
typedef struct conv_run {
    float *y, *dw, *dx;
} conv_run;

static conv_run run_algo(tli_conv_algo algo, const tli_conv_geom *g, uint32_t filters, uint32_t threads,
                         const float *x, const float *w, const float *bias, const float *dz, size_t batch,
                         tl_activation act)
{
    const size_t in = batch * g->in_h * g->in_w * g->in_c, out = batch * g->out_h * g->out_w * filters;
    const size_t wn = tli_conv_k(g) * filters;
    ck_assert(tli_conv_algo_ok(algo, g, filters));
    size_t sb = tli_conv_scratch_bytes(algo, g, filters, batch, threads, true, true);
    ck_assert(sb != SIZE_MAX);
    void *scratch = malloc(sb ? sb : 1);
    conv_run r = {fnew(out), fnew(wn), fnew(in)};
    for (size_t i = 0; i < wn; i++)
        r.dw[i] = NAN;
    for (size_t i = 0; i < in; i++)
        r.dx[i] = NAN;
    tli_conv_forward(threads, algo, g, filters, x, w, bias, act, 0.01f, r.y, NULL, batch, scratch);
    tli_conv_backward(threads, algo, g, filters, x, dz, w, r.dw, r.dx, batch, scratch);
    free(scratch);
    return r;
}

static void run_free(conv_run *r)
{
    free(r->y), free(r->dw), free(r->dx);
}

/* y = conv(x, w) + bias in double, straight from the definition. */
static void naive_conv(const tli_conv_geom *g, uint32_t filters, const float *x, const float *w, const float *bias,
                       size_t batch, float *y)
{
    const uint32_t cg = g->in_c / g->groups, fg = filters / g->groups;
    for (size_t n = 0; n < batch; n++)
        for (uint32_t oh = 0; oh < g->out_h; oh++)
            for (uint32_t ow = 0; ow < g->out_w; ow++)
                for (uint32_t f = 0; f < filters; f++) {
                    double s = bias ? bias[f] : 0.0;
                    uint32_t grp = f / fg;
                    for (uint32_t kh = 0; kh < g->k_h; kh++)
                        for (uint32_t kw = 0; kw < g->k_w; kw++) {
                            long ih = (long)oh * g->s_h - g->pad_t + (long)kh * g->d_h;
                            long iw = (long)ow * g->s_w - g->pad_l + (long)kw * g->d_w;
                            if (ih < 0 || ih >= (long)g->in_h || iw < 0 || iw >= (long)g->in_w)
                                continue;
                            for (uint32_t c = 0; c < cg; c++)
                                s += (double)x[((n * g->in_h + (size_t)ih) * g->in_w + (size_t)iw) * g->in_c +
                                               grp * cg + c] *
                                     w[(((size_t)kh * g->k_w + kw) * cg + c) * filters + f];
                        }
                    y[((n * g->out_h + oh) * g->out_w + ow) * filters + f] = (float)s;
                }
}

/* ---- direct AVX-512 against GEMM -------------------------------------------------- */

static const conv_spec direct_cases[] = {
    {32, 32, 3, 32, 3, 3, 1, 1, TL_PAD_VALID, 0, 0, 0, 0, 0, 0, 0},  /* the document's first conv */
    {15, 15, 32, 64, 3, 3, 1, 1, TL_PAD_VALID, 0, 0, 0, 0, 0, 0, 0}, /* the document's second conv */
    {28, 28, 1, 32, 3, 3, 1, 1, TL_PAD_VALID, 0, 0, 0, 0, 0, 0, 0},  /* Fashion-MNIST's first conv */
    {9, 7, 16, 48, 3, 3, 1, 1, TL_PAD_SAME, 0, 0, 0, 0, 0, 0, 0},
    {8, 8, 32, 16, 5, 5, 1, 1, TL_PAD_SAME, 0, 0, 0, 0, 0, 0, 0},
    {6, 5, 17, 80, 2, 3, 1, 1, TL_PAD_VALID, 0, 0, 0, 0, 0, 0, 0},
    {5, 5, 16, 16, 1, 1, 1, 1, TL_PAD_VALID, 0, 0, 0, 0, 0, 0, 0},
    {4, 6, 64, 128, 3, 1, 1, 1, TL_PAD_SAME, 0, 0, 0, 0, 0, 0, 0},
    /* explicit pads: PyTorch's padding=1 and 2, and lopsided ones */
    {8, 8, 16, 32, 3, 3, 1, 1, TL_PAD_EXPLICIT, 0, 0, 0, 1, 1, 1, 1},
    {7, 6, 3, 16, 5, 5, 1, 1, TL_PAD_EXPLICIT, 0, 0, 0, 2, 2, 2, 2},
    {6, 7, 16, 16, 3, 3, 1, 1, TL_PAD_EXPLICIT, 0, 0, 0, 0, 2, 3, 1},
    {5, 5, 16, 32, 1, 1, 1, 1, TL_PAD_EXPLICIT, 0, 0, 0, 1, 0, 0, 1}, /* 1x1 with padding: not pointwise */
    /* stride 2: ResNet-20's downsampling 3x3 (padding=1) and 1x1 projections */
    {32, 32, 16, 32, 3, 3, 2, 2, TL_PAD_EXPLICIT, 0, 0, 0, 1, 1, 1, 1},
    {16, 16, 32, 64, 1, 1, 2, 2, TL_PAD_VALID, 0, 0, 0, 0, 0, 0, 0}, /* even: the last row and column unread */
    {9, 7, 16, 32, 1, 1, 2, 2, TL_PAD_VALID, 0, 0, 0, 0, 0, 0, 0},
    {7, 9, 32, 16, 3, 3, 2, 2, TL_PAD_SAME, 0, 0, 0, 0, 0, 0, 0},
    {11, 10, 16, 48, 5, 5, 2, 2, TL_PAD_SAME, 0, 0, 0, 0, 0, 0, 0},
    {8, 9, 16, 16, 3, 3, 2, 1, TL_PAD_EXPLICIT, 0, 0, 0, 1, 1, 0, 2},
    {6, 5, 3, 32, 3, 3, 2, 2, TL_PAD_EXPLICIT, 0, 0, 0, 1, 1, 1, 1}, /* in_c % 16: GEMM input gradient */
    /* MobileNetV2's pointwise convolutions: wide rows, many filters */
    {8, 8, 96, 160, 1, 1, 1, 1, TL_PAD_VALID, 0, 0, 0, 0, 0, 0, 0},
    {4, 4, 320, 1280, 1, 1, 1, 1, TL_PAD_VALID, 0, 0, 0, 0, 0, 0, 0},
    {13, 3, 144, 32, 1, 1, 1, 1, TL_PAD_VALID, 0, 0, 0, 0, 0, 0, 0},    /* input-gradient pixel blocks whose taps read dz's zero border for some
     * pixels: a 5x5 valid kernel on 15-pixel rows (blocks 8 + 7), 32-pixel
     * padded rows (16 + 16), stride 2 with 48 channels */
    {9, 15, 32, 32, 5, 5, 1, 1, TL_PAD_VALID, 0, 0, 0, 0, 0, 0, 0},
    {4, 32, 16, 16, 3, 3, 1, 1, TL_PAD_SAME, 0, 0, 0, 0, 0, 0, 0},
    {9, 29, 48, 32, 3, 3, 2, 2, TL_PAD_EXPLICIT, 0, 0, 0, 1, 1, 1, 1},
};

START_TEST(direct_matches_gemm)
{
    const conv_spec *sc = &direct_cases[_i];
    tli_conv_geom g = geom_of(sc);
    if (!tli_conv_algo_ok(TLI_CONV_DIRECT, &g, sc->filters)) {
        fprintf(stderr, "no AVX-512 on this CPU: direct path not tested\n");
        return;
    }
    for (size_t batch = 1; batch <= 3; batch += 2) {
        const size_t in = batch * sc->h * sc->w * sc->c;
        const size_t out = batch * g.out_h * g.out_w * sc->filters;
        const size_t wn = tli_conv_k(&g) * sc->filters;
        float *x = fnew(in), *w = fnew(wn), *bias = fnew(sc->filters), *dz = fnew(out), *ref = fnew(out);
        th_fill_uniform(x, in, -1, 1, 1);
        th_fill_uniform(w, wn, -0.5f, 0.5f, 2);
        th_fill_uniform(bias, sc->filters, -0.1f, 0.1f, 3);
        th_fill_uniform(dz, out, -1, 1, 4);
        naive_conv(&g, sc->filters, x, w, bias, batch, ref);
        for (size_t i = 0; i < out; i++)
            ref[i] = ref[i] > 0.0f ? ref[i] : 0.0f;
        conv_run one = {0};
        for (uint32_t threads = 1; threads <= 2; threads++) {
            conv_run r[2];
            for (int a = 0; a < 2; a++)
                r[a] = run_algo(a ? TLI_CONV_DIRECT : TLI_CONV_GEMM, &g, sc->filters, threads, x, w, bias, dz,
                                batch, TL_ACT_RELU);
            ck_assert_msg(max_rel_diff(ref, r[1].y, out) < 1e-5, "case %d forward differs from the reference by %g",
                          _i, max_rel_diff(ref, r[1].y, out));
            ck_assert_msg(max_rel_diff(r[0].y, r[1].y, out) < 1e-5, "case %d forward differs by %g", _i,
                          max_rel_diff(r[0].y, r[1].y, out));
            ck_assert_msg(max_rel_diff(r[0].dw, r[1].dw, wn) < 1e-5, "case %d weight gradient differs by %g", _i,
                          max_rel_diff(r[0].dw, r[1].dw, wn));
            ck_assert_msg(max_rel_diff(r[0].dx, r[1].dx, in) < 1e-5, "case %d input gradient differs by %g", _i,
                          max_rel_diff(r[0].dx, r[1].dx, in));
            run_free(&r[0]);
            if (threads == 1) {
                one = r[1];
                continue;
            }
            /* the direct kernels: the same bits for 1 and 2 threads */
            ck_assert_msg(memcmp(one.y, r[1].y, out * sizeof(float)) == 0, "case %d forward: threads differ", _i);
            ck_assert_msg(memcmp(one.dw, r[1].dw, wn * sizeof(float)) == 0, "case %d dw: threads differ", _i);
            ck_assert_msg(memcmp(one.dx, r[1].dx, in * sizeof(float)) == 0, "case %d dx: threads differ", _i);
            run_free(&r[1]);
            run_free(&one);
        }
        free(x), free(w), free(bias), free(dz), free(ref);
    }
}
END_TEST

/* The direct forward kernel called straight: strides 1 and 2, 1x1 and
 * 3x3, padding read in place (edge rows) or from the padded copy, a padded
 * extent that stops short of the image (1x1 stride 2 on an even size),
 * in_c not a multiple of 16, 16 filters and more (160 = blocks of 4+3+3),
 * batch 1 and 3: against the double-precision reference, and bit for bit
 * across 1 and 2 threads and with or without the padded copy; with a
 * residual, bit for bit the unfused sum and clamp. */
static const conv_spec fwd_cases[] = {
    {8, 8, 16, 32, 3, 3, 2, 2, TL_PAD_EXPLICIT, 0, 0, 0, 1, 1, 1, 1},  /* ResNet downsampling */
    {9, 7, 16, 16, 3, 3, 2, 2, TL_PAD_EXPLICIT, 0, 0, 0, 1, 1, 1, 1},  /* odd sizes, 16 filters */
    {8, 8, 32, 64, 1, 1, 2, 2, TL_PAD_VALID, 0, 0, 0, 0, 0, 0, 0},     /* extent 15 < 16 */
    {7, 9, 24, 48, 1, 1, 2, 2, TL_PAD_VALID, 0, 0, 0, 0, 0, 0, 0},
    {6, 6, 3, 16, 3, 3, 2, 2, TL_PAD_SAME, 0, 0, 0, 0, 0, 0, 0},       /* a stem */
    {10, 10, 17, 160, 3, 3, 1, 1, TL_PAD_EXPLICIT, 0, 0, 0, 1, 1, 1, 1},
    {11, 5, 16, 16, 3, 3, 1, 1, TL_PAD_EXPLICIT, 0, 0, 0, 1, 1, 1, 1}, /* 55 pixels: panel tails */
    {4, 4, 96, 96, 1, 1, 1, 1, TL_PAD_VALID, 0, 0, 0, 0, 0, 0, 0},     /* 3+3 filter vectors */
    {6, 6, 40, 80, 1, 1, 1, 1, TL_PAD_VALID, 0, 0, 0, 0, 0, 0, 0},     /* 5 = 3+2 */
    {5, 5, 400, 32, 1, 1, 1, 1, TL_PAD_VALID, 0, 0, 0, 0, 0, 0, 0},    /* in_c > the panel's columns */
    {5, 5, 400, 16, 3, 3, 1, 1, TL_PAD_EXPLICIT, 0, 0, 0, 1, 1, 1, 1}, /* the same, packed */
    /* filters not a multiple of 16 (inference): the last vector masked */
    {8, 8, 144, 24, 1, 1, 1, 1, TL_PAD_VALID, 0, 0, 0, 0, 0, 0, 0},    /* MobileNetV2's projection: 16 + 8 */
    {5, 7, 20, 40, 1, 1, 1, 1, TL_PAD_VALID, 0, 0, 0, 0, 0, 0, 0},     /* 16, then 16 + 8 */
    {6, 6, 3, 8, 3, 3, 1, 1, TL_PAD_EXPLICIT, 0, 0, 0, 1, 1, 1, 1},    /* 8 alone, edge rows */
    {7, 5, 17, 50, 3, 3, 2, 2, TL_PAD_SAME, 0, 0, 0, 0, 0, 0, 0},      /* 32, then 16 + 2 */
};

START_TEST(direct_forward_strides)
{
#ifdef TLI_HAVE_AVX512
    if (!tli_cpu_has_avx512()) {
        fprintf(stderr, "no AVX-512 on this CPU: direct forward not tested\n");
        return;
    }
    const conv_spec *sc = &fwd_cases[_i];
    const tli_conv_geom g = geom_of(sc);
    const uint32_t ph = (g.out_h - 1) * g.s_h + g.k_h, pw = (g.out_w - 1) * g.s_w + g.k_w;
    const tli_direct_geom d = {ph, pw, g.in_c, g.out_h, g.out_w, g.k_h, g.k_w, sc->filters, g.s_h, g.s_w};
    for (size_t batch = 1; batch <= 3; batch += 2) {
        const size_t in = batch * sc->h * sc->w * sc->c, out = batch * g.out_h * g.out_w * sc->filters;
        const size_t wn = tli_conv_k(&g) * sc->filters;
        float *x = fnew(in), *w = fnew(wn), *bias = fnew(sc->filters), *ref = fnew(out);
        float *xpad = fnew(batch * ph * pw * sc->c), *y[3] = {fnew(out), fnew(out), fnew(out)};
        float *res = fnew(out), *lin = fnew(out), *fused = fnew(out);
        const size_t ef = tli_direct_edge_floats(&d);
        float *edge = fnew(2 * ef);
        th_fill_uniform(res, out, -1, 1, 14);
        th_fill_uniform(x, in, -1, 1, 11);
        th_fill_uniform(w, wn, -0.5f, 0.5f, 12);
        th_fill_uniform(bias, sc->filters, -0.1f, 0.1f, 13);
        naive_conv(&g, sc->filters, x, w, bias, batch, ref);
        tli_direct_forward_avx512(1, &d, x, sc->h, sc->w, g.pad_t, g.pad_l, NULL, edge, w, bias, NULL,
                                  TLI_CLAMP_NONE, lin, batch);
        double scale = 1.0; /* float sums of K products: errors grow with the outputs' size */
        for (size_t i = 0; i < out; i++)
            scale = fmax(scale, fabs((double)ref[i]));
        for (int clamp = TLI_CLAMP_NONE; clamp <= TLI_CLAMP_RELU6; clamp++) {
            for (size_t i = 0; i < out; i++)
                ref[i] = clamp == TLI_CLAMP_NONE ? ref[i] : ref[i] < 0.0f ? 0.0f : ref[i];
            tli_direct_forward_avx512(1, &d, x, sc->h, sc->w, g.pad_t, g.pad_l, NULL, edge, w, bias, NULL, clamp,
                                      y[0], batch);
            tli_direct_forward_avx512(2, &d, x, sc->h, sc->w, g.pad_t, g.pad_l, NULL, edge, w, bias, NULL, clamp,
                                      y[1], batch);
            tli_direct_forward_avx512(2, &d, x, sc->h, sc->w, g.pad_t, g.pad_l, xpad, NULL, w, bias, NULL, clamp,
                                      y[2], batch);
            for (size_t i = 0; i < out; i++) {
                float r = clamp == TLI_CLAMP_RELU6 && ref[i] > 6.0f ? 6.0f : ref[i];
                ck_assert_msg(fabs((double)y[0][i] - r) <= 1e-5 * scale,
                              "case %d batch %zu clamp %d: y[%zu] = %g, reference %g", _i, batch, clamp, i,
                              (double)y[0][i], (double)r);
            }
            ck_assert_msg(memcmp(y[0], y[1], out * sizeof(float)) == 0, "case %d: 1 and 2 threads differ", _i);
            ck_assert_msg(memcmp(y[0], y[2], out * sizeof(float)) == 0, "case %d: padded copy differs", _i);
            /* the residual join fused: clamp(conv + bias + res), the bits of the separate sum */
            for (uint32_t threads = 1; threads <= 2; threads++) {
                tli_direct_forward_avx512(threads, &d, x, sc->h, sc->w, g.pad_t, g.pad_l, threads == 2 ? xpad : NULL,
                                          edge, w, bias, res, clamp, fused, batch);
                for (size_t i = 0; i < out; i++) {
                    float e = lin[i] + res[i];
                    e = clamp == TLI_CLAMP_NONE ? e : e < 0.0f ? 0.0f : clamp == TLI_CLAMP_RELU6 && e > 6.0f ? 6.0f : e;
                    ck_assert_msg(memcmp(&e, &fused[i], sizeof e) == 0,
                                  "case %d clamp %d threads %u: fused residual y[%zu] = %g, separate sum %g", _i,
                                  clamp, threads, i, (double)fused[i], (double)e);
                }
            }
        }
        /* the padded copy: the image at (pad_t, pad_l), zeros around it */
        for (uint32_t r = 0; r < ph; r++)
            for (uint32_t q = 0; q < pw; q++) {
                long sr = (long)r - g.pad_t, sq = (long)q - g.pad_l;
                bool in_img = sr >= 0 && sr < (long)sc->h && sq >= 0 && sq < (long)sc->w;
                float v = xpad[(((batch - 1) * ph + r) * pw + q) * sc->c];
                float e = in_img ? x[(((batch - 1) * sc->h + (size_t)sr) * sc->w + (size_t)sq) * sc->c] : 0.0f;
                ck_assert(v == e);
            }
        free(x), free(w), free(bias), free(ref), free(xpad), free(y[0]), free(y[1]), free(y[2]);
        free(res), free(lin), free(fused), free(edge);
    }
#endif
}
END_TEST

/* Inference runs the direct forward for GEMM-path convolutions whose
 * filters are not a multiple of 16 where no window leaves the input
 * (conv_algo.c): tli_conv_infer with the GEMM algorithm against the
 * double-precision reference, bit for bit on 1 and 2 threads, with the
 * residual and ReLU6 fused; batch 1 and 3; and where the input needs
 * padding it stays on BLIS, which gives the same answer. */
START_TEST(infer_direct_for_odd_filters)
{
    static const conv_spec cases[] = {
        {8, 8, 144, 24, 1, 1, 1, 1, TL_PAD_VALID, 0, 0, 0, 0, 0, 0, 0},
        {7, 9, 33, 20, 3, 3, 1, 1, TL_PAD_VALID, 0, 0, 0, 0, 0, 0, 0},
        {6, 5, 16, 12, 3, 3, 1, 1, TL_PAD_SAME, 0, 0, 0, 0, 0, 0, 0}, /* padded: BLIS */
    };
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++)
        for (size_t batch = 1; batch <= 3; batch += 2) {
            const conv_spec *sc = &cases[ci];
            const tli_conv_geom g = geom_of(sc);
            ck_assert_int_eq(tli_conv_choose(&g, sc->filters), TLI_CONV_GEMM);
            const size_t in = batch * sc->h * sc->w * sc->c, out = batch * g.out_h * g.out_w * sc->filters;
            const size_t wn = tli_conv_k(&g) * sc->filters;
            float *x = fnew(in), *w = fnew(wn), *bias = fnew(sc->filters), *ref = fnew(out), *res = fnew(out);
            float *y[2] = {fnew(out), fnew(out)};
            th_fill_uniform(x, in, -1, 1, 21);
            th_fill_uniform(w, wn, -0.5f, 0.5f, 22);
            th_fill_uniform(bias, sc->filters, -0.1f, 0.1f, 23);
            th_fill_uniform(res, out, -1, 1, 24);
            naive_conv(&g, sc->filters, x, w, bias, batch, ref);
            for (uint32_t threads = 1; threads <= 2; threads++) {
                size_t sb = tli_conv_scratch_bytes(TLI_CONV_GEMM, &g, sc->filters, batch, threads, false, false);
                ck_assert(sb != SIZE_MAX);
                void *scratch = malloc(sb ? sb : 1);
                tli_conv_infer(threads, TLI_CONV_GEMM, &g, sc->filters, x, w, NULL, bias, res, TL_ACT_RELU6, 0.0f,
                               y[threads - 1], batch, scratch);
                free(scratch);
            }
            for (size_t i = 0; i < out; i++) {
                double e = (double)ref[i] + res[i];
                e = e < 0.0 ? 0.0 : e > 6.0 ? 6.0 : e;
                ck_assert_msg(fabs(y[0][i] - e) <= 1e-5 * fmax(1.0, fabs(e)), "case %zu batch %zu: y[%zu] = %g, want %g",
                              ci, batch, i, (double)y[0][i], e);
            }
            ck_assert_msg(memcmp(y[0], y[1], out * sizeof(float)) == 0, "case %zu: 1 and 2 threads differ", ci);
            /* Training: the forward pass too where pointwise (the backward
             * stays on BLIS, and the im2col matrix of a 3x3 is still made
             * for its weight gradient): y and dw (from dz as the gradient
             * of the pre-activation) against the definition. */
            float *dz = fnew(out), *dw = fnew(wn);
            th_fill_uniform(dz, out, -1, 1, 25);
            conv_run r = run_algo(TLI_CONV_GEMM, &g, sc->filters, 1, x, w, bias, dz, batch, TL_ACT_RELU);
            for (size_t i = 0; i < out; i++) {
                const double e = ref[i] > 0.0f ? ref[i] : 0.0;
                ck_assert_msg(fabs(r.y[i] - e) <= 1e-5 * fmax(1.0, fabs(e)), "case %zu training: y[%zu]", ci, i);
            }
            memset(dw, 0, wn * sizeof *dw);
            for (size_t n = 0; n < batch; n++)
                for (uint32_t oh = 0; oh < g.out_h; oh++)
                    for (uint32_t ow = 0; ow < g.out_w; ow++)
                        for (uint32_t kh = 0; kh < g.k_h; kh++)
                            for (uint32_t kw = 0; kw < g.k_w; kw++) {
                                const long ih = (long)oh * g.s_h - g.pad_t + kh, iw = (long)ow * g.s_w - g.pad_l + kw;
                                if (ih < 0 || ih >= (long)g.in_h || iw < 0 || iw >= (long)g.in_w)
                                    continue;
                                const float *xp = x + ((n * g.in_h + (size_t)ih) * g.in_w + (size_t)iw) * g.in_c;
                                const float *dp = dz + ((n * g.out_h + oh) * g.out_w + ow) * sc->filters;
                                for (uint32_t c = 0; c < g.in_c; c++)
                                    for (uint32_t f = 0; f < sc->filters; f++)
                                        dw[(((size_t)kh * g.k_w + kw) * g.in_c + c) * sc->filters + f] += xp[c] * dp[f];
                            }
            ck_assert_msg(max_rel_diff(dw, r.dw, wn) < 1e-4, "case %zu training: dw differs by %g", ci,
                          max_rel_diff(dw, r.dw, wn));
            run_free(&r);
            free(dz), free(dw);
            free(x), free(w), free(bias), free(ref), free(res), free(y[0]), free(y[1]);
        }
}
END_TEST

START_TEST(choice_follows_shape)
{
    conv_spec odd = {8, 8, 3, 20, 3, 3, 1, 1, TL_PAD_VALID, 0, 0, 0, 0, 0, 0, 0};
    tli_conv_geom g = geom_of(&odd);
    const tli_conv_algo direct = tli_cpu_has_avx512() ? TLI_CONV_DIRECT : TLI_CONV_GEMM;
    /* 20 filters are not a multiple of 16: always the GEMM path. */
    ck_assert_int_eq(tli_conv_choose(&g, 20), TLI_CONV_GEMM);
    /* Strides 1 and 2 (ResNet's downsampling): direct; 3 and more: GEMM. */
    g.s_h = 2;
    ck_assert_int_eq(tli_conv_choose(&g, 32), direct);
    g.s_w = 2;
    ck_assert_int_eq(tli_conv_choose(&g, 32), direct);
    g.s_h = 3;
    ck_assert_int_eq(tli_conv_choose(&g, 32), TLI_CONV_GEMM);
    g.s_h = 1;
    g.s_w = 3;
    ck_assert_int_eq(tli_conv_choose(&g, 32), TLI_CONV_GEMM);
    g.s_w = 1;
    /* A 1x1 stride-2 projection and a kernel larger than the gather's tap
     * table. */
    conv_spec proj = {8, 8, 16, 32, 1, 1, 2, 2, TL_PAD_VALID, 0, 0, 0, 0, 0, 0, 0};
    tli_conv_geom pg = geom_of(&proj);
    ck_assert_int_eq(tli_conv_choose(&pg, 32), direct);
    conv_spec huge = {20, 20, 16, 16, 17, 17, 1, 1, TL_PAD_SAME, 0, 0, 0, 0, 0, 0, 0};
    pg = geom_of(&huge);
    ck_assert_int_eq(tli_conv_choose(&pg, 16), TLI_CONV_GEMM);
    ck_assert_int_eq(tli_conv_choose(&g, 32), direct);
    /* Dilation and groups: never the direct AVX-512 kernels. */
    g.d_w = 2;
    ck_assert(!tli_conv_algo_ok(TLI_CONV_DIRECT, &g, 32));
    ck_assert_int_eq(tli_conv_choose(&g, 32), TLI_CONV_GEMM);
    g.d_w = 1;
    conv_spec grouped = {8, 8, 32, 32, 3, 3, 1, 1, TL_PAD_SAME, 0, 0, 4, 0, 0, 0, 0};
    g = geom_of(&grouped);
    ck_assert(!tli_conv_algo_ok(TLI_CONV_DIRECT, &g, 32));
    ck_assert(!tli_conv_algo_ok(TLI_CONV_DEPTHWISE, &g, 32));
    ck_assert_int_eq(tli_conv_choose(&g, 32), TLI_CONV_GEMM);
    /* Depthwise (groups == channels): its own kernels, any multiplier. */
    g.groups = 32;
    ck_assert_int_eq(tli_conv_choose(&g, 32), TLI_CONV_DEPTHWISE);
    ck_assert_int_eq(tli_conv_choose(&g, 64), TLI_CONV_DEPTHWISE);
    ck_assert(!tli_conv_algo_ok(TLI_CONV_DIRECT, &g, 32));
    /* Its scratch: the weight gradient's per-image sums, in training only. */
    ck_assert_uint_eq(tli_conv_scratch_bytes(TLI_CONV_DEPTHWISE, &g, 32, 64, 2, false, false), 0);
    ck_assert_uint_eq(tli_conv_scratch_bytes(TLI_CONV_DEPTHWISE, &g, 32, 1, 2, true, true), 0);
    ck_assert_uint_eq(tli_conv_scratch_bytes(TLI_CONV_DEPTHWISE, &g, 32, 64, 2, true, true), 63 * 9 * 32 * 4);
    /* One channel, one group: an ordinary convolution. */
    conv_spec one = {8, 8, 1, 32, 3, 3, 1, 1, TL_PAD_SAME, 0, 0, 1, 0, 0, 0, 0};
    g = geom_of(&one);
    ck_assert_int_eq(tli_conv_choose(&g, 32), direct);
}
END_TEST

/* ---- groups and depthwise ------------------------------------------------------------ */

static const conv_spec group_cases[] = {
    /* grouped: GEMM per group */
    {6, 7, 4, 6, 3, 3, 1, 1, TL_PAD_SAME, 0, 0, 2, 0, 0, 0, 0},
    {9, 8, 6, 9, 3, 2, 2, 1, TL_PAD_EXPLICIT, 2, 1, 3, 2, 1, 0, 2},
    {5, 5, 8, 8, 1, 1, 1, 1, TL_PAD_VALID, 0, 0, 4, 0, 0, 0, 0}, /* pointwise: strided views, no im2col */
    {8, 8, 32, 32, 3, 3, 2, 2, TL_PAD_EXPLICIT, 0, 0, 2, 1, 1, 1, 1},
    /* depthwise: multiplier 1 and 2, strides 1 and 2, dilation, paddings */
    {7, 6, 5, 5, 3, 3, 1, 1, TL_PAD_SAME, 0, 0, 5, 0, 0, 0, 0},
    {8, 8, 5, 10, 3, 3, 2, 2, TL_PAD_EXPLICIT, 0, 0, 5, 1, 1, 1, 1},
    {9, 9, 19, 19, 3, 3, 2, 2, TL_PAD_SAME, 0, 0, 19, 0, 0, 0, 0},
    {10, 9, 4, 8, 3, 3, 1, 1, TL_PAD_SAME, 2, 3, 4, 0, 0, 0, 0},
    {6, 6, 3, 9, 5, 5, 1, 2, TL_PAD_EXPLICIT, 0, 0, 3, 0, 5, 2, 1},
    {12, 12, 48, 48, 3, 3, 1, 1, TL_PAD_VALID, 0, 0, 48, 0, 0, 0, 0},
    {5, 5, 33, 33, 7, 7, 1, 1, TL_PAD_SAME, 0, 0, 33, 0, 0, 0, 0}, /* kernel larger than the image */
    {11, 13, 16, 16, 3, 3, 2, 2, TL_PAD_EXPLICIT, 2, 2, 16, 2, 2, 2, 2}, /* strided, dilated, wide */
    {7, 9, 83, 83, 3, 3, 1, 1, TL_PAD_SAME, 0, 0, 83, 0, 0, 0, 0},       /* 64 + 16 + 3 channels */
    {10, 11, 4, 4, 9, 9, 1, 1, TL_PAD_SAME, 0, 0, 4, 0, 0, 0, 0},        /* 81 taps: two rounds */
    {12, 10, 8, 16, 3, 3, 2, 1, TL_PAD_EXPLICIT, 0, 0, 8, 1, 1, 1, 1},   /* multiplier 2, stride 2x1 */
    /* depthwise 3x3 fast paths (MobileNet): rows of 8 + 8 + 1 interior
     * outputs, strides 1 and 2, odd sizes, channels in blocks of 16 and not */
    {17, 19, 32, 32, 3, 3, 1, 1, TL_PAD_SAME, 0, 0, 32, 0, 0, 0, 0},
    {21, 23, 48, 48, 3, 3, 2, 2, TL_PAD_SAME, 0, 0, 48, 0, 0, 0, 0},
    {16, 16, 40, 40, 3, 3, 2, 2, TL_PAD_SAME, 0, 0, 40, 0, 0, 0, 0},       /* pads 0 and 1 */
    {15, 15, 64, 64, 3, 3, 2, 2, TL_PAD_EXPLICIT, 0, 0, 64, 1, 1, 1, 1}, /* PyTorch's stride 2 */
    {9, 10, 16, 16, 3, 3, 1, 1, TL_PAD_EXPLICIT, 0, 0, 16, 2, 2, 2, 2},  /* pad 2 */
    {2, 2, 16, 16, 3, 3, 1, 1, TL_PAD_SAME, 0, 0, 16, 0, 0, 0, 0},       /* window over both edges */
    {1, 3, 16, 16, 3, 3, 2, 2, TL_PAD_EXPLICIT, 0, 0, 16, 1, 1, 1, 1},   /* one row */
    {10, 9, 32, 32, 3, 3, 2, 1, TL_PAD_EXPLICIT, 0, 0, 32, 1, 1, 1, 1},  /* stride 2x1 */
    {9, 12, 16, 16, 3, 3, 1, 2, TL_PAD_EXPLICIT, 0, 0, 16, 1, 0, 1, 0},  /* stride 1x2, uneven pads */
    {7, 11, 17, 17, 3, 3, 1, 3, TL_PAD_SAME, 0, 0, 17, 0, 0, 0, 0},      /* stride 3: the general kernels */
    {9, 33, 16, 16, 3, 3, 2, 2, TL_PAD_SAME, 0, 0, 16, 0, 0, 0, 0},      /* rows of 17: the row weight gradient */
    {5, 18, 20, 20, 3, 3, 1, 1, TL_PAD_SAME, 0, 0, 20, 0, 0, 0, 0},      /* the same with 4 channels over */
};
#define NGROUP ((int)(sizeof group_cases / sizeof group_cases[0]))

/* Everything a grouped case needs, filled from a seed. */
typedef struct group_data {
    tli_conv_geom g;
    uint32_t filters;
    size_t batch, in, out, wn;
    float *x, *w, *bias, *dz;
} group_data;

static group_data group_data_for(const conv_spec *sc, size_t batch)
{
    group_data d = {geom_of(sc), sc->filters, batch, 0, 0, 0, NULL, NULL, NULL, NULL};
    d.in = batch * d.g.in_h * d.g.in_w * d.g.in_c;
    d.out = batch * d.g.out_h * d.g.out_w * d.filters;
    d.wn = tli_conv_k(&d.g) * d.filters;
    d.x = fnew(d.in), d.w = fnew(d.wn), d.bias = fnew(d.filters), d.dz = fnew(d.out);
    th_fill_uniform(d.x, d.in, -1, 1, 11);
    th_fill_uniform(d.w, d.wn, -0.5f, 0.5f, 12);
    th_fill_uniform(d.bias, d.filters, -0.1f, 0.1f, 13);
    th_fill_uniform(d.dz, d.out, -1, 1, 14);
    return d;
}

static void group_data_free(group_data *d)
{
    free(d->x), free(d->w), free(d->bias), free(d->dz);
}

/* The algorithm the layer would use, against the reference; GEMM and
 * depthwise agree; 1 and 2 threads give the same bits. */
START_TEST(grouped_matches_reference)
{
    const conv_spec *sc = &group_cases[_i];
    group_data d = group_data_for(sc, 3);
    float *ref = fnew(d.out);
    naive_conv(&d.g, d.filters, d.x, d.w, d.bias, d.batch, ref);
    const tli_conv_algo best = tli_conv_choose(&d.g, d.filters);
    ck_assert_int_eq(best, d.g.groups == d.g.in_c ? TLI_CONV_DEPTHWISE : TLI_CONV_GEMM);
    conv_run one = run_algo(best, &d.g, d.filters, 1, d.x, d.w, d.bias, d.dz, d.batch, TL_ACT_LINEAR);
    conv_run two = run_algo(best, &d.g, d.filters, 2, d.x, d.w, d.bias, d.dz, d.batch, TL_ACT_LINEAR);
    ck_assert_msg(max_rel_diff(ref, one.y, d.out) < 1e-5, "case %d: forward differs from the reference by %g", _i,
                  max_rel_diff(ref, one.y, d.out));
    ck_assert_msg(memcmp(one.y, two.y, d.out * sizeof(float)) == 0, "case %d: forward differs with 2 threads", _i);
    ck_assert_msg(memcmp(one.dw, two.dw, d.wn * sizeof(float)) == 0, "case %d: dw differs with 2 threads", _i);
    ck_assert_msg(memcmp(one.dx, two.dx, d.in * sizeof(float)) == 0, "case %d: dx differs with 2 threads", _i);
    if (best == TLI_CONV_DEPTHWISE) {
        conv_run gemm = run_algo(TLI_CONV_GEMM, &d.g, d.filters, 1, d.x, d.w, d.bias, d.dz, d.batch, TL_ACT_LINEAR);
        ck_assert_msg(max_rel_diff(gemm.y, one.y, d.out) < 1e-5, "case %d: forward differs from GEMM", _i);
        ck_assert_msg(max_rel_diff(gemm.dw, one.dw, d.wn) < 1e-5, "case %d: dw differs from GEMM by %g", _i,
                      max_rel_diff(gemm.dw, one.dw, d.wn));
        ck_assert_msg(max_rel_diff(gemm.dx, one.dx, d.in) < 1e-5, "case %d: dx differs from GEMM by %g", _i,
                      max_rel_diff(gemm.dx, one.dx, d.in));
        run_free(&gemm);
    }
    run_free(&one);
    run_free(&two);
    free(ref);
    group_data_free(&d);
}
END_TEST

/* A grouped convolution equals `groups` convolutions of one group each,
 * on the group's channels with the group's filters, concatenated along the
 * channels - forward, weight and input gradients. Each is run with the
 * layer's algorithm (depthwise kernels against single-channel GEMMs). */
START_TEST(grouped_equals_separate_convs)
{
    const conv_spec *sc = &group_cases[_i];
    group_data d = group_data_for(sc, 2);
    const tli_conv_geom *g = &d.g;
    const uint32_t G = g->groups, cg = g->in_c / G, fg = d.filters / G;
    const size_t pix_in = (size_t)d.batch * g->in_h * g->in_w, pix_out = (size_t)d.batch * g->out_h * g->out_w;
    const size_t taps = (size_t)g->k_h * g->k_w;
    conv_run whole = run_algo(tli_conv_choose(g, d.filters), g, d.filters, 2, d.x, d.w, d.bias, d.dz, d.batch,
                              TL_ACT_LINEAR);
    tli_conv_geom sg = *g;
    sg.in_c = cg;
    sg.groups = 1;
    float *xs = fnew(pix_in * cg), *ws = fnew(taps * cg * fg), *dzs = fnew(pix_out * fg);
    for (uint32_t grp = 0; grp < G; grp++) {
        for (size_t p = 0; p < pix_in; p++)
            memcpy(xs + p * cg, d.x + p * g->in_c + grp * cg, cg * sizeof(float));
        for (size_t r = 0; r < taps * cg; r++)
            memcpy(ws + r * fg, d.w + r * d.filters + grp * fg, fg * sizeof(float));
        for (size_t p = 0; p < pix_out; p++)
            memcpy(dzs + p * fg, d.dz + p * d.filters + grp * fg, fg * sizeof(float));
        conv_run part = run_algo(tli_conv_choose(&sg, fg), &sg, fg, 1, xs, ws, d.bias + grp * fg, dzs, d.batch,
                                 TL_ACT_LINEAR);
        for (size_t p = 0; p < pix_out; p++)
            for (uint32_t f = 0; f < fg; f++) {
                float a = whole.y[p * d.filters + grp * fg + f], b = part.y[p * fg + f];
                ck_assert_msg(fabsf(a - b) <= 1e-5f * (1.0f + fabsf(b)), "case %d group %u: y[%zu][%u] %g vs %g", _i,
                              grp, p, f, (double)a, (double)b);
            }
        for (size_t r = 0; r < taps * cg; r++)
            for (uint32_t f = 0; f < fg; f++) {
                float a = whole.dw[r * d.filters + grp * fg + f], b = part.dw[r * fg + f];
                ck_assert_msg(fabsf(a - b) <= 1e-4f * (1.0f + fabsf(b)), "case %d group %u: dw[%zu][%u] %g vs %g", _i,
                              grp, r, f, (double)a, (double)b);
            }
        for (size_t p = 0; p < pix_in; p++)
            for (uint32_t c = 0; c < cg; c++) {
                float a = whole.dx[p * g->in_c + grp * cg + c], b = part.dx[p * cg + c];
                ck_assert_msg(fabsf(a - b) <= 1e-5f * (1.0f + fabsf(b)), "case %d group %u: dx[%zu][%u] %g vs %g", _i,
                              grp, p, c, (double)a, (double)b);
            }
        run_free(&part);
    }
    run_free(&whole);
    free(xs), free(ws), free(dzs);
    group_data_free(&d);
}
END_TEST

/* The depthwise kernels' two builds give the same bits, with and without
 * their fused ReLU or ReLU6, which equal the activation applied after
 * (tli_conv_forward applies the other activations). */
#ifdef TLI_HAVE_AVX512
static void depthwise_builds_agree_at(const conv_spec *sc, size_t batch, int _i)
{
    group_data d = group_data_for(sc, batch);
    float *y[2] = {fnew(d.out), fnew(d.out)}, *dw[2] = {fnew(d.wn), fnew(d.wn)}, *dx[2] = {fnew(d.in), fnew(d.in)};
    float *plain = fnew(d.out);
    for (int clamp = TLI_CLAMP_NONE; clamp <= TLI_CLAMP_RELU6; clamp++) {
        tli_depthwise_forward_c(2, &d.g, d.filters, d.x, d.w, d.bias, clamp, y[0], d.batch);
        tli_depthwise_forward_avx512(1, &d.g, d.filters, d.x, d.w, d.bias, clamp, y[1], d.batch);
        ck_assert_msg(memcmp(y[0], y[1], d.out * sizeof(float)) == 0, "case %d: forward builds differ", _i);
        if (clamp == TLI_CLAMP_NONE)
            memcpy(plain, y[0], d.out * sizeof(float));
        /* the fused clamp is the activation applied afterwards */
        for (size_t k = 0; k < d.out; k++) {
            float v = plain[k] < 0.0f ? 0.0f : plain[k];
            if (clamp == TLI_CLAMP_RELU6 && v > 6.0f)
                v = 6.0f;
            ck_assert(y[0][k] == (clamp == TLI_CLAMP_NONE ? plain[k] : v));
        }
    }
    free(plain);
    float *partials = fnew(tli_depthwise_partials(&d.g, d.filters, d.batch));
    tli_depthwise_weight_grad_c(1, &d.g, d.filters, d.x, d.dz, dw[0], partials, d.batch);
    tli_depthwise_weight_grad_avx512(2, &d.g, d.filters, d.x, d.dz, dw[1], partials, d.batch);
    free(partials);
    ck_assert_msg(memcmp(dw[0], dw[1], d.wn * sizeof(float)) == 0, "case %d: dw builds differ", _i);
    tli_depthwise_input_grad_c(2, &d.g, d.filters, d.dz, d.w, dx[0], d.batch);
    tli_depthwise_input_grad_avx512(1, &d.g, d.filters, d.dz, d.w, dx[1], d.batch);
    ck_assert_msg(memcmp(dx[0], dx[1], d.in * sizeof(float)) == 0, "case %d: dx builds differ", _i);
    for (int i = 0; i < 2; i++)
        free(y[i]), free(dw[i]), free(dx[i]);
    group_data_free(&d);
}
#endif

/* The same at batch 3 and at batch 1 (where the threads split rows and
 * channel blocks instead of images), each build with 1 and 2 threads. */
START_TEST(depthwise_builds_agree)
{
#ifdef TLI_HAVE_AVX512
    if (!tli_cpu_has_avx512()) {
        fprintf(stderr, "no AVX-512 on this CPU: one depthwise build tested\n");
        return;
    }
    const conv_spec *sc = &group_cases[_i];
    if (sc->groups != sc->c)
        return;
    depthwise_builds_agree_at(sc, 3, _i);
    depthwise_builds_agree_at(sc, 1, _i);
#else
    fprintf(stderr, "built without AVX-512 kernels: one depthwise build tested\n");
#endif
}
END_TEST

/* Batch 1 with ReLU6 fused, as in MobileNet's inference: the reference's
 * values, GEMM's gradients, and the same bits with 1 and 2 threads. */
START_TEST(depthwise_batch1)
{
    const conv_spec *sc = &group_cases[_i];
    if (sc->groups != sc->c)
        return;
    group_data d = group_data_for(sc, 1);
    float *ref = fnew(d.out);
    naive_conv(&d.g, d.filters, d.x, d.w, d.bias, 1, ref);
    for (size_t k = 0; k < d.out; k++)
        ref[k] = ref[k] < 0.0f ? 0.0f : ref[k] > 6.0f ? 6.0f : ref[k];
    conv_run one = run_algo(TLI_CONV_DEPTHWISE, &d.g, d.filters, 1, d.x, d.w, d.bias, d.dz, 1, TL_ACT_RELU6);
    conv_run two = run_algo(TLI_CONV_DEPTHWISE, &d.g, d.filters, 2, d.x, d.w, d.bias, d.dz, 1, TL_ACT_RELU6);
    conv_run gemm = run_algo(TLI_CONV_GEMM, &d.g, d.filters, 1, d.x, d.w, d.bias, d.dz, 1, TL_ACT_RELU6);
    ck_assert_msg(max_rel_diff(ref, one.y, d.out) < 1e-5, "case %d: forward differs from the reference by %g", _i,
                  max_rel_diff(ref, one.y, d.out));
    ck_assert_msg(max_rel_diff(gemm.dw, one.dw, d.wn) < 1e-5, "case %d: dw differs from GEMM by %g", _i,
                  max_rel_diff(gemm.dw, one.dw, d.wn));
    ck_assert_msg(max_rel_diff(gemm.dx, one.dx, d.in) < 1e-5, "case %d: dx differs from GEMM by %g", _i,
                  max_rel_diff(gemm.dx, one.dx, d.in));
    ck_assert_msg(memcmp(one.y, two.y, d.out * sizeof(float)) == 0, "case %d: forward differs with 2 threads", _i);
    ck_assert_msg(memcmp(one.dw, two.dw, d.wn * sizeof(float)) == 0, "case %d: dw differs with 2 threads", _i);
    ck_assert_msg(memcmp(one.dx, two.dx, d.in * sizeof(float)) == 0, "case %d: dx differs with 2 threads", _i);
    run_free(&one), run_free(&two), run_free(&gemm);
    free(ref);
    group_data_free(&d);
}
END_TEST

/* ---- by hand, through the public API ------------------------------------------------- */

/* A one-layer model's outputs for one input. */
static void predict1(tl_model *m, const float *x, float *y, size_t ny)
{
    ck_assert_tl_ok(tl_model_predict(y, ny, m, x, 1, 0));
}

static tl_conv2d_options conv_opts(uint32_t filters, uint32_t k, uint32_t s, tl_padding pad)
{
    tl_conv2d_options o = TL_CONV2D_OPTIONS_INIT;
    o.filters = filters;
    o.kernel_h = o.kernel_w = k;
    o.stride_h = o.stride_w = s;
    o.padding = pad;
    return o;
}

/* Kernel taps 1..9 (row by row), dilation 2, on x[i][j] = 5i + j + 1. */
START_TEST(dilated_by_hand)
{
    float x[25], w[9], y[25];
    for (int i = 0; i < 25; i++)
        x[i] = (float)(i + 1);
    for (int i = 0; i < 9; i++)
        w[i] = (float)(i + 1);
    for (int same = 0; same < 2; same++) {
        tl_model *m;
        ck_assert_tl_ok(tl_model_create(&m, 5, 5, 1, 1));
        tl_conv2d_options o = conv_opts(1, 3, 1, same ? TL_PAD_SAME : TL_PAD_VALID);
        o.dilation_h = o.dilation_w = 2;
        tl_layer *l;
        ck_assert_tl_ok(tl_model_add_conv2d(&l, m, &o));
        ck_assert_tl_ok(tl_layer_set_weights(l, 0, w, 9));
        tl_shape s;
        ck_assert_tl_ok(tl_layer_output_shape(&s, l));
        if (!same) {
            /* The taps land on rows / columns 0, 2, 4:
             * 1*1 + 2*3 + 3*5 + 4*11 + 5*13 + 6*15 + 7*21 + 8*23 + 9*25 = 777 */
            ck_assert(s.dims[0] == 1 && s.dims[1] == 1);
            predict1(m, x, y, 1);
            ck_assert_float_eq(y[0], 777.0f);
        } else {
            /* The kernel spans 5 cells: 'same' pads 2 on each side. The
             * centre is the valid output; the corner (0, 0) keeps the taps
             * (1,1), (1,2), (2,1), (2,2) on x(0,0), x(0,2), x(2,0), x(2,2):
             * 5*1 + 6*3 + 8*11 + 9*13 = 228; (0, 4) keeps (1,0), (1,1),
             * (2,0), (2,1) on x(0,2), x(0,4), x(2,2), x(2,4):
             * 4*3 + 5*5 + 7*13 + 8*15 = 248. */
            ck_assert(s.dims[0] == 5 && s.dims[1] == 5);
            predict1(m, x, y, 25);
            ck_assert_float_eq(y[12], 777.0f);
            ck_assert_float_eq(y[0], 228.0f);
            ck_assert_float_eq(y[4], 248.0f);
        }
        tl_model_free(m);
    }
}
END_TEST

/* A 3x3 all-ones kernel at stride 2 on the 4x4 input x[i][j] = 4i + j + 1:
 * PyTorch's padding=1 and TensorFlow's 'same' both give 2x2 outputs, but
 * PyTorch's windows start at -1 (one row / column of zeros on each side),
 * TensorFlow's at 0 (its single row / column of zeros at the end). */
START_TEST(explicit_padding_by_hand)
{
    float x[16], w[9], y[4];
    for (int i = 0; i < 16; i++)
        x[i] = (float)(i + 1);
    for (int i = 0; i < 9; i++)
        w[i] = 1.0f;
    /* torch: rows/cols {0,1}x{0,1}, {0,1}x{1,2,3}, {1,2,3}x{0,1}, {1,2,3}x{1,2,3} */
    const float torch[4] = {1 + 2 + 5 + 6, 2 + 3 + 4 + 6 + 7 + 8, 5 + 6 + 9 + 10 + 13 + 14,
                            6 + 7 + 8 + 10 + 11 + 12 + 14 + 15 + 16};
    /* same: {0,1,2}x{0,1,2}, {0,1,2}x{2,3}, {2,3}x{0,1,2}, {2,3}x{2,3} */
    const float same[4] = {1 + 2 + 3 + 5 + 6 + 7 + 9 + 10 + 11, 3 + 4 + 7 + 8 + 11 + 12,
                           9 + 10 + 11 + 13 + 14 + 15, 11 + 12 + 15 + 16};
    const struct {
        tl_padding pad;
        uint32_t t, b, l, r;
        const float *want;
    } cases[] = {
        {TL_PAD_EXPLICIT, 1, 1, 1, 1, torch},
        {TL_PAD_SAME, 0, 0, 0, 0, same},
        {TL_PAD_EXPLICIT, 0, 1, 0, 1, same}, /* 'same' written out */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tl_model *m;
        ck_assert_tl_ok(tl_model_create(&m, 4, 4, 1, 1));
        tl_conv2d_options o = conv_opts(1, 3, 2, cases[i].pad);
        o.pad_top = cases[i].t, o.pad_bottom = cases[i].b, o.pad_left = cases[i].l, o.pad_right = cases[i].r;
        tl_layer *l;
        ck_assert_tl_ok(tl_model_add_conv2d(&l, m, &o));
        ck_assert_tl_ok(tl_layer_set_weights(l, 0, w, 9));
        predict1(m, x, y, 4);
        for (int k = 0; k < 4; k++)
            ck_assert_msg(y[k] == cases[i].want[k], "case %zu: y[%d] = %g, expected %g", i, k, (double)y[k],
                          (double)cases[i].want[k]);
        tl_model_free(m);
    }
    ck_assert(torch[0] != same[0]);
    /* Output sizes: floor((in + before + after - k) / stride) + 1. */
    tl_model *m;
    ck_assert_tl_ok(tl_model_create(&m, 224, 224, 3, 1));
    tl_conv2d_options o = conv_opts(8, 7, 2, TL_PAD_EXPLICIT); /* torchvision ResNet's conv1 */
    o.pad_top = o.pad_bottom = o.pad_left = o.pad_right = 3;
    tl_layer *l;
    ck_assert_tl_ok(tl_model_add_conv2d(&l, m, &o));
    tl_shape s;
    ck_assert_tl_ok(tl_layer_output_shape(&s, l));
    ck_assert(s.dims[0] == 112 && s.dims[1] == 112 && s.dims[2] == 8);
    o = conv_opts(8, 3, 1, TL_PAD_EXPLICIT); /* lopsided: 112 + 0 + 2 - 3 + 1, 112 + 1 + 0 - 3 + 1 */
    o.pad_bottom = 2, o.pad_left = 1;
    ck_assert_tl_ok(tl_model_add_conv2d(&l, m, &o));
    ck_assert_tl_ok(tl_layer_output_shape(&s, l));
    ck_assert(s.dims[0] == 112 && s.dims[1] == 111);
    tl_model_free(m);
}
END_TEST

/* torchvision ResNet's max-pool (3x3, stride 2, padding 1) on negative
 * values: padded cells never win. Average pooling with the same padding
 * divides by 9 (count_include_pad) or by the real cells. */
START_TEST(pool_explicit_by_hand)
{
    float x[16], y[4];
    for (int i = 0; i < 16; i++)
        x[i] = -(float)(i + 1);
    tl_model *m;
    ck_assert_tl_ok(tl_model_create(&m, 4, 4, 1, 1));
    tl_maxpool2d_options mo = TL_MAXPOOL2D_OPTIONS_INIT;
    mo.pool_h = mo.pool_w = 3;
    mo.stride_h = mo.stride_w = 2;
    mo.padding = TL_PAD_EXPLICIT;
    mo.pad_top = mo.pad_bottom = mo.pad_left = mo.pad_right = 1;
    ck_assert_tl_ok(tl_model_add_maxpool2d(NULL, m, &mo));
    predict1(m, x, y, 4);
    /* windows {0,1}x{0,1}, {0,1}x{1,2,3}, {1,2,3}x{0,1}, {1,2,3}x{1,2,3} */
    ck_assert(y[0] == -1.0f && y[1] == -2.0f && y[2] == -5.0f && y[3] == -6.0f);
    tl_model_free(m);
    ck_assert_tl_ok(tl_model_create(&m, 112, 112, 2, 1));
    tl_layer *l;
    ck_assert_tl_ok(tl_model_add_maxpool2d(&l, m, &mo));
    tl_shape s;
    ck_assert_tl_ok(tl_layer_output_shape(&s, l));
    ck_assert(s.dims[0] == 56 && s.dims[1] == 56);
    tl_model_free(m);

    for (int i = 0; i < 16; i++)
        x[i] = (float)(i + 1);
    const float sums[4] = {14, 30, 57, 99}, cells[4] = {4, 6, 6, 9};
    for (int cip = 0; cip < 2; cip++) {
        ck_assert_tl_ok(tl_model_create(&m, 4, 4, 1, 1));
        tl_avgpool2d_options ao = TL_AVGPOOL2D_OPTIONS_INIT;
        ao.pool_h = ao.pool_w = 3;
        ao.stride_h = ao.stride_w = 2;
        ao.padding = TL_PAD_EXPLICIT;
        ao.pad_top = ao.pad_bottom = ao.pad_left = ao.pad_right = 1;
        ao.count_include_pad = cip;
        ck_assert_tl_ok(tl_model_add_avgpool2d(NULL, m, &ao));
        predict1(m, x, y, 4);
        for (int k = 0; k < 4; k++)
            ck_assert_float_eq(y[k], sums[k] / (cip ? 9.0f : cells[k]));
        tl_model_free(m);
    }
}
END_TEST

/* ---- options versions --------------------------------------------------------------- */

START_TEST(options_versions)
{
    tl_model *m;
    ck_assert_tl_ok(tl_model_create(&m, 8, 8, 4, 1));
    /* A version-2 caller: the members it does not have are never read. */
    tl_conv2d_options o = conv_opts(4, 3, 1, TL_PAD_SAME);
    o.version = 2;
    o.groups = 3; /* garbage past a version-2 struct */
    o.dilation_h = 0;
    o.pad_top = 7;
    tl_layer *l;
    ck_assert_tl_ok(tl_model_add_conv2d(&l, m, &o));
    tl_param_info pi;
    ck_assert_tl_ok(tl_layer_param_info(&pi, l, 0));
    ck_assert(pi.shape.dims[2] == 4);
    /* Zero groups and dilations mean 1. */
    tl_conv2d_options z = conv_opts(4, 3, 1, TL_PAD_SAME);
    z.groups = 0;
    z.dilation_h = z.dilation_w = 0;
    ck_assert_tl_ok(tl_model_add_conv2d(&l, m, &z));
    ck_assert_tl_ok(tl_layer_param_info(&pi, l, 0));
    ck_assert(pi.shape.dims[0] == 3 && pi.shape.dims[2] == 4);
    tl_model_free(m);
    /* _init of version 2 writes only version 2's bytes. */
    tl_conv2d_options v;
    memset(&v, 0xab, sizeof v);
    ck_assert_tl_ok(tl_conv2d_options_init(&v, 2));
    ck_assert_uint_eq(v.version, 2);
    ck_assert_uint_eq(v.groups, 0xababababu);
    ck_assert_tl_ok(tl_conv2d_options_init(&v, 3));
    ck_assert(v.groups == 1 && v.dilation_h == 1 && v.dilation_w == 1 && v.pad_top == 0 && v.pad_right == 0);
    tl_maxpool2d_options mp;
    memset(&mp, 0xab, sizeof mp);
    ck_assert_tl_ok(tl_maxpool2d_options_init(&mp, 2));
    ck_assert_uint_eq(mp.pad_top, 0xababababu);
    ck_assert_tl_ok(tl_maxpool2d_options_init(&mp, 3));
    ck_assert_uint_eq(mp.pad_top, 0);
    tl_avgpool2d_options ap;
    ck_assert_tl_ok(tl_avgpool2d_options_init(&ap, 2));
    ck_assert_tl_err(tl_avgpool2d_options_init(&ap, 3), TL_EVERSION, "tl_avgpool2d_options");
}
END_TEST

/* ---- bad settings ------------------------------------------------------------------------ */

START_TEST(bad_settings)
{
    tl_model *m;
    ck_assert_tl_ok(tl_model_create(&m, 8, 8, 6, 1));
    tl_conv2d_options o = conv_opts(8, 3, 1, TL_PAD_SAME);
    o.name = "g";
    o.groups = 4; /* 6 channels */
    ck_assert_tl_err(tl_model_add_conv2d(NULL, m, &o), TL_EINVAL,
                     "layer 'g' (conv2d, index 0): groups 4 must divide the input channels (6) and the filters (8)");
    o.groups = 3; /* 8 filters */
    ck_assert_tl_err(tl_model_add_conv2d(NULL, m, &o), TL_EINVAL, "groups 3 must divide");
    o.groups = 2;
    o.padding = TL_PAD_EXPLICIT;
    o.pad_top = 4;
    ck_assert_tl_err(tl_model_add_conv2d(NULL, m, &o), TL_EINVAL,
                     "layer 'g' (conv2d, index 0): pad_top 4 is larger than the kernel's height (3)");
    o.pad_top = 0;
    o.dilation_w = 2; /* spans 5 */
    o.pad_right = 6;
    ck_assert_tl_err(tl_model_add_conv2d(NULL, m, &o), TL_EINVAL, "pad_right 6 is larger than the kernel's width (5");
    o.pad_right = 5; /* as wide as the kernel: allowed */
    ck_assert_tl_ok(tl_model_add_conv2d(NULL, m, &o));
    o.name = "s";
    o.padding = TL_PAD_SAME;
    o.pad_right = 1;
    ck_assert_tl_err(tl_model_add_conv2d(NULL, m, &o), TL_EINVAL, "layer 's' (conv2d, index 1): pads (top 0, bottom 0, "
                                                                  "left 0, right 1) need padding 'explicit', not 'same'");
    o.padding = (tl_padding)3;
    ck_assert_tl_err(tl_model_add_conv2d(NULL, m, &o), TL_EINVAL, "unknown padding 3");
    /* The dilated kernel must fit the padded input. */
    o = conv_opts(4, 3, 1, TL_PAD_VALID);
    o.dilation_h = 4;
    ck_assert_tl_err(tl_model_add_conv2d(NULL, m, &o), TL_ESHAPE,
                     "kernel 3x3 (dilation 4x1: 9x3 cells) is larger than its input (6, 9, 8) with valid padding");
    /* Dilation 0 is not something the options can say (0 means 1); a
     * file's settings can. */
    const tli_layer_ops *ops = tli_layer_ops_for(TL_LAYER_CONV2D);
    _Alignas(8) unsigned char cfg[TLI_CFG_BYTES];
    tli_cfg_defaults(ops, cfg);
    for (size_t i = 0; i < ops->nfields; i++) {
        if (strcmp(ops->fields[i].name, "filters") == 0)
            tli_field_set(cfg, &ops->fields[i], 4);
        if (strcmp(ops->fields[i].name, "dilation_h") == 0)
            tli_field_set(cfg, &ops->fields[i], 0);
    }
    ck_assert_tl_err(tli_model_append(NULL, m, ops, cfg, TL_ACT_LINEAR, 1, NULL, 0, "d0", "test"), TL_EINVAL,
                     "layer 'd0' (conv2d, index 1): groups (1) and dilation (0x1) must be > 0");
    for (size_t i = 0; i < ops->nfields; i++)
        if (strcmp(ops->fields[i].name, "dilation_h") == 0 || strcmp(ops->fields[i].name, "groups") == 0)
            tli_field_set(cfg, &ops->fields[i], strcmp(ops->fields[i].name, "groups") == 0 ? 0 : 1);
    ck_assert_tl_err(tli_model_append(NULL, m, ops, cfg, TL_ACT_LINEAR, 1, NULL, 0, "g0", "test"), TL_EINVAL,
                     "groups (0)");
    /* Pooling: every window keeps a real cell. */
    tl_maxpool2d_options mp = TL_MAXPOOL2D_OPTIONS_INIT;
    mp.name = "mp";
    mp.padding = TL_PAD_EXPLICIT;
    mp.pad_left = 2;
    ck_assert_tl_err(tl_model_add_maxpool2d(NULL, m, &mp), TL_EINVAL,
                     "layer 'mp' (maxpool2d, index 1): pad_left 2 must be smaller than the pool's width (2)");
    mp.pad_left = 1;
    mp.padding = TL_PAD_VALID;
    ck_assert_tl_err(tl_model_add_maxpool2d(NULL, m, &mp), TL_EINVAL, "need padding 'explicit', not 'valid'");
    tl_avgpool2d_options ap = TL_AVGPOOL2D_OPTIONS_INIT;
    ap.name = "ap";
    ap.padding = TL_PAD_EXPLICIT;
    ap.pad_bottom = 3;
    ck_assert_tl_err(tl_model_add_avgpool2d(NULL, m, &ap), TL_EINVAL,
                     "layer 'ap' (avgpool2d, index 1): pad_bottom 3 must be smaller than the pool's height (2)");
    ck_assert_uint_eq(tl_model_num_layers(m), 1);
    tl_model_free(m);
}
END_TEST

/* ---- files --------------------------------------------------------------------------------- */

static char tmpdir[64];

static const char *tmp_path(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, "%s/%s", tmpdir, name);
    return buf;
}

/* A small backbone with every new setting: grouped dilated conv with
 * explicit pads, a depthwise stride-2 conv with multiplier 2 (PyTorch
 * padding), a padded max-pool, a pointwise conv, a padded average pool. */
static tl_model *settings_model(uint64_t seed)
{
    tl_model *m;
    ck_assert_tl_ok(tl_model_create(&m, 12, 12, 4, seed));
    tl_conv2d_options o = conv_opts(8, 3, 1, TL_PAD_EXPLICIT);
    o.groups = 2;
    o.dilation_h = 2;
    o.pad_top = o.pad_bottom = 2;
    o.pad_left = o.pad_right = 1;
    o.activation = TL_ACT_RELU;
    ck_assert_tl_ok(tl_model_add_conv2d(NULL, m, &o));
    o = conv_opts(16, 3, 2, TL_PAD_EXPLICIT);
    o.groups = 8;
    o.pad_top = o.pad_bottom = o.pad_left = o.pad_right = 1;
    o.use_bias = 0;
    ck_assert_tl_ok(tl_model_add_conv2d(NULL, m, &o));
    tl_maxpool2d_options mp = TL_MAXPOOL2D_OPTIONS_INIT;
    mp.pool_h = mp.pool_w = 3;
    mp.stride_h = mp.stride_w = 2;
    mp.padding = TL_PAD_EXPLICIT;
    mp.pad_top = mp.pad_bottom = mp.pad_left = mp.pad_right = 1;
    ck_assert_tl_ok(tl_model_add_maxpool2d(NULL, m, &mp));
    o = conv_opts(8, 1, 1, TL_PAD_VALID);
    o.groups = 4;
    o.activation = TL_ACT_TANH;
    ck_assert_tl_ok(tl_model_add_conv2d(NULL, m, &o));
    tl_avgpool2d_options ap = TL_AVGPOOL2D_OPTIONS_INIT;
    ap.pool_h = ap.pool_w = 3;
    ap.stride_h = ap.stride_w = 1;
    ap.padding = TL_PAD_EXPLICIT;
    ap.pad_top = ap.pad_left = 1;
    ap.pad_bottom = ap.pad_right = 1;
    ap.count_include_pad = 1;
    ck_assert_tl_ok(tl_model_add_avgpool2d(NULL, m, &ap));
    ck_assert_tl_ok(tl_model_add_flatten(NULL, m, NULL));
    tl_dense_options d = TL_DENSE_OPTIONS_INIT;
    d.units = 3;
    d.activation = TL_ACT_SOFTMAX;
    ck_assert_tl_ok(tl_model_add_dense(NULL, m, &d));
    return m;
}

START_TEST(checkpoint_round_trip)
{
    char path[128];
    tmp_path(path, sizeof path, "settings.tlm");
    tl_model *m = settings_model(5);
    float *x = fnew(6 * 12 * 12 * 4), y0[18], y1[18];
    th_fill_uniform(x, 6 * 12 * 12 * 4, 0, 1, 6);
    /* A few steps, so that the weights are not only the initial draw. */
    tl_optimizer *opt;
    ck_assert_tl_ok(tl_optimizer_create_sgd(&opt, NULL));
    ck_assert_tl_ok(tl_model_compile(m, opt, TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY));
    const int32_t labels[6] = {0, 1, 2, 0, 1, 2};
    for (int i = 0; i < 3; i++)
        ck_assert_tl_ok(tl_model_train_step(NULL, m, x, labels, NULL, 6));
    ck_assert_tl_ok(tl_model_predict(y0, 18, m, x, 6, 0));
    ck_assert_tl_ok(tl_model_save(m, path, NULL));
    tl_checkpoint_info *info;
    ck_assert_tl_ok(tl_checkpoint_info_read(&info, path));
    uint32_t major, minor;
    ck_assert_tl_ok(tl_checkpoint_info_format_version(&major, &minor, info));
    ck_assert(major == 1 && minor == 1);
    tl_conv2d_options co;
    ck_assert_tl_ok(tl_conv2d_options_init(&co, TL_CONV2D_OPTIONS_VERSION));
    ck_assert_tl_ok(tl_checkpoint_info_layer_conv2d(&co, info, 0));
    ck_assert(co.groups == 2 && co.dilation_h == 2 && co.dilation_w == 1 && co.padding == TL_PAD_EXPLICIT);
    ck_assert(co.pad_top == 2 && co.pad_bottom == 2 && co.pad_left == 1 && co.pad_right == 1);
    ck_assert_tl_ok(tl_checkpoint_info_layer_conv2d(&co, info, 1));
    ck_assert(co.groups == 8 && co.filters == 16 && co.stride_h == 2 && co.pad_top == 1 && !co.use_bias);
    /* A version-2 struct gets version 2's members only. */
    memset(&co, 0xab, sizeof co);
    co.version = 2;
    ck_assert_tl_ok(tl_checkpoint_info_layer_conv2d(&co, info, 0));
    ck_assert(co.filters == 8 && co.padding == TL_PAD_EXPLICIT && co.groups == 0xababababu);
    tl_maxpool2d_options mo;
    ck_assert_tl_ok(tl_maxpool2d_options_init(&mo, TL_MAXPOOL2D_OPTIONS_VERSION));
    ck_assert_tl_ok(tl_checkpoint_info_layer_maxpool2d(&mo, info, 2));
    ck_assert(mo.padding == TL_PAD_EXPLICIT && mo.pad_top == 1 && mo.pad_right == 1 && mo.pool_h == 3);
    char text[512];
    ck_assert_tl_ok(tl_checkpoint_info_layer_settings(text, sizeof text, NULL, info, 1));
    ck_assert_str_eq(text, "filters=16, kernel_h=3, kernel_w=3, stride_h=2, stride_w=2, padding=explicit, groups=8, "
                           "dilation_h=1, dilation_w=1, pad_top=1, pad_bottom=1, pad_left=1, pad_right=1, "
                           "kernel_initializer=default, bias_initializer=default, activation_alpha=0.01");
    ck_assert_tl_ok(tl_checkpoint_info_layer_settings(text, sizeof text, NULL, info, 4));
    ck_assert_str_eq(text, "pool_h=3, pool_w=3, stride_h=1, stride_w=1, padding=explicit, count_include_pad=1, "
                           "pad_top=1, pad_bottom=1, pad_left=1, pad_right=1");
    tl_checkpoint_info_free(info);
    /* Loaded: the same predictions, bit for bit, and training resumes
     * identically. */
    tl_model *r;
    ck_assert_tl_ok(tl_model_load(&r, path));
    ck_assert_tl_ok(tl_model_predict(y1, 18, r, x, 6, 0));
    ck_assert(memcmp(y0, y1, sizeof y0) == 0);
    ck_assert_tl_ok(tl_model_train_step(NULL, m, x, labels, NULL, 6));
    ck_assert_tl_ok(tl_model_train_step(NULL, r, x, labels, NULL, 6));
    size_t na, nb;
    float *pa = th_all_params(m, &na), *pb = th_all_params(r, &nb);
    ck_assert(na == nb && memcmp(pa, pb, na * sizeof *pa) == 0);
    free(pa), free(pb);
    tl_model_free(r);
    tl_model_free(m);
    unlink(path);
    free(x);
}
END_TEST

/* Settings at their defaults (explicit pads of 0 included) fit format 1.0,
 * whose reader fills the new fields with their defaults. */
START_TEST(defaults_stay_format_1_0)
{
    char path[128];
    tmp_path(path, sizeof path, "defaults.tlm");
    tl_model *m;
    ck_assert_tl_ok(tl_model_create(&m, 8, 8, 3, 1));
    tl_conv2d_options o = conv_opts(4, 3, 1, TL_PAD_EXPLICIT); /* all pads 0: valid */
    tl_layer *l;
    ck_assert_tl_ok(tl_model_add_conv2d(&l, m, &o));
    tl_shape s;
    ck_assert_tl_ok(tl_layer_output_shape(&s, l));
    ck_assert(s.dims[0] == 6 && s.dims[1] == 6);
    tl_maxpool2d_options mp = TL_MAXPOOL2D_OPTIONS_INIT;
    mp.padding = TL_PAD_EXPLICIT;
    ck_assert_tl_ok(tl_model_add_maxpool2d(NULL, m, &mp));
    ck_assert_tl_ok(tl_model_save(m, path, NULL));
    tl_checkpoint_info *info;
    ck_assert_tl_ok(tl_checkpoint_info_read(&info, path));
    uint32_t major, minor;
    ck_assert_tl_ok(tl_checkpoint_info_format_version(&major, &minor, info));
    ck_assert(major == 1 && minor == 0);
    tl_conv2d_options co;
    memset(&co, 0xab, sizeof co);
    co.version = TL_CONV2D_OPTIONS_VERSION;
    ck_assert_tl_ok(tl_checkpoint_info_layer_conv2d(&co, info, 0));
    ck_assert(co.padding == TL_PAD_VALID && co.groups == 1 && co.dilation_h == 1 && co.dilation_w == 1);
    ck_assert(co.pad_top == 0 && co.pad_bottom == 0 && co.pad_left == 0 && co.pad_right == 0);
    tl_maxpool2d_options mo;
    memset(&mo, 0xab, sizeof mo);
    mo.version = TL_MAXPOOL2D_OPTIONS_VERSION;
    ck_assert_tl_ok(tl_checkpoint_info_layer_maxpool2d(&mo, info, 1));
    ck_assert(mo.padding == TL_PAD_VALID && mo.pad_top == 0 && mo.pad_right == 0);
    tl_checkpoint_info_free(info);
    tl_model_free(m);
    unlink(path);
}
END_TEST

/* A grouped kernel (kh, kw, in/groups, filters) is PyTorch's weight
 * (filters, in/groups, kh, kw): the file holds that shape and order, and a
 * model loads it back. */
START_TEST(safetensors_pytorch_grouped)
{
    char path[128];
    tmp_path(path, sizeof path, "grouped.safetensors");
    tl_model *m;
    ck_assert_tl_ok(tl_model_create(&m, 6, 6, 6, 3));
    tl_conv2d_options o = conv_opts(4, 3, 2, TL_PAD_EXPLICIT);
    o.name = "g";
    o.groups = 2;
    o.pad_top = o.pad_bottom = o.pad_left = o.pad_right = 1;
    tl_layer *l;
    ck_assert_tl_ok(tl_model_add_conv2d(&l, m, &o));
    o = conv_opts(8, 3, 1, TL_PAD_SAME);
    o.name = "dw";
    o.groups = 4; /* depthwise, multiplier 2 */
    ck_assert_tl_ok(tl_model_add_conv2d(NULL, m, &o));
    /* The layout transform works from the kernel's shape: I = in/groups. */
    tli_layout L;
    tli_layout_for(&L, m->layers[0], 0, TL_LAYOUT_PYTORCH, true);
    ck_assert(L.how == TLI_LAYOUT_CONV);
    ck_assert(L.file_shape.rank == 4 && L.file_shape.dims[0] == 4 && L.file_shape.dims[1] == 3 &&
              L.file_shape.dims[2] == 3 && L.file_shape.dims[3] == 3);
    ck_assert_tl_ok(tl_model_save_safetensors(m, path, TL_LAYOUT_PYTORCH, NULL));
    /* The file: g.weight (4, 3, 3, 3) with w_file[o][i][kh][kw] = kernel[kh][kw][i][o]. */
    tli_st_file f;
    ck_assert_tl_ok(tli_st_open(&f, path, "test"));
    const tli_st_tensor *t = NULL, *tdw = NULL;
    for (size_t i = 0; i < f.count; i++) {
        if (strcmp(f.tensors[i].name, "g.weight") == 0)
            t = &f.tensors[i];
        if (strcmp(f.tensors[i].name, "dw.weight") == 0)
            tdw = &f.tensors[i];
    }
    ck_assert_ptr_nonnull(t);
    ck_assert_ptr_nonnull(tdw);
    ck_assert(t->rank == 4 && t->dims[0] == 4 && t->dims[1] == 3 && t->dims[2] == 3 && t->dims[3] == 3);
    ck_assert(tdw->rank == 4 && tdw->dims[0] == 8 && tdw->dims[1] == 1 && tdw->dims[2] == 3 && tdw->dims[3] == 3);
    const uint64_t begin = f.data_start + t->begin;
    tli_st_close(&f);
    float kernel[108], file[108];
    ck_assert_tl_ok(tl_layer_get_weights(kernel, 108, l, 0));
    FILE *fp = fopen(path, "rb");
    ck_assert_ptr_nonnull(fp);
    ck_assert_int_eq(fseek(fp, (long)begin, SEEK_SET), 0);
    ck_assert_uint_eq(fread(file, sizeof(float), 108, fp), 108);
    fclose(fp);
    for (int oc = 0; oc < 4; oc++)
        for (int i = 0; i < 3; i++)
            for (int kh = 0; kh < 3; kh++)
                for (int kw = 0; kw < 3; kw++)
                    ck_assert(file[((oc * 3 + i) * 3 + kh) * 3 + kw] == kernel[((kh * 3 + kw) * 3 + i) * 4 + oc]);
    /* Back into a fresh model: the same weights and predictions. */
    tl_model *r;
    ck_assert_tl_ok(tl_model_create(&r, 6, 6, 6, 99));
    o = conv_opts(4, 3, 2, TL_PAD_EXPLICIT);
    o.name = "g";
    o.groups = 2;
    o.pad_top = o.pad_bottom = o.pad_left = o.pad_right = 1;
    ck_assert_tl_ok(tl_model_add_conv2d(NULL, r, &o));
    o = conv_opts(8, 3, 1, TL_PAD_SAME);
    o.name = "dw";
    o.groups = 4;
    ck_assert_tl_ok(tl_model_add_conv2d(NULL, r, &o));
    ck_assert_tl_ok(tl_model_load_safetensors(NULL, r, path, TL_LAYOUT_PYTORCH, NULL));
    size_t na, nb;
    float *pa = th_all_params(m, &na), *pb = th_all_params(r, &nb);
    ck_assert(na == nb && memcmp(pa, pb, na * sizeof *pa) == 0);
    free(pa), free(pb);
    /* A Keras-layout load of the PyTorch file is refused by shape. */
    ck_assert_tl_err(tl_model_load_safetensors(NULL, r, path, TL_LAYOUT_KERAS, NULL), TL_ESHAPE, "g.");
    tl_model_free(r);
    tl_model_free(m);
    unlink(path);
}
END_TEST

/* Give every batchnorm random gamma, beta and moving statistics, so the
 * folding has something to fold. */
static void randomize_bn(tl_model *m, uint64_t seed)
{
    for (size_t i = 0; i < tl_model_num_layers(m); i++) {
        tl_layer *l = m->layers[i];
        if (!l->ops->affine)
            continue;
        for (size_t p = 0; p < l->nparams; p++) {
            const size_t n = l->params[p].count;
            float *v = malloc(n * sizeof *v);
            /* gamma, beta, mean in [-1, 1), [0.5, 1.5) for the last (moving_variance) */
            th_fill_uniform(v, n, p + 1 == l->nparams ? 0.5f : -1.0f, p + 1 == l->nparams ? 1.5f : 1.0f,
                            seed + i * 8 + p);
            ck_assert_tl_ok(tl_layer_set_weights(l, p, v, n));
            free(v);
        }
    }
}

START_TEST(fused_inference_matches_layers)
{
    tl_zoo_options o = TL_ZOO_OPTIONS_INIT;
    o.input_h = o.input_w = _i ? 16 : 12;
    tl_model *m;
    if (_i == 0) {
        ck_assert_tl_ok(tl_zoo_resnet_cifar(&m, 20, &o));
    } else {
        o.cifar_stem = 1;
        o.dropout = -1.0f;
        ck_assert_tl_ok(tl_zoo_mobilenet_v2(&m, &o));
    }
    randomize_bn(m, 40 + (uint64_t)_i);
    const size_t batch = 3, n = tl_model_num_layers(m), in = o.input_h * o.input_w * 3;
    float *x = malloc(batch * in * sizeof *x), fused[3 * 10];
    th_fill_uniform(x, batch * in, -1.0f, 1.0f, 7);
    ck_assert_tl_ok(tl_model_predict(fused, batch * 10, m, x, batch, batch));
    /* The reference: the same layers one by one through their forward,
     * BN in inference mode (a frozen base's training pass fuses too). */
    ck_assert_tl_ok(tli_workspace_ensure(m, batch, false));
    tli_exec ex = tli_exec_for(m, batch, false);
    const float *ref = x;
    for (size_t i = 0; i < n; i++) {
        tl_layer *l = m->layers[i];
        const float *xs[TLI_MAX_INPUTS];
        for (size_t k = 0; k < l->ninputs; k++)
            xs[k] = l->inputs[k] == TLI_INPUT_MODEL ? x : m->layers[l->inputs[k]]->out;
        if (l->ops->is_view)
            l->out = (float *)xs[0];
        else
            l->ops->forward(l, &ex, xs, l->out, l->act);
        ref = l->out;
    }
    double scale = 0.0;
    for (size_t k = 0; k < batch * 10; k++)
        scale = fmax(scale, fabs(ref[k]));
    ck_assert(scale > 1e-3);
    for (size_t k = 0; k < batch * 10; k++)
        ck_assert_msg(fabs(fused[k] - ref[k]) <= 1e-4 * scale, "output %zu: fused %g, layer by layer %g", k,
                      (double)fused[k], (double)ref[k]);
    free(x);
    tl_model_free(m);
}
END_TEST

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/tl-conv-XXXXXX");
    if (mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    Suite *s = suite_create("conv");
    TCase *tc = tcase_create("algorithms");
    tcase_add_loop_test(tc, direct_matches_gemm, 0, (int)(sizeof direct_cases / sizeof direct_cases[0]));
    tcase_add_loop_test(tc, direct_forward_strides, 0, (int)(sizeof fwd_cases / sizeof fwd_cases[0]));
    tcase_add_test(tc, infer_direct_for_odd_filters);
    tcase_add_test(tc, choice_follows_shape);
    tcase_add_loop_test(tc, grouped_matches_reference, 0, NGROUP);
    tcase_add_loop_test(tc, grouped_equals_separate_convs, 0, NGROUP);
    tcase_add_loop_test(tc, depthwise_builds_agree, 0, NGROUP);
    tcase_add_loop_test(tc, depthwise_batch1, 0, NGROUP);
    tcase_add_loop_test(tc, fused_inference_matches_layers, 0, 2);
    suite_add_tcase(s, tc);
    TCase *tl = tcase_create("layer");
    tcase_add_test(tl, dilated_by_hand);
    tcase_add_test(tl, explicit_padding_by_hand);
    tcase_add_test(tl, pool_explicit_by_hand);
    tcase_add_test(tl, options_versions);
    tcase_add_test(tl, bad_settings);
    tcase_add_test(tl, checkpoint_round_trip);
    tcase_add_test(tl, defaults_stay_format_1_0);
    tcase_add_test(tl, safetensors_pytorch_grouped);
    suite_add_tcase(s, tl);
    int rc = th_run(s);
    rmdir(tmpdir);
    return rc;
}
