/* test_optim.c - optimizer steps against values computed by hand from the
 * formulas in include/tl/optim.h (SGD plain, momentum, Nesterov, weight
 * decay; Adam, Adam with L2, AdamW), per-layer learning-rate scales,
 * frozen layers (no update, no state, bit-identical after fit, even with
 * momentum left over), compile rules and option validation. */
#include <float.h>
#include <stddef.h>
#include <stdio.h>

#include "helpers.h"
#include "train.h"

/* ---- helpers ---------------------------------------------------------------- */

/* input (1, 1, 2) -> flatten -> dense(2): a 2x2 kernel and a bias of 2. */
static tl_model *small_dense(tl_optimizer *opt)
{
    tl_model *m;
    ck_assert_tl_ok(tl_model_create(&m, 1, 1, 2, 1));
    ck_assert_tl_ok(tl_model_set_threads(m, 1));
    ck_assert_tl_ok(tl_model_add_flatten(NULL, m, NULL));
    tl_dense_options d = TL_DENSE_OPTIONS_INIT;
    d.units = 2;
    ck_assert_tl_ok(tl_model_add_dense(NULL, m, &d));
    ck_assert_tl_ok(tl_model_compile(m, opt, TL_LOSS_MEAN_SQUARED_ERROR));
    return m;
}

static void assert_values(const float *got, const float *want, size_t n, double tol, const char *what, int step)
{
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(fabs((double)got[i] - (double)want[i]) <= tol * fmax(1.0, fabs((double)want[i])),
                      "%s, step %d: w[%zu] = %.9g, expected %.9g", what, step, i, (double)got[i], (double)want[i]);
}

/* The two steps every rule is checked on: w0, then gradients g1 and g2
 * (the kernel; the bias is 0 with gradient 0 and must stay 0). */
static const float W0[4] = {1.0f, -2.0f, 0.5f, 0.25f};
static const float G1[4] = {1.0f, -1.0f, 0.5f, 0.0f};
static const float G2[4] = {0.5f, 0.5f, -1.0f, 0.25f};

/* Two updates of the dense layer's kernel with G1 then G2 set directly as
 * its gradients; compares with want1 / want2 and checks the step count. */
static void two_steps(tl_optimizer *opt, float lr_scale, const float want1[4], const float want2[4], const char *what)
{
    tl_model *m = small_dense(opt);
    tl_layer *l = m->layers[1];
    ck_assert_tl_ok(tl_layer_set_lr_scale(l, lr_scale));
    ck_assert_tl_ok(tl_layer_set_weights(l, 0, W0, 4));
    ck_assert_tl_ok(tli_train_prepare(m));
    float w[4], b[2];
    const float zero[2] = {0, 0};
    for (int step = 1; step <= 2; step++) {
        memcpy(l->params[0].grad, step == 1 ? G1 : G2, sizeof W0);
        memset(l->params[1].grad, 0, 2 * sizeof(float));
        tli_train_update(m);
        ck_assert_tl_ok(tl_layer_get_weights(w, 4, l, 0));
        assert_values(w, step == 1 ? want1 : want2, 4, 2e-6, what, step);
        ck_assert_tl_ok(tl_layer_get_weights(b, 2, l, 1));
        assert_values(b, zero, 2, 0.0, what, step);
    }
    ck_assert_uint_eq(tl_optimizer_steps(tl_model_optimizer(m)), 2);
    tl_model_free(m);
}

static tl_optimizer *sgd(float lr, float momentum, int nesterov, float wd)
{
    tl_sgd_options o = TL_SGD_OPTIONS_INIT;
    o.learning_rate = lr;
    o.momentum = momentum;
    o.nesterov = nesterov;
    o.weight_decay = wd;
    tl_optimizer *opt;
    ck_assert_tl_ok(tl_optimizer_create_sgd(&opt, &o));
    ck_assert_int_eq(tl_optimizer_get_kind(opt), TL_OPT_SGD);
    return opt;
}

static tl_optimizer *adam(bool decoupled, float lr, float wd)
{
    tl_adam_options o = TL_ADAM_OPTIONS_INIT;
    o.learning_rate = lr;
    o.weight_decay = wd;
    tl_optimizer *opt;
    if (decoupled)
        ck_assert_tl_ok(tl_optimizer_create_adamw(&opt, &o));
    else
        ck_assert_tl_ok(tl_optimizer_create_adam(&opt, &o));
    ck_assert_int_eq(tl_optimizer_get_kind(opt), decoupled ? TL_OPT_ADAMW : TL_OPT_ADAM);
    return opt;
}

/* ---- SGD ------------------------------------------------------------------- */

START_TEST(sgd_plain_and_weight_decay)
{
    /* w -= lr (g + wd w), lr 0.1:
     * step 1: 1 - 0.1*1 = 0.9, -2 + 0.1 = -1.9, 0.5 - 0.05 = 0.45, 0.25;
     * step 2: 0.9 - 0.05 = 0.85, -1.9 - 0.05 = -1.95, 0.45 + 0.1 = 0.55, 0.25 - 0.025 = 0.225. */
    const float plain1[4] = {0.9f, -1.9f, 0.45f, 0.25f}, plain2[4] = {0.85f, -1.95f, 0.55f, 0.225f};
    two_steps(sgd(0.1f, 0, 0, 0), 1.0f, plain1, plain2, "sgd");
    /* wd 0.5, step 1: g + 0.5 w = (1.5, -2, 0.75, 0.125) -> (0.85, -1.8, 0.425, 0.2375). */
    const float wd1[4] = {0.85f, -1.8f, 0.425f, 0.2375f}, wd2[4] = {0.7575f, -1.76f, 0.50375f, 0.200625f};
    two_steps(sgd(0.1f, 0, 0, 0.5f), 1.0f, wd1, wd2, "sgd, weight decay");
}
END_TEST

START_TEST(sgd_momentum_and_nesterov)
{
    /* v = 0.9 v - 0.1 g; w += v.
     * step 1: v = (-0.1, 0.1, -0.05, 0) -> w = (0.9, -1.9, 0.45, 0.25);
     * step 2: v = (-0.09 - 0.05, 0.09 - 0.05, -0.045 + 0.1, -0.025)
     *           = (-0.14, 0.04, 0.055, -0.025) -> w = (0.76, -1.86, 0.505, 0.225). */
    const float mom1[4] = {0.9f, -1.9f, 0.45f, 0.25f}, mom2[4] = {0.76f, -1.86f, 0.505f, 0.225f};
    two_steps(sgd(0.1f, 0.9f, 0, 0), 1.0f, mom1, mom2, "momentum");
    /* Nesterov (Keras): v = 0.9 v - 0.1 g; w += 0.9 v - 0.1 g.
     * step 1: w += 0.9 (-0.1, 0.1, -0.05, 0) - (0.1, -0.1, 0.05, 0) -> (0.81, -1.81, 0.405, 0.25);
     * step 2: w += 0.9 (-0.14, 0.04, 0.055, -0.025) - (0.05, 0.05, -0.1, 0.025)
     *            = (-0.176, -0.014, 0.1495, -0.0475) -> (0.634, -1.824, 0.5545, 0.2025). */
    const float nes1[4] = {0.81f, -1.81f, 0.405f, 0.25f}, nes2[4] = {0.634f, -1.824f, 0.5545f, 0.2025f};
    two_steps(sgd(0.1f, 0.9f, 1, 0), 1.0f, nes1, nes2, "nesterov");
    /* Nesterov with weight decay 0.5 (added to g before both uses). */
    const float nwd1[4] = {0.715f, -1.62f, 0.3575f, 0.22625f};
    const float nwd2[4] = {0.430575f, -1.3991f, 0.4527875f, 0.14713125f};
    two_steps(sgd(0.1f, 0.9f, 1, 0.5f), 1.0f, nwd1, nwd2, "nesterov, weight decay");
}
END_TEST

/* ---- Adam ------------------------------------------------------------------- */

START_TEST(adam_steps)
{
    /* Keras: m = 0.9 m + 0.1 g; v = 0.999 v + 0.001 g^2;
     * w -= lr sqrt(1 - 0.999^t) / (1 - 0.9^t) * m / (sqrt(v) + 1e-7).
     * Step 1 moves every weight with g != 0 by lr * |g| / (|g| + 1e-7 /
     * sqrt(0.001)) ~ lr against the sign of g: (0.9, -1.9, 0.4, 0.25) with
     * lr 0.1, up to 3e-7; the weight with g = 0 stays (m = v = 0). */
    const float a1[4] = {0.900000316f, -1.90000032f, 0.400000632f, 0.25f};
    const float a2[4] = {0.806782616f, -1.87336669f, 0.436610882f, 0.175587259f};
    two_steps(adam(false, 0.1f, 0), 1.0f, a1, a2, "adam");
    /* Adam with weight_decay 0.5: L2, g + 0.5 w enters the moments, so
     * even the zero-gradient weight moves by ~lr: 0.25 -> 0.15. */
    const float l1[4] = {0.900000211f, -1.90000016f, 0.400000422f, 0.15000253f};
    const float l2[4] = {0.803571279f, -1.81828783f, 0.408484798f, 0.0565020578f};
    two_steps(adam(false, 0.1f, 0.5f), 1.0f, l1, l2, "adam, L2");
    /* AdamW: the Adam step minus lr * wd * w of the weight before the
     * step: 1 - 0.1 - 0.05 = 0.85, 0.25 - 0.0125 = 0.2375. */
    const float w1[4] = {0.850000316f, -1.80000032f, 0.375000632f, 0.2375f};
    const float w2[4] = {0.7142826f, -1.68336667f, 0.39286085f, 0.151212259f};
    two_steps(adam(true, 0.1f, 0.5f), 1.0f, w1, w2, "adamw");
}
END_TEST

