/* test_graph.c - graph models (libtl 1.1) through the public API: a
 * residual network learns the spot task with 1 and 2 threads and trains
 * bit-for-bit deterministically; it survives checkpoint and safetensors
 * round trips (predictions, summary, structure, resumed training); its
 * structure reads back through tl_layer_input, the summary's "Connected
 * to" column and a checkpoint's description; copy, clone, parameter
 * transfer, freezing, extractors, heads and join work on graphs; average
 * pooling, global average pooling, add and concatenate give hand-computed
 * values and their gradients match finite differences; bad graphs are
 * refused with the right status and message, leaving the model as it was.
 *
 * The "learning" test case takes most of the time; leave it out with
 * CK_EXCLUDE_TAGS=learning or CK_RUN_CASE=<another case>. */
#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "helpers.h"

/* ---- scratch directory ---------------------------------------------------------- */

static char *tg_join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static char *tg_dir_create(void)
{
    const char *base = getenv("TMPDIR");
    char *tmpl = tg_join(base && *base ? base : "/tmp", "tl-graph-XXXXXX");
    ck_assert_msg(mkdtemp(tmpl) != NULL, "mkdtemp: %s", strerror(errno));
    return tmpl;
}

/* Number of entries in `dir` (without . and ..). */
static size_t tg_dir_entries(const char *dir)
{
    DIR *d = opendir(dir);
    size_t n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL)
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    if (d)
        closedir(d);
    return n;
}

static void tg_dir_remove(char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char *p = tg_join(dir, e->d_name);
        unlink(p);
        free(p);
    }
    if (d)
        closedir(d);
    rmdir(dir);
    free(dir);
}

static char *dir;

static void setup(void)
{
    dir = tg_dir_create();
}

static void teardown(void)
{
    tg_dir_remove(dir);
    dir = NULL;
}

/* ---- the residual network ---------------------------------------------------------- */

/* The spot task at 8x8x3: a 2x2 spot 0.5 brighter than uniform noise in
 * [0, 1) marks the quadrant (the class). Small enough that the stack of
 * 3x3 convolutions sees the zero padding from every pixel, which is what
 * lets a network ending in global average pooling tell quadrants apart. */
#define SIDE 8
#define CH 3
#define EX (SIDE * SIDE * CH)
#define CLASSES 4

static bool reduced(void)
{
    const char *r = getenv("TL_TEST_REDUCED");
    return r && r[0] && strcmp(r, "0") != 0;
}

/* Handles of the residual network's layers. */
typedef struct resnet {
    tl_model *m;
    tl_layer *stem, *a, *b, *sum, *post, *pool, *gap, *dense;
} resnet;

/* conv2d(8, 3x3, same, relu) = stem -> conv2d(8, same, relu) ->
 * conv2d(8, same, linear) -> add(that, stem) -> conv2d(8, same, relu)
 * (the ReLU after the join) -> maxpool 2x2 -> global_avgpool2d ->
 * dense(classes, softmax). Layers 0..7; automatic names conv2d, conv2d_1,
 * conv2d_2, add, conv2d_3, max_pooling2d, global_average_pooling2d, dense. */
static resnet build_resnet(uint64_t seed, uint32_t classes)
{
    resnet r;
    ck_assert_tl_ok(tl_model_create(&r.m, SIDE, SIDE, CH, seed));
    ck_assert_tl_ok(tl_model_set_threads(r.m, 1));
    tl_conv2d_options c = TL_CONV2D_OPTIONS_INIT;
    c.filters = 8;
    c.padding = TL_PAD_SAME;
    c.activation = TL_ACT_RELU;
    ck_assert_tl_ok(tl_model_add_conv2d(&r.stem, r.m, &c));
    ck_assert_tl_ok(tl_model_add_conv2d(&r.a, r.m, &c));
    c.activation = TL_ACT_LINEAR;
    ck_assert_tl_ok(tl_model_add_conv2d(&r.b, r.m, &c));
    const tl_layer *both[2] = {r.b, r.stem};
    ck_assert_tl_ok(tl_model_add_add(&r.sum, r.m, both, 2, NULL));
    c.activation = TL_ACT_RELU;
    ck_assert_tl_ok(tl_model_add_conv2d(&r.post, r.m, &c)); /* input NULL: the add */
    tl_maxpool2d_options p = TL_MAXPOOL2D_OPTIONS_INIT;
    ck_assert_tl_ok(tl_model_add_maxpool2d(&r.pool, r.m, &p));
    ck_assert_tl_ok(tl_model_add_global_avgpool2d(&r.gap, r.m, NULL, NULL));
    tl_dense_options d = TL_DENSE_OPTIONS_INIT;
    d.units = classes;
    d.activation = TL_ACT_SOFTMAX;
    ck_assert_tl_ok(tl_model_add_dense(&r.dense, r.m, &d));
    return r;
}

static void compile_adam(tl_model *m, float lr)
{
    tl_optimizer *o;
    tl_adam_options ao = TL_ADAM_OPTIONS_INIT;
    ao.learning_rate = lr;
    ck_assert_tl_ok(tl_optimizer_create_adam(&o, &ao));
    ck_assert_tl_ok(tl_model_compile(m, o, TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY));
}

static void fit(tl_model *m, const tl_dataset *ds, uint32_t epochs, uint64_t seed)
{
    tl_fit_options fo = TL_FIT_OPTIONS_INIT;
    fo.epochs = epochs;
    fo.batch_size = 32;
    fo.seed = seed;
    ck_assert_tl_ok(tl_model_fit(m, ds, &fo));
}

/* A residual net trained briefly (not to accuracy): weights and Adam
 * state far from their initial values. */
static resnet trained_resnet(uint64_t seed)
{
    resnet r = build_resnet(seed, CLASSES);
    tl_dataset *ds = th_spot_dataset(256, SIDE, SIDE, CH, 1.0f, 0.5f, 40 + seed);
    compile_adam(r.m, 3e-3f);
    fit(r.m, ds, 2, 5);
    tl_dataset_free(ds);
    return r;
}

/* n test images (caller frees). */
static float *images(size_t n, uint64_t seed)
{
    float *x;
    int32_t *y;
    th_spot_data(&x, &y, n, SIDE, SIDE, CH, 1.0f, 0.5f, seed);
    free(y);
    return x;
}

/* Predictions of n examples (caller frees); *count receives their number. */
static float *predict(tl_model *m, const float *x, size_t n, size_t *count)
{
    tl_shape s;
    ck_assert_tl_ok(tl_model_output_shape(&s, m));
    size_t k = n * tl_shape_count(&s);
    float *y = malloc(k * sizeof *y);
    ck_assert_tl_ok(tl_model_predict(y, k, m, x, n, 0));
    if (count)
        *count = k;
    return y;
}

/* Both models give bit-identical predictions on x. */
static bool same_predictions(tl_model *a, tl_model *b, const float *x, size_t n)
{
    size_t na, nb;
    float *pa = predict(a, x, n, &na), *pb = predict(b, x, n, &nb);
    bool same = na == nb && memcmp(pa, pb, na * sizeof *pa) == 0;
    free(pa);
    free(pb);
    return same;
}

static bool same_params(const tl_model *a, const tl_model *b)
{
    size_t na, nb;
    float *pa = th_all_params(a, &na), *pb = th_all_params(b, &nb);
    bool same = pa && pb && na == nb && memcmp(pa, pb, na * sizeof *pa) == 0;
    free(pa);
    free(pb);
    return same;
}

/* Parameter tensor p of a layer (caller frees). */
static float *weights(const tl_layer *l, size_t p, size_t *count)
{
    tl_param_info info;
    ck_assert_tl_ok(tl_layer_param_info(&info, l, p));
    float *v = malloc(info.count * sizeof *v);
    ck_assert_tl_ok(tl_layer_get_weights(v, info.count, l, p));
    *count = info.count;
    return v;
}

/* Every parameter tensor of the two layers is the same, bit for bit. */
static bool same_layer_weights(const tl_layer *la, const tl_layer *lb)
{
    if (tl_layer_num_params(la) != tl_layer_num_params(lb))
        return false;
    for (size_t p = 0; p < tl_layer_num_params(la); p++) {
        size_t na, nb;
        float *va = weights(la, p, &na), *vb = weights(lb, p, &nb);
        bool same = na == nb && memcmp(va, vb, na * sizeof *va) == 0;
        free(va);
        free(vb);
        if (!same)
            return false;
    }
    return true;
}

static tl_layer *layer_at(const tl_model *m, size_t i)
{
    tl_layer *l = NULL;
    ck_assert_tl_ok(tl_model_layer(&l, m, i));
    return l;
}

/* Index of input k of layer l; -1 for the model's input. */
static long input_index(const tl_layer *l, size_t k)
{
    tl_layer *in = (tl_layer *)1;
    ck_assert_tl_ok(tl_layer_input(&in, l, k));
    return in ? (long)tl_layer_index(in) : -1;
}

/* Same number of layers, and each has the same name, kind, output shape
 * and inputs (by index). */
static void assert_same_structure(const tl_model *a, const tl_model *b)
{
    ck_assert_uint_eq(tl_model_num_layers(a), tl_model_num_layers(b));
    for (size_t i = 0; i < tl_model_num_layers(a); i++) {
        const tl_layer *la = layer_at(a, i), *lb = layer_at(b, i);
        ck_assert_str_eq(tl_layer_name(la), tl_layer_name(lb));
        ck_assert_int_eq(tl_layer_get_kind(la), tl_layer_get_kind(lb));
        ck_assert_int_eq(tl_layer_activation(la), tl_layer_activation(lb));
        tl_shape sa, sb;
        ck_assert_tl_ok(tl_layer_output_shape(&sa, la));
        ck_assert_tl_ok(tl_layer_output_shape(&sb, lb));
        ck_assert_int_eq(memcmp(&sa, &sb, sizeof sa), 0);
        ck_assert_uint_eq(tl_layer_num_inputs(la), tl_layer_num_inputs(lb));
        for (size_t k = 0; k < tl_layer_num_inputs(la); k++)
            ck_assert_msg(input_index(la, k) == input_index(lb, k), "layer %zu ('%s') input %zu: %ld vs %ld", i,
                          tl_layer_name(la), k, input_index(la, k), input_index(lb, k));
    }
}

/* The residual net's wiring: stem <- input, a <- stem, b <- a,
 * add <- (b, stem), then a chain. */
static void assert_resnet_wiring(const tl_model *m)
{
    static const long want[8][2] = {{-1}, {0}, {1}, {2, 0}, {3}, {4}, {5}, {6}};
    ck_assert_uint_eq(tl_model_num_layers(m), 8);
    for (size_t i = 0; i < 8; i++) {
        const tl_layer *l = layer_at(m, i);
        ck_assert_uint_eq(tl_layer_num_inputs(l), i == 3 ? 2 : 1);
        for (size_t k = 0; k < tl_layer_num_inputs(l); k++)
            ck_assert_msg(input_index(l, k) == want[i][k], "layer %zu input %zu is %ld, expected %ld", i, k,
                          input_index(l, k), want[i][k]);
    }
}

/* ---- text capture -------------------------------------------------------------------- */

typedef struct text {
    char *s;
    size_t len;
} text;

static int append(const char *t, size_t len, void *payload)
{
    text *x = payload;
    char *grown = realloc(x->s, x->len + len + 1);
    if (grown == NULL)
        return 1;
    x->s = grown;
    memcpy(x->s + x->len, t, len);
    x->len += len;
    x->s[x->len] = '\0';
    return 0;
}

