/*
 * conv_wino_avx512.c - Winograd F(4x4, 3x3) for 3x3 stride-1 pad-1
 * convolutions with AVX-512, NHWC (conv_wino.h).
 *
 * The output is cut into 4 x 4 tiles; tile (th, tw) reads the 6 x 6 input
 * cells from (4 th - 1, 4 tw - 1) (zeros outside the image). Per tile and
 * (channel, filter) pair the convolution is y = A^T [U .* V] A, with V =
 * B^T d B the input tile transformed and U = G g G^T the kernel
 * transformed (once per kernel): 36 multiplies for 16 outputs instead of
 * 144. Summed over the channels, each of the 36 points is a product
 * M_p (tiles x filters) = V_p (tiles x in_c) * U_p (in_c x filters).
 *
 * Points 0, 1, -1, 2, -2 and infinity (Lavin and Gray, 2015):
 *   B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0;
 *          0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1]
 *   G   = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6;
 *          1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1]
 *   A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1]
 * Their float32 error, measured against float64 over 64 channels of
 * normal data: 2.4e-6 of the largest output on average (direct: 1.1e-7).
 * The points 0, -1, 1, 1/2, -2 measured 1.4e-6 but their B^T has twice
 * the non-zeros, and the input transform is the overhead that limits the
 * 16-channel layers.
 *
 * Work goes by blocks of T tiles (across images: an 8x8 image has only 4
 * tiles) so that a block's V and M (36 x T x (in_c + filters) floats)
 * stay in L2: the block's tiles are transformed into V, the 36 products
 * run with a register-tiled micro-kernel (RB tiles x NV vectors of 16
 * filters, one FMA chain over the channels per output), and each tile's M
 * is transformed back, with the bias, the residual and the clamp, into y.
 *
 * Every output depends only on its tile, never on the block it was in or
 * the thread that ran it: the same bits for any thread count.
 *
 * Compiled with AVX-512 enabled and only called after tli_cpu_has_avx512().
 */
#include <immintrin.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "conv_direct.h"
#include "conv_wino.h"
#include "parallel.h"

#define TLI_INLINE static inline __attribute__((always_inline))

enum {
    /* Bytes of one thread's V and M together: a quarter of a 1 MiB L2
     * (128 to 512 KiB measured the same within the noise). */
    BLOCK_BYTES = 256 << 10,
    MAX_T = 96,   /* tiles per block at most */
    TAIL_ROWS = 4, /* tile height of the products' remainder; divides every other height */
};

/* ---- the kernel's transform ------------------------------------------------ */

/* t (6 values) = G k (3 values), for 8 filters at once in double. */
TLI_INLINE void g3(const __m512d k[3], __m512d t[6])
{
    const __m512d q = _mm512_set1_pd(1.0 / 4), s6 = _mm512_set1_pd(1.0 / 6), s24 = _mm512_set1_pd(1.0 / 24);
    const __m512d s12 = _mm512_set1_pd(1.0 / 12);
    const __m512d e = _mm512_add_pd(k[0], k[2]); /* k0 + k2 */
    const __m512d f = _mm512_fmadd_pd(s24, k[0], _mm512_mul_pd(s6, k[2])); /* k0 / 24 + k2 / 6 */
    t[0] = _mm512_mul_pd(q, k[0]);
    t[1] = _mm512_mul_pd(_mm512_set1_pd(-1.0 / 6), _mm512_add_pd(e, k[1]));
    t[2] = _mm512_mul_pd(s6, _mm512_sub_pd(k[1], e));
    t[3] = _mm512_fmadd_pd(s12, k[1], f);
    t[4] = _mm512_fnmadd_pd(s12, k[1], f);
    t[5] = k[2];
}

