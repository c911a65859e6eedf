/* test_train.c - fit, evaluate and train_step through the public API:
 * the document's CNN learns a noisy generated image task with 1 and 2
 * threads; training is bit-for-bit deterministic for a seed and thread
 * count; evaluate gives hand-computed losses; bad inputs give their status
 * and a message naming what is wrong; callbacks see correct counts and can
 * stop training; validation figures equal tl_model_evaluate; non-finite
 * losses stop training or skip the batch.
 *
 * The "learning" test case takes most of the time; leave it out (e.g. under
 * valgrind) with CK_EXCLUDE_TAGS=learning or CK_RUN_CASE=train. */
#include <stdbool.h>
#include <stdio.h>

#include "helpers.h"

static void compile_adam(tl_model *m, float lr)
{
    tl_optimizer *o;
    tl_adam_options ao = TL_ADAM_OPTIONS_INIT;
    ao.learning_rate = lr;
    ck_assert_tl_ok(tl_optimizer_create_adam(&o, &ao));
    ck_assert_tl_ok(tl_model_compile(m, o, TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY));
}

static bool same_params(const tl_model *a, const tl_model *b)
{
    size_t na, nb;
    float *pa = th_all_params(a, &na), *pb = th_all_params(b, &nb);
    bool same = na == nb && memcmp(pa, pb, na * sizeof *pa) == 0;
    free(pa);
    free(pb);
    return same;
}

static bool all_params_finite(const tl_model *m)
{
    size_t n;
    float *p = th_all_params(m, &n);
    bool ok = true;
    for (size_t i = 0; i < n; i++)
        ok = ok && isfinite(p[i]);
    free(p);
    return ok;
}

/* ---- learning ------------------------------------------------------------------ */

typedef struct epoch_log {
    double loss[8];
    uint32_t epochs_seen;
} epoch_log;

static int log_epoch(const tl_progress *p, void *payload)
{
    epoch_log *e = payload;
    if (p->epoch < 8)
        e->loss[p->epoch] = p->loss;
    e->epochs_seen++;
    return 0;
}

START_TEST(seed_cnn_learns_the_spot_task)
{
    /* 32x32x3 images of uniform noise in [0, 1); the class is the quadrant
     * holding an 8x8 spot that is only 0.15 brighter (half the noise's
     * standard deviation per pixel). The document's CNN, Adam, batch 32. */
    const uint32_t threads = (uint32_t)_i + 1;
    tl_dataset *train = th_spot_dataset(3000, 32, 32, 3, 1.0f, 0.15f, 1);
    tl_dataset *test = th_spot_dataset(1000, 32, 32, 3, 1.0f, 0.15f, 2);
    ck_assert_ptr_nonnull(train);
    ck_assert_ptr_nonnull(test);
    tl_model *m = th_seed_cnn(32, 32, 3, 4, 3);
    ck_assert_tl_ok(tl_model_set_threads(m, threads));
    compile_adam(m, 1e-3f);
    double loss0, acc0;
    ck_assert_tl_ok(tl_model_evaluate(&loss0, &acc0, m, test, 0));
    ck_assert_msg(acc0 < 0.5, "%u threads: %.3f accuracy before training", threads, acc0);
    epoch_log log;
    memset(&log, 0, sizeof log);
    tl_fit_options fo = TL_FIT_OPTIONS_INIT;
    fo.epochs = 4;
    fo.batch_size = 32;
    fo.on_epoch = log_epoch;
    fo.payload = &log;
    ck_assert_tl_ok(tl_model_fit(m, train, &fo));
    ck_assert_uint_eq(log.epochs_seen, 4);
    double loss, acc;
    ck_assert_tl_ok(tl_model_evaluate(&loss, &acc, m, test, 0));
    fprintf(stderr, "%u thread(s): test accuracy %.4f (before %.4f), loss %.4f; training loss by epoch %.3f %.3f %.3f %.3f\n",
            threads, acc, acc0, loss, log.loss[0], log.loss[1], log.loss[2], log.loss[3]);
    ck_assert_msg(acc > 0.95, "%u threads: test accuracy %.4f", threads, acc);
    ck_assert(loss < loss0 / 5);
    ck_assert(log.loss[3] < log.loss[0]);
    ck_assert_uint_eq(tl_optimizer_steps(tl_model_optimizer(m)), 4 * ((3000 + 31) / 32));
    tl_model_free(m);
    tl_dataset_free(train);
    tl_dataset_free(test);
}
END_TEST

