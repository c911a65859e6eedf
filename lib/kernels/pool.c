/* pool.c - max pooling over NHWC windows, with arg-max for backward;
 * average pooling over windows and over whole images. */
#include <stdbool.h>
#include <string.h>

#include "parallel.h"
#include "pool_simd.h"

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
#ifdef TLI_HAVE_AVX512
    if (g->c % 16 == 0 && tli_cpu_has_avx512()) {
        tli_maxpool_forward_avx512(threads, g, x, batch, y, argmax);
        return;
    }
#endif
    const size_t c = g->c;
    const size_t in_img = (size_t)g->in_h * g->in_w * c;
    const size_t out_img = (size_t)g->out_h * g->out_w * c;
    const long rows = (long)(batch * g->out_h);
    threads = tli_par_threads(threads, 0, (double)batch * (in_img + out_img) * sizeof(float));
    TLI_OMP_FOR(threads > 1, "omp parallel for num_threads(threads) schedule(static)", (long r = 0; r < rows; r++), {
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
    });
}

/* out[ch] = d[ch] where the cell at `cell` won channel ch (and, with
 * `relu`, y[ch] > 0), else +0. Written as a bit mask so that the compiler
 * vectorises it (a select on a compare it leaves as a branch); `relu` is a
 * constant at every call, so each variant compiles without the test. */
static inline void gradient_or_zero(float *restrict out, const float *restrict d, const int32_t *restrict a,
                                    const float *restrict y, bool relu, int32_t cell, size_t c)
{
    /* A 32-bit counter: with size_t the compiler builds cell + ch in 64-bit
     * lanes and narrows them for every compare. c < 2^31: the image's
     * indices are int32_t. */
    const int32_t n = (int32_t)c;
    for (int32_t ch = 0; ch < n; ch++) {
        uint32_t bits;
        memcpy(&bits, &d[ch], sizeof bits);
        bits &= -(uint32_t)(a[ch] == cell + ch);
        if (relu)
            bits &= -(uint32_t)(y[ch] > 0.0f);
        memcpy(&out[ch], &bits, sizeof bits);
    }
}

/* Windows that tile the input (pool == stride, no padding) touch every
 * input cell at most once, so dx can be written cell by cell - the
 * gradient where the cell won, 0 elsewhere - instead of zeroing the whole
 * input and scattering. The windows must lie inside the input: `same`
 * padding puts its extra cells after the last row and column with pad_t
 * and pad_l still 0. */
static inline void backward_tiled(const tli_pool_geom *g, const float *restrict d, const int32_t *restrict a,
                                  const float *restrict y, bool relu, float *restrict img)
{
    const size_t c = g->c;
    for (uint32_t oh = 0; oh < g->out_h; oh++)
        for (uint32_t ow = 0; ow < g->out_w; ow++) {
            const size_t o = ((size_t)oh * g->out_w + ow) * c;
            for (uint32_t ph = 0; ph < g->p_h; ph++)
                for (uint32_t pw = 0; pw < g->p_w; pw++) {
                    const size_t cell = (((size_t)oh * g->p_h + ph) * g->in_w + (size_t)ow * g->p_w + pw) * c;
                    gradient_or_zero(img + cell, d + o, a + o, relu ? y + o : NULL, relu, (int32_t)cell, c);
                }
        }
}

/* backward_tiled with whole vectors of channels (pool_avx512.c): only
 * called where the CPU has AVX-512 and c % 16 == 0; the same bits. */
static void backward_tiled_simd(const tli_pool_geom *g, const float *d, const int32_t *a, const float *y, float *img)
{
#ifdef TLI_HAVE_AVX512
    tli_maxpool_backward_tiled_avx512(g, d, a, y, img);
#else
    (void)g, (void)d, (void)a, (void)y, (void)img;
#endif
}

/* The cells of a tiled backward's image that no window covers (a trailing
 * odd row or column): zero. */
static void zero_uncovered(const tli_pool_geom *g, float *img)
{
    const size_t c = g->c;
    const uint32_t used_h = g->out_h * g->p_h, used_w = g->out_w * g->p_w;
    for (uint32_t h = 0; h < g->in_h; h++) {
        if (h >= used_h) {
            memset(img + (size_t)h * g->in_w * c, 0, sizeof(float) * g->in_w * c);
            continue;
        }
        if (used_w < g->in_w)
            memset(img + ((size_t)h * g->in_w + used_w) * c, 0, sizeof(float) * (g->in_w - used_w) * c);
    }
}

/* dbias[ch] = sum over rows of d[ch], counting only where y[ch] > 0 when y
 * is given: the gradient the pool passes down, summed per channel. */
