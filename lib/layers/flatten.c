/* flatten.c - (h, w, c) -> (h*w*c). NHWC rows are already flat, so this
 * layer is a view: it moves no data in either direction. */
#include "../io/onnx_export.h"
#include "layer.h"

static tl_status flatten_build(tl_layer *l)
{
    if (l->in_size > TLI_MAX_ELEMS)
        return tli_error(TL_ETOOBIG, TLI_LFMT ": input exceeds 2^31 values", TLI_LARG(l));
    l->out_shape = tli_shape1((uint32_t)l->in_size);
    l->out_size = l->in_size;
    return TL_OK;
}

static size_t flatten_scratch_bytes(const tl_layer *l, size_t batch, uint32_t threads, bool training)
{
    (void)l, (void)batch, (void)threads, (void)training;
    return 0;
}

/* Never called: the engine aliases a view's output to its input and passes
 * its gradient through. */
static void flatten_forward(tl_layer *l, const tli_exec *ex, const float *const *x, float *y, tl_activation act)
{
    (void)l, (void)ex, (void)x, (void)y, (void)act;
}

static void flatten_backward(tl_layer *l, const tli_exec *ex, const float *const *x, const float *y, float *dy,
                             float *const *dx, tl_activation act, bool param_grads)
{
    (void)l, (void)ex, (void)x, (void)y, (void)dy, (void)dx, (void)act, (void)param_grads;
}

/* ONNX: Flatten(axis 1) flattens (c, h, w), libtl (h, w, c). The orders
 * agree when h * w or c is 1. Otherwise, when every consumer is a dense
 * layer (seen through dropout) the output stays in ONNX's order and the
 * dense layers permute their kernel's rows - the file then looks as
 * PyTorch's export of the same network does; else a Transpose to (N, h, w,
 * c) comes first. A flat input passes as it is. */
static tl_status flatten_onnx(const tl_layer *l, tli_onnx *g)
{
    const char *x = tli_onnx_in(g, l, 0);
    const tl_shape *s = &l->in_shape;
    if (s->rank == 1) {
        tli_onnx_alias(g, l, x);
        return TL_OK;
    }
    if (s->rank == 3 && (uint64_t)s->dims[0] * s->dims[1] > 1 && s->dims[2] > 1) {
        if (tli_onnx_chw_takers(g, l)) {
            tli_onnx_set_chw(g, l, s);
        } else {
            static const int64_t perm[4] = {0, 2, 3, 1};
            const char *t = tli_onnx_sub(g, l, "nhwc");
            tli_onnx_node(g, "Transpose", tli_onnx_sub(g, l, "Transpose"), &x, 1, t);
            tli_onnx_attr_ints(g, "perm", perm, 4);
            tli_onnx_node_end(g);
            x = t;
        }
    }
    tli_onnx_node(g, "Flatten", l->name, &x, 1, tli_onnx_out(g, l));
    tli_onnx_attr_int(g, "axis", 1);
    tli_onnx_node_end(g);
    return TL_OK;
}

const tli_layer_ops tli_flatten_ops = {
    .kind = TL_LAYER_FLATTEN,
    .type_name = "flatten",
    .auto_name = "flatten",
    .min_inputs = 1,
    .max_inputs = 1,
    .is_view = true,
    .build = flatten_build,
    .scratch_bytes = flatten_scratch_bytes,
    .forward = flatten_forward,
    .backward = flatten_backward,
    .onnx_export = flatten_onnx,
    .onnx_flat = TLI_ONNX_FLAT_PASSES,
};
