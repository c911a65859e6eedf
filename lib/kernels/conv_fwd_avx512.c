/*
 * conv_fwd_avx512.c - the direct convolution's forward pass with AVX-512,
 * NHWC tensors, any kernel size, stride and zero padding, any number of
 * filters (a last partial vector of them masked).
 *
 * The convolution is a GEMM, out (pixels x filters) = A (pixels x K) * W
 * (K x filters) with K = k_h * k_w * in_c, where A's rows (the receptive
 * fields, im2col's rows) are never stored. Work goes by blocks of PB
 * output pixels, and every filter block runs over a pixel block before the
 * next one starts, so the input is read once per pixel block whatever the
 * number of filters.
 *
 * A pixel's window is read row by row: window row kh is k_w * in_c
 * contiguous floats, read where it lies in the input (any stride) through
 * a pointer per (row, pixel) set up once per pixel block. A row that lies
 * wholly above or below the image points at a row of zeros; one that hangs
 * over the left or right border (only pixels at the image's edge columns)
 * is copied with its zeros into a small per-thread edge buffer. Nothing
 * else is copied: the interior, almost all of it, is read in place. In
 * training the caller may pass a padded buffer instead (the weight
 * gradient reads the padded images): each image is then copied there just
 * before it is read, while it is in cache, and read from there.
 *
 * A register tile is RB <= 12 pixels (their row pointers in general
 * registers) x NV vectors of 16 filters (RB * NV <= 24 accumulators, NV
 * weight vectors); filter blocks are 4 vectors wide with the remainder
 * spread (next_block).
 *
 * Every output is one FMA chain over j = 0 .. K-1 in order (zeros where
 * the window leaves the image), plus the bias, plus the residual when one
 * is given, then the clamp: the same bits whichever way the input is read,
 * whatever the blocking and the thread count, and the same as adding the
 * residual in a later pass (float addition commutes).
 *
 * This file is compiled with AVX-512 enabled and only ever called after
 * tli_cpu_has_avx512() said yes.
 */
#include <immintrin.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "conv_direct.h"
#include "parallel.h"

#define TLI_INLINE static inline __attribute__((always_inline))

enum {
    PB = TLI_DIRECT_PIXEL_BLOCK, /* output pixels per block */
};

/* The input as the forward pass reads it. */
typedef struct fwd_src {
    const tli_direct_geom *g;
    const float *x; /* x_h x x_w x in_c per image */
    uint32_t x_h, x_w;
    uint32_t pad_t, pad_l;
} fwd_src;

/* ---- register tile ------------------------------------------------------------ */

/* y[r][16v ..] (rows n floats apart) for the tile's RB pixels and NV filter
 * vectors: window row kh of pixel r is the len = k_w * in_c floats at
 * rows[kh * PB + r]; weights w (K rows, n floats apart, starting at the
 * tile's first filter). Then the bias, the residual res (laid out as y;
 * NULL: none) and the clamp. */
TLI_INLINE void tile_direct(const float *const *rows, uint32_t k_h, size_t len, const float *w, size_t n,
                            const float *bias, const float *res, int clamp, float *y, const int RB, const int NV,
                            const bool TAIL, __mmask16 tail)
{
    /* TAIL: the last vector holds the filters' last n % 16 (lanes `tail`):
     * its loads and stores are masked, the lanes past n left alone. */
#define TLI_LD(v, p) (TAIL && (v) == NV - 1 ? _mm512_maskz_loadu_ps(tail, (p)) : _mm512_loadu_ps(p))
    __m512 acc[12][4];
#pragma GCC unroll 12
    for (int r = 0; r < RB; r++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            acc[r][v] = _mm512_setzero_ps();
    for (uint32_t kh = 0; kh < k_h; kh++, rows += PB) {
        const float *p[12];
#pragma GCC unroll 12
        for (int r = 0; r < RB; r++)
            p[r] = rows[r];
        for (size_t j = 0; j < len; j++, w += n) {
            __m512 wv[4];
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++)
                wv[v] = TLI_LD(v, w + 16 * v);
#pragma GCC unroll 12
            for (int r = 0; r < RB; r++) {
                const __m512 b = _mm512_set1_ps(p[r][j]);
#pragma GCC unroll 4
                for (int v = 0; v < NV; v++)
                    acc[r][v] = _mm512_fmadd_ps(b, wv[v], acc[r][v]);
            }
        }
    }
    const __m512 zero = _mm512_setzero_ps(), six = _mm512_set1_ps(6.0f);
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++) {
        const __m512 bv = bias ? TLI_LD(v, bias + 16 * v) : zero;
#pragma GCC unroll 12
        for (int r = 0; r < RB; r++) {
            __m512 o = _mm512_add_ps(acc[r][v], bv);
            if (res) /* the residual join, fused (conv -> add) */
                o = _mm512_add_ps(o, TLI_LD(v, res + (size_t)r * n + 16 * v));
            /* max_ps and min_ps return their second operand on NaN: keep NaN */
            if (clamp)
                o = _mm512_max_ps(zero, o);
            if (clamp == TLI_CLAMP_RELU6)
                o = _mm512_min_ps(six, o);
            if (TAIL && v == NV - 1)
                _mm512_mask_storeu_ps(y + (size_t)r * n + 16 * v, tail, o);
            else
                _mm512_storeu_ps(y + (size_t)r * n + 16 * v, o);
        }
    }
