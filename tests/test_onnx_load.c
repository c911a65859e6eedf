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
 * data, for a model of the other operators, for x.view(x.size(0), -1)
 * with a dynamic batch axis, and at opsets 11 and 17. The state_dict of
 * each PRESERVE export loads by name into the imported model. Then the imported seed CNN gets a new head on a frozen backbone,
 * which learns the spot task.
 *
 * Without peers (tcase "format"): small ONNX files written here with a
 * protobuf writer of the test's own (onnx_build.c) - values checked
 * against a direct NCHW computation - and the damaged-file set.
 */
#include <math.h>
#include <stdio.h>

#include <sys/stat.h>
#include <unistd.h>

#include "helpers.h"
#include "io_helpers.h"
#include "onnx_build.h"

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

static const struct {
    const char *model, *mode;
} cases[] = {
    {"seed_cnn", "folded"},      {"seed_cnn", "preserve"},   {"resnet20", "folded"},
    {"resnet20", "preserve"},    {"resnet18", "folded"},     {"resnet18", "preserve"},
    {"mobilenet_v2", "folded"},  {"mobilenet_v2", "preserve"}, {"resnet20", "f16"},
    {"resnet20", "bf16"},        {"seed_cnn", "float_data"}, {"resnet20", "external"},
    {"ops", "folded"},           {"seed_view", "dynamic11"}, {"seed_view", "dynamic17"},
    {"resnet20", "preserve17"},  {"mobilenet_v2", "folded11"},
};
#define NCASES (sizeof cases / sizeof *cases)

/* Every reference file, written once by one python process before the
 * torch tests (an unchecked fixture: it runs in the test's main process). */
static char *ref_dir;
static int ref_status = -1;

static void make_references(void)
{
    if (!torch_present())
        return;
    ref_dir = th_dir_create();
    char bs[16], ss[16], list[NCASES][64];
    snprintf(bs, sizeof bs, "%d", BATCH);
    snprintf(ss, sizeof ss, "%d", 32);
    char *argv[8 + NCASES] = {TL_TORCH_PYTHON, TL_ONNX_REF, "make", ref_dir, bs, ss};
    for (size_t k = 0; k < NCASES; k++) {
        snprintf(list[k], sizeof list[k], "%s:%s", cases[k].model, cases[k].mode);
        argv[6 + k] = list[k];
    }
    argv[6 + NCASES] = NULL;
    ref_status = th_spawn(argv);
}

static void remove_references(void)
{
    if (ref_dir)
        th_dir_remove(ref_dir);
    ref_dir = NULL;
}

/* The reference directory of a case, and the model loaded from it. */
static tl_model *load_case(char **dir, const char *model, const char *mode)
{
    ck_assert_msg(ref_status == 0, "onnx_ref.py make failed (status %d)", ref_status);
    char sub[64];
    snprintf(sub, sizeof sub, "%s-%s", model, mode);
    *dir = th_join(ref_dir, sub);
    char *path = th_join(*dir, "model.onnx");
    tl_model *m = NULL;
    tl_status st = tl_model_load_onnx(&m, path, NULL);
    ck_assert_msg(st == TL_OK, "%s %s: %s", model, mode, tl_last_error());
    free(path);
    ck_assert_tl_ok(tl_model_set_threads(m, 1));
    return m;
}

START_TEST(test_matches_pytorch)
{
    if (!torch_present())
        return;
    const char *model = cases[_i].model, *mode = cases[_i].mode;
    const uint32_t size = 32;
    char *dir;
    tl_model *m = load_case(&dir, model, mode);
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
    /* PyTorch's module names become layer names where the weights keep
     * them: the model's state_dict loads by name, strict, every parameter
     * copied, and the predictions stay. */
    if (strncmp(mode, "preserve", 8) == 0 && strcmp(model, "seed_cnn") != 0) {
        tl_layer *l;
        if (strcmp(model, "resnet20") == 0) {
            static const char *const names[] = {"conv1", "bn1", "layer1.0.conv1", "layer1.0.bn1", "layer3.2.bn2",
                                                "fc"};
            for (size_t k = 0; k < sizeof names / sizeof *names; k++)
                ck_assert_msg(tl_model_layer_by_name(&l, m, names[k]) == TL_OK, "no layer '%s'", names[k]);
        }
        char *sd = th_join(dir, "state.safetensors");
        tl_transfer_report *r = NULL;
        tl_status st = tl_model_load_safetensors(&r, m, sd, TL_LAYOUT_PYTORCH, NULL);
        ck_assert_msg(st == TL_OK, "%s: %s", model, tl_last_error());
        ck_assert_uint_eq(tl_transfer_report_params_copied(r), tl_model_param_count(m));
        tl_transfer_report_free(r);
        free(sd);
        float *again = th_predict(m, x, BATCH, &count);
        ck_assert(memcmp(again, got, ny * sizeof *got) == 0);
        free(again);
    }
    /* Folded exports of networks whose activations all follow a convolution
     * (MobileNetV2's ReLU6) have them fused: no activation layer. */
    if (strcmp(mode, "folded") == 0 && (strcmp(model, "mobilenet_v2") == 0 || strcmp(model, "seed_cnn") == 0)) {
        for (size_t i = 0; i < tl_model_num_layers(m); i++) {
            tl_layer *l;
            ck_assert_tl_ok(tl_model_layer(&l, m, i));
            ck_assert_msg(tl_layer_get_kind(l) != TL_LAYER_ACTIVATION, "%s: layer '%s' is not fused", model,
                          tl_layer_name(l));
        }
    }
    free(got);
    free(x);
    free(want);
    tl_model_free(m);
    free(dir);
}
END_TEST

