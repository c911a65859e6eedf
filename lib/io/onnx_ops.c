/*
 * onnx_ops.c - one ONNX node into (at most) one libtl layer.
 *
 * The mapping (docs/format-onnx.md has the table): Conv and the pools in
 * onnx_conv.c; here the activation of a following Relu, Clip(0, 6),
 * LeakyRelu, Sigmoid, Tanh, HardSigmoid, HardSwish or Softmax fused into
 * a conv or dense layer when nothing else reads its output, Gemm and MatMul (+ Add of a
 * constant) -> dense, BatchNormalization -> batchnorm, the activations ->
 * an activation layer, Sigmoid(x) * x -> silu, Add -> add, Concat over the channels -> concatenate,
 * Flatten and Reshape to (N, -1) -> flatten, Dropout -> dropout; Identity,
 * Constant and Pad (zeros, folded into the next conv or average pool)
 * make no layer.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "onnx_load.h"
#include "safetensors.h"

bool tli_onnx_is_op(const tli_onnx_node *n, const char *op)
{
    return strcmp(n->op_type, op) == 0;
}

/* Input k as a layer's output, not waiting for a Pad to fold (only conv and
 * average pooling take that). */
tl_status tli_onnx_in_plain(tli_ov **v, tli_onnx_ctx *c, const tli_onnx_node *n, size_t k)
{
    tl_status st = tli_onnx_in_layer(v, c, n, k);
    if (st == TL_OK && (*v)->hwc && !tli_onnx_is_op(n, "Flatten") && !tli_onnx_is_op(n, "Reshape"))
        return tli_onnx_nerr(c, n, TL_EUNSUPPORTED, "its input '%.200s' is an image transposed to (N, H, W, C); "
                             "libtl reads such a Transpose only right before a flatten", n->inputs[k]);
    if (st == TL_OK && (*v)->padded)
        return tli_onnx_nerr(c, n, TL_EUNSUPPORTED, "its input '%.200s' is zero-padded by a Pad node; libtl folds "
                             "such padding only into a following Conv or AveragePool", n->inputs[k]);
    return st;
}

/* An image input: libtl (h, w, c), ONNX (N, C, H, W). */
tl_status tli_onnx_in_image(tli_ov **v, tl_shape *s, tli_onnx_ctx *c, const tli_onnx_node *n, bool pad_ok)
{
    tl_status st = pad_ok ? tli_onnx_in_layer(v, c, n, 0) : tli_onnx_in_plain(v, c, n, 0);
    if (st)
        return st;
    *s = tli_onnx_shape(c, *v);
    if (s->rank != 3 || (*v)->pooled)
        return tli_onnx_nerr(c, n, TL_EUNSUPPORTED, "its input '%.200s' is not an (N, C, H, W) image with H, W > 1 "
                             "(libtl shape rank %u)", n->inputs[0], s->rank);
    return TL_OK;
}

/* The output: node n's output 0 is the layer's output. */
tl_status tli_onnx_out_layer(tli_onnx_ctx *c, const tli_onnx_node *n, tl_layer *l, bool pooled)
{
    tl_status st = tli_onnx_set_out(c, n, 0, l);
    if (st == TL_OK)
        tli_ov_find(c, n->outputs[0])->pooled = pooled;
    return st;
}

/* Output 0 of n stands for what input value v stands for (no layer). */
static tl_status alias(tli_onnx_ctx *c, const tli_onnx_node *n, const tli_ov *v)
{
    tli_ov copy = *v;
    tl_status st = tli_onnx_set_out(c, n, 0, v->layer);
    if (st)
        return st;
    tli_ov *o = tli_ov_find(c, n->outputs[0]);
    o->kind = copy.kind;
    o->t = copy.t;
    o->pooled = copy.pooled;
    o->padded = copy.padded;
    o->hwc = copy.hwc;
    o->hwc_flat = copy.hwc_flat;
    memcpy(o->pad, copy.pad, sizeof o->pad);
    memcpy(o->sv, copy.sv, sizeof o->sv);
    o->nsv = copy.nsv;
    o->scalar = copy.scalar;
    return TL_OK;
}

/* A constant scalar input (Clip's bounds, Pad's value, Dropout's ratio). */
static tl_status scalar_in(float *out, bool *present, tli_onnx_ctx *c, const tli_onnx_node *n, size_t k)
{
    const tli_onnx_tensor *t;
    tl_status st = tli_onnx_in_const(&t, c, n, k, true);
    *present = t != NULL;
    if (st || t == NULL)
        return st;
    if (t->count != 1)
        return tli_onnx_nerr(c, n, TL_EUNSUPPORTED, "input %zu '%.200s' has %llu values where a scalar was "
                             "expected", k, t->name, (unsigned long long)t->count);
    return tli_onnx_tensor_floats(out, c->om, t);
}

/* ---- activations -------------------------------------------------------------------- */

/* The activation node m computes on an input of ONNX rank `rank`: *ok false
 * (with the reason in `why`) when libtl has none for it. */
