/* test_batchnorm.c - batch normalization (TL_LAYER_BATCHNORM).
 *
 *  - Forward by hand in training mode (batch statistics, biased variance)
 *    and inference mode (moving statistics, left alone); the moving
 *    statistics after one training pass and one tl_model_train_step
 *    (momentum, unbiased variance; the biased one for a single value).
 *  - Gradients against central differences: gamma, beta and the input in
 *    training mode (through the batch statistics), with and without
 *    center and scale, on (h, w, c) and flat inputs, 1 and 2 threads; the
 *    input in inference mode (a frozen layer), which writes no parameter
 *    gradient; and through the engine, every parameter of a conv ->
 *    batchnorm -> conv -> pooling -> dense network with the loss, the
 *    batchnorm trainable or frozen.
 *  - A frozen layer: its four tensors are bit-identical after tl_model_fit,
 *    its output in a training pass equals inference mode, and layers below
 *    it still learn through it.
 *  - 1, 2 and 3 threads give the same bits (kernels and layer); the
 *    AVX-512 and portable builds of the loops too (odd channel counts,
 *    rows off the chunks, fused ReLU / ReLU6); the fused activation
 *    backward equals the activation's pass then batchnorm's (and add's);
 *    one-pass statistics against a two-pass reference at mean 1000.
 *  - Settings: defaults, names, tensors, bad epsilon and momentum.
 *  - Two conv(no bias) -> batchnorm -> conv(relu) blocks, global average
 *    pooling and dense(softmax) learn the spot task (1 and 2 threads) and
 *    come back from a checkpoint with the same loss; checkpoint (format 1.1) and
 *    safetensors (Keras and PyTorch names) round trips, resumed training
 *    bit for bit, the extractor.
 *
 * The "learning" test case takes most of the time; leave it out with
 * CK_EXCLUDE_TAGS=learning. */
#include <errno.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "helpers.h"
#include "train.h"

/* ---- helpers -------------------------------------------------------------------- */

static tl_layer *layer_at(const tl_model *m, size_t i)
{
    tl_layer *l = NULL;
    ck_assert_tl_ok(tl_model_layer(&l, m, i));
    return l;
}

/* Every tensor of both models bit-identical (parameters and state). */
static bool same_params(const tl_model *a, const tl_model *b)
{
    size_t na, nb;
    float *pa = th_all_params(a, &na), *pb = th_all_params(b, &nb);
    bool same = pa && pb && na == nb && memcmp(pa, pb, na * sizeof *pa) == 0;
    free(pa);
    free(pb);
    return same;
}

static bool same_tensor(const tl_layer *a, size_t pa, const tl_layer *b, size_t pb)
{
    const tli_param *x = &a->params[pa], *y = &b->params[pb];
    return x->count == y->count && memcmp(x->value, y->value, x->count * sizeof(float)) == 0;
}

/* A model whose first layer is batch normalization with options `o` on
 * h x w x c inputs. */
static tl_model *bn_model(uint32_t h, uint32_t w, uint32_t c, const tl_batchnorm_options *o, uint32_t threads)
{
    tl_model *m;
    ck_assert_tl_ok(tl_model_create(&m, h, w, c, 1));
    ck_assert_tl_ok(tl_model_set_threads(m, threads));
    ck_assert_tl_ok(tl_model_add_batchnorm(NULL, m, o));
    return m;
}

static void assert_floats(const float *got, const double *want, size_t n, double tol, const char *what)
{
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(fabs((double)got[i] - want[i]) <= tol, "%s[%zu] = %.9g, expected %.9g", what, i,
                      (double)got[i], want[i]);
}

/* ---- 1. forward by hand ----------------------------------------------------------- */

/* Two examples of 1 x 2 x 2 (h, w, c), NHWC:
 *   example 0: (1, -4) (3, 4)      example 1: (5, 4) (7, 12)
 * channel 0 over the 4 positions: 1, 3, 5, 7    mean 4, biased var 5, unbiased 20/3
 * channel 1:                      -4, 4, 4, 12  mean 4, biased var 32, unbiased 128/3
 * With epsilon 4: sqrt(var + eps) = 3 and 6, so x-hat is
 *   channel 0: -1, -1/3, 1/3, 1        channel 1: -4/3, 0, 0, 4/3
 * and with gamma (2, -1), beta (0.5, 1): y = gamma * x-hat + beta
 *   channel 0: -1.5, -1/6, 7/6, 2.5    channel 1: 7/3, 1, 1, -1/3.
 * Momentum 0.9 from the initial moving statistics (0, 1):
 *   moving_mean = 0.9 * 0 + 0.1 * 4 = 0.4 for both channels
 *   moving_variance = 0.9 * 1 + 0.1 * 20/3 = 1.5666667 and 0.9 + 0.1 * 128/3 = 5.1666667. */
static const float hand_x[8] = {1, -4, 3, 4, 5, 4, 7, 12};
static const float hand_gamma[2] = {2, -1}, hand_beta[2] = {0.5f, 1};

static tl_model *hand_model(void)
{
    tl_batchnorm_options o = TL_BATCHNORM_OPTIONS_INIT;
    o.epsilon = 4.0f;
    o.momentum = 0.9f;
    o.name = "bn";
    tl_model *m = bn_model(1, 2, 2, &o, 1);
    tl_layer *l = layer_at(m, 0);
    ck_assert_tl_ok(tl_layer_set_weights(l, 0, hand_gamma, 2));
    ck_assert_tl_ok(tl_layer_set_weights(l, 1, hand_beta, 2));
    return m;
}

START_TEST(forward_training_by_hand)
{
    tl_model *m = hand_model();
    tl_layer *l = layer_at(m, 0);
    ck_assert_tl_ok(tli_workspace_ensure(m, 2, true));
    tli_exec ex = tli_exec_for(m, 2, true);
    const float *y = tli_forward(m, &ex, hand_x, false);
    const double want[8] = {-1.5, 7.0 / 3, -1.0 / 6, 1, 7.0 / 6, 1, 2.5, -1.0 / 3};
    assert_floats(y, want, 8, 1e-6, "training y");
    const double mean[2] = {0.4, 0.4}, var[2] = {0.9 + 0.1 * 20.0 / 3, 0.9 + 0.1 * 128.0 / 3};
    assert_floats(l->params[2].value, mean, 2, 1e-7, "moving_mean");
    assert_floats(l->params[3].value, var, 2, 1e-6, "moving_variance");
    /* A second pass moves them again: 0.9 * 0.4 + 0.1 * 4 = 0.76. */
    tli_forward(m, &ex, hand_x, false);
    const double mean2[2] = {0.76, 0.76};
    const double var2[2] = {0.9 * var[0] + 0.1 * 20.0 / 3, 0.9 * var[1] + 0.1 * 128.0 / 3};
    assert_floats(l->params[2].value, mean2, 2, 1e-6, "moving_mean after two passes");
    assert_floats(l->params[3].value, var2, 2, 1e-5, "moving_variance after two passes");
    tl_model_free(m);

    /* One value per channel (a flat input, batch 1): the variance is 0 and
     * stays biased (no n / (n - 1)); y = beta. Defaults: center and scale,
     * gamma 1, beta 0. */
    tl_batchnorm_options o = TL_BATCHNORM_OPTIONS_INIT;
    o.momentum = 0.9f;
    ck_assert_tl_ok(tl_model_create(&m, 1, 1, 2, 1));
    ck_assert_tl_ok(tl_model_add_flatten(NULL, m, NULL));
    ck_assert_tl_ok(tl_model_add_batchnorm(NULL, m, &o));
    l = layer_at(m, 1);
    ck_assert_tl_ok(tli_workspace_ensure(m, 1, true));
    ex = tli_exec_for(m, 1, true);
    const float one[2] = {3, -2};
    y = tli_forward(m, &ex, one, false);
    const double zeros[2] = {0, 0}, mm[2] = {0.3, -0.2}, mv[2] = {0.9, 0.9};
    assert_floats(y, zeros, 2, 0, "y of a single example");
    assert_floats(l->params[2].value, mm, 2, 1e-7, "moving_mean of a single example");
    assert_floats(l->params[3].value, mv, 2, 1e-7, "moving_variance of a single example");
    tl_model_free(m);
}
END_TEST

START_TEST(forward_inference_by_hand)
{
    /* Moving mean (1, -1), moving variance (5, 0), epsilon 4: the standard
     * deviations are 3 and 2, so y = gamma * (x - mean) / std + beta:
     *   channel 0: 2 * (x - 1) / 3 + 0.5 at 1, 3, 5, 7: 0.5, 11/6, 19/6, 4.5
     *   channel 1: -(x + 1) / 2 + 1 at -4, 4, 4, 12:    2.5, -1.5, -1.5, -5.5 */
    tl_model *m = hand_model();
    tl_layer *l = layer_at(m, 0);
    const float mm[2] = {1, -1}, mv[2] = {5, 0};
    ck_assert_tl_ok(tl_layer_set_weights(l, 2, mm, 2));
    ck_assert_tl_ok(tl_layer_set_weights(l, 3, mv, 2));
    float y[8];
    ck_assert_tl_ok(tl_model_predict(y, 8, m, hand_x, 2, 0));
    const double want[8] = {0.5, 2.5, 11.0 / 6, -1.5, 19.0 / 6, -1.5, 4.5, -5.5};
    assert_floats(y, want, 8, 1e-6, "inference y");
    /* The statistics are untouched, bit for bit. */
    ck_assert(memcmp(l->params[2].value, mm, sizeof mm) == 0);
    ck_assert(memcmp(l->params[3].value, mv, sizeof mv) == 0);

    /* A frozen layer in a training pass: inference mode, same bits, the
     * statistics untouched. */
    ck_assert_tl_ok(tl_layer_set_trainable(l, 0));
    ck_assert_tl_ok(tli_workspace_ensure(m, 2, true));
    tli_exec ex = tli_exec_for(m, 2, true);
    const float *yt = tli_forward(m, &ex, hand_x, false);
    ck_assert(memcmp(yt, y, sizeof y) == 0);
    ck_assert(memcmp(l->params[2].value, mm, sizeof mm) == 0);
    ck_assert(memcmp(l->params[3].value, mv, sizeof mv) == 0);
    tl_model_free(m);
}
END_TEST