START_TEST(lr_scale_multiplies_the_step)
{
    /* Base lr 0.2 with scale 0.5 is lr 0.1: the same numbers as above,
     * including AdamW's decoupled decay. */
    const float plain1[4] = {0.9f, -1.9f, 0.45f, 0.25f}, plain2[4] = {0.85f, -1.95f, 0.55f, 0.225f};
    two_steps(sgd(0.2f, 0, 0, 0), 0.5f, plain1, plain2, "sgd, lr scale 0.5");
    const float w1[4] = {0.850000316f, -1.80000032f, 0.375000632f, 0.2375f};
    const float w2[4] = {0.7142826f, -1.68336667f, 0.39286085f, 0.151212259f};
    two_steps(adam(true, 0.2f, 0.5f), 0.5f, w1, w2, "adamw, lr scale 0.5");
    /* Scale 0: nothing moves, not even by weight decay or momentum. */
    two_steps(sgd(0.1f, 0.9f, 1, 0.5f), 0.0f, W0, W0, "nesterov, lr scale 0");
    two_steps(adam(true, 0.1f, 0.5f), 0.0f, W0, W0, "adamw, lr scale 0");

    tl_model *m;
    ck_assert_tl_ok(tl_model_create(&m, 2, 2, 1, 1));
    tl_layer *l;
    ck_assert_tl_ok(tl_model_add_flatten(&l, m, NULL));
    ck_assert(tl_layer_lr_scale(l) == 1.0f);
    ck_assert_tl_ok(tl_layer_set_lr_scale(l, 0.25f));
    ck_assert(tl_layer_lr_scale(l) == 0.25f);
    ck_assert_tl_err(tl_layer_set_lr_scale(l, -0.5f), TL_EINVAL, "scale");
    ck_assert_tl_err(tl_layer_set_lr_scale(l, NAN), TL_EINVAL, "finite");
    ck_assert_tl_err(tl_layer_set_lr_scale(l, INFINITY), TL_EINVAL, "finite");
    ck_assert_tl_err(tl_layer_set_lr_scale(NULL, 1.0f), TL_EINVAL, "NULL");
    ck_assert(tl_layer_lr_scale(l) == 0.25f);
    ck_assert(tl_layer_lr_scale(NULL) == 0.0f);
    tl_model_free(m);
}
END_TEST

/* ---- through a training step --------------------------------------------------- */

START_TEST(train_step_by_hand)
{
    /* dense(1) on x = (1, 2), w = (0.5, -0.25), b = 0.1, target 1, MSE:
     * y = 0.5 - 0.5 + 0.1 = 0.1, loss (0.1 - 1)^2 = 0.81,
     * dL/dw = 2 (y - t) x = (-1.8, -3.6), dL/db = -1.8. */
    for (int k = 0; k < 2; k++) {
        tl_model *m;
        ck_assert_tl_ok(tl_model_create(&m, 1, 1, 2, 1));
        ck_assert_tl_ok(tl_model_set_threads(m, 1));
        ck_assert_tl_ok(tl_model_add_flatten(NULL, m, NULL));
        tl_dense_options d = TL_DENSE_OPTIONS_INIT;
        d.units = 1;
        tl_layer *l;
        ck_assert_tl_ok(tl_model_add_dense(&l, m, &d));
        const float w[2] = {0.5f, -0.25f}, b[1] = {0.1f}, x[2] = {1, 2}, t[1] = {1};
        ck_assert_tl_ok(tl_layer_set_weights(l, 0, w, 2));
        ck_assert_tl_ok(tl_layer_set_weights(l, 1, b, 1));
        ck_assert_tl_ok(tl_model_compile(m, k ? adam(false, 0.01f, 0) : sgd(0.1f, 0, 0, 0),
                                         TL_LOSS_MEAN_SQUARED_ERROR));
        double loss = -1;
        ck_assert_tl_ok(tl_model_train_step(&loss, m, x, NULL, t, 1));
        ck_assert_close(loss, 0.81, 1e-6);
        float w_after[2], b_after[1];
        ck_assert_tl_ok(tl_layer_get_weights(w_after, 2, l, 0));
        ck_assert_tl_ok(tl_layer_get_weights(b_after, 1, l, 1));
        if (k == 0) {
            /* SGD lr 0.1: w = (0.5 + 0.18, -0.25 + 0.36), b = 0.1 + 0.18 */
            ck_assert_close(w_after[0], 0.68, 1e-6);
            ck_assert_close(w_after[1], 0.11, 1e-6);
            ck_assert_close(b_after[0], 0.28, 1e-6);
        } else {
            /* Adam lr 0.01, step 1: every parameter moves by ~0.01. */
            ck_assert_close(w_after[0], 0.51, 1e-6);
            ck_assert_close(w_after[1], -0.24, 1e-6);
            ck_assert_close(b_after[0], 0.11, 1e-6);
        }
        ck_assert_uint_eq(tl_optimizer_steps(tl_model_optimizer(m)), 1);
        tl_model_free(m);
    }
}
END_TEST

/* ---- frozen layers ------------------------------------------------------------ */

static float *copy_params(const tl_model *m, size_t layer, size_t p, size_t *count)
{
    tl_layer *l;
    tl_param_info info;
    ck_assert_tl_ok(tl_model_layer(&l, m, layer));
    ck_assert_tl_ok(tl_layer_param_info(&info, l, p));
    float *v = malloc(info.count * sizeof *v);
    ck_assert_tl_ok(tl_layer_get_weights(v, info.count, l, p));
    *count = info.count;
    return v;
}

static bool params_equal(const tl_model *m, size_t layer, const float *kernel, const float *bias)
{
    size_t nk, nb;
    float *k = copy_params(m, layer, 0, &nk), *b = copy_params(m, layer, 1, &nb);
    bool same = memcmp(k, kernel, nk * sizeof *k) == 0 && memcmp(b, bias, nb * sizeof *b) == 0;
    free(k);
    free(b);
    return same;
}

START_TEST(frozen_layers_get_no_update_and_no_state)
{
    /* AdamW with decay, SGD with Nesterov momentum and decay, plain SGD:
     * a frozen layer keeps every bit, and only learning layers get state. */
    tl_dataset *ds = th_quadrant_dataset(48, 12, 12, 3, 5);
    ck_assert_ptr_nonnull(ds);
    for (int k = 0; k < 3; k++) {
        tl_model *m = th_seed_cnn(12, 12, 3, 4, 9);
        tl_optimizer *opt = k == 0 ? adam(true, 0.01f, 0.1f) : k == 1 ? sgd(0.05f, 0.9f, 1, 0.1f) : sgd(0.05f, 0, 0, 0);
        const size_t slots = k == 0 ? 2 : k == 1 ? 1 : 0;
        ck_assert_tl_ok(tl_model_compile(m, opt, TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY));
        tl_layer *conv0, *conv1;
        ck_assert_tl_ok(tl_model_layer(&conv0, m, 0));
        ck_assert_tl_ok(tl_model_layer(&conv1, m, 2));
        ck_assert_tl_ok(tl_layer_set_trainable(conv0, 0));
        ck_assert_int_eq(tl_layer_is_trainable(conv0), 0);
        size_t nk, nb, n1;
        float *k0 = copy_params(m, 0, 0, &nk), *b0 = copy_params(m, 0, 1, &nb), *k1 = copy_params(m, 2, 0, &n1);
        ck_assert_uint_eq(tl_model_optimizer_state_bytes(m), 0);
        ck_assert_uint_eq(tl_model_trainable_param_count(m), tl_model_param_count(m) - (nk + nb));
        tl_fit_options fo = TL_FIT_OPTIONS_INIT;
        fo.epochs = 2;
        fo.batch_size = 16;
        ck_assert_tl_ok(tl_model_fit(m, ds, &fo));
        ck_assert_msg(params_equal(m, 0, k0, b0), "optimizer %d: the frozen layer changed", k);
        size_t n1b;
        float *k1b = copy_params(m, 2, 0, &n1b);
        ck_assert_msg(memcmp(k1, k1b, n1 * sizeof *k1) != 0, "optimizer %d: a trainable layer did not change", k);
        free(k1b);
        ck_assert_ptr_null(conv0->params[0].state[0]);
        ck_assert_ptr_null(conv0->params[1].state[1]);
        const size_t learning = tl_model_trainable_param_count(m);
        ck_assert_uint_eq(tl_model_optimizer_state_bytes(m), slots * learning * sizeof(float));

        /* Unfreeze: it learns and gets state. Freeze again after it built
         * up momentum: it must not move any more. */
        ck_assert_tl_ok(tl_layer_set_trainable(conv0, 1));
        ck_assert_tl_ok(tl_model_fit(m, ds, &fo));
        ck_assert(!params_equal(m, 0, k0, b0));
        ck_assert_uint_eq(tl_model_optimizer_state_bytes(m), slots * tl_model_param_count(m) * sizeof(float));
        free(k0), free(b0);
        k0 = copy_params(m, 0, 0, &nk);
        b0 = copy_params(m, 0, 1, &nb);
        ck_assert_tl_ok(tl_layer_set_trainable(conv0, 0));
        ck_assert_tl_ok(tl_layer_set_trainable(conv1, 0));
        ck_assert_tl_ok(tl_model_fit(m, ds, &fo));
        ck_assert_msg(params_equal(m, 0, k0, b0), "optimizer %d: left-over momentum moved a frozen layer", k);
        /* Single steps too. */
        const float *x = tl_dataset_images(ds);
        const int32_t *y = tl_dataset_labels(ds);
        ck_assert_tl_ok(tl_model_train_step(NULL, m, x, y, NULL, 8));
        ck_assert(params_equal(m, 0, k0, b0));
        /* Resetting drops all state. */
        ck_assert_tl_ok(tl_model_reset_optimizer(m));
        ck_assert_uint_eq(tl_model_optimizer_state_bytes(m), 0);
        ck_assert_uint_eq(tl_optimizer_steps(tl_model_optimizer(m)), 0);
        free(k0), free(b0), free(k1);
        tl_model_free(m);
    }
    tl_dataset_free(ds);
}
END_TEST

