/*
 * tl/model.h - a model: a graph of layers on an (h, w, c) input.
 *
 * Layers are added in order; each takes the previous layer's output unless
 * its options name another earlier layer as its `input` (add and
 * concatenate take several). A layer's output may feed several layers; the
 * last layer added is the model's output, and every other layer's output
 * must be used by some layer (checked when the model runs or is saved:
 * TL_EINVAL names the unused layer). Each layer's output shape is inferred
 * when it is added, so a layer that cannot take its input is refused at
 * once (TL_ESHAPE) and the model stays as it was. Since every input is an
 * earlier layer, a model can never hold a cycle.
 *
 * A residual block, for example:
 *
 *     tl_layer *in, *a, *b, *sum;
 *     tl_model_add_conv2d(&in, m, &stem);            // the block's input
 *     tl_model_add_conv2d(&a, m, &conv_relu);         // takes `in`
 *     tl_model_add_conv2d(&b, m, &conv_linear);       // takes `a`
 *     const tl_layer *both[2] = {b, in};
 *     tl_model_add_add(&sum, m, both, 2, NULL);       // b + in
 *
 * (Here the sum feeds the next conv2d; its `input` defaults to `sum`.)
 *
 * Weights are drawn when a layer
 * is added, by the initializers its options name (tl_initializer; by
 * default Glorot-uniform kernels and zero biases, Keras' defaults), from a
 * random stream that depends only on the model's seed and the layer's index.
 *
 * Thread safety: a model must not be used by two threads at once. Different
 * models may be used from different threads at the same time.
 */
#ifndef TL_MODEL_H
#define TL_MODEL_H

#include "common.h"
#include "data.h"
#include "layer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tl_model tl_model;

/** Longest layer name, without the terminating NUL. */
#define TL_MAX_NAME 63

/**
 * Create an empty model for inputs of `height` x `width` x `channels`.
 * `seed` fixes every random draw made for this model (weight initialisation;
 * shuffling when tl_fit_options.seed is 0).
 * Ownership: the caller owns *out and frees it with tl_model_free().
 * Errors: TL_EINVAL (out NULL, a dimension 0), TL_ETOOBIG (the input would
 * have more than 2^31 values), TL_ENOMEM. On error *out is NULL.
 */
TL_API tl_status tl_model_create(tl_model **out, uint32_t height, uint32_t width, uint32_t channels,
                                 uint64_t seed);

/** Free a model, its layers, its optimizer and its workspace. NULL is a no-op. */
TL_API void tl_model_free(tl_model *model);

/** The seed given at creation or by tl_model_init_params(); 0 when NULL. */
TL_API uint64_t tl_model_seed(const tl_model *model);

/**
 * Options of tl_model_add_conv2d(). Fill with TL_CONV2D_OPTIONS_INIT or
 * tl_conv2d_options_init(), then set what differs. Defaults: 3x3 kernel,
 * stride 1, valid padding, linear activation, with bias, automatic name,
 * one group, no dilation.
 *
 * Version 3 (since 1.1):
 * - groups: in_channels and filters split into `groups` equal parts, each
 *   filter seeing only its part's channels (PyTorch's and Keras' groups);
 *   both must be divisible by it (TL_EINVAL otherwise). groups = in_channels
 *   is a depthwise convolution (filters = in_channels * multiplier), which
 *   has a kernel of its own. The kernel is (kh, kw, in_channels / groups,
 *   filters); see tl/layer.h for the depthwise layout.
 * - dilation_h, dilation_w: the distance between the kernel's taps (1: none);
 *   the kernel then spans dilation * (kernel - 1) + 1 cells.
 * - pad_top, pad_bottom, pad_left, pad_right: zero rows / columns for
 *   padding TL_PAD_EXPLICIT, each at most the (dilated) kernel's extent;
 *   they must be 0 with the other paddings. PyTorch's padding=p is all four
 *   set to p. Explicit pads that are all 0 are valid padding, and the layer
 *   reports TL_PAD_VALID.
 * - kernel_initializer, bias_initializer: how the kernel and the bias are
 *   drawn (tl_initializer, see tl/layer.h for the fans of grouped and
 *   depthwise kernels); TL_INIT_DEFAULT (0) is Glorot-uniform for the
 *   kernel and zeros for the bias. A value outside tl_initializer is
 *   TL_EINVAL, the message naming the option and the value. The choice
 *   is a setting of the layer: checkpoints, the safetensors architecture
 *   metadata and tl_checkpoint_info_layer_settings() record it, and
 *   tl_model_init_params() and structure clones draw with it again.
 * - activation_alpha: leaky_relu's negative slope when `activation` is
 *   TL_ACT_LEAKY_RELU, default 0.01 as tl_activation_options' alpha (so a
 *   fused leaky relu and an activation layer agree); finite (TL_EINVAL
 *   otherwise, the message naming the layer and the value). The other
 *   activations ignore it, and the layer then keeps the default. A
 *   setting of the layer, as the initializers.
 * For groups and the dilations 0 means 1, so a zero-filled struct gets an
 * ordinary convolution; the INIT macro and tl_conv2d_options_init() set 1.
 *
 * Every activation fuses, as Keras' `activation` argument: those whose
 * derivative needs the pre-activation (leaky_relu, silu, hard_swish) make
 * the layer keep it in its workspace while it trains (batch x output
 * floats more, allocated with the workspace, not in a training step);
 * the others cost nothing extra.
 */
