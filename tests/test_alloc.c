/*
 * test_alloc.c - allocation failures, one at a time. For every operation
 * below and every n = 1, 2, ... until the operation succeeds, the n-th
 * allocation libtl makes fails (tli_alloc_fail_at(n)). Each failure must
 * give TL_ENOMEM with a sentence, hand back nothing, change nothing it was
 * given, and leave every object usable: the same call without the failure
 * then gives exactly the result of a run that never failed. Leaks are
 * found by running the suite under AddressSanitizer or valgrind
 * (docs/hardening.md); the dataset readers have their own loop in
 * test_data_readers.c.
 */
#include <dirent.h>
#include <stdio.h>
#include <unistd.h>

#include "core.h"
#include "helpers.h"

#define H 12
#define W 12
#define CLASSES 4

static char tmpdir[64];

static const char *tmp_path(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, "%s/%s", tmpdir, name);
    return buf;
}

/* ---- the loop ------------------------------------------------------------------- */

typedef struct alloc_op {
    const char *name;
    void (*setup)(void *ctx);             /* without failures */
    tl_status (*run)(void *ctx);          /* the n-th allocation fails */
    void (*after_failure)(void *ctx);     /* unchanged and usable? */
    void (*after_success)(void *ctx);     /* the result of the run without failures */
    void (*teardown)(void *ctx);
} alloc_op;

/* Returns how many allocations the operation makes. */
static long each_failure(const alloc_op *op, void *ctx)
{
    for (long n = 1; n < 100000; n++) {
        op->setup(ctx);
        tl_clear_error();
        tli_alloc_fail_at(n);
        tl_status st = op->run(ctx);
        long made = tli_alloc_fail_at(0);
        if (made < n) {
            /* The failure was never reached: this is the plain run. */
            ck_assert_msg(st == TL_OK, "%s without a failure: %s: %s", op->name, tl_status_str(st), tl_last_error());
            if (op->after_success)
                op->after_success(ctx);
            op->teardown(ctx);
            ck_assert_msg(n > 1, "%s allocates nothing", op->name);
            return n - 1;
        }
        ck_assert_msg(st == TL_ENOMEM, "%s, allocation %ld of at least %ld failed: got %s: %s", op->name, n, made,
                      tl_status_str(st), tl_last_error());
        ck_assert_msg(tl_last_error()[0] != '\0', "%s, allocation %ld: no message", op->name, n);
        if (op->after_failure)
            op->after_failure(ctx);
        op->teardown(ctx);
    }
    ck_abort_msg("%s never succeeded", op->name);
    return 0;
}

static void report(const char *name, long allocations)
{
    fprintf(stderr, "alloc: %-38s %3ld allocations, each made to fail once\n", name, allocations);
}

/* ---- helpers -------------------------------------------------------------------- */

static void assert_params_equal(const tl_model *a, const tl_model *b, const char *what)
{
    size_t na, nb;
    float *pa = th_all_params(a, &na), *pb = th_all_params(b, &nb);
    ck_assert_msg(na == nb, "%s: %zu vs %zu parameters", what, na, nb);
    ck_assert_msg(memcmp(pa, pb, na * sizeof *pa) == 0, "%s: the parameters differ", what);
    free(pa);
    free(pb);
}

static void assert_params_are(const tl_model *m, const float *want, size_t n, const char *what)
{
    size_t k;
    float *v = th_all_params(m, &k);
    ck_assert_msg(k == n && memcmp(v, want, n * sizeof *v) == 0, "%s: the parameters changed", what);
    free(v);
}

/* The seed CNN (conv 32, pool, conv 64, pool, flatten, dense) on H x W x 1. */
static tl_model *seed_cnn(uint64_t seed, uint32_t classes)
{
    tl_model *m = th_seed_cnn(H, W, 1, classes, seed);
    ck_assert_ptr_nonnull(m);
    return m;
}

static tl_model *compiled_cnn(uint64_t seed)
{
    tl_model *m = seed_cnn(seed, CLASSES);
    tl_optimizer *o;
    ck_assert_tl_ok(tl_optimizer_create_adam(&o, NULL));
    ck_assert_tl_ok(tl_model_compile(m, o, TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY));
    return m;
}

static float batch_x[8 * H * W];
static int32_t batch_y[8];

static void make_batch(void)
{
    th_fill_uniform(batch_x, sizeof batch_x / sizeof *batch_x, 0.0f, 1.0f, 99);
    for (int i = 0; i < 8; i++)
        batch_y[i] = i % CLASSES;
}