static tl_status activation_of(tli_onnx_ctx *c, const tli_onnx_node *m, uint32_t rank, tl_activation *act,
                               float *alpha, bool *ok, const char **why)
{
    *ok = true;
    *alpha = 0.01f;
    *why = "";
    tl_status st = TL_OK;
    if (tli_onnx_is_op(m, "Relu")) {
        *act = TL_ACT_RELU;
    } else if (tli_onnx_is_op(m, "Sigmoid")) {
        *act = TL_ACT_SIGMOID;
    } else if (tli_onnx_is_op(m, "Tanh")) {
        *act = TL_ACT_TANH;
    } else if (tli_onnx_is_op(m, "HardSwish")) {
        *act = TL_ACT_HARD_SWISH;
    } else if (tli_onnx_is_op(m, "LeakyRelu")) {
        *act = TL_ACT_LEAKY_RELU;
        st = tli_onnx_get_float(alpha, c, m, "alpha", 0.01f);
        if (st == TL_OK && !isfinite(*alpha))
            *ok = false, *why = "its alpha is not finite";
    } else if (tli_onnx_is_op(m, "HardSigmoid")) {
        float a, b;
        *act = TL_ACT_HARD_SIGMOID;
        if ((st = tli_onnx_get_float(&a, c, m, "alpha", 0.2f)) || (st = tli_onnx_get_float(&b, c, m, "beta", 0.5f)))
            return st;
        if (!(fabsf(a - 1.0f / 6.0f) <= 1e-6f && b == 0.5f))
            *ok = false, *why = "libtl's hard_sigmoid is relu6(x + 3) / 6: alpha 1/6 and beta 0.5 (PyTorch's)";
    } else if (tli_onnx_is_op(m, "Clip")) {
        float lo = -INFINITY, hi = INFINITY;
        bool has_lo = false, has_hi = false;
        if (c->om->opset >= 11) {
            if ((st = scalar_in(&lo, &has_lo, c, m, 1)) || (st = scalar_in(&hi, &has_hi, c, m, 2)))
                return st;
        } else {
            if ((st = tli_onnx_get_float(&lo, c, m, "min", -INFINITY)) ||
                (st = tli_onnx_get_float(&hi, c, m, "max", INFINITY)))
                return st;
        }
        if (!has_lo)
            lo = -INFINITY;
        if (!has_hi)
            hi = INFINITY;
        if (lo == 0.0f && hi == 6.0f)
            *act = TL_ACT_RELU6;
        else if (lo == 0.0f && hi == INFINITY)
            *act = TL_ACT_RELU;
        else
            *ok = false, *why = "libtl clips only to [0, 6] (relu6) or [0, inf) (relu)";
    } else if (tli_onnx_is_op(m, "Softmax")) {
        int64_t axis;
        *act = TL_ACT_SOFTMAX;
        if ((st = tli_onnx_get_int(&axis, c, m, "axis", c->om->opset >= 13 ? -1 : 1)))
            return st;
        if (axis < 0)
            axis += rank;
        /* libtl's softmax is over the last axis of NHWC: ONNX's axis 1. */
        if (axis != 1 || (rank == 4 && c->om->opset < 13))
            *ok = false, *why = "libtl's softmax is over the channels (axis 1) only";
    } else {
        *ok = false, *why = "not an activation";
    }
    return st;
}

/* When node n's output 0 feeds one node only, and that node is an
 * activation libtl fuses, the activation and the node's index (else -1). */
tl_status tli_onnx_fusable(tli_onnx_ctx *c, const tli_onnx_node *n, uint32_t rank, tl_activation *act, float *alpha,
                         int64_t *node)
{
    *node = -1;
    *act = TL_ACT_LINEAR;
    *alpha = 0.01f;
    tli_ov *v = n->noutputs ? tli_ov_find(c, n->outputs[0]) : NULL;
    if (v == NULL || v->uses != 1 || v->consumer < 0)
        return TL_OK;
    const tli_onnx_node *m = &c->om->nodes[v->consumer];
    if (m->ninputs < 1 || strcmp(m->inputs[0], n->outputs[0]) != 0 || m->domain[0] || m->noutputs < 1)
        return TL_OK;
    bool ok;
    const char *why;
    tl_activation a;
    float al;
    tl_status st = activation_of(c, m, rank, &a, &al, &ok, &why);
    if (st || !ok)
        return TL_OK; /* reported when the node itself is translated */
    *act = a;
    *alpha = al;
    *node = v->consumer;
    return TL_OK;
}

tl_status tli_onnx_finish_fused(tli_onnx_ctx *c, int64_t node, tl_layer *l)
{
    if (node < 0)
        return TL_OK;
    c->done[node] = true;
    return tli_onnx_set_out(c, &c->om->nodes[node], 0, l);
}