/* ---- determinism ----------------------------------------------------------------- */

static tl_model *trained(uint64_t model_seed, uint64_t fit_seed, uint32_t threads, const tl_dataset *ds)
{
    tl_model *m = th_seed_cnn(16, 16, 3, 4, model_seed);
    ck_assert_tl_ok(tl_model_set_threads(m, threads));
    compile_adam(m, 1e-3f);
    tl_fit_options fo = TL_FIT_OPTIONS_INIT;
    fo.epochs = 2;
    fo.batch_size = 16;
    fo.seed = fit_seed;
    ck_assert_tl_ok(tl_model_fit(m, ds, &fo));
    return m;
}

START_TEST(same_seed_same_bits)
{
    tl_dataset *ds = th_spot_dataset(200, 16, 16, 3, 1.0f, 0.3f, 4);
    for (uint32_t threads = 1; threads <= 2; threads++) {
        tl_model *a = trained(7, 0, threads, ds), *b = trained(7, 0, threads, ds);
        ck_assert_msg(same_params(a, b), "%u threads: same seeds, different weights", threads);
        tl_model *c = trained(8, 0, threads, ds);
        ck_assert_msg(!same_params(a, c), "%u threads: another model seed, same weights", threads);
        /* Same initial weights, another shuffling seed. */
        tl_model *d = trained(7, 99, threads, ds), *e = trained(7, 99, threads, ds);
        ck_assert(same_params(d, e));
        ck_assert_msg(!same_params(a, d), "%u threads: another shuffle, same weights", threads);
        tl_model_free(a), tl_model_free(b), tl_model_free(c), tl_model_free(d), tl_model_free(e);
    }
    tl_dataset_free(ds);
}
END_TEST

/* ---- evaluate by hand ----------------------------------------------------------------- */

/* x in R^2 -> dense(2, softmax) with identity weights: logits = x. */
/* loss 0: not compiled at all; a negative loss: the loss without an optimizer. */
static tl_model *identity_softmax(tl_loss loss)
{
    tl_model *m;
    ck_assert_tl_ok(tl_model_create(&m, 1, 1, 2, 1));
    ck_assert_tl_ok(tl_model_set_threads(m, 1));
    ck_assert_tl_ok(tl_model_add_flatten(NULL, m, NULL));
    tl_dense_options d = TL_DENSE_OPTIONS_INIT;
    d.units = 2;
    d.activation = TL_ACT_SOFTMAX;
    tl_layer *l;
    ck_assert_tl_ok(tl_model_add_dense(&l, m, &d));
    const float eye[4] = {1, 0, 0, 1};
    ck_assert_tl_ok(tl_layer_set_weights(l, 0, eye, 4));
    if ((int)loss == 0)
        return m;
    if ((int)loss < 0) {
        ck_assert_tl_ok(tl_model_compile(m, NULL, (tl_loss)-(int)loss));
        return m;
    }
    tl_optimizer *o;
    ck_assert_tl_ok(tl_optimizer_create_sgd(&o, NULL));
    ck_assert_tl_ok(tl_model_compile(m, o, loss));
    return m;
}

