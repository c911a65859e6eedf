/* onnx_act.c - what the kinds' ONNX exports share: activations as ONNX
 * operators (fused into conv2d and dense, or a layer of their own), the
 * shape of per-channel constants, and explicit pads. */
#include "../io/onnx_export.h"

/* The name of the node of `op` that writes the activation's result: an
 * activation layer's is the layer's own name, a fused one's
 * "<layer>/<op>" (the layer's name is its conv2d or dense node's). */
static const char *node_name(tli_onnx *g, const tl_layer *l, const char *op)
{
    return l->ops->is_activation ? l->name : tli_onnx_sub(g, l, op);
}

/* One node `op` from x to out. */
static void unary(tli_onnx *g, const tl_layer *l, const char *op, const char *x, const char *out)
{
    tli_onnx_node(g, op, node_name(g, l, op), &x, 1, out);
}

void tli_onnx_activation(tli_onnx *g, const tl_layer *l, tl_activation act, float alpha, const char *x,
                         const char *out)
{
    switch (act) {
    case TL_ACT_RELU:
        unary(g, l, "Relu", x, out);
        break;
    case TL_ACT_SIGMOID:
        unary(g, l, "Sigmoid", x, out);
        break;
    case TL_ACT_TANH:
        unary(g, l, "Tanh", x, out);
        break;
    case TL_ACT_SOFTMAX: /* over libtl's last axis: channels or units */
        unary(g, l, "Softmax", x, out);
        tli_onnx_attr_int(g, "axis", TLI_ONNX_CHANNEL_AXIS);
        break;
    case TL_ACT_LEAKY_RELU:
        unary(g, l, "LeakyRelu", x, out);
        tli_onnx_attr_float(g, "alpha", alpha);
        break;
    case TL_ACT_RELU6: { /* Clip, whose bounds are inputs since opset 11 */
        const char *in[3] = {x, tli_onnx_sub(g, l, "clip_min"), tli_onnx_sub(g, l, "clip_max")};
        tli_onnx_scalar(g, in[1], 0.0f);
        tli_onnx_scalar(g, in[2], 6.0f);
        tli_onnx_node(g, "Clip", node_name(g, l, "Clip"), in, 3, out);
        break;
    }
    case TL_ACT_HARD_SIGMOID: /* relu6(x + 3) / 6 = max(0, min(1, x / 6 + 1/2)) */
        unary(g, l, "HardSigmoid", x, out);
        tli_onnx_attr_float(g, "alpha", 1.0f / 6.0f);
        tli_onnx_attr_float(g, "beta", 0.5f);
        break;
    case TL_ACT_HARD_SWISH:
        if (tli_onnx_opset(g) >= 14) {
            unary(g, l, "HardSwish", x, out);
            break;
        }
        /* Opset 13 has no HardSwish: x * HardSigmoid(x), as HardSwish-14 defines it. */
        {
            const char *in[2] = {x, tli_onnx_sub(g, l, "hard_sigmoid")};
            tli_onnx_node(g, "HardSigmoid", tli_onnx_sub(g, l, "HardSigmoid"), &x, 1, in[1]);
            tli_onnx_attr_float(g, "alpha", 1.0f / 6.0f);
            tli_onnx_attr_float(g, "beta", 0.5f);
            tli_onnx_node_end(g);
            tli_onnx_node(g, "Mul", node_name(g, l, "Mul"), in, 2, out);
        }
        break;
    case TL_ACT_SILU: { /* x * Sigmoid(x): ONNX has no SiLU operator */
        const char *in[2] = {x, tli_onnx_sub(g, l, "sigmoid")};
        tli_onnx_node(g, "Sigmoid", tli_onnx_sub(g, l, "Sigmoid"), &x, 1, in[1]);
        tli_onnx_node_end(g);
        tli_onnx_node(g, "Mul", node_name(g, l, "Mul"), in, 2, out);
        break;
    }
    case TL_ACT_LINEAR:
    default:
        unary(g, l, "Identity", x, out);
        break;
    }
    tli_onnx_node_end(g);
}

size_t tli_onnx_channel_dims(const tl_shape *s, uint32_t c, int64_t dims[3])
{
    dims[0] = c;
    if (s->rank != 3)
        return 1;
    dims[1] = dims[2] = 1;
    return 3;
}

int64_t tli_onnx_pad_after(uint32_t n, uint32_t span, uint32_t s, uint32_t before, uint32_t out)
{
    const int64_t end = (int64_t)(out - 1) * s + span;
    const int64_t after = end - (int64_t)n - before;
    return after > 0 ? after : 0;
}
