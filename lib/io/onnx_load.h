/*
 * onnx_load.h - what onnx_load.c (the graph walk, values, names, weights)
 * and onnx_ops.c (one translation per ONNX operator) share.
 */
#ifndef TLI_IO_ONNX_LOAD_H
#define TLI_IO_ONNX_LOAD_H

#include "../model.h"
#include "onnx_model.h"

/* What an ONNX tensor name stands for while the graph is translated. */
typedef enum { TLI_OV_NONE = 0, TLI_OV_CONST, TLI_OV_LAYER, TLI_OV_SHAPE } tli_ov_kind;

/* In a SHAPE value: the batch size, which the graph leaves symbolic. */
#define TLI_ONNX_BATCH INT64_MIN

typedef struct tli_ov {
    const char *name;
    tli_ov_kind kind;
    const tli_onnx_tensor *t; /* CONST */
    tl_layer *layer;          /* LAYER: its output; NULL: the model's input */
    int64_t sv[TLI_ONNX_MAX_RANK]; /* SHAPE: integers computed from shapes (Shape, Gather, ...) */
    uint32_t nsv;
    bool scalar;              /* SHAPE: a rank-0 value (Gather of one index) */
    bool pooled;              /* ONNX (N, C, 1, 1) held as libtl's (c) */
    bool padded;              /* a Pad waiting for the next conv or pool */
    bool hwc;                 /* an image Transposed to (N, H, W, C): only a flatten may read it */
    bool hwc_flat;            /* flattened from such a view: features in libtl's (h, w, c) order */
    uint32_t pad[4];          /* top, bottom, left, right of that Pad */
    uint32_t uses;            /* node inputs (and graph outputs) naming it */
    int64_t consumer;         /* the node using it when uses == 1 */
    int64_t producer;         /* the node making it; -1: input or initializer */
} tli_ov;

typedef struct tli_onnx_ctx {
    const char *fn, *path;
    tli_onnx_model *om;
    tl_model *model;
    tli_ov *vals;             /* open-addressing hash table by name */
    size_t cap;
    bool *done;               /* per node: handled already (fused, constant) */
    bool *silu;               /* per node: a Sigmoid whose Mul makes a SiLU */
    int64_t batch;            /* the input's fixed batch size, or -1 */
} tli_onnx_ctx;

/* The value named `name` (NULL when unknown); with `create`, a new empty
 * one when unknown. */
tli_ov *tli_ov_find(tli_onnx_ctx *c, const char *name);
tli_ov *tli_ov_add(tli_onnx_ctx *c, const char *name);

/* An error about node n: "fn: path: byte B: node 'name' (Op, opset K): ...". */
tl_status tli_onnx_nerr(const tli_onnx_ctx *c, const tli_onnx_node *n, tl_status st, const char *fmt, ...)
    TLI_PRINTF(4, 5);
/* After a libtl call failed for node n: put the node in front of its message. */
tl_status tli_onnx_nprefix(const tli_onnx_ctx *c, const tli_onnx_node *n, tl_status st);

/* Attributes: the one named `name`, checked to be of `type` (NULL when absent). */
tl_status tli_onnx_attr_get(const tli_onnx_attr **out, const tli_onnx_ctx *c, const tli_onnx_node *n, const char *name,
                        int32_t type);
tl_status tli_onnx_get_int(int64_t *out, const tli_onnx_ctx *c, const tli_onnx_node *n, const char *name,
                            int64_t def);
tl_status tli_onnx_get_float(float *out, const tli_onnx_ctx *c, const tli_onnx_node *n, const char *name, float def);
/* INTS: exactly `want` values (or absent: *present false). */
tl_status tli_onnx_get_ints(int64_t *out, bool *present, const tli_onnx_ctx *c, const tli_onnx_node *n,
                             const char *name, size_t want);
/* STRING: the value or `def`. */
tl_status tli_onnx_get_str(const char **out, const tli_onnx_ctx *c, const tli_onnx_node *n, const char *name,
                            const char *def);

/* Input k of node n: a layer's output (TL_EUNSUPPORTED otherwise) or a
 * constant; optional inputs may be absent ("" or beyond the list: NULL). */
tl_status tli_onnx_in_layer(tli_ov **out, tli_onnx_ctx *c, const tli_onnx_node *n, size_t k);
tl_status tli_onnx_in_const(const tli_onnx_tensor **out, tli_onnx_ctx *c, const tli_onnx_node *n, size_t k,
                            bool optional);
/* A constant's values as floats in a new buffer (tli_free). */
tl_status tli_onnx_floats(float **out, tli_onnx_ctx *c, const tli_onnx_node *n, const tli_onnx_tensor *t);