START_TEST(evaluate_by_hand)
{
    /* Examples (2, 0) and (0, 1), both labelled 0:
     * CE = log(1 + e^-2) = 0.1269280 and log(1 + e) = 1.3132617, mean 0.7200948;
     * the second is predicted as class 1: accuracy 0.5. */
    const float x[4] = {2, 0, 0, 1};
    const int32_t y[2] = {0, 0};
    tl_dataset *ds;
    ck_assert_tl_ok(tl_dataset_create(&ds, x, y, 2, 1, 1, 2, 2, TL_DATA_COPY));
    tl_model *m = identity_softmax(TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY);
    double loss = -1, acc = -1;
    for (uint32_t bs = 0; bs <= 2; bs++) {
        ck_assert_tl_ok(tl_model_evaluate(&loss, &acc, m, ds, bs));
        ck_assert_close(loss, 0.72009485, 1e-6);
        ck_assert_close(acc, 0.5, 0.0);
    }
    ck_assert_tl_ok(tl_model_evaluate(NULL, &acc, m, ds, 0)); /* either out may be NULL */
    ck_assert_tl_ok(tl_model_evaluate(&loss, NULL, m, ds, 0));
    tl_model_free(m);
    /* No optimizer is needed: never compiled means sparse cross-entropy
     * (and the model stays uncompiled); or the loss alone. */
    m = identity_softmax((tl_loss)0);
    ck_assert_tl_ok(tl_model_evaluate(&loss, &acc, m, ds, 0));
    ck_assert_close(loss, 0.72009485, 1e-6);
    ck_assert_int_eq(tl_model_loss(m), 0);
    tl_model_free(m);
    m = identity_softmax((tl_loss)-(int)TL_LOSS_MEAN_SQUARED_ERROR);
    ck_assert_tl_ok(tl_model_evaluate(&loss, &acc, m, ds, 0));
    ck_assert_close(loss, 0.27432799, 1e-6);
    ck_assert_ptr_null(tl_model_optimizer(m));
    tl_model_free(m);

    /* MSE of the softmax outputs against one-hot labels:
     * ((0.8807971 - 1)^2 + 0.1192029^2) / 2 = 0.0142093 and
     * ((0.2689414 - 1)^2 + 0.7310586^2) / 2 = 0.5344466; mean 0.2743280. */
    m = identity_softmax(TL_LOSS_MEAN_SQUARED_ERROR);
    ck_assert_tl_ok(tl_model_evaluate(&loss, &acc, m, ds, 0));
    ck_assert_close(loss, 0.27432799, 1e-6);
    ck_assert_close(acc, 0.5, 0.0);
    tl_model_free(m);

    /* Cross-entropy with soft targets (0.5, 0.5) and (0.25, 0.75):
     * log(e^2 + 1) - 1 = 1.1269280 and log(1 + e) - 0.75 = 0.5632617,
     * mean 0.8450948; target arg-max 0 (first on ties) and 1: both right. */
    const float t[4] = {0.5f, 0.5f, 0.25f, 0.75f};
    ck_assert_tl_ok(tl_dataset_set_targets(ds, t, 2, 2, TL_DATA_COPY));
    m = identity_softmax(TL_LOSS_CATEGORICAL_CROSSENTROPY);
    ck_assert_tl_ok(tl_model_evaluate(&loss, &acc, m, ds, 1));
    ck_assert_close(loss, 0.84509485, 1e-6);
    ck_assert_close(acc, 1.0, 0.0);
    tl_model_free(m);
    /* Sparse cross-entropy ignores the targets and reads the labels. */
    m = identity_softmax(TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY);
    ck_assert_tl_ok(tl_model_evaluate(&loss, &acc, m, ds, 0));
    ck_assert_close(loss, 0.72009485, 1e-6);
    tl_model_free(m);
    tl_dataset_free(ds);
}
END_TEST

/* ---- bad inputs ----------------------------------------------------------------------- */

