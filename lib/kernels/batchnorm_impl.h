/*
 * batchnorm_impl.h - batch normalization's loops over a range of rows,
 * written once in portable C and compiled twice: batchnorm.c for any CPU
 * and batchnorm_avx512.c with AVX-512 enabled (16 floats, 8 doubles a
 * vector instead of 4 and 2). Include after defining TLI_BN(name), which
 * gives each build its own function names; batchnorm.c picks a build
 * once (tli_cpu_has_avx512) and runs its threads over these.
 *
 * Both builds give the same bits: the loops vectorise across channels, so
 * each channel's sum still runs over the rows in the same order, and with
 * floating-point contraction off (C11 mode) every product and sum is
 * rounded alike; tests/test_batchnorm.c compares the two.
 *
 * Every loop runs over the rows in memory order (a row's channels in
 * 16-wide vectors, the per-channel sums in L1): blocking the rows to keep
 * the sums in registers visited each row's channel groups in turn, which
 * the prefetchers followed worse - these passes wait on memory. The last
 * c % 16 channels take plain loops, in the same order.
 *
 * `mask` (a TLI_CLAMP_* of elementwise.h): the backward loops take the
 * ReLU / ReLU6 after the batchnorm as well - dy is the gradient of that
 * activation's output y, and counts where the activation passed its input
 * (0 < y, 0 < y < 6: the activation layer's own test), 0 elsewhere; the
 * training loops test the activation's input, recomputed from x (gmask).
 */
#include <stddef.h>
#include <string.h>

#include "elementwise.h"

#define BN_V 16
#define BN_INLINE static inline __attribute__((always_inline))

/* 16 channels as GCC vectors: one zmm register (two for the doubles) in
 * the AVX-512 build, split into SSE2 registers by the compiler in the
 * portable one; either way element-wise IEEE arithmetic, so the same
 * bits. Loads and stores go through memcpy (any alignment). */
/* The helpers are always inlined: their vector returns never cross a call
 * (GCC's ABI note on them in the portable build does not apply). */
#pragma GCC diagnostic ignored "-Wpsabi"
typedef float bn_vf __attribute__((vector_size(BN_V * sizeof(float))));
typedef int bn_vi __attribute__((vector_size(BN_V * sizeof(int))));
typedef double bn_vd __attribute__((vector_size(BN_V * sizeof(double))));

BN_INLINE bn_vf bn_load_f(const float *p)
{
    bn_vf v;
    memcpy(&v, p, sizeof v);
    return v;
}

BN_INLINE bn_vd bn_load_d(const double *p)
{
    bn_vd v;
    memcpy(&v, p, sizeof v);
    return v;
}

BN_INLINE void bn_store_d(double *p, bn_vd v)
{
    memcpy(p, &v, sizeof v);
}

BN_INLINE void bn_store_f(float *p, bn_vf v)
{
    memcpy(p, &v, sizeof v);
}

/* tli_clamp on 16 values, bit for bit: v < 0 -> +0 (NaN stays), then for
 * ReLU6 v > 6 -> 6. */
BN_INLINE bn_vf bn_clamp(bn_vf v, int clamp)
{
    if (clamp == TLI_CLAMP_NONE)
        return v;
    const bn_vf zero = {0}, six = zero + 6.0f;
    v = (bn_vf)((bn_vi)v & ~(v < zero));
    if (clamp == TLI_CLAMP_RELU6) {
        const bn_vi over = v > six;
        v = (bn_vf)(((bn_vi)v & ~over) | ((bn_vi)six & over));
    }
    return v;
}

/* g through the mask of the activation with output v (masked(), 16 wide). */
BN_INLINE bn_vf bn_mask(bn_vf g, bn_vf v, int mask)
{
    if (mask == TLI_CLAMP_NONE)
        return g;
    const bn_vf zero = {0}, six = zero + 6.0f;
    bn_vi pass = v > zero;
    if (mask == TLI_CLAMP_RELU6)
        pass &= v < six;
    return (bn_vf)((bn_vi)g & pass);
}

/* dy where the ReLU / ReLU6 whose output is y let it through, else 0.
 * The bodies below are inlined once per constant mask, so that each
 * loop is specialised (no test per element). */
