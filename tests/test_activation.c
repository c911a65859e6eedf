/* test_activation.c - the activations of libtl 1.1 (relu6, leaky_relu,
 * silu, hard_swish, hard_sigmoid), the activation layer and dropout:
 *
 *  - names, kinds, automatic names, options;
 *  - every activation's values by hand, at the kinks too, and its
 *    derivatives at the kinks (PyTorch's choices);
 *  - the activation layer's input gradient for every activation against
 *    central differences (1 and 2 threads), and a small residual model with
 *    activation and dropout layers (rng key fixed) through the engine;
 *  - relu6 and hard_sigmoid fused into conv2d (im2col and, where the CPU
 *    has AVX-512, the direct kernels) and dense against a linear layer
 *    followed by an activation layer: the same forward bits, the same
 *    training step; softmax as an activation layer at the output equals
 *    dense's fused softmax, bit for bit, in training too;
 *  - leaky_relu (slope 0.1 and the default), silu and hard_swish fused into
 *    conv2d on the im2col + GEMM path, on the direct AVX-512 path, into a
 *    depthwise conv2d and into dense: the same bits as the linear layer
 *    followed by an activation layer, in inference, in training's forward
 *    pass (which keeps z) and after two SGD steps; input, kernel and bias
 *    gradients against central differences (1 and 2 threads); z only in
 *    training's scratch, no allocation in a training step; the slope in
 *    checkpoints, a non-finite one refused;
 *  - dropout: identity in inference, bit for bit; in training the kept
 *    fraction, the exact scale, the backward mask, the same masks for 1 and
 *    2 threads; training repeats bit for bit, the masks come from the
 *    training stream (a model without dropout draws nothing more from it),
 *    a run resumed from a checkpoint equals the uninterrupted one;
 *  - files: checkpoint and safetensors round trips of both kinds, the
 *    format version a new activation needs;
 *  - bad values refused with status and message, the model unchanged.
 *
 * Internal: it runs layers and reads the training stream directly. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "helpers.h"
#include "train.h"

#define NACT (TL_ACT_HARD_SIGMOID + 1)

/* ---- scratch directory ------------------------------------------------------ */

static char *dir;

static char *join(const char *d, const char *name)
{
    size_t n = strlen(d) + strlen(name) + 2;
    char *p = malloc(n);
    snprintf(p, n, "%s/%s", d, name);
    return p;
}

static void setup(void)
{
    const char *base = getenv("TMPDIR");
    dir = join(base && *base ? base : "/tmp", "tl-act-XXXXXX");
    ck_assert_msg(mkdtemp(dir) != NULL, "mkdtemp: %s", strerror(errno));
}

static void teardown(void)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char *p = join(dir, e->d_name);
        unlink(p);
        free(p);
    }
    if (d)
        closedir(d);
    rmdir(dir);
    free(dir);
    dir = NULL;
}

/* ---- small helpers ------------------------------------------------------------ */

static tl_layer *add_act(tl_model *m, tl_activation act, float alpha)
{
    tl_activation_options o = TL_ACTIVATION_OPTIONS_INIT;
    o.activation = act;
    o.alpha = alpha;
    tl_layer *l = NULL;
    ck_assert_tl_ok(tl_model_add_activation(&l, m, &o));
    return l;
}

static tl_layer *add_dropout(tl_model *m, float rate)
{
    tl_dropout_options o = TL_DROPOUT_OPTIONS_INIT;
    o.rate = rate;
    tl_layer *l = NULL;
    ck_assert_tl_ok(tl_model_add_dropout(&l, m, &o));
    return l;
}

static bool same_bits(const float *a, const float *b, size_t n)
{
    return memcmp(a, b, n * sizeof(float)) == 0;
}

static bool same_params(const tl_model *a, const tl_model *b)
{
    size_t na, nb;
    float *pa = th_all_params(a, &na), *pb = th_all_params(b, &nb);
    bool same = pa && pb && na == nb && same_bits(pa, pb, na);
    free(pa);
    free(pb);
    return same;
}

static void compile_sgd(tl_model *m, tl_loss loss)
{
    tl_sgd_options so = TL_SGD_OPTIONS_INIT;
    so.learning_rate = 0.05f;
    so.momentum = 0.9f;
    tl_optimizer *opt;
    ck_assert_tl_ok(tl_optimizer_create_sgd(&opt, &so));
    ck_assert_tl_ok(tl_model_compile(m, opt, loss));
}

static void fit(tl_model *m, const tl_dataset *ds, uint32_t epochs, uint64_t seed, int shuffle)
{
    tl_fit_options fo = TL_FIT_OPTIONS_INIT;
    fo.epochs = epochs;
    fo.batch_size = 16;
    fo.seed = seed;
    fo.shuffle = shuffle;
    ck_assert_tl_ok(tl_model_fit(m, ds, &fo));
}

/* ==== 1. names and options ====================================================== */

START_TEST(names_kinds_and_options)
{
    static const char *const names[NACT] = {"linear",     "relu",       "softmax",    "sigmoid",    "tanh",
                                            "relu6",      "leaky_relu", "silu",       "hard_swish", "hard_sigmoid"};
    for (int a = 0; a < NACT; a++)
        ck_assert_str_eq(tl_activation_str((tl_activation)a), names[a]);
    ck_assert_str_eq(tl_activation_str((tl_activation)42), "unknown");
    ck_assert_str_eq(tl_layer_kind_str(TL_LAYER_DROPOUT), "dropout");
    ck_assert_str_eq(tl_layer_kind_str(TL_LAYER_ACTIVATION), "activation");
    ck_assert_int_eq(TL_LAYER_DROPOUT, 10);
    ck_assert_int_eq(TL_LAYER_ACTIVATION, 11);
    ck_assert_int_eq(TL_ACT_RELU6, 5);
    ck_assert_int_eq(TL_ACT_HARD_SIGMOID, 9);

    tl_dropout_options d;
    ck_assert_tl_ok(tl_dropout_options_init(&d, TL_DROPOUT_OPTIONS_VERSION));
    ck_assert_uint_eq(d.version, 1);
    ck_assert(d.rate == 0.5f);
    ck_assert_ptr_null(d.name);
    ck_assert_tl_err(tl_dropout_options_init(&d, 2), TL_EVERSION, "tl_dropout_options");
    tl_activation_options a;
    ck_assert_tl_ok(tl_activation_options_init(&a, TL_ACTIVATION_OPTIONS_VERSION));
    ck_assert_int_eq(a.activation, TL_ACT_RELU);
    ck_assert(a.alpha == 0.01f);
    ck_assert_tl_err(tl_activation_options_init(&a, 0), TL_EVERSION, "tl_activation_options");

    /* Keras' automatic names; any input shape; no parameters. */
    tl_model *m;
    ck_assert_tl_ok(tl_model_create(&m, 4, 5, 3, 1));
    tl_layer *a0 = add_act(m, TL_ACT_SILU, 0.01f), *d0 = add_dropout(m, 0.25f);
    ck_assert_tl_ok(tl_model_add_flatten(NULL, m, NULL));
    tl_layer *a1 = add_act(m, TL_ACT_HARD_SWISH, 0.01f), *d1 = add_dropout(m, 0.0f);
    ck_assert_str_eq(tl_layer_name(a0), "activation");
    ck_assert_str_eq(tl_layer_name(a1), "activation_1");
    ck_assert_str_eq(tl_layer_name(d0), "dropout");
    ck_assert_str_eq(tl_layer_name(d1), "dropout_1");
    ck_assert_int_eq(tl_layer_get_kind(a0), TL_LAYER_ACTIVATION);
    ck_assert_int_eq(tl_layer_get_kind(d0), TL_LAYER_DROPOUT);
    ck_assert_int_eq(tl_layer_activation(a0), TL_ACT_SILU);
    ck_assert_int_eq(tl_layer_activation(a1), TL_ACT_HARD_SWISH);
    ck_assert_int_eq(tl_layer_activation(d0), TL_ACT_LINEAR);
    tl_shape s;
    ck_assert_tl_ok(tl_layer_output_shape(&s, d0));
    ck_assert_uint_eq(s.rank, 3);
    ck_assert_uint_eq(s.dims[0] * s.dims[1] * s.dims[2], 60);
    ck_assert_tl_ok(tl_layer_output_shape(&s, d1));
    ck_assert_uint_eq(s.rank, 1);
    ck_assert_uint_eq(s.dims[0], 60);
    ck_assert_uint_eq(tl_layer_num_params(a0) + tl_layer_num_params(d0), 0);
    ck_assert_uint_eq(tl_model_param_count(m), 0);
    tl_model_free(m);
}
END_TEST

/* ==== 2. values and derivatives by hand ========================================= */

#define NPTS 10
static const float pts[NPTS] = {-7.0f, -3.0f, -1.0f, -0.25f, 0.0f, 0.5f, 2.0f, 3.0f, 6.0f, 7.0f};

/* act(x) by the textbook formulas, in double. */
static double ref_act(tl_activation act, double x, double alpha)
{
    double r6 = fmin(fmax(x + 3.0, 0.0), 6.0);
    switch (act) {
    case TL_ACT_LINEAR: return x;
    case TL_ACT_RELU: return x > 0 ? x : 0;
    case TL_ACT_SIGMOID: return 1.0 / (1.0 + exp(-x));
    case TL_ACT_TANH: return tanh(x);
    case TL_ACT_RELU6: return fmin(fmax(x, 0.0), 6.0);
    case TL_ACT_LEAKY_RELU: return x > 0 ? x : alpha * x;
    case TL_ACT_SILU: return x / (1.0 + exp(-x));
    case TL_ACT_HARD_SWISH: return x * r6 / 6.0;
    case TL_ACT_HARD_SIGMOID: return r6 / 6.0;
    case TL_ACT_SOFTMAX: break;
    }
    return NAN;
}

