/*
 * kernels.h - the hot loops of libtl. Nothing outside lib/kernels/ calls
 * BLIS or contains a loop over a batch's elements; layers describe *what*
 * to compute and call these.
 *
 * All tensors are float32, NHWC, densely packed. `threads` is the caller's
 * thread count (>= 1); results depend only on the inputs and `threads`.
 */
#ifndef TLI_KERNELS_H
#define TLI_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "../core.h"

/* ---- cpu.c ------------------------------------------------------------- */

/* AVX-512 F/DQ/BW/VL usable (CPU and OS). */
bool tli_cpu_has_avx512(void);
/* AVX2 and FMA usable. */
bool tli_cpu_has_avx2_fma(void);

/* ---- gemm.c: the only caller of BLIS ---------------------------------- */

/* Choose BLIS's kernel family from the CPU (unless BLIS_ARCH_TYPE is set)
 * and initialise BLIS. Idempotent and thread-safe; called before any GEMM. */
void tli_blas_init(void);

/* C = alpha * A * B + beta * C with general strides (row stride rs, column
 * stride cs), A m x k, B k x n, C m x n. A transposed operand is just
 * swapped strides, so nothing is copied. beta == 0 never reads C. */
void tli_gemm(uint32_t threads, size_t m, size_t n, size_t k, float alpha, const float *a, ptrdiff_t rsa,
              ptrdiff_t csa, const float *b, ptrdiff_t rsb, ptrdiff_t csb, float beta, float *c,
              ptrdiff_t rsc, ptrdiff_t csc);

/* ---- conv.c: im2col / col2im for NHWC -------------------------------- */

/* Output pixel (oh, ow) reads input rows ih = oh*s_h - pad_t + kh*d_h and
 * columns iw = ow*s_w - pad_l + kw*d_w (zero outside the image). With
 * groups > 1 the in_c channels and the filters split into `groups` equal
 * parts; filter f sees only the channels of its group f / (filters/groups),
 * and the kernel is (k_h, k_w, in_c/groups, filters). Every member is
 * set: dilations and groups are at least 1. */
typedef struct tli_conv_geom {
    uint32_t in_h, in_w, in_c;
    uint32_t out_h, out_w;
    uint32_t k_h, k_w;
    uint32_t s_h, s_w;
    uint32_t pad_t, pad_l; /* zero padding before the first row / column */
    uint32_t d_h, d_w;     /* dilation: 1 = adjacent cells */
    uint32_t pad_b, pad_r; /* zero padding after the last row / column (the cells the last window needs) */
    uint32_t groups;       /* divides in_c and the filters */
} tli_conv_geom;

/* Channels of one group: in_c / groups. */
static inline uint32_t tli_conv_group_c(const tli_conv_geom *g)
{
    return g->in_c / g->groups;
}

/* Row length of the im2col matrix of one group: k_h * k_w * in_c/groups
 * (the kernel's K, its rows). */
static inline size_t tli_conv_k(const tli_conv_geom *g)
{
    return (size_t)g->k_h * g->k_w * tli_conv_group_c(g);
}

/* The im2col matrix of group `grp` (0 when groups == 1), cg = in_c/groups:
 * col[(n*out_h + oh)*out_w + ow][(kh*k_w + kw)*cg + c] = x[n][ih][iw][grp*cg + c]
 * (0 outside the image; ih, iw as above). */
void tli_im2col_group(uint32_t threads, const tli_conv_geom *g, const float *x, size_t batch, uint32_t grp,
                      float *col);

/* The adjoint of tli_im2col_group applied to dcol (sums overlapping
 * windows) into the channels of group `grp` of dx, which it overwrites;
 * the other channels are left as they are. */
void tli_col2im_group(uint32_t threads, const tli_conv_geom *g, const float *dcol, size_t batch, uint32_t grp,
                      float *dx);

/* Group 0: with groups == 1 the whole im2col matrix, and a col2im that
 * overwrites dx entirely. */
void tli_im2col(uint32_t threads, const tli_conv_geom *g, const float *x, size_t batch, float *col);
void tli_col2im(uint32_t threads, const tli_conv_geom *g, const float *dcol, size_t batch, float *dx);

/* How a convolution is computed. All give the same results up to float
 * rounding; tests run them and compare. */