START_TEST(bad_inputs)
{
    tl_dataset *ds = th_quadrant_dataset(40, 16, 16, 3, 1);
    tl_dataset *gray = th_quadrant_dataset(8, 16, 16, 1, 1);
    tl_model *m = th_seed_cnn(16, 16, 3, 4, 1);
    tl_fit_options fo = TL_FIT_OPTIONS_INIT;
    double loss;
    float x[2 * 16 * 16 * 3] = {0};
    const int32_t labels[2] = {0, 3};

    /* Not compiled. */
    ck_assert_tl_err(tl_model_fit(m, ds, &fo), TL_ESTATE, "not compiled");
    ck_assert_tl_ok(tl_model_evaluate(&loss, NULL, m, ds, 0)); /* evaluate needs no optimizer */
    ck_assert_tl_err(tl_model_train_step(&loss, m, x, labels, NULL, 2), TL_ESTATE, "tl_model_train_step");
    compile_adam(m, 1e-3f);

    /* NULLs and zero sizes. */
    ck_assert_tl_err(tl_model_fit(NULL, ds, &fo), TL_EINVAL, "model is NULL");
    ck_assert_tl_err(tl_model_fit(m, NULL, &fo), TL_EINVAL, "training data is NULL");
    ck_assert_tl_err(tl_model_evaluate(&loss, NULL, NULL, ds, 0), TL_EINVAL, "model is NULL");
    ck_assert_tl_err(tl_model_evaluate(&loss, NULL, m, NULL, 0), TL_EINVAL, "data is NULL");
    ck_assert_tl_err(tl_model_train_step(&loss, NULL, x, labels, NULL, 2), TL_EINVAL, "model is NULL");
    ck_assert_tl_err(tl_model_train_step(&loss, m, NULL, labels, NULL, 2), TL_EINVAL, "inputs is NULL");
    ck_assert_tl_err(tl_model_train_step(&loss, m, x, NULL, NULL, 2), TL_EINVAL, "labels is NULL");
    ck_assert_tl_err(tl_model_train_step(&loss, m, x, labels, NULL, 0), TL_EINVAL, "n is 0");
    fo.epochs = 0;
    ck_assert_tl_err(tl_model_fit(m, ds, &fo), TL_EINVAL, "epochs (0)");
    fo.epochs = 1;
    fo.batch_size = 0;
    ck_assert_tl_err(tl_model_fit(m, ds, &fo), TL_EINVAL, "batch_size (0)");
    fo.batch_size = 8;
    fo.on_nonfinite = (tl_nonfinite_policy)5;
    ck_assert_tl_err(tl_model_fit(m, ds, &fo), TL_EINVAL, "unknown on_nonfinite policy 5");
    fo.on_nonfinite = TL_NONFINITE_STOP;
    fo.version = 0;
    ck_assert_tl_err(tl_model_fit(m, ds, &fo), TL_EVERSION, "tl_fit_options version 0");
    fo.version = 4;
    ck_assert_tl_err(tl_model_fit(m, ds, &fo), TL_EVERSION, "version 4");
    fo.version = TL_FIT_OPTIONS_VERSION;
    tl_fit_options init;
    ck_assert_tl_ok(tl_fit_options_init(&init, 1));
    ck_assert(init.epochs == 1 && init.batch_size == 32 && init.shuffle == 1 && init.seed == 0 &&
              init.validation == NULL && init.on_batch == NULL && init.on_nonfinite == TL_NONFINITE_STOP);
    ck_assert_tl_err(tl_fit_options_init(&init, 0), TL_EVERSION, "version 0");
    ck_assert_tl_err(tl_fit_options_init(NULL, 1), TL_EINVAL, "opts is NULL");

    /* The data does not fit the model: both shapes in the message. */
    ck_assert_tl_err(tl_model_fit(m, gray, &fo), TL_ESHAPE,
                     "the data's examples are (16, 16, 1) but the model takes (16, 16, 3)");
    ck_assert_tl_err(tl_model_evaluate(&loss, NULL, m, gray, 0), TL_ESHAPE, "(16, 16, 1)");
    fo.validation = gray;
    ck_assert_tl_err(tl_model_fit(m, ds, &fo), TL_ESHAPE, "validation data");
    ck_assert_tl_err(tl_model_fit(m, ds, &fo), TL_ESHAPE, "(16, 16, 1) but the model takes (16, 16, 3)");
    fo.validation = NULL;
    /* More classes than outputs. */
    float *imgs = calloc(3 * 16 * 16 * 3, sizeof *imgs);
    const int32_t ten[3] = {0, 9, 5};
    tl_dataset *wide;
    ck_assert_tl_ok(tl_dataset_create(&wide, imgs, ten, 3, 16, 16, 3, 10, TL_DATA_COPY));
    ck_assert_tl_err(tl_model_fit(m, wide, &fo), TL_ESHAPE,
                     "the data has 10 classes but the model's last layer ('dense') has 4 outputs");
    ck_assert_tl_err(tl_model_evaluate(&loss, NULL, m, wide, 0), TL_ESHAPE, "10 classes");
    /* A label outside the outputs in a single step: nothing is updated. */
    size_t n0;
    float *before = th_all_params(m, &n0);
    const int32_t bad[2] = {0, 4}, neg[2] = {-1, 0};
    ck_assert_tl_err(tl_model_train_step(&loss, m, x, bad, NULL, 2), TL_ERANGE,
                     "label 4 of example 1 is outside the model's 4 outputs");
    ck_assert_tl_err(tl_model_train_step(&loss, m, x, neg, NULL, 2), TL_ERANGE, "label -1 of example 0");
    float *after = th_all_params(m, &n0);
    ck_assert(memcmp(before, after, n0 * sizeof *before) == 0);
    ck_assert_uint_eq(tl_optimizer_steps(tl_model_optimizer(m)), 0);
    /* Nothing failed for good: training still works. */
    ck_assert_tl_ok(tl_model_train_step(&loss, m, x, labels, NULL, 2));
    ck_assert_tl_ok(tl_model_fit(m, ds, &fo));
    free(before), free(after), free(imgs);
    tl_model_free(m);

    /* MSE on float targets of the wrong width; and without labels or targets. */
    m = th_seed_cnn(16, 16, 3, 4, 1);
    tl_optimizer *o;
    ck_assert_tl_ok(tl_optimizer_create_sgd(&o, NULL));
    ck_assert_tl_ok(tl_model_compile(m, o, TL_LOSS_MEAN_SQUARED_ERROR));
    float t3[3 * 3] = {0};
    ck_assert_tl_ok(tl_dataset_set_targets(wide, t3, 3, 3, TL_DATA_COPY));
    ck_assert_tl_err(tl_model_fit(m, wide, &fo), TL_ESHAPE,
                     "the data's targets have 3 values per example but the model outputs 4");
    ck_assert_tl_err(tl_model_train_step(&loss, m, x, NULL, NULL, 2), TL_EINVAL, "labels and targets are both NULL");
    float t4[2 * 4] = {1, 0, 0, 0, 0, 0, 0, 1};
    ck_assert_tl_ok(tl_model_train_step(&loss, m, x, NULL, t4, 2));
    tl_model_free(m);
    tl_dataset_free(wide);
    tl_dataset_free(gray);
    tl_dataset_free(ds);
}
END_TEST

