/*
 * conv_fwd_avx512.c - the direct convolution's forward pass with AVX-512,
 * NHWC tensors, any kernel size, stride and zero padding, filters a
 * multiple of 16.
 *
 * The convolution is a GEMM, out (pixels x filters) = A (pixels x K) * W
 * (K x filters) with K = k_h * k_w * in_c, where A's rows (the receptive
 * fields, im2col's rows) are never stored whole. Work goes by blocks of PB
 * output pixels, and every filter block runs over a pixel block before the
 * next one starts, so the input is read once per pixel block whatever the
 * number of filters.
 *
 * Two ways to read A, measured on the networks' shapes:
 *  - in place (the usual one): each window row (k_w * in_c contiguous
 *    floats, any stride) is read where it lies, from per-pixel offsets that
 *    stay in general registers (tiles of at most 12 pixels). This needs
 *    every window inside the input, so padded inputs are first copied,
 *    image by image, into the caller's padded buffer (which the weight
 *    gradient reads anyway) just before the image is read, while it is in
 *    cache.
 *  - packed, when there is no padded buffer: KB columns of A at a time
 *    are copied into a small panel with zeros where a window hangs over the
 *    border, laid out [chunk][pixel][KC] so that the float broadcast for
 *    (pixel r, column j) is at a displacement known at compile time
 *    (embedded-broadcast FMAs, tiles of up to 24 pixels). Copying the panel
 *    costs more than the offsets do (16 filters, 3x3: ~105 against ~150
 *    GFLOP/s in place), so the library passes a padded buffer.
 *
 * A register tile is RB pixels x NV vectors of 16 filters (RB * NV <= 24
 * accumulators, NV weight vectors); filter blocks are 4 vectors wide with
 * the remainder spread (next_block).
 *
 * Every output is one FMA chain over j = 0 .. K-1 in order (the panel's
 * column blocks continue the chain through y), plus the bias: the same bits
 * whichever way A is read, whatever the blocking and the thread count.
 *
 * This file is compiled with AVX-512 enabled and only ever called after
 * tli_cpu_has_avx512() said yes.
 */
#include <immintrin.h>
#include <stdbool.h>
#include <string.h>

#include "conv_direct.h"
#include "parallel.h"

#define TLI_INLINE static inline __attribute__((always_inline))

enum {
    KC = 16,  /* panel columns per chunk */
    PB = 24,  /* output pixels per panel */
    KB = 384, /* at most this many panel columns: PB * KB floats = 36 KiB */
};

/* The input as the forward pass reads it. */
typedef struct fwd_src {
    const tli_direct_geom *g;
    const float *x; /* x_h x x_w x in_c per image */
    uint32_t x_h, x_w;
    uint32_t pad_t, pad_l;
} fwd_src;

/* ---- packing --------------------------------------------------------------- */

/* Row r's columns [jl, jl + len) of the panel = src (zeros when NULL). */
static void put_run(float *pan, int r, size_t jl, const float *src, size_t len)
{
    float *d = pan + (jl / KC) * (PB * KC) + (size_t)r * KC + jl % KC;
    if (jl % KC == 0) /* whole chunks: no masks */
        for (; len >= KC; len -= KC, jl += KC, d += PB * KC) {
            _mm512_storeu_ps(d, src ? _mm512_loadu_ps(src) : _mm512_setzero_ps());
            if (src)
                src += KC;
        }
    while (len) {
        size_t o = jl % KC, m = KC - o < len ? KC - o : len;
        d = pan + (jl / KC) * (PB * KC) + (size_t)r * KC + o;
        __mmask16 k = (__mmask16)((1u << m) - 1);
        _mm512_mask_storeu_ps(d, k, src ? _mm512_maskz_loadu_ps(k, src) : _mm512_setzero_ps());
        if (src)
            src += m;
        jl += m;
        len -= m;
    }
}

/* The panel for pixels [p0, p0 + np) of image `img`, columns [k0, k0 + kb)
 * = taps [t0, t1) of channels [c0, c1) each (a block is whole taps, or a
 * slice of one tap's channels). */
