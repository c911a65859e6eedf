/* pool.c - max pooling over NHWC windows, with arg-max for backward. */
#include <string.h>

#include "kernels.h"

void tli_maxpool_forward(uint32_t threads, const tli_pool_geom *g, const float *x, size_t batch, float *y,
                         int32_t *argmax)
{
    const size_t c = g->c;
    const size_t in_img = (size_t)g->in_h * g->in_w * c;
    const size_t out_img = (size_t)g->out_h * g->out_w * c;
    const long rows = (long)(batch * g->out_h);
    (void)threads;
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
    for (long r = 0; r < rows; r++) {
        size_t n = (size_t)r / g->out_h;
        uint32_t oh = (uint32_t)((size_t)r % g->out_h);
        const float *img = x + n * in_img;
        float *yo = y + n * out_img + (size_t)oh * g->out_w * c;
        int32_t *ao = argmax ? argmax + n * out_img + (size_t)oh * g->out_w * c : NULL;
        long h0 = (long)oh * g->s_h - g->pad_t;
        long h_lo = h0 < 0 ? 0 : h0;
        long h_hi = h0 + (long)g->p_h > (long)g->in_h ? (long)g->in_h : h0 + (long)g->p_h;
        for (uint32_t ow = 0; ow < g->out_w; ow++) {
            long w0 = (long)ow * g->s_w - g->pad_l;
            long w_lo = w0 < 0 ? 0 : w0;
            long w_hi = w0 + (long)g->p_w > (long)g->in_w ? (long)g->in_w : w0 + (long)g->p_w;
            float *yp = yo + (size_t)ow * c;
            int32_t *ap = ao ? ao + (size_t)ow * c : NULL;
            /* Start from the window's first cell so NaN inputs propagate as
             * they would through any max, and padding never wins. */
            size_t first = ((size_t)h_lo * g->in_w + (size_t)w_lo) * c;
            memcpy(yp, img + first, sizeof(float) * c);
            if (ap)
                for (size_t ch = 0; ch < c; ch++)
                    ap[ch] = (int32_t)(first + ch);
            for (long h = h_lo; h < h_hi; h++) {
                for (long w = w_lo; w < w_hi; w++) {
                    size_t base = ((size_t)h * g->in_w + (size_t)w) * c;
                    if (base == first)
                        continue;
                    const float *xp = img + base;
                    if (ap) {
                        for (size_t ch = 0; ch < c; ch++)
                            if (xp[ch] > yp[ch]) {
                                yp[ch] = xp[ch];
                                ap[ch] = (int32_t)(base + ch);
                            }
                    } else {
                        for (size_t ch = 0; ch < c; ch++)
                            yp[ch] = xp[ch] > yp[ch] ? xp[ch] : yp[ch];
                    }
                }
            }
        }
    }
}

void tli_maxpool_backward(uint32_t threads, const tli_pool_geom *g, const float *dy, const int32_t *argmax,
                          size_t batch, float *dx)
{
    const size_t in_img = (size_t)g->in_h * g->in_w * g->c;
    const size_t out_img = (size_t)g->out_h * g->out_w * g->c;
    (void)threads;
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
    for (long n = 0; n < (long)batch; n++) {
        float *img = dx + (size_t)n * in_img;
        const float *d = dy + (size_t)n * out_img;
        const int32_t *a = argmax + (size_t)n * out_img;
        memset(img, 0, sizeof(float) * in_img);
        for (size_t i = 0; i < out_img; i++)
            img[a[i]] += d[i];
    }
}