START_TEST(moving_statistics_after_a_train_step)
{
    /* hand_model -> flatten -> dense(2, softmax), one SGD step on the two
     * examples: the moving statistics are those of the comment above
     * forward_training_by_hand; gamma and beta have learned. */
    tl_model *m = hand_model();
    tl_layer *l = layer_at(m, 0);
    ck_assert_tl_ok(tl_model_add_flatten(NULL, m, NULL));
    tl_dense_options d = TL_DENSE_OPTIONS_INIT;
    d.units = 2;
    d.activation = TL_ACT_SOFTMAX;
    ck_assert_tl_ok(tl_model_add_dense(NULL, m, &d));
    tl_optimizer *sgd;
    tl_sgd_options so = TL_SGD_OPTIONS_INIT;
    so.learning_rate = 0.5f;
    ck_assert_tl_ok(tl_optimizer_create_sgd(&sgd, &so));
    ck_assert_tl_ok(tl_model_compile(m, sgd, TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY));
    /* 4 BN tensors of 2, of which gamma and beta are trainable. */
    ck_assert_uint_eq(tl_layer_num_params(l), 4);
    ck_assert_uint_eq(tl_model_param_count(m), 8 + 4 * 2 + 2);
    ck_assert_uint_eq(tl_model_trainable_param_count(m), 4 + 4 * 2 + 2);
    const int32_t labels[2] = {0, 1};
    double loss;
    ck_assert_tl_ok(tl_model_train_step(&loss, m, hand_x, labels, NULL, 2));
    const double mean[2] = {0.4, 0.4}, var[2] = {0.9 + 0.1 * 20.0 / 3, 0.9 + 0.1 * 128.0 / 3};
    float got[2];
    ck_assert_tl_ok(tl_layer_get_weights(got, 2, l, 2));
    assert_floats(got, mean, 2, 1e-7, "moving_mean");
    ck_assert_tl_ok(tl_layer_get_weights(got, 2, l, 3));
    assert_floats(got, var, 2, 1e-6, "moving_variance");
    ck_assert_tl_ok(tl_layer_get_weights(got, 2, l, 0));
    ck_assert(got[0] != hand_gamma[0] && got[1] != hand_gamma[1]);
    ck_assert_tl_ok(tl_layer_get_weights(got, 2, l, 1));
    ck_assert(got[0] != hand_beta[0] && got[1] != hand_beta[1]);
    /* Optimizer state only for gamma and beta (and the dense layer). */
    ck_assert_ptr_null(l->params[2].state[0]);
    ck_assert_ptr_null(l->params[3].state[0]);
    tl_model_free(m);
}
END_TEST

/* ---- 2. gradients against central differences ------------------------------------ */

#define EPS TH_GRAD_EPS

typedef struct grad_case {
    const char *what;
    uint32_t h, w, c; /* h = 0: a flat input of c units */
    int center, scale;
    bool frozen;
    uint32_t threads;
} grad_case;

static const grad_case grad_cases[] = {
    {"2x3x4, training", 2, 3, 4, 1, 1, false, 1},
    {"2x3x4, training, 2 threads", 2, 3, 4, 1, 1, false, 2},
    {"flat 5, training", 0, 0, 5, 1, 1, false, 1},
    {"3x2x3, training, no center", 3, 2, 3, 0, 1, false, 1},
    {"3x2x3, training, no scale", 3, 2, 3, 1, 0, false, 1},
    {"3x2x3, training, neither", 3, 2, 3, 0, 0, false, 1},
    {"2x3x4, frozen (inference mode)", 2, 3, 4, 1, 1, true, 1},
    {"flat 5, frozen, 2 threads", 0, 0, 5, 1, 1, true, 2},
};
#define GBATCH 3

typedef struct grad_ctx {
    tl_layer *l;
    tli_exec ex;
    float *x;
    const float *r;
} grad_ctx;

/* L = sum(r * y). */
static double objective(grad_ctx *c)
{
    const float *xs[1] = {c->x};
    c->l->ops->forward(c->l, &c->ex, xs, c->l->out, TL_ACT_LINEAR);
    double s = 0.0;
    for (size_t i = 0; i < GBATCH * c->l->out_size; i++)
        s += (double)c->r[i] * c->l->out[i];
    return s;
}

static double objective_fn(void *c)
{
    return objective(c);
}

static double central(float *v, grad_ctx *c)
{
    return th_central(v, objective_fn, c);
}

START_TEST(gradients_match_central_differences)
{
    const grad_case *gc = &grad_cases[_i];
    tl_model *m;
    tl_batchnorm_options o = TL_BATCHNORM_OPTIONS_INIT;
    o.center = gc->center;
    o.scale = gc->scale;
    if (gc->h) {
        m = bn_model(gc->h, gc->w, gc->c, &o, gc->threads);
    } else {
        ck_assert_tl_ok(tl_model_create(&m, 1, 1, gc->c, 1));
        ck_assert_tl_ok(tl_model_set_threads(m, gc->threads));
        ck_assert_tl_ok(tl_model_add_flatten(NULL, m, NULL));
        ck_assert_tl_ok(tl_model_add_batchnorm(NULL, m, &o));
    }
    tl_layer *l = m->layers[m->nlayers - 1];
    ck_assert_uint_eq(l->nparams, 2u + (gc->center != 0) + (gc->scale != 0));
    if (gc->frozen)
        ck_assert_tl_ok(tl_layer_set_trainable(l, 0));
    ck_assert_tl_ok(tli_workspace_ensure(m, GBATCH, true));
    const size_t in = GBATCH * l->in_size, out = GBATCH * l->out_size;
    float *x = malloc(in * sizeof *x), *r = malloc(out * sizeof *r), *dy = malloc(out * sizeof *dy);
    float *dx = malloc(in * sizeof *dx);
    double *num = malloc(in * sizeof *num);
    th_fill_uniform(x, in, -1.0f, 1.0f, 7 + (uint64_t)_i);
    th_fill_uniform(r, out, -1.0f, 1.0f, 5);
    /* gamma around 1, beta around 0, moving statistics away from (0, 1). */
    for (size_t p = 0; p < l->nparams; p++) {
        tli_param *pr = &l->params[p];
        bool var = strcmp(pr->name, "moving_variance") == 0, gamma = strcmp(pr->name, "gamma") == 0;
        th_fill_uniform(pr->value, pr->count, var ? 0.3f : gamma ? 0.5f : -0.5f, var ? 2.0f : gamma ? 1.5f : 0.5f,
                        31 + p);
        if (pr->grad)
            for (size_t j = 0; j < pr->count; j++)
                pr->grad[j] = NAN;
    }
    grad_ctx c = {l, tli_exec_for(m, GBATCH, true), x, r};
    /* Analytical: forward, then backward from dL/dy = r. */
    objective(&c);
    memcpy(dy, r, out * sizeof *dy);
    for (size_t i = 0; i < in; i++)
        dx[i] = NAN;
    const float *xs[1] = {x};
    float *dxs[1] = {dx};
    l->ops->backward(l, &c.ex, xs, l->out, dy, dxs, TL_ACT_LINEAR, tli_layer_learns(l));
    ck_assert(memcmp(dy, r, out * sizeof *dy) == 0); /* dy is only read */

    c.ex.threads = 1;
    char what[160];
    for (size_t p = 0; p < l->nparams; p++) {
        tli_param *pr = &l->params[p];
        if (pr->role != TLI_ROLE_PARAM)
            continue;
        if (gc->frozen) {
            /* A frozen layer writes no parameter gradient. */
            for (size_t j = 0; j < pr->count; j++)
                ck_assert_msg(isnan(pr->grad[j]), "%s: frozen %s got a gradient", gc->what, pr->name);
            continue;
        }
        float *a = malloc(pr->count * sizeof *a);
        double *pn = malloc(pr->count * sizeof *pn);
        memcpy(a, pr->grad, pr->count * sizeof *a);
        for (size_t j = 0; j < pr->count; j++)
            pn[j] = central(&pr->value[j], &c);
        snprintf(what, sizeof what, "%s: %s", gc->what, pr->name);
        th_check_grad(a, pn, pr->count, what);
        free(a);
        free(pn);
    }
    for (size_t j = 0; j < in; j++)
        num[j] = central(&x[j], &c);
    snprintf(what, sizeof what, "%s: input", gc->what);
    th_check_grad(dx, num, in, what);
    if (!gc->frozen) {
        /* Through the batch statistics, each channel's input gradient sums
         * to 0 (the mean is subtracted). */
        const size_t ch = gc->c;
        for (size_t k = 0; k < ch; k++) {
            double s = 0.0;
            for (size_t i = k; i < in; i += ch)
                s += dx[i];
            ck_assert_msg(fabs(s) < 1e-5, "%s: channel %zu's input gradient sums to %g", gc->what, k, s);
        }
    }
    free(x), free(r), free(dy), free(dx), free(num);
    tl_model_free(m);
}
END_TEST

/* Through the engine: conv2d(3, no bias) -> batchnorm -> conv2d(3, tanh)
 * -> global_avgpool2d -> dense(3, softmax) on 4x4x2, sparse cross-entropy,
 * every parameter against central differences of the batch's mean loss;
 * `_i` 1: the batchnorm frozen (its gradient buffers stay untouched, the
 * first convolution still gets its gradient through it). */
