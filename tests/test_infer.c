/* test_infer.c - the inference path's state kept across calls: conv2d's
 * kernel and bias with the next batchnorm folded in (the layer's cache)
 * are reused by prediction after prediction, and every way a parameter, a
 * batchnorm statistic, a trainable flag or the structure can change makes
 * the next prediction see the new values - the same bits as a fresh copy
 * of the model, which has no cache. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"
#include "engine.h"
#include "layers/layer.h"
#include "model.h"

enum { H = 8, W = 8, C = 3, CLASSES = 4, N = 5 };

/* conv (linear) -> batchnorm -> relu -> conv stride 2 (bias) ->
 * batchnorm -> relu6 -> global average pool -> dense: two folded pairs. */
static tl_model *pair_model_bn(uint64_t seed, int bn2_affine)
{
    tl_model *m;
    ck_assert_tl_ok(tl_model_create(&m, H, W, C, seed));
    ck_assert_tl_ok(tl_model_set_threads(m, 1));
    tl_conv2d_options co = TL_CONV2D_OPTIONS_INIT;
    co.filters = 6;
    co.padding = TL_PAD_SAME;
    co.use_bias = 0;
    co.name = "conv1";
    ck_assert_tl_ok(tl_model_add_conv2d(NULL, m, &co));
    tl_batchnorm_options bo = TL_BATCHNORM_OPTIONS_INIT;
    bo.name = "bn1";
    ck_assert_tl_ok(tl_model_add_batchnorm(NULL, m, &bo));
    tl_activation_options ao = TL_ACTIVATION_OPTIONS_INIT;
    ao.activation = TL_ACT_RELU;
    ck_assert_tl_ok(tl_model_add_activation(NULL, m, &ao));
    co.filters = 8;
    co.stride_h = co.stride_w = 2;
    co.use_bias = 1;
    co.name = "conv2";
    ck_assert_tl_ok(tl_model_add_conv2d(NULL, m, &co));
    bo.name = "bn2";
    bo.center = bo.scale = bn2_affine;
    ck_assert_tl_ok(tl_model_add_batchnorm(NULL, m, &bo));
    ao.activation = TL_ACT_RELU6;
    ck_assert_tl_ok(tl_model_add_activation(NULL, m, &ao));
    ck_assert_tl_ok(tl_model_add_global_avgpool2d(NULL, m, NULL, NULL));
    tl_dense_options d = TL_DENSE_OPTIONS_INIT;
    d.units = CLASSES;
    d.activation = TL_ACT_SOFTMAX;
    ck_assert_tl_ok(tl_model_add_dense(NULL, m, &d));
    return m;
}

static tl_model *pair_model(uint64_t seed)
{
    return pair_model_bn(seed, 1);
}

static tl_layer *named(const tl_model *m, const char *name)
{
    tl_layer *l;
    ck_assert_tl_ok(tl_model_layer_by_name(&l, m, name));
    return l;
}

/* Random statistics and affine for every batchnorm, random conv biases:
 * something to fold, unlike the initial 0 / 1. */
static void randomize(tl_model *m, uint64_t seed)
{
    for (size_t i = 0; i < tl_model_num_layers(m); i++) {
        tl_layer *l = m->layers[i];
        for (size_t p = 0; p < l->nparams; p++) {
            const char *name = l->params[p].name;
            bool var = strcmp(name, "moving_variance") == 0;
            if (l->ops->affine == NULL && strcmp(name, "bias") != 0)
                continue;
            const size_t n = l->params[p].count;
            float *v = malloc(n * sizeof *v);
            th_fill_uniform(v, n, var ? 0.5f : -1.0f, var ? 1.5f : 1.0f, seed + i * 8 + p);
            ck_assert_tl_ok(tl_layer_set_weights(l, p, v, n));
            free(v);
        }
    }
}

static float *inputs(void)
{
    float *x = malloc(sizeof(float) * N * H * W * C);
    th_fill_uniform(x, (size_t)N * H * W * C, -1.0f, 1.0f, 77);
    return x;
}

/* The model's predictions, checked against a fresh copy's (no cache) bit
 * for bit; `before` non-NULL: they must differ from it (the change
 * mattered). Returns them in `out` (N * CLASSES). */
static void predict_fresh(float *out, tl_model *m, const float *x, const float *before, const char *what)
{
    ck_assert_tl_ok(tl_model_predict(out, N * CLASSES, m, x, N, N));
    tl_model *copy;
    ck_assert_tl_ok(tl_model_copy(&copy, m));
    ck_assert_tl_ok(tl_model_set_threads(copy, 1));
    float ref[N * CLASSES];
    ck_assert_tl_ok(tl_model_predict(ref, N * CLASSES, copy, x, N, N));
    tl_model_free(copy);
    ck_assert_msg(memcmp(out, ref, sizeof ref) == 0, "%s: the prediction differs from a fresh copy's", what);
    if (before)
        ck_assert_msg(memcmp(out, before, sizeof ref) != 0, "%s: the change did not change the prediction", what);
    /* The fused path ran: both convolutions hold their folded weights. */
    ck_assert_ptr_nonnull(named(m, "conv1")->cache);
    ck_assert_ptr_nonnull(named(m, "conv2")->cache);
}

