/*
 * onnx_shape.c - the integer arithmetic around Reshape. PyTorch's
 * x.view(x.size(0), -1) exported with a dynamic batch axis is
 *     Shape(x) -> Gather(0) -> Unsqueeze(0) -> Concat(that, [-1]) -> Reshape
 * These nodes make no layer: they are evaluated here on the shapes libtl
 * knows, the batch size staying symbolic (TLI_ONNX_BATCH), and Reshape then
 * sees (batch, -1), a flatten.
 */
#include <string.h>

#include "onnx_load.h"

static tl_status set_shape(tli_onnx_ctx *c, const tli_onnx_node *n, const int64_t *v, size_t count, bool scalar)
{
    if (count > TLI_ONNX_MAX_RANK)
        return tli_onnx_nerr(c, n, TL_EUNSUPPORTED, "computes %zu integers; libtl evaluates at most %u", count,
                             TLI_ONNX_MAX_RANK);
    tl_status st = tli_onnx_set_out(c, n, 0, NULL);
    if (st)
        return st;
    tli_ov *o = tli_ov_find(c, n->outputs[0]);
    o->kind = TLI_OV_SHAPE;
    memcpy(o->sv, v, count * sizeof *v);
    o->nsv = (uint32_t)count;
    o->scalar = scalar;
    return TL_OK;
}

bool tli_onnx_is_shape_input(tli_onnx_ctx *c, const tli_onnx_node *n, size_t k)
{
    if (k >= n->ninputs || n->inputs[k][0] == '\0')
        return false;
    tli_ov *v = tli_ov_find(c, n->inputs[k]);
    return v && (v->kind == TLI_OV_SHAPE ||
                 (v->kind == TLI_OV_CONST && (v->t->dtype == TLI_ONNX_INT64 || v->t->dtype == TLI_ONNX_INT32)));
}

tl_status tli_onnx_in_ints(int64_t *out, size_t cap, size_t *count, bool *scalar, tli_onnx_ctx *c,
                           const tli_onnx_node *n, size_t k)
{
    if (k < n->ninputs && n->inputs[k][0]) {
        tli_ov *v = tli_ov_find(c, n->inputs[k]);
        if (v && v->kind == TLI_OV_SHAPE) {
            if (v->nsv > cap)
                return tli_onnx_nerr(c, n, TL_EUNSUPPORTED, "input %zu has %u values where at most %zu were "
                                     "expected", k, v->nsv, cap);
            memcpy(out, v->sv, v->nsv * sizeof *out);
            *count = v->nsv;
            *scalar = v->scalar;
            return TL_OK;
        }
    }
    const tli_onnx_tensor *t;
    tl_status st = tli_onnx_in_const(&t, c, n, k, false);
    if (st)
        return st;
    if ((st = tli_onnx_tensor_ints(out, cap, count, c->om, t)))
        return st;
    *scalar = t->rank == 0;
    return TL_OK;
}

tl_status tli_onnx_op_shape(tli_onnx_ctx *c, const tli_onnx_node *n)
{
    tli_ov *v;
    tl_status st = tli_onnx_in_plain(&v, c, n, 0);
    if (st)
        return st;
    tl_shape s = tli_onnx_shape(c, v);
    int64_t d[4] = {TLI_ONNX_BATCH, 0, 1, 1};
    size_t rank;
    if (s.rank == 3) { /* (h, w, c) is ONNX's (N, C, H, W) */
        d[1] = s.dims[2], d[2] = s.dims[0], d[3] = s.dims[1], rank = 4;
    } else {
        d[1] = s.dims[0];
        rank = v->pooled ? 4 : 2;
    }
    int64_t start, end;
    if ((st = tli_onnx_get_int(&start, c, n, "start", 0)) || (st = tli_onnx_get_int(&end, c, n, "end", INT64_MAX)))
        return st;
    const int64_t r = (int64_t)rank;
    start = start < 0 ? start + r : start;
    end = end < 0 ? end + r : end;
    start = start < 0 ? 0 : start > r ? r : start;
    end = end < start ? start : end > r ? r : end;
    return set_shape(c, n, d + start, (size_t)(end - start), false);
}

