/* test_kernels.c - the hot loops against naive references and hand-computed
 * numbers: window arithmetic, im2col and its adjoint col2im, max-pooling
 * with arg-max, bias + activation forward and backward, the GEMM entry point
 * with general strides, and the fused losses (including extreme logits). */
#include <float.h>
#include <stdio.h>

#include "helpers.h"
#include "kernels/kernels.h"
#include "layers/layer.h"

static float *fnew(size_t n)
{
    float *v = malloc((n ? n : 1) * sizeof *v);
    ck_assert_ptr_nonnull(v);
    return v;
}

static void fill_nan(float *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        v[i] = NAN;
}

static double dot(const float *a, const float *b, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++)
        s += (double)a[i] * (double)b[i];
    return s;
}

static void assert_floats(const float *got, const float *want, size_t n, double tol, const char *what)
{
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(fabs((double)got[i] - (double)want[i]) <= tol, "%s[%zu] = %.9g, expected %.9g", what, i,
                      (double)got[i], (double)want[i]);
}

/* ---- window arithmetic (Keras rules) ------------------------------------- */

START_TEST(window_follows_keras)
{
    static const struct {
        uint32_t n, k, s;
        tl_padding pad;
        bool ok;
        uint32_t out, before;
    } cases[] = {
        {32, 3, 1, TL_PAD_VALID, true, 30, 0}, {30, 2, 2, TL_PAD_VALID, true, 15, 0},
        {13, 2, 2, TL_PAD_VALID, true, 6, 0},  {5, 3, 2, TL_PAD_VALID, true, 2, 0},
        {5, 2, 3, TL_PAD_VALID, true, 2, 0},   {3, 5, 1, TL_PAD_VALID, false, 0, 0},
        /* same: out = ceil(n / s); total pad = (out-1)*s + k - n, the extra
         * cell at the end (bottom / right), as TensorFlow does. */
        {5, 3, 2, TL_PAD_SAME, true, 3, 1},    {4, 3, 2, TL_PAD_SAME, true, 2, 0},
        {4, 2, 2, TL_PAD_SAME, true, 2, 0},    {5, 2, 2, TL_PAD_SAME, true, 3, 0},
        {7, 5, 1, TL_PAD_SAME, true, 7, 2},    {3, 5, 1, TL_PAD_SAME, true, 3, 2},
        {6, 4, 1, TL_PAD_SAME, true, 6, 1},    {1, 3, 2, TL_PAD_SAME, true, 1, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint32_t out = 99, before = 99;
        bool ok = tli_window(cases[i].n, cases[i].k, cases[i].s, cases[i].pad, &out, &before);
        ck_assert_msg(ok == cases[i].ok, "case %zu: ok %d", i, ok);
        if (!ok)
            continue;
        ck_assert_msg(out == cases[i].out && before == cases[i].before, "case %zu: out %u pad %u, expected %u %u", i,
                      out, before, cases[i].out, cases[i].before);
    }
}
END_TEST

/* ---- im2col / col2im ------------------------------------------------------ */

typedef struct conv_case {
    uint32_t h, w, c, k_h, k_w, s_h, s_w;
    tl_padding pad;
    uint32_t d_h, d_w, groups;     /* 0: 1 */
    uint32_t pt, pb, pl, pr;       /* TL_PAD_EXPLICIT */
} conv_case;

static const conv_case conv_cases[] = {
    {5, 7, 3, 3, 3, 2, 2, TL_PAD_SAME, 0, 0, 0, 0, 0, 0, 0},  /* odd sizes, stride 2, same */
    {6, 5, 2, 2, 3, 2, 1, TL_PAD_VALID, 0, 0, 0, 0, 0, 0, 0}, /* non-square kernel, mixed strides */
    {4, 4, 3, 1, 1, 1, 1, TL_PAD_VALID, 0, 0, 0, 0, 0, 0, 0}, /* 1x1 */
    {3, 4, 1, 1, 1, 2, 2, TL_PAD_SAME, 0, 0, 0, 0, 0, 0, 0},  /* 1x1 stride 2 */
    {5, 5, 2, 3, 3, 1, 1, TL_PAD_SAME, 0, 0, 0, 0, 0, 0, 0},  /* same, stride 1 */
    {7, 6, 1, 3, 2, 2, 3, TL_PAD_SAME, 0, 0, 0, 0, 0, 0, 0},
    {4, 4, 2, 5, 5, 1, 1, TL_PAD_SAME, 0, 0, 0, 0, 0, 0, 0},  /* kernel larger than the input */
    {9, 8, 4, 4, 3, 3, 2, TL_PAD_VALID, 0, 0, 0, 0, 0, 0, 0},
    /* dilation, explicit padding, groups */
    {9, 8, 3, 3, 3, 1, 1, TL_PAD_VALID, 2, 3, 1, 0, 0, 0, 0},
    {7, 7, 2, 3, 3, 2, 1, TL_PAD_SAME, 2, 2, 1, 0, 0, 0, 0},
    {6, 6, 3, 3, 3, 2, 2, TL_PAD_EXPLICIT, 1, 1, 1, 1, 1, 1, 1}, /* PyTorch padding=1, stride 2 */
    {5, 6, 2, 3, 2, 1, 2, TL_PAD_EXPLICIT, 1, 1, 1, 2, 0, 1, 3},
    {6, 5, 6, 3, 3, 1, 1, TL_PAD_SAME, 1, 1, 3, 0, 0, 0, 0},
    {6, 6, 4, 3, 3, 2, 2, TL_PAD_EXPLICIT, 2, 1, 4, 2, 1, 0, 2}, /* depthwise, dilated */
    {4, 4, 4, 1, 1, 1, 1, TL_PAD_VALID, 1, 1, 2, 0, 0, 0, 0},
};
#define NCONV ((int)(sizeof conv_cases / sizeof conv_cases[0]))

/* The geometry the conv2d layer builds: explicit pads as given, the
 * others by tli_window over the dilated extent; pad_b / pad_r what the
 * last window needs. */
static tli_conv_geom geom_of(const conv_case *cc)
{
    const uint32_t d_h = cc->d_h ? cc->d_h : 1, d_w = cc->d_w ? cc->d_w : 1;
    tli_conv_geom g = {cc->h, cc->w, cc->c, 0, 0, cc->k_h, cc->k_w, cc->s_h, cc->s_w, 0, 0,
                       d_h, d_w, 0, 0, cc->groups ? cc->groups : 1};
    const uint32_t span_h = d_h * (cc->k_h - 1) + 1, span_w = d_w * (cc->k_w - 1) + 1;
    if (cc->pad == TL_PAD_EXPLICIT) {
        g.pad_t = cc->pt;
        g.pad_l = cc->pl;
        g.out_h = (cc->h + cc->pt + cc->pb - span_h) / cc->s_h + 1;
        g.out_w = (cc->w + cc->pl + cc->pr - span_w) / cc->s_w + 1;
    } else {
        ck_assert(tli_window(cc->h, span_h, cc->s_h, cc->pad, &g.out_h, &g.pad_t));
        ck_assert(tli_window(cc->w, span_w, cc->s_w, cc->pad, &g.out_w, &g.pad_l));
    }
    long b = (long)(g.out_h - 1) * g.s_h + span_h - g.in_h - g.pad_t;
    long r = (long)(g.out_w - 1) * g.s_w + span_w - g.in_w - g.pad_l;
    g.pad_b = b > 0 ? (uint32_t)b : 0;
    g.pad_r = r > 0 ? (uint32_t)r : 0;
    return g;
}

static void naive_im2col(const tli_conv_geom *g, const float *x, size_t batch, uint32_t grp, float *col)
{
    const size_t k = tli_conv_k(g), cg = g->in_c / g->groups;
    for (size_t n = 0; n < batch; n++)
        for (uint32_t oh = 0; oh < g->out_h; oh++)
            for (uint32_t ow = 0; ow < g->out_w; ow++) {
                float *row = col + ((n * g->out_h + oh) * g->out_w + ow) * k;
                for (uint32_t kh = 0; kh < g->k_h; kh++)
                    for (uint32_t kw = 0; kw < g->k_w; kw++)
                        for (uint32_t c = 0; c < cg; c++) {
                            long ih = (long)oh * g->s_h - g->pad_t + (long)kh * g->d_h;
                            long iw = (long)ow * g->s_w - g->pad_l + (long)kw * g->d_w;
                            bool in = ih >= 0 && ih < (long)g->in_h && iw >= 0 && iw < (long)g->in_w;
                            row[((size_t)kh * g->k_w + kw) * cg + c] =
                                in ? x[((n * g->in_h + (size_t)ih) * g->in_w + (size_t)iw) * g->in_c + grp * cg + c]
                                   : 0.0f;
                        }
            }
}

START_TEST(im2col_matches_naive)
{
    const conv_case *cc = &conv_cases[_i];
    const tli_conv_geom g = geom_of(cc);
    const size_t batch = 2, in = batch * g.in_h * g.in_w * g.in_c;
    const size_t cols = batch * g.out_h * g.out_w * tli_conv_k(&g);
    float *x = fnew(in), *want = fnew(cols), *got = fnew(cols);
    th_fill_uniform(x, in, -1.0f, 1.0f, 10 + (uint64_t)_i);
    for (uint32_t grp = 0; grp < g.groups; grp++) {
        naive_im2col(&g, x, batch, grp, want);
        for (uint32_t threads = 1; threads <= 2; threads++) {
            fill_nan(got, cols);
            tli_im2col_group(threads, &g, x, batch, grp, got);
            ck_assert_msg(memcmp(got, want, cols * sizeof *got) == 0, "case %d, group %u, %u threads: im2col differs",
                          _i, grp, threads);
        }
    }
    free(x), free(want), free(got);
}
END_TEST

START_TEST(col2im_is_adjoint_of_im2col)
{
    const conv_case *cc = &conv_cases[_i];
    const tli_conv_geom g = geom_of(cc);
    const size_t batch = 2, in = batch * g.in_h * g.in_w * g.in_c;
    const size_t cols = batch * g.out_h * g.out_w * tli_conv_k(&g);
    float *a = fnew(cols), *b = fnew(in), *ca = fnew(in), *ib = fnew(cols);
    th_fill_uniform(a, cols, -1.0f, 1.0f, 20 + (uint64_t)_i);
    th_fill_uniform(b, in, -1.0f, 1.0f, 30 + (uint64_t)_i);
    for (uint32_t grp = 0; grp < g.groups; grp++) {
        tli_im2col_group(1, &g, b, batch, grp, ib);
        for (uint32_t threads = 1; threads <= 2; threads++) {
            /* col2im overwrites its group's channels entirely and leaves the
             * others: those keep a marker, and only the group's count. */
            for (size_t i = 0; i < in; i++)
                ca[i] = (i % g.in_c) / (g.in_c / g.groups) == grp ? NAN : 7.0f;
            tli_col2im_group(threads, &g, a, batch, grp, ca);
            double lhs = 0.0;
            for (size_t i = 0; i < in; i++) {
                if ((i % g.in_c) / (g.in_c / g.groups) != grp) {
                    ck_assert_msg(ca[i] == 7.0f, "case %d, group %u: channel %zu of another group touched", _i, grp,
                                  i % g.in_c);
                    continue;
                }
                lhs += (double)ca[i] * (double)b[i];
            }
            double rhs = dot(a, ib, cols);
            ck_assert_msg(fabs(lhs - rhs) <= 1e-5 * (fabs(lhs) + fabs(rhs) + 1.0),
                          "case %d, group %u, %u threads: <col2im(a), b> = %.9g but <a, im2col(b)> = %.9g", _i, grp,
                          threads, lhs, rhs);
        }
    }
    free(a), free(b), free(ca), free(ib);
}
END_TEST

/* ---- max pooling --------------------------------------------------------- */

static tli_pool_geom pool_geom(uint32_t h, uint32_t w, uint32_t c, uint32_t p, uint32_t s, tl_padding pad)
{
    tli_pool_geom g = {h, w, c, 0, 0, p, p, s, s, 0, 0};
    ck_assert(tli_window(h, p, s, pad, &g.out_h, &g.pad_t));
    ck_assert(tli_window(w, p, s, pad, &g.out_w, &g.pad_l));
    return g;
}

/* The maximum of each window over the cells inside the image, the first in
 * scan order on ties. */
static void naive_maxpool(const tli_pool_geom *g, const float *x, size_t batch, float *y, int32_t *arg)
{
    for (size_t n = 0; n < batch; n++)
        for (uint32_t oh = 0; oh < g->out_h; oh++)
            for (uint32_t ow = 0; ow < g->out_w; ow++)
                for (uint32_t c = 0; c < g->c; c++) {
                    float best = -INFINITY;
                    int32_t at = -1;
                    for (uint32_t ph = 0; ph < g->p_h; ph++)
                        for (uint32_t pw = 0; pw < g->p_w; pw++) {
                            long ih = (long)oh * g->s_h - g->pad_t + ph, iw = (long)ow * g->s_w - g->pad_l + pw;
                            if (ih < 0 || ih >= (long)g->in_h || iw < 0 || iw >= (long)g->in_w)
                                continue;
                            int32_t idx = (int32_t)(((size_t)ih * g->in_w + (size_t)iw) * g->c + c);
                            float v = x[n * g->in_h * g->in_w * g->c + (size_t)idx];
                            if (at < 0 || v > best) {
                                best = v;
                                at = idx;
                            }
                        }
                    size_t o = ((n * g->out_h + oh) * g->out_w + ow) * g->c + c;
                    y[o] = best;
                    arg[o] = at;
                }
}

START_TEST(maxpool_by_hand)
{
    /* 4x4x1, 2x2 windows, stride 2. The first window has a tie (3 at
     * index 0 and 5): the first in scan order wins. */
    const float x[16] = {3, 0, 2, 1, /**/ 0, 3, 1, 0, /**/ 2, 1, 0, 4, /**/ 1, 0, 3, 2};
    tli_pool_geom g = pool_geom(4, 4, 1, 2, 2, TL_PAD_VALID);
    float y[4], dx[16];
    int32_t arg[4];
    tli_maxpool_forward(1, &g, x, 1, y, arg);
    const float want_y[4] = {3, 2, 2, 4};
    const int32_t want_arg[4] = {0, 2, 8, 11};
    assert_floats(y, want_y, 4, 0.0, "y");
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(arg[i], want_arg[i]);
    const float dy[4] = {10, 20, 30, 40};
    fill_nan(dx, 16);
    tli_maxpool_backward(1, &g, dy, arg, NULL, NULL, 1, dx);
    const float want_dx[16] = {10, 0, 20, 0, /**/ 0, 0, 0, 0, /**/ 30, 0, 0, 40, /**/ 0, 0, 0, 0};
    assert_floats(dx, want_dx, 16, 0.0, "dx");

    /* Overlapping 3x3 windows, stride 1, same padding on 3x3: every window
     * contains the centre 9, so all nine gradients add up there. */
    const float x2[9] = {1, 2, 3, 4, 9, 5, 6, 7, 8};
    g = pool_geom(3, 3, 1, 3, 1, TL_PAD_SAME);
    ck_assert_uint_eq(g.out_h, 3);
    ck_assert_uint_eq(g.pad_t, 1);
    float y2[9], dy2[9], dx2[9];
    int32_t arg2[9];
    tli_maxpool_forward(1, &g, x2, 1, y2, arg2);
    for (int i = 0; i < 9; i++) {
        ck_assert_float_eq(y2[i], 9.0f);
        ck_assert_int_eq(arg2[i], 4);
        dy2[i] = (float)(i + 1);
    }
    fill_nan(dx2, 9);
    tli_maxpool_backward(1, &g, dy2, arg2, NULL, NULL, 1, dx2);
    for (int i = 0; i < 9; i++)
        ck_assert_float_eq(dx2[i], i == 4 ? 45.0f : 0.0f);

    /* Same padding never lets a padded zero win: all-negative input. */
    const float neg[4] = {-4, -3, -2, -1};
    g = pool_geom(2, 2, 1, 3, 2, TL_PAD_SAME); /* out 1x1, pad 0 before, 1 after */
    float y3;
    int32_t a3;
    tli_maxpool_forward(1, &g, neg, 1, &y3, &a3);
    ck_assert_float_eq(y3, -1.0f);
    ck_assert_int_eq(a3, 3);
}
END_TEST

typedef struct pool_case {
    uint32_t h, w, c, p, s;
    tl_padding pad;
} pool_case;

static const pool_case pool_cases[] = {
    {5, 5, 2, 3, 2, TL_PAD_SAME},   /* overlapping, padded both sides */
    {5, 5, 3, 2, 2, TL_PAD_VALID},  /* tiling with an unused last row / column */
    {4, 6, 1, 2, 2, TL_PAD_SAME},
    {5, 7, 2, 2, 2, TL_PAD_SAME},   /* padding after only */
    {7, 7, 1, 3, 1, TL_PAD_SAME},
    {6, 7, 16, 3, 2, TL_PAD_SAME},  /* channel count for the AVX-512 kernel */
    {5, 4, 32, 2, 2, TL_PAD_VALID}, /* AVX-512 and tiling */
    {9, 9, 48, 3, 2, TL_PAD_VALID},
    {6, 8, 16, 2, 2, TL_PAD_VALID},  /* AVX-512 tiled backward, every cell covered */
    {13, 13, 64, 2, 2, TL_PAD_VALID}, /* the seed CNN's second pool */
};
#define NPOOL ((int)(sizeof pool_cases / sizeof pool_cases[0]))

START_TEST(maxpool_matches_naive)
{
    const pool_case *pc = &pool_cases[_i];
    tli_pool_geom g = pool_geom(pc->h, pc->w, pc->c, pc->p, pc->s, pc->pad);
    const size_t batch = 3, in = batch * g.in_h * g.in_w * g.c, out = batch * g.out_h * g.out_w * g.c;
    float *x = fnew(in), *y = fnew(out), *want_y = fnew(out), *yi = fnew(out);
    float *dy = fnew(out), *dx = fnew(in), *want_dx = fnew(in);
    int32_t *arg = malloc(out * sizeof *arg), *want_arg = malloc(out * sizeof *want_arg);
    /* Distinct values, plus some exact ties (a coarse grid), negative too. */
    th_fill_uniform(x, in, -1.0f, 1.0f, 40 + (uint64_t)_i);
    for (size_t i = 0; i < in; i += 3)
        x[i] = roundf(x[i] * 4.0f) / 4.0f;
    th_fill_uniform(dy, out, -1.0f, 1.0f, 50 + (uint64_t)_i);
    naive_maxpool(&g, x, batch, want_y, want_arg);
    memset(want_dx, 0, in * sizeof *want_dx);
    for (size_t n = 0; n < batch; n++)
        for (size_t o = 0; o < out / batch; o++)
            want_dx[n * (in / batch) + (size_t)want_arg[n * (out / batch) + o]] += dy[n * (out / batch) + o];
    for (uint32_t threads = 1; threads <= 2; threads++) {
        fill_nan(y, out);
        tli_maxpool_forward(threads, &g, x, batch, y, arg);
        ck_assert_msg(memcmp(y, want_y, out * sizeof *y) == 0, "case %d: max differs", _i);
        ck_assert_msg(memcmp(arg, want_arg, out * sizeof *arg) == 0, "case %d: arg-max differs", _i);
        fill_nan(yi, out);
        tli_maxpool_forward(threads, &g, x, batch, yi, NULL); /* inference: no arg-max */
        ck_assert_msg(memcmp(yi, want_y, out * sizeof *y) == 0, "case %d: inference max differs", _i);
        fill_nan(dx, in);
        tli_maxpool_backward(threads, &g, dy, arg, NULL, NULL, batch, dx);
        assert_floats(dx, want_dx, in, 1e-6, "dx");
    }

    /* Pooling a ReLU's output with the ReLU's derivative folded in: the
     * same bits as scattering and then applying relu'(x) = (x > 0) to every
     * cell, including windows whose cells are all 0 (ties at zero; the
     * first image is all negative before the ReLU, so it has only those). */
    for (size_t i = 0; i < in; i++)
        x[i] = x[i] > 0.0f && i >= in / batch ? x[i] : 0.0f;
    tli_maxpool_forward(1, &g, x, batch, y, arg);
    memset(want_dx, 0, in * sizeof *want_dx);
    for (size_t n = 0; n < batch; n++)
        for (size_t o = 0; o < out / batch; o++)
            want_dx[n * (in / batch) + (size_t)arg[n * (out / batch) + o]] += dy[n * (out / batch) + o];
    size_t masked = 0;
    for (size_t i = 0; i < in; i++)
        if (!(x[i] > 0.0f)) {
            masked += want_dx[i] != 0.0f;
            want_dx[i] = 0.0f;
        }
    ck_assert_msg(masked > 0, "case %d: no window of zeros, the mask is not exercised", _i);
    /* The bias gradient of the layer below, summed on the way: the sum of
     * dx per channel. */
    double want_db[64] = {0};
    ck_assert_uint_le(g.c, 64);
    for (size_t i = 0; i < in; i++)
        want_db[i % g.c] += want_dx[i];
    float db[2][64];
    for (uint32_t threads = 1; threads <= 2; threads++) {
        fill_nan(dx, in);
        fill_nan(db[threads - 1], g.c);
        tli_maxpool_backward(threads, &g, dy, arg, y, db[threads - 1], batch, dx);
        for (size_t i = 0; i < in; i++)
            ck_assert_msg(dx[i] == want_dx[i] && signbit(dx[i]) == signbit(want_dx[i]),
                          "case %d, %u threads: folded ReLU dx[%zu] = %g, want %g", _i, threads, i, (double)dx[i],
                          (double)want_dx[i]);
        for (size_t ch = 0; ch < g.c; ch++)
            ck_assert_msg(fabs(db[threads - 1][ch] - want_db[ch]) <= 1e-5,
                          "case %d, %u threads: bias gradient [%zu] = %g, want %g", _i, threads, ch,
                          (double)db[threads - 1][ch], want_db[ch]);
    }
    ck_assert_msg(memcmp(db[0], db[1], g.c * sizeof(float)) == 0, "case %d: bias gradient depends on threads", _i);
    free(x), free(y), free(want_y), free(yi), free(dy), free(dx), free(want_dx), free(arg), free(want_arg);
}
END_TEST

/* ---- bias + activation ---------------------------------------------------- */

START_TEST(bias_act_forward_by_hand)
{
    /* z = x + bias = (-0.5, -0.5, 3) in both rows. */
    const float x[6] = {-1, 0, 2, -1, 0, 2}, bias[3] = {0.5f, -0.5f, 1.0f};
    static const struct {
        tl_activation act;
        float want[3];
    } cases[] = {
        {TL_ACT_LINEAR, {-0.5f, -0.5f, 3.0f}},
        {TL_ACT_RELU, {0.0f, 0.0f, 3.0f}},
        {TL_ACT_SIGMOID, {0.377540669f, 0.377540669f, 0.952574127f}},
        {TL_ACT_TANH, {-0.462117157f, -0.462117157f, 0.995054754f}},
        {TL_ACT_SOFTMAX, {0.0284774919f, 0.0284774919f, 0.943045016f}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        for (uint32_t threads = 1; threads <= 2; threads++) {
            float y[6];
            memcpy(y, x, sizeof y);
            tli_bias_act_forward(threads, y, bias, 2, 3, cases[i].act, 0.0f);
            for (int r = 0; r < 2; r++)
                for (int c = 0; c < 3; c++)
                    ck_assert_msg(fabsf(y[r * 3 + c] - cases[i].want[c]) <= 1e-6f, "%s: y[%d][%d] = %.9g, want %.9g",
                                  tl_activation_str(cases[i].act), r, c, (double)y[r * 3 + c], (double)cases[i].want[c]);
        }
    /* Without bias: softmax of (1, 2, 3); linear leaves the data alone. */
    float y[3] = {1, 2, 3};
    tli_bias_act_forward(1, y, NULL, 1, 3, TL_ACT_SOFTMAX, 0.0f);
    const float sm[3] = {0.0900305732f, 0.244728471f, 0.665240956f};
    assert_floats(y, sm, 3, 1e-6, "softmax");
    float lin[3] = {1, -2, 3};
    tli_bias_act_forward(1, lin, NULL, 1, 3, TL_ACT_LINEAR, 0.0f);
    ck_assert(lin[0] == 1 && lin[1] == -2 && lin[2] == 3);
    /* Softmax of huge logits stays finite and exact. */
    float big[3] = {1e30f, -1e30f, 0.0f};
    tli_bias_act_forward(1, big, NULL, 1, 3, TL_ACT_SOFTMAX, 0.0f);
    ck_assert(big[0] == 1.0f && big[1] == 0.0f && big[2] == 0.0f);
    /* ReLU keeps NaN (Keras and PyTorch do): it must reach the loss. */
    float nanv[3] = {NAN, -1.0f, 2.0f};
    tli_bias_act_forward(1, nanv, NULL, 1, 3, TL_ACT_RELU, 0.0f);
    ck_assert(isnan(nanv[0]) && nanv[1] == 0.0f && nanv[2] == 2.0f);
    /* Saturated sigmoid and tanh. */
    float sat[2] = {-200.0f, 200.0f};
    tli_bias_act_forward(1, sat, NULL, 1, 2, TL_ACT_SIGMOID, 0.0f);
    ck_assert(sat[0] == 0.0f && sat[1] == 1.0f);
}
END_TEST

START_TEST(act_backward_by_hand)
{
    /* 5 rows so that two threads split the bias sums into blocks. */
    enum { R = 5, C = 3 };
    static const struct {
        tl_activation act;
        float y[C], dy[C], want[C];
    } cases[] = {
        {TL_ACT_LINEAR, {0.3f, -2.0f, 5.0f}, {1.0f, 2.0f, -3.0f}, {1.0f, 2.0f, -3.0f}},
        {TL_ACT_RELU, {0.0f, 2.0f, 0.5f}, {5.0f, 5.0f, -1.0f}, {0.0f, 5.0f, -1.0f}},
        {TL_ACT_SIGMOID, {0.25f, 0.5f, 0.9f}, {2.0f, 1.0f, -1.0f}, {0.375f, 0.25f, -0.09f}},
        {TL_ACT_TANH, {0.5f, -0.5f, 0.0f}, {2.0f, 1.0f, 3.0f}, {1.5f, 0.75f, 3.0f}},
        /* dz_i = y_i (dy_i - sum_j dy_j y_j); sum = 0.2 */
        {TL_ACT_SOFTMAX, {0.2f, 0.3f, 0.5f}, {1.0f, 0.0f, 0.0f}, {0.16f, -0.06f, -0.1f}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        for (uint32_t threads = 1; threads <= 3; threads++) {
            float y[R * C], dy[R * C], dbias[C], want_bias[C] = {0};
            for (int r = 0; r < R; r++)
                for (int c = 0; c < C; c++) {
                    y[r * C + c] = cases[i].y[c];
                    dy[r * C + c] = cases[i].dy[c] * (float)(r + 1);
                    want_bias[c] += cases[i].want[c] * (float)(r + 1);
                }
            float dy2[R * C];
            memcpy(dy2, dy, sizeof dy);
            tli_act_backward(threads, cases[i].act, 0.0f, NULL, y, dy, R, C, dbias);
            for (int r = 0; r < R; r++)
                for (int c = 0; c < C; c++)
                    ck_assert_msg(fabsf(dy[r * C + c] - cases[i].want[c] * (float)(r + 1)) <= 1e-5f,
                                  "%s, %u threads: dz[%d][%d] = %.9g", tl_activation_str(cases[i].act), threads, r,
                                  c, (double)dy[r * C + c]);
            assert_floats(dbias, want_bias, C, 1e-5, "dbias");
            /* Without a bias gradient: the same dz. */
            tli_act_backward(threads, cases[i].act, 0.0f, NULL, y, dy2, R, C, NULL);
            ck_assert(memcmp(dy, dy2, sizeof dy) == 0);
        }
}
END_TEST

/* ---- GEMM ------------------------------------------------------------------ */

/* c = alpha * a b + beta * c with element (i, j) of X at x[i*rs + j*cs]. */
static void naive_gemm(size_t m, size_t n, size_t k, double alpha, const float *a, ptrdiff_t rsa, ptrdiff_t csa,
                       const float *b, ptrdiff_t rsb, ptrdiff_t csb, double beta, const float *c0, float *c,
                       ptrdiff_t rsc, ptrdiff_t csc)
{
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            double s = 0.0;
            for (size_t p = 0; p < k; p++)
                s += (double)a[(ptrdiff_t)i * rsa + (ptrdiff_t)p * csa] * b[(ptrdiff_t)p * rsb + (ptrdiff_t)j * csb];
            ptrdiff_t o = (ptrdiff_t)i * rsc + (ptrdiff_t)j * csc;
            c[o] = (float)(alpha * s + (beta != 0.0 ? beta * c0[o] : 0.0));
        }
}

START_TEST(gemm_strides_match_naive)
{
    static const struct {
        size_t m, n, k;
        uint32_t threads;
    } sizes[] = {{5, 4, 3, 1}, {1, 7, 5, 1}, {1, 3, 1, 1}, {7, 1, 4, 1}, {64, 48, 40, 2}, {33, 17, 130, 2}};
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        const size_t m = sizes[si].m, n = sizes[si].n, k = sizes[si].k;
        /* layout 0: all row-major; 1: A and B stored transposed, C
         * column-major; 2: strided rows (a gap of 2 floats per row). */
        for (int layout = 0; layout < 3; layout++) {
            ptrdiff_t rsa, csa, rsb, csb, rsc, csc;
            if (layout == 0) {
                rsa = (ptrdiff_t)k, csa = 1, rsb = (ptrdiff_t)n, csb = 1, rsc = (ptrdiff_t)n, csc = 1;
            } else if (layout == 1) {
                rsa = 1, csa = (ptrdiff_t)m, rsb = 1, csb = (ptrdiff_t)k, rsc = 1, csc = (ptrdiff_t)m;
            } else {
                rsa = (ptrdiff_t)k + 2, csa = 1, rsb = 1, csb = (ptrdiff_t)k + 2, rsc = (ptrdiff_t)n + 2, csc = 1;
            }
            const size_t na = (m + 2) * (k + 2), nb = (k + 2) * (n + 2), nc = (m + 2) * (n + 2);
            float *a = fnew(na), *b = fnew(nb), *c0 = fnew(nc), *c = fnew(nc), *want = fnew(nc);
            th_fill_uniform(a, na, -1, 1, 60 + si);
            th_fill_uniform(b, nb, -1, 1, 70 + si);
            th_fill_uniform(c0, nc, -1, 1, 80 + si);
            for (int beta_case = 0; beta_case < 2; beta_case++) {
                const float alpha = 0.5f, beta = beta_case ? 2.0f : 0.0f;
                memcpy(want, c0, nc * sizeof *c);
                naive_gemm(m, n, k, alpha, a, rsa, csa, b, rsb, csb, beta, c0, want, rsc, csc);
                memcpy(c, c0, nc * sizeof *c);
                if (!beta_case) /* beta 0 never reads C: NaN there must not leak */
                    for (size_t i = 0; i < m; i++)
                        for (size_t j = 0; j < n; j++)
                            c[(ptrdiff_t)i * rsc + (ptrdiff_t)j * csc] = NAN;
                tli_gemm(sizes[si].threads, m, n, k, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc);
                for (size_t i = 0; i < nc; i++)
                    ck_assert_msg(fabs((double)c[i] - (double)want[i]) <= 1e-5 * (1.0 + (double)k),
                                  "size %zu layout %d beta %g: c[%zu] = %.9g, expected %.9g", si, layout,
                                  (double)beta, i, (double)c[i], (double)want[i]);
            }
            free(a), free(b), free(c0), free(c), free(want);
        }
    }
}
END_TEST

/* tli_gemm splits tall products into fixed row blocks and long sums into
 * column or row blocks per thread: the same bits on 1 and 2 threads, and
 * the right values. Shapes of MobileNetV2's 1x1 projections (n = 24) and
 * their weight gradients (a long k). */
START_TEST(gemm_threads_same_bits)
{
    static const struct {
        size_t m, n, k;
    } sizes[] = {{8192 + 5, 24, 144}, {4100, 40, 27}, {144, 24, 20000}, {27, 96, 20000}, {40, 40, 30000},
                 {70, 33, 5000}};
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        const size_t m = sizes[si].m, n = sizes[si].n, k = sizes[si].k;
        float *a = fnew(m * k), *b = fnew(k * n), *c1 = fnew(m * n), *c2 = fnew(m * n);
        th_fill_uniform(a, m * k, -1, 1, 90 + si);
        th_fill_uniform(b, k * n, -1, 1, 95 + si);
        /* A stored transposed in the long-k shapes, as a weight gradient reads im2col's columns. */
        const bool at = k > m;
        const ptrdiff_t rsa = at ? 1 : (ptrdiff_t)k, csa = at ? (ptrdiff_t)m : 1;
        tli_gemm(1, m, n, k, 1.0f, a, rsa, csa, b, (ptrdiff_t)n, 1, 0.0f, c1, (ptrdiff_t)n, 1);
        tli_gemm(2, m, n, k, 1.0f, a, rsa, csa, b, (ptrdiff_t)n, 1, 0.0f, c2, (ptrdiff_t)n, 1);
        ck_assert_msg(memcmp(c1, c2, m * n * sizeof *c1) == 0, "size %zu: 1 and 2 threads differ", si);
        const size_t probe[3] = {0, m * n / 2 + 1, m * n - 1};
        for (int q = 0; q < 3; q++) {
            const size_t i = probe[q] / n, j = probe[q] % n;
            double s = 0.0;
            for (size_t p = 0; p < k; p++)
                s += (double)a[(ptrdiff_t)i * rsa + (ptrdiff_t)p * csa] * b[p * n + j];
            ck_assert_msg(fabs((double)c1[probe[q]] - s) <= 1e-5 * (1.0 + (double)k),
                          "size %zu: c[%zu] = %.9g, expected %.9g", si, probe[q], (double)c1[probe[q]], s);
        }
        free(a), free(b), free(c1), free(c2);
    }
}
END_TEST

/* ---- losses ---------------------------------------------------------------- */

START_TEST(softmax_xent_by_hand)
{
    /* Row 0: logits (1, 2, 3), label 2; row 1: (0.5, -1, 0.25), label 0.
     * p0 = (0.0900306, 0.2447285, 0.6652410), lse0 = 3.4076060;
     * p1 = (0.4995177, 0.1114575, 0.3890248), lse1 = 1.1941122. */
    const float z[6] = {1, 2, 3, 0.5f, -1, 0.25f};
    const int32_t labels[2] = {2, 0};
    float dz[6];
    tli_loss_result r;
    size_t bad = 99;
    ck_assert(tli_softmax_xent(z, 2, 3, labels, NULL, dz, &r, &bad));
    ck_assert_close(r.loss_sum, 0.40760596444 + 0.69411218640, 1e-6);
    ck_assert_uint_eq(r.correct, 2);
    const float want[6] = {0.0900305732f / 2, 0.244728471f / 2, (0.665240956f - 1) / 2,
                           (0.499517730f - 1) / 2, 0.111457471f / 2, 0.389024799f / 2};
    assert_floats(dz, want, 6, 1e-6, "dz");

    /* Without a gradient buffer: the same loss. */
    tli_loss_result r2;
    ck_assert(tli_softmax_xent(z, 2, 3, labels, NULL, NULL, &r2, &bad));
    ck_assert(r2.loss_sum == r.loss_sum && r2.correct == r.correct);

    /* Soft targets: loss = sum_c t_c (lse - z_c); dz = (p sum(t) - t) / rows.
     * Row 1's targets sum to 2 (not normalised) and point at class 2. */
    const float t[6] = {0.2f, 0.3f, 0.5f, 0, 0, 2};
    const float z2[6] = {1, 2, 3, 1, 2, 3};
    ck_assert(tli_softmax_xent(z2, 2, 3, NULL, t, dz, &r, &bad));
    ck_assert_close(r.loss_sum, 1.10760596444 + 2 * 0.40760596444, 1e-6);
    ck_assert_uint_eq(r.correct, 2); /* arg-max of the targets is class 2 in both rows */
    const float want2[6] = {(0.0900305732f - 0.2f) / 2, (0.244728471f - 0.3f) / 2, (0.665240956f - 0.5f) / 2,
                            0.0900305732f, 0.244728471f, 0.665240956f - 1.0f};
    assert_floats(dz, want2, 6, 1e-6, "dz soft");

    /* A label out of range is refused with the row. */
    const int32_t bad_labels[2] = {1, 3};
    ck_assert(!tli_softmax_xent(z, 2, 3, bad_labels, NULL, dz, &r, &bad));
    ck_assert_uint_eq(bad, 1);
    const int32_t neg_labels[2] = {-1, 0};
    ck_assert(!tli_softmax_xent(z, 2, 3, neg_labels, NULL, dz, &r, &bad));
    ck_assert_uint_eq(bad, 0);
}
END_TEST

START_TEST(softmax_xent_extreme_logits)
{
    /* Row 0: a huge gap; row 1: all zero; row 2: all equal and huge;
     * row 3: all hugely negative; row 4: the largest floats. */
    const float z[15] = {1e30f, -1e30f, 0.0f,    0.0f,     0.0f,     0.0f,  1e30f,    1e30f,
                         1e30f, -1e30f, -1e30f,  -1e30f,   FLT_MAX,  -FLT_MAX, 0.0f};
    const int32_t labels[5] = {1, 0, 2, 1, 0};
    float dz[15];
    tli_loss_result r;
    size_t bad;
    ck_assert(tli_softmax_xent(z, 5, 3, labels, NULL, dz, &r, &bad));
    ck_assert_msg(isfinite(r.loss_sum), "loss %g", r.loss_sum);
    /* 2 * 1e30f + log 3 + log 3 + log 3 + 0 (the log 3 are below the
     * resolution of 2e30; they are checked apart below) */
    const double big = 2.0 * (double)1e30f;
    ck_assert_msg(fabs(r.loss_sum - big) <= 1e-12 * big, "loss %.17g, expected %.17g", r.loss_sum, big);
    ck_assert(tli_all_finite(dz, 15));
    const float third = 1.0f / 3.0f / 5.0f;
    const float want[15] = {0.2f,  -0.2f, 0.0f,         third - 0.2f, third, third,        third, third,
                            third - 0.2f, third, third - 0.2f, third, 0.0f,  0.0f,  0.0f};
    assert_floats(dz, want, 15, 1e-7, "dz");

    /* The equal rows alone: exactly log 3 each. */
    ck_assert(tli_softmax_xent(z + 3, 3, 3, labels + 1, NULL, NULL, &r, &bad));
    ck_assert_close(r.loss_sum, 3.0 * log(3.0), 1e-9);
    ck_assert_uint_eq(r.correct, 1); /* ties: the first class is predicted */

    /* Soft targets on extreme logits. */
    const float t[3] = {0.5f, 0.5f, 0.0f};
    ck_assert(tli_softmax_xent(z, 1, 3, NULL, t, dz, &r, &bad));
    ck_assert(isfinite(r.loss_sum) && tli_all_finite(dz, 3));
    ck_assert_msg(fabs(r.loss_sum - (double)1e30f) <= 1e-12 * 1e30, "soft loss %.17g", r.loss_sum);
}
END_TEST

START_TEST(mse_by_hand)
{
    /* y = ((0.5, -1), (2, 0)), t = ((1, 0), (0, 0.5)):
     * row losses (0.25 + 1) / 2 = 0.625 and (4 + 0.25) / 2 = 2.125;
     * dy = 2 (y - t) / (rows * cols) = (y - t) / 2. */
    const float y[4] = {0.5f, -1, 2, 0}, t[4] = {1, 0, 0, 0.5f};
    float dy[4];
    tli_loss_result r;
    size_t bad;
    ck_assert(tli_mse(y, 2, 2, NULL, t, dy, &r, &bad));
    ck_assert_close(r.loss_sum, 2.75, 1e-9);
    ck_assert_uint_eq(r.correct, 1);
    const float want[4] = {-0.25f, -0.5f, 1.0f, -0.25f};
    assert_floats(dy, want, 4, 1e-7, "dy");
    /* One-hot labels (0, 1) instead of targets. */
    const int32_t labels[2] = {0, 1};
    ck_assert(tli_mse(y, 2, 2, labels, NULL, dy, &r, &bad));
    ck_assert_close(r.loss_sum, 0.625 + (4.0 + 1.0) / 2, 1e-9);
    const float want2[4] = {-0.25f, -0.5f, 1.0f, -0.5f};
    assert_floats(dy, want2, 4, 1e-7, "dy one-hot");
    const int32_t bad_labels[2] = {0, 2};
    ck_assert(!tli_mse(y, 2, 2, bad_labels, NULL, dy, &r, &bad));
    ck_assert_uint_eq(bad, 1);
}
END_TEST

START_TEST(argmax_and_finite)
{
    const float v[5] = {1, 3, -2, 3, 0};
    ck_assert_uint_eq(tli_argmax(v, 5), 1); /* first on ties */
    ck_assert_uint_eq(tli_argmax(v, 1), 0);
    float w[37];
    for (int i = 0; i < 37; i++)
        w[i] = (float)i - 18.0f;
    w[5] = FLT_MAX;
    w[6] = -FLT_MAX;
    ck_assert(tli_all_finite(w, 37));
    const float bad[3] = {NAN, INFINITY, -INFINITY};
    for (int b = 0; b < 3; b++)
        for (int at = 0; at < 37; at += 12) {
            float s = w[at];
            w[at] = bad[b];
            ck_assert_msg(!tli_all_finite(w, 37), "value %d at %d not detected", b, at);
            w[at] = s;
        }
    ck_assert(tli_all_finite(w, 0));
}
END_TEST

/* ---- average pooling ------------------------------------------------------ */

START_TEST(avgpool_by_hand)
{
    /* 4x4x2, 2x2 windows, stride 2, no padding: channel 0 holds 1..16 row
     * by row, channel 1 their squares. Both divisors are 4. */
    float x[32];
    for (int i = 0; i < 16; i++) {
        x[2 * i] = (float)(i + 1);
        x[2 * i + 1] = (float)((i + 1) * (i + 1));
    }
    tli_pool_geom g = pool_geom(4, 4, 2, 2, 2, TL_PAD_VALID);
    /* (1+2+5+6)/4, (1+4+25+36)/4; (3+4+7+8)/4, (9+16+49+64)/4; ... */
    const float want_y[8] = {3.5f, 16.5f, 5.5f, 34.5f, 11.5f, 136.5f, 13.5f, 186.5f};
    float y[8], dx[32];
    for (int incl = 0; incl < 2; incl++) {
        fill_nan(y, 8);
        tli_avgpool_forward(1, &g, incl, x, 1, y);
        assert_floats(y, want_y, 8, 0.0, "y 2x2");
    }
    /* Each dy reaches its four cells as dy / 4. */
    const float dy[8] = {4, 8, 12, 16, 20, 24, 28, -32};
    fill_nan(dx, 32);
    tli_avgpool_backward(1, &g, false, dy, 1, dx);
    for (int h = 0; h < 4; h++)
        for (int w = 0; w < 4; w++)
            for (int c = 0; c < 2; c++) {
                int o = ((h / 2) * 2 + w / 2) * 2 + c;
                ck_assert_msg(dx[(h * 4 + w) * 2 + c] == dy[o] / 4.0f, "dx[%d][%d][%d] = %g", h, w, c,
                              (double)dx[(h * 4 + w) * 2 + c]);
            }

    /* 4x4x1 = 1..16, 3x3 windows, stride 2, 'same': out 2x2, no padding
     * before, one row / column after (Keras). Real cells per window: 9, 6,
     * 6, 4; with the padding counted, 9 each.
     * Sums: rows 0-2 x cols 0-2: 54; rows 0-2 x cols 2-3: 45;
     * rows 2-3 x cols 0-2: 72; rows 2-3 x cols 2-3: 54. */
    float x4[16];
    for (int i = 0; i < 16; i++)
        x4[i] = (float)(i + 1);
    g = pool_geom(4, 4, 1, 3, 2, TL_PAD_SAME);
    ck_assert_uint_eq(g.out_h, 2);
    ck_assert_uint_eq(g.pad_t, 0);
    float y4[4], dx4[16];
    const float want_real[4] = {6.0f, 7.5f, 12.0f, 13.5f}, want_incl[4] = {6.0f, 5.0f, 8.0f, 6.0f};
    tli_avgpool_forward(1, &g, false, x4, 1, y4);
    assert_floats(y4, want_real, 4, 0.0, "y same, real cells");
    tli_avgpool_forward(1, &g, true, x4, 1, y4);
    assert_floats(y4, want_incl, 4, 0.0, "y same, padding counted");
    /* Backward, dy = (9, 18, 36, 72). Real-cell divisors give shares 1, 3,
     * 6, 18; the padding counted, 1, 2, 4, 8; cells in several windows
     * add them (column 2 and row 2 are shared). */
    const float dy4[4] = {9, 18, 36, 72};
    const float want_dx_real[16] = {1, 1, 4, 3, /**/ 1, 1, 4, 3, /**/ 7, 7, 28, 21, /**/ 6, 6, 24, 18};
    const float want_dx_incl[16] = {1, 1, 3, 2, /**/ 1, 1, 3, 2, /**/ 5, 5, 15, 10, /**/ 4, 4, 12, 8};
    fill_nan(dx4, 16);
    tli_avgpool_backward(1, &g, false, dy4, 1, dx4);
    assert_floats(dx4, want_dx_real, 16, 0.0, "dx same, real cells");
    fill_nan(dx4, 16);
    tli_avgpool_backward(1, &g, true, dy4, 1, dx4);
    assert_floats(dx4, want_dx_incl, 16, 0.0, "dx same, padding counted");

    /* 5x5x1 = 1..25, 3x3 windows, stride 2, 'same': one padding row /
     * column on each side; windows cover rows (0-1, 1-3, 3-4), so the real
     * counts are 4 at corners, 6 at edges, 9 in the middle.
     * Sums: 16 33 28 / 69 117 87 / 76 123 88. */
    float x5[25];
    for (int i = 0; i < 25; i++)
        x5[i] = (float)(i + 1);
    g = pool_geom(5, 5, 1, 3, 2, TL_PAD_SAME);
    ck_assert_uint_eq(g.out_h, 3);
    ck_assert_uint_eq(g.pad_t, 1);
    const float sums5[9] = {16, 33, 28, 69, 117, 87, 76, 123, 88};
    const float want5_real[9] = {4, 5.5f, 7, 11.5f, 13, 14.5f, 19, 20.5f, 22};
    float y5[9], want5_incl[9];
    for (int i = 0; i < 9; i++)
        want5_incl[i] = sums5[i] / 9.0f;
    tli_avgpool_forward(1, &g, false, x5, 1, y5);
    assert_floats(y5, want5_real, 9, 0.0, "y 5x5 same, real cells");
    tli_avgpool_forward(1, &g, true, x5, 1, y5);
    assert_floats(y5, want5_incl, 9, 0.0, "y 5x5 same, padding counted");
}
END_TEST

/* The mean of each window by the definition in kernels.h: real cells summed
 * in double, divided by the real count or by the window's cells inside
 * [-pad_t, in_h + pad_b) x [-pad_l, in_w + pad_r). */
static void naive_avgpool(const tli_pool_geom *g, bool incl, const float *x, size_t batch, float *y)
{
    long pad_b = (long)(g->out_h - 1) * g->s_h + g->p_h - g->in_h - g->pad_t;
    long pad_r = (long)(g->out_w - 1) * g->s_w + g->p_w - g->in_w - g->pad_l;
    pad_b = pad_b < 0 ? 0 : pad_b;
    pad_r = pad_r < 0 ? 0 : pad_r;
    for (size_t n = 0; n < batch; n++)
        for (uint32_t oh = 0; oh < g->out_h; oh++)
            for (uint32_t ow = 0; ow < g->out_w; ow++)
                for (uint32_t c = 0; c < g->c; c++) {
                    double sum = 0.0;
                    int real = 0, padded = 0;
                    for (uint32_t ph = 0; ph < g->p_h; ph++)
                        for (uint32_t pw = 0; pw < g->p_w; pw++) {
                            long ih = (long)oh * g->s_h - g->pad_t + ph, iw = (long)ow * g->s_w - g->pad_l + pw;
                            if (ih >= -(long)g->pad_t && ih < (long)g->in_h + pad_b && iw >= -(long)g->pad_l &&
                                iw < (long)g->in_w + pad_r)
                                padded++;
                            if (ih < 0 || ih >= (long)g->in_h || iw < 0 || iw >= (long)g->in_w)
                                continue;
                            real++;
                            sum += x[((n * g->in_h + (size_t)ih) * g->in_w + (size_t)iw) * g->c + c];
                        }
                    y[((n * g->out_h + oh) * g->out_w + ow) * g->c + c] = (float)(sum / (incl ? padded : real));
                }
}

START_TEST(avgpool_matches_naive_and_adjoint)
{
    const pool_case *pc = &pool_cases[_i];
    tli_pool_geom g = pool_geom(pc->h, pc->w, pc->c, pc->p, pc->s, pc->pad);
    const size_t batch = 3, in = batch * g.in_h * g.in_w * g.c, out = batch * g.out_h * g.out_w * g.c;
    float *x = fnew(in), *dy = fnew(out), *want = fnew(out), *y[2], *dx[2];
    for (int t = 0; t < 2; t++)
        y[t] = fnew(out), dx[t] = fnew(in);
    th_fill_uniform(x, in, -1.0f, 1.0f, 90 + (uint64_t)_i);
    th_fill_uniform(dy, out, -1.0f, 1.0f, 100 + (uint64_t)_i);
    for (int incl = 0; incl < 2; incl++) {
        naive_avgpool(&g, incl, x, batch, want);
        for (uint32_t threads = 1; threads <= 2; threads++) {
            fill_nan(y[threads - 1], out);
            tli_avgpool_forward(threads, &g, incl, x, batch, y[threads - 1]);
            assert_floats(y[threads - 1], want, out, 1e-6, incl ? "y (padding counted)" : "y (real cells)");
            fill_nan(dx[threads - 1], in); /* the backward overwrites dx entirely */
            tli_avgpool_backward(threads, &g, incl, dy, batch, dx[threads - 1]);
            double lhs = dot(y[threads - 1], dy, out), rhs = dot(x, dx[threads - 1], in);
            ck_assert_msg(fabs(lhs - rhs) <= 1e-5 * (fabs(lhs) + fabs(rhs)) + 1e-9,
                          "case %d, incl %d, %u threads: <avgpool(x), dy> = %.9g but <x, avgpool'(dy)> = %.9g", _i,
                          incl, threads, lhs, rhs);
        }
        ck_assert_msg(memcmp(y[0], y[1], out * sizeof(float)) == 0, "case %d, incl %d: y depends on threads", _i,
                      incl);
        ck_assert_msg(memcmp(dx[0], dx[1], in * sizeof(float)) == 0, "case %d, incl %d: dx depends on threads", _i,
                      incl);
    }
    free(x), free(dy), free(want);
    for (int t = 0; t < 2; t++)
        free(y[t]), free(dx[t]);
}
END_TEST

START_TEST(global_avgpool_by_hand)
{
    /* Two images of 3 positions x 2 channels. Image 0: (1, -2), (2, 4),
     * (6, 1) -> (3, 1); image 1: (0.5, 10), (1.5, 20), (1, 30) -> (1, 20). */
    const float x[12] = {1, -2, 2, 4, 6, 1, /**/ 0.5f, 10, 1.5f, 20, 1, 30};
    const float want_y[4] = {3, 1, 1, 20};
    float y[4], dx[12];
    for (uint32_t threads = 1; threads <= 2; threads++) {
        fill_nan(y, 4);
        tli_global_avgpool_forward(threads, 3, 2, x, 2, y);
        assert_floats(y, want_y, 4, 0.0, "global y");
        /* dy / 3 at every position of its image. */
        const float dy[4] = {3, 6, 9, -3};
        const float want_dx[12] = {1, 2, 1, 2, 1, 2, /**/ 3, -1, 3, -1, 3, -1};
        fill_nan(dx, 12);
        tli_global_avgpool_backward(threads, 3, 2, dy, 2, dx);
        assert_floats(dx, want_dx, 12, 0.0, "global dx");
    }
    /* One position: y = x; one channel: a plain mean (1+2+3+4)/4. */
    const float x1[4] = {1, 2, 3, 4};
    tli_global_avgpool_forward(1, 1, 4, x1, 1, y);
    assert_floats(y, x1, 4, 0.0, "global y, hw 1");
    tli_global_avgpool_forward(1, 4, 1, x1, 1, y);
    ck_assert_float_eq(y[0], 2.5f);
}
END_TEST

START_TEST(global_avgpool_matches_naive_and_adjoint)
{
    static const struct {
        uint32_t hw, c;
    } cases[] = {{1, 3}, {5, 1}, {49, 64}, {64, 16}, {9, 37}, {196, 128}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const uint32_t hw = cases[k].hw, c = cases[k].c;
        const size_t batch = 3, in = batch * hw * c, out = batch * c;
        float *x = fnew(in), *dy = fnew(out), *want = fnew(out), *y[2], *dx[2];
        for (int t = 0; t < 2; t++)
            y[t] = fnew(out), dx[t] = fnew(in);
        th_fill_uniform(x, in, -1.0f, 1.0f, 110 + k);
        th_fill_uniform(dy, out, -1.0f, 1.0f, 120 + k);
        for (size_t n = 0; n < batch; n++)
            for (size_t ch = 0; ch < c; ch++) {
                double s = 0.0;
                for (size_t pos = 0; pos < hw; pos++)
                    s += x[(n * hw + pos) * c + ch];
                want[n * c + ch] = (float)(s / hw);
            }
        for (uint32_t threads = 1; threads <= 2; threads++) {
            fill_nan(y[threads - 1], out);
            tli_global_avgpool_forward(threads, hw, c, x, batch, y[threads - 1]);
            assert_floats(y[threads - 1], want, out, 1e-6, "global y");
            fill_nan(dx[threads - 1], in);
            tli_global_avgpool_backward(threads, hw, c, dy, batch, dx[threads - 1]);
            for (size_t i = 0; i < in; i++) {
                size_t n = i / ((size_t)hw * c), ch = i % c;
                ck_assert_msg(dx[threads - 1][i] == dy[n * c + ch] / (float)hw, "case %zu: dx[%zu] = %g", k, i,
                              (double)dx[threads - 1][i]);
            }
            double lhs = dot(y[threads - 1], dy, out), rhs = dot(x, dx[threads - 1], in);
            ck_assert_msg(fabs(lhs - rhs) <= 1e-5 * (fabs(lhs) + fabs(rhs)) + 1e-9,
                          "case %zu, %u threads: <gap(x), dy> = %.9g but <x, gap'(dy)> = %.9g", k, threads, lhs,
                          rhs);
        }
        ck_assert_msg(memcmp(y[0], y[1], out * sizeof(float)) == 0, "case %zu: y depends on threads", k);
        ck_assert_msg(memcmp(dx[0], dx[1], in * sizeof(float)) == 0, "case %zu: dx depends on threads", k);
        free(x), free(dy), free(want);
        for (int t = 0; t < 2; t++)
            free(y[t]), free(dx[t]);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("kernels");
    TCase *tc = tcase_create("kernels");
    tcase_add_test(tc, window_follows_keras);
    tcase_add_loop_test(tc, im2col_matches_naive, 0, NCONV);
    tcase_add_loop_test(tc, col2im_is_adjoint_of_im2col, 0, NCONV);
    tcase_add_test(tc, maxpool_by_hand);
    tcase_add_loop_test(tc, maxpool_matches_naive, 0, NPOOL);
    tcase_add_test(tc, bias_act_forward_by_hand);
    tcase_add_test(tc, act_backward_by_hand);
    tcase_add_test(tc, gemm_strides_match_naive);
    tcase_add_test(tc, gemm_threads_same_bits);
    tcase_add_test(tc, softmax_xent_by_hand);
    tcase_add_test(tc, softmax_xent_extreme_logits);
    tcase_add_test(tc, mse_by_hand);
    tcase_add_test(tc, argmax_and_finite);
    tcase_add_test(tc, avgpool_by_hand);
    tcase_add_loop_test(tc, avgpool_matches_naive_and_adjoint, 0, NPOOL);
    tcase_add_test(tc, global_avgpool_by_hand);
    tcase_add_test(tc, global_avgpool_matches_naive_and_adjoint);
    suite_add_tcase(s, tc);
    return th_run(s);
}