static void compile_sgd(tl_model *m, float lr)
{
    tl_sgd_options so = TL_SGD_OPTIONS_INIT;
    so.learning_rate = lr;
    tl_optimizer *o;
    ck_assert_tl_ok(tl_optimizer_create_sgd(&o, &so));
    ck_assert_tl_ok(tl_model_compile(m, o, TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY));
}

START_TEST(folded_weights_are_kept_across_calls)
{
    tl_model *m = pair_model(1);
    randomize(m, 3);
    float *x = inputs(), a[N * CLASSES], b[N * CLASSES];
    predict_fresh(a, m, x, NULL, "first call");
    tl_layer *c1 = named(m, "conv1");
    void *cache = c1->cache;
    uint64_t key[4];
    memcpy(key, c1->cache_key, sizeof key);
    /* A second call, then a larger batch (the workspace grows), fold
     * nothing: same cache, same key; the bits of a fresh model's. */
    ck_assert_tl_ok(tl_model_predict(b, N * CLASSES, m, x, N, N));
    ck_assert(memcmp(a, b, sizeof a) == 0);
    float *x2 = malloc(sizeof(float) * 2 * N * H * W * C), b2[2 * N * CLASSES], r2[2 * N * CLASSES];
    memcpy(x2, x, sizeof(float) * N * H * W * C);
    memcpy(x2 + N * H * W * C, x, sizeof(float) * N * H * W * C);
    ck_assert_tl_ok(tl_model_predict(b2, 2 * N * CLASSES, m, x2, 2 * N, 2 * N));
    tl_model *copy;
    ck_assert_tl_ok(tl_model_copy(&copy, m));
    ck_assert_tl_ok(tl_model_set_threads(copy, 1));
    ck_assert_tl_ok(tl_model_predict(r2, 2 * N * CLASSES, copy, x2, 2 * N, 2 * N));
    tl_model_free(copy);
    ck_assert(memcmp(r2, b2, sizeof r2) == 0);
    ck_assert_ptr_eq(c1->cache, cache);
    ck_assert(memcmp(c1->cache_key, key, sizeof key) == 0);
    /* It really is what the prediction reads: spoil it and the output
     * changes; a write to the pair (even of the same values) refolds. */
    memset(cache, 0, sizeof(float) * c1->params[0].count);
    ck_assert_tl_ok(tl_model_predict(b, N * CLASSES, m, x, N, N));
    ck_assert(memcmp(a, b, sizeof a) != 0);
    tl_layer *bn1 = named(m, "bn1");
    float g[6];
    ck_assert_tl_ok(tl_layer_get_weights(g, 6, bn1, 0));
    ck_assert_tl_ok(tl_layer_set_weights(bn1, 0, g, 6));
    ck_assert_tl_ok(tl_model_predict(b, N * CLASSES, m, x, N, N));
    ck_assert(memcmp(a, b, sizeof a) == 0);
    /* A model that is used on 2 threads gives the same bits. */
    ck_assert_tl_ok(tl_model_set_threads(m, 2));
    ck_assert_tl_ok(tl_model_predict(b, N * CLASSES, m, x, N, N));
    ck_assert(memcmp(a, b, sizeof a) == 0);
    free(x2);
    free(x);
    tl_model_free(m);
}
END_TEST

