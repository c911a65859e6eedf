/* onnx_build.h - a small protobuf / ONNX writer for tests and fuzz seeds:
 * just enough to write the files test_onnx_load.c loads and damages, and
 * hostile shapes no exporter writes. Test code, not libtl. */
#ifndef TL_TEST_ONNX_BUILD_H
#define TL_TEST_ONNX_BUILD_H

#include <stddef.h>
#include <stdint.h>

/* A growable byte buffer; aborts when memory runs out (test code). */
typedef struct ob {
    uint8_t *p;
    size_t n, cap;
} ob;

void ob_free(ob *b);
void ob_raw(ob *b, const void *p, size_t n);
void ob_varint(ob *b, uint64_t v);
void ob_tag(ob *b, uint32_t num, unsigned wire);
void ob_int(ob *b, uint32_t num, int64_t v);     /* wire type 0 */
void ob_f32(ob *b, uint32_t num, float v);       /* wire type 5 */
void ob_bytes(ob *b, uint32_t num, const void *p, size_t n);
void ob_str(ob *b, uint32_t num, const char *s);
/* Append `sub` as a length-delimited field and free it. */
void ob_sub(ob *b, uint32_t num, ob *sub);

/* ONNX pieces, appended to the enclosing message: */
enum { OX_FLOAT = 1, OX_INT64 = 7, OX_FLOAT16 = 10, OX_BFLOAT16 = 16 };
/* How a float tensor's values are stored. */
typedef enum { OX_RAW_F32, OX_FLOAT_DATA, OX_RAW_F16, OX_RAW_BF16, OX_EXTERNAL } ox_store;
/* A float tensor (graph initializer: num 5; attribute tensor: num 5 too).
 * OX_EXTERNAL appends the values to *ext (raw float32) and points at
 * `location` with their offset. */
void ox_tensor_f(ob *b, uint32_t num, const char *name, const int64_t *dims, int rank, const float *v,
                 ox_store how, ob *ext, const char *location);
void ox_tensor_i64(ob *b, uint32_t num, const char *name, const int64_t *dims, int rank, const int64_t *v);
/* Attributes, appended to a node's attribute buffer. */
void ox_attr_int(ob *a, const char *name, int64_t v);
void ox_attr_float(ob *a, const char *name, float v);
void ox_attr_ints(ob *a, const char *name, const int64_t *v, int n);
void ox_attr_str(ob *a, const char *name, const char *s);
/* A node: inputs and outputs comma-separated ("x,w,b"; an empty item is an
 * omitted optional input); attrs NULL or attribute fields (freed). */
void ox_node(ob *graph, const char *op, const char *name, const char *ins, const char *outs, ob *attrs);
/* A graph input (num 11) or output (12), FLOAT, with dims (-1: symbolic). */
void ox_value(ob *graph, uint32_t num, const char *name, const int64_t *dims, int rank);
/* The model: ir_version 8, opset, the graph (freed). */
void ox_model(ob *out, int64_t opset, ob *graph);

/* The tiny CNN the format tests and the fuzz seeds share: input x (1, 2,
 * 6, 6) -> Pad (0, 0, 1, 0 / 0, 0, 0, 1: top 1, right 1) -> Conv w1 (3, 2,
 * 3, 3) + b1, pads (0, 1, 1, 0) -> Relu -> MaxPool 2x2 -> Flatten -> Gemm
 * w2 (4, 27) transB + b2 -> Softmax, output y (1, 4). Weights are
 * multiples of 1/64 (exact in every float format). `how` stores them;
 * external data goes to *ext (may be NULL otherwise). */
void ox_tiny_cnn(ob *out, int64_t opset, ox_store how, ob *ext);
/* Its weights, in the file's (NCHW, PyTorch) layout. */
void ox_tiny_weights(float *w1, float *b1, float *w2, float *b2);

#endif
