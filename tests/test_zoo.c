/* test_zoo.c - the zoo's backbones (tl/zoo.h) through the public API:
 * trainable parameter counts equal torchvision's for the same
 * configuration, layers carry torchvision's state-dict names, output
 * shapes (with and without a head), a forward pass of every model gives
 * finite probabilities, ResNet-20 learns a fixed batch and the spot task
 * (1 and 2 threads) and round-trips through a PyTorch-layout safetensors
 * file, files of another class count, depth or width are refused naming
 * the first tensor that differs (or loaded in part, leniently), and bad
 * options are refused with the function's name, leaving *out NULL; the
 * weights are drawn as torchvision draws them. tl_layer_flops counts
 * ResNet-20's multiply-adds as by hand, per layer kind. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"

static tl_zoo_options zopts(uint32_t classes, uint32_t h, uint32_t w)
{
    tl_zoo_options o = TL_ZOO_OPTIONS_INIT;
    o.num_classes = classes;
    o.input_h = h;
    o.input_w = w;
    return o;
}

static void assert_layer(const tl_model *m, const char *name, tl_layer_kind kind)
{
    tl_layer *l = NULL;
    ck_assert_tl_ok(tl_model_layer_by_name(&l, m, name));
    ck_assert_msg(tl_layer_get_kind(l) == kind, "%s is a %s", name, tl_layer_kind_str(tl_layer_get_kind(l)));
}

static void assert_output(const tl_model *m, uint32_t units)
{
    tl_shape s;
    ck_assert_tl_ok(tl_model_output_shape(&s, m));
    ck_assert_uint_eq(s.rank, 1);
    ck_assert_uint_eq(s.dims[0], units);
}

/* Counts by hand, from the architecture built:
 * ResNet-20, 10 classes (projection shortcuts, convs without bias, BN's
 * gamma and beta trainable, its moving statistics not):
 *   conv1 3*3*3*16 = 432, bn1 2*16 = 32
 *   layer1: 3 blocks x (2 x 3*3*16*16 + 2 x 32) = 3 x 4672 = 14016
 *   layer2.0: 3*3*16*32 + 64 + 3*3*32*32 + 64 + 1*1*16*32 + 64 = 14528,
 *   layer2.1/2: 2 x (2 x 9216 + 2 x 64) = 37120; layer2 = 51648
 *   layer3.0: 3*3*32*64 + 128 + 3*3*64*64 + 128 + 32*64 + 128 = 57728,
 *   layer3.1/2: 2 x (2 x 36864 + 2 x 128) = 147968; layer3 = 205696
 *   fc 64*10 + 10 = 650
 *   total 432 + 32 + 14016 + 51648 + 205696 + 650 = 272,474
 *   (He's option A, zero-padding identity shortcuts: 272,474 - 2,752 = 269,722.)
 * torchvision: resnet18() 11,689,512, resnet34() 21,797,672,
 * mobilenet_v2() 3,504,872 (sum of p.numel() over parameters()). */
START_TEST(test_param_counts)
{
    tl_model *m = NULL;
    tl_zoo_options o = zopts(10, 32, 32);
    ck_assert_tl_ok(tl_zoo_resnet_cifar(&m, 20, &o));
    ck_assert_uint_eq(tl_model_trainable_param_count(m), 272474);
    /* the BN moving statistics are parameters, but not trainable ones */
    /* 16 + 6*16 + (6+1)*32 + (6+1)*64 = 784 BN channels: 2 x 784 = 1568 more */
    ck_assert_uint_eq(tl_model_param_count(m), 272474 + 1568);
    tl_model_free(m);

    o = zopts(1000, 224, 224);
    ck_assert_tl_ok(tl_zoo_resnet(&m, 18, &o));
    ck_assert_uint_eq(tl_model_trainable_param_count(m), 11689512);
    ck_assert_uint_gt(tl_model_param_count(m), 11689512);
    tl_model_free(m);

    ck_assert_tl_ok(tl_zoo_resnet(&m, 34, &o));
    ck_assert_uint_eq(tl_model_trainable_param_count(m), 21797672);
    tl_model_free(m);

    ck_assert_tl_ok(tl_zoo_mobilenet_v2(&m, &o));
    ck_assert_uint_eq(tl_model_trainable_param_count(m), 3504872);
    tl_model_free(m);
}
END_TEST

/* ResNet-20 on 32x32x3, multiply-adds by hand: conv1 32*32*16*27; layer1
 * 6 x 32*32*16*144; layer2 16*16*32*144 + 5 x 16*16*32*288 + the 1x1
 * downsample 16*16*32*16; layer3 8*8*64*288 + 5 x 8*8*64*576 + 8*8*64*32;
 * fc 64*10: 40,813,184 multiply-adds, 2 FLOPs each. */
START_TEST(test_flops)
{
    tl_model *m;
    ck_assert_tl_ok(tl_zoo_resnet_cifar(&m, 20, NULL));
    double fwd = 0.0, dx = 0.0, dw = 0.0;
    for (size_t i = 0; i < tl_model_num_layers(m); i++) {
        tl_layer *l;
        double f, a, b;
        ck_assert_tl_ok(tl_model_layer(&l, m, i));
        ck_assert_tl_ok(tl_layer_flops(&f, &a, &b, l));
        const tl_layer_kind k = tl_layer_get_kind(l);
        if (k != TL_LAYER_CONV2D && k != TL_LAYER_DENSE) /* element-wise kinds count nothing */
            ck_assert(f == 0.0 && a == 0.0 && b == 0.0);
        if (strcmp(tl_layer_name(l), "conv1") == 0)
            ck_assert(f == 2.0 * 32 * 32 * 16 * 27);
        if (strcmp(tl_layer_name(l), "layer3.0.downsample.0") == 0)
            ck_assert(f == 2.0 * 8 * 8 * 64 * 32 && a == f && b == f);
        if (strcmp(tl_layer_name(l), "fc") == 0)
            ck_assert(f == 2.0 * 64 * 10);
        fwd += f, dx += a, dw += b;
    }
    ck_assert(fwd == 2.0 * 40813184.0);
    ck_assert(dx == fwd && dw == fwd);
    /* A depthwise convolution counts k_h * k_w per output value. */
    tl_model *d;
    ck_assert_tl_ok(tl_model_create(&d, 8, 8, 24, 1));
    tl_conv2d_options o = TL_CONV2D_OPTIONS_INIT;
    o.filters = 24;
    o.groups = 24;
    o.padding = TL_PAD_SAME;
    tl_layer *l;
    ck_assert_tl_ok(tl_model_add_conv2d(&l, d, &o));
    double f, a, b;
    ck_assert_tl_ok(tl_layer_flops(&f, &a, &b, l));
    ck_assert(f == 2.0 * 8 * 8 * 24 * 9);
    ck_assert_tl_err(tl_layer_flops(NULL, &a, &b, l), TL_EINVAL, "tl_layer_flops: out_forward is NULL");
    ck_assert_tl_err(tl_layer_flops(&f, &a, &b, NULL), TL_EINVAL, "tl_layer_flops: layer is NULL");
    tl_model_free(d);
    tl_model_free(m);
}
END_TEST

