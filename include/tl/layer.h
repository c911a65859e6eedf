/*
 * tl/layer.h - layer handles: kinds, shapes, parameters, freezing.
 *
 * A tl_layer is always owned by the tl_model it was added to: the handle is
 * borrowed, valid until the model is freed or the layer is removed from it
 * (tl_model_pop_layers()), and must never be freed by the caller.
 *
 * Tensors are float32 in NHWC order (batch, height, width, channels).
 * Parameter layouts follow Keras: a conv2d kernel is (kh, kw, in_channels,
 * filters), a dense kernel is (inputs, units), biases are (filters) and
 * (units). A grouped conv2d's kernel is (kh, kw, in_channels / groups,
 * filters), as Keras' Conv2D(groups=...): filter f sees the channels of
 * group f / (filters / groups). A depthwise convolution (groups =
 * in_channels) with multiplier m therefore has the kernel (kh, kw, 1,
 * in_channels * m), whose values are in the same memory order as Keras'
 * DepthwiseConv2D kernel (kh, kw, in_channels, m): output channel c*m + j
 * is input channel c's j-th filter. PyTorch's weight is (filters,
 * in_channels / groups, kh, kw) in both cases.
 */
#ifndef TL_LAYER_H
#define TL_LAYER_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tl_layer tl_layer;

/** Layer kinds. Values are stored in model files and never change. */
typedef enum tl_layer_kind {
    TL_LAYER_CONV2D = 1,
    TL_LAYER_MAXPOOL2D = 2,
    TL_LAYER_FLATTEN = 3,
    TL_LAYER_DENSE = 4,
    TL_LAYER_ADD = 5,              /**< element-wise sum of its inputs (since 1.1) */
    TL_LAYER_CONCATENATE = 6,      /**< its inputs side by side along the channels (since 1.1) */
    TL_LAYER_GLOBAL_AVGPOOL2D = 7, /**< (h, w, c) -> (c): the mean over h and w (since 1.1) */
    TL_LAYER_AVGPOOL2D = 8,        /**< mean over each window (since 1.1) */
    TL_LAYER_BATCHNORM = 9,        /**< batch normalization over the channels (since 1.1) */
    TL_LAYER_DROPOUT = 10,         /**< inverted dropout in training, identity in inference (since 1.1) */
    TL_LAYER_ACTIVATION = 11,      /**< an activation on its own, any of tl_activation (since 1.1) */
    TL_LAYER_NORMALIZATION = 12    /**< fixed per-channel (x * scale + offset - mean) / std (since 1.1) */
} tl_layer_kind;

/**
 * Activations. Values are stored in files and never change. conv2d, dense
 * and the activation layer (tl_model_add_activation()) take every one;
 * leaky_relu's slope is their options' activation_alpha or alpha.
 */
typedef enum tl_activation {
    TL_ACT_LINEAR = 0,
    TL_ACT_RELU = 1,
    TL_ACT_SOFTMAX = 2,      /**< over the last axis (channels / units) */
    TL_ACT_SIGMOID = 3,
    TL_ACT_TANH = 4,
    TL_ACT_RELU6 = 5,        /**< min(max(x, 0), 6) (since 1.1) */
    TL_ACT_LEAKY_RELU = 6,   /**< x > 0 ? x : alpha * x (since 1.1) */
    TL_ACT_SILU = 7,         /**< x * sigmoid(x), Keras' swish (since 1.1) */
    TL_ACT_HARD_SWISH = 8,   /**< x * relu6(x + 3) / 6 (since 1.1) */
    TL_ACT_HARD_SIGMOID = 9  /**< relu6(x + 3) / 6, PyTorch's Hardsigmoid (since 1.1) */
} tl_activation;

/**
 * Padding of conv2d and the pooling layers. Values are stored in files.
 * k is the kernel's extent with its dilation, dilation * (kernel - 1) + 1.
 * PyTorch's padding=p is TL_PAD_EXPLICIT with p on all four sides; it is
 * TL_PAD_SAME only at stride 1 with k = 2p + 1 (with stride 2, 'same' pads
 * the odd row and column at the bottom and right only, PyTorch on both
 * sides, and the outputs differ).
 */
typedef enum tl_padding {
    TL_PAD_VALID = 0,   /**< no padding: out = floor((in - k) / stride) + 1 */
    TL_PAD_SAME = 1,    /**< Keras / TensorFlow: out = ceil(in / stride), zero padding split with
                         *   the odd cell at the bottom / right */
    TL_PAD_EXPLICIT = 2 /**< zero padding given per side (the options' pad_top, pad_bottom,
                         *   pad_left, pad_right): out = floor((in + before + after - k) / stride) + 1
                         *   (since 1.1) */
} tl_padding;