/* ---- callbacks ----------------------------------------------------------------------- */

typedef struct calls {
    size_t batch_calls, epoch_calls, stop_at_batch, stop_at_epoch;
    tl_progress last_batch, last_epoch;
    bool bad;
    char why[160];
} calls;

static void flag(calls *c, const char *why)
{
    if (!c->bad)
        snprintf(c->why, sizeof c->why, "%s", why);
    c->bad = true;
}

static int on_batch(const tl_progress *p, void *payload)
{
    calls *c = payload;
    c->batch_calls++;
    /* 100 examples in batches of 32: 32, 32, 32, 4. */
    const size_t want_batch = (c->batch_calls - 1) % 4 + 1;
    if (p->struct_size != sizeof(tl_progress))
        flag(c, "struct_size");
    if (p->epochs != 3 || p->epoch != (c->batch_calls - 1) / 4)
        flag(c, "epoch numbers");
    if (p->batches != 4 || p->batch != want_batch)
        flag(c, "batch numbers");
    if (p->samples != (want_batch < 4 ? want_batch * 32 : 100))
        flag(c, "samples");
    if (!isfinite(p->loss) || p->loss <= 0 || p->accuracy < 0 || p->accuracy > 1)
        flag(c, "loss or accuracy");
    if (p->seconds < 0 || p->samples_per_second < 0 || p->skipped_batches != 0 || p->has_validation)
        flag(c, "timing or flags");
    c->last_batch = *p;
    return c->stop_at_batch && c->batch_calls == c->stop_at_batch;
}

static int on_epoch(const tl_progress *p, void *payload)
{
    calls *c = payload;
    c->epoch_calls++;
    if (p->epoch != c->epoch_calls - 1 || p->batch != 4 || p->samples != 100)
        flag(c, "epoch callback counts");
    if (!p->has_validation || !isfinite(p->val_loss) || p->val_accuracy < 0 || p->val_accuracy > 1)
        flag(c, "validation figures");
    /* The epoch's figures are those of its last batch. */
    if (p->loss != c->last_batch.loss || p->accuracy != c->last_batch.accuracy)
        flag(c, "epoch loss differs from the last batch's");
    c->last_epoch = *p;
    return c->stop_at_epoch && c->epoch_calls == c->stop_at_epoch;
}

