/*
 * conv_avx512.c - direct convolution with AVX-512 for NHWC tensors: the
 * forward pass (the gradients: conv_bwd_avx512.c).
 *
 * Why not im2col + BLIS here: the document's network has GEMMs BLIS cannot
 * feed well (K = 27 for the first convolution, weight gradients that reduce
 * over tens of thousands of pixels into a 288 x 64 result), and im2col
 * itself moves the input nine times through memory. A direct kernel keeps
 * a block of output pixels x filters in registers and streams the input once
 * per kernel row.
 *
 * Layout facts the kernels rely on (stride 1):
 *  - for a fixed kernel row kh, an output pixel's receptive field is one
 *    contiguous run of k_w * in_c floats of the input row (NHWC);
 *  - the kernel (kh, kw, in, out) is, for that row, a (k_w*in_c) x out
 *    matrix with contiguous rows of `out` floats.
 * So the inner loop broadcasts one input float per pixel and multiplies it
 * with `out`/16 weight vectors.
 *
 * This file is compiled with AVX-512 enabled and only ever called after
 * tli_cpu_has_avx512() said yes.
 */
#include <immintrin.h>
#include <string.h>

#include "conv_direct.h"

#define TLI_INLINE static inline __attribute__((always_inline))

/* ---- forward --------------------------------------------------------------- */

/* Output pixels [p0, p0 + RB) of one image, filters [f0, f0 + 16*NV).
 * off[r]: offset of pixel r's top-left input float from the image start. */
TLI_INLINE void fwd_block(const tli_direct_geom *g, const float *img, const float *w, const float *bias, int clamp,
                          float *y, size_t p0, const size_t *off, size_t f0, const int RB, const int NV)
{
    __m512 acc[24][4];
    for (int r = 0; r < RB; r++)
        for (int v = 0; v < NV; v++)
            acc[r][v] = _mm512_setzero_ps();
    const size_t row_len = (size_t)g->k_w * g->in_c;
    const size_t in_row = (size_t)g->in_w * g->in_c;
    const size_t n = g->filters;
    for (uint32_t kh = 0; kh < g->k_h; kh++) {
        const float *xk = img + kh * in_row;
        const float *wk = w + kh * row_len * n + f0;
        for (size_t j = 0; j < row_len; j++) {
            __m512 wv[4];
            for (int v = 0; v < NV; v++)
                wv[v] = _mm512_loadu_ps(wk + j * n + 16 * v);
            for (int r = 0; r < RB; r++) {
                __m512 b = _mm512_set1_ps(xk[off[r] + j]);
                for (int v = 0; v < NV; v++)
                    acc[r][v] = _mm512_fmadd_ps(b, wv[v], acc[r][v]);
            }
        }
    }
    const __m512 zero = _mm512_setzero_ps(), six = _mm512_set1_ps(6.0f);
    for (int v = 0; v < NV; v++) {
        __m512 bv = bias ? _mm512_loadu_ps(bias + f0 + 16 * v) : zero;
        for (int r = 0; r < RB; r++) {
            __m512 o = _mm512_add_ps(acc[r][v], bv);
            /* max_ps and min_ps return their second operand on NaN: keep NaN */
            if (clamp)
                o = _mm512_max_ps(zero, o);
            if (clamp == TLI_CLAMP_RELU6)
                o = _mm512_min_ps(six, o);
            _mm512_storeu_ps(y + (p0 + r) * n + f0 + 16 * v, o);
        }
    }
}

/* Register blocking per number of 16-filter vectors: RB pixels x NV vectors
 * of accumulators (at most 24 of the 32 registers, the rest hold weights
 * and the broadcast). Smaller blocks finish an image's last pixels. */
static int rows_for(int nv)
{
    static const int rb[5] = {0, 24, 12, 8, 6};
    return rb[nv];
}

static int fwd_rows(size_t want, int nv)
{
    static const int sizes[5][7] = {
        {0}, {24, 12, 6, 3, 1, 0, 0}, {12, 6, 3, 1, 0, 0, 0}, {8, 4, 2, 1, 0, 0, 0}, {6, 3, 1, 0, 0, 0, 0}};
    for (int i = 0; sizes[nv][i]; i++)
        if ((size_t)sizes[nv][i] <= want)
            return sizes[nv][i];
    return 1;
}

#define FWD(RB, NV) fwd_block(g, img, w, bias, clamp, y, p0, off, f0, RB, NV)

static void fwd_run(const tli_direct_geom *g, const float *img, const float *w, const float *bias, int clamp, float *y,
                    size_t p0, const size_t *off, size_t f0, int rb, int nv)
{
    switch (nv * 100 + rb) {
    case 124: FWD(24, 1); break;
    case 112: FWD(12, 1); break;
    case 106: FWD(6, 1); break;
    case 103: FWD(3, 1); break;
    case 212: FWD(12, 2); break;
    case 206: FWD(6, 2); break;
    case 203: FWD(3, 2); break;
    case 308: FWD(8, 3); break;
    case 304: FWD(4, 3); break;
    case 302: FWD(2, 3); break;
    case 406: FWD(6, 4); break;
    case 403: FWD(3, 4); break;
    case 101: FWD(1, 1); break;
    case 201: FWD(1, 2); break;
    case 301: FWD(1, 3); break;
    default: FWD(1, 4); break;
    }
}

static void fwd_image(const tli_direct_geom *g, const float *img, const float *w, const float *bias, int clamp,
                      float *y)
{
    const size_t pixels = (size_t)g->out_h * g->out_w;
    const size_t n = g->filters;
    size_t off[24];
    for (size_t f0 = 0; f0 < n; f0 += 64) {
        int nv = (int)((n - f0) / 16 < 4 ? (n - f0) / 16 : 4);
        /* Walk the output pixels in order, tracking (oh, ow) instead of
         * dividing per pixel. */
        uint32_t oh = 0, ow = 0;
        for (size_t p0 = 0; p0 < pixels;) {
            int rb = fwd_rows(pixels - p0 < (size_t)rows_for(nv) ? pixels - p0 : (size_t)rows_for(nv), nv);
            for (int r = 0; r < rb; r++) {
                off[r] = ((size_t)oh * g->s_h * g->in_w + (size_t)ow * g->s_w) * g->in_c;
                if (++ow == g->out_w) {
                    ow = 0;
                    oh++;
                }
            }
            fwd_run(g, img, w, bias, clamp, y, p0, off, f0, rb, nv);
            p0 += (size_t)rb;
        }
    }
}

void tli_direct_forward_avx512(uint32_t threads, const tli_direct_geom *g, const float *x, const float *w,
                               const float *bias, int clamp, float *y, size_t batch)
{
    const size_t in_img = (size_t)g->in_h * g->in_w * g->in_c;
    const size_t out_img = (size_t)g->out_h * g->out_w * g->filters;
    (void)threads;
    /* Images are independent, so handing them out dynamically changes no
     * result, and a thread that the OS pauses (a busy machine) does not
     * hold the others up at the end of the loop. */
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1) if (threads > 1)
    for (long i = 0; i < (long)batch; i++)
        fwd_image(g, x + (size_t)i * in_img, w, bias, clamp, y + (size_t)i * out_img);
}