/* Vectors over 16 filters, each half in double: U = G k G^T rounded once. */
void tli_wino_weights(const tli_wino_geom *g, const float *w, float *u)
{
    const size_t c = g->in_c, n = g->filters, cn = c * n, ps = tli_wino_point_floats(g);
    for (size_t ci = 0; ci < c; ci++)
        for (size_t f0 = 0; f0 < n; f0 += 16)
            for (int h = 0; h < 2; h++) { /* filters f0 + 8h .. */
                const size_t o = ci * n + f0 + 8 * (size_t)h;
                __m512d k[3][3], t[6][3];
                for (int i = 0; i < 9; i++)
                    k[i / 3][i % 3] = _mm512_cvtps_pd(_mm256_loadu_ps(w + (size_t)i * cn + o));
                for (int j = 0; j < 3; j++) { /* t = G k, column j */
                    const __m512d col[3] = {k[0][j], k[1][j], k[2][j]};
                    __m512d r[6];
                    g3(col, r);
                    for (int a = 0; a < 6; a++)
                        t[a][j] = r[a];
                }
                for (int a = 0; a < 6; a++) { /* U = t G^T, row a */
                    __m512d r[6];
                    g3(t[a], r);
                    for (int b = 0; b < 6; b++)
                        _mm256_storeu_ps(u + (size_t)(a * 6 + b) * ps + o, _mm512_cvtpd_ps(r[b]));
                }
            }
}

/* ---- blocks ------------------------------------------------------------------ */

/* Tile rows of the micro-kernel for NV filter vectors (RB * NV <= 24). */
static int tile_rows(int nv)
{
    static const int rb[5] = {0, 24, 12, 8, 6};
    return rb[nv];
}

/* Filter block widths in vectors: fours, the remainder spread (as the
 * direct forward does: 5 = 3+2, 6 = 3+3, 9 = 3+3+3). */
static int next_block(size_t rem)
{
    return rem <= 4 ? (int)rem : rem == 5 || rem == 6 || rem == 9 ? 3 : 4;
}

static size_t lcm(size_t a, size_t b)
{
    size_t x = a, y = b;
    while (y) {
        size_t t = x % y;
        x = y;
        y = t;
    }
    return a / x * b;
}

/* Channels padded to whole vectors (V's rows). */
static size_t padded_c(const tli_wino_geom *g)
{
    return ((size_t)g->in_c + 15) & ~(size_t)15;
}

/* Every tile height the filter blocks use, and TAIL_ROWS, divide this:
 * a whole block's products need no remainder tiles, and a short block
 * rounded up to TAIL_ROWS stays inside the block. */
static size_t tile_gran(const tli_wino_geom *g)
{
    size_t gran = TAIL_ROWS;
    for (size_t rem = g->filters / 16; rem;) {
        const int nv = next_block(rem);
        gran = lcm(gran, (size_t)tile_rows(nv));
        rem -= (size_t)nv;
    }
    return gran;
}

/* Tiles per block: a multiple of tile_gran, as many as fit. */
static size_t block_tiles(const tli_wino_geom *g)
{
    const size_t gran = tile_gran(g);
    const size_t per_tile = (size_t)TLI_WINO_POS * (padded_c(g) + g->filters) * sizeof(float);
    size_t t = BLOCK_BYTES / per_tile / gran * gran;
    if (t > MAX_T)
        t = MAX_T / gran * gran;
    return t < gran ? gran : t;
}

size_t tli_wino_buffer_floats(const tli_wino_geom *g)
{
    return (size_t)TLI_WINO_POS * block_tiles(g) * (padded_c(g) + g->filters) + 16;
}

/* ---- input transform --------------------------------------------------------- */

