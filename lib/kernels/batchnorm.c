/* batchnorm.c - batch normalization's loops (see batchnorm.h).
 *
 * The loops over rows are in batchnorm_impl.h, built here for any CPU and
 * in batchnorm_avx512.c for AVX-512 (the same bits); this file runs the
 * threads over them. The per-channel sums go through `partial`: chunk k
 * of the rows is summed (in double, row by row) into row k of a K x c
 * block by whichever thread gets the chunk, then the chunks are added in
 * order into row 0. The chunks are fixed by the number of rows alone, so
 * the sums do not depend on the thread count. */
#include <math.h>
#include <string.h>

#include "batchnorm.h"
#include "batchnorm_kernels.h"
#include "elementwise.h"
#include "kernels.h"
#include "parallel.h"

#define TLI_BN(name) tli_bn_##name##_portable
#include "batchnorm_impl.h"
#undef TLI_BN

/* A chunk has at least CHUNK_MIN rows; there are at most CHUNKS_MAX.
 * Each chunk costs the zeroing of its two rows of c sums and their
 * addition into row 0: with 16-row chunks that was nearly as much traffic
 * again as the chunk's own data (MobileNetV2's 4096-row layers); 256 rows
 * still give a 1024-row layer four chunks to split over threads. */
#define CHUNK_MIN 256
#define CHUNKS_MAX 256

/* One build of the loops. */
typedef struct bn_loops {
    void (*stats)(const float *x, size_t lo, size_t hi, size_t c, const float *shift, double *s1, double *s2);
    void (*normalize)(const float *x, size_t lo, size_t hi, size_t c, const float *mean, const float *scale,
                      const float *shift, const float *res, float *y, int clamp);
    void (*grad_sums)(const float *x, const float *dy, int mask, size_t lo, size_t hi, size_t c, const float *mean,
                      const float *inv_std, const float *scale, const float *shift, double *sdy, double *sdx);
    void (*input_grad)(const float *x, const float *dy, int mask, size_t lo, size_t hi, size_t c, const float *mean,
                       const float *shift, const float *a, const float *q, const float *b, float *dx);
    void (*scale)(const float *dy, const float *y, int mask, size_t lo, size_t hi, size_t c, const float *a,
                  float *dx);
} bn_loops;

static const bn_loops portable_loops = {tli_bn_stats_portable, tli_bn_normalize_portable,
                                        tli_bn_grad_sums_portable, tli_bn_input_grad_portable,
                                        tli_bn_scale_portable};
#ifdef TLI_HAVE_AVX512
static const bn_loops avx512_loops = {tli_bn_stats_avx512, tli_bn_normalize_avx512, tli_bn_grad_sums_avx512,
                                      tli_bn_input_grad_avx512, tli_bn_scale_avx512};
#endif

/* Tests: when set, the portable loops even on an AVX-512 CPU. */
static bool force_portable;

void tli_bn_force_portable(bool on)
{
    force_portable = on;
}

static const bn_loops *loops(void)
{
#ifdef TLI_HAVE_AVX512
    if (!force_portable && tli_cpu_has_avx512())
        return &avx512_loops;
#endif
    return &portable_loops;
}

static size_t nchunks(size_t rows)
{
    size_t k = (rows + CHUNK_MIN - 1) / CHUNK_MIN;
    return k == 0 ? 1 : k < CHUNKS_MAX ? k : CHUNKS_MAX;
}

size_t tli_bn_partial_count(size_t rows, size_t c)
{
    /* Chunk sums of two quantities, and room to pack both for a sync. */
    return 2 * nchunks(rows) * c + 2 * c;
}

/* Threads for one pass: each reads (and writes) about two floats per value. */
static int nthreads(uint32_t threads, size_t rows, size_t c)
{
    return (int)tli_par_threads(threads, 0, (double)rows * c * 2 * sizeof(float));
}

/* Row k of `p` (K x c) += row k + 1, ... : the chunks' sums in chunk order,
 * into row 0. */
static void add_chunks(double *restrict p, size_t k_count, size_t c)
{
    for (size_t k = 1; k < k_count; k++) {
        const double *restrict q = p + k * c;
        for (size_t j = 0; j < c; j++)
            p[j] += q[j];
    }
}

/* Rows of thread `t` of `nt` in the row-parallel passes: contiguous
 * blocks (each element is computed alike whoever computes it). */
static void rows_of(int t, int nt, size_t rows, size_t *lo, size_t *hi)
{
    *lo = rows * (size_t)t / (size_t)nt;
    *hi = rows * ((size_t)t + 1) / (size_t)nt;
}

/* ---- training forward ------------------------------------------------------ */

/* s1[k][j], s2[k][j] = sums of d and d * d over chunk k's rows, with
 * d = x - shift[j]. */
