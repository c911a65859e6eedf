/* pool.c - max pooling over NHWC windows, with arg-max for backward. */
#include <stdbool.h>
#include <string.h>

#include "kernels.h"

/* y = max(y, x) and a = index where x won, over c channels. Branch-free
 * (a data-dependent branch per element mispredicts half the time) and
 * restrict-qualified so the compiler vectorises it. */
static inline void max_into(float *restrict y, int32_t *restrict a, const float *restrict x, int32_t base, size_t c)
{
    for (size_t ch = 0; ch < c; ch++) {
        float xv = x[ch], yv = y[ch];
        int32_t won = -(int32_t)(xv > yv); /* all ones where x wins */
        y[ch] = xv > yv ? xv : yv;
        a[ch] = (a[ch] & ~won) | ((base + (int32_t)ch) & won);
    }
}

static inline void max_only(float *restrict y, const float *restrict x, size_t c)
{
    for (size_t ch = 0; ch < c; ch++)
        y[ch] = x[ch] > y[ch] ? x[ch] : y[ch];
}

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
            /* Start from the window's first cell, so padding never wins and
             * ties keep the first index, as a sequential scan would. */
            size_t first = ((size_t)h_lo * g->in_w + (size_t)w_lo) * c;
            memcpy(yp, img + first, sizeof(float) * c);
            if (ao) {
                int32_t *ap = ao + (size_t)ow * c;
                for (size_t ch = 0; ch < c; ch++)
                    ap[ch] = (int32_t)(first + ch);
                for (long h = h_lo; h < h_hi; h++)
                    for (long w = (h == h_lo ? w_lo + 1 : w_lo); w < w_hi; w++) {
                        size_t base = ((size_t)h * g->in_w + (size_t)w) * c;
                        max_into(yp, ap, img + base, (int32_t)base, c);
                    }
            } else {
                for (long h = h_lo; h < h_hi; h++)
                    for (long w = (h == h_lo ? w_lo + 1 : w_lo); w < w_hi; w++)
                        max_only(yp, img + ((size_t)h * g->in_w + (size_t)w) * c, c);
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
