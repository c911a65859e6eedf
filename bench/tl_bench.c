/*
 * tl_bench.c - speed and memory of libtl on one of three networks, next to
 * what this machine's BLIS does on a 2048^3 sgemm at the same moment:
 * - seed: the document's CNN (conv2d(32,3x3,relu) -> maxpool ->
 *   conv2d(64,3x3,relu) -> maxpool -> flatten -> dense(10)), Adam;
 * - resnet20: the CIFAR ResNet-20 with projection shortcuts (tl/zoo.h);
 * - mobilenetv2: MobileNetV2 width 1.0 with the CIFAR stem (stem and the
 *   first stride-2 stage at stride 1), no dropout;
 * all on 32x32x3 inputs with 10 classes. The two backbones train as
 * ../shared/peers/torch_backbones.py trains them (SGD momentum 0.9, lr 0.05,
 * weight decay 5e-4, cross-entropy on the logits), so the figures can be
 * read beside PyTorch's.
 *
 *   tl-bench [--model seed|resnet20|mobilenetv2] [--threads N] [--batch N] [--seconds S] [--reps N] [--json]
 *
 * Every figure is the median of --reps timed runs of about --seconds each,
 * after a warm-up; min and max are printed beside it. FLOPs are the
 * multiply-adds of the network as built (tl_layer_flops), 2 per multiply-add.
 */
#include <blis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <tl/tl.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char *what)
{
    fprintf(stderr, "tl-bench: %s: %s\n", what, tl_last_error());
    exit(1);
}

#define CHECK(call)            \
    do {                       \
        if ((call) != TL_OK)   \
            die(#call);        \
    } while (0)

typedef struct stats {
    double median, min, max;
} stats;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static stats summarize(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    stats s = {n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]), v[0], v[n - 1]};
    return s;
}

typedef enum bench_model { MODEL_SEED, MODEL_RESNET20, MODEL_MOBILENETV2 } bench_model;
static const char *const model_names[] = {"seed", "resnet20", "mobilenetv2"};

typedef struct bench_args {
    unsigned threads, batch, reps;
    double seconds;
    int json;
    bench_model model;
} bench_args;

/* Rate of `step` (items per call) over reps timed runs of ~seconds each. */
typedef void (*step_fn)(void *ctx, unsigned i);
static stats measure(const bench_args *a, step_fn step, void *ctx, double items_per_call)
{
    for (unsigned i = 0; i < 3; i++)
        step(ctx, i);
    /* Calibrate the number of calls that takes about `seconds`. */
    unsigned calls = 0;
    double t0 = now();
    while (now() - t0 < 0.25)
        step(ctx, calls++);
    double per_call = (now() - t0) / calls;
    unsigned n = (unsigned)(a->seconds / per_call);
    if (n < 3)
        n = 3;
    double rates[64];
    int reps = a->reps > 64 ? 64 : (int)a->reps;
    for (int r = 0; r < reps; r++) {
        t0 = now();
        for (unsigned i = 0; i < n; i++)
            step(ctx, i);
        rates[r] = n * items_per_call / (now() - t0);
    }
    return summarize(rates, reps);
}

/* ---- the models ------------------------------------------------------- */

static void compile_sgd(tl_model *m)
{
    tl_sgd_options o = TL_SGD_OPTIONS_INIT;
    o.learning_rate = 0.05f;
    o.momentum = 0.9f;
    o.weight_decay = 5e-4f;
    tl_optimizer *sgd;
    CHECK(tl_optimizer_create_sgd(&sgd, &o));
    CHECK(tl_model_compile(m, sgd, TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY));
}

static tl_model *seed_cnn(unsigned threads, unsigned classes)
{
    tl_model *m;
    CHECK(tl_model_create(&m, 32, 32, 3, 1));
    CHECK(tl_model_set_threads(m, threads));
    tl_conv2d_options conv = TL_CONV2D_OPTIONS_INIT;
    tl_maxpool2d_options pool = TL_MAXPOOL2D_OPTIONS_INIT;
    tl_dense_options dense = TL_DENSE_OPTIONS_INIT;
    conv.filters = 32;
    conv.activation = TL_ACT_RELU;
    CHECK(tl_model_add_conv2d(NULL, m, &conv));
    CHECK(tl_model_add_maxpool2d(NULL, m, &pool));
    conv.filters = 64;
    CHECK(tl_model_add_conv2d(NULL, m, &conv));
    CHECK(tl_model_add_maxpool2d(NULL, m, &pool));
    CHECK(tl_model_add_flatten(NULL, m, NULL));
    dense.units = classes;
    dense.activation = TL_ACT_SOFTMAX;
    CHECK(tl_model_add_dense(NULL, m, &dense));
    tl_optimizer *adam;
    CHECK(tl_optimizer_create_adam(&adam, NULL));
    CHECK(tl_model_compile(m, adam, TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY));
    return m;
}