__attribute__((noinline)) static void pack(const fwd_src *s, const float *img, size_t p0, int np, uint32_t t0, uint32_t t1, size_t c0,
                 size_t c1, float *pan)
{
    const tli_direct_geom *g = s->g;
    const size_t c = g->in_c, len = c1 - c0;
    const uint32_t kh0 = t0 / g->k_w, kw0 = t0 % g->k_w;
    uint32_t oh = (uint32_t)(p0 / g->out_w), ow = (uint32_t)(p0 % g->out_w);
    /* Whole kernel rows of whole channels, a multiple of KC: a window row
     * that lies inside the image is one contiguous run of k_w * c floats. */
    const bool rows = c % KC == 0 && len == c && kw0 == 0 && (t1 - t0) % g->k_w == 0;
    const size_t row_vecs = (size_t)g->k_w * c / KC;
    for (int r = 0; r < np; r++) {
        const long ih0 = (long)oh * g->s_h - s->pad_t, iw0 = (long)ow * g->s_w - s->pad_l;
        if (rows && iw0 >= 0 && iw0 + (long)g->k_w <= (long)s->x_w) {
            float *d = pan + (size_t)r * KC;
            for (uint32_t kh = kh0; kh < kh0 + (t1 - t0) / g->k_w; kh++) {
                const long ih = ih0 + kh;
                if (ih >= 0 && ih < (long)s->x_h) {
                    const float *src = img + ((size_t)ih * s->x_w + (size_t)iw0) * c;
                    for (size_t q = 0; q < row_vecs; q++, d += PB * KC, src += KC)
                        _mm512_storeu_ps(d, _mm512_loadu_ps(src));
                } else {
                    for (size_t q = 0; q < row_vecs; q++, d += PB * KC)
                        _mm512_storeu_ps(d, _mm512_setzero_ps());
                }
            }
            if (++ow == g->out_w) {
                ow = 0;
                oh++;
            }
            continue;
        }
        uint32_t kh = kh0, kw = kw0;
        size_t jl = 0;
        for (uint32_t t = t0; t < t1; t++, jl += len) {
            const long ih = ih0 + kh, iw = iw0 + kw;
            const float *src = NULL;
            if (ih >= 0 && ih < (long)s->x_h && iw >= 0 && iw < (long)s->x_w)
                src = img + ((size_t)ih * s->x_w + (size_t)iw) * c + c0;
            put_run(pan, r, jl, src, len);
            if (++kw == g->k_w) {
                kw = 0;
                kh++;
            }
        }
        if (++ow == g->out_w) {
            ow = 0;
            oh++;
        }
    }
}

/* ---- register tile ----------------------------------------------------------- */

/* y[r][f0 + 16v ..] for the tile's RB pixels (rows n floats apart), from the
 * panel rows at `pan` (the tile's first pixel) and columns [0, kb), weights
 * w (kb rows, n floats apart, starting at the tile's first filter). `first`:
 * start the chains at zero, else continue them from y; `last`: add the bias
 * and clamp. */
TLI_INLINE void tile(const float *pan, size_t kb, const float *w, size_t n, const float *bias, int clamp, float *y,
                     int first, int last, const int RB, const int NV)
{
    __m512 acc[24][4];
#pragma GCC unroll 24
    for (int r = 0; r < RB; r++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            acc[r][v] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(y + (size_t)r * n + 16 * v);
    /* j runs through a chunk's KC columns (pan + jj), then on to the next
     * chunk (PB * KC floats further). */
    for (size_t j = 0; j < kb; j += KC, pan += PB * KC) {
        const size_t jn = kb - j < KC ? kb - j : KC;
        for (size_t jj = 0; jj < jn; jj++, w += n) {
            __m512 wv[4];
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++)
                wv[v] = _mm512_loadu_ps(w + 16 * v);
#pragma GCC unroll 24
            for (int r = 0; r < RB; r++) {
                const __m512 b = _mm512_set1_ps(pan[r * KC + jj]);
#pragma GCC unroll 4
                for (int v = 0; v < NV; v++)
                    acc[r][v] = _mm512_fmadd_ps(b, wv[v], acc[r][v]);
            }
        }
    }
    const __m512 zero = _mm512_setzero_ps(), six = _mm512_set1_ps(6.0f);
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++) {
        const __m512 bv = last && bias ? _mm512_loadu_ps(bias + 16 * v) : zero;
#pragma GCC unroll 24
        for (int r = 0; r < RB; r++) {
            __m512 o = acc[r][v];
            if (last) {
                o = _mm512_add_ps(o, bv);
                /* max_ps and min_ps return their second operand on NaN: keep NaN */
                if (clamp)
                    o = _mm512_max_ps(zero, o);
                if (clamp == TLI_CLAMP_RELU6)
                    o = _mm512_min_ps(six, o);
            }
            _mm512_storeu_ps(y + (size_t)r * n + 16 * v, o);
        }
    }
}

