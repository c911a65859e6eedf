/* test_io.c - the native checkpoint: round trips with and without optimizer
 * state, resume == uninterrupted bit for bit, reading a file's description,
 * loading parameters into an existing model, every kind of corrupt file,
 * atomic saves that fail, and allocation failures. The corruption tests
 * build their files from the byte layout in docs/format-checkpoint.md with
 * zlib directly, so they also check that the document is right. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "helpers.h"
#include "io_helpers.h"
#include "train.h" /* internals: optimizer state, training stream, alloc hook */

static char *dir;

static void setup(void)
{
    dir = th_dir_create();
}

static void teardown(void)
{
    th_dir_remove(dir);
    dir = NULL;
}

/* A small model that trains in milliseconds: the seed CNN on 12x12x1. */
static tl_model *small_cnn(uint64_t seed)
{
    return th_seed_cnn(12, 12, 1, 4, seed);
}

static void compile_adam(tl_model *m)
{
    tl_optimizer *o;
    tl_adam_options ao = TL_ADAM_OPTIONS_INIT;
    ao.learning_rate = 3e-3f;
    ao.weight_decay = 1e-4f;
    ck_assert_tl_ok(tl_optimizer_create_adam(&o, &ao));
    ck_assert_tl_ok(tl_model_compile(m, o, TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY));
}

static void fit(tl_model *m, const tl_dataset *ds, uint32_t epochs, uint64_t seed)
{
    tl_fit_options fo = TL_FIT_OPTIONS_INIT;
    fo.epochs = epochs;
    fo.batch_size = 16;
    fo.seed = seed;
    ck_assert_tl_ok(tl_model_fit(m, ds, &fo));
}

/* Same optimizer, step count, and state arrays bit for bit. */
static void assert_same_optimizer(const tl_model *a, const tl_model *b)
{
    ck_assert_ptr_nonnull(a->opt);
    ck_assert_ptr_nonnull(b->opt);
    ck_assert_int_eq(a->opt->kind, b->opt->kind);
    ck_assert_int_eq(a->loss, b->loss);
    ck_assert_uint_eq(a->opt->steps, b->opt->steps);
    ck_assert_int_eq(memcmp(&a->opt->lr, &b->opt->lr, sizeof(float)), 0);
    ck_assert(a->opt->beta1 == b->opt->beta1 && a->opt->beta2 == b->opt->beta2 && a->opt->eps == b->opt->eps);
    ck_assert(a->opt->momentum == b->opt->momentum && a->opt->nesterov == b->opt->nesterov);
    ck_assert(a->opt->weight_decay == b->opt->weight_decay);
    for (size_t i = 0; i < a->nlayers; i++)
        for (size_t p = 0; p < a->layers[i]->nparams; p++)
            for (int k = 0; k < 2; k++) {
                const float *sa = a->layers[i]->params[p].state[k], *sb = b->layers[i]->params[p].state[k];
                ck_assert_msg((sa == NULL) == (sb == NULL), "layer %zu param %zu slot %d", i, p, k);
                if (sa)
                    ck_assert_int_eq(memcmp(sa, sb, a->layers[i]->params[p].count * sizeof(float)), 0);
            }
}

/* ---- round trips ---------------------------------------------------------------- */

START_TEST(roundtrip_without_optimizer)
{
    tl_model *m = th_seed_cnn(32, 32, 3, 10, 7);
    tl_layer *l;
    ck_assert_tl_ok(tl_model_layer(&l, m, 2));
    ck_assert_tl_ok(tl_layer_set_lr_scale(l, 0.25f));
    ck_assert_tl_ok(tl_model_set_trainable(m, 0, 1, 0));
    ck_assert_tl_ok(tl_layer_set_name(l, "features_2"));
    ck_assert_tl_ok(tl_model_set_threads(m, 3));
    compile_adam(m); /* compiled, but saved without the optimizer */
    char *path = th_join(dir, "m.tlm");
    tl_save_options so = TL_SAVE_OPTIONS_INIT;
    so.include_optimizer = 0;
    ck_assert_tl_ok(tl_model_save(m, path, &so));

    tl_model *r = NULL;
    ck_assert_tl_ok(tl_model_load(&r, path));
    ck_assert(th_same_params(m, r));
    ck_assert_uint_eq(tl_model_seed(r), 7);
    ck_assert_uint_eq(r->threads_req, 3);
    ck_assert_int_eq(memcmp(&r->train_rng, &m->train_rng, sizeof m->train_rng), 0);
    ck_assert_ptr_null(tl_model_optimizer(r));
    ck_assert_int_eq(tl_model_loss(r), 0);
    for (size_t i = 0; i < m->nlayers; i++) {
        const tl_layer *a = m->layers[i], *b = r->layers[i];
        ck_assert_int_eq(a->ops->kind, b->ops->kind);
        ck_assert_str_eq(a->name, b->name);
        ck_assert_int_eq(a->act, b->act);
        ck_assert_int_eq(a->use_bias, b->use_bias);
        ck_assert_int_eq(a->trainable, b->trainable);
        ck_assert(a->lr_scale == b->lr_scale);
        ck_assert(tli_shape_eq(&a->out_shape, &b->out_shape));
        ck_assert_int_eq(memcmp(&a->cfg, &b->cfg, sizeof a->cfg), 0);
    }
    /* Identical predictions, bit for bit, on the same thread count. */
    tl_model_set_threads(m, 1);
    tl_model_set_threads(r, 1);
    float x[4 * 32 * 32 * 3];
    th_fill_uniform(x, sizeof x / sizeof *x, 0.0f, 1.0f, 3);
    size_t na, nb;
    float *ya = th_predict(m, x, 4, &na), *yb = th_predict(r, x, 4, &nb);
    ck_assert_uint_eq(na, nb);
    ck_assert_int_eq(memcmp(ya, yb, na * sizeof *ya), 0);
    free(ya);
    free(yb);
    tl_model_free(r);
    tl_model_free(m);
    free(path);
}
END_TEST

START_TEST(roundtrip_with_adam_state_and_without)
{
    tl_model *m = small_cnn(3);
    tl_dataset *ds = th_quadrant_dataset(64, 12, 12, 1, 5);
    compile_adam(m);
    fit(m, ds, 2, 11);
    char *with = th_join(dir, "with.tlm"), *without = th_join(dir, "without.tlm");
    ck_assert_tl_ok(tl_model_save(m, with, NULL));
    tl_save_options so = TL_SAVE_OPTIONS_INIT;
    so.include_optimizer = 0;
    ck_assert_tl_ok(tl_model_save(m, without, &so));

    tl_model *r = NULL;
    ck_assert_tl_ok(tl_model_load(&r, with));
    ck_assert(th_same_params(m, r));
    assert_same_optimizer(m, r);
    ck_assert_uint_eq(tl_optimizer_steps(tl_model_optimizer(r)), 8);
    ck_assert_uint_eq(tl_model_optimizer_state_bytes(r), tl_model_optimizer_state_bytes(m));
    tl_model_free(r);

    ck_assert_tl_ok(tl_model_load(&r, without));
    ck_assert(th_same_params(m, r));
    ck_assert_ptr_null(tl_model_optimizer(r));
    ck_assert_uint_eq(tl_model_optimizer_state_bytes(r), 0);
    tl_model_free(r);

    size_t a, b;
    free(th_file_read(with, &a));
    free(th_file_read(without, &b));
    ck_assert_uint_gt(a, b); /* two Adam moments per parameter */
    tl_dataset_free(ds);
    tl_model_free(m);
    free(with);
    free(without);
}
END_TEST

START_TEST(roundtrip_sgd_momentum_with_a_frozen_layer)
{
    tl_model *m = small_cnn(4);
    tl_dataset *ds = th_quadrant_dataset(48, 12, 12, 1, 6);
    tl_sgd_options so = TL_SGD_OPTIONS_INIT;
    so.momentum = 0.9f;
    so.nesterov = 1;
    tl_optimizer *o;
    ck_assert_tl_ok(tl_optimizer_create_sgd(&o, &so));
    ck_assert_tl_ok(tl_model_compile(m, o, TL_LOSS_CATEGORICAL_CROSSENTROPY));
    ck_assert_tl_ok(tl_model_freeze_upto(m, 1));
    fit(m, ds, 1, 2);
    ck_assert_ptr_null(m->layers[0]->params[0].state[0]); /* frozen: never any state */
    char *path = th_join(dir, "sgd.tlm");
    ck_assert_tl_ok(tl_model_save(m, path, NULL));
    tl_model *r = NULL;
    ck_assert_tl_ok(tl_model_load(&r, path));
    ck_assert(th_same_params(m, r));
    assert_same_optimizer(m, r);
    ck_assert_int_eq(tl_layer_is_trainable(r->layers[0]), 0);
    /* Both go on identically. */
    fit(m, ds, 1, 0);
    fit(r, ds, 1, 0);
    ck_assert(th_same_params(m, r));
    tl_model_free(r);
    tl_dataset_free(ds);
    tl_model_free(m);
    free(path);
}
END_TEST

START_TEST(resume_equals_uninterrupted)
{
    tl_dataset *ds = th_quadrant_dataset(80, 12, 12, 1, 9);
    tl_model *straight = small_cnn(21), *first = small_cnn(21);
    compile_adam(straight);
    compile_adam(first);
    fit(straight, ds, 6, 17);

    fit(first, ds, 3, 17);
    char *path = th_join(dir, "epoch3.tlm");
    ck_assert_tl_ok(tl_model_save(first, path, NULL));
    tl_model_free(first);
    tl_model *resumed = NULL;
    ck_assert_tl_ok(tl_model_load(&resumed, path));
    fit(resumed, ds, 3, 0); /* seed 0: continue the saved training stream */

    ck_assert(th_same_params(straight, resumed));
    assert_same_optimizer(straight, resumed);
    ck_assert_int_eq(memcmp(&straight->train_rng, &resumed->train_rng, sizeof straight->train_rng), 0);
    tl_model_free(resumed);
    tl_model_free(straight);
    tl_dataset_free(ds);
    free(path);
}
END_TEST

START_TEST(empty_model_roundtrip)
{
    tl_model *m;
    ck_assert_tl_ok(tl_model_create(&m, 5, 6, 7, 99));
    char *path = th_join(dir, "empty.tlm");
    ck_assert_tl_ok(tl_model_save(m, path, NULL));
    tl_model *r = NULL;
    ck_assert_tl_ok(tl_model_load(&r, path));
    tl_shape s;
    ck_assert_tl_ok(tl_model_input_shape(&s, r));
    ck_assert_uint_eq(s.dims[0], 5);
    ck_assert_uint_eq(s.dims[1], 6);
    ck_assert_uint_eq(s.dims[2], 7);
    ck_assert_uint_eq(tl_model_num_layers(r), 0);
    ck_assert_uint_eq(tl_model_seed(r), 99);
    tl_model_free(r);
    tl_model_free(m);
    free(path);
}
END_TEST

START_TEST(compression_levels_and_options)
{
    tl_model *m = small_cnn(1);
    char *a = th_join(dir, "a.tlm"), *b = th_join(dir, "b.tlm");
    tl_save_options so;
    ck_assert_tl_ok(tl_save_options_init(&so, TL_SAVE_OPTIONS_VERSION));
    ck_assert_int_eq(so.compression_level, 6);
    ck_assert_int_eq(so.include_optimizer, 1);
    so.compression_level = 0;
    ck_assert_tl_ok(tl_model_save(m, a, &so));
    so.compression_level = 9;
    ck_assert_tl_ok(tl_model_save(m, b, &so));
    size_t na, nb;
    free(th_file_read(a, &na));
    free(th_file_read(b, &nb));
    ck_assert_uint_gt(na, nb);
    tl_model *r;
    ck_assert_tl_ok(tl_model_load(&r, a));
    ck_assert(th_same_params(m, r));
    tl_model_free(r);
    so.compression_level = 10;
    ck_assert_tl_err(tl_model_save(m, a, &so), TL_EINVAL, "compression level 10");
    so.compression_level = 6;
    so.version = 2;
    ck_assert_tl_err(tl_model_save(m, a, &so), TL_EVERSION, "version 2");
    ck_assert_tl_err(tl_save_options_init(&so, 0), TL_EVERSION, "version 0");
    ck_assert_tl_err(tl_save_options_init(NULL, 1), TL_EINVAL, "NULL");
    ck_assert_tl_err(tl_model_save(NULL, a, NULL), TL_EINVAL, "model is NULL");
    ck_assert_tl_err(tl_model_save(m, NULL, NULL), TL_EINVAL, "path is NULL");
    ck_assert_tl_err(tl_model_load(NULL, a), TL_EINVAL, "out is NULL");
    r = (tl_model *)&so;
    ck_assert_tl_err(tl_model_load(&r, NULL), TL_EINVAL, "path is NULL");
    ck_assert_ptr_null(r);
    tl_model_free(m);
    free(a);
    free(b);
}
END_TEST

/* ---- a file's description ---------------------------------------------------------- */

static int append_text(const char *text, size_t len, void *payload)
{
    char *buf = payload;
    size_t have = strlen(buf);
    if (have + len < 8192) {
        memcpy(buf + have, text, len);
        buf[have + len] = '\0';
    }
    return 0;
}

static int stop_at_once(const char *text, size_t len, void *payload)
{
    (void)text, (void)len, (void)payload;
    return 1;
}

