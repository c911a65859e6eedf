/*
 * test_numeric.c - numerical faults. A NaN or infinity in a loss or a
 * gradient stops fit with TL_ENUMERIC and a sentence that names the epoch,
 * the batch and the layer, or - with TL_NONFINITE_SKIP - skips the batch
 * and counts it; extreme but finite inputs (all-zero images, inputs and
 * logits around 1e30) give finite losses, gradients and weights. The
 * kernels' own extreme-logit cases are in test_kernels.c, the basic
 * stop/skip behaviour in test_train.c.
 */
#include <float.h>
#include <stdbool.h>

#include "helpers.h"

static bool all_finite(const float *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i]))
            return false;
    return true;
}

static void assert_params_finite(const tl_model *m, const char *what)
{
    size_t n;
    float *v = th_all_params(m, &n);
    ck_assert_msg(all_finite(v, n), "%s: a parameter is not finite", what);
    free(v);
}

static void compile(tl_model *m, int sgd, tl_loss loss)
{
    tl_optimizer *o;
    if (sgd) {
        tl_sgd_options so = TL_SGD_OPTIONS_INIT;
        so.learning_rate = 0.01f;
        ck_assert_tl_ok(tl_optimizer_create_sgd(&o, &so));
    } else {
        ck_assert_tl_ok(tl_optimizer_create_adam(&o, NULL));
    }
    ck_assert_tl_ok(tl_model_compile(m, o, loss));
}

static void set_weights(tl_model *m, const char *layer, size_t index, const float *v, size_t n)
{
    tl_layer *l;
    ck_assert_tl_ok(tl_model_layer_by_name(&l, m, layer));
    ck_assert_tl_ok(tl_layer_set_weights(l, index, v, n));
}

/*
 * A gradient that overflows while the loss stays finite: input (2) ->
 * flatten -> dense 'a' (2) -> dense 'b' (2) -> dense 'c' (3, softmax).
 * b's kernel is 0, so c sees zeros and the logits are 0 (loss log 3); c's
 * kernel holds +-FLT_MAX, so dL/d(b's output) = c.kernel x dz is about
 * -4/3 FLT_MAX = -inf. b's kernel gradient (a's output x -inf) is infinite
 * and a's (0 x -inf) NaN: the fault starts at b, index 2.
 */
static tl_model *overflowing_chain(void)
{
    tl_model *m;
    ck_assert_tl_ok(tl_model_create(&m, 1, 1, 2, 3));
    tl_model_set_threads(m, 1);
    tl_dense_options d = TL_DENSE_OPTIONS_INIT;
    ck_assert_tl_ok(tl_model_add_flatten(NULL, m, NULL));
    d.units = 2;
    d.name = "a";
    ck_assert_tl_ok(tl_model_add_dense(NULL, m, &d));
    d.name = "b";
    ck_assert_tl_ok(tl_model_add_dense(NULL, m, &d));
    d.units = 3;
    d.name = "c";
    d.activation = TL_ACT_SOFTMAX;
    ck_assert_tl_ok(tl_model_add_dense(NULL, m, &d));
    const float a[4] = {1, 0, 0, 1}, b[4] = {0, 0, 0, 0};
    const float c[6] = {FLT_MAX, -FLT_MAX, -FLT_MAX, FLT_MAX, -FLT_MAX, -FLT_MAX};
    set_weights(m, "a", 0, a, 4);
    set_weights(m, "b", 0, b, 4);
    set_weights(m, "c", 0, c, 6);
    return m;
}

typedef struct progress_log {
    size_t skipped, calls;
    double loss;
    float *poison; /* set to NaN after the first epoch, when not NULL */
} progress_log;

static int on_epoch(const tl_progress *p, void *payload)
{
    progress_log *g = payload;
    g->skipped += p->skipped_batches;
    g->loss = p->loss;
    g->calls++;
    if (g->poison)
        *g->poison = NAN;
    return 0;
}

/* ---- non-finite gradients ---------------------------------------------------------- */

