/* pool_window.c - the window of the pooling kinds (max and average):
 * settings checks, explicit or Keras padding, output geometry. */
#include "../io/onnx_export.h"
#include "layer.h"

/* Output length and leading pad along one axis: explicit pads (each
 * smaller than the pool, checked by the caller) or tli_window's rules. */
static bool pool_axis(uint32_t n, uint32_t p, uint32_t s, tl_padding pad, uint32_t before, uint32_t after,
                      uint32_t *out, uint32_t *pad_before)
{
    if (pad != TL_PAD_EXPLICIT)
        return tli_window(n, p, s, pad, out, pad_before);
    uint64_t padded = (uint64_t)n + before + after;
    if (padded < p)
        return false;
    *out = (uint32_t)((padded - p) / s + 1);
    *pad_before = before;
    return true;
}

tl_status tli_pool_window_build(tl_layer *l, tli_pool_window *c, tli_pool_geom *g)
{
    char sb[64];
    if (c->s_h == 0)
        c->s_h = c->p_h;
    if (c->s_w == 0)
        c->s_w = c->p_w;
    if (c->p_h == 0 || c->p_w == 0)
        return tli_error(TL_EINVAL, TLI_LFMT ": pool size %ux%u must be > 0", TLI_LARG(l), c->p_h, c->p_w);
    if (c->padding != TL_PAD_VALID && c->padding != TL_PAD_SAME && c->padding != TL_PAD_EXPLICIT)
        return tli_error(TL_EINVAL, TLI_LFMT ": unknown padding %u", TLI_LARG(l), c->padding);
    const bool pads = c->pad_t || c->pad_b || c->pad_l || c->pad_r;
    if (pads && c->padding != TL_PAD_EXPLICIT)
        return tli_error(TL_EINVAL, TLI_LFMT ": pads (top %u, bottom %u, left %u, right %u) need padding 'explicit', "
                         "not '%s'", TLI_LARG(l), c->pad_t, c->pad_b, c->pad_l, c->pad_r,
                         tli_padding_names[c->padding]);
    if (c->padding == TL_PAD_EXPLICIT && !pads) /* nothing padded: valid, as libtl 1.0 can read */
        c->padding = TL_PAD_VALID;
    /* Every window keeps a real cell (padded cells never win the max, and
     * an average has something to average). */
    static const char *const side[4] = {"pad_top", "pad_bottom", "pad_left", "pad_right"};
    const uint32_t pad_v[4] = {c->pad_t, c->pad_b, c->pad_l, c->pad_r};
    for (int i = 0; i < 4; i++)
        if (pad_v[i] >= (i < 2 ? c->p_h : c->p_w))
            return tli_error(TL_EINVAL, TLI_LFMT ": %s %u must be smaller than the pool's %s (%u)", TLI_LARG(l),
                             side[i], pad_v[i], i < 2 ? "height" : "width", i < 2 ? c->p_h : c->p_w);
    if (l->in_shape.rank != 3)
        return tli_error(TL_ESHAPE, TLI_LFMT " needs an (h, w, c) input, got %s", TLI_LARG(l),
                         tli_shape_str(&l->in_shape, sb, sizeof sb));
    g->in_h = l->in_shape.dims[0];
    g->in_w = l->in_shape.dims[1];
    g->c = l->in_shape.dims[2];
    g->p_h = c->p_h;
    g->p_w = c->p_w;
    g->s_h = c->s_h;
    g->s_w = c->s_w;
    if (!pool_axis(g->in_h, g->p_h, g->s_h, (tl_padding)c->padding, c->pad_t, c->pad_b, &g->out_h, &g->pad_t) ||
        !pool_axis(g->in_w, g->p_w, g->s_w, (tl_padding)c->padding, c->pad_l, c->pad_r, &g->out_w, &g->pad_l))
        return tli_error(TL_ESHAPE, TLI_LFMT ": pool %ux%u is larger than its input %s%s",
                         TLI_LARG(l), c->p_h, c->p_w, tli_shape_str(&l->in_shape, sb, sizeof sb),
                         c->padding == TL_PAD_VALID ? " with valid padding" : " and its padding");
    l->out_shape = tli_shape3(g->out_h, g->out_w, g->c);
    l->out_size = (size_t)g->out_h * g->out_w * g->c;
    return TL_OK;
}


void tli_pool_onnx(tli_onnx *g, const tl_layer *l, const char *op)
{
    const tli_pool_geom *pg = (const tli_pool_geom *)l->geom;
    const char *x = tli_onnx_in(g, l, 0);
    const int64_t ks[2] = {pg->p_h, pg->p_w}, st[2] = {pg->s_h, pg->s_w};
    /* The trailing pads: what the last window needs (the geometry keeps
     * only the leading ones); ONNX's output size floor((n + pads - k) / s)
     * + 1 then equals libtl's. */
    const int64_t pads[4] = {pg->pad_t, pg->pad_l, tli_onnx_pad_after(pg->in_h, pg->p_h, pg->s_h, pg->pad_t, pg->out_h),
                             tli_onnx_pad_after(pg->in_w, pg->p_w, pg->s_w, pg->pad_l, pg->out_w)};
    tli_onnx_node(g, op, l->name, &x, 1, tli_onnx_out(g, l));
    tli_onnx_attr_ints(g, "kernel_shape", ks, 2);
    tli_onnx_attr_ints(g, "strides", st, 2);
    tli_onnx_attr_ints(g, "pads", pads, 4);
}
