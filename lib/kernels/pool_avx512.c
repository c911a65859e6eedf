/*
 * pool_avx512.c - max pooling for channel counts that are a multiple of
 * 16: the forward compares and blends whole vectors of channels, keeping
 * the arg-max as a vector of indices; the tiled backward writes each
 * window's cells from one load of the gradient, arg-max and ReLU mask. The
 * portable loops in pool.c do the same a few channels at a time. Only
 * called after tli_cpu_has_avx512().
 */
#include <immintrin.h>
#include <stdbool.h>

#include "parallel.h"
#include "pool_simd.h"

/* The input rows from `h` to the end of the next output row's windows
 * (the next image's first rows after the last): the input is a layer's
 * output that has usually left the cache, and the hardware prefetcher does
 * not run far enough ahead of these short row pairs (a 2x2 pool of 30x30x32
 * images: 16 -> 5 us per image from memory). */
static void prefetch_next_rows(const tli_pool_geom *g, const float *x, size_t batch, size_t n, long h)
{
    const size_t row = (size_t)g->in_w * g->c;
    if (h >= (long)g->in_h) { /* the next image */
        if (n + 1 >= batch)
            return;
        n++;
        h = 0;
    }
    long end = h + (long)g->s_h;
    end = end > (long)g->in_h ? (long)g->in_h : end;
    const char *p = (const char *)(x + (n * g->in_h + (size_t)h) * row);
    const size_t bytes = (size_t)(end - h) * row * sizeof(float);
    for (size_t i = 0; i < bytes; i += 64)
        _mm_prefetch(p + i, _MM_HINT_T0);
}

/* One output row of a 2x2 stride-2 pool whose windows lie inside the
 * input: the cells in the generic loop's order (first row, then second),
 * so the same maxima and arg-maxes. `r0` is the window's first input row,
 * `at0` its index within the image. */
static void row_2x2(const float *r0, size_t at0, uint32_t in_w, size_t c, uint32_t out_w, float *y, int32_t *argmax)
{
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const size_t row = (size_t)in_w * c;
    const __m512i right = _mm512_set1_epi32((int32_t)c), below = _mm512_set1_epi32((int32_t)row),
                  diag = _mm512_set1_epi32((int32_t)(row + c));
    for (uint32_t ow = 0; ow < out_w; ow++)
        for (size_t ch = 0; ch < c; ch += 16) {
            const size_t at = 2 * (size_t)ow * c + ch;
            const __m512i first = _mm512_add_epi32(_mm512_set1_epi32((int32_t)(at0 + at)), lane);
            __m512 best = _mm512_loadu_ps(r0 + at), v = _mm512_loadu_ps(r0 + at + c);
            __m512i where = first;
            __mmask16 gt = _mm512_cmp_ps_mask(v, best, _CMP_GT_OQ);
            best = _mm512_mask_blend_ps(gt, best, v);
            where = _mm512_mask_add_epi32(where, gt, first, right);
            v = _mm512_loadu_ps(r0 + row + at);
            gt = _mm512_cmp_ps_mask(v, best, _CMP_GT_OQ);
            best = _mm512_mask_blend_ps(gt, best, v);
            where = _mm512_mask_add_epi32(where, gt, first, below);
            v = _mm512_loadu_ps(r0 + row + at + c);
            gt = _mm512_cmp_ps_mask(v, best, _CMP_GT_OQ);
            best = _mm512_mask_blend_ps(gt, best, v);
            where = _mm512_mask_add_epi32(where, gt, first, diag);
            _mm512_storeu_ps(y + (size_t)ow * c + ch, best);
            if (argmax)
                _mm512_storeu_si512((void *)(argmax + (size_t)ow * c + ch), where);
        }
}