START_TEST(values_by_hand)
{
    /* Written out for the piecewise-linear ones, at and around the kinks. */
    static const struct {
        tl_activation act;
        float want[NPTS];
    } table[] = {
        {TL_ACT_RELU6, {0, 0, 0, 0, 0, 0.5f, 2, 3, 6, 6}},
        {TL_ACT_LEAKY_RELU, {-0.7f, -0.3f, -0.1f, -0.025f, 0, 0.5f, 2, 3, 6, 7}}, /* alpha 0.1 */
        {TL_ACT_HARD_SIGMOID, {0, 0, 1.0f / 3, 2.75f / 6, 0.5f, 3.5f / 6, 5.0f / 6, 1, 1, 1}},
        {TL_ACT_HARD_SWISH, {0, 0, -1.0f / 3, -0.25f * 2.75f / 6, 0, 0.5f * 3.5f / 6, 2.0f * 5 / 6, 3, 6, 7}},
    };
    for (int a = 0; a < NACT; a++) {
        if (a == TL_ACT_SOFTMAX)
            continue;
        tl_model *m;
        ck_assert_tl_ok(tl_model_create(&m, 1, 1, NPTS, 1));
        add_act(m, (tl_activation)a, 0.1f);
        float y[NPTS];
        ck_assert_tl_ok(tl_model_predict(y, NPTS, m, pts, 1, 0));
        for (int i = 0; i < NPTS; i++) {
            double want = ref_act((tl_activation)a, pts[i], 0.1);
            ck_assert_msg(fabs(y[i] - want) <= 1e-6 * fmax(1.0, fabs(want)), "%s(%g) = %.9g, expected %.9g",
                          tl_activation_str((tl_activation)a), (double)pts[i], (double)y[i], want);
        }
        for (size_t t = 0; t < sizeof table / sizeof table[0]; t++)
            if (table[t].act == (tl_activation)a)
                for (int i = 0; i < NPTS; i++)
                    ck_assert_msg(fabsf(y[i] - table[t].want[i]) <= 1e-6f, "%s(%g) = %.9g, by hand %.9g",
                                  tl_activation_str((tl_activation)a), (double)pts[i], (double)y[i],
                                  (double)table[t].want[i]);
        /* The kinks, exactly. */
        if (a == TL_ACT_RELU6) {
            ck_assert(y[4] == 0.0f && y[8] == 6.0f && y[9] == 6.0f);
        } else if (a == TL_ACT_HARD_SWISH) {
            ck_assert(y[1] == 0.0f && y[7] == 3.0f && y[0] == 0.0f);
        } else if (a == TL_ACT_HARD_SIGMOID) {
            ck_assert(y[1] == 0.0f && y[7] == 1.0f && y[4] == 0.5f);
        }
        tl_model_free(m);
    }
    /* Softmax over the last axis of (1, 2, 3): each row on its own. */
    tl_model *m;
    ck_assert_tl_ok(tl_model_create(&m, 1, 2, 3, 1));
    add_act(m, TL_ACT_SOFTMAX, 0.01f);
    const float x[6] = {1, 2, 3, -1, 0, 1};
    const double want[3] = {0.090030573170380, 0.244728471054798, 0.665240955774822};
    float y[6];
    ck_assert_tl_ok(tl_model_predict(y, 6, m, x, 1, 0));
    for (int i = 0; i < 6; i++)
        ck_assert_close(y[i], want[i % 3], 1e-6);
    tl_model_free(m);
}
END_TEST

/* The activation layer's backward with dy = 2 at single points, and the
 * fused backward (from the output) where it exists: derivatives at the
 * kinks are PyTorch's. */
START_TEST(derivatives_at_the_kinks)
{
    static const struct {
        tl_activation act;
        float alpha, x, d;
    } cases[] = {
        {TL_ACT_RELU, 0, 0.0f, 0.0f},           {TL_ACT_RELU, 0, 1.0f, 1.0f},
        {TL_ACT_RELU6, 0, 0.0f, 0.0f},          {TL_ACT_RELU6, 0, 6.0f, 0.0f},
        {TL_ACT_RELU6, 0, 3.0f, 1.0f},          {TL_ACT_RELU6, 0, 7.0f, 0.0f},
        {TL_ACT_RELU6, 0, -1.0f, 0.0f},         {TL_ACT_LEAKY_RELU, 0.25f, 0.0f, 0.25f},
        {TL_ACT_LEAKY_RELU, 0.25f, -2.0f, 0.25f}, {TL_ACT_LEAKY_RELU, 0.25f, 2.0f, 1.0f},
        {TL_ACT_HARD_SWISH, 0, -3.0f, -0.5f},   {TL_ACT_HARD_SWISH, 0, 3.0f, 1.5f},
        {TL_ACT_HARD_SWISH, 0, -4.0f, 0.0f},    {TL_ACT_HARD_SWISH, 0, 4.0f, 1.0f},
        {TL_ACT_HARD_SWISH, 0, 0.0f, 0.5f},     {TL_ACT_HARD_SIGMOID, 0, -3.0f, 0.0f},
        {TL_ACT_HARD_SIGMOID, 0, 3.0f, 0.0f},   {TL_ACT_HARD_SIGMOID, 0, 0.0f, 1.0f / 6},
        {TL_ACT_SILU, 0, 0.0f, 0.5f},           {TL_ACT_LINEAR, 0, 5.0f, 1.0f},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        float x = cases[i].x, y, dy = 2.0f, dx = NAN;
        tli_act_forward(1, cases[i].act, cases[i].alpha, &x, &y, 1, 1);
        tli_act_input_backward(1, cases[i].act, cases[i].alpha, &x, &y, &dy, &dx, 1, 1);
        ck_assert_msg(dx == 2.0f * cases[i].d, "%s'(%g) * 2 = %.9g, expected %.9g",
                      tl_activation_str(cases[i].act), (double)x, (double)dx, 2.0 * cases[i].d);
        if (cases[i].act != TL_ACT_HARD_SIGMOID) {
            /* Fused (from the output, or from z for leaky_relu, silu and
             * hard_swish): the same at every point above. */
            float d2 = 2.0f;
            tli_act_backward(1, cases[i].act, cases[i].alpha, &x, &y, &d2, 1, 1, NULL);
            ck_assert_msg(d2 == dx, "%s at %g: fused %.9g, layer %.9g", tl_activation_str(cases[i].act), (double)x,
                          (double)d2, (double)dx);
        }
    }
    /* hard_sigmoid from its output: 0 at y = 0 and y = 1, 1/6 inside. */
    float y[3] = {0.0f, 1.0f, 0.5f}, d[3] = {6.0f, 6.0f, 6.0f};
    tli_act_backward(1, TL_ACT_HARD_SIGMOID, 0.0f, NULL, y, d, 1, 3, NULL);
    ck_assert(d[0] == 0.0f && d[1] == 0.0f && d[2] == 1.0f);
    ck_assert(!tli_act_needs_input(TL_ACT_RELU6) && !tli_act_needs_input(TL_ACT_HARD_SIGMOID) &&
              !tli_act_needs_input(TL_ACT_SOFTMAX) && !tli_act_needs_input(TL_ACT_LINEAR));
    ck_assert(tli_act_needs_input(TL_ACT_SILU) && tli_act_needs_input(TL_ACT_HARD_SWISH) &&
              tli_act_needs_input(TL_ACT_LEAKY_RELU));
}
END_TEST

/* ==== 3. gradients against central differences ================================= */

#define EPS TH_GRAD_EPS
#define LBATCH 3

/* Move values that lie within 10 eps of a kink of any activation here
 * (-3, 0, 3, 6) away from it. */
static void off_the_kinks(float *v, size_t n)
{
    static const float kinks[4] = {-3.0f, 0.0f, 3.0f, 6.0f};
    for (size_t i = 0; i < n; i++)
        for (int k = 0; k < 4; k++)
            if (fabsf(v[i] - kinks[k]) < 10 * EPS)
                v[i] = kinks[k] + (v[i] < kinks[k] ? -20 * EPS : 20 * EPS);
}

typedef struct layer_ctx {
    tl_layer *l;
    tli_exec ex;
    float *x;
    const float *r;
} layer_ctx;

static double layer_objective(void *p)
{
    layer_ctx *c = p;
    const float *xs[1] = {c->x};
    c->l->ops->forward(c->l, &c->ex, xs, c->l->out, c->l->act);
    double s = 0.0;
    for (size_t i = 0; i < LBATCH * c->l->out_size; i++)
        s += (double)c->r[i] * c->l->out[i];
    return s;
}

/* _i = 2 * activation + (threads - 1); input (2, 3, 4), values in [-8, 8]
 * (every piece of relu6, hard_swish, hard_sigmoid is hit). */
START_TEST(layer_gradients)
{
    const tl_activation act = (tl_activation)(_i / 2);
    const uint32_t threads = (uint32_t)(_i % 2) + 1;
    tl_model *m;
    ck_assert_tl_ok(tl_model_create(&m, 2, 3, 4, 3));
    ck_assert_tl_ok(tl_model_set_threads(m, threads));
    tl_conv2d_options pre = TL_CONV2D_OPTIONS_INIT;
    pre.filters = 4;
    pre.kernel_h = pre.kernel_w = 1;
    ck_assert_tl_ok(tl_model_add_conv2d(NULL, m, &pre));
    add_act(m, act, 0.2f);
    tl_layer *l = m->layers[1];
    ck_assert_tl_ok(tli_workspace_ensure(m, LBATCH, true));
    const size_t n = LBATCH * l->in_size;
    float *x = malloc(n * sizeof *x), *r = malloc(n * sizeof *r), *dy = malloc(n * sizeof *dy);
    float *dx = malloc(n * sizeof *dx);
    double *num = malloc(n * sizeof *num);
    th_fill_uniform(x, n, act == TL_ACT_SOFTMAX ? -2.0f : -8.0f, act == TL_ACT_SOFTMAX ? 2.0f : 8.0f, 21);
    off_the_kinks(x, n);
    th_fill_uniform(r, n, -1.0f, 1.0f, 5);
    layer_ctx c = {l, tli_exec_for(m, LBATCH, true), x, r};
    layer_objective(&c);
    memcpy(dy, r, n * sizeof *dy);
    for (size_t i = 0; i < n; i++)
        dx[i] = NAN;
    const float *xs[1] = {x};
    float *dxs[1] = {dx};
    l->ops->backward(l, &c.ex, xs, l->out, dy, dxs, l->act, true);
    c.ex.threads = 1;
    for (size_t j = 0; j < n; j++)
        num[j] = th_central(&x[j], layer_objective, &c);
    char what[96];
    snprintf(what, sizeof what, "activation layer %s, %u thread(s): input", tl_activation_str(act), threads);
    th_check_grad(dx, num, n, what);
    free(x), free(r), free(dy), free(dx), free(num);
    tl_model_free(m);
}
END_TEST

