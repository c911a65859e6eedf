/* test_fit_recipe.c - the training recipe inside tl_model_fit (issue 14):
 * augmentation of each gathered batch (crops after zero and reflect
 * padding, flips, cutout) checked pixel by pixel against a reference written
 * here from the documented rule, on images whose pixels encode their
 * coordinates; the same batches with 1 and 2 threads; a run resumed from a
 * checkpoint repeats the augmented batches (bit-identical weights); no
 * augmentation outside training; the batch hook (changes inputs and labels,
 * range checks, cancels); early stopping, restore_best (bit for bit, batch
 * norm statistics included) and checkpoints on improvement; the history
 * and its CSV; every bad option with its status and message; version 1
 * fit options.
 *
 * Internal: the test reproduces the batch keys from the model's training
 * stream (tli_rng, TLI_STREAM_TRAIN) and the per-example draws
 * (tli_augment_choose) to know which crop, flip and cutout each example got. */
#include <stdio.h>
#include <unistd.h>

#include "helpers.h"

#include "augment.h"
#include "core.h"
#include "model.h"
#include "rng.h"

/* ---- helpers ----------------------------------------------------------------- */

/* n examples of h x w x c whose every value is distinct and > 0:
 * 1 + ch + c * (x + w * (y + h * example)). */
static float *coord_images(size_t n, uint32_t h, uint32_t w, uint32_t c)
{
    const size_t count = n * h * w * c;
    float *x = malloc(count * sizeof *x);
    for (size_t i = 0; i < count; i++)
        x[i] = (float)(i + 1);
    return x;
}

static tl_dataset *make_dataset(const float *x, const int32_t *y, size_t n, uint32_t h, uint32_t w, uint32_t c,
                                uint32_t classes)
{
    tl_dataset *ds;
    ck_assert_tl_ok(tl_dataset_create(&ds, x, y, n, h, w, c, classes, TL_DATA_COPY));
    return ds;
}

static int32_t *mod_labels(size_t n, uint32_t classes)
{
    int32_t *y = malloc(n * sizeof *y);
    for (size_t i = 0; i < n; i++)
        y[i] = (int32_t)(i % classes);
    return y;
}

/* flatten -> [batchnorm] -> [dense(hidden, relu) -> dropout(0.25)] -> dense(classes, softmax), Adam. */
static tl_model *small_model(uint32_t h, uint32_t w, uint32_t c, uint32_t classes, uint32_t hidden, int bn,
                             float lr, uint64_t seed)
{
    tl_model *m;
    ck_assert_tl_ok(tl_model_create(&m, h, w, c, seed));
    ck_assert_tl_ok(tl_model_set_threads(m, 1));
    ck_assert_tl_ok(tl_model_add_flatten(NULL, m, NULL));
    if (bn) {
        tl_batchnorm_options bo = TL_BATCHNORM_OPTIONS_INIT;
        ck_assert_tl_ok(tl_model_add_batchnorm(NULL, m, &bo));
    }
    tl_dense_options d = TL_DENSE_OPTIONS_INIT;
    if (hidden) {
        d.units = hidden;
        d.activation = TL_ACT_RELU;
        ck_assert_tl_ok(tl_model_add_dense(NULL, m, &d));
        tl_dropout_options dr = TL_DROPOUT_OPTIONS_INIT;
        dr.rate = 0.25f;
        ck_assert_tl_ok(tl_model_add_dropout(NULL, m, &dr));
    }
    d.units = classes;
    d.activation = TL_ACT_SOFTMAX;
    ck_assert_tl_ok(tl_model_add_dense(NULL, m, &d));
    tl_optimizer *o;
    tl_adam_options ao = TL_ADAM_OPTIONS_INIT;
    ao.learning_rate = lr;
    ck_assert_tl_ok(tl_optimizer_create_adam(&o, &ao));
    ck_assert_tl_ok(tl_model_compile(m, o, TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY));
    return m;
}

static bool same_params(const tl_model *a, const tl_model *b)
{
    size_t na, nb;
    float *pa = th_all_params(a, &na), *pb = th_all_params(b, &nb);
    bool same = na == nb && memcmp(pa, pb, na * sizeof *pa) == 0;
    free(pa);
    free(pb);
    return same;
}

/* The batch hook's record: every batch's inputs, labels and indices. */
typedef struct capture {
    float *x;
    int32_t *y;
    uint32_t *idx;
    size_t floats, examples, cap; /* cap: examples */
    size_t batches;
    size_t batch_n[64];
} capture;

static void capture_init(capture *cp, size_t examples, size_t ex_size)
{
    memset(cp, 0, sizeof *cp);
    cp->cap = examples;
    cp->x = malloc(examples * ex_size * sizeof(float));
    cp->y = malloc(examples * sizeof(int32_t));
    cp->idx = malloc(examples * sizeof(uint32_t));
}

static void capture_free(capture *cp)
{
    free(cp->x);
    free(cp->y);
    free(cp->idx);
}

static int capture_batch(tl_batch *b, void *payload)
{
    capture *cp = payload;
    ck_assert_uint_ge(b->struct_size, sizeof *b);
    ck_assert_uint_le(cp->examples + b->n, cp->cap);
    const size_t ex = (size_t)b->height * b->width * b->channels;
    memcpy(cp->x + cp->examples * ex, b->inputs, b->n * ex * sizeof(float));
    memcpy(cp->y + cp->examples, b->labels, b->n * sizeof(int32_t));
    memcpy(cp->idx + cp->examples, b->index, b->n * sizeof(uint32_t));
    cp->examples += b->n;
    if (cp->batches < 64)
        cp->batch_n[cp->batches] = b->n;
    cp->batches++;
    return 0;
}

/* The documented rule, written independently of lib/augment.c: pad into a
 * (h + 2p) x (w + 2p) image, take the window at (oy, ox), flip it, erase the
 * cutout square. */
static void reference(const float *img, uint32_t h, uint32_t w, uint32_t c, const tl_augment_options *o,
                      const tli_augment_draw *d, float *out)
{
    const int p = (int)o->crop_padding, H = (int)h + 2 * p, W = (int)w + 2 * p;
    float *pad = calloc((size_t)H * W * c, sizeof *pad);
    for (int Y = 0; Y < H; Y++)
        for (int X = 0; X < W; X++) {
            int y = Y - p, x = X - p;
            if (o->padding_mode == TL_PADDING_REFLECT) {
                if (y < 0)
                    y = -y;
                if (y >= (int)h)
                    y = 2 * ((int)h - 1) - y;
                if (x < 0)
                    x = -x;
                if (x >= (int)w)
                    x = 2 * ((int)w - 1) - x;
            } else if (y < 0 || y >= (int)h || x < 0 || x >= (int)w) {
                continue;
            }
            memcpy(pad + ((size_t)Y * W + X) * c, img + ((size_t)y * w + x) * c, c * sizeof(float));
        }
    for (int y = 0; y < (int)h; y++)
        for (int x = 0; x < (int)w; x++) {
            const int cx = d->flip ? (int)w - 1 - x : x; /* column of the crop */
            memcpy(out + ((size_t)y * w + x) * c, pad + ((size_t)(y + (int)d->oy) * W + (cx + (int)d->ox)) * c,
                   c * sizeof(float));
        }
    if (o->cutout_size) {
        const int s = (int)o->cutout_size, y0 = (int)d->cy - s / 2, x0 = (int)d->cx - s / 2;
        for (int y = y0; y < y0 + s; y++)
            for (int x = x0; x < x0 + s; x++)
                if (y >= 0 && y < (int)h && x >= 0 && x < (int)w)
                    memset(out + ((size_t)y * w + x) * c, 0, c * sizeof(float));
    }
    free(pad);
}

/* Fit `epochs` epochs of one batch each (shuffle off, fit seed `seed`) and
 * check every captured example against the reference with the keys drawn
 * from the training stream. Returns the draws (epochs * n). */