#undef TLI_LD
}

/* Tile heights per filter vectors: the largest first (RB * NV <= 24, RB
 * <= 12: the row pointers stay in registers), then smaller ones for a
 * block's last pixels. */
static int direct_rows(int want, int nv)
{
    static const int sizes[5][6] = {
        {0}, {12, 8, 4, 2, 1, 0}, {12, 8, 4, 2, 1, 0}, {8, 4, 2, 1, 0, 0}, {6, 4, 2, 1, 0, 0}};
    for (int i = 0; sizes[nv][i]; i++)
        if (sizes[nv][i] <= want)
            return sizes[nv][i];
    return 1;
}

#define TILED(RB, NV) tile_direct(rows, k_h, len, w, n, bias, res, clamp, y, RB, NV, false, 0)
#define TILED_TAIL(RB, NV) tile_direct(rows, k_h, len, w, n, bias, res, clamp, y, RB, NV, true, tail)

/* tail: the lanes of the block's last vector that are filters (0xffff:
 * all; otherwise nv is 1 or 2, see fwd_pixels). */
static void run_tile_direct(const float *const *rows, uint32_t k_h, size_t len, const float *w, size_t n,
                            const float *bias, const float *res, int clamp, float *y, int rb, int nv,
                            __mmask16 tail)
{
    if (tail != 0xffff) {
        switch (nv * 100 + rb) {
        case 112: TILED_TAIL(12, 1); break;
        case 108: TILED_TAIL(8, 1); break;
        case 104: TILED_TAIL(4, 1); break;
        case 102: TILED_TAIL(2, 1); break;
        case 101: TILED_TAIL(1, 1); break;
        case 212: TILED_TAIL(12, 2); break;
        case 208: TILED_TAIL(8, 2); break;
        case 204: TILED_TAIL(4, 2); break;
        case 202: TILED_TAIL(2, 2); break;
        default: TILED_TAIL(1, 2); break;
        }
        return;
    }
    switch (nv * 100 + rb) {
    case 112: TILED(12, 1); break;
    case 108: TILED(8, 1); break;
    case 104: TILED(4, 1); break;
    case 102: TILED(2, 1); break;
    case 101: TILED(1, 1); break;
    case 212: TILED(12, 2); break;
    case 208: TILED(8, 2); break;
    case 204: TILED(4, 2); break;
    case 202: TILED(2, 2); break;
    case 201: TILED(1, 2); break;
    case 308: TILED(8, 3); break;
    case 304: TILED(4, 3); break;
    case 302: TILED(2, 3); break;
    case 301: TILED(1, 3); break;
    case 406: TILED(6, 4); break;
    case 404: TILED(4, 4); break;
    case 402: TILED(2, 4); break;
    default: TILED(1, 4); break;
    }
}

/* ---- blocks and threads ------------------------------------------------------ */

/* The width (in vectors) of the next filter block when `rem` vectors are
 * left: fours, with the remainder spread so that no block is narrower than
 * it must be (9 = 3+3+3, 6 = 3+3, 5 = 3+2, 7 = 4+3). */