/* Tile heights per filter vectors: the largest first (RB * NV <= 24), then
 * smaller ones for a panel's last pixels. */
static int tile_rows(int want, int nv)
{
    static const int sizes[5][7] = {
        {0}, {24, 16, 8, 4, 2, 1, 0}, {12, 8, 4, 2, 1, 0, 0}, {8, 4, 2, 1, 0, 0, 0}, {6, 4, 2, 1, 0, 0, 0}};
    for (int i = 0; sizes[nv][i]; i++)
        if (sizes[nv][i] <= want)
            return sizes[nv][i];
    return 1;
}

#define TILE(RB, NV) tile(pan, kb, w, n, bias, clamp, y, first, last, RB, NV)

static void run_tile(const float *pan, size_t kb, const float *w, size_t n, const float *bias, int clamp, float *y,
                     int first, int last, int rb, int nv)
{
    switch (nv * 100 + rb) {
    case 124: TILE(24, 1); break;
    case 116: TILE(16, 1); break;
    case 108: TILE(8, 1); break;
    case 104: TILE(4, 1); break;
    case 102: TILE(2, 1); break;
    case 101: TILE(1, 1); break;
    case 212: TILE(12, 2); break;
    case 208: TILE(8, 2); break;
    case 204: TILE(4, 2); break;
    case 202: TILE(2, 2); break;
    case 201: TILE(1, 2); break;
    case 308: TILE(8, 3); break;
    case 304: TILE(4, 3); break;
    case 302: TILE(2, 3); break;
    case 301: TILE(1, 3); break;
    case 406: TILE(6, 4); break;
    case 404: TILE(4, 4); break;
    case 402: TILE(2, 4); break;
    default: TILE(1, 4); break;
    }
}

/* ---- register tile, straight from the input --------------------------------- */

/* As tile(), for a window that lies inside x: pixel r's window row kh is
 * the k_w * in_c floats at row + off[r] + kh * x_row, read in place. The
 * RB <= 12 offsets stay in general registers. */
TLI_INLINE void tile_direct(const tli_direct_geom *g, const float *row, size_t x_row, const size_t *off,
                            const float *w, const float *bias, int clamp, float *y, const int RB, const int NV)
{
    __m512 acc[12][4];
#pragma GCC unroll 12
    for (int r = 0; r < RB; r++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            acc[r][v] = _mm512_setzero_ps();
    const size_t len = (size_t)g->k_w * g->in_c, n = g->filters;
    for (uint32_t kh = 0; kh < g->k_h; kh++, row += x_row) {
        for (size_t j = 0; j < len; j++, w += n) {
            __m512 wv[4];
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++)
                wv[v] = _mm512_loadu_ps(w + 16 * v);
#pragma GCC unroll 12
            for (int r = 0; r < RB; r++) {
                const __m512 b = _mm512_set1_ps(row[off[r] + j]);
#pragma GCC unroll 4
                for (int v = 0; v < NV; v++)
                    acc[r][v] = _mm512_fmadd_ps(b, wv[v], acc[r][v]);
            }
        }
    }
    const __m512 zero = _mm512_setzero_ps(), six = _mm512_set1_ps(6.0f);
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++) {
        const __m512 bv = bias ? _mm512_loadu_ps(bias + 16 * v) : zero;
#pragma GCC unroll 12
        for (int r = 0; r < RB; r++) {
            __m512 o = _mm512_add_ps(acc[r][v], bv);
            if (clamp)
                o = _mm512_max_ps(zero, o);
            if (clamp == TLI_CLAMP_RELU6)
                o = _mm512_min_ps(six, o);
            _mm512_storeu_ps(y + (size_t)r * n + 16 * v, o);
        }
    }
}