/* v = B^T d for one column (or row) of 6 vectors. */
TLI_INLINE void bt6(const __m512 d[6], __m512 v[6])
{
    const __m512 four = _mm512_set1_ps(4.0f), five = _mm512_set1_ps(5.0f), two = _mm512_set1_ps(2.0f);
    const __m512 t0 = _mm512_fnmadd_ps(four, d[2], d[4]); /* d4 - 4 d2 */
    const __m512 t1 = _mm512_fnmadd_ps(four, d[1], d[3]); /* d3 - 4 d1 */
    const __m512 t2 = _mm512_sub_ps(d[4], d[2]);
    const __m512 t3 = _mm512_mul_ps(two, _mm512_sub_ps(d[3], d[1]));
    v[0] = _mm512_fmadd_ps(four, d[0], _mm512_fnmadd_ps(five, d[2], d[4]));
    v[1] = _mm512_add_ps(t0, t1);
    v[2] = _mm512_sub_ps(t0, t1);
    v[3] = _mm512_add_ps(t2, t3);
    v[4] = _mm512_sub_ps(t2, t3);
    v[5] = _mm512_fmadd_ps(four, d[1], _mm512_fnmadd_ps(five, d[3], d[5]));
}

/* V[p][t][c0 ..] (p = 6a + b, rows cp floats apart, points T * cp apart)
 * for tile (img, th, tw), all channels. */
static void input_tile(const tli_wino_geom *g, const float *img, long ih0, long iw0, float *v, size_t stride)
{
    const size_t c = g->in_c;
    const float *rowp[6];
    bool colok[6];
    for (int a = 0; a < 6; a++) {
        const long ih = ih0 + a;
        rowp[a] = ih >= 0 && ih < (long)g->h ? img + (size_t)ih * g->w * c : NULL;
        const long iw = iw0 + a;
        colok[a] = iw >= 0 && iw < (long)g->w;
    }
    for (size_t c0 = 0; c0 < c; c0 += 16) {
        const __mmask16 k = c - c0 >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (c - c0)) - 1);
        __m512 t[6][6]; /* t[b][a'] = (B^T d)[a'][b]: the columns' transforms */
        for (int b = 0; b < 6; b++) {
            __m512 d[6];
            for (int a = 0; a < 6; a++)
                d[a] = rowp[a] && colok[b]
                           ? _mm512_maskz_loadu_ps(k, rowp[a] + (size_t)(iw0 + b) * c + c0)
                           : _mm512_setzero_ps();
            bt6(d, t[b]);
        }
        for (int a = 0; a < 6; a++) {
            __m512 d[6], o[6];
            for (int b = 0; b < 6; b++)
                d[b] = t[b][a];
            bt6(d, o);
            for (int b = 0; b < 6; b++)
                _mm512_storeu_ps(v + (size_t)(a * 6 + b) * stride + c0, o[b]);
        }
    }
}

/* ---- the products -------------------------------------------------------- */

/* m (RB rows, ldm apart) = v (RB rows of k channels, ldv apart) * u (k
 * rows, ldu apart; NV vectors of filters): one FMA chain per output, over
 * the channels in order. */
TLI_INLINE void product_tile(const float *v, size_t ldv, const float *u, size_t ldu, size_t k, float *m,
                             size_t ldm, const int RB, const int NV)
{
    __m512 acc[24][4];
#pragma GCC unroll 24
    for (int r = 0; r < RB; r++)
#pragma GCC unroll 4
        for (int q = 0; q < NV; q++)
            acc[r][q] = _mm512_setzero_ps();
    for (size_t j = 0; j < k; j++, u += ldu) {
        __m512 wv[4];
#pragma GCC unroll 4
        for (int q = 0; q < NV; q++)
            wv[q] = _mm512_loadu_ps(u + 16 * q);
#pragma GCC unroll 24
        for (int r = 0; r < RB; r++) {
            const __m512 b = _mm512_set1_ps(v[(size_t)r * ldv + j]);
#pragma GCC unroll 4
            for (int q = 0; q < NV; q++)
                acc[r][q] = _mm512_fmadd_ps(b, wv[q], acc[r][q]);
        }
    }
#pragma GCC unroll 24
    for (int r = 0; r < RB; r++)
#pragma GCC unroll 4
        for (int q = 0; q < NV; q++)
            _mm512_storeu_ps(m + (size_t)r * ldm + 16 * q, acc[r][q]);
}