static tli_augment_draw *check_against_reference(const float *x, size_t n, uint32_t h, uint32_t w, uint32_t c,
                                                 const tl_augment_options *ao, uint32_t epochs, uint64_t seed)
{
    int32_t *y = mod_labels(n, 2);
    tl_dataset *ds = make_dataset(x, y, n, h, w, c, 2);
    tl_model *m = small_model(h, w, c, 2, 0, 0, 1e-3f, 5);
    const size_t ex = (size_t)h * w * c;
    capture cp;
    capture_init(&cp, n * epochs, ex);
    tl_fit_options fo = TL_FIT_OPTIONS_INIT;
    fo.epochs = epochs;
    fo.batch_size = (uint32_t)n;
    fo.shuffle = 0;
    fo.seed = seed;
    fo.augment = ao;
    fo.on_batch_begin = capture_batch;
    fo.payload = &cp;
    ck_assert_tl_ok(tl_model_fit(m, ds, &fo));
    ck_assert_uint_eq(cp.batches, epochs);
    tli_rng rng;
    tli_rng_seed(&rng, seed, TLI_STREAM_TRAIN);
    tli_augment_draw *draws = malloc(epochs * n * sizeof *draws);
    float *want = malloc(ex * sizeof *want);
    for (uint32_t e = 0; e < epochs; e++) {
        const uint64_t key = tli_rng_next(&rng); /* no shuffle, no dropout: the only draw */
        for (size_t i = 0; i < n; i++) {
            tli_augment_draw d = tli_augment_choose(ao, key, i, h, w);
            draws[e * n + i] = d;
            ck_assert_uint_le(d.oy, 2 * ao->crop_padding);
            ck_assert_uint_le(d.ox, 2 * ao->crop_padding);
            ck_assert_uint_lt(d.cy, h);
            ck_assert_uint_lt(d.cx, w);
            ck_assert_uint_eq(cp.idx[e * n + i], i);
            reference(x + i * ex, h, w, c, ao, &d, want);
            const float *got = cp.x + (e * n + i) * ex;
            for (size_t k = 0; k < ex; k++)
                ck_assert_msg(got[k] == want[k],
                              "epoch %u example %zu (crop %u,%u flip %d cutout centre %u,%u): value %zu is %g, "
                              "expected %g",
                              e, i, d.oy, d.ox, (int)d.flip, d.cy, d.cx, k, (double)got[k], (double)want[k]);
        }
    }
    free(want);
    capture_free(&cp);
    tl_model_free(m);
    tl_dataset_free(ds);
    free(y);
    return draws;
}

/* ---- augmentation by hand ---------------------------------------------------- */

START_TEST(crop_and_flip_by_hand)
{
    /* 5x5x2 images, padding 2 (zero, then reflect), flip 0.5; 2 epochs of
     * 60 examples. */
    const uint32_t h = 5, w = 5, c = 2;
    const size_t n = 60;
    float *x = coord_images(n, h, w, c);
    for (int mode = 0; mode < 2; mode++) {
        tl_augment_options ao = TL_AUGMENT_OPTIONS_INIT;
        ao.crop_padding = 2;
        ao.padding_mode = mode ? TL_PADDING_REFLECT : TL_PADDING_ZERO;
        ao.flip_probability = 0.5;
        tli_augment_draw *d = check_against_reference(x, n, h, w, c, &ao, 2, 77 + (uint64_t)mode);
        /* Every offset 0..4 occurs on both axes; about half the examples flip. */
        unsigned seen_y = 0, seen_x = 0, flips = 0;
        for (size_t i = 0; i < 2 * n; i++) {
            seen_y |= 1u << d[i].oy;
            seen_x |= 1u << d[i].ox;
            flips += d[i].flip;
        }
        ck_assert_uint_eq(seen_y, 0x1f);
        ck_assert_uint_eq(seen_x, 0x1f);
        ck_assert_msg(flips > 35 && flips < 85, "%u flips of 120", flips);
        free(d);
    }
    free(x);
}
END_TEST

/* The 3x3 image 1..9: the literal crops of padding 1. */
START_TEST(zero_and_reflect_padding_literally)
{
    const uint32_t h = 3, w = 3, c = 1;
    const size_t n = 64;
    float *x = malloc(n * 9 * sizeof *x);
    for (size_t i = 0; i < n * 9; i++)
        x[i] = (float)(i % 9 + 1);
    static const float zero00[9] = {0, 0, 0, 0, 1, 2, 0, 4, 5}, zero22[9] = {5, 6, 0, 8, 9, 0, 0, 0, 0};
    static const float refl00[9] = {5, 4, 5, 2, 1, 2, 5, 4, 5}, refl22[9] = {5, 6, 5, 8, 9, 8, 5, 6, 5};
    static const float flip11[9] = {3, 2, 1, 6, 5, 4, 9, 8, 7}, zero02flip[9] = {0, 0, 0, 0, 3, 2, 0, 6, 5};
    for (int mode = 0; mode < 2; mode++) {
        tl_augment_options ao = TL_AUGMENT_OPTIONS_INIT;
        ao.crop_padding = 1;
        ao.padding_mode = mode ? TL_PADDING_REFLECT : TL_PADDING_ZERO;
        ao.flip_probability = 0.5;
        /* Capture once more to look at the literal cases. */
        int32_t *y = mod_labels(n, 2);
        tl_dataset *ds = make_dataset(x, y, n, h, w, c, 2);
        tl_model *m = small_model(h, w, c, 2, 0, 0, 1e-3f, 5);
        capture cp;
        capture_init(&cp, n, 9);
        tl_fit_options fo = TL_FIT_OPTIONS_INIT;
        fo.batch_size = (uint32_t)n;
        fo.shuffle = 0;
        fo.seed = 3;
        fo.augment = &ao;
        fo.on_batch_begin = capture_batch;
        fo.payload = &cp;
        ck_assert_tl_ok(tl_model_fit(m, ds, &fo));
        tli_rng rng;
        tli_rng_seed(&rng, 3, TLI_STREAM_TRAIN);
        const uint64_t key = tli_rng_next(&rng);
        int found = 0;
        for (size_t i = 0; i < n; i++) {
            tli_augment_draw d = tli_augment_choose(&ao, key, i, h, w);
            const float *want = NULL;
            if (!d.flip && d.oy == 0 && d.ox == 0)
                want = mode ? refl00 : zero00, found |= 1;
            else if (!d.flip && d.oy == 2 && d.ox == 2)
                want = mode ? refl22 : zero22, found |= 2;
            else if (d.flip && d.oy == 1 && d.ox == 1)
                want = flip11, found |= 4;
            else if (!mode && d.flip && d.oy == 0 && d.ox == 2)
                want = zero02flip, found |= 8; /* rows -1..1, columns 1..3, flipped */
            if (want)
                ck_assert_mem_eq(cp.x + i * 9, want, sizeof zero00);
        }
        ck_assert_int_eq(found & 7, 7);
        capture_free(&cp);
        tl_model_free(m);
        tl_dataset_free(ds);
        free(y);
        free(check_against_reference(x, n, h, w, c, &ao, 1, 3));
    }
    free(x);
}
END_TEST

START_TEST(cutout_by_hand)
{
    /* 5x5x1 images 1..25, cutout only: sizes 2 (even: DeVries & Taylor's
     * rule) and 3 (odd), then with crop and flip. */
    const uint32_t h = 5, w = 5, c = 1;
    const size_t n = 80;
    float *x = malloc(n * 25 * sizeof *x);
    for (size_t i = 0; i < n * 25; i++)
        x[i] = (float)(i % 25 + 1);
    tl_augment_options ao = TL_AUGMENT_OPTIONS_INIT;
    ao.cutout_size = 2;
    tli_augment_draw *d = check_against_reference(x, n, h, w, c, &ao, 1, 11);
    /* The literal squares of some centres: rows/columns [c - 1, c + 1). */
    tli_rng rng;
    tli_rng_seed(&rng, 11, TLI_STREAM_TRAIN);
    (void)tli_rng_next(&rng);
    unsigned centres = 0;
    for (size_t i = 0; i < n; i++) {
        ck_assert_uint_eq(d[i].oy, 0);
        ck_assert(!d[i].flip);
        centres |= 1u << (d[i].cy * 5 + d[i].cx);
    }
    ck_assert_msg(centres != 0, "no centre");
    free(d);
    /* An explicit check through the kernel: centre (2, 2) erases (1..2, 1..2);
     * centre (0, 0) only (0, 0); centre (4, 4) (3..4, 3..4). */
    {
        float img[25], out[25];
        for (int i = 0; i < 25; i++)
            img[i] = (float)(i + 1);
        const uint32_t idx0 = 0;
        /* Find keys whose first example has the centres wanted. */
        const uint32_t want_c[3][2] = {{2, 2}, {0, 0}, {4, 4}};
        const int zeros[3][4] = {{6, 7, 11, 12}, {0, -1, -1, -1}, {18, 19, 23, 24}};
        for (int t = 0; t < 3; t++) {
            uint64_t key = 0;
            while (1) {
                tli_augment_draw dd = tli_augment_choose(&ao, key, 0, 5, 5);
                if (dd.cy == want_c[t][0] && dd.cx == want_c[t][1])
                    break;
                key++;
            }
            tli_augment_gather(1, &ao, key, img, &idx0, 1, 5, 5, 1, out);
            for (int k = 0; k < 25; k++) {
                bool z = false;
                for (int j = 0; j < 4; j++)
                    z = z || zeros[t][j] == k;
                ck_assert_msg(out[k] == (z ? 0.0f : img[k]), "centre (%u,%u): pixel %d is %g", want_c[t][0],
                              want_c[t][1], k, (double)out[k]);
            }
        }
        /* Odd size 3 at (2, 2): rows and columns 1..3. */
        tl_augment_options a3 = ao;
        a3.cutout_size = 3;
        uint64_t key = 0;
        while (1) {
            tli_augment_draw dd = tli_augment_choose(&a3, key, 0, 5, 5);
            if (dd.cy == 2 && dd.cx == 2)
                break;
            key++;
        }
        tli_augment_gather(1, &a3, key, img, &idx0, 1, 5, 5, 1, out);
        for (int k = 0; k < 25; k++) {
            const int r = k / 5, q = k % 5;
            const bool z = r >= 1 && r <= 3 && q >= 1 && q <= 3;
            ck_assert_msg(out[k] == (z ? 0.0f : img[k]), "size 3: pixel %d is %g", k, (double)out[k]);
        }
    }
    ao.cutout_size = 3;
    free(check_against_reference(x, n, h, w, c, &ao, 2, 12));
    ao.crop_padding = 1;
    ao.padding_mode = TL_PADDING_REFLECT;
    ao.flip_probability = 0.3;
    free(check_against_reference(x, n, h, w, c, &ao, 2, 13));
    free(x);
}
END_TEST