typedef struct tl_conv2d_options {
    unsigned int version;    /**< TL_CONV2D_OPTIONS_VERSION */
    uint32_t filters;        /**< output channels; required (> 0) */
    uint32_t kernel_h, kernel_w;
    uint32_t stride_h, stride_w;
    tl_padding padding;
    tl_activation activation;
    int use_bias;            /**< non-zero: add a bias per filter */
    const char *name;        /**< NULL: automatic Keras-style name (conv2d, conv2d_1, ...) */
    const tl_layer *input;   /**< version 2: the layer whose output it takes; NULL: the previous layer */
    uint32_t groups;         /**< version 3: 0 or 1: an ordinary convolution */
    uint32_t dilation_h, dilation_w; /**< version 3: 0 or 1: no dilation */
    uint32_t pad_top, pad_bottom, pad_left, pad_right; /**< version 3: TL_PAD_EXPLICIT only */
    tl_initializer kernel_initializer; /**< version 3: TL_INIT_DEFAULT: Glorot-uniform */
    tl_initializer bias_initializer;   /**< version 3: TL_INIT_DEFAULT: zeros (when use_bias) */
    float activation_alpha;  /**< version 3: leaky_relu's negative slope (0.01); finite */
} tl_conv2d_options;
#define TL_CONV2D_OPTIONS_VERSION 3
#define TL_CONV2D_OPTIONS_INIT \
    { TL_CONV2D_OPTIONS_VERSION, 0, 3, 3, 1, 1, TL_PAD_VALID, TL_ACT_LINEAR, 1, NULL, NULL, 1, 1, 1, 0, 0, 0, 0, \
      TL_INIT_DEFAULT, TL_INIT_DEFAULT, 0.01f }
/** Fill `opts` with the defaults of `version`. Errors: TL_EINVAL, TL_EVERSION. */
TL_API tl_status tl_conv2d_options_init(tl_conv2d_options *opts, unsigned int version);

/**
 * Options of tl_model_add_maxpool2d(). Defaults: 2x2 pool, stride = pool, valid.
 * Version 3 (since 1.1): pad_top, pad_bottom, pad_left, pad_right for
 * padding TL_PAD_EXPLICIT (0 with the other paddings), each smaller than
 * the pool along its axis, so that every window holds a real cell: padded
 * cells never win. PyTorch's MaxPool2d(3, 2, padding=1) (torchvision's
 * ResNet stem) is a 3x3 pool, stride 2, all four pads 1.
 */
typedef struct tl_maxpool2d_options {
    unsigned int version;    /**< TL_MAXPOOL2D_OPTIONS_VERSION */
    uint32_t pool_h, pool_w;
    uint32_t stride_h, stride_w; /**< 0: the pool size, as Keras */
    tl_padding padding;
    const char *name;
    const tl_layer *input;   /**< version 2: the layer whose output it takes; NULL: the previous layer */
    uint32_t pad_top, pad_bottom, pad_left, pad_right; /**< version 3: TL_PAD_EXPLICIT only */
} tl_maxpool2d_options;
#define TL_MAXPOOL2D_OPTIONS_VERSION 3
#define TL_MAXPOOL2D_OPTIONS_INIT { TL_MAXPOOL2D_OPTIONS_VERSION, 2, 2, 0, 0, TL_PAD_VALID, NULL, NULL, 0, 0, 0, 0 }
/** Fill `opts` with the defaults of `version`. Errors: TL_EINVAL, TL_EVERSION. */
TL_API tl_status tl_maxpool2d_options_init(tl_maxpool2d_options *opts, unsigned int version);