/* All 36 products of a block of nt tiles (a multiple of TAIL_ROWS, at
 * least TAIL_ROWS): tiles
 * of the filter block's height, then of TAIL_ROWS for what is left (a
 * batch-1 8x8 image has 4 tiles). */
static void block_products(const tli_wino_geom *g, const float *v, const float *u, float *m, size_t nt,
                           size_t t_cap)
{
    const size_t cp = padded_c(g), n = g->filters, c = g->in_c;
    for (int p = 0; p < TLI_WINO_POS; p++) {
        const float *vp = v + (size_t)p * t_cap * cp, *up = u + (size_t)p * tli_wino_point_floats(g);
        float *mp = m + (size_t)p * t_cap * n;
        for (size_t f0 = 0; f0 < n;) {
            const int nv = next_block((n - f0) / 16);
            const size_t rb = (size_t)tile_rows(nv);
            size_t r0 = 0;
            for (; r0 + rb <= nt; r0 += rb) {
                const float *vr = vp + r0 * cp, *uf = up + f0;
                float *mr = mp + r0 * n + f0;
                switch (nv) {
                case 1: product_tile(vr, cp, uf, n, c, mr, n, 24, 1); break;
                case 2: product_tile(vr, cp, uf, n, c, mr, n, 12, 2); break;
                case 3: product_tile(vr, cp, uf, n, c, mr, n, 8, 3); break;
                default: product_tile(vr, cp, uf, n, c, mr, n, 6, 4); break;
                }
            }
            /* (6 rows per tile leave 2 mod 4: the last tail tile then
             * recomputes two rows, to the same bits) */
            for (; r0 < nt; r0 += TAIL_ROWS) {
                const size_t r = r0 + TAIL_ROWS <= nt ? r0 : nt - TAIL_ROWS;
                const float *vr = vp + r * cp, *uf = up + f0;
                float *mr = mp + r * n + f0;
                switch (nv) {
                case 1: product_tile(vr, cp, uf, n, c, mr, n, TAIL_ROWS, 1); break;
                case 2: product_tile(vr, cp, uf, n, c, mr, n, TAIL_ROWS, 2); break;
                case 3: product_tile(vr, cp, uf, n, c, mr, n, TAIL_ROWS, 3); break;
                default: product_tile(vr, cp, uf, n, c, mr, n, TAIL_ROWS, 4); break;
                }
            }
            f0 += 16 * (size_t)nv;
        }
    }
}

/* ---- output transform ------------------------------------------------------ */

/* o = A^T m for one column (or row) of 6 vectors. */
TLI_INLINE void at6(const __m512 m[6], __m512 o[4])
{
    const __m512 a = _mm512_add_ps(m[1], m[2]), b = _mm512_sub_ps(m[1], m[2]);
    const __m512 c = _mm512_add_ps(m[3], m[4]), d = _mm512_sub_ps(m[3], m[4]);
    o[0] = _mm512_add_ps(_mm512_add_ps(m[0], a), c);
    o[1] = _mm512_fmadd_ps(_mm512_set1_ps(2.0f), d, b);
    o[2] = _mm512_fmadd_ps(_mm512_set1_ps(4.0f), c, a);
    o[3] = _mm512_add_ps(_mm512_fmadd_ps(_mm512_set1_ps(8.0f), d, b), m[5]);
}

/* The outputs of tile (oh0, ow0) of one image from M (points `stride`
 * floats apart), with the bias, the residual and the clamp. */
