/*
 * test_onnx_save.c - tl_model_save_onnx() (docs/format-onnx.md, "Export").
 *
 * Without arguments: the suite that needs no peer - the protobuf encoder
 * byte for byte (lib/io/pb_write.c), the options, bad input (NULL, options
 * version, opset, a kind without ONNX equivalent, an unwritable path, every
 * allocation failing in turn) with the right status and message, no
 * partial file and the previous file intact.
 *
 * With `--peer checker` or `--peer ort`: the real tools on the exported
 * files. For the seed CNN, ResNet-20 and MobileNetV2 of tl/zoo.h (32 x 32,
 * batchnorm statistics and affine parameters set to non-default values), a
 * model made of every kind and activation (odd sizes, 'same' padding with
 * its odd cell after, explicit asymmetric pads, groups, dilation, both
 * count_include_pad, batchnorms to fold into a conv and a dense layer, a
 * flatten into a batchnorm, a three-input add) and a flatten -> dropout -> dense model, each written
 * with fold_batchnorm 0 and 1 and with NCHW and NHWC input, at opsets 13,
 * 15 and 17, the suite writes the file, three images in the graph's layout
 * and libtl's predictions (tl_model_predict on the NHWC images) plus a
 * manifest, and runs
 *  - checker: tests/onnx_check.py under python3 with Debian's python3-onnx
 *    (onnx.checker.check_model(full_check=True), strict shape inference,
 *    metadata, folding);
 *  - ort: tests/onnx_ort.js under node with onnxruntime-node (found through
 *    $TL_ORT_NODE_PATH, a node_modules folder): ONNX Runtime's outputs
 *    within 1e-4 of the largest of libtl's.
 * Each exits 77 (skipped) only when its peer cannot be loaded.
 */
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core.h"
#include "helpers.h"
#include "io/pb_write.h"
#include "io_helpers.h"
#include "layers/layer.h"
#include "model.h"

#ifndef TL_ONNX_CHECK
#error "TL_ONNX_CHECK (the path of tests/onnx_check.py) must be defined by the build"
#endif
#ifndef TL_ONNX_ORT
#error "TL_ONNX_ORT (the path of tests/onnx_ort.js) must be defined by the build"
#endif


/* ---- protobuf encoding -------------------------------------------------------- */

static void expect_bytes(const tli_pbw *w, const uint8_t *want, size_t n)
{
    ck_assert_msg(!w->buf.failed && !w->too_big && !w->unbalanced, "writer failed");
    ck_assert_uint_eq(w->buf.len, n);
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(w->buf.data[i] == want[i], "byte %zu is 0x%02x, expected 0x%02x", i, w->buf.data[i], want[i]);
}

START_TEST(pb_scalars)
{
    tli_pbw w = {0};
    tli_pbw_uint(&w, 1, 0);   /* 08 00 */
    tli_pbw_uint(&w, 1, 300); /* 08 ac 02 */
    tli_pbw_int(&w, 2, -1);   /* 10 ff*9 01: int64 is two's complement, ten bytes */
    tli_pbw_float(&w, 3, 1.5f); /* 1d 00 00 c0 3f */
    tli_pbw_string(&w, 4, "ab"); /* 22 02 61 62 */
    tli_pbw_uint(&w, 16, 1);  /* field 16: tag 0x80 0x01 */
    static const uint8_t want[] = {0x08, 0x00, 0x08, 0xac, 0x02, 0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                   0xff, 0xff, 0x01, 0x1d, 0x00, 0x00, 0xc0, 0x3f, 0x22, 0x02, 0x61, 0x62, 0x80,
                                   0x01, 0x01};
    expect_bytes(&w, want, sizeof want);
    ck_assert_int_eq(tli_pbw_status(&w, "f", "p"), TL_OK);
    tli_pbw_free(&w);
}
END_TEST

START_TEST(pb_repeated_and_bytes)
{
    tli_pbw w = {0};
    const int64_t v[3] = {1, 150, -2};
    tli_pbw_ints(&w, 1, v, 2);        /* 08 01 08 96 01 */
    tli_pbw_ints_packed(&w, 2, v, 2); /* 12 03 01 96 01 */
    const uint8_t raw[3] = {1, 2, 3};
    tli_pbw_bytes(&w, 9, raw, 3);     /* 4a 03 01 02 03 */
    static const uint8_t want[] = {0x08, 0x01, 0x08, 0x96, 0x01, 0x12, 0x03, 0x01, 0x96, 0x01,
                                   0x4a, 0x03, 0x01, 0x02, 0x03};
    expect_bytes(&w, want, sizeof want);
    tli_pbw_free(&w);
    /* A packed negative value takes ten bytes, counted in the length. */
    tli_pbw_ints_packed(&w, 2, v + 2, 1);
    ck_assert_uint_eq(w.buf.len, 12);
    ck_assert_uint_eq(w.buf.data[1], 10);
    tli_pbw_free(&w);
}
END_TEST