/* ---- compile and options ---------------------------------------------------------- */

START_TEST(defaults_are_keras)
{
    tl_adam_options a;
    ck_assert_tl_ok(tl_adam_options_init(&a, TL_ADAM_OPTIONS_VERSION));
    ck_assert(a.version == 1 && a.learning_rate == 1e-3f && a.beta1 == 0.9f && a.beta2 == 0.999f &&
              a.epsilon == 1e-7f && a.weight_decay == 0.0f);
    tl_sgd_options s;
    ck_assert_tl_ok(tl_sgd_options_init(&s, TL_SGD_OPTIONS_VERSION));
    ck_assert(s.version == 1 && s.learning_rate == 0.01f && s.momentum == 0.0f && s.nesterov == 0 &&
              s.weight_decay == 0.0f);
    tl_optimizer *o;
    ck_assert_tl_ok(tl_optimizer_create_adam(&o, NULL));
    ck_assert(tl_optimizer_learning_rate(o) == 1e-3f);
    ck_assert_uint_eq(tl_optimizer_steps(o), 0);
    ck_assert_tl_ok(tl_optimizer_set_learning_rate(o, 0.5f));
    ck_assert(tl_optimizer_learning_rate(o) == 0.5f);
    ck_assert_tl_err(tl_optimizer_set_learning_rate(o, 0.0f), TL_EINVAL, "learning rate");
    ck_assert_tl_err(tl_optimizer_set_learning_rate(o, NAN), TL_EINVAL, "learning rate");
    ck_assert_tl_err(tl_optimizer_set_learning_rate(NULL, 1.0f), TL_EINVAL, "NULL");
    ck_assert(tl_optimizer_learning_rate(o) == 0.5f);
    tl_optimizer_free(o);
    ck_assert_tl_ok(tl_optimizer_create_sgd(&o, NULL));
    ck_assert(tl_optimizer_learning_rate(o) == 0.01f);
    tl_optimizer_free(o);
    tl_optimizer_free(NULL);
    ck_assert_int_eq(tl_optimizer_get_kind(NULL), 0);
    ck_assert(tl_optimizer_learning_rate(NULL) == 0.0f);
    ck_assert_str_eq(tl_loss_str(TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY), "sparse_categorical_crossentropy");
    ck_assert_str_eq(tl_loss_str(TL_LOSS_MEAN_SQUARED_ERROR), "mean_squared_error");
    ck_assert_str_eq(tl_loss_str((tl_loss)42), "unknown");
}
END_TEST

START_TEST(options_are_validated)
{
    tl_optimizer *o = (tl_optimizer *)&o; /* not NULL: constructors clear it on error */
    tl_adam_options a = TL_ADAM_OPTIONS_INIT;
    static const struct {
        int field; /* 0 lr, 1 beta1, 2 beta2, 3 epsilon, 4 weight decay */
        float value;
        const char *needle;
    } bad_adam[] = {
        {0, 0.0f, "learning_rate"}, {0, -1.0f, "learning_rate"}, {0, NAN, "learning_rate"},
        {0, INFINITY, "learning_rate"}, {1, 1.0f, "beta1"},      {1, -0.1f, "beta1"},
        {2, 1.0f, "beta2"},         {2, NAN, "beta2"},         {3, 0.0f, "epsilon"},
        {3, -1e-7f, "epsilon"},     {4, -0.1f, "weight_decay"}, {4, INFINITY, "weight_decay"},
        {4, NAN, "weight_decay"},
    };
    for (size_t i = 0; i < sizeof bad_adam / sizeof bad_adam[0]; i++)
        for (int w = 0; w < 2; w++) {
            tl_adam_options b = a;
            float *f[5] = {&b.learning_rate, &b.beta1, &b.beta2, &b.epsilon, &b.weight_decay};
            *f[bad_adam[i].field] = bad_adam[i].value;
            o = (tl_optimizer *)&o;
            if (w)
                ck_assert_tl_err(tl_optimizer_create_adamw(&o, &b), TL_EINVAL, bad_adam[i].needle);
            else
                ck_assert_tl_err(tl_optimizer_create_adam(&o, &b), TL_EINVAL, bad_adam[i].needle);
            ck_assert_ptr_null(o);
        }
    tl_sgd_options s = TL_SGD_OPTIONS_INIT;
    static const struct {
        int field; /* 0 lr, 1 momentum, 2 weight decay */
        float value;
        const char *needle;
    } bad_sgd[] = {
        {0, 0.0f, "learning_rate"}, {0, -0.01f, "learning_rate"}, {0, INFINITY, "learning_rate"},
        {1, 1.0f, "momentum"},      {1, -0.5f, "momentum"},       {1, NAN, "momentum"},
        {2, -1.0f, "weight_decay"}, {2, INFINITY, "weight_decay"},
    };
    for (size_t i = 0; i < sizeof bad_sgd / sizeof bad_sgd[0]; i++) {
        tl_sgd_options b = s;
        float *f[3] = {&b.learning_rate, &b.momentum, &b.weight_decay};
        *f[bad_sgd[i].field] = bad_sgd[i].value;
        o = (tl_optimizer *)&o;
        ck_assert_tl_err(tl_optimizer_create_sgd(&o, &b), TL_EINVAL, bad_sgd[i].needle);
        ck_assert_ptr_null(o);
    }
    /* Versions: 0 and a future one are refused; NULL out / opts. */
    a.version = 0;
    ck_assert_tl_err(tl_optimizer_create_adam(&o, &a), TL_EVERSION, "version 0");
    a.version = 2;
    ck_assert_tl_err(tl_optimizer_create_adamw(&o, &a), TL_EVERSION, "version 2");
    s.version = 7;
    ck_assert_tl_err(tl_optimizer_create_sgd(&o, &s), TL_EVERSION, "version 7");
    ck_assert_tl_err(tl_optimizer_create_adam(NULL, NULL), TL_EINVAL, "out is NULL");
    ck_assert_tl_err(tl_optimizer_create_sgd(NULL, NULL), TL_EINVAL, "out is NULL");
    ck_assert_tl_err(tl_adam_options_init(NULL, 1), TL_EINVAL, "NULL");
    ck_assert_tl_err(tl_adam_options_init(&a, 0), TL_EVERSION, "version 0");
    ck_assert_tl_err(tl_sgd_options_init(&s, 2), TL_EVERSION, "version 2");
    ck_assert_tl_err(tl_sgd_options_init(NULL, 1), TL_EINVAL, "NULL");
    /* Edge values that are allowed: beta 0, momentum 0, decay 0. */
    tl_adam_options edge = TL_ADAM_OPTIONS_INIT;
    edge.beta1 = 0.0f;
    edge.beta2 = 0.0f;
    ck_assert_tl_ok(tl_optimizer_create_adam(&o, &edge));
    tl_optimizer_free(o);
}
END_TEST

