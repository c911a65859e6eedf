/* test_gradients.c - analytical gradients against central differences.
 *
 *  - Layer level: each layer kind (conv2d in both algorithms, strides,
 *    paddings, every activation; maxpool2d; dense with every activation)
 *    through its vtable, for L = sum(r * layer(x)) with fixed random r:
 *    gradients of the kernel, the bias and the input.
 *  - Model level: small networks through the engine (tli_forward,
 *    tli_backward) with each loss: sparse cross-entropy (softmax or logits),
 *    cross-entropy with soft targets, mean squared error after linear,
 *    sigmoid and softmax outputs; frozen layers in the middle; 2 threads.
 *  - The loss kernels' own gradients.
 *
 * Central differences in float with eps = 1e-3, compared with a relative
 * tolerance of 1e-2 plus a floor of 0.5% of the tensor's largest component. Inputs are built so that
 * no perturbation crosses a ReLU kink or changes a max-pool winner: the
 * pre-activations and the max-pool gaps keep a margin of 10 eps (seeds are
 * searched until they do), and max-pool inputs are distinct grid values. */
#include <stdio.h>

#include "helpers.h"
#include "train.h"

/* A perturbation moves a pre-activation by at most eps * |coefficient|
 * (inputs in [-1, 1], weights in [-0.5, 0.5]) in a layer; through a small
 * model by a few eps. */
#define LAYER_MARGIN 2e-3
#define MODEL_MARGIN 5e-3

/* ---- comparing --------------------------------------------------------------- */

/* ---- layer level ------------------------------------------------------------- */

/* K_AVG's `bias` field is count_include_pad. */
typedef enum { K_CONV, K_POOL, K_DENSE, K_AVG, K_GAP } kind;

typedef struct layer_case {
    const char *what;
    kind kind;
    uint32_t h, w, c;                 /* the layer's input */
    uint32_t units, k_h, k_w, s_h, s_w; /* filters / units; kernel or pool; strides */
    tl_padding pad;
    tl_activation act;
    int bias;
    uint32_t threads;
} layer_case;

static const layer_case layer_cases[] = {
    {"conv 3x3 valid linear", K_CONV, 5, 5, 2, 3, 3, 3, 1, 1, TL_PAD_VALID, TL_ACT_LINEAR, 1, 1},
    {"conv 3x3 same stride 2 tanh", K_CONV, 5, 6, 2, 3, 3, 3, 2, 2, TL_PAD_SAME, TL_ACT_TANH, 1, 1},
    {"conv 2x3 strides 2x1 sigmoid, no bias", K_CONV, 6, 5, 3, 2, 2, 3, 2, 1, TL_PAD_VALID, TL_ACT_SIGMOID, 0, 1},
    {"conv 1x1 relu", K_CONV, 4, 4, 3, 4, 1, 1, 1, 1, TL_PAD_VALID, TL_ACT_RELU, 1, 1},
    {"conv 3x3 same softmax", K_CONV, 5, 5, 2, 3, 3, 3, 1, 1, TL_PAD_SAME, TL_ACT_SOFTMAX, 1, 1},
    {"conv 4x4 same stride 3 relu", K_CONV, 7, 8, 2, 2, 4, 4, 3, 3, TL_PAD_SAME, TL_ACT_RELU, 1, 1},
    /* 16k filters at stride 1: the direct kernels where the CPU has AVX-512
     * (the input gradient through col2im when in_c is not a multiple of 16) */
    {"conv 16 filters same relu", K_CONV, 5, 5, 3, 16, 3, 3, 1, 1, TL_PAD_SAME, TL_ACT_RELU, 1, 1},
    {"conv 16 filters same relu, 2 threads", K_CONV, 5, 5, 3, 16, 3, 3, 1, 1, TL_PAD_SAME, TL_ACT_RELU, 1, 2},
    {"conv 16 channels valid tanh", K_CONV, 4, 4, 16, 16, 3, 3, 1, 1, TL_PAD_VALID, TL_ACT_TANH, 1, 1},
    {"conv 16 channels same linear, 2 threads", K_CONV, 4, 3, 16, 32, 2, 2, 1, 1, TL_PAD_SAME, TL_ACT_LINEAR, 0, 2},
    {"maxpool 3x3 stride 2 same", K_POOL, 5, 5, 2, 0, 3, 3, 2, 2, TL_PAD_SAME, TL_ACT_LINEAR, 0, 1},
    {"maxpool 2x2 valid, odd input", K_POOL, 5, 5, 3, 0, 2, 2, 2, 2, TL_PAD_VALID, TL_ACT_LINEAR, 0, 1},
    {"maxpool 2x2 same, odd input", K_POOL, 5, 7, 2, 0, 2, 2, 2, 2, TL_PAD_SAME, TL_ACT_LINEAR, 0, 1},
    {"maxpool 2x2 stride 1", K_POOL, 4, 4, 3, 0, 2, 2, 1, 1, TL_PAD_VALID, TL_ACT_LINEAR, 0, 1},
    {"maxpool 16 channels", K_POOL, 4, 4, 16, 0, 2, 2, 2, 2, TL_PAD_VALID, TL_ACT_LINEAR, 0, 2},
    {"avgpool 2x2 valid", K_AVG, 4, 4, 3, 0, 2, 2, 2, 2, TL_PAD_VALID, TL_ACT_LINEAR, 0, 1},
    {"avgpool 3x3 stride 2 same, real pixels", K_AVG, 5, 6, 2, 0, 3, 3, 2, 2, TL_PAD_SAME, TL_ACT_LINEAR, 0, 1},
    {"avgpool 3x3 stride 2 same, count_include_pad", K_AVG, 5, 6, 2, 0, 3, 3, 2, 2, TL_PAD_SAME, TL_ACT_LINEAR, 1, 1},
    {"avgpool 3x3 stride 1 same, 2 threads", K_AVG, 4, 4, 16, 0, 3, 3, 1, 1, TL_PAD_SAME, TL_ACT_LINEAR, 0, 2},
    {"global avgpool", K_GAP, 3, 4, 5, 0, 0, 0, 0, 0, TL_PAD_VALID, TL_ACT_LINEAR, 0, 1},
    {"global avgpool 16 channels, 2 threads", K_GAP, 4, 4, 16, 0, 0, 0, 0, 0, TL_PAD_VALID, TL_ACT_LINEAR, 0, 2},
    {"dense linear", K_DENSE, 1, 1, 6, 4, 0, 0, 0, 0, TL_PAD_VALID, TL_ACT_LINEAR, 1, 1},
    {"dense relu", K_DENSE, 1, 1, 6, 5, 0, 0, 0, 0, TL_PAD_VALID, TL_ACT_RELU, 1, 1},
    {"dense sigmoid, no bias", K_DENSE, 1, 1, 5, 4, 0, 0, 0, 0, TL_PAD_VALID, TL_ACT_SIGMOID, 0, 1},
    {"dense tanh", K_DENSE, 1, 1, 5, 4, 0, 0, 0, 0, TL_PAD_VALID, TL_ACT_TANH, 1, 1},
    {"dense softmax", K_DENSE, 1, 1, 5, 4, 0, 0, 0, 0, TL_PAD_VALID, TL_ACT_SOFTMAX, 1, 1},
    {"dense softmax, 2 threads", K_DENSE, 1, 1, 7, 6, 0, 0, 0, 0, TL_PAD_VALID, TL_ACT_SOFTMAX, 1, 2},
};
#define NLAYER_CASES ((int)(sizeof layer_cases / sizeof layer_cases[0]))

