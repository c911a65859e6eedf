/*
 * tl/onnx.h - ONNX files: a whole network (graph and weights) in, a model
 * in inference form out.
 *
 * ONNX (onnx.ai) is what torch.onnx.export, tf2onnx and the model zoos hand
 * out and what deployment runtimes take in. An ONNX file is a protobuf
 * ModelProto; libtl reads and writes the few messages a CNN needs with its
 * own strict protobuf code (no protobuf library; docs/format-onnx.md says
 * which messages, fields, operators and attributes are understood).
 *
 * Layout: ONNX graphs are NCHW, libtl is NHWC. Weights are permuted on load
 * and on save, including the rows of a dense layer that follows a flatten
 * (ONNX flattens (c, h, w), libtl (h, w, c)); a user feeds libtl the usual
 * NHWC images and gets the same predictions as the ONNX model gives for
 * the same images in NCHW.
 *
 * Saving is atomic, as every save of tl/io.h. Reading treats the file as
 * hostile, as every reader of tl/io.h: wire types are checked, lengths are
 * bounded before anything is allocated, nesting and counts are limited, and
 * a broken file is an error naming the file, the byte offset and (where
 * there is one) the node - never a crash and never a half-built model.
 *
 * Thread safety: as tl/io.h.
 */
#ifndef TL_ONNX_H
#define TL_ONNX_H

#include "common.h"
#include "model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- import: tl_model_load_onnx() ---------------------------------------- */

/**
 * Options of tl_model_load_onnx(). Fill with TL_ONNX_LOAD_OPTIONS_INIT or
 * tl_onnx_load_options_init().
 */
typedef struct tl_onnx_load_options {
    unsigned int version; /**< TL_ONNX_LOAD_OPTIONS_VERSION */
    uint32_t input_height; /**< the input's height when the graph leaves it symbolic; 0 = take it from
                                the graph (an error if the graph does not fix it). A value that differs
                                from a height the graph fixes is TL_ESHAPE. */
    uint32_t input_width;  /**< likewise the width */
    uint64_t seed;         /**< seed of the model's random streams (dropout, augmentation) */
} tl_onnx_load_options;
#define TL_ONNX_LOAD_OPTIONS_VERSION 1
#define TL_ONNX_LOAD_OPTIONS_INIT { TL_ONNX_LOAD_OPTIONS_VERSION, 0, 0, 1 }
/** Fill `opts` with the defaults of `version`. Errors: TL_EINVAL, TL_EVERSION. */
TL_API tl_status tl_onnx_load_options_init(tl_onnx_load_options *opts, unsigned int version);

/**
 * Build a model from the ONNX file at `path`: the graph becomes libtl
 * layers, with the weights loaded (docs/format-onnx.md lists the operators
 * and how each maps). A layer carrying weights is named after them when
 * they have PyTorch's names ("layer1.0.conv1" from
 * "layer1.0.conv1.weight"), so a PyTorch state_dict's names map onto it;
 * other layers after their ONNX node (a leading '/' dropped, characters
 * libtl's names refuse replaced by '_', a "_1", "_2", ... suffix when
 * taken); nodes without a name get libtl's automatic names. An activation
 * node right after a Conv, Gemm or MatMul whose output nothing else reads
 * is fused into that layer. The model's input is the graph's (h, w, c) in
 * NHWC order. `*out` is set only on success; the caller owns it
 * (tl_model_free). `opts` NULL means the defaults.
 * External data (TensorProto data_location EXTERNAL) is read from files in
 * the model's folder; a location that is absolute, has a ".." component
 * or resolves outside the folder is TL_EFORMAT.
 * Errors: TL_EINVAL (NULL argument, bad options), TL_ENOTFOUND, TL_EIO,
 * TL_EFORMAT, TL_ETRUNCATED, TL_ETOOBIG (a size beyond a documented limit),
 * TL_EUNSUPPORTED (an operator, attribute value or graph shape libtl has no
 * layer for, or an opset outside 11 to 17; the message names the node, its
 * operator and the opset), TL_ESHAPE, TL_EVERSION, TL_ENOMEM. Messages
 * name the file and the byte offset (of the node or tensor concerned).
 * Thread safety: may run concurrently with any call on other models.
 */
TL_API tl_status tl_model_load_onnx(tl_model **out, const char *path, const tl_onnx_load_options *opts);

/* ---- export: tl_model_save_onnx() ---------------------------------------- */

/**
 * Options of tl_model_save_onnx(). Fill with TL_ONNX_SAVE_OPTIONS_INIT or
 * tl_onnx_save_options_init(), then set what differs.
 */
typedef struct tl_onnx_save_options {
    unsigned int version;    /**< TL_ONNX_SAVE_OPTIONS_VERSION */
    int fold_batchnorm;      /**< non-zero: each batchnorm whose input is a conv2d or dense layer without
                                  activation, and that layer's only consumer, is folded into the layer's
                                  weights and bias (fewer nodes, the form runtimes prefer); 0 (default): kept
                                  as BatchNormalization nodes */
    int nhwc_input;          /**< 0 (default): the graph's input is (N, c, h, w), as ONNX pipelines expect;
                                  non-zero: (N, h, w, c), as libtl's own input (a Transpose node first; an
                                  (h, w, c) output is then transposed back to (N, h, w, c) too) */
    int64_t opset;           /**< the ai.onnx opset to declare: 0 = 13 (default); 13 to 17 accepted */
} tl_onnx_save_options;
#define TL_ONNX_SAVE_OPTIONS_VERSION 1
#define TL_ONNX_SAVE_OPTIONS_INIT { TL_ONNX_SAVE_OPTIONS_VERSION, 0, 0, 0 }
/** Fill `opts` with the defaults of `version`. Errors: TL_EINVAL, TL_EVERSION. (Since 1.1.) */
TL_API tl_status tl_onnx_save_options_init(tl_onnx_save_options *opts, unsigned int version);

/**
 * Write `model` to `path` as an ONNX file (docs/format-onnx.md, "Export")
 * in inference form: batchnorm with its moving statistics (or folded, see
 * the options), dropout left out, normalization layers as Sub/Div nodes,
 * activations fused into conv2d and dense as nodes after them, softmax
 * included. The batch dimension is symbolic ("N"); node and weight names
 * come from the layer names ("conv1", "conv1.weight", "bn1.running_mean");
 * the metadata holds libtl's version and the layer names. ONNX Runtime
 * gives for the file, on NCHW images, the predictions tl_model_predict()
 * gives on the same images in NHWC. `opts` NULL means the defaults.
 * Atomic, as tl_model_save(): on error a previous file at `path` is
 * unchanged and no temporary file is left.
 * Errors: TL_EINVAL (NULL model or path, an opset outside 13..17, a model
 * without layers, two ONNX names that would clash), TL_EVERSION (options
 * version), TL_EUNSUPPORTED (a layer ONNX has no operator for; the message
 * names it), TL_ETOOBIG (over protobuf's 2 GiB), TL_EIO, TL_ENOMEM.
 * Thread safety: the model is only read, but must not change meanwhile.
 * (Since 1.1.)
 */
TL_API tl_status tl_model_save_onnx(const tl_model *model, const char *path, const tl_onnx_save_options *opts);

#ifdef __cplusplus
}
#endif

#endif /* TL_ONNX_H */