static void sum_passed_gradients(size_t c, const float *restrict d, const float *restrict y, size_t rows,
                                 float *restrict dbias)
{
    memset(dbias, 0, sizeof(float) * c);
    for (size_t r = 0; r < rows; r++) {
        const float *dr = d + r * c;
        if (y == NULL) {
            for (size_t ch = 0; ch < c; ch++)
                dbias[ch] += dr[ch];
            continue;
        }
        /* A mask, not a select: the compiler leaves a select on a compare
         * as a branch, which mispredicts on half the elements. */
        const float *yr = y + r * c;
        for (size_t ch = 0; ch < c; ch++) {
            uint32_t bits;
            float v;
            memcpy(&bits, &dr[ch], sizeof bits);
            bits &= -(uint32_t)(yr[ch] > 0.0f);
            memcpy(&v, &bits, sizeof v);
            dbias[ch] += v;
        }
    }
}

void tli_maxpool_backward(uint32_t threads, const tli_pool_geom *g, const float *dy, const int32_t *argmax,
                          const float *relu_y, float *dbias, size_t batch, float *dx)
{
    const size_t in_img = (size_t)g->in_h * g->in_w * g->c;
    const size_t out_img = (size_t)g->out_h * g->out_w * g->c;
    const bool tiled = g->p_h == g->s_h && g->p_w == g->s_w && g->pad_t == 0 && g->pad_l == 0 &&
                       (size_t)g->out_h * g->p_h <= g->in_h && (size_t)g->out_w * g->p_w <= g->in_w;
    bool simd = false;
#ifdef TLI_HAVE_AVX512
    simd = g->c % 16 == 0 && tli_cpu_has_avx512();
#endif
    threads = tli_par_threads(threads, 0, (double)batch * (in_img + out_img) * sizeof(float));
    TLI_OMP_FOR(threads > 1, "omp parallel for num_threads(threads) schedule(static)",
                (long n = 0; n < (long)batch; n++), {
        float *img = dx + (size_t)n * in_img;
        const float *d = dy + (size_t)n * out_img;
        const int32_t *a = argmax + (size_t)n * out_img;
        const float *y = relu_y ? relu_y + (size_t)n * out_img : NULL;
        if (tiled) {
            if (simd)
                backward_tiled_simd(g, d, a, y, img);
            else if (y)
                backward_tiled(g, d, a, y, true, img);
            else
                backward_tiled(g, d, a, NULL, false, img);
            zero_uncovered(g, img);
            continue;
        }
        memset(img, 0, sizeof(float) * in_img);
        for (size_t i = 0; i < out_img; i++)
            if (y == NULL || y[i] > 0.0f)
                img[a[i]] += d[i];
    });
    if (dbias)
        sum_passed_gradients(g->c, dy, relu_y, batch * g->out_h * g->out_w, dbias);
}

/* ---- average pooling ---------------------------------------------------- */

/* y += x over c channels; restrict-qualified so the compiler vectorises it. */
static inline void add_into(float *restrict y, const float *restrict x, size_t c)
{
    for (size_t ch = 0; ch < c; ch++)
        y[ch] += x[ch];
}

/* The rows [*lo, *hi) of the image that window start `start` (may be
 * negative: leading padding) covers with `p` cells, clipped to [0, n). */
static inline void window_span(long start, uint32_t p, uint32_t n, long *lo, long *hi)
{
    *lo = start < 0 ? 0 : start;
    *hi = start + (long)p > (long)n ? (long)n : start + (long)p;
    if (*hi < *lo) /* a window entirely in padding: empty, not negative */
        *hi = *lo;
}

/* The divisor of a window with real cells [h_lo, h_hi) x [w_lo, w_hi).
 * count_include_pad: every window lies inside the padded input, because
 * the trailing padding is by definition what the last window needs (see
 * kernels.h), so its cells inside the padded input are all p_h * p_w. */
static inline float window_count(const tli_pool_geom *g, bool count_include_pad, long h_lo, long h_hi, long w_lo,
                                 long w_hi)
{
    if (count_include_pad)
        return (float)((size_t)g->p_h * g->p_w);
    return (float)((size_t)(h_hi - h_lo) * (size_t)(w_hi - w_lo));
}