static tl_status op_activation(tli_onnx_ctx *c, const tli_onnx_node *n)
{
    tli_ov *v;
    tl_status st = tli_onnx_in_plain(&v, c, n, 0);
    if (st)
        return st;
    tl_shape s = tli_onnx_shape(c, v);
    uint32_t rank = s.rank == 3 || v->pooled ? 4 : 2;
    bool ok;
    const char *why;
    tl_activation act;
    float alpha;
    if ((st = activation_of(c, n, rank, &act, &alpha, &ok, &why)))
        return st;
    if (!ok)
        return tli_onnx_nerr(c, n, TL_EUNSUPPORTED, "%s", why);
    char buf[TL_MAX_NAME + 1];
    tl_activation_options o = TL_ACTIVATION_OPTIONS_INIT;
    o.activation = act;
    o.alpha = alpha;
    o.input = v->layer;
    o.name = tli_onnx_layer_name(buf, sizeof buf, c, n, NULL);
    tl_layer *l;
    if ((st = tl_model_add_activation(&l, c->model, &o)))
        return tli_onnx_nprefix(c, n, st);
    return tli_onnx_out_layer(c, n, l, v->pooled);
}

/* Sigmoid(x) or HardSigmoid(x) whose only reader is Mul(x, that): SiLU or
 * HardSwish (opset 13 exporters write hardswish so), made by the Mul. */
static bool silu_sigmoid(tli_onnx_ctx *c, const tli_onnx_node *n)
{
    if (n->ninputs != 1 || n->noutputs != 1)
        return false;
    tli_ov *v = tli_ov_find(c, n->outputs[0]);
    if (v == NULL || v->uses != 1 || v->consumer < 0)
        return false;
    const tli_onnx_node *m = &c->om->nodes[v->consumer];
    if (!tli_onnx_is_op(m, "Mul") || m->ninputs != 2 || m->domain[0])
        return false;
    const char *other = strcmp(m->inputs[0], n->outputs[0]) == 0 ? m->inputs[1] : m->inputs[0];
    if (strcmp(other, n->inputs[0]) != 0 || strcmp(m->inputs[0], m->inputs[1]) == 0)
        return false;
    if (tli_onnx_is_op(n, "HardSigmoid")) {
        bool ok;
        const char *why;
        tl_activation act;
        float alpha;
        if (activation_of(c, n, 4, &act, &alpha, &ok, &why) != TL_OK || !ok)
            return false;
    }
    return true;
}

static tl_status op_mul(tli_onnx_ctx *c, const tli_onnx_node *n)
{
    if (n->ninputs == 2) {
        for (int k = 0; k < 2; k++) {
            tli_ov *s = tli_ov_find(c, n->inputs[k]);
            if (s && s->producer >= 0 && c->silu[s->producer] &&
                strcmp(c->om->nodes[s->producer].inputs[0], n->inputs[1 - k]) == 0) {
                const bool hard = tli_onnx_is_op(&c->om->nodes[s->producer], "HardSigmoid");
                tli_ov *v;
                tl_status st = tli_onnx_in_plain(&v, c, n, (size_t)(1 - k));
                if (st)
                    return st;
                char buf[TL_MAX_NAME + 1];
                tl_activation_options o = TL_ACTIVATION_OPTIONS_INIT;
                o.activation = hard ? TL_ACT_HARD_SWISH : TL_ACT_SILU;
                o.input = v->layer;
                o.name = tli_onnx_layer_name(buf, sizeof buf, c, n, NULL);
                tl_layer *l;
                if ((st = tl_model_add_activation(&l, c->model, &o)))
                    return tli_onnx_nprefix(c, n, st);
                return tli_onnx_out_layer(c, n, l, v->pooled);
            }
        }
    }
    return tli_onnx_nerr(c, n, TL_EUNSUPPORTED, "libtl reads Mul only as x * sigmoid(x) (SiLU), x * "
                         "hardsigmoid(x) (HardSwish) or a product with a constant (normalization)");
}

/* ---- shapes: Flatten, Reshape ----------------------------------------------------------------- */

static tl_status flatten_to(tli_onnx_ctx *c, const tli_onnx_node *n, tli_ov *v)
{
    tl_shape s = tli_onnx_shape(c, v);
    if (s.rank == 1) { /* already flat: (c) after a global pool, or a dense's output */
        tli_ov copy = *v;
        copy.pooled = false;
        return alias(c, n, &copy);
    }
    char buf[TL_MAX_NAME + 1];
    tl_layer *l;
    const bool hwc = v->hwc;
    tl_status st = tl_model_add_flatten_from(&l, c->model, v->layer, tli_onnx_layer_name(buf, sizeof buf, c, n, NULL));
    if (st)
        return tli_onnx_nprefix(c, n, st);
    if ((st = tli_onnx_out_layer(c, n, l, false)) == TL_OK) /* libtl's flatten order is (h, w, c): */
        tli_ov_find(c, n->outputs[0])->hwc_flat = hwc;       /* ONNX's too after the Transpose */
    return st;
}

/* Transpose of an image to (N, H, W, C) (perm 0, 2, 3, 1) right before a
 * flatten: the flatten then has libtl's own (h, w, c) order, and a dense
 * layer after it keeps its rows as they are. libtl's export writes this
 * for a flatten that feeds anything but dense layers. */