/**
 * How a conv2d's or a dense layer's tensor is first drawn: the options'
 * kernel_initializer and bias_initializer (since 1.1). Values are stored in
 * files and never change.
 *
 * The fans are PyTorch's, which are also Keras' for these layouts: a
 * dense kernel (in, units) has fan_in = in and fan_out = units; a conv2d
 * kernel (kh, kw, in_channels / groups, filters) has
 * fan_in = kh * kw * in_channels / groups and fan_out = kh * kw * filters.
 * So a depthwise convolution (groups = in_channels, multiplier m) has
 * fan_in = kh * kw and fan_out = kh * kw * in_channels * m - PyTorch's
 * fan_out of its (filters, 1, kh, kw) weight, which kaiming_normal_(mode=
 * "fan_out") uses in torchvision's MobileNetV2 (the He paper's "per group"
 * fan_out would be kh * kw * m). A bias uses the fans of its layer's kernel
 * (PyTorch's rule for its default bias; Keras would use the bias's length
 * for both fans).
 *
 * "Truncated" normals are Keras' truncated_normal: a normal with the given
 * stddev / 0.87962566103423978 (the stddev of a unit normal cut at +-2),
 * values beyond two of those redrawn, so that the result has the given
 * standard deviation and |w| < 2 * stddev / 0.8796. The plain normals are
 * not truncated.
 */
typedef enum tl_initializer {
    TL_INIT_DEFAULT = 0,                 /**< the kind's default: TL_INIT_GLOROT_UNIFORM for kernels,
                                          *   TL_INIT_ZEROS for biases (libtl 1.0's draws, bit for bit) */
    TL_INIT_ZEROS = 1,                   /**< 0 */
    TL_INIT_ONES = 2,                    /**< 1 */
    TL_INIT_GLOROT_UNIFORM = 3,          /**< U(-a, a), a = sqrt(6 / (fan_in + fan_out)): Keras'
                                          *   glorot_uniform, PyTorch's xavier_uniform_ */
    TL_INIT_GLOROT_TRUNCATED_NORMAL = 4, /**< truncated normal, stddev sqrt(2 / (fan_in + fan_out)):
                                          *   Keras' glorot_normal */
    TL_INIT_HE_UNIFORM = 5,              /**< U(-a, a), a = sqrt(6 / fan_in): Keras' he_uniform, PyTorch's
                                          *   kaiming_uniform_(mode="fan_in", nonlinearity="relu") */
    TL_INIT_HE_TRUNCATED_NORMAL = 6,     /**< truncated normal, stddev sqrt(2 / fan_in): Keras' he_normal */
    TL_INIT_HE_NORMAL_FAN_OUT = 7,       /**< plain normal N(0, 2 / fan_out): PyTorch's
                                          *   kaiming_normal_(mode="fan_out", nonlinearity="relu"), what
                                          *   torchvision's ResNets and MobileNetV2 give their convolutions */
    TL_INIT_UNIFORM_INV_SQRT_FAN_IN = 8, /**< U(-a, a), a = 1 / sqrt(fan_in): PyTorch's default for
                                          *   nn.Linear and nn.Conv2d, weight (kaiming_uniform_(a=sqrt(5)))
                                          *   and bias alike */
    TL_INIT_NORMAL_STDDEV_0_01 = 9       /**< plain normal N(0, 0.01^2), no fan: torchvision's MobileNetV2
                                          *   classifier weight (nn.init.normal_(w, 0, 0.01)) */
} tl_initializer;

/** Maximum rank of a tl_shape. */
#define TL_MAX_RANK 4

/**
 * A shape without the batch axis: (h, w, c) for images, (units) after
 * flatten or dense, (kh, kw, in, out) for a conv kernel. Unused dims are 0.
 * This plain struct is part of the ABI and only changes with a major version.
 */
typedef struct tl_shape {
    uint32_t rank;
    uint32_t dims[TL_MAX_RANK];
} tl_shape;

/** Number of elements of a shape (1 for rank 0). Thread-safe. */
TL_API size_t tl_shape_count(const tl_shape *shape);

/** Description of one parameter tensor of a layer. */
typedef struct tl_param_info {
    const char *name; /**< "kernel", "bias", "gamma", "moving_mean", ...; owned by the layer */
    tl_shape shape;   /**< Keras layout, see the top of this header */
    size_t count;     /**< number of float32 values */
} tl_param_info;

/** A constant lower-case name of a kind ("conv2d", "maxpool2d", "add",
 * "concatenate", "global_avgpool2d", "avgpool2d", "batchnorm", ...), or "unknown". */
TL_API const char *tl_layer_kind_str(tl_layer_kind kind);

/** A constant lower-case name of an activation ("relu", "relu6", "leaky_relu",
 * "silu", "hard_swish", "hard_sigmoid", ...), or "unknown". */
TL_API const char *tl_activation_str(tl_activation act);

/** Kind of the layer; 0 when `layer` is NULL. */
TL_API tl_layer_kind tl_layer_get_kind(const tl_layer *layer);

/** The layer's unique name within its model (owned by the layer); "" when NULL. */
TL_API const char *tl_layer_name(const tl_layer *layer);

/** Position of the layer in its model (0 is the first layer after the input). */
TL_API size_t tl_layer_index(const tl_layer *layer);

/**
 * Number of inputs of the layer: 1 for most kinds, 2 or more for add and
 * concatenate; 0 when `layer` is NULL. (Since 1.1.)
 */