/* libtl's output shape of a LAYER value (the model's input for NULL). */
tl_shape tli_onnx_shape(const tli_onnx_ctx *c, const tli_ov *v);

/* Output k of node n becomes `layer`'s output (or the constant t). */
tl_status tli_onnx_set_out(tli_onnx_ctx *c, const tli_onnx_node *n, size_t k, tl_layer *layer);

/* The name of the layer node n becomes: its weight's PyTorch prefix, or the
 * node's name made to fit libtl's rules, unique in the model; NULL
 * (automatic) when there is none. */
const char *tli_onnx_layer_name(char *buf, size_t cap, const tli_onnx_ctx *c, const tli_onnx_node *n,
                                const char *weight);

/* The optional output k of node n (a mask, indices, statistics) must be unused. */
tl_status tli_onnx_unused_out(tli_onnx_ctx *c, const tli_onnx_node *n, size_t k);

/* ---- onnx_ops.c: the translations, and what onnx_conv.c shares of them ---- */

/* Pads, strides, dilations, kernels above this: far beyond any CNN, far from overflow. */
#define TLI_ONNX_MAX_PAD 65536

/* Translate node `i`. */
tl_status tli_onnx_node_to_layers(tli_onnx_ctx *c, size_t i);

bool tli_onnx_is_op(const tli_onnx_node *n, const char *op);
/* Input k as a layer's output that no Pad waits on. */
tl_status tli_onnx_in_plain(tli_ov **v, tli_onnx_ctx *c, const tli_onnx_node *n, size_t k);
/* Input 0 as an (N, C, H, W) image: libtl (h, w, c) in *s. pad_ok: a Pad may wait on it. */
tl_status tli_onnx_in_image(tli_ov **v, tl_shape *s, tli_onnx_ctx *c, const tli_onnx_node *n, bool pad_ok);
/* Output 0 of n is layer l's output; `pooled`: ONNX (N, C, 1, 1) as libtl's (c). */
tl_status tli_onnx_out_layer(tli_onnx_ctx *c, const tli_onnx_node *n, tl_layer *l, bool pooled);
/* When n's output 0 feeds only an activation libtl fuses: it and its node (else -1). */
tl_status tli_onnx_fusable(tli_onnx_ctx *c, const tli_onnx_node *n, uint32_t rank, tl_activation *act,
                           float *alpha, int64_t *node);
/* The fused node's output is layer l's too (node -1: nothing). */
tl_status tli_onnx_finish_fused(tli_onnx_ctx *c, int64_t node, tl_layer *l);

/* ---- onnx_shape.c: the integer arithmetic exporters write around Reshape
 * (x.view(x.size(0), -1) with a dynamic batch: Shape, Gather, Unsqueeze,
 * Concat), evaluated while loading ---- */
tl_status tli_onnx_op_shape(tli_onnx_ctx *c, const tli_onnx_node *n);
tl_status tli_onnx_op_gather(tli_onnx_ctx *c, const tli_onnx_node *n);
tl_status tli_onnx_op_unsqueeze(tli_onnx_ctx *c, const tli_onnx_node *n);
tl_status tli_onnx_op_shape_concat(tli_onnx_ctx *c, const tli_onnx_node *n);
/* True when input k of n is a SHAPE value or an integer constant (so a
 * Concat of it is shape arithmetic). */
bool tli_onnx_is_shape_input(tli_onnx_ctx *c, const tli_onnx_node *n, size_t k);
/* Input k as at most `cap` integers: an INT64/INT32 constant or a SHAPE value. */
tl_status tli_onnx_in_ints(int64_t *out, size_t cap, size_t *count, bool *scalar, tli_onnx_ctx *c,
                           const tli_onnx_node *n, size_t k);

/* ---- onnx_conv.c ---- */
tl_status tli_onnx_op_conv(tli_onnx_ctx *c, const tli_onnx_node *n);
/* onnx_affine.c: Mul, Add, Sub, Div with one constant input (a chain of
 * them in that order becomes one normalization layer). */
bool tli_onnx_is_affine(tli_onnx_ctx *c, const tli_onnx_node *n);
tl_status tli_onnx_op_affine(tli_onnx_ctx *c, const tli_onnx_node *first);
tl_status tli_onnx_op_pool(tli_onnx_ctx *c, const tli_onnx_node *n, bool max);
tl_status tli_onnx_op_global_pool(tli_onnx_ctx *c, const tli_onnx_node *n, bool reduce);

#endif /* TLI_IO_ONNX_LOAD_H */