/* The model's summary through the sizing call (cap 0 is a query: TL_OK). */
static char *summary(const tl_model *m)
{
    size_t needed = 0;
    ck_assert_tl_ok(tl_model_summary(NULL, 0, &needed, m));
    ck_assert_uint_gt(needed, 100);
    char *buf = malloc(needed + 1);
    size_t again = 0;
    ck_assert_tl_ok(tl_model_summary(buf, needed + 1, &again, m));
    ck_assert_uint_eq(again, needed);
    ck_assert_uint_eq(strlen(buf), needed);
    return buf;
}

/* The line of `s` that contains `needle` (caller frees), or NULL. */
static char *line_with(const char *s, const char *needle)
{
    const char *hit = strstr(s, needle);
    if (hit == NULL)
        return NULL;
    const char *start = hit;
    while (start > s && start[-1] != '\n')
        start--;
    const char *end = strchr(hit, '\n');
    size_t n = end ? (size_t)(end - start) : strlen(start);
    char *line = malloc(n + 1);
    memcpy(line, start, n);
    line[n] = '\0';
    return line;
}

/* The line naming layer `name (type)` ends with `connected` (the
 * "Connected to" column is the last one). */
static void assert_connected(const char *table, const char *layer, const char *connected)
{
    char *line = line_with(table, layer);
    ck_assert_msg(line != NULL, "no line for %s in\n%s", layer, table);
    size_t n = strlen(line), k = strlen(connected);
    ck_assert_msg(n >= k && strcmp(line + n - k, connected) == 0 && line[n - k - 1] == ' ',
                  "line '%s' does not end with '%s'", line, connected);
    free(line);
}

/* ==== 1. learning ======================================================================= */

START_TEST(resnet_learns_the_spot_task)
{
    /* 2,000 training images, 1,000 test images; Adam 3e-3, batch 32, 8
     * epochs (measured: 0.987 with 1 thread, 0.986 with 2; about a second). */
    const uint32_t threads = (uint32_t)_i + 1;
    tl_dataset *train = th_spot_dataset(2000, SIDE, SIDE, CH, 1.0f, 0.5f, 1);
    tl_dataset *test = th_spot_dataset(1000, SIDE, SIDE, CH, 1.0f, 0.5f, 2);
    ck_assert_ptr_nonnull(train);
    ck_assert_ptr_nonnull(test);
    resnet r = build_resnet(3, CLASSES);
    ck_assert_tl_ok(tl_model_set_threads(r.m, threads));
    ck_assert_uint_eq(tl_model_param_count(r.m), 4 * (3 * 3 * 8 * 8 + 8) - 3 * 3 * 5 * 8 + 8 * 4 + 4);
    compile_adam(r.m, 3e-3f);
    double loss0, acc0;
    ck_assert_tl_ok(tl_model_evaluate(&loss0, &acc0, r.m, test, 0));
    ck_assert_msg(acc0 < 0.5, "%u threads: %.3f accuracy before training", threads, acc0);
    fit(r.m, train, 8, 0);
    double loss, acc;
    ck_assert_tl_ok(tl_model_evaluate(&loss, &acc, r.m, test, 0));
    fprintf(stderr, "residual net, %u thread(s): test accuracy %.4f (before %.4f), loss %.4f (before %.4f)\n",
            threads, acc, acc0, loss, loss0);
    ck_assert_msg(acc > 0.95, "%u threads: test accuracy %.4f", threads, acc);
    ck_assert(loss < loss0 / 5);
    ck_assert_uint_eq(tl_optimizer_steps(tl_model_optimizer(r.m)), 8 * ((2000 + 31) / 32));
    tl_model_free(r.m);
    tl_dataset_free(train);
    tl_dataset_free(test);
}
END_TEST

/* A residual net trained 2 epochs on 200 examples. */
static tl_model *trained(uint64_t model_seed, uint64_t fit_seed, uint32_t threads, const tl_dataset *ds)
{
    resnet r = build_resnet(model_seed, CLASSES);
    ck_assert_tl_ok(tl_model_set_threads(r.m, threads));
    compile_adam(r.m, 3e-3f);
    tl_fit_options fo = TL_FIT_OPTIONS_INIT;
    fo.epochs = 2;
    fo.batch_size = 16;
    fo.seed = fit_seed;
    ck_assert_tl_ok(tl_model_fit(r.m, ds, &fo));
    return r.m;
}

START_TEST(resnet_same_seed_same_bits)
{
    tl_dataset *ds = th_spot_dataset(200, SIDE, SIDE, CH, 1.0f, 0.5f, 4);
    for (uint32_t threads = 1; threads <= 2; threads++) {
        tl_model *a = trained(7, 0, threads, ds), *b = trained(7, 0, threads, ds);
        /* Layer by layer, tensor by tensor, through tl_layer_get_weights. */
        for (size_t i = 0; i < tl_model_num_layers(a); i++)
            ck_assert_msg(same_layer_weights(layer_at(a, i), layer_at(b, i)),
                          "%u threads: layer %zu differs between two runs with the same seeds", threads, i);
        ck_assert(same_params(a, b));
        /* Training did move every layer with parameters, so the equality
         * above is not that of two untouched models. */
        resnet fresh = build_resnet(7, CLASSES);
        for (size_t i = 0; i < 8; i++)
            if (tl_layer_num_params(layer_at(a, i)))
                ck_assert_msg(!same_layer_weights(layer_at(a, i), layer_at(fresh.m, i)), "layer %zu never trained",
                              i);
        tl_model_free(fresh.m);
        tl_model *c = trained(8, 0, threads, ds);
        ck_assert_msg(!same_params(a, c), "%u threads: another model seed, same weights", threads);
        tl_model *d = trained(7, 99, threads, ds);
        ck_assert_msg(!same_params(a, d), "%u threads: another shuffle, same weights", threads);
        tl_model_free(a), tl_model_free(b), tl_model_free(c), tl_model_free(d);
    }
    tl_dataset_free(ds);
}
END_TEST

/* ==== 2. round trips ==================================================================== */

START_TEST(checkpoint_roundtrip_and_resume)
{
    resnet r = trained_resnet(11);
    char *path = tg_join(dir, "resnet.tlm");
    ck_assert_tl_ok(tl_model_save(r.m, path, NULL)); /* with the optimizer: the default */
    tl_model *l = NULL;
    ck_assert_tl_ok(tl_model_load(&l, path));

    /* Same structure (names, kinds, shapes, inputs), parameters, summary. */
    assert_same_structure(r.m, l);
    assert_resnet_wiring(l);
    ck_assert(same_params(r.m, l));
    char *sa = summary(r.m), *sb = summary(l);
    ck_assert_str_eq(sa, sb);
    ck_assert_ptr_nonnull(strstr(sb, "Connected to"));
    free(sa);
    free(sb);
    /* Bit-identical predictions (same thread count). */
    ck_assert_uint_eq(tl_model_threads(l), 1);
    float *x = images(64, 77);
    ck_assert(same_predictions(r.m, l, x, 64));
    /* It comes back compiled, with Adam's step count. */
    ck_assert_ptr_nonnull(tl_model_optimizer(l));
    ck_assert_uint_eq(tl_optimizer_steps(tl_model_optimizer(l)), tl_optimizer_steps(tl_model_optimizer(r.m)));
    ck_assert_uint_eq(tl_optimizer_steps(tl_model_optimizer(l)), 2 * 256 / 32);

    /* One more epoch on each (fit seed 0: the saved training stream goes on)
     * ends with the same bits: the optimizer state and the stream came back. */
    tl_dataset *ds = th_spot_dataset(256, SIDE, SIDE, CH, 1.0f, 0.5f, 51);
    fit(r.m, ds, 1, 0);
    fit(l, ds, 1, 0);
    ck_assert(same_params(r.m, l));
    ck_assert(same_predictions(r.m, l, x, 64));
    ck_assert_uint_eq(tl_optimizer_steps(tl_model_optimizer(l)), 3 * 256 / 32);

    /* Control: the same weights without the optimizer state, freshly
     * compiled, go elsewhere - the resume above is not trivially equal. */
    char *bare = tg_join(dir, "bare.tlm");
    tl_save_options so = TL_SAVE_OPTIONS_INIT;
    so.include_optimizer = 0;
    ck_assert_tl_ok(tl_model_save(r.m, bare, &so));
    tl_model *nb = NULL;
    ck_assert_tl_ok(tl_model_load(&nb, bare));
    ck_assert_ptr_null(tl_model_optimizer(nb));
    ck_assert(same_params(r.m, nb));
    compile_adam(nb, 3e-3f);
    fit(r.m, ds, 1, 0);
    fit(nb, ds, 1, 0);
    ck_assert(!same_params(r.m, nb));

    tl_model_free(nb);
    tl_model_free(l);
    tl_model_free(r.m);
    tl_dataset_free(ds);
    free(x);
    free(path);
    free(bare);
}
END_TEST

START_TEST(checkpoint_resume_equals_uninterrupted)
{
    /* As test_io: 4 epochs straight equal 2 epochs, save, load, 2 more. */
    tl_dataset *ds = th_spot_dataset(160, SIDE, SIDE, CH, 1.0f, 0.5f, 9);
    resnet straight = build_resnet(21, CLASSES), first = build_resnet(21, CLASSES);
    compile_adam(straight.m, 3e-3f);
    compile_adam(first.m, 3e-3f);
    fit(straight.m, ds, 4, 17);
    fit(first.m, ds, 2, 17);
    char *path = tg_join(dir, "epoch2.tlm");
    ck_assert_tl_ok(tl_model_save(first.m, path, NULL));
    tl_model_free(first.m);
    tl_model *resumed = NULL;
    ck_assert_tl_ok(tl_model_load(&resumed, path));
    fit(resumed, ds, 2, 0);
    ck_assert(same_params(straight.m, resumed));
    ck_assert_uint_eq(tl_optimizer_steps(tl_model_optimizer(resumed)),
                      tl_optimizer_steps(tl_model_optimizer(straight.m)));
    tl_model_free(resumed);
    tl_model_free(straight.m);
    tl_dataset_free(ds);
    free(path);
}
END_TEST

START_TEST(safetensors_roundtrip_keras_and_pytorch)
{
    resnet r = trained_resnet(12);
    float *x = images(32, 78);
    const tl_tensor_layout layouts[2] = {TL_LAYOUT_KERAS, TL_LAYOUT_PYTORCH};
    const char *files[2] = {"resnet.keras.safetensors", "resnet.torch.safetensors"};
    for (int i = 0; i < 2; i++) {
        char *path = tg_join(dir, files[i]);
        ck_assert_tl_ok(tl_model_save_safetensors(r.m, path, layouts[i], NULL));
        resnet fresh = build_resnet(99, CLASSES);
        ck_assert(!same_predictions(r.m, fresh.m, x, 32));
        tl_transfer_report *rep = NULL;
        ck_assert_tl_ok(tl_model_load_safetensors(&rep, fresh.m, path, layouts[i], NULL));
        /* Four convolutions and the dense layer, kernel and bias each. */
        ck_assert_uint_eq(tl_transfer_report_count_outcome(rep, TL_TRANSFER_COPIED), 10);
        ck_assert_uint_eq(tl_transfer_report_params_copied(rep), tl_model_param_count(r.m));
        tl_transfer_report_free(rep);
        ck_assert_msg(same_params(r.m, fresh.m), "%s: parameters differ", files[i]);
        ck_assert_msg(same_predictions(r.m, fresh.m, x, 32), "%s: predictions differ", files[i]);
        tl_model_free(fresh.m);
        free(path);
    }
    /* The two layouts really differ: a PyTorch file does not load as Keras. */
    char *torch = tg_join(dir, files[1]);
    resnet other = build_resnet(98, CLASSES);
    ck_assert_tl_err(tl_model_load_safetensors(NULL, other.m, torch, TL_LAYOUT_KERAS, NULL), TL_ESHAPE, "conv2d");
    tl_model_free(other.m);
    free(torch);
    free(x);
    tl_model_free(r.m);
}
END_TEST