/* A residual model: conv(4, same) -> activation(silu) -> conv(4, same,
 * relu6) -> add(., first conv) -> activation(leaky 0.2) -> dropout(0.3) ->
 * conv(3, 2x2, hard_sigmoid) -> activation(hard_swish) -> flatten ->
 * dense(3) -> activation(softmax), sparse cross-entropy (so the last
 * layer's softmax goes into the loss). Dropout's mask is fixed by the key. */
typedef struct model_ctx {
    tl_model *m;
    const float *x;
    const int32_t *labels;
} model_ctx;

#define MBATCH 3
#define MKEY 0x5eedULL

static double model_objective(void *p)
{
    model_ctx *c = p;
    tli_exec ex = tli_exec_for(c->m, MBATCH, true);
    ex.threads = 1;
    ex.rng_key = MKEY;
    const float *y = tli_forward(c->m, &ex, c->x, true);
    tli_loss_result r;
    size_t bad;
    ck_assert(tli_softmax_xent(y, MBATCH, tli_model_out_size(c->m), c->labels, NULL, NULL, &r, &bad));
    return r.loss_sum / MBATCH;
}

/* Smallest distance of an activation layer's input to a kink of its
 * activation, over the batch. */
static double kink_margin(model_ctx *c)
{
    tl_model *m = c->m;
    tli_exec ex = tli_exec_for(m, MBATCH, true);
    ex.rng_key = MKEY;
    tli_forward(m, &ex, c->x, true);
    double margin = INFINITY;
    for (size_t i = 0; i < m->nlayers; i++) {
        tl_layer *l = m->layers[i];
        const float *in = l->inputs[0] == TLI_INPUT_MODEL ? c->x : m->layers[l->inputs[0]]->out;
        float *z = malloc(MBATCH * l->out_size * sizeof *z);
        const float *zin = in;
        if (l->ops->kind != TL_LAYER_ACTIVATION) { /* a fused activation: its pre-activation */
            if (l->act == TL_ACT_LINEAR || l->act == TL_ACT_SOFTMAX) {
                free(z);
                continue;
            }
            const float *xs[1] = {in};
            l->ops->forward(l, &ex, xs, z, TL_ACT_LINEAR);
            zin = z;
        }
        const bool smooth = l->act == TL_ACT_SILU || l->act == TL_ACT_SOFTMAX || l->act == TL_ACT_SIGMOID ||
                            l->act == TL_ACT_TANH || l->act == TL_ACT_LINEAR;
        for (size_t j = 0; j < MBATCH * l->out_size && !smooth; j++) {
            double v = zin[j];
            margin = fmin(margin, fabs(v));
            if (l->act != TL_ACT_LEAKY_RELU)
                margin = fmin(margin, fmin(fabs(v - 3.0), fmin(fabs(v + 3.0), fabs(v - 6.0))));
        }
        free(z);
    }
    return margin;
}

START_TEST(model_gradients)
{
    const uint32_t threads = (uint32_t)_i + 1;
    tl_model *m;
    ck_assert_tl_ok(tl_model_create(&m, 4, 4, 2, 31));
    tl_conv2d_options c = TL_CONV2D_OPTIONS_INIT;
    c.filters = 4;
    c.padding = TL_PAD_SAME;
    tl_layer *stem, *b;
    ck_assert_tl_ok(tl_model_add_conv2d(&stem, m, &c));
    add_act(m, TL_ACT_SILU, 0.01f);
    c.activation = TL_ACT_RELU6;
    ck_assert_tl_ok(tl_model_add_conv2d(&b, m, &c));
    const tl_layer *both[2] = {b, stem};
    ck_assert_tl_ok(tl_model_add_add(NULL, m, both, 2, NULL));
    add_act(m, TL_ACT_LEAKY_RELU, 0.2f);
    add_dropout(m, 0.3f);
    c.filters = 3;
    c.kernel_h = c.kernel_w = 2;
    c.padding = TL_PAD_VALID;
    c.activation = TL_ACT_HARD_SIGMOID;
    ck_assert_tl_ok(tl_model_add_conv2d(NULL, m, &c));
    add_act(m, TL_ACT_HARD_SWISH, 0.01f);
    ck_assert_tl_ok(tl_model_add_flatten(NULL, m, NULL));
    tl_dense_options d = TL_DENSE_OPTIONS_INIT;
    d.units = 3;
    ck_assert_tl_ok(tl_model_add_dense(NULL, m, &d));
    add_act(m, TL_ACT_SOFTMAX, 0.01f);
    ck_assert_tl_ok(tl_model_set_threads(m, threads));
    compile_sgd(m, TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY);
    ck_assert_tl_ok(tli_workspace_ensure(m, MBATCH, true));
    ck_assert_tl_ok(tli_train_prepare(m));

    float *x = malloc(MBATCH * m->in_size * sizeof *x);
    const int32_t labels[MBATCH] = {2, 0, 1};
    model_ctx ctx = {m, x, labels};
    uint64_t seed = 1;
    for (;; seed++) {
        ck_assert_msg(seed < 500, "no seed keeps the activations' inputs away from their kinks");
        for (size_t i = 0; i < m->nlayers; i++)
            for (size_t p = 0; p < m->layers[i]->nparams; p++)
                th_fill_uniform(m->layers[i]->params[p].value, m->layers[i]->params[p].count, -0.7f, 0.7f,
                                seed * 31 + i * 7 + p);
        th_fill_uniform(x, MBATCH * m->in_size, -1.5f, 1.5f, seed * 13);
        if (kink_margin(&ctx) > 5e-3)
            break;
    }
    /* Analytical: forward with the key, loss gradient, backward. */
    tli_exec ex = tli_exec_for(m, MBATCH, true);
    ex.rng_key = MKEY;
    const float *y = tli_forward(m, &ex, x, true);
    tli_loss_result r;
    size_t bad;
    ck_assert(tli_softmax_xent(y, MBATCH, 3, labels, NULL, tli_output_grad(m), &r, &bad));
    tli_backward(m, &ex, x, true);
    /* Dropout did drop something here. */
    size_t dropped = 0;
    for (size_t j = 0; j < MBATCH * m->layers[5]->out_size; j++)
        dropped += m->layers[5]->out[j] == 0.0f;
    ck_assert_uint_gt(dropped, 0);
    char what[96];
    for (size_t i = 0; i < m->nlayers; i++) {
        tl_layer *l = m->layers[i];
        for (size_t p = 0; p < l->nparams; p++) {
            tli_param *pr = &l->params[p];
            float *a = malloc(pr->count * sizeof *a);
            double *num = malloc(pr->count * sizeof *num);
            memcpy(a, pr->grad, pr->count * sizeof *a);
            for (size_t j = 0; j < pr->count; j++)
                num[j] = th_central(&pr->value[j], model_objective, &ctx);
            snprintf(what, sizeof what, "%u thread(s): layer %s %s", threads, l->name, pr->name);
            th_check_grad(a, num, pr->count, what);
            free(a);
            free(num);
        }
    }
    free(x);
    tl_model_free(m);
}
END_TEST

/* ==== 4. fused against the activation layer ==================================== */

static float *images(size_t n, size_t size, float lo, float hi, uint64_t seed)
{
    float *x = malloc(n * size * sizeof *x);
    th_fill_uniform(x, n * size, lo, hi, seed);
    return x;
}

/* Relative closeness of two parameter sets after training. */
static void assert_params_close(const tl_model *a, const tl_model *b, double tol, const char *what)
{
    size_t na, nb;
    float *pa = th_all_params(a, &na), *pb = th_all_params(b, &nb);
    ck_assert_uint_eq(na, nb);
    double scale = 0.0;
    for (size_t i = 0; i < na; i++)
        scale = fmax(scale, fabs((double)pa[i]));
    for (size_t i = 0; i < na; i++)
        ck_assert_msg(fabs((double)pa[i] - pb[i]) <= tol * scale, "%s: parameter %zu: %.9g vs %.9g", what, i,
                      (double)pa[i], (double)pb[i]);
    free(pa);
    free(pb);
}

/* _i: 0 conv im2col (3 filters, stride 2), 1 conv with 16 filters at
 * stride 1 (the direct AVX-512 kernels where the CPU has them), 2 dense;
 * each with relu6 and hard_sigmoid. The fused model and the linear layer
 * followed by an activation layer start from the same weights (the layer
 * has the same index), predict the same bits and train to the same
 * weights (the backward passes differ only in where they take the
 * derivative: the output or the input). */