/* Convolution and pooling settings of 1.1: groups (GEMM per group, or the
 * depthwise kernels when groups == channels), dilation, explicit pads
 * (pad == TL_PAD_EXPLICIT). layer_gradients runs these after layer_cases. */
typedef struct setting_case {
    layer_case base;
    uint32_t groups, d_h, d_w; /* conv2d only; 0: 1 */
    uint32_t pt, pb, pl, pr;
} setting_case;

static const setting_case setting_cases[] = {
    {{"conv grouped 2, same relu", K_CONV, 5, 5, 4, 6, 3, 3, 1, 1, TL_PAD_SAME, TL_ACT_RELU, 1, 1}, 2, 1, 1, 0, 0, 0, 0},
    {{"conv grouped 3, stride 2 explicit, 2 threads", K_CONV, 6, 5, 6, 3, 3, 3, 2, 2, TL_PAD_EXPLICIT, TL_ACT_TANH, 1, 2},
     3, 1, 1, 1, 1, 1, 1},
    {{"conv grouped 1x1", K_CONV, 3, 4, 4, 4, 1, 1, 1, 1, TL_PAD_VALID, TL_ACT_LINEAR, 1, 1}, 2, 1, 1, 0, 0, 0, 0},
    {{"depthwise 3x3 same", K_CONV, 5, 5, 3, 3, 3, 3, 1, 1, TL_PAD_SAME, TL_ACT_LINEAR, 1, 1}, 3, 1, 1, 0, 0, 0, 0},
    {{"depthwise 3x3 stride 2 PyTorch padding, relu", K_CONV, 6, 6, 3, 3, 3, 3, 2, 2, TL_PAD_EXPLICIT, TL_ACT_RELU, 1, 1},
     3, 1, 1, 1, 1, 1, 1},
    {{"depthwise multiplier 2, stride 1", K_CONV, 5, 4, 2, 4, 3, 3, 1, 1, TL_PAD_SAME, TL_ACT_SIGMOID, 1, 1},
     2, 1, 1, 0, 0, 0, 0},
    {{"depthwise multiplier 2, stride 2, 2 threads", K_CONV, 6, 5, 3, 6, 3, 3, 2, 2, TL_PAD_SAME, TL_ACT_TANH, 0, 2},
     3, 1, 1, 0, 0, 0, 0},
    {{"depthwise dilated, lopsided pads", K_CONV, 6, 6, 2, 2, 3, 3, 1, 2, TL_PAD_EXPLICIT, TL_ACT_LINEAR, 1, 1},
     2, 2, 2, 2, 0, 1, 3},
    {{"conv dilated 2x3 valid", K_CONV, 7, 8, 2, 3, 3, 3, 1, 1, TL_PAD_VALID, TL_ACT_TANH, 1, 1}, 1, 2, 3, 0, 0, 0, 0},
    {{"conv dilated 2 same stride 2", K_CONV, 7, 6, 2, 3, 3, 3, 2, 2, TL_PAD_SAME, TL_ACT_LINEAR, 1, 1},
     1, 2, 2, 0, 0, 0, 0},
    {{"conv explicit 1,1,1,1 stride 2", K_CONV, 6, 6, 2, 3, 3, 3, 2, 2, TL_PAD_EXPLICIT, TL_ACT_LINEAR, 1, 1},
     1, 1, 1, 1, 1, 1, 1},
    {{"conv explicit lopsided, 16 filters, 2 threads", K_CONV, 5, 4, 16, 16, 3, 3, 1, 1, TL_PAD_EXPLICIT, TL_ACT_RELU,
      1, 2},
     1, 1, 1, 0, 2, 3, 1},
    {{"maxpool 3x3 stride 2 explicit 1", K_POOL, 6, 6, 2, 0, 3, 3, 2, 2, TL_PAD_EXPLICIT, TL_ACT_LINEAR, 0, 1},
     0, 0, 0, 1, 1, 1, 1},
    {{"avgpool 3x3 stride 2 explicit, count_include_pad", K_AVG, 5, 6, 2, 0, 3, 3, 2, 2, TL_PAD_EXPLICIT,
      TL_ACT_LINEAR, 1, 1},
     0, 0, 0, 1, 2, 0, 1},
    {{"avgpool 3x3 stride 2 explicit, real pixels", K_AVG, 5, 6, 2, 0, 3, 3, 2, 2, TL_PAD_EXPLICIT, TL_ACT_LINEAR, 0,
      1},
     0, 0, 0, 1, 1, 2, 1},
};
#define NSETTING_CASES ((int)(sizeof setting_cases / sizeof setting_cases[0]))
#define LBATCH 3