START_TEST(pb_nested)
{
    tli_pbw w = {0};
    tli_pbw_begin(&w, 7);
    tli_pbw_uint(&w, 1, 5);
    tli_pbw_begin(&w, 2);
    tli_pbw_end(&w); /* empty: 12 00 */
    tli_pbw_end(&w);
    static const uint8_t want[] = {0x3a, 0x04, 0x08, 0x05, 0x12, 0x00};
    expect_bytes(&w, want, sizeof want);
    tli_pbw_free(&w);
    /* A message of 200 bytes: its length takes two bytes, the content moves up. */
    uint8_t big[198];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (uint8_t)i;
    tli_pbw_begin(&w, 1);
    tli_pbw_bytes(&w, 2, big, 198 - 2); /* 12 c4 01 + 196 bytes = 199 */
    tli_pbw_uint(&w, 3, 0);             /* + 2 = 201 */
    tli_pbw_end(&w);
    ck_assert_uint_eq(w.buf.len, 1 + 2 + 201);
    ck_assert_uint_eq(w.buf.data[0], 0x0a);
    ck_assert_uint_eq(w.buf.data[1], 0xc9); /* 201 = 0x49 | 0x80, then 0x01 */
    ck_assert_uint_eq(w.buf.data[2], 0x01);
    ck_assert_uint_eq(w.buf.data[3], 0x12);
    ck_assert_uint_eq(w.buf.data[6], 0);
    ck_assert_uint_eq(w.buf.data[6 + 195], 195);
    tli_pbw_free(&w);
    /* A field whose bytes are written elsewhere: tag and length only. */
    tli_pbw_head(&w, 7, 300);
    static const uint8_t head[] = {0x3a, 0xac, 0x02};
    expect_bytes(&w, head, sizeof head);
    tli_pbw_free(&w);
}
END_TEST

START_TEST(pb_errors)
{
    tli_pbw w = {0};
    /* A length past protobuf's 2 GiB limit is refused before any byte of it is touched. */
    tli_pbw_bytes(&w, 1, NULL, (size_t)INT32_MAX + 1);
    ck_assert_tl_err(tli_pbw_status(&w, "fn", "file.onnx"), TL_ETOOBIG, "file.onnx: a protobuf message would exceed 2 GiB");
    tli_pbw_uint(&w, 1, 1); /* sticky: nothing more is written */
    ck_assert_uint_eq(w.buf.len, 0);
    tli_pbw_free(&w);
    w = (tli_pbw){0};
    tli_pbw_head(&w, 7, (uint64_t)INT32_MAX + 1);
    ck_assert_tl_err(tli_pbw_status(&w, "fn", "p"), TL_ETOOBIG, "2 GiB");
    w = (tli_pbw){0};
    tli_pbw_end(&w);
    ck_assert_tl_err(tli_pbw_status(&w, "fn", "p"), TL_EINVAL, "unbalanced");
    w = (tli_pbw){0};
    tli_pbw_begin(&w, 1);
    ck_assert_tl_err(tli_pbw_status(&w, "fn", "p"), TL_EINVAL, "unbalanced");
    tli_pbw_free(&w);
    w = (tli_pbw){0};
    for (int i = 0; i <= TLI_PB_MAX_DEPTH; i++)
        tli_pbw_begin(&w, 1);
    ck_assert_tl_err(tli_pbw_status(&w, "fn", "p"), TL_EINVAL, "unbalanced");
    tli_pbw_free(&w);
}
END_TEST

/* ---- models ------------------------------------------------------------------------- */

#define CLASSES 10
#define NIMG 3

/* Batchnorm tensors away from their defaults: gamma in [0.5, 1.5), beta
 * in [-0.3, 0.3), moving mean in [-0.5, 0.5), moving variance in [0.5, 2). */
static void set_bn_values(tl_model *m, uint64_t seed)
{
    for (size_t i = 0; i < tl_model_num_layers(m); i++) {
        tl_layer *l;
        ck_assert_tl_ok(tl_model_layer(&l, m, i));
        if (tl_layer_get_kind(l) != TL_LAYER_BATCHNORM)
            continue;
        for (size_t p = 0; p < tl_layer_num_params(l); p++) {
            tl_param_info info;
            ck_assert_tl_ok(tl_layer_param_info(&info, l, p));
            size_t n = tl_shape_count(&info.shape);
            float *v = malloc(n * sizeof *v);
            float lo = -0.5f, hi = 0.5f;
            if (strcmp(info.name, "gamma") == 0)
                lo = 0.5f, hi = 1.5f;
            else if (strcmp(info.name, "beta") == 0)
                lo = -0.3f, hi = 0.3f;
            else if (strcmp(info.name, "moving_variance") == 0)
                lo = 0.5f, hi = 2.0f;
            th_fill_uniform(v, n, lo, hi, seed + 31 * i + p);
            ck_assert_tl_ok(tl_layer_set_weights(l, p, v, n));
            free(v);
        }
    }
}

static tl_model *zoo_model(int which)
{
    tl_zoo_options o = TL_ZOO_OPTIONS_INIT;
    o.num_classes = CLASSES;
    o.seed = 7;
    tl_model *m = NULL;
    if (which == 0) {
        ck_assert_tl_ok(tl_zoo_resnet_cifar(&m, 20, &o));
    } else {
        o.dropout = 0.0f; /* torchvision's 0.2: the dropout layer is there, and left out of the file */
        ck_assert_tl_ok(tl_zoo_mobilenet_v2(&m, &o));
    }
    ck_assert_tl_ok(tl_model_set_threads(m, 1));
    set_bn_values(m, 100 + (uint64_t)which);
    return m;
}

