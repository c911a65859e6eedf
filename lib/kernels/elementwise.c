/* elementwise.c - sums, accumulation, concatenation, dropout (see elementwise.h).
 * Memory-bound loops: split into contiguous blocks per thread, each element
 * computed the same way whatever the thread count. */
#include <string.h>

#include "../rng.h"
#include "elementwise.h"
#include "parallel.h"

/* Threads for a loop moving `floats` floats (reads and writes). */
static int par(uint32_t threads, double floats)
{
    return (int)tli_par_threads(threads, 0, floats * sizeof(float));
}

void tli_sum(uint32_t threads, float *y, const float *const *x, size_t nx, size_t n, int clamp)
{
    const int nt = par(threads, (double)n * (nx + 1));
    if (nx == 2) { /* a residual join: one loop the compiler vectorizes */
        const float *a = x[0], *b = x[1];
        if (clamp == TLI_CLAMP_NONE)
            TLI_OMP_FOR(nt > 1, "omp parallel for num_threads(nt) schedule(static)", (size_t i = 0; i < n; i++),
                        { y[i] = a[i] + b[i]; });
        else
            TLI_OMP_FOR(nt > 1, "omp parallel for num_threads(nt) schedule(static)", (size_t i = 0; i < n; i++),
                        { y[i] = tli_clamp(a[i] + b[i], clamp); });
        return;
    }
    TLI_OMP_FOR(nt > 1, "omp parallel for num_threads(nt) schedule(static)", (size_t i = 0; i < n; i++), {
        float s = x[0][i];
        for (size_t k = 1; k < nx; k++)
            s += x[k][i];
        y[i] = tli_clamp(s, clamp);
    });
}

void tli_accumulate(uint32_t threads, float *y, const float *x, size_t n, bool add)
{
    if (!add) {
        memmove(y, x, n * sizeof(float));
        return;
    }
    const int nt = par(threads, (double)n * 3);
    TLI_OMP_FOR(nt > 1, "omp parallel for num_threads(nt) schedule(static)", (size_t i = 0; i < n; i++), {
        y[i] += x[i];
    });
}

/* g = dy where the ReLU / ReLU6 with output v let it through, else 0. */
static inline float masked(float d, float v, int clamp)
{
    if (clamp == TLI_CLAMP_RELU6)
        return (v > 0.0f) & (v < 6.0f) ? d : 0.0f;
    return v > 0.0f ? d : 0.0f;
}

/* One pass over dy and y for every output; the cases with constant
 * clamp and `add` flags get loops of their own (branch-free selects the
 * compiler vectorises, as in the activation layer). */
static void masked_block(float *const *dx, const bool *add, size_t nx, const float *dy, const float *y, size_t lo,
                         size_t hi, int clamp)
{
    if (nx == 2 && dx[0] && dx[1] && dx[0] != dx[1] && !add[0] && !add[1]) {
        float *restrict d0 = dx[0], *restrict d1 = dx[1];
        if (clamp == TLI_CLAMP_RELU6) {
            for (size_t i = lo; i < hi; i++)
                d0[i] = d1[i] = masked(dy[i], y[i], TLI_CLAMP_RELU6);
        } else {
            for (size_t i = lo; i < hi; i++)
                d0[i] = d1[i] = masked(dy[i], y[i], TLI_CLAMP_RELU);
        }
        return;
    }
    if (nx == 2 && dx[0] && dx[1] && dx[0] != dx[1] && add[0] != add[1]) {
        float *restrict w = add[0] ? dx[1] : dx[0], *restrict a = add[0] ? dx[0] : dx[1];
        if (clamp == TLI_CLAMP_RELU6) {
            for (size_t i = lo; i < hi; i++) {
                const float g = masked(dy[i], y[i], TLI_CLAMP_RELU6);
                w[i] = g;
                a[i] += g;
            }
        } else {
            for (size_t i = lo; i < hi; i++) {
                const float g = masked(dy[i], y[i], TLI_CLAMP_RELU);
                w[i] = g;
                a[i] += g;
            }
        }
        return;
    }
    for (size_t k = 0; k < nx; k++) {
        float *restrict d = dx[k];
        if (d == NULL)
            continue;
        if (add[k]) {
            for (size_t i = lo; i < hi; i++)
                d[i] += masked(dy[i], y[i], clamp);
        } else {
            for (size_t i = lo; i < hi; i++)
                d[i] = masked(dy[i], y[i], clamp);
        }
    }
}