/* The imported seed CNN as a frozen backbone: a new dense head learns the
 * spot task (4 classes, which quadrant holds a brighter spot). */
START_TEST(test_finetune_head)
{
    if (!torch_present())
        return;
    enum { SIDE = 32, CH = 3, K = 4 };
    char *dir;
    tl_model *m = load_case(&dir, "seed_cnn", "folded");
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
    free(dir);
}
END_TEST


/* ---- files written here ------------------------------------------------------------------------ */

static char *write_ob(const char *dir, const char *name, const ob *b)
{
    char *path = th_join(dir, name);
    th_file_write(path, b->p, b->n);
    return path;
}

/* The tiny CNN (onnx_build.h) computed directly in NCHW: y (4) for x (2, 6, 6). */
static void tiny_reference(float y[4], const float *x)
{
    float w1[54], b1[3], w2[108], b2[4], P[2][8][8] = {{{0}}}, C[3][6][6], f[27];
    ox_tiny_weights(w1, b1, w2, b2);
    for (int c = 0; c < 2; c++)
        for (int i = 0; i < 6; i++)
            for (int j = 0; j < 6; j++)
                P[c][i + 1][j + 1] = x[(c * 6 + i) * 6 + j]; /* top: Pad 1 + Conv 0; left: Pad 0 + Conv 1 */
    for (int o = 0; o < 3; o++)
        for (int i = 0; i < 6; i++)
            for (int j = 0; j < 6; j++) {
                double s = b1[o];
                for (int c = 0; c < 2; c++)
                    for (int a = 0; a < 3; a++)
                        for (int b = 0; b < 3; b++)
                            s += (double)w1[((o * 2 + c) * 3 + a) * 3 + b] * P[c][i + a][j + b];
                C[o][i][j] = s > 0 ? (float)s : 0.0f;
            }
    for (int o = 0; o < 3; o++)
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 3; j++)
                f[o * 9 + i * 3 + j] = fmaxf(fmaxf(C[o][2 * i][2 * j], C[o][2 * i][2 * j + 1]),
                                             fmaxf(C[o][2 * i + 1][2 * j], C[o][2 * i + 1][2 * j + 1]));
    double z[4], mx = -1e30, sum = 0;
    for (int k = 0; k < 4; k++) {
        z[k] = b2[k];
        for (int q = 0; q < 27; q++)
            z[k] += (double)w2[k * 27 + q] * f[q];
        mx = fmax(mx, z[k]);
    }
    for (int k = 0; k < 4; k++)
        sum += exp(z[k] - mx);
    for (int k = 0; k < 4; k++)
        y[k] = (float)(exp(z[k] - mx) / sum);
}

/* Load `path` and compare with tiny_reference on a few inputs. */
static void check_tiny(const char *path, const char *what)
{
    tl_model *m = NULL;
    tl_status st = tl_model_load_onnx(&m, path, NULL);
    ck_assert_msg(st == TL_OK, "%s: %s", what, tl_last_error());
    ck_assert_uint_eq(tl_model_num_layers(m), 4); /* conv(relu), maxpool, flatten, dense(softmax): Pad folded */
    tl_layer *l;
    ck_assert_tl_ok(tl_model_layer_by_name(&l, m, "conv"));
    ck_assert_int_eq(tl_layer_activation(l), TL_ACT_RELU);
    ck_assert_tl_ok(tl_model_layer_by_name(&l, m, "fc"));
    ck_assert_int_eq(tl_layer_activation(l), TL_ACT_SOFTMAX);
    for (int t = 0; t < 3; t++) {
        float x[72], xn[72], want[4], got[4];
        th_fill_uniform(x, 72, -1.0f, 1.0f, (uint64_t)(100 + t));
        for (int c = 0; c < 2; c++)
            for (int p = 0; p < 36; p++)
                xn[p * 2 + c] = x[c * 36 + p]; /* NCHW -> NHWC */
        tiny_reference(want, x);
        ck_assert_tl_ok(tl_model_predict(got, 4, m, xn, 1, 0));
        for (int k = 0; k < 4; k++)
            ck_assert_msg(fabsf(got[k] - want[k]) <= 1e-5f, "%s: output %d is %.7g, direct NCHW computation %.7g",
                          what, k, (double)got[k], (double)want[k]);
    }
    tl_model_free(m);
}

