/*
 * conv_avx512.c - direct stride-1 convolution with AVX-512 for NHWC tensors.
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

/* ---- pixel blocks (the input gradient's; the forward pass is in conv_fwd_avx512.c) ---- */

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

/* ---- weight gradient ------------------------------------------------------- */

/* dw rows [kh*row_len + j0, + JB) x filters [f0, f0 + 16*NV) += sum over the
 * image's pixels of x(pixel, kh, j) * dz(pixel, f). */
TLI_INLINE void dw_block(const tli_direct_geom *g, const float *img, const float *dz, float *dw, uint32_t kh,
                         size_t j0, size_t f0, const int JB, const int NV)
{
    __m512 acc[24][4];
    for (int j = 0; j < JB; j++)
        for (int v = 0; v < NV; v++)
            acc[j][v] = _mm512_setzero_ps();
    const size_t n = g->filters;
    const size_t c = g->in_c;
    const float *dzp = dz + f0;
    for (uint32_t oh = 0; oh < g->out_h; oh++) {
        const float *xr = img + ((size_t)(oh + kh) * g->in_w) * c + j0;
        for (uint32_t ow = 0; ow < g->out_w; ow++, xr += c, dzp += n) {
            __m512 d[4];
            for (int v = 0; v < NV; v++)
                d[v] = _mm512_loadu_ps(dzp + 16 * v);
            for (int j = 0; j < JB; j++) {
                __m512 b = _mm512_set1_ps(xr[j]);
                for (int v = 0; v < NV; v++)
                    acc[j][v] = _mm512_fmadd_ps(b, d[v], acc[j][v]);
            }
        }
    }
    const size_t row_len = (size_t)g->k_w * c;
    float *out = dw + ((size_t)kh * row_len + j0) * n + f0;
    for (int j = 0; j < JB; j++)
        for (int v = 0; v < NV; v++) {
            float *o = out + (size_t)j * n + 16 * v;
            _mm512_storeu_ps(o, _mm512_add_ps(_mm512_loadu_ps(o), acc[j][v]));
        }
}

/* Largest block of kernel rows, at most `want`, that has a specialised
 * kernel for `nv` filter vectors (JB * NV <= 24 accumulators). Widths 9 and
 * 3 cover first layers (3x3 kernels on 1 or 3 channels). */
static int dw_rows(size_t want, int nv)
{
    static const int sizes[5][7] = {
        {0}, {24, 12, 9, 6, 3, 1, 0}, {12, 9, 6, 3, 1, 0, 0}, {8, 6, 3, 1, 0, 0, 0}, {6, 3, 1, 0, 0, 0, 0}};
    for (int i = 0; sizes[nv][i]; i++)
        if ((size_t)sizes[nv][i] <= want)
            return sizes[nv][i];
    return 1;
}

#define DW(JB, NV) dw_block(g, img, dz, dw, kh, j0, f0, JB, NV)

static void dw_run(const tli_direct_geom *g, const float *img, const float *dz, float *dw, uint32_t kh, size_t j0,
                   size_t f0, int jb, int nv)
{
    switch (nv * 100 + jb) {
    case 124: DW(24, 1); break;
    case 112: DW(12, 1); break;
    case 109: DW(9, 1); break;
    case 106: DW(6, 1); break;
    case 103: DW(3, 1); break;
    case 212: DW(12, 2); break;
    case 209: DW(9, 2); break;
    case 206: DW(6, 2); break;
    case 203: DW(3, 2); break;
    case 308: DW(8, 3); break;
    case 306: DW(6, 3); break;
    case 303: DW(3, 3); break;
    case 406: DW(6, 4); break;
    case 403: DW(3, 4); break;
    case 101: DW(1, 1); break;
    case 201: DW(1, 2); break;
    case 301: DW(1, 3); break;
    default: DW(1, 4); break;
    }
}

static void dw_image(const tli_direct_geom *g, const float *img, const float *dz, float *dw)
{
    const size_t row_len = (size_t)g->k_w * g->in_c;
    const size_t n = g->filters;
    for (size_t f0 = 0; f0 < n; f0 += 64) {
        int nv = (int)((n - f0) / 16 < 4 ? (n - f0) / 16 : 4);
        for (uint32_t kh = 0; kh < g->k_h; kh++)
            for (size_t j0 = 0; j0 < row_len;) {
                int jb = dw_rows(row_len - j0, nv);
                dw_run(g, img, dz, dw, kh, j0, f0, jb, nv);
                j0 += (size_t)jb;
            }
    }
}

void tli_direct_weight_grad_avx512(uint32_t threads, const tli_direct_geom *g, const float *x, const float *dz,
                                   float *dw, float *partials, size_t batch)
{
    const size_t in_img = (size_t)g->in_h * g->in_w * g->in_c;
    const size_t out_img = (size_t)g->out_h * g->out_w * g->filters;
    const size_t wsize = (size_t)g->k_h * g->k_w * g->in_c * g->filters;
    size_t blocks = threads > batch ? batch : threads;
    if (blocks <= 1) {
        memset(dw, 0, wsize * sizeof(float));
        for (size_t i = 0; i < batch; i++)
            dw_image(g, x + i * in_img, dz + i * out_img, dw);
        return;
    }
    /* Each thread sums its share of the images into its own buffer; the
     * buffers are added in a fixed order, so the result depends on the
     * thread count only. */
#pragma omp parallel for num_threads((int)blocks) schedule(static, 1)
    for (long b = 0; b < (long)blocks; b++) {
        float *mine = b == 0 ? dw : partials + (size_t)(b - 1) * wsize;
        memset(mine, 0, wsize * sizeof(float));
        size_t lo = batch * (size_t)b / blocks, hi = batch * ((size_t)b + 1) / blocks;
        for (size_t i = lo; i < hi; i++)
            dw_image(g, x + i * in_img, dz + i * out_img, mine);
    }
    for (size_t b = 1; b < blocks; b++) {
        const float *p = partials + (b - 1) * wsize;
        for (size_t i = 0; i < wsize; i += 16) {
            if (wsize - i >= 16)
                _mm512_storeu_ps(dw + i, _mm512_add_ps(_mm512_loadu_ps(dw + i), _mm512_loadu_ps(p + i)));
            else
                for (size_t k = i; k < wsize; k++)
                    dw[k] += p[k];
        }
    }
}

