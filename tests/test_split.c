/*
 * test_split.c - a prediction on several threads split over the batch
 * (lib/engine_split.c) gives the one-thread prediction's bits: for batch
 * sizes not divisible by the thread count, batches too small to split,
 * pieces of a long slice, chunks (batch_size) with a tail, graph models
 * with residual joins (ResNet, MobileNetV2), a dense head, a frozen base,
 * and weights that change between predictions (the threads' copies of the
 * folded kernels must follow).
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"

#define CLASSES 10

/* A training step at one thread, so that the weights and batchnorm's
 * moving statistics are not the initial ones. */
static void train_once(tl_model *m, const float *x, size_t n, uint64_t seed)
{
    int32_t *y = malloc(n * sizeof *y);
    ck_assert_ptr_nonnull(y);
    for (size_t i = 0; i < n; i++)
        y[i] = (int32_t)((i * 7 + seed) % CLASSES);
    ck_assert_tl_ok(tl_model_train_step(NULL, m, x, y, NULL, n));
    free(y);
}

static tl_model *compiled(tl_model *m)
{
    ck_assert_ptr_nonnull(m);
    tl_optimizer *opt;
    tl_sgd_options o = TL_SGD_OPTIONS_INIT;
    o.learning_rate = 0.05f;
    o.momentum = 0.9f;
    ck_assert_tl_ok(tl_optimizer_create_sgd(&opt, &o));
    ck_assert_tl_ok(tl_model_compile(m, opt, TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY));
    return m;
}

static tl_model *resnet(uint32_t hw)
{
    tl_zoo_options o = TL_ZOO_OPTIONS_INIT;
    o.input_h = o.input_w = hw;
    o.seed = 11;
    tl_model *m;
    ck_assert_tl_ok(tl_zoo_resnet_cifar(&m, 20, &o));
    return compiled(m);
}

static tl_model *mobilenet(uint32_t hw)
{
    tl_zoo_options o = TL_ZOO_OPTIONS_INIT;
    o.input_h = o.input_w = hw;
    o.seed = 12;
    o.width_mult = 0.35f;
    o.cifar_stem = 1;
    tl_model *m;
    ck_assert_tl_ok(tl_zoo_mobilenet_v2(&m, &o)); /* with its dropout before the head */
    return compiled(m);
}

/* Predict n examples at `threads` threads in chunks of batch_size. */
static float *predict(tl_model *m, uint32_t threads, const float *x, size_t n, uint32_t batch_size)
{
    ck_assert_tl_ok(tl_model_set_threads(m, threads));
    float *out = malloc(n * CLASSES * sizeof *out);
    ck_assert_ptr_nonnull(out);
    ck_assert_tl_ok(tl_model_predict(out, n * CLASSES, m, x, n, batch_size));
    return out;
}

/* The reference: one thread, one layer at a time over chunks of at
 * most 17 examples (not split: a chunk of a few examples is one piece),
 * none of them a single example (a one-row product is a matrix-vector
 * product, which sums in another order). */
static float *reference(tl_model *m, const float *x, size_t n)
{
    uint32_t b = n < 17 ? (uint32_t)n : 17;
    while (b > 2 && n % b == 1)
        b--;
    return predict(m, 1, x, n, b);
}

/* Every n of `ns` at 1 (pieces of the batch for a large one), 2, 3 and
 * 4 threads equals the reference, bit for bit. */
static void check_bits(tl_model *m, const float *x, const size_t *ns, size_t count, uint32_t batch_size)
{
    for (size_t k = 0; k < count; k++) {
        const size_t n = ns[k];
        float *ref = reference(m, x, n);
        for (size_t i = 0; i < n * CLASSES; i++)
            ck_assert_msg(ref[i] == ref[i], "NaN in the reference at %zu", i);
        for (uint32_t t = 1; t <= 4; t++) {
            float *got = predict(m, t, x, n, batch_size);
            for (size_t i = 0; i < n * CLASSES; i++)
                ck_assert_msg(memcmp(&got[i], &ref[i], sizeof(float)) == 0,
                              "n %zu, %u threads, batch_size %u: output %zu is %.9g, the reference %.9g", n, t,
                              batch_size, i, (double)got[i], (double)ref[i]);
            free(got);
        }
        free(ref);
    }
}