START_TEST(test_names)
{
    tl_model *m = NULL;
    tl_zoo_options o = zopts(10, 64, 64);
    ck_assert_tl_ok(tl_zoo_resnet(&m, 18, &o));
    assert_layer(m, "conv1", TL_LAYER_CONV2D);
    assert_layer(m, "bn1", TL_LAYER_BATCHNORM);
    assert_layer(m, "maxpool", TL_LAYER_MAXPOOL2D);
    assert_layer(m, "layer1.0.conv1", TL_LAYER_CONV2D);
    assert_layer(m, "layer1.0.bn1", TL_LAYER_BATCHNORM);
    assert_layer(m, "layer1.1.conv2", TL_LAYER_CONV2D);
    assert_layer(m, "layer1.1.bn2", TL_LAYER_BATCHNORM);
    assert_layer(m, "layer2.0.downsample.0", TL_LAYER_CONV2D);
    assert_layer(m, "layer2.0.downsample.1", TL_LAYER_BATCHNORM);
    assert_layer(m, "layer4.1.bn2", TL_LAYER_BATCHNORM);
    assert_layer(m, "avgpool", TL_LAYER_GLOBAL_AVGPOOL2D);
    assert_layer(m, "fc", TL_LAYER_DENSE);
    tl_layer *l = NULL;
    ck_assert_int_eq(tl_model_layer_by_name(&l, m, "layer1.0.downsample.0"), TL_ENOTFOUND);
    ck_assert_int_eq(tl_model_layer_by_name(&l, m, "layer4.2.conv1"), TL_ENOTFOUND);
    /* downsample conv: 1x1, stride 2, no bias: one tensor (64 -> 128) */
    ck_assert_tl_ok(tl_model_layer_by_name(&l, m, "layer2.0.downsample.0"));
    ck_assert_uint_eq(tl_layer_num_params(l), 1);
    ck_assert_uint_eq(tl_layer_param_count(l), 64 * 128);
    tl_model_free(m);

    ck_assert_tl_ok(tl_zoo_resnet(&m, 34, &o));
    assert_layer(m, "layer3.5.bn2", TL_LAYER_BATCHNORM);
    ck_assert_int_eq(tl_model_layer_by_name(&l, m, "layer3.6.conv1"), TL_ENOTFOUND);
    tl_model_free(m);

    o = zopts(10, 32, 32);
    ck_assert_tl_ok(tl_zoo_resnet_cifar(&m, 20, &o));
    assert_layer(m, "conv1", TL_LAYER_CONV2D);
    assert_layer(m, "layer1.2.bn2", TL_LAYER_BATCHNORM);
    assert_layer(m, "layer2.0.downsample.0", TL_LAYER_CONV2D);
    assert_layer(m, "layer3.0.downsample.1", TL_LAYER_BATCHNORM);
    assert_layer(m, "layer3.2.relu2", TL_LAYER_ACTIVATION);
    assert_layer(m, "layer1.0.add", TL_LAYER_ADD);
    assert_layer(m, "fc", TL_LAYER_DENSE);
    ck_assert_int_eq(tl_model_layer_by_name(&l, m, "layer1.0.downsample.0"), TL_ENOTFOUND);
    ck_assert_int_eq(tl_model_layer_by_name(&l, m, "layer4.0.conv1"), TL_ENOTFOUND);
    tl_model_free(m);
    ck_assert_tl_ok(tl_zoo_resnet_cifar(&m, 56, &o));
    assert_layer(m, "layer3.8.bn2", TL_LAYER_BATCHNORM);
    tl_model_free(m);

    ck_assert_tl_ok(tl_zoo_mobilenet_v2(&m, &o));
    assert_layer(m, "features.0.0", TL_LAYER_CONV2D);
    assert_layer(m, "features.0.1", TL_LAYER_BATCHNORM);
    assert_layer(m, "features.1.conv.0.0", TL_LAYER_CONV2D); /* depthwise */
    assert_layer(m, "features.1.conv.0.1", TL_LAYER_BATCHNORM);
    assert_layer(m, "features.1.conv.1", TL_LAYER_CONV2D);
    assert_layer(m, "features.1.conv.2", TL_LAYER_BATCHNORM);
    assert_layer(m, "features.2.conv.0.0", TL_LAYER_CONV2D); /* expand */
    assert_layer(m, "features.2.conv.1.0", TL_LAYER_CONV2D); /* depthwise */
    assert_layer(m, "features.2.conv.1.1", TL_LAYER_BATCHNORM);
    assert_layer(m, "features.2.conv.2", TL_LAYER_CONV2D);
    assert_layer(m, "features.2.conv.3", TL_LAYER_BATCHNORM);
    assert_layer(m, "features.3.add", TL_LAYER_ADD);
    assert_layer(m, "features.17.conv.3", TL_LAYER_BATCHNORM);
    assert_layer(m, "features.18.0", TL_LAYER_CONV2D);
    assert_layer(m, "features.18.1", TL_LAYER_BATCHNORM);
    assert_layer(m, "classifier.0", TL_LAYER_DROPOUT);
    assert_layer(m, "classifier.1", TL_LAYER_DENSE);
    ck_assert_int_eq(tl_model_layer_by_name(&l, m, "features.2.add"), TL_ENOTFOUND); /* 16 -> 24 */
    ck_assert_int_eq(tl_model_layer_by_name(&l, m, "features.14.add"), TL_ENOTFOUND); /* stride 2 */
    ck_assert_int_eq(tl_model_layer_by_name(&l, m, "features.17.add"), TL_ENOTFOUND); /* 160 -> 320 */
    /* the depthwise conv of block 2: 3x3 over 96 = 16 * 6 channels, groups 96 */
    ck_assert_tl_ok(tl_model_layer_by_name(&l, m, "features.2.conv.1.0"));
    ck_assert_uint_eq(tl_layer_param_count(l), 3 * 3 * 96);
    tl_model_free(m);

    /* a negative dropout: no classifier.0, the dense head keeps its name */
    o.dropout = -1.0f;
    ck_assert_tl_ok(tl_zoo_mobilenet_v2(&m, &o));
    ck_assert_int_eq(tl_model_layer_by_name(&l, m, "classifier.0"), TL_ENOTFOUND);
    assert_layer(m, "classifier.1", TL_LAYER_DENSE);
    tl_model_free(m);
}
END_TEST