/* ---- determinism --------------------------------------------------------------- */

/* 2 epochs of 64 32x32x3 images, batches of 16 (49,152 floats: threaded),
 * shuffled, every augmentation on, a dropout layer: every batch and the
 * final weights. */
static void run_threads(uint32_t threads, capture *cp, float **params, size_t *count)
{
    const uint32_t h = 32, w = 32, c = 3;
    const size_t n = 64;
    float *x = coord_images(n, h, w, c);
    int32_t *y = mod_labels(n, 4);
    tl_dataset *ds = make_dataset(x, y, n, h, w, c, 4);
    tl_model *m = small_model(h, w, c, 4, 8, 0, 1e-3f, 21);
    ck_assert_tl_ok(tl_model_set_threads(m, threads));
    tl_augment_options ao = TL_AUGMENT_OPTIONS_INIT;
    ao.crop_padding = 4;
    ao.padding_mode = TL_PADDING_REFLECT;
    ao.flip_probability = 0.5;
    ao.cutout_size = 8;
    capture_init(cp, 2 * n, (size_t)h * w * c);
    tl_fit_options fo = TL_FIT_OPTIONS_INIT;
    fo.epochs = 2;
    fo.batch_size = 16;
    fo.seed = 99;
    fo.augment = &ao;
    fo.on_batch_begin = capture_batch;
    fo.payload = cp;
    ck_assert_tl_ok(tl_model_fit(m, ds, &fo));
    *params = th_all_params(m, count);
    tl_model_free(m);
    tl_dataset_free(ds);
    free(x);
    free(y);
}

START_TEST(same_batches_with_1_and_2_threads)
{
    capture a, b;
    float *pa, *pb;
    size_t na, nb;
    run_threads(1, &a, &pa, &na);
    run_threads(2, &b, &pb, &nb);
    ck_assert_uint_eq(a.batches, 8);
    ck_assert_uint_eq(b.batches, 8);
    ck_assert_mem_eq(a.idx, b.idx, a.examples * sizeof(uint32_t));
    ck_assert_mem_eq(a.x, b.x, a.examples * 32 * 32 * 3 * sizeof(float));
    /* The weights may differ in the last bits (libtl promises bit-identical
     * training for one thread count); the batches are what augmentation
     * promises. */
    ck_assert_uint_eq(na, nb);
    capture_free(&a);
    capture_free(&b);
    free(pa);
    free(pb);
}
END_TEST

static void tmp_path(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, "/tmp/tl_fit_recipe_%ld_%s", (long)getpid(), name);
}

START_TEST(resume_repeats_the_augmented_batches)
{
    /* Run A: 4 epochs, a checkpoint after every second. Run B: load the
     * checkpoint of epoch 2 and fit 2 more epochs. Same final weights. */
    const uint32_t h = 8, w = 8, c = 3;
    float *x;
    int32_t *y;
    th_quadrant_data(&x, &y, 96, h, w, c, 4);
    tl_dataset *ds = make_dataset(x, y, 96, h, w, c, 4);
    tl_augment_options ao = TL_AUGMENT_OPTIONS_INIT;
    ao.crop_padding = 2;
    ao.padding_mode = TL_PADDING_REFLECT;
    ao.flip_probability = 0.5;
    ao.cutout_size = 3;
    char pattern[256], second[256], fourth[256];
    tmp_path(pattern, sizeof pattern, "resume_{epoch}.tlc");
    tmp_path(second, sizeof second, "resume_2.tlc");
    tmp_path(fourth, sizeof fourth, "resume_4.tlc");
    tl_model *a = small_model(h, w, c, 4, 16, 0, 1e-2f, 8);
    tl_fit_options fo = TL_FIT_OPTIONS_INIT;
    fo.epochs = 4;
    fo.batch_size = 32;
    fo.augment = &ao;
    fo.checkpoint_path = pattern;
    fo.checkpoint_every = 2;
    ck_assert_tl_ok(tl_model_fit(a, ds, &fo));
    tl_model *b;
    ck_assert_tl_ok(tl_model_load(&b, second));
    fo.epochs = 2;
    fo.checkpoint_path = NULL;
    fo.checkpoint_every = 0;
    ck_assert_tl_ok(tl_model_fit(b, ds, &fo));
    ck_assert_msg(same_params(a, b), "the resumed run differs from the uninterrupted one");
    tl_model *d;
    ck_assert_tl_ok(tl_model_load(&d, fourth));
    ck_assert(same_params(a, d));
    /* Without augmentation the run differs (augmentation did something). */
    tl_model *plain = small_model(h, w, c, 4, 16, 0, 1e-2f, 8);
    fo.epochs = 4;
    fo.augment = NULL;
    ck_assert_tl_ok(tl_model_fit(plain, ds, &fo));
    ck_assert(!same_params(a, plain));
    remove(second);
    remove(fourth);
    tl_model_free(a);
    tl_model_free(b);
    tl_model_free(d);
    tl_model_free(plain);
    tl_dataset_free(ds);
    free(x);
    free(y);
}
END_TEST

/* Defaults of the augment options, and flips of probability 0: nothing is
 * drawn, so the run equals one without augment options bit for bit. */
START_TEST(inactive_augmentation_keeps_the_stream)
{
    const uint32_t h = 8, w = 8, c = 3;
    float *x;
    int32_t *y;
    th_quadrant_data(&x, &y, 64, h, w, c, 5);
    tl_dataset *ds = make_dataset(x, y, 64, h, w, c, 4);
    tl_model *a = small_model(h, w, c, 4, 16, 0, 1e-2f, 8), *b = small_model(h, w, c, 4, 16, 0, 1e-2f, 8);
    tl_fit_options fo = TL_FIT_OPTIONS_INIT;
    fo.epochs = 2;
    ck_assert_tl_ok(tl_model_fit(a, ds, &fo));
    tl_augment_options ao = TL_AUGMENT_OPTIONS_INIT;
    ao.padding_mode = TL_PADDING_REFLECT;
    fo.augment = &ao;
    ck_assert_tl_ok(tl_model_fit(b, ds, &fo));
    ck_assert(same_params(a, b));
    tl_model_free(a);
    tl_model_free(b);
    tl_dataset_free(ds);
    free(x);
    free(y);
}
END_TEST

/* ---- evaluation does not augment ------------------------------------------------ */

typedef struct val_log {
    double val_loss[32], val_acc[32], loss[32], acc[32], lr[32], seconds[32];
    size_t skipped[32];
    float *params[32];
    uint32_t epochs;
    tl_model *m;
    tl_history *history;
    size_t rows_at_callback[32];
} val_log;

static int log_epoch(const tl_progress *p, void *payload)
{
    val_log *v = payload;
    ck_assert_uint_lt(p->epoch, 32);
    v->val_loss[p->epoch] = p->has_validation ? p->val_loss : NAN;
    v->val_acc[p->epoch] = p->has_validation ? p->val_accuracy : NAN;
    v->loss[p->epoch] = p->loss;
    v->acc[p->epoch] = p->accuracy;
    v->lr[p->epoch] = p->learning_rate;
    v->seconds[p->epoch] = p->seconds;
    v->skipped[p->epoch] = p->skipped_batches;
    if (v->m) {
        size_t n;
        free(v->params[p->epoch]);
        v->params[p->epoch] = th_all_params(v->m, &n);
    }
    v->rows_at_callback[p->epoch] = tl_history_epochs(v->history);
    v->epochs = p->epoch + 1;
    return 0;
}