TL_API size_t tl_layer_num_inputs(const tl_layer *layer);

/**
 * Borrow the layer whose output is input `k` of `layer`, or NULL in *out
 * when that input is the model's input (the first layer of a sequential
 * model). Errors: TL_EINVAL (NULL), TL_ERANGE (k >= the number of inputs).
 * Thread-safe for concurrent readers. (Since 1.1.)
 */
TL_API tl_status tl_layer_input(tl_layer **out, const tl_layer *layer, size_t k);

/**
 * Shape of one example entering / leaving the layer.
 * Errors: TL_EINVAL when an argument is NULL.
 */
TL_API tl_status tl_layer_input_shape(tl_shape *out, const tl_layer *layer);
TL_API tl_status tl_layer_output_shape(tl_shape *out, const tl_layer *layer);

/** The fused activation of a conv2d or dense layer, the activation of an
 * activation layer; TL_ACT_LINEAR for others. */
TL_API tl_activation tl_layer_activation(const tl_layer *layer);

/** Number of parameter tensors (0 for pooling, flatten, add, concatenate, dropout and activation; 1 or 2 for
 * conv2d and dense; 2 to 4 for batchnorm, whose moving statistics count as tensors too; 2 for
 * normalization, its mean and std). */
TL_API size_t tl_layer_num_params(const tl_layer *layer);

/** Total number of float32 parameters of the layer. */
TL_API size_t tl_layer_param_count(const tl_layer *layer);

/**
 * Multiply-add work of the layer for one example, in FLOPs (2 per
 * multiply-add), as papers count a network's FLOPs: *out_forward for the
 * forward pass, *out_input_grad for the gradient with respect to its
 * input, *out_param_grad for the gradients of its parameters. conv2d
 * (groups included: a depthwise convolution counts k_h * k_w per output
 * cell) and dense count their multiply-adds; the element-wise kinds
 * (batchnorm, activations, add, pooling, ...) count 0. The training work
 * of a model is the sum of the forward figures, the parameter gradients of
 * the layers that learn and the input gradients above the lowest one.
 * Errors: TL_EINVAL (an argument is NULL). Thread-safe for concurrent
 * readers. (Since 1.1.)
 */
TL_API tl_status tl_layer_flops(double *out_forward, double *out_input_grad, double *out_param_grad,
                                const tl_layer *layer);

/**
 * Describe parameter tensor `index` (0 = kernel, 1 = bias; batchnorm: see
 * tl_model_add_batchnorm(); normalization: 0 = mean, 1 = std).
 * Errors: TL_EINVAL (NULL), TL_ERANGE (no such parameter).
 */
TL_API tl_status tl_layer_param_info(tl_param_info *out, const tl_layer *layer, size_t index);

/**
 * Copy parameter tensor `index` out to caller memory (Keras get_weights()).
 * `count` must equal the tensor's element count exactly.
 * Errors: TL_EINVAL (NULL), TL_ERANGE (no such parameter), TL_ESHAPE
 * (count differs; the message gives both sizes). Not thread-safe against a
 * concurrent fit of the same model.
 */
TL_API tl_status tl_layer_get_weights(float *out, size_t count, const tl_layer *layer, size_t index);

/**
 * Copy caller memory into parameter tensor `index` (Keras set_weights()).
 * Same errors as tl_layer_get_weights(); on error nothing is changed.
 * Optimizer state for the tensor is kept. Also TL_EINVAL for values the
 * layer cannot use: a normalization's mean not finite, or its std not
 * finite and > 0 (the message names the layer, the tensor, the channel
 * and the value).
 */
TL_API tl_status tl_layer_set_weights(tl_layer *layer, size_t index, const float *values, size_t count);

/**
 * Freeze (trainable = 0) or unfreeze (non-zero) a layer. A frozen layer's
 * parameters never change during training: no gradient is computed for them,
 * no optimizer update (not even weight decay or momentum) is applied, and no
 * optimizer state is allocated for them. A frozen batch normalization layer
 * also runs in inference mode and keeps its moving statistics (Keras' rule,
 * see tl_model_add_batchnorm()). Takes effect at the next training
 * step; no recompile is needed. Layers without parameters accept the call.
 * Errors: TL_EINVAL (NULL).
 */
TL_API tl_status tl_layer_set_trainable(tl_layer *layer, int trainable);

/** 1 when the layer is trainable, 0 when frozen or NULL. */
TL_API int tl_layer_is_trainable(const tl_layer *layer);

/**
 * Learning-rate multiplier for this layer's parameters (discriminative
 * fine-tuning): the optimizer uses lr * scale for them. Default 1.
 * Errors: TL_EINVAL (NULL, or scale negative or not finite).
 */
TL_API tl_status tl_layer_set_lr_scale(tl_layer *layer, float scale);

/** The layer's learning-rate multiplier; 0 when NULL. */
TL_API float tl_layer_lr_scale(const tl_layer *layer);

#ifdef __cplusplus
}
#endif

#endif /* TL_LAYER_H */
