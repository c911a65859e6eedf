/* test_normalization.c - normalization as a layer (TL_LAYER_NORMALIZATION):
 * y = (x * scale + offset - mean[k]) / std[k] over the last axis.
 *
 *  - Forward by hand on a tiny NHWC input and on a flat one; the kernels
 *    against a naive loop, with 1 and 2 threads (the same bits), across
 *    the threaded path and a ragged tail, in place.
 *  - Backward: the input gradient against central differences (layer
 *    alone, several shapes, scales and threads; and through the engine,
 *    the layer between a conv2d and a dense layer, every parameter).
 *  - Adapt from a dataset: equal to tl_dataset_channel_stats() bit for bit
 *    at scale 1, offset 0; with scale 1/255 and an offset, the statistics
 *    of the rescaled data; a constant channel gets std 1 and is counted.
 *  - A model with normalization first predicts from raw pixels exactly
 *    what the same model without it predicts from tl_dataset_standardize'd
 *    data (bit for bit: the layer computes (x - mean) / std in float as
 *    tl_dataset_standardize does; and with scale 1/255 what it predicts
 *    from x * (1/255) standardized).
 *  - Checkpoint (format 1.1, settings, tensor names) and safetensors
 *    (Keras and PyTorch layouts, the tensor names, the architecture
 *    metadata, tl_model_create_from_safetensors) round trips.
 *  - Training: the statistics never change, get no gradient and no
 *    optimizer state; the layers below a mid-model normalization learn.
 *  - tl_model_copy, tl_model_clone_structure, extractors and
 *    tl_model_transfer_params keep the statistics; tl_model_init_params
 *    keeps them.
 *  - Bad inputs: std 0, negative, NaN or infinite; mean NaN; channel
 *    counts; scale 0 or not finite; offset not finite; set_weights;
 *    statistics from a file; adapt's errors.
 *  - Every allocation failure of the add function and of adapt.
 */
#include <errno.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "helpers.h"
#include "train.h"

/* ---- helpers -------------------------------------------------------------------- */

static tl_layer *layer_at(const tl_model *m, size_t i)
{
    tl_layer *l = NULL;
    ck_assert_tl_ok(tl_model_layer(&l, m, i));
    return l;
}

static void assert_floats(const float *got, const double *want, size_t n, double tol, const char *what)
{
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(fabs((double)got[i] - want[i]) <= tol, "%s[%zu] = %.9g, expected %.9g", what, i,
                      (double)got[i], want[i]);
}

static bool same_floats(const float *a, const float *b, size_t n)
{
    return memcmp(a, b, n * sizeof *a) == 0;
}

/* The layer's mean (p = 0) or std (p = 1). */
static void get_stat(float *out, const tl_layer *l, size_t p)
{
    ck_assert_tl_ok(tl_layer_get_weights(out, tl_layer_param_count(l) / 2, l, p));
}

static char *dir;