/* Predictions of m on the batch, compared with those of ref. */
static void assert_same_predictions(tl_model *m, tl_model *ref, const char *what)
{
    float a[8 * CLASSES], b[8 * CLASSES];
    ck_assert_tl_ok(tl_model_predict(a, 8 * CLASSES, m, batch_x, 8, 0));
    ck_assert_tl_ok(tl_model_predict(b, 8 * CLASSES, ref, batch_x, 8, 0));
    ck_assert_msg(memcmp(a, b, sizeof a) == 0, "%s: the predictions differ", what);
}

/* No "<name>.tmp-*" is left in the directory. */
static void assert_no_temp_files(void)
{
    DIR *d = opendir(tmpdir);
    ck_assert_ptr_nonnull(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        ck_assert_msg(strstr(e->d_name, ".tmp-") == NULL, "temporary file %s was left behind", e->d_name);
    closedir(d);
}

/* ---- building a model ----------------------------------------------------------- */

typedef struct build_ctx {
    tl_model *m;
} build_ctx;

static void build_setup(void *c)
{
    ((build_ctx *)c)->m = NULL;
}

/* The document's network, as a user writes it; the model is freed on error. */
static tl_status build_run(void *c)
{
    build_ctx *b = c;
    tl_model *m;
    tl_status st = tl_model_create(&m, H, W, 1, 5);
    if (st) {
        ck_assert_ptr_null(m);
        return st;
    }
    tl_model_set_threads(m, 1);
    tl_conv2d_options conv = TL_CONV2D_OPTIONS_INIT;
    tl_maxpool2d_options pool = TL_MAXPOOL2D_OPTIONS_INIT;
    tl_dense_options dense = TL_DENSE_OPTIONS_INIT;
    conv.filters = 32;
    conv.activation = TL_ACT_RELU;
    dense.units = CLASSES;
    dense.activation = TL_ACT_SOFTMAX;
    size_t before = 0;
    if ((st = tl_model_add_conv2d(NULL, m, &conv)) == TL_OK && (before = 1) &&
        (st = tl_model_add_maxpool2d(NULL, m, &pool)) == TL_OK && (before = 2)) {
        conv.filters = 64;
        if ((st = tl_model_add_conv2d(NULL, m, &conv)) == TL_OK && (before = 3) &&
            (st = tl_model_add_maxpool2d(NULL, m, &pool)) == TL_OK && (before = 4) &&
            (st = tl_model_add_flatten(NULL, m, NULL)) == TL_OK && (before = 5))
            st = tl_model_add_dense(NULL, m, &dense);
    }
    if (st) {
        /* A failed add leaves the model as it was, and it takes the layer
         * once memory is there again. */
        ck_assert_uint_eq(tl_model_num_layers(m), before);
        tl_model_free(m);
        return st;
    }
    b->m = m;
    return TL_OK;
}

static void build_success(void *c)
{
    build_ctx *b = c;
    tl_model *ref = seed_cnn(5, CLASSES);
    assert_params_equal(b->m, ref, "build");
    tl_model_free(ref);
}

static void build_teardown(void *c)
{
    tl_model_free(((build_ctx *)c)->m);
}

/* Adding each layer to an existing model, one call at a time. */
typedef struct add_ctx {
    tl_model *m;
    size_t layers;
} add_ctx;

static void add_setup(void *c)
{
    add_ctx *a = c;
    ck_assert_tl_ok(tl_model_create(&a->m, H, W, 1, 5));
    tl_model_set_threads(a->m, 1);
}

static tl_status add_run(void *c)
{
    add_ctx *a = c;
    tl_conv2d_options conv = TL_CONV2D_OPTIONS_INIT;
    conv.filters = 8;
    conv.name = "first";
    tl_status st = tl_model_add_conv2d(NULL, a->m, &conv);
    a->layers = st ? 0 : 1;
    if (st == TL_OK) {
        tl_dense_options dense = TL_DENSE_OPTIONS_INIT;
        dense.units = 3;
        if ((st = tl_model_add_flatten(NULL, a->m, NULL)) == TL_OK) {
            a->layers = 2;
            if ((st = tl_model_add_dense(NULL, a->m, &dense)) == TL_OK)
                a->layers = 3;
        }
    }
    return st;
}

static void add_failure(void *c)
{
    add_ctx *a = c;
    ck_assert_uint_eq(tl_model_num_layers(a->m), a->layers);
    /* The same names are still free (nothing half-added keeps them). */
    ck_assert_tl_ok(tl_model_pop_layers(a->m, a->layers));
    ck_assert_tl_ok(add_run(a));
    ck_assert_uint_eq(tl_model_num_layers(a->m), 3);
}

static void add_teardown(void *c)
{
    tl_model_free(((add_ctx *)c)->m);
}

START_TEST(build_model)
{
    build_ctx b;
    alloc_op op = {"build the seed CNN", build_setup, build_run, NULL, build_success, build_teardown};
    report(op.name, each_failure(&op, &b));
    add_ctx a;
    alloc_op add = {"add layers to a model", add_setup, add_run, add_failure, NULL, add_teardown};
    report(add.name, each_failure(&add, &a));
}
END_TEST

/* ---- the zoo: a failure anywhere in a builder frees the partial model ------------- */

typedef struct zoo_ctx {
    tl_model *m;
    int which; /* 0: ResNet-20, 1: MobileNetV2 */
} zoo_ctx;

static void zoo_setup(void *c)
{
    ((zoo_ctx *)c)->m = (tl_model *)c; /* not NULL: a failure must clear it */
}

static tl_status zoo_run(void *c)
{
    zoo_ctx *z = c;
    tl_zoo_options o = TL_ZOO_OPTIONS_INIT;
    o.num_classes = 3;
    if (z->which == 0) {
        o.input_h = o.input_w = 8;
        return tl_zoo_resnet_cifar(&z->m, 20, &o);
    }
    o.input_h = o.input_w = 16;
    o.cifar_stem = 1;
    o.width_mult = 0.25f;
    return tl_zoo_mobilenet_v2(&z->m, &o);
}

static void zoo_failure(void *c)
{
    zoo_ctx *z = c;
    ck_assert_ptr_null(z->m);
    ck_assert_msg(strstr(tl_last_error(), "tl_zoo_") != NULL, "message '%s' lacks the function", tl_last_error());
}

static void zoo_success(void *c)
{
    zoo_ctx *z = c;
    ck_assert_ptr_nonnull(z->m);
    ck_assert_uint_gt(tl_model_num_layers(z->m), 60);
}

static void zoo_teardown(void *c)
{
    zoo_ctx *z = c;
    if (z->m != (tl_model *)c)
        tl_model_free(z->m);
}

START_TEST(zoo_builders)
{
    zoo_ctx z = {NULL, 0};
    alloc_op op = {"build ResNet-20 (zoo)", zoo_setup, zoo_run, zoo_failure, zoo_success, zoo_teardown};
    report(op.name, each_failure(&op, &z));
    z.which = 1;
    alloc_op mb = {"build MobileNetV2 (zoo)", zoo_setup, zoo_run, zoo_failure, zoo_success, zoo_teardown};
    report(mb.name, each_failure(&mb, &z));
}
END_TEST

/* ---- compile and one training step ------------------------------------------------ */

typedef struct step_ctx {
    tl_model *m;
    float *before;
    size_t nparams;
} step_ctx;

static void step_setup(void *c)
{
    step_ctx *s = c;
    s->m = seed_cnn(7, CLASSES);
    s->before = th_all_params(s->m, &s->nparams);
}

static tl_status step_run(void *c)
{
    step_ctx *s = c;
    tl_optimizer *o;
    tl_status st = tl_optimizer_create_adam(&o, NULL);
    if (st)
        return st;
    if ((st = tl_model_compile(s->m, o, TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY)))
        return st;
    return tl_model_train_step(NULL, s->m, batch_x, batch_y, NULL, 8);
}

/* The reference: a model that took the same step without failures. */
static void step_compare(tl_model *m)
{
    tl_model *ref = compiled_cnn(7);
    double loss;
    ck_assert_tl_ok(tl_model_train_step(&loss, ref, batch_x, batch_y, NULL, 8));
    ck_assert(isfinite(loss));
    assert_params_equal(m, ref, "train step");
    assert_same_predictions(m, ref, "train step");
    ck_assert_uint_eq(tl_optimizer_steps(tl_model_optimizer(m)), 1);
    tl_model_free(ref);
}

static void step_failure(void *c)
{
    step_ctx *s = c;
    /* No update was made, and the model trains as if nothing happened. */
    assert_params_are(s->m, s->before, s->nparams, "failed train step");
    if (tl_model_optimizer(s->m) == NULL) {
        tl_optimizer *o;
        ck_assert_tl_ok(tl_optimizer_create_adam(&o, NULL));
        ck_assert_tl_ok(tl_model_compile(s->m, o, TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY));
    }
    ck_assert_uint_eq(tl_optimizer_steps(tl_model_optimizer(s->m)), 0);
    ck_assert_tl_ok(tl_model_train_step(NULL, s->m, batch_x, batch_y, NULL, 8));
    step_compare(s->m);
}

static void step_success(void *c)
{
    step_compare(((step_ctx *)c)->m);
}

static void step_teardown(void *c)
{
    step_ctx *s = c;
    tl_model_free(s->m);
    free(s->before);
}

START_TEST(train_step)
{
    step_ctx s;
    alloc_op op = {"compile + tl_model_train_step", step_setup, step_run, step_failure, step_success, step_teardown};
    report(op.name, each_failure(&op, &s));
}
END_TEST

/* ---- fit with validation, evaluate ----------------------------------------------------- */

typedef struct fit_ctx {
    tl_model *m;
    tl_dataset *train, *val;
    float *before;
    size_t nparams;
} fit_ctx;

static tl_fit_options fit_opts(const tl_dataset *val)
{
    tl_fit_options o = TL_FIT_OPTIONS_INIT;
    o.epochs = 2;
    o.batch_size = 8;
    o.seed = 42;
    o.validation = val;
    return o;
}

static void fit_setup(void *c)
{
    fit_ctx *f = c;
    f->m = compiled_cnn(9);
    f->train = th_quadrant_dataset(20, H, W, 1, 3);
    f->val = th_quadrant_dataset(6, H, W, 1, 4);
    f->before = th_all_params(f->m, &f->nparams);
}

static tl_status fit_run(void *c)
{
    fit_ctx *f = c;
    tl_fit_options o = fit_opts(f->val);
    return tl_model_fit(f->m, f->train, &o);
}

static void fit_compare(fit_ctx *f)
{
    tl_model *ref = compiled_cnn(9);
    tl_fit_options o = fit_opts(f->val);
    ck_assert_tl_ok(tl_model_fit(ref, f->train, &o));
    assert_params_equal(f->m, ref, "fit");
    double l1, a1, l2, a2;
    ck_assert_tl_ok(tl_model_evaluate(&l1, &a1, f->m, f->val, 4));
    ck_assert_tl_ok(tl_model_evaluate(&l2, &a2, ref, f->val, 4));
    ck_assert(l1 == l2 && a1 == a2);
    tl_model_free(ref);
}

static void fit_failure(void *c)
{
    fit_ctx *f = c;
    /* Every allocation comes before the first step. */
    assert_params_are(f->m, f->before, f->nparams, "failed fit");
    tl_fit_options o = fit_opts(f->val);
    ck_assert_tl_ok(tl_model_fit(f->m, f->train, &o));
    fit_compare(f);
}

static void fit_success(void *c)
{
    fit_compare(c);
}

static void fit_teardown(void *c)
{
    fit_ctx *f = c;
    tl_model_free(f->m);
    tl_dataset_free(f->train);
    tl_dataset_free(f->val);
    free(f->before);
}

static tl_status evaluate_run(void *c)
{
    fit_ctx *f = c;
    double loss, acc;
    return tl_model_evaluate(&loss, &acc, f->m, f->val, 4);
}

static tl_status predict_run(void *c)
{
    fit_ctx *f = c;
    float out[8 * CLASSES];
    return tl_model_predict(out, 8 * CLASSES, f->m, batch_x, 8, 3);
}

START_TEST(fit_evaluate_predict)
{
    fit_ctx f;
    alloc_op op = {"tl_model_fit (with validation)", fit_setup, fit_run, fit_failure, fit_success, fit_teardown};
    report(op.name, each_failure(&op, &f));
    alloc_op ev = {"tl_model_evaluate", fit_setup, evaluate_run, NULL, NULL, fit_teardown};
    report(ev.name, each_failure(&ev, &f));
    alloc_op pr = {"tl_model_predict", fit_setup, predict_run, NULL, NULL, fit_teardown};
    report(pr.name, each_failure(&pr, &f));
}
END_TEST

/* ---- transfer: parameters, extractor, clone, copy, head and join ------------------ */

typedef struct xfer_ctx {
    tl_model *src, *dst, *out, *head;
    tl_transfer_report *report;
    float *before;
    size_t nparams;
} xfer_ctx;

static void xfer_setup(void *c)
{
    xfer_ctx *x = c;
    memset(x, 0, sizeof *x);
    x->src = seed_cnn(1, CLASSES);
    x->dst = seed_cnn(2, 10); /* a new head */
    x->before = th_all_params(x->dst, &x->nparams);
    x->report = (tl_transfer_report *)&x->report; /* must become NULL on failure */
    x->out = (tl_model *)&x->out;
}

static void xfer_teardown(void *c)
{
    xfer_ctx *x = c;
    tl_model_free(x->src);
    tl_model_free(x->dst);
    tl_model_free(x->head);
    if (x->out != (tl_model *)&x->out)
        tl_model_free(x->out);
    if (x->report != (tl_transfer_report *)&x->report)
        tl_transfer_report_free(x->report);
    free(x->before);
}

static tl_transfer_options conv_layers(void)
{
    static const size_t convs[] = {0, 2};
    tl_transfer_options o = TL_TRANSFER_OPTIONS_INIT;
    o.layers = convs;
    o.num_layers = 2;
    return o;
}

static tl_status transfer_run(void *c)
{
    xfer_ctx *x = c;
    tl_transfer_options o = conv_layers();
    return tl_model_transfer_params(&x->report, x->dst, x->src, &o);
}

static void transfer_failure(void *c)
{
    xfer_ctx *x = c;
    ck_assert_ptr_null(x->report);
    assert_params_are(x->dst, x->before, x->nparams, "failed transfer");
    tl_transfer_options o = conv_layers();
    ck_assert_tl_ok(tl_model_transfer_params(&x->report, x->dst, x->src, &o));
}

static void transfer_success(void *c)
{
    xfer_ctx *x = c;
    ck_assert_uint_eq(tl_transfer_report_count_outcome(x->report, TL_TRANSFER_COPIED), 2);
    tl_layer *a, *b;
    float wa[3 * 3 * 32 * 64], wb[3 * 3 * 32 * 64];
    ck_assert_tl_ok(tl_model_layer(&a, x->src, 2));
    ck_assert_tl_ok(tl_model_layer(&b, x->dst, 2));
    ck_assert_tl_ok(tl_layer_get_weights(wa, 3 * 3 * 32 * 64, a, 0));
    ck_assert_tl_ok(tl_layer_get_weights(wb, 3 * 3 * 32 * 64, b, 0));
    ck_assert(memcmp(wa, wb, sizeof wa) == 0);
}

/* The operations that make a new model: out must stay NULL on failure. */
static tl_status extractor_run(void *c)
{
    xfer_ctx *x = c;
    return tl_model_extractor_create(&x->out, x->src, 4);
}

static tl_status clone_run(void *c)
{
    xfer_ctx *x = c;
    tl_clone_options o = TL_CLONE_OPTIONS_INIT;
    o.seed = 3;
    o.head_units = 10;
    return tl_model_clone_structure(&x->out, x->src, &o);
}

static tl_status copy_run(void *c)
{
    xfer_ctx *x = c;
    return tl_model_copy(&x->out, x->src);
}

static void head_setup(void *c)
{
    xfer_ctx *x = c;
    xfer_setup(c);
    ck_assert_tl_ok(tl_model_pop_layers(x->src, 2)); /* the base ends at the last pool */
    ck_assert_tl_ok(tl_model_head_create(&x->head, x->src, 4));
    ck_assert_tl_ok(tl_model_add_flatten(NULL, x->head, NULL));
    tl_dense_options d = TL_DENSE_OPTIONS_INIT;
    d.units = 5;
    d.name = "dense"; /* not in the base: kept */
    ck_assert_tl_ok(tl_model_add_dense(NULL, x->head, &d));
}

static tl_status head_run(void *c)
{
    xfer_ctx *x = c;
    tl_model *h = (tl_model *)&x->out;
    tl_status st = tl_model_head_create(&h, x->src, 4);
    if (st) {
        ck_assert_ptr_null(h);
        x->out = NULL; /* the join was not reached */
        return st;
    }
    tl_model_free(h);
    return tl_model_join(&x->out, x->src, x->head);
}

static void out_null(void *c)
{
    xfer_ctx *x = c;
    ck_assert_ptr_null(x->out);
    x->out = (tl_model *)&x->out;
}

/* The new model works: it predicts (the extractor and the join on the batch). */
static void out_works(void *c)
{
    xfer_ctx *x = c;
    tl_shape s;
    ck_assert_tl_ok(tl_model_output_shape(&s, x->out));
    size_t k = tl_shape_count(&s);
    float *y = malloc(8 * k * sizeof *y);
    ck_assert_tl_ok(tl_model_predict(y, 8 * k, x->out, batch_x, 8, 0));
    free(y);
}

START_TEST(transfer_ops)
{
    xfer_ctx x;
    alloc_op ops[] = {
        {"tl_model_transfer_params", xfer_setup, transfer_run, transfer_failure, transfer_success, xfer_teardown},
        {"tl_model_extractor_create", xfer_setup, extractor_run, out_null, out_works, xfer_teardown},
        {"tl_model_clone_structure", xfer_setup, clone_run, out_null, out_works, xfer_teardown},
        {"tl_model_copy", xfer_setup, copy_run, out_null, out_works, xfer_teardown},
        {"tl_model_head_create + tl_model_join", head_setup, head_run, out_null, out_works, xfer_teardown},
    };
    for (size_t i = 0; i < sizeof ops / sizeof *ops; i++)
        report(ops[i].name, each_failure(&ops[i], &x));
}
END_TEST

/* ---- feature extraction ---------------------------------------------------------- */

typedef struct feat_ctx {
    tl_model *base;
    tl_dataset *data, *out;
} feat_ctx;

static void feat_setup(void *c)
{
    feat_ctx *f = c;
    tl_model *m = seed_cnn(1, CLASSES);
    ck_assert_tl_ok(tl_model_extractor_create(&f->base, m, 4));
    tl_model_free(m);
    f->data = th_quadrant_dataset(10, H, W, 1, 8);
    f->out = (tl_dataset *)&f->out;
}

static tl_status feat_run(void *c)
{
    feat_ctx *f = c;
    return tl_model_extract_features(&f->out, f->base, f->data, 4);
}

static void feat_check(feat_ctx *f)
{
    tl_dataset *ref;
    ck_assert_tl_ok(tl_model_extract_features(&ref, f->base, f->data, 4));
    ck_assert_uint_eq(tl_dataset_count(ref), tl_dataset_count(f->out));
    ck_assert(memcmp(tl_dataset_images(ref), tl_dataset_images(f->out), 10 * 64 * sizeof(float)) == 0);
    ck_assert(memcmp(tl_dataset_labels(ref), tl_dataset_labels(f->out), 10 * sizeof(int32_t)) == 0);
    tl_dataset_free(ref);
}

static void feat_failure(void *c)
{
    feat_ctx *f = c;
    ck_assert_ptr_null(f->out);
    ck_assert_tl_ok(tl_model_extract_features(&f->out, f->base, f->data, 4));
    feat_check(f);
}

static void feat_success(void *c)
{
    feat_check(c);
}

static void feat_teardown(void *c)
{
    feat_ctx *f = c;
    tl_model_free(f->base);
    tl_dataset_free(f->data);
    if (f->out != (tl_dataset *)&f->out)
        tl_dataset_free(f->out);
}

START_TEST(feature_extraction)
{
    feat_ctx f;
    alloc_op op = {"tl_model_extract_features", feat_setup, feat_run, feat_failure, feat_success, feat_teardown};
    report(op.name, each_failure(&op, &f));
}
END_TEST

/* ---- dataset operations ----------------------------------------------------------- */

typedef struct ds_ctx {
    tl_dataset *ds, *a, *b;
    int which;
    float mean, sd;
} ds_ctx;

static void ds_setup(void *c)
{
    ds_ctx *d = c;
    d->ds = th_quadrant_dataset(24, H, W, 1, 5);
    d->a = d->b = NULL;
    ck_assert_tl_ok(tl_dataset_channel_stats(&d->mean, &d->sd, 1, d->ds));
}

static tl_status ds_run(void *c)
{
    ds_ctx *d = c;
    static const int32_t keep[] = {1, 3};
    switch (d->which) {
    case 0: return tl_dataset_create(&d->a, tl_dataset_images(d->ds), tl_dataset_labels(d->ds), 24, H, W, 1, 4,
                                     TL_DATA_COPY);
    case 1: return tl_dataset_filter_classes(&d->a, d->ds, keep, 2);
    case 2: return tl_dataset_take_per_class(&d->a, d->ds, 2);
    case 3: return tl_dataset_slice(&d->a, d->ds, 3, 9);
    case 4: return tl_dataset_shuffled(&d->a, d->ds, 17);
    case 5: return tl_dataset_split(&d->a, &d->b, d->ds, 0.25, TL_HOLDOUT_STRATIFIED, 3);
    case 6: return tl_dataset_standardize(&d->a, d->ds, &d->mean, &d->sd, 1);
    default: return tl_dataset_set_targets(d->ds, tl_dataset_images(d->ds), 24, 4, TL_DATA_COPY);
    }
}

static void ds_failure(void *c)
{
    ds_ctx *d = c;
    ck_assert_ptr_null(d->a);
    ck_assert_ptr_null(d->b);
    ck_assert_uint_eq(tl_dataset_count(d->ds), 24);
    size_t k = 9;
    ck_assert_ptr_null(tl_dataset_targets(d->ds, &k));
    ck_assert_uint_eq(k, 0);
}

static void ds_teardown(void *c)
{
    ds_ctx *d = c;
    tl_dataset_free(d->ds);
    tl_dataset_free(d->a);
    tl_dataset_free(d->b);
}

START_TEST(dataset_ops)
{
    static const char *names[] = {"tl_dataset_create (copy)", "tl_dataset_filter_classes",
                                  "tl_dataset_take_per_class", "tl_dataset_slice", "tl_dataset_shuffled",
                                  "tl_dataset_split", "tl_dataset_standardize", "tl_dataset_set_targets (copy)"};
    /* tl_dataset_channel_stats allocates too, but only in setup here. */
    ds_ctx d;
    for (int i = 0; i < 8; i++) {
        d.which = i;
        alloc_op op = {names[i], ds_setup, ds_run, ds_failure, NULL, ds_teardown};
        report(op.name, each_failure(&op, &d));
    }
}
END_TEST

/* ---- save and load ------------------------------------------------------------------- */

typedef struct io_ctx {
    tl_model *m, *out;
    tl_checkpoint_info *info;
    tl_transfer_report *report;
    char path[128], st_path[128];
    float *before;
    size_t nparams;
} io_ctx;

/* A trained, compiled model (optimizer state included), and the files it
 * was saved to beforehand. */
static void io_setup(void *c)
{
    io_ctx *x = c;
    x->m = compiled_cnn(13);
    ck_assert_tl_ok(tl_model_train_step(NULL, x->m, batch_x, batch_y, NULL, 8));
    tmp_path(x->path, sizeof x->path, "model.tlm");
    tmp_path(x->st_path, sizeof x->st_path, "model.safetensors");
    x->out = (tl_model *)&x->out;
    x->info = (tl_checkpoint_info *)&x->info;
    x->report = (tl_transfer_report *)&x->report;
    x->before = th_all_params(x->m, &x->nparams);
}

static void io_teardown(void *c)
{
    io_ctx *x = c;
    tl_model_free(x->m);
    if (x->out != (tl_model *)&x->out)
        tl_model_free(x->out);
    if (x->info != (tl_checkpoint_info *)&x->info)
        tl_checkpoint_info_free(x->info);
    if (x->report != (tl_transfer_report *)&x->report)
        tl_transfer_report_free(x->report);
    free(x->before);
}

/* Saving over an older file: on failure the older file is intact. */
static void save_setup(void *c)
{
    io_ctx *x = c;
    io_setup(c);
    tl_model *old = seed_cnn(77, CLASSES);
    ck_assert_tl_ok(tl_model_save(old, x->path, NULL));
    ck_assert_tl_ok(tl_model_save_safetensors(old, x->st_path, TL_LAYOUT_KERAS, NULL));
    tl_model_free(old);
}

static tl_status save_run(void *c)
{
    io_ctx *x = c;
    return tl_model_save(x->m, x->path, NULL);
}

static tl_status save_st_run(void *c)
{
    io_ctx *x = c;
    return tl_model_save_safetensors(x->m, x->st_path, TL_LAYOUT_PYTORCH, NULL);
}

static void save_failure_common(io_ctx *x, const char *path, int safetensors)
{
    assert_no_temp_files();
    /* The older file is still the older model. */
    tl_model *old = seed_cnn(77, CLASSES), *back = seed_cnn(1, CLASSES);
    if (safetensors)
        ck_assert_tl_ok(tl_model_load_safetensors(NULL, back, path, TL_LAYOUT_KERAS, NULL));
    else {
        tl_model_free(back);
        ck_assert_tl_ok(tl_model_load(&back, path));
    }
    assert_params_equal(back, old, "the file after a failed save");
    tl_model_free(old);
    tl_model_free(back);
    /* The model saves once memory is there again. */
    ck_assert_tl_ok(safetensors ? tl_model_save_safetensors(x->m, path, TL_LAYOUT_PYTORCH, NULL)
                                : tl_model_save(x->m, path, NULL));
}

static void save_failure(void *c)
{
    save_failure_common(c, ((io_ctx *)c)->path, 0);
}

static void save_st_failure(void *c)
{
    save_failure_common(c, ((io_ctx *)c)->st_path, 1);
}

static void save_success(void *c)
{
    io_ctx *x = c;
    assert_no_temp_files();
    tl_model *back;
    ck_assert_tl_ok(tl_model_load(&back, x->path));
    assert_params_equal(back, x->m, "saved and loaded");
    tl_model_free(back);
}

/* Loading: the files hold the trained model. */
static void load_setup(void *c)
{
    io_ctx *x = c;
    io_setup(c);
    ck_assert_tl_ok(tl_model_save(x->m, x->path, NULL));
    ck_assert_tl_ok(tl_model_save_safetensors(x->m, x->st_path, TL_LAYOUT_PYTORCH, NULL));
    /* The model to load into has other weights. */
    tl_model_free(x->m);
    free(x->before);
    x->m = seed_cnn(21, CLASSES);
    x->before = th_all_params(x->m, &x->nparams);
}

static tl_status load_run(void *c)
{
    io_ctx *x = c;
    return tl_model_load(&x->out, x->path);
}

static tl_status info_run(void *c)
{
    io_ctx *x = c;
    return tl_checkpoint_info_read(&x->info, x->path);
}

static tl_status load_params_run(void *c)
{
    io_ctx *x = c;
    return tl_model_load_params(&x->report, x->m, x->path, NULL);
}

static tl_status load_st_run(void *c)
{
    io_ctx *x = c;
    return tl_model_load_safetensors(&x->report, x->m, x->st_path, TL_LAYOUT_PYTORCH, NULL);
}

/* The out pointer of the call that failed is NULL; the model is unchanged. */
static void load_failure(void *c)
{
    io_ctx *x = c;
    void *sentinel[3] = {&x->out, &x->info, &x->report};
    void *got[3] = {x->out, x->info, x->report};
    int nulls = 0;
    for (int i = 0; i < 3; i++) {
        ck_assert_msg(got[i] == NULL || got[i] == sentinel[i], "a failed load handed something back");
        nulls += got[i] == NULL;
    }
    ck_assert_int_eq(nulls, 1);
    x->out = (tl_model *)&x->out;
    x->info = (tl_checkpoint_info *)&x->info;
    x->report = (tl_transfer_report *)&x->report;
    assert_params_are(x->m, x->before, x->nparams, "a failed load");
}

/* What was loaded is the trained model: the same weights, and it trains on
 * exactly as the original does. */
static void load_success(void *c)
{
    io_ctx *x = c;
    tl_model *ref = compiled_cnn(13);
    ck_assert_tl_ok(tl_model_train_step(NULL, ref, batch_x, batch_y, NULL, 8));
    if (x->out != (tl_model *)&x->out) {
        assert_params_equal(x->out, ref, "loaded");
        ck_assert_tl_ok(tl_model_train_step(NULL, ref, batch_x, batch_y, NULL, 8));
        tl_model_set_threads(x->out, 1);
        ck_assert_tl_ok(tl_model_train_step(NULL, x->out, batch_x, batch_y, NULL, 8));
        assert_params_equal(x->out, ref, "loaded, then one more step");
    } else if (x->info != (tl_checkpoint_info *)&x->info) {
        ck_assert_uint_eq(tl_checkpoint_info_num_layers(x->info), 6);
        ck_assert_uint_eq(tl_checkpoint_info_optimizer_steps(x->info), 1);
    } else {
        assert_params_equal(x->m, ref, "parameters loaded");
    }
    tl_model_free(ref);
}

START_TEST(save_and_load)
{
    io_ctx x;
    alloc_op ops[] = {
        {"tl_model_save (over an older file)", save_setup, save_run, save_failure, save_success, io_teardown},
        {"tl_model_save_safetensors", save_setup, save_st_run, save_st_failure, NULL, io_teardown},
        {"tl_model_load", load_setup, load_run, load_failure, load_success, io_teardown},
        {"tl_checkpoint_info_read", load_setup, info_run, load_failure, load_success, io_teardown},
        {"tl_model_load_params", load_setup, load_params_run, load_failure, load_success, io_teardown},
        {"tl_model_load_safetensors", load_setup, load_st_run, load_failure, load_success, io_teardown},
    };
    for (size_t i = 0; i < sizeof ops / sizeof *ops; i++)
        report(ops[i].name, each_failure(&ops[i], &x));
}
END_TEST

int main(void)
{
    make_batch();
    snprintf(tmpdir, sizeof tmpdir, "/tmp/tl-alloc-XXXXXX");
    if (mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    Suite *s = suite_create("alloc");
    TCase *tc = tcase_create("every_allocation");
    tcase_set_timeout(tc, 600); /* hundreds of runs each; minutes under valgrind */
    tcase_add_test(tc, build_model);
    tcase_add_test(tc, zoo_builders);
    tcase_add_test(tc, train_step);
    tcase_add_test(tc, fit_evaluate_predict);
    tcase_add_test(tc, transfer_ops);
    tcase_add_test(tc, feature_extraction);
    tcase_add_test(tc, dataset_ops);
    tcase_add_test(tc, save_and_load);
    suite_add_tcase(s, tc);
    int rc = th_run(s);
    char p[128];
    unlink(tmp_path(p, sizeof p, "model.tlm"));
    unlink(tmp_path(p, sizeof p, "model.safetensors"));
    rmdir(tmpdir);
    return rc;
}
