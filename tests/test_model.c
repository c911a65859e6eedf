/* test_model.c - building models through the public API: creation, Keras
 * automatic names and custom names, look-up, shape inference and its
 * errors (status and message), parameter counts, the summary and its
 * buffer contract, weight access, removing layers, deterministic
 * initialisation, option versions, prediction errors, threads; the
 * initializers (tl_initializer): each one's law, the default's bits, bad
 * values, a checkpoint round trip. */
#include <stdio.h>
#include <unistd.h>

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

/* ---- initializers ----------------------------------------------------------------------- */

/* What an initializer draws for a tensor with fans (fan_in, fan_out). */
typedef enum draw_family { FAM_CONST, FAM_UNIFORM, FAM_TRUNCATED, FAM_NORMAL } draw_family;
typedef struct draw_law {
    draw_family family;
    double value; /* FAM_CONST: the value; FAM_UNIFORM: the limit a of U(-a, a); others: the stddev */
} draw_law;

static draw_law law_of(tl_initializer init, int is_bias, double fan_in, double fan_out)
{
    switch (init) {
    case TL_INIT_DEFAULT:
        return is_bias ? (draw_law){FAM_CONST, 0.0} : law_of(TL_INIT_GLOROT_UNIFORM, 0, fan_in, fan_out);
    case TL_INIT_ZEROS: return (draw_law){FAM_CONST, 0.0};
    case TL_INIT_ONES: return (draw_law){FAM_CONST, 1.0};
    case TL_INIT_GLOROT_UNIFORM: return (draw_law){FAM_UNIFORM, sqrt(6.0 / (fan_in + fan_out))};
    case TL_INIT_GLOROT_TRUNCATED_NORMAL: return (draw_law){FAM_TRUNCATED, sqrt(2.0 / (fan_in + fan_out))};
    case TL_INIT_HE_UNIFORM: return (draw_law){FAM_UNIFORM, sqrt(6.0 / fan_in)};
    case TL_INIT_HE_TRUNCATED_NORMAL: return (draw_law){FAM_TRUNCATED, sqrt(2.0 / fan_in)};
    case TL_INIT_HE_NORMAL_FAN_OUT: return (draw_law){FAM_NORMAL, sqrt(2.0 / fan_out)};
    case TL_INIT_UNIFORM_INV_SQRT_FAN_IN: return (draw_law){FAM_UNIFORM, 1.0 / sqrt(fan_in)};
    case TL_INIT_NORMAL_STDDEV_0_01: return (draw_law){FAM_NORMAL, 0.01};
    }
    ck_abort_msg("unknown initializer %d", (int)init);
    return (draw_law){FAM_CONST, 0.0};
}

/* Check tensor `index` of `l` against the law of `init` with the given fans.
 *
 * The tolerances are statistical, for n independent draws, each set at six
 * standard errors (a chance below 2e-9 that a correct draw fails a check,
 * for any seed; the draws here are fixed, so the test never flakes):
 * - mean: its standard error is sd / sqrt(n);
 * - standard deviation s: var(s^2) = sd^4 (kurtosis - 1) / n, so s / sd
 *   has a standard error of sqrt((kurtosis - 1) / (4 n)); the kurtosis is
 *   1.8 for a uniform, 2.4 for the normal cut at +-2, 3 for a normal: 3
 *   bounds them all, 1 / sqrt(2 n);
 * - uniform U(-a, a): |w| <= a, and max |w| >= a (1 - 30 / n), which fails
 *   with probability (1 - 30 / n)^n < e^-30;
 * - truncated normal: |w| < 2 sd / 0.8796 (the cut), and the largest is
 *   within 133 / n of the cut (the density of |z| at the cut, 0.226 per
 *   unit of the cut, puts 30 draws there on average);
 * - normal (not truncated): the fraction beyond 2 sd is 0.0455 within six
 *   binomial standard errors (the truncated law has 0.0347 there), and
 *   some |w| exceed 2.3 sd, past where a truncated draw could reach (when
 *   n * P(|z| > 2.3) = 0.0214 n is at least 30). */
