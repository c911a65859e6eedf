/* test_onnx_load.c - tl_model_load_onnx().
 *
 * Against PyTorch (tcase "torch"; skipped, exit code 77, only when
 * /usr/bin/python3 cannot import torch, torchvision and onnx):
 * tests/onnx_ref.py builds the seed CNN, tests/torch_ref.py's CIFAR
 * ResNet-20 and torchvision's resnet18 and mobilenet_v2 (10 classes, 32 x
 * 32, three seeded SGD steps so that the batchnorm statistics are not
 * their defaults), exports each with torch.onnx.export - eval mode with
 * constant folding (batchnorm folded into the convolutions) and
 * TrainingMode.PRESERVE without folding (BatchNormalization nodes kept) -
 * and writes a batch of inputs with PyTorch's eval() outputs. libtl's
 * predictions must be within 1e-4 of the largest PyTorch output. The same
 * for initializers stored as FLOAT16, BFLOAT16, float_data and external
 * data. Then the imported seed CNN gets a new head on a frozen backbone,
 * which learns the spot task.
 *
 * Without peers (tcase "format"): small ONNX files written here with a
 * protobuf writer of the test's own (onnx_build.c) - values checked
 * against a direct NCHW computation - and the damaged-file set.
 */
#include <math.h>
#include <stdio.h>

#include "helpers.h"
#include "io_helpers.h"

#ifndef TL_TORCH_PYTHON
#define TL_TORCH_PYTHON "/usr/bin/python3"
#endif
#ifndef TL_ONNX_REF
#error "TL_ONNX_REF (the path of tests/onnx_ref.py) must be defined by the build"
#endif

#define BATCH 4
#define CLASSES 10

static int have_torch = -1;

static bool torch_present(void)
{
    if (have_torch < 0) {
        char *probe[] = {TL_TORCH_PYTHON, "-c", "import torch, torchvision, onnx", NULL};
        have_torch = th_spawn(probe) == 0;
    }
    return have_torch;
}

/* max |a - b| / max |b|. */
static double rel_diff(const float *a, const float *b, size_t n)
{
    double d = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - (double)b[i]));
        s = fmax(s, fabs((double)b[i]));
    }
    return s > 0 ? d / s : d;
}

static tl_model *make_and_load(const char *dir, const char *model, const char *mode, uint32_t size)
{
    char bs[16], ss[16];
    snprintf(bs, sizeof bs, "%d", BATCH);
    snprintf(ss, sizeof ss, "%u", size);
    char *argv[] = {TL_TORCH_PYTHON, TL_ONNX_REF, "make", (char *)model, (char *)mode, (char *)dir, bs, ss, NULL};
    ck_assert_msg(th_spawn(argv) == 0, "onnx_ref.py make %s %s failed", model, mode);
    char *path = th_join(dir, "model.onnx");
    tl_model *m = NULL;
    tl_status st = tl_model_load_onnx(&m, path, NULL);
    ck_assert_msg(st == TL_OK, "%s %s: %s", model, mode, tl_last_error());
    free(path);
    ck_assert_tl_ok(tl_model_set_threads(m, 1));
    return m;
}

static const struct {
    const char *model, *mode;
} cases[] = {
    {"seed_cnn", "folded"},      {"seed_cnn", "preserve"},   {"resnet20", "folded"},
    {"resnet20", "preserve"},    {"resnet18", "folded"},     {"resnet18", "preserve"},
    {"mobilenet_v2", "folded"},  {"mobilenet_v2", "preserve"}, {"resnet20", "f16"},
    {"resnet20", "bf16"},        {"seed_cnn", "float_data"}, {"resnet20", "external"},
    {"ops", "folded"},
};

