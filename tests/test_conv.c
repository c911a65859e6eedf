/* test_conv.c - the two convolution algorithms (im2col + BLIS, direct
 * AVX-512) agree on forward, weight gradient and input gradient for many
 * shapes, paddings and thread counts. Skipped where the CPU has no AVX-512
 * (only the GEMM path exists there; the layer tests cover it). */
#include <stdio.h>

#include "helpers.h"
#include "kernels/kernels.h"
#include "layers/layer.h"

typedef struct shape_case {
    uint32_t h, w, c, filters, k_h, k_w;
    tl_padding pad;
} shape_case;

static const shape_case cases[] = {
    {32, 32, 3, 32, 3, 3, TL_PAD_VALID},  /* the document's first conv */
    {15, 15, 32, 64, 3, 3, TL_PAD_VALID}, /* the document's second conv */
    {28, 28, 1, 32, 3, 3, TL_PAD_VALID},  /* Fashion-MNIST's first conv */
    {9, 7, 16, 48, 3, 3, TL_PAD_SAME},
    {8, 8, 32, 16, 5, 5, TL_PAD_SAME},
    {6, 5, 17, 80, 2, 3, TL_PAD_VALID},
    {5, 5, 16, 16, 1, 1, TL_PAD_VALID},
    {4, 6, 64, 128, 3, 1, TL_PAD_SAME},
};

static tli_conv_geom geom_of(const shape_case *sc)
{
    tli_conv_geom g = {sc->h, sc->w, sc->c, 0, 0, sc->k_h, sc->k_w, 1, 1, 0, 0};
    uint32_t oh, ow, pt, pl;
    tli_window(sc->h, sc->k_h, 1, sc->pad, &oh, &pt);
    tli_window(sc->w, sc->k_w, 1, sc->pad, &ow, &pl);
    g.out_h = oh;
    g.out_w = ow;
    g.pad_t = pt;
    g.pad_l = pl;
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

START_TEST(direct_matches_gemm)
{
    const shape_case *sc = &cases[_i];
    tli_conv_geom g = geom_of(sc);
    if (!tli_conv_algo_ok(TLI_CONV_DIRECT, &g, sc->filters)) {
        fprintf(stderr, "no AVX-512 on this CPU: direct path not tested\n");
        return;
    }
    for (uint32_t threads = 1; threads <= 2; threads++) {
        const size_t batch = 3;
        const size_t in = batch * sc->h * sc->w * sc->c;
        const size_t out = batch * g.out_h * g.out_w * sc->filters;
        const size_t wn = (size_t)sc->k_h * sc->k_w * sc->c * sc->filters;
        float *x = malloc(in * sizeof *x), *w = malloc(wn * sizeof *w), *bias = malloc(sc->filters * sizeof *bias);
        float *dz = malloc(out * sizeof *dz);
        float *y[2], *dw[2], *dx[2];
        void *scratch[2];
        th_fill_uniform(x, in, -1, 1, 1);
        th_fill_uniform(w, wn, -0.5f, 0.5f, 2);
        th_fill_uniform(bias, sc->filters, -0.1f, 0.1f, 3);
        th_fill_uniform(dz, out, -1, 1, 4);
        for (int a = 0; a < 2; a++) {
            tli_conv_algo algo = a ? TLI_CONV_DIRECT : TLI_CONV_GEMM;
            size_t sb = tli_conv_scratch_bytes(algo, &g, sc->filters, batch, threads, true, true);
            scratch[a] = malloc(sb ? sb : 1);
            y[a] = malloc(out * sizeof(float));
            dw[a] = malloc(wn * sizeof(float));
            dx[a] = malloc(in * sizeof(float));
            tli_conv_forward(threads, algo, &g, sc->filters, x, w, bias, TL_ACT_RELU, y[a], batch, scratch[a]);
            tli_conv_backward(threads, algo, &g, sc->filters, x, dz, w, dw[a], dx[a], batch, scratch[a]);
        }
        ck_assert_msg(max_rel_diff(y[0], y[1], out) < 1e-5, "case %d forward differs by %g", _i,
                      max_rel_diff(y[0], y[1], out));
        ck_assert_msg(max_rel_diff(dw[0], dw[1], wn) < 1e-5, "case %d weight gradient differs by %g", _i,
                      max_rel_diff(dw[0], dw[1], wn));
        ck_assert_msg(max_rel_diff(dx[0], dx[1], in) < 1e-5, "case %d input gradient differs by %g", _i,
                      max_rel_diff(dx[0], dx[1], in));
        for (int a = 0; a < 2; a++) {
            free(scratch[a]);
            free(y[a]);
            free(dw[a]);
            free(dx[a]);
        }
        free(x), free(w), free(bias), free(dz);
    }
}
END_TEST

START_TEST(choice_follows_shape)
{
    shape_case odd = {8, 8, 3, 20, 3, 3, TL_PAD_VALID};
    tli_conv_geom g = geom_of(&odd);
    /* 20 filters are not a multiple of 16: always the GEMM path. */
    ck_assert_int_eq(tli_conv_choose(&g, 20), TLI_CONV_GEMM);
    g.s_h = 2;
    ck_assert_int_eq(tli_conv_choose(&g, 32), TLI_CONV_GEMM);
    g.s_h = 1;
    ck_assert_int_eq(tli_conv_choose(&g, 32), tli_cpu_has_avx512() ? TLI_CONV_DIRECT : TLI_CONV_GEMM);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("conv");
    TCase *tc = tcase_create("algorithms");
    tcase_add_loop_test(tc, direct_matches_gemm, 0, (int)(sizeof cases / sizeof cases[0]));
    tcase_add_test(tc, choice_follows_shape);
    suite_add_tcase(s, tc);
    return th_run(s);
}