/* Tile heights in place: at most 12 pixels (their offsets in registers). */
static int direct_rows(int want, int nv)
{
    return nv == 1 && want >= 12 ? 12 : tile_rows(want, nv == 1 ? 2 : nv);
}

#define TILED(RB, NV) tile_direct(g, row, x_row, off, w, bias, clamp, y, RB, NV)

static void run_tile_direct(const tli_direct_geom *g, const float *row, size_t x_row, const size_t *off,
                            const float *w, const float *bias, int clamp, float *y, int rb, int nv)
{
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

/* The panel's column blocks: whole taps when a tap's channels fit (as many
 * blocks as KB requires, the taps spread evenly), else slices of one tap's
 * channels. */
typedef struct kblocks {
    uint32_t taps_per; /* taps per block (the last may have fewer) */
    size_t slice;      /* channels per block when taps_per == 1 */
} kblocks;

static kblocks kblocks_for(const tli_direct_geom *g)
{
    const uint32_t taps = g->k_h * g->k_w;
    const size_t c = g->in_c;
    kblocks kb = {1, c};
    if (c <= KB) {
        uint32_t per = (uint32_t)(KB / c);
        if (per >= g->k_w) { /* whole kernel rows, for pack()'s contiguous runs */
            uint32_t rows = per / g->k_w, nb = (g->k_h + rows - 1) / rows;
            kb.taps_per = (g->k_h + nb - 1) / nb * g->k_w;
        } else {
            uint32_t nb = (taps + per - 1) / per;
            kb.taps_per = (taps + nb - 1) / nb;
        }
    } else {
        size_t nb = (c + KB - 1) / KB;
        kb.slice = ((c + nb - 1) / nb + KC - 1) / KC * KC;
    }
    return kb;
}

/* Output pixels [p0, p0 + np) of one image, all filters, when every window
 * lies inside x (no padding left to add): in place. */
static void fwd_pixels_direct(const fwd_src *s, const float *img, const float *w, const float *bias, int clamp,
                              float *yimg, size_t p0, int np)
{
    const tli_direct_geom *g = s->g;
    const size_t n = g->filters, c = g->in_c, x_row = (size_t)s->x_w * c;
    size_t off[PB];
    uint32_t oh = (uint32_t)(p0 / g->out_w), ow = (uint32_t)(p0 % g->out_w);
    for (int r = 0; r < np; r++) {
        off[r] = ((size_t)oh * g->s_h * s->x_w + (size_t)ow * g->s_w) * c;
        if (++ow == g->out_w) {
            ow = 0;
            oh++;
        }
    }
    for (size_t f0 = 0; f0 < n;) {
        const int nv = next_block((n - f0) / 16);
        for (int r0 = 0; r0 < np;) {
            const int rb = direct_rows(np - r0, nv);
            run_tile_direct(g, img, x_row, off + r0, w + f0, bias ? bias + f0 : NULL, clamp,
                            yimg + (p0 + (size_t)r0) * n + f0, rb, nv);
            r0 += rb;
        }
        f0 += 16 * (size_t)nv;
    }
}

/* Output pixels [p0, p0 + np) of one image, all filters. */
static void fwd_pixels(const fwd_src *s, kblocks kbs, const float *img, const float *w, const float *bias, int clamp,
                       float *yimg, size_t p0, int np)
{
    const tli_direct_geom *g = s->g;
    const size_t n = g->filters, c = g->in_c;
    const uint32_t taps = g->k_h * g->k_w;
    float pan[PB * KB] __attribute__((aligned(64)));
    for (uint32_t t0 = 0; t0 < taps; t0 += kbs.taps_per) {
        const uint32_t t1 = taps - t0 < kbs.taps_per ? taps : t0 + kbs.taps_per;
        for (size_t c0 = 0; c0 < c; c0 += kbs.slice) {
            const size_t c1 = c - c0 < kbs.slice ? c : c0 + kbs.slice;
            const size_t k0 = (size_t)t0 * c + c0, kb = (size_t)(t1 - t0) * (c1 - c0);
            const int first = k0 == 0, last = t1 == taps && c1 == c;
            pack(s, img, p0, np, t0, t1, c0, c1, pan);
            for (size_t f0 = 0; f0 < n;) {
                const int nv = next_block((n - f0) / 16);
                for (int r0 = 0; r0 < np;) {
                    const int rb = tile_rows(np - r0, nv);
                    run_tile(pan + (size_t)r0 * KC, kb, w + k0 * n + f0, n, bias ? bias + f0 : NULL, clamp,
                             yimg + (p0 + (size_t)r0) * n + f0, first, last, rb, nv);
                    r0 += rb;
                }
                f0 += 16 * (size_t)nv;
            }
        }
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

/* Output pixels [p0, p0 + np) of image i. */
static void fwd_item(const fwd_src *s, kblocks kbs, bool direct, const float *img, const float *w, const float *bias,
                     int clamp, float *yimg, size_t p0, int np)
{
    if (direct)
        fwd_pixels_direct(s, img, w, bias, clamp, yimg, p0, np);
    else
        fwd_pixels(s, kbs, img, w, bias, clamp, yimg, p0, np);
}

void tli_direct_forward_avx512(uint32_t threads, const tli_direct_geom *g, const float *x, uint32_t x_h,
                               uint32_t x_w, uint32_t pad_t, uint32_t pad_l, float *xpad, const float *w,
                               const float *bias, int clamp, float *y, size_t batch)
{
    const fwd_src src = {g, x, x_h, x_w, pad_t, pad_l};
    /* With xpad, the kernels read each padded image from there (no window
     * leaves it). */
    const fwd_src padded = {g, xpad, g->in_h, g->in_w, 0, 0};
    const fwd_src *s = xpad ? &padded : &src;
    const size_t x_img = (size_t)x_h * x_w * g->in_c, in_img = (size_t)s->x_h * s->x_w * g->in_c;
    const size_t pixels = (size_t)g->out_h * g->out_w;
    const size_t out_img = pixels * g->filters;
    const size_t blocks = (pixels + PB - 1) / PB;
    const kblocks kbs = kblocks_for(g);
    /* In place when no window leaves the input, else through the panel. */
    const bool inside = s->pad_t == 0 && s->pad_l == 0 && (size_t)(g->out_h - 1) * g->s_h + g->k_h <= s->x_h &&
                        (size_t)(g->out_w - 1) * g->s_w + g->k_w <= s->x_w;
    const bool direct = inside;
    threads = tli_par_threads(threads, (double)batch * pixels * g->filters * g->k_h * g->k_w * g->in_c, 0);
    /* Work items are (image, pixel block) pairs: whole images to each
     * thread when there are enough (each pads its image just before it
     * reads it, while it is in cache), else one image's blocks spread over
     * the threads (batch-1 latency) after all images are padded. Each
     * output is computed the same way whoever runs it. */
    const bool whole = batch >= 2 * (size_t)threads;
    if (xpad && !whole)
        TLI_OMP_FOR(threads > 1 && batch > 1, "omp parallel for num_threads(threads) schedule(static)",
                    (long i = 0; i < (long)batch; i++),
                    { pad_image(&src, x + (size_t)i * x_img, xpad + (size_t)i * in_img); });
    const size_t items = batch * blocks;
    const int chunk = whole ? (int)blocks : 1;
    TLI_OMP_FOR(threads > 1, "omp parallel for num_threads(threads) schedule(dynamic, chunk)",
                (long it = 0; it < (long)items; it++), {
                    const size_t i = (size_t)it / blocks, b = (size_t)it % blocks;
                    const size_t p0 = b * PB;
                    const int np = (int)(pixels - p0 < PB ? pixels - p0 : PB);
                    if (xpad && whole && b == 0)
                        pad_image(&src, x + i * x_img, xpad + i * in_img);
                    fwd_item(s, kbs, direct, s->x + i * in_img, w, bias, clamp, y + i * out_img, p0, np);
                });
}