/* The networks of torch_backbones.py's build(), compiled as it trains them. */
static tl_model *make_model(bench_model which, unsigned threads, unsigned classes)
{
    if (which == MODEL_SEED)
        return seed_cnn(threads, classes);
    tl_zoo_options o = TL_ZOO_OPTIONS_INIT;
    o.num_classes = classes;
    o.seed = 1;
    tl_model *m;
    if (which == MODEL_RESNET20) {
        CHECK(tl_zoo_resnet_cifar(&m, 20, &o));
    } else {
        o.cifar_stem = 1;
        o.dropout = -1.0f; /* the peer's classifier has no dropout */
        CHECK(tl_zoo_mobilenet_v2(&m, &o));
    }
    CHECK(tl_model_set_threads(m, threads));
    compile_sgd(m);
    return m;
}

/* Multiply-add flops of one example (tl_layer_flops): forward, and
 * forward + backward for training (parameter gradients of the layers that
 * learn, input gradients above the lowest one). */
static void model_flops(const tl_model *m, double *fwd, double *train)
{
    size_t n = tl_model_num_layers(m), lowest = n;
    for (size_t i = 0; i < n; i++) {
        tl_layer *l;
        tl_model_layer(&l, m, i);
        if (tl_layer_num_params(l) && tl_layer_is_trainable(l) && lowest == n)
            lowest = i;
    }
    *fwd = *train = 0.0;
    for (size_t i = 0; i < n; i++) {
        tl_layer *l;
        double f, dx, dw;
        tl_model_layer(&l, m, i);
        CHECK(tl_layer_flops(&f, &dx, &dw, l));
        *fwd += f;
        *train += f;
        if (tl_layer_is_trainable(l))
            *train += dw;
        if (i > lowest)
            *train += dx;
    }
}

typedef struct train_ctx {
    tl_model *m;
    float *x;
    int32_t *y;
    unsigned batch;
    unsigned nbatches;
    size_t example;
} train_ctx;

static void train_step(void *p, unsigned i)
{
    train_ctx *c = p;
    size_t b = i % c->nbatches;
    CHECK(tl_model_train_step(NULL, c->m, c->x + b * c->batch * c->example, c->y + b * c->batch, NULL, c->batch));
}

typedef struct infer_ctx {
    tl_model *m;
    const float *x;
    float *out;
    unsigned batch;
    size_t classes;
} infer_ctx;

static void infer_step(void *p, unsigned i)
{
    infer_ctx *c = p;
    (void)i;
    CHECK(tl_model_predict(c->out, c->batch * c->classes, c->m, c->x, c->batch, c->batch));
}

typedef struct gemm_ctx {
    float *a, *b, *c;
    dim_t n;
    rntm_t rntm;
} gemm_ctx;

static void gemm_step(void *p, unsigned i)
{
    gemm_ctx *g = p;
    float one = 1.0f, zero = 0.0f;
    (void)i;
    bli_sgemm_ex(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, g->n, g->n, g->n, &one, g->a, g->n, 1, g->b, g->n, 1, &zero,
                 g->c, g->n, 1, NULL, &g->rntm);
}

static double peak_rss_mib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0;
}

static void fill(float *v, size_t n, unsigned seed)
{
    uint32_t s = seed * 2654435761u + 12345u;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        v[i] = (float)(s >> 8) / 16777216.0f;
    }
}

static void usage(const char *argv0, int code)
{
    fprintf(code ? stderr : stdout,
            "usage: %s [--model seed|resnet20|mobilenetv2] [--threads N] [--batch N] [--seconds S] [--reps N] "
            "[--json]\n"
            "  --model M     the network (default seed, the document's CNN)\n"
            "  --threads N   threads for libtl and BLIS (default 1)\n"
            "  --batch N     training and inference batch (default 64)\n"
            "  --seconds S   length of each timed run (default 2)\n"
            "  --reps N      timed runs per figure; the median is reported (default 5)\n"
            "  --json        one JSON object instead of the table\n",
            argv0);
    exit(code);
}

