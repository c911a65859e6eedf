/* global_avgpool2d.c - (h, w, c) -> (c), each channel's mean over the image
 * (Keras' GlobalAveragePooling2D; PyTorch's AdaptiveAvgPool2d(1) + flatten). */
#include "../io/onnx_export.h"
#include "layer.h"

static tl_status gap_build(tl_layer *l)
{
    char sb[64];
    if (l->in_shape.rank != 3)
        return tli_error(TL_ESHAPE, TLI_LFMT " needs an (h, w, c) input, got %s", TLI_LARG(l),
                         tli_shape_str(&l->in_shape, sb, sizeof sb));
    l->out_shape = tli_shape1(l->in_shape.dims[2]);
    l->out_size = l->in_shape.dims[2];
    return TL_OK;
}

static size_t gap_scratch_bytes(const tl_layer *l, size_t batch, uint32_t threads, bool training)
{
    (void)l, (void)batch, (void)threads, (void)training;
    return 0;
}

static void gap_forward(tl_layer *l, const tli_exec *ex, const float *const *x, float *y, tl_activation act)
{
    (void)act;
    const tl_shape *s = &l->in_shape;
    tli_global_avgpool_forward(ex->threads, s->dims[0] * s->dims[1], s->dims[2], x[0], ex->batch, y);
}

static void gap_backward(tl_layer *l, const tli_exec *ex, const float *const *x, const float *y, float *dy,
                         float *const *dx, tl_activation act, bool param_grads)
{
    (void)x, (void)y, (void)act, (void)param_grads;
    const tl_shape *s = &l->in_shape;
    if (dx[0])
        tli_global_avgpool_backward(ex->threads, s->dims[0] * s->dims[1], s->dims[2], dy, ex->batch, dx[0]);
}

/* ONNX: GlobalAveragePool gives (N, c, 1, 1); Flatten makes it libtl's (c). */
static tl_status gap_onnx(const tl_layer *l, tli_onnx *g)
{
    const char *x = tli_onnx_in(g, l, 0), *p = tli_onnx_sub(g, l, "pool");
    tli_onnx_node(g, "GlobalAveragePool", l->name, &x, 1, p);
    tli_onnx_node_end(g);
    tli_onnx_node(g, "Flatten", tli_onnx_sub(g, l, "Flatten"), &p, 1, tli_onnx_out(g, l));
    tli_onnx_attr_int(g, "axis", 1);
    tli_onnx_node_end(g);
    return TL_OK;
}

const tli_layer_ops tli_global_avgpool2d_ops = {
    .kind = TL_LAYER_GLOBAL_AVGPOOL2D,
    .type_name = "global_avgpool2d",
    .auto_name = "global_average_pooling2d",
    .min_inputs = 1,
    .max_inputs = 1,
    .build = gap_build,
    .scratch_bytes = gap_scratch_bytes,
    .forward = gap_forward,
    .backward = gap_backward,
    .onnx_export = gap_onnx,
};