void tli_masked_grad(uint32_t threads, float *const *dx, const bool *add, size_t nx, const float *dy, const float *y,
                     size_t n, int clamp)
{
    const int nt = par(threads, (double)n * (2 + 2 * nx));
    /* Blocks of 4096 floats, in order: an input given twice (the same dx
     * for two k, the second added) sees its first part written before
     * the second is added, block by block. */
    const size_t block = 4096;
    const long nblocks = (long)((n + block - 1) / block);
    (void)nt;
    TLI_OMP_FOR(nt > 1, "omp parallel for num_threads(nt) schedule(static)", (long b = 0; b < nblocks; b++), {
        const size_t lo = (size_t)b * block, hi = n - lo < block ? n : lo + block;
        masked_block(dx, add, nx, dy, y, lo, hi, clamp);
    });
}

void tli_concat_rows(uint32_t threads, float *y, const float *const *x, const size_t *width, size_t nx,
                     size_t rows)
{
    size_t total = 0;
    for (size_t k = 0; k < nx; k++)
        total += width[k];
    const int nt = par(threads, (double)rows * total * 2);
    TLI_OMP_FOR(nt > 1, "omp parallel for num_threads(nt) schedule(static)", (size_t r = 0; r < rows; r++), {
        float *dst = y + r * total;
        for (size_t k = 0; k < nx; k++) {
            memcpy(dst, x[k] + r * width[k], width[k] * sizeof(float));
            dst += width[k];
        }
    });
}

void tli_split_rows(uint32_t threads, float *const *dx, const bool *acc, const float *dy, const size_t *width,
                    size_t nx, size_t rows)
{
    size_t total = 0;
    for (size_t k = 0; k < nx; k++)
        total += width[k];
    const int nt = par(threads, (double)rows * total * 3);
    /* Inputs in order, so that an input given twice gets its first part
     * written and its second added, as the engine's flags say. */
    for (size_t k = 0, at = 0; k < nx; at += width[k], k++) {
        if (dx[k] == NULL)
            continue;
        const size_t w = width[k], off = at;
        float *d = dx[k];
        const bool add = acc && acc[k];
        TLI_OMP_FOR(nt > 1, "omp parallel for num_threads(nt) schedule(static)", (size_t r = 0; r < rows; r++), {
            const float *src = dy + r * total + off;
            if (add)
                for (size_t j = 0; j < w; j++)
                    d[r * w + j] += src[j];
            else
                memcpy(d + r * w, src, w * sizeof(float));
        });
    }
}

float tli_dropout_scale(float rate)
{
    return 1.0f / (1.0f - rate);
}

void tli_dropout_forward(uint32_t threads, uint64_t key, float rate, const float *x, float *y, uint8_t *mask,
                         size_t n)
{
    /* rate < 1, so the threshold is below 2^32 and rate 0 keeps everything. */
    const uint64_t threshold = (uint64_t)((double)rate * 4294967296.0);
    const float scale = tli_dropout_scale(rate);
    const int nt = par(threads, (double)n * 3);
    TLI_OMP_FOR(nt > 1, "omp parallel for num_threads(nt) schedule(static)", (size_t i = 0; i < n; i++), {
        const bool keep = (tli_hash64(key, i) >> 32) >= threshold;
        mask[i] = keep;
        y[i] = x[i] * (keep ? scale : 0.0f);
    });
}

void tli_dropout_backward(uint32_t threads, float rate, const uint8_t *mask, const float *dy, float *dx, size_t n)
{
    const float scale = tli_dropout_scale(rate);
    const int nt = par(threads, (double)n * 3);
    TLI_OMP_FOR(nt > 1, "omp parallel for num_threads(nt) schedule(static)", (size_t i = 0; i < n; i++), {
        dx[i] = dy[i] * (mask[i] ? scale : 0.0f);
    });
}