START_TEST(info_describes_a_file_without_building_it)
{
    tl_model *m = th_seed_cnn(32, 32, 3, 10, 5);
    ck_assert_tl_ok(tl_model_freeze_upto(m, 2));
    compile_adam(m);
    tl_dataset *ds = th_quadrant_dataset(8, 32, 32, 3, 1);
    tl_fit_options fo = TL_FIT_OPTIONS_INIT;
    fo.batch_size = 4;
    ck_assert_tl_ok(tl_model_fit(m, ds, &fo));
    char *path = th_join(dir, "cifar.tlm");
    ck_assert_tl_ok(tl_model_save(m, path, NULL));

    tl_checkpoint_info *info = NULL;
    ck_assert_tl_ok(tl_checkpoint_info_read(&info, path));
    uint32_t major, minor;
    ck_assert_tl_ok(tl_checkpoint_info_format_version(&major, &minor, info));
    ck_assert_uint_eq(major, TL_CHECKPOINT_VERSION_MAJOR);
    ck_assert_uint_eq(minor, 0); /* the oldest format that holds the model */
    tl_shape s;
    ck_assert_tl_ok(tl_checkpoint_info_input_shape(&s, info));
    ck_assert_uint_eq(s.rank, 3);
    ck_assert_uint_eq(s.dims[0], 32);
    ck_assert_uint_eq(tl_checkpoint_info_seed(info), 5);
    ck_assert_uint_eq(tl_checkpoint_info_num_layers(info), 6);
    ck_assert_uint_eq(tl_checkpoint_info_param_count(info), tl_model_param_count(m));
    ck_assert_int_eq(tl_checkpoint_info_optimizer(info), TL_OPT_ADAM);
    ck_assert_uint_eq(tl_checkpoint_info_optimizer_steps(info), 2);
    ck_assert_int_eq(tl_checkpoint_info_loss(info), TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY);
    ck_assert_int_eq(tl_checkpoint_info_layer_kind(info, 0), TL_LAYER_CONV2D);
    ck_assert_int_eq(tl_checkpoint_info_layer_kind(info, 6), 0);
    ck_assert_str_eq(tl_checkpoint_info_layer_name(info, 3), "max_pooling2d_1");
    ck_assert_str_eq(tl_checkpoint_info_layer_name(info, 6), "");
    ck_assert_int_eq(tl_checkpoint_info_layer_trainable(info, 0), 0);
    ck_assert_int_eq(tl_checkpoint_info_layer_trainable(info, 2), 1);
    ck_assert(tl_checkpoint_info_layer_lr_scale(info, 2) == 1.0f);
    ck_assert_uint_eq(tl_checkpoint_info_layer_num_params(info, 5), 2);
    ck_assert_tl_ok(tl_checkpoint_info_layer_output_shape(&s, info, 4));
    ck_assert_uint_eq(s.rank, 1);
    ck_assert_uint_eq(s.dims[0], 2304);
    tl_param_info pi;
    ck_assert_tl_ok(tl_checkpoint_info_layer_param(&pi, info, 5, 0));
    ck_assert_str_eq(pi.name, "kernel");
    ck_assert_uint_eq(pi.count, 23040);
    ck_assert_uint_eq(pi.shape.dims[0], 2304);
    ck_assert_tl_err(tl_checkpoint_info_layer_param(&pi, info, 5, 2), TL_ERANGE, "'dense'");
    ck_assert_tl_err(tl_checkpoint_info_layer_param(&pi, info, 9, 0), TL_ERANGE, "layer 9");
    ck_assert_tl_err(tl_checkpoint_info_layer_output_shape(NULL, info, 0), TL_EINVAL, "NULL");

    /* The settings come back as the add functions' options: rebuilding from
     * them gives the same architecture. */
    tl_model *rebuilt;
    ck_assert_tl_ok(tl_model_create(&rebuilt, 32, 32, 3, 5));
    for (size_t i = 0; i < tl_checkpoint_info_num_layers(info); i++) {
        tl_conv2d_options co = TL_CONV2D_OPTIONS_INIT;
        tl_maxpool2d_options po = TL_MAXPOOL2D_OPTIONS_INIT;
        tl_dense_options dop = TL_DENSE_OPTIONS_INIT;
        switch (tl_checkpoint_info_layer_kind(info, i)) {
        case TL_LAYER_CONV2D:
            ck_assert_tl_ok(tl_checkpoint_info_layer_conv2d(&co, info, i));
            ck_assert_tl_ok(tl_model_add_conv2d(NULL, rebuilt, &co));
            break;
        case TL_LAYER_MAXPOOL2D:
            ck_assert_tl_ok(tl_checkpoint_info_layer_maxpool2d(&po, info, i));
            ck_assert_tl_ok(tl_model_add_maxpool2d(NULL, rebuilt, &po));
            break;
        case TL_LAYER_DENSE:
            ck_assert_tl_ok(tl_checkpoint_info_layer_dense(&dop, info, i));
            ck_assert_tl_ok(tl_model_add_dense(NULL, rebuilt, &dop));
            break;
        case TL_LAYER_FLATTEN:
            ck_assert_tl_ok(tl_model_add_flatten(NULL, rebuilt, tl_checkpoint_info_layer_name(info, i)));
            break;
        default: ck_abort_msg("layer %zu: a kind the seed CNN does not have", i);
        }
    }
    ck_assert_tl_ok(tl_model_freeze_upto(rebuilt, 2));
    char sa[4096], sb[4096];
    ck_assert_tl_ok(tl_model_summary(sa, sizeof sa, NULL, m));
    ck_assert_tl_ok(tl_model_summary(sb, sizeof sb, NULL, rebuilt));
    ck_assert_str_eq(sa, sb);
    tl_dense_options dop = TL_DENSE_OPTIONS_INIT;
    ck_assert_tl_err(tl_checkpoint_info_layer_dense(&dop, info, 0), TL_EINVAL, "conv2d layer, not dense");
    dop.version = 99;
    ck_assert_tl_err(tl_checkpoint_info_layer_dense(&dop, info, 5), TL_EVERSION, "99");

    /* The summary of the file: the model's table plus the file's facts. */
    char *text = calloc(8192, 1);
    ck_assert_tl_ok(tl_checkpoint_info_summary_write(info, append_text, text));
    ck_assert_ptr_nonnull(strstr(text, "Checkpoint (format 1.0): 6 layers, input (32, 32, 3), seed 5"));
    ck_assert_ptr_nonnull(strstr(text, "conv2d_1 (conv2d)"));
    ck_assert_ptr_nonnull(strstr(text, "no (frozen)"));
    ck_assert_ptr_nonnull(strstr(text, "Total params: 42,442"));
    ck_assert_ptr_nonnull(strstr(text, "Non-trainable params: 896"));
    ck_assert_ptr_nonnull(strstr(text, "Optimizer: adam, 2 steps, loss sparse_categorical_crossentropy"));
    /* The table is the model's own: everything after the model summary's
     * first line up to its parameter totals appears in the file's summary. */
    char *table = strchr(sa, '\n') + 1;
    char *totals_end = strchr(strstr(table, "Non-trainable params:"), '\n') + 1;
    *totals_end = '\0';
    ck_assert_ptr_nonnull(strstr(text, table));
    ck_assert_tl_err(tl_checkpoint_info_summary_write(info, stop_at_once, NULL), TL_ECANCELED, "stop");
    free(text);
    tl_checkpoint_info_free(info);
    tl_checkpoint_info_free(NULL);
    ck_assert_int_eq(tl_checkpoint_info_optimizer(NULL), 0);
    ck_assert_tl_err(tl_checkpoint_info_read(&info, "/nonexistent/x.tlm"), TL_ENOTFOUND, "/nonexistent/x.tlm");
    ck_assert_ptr_null(info);
    tl_model_free(rebuilt);
    tl_model_free(m);
    tl_dataset_free(ds);
    free(path);
}
END_TEST

/* ---- parameters from a file into an existing model -------------------------------- */

START_TEST(load_params_transfers_from_a_file)
{
    tl_model *src = th_seed_cnn(32, 32, 3, 10, 1);
    char *path = th_join(dir, "src.tlm");
    ck_assert_tl_ok(tl_model_save(src, path, NULL));

    /* Same architecture, by position, strict: everything copied. */
    tl_model *same = th_seed_cnn(32, 32, 3, 10, 2);
    ck_assert(!th_same_params(src, same));
    tl_transfer_report *r = NULL;
    ck_assert_tl_ok(tl_model_load_params(&r, same, path, NULL));
    ck_assert(th_same_params(src, same));
    ck_assert_uint_eq(tl_transfer_report_params_copied(r), tl_model_param_count(src));
    tl_transfer_report_free(r);

    /* A 100-class head: strict fails, names the layers, changes nothing. */
    tl_model *dst = th_seed_cnn(32, 32, 3, 100, 3);
    size_t n0, n1;
    float *before = th_all_params(dst, &n0);
    ck_assert_tl_err(tl_model_load_params(&r, dst, path, NULL), TL_ESHAPE, "tl_model_load_params (strict)");
    ck_assert_ptr_nonnull(strstr(tl_last_error(), "(2304, 10)"));
    float *after = th_all_params(dst, &n1);
    ck_assert_int_eq(memcmp(before, after, n0 * sizeof(float)), 0);
    ck_assert_ptr_nonnull(r);
    ck_assert_uint_eq(tl_transfer_report_count_outcome(r, TL_TRANSFER_SHAPE_DIFFERS), 1);
    tl_transfer_report_free(r);
    free(after);

    /* Lenient by name: the convolutions come, the head keeps its weights. */
    tl_transfer_options o = TL_TRANSFER_OPTIONS_INIT;
    o.policy = TL_TRANSFER_LENIENT;
    o.match = TL_MATCH_NAME;
    ck_assert_tl_ok(tl_model_load_params(&r, dst, path, &o));
    ck_assert_uint_eq(tl_transfer_report_params_copied(r), 896 + 18496);
    ck_assert_uint_eq(tl_transfer_report_count_outcome(r, TL_TRANSFER_COPIED), 2);
    tl_layer *la, *lb;
    tl_model_layer(&la, src, 2);
    tl_model_layer(&lb, dst, 2);
    float ka[18432], kb[18432];
    tl_layer_get_weights(ka, 18432, la, 0);
    tl_layer_get_weights(kb, 18432, lb, 0);
    ck_assert_int_eq(memcmp(ka, kb, sizeof ka), 0);
    after = th_all_params(dst, &n1);
    ck_assert_int_eq(memcmp(before + n0 - 230500, after + n1 - 230500, 230500 * sizeof(float)), 0);
    tl_transfer_report_free(r);

    ck_assert_tl_err(tl_model_load_params(&r, dst, "/nonexistent.tlm", NULL), TL_ENOTFOUND, "/nonexistent.tlm");
    ck_assert_ptr_null(r);
    ck_assert_tl_err(tl_model_load_params(&r, NULL, path, NULL), TL_EINVAL, "model is NULL");
    o.version = 7;
    ck_assert_tl_err(tl_model_load_params(&r, dst, path, &o), TL_EVERSION, "version 7");
    free(before);
    free(after);
    tl_model_free(src);
    tl_model_free(same);
    tl_model_free(dst);
    free(path);
}
END_TEST

/* ---- hand-made files ---------------------------------------------------------------------- */

/* A checkpoint taken apart: the decompressed payload and the version. */
typedef struct ckfile {
    uint8_t *p;
    size_t len;
    uint16_t major, minor;
} ckfile;

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t rd64(const uint8_t *p)
{
    return rd32(p) | (uint64_t)rd32(p + 4) << 32;
}
static void wr16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static void wr32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static void wr64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* Fix the header CRC (bytes 0..43) after editing the header. */
static void fix_header_crc(uint8_t *h)
{
    wr32(h + 44, (uint32_t)crc32(0, h, 44));
}

static ckfile ck_open(const char *path)
{
    size_t n;
    uint8_t *f = th_file_read(path, &n);
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_ge(n, 48);
    ck_assert_int_eq(memcmp(f, "\x89TLM\r\n\x1a\n", 8), 0);
    ckfile c = {NULL, (size_t)rd64(f + 16), (uint16_t)(f[8] | f[9] << 8), (uint16_t)(f[10] | f[11] << 8)};
    ck_assert_uint_eq(rd64(f + 24), n - 48);
    c.p = malloc(c.len);
    uLongf out = c.len;
    ck_assert_int_eq(uncompress(c.p, &out, f + 48, n - 48), Z_OK);
    ck_assert_uint_eq(out, c.len);
    ck_assert_uint_eq(rd32(f + 32), (uint32_t)crc32(0, c.p, (uInt)c.len));
    ck_assert_uint_eq(rd32(f + 36), (uint32_t)crc32(0, f + 48, (uInt)(n - 48)));
    free(f);
    return c;
}

/* Write a payload as a well-formed file: every CRC right, so the reader
 * must find the problem inside. */
static void ck_write(const char *path, const ckfile *c)
{
    uLongf cap = compressBound(c->len);
    uint8_t *f = calloc(48 + cap, 1);
    ck_assert_int_eq(compress2(f + 48, &cap, c->p, c->len, 6), Z_OK);
    memcpy(f, "\x89TLM\r\n\x1a\n", 8);
    wr16(f + 8, c->major);
    wr16(f + 10, c->minor);
    f[12] = 1;
    wr64(f + 16, c->len);
    wr64(f + 24, cap);
    wr32(f + 32, (uint32_t)crc32(0, c->p, (uInt)c->len));
    wr32(f + 36, (uint32_t)crc32(0, f + 48, (uInt)cap));
    fix_header_crc(f);
    th_file_write(path, f, 48 + cap);
    free(f);
}

/* Offset of the nth (0-based) section with `tag`. */
static size_t ck_find(const ckfile *c, const char *tag, int nth)
{
    for (size_t off = 0; off + 12 <= c->len;) {
        uint64_t len = rd64(c->p + off + 4);
        if (memcmp(c->p + off, tag, 4) == 0 && nth-- == 0)
            return off;
        off += 12 + (size_t)len;
    }
    ck_abort_msg("no section %s", tag);
    return 0;
}

static ckfile ck_copy(const ckfile *c)
{
    ckfile d = *c;
    d.p = malloc(c->len);
    memcpy(d.p, c->p, c->len);
    return d;
}