BN_INLINE float TLI_BN(masked)(float dy, float y, int mask)
{
    if (mask == TLI_CLAMP_RELU)
        return y > 0.0f ? dy : 0.0f;
    if (mask == TLI_CLAMP_RELU6)
        return (y > 0.0f) & (y < 6.0f) ? dy : 0.0f;
    return dy;
}

/* The sums below take the rows four at a time: the four rows' terms are
 * added pairwise ((r0 + r1) + (r2 + r3)) and that into the running sum,
 * then the rows left over one by one. A fixed order (set by lo and hi
 * alone), and a quarter of the additions into the sums: one addition per
 * row into a sum kept in L1 chained every row through a store and a load,
 * and these passes ran at a third of memory's speed. */
#define BN_ROWS 4
#define BN_GROUP_C 64

/* d = x - shift of 16 channels, in double. */
BN_INLINE bn_vd TLI_BN(dev)(const float *xr, const float *shift)
{
    return __builtin_convertvector(bn_load_f(xr), bn_vd) - __builtin_convertvector(bn_load_f(shift), bn_vd);
}

/* Over rows [lo, hi): s1[j] = sum of d, s2[j] = sum of d * d, with
 * d = x[r][j] - shift[j] in double (exact for floats of similar size). */
void TLI_BN(stats)(const float *x, size_t lo, size_t hi, size_t c, const float *shift, double *restrict s1,
                   double *restrict s2)
{
    memset(s1, 0, c * sizeof *s1);
    memset(s2, 0, c * sizeof *s2);
    const size_t cv = c - c % BN_V;
    size_t r = lo;
    for (; hi - r >= BN_ROWS; r += BN_ROWS) {
        const float *restrict x0 = x + r * c, *restrict x1 = x0 + c, *restrict x2 = x1 + c, *restrict x3 = x2 + c;
        for (size_t j0 = 0; j0 < cv; j0 += BN_V) {
            const bn_vd d0 = TLI_BN(dev)(x0 + j0, shift + j0), d1 = TLI_BN(dev)(x1 + j0, shift + j0);
            const bn_vd d2 = TLI_BN(dev)(x2 + j0, shift + j0), d3 = TLI_BN(dev)(x3 + j0, shift + j0);
            bn_store_d(s1 + j0, bn_load_d(s1 + j0) + ((d0 + d1) + (d2 + d3)));
            bn_store_d(s2 + j0, bn_load_d(s2 + j0) + ((d0 * d0 + d1 * d1) + (d2 * d2 + d3 * d3)));
        }
        for (size_t j = cv; j < c; j++) {
            const double sh = (double)shift[j];
            const double d0 = (double)x0[j] - sh, d1 = (double)x1[j] - sh, d2 = (double)x2[j] - sh,
                         d3 = (double)x3[j] - sh;
            s1[j] += (d0 + d1) + (d2 + d3);
            s2[j] += (d0 * d0 + d1 * d1) + (d2 * d2 + d3 * d3);
        }
    }
    for (; r < hi; r++) {
        const float *restrict xr = x + r * c;
        for (size_t j0 = 0; j0 < cv; j0 += BN_V) {
            const bn_vd d = TLI_BN(dev)(xr + j0, shift + j0);
            bn_store_d(s1 + j0, bn_load_d(s1 + j0) + d);
            bn_store_d(s2 + j0, bn_load_d(s2 + j0) + d * d);
        }
        for (size_t j = cv; j < c; j++) {
            const double d = (double)xr[j] - (double)shift[j];
            s1[j] += d;
            s2[j] += d * d;
        }
    }
}

/* y[r][j] = clamp((x[r][j] - mean[j]) * scale[j] + shift[j] + res[r][j]) for
 * r in [lo, hi); without res (NULL) the same without the term. With res
 * the same bits as normalizing and then adding res in tli_sum: the
 * normalized value is rounded to float first, and the sum commutes. */