START_TEST(setters_are_seen)
{
    tl_model *m = pair_model(2);
    randomize(m, 5);
    float *x = inputs(), a[N * CLASSES], b[N * CLASSES];
    predict_fresh(a, m, x, NULL, "start");
    /* The conv's kernel, then its bias. */
    tl_layer *c2 = named(m, "conv2");
    size_t k = c2->params[0].count;
    float *v = malloc(k * sizeof *v);
    ck_assert_tl_ok(tl_layer_get_weights(v, k, c2, 0));
    v[3] += 0.5f;
    ck_assert_tl_ok(tl_layer_set_weights(c2, 0, v, k));
    predict_fresh(b, m, x, a, "conv2 kernel");
    float bias[8] = {0.1f, -0.2f, 0.3f, 0, 0, 0, 0.4f, 0};
    ck_assert_tl_ok(tl_layer_set_weights(c2, 1, bias, 8));
    predict_fresh(a, m, x, b, "conv2 bias");
    /* Each batchnorm tensor: gamma, beta, moving mean, moving variance. */
    tl_layer *bn = named(m, "bn1");
    for (size_t p = 0; p < bn->nparams; p++) {
        float t[6];
        ck_assert_tl_ok(tl_layer_get_weights(t, 6, bn, p));
        t[1] = t[1] * 0.5f + 0.25f;
        t[4] += 0.75f;
        ck_assert_tl_ok(tl_layer_set_weights(bn, p, t, 6));
        memcpy(b, a, sizeof a);
        predict_fresh(a, m, x, b, bn->params[p].name);
    }
    /* Freezing and unfreezing change no value: the same bits. */
    ck_assert_tl_ok(tl_model_freeze_upto(m, 4));
    predict_fresh(b, m, x, NULL, "freeze_upto");
    ck_assert(memcmp(a, b, sizeof a) == 0);
    ck_assert_tl_ok(tl_model_set_trainable(m, 0, 0, 1));
    ck_assert_tl_ok(tl_layer_set_trainable(bn, 0));
    predict_fresh(b, m, x, NULL, "set_trainable");
    ck_assert(memcmp(a, b, sizeof a) == 0);
    /* Drawn afresh. */
    ck_assert_tl_ok(tl_model_init_params(m, 99));
    predict_fresh(b, m, x, a, "init_params");
    free(v);
    free(x);
    tl_model_free(m);
}
END_TEST

START_TEST(training_is_seen)
{
    tl_model *m = pair_model(3);
    randomize(m, 7);
    compile_sgd(m, 0.05f);
    float *x = inputs(), a[N * CLASSES], b[N * CLASSES];
    int32_t y[N] = {0, 1, 2, 3, 1};
    predict_fresh(a, m, x, NULL, "start");
    /* A full step: kernels, biases, gamma, beta and the statistics move. */
    ck_assert_tl_ok(tl_model_train_step(NULL, m, x, y, NULL, N));
    predict_fresh(b, m, x, a, "train_step");
    /* The convolutions frozen, the batchnorms learning: only their
     * statistics and affine move (the training pass and the optimizer). */
    tl_layer *c1 = named(m, "conv1"), *c2 = named(m, "conv2");
    ck_assert_tl_ok(tl_layer_set_trainable(c1, 0));
    ck_assert_tl_ok(tl_layer_set_trainable(c2, 0));
    const uint64_t v1 = c1->version;
    ck_assert_tl_ok(tl_model_train_step(NULL, m, x, y, NULL, N));
    ck_assert_uint_eq(c1->version, v1);
    predict_fresh(a, m, x, b, "train_step, batchnorm only");
    /* The batchnorms' learning rate 0: the step moves their statistics only. */
    ck_assert_tl_ok(tl_layer_set_lr_scale(named(m, "bn1"), 0.0f));
    ck_assert_tl_ok(tl_layer_set_lr_scale(named(m, "bn2"), 0.0f));
    ck_assert_tl_ok(tl_model_train_step(NULL, m, x, y, NULL, N));
    predict_fresh(b, m, x, a, "train_step, statistics only");
    /* The batchnorms frozen (inference mode, no update), the convolutions
     * learning: the optimizer's writes alone. */
    ck_assert_tl_ok(tl_model_set_trainable(m, 0, 0, 1));
    ck_assert_tl_ok(tl_layer_set_trainable(named(m, "bn1"), 0));
    ck_assert_tl_ok(tl_layer_set_trainable(named(m, "bn2"), 0));
    predict_fresh(a, m, x, NULL, "batchnorms frozen, before");
    ck_assert_tl_ok(tl_model_train_step(NULL, m, x, y, NULL, N));
    predict_fresh(a, m, x, b, "train_step, convolutions only");
    /* Only the head learning: the folded weights stay valid and are kept. */
    ck_assert_tl_ok(tl_model_freeze_upto(m, 7));
    predict_fresh(a, m, x, NULL, "head only, before");
    uint64_t key[4];
    memcpy(key, c2->cache_key, sizeof key);
    ck_assert_tl_ok(tl_model_train_step(NULL, m, x, y, NULL, N));
    predict_fresh(b, m, x, a, "head only");
    ck_assert(memcmp(c2->cache_key, key, sizeof key) == 0);
    free(x);
    tl_model_free(m);
}
END_TEST

/* A batchnorm without gamma and beta learns nothing: in a training pass
 * only its statistics move, written by the layer itself. */