/**
 * Options of tl_model_add_dense(). Defaults: linear activation, with bias,
 * Glorot-uniform kernel, zero bias.
 * Version 2 (since 1.1): `input`, kernel_initializer and bias_initializer
 * as in tl_conv2d_options (a dense kernel (in, units) has fan_in = in,
 * fan_out = units; TL_INIT_DEFAULT: Glorot-uniform kernel, zero bias), and
 * activation_alpha, leaky_relu's slope, as in tl_conv2d_options (default
 * 0.01). Every activation fuses, as in conv2d.
 */
typedef struct tl_dense_options {
    unsigned int version;    /**< TL_DENSE_OPTIONS_VERSION */
    uint32_t units;          /**< required (> 0) */
    tl_activation activation;
    int use_bias;
    const char *name;
    const tl_layer *input;   /**< version 2: the layer whose output it takes; NULL: the previous layer */
    tl_initializer kernel_initializer; /**< version 2: TL_INIT_DEFAULT: Glorot-uniform */
    tl_initializer bias_initializer;   /**< version 2: TL_INIT_DEFAULT: zeros (when use_bias) */
    float activation_alpha;  /**< version 2: leaky_relu's negative slope (0.01); finite */
} tl_dense_options;
#define TL_DENSE_OPTIONS_VERSION 2
#define TL_DENSE_OPTIONS_INIT \
    { TL_DENSE_OPTIONS_VERSION, 0, TL_ACT_LINEAR, 1, NULL, NULL, TL_INIT_DEFAULT, TL_INIT_DEFAULT, 0.01f }
/** Fill `opts` with the defaults of `version`. Errors: TL_EINVAL, TL_EVERSION. */
TL_API tl_status tl_dense_options_init(tl_dense_options *opts, unsigned int version);

/**
 * Append a layer. `out` may be NULL; otherwise it receives the new layer,
 * borrowed from the model. On error the model is unchanged.
 * Errors: TL_EINVAL (NULL model or options, zero filters/units/kernel/pool or
 * stride, unknown activation, padding or initializer, an activation_alpha
 * that is not finite, name empty, too long or already used
 * in this model; conv2d groups that do not divide the input channels and
 * the filters, a pad larger than the dilated kernel or not smaller than a
 * pool, pads with padding other than TL_PAD_EXPLICIT; the message names
 * the layer and the value), TL_EVERSION (options version unknown),
 * TL_ESHAPE (the layer cannot follow the previous output: kernel larger than
 * a valid-padded input, dense or flatten on the wrong rank, ...; the message
 * names the layer, its index and both shapes), TL_ETOOBIG (sizes overflow),
 * TL_ENOMEM.
 * Dense requires a rank-1 input: add a flatten layer after conv/pool layers.
 */
TL_API tl_status tl_model_add_conv2d(tl_layer **out, tl_model *model, const tl_conv2d_options *opts);
TL_API tl_status tl_model_add_maxpool2d(tl_layer **out, tl_model *model, const tl_maxpool2d_options *opts);
TL_API tl_status tl_model_add_dense(tl_layer **out, tl_model *model, const tl_dense_options *opts);
/** Append a flatten layer; `name` NULL for an automatic name. Errors as above. */
TL_API tl_status tl_model_add_flatten(tl_layer **out, tl_model *model, const char *name);

/*
 * Since 1.1: graph models and average pooling. `input` (NULL: the previous
 * layer, or the model's input for the first layer) must be a layer of the
 * same model; a layer of another model is TL_EINVAL. Errors otherwise as
 * for the add functions above.
 */

/** Append a flatten layer taking `input`'s output. */
TL_API tl_status tl_model_add_flatten_from(tl_layer **out, tl_model *model, const tl_layer *input,
                                           const char *name);

/**
 * Append an add layer: the element-wise sum of the outputs of `inputs[0..n)`
 * (n >= 2, at most 16; the same layer may appear twice), which must all
 * have the same shape (TL_ESHAPE names the two that differ). Keras' Add, a
 * residual connection's join. No parameters.
 */
TL_API tl_status tl_model_add_add(tl_layer **out, tl_model *model, const tl_layer *const *inputs, size_t n,
                                  const char *name);