START_TEST(test_shapes)
{
    tl_model *m = NULL;
    tl_shape s;
    tl_layer *l = NULL;
    tl_zoo_options o = zopts(0, 32, 32);
    ck_assert_tl_ok(tl_zoo_resnet_cifar(&m, 32, &o));
    assert_output(m, 64);
    ck_assert_tl_ok(tl_model_layer(&l, m, tl_model_num_layers(m) - 1));
    ck_assert_str_eq(tl_layer_name(l), "avgpool");
    ck_assert_tl_ok(tl_model_layer_by_name(&l, m, "layer3.4.relu2"));
    ck_assert_tl_ok(tl_layer_output_shape(&s, l));
    ck_assert_uint_eq(s.dims[0], 8);
    ck_assert_uint_eq(s.dims[1], 8);
    ck_assert_uint_eq(s.dims[2], 64);
    tl_model_free(m);

    o = zopts(0, 64, 64);
    ck_assert_tl_ok(tl_zoo_resnet(&m, 18, &o));
    assert_output(m, 512);
    ck_assert_tl_ok(tl_model_layer_by_name(&l, m, "maxpool"));
    ck_assert_tl_ok(tl_layer_output_shape(&s, l));
    ck_assert_uint_eq(s.dims[0], 16);
    ck_assert_uint_eq(s.dims[1], 16);
    ck_assert_tl_ok(tl_model_layer_by_name(&l, m, "layer4.1.relu2"));
    ck_assert_tl_ok(tl_layer_output_shape(&s, l));
    ck_assert_uint_eq(s.dims[0], 2);
    ck_assert_uint_eq(s.dims[2], 512);
    tl_model_free(m);

    o = zopts(0, 32, 32);
    ck_assert_tl_ok(tl_zoo_mobilenet_v2(&m, &o));
    assert_output(m, 1280);
    ck_assert_int_eq(tl_model_layer_by_name(&l, m, "classifier.0"), TL_ENOTFOUND);
    ck_assert_tl_ok(tl_model_layer_by_name(&l, m, "features.18.2"));
    ck_assert_tl_ok(tl_layer_output_shape(&s, l));
    ck_assert_uint_eq(s.dims[0], 1);
    tl_model_free(m);

    o.cifar_stem = 1;
    ck_assert_tl_ok(tl_zoo_mobilenet_v2(&m, &o));
    ck_assert_tl_ok(tl_model_layer_by_name(&l, m, "features.18.2"));
    ck_assert_tl_ok(tl_layer_output_shape(&s, l));
    ck_assert_uint_eq(s.dims[0], 4);
    ck_assert_uint_eq(s.dims[1], 4);
    ck_assert_uint_eq(s.dims[2], 1280);
    tl_model_free(m);

    /* width 0.5: 16-channel stem, last conv stays 1280; 1.4: 1792 */
    o = zopts(7, 32, 32);
    o.width_mult = 0.5f;
    ck_assert_tl_ok(tl_zoo_mobilenet_v2(&m, &o));
    assert_output(m, 7);
    ck_assert_tl_ok(tl_model_layer_by_name(&l, m, "features.0.0"));
    ck_assert_tl_ok(tl_layer_output_shape(&s, l));
    ck_assert_uint_eq(s.dims[2], 16);
    ck_assert_tl_ok(tl_model_layer_by_name(&l, m, "features.18.0"));
    ck_assert_tl_ok(tl_layer_output_shape(&s, l));
    ck_assert_uint_eq(s.dims[2], 1280);
    tl_model_free(m);
    o.width_mult = 1.4f;
    ck_assert_tl_ok(tl_zoo_mobilenet_v2(&m, &o));
    ck_assert_tl_ok(tl_model_layer_by_name(&l, m, "features.18.0"));
    ck_assert_tl_ok(tl_layer_output_shape(&s, l));
    ck_assert_uint_eq(s.dims[2], 1792);
    tl_model_free(m);

    /* non-square input, one channel */
    o = zopts(5, 40, 48);
    o.input_channels = 1;
    ck_assert_tl_ok(tl_zoo_resnet_cifar(&m, 20, &o));
    assert_output(m, 5);
    tl_model_free(m);
}
END_TEST

/* Append a softmax, predict n random images, check finite rows summing to 1. */
static void check_forward(tl_model *m, size_t n, uint32_t h, uint32_t w, uint32_t classes)
{
    tl_activation_options a = TL_ACTIVATION_OPTIONS_INIT;
    a.activation = TL_ACT_SOFTMAX;
    a.name = "softmax";
    ck_assert_tl_ok(tl_model_add_activation(NULL, m, &a));
    ck_assert_tl_ok(tl_model_set_threads(m, 2));
    size_t in = n * h * w * 3;
    float *x = malloc(in * sizeof *x);
    float *y = malloc(n * classes * sizeof *y);
    uint64_t r = 12345;
    for (size_t i = 0; i < in; i++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)(r >> 40) / (float)(1u << 24);
    }
    ck_assert_tl_ok(tl_model_predict(y, n * classes, m, x, n, 0));
    for (size_t i = 0; i < n; i++) {
        double sum = 0;
        for (uint32_t k = 0; k < classes; k++) {
            float v = y[i * classes + k];
            ck_assert_msg(isfinite(v) && v >= 0.0f, "row %zu class %u: %g", i, k, (double)v);
            sum += v;
        }
        ck_assert_close(sum, 1.0, 1e-5);
    }
    free(x);
    free(y);
}