static tl_status op_transpose(tli_onnx_ctx *c, const tli_onnx_node *n)
{
    tli_ov *v;
    int64_t perm[4];
    bool present;
    tl_status st;
    if ((st = tli_onnx_in_plain(&v, c, n, 0)) || (st = tli_onnx_get_ints(perm, &present, c, n, "perm", 4)))
        return st;
    tl_shape s = tli_onnx_shape(c, v);
    const tli_ov *o = tli_ov_find(c, n->outputs[0]);
    const tli_onnx_node *next = o && o->uses == 1 && o->consumer >= 0 ? &c->om->nodes[o->consumer] : NULL;
    if (!present || perm[0] != 0 || perm[1] != 2 || perm[2] != 3 || perm[3] != 1 || s.rank != 3 || v->pooled ||
        !next || !(tli_onnx_is_op(next, "Flatten") || tli_onnx_is_op(next, "Reshape")))
        return tli_onnx_nerr(c, n, TL_EUNSUPPORTED, "libtl reads Transpose only as perm (0, 2, 3, 1) of an image "
                             "right before a Flatten or Reshape");
    tli_ov view = *v;
    view.hwc = true;
    return alias(c, n, &view);
}

static tl_status op_flatten(tli_onnx_ctx *c, const tli_onnx_node *n)
{
    tli_ov *v;
    int64_t axis;
    tl_status st;
    if ((st = tli_onnx_in_plain(&v, c, n, 0)) || (st = tli_onnx_get_int(&axis, c, n, "axis", 1)))
        return st;
    tl_shape s = tli_onnx_shape(c, v);
    int64_t rank = s.rank == 3 || v->pooled ? 4 : 2;
    if (axis < 0)
        axis += rank;
    if (axis != 1)
        return tli_onnx_nerr(c, n, TL_EUNSUPPORTED, "axis %lld; libtl flattens all but the batch axis (axis 1)",
                             (long long)axis);
    return flatten_to(c, n, v);
}

static tl_status op_reshape(tli_onnx_ctx *c, const tli_onnx_node *n)
{
    tli_ov *v;
    tl_status st;
    int64_t shape[TLI_ONNX_MAX_RANK];
    size_t k;
    bool scalar;
    if ((st = tli_onnx_in_plain(&v, c, n, 0)) ||
        (st = tli_onnx_in_ints(shape, TLI_ONNX_MAX_RANK, &k, &scalar, c, n, 1)))
        return st;
    if (k >= 1 && shape[0] == TLI_ONNX_BATCH) /* the batch size, whatever it is: keep it */
        shape[0] = 0;
    tl_shape s = tli_onnx_shape(c, v);
    const int64_t count = (int64_t)tl_shape_count(&s);
    bool ok = k == 2 && (shape[1] == -1 || shape[1] == count) &&
              (shape[0] == 0 || (shape[0] == -1 && shape[1] != -1) || (c->batch > 0 && shape[0] == c->batch));
    if (!ok)
        return tli_onnx_nerr(c, n, TL_EUNSUPPORTED, "to %zu dimensions (%lld, %lld%s); libtl reads Reshape only to "
                             "(N, -1), a flatten", k, (long long)(k ? shape[0] : 0), (long long)(k > 1 ? shape[1] : 0),
                             k > 2 ? ", ..." : "");
    return flatten_to(c, n, v);
}

/* ---- dense: Gemm, MatMul (+ Add) ------------------------------------------------------------ */

/* A dense layer on v from weight W (transposed: (out, in), else (in, out)),
 * scaled by alpha, and bias C (NULL, one value or `out`) scaled by beta. */