START_TEST(gradient_overflow_names_the_layer)
{
    const float x[6] = {1.0f, 2.0f, 0.5f, 1.5f, 2.0f, 0.25f};
    const int32_t y[3] = {0, 0, 0};
    tl_model *m = overflowing_chain();
    compile(m, 0, TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY);
    size_t n;
    float *before = th_all_params(m, &n);

    /* The loss itself is finite: log 3. */
    double loss = -1;
    tl_dataset *ds;
    ck_assert_tl_ok(tl_dataset_create(&ds, x, y, 3, 1, 1, 2, 3, TL_DATA_BORROW));
    ck_assert_tl_ok(tl_model_evaluate(&loss, NULL, m, ds, 1));
    ck_assert_close(loss, log(3.0), 1e-6);

    /* One step: refused, naming b (where the fault starts) and how far it spread. */
    ck_assert_tl_err(tl_model_train_step(&loss, m, x, y, NULL, 1), TL_ENUMERIC,
                     "tl_model_train_step: the gradient of layer 'b' (index 2) is not finite");
    ck_assert_msg(strstr(tl_last_error(), "2 layers affected") && strstr(tl_last_error(), "no update"), "%s",
                  tl_last_error());
    float *after = th_all_params(m, &n);
    ck_assert(memcmp(before, after, n * sizeof *before) == 0);
    free(after);
    ck_assert_uint_eq(tl_optimizer_steps(tl_model_optimizer(m)), 0);

    /* fit: the epoch and the batch as well. */
    tl_fit_options fo = TL_FIT_OPTIONS_INIT;
    fo.batch_size = 1;
    fo.shuffle = 0;
    ck_assert_tl_err(tl_model_fit(m, ds, &fo), TL_ENUMERIC,
                     "tl_model_fit: epoch 1, batch 1 of 3: the gradient of layer 'b' (index 2) is not finite");
    after = th_all_params(m, &n);
    ck_assert(memcmp(before, after, n * sizeof *before) == 0);
    free(after);

    /* Skip: every batch is skipped and counted, nothing changes, fit succeeds. */
    progress_log g = {0, 0, 0, NULL};
    fo.on_nonfinite = TL_NONFINITE_SKIP;
    fo.epochs = 2;
    fo.on_epoch = on_epoch;
    fo.payload = &g;
    ck_assert_tl_ok(tl_model_fit(m, ds, &fo));
    ck_assert_uint_eq(g.calls, 2);
    ck_assert_uint_eq(g.skipped, 6); /* 3 per epoch */
    ck_assert(isnan(g.loss));         /* no batch counted: no mean loss */
    after = th_all_params(m, &n);
    ck_assert(memcmp(before, after, n * sizeof *before) == 0);
    free(after);
    ck_assert_uint_eq(tl_optimizer_steps(tl_model_optimizer(m)), 0);

    /* Frozen b and c: backward stops below them... a alone learns, but its
     * gradient comes through c and b and is NaN: named as the first. */
    ck_assert_tl_ok(tl_model_set_trainable(m, 2, 2, 0));
    fo.on_nonfinite = TL_NONFINITE_STOP;
    ck_assert_tl_err(tl_model_fit(m, ds, &fo), TL_ENUMERIC,
                     "epoch 1, batch 1 of 3: the gradient of layer 'a' (index 1) is not finite (the first in the "
                     "backward pass; 1 layer affected)");
    free(before);
    tl_dataset_free(ds);
    tl_model_free(m);
}
END_TEST

/* A NaN that appears in the data after the first epoch: the error names
 * epoch 2, the batch, and the example that holds it (the NaN reaches a
 * gradient here, not the loss: max-pooling passes it over in the forward
 * pass, but 0 x NaN in the weight gradient is NaN); the first epoch's
 * steps are kept. */
