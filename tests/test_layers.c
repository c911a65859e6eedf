/* test_layers.c - every layer's forward pass against values computed by
 * hand on tiny inputs (conv2d valid / same / stride 2 / multi-channel /
 * bias on and off / both convolution algorithms, max-pooling valid and
 * same, flatten, dense with each activation), and output and parameter
 * shapes per Keras' rules. */
#include <stdio.h>

#include "helpers.h"
#include "engine.h"

/* The 4x4x1 and 5x5x1 inputs used throughout. */
static const float X4[16] = {1, 0, 2, 1, /**/ 0, 3, 1, 0, /**/ 2, 1, 0, 4, /**/ 1, 0, 3, 2};
static const float X5[25] = {3, 1, 4, 1, 5, /**/ 9, 2, 6, 5, 3, /**/ 5, 8, 9, 7, 9,
                             /**/ 3, 2, 3, 8, 4, /**/ 6, 2, 6, 4, 3};
/* A 3x3 kernel (kh, kw) with one input channel and one filter. */
static const float K3[9] = {1, 0, -1, /**/ 2, 1, 0, /**/ 0, -1, 1};

static tl_model *new_model(uint32_t h, uint32_t w, uint32_t c)
{
    tl_model *m;
    ck_assert_tl_ok(tl_model_create(&m, h, w, c, 7));
    ck_assert_tl_ok(tl_model_set_threads(m, 1));
    return m;
}

static tl_layer *add_conv(tl_model *m, uint32_t filters, uint32_t k, uint32_t stride, tl_padding pad,
                          tl_activation act, int bias)
{
    tl_conv2d_options o = TL_CONV2D_OPTIONS_INIT;
    o.filters = filters;
    o.kernel_h = o.kernel_w = k;
    o.stride_h = o.stride_w = stride;
    o.padding = pad;
    o.activation = act;
    o.use_bias = bias;
    tl_layer *l;
    ck_assert_tl_ok(tl_model_add_conv2d(&l, m, &o));
    return l;
}

static tl_layer *add_pool(tl_model *m, uint32_t p, uint32_t stride, tl_padding pad)
{
    tl_maxpool2d_options o = TL_MAXPOOL2D_OPTIONS_INIT;
    o.pool_h = o.pool_w = p;
    o.stride_h = o.stride_w = stride;
    o.padding = pad;
    tl_layer *l;
    ck_assert_tl_ok(tl_model_add_maxpool2d(&l, m, &o));
    return l;
}

static void set_params(tl_layer *l, const float *kernel, size_t nk, const float *bias, size_t nb)
{
    ck_assert_tl_ok(tl_layer_set_weights(l, 0, kernel, nk));
    if (bias)
        ck_assert_tl_ok(tl_layer_set_weights(l, 1, bias, nb));
}

static void assert_shape3(const tl_layer *l, uint32_t h, uint32_t w, uint32_t c)
{
    tl_shape s;
    ck_assert_tl_ok(tl_layer_output_shape(&s, l));
    ck_assert_msg(s.rank == 3 && s.dims[0] == h && s.dims[1] == w && s.dims[2] == c,
                  "layer '%s': output (%u: %u, %u, %u), expected (%u, %u, %u)", tl_layer_name(l), s.rank, s.dims[0],
                  s.dims[1], s.dims[2], h, w, c);
}

/* Predict n examples and compare every output with `want` (exactly, unless
 * tol > 0). Also runs the internal forward pass in training mode (which
 * keeps max-pool arg-max) and expects the same numbers. */
static void expect_outputs(tl_model *m, const float *x, size_t n, const float *want, size_t count, double tol)
{
    float *y = malloc(count * sizeof *y);
    ck_assert_tl_ok(tl_model_predict(y, count, m, x, n, 0));
    for (size_t i = 0; i < count; i++)
        ck_assert_msg(fabs((double)y[i] - (double)want[i]) <= tol, "output %zu = %.9g, expected %.9g", i, (double)y[i],
                      (double)want[i]);
    ck_assert_tl_ok(tli_workspace_ensure(m, n, true));
    tli_exec ex = tli_exec_for(m, n, true);
    const float *yt = tli_forward(m, &ex, x, false);
    for (size_t i = 0; i < count; i++)
        ck_assert_msg(fabs((double)yt[i] - (double)want[i]) <= tol, "training-mode output %zu = %.9g, expected %.9g",
                      i, (double)yt[i], (double)want[i]);
    free(y);
}

