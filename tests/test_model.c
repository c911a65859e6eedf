/* test_model.c - building models through the public API: creation, Keras
 * automatic names and custom names, look-up, shape inference and its
 * errors (status and message), parameter counts, the summary and its
 * buffer contract, weight access, removing layers, deterministic
 * initialisation, option versions, prediction errors, threads. */
#include <stdio.h>

#include "helpers.h"

static tl_model *new_model(uint32_t h, uint32_t w, uint32_t c)
{
    tl_model *m;
    ck_assert_tl_ok(tl_model_create(&m, h, w, c, 42));
    ck_assert_tl_ok(tl_model_set_threads(m, 1));
    return m;
}

static tl_layer *layer_at(const tl_model *m, size_t i)
{
    tl_layer *l;
    ck_assert_tl_ok(tl_model_layer(&l, m, i));
    return l;
}

static tl_conv2d_options conv_opts(uint32_t filters)
{
    tl_conv2d_options o = TL_CONV2D_OPTIONS_INIT;
    o.filters = filters;
    return o;
}

/* ---- creation ------------------------------------------------------------- */

START_TEST(create_and_free)
{
    tl_model *m = (tl_model *)&m;
    ck_assert_tl_err(tl_model_create(NULL, 1, 1, 1, 0), TL_EINVAL, "out is NULL");
    ck_assert_tl_err(tl_model_create(&m, 0, 4, 1, 0), TL_EINVAL, "(0, 4, 1)");
    ck_assert_ptr_null(m);
    ck_assert_tl_err(tl_model_create(&m, 4, 4, 0, 0), TL_EINVAL, "zero dimension");
    ck_assert_tl_err(tl_model_create(&m, 65536, 65536, 1, 0), TL_ETOOBIG, "2^31");
    ck_assert_ptr_null(m);
    ck_assert_tl_ok(tl_model_create(&m, 28, 20, 3, 1234));
    ck_assert_uint_eq(tl_model_seed(m), 1234);
    ck_assert_uint_eq(tl_model_num_layers(m), 0);
    tl_shape s;
    ck_assert_tl_ok(tl_model_input_shape(&s, m));
    ck_assert(s.rank == 3 && s.dims[0] == 28 && s.dims[1] == 20 && s.dims[2] == 3);
    ck_assert_tl_ok(tl_model_output_shape(&s, m)); /* no layers: the input */
    ck_assert(s.rank == 3 && s.dims[0] == 28 && s.dims[2] == 3);
    ck_assert_uint_eq(tl_model_param_count(m), 0);
    ck_assert_tl_err(tl_model_input_shape(NULL, m), TL_EINVAL, "out is NULL");
    ck_assert_tl_err(tl_model_output_shape(&s, NULL), TL_EINVAL, "model is NULL");
    tl_model_free(m);
    tl_model_free(NULL);
    ck_assert_uint_eq(tl_model_seed(NULL), 0);
    ck_assert_uint_eq(tl_model_num_layers(NULL), 0);
    ck_assert_uint_eq(tl_model_param_count(NULL), 0);
}
END_TEST

/* ---- names ----------------------------------------------------------------- */

START_TEST(keras_automatic_names)
{
    tl_model *m = th_seed_cnn(32, 32, 3, 10, 1);
    ck_assert_ptr_nonnull(m);
    static const char *names[6] = {"conv2d", "max_pooling2d", "conv2d_1", "max_pooling2d_1", "flatten", "dense"};
    static const tl_layer_kind kinds[6] = {TL_LAYER_CONV2D, TL_LAYER_MAXPOOL2D, TL_LAYER_CONV2D,
                                           TL_LAYER_MAXPOOL2D, TL_LAYER_FLATTEN, TL_LAYER_DENSE};
    ck_assert_uint_eq(tl_model_num_layers(m), 6);
    for (size_t i = 0; i < 6; i++) {
        tl_layer *l = layer_at(m, i);
        ck_assert_str_eq(tl_layer_name(l), names[i]);
        ck_assert_int_eq(tl_layer_get_kind(l), kinds[i]);
        ck_assert_uint_eq(tl_layer_index(l), i);
        tl_layer *by_name;
        ck_assert_tl_ok(tl_model_layer_by_name(&by_name, m, names[i]));
        ck_assert_ptr_eq(by_name, l);
    }
    ck_assert_str_eq(tl_layer_kind_str(TL_LAYER_CONV2D), "conv2d");
    ck_assert_str_eq(tl_layer_kind_str(TL_LAYER_MAXPOOL2D), "maxpool2d");
    ck_assert_str_eq(tl_layer_kind_str(TL_LAYER_FLATTEN), "flatten");
    ck_assert_str_eq(tl_layer_kind_str(TL_LAYER_DENSE), "dense");
    ck_assert_str_eq(tl_layer_kind_str((tl_layer_kind)0), "unknown");
    ck_assert_str_eq(tl_activation_str(TL_ACT_SOFTMAX), "softmax");
    ck_assert_str_eq(tl_activation_str(TL_ACT_TANH), "tanh");
    ck_assert_str_eq(tl_activation_str((tl_activation)17), "unknown");
    ck_assert_int_eq(tl_layer_activation(layer_at(m, 0)), TL_ACT_RELU);
    ck_assert_int_eq(tl_layer_activation(layer_at(m, 1)), TL_ACT_LINEAR);
    ck_assert_int_eq(tl_layer_activation(layer_at(m, 5)), TL_ACT_SOFTMAX);
    tl_model_free(m);
}
END_TEST