static void val_log_free(val_log *v)
{
    for (int i = 0; i < 32; i++)
        free(v->params[i]);
}

START_TEST(evaluation_does_not_augment)
{
    const uint32_t h = 8, w = 8, c = 3;
    float *x;
    int32_t *y;
    th_quadrant_data(&x, &y, 64, h, w, c, 6);
    tl_dataset *ds = make_dataset(x, y, 64, h, w, c, 4);
    tl_model *m = small_model(h, w, c, 4, 16, 1, 1e-2f, 8);
    tl_augment_options ao = TL_AUGMENT_OPTIONS_INIT;
    ao.crop_padding = 2;
    ao.flip_probability = 1.0;
    ao.cutout_size = 4;
    val_log v;
    memset(&v, 0, sizeof v);
    tl_fit_options fo = TL_FIT_OPTIONS_INIT;
    fo.epochs = 2;
    fo.batch_size = 16;
    fo.augment = &ao;
    fo.validation = ds;
    fo.on_epoch = log_epoch;
    fo.payload = &v;
    ck_assert_tl_ok(tl_model_fit(m, ds, &fo));
    double loss, acc;
    ck_assert_tl_ok(tl_model_evaluate(&loss, &acc, m, ds, 16));
    ck_assert(loss == v.val_loss[1]);
    ck_assert(acc == v.val_acc[1]);
    /* Predict twice: the same outputs (nothing random outside training). */
    float p1[64 * 4], p2[64 * 4];
    ck_assert_tl_ok(tl_model_predict(p1, 64 * 4, m, x, 64, 16));
    ck_assert_tl_ok(tl_model_predict(p2, 64 * 4, m, x, 64, 16));
    ck_assert_mem_eq(p1, p2, sizeof p1);
    tl_model_free(m);
    tl_dataset_free(ds);
    free(x);
    free(y);
}
END_TEST

/* ---- the batch hook ------------------------------------------------------------- */

static int relabel_and_scale(tl_batch *b, void *payload)
{
    const float *orig = payload; /* the dataset's images */
    const size_t ex = (size_t)b->height * b->width * b->channels;
    ck_assert_ptr_null(b->targets);
    ck_assert_uint_eq(b->target_width, 0);
    for (size_t i = 0; i < b->n; i++) {
        /* Without augmentation the batch is the examples named by index. */
        ck_assert_mem_eq(b->inputs + i * ex, orig + (size_t)b->index[i] * ex, ex * sizeof(float));
        b->labels[i] = (b->labels[i] + 1) % 4;
        for (size_t k = 0; k < ex; k++)
            b->inputs[i * ex + k] *= 2.0f;
    }
    return 0;
}

static int bad_label(tl_batch *b, void *payload)
{
    b->labels[b->n - 1] = *(const int32_t *)payload;
    return 0;
}

static int stop_at_second(tl_batch *b, void *payload)
{
    (void)payload;
    return b->batch == 1;
}

START_TEST(hook_changes_inputs_and_labels)
{
    const uint32_t h = 8, w = 8, c = 3;
    const size_t n = 64, ex = (size_t)h * w * c;
    float *x;
    int32_t *y;
    th_quadrant_data(&x, &y, n, h, w, c, 7);
    float *x2 = malloc(n * ex * sizeof *x2);
    int32_t *y2 = malloc(n * sizeof *y2);
    for (size_t i = 0; i < n * ex; i++)
        x2[i] = 2.0f * x[i];
    for (size_t i = 0; i < n; i++)
        y2[i] = (y[i] + 1) % 4;
    tl_dataset *ds = make_dataset(x, y, n, h, w, c, 4), *ds2 = make_dataset(x2, y2, n, h, w, c, 4);
    tl_model *a = small_model(h, w, c, 4, 16, 0, 1e-2f, 8), *b = small_model(h, w, c, 4, 16, 0, 1e-2f, 8);
    tl_fit_options fo = TL_FIT_OPTIONS_INIT;
    fo.epochs = 2;
    fo.batch_size = 16;
    ck_assert_tl_ok(tl_model_fit(b, ds2, &fo));
    fo.on_batch_begin = relabel_and_scale;
    fo.payload = x;
    ck_assert_tl_ok(tl_model_fit(a, ds, &fo));
    ck_assert_msg(same_params(a, b), "the hook's changes are not what was trained on");
    /* Labels out of range: TL_ERANGE, as for the dataset's own. */
    int32_t label = 4;
    fo.on_batch_begin = bad_label;
    fo.payload = &label;
    ck_assert_tl_err(tl_model_fit(a, ds, &fo), TL_ERANGE, "label 4 of example 15");
    label = -1;
    ck_assert_tl_err(tl_model_fit(a, ds, &fo), TL_ERANGE, "label -1");
    fo.on_batch_begin = stop_at_second;
    ck_assert_tl_err(tl_model_fit(a, ds, &fo), TL_ECANCELED, "batch-begin callback at epoch 1, batch 2");
    tl_model_free(a);
    tl_model_free(b);
    tl_dataset_free(ds);
    tl_dataset_free(ds2);
    free(x);
    free(y);
    free(x2);
    free(y2);
}
END_TEST

/* ---- early stopping, best weights, history, checkpoints --------------------------- */

START_TEST(early_stopping_restores_the_best)
{
    /* The validation set is the training images with every label moved by
     * one class: as the model learns, validation gets worse. */
    const uint32_t h = 8, w = 8, c = 3;
    const size_t n = 128;
    float *x;
    int32_t *y;
    th_quadrant_data(&x, &y, n, h, w, c, 9);
    int32_t *yv = malloc(n * sizeof *yv);
    for (size_t i = 0; i < n; i++)
        yv[i] = (y[i] + 1) % 4;
    tl_dataset *ds = make_dataset(x, y, n, h, w, c, 4), *val = make_dataset(x, yv, n, h, w, c, 4);
    tl_model *m = small_model(h, w, c, 4, 0, 1, 3e-3f, 8);
    tl_history *hist;
    ck_assert_tl_ok(tl_history_create(&hist));
    val_log v;
    memset(&v, 0, sizeof v);
    v.m = m;
    v.history = hist;
    tl_early_stopping_options es = TL_EARLY_STOPPING_OPTIONS_INIT;
    es.patience = 2;
    es.restore_best = 1;
    char pattern[256];
    tmp_path(pattern, sizeof pattern, "best_{epoch}.tlc");
    tl_augment_options ao = TL_AUGMENT_OPTIONS_INIT;
    ao.flip_probability = 0.5;
    tl_fit_options fo = TL_FIT_OPTIONS_INIT;
    fo.epochs = 20;
    fo.batch_size = 32;
    fo.validation = val;
    fo.early_stopping = &es;
    fo.history = hist;
    fo.checkpoint_path = pattern;
    fo.checkpoint_on_improvement = 1;
    fo.augment = &ao;
    fo.on_epoch = log_epoch;
    fo.payload = &v;
    ck_assert_tl_ok(tl_model_fit(m, ds, &fo));
    /* Keras' rule on the figures the callback saw. */
    double best = INFINITY;
    uint32_t wait = 0, best_e = 0, stop_e = 0;
    bool improved[32] = {false};
    for (uint32_t e = 0; e < 20 && e < v.epochs; e++) {
        if (v.val_loss[e] < best) {
            best = v.val_loss[e];
            wait = 0;
            best_e = e;
            improved[e] = true;
        } else if (++wait >= 2) {
            stop_e = e;
            break;
        }
    }
    ck_assert_msg(stop_e > 0 && stop_e < 19, "validation did not get worse (stop at %u)", stop_e);
    ck_assert_uint_eq(v.epochs, stop_e + 1);
    ck_assert_uint_eq(tl_history_epochs(hist), stop_e + 1);
    ck_assert(tl_history_value(hist, stop_e, TL_HISTORY_STOPPED) == 1.0);
    for (uint32_t e = 0; e <= stop_e; e++) {
        ck_assert(tl_history_value(hist, e, TL_HISTORY_IMPROVED) == (improved[e] ? 1.0 : 0.0));
        if (e < stop_e)
            ck_assert(tl_history_value(hist, e, TL_HISTORY_STOPPED) == 0.0);
        /* Recorded before the epoch callback. */
        ck_assert_uint_eq(v.rows_at_callback[e], e + 1);
        /* Checkpoints on improvement only, each the weights of its epoch. */
        char path[256], name[64];
        snprintf(name, sizeof name, "best_%u.tlc", e + 1);
        tmp_path(path, sizeof path, name);
        if (improved[e]) {
            tl_model *f;
            ck_assert_tl_ok(tl_model_load(&f, path));
            size_t cnt;
            float *p = th_all_params(f, &cnt);
            ck_assert_mem_eq(p, v.params[e], cnt * sizeof *p);
            free(p);
            tl_model_free(f);
            remove(path);
        } else {
            ck_assert_msg(access(path, F_OK) != 0, "%s written without improvement", path);
        }
    }
    /* The weights (batch norm statistics included) are the best epoch's. */
    size_t cnt;
    float *now = th_all_params(m, &cnt);
    ck_assert_mem_eq(now, v.params[best_e], cnt * sizeof *now);
    ck_assert(memcmp(now, v.params[stop_e], cnt * sizeof *now) != 0);
    free(now);
    val_log_free(&v);
    tl_history_free(hist);
    tl_model_free(m);
    tl_dataset_free(ds);
    tl_dataset_free(val);
    free(x);
    free(y);
    free(yv);
}
END_TEST