void tli_avgpool_forward(uint32_t threads, const tli_pool_geom *g, bool count_include_pad, const float *x,
                         size_t batch, float *y)
{
    const size_t c = g->c;
    const size_t in_img = (size_t)g->in_h * g->in_w * c;
    const size_t out_img = (size_t)g->out_h * g->out_w * c;
    const long rows = (long)(batch * g->out_h);
    threads = tli_par_threads(threads, 0, (double)batch * (in_img + out_img) * sizeof(float));
    /* Rows of output to threads as in the max-pool; each window is summed
     * by one thread in a fixed order, so threads never change a bit. */
    TLI_OMP_FOR(threads > 1, "omp parallel for num_threads(threads) schedule(static)", (long r = 0; r < rows; r++), {
        size_t n = (size_t)r / g->out_h;
        uint32_t oh = (uint32_t)((size_t)r % g->out_h);
        const float *img = x + n * in_img;
        float *yo = y + n * out_img + (size_t)oh * g->out_w * c;
        long h_lo, h_hi;
        window_span((long)oh * g->s_h - g->pad_t, g->p_h, g->in_h, &h_lo, &h_hi);
        for (uint32_t ow = 0; ow < g->out_w; ow++) {
            long w_lo, w_hi;
            window_span((long)ow * g->s_w - g->pad_l, g->p_w, g->in_w, &w_lo, &w_hi);
            float *yp = yo + (size_t)ow * c;
            float count = window_count(g, count_include_pad, h_lo, h_hi, w_lo, w_hi);
            if (h_lo == h_hi || w_lo == w_hi || count == 0.0f) {
                /* No real cell: the sum is 0 (and 0 / 0 would be NaN). */
                memset(yp, 0, sizeof(float) * c);
                continue;
            }
            /* Padded cells add zeros, so only the real ones are summed,
             * the first copied in to save a pass zeroing y. */
            memcpy(yp, img + ((size_t)h_lo * g->in_w + (size_t)w_lo) * c, sizeof(float) * c);
            for (long h = h_lo; h < h_hi; h++)
                for (long w = (h == h_lo ? w_lo + 1 : w_lo); w < w_hi; w++)
                    add_into(yp, img + ((size_t)h * g->in_w + (size_t)w) * c, c);
            /* A division, not a multiplication by 1/count: the mean is then
             * the correctly rounded sum / count (exact for 2x2 windows of
             * exact sums), at a cost that is small beside the loads. */
            for (size_t ch = 0; ch < c; ch++)
                yp[ch] /= count;
        }
    });
}

/* Channels of a window's share handled at once in the backward pass: a
 * stack buffer, so the share dy / count is divided once per window and
 * channel rather than once per cell. */
#define SHARE_CHUNK 256

void tli_avgpool_backward(uint32_t threads, const tli_pool_geom *g, bool count_include_pad, const float *dy,
                          size_t batch, float *dx)
{
    const size_t c = g->c;
    const size_t in_img = (size_t)g->in_h * g->in_w * c;
    const size_t out_img = (size_t)g->out_h * g->out_w * c;
    /* Windows that tile the input (pool == stride, no padding, all inside)
     * touch each cell at most once: dx is written cell by cell instead of
     * zeroed and then added to (as in the max-pool's backward). */
    const bool tiled = g->p_h == g->s_h && g->p_w == g->s_w && g->pad_t == 0 && g->pad_l == 0 &&
                       (size_t)g->out_h * g->p_h <= g->in_h && (size_t)g->out_w * g->p_w <= g->in_w;
    threads = tli_par_threads(threads, 0, (double)batch * (in_img + out_img) * sizeof(float));
    /* Whole images to threads, as in the max-pool: overlapping windows add
     * into the same cells, and one thread per image adds them in a fixed
     * order (row by row of windows), whatever the thread count. */
    TLI_OMP_FOR(threads > 1, "omp parallel for num_threads(threads) schedule(static)",
                (long n = 0; n < (long)batch; n++), {
        float *img = dx + (size_t)n * in_img;
        const float *d = dy + (size_t)n * out_img;
        float share[SHARE_CHUNK];
        if (!tiled)
            memset(img, 0, sizeof(float) * in_img);
        for (uint32_t oh = 0; oh < g->out_h; oh++) {
            long h_lo, h_hi;
            window_span((long)oh * g->s_h - g->pad_t, g->p_h, g->in_h, &h_lo, &h_hi);
            for (uint32_t ow = 0; ow < g->out_w; ow++) {
                long w_lo, w_hi;
                window_span((long)ow * g->s_w - g->pad_l, g->p_w, g->in_w, &w_lo, &w_hi);
                float count = window_count(g, count_include_pad, h_lo, h_hi, w_lo, w_hi);
                if (h_lo == h_hi || w_lo == w_hi || count == 0.0f)
                    continue; /* no real cell to receive anything (forward gave 0) */
                const float *dp = d + ((size_t)oh * g->out_w + ow) * c;
                if (tiled) {
                    /* The share into the window's first cell, then copied
                     * to the others (memcpy of an unbounded size calls the
                     * C library's; the compiler expands a copy of at most
                     * a chunk into `rep movsq`, slow to start). */
                    float *first = img + ((size_t)h_lo * g->in_w + (size_t)w_lo) * c;
                    for (size_t ch = 0; ch < c; ch++)
                        first[ch] = dp[ch] / count;
                    for (long h = h_lo; h < h_hi; h++)
                        for (long w = (h == h_lo ? w_lo + 1 : w_lo); w < w_hi; w++)
                            memcpy(img + ((size_t)h * g->in_w + (size_t)w) * c, first, sizeof(float) * c);
                    continue;
                }
                for (size_t c0 = 0; c0 < c; c0 += SHARE_CHUNK) {
                    const size_t cn = c - c0 < SHARE_CHUNK ? c - c0 : SHARE_CHUNK;
                    for (size_t ch = 0; ch < cn; ch++)
                        share[ch] = dp[c0 + ch] / count;
                    for (long h = h_lo; h < h_hi; h++)
                        for (long w = w_lo; w < w_hi; w++)
                            add_into(img + ((size_t)h * g->in_w + (size_t)w) * c + c0, share, cn);
                }
            }
        }
        if (tiled) {
            /* Cells no window covers (a trailing odd row or column). */
            const uint32_t used_h = g->out_h * g->p_h, used_w = g->out_w * g->p_w;
            for (uint32_t h = 0; h < g->in_h; h++) {
                if (h >= used_h) {
                    memset(img + (size_t)h * g->in_w * c, 0, sizeof(float) * g->in_w * c);
                    continue;
                }
                if (used_w < g->in_w)
                    memset(img + ((size_t)h * g->in_w + used_w) * c, 0, sizeof(float) * (g->in_w - used_w) * c);
            }
        }
    });
}