void tli_maxpool_forward_avx512(uint32_t threads, const tli_pool_geom *g, const float *x, size_t batch, float *y,
                                int32_t *argmax)
{
    const size_t c = g->c;
    const size_t in_img = (size_t)g->in_h * g->in_w * c;
    const size_t out_img = (size_t)g->out_h * g->out_w * c;
    const long rows = (long)(batch * g->out_h);
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const bool two = g->p_h == 2 && g->p_w == 2 && g->s_h == 2 && g->s_w == 2 && g->pad_t == 0 && g->pad_l == 0 &&
                     2 * (size_t)g->out_h <= g->in_h && 2 * (size_t)g->out_w <= g->in_w;
    threads = tli_par_threads(threads, 0, (double)batch * (in_img + out_img) * sizeof(float));
    TLI_OMP_FOR(threads > 1, "omp parallel for num_threads(threads) schedule(static)",
                (long r = 0; r < rows; r++), {
        size_t n = (size_t)r / g->out_h;
        uint32_t oh = (uint32_t)((size_t)r % g->out_h);
        const float *img = x + n * in_img;
        size_t obase = n * out_img + (size_t)oh * g->out_w * c;
        long h0 = (long)oh * g->s_h - g->pad_t;
        long h_lo = h0 < 0 ? 0 : h0;
        long h_hi = h0 + (long)g->p_h > (long)g->in_h ? (long)g->in_h : h0 + (long)g->p_h;
        prefetch_next_rows(g, x, batch, n, h_hi);
        if (two) {
            row_2x2(img + (size_t)h0 * g->in_w * c, (size_t)h0 * g->in_w * c, g->in_w, c, g->out_w, y + obase,
                    argmax ? argmax + obase : NULL);
            continue;
        }
        for (uint32_t ow = 0; ow < g->out_w; ow++) {
            long w0 = (long)ow * g->s_w - g->pad_l;
            long w_lo = w0 < 0 ? 0 : w0;
            long w_hi = w0 + (long)g->p_w > (long)g->in_w ? (long)g->in_w : w0 + (long)g->p_w;
            for (size_t ch = 0; ch < c; ch += 16) {
                /* The window's first cell starts the scan, as in pool.c. */
                size_t first = ((size_t)h_lo * g->in_w + (size_t)w_lo) * c + ch;
                __m512 best = _mm512_loadu_ps(img + first);
                __m512i where = _mm512_add_epi32(_mm512_set1_epi32((int32_t)first), lane);
                for (long h = h_lo; h < h_hi; h++)
                    for (long w = (h == h_lo ? w_lo + 1 : w_lo); w < w_hi; w++) {
                        size_t at = ((size_t)h * g->in_w + (size_t)w) * c + ch;
                        __m512 v = _mm512_loadu_ps(img + at);
                        __mmask16 gt = _mm512_cmp_ps_mask(v, best, _CMP_GT_OQ);
                        best = _mm512_mask_blend_ps(gt, best, v);
                        where = _mm512_mask_blend_epi32(gt, where,
                                                        _mm512_add_epi32(_mm512_set1_epi32((int32_t)at), lane));
                    }
                size_t o = obase + (size_t)ow * c + ch;
                _mm512_storeu_ps(y + o, best);
                if (argmax)
                    _mm512_storeu_si512((void *)(argmax + o), where);
            }
        }
    });
}

/* One image of tli_maxpool_backward's tiled case (pool == stride, no
 * padding, windows inside the input), g->c % 16 == 0: each output
 * vector's gradient, arg-max and ReLU mask are loaded once and written to
 * the window's cells under the mask "this cell won" (zeros elsewhere),
 * the same bits as gradient_or_zero in pool.c. Cells no window covers are
 * left to the caller. */
void tli_maxpool_backward_tiled_avx512(const tli_pool_geom *g, const float *d, const int32_t *a, const float *y,
                                       float *img)
{
    const size_t c = g->c;
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const size_t orow = (size_t)g->out_w * c, irow = (size_t)g->in_w * c;
    for (uint32_t oh = 0; oh < g->out_h; oh++) {
        if (oh + 1 < g->out_h) {
            /* the next row's inputs and the cells it writes (from memory
             * 8.1 -> 6.5 us per 30x30x32 image); see prefetch_next_rows */
            const size_t next = (oh + 1) * orow;
            for (size_t i = 0; i < orow; i += 16) {
                _mm_prefetch((const char *)(d + next + i), _MM_HINT_T0);
                _mm_prefetch((const char *)(a + next + i), _MM_HINT_T0);
                if (y)
                    _mm_prefetch((const char *)(y + next + i), _MM_HINT_T0);
            }
            const float *cells = img + (size_t)(oh + 1) * g->p_h * irow;
            for (size_t i = 0; i < g->p_h * irow; i += 16)
                _mm_prefetch((const char *)(cells + i), _MM_HINT_T0);
        }
        for (uint32_t ow = 0; ow < g->out_w; ow++) {
            const size_t o = ((size_t)oh * g->out_w + ow) * c;
            const size_t first = ((size_t)oh * g->p_h * g->in_w + (size_t)ow * g->p_w) * c;
            for (size_t ch = 0; ch < c; ch += 16) {
                const __m512 dv = _mm512_loadu_ps(d + o + ch);
                const __m512i av = _mm512_loadu_si512((const void *)(a + o + ch));
                const __mmask16 pass =
                    y ? _mm512_cmp_ps_mask(_mm512_loadu_ps(y + o + ch), _mm512_setzero_ps(), _CMP_GT_OQ) : 0xFFFF;
                for (uint32_t ph = 0; ph < g->p_h; ph++)
                    for (uint32_t pw = 0; pw < g->p_w; pw++) {
                        const size_t cell = first + ((size_t)ph * g->in_w + pw) * c + ch;
                        const __m512i idx = _mm512_add_epi32(_mm512_set1_epi32((int32_t)cell), lane);
                        const __mmask16 won = _mm512_mask_cmpeq_epi32_mask(pass, av, idx);
                        _mm512_storeu_ps(img + cell, _mm512_maskz_mov_ps(won, dv));
                    }
            }
        }
    }
}