START_TEST(compile_rules)
{
    tl_model *m, *other;
    ck_assert_tl_ok(tl_model_create(&m, 2, 2, 1, 1));
    ck_assert_tl_ok(tl_model_create(&other, 2, 2, 1, 1));
    /* No layers yet: ESTATE; the model takes (frees) the optimizer anyway. */
    tl_optimizer *o;
    ck_assert_tl_ok(tl_optimizer_create_sgd(&o, NULL));
    ck_assert_tl_err(tl_model_compile(m, o, TL_LOSS_MEAN_SQUARED_ERROR), TL_ESTATE, "no layers");
    ck_assert_ptr_null(tl_model_optimizer(m));
    ck_assert_int_eq(tl_model_loss(m), 0);

    ck_assert_tl_ok(tl_model_add_flatten(NULL, m, NULL));
    tl_dense_options d = TL_DENSE_OPTIONS_INIT;
    d.units = 3;
    d.activation = TL_ACT_SIGMOID;
    ck_assert_tl_ok(tl_model_add_dense(NULL, m, &d));
    ck_assert_tl_ok(tl_model_add_flatten(NULL, other, NULL));
    ck_assert_tl_ok(tl_model_add_dense(NULL, other, &d));

    ck_assert_tl_ok(tl_optimizer_create_sgd(&o, NULL));
    ck_assert_tl_err(tl_model_compile(m, o, (tl_loss)9), TL_EINVAL, "unknown loss 9");
    ck_assert_tl_ok(tl_optimizer_create_sgd(&o, NULL));
    ck_assert_tl_err(tl_model_compile(m, o, TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY), TL_EINVAL,
                     "softmax or linear");
    ck_assert_tl_ok(tl_optimizer_create_adam(&o, NULL));
    ck_assert_tl_ok(tl_model_compile(m, o, TL_LOSS_MEAN_SQUARED_ERROR)); /* MSE after sigmoid is fine */
    ck_assert_ptr_eq(tl_model_optimizer(m), o);
    ck_assert_int_eq(tl_model_loss(m), TL_LOSS_MEAN_SQUARED_ERROR);
    tl_optimizer_free(o); /* owned by the model: a no-op */
    ck_assert_ptr_eq(tl_model_optimizer(m), o);
    /* The same optimizer again (a new loss), and not in a second model. */
    ck_assert_tl_ok(tl_model_compile(m, o, TL_LOSS_MEAN_SQUARED_ERROR));
    ck_assert_tl_err(tl_model_compile(other, o, TL_LOSS_MEAN_SQUARED_ERROR), TL_EINVAL,
                     "belongs to another model");
    ck_assert_ptr_null(tl_model_optimizer(other));
    /* A new optimizer replaces (and frees) the old one. */
    tl_optimizer *o2;
    ck_assert_tl_ok(tl_optimizer_create_sgd(&o2, NULL));
    ck_assert_tl_ok(tl_model_compile(m, o2, TL_LOSS_MEAN_SQUARED_ERROR));
    ck_assert_ptr_eq(tl_model_optimizer(m), o2);
    /* NULLs: a NULL model still takes the optimizer. */
    ck_assert_tl_ok(tl_optimizer_create_sgd(&o, NULL));
    ck_assert_tl_err(tl_model_compile(NULL, o, TL_LOSS_MEAN_SQUARED_ERROR), TL_EINVAL, "model is NULL");
    /* No optimizer: the loss alone (for evaluate); still checked. */
    ck_assert_tl_ok(tl_model_compile(m, NULL, TL_LOSS_MEAN_SQUARED_ERROR));
    ck_assert_int_eq(tl_model_loss(m), TL_LOSS_MEAN_SQUARED_ERROR);
    ck_assert_ptr_eq(tl_model_optimizer(m), o2);
    ck_assert_tl_err(tl_model_compile(m, NULL, (tl_loss)77), TL_EINVAL, "unknown loss 77");
    ck_assert_tl_err(tl_model_reset_optimizer(NULL), TL_EINVAL, "NULL");
    ck_assert_uint_eq(tl_model_optimizer_state_bytes(NULL), 0);
    ck_assert_ptr_null(tl_model_optimizer(NULL));
    tl_model_free(m);
    tl_model_free(other);
}
END_TEST

/* ---- learning-rate schedules ------------------------------------------------------ */

static tl_optimizer *scheduled(tl_optimizer *opt, const tl_schedule_options *s)
{
    ck_assert_tl_ok(tl_optimizer_set_schedule(opt, s));
    return opt;
}

/* The rate the optimizer gives after `epochs` fit epochs and `steps` steps
 * (counters set directly). */
static double rate_at(tl_optimizer *o, uint32_t epochs, uint64_t steps)
{
    o->sched.epoch = epochs;
    o->steps = o->sched.origin + steps;
    return tl_optimizer_current_learning_rate(o);
}