typedef struct net_ctx {
    tl_model *m;
    const float *x;
    const int32_t *labels;
} net_ctx;

static double net_objective(net_ctx *c)
{
    tli_exec ex = tli_exec_for(c->m, GBATCH, true);
    ex.threads = 1;
    const float *y = tli_forward(c->m, &ex, c->x, true);
    tli_loss_result r;
    size_t bad;
    ck_assert(tli_softmax_xent(y, GBATCH, 3, c->labels, NULL, NULL, &r, &bad));
    return r.loss_sum / GBATCH;
}

START_TEST(model_gradients_through_the_engine)
{
    const bool frozen = _i == 1;
    tl_model *m;
    ck_assert_tl_ok(tl_model_create(&m, 4, 4, 2, 21));
    tl_conv2d_options c = TL_CONV2D_OPTIONS_INIT;
    c.filters = 3;
    c.padding = TL_PAD_SAME;
    c.use_bias = 0;
    ck_assert_tl_ok(tl_model_add_conv2d(NULL, m, &c));
    tl_batchnorm_options b = TL_BATCHNORM_OPTIONS_INIT;
    tl_layer *bn;
    ck_assert_tl_ok(tl_model_add_batchnorm(&bn, m, &b));
    c.use_bias = 1;
    c.activation = TL_ACT_TANH;
    ck_assert_tl_ok(tl_model_add_conv2d(NULL, m, &c));
    ck_assert_tl_ok(tl_model_add_global_avgpool2d(NULL, m, NULL, NULL));
    tl_dense_options d = TL_DENSE_OPTIONS_INIT;
    d.units = 3;
    d.activation = TL_ACT_SOFTMAX;
    ck_assert_tl_ok(tl_model_add_dense(NULL, m, &d));
    tl_optimizer *sgd;
    ck_assert_tl_ok(tl_optimizer_create_sgd(&sgd, NULL));
    ck_assert_tl_ok(tl_model_compile(m, sgd, TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY));
    th_fill_uniform(bn->params[0].value, 3, 0.5f, 1.5f, 1);
    th_fill_uniform(bn->params[1].value, 3, -0.5f, 0.5f, 2);
    th_fill_uniform(bn->params[2].value, 3, -0.2f, 0.2f, 3);
    th_fill_uniform(bn->params[3].value, 3, 0.5f, 1.5f, 4);
    if (frozen)
        ck_assert_tl_ok(tl_layer_set_trainable(bn, 0));
    ck_assert_tl_ok(tli_workspace_ensure(m, GBATCH, true));
    float x[GBATCH * 4 * 4 * 2];
    th_fill_uniform(x, sizeof x / sizeof x[0], -1.0f, 1.0f, 5);
    const int32_t labels[GBATCH] = {2, 0, 1};
    for (size_t i = 0; i < m->nlayers; i++)
        for (size_t p = 0; p < m->layers[i]->nparams; p++)
            if (m->layers[i]->params[p].grad)
                for (size_t j = 0; j < m->layers[i]->params[p].count; j++)
                    m->layers[i]->params[p].grad[j] = NAN;
    net_ctx nc = {m, x, labels};
    /* Forward, loss gradient, backward: what a training step does. */
    tli_exec ex = tli_exec_for(m, GBATCH, true);
    const float *y = tli_forward(m, &ex, x, true);
    tli_loss_result r;
    size_t bad;
    ck_assert(tli_softmax_xent(y, GBATCH, 3, labels, NULL, tli_output_grad(m), &r, &bad));
    tli_backward(m, &ex, x, true);
    char what[160];
    size_t checked = 0;
    for (size_t i = 0; i < m->nlayers; i++) {
        tl_layer *l = m->layers[i];
        for (size_t p = 0; p < l->nparams; p++) {
            tli_param *pr = &l->params[p];
            if (pr->role != TLI_ROLE_PARAM)
                continue;
            if (!l->trainable) {
                for (size_t j = 0; j < pr->count; j++)
                    ck_assert_msg(isnan(pr->grad[j]), "frozen '%s' %s got a gradient", l->name, pr->name);
                continue;
            }
            float *a = malloc(pr->count * sizeof *a);
            double *num = malloc(pr->count * sizeof *num);
            memcpy(a, pr->grad, pr->count * sizeof *a);
            for (size_t j = 0; j < pr->count; j++) {
                const float saved = pr->value[j], up = saved + EPS, down = saved - EPS;
                pr->value[j] = up;
                double fp = net_objective(&nc);
                pr->value[j] = down;
                double fm = net_objective(&nc);
                pr->value[j] = saved;
                num[j] = (fp - fm) / ((double)up - (double)down);
            }
            snprintf(what, sizeof what, "%s: layer '%s' %s", frozen ? "frozen batchnorm" : "training", l->name,
                     pr->name);
            th_check_grad(a, num, pr->count, what);
            checked++;
            free(a);
            free(num);
        }
    }
    ck_assert_uint_eq(checked, (frozen ? 5u : 7u));
    tl_model_free(m);
}
END_TEST

/* ---- 3. threads ------------------------------------------------------------------- */

START_TEST(threads_give_the_same_bits)
{
    /* 8 examples of 16 x 16 x 32: 65,536 values, enough for the kernels to
     * split the work (and 8 chunks of 256 rows). Through the layer, as
     * the engine runs it, with 1, 2 and 3 threads. */
    enum { B = 8, H = 16, W = 16, C = 32, N = B * H * W * C };
    float *x = malloc(N * sizeof *x), *r = malloc(N * sizeof *r);
    th_fill_uniform(x, N, -2.0f, 3.0f, 1);
    th_fill_uniform(r, N, -1.0f, 1.0f, 2);
    float *ref[4] = {NULL, NULL, NULL, NULL};    /* y train, dx train, y infer, dx frozen */
    float ref_small[6][C];                         /* dgamma, dbeta, mm, mv, mean, inv_std */
    for (uint32_t threads = 1; threads <= 3; threads++) {
        tl_batchnorm_options o = TL_BATCHNORM_OPTIONS_INIT;
        tl_model *m = bn_model(H, W, C, &o, threads);
        tl_layer *l = m->layers[0];
        th_fill_uniform(l->params[0].value, C, 0.5f, 1.5f, 3);
        th_fill_uniform(l->params[1].value, C, -0.5f, 0.5f, 4);
        ck_assert_tl_ok(tli_workspace_ensure(m, B, true));
        tli_exec ex = tli_exec_for(m, B, true);
        ck_assert_uint_eq(ex.threads, threads);
        const float *xs[1] = {x};
        float *y = malloc(N * sizeof *y), *dx = malloc(N * sizeof *dx), *dy = malloc(N * sizeof *dy);
        float *yi = malloc(N * sizeof *yi), *dxf = malloc(N * sizeof *dxf);
        float *dxs[1] = {dx};
        l->ops->forward(l, &ex, xs, y, TL_ACT_LINEAR);
        memcpy(dy, r, N * sizeof *dy);
        l->ops->backward(l, &ex, xs, y, dy, dxs, TL_ACT_LINEAR, true);
        float small[6][C];
        memcpy(small[0], l->params[0].grad, sizeof small[0]);
        memcpy(small[1], l->params[1].grad, sizeof small[1]);
        memcpy(small[2], l->params[2].value, sizeof small[2]);
        memcpy(small[3], l->params[3].value, sizeof small[3]);
        memcpy(small[4], l->scratch, sizeof small[4]);                /* the batch mean */
        memcpy(small[5], (float *)l->scratch + C, sizeof small[5]); /* its inverse std */
        /* Inference, and a frozen layer's backward. */
        ex.training = false;
        l->ops->forward(l, &ex, xs, yi, TL_ACT_LINEAR);
        ex.training = true;
        l->trainable = 0;
        dxs[0] = dxf;
        l->ops->backward(l, &ex, xs, yi, dy, dxs, TL_ACT_LINEAR, false);
        float *got[4] = {y, dx, yi, dxf};
        if (threads == 1) {
            memcpy(ref_small, small, sizeof small);
            for (int k = 0; k < 4; k++)
                ref[k] = got[k];
            /* Sanity: each channel of y has mean beta and spread gamma. */
            double s = 0.0;
            for (size_t i = 0; i < N; i += C)
                s += y[i];
            ck_assert_msg(fabs(s / (N / C) - l->params[1].value[0]) < 1e-5, "channel 0's mean %g", s / (N / C));
            free(dy);
        } else {
            for (int k = 0; k < 4; k++) {
                ck_assert_msg(memcmp(got[k], ref[k], N * sizeof(float)) == 0, "%u threads: output %d differs",
                              threads, k);
                free(got[k]);
            }
            ck_assert_msg(memcmp(small, ref_small, sizeof small) == 0, "%u threads: statistics or gradients differ",
                          threads);
            free(dy);
        }
        tl_model_free(m);
    }
    for (int k = 0; k < 4; k++)
        free(ref[k]);
    free(x);
    free(r);
}
END_TEST


/* ---- 3b. kernels: the two builds, one-pass statistics, the fused ReLU ----------- */

/* One batchnorm's kernel buffers, rows x c. */
typedef struct kbn {
    tli_bn bn;
    float *f;
    double *partial;
} kbn;