START_TEST(statistics_alone_are_seen)
{
    tl_model *m = pair_model_bn(8, 0);
    randomize(m, 19);
    compile_sgd(m, 0.05f);
    ck_assert_tl_ok(tl_model_freeze_upto(m, 4));
    ck_assert_tl_ok(tl_layer_set_trainable(named(m, "bn2"), 1));
    float *x = inputs(), a[N * CLASSES], b[N * CLASSES];
    int32_t y[N] = {3, 2, 1, 0, 0};
    predict_fresh(a, m, x, NULL, "start");
    /* The head frozen too: nothing but bn2's statistics can change. */
    ck_assert_tl_ok(tl_model_set_trainable(m, 6, 2, 0));
    ck_assert_tl_ok(tl_model_train_step(NULL, m, x, y, NULL, N));
    predict_fresh(b, m, x, a, "statistics");
    free(x);
    tl_model_free(m);
}
END_TEST

/* A frozen base's training pass runs the base as inference does (folded,
 * fused: the same bits as a prediction), keeps its folded weights from
 * step to step, and still leaves alone what the head needs. */
START_TEST(frozen_base_trains_fused)
{
    tl_model *m = pair_model(9);
    randomize(m, 23);
    compile_sgd(m, 0.05f);
    ck_assert_tl_ok(tl_model_freeze_upto(m, 7));
    float *x = inputs(), a[N * CLASSES];
    int32_t y[N] = {0, 1, 2, 3, 2};
    ck_assert_tl_ok(tl_model_predict(a, N * CLASSES, m, x, N, N));
    ck_assert_tl_ok(tli_workspace_ensure(m, N, true));
    tli_exec ex = tli_exec_for(m, N, true);
    const float *t = tli_forward(m, &ex, x, false);
    ck_assert(memcmp(a, t, sizeof a) == 0);
    tl_layer *c1 = named(m, "conv1");
    uint64_t key[4];
    memcpy(key, c1->cache_key, sizeof key);
    ck_assert_uint_eq(key[0], 2); /* folded for a training pass */
    float head[8 * CLASSES], moved[8 * CLASSES];
    ck_assert_tl_ok(tl_layer_get_weights(head, 8 * CLASSES, m->layers[7], 0));
    ck_assert_tl_ok(tl_model_train_step(NULL, m, x, y, NULL, N));
    ck_assert_tl_ok(tl_model_train_step(NULL, m, x, y, NULL, N));
    ck_assert(memcmp(c1->cache_key, key, sizeof key) == 0);
    ck_assert_tl_ok(tl_layer_get_weights(moved, 8 * CLASSES, m->layers[7], 0));
    ck_assert(memcmp(head, moved, sizeof head) != 0);
    free(x);
    tl_model_free(m);
}
END_TEST

START_TEST(transfer_and_loads_are_seen)
{
    tl_model *m = pair_model(4), *src = pair_model(5);
    randomize(m, 9);
    randomize(src, 11);
    float *x = inputs(), a[N * CLASSES], b[N * CLASSES];
    predict_fresh(a, m, x, NULL, "start");
    ck_assert_tl_ok(tl_model_transfer_params(NULL, m, src, NULL));
    predict_fresh(b, m, x, a, "transfer_params");
    float s[N * CLASSES];
    ck_assert_tl_ok(tl_model_predict(s, N * CLASSES, src, x, N, N));
    ck_assert(memcmp(s, b, sizeof s) == 0);
    /* A checkpoint, then safetensors, each of another model. */
    char path[256];
    snprintf(path, sizeof path, "/tmp/tl_infer_%ld.tlc", (long)getpid());
    randomize(src, 13);
    ck_assert_tl_ok(tl_model_save(src, path, NULL));
    ck_assert_tl_ok(tl_model_load_params(NULL, m, path, NULL));
    predict_fresh(a, m, x, b, "load_params");
    unlink(path);
    snprintf(path, sizeof path, "/tmp/tl_infer_%ld.safetensors", (long)getpid());
    randomize(src, 15);
    ck_assert_tl_ok(tl_model_save_safetensors(src, path, TL_LAYOUT_PYTORCH, NULL));
    ck_assert_tl_ok(tl_model_load_safetensors(NULL, m, path, TL_LAYOUT_PYTORCH, NULL));
    predict_fresh(b, m, x, a, "load_safetensors");
    unlink(path);
    free(x);
    tl_model_free(src);
    tl_model_free(m);
}
END_TEST