typedef struct layer_ctx {
    tl_layer *l;
    tli_exec ex;
    float *x;       /* LBATCH * in_size */
    const float *r; /* LBATCH * out_size */
} layer_ctx;

static double layer_objective(void *p)
{
    layer_ctx *c = p;
    const float *xs[1] = {c->x};
    c->l->ops->forward(c->l, &c->ex, xs, c->l->out, c->l->act);
    double s = 0.0;
    for (size_t i = 0; i < LBATCH * c->l->out_size; i++)
        s += (double)c->r[i] * c->l->out[i];
    return s;
}

/* Distinct values (-n/2 .. n/2) * 0.05 in a seeded random order. */
static void fill_distinct(float *v, size_t n, uint64_t seed)
{
    float *keys = malloc(n * sizeof *keys);
    th_fill_uniform(keys, n, 0.0f, 1.0f, seed);
    for (size_t i = 0; i < n; i++) {
        size_t rank = 0;
        for (size_t j = 0; j < n; j++)
            rank += keys[j] < keys[i] || (keys[j] == keys[i] && j < i);
        v[i] = ((float)rank - (float)n / 2.0f) * 0.05f;
    }
    free(keys);
}

/* Smallest |pre-activation| of the layer on x (ReLU only; inf otherwise). */
static double relu_margin(layer_ctx *c, float *tmp)
{
    if (c->l->act != TL_ACT_RELU)
        return INFINITY;
    const float *xs[1] = {c->x};
    c->l->ops->forward(c->l, &c->ex, xs, tmp, TL_ACT_LINEAR);
    double m = INFINITY;
    for (size_t i = 0; i < LBATCH * c->l->out_size; i++)
        m = fmin(m, fabs((double)tmp[i]));
    return m;
}