static kbn kbn_make(size_t rows, size_t c, float epsilon, float momentum, int clamp)
{
    kbn k;
    k.f = calloc(12 * c, sizeof(float));
    k.partial = calloc(tli_bn_partial_count(rows, c), sizeof(double));
    ck_assert_ptr_nonnull(k.f);
    ck_assert_ptr_nonnull(k.partial);
    float *f = k.f;
    th_fill_uniform(f, c, 0.5f, 1.5f, 11);        /* gamma */
    th_fill_uniform(f + c, c, -0.5f, 0.5f, 12);   /* beta */
    th_fill_uniform(f + 2 * c, c, -0.2f, 0.2f, 13); /* moving mean */
    th_fill_uniform(f + 3 * c, c, 0.5f, 2.0f, 14);  /* moving var */
    k.bn = (tli_bn){
        .rows = rows, .c = c, .epsilon = epsilon, .momentum = momentum,
        .gamma = f, .beta = f + c, .moving_mean = f + 2 * c, .moving_var = f + 3 * c,
        .mean = f + 4 * c, .inv_std = f + 5 * c, .t0 = f + 6 * c, .t1 = f + 7 * c, .t2 = f + 8 * c,
        .partial = k.partial, .clamp = clamp,
    };
    return k;
}

static void kbn_free(kbn *k)
{
    free(k->f);
    free(k->partial);
}

/* Everything one round of the kernels writes: y, dx (training, through the
 * batch statistics, with the activation's backward fused when clamp), dx
 * frozen, dgamma, dbeta and the per-channel state. */
typedef struct kbn_out {
    float *y, *dx, *dxf, *small; /* small: 6 x c */
} kbn_out;

static kbn_out kbn_run(size_t rows, size_t c, int clamp, uint32_t threads, bool portable, const float *x,
                       const float *dy)
{
    const size_t n = rows * c;
    kbn k = kbn_make(rows, c, 1e-3f, 0.9f, clamp);
    kbn_out o = {malloc(n * sizeof(float)), malloc(n * sizeof(float)), malloc(n * sizeof(float)),
                 malloc(6 * c * sizeof(float))};
    tli_bn_force_portable(portable);
    tli_bn_forward_train(threads, &k.bn, x, o.y);
    k.bn.act_y = clamp ? o.y : NULL;
    float *g = malloc(n * sizeof *g); /* overwritten with the masked gradient */
    memcpy(g, dy, n * sizeof *g);
    tli_bn_backward_train(threads, &k.bn, x, g, o.dx, o.small, o.small + c);
    free(g);
    memcpy(o.small + 2 * c, k.bn.moving_mean, c * sizeof(float));
    memcpy(o.small + 3 * c, k.bn.moving_var, c * sizeof(float));
    memcpy(o.small + 4 * c, k.bn.mean, c * sizeof(float));
    memcpy(o.small + 5 * c, k.bn.inv_std, c * sizeof(float));
    tli_bn_backward_infer(threads, &k.bn, dy, o.dxf);
    tli_bn_force_portable(false);
    kbn_free(&k);
    return o;
}

static void kbn_out_free(kbn_out *o)
{
    free(o->y), free(o->dx), free(o->dxf), free(o->small);
}

/* The AVX-512 build of the loops (where the CPU has it) and the portable
 * one give the same bits, as do 1 and 2 threads: odd channel counts (tails
 * of the 16-channel blocks), rows not a multiple of the 256-row chunks nor
 * of the 32-row blocks, sizes that split over threads; no activation, a
 * fused ReLU and ReLU6 (forward clamp and backward mask). */
START_TEST(kernel_builds_give_the_same_bits)
{
    static const size_t shapes[][2] = {{1, 5}, {37, 19}, {300, 24}, {2001, 33}, {4099, 16}, {70, 1}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const size_t rows = shapes[s][0], c = shapes[s][1], n = rows * c;
        float *x = malloc(n * sizeof *x), *dy = malloc(n * sizeof *dy);
        th_fill_uniform(x, n, -2.0f, 3.0f, 21 + s);
        th_fill_uniform(dy, n, -1.0f, 1.0f, 31 + s);
        for (int clamp = TLI_CLAMP_NONE; clamp <= TLI_CLAMP_RELU6; clamp++) {
            kbn_out ref = kbn_run(rows, c, clamp, 1, true, x, dy);
            for (int v = 0; v < 3; v++) {
                /* v: 0 fast build 1 thread, 1 fast 2 threads, 2 portable 2 threads */
                kbn_out got = kbn_run(rows, c, clamp, v ? 2 : 1, v == 2, x, dy);
                ck_assert_msg(memcmp(got.y, ref.y, n * sizeof(float)) == 0, "%zux%zu clamp %d v%d: y differs", rows,
                              c, clamp, v);
                ck_assert_msg(memcmp(got.dx, ref.dx, n * sizeof(float)) == 0, "%zux%zu clamp %d v%d: dx differs",
                              rows, c, clamp, v);
                ck_assert_msg(memcmp(got.dxf, ref.dxf, n * sizeof(float)) == 0,
                              "%zux%zu clamp %d v%d: frozen dx differs", rows, c, clamp, v);
                ck_assert_msg(memcmp(got.small, ref.small, 6 * c * sizeof(float)) == 0,
                              "%zux%zu clamp %d v%d: statistics or gradients differ", rows, c, clamp, v);
                kbn_out_free(&got);
            }
            kbn_out_free(&ref);
        }
        free(x), free(dy);
    }
}
END_TEST

/* The fused backward of batchnorm -> ReLU / ReLU6 equals the activation
 * layer's backward (from its output) followed by batchnorm's, bit for bit,
 * in training and frozen (inference) mode; so does add -> ReLU's one pass. */
START_TEST(fused_relu_backward_equals_two_passes)
{
    const size_t rows = 333, c = 21, n = rows * c;
    float *x = malloc(n * sizeof *x), *dy = malloc(n * sizeof *dy), *y = malloc(n * sizeof *y);
    float *g = malloc(n * sizeof *g), *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
    float *d2 = malloc(2 * c * sizeof *d2), *d1 = malloc(2 * c * sizeof *d1);
    th_fill_uniform(x, n, -3.0f, 9.0f, 41);
    th_fill_uniform(dy, n, -1.0f, 1.0f, 42);
    for (int round = 0; round < 3; round++) {
        /* ReLU, ReLU6, then ReLU6 with gamma and without beta (the mask
         * recomputed from x without a shift) */
        const bool no_beta = round == 2;
        const int clamp = round == 0 ? TLI_CLAMP_RELU : TLI_CLAMP_RELU6;
        const tl_activation act = clamp == TLI_CLAMP_RELU ? TL_ACT_RELU : TL_ACT_RELU6;
        kbn k = kbn_make(rows, c, 1e-3f, 0.9f, clamp);
        /* x-hat straight, shifted by 5 in the even channels: values below
         * 0 and above 6; or x-hat times 4 to 5, no shift */
        if (no_beta) {
            k.bn.beta = NULL;
            for (size_t j = 0; j < c; j++)
                k.f[j] = 4.0f + (float)j / (float)c;
        } else {
            k.bn.gamma = NULL;
            for (size_t j = 0; j < c; j++)
                k.f[c + j] = j % 2 ? 0.0f : 5.0f;
        }
        tli_bn_forward_train(1, &k.bn, x, y);
        size_t zero = 0, top = 0;
        for (size_t i = 0; i < n; i++)
            zero += y[i] == 0.0f, top += y[i] == 6.0f;
        ck_assert(zero > 0 && zero < n && (clamp == TLI_CLAMP_RELU || top > 0));
        tli_act_input_backward(1, act, 0.0f, y, y, dy, g, rows, c);
        k.bn.act_y = NULL;
        tli_bn_backward_train(1, &k.bn, x, g, a, d1, d1 + c);
        k.bn.act_y = y;
        float *dyc = malloc(n * sizeof *dyc);
        memcpy(dyc, dy, n * sizeof *dyc);
        tli_bn_backward_train(1, &k.bn, x, dyc, b, d2, d2 + c);
        ck_assert_msg(memcmp(a, b, n * sizeof *a) == 0, "clamp %d: training dx differs", clamp);
        ck_assert_msg(memcmp(dyc, dy, n * sizeof *g) == 0, "clamp %d: dy was written", clamp);
        free(dyc);
        ck_assert_msg(memcmp(d1, d2, 2 * c * sizeof *d1) == 0, "clamp %d: dgamma or dbeta differs", clamp);
        k.bn.act_y = NULL;
        tli_bn_backward_infer(1, &k.bn, g, a);
        k.bn.act_y = y;
        tli_bn_backward_infer(1, &k.bn, dy, b);
        ck_assert_msg(memcmp(a, b, n * sizeof *a) == 0, "clamp %d: frozen dx differs", clamp);
        /* add -> ReLU: both inputs' gradients written; then one written,
         * one added to; then the same buffer twice (written, added). */
        memcpy(a, x, n * sizeof *a);
        float *dx2[2] = {b, a};
        bool acc[2] = {false, true};
        tli_masked_grad(2, dx2, acc, 2, dy, y, n, clamp);
        for (size_t i = 0; i < n; i++) {
            ck_assert_msg(b[i] == g[i] && a[i] == x[i] + g[i], "clamp %d: add's gradient %zu", clamp, i);
            a[i] = 0.0f;
        }
        dx2[1] = a, dx2[0] = a;
        tli_masked_grad(1, dx2, acc, 2, dy, y, n, clamp);
        for (size_t i = 0; i < n; i++)
            ck_assert_msg(a[i] == g[i] + g[i], "clamp %d: add's gradient to one buffer %zu", clamp, i);
        kbn_free(&k);
    }
    free(x), free(dy), free(y), free(g), free(a), free(b), free(d1), free(d2);
}
END_TEST

/* One-pass statistics stay accurate when the mean is large against the
 * spread (1000 + noise of 0.01): mean and variance against a two-pass
 * reference in double, for both builds; also with an outlier first row
 * (the shift the sums are taken around). */