START_TEST(test_tiny_every_storage)
{
    static const char *const what[] = {"raw float32", "float_data", "float16", "bfloat16", "external data"};
    char *dir = th_dir_create();
    for (int how = OX_RAW_F32; how <= OX_EXTERNAL; how++) {
        for (int64_t opset = 11; opset <= 17; opset += 6) {
            ob b = {0}, ext = {0};
            ox_tiny_cnn(&b, opset, (ox_store)how, &ext);
            char *path = write_ob(dir, "tiny.onnx", &b);
            if (how == OX_EXTERNAL)
                free(write_ob(dir, "tiny.bin", &ext));
            check_tiny(path, what[how]);
            free(path);
            ob_free(&b);
            ob_free(&ext);
        }
    }
    th_dir_remove(dir);
}
END_TEST

/* x.view(x.size(0), -1) with a dynamic batch, as torch.onnx writes it at
 * opset 11 and 13: Shape -> Gather -> Unsqueeze -> Concat -> Reshape ->
 * Gemm. A flatten and a dense layer whose rows follow ONNX's (c, h, w)
 * order, checked against the direct computation. */
START_TEST(test_shape_chain)
{
    char *dir = th_dir_create();
    float w[2 * 18];
    th_fill_uniform(w, 36, -1.0f, 1.0f, 7);
    for (int64_t opset = 11; opset <= 13; opset += 2) {
        ob g = {0}, a = {0}, b = {0};
        const int64_t zero[1] = {0}, minus1[1] = {-1}, d1[1] = {1}, x2[4] = {-1, 2, 3, 3}, y2[2] = {-1, 2};
        const int64_t dw[2] = {2, 18};
        ox_tensor_i64(&g, 5, "zero", d1, 0, zero);
        ox_tensor_i64(&g, 5, "minus1", d1, 1, minus1);
        ox_tensor_f(&g, 5, "fc.weight", dw, 2, w, OX_RAW_F32, NULL, NULL);
        ox_node(&g, "Shape", "/Shape", "x", "s", NULL);
        ox_node(&g, "Gather", "/Gather", "s,zero", "n", NULL);
        if (opset < 13) {
            ox_attr_ints(&a, "axes", zero, 1);
            ox_node(&g, "Unsqueeze", "/Unsqueeze", "n", "u", &a);
        } else {
            ox_tensor_i64(&g, 5, "axes", d1, 1, zero);
            ox_node(&g, "Unsqueeze", "/Unsqueeze", "n,axes", "u", NULL);
        }
        ox_attr_int(&a, "axis", 0);
        ox_node(&g, "Concat", "/Concat", "u,minus1", "shape", &a);
        ox_node(&g, "Reshape", "/Reshape", "x,shape", "f", NULL);
        ox_attr_int(&a, "transB", 1);
        ox_node(&g, "Gemm", "/fc/Gemm", "f,fc.weight", "y", &a);
        ox_value(&g, 11, "x", x2, 4);
        ox_value(&g, 12, "y", y2, 2);
        ox_model(&b, opset, &g);
        char *path = write_ob(dir, "view.onnx", &b);
        ob_free(&b);
        tl_model *m = NULL;
        tl_status st = tl_model_load_onnx(&m, path, NULL);
        ck_assert_msg(st == TL_OK, "%s", tl_last_error());
        ck_assert_uint_eq(tl_model_num_layers(m), 2);
        tl_layer *l;
        ck_assert_tl_ok(tl_model_layer(&l, m, 0));
        ck_assert_int_eq(tl_layer_get_kind(l), TL_LAYER_FLATTEN);
        float x[18], xn[18], y[2];
        th_fill_uniform(x, 18, -1.0f, 1.0f, 8);
        for (int c = 0; c < 2; c++)
            for (int p = 0; p < 9; p++)
                xn[p * 2 + c] = x[c * 9 + p];
        ck_assert_tl_ok(tl_model_predict(y, 2, m, xn, 1, 0));
        for (int k = 0; k < 2; k++) {
            double want = 0;
            for (int q = 0; q < 18; q++)
                want += (double)w[k * 18 + q] * x[q];
            ck_assert_msg(fabs(y[k] - want) <= 1e-5, "opset %d: output %d is %g, direct %g", (int)opset, k,
                          (double)y[k], want);
        }
        tl_model_free(m);
        free(path);
    }
    th_dir_remove(dir);
}
END_TEST

