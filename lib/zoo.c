/* zoo.c - ready-made backbones (tl/zoo.h): CIFAR ResNets, torchvision's
 * ResNet-18/34 and MobileNetV2. A client of the public model API: it only
 * adds layers through tl_model_add_*; the one internal thing it uses is
 * the error reporting (tli_error, tli_error_prefix) so that messages name
 * the zoo function. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "tl/zoo.h"

#include "core.h"

#define ZOO_BN_EPS 1e-5f
#define ZOO_BN_MOMENTUM 0.9f /* PyTorch's momentum 0.1 in libtl's (Keras') convention */

tl_status tl_zoo_options_init(tl_zoo_options *opts, unsigned int version)
{
    if (opts == NULL)
        return tli_error(TL_EINVAL, "tl_zoo_options_init: opts is NULL");
    if (version != TL_ZOO_OPTIONS_VERSION)
        return tli_error(TL_EVERSION, "tl_zoo_options_init: unknown options version %u (this library knows 1)",
                         version);
    const tl_zoo_options d = TL_ZOO_OPTIONS_INIT;
    *opts = d;
    return TL_OK;
}

/* ---- building helpers: each records the first failure and then does nothing ---- */

typedef struct zoo_builder {
    tl_model *m;
    const char *fn;
    tl_status st;
} zoo_builder;

static void zb_fail(zoo_builder *b, tl_status st)
{
    b->st = st;
    tli_error_prefix("%s", b->fn);
}

/* conv k x k, stride s, explicit pad p (0: valid), no bias, linear; the
 * kernel drawn as torchvision draws every convolution of its ResNets and
 * MobileNetV2: kaiming_normal_(mode="fan_out", nonlinearity="relu"). */
static tl_layer *zb_conv(zoo_builder *b, const tl_layer *in, uint32_t filters, uint32_t k, uint32_t s, uint32_t p,
                         uint32_t groups, const char *name)
{
    tl_layer *l = NULL;
    if (b->st)
        return NULL;
    tl_conv2d_options o = TL_CONV2D_OPTIONS_INIT;
    o.filters = filters;
    o.kernel_h = o.kernel_w = k;
    o.stride_h = o.stride_w = s;
    o.padding = p ? TL_PAD_EXPLICIT : TL_PAD_VALID;
    o.pad_top = o.pad_bottom = o.pad_left = o.pad_right = p;
    o.use_bias = 0;
    o.groups = groups;
    o.kernel_initializer = TL_INIT_HE_NORMAL_FAN_OUT;
    o.name = name;
    o.input = in;
    tl_status st = tl_model_add_conv2d(&l, b->m, &o);
    if (st)
        zb_fail(b, st);
    return l;
}

static tl_layer *zb_bn(zoo_builder *b, const tl_layer *in, const char *name)
{
    tl_layer *l = NULL;
    if (b->st)
        return NULL;
    tl_batchnorm_options o = TL_BATCHNORM_OPTIONS_INIT;
    o.epsilon = ZOO_BN_EPS;
    o.momentum = ZOO_BN_MOMENTUM;
    o.name = name;
    o.input = in;
    tl_status st = tl_model_add_batchnorm(&l, b->m, &o);
    if (st)
        zb_fail(b, st);
    return l;
}

static tl_layer *zb_act(zoo_builder *b, const tl_layer *in, tl_activation act, const char *name)
{
    tl_layer *l = NULL;
    if (b->st)
        return NULL;
    tl_activation_options o = TL_ACTIVATION_OPTIONS_INIT;
    o.activation = act;
    o.name = name;
    o.input = in;
    tl_status st = tl_model_add_activation(&l, b->m, &o);
    if (st)
        zb_fail(b, st);
    return l;
}

static tl_layer *zb_add(zoo_builder *b, const tl_layer *x, const tl_layer *y, const char *name)
{
    tl_layer *l = NULL;
    if (b->st)
        return NULL;
    const tl_layer *both[2] = {x, y};
    tl_status st = tl_model_add_add(&l, b->m, both, 2, name);
    if (st)
        zb_fail(b, st);
    return l;
}

/* Global average pooling, then dropout (rate > 0) and dense (classes > 0)
 * whose kernel and bias are drawn with k_init and b_init. */