static char *join(const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static void setup(void)
{
    const char *base = getenv("TMPDIR");
    size_t n = strlen(base && *base ? base : "/tmp") + 32;
    dir = malloc(n);
    snprintf(dir, n, "%s/tl-norm-XXXXXX", base && *base ? base : "/tmp");
    ck_assert_msg(mkdtemp(dir) != NULL, "mkdtemp: %s", strerror(errno));
}

static const char *const temp_files[] = {"norm.tlm", "norm.keras.safetensors", "norm.torch.safetensors",
                                         "bad.safetensors"};

static void teardown(void)
{
    for (size_t i = 0; i < sizeof temp_files / sizeof temp_files[0]; i++) {
        char *p = join(temp_files[i]);
        unlink(p);
        free(p);
    }
    rmdir(dir);
    free(dir);
}

/* The seed CNN's layers after whatever the model holds:
 * conv2d(4, 3x3, same, relu) -> maxpool -> flatten -> dense(classes, softmax). */
#define SIDE 8
#define CH 3
#define EX (SIDE * SIDE * CH)
#define CLASSES 4

static void add_cnn(tl_model *m)
{
    tl_conv2d_options c = TL_CONV2D_OPTIONS_INIT;
    c.filters = 4;
    c.padding = TL_PAD_SAME;
    c.activation = TL_ACT_RELU;
    ck_assert_tl_ok(tl_model_add_conv2d(NULL, m, &c));
    tl_maxpool2d_options p = TL_MAXPOOL2D_OPTIONS_INIT;
    ck_assert_tl_ok(tl_model_add_maxpool2d(NULL, m, &p));
    ck_assert_tl_ok(tl_model_add_flatten(NULL, m, NULL));
    tl_dense_options d = TL_DENSE_OPTIONS_INIT;
    d.units = CLASSES;
    d.activation = TL_ACT_SOFTMAX;
    ck_assert_tl_ok(tl_model_add_dense(NULL, m, &d));
}

static const float net_mean[CH] = {0.25f, -0.5f, 1.75f}, net_std[CH] = {0.5f, 2.0f, 0.125f};

/* normalization(net_mean, net_std, `scale`) -> the CNN on SIDE x SIDE x CH. */
static tl_model *norm_net(uint64_t seed, float scale)
{
    tl_model *m;
    ck_assert_tl_ok(tl_model_create(&m, SIDE, SIDE, CH, seed));
    ck_assert_tl_ok(tl_model_set_threads(m, 1));
    tl_normalization_options o = TL_NORMALIZATION_OPTIONS_INIT;
    o.channels = CH;
    o.mean = net_mean;
    o.std = net_std;
    o.scale = scale;
    o.name = "norm";
    ck_assert_tl_ok(tl_model_add_normalization(NULL, m, &o));
    add_cnn(m);
    return m;
}

/* Pixel-like images: uniform in [lo, hi). */
static float *raw_images(size_t n, float lo, float hi, uint64_t seed)
{
    float *x = malloc(n * EX * sizeof *x);
    th_fill_uniform(x, n * EX, lo, hi, seed);
    return x;
}

static float *predict(tl_model *m, const float *x, size_t n)
{
    float *p = malloc(n * CLASSES * sizeof *p);
    ck_assert_tl_ok(tl_model_predict(p, n * CLASSES, m, x, n, 0));
    return p;
}

static bool same_predictions(tl_model *a, tl_model *b, const float *x, size_t n)
{
    float *pa = predict(a, x, n), *pb = predict(b, x, n);
    bool same = same_floats(pa, pb, n * CLASSES);
    free(pa);
    free(pb);
    return same;
}

static void assert_stats(const tl_layer *l, const float *mean, const float *std, size_t c, const char *what)
{
    float got[16];
    ck_assert(c <= 16);
    get_stat(got, l, 0);
    ck_assert_msg(same_floats(got, mean, c), "%s: mean differs (%g ...)", what, (double)got[0]);
    get_stat(got, l, 1);
    ck_assert_msg(same_floats(got, std, c), "%s: std differs (%g ...)", what, (double)got[0]);
}

/* ---- 1. forward ----------------------------------------------------------------- */

/* Two examples of 1 x 2 x 2 (h, w, c), NHWC, scale 0.5, offset 1,
 * mean (1, -2), std (2, 0.25):
 *   x:              (4, -6) (0, 2)        (10, 8) (-2, -1)
 *   x * 0.5 + 1:    (3, -2) (1, 2)        (6, 5)  (0, 0.5)
 *   - mean:         (2, 0)  (0, 4)        (5, 7)  (-1, 2.5)
 *   / std:          (1, 0)  (0, 16)       (2.5, 28) (-0.5, 10) */
START_TEST(forward_by_hand)
{
    const float x[8] = {4, -6, 0, 2, 10, 8, -2, -1};
    const float mean[2] = {1, -2}, std[2] = {2, 0.25f};
    const double want[8] = {1, 0, 0, 16, 2.5, 28, -0.5, 10};
    tl_model *m;
    ck_assert_tl_ok(tl_model_create(&m, 1, 2, 2, 1));
    tl_normalization_options o = TL_NORMALIZATION_OPTIONS_INIT;
    o.channels = 2;
    o.mean = mean;
    o.std = std;
    o.scale = 0.5f;
    o.offset = 1.0f;
    tl_layer *l;
    ck_assert_tl_ok(tl_model_add_normalization(&l, m, &o));
    ck_assert_str_eq(tl_layer_name(l), "normalization");
    float y[8];
    ck_assert_tl_ok(tl_model_predict(y, 8, m, x, 2, 0));
    assert_floats(y, want, 8, 0, "y");
    /* A training pass computes the same and changes nothing. */
    ck_assert_tl_ok(tli_workspace_ensure(m, 2, true));
    tli_exec ex = tli_exec_for(m, 2, true);
    const float *yt = tli_forward(m, &ex, x, false);
    assert_floats(yt, want, 8, 0, "training y");
    assert_stats(l, mean, std, 2, "after forward");
    tl_model_free(m);

    /* A flat input (after flatten) of 4 units: each unit has its own
     * statistics. Defaults (mean 0, std 1, scale 1, offset 0) are the
     * identity. */
    ck_assert_tl_ok(tl_model_create(&m, 1, 2, 2, 1));
    ck_assert_tl_ok(tl_model_add_flatten(NULL, m, NULL));
    o = (tl_normalization_options)TL_NORMALIZATION_OPTIONS_INIT;
    ck_assert_tl_ok(tl_model_add_normalization(&l, m, &o));
    ck_assert_tl_ok(tl_model_predict(y, 8, m, x, 2, 0));
    ck_assert(same_floats(y, x, 8));
    const float m4[4] = {4, 0, 2, 1}, s4[4] = {2, 3, 4, 0.5f};
    ck_assert_tl_ok(tl_layer_set_weights(l, 0, m4, 4));
    ck_assert_tl_ok(tl_layer_set_weights(l, 1, s4, 4));
    ck_assert_tl_ok(tl_model_predict(y, 8, m, x, 2, 0));
    const double want4[8] = {0, -2, -0.5, 2, 3, 8.0 / 3, -1, -4};
    assert_floats(y, want4, 8, 1e-6, "flat y");
    tl_model_free(m);
}
END_TEST

/* The kernels against a naive loop in double-free float arithmetic, for
 * channel counts below, at and above the pattern period, sizes that take
 * the threaded path and leave a ragged tail; 1, 2 and 3 threads give the
 * same bits; in place too. */
START_TEST(kernels_match_a_naive_loop)
{
    const size_t cs[] = {1, 3, 7, 256, 300};
    for (size_t ci = 0; ci < sizeof cs / sizeof cs[0]; ci++) {
        const size_t c = cs[ci], period = tli_normalize_period(c);
        ck_assert(period % c == 0 && period >= 256 && period < 256 + c);
        const size_t n = c * (70000 / c + 5); /* > 65536: threads; not a whole number of periods */
        float *x = malloc(n * sizeof *x), *y1 = malloc(n * sizeof *y1), *y2 = malloc(n * sizeof *y2);
        float *mean = malloc(c * sizeof *mean), *std = malloc(c * sizeof *std);
        float *pat = malloc(2 * period * sizeof *pat);
        th_fill_uniform(x, n, -300.0f, 300.0f, 1 + ci);
        th_fill_uniform(mean, c, -2.0f, 2.0f, 2);
        th_fill_uniform(std, c, 0.1f, 3.0f, 3);
        for (int plain = 0; plain < 2; plain++) {
            const float scale = plain ? 1.0f : 1.0f / 255.0f, offset = plain ? 0.0f : -0.5f;
            tli_normalize_forward(1, x, y1, n, c, scale, offset, mean, std, pat);
            for (size_t i = 0; i < n; i++) {
                const size_t k = i % c;
                float want = plain ? (x[i] - mean[k]) / std[k] : (x[i] * scale + offset - mean[k]) / std[k];
                ck_assert_msg(y1[i] == want, "c %zu: y[%zu] = %.9g, expected %.9g", c, i, (double)y1[i],
                              (double)want);
            }
            for (uint32_t t = 2; t <= 3; t++) {
                tli_normalize_forward(t, x, y2, n, c, scale, offset, mean, std, pat);
                ck_assert_msg(same_floats(y1, y2, n), "c %zu: %u threads differ", c, t);
            }
            memcpy(y2, x, n * sizeof *y2);
            tli_normalize_forward(2, y2, y2, n, c, scale, offset, mean, std, pat);
            ck_assert_msg(same_floats(y1, y2, n), "c %zu: in place differs", c);
            /* Backward: dx = dy * (scale / std). */
            tli_normalize_backward(1, x, y1, n, c, scale, std, pat);
            for (size_t i = 0; i < n; i++) {
                const size_t k = i % c;
                ck_assert(y1[i] == x[i] * (scale / std[k]));
            }
            tli_normalize_backward(2, x, y2, n, c, scale, std, pat);
            ck_assert(same_floats(y1, y2, n));
        }
        free(x), free(y1), free(y2), free(mean), free(std), free(pat);
    }
}
END_TEST

/* ---- 2. gradients --------------------------------------------------------------- */

typedef struct grad_case {
    const char *what;
    uint32_t h, w, c; /* h = 0: a flat input of c units */
    float scale, offset;
    uint32_t threads;
} grad_case;

static const grad_case grad_cases[] = {
    {"2x3x4", 2, 3, 4, 1.0f, 0.0f, 1},
    {"2x3x4, scale 0.25, offset -1, 2 threads", 2, 3, 4, 0.25f, -1.0f, 2},
    {"flat 5, scale -3", 0, 0, 5, -3.0f, 0.5f, 1},
    {"3x2x1", 3, 2, 1, 2.0f, 0.0f, 1},
};
#define GBATCH 3

typedef struct grad_ctx {
    tl_layer *l;
    tli_exec ex;
    float *x;
    const float *r;
} grad_ctx;

/* L = sum(r * y). */
static double objective(void *p)
{
    grad_ctx *c = p;
    const float *xs[1] = {c->x};
    c->l->ops->forward(c->l, &c->ex, xs, c->l->out, TL_ACT_LINEAR);
    double s = 0.0;
    for (size_t i = 0; i < GBATCH * c->l->out_size; i++)
        s += (double)c->r[i] * c->l->out[i];
    return s;
}

START_TEST(input_gradient_matches_central_differences)
{
    const grad_case *gc = &grad_cases[_i];
    tl_model *m;
    tl_normalization_options o = TL_NORMALIZATION_OPTIONS_INIT;
    o.scale = gc->scale;
    o.offset = gc->offset;
    if (gc->h) {
        ck_assert_tl_ok(tl_model_create(&m, gc->h, gc->w, gc->c, 1));
    } else {
        ck_assert_tl_ok(tl_model_create(&m, 1, 1, gc->c, 1));
        ck_assert_tl_ok(tl_model_add_flatten(NULL, m, NULL));
    }
    ck_assert_tl_ok(tl_model_set_threads(m, gc->threads));
    ck_assert_tl_ok(tl_model_add_normalization(NULL, m, &o));
    tl_layer *l = m->layers[m->nlayers - 1];
    th_fill_uniform(l->params[0].value, gc->c, -0.5f, 0.5f, 3);
    th_fill_uniform(l->params[1].value, gc->c, 0.5f, 2.0f, 4);
    ck_assert(l->params[0].grad == NULL && l->params[1].grad == NULL);
    ck_assert(!tli_layer_learns(l));
    ck_assert_tl_ok(tli_workspace_ensure(m, GBATCH, true));
    const size_t n = GBATCH * l->in_size;
    float *x = malloc(n * sizeof *x), *r = malloc(n * sizeof *r), *dy = malloc(n * sizeof *dy);
    float *dx = malloc(n * sizeof *dx);
    double *num = malloc(n * sizeof *num);
    th_fill_uniform(x, n, -1.0f, 1.0f, 7 + (uint64_t)_i);
    th_fill_uniform(r, n, -1.0f, 1.0f, 5);
    grad_ctx c = {l, tli_exec_for(m, GBATCH, true), x, r};
    objective(&c);
    memcpy(dy, r, n * sizeof *dy);
    const float *xs[1] = {x};
    float *dxs[1] = {dx};
    l->ops->backward(l, &c.ex, xs, l->out, dy, dxs, TL_ACT_LINEAR, false);
    c.ex.threads = 1;
    for (size_t j = 0; j < n; j++)
        num[j] = th_central(&x[j], objective, &c);
    th_check_grad(dx, num, n, gc->what);
    /* No input gradient wanted: nothing written. */
    for (size_t j = 0; j < n; j++)
        dx[j] = NAN;
    float *none[1] = {NULL};
    l->ops->backward(l, &c.ex, xs, l->out, dy, none, TL_ACT_LINEAR, false);
    free(x), free(r), free(dy), free(dx), free(num);
    tl_model_free(m);
}
END_TEST

/* Through the engine: conv2d(3, tanh) -> normalization (scale 2, offset
 * -0.5, statistics away from 0 and 1) -> flatten -> dense(3, softmax) on
 * 3x3x2, sparse cross-entropy: every parameter against central
 * differences of the batch's mean loss; the statistics get no gradient. */
typedef struct net_ctx {
    tl_model *m;
    const float *x;
    const int32_t *labels;
} net_ctx;

static double net_objective(void *p)
{
    net_ctx *c = p;
    tli_exec ex = tli_exec_for(c->m, GBATCH, true);
    ex.threads = 1;
    const float *y = tli_forward(c->m, &ex, c->x, true);
    tli_loss_result r;
    size_t bad;
    ck_assert(tli_softmax_xent(y, GBATCH, 3, c->labels, NULL, NULL, &r, &bad));
    return r.loss_sum / GBATCH;
}

START_TEST(model_gradients_through_the_engine)
{
    tl_model *m;
    ck_assert_tl_ok(tl_model_create(&m, 3, 3, 2, 21));
    tl_conv2d_options c = TL_CONV2D_OPTIONS_INIT;
    c.filters = 3;
    c.padding = TL_PAD_SAME;
    c.activation = TL_ACT_TANH;
    ck_assert_tl_ok(tl_model_add_conv2d(NULL, m, &c));
    const float mean[3] = {0.1f, -0.2f, 0.3f}, std[3] = {0.5f, 1.5f, 0.8f};
    tl_normalization_options o = TL_NORMALIZATION_OPTIONS_INIT;
    o.channels = 3;
    o.mean = mean;
    o.std = std;
    o.scale = 2.0f;
    o.offset = -0.5f;
    tl_layer *nl;
    ck_assert_tl_ok(tl_model_add_normalization(&nl, m, &o));
    ck_assert_tl_ok(tl_model_add_flatten(NULL, m, NULL));
    tl_dense_options d = TL_DENSE_OPTIONS_INIT;
    d.units = 3;
    d.activation = TL_ACT_SOFTMAX;
    ck_assert_tl_ok(tl_model_add_dense(NULL, m, &d));
    tl_optimizer *sgd;
    ck_assert_tl_ok(tl_optimizer_create_sgd(&sgd, NULL));
    ck_assert_tl_ok(tl_model_compile(m, sgd, TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY));
    ck_assert_tl_ok(tli_workspace_ensure(m, GBATCH, true));
    float x[GBATCH * 3 * 3 * 2];
    th_fill_uniform(x, sizeof x / sizeof x[0], -1.0f, 1.0f, 5);
    const int32_t labels[GBATCH] = {2, 0, 1};
    net_ctx nc = {m, x, labels};
    tli_exec ex = tli_exec_for(m, GBATCH, true);
    const float *y = tli_forward(m, &ex, x, true);
    tli_loss_result r;
    size_t bad;
    ck_assert(tli_softmax_xent(y, GBATCH, 3, labels, NULL, tli_output_grad(m), &r, &bad));
    tli_backward(m, &ex, x, true);
    size_t checked = 0;
    for (size_t i = 0; i < m->nlayers; i++) {
        tl_layer *l = m->layers[i];
        for (size_t p = 0; p < l->nparams; p++) {
            tli_param *pr = &l->params[p];
            if (pr->role != TLI_ROLE_PARAM) {
                ck_assert_ptr_null(pr->grad);
                continue;
            }
            float *a = malloc(pr->count * sizeof *a);
            double *num = malloc(pr->count * sizeof *num);
            memcpy(a, pr->grad, pr->count * sizeof *a);
            for (size_t j = 0; j < pr->count; j++)
                num[j] = th_central(&pr->value[j], net_objective, &nc);
            char what[96];
            snprintf(what, sizeof what, "layer '%s' %s", l->name, pr->name);
            th_check_grad(a, num, pr->count, what);
            checked++;
            free(a);
            free(num);
        }
    }
    ck_assert_uint_eq(checked, 4); /* conv kernel, bias; dense kernel, bias */
    assert_stats(nl, mean, std, 3, "after backward");
    tl_model_free(m);
}
END_TEST

/* ---- 3. adapt ------------------------------------------------------------------- */

START_TEST(adapt_equals_channel_stats)
{
    const size_t n = 40;
    float *x = raw_images(n, 0.0f, 255.0f, 11);
    /* Channel 1 leans on its own range, so that the channels differ. */
    for (size_t i = 1; i < n * EX; i += CH)
        x[i] = x[i] * 0.25f + 30.0f;
    int32_t *labels = calloc(n, sizeof *labels);
    tl_dataset *ds;
    ck_assert_tl_ok(tl_dataset_create(&ds, x, labels, n, SIDE, SIDE, CH, CLASSES, TL_DATA_COPY));
    float mean[CH], std[CH];
    ck_assert_tl_ok(tl_dataset_channel_stats(mean, std, CH, ds));

    /* Scale 1, offset 0: tl_dataset_channel_stats' values, bit for bit. */
    tl_model *m;
    ck_assert_tl_ok(tl_model_create(&m, SIDE, SIDE, CH, 1));
    tl_normalization_options o = TL_NORMALIZATION_OPTIONS_INIT;
    tl_layer *l;
    ck_assert_tl_ok(tl_model_add_normalization(&l, m, &o));
    uint32_t constant = 99;
    ck_assert_tl_ok(tl_layer_normalization_adapt(l, ds, &constant));
    ck_assert_uint_eq(constant, 0);
    assert_stats(l, mean, std, CH, "adapt at scale 1");
    tl_model_free(m);

    /* Scale 1/255, offset -0.5: the statistics of x * scale + offset, as
     * tl_dataset_channel_stats gives them for the rescaled data, to float
     * rounding (the layer scales the double moments; the rescaled data
     * were rounded to float value by value). */
    const float scale = 1.0f / 255.0f, offset = -0.5f;
    float *xs = malloc(n * EX * sizeof *xs);
    for (size_t i = 0; i < n * EX; i++)
        xs[i] = x[i] * scale + offset;
    tl_dataset *dss;
    ck_assert_tl_ok(tl_dataset_create(&dss, xs, labels, n, SIDE, SIDE, CH, CLASSES, TL_DATA_COPY));
    float smean[CH], sstd[CH];
    ck_assert_tl_ok(tl_dataset_channel_stats(smean, sstd, CH, dss));
    ck_assert_tl_ok(tl_model_create(&m, SIDE, SIDE, CH, 1));
    o.scale = scale;
    o.offset = offset;
    ck_assert_tl_ok(tl_model_add_normalization(&l, m, &o));
    ck_assert_tl_ok(tl_layer_normalization_adapt(l, ds, NULL));
    float got[CH];
    get_stat(got, l, 0);
    for (int k = 0; k < CH; k++)
        ck_assert_msg(fabs(got[k] - smean[k]) <= 1e-6 * fabs(smean[k]) + 1e-7, "mean[%d] %.9g vs %.9g", k,
                      (double)got[k], (double)smean[k]);
    get_stat(got, l, 1);
    for (int k = 0; k < CH; k++)
        ck_assert_msg(fabs(got[k] - sstd[k]) <= 1e-5 * sstd[k], "std[%d] %.9g vs %.9g", k, (double)got[k],
                      (double)sstd[k]);
    /* Adapted, the layer maps the data to mean 0 and std 1 per channel. */
    float *y = malloc(n * EX * sizeof *y);
    ck_assert_tl_ok(tli_workspace_ensure(m, n, false));
    tli_exec ex = tli_exec_for(m, n, false);
    memcpy(y, tli_forward(m, &ex, x, false), n * EX * sizeof *y);
    tl_dataset *dy;
    ck_assert_tl_ok(tl_dataset_create(&dy, y, labels, n, SIDE, SIDE, CH, CLASSES, TL_DATA_COPY));
    float ym[CH], ysd[CH];
    ck_assert_tl_ok(tl_dataset_channel_stats(ym, ysd, CH, dy));
    for (int k = 0; k < CH; k++) {
        ck_assert_msg(fabs(ym[k]) < 1e-5, "normalized mean[%d] = %g", k, (double)ym[k]);
        ck_assert_msg(fabs(ysd[k] - 1.0f) < 1e-5, "normalized std[%d] = %g", k, (double)ysd[k]);
    }
    tl_model_free(m);

    /* A constant channel: std 1, counted; the other channels as usual. */
    for (size_t i = 2; i < n * EX; i += CH)
        x[i] = 0.1f;
    tl_dataset *dc;
    ck_assert_tl_ok(tl_dataset_create(&dc, x, labels, n, SIDE, SIDE, CH, CLASSES, TL_DATA_COPY));
    ck_assert_tl_ok(tl_model_create(&m, SIDE, SIDE, CH, 1));
    o = (tl_normalization_options)TL_NORMALIZATION_OPTIONS_INIT;
    ck_assert_tl_ok(tl_model_add_normalization(&l, m, &o));
    ck_assert_tl_ok(tl_layer_normalization_adapt(l, dc, &constant));
    ck_assert_uint_eq(constant, 1);
    get_stat(got, l, 1);
    ck_assert(got[0] == std[0] && got[1] == std[1] && got[2] == 1.0f);
    get_stat(got, l, 0);
    ck_assert(got[2] == 0.1f);

    /* Errors leave the layer as it was. */
    float before[2][CH];
    get_stat(before[0], l, 0);
    get_stat(before[1], l, 1);
    tl_dataset *d4;
    float *x4 = raw_images(2, 0, 1, 3);
    ck_assert_tl_ok(tl_dataset_create(&d4, x4, labels, 2, 4, 6, 4, CLASSES, TL_DATA_COPY));
    ck_assert_tl_err(tl_layer_normalization_adapt(l, d4, NULL), TL_ESHAPE, "normalizes 3 channels");
    ck_assert_tl_err(tl_layer_normalization_adapt(NULL, ds, NULL), TL_EINVAL, "layer is NULL");
    ck_assert_tl_err(tl_layer_normalization_adapt(l, NULL, NULL), TL_EINVAL, "dataset is NULL");
    /* Non-finite data. */
    x[0] = INFINITY;
    tl_dataset *dinf;
    ck_assert_tl_ok(tl_dataset_create(&dinf, x, labels, n, SIDE, SIDE, CH, CLASSES, TL_DATA_COPY));
    ck_assert_tl_err(tl_layer_normalization_adapt(l, dinf, NULL), TL_ERANGE, "channel 0");
    assert_stats(l, before[0], before[1], CH, "after the errors");
    /* Another kind of layer. */
    tl_dropout_options dro = TL_DROPOUT_OPTIONS_INIT;
    tl_layer *drop;
    ck_assert_tl_ok(tl_model_add_dropout(&drop, m, &dro));
    ck_assert_tl_err(tl_layer_normalization_adapt(drop, ds, NULL), TL_EINVAL, "is not a normalization layer");
    tl_model_free(m);
    tl_dataset_free(ds), tl_dataset_free(dss), tl_dataset_free(dy), tl_dataset_free(dc), tl_dataset_free(d4);
    tl_dataset_free(dinf);
    free(x), free(xs), free(y), free(x4), free(labels);
}
END_TEST

/* ---- 4. inside the model = preprocessing outside -------------------------------- */

/* Copy b's weights from a's (a has the normalization layer first). */
static void copy_cnn_weights(tl_model *b, const tl_model *a)
{
    ck_assert_uint_eq(tl_model_num_layers(a), tl_model_num_layers(b) + 1);
    for (size_t i = 0; i < tl_model_num_layers(b); i++) {
        tl_layer *la = layer_at(a, i + 1), *lb = layer_at(b, i);
        for (size_t p = 0; p < tl_layer_num_params(lb); p++) {
            tl_param_info pi;
            ck_assert_tl_ok(tl_layer_param_info(&pi, la, p));
            float *v = malloc(pi.count * sizeof *v);
            ck_assert_tl_ok(tl_layer_get_weights(v, pi.count, la, p));
            ck_assert_tl_ok(tl_layer_set_weights(lb, p, v, pi.count));
            free(v);
        }
    }
}

START_TEST(raw_pixels_predict_as_standardized_data)
{
    const size_t n = 50;
    int32_t *labels = calloc(n, sizeof *labels);
    for (int variant = 0; variant < 2; variant++) {
        /* 0: raw data in [-1, 3), scale 1. 1: 8-bit pixels, scale 1/255,
         * against data multiplied by (1/255)f and then standardized. */
        const float scale = variant ? 1.0f / 255.0f : 1.0f;
        float *x = variant ? raw_images(n, 0, 256, 5) : raw_images(n, -1, 3, 5);
        if (variant)
            for (size_t i = 0; i < n * EX; i++)
                x[i] = floorf(x[i]);
        tl_model *a = norm_net(3, scale);
        tl_model *b;
        ck_assert_tl_ok(tl_model_create(&b, SIDE, SIDE, CH, 4));
        ck_assert_tl_ok(tl_model_set_threads(b, 1));
        add_cnn(b);
        copy_cnn_weights(b, a);
        float *xs = malloc(n * EX * sizeof *xs);
        for (size_t i = 0; i < n * EX; i++)
            xs[i] = x[i] * scale;
        tl_dataset *ds, *std_ds;
        ck_assert_tl_ok(tl_dataset_create(&ds, xs, labels, n, SIDE, SIDE, CH, CLASSES, TL_DATA_COPY));
        ck_assert_tl_ok(tl_dataset_standardize(&std_ds, ds, net_mean, net_std, CH));
        float *pa = predict(a, x, n), *pb = predict(b, tl_dataset_images(std_ds), n);
        ck_assert_msg(same_floats(pa, pb, n * CLASSES), "variant %d: predictions differ (%.9g vs %.9g)", variant,
                      (double)pa[0], (double)pb[0]);
        /* With 2 threads too (the kernels' bits do not depend on them). */
        ck_assert_tl_ok(tl_model_set_threads(a, 2));
        float *pa2 = predict(a, x, n);
        ck_assert(same_floats(pa, pa2, n * CLASSES));
        /* The guide's way: the model trained on standardized data, rebuilt
         * with the layer in front, its weights moved over by name. */
        tl_model *r = norm_net(99, scale);
        tl_transfer_options to = TL_TRANSFER_OPTIONS_INIT;
        to.match = TL_MATCH_NAME;
        ck_assert_tl_ok(tl_model_transfer_params(NULL, r, b, &to));
        float *pr = predict(r, x, n);
        ck_assert_msg(same_floats(pr, pb, n * CLASSES), "variant %d: the rebuilt model differs", variant);
        tl_model_free(r);
        free(pr);
        free(pa), free(pb), free(pa2), free(x), free(xs);
        tl_dataset_free(ds), tl_dataset_free(std_ds);
        tl_model_free(a), tl_model_free(b);
    }
    free(labels);
}
END_TEST

/* ---- 5. settings, summary, names ------------------------------------------------ */

START_TEST(settings_and_names)
{
    ck_assert_int_eq(TL_LAYER_NORMALIZATION, 12);
    ck_assert_str_eq(tl_layer_kind_str(TL_LAYER_NORMALIZATION), "normalization");
    tl_normalization_options o;
    ck_assert_tl_ok(tl_normalization_options_init(&o, TL_NORMALIZATION_OPTIONS_VERSION));
    ck_assert(o.version == 1 && o.channels == 0 && o.mean == NULL && o.std == NULL && o.scale == 1.0f &&
              o.offset == 0.0f && o.name == NULL && o.input == NULL);
    ck_assert_int_eq(tl_normalization_options_init(&o, 2), TL_EVERSION);
    ck_assert_int_eq(tl_normalization_options_init(NULL, 1), TL_EINVAL);
    tl_model *m = norm_net(1, 1.0f / 255.0f);
    tl_layer *l = layer_at(m, 0);
    ck_assert_int_eq(tl_layer_get_kind(l), TL_LAYER_NORMALIZATION);
    ck_assert_uint_eq(tl_layer_num_params(l), 2);
    const char *names[2] = {"mean", "std"};
    for (size_t p = 0; p < 2; p++) {
        tl_param_info pi;
        ck_assert_tl_ok(tl_layer_param_info(&pi, l, p));
        ck_assert_str_eq(pi.name, names[p]);
        ck_assert(pi.shape.rank == 1 && pi.shape.dims[0] == CH && pi.count == CH);
        ck_assert_str_eq(l->params[p].torch_name, names[p]);
        ck_assert(l->params[p].role == TLI_ROLE_STATE && l->params[p].preset);
        ck_assert_ptr_null(l->params[p].grad);
    }
    assert_stats(l, net_mean, net_std, CH, "from the options");
    tl_shape s;
    ck_assert_tl_ok(tl_layer_output_shape(&s, l));
    ck_assert(s.rank == 3 && s.dims[0] == SIDE && s.dims[1] == SIDE && s.dims[2] == CH);
    /* Counted as non-trainable parameters. */
    const size_t cnn = (3 * 3 * CH * 4 + 4) + (4 * 4 * 4 * CLASSES + CLASSES);
    ck_assert_uint_eq(tl_model_param_count(m), cnn + 2 * CH);
    ck_assert_uint_eq(tl_model_trainable_param_count(m), cnn);
    char buf[4096];
    ck_assert_tl_ok(tl_model_summary(buf, sizeof buf, NULL, m));
    ck_assert_msg(strstr(buf, "norm (normalization)") != NULL, "%s", buf);
    ck_assert_msg(strstr(buf, "Non-trainable params: 6") != NULL, "%s", buf);
    /* Settings text: scale, offset, channels. */
    char set[256];
    tli_cfg_describe(l, set, sizeof set, false);
    /* (the float's digits: at least the 7 that tell it apart) */
    ck_assert_msg(strncmp(set, "scale=0.0039215", 15) == 0 && strstr(set, ", offset=0, channels=3") != NULL, "%s",
                  set);
    /* A second one gets the next automatic name; channels 0 with no
     * statistics takes the input's. */
    o = (tl_normalization_options)TL_NORMALIZATION_OPTIONS_INIT;
    tl_layer *l2;
    tl_model *m2;
    ck_assert_tl_ok(tl_model_create(&m2, 2, 2, 5, 1));
    ck_assert_tl_ok(tl_model_add_normalization(NULL, m2, &o));
    ck_assert_tl_ok(tl_model_add_normalization(&l2, m2, &o));
    ck_assert_str_eq(tl_layer_name(l2), "normalization_1");
    ck_assert_uint_eq(tl_layer_param_count(l2), 10);
    tl_model_free(m2);
    tl_model_free(m);
}
END_TEST

/* ---- 6. files ------------------------------------------------------------------- */

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    ck_assert_uint_eq(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    b[n] = '\0';
    *len = (size_t)n;
    return b;
}

static bool contains(const char *buf, size_t len, const char *needle)
{
    const size_t k = strlen(needle);
    for (size_t i = 0; i + k <= len; i++)
        if (memcmp(buf + i, needle, k) == 0)
            return true;
    return false;
}

START_TEST(checkpoint_round_trip)
{
    tl_model *m = norm_net(7, 1.0f / 255.0f);
    float *x = raw_images(20, 0, 255, 9);
    char *path = join("norm.tlm");
    ck_assert_tl_ok(tl_model_save(m, path, NULL));
    tl_model *l;
    ck_assert_tl_ok(tl_model_load(&l, path));
    ck_assert(same_predictions(m, l, x, 20));
    assert_stats(layer_at(l, 0), net_mean, net_std, CH, "loaded");
    ck_assert_str_eq(tl_layer_name(layer_at(l, 0)), "norm");
    /* The file's description. */
    tl_checkpoint_info *info;
    ck_assert_tl_ok(tl_checkpoint_info_read(&info, path));
    uint32_t major, minor;
    ck_assert_tl_ok(tl_checkpoint_info_format_version(&major, &minor, info));
    ck_assert(major == 1 && minor == 1);
    ck_assert_int_eq(tl_checkpoint_info_layer_kind(info, 0), TL_LAYER_NORMALIZATION);
    char set[256];
    ck_assert_tl_ok(tl_checkpoint_info_layer_settings(set, sizeof set, NULL, info, 0));
    /* (the float's digits: at least the 7 that tell it apart) */
    ck_assert_msg(strncmp(set, "scale=0.0039215", 15) == 0 && strstr(set, ", offset=0, channels=3") != NULL, "%s",
                  set);
    ck_assert_uint_eq(tl_checkpoint_info_layer_num_params(info, 0), 2);
    tl_param_info pi;
    ck_assert_tl_ok(tl_checkpoint_info_layer_param(&pi, info, 0, 1));
    ck_assert_str_eq(pi.name, "std");
    tl_checkpoint_info_free(info);
    /* Parameters only, into a model with default statistics. */
    tl_model *d;
    ck_assert_tl_ok(tl_model_create(&d, SIDE, SIDE, CH, 99));
    tl_normalization_options o = TL_NORMALIZATION_OPTIONS_INIT;
    o.name = "norm";
    o.scale = 1.0f / 255.0f;
    ck_assert_tl_ok(tl_model_add_normalization(NULL, d, &o));
    add_cnn(d);
    tl_transfer_report *rep;
    ck_assert_tl_ok(tl_model_load_params(&rep, d, path, NULL));
    tl_transfer_report_free(rep);
    assert_stats(layer_at(d, 0), net_mean, net_std, CH, "load_params");
    ck_assert(same_predictions(m, d, x, 20));
    tl_model_free(d);
    tl_model_free(l);
    tl_model_free(m);
    free(path);
    free(x);
}
END_TEST

START_TEST(safetensors_round_trip)
{
    const tl_tensor_layout layouts[2] = {TL_LAYOUT_KERAS, TL_LAYOUT_PYTORCH};
    const char *files[2] = {"norm.keras.safetensors", "norm.torch.safetensors"};
    tl_model *m = norm_net(7, 1.0f / 255.0f);
    float *x = raw_images(20, 0, 255, 9);
    for (int i = 0; i < 2; i++) {
        char *path = join(files[i]);
        ck_assert_tl_ok(tl_model_save_safetensors(m, path, layouts[i], NULL));
        size_t len;
        char *bytes = read_all(path, &len);
        ck_assert_msg(contains(bytes, len, "\"norm.mean\"") && contains(bytes, len, "\"norm.std\""),
                      "%s: tensor names", files[i]);
        ck_assert_msg(contains(bytes, len, "normalization") && contains(bytes, len, "scale"),
                      "%s: architecture", files[i]);
        free(bytes);
        /* Into a model built the same way with default statistics. */
        tl_model *d;
        ck_assert_tl_ok(tl_model_create(&d, SIDE, SIDE, CH, 99));
        tl_normalization_options o = TL_NORMALIZATION_OPTIONS_INIT;
        o.name = "norm";
        o.scale = 1.0f / 255.0f;
        ck_assert_tl_ok(tl_model_add_normalization(NULL, d, &o));
        add_cnn(d);
        tl_transfer_report *rep = NULL;
        ck_assert_tl_ok(tl_model_load_safetensors(&rep, d, path, layouts[i], NULL));
        tl_transfer_report_free(rep);
        assert_stats(layer_at(d, 0), net_mean, net_std, CH, files[i]);
        ck_assert(same_predictions(m, d, x, 20));
        /* The whole model from the file alone. */
        tl_model *c;
        ck_assert_tl_ok(tl_model_create_from_safetensors(&c, path, NULL));
        ck_assert_tl_ok(tl_model_set_threads(c, 1));
        ck_assert_int_eq(tl_layer_get_kind(layer_at(c, 0)), TL_LAYER_NORMALIZATION);
        assert_stats(layer_at(c, 0), net_mean, net_std, CH, "created from the file");
        ck_assert(same_predictions(m, c, x, 20));
        tl_model_free(c);
        tl_model_free(d);
        free(path);
    }
    tl_model_free(m);
    free(x);
}
END_TEST

/* A file whose std has a 0 loads (a file is not checked value by value),
 * but the model refuses to run or be saved, naming the layer, the channel
 * and the value. */
START_TEST(bad_statistics_from_a_file)
{
    const float std[CH] = {3.25f, 5.5f, 6.75f};
    tl_model *m;
    ck_assert_tl_ok(tl_model_create(&m, SIDE, SIDE, CH, 1));
    tl_normalization_options o = TL_NORMALIZATION_OPTIONS_INIT;
    o.channels = CH;
    o.std = std;
    o.name = "pre";
    ck_assert_tl_ok(tl_model_add_normalization(NULL, m, &o));
    add_cnn(m);
    char *path = join("bad.safetensors");
    ck_assert_tl_ok(tl_model_save_safetensors(m, path, TL_LAYOUT_KERAS, NULL));
    size_t len;
    char *bytes = read_all(path, &len);
    const float five = 5.5f, zero = 0.0f;
    size_t hits = 0;
    for (size_t i = 0; i + 4 <= len; i++)
        if (memcmp(bytes + i, &five, 4) == 0) {
            memcpy(bytes + i, &zero, 4);
            hits++;
        }
    ck_assert_uint_eq(hits, 1);
    FILE *f = fopen(path, "wb");
    ck_assert_uint_eq(fwrite(bytes, 1, len, f), len);
    fclose(f);
    free(bytes);
    tl_model *d;
    ck_assert_tl_ok(tl_model_copy(&d, m));
    ck_assert_tl_ok(tl_model_load_safetensors(NULL, d, path, TL_LAYOUT_KERAS, NULL));
    float *x = raw_images(2, 0, 1, 1), y[2 * CLASSES];
    ck_assert_tl_err(tl_model_predict(y, 2 * CLASSES, d, x, 2, 0), TL_EINVAL, "layer 'pre' (normalization, index 0)");
    ck_assert_msg(strstr(tl_last_error(), "std[1] = 0 must be finite and > 0") != NULL, "%s", tl_last_error());
    char *out = join("norm.tlm");
    ck_assert_tl_err(tl_model_save(d, out, NULL), TL_EINVAL, "std[1] = 0");
    /* Set right again, it runs. */
    ck_assert_tl_ok(tl_layer_set_weights(layer_at(d, 0), 1, std, CH));
    ck_assert_tl_ok(tl_model_predict(y, 2 * CLASSES, d, x, 2, 0));
    /* tl_model_create_from_safetensors gives a model that refuses to run. */
    tl_model *c = NULL;
    tl_status st = tl_model_create_from_safetensors(&c, path, NULL);
    if (st == TL_OK) {
        ck_assert_tl_err(tl_model_predict(y, 2 * CLASSES, c, x, 2, 0), TL_EINVAL, "std[1] = 0");
        tl_model_free(c);
    } else {
        ck_assert_msg(st == TL_EINVAL && strstr(tl_last_error(), "std[1] = 0"), "%s", tl_last_error());
    }
    free(x);
    free(out);
    free(path);
    tl_model_free(d);
    tl_model_free(m);
}
END_TEST

/* ---- 7. training ------------------------------------------------------------------ */

START_TEST(training_leaves_the_statistics)
{
    /* The spot task in 8-bit pixels, the normalization adapted to it. */
    const size_t n = 600;
    tl_dataset *raw = th_spot_dataset(n, SIDE, SIDE, CH, 1.0f, 0.5f, 1);
    float *x = malloc(n * EX * sizeof *x);
    memcpy(x, tl_dataset_images(raw), n * EX * sizeof *x);
    for (size_t i = 0; i < n * EX; i++)
        x[i] = floorf(x[i] * 170.0f);
    tl_dataset *ds;
    ck_assert_tl_ok(tl_dataset_create(&ds, x, tl_dataset_labels(raw), n, SIDE, SIDE, CH, CLASSES, TL_DATA_COPY));
    tl_model *m = norm_net(5, 1.0f / 255.0f);
    tl_layer *l = layer_at(m, 0);
    ck_assert_tl_ok(tl_layer_normalization_adapt(l, ds, NULL));
    float mean[CH], std[CH];
    get_stat(mean, l, 0);
    get_stat(std, l, 1);
    tl_optimizer *adam;
    tl_adam_options ao = TL_ADAM_OPTIONS_INIT;
    ao.learning_rate = 3e-3f;
    ao.weight_decay = 0.1f; /* would move anything the optimizer touched */
    ck_assert_tl_ok(tl_optimizer_create_adam(&adam, &ao));
    ck_assert_tl_ok(tl_model_compile(m, adam, TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY));
    double loss0, acc0, loss, acc;
    ck_assert_tl_ok(tl_model_evaluate(&loss0, &acc0, m, ds, 0));
    tl_fit_options fo = TL_FIT_OPTIONS_INIT;
    fo.epochs = 4;
    fo.batch_size = 32;
    ck_assert_tl_ok(tl_model_fit(m, ds, &fo));
    ck_assert_tl_ok(tl_model_evaluate(&loss, &acc, m, ds, 0));
    ck_assert_msg(loss < loss0, "loss %g, before %g", loss, loss0);
    assert_stats(l, mean, std, CH, "after fit");
    ck_assert(l->params[0].state[0] == NULL && l->params[1].state[0] == NULL);
    ck_assert(l->params[0].state[1] == NULL && l->params[1].state[1] == NULL);
    /* Unfrozen or frozen makes no difference. */
    ck_assert_tl_ok(tl_layer_set_trainable(l, 0));
    ck_assert_tl_ok(tl_model_fit(m, ds, &fo));
    assert_stats(l, mean, std, CH, "after fit, frozen");
    tl_model_free(m);

    /* In the middle of a model: conv2d -> normalization -> ...; the
     * convolution below still learns through it. */
    ck_assert_tl_ok(tl_model_create(&m, SIDE, SIDE, CH, 3));
    ck_assert_tl_ok(tl_model_set_threads(m, 2));
    tl_conv2d_options c = TL_CONV2D_OPTIONS_INIT;
    c.filters = 4;
    c.padding = TL_PAD_SAME;
    tl_layer *conv;
    ck_assert_tl_ok(tl_model_add_conv2d(&conv, m, &c));
    const float m4[4] = {0.1f, 0.2f, -0.3f, 0.0f}, s4[4] = {2.0f, 0.5f, 1.0f, 3.0f};
    tl_normalization_options o = TL_NORMALIZATION_OPTIONS_INIT;
    o.channels = 4;
    o.mean = m4;
    o.std = s4;
    ck_assert_tl_ok(tl_model_add_normalization(&l, m, &o));
    add_cnn(m);
    float k0[3 * 3 * CH * 4];
    ck_assert_tl_ok(tl_layer_get_weights(k0, sizeof k0 / sizeof k0[0], conv, 0));
    ck_assert_tl_ok(tl_optimizer_create_adam(&adam, NULL));
    ck_assert_tl_ok(tl_model_compile(m, adam, TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY));
    fo.epochs = 1;
    ck_assert_tl_ok(tl_model_fit(m, raw, &fo));
    float k1[3 * 3 * CH * 4];
    ck_assert_tl_ok(tl_layer_get_weights(k1, sizeof k1 / sizeof k1[0], conv, 0));
    ck_assert(!same_floats(k0, k1, sizeof k0 / sizeof k0[0]));
    assert_stats(l, m4, s4, 4, "mid-model after fit");
    tl_model_free(m);
    tl_dataset_free(ds);
    tl_dataset_free(raw);
    free(x);
}
END_TEST

/* ---- 8. transfer ------------------------------------------------------------------ */

START_TEST(transfer_keeps_the_statistics)
{
    tl_model *m = norm_net(7, 1.0f / 255.0f);
    float *x = raw_images(10, 0, 255, 9);
    /* A full copy. */
    tl_model *c;
    ck_assert_tl_ok(tl_model_copy(&c, m));
    assert_stats(layer_at(c, 0), net_mean, net_std, CH, "copy");
    ck_assert(same_predictions(m, c, x, 10));
    tl_model_free(c);
    /* A structure clone: fresh weights, the same statistics. */
    tl_clone_options co = TL_CLONE_OPTIONS_INIT;
    co.seed = 1234;
    ck_assert_tl_ok(tl_model_clone_structure(&c, m, &co));
    assert_stats(layer_at(c, 0), net_mean, net_std, CH, "structure clone");
    {
        tl_param_info pi;
        ck_assert_tl_ok(tl_layer_param_info(&pi, layer_at(m, 1), 0));
        float *a = malloc(pi.count * sizeof *a), *b = malloc(pi.count * sizeof *b);
        ck_assert_tl_ok(tl_layer_get_weights(a, pi.count, layer_at(m, 1), 0));
        ck_assert_tl_ok(tl_layer_get_weights(b, pi.count, layer_at(c, 1), 0));
        ck_assert_msg(!same_floats(a, b, pi.count), "the clone's conv kernel was copied");
        free(a);
        free(b);
    }
    /* Re-drawn parameters: the statistics stay. */
    ck_assert_tl_ok(tl_model_init_params(c, 77));
    assert_stats(layer_at(c, 0), net_mean, net_std, CH, "init_params");
    tl_model_free(c);
    /* A head-replacing clone keeps them too. */
    co.head_units = 7;
    ck_assert_tl_ok(tl_model_clone_structure(&c, m, &co));
    assert_stats(layer_at(c, 0), net_mean, net_std, CH, "clone with a new head");
    tl_model_free(c);
    /* An extractor. */
    tl_model *e;
    ck_assert_tl_ok(tl_model_extractor_create(&e, m, 3));
    assert_stats(layer_at(e, 0), net_mean, net_std, CH, "extractor");
    tl_model_free(e);
    /* Parameter transfer into a model with default statistics. */
    tl_model *d;
    ck_assert_tl_ok(tl_model_create(&d, SIDE, SIDE, CH, 99));
    tl_normalization_options o = TL_NORMALIZATION_OPTIONS_INIT;
    o.scale = 1.0f / 255.0f;
    ck_assert_tl_ok(tl_model_add_normalization(NULL, d, &o));
    add_cnn(d);
    tl_transfer_report *rep;
    ck_assert_tl_ok(tl_model_transfer_params(&rep, d, m, NULL));
    tl_transfer_report_free(rep);
    assert_stats(layer_at(d, 0), net_mean, net_std, CH, "transfer_params");
    ck_assert(same_predictions(m, d, x, 10));
    tl_model_free(d);
    tl_model_free(m);
    free(x);
}
END_TEST

/* ---- 9. bad inputs ---------------------------------------------------------------- */

START_TEST(bad_inputs_refused)
{
    tl_model *m;
    ck_assert_tl_ok(tl_model_create(&m, 4, 4, 3, 1));
    tl_normalization_options o = TL_NORMALIZATION_OPTIONS_INIT;
    o.name = "pre";
    o.channels = 3;
    const float good_mean[3] = {0, 1, 2}, good_std[3] = {1, 2, 3};
    struct {
        float mean1, std1;
        const char *msg;
    } bad[] = {
        {1, 0.0f, "layer 'pre': std[1] = 0 must be finite and > 0"},
        {1, -2.0f, "std[1] = -2 must be finite and > 0"},
        {1, NAN, "std[1] = nan must be finite and > 0"},
        {1, INFINITY, "std[1] = inf must be finite"},
        {NAN, 1, "mean[1] = nan must be finite"},
        {-INFINITY, 1, "mean[1] = -inf must be finite"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        float mean[3], std[3];
        memcpy(mean, good_mean, sizeof mean);
        memcpy(std, good_std, sizeof std);
        mean[1] = bad[i].mean1;
        std[1] = bad[i].std1;
        o.mean = mean;
        o.std = std;
        ck_assert_tl_err(tl_model_add_normalization(NULL, m, &o), TL_EINVAL, bad[i].msg);
        ck_assert_msg(strstr(tl_last_error(), "tl_model_add_normalization") != NULL, "%s", tl_last_error());
        ck_assert_uint_eq(tl_model_num_layers(m), 0);
    }
    o.mean = good_mean;
    o.std = good_std;
    /* Statistics need their length. */
    o.channels = 0;
    ck_assert_tl_err(tl_model_add_normalization(NULL, m, &o), TL_EINVAL, "mean given with channels 0");
    o.mean = NULL;
    ck_assert_tl_err(tl_model_add_normalization(NULL, m, &o), TL_EINVAL, "std given with channels 0");
    /* A channel count other than the input's. */
    o.channels = 4;
    const float four[4] = {1, 1, 1, 1};
    o.std = four;
    ck_assert_tl_err(tl_model_add_normalization(NULL, m, &o), TL_ESHAPE,
                     "layer 'pre' (normalization, index 0): statistics of 4 channels, but the input (4, 4, 3) has 3");
    ck_assert_uint_eq(tl_model_num_layers(m), 0);
    o.channels = 3;
    o.mean = good_mean;
    o.std = good_std;
    /* scale and offset. */
    struct {
        float scale, offset;
        const char *msg;
    } bs[] = {
        {0.0f, 0, "layer 'pre' (normalization, index 0): scale 0 must be finite and not 0"},
        {NAN, 0, "scale nan must be finite"},
        {INFINITY, 0, "scale inf must be finite"},
        {1, NAN, "offset nan must be finite"},
        {1, -INFINITY, "offset -inf must be finite"},
    };
    for (size_t i = 0; i < sizeof bs / sizeof bs[0]; i++) {
        o.scale = bs[i].scale;
        o.offset = bs[i].offset;
        ck_assert_tl_err(tl_model_add_normalization(NULL, m, &o), TL_EINVAL, bs[i].msg);
        ck_assert_uint_eq(tl_model_num_layers(m), 0);
    }
    o.scale = -1.0f; /* negative is fine: it flips the sign */
    o.offset = 0;
    tl_layer *l;
    ck_assert_tl_ok(tl_model_add_normalization(&l, m, &o));
    /* set_weights: the values are checked, nothing changes on error. */
    const float zstd[3] = {1, 0, 1}, nmean[3] = {0, NAN, 0};
    ck_assert_tl_err(tl_layer_set_weights(l, 1, zstd, 3), TL_EINVAL,
                     "tl_layer_set_weights: layer 'pre' (normalization, index 0): std[1] = 0 must be finite and > 0");
    ck_assert_tl_err(tl_layer_set_weights(l, 0, nmean, 3), TL_EINVAL, "mean[1] = nan must be finite");
    assert_stats(l, good_mean, good_std, 3, "after refused set_weights");
    ck_assert_tl_err(tl_layer_set_weights(l, 1, four, 4), TL_ESHAPE, "holds 4");
    /* Options: NULL, version. */
    ck_assert_int_eq(tl_model_add_normalization(NULL, m, NULL), TL_EINVAL);
    ck_assert_int_eq(tl_model_add_normalization(NULL, NULL, &o), TL_EINVAL);
    o.version = 0;
    ck_assert_int_eq(tl_model_add_normalization(NULL, m, &o), TL_EVERSION);
    o.version = 2;
    ck_assert_int_eq(tl_model_add_normalization(NULL, m, &o), TL_EVERSION);
    ck_assert_uint_eq(tl_model_num_layers(m), 1);
    /* A layer with a non-linear activation cannot exist; a bias neither. */
    tl_model_free(m);
}
END_TEST

/* ---- 10. allocation failures ------------------------------------------------------ */

START_TEST(every_allocation_failure)
{
    const float mean[3] = {1, 2, 3}, std[3] = {4, 5, 6};
    tl_normalization_options o = TL_NORMALIZATION_OPTIONS_INIT;
    o.channels = 3;
    o.mean = mean;
    o.std = std;
    long made = 0;
    for (long n = 1; n < 1000; n++) {
        tl_model *m;
        ck_assert_tl_ok(tl_model_create(&m, 4, 4, 3, 1));
        /* Eight layers first, so that the ninth outgrows the list. */
        for (int i = 0; i < 8; i++) {
            tl_normalization_options d = TL_NORMALIZATION_OPTIONS_INIT;
            ck_assert_tl_ok(tl_model_add_normalization(NULL, m, &d));
        }
        tl_clear_error();
        tli_alloc_fail_at(n);
        tl_layer *l = NULL;
        tl_status st = tl_model_add_normalization(&l, m, &o);
        made = tli_alloc_fail_at(0);
        if (made < n) {
            ck_assert_tl_ok(st);
            assert_stats(l, mean, std, 3, "after the failures");
            tl_model_free(m);
            break;
        }
        ck_assert_msg(st == TL_ENOMEM, "allocation %ld: %s: %s", n, tl_status_str(st), tl_last_error());
        ck_assert(tl_last_error()[0] != '\0');
        ck_assert_uint_eq(tl_model_num_layers(m), 8);
        float y[48], x[48] = {0};
        ck_assert_tl_ok(tl_model_predict(y, 48, m, x, 1, 0));
        tl_model_free(m);
    }
    ck_assert_msg(made >= 3, "add made %ld allocations", made);
    fprintf(stderr, "normalization: add makes %ld allocations, each made to fail once\n", made);

    /* adapt. */
    float *x = raw_images(3, 0, 1, 2);
    int32_t labels[3] = {0, 1, 2};
    tl_dataset *ds;
    ck_assert_tl_ok(tl_dataset_create(&ds, x, labels, 3, SIDE, SIDE, CH, CLASSES, TL_DATA_COPY));
    float smean[CH], sstd[CH];
    ck_assert_tl_ok(tl_dataset_channel_stats(smean, sstd, CH, ds));
    for (long n = 1; n < 1000; n++) {
        tl_model *m = norm_net(1, 1.0f);
        tl_layer *l = layer_at(m, 0);
        tli_alloc_fail_at(n);
        tl_status st = tl_layer_normalization_adapt(l, ds, NULL);
        made = tli_alloc_fail_at(0);
        if (made < n) {
            ck_assert_tl_ok(st);
            assert_stats(l, smean, sstd, CH, "adapted after the failures");
            tl_model_free(m);
            break;
        }
        ck_assert_msg(st == TL_ENOMEM, "adapt, allocation %ld: %s", n, tl_status_str(st));
        assert_stats(l, net_mean, net_std, CH, "adapt failed");
        tl_model_free(m);
    }
    ck_assert(made >= 1);
    tl_dataset_free(ds);
    free(x);
}
END_TEST

static Suite *normalization_suite(void)
{
    Suite *s = suite_create("normalization");
    TCase *t = tcase_create("layer");
    tcase_add_test(t, forward_by_hand);
    tcase_add_test(t, kernels_match_a_naive_loop);
    tcase_add_loop_test(t, input_gradient_matches_central_differences, 0,
                        (int)(sizeof grad_cases / sizeof grad_cases[0]));
    tcase_add_test(t, model_gradients_through_the_engine);
    tcase_add_test(t, adapt_equals_channel_stats);
    tcase_add_test(t, raw_pixels_predict_as_standardized_data);
    tcase_add_test(t, settings_and_names);
    tcase_add_test(t, bad_inputs_refused);
    tcase_add_test(t, every_allocation_failure);
    suite_add_tcase(s, t);
    TCase *f = tcase_create("model");
    tcase_add_checked_fixture(f, setup, teardown);
    tcase_set_timeout(f, 600);
    tcase_add_test(f, checkpoint_round_trip);
    tcase_add_test(f, safetensors_round_trip);
    tcase_add_test(f, bad_statistics_from_a_file);
    tcase_add_test(f, training_leaves_the_statistics);
    tcase_add_test(f, transfer_keeps_the_statistics);
    suite_add_tcase(s, f);
    return s;
}

int main(void)
{
    return th_run(normalization_suite());
}