BN_INLINE void TLI_BN(normalize_body)(const float *x, size_t lo, size_t hi, size_t c, const float *mean,
                                      const float *scale, const float *shift, const float *res, float *y,
                                      int clamp)
{
    const size_t cv = c - c % BN_V;
    for (size_t r = lo; r < hi; r++) {
        const float *restrict xr = x + r * c;
        const float *restrict rr = res ? res + r * c : NULL;
        float *restrict yr = y + r * c;
        for (size_t j0 = 0; j0 < cv; j0 += BN_V) {
            bn_vf v = (bn_load_f(xr + j0) - bn_load_f(mean + j0)) * bn_load_f(scale + j0) + bn_load_f(shift + j0);
            if (res)
                v = v + bn_load_f(rr + j0);
            bn_store_f(yr + j0, bn_clamp(v, clamp));
        }
        for (size_t j = cv; j < c; j++) {
            float v = (xr[j] - mean[j]) * scale[j] + shift[j];
            if (res)
                v = v + rr[j];
            yr[j] = tli_clamp(v, clamp);
        }
    }
}

/* normalize_body specialised on the clamp (a constant in each loop). */
BN_INLINE void TLI_BN(normalize_clamps)(const float *x, size_t lo, size_t hi, size_t c, const float *mean,
                                        const float *scale, const float *shift, const float *res, float *y,
                                        int clamp)
{
    if (clamp == TLI_CLAMP_RELU)
        TLI_BN(normalize_body)(x, lo, hi, c, mean, scale, shift, res, y, TLI_CLAMP_RELU);
    else if (clamp == TLI_CLAMP_RELU6)
        TLI_BN(normalize_body)(x, lo, hi, c, mean, scale, shift, res, y, TLI_CLAMP_RELU6);
    else
        TLI_BN(normalize_body)(x, lo, hi, c, mean, scale, shift, res, y, TLI_CLAMP_NONE);
}

void TLI_BN(normalize)(const float *x, size_t lo, size_t hi, size_t c, const float *mean, const float *scale,
                       const float *shift, const float *res, float *y, int clamp)
{
    if (res)
        TLI_BN(normalize_clamps)(x, lo, hi, c, mean, scale, shift, res, y, clamp);
    else
        TLI_BN(normalize_clamps)(x, lo, hi, c, mean, scale, shift, NULL, y, clamp);
}

/* The backward loops take dy through the fused activation's mask
 * without reading that activation's output: its input v, the clamp's
 * argument in the forward pass, is recomputed from x exactly as the
 * normalizing pass computed it, v = (x - mean) * scale + shift (shift
 * NULL: beta absent, 0; scale the forward's gamma * inv_std), and
 * 0 < clamp(v) (< 6) holds exactly where 0 < v (< 6) does. So dy is only
 * read, and neither the activation's output (usually out of cache by the
 * backward pass) nor a masked copy of dy goes through memory. */

/* g (16 channels at j0) through `mask`, xm = x - mean at them. */
BN_INLINE bn_vf TLI_BN(gmask)(bn_vf g, bn_vf xm, const float *scale, const float *shift, size_t j0, int mask)
{
    if (mask == TLI_CLAMP_NONE)
        return g;
#ifdef __AVX512F__
    /* dy loaded whole: left alone, GCC turns the mask into a masked load
     * of dy that waits for x's load and the compares, and the two streams
     * from memory no longer overlap (1.25x slower passes) */
    __asm__("" : "+v"(g));
#endif
    bn_vf v = xm * bn_load_f(scale + j0);
    if (shift)
        v = v + bn_load_f(shift + j0);
    return bn_mask(g, v, mask);
}

/* The same for one channel j. */
BN_INLINE float TLI_BN(gmask1)(float g, float xm, const float *scale, const float *shift, size_t j, int mask)
{
    if (mask == TLI_CLAMP_NONE)
        return g;
    float v = xm * scale[j];
    if (shift)
        v = v + shift[j];
    return TLI_BN(masked)(g, v, mask);
}

/* Over rows [lo, hi): sdy[j] = sum of g, sdx[j] = sum of g * xhat, with
 * xhat = (x - mean) * inv_std in float and g = dy through `mask` (see
 * above). Four rows at a time as the statistics (BN_ROWS) when there are
 * fewer than BN_GROUP_C channels, else row by row (a fixed order either
 * way: set by c). */