static void zb_head(zoo_builder *b, const tl_layer *in, uint32_t classes, float rate, const char *drop_name,
                    const char *fc_name, tl_initializer k_init, tl_initializer b_init)
{
    tl_layer *l = NULL;
    if (b->st)
        return;
    tl_status st = tl_model_add_global_avgpool2d(&l, b->m, in, "avgpool");
    if (st == TL_OK && classes > 0 && rate > 0.0f) {
        tl_dropout_options d = TL_DROPOUT_OPTIONS_INIT;
        d.rate = rate;
        d.name = drop_name;
        st = tl_model_add_dropout(NULL, b->m, &d);
    }
    if (st == TL_OK && classes > 0) {
        tl_dense_options o = TL_DENSE_OPTIONS_INIT;
        o.units = classes;
        o.kernel_initializer = k_init;
        o.bias_initializer = b_init;
        o.name = fc_name;
        st = tl_model_add_dense(NULL, b->m, &o);
    }
    if (st)
        zb_fail(b, st);
}

/* Check the options common to every builder and create the model. */
static tl_status zoo_start(zoo_builder *b, tl_model **out, const tl_zoo_options *opts, tl_zoo_options *o,
                           uint32_t min_hw, const char *fn)
{
    b->m = NULL;
    b->fn = fn;
    b->st = TL_OK;
    if (out == NULL)
        return tli_error(TL_EINVAL, "%s: out is NULL", fn);
    *out = NULL;
    if (opts == NULL) {
        const tl_zoo_options d = TL_ZOO_OPTIONS_INIT;
        *o = d;
    } else {
        if (opts->version != TL_ZOO_OPTIONS_VERSION)
            return tli_error(TL_EVERSION, "%s: unknown options version %u (this library knows 1)", fn,
                             opts->version);
        *o = *opts;
    }
    if (o->input_h < min_hw || o->input_w < min_hw)
        return tli_error(TL_EINVAL, "%s: input %u x %u is too small (at least %u x %u)", fn, o->input_h,
                         o->input_w, min_hw, min_hw);
    if (o->input_channels == 0)
        return tli_error(TL_EINVAL, "%s: input_channels is 0", fn);
    tl_status st = tl_model_create(&b->m, o->input_h, o->input_w, o->input_channels, o->seed);
    if (st) {
        tli_error_prefix("%s", fn);
        return st;
    }
    return TL_OK;
}

static tl_status zoo_finish(zoo_builder *b, tl_model **out)
{
    if (b->st) {
        tl_model_free(b->m);
        return b->st;
    }
    *out = b->m;
    return TL_OK;
}

/* ---- ResNets ---------------------------------------------------------------------- */

/* A BasicBlock named layer<stage>.<block>; returns its output (relu2). */
static tl_layer *zb_basic_block(zoo_builder *b, const tl_layer *in, uint32_t in_ch, uint32_t ch, uint32_t stride,
                                int stage, int block)
{
    char p[32], n[TL_MAX_NAME + 1];
    snprintf(p, sizeof p, "layer%d.%d", stage, block);
#define ZN(suffix) (snprintf(n, sizeof n, "%s.%s", p, suffix), n)
    tl_layer *x = zb_conv(b, in, ch, 3, stride, 1, 1, ZN("conv1"));
    x = zb_bn(b, x, ZN("bn1"));
    x = zb_act(b, x, TL_ACT_RELU, ZN("relu1"));
    x = zb_conv(b, x, ch, 3, 1, 1, 1, ZN("conv2"));
    tl_layer *y = zb_bn(b, x, ZN("bn2"));
    const tl_layer *shortcut = in;
    if (stride != 1 || in_ch != ch) {
        tl_layer *d = zb_conv(b, in, ch, 1, stride, 0, 1, ZN("downsample.0"));
        shortcut = zb_bn(b, d, ZN("downsample.1"));
    }
    x = zb_add(b, y, shortcut, ZN("add"));
    x = zb_act(b, x, TL_ACT_RELU, ZN("relu2"));
#undef ZN
    return x;
}

static tl_status zoo_check_dropout(const tl_zoo_options *o, const char *fn)
{
    if (o->version == TL_ZOO_OPTIONS_VERSION && !(o->dropout >= 0.0f && o->dropout < 1.0f))
        return tli_error(TL_EINVAL, "%s: dropout %g is outside [0, 1)", fn, (double)o->dropout);
    return TL_OK;
}