START_TEST(one_pass_statistics_are_accurate)
{
    const size_t rows = 5003, c = 3, n = rows * c;
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
    for (int outlier = 0; outlier < 2; outlier++) {
        th_fill_uniform(x, n, -0.01f, 0.01f, 51);
        for (size_t i = 0; i < n; i++)
            x[i] += 1000.0f + (float)(i % c);
        if (outlier)
            x[0] = 1500.0f;
        for (int portable = 0; portable < 2; portable++) {
            kbn k = kbn_make(rows, c, 1e-12f, 0.0f, TLI_CLAMP_NONE);
            tli_bn_force_portable(portable);
            tli_bn_forward_train(1, &k.bn, x, y);
            tli_bn_force_portable(false);
            for (size_t j = 0; j < c; j++) {
                double mean = 0.0, var = 0.0;
                for (size_t r = 0; r < rows; r++)
                    mean += x[r * c + j];
                mean /= (double)rows;
                for (size_t r = 0; r < rows; r++)
                    var += (x[r * c + j] - mean) * (x[r * c + j] - mean);
                var /= (double)rows;
                /* momentum 0: the moving statistics are the batch's (variance unbiased) */
                ck_assert_msg(fabs(k.bn.moving_mean[j] - mean) <= 1e-7 * mean, "channel %zu: mean %.9g, want %.9g", j,
                              (double)k.bn.moving_mean[j], mean);
                const double got = (double)k.bn.moving_var[j] * (double)(rows - 1) / (double)rows;
                ck_assert_msg(fabs(got - var) <= 1e-5 * var, "outlier %d portable %d channel %zu: var %.9g, want %.9g",
                              outlier, portable, j, got, var);
                const double inv = 1.0 / sqrt(var + 1e-12);
                ck_assert_msg(fabs(k.bn.inv_std[j] - inv) <= 1e-5 * inv, "channel %zu: inv_std %.9g, want %.9g", j,
                              (double)k.bn.inv_std[j], inv);
            }
            kbn_free(&k);
        }
    }
    free(x), free(y);
}
END_TEST

/* The sums take the rows four at a time, then the rest one by one
 * (batchnorm_impl.h, BN_ROWS; the gradient sums below 64 channels):
 * every row counts once, whatever rows % 4
 * and c % 16 are - the mean, the variance, dbeta = sum of the masked dy
 * and dgamma = sum of it times x-hat against sums in double, for both
 * builds, with and without the fused ReLU. */
START_TEST(row_groups_sum_every_row)
{
    static const size_t cs[] = {5, 16, 21, 35, 70}; /* 70: the gradient sums row by row */
    for (size_t rows = 1; rows <= 11; rows++)
        for (size_t ci = 0; ci < sizeof cs / sizeof cs[0]; ci++)
            for (int clamp = TLI_CLAMP_NONE; clamp <= TLI_CLAMP_RELU; clamp++)
                for (int portable = 0; portable < 2; portable++) {
                    const size_t c = cs[ci], n = rows * c;
                    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y), *dy = malloc(n * sizeof *dy);
                    float *g = malloc(n * sizeof *g), *dx = malloc(n * sizeof *dx), *dgb = malloc(2 * c * sizeof *dgb);
                    th_fill_uniform(x, n, -2.0f, 3.0f, 61 + rows);
                    th_fill_uniform(dy, n, -1.0f, 1.0f, 71 + rows);
                    kbn k = kbn_make(rows, c, 1e-3f, 0.0f, clamp);
                    tli_bn_force_portable(portable);
                    tli_bn_forward_train(1, &k.bn, x, y);
                    k.bn.act_y = clamp ? y : NULL;
                    memcpy(g, dy, n * sizeof *g);
                    tli_bn_backward_train(1, &k.bn, x, g, dx, dgb, dgb + c);
                    tli_bn_force_portable(false);
                    for (size_t j = 0; j < c; j++) {
                        double mean = 0.0, var = 0.0, sdy = 0.0, sdx = 0.0;
                        for (size_t r = 0; r < rows; r++)
                            mean += x[r * c + j];
                        mean /= (double)rows;
                        for (size_t r = 0; r < rows; r++)
                            var += (x[r * c + j] - mean) * (x[r * c + j] - mean);
                        var /= (double)rows;
                        ck_assert_msg(fabs(k.bn.mean[j] - mean) <= 1e-6, "%zux%zu channel %zu: mean %.9g, want %.9g",
                                      rows, c, j, (double)k.bn.mean[j], mean);
                        const double inv = 1.0 / sqrt(var + 1e-3);
                        ck_assert_msg(fabs(k.bn.inv_std[j] - inv) <= 1e-6 * inv, "%zux%zu channel %zu: inv_std", rows,
                                      c, j);
                        for (size_t r = 0; r < rows; r++) {
                            const float d = clamp && !(y[r * c + j] > 0.0f) ? 0.0f : dy[r * c + j];
                            sdy += d;
                            sdx += (double)d * (double)((x[r * c + j] - k.bn.mean[j]) * k.bn.inv_std[j]);
                        }
                        ck_assert_msg(fabs(dgb[c + j] - sdy) <= 1e-6, "%zux%zu clamp %d channel %zu: dbeta %.9g, want %.9g",
                                      rows, c, clamp, j, (double)dgb[c + j], sdy);
                        ck_assert_msg(fabs(dgb[j] - sdx) <= 1e-6, "%zux%zu clamp %d channel %zu: dgamma %.9g, want %.9g",
                                      rows, c, clamp, j, (double)dgb[j], sdx);
                    }
                    kbn_free(&k);
                    free(x), free(y), free(dy), free(g), free(dx), free(dgb);
                }
}
END_TEST

/* The residual add after a batchnorm, fused into its normalizing pass
 * (tli_bn.residual): the same bits as normalizing, then tli_sum, in
 * training and inference mode, for both builds and 1 and 2 threads, with
 * no activation, a ReLU and a ReLU6 (odd channel counts: the tails). */
START_TEST(residual_in_normalize_equals_sum_after)
{
    static const size_t shapes[][2] = {{37, 19}, {2001, 33}, {4099, 16}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const size_t rows = shapes[s][0], c = shapes[s][1], n = rows * c;
        float *x = malloc(n * sizeof *x), *res = malloc(n * sizeof *res), *y = malloc(n * sizeof *y);
        float *ref = malloc(n * sizeof *ref), *got = malloc(n * sizeof *got);
        th_fill_uniform(x, n, -2.0f, 3.0f, 81 + s);
        th_fill_uniform(res, n, -2.0f, 2.0f, 91 + s);
        for (int clamp = TLI_CLAMP_NONE; clamp <= TLI_CLAMP_RELU6; clamp++)
            for (int train = 0; train < 2; train++)
                for (int v = 0; v < 3; v++) { /* fast 1 thread, fast 2 threads, portable 2 threads */
                    const uint32_t threads = v ? 2 : 1;
                    kbn a = kbn_make(rows, c, 1e-3f, 0.9f, TLI_CLAMP_NONE), b = kbn_make(rows, c, 1e-3f, 0.9f, clamp);
                    tli_bn_force_portable(v == 2);
                    const float *const both[2] = {y, res};
                    if (train)
                        tli_bn_forward_train(threads, &a.bn, x, y);
                    else
                        tli_bn_forward_infer(threads, &a.bn, x, y);
                    tli_sum(threads, ref, both, 2, n, clamp);
                    b.bn.residual = res;
                    if (train)
                        tli_bn_forward_train(threads, &b.bn, x, got);
                    else
                        tli_bn_forward_infer(threads, &b.bn, x, got);
                    tli_bn_force_portable(false);
                    ck_assert_msg(memcmp(got, ref, n * sizeof *got) == 0, "%zux%zu clamp %d train %d v%d: y differs",
                                  rows, c, clamp, train, v);
                    ck_assert(memcmp(a.bn.moving_var, b.bn.moving_var, c * sizeof(float)) == 0);
                    kbn_free(&a), kbn_free(&b);
                }
        free(x), free(res), free(y), free(ref), free(got);
    }
}
END_TEST

/* In a training pass the engine runs conv -> batchnorm -> add (the
 * other input an earlier layer's output, either order) [-> ReLU / ReLU6]
 * as one batchnorm pass writing the last layer's output (the add's own
 * output is then not written): the same bits as the layers one by one,
 * for 1 and 2 threads. */
START_TEST(residual_fused_in_training_forward)
{
    enum { B = 3 };
    for (int act = 0; act < 3; act++)
        for (int order = 0; order < 2; order++)
            for (uint32_t threads = 1; threads <= 2; threads++) {
                tl_model *m;
                ck_assert_tl_ok(tl_model_create(&m, 6, 6, 3, 41));
                tl_conv2d_options co = TL_CONV2D_OPTIONS_INIT;
                co.filters = 19;
                co.padding = TL_PAD_SAME;
                tl_layer *stem, *conv, *bn, *sum, *last;
                ck_assert_tl_ok(tl_model_add_conv2d(&stem, m, &co));
                ck_assert_tl_ok(tl_model_add_conv2d(&conv, m, &co));
                tl_batchnorm_options bo = TL_BATCHNORM_OPTIONS_INIT;
                ck_assert_tl_ok(tl_model_add_batchnorm(&bn, m, &bo));
                const tl_layer *both[2] = {order ? stem : bn, order ? bn : stem};
                ck_assert_tl_ok(tl_model_add_add(&sum, m, both, 2, NULL));
                last = sum;
                if (act) {
                    tl_activation_options ao = TL_ACTIVATION_OPTIONS_INIT;
                    ao.activation = act == 1 ? TL_ACT_RELU : TL_ACT_RELU6;
                    ck_assert_tl_ok(tl_model_add_activation(&last, m, &ao));
                }
                ck_assert_tl_ok(tl_model_add_flatten(NULL, m, NULL));
                tl_dense_options d = TL_DENSE_OPTIONS_INIT;
                d.units = 3;
                ck_assert_tl_ok(tl_model_add_dense(NULL, m, &d));
                ck_assert_tl_ok(tl_model_set_threads(m, threads));
                tl_optimizer *sgd;
                ck_assert_tl_ok(tl_optimizer_create_sgd(&sgd, NULL));
                ck_assert_tl_ok(tl_model_compile(m, sgd, TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY));
                th_fill_uniform(bn->params[0].value, 19, 0.5f, 1.5f, 5);
                th_fill_uniform(bn->params[1].value, 19, -0.5f, 3.0f, 6); /* ReLU6 clips some */
                ck_assert_tl_ok(tli_workspace_ensure(m, B, true));
                const size_t n = B * sum->out_size;
                float x[B * 6 * 6 * 3];
                th_fill_uniform(x, sizeof x / sizeof x[0], -1.0f, 1.0f, 7);
                for (size_t i = 0; i < n; i++)
                    sum->out[i] = NAN;
                tli_exec ex = tli_exec_for(m, B, true);
                tli_forward(m, &ex, x, false);
                if (act)
                    for (size_t i = 0; i < n; i++)
                        ck_assert_msg(isnan(sum->out[i]), "act %d: the add ran on its own", act);
                /* One by one: batchnorm (training mode) on the conv's output, then the sum. */
                float *y = malloc(n * sizeof *y), *ref = malloc(n * sizeof *ref);
                const float *const in[1] = {conv->out};
                bn->ops->forward(bn, &ex, in, y, TL_ACT_LINEAR);
                const float *const terms[2] = {order ? stem->out : y, order ? y : stem->out};
                tli_sum(threads, ref, terms, 2, n, tli_clamp_of(act == 1, act == 2));
                ck_assert_msg(memcmp(ref, last->out, n * sizeof *ref) == 0, "act %d order %d threads %u: differs", act,
                              order, threads);
                free(y), free(ref);
                tl_model_free(m);
            }
}
END_TEST

