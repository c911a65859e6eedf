/*
 * activation.c - bias + activation fused after a GEMM, and the matching
 * backward pass fused with the bias gradient, so each touches the output
 * matrix once; and the activation layer's forward and backward passes,
 * which share the formulas: one forward (act_row) and, for the
 * activations whose derivative needs the pre-activation z, one backward
 * (act_input_backward_row) for the fused and the layer's.
 */
#include <math.h>
#include <string.h>

#include "kernels.h"
#include "parallel.h"

/* Row-wise softmax, stable: subtract the row's max before exp. */
static void softmax_row(float *v, size_t n)
{
    float mx = v[0];
    for (size_t i = 1; i < n; i++)
        mx = v[i] > mx ? v[i] : mx;
    float sum = 0.0f;
    for (size_t i = 0; i < n; i++) {
        v[i] = expf(v[i] - mx);
        sum += v[i];
    }
    float inv = 1.0f / sum;
    for (size_t i = 0; i < n; i++)
        v[i] *= inv;
}

static inline float relu6f(float v)
{
    /* NaN stays NaN: both comparisons are false. */
    float t = v < 0.0f ? 0.0f : v;
    return t > 6.0f ? 6.0f : t;
}

/* v[i] = act(v[i]) in place (softmax over the row); alpha: leaky_relu's
 * slope. The formulas are PyTorch's (CPU), in its order of operations. */
static void act_row(float *v, size_t n, tl_activation act, float alpha)
{
    switch (act) {
    case TL_ACT_RELU:
        /* NaN stays NaN (as in Keras and PyTorch), so that a non-finite
         * input reaches the loss instead of turning into 0. */
        for (size_t i = 0; i < n; i++)
            v[i] = v[i] < 0.0f ? 0.0f : v[i];
        break;
    case TL_ACT_SIGMOID:
        for (size_t i = 0; i < n; i++)
            v[i] = 1.0f / (1.0f + expf(-v[i]));
        break;
    case TL_ACT_TANH:
        for (size_t i = 0; i < n; i++)
            v[i] = tanhf(v[i]);
        break;
    case TL_ACT_SOFTMAX:
        softmax_row(v, n);
        break;
    case TL_ACT_RELU6:
        for (size_t i = 0; i < n; i++)
            v[i] = relu6f(v[i]);
        break;
    case TL_ACT_LEAKY_RELU:
        for (size_t i = 0; i < n; i++)
            v[i] = v[i] > 0.0f ? v[i] : v[i] * alpha;
        break;
    case TL_ACT_SILU:
        for (size_t i = 0; i < n; i++)
            v[i] = v[i] / (1.0f + expf(-v[i]));
        break;
    case TL_ACT_HARD_SWISH:
        for (size_t i = 0; i < n; i++)
            v[i] = v[i] * relu6f(v[i] + 3.0f) / 6.0f;
        break;
    case TL_ACT_HARD_SIGMOID:
        for (size_t i = 0; i < n; i++)
            v[i] = relu6f(v[i] + 3.0f) / 6.0f;
        break;
    case TL_ACT_LINEAR:
        break;
    }
}

static void bias_act_row(float *v, const float *bias, size_t n, tl_activation act, float alpha)
{
    if (bias)
        for (size_t i = 0; i < n; i++)
            v[i] += bias[i];
    act_row(v, n, act, alpha);
}

bool tli_act_needs_input(tl_activation act)
{
    return act == TL_ACT_LEAKY_RELU || act == TL_ACT_SILU || act == TL_ACT_HARD_SWISH;
}

void tli_bias_act_forward(uint32_t threads, float *y, const float *bias, size_t rows, size_t cols,
                          tl_activation act, float alpha)
{
    if (bias == NULL && act == TL_ACT_LINEAR)
        return;
    threads = tli_par_threads(threads, 0, (double)rows * cols * 2 * sizeof(float));
    TLI_OMP_FOR(threads > 1, "omp parallel for num_threads(threads) schedule(static)", (long r = 0; r < (long)rows; r++),
                { bias_act_row(y + (size_t)r * cols, bias, cols, act, alpha); });
}

void tli_bias_act_forward_keep(uint32_t threads, float *z, const float *bias, float *y, size_t rows, size_t cols,
                               tl_activation act, float alpha)
{
    threads = tli_par_threads(threads, 0, (double)rows * cols * 3 * sizeof(float));
    TLI_OMP_FOR(threads > 1, "omp parallel for num_threads(threads) schedule(static)",
                (long r = 0; r < (long)rows; r++), {
        float *zr = z + (size_t)r * cols, *v = y + (size_t)r * cols;
        if (bias)
            for (size_t i = 0; i < cols; i++)
                zr[i] += bias[i];
        memcpy(v, zr, sizeof(float) * cols);
        act_row(v, cols, act, alpha);
    });
}

