/* test_torch.c - the zoo models against PyTorch itself (Debian's
 * python3-torch and python3-torchvision; the suite is skipped, exit code
 * 77, only when `python3 -c "import torch, torchvision"` fails).
 *
 * For torchvision's resnet18 and mobilenet_v2 (10 classes, 64 x 64) and a
 * CIFAR ResNet-20 defined in tests/torch_ref.py as tl_zoo_resnet_cifar
 * documents it (32 x 32), torch_ref.py writes a state_dict() after a few
 * seeded SGD steps (so the running statistics are not their defaults), an
 * input batch, its eval() logits and the state_dict() after one more SGD
 * step on that batch. Here the zoo model built with the same options
 *  1. loads the state dict with TL_LAYOUT_PYTORCH, strict, and a clean
 *     report (every tensor copied, but the num_batches_tracked counters,
 *     passed over);
 *  2. predicts the batch: max |diff| / max |PyTorch logit| <= 1e-4;
 *  3. takes one tl_model_train_step() with SGD (same lr, momentum 0) and
 *     sparse categorical cross-entropy on the linear head (logits), and
 *     every tensor - parameters and batchnorm running statistics - is
 *     compared with PyTorch's updated state dict (loaded into a second zoo
 *     model, so both are in libtl's order);
 *  4. exports itself with tl_model_save_safetensors(TL_LAYOUT_PYTORCH),
 *     which torch_ref.py loads with load_state_dict(strict=True); PyTorch's
 *     eval() logits of that model must match libtl's predictions
 *     (relative 1e-4, checked by the script).
 *
 * The measures, printed for every model (the numbers of one run are in
 * the comments):
 *  - prediction: max |libtl - PyTorch| over all logits / max |PyTorch
 *    logit|, at most 1e-4 (ResNet-20 1.8e-7, ResNet-18 1.2e-6,
 *    MobileNetV2 2.9e-7); the same for the export (step 4);
 *  - the train-mode loss before the step, relative, at most 1e-5 (1e-7);
 *  - the train step, per tensor: "direct" = max |libtl - PyTorch| over the
 *    tensor's scale, its largest magnitude - for a batchnorm's beta at
 *    least gamma's (beta shifts an output whose spread is gamma), for its
 *    moving mean at least the largest sqrt(moving variance) (the mean of an
 *    input of that spread): both can be exactly zero, e.g. the gradient of
 *    a beta followed by a convolution and another batchnorm is zero, and
 *    its float32 value pure rounding. direct must be at most 1e-4 - which
 *    every tensor of both ResNets is (worst 3.4e-7 and 2.1e-6), and every
 *    batchnorm moving statistic of MobileNetV2. Where it is more - 57
 *    parameter tensors of MobileNetV2, up to 1e-2 in its depthwise kernels
 *    - the difference is PyTorch's float32 rounding: torch_ref.py also
 *    takes the step in float64 from the same start, and there PyTorch's
 *    float32 step is up to 2% of the step away from it (L2 over the
 *    tensor) and libtl's at most 0.17%. So such a tensor must have libtl's
 *    step no further from the float64 step than PyTorch's, and within 1%
 *    of it. Over the whole MobileNetV2 the L2 distance from the float64
 *    step is 1.9e-4 of the step for libtl and 2.1e-3 for PyTorch's float32.
 *    (ResNet-20's float32 steps, libtl's and PyTorch's alike, differ from
 *    the float64 one by 0.6% of the step in L2: one ReLU input in layer3.2
 *    is within float32 rounding of 0 and changes sign. So float64 is a
 *    reference for accuracy, not a stricter target.)
 * One thread, batches of 4: about half a minute, most of it in PyTorch.
 */
#include <stdio.h>

#include "helpers.h"
#include "io_helpers.h"

#ifndef TL_TORCH_PYTHON
#define TL_TORCH_PYTHON "/usr/bin/python3"
#endif
#ifndef TL_TORCH_REF
#error "TL_TORCH_REF (the path of tests/torch_ref.py) must be defined by the build"
#endif

#define BATCH 4
#define CLASSES 10
#define LR "0.05"

static void write_floats(const char *dir, const char *name, const float *v, size_t n)
{
    uint8_t *b = malloc(4 * n);
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        for (int k = 0; k < 4; k++)
            b[4 * i + k] = (uint8_t)(u >> (8 * k));
    }
    char *path = th_join(dir, name);
    th_file_write(path, b, 4 * n);
    free(path);
    free(b);
}

typedef enum { RESNET20, RESNET18, MOBILENET_V2 } which;

