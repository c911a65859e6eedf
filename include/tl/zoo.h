/*
 * tl/zoo.h - ready-made backbones: ResNet for 32x32 inputs (He et al.
 * 2016, section 4.2), torchvision's ResNet-18/34 and MobileNetV2, built
 * with one call. Architectures only: libtl downloads no weights; load them
 * from a file (tl/io.h), e.g. a torchvision state_dict() written to
 * safetensors, loaded with TL_LAYOUT_PYTORCH.
 *
 * The builders are clients of the model API (tl/model.h): they add conv2d,
 * batch normalization, activation, add, max-pooling, global average
 * pooling, dropout and dense layers to a new model, which the caller then
 * owns and uses as any other (compile, fit, save, transfer, ...).
 *
 * Layer names are torchvision's state-dict prefixes, so that a
 * torchvision model's tensors "<prefix>.weight", "<prefix>.running_mean",
 * ... find their layer without a rename map:
 * - ResNets (both kinds): conv1, bn1, layerS.B.conv1, layerS.B.bn1,
 *   layerS.B.conv2, layerS.B.bn2, layerS.B.downsample.0 (1x1 conv) and
 *   layerS.B.downsample.1 (its BN) where the shape changes, fc. Layers
 *   without tensors get names that are no state-dict prefix: relu (after
 *   bn1), maxpool, layerS.B.relu1, layerS.B.add, layerS.B.relu2, avgpool.
 * - MobileNetV2: features.0.0 (stem conv), features.0.1 (its BN),
 *   features.0.2 (ReLU6); in inverted residual block N (1..17)
 *   features.N.conv.0.0 / .0.1 / .0.2 (expand conv, BN, ReLU6),
 *   features.N.conv.1.0 / .1.1 / .1.2 (depthwise conv, BN, ReLU6),
 *   features.N.conv.2 (project conv), features.N.conv.3 (its BN), and
 *   features.N.add for the residual sum; in block 1 (expansion 1, no
 *   expand conv) features.1.conv.0.0 / .0.1 / .0.2 (depthwise),
 *   features.1.conv.1 (project conv), features.1.conv.2 (BN);
 *   features.18.0 / .1 / .2 (last 1x1 conv to 1280, BN, ReLU6); avgpool;
 *   classifier.0 (dropout) and classifier.1 (dense).
 *
 * As in torchvision: convolutions have no bias, batch normalization has
 * epsilon 1e-5 and momentum 0.9 (PyTorch's momentum 0.1 in libtl's
 * convention, see tl_batchnorm_options), paddings are explicit (PyTorch's
 * padding=k/2), and the classifier is a linear dense layer (logits: compile
 * with TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY, which takes a linear
 * output as logits). Weights are drawn from opts->seed as torchvision
 * draws them (the layers' kernel_initializer and bias_initializer, see
 * tl_initializer in tl/layer.h, which checkpoints and structure clones
 * keep): every convolution's kernel with TL_INIT_HE_NORMAL_FAN_OUT, a plain
 * normal of variance 2 / fan_out, fan_out = kh * kw * filters (PyTorch's
 * kaiming_normal_(mode="fan_out", nonlinearity="relu"); for the depthwise
 * convolutions too, whose fan_out counts all the filters, as PyTorch's);
 * batch normalization's gamma 1 and beta 0; the ResNets' fc with nn.Linear's
 * default, TL_INIT_UNIFORM_INV_SQRT_FAN_IN for kernel and bias,
 * U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in = the input channels;
 * MobileNetV2's classifier.1 with TL_INIT_NORMAL_STDDEV_0_01, N(0, 0.01^2),
 * and a zero bias. The random numbers are libtl's, so the values are not
 * torchvision's, only their distributions. (torchvision's optional
 * zero_init_residual, gamma 0 in each block's last BN, is not done.)
 *
 * Thread safety: the builders share nothing; they may run in several
 * threads at once. The model they make follows tl/model.h's rules.
 * (Since 1.1.)
 */
#ifndef TL_ZOO_H
#define TL_ZOO_H

#include "common.h"
#include "model.h"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * Options of the zoo builders. Fill with TL_ZOO_OPTIONS_INIT or
 * tl_zoo_options_init(), then set what differs. Defaults: 10 classes,
 * 32 x 32 x 3 inputs, width multiplier 1, seed 0, no dropout (MobileNetV2
 * has its own default, see tl_zoo_mobilenet_v2), cifar_stem off.
 */
typedef struct tl_zoo_options {
    unsigned int version;     /**< TL_ZOO_OPTIONS_VERSION */
    uint32_t num_classes;     /**< width of the dense head "fc" / "classifier.1"; 0: no head, the
                                   model ends at global average pooling ("avgpool") */
    uint32_t input_h, input_w, input_channels; /**< the model's input shape (h, w, c) */
    float width_mult;         /**< MobileNetV2's width multiplier, > 0 (0 means 1.0); ignored by ResNets */
    uint64_t seed;            /**< the model's seed (tl_model_create) */
    float dropout;            /**< dropout rate before the dense head, in [0, 1); 0: none (MobileNetV2:
                                   0 means torchvision's 0.2, a negative value none) */
    int cifar_stem;           /**< MobileNetV2: non-zero puts the stem and the first stride-2 stage at
                                   stride 1, for 32 x 32 inputs; ignored by ResNets */
} tl_zoo_options;
#define TL_ZOO_OPTIONS_VERSION 1
#define TL_ZOO_OPTIONS_INIT { TL_ZOO_OPTIONS_VERSION, 10, 32, 32, 3, 1.0f, 0, 0.0f, 0 }
/** Fill `opts` with the defaults of `version`. Errors: TL_EINVAL, TL_EVERSION. (Since 1.1.) */
TL_API tl_status tl_zoo_options_init(tl_zoo_options *opts, unsigned int version);