/* ==== 3. structure and introspection ==================================================== */

START_TEST(layer_inputs_and_kinds)
{
    resnet r = build_resnet(1, CLASSES);
    const char *names[8] = {"conv2d", "conv2d_1", "conv2d_2", "add", "conv2d_3", "max_pooling2d",
                            "global_average_pooling2d", "dense"};
    tl_layer *handles[8] = {r.stem, r.a, r.b, r.sum, r.post, r.pool, r.gap, r.dense};
    for (size_t i = 0; i < 8; i++) {
        ck_assert_ptr_eq(layer_at(r.m, i), handles[i]);
        ck_assert_str_eq(tl_layer_name(handles[i]), names[i]);
        ck_assert_uint_eq(tl_layer_index(handles[i]), i);
    }
    assert_resnet_wiring(r.m);
    /* The handles themselves. */
    tl_layer *in = (tl_layer *)1;
    ck_assert_tl_ok(tl_layer_input(&in, r.stem, 0));
    ck_assert_ptr_null(in); /* the model's input */
    ck_assert_tl_ok(tl_layer_input(&in, r.a, 0));
    ck_assert_ptr_eq(in, r.stem);
    ck_assert_uint_eq(tl_layer_num_inputs(r.sum), 2);
    ck_assert_tl_ok(tl_layer_input(&in, r.sum, 0));
    ck_assert_ptr_eq(in, r.b);
    ck_assert_tl_ok(tl_layer_input(&in, r.sum, 1));
    ck_assert_ptr_eq(in, r.stem);
    ck_assert_tl_ok(tl_layer_input(&in, r.post, 0));
    ck_assert_ptr_eq(in, r.sum);
    ck_assert_tl_ok(tl_layer_input(&in, r.dense, 0));
    ck_assert_ptr_eq(in, r.gap);
    /* Past the last input. (*out is not checked: the library sets it to
     * NULL before the range check, although common.h says errors leave
     * *out unchanged; reported, not asserted here.) */
    in = r.stem; /* an error leaves *out as it was */
    ck_assert_tl_err(tl_layer_input(&in, r.sum, 2), TL_ERANGE, "has 2 inputs, not index 2");
    ck_assert_ptr_eq(in, r.stem);
    ck_assert_tl_err(tl_layer_input(&in, r.stem, 1), TL_ERANGE, "has 1 input, not index 1");
    ck_assert_int_eq(tl_layer_input(NULL, r.sum, 0), TL_EINVAL);
    ck_assert_int_eq(tl_layer_input(&in, NULL, 0), TL_EINVAL);
    ck_assert_uint_eq(tl_layer_num_inputs(NULL), 0);

    /* Kinds, shapes, parameters of the new layers. */
    ck_assert_int_eq(tl_layer_get_kind(r.sum), TL_LAYER_ADD);
    ck_assert_int_eq(tl_layer_get_kind(r.gap), TL_LAYER_GLOBAL_AVGPOOL2D);
    ck_assert_str_eq(tl_layer_kind_str(TL_LAYER_ADD), "add");
    ck_assert_str_eq(tl_layer_kind_str(TL_LAYER_CONCATENATE), "concatenate");
    ck_assert_str_eq(tl_layer_kind_str(TL_LAYER_GLOBAL_AVGPOOL2D), "global_avgpool2d");
    ck_assert_str_eq(tl_layer_kind_str(TL_LAYER_AVGPOOL2D), "avgpool2d");
    ck_assert_uint_eq(tl_layer_num_params(r.sum), 0);
    ck_assert_uint_eq(tl_layer_num_params(r.gap), 0);
    tl_shape s;
    ck_assert_tl_ok(tl_layer_output_shape(&s, r.sum));
    ck_assert(s.rank == 3 && s.dims[0] == 8 && s.dims[1] == 8 && s.dims[2] == 8);
    ck_assert_tl_ok(tl_layer_output_shape(&s, r.pool));
    ck_assert(s.rank == 3 && s.dims[0] == 4 && s.dims[1] == 4 && s.dims[2] == 8);
    ck_assert_tl_ok(tl_layer_input_shape(&s, r.gap));
    ck_assert(s.rank == 3 && s.dims[0] == 4 && s.dims[1] == 4 && s.dims[2] == 8);
    ck_assert_tl_ok(tl_layer_output_shape(&s, r.gap));
    ck_assert(s.rank == 1 && s.dims[0] == 8);
    tl_param_info pi;
    ck_assert_tl_ok(tl_layer_param_info(&pi, r.dense, 0));
    ck_assert(pi.shape.rank == 2 && pi.shape.dims[0] == 8 && pi.shape.dims[1] == CLASSES);
    tl_model_free(r.m);
}
END_TEST

START_TEST(summary_connected_to_column)
{
    resnet r = build_resnet(1, CLASSES);
    char *t = summary(r.m);
    ck_assert_msg(strstr(t, "Connected to") != NULL, "%s", t);
    assert_connected(t, "conv2d (conv2d)", "(model input)");
    assert_connected(t, "conv2d_1 (conv2d)", "conv2d");
    assert_connected(t, "add (add)", "conv2d_2, conv2d");
    assert_connected(t, "conv2d_3 (conv2d)", "add");
    assert_connected(t, "global_average_pooling2d (global_avgpool2d)", "max_pooling2d");
    assert_connected(t, "dense (dense)", "global_average_pooling2d");
    ck_assert_ptr_nonnull(strstr(t, "(None, 8, 8, 8)"));
    ck_assert_ptr_nonnull(strstr(t, "(None, 8)"));
    ck_assert_ptr_nonnull(strstr(t, "Total params: 2,012"));
    /* The sizing call and a cap too small. */
    size_t needed = 0, n2 = 0;
    ck_assert_tl_ok(tl_model_summary(NULL, 0, &needed, r.m));
    ck_assert_uint_eq(needed, strlen(t));
    char small[16];
    ck_assert_tl_err(tl_model_summary(small, sizeof small, &n2, r.m), TL_ETOOBIG, "");
    ck_assert_uint_eq(n2, needed);
    ck_assert_uint_eq(strlen(small), sizeof small - 1);
    /* The write variant gives the same text. */
    text w = {NULL, 0};
    ck_assert_tl_ok(tl_model_summary_write(r.m, append, &w));
    ck_assert_str_eq(w.s, t);
    free(w.s);
    free(t);
    tl_model_free(r.m);

    /* A chain has no such column. */
    tl_model *chain = th_seed_cnn(16, 16, 1, 4, 1);
    t = summary(chain);
    ck_assert_ptr_null(strstr(t, "Connected to"));
    ck_assert_ptr_nonnull(strstr(t, "conv2d (conv2d)"));
    free(t);
    /* A chain written with explicit inputs naming the previous layer is
     * still a chain. */
    tl_model *m;
    ck_assert_tl_ok(tl_model_create(&m, 8, 8, 1, 1));
    tl_conv2d_options c = TL_CONV2D_OPTIONS_INIT;
    c.filters = 2;
    tl_layer *first;
    ck_assert_tl_ok(tl_model_add_conv2d(&first, m, &c));
    c.input = first;
    ck_assert_tl_ok(tl_model_add_conv2d(NULL, m, &c));
    t = summary(m);
    ck_assert_ptr_null(strstr(t, "Connected to"));
    free(t);
    /* One skip makes it a graph. */
    tl_layer *both[2] = {first, first};
    ck_assert_tl_ok(tl_model_add_concatenate(NULL, m, (const tl_layer *const *)both, 2, NULL));
    /* conv2d_1's output is now unused, but the summary still renders. */
    t = summary(m);
    assert_connected(t, "concatenate (concatenate)", "conv2d, conv2d");
    free(t);
    tl_model_free(m);
    tl_model_free(chain);
}
END_TEST

START_TEST(checkpoint_info_of_a_graph)
{
    resnet r = trained_resnet(13);
    char *path = tg_join(dir, "info.tlm");
    ck_assert_tl_ok(tl_model_save(r.m, path, NULL));
    tl_checkpoint_info *info = NULL;
    ck_assert_tl_ok(tl_checkpoint_info_read(&info, path));
    ck_assert_uint_eq(tl_checkpoint_info_num_layers(info), 8);
    ck_assert_int_eq(tl_checkpoint_info_layer_kind(info, 3), TL_LAYER_ADD);
    ck_assert_str_eq(tl_checkpoint_info_layer_name(info, 3), "add");
    ck_assert_int_eq(tl_checkpoint_info_layer_kind(info, 6), TL_LAYER_GLOBAL_AVGPOOL2D);
    ck_assert_uint_eq(tl_checkpoint_info_param_count(info), tl_model_param_count(r.m));
    tl_shape s;
    ck_assert_tl_ok(tl_checkpoint_info_layer_output_shape(&s, info, 6));
    ck_assert(s.rank == 1 && s.dims[0] == 8);

    /* Settings as text: the stem, and a kind without settings. */
    const char *want = "filters=8, kernel_h=3, kernel_w=3, stride_h=1, stride_w=1, padding=same, groups=1, "
                       "dilation_h=1, dilation_w=1, pad_top=0, pad_bottom=0, pad_left=0, pad_right=0, "
                       "kernel_initializer=default, bias_initializer=default, activation_alpha=0.01";
    size_t needed = 0;
    ck_assert_tl_ok(tl_checkpoint_info_layer_settings(NULL, 0, &needed, info, 0));
    ck_assert_uint_eq(needed, strlen(want));
    char buf[256];
    ck_assert_tl_ok(tl_checkpoint_info_layer_settings(buf, sizeof buf, NULL, info, 0));
    ck_assert_str_eq(buf, want);
    ck_assert_tl_err(tl_checkpoint_info_layer_settings(buf, 10, NULL, info, 0), TL_ETOOBIG, "");
    ck_assert_tl_ok(tl_checkpoint_info_layer_settings(buf, sizeof buf, &needed, info, 3));
    ck_assert_str_eq(buf, "");
    ck_assert_uint_eq(needed, 0);
    ck_assert_tl_ok(tl_checkpoint_info_layer_settings(buf, sizeof buf, NULL, info, 5));
    ck_assert_msg(strstr(buf, "pool_h=2") != NULL && strstr(buf, "padding=valid") != NULL, "%s", buf);
    ck_assert_tl_err(tl_checkpoint_info_layer_settings(buf, sizeof buf, NULL, info, 8), TL_ERANGE, "8");
    /* The stem's options rebuild it; a file's layer has no input handle. */
    tl_conv2d_options co = TL_CONV2D_OPTIONS_INIT;
    co.input = (const tl_layer *)1;
    ck_assert_tl_ok(tl_checkpoint_info_layer_conv2d(&co, info, 0));
    ck_assert(co.filters == 8 && co.padding == TL_PAD_SAME && co.activation == TL_ACT_RELU);
    ck_assert_ptr_null(co.input);
    ck_assert_tl_err(tl_checkpoint_info_layer_conv2d(&co, info, 3), TL_EINVAL, "add");

    /* The file's summary shows the graph too, and the model's table. */
    text w = {NULL, 0};
    ck_assert_tl_ok(tl_checkpoint_info_summary_write(info, append, &w));
    ck_assert_ptr_nonnull(strstr(w.s, "Connected to"));
    assert_connected(w.s, "add (add)", "conv2d_2, conv2d");
    assert_connected(w.s, "conv2d (conv2d)", "(model input)");
    ck_assert_ptr_nonnull(strstr(w.s, "Optimizer: adam"));
    char *t = summary(r.m);
    /* Every layer line of the model's table appears in the file's. */
    for (size_t i = 0; i < 8; i++) {
        char key[96];
        snprintf(key, sizeof key, " %s (", tl_layer_name(layer_at(r.m, i)));
        char *a = line_with(t, key), *b = line_with(w.s, key);
        ck_assert_ptr_nonnull(a);
        ck_assert_ptr_nonnull(b);
        ck_assert_str_eq(a, b);
        free(a);
        free(b);
    }
    free(t);
    free(w.s);
    tl_checkpoint_info_free(info);

    /* A chain's file has no column. */
    tl_model *chain = th_seed_cnn(12, 12, 1, 4, 1);
    char *cpath = tg_join(dir, "chain.tlm");
    ck_assert_tl_ok(tl_model_save(chain, cpath, NULL));
    ck_assert_tl_ok(tl_checkpoint_info_read(&info, cpath));
    w.s = NULL, w.len = 0;
    ck_assert_tl_ok(tl_checkpoint_info_summary_write(info, append, &w));
    ck_assert_ptr_null(strstr(w.s, "Connected to"));
    ck_assert_ptr_nonnull(strstr(w.s, "dense (dense)"));
    free(w.s);
    tl_checkpoint_info_free(info);
    tl_model_free(chain);
    free(cpath);
    free(path);
    tl_model_free(r.m);
}
END_TEST

