/*
 * onnx_conv.c - ONNX's windowed operators: Conv -> conv2d (groups,
 * dilations, strides, pads, auto_pad, a zero Pad before it folded in, the
 * next activation fused), MaxPool and AveragePool -> the pools,
 * GlobalAveragePool and ReduceMean over (H, W) -> global_avgpool2d.
 */
#include <string.h>

#include "onnx_load.h"
#include "safetensors.h"

/* ---- windows: Conv and the pools ----------------------------------------------------------- */

typedef struct win {
    uint32_t kh, kw, sh, sw, dh, dw;
    uint32_t pt, pb, pl, pr;
} win;

static tl_status ints2(uint32_t *a, uint32_t *b, tli_onnx_ctx *c, const tli_onnx_node *n, const char *name,
                       uint32_t def, uint32_t min)
{
    int64_t v[2];
    bool present;
    tl_status st = tli_onnx_get_ints(v, &present, c, n, name, 2);
    if (st)
        return st;
    if (!present) {
        *a = *b = def;
        return TL_OK;
    }
    for (int k = 0; k < 2; k++)
        if (v[k] < min || v[k] > TLI_ONNX_MAX_PAD)
            return tli_onnx_nerr(c, n, TL_EUNSUPPORTED, "attribute '%s' has %lld; libtl takes %u to %d", name,
                                 (long long)v[k], min, TLI_ONNX_MAX_PAD);
    *a = (uint32_t)v[0];
    *b = (uint32_t)v[1];
    return TL_OK;
}

/* strides, dilations, pads and auto_pad around a kh x kw kernel on an
 * ih x iw input. */
static tl_status window(win *w, tli_onnx_ctx *c, const tli_onnx_node *n, uint32_t ih, uint32_t iw)
{
    tl_status st;
    if ((st = ints2(&w->sh, &w->sw, c, n, "strides", 1, 1)) || (st = ints2(&w->dh, &w->dw, c, n, "dilations", 1, 1)))
        return st;
    int64_t p[4];
    bool present;
    if ((st = tli_onnx_get_ints(p, &present, c, n, "pads", 4)))
        return st;
    const char *ap;
    if ((st = tli_onnx_get_str(&ap, c, n, "auto_pad", "NOTSET")))
        return st;
    w->pt = w->pb = w->pl = w->pr = 0;
    if (present) {
        for (int k = 0; k < 4; k++)
            if (p[k] < 0 || p[k] > TLI_ONNX_MAX_PAD)
                return tli_onnx_nerr(c, n, TL_EUNSUPPORTED, "pad %lld; libtl takes 0 to %d", (long long)p[k], TLI_ONNX_MAX_PAD);
        /* ONNX: x1_begin, x2_begin, x1_end, x2_end. */
        w->pt = (uint32_t)p[0];
        w->pl = (uint32_t)p[1];
        w->pb = (uint32_t)p[2];
        w->pr = (uint32_t)p[3];
    }
    if (strcmp(ap, "NOTSET") == 0 || ap[0] == '\0')
        return TL_OK;
    if (present && (w->pt || w->pl || w->pb || w->pr))
        return tli_onnx_nerr(c, n, TL_EFORMAT, "has both pads and auto_pad '%.40s'", ap);
    if (strcmp(ap, "VALID") == 0)
        return TL_OK;
    bool upper = strcmp(ap, "SAME_UPPER") == 0;
    if (!upper && strcmp(ap, "SAME_LOWER") != 0)
        return tli_onnx_nerr(c, n, TL_EFORMAT, "auto_pad '%.40s' is none of NOTSET, VALID, SAME_UPPER, SAME_LOWER",
                             ap);
    const uint32_t in[2] = {ih, iw}, k[2] = {w->kh, w->kw}, s[2] = {w->sh, w->sw}, d[2] = {w->dh, w->dw};
    uint32_t *lo[2] = {&w->pt, &w->pl}, *hi[2] = {&w->pb, &w->pr};
    for (int a = 0; a < 2; a++) {
        uint64_t out = (in[a] + (uint64_t)s[a] - 1) / s[a], ext = (uint64_t)d[a] * (k[a] - 1) + 1;
        uint64_t need = (out - 1) * s[a] + ext, total = need > in[a] ? need - in[a] : 0;
        if (total > 2 * (uint64_t)TLI_ONNX_MAX_PAD)
            return tli_onnx_nerr(c, n, TL_EUNSUPPORTED, "auto_pad '%.40s' asks for %llu padding cells; libtl takes "
                                 "at most %d a side", ap, (unsigned long long)total, TLI_ONNX_MAX_PAD);
        uint64_t small = total / 2, big = total - small;
        *lo[a] = (uint32_t)(upper ? small : big);
        *hi[a] = (uint32_t)(upper ? big : small);
    }
    return TL_OK;
}