static void expect_law(const tl_layer *l, size_t index, tl_initializer init, double fan_in, double fan_out,
                       const char *what)
{
    tl_param_info info;
    ck_assert_tl_ok(tl_layer_param_info(&info, l, index));
    const size_t n = info.count;
    float *w = malloc(n * sizeof *w);
    ck_assert_ptr_nonnull(w);
    ck_assert_tl_ok(tl_layer_get_weights(w, n, l, index));
    const draw_law law = law_of(init, index == 1, fan_in, fan_out);
    if (law.family == FAM_CONST) {
        for (size_t j = 0; j < n; j++)
            ck_assert_msg(w[j] == (float)law.value, "%s: value %zu is %g, not %g", what, j, (double)w[j], law.value);
        free(w);
        return;
    }
    double sum = 0.0, sq = 0.0, mx = 0.0;
    size_t beyond2 = 0;
    const double sd = law.family == FAM_UNIFORM ? law.value / sqrt(3.0) : law.value;
    for (size_t j = 0; j < n; j++) {
        sum += w[j];
        mx = fmax(mx, fabs(w[j]));
        beyond2 += fabs(w[j]) > 2.0 * sd;
    }
    const double mean = sum / (double)n;
    for (size_t j = 0; j < n; j++)
        sq += (w[j] - mean) * (w[j] - mean);
    const double s = sqrt(sq / (double)(n - 1)), dn = (double)n;
    if (getenv("TL_TEST_VERBOSE"))
        printf("%-28s n %6zu  mean %+.3e (tol %.1e)  sd %.5e / %.5e = %.4f (tol %.4f)  max|w| %.4e\n", what, n,
               mean, 6.0 * sd / sqrt(dn), s, sd, s / sd, 6.0 / sqrt(2.0 * dn), mx);
    ck_assert_msg(fabs(mean) <= 6.0 * sd / sqrt(dn), "%s: mean %g, sd %g, n %zu", what, mean, sd, n);
    ck_assert_msg(fabs(s / sd - 1.0) <= 6.0 / sqrt(2.0 * dn), "%s: sd %g, expected %g (n %zu)", what, s, sd, n);
    if (law.family == FAM_UNIFORM) {
        ck_assert_msg(mx <= law.value * (1.0 + 1e-6), "%s: |w| %g above the limit %g", what, mx, law.value);
        ck_assert_msg(mx >= law.value * (1.0 - 30.0 / dn), "%s: largest |w| %g, limit %g", what, mx, law.value);
    } else if (law.family == FAM_TRUNCATED) {
        const double cut = 2.0 * sd / 0.87962566103423978;
        ck_assert_msg(mx < cut * (1.0 + 1e-6), "%s: |w| %g beyond the cut %g", what, mx, cut);
        ck_assert_msg(mx >= cut * (1.0 - 133.0 / dn), "%s: largest |w| %g, cut %g", what, mx, cut);
    } else {
        const double p = 0.0455002638963584, frac = (double)beyond2 / dn;
        ck_assert_msg(fabs(frac - p) <= 6.0 * sqrt(p * (1.0 - p) / dn), "%s: %g of the draws beyond 2 sd", what,
                      frac);
        if (0.0214 * dn >= 30.0)
            ck_assert_msg(mx > 2.3 * sd, "%s: largest |w| %g is only %g sd: truncated?", what, mx, mx / sd);
    }
    free(w);
}

static tl_conv2d_options conv_init_opts(uint32_t filters, uint32_t k, uint32_t groups, tl_initializer init)
{
    tl_conv2d_options o = conv_opts(filters);
    o.kernel_h = o.kernel_w = k;
    o.groups = groups;
    o.kernel_initializer = init;
    o.bias_initializer = init;
    return o;
}

/* Every initializer (the loop index) on a conv2d kernel, a grouped and a
 * depthwise one, a dense kernel, and their biases (which take the fans of
 * their kernel). */