tl_status tl_zoo_resnet_cifar(tl_model **out, int depth, const tl_zoo_options *opts)
{
    static const char fn[] = "tl_zoo_resnet_cifar";
    if (out)
        *out = NULL;
    if (out && !(depth == 20 || depth == 32 || depth == 44 || depth == 56))
        return tli_error(TL_EINVAL, "%s: depth %d is not supported (20, 32, 44 or 56)", fn, depth);
    zoo_builder b;
    tl_zoo_options o;
    tl_status st = opts ? zoo_check_dropout(opts, fn) : TL_OK;
    if (st)
        return st;
    st = zoo_start(&b, out, opts, &o, 8, fn);
    if (st)
        return st;
    int n = (depth - 2) / 6;
    tl_layer *x = zb_conv(&b, NULL, 16, 3, 1, 1, 1, "conv1");
    x = zb_bn(&b, x, "bn1");
    x = zb_act(&b, x, TL_ACT_RELU, "relu");
    uint32_t in_ch = 16;
    for (int s = 0; s < 3; s++) {
        uint32_t ch = 16u << s;
        for (int k = 0; k < n; k++) {
            x = zb_basic_block(&b, x, in_ch, ch, (s > 0 && k == 0) ? 2 : 1, s + 1, k);
            in_ch = ch;
        }
    }
    /* torchvision's fc keeps nn.Linear's default initialisation. */
    zb_head(&b, x, o.num_classes, o.dropout, "dropout", "fc", TL_INIT_UNIFORM_INV_SQRT_FAN_IN,
            TL_INIT_UNIFORM_INV_SQRT_FAN_IN);
    return zoo_finish(&b, out);
}

tl_status tl_zoo_resnet(tl_model **out, int depth, const tl_zoo_options *opts)
{
    static const char fn[] = "tl_zoo_resnet";
    static const int blocks18[4] = {2, 2, 2, 2}, blocks34[4] = {3, 4, 6, 3};
    if (out)
        *out = NULL;
    if (out && depth != 18 && depth != 34)
        return tli_error(TL_EINVAL, "%s: depth %d is not supported (18 or 34)", fn, depth);
    zoo_builder b;
    tl_zoo_options o;
    tl_status st = opts ? zoo_check_dropout(opts, fn) : TL_OK;
    if (st)
        return st;
    st = zoo_start(&b, out, opts, &o, 32, fn);
    if (st)
        return st;
    const int *blocks = depth == 18 ? blocks18 : blocks34;
    tl_layer *x = zb_conv(&b, NULL, 64, 7, 2, 3, 1, "conv1");
    x = zb_bn(&b, x, "bn1");
    x = zb_act(&b, x, TL_ACT_RELU, "relu");
    if (b.st == TL_OK) {
        tl_maxpool2d_options mp = TL_MAXPOOL2D_OPTIONS_INIT;
        mp.pool_h = mp.pool_w = 3;
        mp.stride_h = mp.stride_w = 2;
        mp.padding = TL_PAD_EXPLICIT;
        mp.pad_top = mp.pad_bottom = mp.pad_left = mp.pad_right = 1;
        mp.name = "maxpool";
        mp.input = x;
        st = tl_model_add_maxpool2d(&x, b.m, &mp);
        if (st)
            zb_fail(&b, st);
    }
    uint32_t in_ch = 64;
    for (int s = 0; s < 4; s++) {
        uint32_t ch = 64u << s;
        for (int k = 0; k < blocks[s]; k++) {
            x = zb_basic_block(&b, x, in_ch, ch, (s > 0 && k == 0) ? 2 : 1, s + 1, k);
            in_ch = ch;
        }
    }
    /* torchvision's fc keeps nn.Linear's default initialisation. */
    zb_head(&b, x, o.num_classes, o.dropout, "dropout", "fc", TL_INIT_UNIFORM_INV_SQRT_FAN_IN,
            TL_INIT_UNIFORM_INV_SQRT_FAN_IN);
    return zoo_finish(&b, out);
}

/* ---- MobileNetV2 ---------------------------------------------------------------- */

/* torchvision's _make_divisible(v, 8): round to the nearest multiple of 8,
 * at least 8, and not below 90 % of v. */
static uint32_t zoo_make_divisible(double v)
{
    const long d = 8;
    long nv = ((long)(v + d / 2.0) / d) * d;
    if (nv < d)
        nv = d;
    if ((double)nv < 0.9 * v)
        nv += d;
    return (uint32_t)nv;
}