static int next_block(size_t rem)
{
    return rem <= 4 ? (int)rem : rem == 5 || rem == 6 || rem == 9 ? 3 : 4;
}

/* dst[0..n) = src[0..n), or zeros when src is NULL: inline, as the runs
 * are short (in_c floats; a library call each cost 4% of ResNet-20's
 * inference). */
TLI_INLINE void put_floats(float *dst, const float *src, size_t n)
{
    for (; n >= 16; n -= 16, dst += 16) {
        _mm512_storeu_ps(dst, src ? _mm512_loadu_ps(src) : _mm512_setzero_ps());
        if (src)
            src += 16;
    }
    if (n) {
        const __mmask16 k = (__mmask16)((1u << n) - 1);
        _mm512_mask_storeu_ps(dst, k, src ? _mm512_maskz_loadu_ps(k, src) : _mm512_setzero_ps());
    }
}

/* The window row starting at column iw0 of input row `in_row`, which
 * hangs over the left or right border: copied with its zeros to `dst`. */
static const float *edge_row(const fwd_src *s, const float *in_row, long iw0, float *dst)
{
    const size_t c = s->g->in_c;
    for (uint32_t kw = 0; kw < s->g->k_w; kw++) {
        const long iw = iw0 + (long)kw;
        put_floats(dst + (size_t)kw * c, iw >= 0 && iw < (long)s->x_w ? in_row + (size_t)iw * c : NULL, c);
    }
    return dst;
}

/* rows[kh * PB + r] = where pixel p0 + r (r < np) of image `img` reads its
 * window row kh: in place, the zero row, or a copy with its zeros in
 * `edge` (tli_direct_edge_floats; its first row becomes the zero row).
 * By runs of pixels in one output row: the in-place pointers of a run
 * step by s_w * in_c, which keeps this small beside the tiles (a 1x1
 * convolution's block does 24 x in_c multiply-adds per filter). */
static void window_rows(const fwd_src *s, const float *img, size_t p0, int np, const float **rows, float *edge)
{
    const tli_direct_geom *g = s->g;
    const size_t c = g->in_c, kwc = (size_t)g->k_w * c, step = (size_t)g->s_w * c;
    float *zero = edge, *next = edge ? edge + kwc : NULL; /* NULL: no window leaves x */
    bool zeroed = false;
    /* the output columns whose windows lie inside x's columns: [lo, hi) */
    const long lo_l = ((long)s->pad_l + (long)g->s_w - 1) / (long)g->s_w;
    const long last = (long)s->x_w - (long)g->k_w + (long)s->pad_l; /* ow * s_w <= last */
    const long hi_l = last < 0 ? 0 : last / (long)g->s_w + 1;
    for (int r = 0; r < np;) {
        const size_t p = p0 + (size_t)r;
        const uint32_t oh = (uint32_t)(p / g->out_w), ow = (uint32_t)(p % g->out_w);
        const int run = (int)(g->out_w - ow) < np - r ? (int)(g->out_w - ow) : np - r;
        long lo = lo_l > (long)ow ? lo_l - (long)ow : 0, hi = hi_l - (long)ow;
        lo = lo > run ? run : lo;
        hi = hi > run ? run : hi < lo ? lo : hi;
        const long ih0 = (long)oh * g->s_h - (long)s->pad_t;
        const long iw0 = (long)ow * g->s_w - (long)s->pad_l;
        for (uint32_t kh = 0; kh < g->k_h; kh++) {
            const long ih = ih0 + (long)kh;
            const float **dst = rows + (size_t)kh * PB + (size_t)r;
            if (ih < 0 || ih >= (long)s->x_h) {
                if (!zeroed)
                    put_floats(zero, NULL, kwc);
                zeroed = true;
                for (int q = 0; q < run; q++)
                    dst[q] = zero;
                continue;
            }
            const float *in_row = img + (size_t)ih * s->x_w * c;
            for (long q = 0; q < lo; q++, next += kwc)
                dst[q] = edge_row(s, in_row, iw0 + q * (long)g->s_w, next);
            if (lo < hi) {
                const float *src = in_row + (size_t)(iw0 + lo * (long)g->s_w) * c;
                for (long q = lo; q < hi; q++, src += step)
                    dst[q] = src;
            }
            for (long q = hi; q < run; q++, next += kwc)
                dst[q] = edge_row(s, in_row, iw0 + q * (long)g->s_w, next);
        }
        r += run;
    }
}

