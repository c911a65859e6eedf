/*
 * conv_bwd_avx512.c - the direct convolution's gradients with AVX-512, NHWC,
 * stride 1 or 2 (the forward pass: conv_fwd_avx512.c).
 *
 * Weight gradient: for a kernel row kh, the receptive field of an output
 * pixel is one contiguous run of k_w * in_c floats of the padded input row,
 * so dw[kh][j][f] = sum over pixels of x(pixel, kh, j) * dz(pixel, f) is an
 * outer product per pixel: a block of JB rows j x 16*NV filters stays in
 * registers for the whole image.
 *
 * Input gradient, gathered: dx(i, c) = sum over taps (kh, kw) whose
 * (i + pad - k) is a multiple of the stride, of dz(o, .) . W(kh, kw, c, .)
 * with o = (i + pad - k) / s. No scatter, so no zeroed padded buffer, no
 * read-modify-write and no crop. dz is copied per image into a buffer laid
 * out (row, filter, column) with zero borders (conv_direct.h); then a
 * block of RB dx pixels of one row (same column residue mod the stride)
 * reads, for each tap and filter, RB consecutive floats: broadcasts with
 * constant displacements from one pointer, whatever the filter count.
 *
 * The loops over a block's registers carry `#pragma GCC unroll`: without
 * it GCC 12 keeps a 24 x 1 accumulator block in memory (a load and a store
 * per FMA).
 *
 * This file is compiled with AVX-512 enabled and only ever called after
 * tli_cpu_has_avx512() said yes.
 */
#include <immintrin.h>
#include <stdint.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "conv_direct.h"
#include "parallel.h"

#define TLI_INLINE static inline __attribute__((always_inline))

/* ---- weight gradient ------------------------------------------------------- */

/* dw rows [kh*row_len + j0, + JB) x filters [f0, f0 + 16*NV) += sum over
 * the pixels of `images` consecutive images of x(pixel, kh, j) * dz(pixel,
 * f): the block stays in registers across the images. */