/* ---- input gradient ------------------------------------------------------ */

/* For output pixels [p0, p0 + RB) and kernel rows [j0, j0 + 16*NV) of
 * (kh, kw, c): t = dz(pixel) . W^T, added straight into the padded input
 * gradient at the cells the kernel row touches (col2im fused into the
 * epilogue, so the pixels x (kh*kw*c) matrix is never stored). in_c is a
 * multiple of 16, so each 16-vector of j stays within one (kh, kw). */
TLI_INLINE void dx_block(const tli_direct_geom *g, const float *dz, const float *wt, float *dxp, size_t p0,
                         const size_t *cell, size_t j0, const int RB, const int NV)
{
    __m512 acc[24][4];
    for (int r = 0; r < RB; r++)
        for (int v = 0; v < NV; v++)
            acc[r][v] = _mm512_setzero_ps();
    const size_t n = g->filters, k = (size_t)g->k_h * g->k_w * g->in_c;
    const float *dzp = dz + p0 * n;
    for (size_t f = 0; f < n; f++) {
        __m512 wv[4];
        for (int v = 0; v < NV; v++)
            wv[v] = _mm512_loadu_ps(wt + f * k + j0 + 16 * v);
        for (int r = 0; r < RB; r++) {
            __m512 b = _mm512_set1_ps(dzp[(size_t)r * n + f]);
            for (int v = 0; v < NV; v++)
                acc[r][v] = _mm512_fmadd_ps(b, wv[v], acc[r][v]);
        }
    }
    const size_t c = g->in_c, row = (size_t)g->in_w * c;
    for (int v = 0; v < NV; v++) {
        size_t j = j0 + 16 * (size_t)v;
        size_t kh = j / ((size_t)g->k_w * c), kw = (j / c) % g->k_w, c0 = j % c;
        size_t shift = kh * row + kw * c + c0;
        for (int r = 0; r < RB; r++) {
            float *d = dxp + cell[r] + shift;
            _mm512_storeu_ps(d, _mm512_add_ps(_mm512_loadu_ps(d), acc[r][v]));
        }
    }
}

#define DX(RB, NV) dx_block(g, dz, wt, dxp, p0, cell, j0, RB, NV)

static void dx_run(const tli_direct_geom *g, const float *dz, const float *wt, float *dxp, size_t p0,
                   const size_t *cell, size_t j0, int rb, int nv)
{
    switch (nv * 100 + rb) {
    case 124: DX(24, 1); break;
    case 112: DX(12, 1); break;
    case 106: DX(6, 1); break;
    case 103: DX(3, 1); break;
    case 212: DX(12, 2); break;
    case 206: DX(6, 2); break;
    case 203: DX(3, 2); break;
    case 308: DX(8, 3); break;
    case 304: DX(4, 3); break;
    case 302: DX(2, 3); break;
    case 406: DX(6, 4); break;
    case 403: DX(3, 4); break;
    case 101: DX(1, 1); break;
    case 201: DX(1, 2); break;
    case 301: DX(1, 3); break;
    default: DX(1, 4); break;
    }
}

static void dx_image(const tli_direct_geom *g, const float *dz, const float *wt, float *dxp)
{
    const size_t pixels = (size_t)g->out_h * g->out_w;
    const size_t k = (size_t)g->k_h * g->k_w * g->in_c;
    size_t cell[24];
    memset(dxp, 0, sizeof(float) * g->in_h * g->in_w * g->in_c);
    for (size_t j0 = 0; j0 < k; j0 += 64) {
        int nv = (int)((k - j0) / 16 < 4 ? (k - j0) / 16 : 4);
        uint32_t oh = 0, ow = 0;
        for (size_t p0 = 0; p0 < pixels;) {
            int rb = fwd_rows(pixels - p0 < (size_t)rows_for(nv) ? pixels - p0 : (size_t)rows_for(nv), nv);
            for (int r = 0; r < rb; r++) {
                cell[r] = ((size_t)oh * g->in_w + ow) * g->in_c;
                if (++ow == g->out_w) {
                    ow = 0;
                    oh++;
                }
            }
            dx_run(g, dz, wt, dxp, p0, cell, j0, rb, nv);
            p0 += (size_t)rb;
        }
    }
}

void tli_direct_input_grad_avx512(uint32_t threads, const tli_direct_geom *g, const float *dz, const float *wt,
                                  float *dxp, size_t batch)
{
    const size_t in_img = (size_t)g->in_h * g->in_w * g->in_c;
    const size_t out_img = (size_t)g->out_h * g->out_w * g->filters;
    (void)threads;
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1) if (threads > 1)
    for (long i = 0; i < (long)batch; i++)
        dx_image(g, dz + (size_t)i * out_img, wt, dxp + (size_t)i * in_img);
}