static tl_layer *conv(tl_model *m, tl_layer *in, const char *name, uint32_t filters, uint32_t k, uint32_t s,
                      tl_padding pad, tl_activation act)
{
    tl_conv2d_options c = TL_CONV2D_OPTIONS_INIT;
    c.filters = filters;
    c.kernel_h = c.kernel_w = k;
    c.stride_h = c.stride_w = s;
    c.padding = pad;
    c.activation = act;
    c.name = name;
    c.input = in;
    c.kernel_initializer = TL_INIT_HE_UNIFORM;
    c.bias_initializer = TL_INIT_HE_UNIFORM; /* not zero, so that a wrong bias shows */
    tl_layer *l = NULL;
    ck_assert_tl_ok(tl_model_add_conv2d(&l, m, &c));
    return l;
}

static tl_layer *act_layer(tl_model *m, const char *name, tl_activation act)
{
    tl_activation_options a = TL_ACTIVATION_OPTIONS_INIT;
    a.activation = act;
    a.name = name;
    tl_layer *l = NULL;
    ck_assert_tl_ok(tl_model_add_activation(&l, m, &a));
    return l;
}

/* Every kind and every activation, on a 17 x 15 x 3 input. */
static tl_model *kinds_model(void)
{
    tl_model *m = NULL;
    ck_assert_tl_ok(tl_model_create(&m, 17, 15, 3, 11));
    ck_assert_tl_ok(tl_model_set_threads(m, 1));
    const float mean[3] = {0.1f, -0.2f, 0.3f}, std[3] = {0.5f, 1.5f, 0.8f};
    tl_normalization_options no = TL_NORMALIZATION_OPTIONS_INIT;
    no.channels = 3;
    no.mean = mean;
    no.std = std;
    no.scale = 2.0f;
    no.offset = -0.5f;
    no.name = "norm";
    ck_assert_tl_ok(tl_model_add_normalization(NULL, m, &no));
    /* 'same' at stride 2 over 17 x 15: TensorFlow's split puts the odd cell after. */
    tl_conv2d_options c = TL_CONV2D_OPTIONS_INIT;
    c.filters = 8;
    c.stride_h = c.stride_w = 2;
    c.padding = TL_PAD_SAME;
    c.activation = TL_ACT_LEAKY_RELU;
    c.activation_alpha = 0.2f;
    c.name = "stem";
    c.bias_initializer = TL_INIT_HE_UNIFORM;
    tl_layer *a = NULL;
    ck_assert_tl_ok(tl_model_add_conv2d(&a, m, &c)); /* (9, 8, 8) */
    /* Depthwise, dilated, explicit asymmetric pads: (9 + 4 - 5) + 1, (8 + 4 - 5) + 1. */
    c = (tl_conv2d_options)TL_CONV2D_OPTIONS_INIT;
    c.filters = 8;
    c.groups = 8;
    c.dilation_h = c.dilation_w = 2;
    c.padding = TL_PAD_EXPLICIT;
    c.pad_top = 2, c.pad_bottom = 2, c.pad_left = 1, c.pad_right = 3;
    c.activation = TL_ACT_SILU;
    c.name = "dw";
    c.input = a;
    c.bias_initializer = TL_INIT_HE_UNIFORM;
    tl_layer *b = NULL;
    ck_assert_tl_ok(tl_model_add_conv2d(&b, m, &c));
    conv(m, a, "pw", 8, 1, 1, TL_PAD_VALID, TL_ACT_LINEAR);
    tl_batchnorm_options bo = TL_BATCHNORM_OPTIONS_INIT;
    bo.name = "pw_bn";
    bo.center = 0; /* no beta: folded and written as zeros */
    bo.epsilon = 0.01f;
    ck_assert_tl_ok(tl_model_add_batchnorm(NULL, m, &bo));
    tl_layer *hs = act_layer(m, "pw_hswish", TL_ACT_HARD_SWISH);
    const tl_layer *cat_in[2] = {b, hs};
    ck_assert_tl_ok(tl_model_add_concatenate(NULL, m, cat_in, 2, "cat")); /* (9, 8, 16) */
    tl_maxpool2d_options mp = TL_MAXPOOL2D_OPTIONS_INIT;
    mp.pool_h = mp.pool_w = 3;
    mp.stride_h = mp.stride_w = 2;
    mp.padding = TL_PAD_SAME;
    mp.name = "maxpool";
    tl_layer *p = NULL;
    ck_assert_tl_ok(tl_model_add_maxpool2d(&p, m, &mp)); /* (5, 4, 16) */
    tl_avgpool2d_options ap = TL_AVGPOOL2D_OPTIONS_INIT;
    ap.pool_h = ap.pool_w = 3;
    ap.stride_h = ap.stride_w = 1;
    ap.padding = TL_PAD_SAME;
    ap.name = "avg_excl";
    ap.input = p;
    tl_layer *q = NULL, *r = NULL;
    ck_assert_tl_ok(tl_model_add_avgpool2d(&q, m, &ap));
    ap.count_include_pad = 1;
    ap.name = "avg_incl";
    ck_assert_tl_ok(tl_model_add_avgpool2d(&r, m, &ap));
    const tl_layer *add_in[3] = {q, r, p};
    ck_assert_tl_ok(tl_model_add_add(NULL, m, add_in, 3, "sum3"));
    act_layer(m, "relu6", TL_ACT_RELU6);
    conv(m, NULL, "head_conv", 16, 2, 1, TL_PAD_VALID, TL_ACT_HARD_SIGMOID); /* (4, 3, 16) */
    ck_assert_tl_ok(tl_model_add_flatten(NULL, m, "flat"));
    bo.name = "flat_bn"; /* a flatten whose consumer is no dense: Transpose + Flatten */
    bo.center = 1;
    bo.scale = 0; /* no gamma: written as ones */
    ck_assert_tl_ok(tl_model_add_batchnorm(NULL, m, &bo));
    tl_dense_options d = TL_DENSE_OPTIONS_INIT;
    d.units = 32;
    d.name = "fc1";
    d.bias_initializer = TL_INIT_HE_UNIFORM;
    ck_assert_tl_ok(tl_model_add_dense(NULL, m, &d));
    bo.name = "fc1_bn"; /* folded into the Gemm */
    bo.scale = 1;
    ck_assert_tl_ok(tl_model_add_batchnorm(NULL, m, &bo));
    act_layer(m, "tanh", TL_ACT_TANH);
    act_layer(m, "sigmoid", TL_ACT_SIGMOID);
    act_layer(m, "leaky", TL_ACT_LEAKY_RELU);
    tl_dropout_options dr = TL_DROPOUT_OPTIONS_INIT;
    dr.name = "drop";
    ck_assert_tl_ok(tl_model_add_dropout(NULL, m, &dr));
    d.units = 5;
    d.activation = TL_ACT_LINEAR;
    d.name = "fc2";
    ck_assert_tl_ok(tl_model_add_dense(NULL, m, &d));
    act_layer(m, "softmax", TL_ACT_SOFTMAX);
    set_bn_values(m, 5);
    return m;
}