static void chunk_stats(const bn_loops *L, int nt, const float *x, const float *shift, size_t rows, size_t c,
                        size_t k_count, double *s1, double *s2)
{
    (void)nt;
    TLI_OMP_FOR(nt > 1, "omp parallel for num_threads(nt) schedule(static)", (long k = 0; k < (long)k_count; k++), {
        const size_t lo = rows * (size_t)k / k_count, hi = rows * ((size_t)k + 1) / k_count;
        L->stats(x, lo, hi, c, shift, s1 + (size_t)k * c, s2 + (size_t)k * c);
    });
}

static void normalize(const bn_loops *L, int nt, const float *x, const float *mean, const float *scale,
                      const float *shift, const float *res, size_t rows, size_t c, float *y, int clamp)
{
    (void)nt;
    TLI_OMP_FOR(nt > 1, "omp parallel for num_threads(nt) schedule(static)", (int t = 0; t < nt; t++), {
        size_t lo, hi;
        rows_of(t, nt, rows, &lo, &hi);
        L->normalize(x, lo, hi, c, mean, scale, shift, res, y, clamp);
    });
}

void tli_bn_forward_train(uint32_t threads, const tli_bn *bn, const float *x, float *y)
{
    const size_t rows = bn->rows, c = bn->c, k_count = nchunks(rows);
    const int nt = nthreads(threads, rows, c);
    const bn_loops *L = loops();
    double *s1 = bn->partial, *s2 = bn->partial + k_count * c;
    double n = (double)rows;
    /* One pass: the sums of d = x - shift and of d * d, with the shift a
     * value of the channel (the first row's), so that the variance
     * S2 / n - (S1 / n)^2 does not cancel when the mean is large against
     * the spread. Each d and d * d is exact or nearly so in double. */
    float *shift = bn->t2;
    memcpy(shift, x, c * sizeof *shift);
    if (bn->sync) {
        /* Synchronized: every process has its own first row, so first the
         * global mean (sums of x), then the sums around it. */
        chunk_stats(L, nt, x, shift, rows, c, k_count, s1, s2);
        add_chunks(s1, k_count, c);
        for (size_t j = 0; j < c; j++)
            s1[j] += n * (double)shift[j];
        s1[c] = n; /* room for it: s2's first chunk is free until the next pass */
        bn->sync->sum(bn->sync->ctx, s1, c + 1);
        n = s1[c];
        for (size_t j = 0; j < c; j++)
            shift[j] = (float)(s1[j] / n);
    }
    chunk_stats(L, nt, x, shift, rows, c, k_count, s1, s2);
    add_chunks(s1, k_count, c);
    add_chunks(s2, k_count, c);
    if (bn->sync) {
        double *v = bn->partial + 2 * k_count * c;
        memcpy(v, s1, c * sizeof *v);
        memcpy(v + c, s2, c * sizeof *v);
        bn->sync->sum(bn->sync->ctx, v, 2 * c);
        memcpy(s1, v, c * sizeof *v);
        memcpy(s2, v + c, c * sizeof *v);
    }
    bool finite = true;
    for (size_t j = 0; j < c; j++) {
        const double d = s1[j] / n, mean = (double)shift[j] + d;
        double var = s2[j] / n - d * d;
        var = var > 0.0 ? var : var == var ? 0.0 : var; /* rounding below 0; NaN stays */
        s1[j] = mean;
        s2[j] = var;
        bn->mean[j] = (float)mean;
        bn->inv_std[j] = (float)(1.0 / sqrt(var + (double)bn->epsilon));
        bn->t0[j] = bn->gamma ? bn->gamma[j] * bn->inv_std[j] : bn->inv_std[j];
        bn->t1[j] = bn->beta ? bn->beta[j] : 0.0f;
        finite = finite && isfinite(mean) && isfinite(var);
    }
    if (finite) {
        const double m = (double)bn->momentum, unbias = n > 1.0 ? n / (n - 1.0) : 1.0;
        for (size_t j = 0; j < c; j++) {
            bn->moving_mean[j] = (float)(m * bn->moving_mean[j] + (1.0 - m) * s1[j]);
            bn->moving_var[j] = (float)(m * bn->moving_var[j] + (1.0 - m) * (s2[j] * unbias));
        }
    }
    normalize(L, nt, x, bn->mean, bn->t0, bn->t1, bn->residual, rows, c, y, bn->clamp);
}

/* ---- inference forward ----------------------------------------------------- */

/* t0 = gamma / sqrt(moving_var + eps), the scale of inference mode. */
static void infer_scale(const tli_bn *bn)
{
    for (size_t j = 0; j < bn->c; j++) {
        float inv = (float)(1.0 / sqrt((double)bn->moving_var[j] + (double)bn->epsilon));
        bn->t0[j] = bn->gamma ? bn->gamma[j] * inv : inv;
    }
}

void tli_bn_forward_infer(uint32_t threads, const tli_bn *bn, const float *x, float *y)
{
    infer_scale(bn);
    for (size_t j = 0; j < bn->c; j++)
        bn->t1[j] = bn->beta ? bn->beta[j] : 0.0f;
    normalize(loops(), nthreads(threads, bn->rows, bn->c), x, bn->moving_mean, bn->t0, bn->t1, bn->residual,
              bn->rows, bn->c, y, bn->clamp);
}