/**
 * Append a concatenate layer: the outputs of `inputs[0..n)` (n >= 2, at most
 * 16) side by side along the last axis (the channels of (h, w, c) outputs,
 * which must agree in h and w; or flat (units) outputs). Keras'
 * Concatenate(axis=-1). No parameters.
 */
TL_API tl_status tl_model_add_concatenate(tl_layer **out, tl_model *model, const tl_layer *const *inputs,
                                          size_t n, const char *name);

/**
 * Append global average pooling: (h, w, c) -> (c), the mean of each
 * channel over h and w (Keras' GlobalAveragePooling2D, PyTorch's
 * AdaptiveAvgPool2d(1) followed by flatten). `input` NULL: the previous
 * layer. TL_ESHAPE when the input is not (h, w, c).
 */
TL_API tl_status tl_model_add_global_avgpool2d(tl_layer **out, tl_model *model, const tl_layer *input,
                                               const char *name);

/**
 * Options of tl_model_add_avgpool2d(). Defaults: 2x2 pool, stride = pool,
 * valid padding, count_include_pad 0.
 * count_include_pad: under same or explicit padding, a window at the
 * border covers zero padding. 0 divides by the number of real pixels under the window
 * (Keras' AveragePooling2D, and the default); non-zero divides by the whole
 * window inside the padded input (PyTorch's AvgPool2d default,
 * count_include_pad=True). With valid padding both are the same.
 * Version 2: pad_top, pad_bottom, pad_left, pad_right for padding
 * TL_PAD_EXPLICIT, as in tl_maxpool2d_options (PyTorch's
 * AvgPool2d(k, s, padding=p) is all four set to p).
 */
typedef struct tl_avgpool2d_options {
    unsigned int version;        /**< TL_AVGPOOL2D_OPTIONS_VERSION */
    uint32_t pool_h, pool_w;
    uint32_t stride_h, stride_w; /**< 0: the pool size, as Keras */
    tl_padding padding;
    int count_include_pad;
    const char *name;
    const tl_layer *input;       /**< NULL: the previous layer */
    uint32_t pad_top, pad_bottom, pad_left, pad_right; /**< version 2: TL_PAD_EXPLICIT only */
} tl_avgpool2d_options;
#define TL_AVGPOOL2D_OPTIONS_VERSION 2
#define TL_AVGPOOL2D_OPTIONS_INIT \
    { TL_AVGPOOL2D_OPTIONS_VERSION, 2, 2, 0, 0, TL_PAD_VALID, 0, NULL, NULL, 0, 0, 0, 0 }
/** Fill `opts` with the defaults of `version`. Errors: TL_EINVAL, TL_EVERSION. (Since 1.1.) */
TL_API tl_status tl_avgpool2d_options_init(tl_avgpool2d_options *opts, unsigned int version);

/** Append an average-pooling layer. Errors as for tl_model_add_maxpool2d(). (Since 1.1.) */
TL_API tl_status tl_model_add_avgpool2d(tl_layer **out, tl_model *model, const tl_avgpool2d_options *opts);

/**
 * Options of tl_model_add_batchnorm(). Defaults are Keras'
 * BatchNormalization's: epsilon 1e-3, momentum 0.99, center and scale on.
 *
 * momentum follows Keras' convention: after each training step
 *     moving = momentum * moving + (1 - momentum) * batch statistic,
 * so PyTorch's BatchNorm2d(momentum=0.1) is momentum 0.9 here (libtl's
 * momentum = 1 - PyTorch's), and Keras' 0.99 is PyTorch's 0.01. PyTorch's
 * default epsilon is 1e-5: set it when you rebuild a PyTorch model.
 */
typedef struct tl_batchnorm_options {
    unsigned int version;  /**< TL_BATCHNORM_OPTIONS_VERSION */
    float epsilon;         /**< added to the variance; finite and > 0 */
    float momentum;        /**< in [0, 1], Keras' convention (see above) */
    int center;            /**< non-zero: learn an offset beta (PyTorch's bias) */
    int scale;             /**< non-zero: learn a factor gamma (PyTorch's weight) */
    const char *name;      /**< NULL: automatic name (batch_normalization, batch_normalization_1, ...) */
    const tl_layer *input; /**< NULL: the previous layer */
} tl_batchnorm_options;
#define TL_BATCHNORM_OPTIONS_VERSION 1
#define TL_BATCHNORM_OPTIONS_INIT { TL_BATCHNORM_OPTIONS_VERSION, 1e-3f, 0.99f, 1, 1, NULL, NULL }
/** Fill `opts` with the defaults of `version`. Errors: TL_EINVAL, TL_EVERSION. (Since 1.1.) */
TL_API tl_status tl_batchnorm_options_init(tl_batchnorm_options *opts, unsigned int version);