static tl_status dense(tli_onnx_ctx *c, const tli_onnx_node *n, tli_ov *v, const tli_onnx_tensor *W, bool trans,
                       float alpha, const tli_onnx_tensor *C, float beta, int64_t also_done)
{
    tl_shape s = tli_onnx_shape(c, v);
    if (s.rank != 1 || v->pooled)
        return tli_onnx_nerr(c, n, TL_EUNSUPPORTED, "its input '%.200s' is not 2-D (N, features); flatten first",
                             n->inputs[0]);
    if (W->rank != 2)
        return tli_onnx_nerr(c, n, TL_ESHAPE, "weight '%.200s' has rank %u, not 2", W->name, W->rank);
    const int64_t in = trans ? W->dims[1] : W->dims[0], out = trans ? W->dims[0] : W->dims[1];
    if (in != (int64_t)s.dims[0] || out < 1 || out > UINT32_MAX)
        return tli_onnx_nerr(c, n, TL_ESHAPE, "weight '%.200s' (%lld, %lld) does not take %u inputs", W->name,
                             (long long)W->dims[0], (long long)W->dims[1], s.dims[0]);
    if (C && C->count != 1 && C->count != (uint64_t)out)
        return tli_onnx_nerr(c, n, TL_ESHAPE, "bias '%.200s' has %llu values for %lld units", C->name,
                             (unsigned long long)C->count, (long long)out);
    int64_t fused;
    tl_dense_options o = TL_DENSE_OPTIONS_INIT;
    tl_status st = tli_onnx_fusable(c, also_done >= 0 ? &c->om->nodes[also_done] : n, 2, &o.activation, &o.activation_alpha,
                           &fused);
    if (st)
        return st;
    char buf[TL_MAX_NAME + 1];
    o.units = (uint32_t)out;
    o.use_bias = C != NULL;
    o.input = v->layer;
    o.name = tli_onnx_layer_name(buf, sizeof buf, c, n, W->name);
    tl_layer *l;
    if ((st = tl_model_add_dense(&l, c->model, &o)))
        return tli_onnx_nprefix(c, n, st);
    float *wv, *tmp = tli_malloc((size_t)W->count * sizeof *tmp);
    if (tmp == NULL)
        return tli_onnx_nerr(c, n, TL_ENOMEM, "out of memory for the kernel");
    if ((st = tli_onnx_floats(&wv, c, n, W))) {
        tli_free(tmp);
        return st;
    }
    /* Into PyTorch's (out, in), then layout.c's order, which also reorders
     * the rows after a flatten of (h, w, c) from ONNX's (c, h, w). */
    const size_t I = (size_t)in, U = (size_t)out;
    for (size_t r = 0; r < U; r++)
        for (size_t q = 0; q < I; q++)
            tmp[r * I + q] = alpha * (trans ? wv[r * I + q] : wv[q * U + r]);
    tli_layout L;
    tli_layout_for(&L, l, 0, TL_LAYOUT_PYTORCH, !v->hwc_flat);
    tli_layout_apply(&L, tmp, wv, true);
    st = tl_layer_set_weights(l, 0, wv, (size_t)W->count);
    tli_free(wv);
    tli_free(tmp);
    if (st)
        return tli_onnx_nprefix(c, n, st);
    if (C) {
        float *b = tli_malloc(U * sizeof *b);
        if (b == NULL)
            return tli_onnx_nerr(c, n, TL_ENOMEM, "out of memory for the bias");
        if ((st = tli_onnx_floats(&wv, c, n, C))) {
            tli_free(b);
            return st;
        }
        for (size_t r = 0; r < U; r++)
            b[r] = beta * wv[C->count == 1 ? 0 : r];
        st = tl_layer_set_weights(l, 1, b, U);
        tli_free(wv);
        tli_free(b);
        if (st)
            return tli_onnx_nprefix(c, n, st);
    }
    if ((st = tli_onnx_out_layer(c, n, l, false)))
        return st;
    if (also_done >= 0) {
        if ((st = tli_onnx_finish_fused(c, also_done, l)))
            return st;
    }
    return tli_onnx_finish_fused(c, fused, l);
}

static tl_status op_gemm(tli_onnx_ctx *c, const tli_onnx_node *n)
{
    tli_ov *v;
    const tli_onnx_tensor *W, *C;
    int64_t ta, tb;
    float alpha, beta;
    tl_status st;
    if ((st = tli_onnx_in_plain(&v, c, n, 0)) || (st = tli_onnx_in_const(&W, c, n, 1, false)) ||
        (st = tli_onnx_in_const(&C, c, n, 2, true)) || (st = tli_onnx_get_int(&ta, c, n, "transA", 0)) ||
        (st = tli_onnx_get_int(&tb, c, n, "transB", 0)) || (st = tli_onnx_get_float(&alpha, c, n, "alpha", 1.0f)) ||
        (st = tli_onnx_get_float(&beta, c, n, "beta", 1.0f)))
        return st;
    if (ta)
        return tli_onnx_nerr(c, n, TL_EUNSUPPORTED, "transA 1: the input would be transposed");
    if (!isfinite(alpha) || !isfinite(beta))
        return tli_onnx_nerr(c, n, TL_EFORMAT, "alpha or beta is not finite");
    return dense(c, n, v, W, tb != 0, alpha, C, beta, -1);
}

static tl_status op_matmul(tli_onnx_ctx *c, const tli_onnx_node *n)
{
    tli_ov *v;
    const tli_onnx_tensor *W, *C = NULL;
    tl_status st;
    if ((st = tli_onnx_in_plain(&v, c, n, 0)) || (st = tli_onnx_in_const(&W, c, n, 1, false)))
        return st;
    /* MatMul + Add(constant): one dense layer with a bias. */
    int64_t add = -1;
    tli_ov *o = n->noutputs ? tli_ov_find(c, n->outputs[0]) : NULL;
    if (o && o->uses == 1 && o->consumer >= 0) {
        const tli_onnx_node *m = &c->om->nodes[o->consumer];
        if (tli_onnx_is_op(m, "Add") && m->ninputs == 2 && !m->domain[0] && m->noutputs >= 1) {
            int k = strcmp(m->inputs[0], n->outputs[0]) == 0 ? 1 : 0;
            tli_ov *b = tli_ov_find(c, m->inputs[k]);
            if (b && b->kind == TLI_OV_CONST && W->rank == 2 && b->t->count == (uint64_t)W->dims[1]) {
                C = b->t;
                add = o->consumer;
            }
        }
    }
    return dense(c, n, v, W, false, 1.0f, C, 1.0f, add);
}

/* ---- the rest --------------------------------------------------------------------------------- */