START_TEST(fused_equals_activation_layer)
{
    static const tl_activation acts[2] = {TL_ACT_RELU6, TL_ACT_HARD_SIGMOID};
    for (int k = 0; k < 2; k++) {
        tl_model *fused, *split;
        ck_assert_tl_ok(tl_model_create(&fused, 6, 6, 3, 5));
        ck_assert_tl_ok(tl_model_create(&split, 6, 6, 3, 5));
        for (int v = 0; v < 2; v++) {
            tl_model *m = v ? split : fused;
            tl_activation a = v ? TL_ACT_LINEAR : acts[k];
            if (_i < 2) {
                tl_conv2d_options c = TL_CONV2D_OPTIONS_INIT;
                c.filters = _i == 0 ? 3 : 16;
                c.stride_h = c.stride_w = _i == 0 ? 2 : 1;
                c.padding = TL_PAD_SAME;
                c.activation = a;
                ck_assert_tl_ok(tl_model_add_conv2d(NULL, m, &c));
            } else {
                ck_assert_tl_ok(tl_model_add_flatten(NULL, m, NULL));
                tl_dense_options d = TL_DENSE_OPTIONS_INIT;
                d.units = 7;
                d.activation = a;
                ck_assert_tl_ok(tl_model_add_dense(NULL, m, &d));
            }
            if (v)
                add_act(m, acts[k], 0.01f);
            ck_assert_tl_ok(tl_model_set_threads(m, 1));
        }
        /* Big inputs and a bias so that every piece (0, linear, clamp) is hit. */
        tl_layer *lf = fused->layers[_i < 2 ? 0 : 1], *ls = split->layers[_i < 2 ? 0 : 1];
        size_t nb = tl_shape_count(&lf->params[1].shape);
        float *bias = images(1, nb, -2.0f, 2.0f, 9);
        ck_assert_tl_ok(tl_layer_set_weights(lf, 1, bias, nb));
        ck_assert_tl_ok(tl_layer_set_weights(ls, 1, bias, nb));
        const size_t n = 8, width = tli_model_out_size(fused);
        float *x = images(n, fused->in_size, -12.0f, 12.0f, 3);
        float *ya = malloc(n * width * sizeof *ya), *yb = malloc(n * width * sizeof *yb);
        ck_assert_tl_ok(tl_model_predict(ya, n * width, fused, x, n, 0));
        ck_assert_tl_ok(tl_model_predict(yb, n * width, split, x, n, 0));
        ck_assert_msg(same_bits(ya, yb, n * width), "case %d, %s: fused and layer outputs differ", _i,
                      tl_activation_str(acts[k]));
        size_t lo = 0, hi = 0;
        for (size_t j = 0; j < n * width; j++) {
            lo += ya[j] == 0.0f;
            hi += ya[j] == (acts[k] == TL_ACT_RELU6 ? 6.0f : 1.0f);
        }
        ck_assert_msg(lo > 0 && hi > 0 && lo + hi < n * width, "case %d: %zu at 0, %zu clamped of %zu", _i, lo, hi,
                      n * width);
        /* Two SGD steps with mean squared error on targets in [0, 1]. */
        float *t = images(n, width, 0.0f, 1.0f, 4);
        compile_sgd(fused, TL_LOSS_MEAN_SQUARED_ERROR);
        compile_sgd(split, TL_LOSS_MEAN_SQUARED_ERROR);
        for (int s = 0; s < 2; s++) {
            double la, lb;
            ck_assert_tl_ok(tl_model_train_step(&la, fused, x, NULL, t, n));
            ck_assert_tl_ok(tl_model_train_step(&lb, split, x, NULL, t, n));
            ck_assert_close(la, lb, 1e-6 * fabs(la));
        }
        char what[64];
        snprintf(what, sizeof what, "case %d, %s", _i, tl_activation_str(acts[k]));
        assert_params_close(fused, split, 1e-6, what);
        free(bias), free(x), free(ya), free(yb), free(t);
        tl_model_free(fused);
        tl_model_free(split);
    }
}
END_TEST

/* dense(4, softmax) and dense(4) -> activation(softmax): with a
 * cross-entropy loss both hand the loss their logits, so training is the
 * same bit for bit; and the same probabilities in inference. */
START_TEST(softmax_layer_as_output)
{
    tl_dataset *ds = th_quadrant_dataset(64, 6, 6, 1, 3);
    tl_model *a, *b;
    ck_assert_tl_ok(tl_model_create(&a, 6, 6, 1, 8));
    ck_assert_tl_ok(tl_model_create(&b, 6, 6, 1, 8));
    tl_dense_options d = TL_DENSE_OPTIONS_INIT;
    d.units = 4;
    ck_assert_tl_ok(tl_model_add_flatten(NULL, a, NULL));
    ck_assert_tl_ok(tl_model_add_flatten(NULL, b, NULL));
    ck_assert_tl_ok(tl_model_add_dense(NULL, b, &d));
    add_act(b, TL_ACT_SOFTMAX, 0.01f);
    d.activation = TL_ACT_SOFTMAX;
    ck_assert_tl_ok(tl_model_add_dense(NULL, a, &d));
    ck_assert_tl_ok(tl_model_set_threads(a, 1));
    ck_assert_tl_ok(tl_model_set_threads(b, 1));
    compile_sgd(a, TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY);
    compile_sgd(b, TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY);
    fit(a, ds, 2, 5, 1);
    fit(b, ds, 2, 5, 1);
    ck_assert(same_params(a, b));
    float *x = images(5, 36, 0.0f, 1.0f, 6), ya[20], yb[20];
    ck_assert_tl_ok(tl_model_predict(ya, 20, a, x, 5, 0));
    ck_assert_tl_ok(tl_model_predict(yb, 20, b, x, 5, 0));
    ck_assert(same_bits(ya, yb, 20));
    double la, lb, aa, ab;
    ck_assert_tl_ok(tl_model_evaluate(&la, &aa, a, ds, 0));
    ck_assert_tl_ok(tl_model_evaluate(&lb, &ab, b, ds, 0));
    ck_assert(la == lb && aa == ab);
    /* Another activation at the output does not fit cross-entropy. */
    tl_model *c;
    ck_assert_tl_ok(tl_model_create(&c, 6, 6, 1, 8));
    ck_assert_tl_ok(tl_model_add_flatten(NULL, c, NULL));
    add_act(c, TL_ACT_SILU, 0.01f);
    ck_assert_tl_err(tl_model_compile(c, NULL, TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY), TL_EINVAL, "silu");
    ck_assert_tl_ok(tl_model_compile(c, NULL, TL_LOSS_MEAN_SQUARED_ERROR));
    free(x);
    tl_model_free(a), tl_model_free(b), tl_model_free(c);
    tl_dataset_free(ds);
}
END_TEST

/* ==== 4b. leaky_relu, silu and hard_swish fused ================================ */

/* Where the activation is fused: conv2d on the im2col + GEMM path (3
 * filters, stride 2), on the direct AVX-512 path (stride 1, 16 filters,
 * 16 input channels: the direct input gradient too; im2col + GEMM on a CPU
 * without AVX-512), a depthwise conv2d (4 channels, multiplier 2), dense. */
enum { FP_GEMM, FP_DIRECT, FP_DEPTHWISE, FP_DENSE, NFP };
static const char *const fp_names[NFP] = {"conv2d (im2col + GEMM)", "conv2d (direct)", "depthwise conv2d", "dense"};

/* The activations whose derivative needs the pre-activation z; alpha NAN:
 * the options' default slope. */
static const struct {
    tl_activation act;
    float alpha;
} zacts[] = {{TL_ACT_LEAKY_RELU, 0.1f}, {TL_ACT_LEAKY_RELU, NAN}, {TL_ACT_SILU, NAN}, {TL_ACT_HARD_SWISH, NAN}};
#define NZA 4

/* conv2d.c's geometry (conv_geom): the convolution, then its algorithm. */
typedef struct conv_geom_view {
    tli_conv_geom g;
    tli_conv_algo algo;
} conv_geom_view;

static const conv_geom_view *conv_view(const tl_layer *l)
{
    return (const conv_geom_view *)(const void *)l->geom;
}

/* The tested layer's index in fused_model(). */
static size_t fp_index(int p)
{
    return p == FP_DENSE ? 2 : 1;
}

/* A linear pre-layer (so that the tested layer computes an input gradient),
 * the tested layer of path p with activation `act` fused - or, when
 * `split`, linear and followed by an activation layer with the same
 * slope. The tested layer has the same index, so the same weights, either
 * way. */
static tl_model *fused_model(int p, tl_activation act, float alpha, bool split, uint64_t seed)
{
    static const uint32_t in[NFP][3] = {{6, 6, 3}, {4, 4, 16}, {5, 5, 4}, {2, 2, 3}};
    tl_model *m;
    ck_assert_tl_ok(tl_model_create(&m, in[p][0], in[p][1], in[p][2], seed));
    tl_conv2d_options c = TL_CONV2D_OPTIONS_INIT;
    tl_dense_options d = TL_DENSE_OPTIONS_INIT;
    if (p == FP_DENSE) {
        ck_assert_tl_ok(tl_model_add_flatten(NULL, m, NULL));
        d.units = 6;
        ck_assert_tl_ok(tl_model_add_dense(NULL, m, &d));
        d.units = 5;
        d.activation = split ? TL_ACT_LINEAR : act;
        if (!isnan(alpha))
            d.activation_alpha = alpha;
        ck_assert_tl_ok(tl_model_add_dense(NULL, m, &d));
    } else {
        c.filters = in[p][2];
        c.kernel_h = c.kernel_w = 1;
        ck_assert_tl_ok(tl_model_add_conv2d(NULL, m, &c));
        c.kernel_h = c.kernel_w = 3;
        c.padding = TL_PAD_SAME;
        c.filters = p == FP_GEMM ? 5 : p == FP_DIRECT ? 16 : 8;
        c.stride_h = c.stride_w = p == FP_GEMM ? 2 : 1;
        c.groups = p == FP_DEPTHWISE ? 4 : 1;
        c.activation = split ? TL_ACT_LINEAR : act;
        if (!isnan(alpha))
            c.activation_alpha = alpha;
        ck_assert_tl_ok(tl_model_add_conv2d(NULL, m, &c));
        const tl_layer *l = m->layers[1];
        const conv_geom_view *v = conv_view(l);
        const tli_conv_algo want = p == FP_GEMM        ? TLI_CONV_GEMM
                                   : p == FP_DEPTHWISE ? TLI_CONV_DEPTHWISE
                                   : tli_conv_algo_ok(TLI_CONV_DIRECT, &v->g, c.filters) ? TLI_CONV_DIRECT
                                                                                          : TLI_CONV_GEMM;
        ck_assert_int_eq(v->algo, want);
    }
    if (split) {
        tl_activation_options a = TL_ACTIVATION_OPTIONS_INIT;
        a.activation = act;
        if (!isnan(alpha))
            a.alpha = alpha;
        ck_assert_tl_ok(tl_model_add_activation(NULL, m, &a));
    }
    return m;
}

/* _i = path * NZA + activation. The fused layer and the linear layer
 * followed by an activation layer, from the same weights (a bias too), on
 * 1 or 2 threads: the same bits in inference and in training's forward
 * pass (which keeps z), and the same bits after two SGD steps. Bit for
 * bit because both compute the same float operations in the same order:
 * z = the same kernel's output plus the bias, y = act_row(z), and in the
 * backward pass dz = dy * act'(z) by act_input_backward_row, summed into
 * the bias gradient with the same split of the rows. */