tl_status tl_zoo_mobilenet_v2(tl_model **out, const tl_zoo_options *opts)
{
    static const char fn[] = "tl_zoo_mobilenet_v2";
    static const int settings[7][4] = {{1, 16, 1, 1}, {6, 24, 2, 2}, {6, 32, 3, 2},  {6, 64, 4, 2},
                                       {6, 96, 3, 1}, {6, 160, 3, 2}, {6, 320, 1, 1}};
    if (out)
        *out = NULL;
    float wm = 1.0f, rate = 0.2f;
    if (opts && opts->version == TL_ZOO_OPTIONS_VERSION) {
        if (!isfinite(opts->width_mult) || opts->width_mult < 0.0f)
            return tli_error(TL_EINVAL, "%s: width_mult %g is not > 0 (or 0 for 1.0)", fn, (double)opts->width_mult);
        if (opts->width_mult > 0.0f)
            wm = opts->width_mult;
        if (!(opts->dropout < 1.0f) || isnan(opts->dropout))
            return tli_error(TL_EINVAL, "%s: dropout %g is outside [0, 1)", fn, (double)opts->dropout);
        if (opts->dropout > 0.0f)
            rate = opts->dropout;
        else if (opts->dropout < 0.0f)
            rate = 0.0f;
    }
    int cifar = opts && opts->version == TL_ZOO_OPTIONS_VERSION && opts->cifar_stem;
    zoo_builder b;
    tl_zoo_options o;
    tl_status st = zoo_start(&b, out, opts, &o, cifar ? 16 : 32, fn);
    if (st)
        return st;
    char n[TL_MAX_NAME + 1];
    uint32_t in_ch = zoo_make_divisible(32.0 * wm);
    tl_layer *x = zb_conv(&b, NULL, in_ch, 3, cifar ? 1 : 2, 1, 1, "features.0.0");
    x = zb_bn(&b, x, "features.0.1");
    x = zb_act(&b, x, TL_ACT_RELU6, "features.0.2");
    int idx = 1, first_stride2 = 1;
    for (int g = 0; g < 7; g++) {
        int t = settings[g][0], reps = settings[g][2];
        uint32_t ch = zoo_make_divisible(settings[g][1] * (double)wm);
        uint32_t s = (uint32_t)settings[g][3];
        if (s == 2 && first_stride2) {
            first_stride2 = 0;
            if (cifar)
                s = 1;
        }
        for (int k = 0; k < reps; k++, idx++) {
            uint32_t stride = k == 0 ? s : 1;
            uint32_t hidden = in_ch * (uint32_t)t; /* int(round(inp * t)), t an integer */
            tl_layer *in = x, *y = x;
            int c = 0; /* index in features.N.conv */
#define MN(fmt, ...) (snprintf(n, sizeof n, "features.%d.conv." fmt, idx, __VA_ARGS__), n)
            if (t != 1) {
                y = zb_conv(&b, y, hidden, 1, 1, 0, 1, MN("%d.0", c));
                y = zb_bn(&b, y, MN("%d.1", c));
                y = zb_act(&b, y, TL_ACT_RELU6, MN("%d.2", c));
                c++;
            }
            y = zb_conv(&b, y, hidden, 3, stride, 1, hidden, MN("%d.0", c));
            y = zb_bn(&b, y, MN("%d.1", c));
            y = zb_act(&b, y, TL_ACT_RELU6, MN("%d.2", c));
            c++;
            y = zb_conv(&b, y, ch, 1, 1, 0, 1, MN("%d", c));
            y = zb_bn(&b, y, MN("%d", c + 1));
#undef MN
            if (stride == 1 && in_ch == ch) {
                snprintf(n, sizeof n, "features.%d.add", idx);
                y = zb_add(&b, y, in, n);
            }
            x = y;
            in_ch = ch;
        }
    }
    uint32_t last = zoo_make_divisible(1280.0 * (wm > 1.0f ? wm : 1.0));
    snprintf(n, sizeof n, "features.%d.0", idx);
    x = zb_conv(&b, x, last, 1, 1, 0, 1, n);
    snprintf(n, sizeof n, "features.%d.1", idx);
    x = zb_bn(&b, x, n);
    snprintf(n, sizeof n, "features.%d.2", idx);
    x = zb_act(&b, x, TL_ACT_RELU6, n);
    /* torchvision: nn.init.normal_(weight, 0, 0.01), zeros_(bias). */
    zb_head(&b, x, o.num_classes, rate, "classifier.0", "classifier.1", TL_INIT_NORMAL_STDDEV_0_01, TL_INIT_ZEROS);
    return zoo_finish(&b, out);
}