/* Row r's g and g * xhat for the 16 channels at j0, in double. */
BN_INLINE void TLI_BN(gterms)(const float *xr, const float *dr, int mask, const float *mean, const float *inv_std,
                              const float *scale, const float *shift, size_t j0, bn_vd *gd, bn_vd *gx)
{
    const bn_vf xm = bn_load_f(xr + j0) - bn_load_f(mean + j0);
    const bn_vf g = TLI_BN(gmask)(bn_load_f(dr + j0), xm, scale, shift, j0, mask);
    const bn_vf xh = xm * bn_load_f(inv_std + j0);
    *gd = __builtin_convertvector(g, bn_vd);
    *gx = *gd * __builtin_convertvector(xh, bn_vd);
}

/* The same for one channel j. */
BN_INLINE void TLI_BN(gterm)(const float *xr, const float *dr, int mask, const float *mean, const float *inv_std,
                             const float *scale, const float *shift, size_t j, double *gd, double *gx)
{
    const float xm = xr[j] - mean[j];
    const float g = TLI_BN(gmask1)(dr[j], xm, scale, shift, j, mask), xh = xm * inv_std[j];
    *gd = (double)g;
    *gx = (double)g * (double)xh;
}

BN_INLINE void TLI_BN(grad_sums_body)(const float *x, const float *dy, int mask, size_t lo, size_t hi, size_t c,
                                      const float *mean, const float *inv_std, const float *scale,
                                      const float *shift, double *restrict sdy, double *restrict sdx)
{
    memset(sdy, 0, c * sizeof *sdy);
    memset(sdx, 0, c * sizeof *sdx);
    const size_t cv = c - c % BN_V;
    size_t r = lo;
    /* From BN_GROUP_C channels on, a row's channel blocks are chains
     * enough to hide the additions' latency; there the grouped loop, with
     * its four rows in flight, measured slower. */
    for (; c < BN_GROUP_C && hi - r >= BN_ROWS; r += BN_ROWS) {
        const float *xr[BN_ROWS], *dr[BN_ROWS];
        for (int i = 0; i < BN_ROWS; i++) {
            xr[i] = x + (r + (size_t)i) * c;
            dr[i] = dy + (r + (size_t)i) * c;
        }
        for (size_t j0 = 0; j0 < cv; j0 += BN_V) {
            bn_vd g[BN_ROWS], gx[BN_ROWS];
            for (int i = 0; i < BN_ROWS; i++)
                TLI_BN(gterms)(xr[i], dr[i], mask, mean, inv_std, scale, shift, j0, &g[i], &gx[i]);
            bn_store_d(sdy + j0, bn_load_d(sdy + j0) + ((g[0] + g[1]) + (g[2] + g[3])));
            bn_store_d(sdx + j0, bn_load_d(sdx + j0) + ((gx[0] + gx[1]) + (gx[2] + gx[3])));
        }
        for (size_t j = cv; j < c; j++) {
            double g[BN_ROWS], gx[BN_ROWS];
            for (int i = 0; i < BN_ROWS; i++)
                TLI_BN(gterm)(xr[i], dr[i], mask, mean, inv_std, scale, shift, j, &g[i], &gx[i]);
            sdy[j] += (g[0] + g[1]) + (g[2] + g[3]);
            sdx[j] += (gx[0] + gx[1]) + (gx[2] + gx[3]);
        }
    }
    for (; r < hi; r++) {
        const float *restrict xr = x + r * c;
        const float *restrict dr = dy + r * c;
        for (size_t j0 = 0; j0 < cv; j0 += BN_V) {
            bn_vd g, gx;
            TLI_BN(gterms)(xr, dr, mask, mean, inv_std, scale, shift, j0, &g, &gx);
            bn_store_d(sdy + j0, bn_load_d(sdy + j0) + g);
            bn_store_d(sdx + j0, bn_load_d(sdx + j0) + gx);
        }
        for (size_t j = cv; j < c; j++) {
            double g, gx;
            TLI_BN(gterm)(xr, dr, mask, mean, inv_std, scale, shift, j, &g, &gx);
            sdy[j] += g;
            sdx[j] += gx;
        }
    }
}

