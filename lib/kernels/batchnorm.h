/*
 * batchnorm.h - the loops of batch normalization over the channels of
 * `rows` positions of `c` channels each (NHWC: rows = batch * h * w, the
 * channel innermost; a flat (units) input: rows = batch, c = units).
 *
 * Per-channel sums (mean, variance, the gradients' sums) are taken in
 * fixed chunks of rows, each summed in double by one thread in a fixed order
 * (groups of four rows, batchnorm_impl.h)
 * (the statistics in one pass: sums of x - shift and its square, with
 * shift a value of the channel),
 * then the chunks added in chunk order: the chunking depends on `rows`
 * only, so results are bit-identical for any thread count. The other
 * passes compute each element the same way whatever the thread count.
 * Nothing here allocates: the caller passes `partial`, at least
 * tli_bn_partial_count(rows, c) doubles.
 */
#ifndef TLI_BATCHNORM_H
#define TLI_BATCHNORM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Doubles of `partial` the functions below need for `rows` x `c`. A
 * bound that only grows with rows, so a workspace sized for the largest
 * batch serves every smaller one. */
size_t tli_bn_partial_count(size_t rows, size_t c);

/* Synchronized batch normalization (tl_fit_options.sync_batchnorm): sum
 * `n` doubles over the processes of a data-parallel run, in place. A
 * failure is the caller's to remember (the pass goes on with what it has;
 * fit stops after it). */
typedef struct tli_bn_sync {
    void (*sum)(void *ctx, double *v, size_t n);
    void *ctx;
    double share; /* this process's examples over the global batch's (> 0) */
} tli_bn_sync;

/* A batch normalization's tensors and per-channel buffers (each c floats). */
typedef struct tli_bn {
    size_t rows, c;
    float epsilon;
    float momentum;       /* moving = momentum * moving + (1 - momentum) * batch */
    const float *gamma;   /* NULL: 1 (no scale) */
    const float *beta;    /* NULL: 0 (no center) */
    float *moving_mean;
    float *moving_var;
    /* Training mode: the batch's mean and 1 / sqrt(var + epsilon), written
     * by tli_bn_forward_train for tli_bn_backward_train. */
    float *mean, *inv_std;
    /* Work space: three per-channel float buffers and `partial`. */
    float *t0, *t1, *t2;
    double *partial;
    /* Not NULL: the statistics are those of every process's rows together
     * (forward: the sums of x and of the squared deviations; backward: the
     * sums of dy and dy * xhat, each process's scaled by its share of the
     * rows so that they are the global batch's). */
    const tli_bn_sync *sync;
    /* The forward passes apply this TLI_CLAMP_* (elementwise.h) to y: the
     * ReLU / ReLU6 layer after the batchnorm, fused (0: none). */
    int clamp;
    /* The forward passes add this (rows x c, not NULL) to y before the
     * clamp: the residual add after the batchnorm, fused (its other
     * input; the same bits as tli_sum of the two). */
    const float *residual;
    /* Backward, not NULL: that activation's backward is fused too - dy is
     * the gradient of its output act_y (rows x c), and the backward passes
     * apply its derivative (dy where 0 < act_y, and act_y < 6 for ReLU6;
     * 0 elsewhere) before their own. In training mode the activation's
     * input is recomputed from x instead of reading act_y (the forward
     * normalized x without a residual: batchnorm_impl.h). */
    const float *act_y;
} tli_bn;

/* Training mode: normalize x with the batch's mean and biased variance
 * (one pass over x for both, then one to normalize),
 * y = gamma * (x - mean) / sqrt(var + eps) + beta, keep mean and inv_std,
 * and move the moving statistics towards the batch's mean and unbiased
 * variance (var * rows / (rows - 1); the biased one when rows is 1), as
 * PyTorch's running_var. When a channel's mean or variance is not finite
 * the moving statistics are left as they were (all channels). */
void tli_bn_forward_train(uint32_t threads, const tli_bn *bn, const float *x, float *y);

/* Inference mode: normalize with the moving statistics, which stay as
 * they are. */
void tli_bn_forward_infer(uint32_t threads, const tli_bn *bn, const float *x, float *y);

/* Inference mode as a per-channel map y = x * scale + shift (scale =
 * gamma / sqrt(moving_var + eps), shift = beta - moving_mean * scale), for
 * folding into the layer before; uses t0. scale and shift may be t1, t2. */
void tli_bn_infer_affine(const tli_bn *bn, float *scale, float *shift);

/* Training mode, after tli_bn_forward_train on the same x: through the
 * batch statistics,
 *   dx = gamma * inv_std / n * (n * dy - sum(dy) - xhat * sum(dy * xhat)),
 * with n = rows and the sums per channel. dgamma = sum(dy * xhat) and
 * dbeta = sum(dy) are written (overwritten) when not NULL; dx when not
 * NULL. dy is only read (with act_y, through the activation's derivative). */
void tli_bn_backward_train(uint32_t threads, const tli_bn *bn, const float *x, const float *dy, float *dx,
                           float *dgamma, float *dbeta);

/* Inference mode (a frozen layer): dx = dy * gamma / sqrt(moving_var + eps). */
void tli_bn_backward_infer(uint32_t threads, const tli_bn *bn, const float *dy, float *dx);

/* Tests: true makes the functions above use the portable build of their
 * loops even on an AVX-512 CPU (to compare the two bit for bit); false
 * (the default) picks the fastest. Not thread-safe. */
void tli_bn_force_portable(bool on);

#endif /* TLI_BATCHNORM_H */