START_TEST(test_forward)
{
    tl_model *m = NULL;
    tl_zoo_options o = zopts(10, 32, 32);
    ck_assert_tl_ok(tl_zoo_resnet_cifar(&m, 20, &o));
    check_forward(m, 4, 32, 32, 10);
    tl_model_free(m);

    ck_assert_tl_ok(tl_zoo_mobilenet_v2(&m, &o));
    check_forward(m, 2, 32, 32, 10);
    tl_model_free(m);

    o.cifar_stem = 1;
    ck_assert_tl_ok(tl_zoo_mobilenet_v2(&m, &o));
    check_forward(m, 2, 32, 32, 10);
    tl_model_free(m);

    o = zopts(10, 64, 64);
    ck_assert_tl_ok(tl_zoo_resnet(&m, 18, &o));
    check_forward(m, 2, 64, 64, 10);
    tl_model_free(m);
}
END_TEST

/* ResNet-20 (16 x 16 inputs to keep it fast) fits one fixed batch of
 * random images with random labels: the loss falls well below ln 4. */
START_TEST(test_resnet20_learns)
{
    enum { N = 16, H = 16, W = 16, C = 3 };
    tl_model *m = NULL;
    tl_zoo_options o = zopts(4, H, W);
    o.seed = 7;
    ck_assert_tl_ok(tl_zoo_resnet_cifar(&m, 20, &o));
    ck_assert_tl_ok(tl_model_set_threads(m, 2));
    tl_optimizer *opt = NULL;
    tl_adam_options ao = TL_ADAM_OPTIONS_INIT;
    ao.learning_rate = 3e-3f;
    ck_assert_tl_ok(tl_optimizer_create_adam(&opt, &ao));
    ck_assert_tl_ok(tl_model_compile(m, opt, TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY));
    static float x[N * H * W * C];
    int32_t labels[N];
    uint64_t r = 99;
    for (size_t i = 0; i < sizeof x / sizeof x[0]; i++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)(r >> 40) / (float)(1u << 24);
    }
    for (int i = 0; i < N; i++)
        labels[i] = i % 4;
    double first = 0, loss = 0;
    for (int step = 0; step < 30; step++) {
        ck_assert_tl_ok(tl_model_train_step(&loss, m, x, labels, NULL, N));
        ck_assert(isfinite(loss));
        if (step == 0)
            first = loss;
    }
    ck_assert_msg(loss < 0.5 * first, "loss %g after 30 steps, %g at first", loss, first);
    /* bn1's moving mean (tensor 2) moved away from its zeros */
    tl_layer *bn = NULL;
    float mean[16];
    ck_assert_tl_ok(tl_model_layer_by_name(&bn, m, "bn1"));
    ck_assert_tl_ok(tl_layer_get_weights(mean, 16, bn, 2));
    int moved = 0;
    for (int k = 0; k < 16; k++)
        moved |= mean[k] != 0.0f;
    ck_assert(moved);
    tl_model_free(m);
}
END_TEST

/* The names are PyTorch state-dict keys: a ResNet-20 whose BN statistics
 * moved, written in the PyTorch layout, loads strictly (every tensor
 * named, none missing) into a ResNet-20 drawn from another seed, which
 * then predicts the same. */
START_TEST(test_pytorch_layout_round_trip)
{
    enum { N = 4, H = 16, W = 16 };
    tl_zoo_options o = zopts(3, H, W);
    o.seed = 1;
    tl_model *a = NULL, *b = NULL;
    ck_assert_tl_ok(tl_zoo_resnet_cifar(&a, 20, &o));
    o.seed = 2;
    ck_assert_tl_ok(tl_zoo_resnet_cifar(&b, 20, &o));
    ck_assert_tl_ok(tl_model_set_threads(a, 1));
    ck_assert_tl_ok(tl_model_set_threads(b, 1));
    tl_optimizer *opt = NULL;
    ck_assert_tl_ok(tl_optimizer_create_sgd(&opt, NULL));
    ck_assert_tl_ok(tl_model_compile(a, opt, TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY));
    static float x[N * H * W * 3];
    int32_t labels[N] = {0, 1, 2, 0};
    for (size_t i = 0; i < sizeof x / sizeof x[0]; i++)
        x[i] = (float)((i * 37) % 101) / 101.0f;
    ck_assert_tl_ok(tl_model_train_step(NULL, a, x, labels, NULL, N));
    const char *base = getenv("TMPDIR");
    char path[512];
    snprintf(path, sizeof path, "%s/tl-zoo-%ld.safetensors", base && *base ? base : "/tmp", (long)getpid());
    ck_assert_tl_ok(tl_model_save_safetensors(a, path, TL_LAYOUT_PYTORCH, NULL));
    ck_assert_tl_ok(tl_model_load_safetensors(NULL, b, path, TL_LAYOUT_PYTORCH, NULL));
    unlink(path);
    float ya[N * 3], yb[N * 3];
    ck_assert_tl_ok(tl_model_predict(ya, N * 3, a, x, N, 0));
    ck_assert_tl_ok(tl_model_predict(yb, N * 3, b, x, N, 0));
    for (int i = 0; i < N * 3; i++)
        ck_assert_msg(ya[i] == yb[i], "output %d: %g vs %g", i, (double)ya[i], (double)yb[i]);
    tl_model_free(a);
    tl_model_free(b);
}
END_TEST

/* ResNet-20 learns the spot task (8 x 8 x 3, a brighter 2 x 2 spot marks
 * one of 4 quadrants; the smallest input the three stages take) with 1
 * and 2 threads, and both thread counts reach the same accuracy from the
 * same seed. SGD with momentum and BN in training mode, as people train
 * ResNets. */