START_TEST(initializers_draw_their_law)
{
    const tl_initializer init = (tl_initializer)_i;
    char what[64];
    /* conv2d 3x3, 64 -> 128: kernel (3, 3, 64, 128), 73,728 values, fan_in
     * 576, fan_out 1152. */
    tl_model *m = new_model(6, 6, 64);
    tl_conv2d_options co = conv_init_opts(128, 3, 1, init);
    tl_layer *l;
    ck_assert_tl_ok(tl_model_add_conv2d(&l, m, &co));
    snprintf(what, sizeof what, "conv2d kernel, init %d", (int)init);
    expect_law(l, 0, init, 576, 1152, what);
    snprintf(what, sizeof what, "conv2d bias, init %d", (int)init);
    expect_law(l, 1, init, 576, 1152, what);
    tl_model_free(m);
    /* Grouped, 4 groups: kernel (3, 3, 16, 128), fan_in 3 * 3 * 64 / 4 = 144,
     * fan_out 3 * 3 * 128 = 1152. */
    m = new_model(6, 6, 64);
    co = conv_init_opts(128, 3, 4, init);
    ck_assert_tl_ok(tl_model_add_conv2d(&l, m, &co));
    snprintf(what, sizeof what, "grouped kernel, init %d", (int)init);
    expect_law(l, 0, init, 144, 1152, what);
    tl_model_free(m);
    /* Depthwise 5x5, 256 channels, multiplier 4: kernel (5, 5, 1, 1024),
     * 25,600 values, fan_in 5 * 5 = 25, fan_out 5 * 5 * 1024 = 25,600
     * (PyTorch's fans of its (1024, 1, 5, 5) weight). */
    m = new_model(8, 8, 256);
    co = conv_init_opts(1024, 5, 256, init);
    co.use_bias = 0;
    ck_assert_tl_ok(tl_model_add_conv2d(&l, m, &co));
    snprintf(what, sizeof what, "depthwise kernel, init %d", (int)init);
    expect_law(l, 0, init, 25, 25600, what);
    tl_model_free(m);
    /* dense 512 -> 256: kernel (512, 256), 131,072 values. */
    m = new_model(1, 1, 512);
    ck_assert_tl_ok(tl_model_add_flatten(NULL, m, NULL));
    tl_dense_options d = TL_DENSE_OPTIONS_INIT;
    d.units = 256;
    d.kernel_initializer = d.bias_initializer = init;
    ck_assert_tl_ok(tl_model_add_dense(&l, m, &d));
    snprintf(what, sizeof what, "dense kernel, init %d", (int)init);
    expect_law(l, 0, init, 512, 256, what);
    snprintf(what, sizeof what, "dense bias, init %d", (int)init);
    expect_law(l, 1, init, 512, 256, what);
    tl_model_free(m);
}
END_TEST

/* FNV-1a over the bits of every parameter of a model. */
static uint64_t params_hash(const tl_model *m)
{
    size_t n;
    float *v = th_all_params(m, &n);
    ck_assert_ptr_nonnull(v);
    uint64_t h = 1469598103934665603ull;
    const unsigned char *b = (const unsigned char *)v;
    for (size_t k = 0; k < n * sizeof *v; k++) {
        h ^= b[k];
        h *= 1099511628211ull;
    }
    free(v);
    return h;
}

/* Whether two models have the same parameter values, bit for bit. */
static int same_params(const tl_model *a, const tl_model *b)
{
    size_t na, nb;
    float *va = th_all_params(a, &na), *vb = th_all_params(b, &nb);
    int same = na == nb && memcmp(va, vb, na * sizeof *va) == 0;
    free(va), free(vb);
    return same;
}

/* conv2d(32, relu) - conv2d(64, 5x5, 32 groups, relu) - flatten - dense(10),
 * seed 77, kernels drawn with `init` and biases with zeros (TL_INIT_DEFAULT:
 * both defaults). init < 0: the options as an older caller fills them -
 * the first conv2d's a version 2 struct, the dense layer's a version 1
 * struct, the bytes past their versions garbage (the grouped conv2d needs
 * version 3, with its defaults). */