/* Replace `remove` bytes at `at` with `ins`. */
static void ck_splice(ckfile *c, size_t at, size_t remove, const void *ins, size_t ins_len)
{
    uint8_t *p = malloc(c->len - remove + ins_len);
    memcpy(p, c->p, at);
    if (ins_len) /* ins may be NULL then, which memcpy must not get */
        memcpy(p + at, ins, ins_len);
    memcpy(p + at + ins_len, c->p + at + remove, c->len - at - remove);
    free(c->p);
    c->p = p;
    c->len = c->len - remove + ins_len;
}

/* Add n zero bytes at the end of section `off`, and grow its length. */
static void ck_grow_section(ckfile *c, size_t off, size_t n)
{
    uint64_t len = rd64(c->p + off + 4);
    uint8_t zeros[16] = {0};
    ck_splice(c, off + 12 + (size_t)len, 0, zeros, n);
    wr64(c->p + off + 4, len + n);
}

/* Where the fields of a LAYR body are, as docs/format-checkpoint.md lays
 * them out for the file's minor version; offsets from the body's first
 * byte. */
typedef struct layr {
    size_t head;      /* the section header, in the payload */
    size_t len;       /* of the body */
    uint32_t kind;
    size_t name;      /* the name; its length is byte 7 */
    size_t kind_name; /* 1.1: the length byte of the kind's name */
    size_t ninputs;   /* 1.1: u32 count, then the u32 inputs */
    size_t nfields;   /* 1.1: u32 count */
    size_t fields;    /* the first settings word */
    uint32_t nf;      /* settings words */
    size_t out_shape; /* u32 rank, dims */
    size_t ntensors;  /* u32 count */
    uint32_t nt;
    size_t tensor[8]; /* each tensor's name length byte */
    size_t role[8];   /* 1.1: its role byte */
    size_t shape[8];  /* its u32 rank */
} layr;

/* Settings words of kinds 1..4 in a format 1.0 LAYR (no count). */
static const uint32_t v1_0_fields[] = {0, 6, 5, 0, 1};

static layr layr_at(const ckfile *c, size_t head)
{
    const uint8_t *b = c->p + head + 12;
    layr l;
    memset(&l, 0, sizeof l);
    l.head = head;
    l.len = (size_t)rd64(c->p + head + 4);
    l.kind = rd32(b);
    l.name = 12;
    size_t at = 12 + b[7];
    if (c->minor >= 1) {
        l.kind_name = at;
        at += 1 + (size_t)b[at];
        l.ninputs = at;
        at += 4 + 4 * (size_t)rd32(b + at);
        l.nfields = at;
        l.nf = rd32(b + at);
        at += 4;
    } else {
        l.nf = l.kind < 5 ? v1_0_fields[l.kind] : 0;
    }
    l.fields = at;
    at += 4 * (size_t)l.nf;
    l.out_shape = at;
    at += 4 + 4 * (size_t)rd32(b + at);
    l.ntensors = at;
    l.nt = rd32(b + at);
    at += 4;
    ck_assert_uint_le(l.nt, 8);
    for (uint32_t i = 0; i < l.nt; i++) {
        l.tensor[i] = at;
        at += 1 + (size_t)b[at];
        if (c->minor >= 1)
            l.role[i] = at++;
        l.shape[i] = at;
        at += 4 + 4 * (size_t)rd32(b + at);
    }
    ck_assert_uint_eq(at, l.len);
    return l;
}

/* The nth LAYR section. */
static layr ck_layr(const ckfile *c, int nth)
{
    return layr_at(c, ck_find(c, "LAYR", nth));
}

/* The body of a LAYR section (valid until the payload changes). */
static uint8_t *ck_body(const ckfile *c, const layr *l)
{
    return c->p + l->head + 12;
}

/* Replace `remove` bytes at body offset `at` of LAYR section `l` with
 * `ins`, and fix the section's length. */
static void ck_layr_splice(ckfile *c, const layr *l, size_t at, size_t remove, const void *ins, size_t n)
{
    ck_splice(c, l->head + 12 + at, remove, ins, n);
    wr64(c->p + l->head + 4, l->len - remove + n);
}

/* The same checkpoint as a format 1.0 writer lays it out: each LAYR
 * without the kind's name, the inputs, the settings count and the tensor
 * roles. Every layer must take the previous one; a kind 1.0 did not have
 * keeps no settings (1.0 has none for it). */
static void ck_to_1_0(ckfile *c)
{
    ck_assert_uint_eq(c->minor, 1);
    uint8_t *out = malloc(c->len);
    size_t n = 0, index = 0;
    for (size_t off = 0; off < c->len;) {
        size_t len = 12 + (size_t)rd64(c->p + off + 4);
        if (memcmp(c->p + off, "LAYR", 4) != 0) {
            memcpy(out + n, c->p + off, len);
            n += len;
            off += len;
            continue;
        }
        layr l = layr_at(c, off);
        const uint8_t *b = c->p + off + 12;
        ck_assert_uint_eq(rd32(b + l.ninputs), 1);
        ck_assert_uint_eq(rd32(b + l.ninputs + 4), index ? (uint32_t)(index - 1) : UINT32_MAX);
        uint32_t nf = l.kind < 5 ? v1_0_fields[l.kind] : 0;
        ck_assert_uint_le(nf, l.nf);
        size_t start = n;
        memcpy(out + n, c->p + off, 12 + l.kind_name); /* header, common fields, name */
        n += 12 + l.kind_name;
        memcpy(out + n, b + l.fields, 4 * (size_t)nf);
        n += 4 * (size_t)nf;
        memcpy(out + n, b + l.out_shape, l.tensor[0] ? l.tensor[0] - l.out_shape : l.len - l.out_shape);
        n += l.tensor[0] ? l.tensor[0] - l.out_shape : l.len - l.out_shape;
        for (uint32_t i = 0; i < l.nt; i++) {
            ck_assert_uint_eq(b[l.role[i]], 0);
            size_t end = i + 1 < l.nt ? l.tensor[i + 1] : l.len;
            memcpy(out + n, b + l.tensor[i], l.role[i] - l.tensor[i]);
            n += l.role[i] - l.tensor[i];
            memcpy(out + n, b + l.shape[i], end - l.shape[i]);
            n += end - l.shape[i];
        }
        wr64(out + start + 4, n - start - 12);
        off += len;
        index++;
    }
    free(c->p);
    c->p = out;
    c->len = n;
    c->minor = 0;
}

/* The inverse: a format 1.0 file (what libtl writes for a sequential
 * model of the 1.0 kinds) in the 1.1 layout, as a writer of 1.1 records
 * would lay it out: each LAYR gets the kind's name, its one input (the
 * previous layer), the settings count and a role byte (parameter) per
 * tensor. The corruption tests edit 1.1 records of such files. */
static void ck_to_1_1(ckfile *c)
{
    static const char *const kind_names[] = {"", "conv2d", "maxpool2d", "flatten", "dense"};
    ck_assert_uint_eq(c->minor, 0);
    uint8_t *out = malloc(c->len * 2 + 4096);
    size_t n = 0, index = 0;
    for (size_t off = 0; off < c->len;) {
        size_t len = 12 + (size_t)rd64(c->p + off + 4);
        if (memcmp(c->p + off, "LAYR", 4) != 0) {
            memcpy(out + n, c->p + off, len);
            n += len;
            off += len;
            continue;
        }
        layr l = layr_at(c, off);
        const uint8_t *b = c->p + off + 12;
        ck_assert_uint_ge(l.kind, 1);
        ck_assert_uint_le(l.kind, 4);
        size_t start = n;
        memcpy(out + n, c->p + off, 12 + l.fields); /* header, common fields, name */
        n += 12 + l.fields;
        size_t klen = strlen(kind_names[l.kind]);
        out[n++] = (uint8_t)klen;
        memcpy(out + n, kind_names[l.kind], klen);
        n += klen;
        wr32(out + n, 1);
        wr32(out + n + 4, index ? (uint32_t)(index - 1) : UINT32_MAX);
        wr32(out + n + 8, l.nf);
        n += 12;
        memcpy(out + n, b + l.fields, l.ntensors + 4 - l.fields); /* settings, output shape, count */
        n += l.ntensors + 4 - l.fields;
        for (uint32_t i = 0; i < l.nt; i++) {
            size_t end = i + 1 < l.nt ? l.tensor[i + 1] : l.len;
            memcpy(out + n, b + l.tensor[i], l.shape[i] - l.tensor[i]);
            n += l.shape[i] - l.tensor[i];
            out[n++] = 0; /* a parameter */
            memcpy(out + n, b + l.shape[i], end - l.shape[i]);
            n += end - l.shape[i];
        }
        wr64(out + start + 4, n - start - 12);
        off += len;
        index++;
    }
    free(c->p);
    c->p = out;
    c->len = n;
    c->minor = 1;
}

/* A small model saved with Adam state: the file the corruption tests edit,
 * in the 1.1 layout (libtl writes such a model as 1.0, which
 * a_1_0_file_still_loads covers). */
static char *good_file_opt(const char *name, int include_optimizer)
{
    tl_model *m = small_cnn(8);
    tl_dataset *ds = th_quadrant_dataset(16, 12, 12, 1, 3);
    compile_adam(m);
    fit(m, ds, 1, 1);
    char *path = th_join(dir, name);
    tl_save_options so = TL_SAVE_OPTIONS_INIT;
    so.include_optimizer = include_optimizer;
    ck_assert_tl_ok(tl_model_save(m, path, &so));
    ckfile c = ck_open(path);
    ck_to_1_1(&c);
    ck_write(path, &c);
    free(c.p);
    tl_model *r = NULL;
    ck_assert_tl_ok(tl_model_load(&r, path)); /* the converted file is good */
    ck_assert(th_same_params(m, r));
    tl_model_free(r);
    tl_model_free(m);
    tl_dataset_free(ds);
    return path;
}

static char *good_file(const char *name)
{
    return good_file_opt(name, 1);
}

/* A graph with every kind, on an (8, 8, 2) input:
 *   0 stem      conv2d(4, 3x3, same, relu)                        <- the input
 *   1 branch_a  conv2d(4, 3x3, same, relu)                        <- stem
 *   2 branch_b  conv2d(4, 1x1, linear)                            <- stem
 *   3 sum       add                                               <- branch_a, branch_b
 *   4 pooled    avgpool2d(3x3, stride 2, same, count_include_pad) <- sum       (4, 4, 4)
 *   5 skip      maxpool2d(2x2)                                    <- stem      (4, 4, 4)
 *   6 joined    concatenate                                       <- pooled, skip (4, 4, 8)
 *   7 gap       global_avgpool2d                                  <- joined    (8)
 *   8 flat      flatten                                           <- gap
 *   9 head      dense(4, softmax)                                 <- flat */
static tl_model *graph_model(uint64_t seed)
{
    tl_model *m;
    ck_assert_tl_ok(tl_model_create(&m, 8, 8, 2, seed));
    tl_model_set_threads(m, 1);
    tl_layer *stem, *a, *b, *sum, *pooled, *skip, *joined;
    tl_conv2d_options co = TL_CONV2D_OPTIONS_INIT;
    co.filters = 4;
    co.padding = TL_PAD_SAME;
    co.activation = TL_ACT_RELU;
    co.name = "stem";
    ck_assert_tl_ok(tl_model_add_conv2d(&stem, m, &co));
    co.name = "branch_a";
    ck_assert_tl_ok(tl_model_add_conv2d(&a, m, &co));
    co.name = "branch_b";
    co.kernel_h = co.kernel_w = 1;
    co.activation = TL_ACT_LINEAR;
    co.input = stem;
    ck_assert_tl_ok(tl_model_add_conv2d(&b, m, &co));
    const tl_layer *ab[2] = {a, b};
    ck_assert_tl_ok(tl_model_add_add(&sum, m, ab, 2, "sum"));
    tl_avgpool2d_options ao = TL_AVGPOOL2D_OPTIONS_INIT;
    ao.pool_h = ao.pool_w = 3;
    ao.stride_h = ao.stride_w = 2;
    ao.padding = TL_PAD_SAME;
    ao.count_include_pad = 1;
    ao.name = "pooled";
    ck_assert_tl_ok(tl_model_add_avgpool2d(&pooled, m, &ao));
    tl_maxpool2d_options mo = TL_MAXPOOL2D_OPTIONS_INIT;
    mo.name = "skip";
    mo.input = stem;
    ck_assert_tl_ok(tl_model_add_maxpool2d(&skip, m, &mo));
    const tl_layer *ps[2] = {pooled, skip};
    ck_assert_tl_ok(tl_model_add_concatenate(&joined, m, ps, 2, "joined"));
    ck_assert_tl_ok(tl_model_add_global_avgpool2d(NULL, m, joined, "gap"));
    ck_assert_tl_ok(tl_model_add_flatten(NULL, m, "flat"));
    tl_dense_options dop = TL_DENSE_OPTIONS_INIT;
    dop.units = 4;
    dop.activation = TL_ACT_SOFTMAX;
    dop.name = "head";
    ck_assert_tl_ok(tl_model_add_dense(NULL, m, &dop));
    return m;
}

/* The graph model trained a little with Adam and saved with its state. */
static char *graph_file(const char *name)
{
    tl_model *m = graph_model(21);
    tl_dataset *ds = th_quadrant_dataset(32, 8, 8, 2, 4);
    compile_adam(m);
    fit(m, ds, 1, 3);
    char *path = th_join(dir, name);
    ck_assert_tl_ok(tl_model_save(m, path, NULL));
    tl_model_free(m);
    tl_dataset_free(ds);
    return path;
}

/* Write a fresh good file over `path` and return it (to start over). */
static const char *good_file_into(const char *path)
{
    const char *slash = strrchr(path, '/');
    free(good_file(slash + 1));
    return path;
}

/* The load fails with `status`, naming the file and `needle`, returning no
 * model; the info reader agrees. */