static int cancel_after(const tl_progress *p, void *payload)
{
    return p->epoch + 1 >= *(const uint32_t *)payload;
}

/* The row where the history says fit stopped early, or -1. */
static long stopped_row(const tl_history *h)
{
    for (size_t r = 0; r < tl_history_epochs(h); r++)
        if (tl_history_value(h, r, TL_HISTORY_STOPPED) == 1.0)
            return (long)r;
    return -1;
}

static bool summary_has(const char *path, const char *needle, char *out, size_t cap);

/* A run stopped after epoch k (cancelled from the epoch callback, after
 * fit's checkpoint of that epoch) and resumed - from the checkpoint, and in
 * the same process - stops at the same epoch with the same weights, bit
 * for bit, as one never stopped: the patience count, the best value and
 * the best weights (restore_best) travel in the checkpoint's ESTP section. */
START_TEST(early_stopping_resumes_exactly)
{
    const uint32_t h = 8, w = 8, c = 3, epochs = 20;
    const size_t n = 128;
    float *x;
    int32_t *y;
    th_quadrant_data(&x, &y, n, h, w, c, 9);
    int32_t *yv = malloc(n * sizeof *yv);
    for (size_t i = 0; i < n; i++)
        yv[i] = (y[i] + 1) % 4; /* validation gets worse as the model learns */
    tl_dataset *ds = make_dataset(x, y, n, h, w, c, 4), *val = make_dataset(x, yv, n, h, w, c, 4);
    for (int restore = 0; restore <= 1; restore++) {
        tl_early_stopping_options es = TL_EARLY_STOPPING_OPTIONS_INIT;
        es.patience = 3;
        es.min_delta = 1e-3;
        es.restore_best = restore;
        tl_fit_options fo = TL_FIT_OPTIONS_INIT;
        fo.epochs = epochs;
        fo.batch_size = 32;
        fo.validation = val;
        fo.early_stopping = &es;
        /* A: never stopped. */
        tl_model *a = small_model(h, w, c, 4, 0, 1, 3e-3f, 8);
        tl_history *ha;
        ck_assert_tl_ok(tl_history_create(&ha));
        fo.history = ha;
        ck_assert_tl_ok(tl_model_fit(a, ds, &fo));
        const long stop = stopped_row(ha);
        ck_assert_msg(stop >= 3 && stop < (long)epochs - 1, "no early stop to resume across (row %ld)", stop);
        /* The epoch before the stop: patience is part used, the best is behind. */
        uint32_t k = (uint32_t)stop;
        ck_assert(tl_history_value(ha, k - 1, TL_HISTORY_IMPROVED) == 0.0);
        /* B: the same run, cancelled after epoch k, a checkpoint after every epoch. */
        char pattern[256], at_k[256], name[64], last[256];
        snprintf(name, sizeof name, "es%d_{epoch}.tlc", restore);
        tmp_path(pattern, sizeof pattern, name);
        snprintf(name, sizeof name, "es%d_%u.tlc", restore, k);
        tmp_path(at_k, sizeof at_k, name);
        snprintf(name, sizeof name, "es%d_%ld.tlc", restore, stop + 1);
        tmp_path(last, sizeof last, name);
        tl_model *b = small_model(h, w, c, 4, 0, 1, 3e-3f, 8);
        fo.history = NULL;
        fo.checkpoint_path = pattern;
        fo.checkpoint_every = 1;
        fo.on_epoch = cancel_after;
        fo.payload = &k;
        ck_assert_int_eq(tl_model_fit(b, ds, &fo), TL_ECANCELED);
        /* The checkpoint holds the state; the summary says it. */
        char text[8192], want[160];
        snprintf(want, sizeof want, "Early stopping (a fit under way): val_loss, %u epochs, best ", k);
        ck_assert_msg(summary_has(at_k, want, text, sizeof text), "%s", text);
        ck_assert_msg(strstr(text, restore ? ", best weights saved\n" : " since\n") != NULL, "%s", text);
        /* Resumed from the file: epochs - k more, seed 0. */
        tl_model *cm;
        ck_assert_tl_ok(tl_model_load(&cm, at_k));
        tl_history *hc;
        ck_assert_tl_ok(tl_history_create(&hc));
        fo.checkpoint_path = NULL;
        fo.checkpoint_every = 0;
        fo.on_epoch = NULL;
        fo.epochs = epochs - k;
        fo.history = hc;
        ck_assert_tl_ok(tl_model_fit(cm, ds, &fo));
        ck_assert_int_eq(stopped_row(hc), stop - (long)k);
        ck_assert_uint_eq(tl_history_epochs(hc), (size_t)(stop + 1) - k);
        for (size_t r = 0; r < tl_history_epochs(hc); r++)
            ck_assert(tl_history_value(hc, r, TL_HISTORY_IMPROVED) == tl_history_value(ha, r + k, TL_HISTORY_IMPROVED));
        ck_assert_msg(same_params(a, cm), "restore_best %d: the resumed run differs from the uninterrupted one",
                      restore);
        /* Resumed in the same process (the cancelled fit left its state in b). */
        fo.history = NULL;
        ck_assert_tl_ok(tl_model_fit(b, ds, &fo));
        ck_assert(same_params(a, b));
        /* The checkpoint after the stopping epoch holds no state to continue. */
        ck_assert_msg(access(last, F_OK) != 0, "%s written after the cancel", last);
        fo.epochs = epochs;
        fo.checkpoint_path = pattern;
        fo.checkpoint_every = 1;
        tl_model *d = small_model(h, w, c, 4, 0, 1, 3e-3f, 8);
        ck_assert_tl_ok(tl_model_fit(d, ds, &fo));
        ck_assert(!summary_has(last, "Early stopping", text, sizeof text));
        ck_assert(summary_has(last, "Optimizer: adam", text, sizeof text));
        for (uint32_t e = 1; e <= (uint32_t)stop + 1; e++) {
            snprintf(name, sizeof name, "es%d_%u.tlc", restore, e);
            tmp_path(last, sizeof last, name);
            remove(last);
        }
        tl_history_free(ha);
        tl_history_free(hc);
        tl_model_free(a);
        tl_model_free(b);
        tl_model_free(cm);
        tl_model_free(d);
    }
    tl_dataset_free(ds);
    tl_dataset_free(val);
    free(x);
    free(y);
    free(yv);
}
END_TEST

typedef struct text {
    char buf[8192];
    size_t len;
} text;

static int append_text(const char *s, size_t len, void *payload)
{
    text *t = payload;
    ck_assert_uint_eq(strlen(s), len);
    ck_assert_uint_lt(t->len + len, sizeof t->buf);
    memcpy(t->buf + t->len, s, len);
    t->len += len;
    t->buf[t->len] = '\0';
    return 0;
}

static int stop_writing(const char *s, size_t len, void *payload)
{
    (void)s;
    (void)len;
    (void)payload;
    return 1;
}

static bool summary_has(const char *path, const char *needle, char *out, size_t cap)
{
    tl_checkpoint_info *info;
    ck_assert_tl_ok(tl_checkpoint_info_read(&info, path));
    text t;
    t.len = 0;
    t.buf[0] = '\0';
    ck_assert_tl_ok(tl_checkpoint_info_summary_write(info, append_text, &t));
    tl_checkpoint_info_free(info);
    snprintf(out, cap, "%s", t.buf);
    return strstr(t.buf, needle) != NULL;
}

/* The CSV's numbers: the fewest significant digits (at most 9) that read
 * back as the same float. */
static char *shortest(char buf[32], double v)
{
    for (int digits = 1; digits <= 9; digits++) {
        snprintf(buf, 32, "%.*g", digits, v);
        if ((float)strtod(buf, NULL) == (float)v)
            break;
    }
    return buf;
}

