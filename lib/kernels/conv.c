/*
 * conv.c - im2col and its adjoint for NHWC tensors, with dilation, any
 * zero padding and groups.
 *
 * In NHWC a kernel row (kw = 0..k_w-1, all channels) that lies inside the
 * image is one contiguous run of k_w*in_c floats when the dilation is 1 and
 * there is one group, so most of im2col is then memcpy of runs; otherwise
 * each kernel cell is a run of in_c/groups floats.
 */
#include <string.h>

#include "kernels.h"
#include "parallel.h"

/* Copy one output pixel's receptive field (the channels [c0, c0 + c) of
 * group grp) into its col row. */
static void fill_row(const tli_conv_geom *g, const float *img, uint32_t c0, uint32_t oh, uint32_t ow, float *row)
{
    const size_t c = tli_conv_group_c(g), stride = g->in_c;
    const long ih0 = (long)oh * g->s_h - g->pad_t;
    const long iw0 = (long)ow * g->s_w - g->pad_l;
    const long span_w = (long)g->d_w * (long)(g->k_w - 1) + 1;
    const bool contiguous = g->d_w == 1 && g->groups == 1;
    const bool full_w = iw0 >= 0 && iw0 + span_w <= (long)g->in_w;
    for (uint32_t kh = 0; kh < g->k_h; kh++) {
        long ih = ih0 + (long)kh * g->d_h;
        float *dst = row + (size_t)kh * g->k_w * c;
        if (ih < 0 || ih >= (long)g->in_h) {
            memset(dst, 0, sizeof(float) * g->k_w * c);
            continue;
        }
        const float *src_row = img + (size_t)ih * g->in_w * stride + c0;
        if (full_w && contiguous) {
            memcpy(dst, src_row + (size_t)iw0 * stride, sizeof(float) * g->k_w * c);
            continue;
        }
        for (uint32_t kw = 0; kw < g->k_w; kw++) {
            long iw = iw0 + (long)kw * g->d_w;
            if (iw < 0 || iw >= (long)g->in_w)
                memset(dst + (size_t)kw * c, 0, sizeof(float) * c);
            else
                memcpy(dst + (size_t)kw * c, src_row + (size_t)iw * stride, sizeof(float) * c);
        }
    }
}

void tli_im2col_group(uint32_t threads, const tli_conv_geom *g, const float *x, size_t batch, uint32_t grp,
                      float *col)
{
    const size_t in_img = (size_t)g->in_h * g->in_w * g->in_c;
    const size_t k = tli_conv_k(g);
    const size_t pix = (size_t)g->out_h * g->out_w;
    const uint32_t c0 = grp * tli_conv_group_c(g);
    const long rows = (long)(batch * g->out_h);
    threads = tli_par_threads(threads, 0, (double)batch * (in_img + pix * k) * sizeof(float));
    TLI_OMP_FOR(threads > 1, "omp parallel for num_threads(threads) schedule(static)", (long r = 0; r < rows; r++), {
        size_t n = (size_t)r / g->out_h;
        uint32_t oh = (uint32_t)((size_t)r % g->out_h);
        const float *img = x + n * in_img;
        float *dst = col + (n * pix + (size_t)oh * g->out_w) * k;
        for (uint32_t ow = 0; ow < g->out_w; ow++)
            fill_row(g, img, c0, oh, ow, dst + (size_t)ow * k);
    });
}

void tli_im2col(uint32_t threads, const tli_conv_geom *g, const float *x, size_t batch, float *col)
{
    tli_im2col_group(threads, g, x, batch, 0, col);
}

/* Add one col row back into the image gradient (channels [c0, c0 + c)). */
static void add_row(const tli_conv_geom *g, const float *row, uint32_t c0, uint32_t oh, uint32_t ow, float *img)
{
    const size_t c = tli_conv_group_c(g), stride = g->in_c;
    const long ih0 = (long)oh * g->s_h - g->pad_t;
    const long iw0 = (long)ow * g->s_w - g->pad_l;
    for (uint32_t kh = 0; kh < g->k_h; kh++) {
        long ih = ih0 + (long)kh * g->d_h;
        if (ih < 0 || ih >= (long)g->in_h)
            continue;
        const float *src = row + (size_t)kh * g->k_w * c;
        float *dst_row = img + (size_t)ih * g->in_w * stride + c0;
        for (uint32_t kw = 0; kw < g->k_w; kw++) {
            long iw = iw0 + (long)kw * g->d_w;
            if (iw < 0 || iw >= (long)g->in_w)
                continue;
            float *d = dst_row + (size_t)iw * stride;
            const float *s = src + (size_t)kw * c;
            for (size_t i = 0; i < c; i++)
                d[i] += s[i];
        }
    }
}

void tli_col2im_group(uint32_t threads, const tli_conv_geom *g, const float *dcol, size_t batch, uint32_t grp,
                      float *dx)
{
    const size_t in_img = (size_t)g->in_h * g->in_w * g->in_c;
    const size_t k = tli_conv_k(g);
    const size_t pix = (size_t)g->out_h * g->out_w;
    const size_t c = tli_conv_group_c(g);
    const uint32_t c0 = grp * (uint32_t)c;
    threads = tli_par_threads(threads, 0, (double)batch * (in_img + pix * k) * sizeof(float));
    /* One image per iteration: images never overlap, so the sums are
     * race-free and their order does not depend on the thread count. */
    TLI_OMP_FOR(threads > 1, "omp parallel for num_threads(threads) schedule(static)",
                (long n = 0; n < (long)batch; n++), {
        float *img = dx + (size_t)n * in_img;
        if (g->groups == 1) {
            memset(img, 0, sizeof(float) * in_img);
        } else {
            const size_t cells = (size_t)g->in_h * g->in_w;
            for (size_t p = 0; p < cells; p++)
                memset(img + p * g->in_c + c0, 0, sizeof(float) * c);
        }
        const float *rows = dcol + (size_t)n * pix * k;
        for (uint32_t oh = 0; oh < g->out_h; oh++)
            for (uint32_t ow = 0; ow < g->out_w; ow++)
                add_row(g, rows + ((size_t)oh * g->out_w + ow) * k, c0, oh, ow, img);
    });
}

void tli_col2im(uint32_t threads, const tli_conv_geom *g, const float *dcol, size_t batch, float *dx)
{
    tli_col2im_group(threads, g, dcol, batch, 0, dx);
}