static void assert_refused(const char *path, tl_status status, const char *needle)
{
    tl_model *m = (tl_model *)&m;
    ck_assert_tl_err(tl_model_load(&m, path), status, needle);
    ck_assert_ptr_null(m);
    ck_assert_msg(strstr(tl_last_error(), path) != NULL, "message '%s' lacks the file name", tl_last_error());
    ck_assert_msg(strstr(tl_last_error(), "byte ") != NULL, "message '%s' lacks the offset", tl_last_error());
    tl_checkpoint_info *info = (tl_checkpoint_info *)&info;
    ck_assert_tl_err(tl_checkpoint_info_read(&info, path), status, needle);
    ck_assert_ptr_null(info);
}

START_TEST(graph_model_roundtrip)
{
    /* Every kind in a graph, trained with Adam: the file gives back the
     * same graph, predictions bit for bit, and training resumed from it
     * goes on as the original does. */
    tl_model *m = graph_model(21);
    tl_dataset *ds = th_quadrant_dataset(32, 8, 8, 2, 4);
    compile_adam(m);
    fit(m, ds, 1, 3);
    char *path = th_join(dir, "graph.tlm");
    ck_assert_tl_ok(tl_model_save(m, path, NULL));
    tl_model *r = NULL;
    ck_assert_tl_ok(tl_model_load(&r, path));
    ck_assert_uint_eq(r->nlayers, 10);
    ck_assert(th_same_params(m, r));
    assert_same_optimizer(m, r);
    for (size_t i = 0; i < m->nlayers; i++) {
        const tl_layer *a = m->layers[i], *b = r->layers[i];
        ck_assert_int_eq(a->ops->kind, b->ops->kind);
        ck_assert_str_eq(a->name, b->name);
        ck_assert_uint_eq(a->ninputs, b->ninputs);
        ck_assert_int_eq(memcmp(a->inputs, b->inputs, a->ninputs * sizeof *a->inputs), 0);
        ck_assert_int_eq(a->act, b->act);
        ck_assert_int_eq(a->use_bias, b->use_bias);
        ck_assert(tli_shape_eq(&a->out_shape, &b->out_shape));
        ck_assert_int_eq(memcmp(a->cfg, b->cfg, sizeof a->cfg), 0);
    }
    ck_assert_uint_eq(r->layers[0]->inputs[0], UINT32_MAX);
    ck_assert_uint_eq(r->layers[5]->inputs[0], 0); /* skip <- stem */
    float x[5 * 8 * 8 * 2];
    th_fill_uniform(x, sizeof x / sizeof *x, 0.0f, 1.0f, 9);
    size_t na, nb;
    float *ya = th_predict(m, x, 5, &na), *yb = th_predict(r, x, 5, &nb);
    ck_assert_uint_eq(na, 5 * 4);
    ck_assert_uint_eq(na, nb);
    ck_assert_int_eq(memcmp(ya, yb, na * sizeof *ya), 0);
    free(ya);
    free(yb);
    fit(m, ds, 1, 0);
    fit(r, ds, 1, 0);
    ck_assert(th_same_params(m, r));

    /* The description: kinds, the new kind's settings. */
    tl_checkpoint_info *info;
    ck_assert_tl_ok(tl_checkpoint_info_read(&info, path));
    static const tl_layer_kind kinds[10] = {TL_LAYER_CONV2D, TL_LAYER_CONV2D, TL_LAYER_CONV2D, TL_LAYER_ADD,
                                            TL_LAYER_AVGPOOL2D, TL_LAYER_MAXPOOL2D, TL_LAYER_CONCATENATE,
                                            TL_LAYER_GLOBAL_AVGPOOL2D, TL_LAYER_FLATTEN, TL_LAYER_DENSE};
    ck_assert_uint_eq(tl_checkpoint_info_num_layers(info), 10);
    for (size_t i = 0; i < 10; i++)
        ck_assert_int_eq(tl_checkpoint_info_layer_kind(info, i), kinds[i]);
    char text[256];
    ck_assert_tl_ok(tl_checkpoint_info_layer_settings(text, sizeof text, NULL, info, 4));
    ck_assert_str_eq(text, "pool_h=3, pool_w=3, stride_h=2, stride_w=2, padding=same, count_include_pad=1, "
                           "pad_top=0, pad_bottom=0, pad_left=0, pad_right=0");
    ck_assert_tl_ok(tl_checkpoint_info_layer_settings(text, sizeof text, NULL, info, 3));
    ck_assert_str_eq(text, "");
    tl_shape s;
    ck_assert_tl_ok(tl_checkpoint_info_layer_output_shape(&s, info, 6));
    ck_assert(s.rank == 3 && s.dims[0] == 4 && s.dims[1] == 4 && s.dims[2] == 8);
    tl_checkpoint_info_free(info);
    tl_model_free(r);
    tl_model_free(m);
    tl_dataset_free(ds);
    free(path);
}
END_TEST

START_TEST(a_1_0_file_still_loads)
{
    /* The file as format 1.0 lays it out (docs/format-checkpoint.md) loads
     * into the same model: each layer takes the previous one, the
     * settings are the kind's first fields without a count, every tensor
     * is a parameter. */
    tl_model *m = small_cnn(8);
    tl_dataset *ds = th_quadrant_dataset(16, 12, 12, 1, 3);
    compile_adam(m);
    fit(m, ds, 1, 1);
    char *path = th_join(dir, "m.tlm");
    ck_assert_tl_ok(tl_model_save(m, path, NULL));
    /* libtl writes a model that format 1.0 holds as 1.0, so that libtl 1.0
     * reads it; the 1.0 layout of the converter is the writer's. */
    ckfile c = ck_open(path);
    ck_assert_uint_eq(c.minor, 0);
    ckfile again = {malloc(c.len), c.len, c.major, c.minor};
    memcpy(again.p, c.p, c.len);
    ck_to_1_1(&again);
    ck_to_1_0(&again);
    ck_assert_uint_eq(again.len, c.len);
    ck_assert_int_eq(memcmp(again.p, c.p, c.len), 0);
    free(again.p);
    tl_model *r = NULL;
    ck_assert_tl_ok(tl_model_load(&r, path));
    ck_assert(th_same_params(m, r));
    assert_same_optimizer(m, r);
    for (size_t i = 0; i < m->nlayers; i++) {
        ck_assert_int_eq(memcmp(m->layers[i]->cfg, r->layers[i]->cfg, sizeof m->layers[i]->cfg), 0);
        ck_assert_uint_eq(r->layers[i]->ninputs, 1);
        ck_assert_uint_eq(r->layers[i]->inputs[0], i ? (uint32_t)(i - 1) : UINT32_MAX);
    }
    tl_checkpoint_info *info;
    ck_assert_tl_ok(tl_checkpoint_info_read(&info, path));
    uint32_t major, minor;
    ck_assert_tl_ok(tl_checkpoint_info_format_version(&major, &minor, info));
    ck_assert(major == 1 && minor == 0);
    tl_checkpoint_info_free(info);
    /* A model that format 1.0 cannot hold (a graph) is written as 1.1. */
    tl_model *g = graph_model(3);
    ck_assert_tl_ok(tl_model_save(g, path, NULL));
    tl_model_free(g);
    free(c.p);
    c = ck_open(path);
    ck_assert_uint_eq(c.minor, 1);
    ck_assert_tl_ok(tl_model_save(r, path, NULL));
    tl_model_free(r);
    ck_assert_tl_ok(tl_model_load(&r, path));
    ck_assert(th_same_params(m, r));
    free(c.p);
    tl_model_free(r);
    tl_model_free(m);
    tl_dataset_free(ds);
    free(path);
}
END_TEST

START_TEST(wrong_magic)
{
    char *path = good_file("m.tlm");
    size_t n;
    uint8_t *f = th_file_read(path, &n);
    f[1] = 'X';
    th_file_write(path, f, n);
    assert_refused(path, TL_EFORMAT, "byte 0: not a libtl checkpoint (wrong magic number)");
    /* A text file, shorter than the header. */
    th_file_write(path, "hello", 5);
    assert_refused(path, TL_EFORMAT, "wrong magic");
    free(f);
    free(path);
}
END_TEST

START_TEST(unsupported_major_version)
{
    char *path = good_file("m.tlm");
    ckfile c = ck_open(path);
    c.major = 2;
    ck_write(path, &c);
    assert_refused(path, TL_EVERSION, "byte 8: format version 2.1; this libtl reads version 1.x");
    c.minor = 0;
    ck_write(path, &c);
    assert_refused(path, TL_EVERSION, "byte 8: format version 2.0; this libtl reads version 1.x");
    free(c.p);
    free(path);
}
END_TEST

START_TEST(header_crc_mismatch)
{
    char *path = good_file("m.tlm");
    size_t n;
    uint8_t *f = th_file_read(path, &n);
    f[40] ^= 1; /* a reserved byte: only the header CRC notices */
    th_file_write(path, f, n);
    assert_refused(path, TL_ECHECKSUM, "byte 44: header CRC-32");
    free(f);
    free(path);
}
END_TEST

START_TEST(compressed_crc_mismatch)
{
    char *path = good_file("m.tlm");
    size_t n;
    uint8_t *f = th_file_read(path, &n);
    f[48 + (n - 48) / 2] ^= 0x10;
    th_file_write(path, f, n);
    assert_refused(path, TL_ECHECKSUM, "byte 36: the compressed payload's CRC-32");
    free(f);
    free(path);
}
END_TEST

START_TEST(payload_crc_mismatch)
{
    char *path = good_file("m.tlm");
    size_t n;
    uint8_t *f = th_file_read(path, &n);
    wr32(f + 32, rd32(f + 32) ^ 0x80);
    fix_header_crc(f);
    th_file_write(path, f, n);
    assert_refused(path, TL_ECHECKSUM, "byte 32: the payload's CRC-32");
    free(f);
    free(path);
}
END_TEST

START_TEST(cut_at_every_sixteenth)
{
    char *path = good_file("m.tlm");
    size_t n;
    uint8_t *f = th_file_read(path, &n);
    char *cut = th_join(dir, "cut.tlm");
    for (size_t k = 0; k < 16; k++) {
        size_t len = n * k / 16;
        th_file_write(cut, f, len);
        assert_refused(cut, TL_ETRUNCATED, k == 0 ? "the file is empty" : "byte ");
    }
    free(cut);
    free(f);
    free(path);
}
END_TEST

START_TEST(trailing_bytes)
{
    char *path = good_file("m.tlm");
    size_t n;
    uint8_t *f = th_file_read(path, &n);
    f = realloc(f, n + 3);
    memcpy(f + n, "abc", 3);
    th_file_write(path, f, n + 3);
    assert_refused(path, TL_EFORMAT, "3 unexpected bytes after the compressed payload");
    free(f);
    free(path);
}
END_TEST

START_TEST(absurd_payload_size)
{
    char *path = good_file("m.tlm");
    size_t n;
    uint8_t *f = th_file_read(path, &n);
    wr64(f + 16, (uint64_t)1 << 60);
    fix_header_crc(f);
    th_file_write(path, f, n);
    assert_refused(path, TL_ETOOBIG, "byte 16: a payload of 1152921504606846976 bytes exceeds the limit");
    /* Within the limit, but more than zlib can make of the stored bytes. */
    wr64(f + 16, (uint64_t)1 << 34);
    fix_header_crc(f);
    th_file_write(path, f, n);
    assert_refused(path, TL_EFORMAT, "cannot come from");
    /* A stored size of 2^60. */
    wr64(f + 16, rd64(f + 16) >> 34 == 1 ? 1000 : rd64(f + 16));
    wr64(f + 24, (uint64_t)1 << 60);
    fix_header_crc(f);
    th_file_write(path, f, n);
    assert_refused(path, TL_ETOOBIG, "byte 24");
    free(f);
    free(path);
}
END_TEST

START_TEST(absurd_layer_count)
{
    char *path = good_file_opt("m.tlm", 0);
    ckfile c = ck_open(path);
    size_t modl = ck_find(&c, "MODL", 0);
    wr32(c.p + modl + 12 + 24, UINT32_MAX);
    ck_write(path, &c);
    assert_refused(path, TL_ETOOBIG, "4294967295 layers exceed the limit of 4096");
    /* Below the limit but more than the payload can hold. */
    wr32(c.p + modl + 12 + 24, 4000);
    ck_write(path, &c);
    assert_refused(path, TL_EFORMAT, "4000 layers cannot fit");
    free(c.p);
    free(path);
}
END_TEST

START_TEST(absurd_tensor_size)
{
    char *path = good_file("m.tlm");
    ckfile c = ck_open(path);
    size_t tens = ck_find(&c, "TENS", 0);
    wr64(c.p + tens + 12 + 16, (uint64_t)1 << 60);
    ck_write(path, &c);
    assert_refused(path, TL_ETOOBIG, "a tensor of 1152921504606846976 values exceeds the limit");
    /* A plausible count that is not the parameter's. */
    wr64(c.p + tens + 12 + 16, 7);
    ck_write(path, &c);
    assert_refused(path, TL_EFORMAT, "has 7 values, its shape gives 288");
    free(c.p);
    free(path);
}
END_TEST

START_TEST(absurd_section_length)
{
    char *path = good_file("m.tlm");
    ckfile c = ck_open(path);
    size_t layr = ck_find(&c, "LAYR", 1);
    wr64(c.p + layr + 4, (uint64_t)1 << 62);
    ck_write(path, &c);
    char want[96];
    snprintf(want, sizeof want, "payload byte %zu: section 'LAYR' declares 4611686018427387904 bytes", layr);
    assert_refused(path, TL_EFORMAT, want);
    free(c.p);
    free(path);
}
END_TEST