tl_status tli_onnx_op_conv(tli_onnx_ctx *c, const tli_onnx_node *n)
{
    tli_ov *v;
    tl_shape s;
    const tli_onnx_tensor *W, *B;
    tl_status st;
    if ((st = tli_onnx_in_image(&v, &s, c, n, true)) || (st = tli_onnx_in_const(&W, c, n, 1, false)) ||
        (st = tli_onnx_in_const(&B, c, n, 2, true)))
        return st;
    int64_t group;
    if ((st = tli_onnx_get_int(&group, c, n, "group", 1)))
        return st;
    if (W->rank != 4)
        return tli_onnx_nerr(c, n, TL_EUNSUPPORTED, "weight '%.200s' has rank %u; libtl's conv2d is 2-D (rank 4)",
                             W->name, W->rank);
    const int64_t O = W->dims[0], I = W->dims[1];
    if (group < 1 || group > s.dims[2] || I < 1 || I > s.dims[2] || I * group != (int64_t)s.dims[2] || O < 1 ||
        O % group ||
        W->dims[2] < 1 || W->dims[3] < 1 || W->dims[2] > TLI_ONNX_MAX_PAD || W->dims[3] > TLI_ONNX_MAX_PAD || O > TLI_ONNX_MAX_PAD)
        return tli_onnx_nerr(c, n, TL_ESHAPE, "weight '%.200s' (%lld, %lld, %lld, %lld) with group %lld does not fit "
                             "an input of %u channels", W->name, (long long)O, (long long)I, (long long)W->dims[2],
                             (long long)W->dims[3], (long long)group, s.dims[2]);
    if (B && B->count != (uint64_t)O)
        return tli_onnx_nerr(c, n, TL_ESHAPE, "bias '%.200s' has %llu values for %lld filters", B->name,
                             (unsigned long long)B->count, (long long)O);
    win w = {.kh = (uint32_t)W->dims[2], .kw = (uint32_t)W->dims[3]};
    int64_t ks[2];
    bool present;
    if ((st = tli_onnx_get_ints(ks, &present, c, n, "kernel_shape", 2)))
        return st;
    if (present && (ks[0] != W->dims[2] || ks[1] != W->dims[3]))
        return tli_onnx_nerr(c, n, TL_ESHAPE, "kernel_shape (%lld, %lld) differs from the weight's (%u, %u)",
                             (long long)ks[0], (long long)ks[1], w.kh, w.kw);
    if ((st = window(&w, c, n, s.dims[0], s.dims[1])))
        return st;
    if (v->padded) {
        w.pt += v->pad[0];
        w.pb += v->pad[1];
        w.pl += v->pad[2];
        w.pr += v->pad[3];
    }
    int64_t fused;
    tl_conv2d_options o = TL_CONV2D_OPTIONS_INIT;
    if ((st = tli_onnx_fusable(c, n, 4, &o.activation, &o.activation_alpha, &fused)))
        return st;
    char buf[TL_MAX_NAME + 1];
    o.filters = (uint32_t)O;
    o.kernel_h = w.kh;
    o.kernel_w = w.kw;
    o.stride_h = w.sh;
    o.stride_w = w.sw;
    o.dilation_h = w.dh;
    o.dilation_w = w.dw;
    o.groups = (uint32_t)group;
    o.use_bias = B != NULL;
    o.input = v->layer;
    if (w.pt || w.pb || w.pl || w.pr) {
        o.padding = TL_PAD_EXPLICIT;
        o.pad_top = w.pt;
        o.pad_bottom = w.pb;
        o.pad_left = w.pl;
        o.pad_right = w.pr;
    }
    o.name = tli_onnx_layer_name(buf, sizeof buf, c, n, W->name);
    tl_layer *l;
    if ((st = tl_model_add_conv2d(&l, c->model, &o)))
        return tli_onnx_nprefix(c, n, st);
    float *wv, *perm = NULL;
    if ((st = tli_onnx_floats(&wv, c, n, W)))
        return st;
    tli_layout L;
    tli_layout_for(&L, l, 0, TL_LAYOUT_PYTORCH, false);
    perm = tli_malloc((size_t)W->count * sizeof *perm);
    if (perm == NULL) {
        tli_free(wv);
        return tli_onnx_nerr(c, n, TL_ENOMEM, "out of memory for the kernel");
    }
    tli_layout_apply(&L, wv, perm, true);
    st = tl_layer_set_weights(l, 0, perm, (size_t)W->count);
    tli_free(wv);
    tli_free(perm);
    if (st)
        return tli_onnx_nprefix(c, n, st);
    if (B) {
        if ((st = tli_onnx_floats(&wv, c, n, B)))
            return st;
        st = tl_layer_set_weights(l, 1, wv, (size_t)B->count);
        tli_free(wv);
        if (st)
            return tli_onnx_nprefix(c, n, st);
    }
    if ((st = tli_onnx_out_layer(c, n, l, false)))
        return st;
    return tli_onnx_finish_fused(c, fused, l);
}