/* Output pixels [p0, p0 + np) of one image, all filters. */
static void fwd_pixels(const fwd_src *s, const float *img, const float *w, const float *bias, const float *rimg,
                       int clamp, float *yimg, size_t p0, int np, float *edge)
{
    const tli_direct_geom *g = s->g;
    const size_t n = g->filters, len = (size_t)g->k_w * g->in_c;
    const float *rows[PB * TLI_DIRECT_MAX_TAPS];
    window_rows(s, img, p0, np, rows, edge);
    /* Filters not a multiple of 16 (inference only, conv_algo.c): the
     * last one or two vectors form the last block, its last vector masked. */
    const size_t vecs = (n + 15) / 16, full = n % 16 ? vecs - (vecs >= 2 ? 2 : 1) : vecs;
    for (size_t f0 = 0; f0 < n;) {
        const bool last = f0 / 16 >= full;
        const int nv = last ? (int)(vecs - f0 / 16) : next_block(full - f0 / 16);
        const __mmask16 tail = last ? (__mmask16)((1u << (n % 16)) - 1) : 0xffff;
        for (int r0 = 0; r0 < np;) {
            const int rb = direct_rows(np - r0, nv);
            const size_t o = (p0 + (size_t)r0) * n + f0;
            run_tile_direct(rows + r0, g->k_h, len, w + f0, n, bias ? bias + f0 : NULL, rimg ? rimg + o : NULL,
                            clamp, yimg + o, rb, nv, tail);
            r0 += rb;
        }
        f0 += 16 * (size_t)nv;
    }
}

/* dst (the padded extent g->in_h x g->in_w) = image `img` of x with zero
 * borders. The extent may stop short of the image's last rows or columns
 * (a stride that does not divide it): those are never read. */
static void pad_image(const fwd_src *s, const float *img, float *dst)
{
    const tli_direct_geom *g = s->g;
    const size_t c = g->in_c, prow = (size_t)g->in_w * c, left = (size_t)s->pad_l * c;
    const size_t cols = s->pad_l >= g->in_w ? 0 : g->in_w - s->pad_l < s->x_w ? g->in_w - s->pad_l : s->x_w;
    for (uint32_t r = 0; r < g->in_h; r++, dst += prow) {
        const long sr = (long)r - (long)s->pad_t;
        if (sr < 0 || sr >= (long)s->x_h || cols == 0) {
            memset(dst, 0, prow * sizeof(float));
            continue;
        }
        memset(dst, 0, left * sizeof(float));
        memcpy(dst + left, img + (size_t)sr * s->x_w * c, cols * c * sizeof(float));
        memset(dst + left + cols * c, 0, (prow - left - cols * c) * sizeof(float));
    }
}

/* Ask for part b of `blocks` of an image (of the input or the residual),
 * in proportion, into the cache: the blocks' window rows and residual rows
 * are short runs that the hardware prefetchers pick up late, and an image
 * read by them from L3 or memory stalled the FMAs (the padded copy, one
 * long run, did not). Called for the next image, in step with this one's
 * blocks, so the requests overlap the FMAs and the next image is in L2
 * when its first block starts. */
TLI_INLINE void prefetch_part(const float *img, size_t floats, size_t b, size_t blocks)
{
    if (b >= blocks)
        return;
    const size_t bytes = floats * sizeof(float);
    const char *p = (const char *)img + bytes * b / blocks, *end = (const char *)img + bytes * (b + 1) / blocks;
    for (p = (const char *)((uintptr_t)p & ~(uintptr_t)63); p < end; p += 64)
        _mm_prefetch(p, _MM_HINT_T0);
}

/* This thread's edge buffer (0 outside a parallel region). */
static float *thread_edge(float *edge, size_t floats, bool parallel)
{
#ifdef _OPENMP
    if (parallel && edge)
        return edge + (size_t)omp_get_thread_num() * floats;
#endif
    (void)floats, (void)parallel;
    return edge;
}