START_TEST(zact_fused_equals_activation_layer)
{
    const int p = _i / NZA;
    const tl_activation act = zacts[_i % NZA].act;
    const float alpha = zacts[_i % NZA].alpha;
    const uint32_t threads = (uint32_t)(_i % 2) + 1;
    tl_model *fused = fused_model(p, act, alpha, false, 5), *split = fused_model(p, act, alpha, true, 5);
    const size_t li = fp_index(p);
    tl_layer *lf = fused->layers[li], *ls = split->layers[li];
    /* A kernel up to 5 / sqrt(fan_in) and a bias: z spans well beyond +-3. */
    const size_t nk = lf->params[0].count, nb = lf->params[1].count;
    float *kernel = images(1, nk, -1.0f, 1.0f, 8), *bias = images(1, nb, -1.0f, 1.0f, 9);
    for (size_t j = 0; j < nk; j++)
        kernel[j] *= (float)(5.0 / sqrt(lf->params[0].fan_in));
    ck_assert_tl_ok(tl_layer_set_weights(lf, 0, kernel, nk));
    ck_assert_tl_ok(tl_layer_set_weights(ls, 0, kernel, nk));
    ck_assert_tl_ok(tl_layer_set_weights(lf, 1, bias, nb));
    ck_assert_tl_ok(tl_layer_set_weights(ls, 1, bias, nb));
    ck_assert(same_params(fused, split));
    ck_assert_tl_ok(tl_model_set_threads(fused, threads));
    ck_assert_tl_ok(tl_model_set_threads(split, threads));
    const size_t n = 6, width = tli_model_out_size(fused);
    float *x = images(n, fused->in_size, -2.0f, 2.0f, 3);
    float *ya = malloc(n * width * sizeof *ya), *yb = malloc(n * width * sizeof *yb);
    ck_assert_tl_ok(tl_model_predict(ya, n * width, fused, x, n, 0));
    ck_assert_tl_ok(tl_model_predict(yb, n * width, split, x, n, 0));
    char what[128];
    snprintf(what, sizeof what, "%s, %s (alpha %g), %u thread(s)", fp_names[p], tl_activation_str(act),
             (double)alpha, threads);
    ck_assert_msg(same_bits(ya, yb, n * width), "%s: fused and layer outputs differ", what);
    /* Both signs (leaky_relu), the three pieces of hard_swish. */
    size_t neg = 0, mid = 0, pos = 0;
    for (size_t j = 0; j < n * width; j++) {
        neg += act == TL_ACT_HARD_SWISH ? ya[j] == 0.0f : ya[j] < 0.0f;
        mid += act == TL_ACT_HARD_SWISH && ya[j] != 0.0f && ya[j] < 3.0f;
        pos += ya[j] > (act == TL_ACT_HARD_SWISH ? 3.0f : 0.0f);
    }
    ck_assert_msg(neg > 0 && pos > 0 && (act != TL_ACT_HARD_SWISH || mid > 0), "%s: %zu / %zu / %zu", what, neg,
                  mid, pos);
    /* Training's forward pass keeps z, and gives the same y. */
    ck_assert_tl_ok(tli_workspace_ensure(fused, n, true));
    tli_exec ex = tli_exec_for(fused, n, true);
    const float *yt = tli_forward(fused, &ex, x, false);
    ck_assert_msg(same_bits(ya, yt, n * width), "%s: training and inference outputs differ", what);
    /* Two SGD steps with mean squared error. */
    float *t = images(n, width, -0.5f, 1.0f, 4);
    compile_sgd(fused, TL_LOSS_MEAN_SQUARED_ERROR);
    compile_sgd(split, TL_LOSS_MEAN_SQUARED_ERROR);
    for (int s = 0; s < 2; s++) {
        double la, lb;
        ck_assert_tl_ok(tl_model_train_step(&la, fused, x, NULL, t, n));
        ck_assert_tl_ok(tl_model_train_step(&lb, split, x, NULL, t, n));
        ck_assert_msg(la == lb, "%s: step %d: loss %.17g vs %.17g", what, s, la, lb);
    }
    ck_assert_msg(same_params(fused, split), "%s: parameters differ after training", what);
    free(kernel), free(bias), free(x), free(ya), free(yb), free(t);
    tl_model_free(fused);
    tl_model_free(split);
}
END_TEST

/* Smallest distance of z to a kink of `act` (0 for leaky_relu; -3, 0 and 3
 * for hard_swish' pieces; none for silu). */
static double zact_margin(tl_activation act, const float *z, size_t n)
{
    double margin = INFINITY;
    for (size_t j = 0; j < n && act != TL_ACT_SILU; j++) {
        margin = fmin(margin, fabs((double)z[j]));
        if (act == TL_ACT_HARD_SWISH)
            margin = fmin(margin, fmin(fabs(z[j] - 3.0), fabs(z[j] + 3.0)));
    }
    return margin;
}

/* _i = path * NZA + activation; 1 or 2 threads. The fused layer's input,
 * kernel and bias gradients against central differences of
 * sum(r * layer(x)), with values drawn (seed after seed) so that no z lies
 * within 3e-3 of a kink (a step of 1e-3 in one value moves z by at most
 * 2e-3 here). Also: the z the training pass keeps (at the start of the
 * layer's scratch) is the linear layer's output bit for bit, and y the
 * inference pass's. */
START_TEST(zact_gradients)
{
    const int p = _i / NZA;
    const tl_activation act = zacts[_i % NZA].act;
    const float alpha = zacts[_i % NZA].alpha;
    const uint32_t threads = (uint32_t)(_i % 2) + 1;
    tl_model *m = fused_model(p, act, alpha, false, 11);
    ck_assert_tl_ok(tl_model_set_threads(m, threads));
    tl_layer *l = m->layers[fp_index(p)];
    ck_assert_tl_ok(tli_workspace_ensure(m, LBATCH, true));
    const size_t nx = LBATCH * l->in_size, ny = LBATCH * l->out_size;
    float *x = malloc(nx * sizeof *x), *r = malloc(ny * sizeof *r), *dy = malloc(ny * sizeof *dy);
    float *dx = malloc(nx * sizeof *dx), *z = malloc(ny * sizeof *z), *yi = malloc(ny * sizeof *yi);
    th_fill_uniform(r, ny, -1.0f, 1.0f, 5);
    const float *xs[1] = {x};
    tli_exec inf = tli_exec_for(m, LBATCH, false);
    /* Kernel values up to 5 / sqrt(fan_in): z spans well beyond +-3. */
    const float wmax = (float)(5.0 / sqrt(l->params[0].fan_in));
    char what[160];
    snprintf(what, sizeof what, "%s, %s (alpha %g), %u thread(s)", fp_names[p], tl_activation_str(act),
             (double)alpha, threads);
    uint64_t seed = 1;
    for (;; seed++) {
        ck_assert_msg(seed < 3000, "%s: no seed keeps z away from the kinks", what);
        th_fill_uniform(x, nx, -2.0f, 2.0f, seed * 17);
        th_fill_uniform(l->params[0].value, l->params[0].count, -wmax, wmax, seed * 29);
        th_fill_uniform(l->params[1].value, l->params[1].count, -1.0f, 1.0f, seed * 31);
        l->ops->forward(l, &inf, xs, z, TL_ACT_LINEAR);
        if (zact_margin(act, z, ny) > 3e-3)
            break;
    }
    size_t neg = 0, big = 0;
    for (size_t j = 0; j < ny; j++)
        neg += z[j] < -3.0f, big += z[j] > 3.0f;
    ck_assert_msg(neg > 0 && big > 0, "%s: z below -3: %zu, above 3: %zu", what, neg, big);
    l->ops->forward(l, &inf, xs, yi, l->act);
    /* Analytical: the training forward pass, then backward. */
    tli_exec ex = tli_exec_for(m, LBATCH, true);
    l->ops->forward(l, &ex, xs, l->out, l->act);
    ck_assert_msg(same_bits(l->out, yi, ny), "%s: training and inference outputs differ", what);
    ck_assert_msg(same_bits((const float *)l->scratch, z, ny), "%s: the kept z is not the linear output", what);
    memcpy(dy, r, ny * sizeof *dy);
    for (size_t i = 0; i < nx; i++)
        dx[i] = NAN;
    float *dxs[1] = {dx};
    l->ops->backward(l, &ex, xs, l->out, dy, dxs, l->act, true);
    layer_ctx c = {l, inf, x, r};
    c.ex.threads = 1;
    double *num = malloc(nx * sizeof *num);
    for (size_t j = 0; j < nx; j++)
        num[j] = th_central(&x[j], layer_objective, &c);
    char name[200];
    snprintf(name, sizeof name, "%s: input", what);
    th_check_grad(dx, num, nx, name);
    free(num);
    for (size_t q = 0; q < l->nparams; q++) {
        tli_param *pr = &l->params[q];
        float *a = malloc(pr->count * sizeof *a);
        num = malloc(pr->count * sizeof *num);
        memcpy(a, pr->grad, pr->count * sizeof *a);
        for (size_t j = 0; j < pr->count; j++)
            num[j] = th_central(&pr->value[j], layer_objective, &c);
        snprintf(name, sizeof name, "%s: %s", what, pr->name);
        th_check_grad(a, num, pr->count, name);
        free(a);
        free(num);
    }
    free(x), free(r), free(dy), free(dx), free(z), free(yi);
    tl_model_free(m);
}
END_TEST

/* The scratch: z (batch x output floats) more only for these activations
 * and only in training; and a training step allocates nothing. */