START_TEST(test_resnet20_spot_task)
{
    enum { SIDE = 8, CH = 3, CLASSES = 4 };
    const uint32_t threads = (uint32_t)_i + 1;
    const char *r = getenv("TL_TEST_REDUCED");
    const bool reduced = r && r[0] && strcmp(r, "0") != 0;
    tl_dataset *train = th_spot_dataset(reduced ? 600 : 1200, SIDE, SIDE, CH, 1.0f, 0.5f, 11);
    tl_dataset *test = th_spot_dataset(500, SIDE, SIDE, CH, 1.0f, 0.5f, 12);
    ck_assert_ptr_nonnull(train);
    ck_assert_ptr_nonnull(test);
    tl_zoo_options o = zopts(CLASSES, SIDE, SIDE);
    o.seed = 5;
    tl_model *m = NULL;
    ck_assert_tl_ok(tl_zoo_resnet_cifar(&m, 20, &o));
    ck_assert_tl_ok(tl_model_set_threads(m, threads));
    tl_sgd_options so = TL_SGD_OPTIONS_INIT;
    so.learning_rate = 0.05f;
    so.momentum = 0.9f;
    tl_optimizer *opt = NULL;
    ck_assert_tl_ok(tl_optimizer_create_sgd(&opt, &so));
    ck_assert_tl_ok(tl_model_compile(m, opt, TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY));
    double loss0, acc0, loss, acc;
    ck_assert_tl_ok(tl_model_evaluate(&loss0, &acc0, m, test, 0));
    tl_fit_options fo = TL_FIT_OPTIONS_INIT;
    fo.epochs = reduced ? 4 : 6;
    fo.batch_size = 32;
    fo.seed = 3;
    ck_assert_tl_ok(tl_model_fit(m, train, &fo));
    ck_assert_tl_ok(tl_model_evaluate(&loss, &acc, m, test, 0));
    fprintf(stderr, "ResNet-20, spot task, %u thread(s): test accuracy %.4f (before %.4f), loss %.4f (before %.4f)\n",
            threads, acc, acc0, loss, loss0);
    ck_assert_msg(acc0 < 0.5, "%u threads: %.3f accuracy before training", threads, acc0);
    ck_assert_msg(acc > 0.9, "%u threads: test accuracy %.4f", threads, acc);
    ck_assert(loss < loss0 / 3);
    tl_model_free(m);
    tl_dataset_free(train);
    tl_dataset_free(test);
}
END_TEST

/* Runs the model on fixed inputs: a fingerprint to tell whether it changed. */
static void outputs(float *y, tl_model *m, uint32_t h, uint32_t w, size_t units)
{
    static float x[2 * 64 * 64 * 3];
    for (size_t i = 0; i < (size_t)2 * h * w * 3; i++)
        x[i] = (float)((i * 29) % 97) / 97.0f;
    ck_assert_tl_ok(tl_model_predict(y, 2 * units, m, x, 2, 0));
}

/* A file that does not fit the model: the wrong class count, depth or
 * width. Strict loading names the first tensor that differs and leaves
 * the model as it was; lenient loading takes what fits and reports the
 * rest. */
START_TEST(test_mismatched_files)
{
    enum { H = 16, W = 16 };
    const char *base = getenv("TMPDIR");
    char path[512];
    snprintf(path, sizeof path, "%s/tl-zoo-mm-%ld.safetensors", base && *base ? base : "/tmp", (long)getpid());
    tl_zoo_options o = zopts(10, H, W);
    tl_model *src = NULL, *dst = NULL;
    float before[2 * 100], after[2 * 100];

    /* 10 classes in the file, 100 in the model: fc.weight is the first
     * tensor that differs (everything before it fits). */
    ck_assert_tl_ok(tl_zoo_resnet_cifar(&src, 20, &o));
    ck_assert_tl_ok(tl_model_save_safetensors(src, path, TL_LAYOUT_PYTORCH, NULL));
    tl_zoo_options o100 = o;
    o100.num_classes = 100;
    o100.seed = 9;
    ck_assert_tl_ok(tl_zoo_resnet_cifar(&dst, 20, &o100));
    ck_assert_tl_ok(tl_model_set_threads(dst, 1));
    outputs(before, dst, H, W, 100);
    tl_transfer_report *rep = NULL;
    ck_assert_tl_err(tl_model_load_safetensors(&rep, dst, path, TL_LAYOUT_PYTORCH, NULL), TL_ESHAPE, "fc.weight");
    ck_assert_ptr_nonnull(rep);
    ck_assert_uint_eq(tl_transfer_report_count_outcome(rep, TL_TRANSFER_SHAPE_DIFFERS), 2); /* weight, bias */
    tl_transfer_report_free(rep);
    outputs(after, dst, H, W, 100);
    ck_assert_mem_eq(before, after, sizeof(float) * 2 * 100);

    /* Lenient: the backbone loads, the head stays as drawn. */
    tl_safetensors_options so = TL_SAFETENSORS_OPTIONS_INIT;
    so.policy = TL_TRANSFER_LENIENT;
    rep = NULL;
    ck_assert_tl_ok(tl_model_load_safetensors(&rep, dst, path, TL_LAYOUT_PYTORCH, &so));
    ck_assert_uint_eq(tl_transfer_report_count_outcome(rep, TL_TRANSFER_SHAPE_DIFFERS), 2);
    /* tl_model_param_count counts every tensor, BN's moving statistics too */
    ck_assert_uint_eq(tl_transfer_report_params_copied(rep), tl_model_param_count(src) - (64 * 10 + 10));
    tl_transfer_report_free(rep);
    tl_layer *a = NULL, *b = NULL;
    ck_assert_tl_ok(tl_model_layer_by_name(&a, src, "layer3.2.conv2"));
    ck_assert_tl_ok(tl_model_layer_by_name(&b, dst, "layer3.2.conv2"));
    static float wa[3 * 3 * 64 * 64], wb[3 * 3 * 64 * 64];
    ck_assert_tl_ok(tl_layer_get_weights(wa, 3 * 3 * 64 * 64, a, 0));
    ck_assert_tl_ok(tl_layer_get_weights(wb, 3 * 3 * 64 * 64, b, 0));
    ck_assert_mem_eq(wa, wb, sizeof wa);
    tl_model_free(dst);

    /* A deeper file (ResNet-32) into ResNet-20: the extra blocks have no
     * layer to go to; the message names the first such tensor. */
    tl_model *deep = NULL;
    ck_assert_tl_ok(tl_zoo_resnet_cifar(&deep, 32, &o));
    ck_assert_tl_ok(tl_model_save_safetensors(deep, path, TL_LAYOUT_PYTORCH, NULL));
    tl_model_free(deep);
    ck_assert_tl_err(tl_model_load_safetensors(NULL, src, path, TL_LAYOUT_PYTORCH, NULL), TL_ENOTFOUND,
                     "layer1.3.conv1.weight");
    tl_model_free(src);

    /* A MobileNetV2 of width 0.5 into one of width 1: the stem's 16
     * filters are not 32. */
    tl_zoo_options mo = zopts(10, 32, 32);
    mo.cifar_stem = 1;
    mo.width_mult = 0.5f;
    ck_assert_tl_ok(tl_zoo_mobilenet_v2(&src, &mo));
    ck_assert_tl_ok(tl_model_save_safetensors(src, path, TL_LAYOUT_PYTORCH, NULL));
    tl_model_free(src);
    mo.width_mult = 1.0f;
    ck_assert_tl_ok(tl_zoo_mobilenet_v2(&dst, &mo));
    ck_assert_tl_err(tl_model_load_safetensors(NULL, dst, path, TL_LAYOUT_PYTORCH, NULL), TL_ESHAPE,
                     "features.0.0.weight");
    tl_model_free(dst);
    unlink(path);
}
END_TEST