typedef enum tli_conv_algo {
    TLI_CONV_GEMM = 0,     /* im2col + BLIS (one GEMM per group): any shape, any CPU */
    TLI_CONV_DIRECT = 1,   /* direct AVX-512 kernels: stride 1, filters a multiple of 16, groups 1, no dilation */
    TLI_CONV_DEPTHWISE = 2, /* direct depthwise kernels: groups == in_c (any multiplier, stride, dilation) */
    TLI_CONV_WINO = 3       /* Winograd F(4x4, 3x3) forward (AVX-512): 3x3, stride 1, padding 1 on every side,
                             * filters a multiple of 16, groups 1; the direct kernels' backward */
} tli_conv_algo;

/* The fastest algorithm this CPU has for the convolution. */
tli_conv_algo tli_conv_choose(const tli_conv_geom *g, uint32_t filters);

/* True when `algo` can run this convolution on this CPU. */
bool tli_conv_algo_ok(tli_conv_algo algo, const tli_conv_geom *g, uint32_t filters);

/* Scratch bytes for `batch` examples; `need_dx`: the input gradient will be
 * asked for. SIZE_MAX when the size overflows. */
size_t tli_conv_scratch_bytes(tli_conv_algo algo, const tli_conv_geom *g, uint32_t filters, size_t batch,
                              uint32_t threads, bool training, bool need_dx);

/* y = act(z), z = conv(x, w) + bias, for `batch` images; w is (k_h, k_w,
 * in_c/groups, filters), bias may be NULL, alpha leaky_relu's slope. z
 * NULL: only y is written; otherwise z (batch x out_h x out_w x filters)
 * receives the pre-activation too, for a backward pass that needs it
 * (tli_act_needs_input); y is then the same, bit for bit. The scratch
 * (sized with `training` true) is kept for the backward pass. Results
 * depend only on the inputs, `algo` and `threads`; the depthwise kernels'
 * not even on `threads`. */
void tli_conv_forward(uint32_t threads, tli_conv_algo algo, const tli_conv_geom *g, uint32_t filters,
                      const float *x, const float *w, const float *bias, tl_activation act, float alpha, float *y,
                      float *z, size_t batch, void *scratch);

/* The forward pass when no backward pass follows (inference, a frozen
 * base): y = act(conv(x, w) + bias + res), res (laid out as y) the other
 * input of a residual join, or NULL. The scratch may be sized with
 * `training` false (the direct kernels then read x in place: no padded
 * copy). `prep`: w as tli_conv_prepare made it (kept by the caller while
 * w is unchanged), or NULL (the call prepares it in the scratch). The
 * same bits as tli_conv_forward, followed, when res is given, by the
 * join's sum and the activation (a ReLU / ReLU6 clamp). */
void tli_conv_infer(uint32_t threads, tli_conv_algo algo, const tli_conv_geom *g, uint32_t filters,
                    const float *x, const float *w, const float *prep, const float *bias, const float *res,
                    tl_activation act, float alpha, float *y, size_t batch, void *scratch);

/* Floats of the kernel as `algo` reads it when that is not w itself
 * (Winograd's transformed kernel), 0 when it reads w. */
size_t tli_conv_prep_floats(tli_conv_algo algo, const tli_conv_geom *g, uint32_t filters);
/* prep (tli_conv_prep_floats floats) = kernel w as `algo` reads it. */
void tli_conv_prepare(tli_conv_algo algo, const tli_conv_geom *g, uint32_t filters, const float *w, float *prep);

/* From dz = dL/d(pre-activation) after tli_conv_forward on the same x and
 * scratch: dw (when not NULL) = dL/dw, dx (when not NULL) = dL/dx. The bias
 * gradient comes from tli_act_backward. */
void tli_conv_backward(uint32_t threads, tli_conv_algo algo, const tli_conv_geom *g, uint32_t filters,
                       const float *x, const float *dz, const float *w, float *dw, float *dx, size_t batch,
                       void *scratch);

/* ---- pool.c ------------------------------------------------------------ */

typedef struct tli_pool_geom {
    uint32_t in_h, in_w, c;
    uint32_t out_h, out_w;
    uint32_t p_h, p_w;
    uint32_t s_h, s_w;
    uint32_t pad_t, pad_l; /* padded cells never win the max */
} tli_pool_geom;

/* y = max over each window; argmax (may be NULL in inference) receives the
 * index of the winning element within its image (h*in_w + w)*c + ch. */
void tli_maxpool_forward(uint32_t threads, const tli_pool_geom *g, const float *x, size_t batch, float *y,
                         int32_t *argmax);

