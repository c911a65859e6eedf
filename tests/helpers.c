#include "helpers.h"

#include <stdio.h>

static uint64_t next_u64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void th_fill_uniform(float *v, size_t n, float lo, float hi, uint64_t seed)
{
    uint64_t s = seed;
    for (size_t i = 0; i < n; i++)
        v[i] = lo + (hi - lo) * (float)(next_u64(&s) >> 40) / 16777216.0f;
}

tl_model *th_seed_cnn(uint32_t h, uint32_t w, uint32_t c, uint32_t classes, uint64_t seed)
{
    tl_model *m = NULL;
    if (tl_model_create(&m, h, w, c, seed) != TL_OK)
        return NULL;
    tl_model_set_threads(m, 1);
    tl_conv2d_options conv = TL_CONV2D_OPTIONS_INIT;
    tl_maxpool2d_options pool = TL_MAXPOOL2D_OPTIONS_INIT;
    tl_dense_options dense = TL_DENSE_OPTIONS_INIT;
    conv.filters = 32;
    conv.activation = TL_ACT_RELU;
    int ok = tl_model_add_conv2d(NULL, m, &conv) == TL_OK && tl_model_add_maxpool2d(NULL, m, &pool) == TL_OK;
    conv.filters = 64;
    ok = ok && tl_model_add_conv2d(NULL, m, &conv) == TL_OK && tl_model_add_maxpool2d(NULL, m, &pool) == TL_OK &&
         tl_model_add_flatten(NULL, m, NULL) == TL_OK;
    dense.units = classes;
    dense.activation = TL_ACT_SOFTMAX;
    ok = ok && tl_model_add_dense(NULL, m, &dense) == TL_OK;
    if (!ok) {
        fprintf(stderr, "th_seed_cnn: %s\n", tl_last_error());
        tl_model_free(m);
        return NULL;
    }
    return m;
}

void th_quadrant_data(float **images, int32_t **labels, size_t n, uint32_t h, uint32_t w, uint32_t c,
                      uint64_t seed)
{
    size_t ex = (size_t)h * w * c;
    float *x = malloc(n * ex * sizeof *x);
    int32_t *y = malloc(n * sizeof *y);
    uint64_t s = seed;
    th_fill_uniform(x, n * ex, 0.0f, 0.5f, seed ^ 0xabcdefULL);
    for (size_t i = 0; i < n; i++) {
        int k = (int)(next_u64(&s) % 4);
        y[i] = k;
        uint32_t h0 = (k / 2) * (h / 2), w0 = (k % 2) * (w / 2);
        for (uint32_t r = h0; r < h0 + h / 2; r++)
            for (uint32_t q = w0; q < w0 + w / 2; q++)
                for (uint32_t ch = 0; ch < c; ch++)
                    x[i * ex + ((size_t)r * w + q) * c + ch] += 0.4f;
    }
    *images = x;
    *labels = y;
}

tl_dataset *th_quadrant_dataset(size_t n, uint32_t h, uint32_t w, uint32_t c, uint64_t seed)
{
    float *x;
    int32_t *y;
    tl_dataset *ds = NULL;
    th_quadrant_data(&x, &y, n, h, w, c, seed);
    if (tl_dataset_create(&ds, x, y, n, h, w, c, 4, TL_DATA_COPY) != TL_OK)
        fprintf(stderr, "th_quadrant_dataset: %s\n", tl_last_error());
    free(x);
    free(y);
    return ds;
}

void th_spot_data(float **images, int32_t **labels, size_t n, uint32_t h, uint32_t w, uint32_t c, float noise,
                  float contrast, uint64_t seed)
{
    size_t ex = (size_t)h * w * c;
    float *x = malloc(n * ex * sizeof *x);
    int32_t *y = malloc(n * sizeof *y);
    uint64_t s = seed;
    const uint32_t sh = h / 4 ? h / 4 : 1, sw = w / 4 ? w / 4 : 1;
    th_fill_uniform(x, n * ex, 0.0f, noise, seed ^ 0x5eedULL);
    for (size_t i = 0; i < n; i++) {
        int k = (int)(next_u64(&s) % 4);
        y[i] = k;
        /* Top-left corner anywhere the spot fits inside the quadrant. */
        uint32_t h0 = (k / 2) * (h / 2) + (uint32_t)(next_u64(&s) % (h / 2 - sh + 1));
        uint32_t w0 = (k % 2) * (w / 2) + (uint32_t)(next_u64(&s) % (w / 2 - sw + 1));
        for (uint32_t r = h0; r < h0 + sh; r++)
            for (uint32_t q = w0; q < w0 + sw; q++)
                for (uint32_t ch = 0; ch < c; ch++)
                    x[i * ex + ((size_t)r * w + q) * c + ch] += contrast;
    }
    *images = x;
    *labels = y;
}

tl_dataset *th_spot_dataset(size_t n, uint32_t h, uint32_t w, uint32_t c, float noise, float contrast,
                            uint64_t seed)
{
    float *x;
    int32_t *y;
    tl_dataset *ds = NULL;
    th_spot_data(&x, &y, n, h, w, c, noise, contrast, seed);
    if (tl_dataset_create(&ds, x, y, n, h, w, c, 4, TL_DATA_COPY) != TL_OK)
        fprintf(stderr, "th_spot_dataset: %s\n", tl_last_error());
    free(x);
    free(y);
    return ds;
}

int th_run(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}

float *th_all_params(const tl_model *m, size_t *count)
{
    size_t n = tl_model_param_count(m), off = 0;
    float *v = malloc((n ? n : 1) * sizeof *v);
    for (size_t i = 0; v != NULL && i < tl_model_num_layers(m); i++) {
        tl_layer *l;
        if (tl_model_layer(&l, m, i) != TL_OK)
            goto fail;
        for (size_t p = 0; p < tl_layer_num_params(l); p++) {
            tl_param_info info;
            if (tl_layer_param_info(&info, l, p) != TL_OK || info.count > n - off ||
                tl_layer_get_weights(v + off, info.count, l, p) != TL_OK)
                goto fail;
            off += info.count;
        }
    }
    *count = n;
    return v;
fail:
    free(v);
    *count = 0;
    return NULL;
}

double th_central(float *v, th_objective_fn f, void *ctx)
{
    const float saved = *v;
    const float up = saved + TH_GRAD_EPS, down = saved - TH_GRAD_EPS;
    *v = up;
    double fp = f(ctx);
    *v = down;
    double fm = f(ctx);
    *v = saved;
    return (fp - fm) / ((double)up - (double)down);
}

void th_check_grad(const float *a, const double *num, size_t n, const char *what)
{
    double scale = 0.0;
    for (size_t i = 0; i < n; i++)
        scale = fmax(scale, fmax(fabs((double)a[i]), fabs(num[i])));
    ck_assert_msg(scale > 1e-3, "%s: gradient is negligible everywhere (max %g)", what, scale);
    /* Float rounding in the numerical side stays below 2e-3 of the largest
     * component in every case tested; the floor leaves some room for it. */
    const double atol = 5e-3 * scale + 1e-5;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - num[i]);
        ck_assert_msg(d <= 1e-2 * fmax(fabs((double)a[i]), fabs(num[i])) + atol,
                      "%s[%zu]: analytical %.7g, numerical %.7g (difference %.3g)", what, i, (double)a[i], num[i], d);
    }
}