START_TEST(layer_parameters_larger_than_the_file)
{
    /* A dense layer whose settings are consistent with its declared shapes
     * but whose parameters could not be in this payload: refused before any
     * allocation. */
    char *path = good_file("m.tlm");
    ckfile c = ck_open(path);
    layr l = ck_layr(&c, 5); /* dense(4) on 64 inputs */
    uint8_t *b = ck_body(&c, &l);
    ck_assert_uint_eq(l.nf, 1);
    ck_assert_uint_eq(rd32(b + l.fields), 4);
    uint32_t units = 1u << 24;
    wr32(b + l.fields, units);
    /* out shape (units), kernel (64, units), bias (units) */
    ck_assert_uint_eq(rd32(b + l.out_shape), 1);
    wr32(b + l.out_shape + 4, units);
    ck_assert_uint_eq(l.nt, 2);
    ck_assert_uint_eq(rd32(b + l.shape[0]), 2);
    ck_assert_uint_eq(rd32(b + l.shape[0] + 4), 64);
    wr32(b + l.shape[0] + 8, units);
    wr32(b + l.shape[1] + 4, units);
    ck_write(path, &c);
    assert_refused(path, TL_EFORMAT, "('dense') declares 4362076232 bytes of tensors, but only");
    free(c.p);
    free(path);
}
END_TEST

START_TEST(unknown_critical_section)
{
    char *path = good_file("m.tlm");
    ckfile c = ck_open(path);
    size_t end = ck_find(&c, "END ", 0);
    uint8_t sec[12 + 4] = {'Q', 'U', 'A', 'N'};
    wr64(sec + 4, 4);
    ck_splice(&c, end, 0, sec, sizeof sec);
    ck_write(path, &c);
    char want[96];
    snprintf(want, sizeof want, "payload byte %zu: critical section 'QUAN' is not known", end);
    assert_refused(path, TL_EVERSION, want);
    free(c.p);
    free(path);
}
END_TEST

/* What a later minor version might add to a file: an ancillary section
 * before LAYR 2, fields at the end of MODL, LAYR 0 and OPTM, bytes in END,
 * and (format 1.1's LAYR only) a setting past the conv2d's own of LAYR 2.
 * `only` picks one of the fields (0 MODL, 1 LAYR, 2 OPTM, 3 setting), -1
 * adds everything. */
static void add_later_fields(ckfile *c, int only)
{
    if ((only < 0 || only == 3) && c->minor >= 1) {
        layr l = ck_layr(c, 2);
        ck_assert_uint_eq(l.kind, TL_LAYER_CONV2D);
        ck_assert_uint_eq(l.nf, 6);
        /* The fields 1.1 gave conv2d after 1.0's six, at their defaults,
         * then one this reader does not have. */
        const tli_layer_ops *ops = tli_layer_ops_for(TL_LAYER_CONV2D);
        uint8_t words[4 * 32] = {0};
        size_t n = 0;
        for (size_t i = l.nf; i < ops->nfields; i++, n += 4)
            wr32(words + n, ops->fields[i].def);
        wr32(words + n, 7);
        n += 4;
        ck_layr_splice(c, &l, l.fields + 4 * l.nf, 0, words, n);
        wr32(ck_body(c, &l) + l.nfields, (uint32_t)(ops->nfields + 1));
    }
    if (only < 0) {
        uint8_t anc[12 + 5] = {'n', 'o', 't', 'e'};
        wr64(anc + 4, 5);
        memcpy(anc + 12, "hello", 5);
        ck_splice(c, ck_find(c, "LAYR", 2), 0, anc, sizeof anc);
        ck_grow_section(c, ck_find(c, "END ", 0), 3);
    }
    if (only < 0 || only == 0)
        ck_grow_section(c, ck_find(c, "MODL", 0), 4);
    if (only < 0 || only == 1)
        ck_grow_section(c, ck_find(c, "LAYR", 0), 8);
    if (only < 0 || only == 2)
        ck_grow_section(c, ck_find(c, "OPTM", 0), 12);
}

START_TEST(newer_minor_version_is_read)
{
    /* This reader reads format 1.1: a 1.2 file's additions are skipped. */
    char *src = good_file("src.tlm"), *path = th_join(dir, "m.tlm");
    tl_model *orig = NULL;
    ck_assert_tl_ok(tl_model_load(&orig, src));
    ckfile c = ck_open(src);
    add_later_fields(&c, -1);
    c.minor = 2;
    ck_write(path, &c);
    tl_model *m = NULL;
    ck_assert_tl_ok(tl_model_load(&m, path));
    ck_assert(th_same_params(orig, m));
    assert_same_optimizer(orig, m);
    tl_checkpoint_info *info;
    ck_assert_tl_ok(tl_checkpoint_info_read(&info, path));
    uint32_t minor;
    ck_assert_tl_ok(tl_checkpoint_info_format_version(NULL, &minor, info));
    ck_assert_uint_eq(minor, 2);
    tl_conv2d_options co = TL_CONV2D_OPTIONS_INIT;
    ck_assert_tl_ok(tl_checkpoint_info_layer_conv2d(&co, info, 2));
    ck_assert_uint_eq(co.filters, 64);
    tl_checkpoint_info_free(info);
    tl_model_free(m);
    free(c.p);
    /* Each of them alone, in a file of this reader's own minor version
     * (1.1) or an older one (1.0), is corruption. */
    static const char *const own[] = {"section 'MODL' has 4 bytes after its last field",
                                      "section 'LAYR' has 8 bytes after its last field",
                                      "section 'OPTM' has 12 bytes after its last field",
                                      "layer 2 ('conv2d_1', conv2d) has 17 settings, this kind has 16"};
    for (int k = 0; k < 4; k++) {
        c = ck_open(src);
        add_later_fields(&c, k);
        ck_write(path, &c);
        assert_refused(path, TL_EFORMAT, own[k]);
        free(c.p);
        if (k == 3)
            break;
        c = ck_open(src);
        ck_to_1_0(&c);
        add_later_fields(&c, k);
        ck_write(path, &c);
        assert_refused(path, TL_EFORMAT, own[k]);
        free(c.p);
    }
    /* An unknown ancillary section alone is not. */
    c = ck_open(src);
    uint8_t anc[12 + 5] = {'n', 'o', 't', 'e'};
    wr64(anc + 4, 5);
    ck_splice(&c, ck_find(&c, "OPTM", 0), 0, anc, sizeof anc);
    ck_write(path, &c);
    ck_assert_tl_ok(tl_model_load(&m, path));
    tl_model_free(m);
    tl_model_free(orig);
    free(c.p);
    free(path);
    free(src);
}
END_TEST

START_TEST(unknown_layer_kind_and_activation)
{
    /* From 1.1 a LAYR names its kind, so a reader that does not know the
     * kind's number says which kind the file needs: a version problem in a
     * newer file, corruption in a file of the reader's own version (whose
     * kinds it all knows). */
    char *path = good_file("m.tlm");
    ckfile c = ck_open(path);
    layr l = ck_layr(&c, 1);
    ck_assert_uint_eq(l.kind, TL_LAYER_MAXPOOL2D);
    uint8_t *b = ck_body(&c, &l);
    ck_assert_int_eq(memcmp(b + l.kind_name, "\x09maxpool2d", 10), 0);
    wr32(b, 99); /* a number no kind has (9 is batchnorm since 1.1) */
    ck_layr_splice(&c, &l, l.kind_name, 10, "\x0esqueeze_excite", 15);
    ck_write(path, &c);
    assert_refused(path, TL_EFORMAT,
                   "layer 1 ('max_pooling2d'): layer kind 99 ('squeeze_excite') is not valid in format 1.1");
    c.minor = 3;
    ck_write(path, &c);
    assert_refused(path, TL_EVERSION, "'squeeze_excite' layer (kind 99), which this libtl (");
    ck_assert_ptr_nonnull(strstr(tl_last_error(), "format 1.1) does not know; the file is format 1.3"));
    free(c.p);
    /* A 1.0 file does not name its kinds: an unknown one is corruption. */
    c = ck_open(good_file_into(path));
    ck_to_1_0(&c);
    size_t l1 = ck_find(&c, "LAYR", 1);
    wr32(c.p + l1 + 12, 99);
    ck_write(path, &c);
    assert_refused(path, TL_EFORMAT, "layer 1 ('max_pooling2d'): layer kind 99 is not valid in format 1.0");
    wr32(c.p + l1 + 12, 2);
    c.p[ck_find(&c, "LAYR", 0) + 12 + 4] = 17;
    ck_write(path, &c);
    assert_refused(path, TL_EFORMAT, "activation 17 is not valid");
    /* relu6 (5) and the other activations of 1.1 did not exist in 1.0. */
    c.p[ck_find(&c, "LAYR", 0) + 12 + 4] = TL_ACT_RELU6;
    ck_write(path, &c);
    assert_refused(path, TL_EFORMAT, "activation 5 is not valid");
    free(c.p);
    /* Activations: corruption in a 1.1 file, a later one's in a 1.3 file. */
    c = ck_open(good_file_into(path));
    c.p[ck_find(&c, "LAYR", 0) + 12 + 4] = 17;
    ck_write(path, &c);
    assert_refused(path, TL_EFORMAT, "activation 17 is not valid");
    c.minor = 3;
    ck_write(path, &c);
    assert_refused(path, TL_EVERSION, "activation 17 is not known to this libtl (the file is format 1.3");
    free(c.p);
    free(path);
}
END_TEST

START_TEST(kind_names_settings_and_roles)
{
    char *path = good_file("m.tlm");
    ckfile c = ck_open(path);
    /* A kind's name that is not its number's (both known). */
    layr l = ck_layr(&c, 1);
    uint8_t *b = ck_body(&c, &l);
    memcpy(b + l.kind_name + 1, "avgpool2d", 9);
    ck_write(path, &c);
    assert_refused(path, TL_EFORMAT, "layer 1 ('max_pooling2d'): kind 2 is 'maxpool2d', but the file calls it 'avgpool2d'");
    /* An empty kind's name, one of 32 bytes, one with a control character. */
    memcpy(b + l.kind_name + 1, "maxpool2d", 9);
    b[l.kind_name] = 0;
    ck_write(path, &c);
    assert_refused(path, TL_EFORMAT, "layer 1 ('max_pooling2d'): the kind's name is missing or invalid");
    b[l.kind_name] = 32;
    ck_write(path, &c);
    assert_refused(path, TL_EFORMAT, "the kind's name is missing or invalid");
    b[l.kind_name] = 9;
    b[l.kind_name + 4] = '\n';
    ck_write(path, &c);
    assert_refused(path, TL_EFORMAT, "the kind's name is missing or invalid");
    b[l.kind_name + 4] = 'p';
    /* Settings: an enum value above the field's largest (from a later minor
     * version, or corruption), a boolean above 1. */
    l = ck_layr(&c, 0);
    b = ck_body(&c, &l);
    ck_assert_uint_eq(rd32(b + l.fields + 20), TL_PAD_VALID);
    wr32(b + l.fields + 20, 3); /* 2 is TL_PAD_EXPLICIT since 1.1 */
    ck_write(path, &c);
    assert_refused(path, TL_EFORMAT, "layer 0 ('conv2d', conv2d): padding 3 is not valid");
    c.minor = 2;
    ck_write(path, &c);
    assert_refused(path, TL_EVERSION, "layer 0 ('conv2d', conv2d): padding 3 is not known to this libtl (the file is "
                                      "format 1.2");
    c.minor = 1;
    wr32(b + l.fields + 20, TL_PAD_VALID);
    /* Tensor roles: a parameter the file calls a state; a role this reader
     * does not know. */
    ck_assert_uint_eq(b[l.role[0]], 0);
    b[l.role[0]] = 1;
    ck_write(path, &c);
    assert_refused(path, TL_EFORMAT, "layer 0 ('conv2d'): kernel is a state in the file, a parameter in this kind");
    b[l.role[0]] = 0;
    b[l.role[1]] = 2;
    ck_write(path, &c);
    assert_refused(path, TL_EFORMAT, "tensor role 2 is not valid");
    c.minor = 2;
    ck_write(path, &c);
    assert_refused(path, TL_EVERSION, "tensor role 2 is not known to this libtl (the file is format 1.2");
    c.minor = 1;
    b[l.role[1]] = 0;
    /* A tensor under another name; fewer tensors than the kind has. */
    ck_assert_int_eq(memcmp(b + l.tensor[0], "\x06kernel", 7), 0);
    b[l.tensor[0] + 5] = 'a';
    ck_write(path, &c);
    assert_refused(path, TL_EFORMAT, "layer 0 ('conv2d'): tensor 0 is called 'kernal', not 'kernel'");
    b[l.tensor[0] + 5] = 'e';
    wr32(b + l.ntensors, 1);
    ck_layr_splice(&c, &l, l.tensor[1], l.len - l.tensor[1], NULL, 0);
    ck_write(path, &c);
    assert_refused(path, TL_EFORMAT, "layer 0 ('conv2d', conv2d with bias) has 1 tensors, 2 expected");
    free(c.p);
    free(path);
}
END_TEST

START_TEST(graph_inputs_must_be_earlier_layers)
{
    char *path = graph_file("g.tlm");
    ckfile c = ck_open(path);
    layr l = ck_layr(&c, 3); /* sum <- branch_a, branch_b */
    uint8_t *b = ck_body(&c, &l);
    ck_assert_uint_eq(rd32(b + l.ninputs), 2);
    ck_assert_uint_eq(rd32(b + l.ninputs + 4), 1);
    ck_assert_uint_eq(rd32(b + l.ninputs + 8), 2);
    /* Itself, a later layer, a number that is no layer: a file cannot
     * hold a cycle. */
    static const uint32_t bad[] = {3, 9, 4000, UINT32_MAX - 1};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        wr32(b + l.ninputs + 8, bad[i]);
        ck_write(path, &c);
        char want[96];
        snprintf(want, sizeof want, "layer 3 ('sum'): input 1 is layer %u, not an earlier layer", bad[i]);
        assert_refused(path, TL_EFORMAT, want);
    }
    wr32(b + l.ninputs + 8, 2);
    /* Input counts outside 1..16. */
    wr32(b + l.ninputs, 0);
    ck_write(path, &c);
    assert_refused(path, TL_EFORMAT, "layer 3 ('sum'): an input count of 1..16 is missing or out of range");
    wr32(b + l.ninputs, 17);
    ck_write(path, &c);
    assert_refused(path, TL_EFORMAT, "layer 3 ('sum'): an input count of 1..16 is missing or out of range");
    /* One input where the kind takes two or more: its own check. */
    wr32(b + l.ninputs, 1);
    ck_layr_splice(&c, &l, l.ninputs + 8, 4, NULL, 0);
    ck_write(path, &c);
    assert_refused(path, TL_EFORMAT, "layer 'sum' (add, index 3) takes 2 to 16 inputs, not 1");
    free(c.p);
    /* The model's input where a layer's input was: the layer is built on
     * it, and the file's kernel no longer fits. */
    free(path);
    path = graph_file("g.tlm");
    c = ck_open(path);
    l = ck_layr(&c, 2); /* branch_b <- stem */
    b = ck_body(&c, &l);
    ck_assert_uint_eq(rd32(b + l.ninputs + 4), 0);
    wr32(b + l.ninputs + 4, UINT32_MAX);
    ck_write(path, &c);
    assert_refused(path, TL_EFORMAT, "kernel is (1, 1, 4, 4) in the file, but the layer's settings give (1, 1, 2, 4)");
    free(c.p);
    free(path);
}
END_TEST