int main(int argc, char **argv)
{
    bench_args a = {1, 64, 5, 2.0, 0, MODEL_SEED};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--model") == 0 && i + 1 < argc) {
            const char *name = argv[++i];
            int found = 0;
            for (int k = 0; k < 3; k++)
                if (strcmp(name, model_names[k]) == 0)
                    a.model = (bench_model)k, found = 1;
            if (!found)
                usage(argv[0], 2);
        } else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            a.threads = (unsigned)atoi(argv[++i]);
        else if (strcmp(argv[i], "--batch") == 0 && i + 1 < argc)
            a.batch = (unsigned)atoi(argv[++i]);
        else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
            a.seconds = atof(argv[++i]);
        else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc)
            a.reps = (unsigned)atoi(argv[++i]);
        else if (strcmp(argv[i], "--json") == 0)
            a.json = 1;
        else if (strcmp(argv[i], "--help") == 0)
            usage(argv[0], 0);
        else
            usage(argv[0], 2);
    }
    if (a.threads == 0 || a.batch == 0 || a.reps == 0 || a.seconds <= 0)
        usage(argv[0], 2);
    const char *backend = tl_backend_info(); /* lets libtl pick BLIS's kernels first */

    const unsigned classes = 10, nbatches = 8;
    const size_t example = 32 * 32 * 3;
    const size_t big = a.batch > 256 ? a.batch : 256;
    float *x = malloc((size_t)nbatches * (a.batch > big ? a.batch : big) * example * sizeof *x);
    int32_t *y = malloc((size_t)nbatches * a.batch * sizeof *y);
    float *out = malloc(big * classes * sizeof *out);
    if (!x || !y || !out) {
        fprintf(stderr, "tl-bench: out of memory\n");
        return 1;
    }
    fill(x, (size_t)nbatches * big * example, 1);
    for (size_t i = 0; i < (size_t)nbatches * a.batch; i++)
        y[i] = (int32_t)(i * 7 % classes);

    /* 1. Full training. */
    tl_model *m = make_model(a.model, a.threads, classes);
    double fwd_flops, train_flops;
    model_flops(m, &fwd_flops, &train_flops);
    const size_t params = tl_model_trainable_param_count(m);
    train_ctx tc = {m, x, y, a.batch, nbatches, example};
    stats train = measure(&a, train_step, &tc, a.batch);
    double rss = peak_rss_mib();

    /* 2. Inference at the batch, at 256, and latency at 1. */
    infer_ctx ic = {m, x, out, a.batch, classes};
    stats infer = measure(&a, infer_step, &ic, a.batch);
    ic.batch = 256;
    stats infer256 = measure(&a, infer_step, &ic, 256);
    ic.batch = 1;
    stats lat = measure(&a, infer_step, &ic, 1);

    /* 3. Training with the base frozen (the seed CNN: its convolutions;
     * the backbones: everything below the dense head, BN then runs in
     * inference mode), and the head alone on cached features. */
    tl_model *fm = make_model(a.model, a.threads, classes);
    const size_t nl = tl_model_num_layers(fm);
    const size_t cut = a.model == MODEL_SEED ? 5 : nl - 1; /* the extractor's layers */
    CHECK(tl_model_freeze_upto(fm, a.model == MODEL_SEED ? 4 : nl - 1));
    tc.m = fm;
    stats frozen = measure(&a, train_step, &tc, a.batch);
    tl_model *ext, *head;
    CHECK(tl_model_extractor_create(&ext, fm, cut));
    CHECK(tl_model_head_create(&head, ext, 2));
    CHECK(tl_model_set_threads(head, a.threads));
    CHECK(tl_model_add_flatten(NULL, head, NULL));
    tl_dense_options dense = TL_DENSE_OPTIONS_INIT;
    dense.units = classes;
    if (a.model == MODEL_SEED) {
        dense.activation = TL_ACT_SOFTMAX;
        CHECK(tl_model_add_dense(NULL, head, &dense));
        tl_optimizer *adam;
        CHECK(tl_optimizer_create_adam(&adam, NULL));
        CHECK(tl_model_compile(head, adam, TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY));
    } else {
        CHECK(tl_model_add_dense(NULL, head, &dense));
        compile_sgd(head);
    }
    tl_shape fshape;
    CHECK(tl_model_output_shape(&fshape, ext));
    tl_dataset *raw, *feat;
    CHECK(tl_dataset_create(&raw, x, y, (size_t)nbatches * a.batch, 32, 32, 3, classes, TL_DATA_BORROW));
    CHECK(tl_model_extract_features(&feat, ext, raw, 256));
    train_ctx hc = {head, (float *)tl_dataset_images(feat), y, a.batch, nbatches, tl_shape_count(&fshape)};
    stats headonly = measure(&a, train_step, &hc, a.batch);

    /* 4. This machine's sgemm at the same moment, same threads. */
    gemm_ctx g;
    g.n = 2048;
    g.a = malloc(sizeof(float) * 2048 * 2048);
    g.b = malloc(sizeof(float) * 2048 * 2048);
    g.c = malloc(sizeof(float) * 2048 * 2048);
    fill(g.a, 2048 * 2048, 2);
    fill(g.b, 2048 * 2048, 3);
    bli_rntm_init(&g.rntm);
    bli_rntm_set_num_threads((dim_t)a.threads, &g.rntm);
    bench_args ga = a;
    stats sgemm = measure(&ga, gemm_step, &g, 2.0 * 2048.0 * 2048.0 * 2048.0 / 1e9);

    double train_gflops = train.median * train_flops / 1e9;
    if (a.json) {
        printf("{\"model\": \"%s\", \"params\": %zu, \"threads\": %u, \"batch\": %u, \"train_img_s\": %.1f, \"train_img_s_min\": %.1f, "
               "\"train_img_s_max\": %.1f, \"train_gflops\": %.2f, \"infer_img_s\": %.1f, \"infer_img_s_b256\": %.1f, "
               "\"latency_b1_ms\": %.4f, \"frozen_train_img_s\": %.1f, \"head_train_img_s\": %.1f, "
               "\"peak_rss_mib\": %.1f, \"sgemm_gflops\": %.2f, \"train_fraction_of_sgemm\": %.3f, "
               "\"backend\": \"%s\"}\n",
               model_names[a.model], params, a.threads, a.batch, train.median, train.min, train.max, train_gflops, infer.median, infer256.median,
               1000.0 / lat.median, frozen.median, headonly.median, rss, sgemm.median, train_gflops / sgemm.median,
               backend);
    } else {
        printf("libtl %s; %s\n", tl_version(), backend);
        static const char *const titles[] = {"seed CNN", "ResNet-20", "MobileNetV2 (CIFAR stem)"};
        printf("%s, 32x32x3, %u threads, batch %u; %.2f MFLOP forward, %.2f MFLOP training per image\n",
               titles[a.model], a.threads, a.batch, fwd_flops / 1e6, train_flops / 1e6);
        if (a.model != MODEL_SEED)
            printf("%zu trainable parameters\n", params);
        printf("%-34s %12s %12s %12s\n", "figure", "median", "min", "max");
        printf("%-34s %12.1f %12.1f %12.1f\n", "training images/s", train.median, train.min, train.max);
        printf("%-34s %12.2f\n", "training GFLOP/s", train_gflops);
        printf("%-34s %12.1f %12.1f %12.1f\n", "inference images/s (batch)", infer.median, infer.min, infer.max);
        printf("%-34s %12.1f %12.1f %12.1f\n", "inference images/s (batch 256)", infer256.median, infer256.min,
               infer256.max);
        printf("%-34s %12.4f %12.4f %12.4f\n", "latency batch 1 (ms)", 1000.0 / lat.median, 1000.0 / lat.max,
               1000.0 / lat.min);
        printf("%-34s %12.1f %12.1f %12.1f\n", "frozen-base training images/s", frozen.median, frozen.min,
               frozen.max);
        printf("%-34s %12.1f %12.1f %12.1f\n", "head-only training images/s", headonly.median, headonly.min,
               headonly.max);
        printf("%-34s %12.1f\n", "peak RSS during training (MiB)", rss);
        printf("%-34s %12.2f %12.2f %12.2f\n", "sgemm 2048^3 GFLOP/s", sgemm.median, sgemm.min, sgemm.max);
        printf("%-34s %12.3f\n", "training / sgemm", train_gflops / sgemm.median);
        printf("%-34s %12.2f\n", "frozen speed-up vs full", frozen.median / train.median);
        printf("%-34s %12.2f\n", "head-only speed-up vs full", headonly.median / train.median);
    }
    tl_dataset_free(raw);
    tl_dataset_free(feat);
    tl_model_free(m);
    tl_model_free(fm);
    tl_model_free(ext);
    tl_model_free(head);
    free(x);
    free(y);
    free(out);
    free(g.a);
    free(g.b);
    free(g.c);
    return 0;
}