START_TEST(layer_gradients)
{
    static const setting_case no_settings = {{0}, 1, 1, 1, 0, 0, 0, 0};
    const setting_case *sx = _i < NLAYER_CASES ? &no_settings : &setting_cases[_i - NLAYER_CASES];
    const layer_case *lc = _i < NLAYER_CASES ? &layer_cases[_i] : &sx->base;
    tl_model *m;
    ck_assert_tl_ok(tl_model_create(&m, lc->h, lc->w, lc->c, 3));
    ck_assert_tl_ok(tl_model_set_threads(m, lc->threads));
    /* The layer under test goes second, so that the model allocates the
     * scratch an input gradient needs (the first layer never computes one). */
    if (lc->kind == K_DENSE) {
        ck_assert_tl_ok(tl_model_add_flatten(NULL, m, NULL));
        tl_dense_options d = TL_DENSE_OPTIONS_INIT;
        d.units = lc->units;
        d.activation = lc->act;
        d.use_bias = lc->bias;
        ck_assert_tl_ok(tl_model_add_dense(NULL, m, &d));
    } else {
        tl_conv2d_options pre = TL_CONV2D_OPTIONS_INIT;
        pre.filters = lc->c;
        pre.kernel_h = pre.kernel_w = 1;
        ck_assert_tl_ok(tl_model_add_conv2d(NULL, m, &pre));
        if (lc->kind == K_CONV) {
            tl_conv2d_options o = TL_CONV2D_OPTIONS_INIT;
            o.filters = lc->units;
            o.kernel_h = lc->k_h;
            o.kernel_w = lc->k_w;
            o.stride_h = lc->s_h;
            o.stride_w = lc->s_w;
            o.padding = lc->pad;
            o.activation = lc->act;
            o.use_bias = lc->bias;
            o.groups = sx->groups;
            o.dilation_h = sx->d_h;
            o.dilation_w = sx->d_w;
            o.pad_top = sx->pt, o.pad_bottom = sx->pb, o.pad_left = sx->pl, o.pad_right = sx->pr;
            ck_assert_tl_ok(tl_model_add_conv2d(NULL, m, &o));
        } else if (lc->kind == K_AVG) {
            tl_avgpool2d_options o = TL_AVGPOOL2D_OPTIONS_INIT;
            o.pool_h = lc->k_h;
            o.pool_w = lc->k_w;
            o.stride_h = lc->s_h;
            o.stride_w = lc->s_w;
            o.padding = lc->pad;
            o.count_include_pad = lc->bias;
            o.pad_top = sx->pt, o.pad_bottom = sx->pb, o.pad_left = sx->pl, o.pad_right = sx->pr;
            ck_assert_tl_ok(tl_model_add_avgpool2d(NULL, m, &o));
        } else if (lc->kind == K_GAP) {
            ck_assert_tl_ok(tl_model_add_global_avgpool2d(NULL, m, NULL, NULL));
        } else {
            tl_maxpool2d_options o = TL_MAXPOOL2D_OPTIONS_INIT;
            o.pool_h = lc->k_h;
            o.pool_w = lc->k_w;
            o.stride_h = lc->s_h;
            o.stride_w = lc->s_w;
            o.padding = lc->pad;
            o.pad_top = sx->pt, o.pad_bottom = sx->pb, o.pad_left = sx->pl, o.pad_right = sx->pr;
            ck_assert_tl_ok(tl_model_add_maxpool2d(NULL, m, &o));
        }
    }
    tl_layer *l = m->layers[1];
    ck_assert_tl_ok(tli_workspace_ensure(m, LBATCH, true));
    const size_t in = LBATCH * l->in_size, out = LBATCH * l->out_size;
    float *x = malloc(in * sizeof *x), *r = malloc(out * sizeof *r), *dy = malloc(out * sizeof *dy);
    float *dx = malloc(in * sizeof *dx), *tmp = malloc(out * sizeof *tmp);
    layer_ctx c = {l, tli_exec_for(m, LBATCH, true), x, r};
    /* Parameters and inputs; for ReLU, search seeds for a margin. */
    uint64_t seed = 100;
    for (;; seed++) {
        ck_assert_msg(seed < 300, "%s: no seed keeps the ReLU inputs away from 0", lc->what);
        for (size_t p = 0; p < l->nparams; p++)
            th_fill_uniform(l->params[p].value, l->params[p].count, -0.5f, 0.5f, seed * 7 + p);
        if (lc->kind == K_POOL)
            fill_distinct(x, in, seed);
        else
            th_fill_uniform(x, in, -1.0f, 1.0f, seed * 13);
        if (relu_margin(&c, tmp) > LAYER_MARGIN)
            break;
    }
    th_fill_uniform(r, out, -1.0f, 1.0f, 5);

    /* Analytical: forward, then backward from dL/dy = r. */
    layer_objective(&c);
    memcpy(dy, r, out * sizeof *dy);
    for (size_t i = 0; i < in; i++)
        dx[i] = NAN;
    const float *xs[1] = {x};
    float *dxs[1] = {dx};
    l->ops->backward(l, &c.ex, xs, l->out, dy, dxs, l->act, true);

    /* The numerical side runs on one thread: only the analytical side is
     * about the thread count, and many tiny parallel regions are slow. */
    c.ex.threads = 1;
    char what[160];
    double *num = malloc(in * sizeof *num);
    for (size_t p = 0; p < l->nparams; p++) {
        tli_param *pr = &l->params[p];
        float *a = malloc(pr->count * sizeof *a);
        memcpy(a, pr->grad, pr->count * sizeof *a);
        double *pn = malloc(pr->count * sizeof *pn);
        for (size_t j = 0; j < pr->count; j++)
            pn[j] = th_central(&pr->value[j], layer_objective, &c);
        snprintf(what, sizeof what, "%s: %s", lc->what, pr->name);
        th_check_grad(a, pn, pr->count, what);
        free(a);
        free(pn);
    }
    for (size_t j = 0; j < in; j++)
        num[j] = th_central(&x[j], layer_objective, &c);
    snprintf(what, sizeof what, "%s: input", lc->what);
    th_check_grad(dx, num, in, what);
    free(num), free(x), free(r), free(dy), free(dx), free(tmp);
    tl_model_free(m);
}
END_TEST