/* ==== 4. transfer on graphs ============================================================= */

START_TEST(copy_and_clone_structure)
{
    resnet r = trained_resnet(14);
    float *x = images(32, 79);
    tl_model *cp = NULL;
    ck_assert_tl_ok(tl_model_copy(&cp, r.m));
    assert_same_structure(r.m, cp);
    assert_resnet_wiring(cp);
    ck_assert(same_params(r.m, cp));
    ck_assert(same_predictions(r.m, cp, x, 32));
    ck_assert_ptr_null(tl_model_optimizer(cp));

    /* Clone with a wider head: same graph, fresh weights, 6 outputs. */
    tl_clone_options o = TL_CLONE_OPTIONS_INIT;
    o.seed = 123;
    o.head_units = 6;
    tl_model *cl = NULL;
    ck_assert_tl_ok(tl_model_clone_structure(&cl, r.m, &o));
    ck_assert_uint_eq(tl_model_num_layers(cl), 8);
    for (size_t i = 0; i < 7; i++) {
        const tl_layer *la = layer_at(r.m, i), *lb = layer_at(cl, i);
        ck_assert_str_eq(tl_layer_name(la), tl_layer_name(lb));
        ck_assert_int_eq(tl_layer_get_kind(la), tl_layer_get_kind(lb));
        if (tl_layer_num_params(la))
            ck_assert_msg(!same_layer_weights(la, lb), "layer %zu: the clone kept the weights", i);
    }
    assert_resnet_wiring(cl);
    tl_shape s;
    ck_assert_tl_ok(tl_model_output_shape(&s, cl));
    ck_assert(s.rank == 1 && s.dims[0] == 6);
    tl_param_info pi;
    ck_assert_tl_ok(tl_layer_param_info(&pi, layer_at(cl, 7), 0));
    ck_assert(pi.shape.dims[0] == 8 && pi.shape.dims[1] == 6);
    ck_assert_str_eq(tl_layer_name(layer_at(cl, 7)), "dense");
    ck_assert_uint_eq(tl_model_seed(cl), 123);
    /* Its weights are those of the same graph built with seed 123. */
    resnet ref = build_resnet(123, 6);
    ck_assert(same_params(cl, ref.m));
    tl_model_free(ref.m);
    /* It trains (the graph is whole). */
    tl_dataset *ds = th_spot_dataset(64, SIDE, SIDE, CH, 1.0f, 0.5f, 3);
    compile_adam(cl, 1e-3f);
    fit(cl, ds, 1, 1);

    /* Dropping the add's consumers and more: a clone ending in the add. */
    o.head_units = 0;
    o.drop_last = 4;
    tl_model *cut = NULL;
    ck_assert_tl_ok(tl_model_clone_structure(&cut, r.m, &o));
    ck_assert_uint_eq(tl_model_num_layers(cut), 4);
    ck_assert_int_eq(input_index(layer_at(cut, 3), 0), 2);
    ck_assert_int_eq(input_index(layer_at(cut, 3), 1), 0);

    tl_model_free(cut);
    tl_dataset_free(ds);
    tl_model_free(cl);
    tl_model_free(cp);
    tl_model_free(r.m);
    free(x);
}
END_TEST

START_TEST(transfer_params_by_name_and_position)
{
    resnet r = trained_resnet(15);
    float *x = images(32, 80);
    const tl_transfer_match how[2] = {TL_MATCH_NAME, TL_MATCH_POSITION};
    for (int i = 0; i < 2; i++) {
        tl_clone_options o = TL_CLONE_OPTIONS_INIT;
        o.seed = 500 + (uint64_t)i;
        tl_model *dst = NULL;
        ck_assert_tl_ok(tl_model_clone_structure(&dst, r.m, &o));
        ck_assert(!same_predictions(r.m, dst, x, 32));
        tl_transfer_options to = TL_TRANSFER_OPTIONS_INIT;
        to.match = how[i];
        tl_transfer_report *rep = NULL;
        ck_assert_tl_ok(tl_model_transfer_params(&rep, dst, r.m, &to));
        ck_assert_uint_eq(tl_transfer_report_count_outcome(rep, TL_TRANSFER_COPIED), 5);
        ck_assert_uint_eq(tl_transfer_report_count_outcome(rep, TL_TRANSFER_NO_PARAMS), 3);
        ck_assert_uint_eq(tl_transfer_report_params_copied(rep), tl_model_param_count(r.m));
        tl_transfer_report_free(rep);
        ck_assert_msg(same_predictions(r.m, dst, x, 32), "match %d: predictions differ", (int)how[i]);
        tl_model_free(dst);
    }
    /* By name into a graph whose layers are in another order: the second
     * branch conv named like the source's, placed elsewhere. */
    tl_model *m;
    ck_assert_tl_ok(tl_model_create(&m, SIDE, SIDE, CH, 600));
    tl_conv2d_options c = TL_CONV2D_OPTIONS_INIT;
    c.filters = 8;
    c.padding = TL_PAD_SAME;
    c.activation = TL_ACT_RELU;
    c.name = "conv2d";
    tl_layer *stem, *a, *b;
    ck_assert_tl_ok(tl_model_add_conv2d(&stem, m, &c));
    c.name = "conv2d_2"; /* same settings as the source's conv2d_2 except activation */
    c.activation = TL_ACT_LINEAR;
    c.input = stem;
    ck_assert_tl_ok(tl_model_add_conv2d(&b, m, &c));
    c.name = "conv2d_1";
    c.activation = TL_ACT_RELU;
    ck_assert_tl_ok(tl_model_add_conv2d(&a, m, &c));
    const tl_layer *ab[2] = {a, b};
    ck_assert_tl_ok(tl_model_add_add(NULL, m, ab, 2, NULL));
    tl_transfer_options to = TL_TRANSFER_OPTIONS_INIT;
    to.match = TL_MATCH_NAME;
    to.first = 0;
    to.count = 3;
    ck_assert_tl_ok(tl_model_transfer_params(NULL, m, r.m, &to));
    ck_assert(same_layer_weights(stem, r.stem));
    ck_assert(same_layer_weights(a, r.a));
    ck_assert(same_layer_weights(b, r.b));
    /* By position the kinds agree too, so it copies blindly: a's weights
     * into b's slot. */
    to.match = TL_MATCH_POSITION;
    ck_assert_tl_ok(tl_model_transfer_params(NULL, m, r.m, &to));
    ck_assert(same_layer_weights(b, r.a));
    ck_assert(same_layer_weights(a, r.b));
    tl_model_free(m);
    tl_model_free(r.m);
    free(x);
}
END_TEST

START_TEST(freeze_upto_keeps_frozen_layers)
{
    float *x;
    int32_t *y;
    th_spot_data(&x, &y, 32, SIDE, SIDE, CH, 1.0f, 0.5f, 81);
    const size_t ks[3] = {1, 2, 4};
    for (int t = 0; t < 3; t++) {
        const size_t k = ks[t];
        resnet r = build_resnet(16, CLASSES);
        ck_assert_tl_ok(tl_model_freeze_upto(r.m, k));
        compile_adam(r.m, 1e-2f);
        tl_model *before = NULL;
        ck_assert_tl_ok(tl_model_copy(&before, r.m));
        double loss;
        ck_assert_tl_ok(tl_model_train_step(&loss, r.m, x, y, NULL, 32));
        ck_assert_tl_ok(tl_model_train_step(&loss, r.m, x, y, NULL, 32));
        for (size_t i = 0; i < 8; i++) {
            const tl_layer *l = layer_at(r.m, i);
            ck_assert_int_eq(tl_layer_is_trainable(l), i >= k);
            if (tl_layer_num_params(l) == 0)
                continue;
            bool same = same_layer_weights(l, layer_at(before, i));
            ck_assert_msg(same == (i < k), "freeze_upto(%zu): layer %zu %s", k, i,
                          same ? "did not train" : "changed while frozen");
        }
        tl_model_free(before);
        tl_model_free(r.m);
    }

    /* Only the branch's second conv frozen: the gradient still reaches the
     * stem through both paths, exactly as when nothing is frozen. One SGD
     * step on two identical nets; the stem and conv2d_1 end equal. */
    resnet all = build_resnet(17, CLASSES), most = build_resnet(17, CLASSES);
    ck_assert_tl_ok(tl_layer_set_trainable(most.b, 0));
    tl_optimizer *o;
    ck_assert_tl_ok(tl_optimizer_create_sgd(&o, NULL));
    ck_assert_tl_ok(tl_model_compile(all.m, o, TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY));
    ck_assert_tl_ok(tl_optimizer_create_sgd(&o, NULL));
    ck_assert_tl_ok(tl_model_compile(most.m, o, TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY));
    size_t nb;
    float *b0 = weights(most.b, 0, &nb), *s0 = weights(most.stem, 0, &nb);
    double la, lb;
    ck_assert_tl_ok(tl_model_train_step(&la, all.m, x, y, NULL, 32));
    ck_assert_tl_ok(tl_model_train_step(&lb, most.m, x, y, NULL, 32));
    ck_assert(la == lb);
    float *b1 = weights(most.b, 0, &nb), *s1 = weights(most.stem, 0, &nb);
    ck_assert_int_eq(memcmp(b0, b1, nb * sizeof *b0), 0);
    ck_assert_int_ne(memcmp(s0, s1, 3 * 3 * 3 * 8 * sizeof *s0), 0);
    ck_assert_msg(same_layer_weights(all.stem, most.stem), "the stem's update depends on the branch being frozen");
    ck_assert(same_layer_weights(all.a, most.a));
    ck_assert(same_layer_weights(all.post, most.post));
    ck_assert(!same_layer_weights(all.b, most.b));
    free(b0), free(b1), free(s0), free(s1);
    tl_model_free(all.m);
    tl_model_free(most.m);
    free(x);
    free(y);
}
END_TEST