/* A load that must fail: the status, no model handed back, and a message
 * from tl_model_load_onnx naming the file and containing `want`. */
static void expect_fail(const char *path, tl_status status, const char *want)
{
    tl_model *sentinel = (tl_model *)&sentinel, *m = sentinel;
    tl_status st = tl_model_load_onnx(&m, path, NULL);
    ck_assert_msg(st == status, "%s: status %s, expected %s (%s)", want, tl_status_str(st), tl_status_str(status),
                  tl_last_error());
    ck_assert_ptr_eq(m, sentinel);
    const char *e = tl_last_error();
    ck_assert_msg(strncmp(e, "tl_model_load_onnx: ", 20) == 0 && strstr(e, path) != NULL, "message: %s", e);
    ck_assert_msg(strstr(e, want) != NULL, "message '%s' does not contain '%s'", e, want);
}

static void expect_bytes_fail(const char *dir, const void *p, size_t n, tl_status status, const char *want)
{
    ob b = {0};
    ob_raw(&b, p, n);
    char *path = write_ob(dir, "bad.onnx", &b);
    expect_fail(path, status, want);
    free(path);
    ob_free(&b);
}

/* Every prefix of a valid file fails cleanly; a cut inside the graph (the
 * model's last field) is TL_ETRUNCATED with the offset. */
START_TEST(test_truncated_everywhere)
{
    char *dir = th_dir_create();
    ob b = {0};
    ox_tiny_cnn(&b, 13, OX_RAW_F32, NULL);
    char *path = th_join(dir, "cut.onnx");
    size_t graph_at = 0;
    /* The graph field is the last one: find its tag (field 7, wire type 2 = 0x3a) from the end's length. */
    for (size_t i = 0; i < b.n; i++)
        if (b.p[i] == 0x3a) {
            graph_at = i;
            break;
        }
    ck_assert_uint_gt(graph_at, 0);
    for (size_t n = 0; n < b.n; n++) {
        th_file_write(path, b.p, n);
        tl_model *sentinel = (tl_model *)&sentinel, *m = sentinel;
        tl_status st = tl_model_load_onnx(&m, path, NULL);
        ck_assert_msg(st != TL_OK, "a file cut to %zu of %zu bytes loaded", n, b.n);
        ck_assert_ptr_eq(m, sentinel);
        const char *e = tl_last_error();
        ck_assert_msg(strstr(e, "byte ") != NULL, "cut at %zu: %s", n, e);
        if (n > graph_at)
            ck_assert_msg(st == TL_ETRUNCATED, "cut at %zu: %s", n, e);
        else
            ck_assert_msg(st == TL_ETRUNCATED || st == TL_EFORMAT, "cut at %zu: %s", n, e);
    }
    free(path);
    ob_free(&b);
    th_dir_remove(dir);
}
END_TEST