/* ---- model level -------------------------------------------------------------- */

/* NET_RES: a residual block (the add takes the block's input and the
 * second conv), average pooling and global average pooling.
 * NET_BRANCH: a max-pool whose input feeds two layers (so it cannot fold
 * that ReLU), two branches joined by a concatenate that takes one of them
 * twice, and a flatten. */
typedef enum { NET_CNN, NET_MLP, NET_RES, NET_BRANCH } net_kind;

typedef struct model_case {
    const char *what;
    net_kind net;
    tl_loss loss;
    tl_activation out_act;
    bool soft_targets;    /* CE / MSE: float targets instead of labels */
    int frozen;           /* index of a frozen layer, or -1 */
    uint32_t threads;
} model_case;

static const model_case model_cases[] = {
    {"CNN, sparse CE after softmax", NET_CNN, TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY, TL_ACT_SOFTMAX, false, -1, 1},
    {"CNN, sparse CE on logits", NET_CNN, TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY, TL_ACT_LINEAR, false, -1, 1},
    {"CNN, CE with soft targets", NET_CNN, TL_LOSS_CATEGORICAL_CROSSENTROPY, TL_ACT_SOFTMAX, true, -1, 1},
    {"CNN, CE with one-hot labels", NET_CNN, TL_LOSS_CATEGORICAL_CROSSENTROPY, TL_ACT_LINEAR, false, -1, 1},
    {"CNN, MSE after softmax", NET_CNN, TL_LOSS_MEAN_SQUARED_ERROR, TL_ACT_SOFTMAX, true, -1, 1},
    {"CNN, MSE after sigmoid", NET_CNN, TL_LOSS_MEAN_SQUARED_ERROR, TL_ACT_SIGMOID, true, -1, 1},
    {"CNN, sparse CE, middle conv frozen", NET_CNN, TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY, TL_ACT_SOFTMAX, false, 2, 1},
    {"CNN, sparse CE, first conv frozen", NET_CNN, TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY, TL_ACT_SOFTMAX, false, 0, 1},
    {"CNN, sparse CE, 2 threads", NET_CNN, TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY, TL_ACT_SOFTMAX, false, -1, 2},
    {"ResNet block, sparse CE", NET_RES, TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY, TL_ACT_SOFTMAX, false, -1, 1},
    {"ResNet block, sparse CE, 2 threads", NET_RES, TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY, TL_ACT_SOFTMAX, false, -1, 2},
    {"ResNet block, stem frozen", NET_RES, TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY, TL_ACT_SOFTMAX, false, 0, 1},
    {"ResNet block, MSE, inner conv frozen", NET_RES, TL_LOSS_MEAN_SQUARED_ERROR, TL_ACT_SIGMOID, true, 1, 1},
    {"branches and concatenate, sparse CE", NET_BRANCH, TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY, TL_ACT_LINEAR, false, -1, 1},
    {"branches and concatenate, 2 threads", NET_BRANCH, TL_LOSS_CATEGORICAL_CROSSENTROPY, TL_ACT_SOFTMAX, true, -1, 2},
    {"MLP, MSE on linear outputs", NET_MLP, TL_LOSS_MEAN_SQUARED_ERROR, TL_ACT_LINEAR, true, -1, 1},
    {"MLP, MSE with one-hot labels after tanh", NET_MLP, TL_LOSS_MEAN_SQUARED_ERROR, TL_ACT_TANH, false, -1, 1},
    {"MLP, CE with soft targets", NET_MLP, TL_LOSS_CATEGORICAL_CROSSENTROPY, TL_ACT_SOFTMAX, true, -1, 1},
};
#define NMODEL_CASES ((int)(sizeof model_cases / sizeof model_cases[0]))
#define MBATCH 3
#define CLASSES 3

typedef struct model_ctx {
    tl_model *m;
    const float *x;
    const int32_t *labels;
    const float *targets;
} model_ctx;

/* Mean loss of the batch, as training computes it (on one thread: only
 * the analytical side is about the thread count). */
static double model_objective(void *p)
{
    model_ctx *c = p;
    const bool logits = tli_loss_takes_logits(c->m);
    tli_exec ex = tli_exec_for(c->m, MBATCH, true);
    ex.threads = 1;
    const float *y = tli_forward(c->m, &ex, c->x, logits);
    tli_loss_result r;
    size_t bad;
    const size_t w = tli_model_out_size(c->m);
    bool ok = logits ? tli_softmax_xent(y, MBATCH, w, c->labels, c->targets, NULL, &r, &bad)
                     : tli_mse(y, MBATCH, w, c->labels, c->targets, NULL, &r, &bad);
    ck_assert(ok);
    return r.loss_sum / MBATCH;
}