/**
 * Append batch normalization over the last axis: the channels of an
 * (h, w, c) input (Keras' BatchNormalization(axis=-1), PyTorch's
 * BatchNorm2d on NCHW) or the units of a flat one (PyTorch's
 * BatchNorm1d). Output shape = input shape.
 *
 * Tensors, in this order (tl_layer_num_params() counts them all):
 * gamma (c, ones; when `scale`), beta (c, zeros; when `center`) - trained
 * parameters - and moving_mean (c, zeros) and moving_variance (c, ones):
 * state, which the layer updates itself. State is saved and loaded with
 * the model (checkpoint, safetensors as <name>.moving_mean or, in the
 * PyTorch layout, <name>.running_mean and <name>.running_var), copied by
 * tl_model_copy, the extractors and tl_model_transfer_params (a structure
 * clone starts again from zeros and ones), but never gets a gradient or an
 * optimizer update; the summary counts it as non-trainable.
 *
 * Training (tl_model_fit, tl_model_train_step) of a trainable layer
 * normalizes each channel with the batch's mean and biased variance over
 * its batch x h x w values, y = gamma * (x - mean) / sqrt(var + epsilon) +
 * beta, the gradient flowing through those statistics; and then moves the
 * moving statistics towards the batch's mean and unbiased variance
 * (var * n / (n - 1), as PyTorch's running_var). Inference (predict,
 * evaluate, extractors) uses the moving statistics and changes nothing.
 * A batch whose statistics are not finite leaves them as they were; but
 * the update happens in the forward pass, so a step that then fails with
 * TL_ENUMERIC further up (a non-finite loss or gradient from finite
 * statistics) has already moved them, although it updates no parameter.
 *
 * **A frozen batch normalization layer (tl_layer_set_trainable(layer, 0),
 * tl_model_freeze_upto, a frozen extractor) runs in inference mode also
 * while the model trains, and keeps its statistics** - Keras' rule since
 * 2.1.3, and what fine-tuning on a small data set needs: its four tensors
 * stay bit for bit as they were, and the gradient passes through it as
 * dy * gamma / sqrt(moving_variance + epsilon). (PyTorch's module.eval() on
 * the BN modules does the same; its requires_grad = False alone does not.)
 *
 * Results do not depend on the thread count; a training step allocates
 * nothing for the layer (its scratch is part of the model's workspace).
 * `out` may be NULL; otherwise it receives the new layer, borrowed from
 * the model. On error the model is unchanged. Errors as for the add
 * functions above; TL_EINVAL when epsilon is not finite and > 0 or
 * momentum is outside [0, 1] or NaN (the message names the layer and the
 * value); TL_ESHAPE when the input is neither (h, w, c) nor flat. Thread
 * safety: as every call on a model, not concurrently with another call on
 * the same model. (Since 1.1.)
 */
TL_API tl_status tl_model_add_batchnorm(tl_layer **out, tl_model *model, const tl_batchnorm_options *opts);

/**
 * Options of tl_model_add_dropout(). Default rate 0.5 (PyTorch's default;
 * Keras' Dropout has none).
 * In training (fit, train_step) each value is kept with probability
 * 1 - rate and scaled by 1 / (1 - rate), or set to 0 (inverted dropout, as
 * Keras and PyTorch); in inference (predict, evaluate, extractors) the
 * layer passes its input through unchanged. The masks come from the
 * model's training random stream (the one that shuffles, seeded by the
 * model's seed or tl_fit_options.seed and saved in checkpoints): training
 * repeats bit for bit for a given seed and thread count, and a run resumed
 * from a checkpoint continues exactly; the masks themselves do not depend
 * on the thread count. Models without dropout draw nothing more from the
 * stream than before.
 */
typedef struct tl_dropout_options {
    unsigned int version;  /**< TL_DROPOUT_OPTIONS_VERSION */
    float rate;            /**< fraction of values dropped, in [0, 1) */
    const char *name;      /**< NULL: automatic name (dropout, dropout_1, ...) */
    const tl_layer *input; /**< NULL: the previous layer */
} tl_dropout_options;
#define TL_DROPOUT_OPTIONS_VERSION 1
#define TL_DROPOUT_OPTIONS_INIT { TL_DROPOUT_OPTIONS_VERSION, 0.5f, NULL, NULL }
/** Fill `opts` with the defaults of `version`. Errors: TL_EINVAL, TL_EVERSION. (Since 1.1.) */
TL_API tl_status tl_dropout_options_init(tl_dropout_options *opts, unsigned int version);

