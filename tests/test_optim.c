/* test_optim.c - optimizer steps against values computed by hand from the
 * formulas in include/tl/optim.h (SGD plain, momentum, Nesterov, weight
 * decay; Adam, Adam with L2, AdamW), per-layer learning-rate scales,
 * frozen layers (no update, no state, bit-identical after fit, even with
 * momentum left over), compile rules and option validation. */
#include <float.h>
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
    return th_run(s);
}