/* Forward, loss gradient into ws.grad[0], backward (what a training step
 * does before the update). */
static void model_backward(model_ctx *c)
{
    const bool logits = tli_loss_takes_logits(c->m);
    tli_exec ex = tli_exec_for(c->m, MBATCH, true);
    const float *y = tli_forward(c->m, &ex, c->x, logits);
    tli_loss_result r;
    size_t bad;
    const size_t w = tli_model_out_size(c->m);
    bool ok = logits ? tli_softmax_xent(y, MBATCH, w, c->labels, c->targets, tli_output_grad(c->m), &r, &bad)
                     : tli_mse(y, MBATCH, w, c->labels, c->targets, tli_output_grad(c->m), &r, &bad);
    ck_assert(ok);
    tli_backward(c->m, &ex, c->x, logits);
}

/* Smallest ReLU |pre-activation| and max-pool gap between a window's two
 * largest values, over the whole model on c->x. */
static double model_margin(model_ctx *c)
{
    tl_model *m = c->m;
    tli_exec ex = tli_exec_for(m, MBATCH, true);
    tli_forward(m, &ex, c->x, tli_loss_takes_logits(m));
    double margin = INFINITY;
    for (size_t i = 0; i < m->nlayers; i++) {
        tl_layer *l = m->layers[i];
        const float *in = l->inputs[0] == TLI_INPUT_MODEL ? c->x : m->layers[l->inputs[0]]->out;
        if (l->act == TL_ACT_RELU) {
            float *z = malloc(MBATCH * l->out_size * sizeof *z);
            const float *xs[1] = {in};
            l->ops->forward(l, &ex, xs, z, TL_ACT_LINEAR);
            for (size_t j = 0; j < MBATCH * l->out_size; j++)
                margin = fmin(margin, fabs((double)z[j]));
            free(z);
        }
        if (l->ops->kind == TL_LAYER_MAXPOOL2D) {
            const tli_pool_geom *g = (const tli_pool_geom *)l->geom;
            for (size_t n = 0; n < MBATCH; n++)
                for (uint32_t oh = 0; oh < g->out_h; oh++)
                    for (uint32_t ow = 0; ow < g->out_w; ow++)
                        for (uint32_t ch = 0; ch < g->c; ch++) {
                            double top = -INFINITY, second = -INFINITY;
                            for (uint32_t ph = 0; ph < g->p_h; ph++)
                                for (uint32_t pw = 0; pw < g->p_w; pw++) {
                                    long ih = (long)oh * g->s_h - g->pad_t + ph;
                                    long iw = (long)ow * g->s_w - g->pad_l + pw;
                                    if (ih < 0 || ih >= (long)g->in_h || iw < 0 || iw >= (long)g->in_w)
                                        continue;
                                    double v = in[n * l->in_size + ((size_t)ih * g->in_w + (size_t)iw) * g->c + ch];
                                    if (v > top) {
                                        second = top;
                                        top = v;
                                    } else if (v > second) {
                                        second = v;
                                    }
                                }
                            margin = fmin(margin, top - second);
                        }
        }
    }
    return margin;
}