#define ck_assert_rate(got, want)                                                                          \
    do {                                                                                                   \
        double g_ = (got), w_ = (want);                                                                    \
        ck_assert_msg(fabs(g_ - w_) <= 1e-6 * fabs(w_) + 1e-12, "%s = %.9g, expected %.9g", #got, g_, w_); \
    } while (0)

START_TEST(schedule_options_defaults)
{
    tl_schedule_options s;
    ck_assert_tl_ok(tl_schedule_options_init(&s, TL_SCHEDULE_OPTIONS_VERSION));
    ck_assert(s.version == 1 && s.kind == TL_SCHEDULE_CONSTANT && s.gamma == 0.1f && s.step_size == 0 &&
              s.num_milestones == 0 && s.total_steps == 0 && s.warmup_steps == 0 && s.warmup_start_factor == 0.0f &&
              s.min_lr == 0.0f && s.pct_start == 0.3f && s.div_factor == 25.0f && s.final_div_factor == 1e4f &&
              s.monitor == TL_MONITOR_VAL_LOSS && s.factor == 0.1f && s.patience == 10 && s.min_delta == 1e-4f &&
              s.cooldown == 0);
    for (int i = 0; i < TL_SCHEDULE_MAX_MILESTONES; i++)
        ck_assert_uint_eq(s.milestones[i], 0);
    ck_assert_tl_err(tl_schedule_options_init(&s, 0), TL_EVERSION, "version 0");
    ck_assert_tl_err(tl_schedule_options_init(&s, 2), TL_EVERSION, "version 2");
    ck_assert_tl_err(tl_schedule_options_init(NULL, 1), TL_EINVAL, "NULL");
    /* No schedule: the base rate; NULL and CONSTANT remove one. */
    tl_optimizer *o = sgd(0.25f, 0, 0, 0);
    ck_assert(tl_optimizer_current_learning_rate(o) == 0.25f);
    s.kind = TL_SCHEDULE_EXPONENTIAL;
    s.gamma = 0.5f;
    scheduled(o, &s);
    ck_assert_rate(rate_at(o, 2, 0), 0.0625);
    ck_assert_tl_ok(tl_optimizer_set_schedule(o, NULL));
    ck_assert(rate_at(o, 2, 0) == 0.25f);
    scheduled(o, &s);
    s.kind = TL_SCHEDULE_CONSTANT;
    scheduled(o, &s);
    ck_assert(rate_at(o, 2, 0) == 0.25f);
    ck_assert(tl_optimizer_current_learning_rate(NULL) == 0.0f);
    s.version = 3;
    ck_assert_tl_err(tl_optimizer_set_schedule(o, &s), TL_EVERSION, "version 3");
    tl_optimizer_free(o);
}
END_TEST

START_TEST(schedule_rates_by_hand)
{
    tl_schedule_options s = TL_SCHEDULE_OPTIONS_INIT;
    /* step, lr 0.1, gamma 0.5, every 3 epochs: 0.1 for epochs 0-2, 0.05
     * for 3-5, 0.025 from 6, 0.0125 from 9. Steps do not matter. */
    s.kind = TL_SCHEDULE_STEP;
    s.gamma = 0.5f;
    s.step_size = 3;
    tl_optimizer *o = scheduled(sgd(0.1f, 0, 0, 0), &s);
    ck_assert(rate_at(o, 0, 0) == 0.1f); /* gamma^0: the base rate, bit for bit */
    ck_assert(rate_at(o, 2, 1000) == 0.1f);
    ck_assert_rate(rate_at(o, 3, 0), 0.05);
    ck_assert_rate(rate_at(o, 5, 7), 0.05);
    ck_assert_rate(rate_at(o, 6, 0), 0.025);
    ck_assert_rate(rate_at(o, 9, 0), 0.0125);
    /* multistep {2, 5, 6}, gamma 0.1, lr 1: 1, 1, 0.1 (2-4), 0.01 (5),
     * 0.001 from 6 on. */
    s = (tl_schedule_options)TL_SCHEDULE_OPTIONS_INIT;
    s.kind = TL_SCHEDULE_MULTISTEP;
    s.num_milestones = 3;
    s.milestones[0] = 2, s.milestones[1] = 5, s.milestones[2] = 6;
    scheduled(o, &s);
    ck_assert_tl_ok(tl_optimizer_set_learning_rate(o, 1.0f));
    const double ms[8] = {1, 1, 0.1, 0.1, 0.1, 0.01, 0.001, 0.001};
    for (uint32_t e = 0; e < 8; e++)
        ck_assert_rate(rate_at(o, e, 0), ms[e]);
    ck_assert_rate(rate_at(o, 1000, 0), 0.001);
    /* exponential 0.9: 1, 0.9, 0.81, 0.729. */
    s = (tl_schedule_options)TL_SCHEDULE_OPTIONS_INIT;
    s.kind = TL_SCHEDULE_EXPONENTIAL;
    s.gamma = 0.9f;
    scheduled(o, &s);
    ck_assert_rate(rate_at(o, 0, 0), 1.0);
    ck_assert_rate(rate_at(o, 1, 0), 0.9);
    ck_assert_rate(rate_at(o, 2, 0), 0.81);
    ck_assert_rate(rate_at(o, 3, 0), 0.729);
    /* cosine, lr 1, warm-up from 0.2 over 4 steps, down to 0.1 at step 12:
     * warm-up 0.2, 0.4, 0.6, 0.8; step 4 (the boundary) 1; then
     * 0.1 + 0.9 (1 + cos(pi (t - 4) / 8)) / 2: step 6 0.1 + 0.9 * 0.853553 =
     * 0.868198, step 8 0.55, step 11 0.1 + 0.9 * 0.0380602 = 0.134254; from
     * step 12 on 0.1. Epochs do not matter. */
    s = (tl_schedule_options)TL_SCHEDULE_OPTIONS_INIT;
    s.kind = TL_SCHEDULE_COSINE;
    s.total_steps = 12;
    s.warmup_steps = 4;
    s.warmup_start_factor = 0.2f;
    s.min_lr = 0.1f;
    scheduled(o, &s);
    const double cw[4] = {0.2, 0.4, 0.6, 0.8};
    for (uint64_t t = 0; t < 4; t++)
        ck_assert_rate(rate_at(o, 5, t), cw[t]);
    ck_assert_rate(rate_at(o, 0, 4), 1.0);
    ck_assert_rate(rate_at(o, 0, 6), 0.868198052);
    ck_assert_rate(rate_at(o, 0, 8), 0.55);
    ck_assert_rate(rate_at(o, 0, 11), 0.134254212);
    ck_assert_rate(rate_at(o, 0, 12), 0.1);
    ck_assert_rate(rate_at(o, 0, 1000000), 0.1);
    /* Without warm-up (PyTorch's CosineAnnealingLR): lr at step 0. */
    s.warmup_steps = 0;
    scheduled(o, &s);
    ck_assert_rate(rate_at(o, 0, 0), 1.0);
    ck_assert_rate(rate_at(o, 0, 6), 0.55);
    /* total_steps 0 and no fit yet: the base rate. */
    s.total_steps = 0;
    scheduled(o, &s);
    ck_assert_rate(rate_at(o, 0, 6), 1.0);
    /* one-cycle, lr (max) 1 over 10 steps, pct_start 0.3, div 25, final
     * div 1e4: from 0.04 up to 1 at step 0.3 * 10 - 1 = 2, then down to
     * 0.04 / 1e4 = 4e-6 at step 9: step 1 c(0.04, 1, 0.5) = 0.52; step 5
     * c(1, 4e-6, 3/7) = 4e-6 + (1 - 4e-6) (1 + cos(3 pi / 7)) / 2 =
     * 0.611262; step 8 c(1, 4e-6, 6/7) = 0.0495194. (PyTorch's OneCycleLR
     * with cycle_momentum=False gives these numbers.) */
    s = (tl_schedule_options)TL_SCHEDULE_OPTIONS_INIT;
    s.kind = TL_SCHEDULE_ONE_CYCLE;
    s.total_steps = 10;
    scheduled(o, &s);
    ck_assert_rate(rate_at(o, 0, 0), 0.04);
    ck_assert_rate(rate_at(o, 0, 1), 0.52);
    ck_assert_rate(rate_at(o, 0, 2), 1.0);
    ck_assert_rate(rate_at(o, 0, 5), 0.611262);
    ck_assert_rate(rate_at(o, 0, 8), 0.0495194);
    ck_assert_rate(rate_at(o, 0, 9), 4e-6);
    ck_assert_rate(rate_at(o, 0, 50), 4e-6);
    /* The peak is the maximum, and the rate never increases after it. */
    double prev = 2.0;
    for (uint64_t t = 2; t < 12; t++) {
        double r = rate_at(o, 0, t);
        ck_assert_msg(r <= prev, "one-cycle step %llu: %g after %g", (unsigned long long)t, r, prev);
        prev = r;
    }
    tl_optimizer_free(o);
}
END_TEST

START_TEST(plateau_by_hand)
{
    /* lr 1, factor 0.5, patience 2, cooldown 1, floor 0.2, min_delta 0.01,
     * on the validation loss. After each epoch: the loss, the rate (what
     * PyTorch's ReduceLROnPlateau with threshold_mode="abs" gives too). */
    tl_schedule_options s = TL_SCHEDULE_OPTIONS_INIT;
    s.kind = TL_SCHEDULE_REDUCE_ON_PLATEAU;
    s.factor = 0.5f;
    s.patience = 2;
    s.cooldown = 1;
    s.min_lr = 0.2f;
    s.min_delta = 0.01f;
    tl_optimizer *o = scheduled(sgd(1.0f, 0, 0, 0), &s);
    static const struct {
        double loss, rate;
    } seq[] = {
        {1.0, 1},     /* the first: the best */
        {0.995, 1},   /* better by less than min_delta: bad 1 */
        {0.98, 1},    /* better: bad 0 */
        {0.98, 1},    /* bad 1 */
        {0.98, 1},    /* bad 2: patience 2 still holds */
        {0.98, 0.5},  /* bad 3 = patience + 1: reduce, cooldown 1 */
        {0.99, 0.5},  /* bad, but in the cooldown: not counted */
        {NAN, 0.5},   /* bad 1 (NaN is never better) */
        {0.98, 0.5},  /* bad 2 */
        {0.975, 0.25}, /* not better by min_delta: bad 3, reduce */
    };
    for (size_t i = 0; i < sizeof seq / sizeof seq[0]; i++) {
        tli_schedule_epoch_end(&o->sched, o->lr, seq[i].loss, 0.0);
        ck_assert_rate(tl_optimizer_current_learning_rate(o), seq[i].rate);
        ck_assert_uint_eq(o->sched.epoch, i + 1);
    }
    ck_assert_rate(tl_optimizer_current_learning_rate(o), 0.25);
    ck_assert_double_eq(o->sched.best, 0.98);
    /* Reductions stop at the floor: 0.25 -> max(0.125, 0.2) = 0.2, then no
     * further (the rate is at min_lr). */
    for (int i = 0; i < 4; i++) /* cooldown, bad 1, 2, 3 */
        tli_schedule_epoch_end(&o->sched, o->lr, 5.0, 0.0);
    ck_assert_rate(tl_optimizer_current_learning_rate(o), 0.2);
    ck_assert_double_eq(o->sched.scale, 0.125);
    for (int i = 0; i < 12; i++)
        tli_schedule_epoch_end(&o->sched, o->lr, 5.0, 0.0);
    ck_assert_rate(tl_optimizer_current_learning_rate(o), 0.2);
    ck_assert_double_eq(o->sched.scale, 0.125);
    /* On the accuracy, higher is better; patience 0: the first epoch that
     * does not beat the best by min_delta reduces. */
    s.monitor = TL_MONITOR_VAL_ACCURACY;
    s.patience = 0;
    s.cooldown = 0;
    s.min_lr = 0.0f;
    scheduled(o, &s);
    const double acc[5] = {0.5, 0.6, 0.605, 0.7, 0.7}, rate[5] = {1, 1, 0.5, 0.5, 0.25};
    for (int i = 0; i < 5; i++) {
        tli_schedule_epoch_end(&o->sched, o->lr, 100.0, acc[i]);
        ck_assert_rate(tl_optimizer_current_learning_rate(o), rate[i]);
    }
    /* The base rate can still change: the reduction is relative to it. */
    ck_assert_tl_ok(tl_optimizer_set_learning_rate(o, 0.4f));
    ck_assert_rate(tl_optimizer_current_learning_rate(o), 0.1);
    tl_optimizer_free(o);
}
END_TEST

/* What the callbacks saw. */
typedef struct rate_log {
    size_t n, epochs;
    double rate[256];
    double epoch_rate[32], next_rate[32];
    tl_optimizer *opt;
    uint32_t cancel_after; /* 0: never */
} rate_log;

static int log_batch(const tl_progress *p, void *payload)
{
    rate_log *g = payload;
    ck_assert_uint_ge(p->struct_size, offsetof(tl_progress, learning_rate) + sizeof(double));
    if (g->n < 256)
        g->rate[g->n++] = p->learning_rate;
    return 0;
}

static int log_epoch(const tl_progress *p, void *payload)
{
    rate_log *g = payload;
    if (g->epochs < 32) {
        g->epoch_rate[g->epochs] = p->learning_rate;
        g->next_rate[g->epochs] = tl_optimizer_current_learning_rate(g->opt);
    }
    g->epochs++;
    return g->cancel_after && p->epoch + 1 == g->cancel_after;
}

static tl_status fit_logged(tl_model *m, const tl_dataset *ds, const tl_dataset *val, uint32_t epochs, uint64_t seed,
                            rate_log *g)
{
    tl_fit_options fo = TL_FIT_OPTIONS_INIT;
    fo.epochs = epochs;
    fo.batch_size = 16;
    fo.seed = seed;
    fo.validation = val;
    fo.on_batch = log_batch;
    fo.on_epoch = log_epoch;
    fo.payload = g;
    g->opt = tl_model_optimizer(m);
    return tl_model_fit(m, ds, &fo);
}

START_TEST(schedule_in_fit_and_train_step)
{
    /* Cosine with warm-up in fit, total_steps left to fit: 2 epochs of 3
     * batches (48 examples, batch 16) make T = 6. lr 0.05, warm-up over 2
     * steps from 0.1 * lr, down to 0.001. */
    tl_dataset *ds = th_quadrant_dataset(48, 12, 12, 1, 5);
    tl_model *m = th_seed_cnn(12, 12, 1, 4, 3);
    tl_schedule_options s = TL_SCHEDULE_OPTIONS_INIT;
    s.kind = TL_SCHEDULE_COSINE;
    s.warmup_steps = 2;
    s.warmup_start_factor = 0.1f;
    s.min_lr = 0.001f;
    tl_optimizer *o = scheduled(sgd(0.05f, 0.9f, 0, 0), &s);
    ck_assert_tl_ok(tl_model_compile(m, o, TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY));
    rate_log g = {0};
    ck_assert_tl_ok(fit_logged(m, ds, NULL, 2, 1, &g));
    ck_assert_uint_eq(g.n, 6);
    ck_assert_uint_eq(o->sched.total, 6);
    ck_assert_uint_eq(o->sched.epoch, 2);
    /* 0.005, 0.0275 (warm-up), then 0.001 + 0.049 (1 + cos(pi k / 4)) / 2
     * for k = 0..3: 0.05, 0.001 + 0.049 * 0.853553 = 0.0428241, 0.0255,
     * 0.001 + 0.049 * 0.146447 = 0.00817588. */
    const double want[6] = {0.005, 0.0275, 0.05, 0.042824116, 0.0255, 0.008175884};
    for (int t = 0; t < 6; t++)
        ck_assert_rate(g.rate[t], (float)want[t]);
    ck_assert_rate(g.epoch_rate[0], g.rate[2]);
    ck_assert_rate(g.epoch_rate[1], g.rate[5]);
    ck_assert_rate(g.next_rate[1], 0.001); /* step 6 = T: min_lr */
    /* A second fit continues the same T (it is set once). */
    rate_log g2 = {0};
    ck_assert_tl_ok(fit_logged(m, ds, NULL, 1, 2, &g2));
    ck_assert_uint_eq(o->sched.total, 6);
    ck_assert_rate(g2.rate[0], 0.001);
    /* Resetting starts the schedule again, T back to "fit sets it". */
    ck_assert_tl_ok(tl_model_reset_optimizer(m));
    ck_assert(o->sched.total == 0 && o->sched.epoch == 0 && o->sched.origin == 0 && o->steps == 0);
    tl_model_free(m);

    /* Single steps move a per-step schedule. dense(1) on x = (1, 2),
     * w = (0.5, -0.25), b = 0.1, target 1, MSE: dL/dw = (-1.8, -3.6) at
     * the first step; plain SGD moves w0 by 1.8 r. lr 0.1, warm-up from
     * 0.5 over 2 steps, T 4: the first step's r is 0.05 -> w0 = 0.59. */
    ck_assert_tl_ok(tl_model_create(&m, 1, 1, 2, 1));
    ck_assert_tl_ok(tl_model_set_threads(m, 1));
    ck_assert_tl_ok(tl_model_add_flatten(NULL, m, NULL));
    tl_dense_options d = TL_DENSE_OPTIONS_INIT;
    d.units = 1;
    tl_layer *l;
    ck_assert_tl_ok(tl_model_add_dense(&l, m, &d));
    const float w[2] = {0.5f, -0.25f}, b[1] = {0.1f}, x[2] = {1, 2}, t[1] = {1};
    ck_assert_tl_ok(tl_layer_set_weights(l, 0, w, 2));
    ck_assert_tl_ok(tl_layer_set_weights(l, 1, b, 1));
    o = sgd(0.1f, 0, 0, 0);
    ck_assert_tl_ok(tl_model_compile(m, o, TL_LOSS_MEAN_SQUARED_ERROR));
    s.total_steps = 0;
    s.warmup_steps = 2;
    s.warmup_start_factor = 0.5f;
    s.min_lr = 0.0f;
    scheduled(o, &s);
    /* T unknown: single steps cannot follow the schedule. */
    ck_assert_tl_err(tl_model_train_step(NULL, m, x, NULL, t, 1), TL_EINVAL, "total_steps is 0");
    ck_assert_uint_eq(tl_optimizer_steps(o), 0);
    s.total_steps = 4;
    scheduled(o, &s);
    ck_assert_rate(tl_optimizer_current_learning_rate(o), 0.05);
    ck_assert_tl_ok(tl_model_train_step(NULL, m, x, NULL, t, 1));
    float w_after[2];
    ck_assert_tl_ok(tl_layer_get_weights(w_after, 2, l, 0));
    ck_assert_close(w_after[0], 0.5 + 1.8 * 0.05, 1e-6);
    ck_assert_close(w_after[1], -0.25 + 3.6 * 0.05, 1e-6);
    ck_assert_rate(tl_optimizer_current_learning_rate(o), 0.075);
    ck_assert_tl_ok(tl_model_train_step(NULL, m, x, NULL, t, 1));
    ck_assert_rate(tl_optimizer_current_learning_rate(o), 0.1);  /* step 2: the end of the warm-up */
    ck_assert_tl_ok(tl_model_train_step(NULL, m, x, NULL, t, 1));
    ck_assert_rate(tl_optimizer_current_learning_rate(o), 0.05); /* step 3: halfway down */
    ck_assert_tl_ok(tl_model_train_step(NULL, m, x, NULL, t, 1));
    ck_assert_rate(tl_optimizer_current_learning_rate(o), 0.0);  /* step 4 = T */
    /* A schedule set on an optimizer that has trained starts at step 0. */
    scheduled(o, &s);
    ck_assert_uint_eq(o->sched.origin, 4);
    ck_assert_rate(tl_optimizer_current_learning_rate(o), 0.05);
    /* Single steps do not count epochs: a per-epoch schedule stays put. */
    s = (tl_schedule_options)TL_SCHEDULE_OPTIONS_INIT;
    s.kind = TL_SCHEDULE_STEP;
    s.step_size = 1;
    scheduled(o, &s);
    for (int i = 0; i < 3; i++)
        ck_assert_tl_ok(tl_model_train_step(NULL, m, x, NULL, t, 1));
    ck_assert_uint_eq(o->sched.epoch, 0);
    ck_assert(tl_optimizer_current_learning_rate(o) == 0.1f);
    /* A rate that overflows is refused before the update. */
    s.kind = TL_SCHEDULE_EXPONENTIAL;
    s.gamma = 1e30f;
    scheduled(o, &s);
    o->sched.epoch = 2;
    ck_assert_tl_ok(tl_layer_get_weights(w_after, 2, l, 0));
    ck_assert_tl_err(tl_model_train_step(NULL, m, x, NULL, t, 1), TL_ENUMERIC, "exponential learning-rate schedule");
    float w_same[2];
    ck_assert_tl_ok(tl_layer_get_weights(w_same, 2, l, 0));
    ck_assert_int_eq(memcmp(w_after, w_same, sizeof w_same), 0);
    tl_model_free(m);
    tl_dataset_free(ds);
}
END_TEST

START_TEST(plateau_in_fit)
{
    /* min_delta 1e9: only the first epoch improves on the best (+inf), so
     * with patience 0 every later epoch reduces: lr 0.05 * 0.5^k. */
    tl_dataset *ds = th_quadrant_dataset(48, 12, 12, 1, 5), *val = th_quadrant_dataset(16, 12, 12, 1, 6);
    for (int acc = 0; acc < 2; acc++) {
        tl_model *m = th_seed_cnn(12, 12, 1, 4, 3);
        tl_schedule_options s = TL_SCHEDULE_OPTIONS_INIT;
        s.kind = TL_SCHEDULE_REDUCE_ON_PLATEAU;
        s.monitor = acc ? TL_MONITOR_VAL_ACCURACY : TL_MONITOR_VAL_LOSS;
        s.factor = 0.5f;
        s.patience = 0;
        s.min_delta = 1e9f;
        tl_optimizer *o = scheduled(adam(false, 0.05f, 0), &s);
        ck_assert_tl_ok(tl_model_compile(m, o, TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY));
        /* Without a validation set: refused before any step. */
        rate_log g = {0};
        float *before = th_all_params(m, &(size_t){0});
        ck_assert_tl_err(fit_logged(m, ds, NULL, 4, 1, &g), TL_EINVAL,
                         acc ? "monitor val_accuracy needs a validation set" : "monitor val_loss needs a validation set");
        ck_assert_uint_eq(tl_optimizer_steps(o), 0);
        ck_assert_uint_eq(g.n, 0);
        size_t n;
        float *after = th_all_params(m, &n);
        ck_assert_int_eq(memcmp(before, after, n * sizeof *after), 0);
        free(before), free(after);
        ck_assert_tl_ok(fit_logged(m, ds, val, 4, 1, &g));
        const double epoch_rate[4] = {0.05, 0.05, 0.025, 0.0125}, next[4] = {0.05, 0.025, 0.0125, 0.00625};
        for (int e = 0; e < 4; e++) {
            ck_assert_rate(g.epoch_rate[e], epoch_rate[e]);
            ck_assert_rate(g.next_rate[e], next[e]);
            for (int b = 0; b < 3; b++)
                ck_assert_rate(g.rate[3 * e + b], epoch_rate[e]);
        }
        tl_model_free(m);
    }
    tl_dataset_free(ds);
    tl_dataset_free(val);
}
END_TEST

START_TEST(bad_schedules)
{
    tl_optimizer *o = sgd(0.1f, 0, 0, 0);
    static const struct {
        tl_schedule_kind kind;
        int field;
        float value;
        const char *needle;
    } bad[] = {
        {TL_SCHEDULE_STEP, 0, 0.0f, "step schedule: gamma 0 must be finite and > 0"},
        {TL_SCHEDULE_STEP, 0, -0.5f, "gamma -0.5"},
        {TL_SCHEDULE_MULTISTEP, 0, NAN, "multistep schedule: gamma nan"},
        {TL_SCHEDULE_EXPONENTIAL, 0, INFINITY, "exponential schedule: gamma inf"},
        {TL_SCHEDULE_COSINE, 1, -0.1f, "cosine schedule: warmup_start_factor -0.1 must be finite and >= 0"},
        {TL_SCHEDULE_COSINE, 1, NAN, "warmup_start_factor nan"},
        {TL_SCHEDULE_COSINE, 2, -1e-3f, "cosine schedule: min_lr -0.001 must be finite and >= 0"},
        {TL_SCHEDULE_COSINE, 2, INFINITY, "min_lr inf"},
        {TL_SCHEDULE_ONE_CYCLE, 3, 0.0f, "one_cycle schedule: pct_start 0 must be in (0, 1)"},
        {TL_SCHEDULE_ONE_CYCLE, 3, 1.0f, "pct_start 1 must be in (0, 1)"},
        {TL_SCHEDULE_ONE_CYCLE, 3, NAN, "pct_start nan"},
        {TL_SCHEDULE_ONE_CYCLE, 4, 0.0f, "one_cycle schedule: div_factor 0 must be finite and > 0"},
        {TL_SCHEDULE_ONE_CYCLE, 4, -25.0f, "div_factor -25"},
        {TL_SCHEDULE_ONE_CYCLE, 5, 0.0f, "one_cycle schedule: final_div_factor 0 must be finite and > 0"},
        {TL_SCHEDULE_ONE_CYCLE, 5, INFINITY, "final_div_factor inf"},
        {TL_SCHEDULE_REDUCE_ON_PLATEAU, 6, 1.0f, "reduce_on_plateau schedule: factor 1 must be in (0, 1)"},
        {TL_SCHEDULE_REDUCE_ON_PLATEAU, 6, 0.0f, "factor 0 must be in (0, 1)"},
        {TL_SCHEDULE_REDUCE_ON_PLATEAU, 6, -0.5f, "factor -0.5"},
        {TL_SCHEDULE_REDUCE_ON_PLATEAU, 6, NAN, "factor nan"},
        {TL_SCHEDULE_REDUCE_ON_PLATEAU, 2, -1.0f, "reduce_on_plateau schedule: min_lr -1 must be finite and >= 0"},
        {TL_SCHEDULE_REDUCE_ON_PLATEAU, 7, -1e-4f, "reduce_on_plateau schedule: min_delta -0.0001"},
        {TL_SCHEDULE_REDUCE_ON_PLATEAU, 7, NAN, "min_delta nan"},
    };
    /* An exponential schedule to be kept through every failure. */
    tl_schedule_options keep = TL_SCHEDULE_OPTIONS_INIT;
    keep.kind = TL_SCHEDULE_EXPONENTIAL;
    keep.gamma = 0.5f;
    scheduled(o, &keep);
    o->sched.epoch = 1;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tl_schedule_options s = TL_SCHEDULE_OPTIONS_INIT;
        s.kind = bad[i].kind;
        s.step_size = 1;
        s.num_milestones = 1;
        float *f[8] = {&s.gamma, &s.warmup_start_factor, &s.min_lr, &s.pct_start, &s.div_factor, &s.final_div_factor,
                       &s.factor, &s.min_delta};
        *f[bad[i].field] = bad[i].value;
        ck_assert_tl_err(tl_optimizer_set_schedule(o, &s), TL_EINVAL, bad[i].needle);
        ck_assert_msg(strstr(tl_last_error(), "tl_optimizer_set_schedule") != NULL, "%s", tl_last_error());
        ck_assert_rate(tl_optimizer_current_learning_rate(o), 0.05); /* unchanged */
    }
    tl_schedule_options s = TL_SCHEDULE_OPTIONS_INIT;
    s.kind = TL_SCHEDULE_STEP;
    ck_assert_tl_err(tl_optimizer_set_schedule(o, &s), TL_EINVAL, "step schedule: step_size 0 must be > 0");
    s.kind = TL_SCHEDULE_MULTISTEP;
    ck_assert_tl_err(tl_optimizer_set_schedule(o, &s), TL_EINVAL, "multistep schedule: num_milestones 0 must be in 1..16");
    s.num_milestones = 17;
    ck_assert_tl_err(tl_optimizer_set_schedule(o, &s), TL_EINVAL, "num_milestones 17");
    s.num_milestones = 3;
    s.milestones[0] = 2, s.milestones[1] = 5, s.milestones[2] = 5;
    ck_assert_tl_err(tl_optimizer_set_schedule(o, &s), TL_EINVAL, "milestones[2] 5 must be greater than milestones[1] 5");
    s.milestones[1] = 1;
    ck_assert_tl_err(tl_optimizer_set_schedule(o, &s), TL_EINVAL, "milestones[1] 1 must be greater than milestones[0] 2");
    s = (tl_schedule_options)TL_SCHEDULE_OPTIONS_INIT;
    s.kind = TL_SCHEDULE_COSINE;
    s.total_steps = 10;
    s.warmup_steps = 11;
    ck_assert_tl_err(tl_optimizer_set_schedule(o, &s), TL_EINVAL, "cosine schedule: warmup_steps 11 must not exceed total_steps 10");
    s.warmup_steps = 10; /* all warm-up: allowed */
    ck_assert_tl_ok(tl_optimizer_set_schedule(o, &s));
    s.kind = TL_SCHEDULE_REDUCE_ON_PLATEAU;
    s.monitor = (tl_schedule_monitor)2;
    ck_assert_tl_err(tl_optimizer_set_schedule(o, &s), TL_EINVAL, "unknown monitor 2");
    s.kind = (tl_schedule_kind)7;
    ck_assert_tl_err(tl_optimizer_set_schedule(o, &s), TL_EINVAL, "unknown schedule kind 7");
    s.kind = (tl_schedule_kind)-1;
    ck_assert_tl_err(tl_optimizer_set_schedule(o, &s), TL_EINVAL, "unknown schedule kind -1");
    ck_assert_tl_err(tl_optimizer_set_schedule(NULL, &s), TL_EINVAL, "optimizer is NULL");
    /* Fields the kind does not read are not checked. */
    s = (tl_schedule_options)TL_SCHEDULE_OPTIONS_INIT;
    s.kind = TL_SCHEDULE_EXPONENTIAL;
    s.gamma = 0.9f;
    s.factor = NAN;
    s.pct_start = -3.0f;
    ck_assert_tl_ok(tl_optimizer_set_schedule(o, &s));
    tl_optimizer_free(o);

    /* fit's own checks, before any step: warm-up longer than the T it
     * sets (2 epochs x 3 batches). */
    tl_dataset *ds = th_quadrant_dataset(48, 12, 12, 1, 5);
    tl_model *m = th_seed_cnn(12, 12, 1, 4, 3);
    s = (tl_schedule_options)TL_SCHEDULE_OPTIONS_INIT;
    s.kind = TL_SCHEDULE_COSINE;
    s.warmup_steps = 7;
    o = scheduled(sgd(0.1f, 0, 0, 0), &s);
    ck_assert_tl_ok(tl_model_compile(m, o, TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY));
    rate_log g = {0};
    ck_assert_tl_err(fit_logged(m, ds, NULL, 2, 1, &g), TL_EINVAL,
                     "cosine schedule: warmup_steps 7 exceeds the total_steps 6 this fit sets (2 epochs x 3 batches");
    ck_assert_uint_eq(tl_optimizer_steps(o), 0);
    ck_assert_uint_eq(o->sched.total, 0);
    ck_assert_tl_ok(fit_logged(m, ds, NULL, 3, 1, &g)); /* T = 9 */
    ck_assert_uint_eq(o->sched.total, 9);
    tl_model_free(m);
    tl_dataset_free(ds);
}
END_TEST