static void output_tile(const tli_wino_geom *g, const float *m, size_t stride, const float *bias,
                        const float *rimg, int clamp, float *yimg, uint32_t oh0, uint32_t ow0)
{
    const size_t n = g->filters;
    const uint32_t nh = g->h - oh0 < 4 ? g->h - oh0 : 4, nw = g->w - ow0 < 4 ? g->w - ow0 : 4;
    const __m512 zero = _mm512_setzero_ps(), six = _mm512_set1_ps(6.0f);
    for (size_t f0 = 0; f0 < n; f0 += 16) {
        __m512 t[6][4]; /* t[b][i] = (A^T M)[i][b] */
        for (int b = 0; b < 6; b++) {
            __m512 col[6];
            for (int a = 0; a < 6; a++)
                col[a] = _mm512_loadu_ps(m + (size_t)(a * 6 + b) * stride + f0);
            at6(col, t[b]);
        }
        const __m512 bv = bias ? _mm512_loadu_ps(bias + f0) : zero;
        for (uint32_t i = 0; i < nh; i++) {
            __m512 row[6], o[4];
            for (int b = 0; b < 6; b++)
                row[b] = t[b][i];
            at6(row, o);
            const size_t base = ((size_t)(oh0 + i) * g->w + ow0) * n + f0;
            for (uint32_t j = 0; j < nw; j++) {
                __m512 r = _mm512_add_ps(o[j], bv);
                if (rimg) /* the residual join, fused */
                    r = _mm512_add_ps(r, _mm512_loadu_ps(rimg + base + (size_t)j * n));
                /* max_ps and min_ps return their second operand on NaN: keep NaN */
                if (clamp)
                    r = _mm512_max_ps(zero, r);
                if (clamp == TLI_CLAMP_RELU6)
                    r = _mm512_min_ps(six, r);
                _mm512_storeu_ps(yimg + base + (size_t)j * n, r);
            }
        }
    }
}

/* ---- driver ------------------------------------------------------------------ */

/* dst ((h+2) x (w+2) x c) = image img with a border of zeros. */
static void pad_image(const tli_wino_geom *g, const float *img, float *dst)
{
    const size_t c = g->in_c, row = (size_t)g->w * c, prow = row + 2 * c;
    memset(dst, 0, prow * sizeof(float));
    dst += prow;
    for (uint32_t r = 0; r < g->h; r++, dst += prow, img += row) {
        memset(dst, 0, c * sizeof(float));
        memcpy(dst + c, img, row * sizeof(float));
        memset(dst + c + row, 0, c * sizeof(float));
    }
    memset(dst, 0, prow * sizeof(float));
}

/* The floats [from, to) of a tensor asked into L2. A block's tiles read
 * short runs of input rows (6 tiles' columns) that the hardware
 * prefetchers pick up late; asked for one block ahead, the next block's
 * input is in L2 when its transforms start. */
TLI_INLINE void prefetch_span(const float *base, size_t from, size_t to)
{
    const char *p = (const char *)((uintptr_t)(base + from) & ~(uintptr_t)63), *end = (const char *)(base + to);
    for (; p < end; p += 64)
        _mm_prefetch(p, _MM_HINT_T1);
}

/* Where the input of tiles [q0, q1) lies, in floats from x's start: from
 * the first tile's top row to the last one's bottom row (tiles go image by
 * image, row of tiles by row of tiles). */
static void tiles_span(const tli_wino_geom *g, size_t q0, size_t q1, size_t per_img, uint32_t tiles_w, size_t *from,
                       size_t *to)
{
    const size_t row = (size_t)g->w * g->in_c, img = (size_t)g->h * row;
    const size_t i0 = q0 / per_img, r0 = (q0 % per_img) / tiles_w;
    const size_t i1 = (q1 - 1) / per_img, r1 = ((q1 - 1) % per_img) / tiles_w;
    const size_t top = r0 ? 4 * r0 - 1 : 0, bottom = 4 * r1 + 5 < g->h ? 4 * r1 + 5 : g->h;
    *from = i0 * img + top * row;
    *to = i1 * img + bottom * row;
}

static float *thread_buf(float *buf, size_t floats, bool parallel)
{
#ifdef _OPENMP
    if (parallel)
        return buf + (size_t)omp_get_thread_num() * floats;
#endif
    (void)floats, (void)parallel;
    return buf;
}