START_TEST(custom_names_and_errors)
{
    tl_model *m = new_model(12, 12, 3);
    tl_conv2d_options c = conv_opts(4);
    c.name = "features";
    tl_layer *l;
    ck_assert_tl_ok(tl_model_add_conv2d(&l, m, &c));
    ck_assert_str_eq(tl_layer_name(l), "features");
    /* A custom name that looks automatic (on a pooling layer): the next
     * automatic conv2d name, conv2d_1, is taken and skipped. */
    tl_maxpool2d_options p = TL_MAXPOOL2D_OPTIONS_INIT;
    p.name = "conv2d_1";
    ck_assert_tl_ok(tl_model_add_maxpool2d(&l, m, &p));
    ck_assert_str_eq(tl_layer_name(l), "conv2d_1");
    c.name = NULL;
    ck_assert_tl_ok(tl_model_add_conv2d(&l, m, &c));
    ck_assert_str_eq(tl_layer_name(l), "conv2d_2");

    const size_t before = tl_model_num_layers(m);
    c.name = "features";
    ck_assert_tl_err(tl_model_add_conv2d(NULL, m, &c), TL_EINVAL, "already has a layer named 'features'");
    c.name = "";
    ck_assert_tl_err(tl_model_add_conv2d(NULL, m, &c), TL_EINVAL, "must not be empty");
    char long_name[TL_MAX_NAME + 2];
    memset(long_name, 'a', TL_MAX_NAME + 1);
    long_name[TL_MAX_NAME + 1] = '\0';
    c.name = long_name;
    ck_assert_tl_err(tl_model_add_conv2d(NULL, m, &c), TL_EINVAL, "longer than TL_MAX_NAME");
    ck_assert_tl_err(tl_model_add_flatten(NULL, m, "a\"quote"), TL_EINVAL, "quote");
    ck_assert_tl_err(tl_model_add_flatten(NULL, m, "tab\there"), TL_EINVAL, "control character");
    ck_assert_uint_eq(tl_model_num_layers(m), before);
    long_name[TL_MAX_NAME] = '\0'; /* exactly TL_MAX_NAME bytes is fine */
    ck_assert_tl_ok(tl_model_add_flatten(&l, m, long_name));
    ck_assert_str_eq(tl_layer_name(l), long_name);

    /* Renaming. */
    ck_assert_tl_err(tl_layer_set_name(l, "features"), TL_EINVAL, "already has a layer named 'features'");
    ck_assert_tl_ok(tl_layer_set_name(l, tl_layer_name(l))); /* its own name */
    ck_assert_tl_ok(tl_layer_set_name(l, "flat"));
    tl_layer *found;
    ck_assert_tl_ok(tl_model_layer_by_name(&found, m, "flat"));
    ck_assert_ptr_eq(found, l);
    ck_assert_tl_err(tl_model_layer_by_name(&found, m, long_name), TL_ENOTFOUND, "no layer named");
    ck_assert_tl_err(tl_layer_set_name(l, ""), TL_EINVAL, "must not be empty");
    ck_assert_tl_err(tl_layer_set_name(NULL, "x"), TL_EINVAL, "layer is NULL");
    ck_assert_tl_err(tl_layer_set_name(l, NULL), TL_EINVAL, "name is NULL");
    ck_assert_str_eq(tl_layer_name(l), "flat");
    ck_assert_str_eq(tl_layer_name(NULL), "");
    tl_model_free(m);
}
END_TEST

START_TEST(lookup)
{
    tl_model *m = th_seed_cnn(16, 16, 1, 4, 1);
    tl_layer *l = (tl_layer *)&l;
    ck_assert_tl_err(tl_model_layer(&l, m, 6), TL_ERANGE, "index 6 is out of range (the model has 6 layers)");
    ck_assert_tl_err(tl_model_layer_by_name(&l, m, "nope"), TL_ENOTFOUND, "'nope'");
    ck_assert_tl_err(tl_model_layer(NULL, m, 0), TL_EINVAL, "out is NULL");
    ck_assert_tl_err(tl_model_layer(&l, NULL, 0), TL_EINVAL, "model is NULL");
    ck_assert_tl_err(tl_model_layer_by_name(&l, m, NULL), TL_EINVAL, "name is NULL");
    ck_assert_tl_err(tl_model_layer_by_name(&l, NULL, "dense"), TL_EINVAL, "model is NULL");
    ck_assert_tl_ok(tl_model_layer_by_name(&l, m, "max_pooling2d_1"));
    ck_assert_uint_eq(tl_layer_index(l), 3);
    tl_shape s;
    ck_assert_tl_ok(tl_layer_input_shape(&s, l));
    ck_assert(s.rank == 3 && s.dims[0] == 5 && s.dims[1] == 5 && s.dims[2] == 64);
    ck_assert_tl_ok(tl_layer_output_shape(&s, l));
    ck_assert(s.rank == 3 && s.dims[0] == 2 && s.dims[1] == 2 && s.dims[2] == 64);
    ck_assert_uint_eq(tl_shape_count(&s), 256);
    ck_assert_uint_eq(tl_shape_count(NULL), 0);
    ck_assert_tl_err(tl_layer_input_shape(NULL, l), TL_EINVAL, "out is NULL");
    ck_assert_tl_err(tl_layer_output_shape(&s, NULL), TL_EINVAL, "layer is NULL");
    ck_assert_int_eq(tl_layer_get_kind(NULL), 0);
    ck_assert_uint_eq(tl_layer_num_params(NULL), 0);
    ck_assert_uint_eq(tl_layer_param_count(NULL), 0);
    tl_model_free(m);
}
END_TEST

/* ---- shape inference errors ------------------------------------------------------ */

