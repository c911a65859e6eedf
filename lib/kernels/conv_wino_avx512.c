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

/* Floats from one point's rows of a block's V (or M, Z) to the next: an
 * odd number of cache lines, so that a tile's 36 stores (or loads) fall in
 * 36 L1 sets. The forward's rows were 48 lines (768 floats at every stage
 * of ResNet-20), 4 sets; in the weight gradient rows adding up to a
 * multiple of 4 KiB (128 tiles of 16 channels, 1 set) took twice as long. */
static size_t odd_lines(size_t floats)
{
    return ((floats + 15) / 16 | 1) * 16;
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
    const size_t t = block_tiles(g);
    return (size_t)TLI_WINO_POS * (odd_lines(t * padded_c(g)) + odd_lines(t * g->filters)) + 16;
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
    /* Cells outside the image load with an empty mask (no access, no
     * fault, zeros) instead of a branch per cell: a border tile's pattern
     * of branches changes from tile to tile. */
    const float *rowp[6];
    unsigned colok[6];
    __mmask16 rowk[6];
    for (int a = 0; a < 6; a++) {
        const long ih = ih0 + a;
        const bool ok = ih >= 0 && ih < (long)g->h;
        rowp[a] = img + (ok ? (size_t)ih * g->w * c : 0);
        rowk[a] = (__mmask16)(ok ? 0xFFFF : 0);
        const long iw = iw0 + a;
        colok[a] = iw >= 0 && iw < (long)g->w ? 0xFFFFu : 0u;
    }
    for (size_t c0 = 0; c0 < c; c0 += 16) {
        const unsigned k = c - c0 >= 16 ? 0xFFFFu : (1u << (c - c0)) - 1;
        __m512 t[6][6]; /* t[b][a'] = (B^T d)[a'][b]: the columns' transforms */
        for (int b = 0; b < 6; b++) {
            __m512 d[6];
            const unsigned kb = k & colok[b];
            for (int a = 0; a < 6; a++)
                d[a] = _mm512_maskz_loadu_ps((__mmask16)(kb & rowk[a]), rowp[a] + ((long)iw0 + b) * (long)c + (long)c0);
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
                           size_t vs, size_t ms)
{
    const size_t cp = padded_c(g), n = g->filters, c = g->in_c;
    for (int p = 0; p < TLI_WINO_POS; p++) {
        const float *vp = v + (size_t)p * vs, *up = u + (size_t)p * tli_wino_point_floats(g);
        float *mp = m + (size_t)p * ms;
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

/* One forward call's blocks of tiles. */
typedef struct wino_job {
    const tli_wino_geom *g;
    const float *x, *u, *bias, *res;
    int clamp;
    float *y, *buf;
    size_t buf_floats, t_cap, tiles, per_img;
    uint32_t tiles_w;
    size_t vs, ms; /* V's and M's point strides */
    bool parallel;
} wino_job;

/* Block bl: its tiles transformed into V, the products into M, M
 * transformed back into y. */
static void wino_block(const wino_job *j, size_t bl)
{
    const tli_wino_geom *g = j->g;
    const size_t c = g->in_c, n = g->filters, cp = padded_c(g);
    const size_t in_img = (size_t)g->h * g->w * c, out_img = (size_t)g->h * g->w * n;
    const size_t t_cap = j->t_cap, tiles = j->tiles, per_img = j->per_img, vs = j->vs, ms = j->ms;
    const uint32_t tiles_w = j->tiles_w;
    float *v = thread_buf(j->buf, j->buf_floats, j->parallel);
    v = (float *)(((uintptr_t)v + 63) & ~(uintptr_t)63);
    float *m = v + (size_t)TLI_WINO_POS * vs;
    const size_t q0 = bl * t_cap;
    const size_t nt = tiles - q0 < t_cap ? tiles - q0 : t_cap;
    if (q0 + nt < tiles) { /* the next block's input and residual, into L2 */
        const size_t q1 = q0 + nt, q2 = tiles - q1 < t_cap ? tiles : q1 + t_cap;
        size_t from, to;
        tiles_span(g, q1, q2, per_img, tiles_w, &from, &to);
        prefetch_span(j->x, from, to);
        if (j->res)
            prefetch_span(j->res, from / c * n, to / c * n);
    }
    for (size_t t = 0; t < nt; t++) {
        const size_t q = q0 + t, i = q / per_img, r = q % per_img;
        const long th = (long)(r / tiles_w), tw = (long)(r % tiles_w);
        input_tile(g, j->x + i * in_img, 4 * th - 1, 4 * tw - 1, v + t * cp, vs);
    }
    /* a short last block: rows up to a multiple of TAIL_ROWS computed on zeros, not read */
    const size_t rows = (nt + TAIL_ROWS - 1) / TAIL_ROWS * TAIL_ROWS;
    for (size_t t = nt; t < rows; t++)
        for (int p = 0; p < TLI_WINO_POS; p++)
            memset(v + (size_t)p * vs + t * cp, 0, cp * sizeof(float));
    block_products(g, v, j->u, m, rows, vs, ms);
    for (size_t t = 0; t < nt; t++) {
        const size_t q = q0 + t, i = q / per_img, r = q % per_img;
        const uint32_t th = (uint32_t)(r / tiles_w), tw = (uint32_t)(r % tiles_w);
        output_tile(g, m + t * n, ms, j->bias, j->res ? j->res + i * out_img : NULL, j->clamp, j->y + i * out_img,
                    4 * th, 4 * tw);
    }
}

void tli_wino_forward_avx512(uint32_t threads, const tli_wino_geom *g, const float *x, const float *u,
                             const float *bias, const float *res, int clamp, float *y, float *xpad, float *buf,
                             size_t batch)
{
    const size_t c = g->in_c, n = g->filters, cp = padded_c(g);
    const size_t in_img = (size_t)g->h * g->w * c;
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
    const size_t vs = odd_lines(t_cap * cp), ms = odd_lines(t_cap * n);
    if (xpad) /* for the weight gradient (the direct kernel's padded layout) */
        TLI_OMP_FOR(threads > 1 && batch > 1, "omp parallel for num_threads(threads) schedule(static)",
                    (long i = 0; i < (long)batch; i++),
                    { pad_image(g, x + (size_t)i * in_img, xpad + (size_t)i * pad_img); });
    const wino_job job = {g, x, u, bias, res, clamp, y, buf, buf_floats, t_cap, tiles, per_img, tiles_w, vs, ms,
                          threads > 1};
    /* Blocks of a batch go in contiguous shares (parallel.h); a batch-1
     * call's few blocks go as they come, a thread woken late then taking
     * fewer. */
    if (batch >= 2 * (size_t)threads)
        TLI_OMP_FOR(threads > 1, "omp parallel for num_threads(threads) schedule(static)",
                    (long bl = 0; bl < (long)blocks; bl++), { wino_block(&job, (size_t)bl); });
    else
        TLI_OMP_FOR(threads > 1, "omp parallel for num_threads(threads) schedule(dynamic, 1)",
                    (long bl = 0; bl < (long)blocks; bl++), { wino_block(&job, (size_t)bl); });
}

/* ---- weight gradient --------------------------------------------------------
 *
 * The forward is y = A^T [U .* V] A per tile with U = G g G^T, and it is
 * exact (in exact arithmetic) whatever the input tile, so its derivative
 * is the convolution's: per tile and point p = (a, b), dL/dU_ab = (A dy
 * A^T)_ab =: Z_ab (dy the tile's 4 x 4 output gradient, zeros past the
 * image), and dL/dg = G^T dU G with dU the sum over all tiles of V .* Z
 * (Lavin and Gray's F(3x3, 4x4) backward filter). Summed over the channels
 * and filters, each point is a product dU_p (in_c x filters) += V_p^T
 * (in_c x tiles) Z_p (tiles x filters): K is the batch's tiles, 36 such
 * products replace the direct kernel's 9 of K = pixels (16 per tile).
 *
 * Tiles go in blocks of at most WG_BLOCK_BYTES of V and Z (up to WG_MAX_T
 * tiles, in L2); a block's products are summed from zero in registers and
 * then added into its chunk's dU. The tiles are cut into
 * WG_CHUNKS chunks at fixed block boundaries (the geometry and batch
 * decide them, never the thread count); a thread takes whole chunks and
 * the chunks' sums are added in chunk order, in double, before G^T: the
 * same bits for any thread count. */

enum {
    WG_BLOCK_BYTES = 512 << 10, /* one block's V and Z */
    WG_MAX_T = 128,
    /* the tiles' split for threads: 2 cores on the target machine (more
     * threads gain nothing here; one thread still sums 2 chunks) */
    WG_CHUNKS = 2,
};

static size_t wg_block_tiles(const tli_wino_geom *g)
{
    size_t t = WG_BLOCK_BYTES / ((size_t)TLI_WINO_POS * (padded_c(g) + g->filters) * sizeof(float));
    return t < 4 ? 4 : t > WG_MAX_T ? WG_MAX_T : t;
}

/* Floats from one point's cp x filters sum to the next (a cache line
 * more, as tli_wino_point_floats). */
static size_t wg_point_floats(const tli_wino_geom *g)
{
    return padded_c(g) * g->filters + 16;
}

static size_t wg_chunks(const tli_wino_geom *g, size_t batch)
{
    const size_t tiles = batch * ((g->h + 3) / 4) * ((g->w + 3) / 4), t = wg_block_tiles(g);
    const size_t blocks = (tiles + t - 1) / t;
    return blocks < WG_CHUNKS ? (blocks ? blocks : 1) : WG_CHUNKS;
}

/* Floats from one point's rows of a block's V (Z) to the next: odd_lines. */
static size_t wg_v_stride(const tli_wino_geom *g, size_t t_cap)
{
    return odd_lines(t_cap * padded_c(g));
}
static size_t wg_z_stride(const tli_wino_geom *g, size_t t_cap)
{
    return odd_lines(t_cap * g->filters);
}

static size_t wg_thread_floats(const tli_wino_geom *g)
{
    const size_t t = wg_block_tiles(g);
    return (size_t)TLI_WINO_POS * (wg_v_stride(g, t) + wg_z_stride(g, t)) + 16;
}

size_t tli_wino_wgrad_floats(const tli_wino_geom *g, size_t batch, uint32_t threads)
{
    const size_t chunks = wg_chunks(g, batch), bufs = threads < chunks ? threads : chunks;
    return chunks * TLI_WINO_POS * wg_point_floats(g) + (bufs ? bufs : 1) * wg_thread_floats(g) + 16;
}

/* z = A d along one direction: 4 vectors in, 6 out. */
TLI_INLINE void a4(const __m512 d[4], __m512 z[6])
{
    const __m512 e = _mm512_add_ps(d[0], d[2]), o = _mm512_add_ps(d[1], d[3]);
    const __m512 e4 = _mm512_fmadd_ps(_mm512_set1_ps(4.0f), d[2], d[0]);
    const __m512 o4 = _mm512_mul_ps(_mm512_set1_ps(2.0f), _mm512_fmadd_ps(_mm512_set1_ps(4.0f), d[3], d[1]));
    z[0] = d[0];
    z[1] = _mm512_add_ps(e, o);
    z[2] = _mm512_sub_ps(e, o);
    z[3] = _mm512_add_ps(e4, o4);
    z[4] = _mm512_sub_ps(e4, o4);
    z[5] = d[3];
}

/* Z[p][t][f0 ..] (points `stride` floats apart) = A dy A^T for the output
 * tile at (oh0, ow0) of one image's gradient, all filters. */
static void grad_tile(const tli_wino_geom *g, const float *dimg, uint32_t oh0, uint32_t ow0, float *z, size_t stride)
{
    const size_t n = g->filters;
    const uint32_t nh = g->h - oh0 < 4 ? g->h - oh0 : 4, nw = g->w - ow0 < 4 ? g->w - ow0 : 4;
    /* rows and columns past the image load with an empty mask (as input_tile) */
    const float *rowp[4];
    __mmask16 rowk[4], colk[4];
    for (uint32_t i = 0; i < 4; i++) {
        rowp[i] = dimg + ((size_t)(oh0 + (i < nh ? i : 0)) * g->w + ow0) * n;
        rowk[i] = (__mmask16)(i < nh ? 0xFFFF : 0);
        colk[i] = (__mmask16)(i < nw ? 0xFFFF : 0);
    }
    for (size_t f0 = 0; f0 < n; f0 += 16) {
        __m512 t[4][6]; /* t[j][a] = (A dy)[a][j] */
        for (uint32_t j = 0; j < 4; j++) {
            __m512 d[4];
            for (uint32_t i = 0; i < 4; i++)
                d[i] = _mm512_maskz_loadu_ps(rowk[i] & colk[j], rowp[i] + (size_t)j * n + f0);
            a4(d, t[j]);
        }
        for (int a = 0; a < 6; a++) {
            const __m512 d[4] = {t[0][a], t[1][a], t[2][a], t[3][a]};
            __m512 o[6];
            a4(d, o);
            for (int b = 0; b < 6; b++)
                _mm512_storeu_ps(z + (size_t)(a * 6 + b) * stride + f0, o[b]);
        }
    }
}

/* s (RB channels x NV filter vectors, rows n apart) (+)= v^T z over nt
 * tiles: v's rows cp apart (RB channels from v), z's n apart; one FMA
 * chain per output over the block's tiles in order, then added to s: a
 * sum of block sums (one chain over a chunk's thousands of tiles erred
 * 1.6e-5 of the largest dw on 64 images of 32x32, see test_winograd.c). */
TLI_INLINE void wg_product_tile(const float *v, size_t cp, const float *z, size_t n, size_t nt, float *s, bool add,
                                const int RB, const int NV)
{
    __m512 acc[16][3];
#pragma GCC unroll 16
    for (int r = 0; r < RB; r++)
#pragma GCC unroll 3
        for (int q = 0; q < NV; q++)
            acc[r][q] = _mm512_setzero_ps();
    for (size_t t = 0; t < nt; t++, v += cp, z += n) {
        __m512 zv[3];
#pragma GCC unroll 3
        for (int q = 0; q < NV; q++)
            zv[q] = _mm512_loadu_ps(z + 16 * q);
#pragma GCC unroll 16
        for (int r = 0; r < RB; r++) {
            const __m512 b = _mm512_set1_ps(v[r]);
#pragma GCC unroll 3
            for (int q = 0; q < NV; q++)
                acc[r][q] = _mm512_fmadd_ps(b, zv[q], acc[r][q]);
        }
    }
#pragma GCC unroll 16
    for (int r = 0; r < RB; r++)
#pragma GCC unroll 3
        for (int q = 0; q < NV; q++)
            _mm512_storeu_ps(s + (size_t)r * n + 16 * q,
                             add ? _mm512_add_ps(_mm512_loadu_ps(s + (size_t)r * n + 16 * q), acc[r][q]) : acc[r][q]);
}

/* dU (+)= the block's 36 products (V, Z of nt tiles, points vs and zs
 * floats apart). Filter blocks of 3 vectors (4 = 2 + 2) by 8 channels,
 * or 1 by 16: 16 or 24 accumulators; cp is a multiple of 16. */
static void wg_block_products(const tli_wino_geom *g, const float *v, const float *z, float *du, size_t nt,
                              size_t vs, size_t zs, bool add)
{
    const size_t cp = padded_c(g), n = g->filters, ps = wg_point_floats(g);
    for (int p = 0; p < TLI_WINO_POS; p++) {
        const float *vp = v + (size_t)p * vs, *zp = z + (size_t)p * zs;
        float *sp = du + (size_t)p * ps;
        for (size_t f0 = 0; f0 < n;) {
            const size_t rem = (n - f0) / 16;
            const int nv = rem <= 3 ? (int)rem : rem == 4 ? 2 : 3;
            const size_t rb = nv == 1 ? 16 : 8;
            for (size_t c0 = 0; c0 < cp; c0 += rb) {
                const float *vr = vp + c0, *zf = zp + f0;
                float *s = sp + c0 * n + f0;
                switch (nv) {
                case 1: wg_product_tile(vr, cp, zf, n, nt, s, add, 16, 1); break;
                case 2: wg_product_tile(vr, cp, zf, n, nt, s, add, 8, 2); break;
                default: wg_product_tile(vr, cp, zf, n, nt, s, add, 8, 3); break;
                }
            }
            f0 += 16 * (size_t)nv;
        }
    }
}

/* r (3 values) = G^T u (6 values), 8 filters at once in double. */
TLI_INLINE void gt6(const __m512d u[6], __m512d r[3])
{
    const __m512d s6 = _mm512_set1_pd(1.0 / 6);
    const __m512d p12 = _mm512_add_pd(u[1], u[2]), m12 = _mm512_sub_pd(u[2], u[1]);
    const __m512d p34 = _mm512_add_pd(u[3], u[4]), m34 = _mm512_sub_pd(u[3], u[4]);
    r[0] = _mm512_fmadd_pd(_mm512_set1_pd(1.0 / 4), u[0],
                           _mm512_fmadd_pd(_mm512_set1_pd(1.0 / 24), p34, _mm512_mul_pd(_mm512_set1_pd(-1.0 / 6), p12)));
    r[1] = _mm512_fmadd_pd(s6, m12, _mm512_mul_pd(_mm512_set1_pd(1.0 / 12), m34));
    r[2] = _mm512_add_pd(_mm512_mul_pd(s6, _mm512_sub_pd(p34, p12)), u[5]);
}

/* One chunk: blocks [b0, b1) of t_cap tiles summed into du. */
static void wg_chunk(const tli_wino_geom *g, const float *x, const float *dz, size_t tiles, size_t t_cap, size_t b0,
                     size_t b1, float *du, float *v)
{
    const size_t cp = padded_c(g), n = g->filters;
    const size_t in_img = (size_t)g->h * g->w * g->in_c, out_img = (size_t)g->h * g->w * n;
    const uint32_t tiles_w = (g->w + 3) / 4;
    const size_t per_img = (size_t)((g->h + 3) / 4) * tiles_w;
    const size_t vs = wg_v_stride(g, t_cap), zs = wg_z_stride(g, t_cap);
    v = (float *)(((uintptr_t)v + 63) & ~(uintptr_t)63);
    float *z = v + (size_t)TLI_WINO_POS * vs;
    for (size_t bl = b0; bl < b1; bl++) {
        const size_t q0 = bl * t_cap, nt = tiles - q0 < t_cap ? tiles - q0 : t_cap;
        if (bl + 1 < b1) { /* the next block's input and gradient, into L2 (as the forward) */
            const size_t q1 = q0 + nt, q2 = tiles - q1 < t_cap ? tiles : q1 + t_cap;
            size_t from, to;
            tiles_span(g, q1, q2, per_img, tiles_w, &from, &to);
            prefetch_span(x, from, to);
            prefetch_span(dz, from / g->in_c * n, to / g->in_c * n);
        }
        for (size_t t = 0; t < nt; t++) {
            const size_t q = q0 + t, i = q / per_img, r = q % per_img;
            const uint32_t th = (uint32_t)(r / tiles_w), tw = (uint32_t)(r % tiles_w);
            input_tile(g, x + i * in_img, 4 * (long)th - 1, 4 * (long)tw - 1, v + t * cp, vs);
            grad_tile(g, dz + i * out_img, 4 * th, 4 * tw, z + t * n, zs);
        }
        wg_block_products(g, v, z, du, nt, vs, zs, bl > b0);
    }
}

void tli_wino_weight_grad_avx512(uint32_t threads, const tli_wino_geom *g, const float *x, const float *dz, float *dw,
                                 float *buf, size_t batch)
{
    const size_t c = g->in_c, n = g->filters, cn = c * n, ps = wg_point_floats(g);
    const size_t tiles = batch * ((g->h + 3) / 4) * ((g->w + 3) / 4), t_cap = wg_block_tiles(g);
    const size_t blocks = (tiles + t_cap - 1) / t_cap, chunks = wg_chunks(g, batch);
    float *du = buf, *tbuf = buf + chunks * TLI_WINO_POS * ps;
    const size_t tf = wg_thread_floats(g);
    if (tiles == 0) {
        memset(dw, 0, 9 * cn * sizeof(float));
        return;
    }
    threads = tli_par_threads(threads, (double)tiles * TLI_WINO_POS * c * n, 0);
    if (threads > chunks)
        threads = (uint32_t)chunks;
    TLI_OMP_FOR(threads > 1, "omp parallel for num_threads(threads) schedule(static)",
                (long k = 0; k < (long)chunks; k++), {
                    const size_t b0 = (size_t)k * blocks / chunks, b1 = (size_t)(k + 1) * blocks / chunks;
                    wg_chunk(g, x, dz, tiles, t_cap, b0, b1, du + (size_t)k * TLI_WINO_POS * ps,
                             thread_buf(tbuf, tf, threads > 1));
                });
    /* dw = G^T (the chunks' sums, in chunk order) G, in double, rounded once */
    TLI_OMP_FOR(threads > 1 && c > 1, "omp parallel for num_threads(threads) schedule(static)",
                (long ci = 0; ci < (long)c; ci++), {
                    for (size_t f0 = 0; f0 < n; f0 += 8) {
                        const size_t o = (size_t)ci * n + f0;
                        __m512d t[3][6];
                        for (int b = 0; b < 6; b++) {
                            __m512d col[6], r[3];
                            for (int a = 0; a < 6; a++) {
                                const float *s = du + (size_t)(a * 6 + b) * ps + o;
                                __m512d sum = _mm512_cvtps_pd(_mm256_loadu_ps(s));
                                for (size_t k = 1; k < chunks; k++)
                                    sum = _mm512_add_pd(
                                        sum, _mm512_cvtps_pd(_mm256_loadu_ps(s + k * TLI_WINO_POS * ps)));
                                col[a] = sum;
                            }
                            gt6(col, r);
                            for (int kh = 0; kh < 3; kh++)
                                t[kh][b] = r[kh];
                        }
                        for (int kh = 0; kh < 3; kh++) {
                            __m512d r[3];
                            gt6(t[kh], r);
                            for (int kw = 0; kw < 3; kw++)
                                _mm256_storeu_ps(dw + (size_t)(kh * 3 + kw) * cn + o, _mm512_cvtpd_ps(r[kw]));
                        }
                    }
                });
}