START_TEST(extractor_head_join_equals_original)
{
    resnet r = trained_resnet(18);
    float *x = images(40, 82);
    tl_model *ext = NULL;
    ck_assert_tl_ok(tl_model_extractor_create_at(&ext, r.m, "global_average_pooling2d"));
    ck_assert_uint_eq(tl_model_num_layers(ext), 7);
    ck_assert_uint_eq(tl_model_trainable_param_count(ext), 0);
    ck_assert_int_eq(input_index(layer_at(ext, 3), 0), 2);
    ck_assert_int_eq(input_index(layer_at(ext, 3), 1), 0);
    /* Same as the cut by count. */
    tl_model *ext7 = NULL;
    ck_assert_tl_ok(tl_model_extractor_create(&ext7, r.m, 7));
    assert_same_structure(ext, ext7);
    ck_assert(same_params(ext, ext7));
    tl_model_free(ext7);

    tl_model *head = NULL;
    ck_assert_tl_ok(tl_model_head_create(&head, ext, 4));
    tl_shape in;
    ck_assert_tl_ok(tl_model_input_shape(&in, head));
    ck_assert(in.dims[0] == 1 && in.dims[1] == 1 && in.dims[2] == 8);
    ck_assert_tl_ok(tl_model_add_flatten(NULL, head, NULL));
    tl_dense_options d = TL_DENSE_OPTIONS_INIT;
    d.units = CLASSES;
    d.activation = TL_ACT_SOFTMAX;
    tl_layer *hd;
    ck_assert_tl_ok(tl_model_add_dense(&hd, head, &d));
    for (size_t p = 0; p < 2; p++) {
        size_t n;
        float *w = weights(r.dense, p, &n);
        ck_assert_tl_ok(tl_layer_set_weights(hd, p, w, n));
        free(w);
    }
    tl_model *joined = NULL;
    ck_assert_tl_ok(tl_model_join(&joined, ext, head));
    ck_assert_uint_eq(tl_model_num_layers(joined), 9);
    ck_assert_int_eq(input_index(layer_at(joined, 3), 0), 2);
    ck_assert_int_eq(input_index(layer_at(joined, 3), 1), 0);
    ck_assert_int_eq(input_index(layer_at(joined, 7), 0), 6);
    ck_assert_int_eq(tl_layer_get_kind(layer_at(joined, 7)), TL_LAYER_FLATTEN);
    ck_assert_str_eq(tl_layer_name(layer_at(joined, 8)), "dense");
    size_t n;
    float *po = predict(r.m, x, 40, &n), *pj = predict(joined, x, 40, NULL);
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(po[i] == pj[i], "output %zu: joined %.9g, original %.9g", i, pj[i], po[i]);
    /* The features are the GAP's outputs: head(features) = original too. */
    float *feat = predict(ext, x, 40, NULL), *ph = predict(head, feat, 40, NULL);
    ck_assert_int_eq(memcmp(ph, po, n * sizeof *po), 0);
    free(po), free(pj), free(feat), free(ph);
    tl_model_free(joined);
    tl_model_free(head);
    tl_model_free(ext);

    /* Cut inside the residual block: at the add's first input. */
    ck_assert_tl_ok(tl_model_extractor_create_at(&ext, r.m, "conv2d_2"));
    ck_assert_uint_eq(tl_model_num_layers(ext), 3);
    tl_model_free(ext);
    ck_assert_tl_ok(tl_model_extractor_create_at(&ext, r.m, "add"));
    ck_assert_uint_eq(tl_model_num_layers(ext), 4);
    tl_model_free(ext);
    ck_assert_tl_err(tl_model_extractor_create_at(&ext, r.m, "nope"), TL_ENOTFOUND, "'nope'");
    ck_assert_ptr_null(ext);
    tl_model_free(r.m);
    free(x);
}
END_TEST

/* stem -> left -> left_2, stem -> right; add(left_2, right). The right
 * branch's layer comes before left_2. */
static tl_model *two_branches(uint64_t seed, tl_layer **l)
{
    tl_model *m;
    ck_assert_tl_ok(tl_model_create(&m, SIDE, SIDE, CH, seed));
    ck_assert_tl_ok(tl_model_set_threads(m, 1));
    tl_conv2d_options c = TL_CONV2D_OPTIONS_INIT;
    c.filters = 4;
    c.padding = TL_PAD_SAME;
    c.activation = TL_ACT_RELU;
    c.name = "stem";
    ck_assert_tl_ok(tl_model_add_conv2d(&l[0], m, &c));
    c.name = "left";
    ck_assert_tl_ok(tl_model_add_conv2d(&l[1], m, &c));
    c.name = "right";
    c.input = l[0];
    ck_assert_tl_ok(tl_model_add_conv2d(&l[2], m, &c));
    c.name = "left_2";
    c.input = l[1];
    ck_assert_tl_ok(tl_model_add_conv2d(&l[3], m, &c));
    const tl_layer *both[2] = {l[3], l[2]};
    ck_assert_tl_ok(tl_model_add_add(&l[4], m, both, 2, "join"));
    return m;
}

START_TEST(extractor_leaves_out_other_branches)
{
    tl_layer *l[5];
    tl_model *m = two_branches(19, l);
    float *x = images(16, 83);
    /* Cut at left_2: 'right' does not lead to it. */
    tl_model *ext = NULL;
    ck_assert_tl_ok(tl_model_extractor_create_at(&ext, m, "left_2"));
    ck_assert_uint_eq(tl_model_num_layers(ext), 3);
    ck_assert_str_eq(tl_layer_name(layer_at(ext, 0)), "stem");
    ck_assert_str_eq(tl_layer_name(layer_at(ext, 1)), "left");
    ck_assert_str_eq(tl_layer_name(layer_at(ext, 2)), "left_2");
    ck_assert_int_eq(input_index(layer_at(ext, 2), 0), 1);
    tl_layer *none;
    ck_assert_tl_err(tl_model_layer_by_name(&none, ext, "right"), TL_ENOTFOUND, "right");
    /* Its output is left_2's: the chain stem -> left -> left_2 built by
     * hand with the same weights gives the same numbers. */
    tl_model *chain;
    ck_assert_tl_ok(tl_model_create(&chain, SIDE, SIDE, CH, 1));
    tl_model_set_threads(chain, 1);
    tl_conv2d_options c = TL_CONV2D_OPTIONS_INIT;
    c.filters = 4;
    c.padding = TL_PAD_SAME;
    c.activation = TL_ACT_RELU;
    for (int i = 0; i < 3; i++) {
        tl_layer *cl;
        ck_assert_tl_ok(tl_model_add_conv2d(&cl, chain, &c));
        const tl_layer *src = l[i == 2 ? 3 : i];
        for (size_t p = 0; p < 2; p++) {
            size_t n;
            float *w = weights(src, p, &n);
            ck_assert_tl_ok(tl_layer_set_weights(cl, p, w, n));
            free(w);
        }
    }
    ck_assert(same_predictions(ext, chain, x, 16));
    tl_model_free(chain);
    tl_model_free(ext);
    /* Cut at right: stem and right only. The cut by count (k = 3, layer 2)
     * is the same. */
    ck_assert_tl_ok(tl_model_extractor_create_at(&ext, m, "right"));
    ck_assert_uint_eq(tl_model_num_layers(ext), 2);
    ck_assert_str_eq(tl_layer_name(layer_at(ext, 1)), "right");
    ck_assert_int_eq(input_index(layer_at(ext, 1), 0), 0);
    tl_model *byk = NULL;
    ck_assert_tl_ok(tl_model_extractor_create(&byk, m, 3));
    assert_same_structure(ext, byk);
    tl_model_free(byk);
    tl_model_free(ext);
    /* Cut at the join: everything. */
    ck_assert_tl_ok(tl_model_extractor_create_at(&ext, m, "join"));
    ck_assert_uint_eq(tl_model_num_layers(ext), 5);
    ck_assert(same_predictions(ext, m, x, 16));
    tl_model_free(ext);
    tl_model_free(m);
    free(x);
}
END_TEST

/* ==== 5. values by hand ================================================================= */

/* A model of one pooling layer on a 4x4x1 input holding 1..16 row by row:
 *
 *      1  2  3  4
 *      5  6  7  8
 *      9 10 11 12
 *     13 14 15 16
 */
static void pool_once(float *out, size_t count, const tl_avgpool2d_options *o)
{
    float x[16];
    for (int i = 0; i < 16; i++)
        x[i] = (float)(i + 1);
    tl_model *m;
    ck_assert_tl_ok(tl_model_create(&m, 4, 4, 1, 1));
    tl_layer *l;
    ck_assert_tl_ok(tl_model_add_avgpool2d(&l, m, o));
    ck_assert_int_eq(tl_layer_get_kind(l), TL_LAYER_AVGPOOL2D);
    ck_assert_str_eq(tl_layer_name(l), "average_pooling2d");
    tl_shape s;
    ck_assert_tl_ok(tl_model_output_shape(&s, m));
    ck_assert(s.rank == 3 && s.dims[0] == 2 && s.dims[1] == 2 && s.dims[2] == 1);
    ck_assert_tl_ok(tl_model_predict(out, count, m, x, 1, 0));
    tl_model_free(m);
}

START_TEST(avgpool_by_hand)
{
    float y[4];
    /* 2x2 valid, stride 2: (1+2+5+6)/4 = 3.5, (3+4+7+8)/4 = 5.5,
     * (9+10+13+14)/4 = 11.5, (11+12+15+16)/4 = 13.5. Padding is valid, so
     * count_include_pad changes nothing. */
    tl_avgpool2d_options o = TL_AVGPOOL2D_OPTIONS_INIT;
    for (int cip = 0; cip < 2; cip++) {
        o.count_include_pad = cip;
        pool_once(y, 4, &o);
        ck_assert_float_eq(y[0], 3.5f);
        ck_assert_float_eq(y[1], 5.5f);
        ck_assert_float_eq(y[2], 11.5f);
        ck_assert_float_eq(y[3], 13.5f);
    }

    /* 3x3, stride 2, same: out = ceil(4 / 2) = 2; padding (2-1)*2 + 3 - 4
     * = 1 in each direction, all of it at the bottom / right (Keras). The
     * windows cover rows 0..2 and 2..4, columns likewise (4 is padding):
     *   (0,0) rows 0-2, cols 0-2: 1+2+3+5+6+7+9+10+11 = 54 over 9 cells = 6
     *   (0,1) rows 0-2, cols 2-3 + pad: 3+4+7+8+11+12 = 45 over 6 real cells
     *   (1,0) rows 2-3 + pad, cols 0-2: 9+10+11+13+14+15 = 72 over 6
     *   (1,1) rows 2-3, cols 2-3: 11+12+15+16 = 54 over 4
     * count_include_pad 0 divides by the real cells: 6, 7.5, 12, 13.5;
     * 1 divides by the whole 3x3 window: 6, 5, 8, 6. */
    o.pool_h = o.pool_w = 3;
    o.stride_h = o.stride_w = 2;
    o.padding = TL_PAD_SAME;
    o.count_include_pad = 0;
    pool_once(y, 4, &o);
    ck_assert_float_eq(y[0], 6.0f);
    ck_assert_float_eq(y[1], 7.5f);
    ck_assert_float_eq(y[2], 12.0f);
    ck_assert_float_eq(y[3], 13.5f);
    o.count_include_pad = 1;
    pool_once(y, 4, &o);
    ck_assert_float_eq(y[0], 6.0f);
    ck_assert_float_eq(y[1], 5.0f);
    ck_assert_float_eq(y[2], 8.0f);
    ck_assert_float_eq(y[3], 6.0f);

    /* Options: defaults, and a version this libtl does not know. */
    tl_avgpool2d_options d;
    memset(&d, 0xff, sizeof d);
    ck_assert_tl_ok(tl_avgpool2d_options_init(&d, TL_AVGPOOL2D_OPTIONS_VERSION));
    ck_assert(d.version == 2 && d.pool_h == 2 && d.pool_w == 2 && d.stride_h == 0 && d.stride_w == 0 &&
              d.padding == TL_PAD_VALID && d.count_include_pad == 0 && d.name == NULL && d.input == NULL &&
              d.pad_top == 0 && d.pad_bottom == 0 && d.pad_left == 0 && d.pad_right == 0);
    ck_assert_tl_err(tl_avgpool2d_options_init(&d, 3), TL_EVERSION, "version 3");
    tl_model *m;
    ck_assert_tl_ok(tl_model_create(&m, 4, 4, 1, 1));
    o.version = 3;
    ck_assert_tl_err(tl_model_add_avgpool2d(NULL, m, &o), TL_EVERSION, "version 3");
    o.version = 1;
    o.padding = TL_PAD_VALID;
    o.pool_h = o.pool_w = 5;
    ck_assert_tl_err(tl_model_add_avgpool2d(NULL, m, &o), TL_ESHAPE, "(4, 4, 1)");
    ck_assert_uint_eq(tl_model_num_layers(m), 0);
    tl_model_free(m);
}
END_TEST