/* ---- schedules across a save and a load ---------------------------------------- */

static char *scratch_path(const char *name)
{
    static char dirbuf[64];
    if (dirbuf[0] == '\0') {
        const char *tmp = getenv("TMPDIR");
        snprintf(dirbuf, sizeof dirbuf, "%s/tl-sched-XXXXXX", tmp && strlen(tmp) < 40 ? tmp : "/tmp");
        ck_assert_ptr_nonnull(mkdtemp(dirbuf));
    }
    char *p = malloc(strlen(dirbuf) + strlen(name) + 2);
    sprintf(p, "%s/%s", dirbuf, name);
    return p;
}

static void assert_same_training_state(const tl_model *a, const tl_model *b, const char *what)
{
    size_t na, nb;
    float *pa = th_all_params(a, &na), *pb = th_all_params(b, &nb);
    ck_assert_uint_eq(na, nb);
    ck_assert_msg(memcmp(pa, pb, na * sizeof *pa) == 0, "%s: the weights differ", what);
    free(pa), free(pb);
    const tl_optimizer *x = a->opt, *y = b->opt;
    ck_assert_uint_eq(x->steps, y->steps);
    for (size_t i = 0; i < a->nlayers; i++)
        for (size_t p = 0; p < a->layers[i]->nparams; p++)
            for (int k = 0; k < 2; k++) {
                const float *sa = a->layers[i]->params[p].state[k], *sb = b->layers[i]->params[p].state[k];
                ck_assert_msg((sa == NULL) == (sb == NULL), "%s: layer %zu param %zu slot %d", what, i, p, k);
                if (sa)
                    ck_assert_msg(memcmp(sa, sb, a->layers[i]->params[p].count * sizeof(float)) == 0,
                                  "%s: optimizer state differs", what);
            }
    const tli_schedule *s = &x->sched, *t = &y->sched;
    ck_assert_int_eq(memcmp(&s->o, &t->o, sizeof s->o), 0);
    ck_assert(s->origin == t->origin && s->total == t->total && s->epoch == t->epoch && s->bad == t->bad &&
              s->cooldown_left == t->cooldown_left);
    ck_assert(memcmp(&s->best, &t->best, sizeof s->best) == 0 && memcmp(&s->scale, &t->scale, sizeof s->scale) == 0);
}