START_TEST(zact_scratch_and_no_allocation)
{
    for (int p = 0; p < NFP; p++) {
        tl_model *lin = fused_model(p, TL_ACT_LINEAR, NAN, false, 1);
        tl_model *relu = fused_model(p, TL_ACT_RELU, NAN, false, 1);
        tl_model *silu = fused_model(p, TL_ACT_SILU, NAN, false, 1);
        const tl_layer *a = lin->layers[fp_index(p)], *b = relu->layers[fp_index(p)], *c = silu->layers[fp_index(p)];
        for (int training = 0; training < 2; training++) {
            const size_t base = a->ops->scratch_bytes(a, 8, 2, training);
            ck_assert_uint_eq(b->ops->scratch_bytes(b, 8, 2, training), base);
            size_t extra = training ? 8 * c->out_size * sizeof(float) : 0;
            if (p != FP_DENSE)
                extra = (extra + 63) & ~(size_t)63;
            ck_assert_msg(c->ops->scratch_bytes(c, 8, 2, training) == base + extra, "%s, training %d: %zu + %zu",
                          fp_names[p], training, base, extra);
        }
        tl_model_free(lin);
        tl_model_free(relu);
        tl_model_free(silu);
    }
    /* conv(silu) -> depthwise conv(leaky_relu 0.2) -> flatten ->
     * dense(hard_swish) -> dense(softmax), two threads. */
    tl_model *m;
    ck_assert_tl_ok(tl_model_create(&m, 6, 6, 2, 3));
    ck_assert_tl_ok(tl_model_set_threads(m, 2));
    tl_conv2d_options c = TL_CONV2D_OPTIONS_INIT;
    c.filters = 4;
    c.padding = TL_PAD_SAME;
    c.activation = TL_ACT_SILU;
    ck_assert_tl_ok(tl_model_add_conv2d(NULL, m, &c));
    c.groups = 4;
    c.activation = TL_ACT_LEAKY_RELU;
    c.activation_alpha = 0.2f;
    ck_assert_tl_ok(tl_model_add_conv2d(NULL, m, &c));
    ck_assert_tl_ok(tl_model_add_flatten(NULL, m, NULL));
    tl_dense_options d = TL_DENSE_OPTIONS_INIT;
    d.units = 8;
    d.activation = TL_ACT_HARD_SWISH;
    ck_assert_tl_ok(tl_model_add_dense(NULL, m, &d));
    d.units = 4;
    d.activation = TL_ACT_SOFTMAX;
    ck_assert_tl_ok(tl_model_add_dense(NULL, m, &d));
    compile_sgd(m, TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY);
    float *x;
    int32_t *labels;
    th_quadrant_data(&x, &labels, 16, 6, 6, 2, 7);
    double first, loss;
    ck_assert_tl_ok(tl_model_train_step(&first, m, x, labels, NULL, 16));
    tli_alloc_fail_at(0);
    for (int s = 0; s < 20; s++)
        ck_assert_tl_ok(tl_model_train_step(&loss, m, x, labels, NULL, 16));
    ck_assert_int_eq(tli_alloc_fail_at(0), 0);
    ck_assert_msg(loss < first, "the loss went from %g to %g", first, loss);
    free(x);
    free(labels);
    tl_model_free(m);
}
END_TEST

/* ==== 5. dropout ================================================================ */

START_TEST(dropout_is_identity_in_inference)
{
    static const float rates[3] = {0.0f, 0.5f, 0.9f};
    for (int k = 0; k < 3; k++) {
        tl_model *m;
        ck_assert_tl_ok(tl_model_create(&m, 5, 4, 3, 2));
        add_dropout(m, rates[k]);
        ck_assert_tl_ok(tl_model_add_flatten(NULL, m, NULL));
        add_dropout(m, rates[k]);
        float *x = images(7, 60, -3.0f, 3.0f, 11), *y = malloc(7 * 60 * sizeof *y);
        x[5] = NAN;
        x[6] = -0.0f;
        ck_assert_tl_ok(tl_model_predict(y, 7 * 60, m, x, 7, 3));
        ck_assert(same_bits(x, y, 7 * 60));
        /* Also after training ran (a training workspace). */
        compile_sgd(m, TL_LOSS_MEAN_SQUARED_ERROR);
        float *t = images(7, 60, 0.0f, 1.0f, 12);
        tl_model_train_step(NULL, m, x + 60, NULL, t, 2); /* no parameters: nothing to learn */
        ck_assert_tl_ok(tl_model_predict(y, 7 * 60, m, x, 7, 0));
        ck_assert(same_bits(x, y, 7 * 60));
        free(x), free(y), free(t);
        tl_model_free(m);
    }
}
END_TEST

/* The layer in training on one big example (over the size the kernels
 * split among threads), through the engine with a given key. */
#define DH 64
#define DW 64
#define DC 20
#define DN ((size_t)DH * DW * DC)
#define DBATCH 2

static void dropout_run(tl_model *m, uint32_t threads, uint64_t key, const float *x, float *y, uint8_t *mask,
                        const float *dy, float *dx)
{
    tl_layer *l = m->layers[0];
    tli_exec ex = tli_exec_for(m, DBATCH, true);
    ex.threads = threads;
    ex.rng_key = key;
    const float *xs[1] = {x};
    l->ops->forward(l, &ex, xs, l->out, TL_ACT_LINEAR);
    memcpy(y, l->out, DBATCH * DN * sizeof *y);
    memcpy(mask, l->scratch, DBATCH * DN);
    if (dy) {
        float *dyc = malloc(DBATCH * DN * sizeof *dyc);
        memcpy(dyc, dy, DBATCH * DN * sizeof *dyc);
        float *dxs[1] = {dx};
        l->ops->backward(l, &ex, xs, l->out, dyc, dxs, TL_ACT_LINEAR, false);
        free(dyc);
    }
}

START_TEST(dropout_training_masks)
{
    static const float rates[4] = {0.0f, 0.1f, 0.5f, 0.9f};
    const size_t n = DBATCH * DN;
    float *x = images(DBATCH, DN, 0.5f, 1.5f, 1), *dy = images(DBATCH, DN, -1.0f, 1.0f, 2);
    float *y1 = malloc(n * sizeof *y1), *y2 = malloc(n * sizeof *y2), *dx1 = malloc(n * sizeof *dx1),
          *dx2 = malloc(n * sizeof *dx2);
    uint8_t *m1 = malloc(n), *m2 = malloc(n);
    for (int k = 0; k < 4; k++) {
        const float rate = rates[k], scale = 1.0f / (1.0f - rate);
        tl_model *m;
        ck_assert_tl_ok(tl_model_create(&m, DH, DW, DC, 1));
        add_dropout(m, rate);
        ck_assert_tl_ok(tl_model_set_threads(m, 2));
        ck_assert_tl_ok(tli_workspace_ensure(m, DBATCH, true));
        dropout_run(m, 1, 0xabcdefULL, x, y1, m1, dy, dx1);
        size_t kept = 0, bad_mask = 0, bad_y = 0, bad_dx = 0;
        for (size_t i = 0; i < n; i++) {
            const bool keep = y1[i] != 0.0f;
            kept += keep;
            bad_mask += m1[i] != keep;
            /* Kept values scaled exactly; the gradient passes only there,
             * with the same scale. */
            bad_y += y1[i] != (keep ? x[i] * scale : 0.0f);
            bad_dx += dx1[i] != (keep ? dy[i] * scale : 0.0f);
        }
        ck_assert_msg(bad_mask + bad_y + bad_dx == 0, "rate %g: %zu masks, %zu values, %zu gradients wrong",
                      (double)rate, bad_mask, bad_y, bad_dx);
        const double p = 1.0 - rate, frac = (double)kept / (double)n, sd = sqrt(p * (1.0 - p) / (double)n);
        ck_assert_msg(fabs(frac - p) <= 5.0 * sd + 1e-12, "rate %g: kept %.5f, expected %.5f", (double)rate, frac, p);
        if (rate == 0.0f)
            ck_assert(same_bits(x, y1, n));
        /* The second example's mask is not the first one's. */
        if (rate > 0.0f)
            ck_assert(memcmp(m1, m1 + DN, DN) != 0);
        /* 2 threads: the same bits; the same key again: the same; another
         * key: another mask. */
        dropout_run(m, 2, 0xabcdefULL, x, y2, m2, dy, dx2);
        ck_assert(same_bits(y1, y2, n) && same_bits(dx1, dx2, n) && memcmp(m1, m2, n) == 0);
        dropout_run(m, 1, 0xabcdefULL, x, y2, m2, NULL, NULL);
        ck_assert(same_bits(y1, y2, n));
        dropout_run(m, 1, 0xabcdeeULL, x, y2, m2, NULL, NULL);
        ck_assert(rate == 0.0f ? memcmp(m1, m2, n) == 0 : memcmp(m1, m2, n) != 0);
        /* Inference: a copy. */
        tli_exec ex = tli_exec_for(m, DBATCH, false);
        const float *xs[1] = {x};
        m->layers[0]->ops->forward(m->layers[0], &ex, xs, y2, TL_ACT_LINEAR);
        ck_assert(same_bits(x, y2, n));
        tl_model_free(m);
    }
    free(x), free(dy), free(y1), free(y2), free(dx1), free(dx2), free(m1), free(m2);
}
END_TEST

/* conv(8, relu) -> maxpool -> flatten -> dropout(rate) -> dense(4, softmax)
 * on the 8x8x1 quadrant task; rate < 0: no dropout layer. */
static tl_model *dropout_cnn(uint64_t seed, uint32_t threads, float rate)
{
    tl_model *m;
    ck_assert_tl_ok(tl_model_create(&m, 8, 8, 1, seed));
    ck_assert_tl_ok(tl_model_set_threads(m, threads));
    tl_conv2d_options c = TL_CONV2D_OPTIONS_INIT;
    c.filters = 8;
    c.activation = TL_ACT_RELU;
    ck_assert_tl_ok(tl_model_add_conv2d(NULL, m, &c));
    tl_maxpool2d_options p = TL_MAXPOOL2D_OPTIONS_INIT;
    ck_assert_tl_ok(tl_model_add_maxpool2d(NULL, m, &p));
    ck_assert_tl_ok(tl_model_add_flatten(NULL, m, NULL));
    if (rate >= 0.0f)
        add_dropout(m, rate);
    tl_dense_options d = TL_DENSE_OPTIONS_INIT;
    d.units = 4;
    d.activation = TL_ACT_SOFTMAX;
    ck_assert_tl_ok(tl_model_add_dense(NULL, m, &d));
    compile_sgd(m, TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY);
    return m;
}

START_TEST(dropout_training_repeats_and_learns)
{
    tl_dataset *train = th_quadrant_dataset(512, 8, 8, 1, 1), *test = th_quadrant_dataset(256, 8, 8, 1, 2);
    for (uint32_t threads = 1; threads <= 2; threads++) {
        tl_model *a = dropout_cnn(3, threads, 0.5f), *b = dropout_cnn(3, threads, 0.5f);
        fit(a, train, 3, 7, 1);
        fit(b, train, 3, 7, 1);
        ck_assert_msg(same_params(a, b), "%u threads: same seeds, different weights", threads);
        double loss, acc;
        ck_assert_tl_ok(tl_model_evaluate(&loss, &acc, a, test, 0));
        fprintf(stderr, "dropout 0.5, %u thread(s): test accuracy %.4f\n", threads, acc);
        ck_assert_msg(acc > 0.9, "%u threads: accuracy %.3f with dropout", threads, acc);
        /* Without shuffling, only the masks depend on the fit seed: they
         * come from the training stream. */
        tl_model *c = dropout_cnn(3, threads, 0.5f), *d = dropout_cnn(3, threads, 0.5f);
        fit(c, train, 1, 7, 0);
        fit(d, train, 1, 8, 0);
        ck_assert_msg(!same_params(c, d), "%u threads: another training stream, the same masks", threads);
        /* Rate 0: the fit seed changes nothing without shuffling. */
        tl_model *e = dropout_cnn(3, threads, 0.0f), *f = dropout_cnn(3, threads, 0.0f);
        fit(e, train, 1, 7, 0);
        fit(f, train, 1, 8, 0);
        ck_assert(same_params(e, f));
        tl_model_free(a), tl_model_free(b), tl_model_free(c), tl_model_free(d), tl_model_free(e),
            tl_model_free(f);
    }
    tl_dataset_free(train);
    tl_dataset_free(test);
}
END_TEST