START_TEST(shape_errors_name_layer_and_shapes)
{
    tl_model *m = new_model(4, 4, 1);
    tl_conv2d_options c = conv_opts(8);
    c.kernel_h = c.kernel_w = 5;
    ck_assert_tl_err(tl_model_add_conv2d(NULL, m, &c), TL_ESHAPE, "layer 'conv2d' (conv2d, index 0)");
    ck_assert_tl_err(tl_model_add_conv2d(NULL, m, &c), TL_ESHAPE, "kernel 5x5 is larger than its input (4, 4, 1)");
    ck_assert_uint_eq(tl_model_num_layers(m), 0);
    c.padding = TL_PAD_SAME; /* Keras allows it with same padding */
    ck_assert_tl_ok(tl_model_add_conv2d(NULL, m, &c));
    tl_model_free(m);

    /* Further down: 8x8 -> conv 6x6 -> pool 3x3 -> conv 1x1 -> a 2x2 pool does not fit. */
    m = new_model(8, 8, 3);
    c = conv_opts(16);
    ck_assert_tl_ok(tl_model_add_conv2d(NULL, m, &c));
    tl_maxpool2d_options p = TL_MAXPOOL2D_OPTIONS_INIT;
    ck_assert_tl_ok(tl_model_add_maxpool2d(NULL, m, &p));
    ck_assert_tl_ok(tl_model_add_conv2d(NULL, m, &c));
    ck_assert_tl_err(tl_model_add_maxpool2d(NULL, m, &p), TL_ESHAPE,
                     "layer 'max_pooling2d_1' (maxpool2d, index 3): pool 2x2 is larger than its input (1, 1, 16)");
    /* Dense straight after a 3-D output. */
    tl_dense_options d = TL_DENSE_OPTIONS_INIT;
    d.units = 10;
    ck_assert_tl_err(tl_model_add_dense(NULL, m, &d), TL_ESHAPE, "layer 'dense' (dense, index 3)");
    ck_assert_tl_err(tl_model_add_dense(NULL, m, &d), TL_ESHAPE, "needs a flat input, got (1, 1, 16)");
    ck_assert_tl_err(tl_model_add_dense(NULL, m, &d), TL_ESHAPE, "add a flatten layer first");
    ck_assert_uint_eq(tl_model_num_layers(m), 3);
    /* Convolution or pooling after flatten. */
    ck_assert_tl_ok(tl_model_add_flatten(NULL, m, NULL));
    ck_assert_tl_err(tl_model_add_conv2d(NULL, m, &c), TL_ESHAPE, "needs an (h, w, c) input, got (16,)");
    ck_assert_tl_err(tl_model_add_maxpool2d(NULL, m, &p), TL_ESHAPE, "index 4) needs an (h, w, c) input");
    ck_assert_tl_ok(tl_model_add_dense(NULL, m, &d));
    ck_assert_uint_eq(tl_model_num_layers(m), 5);

    /* Settings that are invalid whatever the input (TL_EINVAL). */
    c = conv_opts(0);
    ck_assert_tl_err(tl_model_add_conv2d(NULL, m, &c), TL_EINVAL, "filters (0)");
    tl_model_free(m);
    m = new_model(8, 8, 3);
    c = conv_opts(4);
    c.stride_h = 0;
    ck_assert_tl_err(tl_model_add_conv2d(NULL, m, &c), TL_EINVAL, "strides (0x1) must be > 0");
    c = conv_opts(4);
    c.kernel_w = 0;
    ck_assert_tl_err(tl_model_add_conv2d(NULL, m, &c), TL_EINVAL, "kernel (3x0)");
    c = conv_opts(4);
    c.padding = (tl_padding)5;
    ck_assert_tl_err(tl_model_add_conv2d(NULL, m, &c), TL_EINVAL, "unknown padding 5");
    c = conv_opts(4);
    c.activation = (tl_activation)10; /* 9 is hard_sigmoid since 1.1 */
    ck_assert_tl_err(tl_model_add_conv2d(NULL, m, &c), TL_EINVAL, "unknown activation 10");
    p.pool_h = 0;
    ck_assert_tl_err(tl_model_add_maxpool2d(NULL, m, &p), TL_EINVAL, "pool size 0x2");
    p = (tl_maxpool2d_options)TL_MAXPOOL2D_OPTIONS_INIT;
    p.padding = (tl_padding)4;
    ck_assert_tl_err(tl_model_add_maxpool2d(NULL, m, &p), TL_EINVAL, "unknown padding 4");
    ck_assert_tl_ok(tl_model_add_flatten(NULL, m, NULL));
    d.units = 0;
    ck_assert_tl_err(tl_model_add_dense(NULL, m, &d), TL_EINVAL, "units must be > 0");
    d.units = 3;
    d.activation = (tl_activation)-1;
    ck_assert_tl_err(tl_model_add_dense(NULL, m, &d), TL_EINVAL, "unknown activation -1");
    ck_assert_uint_eq(tl_model_num_layers(m), 1);
    /* NULLs. */
    ck_assert_tl_err(tl_model_add_conv2d(NULL, NULL, &c), TL_EINVAL, "model is NULL");
    ck_assert_tl_err(tl_model_add_conv2d(NULL, m, NULL), TL_EINVAL, "options is NULL");
    ck_assert_tl_err(tl_model_add_maxpool2d(NULL, m, NULL), TL_EINVAL, "options is NULL");
    ck_assert_tl_err(tl_model_add_dense(NULL, NULL, &d), TL_EINVAL, "model is NULL");
    ck_assert_tl_err(tl_model_add_flatten(NULL, NULL, NULL), TL_EINVAL, "model is NULL");
    tl_model_free(m);

    /* Sizes beyond 2^31 values are refused before anything is allocated. */
    m = new_model(32768, 32768, 1);
    c = conv_opts(4);
    c.padding = TL_PAD_SAME;
    ck_assert_tl_err(tl_model_add_conv2d(NULL, m, &c), TL_ETOOBIG, "exceeds 2^31");
    tl_model_free(m);
}
END_TEST