START_TEST(callbacks_count_and_cancel)
{
    tl_dataset *ds = th_quadrant_dataset(100, 12, 12, 3, 3), *val = th_quadrant_dataset(30, 12, 12, 3, 4);
    tl_model *m = th_seed_cnn(12, 12, 3, 4, 1);
    compile_adam(m, 1e-3f);
    calls c;
    memset(&c, 0, sizeof c);
    tl_fit_options fo = TL_FIT_OPTIONS_INIT;
    fo.epochs = 3;
    fo.batch_size = 32;
    fo.validation = val;
    fo.on_batch = on_batch;
    fo.on_epoch = on_epoch;
    fo.payload = &c;
    ck_assert_tl_ok(tl_model_fit(m, ds, &fo));
    ck_assert_msg(!c.bad, "callback saw wrong figures: %s", c.why);
    ck_assert_uint_eq(c.batch_calls, 12);
    ck_assert_uint_eq(c.epoch_calls, 3);
    ck_assert_uint_eq(tl_optimizer_steps(tl_model_optimizer(m)), 12);

    /* Stop from the batch callback at the second batch: two steps are kept. */
    ck_assert_tl_ok(tl_model_reset_optimizer(m));
    memset(&c, 0, sizeof c);
    c.stop_at_batch = 2;
    ck_assert_tl_err(tl_model_fit(m, ds, &fo), TL_ECANCELED, "stopped by the batch callback at epoch 1, batch 2");
    ck_assert_uint_eq(c.batch_calls, 2);
    ck_assert_uint_eq(c.epoch_calls, 0);
    ck_assert_uint_eq(tl_optimizer_steps(tl_model_optimizer(m)), 2);
    /* Stop from the epoch callback after the first epoch. */
    memset(&c, 0, sizeof c);
    c.stop_at_epoch = 1;
    ck_assert_tl_err(tl_model_fit(m, ds, &fo), TL_ECANCELED, "stopped by the epoch callback after epoch 1");
    ck_assert_uint_eq(c.batch_calls, 4);
    ck_assert_uint_eq(c.epoch_calls, 1);
    ck_assert_uint_eq(tl_optimizer_steps(tl_model_optimizer(m)), 6);
    ck_assert_msg(!c.bad, "callback saw wrong figures: %s", c.why);
    tl_model_free(m);
    tl_dataset_free(ds);
    tl_dataset_free(val);
}
END_TEST

static int keep_epoch(const tl_progress *p, void *payload)
{
    *(tl_progress *)payload = *p;
    return 0;
}

START_TEST(validation_equals_evaluate)
{
    tl_dataset *ds = th_quadrant_dataset(64, 12, 12, 3, 5), *val = th_quadrant_dataset(50, 12, 12, 3, 6);
    tl_model *m = th_seed_cnn(12, 12, 3, 4, 2);
    compile_adam(m, 1e-3f);
    tl_progress last;
    memset(&last, 0, sizeof last);
    tl_fit_options fo = TL_FIT_OPTIONS_INIT;
    fo.epochs = 2;
    fo.batch_size = 16;
    fo.validation = val;
    fo.on_epoch = keep_epoch;
    fo.payload = &last;
    ck_assert_tl_ok(tl_model_fit(m, ds, &fo));
    ck_assert_int_eq(last.has_validation, 1);
    double loss, acc;
    /* In the same chunks as fit (its batch size): the same bits. */
    ck_assert_tl_ok(tl_model_evaluate(&loss, &acc, m, val, 16));
    ck_assert_msg(loss == last.val_loss, "val_loss %.17g, evaluate %.17g", last.val_loss, loss);
    ck_assert(acc == last.val_accuracy);
    ck_assert_tl_ok(tl_model_evaluate(&loss, &acc, m, val, 0));
    ck_assert_close(loss, last.val_loss, 1e-6);
    ck_assert(acc == last.val_accuracy);
    tl_model_free(m);
    tl_dataset_free(ds);
    tl_dataset_free(val);
}
END_TEST

/* ---- non-finite values ------------------------------------------------------------------ */

typedef struct skip_log {
    size_t skipped, calls;
    double loss;
} skip_log;

static int log_skips(const tl_progress *p, void *payload)
{
    skip_log *s = payload;
    s->skipped = p->skipped_batches;
    s->loss = p->loss;
    s->calls++;
    return 0;
}