/* conv -> maxpool -> flatten -> dropout -> dense: the dense layer after a
 * dropout still takes the flatten in ONNX's order. */
static tl_model *flat_dropout_model(void)
{
    tl_model *m = NULL;
    ck_assert_tl_ok(tl_model_create(&m, 10, 9, 2, 3));
    ck_assert_tl_ok(tl_model_set_threads(m, 1));
    conv(m, NULL, "conv", 4, 3, 1, TL_PAD_SAME, TL_ACT_RELU);
    tl_maxpool2d_options mp = TL_MAXPOOL2D_OPTIONS_INIT;
    ck_assert_tl_ok(tl_model_add_maxpool2d(NULL, m, &mp));
    ck_assert_tl_ok(tl_model_add_flatten(NULL, m, NULL));
    tl_dropout_options dr = TL_DROPOUT_OPTIONS_INIT;
    ck_assert_tl_ok(tl_model_add_dropout(NULL, m, &dr));
    tl_dense_options d = TL_DENSE_OPTIONS_INIT;
    d.units = 6;
    d.use_bias = 0; /* Gemm without its C input */
    ck_assert_tl_ok(tl_model_add_dense(NULL, m, &d));
    return m;
}

/* A model that passes its input through (one dropout layer): the graph's
 * output is an Identity (or, with NHWC input, the two Transposes). */
static tl_model *identity_model(void)
{
    tl_model *m = NULL;
    ck_assert_tl_ok(tl_model_create(&m, 3, 4, 2, 3));
    tl_dropout_options dr = TL_DROPOUT_OPTIONS_INIT;
    ck_assert_tl_ok(tl_model_add_dropout(NULL, m, &dr));
    return m;
}

static size_t count_kind(const tl_model *m, tl_layer_kind kind)
{
    size_t n = 0;
    for (size_t i = 0; i < tl_model_num_layers(m); i++) {
        tl_layer *l;
        ck_assert_tl_ok(tl_model_layer(&l, m, i));
        n += tl_layer_get_kind(l) == kind;
    }
    return n;
}

/* ---- bad input ---------------------------------------------------------------------- */

START_TEST(options_init)
{
    tl_onnx_save_options o;
    memset(&o, 0x55, sizeof o);
    ck_assert_tl_ok(tl_onnx_save_options_init(&o, TL_ONNX_SAVE_OPTIONS_VERSION));
    ck_assert_uint_eq(o.version, TL_ONNX_SAVE_OPTIONS_VERSION);
    ck_assert_int_eq(o.fold_batchnorm, 0);
    ck_assert_int_eq(o.nhwc_input, 0);
    ck_assert_int_eq(o.opset, 0);
    ck_assert_tl_err(tl_onnx_save_options_init(NULL, 1), TL_EINVAL, "tl_onnx_save_options_init");
    ck_assert_tl_err(tl_onnx_save_options_init(&o, 99), TL_EVERSION, "tl_onnx_save_options_init");
}
END_TEST