static const char *model_name(which w)
{
    return w == RESNET20 ? "resnet20" : w == RESNET18 ? "resnet18" : "mobilenet_v2";
}

static tl_model *build(which w, uint32_t size)
{
    tl_zoo_options o = TL_ZOO_OPTIONS_INIT;
    o.num_classes = CLASSES;
    o.input_h = o.input_w = size;
    o.dropout = w == MOBILENET_V2 ? -1.0f : 0.0f; /* no dropout layer (PyTorch's p is set to 0) */
    tl_model *m = NULL;
    if (w == RESNET20)
        ck_assert_tl_ok(tl_zoo_resnet_cifar(&m, 20, &o));
    else if (w == RESNET18)
        ck_assert_tl_ok(tl_zoo_resnet(&m, 18, &o));
    else
        ck_assert_tl_ok(tl_zoo_mobilenet_v2(&m, &o));
    ck_assert_tl_ok(tl_model_set_threads(m, 1));
    return m;
}

static size_t count_batchnorms(const tl_model *m)
{
    size_t n = 0;
    for (size_t i = 0; i < tl_model_num_layers(m); i++) {
        tl_layer *l;
        ck_assert_tl_ok(tl_model_layer(&l, m, i));
        n += tl_layer_get_kind(l) == TL_LAYER_BATCHNORM;
    }
    return n;
}

/* Load a PyTorch state dict, strict, and require a clean report: every
 * tensor copied but one num_batches_tracked per batchnorm, passed over. */
static void load_strict(tl_model *m, const char *dir, const char *name)
{
    char *path = th_join(dir, name);
    tl_transfer_report *r = NULL;
    ck_assert_tl_ok(tl_model_load_safetensors(&r, m, path, TL_LAYOUT_PYTORCH, NULL));
    size_t bns = count_batchnorms(m), params = 0;
    for (size_t i = 0; i < tl_model_num_layers(m); i++) {
        tl_layer *l;
        ck_assert_tl_ok(tl_model_layer(&l, m, i));
        params += tl_layer_num_params(l);
    }
    ck_assert_uint_eq(tl_transfer_report_count_outcome(r, TL_TRANSFER_COPIED), params);
    ck_assert_uint_eq(tl_transfer_report_count_outcome(r, TL_TRANSFER_NO_PARAMS), bns);
    ck_assert_uint_eq(tl_transfer_report_count(r), params + bns);
    ck_assert_uint_eq(tl_transfer_report_params_copied(r), tl_model_param_count(m));
    tl_transfer_report_free(r);
    free(path);
}

static double max_abs(const float *v, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++)
        m = fmax(m, fabs((double)v[i]));
    return m;
}

/* max |a - b| / max |b| over n values. */
static double rel_diff(const float *a, const float *b, size_t n)
{
    double d = 0;
    for (size_t i = 0; i < n; i++)
        d = fmax(d, fabs((double)a[i] - (double)b[i]));
    double s = max_abs(b, n);
    return s > 0 ? d / s : d;
}

/* The largest of a measure over the tensors, and where. */
typedef struct worst {
    double v;
    char at[160];
} worst;

static void note(worst *w, double v, const tl_layer *l, const char *param)
{
    if (v > w->v) {
        w->v = v;
        snprintf(w->at, sizeof w->at, "%s %s", tl_layer_name(l), param);
    }
}

/* The scale a tensor's differences are measured in: its largest magnitude;
 * for a batchnorm's beta at least gamma's (beta shifts an output whose
 * spread is gamma), for its moving mean at least the largest square root of
 * the moving variance (the mean of an input whose spread that is): both
 * can be zero exactly. `layer` holds the layer's tensors one after the
 * other, `v` is tensor p. */
static double natural_scale(const tl_layer *l, size_t p, const float *layer, const float *v, size_t n)
{
    double s = max_abs(v, n);
    tl_param_info pi;
    ck_assert_tl_ok(tl_layer_param_info(&pi, l, p));
    if (tl_layer_get_kind(l) == TL_LAYER_BATCHNORM) {
        for (size_t q = 0, o = 0; q < tl_layer_num_params(l); q++) {
            tl_param_info qi;
            ck_assert_tl_ok(tl_layer_param_info(&qi, l, q));
            if (strcmp(pi.name, "beta") == 0 && strcmp(qi.name, "gamma") == 0)
                s = fmax(s, max_abs(layer + o, qi.count));
            if (strcmp(pi.name, "moving_mean") == 0 && strcmp(qi.name, "moving_variance") == 0)
                s = fmax(s, sqrt(max_abs(layer + o, qi.count)));
            o += qi.count;
        }
    }
    return s > 0 ? s : 1e-30;
}