/**
 * Append a dropout layer (Keras' Dropout, PyTorch's nn.Dropout); any input
 * shape, output shape = input shape, no parameters. Errors as for the add
 * functions above; TL_EINVAL when the rate is outside [0, 1) or NaN (the
 * message names the layer and the value). (Since 1.1.)
 */
TL_API tl_status tl_model_add_dropout(tl_layer **out, tl_model *model, const tl_dropout_options *opts);

/**
 * Options of tl_model_add_activation(). Default: relu.
 * `alpha` is leaky_relu's slope for x < 0 (ignored by the others); its
 * default 0.01 is PyTorch's LeakyReLU default (Keras' LeakyReLU has 0.3:
 * set it when you rebuild a Keras model).
 */
typedef struct tl_activation_options {
    unsigned int version;     /**< TL_ACTIVATION_OPTIONS_VERSION */
    tl_activation activation; /**< any value of tl_activation */
    float alpha;              /**< leaky_relu's negative slope; finite */
    const char *name;         /**< NULL: automatic name (activation, activation_1, ...) */
    const tl_layer *input;    /**< NULL: the previous layer */
} tl_activation_options;
#define TL_ACTIVATION_OPTIONS_VERSION 1
#define TL_ACTIVATION_OPTIONS_INIT { TL_ACTIVATION_OPTIONS_VERSION, TL_ACT_RELU, 0.01f, NULL, NULL }
/** Fill `opts` with the defaults of `version`. Errors: TL_EINVAL, TL_EVERSION. (Since 1.1.) */
TL_API tl_status tl_activation_options_init(tl_activation_options *opts, unsigned int version);

/**
 * Append an activation layer: y = activation(x) element by element, softmax
 * over the last axis (Keras' Activation / LeakyReLU / ReLU(max_value=6),
 * PyTorch's nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.SiLU, nn.Hardswish,
 * nn.Hardsigmoid, nn.Softmax(dim=-1 of NHWC), ...). Any input shape; no
 * parameters. Its backward pass uses the layer's input, as conv2d's and
 * dense's do for the activations that need it. Needed after an add (a
 * residual block's ReLU) or a batch normalization. As the last layer
 * of a classifier, softmax counts as the model's output activation for the
 * losses (as conv2d's or dense's would). Errors as for the add functions
 * above; TL_EINVAL for an unknown activation or an alpha that is not
 * finite. (Since 1.1.)
 */
TL_API tl_status tl_model_add_activation(tl_layer **out, tl_model *model, const tl_activation_options *opts);

/**
 * Options of tl_model_add_normalization(). Defaults: no statistics given
 * (mean 0, std 1, as many channels as the input's last axis), scale 1,
 * offset 0: the identity until the statistics are set.
 *
 * - channels: the length of `mean` and `std`; it must equal the input's
 *   last axis (TL_ESHAPE otherwise). 0: the input's last axis, and then
 *   mean and std must be NULL (TL_EINVAL: libtl would not know how many
 *   values to read).
 * - mean: `channels` finite values, copied; NULL: zeros.
 * - std: `channels` values, each finite and > 0, copied; NULL: ones.
 *   (Standard deviations, as torchvision's Normalize takes them. From a
 *   Keras Normalization layer's weights, std = sqrt(variance).)
 * - scale, offset: applied first, x * scale + offset (Keras' Rescaling):
 *   scale 1/255 takes 8-bit pixel values to [0, 1], as torchvision's
 *   ToTensor does. scale finite and not 0, offset finite.
 */