TLI_INLINE void dw_block(const tli_direct_geom *g, const float *x, const float *dz, size_t images, float *dw,
                         uint32_t kh, size_t j0, size_t f0, const int JB, const int NV)
{
    __m512 acc[24][4];
#pragma GCC unroll 24
    for (int j = 0; j < JB; j++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            acc[j][v] = _mm512_setzero_ps();
    const size_t n = g->filters;
    const size_t c = g->in_c;
    const size_t xstep = (size_t)g->s_w * c, in_img = (size_t)g->in_h * g->in_w * c;
    const float *dzp = dz + f0;
    for (size_t i = 0; i < images; i++) {
        const float *img = x + i * in_img;
        for (uint32_t oh = 0; oh < g->out_h; oh++) {
            const float *xr = img + ((size_t)oh * g->s_h + kh) * g->in_w * c + j0;
            for (uint32_t ow = 0; ow < g->out_w; ow++, xr += xstep, dzp += n) {
                __m512 d[4];
#pragma GCC unroll 4
                for (int v = 0; v < NV; v++)
                    d[v] = _mm512_loadu_ps(dzp + 16 * v);
#pragma GCC unroll 24
                for (int j = 0; j < JB; j++) {
                    __m512 b = _mm512_set1_ps(xr[j]);
#pragma GCC unroll 4
                    for (int v = 0; v < NV; v++)
                        acc[j][v] = _mm512_fmadd_ps(b, d[v], acc[j][v]);
                }
            }
        }
    }
    const size_t row_len = (size_t)g->k_w * c;
    float *out = dw + ((size_t)kh * row_len + j0) * n + f0;
#pragma GCC unroll 24
    for (int j = 0; j < JB; j++)
#pragma GCC unroll 4
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

#define DW(JB, NV) dw_block(g, x, dz, images, dw, kh, j0, f0, JB, NV)

static void dw_run(const tli_direct_geom *g, const float *x, const float *dz, size_t images, float *dw, uint32_t kh,
                   size_t j0, size_t f0, int jb, int nv)
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

/* The blocks of dw: (filter block of 16*nv, kernel row, block of jb
 * kernel-row floats), numbered in a fixed order so that threads can split
 * them; every filter block but the last has nv = 4 and the same row blocks. */
typedef struct dw_plan {
    size_t row_len, n, blocks4, rows4, rows_last, per4, total;
    int nv_last;
} dw_plan;

static size_t dw_row_blocks(size_t row_len, int nv)
{
    size_t count = 0;
    for (size_t j = 0; j < row_len; count++)
        j += (size_t)dw_rows(row_len - j, nv);
    return count;
}

static dw_plan dw_plan_of(const tli_direct_geom *g)
{
    dw_plan p;
    p.row_len = (size_t)g->k_w * g->in_c;
    p.n = g->filters;
    p.blocks4 = (p.n - 1) / 64; /* filter blocks before the last */
    p.nv_last = (int)((p.n - 64 * p.blocks4) / 16);
    p.rows4 = dw_row_blocks(p.row_len, 4);
    p.rows_last = dw_row_blocks(p.row_len, p.nv_last);
    p.per4 = g->k_h * p.rows4;
    p.total = p.blocks4 * p.per4 + g->k_h * p.rows_last;
    return p;
}

/* Block `idx` of the plan. */
static void dw_item(const dw_plan *p, size_t idx, size_t *f0, int *nv, uint32_t *kh, size_t *j0, int *jb)
{
    size_t fb = idx < p->blocks4 * p->per4 ? idx / p->per4 : p->blocks4;
    size_t rest = idx - fb * p->per4, rows = fb < p->blocks4 ? p->rows4 : p->rows_last;
    *nv = fb < p->blocks4 ? 4 : p->nv_last;
    *f0 = 64 * fb;
    *kh = (uint32_t)(rest / rows);
    size_t b = rest % rows;
    /* the row blocks: full-size ones, then the greedy tail */
    const int mx = dw_rows(SIZE_MAX, *nv);
    const size_t full = p->row_len / (size_t)mx;
    if (b < full) {
        *j0 = b * (size_t)mx;
        *jb = mx;
        return;
    }
    size_t j = full * (size_t)mx;
    for (b -= full;; b--) {
        int w = dw_rows(p->row_len - j, *nv);
        if (b == 0) {
            *j0 = j;
            *jb = w;
            return;
        }
        j += (size_t)w;
    }
}

/* Thread t of nt: its fixed share of dw's blocks, over all chunks. */
static void wgrad_share(const tli_direct_geom *g, const dw_plan *p, const float *x, const float *dz, float *dw,
                        size_t batch, size_t chunk, size_t t, size_t nt)
{
    const size_t in_img = (size_t)g->in_h * g->in_w * g->in_c;
    const size_t out_img = (size_t)g->out_h * g->out_w * g->filters;
    const size_t lo = p->total * t / nt, hi = p->total * (t + 1) / nt;
    for (size_t i0 = 0; i0 < batch; i0 += chunk) {
        const size_t images = batch - i0 < chunk ? batch - i0 : chunk;
        for (size_t it = lo; it < hi; it++) {
            size_t f0, j0;
            int nv, jb;
            uint32_t kh;
            dw_item(p, it, &f0, &nv, &kh, &j0, &jb);
            dw_run(g, x + i0 * in_img, dz + i0 * out_img, images, dw, kh, j0, f0, jb, nv);
        }
    }
}

void tli_direct_weight_grad_avx512(uint32_t threads, const tli_direct_geom *g, const float *x, const float *dz,
                                   float *dw, size_t batch)
{
    const size_t in_img = (size_t)g->in_h * g->in_w * g->in_c;
    const size_t out_img = (size_t)g->out_h * g->out_w * g->filters;
    const size_t wsize = (size_t)g->k_h * g->k_w * g->in_c * g->filters;
    const dw_plan p = dw_plan_of(g);
    /* Images in chunks that stay in the L2 cache (a geometry fact, not a
     * thread count); each thread owns a fixed share of dw's blocks and
     * walks the chunks, every block summing a chunk in registers and then
     * adding it to dw: the same order, so the same bits, for any thread
     * count, no per-thread copies of dw and no barrier between chunks. */
    const size_t img_bytes = (in_img + out_img) * sizeof(float);
    size_t chunk = (384u << 10) / (img_bytes ? img_bytes : 1);
    chunk = chunk < 1 ? 1 : chunk > 16 ? 16 : chunk;
    memset(dw, 0, wsize * sizeof(float));
    threads = tli_par_threads(threads, (double)batch * out_img * g->k_h * g->k_w * g->in_c, 0);
#ifdef _OPENMP
    if (threads > 1 && p.total > 1) {
#pragma omp parallel num_threads(threads)
        wgrad_share(g, &p, x, dz, dw, batch, chunk, (size_t)omp_get_thread_num(), (size_t)omp_get_num_threads());
        return;
    }
#endif
    wgrad_share(g, &p, x, dz, dw, batch, chunk, 0, 1);
}

/* ---- input gradient -------------------------------------------------------- */

/* r[i] = column i of the 16 x 16 block r (rows in, columns out). */
static inline void transpose16(__m512 r[16])
{
    __m512 t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    /* r[4q + k]: column k (mod 4) of rows 4q..4q+3, one column per 128-bit lane */
    for (int q = 0; q < 16; q += 4) {
        r[q] = _mm512_shuffle_ps(t[q], t[q + 2], 0x44);
        r[q + 1] = _mm512_shuffle_ps(t[q], t[q + 2], 0xEE);
        r[q + 2] = _mm512_shuffle_ps(t[q + 1], t[q + 3], 0x44);
        r[q + 3] = _mm512_shuffle_ps(t[q + 1], t[q + 3], 0xEE);
    }
    for (int k = 0; k < 4; k++) {
        t[k] = _mm512_shuffle_f32x4(r[k], r[k + 4], 0x88);     /* columns k, k+8 of rows 0..7 */
        t[k + 4] = _mm512_shuffle_f32x4(r[k], r[k + 4], 0xDD); /* columns k+4, k+12 */
        t[k + 8] = _mm512_shuffle_f32x4(r[k + 8], r[k + 12], 0x88);
        t[k + 12] = _mm512_shuffle_f32x4(r[k + 8], r[k + 12], 0xDD);
    }
    for (int k = 0; k < 4; k++) {
        r[k] = _mm512_shuffle_f32x4(t[k], t[k + 8], 0x88);
        r[k + 8] = _mm512_shuffle_f32x4(t[k], t[k + 8], 0xDD);
        r[k + 4] = _mm512_shuffle_f32x4(t[k + 4], t[k + 12], 0x88);
        r[k + 12] = _mm512_shuffle_f32x4(t[k + 4], t[k + 12], 0xDD);
    }
}

/* One image's dz (out_h x out_w x n) into the buffer's interior, laid out
 * (row, filter, column); the borders stay as zeroed once. */
static void dz_to_rows(const tli_dx_shape *d, const float *dz, float *buf)
{
    const size_t n = d->n, cols = d->cols;
    for (uint32_t oh = 0; oh < d->out_h; oh++) {
        const float *src = dz + (size_t)oh * d->out_w * n;
        float *dst = buf + (size_t)(oh + d->pt) * n * cols + d->pl;
        for (uint32_t w0 = 0; w0 < d->out_w; w0 += 16) {
            const uint32_t cnt = d->out_w - w0 < 16 ? d->out_w - w0 : 16;
            const __mmask16 m = (__mmask16)((1u << cnt) - 1u);
            for (size_t f0 = 0; f0 < n; f0 += 16) {
                __m512 r[16];
                for (uint32_t i = 0; i < 16; i++)
                    r[i] = i < cnt ? _mm512_loadu_ps(src + (w0 + i) * n + f0) : _mm512_setzero_ps();
                transpose16(r);
                for (int i = 0; i < 16; i++)
                    _mm512_mask_storeu_ps(dst + (f0 + (size_t)i) * cols + w0, m, r[i]);
            }
        }
    }
}

/* RB dx pixels (columns q.. of a residue class, `ostep` floats apart in dx)
 * x channels [c0, c0 + 16*NV): the sum over the taps of the buffer's RB
 * floats per filter times the tap's transposed kernel row. */
TLI_INLINE void dx_block(const float *const *tap_dz, const float *const *tap_w, int taps, size_t q, size_t n,
                         size_t cols, size_t c, float *out, size_t ostep, const int RB, const int NV)
{
    __m512 acc[24][4];
#pragma GCC unroll 24
    for (int r = 0; r < RB; r++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            acc[r][v] = _mm512_setzero_ps();
    for (int t = 0; t < taps; t++) {
        const float *bp = tap_dz[t] + q, *wp = tap_w[t];
        for (size_t f = 0; f < n; f++, bp += cols, wp += c) {
            __m512 wv[4];
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++)
                wv[v] = _mm512_loadu_ps(wp + 16 * v);
#pragma GCC unroll 24
            for (int r = 0; r < RB; r++) {
                __m512 b = _mm512_set1_ps(bp[r]);
#pragma GCC unroll 4
                for (int v = 0; v < NV; v++)
                    acc[r][v] = _mm512_fmadd_ps(b, wv[v], acc[r][v]);
            }
        }
    }
#pragma GCC unroll 24
    for (int r = 0; r < RB; r++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            _mm512_storeu_ps(out + (size_t)r * ostep + 16 * v, acc[r][v]);
}

/* The next pixel block of a run of `want` pixels for `nv` channel vectors
 * (RB * NV <= 24 accumulators): the run split into blocks as even as the
 * specialised sizes allow (8 pixels at nv = 4: 4 + 4, not 6 + 2, which
 * would load 6 values per 8 FMAs). */
static int dx_pixels(size_t want, int nv)
{
    static const int sizes[5][10] = {{0},
                                     {24, 16, 12, 8, 6, 4, 3, 2, 1, 0},
                                     {12, 8, 7, 6, 4, 3, 2, 1, 0},
                                     {8, 6, 4, 3, 2, 1, 0},
                                     {6, 4, 3, 2, 1, 0}};
    const int *sz = sizes[nv];
    const size_t blocks = (want + (size_t)sz[0] - 1) / (size_t)sz[0], even = (want + blocks - 1) / blocks;
    int pick = sz[0];
    for (int i = 0; sz[i]; i++)
        if ((size_t)sz[i] >= even && (size_t)sz[i] <= want)
            pick = sz[i];
    if ((size_t)pick <= want)
        return pick;
    for (int i = 0; sz[i]; i++)
        if ((size_t)sz[i] <= want)
            return sz[i];
    return 1;
}

#define DX(RB, NV) dx_block(tap_dz, tap_w, taps, q, n, cols, c, out, ostep, RB, NV)

static void dx_run(const float *const *tap_dz, const float *const *tap_w, int taps, size_t q, size_t n, size_t cols,
                   size_t c, float *out, size_t ostep, int rb, int nv)
{
    switch (nv * 100 + rb) {
    case 124: DX(24, 1); break;
    case 116: DX(16, 1); break;
    case 112: DX(12, 1); break;
    case 108: DX(8, 1); break;
    case 106: DX(6, 1); break;
    case 104: DX(4, 1); break;
    case 103: DX(3, 1); break;
    case 102: DX(2, 1); break;
    case 101: DX(1, 1); break;
    case 212: DX(12, 2); break;
    case 208: DX(8, 2); break;
    case 207: DX(7, 2); break;
    case 206: DX(6, 2); break;
    case 204: DX(4, 2); break;
    case 203: DX(3, 2); break;
    case 202: DX(2, 2); break;
    case 201: DX(1, 2); break;
    case 308: DX(8, 3); break;
    case 306: DX(6, 3); break;
    case 304: DX(4, 3); break;
    case 303: DX(3, 3); break;
    case 302: DX(2, 3); break;
    case 301: DX(1, 3); break;
    case 406: DX(6, 4); break;
    case 404: DX(4, 4); break;
    case 403: DX(3, 4); break;
    case 402: DX(2, 4); break;
    default: DX(1, 4); break;
    }
}

/* Taps that read only dz's zero border add nothing: dx_image leaves them
 * out (an unpadded 3x3 convolution of 15 x 15 inputs would otherwise do
 * 15^2 / 13^2 = 1.33 times the multiply-adds). A tap is (kh, kw) with its
 * dz row fixed for the dx row; its dz column moves with the pixel, so a
 * pixel block takes the taps whose column is inside dz for at least one of
 * its pixels (the 15-pixel rows: 1.15 times the multiply-adds, all in
 * blocks of 7 or 8 pixels). */
typedef struct dx_tap {
    const float *dz; /* the buffer at the tap's dz row and column offset */
    const float *w;
    long lo, hi; /* the run's pixels q in [lo, hi) whose dz column is inside */
} dx_tap;

static void dx_image(const tli_dx_shape *d, const float *buf, const float *wt, float *dx)
{
    const size_t c = d->c, n = d->n, cols = d->cols, plane = (size_t)d->n * d->cols;
    dx_tap all[TLI_DIRECT_MAX_TAPS];
    const float *tap_dz[TLI_DIRECT_MAX_TAPS], *tap_w[TLI_DIRECT_MAX_TAPS];
    for (size_t c0 = 0; c0 < c;) {
        const int nv = (int)((c - c0) / 16 < 4 ? (c - c0) / 16 : 4);
        for (uint32_t ih = 0; ih < d->in_h; ih++)
            for (uint32_t rho = 0; rho < d->s_w && rho < d->in_w; rho++) {
                const long count = (long)((d->in_w - rho + d->s_w - 1) / d->s_w);
                /* the taps that reach row ih at columns rho, rho + s_w, ...
                 * from inside dz */
                int ntaps = 0;
                for (uint32_t kh = 0; kh < d->k_h; kh++) {
                    const long t = (long)ih + d->pad_t - kh;
                    if (t % (long)d->s_h || t < 0 || t / (long)d->s_h >= (long)d->out_h)
                        continue;
                    const size_t a = (size_t)(t / (long)d->s_h + d->pt);
                    for (uint32_t kw = 0; kw < d->k_w; kw++) {
                        const long u = (long)rho + d->pad_l - kw;
                        if (u % (long)d->s_w)
                            continue;
                        /* pixel q reads dz column q + u / s_w */
                        const long shift = u / (long)d->s_w;
                        const long lo = -shift > 0 ? -shift : 0;
                        const long hi = (long)d->out_w - shift < count ? (long)d->out_w - shift : count;
                        if (lo >= hi)
                            continue;
                        all[ntaps].dz = buf + a * plane + (size_t)(shift + d->pl);
                        all[ntaps].w = wt + ((size_t)kh * d->k_w + kw) * n * c + c0;
                        all[ntaps].lo = lo;
                        all[ntaps].hi = hi;
                        ntaps++;
                    }
                }
                const size_t ostep = (size_t)d->s_w * c;
                float *row = dx + ((size_t)ih * d->in_w + rho) * c + c0;
                /* Even pixel blocks over the whole run, each with the taps
                 * that reach any of its pixels from inside dz: a tap that
                 * is inside for only part of a block reads the buffer's
                 * zero border for the rest (exact zeros, in bounds by
                 * tli_dx_extent). Splitting the run where taps enter or
                 * leave would leave 1-pixel blocks at the edges, whose
                 * few accumulators wait on the FMA latency. */
                for (long q = 0; q < count;) {
                    const int rb = dx_pixels((size_t)(count - q), nv);
                    int taps = 0;
                    for (int i = 0; i < ntaps; i++)
                        if (all[i].lo < q + rb && all[i].hi > q) {
                            tap_dz[taps] = all[i].dz;
                            tap_w[taps] = all[i].w;
                            taps++;
                        }
                    if (taps == 0) /* no dz cell reaches these pixels */
                        for (long p = q; p < q + rb; p++)
                            memset(row + (size_t)p * ostep, 0, 16 * (size_t)nv * sizeof(float));
                    else
                        dx_run(tap_dz, tap_w, taps, (size_t)q, n, cols, c, row + (size_t)q * ostep, ostep, rb, nv);
                    q += rb;
                }
            }
        c0 += 16 * (size_t)nv;
    }
}

void tli_direct_input_grad_avx512(uint32_t threads, const tli_dx_shape *d, const float *dz, const float *wt,
                                  float *dx, float *buf, size_t batch)
{
    const size_t in_img = (size_t)d->in_h * d->in_w * d->c;
    const size_t out_img = (size_t)d->out_h * d->out_w * d->n;
    const size_t floats = tli_direct_dx_floats(d);
    threads = tli_par_threads(threads, (double)batch * out_img * d->k_h * d->k_w * d->c, 0);
    /* Each thread zeroes its buffer once (the borders stay zero; every
     * image fills the same interior) and takes its contiguous share of
     * the images (parallel.h): each dx pixel is summed in one fixed order,
     * whoever computes it. */
    if (threads <= 1) {
        memset(buf, 0, floats * sizeof(float));
        for (size_t i = 0; i < batch; i++) {
            dz_to_rows(d, dz + i * out_img, buf);
            dx_image(d, buf, wt, dx + i * in_img);
        }
        return;
    }
#pragma omp parallel num_threads(threads)
    {
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        float *mine = buf + (size_t)tid * floats;
        memset(mine, 0, floats * sizeof(float));
#pragma omp for schedule(static)
        for (long i = 0; i < (long)batch; i++) {
            dz_to_rows(d, dz + (size_t)i * out_img, mine);
            dx_image(d, mine, wt, dx + (size_t)i * in_img);
        }
    }
}
