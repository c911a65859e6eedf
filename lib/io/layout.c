/*
 * layout.c - parameter layouts between libtl (Keras order) and a file's.
 *
 * libtl:   conv2d kernel (kh, kw, in, out), dense kernel (in, out).
 * PyTorch: conv2d weight (out, in, kh, kw), Linear weight (out, in).
 * And one thing a shape does not show: after a flatten, PyTorch's inputs
 * are in (c, h, w) order (NCHW), libtl's in (h, w, c) order (NHWC), so a
 * dense layer that follows a flatten of an (h, w, c) tensor has its input
 * rows in a different order as well.
 */
#include <string.h>

#include "safetensors.h"

void tli_layout_for(tli_layout *out, const tl_layer *l, size_t p, tl_tensor_layout layout, bool permute_flatten)
{
    memset(out, 0, sizeof *out);
    const tl_shape *s = &l->params[p].shape;
    out->lib_shape = *s;
    out->file_shape = *s;
    out->how = TLI_LAYOUT_SAME;
    if (layout != TL_LAYOUT_PYTORCH)
        return; /* Keras order is libtl's */
    switch (l->params[p].torch_layout) {
    case TLI_TORCH_SAME: break;
    case TLI_TORCH_CONV_KERNEL:
        out->how = TLI_LAYOUT_CONV;
        out->file_shape = (tl_shape){4, {s->dims[3], s->dims[2], s->dims[0], s->dims[1]}};
        break;
    case TLI_TORCH_DENSE_KERNEL: {
        out->how = TLI_LAYOUT_DENSE;
        out->file_shape = (tl_shape){2, {s->dims[1], s->dims[0], 0, 0}};
        /* Its input flattened an (h, w, c) tensor without moving it (a view). */
        uint32_t in = l->inputs[0];
        const tl_layer *prev = in == TLI_INPUT_MODEL ? NULL : l->model->layers[in];
        if (permute_flatten && prev && prev->ops->is_view && prev->in_shape.rank == 3) {
            out->flatten = true;
            out->fh = prev->in_shape.dims[0];
            out->fw = prev->in_shape.dims[1];
            out->fc = prev->in_shape.dims[2];
        }
        break;
    }
    }
}

void tli_layout_apply(const tli_layout *L, const float *src, float *dst, bool to_libtl)
{
    const uint32_t *d = L->lib_shape.dims;
    if (L->how == TLI_LAYOUT_SAME) {
        memcpy(dst, src, tl_shape_count(&L->lib_shape) * sizeof(float));
        return;
    }
    if (L->how == TLI_LAYOUT_CONV) {
        const size_t KH = d[0], KW = d[1], I = d[2], O = d[3];
        for (size_t kh = 0; kh < KH; kh++)
            for (size_t kw = 0; kw < KW; kw++)
                for (size_t i = 0; i < I; i++)
                    for (size_t o = 0; o < O; o++) {
                        size_t lib = ((kh * KW + kw) * I + i) * O + o;
                        size_t file = ((o * I + i) * KH + kh) * KW + kw;
                        if (to_libtl)
                            dst[lib] = src[file];
                        else
                            dst[file] = src[lib];
                    }
        return;
    }
    /* Dense: libtl row r (an input) is file column r, or - after a flatten
     * of (h, w, c) - file column c*h*w + y*w + x for r = (y*w + x)*c + ch. */
    const size_t IN = d[0], O = d[1];
    for (size_t r = 0; r < IN; r++) {
        size_t col = r;
        if (L->flatten) {
            size_t ch = r % L->fc, pix = r / L->fc;
            col = ch * ((size_t)L->fh * L->fw) + pix;
        }
        for (size_t o = 0; o < O; o++) {
            size_t lib = r * O + o, file = o * IN + col;
            if (to_libtl)
                dst[lib] = src[file];
            else
                dst[file] = src[lib];
        }
    }
}
