/*
 * pool_avx512.c - max pooling forward for channel counts that are a
 * multiple of 16: compare and blend whole vectors of channels, keeping the
 * arg-max as a vector of indices. The portable loop in pool.c does the same
 * four channels at a time. Only called after tli_cpu_has_avx512().
 */
#include <immintrin.h>

#include "parallel.h"
#include "pool_simd.h"

void tli_maxpool_forward_avx512(uint32_t threads, const tli_pool_geom *g, const float *x, size_t batch, float *y,
                                int32_t *argmax)
{
    const size_t c = g->c;
    const size_t in_img = (size_t)g->in_h * g->in_w * c;
    const size_t out_img = (size_t)g->out_h * g->out_w * c;
    const long rows = (long)(batch * g->out_h);
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    threads = tli_par_threads(threads, 0, (double)batch * (in_img + out_img) * sizeof(float));
    TLI_OMP_FOR(threads > 1, "omp parallel for num_threads(threads) schedule(dynamic, 16)",
                (long r = 0; r < rows; r++), {
        size_t n = (size_t)r / g->out_h;
        uint32_t oh = (uint32_t)((size_t)r % g->out_h);
        const float *img = x + n * in_img;
        size_t obase = n * out_img + (size_t)oh * g->out_w * c;
        long h0 = (long)oh * g->s_h - g->pad_t;
        long h_lo = h0 < 0 ? 0 : h0;
        long h_hi = h0 + (long)g->p_h > (long)g->in_h ? (long)g->in_h : h0 + (long)g->p_h;
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