START_TEST(bad_arguments)
{
    char *dir = th_dir_create();
    char *path = th_join(dir, "m.onnx");
    tl_model *m = th_seed_cnn(12, 12, 1, 4, 1);
    ck_assert_tl_err(tl_model_save_onnx(NULL, path, NULL), TL_EINVAL, "tl_model_save_onnx: model is NULL");
    ck_assert_tl_err(tl_model_save_onnx(m, NULL, NULL), TL_EINVAL, "tl_model_save_onnx: path is NULL");
    tl_onnx_save_options o = TL_ONNX_SAVE_OPTIONS_INIT;
    o.version = 2;
    ck_assert_tl_err(tl_model_save_onnx(m, path, &o), TL_EVERSION, "tl_onnx_save_options");
    o = (tl_onnx_save_options)TL_ONNX_SAVE_OPTIONS_INIT;
    o.opset = 12;
    ck_assert_tl_err(tl_model_save_onnx(m, path, &o), TL_EINVAL, "opset 12 is not one libtl writes (13 to 17");
    o.opset = 18;
    ck_assert_tl_err(tl_model_save_onnx(m, path, &o), TL_EINVAL, "opset 18");
    o.opset = -1;
    ck_assert_tl_err(tl_model_save_onnx(m, path, &o), TL_EINVAL, "opset -1");
    tl_model *empty = NULL;
    ck_assert_tl_ok(tl_model_create(&empty, 4, 4, 1, 1));
    ck_assert_tl_err(tl_model_save_onnx(empty, path, NULL), TL_EINVAL, "the model has no layers");
    tl_model_free(empty);
    ck_assert_tl_err(tl_model_save_onnx(m, "", NULL), TL_EINVAL, "the path is empty");
    struct stat sb;
    ck_assert_int_ne(stat(path, &sb), 0); /* nothing written by any of these */
    /* Every opset 13..17 writes. */
    for (int64_t v = 13; v <= 17; v++) {
        o.opset = v;
        ck_assert_tl_ok(tl_model_save_onnx(m, path, &o));
    }
    tl_model_free(m);
    free(path);
    th_dir_remove(dir);
}
END_TEST

/* The head of the file: ir_version, producer, and "libtl" in the metadata. */
START_TEST(file_head)
{
    char *dir = th_dir_create();
    char *path = th_join(dir, "m.onnx");
    tl_model *m = th_seed_cnn(12, 12, 1, 4, 1);
    tl_onnx_save_options o = TL_ONNX_SAVE_OPTIONS_INIT;
    for (int v = 13; v <= 17; v += 2) {
        o.opset = v;
        ck_assert_tl_ok(tl_model_save_onnx(m, path, &o));
        size_t len = 0;
        uint8_t *b = th_file_read(path, &len);
        ck_assert_ptr_nonnull(b);
        /* 08 07 (IR 7: opset 13, 14) or 08 08 (IR 8: 15..17), then 12 05 "libtl". */
        ck_assert_uint_eq(b[0], 0x08);
        ck_assert_uint_eq(b[1], v >= 15 ? 8 : 7);
        ck_assert_uint_eq(b[2], 0x12);
        ck_assert_uint_eq(b[3], 5);
        ck_assert(memcmp(b + 4, "libtl", 5) == 0);
        /* The weights are all there: 4 bytes per parameter, and a little more. */
        ck_assert_uint_gt(len, 4 * tl_model_param_count(m));
        ck_assert_uint_lt(len, 4 * tl_model_param_count(m) + 4096);
        free(b);
    }
    ck_assert_uint_eq(th_dir_count_tmp(dir), 0);
    tl_model_free(m);
    free(path);
    th_dir_remove(dir);
}
END_TEST

START_TEST(unsupported_kind)
{
    char *dir = th_dir_create();
    char *path = th_join(dir, "m.onnx");
    static const uint8_t previous[] = "the previous file";
    th_file_write(path, previous, sizeof previous);
    tl_model *m = flat_dropout_model();
    /* A kind without an ONNX equivalent: dropout's ops without the hook. */
    tl_layer *l = m->layers[3];
    const tli_layer_ops *ops = l->ops;
    tli_layer_ops no_onnx = *ops;
    no_onnx.onnx_export = NULL;
    l->ops = &no_onnx;
    ck_assert_tl_err(tl_model_save_onnx(m, path, NULL), TL_EUNSUPPORTED,
                     "layer 'dropout' (dropout, index 3) has no ONNX equivalent");
    ck_assert(strstr(tl_last_error(), path) != NULL);
    l->ops = ops;
    ck_assert(th_file_equals(path, previous, sizeof previous));
    ck_assert_uint_eq(th_dir_count_tmp(dir), 0);
    ck_assert_tl_ok(tl_model_save_onnx(m, path, NULL));
    ck_assert(!th_file_equals(path, previous, sizeof previous));
    tl_model_free(m);
    free(path);
    th_dir_remove(dir);
}
END_TEST