typedef struct tl_normalization_options {
    unsigned int version;  /**< TL_NORMALIZATION_OPTIONS_VERSION */
    uint32_t channels;     /**< length of mean and std; 0: the input's last axis (mean, std NULL) */
    const float *mean;     /**< per-channel mean (after scale and offset); NULL: 0 */
    const float *std;      /**< per-channel standard deviation, > 0; NULL: 1 */
    float scale;           /**< applied first: x * scale + offset; finite, not 0 */
    float offset;          /**< finite */
    const char *name;      /**< NULL: automatic name (normalization, normalization_1, ...) */
    const tl_layer *input; /**< NULL: the previous layer (or the model's input) */
} tl_normalization_options;
#define TL_NORMALIZATION_OPTIONS_VERSION 1
#define TL_NORMALIZATION_OPTIONS_INIT { TL_NORMALIZATION_OPTIONS_VERSION, 0, NULL, NULL, 1.0f, 0.0f, NULL, NULL }
/** Fill `opts` with the defaults of `version`. Errors: TL_EINVAL, TL_EVERSION. (Since 1.1.) */
TL_API tl_status tl_normalization_options_init(tl_normalization_options *opts, unsigned int version);

/**
 * Append a normalization layer: the preprocessing inside the model, so that
 * a saved model predicts from raw inputs and a deployment cannot forget
 * it. Over the last axis - the channels of an (h, w, c) input, the units
 * of a flat one - each value x of channel k becomes
 *     y = (x * scale + offset - mean[k]) / std[k]
 * (computed in float in that order; with scale 1 and offset 0 exactly
 * tl_dataset_standardize()'s (x - mean) / std). Keras' Rescaling followed
 * by Normalization; torchvision's ToTensor and Normalize. Output shape =
 * input shape. Usually the first layer, but any layer's output will do.
 *
 * Tensors: mean (c) and std (c), state: never trained (no gradient, no
 * optimizer update; frozen or not makes no difference), counted as
 * non-trainable by the summary, saved and loaded with the model
 * (checkpoint; safetensors as <name>.mean and <name>.std in both
 * layouts), copied by tl_model_copy, the extractors and
 * tl_model_transfer_params, and - unlike other tensors - also by
 * tl_model_clone_structure, and kept by tl_model_init_params: they belong
 * to the data, not to the training. Set them later with
 * tl_layer_set_weights() (index 0 mean, 1 std) or
 * tl_layer_normalization_adapt(). The gradient flows through the layer to
 * the layers below (dx = dy * scale / std).
 *
 * `out` may be NULL; otherwise it receives the new layer, borrowed from
 * the model. On error the model is unchanged. Errors as for the add
 * functions above; TL_EINVAL when scale is 0 or not finite, offset is not
 * finite, a mean is not finite or a std is not finite and > 0 (the message
 * names the option, the channel and the value), or mean or std is given
 * with channels 0; TL_ESHAPE when channels differs from the input's last
 * axis. A model loaded from a file whose std is not > 0 is refused when it
 * runs (TL_EINVAL, naming the layer and the channel). (Since 1.1.)
 */
TL_API tl_status tl_model_add_normalization(tl_layer **out, tl_model *model, const tl_normalization_options *opts);

/**
 * Set a normalization layer's mean and std to the per-channel statistics
 * of dataset `ds` as the layer sees it, after its scale and offset: the
 * mean and the population standard deviation of x * scale + offset over
 * every pixel of every example (Keras' Normalization.adapt(); for scale 1,
 * offset 0 the values tl_dataset_channel_stats() returns). The dataset's
 * channels must be the layer's; its images are what the layer takes in,
 * so adapt the first layer of a model with the training set (for a layer
 * deeper in a model, pass the outputs of the layers before it).
 * A constant channel (std 0, or below 1e-6 of its mean's magnitude, where
 * float rounding is all that is left) gets std 1 - its values then all
 * become 0 up to rounding - and is counted in *out_constant (may be NULL),
 * so the caller can say so.
 * Errors (the layer unchanged): TL_EINVAL (NULL layer or dataset; the layer
 * is not a normalization layer), TL_ESHAPE (the channel counts differ),
 * TL_ERANGE (the dataset has values that are not finite, or statistics
 * that do not fit a float: the message names the channel), TL_ENOMEM.
 * Thread safety: as every call on a model; `ds` is only read. (Since 1.1.)
 */
TL_API tl_status tl_layer_normalization_adapt(tl_layer *layer, const tl_dataset *ds, uint32_t *out_constant);

/**
 * Remove the last `count` layers (to put a new head on a model). Their
 * handles become invalid. Errors: TL_EINVAL (NULL, or the removal would
 * leave an earlier layer whose output nothing uses, such as one branch of
 * a residual block whose add is removed: the message names it; the model
 * is unchanged), TL_ERANGE (count larger than the number of layers). The
 * model's optimizer state is reset.
 */
TL_API tl_status tl_model_pop_layers(tl_model *model, size_t count);