void tli_wino_forward_avx512(uint32_t threads, const tli_wino_geom *g, const float *x, const float *u,
                             const float *bias, const float *res, int clamp, float *y, float *xpad, float *buf,
                             size_t batch)
{
    const size_t c = g->in_c, n = g->filters, cp = padded_c(g);
    const size_t in_img = (size_t)g->h * g->w * c, out_img = (size_t)g->h * g->w * n;
    const size_t pad_img = (size_t)(g->h + 2) * (g->w + 2) * c;
    const uint32_t tiles_h = (g->h + 3) / 4, tiles_w = (g->w + 3) / 4;
    const size_t per_img = (size_t)tiles_h * tiles_w, tiles = batch * per_img;
    size_t t_cap = block_tiles(g), blocks = (tiles + t_cap - 1) / t_cap;
    const size_t buf_floats = tli_wino_buffer_floats(g);
    /* the multiply-adds of the products: 36 per tile and (channel, filter) */
    threads = tli_par_threads(threads, (double)tiles * TLI_WINO_POS * c * n, 0);
    if (threads > 1 && blocks < threads) { /* smaller blocks, one per thread (batch 1) */
        const size_t gran = tile_gran(g), per = (tiles + threads - 1) / threads;
        t_cap = (per + gran - 1) / gran * gran;
        blocks = (tiles + t_cap - 1) / t_cap;
        threads = (uint32_t)blocks;
    }
    if (xpad) /* for the weight gradient (the direct kernel's padded layout) */
        TLI_OMP_FOR(threads > 1 && batch > 1, "omp parallel for num_threads(threads) schedule(static)",
                    (long i = 0; i < (long)batch; i++),
                    { pad_image(g, x + (size_t)i * in_img, xpad + (size_t)i * pad_img); });
    TLI_OMP_FOR(threads > 1, "omp parallel for num_threads(threads) schedule(dynamic, 1)",
                (long bl = 0; bl < (long)blocks; bl++), {
                    float *v = thread_buf(buf, buf_floats, threads > 1);
                    v = (float *)(((uintptr_t)v + 63) & ~(uintptr_t)63);
                    float *m = v + (size_t)TLI_WINO_POS * t_cap * cp;
                    const size_t q0 = (size_t)bl * t_cap;
                    const size_t nt = tiles - q0 < t_cap ? tiles - q0 : t_cap;
                    if (q0 + nt < tiles) { /* the next block's input and residual, into L2 */
                        const size_t q1 = q0 + nt, q2 = tiles - q1 < t_cap ? tiles : q1 + t_cap;
                        size_t from, to;
                        tiles_span(g, q1, q2, per_img, tiles_w, &from, &to);
                        prefetch_span(x, from, to);
                        if (res)
                            prefetch_span(res, from / c * n, to / c * n);
                    }
                    for (size_t t = 0; t < nt; t++) {
                        const size_t q = q0 + t, i = q / per_img, r = q % per_img;
                        const long th = (long)(r / tiles_w), tw = (long)(r % tiles_w);
                        input_tile(g, x + i * in_img, 4 * th - 1, 4 * tw - 1, v + t * cp, t_cap * cp);
                    }
                    /* a short last block: rows up to a multiple of TAIL_ROWS computed on zeros, not read */
                    const size_t rows = (nt + TAIL_ROWS - 1) / TAIL_ROWS * TAIL_ROWS;
                    for (size_t t = nt; t < rows; t++)
                        for (int p = 0; p < TLI_WINO_POS; p++)
                            memset(v + ((size_t)p * t_cap + t) * cp, 0, cp * sizeof(float));
                    block_products(g, v, u, m, rows, t_cap);
                    for (size_t t = 0; t < nt; t++) {
                        const size_t q = q0 + t, i = q / per_img, r = q % per_img;
                        const uint32_t th = (uint32_t)(r / tiles_w), tw = (uint32_t)(r % tiles_w);
                        output_tile(g, m + t * n, t_cap * n, bias, res ? res + i * out_img : NULL, clamp,
                                    y + i * out_img, 4 * th, 4 * tw);
                    }
                });
}
