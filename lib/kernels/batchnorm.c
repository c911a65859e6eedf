/* batchnorm.c - batch normalization's loops (see batchnorm.h).
 *
 * Channels are innermost, so every loop runs over a row's c channels with
 * restrict-qualified per-channel arrays, which the compiler vectorises.
 * The per-channel sums go through `partial`: chunk k of the rows is summed
 * (in double, row by row) into row k of a K x c block by whichever thread
 * gets the chunk, then the chunks are added in order into row 0. The
 * chunks are fixed by the number of rows alone, so the sums do not depend
 * on the thread count. */
#include <math.h>
#include <string.h>

#include "batchnorm.h"
#include "elementwise.h"

/* A chunk has at least CHUNK_MIN rows; there are at most CHUNKS_MAX. */
#define CHUNK_MIN 16
#define CHUNKS_MAX 256
/* Below this many floats a second thread costs more than it saves. */
#define PAR_MIN 32768

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

static int nthreads(uint32_t threads, size_t rows, size_t c)
{
    return threads > 1 && rows * c >= PAR_MIN ? (int)threads : 1;
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

/* ---- training forward ------------------------------------------------------ */

/* p[k][j] = sum of x[r][j] over the rows r of chunk k. */
static void chunk_sum(int nt, const float *x, size_t rows, size_t c, size_t k_count, double *p)
{
    (void)nt;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (long k = 0; k < (long)k_count; k++) {
        double *restrict pk = p + (size_t)k * c;
        const size_t lo = rows * (size_t)k / k_count, hi = rows * ((size_t)k + 1) / k_count;
        memset(pk, 0, c * sizeof *pk);
        for (size_t r = lo; r < hi; r++) {
            const float *restrict xr = x + r * c;
            for (size_t j = 0; j < c; j++)
                pk[j] += (double)xr[j];
        }
    }
}

/* p[k][j] = sum of (x[r][j] - mean[j])^2 over the rows r of chunk k. */
static void chunk_sqdev(int nt, const float *x, const double *mean, size_t rows, size_t c, size_t k_count, double *p)
{
    (void)nt;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (long k = 0; k < (long)k_count; k++) {
        double *restrict pk = p + (size_t)k * c;
        const double *restrict mu = mean;
        const size_t lo = rows * (size_t)k / k_count, hi = rows * ((size_t)k + 1) / k_count;
        memset(pk, 0, c * sizeof *pk);
        for (size_t r = lo; r < hi; r++) {
            const float *restrict xr = x + r * c;
            for (size_t j = 0; j < c; j++) {
                double d = (double)xr[j] - mu[j];
                pk[j] += d * d;
            }
        }
    }
}

/* y[r][j] = clamp((x[r][j] - mean[j]) * scale[j] + shift[j]). */
static void normalize(int nt, const float *x, const float *mean, const float *scale, const float *shift, size_t rows,
                      size_t c, float *y, int clamp)
{
    (void)nt;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (long r = 0; r < (long)rows; r++) {
        const float *restrict xr = x + (size_t)r * c;
        float *restrict yr = y + (size_t)r * c;
        const float *restrict mu = mean, *restrict s = scale, *restrict b = shift;
        if (clamp == TLI_CLAMP_NONE) {
            for (size_t j = 0; j < c; j++)
                yr[j] = (xr[j] - mu[j]) * s[j] + b[j];
        } else {
            for (size_t j = 0; j < c; j++)
                yr[j] = tli_clamp((xr[j] - mu[j]) * s[j] + b[j], clamp);
        }
    }
}

void tli_bn_forward_train(uint32_t threads, const tli_bn *bn, const float *x, float *y)
{
    const size_t rows = bn->rows, c = bn->c, k_count = nchunks(rows);
    const int nt = nthreads(threads, rows, c);
    double *sum = bn->partial, *sq = bn->partial + k_count * c;
    /* Two passes (mean, then squared deviations): no cancellation when the
     * mean is large against the spread. */
    chunk_sum(nt, x, rows, c, k_count, sum);
    add_chunks(sum, k_count, c);
    /* Synchronized: the sums of every process, the row count after them
     * (room for it: sq's first chunk is free until chunk_sqdev). */
    double n = (double)rows;
    if (bn->sync) {
        sum[c] = n;
        bn->sync->sum(bn->sync->ctx, sum, c + 1);
        n = sum[c];
    }
    for (size_t j = 0; j < c; j++)
        sum[j] /= n; /* now the mean */
    chunk_sqdev(nt, x, sum, rows, c, k_count, sq);
    add_chunks(sq, k_count, c);
    if (bn->sync)
        bn->sync->sum(bn->sync->ctx, sq, c);
    bool finite = true;
    for (size_t j = 0; j < c; j++) {
        double var = sq[j] / n;
        sq[j] = var;
        bn->mean[j] = (float)sum[j];
        bn->inv_std[j] = (float)(1.0 / sqrt(var + (double)bn->epsilon));
        bn->t0[j] = bn->gamma ? bn->gamma[j] * bn->inv_std[j] : bn->inv_std[j];
        bn->t1[j] = bn->beta ? bn->beta[j] : 0.0f;
        finite = finite && isfinite(sum[j]) && isfinite(var);
    }
    if (finite) {
        const double m = (double)bn->momentum, unbias = n > 1.0 ? n / (n - 1.0) : 1.0;
        for (size_t j = 0; j < c; j++) {
            bn->moving_mean[j] = (float)(m * bn->moving_mean[j] + (1.0 - m) * sum[j]);
            bn->moving_var[j] = (float)(m * bn->moving_var[j] + (1.0 - m) * (sq[j] * unbias));
        }
    }
    normalize(nt, x, bn->mean, bn->t0, bn->t1, rows, c, y, bn->clamp);
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
    normalize(nthreads(threads, bn->rows, bn->c), x, bn->moving_mean, bn->t0, bn->t1, bn->rows, bn->c, y,
              bn->clamp);
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

/* Over the rows of each chunk k: sdy[k][j] = sum of dy, sdx[k][j] = sum of
 * dy * xhat with xhat = (x - mean) * inv_std. */
static void chunk_grad_sums(int nt, const tli_bn *bn, const float *x, const float *dy, size_t k_count, double *sdy,
                            double *sdx)
{
    const size_t rows = bn->rows, c = bn->c;
    (void)nt;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (long k = 0; k < (long)k_count; k++) {
        double *restrict a = sdy + (size_t)k * c, *restrict b = sdx + (size_t)k * c;
        const float *restrict mu = bn->mean, *restrict is = bn->inv_std;
        const size_t lo = rows * (size_t)k / k_count, hi = rows * ((size_t)k + 1) / k_count;
        memset(a, 0, c * sizeof *a);
        memset(b, 0, c * sizeof *b);
        for (size_t r = lo; r < hi; r++) {
            const float *restrict xr = x + r * c, *restrict dr = dy + r * c;
            for (size_t j = 0; j < c; j++) {
                float xh = (xr[j] - mu[j]) * is[j];
                a[j] += (double)dr[j];
                b[j] += (double)dr[j] * (double)xh;
            }
        }
    }
}

void tli_bn_backward_train(uint32_t threads, const tli_bn *bn, const float *x, const float *dy, float *dx,
                           float *dgamma, float *dbeta)
{
    const size_t rows = bn->rows, c = bn->c, k_count = nchunks(rows);
    const int nt = nthreads(threads, rows, c);
    double *sdy = bn->partial, *sdx = bn->partial + k_count * c;
    chunk_grad_sums(nt, bn, x, dy, k_count, sdy, sdx);
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
    (void)nt;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (long r = 0; r < (long)rows; r++) {
        const float *restrict xr = x + (size_t)r * c, *restrict dr = dy + (size_t)r * c;
        float *restrict out = dx + (size_t)r * c;
        const float *restrict mu = bn->mean, *restrict a = bn->t0, *restrict q = bn->t1, *restrict b = bn->t2;
        for (size_t j = 0; j < c; j++)
            out[j] = a[j] * dr[j] - (xr[j] - mu[j]) * q[j] - b[j];
    }
}

void tli_bn_backward_infer(uint32_t threads, const tli_bn *bn, const float *dy, float *dx)
{
    const size_t rows = bn->rows, c = bn->c;
    const int nt = nthreads(threads, rows, c);
    infer_scale(bn);
    (void)nt;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (long r = 0; r < (long)rows; r++) {
        const float *restrict dr = dy + (size_t)r * c;
        float *restrict out = dx + (size_t)r * c;
        const float *restrict a = bn->t0;
        for (size_t j = 0; j < c; j++)
            out[j] = a[j] * dr[j];
    }
}