tl_status tli_onnx_op_pool(tli_onnx_ctx *c, const tli_onnx_node *n, bool max)
{
    tli_ov *v;
    tl_shape s;
    tl_status st;
    if ((st = tli_onnx_in_image(&v, &s, c, n, !max)))
        return st;
    int64_t ks[2], ceil_mode, cip = 0;
    bool present;
    if ((st = tli_onnx_get_ints(ks, &present, c, n, "kernel_shape", 2)))
        return st;
    if (!present)
        return tli_onnx_nerr(c, n, TL_EFORMAT, "has no kernel_shape");
    if (ks[0] < 1 || ks[1] < 1 || ks[0] > TLI_ONNX_MAX_PAD || ks[1] > TLI_ONNX_MAX_PAD)
        return tli_onnx_nerr(c, n, TL_EUNSUPPORTED, "kernel_shape (%lld, %lld)", (long long)ks[0], (long long)ks[1]);
    win w = {.kh = (uint32_t)ks[0], .kw = (uint32_t)ks[1]};
    if ((st = window(&w, c, n, s.dims[0], s.dims[1])))
        return st;
    if (w.dh != 1 || w.dw != 1)
        return tli_onnx_nerr(c, n, TL_EUNSUPPORTED, "dilations (%u, %u); libtl's pools have none", w.dh, w.dw);
    if ((st = tli_onnx_get_int(&ceil_mode, c, n, "ceil_mode", 0)))
        return st;
    if (!max && (st = tli_onnx_get_int(&cip, c, n, "count_include_pad", 0)))
        return st;
    if (v->padded) {
        /* Pad's zeros are values the pool averages: count_include_pad. */
        if (!cip && (w.pt || w.pb || w.pl || w.pr))
            return tli_onnx_nerr(c, n, TL_EUNSUPPORTED, "a Pad before an AveragePool with pads of its own and "
                                 "count_include_pad 0");
        w.pt += v->pad[0];
        w.pb += v->pad[1];
        w.pl += v->pad[2];
        w.pr += v->pad[3];
        cip = 1;
    }
    if (ceil_mode) {
        /* libtl rounds down; refuse only where rounding up gives more. */
        const uint64_t in[2] = {(uint64_t)s.dims[0] + w.pt + w.pb, (uint64_t)s.dims[1] + w.pl + w.pr};
        const uint32_t k[2] = {w.kh, w.kw}, st2[2] = {w.sh, w.sw};
        for (int a = 0; a < 2; a++)
            if (in[a] >= k[a] && (in[a] - k[a]) % st2[a] != 0)
                return tli_onnx_nerr(c, n, TL_EUNSUPPORTED, "ceil_mode 1 gives a larger output than libtl's "
                                     "(rounded down) here");
    }
    if (max && (st = tli_onnx_unused_out(c, n, 1)))
        return st;
    char buf[TL_MAX_NAME + 1];
    const char *name = tli_onnx_layer_name(buf, sizeof buf, c, n, NULL);
    const bool explicit_pad = w.pt || w.pb || w.pl || w.pr;
    tl_layer *l;
    if (max) {
        tl_maxpool2d_options o = TL_MAXPOOL2D_OPTIONS_INIT;
        o.pool_h = w.kh, o.pool_w = w.kw, o.stride_h = w.sh, o.stride_w = w.sw;
        o.padding = explicit_pad ? TL_PAD_EXPLICIT : TL_PAD_VALID;
        o.pad_top = w.pt, o.pad_bottom = w.pb, o.pad_left = w.pl, o.pad_right = w.pr;
        o.name = name;
        o.input = v->layer;
        st = tl_model_add_maxpool2d(&l, c->model, &o);
    } else {
        tl_avgpool2d_options o = TL_AVGPOOL2D_OPTIONS_INIT;
        o.pool_h = w.kh, o.pool_w = w.kw, o.stride_h = w.sh, o.stride_w = w.sw;
        o.padding = explicit_pad ? TL_PAD_EXPLICIT : TL_PAD_VALID;
        o.pad_top = w.pt, o.pad_bottom = w.pb, o.pad_left = w.pl, o.pad_right = w.pr;
        o.count_include_pad = cip != 0;
        o.name = name;
        o.input = v->layer;
        st = tl_model_add_avgpool2d(&l, c->model, &o);
    }
    if (st)
        return tli_onnx_nprefix(c, n, st);
    return tli_onnx_out_layer(c, n, l, false);
}