void tli_bn_infer_affine(const tli_bn *bn, float *scale, float *shift)
{
    infer_scale(bn);
    for (size_t j = 0; j < bn->c; j++) {
        scale[j] = bn->t0[j];
        shift[j] = (bn->beta ? bn->beta[j] : 0.0f) - bn->moving_mean[j] * bn->t0[j];
    }
}

/* ---- backward -------------------------------------------------------------- */

/* The activation derivative the backward passes apply to dy first. */
static int backward_mask(const tli_bn *bn)
{
    return bn->act_y ? bn->clamp : TLI_CLAMP_NONE;
}

void tli_bn_backward_train(uint32_t threads, const tli_bn *bn, const float *x, const float *dy, float *dx,
                           float *dgamma, float *dbeta)
{
    const size_t rows = bn->rows, c = bn->c, k_count = nchunks(rows);
    const int nt = nthreads(threads, rows, c), mask = backward_mask(bn);
    const bn_loops *L = loops();
    double *sdy = bn->partial, *sdx = bn->partial + k_count * c;
    /* a = gamma * inv_std, the forward's scale, first: the mask is
     * recomputed from x with it (batchnorm_impl.h). The product of two
     * floats is exact in double, so (float)a is the forward's float
     * product, bit for bit. */
    for (size_t j = 0; j < c; j++)
        bn->t0[j] = (float)((bn->gamma ? (double)bn->gamma[j] : 1.0) * (double)bn->inv_std[j]);
    (void)nt;
    TLI_OMP_FOR(nt > 1, "omp parallel for num_threads(nt) schedule(static)", (long k = 0; k < (long)k_count; k++), {
        const size_t lo = rows * (size_t)k / k_count, hi = rows * ((size_t)k + 1) / k_count;
        L->grad_sums(x, dy, mask, lo, hi, c, bn->mean, bn->inv_std, bn->t0, bn->beta, sdy + (size_t)k * c,
                     sdx + (size_t)k * c);
    });
    add_chunks(sdy, k_count, c);
    add_chunks(sdx, k_count, c);
    if (dgamma)
        for (size_t j = 0; j < c; j++)
            dgamma[j] = (float)sdx[j];
    if (dbeta)
        for (size_t j = 0; j < c; j++)
            dbeta[j] = (float)sdy[j];
    /* The parameter gradients are this process's own (the exchange adds
     * them up); dx needs the global batch's sums. This process's dy is
     * that of its mean loss: times share = rows / global rows it is the
     * global mean loss's, and dx goes back into this process's units by
     * dividing the sums' terms by the share. Every process makes this
     * call, also without dx, so that the sums stay matched. */
    double n = (double)rows, unshare = 1.0;
    if (bn->sync) {
        const double share = bn->sync->share;
        /* sdy and sdx are adjacent: [sdy (k_count * c), sdx ...]; pack. */
        double *v = bn->partial + 2 * k_count * c;
        for (size_t j = 0; j < c; j++) {
            v[j] = sdy[j] * share;
            v[c + j] = sdx[j] * share;
        }
        bn->sync->sum(bn->sync->ctx, v, 2 * c);
        memcpy(sdy, v, c * sizeof *v);
        memcpy(sdx, v + c, c * sizeof *v);
        n = (double)rows / share;
        unshare = 1.0 / share;
    }
    if (dx == NULL)
        return;
    /* dx = a * dy - (x - mean) * q - b with, per channel,
     * a = gamma * inv_std, b = a * sum(dy) / n, q = a * sum(dy * xhat) / n * inv_std. */
    for (size_t j = 0; j < c; j++) {
        double a = (bn->gamma ? (double)bn->gamma[j] : 1.0) * (double)bn->inv_std[j];
        bn->t0[j] = (float)a;
        bn->t1[j] = (float)(a * sdx[j] / n * (double)bn->inv_std[j] * unshare);
        bn->t2[j] = (float)(a * sdy[j] / n * unshare);
    }
    TLI_OMP_FOR(nt > 1, "omp parallel for num_threads(nt) schedule(static)", (int t = 0; t < nt; t++), {
        size_t lo, hi;
        rows_of(t, nt, rows, &lo, &hi);
        L->input_grad(x, dy, mask, lo, hi, c, bn->mean, bn->beta, bn->t0, bn->t1, bn->t2, dx);
    });
}

void tli_bn_backward_infer(uint32_t threads, const tli_bn *bn, const float *dy, float *dx)
{
    const size_t rows = bn->rows, c = bn->c;
    const int nt = nthreads(threads, rows, c), mask = backward_mask(bn);
    const bn_loops *L = loops();
    infer_scale(bn);
    (void)nt;
    TLI_OMP_FOR(nt > 1, "omp parallel for num_threads(nt) schedule(static)", (int t = 0; t < nt; t++), {
        size_t lo, hi;
        rows_of(t, nt, rows, &lo, &hi);
        L->scale(dy, bn->act_y, mask, lo, hi, c, bn->t0, dx);
    });
}