/* ---- 4. settings ------------------------------------------------------------------ */

START_TEST(settings_names_and_tensors)
{
    /* Defaults: Keras'. The fields' defaults (what a file without them
     * gets) are the options' defaults. */
    tl_batchnorm_options o;
    memset(&o, 0xff, sizeof o);
    ck_assert_tl_ok(tl_batchnorm_options_init(&o, TL_BATCHNORM_OPTIONS_VERSION));
    ck_assert_uint_eq(o.version, 1);
    ck_assert(o.epsilon == 1e-3f && o.momentum == 0.99f && o.center == 1 && o.scale == 1);
    ck_assert_ptr_null(o.name);
    ck_assert_ptr_null(o.input);
    ck_assert_int_eq(tl_batchnorm_options_init(&o, 0), TL_EVERSION);
    ck_assert_int_eq(tl_batchnorm_options_init(&o, 2), TL_EVERSION);
    ck_assert_int_eq(tl_batchnorm_options_init(NULL, 1), TL_EINVAL);
    const tli_layer_ops *ops = tli_layer_ops_for(TL_LAYER_BATCHNORM);
    ck_assert_ptr_nonnull(ops);
    _Alignas(8) unsigned char cfg[TLI_CFG_BYTES];
    tli_cfg_defaults(ops, cfg);
    float eps, mom;
    memcpy(&eps, cfg + ops->fields[0].offset, sizeof eps);
    memcpy(&mom, cfg + ops->fields[1].offset, sizeof mom);
    ck_assert(eps == 1e-3f && mom == 0.99f);
    ck_assert_str_eq(tl_layer_kind_str(TL_LAYER_BATCHNORM), "batchnorm");
    ck_assert_int_eq(TL_LAYER_BATCHNORM, 9);

    /* Names as Keras; tensors gamma, beta, moving_mean, moving_variance. */
    tl_model *m;
    ck_assert_tl_ok(tl_model_create(&m, 4, 4, 3, 1));
    tl_conv2d_options c = TL_CONV2D_OPTIONS_INIT;
    c.filters = 5;
    c.use_bias = 0;
    tl_layer *conv, *a, *b, *d;
    ck_assert_tl_ok(tl_model_add_conv2d(&conv, m, &c));
    o = (tl_batchnorm_options)TL_BATCHNORM_OPTIONS_INIT;
    ck_assert_tl_ok(tl_model_add_batchnorm(&a, m, &o));
    ck_assert_str_eq(tl_layer_name(a), "batch_normalization");
    ck_assert_int_eq(tl_layer_get_kind(a), TL_LAYER_BATCHNORM);
    ck_assert_int_eq(tl_layer_activation(a), TL_ACT_LINEAR);
    const char *names[4] = {"gamma", "beta", "moving_mean", "moving_variance"};
    const float init[4] = {1, 0, 0, 1};
    ck_assert_uint_eq(tl_layer_num_params(a), 4);
    for (size_t p = 0; p < 4; p++) {
        tl_param_info pi;
        ck_assert_tl_ok(tl_layer_param_info(&pi, a, p));
        ck_assert_str_eq(pi.name, names[p]);
        ck_assert(pi.shape.rank == 1 && pi.shape.dims[0] == 5 && pi.count == 5);
        float v[5];
        ck_assert_tl_ok(tl_layer_get_weights(v, 5, a, p));
        for (int j = 0; j < 5; j++)
            ck_assert(v[j] == init[p]);
    }
    tl_shape s;
    ck_assert_tl_ok(tl_layer_output_shape(&s, a));
    ck_assert(s.rank == 3 && s.dims[0] == 2 && s.dims[1] == 2 && s.dims[2] == 5);
    /* Without center: gamma and the statistics; without scale: beta and them. */
    o.center = 0;
    o.input = conv;
    ck_assert_tl_ok(tl_model_add_batchnorm(&b, m, &o));
    ck_assert_str_eq(tl_layer_name(b), "batch_normalization_1");
    ck_assert_uint_eq(tl_layer_num_params(b), 3);
    tl_param_info pi;
    ck_assert_tl_ok(tl_layer_param_info(&pi, b, 0));
    ck_assert_str_eq(pi.name, "gamma");
    ck_assert_tl_ok(tl_layer_param_info(&pi, b, 1));
    ck_assert_str_eq(pi.name, "moving_mean");
    o.center = 1;
    o.scale = 0;
    o.name = "only_beta";
    o.input = b;
    ck_assert_tl_ok(tl_model_add_batchnorm(&d, m, &o));
    ck_assert_uint_eq(tl_layer_num_params(d), 3);
    ck_assert_tl_ok(tl_layer_param_info(&pi, d, 0));
    ck_assert_str_eq(pi.name, "beta");
    /* Internals: PyTorch names and roles. */
    ck_assert_str_eq(a->params[0].torch_name, "weight");
    ck_assert_str_eq(a->params[1].torch_name, "bias");
    ck_assert_str_eq(a->params[2].torch_name, "running_mean");
    ck_assert_str_eq(a->params[3].torch_name, "running_var");
    ck_assert(a->params[0].role == TLI_ROLE_PARAM && a->params[1].role == TLI_ROLE_PARAM);
    ck_assert(a->params[2].role == TLI_ROLE_STATE && a->params[3].role == TLI_ROLE_STATE);
    ck_assert_ptr_null(a->params[2].grad);
    ck_assert_int_eq(a->bias_index, -1);
    /* The summary counts the statistics as non-trainable. */
    char buf[4096];
    ck_assert_tl_ok(tl_model_summary(buf, sizeof buf, NULL, m));
    ck_assert_msg(strstr(buf, "batchnorm") != NULL, "%s", buf);
    ck_assert_msg(strstr(buf, "Non-trainable params: 30") != NULL, "%s", buf);
    tl_model_free(m);
}
END_TEST

START_TEST(bad_settings_refused)
{
    tl_model *m;
    ck_assert_tl_ok(tl_model_create(&m, 4, 4, 3, 1));
    ck_assert_tl_ok(tl_model_add_flatten(NULL, m, NULL));
    tl_batchnorm_options o = TL_BATCHNORM_OPTIONS_INIT;
    o.name = "bn_bad";
    const float bad_eps[4] = {0.0f, -1.0f, NAN, INFINITY};
    const char *eps_msg[4] = {"epsilon 0 ", "epsilon -1 ", "epsilon nan ", "epsilon inf "};
    for (int i = 0; i < 4; i++) {
        o.epsilon = bad_eps[i];
        ck_assert_tl_err(tl_model_add_batchnorm(NULL, m, &o), TL_EINVAL, eps_msg[i]);
        ck_assert_msg(strstr(tl_last_error(), "'bn_bad'") != NULL, "%s", tl_last_error());
        ck_assert_uint_eq(tl_model_num_layers(m), 1);
    }
    o.epsilon = 1e-5f;
    const float bad_mom[3] = {1.5f, -0.25f, NAN};
    const char *mom_msg[3] = {"momentum 1.5 ", "momentum -0.25 ", "momentum nan "};
    for (int i = 0; i < 3; i++) {
        o.momentum = bad_mom[i];
        ck_assert_tl_err(tl_model_add_batchnorm(NULL, m, &o), TL_EINVAL, mom_msg[i]);
        ck_assert_msg(strstr(tl_last_error(), "'bn_bad'") != NULL, "%s", tl_last_error());
        ck_assert_uint_eq(tl_model_num_layers(m), 1);
    }
    /* The ends of [0, 1] are fine. */
    o.momentum = 0.0f;
    o.name = "m0";
    ck_assert_tl_ok(tl_model_add_batchnorm(NULL, m, &o));
    o.momentum = 1.0f;
    o.name = "m1";
    ck_assert_tl_ok(tl_model_add_batchnorm(NULL, m, &o));
    ck_assert_int_eq(tl_model_add_batchnorm(NULL, m, NULL), TL_EINVAL);
    ck_assert_int_eq(tl_model_add_batchnorm(NULL, NULL, &o), TL_EINVAL);
    o.version = 0;
    ck_assert_int_eq(tl_model_add_batchnorm(NULL, m, &o), TL_EVERSION);
    tl_model_free(m);
}
END_TEST