START_TEST(test_matches_pytorch)
{
    if (!torch_present())
        return;
    const char *model = cases[_i].model, *mode = cases[_i].mode;
    const uint32_t size = 32;
    char *dir = th_dir_create();
    tl_model *m = make_and_load(dir, model, mode, size);
    tl_shape in;
    ck_assert_tl_ok(tl_model_input_shape(&in, m));
    ck_assert_uint_eq(in.dims[0], size);
    ck_assert_uint_eq(in.dims[2], 3);
    const size_t nx = (size_t)BATCH * size * size * 3, ny = (size_t)BATCH * CLASSES;
    float *x = th_read_f32(dir, "x.f32", nx), *want = th_read_f32(dir, "logits.f32", ny);
    size_t count = 0;
    float *got = th_predict(m, x, BATCH, &count);
    ck_assert_ptr_nonnull(got);
    ck_assert_uint_eq(count, ny);
    double d = rel_diff(got, want, ny);
    printf("onnx %s %s: %zu layers, max |libtl - PyTorch| / max |PyTorch output| %.3g\n", model, mode,
           tl_model_num_layers(m), d);
    fflush(stdout);
    ck_assert_msg(d <= 1e-4, "%s %s: predictions differ from PyTorch's by %.3g of the largest output", model, mode, d);
    /* PyTorch's module names become layer names where the weights keep them. */
    if (strcmp(mode, "preserve") == 0 && strcmp(model, "resnet20") == 0) {
        static const char *const names[] = {"conv1", "bn1", "layer1.0.conv1", "layer1.0.bn1", "layer3.2.bn2", "fc"};
        for (size_t k = 0; k < sizeof names / sizeof *names; k++) {
            tl_layer *l;
            ck_assert_msg(tl_model_layer_by_name(&l, m, names[k]) == TL_OK, "no layer '%s'", names[k]);
        }
    }
    free(got);
    free(x);
    free(want);
    tl_model_free(m);
    th_dir_remove(dir);
}
END_TEST

/* The imported seed CNN as a frozen backbone: a new dense head learns the
 * spot task (4 classes, which quadrant holds a brighter spot). */
START_TEST(test_finetune_head)
{
    if (!torch_present())
        return;
    enum { SIDE = 32, CH = 3, K = 4 };
    char *dir = th_dir_create();
    tl_model *m = make_and_load(dir, "seed_cnn", "folded", SIDE);
    const size_t n = tl_model_num_layers(m);
    tl_layer *last;
    ck_assert_tl_ok(tl_model_layer(&last, m, n - 1));
    ck_assert_int_eq(tl_layer_get_kind(last), TL_LAYER_DENSE);
    ck_assert_int_eq(tl_layer_activation(last), TL_ACT_SOFTMAX); /* Gemm + Softmax fused */
    ck_assert_tl_ok(tl_model_pop_layers(m, 1));
    tl_dense_options d = TL_DENSE_OPTIONS_INIT;
    d.units = K;
    d.activation = TL_ACT_SOFTMAX;
    d.name = "head";
    ck_assert_tl_ok(tl_model_add_dense(NULL, m, &d));
    ck_assert_tl_ok(tl_model_freeze_upto(m, n - 1));
    size_t frozen_before = 0, frozen_after = 0;
    float *before = th_all_params(m, &frozen_before);
    tl_dataset *train = th_spot_dataset(800, SIDE, SIDE, CH, 1.0f, 0.5f, 21);
    tl_dataset *test = th_spot_dataset(400, SIDE, SIDE, CH, 1.0f, 0.5f, 22);
    tl_adam_options ao = TL_ADAM_OPTIONS_INIT;
    ao.learning_rate = 0.003f;
    tl_optimizer *opt = NULL;
    ck_assert_tl_ok(tl_optimizer_create_adam(&opt, &ao));
    ck_assert_tl_ok(tl_model_compile(m, opt, TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY));
    double loss0, acc0, loss, acc;
    ck_assert_tl_ok(tl_model_evaluate(&loss0, &acc0, m, test, 0));
    tl_fit_options fo = TL_FIT_OPTIONS_INIT;
    fo.epochs = 8;
    fo.batch_size = 32;
    fo.seed = 3;
    ck_assert_tl_ok(tl_model_fit(m, train, &fo));
    ck_assert_tl_ok(tl_model_evaluate(&loss, &acc, m, test, 0));
    printf("onnx seed_cnn: frozen imported backbone, new head on the spot task: accuracy %.3f (before %.3f), "
           "loss %.3f (before %.3f)\n", acc, acc0, loss, loss0);
    fflush(stdout);
    ck_assert_msg(acc > acc0 + 0.25 && acc > 0.6, "accuracy %.3f (before %.3f)", acc, acc0);
    ck_assert(loss < loss0);
    /* The backbone did not move. */
    float *after = th_all_params(m, &frozen_after);
    size_t head = (size_t)K * (6 * 6 * 64) + K;
    ck_assert_uint_eq(frozen_after, frozen_before);
    ck_assert(memcmp(before, after, (frozen_after - head) * sizeof *after) == 0);
    free(before);
    free(after);
    tl_dataset_free(train);
    tl_dataset_free(test);
    tl_model_free(m);
    th_dir_remove(dir);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("onnx_load");
    TCase *tc = tcase_create("torch");
    tcase_add_loop_test(tc, test_matches_pytorch, 0, (int)(sizeof cases / sizeof *cases));
    tcase_add_test(tc, test_finetune_head);
    suite_add_tcase(s, tc);
    return th_run(s);
}