START_TEST(global_avgpool_by_hand)
{
    /* Two 2x3x2 examples, channels interleaved (NHWC):
     *   example 0, channel 0: 1 2 3 / 4 5 6          sum 21, mean 3.5
     *              channel 1: -3 6 0.5 / 1.5 7 0     sum 12, mean 2
     *   example 1: example 0 times -2                means -7, -4 */
    const float c0[6] = {1, 2, 3, 4, 5, 6}, c1[6] = {-3, 6, 0.5f, 1.5f, 7, 0};
    float x[2 * 12];
    for (int i = 0; i < 6; i++) {
        x[2 * i] = c0[i];
        x[2 * i + 1] = c1[i];
        x[12 + 2 * i] = -2 * c0[i];
        x[12 + 2 * i + 1] = -2 * c1[i];
    }
    tl_model *m;
    ck_assert_tl_ok(tl_model_create(&m, 2, 3, 2, 1));
    tl_layer *g;
    ck_assert_tl_ok(tl_model_add_global_avgpool2d(&g, m, NULL, "gap"));
    ck_assert_str_eq(tl_layer_name(g), "gap");
    tl_shape s;
    ck_assert_tl_ok(tl_model_output_shape(&s, m));
    ck_assert(s.rank == 1 && s.dims[0] == 2);
    float y[4] = {0};
    ck_assert_tl_ok(tl_model_predict(y, 4, m, x, 2, 0));
    ck_assert_float_eq(y[0], 3.5f);
    ck_assert_float_eq(y[1], 2.0f);
    ck_assert_float_eq(y[2], -7.0f);
    ck_assert_float_eq(y[3], -4.0f);
    /* One example per batch: the same. */
    ck_assert_tl_ok(tl_model_predict(y, 4, m, x, 2, 1));
    ck_assert_float_eq(y[1], 2.0f);
    ck_assert_float_eq(y[2], -7.0f);
    /* A flat input is refused. */
    ck_assert_tl_err(tl_model_add_global_avgpool2d(NULL, m, NULL, NULL), TL_ESHAPE, "got (2,)");
    ck_assert_uint_eq(tl_model_num_layers(m), 1);
    tl_model_free(m);
}
END_TEST

/* 1x1 convolution with one filter: y = k x + b. */
static tl_layer *affine(tl_model *m, const tl_layer *input, float k, float b)
{
    tl_conv2d_options c = TL_CONV2D_OPTIONS_INIT;
    c.filters = 1;
    c.kernel_h = c.kernel_w = 1;
    c.input = input;
    tl_layer *l;
    ck_assert_tl_ok(tl_model_add_conv2d(&l, m, &c));
    ck_assert_tl_ok(tl_layer_set_weights(l, 0, &k, 1));
    ck_assert_tl_ok(tl_layer_set_weights(l, 1, &b, 1));
    return l;
}

START_TEST(add_and_concatenate_by_hand)
{
    /* Two 2x2x1 examples; c1 = 2x, c2 = c1 + 1 = 2x + 1;
     * add(c1, c2) = 4x + 1, add(c1, c1, c2) = 6x + 1;
     * concatenate(s, c2, s3, c1) = (4x + 1, 2x + 1, 6x + 1, 2x) per pixel. */
    const float x[8] = {1, 2, 3, 4, -1, 0.5f, 10, -2.5f};
    tl_model *m;
    ck_assert_tl_ok(tl_model_create(&m, 2, 2, 1, 1));
    tl_layer *c1 = affine(m, NULL, 2, 0), *c2 = affine(m, c1, 1, 1);
    const tl_layer *pair[2] = {c1, c2}, *triple[3] = {c1, c1, c2};
    tl_layer *s2, *s3;
    ck_assert_tl_ok(tl_model_add_add(&s2, m, pair, 2, NULL));
    ck_assert_tl_ok(tl_model_add_add(&s3, m, triple, 3, NULL));
    ck_assert_str_eq(tl_layer_name(s3), "add_1");
    const tl_layer *four[4] = {s2, c2, s3, c1};
    tl_layer *cat;
    ck_assert_tl_ok(tl_model_add_concatenate(&cat, m, four, 4, NULL));
    tl_shape s;
    ck_assert_tl_ok(tl_model_output_shape(&s, m));
    ck_assert(s.rank == 3 && s.dims[0] == 2 && s.dims[1] == 2 && s.dims[2] == 4);
    float y[2 * 4 * 4];
    ck_assert_tl_ok(tl_model_predict(y, 32, m, x, 2, 0));
    for (int px = 0; px < 8; px++) {
        const float v = x[px];
        ck_assert_float_eq(y[4 * px + 0], 4 * v + 1);
        ck_assert_float_eq(y[4 * px + 1], 2 * v + 1);
        ck_assert_float_eq(y[4 * px + 2], 6 * v + 1);
        ck_assert_float_eq(y[4 * px + 3], 2 * v);
    }
    tl_model_free(m);

    /* Flat inputs: concatenate(flatten(c2), flatten(c1)) = the four
     * values of 2x + 1, then the four of 2x. */
    ck_assert_tl_ok(tl_model_create(&m, 2, 2, 1, 1));
    c1 = affine(m, NULL, 2, 0);
    c2 = affine(m, c1, 1, 1);
    tl_layer *f1, *f2;
    ck_assert_tl_ok(tl_model_add_flatten_from(&f1, m, c1, NULL));
    ck_assert_tl_ok(tl_model_add_flatten_from(&f2, m, c2, "flat_c2"));
    ck_assert_int_eq(input_index(f1, 0), 0);
    ck_assert_int_eq(input_index(f2, 0), 1);
    const tl_layer *flats[2] = {f2, f1};
    ck_assert_tl_ok(tl_model_add_concatenate(NULL, m, flats, 2, NULL));
    ck_assert_tl_ok(tl_model_output_shape(&s, m));
    ck_assert(s.rank == 1 && s.dims[0] == 8);
    float z[16];
    ck_assert_tl_ok(tl_model_predict(z, 16, m, x, 2, 0));
    for (int n = 0; n < 2; n++)
        for (int i = 0; i < 4; i++) {
            ck_assert_float_eq(z[8 * n + i], 2 * x[4 * n + i] + 1);
            ck_assert_float_eq(z[8 * n + 4 + i], 2 * x[4 * n + i]);
        }
    tl_model_free(m);
}
END_TEST

/* stem -> left -> left_2 and stem -> right, joined by add or concatenate
 * (variant 0: add(left_2, right), 1: concatenate(left_2, right), 2:
 * add(left_2, right, left_2), 3: concatenate(left_2, right, left_2)), then
 * global average pooling and dense(4, softmax); tanh convolutions so the
 * loss is smooth for finite differences. */
static tl_model *branchy(int variant)
{
    tl_model *m;
    ck_assert_tl_ok(tl_model_create(&m, SIDE, SIDE, CH, 31));
    ck_assert_tl_ok(tl_model_set_threads(m, 1));
    tl_conv2d_options c = TL_CONV2D_OPTIONS_INIT;
    c.filters = 4;
    c.padding = TL_PAD_SAME;
    c.activation = TL_ACT_TANH;
    tl_layer *stem, *left, *right, *left2, *join;
    ck_assert_tl_ok(tl_model_add_conv2d(&stem, m, &c));
    ck_assert_tl_ok(tl_model_add_conv2d(&left, m, &c));
    c.input = stem;
    ck_assert_tl_ok(tl_model_add_conv2d(&right, m, &c));
    c.input = left;
    c.activation = TL_ACT_LINEAR;
    ck_assert_tl_ok(tl_model_add_conv2d(&left2, m, &c));
    const tl_layer *in[3] = {left2, right, left2};
    const size_t n = variant < 2 ? 2 : 3;
    if (variant % 2)
        ck_assert_tl_ok(tl_model_add_concatenate(&join, m, in, n, NULL));
    else
        ck_assert_tl_ok(tl_model_add_add(&join, m, in, n, NULL));
    ck_assert_tl_ok(tl_model_add_global_avgpool2d(NULL, m, NULL, NULL));
    tl_dense_options d = TL_DENSE_OPTIONS_INIT;
    d.units = CLASSES;
    d.activation = TL_ACT_SOFTMAX;
    ck_assert_tl_ok(tl_model_add_dense(NULL, m, &d));
    return m;
}

START_TEST(graph_gradients_match_finite_differences)
{
    /* One SGD step with learning rate 1 from zero biases leaves each bias
     * at minus its gradient. Central differences of the mean loss
     * (tl_model_evaluate) over the same 16 examples must agree, for every
     * bias of every convolution: the stem's gradient is the sum of what
     * comes back through both branches, 'right' gets its gradient only
     * through the join's second input; left_2, given twice in variants 2
     * and 3, gets the sum of both parts. */
    static const char *const what[4] = {"add", "concatenate", "add, left_2 twice", "concatenate, left_2 twice"};
    tl_dataset *ds = th_spot_dataset(16, SIDE, SIDE, CH, 1.0f, 0.5f, 61);
    for (int variant = 0; variant < 4; variant++) {
        tl_model *m = branchy(variant), *probe = NULL;
        ck_assert_tl_ok(tl_model_copy(&probe, m));
        ck_assert_tl_ok(tl_model_compile(probe, NULL, TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY));
        tl_sgd_options so = TL_SGD_OPTIONS_INIT;
        so.learning_rate = 1.0f;
        tl_optimizer *o;
        ck_assert_tl_ok(tl_optimizer_create_sgd(&o, &so));
        ck_assert_tl_ok(tl_model_compile(m, o, TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY));
        double loss, loss0;
        ck_assert_tl_ok(tl_model_train_step(&loss, m, tl_dataset_images(ds), tl_dataset_labels(ds), NULL, 16));
        ck_assert_tl_ok(tl_model_evaluate(&loss0, NULL, probe, ds, 0));
        ck_assert_double_eq_tol(loss, loss0, 1e-6);
        double worst = 0;
        for (size_t i = 0; i < 4; i++) {
            float g[4], b[4] = {0, 0, 0, 0};
            ck_assert_tl_ok(tl_layer_get_weights(g, 4, layer_at(m, i), 1));
            tl_layer *pl = layer_at(probe, i);
            for (int j = 0; j < 4; j++) {
                const float e = 1e-2f;
                double lp, lm;
                b[j] = e;
                ck_assert_tl_ok(tl_layer_set_weights(pl, 1, b, 4));
                ck_assert_tl_ok(tl_model_evaluate(&lp, NULL, probe, ds, 0));
                b[j] = -e;
                ck_assert_tl_ok(tl_layer_set_weights(pl, 1, b, 4));
                ck_assert_tl_ok(tl_model_evaluate(&lm, NULL, probe, ds, 0));
                b[j] = 0;
                ck_assert_tl_ok(tl_layer_set_weights(pl, 1, b, 4));
                const double fd = (lp - lm) / (2.0 * e), an = -(double)g[j];
                const double err = fabs(an - fd) / (1e-3 + fabs(fd));
                worst = err > worst ? err : worst;
                ck_assert_msg(err < 0.01, "%s: layer %zu ('%s') bias %d: gradient %.6g, finite differences %.6g",
                              what[variant], i, tl_layer_name(pl), j, an, fd);
            }
        }
        fprintf(stderr, "graph gradients (%s): worst relative difference %.2g\n", what[variant], worst);
        tl_model_free(probe);
        tl_model_free(m);
    }
    tl_dataset_free(ds);
}
END_TEST