static tl_model *default_draw_model(int init)
{
    tl_model *m;
    ck_assert_tl_ok(tl_model_create(&m, 16, 16, 3, 77));
    tl_conv2d_options c, g = TL_CONV2D_OPTIONS_INIT;
    tl_dense_options d;
    memset(&c, 0xff, sizeof c);
    memset(&d, 0xff, sizeof d);
    ck_assert_tl_ok(tl_conv2d_options_init(&c, init < 0 ? 2 : TL_CONV2D_OPTIONS_VERSION));
    ck_assert_tl_ok(tl_dense_options_init(&d, init < 0 ? 1 : TL_DENSE_OPTIONS_VERSION));
    if (init >= 0) {
        c.kernel_initializer = g.kernel_initializer = d.kernel_initializer = (tl_initializer)init;
        c.bias_initializer = g.bias_initializer = d.bias_initializer =
            init == TL_INIT_DEFAULT ? TL_INIT_DEFAULT : TL_INIT_ZEROS;
    }
    c.filters = 32;
    c.activation = TL_ACT_RELU;
    ck_assert_tl_ok(tl_model_add_conv2d(NULL, m, &c));
    g.filters = 64;
    g.kernel_h = g.kernel_w = 5;
    g.groups = 32;
    g.activation = TL_ACT_RELU;
    ck_assert_tl_ok(tl_model_add_conv2d(NULL, m, &g));
    ck_assert_tl_ok(tl_model_add_flatten(NULL, m, NULL));
    d.units = 10;
    ck_assert_tl_ok(tl_model_add_dense(NULL, m, &d));
    return m;
}

/* The default draws are libtl 1.0's, bit for bit: the hash below was taken
 * from this model built by the library before initializers were options
 * (commit c46be0d), whose Glorot-uniform draw is 1.0.0's. TL_INIT_DEFAULT,
 * an explicit Glorot-uniform kernel with zero bias, and option structs of
 * older versions all give those bits. */
START_TEST(initializer_default_is_unchanged)
{
    const uint64_t before = 0xc83e391d0476f67eull; /* 66,570 values */
    tl_model *def = default_draw_model(TL_INIT_DEFAULT), *glorot = default_draw_model(TL_INIT_GLOROT_UNIFORM),
             *old = default_draw_model(-1);
    ck_assert_uint_eq(tl_model_param_count(def), 66570);
    ck_assert_msg(params_hash(def) == before, "default draws changed: %016llx",
                  (unsigned long long)params_hash(def));
    ck_assert(params_hash(glorot) == before);
    ck_assert(params_hash(old) == before);
    tl_model_free(def), tl_model_free(glorot), tl_model_free(old);
}
END_TEST

START_TEST(initializer_bad_values)
{
    tl_model *m = new_model(6, 6, 4);
    tl_conv2d_options co = conv_opts(8);
    co.kernel_initializer = (tl_initializer)10;
    ck_assert_tl_err(tl_model_add_conv2d(NULL, m, &co), TL_EINVAL, "unknown kernel_initializer 10");
    co.kernel_initializer = TL_INIT_DEFAULT;
    co.bias_initializer = (tl_initializer)-1;
    ck_assert_tl_err(tl_model_add_conv2d(NULL, m, &co), TL_EINVAL, "unknown bias_initializer 4294967295");
    /* Checked also without a bias, which would not use it. */
    co.use_bias = 0;
    ck_assert_tl_err(tl_model_add_conv2d(NULL, m, &co), TL_EINVAL, "'conv2d' (conv2d, index 0): unknown bias_init");
    ck_assert_uint_eq(tl_model_num_layers(m), 0);
    ck_assert_tl_ok(tl_model_add_flatten(NULL, m, NULL));
    tl_dense_options d = TL_DENSE_OPTIONS_INIT;
    d.units = 3;
    d.name = "head";
    d.kernel_initializer = (tl_initializer)99;
    ck_assert_tl_err(tl_model_add_dense(NULL, m, &d), TL_EINVAL, "layer 'head' (dense, index 1): unknown "
                                                                  "kernel_initializer 99");
    d.kernel_initializer = TL_INIT_NORMAL_STDDEV_0_01;
    d.bias_initializer = (tl_initializer)(TL_INIT_NORMAL_STDDEV_0_01 + 1);
    ck_assert_tl_err(tl_model_add_dense(NULL, m, &d), TL_EINVAL, "unknown bias_initializer 10");
    ck_assert_uint_eq(tl_model_num_layers(m), 1);
    d.bias_initializer = TL_INIT_ONES;
    ck_assert_tl_ok(tl_model_add_dense(NULL, m, &d));
    tl_model_free(m);
}
END_TEST