/* Every field, compared by value (not the padding). */
static void assert_same_schedule(const tl_schedule_options *a, const tl_schedule_options *b)
{
    ck_assert_uint_eq(a->version, b->version);
    ck_assert_int_eq(a->kind, b->kind);
    ck_assert(a->gamma == b->gamma);
    ck_assert_uint_eq(a->step_size, b->step_size);
    ck_assert_uint_eq(a->num_milestones, b->num_milestones);
    ck_assert_mem_eq(a->milestones, b->milestones, sizeof a->milestones);
    ck_assert_uint_eq(a->total_steps, b->total_steps);
    ck_assert_uint_eq(a->warmup_steps, b->warmup_steps);
    ck_assert(a->warmup_start_factor == b->warmup_start_factor && a->min_lr == b->min_lr);
    ck_assert(a->pct_start == b->pct_start && a->div_factor == b->div_factor);
    ck_assert(a->final_div_factor == b->final_div_factor);
    ck_assert_int_eq(a->monitor, b->monitor);
    ck_assert(a->factor == b->factor && a->min_delta == b->min_delta);
    ck_assert_uint_eq(a->patience, b->patience);
    ck_assert_uint_eq(a->cooldown, b->cooldown);
}

START_TEST(schedule_resume_is_exact)
{
    /* Six epochs of 5 batches straight, or three, a save, a load and three
     * more: the same weights, optimizer state, schedule and rates, bit for
     * bit. Case 0 and 4 stop fit from the epoch callback (so that fit's own
     * total_steps is the six epochs'); the others train three epochs, save
     * and train three more. */
    tl_dataset *ds = th_quadrant_dataset(80, 12, 12, 1, 9), *val = th_quadrant_dataset(32, 12, 12, 1, 10);
    for (int k = 0; k < 5; k++) {
        tl_schedule_options s = TL_SCHEDULE_OPTIONS_INIT;
        bool adam_opt = k == 1 || k == 3, cancel = k == 0 || k == 4;
        switch (k) {
        case 0: /* SGD momentum, cosine with warm-up, T from fit */
            s.kind = TL_SCHEDULE_COSINE;
            s.warmup_steps = 4;
            s.warmup_start_factor = 0.1f;
            s.min_lr = 1e-3f;
            break;
        case 1: /* Adam, one-cycle over the 30 steps */
            s.kind = TL_SCHEDULE_ONE_CYCLE;
            s.total_steps = 30;
            break;
        case 2: /* SGD Nesterov, reduce on plateau of the validation loss */
            s.kind = TL_SCHEDULE_REDUCE_ON_PLATEAU;
            s.factor = 0.5f;
            s.patience = 0;
            s.cooldown = 1;
            s.min_delta = 0.3f;
            break;
        case 3: /* Adam, multistep */
            s.kind = TL_SCHEDULE_MULTISTEP;
            s.gamma = 0.5f;
            s.num_milestones = 2;
            s.milestones[0] = 2, s.milestones[1] = 4;
            break;
        default: /* SGD, step every 2 epochs */
            s.kind = TL_SCHEDULE_STEP;
            s.gamma = 0.5f;
            s.step_size = 2;
            break;
        }
        tl_model *straight = th_seed_cnn(12, 12, 1, 4, 21), *first = th_seed_cnn(12, 12, 1, 4, 21);
        tl_optimizer *o1 = adam_opt ? adam(false, 3e-3f, 0) : sgd(0.05f, 0.9f, k == 2, 0);
        tl_optimizer *o2 = adam_opt ? adam(false, 3e-3f, 0) : sgd(0.05f, 0.9f, k == 2, 0);
        ck_assert_tl_ok(tl_model_compile(straight, scheduled(o1, &s), TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY));
        ck_assert_tl_ok(tl_model_compile(first, scheduled(o2, &s), TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY));
        rate_log a = {0}, b = {0};
        ck_assert_tl_ok(fit_logged(straight, ds, val, 6, 17, &a));
        ck_assert_uint_eq(a.n, 30);
        if (cancel) {
            b.cancel_after = 3;
            ck_assert_int_eq(fit_logged(first, ds, val, 6, 17, &b), TL_ECANCELED);
        } else {
            ck_assert_tl_ok(fit_logged(first, ds, val, 3, 17, &b));
        }
        ck_assert_uint_eq(b.n, 15);
        char *path = scratch_path("resume.tlm");
        ck_assert_tl_ok(tl_model_save(first, path, NULL));
        tl_model_free(first);
        tl_checkpoint_info *info;
        ck_assert_tl_ok(tl_checkpoint_info_read(&info, path));
        uint32_t minor;
        ck_assert_tl_ok(tl_checkpoint_info_format_version(NULL, &minor, info));
        ck_assert_uint_eq(minor, 1); /* the seed CNN alone would be 1.0 */
        /* The settings read back, field by field as set (milestones and all). */
        tl_schedule_options got;
        memset(&got, 0x5a, sizeof got);
        got.version = TL_SCHEDULE_OPTIONS_VERSION;
        ck_assert_tl_ok(tl_checkpoint_info_schedule(&got, info));
        assert_same_schedule(&got, &s);
        got.version = 2;
        ck_assert_tl_err(tl_checkpoint_info_schedule(&got, info), TL_EVERSION, "tl_schedule_options version 2");
        ck_assert_tl_err(tl_checkpoint_info_schedule(NULL, info), TL_EINVAL, "tl_checkpoint_info_schedule: out is NULL");
        ck_assert_tl_err(tl_checkpoint_info_schedule(&s, NULL), TL_EINVAL, "tl_checkpoint_info_schedule: info is NULL");
        tl_checkpoint_info_free(info);
        tl_model *resumed = NULL;
        ck_assert_tl_ok(tl_model_load(&resumed, path));
        ck_assert_int_eq(resumed->opt->sched.o.kind, s.kind);
        ck_assert_uint_eq(resumed->opt->sched.epoch, 3);
        b.cancel_after = 0;
        ck_assert_tl_ok(fit_logged(resumed, ds, val, 3, 0, &b));
        ck_assert_uint_eq(b.n, 30);
        char what[32];
        snprintf(what, sizeof what, "case %d (%s)", k, tli_schedule_kind_str(s.kind));
        for (size_t i = 0; i < 30; i++)
            ck_assert_msg(memcmp(&a.rate[i], &b.rate[i], sizeof a.rate[i]) == 0, "%s: batch %zu: rate %.9g, resumed %.9g",
                          what, i, a.rate[i], b.rate[i]);
        assert_same_training_state(straight, resumed, what);
        if (k == 2) /* the losses do not improve by 0.3 for long: at least one reduction */
            ck_assert(straight->opt->sched.scale < 1.0);
        /* Without the optimizer, no schedule either: format 1.0 again. */
        tl_save_options so = TL_SAVE_OPTIONS_INIT;
        so.include_optimizer = 0;
        ck_assert_tl_ok(tl_model_save(resumed, path, &so));
        ck_assert_tl_ok(tl_checkpoint_info_read(&info, path));
        ck_assert_tl_ok(tl_checkpoint_info_format_version(NULL, &minor, info));
        ck_assert_uint_eq(minor, 0);
        {
            /* No SCHD: the defaults, a constant rate. */
            tl_schedule_options got = TL_SCHEDULE_OPTIONS_INIT, want = TL_SCHEDULE_OPTIONS_INIT;
            got.kind = TL_SCHEDULE_STEP;
            got.step_size = 9;
            ck_assert_tl_ok(tl_checkpoint_info_schedule(&got, info));
            assert_same_schedule(&got, &want);
        }
        tl_checkpoint_info_free(info);
        remove(path);
        free(path);
        tl_model_free(resumed);
        tl_model_free(straight);
    }
    tl_dataset_free(ds);
    tl_dataset_free(val);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("optim");
    TCase *tc = tcase_create("optim");
    tcase_add_test(tc, sgd_plain_and_weight_decay);
    tcase_add_test(tc, sgd_momentum_and_nesterov);
    tcase_add_test(tc, adam_steps);
    tcase_add_test(tc, lr_scale_multiplies_the_step);
    tcase_add_test(tc, train_step_by_hand);
    tcase_add_test(tc, frozen_layers_get_no_update_and_no_state);
    tcase_add_test(tc, defaults_are_keras);
    tcase_add_test(tc, options_are_validated);
    tcase_add_test(tc, compile_rules);
    suite_add_tcase(s, tc);
    TCase *sc = tcase_create("schedule");
    tcase_add_test(sc, schedule_options_defaults);
    tcase_add_test(sc, schedule_rates_by_hand);
    tcase_add_test(sc, plateau_by_hand);
    tcase_add_test(sc, schedule_in_fit_and_train_step);
    tcase_add_test(sc, plateau_in_fit);
    tcase_add_test(sc, bad_schedules);
    tcase_add_test(sc, schedule_resume_is_exact);
    suite_add_tcase(s, sc);
    return th_run(s);
}