static tl_model *build_net(const model_case *mc)
{
    tl_model *m;
    tl_conv2d_options conv = TL_CONV2D_OPTIONS_INIT;
    tl_dense_options dense = TL_DENSE_OPTIONS_INIT;
    if (mc->net == NET_CNN) {
        /* conv(4, 3x3, relu) -> maxpool 2 -> conv(3, 2x2, same, tanh) ->
         * flatten -> dense(3) on 6x6x2. */
        ck_assert_tl_ok(tl_model_create(&m, 6, 6, 2, 11));
        conv.filters = 4;
        conv.activation = TL_ACT_RELU;
        ck_assert_tl_ok(tl_model_add_conv2d(NULL, m, &conv));
        tl_maxpool2d_options pool = TL_MAXPOOL2D_OPTIONS_INIT;
        ck_assert_tl_ok(tl_model_add_maxpool2d(NULL, m, &pool));
        conv.filters = 3;
        conv.kernel_h = conv.kernel_w = 2;
        conv.padding = TL_PAD_SAME;
        conv.activation = TL_ACT_TANH;
        ck_assert_tl_ok(tl_model_add_conv2d(NULL, m, &conv));
        ck_assert_tl_ok(tl_model_add_flatten(NULL, m, NULL));
    } else if (mc->net == NET_RES) {
        /* stem conv(3, relu) -> conv(3, tanh) -> conv(3) -> add(., stem) ->
         * avgpool 2 same -> conv(3, 2x2, tanh) -> global avgpool -> dense(3)
         * on 3x5x2 (few ReLU inputs, so that a seed keeps them all away
         * from the kink). */
        ck_assert_tl_ok(tl_model_create(&m, 3, 5, 2, 13));
        tl_layer *stem, *b;
        conv.filters = 3;
        conv.padding = TL_PAD_SAME;
        conv.activation = TL_ACT_RELU;
        ck_assert_tl_ok(tl_model_add_conv2d(&stem, m, &conv));
        conv.activation = TL_ACT_TANH;
        ck_assert_tl_ok(tl_model_add_conv2d(NULL, m, &conv));
        conv.activation = TL_ACT_LINEAR;
        ck_assert_tl_ok(tl_model_add_conv2d(&b, m, &conv));
        const tl_layer *both[2] = {b, stem};
        ck_assert_tl_ok(tl_model_add_add(NULL, m, both, 2, NULL));
        tl_avgpool2d_options avg = TL_AVGPOOL2D_OPTIONS_INIT;
        avg.padding = TL_PAD_SAME;
        ck_assert_tl_ok(tl_model_add_avgpool2d(NULL, m, &avg));
        conv.filters = 3;
        conv.kernel_h = conv.kernel_w = 2;
        conv.activation = TL_ACT_TANH;
        ck_assert_tl_ok(tl_model_add_conv2d(NULL, m, &conv));
        ck_assert_tl_ok(tl_model_add_global_avgpool2d(NULL, m, NULL, NULL));
    } else if (mc->net == NET_BRANCH) {
        /* conv(3, relu) -> maxpool -> {conv a(2, 1x1, sigmoid), conv b(3,
         * relu, same)} -> concatenate(a, b, a) -> flatten -> dense(3); the
         * conv's output also feeds a 1x1 conv c whose global average joins
         * through a second flatten... kept simple: c -> avgpool -> flatten
         * -> concatenated with the first flatten. On 6x6x2. */
        ck_assert_tl_ok(tl_model_create(&m, 6, 6, 2, 14));
        tl_layer *c0, *pool, *a, *bb, *cat, *f1, *c2, *f2;
        conv.filters = 3;
        conv.activation = TL_ACT_RELU;
        ck_assert_tl_ok(tl_model_add_conv2d(&c0, m, &conv));
        tl_maxpool2d_options mp = TL_MAXPOOL2D_OPTIONS_INIT;
        ck_assert_tl_ok(tl_model_add_maxpool2d(&pool, m, &mp));
        conv.filters = 2;
        conv.kernel_h = conv.kernel_w = 1;
        conv.activation = TL_ACT_SIGMOID;
        ck_assert_tl_ok(tl_model_add_conv2d(&a, m, &conv));
        conv.filters = 3;
        conv.kernel_h = conv.kernel_w = 3;
        conv.padding = TL_PAD_SAME;
        conv.activation = TL_ACT_RELU;
        conv.input = pool;
        ck_assert_tl_ok(tl_model_add_conv2d(&bb, m, &conv));
        const tl_layer *three[3] = {a, bb, a};
        ck_assert_tl_ok(tl_model_add_concatenate(&cat, m, three, 3, NULL));
        ck_assert_tl_ok(tl_model_add_flatten(&f1, m, NULL));
        /* A second use of the first conv's output: a max-pool cannot fold
         * its ReLU now. */
        conv.filters = 2;
        conv.kernel_h = conv.kernel_w = 2;
        conv.padding = TL_PAD_VALID;
        conv.activation = TL_ACT_TANH;
        conv.input = c0;
        ck_assert_tl_ok(tl_model_add_conv2d(&c2, m, &conv));
        ck_assert_tl_ok(tl_model_add_flatten_from(&f2, m, c2, NULL));
        const tl_layer *flat[2] = {f1, f2};
        ck_assert_tl_ok(tl_model_add_concatenate(NULL, m, flat, 2, NULL));
        dense.input = NULL;
    } else {
        /* flatten -> dense(5, sigmoid) -> dense(4, relu) -> dense(3) on 2x2x2 */
        ck_assert_tl_ok(tl_model_create(&m, 2, 2, 2, 12));
        ck_assert_tl_ok(tl_model_add_flatten(NULL, m, NULL));
        dense.units = 5;
        dense.activation = TL_ACT_SIGMOID;
        ck_assert_tl_ok(tl_model_add_dense(NULL, m, &dense));
        dense.units = 4;
        dense.activation = TL_ACT_RELU;
        ck_assert_tl_ok(tl_model_add_dense(NULL, m, &dense));
    }
    dense.units = CLASSES;
    dense.activation = mc->out_act;
    ck_assert_tl_ok(tl_model_add_dense(NULL, m, &dense));
    ck_assert_tl_ok(tl_model_set_threads(m, mc->threads));
    tl_optimizer *sgd;
    ck_assert_tl_ok(tl_optimizer_create_sgd(&sgd, NULL));
    ck_assert_tl_ok(tl_model_compile(m, sgd, mc->loss));
    if (mc->frozen >= 0)
        ck_assert_tl_ok(tl_layer_set_trainable(m->layers[mc->frozen], 0));
    return m;
}