START_TEST(structure_changes_are_seen)
{
    tl_model *m = pair_model(6);
    randomize(m, 17);
    float *x = inputs(), a[N * CLASSES], b[N * CLASSES];
    predict_fresh(a, m, x, NULL, "start");
    /* conv2 loses its batchnorm and gets another one (new statistics,
     * maybe at the same address). */
    ck_assert_tl_ok(tl_model_pop_layers(m, 4));
    tl_batchnorm_options bo = TL_BATCHNORM_OPTIONS_INIT;
    bo.epsilon = 0.5f;
    bo.name = "bn2";
    ck_assert_tl_ok(tl_model_add_batchnorm(NULL, m, &bo));
    tl_activation_options ao = TL_ACTIVATION_OPTIONS_INIT;
    ao.activation = TL_ACT_RELU6;
    ck_assert_tl_ok(tl_model_add_activation(NULL, m, &ao));
    ck_assert_tl_ok(tl_model_add_global_avgpool2d(NULL, m, NULL, NULL));
    tl_dense_options d = TL_DENSE_OPTIONS_INIT;
    d.units = CLASSES;
    d.activation = TL_ACT_SOFTMAX;
    ck_assert_tl_ok(tl_model_add_dense(NULL, m, &d));
    predict_fresh(b, m, x, a, "new batchnorm");
    free(x);
    tl_model_free(m);
}
END_TEST

/* Early stopping's restore_best writes every tensor after the last
 * epoch's validation, which folded the last weights. */
START_TEST(restore_best_is_seen)
{
    const size_t n = 64;
    float *xs;
    int32_t *ys;
    th_quadrant_data(&xs, &ys, n, H, W, C, 21);
    int32_t *yv = malloc(n * sizeof *yv);
    for (size_t i = 0; i < n; i++)
        yv[i] = (ys[i] + 1) % CLASSES; /* validation worsens as the model learns */
    tl_dataset *ds, *val;
    ck_assert_tl_ok(tl_dataset_create(&ds, xs, ys, n, H, W, C, CLASSES, TL_DATA_COPY));
    ck_assert_tl_ok(tl_dataset_create(&val, xs, yv, n, H, W, C, CLASSES, TL_DATA_COPY));
    tl_model *m = pair_model(7);
    compile_sgd(m, 0.1f);
    float *x = inputs(), a[N * CLASSES], b[N * CLASSES];
    predict_fresh(a, m, x, NULL, "start");
    tl_early_stopping_options es = TL_EARLY_STOPPING_OPTIONS_INIT;
    es.patience = 2;
    es.restore_best = 1;
    tl_history *hist;
    ck_assert_tl_ok(tl_history_create(&hist));
    tl_fit_options fo = TL_FIT_OPTIONS_INIT;
    fo.epochs = 12;
    fo.batch_size = 16;
    fo.validation = val;
    fo.early_stopping = &es;
    fo.history = hist;
    ck_assert_tl_ok(tl_model_fit(m, ds, &fo));
    const size_t epochs = tl_history_epochs(hist);
    ck_assert_msg(epochs >= 2 && tl_history_value(hist, epochs - 1, TL_HISTORY_IMPROVED) == 0.0,
                  "the last epoch (%zu) was the best: nothing was restored", epochs);
    predict_fresh(b, m, x, a, "restore_best");
    tl_history_free(hist);
    tl_dataset_free(ds);
    tl_dataset_free(val);
    free(xs);
    free(ys);
    free(yv);
    free(x);
    tl_model_free(m);
}
END_TEST

/* A graph whose outputs share buffers in inference: a residual add, a
 * concatenation, a flatten view read by two layers, a fused pair whose
 * input is read again after it and one whose input is not. Its predictions equal those of a
 * workspace where every layer keeps its own output (training's), bit for
 * bit, and its workspace is smaller. */