/* ---- 5. the network ----------------------------------------------------------------- */

#define SIDE 8
#define CH 3
#define EX (SIDE * SIDE * CH)
#define CLASSES 4

static char *dir;

static char *join(const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static void setup(void)
{
    const char *base = getenv("TMPDIR");
    size_t n = strlen(base && *base ? base : "/tmp") + 32;
    dir = malloc(n);
    snprintf(dir, n, "%s/tl-bn-XXXXXX", base && *base ? base : "/tmp");
    ck_assert_msg(mkdtemp(dir) != NULL, "mkdtemp: %s", strerror(errno));
}

static void teardown(void)
{
    const char *files[] = {"bn.tlm", "epoch2.tlm", "bn.keras.safetensors", "bn.torch.safetensors"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char *p = join(files[i]);
        unlink(p);
        free(p);
    }
    rmdir(dir);
    free(dir);
}

/* `blocks` times conv2d(8, 3x3, same, no bias) -> batchnorm ->
 * conv2d(8, 3x3, same, relu), then global_avgpool2d -> dense(classes,
 * softmax); with one block layers 0..4 (batch_normalization is layer 1,
 * the pooling layer 3). */
static tl_model *bn_net_blocks(uint64_t seed, uint32_t threads, int blocks)
{
    tl_model *m;
    ck_assert_tl_ok(tl_model_create(&m, SIDE, SIDE, CH, seed));
    ck_assert_tl_ok(tl_model_set_threads(m, threads));
    for (int k = 0; k < blocks; k++) {
        tl_conv2d_options c = TL_CONV2D_OPTIONS_INIT;
        c.filters = 8;
        c.padding = TL_PAD_SAME;
        c.use_bias = 0;
        ck_assert_tl_ok(tl_model_add_conv2d(NULL, m, &c));
        tl_batchnorm_options b = TL_BATCHNORM_OPTIONS_INIT;
        ck_assert_tl_ok(tl_model_add_batchnorm(NULL, m, &b));
        c.use_bias = 1;
        c.activation = TL_ACT_RELU;
        ck_assert_tl_ok(tl_model_add_conv2d(NULL, m, &c));
    }
    ck_assert_tl_ok(tl_model_add_global_avgpool2d(NULL, m, NULL, NULL));
    tl_dense_options d = TL_DENSE_OPTIONS_INIT;
    d.units = CLASSES;
    d.activation = TL_ACT_SOFTMAX;
    ck_assert_tl_ok(tl_model_add_dense(NULL, m, &d));
    return m;
}

static tl_model *bn_net(uint64_t seed, uint32_t threads)
{
    return bn_net_blocks(seed, threads, 1);
}

static void compile_adam(tl_model *m, float lr)
{
    tl_optimizer *o;
    tl_adam_options ao = TL_ADAM_OPTIONS_INIT;
    ao.learning_rate = lr;
    ck_assert_tl_ok(tl_optimizer_create_adam(&o, &ao));
    ck_assert_tl_ok(tl_model_compile(m, o, TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY));
}

static void fit(tl_model *m, const tl_dataset *ds, uint32_t epochs, uint32_t batch, uint64_t seed)
{
    tl_fit_options fo = TL_FIT_OPTIONS_INIT;
    fo.epochs = epochs;
    fo.batch_size = batch;
    fo.seed = seed;
    ck_assert_tl_ok(tl_model_fit(m, ds, &fo));
}

static float *images(size_t n, uint64_t seed)
{
    float *x;
    int32_t *y;
    th_spot_data(&x, &y, n, SIDE, SIDE, CH, 1.0f, 0.5f, seed);
    free(y);
    return x;
}

static bool same_predictions(tl_model *a, tl_model *b, const float *x, size_t n)
{
    float *pa = malloc(n * CLASSES * sizeof *pa), *pb = malloc(n * CLASSES * sizeof *pb);
    ck_assert_tl_ok(tl_model_predict(pa, n * CLASSES, a, x, n, 0));
    ck_assert_tl_ok(tl_model_predict(pb, n * CLASSES, b, x, n, 0));
    bool same = memcmp(pa, pb, n * CLASSES * sizeof *pa) == 0;
    free(pa);
    free(pb);
    return same;
}

/* The BN layer's four tensors of a and b bit-identical. */
static bool same_bn(const tl_model *a, const tl_model *b)
{
    for (size_t p = 0; p < 4; p++)
        if (!same_tensor(a->layers[1], p, b->layers[1], p))
            return false;
    return true;
}

START_TEST(bn_net_learns_the_spot_task)
{
    /* Two conv -> batchnorm -> conv(relu) blocks, Adam 3e-3, batch 32, 8
     * epochs on 2,000 images (measured: 0.986 test accuracy with 1 thread,
     * 0.987 with 2; one such block alone reaches 0.90, and the two blocks
     * without batch normalization far less). */
    const uint32_t threads = (uint32_t)_i + 1;
    tl_dataset *train = th_spot_dataset(2000, SIDE, SIDE, CH, 1.0f, 0.5f, 1);
    tl_dataset *test = th_spot_dataset(1000, SIDE, SIDE, CH, 1.0f, 0.5f, 2);
    tl_model *m = bn_net_blocks(3, threads, 2);
    compile_adam(m, 3e-3f);
    double loss0, acc0, loss, acc;
    ck_assert_tl_ok(tl_model_evaluate(&loss0, &acc0, m, test, 0));
    fit(m, train, 8, 32, 0);
    ck_assert_tl_ok(tl_model_evaluate(&loss, &acc, m, test, 0));
    fprintf(stderr, "conv-batchnorm net, %u thread(s): test accuracy %.4f (before %.4f), loss %.4f (before %.4f)\n",
            threads, acc, acc0, loss, loss0);
    /* Evaluation uses the moving statistics: high accuracy means they fit. */
    ck_assert_msg(acc > 0.95, "%u threads: test accuracy %.4f", threads, acc);
    ck_assert(loss < loss0 / 5);
    /* The moving statistics have left their start (0, 1). */
    for (size_t i = 1; i < 5; i += 3) {
        const tl_layer *bn = m->layers[i];
        ck_assert_int_eq(bn->ops->kind, TL_LAYER_BATCHNORM);
        for (uint32_t k = 0; k < 8; k++)
            ck_assert(bn->params[2].value[k] != 0.0f && bn->params[3].value[k] != 1.0f);
    }
    /* The checkpoint brings back the same model: same loss and accuracy. */
    char *path = join("bn.tlm");
    ck_assert_tl_ok(tl_model_save(m, path, NULL));
    tl_model *l = NULL;
    ck_assert_tl_ok(tl_model_load(&l, path));
    ck_assert(same_params(m, l));
    double loss2, acc2;
    ck_assert_tl_ok(tl_model_evaluate(&loss2, &acc2, l, test, 0));
    ck_assert(loss2 == loss && acc2 == acc);
    free(path);
    tl_model_free(l);
    tl_model_free(m);
    tl_dataset_free(train);
    tl_dataset_free(test);
}
END_TEST

START_TEST(frozen_batchnorm_keeps_its_tensors)
{
    tl_dataset *ds = th_spot_dataset(256, SIDE, SIDE, CH, 1.0f, 0.5f, 5);
    tl_model *m = bn_net(4, 1);
    compile_adam(m, 3e-3f);
    fit(m, ds, 1, 32, 1); /* the statistics leave (0, 1) */
    tl_layer *bn = m->layers[1];
    float saved[4][8], conv0[3 * 3 * CH * 8];
    for (size_t p = 0; p < 4; p++)
        memcpy(saved[p], bn->params[p].value, sizeof saved[p]);
    memcpy(conv0, m->layers[0]->params[0].value, sizeof conv0);
    ck_assert_tl_ok(tl_layer_set_trainable(bn, 0));
    ck_assert_uint_eq(tl_model_trainable_param_count(m), tl_model_param_count(m) - 32);
    fit(m, ds, 2, 32, 2);
    for (size_t p = 0; p < 4; p++)
        ck_assert_msg(memcmp(saved[p], bn->params[p].value, sizeof saved[p]) == 0, "frozen %s changed",
                      bn->params[p].name);
    /* The convolution below still learned, through the frozen layer. */
    ck_assert(memcmp(conv0, m->layers[0]->params[0].value, sizeof conv0) != 0);
    /* Its output in a training pass is that of inference mode (the layer
     * run alone: an inference pass of the model folds it into the conv). */
    float *x = images(16, 6);
    ck_assert_tl_ok(tli_workspace_ensure(m, 16, true));
    tli_exec ex = tli_exec_for(m, 16, true);
    tli_forward(m, &ex, x, false);
    float *inf = malloc(16 * bn->out_size * sizeof *inf);
    const float *conv_out[1] = {m->layers[0]->out};
    tli_exec ex_inf = tli_exec_for(m, 16, false);
    bn->ops->forward(bn, &ex_inf, conv_out, inf, TL_ACT_LINEAR);
    ck_assert(memcmp(inf, bn->out, 16 * bn->out_size * sizeof *inf) == 0);
    for (size_t p = 0; p < 4; p++)
        ck_assert(memcmp(saved[p], bn->params[p].value, sizeof saved[p]) == 0);
    /* And unfrozen, a training pass uses the batch's statistics. */
    bn->trainable = 1;
    tli_forward(m, &ex, x, false);
    ck_assert(memcmp(inf, bn->out, 16 * bn->out_size * sizeof *inf) != 0);
    ck_assert(memcmp(saved[2], bn->params[2].value, sizeof saved[2]) != 0);
    free(inf);
    free(x);
    tl_model_free(m);
    tl_dataset_free(ds);
}
END_TEST

START_TEST(checkpoint_roundtrip_and_resume)
{
    tl_dataset *ds = th_spot_dataset(256, SIDE, SIDE, CH, 1.0f, 0.5f, 11);
    tl_model *m = bn_net(5, 1);
    compile_adam(m, 3e-3f);
    fit(m, ds, 2, 32, 3);
    char *path = join("bn.tlm");
    ck_assert_tl_ok(tl_model_save(m, path, NULL));
    /* A model with state tensors needs format 1.1. */
    tl_checkpoint_info *info;
    ck_assert_tl_ok(tl_checkpoint_info_read(&info, path));
    uint32_t major, minor;
    ck_assert_tl_ok(tl_checkpoint_info_format_version(&major, &minor, info));
    ck_assert_uint_eq(major, 1);
    ck_assert_uint_eq(minor, 1);
    ck_assert_int_eq(tl_checkpoint_info_layer_kind(info, 1), TL_LAYER_BATCHNORM);
    ck_assert_uint_eq(tl_checkpoint_info_layer_num_params(info, 1), 4);
    char settings[256];
    ck_assert_tl_ok(tl_checkpoint_info_layer_settings(settings, sizeof settings, NULL, info, 1));
    ck_assert_msg(strcmp(settings, "epsilon=0.001, momentum=0.99, center=1, scale=1") == 0, "%s",
                  settings);
    tl_param_info pi;
    ck_assert_tl_ok(tl_checkpoint_info_layer_param(&pi, info, 1, 3));
    ck_assert_str_eq(pi.name, "moving_variance");
    tl_checkpoint_info_free(info);

    tl_model *l = NULL;
    ck_assert_tl_ok(tl_model_load(&l, path));
    ck_assert(same_params(m, l)); /* moving statistics included */
    ck_assert(same_bn(m, l));
    ck_assert_int_eq(l->layers[1]->params[2].role, TLI_ROLE_STATE);
    float *x = images(64, 77);
    ck_assert(same_predictions(m, l, x, 64));
    /* One more epoch on each ends with the same bits. */
    fit(m, ds, 1, 32, 0);
    fit(l, ds, 1, 32, 0);
    ck_assert(same_params(m, l));
    ck_assert(same_predictions(m, l, x, 64));
    tl_model_free(l);
    tl_model_free(m);
    free(path);

    /* 4 epochs straight equal 2, save, load, 2 more. */
    tl_model *straight = bn_net(21, 1), *first = bn_net(21, 1);
    compile_adam(straight, 3e-3f);
    compile_adam(first, 3e-3f);
    fit(straight, ds, 4, 16, 17);
    fit(first, ds, 2, 16, 17);
    path = join("epoch2.tlm");
    ck_assert_tl_ok(tl_model_save(first, path, NULL));
    tl_model_free(first);
    tl_model *resumed = NULL;
    ck_assert_tl_ok(tl_model_load(&resumed, path));
    fit(resumed, ds, 2, 16, 0);
    ck_assert(same_params(straight, resumed));
    ck_assert(same_bn(straight, resumed));
    tl_model_free(resumed);
    tl_model_free(straight);
    free(path);
    free(x);
    tl_dataset_free(ds);
}
END_TEST

/* The safetensors header (JSON) of the file at `path` (caller frees). */
static char *st_header(const char *path)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    unsigned char len8[8];
    ck_assert_uint_eq(fread(len8, 1, 8, f), 8);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = (n << 8) | len8[i];
    ck_assert(n < 1u << 20);
    char *h = malloc(n + 1);
    ck_assert_uint_eq(fread(h, 1, n, f), n);
    h[n] = '\0';
    fclose(f);
    return h;
}

