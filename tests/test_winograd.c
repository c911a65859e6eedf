/* test_winograd.c - the Winograd F(4x4, 3x3) convolution (3x3, stride 1,
 * padding 1; conv_wino_avx512.c). Skipped without AVX-512.
 *
 *  - Forward against a double-precision reference and against the direct
 *    kernels: in_c 3, 16, 17, 32, 64, filters 16 to 80, sizes 32, 16, 8,
 *    7 and odd ones (partial tiles), batch 1 and 5; the float32 error
 *    against float64 is printed.
 *  - Epilogues: bias, no bias, ReLU and ReLU6, the residual join fused
 *    (bit for bit the separate sum and clamp); 1 and 2 threads bit for
 *    bit; a kernel prepared once (tli_conv_prepare) gives the bits of one
 *    prepared in the call.
 *  - Training: dx is Winograd's forward on dz with the kernel turned
 *    (in_c a multiple of 16; else the direct dx), dw Winograd's backward
 *    filter: both against double-precision references (dw's float32 error
 *    beside the direct kernel's is printed), 1 and 2 threads bit for bit,
 *    dw overwritten (not added to); the weight gradient alone over more
 *    shapes (in_c 8 to 64, odd sizes, batch 1, 3 and 64).
 *  - The choice: tli_conv_choose picks it only for 3x3 stride-1 pad-1
 *    layers, and tli_conv_algo_ok refuses other shapes.
 *  - A model keeps the transformed kernels across predictions (plain and
 *    batchnorm-folded): after every write, the bits of a fresh copy.
 */
#include <stdio.h>
#include <string.h>

#include "helpers.h"
#include "kernels/conv_wino.h"
#include "kernels/elementwise.h"
#include "kernels/kernels.h"
#include "layers/layer.h"

typedef struct wcase {
    uint32_t h, w, c, filters;
} wcase;

static const wcase cases[] = {
    {32, 32, 16, 16}, {16, 16, 32, 32}, {8, 8, 64, 64}, {32, 32, 3, 16}, /* ResNet-20 and its stem */
    {7, 7, 16, 32},   {9, 11, 17, 48},  {5, 3, 32, 80}, {1, 1, 16, 16},  /* partial tiles, tails, 3+2 vectors */
    {13, 6, 64, 128}, {4, 4, 24, 16},
};
#define NCASES ((int)(sizeof cases / sizeof cases[0]))