START_TEST(name_clash)
{
    char *dir = th_dir_create();
    char *path = th_join(dir, "m.onnx");
    tl_model *m = flat_dropout_model();
    /* The conv's ReLU writes "conv" from a tensor "conv/conv"; a layer called so clashes. */
    tl_layer *l;
    ck_assert_tl_ok(tl_model_layer(&l, m, 1));
    ck_assert_tl_ok(tl_layer_set_name(l, "conv/conv"));
    ck_assert_tl_err(tl_model_save_onnx(m, path, NULL), TL_EINVAL, "two ONNX tensors would be called 'conv/conv'");
    struct stat sb;
    ck_assert_int_ne(stat(path, &sb), 0);
    /* A layer called "input" moves the graph's input to "input_1". */
    ck_assert_tl_ok(tl_layer_set_name(l, "input"));
    ck_assert_tl_ok(tl_model_save_onnx(m, path, NULL));
    tl_model_free(m);
    free(path);
    th_dir_remove(dir);
}
END_TEST

START_TEST(unwritable_path)
{
    char *dir = th_dir_create();
    char *sub = th_join(dir, "missing/m.onnx");
    tl_model *m = th_seed_cnn(12, 12, 1, 4, 1);
    ck_assert_tl_err(tl_model_save_onnx(m, sub, NULL), TL_EIO, "cannot create a temporary file beside it");
    /* A directory at the path: the rename fails, the directory stays, no temporary file is left. */
    char *d2 = th_join(dir, "is_a_dir");
    ck_assert_int_eq(mkdir(d2, 0700), 0);
    ck_assert_tl_err(tl_model_save_onnx(m, d2, NULL), TL_EIO, "is_a_dir");
    struct stat sb;
    ck_assert_int_eq(stat(d2, &sb), 0);
    ck_assert(S_ISDIR(sb.st_mode));
    ck_assert_uint_eq(th_dir_count_tmp(dir), 0);
    rmdir(d2);
    tl_model_free(m);
    free(d2);
    free(sub);
    th_dir_remove(dir);
}
END_TEST

/* Every allocation of a save fails in turn: TL_ENOMEM with a sentence,
 * the previous file intact, no temporary file. (Leaks: under ASan.) */
START_TEST(allocation_failures)
{
    char *dir = th_dir_create();
    char *path = th_join(dir, "m.onnx");
    static const uint8_t previous[] = "previous";
    tl_model *m = kinds_model();
    tl_onnx_save_options o = TL_ONNX_SAVE_OPTIONS_INIT;
    o.fold_batchnorm = 1;
    o.nhwc_input = 1;
    long n = 1;
    for (;; n++) {
        th_file_write(path, previous, sizeof previous);
        tl_clear_error();
        tli_alloc_fail_at(n);
        tl_status st = tl_model_save_onnx(m, path, &o);
        long made = tli_alloc_fail_at(0);
        if (made < n) {
            ck_assert_tl_ok(st);
            break;
        }
        ck_assert_msg(st == TL_ENOMEM, "allocation %ld: %s: %s", n, tl_status_str(st), tl_last_error());
        ck_assert_msg(strstr(tl_last_error(), "out of memory") != NULL, "allocation %ld: '%s'", n, tl_last_error());
        ck_assert(th_file_equals(path, previous, sizeof previous));
        ck_assert_uint_eq(th_dir_count_tmp(dir), 0);
    }
    printf("allocation_failures: %ld allocations, each failed once\n", n - 1);
    ck_assert_int_gt(n, 10);
    tl_model_free(m);
    free(path);
    th_dir_remove(dir);
}
END_TEST

/* ---- round trip: libtl -> ONNX -> libtl ------------------------------------------------ */

/* Save m, load the file back, and compare predictions on the same images:
 * `exact`: the same layers and parameters come back, so the same bits;
 * otherwise (batchnorm folded into the conv; or a model whose file has
 * what libtl holds implicitly - a batchnorm's absent gamma as ones, an
 * activation the import keeps as its own layer) within float rounding. */
static void round_trip(tl_model *m, int fold, int exact)
{
    char *dir = th_dir_create(), *path = th_join(dir, "m.onnx");
    tl_onnx_save_options o = TL_ONNX_SAVE_OPTIONS_INIT;
    o.fold_batchnorm = fold;
    ck_assert_tl_ok(tl_model_save_onnx(m, path, &o));
    tl_model *back = NULL;
    ck_assert_tl_ok(tl_model_load_onnx(&back, path, NULL));
    ck_assert_tl_ok(tl_model_set_threads(back, 1));
    tl_shape in, out, out2;
    ck_assert_tl_ok(tl_model_input_shape(&in, m));
    ck_assert_tl_ok(tl_model_output_shape(&out, m));
    ck_assert_tl_ok(tl_model_output_shape(&out2, back));
    ck_assert_uint_eq(tl_shape_count(&out), tl_shape_count(&out2));
    const size_t ex = tl_shape_count(&in), width = tl_shape_count(&out);
    float *x = malloc(NIMG * ex * sizeof *x), *a = malloc(NIMG * width * sizeof *a),
          *b = malloc(NIMG * width * sizeof *b);
    th_fill_uniform(x, NIMG * ex, 0.0f, 1.0f, 5);
    ck_assert_tl_ok(tl_model_predict(a, NIMG * width, m, x, NIMG, 0));
    ck_assert_tl_ok(tl_model_predict(b, NIMG * width, back, x, NIMG, 0));
    if (exact) {
        ck_assert_uint_eq(tl_model_param_count(back), tl_model_param_count(m));
        ck_assert_int_eq(memcmp(a, b, NIMG * width * sizeof *a), 0);
    } else {
        float scale = 0, diff = 0;
        for (size_t i = 0; i < NIMG * width; i++) {
            scale = fmaxf(scale, fabsf(a[i]));
            diff = fmaxf(diff, fabsf(a[i] - b[i]));
        }
        ck_assert_float_le(diff, 1e-5f * scale);
    }
    free(x);
    free(a);
    free(b);
    tl_model_free(back);
    free(path);
    th_dir_remove(dir);
}