/* ---- conv2d ------------------------------------------------------------- */

START_TEST(conv_valid_2x2_with_bias)
{
    /* y[i][j] = x[i][j] + 2 x[i][j+1] + 3 x[i+1][j] + 4 x[i+1][j+1] + 0.5 */
    tl_model *m = new_model(4, 4, 1);
    tl_layer *l = add_conv(m, 1, 2, 1, TL_PAD_VALID, TL_ACT_LINEAR, 1);
    assert_shape3(l, 3, 3, 1);
    const float k[4] = {1, 2, 3, 4}, b[1] = {0.5f};
    set_params(l, k, 4, b, 1);
    const float want[9] = {13.5f, 17.5f, 7.5f, /**/ 16.5f, 8.5f, 17.5f, /**/ 7.5f, 13.5f, 25.5f};
    expect_outputs(m, X4, 1, want, 9, 0.0);
    tl_model_free(m);
}
END_TEST

START_TEST(conv_same_stride2_pads_bottom_right)
{
    /* 4x4, 3x3, stride 2, same: out 2x2; the one padding row and column go
     * after the input (Keras / TensorFlow), so y[0][0] sees x[0..2][0..2]:
     * 1*1 + 2*0 - 1*2 + 2*0 + 1*3 + 0*1 + 0*2 - 1*1 + 1*0 = 1. */
    tl_model *m = new_model(4, 4, 1);
    tl_layer *l = add_conv(m, 1, 3, 2, TL_PAD_SAME, TL_ACT_LINEAR, 0);
    assert_shape3(l, 2, 2, 1);
    ck_assert_uint_eq(tl_layer_num_params(l), 1);
    set_params(l, K3, 9, NULL, 0);
    const float want[4] = {1, 0, 4, 8};
    expect_outputs(m, X4, 1, want, 4, 0.0);
    tl_model_free(m);

    /* 5x5, stride 2, same: out 3x3 with one padding cell on each side:
     * y[0][0] = 1*3 - 1*9 + 1*2 = -4. */
    m = new_model(5, 5, 1);
    l = add_conv(m, 1, 3, 2, TL_PAD_SAME, TL_ACT_LINEAR, 0);
    assert_shape3(l, 3, 3, 1);
    set_params(l, K3, 9, NULL, 0);
    const float want5[9] = {-4, 5, 4, /**/ 2, 27, 24, /**/ 4, 4, 19};
    expect_outputs(m, X5, 1, want5, 9, 0.0);
    tl_model_free(m);

    /* 5x5, stride 2, valid: out 2x2. */
    m = new_model(5, 5, 1);
    l = add_conv(m, 1, 3, 2, TL_PAD_VALID, TL_ACT_LINEAR, 0);
    assert_shape3(l, 2, 2, 1);
    set_params(l, K3, 9, NULL, 0);
    const float want5v[4] = {20, 18, 8, 13};
    expect_outputs(m, X5, 1, want5v, 4, 0.0);
    tl_model_free(m);
}
END_TEST

START_TEST(conv_same_stride1)
{
    tl_model *m = new_model(4, 4, 1);
    tl_layer *l = add_conv(m, 1, 3, 1, TL_PAD_SAME, TL_ACT_LINEAR, 0);
    assert_shape3(l, 4, 4, 1);
    set_params(l, K3, 9, NULL, 0);
    const float want[16] = {4, 0, 1, 5, /**/ -1, 1, 10, 0, /**/ -2, 7, 4, 3, /**/ 0, 4, 0, 8};
    expect_outputs(m, X4, 1, want, 16, 0.0);
    tl_model_free(m);
}
END_TEST