START_TEST(history_and_csv)
{
    const uint32_t h = 8, w = 8, c = 3;
    const size_t n = 64;
    float *x;
    int32_t *y;
    th_quadrant_data(&x, &y, n, h, w, c, 10);
    tl_dataset *ds = make_dataset(x, y, n, h, w, c, 4);
    tl_model *m = small_model(h, w, c, 4, 0, 0, 1e-2f, 8);
    tl_history *hist;
    ck_assert_tl_ok(tl_history_create(&hist));
    ck_assert_uint_eq(tl_history_epochs(hist), 0);
    ck_assert(isnan(tl_history_value(hist, 0, TL_HISTORY_LOSS)));
    ck_assert(isnan(tl_history_value(NULL, 0, TL_HISTORY_LOSS)));
    ck_assert_uint_eq(tl_history_epochs(NULL), 0);
    ck_assert_str_eq(tl_history_key_name(TL_HISTORY_VAL_ACCURACY), "val_accuracy");
    ck_assert_str_eq(tl_history_key_name(TL_HISTORY_TOP_K), "top_k");
    ck_assert_str_eq(tl_history_key_name(TL_HISTORY_VAL_TOP_K_ACCURACY), "val_top_k_accuracy");
    ck_assert_ptr_null(tl_history_key_name((tl_history_key)TL_HISTORY_KEYS));
    val_log v1, v2;
    memset(&v1, 0, sizeof v1);
    memset(&v2, 0, sizeof v2);
    v1.history = v2.history = hist;
    /* Two fit calls: 3 epochs with validation, 2 without; rows append. */
    tl_fit_options fo = TL_FIT_OPTIONS_INIT;
    fo.epochs = 3;
    fo.batch_size = 16;
    fo.validation = ds;
    fo.history = hist;
    fo.on_epoch = log_epoch;
    fo.payload = &v1;
    ck_assert_tl_ok(tl_model_fit(m, ds, &fo));
    fo.epochs = 2;
    fo.validation = NULL;
    fo.payload = &v2;
    ck_assert_tl_ok(tl_model_fit(m, ds, &fo));
    ck_assert_uint_eq(tl_history_epochs(hist), 5);
    for (size_t r = 0; r < 5; r++) {
        const val_log *v = r < 3 ? &v1 : &v2;
        const size_t e = r < 3 ? r : r - 3;
        ck_assert(tl_history_value(hist, r, TL_HISTORY_EPOCH) == (double)(e + 1));
        ck_assert(tl_history_value(hist, r, TL_HISTORY_LOSS) == v->loss[e]);
        ck_assert(tl_history_value(hist, r, TL_HISTORY_ACCURACY) == v->acc[e]);
        ck_assert(tl_history_value(hist, r, TL_HISTORY_LEARNING_RATE) == v->lr[e]);
        ck_assert(tl_history_value(hist, r, TL_HISTORY_SECONDS) == v->seconds[e]);
        ck_assert(tl_history_value(hist, r, TL_HISTORY_SKIPPED_BATCHES) == (double)v->skipped[e]);
        ck_assert(isnan(tl_history_value(hist, r, TL_HISTORY_IMPROVED)));
        ck_assert(tl_history_value(hist, r, TL_HISTORY_STOPPED) == 0.0);
        /* 4 classes: top-k is not measured by default (top-5 of 4 is always 1). */
        ck_assert(isnan(tl_history_value(hist, r, TL_HISTORY_TOP_K)));
        ck_assert(isnan(tl_history_value(hist, r, TL_HISTORY_TOP_K_ACCURACY)));
        ck_assert(isnan(tl_history_value(hist, r, TL_HISTORY_VAL_TOP_K_ACCURACY)));
        if (r < 3) {
            ck_assert(tl_history_value(hist, r, TL_HISTORY_VAL_LOSS) == v->val_loss[e]);
            ck_assert(tl_history_value(hist, r, TL_HISTORY_VAL_ACCURACY) == v->val_acc[e]);
        } else {
            ck_assert(isnan(tl_history_value(hist, r, TL_HISTORY_VAL_LOSS)));
            ck_assert(isnan(tl_history_value(hist, r, TL_HISTORY_VAL_ACCURACY)));
        }
    }
    ck_assert(fabs(tl_history_value(hist, 0, TL_HISTORY_LEARNING_RATE) - 1e-2) < 1e-9);
    ck_assert(isnan(tl_history_value(hist, 5, TL_HISTORY_LOSS)));
    ck_assert(isnan(tl_history_value(hist, 0, (tl_history_key)99)));
    /* The CSV, built here from the documented format. */
    text t, want;
    t.len = want.len = 0;
    ck_assert_tl_ok(tl_history_write_csv(hist, append_text, &t));
    want.len = (size_t)snprintf(want.buf, sizeof want.buf,
                                "epoch,loss,accuracy,val_loss,val_accuracy,learning_rate,seconds,skipped_batches,"
                                "improved,stopped,top_k,top_k_accuracy,val_top_k_accuracy\n");
    for (size_t r = 0; r < 5; r++) {
        const val_log *v = r < 3 ? &v1 : &v2;
        const size_t e = r < 3 ? r : r - 3;
        char vl[32] = "", va[32] = "", lo[32], ac[32], lr[32], se[32];
        if (r < 3) {
            shortest(vl, v->val_loss[e]);
            shortest(va, v->val_acc[e]);
        }
        want.len += (size_t)snprintf(want.buf + want.len, sizeof want.buf - want.len, "%zu,%s,%s,%s,%s,%s,%s,%zu,,0,,,\n",
                                     e + 1, shortest(lo, v->loss[e]), shortest(ac, v->acc[e]), vl, va,
                                     shortest(lr, v->lr[e]), shortest(se, v->seconds[e]), v->skipped[e]);
    }
    ck_assert_str_eq(t.buf, want.buf);
    ck_assert_tl_err(tl_history_write_csv(hist, stop_writing, NULL), TL_ECANCELED, "header");
    ck_assert_tl_err(tl_history_write_csv(NULL, append_text, &t), TL_EINVAL, "history is NULL");
    ck_assert_tl_err(tl_history_write_csv(hist, NULL, &t), TL_EINVAL, "write is NULL");
    ck_assert_tl_err(tl_history_create(NULL), TL_EINVAL, "out is NULL");
    tl_history_free(NULL);
    tl_history_free(hist);
    tl_model_free(m);
    tl_dataset_free(ds);
    free(x);
    free(y);
}
END_TEST

/* n pseudo-random images in [0, 1) and labels i % classes. */
static tl_dataset *noise_dataset(size_t n, uint32_t h, uint32_t w, uint32_t c, uint32_t classes, uint32_t seed)
{
    const size_t count = n * h * w * c;
    float *x = malloc(count * sizeof *x);
    uint32_t s = seed * 2654435761u + 1;
    for (size_t i = 0; i < count; i++) {
        s = s * 1664525u + 1013904223u;
        x[i] = (float)(s >> 8) / 16777216.0f;
    }
    int32_t *y = mod_labels(n, classes);
    for (size_t i = 0; i < n; i++) /* a learnable signal: class brightens a pixel */
        x[i * h * w * c + (size_t)y[i]] += 2.0f;
    tl_dataset *ds = make_dataset(x, y, n, h, w, c, classes);
    free(x);
    free(y);
    return ds;
}

typedef struct topk_log {
    uint32_t k[8];
    double top[8], val_top[8], acc[8], val_acc[8];
    uint32_t epochs;
} topk_log;

static int log_top_k(const tl_progress *p, void *payload)
{
    topk_log *t = payload;
    ck_assert_uint_lt(p->epoch, 8);
    ck_assert_uint_ge(p->struct_size, sizeof *p);
    t->k[p->epoch] = p->top_k;
    t->top[p->epoch] = p->top_k_accuracy;
    t->val_top[p->epoch] = p->val_top_k_accuracy;
    t->acc[p->epoch] = p->accuracy;
    t->val_acc[p->epoch] = p->val_accuracy;
    t->epochs = p->epoch + 1;
    return 0;
}

/* Top-k in the history: the validation figure is tl_model_evaluate_metrics()'s
 * (same k, same batch size) on the weights after the epoch; top-1 is the
 * accuracy exactly; k = the class count is 1; k above it is refused before
 * any step. */