/* The transfer APIs on a backbone with batch normalization: a ResNet-20
 * whose BN statistics moved is the source. By name, every layer but the
 * head goes into a 100-class ResNet-20 (the moving statistics too); frozen
 * below the head, a fit leaves the backbone's tensors bit for bit; the
 * extractor cut at "avgpool" joined with a copy of the head predicts what
 * the source predicts; a copy predicts the same; a structure clone with a
 * new head starts BN afresh. */
START_TEST(test_transfer_on_backbones)
{
    enum { N = 8, H = 16, W = 16, C = 3 };
    tl_zoo_options o = zopts(10, H, W);
    o.seed = 3;
    tl_model *src = NULL;
    ck_assert_tl_ok(tl_zoo_resnet_cifar(&src, 20, &o));
    ck_assert_tl_ok(tl_model_set_threads(src, 1));
    tl_optimizer *opt = NULL;
    ck_assert_tl_ok(tl_optimizer_create_sgd(&opt, NULL));
    ck_assert_tl_ok(tl_model_compile(src, opt, TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY));
    static float x[N * H * W * C];
    int32_t labels[N];
    for (size_t i = 0; i < sizeof x / sizeof x[0]; i++)
        x[i] = (float)((i * 53) % 103) / 103.0f;
    for (int i = 0; i < N; i++)
        labels[i] = i % 10;
    for (int step = 0; step < 3; step++)
        ck_assert_tl_ok(tl_model_train_step(NULL, src, x, labels, NULL, N));
    const size_t nl = tl_model_num_layers(src);
    tl_layer *fc = NULL;
    ck_assert_tl_ok(tl_model_layer_by_name(&fc, src, "fc"));

    /* 1. parameter transfer by name, all but fc */
    tl_zoo_options o100 = o;
    o100.num_classes = 100;
    o100.seed = 4;
    tl_model *dst = NULL;
    ck_assert_tl_ok(tl_zoo_resnet_cifar(&dst, 20, &o100));
    ck_assert_tl_ok(tl_model_set_threads(dst, 1));
    tl_transfer_options to = TL_TRANSFER_OPTIONS_INIT;
    to.match = TL_MATCH_NAME;
    to.first = 0;
    to.count = nl - 1; /* fc is the last layer */
    tl_transfer_report *rep = NULL;
    ck_assert_tl_ok(tl_model_transfer_params(&rep, dst, src, &to));
    ck_assert_uint_eq(tl_transfer_report_params_copied(rep), tl_model_param_count(src) - (64 * 10 + 10));
    tl_transfer_report_free(rep);
    static float a[3 * 3 * 64 * 64], b[3 * 3 * 64 * 64];
    const char *bn = "layer3.2.bn2";
    tl_layer *la = NULL, *lb = NULL;
    ck_assert_tl_ok(tl_model_layer_by_name(&la, src, bn));
    ck_assert_tl_ok(tl_model_layer_by_name(&lb, dst, bn));
    for (size_t t = 0; t < 4; t++) { /* gamma, beta, moving mean, moving variance */
        ck_assert_tl_ok(tl_layer_get_weights(a, 64, la, t));
        ck_assert_tl_ok(tl_layer_get_weights(b, 64, lb, t));
        ck_assert_mem_eq(a, b, 64 * sizeof(float));
    }

    /* 2. frozen below the head: fit moves fc only, BN statistics stay */
    ck_assert_tl_ok(tl_model_freeze_upto(dst, nl - 1));
    tl_optimizer *adam = NULL;
    ck_assert_tl_ok(tl_optimizer_create_adam(&adam, NULL));
    ck_assert_tl_ok(tl_model_compile(dst, adam, TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY));
    tl_dataset *ds = NULL;
    ck_assert_tl_ok(tl_dataset_create(&ds, x, labels, N, H, W, C, 100, TL_DATA_COPY));
    tl_fit_options fo = TL_FIT_OPTIONS_INIT;
    fo.epochs = 2;
    fo.batch_size = 4;
    ck_assert_tl_ok(tl_model_fit(dst, ds, &fo));
    for (size_t t = 0; t < 4; t++) {
        ck_assert_tl_ok(tl_layer_get_weights(a, 64, la, t));
        ck_assert_tl_ok(tl_layer_get_weights(b, 64, lb, t));
        ck_assert_mem_eq(a, b, 64 * sizeof(float));
    }
    tl_layer *c1 = NULL, *c2 = NULL;
    ck_assert_tl_ok(tl_model_layer_by_name(&c1, src, "layer3.2.conv2"));
    ck_assert_tl_ok(tl_model_layer_by_name(&c2, dst, "layer3.2.conv2"));
    ck_assert_tl_ok(tl_layer_get_weights(a, sizeof a / sizeof a[0], c1, 0));
    ck_assert_tl_ok(tl_layer_get_weights(b, sizeof b / sizeof b[0], c2, 0));
    ck_assert_mem_eq(a, b, sizeof a);
    tl_dataset_free(ds);
    tl_model_free(dst);

    /* 3. the extractor at "avgpool" plus a copy of the head = the source */
    tl_model *base = NULL, *head = NULL, *joined = NULL;
    ck_assert_tl_ok(tl_model_extractor_create_at(&base, src, "avgpool"));
    ck_assert_uint_eq(tl_model_num_layers(base), nl - 1);
    ck_assert_tl_ok(tl_model_head_create(&head, base, 1));
    ck_assert_tl_ok(tl_model_add_flatten(NULL, head, NULL)); /* the head's input is (1, 1, 64) */
    tl_dense_options d = TL_DENSE_OPTIONS_INIT;
    d.units = 10;
    d.name = "fc";
    ck_assert_tl_ok(tl_model_add_dense(NULL, head, &d));
    tl_transfer_options by_name = TL_TRANSFER_OPTIONS_INIT;
    by_name.match = TL_MATCH_NAME;
    by_name.first = nl - 1; /* the source's fc only */
    ck_assert_tl_ok(tl_model_transfer_params(NULL, head, src, &by_name));
    ck_assert_tl_ok(tl_model_join(&joined, base, head));
    ck_assert_tl_ok(tl_model_set_threads(joined, 1));
    float ys[N * 10], yj[N * 10];
    ck_assert_tl_ok(tl_model_predict(ys, N * 10, src, x, N, 0));
    ck_assert_tl_ok(tl_model_predict(yj, N * 10, joined, x, N, 0));
    ck_assert_mem_eq(ys, yj, sizeof ys);
    tl_model_free(base);
    tl_model_free(head);
    tl_model_free(joined);

    /* 4. a copy predicts the same */
    tl_model *copy = NULL;
    ck_assert_tl_ok(tl_model_copy(&copy, src));
    ck_assert_tl_ok(tl_model_predict(yj, N * 10, copy, x, N, 0));
    ck_assert_mem_eq(ys, yj, sizeof ys);
    tl_model_free(copy);

    /* 5. a structure clone with a 100-way head: BN starts at 0 / 1 */
    tl_clone_options co = TL_CLONE_OPTIONS_INIT;
    co.seed = 9;
    co.head_units = 100;
    tl_model *clone = NULL;
    ck_assert_tl_ok(tl_model_clone_structure(&clone, src, &co));
    assert_output(clone, 100);
    ck_assert_uint_eq(tl_model_num_layers(clone), nl);
    tl_layer *lc = NULL;
    ck_assert_tl_ok(tl_model_layer_by_name(&lc, clone, bn));
    ck_assert_tl_ok(tl_layer_get_weights(a, 64, lc, 2));
    ck_assert_tl_ok(tl_layer_get_weights(b, 64, lc, 3));
    for (int k = 0; k < 64; k++) {
        ck_assert(a[k] == 0.0f);
        ck_assert(b[k] == 1.0f);
    }
    tl_model_free(clone);
    tl_model_free(src);
}
END_TEST