START_TEST(shared_outputs_match_own_buffers)
{
    tl_model *m;
    ck_assert_tl_ok(tl_model_create(&m, H, W, C, 31));
    ck_assert_tl_ok(tl_model_set_threads(m, 1));
    tl_conv2d_options co = TL_CONV2D_OPTIONS_INIT;
    co.filters = 6;
    co.padding = TL_PAD_SAME;
    co.activation = TL_ACT_RELU;
    tl_layer *stem, *a, *b, *sum, *cat, *flat, *d1, *d2, *both;
    ck_assert_tl_ok(tl_model_add_conv2d(&stem, m, &co));
    co.activation = TL_ACT_LINEAR;
    co.use_bias = 0;
    ck_assert_tl_ok(tl_model_add_conv2d(NULL, m, &co));
    tl_batchnorm_options bo = TL_BATCHNORM_OPTIONS_INIT;
    ck_assert_tl_ok(tl_model_add_batchnorm(NULL, m, &bo));
    tl_activation_options ao = TL_ACTIVATION_OPTIONS_INIT;
    ao.activation = TL_ACT_RELU;
    ck_assert_tl_ok(tl_model_add_activation(&a, m, &ao));
    const tl_layer *pair[2] = {stem, a}; /* the stem is read after the fused pair */
    ck_assert_tl_ok(tl_model_add_add(&sum, m, pair, 2, NULL));
    /* a fused pair (no activation) whose input nothing else reads */
    tl_layer *bn2;
    co.kernel_h = co.kernel_w = 1; /* reads its input as it is: no padded copy */
    co.filters = 16;                /* wider: its rows would overrun its input's */
    ck_assert_tl_ok(tl_model_add_conv2d(NULL, m, &co));
    ck_assert_tl_ok(tl_model_add_batchnorm(&bn2, m, &bo));
    co.kernel_h = co.kernel_w = 3;
    co.input = stem;
    co.filters = 4;
    ck_assert_tl_ok(tl_model_add_conv2d(&b, m, &co));
    const tl_layer *two[2] = {bn2, b};
    ck_assert_tl_ok(tl_model_add_concatenate(&cat, m, two, 2, NULL));
    ck_assert_tl_ok(tl_model_add_flatten_from(&flat, m, cat, NULL));
    tl_dense_options d = TL_DENSE_OPTIONS_INIT;
    d.units = 8;
    d.input = flat;
    ck_assert_tl_ok(tl_model_add_dense(&d1, m, &d));
    d.activation = TL_ACT_TANH;
    ck_assert_tl_ok(tl_model_add_dense(&d2, m, &d));
    const tl_layer *heads[2] = {d1, d2};
    ck_assert_tl_ok(tl_model_add_add(&both, m, heads, 2, NULL));
    d.units = CLASSES;
    d.input = NULL;
    d.activation = TL_ACT_SOFTMAX;
    ck_assert_tl_ok(tl_model_add_dense(NULL, m, &d));
    randomize(m, 29);
    float *x = inputs(), a1[N * CLASSES];
    ck_assert_tl_ok(tl_model_predict(a1, N * CLASSES, m, x, N, N));
    const size_t shared = m->ws.bytes;
    tl_model *own;
    ck_assert_tl_ok(tl_model_copy(&own, m));
    ck_assert_tl_ok(tl_model_set_threads(own, 1));
    ck_assert_tl_ok(tli_workspace_ensure(own, N, true));
    ck_assert_uint_lt(shared, own->ws.bytes);
    float a2[N * CLASSES];
    ck_assert_tl_ok(tl_model_predict(a2, N * CLASSES, own, x, N, N));
    ck_assert(memcmp(a1, a2, sizeof a1) == 0);
    /* the distinct buffers really were distinct */
    ck_assert_ptr_ne(own->layers[1]->out, own->layers[4]->out);
    tl_model_free(own);
    free(x);
    tl_model_free(m);
}
END_TEST

/* ---- the residual join fused into the convolution before it ------------ */

/* A residual network on 8x8x16 inputs: a stem; a block whose join adds
 * the stem (the shortcut as the join's second input), then ReLU; one
 * whose join has it the other way round, then ReLU6; two pointwise pairs on the
 * direct path (32 filters) and two on the GEMM path (24 filters, not a
 * multiple of 16) whose join's other input is a conv -> batchnorm pair run
 * before the fused one (ResNet's projection shortcut), with no activation
 * after it. `gap`: a dropout (identity in inference) between each join
 * and the batchnorm that feeds it, so that the joins run on their own. */
static tl_model *residual_model(int gap)
{
    tl_model *m;
    ck_assert_tl_ok(tl_model_create(&m, H, W, 16, 41));
    ck_assert_tl_ok(tl_model_set_threads(m, 1));
    tl_conv2d_options co = TL_CONV2D_OPTIONS_INIT;
    co.filters = 16;
    co.padding = TL_PAD_SAME;
    co.activation = TL_ACT_RELU;
    co.name = "stem";
    tl_layer *stem, *prev, *bn, *other = NULL;
    ck_assert_tl_ok(tl_model_add_conv2d(&stem, m, &co));
    tl_batchnorm_options bo = TL_BATCHNORM_OPTIONS_INIT;
    tl_activation_options ao = TL_ACTIVATION_OPTIONS_INIT;
    tl_dropout_options dr = TL_DROPOUT_OPTIONS_INIT;
    dr.rate = 0.5f;
    static const char *const names[6][3] = {{"a.conv", "a.bn", "a.join"}, {"b.conv", "b.bn", "b.join"},
                                            {"c.conv", "c.bn", NULL},     {"d.conv", "d.bn", "d.join"},
                                            {"e.conv", "e.bn", NULL},     {"f.conv", "f.bn", "f.join"}};
    prev = stem;
    for (int k = 0; k < 6; k++) {
        co.activation = TL_ACT_LINEAR;
        co.use_bias = k % 2; /* a bias to fold, or none */
        co.kernel_h = co.kernel_w = k < 2 ? 3 : 1;
        co.filters = k < 2 ? 16 : k < 4 ? 32 : 24;
        co.input = prev; /* d and f: the same input as c and e */
        co.name = names[k][0];
        tl_layer *conv;
        ck_assert_tl_ok(tl_model_add_conv2d(&conv, m, &co));
        bo.name = names[k][1];
        ck_assert_tl_ok(tl_model_add_batchnorm(&bn, m, &bo));
        if (names[k][2] == NULL) { /* c, e: the shortcut of the next pair */
            other = bn;
            continue;
        }
        tl_layer *in = bn;
        if (gap)
            ck_assert_tl_ok(tl_model_add_dropout(&in, m, &dr));
        const tl_layer *both[2] = {k == 1 ? prev : in, k == 1 ? in : k == 0 ? prev : other};
        tl_layer *join;
        ck_assert_tl_ok(tl_model_add_add(&join, m, both, 2, names[k][2]));
        prev = join;
        if (k < 2) {
            ao.activation = k == 0 ? TL_ACT_RELU : TL_ACT_RELU6;
            ao.name = k == 0 ? "a.act" : "b.act";
            ck_assert_tl_ok(tl_model_add_activation(&prev, m, &ao));
        }
    }
    ck_assert_tl_ok(tl_model_add_global_avgpool2d(NULL, m, NULL, NULL));
    tl_dense_options d = TL_DENSE_OPTIONS_INIT;
    d.units = CLASSES;
    d.activation = TL_ACT_SOFTMAX;
    d.name = "head";
    ck_assert_tl_ok(tl_model_add_dense(NULL, m, &d));
    return m;
}

