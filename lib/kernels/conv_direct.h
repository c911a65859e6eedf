/*
 * conv_direct.h - the direct (im2col-free) convolution kernels and the CPU
 * check that guards them. Private to lib/kernels/.
 */
#ifndef TLI_CONV_DIRECT_H
#define TLI_CONV_DIRECT_H

#include "elementwise.h" /* TLI_CLAMP_* */
#include "kernels.h"

/* An unpadded convolution as the direct kernels see it: the input is
 * already padded to exactly the cells the windows read,
 * in = (out - 1) * s + k. */
typedef struct tli_direct_geom {
    uint32_t in_h, in_w, in_c;
    uint32_t out_h, out_w;
    uint32_t k_h, k_w;
    uint32_t filters;  /* a multiple of 16 */
    uint32_t s_h, s_w; /* stride (the kernels are chosen for stride 1 only today) */
} tli_direct_geom;

/* y = conv(x, w) + bias, then the clamp; every output written
 * (conv_fwd_avx512.c). x holds x_h x x_w x in_c per image; output (oh, ow)
 * reads the window whose top-left cell is (oh*s_h - pad_t, ow*s_w - pad_l)
 * of the padded extent g->in_h x g->in_w, cells outside x being zeros.
 * xpad, when not NULL, receives the padded images (batch x g->in_h x
 * g->in_w x in_c, for the weight gradient) and the kernels read them from
 * there. Any stride; filters a multiple of 16. The same bits for any
 * thread count and with or without xpad. */
void tli_direct_forward_avx512(uint32_t threads, const tli_direct_geom *g, const float *x, uint32_t x_h,
                               uint32_t x_w, uint32_t pad_t, uint32_t pad_l, float *xpad, const float *w,
                               const float *bias, int clamp, float *y, size_t batch);

/* dw = sum over the batch of x (*) dz. `partials` holds (threads - 1)
 * kernels' worth of floats for the per-thread sums. */
void tli_direct_weight_grad_avx512(uint32_t threads, const tli_direct_geom *g, const float *x, const float *dz,
                                   float *dw, float *partials, size_t batch);

/* dxp (the padded input's gradient, in_h x in_w) = the adjoint of the
 * convolution applied to dz, with wt the kernel transposed to
 * (filters, k_h*k_w*in_c). Requires in_c % 16 == 0. Overwrites dxp. */
void tli_direct_input_grad_avx512(uint32_t threads, const tli_direct_geom *g, const float *dz, const float *wt,
                                  float *dxp, size_t batch);

/* ---- depthwise (conv_depthwise_impl.h) ------------------------------------
 * groups == in_c, filters = in_c * m; any stride, dilation and padding.
 * Each is built twice: _c for any CPU, _avx512 (only where the library has
 * AVX-512 kernels, called after tli_cpu_has_avx512()). Both give the same
 * bits, for any thread count. */

/* Floats of the weight gradient's per-image partial sums for `batch`. */
static inline size_t tli_depthwise_partials(const tli_conv_geom *g, uint32_t filters, size_t batch)
{
    return batch > 1 ? (batch - 1) * g->k_h * g->k_w * filters : 0;
}

/* y = depthwise(x, w) + bias, then the clamp (TLI_CLAMP_*); bias may be NULL.
 * Other activations are applied by the caller (tli_conv_forward). */
void tli_depthwise_forward_c(uint32_t threads, const tli_conv_geom *g, uint32_t filters, const float *x,
                             const float *w, const float *bias, int clamp, float *y, size_t batch);
/* dx = dL/dx from dz = dL/d(pre-activation). Overwrites dx. */
void tli_depthwise_input_grad_c(uint32_t threads, const tli_conv_geom *g, uint32_t filters, const float *dz,
                                const float *w, float *dx, size_t batch);
/* dw = dL/dw. Overwrites dw. `partials` holds (batch - 1) kernels' worth
 * of floats (tli_depthwise_partials) for the per-image sums. */
void tli_depthwise_weight_grad_c(uint32_t threads, const tli_conv_geom *g, uint32_t filters, const float *x,
                                 const float *dz, float *dw, float *partials, size_t batch);
#ifdef TLI_HAVE_AVX512
void tli_depthwise_forward_avx512(uint32_t threads, const tli_conv_geom *g, uint32_t filters, const float *x,
                                  const float *w, const float *bias, int clamp, float *y, size_t batch);
void tli_depthwise_input_grad_avx512(uint32_t threads, const tli_conv_geom *g, uint32_t filters, const float *dz,
                                     const float *w, float *dx, size_t batch);
void tli_depthwise_weight_grad_avx512(uint32_t threads, const tli_conv_geom *g, uint32_t filters, const float *x,
                                      const float *dz, float *dw, float *partials, size_t batch);
#endif

#endif /* TLI_CONV_DIRECT_H */