START_TEST(graph_with_an_unused_layer)
{
    /* sum <- branch_a, branch_a: nothing uses branch_b. Each record is
     * fine; the graph is not, which shows at the end of the file. */
    char *path = graph_file("g.tlm");
    ckfile c = ck_open(path);
    layr l = ck_layr(&c, 3);
    uint8_t *b = ck_body(&c, &l);
    ck_assert_uint_eq(rd32(b + l.ninputs + 8), 2);
    wr32(b + l.ninputs + 8, 1);
    ck_write(path, &c);
    char want[160];
    snprintf(want, sizeof want, "payload byte %zu: layer 'branch_b' (conv2d, index 2) has an output that no layer uses",
             ck_find(&c, "END ", 0));
    assert_refused(path, TL_EFORMAT, want);
    free(c.p);
    free(path);
}
END_TEST

START_TEST(graph_settings_defaults_and_checks)
{
    char *path = graph_file("g.tlm");
    ckfile c = ck_open(path);
    layr l = ck_layr(&c, 4); /* pooled: avgpool2d, count_include_pad 1 */
    uint8_t *b = ck_body(&c, &l);
    ck_assert_uint_eq(l.nf, 10); /* then pad_top, pad_bottom, pad_left, pad_right */
    ck_assert_uint_eq(rd32(b + l.fields + 20), 1);
    wr32(b + l.fields + 20, 2);
    ck_write(path, &c);
    assert_refused(path, TL_EFORMAT, "layer 4 ('pooled', avgpool2d): count_include_pad 2 must be 0 or 1");
    /* Fields the file does not have keep their defaults (an earlier minor
     * version's file of a kind that later gained fields). */
    wr32(b + l.nfields, 5);
    ck_layr_splice(&c, &l, l.fields + 20, 4 * (l.nf - 5), NULL, 0);
    ck_write(path, &c);
    tl_model *m = NULL;
    ck_assert_tl_ok(tl_model_load(&m, path));
    tl_checkpoint_info *info;
    ck_assert_tl_ok(tl_checkpoint_info_read(&info, path));
    char text[256];
    ck_assert_tl_ok(tl_checkpoint_info_layer_settings(text, sizeof text, NULL, info, 4));
    ck_assert_str_eq(text, "pool_h=3, pool_w=3, stride_h=2, stride_w=2, padding=same, count_include_pad=0, "
                           "pad_top=0, pad_bottom=0, pad_left=0, pad_right=0");
    tl_checkpoint_info_free(info);
    tl_model_free(m);
    /* A settings value the kind's own build refuses. */
    l = ck_layr(&c, 4);
    b = ck_body(&c, &l);
    wr32(b + l.fields, 0);
    ck_write(path, &c);
    assert_refused(path, TL_EFORMAT, "layer 'pooled' (avgpool2d, index 4): pool size 0x3 must be > 0");
    free(c.p);
    free(path);
}
END_TEST

START_TEST(kinds_newer_than_1_0_in_a_1_0_file)
{
    /* Format 1.0 knew kinds 1-4 only: a 1.0 file with a later kind is
     * corrupt, whether or not the kind has settings. */
    static const char *const want[] = {"layer 1 ('global_average_pooling2d'): kind 'global_avgpool2d' did not exist in "
                                       "format 1.0",
                                       "layer 1 ('average_pooling2d'): kind 'avgpool2d' did not exist in format 1.0"};
    char *path = th_join(dir, "m.tlm");
    for (int k = 0; k < 2; k++) {
        tl_model *m;
        ck_assert_tl_ok(tl_model_create(&m, 8, 8, 1, 1));
        tl_conv2d_options co = TL_CONV2D_OPTIONS_INIT;
        co.filters = 2;
        ck_assert_tl_ok(tl_model_add_conv2d(NULL, m, &co));
        if (k == 0) {
            ck_assert_tl_ok(tl_model_add_global_avgpool2d(NULL, m, NULL, NULL));
        } else {
            tl_avgpool2d_options ao = TL_AVGPOOL2D_OPTIONS_INIT;
            ck_assert_tl_ok(tl_model_add_avgpool2d(NULL, m, &ao));
            ck_assert_tl_ok(tl_model_add_flatten(NULL, m, NULL));
        }
        tl_dense_options dop = TL_DENSE_OPTIONS_INIT;
        dop.units = 2;
        ck_assert_tl_ok(tl_model_add_dense(NULL, m, &dop));
        ck_assert_tl_ok(tl_model_save(m, path, NULL));
        ckfile c = ck_open(path);
        ck_to_1_0(&c);
        ck_write(path, &c);
        assert_refused(path, TL_EFORMAT, want[k]);
        free(c.p);
        tl_model_free(m);
    }
    free(path);
}
END_TEST

START_TEST(layers_that_cannot_follow_each_other)
{
    /* An input too small for the first 3x3 convolution: the add functions'
     * shape check refuses the file's layers. */
    char *path = good_file("m.tlm");
    ckfile c = ck_open(path);
    size_t modl = ck_find(&c, "MODL", 0);
    wr32(c.p + modl + 12, 2);
    ck_write(path, &c);
    /* Only building the layers finds this: the description reads fine. */
    tl_model *m = (tl_model *)&c;
    ck_assert_tl_err(tl_model_load(&m, path), TL_EFORMAT, "kernel 3x3 is larger than its input (2, 12, 1)");
    ck_assert_ptr_null(m);
    /* An output shape the settings do not give. */
    wr32(c.p + modl + 12, 12);
    layr l = ck_layr(&c, 0);
    uint8_t *b = ck_body(&c, &l);
    size_t out_at = l.out_shape;
    ck_assert_uint_eq(rd32(b + out_at), 3);
    wr32(b + out_at + 4, 11);
    ck_write(path, &c);
    m = (tl_model *)&c;
    ck_assert_tl_err(tl_model_load(&m, path), TL_EFORMAT, "the file says its output is (11, 10, 32), its settings give (10, 10, 32)");
    ck_assert_ptr_null(m);
    /* A kernel shape that disagrees with the settings. */
    wr32(b + out_at + 4, 10);
    ck_assert_uint_eq(rd32(b + l.shape[0]), 4);
    wr32(b + l.shape[0] + 12, 2);
    ck_write(path, &c);
    assert_refused(path, TL_EFORMAT, "kernel is (3, 3, 2, 32) in the file, but the layer's settings give (3, 3, 1, 32)");
    free(c.p);
    free(path);
}
END_TEST

START_TEST(duplicate_names_and_bad_fields)
{
    char *path = good_file("m.tlm");
    ckfile c = ck_open(path);
    /* Layer 0 is "conv2d", layer 2 "conv2d_1". */
    size_t l0 = ck_find(&c, "LAYR", 0), l2 = ck_find(&c, "LAYR", 2);
    ck_assert_uint_eq(c.p[l0 + 12 + 7], 6);
    ck_assert_uint_eq(c.p[l2 + 12 + 7], 8);
    memcpy(c.p + l2 + 12 + 12, "conv2d\x01x", 8);
    ck_write(path, &c);
    assert_refused(path, TL_EFORMAT, "the name contains a control character");
    /* Layer 2 called "conv2d" as layer 0: cut the "_1" off its name. */
    memcpy(c.p + l2 + 12 + 12, "conv2d_1", 8);
    ck_splice(&c, l2 + 12 + 12 + 6, 2, NULL, 0);
    c.p[l2 + 12 + 7] = 6;
    wr64(c.p + l2 + 4, rd64(c.p + l2 + 4) - 2);
    ck_write(path, &c);
    assert_refused(path, TL_EFORMAT, "layer 2: the model already has a layer named 'conv2d'");
    free(c.p);

    c = ck_open(good_file_into(path));
    l0 = ck_find(&c, "LAYR", 0);
    c.p[l0 + 12 + 6] = 2; /* trainable 2 */
    ck_write(path, &c);
    assert_refused(path, TL_EFORMAT, "trainable 2 must be 0 or 1");
    c.p[l0 + 12 + 6] = 1;
    wr32(c.p + l0 + 12 + 8, 0xff800000u); /* lr scale -inf */
    ck_write(path, &c);
    assert_refused(path, TL_EFORMAT, "learning-rate scale -inf");
    free(c.p);
    free(path);
}
END_TEST

START_TEST(missing_sections)
{
    char *path = good_file("m.tlm");
    ckfile c = ck_open(path);
    /* Without END. */
    size_t end = ck_find(&c, "END ", 0);
    ckfile d = {malloc(end), end, c.major, c.minor};
    memcpy(d.p, c.p, end);
    ck_write(path, &d);
    assert_refused(path, TL_EFORMAT, "the payload ends without an END section");
    free(d.p);
    /* Without the first kernel's values. */
    size_t t0 = ck_find(&c, "TENS", 0), t1 = ck_find(&c, "TENS", 1);
    ck_splice(&c, t0, t1 - t0, NULL, 0);
    ck_write(path, &c);
    assert_refused(path, TL_EFORMAT, "layer 0 ('conv2d') tensor 0 has no values");
    /* Optimizer state before the OPTM section. */
    free(c.p);
    free(path);
    path = good_file("s.tlm");
    c = ck_open(path);
    size_t optm = ck_find(&c, "OPTM", 0);
    size_t state = ck_find(&c, "TENS", 6); /* the first state tensor */
    ck_assert_uint_eq(rd32(c.p + state + 12 + 8), 1);
    size_t slen = 12 + (size_t)rd64(c.p + state + 4);
    uint8_t *copy = malloc(slen);
    memcpy(copy, c.p + state, slen);
    ck_splice(&c, state, slen, NULL, 0);
    ck_splice(&c, optm, 0, copy, slen);
    ck_write(path, &c);
    assert_refused(path, TL_EFORMAT, "comes before the OPTM section");
    free(copy);
    free(c.p);
    free(path);
}
END_TEST

/* ---- learning-rate schedules: the SCHD section ------------------------------------------ */

static bool ck_has(const ckfile *c, const char *tag)
{
    for (size_t off = 0; off + 12 <= c->len; off += 12 + (size_t)rd64(c->p + off + 4))
        if (memcmp(c->p + off, tag, 4) == 0)
            return true;
    return false;
}

/* The small CNN with Adam and a schedule, one epoch of 16 examples in
 * batches of 16 trained (steps 1, epoch 1), saved. */
static char *schedule_file(const char *name, const tl_schedule_options *s)
{
    tl_model *m = small_cnn(8);
    tl_dataset *ds = th_quadrant_dataset(16, 12, 12, 1, 3), *val = th_quadrant_dataset(8, 12, 12, 1, 4);
    compile_adam(m);
    ck_assert_tl_ok(tl_optimizer_set_schedule(tl_model_optimizer(m), s));
    tl_fit_options fo = TL_FIT_OPTIONS_INIT;
    fo.batch_size = 16;
    fo.validation = val;
    ck_assert_tl_ok(tl_model_fit(m, ds, &fo));
    char *path = th_join(dir, name);
    ck_assert_tl_ok(tl_model_save(m, path, NULL));
    tl_model_free(m);
    tl_dataset_free(ds);
    tl_dataset_free(val);
    return path;
}

static tl_schedule_options cosine_schedule(void)
{
    tl_schedule_options s = TL_SCHEDULE_OPTIONS_INIT;
    s.kind = TL_SCHEDULE_COSINE;
    s.warmup_steps = 1;
    s.warmup_start_factor = 0.5f;
    return s;
}

/* ---- early stopping under way: the ESTP section --------------------------------------- */

static int cancel_at_once(const tl_progress *p, void *payload)
{
    (void)p;
    (void)payload;
    return 1;
}

/* The small CNN, Adam, one epoch of a fit with early stopping (restore_best
 * when `copy`) cancelled from the epoch callback, saved: an ESTP section. */
static char *early_file(const char *name, int copy)
{
    tl_model *m = small_cnn(8);
    tl_dataset *ds = th_quadrant_dataset(16, 12, 12, 1, 3), *val = th_quadrant_dataset(8, 12, 12, 1, 4);
    compile_adam(m);
    tl_early_stopping_options es = TL_EARLY_STOPPING_OPTIONS_INIT;
    es.monitor = TL_MONITOR_VAL_ACCURACY;
    es.restore_best = copy;
    tl_fit_options fo = TL_FIT_OPTIONS_INIT;
    fo.epochs = 5;
    fo.batch_size = 16;
    fo.validation = val;
    fo.early_stopping = &es;
    fo.on_epoch = cancel_at_once;
    ck_assert_int_eq(tl_model_fit(m, ds, &fo), TL_ECANCELED);
    char *path = th_join(dir, name);
    ck_assert_tl_ok(tl_model_save(m, path, NULL));
    tl_model_free(m);
    tl_dataset_free(ds);
    tl_dataset_free(val);
    return path;
}