START_TEST(loss_fault_in_a_later_epoch)
{
    float *x;
    int32_t *y;
    th_quadrant_data(&x, &y, 40, 12, 12, 1, 3);
    tl_dataset *ds;
    ck_assert_tl_ok(tl_dataset_create(&ds, x, y, 40, 12, 12, 1, 4, TL_DATA_BORROW));
    tl_model *m = th_seed_cnn(12, 12, 1, 4, 2);
    compile(m, 0, TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY);
    progress_log g = {0, 0, 0, x + 25 * 144 + 10}; /* example 25: batch 3 of 4 */
    tl_fit_options fo = TL_FIT_OPTIONS_INIT;
    fo.batch_size = 10;
    fo.shuffle = 0;
    fo.epochs = 3;
    fo.on_epoch = on_epoch;
    fo.payload = &g;
    ck_assert_tl_err(tl_model_fit(m, ds, &fo), TL_ENUMERIC, "tl_model_fit: epoch 2, batch 3 of 4: the ");
    ck_assert_msg(strstr(tl_last_error(), "not finite") != NULL &&
                      strstr(tl_last_error(), ": example 25 of the training data has a non-finite input value (nan, "
                                              "value 10 of 144); no update was made") != NULL,
                  "%s", tl_last_error());
    ck_assert_uint_eq(g.calls, 1);
    ck_assert_uint_eq(tl_optimizer_steps(tl_model_optimizer(m)), 6);
    assert_params_finite(m, "after the stop");

    /* Infinity instead of NaN, with skipping: one batch per epoch is left out. */
    x[25 * 144 + 10] = INFINITY;
    /* A single step names the row of the caller's inputs. */
    ck_assert_tl_err(tl_model_train_step(NULL, m, x + 20 * 144, y + 20, NULL, 10), TL_ENUMERIC,
                     ": example 5 of the inputs has a non-finite input value (inf, value 10 of 144)");
    g.poison = NULL;
    g.calls = g.skipped = 0;
    fo.on_nonfinite = TL_NONFINITE_SKIP;
    ck_assert_tl_ok(tl_model_fit(m, ds, &fo));
    ck_assert_uint_eq(g.calls, 3);
    ck_assert_uint_eq(g.skipped, 3);
    ck_assert(isfinite(g.loss));
    ck_assert_uint_eq(tl_optimizer_steps(tl_model_optimizer(m)), 6 + 9);
    assert_params_finite(m, "after skipping");
    tl_model_free(m);
    tl_dataset_free(ds);
    free(x);
    free(y);
}
END_TEST

/* ---- extreme but finite inputs ----------------------------------------------------- */

/* All-zero images: with zero biases every activation is 0, the logits are
 * 0 and the loss is exactly log(classes); training stays finite. */
START_TEST(all_zero_images)
{
    const size_t n = 16, ex = 12 * 12 * 3;
    float *x = calloc(n * ex, sizeof *x);
    int32_t y[16];
    for (size_t i = 0; i < n; i++)
        y[i] = (int32_t)(i % 4);
    tl_model *m = th_seed_cnn(12, 12, 3, 4, 5);
    compile(m, 0, TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY);
    double loss;
    ck_assert_tl_ok(tl_model_train_step(&loss, m, x, y, NULL, n));
    ck_assert_close(loss, log(4.0), 1e-6);
    for (int s = 0; s < 5; s++) {
        ck_assert_tl_ok(tl_model_train_step(&loss, m, x, y, NULL, n));
        ck_assert(isfinite(loss));
    }
    assert_params_finite(m, "zero images");
    float p[16 * 4];
    ck_assert_tl_ok(tl_model_predict(p, 16 * 4, m, x, n, 0));
    ck_assert(all_finite(p, 16 * 4));
    for (size_t i = 0; i < n; i++)
        ck_assert_close(p[4 * i] + p[4 * i + 1] + p[4 * i + 2] + p[4 * i + 3], 1.0, 1e-5);
    free(x);
    tl_model_free(m);
}
END_TEST

/* Logits of +-1e30 (a dense bias) through the fused softmax-cross-entropy:
 * the loss is 0 for the right class and 2e30 for a wrong one, the gradient
 * is a probability difference, the step is finite, and predict's softmax
 * gives exact one-hot rows. */