void TLI_BN(grad_sums)(const float *x, const float *dy, int mask, size_t lo, size_t hi, size_t c, const float *mean,
                       const float *inv_std, const float *scale, const float *shift, double *sdy, double *sdx)
{
    if (mask == TLI_CLAMP_RELU)
        TLI_BN(grad_sums_body)(x, dy, TLI_CLAMP_RELU, lo, hi, c, mean, inv_std, scale, shift, sdy, sdx);
    else if (mask == TLI_CLAMP_RELU6)
        TLI_BN(grad_sums_body)(x, dy, TLI_CLAMP_RELU6, lo, hi, c, mean, inv_std, scale, shift, sdy, sdx);
    else
        TLI_BN(grad_sums_body)(x, dy, TLI_CLAMP_NONE, lo, hi, c, mean, inv_std, scale, shift, sdy, sdx);
}

/* dx[r][j] = a[j] * g - (x[r][j] - mean[j]) * q[j] - b[j] for r in [lo, hi),
 * g = dy through `mask` (a is the forward's scale, gamma * inv_std; shift
 * as above). */
BN_INLINE void TLI_BN(input_grad_body)(const float *x, const float *dy, int mask, size_t lo, size_t hi, size_t c,
                                       const float *mean, const float *shift, const float *a, const float *q,
                                       const float *b, float *dx)
{
    const size_t cv = c - c % BN_V;
    for (size_t r = lo; r < hi; r++) {
        const float *restrict xr = x + r * c, *restrict dr = dy + r * c;
        float *restrict out = dx + r * c;
        for (size_t j0 = 0; j0 < cv; j0 += BN_V) {
            const bn_vf xm = bn_load_f(xr + j0) - bn_load_f(mean + j0);
            const bn_vf g = TLI_BN(gmask)(bn_load_f(dr + j0), xm, a, shift, j0, mask);
            bn_store_f(out + j0, bn_load_f(a + j0) * g - xm * bn_load_f(q + j0) - bn_load_f(b + j0));
        }
        for (size_t j = cv; j < c; j++) {
            const float xm = xr[j] - mean[j];
            out[j] = a[j] * TLI_BN(gmask1)(dr[j], xm, a, shift, j, mask) - xm * q[j] - b[j];
        }
    }
}

void TLI_BN(input_grad)(const float *x, const float *dy, int mask, size_t lo, size_t hi, size_t c, const float *mean,
                        const float *shift, const float *a, const float *q, const float *b, float *dx)
{
    if (mask == TLI_CLAMP_RELU)
        TLI_BN(input_grad_body)(x, dy, TLI_CLAMP_RELU, lo, hi, c, mean, shift, a, q, b, dx);
    else if (mask == TLI_CLAMP_RELU6)
        TLI_BN(input_grad_body)(x, dy, TLI_CLAMP_RELU6, lo, hi, c, mean, shift, a, q, b, dx);
    else
        TLI_BN(input_grad_body)(x, dy, TLI_CLAMP_NONE, lo, hi, c, mean, shift, a, q, b, dx);
}

/* dx[r][j] = a[j] * g for r in [lo, hi), g = dy through `mask`: the
 * inference-mode (frozen) backward. */
void TLI_BN(scale)(const float *dy, const float *y, int mask, size_t lo, size_t hi, size_t c, const float *a,
                   float *dx)
{
    const float *restrict pa = a;
    for (size_t r = lo; r < hi; r++) {
        const float *restrict dr = dy + r * c;
        float *restrict out = dx + r * c;
        if (mask == TLI_CLAMP_NONE) {
            for (size_t j = 0; j < c; j++)
                out[j] = pa[j] * dr[j];
        } else {
            const float *restrict yr = y + r * c;
            for (size_t j = 0; j < c; j++)
                out[j] = pa[j] * TLI_BN(masked)(dr[j], yr[j], mask);
        }
    }
}

#undef BN_V
#undef BN_ROWS
#undef BN_GROUP_C
#undef BN_INLINE