/**
 * Build a ResNet for small (CIFAR, 32 x 32) inputs, He et al. 2016, section
 * 4.2: `depth` = 6n + 2 with n in {3, 5, 7, 9} (ResNet-20, -32, -44, -56).
 * conv1 (3x3, 16 filters, pad 1) - bn1 - relu; three stages layer1..layer3
 * of n BasicBlocks with 16, 32 and 64 channels, the first block of layer2
 * and layer3 at stride 2 with a projection shortcut (downsample.0: 1x1
 * conv, stride 2; downsample.1: BN); avgpool (global); fc (dense,
 * num_classes units, linear). A BasicBlock is conv1 (3x3, stride s) - bn1 -
 * relu1 - conv2 (3x3) - bn2 - add (with the input or the downsample) -
 * relu2. Names as in the header's comment. ResNet-20 with 10 classes has
 * 272,474 trainable parameters (He's option A shortcuts, without the two
 * projections, would have 269,722).
 * `opts` NULL: TL_ZOO_OPTIONS_INIT. Inputs of at least 8 x 8.
 * Ownership: the caller owns *out (tl_model_free()).
 * Errors: TL_EINVAL (out NULL, a depth not listed above - the message lists
 * the allowed ones -, an input smaller than 8 x 8 or with 0 channels, a
 * dropout rate outside [0, 1)), TL_EVERSION (options version), TL_ETOOBIG,
 * TL_ENOMEM; the message starts with the function's name. On error *out
 * is NULL and nothing is left allocated. (Since 1.1.)
 */
TL_API tl_status tl_zoo_resnet_cifar(tl_model **out, int depth, const tl_zoo_options *opts);

/**
 * Build torchvision's ResNet-18 or ResNet-34 (`depth` 18 or 34): conv1
 * (7x7, stride 2, pad 3, 64 filters) - bn1 - relu - maxpool (3x3, stride 2,
 * pad 1); layer1..layer4 of BasicBlocks ([2, 2, 2, 2] or [3, 4, 6, 3])
 * with 64, 128, 256 and 512 channels, the first block of layer2..layer4 at
 * stride 2 with downsample.0 (1x1 conv, stride 2) and downsample.1 (BN);
 * avgpool (global); fc. Blocks as in tl_zoo_resnet_cifar(). ResNet-18 with
 * 1000 classes has 11,689,512 trainable parameters, as torchvision's.
 * Inputs of at least 32 x 32 (torchvision's own lower limit is lower, but
 * the last stage is then 1 x 1 anyway). `opts` NULL: TL_ZOO_OPTIONS_INIT.
 * Ownership, errors (depths 18 and 34; inputs smaller than 32 x 32) and
 * thread safety as tl_zoo_resnet_cifar(). (Since 1.1.)
 */
TL_API tl_status tl_zoo_resnet(tl_model **out, int depth, const tl_zoo_options *opts);

/**
 * Build torchvision's MobileNetV2: features.0 (3x3 conv, stride 2, pad 1,
 * 32 * width_mult filters, BN, ReLU6); 17 inverted residual blocks with
 * the settings (expansion t, channels c, repeats n, stride s) = (1, 16, 1,
 * 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160,
 * 3, 2), (6, 320, 1, 1), each an expand 1x1 conv + BN + ReLU6 (absent when
 * t = 1), a depthwise 3x3 conv (stride s in a group's first block, pad 1)
 * + BN + ReLU6 and a linear project 1x1 conv + BN, plus the input when the
 * stride is 1 and the channels agree; features.18 (1x1 conv to
 * max(1280, 1280 * width_mult), BN, ReLU6); avgpool (global);
 * classifier.0 (dropout) and classifier.1 (dense). Channels are rounded as
 * torchvision's _make_divisible(c * width_mult, 8). Names as in the
 * header's comment.
 * opts->dropout: 0 means torchvision's 0.2, a value in (0, 1) that rate, a
 * negative value no dropout layer (the dense layer keeps its name
 * classifier.1). With 1000 classes and width 1 the model has 3,504,872
 * trainable parameters, as torchvision's. opts->cifar_stem puts features.0
 * and the first block of the (6, 24, 2, 2) group at stride 1 (a 32 x 32
 * input then reaches the last stage at 4 x 4 instead of 1 x 1).
 * Inputs of at least 32 x 32 (16 x 16 with cifar_stem). `opts` NULL:
 * TL_ZOO_OPTIONS_INIT.
 * Ownership, errors (width_mult negative or not finite, a dropout rate of
 * 1 or more, an input too small)
 * and thread safety as tl_zoo_resnet_cifar(). (Since 1.1.)
 */
TL_API tl_status tl_zoo_mobilenet_v2(tl_model **out, const tl_zoo_options *opts);

#ifdef __cplusplus
}
#endif

#endif /* TL_ZOO_H */