tl_status tli_onnx_op_global_pool(tli_onnx_ctx *c, const tli_onnx_node *n, bool reduce)
{
    tli_ov *v;
    tl_shape s;
    tl_status st;
    if ((st = tli_onnx_in_image(&v, &s, c, n, false)))
        return st;
    int64_t keep = 1;
    if (reduce) {
        const tli_onnx_attr *a;
        if ((st = tli_onnx_attr_get(&a, c, n, "axes", TLI_ONNX_ATTR_INTS)) ||
            (st = tli_onnx_get_int(&keep, c, n, "keepdims", 1)))
            return st;
        bool h = false, w = false, other = a == NULL || a->nints != 2;
        for (size_t k = 0; a && k < a->nints; k++) {
            int64_t x = a->ints[k] < 0 ? a->ints[k] + 4 : a->ints[k];
            h |= x == 2, w |= x == 3, other |= x != 2 && x != 3;
        }
        if (other || !h || !w)
            return tli_onnx_nerr(c, n, TL_EUNSUPPORTED, "libtl reads ReduceMean over the axes (2, 3), H and W, only");
    }
    char buf[TL_MAX_NAME + 1];
    tl_layer *l;
    if ((st = tl_model_add_global_avgpool2d(&l, c->model, v->layer, tli_onnx_layer_name(buf, sizeof buf, c, n, NULL))))
        return tli_onnx_nprefix(c, n, st);
    return tli_onnx_out_layer(c, n, l, keep != 0);
}