/* ---- counts and summary ------------------------------------------------------------ */

START_TEST(param_counts)
{
    /* The document's network on CIFAR-10: 896 + 18,496 + 23,050 = 42,442. */
    tl_model *m = th_seed_cnn(32, 32, 3, 10, 1);
    static const size_t per_layer[6] = {896, 0, 18496, 0, 0, 23050};
    static const size_t tensors[6] = {2, 0, 2, 0, 0, 2};
    for (size_t i = 0; i < 6; i++) {
        ck_assert_uint_eq(tl_layer_param_count(layer_at(m, i)), per_layer[i]);
        ck_assert_uint_eq(tl_layer_num_params(layer_at(m, i)), tensors[i]);
    }
    ck_assert_uint_eq(tl_model_param_count(m), 42442);
    ck_assert_uint_eq(tl_model_trainable_param_count(m), 42442);
    ck_assert_tl_ok(tl_layer_set_trainable(layer_at(m, 2), 0));
    ck_assert_uint_eq(tl_model_trainable_param_count(m), 42442 - 18496);
    ck_assert_tl_ok(tl_layer_set_trainable(layer_at(m, 1), 0)); /* no parameters: accepted */
    ck_assert_tl_err(tl_layer_set_trainable(NULL, 0), TL_EINVAL, "NULL");
    ck_assert_int_eq(tl_layer_is_trainable(NULL), 0);
    tl_model_free(m);

    /* Keras' CIFAR-10 tutorial network: conv(32) pool conv(64) pool conv(64)
     * flatten dense(64, relu) dense(10): 122,570 parameters. */
    m = new_model(32, 32, 3);
    tl_conv2d_options c = conv_opts(32);
    c.activation = TL_ACT_RELU;
    tl_maxpool2d_options p = TL_MAXPOOL2D_OPTIONS_INIT;
    ck_assert_tl_ok(tl_model_add_conv2d(NULL, m, &c));
    ck_assert_tl_ok(tl_model_add_maxpool2d(NULL, m, &p));
    c.filters = 64;
    ck_assert_tl_ok(tl_model_add_conv2d(NULL, m, &c));
    ck_assert_tl_ok(tl_model_add_maxpool2d(NULL, m, &p));
    ck_assert_tl_ok(tl_model_add_conv2d(NULL, m, &c));
    ck_assert_tl_ok(tl_model_add_flatten(NULL, m, NULL));
    tl_dense_options d = TL_DENSE_OPTIONS_INIT;
    d.units = 64;
    d.activation = TL_ACT_RELU;
    ck_assert_tl_ok(tl_model_add_dense(NULL, m, &d));
    d.units = 10;
    d.activation = TL_ACT_LINEAR;
    ck_assert_tl_ok(tl_model_add_dense(NULL, m, &d));
    ck_assert_uint_eq(tl_model_param_count(m), 122570);
    ck_assert_uint_eq(tl_layer_param_count(layer_at(m, 4)), 36928);
    ck_assert_uint_eq(tl_layer_param_count(layer_at(m, 6)), 65600);
    /* Without biases. */
    tl_model_free(m);
    m = new_model(5, 5, 2);
    c = conv_opts(3);
    c.use_bias = 0;
    tl_layer *l;
    ck_assert_tl_ok(tl_model_add_conv2d(&l, m, &c));
    ck_assert_uint_eq(tl_layer_param_count(l), 3 * 3 * 2 * 3);
    ck_assert_uint_eq(tl_layer_num_params(l), 1);
    tl_model_free(m);
}
END_TEST

typedef struct collected {
    char text[4096];
    size_t len, calls, stop_after;
} collected;

static int collect(const char *text, size_t len, void *payload)
{
    collected *c = payload;
    ck_assert(c->len + len < sizeof c->text);
    memcpy(c->text + c->len, text, len);
    c->len += len;
    c->text[c->len] = '\0';
    c->calls++;
    return c->stop_after && c->calls >= c->stop_after;
}

