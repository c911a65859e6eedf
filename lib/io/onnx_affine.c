/*
 * onnx_affine.c - Mul, Add, Sub and Div by constants: a normalization layer.
 *
 * Preprocessing inside a graph is written as elementwise arithmetic with
 * constants: torchvision's Normalize exports as Sub(x, mean) then
 * Div(., std), pixel scaling as Mul(x, 1/255), and libtl's own
 * normalization layer (lib/layers/normalization.c) as Mul, Add, Sub, Div
 * with each step left out when it does nothing. libtl's normalization
 * layer computes exactly
 *     y = (x * scale + offset - mean[k]) / std[k]
 * so a chain of those four operators, each at most once and in that order,
 * with a scalar scale and offset and a scalar or per-channel mean and std,
 * is one such layer holding the constants as they are - the round trip
 * libtl -> ONNX -> libtl gives the same bits. Another order (a Div before
 * a Sub, say) becomes several layers, each exact.
 */
#include <string.h>

#include "onnx_load.h"

enum { STEP_MUL, STEP_ADD, STEP_SUB, STEP_DIV, STEPS };
static const char *const step_op[STEPS] = {"Mul", "Add", "Sub", "Div"};

static int step_of(const tli_onnx_node *n)
{
    for (int s = 0; s < STEPS; s++)
        if (tli_onnx_is_op(n, step_op[s]))
            return s;
    return -1;
}

static bool is_const(tli_onnx_ctx *c, const char *name)
{
    const tli_ov *v = tli_ov_find(c, name);
    return v && v->kind == TLI_OV_CONST;
}

/* Which input of n is the constant: 0 or 1, or -1 when neither (or both). */
static int const_input(tli_onnx_ctx *c, const tli_onnx_node *n)
{
    if (n->ninputs != 2 || n->domain[0])
        return -1;
    const bool a = is_const(c, n->inputs[0]), b = is_const(c, n->inputs[1]);
    return a == b ? -1 : (a ? 0 : 1);
}

bool tli_onnx_is_affine(tli_onnx_ctx *c, const tli_onnx_node *n)
{
    return step_of(n) >= 0 && const_input(c, n) >= 0;
}

/* A constant that broadcasts over (N, C, H, W) either as one value or as
 * one value per channel (dims all 1 except C, which is the third from the
 * end, or the only one for a flat (N, C) input). */
static tl_status check_broadcast(tli_onnx_ctx *c, const tli_onnx_node *n, const tli_onnx_tensor *t, uint32_t ch,
                                 bool image, bool per_channel_ok)
{
    if (t->count == 1)
        return TL_OK;
    bool ok = per_channel_ok && t->count == ch;
    if (ok) {
        const uint32_t c_axis_from_end = image ? 3 : 1;
        for (uint32_t d = 0; d < t->rank; d++) {
            const bool is_c = t->rank - d == c_axis_from_end;
            if (is_c ? t->dims[d] != (int64_t)ch : t->dims[d] != 1)
                ok = false;
        }
        ok = ok && t->rank >= c_axis_from_end;
    }
    if (!ok)
        return tli_onnx_nerr(c, n, TL_EUNSUPPORTED, "its constant '%.200s' (%llu values) is neither one value%s; "
                             "libtl reads arithmetic with constants as a normalization layer", t->name,
                             (unsigned long long)t->count, per_channel_ok ? " nor one per channel" : "");
    return TL_OK;
}

tl_status tli_onnx_op_affine(tli_onnx_ctx *c, const tli_onnx_node *first)
{
    /* The chain: first, then each single consumer that is the next step. */
    const tli_onnx_node *node[STEPS] = {NULL};
    const tli_onnx_tensor *k[STEPS] = {NULL};
    const tli_onnx_node *n = first, *last = first;
    int prev = -1;
    tl_status st;
    while (n) {
        const int s = step_of(n), ci = const_input(c, n);
        if (s <= prev || ci < 0)
            break;
        if (s >= STEP_SUB && ci != 1)
            return tli_onnx_nerr(c, n, TL_EUNSUPPORTED, "computes a constant %s the tensor; libtl reads x - m and "
                                 "x / s only", s == STEP_SUB ? "minus" : "divided by");
        if ((st = tli_onnx_in_const(&k[s], c, n, (size_t)ci, false)))
            return st;
        node[s] = last = n;
        prev = s;
        const tli_ov *out = tli_ov_find(c, n->outputs[0]);
        n = out && out->uses == 1 && out->consumer >= 0 && n->noutputs == 1 ? &c->om->nodes[out->consumer] : NULL;
        if (n && (step_of(n) <= prev || const_input(c, n) < 0 || strcmp(n->inputs[1 - const_input(c, n)],
                                                                          last->outputs[0]) != 0))
            n = NULL;
    }
    tli_ov *v;
    if ((st = tli_onnx_in_plain(&v, c, first, (size_t)(1 - const_input(c, first)))))
        return st;
    const tl_shape s = tli_onnx_shape(c, v);
    const bool image = s.rank == 3 && !v->pooled;
    const uint32_t ch = s.dims[s.rank - 1];
    for (int t = 0; t < STEPS; t++)
        if (k[t] && (st = check_broadcast(c, node[t], k[t], ch, image, t >= STEP_SUB)))
            return st;

    float *val[STEPS] = {NULL};
    float *mean = NULL, *sd = NULL;
    for (int t = 0; t < STEPS && st == TL_OK; t++)
        if (k[t])
            st = tli_onnx_floats(&val[t], c, node[t], k[t]);
    if (st == TL_OK) {
        mean = tli_malloc((size_t)ch * sizeof *mean);
        sd = tli_malloc((size_t)ch * sizeof *sd);
        if (!mean || !sd)
            st = tli_onnx_nerr(c, first, TL_ENOMEM, "out of memory for %u channels", ch);
    }
    tl_layer *l = NULL;
    if (st == TL_OK) {
        for (uint32_t i = 0; i < ch; i++) {
            mean[i] = val[STEP_SUB] ? val[STEP_SUB][k[STEP_SUB]->count == 1 ? 0 : i] : 0.0f;
            sd[i] = val[STEP_DIV] ? val[STEP_DIV][k[STEP_DIV]->count == 1 ? 0 : i] : 1.0f;
        }
        char buf[TL_MAX_NAME + 1];
        tl_normalization_options o = TL_NORMALIZATION_OPTIONS_INIT;
        o.channels = ch;
        o.mean = mean;
        o.std = sd;
        o.scale = val[STEP_MUL] ? val[STEP_MUL][0] : 1.0f;
        o.offset = val[STEP_ADD] ? val[STEP_ADD][0] : 0.0f;
        o.input = v->layer;
        o.name = tli_onnx_layer_name(buf, sizeof buf, c, last, NULL);
        if ((st = tl_model_add_normalization(&l, c->model, &o)))
            st = tli_onnx_nprefix(c, first, st);
    }
    for (int t = 0; t < STEPS; t++)
        tli_free(val[t]);
    tli_free(mean);
    tli_free(sd);
    if (st)
        return st;
    /* The chain's later nodes are done: the layer stands for the last one. */
    for (int t = 0; t < STEPS; t++)
        if (node[t])
            c->done[node[t] - c->om->nodes] = true;
    return tli_onnx_out_layer(c, last, l, v->pooled);
}