START_TEST(conv_multichannel_relu_and_batch)
{
    /* 3x3x2 input, 2x2 kernel, 2 filters, bias (0.1, -0.2).
     * Filter 0: channel 0 [[1,0],[0,1]], channel 1 [[0,1],[1,0]];
     * filter 1: channel 0 [[-1,1],[0,0]], channel 1 [[0,0],[2,-1]].
     * Kernel layout (kh, kw, in, out). */
    const float x[18] = {1, -1, 2, 0, 0, 1, /**/ 0, 2, 1, 1, -1, 0, /**/ 3, 0, 0, -2, 1, 1};
    const float k[16] = {1, -1, 0, 0, 0, 1, 1, 0, 0, 0, 1, 2, 1, 0, 0, -1};
    const float b[2] = {0.1f, -0.2f};
    const float lin[8] = {4.1f, 3.8f, 3.1f, -0.2f, 1.1f, 2.8f, 0.1f, -7.2f};
    tl_model *m = new_model(3, 3, 2);
    tl_layer *l = add_conv(m, 2, 2, 1, TL_PAD_VALID, TL_ACT_LINEAR, 1);
    set_params(l, k, 16, b, 2);
    expect_outputs(m, x, 1, lin, 8, 1e-6);
    tl_model_free(m);

    m = new_model(3, 3, 2);
    l = add_conv(m, 2, 2, 1, TL_PAD_VALID, TL_ACT_RELU, 1);
    set_params(l, k, 16, b, 2);
    /* A batch of two: the input, then the input negated (bias unchanged):
     * lin(-x) = -(lin(x) - bias) + bias. */
    float xx[36], want[16];
    for (int i = 0; i < 18; i++) {
        xx[i] = x[i];
        xx[18 + i] = -x[i];
    }
    for (int i = 0; i < 8; i++) {
        float neg = -(lin[i] - b[i % 2]) + b[i % 2];
        want[i] = lin[i] > 0 ? lin[i] : 0;
        want[8 + i] = neg > 0 ? neg : 0;
    }
    expect_outputs(m, xx, 2, want, 16, 1e-6);
    tl_model_free(m);
}
END_TEST

START_TEST(conv_sixteen_filters)
{
    /* 16 filters (the direct AVX-512 kernels take stride-1 convolutions
     * with a multiple of 16 filters on CPUs that have them): filter f is
     * (f + 1) times the 2x2 kernel [[1,2],[3,4]] with bias -f, so its
     * output is (f + 1) * (the first test's output - 0.5) - f, then ReLU. */
    const float base[9] = {13, 17, 7, 16, 8, 17, 7, 13, 25};
    for (int same = 0; same < 2; same++) {
        tl_model *m = new_model(4, 4, 1);
        tl_layer *l = add_conv(m, 16, same ? 3 : 2, 1, same ? TL_PAD_SAME : TL_PAD_VALID, TL_ACT_RELU, 1);
        float k[9 * 16], b[16];
        const float *kk = same ? K3 : (const float[]){1, 2, 3, 4};
        const size_t taps = same ? 9 : 4;
        for (size_t t = 0; t < taps; t++)
            for (int f = 0; f < 16; f++)
                k[t * 16 + (size_t)f] = kk[t] * (float)(f + 1);
        for (int f = 0; f < 16; f++)
            b[f] = (float)-f;
        set_params(l, k, taps * 16, b, 16);
        /* 3x3 same on 4x4: the stride-1 result of conv_same_stride1. */
        const float same_base[16] = {4, 0, 1, 5, -1, 1, 10, 0, -2, 7, 4, 3, 0, 4, 0, 8};
        const size_t pix = same ? 16 : 9;
        float want[16 * 16];
        for (size_t p = 0; p < pix; p++)
            for (int f = 0; f < 16; f++) {
                float v = (same ? same_base[p] : base[p]) * (float)(f + 1) - (float)f;
                want[p * 16 + (size_t)f] = v > 0 ? v : 0;
            }
        expect_outputs(m, X4, 1, want, pix * 16, 0.0);
        tl_model_free(m);
    }
}
END_TEST

