/* concatenate.c - inputs side by side along the last axis (Keras'
 * Concatenate(axis=-1)): channels of (h, w, c) inputs with equal h and w,
 * or units of flat inputs. In NHWC that is rows of h*w*batch cells, each
 * the inputs' channel runs one after another. */
#include "../io/onnx_export.h"
#include "layer.h"

static tl_status concat_build(tl_layer *l)
{
    char sa[64], sb[64];
    const tl_shape *s0 = &l->in_shapes[0];
    if (s0->rank != 1 && s0->rank != 3)
        return tli_error(TL_ESHAPE, TLI_LFMT " needs (h, w, c) or flat inputs, got %s", TLI_LARG(l),
                         tli_shape_str(s0, sa, sizeof sa));
    uint64_t last = 0;
    for (size_t k = 0; k < l->ninputs; k++) {
        const tl_shape *s = &l->in_shapes[k];
        bool ok = s->rank == s0->rank;
        for (uint32_t d = 0; ok && d + 1 < s->rank; d++)
            ok = s->dims[d] == s0->dims[d];
        if (!ok)
            return tli_error(TL_ESHAPE,
                             TLI_LFMT ": input %zu has shape %s, input 0 has %s; they may differ only in the last axis",
                             TLI_LARG(l), k, tli_shape_str(s, sa, sizeof sa), tli_shape_str(s0, sb, sizeof sb));
        last += s->dims[s->rank - 1];
    }
    tl_shape out = *s0;
    out.dims[out.rank - 1] = last > UINT32_MAX ? UINT32_MAX : (uint32_t)last;
    uint64_t count = last;
    for (uint32_t d = 0; d + 1 < out.rank; d++)
        count = tli_mul_sat(count, out.dims[d]);
    if (count > TLI_MAX_ELEMS)
        return tli_error(TL_ETOOBIG, TLI_LFMT ": the output exceeds 2^31 values", TLI_LARG(l));
    l->out_shape = out;
    l->out_size = (size_t)count;
    return TL_OK;
}

static size_t concat_scratch_bytes(const tl_layer *l, size_t batch, uint32_t threads, bool training)
{
    (void)l, (void)batch, (void)threads, (void)training;
    return 0;
}

/* Rows and the width each input has in a row. */
static size_t concat_rows(const tl_layer *l, size_t batch, size_t width[TLI_MAX_INPUTS])
{
    const tl_shape *o = &l->out_shape;
    for (size_t k = 0; k < l->ninputs; k++)
        width[k] = l->in_shapes[k].dims[o->rank - 1];
    return batch * (l->out_size / o->dims[o->rank - 1]);
}

static void concat_forward(tl_layer *l, const tli_exec *ex, const float *const *x, float *y, tl_activation act)
{
    (void)act;
    size_t width[TLI_MAX_INPUTS];
    size_t rows = concat_rows(l, ex->batch, width);
    tli_concat_rows(ex->threads, y, x, width, l->ninputs, rows);
}

static void concat_backward(tl_layer *l, const tli_exec *ex, const float *const *x, const float *y, float *dy,
                            float *const *dx, tl_activation act, bool param_grads)
{
    (void)x, (void)y, (void)act, (void)param_grads;
    size_t width[TLI_MAX_INPUTS];
    size_t rows = concat_rows(l, ex->batch, width);
    tli_split_rows(ex->threads, dx, ex->dx_acc, dy, width, l->ninputs, rows);
}

/* ONNX: Concat over axis 1, the channels (or units) in NCHW. */
static tl_status concat_onnx(const tl_layer *l, tli_onnx *g)
{
    const char *in[TLI_MAX_INPUTS];
    for (size_t k = 0; k < l->ninputs; k++)
        in[k] = tli_onnx_in(g, l, k);
    tli_onnx_node(g, "Concat", l->name, in, l->ninputs, tli_onnx_out(g, l));
    tli_onnx_attr_int(g, "axis", TLI_ONNX_CHANNEL_AXIS);
    tli_onnx_node_end(g);
    return TL_OK;
}

const tli_layer_ops tli_concatenate_ops = {
    .kind = TL_LAYER_CONCATENATE,
    .type_name = "concatenate",
    .auto_name = "concatenate",
    .min_inputs = 2,
    .max_inputs = TLI_MAX_INPUTS,
    .accumulates = true,
    .build = concat_build,
    .scratch_bytes = concat_scratch_bytes,
    .forward = concat_forward,
    .backward = concat_backward,
    .onnx_export = concat_onnx,
};