START_TEST(summary_contents_and_buffer_contract)
{
    tl_model *m = th_seed_cnn(32, 32, 3, 10, 1);
    ck_assert_tl_ok(tl_layer_set_trainable(layer_at(m, 0), 0));
    size_t needed = 0;
    /* Sizing call: cap 0, no buffer; a query, not a failure, so it leaves
     * no error behind. */
    tl_layer *none;
    ck_assert_tl_err(tl_model_layer(&none, m, 99), TL_ERANGE, "out of range");
    ck_assert_tl_ok(tl_model_summary(NULL, 0, &needed, m));
    ck_assert_uint_gt(needed, 200);
    char *buf = malloc(needed + 1);
    ck_assert_tl_ok(tl_model_summary(buf, needed + 1, NULL, m));
    ck_assert_uint_eq(strlen(buf), needed);
    static const char *must[] = {
        "input (32, 32, 3)",
        "Layer (type)",
        "Output Shape",
        "Param #",
        "conv2d (conv2d)",
        "(None, 30, 30, 32)",
        "max_pooling2d (maxpool2d)",
        "(None, 15, 15, 32)",
        "conv2d_1 (conv2d)",
        "(None, 13, 13, 64)",
        "18,496",
        "(None, 6, 6, 64)",
        "flatten (flatten)",
        "(None, 2304)",
        "dense (dense)",
        "(None, 10)",
        "23,050",
        "no (frozen)",
        "Total params: 42,442\n",
        "Trainable params: 41,546\n",
        "Non-trainable params: 896\n",
    };
    for (size_t i = 0; i < sizeof must / sizeof must[0]; i++)
        ck_assert_msg(strstr(buf, must[i]) != NULL, "summary lacks '%s':\n%s", must[i], buf);
    /* Layers appear in order. */
    ck_assert(strstr(buf, "conv2d (conv2d)") < strstr(buf, "conv2d_1 (conv2d)"));
    ck_assert(strstr(buf, "flatten (flatten)") < strstr(buf, "dense (dense)"));

    /* One byte short: cut, NUL-terminated, TL_ETOOBIG, same `needed`. */
    char *small = malloc(needed);
    size_t needed2 = 0;
    ck_assert_tl_err(tl_model_summary(small, needed, &needed2, m), TL_ETOOBIG, "buffer has");
    ck_assert_uint_eq(needed2, needed);
    ck_assert_uint_eq(strlen(small), needed - 1);
    ck_assert(strncmp(small, buf, needed - 1) == 0);
    char one[1] = {'x'};
    ck_assert_tl_err(tl_model_summary(one, 1, NULL, m), TL_ETOOBIG, "plus the NUL");
    ck_assert_int_eq(one[0], '\0');
    ck_assert_tl_err(tl_model_summary(NULL, 10, NULL, m), TL_EINVAL, "buf is NULL");
    ck_assert_tl_err(tl_model_summary(buf, needed + 1, NULL, NULL), TL_EINVAL, "model is NULL");

    /* The callback receives the same text; non-zero stops it. */
    collected c;
    memset(&c, 0, sizeof c);
    ck_assert_tl_ok(tl_model_summary_write(m, collect, &c));
    ck_assert_str_eq(c.text, buf);
    ck_assert_uint_gt(c.calls, 10);
    memset(&c, 0, sizeof c);
    c.stop_after = 3;
    ck_assert_tl_err(tl_model_summary_write(m, collect, &c), TL_ECANCELED, "asked to stop");
    ck_assert_uint_eq(c.calls, 3);
    ck_assert_tl_err(tl_model_summary_write(m, NULL, &c), TL_EINVAL, "write is NULL");
    ck_assert_tl_err(tl_model_summary_write(NULL, collect, &c), TL_EINVAL, "model is NULL");
    free(buf);
    free(small);
    tl_model_free(m);

    /* An empty model still renders its totals. */
    m = new_model(2, 2, 1);
    char text[1024];
    ck_assert_tl_ok(tl_model_summary(text, sizeof text, NULL, m));
    ck_assert_ptr_nonnull(strstr(text, "Model: 0 layers, input (2, 2, 1)"));
    ck_assert_ptr_nonnull(strstr(text, "Total params: 0\n"));
    tl_model_free(m);
}
END_TEST

/* ---- weights ------------------------------------------------------------------------ */

START_TEST(get_and_set_weights)
{
    tl_model *m = th_seed_cnn(32, 32, 3, 10, 1);
    tl_layer *conv = layer_at(m, 0), *pool = layer_at(m, 1);
    tl_param_info info;
    ck_assert_tl_ok(tl_layer_param_info(&info, conv, 0));
    ck_assert_str_eq(info.name, "kernel");
    ck_assert_uint_eq(info.count, 864);
    float k[864], k2[864], b[32];
    ck_assert_tl_ok(tl_layer_get_weights(k, 864, conv, 0));
    ck_assert_tl_err(tl_layer_get_weights(k, 863, conv, 0), TL_ESHAPE,
                     "layer 'conv2d' kernel has shape (3, 3, 3, 32) = 864 values, but the buffer holds 863");
    ck_assert_tl_err(tl_layer_get_weights(b, 10, conv, 1), TL_ESHAPE, "bias has shape (32,) = 32 values");
    ck_assert_tl_err(tl_layer_get_weights(k, 864, conv, 2), TL_ERANGE, "has 2 parameter tensors, not index 2");
    ck_assert_tl_err(tl_layer_get_weights(k, 1, pool, 0), TL_ERANGE, "has 0 parameter tensors");
    ck_assert_tl_err(tl_layer_get_weights(NULL, 864, conv, 0), TL_EINVAL, "out is NULL");
    ck_assert_tl_err(tl_layer_get_weights(k, 864, NULL, 0), TL_EINVAL, "layer is NULL");
    ck_assert_tl_err(tl_layer_param_info(NULL, conv, 0), TL_EINVAL, "out is NULL");
    ck_assert_tl_err(tl_layer_param_info(&info, conv, 5), TL_ERANGE, "not index 5");

    /* set: errors change nothing; a good call round-trips. */
    for (size_t i = 0; i < 864; i++)
        k2[i] = (float)i * 0.001f - 0.4f;
    ck_assert_tl_err(tl_layer_set_weights(conv, 0, k2, 865), TL_ESHAPE, "but the buffer holds 865");
    ck_assert_tl_err(tl_layer_set_weights(conv, 0, NULL, 864), TL_EINVAL, "values is NULL");
    ck_assert_tl_err(tl_layer_set_weights(NULL, 0, k2, 864), TL_EINVAL, "layer is NULL");
    ck_assert_tl_err(tl_layer_set_weights(pool, 0, k2, 1), TL_ERANGE, "maxpool2d");
    float now[864];
    ck_assert_tl_ok(tl_layer_get_weights(now, 864, conv, 0));
    ck_assert(memcmp(now, k, sizeof k) == 0);
    ck_assert_tl_ok(tl_layer_set_weights(conv, 0, k2, 864));
    ck_assert_tl_ok(tl_layer_get_weights(now, 864, conv, 0));
    ck_assert(memcmp(now, k2, sizeof k2) == 0);
    /* The new weights are used. */
    float x[32 * 32 * 3], y1[10], y2[10];
    th_fill_uniform(x, sizeof x / sizeof x[0], 0, 1, 3);
    ck_assert_tl_ok(tl_model_predict(y1, 10, m, x, 1, 0));
    ck_assert_tl_ok(tl_layer_set_weights(conv, 0, k, 864));
    ck_assert_tl_ok(tl_model_predict(y2, 10, m, x, 1, 0));
    ck_assert(memcmp(y1, y2, sizeof y1) != 0);
    tl_model_free(m);
}
END_TEST

