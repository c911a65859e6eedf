/*
 * onnx_model.h - an ONNX file as read by onnx_read.c: the few messages a
 * CNN needs (ModelProto, GraphProto, NodeProto, AttributeProto,
 * TensorProto, ValueInfoProto with its TypeProto shape), every field
 * checked, every other field skipped. onnx_load.c turns it into layers.
 * docs/format-onnx.md lists the fields and the limits.
 */
#ifndef TLI_IO_ONNX_MODEL_H
#define TLI_IO_ONNX_MODEL_H

#include "pb_read.h"

/* Limits (TL_ETOOBIG beyond them). The file: protobuf's own 2 GiB. */
#define TLI_ONNX_MAX_FILE ((uint64_t)1 << 31)
#define TLI_ONNX_MAX_STRING 4096u     /* a name, op type, attribute string */
#define TLI_ONNX_MAX_NODES 100000u    /* nodes of the graph */
#define TLI_ONNX_MAX_TENSORS 100000u  /* initializers; graph inputs and outputs */
#define TLI_ONNX_MAX_IO 64u           /* inputs or outputs of a node */
#define TLI_ONNX_MAX_ATTRS 64u        /* attributes of a node */
#define TLI_ONNX_MAX_INTS 64u         /* values of an INTS or FLOATS attribute */
#define TLI_ONNX_MAX_RANK 8u          /* dimensions of a tensor or a value's shape */
#define TLI_ONNX_MAX_OPSETS 64u       /* opset_import entries */
#define TLI_ONNX_MAX_ELEMS ((uint64_t)1 << 31) /* values of one tensor */

/* TensorProto.DataType values libtl reads. */
enum {
    TLI_ONNX_FLOAT = 1,
    TLI_ONNX_INT32 = 6,
    TLI_ONNX_INT64 = 7,
    TLI_ONNX_FLOAT16 = 10,
    TLI_ONNX_DOUBLE = 11,
    TLI_ONNX_BFLOAT16 = 16
};

/* AttributeProto.AttributeType values. */
enum {
    TLI_ONNX_ATTR_FLOAT = 1,
    TLI_ONNX_ATTR_INT = 2,
    TLI_ONNX_ATTR_STRING = 3,
    TLI_ONNX_ATTR_TENSOR = 4,
    TLI_ONNX_ATTR_GRAPH = 5,
    TLI_ONNX_ATTR_FLOATS = 6,
    TLI_ONNX_ATTR_INTS = 7
};

typedef struct tli_onnx_tensor {
    const char *name;      /* "" when none */
    int32_t dtype;
    uint32_t rank;
    int64_t dims[TLI_ONNX_MAX_RANK];
    uint64_t count;        /* product of dims (1 for a scalar), at most TLI_ONNX_MAX_ELEMS */
    const uint8_t *raw;    /* raw_data, in the file's bytes */
    size_t raw_len;
    bool has_raw;
    float *floats;         /* float_data */
    size_t nfloats;
    int64_t *i64;          /* int64_data */
    size_t ni64;
    int64_t *i32;          /* int32_data (also FLOAT16 / BFLOAT16 bits) */
    size_t ni32;
    bool external;         /* data_location EXTERNAL */
    const char *location;  /* external_data "location" */
    uint64_t ext_offset, ext_length;
    bool has_length;
    uint64_t off;          /* file offset of the message */
} tli_onnx_tensor;

typedef struct tli_onnx_attr {
    const char *name;
    int32_t type;
    float f;
    int64_t i;
    const char *s;
    int64_t *ints;
    size_t nints;
    float *floats;
    size_t nfloats;
    tli_onnx_tensor *t;
    uint64_t off;
} tli_onnx_attr;

typedef struct tli_onnx_node {
    const char *name, *op_type, *domain;
    const char **inputs;   /* "" for an omitted optional input */
    size_t ninputs;
    const char **outputs;
    size_t noutputs;
    tli_onnx_attr *attrs;
    size_t nattrs;
    uint64_t off;
} tli_onnx_node;

/* A graph input or output (ValueInfoProto): its element type and shape;
 * dims[i] is -1 where the shape leaves it symbolic or unknown. */
typedef struct tli_onnx_value {
    const char *name;
    int32_t elem_type;
    bool has_shape;
    uint32_t rank;
    int64_t dims[TLI_ONNX_MAX_RANK];
    uint64_t off;
} tli_onnx_value;

typedef struct tli_onnx_arena tli_onnx_arena;

typedef struct tli_onnx_model {
    uint8_t *bytes;        /* the whole file */
    size_t len;
    tli_pb_src src;
    char *dir;             /* the model's folder, for external data */
    int64_t ir_version;
    int64_t opset;         /* of the default domain (""/"ai.onnx"); 0: not declared */
    uint64_t opset_off;
    bool has_graph;
    tli_onnx_node *nodes;
    size_t nnodes;
    tli_onnx_tensor *inits;
    size_t ninits;
    tli_onnx_value *inputs, *outputs;
    size_t ninputs, noutputs;
    tli_onnx_arena *arena; /* every allocation above but bytes and dir */
} tli_onnx_model;

/* Read and check `path`. On error nothing stays allocated. Errors:
 * TL_ENOTFOUND, TL_EIO, TL_EFORMAT, TL_ETRUNCATED, TL_ETOOBIG, TL_ENOMEM. */
tl_status tli_onnx_read(tli_onnx_model *m, const char *path, const char *fn);
void tli_onnx_free(tli_onnx_model *m);

/* The tensor's `count` values as floats (FLOAT, FLOAT16, BFLOAT16, DOUBLE;
 * raw_data, float_data, int32_data or external data), the data's size
 * checked against the shape. `what` names the tensor's use for messages. */
tl_status tli_onnx_tensor_floats(float *out, const tli_onnx_model *m, const tli_onnx_tensor *t);

/* Check that the tensor's data is all there (its size against the shape;
 * an external file's size, without reading it), before anything of its
 * size is allocated. */
tl_status tli_onnx_tensor_check(const tli_onnx_model *m, const tli_onnx_tensor *t);

/* The values of an INT64 or INT32 tensor (a shape, pads, axes): at most
 * `cap`; *n receives the count. */
tl_status tli_onnx_tensor_ints(int64_t *out, size_t cap, size_t *n, const tli_onnx_model *m,
                               const tli_onnx_tensor *t);

#endif /* TLI_IO_ONNX_MODEL_H */