/* dx = 0, then dx[argmax] += dy. Overwrites dx entirely.
 * relu_y: NULL, or the forward output y when the input x was a ReLU's
 * output; then dy passes only where y > 0, which folds the ReLU's
 * derivative into dx: the winner of a window is the cell whose ReLU output
 * equals y, so this is exactly relu'(x) at every cell that gets a gradient
 * (bit for bit what a separate ReLU backward pass over dx would give), and
 * it saves that pass over the larger input.
 * dbias: NULL, or g->c floats that receive, per channel, the sum of the
 * gradients passed down (after the mask) = the sum of dx over the batch:
 * the bias gradient of the layer below, summed from dy, 4x smaller than dx
 * for 2x2 pooling, in an order that does not depend on `threads`. */
void tli_maxpool_backward(uint32_t threads, const tli_pool_geom *g, const float *dy, const int32_t *argmax,
                          const float *relu_y, float *dbias, size_t batch, float *dx);

/* ---- pool.c: average pooling ------------------------------------------- */

/* y = the mean of each window: the sum of its real (in-image) cells, in the
 * geometry of tli_pool_geom (pad_t / pad_l zero rows / columns before the
 * image; under 'same' padding windows may run past the bottom / right
 * edge), divided by
 *   count_include_pad true:  the number of the window's cells inside the
 *     padded input [-pad_t, in_h + pad_b) x [-pad_l, in_w + pad_r), where
 *     pad_b = max(0, (out_h-1)*s_h + p_h - in_h - pad_t) (pad_r likewise):
 *     the trailing padding is what the last window needs, so every window
 *     lies inside and the divisor is always p_h * p_w (PyTorch's default,
 *     count_include_pad=True, ceil_mode=False);
 *   count_include_pad false: the number of real cells in the window
 *     (Keras / TensorFlow 'same' and PyTorch count_include_pad=False);
 *     a window with no real cell (impossible with Keras or PyTorch
 *     padding) gives 0.
 * Each window is summed in a fixed order and then divided, so the result
 * does not depend on `threads`. */
void tli_avgpool_forward(uint32_t threads, const tli_pool_geom *g, bool count_include_pad, const float *x,
                         size_t batch, float *y);

/* dx = the adjoint of tli_avgpool_forward: each dy spread over its window's
 * real cells as dy / (the forward's divisor), summed where windows overlap.
 * Overwrites dx entirely (0 where no window reaches). */
void tli_avgpool_backward(uint32_t threads, const tli_pool_geom *g, bool count_include_pad, const float *dy,
                          size_t batch, float *dx);

/* y[n][ch] = the mean over the hw positions of x[n][pos][ch] (x is
 * batch x hw x c), summed position by position within one thread per
 * image, so independent of `threads`. hw == 0 gives 0. */
void tli_global_avgpool_forward(uint32_t threads, uint32_t hw, uint32_t c, const float *x, size_t batch, float *y);

/* dx[n][pos][ch] = dy[n][ch] / hw, the adjoint of the above. Overwrites dx. */
void tli_global_avgpool_backward(uint32_t threads, uint32_t hw, uint32_t c, const float *dy, size_t batch,
                                 float *dx);

/* ---- activation.c ------------------------------------------------------ */

/* y[r][c] = act(y[r][c] + bias[c]) for a rows x cols matrix, in place;
 * bias may be NULL. Softmax is taken over each row; alpha is leaky_relu's
 * slope (the others ignore it). */
void tli_bias_act_forward(uint32_t threads, float *y, const float *bias, size_t rows, size_t cols,
                          tl_activation act, float alpha);

/* The same, keeping the pre-activation: z[r][c] += bias[c] (bias may be
 * NULL), then y = act(z), in one pass. For a layer in training whose
 * activation needs z in its backward pass (tli_act_needs_input); y and z
 * get exactly the values tli_bias_act_forward gives y. */
void tli_bias_act_forward_keep(uint32_t threads, float *z, const float *bias, float *y, size_t rows, size_t cols,
                               tl_activation act, float alpha);

/* dy := dL/dz from dL/dy (in place), and dbias[c] = sum over rows of
 * dz[r][c] when dbias is not NULL. The derivative comes from the output y,
 * or, for the activations that need it (tli_act_needs_input), from the
 * pre-activation z (with slope alpha for leaky_relu), by the activation
 * layer's formulas (tli_act_input_backward); z is not read otherwise and
 * may be NULL then. */