/* Channels summed at once in registers by the global average: 32 floats
 * are 8 SSE registers, leaving room for the loads. Accumulating in y
 * instead loads and stores y at every position; this is 1.4-3x faster
 * (the same sums in the same order, so the same bits). The same loop
 * built for AVX-512 was no faster except with very few positions (4 x 512
 * channels: 11 -> 7 us for 64 images), so there is no AVX-512 path. */
#define GAP_BLOCK 32

/* One image's channel means; each channel's sum runs position by
 * position. The inner loops run over contiguous channels and vectorise. */
static void gap_image(const float *xi, float *yi, uint32_t hw, uint32_t c)
{
    if (hw == 0) { /* the mean of nothing: 0, not 0 / 0 */
        memset(yi, 0, sizeof(float) * c);
        return;
    }
    const float count = (float)hw; /* exact below 2^24 positions */
    size_t c0 = 0;
    for (; c0 + GAP_BLOCK <= c; c0 += GAP_BLOCK) {
        float acc[GAP_BLOCK];
        for (size_t i = 0; i < GAP_BLOCK; i++)
            acc[i] = xi[c0 + i];
        for (size_t pos = 1; pos < hw; pos++) {
            const float *xp = xi + pos * c + c0;
            for (size_t i = 0; i < GAP_BLOCK; i++)
                acc[i] += xp[i];
        }
        for (size_t i = 0; i < GAP_BLOCK; i++)
            yi[c0 + i] = acc[i] / count;
    }
    if (c0 == c)
        return;
    /* The remaining channels, accumulated in y. */
    const size_t rest = c - c0;
    memcpy(yi + c0, xi + c0, sizeof(float) * rest);
    for (size_t pos = 1; pos < hw; pos++)
        add_into(yi + c0, xi + pos * c + c0, rest);
    for (size_t ch = c0; ch < c; ch++)
        yi[ch] /= count;
}

void tli_global_avgpool_forward(uint32_t threads, uint32_t hw, uint32_t c, const float *x, size_t batch, float *y)
{
    const size_t img = (size_t)hw * c;
    threads = tli_par_threads(threads, 0, (double)batch * (img + c) * sizeof(float));
    /* Whole images to threads, so the result does not depend on the
     * thread count. */
    TLI_OMP_FOR(threads > 1, "omp parallel for num_threads(threads) schedule(static)",
                (long n = 0; n < (long)batch; n++), { gap_image(x + (size_t)n * img, y + (size_t)n * c, hw, c); });
}

void tli_global_avgpool_backward(uint32_t threads, uint32_t hw, uint32_t c, const float *dy, size_t batch,
                                 float *dx)
{
    const size_t img = (size_t)hw * c;
    threads = tli_par_threads(threads, 0, (double)batch * (img + c) * sizeof(float));
    TLI_OMP_FOR(threads > 1, "omp parallel for num_threads(threads) schedule(static)",
                (long n = 0; n < (long)batch; n++), {
        float *di = dx + (size_t)n * img;
        const float *dn = dy + (size_t)n * c;
        if (hw == 0)
            continue;
        /* The share dy / hw once, into the first position, then copied to
         * the others: one division per channel, not per element. */
        const float count = (float)hw;
        for (size_t ch = 0; ch < c; ch++)
            di[ch] = dn[ch] / count;
        for (size_t pos = 1; pos < hw; pos++)
            memcpy(di + pos * c, di, sizeof(float) * c);
    });
}