START_TEST(test_wire_errors)
{
    char *dir = th_dir_create();
    /* The graph (field 7) as a varint. */
    expect_bytes_fail(dir, "\x38\x01", 2, TL_EFORMAT, "byte 0: the graph (field 7) is a varint");
    /* A length past the end of the file. */
    expect_bytes_fail(dir, "\x3a\x64\x0a\x00", 4, TL_ETRUNCATED, "byte 0: the file ends inside");
    /* A node (graph field 1) whose length passes the end of the graph. */
    expect_bytes_fail(dir, "\x3a\x03\x0a\x05\x00\x00\x00\x00\x00", 9, TL_EFORMAT,
                      "byte 2: a length-delimited value (field 1) runs past the end of its enclosing message");
    /* A varint of 11 bytes. */
    expect_bytes_fail(dir, "\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 12, TL_EFORMAT, "longer than 64 bits");
    /* Groups, wire types 6 and 7, field number 0. */
    expect_bytes_fail(dir, "\x0b\x0c", 2, TL_EFORMAT, "a group");
    expect_bytes_fail(dir, "\x0e", 1, TL_EFORMAT, "wire type 6 does not exist");
    expect_bytes_fail(dir, "\x02\x00", 2, TL_EFORMAT, "field number 0");
    /* No graph at all; an empty file. */
    expect_bytes_fail(dir, "\x08\x08", 2, TL_EFORMAT, "not an ONNX model");
    expect_bytes_fail(dir, "", 0, TL_EFORMAT, "the file is empty");
    /* A string with a NUL byte (a node's op_type). */
    expect_bytes_fail(dir, "\x3a\x06\x0a\x04\x22\x02\x52\x00", 8, TL_EFORMAT, "contains a NUL byte");
    th_dir_remove(dir);
}
END_TEST

/* A graph of one node on the tiny input, opset 13, for the node tests:
 * x (1, 2, 6, 6) -> op (ins "x" + extra) -> y. */
static char *one_node(const char *dir, const char *op, const char *name, const char *ins, ob *attrs, ob *inits)
{
    ob g = {0}, b = {0};
    if (inits) {
        ob_raw(&g, inits->p, inits->n);
        ob_free(inits);
    }
    ox_node(&g, op, name, ins, "y", attrs);
    const int64_t xin[4] = {1, 2, 6, 6};
    ox_value(&g, 11, "x", xin, 4);
    ox_value(&g, 12, "y", xin, 0);
    ox_model(&b, 13, &g);
    char *path = write_ob(dir, "node.onnx", &b);
    ob_free(&b);
    return path;
}

START_TEST(test_graph_errors)
{
    char *dir = th_dir_create();
    char *p;
    /* An operator libtl has none for: op type, node name and opset named. */
    p = one_node(dir, "Einsum", "/mix/Einsum", "x", NULL, NULL);
    expect_fail(p, TL_EUNSUPPORTED, "node '/mix/Einsum' (Einsum, opset 13): operator 'Einsum' has no libtl layer");
    free(p);
    p = one_node(dir, "Loop", "loop", "x", NULL, NULL);
    expect_fail(p, TL_EUNSUPPORTED, "control flow");
    free(p);
    /* Mul that is not x * sigmoid(x). */
    p = one_node(dir, "Mul", "m", "x,x", NULL, NULL);
    expect_fail(p, TL_EUNSUPPORTED, "x * sigmoid(x)");
    free(p);
    /* Clip to other bounds; HardSigmoid with ONNX's default alpha. */
    ob a = {0}, t = {0};
    const int64_t scalar[1] = {1};
    const float lo = -1.0f, hi = 1.0f;
    ox_tensor_f(&t, 5, "lo", scalar, 0, &lo, OX_RAW_F32, NULL, NULL);
    ox_tensor_f(&t, 5, "hi", scalar, 0, &hi, OX_RAW_F32, NULL, NULL);
    p = one_node(dir, "Clip", "clip", "x,lo,hi", NULL, &t);
    expect_fail(p, TL_EUNSUPPORTED, "libtl clips only to [0, 6]");
    free(p);
    p = one_node(dir, "HardSigmoid", "hs", "x", NULL, NULL);
    expect_fail(p, TL_EUNSUPPORTED, "alpha 1/6 and beta 0.5");
    free(p);
    /* A Pad before a MaxPool: padded zeros would win. */
    const int64_t pads[8] = {0, 0, 1, 1, 0, 0, 1, 1}, pd[1] = {8}, k2[2] = {2, 2};
    ob g = {0}, b = {0};
    ox_tensor_i64(&g, 5, "pads", pd, 1, pads);
    ox_node(&g, "Pad", "pad", "x,pads", "xp", NULL);
    ox_attr_ints(&a, "kernel_shape", k2, 2);
    ox_node(&g, "MaxPool", "pool", "xp", "y", &a);
    const int64_t xin[4] = {1, 2, 6, 6}, sym[4] = {-1, 2, -1, -1};
    ox_value(&g, 11, "x", xin, 4);
    ox_value(&g, 12, "y", xin, 0);
    ox_model(&b, 13, &g);
    p = write_ob(dir, "padpool.onnx", &b);
    ob_free(&b);
    expect_fail(p, TL_EUNSUPPORTED, "node 'pool' (MaxPool, opset 13): its input 'xp' is zero-padded");
    free(p);
    /* Opsets outside 11..17. */
    for (int64_t opset = 10; opset <= 18; opset += 8) {
        ox_tiny_cnn(&b, opset, OX_RAW_F32, NULL);
        p = write_ob(dir, "opset.onnx", &b);
        ob_free(&b);
        expect_fail(p, TL_EUNSUPPORTED, opset == 10 ? "opset 10; libtl reads opsets 11 to 17"
                                                    : "opset 18; libtl reads opsets 11 to 17");
        free(p);
    }
    /* Two inputs; a symbolic height (then given by the options). */
    ox_node(&g, "Add", "sum", "x,x2", "y", NULL);
    ox_value(&g, 11, "x", xin, 4);
    ox_value(&g, 11, "x2", xin, 4);
    ox_value(&g, 12, "y", xin, 0);
    ox_model(&b, 13, &g);
    p = write_ob(dir, "two.onnx", &b);
    ob_free(&b);
    expect_fail(p, TL_EUNSUPPORTED, "a second input 'x2'");
    free(p);
    ox_node(&g, "Relu", "relu", "x", "y", NULL);
    ox_value(&g, 11, "x", sym, 4);
    ox_value(&g, 12, "y", xin, 0);
    ox_model(&b, 13, &g);
    p = write_ob(dir, "sym.onnx", &b);
    ob_free(&b);
    expect_fail(p, TL_EUNSUPPORTED, "leaves its height at 0 or symbolic");
    tl_onnx_load_options o;
    ck_assert_tl_ok(tl_onnx_load_options_init(&o, TL_ONNX_LOAD_OPTIONS_VERSION));
    o.input_height = 5;
    o.input_width = 7;
    tl_model *m = NULL;
    ck_assert_tl_ok(tl_model_load_onnx(&m, p, &o));
    tl_shape s;
    ck_assert_tl_ok(tl_model_input_shape(&s, m));
    ck_assert_uint_eq(s.dims[0], 5);
    ck_assert_uint_eq(s.dims[1], 7);
    ck_assert_uint_eq(s.dims[2], 2);
    tl_layer *l;
    ck_assert_tl_ok(tl_model_layer_by_name(&l, m, "relu"));
    tl_model_free(m);
    free(p);
    /* A fixed size that the options contradict. */
    ox_tiny_cnn(&b, 13, OX_RAW_F32, NULL);
    p = write_ob(dir, "tiny.onnx", &b);
    ob_free(&b);
    o.input_height = 8;
    m = NULL;
    ck_assert_int_eq(tl_model_load_onnx(&m, p, &o), TL_ESHAPE);
    ck_assert_ptr_null(m);
    ck_assert(strstr(tl_last_error(), "has height 6, but the options ask for 8") != NULL);
    free(p);
    /* Arguments. */
    ck_assert_int_eq(tl_model_load_onnx(NULL, "x.onnx", NULL), TL_EINVAL);
    ck_assert_int_eq(tl_model_load_onnx(&m, NULL, NULL), TL_EINVAL);
    p = th_join(dir, "missing.onnx");
    ck_assert_int_eq(tl_model_load_onnx(&m, p, NULL), TL_ENOTFOUND);
    free(p);
    th_dir_remove(dir);
}
END_TEST

/* Arithmetic with constants: torchvision's Normalize (Sub, Div) after a
 * pixel scale (Mul) is one normalization layer, values as in the file;
 * another order is several such layers; what libtl cannot follow (a
 * constant minus the tensor, a constant over the width, a transpose
 * other than before a flatten) is refused, naming the node. */
START_TEST(test_normalize_chain)
{
    char *dir = th_dir_create();
    ob g = {0}, b = {0};
    const int64_t cdims[4] = {1, 2, 1, 1}, one[1] = {1};
    const float mean[2] = {0.25f, -0.5f}, sd[2] = {0.5f, 2.0f}, scale = 1.0f / 255.0f;
    ox_tensor_f(&g, 5, "scale", one, 0, &scale, OX_RAW_F32, NULL, NULL);
    ox_tensor_f(&g, 5, "mean", cdims, 4, mean, OX_RAW_F32, NULL, NULL);
    ox_tensor_f(&g, 5, "std", cdims, 4, sd, OX_RAW_F32, NULL, NULL);
    ox_node(&g, "Mul", "px", "x,scale", "xs", NULL);
    ox_node(&g, "Sub", "centre", "xs,mean", "xc", NULL);
    ox_node(&g, "Div", "normalize", "xc,std", "y", NULL);
    const int64_t xin[4] = {1, 2, 6, 6};
    ox_value(&g, 11, "x", xin, 4);
    ox_value(&g, 12, "y", xin, 0);
    ox_model(&b, 13, &g);
    char *p = write_ob(dir, "norm.onnx", &b);
    ob_free(&b);
    tl_model *m = NULL;
    ck_assert_tl_ok(tl_model_load_onnx(&m, p, NULL));
    ck_assert_uint_eq(tl_model_num_layers(m), 1);
    tl_layer *l;
    ck_assert_tl_ok(tl_model_layer_by_name(&l, m, "normalize"));
    ck_assert_int_eq(tl_layer_get_kind(l), TL_LAYER_NORMALIZATION);
    float x[72], y[72];
    for (int i = 0; i < 72; i++)
        x[i] = (float)(i * 7 % 256);
    ck_assert_tl_ok(tl_model_predict(y, 72, m, x, 1, 0));
    for (int i = 0; i < 72; i++) { /* NHWC: channel i % 2 */
        const int c = i % 2;
        const double want = ((double)x[i] * (1.0 / 255.0) - mean[c]) / sd[c];
        ck_assert_msg(fabs(y[i] - want) <= 1e-6 * (1 + fabs(want)), "y[%d] = %g, want %g", i, (double)y[i], want);
    }
    tl_model_free(m);
    free(p);
    /* Div before Sub is not one layer's order: two layers, each exact. */
    ox_tensor_f(&g, 5, "mean", cdims, 4, mean, OX_RAW_F32, NULL, NULL);
    ox_tensor_f(&g, 5, "std", cdims, 4, sd, OX_RAW_F32, NULL, NULL);
    ox_node(&g, "Div", "d", "x,std", "xd", NULL);
    ox_node(&g, "Sub", "s", "xd,mean", "y", NULL);
    ox_value(&g, 11, "x", xin, 4);
    ox_value(&g, 12, "y", xin, 0);
    ox_model(&b, 13, &g);
    p = write_ob(dir, "divsub.onnx", &b);
    ob_free(&b);
    ck_assert_tl_ok(tl_model_load_onnx(&m, p, NULL));
    ck_assert_uint_eq(tl_model_num_layers(m), 2);
    ck_assert_tl_ok(tl_model_predict(y, 72, m, x, 1, 0));
    for (int i = 0; i < 72; i++) {
        const int c = i % 2;
        const double want = (double)x[i] / sd[c] - mean[c];
        ck_assert_msg(fabs(y[i] - want) <= 1e-6 * (1 + fabs(want)), "y[%d] = %g, want %g", i, (double)y[i], want);
    }
    tl_model_free(m);
    free(p);
    /* A constant minus the tensor. */
    ob t = {0};
    ox_tensor_f(&t, 5, "mean", cdims, 4, mean, OX_RAW_F32, NULL, NULL);
    p = one_node(dir, "Sub", "rsub", "mean,x", NULL, &t);
    expect_fail(p, TL_EUNSUPPORTED, "computes a constant minus the tensor");
    free(p);
    /* A constant that broadcasts over the width, not the channels. */
    const int64_t wdims[1] = {6};
    const float w6[6] = {1, 2, 3, 4, 5, 6};
    ox_tensor_f(&t, 5, "w", wdims, 1, w6, OX_RAW_F32, NULL, NULL);
    p = one_node(dir, "Div", "bywidth", "x,w", NULL, &t);
    expect_fail(p, TL_EUNSUPPORTED, "neither one value nor one per channel");
    free(p);
    /* A Transpose that is not (0, 2, 3, 1) before a flatten. */
    const int64_t perm[4] = {0, 3, 1, 2};
    ob a = {0};
    ox_attr_ints(&a, "perm", perm, 4);
    p = one_node(dir, "Transpose", "tr", "x", &a, NULL);
    expect_fail(p, TL_EUNSUPPORTED, "perm (0, 2, 3, 1) of an image right before a Flatten");
    free(p);
    th_dir_remove(dir);
}
END_TEST

/* Tensor data that does not match its shape; external data outside the folder. */
START_TEST(test_tensor_errors)
{
    char *dir = th_dir_create();
    ob b = {0}, ext = {0};
    /* raw_data one float short: cut 4 bytes out of the file's conv.weight by
     * writing a model whose weight claims one more filter. */
    {
        float w[54] = {0};
        ob g = {0}, a = {0};
        const int64_t d[4] = {3, 2, 3, 3}, xin[4] = {1, 2, 6, 6};
        ox_tensor_f(&g, 5, "w", d, 4, w, OX_RAW_F32, NULL, NULL);
        /* Patch the first dim to 4 after writing: find dims' first varint (08 03). */
        for (size_t i = 0; i + 1 < g.n; i++)
            if (g.p[i] == 0x08 && g.p[i + 1] == 0x03) {
                g.p[i + 1] = 0x04;
                break;
            }
        const int64_t k3[2] = {3, 3};
        ox_attr_ints(&a, "kernel_shape", k3, 2);
        ox_node(&g, "Conv", "conv", "x,w", "y", &a);
        ox_value(&g, 11, "x", xin, 4);
        ox_value(&g, 12, "y", xin, 0);
        ox_model(&b, 13, &g);
        char *p = write_ob(dir, "short.onnx", &b);
        ob_free(&b);
        expect_fail(p, TL_EFORMAT, "tensor 'w': raw_data has 216 bytes; its shape needs 288");
        free(p);
    }
    /* External data: a '..' component, an absolute path, a file too short,
     * a symbolic link out of the folder, a missing file. */
    static const struct {
        const char *loc;
        tl_status st;
        const char *want;
    } bad[] = {
        {"../tiny.bin", TL_EFORMAT, "has a '..' component"},
        {"sub/../../tiny.bin", TL_EFORMAT, "has a '..' component"},
        {"/etc/passwd", TL_EFORMAT, "is absolute or empty"},
        {"short.bin", TL_ETRUNCATED, "too few"},
        {"link.bin", TL_EFORMAT, "resolves to a file outside the model's folder"},
        {"missing.bin", TL_ENOTFOUND, "cannot open"},
    };
    char *sub = th_join(dir, "model");
    ck_assert_int_eq(mkdir(sub, 0700), 0);
    char *outside = th_join(dir, "tiny.bin"), *shortp = th_join(sub, "short.bin"), *link = th_join(sub, "link.bin");
    ob_raw(&ext, "x", 1);
    th_file_write(shortp, ext.p, ext.n);
    ob_free(&ext);
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        ox_tiny_cnn(&b, 13, OX_EXTERNAL, &ext);
        th_file_write(outside, ext.p, ext.n);
        if (k == 4)
            ck_assert_int_eq(symlink(outside, link), 0);
        /* Rewrite the location "tiny.bin" (8 bytes) in place: same length needed, so build with a
         * placeholder and replace it. */
        ob_free(&b);
        ob_free(&ext);
        /* Build again with the bad location. */
        float w1[54], b1[3], w2[108], b2[4];
        ox_tiny_weights(w1, b1, w2, b2);
        ob g = {0}, a = {0};
        const int64_t d1[4] = {3, 2, 3, 3}, xin[4] = {1, 2, 6, 6}, k3[2] = {3, 3};
        ox_tensor_f(&g, 5, "conv.weight", d1, 4, w1, OX_EXTERNAL, &ext, bad[k].loc);
        ox_attr_ints(&a, "kernel_shape", k3, 2);
        ox_node(&g, "Conv", "conv", "x,conv.weight", "y", &a);
        ox_value(&g, 11, "x", xin, 4);
        ox_value(&g, 12, "y", xin, 0);
        ox_model(&b, 13, &g);
        ob_free(&ext);
        char *p = write_ob(sub, "ext.onnx", &b);
        ob_free(&b);
        expect_fail(p, bad[k].st, bad[k].want);
        free(p);
    }
    free(outside);
    free(shortp);
    free(link);
    free(sub);
    th_dir_remove(dir);
}
END_TEST