START_TEST(round_trip_zoo)
{
    tl_model *m = zoo_model(_i);
    round_trip(m, 0, 1);
    round_trip(m, 1, 0);
    tl_model_free(m);
}
END_TEST

START_TEST(round_trip_kinds)
{
    tl_model *m = kinds_model();
    round_trip(m, 0, 0);
    round_trip(m, 1, 0);
    tl_model_free(m);
}
END_TEST

START_TEST(round_trip_flat_dropout)
{
    tl_model *m = flat_dropout_model();
    round_trip(m, 0, 1);
    tl_model_free(m);
}
END_TEST

/* ---- the peers ------------------------------------------------------------------------ */

static void write_floats(const char *path, const float *v, size_t n)
{
    uint8_t *b = malloc(4 * n);
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        for (int k = 0; k < 4; k++)
            b[4 * i + k] = (uint8_t)(u >> (8 * k));
    }
    th_file_write(path, b, 4 * n);
    free(b);
}

typedef struct peer_run {
    char *dir;
    FILE *manifest;
    size_t files;
} peer_run;

/* Export m with the options, write the images in the graph's layout and
 * libtl's predictions, and add a manifest line. */
static void export_case(peer_run *pr, tl_model *m, const char *name, int fold, int nhwc, int64_t opset)
{
    tl_shape in, out;
    ck_assert_tl_ok(tl_model_input_shape(&in, m));
    ck_assert_tl_ok(tl_model_output_shape(&out, m));
    const uint32_t h = in.dims[0], w = in.dims[1], c = in.dims[2];
    const size_t ex = (size_t)h * w * c, width = tl_shape_count(&out);
    float *x = malloc(NIMG * ex * sizeof *x), *xg = malloc(NIMG * ex * sizeof *xg);
    th_fill_uniform(x, NIMG * ex, 0.0f, 1.0f, 99 + pr->files);
    for (size_t n = 0; n < NIMG; n++)
        for (uint32_t y = 0; y < h; y++)
            for (uint32_t q = 0; q < w; q++)
                for (uint32_t k = 0; k < c; k++) {
                    const size_t from = n * ex + ((size_t)y * w + q) * c + k;
                    xg[nhwc ? from : n * ex + ((size_t)k * h + y) * w + q] = x[from];
                }
    float *pred = malloc(NIMG * width * sizeof *pred);
    ck_assert_tl_ok(tl_model_predict(pred, NIMG * width, m, x, NIMG, 0));
    char base[128], buf[3][160];
    snprintf(base, sizeof base, "%s_fold%d_%s_op%d", name, fold, nhwc ? "nhwc" : "nchw", (int)opset);
    snprintf(buf[0], sizeof buf[0], "%s.onnx", base);
    snprintf(buf[1], sizeof buf[1], "%s.input", base);
    snprintf(buf[2], sizeof buf[2], "%s.libtl", base);
    char *p[3];
    for (int i = 0; i < 3; i++)
        p[i] = th_join(pr->dir, buf[i]);
    tl_onnx_save_options o = TL_ONNX_SAVE_OPTIONS_INIT;
    o.fold_batchnorm = fold;
    o.nhwc_input = nhwc;
    o.opset = opset;
    ck_assert_tl_ok(tl_model_save_onnx(m, p[0], &o));
    write_floats(p[1], xg, NIMG * ex);
    if (out.rank == 3 && !nhwc) { /* an image output is (N, c, h, w) in the graph */
        const uint32_t oh = out.dims[0], ow = out.dims[1], oc = out.dims[2];
        float *t = malloc(NIMG * width * sizeof *t);
        for (size_t n = 0; n < NIMG; n++)
            for (size_t j = 0; j < (size_t)oh * ow; j++)
                for (uint32_t k = 0; k < oc; k++)
                    t[n * width + k * (size_t)oh * ow + j] = pred[n * width + j * oc + k];
        free(pred);
        pred = t;
    }
    write_floats(p[2], pred, NIMG * width);
    fprintf(pr->manifest, "%s %s %d %u %u %u %s %zu %s %d %d %zu\n", p[0], p[1], NIMG, nhwc ? h : c, nhwc ? w : h,
            nhwc ? c : w, p[2], width, nhwc ? "nhwc" : "nchw", fold, (int)opset, count_kind(m, TL_LAYER_BATCHNORM));
    pr->files++;
    for (int i = 0; i < 3; i++)
        free(p[i]);
    free(x);
    free(xg);
    free(pred);
}