START_TEST(conv_activations)
{
    /* 1x1 convolution over 3 channels to 2 filters: a per-pixel dense
     * layer. x = (1, -2, 0.5); kernel rows (0.5, -1), (0.25, 0.5), (2, 1);
     * bias (0.1, 0.2) -> z = (1.1, -1.3). Softmax is over the filters. */
    const float x[3] = {1, -2, 0.5f}, k[6] = {0.5f, -1, 0.25f, 0.5f, 2, 1}, b[2] = {0.1f, 0.2f};
    static const struct {
        tl_activation act;
        float want[2];
    } cases[] = {
        {TL_ACT_LINEAR, {1.1f, -1.3f}},
        {TL_ACT_RELU, {1.1f, 0.0f}},
        {TL_ACT_SIGMOID, {0.750260106f, 0.214165017f}},
        {TL_ACT_TANH, {0.800499022f, -0.861723159f}},
        {TL_ACT_SOFTMAX, {0.916827304f, 0.0831726965f}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tl_model *m = new_model(1, 1, 3);
        tl_layer *l = add_conv(m, 2, 1, 1, TL_PAD_VALID, cases[i].act, 1);
        ck_assert_int_eq(tl_layer_activation(l), cases[i].act);
        set_params(l, k, 6, b, 2);
        expect_outputs(m, x, 1, cases[i].want, 2, 1e-6);
        tl_model_free(m);
    }
}
END_TEST

/* ---- maxpool2d ------------------------------------------------------------ */

START_TEST(maxpool_valid_and_same)
{
    static const struct {
        uint32_t in, p, s;
        tl_padding pad;
        uint32_t out;
        float want[9];
    } cases[] = {
        {4, 2, 2, TL_PAD_VALID, 2, {3, 2, 2, 4}},
        {5, 2, 2, TL_PAD_VALID, 2, {9, 6, 8, 9}},            /* floor: last row / column unused */
        {5, 2, 2, TL_PAD_SAME, 3, {9, 6, 5, 8, 9, 9, 6, 6, 3}}, /* ceil: padding after */
        {5, 3, 2, TL_PAD_VALID, 2, {9, 9, 9, 9}},
        {5, 3, 2, TL_PAD_SAME, 3, {9, 6, 5, 9, 9, 9, 6, 8, 8}}, /* one padding cell each side */
        {4, 2, 0, TL_PAD_VALID, 2, {3, 2, 2, 4}},            /* stride 0: the pool size */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tl_model *m = new_model(cases[i].in, cases[i].in, 1);
        tl_layer *l = add_pool(m, cases[i].p, cases[i].s, cases[i].pad);
        assert_shape3(l, cases[i].out, cases[i].out, 1);
        ck_assert_uint_eq(tl_layer_num_params(l), 0);
        expect_outputs(m, cases[i].in == 4 ? X4 : X5, 1, cases[i].want, (size_t)cases[i].out * cases[i].out, 0.0);
        tl_model_free(m);
    }
}
END_TEST

START_TEST(maxpool_channels_and_negatives)
{
    /* 2x2x2 input, one 2x2 window: each channel separately. Same padding
     * on all-negative input must not let a padded zero win. */
    const float x[8] = {-5, 1, -2, 7, -3, -1, -4, 2};
    tl_model *m = new_model(2, 2, 2);
    add_pool(m, 2, 2, TL_PAD_VALID);
    const float want[2] = {-2, 7};
    expect_outputs(m, x, 1, want, 2, 0.0);
    tl_model_free(m);

    const float neg[9] = {-9, -8, -7, -6, -5, -4, -3, -2, -1};
    m = new_model(3, 3, 1);
    tl_layer *l = add_pool(m, 2, 2, TL_PAD_SAME);
    assert_shape3(l, 2, 2, 1);
    const float want_neg[4] = {-5, -4, -2, -1};
    expect_outputs(m, neg, 1, want_neg, 4, 0.0);
    tl_model_free(m);
}
END_TEST

/* ---- flatten and dense ---------------------------------------------------- */

START_TEST(flatten_keeps_nhwc_order)
{
    const float x[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    tl_model *m = new_model(2, 2, 3);
    tl_layer *l;
    ck_assert_tl_ok(tl_model_add_flatten(&l, m, NULL));
    tl_shape s;
    ck_assert_tl_ok(tl_layer_output_shape(&s, l));
    ck_assert_uint_eq(s.rank, 1);
    ck_assert_uint_eq(s.dims[0], 12);
    ck_assert_uint_eq(tl_layer_param_count(l), 0);
    expect_outputs(m, x, 1, x, 12, 0.0);
    tl_model_free(m);

    /* flatten after a convolution, then dense: dense sees (h, w, c) order. */
    m = new_model(2, 2, 1);
    tl_layer *conv = add_conv(m, 2, 1, 1, TL_PAD_VALID, TL_ACT_LINEAR, 0);
    const float kc[2] = {1, 10}; /* channel 0 = x, channel 1 = 10 x */
    set_params(conv, kc, 2, NULL, 0);
    ck_assert_tl_ok(tl_model_add_flatten(NULL, m, NULL));
    tl_dense_options d = TL_DENSE_OPTIONS_INIT;
    d.units = 1;
    d.use_bias = 0;
    tl_layer *dense;
    ck_assert_tl_ok(tl_model_add_dense(&dense, m, &d));
    /* Flattened: (x0, 10x0, x1, 10x1, x2, 10x2, x3, 10x3); weights pick
     * the 10 x1 entry (index 3) and x2 (index 4) with weights 1 and 100. */
    float kd[8] = {0};
    kd[3] = 1;
    kd[4] = 100;
    set_params(dense, kd, 8, NULL, 0);
    const float xi[4] = {1, 2, 3, 4};
    const float want[1] = {10 * 2 + 100 * 3};
    expect_outputs(m, xi, 1, want, 1, 0.0);
    tl_model_free(m);
}
END_TEST

START_TEST(dense_by_hand)
{
    /* x = (1, -2, 0.5) and (0, 1, -1); W = ((0.5, -1), (0.25, 0.5), (2, 1));
     * b = (0.1, 0.2): z = (1.1, -1.3) and (-1.65, -0.3). */
    const float x[6] = {1, -2, 0.5f, 0, 1, -1}, k[6] = {0.5f, -1, 0.25f, 0.5f, 2, 1}, b[2] = {0.1f, 0.2f};
    static const struct {
        tl_activation act;
        int bias;
        float want[4];
    } cases[] = {
        {TL_ACT_LINEAR, 1, {1.1f, -1.3f, -1.65f, -0.3f}},
        {TL_ACT_LINEAR, 0, {1.0f, -1.5f, -1.75f, -0.5f}},
        {TL_ACT_RELU, 1, {1.1f, 0.0f, 0.0f, 0.0f}},
        {TL_ACT_SIGMOID, 1, {0.750260106f, 0.214165017f, 0.161108950f, 0.425557483f}},
        {TL_ACT_TANH, 1, {0.800499022f, -0.861723159f, -0.928857621f, -0.291312612f}},
        {TL_ACT_SOFTMAX, 1, {0.916827304f, 0.0831726965f, 0.205870372f, 0.794129628f}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tl_model *m = new_model(1, 1, 3);
        ck_assert_tl_ok(tl_model_add_flatten(NULL, m, NULL));
        tl_dense_options d = TL_DENSE_OPTIONS_INIT;
        d.units = 2;
        d.activation = cases[i].act;
        d.use_bias = cases[i].bias;
        tl_layer *l;
        ck_assert_tl_ok(tl_model_add_dense(&l, m, &d));
        ck_assert_uint_eq(tl_layer_num_params(l), cases[i].bias ? 2 : 1);
        set_params(l, k, 6, cases[i].bias ? b : NULL, 2);
        expect_outputs(m, x, 2, cases[i].want, 4, 1e-6);
        /* One example at a time takes the matrix-vector path: same numbers. */
        float y1[2];
        ck_assert_tl_ok(tl_model_predict(y1, 2, m, x + 3, 1, 1));
        ck_assert_close(y1[0], cases[i].want[2], 1e-6);
        ck_assert_close(y1[1], cases[i].want[3], 1e-6);
        tl_model_free(m);
    }
}
END_TEST

/* ---- shapes ------------------------------------------------------------- */

START_TEST(output_and_param_shapes_follow_keras)
{
    static const struct {
        uint32_t h, w, c, filters, kh, kw, sh, sw;
        tl_padding pad;
        uint32_t oh, ow;
    } convs[] = {
        {32, 32, 3, 32, 3, 3, 1, 1, TL_PAD_VALID, 30, 30}, {32, 32, 3, 8, 3, 3, 2, 2, TL_PAD_VALID, 15, 15},
        {32, 32, 3, 8, 3, 3, 1, 1, TL_PAD_SAME, 32, 32},   {32, 32, 3, 8, 3, 3, 2, 2, TL_PAD_SAME, 16, 16},
        {7, 9, 2, 4, 5, 3, 2, 1, TL_PAD_SAME, 4, 9},       {7, 9, 2, 4, 5, 3, 2, 1, TL_PAD_VALID, 2, 7},
        {3, 3, 1, 1, 5, 5, 1, 1, TL_PAD_SAME, 3, 3},       {6, 6, 1, 2, 1, 1, 3, 3, TL_PAD_VALID, 2, 2},
    };
    for (size_t i = 0; i < sizeof convs / sizeof convs[0]; i++) {
        tl_model *m;
        ck_assert_tl_ok(tl_model_create(&m, convs[i].h, convs[i].w, convs[i].c, 1));
        tl_conv2d_options o = TL_CONV2D_OPTIONS_INIT;
        o.filters = convs[i].filters;
        o.kernel_h = convs[i].kh;
        o.kernel_w = convs[i].kw;
        o.stride_h = convs[i].sh;
        o.stride_w = convs[i].sw;
        o.padding = convs[i].pad;
        tl_layer *l;
        ck_assert_tl_ok(tl_model_add_conv2d(&l, m, &o));
        assert_shape3(l, convs[i].oh, convs[i].ow, convs[i].filters);
        tl_param_info info;
        ck_assert_tl_ok(tl_layer_param_info(&info, l, 0));
        ck_assert_str_eq(info.name, "kernel");
        ck_assert_uint_eq(info.shape.rank, 4);
        ck_assert(info.shape.dims[0] == convs[i].kh && info.shape.dims[1] == convs[i].kw &&
                  info.shape.dims[2] == convs[i].c && info.shape.dims[3] == convs[i].filters);
        ck_assert_uint_eq(info.count, (size_t)convs[i].kh * convs[i].kw * convs[i].c * convs[i].filters);
        ck_assert_tl_ok(tl_layer_param_info(&info, l, 1));
        ck_assert_str_eq(info.name, "bias");
        ck_assert(info.shape.rank == 1 && info.shape.dims[0] == convs[i].filters && info.count == convs[i].filters);
        tl_shape in;
        ck_assert_tl_ok(tl_layer_input_shape(&in, l));
        ck_assert(in.rank == 3 && in.dims[0] == convs[i].h && in.dims[1] == convs[i].w && in.dims[2] == convs[i].c);
        tl_model_free(m);
    }
    static const struct {
        uint32_t in, p, s;
        tl_padding pad;
        uint32_t out;
    } pools[] = {
        {30, 2, 0, TL_PAD_VALID, 15}, {13, 2, 0, TL_PAD_VALID, 6}, {13, 2, 0, TL_PAD_SAME, 7},
        {7, 3, 2, TL_PAD_SAME, 4},    {7, 3, 2, TL_PAD_VALID, 3}, {5, 2, 1, TL_PAD_VALID, 4},
        {3, 5, 1, TL_PAD_SAME, 3},
    };
    for (size_t i = 0; i < sizeof pools / sizeof pools[0]; i++) {
        tl_model *m;
        ck_assert_tl_ok(tl_model_create(&m, pools[i].in, pools[i].in, 5, 1));
        tl_layer *l = add_pool(m, pools[i].p, pools[i].s, pools[i].pad);
        assert_shape3(l, pools[i].out, pools[i].out, 5);
        tl_model_free(m);
    }
    /* The document's network on 32x32x3: (30,30,32) (15,15,32) (13,13,64)
     * (6,6,64) (2304,) (10,); dense kernel (2304, 10). */
    tl_model *m = th_seed_cnn(32, 32, 3, 10, 1);
    ck_assert_ptr_nonnull(m);
    const uint32_t want[4][3] = {{30, 30, 32}, {15, 15, 32}, {13, 13, 64}, {6, 6, 64}};
    for (size_t i = 0; i < 4; i++) {
        tl_layer *l;
        ck_assert_tl_ok(tl_model_layer(&l, m, i));
        assert_shape3(l, want[i][0], want[i][1], want[i][2]);
    }
    tl_layer *l;
    tl_shape s;
    tl_param_info info;
    ck_assert_tl_ok(tl_model_layer(&l, m, 4));
    ck_assert_tl_ok(tl_layer_output_shape(&s, l));
    ck_assert(s.rank == 1 && s.dims[0] == 2304);
    ck_assert_tl_ok(tl_model_layer(&l, m, 5));
    ck_assert_tl_ok(tl_layer_output_shape(&s, l));
    ck_assert(s.rank == 1 && s.dims[0] == 10);
    ck_assert_tl_ok(tl_layer_param_info(&info, l, 0));
    ck_assert(info.shape.rank == 2 && info.shape.dims[0] == 2304 && info.shape.dims[1] == 10);
    ck_assert_uint_eq(tl_shape_count(&info.shape), 23040);
    tl_model_free(m);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("layers");
    TCase *tc = tcase_create("forward");
    tcase_add_test(tc, conv_valid_2x2_with_bias);
    tcase_add_test(tc, conv_same_stride2_pads_bottom_right);
    tcase_add_test(tc, conv_same_stride1);
    tcase_add_test(tc, conv_multichannel_relu_and_batch);
    tcase_add_test(tc, conv_sixteen_filters);
    tcase_add_test(tc, conv_activations);
    tcase_add_test(tc, maxpool_valid_and_same);
    tcase_add_test(tc, maxpool_channels_and_negatives);
    tcase_add_test(tc, flatten_keeps_nhwc_order);
    tcase_add_test(tc, dense_by_hand);
    tcase_add_test(tc, output_and_param_shapes_follow_keras);
    suite_add_tcase(s, tc);
    return th_run(s);
}
