/*
 * onnx_write.h - the graph builder's state, shared by the builder
 * (onnx_graph.c, whose interface for the layer kinds is onnx_export.h) and
 * the writer that drives it (onnx_save.c). Nothing else includes it.
 */
#ifndef TLI_IO_ONNX_WRITE_H
#define TLI_IO_ONNX_WRITE_H

#include "../model.h"
#include "file.h"
#include "onnx_export.h"
#include "pb_write.h"

/* Field numbers of onnx.proto (ONNX IR 7 and 8) that libtl writes. */
enum {
    ONNX_MODEL_IR_VERSION = 1, ONNX_MODEL_PRODUCER_NAME = 2, ONNX_MODEL_PRODUCER_VERSION = 3,
    ONNX_MODEL_DOC_STRING = 6, ONNX_MODEL_GRAPH = 7, ONNX_MODEL_OPSET_IMPORT = 8, ONNX_MODEL_METADATA = 14,
    ONNX_OPSET_DOMAIN = 1, ONNX_OPSET_VERSION = 2,
    ONNX_ENTRY_KEY = 1, ONNX_ENTRY_VALUE = 2,
    ONNX_GRAPH_NODE = 1, ONNX_GRAPH_NAME = 2, ONNX_GRAPH_INITIALIZER = 5, ONNX_GRAPH_DOC_STRING = 10,
    ONNX_GRAPH_INPUT = 11, ONNX_GRAPH_OUTPUT = 12,
    ONNX_NODE_INPUT = 1, ONNX_NODE_OUTPUT = 2, ONNX_NODE_NAME = 3, ONNX_NODE_OP_TYPE = 4,
    ONNX_NODE_ATTRIBUTE = 5,
    ONNX_ATTR_NAME = 1, ONNX_ATTR_F = 2, ONNX_ATTR_I = 3, ONNX_ATTR_INTS = 8, ONNX_ATTR_TYPE = 20,
    ONNX_ATTR_TYPE_FLOAT = 1, ONNX_ATTR_TYPE_INT = 2, ONNX_ATTR_TYPE_INTS = 7,
    ONNX_TENSOR_DIMS = 1, ONNX_TENSOR_DATA_TYPE = 2, ONNX_TENSOR_NAME = 8, ONNX_TENSOR_RAW_DATA = 9,
    ONNX_TENSOR_FLOAT = 1,
    ONNX_VALUE_NAME = 1, ONNX_VALUE_TYPE = 2,
    ONNX_TYPE_TENSOR = 1, ONNX_TYPE_TENSOR_ELEM_TYPE = 1, ONNX_TYPE_TENSOR_SHAPE = 2,
    ONNX_SHAPE_DIM = 1, ONNX_DIM_VALUE = 1, ONNX_DIM_PARAM = 2
};

/* Most dims of an initializer. */
#define TLI_ONNX_MAX_RANK 4

struct tli_onnx {
    const tl_model *m;
    int64_t opset;
    bool fold;
    const char *fn, *path; /* for messages */
    tl_status st;          /* the first error (its message is set), sticky */
    const tl_layer *cur;   /* the layer being exported, for messages */
    tli_pbw nodes;         /* GraphProto.node entries, in order */
    bool in_node;
    /* Initializers are not kept: the writer runs the layers' hooks twice.
     * The first pass (file NULL) builds the nodes and only counts the
     * initializers' encoded bytes; the second writes each initializer
     * straight into the file after the nodes. */
    tli_afile *file;
    uint64_t inits_len;    /* encoded GraphProto.initializer entries, in bytes */
    /* Every tensor name made so far (their strings are in `strs`), to keep
     * them unique as ONNX requires. */
    const char **tensors;
    size_t ntensors, cap_tensors;
    char **strs; /* owned strings */
    size_t nstrs, cap_strs;
    const char *input;  /* the tensor the layers read as the model's input (NCHW) */
    const char **out;   /* per layer: its output tensor; NULL until it is made */
    bool *absorbed;     /* per layer: done by the layer before it */
    tl_shape *chw;      /* per layer: rank 3: its output is the (c, h, w) flattening of this shape */
    /* The initializer being filled. */
    float *scratch;
    size_t scratch_cap, init_count, init_rank;
    const char *init_name;
    int64_t init_dims[TLI_ONNX_MAX_RANK];
};

/* Set up g for model m (zero-filled g); TL_ENOMEM. */
tl_status tli_onnx_setup(tli_onnx *g, const tl_model *m, int64_t opset, bool fold, const char *fn,
                         const char *path);
/* Forget the first pass's names, outputs and nodes, for the second pass
 * writing to `file` (the nodes are made again: the caller may compare). */
void tli_onnx_second_pass(tli_onnx *g, tli_afile *file);
void tli_onnx_release(tli_onnx *g);
/* An owned copy of s (or of "<a><sep><b>" when b is not NULL); NULL after
 * an error. */
const char *tli_onnx_str(tli_onnx *g, const char *a, const char *sep, const char *b);
/* Record tensor name `name` as made; an error when it was made before. */
void tli_onnx_claim(tli_onnx *g, const char *name);
/* Record an error (message already set by tli_error) unless one is. */
void tli_onnx_fail(tli_onnx *g, tl_status st);

#endif /* TLI_IO_ONNX_WRITE_H */