/* One direct forward call's work item: block b of image i. */
typedef struct fwd_job {
    const fwd_src *src, *s; /* the input as given, and as read (maybe padded) */
    size_t in_img, x_img, out_img, pixels, blocks, edge_floats;
    float *xpad, *edge;
    const float *w, *bias, *res;
    int clamp;
    float *y;
    size_t batch;
    bool whole, ahead, parallel;
} fwd_job;

static void fwd_item(const fwd_job *j, size_t it)
{
    const size_t i = it / j->blocks, b = it % j->blocks;
    const size_t p0 = b * PB;
    const int np = (int)(j->pixels - p0 < PB ? j->pixels - p0 : PB);
    if (j->xpad && j->whole && b == 0)
        pad_image(j->src, j->src->x + i * j->x_img, j->xpad + i * j->in_img);
    if (j->ahead && i + 1 < j->batch) { /* the next image's part, in step with this one's */
        if (!j->xpad)
            prefetch_part(j->src->x + (i + 1) * j->x_img, j->x_img, b, j->blocks);
        if (j->res)
            prefetch_part(j->res + (i + 1) * j->out_img, j->out_img, b, j->blocks);
    }
    fwd_pixels(j->s, j->s->x + i * j->in_img, j->w, j->bias, j->res ? j->res + i * j->out_img : NULL, j->clamp,
               j->y + i * j->out_img, p0, np, thread_edge(j->edge, j->edge_floats, j->parallel));
}

void tli_direct_forward_avx512(uint32_t threads, const tli_direct_geom *g, const float *x, uint32_t x_h,
                               uint32_t x_w, uint32_t pad_t, uint32_t pad_l, float *xpad, float *edge,
                               const float *w, const float *bias, const float *res, int clamp, float *y,
                               size_t batch)
{
    const fwd_src src = {g, x, x_h, x_w, pad_t, pad_l};
    /* With xpad, the kernels read each padded image from there (no window
     * leaves it, so no edge rows). */
    const fwd_src padded = {g, xpad, g->in_h, g->in_w, 0, 0};
    const fwd_src *s = xpad ? &padded : &src;
    const size_t x_img = (size_t)x_h * x_w * g->in_c, in_img = (size_t)s->x_h * s->x_w * g->in_c;
    const size_t pixels = (size_t)g->out_h * g->out_w;
    const size_t out_img = pixels * g->filters;
    const size_t blocks = (pixels + PB - 1) / PB;
    const size_t edge_floats = tli_direct_edge_floats(g);
    threads = tli_par_threads(threads, (double)batch * pixels * g->filters * g->k_h * g->k_w * g->in_c, 0);
    /* Work items are (image, pixel block) pairs: whole images to each
     * thread when there are enough (each pads its image, if it must, just
     * before it reads it, while it is in cache), else one image's blocks
     * spread over the threads (batch-1 latency) after all images are
     * padded. Each output is computed the same way whoever runs it. */
    const bool whole = batch >= 2 * (size_t)threads;
    if (xpad && !whole)
        TLI_OMP_FOR(threads > 1 && batch > 1, "omp parallel for num_threads(threads) schedule(static)",
                    (long i = 0; i < (long)batch; i++),
                    { pad_image(&src, x + (size_t)i * x_img, xpad + (size_t)i * in_img); });
    /* Prefetching the next image pays while it and the current one fit in
     * L2 with room to spare (ResNet-20's 64 KiB images); MobileNetV2's
     * larger expansions would push the current image out. */
    const bool ahead = whole && (x_img + (res ? out_img : 0)) * sizeof(float) <= (256u << 10);
    const fwd_job job = {&src, s, in_img, x_img, out_img, pixels, blocks, edge_floats, xpad, edge, w, bias, res,
                         clamp, y, batch, whole, ahead, threads > 1};
    const long items = (long)(batch * blocks);
    /* Whole images go in contiguous shares of the batch (parallel.h).
     * One image's blocks (batch 1) go as they come: a thread woken late
     * then takes fewer. */
    if (whole)
        TLI_OMP_FOR(threads > 1, "omp parallel for num_threads(threads) schedule(static)",
                    (long it = 0; it < items; it++), { fwd_item(&job, (size_t)it); });
    else
        TLI_OMP_FOR(threads > 1, "omp parallel for num_threads(threads) schedule(dynamic, 1)",
                    (long it = 0; it < items; it++), { fwd_item(&job, (size_t)it); });
}
