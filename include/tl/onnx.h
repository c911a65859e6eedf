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

/* ---- export: tl_model_save_onnx() ---------------------------------------- */

#ifdef __cplusplus
}
#endif

#endif /* TL_ONNX_H */