START_TEST(top_k_in_history)
{
    const uint32_t h = 4, w = 4, c = 2, classes = 10;
    tl_dataset *ds = noise_dataset(120, h, w, c, classes, 3), *val = noise_dataset(70, h, w, c, classes, 4);
    tl_model *m = small_model(h, w, c, classes, 0, 0, 2e-2f, 8);
    tl_history *hist;
    ck_assert_tl_ok(tl_history_create(&hist));
    topk_log t;
    memset(&t, 0, sizeof t);
    tl_fit_options fo = TL_FIT_OPTIONS_INIT;
    fo.epochs = 3;
    fo.batch_size = 16;
    fo.validation = val;
    fo.history = hist;
    fo.on_epoch = log_top_k;
    fo.payload = &t;
    /* Default: 10 classes > 5, so k = 5. */
    ck_assert_tl_ok(tl_model_fit(m, ds, &fo));
    ck_assert_uint_eq(tl_history_epochs(hist), 3);
    tl_evaluate_options eo = TL_EVALUATE_OPTIONS_INIT;
    eo.batch_size = 16;
    eo.top_k = 5;
    tl_metrics *mt;
    ck_assert_tl_ok(tl_model_evaluate_metrics(&mt, m, val, &eo));
    const double val_top = tl_history_value(hist, 2, TL_HISTORY_VAL_TOP_K_ACCURACY);
    ck_assert_msg(val_top == tl_metrics_top_k_accuracy(mt), "history %.9g, metrics %.9g", val_top,
                  tl_metrics_top_k_accuracy(mt));
    ck_assert(tl_history_value(hist, 2, TL_HISTORY_VAL_LOSS) == tl_metrics_loss(mt));
    ck_assert(tl_history_value(hist, 2, TL_HISTORY_VAL_ACCURACY) == tl_metrics_accuracy(mt));
    /* Not a trivial figure: between the accuracy and 1. */
    ck_assert(val_top >= tl_metrics_accuracy(mt) && val_top < 1.0 && val_top > 0.0);
    tl_metrics_free(mt);
    for (size_t r = 0; r < 3; r++) {
        ck_assert(tl_history_value(hist, r, TL_HISTORY_TOP_K) == 5.0);
        ck_assert_uint_eq(t.k[r], 5);
        ck_assert(tl_history_value(hist, r, TL_HISTORY_TOP_K_ACCURACY) == t.top[r]);
        ck_assert(tl_history_value(hist, r, TL_HISTORY_VAL_TOP_K_ACCURACY) == t.val_top[r]);
        ck_assert(t.top[r] >= t.acc[r] && t.top[r] <= 1.0);
        /* A multiple of 1/120: examples counted. */
        ck_assert(fabs(t.top[r] * 120 - round(t.top[r] * 120)) < 1e-9);
    }
    /* k = 1 is the accuracy, k = 10 (every class) is 1. */
    fo.top_k = 1;
    memset(&t, 0, sizeof t);
    ck_assert_tl_ok(tl_model_fit(m, ds, &fo));
    for (size_t r = 3; r < 6; r++) {
        ck_assert(tl_history_value(hist, r, TL_HISTORY_TOP_K) == 1.0);
        ck_assert(tl_history_value(hist, r, TL_HISTORY_TOP_K_ACCURACY) == tl_history_value(hist, r, TL_HISTORY_ACCURACY));
        ck_assert(tl_history_value(hist, r, TL_HISTORY_VAL_TOP_K_ACCURACY) ==
                  tl_history_value(hist, r, TL_HISTORY_VAL_ACCURACY));
    }
    fo.top_k = classes;
    fo.validation = NULL; /* the validation column is then NaN */
    ck_assert_tl_ok(tl_model_fit(m, ds, &fo));
    for (size_t r = 6; r < 9; r++) {
        ck_assert(tl_history_value(hist, r, TL_HISTORY_TOP_K_ACCURACY) == 1.0);
        ck_assert(isnan(tl_history_value(hist, r, TL_HISTORY_VAL_TOP_K_ACCURACY)));
    }
    /* Larger than the class count: refused before any step. */
    size_t cnt;
    float *before = th_all_params(m, &cnt);
    fo.top_k = classes + 1;
    ck_assert_tl_err(tl_model_fit(m, ds, &fo), TL_EINVAL, "tl_model_fit: top_k 11 is larger than the model's 10 outputs");
    float *after = th_all_params(m, &cnt);
    ck_assert_mem_eq(before, after, cnt * sizeof *after);
    ck_assert_uint_eq(tl_history_epochs(hist), 9);
    free(before);
    free(after);
    /* The CSV ends with the three top-k columns. */
    text csv;
    csv.len = 0;
    ck_assert_tl_ok(tl_history_write_csv(hist, append_text, &csv));
    ck_assert_msg(strstr(csv.buf, ",stopped,top_k,top_k_accuracy,val_top_k_accuracy\n") != NULL, "%s", csv.buf);
    char want[64], num[32];
    snprintf(want, sizeof want, ",0,5,%s,", shortest(num, tl_history_value(hist, 0, TL_HISTORY_TOP_K_ACCURACY)));
    ck_assert_msg(strstr(csv.buf, want) != NULL, "%s not in %s", want, csv.buf);
    tl_history_free(hist);
    tl_model_free(m);
    tl_dataset_free(ds);
    tl_dataset_free(val);
}
END_TEST

/* ---- bad options ------------------------------------------------------------------ */

START_TEST(bad_options)
{
    const uint32_t h = 8, w = 8, c = 3;
    const size_t n = 32;
    float *x;
    int32_t *y;
    th_quadrant_data(&x, &y, n, h, w, c, 11);
    tl_dataset *ds = make_dataset(x, y, n, h, w, c, 4);
    tl_model *m = small_model(h, w, c, 4, 0, 0, 1e-2f, 8);
    size_t cnt;
    float *before = th_all_params(m, &cnt);
    tl_augment_options ao = TL_AUGMENT_OPTIONS_INIT;
    tl_fit_options fo = TL_FIT_OPTIONS_INIT;
    fo.augment = &ao;
    ao.crop_padding = 9;
    ck_assert_tl_err(tl_model_fit(m, ds, &fo), TL_EINVAL, "crop_padding 9 is larger than the image (8x8)");
    ao.crop_padding = 8;
    ao.padding_mode = TL_PADDING_REFLECT;
    ck_assert_tl_err(tl_model_fit(m, ds, &fo), TL_EINVAL, "crop_padding 8 with reflect padding");
    ao.crop_padding = 0;
    ao.padding_mode = (tl_padding_mode)7;
    ck_assert_tl_err(tl_model_fit(m, ds, &fo), TL_EINVAL, "padding_mode 7");
    ao.padding_mode = TL_PADDING_ZERO;
    ao.flip_probability = 1.5;
    ck_assert_tl_err(tl_model_fit(m, ds, &fo), TL_EINVAL, "flip_probability 1.5");
    ao.flip_probability = NAN;
    ck_assert_tl_err(tl_model_fit(m, ds, &fo), TL_EINVAL, "flip_probability nan");
    ao.flip_probability = 0.0;
    ao.cutout_size = 9;
    ck_assert_tl_err(tl_model_fit(m, ds, &fo), TL_EINVAL, "cutout_size 9 is larger than the image");
    ao.cutout_size = 0;
    ao.version = 99;
    ck_assert_tl_err(tl_model_fit(m, ds, &fo), TL_EVERSION, "tl_augment_options version 99");
    ao.version = TL_AUGMENT_OPTIONS_VERSION;
    ck_assert_tl_err(tl_augment_options_init(&ao, 2), TL_EVERSION, "tl_augment_options version 2");
    ck_assert_tl_ok(tl_augment_options_init(&ao, 1));
    ck_assert_uint_eq(ao.crop_padding, 0);
    /* Flip on examples that are not images (1x1). */
    {
        float fx[8] = {1, 2, 3, 4, 5, 6, 7, 8};
        int32_t fy[2] = {0, 1};
        tl_dataset *flat = make_dataset(fx, fy, 2, 1, 1, 4, 2);
        tl_model *fm = small_model(1, 1, 4, 2, 0, 0, 1e-2f, 8);
        ao.flip_probability = 0.5;
        ck_assert_tl_err(tl_model_fit(fm, flat, &fo), TL_EINVAL, "needs images, but the data's examples are 1x1");
        ao.flip_probability = 0.0;
        ck_assert_tl_ok(tl_model_fit(fm, flat, &fo)); /* inactive: fine */
        tl_model_free(fm);
        tl_dataset_free(flat);
    }
    fo.augment = NULL;
    /* Early stopping. */
    tl_early_stopping_options es = TL_EARLY_STOPPING_OPTIONS_INIT;
    ck_assert_uint_eq(es.patience, 5);
    fo.early_stopping = &es;
    ck_assert_tl_err(tl_model_fit(m, ds, &fo), TL_EINVAL, "needs a validation set");
    fo.validation = ds;
    es.patience = 0;
    ck_assert_tl_err(tl_model_fit(m, ds, &fo), TL_EINVAL, "early_stopping patience is 0");
    es.patience = 3;
    es.min_delta = -0.5;
    ck_assert_tl_err(tl_model_fit(m, ds, &fo), TL_EINVAL, "early_stopping min_delta -0.5");
    es.min_delta = NAN;
    ck_assert_tl_err(tl_model_fit(m, ds, &fo), TL_EINVAL, "early_stopping min_delta nan");
    es.min_delta = 0.0;
    es.monitor = (tl_schedule_monitor)9;
    ck_assert_tl_err(tl_model_fit(m, ds, &fo), TL_EINVAL, "early_stopping monitor 9");
    es.monitor = TL_MONITOR_VAL_ACCURACY;
    es.version = 0;
    ck_assert_tl_err(tl_model_fit(m, ds, &fo), TL_EVERSION, "tl_early_stopping_options version 0");
    ck_assert_tl_ok(tl_early_stopping_options_init(&es, 1));
    ck_assert_tl_err(tl_early_stopping_options_init(NULL, 1), TL_EINVAL, "opts is NULL");
    fo.early_stopping = NULL;
    /* Checkpoints. */
    fo.checkpoint_every = 2;
    ck_assert_tl_err(tl_model_fit(m, ds, &fo), TL_EINVAL, "checkpoint_every is set but checkpoint_path is NULL");
    fo.checkpoint_path = "";
    ck_assert_tl_err(tl_model_fit(m, ds, &fo), TL_EINVAL, "checkpoint_path is empty");
    fo.checkpoint_every = 0;
    fo.checkpoint_on_improvement = 1;
    fo.checkpoint_path = "/tmp/x.tlc";
    ck_assert_tl_err(tl_model_fit(m, ds, &fo), TL_EINVAL, "checkpoint_on_improvement needs early_stopping");
    /* Nothing above trained. */
    float *after = th_all_params(m, &cnt);
    ck_assert_mem_eq(before, after, cnt * sizeof *after);
    free(after);
    /* A checkpoint that cannot be written ends fit with the save's status,
     * after the first epoch. */
    fo.checkpoint_on_improvement = 0;
    fo.checkpoint_every = 1;
    fo.epochs = 3;
    fo.checkpoint_path = "/nonexistent-tl-dir/ck_{epoch}.tlc";
    tl_clear_error();
    tl_status st = tl_model_fit(m, ds, &fo);
    ck_assert_int_ne(st, TL_OK);
    ck_assert_msg(strstr(tl_last_error(), "checkpoint after epoch 1 (checkpoint_every) was not written") &&
                      strstr(tl_last_error(), "/nonexistent-tl-dir/ck_1.tlc"),
                  "%s", tl_last_error());
    free(before);
    tl_model_free(m);
    tl_dataset_free(ds);
    free(x);
    free(y);
}
END_TEST