START_TEST(early_section_layout_and_damage)
{
    char *path = early_file("es.tlm", 1);
    ckfile c = ck_open(path);
    ck_assert_uint_eq(c.minor, 1); /* the seed CNN alone is 1.0: ESTP makes it 1.1 */
    size_t at = ck_find(&c, "ESTP", 0);
    ck_assert_uint_eq(at, ck_find(&c, "OPTM", 0) + 12 + 44); /* right after OPTM */
    tl_model *ref = small_cnn(8);
    const uint64_t values = tl_model_param_count(ref); /* the seed CNN has no state tensors */
    tl_model_free(ref);
    ck_assert_uint_eq(rd64(c.p + at + 4), 32 + 4 * values);
    uint8_t *b = c.p + at + 12;
    ck_assert_uint_eq(rd32(b), TL_MONITOR_VAL_ACCURACY);
    ck_assert_uint_eq(rd32(b + 4), 0);  /* wait */
    ck_assert_uint_eq(rd32(b + 8), 1);  /* best epoch */
    ck_assert_uint_eq(rd32(b + 12), 1); /* epochs */
    ck_assert_uint_eq(rd64(b + 24), values);
    /* The copy is the weights of epoch 1: those saved in the layers' TENS. */
    const size_t tens = ck_find(&c, "TENS", 0);
    const uint64_t n0 = rd64(c.p + tens + 12 + 16);
    ck_assert_int_eq(memcmp(b + 32, c.p + tens + 12 + 24, 4 * n0), 0);
    /* It loads, and the summary says what it holds. */
    tl_model *m = NULL;
    ck_assert_tl_ok(tl_model_load(&m, path));
    ck_assert(m->early.pending && m->early.best_epoch == 1 && m->early.count == values);
    tl_model_free(m);
    tl_checkpoint_info *info;
    ck_assert_tl_ok(tl_checkpoint_info_read(&info, path));
    char *text = calloc(8192, 1);
    ck_assert_tl_ok(tl_checkpoint_info_summary_write(info, append_text, text));
    ck_assert_msg(strstr(text, "Early stopping (a fit under way): val_accuracy, 1 epochs, best ") != NULL &&
                      strstr(text, "at epoch 1, 0 since, best weights saved\n") != NULL, "%s", text);
    free(text);
    tl_checkpoint_info_free(info);
    /* Parameters alone skip it. */
    tl_model *dst = small_cnn(1);
    ck_assert_tl_ok(tl_model_load_params(NULL, dst, path, NULL));
    ck_assert(!dst->early.pending);
    tl_model_free(dst);
    /* Damage, field by field: each refused with the field named. */
    struct {
        size_t off;
        uint32_t value;
        tl_status st;
        const char *needle;
    } bad[] = {
        {0, 7, TL_EFORMAT, "early-stopping monitor 7 is not valid"},
        {4, 2, TL_EFORMAT, "2 epochs without improvement and best epoch 1 exceed its 1 epochs"},
        {8, 0, TL_EFORMAT, "does not fit its best epoch 0"},
        {24, 5, TL_EFORMAT, "best-weights copy has 5 values"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ckfile d = ck_copy(&c);
        wr32(d.p + at + 12 + bad[i].off, bad[i].value);
        ck_write(path, &d);
        assert_refused(path, bad[i].st, bad[i].needle);
        free(d.p);
    }
    /* A second ESTP; one before OPTM; a body cut short. */
    const size_t len = 12 + (size_t)rd64(c.p + at + 4);
    {
        ckfile d = ck_copy(&c);
        ck_splice(&d, at, 0, c.p + at, len);
        ck_write(path, &d);
        assert_refused(path, TL_EFORMAT, "a second ESTP section");
        free(d.p);
    }
    {
        ckfile d = ck_copy(&c);
        uint8_t *sec = malloc(len);
        memcpy(sec, c.p + at, len);
        ck_splice(&d, at, len, NULL, 0);
        ck_splice(&d, ck_find(&d, "OPTM", 0), 0, sec, len);
        ck_write(path, &d);
        assert_refused(path, TL_EFORMAT, "an ESTP section before the OPTM section");
        free(sec);
        free(d.p);
    }
    {
        ckfile d = ck_copy(&c);
        wr64(d.p + at + 4, 32 + 4 * values - 4); /* one value short: the next section's bytes are not it */
        ck_splice(&d, at + 12 + 32 + 4 * (size_t)values - 4, 4, NULL, 0);
        ck_write(path, &d);
        assert_refused(path, TL_EFORMAT, "too few for its");
        free(d.p);
    }
    /* Without restore_best: no copy. */
    char *plain = early_file("es-plain.tlm", 0);
    ckfile p2 = ck_open(plain);
    size_t at2 = ck_find(&p2, "ESTP", 0);
    ck_assert_uint_eq(rd64(p2.p + at2 + 4), 32);
    ck_assert_uint_eq(rd64(p2.p + at2 + 12 + 24), 0);
    free(p2.p);
    remove(plain);
    free(plain);
    free(c.p);
    remove(path);
    free(path);
}
END_TEST

START_TEST(schedule_section_layout)
{
    /* The SCHD body as docs/format-checkpoint.md lays it out. */
    tl_schedule_options s = cosine_schedule();
    char *path = schedule_file("m.tlm", &s);
    ckfile c = ck_open(path);
    ck_assert_uint_eq(c.minor, 1); /* the seed CNN alone is 1.0: the schedule makes it 1.1 */
    size_t at = ck_find(&c, "SCHD", 0);
    ck_assert_uint_eq(at, ck_find(&c, "OPTM", 0) + 12 + 44); /* right after OPTM */
    ck_assert_uint_eq(rd64(c.p + at + 4), 184);
    const uint8_t *b = c.p + at + 12;
    ck_assert_uint_eq(rd32(b), TL_SCHEDULE_COSINE);
    ck_assert_uint_eq(rd32(b + 4), TL_MONITOR_VAL_LOSS);
    ck_assert_uint_eq(rd32(b + 16), 0);  /* milestones */
    ck_assert_uint_eq(rd64(b + 84), 0);  /* total_steps: left to fit */
    ck_assert_uint_eq(rd64(b + 92), 1);  /* warmup_steps */
    ck_assert_uint_eq(rd32(b + 100), 0x3f000000u); /* warmup_start_factor 0.5 */
    ck_assert_uint_eq(rd32(b + 108), 0x3e99999au); /* pct_start 0.3 */
    ck_assert_uint_eq(rd64(b + 136), 0); /* started at step 0 */
    ck_assert_uint_eq(rd64(b + 144), 1); /* T = 1 epoch x 1 batch, set by fit */
    ck_assert_uint_eq(rd32(b + 152), 1); /* one epoch */
    ck_assert_uint_eq(rd64(b + 168), 0x7ff0000000000000ull); /* best: +inf (not a plateau) */
    ck_assert_uint_eq(rd64(b + 176), 0x3ff0000000000000ull); /* reduction 1.0 */
    tl_model *m = NULL;
    ck_assert_tl_ok(tl_model_load(&m, path));
    ck_assert_int_eq(m->opt->sched.o.kind, TL_SCHEDULE_COSINE);
    ck_assert_uint_eq(m->opt->sched.total, 1);
    ck_assert_uint_eq(m->opt->sched.epoch, 1);
    ck_assert(tl_optimizer_current_learning_rate(m->opt) == 0.0f); /* step 1 = T: min_lr 0 */
    /* Parameters alone do not take the optimizer, nor its schedule. */
    tl_model *dst = small_cnn(1);
    ck_assert_tl_ok(tl_model_load_params(NULL, dst, path, NULL));
    ck_assert_ptr_null(tl_model_optimizer(dst));
    tl_model_free(dst);
    /* The description says so. */
    tl_checkpoint_info *info;
    ck_assert_tl_ok(tl_checkpoint_info_read(&info, path));
    char *text = calloc(8192, 1);
    ck_assert_tl_ok(tl_checkpoint_info_summary_write(info, append_text, text));
    ck_assert_msg(strstr(text, "Learning-rate schedule: cosine, epoch 1, step 1, next rate 0\n") != NULL, "%s", text);
    free(text);
    tl_checkpoint_info_free(info);
    /* No schedule, no SCHD: the same model writes format 1.0 again. */
    ck_assert_tl_ok(tl_optimizer_set_schedule(m->opt, NULL));
    ck_assert_tl_ok(tl_model_save(m, path, NULL));
    free(c.p);
    c = ck_open(path);
    ck_assert_uint_eq(c.minor, 0);
    ck_assert(!ck_has(&c, "SCHD"));
    free(c.p);
    tl_model_free(m);
    free(path);
}
END_TEST

/* The schedule file with its SCHD body edited by `edit`, written to path. */
static void edited(const char *src, const char *path, void (*edit)(ckfile *c, uint8_t *body), uint16_t minor)
{
    ckfile c = ck_open(src);
    edit(&c, c.p + ck_find(&c, "SCHD", 0) + 12);
    c.minor = minor;
    ck_write(path, &c);
    free(c.p);
}

static void kind_9(ckfile *c, uint8_t *b) { (void)c; wr32(b, 9); }
static void kind_0(ckfile *c, uint8_t *b) { (void)c; wr32(b, 0); }
static void monitor_5(ckfile *c, uint8_t *b) { (void)c; wr32(b + 4, 5); }
static void milestones_17(ckfile *c, uint8_t *b) { (void)c; wr32(b + 16, 17); }
static void negative_start(ckfile *c, uint8_t *b) { (void)c; wr32(b + 100, 0xbf800000u); } /* -1 */
static void late_origin(ckfile *c, uint8_t *b) { (void)c; wr64(b + 136, 2); }
static void other_total(ckfile *c, uint8_t *b) { (void)c; wr64(b + 84, 7); }
static void short_total(ckfile *c, uint8_t *b) { (void)c; wr64(b + 92, 5); wr64(b + 84, 0); wr64(b + 144, 3); }
static void scale_2(ckfile *c, uint8_t *b) { (void)c; wr64(b + 176, 0x4000000000000000ull); }
static void best_nan(ckfile *c, uint8_t *b) { (void)c; wr64(b + 168, 0x7ff8000000000000ull); }
static void bad_epochs(ckfile *c, uint8_t *b) { (void)c; wr32(b + 156, 11); } /* patience 10 */
static void shorter(ckfile *c, uint8_t *b)
{
    (void)b;
    size_t at = ck_find(c, "SCHD", 0);
    ck_splice(c, at + 12 + 100, 84, NULL, 0);
    wr64(c->p + at + 4, 100);
}
static void longer(ckfile *c, uint8_t *b)
{
    (void)b;
    ck_grow_section(c, ck_find(c, "SCHD", 0), 8);
}
static void twice(ckfile *c, uint8_t *b)
{
    uint8_t sec[12 + 184];
    memcpy(sec, b - 12, sizeof sec);
    ck_splice(c, ck_find(c, "END ", 0), 0, sec, sizeof sec);
}
static void before_optm(ckfile *c, uint8_t *b)
{
    uint8_t sec[12 + 184];
    memcpy(sec, b - 12, sizeof sec);
    ck_splice(c, ck_find(c, "SCHD", 0), sizeof sec, NULL, 0);
    ck_splice(c, ck_find(c, "OPTM", 0), 0, sec, sizeof sec);
}
static void nothing(ckfile *c, uint8_t *b) { (void)c, (void)b; }

START_TEST(schedule_section_errors)
{
    tl_schedule_options s = cosine_schedule();
    char *src = schedule_file("src.tlm", &s), *path = th_join(dir, "m.tlm");
    static const struct {
        void (*edit)(ckfile *, uint8_t *);
        uint16_t minor;
        tl_status st;
        const char *needle;
    } cases[] = {
        {kind_9, 1, TL_EFORMAT, "schedule kind 9 is not valid"},
        {kind_9, 2, TL_EVERSION, "schedule kind 9 is not known to this libtl (the file is format 1.2"},
        {kind_0, 1, TL_EFORMAT, "schedule kind 0 (constant) is not stored"},
        {monitor_5, 1, TL_EFORMAT, "schedule monitor 5 is not valid"},
        {monitor_5, 2, TL_EVERSION, "schedule monitor 5 is not known"},
        {milestones_17, 1, TL_EFORMAT, "17 schedule milestones, at most 16"},
        {negative_start, 1, TL_EFORMAT, "the saved schedule: cosine schedule: warmup_start_factor -1 must be finite"},
        {late_origin, 1, TL_EFORMAT, "the cosine schedule started at step 2, after the optimizer's 1 steps"},
        {other_total, 1, TL_EFORMAT, "the cosine schedule's total_steps in effect, 1, is not its setting 7"},
        {short_total, 1, TL_EFORMAT, "the cosine schedule's warmup_steps 5 exceed its total_steps in effect 3"},
        {scale_2, 1, TL_EFORMAT, "reduction 2 must be in [0, 1]"},
        {best_nan, 1, TL_EFORMAT, "best value nan a number"},
        {bad_epochs, 1, TL_EFORMAT, "11 bad epochs and 0 cooldown epochs left exceed its patience 10"},
        {shorter, 1, TL_EFORMAT, "section 'SCHD' has 100 bytes, at least 184 expected"},
        {longer, 1, TL_EFORMAT, "section 'SCHD' has 8 bytes after its last field"},
        {twice, 1, TL_EFORMAT, "a second SCHD section"},
        {before_optm, 1, TL_EFORMAT, "a SCHD section before the OPTM section"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        edited(src, path, cases[i].edit, cases[i].minor);
        assert_refused(path, cases[i].st, cases[i].needle);
    }
    /* A later minor version's fields at the end of SCHD are skipped. */
    edited(src, path, longer, 2);
    tl_model *m = NULL;
    ck_assert_tl_ok(tl_model_load(&m, path));
    ck_assert_int_eq(m->opt->sched.o.kind, TL_SCHEDULE_COSINE);
    tl_model_free(m);
    /* A SCHD in a file that says 1.0: schedules came with 1.1. */
    ckfile c = ck_open(src);
    ck_to_1_0(&c);
    ck_write(path, &c);
    free(c.p);
    assert_refused(path, TL_EFORMAT, "a SCHD section in a format 1.0 file");
    /* A reader older than the section (libtl 1.0 reads format 1.0 only)
     * refuses it as an unknown critical section, like this reader refuses
     * a newer one's (unknown_critical_section): never loads the model
     * without its schedule. */
    edited(src, path, nothing, 1);
    ck_assert_tl_ok(tl_model_load(&m, path));
    tl_model_free(m);
    free(src);
    free(path);
}
END_TEST

START_TEST(invalid_zlib_stream_with_valid_crcs)
{
    char *path = good_file("m.tlm");
    size_t n;
    uint8_t *f = th_file_read(path, &n);
    memset(f + 48 + 2, 0xff, 16); /* garbage deflate blocks */
    wr32(f + 36, (uint32_t)crc32(0, f + 48, (uInt)(n - 48)));
    fix_header_crc(f);
    th_file_write(path, f, n);
    assert_refused(path, TL_EFORMAT, "not a valid zlib stream");
    free(f);
    free(path);
}
END_TEST

START_TEST(not_a_file)
{
    tl_model *m = (tl_model *)&m;
    char *missing = th_join(dir, "missing.tlm");
    ck_assert_tl_err(tl_model_load(&m, missing), TL_ENOTFOUND, "missing.tlm: cannot open");
    ck_assert_ptr_null(m);
    ck_assert_tl_err(tl_model_load(&m, dir), TL_EIO, "not a regular file (a directory)");
    ck_assert_ptr_null(m);
    free(missing);
}
END_TEST

/* ---- atomic saves ----------------------------------------------------------------------- */

/* A previous file, kept in memory to compare against. */
static uint8_t *previous(const char *path, size_t *n)
{
    tl_model *old = small_cnn(100);
    ck_assert_tl_ok(tl_model_save(old, path, NULL));
    tl_model_free(old);
    uint8_t *bytes = th_file_read(path, n);
    ck_assert_ptr_nonnull(bytes);
    return bytes;
}

START_TEST(save_into_a_missing_directory)
{
    tl_model *m = small_cnn(1);
    char *sub = th_join(dir, "no/such/dir/m.tlm");
    ck_assert_tl_err(tl_model_save(m, sub, NULL), TL_EIO, "cannot create a temporary file beside it");
    ck_assert_ptr_nonnull(strstr(tl_last_error(), "No such file or directory"));
    ck_assert_uint_eq(th_dir_count_tmp(dir), 0);
    free(sub);
    tl_model_free(m);
}
END_TEST

START_TEST(save_over_a_directory_leaves_it_and_no_temporary)
{
    tl_model *m = small_cnn(1);
    char *target = th_join(dir, "target");
    ck_assert_int_eq(mkdir(target, 0755), 0);
    char *inner = th_join(target, "keep");
    th_file_write(inner, "x", 1);
    ck_assert_tl_err(tl_model_save(m, target, NULL), TL_EIO, "cannot replace it");
    ck_assert_ptr_nonnull(strstr(tl_last_error(), "previous file is unchanged"));
    struct stat st;
    ck_assert_int_eq(stat(target, &st), 0);
    ck_assert(S_ISDIR(st.st_mode));
    ck_assert(th_file_equals(inner, (const uint8_t *)"x", 1));
    ck_assert_uint_eq(th_dir_count_tmp(dir), 0);
    free(inner);
    free(target);
    tl_model_free(m);
}
END_TEST

START_TEST(write_error_keeps_the_previous_file)
{
    /* A file-size limit makes write() fail with EFBIG part-way through the
     * temporary file, as a full disk would. Only the soft limit is lowered,
     * and only around the one call; SIGXFSZ is ignored so the write returns
     * the error instead of ending the process. */
    char *path = th_join(dir, "m.tlm");
    size_t n;
    uint8_t *old = previous(path, &n);
    tl_model *m = th_seed_cnn(32, 32, 3, 10, 2); /* much larger than the limit */
    struct rlimit saved, small;
    ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &saved), 0);
    small = saved;
    small.rlim_cur = 4096;
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &small), 0);
    tl_clear_error();
    tl_status st = tl_model_save(m, path, NULL);
    setrlimit(RLIMIT_FSIZE, &saved);
    signal(SIGXFSZ, old_handler);
    ck_assert_msg(st == TL_EIO, "%s: %s", tl_status_str(st), tl_last_error());
    ck_assert_ptr_nonnull(strstr(tl_last_error(), "m.tlm: writing byte"));
    ck_assert_ptr_nonnull(strstr(tl_last_error(), "File too large; the previous file is unchanged"));
    ck_assert(th_file_equals(path, old, n));
    ck_assert_uint_eq(th_dir_count_tmp(dir), 0);
    /* The old file still loads, and the model can still be saved. */
    tl_model *r;
    ck_assert_tl_ok(tl_model_load(&r, path));
    tl_model_free(r);
    ck_assert_tl_ok(tl_model_save(m, path, NULL));
    free(old);
    free(path);
    tl_model_free(m);
}
END_TEST