START_TEST(model_gradients)
{
    const model_case *mc = &model_cases[_i];
    tl_model *m = build_net(mc);
    ck_assert_tl_ok(tli_workspace_ensure(m, MBATCH, true));
    float *x = malloc(MBATCH * m->in_size * sizeof *x);
    float targets[MBATCH * CLASSES];
    const int32_t labels[MBATCH] = {2, 0, 1};
    /* Soft targets; the last row does not sum to 1 (allowed for CE). */
    const float soft[MBATCH * CLASSES] = {0.7f, 0.2f, 0.1f, 0.0f, 0.5f, 0.5f, 0.3f, 0.9f, 0.2f};
    memcpy(targets, soft, sizeof targets);
    model_ctx c = {m, x, mc->soft_targets ? NULL : labels, mc->soft_targets ? targets : NULL};
    uint64_t seed = 1;
    for (;; seed++) {
        ck_assert_msg(seed < 500, "%s: no seed keeps ReLU inputs and max-pool gaps over %g", mc->what, MODEL_MARGIN);
        th_fill_uniform(x, MBATCH * m->in_size, -1.0f, 1.0f, seed);
        /* Non-zero biases, so that their gradients pass through ReLU too. */
        for (size_t i = 0; i < m->nlayers; i++)
            if (m->layers[i]->nparams == 2)
                th_fill_uniform(m->layers[i]->params[1].value, m->layers[i]->params[1].count, -0.1f, 0.1f,
                                seed * 31 + i);
        if (model_margin(&c) > MODEL_MARGIN)
            break;
    }
    /* A frozen layer's gradient buffer must stay untouched. */
    for (size_t i = 0; i < m->nlayers; i++)
        for (size_t p = 0; p < m->layers[i]->nparams; p++)
            for (size_t j = 0; j < m->layers[i]->params[p].count; j++)
                m->layers[i]->params[p].grad[j] = NAN;
    model_backward(&c);

    char what[200];
    size_t checked = 0;
    for (size_t i = 0; i < m->nlayers; i++) {
        tl_layer *l = m->layers[i];
        for (size_t p = 0; p < l->nparams; p++) {
            tli_param *pr = &l->params[p];
            if (!l->trainable) {
                for (size_t j = 0; j < pr->count; j++)
                    ck_assert_msg(isnan(pr->grad[j]), "%s: frozen layer '%s' got a gradient", mc->what, l->name);
                continue;
            }
            float *a = malloc(pr->count * sizeof *a);
            memcpy(a, pr->grad, pr->count * sizeof *a);
            double *num = malloc(pr->count * sizeof *num);
            for (size_t j = 0; j < pr->count; j++)
                num[j] = th_central(&pr->value[j], model_objective, &c);
            snprintf(what, sizeof what, "%s: layer '%s' %s", mc->what, l->name, pr->name);
            th_check_grad(a, num, pr->count, what);
            checked++;
            free(a);
            free(num);
        }
    }
    ck_assert_uint_ge(checked, 2);
    free(x);
    tl_model_free(m);
}
END_TEST

/* ---- the loss kernels ------------------------------------------------------------ */

typedef struct loss_ctx {
    float *z;
    const int32_t *labels;
    const float *t;
    int which; /* 0: softmax cross-entropy, 1: mean squared error */
} loss_ctx;

static double loss_objective(void *p)
{
    loss_ctx *c = p;
    tli_loss_result r;
    size_t bad;
    if (c->which == 0)
        ck_assert(tli_softmax_xent(c->z, 4, 5, c->labels, c->t, NULL, &r, &bad));
    else
        ck_assert(tli_mse(c->z, 4, 5, c->labels, c->t, NULL, &r, &bad));
    return r.loss_sum / 4.0;
}

START_TEST(loss_gradients)
{
    float z[20], dz[20], t[20];
    const int32_t labels[4] = {4, 0, 2, 2};
    th_fill_uniform(z, 20, -3.0f, 3.0f, 9);
    th_fill_uniform(t, 20, 0.0f, 1.0f, 10); /* rows do not sum to 1 */
    static const char *names[4] = {"sparse cross-entropy", "soft cross-entropy", "MSE on labels", "MSE on targets"};
    for (int k = 0; k < 4; k++) {
        loss_ctx c = {z, (k % 2) ? NULL : labels, (k % 2) ? t : NULL, k / 2};
        tli_loss_result r;
        size_t bad;
        if (c.which == 0)
            ck_assert(tli_softmax_xent(z, 4, 5, c.labels, c.t, dz, &r, &bad));
        else
            ck_assert(tli_mse(z, 4, 5, c.labels, c.t, dz, &r, &bad));
        double num[20];
        for (int i = 0; i < 20; i++)
            num[i] = th_central(&z[i], loss_objective, &c);
        th_check_grad(dz, num, 20, names[k]);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("gradients");
    TCase *tc = tcase_create("gradients");
    tcase_add_loop_test(tc, layer_gradients, 0, NLAYER_CASES + NSETTING_CASES);
    tcase_add_loop_test(tc, model_gradients, 0, NMODEL_CASES);
    tcase_add_test(tc, loss_gradients);
    suite_add_tcase(s, tc);
    return th_run(s);
}