/* Every allocation of the recipe (the best-weights copy, the checkpoint
 * path, the history rows) is made before the first step: each failure in
 * turn gives TL_ENOMEM with the weights and the history untouched. */
START_TEST(allocation_failures)
{
    const uint32_t h = 8, w = 8, c = 3;
    float *x;
    int32_t *y;
    th_quadrant_data(&x, &y, 32, h, w, c, 13);
    tl_dataset *ds = make_dataset(x, y, 32, h, w, c, 4);
    tl_augment_options ao = TL_AUGMENT_OPTIONS_INIT;
    ao.crop_padding = 1;
    ao.flip_probability = 0.5;
    tl_early_stopping_options es = TL_EARLY_STOPPING_OPTIONS_INIT;
    es.restore_best = 1;
    char pattern[256];
    tmp_path(pattern, sizeof pattern, "alloc_{epoch}.tlc");
    tl_fit_options fo = TL_FIT_OPTIONS_INIT;
    fo.epochs = 2;
    fo.batch_size = 16;
    fo.validation = ds;
    fo.augment = &ao;
    fo.early_stopping = &es;
    fo.checkpoint_path = pattern;
    fo.checkpoint_on_improvement = 1;
    long n;
    for (n = 1; n < 1000; n++) {
        tl_model *m = small_model(h, w, c, 4, 8, 1, 1e-2f, 8);
        /* Prepare the workspace and optimizer state (tested elsewhere). */
        tl_fit_options warm = TL_FIT_OPTIONS_INIT;
        warm.batch_size = 16;
        ck_assert_tl_ok(tl_model_fit(m, ds, &warm));
        tl_history *hist;
        ck_assert_tl_ok(tl_history_create(&hist));
        fo.history = hist;
        size_t cnt;
        float *before = th_all_params(m, &cnt);
        /* The path buffer is allocated, but no save happens in 2 epochs (the
         * saves allocate after steps; test_alloc covers tl_model_save). */
        fo.checkpoint_on_improvement = 0;
        fo.checkpoint_every = 100;
        tl_clear_error();
        tli_alloc_fail_at(n);
        tl_status st = tl_model_fit(m, ds, &fo);
        long made = tli_alloc_fail_at(0);
        if (made < n) {
            ck_assert_tl_ok(st);
            ck_assert_uint_eq(tl_history_epochs(hist), 2);
        } else {
            ck_assert_msg(st == TL_ENOMEM, "allocation %ld: %s: %s", n, tl_status_str(st), tl_last_error());
            ck_assert_msg(strstr(tl_last_error(), "tl_model_fit") != NULL, "%s", tl_last_error());
            ck_assert_uint_eq(tl_history_epochs(hist), 0);
            float *after = th_all_params(m, &cnt);
            ck_assert_mem_eq(before, after, cnt * sizeof *after);
            free(after);
        }
        free(before);
        tl_history_free(hist);
        tl_model_free(m);
        if (made < n)
            break;
    }
    ck_assert_msg(n == 5, "%ld allocations, expected 4: indices, best copy, path, history rows", n - 1);
    tl_dataset_free(ds);
    free(x);
    free(y);
}
END_TEST

/* A caller built against version 1 of tl_fit_options: the bytes after
 * version 1's members are never read. */
START_TEST(version_1_fit_options)
{
    const uint32_t h = 8, w = 8, c = 3;
    float *x;
    int32_t *y;
    th_quadrant_data(&x, &y, 64, h, w, c, 12);
    tl_dataset *ds = make_dataset(x, y, 64, h, w, c, 4);
    tl_model *a = small_model(h, w, c, 4, 16, 0, 1e-2f, 8), *b = small_model(h, w, c, 4, 16, 0, 1e-2f, 8);
    tl_fit_options *v1 = malloc(sizeof *v1);
    memset(v1, 0xa5, sizeof *v1);
    ck_assert_tl_ok(tl_fit_options_init(v1, 1));
    ck_assert_uint_eq(v1->version, 1);
    v1->epochs = 2;
    v1->batch_size = 16;
    ck_assert_tl_ok(tl_model_fit(a, ds, v1));
    tl_fit_options v2 = TL_FIT_OPTIONS_INIT;
    ck_assert_uint_eq(v2.version, 3);
    v2.epochs = 2;
    v2.batch_size = 16;
    ck_assert_tl_ok(tl_model_fit(b, ds, &v2));
    ck_assert(same_params(a, b));
    tl_fit_options d;
    ck_assert_tl_ok(tl_fit_options_init(&d, 2));
    ck_assert_ptr_null(d.augment);
    ck_assert_ptr_null(d.history);
    ck_assert_uint_eq(d.version, 2);
    ck_assert_tl_ok(tl_fit_options_init(&d, 3));
    ck_assert_uint_eq(d.top_k, 0);
    ck_assert(d.exchange == NULL);
    ck_assert_uint_eq(d.shard_count, 0);
    ck_assert_int_eq(d.sync_batchnorm, 0);
    ck_assert_tl_err(tl_fit_options_init(&d, 4), TL_EVERSION, "tl_fit_options version 4");
    free(v1);
    tl_model_free(a);
    tl_model_free(b);
    tl_dataset_free(ds);
    free(x);
    free(y);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("fit_recipe");
    TCase *tc = tcase_create("recipe");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, crop_and_flip_by_hand);
    tcase_add_test(tc, zero_and_reflect_padding_literally);
    tcase_add_test(tc, cutout_by_hand);
    tcase_add_test(tc, same_batches_with_1_and_2_threads);
    tcase_add_test(tc, resume_repeats_the_augmented_batches);
    tcase_add_test(tc, inactive_augmentation_keeps_the_stream);
    tcase_add_test(tc, evaluation_does_not_augment);
    tcase_add_test(tc, hook_changes_inputs_and_labels);
    tcase_add_test(tc, early_stopping_restores_the_best);
    tcase_add_test(tc, early_stopping_resumes_exactly);
    tcase_add_test(tc, history_and_csv);
    tcase_add_test(tc, top_k_in_history);
    tcase_add_test(tc, bad_options);
    tcase_add_test(tc, version_1_fit_options);
    tcase_add_test(tc, allocation_failures);
    suite_add_tcase(s, tc);
    return th_run(s);
}