START_TEST(nonfinite_stop_and_skip)
{
    /* 64 examples in batches of 16 without shuffling; examples 32..47 (the
     * third batch) hold a NaN. */
    float *x;
    int32_t *y;
    th_quadrant_data(&x, &y, 64, 12, 12, 3, 7);
    const size_t ex = 12 * 12 * 3;
    for (size_t i = 32; i < 48; i++)
        x[i * ex + 5] = NAN;
    tl_dataset *ds;
    ck_assert_tl_ok(tl_dataset_create(&ds, x, y, 64, 12, 12, 3, 4, TL_DATA_BORROW));
    tl_fit_options fo = TL_FIT_OPTIONS_INIT;
    fo.batch_size = 16;
    fo.shuffle = 0;

    /* Stop: an error naming the batch; the two earlier steps are kept. */
    tl_model *m = th_seed_cnn(12, 12, 3, 4, 1);
    compile_adam(m, 1e-3f);
    ck_assert_tl_err(tl_model_fit(m, ds, &fo), TL_ENUMERIC, "epoch 1, batch 3 of 4: the loss is not finite");
    ck_assert_uint_eq(tl_optimizer_steps(tl_model_optimizer(m)), 2);
    ck_assert(all_params_finite(m));
    /* A single step on the bad examples: no update at all. */
    size_t n;
    float *before = th_all_params(m, &n);
    double loss;
    ck_assert_tl_err(tl_model_train_step(&loss, m, x + 32 * ex, y + 32, NULL, 16), TL_ENUMERIC, "not finite");
    float *after = th_all_params(m, &n);
    ck_assert(memcmp(before, after, n * sizeof *before) == 0);
    ck_assert_uint_eq(tl_optimizer_steps(tl_model_optimizer(m)), 2);
    /* Evaluation reports it too. */
    ck_assert_tl_err(tl_model_evaluate(&loss, NULL, m, ds, 16), TL_ENUMERIC, "examples 32..47");
    tl_model_free(m);

    /* Skip: the batch is counted and left out; the other batches train. */
    m = th_seed_cnn(12, 12, 3, 4, 1);
    compile_adam(m, 1e-3f);
    skip_log s;
    memset(&s, 0, sizeof s);
    fo.on_nonfinite = TL_NONFINITE_SKIP;
    fo.epochs = 2;
    fo.on_epoch = log_skips;
    fo.payload = &s;
    ck_assert_tl_ok(tl_model_fit(m, ds, &fo));
    ck_assert_uint_eq(s.calls, 2);
    ck_assert_uint_eq(s.skipped, 1); /* per epoch */
    ck_assert(isfinite(s.loss));
    ck_assert_uint_eq(tl_optimizer_steps(tl_model_optimizer(m)), 6);
    ck_assert(all_params_finite(m));

    /* Weights so large that the logits overflow: the loss is not finite
     * either, and nothing changes. */
    tl_layer *dense;
    ck_assert_tl_ok(tl_model_layer_by_name(&dense, m, "dense"));
    tl_param_info info;
    ck_assert_tl_ok(tl_layer_param_info(&info, dense, 0));
    float *huge = malloc(info.count * sizeof *huge);
    for (size_t i = 0; i < info.count; i++)
        huge[i] = (i % 2 ? -1.0f : 1.0f) * 3e38f;
    ck_assert_tl_ok(tl_layer_set_weights(dense, 0, huge, info.count));
    free(before);
    before = th_all_params(m, &n);
    ck_assert_tl_err(tl_model_train_step(&loss, m, x, y, NULL, 16), TL_ENUMERIC, "not finite");
    free(after);
    after = th_all_params(m, &n);
    ck_assert(memcmp(before, after, n * sizeof *before) == 0);
    free(huge), free(before), free(after);
    tl_model_free(m);
    tl_dataset_free(ds);
    free(x);
    free(y);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("train");
    TCase *learning = tcase_create("learning");
    tcase_set_timeout(learning, 600);
    tcase_set_tags(learning, "learning");
    /* 1 and 2 threads; with TL_TEST_REDUCED (sanitizer and valgrind runs,
     * where each takes minutes) 1 only: same_seed_same_bits covers 2. */
    const char *reduced = getenv("TL_TEST_REDUCED");
    int runs = reduced && reduced[0] && strcmp(reduced, "0") != 0 ? 1 : 2;
    tcase_add_loop_test(learning, seed_cnn_learns_the_spot_task, 0, runs);
    suite_add_tcase(s, learning);
    TCase *tc = tcase_create("train");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, same_seed_same_bits);
    tcase_add_test(tc, evaluate_by_hand);
    tcase_add_test(tc, bad_inputs);
    tcase_add_test(tc, callbacks_count_and_cancel);
    tcase_add_test(tc, validation_equals_evaluate);
    tcase_add_test(tc, nonfinite_stop_and_skip);
    suite_add_tcase(s, tc);
    return th_run(s);
}