/** Number of layers (0 when NULL). */
TL_API size_t tl_model_num_layers(const tl_model *model);

/**
 * Borrow the layer at `index`, or the layer called `name`.
 * Errors: TL_EINVAL (NULL), TL_ERANGE (index too large), TL_ENOTFOUND (name).
 */
TL_API tl_status tl_model_layer(tl_layer **out, const tl_model *model, size_t index);
TL_API tl_status tl_model_layer_by_name(tl_layer **out, const tl_model *model, const char *name);

/**
 * Rename a layer. Errors: TL_EINVAL (NULL, empty, longer than TL_MAX_NAME,
 * or already used by another layer of the model).
 */
TL_API tl_status tl_layer_set_name(tl_layer *layer, const char *name);

/** Input shape (h, w, c) of the model. Errors: TL_EINVAL. */
TL_API tl_status tl_model_input_shape(tl_shape *out, const tl_model *model);
/** Output shape of the last layer (the input shape when there are none). Errors: TL_EINVAL. */
TL_API tl_status tl_model_output_shape(tl_shape *out, const tl_model *model);

/** Number of float32 parameters in all layers / in trainable layers only. */
TL_API size_t tl_model_param_count(const tl_model *model);
TL_API size_t tl_model_trainable_param_count(const tl_model *model);

/**
 * Re-draw every parameter from `seed`, each tensor with its layer's
 * initializer (tl_initializer; by default Glorot-uniform kernels and zero
 * biases; batch normalization's gamma and moving variance ones, beta and
 * moving mean zeros) and reset the optimizer state. The model's seed
 * becomes `seed`.
 * Errors: TL_EINVAL (NULL).
 */
TL_API tl_status tl_model_init_params(tl_model *model, uint64_t seed);

/**
 * Render the Keras-style summary table (layer name and type, output shape,
 * parameters, trainable; then totals) into `buf` of `cap` bytes, always
 * NUL-terminated when cap > 0. `needed` (may be NULL) receives the full length
 * without the NUL, so a caller can size a buffer with a first call using
 * cap 0 (buf may then be NULL): that size query returns TL_OK. A graph
 * model's table has a "Connected to" column naming each layer's inputs.
 * Errors: TL_EINVAL (model NULL, or buf NULL with cap > 0), TL_ETOOBIG (cap
 * too small, other than the size query: the text is cut, *needed tells the
 * size).
 */
TL_API tl_status tl_model_summary(char *buf, size_t cap, size_t *needed, const tl_model *model);

/** The same summary, written in pieces to `write`. Errors: TL_EINVAL, TL_ECANCELED. */
TL_API tl_status tl_model_summary_write(const tl_model *model, tl_write_fn write, void *payload);

/**
 * Number of threads this model's computations use (libtl's loops and BLIS,
 * passed to BLIS per call, never through BLIS's global setting). 0 means
 * the number of online CPUs, which is the default.
 * Before the first BLIS call of the process, libtl selects BLIS's kernel
 * family from the CPU's features by setting BLIS_ARCH_TYPE (AVX-512 -> skx,
 * AVX2+FMA -> haswell) unless the environment already sets it; see
 * tl_backend_info(). Errors: TL_EINVAL (NULL, or more than 1024 threads).
 */
TL_API tl_status tl_model_set_threads(tl_model *model, uint32_t threads);
/** The thread count in use (after resolving 0); 0 when NULL. */
TL_API uint32_t tl_model_threads(const tl_model *model);

/**
 * Run the model on `n` examples (`inputs`: n x h x w x c floats, NHWC) and
 * write the last layer's outputs (n x output count floats) to `out`, of
 * `out_count` floats. Inputs are processed in chunks of at most `batch_size`
 * (0 means 64). Layers run in inference mode. A chunk of at least two
 * examples per thread is split over the model's threads, each running the
 * whole model on pieces of it with its own workspace and its own copy of
 * the folded convolution kernels (memory: about one such copy per
 * thread); the outputs are the same bits for any thread count.
 * Errors: TL_EINVAL (NULL, n 0), TL_ESHAPE (out_count is not n times the
 * output size), TL_ESTATE (model has no layers), TL_ENOMEM.
 */
TL_API tl_status tl_model_predict(float *out, size_t out_count, tl_model *model, const float *inputs,
                                  size_t n, uint32_t batch_size);

#ifdef __cplusplus
}
#endif

#endif /* TL_MODEL_H */