static tl_status op_batchnorm(tli_onnx_ctx *c, const tli_onnx_node *n)
{
    tli_ov *v;
    const tli_onnx_tensor *t[4];
    tl_status st;
    if ((st = tli_onnx_in_plain(&v, c, n, 0)))
        return st;
    for (size_t k = 0; k < 4; k++)
        if ((st = tli_onnx_in_const(&t[k], c, n, k + 1, false)))
            return st;
    float eps, mom;
    int64_t training;
    if ((st = tli_onnx_get_float(&eps, c, n, "epsilon", 1e-5f)) ||
        (st = tli_onnx_get_float(&mom, c, n, "momentum", 0.9f)) ||
        (st = tli_onnx_get_int(&training, c, n, "training_mode", 0)))
        return st;
    if (training)
        return tli_onnx_nerr(c, n, TL_EUNSUPPORTED, "training_mode 1 (export the model in eval mode)");
    for (size_t k = 1; k < n->noutputs; k++)
        if ((st = tli_onnx_unused_out(c, n, k)))
            return st;
    tl_shape s = tli_onnx_shape(c, v);
    const uint32_t ch = s.dims[s.rank - 1];
    for (size_t k = 0; k < 4; k++)
        if (t[k]->count != ch)
            return tli_onnx_nerr(c, n, TL_ESHAPE, "'%.200s' has %llu values for %u channels", t[k]->name,
                                 (unsigned long long)t[k]->count, ch);
    char buf[TL_MAX_NAME + 1];
    tl_batchnorm_options o = TL_BATCHNORM_OPTIONS_INIT;
    o.epsilon = eps;
    o.momentum = mom; /* ONNX's running = momentum * running + (1 - momentum) * batch: libtl's convention */
    o.input = v->layer;
    o.name = tli_onnx_layer_name(buf, sizeof buf, c, n, t[0]->name);
    tl_layer *l;
    if ((st = tl_model_add_batchnorm(&l, c->model, &o)))
        return tli_onnx_nprefix(c, n, st);
    for (size_t k = 0; k < 4; k++) { /* gamma, beta, moving mean, moving variance: ONNX's order */
        float *x;
        if ((st = tli_onnx_floats(&x, c, n, t[k])))
            return st;
        st = tl_layer_set_weights(l, k, x, ch);
        tli_free(x);
        if (st)
            return tli_onnx_nprefix(c, n, st);
    }
    return tli_onnx_out_layer(c, n, l, v->pooled);
}

/* Add of two layers' outputs, or Sum of 2 to 16 (a residual join). */
static tl_status op_add(tli_onnx_ctx *c, const tli_onnx_node *n)
{
    const bool sum = tli_onnx_is_op(n, "Sum");
    if (sum ? n->ninputs < 1 || n->ninputs > 16 : n->ninputs != 2)
        return tli_onnx_nerr(c, n, TL_EFORMAT, "has %zu inputs, not %s", n->ninputs, sum ? "1 to 16" : "2");
    tli_ov *v[16];
    const tl_layer *in[16];
    tl_status st;
    for (size_t k = 0; k < n->ninputs; k++) {
        if ((st = tli_onnx_in_plain(&v[k], c, n, k)))
            return st;
        if (v[k]->pooled != v[0]->pooled)
            return tli_onnx_nerr(c, n, TL_EUNSUPPORTED, "adds a pooled (N, C, 1, 1) tensor to another shape");
        if ((in[k] = v[k]->layer) == NULL)
            return tli_onnx_nerr(c, n, TL_EUNSUPPORTED, "adds the graph's input itself; libtl's add takes layers");
    }
    if (n->ninputs == 1)
        return alias(c, n, v[0]);
    char buf[TL_MAX_NAME + 1];
    tl_layer *l;
    if ((st = tl_model_add_add(&l, c->model, in, n->ninputs, tli_onnx_layer_name(buf, sizeof buf, c, n, NULL))))
        return tli_onnx_nprefix(c, n, st);
    return tli_onnx_out_layer(c, n, l, v[0]->pooled);
}

static tl_status op_concat(tli_onnx_ctx *c, const tli_onnx_node *n)
{
    if (n->ninputs < 2 || n->ninputs > 16)
        return tli_onnx_nerr(c, n, TL_EUNSUPPORTED, "concatenates %zu inputs; libtl takes 2 to 16", n->ninputs);
    const tl_layer *in[16];
    bool pooled = false;
    uint32_t rank = 0;
    tl_status st;
    for (size_t k = 0; k < n->ninputs; k++) {
        tli_ov *v;
        if ((st = tli_onnx_in_plain(&v, c, n, k)))
            return st;
        if (v->layer == NULL)
            return tli_onnx_nerr(c, n, TL_EUNSUPPORTED, "concatenates the graph's input itself");
        tl_shape s = tli_onnx_shape(c, v);
        uint32_t r = s.rank == 3 || v->pooled ? 4 : 2;
        if (k && (r != rank || v->pooled != pooled))
            return tli_onnx_nerr(c, n, TL_EUNSUPPORTED, "concatenates tensors of different ranks");
        rank = r;
        pooled = v->pooled;
        in[k] = v->layer;
    }
    int64_t axis;
    if ((st = tli_onnx_get_int(&axis, c, n, "axis", INT64_MIN)))
        return st;
    if (axis == INT64_MIN)
        return tli_onnx_nerr(c, n, TL_EFORMAT, "has no axis");
    if (axis < 0)
        axis += rank;
    if (axis != 1)
        return tli_onnx_nerr(c, n, TL_EUNSUPPORTED, "axis %lld; libtl concatenates along the channels (axis 1)",
                             (long long)axis);
    char buf[TL_MAX_NAME + 1];
    tl_layer *l;
    if ((st = tl_model_add_concatenate(&l, c->model, in, n->ninputs, tli_onnx_layer_name(buf, sizeof buf, c, n,
                                                                                           NULL))))
        return tli_onnx_nprefix(c, n, st);
    return tli_onnx_out_layer(c, n, l, pooled);
}