/* The four forms of one model: BN kept or folded, NCHW or NHWC input. */
static void export_all(peer_run *pr, tl_model *m, const char *name, int64_t last_opset)
{
    export_case(pr, m, name, 0, 0, 13);
    export_case(pr, m, name, 1, 0, 13);
    export_case(pr, m, name, 0, 1, 13);
    export_case(pr, m, name, 1, 1, last_opset);
    tl_model_free(m);
}

static const char *peer_kind;

START_TEST(exported_files_pass_peer)
{
    peer_run pr = {th_dir_create(), NULL, 0};
    char *manifest = th_join(pr.dir, "manifest.txt");
    pr.manifest = fopen(manifest, "w");
    ck_assert_ptr_nonnull(pr.manifest);
    export_all(&pr, th_seed_cnn(32, 32, 3, CLASSES, 5), "seed_cnn", 15);
    export_all(&pr, zoo_model(0), "resnet20", 17);
    export_all(&pr, zoo_model(1), "mobilenet_v2", 15);
    export_all(&pr, kinds_model(), "kinds", 17);
    tl_model *k = kinds_model();
    export_case(&pr, k, "kinds", 0, 0, 14); /* HardSwish as an operator */
    tl_model_free(k);
    export_all(&pr, flat_dropout_model(), "flat_dropout", 16);
    export_all(&pr, identity_model(), "identity", 13);
    fclose(pr.manifest);
    int rc;
    if (strcmp(peer_kind, "checker") == 0) {
        char *argv[] = {"/usr/bin/python3", TL_ONNX_CHECK, manifest, NULL};
        rc = th_spawn(argv);
    } else {
        char *argv[] = {"/usr/bin/env", "node", TL_ONNX_ORT, manifest, NULL};
        rc = th_spawn(argv);
    }
    ck_assert_msg(rc == 0, "the %s script failed (exit status %d) on %zu files", peer_kind, rc, pr.files);
    free(manifest);
    th_dir_remove(pr.dir);
}
END_TEST

/* Whether the peer loads: python3 with onnx, or node with onnxruntime-node. */
static bool peer_present(const char *kind)
{
    if (strcmp(kind, "checker") == 0) {
        char *argv[] = {"/usr/bin/python3", "-c", "import onnx, onnx.checker, onnx.shape_inference", NULL};
        return th_spawn(argv) == 0;
    }
    /* $TL_ORT_NODE_PATH first, then whatever NODE_PATH the caller has. */
    const char *np = getenv("NODE_PATH"), *ort = getenv("TL_ORT_NODE_PATH");
    if (ort && *ort) {
        size_t len = strlen(ort) + (np ? strlen(np) : 0) + 2;
        char *both = malloc(len);
        snprintf(both, len, "%s%s%s", ort, np && *np ? ":" : "", np && *np ? np : "");
        setenv("NODE_PATH", both, 1);
        free(both);
    }
    char *argv[] = {"/usr/bin/env", "node", "-e", "require('onnxruntime-node')", NULL};
    return th_spawn(argv) == 0;
}

int main(int argc, char **argv)
{
    Suite *s;
    TCase *tc;
    if (argc == 3 && strcmp(argv[1], "--peer") == 0) {
        peer_kind = argv[2];
        if (strcmp(peer_kind, "checker") != 0 && strcmp(peer_kind, "ort") != 0) {
            fprintf(stderr, "usage: %s [--peer checker|ort]\n", argv[0]);
            return 2;
        }
        if (!peer_present(peer_kind)) {
            printf("test_onnx_save: skipped: %s\n",
                   strcmp(peer_kind, "checker") == 0
                       ? "/usr/bin/python3 cannot import onnx (Debian: python3-onnx)"
                       : "node cannot load onnxruntime-node (set TL_ORT_NODE_PATH to its node_modules folder)");
            return 77;
        }
        s = suite_create("onnx_save"); /* after the peer check: a skip allocates nothing */
        tc = tcase_create(peer_kind);
        tcase_set_timeout(tc, 900);
        tcase_add_test(tc, exported_files_pass_peer);
        suite_add_tcase(s, tc);
        return th_run(s);
    }
    s = suite_create("onnx_save");
    tc = tcase_create("protobuf");
    tcase_add_test(tc, pb_scalars);
    tcase_add_test(tc, pb_repeated_and_bytes);
    tcase_add_test(tc, pb_nested);
    tcase_add_test(tc, pb_errors);
    suite_add_tcase(s, tc);
    tc = tcase_create("bad_input");
    tcase_add_test(tc, options_init);
    tcase_add_test(tc, bad_arguments);
    tcase_add_test(tc, file_head);
    tcase_add_test(tc, unsupported_kind);
    tcase_add_test(tc, name_clash);
    tcase_add_test(tc, unwritable_path);
    tcase_add_test(tc, allocation_failures);
    suite_add_tcase(s, tc);
    tc = tcase_create("round_trip");
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, round_trip_zoo, 0, 2);
    tcase_add_test(tc, round_trip_flat_dropout);
    tcase_add_test(tc, round_trip_kinds);
    suite_add_tcase(s, tc);
    return th_run(s);
}
