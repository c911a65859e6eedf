/*
 * elementwise.h - the loops of the graph layers (add, concatenate), of
 * dropout, and of gradients that several layers add into one buffer.
 * Float32, densely packed; results do not depend on `threads`.
 */
#ifndef TLI_ELEMENTWISE_H
#define TLI_ELEMENTWISE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* An activation a loop applies to its output while the value is in a
 * register: none, ReLU max(0, .), ReLU6 min(max(0, .), 6); NaN stays NaN,
 * as in the activation layer (the same bits). A bool true is
 * TLI_CLAMP_RELU. Used by the convolution, batchnorm and add loops. */
enum { TLI_CLAMP_NONE = 0, TLI_CLAMP_RELU = 1, TLI_CLAMP_RELU6 = 2 };

/* The clamp of an activation: TLI_CLAMP_NONE for the others (which are
 * not applied). */
static inline int tli_clamp_of(int is_relu, int is_relu6)
{
    return is_relu ? TLI_CLAMP_RELU : is_relu6 ? TLI_CLAMP_RELU6 : TLI_CLAMP_NONE;
}

/* One value through the clamp (the activation layer's formulas). */
static inline float tli_clamp(float v, int clamp)
{
    if (clamp) {
        v = v < 0.0f ? 0.0f : v;
        if (clamp == TLI_CLAMP_RELU6)
            v = v > 6.0f ? 6.0f : v;
    }
    return v;
}

/* y[i] = clamp(x[0][i] + x[1][i] + ... + x[nx-1][i]) for i < n, summed in
 * input order. y may be x[0]. */
void tli_sum(uint32_t threads, float *y, const float *const *x, size_t nx, size_t n, int clamp);

/* y[i] += x[i] when `add`, y[i] = x[i] otherwise, for i < n. */
void tli_accumulate(uint32_t threads, float *y, const float *x, size_t n, bool add);

/* For k < nx with dx[k] not NULL: dx[k][i] = (or += when add[k]) dy[i]
 * where the ReLU / ReLU6 `clamp` whose output is y let its input through
 * (0 < y[i], and y[i] < 6 for ReLU6), 0 elsewhere - the activation
 * layer's backward - for i < n, in one pass over dy and y. The same dx
 * may be given twice (written, then added). */
void tli_masked_grad(uint32_t threads, float *const *dx, const bool *add, size_t nx, const float *dy, const float *y,
                     size_t n, int clamp);

/* Rows side by side: y[r] = (x[0][r], x[1][r], ...), where row r of x[k]
 * has width[k] floats, for r < rows. */
void tli_concat_rows(uint32_t threads, float *y, const float *const *x, const size_t *width, size_t nx,
                     size_t rows);

/* The adjoint: dx[k][r] = (or += when acc[k]) the width[k] floats of dy[r]
 * that came from x[k]. dx[k] NULL: skipped. */
void tli_split_rows(uint32_t threads, float *const *dx, const bool *acc, const float *dy, const size_t *width,
                    size_t nx, size_t rows);

/* ---- dropout ------------------------------------------------------------- */

/* The factor kept values are scaled by: 1 / (1 - rate) in float. */
float tli_dropout_scale(float rate);

/* Inverted dropout for training, rate in [0, 1): element i < n is kept when
 * the high 32 bits of tli_hash64(key, i) are >= rate * 2^32 (probability
 * 1 - rate, to 2^-32). y[i] = x[i] * s with s = tli_dropout_scale(rate)
 * when kept, 0 otherwise (x[i] * 0: a NaN or infinity stays non-finite, as
 * in PyTorch); mask[i] = 1 when kept, 0 otherwise. Each element depends on
 * (key, i) alone, never on `threads`. */
void tli_dropout_forward(uint32_t threads, uint64_t key, float rate, const float *x, float *y, uint8_t *mask,
                         size_t n);

/* Its adjoint: dx[i] = dy[i] * (mask[i] ? s : 0). dx may be dy. */
void tli_dropout_backward(uint32_t threads, float rate, const uint8_t *mask, const float *dy, float *dx, size_t n);

/* ---- normalization (normalize.c) ---------------------------------------- */

/* Floats of one period of the per-channel pattern the normalization
 * kernels use: the smallest multiple of c that is at least 256, so that
 * the inner loop runs over a long contiguous stretch whatever c is. */
size_t tli_normalize_period(size_t c);

/* y[i] = (x[i] * scale + offset - mean[k]) / std[k], k = i % c, for
 * i < n (n a multiple of c; NHWC rows or flat vectors), each value
 * computed in float in that order: with scale 1 and offset 0 the result
 * is (x - mean) / std bit for bit (tl_dataset_standardize's, torchvision's
 * Normalize). `pattern` holds 2 * tli_normalize_period(c) floats of
 * scratch. The same bits for any `threads`. y may be x. */
void tli_normalize_forward(uint32_t threads, const float *x, float *y, size_t n, size_t c, float scale,
                           float offset, const float *mean, const float *std, float *pattern);

/* Its adjoint: dx[i] = dy[i] * (scale / std[k]). `pattern` holds
 * tli_normalize_period(c) floats of scratch. dx may be dy. */
void tli_normalize_backward(uint32_t threads, const float *dy, float *dx, size_t n, size_t c, float scale,
                            const float *std, float *pattern);

#endif /* TLI_ELEMENTWISE_H */