/* The training stream after fit: the shuffles only without dropout (as
 * before dropout existed), the shuffle and one key per batch with it. */
START_TEST(training_stream_draws)
{
    tl_dataset *ds = th_quadrant_dataset(100, 8, 8, 1, 1);
    for (int with = 0; with < 2; with++) {
        tl_model *m = dropout_cnn(3, 1, with ? 0.5f : -1.0f);
        fit(m, ds, 2, 42, 1);
        tli_rng ref;
        tli_rng_seed(&ref, 42, TLI_STREAM_TRAIN);
        uint32_t idx[100];
        for (int e = 0; e < 2; e++) {
            for (uint32_t i = 0; i < 100; i++)
                idx[i] = i;
            tli_rng_shuffle(&ref, idx, 100);
            for (int b = 0; with && b < (100 + 15) / 16; b++)
                (void)tli_rng_next(&ref);
        }
        ck_assert_msg(memcmp(ref.s, m->train_rng.s, sizeof ref.s) == 0, "%s dropout: the stream is elsewhere",
                      with ? "with" : "without");
        tl_model_free(m);
    }
    tl_dataset_free(ds);
}
END_TEST

/* ==== 6. files ================================================================== */

/* input 6x6x2 -> conv(4, same, relu6) -> activation(leaky, 0.25) ->
 * dropout(0.5) -> conv(4, hard_sigmoid) -> activation(hard_swish) ->
 * flatten -> dropout(0.2) -> dense(4) -> activation(softmax). */
static tl_model *file_model(uint64_t seed)
{
    tl_model *m;
    ck_assert_tl_ok(tl_model_create(&m, 6, 6, 2, seed));
    ck_assert_tl_ok(tl_model_set_threads(m, 1));
    tl_conv2d_options c = TL_CONV2D_OPTIONS_INIT;
    c.filters = 4;
    c.padding = TL_PAD_SAME;
    c.activation = TL_ACT_RELU6;
    ck_assert_tl_ok(tl_model_add_conv2d(NULL, m, &c));
    add_act(m, TL_ACT_LEAKY_RELU, 0.25f);
    add_dropout(m, 0.5f);
    c.activation = TL_ACT_HARD_SIGMOID;
    ck_assert_tl_ok(tl_model_add_conv2d(NULL, m, &c));
    add_act(m, TL_ACT_HARD_SWISH, 0.01f);
    ck_assert_tl_ok(tl_model_add_flatten(NULL, m, NULL));
    add_dropout(m, 0.2f);
    tl_dense_options d = TL_DENSE_OPTIONS_INIT;
    d.units = 4;
    ck_assert_tl_ok(tl_model_add_dense(NULL, m, &d));
    add_act(m, TL_ACT_SOFTMAX, 0.01f);
    compile_sgd(m, TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY);
    return m;
}

START_TEST(checkpoint_roundtrip_and_resume)
{
    tl_dataset *ds = th_quadrant_dataset(96, 6, 6, 2, 5);
    tl_model *straight = file_model(4), *first = file_model(4);
    fit(straight, ds, 4, 17, 1);
    fit(first, ds, 2, 17, 1);
    char *path = join(dir, "dropout.tlm");
    ck_assert_tl_ok(tl_model_save(first, path, NULL));

    tl_checkpoint_info *info;
    ck_assert_tl_ok(tl_checkpoint_info_read(&info, path));
    uint32_t major, minor;
    ck_assert_tl_ok(tl_checkpoint_info_format_version(&major, &minor, info));
    ck_assert_uint_eq(major, 1);
    ck_assert_uint_eq(minor, 1);
    ck_assert_int_eq(tl_checkpoint_info_layer_kind(info, 1), TL_LAYER_ACTIVATION);
    ck_assert_int_eq(tl_checkpoint_info_layer_kind(info, 2), TL_LAYER_DROPOUT);
    char buf[128];
    ck_assert_tl_ok(tl_checkpoint_info_layer_settings(buf, sizeof buf, NULL, info, 1));
    ck_assert_str_eq(buf, "activation=leaky_relu, alpha=0.25");
    ck_assert_tl_ok(tl_checkpoint_info_layer_settings(buf, sizeof buf, NULL, info, 2));
    ck_assert_str_eq(buf, "rate=0.5");
    ck_assert_tl_ok(tl_checkpoint_info_layer_settings(buf, sizeof buf, NULL, info, 4));
    ck_assert_str_eq(buf, "activation=hard_swish, alpha=0.01");
    tl_conv2d_options co = TL_CONV2D_OPTIONS_INIT;
    ck_assert_tl_ok(tl_checkpoint_info_layer_conv2d(&co, info, 3));
    ck_assert_int_eq(co.activation, TL_ACT_HARD_SIGMOID);
    tl_checkpoint_info_free(info);

    tl_model *resumed = NULL;
    ck_assert_tl_ok(tl_model_load(&resumed, path));
    tl_model_free(first);
    ck_assert_int_eq(tl_layer_activation(resumed->layers[0]), TL_ACT_RELU6);
    ck_assert_int_eq(tl_layer_activation(resumed->layers[1]), TL_ACT_LEAKY_RELU);
    ck_assert_int_eq(tl_layer_activation(resumed->layers[8]), TL_ACT_SOFTMAX);
    ck_assert_str_eq(tl_layer_name(resumed->layers[6]), "dropout_1");
    /* The stream came back with the weights: two more epochs (fit seed 0:
     * the saved stream goes on) end where four straight epochs did. */
    fit(resumed, ds, 2, 0, 1);
    ck_assert(same_params(straight, resumed));
    float *x = images(9, 72, 0.0f, 1.0f, 8), ya[36], yb[36];
    ck_assert_tl_ok(tl_model_predict(ya, 36, straight, x, 9, 0));
    ck_assert_tl_ok(tl_model_predict(yb, 36, resumed, x, 9, 0));
    ck_assert(same_bits(ya, yb, 36));
    free(x);
    free(path);
    tl_model_free(straight);
    tl_model_free(resumed);
    tl_dataset_free(ds);
}
END_TEST

/* A chain 1.0 could build is written as 1.0; relu6 or hard_sigmoid fused
 * in it needs 1.1. */
START_TEST(checkpoint_version_of_new_activations)
{
    static const struct {
        tl_activation conv, dense;
        uint32_t minor;
    } cases[] = {
        {TL_ACT_RELU, TL_ACT_SOFTMAX, 0},
        {TL_ACT_TANH, TL_ACT_SIGMOID, 0},
        {TL_ACT_RELU6, TL_ACT_SOFTMAX, 1},
        {TL_ACT_RELU, TL_ACT_HARD_SIGMOID, 1},
    };
    char *path = join(dir, "chain.tlm");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tl_model *m;
        ck_assert_tl_ok(tl_model_create(&m, 5, 5, 1, 1));
        tl_conv2d_options c = TL_CONV2D_OPTIONS_INIT;
        c.filters = 2;
        c.activation = cases[i].conv;
        ck_assert_tl_ok(tl_model_add_conv2d(NULL, m, &c));
        ck_assert_tl_ok(tl_model_add_flatten(NULL, m, NULL));
        tl_dense_options d = TL_DENSE_OPTIONS_INIT;
        d.units = 3;
        d.activation = cases[i].dense;
        ck_assert_tl_ok(tl_model_add_dense(NULL, m, &d));
        ck_assert_tl_ok(tl_model_save(m, path, NULL));
        tl_checkpoint_info *info;
        ck_assert_tl_ok(tl_checkpoint_info_read(&info, path));
        uint32_t minor;
        ck_assert_tl_ok(tl_checkpoint_info_format_version(NULL, &minor, info));
        ck_assert_uint_eq(minor, cases[i].minor);
        tl_checkpoint_info_free(info);
        tl_model *l;
        ck_assert_tl_ok(tl_model_load(&l, path));
        ck_assert_int_eq(tl_layer_activation(l->layers[0]), cases[i].conv);
        ck_assert_int_eq(tl_layer_activation(l->layers[2]), cases[i].dense);
        tl_model_free(l);
        tl_model_free(m);
    }
    free(path);
}
END_TEST

/* A fused leaky_relu's slope is a setting: in the checkpoint (format 1.1),
 * its settings text and options, back after loading; the default slope
 * with another activation keeps a chain in format 1.0, and a slope given
 * with an activation that does not read it is not kept. */