static tl_status op_dropout(tli_onnx_ctx *c, const tli_onnx_node *n)
{
    tli_ov *v;
    tl_status st;
    if ((st = tli_onnx_in_plain(&v, c, n, 0)))
        return st;
    float rate = 0.5f;
    bool present = false;
    if (c->om->opset >= 12) {
        if ((st = scalar_in(&rate, &present, c, n, 1)))
            return st;
        if (!present)
            rate = 0.5f;
        if (n->ninputs > 2 && n->inputs[2][0])
            return tli_onnx_nerr(c, n, TL_EUNSUPPORTED, "a training_mode input (export the model in eval mode)");
    } else if ((st = tli_onnx_get_float(&rate, c, n, "ratio", 0.5f))) {
        return st;
    }
    if ((st = tli_onnx_unused_out(c, n, 1)))
        return st;
    char buf[TL_MAX_NAME + 1];
    tl_dropout_options o = TL_DROPOUT_OPTIONS_INIT;
    o.rate = rate;
    o.input = v->layer;
    o.name = tli_onnx_layer_name(buf, sizeof buf, c, n, NULL);
    tl_layer *l;
    if ((st = tl_model_add_dropout(&l, c->model, &o)))
        return tli_onnx_nprefix(c, n, st);
    return tli_onnx_out_layer(c, n, l, v->pooled);
}

static tl_status op_pad(tli_onnx_ctx *c, const tli_onnx_node *n)
{
    tli_ov *v;
    tl_shape s;
    tl_status st;
    if ((st = tli_onnx_in_image(&v, &s, c, n, true)))
        return st;
    const char *mode;
    if ((st = tli_onnx_get_str(&mode, c, n, "mode", "constant")))
        return st;
    if (strcmp(mode, "constant") != 0)
        return tli_onnx_nerr(c, n, TL_EUNSUPPORTED, "mode '%.40s'; libtl folds constant zero padding only", mode);
    int64_t p[8];
    float value = 0.0f;
    bool present;
    if (c->om->opset >= 11) {
        const tli_onnx_tensor *t;
        size_t k;
        if ((st = tli_onnx_in_const(&t, c, n, 1, false)))
            return st;
        if ((st = tli_onnx_tensor_ints(p, 8, &k, c->om, t)))
            return st;
        if (k != 8)
            return tli_onnx_nerr(c, n, TL_EUNSUPPORTED, "%zu pads for a 4-D input", k);
        if ((st = scalar_in(&value, &present, c, n, 2)))
            return st;
        if (n->ninputs > 3 && n->inputs[3][0])
            return tli_onnx_nerr(c, n, TL_EUNSUPPORTED, "an axes input");
    } else {
        if ((st = tli_onnx_get_ints(p, &present, c, n, "pads", 8)) ||
            (st = tli_onnx_get_float(&value, c, n, "value", 0.0f)))
            return st;
        if (!present)
            return tli_onnx_nerr(c, n, TL_EFORMAT, "has no pads");
    }
    if (value != 0.0f)
        return tli_onnx_nerr(c, n, TL_EUNSUPPORTED, "pads with %g; libtl folds zero padding only", (double)value);
    /* (N, C, H, W) begins, then ends. */
    if (p[0] || p[1] || p[4] || p[5])
        return tli_onnx_nerr(c, n, TL_EUNSUPPORTED, "pads the batch or channel axis");
    for (int k = 0; k < 8; k++)
        if (p[k] < 0 || p[k] > TLI_ONNX_MAX_PAD)
            return tli_onnx_nerr(c, n, TL_EUNSUPPORTED, "pad %lld (negative pads crop; libtl takes 0 to %d)",
                                 (long long)p[k], TLI_ONNX_MAX_PAD);
    tli_ov copy = *v;
    copy.padded = true;
    copy.pad[0] += (uint32_t)p[2];
    copy.pad[1] += (uint32_t)p[6];
    copy.pad[2] += (uint32_t)p[3];
    copy.pad[3] += (uint32_t)p[7];
    for (int k = 0; k < 4; k++)
        if (copy.pad[k] > TLI_ONNX_MAX_PAD)
            return tli_onnx_nerr(c, n, TL_EUNSUPPORTED, "pads add up to more than %d", TLI_ONNX_MAX_PAD);
    return alias(c, n, &copy);
}

static tl_status op_identity(tli_onnx_ctx *c, const tli_onnx_node *n)
{
    if (n->ninputs < 1 || n->inputs[0][0] == '\0')
        return tli_onnx_nerr(c, n, TL_EFORMAT, "has no input");
    tli_ov *v = tli_ov_find(c, n->inputs[0]);
    if (v == NULL || v->kind == TLI_OV_NONE)
        return tli_onnx_nerr(c, n, TL_EFORMAT, "input '%.200s' is not defined before the node", n->inputs[0]);
    return alias(c, n, v);
}