static tli_conv_geom geom(const wcase *c)
{
    tli_conv_geom g = {c->h, c->w, c->c, c->h, c->w, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    return g;
}

static float *fnew(size_t n)
{
    float *v = malloc((n ? n : 1) * sizeof *v);
    ck_assert_ptr_nonnull(v);
    return v;
}

/* y = conv(x, w) + bias in double. */
static void reference(const tli_conv_geom *g, uint32_t n, const float *x, const float *w, const float *bias,
                      size_t batch, double *y)
{
    for (size_t i = 0; i < batch; i++)
        for (uint32_t oh = 0; oh < g->out_h; oh++)
            for (uint32_t ow = 0; ow < g->out_w; ow++)
                for (uint32_t f = 0; f < n; f++) {
                    double s = bias ? bias[f] : 0.0;
                    for (int kh = 0; kh < 3; kh++)
                        for (int kw = 0; kw < 3; kw++) {
                            long ih = (long)oh - 1 + kh, iw = (long)ow - 1 + kw;
                            if (ih < 0 || ih >= (long)g->in_h || iw < 0 || iw >= (long)g->in_w)
                                continue;
                            for (uint32_t c = 0; c < g->in_c; c++)
                                s += (double)x[((i * g->in_h + (size_t)ih) * g->in_w + (size_t)iw) * g->in_c + c] *
                                     w[((size_t)(kh * 3 + kw) * g->in_c + c) * n + f];
                        }
                    y[((i * g->out_h + oh) * g->out_w + ow) * n + f] = s;
                }
}

static void infer(tli_conv_algo algo, uint32_t threads, const tli_conv_geom *g, uint32_t n, const float *x,
                  const float *w, const float *prep, const float *bias, const float *res, tl_activation act, float *y,
                  size_t batch)
{
    size_t sb = tli_conv_scratch_bytes(algo, g, n, batch, threads, false, false);
    ck_assert(sb != SIZE_MAX);
    void *scratch = malloc(sb ? sb : 1);
    ck_assert_ptr_nonnull(scratch);
    tli_conv_infer(threads, algo, g, n, x, w, prep, bias, res, act, 0.01f, y, batch, scratch);
    free(scratch);
}

static float clampf(float v, tl_activation act)
{
    if (act == TL_ACT_LINEAR)
        return v;
    v = v < 0.0f ? 0.0f : v; /* NaN stays (none here) */
    return act == TL_ACT_RELU6 && v > 6.0f ? 6.0f : v;
}

START_TEST(forward_matches_reference)
{
    const wcase *wc = &cases[_i];
    const tli_conv_geom g = geom(wc);
    if (!tli_conv_algo_ok(TLI_CONV_WINO, &g, wc->filters)) {
        fprintf(stderr, "no AVX-512 on this CPU: Winograd not tested\n");
        return;
    }
    const uint32_t n = wc->filters;
    for (size_t batch = 1; batch <= 5; batch += 4) {
        const size_t in = batch * wc->h * wc->w * wc->c, out = batch * wc->h * wc->w * n, wn = 9 * (size_t)wc->c * n;
        float *x = fnew(in), *w = fnew(wn), *bias = fnew(n), *res = fnew(out), *lin = fnew(out);
        float *y[3] = {fnew(out), fnew(out), fnew(out)}, *direct = fnew(out);
        float *prep = fnew(tli_conv_prep_floats(TLI_CONV_WINO, &g, n));
        double *ref = malloc(out * sizeof *ref);
        ck_assert_ptr_nonnull(ref);
        th_fill_uniform(x, in, -1, 1, 21 + _i);
        /* He-like scale: outputs of order 1, as in a trained network */
        th_fill_uniform(w, wn, -1.7f / sqrtf(9.0f * wc->c), 1.7f / sqrtf(9.0f * wc->c), 22);
        th_fill_uniform(bias, n, -0.1f, 0.1f, 23);
        th_fill_uniform(res, out, -1, 1, 24);
        reference(&g, n, x, w, bias, batch, ref);
        tli_conv_prepare(TLI_CONV_WINO, &g, n, w, prep);
        double scale = 1e-6, err = 0.0, derr = 0.0;
        for (size_t i = 0; i < out; i++)
            scale = fmax(scale, fabs(ref[i]));
        infer(TLI_CONV_WINO, 1, &g, n, x, w, NULL, bias, NULL, TL_ACT_LINEAR, lin, batch);
        infer(TLI_CONV_DIRECT, 1, &g, n, x, w, NULL, bias, NULL, TL_ACT_LINEAR, direct, batch);
        for (size_t i = 0; i < out; i++) {
            err = fmax(err, fabs((double)lin[i] - ref[i]) / scale);
            derr = fmax(derr, fabs((double)direct[i] - ref[i]) / scale);
        }
        fprintf(stderr, "winograd %ux%u in %u filters %u batch %zu: max error %.2e of the largest output "
                        "(direct %.2e)\n", wc->h, wc->w, wc->c, n, batch, err, derr);
        ck_assert_msg(err < 2e-5, "case %d: Winograd differs from the reference by %g", _i, err);
        /* no bias */
        infer(TLI_CONV_WINO, 2, &g, n, x, w, prep, NULL, NULL, TL_ACT_LINEAR, y[0], batch);
        for (size_t i = 0; i < out; i++)
            ck_assert_msg(fabs((double)y[0][i] + bias[i % n] - ref[i]) <= 2e-5 * scale, "case %d: no bias, y[%zu]", _i,
                          i);
        for (int a = 0; a < 3; a++) {
            const tl_activation act = a == 0 ? TL_ACT_LINEAR : a == 1 ? TL_ACT_RELU : TL_ACT_RELU6;
            for (int with_res = 0; with_res < 2; with_res++) {
                const float *r = with_res ? res : NULL;
                infer(TLI_CONV_WINO, 1, &g, n, x, w, NULL, bias, r, act, y[0], batch);
                infer(TLI_CONV_WINO, 2, &g, n, x, w, NULL, bias, r, act, y[1], batch);
                infer(TLI_CONV_WINO, 2, &g, n, x, w, prep, bias, r, act, y[2], batch);
                ck_assert_msg(memcmp(y[0], y[1], out * sizeof(float)) == 0, "case %d: 1 and 2 threads differ", _i);
                ck_assert_msg(memcmp(y[0], y[2], out * sizeof(float)) == 0, "case %d: prepared kernel differs", _i);
                for (size_t i = 0; i < out; i++) {
                    const float e = clampf(with_res ? lin[i] + res[i] : lin[i], act);
                    ck_assert_msg(memcmp(&e, &y[0][i], sizeof e) == 0,
                                  "case %d act %d res %d: y[%zu] = %g, separate epilogue %g", _i, a, with_res, i,
                                  (double)y[0][i], (double)e);
                }
            }
        }
        free(x), free(w), free(bias), free(res), free(lin), free(y[0]), free(y[1]), free(y[2]), free(direct);
        free(prep), free(ref);
    }
}
END_TEST

/* dx = the adjoint of the convolution applied to dz, in double. */
static void reference_dx(const tli_conv_geom *g, uint32_t n, const float *dz, const float *w, size_t batch,
                         double *dx)
{
    for (size_t i = 0; i < batch; i++)
        for (uint32_t ih = 0; ih < g->in_h; ih++)
            for (uint32_t iw = 0; iw < g->in_w; iw++)
                for (uint32_t c = 0; c < g->in_c; c++) {
                    double s = 0.0;
                    for (int kh = 0; kh < 3; kh++)
                        for (int kw = 0; kw < 3; kw++) {
                            long oh = (long)ih + 1 - kh, ow = (long)iw + 1 - kw;
                            if (oh < 0 || oh >= (long)g->out_h || ow < 0 || ow >= (long)g->out_w)
                                continue;
                            for (uint32_t f = 0; f < n; f++)
                                s += (double)dz[((i * g->out_h + (size_t)oh) * g->out_w + (size_t)ow) * n + f] *
                                     w[((size_t)(kh * 3 + kw) * g->in_c + c) * n + f];
                        }
                    dx[((i * g->in_h + ih) * g->in_w + iw) * g->in_c + c] = s;
                }
}

/* dw = the weight gradient in double: sum over images and pixels of
 * x(window) dz. */
static void reference_dw(const tli_conv_geom *g, uint32_t n, const float *x, const float *dz, size_t batch,
                         double *dw)
{
    const size_t cn = (size_t)g->in_c * n;
    memset(dw, 0, 9 * cn * sizeof *dw);
    for (size_t i = 0; i < batch; i++)
        for (uint32_t oh = 0; oh < g->out_h; oh++)
            for (uint32_t ow = 0; ow < g->out_w; ow++) {
                const float *d = dz + ((i * g->out_h + oh) * g->out_w + ow) * n;
                for (int kh = 0; kh < 3; kh++)
                    for (int kw = 0; kw < 3; kw++) {
                        long ih = (long)oh - 1 + kh, iw = (long)ow - 1 + kw;
                        if (ih < 0 || ih >= (long)g->in_h || iw < 0 || iw >= (long)g->in_w)
                            continue;
                        const float *xp = x + ((i * g->in_h + (size_t)ih) * g->in_w + (size_t)iw) * g->in_c;
                        double *o = dw + (size_t)(kh * 3 + kw) * cn;
                        for (uint32_t c = 0; c < g->in_c; c++)
                            for (uint32_t f = 0; f < n; f++)
                                o[(size_t)c * n + f] += (double)xp[c] * d[f];
                    }
            }
}

/* Largest |a - ref| over the largest |ref|. */
static double rel_err(const float *a, const double *ref, size_t count)
{
    double scale = 1e-30, err = 0.0;
    for (size_t i = 0; i < count; i++)
        scale = fmax(scale, fabs(ref[i]));
    for (size_t i = 0; i < count; i++)
        err = fmax(err, fabs((double)a[i] - ref[i]));
    return err / scale;
}

/* Training: forward with z, then both gradients, against the direct
 * algorithm (2 threads) and Winograd on 1 and 2 threads. dx is the direct
 * algorithm's when in_c is not a multiple of 16, else Winograd's forward
 * on dz (the kernel turned 180 degrees); dw is Winograd's backward
 * filter: both against double-precision references. */
START_TEST(training_matches_direct)
{
    const wcase *wc = &cases[_i];
    const tli_conv_geom g = geom(wc);
    if (!tli_conv_algo_ok(TLI_CONV_WINO, &g, wc->filters))
        return;
    const uint32_t n = wc->filters;
    const size_t batch = 3;
    const size_t in = batch * wc->h * wc->w * wc->c, out = batch * wc->h * wc->w * n, wn = 9 * (size_t)wc->c * n;
    float *x = fnew(in), *w = fnew(wn), *bias = fnew(n), *dz = fnew(out);
    double *ref = malloc(in * sizeof *ref);
    ck_assert_ptr_nonnull(ref);
    th_fill_uniform(x, in, -1, 1, 31);
    th_fill_uniform(w, wn, -0.3f, 0.3f, 32);
    th_fill_uniform(bias, n, -0.1f, 0.1f, 33);
    th_fill_uniform(dz, out, -1, 1, 34);
    reference_dx(&g, n, dz, w, batch, ref);
    double *dwref = malloc(wn * sizeof *dwref);
    ck_assert_ptr_nonnull(dwref);
    reference_dw(&g, n, x, dz, batch, dwref);
    float *y[3], *z[3], *dw[3], *dx[3];
    for (int a = 0; a < 3; a++) {
        const tli_conv_algo algo = a ? TLI_CONV_WINO : TLI_CONV_DIRECT;
        const uint32_t threads = a == 1 ? 1 : 2;
        size_t sb = tli_conv_scratch_bytes(algo, &g, n, batch, threads, true, true);
        ck_assert(sb != SIZE_MAX);
        void *scratch = malloc(sb);
        y[a] = fnew(out), z[a] = fnew(out), dw[a] = fnew(wn), dx[a] = fnew(in);
        for (size_t i = 0; i < wn; i++) /* overwritten, not added to */
            dw[a][i] = NAN;
        tli_conv_forward(threads, algo, &g, n, x, w, bias, TL_ACT_LEAKY_RELU, 0.01f, y[a], z[a], batch, scratch);
        tli_conv_backward(threads, algo, &g, n, x, dz, w, dw[a], dx[a], batch, scratch);
        free(scratch);
    }
    double scale = 1e-6, dscale = 1e-6, err = 0.0, derr = 0.0;
    for (size_t i = 0; i < out; i++)
        scale = fmax(scale, fabs((double)z[0][i]));
    for (size_t i = 0; i < out; i++) {
        ck_assert_msg(fabs((double)z[0][i] - z[1][i]) <= 2e-5 * scale, "case %d: z[%zu] %g, direct %g", _i, i,
                      (double)z[1][i], (double)z[0][i]);
        const float e = z[1][i] > 0.0f ? z[1][i] : 0.01f * z[1][i];
        ck_assert_msg(memcmp(&e, &y[1][i], sizeof e) == 0, "case %d: y[%zu] is not leaky_relu(z)", _i, i);
    }
    for (int a = 1; a < 3; a++) {
        ck_assert_msg(memcmp(dw[1], dw[a], wn * sizeof(float)) == 0, "case %d: dw, threads differ", _i);
        ck_assert_msg(memcmp(z[1], z[a], out * sizeof(float)) == 0, "case %d: z, threads differ", _i);
        ck_assert_msg(memcmp(dx[1], dx[a], in * sizeof(float)) == 0, "case %d: dx, threads differ", _i);
    }
    if (wc->c % 16 != 0)
        ck_assert_msg(memcmp(dx[0], dx[1], in * sizeof(float)) == 0, "case %d: input gradient differs", _i);
    for (size_t i = 0; i < in; i++)
        dscale = fmax(dscale, fabs(ref[i]));
    for (size_t i = 0; i < in; i++) {
        err = fmax(err, fabs((double)dx[1][i] - ref[i]) / dscale);
        derr = fmax(derr, fabs((double)dx[0][i] - ref[i]) / dscale);
    }
    fprintf(stderr, "input gradient %ux%u in %u filters %u: max error %.2e of the largest (direct %.2e)\n", wc->h,
            wc->w, wc->c, n, err, derr);
    ck_assert_msg(err < 2e-5, "case %d: input gradient differs from the reference by %g", _i, err);
    const double werr = rel_err(dw[1], dwref, wn), wderr = rel_err(dw[0], dwref, wn);
    fprintf(stderr, "weight gradient %ux%u in %u filters %u: max error %.2e of the largest (direct %.2e)\n", wc->h,
            wc->w, wc->c, n, werr, wderr);
    ck_assert_msg(werr < 2e-5, "case %d: weight gradient differs from the reference by %g", _i, werr);
    for (int a = 0; a < 3; a++)
        free(y[a]), free(z[a]), free(dw[a]), free(dx[a]);
    free(x), free(w), free(bias), free(dz), free(ref), free(dwref);
}
END_TEST

/* The weight gradient kernel alone (conv_wino_avx512.c), also on shapes
 * the layer gives to the direct one (8 channels, 5x5): against the double
 * reference and the direct kernel's error, 1 and 2 threads bit for bit,
 * dw overwritten. Batch 64 of 32x32 sums 65,536 pixels per weight. */
typedef struct gcase {
    uint32_t h, w, c, filters, batch;
} gcase;

static const gcase gcases[] = {
    {5, 5, 8, 16, 1},  {5, 5, 8, 16, 3},   {7, 9, 16, 32, 1}, {7, 9, 24, 48, 3},  {8, 8, 64, 64, 3},
    {8, 8, 16, 64, 1}, {32, 32, 16, 16, 3}, {9, 7, 64, 16, 3}, {32, 32, 16, 16, 64}, {8, 8, 64, 64, 64},
};

START_TEST(weight_grad_matches_reference)
{
    const gcase *gc = &gcases[_i];
    const wcase wc = {gc->h, gc->w, gc->c, gc->filters};
    const tli_conv_geom g = geom(&wc);
    if (!tli_conv_algo_ok(TLI_CONV_WINO, &g, gc->filters))
        return;
    const uint32_t n = gc->filters;
    const size_t batch = gc->batch, in = batch * gc->h * gc->w * gc->c, out = batch * gc->h * gc->w * n;
    const size_t wn = 9 * (size_t)gc->c * n;
    float *x = fnew(in), *dz = fnew(out), *y = fnew(out), *w = fnew(wn), *direct = fnew(wn);
    float *dw[2] = {fnew(wn), fnew(wn)};
    double *ref = malloc(wn * sizeof *ref);
    ck_assert_ptr_nonnull(ref);
    th_fill_uniform(x, in, -1, 1, 51 + _i);
    th_fill_uniform(dz, out, -1, 1, 52 + _i);
    th_fill_uniform(w, wn, -0.3f, 0.3f, 53);
    reference_dw(&g, n, x, dz, batch, ref);
    const tli_wino_geom wg = {gc->h, gc->w, gc->c, n};
    for (int a = 0; a < 2; a++) {
        const uint32_t threads = (uint32_t)a + 1;
        float *buf = fnew(tli_wino_wgrad_floats(&wg, batch, threads));
        for (size_t i = 0; i < wn; i++) /* overwritten, not added to */
            dw[a][i] = NAN;
        tli_wino_weight_grad_avx512(threads, &wg, x, dz, dw[a], buf, batch);
        free(buf);
    }
    ck_assert_msg(memcmp(dw[0], dw[1], wn * sizeof(float)) == 0, "gcase %d: threads differ", _i);
    size_t sb = tli_conv_scratch_bytes(TLI_CONV_DIRECT, &g, n, batch, 1, true, false);
    void *scratch = malloc(sb);
    ck_assert_ptr_nonnull(scratch);
    tli_conv_forward(1, TLI_CONV_DIRECT, &g, n, x, w, NULL, TL_ACT_LINEAR, 0.0f, y, NULL, batch, scratch);
    tli_conv_backward(1, TLI_CONV_DIRECT, &g, n, x, dz, w, direct, NULL, batch, scratch);
    free(scratch);
    const double err = rel_err(dw[0], ref, wn), derr = rel_err(direct, ref, wn);
    fprintf(stderr, "weight gradient kernel %ux%u in %u filters %u batch %u: max error %.2e of the largest "
            "(direct %.2e)\n", gc->h, gc->w, gc->c, n, gc->batch, err, derr);
    ck_assert_msg(err < 2e-5, "gcase %d: weight gradient differs from the reference by %g", _i, err);
    free(x), free(dz), free(y), free(w), free(direct), free(dw[0]), free(dw[1]), free(ref);
}
END_TEST

START_TEST(choice)
{
    wcase c = {16, 16, 16, 16};
    tli_conv_geom g = geom(&c);
    if (!tli_cpu_has_avx512()) {
        ck_assert(!tli_conv_algo_ok(TLI_CONV_WINO, &g, 16));
        return;
    }
    ck_assert(tli_conv_algo_ok(TLI_CONV_WINO, &g, 16));
    ck_assert(!tli_conv_algo_ok(TLI_CONV_WINO, &g, 20)); /* filters % 16 */
    /* chosen where it was measured faster (conv_algo.c): 8 channels or more, 5x5 or larger */
    ck_assert_int_eq(tli_conv_choose(&g, 16), TLI_CONV_WINO);
    wcase stem = {32, 32, 3, 16}, small = {4, 4, 64, 64}, five = {5, 7, 8, 32};
    tli_conv_geom sg = geom(&stem), tg = geom(&small), fg = geom(&five);
    ck_assert_int_eq(tli_conv_choose(&sg, 16), TLI_CONV_DIRECT);
    ck_assert_int_eq(tli_conv_choose(&tg, 64), TLI_CONV_DIRECT);
    ck_assert_int_eq(tli_conv_choose(&fg, 32), TLI_CONV_WINO);
    tli_conv_geom s = g;
    s.s_h = s.s_w = 2, s.out_h = s.out_w = 8; /* stride 2 */
    ck_assert(!tli_conv_algo_ok(TLI_CONV_WINO, &s, 16));
    ck_assert_int_eq(tli_conv_choose(&s, 16), TLI_CONV_DIRECT);
    s = g;
    s.pad_t = s.pad_l = s.pad_b = s.pad_r = 0, s.out_h = s.out_w = 14; /* valid */
    ck_assert(!tli_conv_algo_ok(TLI_CONV_WINO, &s, 16));
    s = g;
    s.k_h = s.k_w = 5, s.pad_t = s.pad_l = s.pad_b = s.pad_r = 2; /* 5x5 'same' */
    ck_assert(!tli_conv_algo_ok(TLI_CONV_WINO, &s, 16));
    s = g;
    s.d_h = s.d_w = 2, s.pad_t = s.pad_l = s.pad_b = s.pad_r = 2; /* dilated */
    ck_assert(!tli_conv_algo_ok(TLI_CONV_WINO, &s, 16));
    ck_assert_uint_eq(tli_conv_prep_floats(TLI_CONV_DIRECT, &g, 16), 0);
    ck_assert_uint_eq(tli_conv_prep_floats(TLI_CONV_WINO, &g, 16), 36 * (16 * 16 + 16)); /* conv_wino.h */
}
END_TEST

/* A model's Winograd layers keep their transformed kernel across
 * predictions: a plain conv (bias, ReLU: the unfused path) and one with a
 * batchnorm folded in. After each write to a kernel, a bias or the
 * batchnorm the prediction changes and equals a fresh copy's (no cache)
 * bit for bit; and it is within float rounding of the direct kernels'. */
static void predict_checked(float *out, size_t count, tl_model *m, const float *x, size_t n, const float *before,
                            const char *what)
{
    ck_assert_tl_ok(tl_model_predict(out, count, m, x, n, (uint32_t)n));
    tl_model *copy;
    ck_assert_tl_ok(tl_model_copy(&copy, m));
    float *ref = fnew(count);
    ck_assert_tl_ok(tl_model_predict(ref, count, copy, x, n, (uint32_t)n));
    tl_model_free(copy);
    ck_assert_msg(memcmp(out, ref, count * sizeof(float)) == 0, "%s: the prediction differs from a fresh copy's", what);
    if (before)
        ck_assert_msg(memcmp(out, before, count * sizeof(float)) != 0, "%s: the change did not show", what);
    free(ref);
}

START_TEST(model_cache_follows_writes)
{
    if (!tli_cpu_has_avx512())
        return;
    enum { H = 9, W = 8, C = 16, N = 3 };
    tl_model *m;
    ck_assert_tl_ok(tl_model_create(&m, H, W, C, 7));
    tl_conv2d_options co = TL_CONV2D_OPTIONS_INIT;
    co.filters = 16;
    co.padding = TL_PAD_SAME;
    co.activation = TL_ACT_RELU;
    co.name = "c1";
    ck_assert_tl_ok(tl_model_add_conv2d(NULL, m, &co));
    co.activation = TL_ACT_LINEAR;
    co.use_bias = 0;
    co.filters = 32;
    co.name = "c2";
    ck_assert_tl_ok(tl_model_add_conv2d(NULL, m, &co));
    tl_batchnorm_options bo = TL_BATCHNORM_OPTIONS_INIT;
    bo.name = "bn";
    ck_assert_tl_ok(tl_model_add_batchnorm(NULL, m, &bo));
    tl_activation_options ao = TL_ACTIVATION_OPTIONS_INIT;
    ao.activation = TL_ACT_RELU6;
    ck_assert_tl_ok(tl_model_add_activation(NULL, m, &ao));
    ck_assert_tl_ok(tl_model_add_flatten(NULL, m, NULL));
    const size_t in = (size_t)N * H * W * C, count = (size_t)N * H * W * 32;
    float *x = fnew(in), *a = fnew(count), *b = fnew(count);
    th_fill_uniform(x, in, -1, 1, 41);
    tl_layer *c1, *c2, *bn;
    ck_assert_tl_ok(tl_model_layer_by_name(&c1, m, "c1"));
    ck_assert_tl_ok(tl_model_layer_by_name(&c2, m, "c2"));
    ck_assert_tl_ok(tl_model_layer_by_name(&bn, m, "bn"));
    float stats[32];
    th_fill_uniform(stats, 32, 0.5f, 1.5f, 42);
    ck_assert_tl_ok(tl_layer_set_weights(bn, 3, stats, 32)); /* moving variance */
    predict_checked(a, count, m, x, N, NULL, "start");
    ck_assert_ptr_nonnull(c1->cache); /* the transformed kernels are kept */
    ck_assert_ptr_nonnull(c2->cache);
    tl_layer *ls[2] = {c1, c2};
    for (int i = 0; i < 2; i++) {
        const size_t k = ls[i]->params[0].count;
        float *v = fnew(k);
        ck_assert_tl_ok(tl_layer_get_weights(v, k, ls[i], 0));
        v[5] += 0.25f;
        v[k - 1] -= 0.5f;
        ck_assert_tl_ok(tl_layer_set_weights(ls[i], 0, v, k));
        free(v);
        predict_checked(b, count, m, x, N, a, i ? "c2 kernel" : "c1 kernel");
        memcpy(a, b, count * sizeof(float));
    }
    float bias[16];
    th_fill_uniform(bias, 16, -0.5f, 0.5f, 43);
    ck_assert_tl_ok(tl_layer_set_weights(c1, 1, bias, 16));
    predict_checked(b, count, m, x, N, a, "c1 bias");
    th_fill_uniform(stats, 32, -0.5f, 0.5f, 44);
    ck_assert_tl_ok(tl_layer_set_weights(bn, 2, stats, 32)); /* moving mean */
    predict_checked(a, count, m, x, N, b, "bn moving mean");
    free(x), free(a), free(b);
    tl_model_free(m);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("winograd");
    TCase *tc = tcase_create("winograd");
    tcase_add_loop_test(tc, forward_matches_reference, 0, NCASES);
    tcase_add_loop_test(tc, training_matches_direct, 0, NCASES);
    tcase_add_loop_test(tc, weight_grad_matches_reference, 0, (int)(sizeof gcases / sizeof gcases[0]));
    tcase_add_test(tc, choice);
    tcase_add_test(tc, model_cache_follows_writes);
    suite_add_tcase(s, tc);
    return th_run(s);
}