/* ==== 6. bad input ====================================================================== */

/* A stem conv(8), a conv(4) and a maxpool both taking the stem: shapes
 * (8, 8, 8), (8, 8, 4), (4, 4, 8); a layer of another model. */
START_TEST(bad_inputs_and_shapes)
{
    tl_model *m, *other;
    ck_assert_tl_ok(tl_model_create(&m, SIDE, SIDE, CH, 1));
    ck_assert_tl_ok(tl_model_create(&other, SIDE, SIDE, CH, 2));
    tl_conv2d_options c = TL_CONV2D_OPTIONS_INIT;
    c.filters = 8;
    c.padding = TL_PAD_SAME;
    tl_layer *stem, *narrow, *foreign, *pool;
    ck_assert_tl_ok(tl_model_add_conv2d(&stem, m, &c));
    ck_assert_tl_ok(tl_model_add_conv2d(&foreign, other, &c));
    c.filters = 4;
    c.input = stem;
    ck_assert_tl_ok(tl_model_add_conv2d(&narrow, m, &c));
    tl_maxpool2d_options mp = TL_MAXPOOL2D_OPTIONS_INIT;
    mp.input = stem;
    ck_assert_tl_ok(tl_model_add_maxpool2d(&pool, m, &mp));
    const size_t n0 = tl_model_num_layers(m);
    ck_assert_uint_eq(n0, 3);

    /* An input from another model, through every kind of add. */
    c.input = foreign;
    ck_assert_tl_err(tl_model_add_conv2d(NULL, m, &c), TL_EINVAL, "belongs to another model");
    ck_assert_tl_err(tl_model_add_conv2d(NULL, m, &c), TL_EINVAL, "'conv2d'");
    mp.input = foreign;
    ck_assert_tl_err(tl_model_add_maxpool2d(NULL, m, &mp), TL_EINVAL, "belongs to another model");
    tl_avgpool2d_options ap = TL_AVGPOOL2D_OPTIONS_INIT;
    ap.input = foreign;
    ck_assert_tl_err(tl_model_add_avgpool2d(NULL, m, &ap), TL_EINVAL, "belongs to another model");
    ck_assert_tl_err(tl_model_add_flatten_from(NULL, m, foreign, NULL), TL_EINVAL, "belongs to another model");
    ck_assert_tl_err(tl_model_add_global_avgpool2d(NULL, m, foreign, NULL), TL_EINVAL, "belongs to another model");
    tl_dense_options d = TL_DENSE_OPTIONS_INIT;
    d.units = 2;
    d.input = foreign;
    ck_assert_tl_err(tl_model_add_dense(NULL, m, &d), TL_EINVAL, "belongs to another model");
    const tl_layer *mixed[2] = {stem, foreign};
    ck_assert_tl_err(tl_model_add_add(NULL, m, mixed, 2, NULL), TL_EINVAL, "belongs to another model");
    ck_assert_tl_err(tl_model_add_concatenate(NULL, m, mixed, 2, NULL), TL_EINVAL, "belongs to another model");
    ck_assert_uint_eq(tl_model_num_layers(m), n0);
    ck_assert_uint_eq(tl_model_num_layers(other), 1);

    /* add of (8, 8, 8) and (8, 8, 4): both shapes named. */
    const tl_layer *wide_narrow[2] = {stem, narrow};
    ck_assert_tl_err(tl_model_add_add(NULL, m, wide_narrow, 2, NULL), TL_ESHAPE, "(8, 8, 4)");
    ck_assert_tl_err(tl_model_add_add(NULL, m, wide_narrow, 2, NULL), TL_ESHAPE, "(8, 8, 8)");
    ck_assert_uint_eq(tl_model_num_layers(m), n0);
    /* concatenate along channels is fine for those; not for (8, 8, 8) and (4, 4, 8). */
    const tl_layer *big_small[2] = {stem, pool};
    ck_assert_tl_err(tl_model_add_concatenate(NULL, m, big_small, 2, NULL), TL_ESHAPE, "(4, 4, 8)");
    ck_assert_tl_err(tl_model_add_concatenate(NULL, m, big_small, 2, NULL), TL_ESHAPE, "(8, 8, 8)");
    ck_assert_tl_err(tl_model_add_add(NULL, m, big_small, 2, NULL), TL_ESHAPE, "(4, 4, 8)");
    ck_assert_uint_eq(tl_model_num_layers(m), n0);

    /* n = 1 and n = 17 (the limit is 16); 16 is fine. */
    const tl_layer *many[17];
    for (int i = 0; i < 17; i++)
        many[i] = stem;
    ck_assert_tl_err(tl_model_add_add(NULL, m, many, 1, NULL), TL_EINVAL, "n = 1");
    ck_assert_tl_err(tl_model_add_add(NULL, m, many, 17, NULL), TL_EINVAL, "n = 17");
    ck_assert_tl_err(tl_model_add_concatenate(NULL, m, many, 1, NULL), TL_EINVAL, "n = 1");
    ck_assert_tl_err(tl_model_add_concatenate(NULL, m, many, 17, NULL), TL_EINVAL, "n = 17");
    ck_assert_tl_err(tl_model_add_add(NULL, m, many, 0, NULL), TL_EINVAL, "n = 0");
    /* NULL among the inputs, and no array. */
    const tl_layer *hole[3] = {stem, NULL, stem};
    ck_assert_tl_err(tl_model_add_add(NULL, m, hole, 3, NULL), TL_EINVAL, "inputs[1] is NULL");
    ck_assert_tl_err(tl_model_add_concatenate(NULL, m, hole, 3, NULL), TL_EINVAL, "inputs[1] is NULL");
    ck_assert_tl_err(tl_model_add_add(NULL, m, NULL, 2, NULL), TL_EINVAL, "inputs is NULL");
    ck_assert_uint_eq(tl_model_num_layers(m), n0);
    /* A name already used. */
    ck_assert_tl_err(tl_model_add_add(NULL, m, many, 2, "conv2d"), TL_EINVAL, "conv2d");
    ck_assert_uint_eq(tl_model_num_layers(m), n0);
    /* Sixteen copies of the stem: the sum is 16 times its output. */
    tl_layer *sum16;
    ck_assert_tl_ok(tl_model_add_add(&sum16, m, many, 16, NULL));
    ck_assert_uint_eq(tl_layer_num_inputs(sum16), 16);
    ck_assert_int_eq(input_index(sum16, 15), 0);
    /* Everything refused left the model as it was: it still runs once its
     * dangling branches are joined. */
    const tl_layer *ends[3] = {sum16, narrow, narrow};
    tl_layer *cat;
    ck_assert_tl_ok(tl_model_add_concatenate(&cat, m, ends, 3, NULL));
    tl_shape s;
    ck_assert_tl_ok(tl_layer_output_shape(&s, cat));
    ck_assert(s.rank == 3 && s.dims[0] == 8 && s.dims[1] == 8 && s.dims[2] == 16);
    tl_layer *pcat;
    const tl_layer *pp[2] = {pool, pool};
    ck_assert_tl_ok(tl_model_add_concatenate(&pcat, m, pp, 2, NULL));
    tl_layer *g1, *g2;
    ck_assert_tl_ok(tl_model_add_global_avgpool2d(&g1, m, cat, NULL));
    ck_assert_tl_ok(tl_model_add_global_avgpool2d(&g2, m, pcat, NULL));
    const tl_layer *gg[2] = {g1, g2};
    ck_assert_tl_ok(tl_model_add_concatenate(NULL, m, gg, 2, NULL)); /* flat: 16 + 16 */
    ck_assert_tl_ok(tl_model_output_shape(&s, m));
    ck_assert(s.rank == 1 && s.dims[0] == 32);
    float *x = images(2, 84), y[64];
    ck_assert_tl_ok(tl_model_predict(y, 64, m, x, 2, 0));
    /* By hand from the stem's and the narrow conv's outputs (extractors
     * cut at them): channels 0..7 are the means of 16 x the stem's output,
     * 8..11 and 12..15 both the narrow conv's means; 16..23 and 24..31
     * both the means of the pooled stem. */
    float stem_out[2 * 8 * 8 * 8], narrow_out[2 * 8 * 8 * 4];
    tl_model *ext;
    ck_assert_tl_ok(tl_model_extractor_create_at(&ext, m, "conv2d"));
    ck_assert_tl_ok(tl_model_predict(stem_out, 2 * 512, ext, x, 2, 0));
    tl_model_free(ext);
    ck_assert_tl_ok(tl_model_extractor_create_at(&ext, m, "conv2d_1"));
    ck_assert_tl_ok(tl_model_predict(narrow_out, 2 * 256, ext, x, 2, 0));
    tl_model_free(ext);
    for (int i = 0; i < 2; i++) {
        const float *yi = y + 32 * i;
        for (int ch = 0; ch < 8; ch++) {
            double mean = 0;
            for (int px = 0; px < 64; px++)
                mean += stem_out[512 * i + 8 * px + ch] / 64.0;
            ck_assert_float_eq_tol(yi[ch], 16 * mean, 1e-4 * (1 + fabs(16 * mean)));
            ck_assert_float_eq(yi[16 + ch], yi[24 + ch]);
        }
        for (int ch = 0; ch < 4; ch++) {
            double mean = 0;
            for (int px = 0; px < 64; px++)
                mean += narrow_out[256 * i + 4 * px + ch] / 64.0;
            ck_assert_float_eq_tol(yi[8 + ch], mean, 1e-5 * (1 + fabs(mean)));
            ck_assert_float_eq(yi[8 + ch], yi[12 + ch]);
        }
    }
    free(x);
    tl_model_free(other);
    tl_model_free(m);
}
END_TEST