START_TEST(resnet_bits_match_one_thread)
{
    const uint32_t hw = 16;
    const size_t most = 70, example = (size_t)hw * hw * 3;
    float *x = malloc(most * example * sizeof *x);
    ck_assert_ptr_nonnull(x);
    th_fill_uniform(x, most * example, -1.0f, 1.0f, 5);
    tl_model *m = resnet(hw);
    train_once(m, x, 8, 1);
    /* 1 to 3: too few to split at 2 threads; 5, 7, 9: odd; 37: slices of
     * 18 and 19; 70 in chunks of 64 (at one thread pieces of 32 and 32)
     * and a tail of 6. */
    const size_t ns[] = {1, 2, 3, 4, 5, 7, 9, 37, 70};
    check_bits(m, x, ns, sizeof ns / sizeof ns[0], 64);
    const size_t chunked[] = {9, 37};
    check_bits(m, x, chunked, 2, 5); /* chunks of 5: 4 at 2 threads and more split, the tail does not */
    tl_model_free(m);
    free(x);
}
END_TEST

START_TEST(mobilenet_bits_match_one_thread)
{
    const uint32_t hw = 16;
    const size_t most = 45, example = (size_t)hw * hw * 3;
    float *x = malloc(most * example * sizeof *x);
    ck_assert_ptr_nonnull(x);
    th_fill_uniform(x, most * example, -1.0f, 1.0f, 6);
    tl_model *m = mobilenet(hw);
    train_once(m, x, 6, 2);
    const size_t ns[] = {1, 4, 6, 21, 45};
    check_bits(m, x, ns, sizeof ns / sizeof ns[0], 0);
    tl_model_free(m);
    free(x);
}
END_TEST

START_TEST(seed_cnn_bits_match_one_thread)
{
    const size_t most = 41, example = 12 * 12 * 1;
    float *x = malloc(most * example * sizeof *x);
    ck_assert_ptr_nonnull(x);
    th_fill_uniform(x, most * example, 0.0f, 1.0f, 7);
    tl_model *m = compiled(th_seed_cnn(12, 12, 1, CLASSES, 3));
    train_once(m, x, 16, 3);
    const size_t ns[] = {4, 5, 41};
    check_bits(m, x, ns, sizeof ns / sizeof ns[0], 0);
    tl_model_free(m);
    free(x);
}
END_TEST

/* The threads keep their own copies of the folded kernels: after a
 * training step (at two threads) changed the weights, a prediction at two
 * threads uses the new weights, as one thread does. */
START_TEST(weights_change_between_predictions)
{
    const uint32_t hw = 12;
    const size_t n = 11, example = (size_t)hw * hw * 3;
    float *x = malloc(n * example * sizeof *x);
    ck_assert_ptr_nonnull(x);
    th_fill_uniform(x, n * example, -1.0f, 1.0f, 8);
    tl_model *m = resnet(hw);
    float *before = predict(m, 2, x, n, 0);
    train_once(m, x, 8, 4); /* at two threads: the split's state is kept */
    float *after = predict(m, 2, x, n, 0);
    ck_assert_msg(memcmp(before, after, n * CLASSES * sizeof(float)) != 0, "the step changed nothing");
    float *ref = predict(m, 1, x, n, 0);
    ck_assert_mem_eq(after, ref, n * CLASSES * sizeof(float));
    /* A tensor set by hand (bn1's moving mean, folded into conv1's
     * kernel) reaches the threads' copies too, the split kept. */
    free(predict(m, 2, x, n, 0));
    tl_layer *bn;
    tl_param_info info;
    ck_assert_tl_ok(tl_model_layer_by_name(&bn, m, "bn1"));
    ck_assert_tl_ok(tl_layer_param_info(&info, bn, 2));
    ck_assert_str_eq(info.name, "moving_mean");
    float *mean = malloc(info.count * sizeof *mean);
    ck_assert_ptr_nonnull(mean);
    for (size_t i = 0; i < info.count; i++)
        mean[i] = 0.25f - 0.03f * (float)i;
    ck_assert_tl_ok(tl_layer_set_weights(bn, 2, mean, info.count));
    float *again = predict(m, 2, x, n, 0);
    ck_assert_msg(memcmp(again, ref, n * CLASSES * sizeof(float)) != 0, "the new mean changed nothing");
    float *ref2 = predict(m, 1, x, n, 0);
    ck_assert_mem_eq(again, ref2, n * CLASSES * sizeof(float));
    free(mean), free(ref2);
    free(before), free(after), free(ref), free(again);
    tl_model_free(m);
    free(x);
}
END_TEST