/* libtl's test hook (lib/core.h): the n-th allocation from now on fails. */
long tli_alloc_fail_at(long n);

/* Every allocation of a load made to fail in turn: TL_ENOMEM with a
 * message, no model handed back (and, under valgrind or ASan, nothing
 * leaked); then the load succeeds. */
START_TEST(test_each_allocation_fails)
{
    char *dir = th_dir_create();
    for (int how = OX_RAW_F32; how <= OX_EXTERNAL; how += OX_EXTERNAL - OX_RAW_F32) {
        ob b = {0}, ext = {0};
        ox_tiny_cnn(&b, 13, (ox_store)how, &ext);
        char *path = write_ob(dir, "tiny.onnx", &b);
        if (how == OX_EXTERNAL)
            free(write_ob(dir, "tiny.bin", &ext));
        long n = 1;
        for (;; n++) {
            tl_model *sentinel = (tl_model *)&sentinel, *m = sentinel;
            tl_clear_error();
            tli_alloc_fail_at(n);
            tl_status st = tl_model_load_onnx(&m, path, NULL);
            long made = tli_alloc_fail_at(0);
            if (made < n) {
                ck_assert_msg(st == TL_OK, "%s", tl_last_error());
                tl_model_free(m);
                break;
            }
            ck_assert_msg(st == TL_ENOMEM, "allocation %ld: %s: %s", n, tl_status_str(st), tl_last_error());
            ck_assert_ptr_eq(m, sentinel);
            ck_assert(tl_last_error()[0] != '\0');
        }
        printf("onnx: loading the tiny CNN (%s) makes %ld allocations, each made to fail once\n",
               how == OX_EXTERNAL ? "external data" : "raw data", n - 1);
        free(path);
        ob_free(&b);
        ob_free(&ext);
    }
    th_dir_remove(dir);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("onnx_load");
    TCase *tc = tcase_create("format");
    tcase_add_test(tc, test_tiny_every_storage);
    tcase_add_test(tc, test_shape_chain);
    tcase_add_test(tc, test_truncated_everywhere);
    tcase_add_test(tc, test_wire_errors);
    tcase_add_test(tc, test_graph_errors);
    tcase_add_test(tc, test_normalize_chain);
    tcase_add_test(tc, test_tensor_errors);
    tcase_add_test(tc, test_each_allocation_fails);
    suite_add_tcase(s, tc);
    tc = tcase_create("torch");
    tcase_add_unchecked_fixture(tc, make_references, remove_references);
    tcase_add_loop_test(tc, test_matches_pytorch, 0, (int)NCASES);
    tcase_add_test(tc, test_finetune_head);
    suite_add_tcase(s, tc);
    int rc = th_run(s);
    if (rc == 0 && !torch_present()) {
        printf("test_onnx_load: the comparisons with PyTorch were skipped: %s cannot import torch, torchvision and "
               "onnx\n", TL_TORCH_PYTHON);
        return 77;
    }
    return rc;
}