START_TEST(unused_layer_refused_to_run_and_save)
{
    /* stem; branch_a and branch_b from the stem; after_a from branch_a.
     * branch_b feeds nothing. */
    tl_model *m;
    ck_assert_tl_ok(tl_model_create(&m, SIDE, SIDE, CH, 1));
    tl_conv2d_options c = TL_CONV2D_OPTIONS_INIT;
    c.filters = 4;
    c.padding = TL_PAD_SAME;
    tl_layer *stem, *a;
    ck_assert_tl_ok(tl_model_add_conv2d(&stem, m, &c));
    c.name = "branch_a";
    ck_assert_tl_ok(tl_model_add_conv2d(&a, m, &c));
    c.name = "branch_b";
    c.input = stem;
    ck_assert_tl_ok(tl_model_add_conv2d(NULL, m, &c));
    ck_assert_tl_ok(tl_model_add_global_avgpool2d(NULL, m, a, "after_a"));
    tl_dense_options d = TL_DENSE_OPTIONS_INIT;
    d.units = CLASSES;
    d.activation = TL_ACT_SOFTMAX;
    ck_assert_tl_ok(tl_model_add_dense(NULL, m, &d));
    const size_t n0 = tl_model_num_layers(m);

    float *x = images(4, 85), y[4 * CLASSES];
    ck_assert_tl_err(tl_model_predict(y, 4 * CLASSES, m, x, 4, 0), TL_EINVAL, "'branch_b'");
    ck_assert_tl_err(tl_model_predict(y, 4 * CLASSES, m, x, 4, 0), TL_EINVAL, "tl_model_predict");
    compile_adam(m, 1e-3f); /* compiling is allowed: the model is checked when it runs */
    tl_dataset *ds = th_spot_dataset(32, SIDE, SIDE, CH, 1.0f, 0.5f, 5);
    tl_fit_options fo = TL_FIT_OPTIONS_INIT;
    ck_assert_tl_err(tl_model_fit(m, ds, &fo), TL_EINVAL, "'branch_b'");
    int32_t labels[4] = {0, 1, 2, 3};
    double loss;
    ck_assert_tl_err(tl_model_train_step(&loss, m, x, labels, NULL, 4), TL_EINVAL, "'branch_b'");
    ck_assert_tl_err(tl_model_evaluate(&loss, NULL, m, ds, 0), TL_EINVAL, "'branch_b'");
    tl_dataset *feat = NULL;
    ck_assert_tl_err(tl_model_extract_features(&feat, m, ds, 0), TL_EINVAL, "'branch_b'");
    ck_assert_ptr_null(feat);
    ck_assert_uint_eq(tl_optimizer_steps(tl_model_optimizer(m)), 0);
    char *path = tg_join(dir, "dangling.tlm");
    ck_assert_tl_err(tl_model_save(m, path, NULL), TL_EINVAL, "'branch_b'");
    struct stat st;
    const int rc = stat(path, &st), err = errno;
    ck_assert_int_eq(rc, -1);
    ck_assert_int_eq(err, ENOENT);
    ck_assert_uint_eq(tg_dir_entries(dir), 0);
    /* A previous file at the path is left alone. */
    tl_model *ok = th_seed_cnn(12, 12, 1, 4, 1);
    ck_assert_tl_ok(tl_model_save(ok, path, NULL));
    ck_assert_int_eq(stat(path, &st), 0);
    const off_t size = st.st_size;
    ck_assert_tl_err(tl_model_save(m, path, NULL), TL_EINVAL, "'branch_b'");
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(st.st_size, size);
    ck_assert_uint_eq(tg_dir_entries(dir), 1);
    tl_model_free(ok);
    ck_assert_uint_eq(tl_model_num_layers(m), n0);

    /* An extractor of the part that is whole runs. */
    tl_model *ext = NULL;
    ck_assert_tl_ok(tl_model_extractor_create_at(&ext, m, "dense"));
    ck_assert_uint_eq(tl_model_num_layers(ext), 4);
    ck_assert_tl_ok(tl_model_predict(y, 4 * CLASSES, ext, x, 4, 0));
    tl_model_free(ext);
    tl_dataset_free(ds);
    free(x);
    free(path);
    tl_model_free(m);
}
END_TEST

START_TEST(pop_layers_refuses_to_orphan_a_branch)
{
    tl_layer *l[5];
    tl_model *m = two_branches(20, l);
    float *x = images(4, 86);
    size_t n;
    float *before = predict(m, x, 4, &n);
    /* Removing the join would leave 'right' (index 2) unused: 'left_2'
     * would become the model's output. */
    ck_assert_tl_err(tl_model_pop_layers(m, 1), TL_EINVAL, "'right'");
    ck_assert_uint_eq(tl_model_num_layers(m), 5);
    ck_assert_ptr_eq(layer_at(m, 4), l[4]);
    float *after = predict(m, x, 4, NULL);
    ck_assert_int_eq(memcmp(before, after, n * sizeof *before), 0);
    /* The join and left_2: 'left' would be unused. */
    ck_assert_tl_err(tl_model_pop_layers(m, 2), TL_EINVAL, "'left'");
    ck_assert_uint_eq(tl_model_num_layers(m), 5);
    ck_assert_tl_err(tl_model_pop_layers(m, 6), TL_ERANGE, "6");
    free(after);
    after = predict(m, x, 4, NULL);
    ck_assert_int_eq(memcmp(before, after, n * sizeof *before), 0);
    /* Three: the join, left_2 and right; stem -> left remains, a chain. */
    ck_assert_tl_ok(tl_model_pop_layers(m, 3));
    ck_assert_uint_eq(tl_model_num_layers(m), 2);
    ck_assert_str_eq(tl_layer_name(layer_at(m, 1)), "left");
    free(after);
    after = predict(m, x, 4, &n);
    ck_assert_uint_eq(n, 4 * 8 * 8 * 4);
    free(before), free(after), free(x);
    tl_model_free(m);
}
END_TEST

START_TEST(options_version_1_ignore_input)
{
    tl_model *m;
    ck_assert_tl_ok(tl_model_create(&m, SIDE, SIDE, CH, 1));
    tl_conv2d_options c = TL_CONV2D_OPTIONS_INIT;
    c.filters = 8;
    c.padding = TL_PAD_SAME;
    tl_layer *stem, *second, *l;
    ck_assert_tl_ok(tl_model_add_conv2d(&stem, m, &c));
    ck_assert_tl_ok(tl_model_add_conv2d(&second, m, &c));
    /* Version 1 with garbage where version 2 has `input`: ignored. */
    tl_conv2d_options c1 = c;
    c1.version = 1;
    c1.filters = 5;
    c1.input = (const tl_layer *)(uintptr_t)0xdeadbeef;
    ck_assert_tl_ok(tl_model_add_conv2d(&l, m, &c1));
    ck_assert_int_eq(input_index(l, 0), 1);
    /* Exactly libtl 1.0's size: the library reads no byte past it. */
    const size_t v1 = offsetof(tl_conv2d_options, input);
    unsigned char *small = malloc(v1);
    c1.filters = 6;
    memcpy(small, &c1, v1);
    ck_assert_tl_ok(tl_model_add_conv2d(&l, m, (const tl_conv2d_options *)(void *)small));
    free(small);
    ck_assert_int_eq(input_index(l, 0), 2);
    tl_shape s;
    ck_assert_tl_ok(tl_layer_output_shape(&s, l));
    ck_assert(s.dims[0] == 8 && s.dims[2] == 6);
    /* The same struct as version 2 would take the stem. */
    c1.version = 2;
    c1.filters = 8;
    c1.input = stem;
    ck_assert_tl_ok(tl_model_add_conv2d(&l, m, &c1));
    ck_assert_int_eq(input_index(l, 0), 0);

    tl_maxpool2d_options p = TL_MAXPOOL2D_OPTIONS_INIT;
    p.version = 1;
    p.input = (const tl_layer *)(uintptr_t)0xdeadbeef;
    ck_assert_tl_ok(tl_model_add_maxpool2d(&l, m, &p));
    ck_assert_int_eq(input_index(l, 0), 4);
    const size_t pv1 = offsetof(tl_maxpool2d_options, input);
    small = malloc(pv1);
    memcpy(small, &p, pv1);
    ck_assert_tl_ok(tl_model_add_maxpool2d(&l, m, (const tl_maxpool2d_options *)(void *)small));
    free(small);
    ck_assert_int_eq(input_index(l, 0), 5);
    ck_assert_tl_ok(tl_model_add_flatten(NULL, m, NULL));
    tl_dense_options d = TL_DENSE_OPTIONS_INIT;
    d.version = 1;
    d.units = 3;
    d.input = (const tl_layer *)(uintptr_t)0xdeadbeef;
    ck_assert_tl_ok(tl_model_add_dense(&l, m, &d));
    ck_assert_int_eq(input_index(l, 0), 7);
    const size_t dv1 = offsetof(tl_dense_options, input);
    small = malloc(dv1);
    d.units = 2;
    memcpy(small, &d, dv1);
    ck_assert_tl_ok(tl_model_add_dense(&l, m, (const tl_dense_options *)(void *)small));
    free(small);
    ck_assert_int_eq(input_index(l, 0), 8);
    ck_assert_uint_eq(tl_model_num_layers(m), 10);
    tl_model_free(m);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("graph");
    TCase *learning = tcase_create("learning");
    tcase_set_timeout(learning, 600);
    tcase_set_tags(learning, "learning");
    /* 1 and 2 threads; with TL_TEST_REDUCED (sanitizer and valgrind runs)
     * 1 only: resnet_same_seed_same_bits covers 2. */
    tcase_add_loop_test(learning, resnet_learns_the_spot_task, 0, reduced() ? 1 : 2);
    suite_add_tcase(s, learning);

    TCase *det = tcase_create("determinism");
    tcase_set_timeout(det, 300);
    tcase_add_test(det, resnet_same_seed_same_bits);
    suite_add_tcase(s, det);

    TCase *io = tcase_create("roundtrip");
    tcase_set_timeout(io, 300);
    tcase_add_checked_fixture(io, setup, teardown);
    tcase_add_test(io, checkpoint_roundtrip_and_resume);
    tcase_add_test(io, checkpoint_resume_equals_uninterrupted);
    tcase_add_test(io, safetensors_roundtrip_keras_and_pytorch);
    tcase_add_test(io, checkpoint_info_of_a_graph);
    suite_add_tcase(s, io);

    TCase *st = tcase_create("structure");
    tcase_add_test(st, layer_inputs_and_kinds);
    tcase_add_test(st, summary_connected_to_column);
    suite_add_tcase(s, st);

    TCase *tr = tcase_create("transfer");
    tcase_set_timeout(tr, 300);
    tcase_add_test(tr, copy_and_clone_structure);
    tcase_add_test(tr, transfer_params_by_name_and_position);
    tcase_add_test(tr, freeze_upto_keeps_frozen_layers);
    tcase_add_test(tr, extractor_head_join_equals_original);
    tcase_add_test(tr, extractor_leaves_out_other_branches);
    suite_add_tcase(s, tr);

    TCase *pool = tcase_create("values");
    tcase_add_test(pool, avgpool_by_hand);
    tcase_add_test(pool, global_avgpool_by_hand);
    tcase_add_test(pool, add_and_concatenate_by_hand);
    tcase_add_test(pool, graph_gradients_match_finite_differences);
    suite_add_tcase(s, pool);

    TCase *bad = tcase_create("errors");
    tcase_add_checked_fixture(bad, setup, teardown);
    tcase_add_test(bad, bad_inputs_and_shapes);
    tcase_add_test(bad, unused_layer_refused_to_run_and_save);
    tcase_add_test(bad, pop_layers_refuses_to_orphan_a_branch);
    tcase_add_test(bad, options_version_1_ignore_input);
    suite_add_tcase(s, bad);
    return th_run(s);
}