START_TEST(test_bad_inputs)
{
    tl_model *m = (tl_model *)&m; /* not NULL: the call must clear it */
    tl_zoo_options o = TL_ZOO_OPTIONS_INIT;
    ck_assert_tl_err(tl_zoo_resnet_cifar(&m, 18, &o), TL_EINVAL, "tl_zoo_resnet_cifar");
    ck_assert_ptr_null(m);
    ck_assert(strstr(tl_last_error(), "20, 32, 44 or 56") != NULL);
    m = (tl_model *)&m;
    ck_assert_tl_err(tl_zoo_resnet_cifar(&m, 21, NULL), TL_EINVAL, "depth 21");
    ck_assert_ptr_null(m);
    m = (tl_model *)&m;
    ck_assert_tl_err(tl_zoo_resnet(&m, 50, &o), TL_EINVAL, "18 or 34");
    ck_assert_ptr_null(m);
    ck_assert(strstr(tl_last_error(), "tl_zoo_resnet") != NULL);
    ck_assert_tl_err(tl_zoo_resnet(NULL, 18, &o), TL_EINVAL, "out");
    ck_assert_tl_err(tl_zoo_mobilenet_v2(NULL, &o), TL_EINVAL, "out");

    tl_zoo_options w = o;
    w.width_mult = -0.5f;
    m = (tl_model *)&m;
    ck_assert_tl_err(tl_zoo_mobilenet_v2(&m, &w), TL_EINVAL, "width_mult");
    ck_assert_ptr_null(m);
    w.width_mult = NAN;
    ck_assert_tl_err(tl_zoo_mobilenet_v2(&m, &w), TL_EINVAL, "tl_zoo_mobilenet_v2");

    tl_zoo_options s = o;
    s.input_h = 16;
    ck_assert_tl_err(tl_zoo_resnet(&m, 18, &s), TL_EINVAL, "too small");
    ck_assert_ptr_null(m);
    ck_assert_tl_err(tl_zoo_mobilenet_v2(&m, &s), TL_EINVAL, "too small");
    s.cifar_stem = 1; /* 16 x 32 is fine with the CIFAR stem */
    ck_assert_tl_ok(tl_zoo_mobilenet_v2(&m, &s));
    tl_model_free(m);
    s.input_h = 4;
    ck_assert_tl_err(tl_zoo_resnet_cifar(&m, 20, &s), TL_EINVAL, "too small");
    ck_assert_ptr_null(m);
    s = o;
    s.input_channels = 0;
    ck_assert_tl_err(tl_zoo_resnet_cifar(&m, 20, &s), TL_EINVAL, "input_channels");

    tl_zoo_options d = o;
    d.dropout = 1.0f;
    ck_assert_tl_err(tl_zoo_resnet_cifar(&m, 20, &d), TL_EINVAL, "dropout");
    ck_assert_tl_err(tl_zoo_mobilenet_v2(&m, &d), TL_EINVAL, "dropout");
    d.dropout = -0.1f;
    ck_assert_tl_err(tl_zoo_resnet(&m, 18, &d), TL_EINVAL, "dropout");
    ck_assert_ptr_null(m);
    d.dropout = 0.3f;
    tl_layer *l = NULL;
    ck_assert_tl_ok(tl_zoo_resnet_cifar(&m, 20, &d));
    ck_assert_tl_ok(tl_model_layer_by_name(&l, m, "dropout"));
    tl_model_free(m);

    tl_zoo_options v = o;
    v.version = 99;
    ck_assert_tl_err(tl_zoo_resnet_cifar(&m, 20, &v), TL_EVERSION, "version");
    ck_assert_ptr_null(m);
    ck_assert_tl_err(tl_zoo_options_init(&v, 2), TL_EVERSION, "version");
    ck_assert_tl_err(tl_zoo_options_init(NULL, 1), TL_EINVAL, "opts");
    ck_assert_tl_ok(tl_zoo_options_init(&v, TL_ZOO_OPTIONS_VERSION));
    ck_assert_uint_eq(v.num_classes, 10);
    ck_assert_uint_eq(v.input_h, 32);
    ck_assert_uint_eq(v.input_channels, 3);
}
END_TEST