void tli_act_backward(uint32_t threads, tl_activation act, float alpha, const float *z, const float *y, float *dy,
                      size_t rows, size_t cols, float *dbias);

/* True when the derivative of `act` needs its input z, not only its output:
 * leaky_relu, silu and hard_swish. conv2d and dense then keep z in their
 * scratch in training (tli_bias_act_forward_keep); the others (linear,
 * relu, softmax, sigmoid, tanh, relu6: 0 < y < 6, hard_sigmoid: 0 < y < 1)
 * take their derivative from y and keep nothing. */
bool tli_act_needs_input(tl_activation act);

/* The activation layer: y = act(x) for a rows x cols matrix, softmax over
 * each row, alpha the leaky_relu slope. Each value is computed exactly as
 * tli_bias_act_forward computes it (without a bias), so a fused activation
 * and a linear layer followed by an activation layer give the same bits.
 * y may be x. */
void tli_act_forward(uint32_t threads, tl_activation act, float alpha, const float *x, float *y, size_t rows,
                     size_t cols);

/* Its backward pass: dx = dL/dx from dy = dL/dy, the forward's input x and
 * output y. Derivatives at the kinks are PyTorch's: 0 for relu at 0, for
 * relu6 at 0 and 6, for hard_sigmoid at -3 and 3; alpha for leaky_relu at
 * 0; -0.5 and 1.5 for hard_swish at -3 and 3. dx may be dy. */
void tli_act_input_backward(uint32_t threads, tl_activation act, float alpha, const float *x, const float *y,
                            const float *dy, float *dx, size_t rows, size_t cols);

/* ---- loss.c ------------------------------------------------------------ */

/* What a loss kernel returns for one batch. */
typedef struct tli_loss_result {
    double loss_sum;   /* sum over the batch of each example's loss (weighted: its numerator) */
    size_t correct;    /* examples whose arg-max output matches the label / target */
    double weight_sum; /* what the mean divides loss_sum by: rows, or the class weights' sum */
} tli_loss_result;

/* The mean loss of a result (or of sums of results): loss_sum / weight_sum,
 * 0 when no example carries weight. */
double tli_loss_mean(double loss_sum, double weight_sum);

/* Softmax cross-entropy fused with the softmax: z are logits (rows x cols).
 * Targets are either labels (one int per row) or t (rows x cols floats).
 * When dz is not NULL it receives dL/dz of the batch mean loss:
 * (softmax(z) * sum(t) - t) / rows. Stable for any finite logits.
 * Returns false when a label is outside [0, cols) (*bad_row set). */
bool tli_softmax_xent(const float *z, size_t rows, size_t cols, const int32_t *labels, const float *t,
                      float *dz, tli_loss_result *res, size_t *bad_row);

/* Softmax cross-entropy with the loss options (tl_loss_options): targets
 * q = (1 - smoothing) * t + smoothing / cols (t one-hot of the label, or
 * the given row), each class c weighted by weights[c] (NULL: all 1).
 * Example r's loss is sum_c w_c q_rc (lse(z_r) - z_rc); its weight is w of
 * its label, or sum_c w_c t_rc / sum_c t_rc for float targets (1 without
 * weights). loss_sum is the sum of the losses, weight_sum of the weights,
 * dz (may be NULL) the gradient of loss_sum / weight_sum (0 when that is
 * 0): (softmax(z_r) * sum_c a_rc - a_r) / weight_sum, a_rc = w_c q_rc. */
bool tli_softmax_xent_ex(const float *z, size_t rows, size_t cols, const int32_t *labels, const float *t,
                         float smoothing, const float *weights, float *dz, tli_loss_result *res, size_t *bad_row);

/* Mean squared error: loss per row = mean over cols of (y - t)^2, with t
 * either given or one-hot of labels. dy (may be NULL) = 2 (y - t) / (rows*cols). */
bool tli_mse(const float *y, size_t rows, size_t cols, const int32_t *labels, const float *t, float *dy,
             tli_loss_result *res, size_t *bad_row);

/* Index of the largest of n values (the first on ties). */
size_t tli_argmax(const float *v, size_t n);

/* How many of the n values come before v[i] in a descending order whose
 * ties go to the lower index: 0 exactly when tli_argmax() returns i. */
size_t tli_rank(const float *v, size_t n, size_t i);

/* True when all n values are finite. */
bool tli_all_finite(const float *v, size_t n);

#endif /* TLI_KERNELS_H */