static tl_status op_constant(tli_onnx_ctx *c, const tli_onnx_node *n)
{
    const tli_onnx_attr *a;
    tl_status st = tli_onnx_attr_get(&a, c, n, "value", TLI_ONNX_ATTR_TENSOR);
    if (st)
        return st;
    if (a == NULL)
        return tli_onnx_nerr(c, n, TL_EUNSUPPORTED, "libtl reads a Constant's 'value' tensor only");
    if (n->noutputs < 1 || n->outputs[0][0] == '\0')
        return tli_onnx_nerr(c, n, TL_EFORMAT, "has no output");
    tli_ov *v = tli_ov_find(c, n->outputs[0]);
    if (v == NULL || v->kind != TLI_OV_NONE)
        return tli_onnx_nerr(c, n, TL_EFORMAT, "output '%.200s' is defined twice", n->outputs[0]);
    v->kind = TLI_OV_CONST;
    v->t = a->t;
    return TL_OK;
}

tl_status tli_onnx_node_to_layers(tli_onnx_ctx *c, size_t i)
{
    const tli_onnx_node *n = &c->om->nodes[i];
    c->done[i] = true;
    if (n->domain[0] && strcmp(n->domain, "ai.onnx") != 0)
        return tli_onnx_nerr(c, n, TL_EUNSUPPORTED, "operator '%.100s' of domain '%.100s': libtl reads the ai.onnx "
                             "operators only", n->op_type, n->domain);
    if (n->noutputs < 1 || n->outputs[0][0] == '\0')
        return tli_onnx_nerr(c, n, TL_EFORMAT, "has no output");
    if (tli_onnx_is_op(n, "Conv"))
        return tli_onnx_op_conv(c, n);
    if (tli_onnx_is_op(n, "MaxPool") || tli_onnx_is_op(n, "AveragePool"))
        return tli_onnx_op_pool(c, n, tli_onnx_is_op(n, "MaxPool"));
    if (tli_onnx_is_op(n, "GlobalAveragePool") || tli_onnx_is_op(n, "ReduceMean"))
        return tli_onnx_op_global_pool(c, n, tli_onnx_is_op(n, "ReduceMean"));
    if (tli_onnx_is_op(n, "Gemm"))
        return op_gemm(c, n);
    if (tli_onnx_is_op(n, "MatMul"))
        return op_matmul(c, n);
    if (tli_onnx_is_op(n, "BatchNormalization"))
        return op_batchnorm(c, n);
    if ((tli_onnx_is_op(n, "Sigmoid") || tli_onnx_is_op(n, "HardSigmoid")) && silu_sigmoid(c, n)) {
        c->silu[i] = true; /* the Mul makes the layer */
        return TL_OK;
    }
    if (tli_onnx_is_op(n, "Relu") || tli_onnx_is_op(n, "Clip") || tli_onnx_is_op(n, "LeakyRelu") || tli_onnx_is_op(n, "Sigmoid") || tli_onnx_is_op(n, "Tanh") ||
        tli_onnx_is_op(n, "HardSigmoid") || tli_onnx_is_op(n, "HardSwish") || tli_onnx_is_op(n, "Softmax"))
        return op_activation(c, n);
    if (tli_onnx_is_affine(c, n))
        return tli_onnx_op_affine(c, n);
    if (tli_onnx_is_op(n, "Mul"))
        return op_mul(c, n);
    if (tli_onnx_is_op(n, "Add") || tli_onnx_is_op(n, "Sum"))
        return op_add(c, n);
    if (tli_onnx_is_op(n, "Concat"))
        return tli_onnx_is_shape_input(c, n, 0) ? tli_onnx_op_shape_concat(c, n) : op_concat(c, n);
    if (tli_onnx_is_op(n, "Shape"))
        return tli_onnx_op_shape(c, n);
    if (tli_onnx_is_op(n, "Gather"))
        return tli_onnx_op_gather(c, n);
    if (tli_onnx_is_op(n, "Unsqueeze"))
        return tli_onnx_op_unsqueeze(c, n);
    if (tli_onnx_is_op(n, "Flatten"))
        return op_flatten(c, n);
    if (tli_onnx_is_op(n, "Transpose"))
        return op_transpose(c, n);
    if (tli_onnx_is_op(n, "Reshape"))
        return op_reshape(c, n);
    if (tli_onnx_is_op(n, "Dropout"))
        return op_dropout(c, n);
    if (tli_onnx_is_op(n, "Pad"))
        return op_pad(c, n);
    if (tli_onnx_is_op(n, "Identity"))
        return op_identity(c, n);
    if (tli_onnx_is_op(n, "Constant"))
        return op_constant(c, n);
    if (tli_onnx_is_op(n, "If") || tli_onnx_is_op(n, "Loop") || tli_onnx_is_op(n, "Scan"))
        return tli_onnx_nerr(c, n, TL_EUNSUPPORTED, "control flow (operator '%.100s'): libtl models are a fixed "
                             "graph of layers", n->op_type);
    return tli_onnx_nerr(c, n, TL_EUNSUPPORTED, "operator '%.100s' has no libtl layer", n->op_type);
}