static void act_input_backward_row(tl_activation act, float alpha, const float *x, const float *y, const float *dy,
                                   float *dx, size_t n)
{
    switch (act) {
    case TL_ACT_LINEAR:
        if (dx != dy)
            memcpy(dx, dy, sizeof(float) * n);
        break;
    case TL_ACT_RELU:
        /* dy read unconditionally: branch-free selects the compiler
         * vectorizes (a branch on the sign mispredicts half the time) */
        for (size_t i = 0; i < n; i++) {
            const float d = dy[i];
            dx[i] = x[i] > 0.0f ? d : 0.0f;
        }
        break;
    case TL_ACT_SIGMOID:
        for (size_t i = 0; i < n; i++)
            dx[i] = dy[i] * (y[i] * (1.0f - y[i]));
        break;
    case TL_ACT_TANH:
        for (size_t i = 0; i < n; i++)
            dx[i] = dy[i] * (1.0f - y[i] * y[i]);
        break;
    case TL_ACT_SOFTMAX: {
        float dot = 0.0f;
        for (size_t i = 0; i < n; i++)
            dot += dy[i] * y[i];
        for (size_t i = 0; i < n; i++)
            dx[i] = y[i] * (dy[i] - dot);
        break;
    }
    case TL_ACT_RELU6:
        for (size_t i = 0; i < n; i++) {
            const float d = dy[i], v = x[i];
            dx[i] = (v > 0.0f) & (v < 6.0f) ? d : 0.0f;
        }
        break;
    case TL_ACT_LEAKY_RELU:
        for (size_t i = 0; i < n; i++) {
            const float d = dy[i];
            dx[i] = x[i] > 0.0f ? d : d * alpha;
        }
        break;
    case TL_ACT_SILU:
        for (size_t i = 0; i < n; i++) {
            float s = 1.0f / (1.0f + expf(-x[i]));
            dx[i] = dy[i] * s * (1.0f + x[i] * (1.0f - s));
        }
        break;
    case TL_ACT_HARD_SWISH:
        for (size_t i = 0; i < n; i++)
            dx[i] = x[i] < -3.0f ? 0.0f : x[i] <= 3.0f ? dy[i] * (x[i] / 3.0f + 0.5f) : dy[i];
        break;
    case TL_ACT_HARD_SIGMOID:
        for (size_t i = 0; i < n; i++)
            dx[i] = x[i] > -3.0f && x[i] < 3.0f ? dy[i] * (1.0f / 6.0f) : 0.0f;
        break;
    }
}

/* dy := dL/dz in place: from the output y, or for the activations that
 * need it (tli_act_needs_input) from the pre-activation z, with the
 * activation layer's formulas. */
static void act_backward_row(tl_activation act, float alpha, const float *z, const float *y, float *dy, size_t n)
{
    switch (act) {
    case TL_ACT_RELU:
        for (size_t i = 0; i < n; i++) {
            const float d = dy[i];
            dy[i] = y[i] > 0.0f ? d : 0.0f;
        }
        break;
    case TL_ACT_SIGMOID:
        for (size_t i = 0; i < n; i++)
            dy[i] *= y[i] * (1.0f - y[i]);
        break;
    case TL_ACT_TANH:
        for (size_t i = 0; i < n; i++)
            dy[i] *= 1.0f - y[i] * y[i];
        break;
    case TL_ACT_SOFTMAX: {
        /* dz_i = y_i * (dy_i - sum_j dy_j y_j) */
        float dot = 0.0f;
        for (size_t i = 0; i < n; i++)
            dot += dy[i] * y[i];
        for (size_t i = 0; i < n; i++)
            dy[i] = y[i] * (dy[i] - dot);
        break;
    }
    case TL_ACT_RELU6:
        for (size_t i = 0; i < n; i++) {
            const float d = dy[i], v = y[i];
            dy[i] = (v > 0.0f) & (v < 6.0f) ? d : 0.0f;
        }
        break;
    case TL_ACT_HARD_SIGMOID:
        for (size_t i = 0; i < n; i++)
            dy[i] = y[i] > 0.0f && y[i] < 1.0f ? dy[i] * (1.0f / 6.0f) : 0.0f;
        break;
    case TL_ACT_LEAKY_RELU:
    case TL_ACT_SILU:
    case TL_ACT_HARD_SWISH:
        act_input_backward_row(act, alpha, z, y, dy, dy, n);
        break;
    case TL_ACT_LINEAR:
        break;
    }
}

/* Bias sums use a fixed split of the rows into `blocks` whose partial sums
 * are added in block order: the result depends on the shape only, never
 * on the thread count or scheduling (the blocks are the same for one
 * thread). Partial sums live on the stack, so very wide layers fall back
 * to one block. */
#define TLI_PARTIAL_MAX 8192
#define TLI_BIAS_BLOCKS 4

