/*
 * onnx_export.h - the ONNX graph being written, as a layer kind sees it
 * while it exports itself (its ops' onnx_export hook, in lib/layers/).
 *
 * The writer (onnx_save.c) walks the model's layers in order and asks each
 * kind to add its nodes and initializers here; this file's functions
 * (onnx_graph.c) encode them straight into protobuf and keep the names.
 *
 * Conventions every hook follows:
 *  - Layout: an (h, w, c) tensor of libtl is an (N, c, h, w) tensor of the
 *    graph, a flat (units) one is (N, units); so weights are permuted to
 *    ONNX's layouts (a conv kernel (kh, kw, in, out) becomes OIHW) and
 *    per-channel constants of an (h, w, c) tensor have the shape (c, 1, 1).
 *    One exception: a flatten followed only by dense layers leaves its
 *    output in ONNX's (c, h, w) order, and those dense layers permute their
 *    kernel's rows (tli_onnx_chw_input).
 *  - Names: a layer's output tensor is called as the layer
 *    (tli_onnx_out), its other tensors and nodes "<layer>/<what>"
 *    (tli_onnx_sub), its weights "<layer>.<PyTorch name>" ("conv1.weight",
 *    "bn1.running_mean"), so a user recognizes them and a PyTorch state
 *    dict maps onto them.
 *  - Two passes: the writer runs every hook twice (the first pass makes
 *    the nodes and measures the weights, the second writes the weights to
 *    the file), so a hook must do the same both times - it does, being a
 *    function of the layer and the options alone.
 *  - Errors are sticky: a failed allocation or a name used twice marks the
 *    graph, later calls do nothing (the name functions return NULL, which
 *    the others accept), and the writer reports the first error after the
 *    hook. A hook returns its own errors (TL_EUNSUPPORTED with the layer's
 *    name) itself.
 */
#ifndef TLI_IO_ONNX_EXPORT_H
#define TLI_IO_ONNX_EXPORT_H

#include "../layers/layer.h"

typedef struct tli_onnx tli_onnx;

/* The opset the file declares (13 to 17) and the caller's fold_batchnorm. */
int64_t tli_onnx_opset(const tli_onnx *g);
bool tli_onnx_folding(const tli_onnx *g);

/* The tensor that feeds input k of layer l. */
const char *tli_onnx_in(const tli_onnx *g, const tl_layer *l, size_t k);
/* The name layer l's output must have (its own name); calling it records
 * that l made its output. */
const char *tli_onnx_out(tli_onnx *g, const tl_layer *l);
/* "<layer>/<what>": the name of another tensor or a node of layer l. */
const char *tli_onnx_sub(tli_onnx *g, const tl_layer *l, const char *what);
/* "<layer>.<what>": the name of one of layer l's weights. */
const char *tli_onnx_weight(tli_onnx *g, const tl_layer *l, const char *what);

/* Layer l adds no node: its output is tensor `name` (dropout; the layer a
 * convolution folded into itself). Its (c, h, w) mark follows. */
void tli_onnx_alias(tli_onnx *g, const tl_layer *l, const char *name);

/* A node: op_type `op`, node name `name`, `nin` inputs (a NULL one is an
 * omitted optional input, written as ""), one output. Attributes follow,
 * then tli_onnx_node_end(). */
void tli_onnx_node(tli_onnx *g, const char *op, const char *name, const char *const *in, size_t nin,
                   const char *out);
void tli_onnx_attr_int(tli_onnx *g, const char *name, int64_t v);
void tli_onnx_attr_float(tli_onnx *g, const char *name, float v);
void tli_onnx_attr_ints(tli_onnx *g, const char *name, const int64_t *v, size_t n);
void tli_onnx_node_end(tli_onnx *g);

/* A float initializer called `name` of `rank` dims (rank 0: a scalar):
 * tli_onnx_init() returns a buffer of the product of dims floats (zeros)
 * for the caller to fill - or NULL, when there is nothing to fill (after
 * an error, or in the writer's first pass, which only measures) - and
 * tli_onnx_init_end() writes it. */
float *tli_onnx_init(tli_onnx *g, const char *name, size_t rank, const int64_t *dims);
void tli_onnx_init_end(tli_onnx *g);
/* A scalar initializer in one call. */
void tli_onnx_scalar(tli_onnx *g, const char *name, float v);

/* The one layer that takes l's output, or NULL (none, several, or l is the
 * model's last layer, whose output is the graph's). */
const tl_layer *tli_onnx_sole_consumer(const tli_onnx *g, const tl_layer *l);
/* Layer `c` (l's sole consumer) is done by l: the walk passes over it, and
 * l's nodes write c's output (tli_onnx_out(g, c)). */
void tli_onnx_absorb(tli_onnx *g, const tl_layer *l, const tl_layer *c);
/* Folding a per-channel affine consumer (batchnorm) into l's weights, for
 * a linear layer with `n` output channels: when the writer folds, l has no
 * activation and its sole consumer has a channel_affine hook, *scale
 * receives a tli_malloc'd array of 2n floats (scale, then shift; the
 * caller frees it), the consumer is absorbed and returned in *bn.
 * Otherwise both are NULL. Fails only with TL_ENOMEM. */
tl_status tli_onnx_fold_affine(tli_onnx *g, const tl_layer *l, size_t n, float **scale, const tl_layer **bn);

/* Flatten order. tli_onnx_chw_takers: every layer that takes l's output
 * (seeing through kinds that pass the order on) takes a (c, h, w)-ordered
 * flat input, and l is not the model's output. tli_onnx_set_chw: l's
 * output is the (c, h, w)-order flattening of an `hwc` tensor.
 * tli_onnx_chw_input: input k of l is such a flattening; *hwc receives the
 * shape. */
bool tli_onnx_chw_takers(const tli_onnx *g, const tl_layer *l);
void tli_onnx_set_chw(tli_onnx *g, const tl_layer *l, const tl_shape *hwc);
bool tli_onnx_chw_input(const tli_onnx *g, const tl_layer *l, size_t k, tl_shape *hwc);

/* ---- helpers the kinds share (lib/layers/onnx_act.c) ---------------------- */

/* The nodes of activation `act` (alpha: leaky_relu's slope) from tensor x
 * to tensor `out`, named after layer l. TL_ACT_LINEAR: an Identity. */
void tli_onnx_activation(tli_onnx *g, const tl_layer *l, tl_activation act, float alpha, const char *x,
                         const char *out);
/* The ONNX axis of libtl's last axis (channels or units): 1. */
#define TLI_ONNX_CHANNEL_AXIS 1
/* Dims of a per-channel constant of c values for a tensor of libtl shape s:
 * (c, 1, 1) for (h, w, c), (c) for a flat one; returns the rank. */
size_t tli_onnx_channel_dims(const tl_shape *s, uint32_t c, int64_t dims[3]);
/* The trailing pad of `out` windows of `span` cells at stride s over n
 * cells padded with `before` in front: what the last window needs past the
 * end (0 when it ends inside), as ONNX's explicit pads want it. */
int64_t tli_onnx_pad_after(uint32_t n, uint32_t span, uint32_t s, uint32_t before, uint32_t out);

#endif /* TLI_IO_ONNX_EXPORT_H */