/* ---- removing layers ------------------------------------------------------------------- */

START_TEST(pop_layers)
{
    tl_model *m = th_seed_cnn(32, 32, 3, 10, 1);
    tl_optimizer *o;
    ck_assert_tl_ok(tl_optimizer_create_adam(&o, NULL));
    ck_assert_tl_ok(tl_model_compile(m, o, TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY));
    float *x = calloc(2 * 32 * 32 * 3, sizeof *x);
    const int32_t labels[2] = {1, 2};
    ck_assert_tl_ok(tl_model_train_step(NULL, m, x, labels, NULL, 2));
    ck_assert_uint_gt(tl_model_optimizer_state_bytes(m), 0);

    ck_assert_tl_err(tl_model_pop_layers(m, 7), TL_ERANGE, "cannot remove 7 layers from a model with 6");
    ck_assert_tl_err(tl_model_pop_layers(NULL, 1), TL_EINVAL, "NULL");
    ck_assert_uint_eq(tl_model_num_layers(m), 6);
    ck_assert_tl_ok(tl_model_pop_layers(m, 0));
    ck_assert_tl_ok(tl_model_pop_layers(m, 1));
    ck_assert_uint_eq(tl_model_num_layers(m), 5);
    ck_assert_uint_eq(tl_model_optimizer_state_bytes(m), 0); /* state reset */
    ck_assert_uint_eq(tl_optimizer_steps(tl_model_optimizer(m)), 0);
    tl_shape s;
    ck_assert_tl_ok(tl_model_output_shape(&s, m));
    ck_assert(s.rank == 1 && s.dims[0] == 2304);
    tl_layer *l;
    ck_assert_tl_err(tl_model_layer_by_name(&l, m, "dense"), TL_ENOTFOUND, "dense");
    /* A 100-way head, as in the document: the name "dense" is free again. */
    tl_dense_options d = TL_DENSE_OPTIONS_INIT;
    d.units = 100;
    d.activation = TL_ACT_SOFTMAX;
    ck_assert_tl_ok(tl_model_add_dense(&l, m, &d));
    ck_assert_str_eq(tl_layer_name(l), "dense");
    ck_assert_uint_eq(tl_layer_param_count(l), 230500);
    ck_assert_uint_eq(tl_model_param_count(m), 896 + 18496 + 230500);
    /* Still trains (the workspace follows the new structure). */
    const int32_t labels100[2] = {99, 42};
    double loss;
    ck_assert_tl_ok(tl_model_train_step(&loss, m, x, labels100, NULL, 2));
    ck_assert_close(loss, log(100.0), 0.5);
    const int32_t too_big[2] = {100, 0};
    ck_assert_tl_err(tl_model_train_step(&loss, m, x, too_big, NULL, 2), TL_ERANGE, "label 100 of example 0");
    /* Everything. */
    ck_assert_tl_ok(tl_model_pop_layers(m, 6));
    ck_assert_uint_eq(tl_model_num_layers(m), 0);
    ck_assert_tl_ok(tl_model_output_shape(&s, m));
    ck_assert(s.rank == 3 && s.dims[0] == 32 && s.dims[2] == 3);
    float y[1];
    ck_assert_tl_err(tl_model_predict(y, 1, m, x, 1, 0), TL_ESTATE, "no layers");
    free(x);
    tl_model_free(m);
}
END_TEST

/* ---- initialisation ------------------------------------------------------------------- */

/* All parameters of a model, concatenated (caller frees). */
static float *all_params(const tl_model *m, size_t *count)
{
    size_t n = tl_model_param_count(m), off = 0;
    float *v = malloc((n ? n : 1) * sizeof *v);
    for (size_t i = 0; i < tl_model_num_layers(m); i++) {
        tl_layer *l = layer_at(m, i);
        for (size_t p = 0; p < tl_layer_num_params(l); p++) {
            tl_param_info info;
            ck_assert_tl_ok(tl_layer_param_info(&info, l, p));
            ck_assert_tl_ok(tl_layer_get_weights(v + off, info.count, l, p));
            off += info.count;
        }
    }
    *count = n;
    return v;
}