/* dst's layers take the tensors of src's layers of the same names. */
static void copy_by_name(tl_model *dst, const tl_model *src)
{
    for (size_t i = 0; i < tl_model_num_layers(src); i++) {
        const tl_layer *l = src->layers[i];
        if (l->nparams == 0)
            continue;
        tl_layer *t = named(dst, l->name);
        for (size_t p = 0; p < l->nparams; p++)
            ck_assert_tl_ok(tl_layer_set_weights(t, p, l->params[p].value, l->params[p].count));
    }
}

/* The convolutions before the joins add the shortcut and apply the ReLU
 * after the join themselves: the same bits as the joins run on their
 * own, for 1 and 2 threads and batches of 1 and N. */
START_TEST(residual_join_fused)
{
    tl_model *fused = residual_model(0), *apart = residual_model(1);
    randomize(fused, 43);
    copy_by_name(apart, fused);
    float *x = malloc(sizeof(float) * N * H * W * 16);
    th_fill_uniform(x, (size_t)N * H * W * 16, -1.0f, 1.0f, 45);
    for (uint32_t threads = 1; threads <= 2; threads++) {
        ck_assert_tl_ok(tl_model_set_threads(fused, threads));
        ck_assert_tl_ok(tl_model_set_threads(apart, threads));
        for (size_t batch = 1; batch <= N; batch += N - 1) {
            float a[N * CLASSES], b[N * CLASSES];
            ck_assert_tl_ok(tl_model_predict(a, batch * CLASSES, fused, x, batch, batch));
            ck_assert_tl_ok(tl_model_predict(b, batch * CLASSES, apart, x, batch, batch));
            ck_assert_msg(memcmp(a, b, batch * CLASSES * sizeof(float)) == 0,
                          "threads %u batch %zu: the fused joins differ from the separate ones", threads, batch);
        }
    }
    tl_model_free(apart);
    free(x);
    tl_model_free(fused);
}
END_TEST

/* A frozen base's training pass fuses the joins too (each layer has its
 * own buffer there: the joins' outputs stay unwritten) and gives a
 * prediction's bits. */
START_TEST(residual_join_fused_frozen)
{
    tl_model *m = residual_model(0);
    randomize(m, 47);
    compile_sgd(m, 0.05f);
    const size_t head = tl_model_num_layers(m) - 1;
    ck_assert_tl_ok(tl_model_freeze_upto(m, head));
    float *x = malloc(sizeof(float) * N * H * W * 16), a[N * CLASSES];
    th_fill_uniform(x, (size_t)N * H * W * 16, -1.0f, 1.0f, 49);
    ck_assert_tl_ok(tl_model_predict(a, N * CLASSES, m, x, N, N));
    ck_assert_tl_ok(tli_workspace_ensure(m, N, true));
    static const char *const joins[4] = {"a.join", "b.join", "d.join", "f.join"};
    for (int k = 0; k < 4; k++) {
        tl_layer *j = named(m, joins[k]);
        for (size_t i = 0; i < N * j->out_size; i++)
            j->out[i] = NAN;
    }
    tli_exec ex = tli_exec_for(m, N, true);
    const float *t = tli_forward(m, &ex, x, false);
    ck_assert(memcmp(a, t, sizeof a) == 0);
    for (int k = 0; k < 2; k++) /* followed by their activation: that is written instead */
        ck_assert_msg(isnan(named(m, joins[k])->out[0]), "%s was run on its own", joins[k]);
    ck_assert(!isnan(named(m, "d.join")->out[0]) && !isnan(named(m, "f.join")->out[0]));
    free(x);
    tl_model_free(m);
}
END_TEST