/* Mean, standard deviation and largest |w| of a layer's tensor. */
static void tensor_stats(const tl_model *m, const char *name, size_t index, size_t *n, double *mean, double *sd,
                         double *maxabs)
{
    tl_layer *l;
    tl_param_info info;
    ck_assert_tl_ok(tl_model_layer_by_name(&l, m, name));
    ck_assert_tl_ok(tl_layer_param_info(&info, l, index));
    float *w = malloc(info.count * sizeof *w);
    ck_assert_ptr_nonnull(w);
    ck_assert_tl_ok(tl_layer_get_weights(w, info.count, l, index));
    double s = 0.0, q = 0.0, mx = 0.0;
    for (size_t j = 0; j < info.count; j++)
        s += w[j], mx = fmax(mx, fabs(w[j]));
    *n = info.count;
    *mean = s / (double)info.count;
    for (size_t j = 0; j < info.count; j++)
        q += (w[j] - *mean) * (w[j] - *mean);
    *sd = sqrt(q / (double)(info.count - 1));
    *maxabs = mx;
    free(w);
}

/* A plain (not truncated) normal N(0, sd^2): mean and standard deviation
 * within six standard errors (sd / sqrt(n) and sd / sqrt(2 n), see
 * test_model.c's initializer tests), and values past 2.3 sd, where no
 * truncated normal of this sd reaches (n * P(|z| > 2.3) = 0.021 n >= 30). */
static void assert_normal(const tl_model *m, const char *name, double want_sd)
{
    size_t n;
    double mean, sd, mx;
    tensor_stats(m, name, 0, &n, &mean, &sd, &mx);
    ck_assert_msg(fabs(mean) <= 6.0 * want_sd / sqrt((double)n), "%s: mean %g", name, mean);
    ck_assert_msg(fabs(sd / want_sd - 1.0) <= 6.0 / sqrt(2.0 * (double)n), "%s: sd %g, expected %g (n %zu)", name, sd,
                  want_sd, n);
    if (0.0214 * (double)n >= 30.0)
        ck_assert_msg(mx > 2.3 * want_sd, "%s: largest |w| %g = %g sd", name, mx, mx / want_sd);
}

/* U(-a, a): inside the bounds, reaching to a (1 - 30 / n) (missed with
 * probability < e^-30), standard deviation a / sqrt(3) within six errors. */
static void assert_uniform(const tl_model *m, const char *name, size_t index, double a)
{
    size_t n;
    double mean, sd, mx;
    tensor_stats(m, name, index, &n, &mean, &sd, &mx);
    ck_assert_msg(mx <= a * (1.0 + 1e-6) && mx >= a * (1.0 - 30.0 / (double)n), "%s[%zu]: largest |w| %g, a %g", name,
                  index, mx, a);
    ck_assert_msg(fabs(sd / (a / sqrt(3.0)) - 1.0) <= 6.0 / sqrt(2.0 * (double)n), "%s[%zu]: sd %g, a %g", name,
                  index, sd, a);
}

/* torchvision's initialisation: every conv kernel N(0, 2 / fan_out) with
 * fan_out = kh * kw * filters (depthwise included), the ResNets' fc with
 * nn.Linear's default U(+-1/sqrt(fan_in)) for weight and bias, MobileNetV2's
 * classifier N(0, 0.01^2) with a zero bias; batch normalization 1 and 0. */
START_TEST(test_initialisation)
{
    tl_model *m = NULL;
    tl_zoo_options o = zopts(10, 32, 32);
    ck_assert_tl_ok(tl_zoo_resnet_cifar(&m, 20, &o));
    assert_normal(m, "layer3.2.conv2", sqrt(2.0 / (3 * 3 * 64)));
    assert_normal(m, "layer2.0.conv1", sqrt(2.0 / (3 * 3 * 32)));
    assert_normal(m, "layer3.0.downsample.0", sqrt(2.0 / 64));
    assert_uniform(m, "fc", 0, 1.0 / sqrt(64.0));
    assert_uniform(m, "fc", 1, 1.0 / sqrt(64.0));
    tl_layer *l;
    float bn[16];
    ck_assert_tl_ok(tl_model_layer_by_name(&l, m, "bn1"));
    ck_assert_tl_ok(tl_layer_get_weights(bn, 16, l, 0));
    for (int j = 0; j < 16; j++)
        ck_assert(bn[j] == 1.0f);
    ck_assert_tl_ok(tl_layer_get_weights(bn, 16, l, 1));
    for (int j = 0; j < 16; j++)
        ck_assert(bn[j] == 0.0f);
    tl_model_free(m);

    o = zopts(1000, 32, 32);
    ck_assert_tl_ok(tl_zoo_resnet(&m, 18, &o));
    assert_normal(m, "conv1", sqrt(2.0 / (7 * 7 * 64)));
    assert_normal(m, "layer4.1.conv2", sqrt(2.0 / (3 * 3 * 512)));
    assert_uniform(m, "fc", 0, 1.0 / sqrt(512.0));
    assert_uniform(m, "fc", 1, 1.0 / sqrt(512.0));
    tl_model_free(m);

    o = zopts(10, 32, 32);
    o.cifar_stem = 1;
    ck_assert_tl_ok(tl_zoo_mobilenet_v2(&m, &o));
    /* The depthwise conv of block 17 (960 channels): PyTorch's fan_out of
     * its (960, 1, 3, 3) weight is 3 * 3 * 960. */
    assert_normal(m, "features.17.conv.1.0", sqrt(2.0 / (3 * 3 * 960)));
    assert_normal(m, "features.18.0", sqrt(2.0 / 1280));
    assert_normal(m, "classifier.1", 0.01);
    float b[10];
    ck_assert_tl_ok(tl_model_layer_by_name(&l, m, "classifier.1"));
    ck_assert_tl_ok(tl_layer_get_weights(b, 10, l, 1));
    for (int j = 0; j < 10; j++)
        ck_assert(b[j] == 0.0f);
    tl_model_free(m);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("zoo");
    TCase *build = tcase_create("build");
    tcase_add_test(build, test_param_counts);
    tcase_add_test(build, test_names);
    tcase_add_test(build, test_flops);
    tcase_add_test(build, test_shapes);
    tcase_add_test(build, test_bad_inputs);
    tcase_add_test(build, test_initialisation);
    suite_add_tcase(s, build);
    TCase *run = tcase_create("run");
    tcase_set_timeout(run, 300);
    tcase_add_test(run, test_forward);
    tcase_add_test(run, test_resnet20_learns);
    tcase_add_test(run, test_pytorch_layout_round_trip);
    tcase_add_test(run, test_mismatched_files);
    tcase_add_test(run, test_transfer_on_backbones);
    tcase_add_loop_test(run, test_resnet20_spot_task, 0, 2);
    suite_add_tcase(s, run);
    return th_run(s);
}