START_TEST(init_params_is_deterministic_glorot)
{
    tl_model *a = th_seed_cnn(16, 16, 3, 5, 77), *b = th_seed_cnn(16, 16, 3, 5, 77), *c = th_seed_cnn(16, 16, 3, 5, 78);
    size_t na, nb, nc;
    float *pa = all_params(a, &na), *pb = all_params(b, &nb), *pc = all_params(c, &nc);
    ck_assert(na == nb && na == nc);
    ck_assert_msg(memcmp(pa, pb, na * sizeof *pa) == 0, "same seed, different weights");
    ck_assert_msg(memcmp(pa, pc, na * sizeof *pa) != 0, "different seeds, same weights");
    /* Re-drawing with seed 78 gives model c's weights; with 77 again, a's. */
    ck_assert_tl_ok(tl_model_init_params(a, 78));
    ck_assert_uint_eq(tl_model_seed(a), 78);
    float *pa2 = all_params(a, &na);
    ck_assert(memcmp(pa2, pc, na * sizeof *pa) == 0);
    ck_assert_tl_ok(tl_model_init_params(a, 77));
    free(pa2);
    pa2 = all_params(a, &na);
    ck_assert(memcmp(pa2, pb, na * sizeof *pa) == 0);
    ck_assert_tl_err(tl_model_init_params(NULL, 1), TL_EINVAL, "NULL");

    /* A layer's weights depend on the seed and its index only. */
    tl_model *first = new_model(16, 16, 3);
    ck_assert_tl_ok(tl_model_init_params(first, 77));
    tl_conv2d_options co = conv_opts(32);
    co.activation = TL_ACT_RELU;
    ck_assert_tl_ok(tl_model_add_conv2d(NULL, first, &co));
    size_t nf;
    float *pf = all_params(first, &nf);
    ck_assert(memcmp(pf, pb, nf * sizeof *pf) == 0);

    /* Glorot-uniform kernels (limit sqrt(6 / (fan_in + fan_out))), zero biases. */
    for (size_t i = 0; i < tl_model_num_layers(b); i++) {
        tl_layer *l = layer_at(b, i);
        if (tl_layer_num_params(l) == 0)
            continue;
        tl_param_info ki, bi;
        ck_assert_tl_ok(tl_layer_param_info(&ki, l, 0));
        ck_assert_tl_ok(tl_layer_param_info(&bi, l, 1));
        double receptive = ki.shape.rank == 4 ? (double)ki.shape.dims[0] * ki.shape.dims[1] : 1.0;
        double fan_in = receptive * ki.shape.dims[ki.shape.rank - 2];
        double fan_out = receptive * ki.shape.dims[ki.shape.rank - 1];
        double limit = sqrt(6.0 / (fan_in + fan_out));
        float *k = malloc(ki.count * sizeof *k), *bias = malloc(bi.count * sizeof *bias);
        ck_assert_tl_ok(tl_layer_get_weights(k, ki.count, l, 0));
        ck_assert_tl_ok(tl_layer_get_weights(bias, bi.count, l, 1));
        double mx = 0.0, mean = 0.0;
        for (size_t j = 0; j < ki.count; j++) {
            ck_assert_msg(fabs(k[j]) <= limit, "layer %zu: |w| = %g above the limit %g", i, (double)fabs(k[j]), limit);
            mx = fmax(mx, fabs(k[j]));
            mean += k[j];
        }
        mean /= (double)ki.count;
        ck_assert_msg(mx > 0.9 * limit, "layer %zu: largest |w| %g, limit %g", i, mx, limit);
        ck_assert_msg(fabs(mean) < 0.15 * limit, "layer %zu: mean %g", i, mean);
        for (size_t j = 0; j < bi.count; j++)
            ck_assert(bias[j] == 0.0f);
        free(k);
        free(bias);
    }
    free(pa), free(pb), free(pc), free(pa2), free(pf);
    tl_model_free(a), tl_model_free(b), tl_model_free(c), tl_model_free(first);
}
END_TEST

/* ---- options ---------------------------------------------------------------------------- */

START_TEST(options_init_and_versions)
{
    tl_conv2d_options c;
    memset(&c, 0xff, sizeof c);
    ck_assert_tl_ok(tl_conv2d_options_init(&c, TL_CONV2D_OPTIONS_VERSION));
    ck_assert(c.version == 3 && c.filters == 0 && c.kernel_h == 3 && c.kernel_w == 3 && c.stride_h == 1 &&
              c.stride_w == 1 && c.padding == TL_PAD_VALID && c.activation == TL_ACT_LINEAR && c.use_bias == 1 &&
              c.name == NULL && c.input == NULL && c.groups == 1 && c.dilation_h == 1 && c.dilation_w == 1 &&
              c.pad_top == 0 && c.pad_bottom == 0 && c.pad_left == 0 && c.pad_right == 0);
    /* Version 1 (libtl 1.0's struct) ends before `input`: not written. */
    memset(&c, 0xff, sizeof c);
    ck_assert_tl_ok(tl_conv2d_options_init(&c, 1));
    ck_assert(c.version == 1 && c.filters == 0 && c.name == NULL);
    const void *untouched;
    memset(&untouched, 0xff, sizeof untouched);
    ck_assert(memcmp(&c.input, &untouched, sizeof untouched) == 0);
    ck_assert_tl_err(tl_conv2d_options_init(&c, 0), TL_EVERSION, "version 0");
    ck_assert_tl_err(tl_conv2d_options_init(&c, 4), TL_EVERSION, "version 4 is not supported");
    ck_assert_tl_err(tl_conv2d_options_init(NULL, 1), TL_EINVAL, "opts is NULL");
    tl_maxpool2d_options p;
    ck_assert_tl_ok(tl_maxpool2d_options_init(&p, 1));
    ck_assert(p.pool_h == 2 && p.pool_w == 2 && p.stride_h == 0 && p.stride_w == 0 && p.padding == TL_PAD_VALID &&
              p.name == NULL);
    ck_assert_tl_err(tl_maxpool2d_options_init(&p, 4), TL_EVERSION, "version 4");
    ck_assert_tl_err(tl_maxpool2d_options_init(NULL, 1), TL_EINVAL, "opts is NULL");
    tl_dense_options d;
    ck_assert_tl_ok(tl_dense_options_init(&d, 1));
    ck_assert(d.units == 0 && d.activation == TL_ACT_LINEAR && d.use_bias == 1 && d.name == NULL);
    ck_assert_tl_err(tl_dense_options_init(&d, 0), TL_EVERSION, "version 0");
    ck_assert_tl_err(tl_dense_options_init(NULL, 1), TL_EINVAL, "opts is NULL");

    /* Options structs with a bad version are refused by the add calls. */
    tl_model *m = new_model(8, 8, 1);
    c.filters = 2;
    c.version = 4;
    ck_assert_tl_err(tl_model_add_conv2d(NULL, m, &c), TL_EVERSION, "tl_conv2d_options version 4");
    p.version = 0;
    ck_assert_tl_err(tl_model_add_maxpool2d(NULL, m, &p), TL_EVERSION, "tl_maxpool2d_options version 0");
    ck_assert_tl_ok(tl_model_add_flatten(NULL, m, NULL));
    d.units = 2;
    d.version = 9;
    ck_assert_tl_err(tl_model_add_dense(NULL, m, &d), TL_EVERSION, "tl_dense_options version 9");
    ck_assert_uint_eq(tl_model_num_layers(m), 1);
    tl_model_free(m);
}
END_TEST