/* A prediction of a MobileNetV2 block runs the batch in pieces that stay
 * in cache (engine_split.c: five images of a 32x32x144 expansion, 576 KiB
 * each), with the same bits as one pass over the whole batch: 1x1
 * expansion (direct kernel), depthwise, batchnorm + ReLU6 folded, a
 * projection to 24 channels (direct forward, masked filters), global
 * pooling, for an odd batch on 1 and 2 threads. (No dense head: BLIS
 * rounds a product of one row differently from one of seven, so a dense
 * layer's bits have always depended on the batch a prediction runs in.) */
START_TEST(predict_in_pieces_matches_one_pass)
{
    enum { S = 32, CI = 16, B = 19, K = 24 };
    tl_model *m;
    ck_assert_tl_ok(tl_model_create(&m, S, S, CI, 5));
    tl_conv2d_options co = TL_CONV2D_OPTIONS_INIT;
    co.filters = 144;
    co.kernel_h = co.kernel_w = 1;
    co.use_bias = 0;
    ck_assert_tl_ok(tl_model_add_conv2d(NULL, m, &co));
    tl_batchnorm_options bo = TL_BATCHNORM_OPTIONS_INIT;
    ck_assert_tl_ok(tl_model_add_batchnorm(NULL, m, &bo));
    tl_activation_options ao = TL_ACTIVATION_OPTIONS_INIT;
    ao.activation = TL_ACT_RELU6;
    ck_assert_tl_ok(tl_model_add_activation(NULL, m, &ao));
    co.kernel_h = co.kernel_w = 3;
    co.padding = TL_PAD_SAME;
    co.groups = 144;
    ck_assert_tl_ok(tl_model_add_conv2d(NULL, m, &co));
    ck_assert_tl_ok(tl_model_add_batchnorm(NULL, m, &bo));
    ck_assert_tl_ok(tl_model_add_activation(NULL, m, &ao));
    co.filters = 24;
    co.kernel_h = co.kernel_w = 1;
    co.groups = 1;
    ck_assert_tl_ok(tl_model_add_conv2d(NULL, m, &co));
    ck_assert_tl_ok(tl_model_add_batchnorm(NULL, m, &bo));
    ck_assert_tl_ok(tl_model_add_global_avgpool2d(NULL, m, NULL, NULL));
    randomize(m, 51);
    float *x = malloc(sizeof(float) * B * S * S * CI);
    th_fill_uniform(x, (size_t)B * S * S * CI, -1.0f, 1.0f, 53);
    for (uint32_t threads = 1; threads <= 2; threads++) {
        ck_assert_tl_ok(tl_model_set_threads(m, threads)); /* drops the workspace */
        float a[B * K], whole[B * K];
        ck_assert_tl_ok(tl_model_predict(a, B * K, m, x, B, 64));
        ck_assert_ptr_nonnull(m->ws.split); /* it ran in pieces */
        ck_assert_tl_ok(tli_workspace_ensure(m, B, false));
        tli_exec ex = tli_exec_for(m, B, false);
        memcpy(whole, tli_forward(m, &ex, x, false), sizeof whole);
        ck_assert_msg(memcmp(a, whole, sizeof a) == 0, "threads %u: pieces differ from one pass of %d", threads, B);
        float one[K];
        ck_assert_tl_ok(tl_model_predict(one, K, m, x + 17 * S * S * CI, 1, 1));
        ck_assert(memcmp(one, a + 17 * K, sizeof one) == 0);
        for (size_t i = 0; i < B * K; i++)
            ck_assert(isfinite(a[i]));
    }
    free(x);
    tl_model_free(m);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("infer");
    TCase *tc = tcase_create("cache");
    tcase_add_test(tc, folded_weights_are_kept_across_calls);
    tcase_add_test(tc, setters_are_seen);
    tcase_add_test(tc, training_is_seen);
    tcase_add_test(tc, statistics_alone_are_seen);
    tcase_add_test(tc, frozen_base_trains_fused);
    tcase_add_test(tc, transfer_and_loads_are_seen);
    tcase_add_test(tc, structure_changes_are_seen);
    tcase_add_test(tc, restore_best_is_seen);
    tcase_add_test(tc, shared_outputs_match_own_buffers);
    tcase_add_test(tc, residual_join_fused);
    tcase_add_test(tc, residual_join_fused_frozen);
    tcase_add_test(tc, predict_in_pieces_matches_one_pass);
    suite_add_tcase(s, tc);
    return th_run(s);
}
