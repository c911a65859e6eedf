/* normalize.c - the normalization layer's loops (see elementwise.h).
 *
 * The per-channel statistics repeat every c floats. Rather than look up
 * channel i % c for each value (a division per value, and an inner loop of
 * c iterations that does not vectorize for c = 3), the kernels lay the
 * statistics out once per call as a pattern of tli_normalize_period(c)
 * floats - a whole number of channel cycles - and run a contiguous,
 * vectorizable loop over each period of the data. Periods are shared out
 * among the threads; every value is computed the same way whatever the
 * thread count. */
#include "elementwise.h"
#include "parallel.h"

/* The shortest pattern: long enough for the inner loop to vectorize well. */
#define MIN_PERIOD 256

size_t tli_normalize_period(size_t c)
{
    if (c == 0)
        return 0;
    return c >= MIN_PERIOD ? c : c * ((MIN_PERIOD + c - 1) / c);
}

/* One stretch of len floats against the pattern's first len values. */
static void forward_run(const float *x, float *y, size_t len, bool plain, float scale, float offset,
                        const float *restrict m, const float *restrict s)
{
    /* With scale 1 and offset 0 the values are (x - mean) / std exactly
     * (x * 1 + 0 would turn -0 into +0). */
    if (plain)
        for (size_t j = 0; j < len; j++)
            y[j] = (x[j] - m[j]) / s[j];
    else
        for (size_t j = 0; j < len; j++)
            y[j] = (x[j] * scale + offset - m[j]) / s[j];
}

void tli_normalize_forward(uint32_t threads, const float *x, float *y, size_t n, size_t c, float scale,
                           float offset, const float *mean, const float *std, float *pattern)
{
    const size_t period = tli_normalize_period(c);
    if (period == 0 || n == 0)
        return;
    float *m = pattern, *s = pattern + period;
    for (size_t j = 0; j < period; j += c)
        for (size_t k = 0; k < c; k++) {
            m[j + k] = mean[k];
            s[j + k] = std[k];
        }
    const bool plain = scale == 1.0f && offset == 0.0f;
    const size_t blocks = n / period, done = blocks * period;
    const int nt = (int)tli_par_threads(threads, 0, (double)n * 2 * sizeof(float));
    TLI_OMP_FOR(nt > 1, "omp parallel for num_threads(nt) schedule(static)", (size_t b = 0; b < blocks; b++), {
        forward_run(x + b * period, y + b * period, period, plain, scale, offset, m, s);
    });
    /* n and the period are multiples of c, so the rest starts at channel 0. */
    forward_run(x + done, y + done, n - done, plain, scale, offset, m, s);
}

static void backward_run(const float *dy, float *dx, size_t len, const float *restrict g)
{
    for (size_t j = 0; j < len; j++)
        dx[j] = dy[j] * g[j];
}

void tli_normalize_backward(uint32_t threads, const float *dy, float *dx, size_t n, size_t c, float scale,
                            const float *std, float *pattern)
{
    const size_t period = tli_normalize_period(c);
    if (period == 0 || n == 0)
        return;
    float *g = pattern;
    for (size_t k = 0; k < c; k++)
        g[k] = scale / std[k];
    for (size_t j = c; j < period; j++)
        g[j] = g[j - c];
    const size_t blocks = n / period, done = blocks * period;
    const int nt = (int)tli_par_threads(threads, 0, (double)n * 2 * sizeof(float));
    TLI_OMP_FOR(nt > 1, "omp parallel for num_threads(nt) schedule(static)", (size_t b = 0; b < blocks; b++), {
        backward_run(dy + b * period, dx + b * period, period, g);
    });
    backward_run(dy + done, dx + done, n - done, g);
}