/* ---- prediction and threads ------------------------------------------------------------ */

START_TEST(predict_shapes_and_chunks)
{
    tl_model *m = th_seed_cnn(12, 12, 2, 3, 5);
    const size_t n = 7, in = 12 * 12 * 2;
    float *x = malloc(n * in * sizeof *x), y[21], y3[21], y1[3];
    th_fill_uniform(x, n * in, 0, 1, 8);
    ck_assert_tl_err(tl_model_predict(y, 20, m, x, n, 0), TL_ESHAPE, "7 examples x 3 outputs do not fit out_count 20");
    ck_assert_tl_err(tl_model_predict(y, 22, m, x, n, 0), TL_ESHAPE, "out_count 22");
    ck_assert_tl_err(tl_model_predict(y, 21, m, x, 0, 0), TL_EINVAL, "n is 0");
    ck_assert_tl_err(tl_model_predict(NULL, 21, m, x, n, 0), TL_EINVAL, "out is NULL");
    ck_assert_tl_err(tl_model_predict(y, 21, NULL, x, n, 0), TL_EINVAL, "model is NULL");
    ck_assert_tl_err(tl_model_predict(y, 21, m, NULL, n, 0), TL_EINVAL, "inputs is NULL");
    ck_assert_tl_ok(tl_model_predict(y, 21, m, x, n, 0));
    /* Softmax rows: probabilities. */
    for (size_t i = 0; i < n; i++) {
        double s = 0;
        for (int k = 0; k < 3; k++) {
            ck_assert(y[i * 3 + k] > 0.0f && y[i * 3 + k] < 1.0f);
            s += y[i * 3 + k];
        }
        ck_assert_close(s, 1.0, 1e-6);
    }
    /* Chunks of 3 (3 + 3 + 1) and single examples give the same numbers. */
    ck_assert_tl_ok(tl_model_predict(y3, 21, m, x, n, 3));
    for (int i = 0; i < 21; i++)
        ck_assert_close(y3[i], y[i], 1e-6);
    for (size_t i = 0; i < n; i++) {
        ck_assert_tl_ok(tl_model_predict(y1, 3, m, x + i * in, 1, 1));
        for (int k = 0; k < 3; k++)
            ck_assert_close(y1[k], y[i * 3 + k], 1e-6);
    }
    free(x);
    tl_model_free(m);
}
END_TEST

START_TEST(threads)
{
    tl_model *m = new_model(4, 4, 1);
    ck_assert_uint_eq(tl_model_threads(m), 1);
    ck_assert_tl_ok(tl_model_set_threads(m, 2));
    ck_assert_uint_eq(tl_model_threads(m), 2);
    ck_assert_tl_ok(tl_model_set_threads(m, 0));
    ck_assert_uint_ge(tl_model_threads(m), 1);
    ck_assert_tl_err(tl_model_set_threads(m, 1025), TL_EINVAL, "1025 threads");
    ck_assert_tl_err(tl_model_set_threads(NULL, 1), TL_EINVAL, "NULL");
    ck_assert_uint_eq(tl_model_threads(NULL), 0);
    tl_model *d;
    ck_assert_tl_ok(tl_model_create(&d, 4, 4, 1, 0));
    ck_assert_uint_ge(tl_model_threads(d), 1); /* default: the machine's CPUs */
    tl_model_free(d);
    tl_model_free(m);
    ck_assert_ptr_nonnull(strstr(tl_backend_info(), "BLIS"));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("model");
    TCase *tc = tcase_create("model");
    tcase_add_test(tc, create_and_free);
    tcase_add_test(tc, keras_automatic_names);
    tcase_add_test(tc, custom_names_and_errors);
    tcase_add_test(tc, lookup);
    tcase_add_test(tc, shape_errors_name_layer_and_shapes);
    tcase_add_test(tc, param_counts);
    tcase_add_test(tc, summary_contents_and_buffer_contract);
    tcase_add_test(tc, get_and_set_weights);
    tcase_add_test(tc, pop_layers);
    tcase_add_test(tc, init_params_is_deterministic_glorot);
    tcase_add_test(tc, options_init_and_versions);
    tcase_add_test(tc, predict_shapes_and_chunks);
    tcase_add_test(tc, threads);
    suite_add_tcase(s, tc);
    return th_run(s);
}