/* The choice is a setting of the layer: a checkpoint keeps it (the file is
 * then format 1.1; a model with the defaults is still written as 1.0), the
 * file's description names it, and the loaded model draws with it again
 * (tl_model_init_params, tl_model_clone_structure). */
START_TEST(initializer_checkpoint_round_trip)
{
    char dir[] = "/tmp/tl-init-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char path[64], path0[64];
    snprintf(path, sizeof path, "%s/m.tlm", dir);
    snprintf(path0, sizeof path0, "%s/d.tlm", dir);

    tl_model *m = new_model(8, 8, 16);
    tl_conv2d_options co = conv_opts(64);
    co.padding = TL_PAD_SAME;
    co.kernel_initializer = TL_INIT_HE_NORMAL_FAN_OUT;
    co.bias_initializer = TL_INIT_UNIFORM_INV_SQRT_FAN_IN;
    co.name = "conv";
    ck_assert_tl_ok(tl_model_add_conv2d(NULL, m, &co));
    ck_assert_tl_ok(tl_model_add_flatten(NULL, m, NULL));
    tl_dense_options d = TL_DENSE_OPTIONS_INIT;
    d.units = 8;
    d.kernel_initializer = TL_INIT_GLOROT_TRUNCATED_NORMAL;
    d.bias_initializer = TL_INIT_ONES;
    d.name = "head";
    ck_assert_tl_ok(tl_model_add_dense(NULL, m, &d));
    ck_assert_tl_ok(tl_model_save(m, path, NULL));

    tl_checkpoint_info *info;
    ck_assert_tl_ok(tl_checkpoint_info_read(&info, path));
    uint32_t major, minor;
    ck_assert_tl_ok(tl_checkpoint_info_format_version(&major, &minor, info));
    ck_assert_uint_eq(minor, 1);
    char text[512];
    ck_assert_tl_ok(tl_checkpoint_info_layer_settings(text, sizeof text, NULL, info, 0));
    ck_assert_ptr_nonnull(strstr(text, "kernel_initializer=he_normal_fan_out, bias_initializer=uniform_inv_sqrt_fan_in"));
    ck_assert_tl_ok(tl_checkpoint_info_layer_settings(text, sizeof text, NULL, info, 2));
    ck_assert_str_eq(text, "units=8, kernel_initializer=glorot_truncated_normal, bias_initializer=ones, "
                           "activation_alpha=0.01");
    tl_conv2d_options ci;
    ck_assert_tl_ok(tl_conv2d_options_init(&ci, TL_CONV2D_OPTIONS_VERSION));
    ck_assert_tl_ok(tl_checkpoint_info_layer_conv2d(&ci, info, 0));
    ck_assert(ci.kernel_initializer == TL_INIT_HE_NORMAL_FAN_OUT &&
              ci.bias_initializer == TL_INIT_UNIFORM_INV_SQRT_FAN_IN);
    tl_dense_options di;
    ck_assert_tl_ok(tl_dense_options_init(&di, TL_DENSE_OPTIONS_VERSION));
    ck_assert_tl_ok(tl_checkpoint_info_layer_dense(&di, info, 2));
    ck_assert(di.kernel_initializer == TL_INIT_GLOROT_TRUNCATED_NORMAL && di.bias_initializer == TL_INIT_ONES);
    /* An older caller's struct (dense version 1) is not written past its end. */
    memset(&di, 0xab, sizeof di);
    di.version = 1;
    ck_assert_tl_ok(tl_checkpoint_info_layer_dense(&di, info, 2));
    ck_assert(di.units == 8 && (unsigned)di.kernel_initializer == 0xababababu);
    tl_checkpoint_info_free(info);

    tl_model *r;
    ck_assert_tl_ok(tl_model_load(&r, path));
    ck_assert(same_params(m, r));
    /* Re-drawn from another seed: new values, the same laws. Kernel fans:
     * conv 3 * 3 * 16 = 144 and 3 * 3 * 64 = 576; dense 4096 and 8. */
    for (int round = 0; round < 2; round++) {
        tl_model *x = r;
        if (round == 0) {
            ck_assert_tl_ok(tl_model_init_params(r, 1234));
        } else {
            tl_clone_options o = TL_CLONE_OPTIONS_INIT;
            o.seed = 99;
            ck_assert_tl_ok(tl_model_clone_structure(&x, r, &o));
        }
        ck_assert(!same_params(m, x));
        tl_layer *l;
        ck_assert_tl_ok(tl_model_layer(&l, x, 0));
        expect_law(l, 0, TL_INIT_HE_NORMAL_FAN_OUT, 144, 576, round ? "clone: conv kernel" : "redrawn: conv kernel");
        expect_law(l, 1, TL_INIT_UNIFORM_INV_SQRT_FAN_IN, 144, 576, round ? "clone: conv bias" : "redrawn: conv bias");
        ck_assert_tl_ok(tl_model_layer(&l, x, 2));
        expect_law(l, 0, TL_INIT_GLOROT_TRUNCATED_NORMAL, 4096, 8, round ? "clone: dense kernel" : "redrawn: dense kernel");
        expect_law(l, 1, TL_INIT_ONES, 4096, 8, round ? "clone: dense bias" : "redrawn: dense bias");
        if (x != r)
            tl_model_free(x);
    }

    /* The same model with the default initializers fits format 1.0. */
    tl_model *z = new_model(8, 8, 16);
    co.kernel_initializer = co.bias_initializer = TL_INIT_DEFAULT;
    d.kernel_initializer = d.bias_initializer = TL_INIT_DEFAULT;
    ck_assert_tl_ok(tl_model_add_conv2d(NULL, z, &co));
    ck_assert_tl_ok(tl_model_add_flatten(NULL, z, NULL));
    ck_assert_tl_ok(tl_model_add_dense(NULL, z, &d));
    ck_assert_tl_ok(tl_model_save(z, path0, NULL));
    ck_assert_tl_ok(tl_checkpoint_info_read(&info, path0));
    ck_assert_tl_ok(tl_checkpoint_info_format_version(&major, &minor, info));
    ck_assert_uint_eq(minor, 0);
    ck_assert_tl_ok(tl_checkpoint_info_layer_settings(text, sizeof text, NULL, info, 2));
    ck_assert_str_eq(text, "units=8, kernel_initializer=default, bias_initializer=default, "
                           "activation_alpha=0.01");
    tl_checkpoint_info_free(info);

    remove(path), remove(path0), rmdir(dir);
    tl_model_free(m), tl_model_free(r), tl_model_free(z);
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
    TCase *ti = tcase_create("initializers");
    tcase_add_loop_test(ti, initializers_draw_their_law, TL_INIT_DEFAULT, TL_INIT_NORMAL_STDDEV_0_01 + 1);
    tcase_add_test(ti, initializer_default_is_unchanged);
    tcase_add_test(ti, initializer_bad_values);
    tcase_add_test(ti, initializer_checkpoint_round_trip);
    suite_add_tcase(s, ti);
    return th_run(s);
}