tl_status tli_onnx_op_gather(tli_onnx_ctx *c, const tli_onnx_node *n)
{
    tli_ov *v = n->ninputs ? tli_ov_find(c, n->inputs[0]) : NULL;
    if (v == NULL || v->kind != TLI_OV_SHAPE)
        return tli_onnx_nerr(c, n, TL_EUNSUPPORTED, "libtl evaluates Gather only on a Shape's integers");
    int64_t axis, idx[TLI_ONNX_MAX_RANK], out[TLI_ONNX_MAX_RANK];
    size_t k;
    bool scalar;
    tl_status st;
    if ((st = tli_onnx_get_int(&axis, c, n, "axis", 0)) ||
        (st = tli_onnx_in_ints(idx, TLI_ONNX_MAX_RANK, &k, &scalar, c, n, 1)))
        return st;
    if (axis != 0 && axis != -1)
        return tli_onnx_nerr(c, n, TL_EUNSUPPORTED, "axis %lld of a 1-D shape", (long long)axis);
    for (size_t i = 0; i < k; i++) {
        int64_t j = idx[i] < 0 ? idx[i] + (int64_t)v->nsv : idx[i];
        if (j < 0 || j >= (int64_t)v->nsv)
            return tli_onnx_nerr(c, n, TL_EFORMAT, "index %lld is outside the %u values", (long long)idx[i], v->nsv);
        out[i] = v->sv[j];
    }
    return set_shape(c, n, out, k, scalar);
}

tl_status tli_onnx_op_unsqueeze(tli_onnx_ctx *c, const tli_onnx_node *n)
{
    tli_ov *v = n->ninputs ? tli_ov_find(c, n->inputs[0]) : NULL;
    if (v == NULL || v->kind != TLI_OV_SHAPE || !v->scalar)
        return tli_onnx_nerr(c, n, TL_EUNSUPPORTED, "libtl evaluates Unsqueeze only of one integer from a Shape");
    int64_t axes[TLI_ONNX_MAX_RANK];
    size_t k = 0;
    tl_status st;
    if (c->om->opset >= 13) {
        bool scalar;
        if ((st = tli_onnx_in_ints(axes, TLI_ONNX_MAX_RANK, &k, &scalar, c, n, 1)))
            return st;
    } else {
        const tli_onnx_attr *a;
        if ((st = tli_onnx_attr_get(&a, c, n, "axes", TLI_ONNX_ATTR_INTS)))
            return st;
        for (k = 0; a && k < a->nints && k < TLI_ONNX_MAX_RANK; k++)
            axes[k] = a->ints[k];
    }
    if (k != 1 || (axes[0] != 0 && axes[0] != -1))
        return tli_onnx_nerr(c, n, TL_EUNSUPPORTED, "libtl evaluates Unsqueeze of an integer along axis 0 only");
    return set_shape(c, n, v->sv, 1, false);
}

tl_status tli_onnx_op_shape_concat(tli_onnx_ctx *c, const tli_onnx_node *n)
{
    int64_t axis, out[TLI_ONNX_MAX_RANK];
    tl_status st = tli_onnx_get_int(&axis, c, n, "axis", 0);
    if (st)
        return st;
    if (axis != 0 && axis != -1)
        return tli_onnx_nerr(c, n, TL_EUNSUPPORTED, "axis %lld of 1-D integers", (long long)axis);
    size_t total = 0;
    for (size_t k = 0; k < n->ninputs; k++) {
        int64_t v[TLI_ONNX_MAX_RANK];
        size_t m;
        bool scalar;
        if ((st = tli_onnx_in_ints(v, TLI_ONNX_MAX_RANK, &m, &scalar, c, n, k)))
            return st;
        if (m > TLI_ONNX_MAX_RANK - total)
            return tli_onnx_nerr(c, n, TL_EUNSUPPORTED, "concatenates more than %u integers", TLI_ONNX_MAX_RANK);
        memcpy(out + total, v, m * sizeof *v);
        total += m;
    }
    return set_shape(c, n, out, total, false);
}