void tli_act_backward(uint32_t threads, tl_activation act, float alpha, const float *z, const float *y, float *dy,
                      size_t rows, size_t cols, float *dbias)
{
    float partials[TLI_PARTIAL_MAX];
    size_t blocks = TLI_BIAS_BLOCKS;
    threads = tli_par_threads(threads, 0, (double)rows * cols * 3 * sizeof(float));
    if (blocks > rows)
        blocks = rows ? rows : 1;
    if (dbias && blocks * cols > TLI_PARTIAL_MAX)
        blocks = 1;
    if (dbias == NULL) {
        if (act == TL_ACT_LINEAR)
            return;
        TLI_OMP_FOR(threads > 1, "omp parallel for num_threads(threads) schedule(static)",
                    (long r = 0; r < (long)rows; r++), {
            act_backward_row(act, alpha, z ? z + (size_t)r * cols : NULL, y + (size_t)r * cols, dy + (size_t)r * cols,
                             cols);
        });
        return;
    }
    if (blocks == 1) {
        memset(dbias, 0, sizeof(float) * cols);
        for (size_t r = 0; r < rows; r++) {
            float *d = dy + r * cols;
            act_backward_row(act, alpha, z ? z + r * cols : NULL, y + r * cols, d, cols);
            for (size_t c = 0; c < cols; c++)
                dbias[c] += d[c];
        }
        return;
    }
    TLI_OMP_FOR(threads > 1, "omp parallel for num_threads(threads) schedule(static, 1)",
                (long b = 0; b < (long)blocks; b++), {
        size_t lo = rows * (size_t)b / blocks, hi = rows * ((size_t)b + 1) / blocks;
        float *p = partials + (size_t)b * cols;
        memset(p, 0, sizeof(float) * cols);
        for (size_t r = lo; r < hi; r++) {
            float *d = dy + r * cols;
            act_backward_row(act, alpha, z ? z + r * cols : NULL, y + r * cols, d, cols);
            for (size_t c = 0; c < cols; c++)
                p[c] += d[c];
        }
    });
    memcpy(dbias, partials, sizeof(float) * cols);
    for (size_t b = 1; b < blocks; b++)
        for (size_t c = 0; c < cols; c++)
            dbias[c] += partials[b * cols + c];
}

/* ---- the activation layer ------------------------------------------------ */

/* Element-wise activations run over the whole tensor in `threads` chunks
 * of whole cache lines rather than row by row: NHWC rows are the channels,
 * often only 16 wide, and a call per row costs more than its work. Only
 * softmax needs its rows. */
static void flat_chunks(uint32_t threads, size_t n, size_t *chunk, long *nchunks)
{
    size_t t = threads ? threads : 1;
    size_t c = (n + t - 1) / t;
    c = (c + 15) & ~(size_t)15;
    if (c == 0)
        c = 16;
    *chunk = c;
    *nchunks = (long)((n + c - 1) / c);
}

void tli_act_forward(uint32_t threads, tl_activation act, float alpha, const float *x, float *y, size_t rows,
                     size_t cols)
{
    threads = tli_par_threads(threads, 0, (double)rows * cols * 2 * sizeof(float));
    if (act != TL_ACT_SOFTMAX) {
        size_t n = rows * cols, chunk;
        long nchunks;
        flat_chunks(threads, n, &chunk, &nchunks);
        TLI_OMP_FOR(threads > 1, "omp parallel for num_threads(threads) schedule(static)",
                    (long b = 0; b < nchunks; b++), {
            size_t lo = (size_t)b * chunk, hi = n - lo < chunk ? n : lo + chunk;
            /* copy and activate a block at a time, while it is in L1 */
            for (size_t i = lo; i < hi; i += 2048) {
                size_t len = hi - i < 2048 ? hi - i : 2048;
                if (y != x)
                    memcpy(y + i, x + i, sizeof(float) * len);
                act_row(y + i, len, act, alpha);
            }
        });
        return;
    }
    TLI_OMP_FOR(threads > 1, "omp parallel for num_threads(threads) schedule(static)",
                (long r = 0; r < (long)rows; r++), {
        float *v = y + (size_t)r * cols;
        if (v != x + (size_t)r * cols)
            memcpy(v, x + (size_t)r * cols, sizeof(float) * cols);
        act_row(v, cols, act, alpha);
    });
}

void tli_act_input_backward(uint32_t threads, tl_activation act, float alpha, const float *x, const float *y,
                            const float *dy, float *dx, size_t rows, size_t cols)
{
    threads = tli_par_threads(threads, 0, (double)rows * cols * 4 * sizeof(float));
    if (act != TL_ACT_SOFTMAX) {
        size_t n = rows * cols, chunk;
        long nchunks;
        flat_chunks(threads, n, &chunk, &nchunks);
        TLI_OMP_FOR(threads > 1, "omp parallel for num_threads(threads) schedule(static)",
                    (long b = 0; b < nchunks; b++), {
            size_t lo = (size_t)b * chunk, len = n - lo < chunk ? n - lo : chunk;
            act_input_backward_row(act, alpha, x + lo, y + lo, dy + lo, dx + lo, len);
        });
        return;
    }
    TLI_OMP_FOR(threads > 1, "omp parallel for num_threads(threads) schedule(static)",
                (long r = 0; r < (long)rows; r++), {
        const size_t o = (size_t)r * cols;
        act_input_backward_row(act, alpha, x + o, y + o, dy + o, dx + o, cols);
    });
}