START_TEST(safetensors_roundtrip_keras_and_pytorch)
{
    tl_dataset *ds = th_spot_dataset(256, SIDE, SIDE, CH, 1.0f, 0.5f, 12);
    tl_model *m = bn_net(6, 1);
    compile_adam(m, 3e-3f);
    fit(m, ds, 2, 32, 4);
    float *x = images(32, 78);
    const tl_tensor_layout layouts[2] = {TL_LAYOUT_KERAS, TL_LAYOUT_PYTORCH};
    const char *files[2] = {"bn.keras.safetensors", "bn.torch.safetensors"};
    const char *names[2][4] = {
        {"\"batch_normalization.gamma\"", "\"batch_normalization.beta\"", "\"batch_normalization.moving_mean\"",
         "\"batch_normalization.moving_variance\""},
        {"\"batch_normalization.weight\"", "\"batch_normalization.bias\"", "\"batch_normalization.running_mean\"",
         "\"batch_normalization.running_var\""},
    };
    for (int i = 0; i < 2; i++) {
        char *path = join(files[i]);
        ck_assert_tl_ok(tl_model_save_safetensors(m, path, layouts[i], NULL));
        char *h = st_header(path);
        for (int k = 0; k < 4; k++)
            ck_assert_msg(strstr(h, names[i][k]) != NULL, "%s lacks %s: %s", files[i], names[i][k], h);
        free(h);
        tl_model *fresh = bn_net(99, 1);
        ck_assert(!same_bn(m, fresh));
        tl_transfer_report *rep = NULL;
        ck_assert_tl_ok(tl_model_load_safetensors(&rep, fresh, path, layouts[i], NULL));
        /* conv kernel, the four BN tensors, conv kernel and bias, dense kernel and bias. */
        ck_assert_uint_eq(tl_transfer_report_count_outcome(rep, TL_TRANSFER_COPIED), 9);
        ck_assert_uint_eq(tl_transfer_report_params_copied(rep), tl_model_param_count(m));
        tl_transfer_report_free(rep);
        ck_assert_msg(same_params(m, fresh), "%s: tensors differ", files[i]);
        ck_assert_msg(same_predictions(m, fresh, x, 32), "%s: predictions differ", files[i]);
        tl_model_free(fresh);
        free(path);
    }
    free(x);
    tl_model_free(m);
    tl_dataset_free(ds);
}
END_TEST

START_TEST(copy_and_extractor_carry_the_statistics)
{
    tl_dataset *ds = th_spot_dataset(128, SIDE, SIDE, CH, 1.0f, 0.5f, 13);
    tl_model *m = bn_net(7, 1);
    compile_adam(m, 3e-3f);
    fit(m, ds, 1, 32, 5);
    tl_model *copy = NULL, *ext = NULL;
    ck_assert_tl_ok(tl_model_copy(&copy, m));
    ck_assert(same_params(m, copy));
    float *x = images(16, 79);
    ck_assert(same_predictions(m, copy, x, 16));
    /* The extractor up to the global average pooling: frozen copies, the
     * batch normalization's statistics with them; it predicts what the
     * model computes there. */
    ck_assert_tl_ok(tl_model_extractor_create_at(&ext, m, "global_average_pooling2d"));
    ck_assert(same_bn(m, ext));
    ck_assert_int_eq(tl_layer_is_trainable(ext->layers[1]), 0);
    float feat[16 * 8];
    ck_assert_tl_ok(tl_model_predict(feat, 16 * 8, ext, x, 16, 0));
    ck_assert_tl_ok(tli_workspace_ensure(m, 16, false));
    tli_exec ex = tli_exec_for(m, 16, false);
    tli_forward(m, &ex, x, false);
    ck_assert(memcmp(feat, m->layers[3]->out, sizeof feat) == 0);
    /* Transfer by name into a fresh model carries the statistics. */
    tl_model *fresh = bn_net(8, 1);
    ck_assert_tl_ok(tl_model_transfer_params(NULL, fresh, m, NULL));
    ck_assert(same_bn(m, fresh));
    tl_model_free(fresh);
    tl_model_free(ext);
    tl_model_free(copy);
    tl_model_free(m);
    free(x);
    tl_dataset_free(ds);
}
END_TEST

static bool reduced(void)
{
    const char *r = getenv("TL_TEST_REDUCED");
    return r && r[0] && strcmp(r, "0") != 0;
}

int main(void)
{
    Suite *s = suite_create("batchnorm");
    TCase *tc = tcase_create("layer");
    tcase_add_test(tc, forward_training_by_hand);
    tcase_add_test(tc, forward_inference_by_hand);
    tcase_add_test(tc, moving_statistics_after_a_train_step);
    tcase_add_loop_test(tc, gradients_match_central_differences, 0,
                        (int)(sizeof grad_cases / sizeof grad_cases[0]));
    tcase_add_loop_test(tc, model_gradients_through_the_engine, 0, 2);
    tcase_add_test(tc, threads_give_the_same_bits);
    tcase_add_test(tc, kernel_builds_give_the_same_bits);
    tcase_add_test(tc, fused_relu_backward_equals_two_passes);
    tcase_add_test(tc, one_pass_statistics_are_accurate);
    tcase_add_test(tc, row_groups_sum_every_row);
    tcase_add_test(tc, residual_in_normalize_equals_sum_after);
    tcase_add_test(tc, residual_fused_in_training_forward);
    tcase_add_test(tc, settings_names_and_tensors);
    tcase_add_test(tc, bad_settings_refused);
    suite_add_tcase(s, tc);
    TCase *io = tcase_create("network");
    tcase_add_checked_fixture(io, setup, teardown);
    tcase_add_test(io, frozen_batchnorm_keeps_its_tensors);
    tcase_add_test(io, checkpoint_roundtrip_and_resume);
    tcase_add_test(io, safetensors_roundtrip_keras_and_pytorch);
    tcase_add_test(io, copy_and_extractor_carry_the_statistics);
    suite_add_tcase(s, io);
    TCase *learning = tcase_create("learning");
    tcase_set_tags(learning, "learning");
    tcase_add_checked_fixture(learning, setup, teardown);
    tcase_add_loop_test(learning, bn_net_learns_the_spot_task, 0, reduced() ? 1 : 2);
    suite_add_tcase(s, learning);
    return th_run(s);
}