START_TEST(huge_logits)
{
    const size_t n = 8, ex = 12 * 12 * 1;
    float *x;
    int32_t *y;
    th_quadrant_data(&x, &y, n, 12, 12, 1, 9);
    for (size_t i = 0; i < n; i++)
        y[i] = i < 4 ? 0 : 1;
    for (int sgd = 0; sgd < 2; sgd++) {
        tl_model *m = th_seed_cnn(12, 12, 1, 4, 5);
        compile(m, sgd, TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY);
        const float bias[4] = {1e30f, -1e30f, 0.0f, 0.0f};
        set_weights(m, "dense", 1, bias, 4);
        double loss;
        ck_assert_tl_ok(tl_model_train_step(&loss, m, x, y, NULL, 4)); /* all class 0: loss 0 */
        ck_assert_msg(loss >= 0.0 && loss < 1e-6, "loss %g", loss);
        ck_assert_tl_ok(tl_model_train_step(&loss, m, x + 4 * ex, y + 4, NULL, 4)); /* class 1: 2e30 */
        ck_assert_msg(isfinite(loss) && fabs(loss - 2e30) < 1e24, "loss %g", loss);
        assert_params_finite(m, sgd ? "huge logits, SGD" : "huge logits, Adam");
        float p[8 * 4];
        ck_assert_tl_ok(tl_model_predict(p, 8 * 4, m, x, n, 0));
        ck_assert(all_finite(p, 8 * 4));
        for (size_t i = 0; i < n; i++)
            ck_assert_msg(p[4 * i] == 1.0f && p[4 * i + 1] == 0.0f, "row %zu: %g %g", i, p[4 * i], p[4 * i + 1]);
        tl_model_free(m);
    }
    free(x);
    free(y);
}
END_TEST

/* Inputs of 1e30: activations near 1e32 and gradients near 1e31 are
 * finite in float32. Adam's squared gradient overflows (as in Keras), which
 * must give a zero step, not a NaN. */
START_TEST(huge_inputs)
{
    const size_t n = 4, ex = 12 * 12 * 1;
    float *x = malloc(n * ex * sizeof *x);
    th_fill_uniform(x, n * ex, 0.5e30f, 1e30f, 4);
    int32_t y[4] = {0, 1, 2, 3};
    tl_model *m = th_seed_cnn(12, 12, 1, 4, 6);
    compile(m, 0, TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY);
    double loss;
    ck_assert_tl_ok(tl_model_train_step(&loss, m, x, y, NULL, n));
    ck_assert_msg(isfinite(loss), "loss %g", loss);
    assert_params_finite(m, "huge inputs, Adam");
    ck_assert_tl_ok(tl_model_train_step(&loss, m, x, y, NULL, n));
    assert_params_finite(m, "huge inputs, Adam, second step");
    tl_model_free(m);

    /* Mean squared error on outputs near 1e30: the loss (in double) is
     * about 1e60, beyond float but finite. */
    m = th_seed_cnn(12, 12, 1, 4, 6);
    ck_assert_tl_ok(tl_model_pop_layers(m, 1)); /* a linear head instead of softmax */
    tl_dense_options d = TL_DENSE_OPTIONS_INIT;
    d.units = 4;
    ck_assert_tl_ok(tl_model_add_dense(NULL, m, &d));
    const float bias[4] = {1e30f, -1e30f, 5e29f, 0.0f};
    set_weights(m, "dense", 1, bias, 4);
    compile(m, 1, TL_LOSS_MEAN_SQUARED_ERROR);
    float zero[4 * 144] = {0};
    ck_assert_tl_ok(tl_model_train_step(&loss, m, zero, y, NULL, n));
    ck_assert_msg(isfinite(loss) && loss > 1e59, "loss %g", loss);
    assert_params_finite(m, "MSE");
    tl_model_free(m);
    free(x);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("numeric");
    TCase *tc = tcase_create("faults");
    tcase_add_test(tc, gradient_overflow_names_the_layer);
    tcase_add_test(tc, loss_fault_in_a_later_epoch);
    suite_add_tcase(s, tc);
    tc = tcase_create("extremes");
    tcase_add_test(tc, all_zero_images);
    tcase_add_test(tc, huge_logits);
    tcase_add_test(tc, huge_inputs);
    suite_add_tcase(s, tc);
    return th_run(s);
}