START_TEST(checkpoint_keeps_activation_alpha)
{
    char *path = join(dir, "alpha.tlm");
    for (int v = 0; v < 2; v++) {
        tl_model *m;
        ck_assert_tl_ok(tl_model_create(&m, 5, 5, 2, 4));
        tl_conv2d_options c = TL_CONV2D_OPTIONS_INIT;
        c.filters = 3;
        c.activation = v ? TL_ACT_RELU : TL_ACT_LEAKY_RELU;
        c.activation_alpha = v ? 0.3f : 0.1f;
        ck_assert_tl_ok(tl_model_add_conv2d(NULL, m, &c));
        ck_assert_tl_ok(tl_model_add_flatten(NULL, m, NULL));
        tl_dense_options d = TL_DENSE_OPTIONS_INIT;
        d.units = 4;
        d.activation = v ? TL_ACT_TANH : TL_ACT_LEAKY_RELU;
        d.activation_alpha = v ? 0.01f : 0.25f;
        ck_assert_tl_ok(tl_model_add_dense(NULL, m, &d));
        ck_assert_tl_ok(tl_model_save(m, path, NULL));
        tl_checkpoint_info *info;
        ck_assert_tl_ok(tl_checkpoint_info_read(&info, path));
        uint32_t minor;
        ck_assert_tl_ok(tl_checkpoint_info_format_version(NULL, &minor, info));
        ck_assert_uint_eq(minor, v ? 0 : 1);
        tl_conv2d_options co;
        ck_assert_tl_ok(tl_conv2d_options_init(&co, TL_CONV2D_OPTIONS_VERSION));
        ck_assert_tl_ok(tl_checkpoint_info_layer_conv2d(&co, info, 0));
        ck_assert(co.activation_alpha == (v ? 0.01f : 0.1f));
        tl_dense_options dop;
        ck_assert_tl_ok(tl_dense_options_init(&dop, TL_DENSE_OPTIONS_VERSION));
        ck_assert_tl_ok(tl_checkpoint_info_layer_dense(&dop, info, 2));
        ck_assert(dop.activation_alpha == (v ? 0.01f : 0.25f));
        char buf[512];
        ck_assert_tl_ok(tl_checkpoint_info_layer_settings(buf, sizeof buf, NULL, info, 2));
        ck_assert_str_eq(buf, v ? "units=4, kernel_initializer=default, bias_initializer=default, "
                                  "activation_alpha=0.01"
                                : "units=4, kernel_initializer=default, bias_initializer=default, "
                                  "activation_alpha=0.25");
        ck_assert_tl_ok(tl_checkpoint_info_layer_settings(buf, sizeof buf, NULL, info, 0));
        ck_assert_ptr_nonnull(strstr(buf, v ? ", activation_alpha=0.01" : ", activation_alpha=0.1"));
        tl_checkpoint_info_free(info);
        tl_model *back;
        ck_assert_tl_ok(tl_model_load(&back, path));
        ck_assert_int_eq(tl_layer_activation(back->layers[0]), c.activation);
        /* The same predictions: the slopes came back. */
        float *x = images(5, 50, -2.0f, 2.0f, 6), ya[20], yb[20];
        ck_assert_tl_ok(tl_model_predict(ya, 20, m, x, 5, 0));
        ck_assert_tl_ok(tl_model_predict(yb, 20, back, x, 5, 0));
        ck_assert(same_bits(ya, yb, 20));
        size_t negative = 0;
        for (int j = 0; j < 20; j++)
            negative += ya[j] < 0.0f;
        ck_assert_uint_gt(negative, 0);
        free(x);
        tl_model_free(back);
        tl_model_free(m);
    }
    free(path);
}
END_TEST

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    ck_assert_uint_eq(fread(s, 1, (size_t)n, f), (size_t)n);
    s[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return s;
}

START_TEST(safetensors_roundtrip)
{
    tl_model *a = file_model(6), *b = file_model(7);
    char *path = join(dir, "act.safetensors");
    ck_assert_tl_ok(tl_model_save_safetensors(a, path, TL_LAYOUT_PYTORCH, NULL));
    size_t len;
    char *s = read_all(path, &len);
    /* The architecture is a JSON string in the metadata: drop its escapes. */
    size_t k = 0;
    for (size_t i = 0; i < len; i++)
        if (s[i] != '\\' && s[i] != '\0')
            s[k++] = s[i];
    s[k] = '\0';
    ck_assert_ptr_nonnull(strstr(s, "\"kind\":\"activation\""));
    ck_assert_ptr_nonnull(strstr(s, "\"alpha\":0.25,\"activation\":\"leaky_relu\""));
    ck_assert_ptr_nonnull(strstr(s, "\"activation\":\"hard_swish\""));
    ck_assert_ptr_nonnull(strstr(s, "\"kind\":\"dropout\""));
    ck_assert_ptr_nonnull(strstr(s, "\"rate\":0.5"));
    ck_assert_ptr_nonnull(strstr(s, "\"activation\":\"relu6\""));
    free(s);
    ck_assert(!same_params(a, b));
    ck_assert_tl_ok(tl_model_load_safetensors(NULL, b, path, TL_LAYOUT_PYTORCH, NULL));
    ck_assert(same_params(a, b));
    free(path);
    tl_model_free(a);
    tl_model_free(b);
}
END_TEST

/* ==== 7. bad values ============================================================= */

START_TEST(bad_values)
{
    tl_model *m;
    ck_assert_tl_ok(tl_model_create(&m, 4, 4, 2, 1));
    tl_conv2d_options c = TL_CONV2D_OPTIONS_INIT;
    c.filters = 2;
    ck_assert_tl_ok(tl_model_add_conv2d(NULL, m, &c));

    tl_dropout_options d = TL_DROPOUT_OPTIONS_INIT;
    d.rate = 1.0f;
    ck_assert_tl_err(tl_model_add_dropout(NULL, m, &d), TL_EINVAL, "layer 'dropout' (dropout, index 1): rate 1 ");
    d.rate = -0.1f;
    ck_assert_tl_err(tl_model_add_dropout(NULL, m, &d), TL_EINVAL, "rate -0.1");
    d.rate = NAN;
    ck_assert_tl_err(tl_model_add_dropout(NULL, m, &d), TL_EINVAL, "rate nan must be in [0, 1)");
    d.rate = INFINITY;
    d.name = "drop";
    ck_assert_tl_err(tl_model_add_dropout(NULL, m, &d), TL_EINVAL, "'drop'");
    ck_assert_tl_err(tl_model_add_dropout(NULL, m, NULL), TL_EINVAL, "options is NULL");
    ck_assert_tl_err(tl_model_add_dropout(NULL, NULL, &d), TL_EINVAL, "model is NULL");

    tl_activation_options a = TL_ACTIVATION_OPTIONS_INIT;
    a.activation = (tl_activation)42;
    ck_assert_tl_err(tl_model_add_activation(NULL, m, &a), TL_EINVAL, "unknown activation 42");
    a.activation = TL_ACT_LEAKY_RELU;
    a.alpha = NAN;
    ck_assert_tl_err(tl_model_add_activation(NULL, m, &a), TL_EINVAL, "alpha nan must be finite");
    a.alpha = -INFINITY;
    ck_assert_tl_err(tl_model_add_activation(NULL, m, &a), TL_EINVAL, "alpha -inf");
    ck_assert_tl_err(tl_model_add_activation(NULL, m, NULL), TL_EINVAL, "options is NULL");
    a.version = 2;
    ck_assert_tl_err(tl_model_add_activation(NULL, m, &a), TL_EVERSION, "tl_activation_options");

    /* A fused leaky_relu's slope must be finite, also when the activation
     * does not read it. */
    c.activation = TL_ACT_LEAKY_RELU;
    c.activation_alpha = NAN;
    ck_assert_tl_err(tl_model_add_conv2d(NULL, m, &c), TL_EINVAL,
                     "layer 'conv2d_1' (conv2d, index 1): activation_alpha nan must be finite");
    c.activation = TL_ACT_SILU;
    c.activation_alpha = INFINITY;
    ck_assert_tl_err(tl_model_add_conv2d(NULL, m, &c), TL_EINVAL, "activation_alpha inf must be finite");
    c.activation_alpha = 0.01f;
    c.activation = (tl_activation)10;
    ck_assert_tl_err(tl_model_add_conv2d(NULL, m, &c), TL_EINVAL, "unknown activation 10");
    ck_assert_uint_eq(tl_model_num_layers(m), 1);
    ck_assert_tl_ok(tl_model_add_flatten(NULL, m, NULL));
    tl_dense_options de = TL_DENSE_OPTIONS_INIT;
    de.units = 3;
    de.activation = TL_ACT_LEAKY_RELU;
    de.activation_alpha = -INFINITY;
    ck_assert_tl_err(tl_model_add_dense(NULL, m, &de), TL_EINVAL,
                     "layer 'dense' (dense, index 2): activation_alpha -inf must be finite");
    de.activation_alpha = 0.01f;
    /* The model is as it was: two layers, and it still takes more. */
    ck_assert_uint_eq(tl_model_num_layers(m), 2);
    de.activation = TL_ACT_RELU6;
    ck_assert_tl_ok(tl_model_add_dense(NULL, m, &de));
    ck_assert_str_eq(tl_layer_name(m->layers[2]), "dense");
    ck_assert_str_eq(tl_layer_name(add_dropout(m, 0.0f)), "dropout");
    tl_model_free(m);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("activation");
    TCase *v = tcase_create("values");
    tcase_add_test(v, names_kinds_and_options);
    tcase_add_test(v, values_by_hand);
    tcase_add_test(v, derivatives_at_the_kinks);
    suite_add_tcase(s, v);

    TCase *g = tcase_create("gradients");
    tcase_set_timeout(g, 300);
    tcase_add_loop_test(g, layer_gradients, 0, 2 * NACT);
    tcase_add_loop_test(g, model_gradients, 0, 2);
    suite_add_tcase(s, g);

    TCase *f = tcase_create("fused");
    tcase_set_timeout(f, 300);
    tcase_add_loop_test(f, fused_equals_activation_layer, 0, 3);
    tcase_add_test(f, softmax_layer_as_output);
    suite_add_tcase(s, f);

    TCase *z = tcase_create("fused_needing_input");
    tcase_set_timeout(z, 600);
    tcase_add_loop_test(z, zact_fused_equals_activation_layer, 0, NFP * NZA);
    tcase_add_loop_test(z, zact_gradients, 0, NFP * NZA);
    tcase_add_test(z, zact_scratch_and_no_allocation);
    suite_add_tcase(s, z);

    TCase *d = tcase_create("dropout");
    tcase_set_timeout(d, 300);
    tcase_add_test(d, dropout_is_identity_in_inference);
    tcase_add_test(d, dropout_training_masks);
    tcase_add_test(d, dropout_training_repeats_and_learns);
    tcase_add_test(d, training_stream_draws);
    suite_add_tcase(s, d);

    TCase *io = tcase_create("files");
    tcase_set_timeout(io, 300);
    tcase_add_checked_fixture(io, setup, teardown);
    tcase_add_test(io, checkpoint_roundtrip_and_resume);
    tcase_add_test(io, checkpoint_version_of_new_activations);
    tcase_add_test(io, checkpoint_keeps_activation_alpha);
    tcase_add_test(io, safetensors_roundtrip);
    suite_add_tcase(s, io);

    TCase *bad = tcase_create("errors");
    tcase_add_test(bad, bad_values);
    suite_add_tcase(s, bad);
    return th_run(s);
}