START_TEST(successful_save_replaces_the_file)
{
    char *path = th_join(dir, "m.tlm");
    size_t n;
    uint8_t *old = previous(path, &n);
    tl_model *m = small_cnn(55);
    ck_assert_tl_ok(tl_model_save(m, path, NULL));
    ck_assert(!th_file_equals(path, old, n));
    ck_assert_uint_eq(th_dir_count_tmp(dir), 0);
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    mode_t mask = umask(0);
    umask(mask);
    ck_assert_uint_eq(st.st_mode & 0777, 0666 & ~mask);
    tl_model *r;
    ck_assert_tl_ok(tl_model_load(&r, path));
    ck_assert(th_same_params(m, r));
    tl_model_free(r);
    tl_model_free(m);
    free(old);
    free(path);
}
END_TEST

/* ---- allocation failures ------------------------------------------------------------------ */

START_TEST(every_allocation_failure_in_save)
{
    char *path = th_join(dir, "m.tlm");
    size_t n;
    uint8_t *old = previous(path, &n);
    tl_model *m = small_cnn(12);
    tl_dataset *ds = th_quadrant_dataset(16, 12, 12, 1, 3);
    compile_adam(m);
    fit(m, ds, 1, 1);
    long i;
    for (i = 1; i < 1000; i++) {
        tli_alloc_fail_at(i);
        tl_status st = tl_model_save(m, path, NULL);
        tli_alloc_fail_at(0);
        if (st == TL_OK)
            break;
        ck_assert_msg(st == TL_ENOMEM, "allocation %ld: %s: %s", i, tl_status_str(st), tl_last_error());
        ck_assert(th_file_equals(path, old, n));
        ck_assert_uint_eq(th_dir_count_tmp(dir), 0);
    }
    ck_assert_int_gt(i, 2);
    ck_assert_int_lt(i, 1000);
    /* The model is still whole and usable. */
    tl_model *r;
    ck_assert_tl_ok(tl_model_load(&r, path));
    ck_assert(th_same_params(m, r));
    fit(m, ds, 1, 0);
    tl_model_free(r);
    tl_model_free(m);
    tl_dataset_free(ds);
    free(old);
    free(path);
}
END_TEST

/* Each reader arms the allocation failure `fail` itself, right around the
 * call under test, so its own set-up allocates normally. */
typedef tl_status (*read_fn)(const char *path, void *arg, long fail);

static tl_status do_load(const char *path, void *arg, long fail)
{
    tl_model *m = (tl_model *)&m;
    tli_alloc_fail_at(fail);
    tl_status st = tl_model_load(&m, path);
    tli_alloc_fail_at(0);
    ck_assert(st == TL_OK ? m != NULL : m == NULL);
    if (st == TL_OK)
        ck_assert(th_same_params(m, arg));
    tl_model_free(m);
    return st;
}

static tl_status do_info(const char *path, void *arg, long fail)
{
    tl_checkpoint_info *info = (tl_checkpoint_info *)&info;
    tli_alloc_fail_at(fail);
    tl_status st = tl_checkpoint_info_read(&info, path);
    tli_alloc_fail_at(0);
    ck_assert(st == TL_OK ? info != NULL : info == NULL);
    if (st == TL_OK)
        ck_assert_uint_eq(tl_checkpoint_info_param_count(info), tl_model_param_count(arg));
    tl_checkpoint_info_free(info);
    return st;
}

static tl_status do_load_params(const char *path, void *arg, long fail)
{
    tl_model *dst = small_cnn(77);
    size_t n0, n1;
    float *before = th_all_params(dst, &n0);
    tl_transfer_report *r = NULL;
    tli_alloc_fail_at(fail);
    tl_status st = tl_model_load_params(&r, dst, path, NULL);
    tli_alloc_fail_at(0);
    if (st == TL_OK) {
        ck_assert(th_same_params(dst, arg));
    } else {
        float *after = th_all_params(dst, &n1);
        ck_assert_int_eq(memcmp(before, after, n0 * sizeof(float)), 0);
        free(after);
    }
    tl_transfer_report_free(r);
    free(before);
    tl_model_free(dst);
    return st;
}

static void fail_each_allocation(read_fn fn, const char *path, void *arg)
{
    long i;
    for (i = 1; i < 2000; i++) {
        tl_status st = fn(path, arg, i);
        if (st == TL_OK)
            break;
        ck_assert_msg(st == TL_ENOMEM, "allocation %ld: %s: %s", i, tl_status_str(st), tl_last_error());
    }
    ck_assert_int_gt(i, 2);
    ck_assert_int_lt(i, 2000);
}

START_TEST(every_allocation_failure_in_load)
{
    tl_model *m = small_cnn(12);
    tl_dataset *ds = th_quadrant_dataset(16, 12, 12, 1, 3);
    compile_adam(m);
    fit(m, ds, 1, 1);
    char *path = th_join(dir, "m.tlm");
    ck_assert_tl_ok(tl_model_save(m, path, NULL));
    fail_each_allocation(do_load, path, m);
    fail_each_allocation(do_info, path, m);
    fail_each_allocation(do_load_params, path, m);
    tl_model_free(m);
    tl_dataset_free(ds);
    free(path);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("io");
    TCase *rt = tcase_create("roundtrip");
    tcase_add_checked_fixture(rt, setup, teardown);
    tcase_add_test(rt, roundtrip_without_optimizer);
    tcase_add_test(rt, roundtrip_with_adam_state_and_without);
    tcase_add_test(rt, roundtrip_sgd_momentum_with_a_frozen_layer);
    tcase_add_test(rt, resume_equals_uninterrupted);
    tcase_add_test(rt, empty_model_roundtrip);
    tcase_add_test(rt, compression_levels_and_options);
    tcase_add_test(rt, info_describes_a_file_without_building_it);
    tcase_add_test(rt, load_params_transfers_from_a_file);
    tcase_add_test(rt, graph_model_roundtrip);
    tcase_add_test(rt, a_1_0_file_still_loads);
    suite_add_tcase(s, rt);
    TCase *bad = tcase_create("corrupt");
    tcase_add_checked_fixture(bad, setup, teardown);
    tcase_add_test(bad, wrong_magic);
    tcase_add_test(bad, unsupported_major_version);
    tcase_add_test(bad, header_crc_mismatch);
    tcase_add_test(bad, compressed_crc_mismatch);
    tcase_add_test(bad, payload_crc_mismatch);
    tcase_add_test(bad, cut_at_every_sixteenth);
    tcase_add_test(bad, trailing_bytes);
    tcase_add_test(bad, absurd_payload_size);
    tcase_add_test(bad, absurd_layer_count);
    tcase_add_test(bad, absurd_tensor_size);
    tcase_add_test(bad, absurd_section_length);
    tcase_add_test(bad, layer_parameters_larger_than_the_file);
    tcase_add_test(bad, unknown_critical_section);
    tcase_add_test(bad, newer_minor_version_is_read);
    tcase_add_test(bad, unknown_layer_kind_and_activation);
    tcase_add_test(bad, kind_names_settings_and_roles);
    tcase_add_test(bad, graph_inputs_must_be_earlier_layers);
    tcase_add_test(bad, graph_with_an_unused_layer);
    tcase_add_test(bad, graph_settings_defaults_and_checks);
    tcase_add_test(bad, kinds_newer_than_1_0_in_a_1_0_file);
    tcase_add_test(bad, layers_that_cannot_follow_each_other);
    tcase_add_test(bad, duplicate_names_and_bad_fields);
    tcase_add_test(bad, missing_sections);
    tcase_add_test(bad, invalid_zlib_stream_with_valid_crcs);
    tcase_add_test(bad, not_a_file);
    suite_add_tcase(s, bad);
    TCase *sched = tcase_create("schedule");
    tcase_add_checked_fixture(sched, setup, teardown);
    tcase_add_test(sched, schedule_section_layout);
    tcase_add_test(sched, early_section_layout_and_damage);
    tcase_add_test(sched, schedule_section_errors);
    suite_add_tcase(s, sched);
    TCase *atomic = tcase_create("atomic");
    tcase_add_checked_fixture(atomic, setup, teardown);
    tcase_add_test(atomic, save_into_a_missing_directory);
    tcase_add_test(atomic, save_over_a_directory_leaves_it_and_no_temporary);
    tcase_add_test(atomic, write_error_keeps_the_previous_file);
    tcase_add_test(atomic, successful_save_replaces_the_file);
    suite_add_tcase(s, atomic);
    TCase *alloc = tcase_create("alloc");
    tcase_add_checked_fixture(alloc, setup, teardown);
    tcase_set_timeout(alloc, 600);
    tcase_add_test(alloc, every_allocation_failure_in_save);
    tcase_add_test(alloc, every_allocation_failure_in_load);
    suite_add_tcase(s, alloc);
    return th_run(s);
}
