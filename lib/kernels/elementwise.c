/* elementwise.c - sums, accumulation, concatenation, dropout (see elementwise.h).
 * Memory-bound loops: split into contiguous blocks per thread, each element
 * computed the same way whatever the thread count. */
#include <string.h>

#include "../rng.h"
#include "elementwise.h"

/* Below this many floats a second thread costs more than it saves. */
#define PAR_MIN 65536

void tli_sum(uint32_t threads, float *y, const float *const *x, size_t nx, size_t n, int clamp)
{
    const int nt = n >= PAR_MIN && threads > 1 ? (int)threads : 1;
    if (nx == 2) { /* a residual join: one loop the compiler vectorizes */
        const float *a = x[0], *b = x[1];
        if (clamp == TLI_CLAMP_NONE) {
#pragma omp parallel for num_threads(nt) schedule(static)
            for (size_t i = 0; i < n; i++)
                y[i] = a[i] + b[i];
        } else {
#pragma omp parallel for num_threads(nt) schedule(static)
            for (size_t i = 0; i < n; i++)
                y[i] = tli_clamp(a[i] + b[i], clamp);
        }
        return;
    }
#pragma omp parallel for num_threads(nt) schedule(static)
    for (size_t i = 0; i < n; i++) {
        float s = x[0][i];
        for (size_t k = 1; k < nx; k++)
            s += x[k][i];
        y[i] = tli_clamp(s, clamp);
    }
}

void tli_accumulate(uint32_t threads, float *y, const float *x, size_t n, bool add)
{
    if (!add) {
        memmove(y, x, n * sizeof(float));
        return;
    }
    const int nt = n >= PAR_MIN && threads > 1 ? (int)threads : 1;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (size_t i = 0; i < n; i++)
        y[i] += x[i];
}

void tli_concat_rows(uint32_t threads, float *y, const float *const *x, const size_t *width, size_t nx,
                     size_t rows)
{
    size_t total = 0;
    for (size_t k = 0; k < nx; k++)
        total += width[k];
    const int nt = rows * total >= PAR_MIN && threads > 1 ? (int)threads : 1;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (size_t r = 0; r < rows; r++) {
        float *dst = y + r * total;
        for (size_t k = 0; k < nx; k++) {
            memcpy(dst, x[k] + r * width[k], width[k] * sizeof(float));
            dst += width[k];
        }
    }
}

void tli_split_rows(uint32_t threads, float *const *dx, const bool *acc, const float *dy, const size_t *width,
                    size_t nx, size_t rows)
{
    size_t total = 0;
    for (size_t k = 0; k < nx; k++)
        total += width[k];
    const int nt = rows * total >= PAR_MIN && threads > 1 ? (int)threads : 1;
    /* Inputs in order, so that an input given twice gets its first part
     * written and its second added, as the engine's flags say. */
    for (size_t k = 0, at = 0; k < nx; at += width[k], k++) {
        if (dx[k] == NULL)
            continue;
        const size_t w = width[k], off = at;
        float *d = dx[k];
        const bool add = acc && acc[k];
#pragma omp parallel for num_threads(nt) schedule(static)
        for (size_t r = 0; r < rows; r++) {
            const float *src = dy + r * total + off;
            if (add)
                for (size_t j = 0; j < w; j++)
                    d[r * w + j] += src[j];
            else
                memcpy(d + r * w, src, w * sizeof(float));
        }
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
    const int nt = n >= PAR_MIN && threads > 1 ? (int)threads : 1;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (size_t i = 0; i < n; i++) {
        const bool keep = (tli_hash64(key, i) >> 32) >= threshold;
        mask[i] = keep;
        y[i] = x[i] * (keep ? scale : 0.0f);
    }
}

void tli_dropout_backward(uint32_t threads, float rate, const uint8_t *mask, const float *dy, float *dx, size_t n)
{
    const float scale = tli_dropout_scale(rate);
    const int nt = n >= PAR_MIN && threads > 1 ? (int)threads : 1;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (size_t i = 0; i < n; i++)
        dx[i] = dy[i] * (mask[i] ? scale : 0.0f);
}