/* A frozen base (everything below the head), trained at two threads:
 * predictions at 2 and 3 threads equal one thread's. */
START_TEST(frozen_base_bits_match_one_thread)
{
    const uint32_t hw = 16;
    const size_t n = 13, example = (size_t)hw * hw * 3;
    float *x = malloc(n * example * sizeof *x);
    ck_assert_ptr_nonnull(x);
    th_fill_uniform(x, n * example, -1.0f, 1.0f, 9);
    tl_model *m = resnet(hw);
    train_once(m, x, 8, 5);
    const size_t nl = tl_model_num_layers(m);
    for (size_t i = 0; i + 1 < nl; i++) {
        tl_layer *l;
        ck_assert_tl_ok(tl_model_layer(&l, m, i));
        ck_assert_tl_ok(tl_layer_set_trainable(l, 0));
    }
    ck_assert_tl_ok(tl_model_set_threads(m, 2));
    train_once(m, x, 8, 6);
    const size_t ns[] = {n};
    check_bits(m, x, ns, 1, 0);
    tl_model_free(m);
    free(x);
}
END_TEST

/* Feature extraction goes the same way: a ResNet cut after its second
 * stage (layer2's output, 32 channels), 2 and 3 threads against one. */
START_TEST(extracted_features_match_one_thread)
{
    const uint32_t hw = 16;
    const size_t n = 23, example = (size_t)hw * hw * 3;
    float *x = malloc(n * example * sizeof *x);
    int32_t *y = malloc(n * sizeof *y);
    ck_assert_ptr_nonnull(x);
    ck_assert_ptr_nonnull(y);
    th_fill_uniform(x, n * example, -1.0f, 1.0f, 10);
    for (size_t i = 0; i < n; i++)
        y[i] = (int32_t)(i % CLASSES);
    tl_model *m = resnet(hw);
    train_once(m, x, 8, 7);
    tl_model *t;
    ck_assert_tl_ok(tl_model_extractor_create_at(&t, m, "layer2.2.relu2"));
    tl_dataset *data;
    ck_assert_tl_ok(tl_dataset_create(&data, x, y, n, hw, hw, 3, CLASSES, TL_DATA_COPY));
    const size_t feats = n * (hw / 2) * (hw / 2) * 32;
    tl_dataset *ref = NULL;
    ck_assert_tl_ok(tl_model_set_threads(t, 1));
    ck_assert_tl_ok(tl_model_extract_features(&ref, t, data, 3)); /* chunks of 3 and a tail of 2: no split */
    for (uint32_t threads = 1; threads <= 3; threads++) {
        tl_dataset *got;
        ck_assert_tl_ok(tl_model_set_threads(t, threads));
        ck_assert_tl_ok(tl_model_extract_features(&got, t, data, 0));
        ck_assert_mem_eq(tl_dataset_images(got), tl_dataset_images(ref), feats * sizeof(float));
        tl_dataset_free(got);
    }
    tl_dataset_free(ref);
    tl_dataset_free(data);
    tl_model_free(t);
    tl_model_free(m);
    free(x), free(y);
}
END_TEST

/* Layers so large that a piece is two images (96 x 96 x 32 floats, over
 * 1 MiB an image): one thread in pieces of two and a last of three,
 * several threads likewise. */
START_TEST(large_layers_pieces_of_two)
{
    const size_t most = 9, example = 96 * 96;
    float *x = malloc(most * example * sizeof *x);
    ck_assert_ptr_nonnull(x);
    th_fill_uniform(x, most * example, 0.0f, 1.0f, 11);
    tl_model *m = compiled(th_seed_cnn(96, 96, 1, CLASSES, 4));
    const size_t ns[] = {4, 7, 9};
    check_bits(m, x, ns, sizeof ns / sizeof ns[0], 0);
    tl_model_free(m);
    free(x);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("split");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, resnet_bits_match_one_thread);
    tcase_add_test(tc, mobilenet_bits_match_one_thread);
    tcase_add_test(tc, seed_cnn_bits_match_one_thread);
    tcase_add_test(tc, weights_change_between_predictions);
    tcase_add_test(tc, frozen_base_bits_match_one_thread);
    tcase_add_test(tc, extracted_features_match_one_thread);
    tcase_add_test(tc, large_layers_pieces_of_two);
    suite_add_tcase(s, tc);
    return th_run(s);
}