static void compare(which w)
{
    const char *name = model_name(w);
    const uint32_t size = w == RESNET20 ? 32 : 64;
    char *dir = th_dir_create(), bs[16], ss[16];
    snprintf(bs, sizeof bs, "%d", BATCH);
    snprintf(ss, sizeof ss, "%u", size);
    char *make[] = {TL_TORCH_PYTHON, TL_TORCH_REF, "make", (char *)name, dir, bs, ss, LR, NULL};
    ck_assert_msg(th_spawn(make) == 0, "torch_ref.py make %s failed", name);

    /* 1. PyTorch's state dict, strict. */
    tl_model *m = build(w, size);
    load_strict(m, dir, "init.safetensors");

    /* 2. eval() logits. */
    const size_t nx = (size_t)BATCH * size * size * 3, ny = (size_t)BATCH * CLASSES;
    float *x = th_read_f32(dir, "x.f32", nx), *want = th_read_f32(dir, "logits.f32", ny);
    size_t count = 0;
    float *got = th_predict(m, x, BATCH, &count);
    ck_assert_ptr_nonnull(got);
    ck_assert_uint_eq(count, ny);
    double pred = rel_diff(got, want, ny);
    free(got);
    printf("torch %s: prediction: max |libtl - PyTorch| / max |PyTorch logit| %.3g\n", name, pred);
    fflush(stdout);
    ck_assert_msg(pred <= 1e-4, "%s: predictions differ from PyTorch's by %.3g of the largest logit", name, pred);

    /* 3. One SGD step in training mode. */
    char *lpath = th_join(dir, "labels.i32");
    size_t llen = 0;
    uint8_t *lb = th_file_read(lpath, &llen);
    ck_assert_msg(lb != NULL && llen == 4 * BATCH, "%s", lpath);
    int32_t labels[BATCH];
    for (size_t i = 0; i < BATCH; i++)
        labels[i] = (int32_t)((uint32_t)lb[4 * i] | (uint32_t)lb[4 * i + 1] << 8 | (uint32_t)lb[4 * i + 2] << 16 |
                              (uint32_t)lb[4 * i + 3] << 24);
    free(lb);
    free(lpath);
    char *tpath = th_join(dir, "loss.txt");
    uint8_t *tb = th_file_read(tpath, &llen);
    ck_assert_ptr_nonnull(tb);
    double torch_loss = strtod((const char *)tb, NULL); /* "%.9g\n": the newline ends it */
    free(tb);
    free(tpath);

    size_t np = 0;
    float *before = th_all_params(m, &np);
    ck_assert_ptr_nonnull(before);
    tl_sgd_options so = TL_SGD_OPTIONS_INIT;
    so.learning_rate = (float)strtod(LR, NULL);
    so.momentum = 0.0f;
    tl_optimizer *opt = NULL;
    ck_assert_tl_ok(tl_optimizer_create_sgd(&opt, &so));
    ck_assert_tl_ok(tl_model_compile(m, opt, TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY));
    double loss = 0;
    ck_assert_tl_ok(tl_model_train_step(&loss, m, x, labels, NULL, BATCH));
    double loss_rel = fabs(loss - torch_loss) / fabs(torch_loss);
    printf("torch %s: train step: loss %.9g, PyTorch's %.9g (relative %.3g)\n", name, loss, torch_loss, loss_rel);
    fflush(stdout);
    ck_assert_msg(loss_rel <= 1e-5, "%s: loss %.9g, PyTorch's %.9g", name, loss, torch_loss);

    tl_model *ref = build(w, size), *exact = build(w, size);
    load_strict(ref, dir, "updated.safetensors");
    load_strict(exact, dir, "updated64.safetensors");
    size_t n2 = 0, n3 = 0;
    float *after = th_all_params(m, &n2), *theirs = th_all_params(ref, &n2), *ex = th_all_params(exact, &n3);
    ck_assert_ptr_nonnull(after);
    ck_assert_ptr_nonnull(theirs);
    ck_assert_ptr_nonnull(ex);
    ck_assert_uint_eq(n2, np);
    ck_assert_uint_eq(n3, np);
    /* Per tensor (see the top of the file): direct = max |libtl - PyTorch|
     * over the tensor's natural scale, at most 1e-4; where it is more,
     * PyTorch's float32 step must be the one further from the float64
     * step (L2 over the tensor), and libtl's within 1e-2 of the step. */
    worst w_direct = {0}, w_exact = {0};
    double sum_lib = 0, sum_torch = 0, sum_step = 0;
    size_t off = 0, beyond = 0;
    for (size_t i = 0; i < tl_model_num_layers(m); i++) {
        tl_layer *l;
        ck_assert_tl_ok(tl_model_layer(&l, m, i));
        for (size_t p = 0, first = off; p < tl_layer_num_params(l); p++) {
            tl_param_info pi;
            ck_assert_tl_ok(tl_layer_param_info(&pi, l, p));
            const float *a = after + off, *b = theirs + off, *e = ex + off, *a0 = before + off;
            double d = 0, e_lib = 0, e_torch = 0, step = 0;
            for (size_t k = 0; k < pi.count; k++) {
                d = fmax(d, fabs((double)a[k] - (double)b[k]));
                e_lib += ((double)a[k] - e[k]) * ((double)a[k] - e[k]);
                e_torch += ((double)b[k] - e[k]) * ((double)b[k] - e[k]);
                step += ((double)e[k] - a0[k]) * ((double)e[k] - a0[k]);
            }
            sum_lib += e_lib;
            sum_torch += e_torch;
            sum_step += step;
            e_lib = sqrt(e_lib), e_torch = sqrt(e_torch), step = sqrt(step);
            const double direct = d / natural_scale(l, p, theirs + first, b, pi.count);
            note(&w_direct, direct, l, pi.name);
            if (direct > 1e-4) {
                beyond++;
                note(&w_exact, e_lib / step, l, pi.name);
                ck_assert_msg(e_lib <= e_torch && e_lib <= 1e-2 * step,
                              "%s: '%s' %s after the step: max |libtl - PyTorch| is %.3g of its scale, and libtl's "
                              "step is %.3g from the float64 step, PyTorch's %.3g (L2, relative to the step)", name,
                              tl_layer_name(l), pi.name, direct, e_lib / step, e_torch / step);
            }
            off += pi.count;
        }
    }
    ck_assert_uint_eq(off, np);

    printf("torch %s: train step: worst tensor max |libtl - PyTorch| / scale %.3g (%s); %zu tensors over 1e-4\n",
           name, w_direct.v, w_direct.at, beyond);
    if (beyond)
        printf("torch %s: train step: there libtl's step is at most %.3g from the float64 step (%s), always "
               "nearer than PyTorch's float32 step\n", name, w_exact.v, w_exact.at);
    printf("torch %s: train step, whole model, L2 distance from the float64 step / its L2 norm: libtl %.3g, "
           "PyTorch float32 %.3g\n", name, sqrt(sum_lib / sum_step), sqrt(sum_torch / sum_step));
    fflush(stdout);

    /* 4. libtl's export, loaded strict by PyTorch, predicts as libtl does
     *    (torch_ref.py prints its measure and fails over 1e-4). */
    char *out = th_join(dir, "libtl.safetensors");
    ck_assert_tl_ok(tl_model_save_safetensors(m, out, TL_LAYOUT_PYTORCH, NULL));
    got = th_predict(m, x, BATCH, &count);
    ck_assert_ptr_nonnull(got);
    write_floats(dir, "libtl_logits.f32", got, ny);
    char *check[] = {TL_TORCH_PYTHON, TL_TORCH_REF, "check", (char *)name, dir, bs, ss, NULL};
    ck_assert_msg(th_spawn(check) == 0, "torch_ref.py check %s failed", name);

    free(got);
    free(out);
    free(before);
    free(after);
    free(theirs);
    free(ex);
    free(x);
    free(want);
    tl_model_free(ref);
    tl_model_free(exact);
    tl_model_free(m);
    th_dir_remove(dir);
}

START_TEST(resnet20_cifar_matches_pytorch)
{
    compare(RESNET20);
}
END_TEST

START_TEST(resnet18_matches_torchvision)
{
    compare(RESNET18);
}
END_TEST

START_TEST(mobilenet_v2_matches_torchvision)
{
    compare(MOBILENET_V2);
}
END_TEST

int main(void)
{
    char *probe[] = {TL_TORCH_PYTHON, "-c", "import torch, torchvision", NULL};
    if (th_spawn(probe) != 0) {
        printf("test_torch: skipped: %s cannot import torch and torchvision\n", TL_TORCH_PYTHON);
        return 77;
    }
    Suite *s = suite_create("torch");
    TCase *tc = tcase_create("resnet20");
    tcase_add_test(tc, resnet20_cifar_matches_pytorch);
    suite_add_tcase(s, tc);
    tc = tcase_create("resnet18");
    tcase_add_test(tc, resnet18_matches_torchvision);
    suite_add_tcase(s, tc);
    tc = tcase_create("mobilenet_v2");
    tcase_add_test(tc, mobilenet_v2_matches_torchvision);
    suite_add_tcase(s, tc);
    return th_run(s);
}
