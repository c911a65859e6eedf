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
    uint32_t filters;  /* a multiple of 16 (forward: any) */
    uint32_t s_h, s_w; /* stride: 1 or 2 */
} tli_direct_geom;

/* y = conv(x, w) + bias (+ res), then the clamp; every output written
 * (conv_fwd_avx512.c). x holds x_h x x_w x in_c per image; output (oh, ow)
 * reads the window whose top-left cell is (oh*s_h - pad_t, ow*s_w - pad_l)
 * of the padded extent g->in_h x g->in_w, cells outside x being zeros.
 * res, when not NULL, is laid out as y and added before the clamp (a
 * residual join fused into the convolution). xpad, when not NULL,
 * receives the padded images (batch x g->in_h x g->in_w x in_c, for the
 * weight gradient) and the kernels read them from there; without it x is
 * read in place and `edge` holds threads x tli_direct_edge_floats floats
 * for the window rows that hang over a border (it may be NULL when no
 * window leaves x). Any stride; any number of filters (the last partial
 * vector masked). The same bits for any thread count, with or without
 * xpad. */
void tli_direct_forward_avx512(uint32_t threads, const tli_direct_geom *g, const float *x, uint32_t x_h,
                               uint32_t x_w, uint32_t pad_t, uint32_t pad_l, float *xpad, float *edge,
                               const float *w, const float *bias, const float *res, int clamp, float *y,
                               size_t batch);

/* Output pixels per block of the direct forward pass. */
#define TLI_DIRECT_PIXEL_BLOCK 24

/* Floats of one thread's edge buffer for tli_direct_forward_avx512: a row
 * of zeros and one window row (k_w * in_c floats) per (kernel row, pixel)
 * of a pixel block. */
static inline size_t tli_direct_edge_floats(const tli_direct_geom *g)
{
    return (size_t)g->k_w * g->in_c * (1 + TLI_DIRECT_PIXEL_BLOCK * (size_t)g->k_h);
}

/* dw = sum over the batch of x (*) dz (x padded as for the forward pass).
 * Overwrites dw; the same bits for any thread count. */
void tli_direct_weight_grad_avx512(uint32_t threads, const tli_direct_geom *g, const float *x, const float *dz,
                                   float *dw, size_t batch);

/* The input gradient is gathered, not scattered: each dx pixel sums the
 * dz pixels whose windows cover it, times the kernel transposed per tap.
 * dz is first copied, per image, into a zero-bordered buffer laid out
 * (row, filter, column), so a block of dx pixels in one row reads
 * consecutive floats of the buffer for each (tap, filter). This struct
 * says where things are; a pointwise stride-1 convolution is one row of
 * h*w pixels. Largest kernel: TLI_DIRECT_MAX_TAPS cells. */
#define TLI_DIRECT_MAX_TAPS 256
typedef struct tli_dx_shape {
    uint32_t in_h, in_w, out_h, out_w; /* dx's and dz's pixels (unpadded) */
    uint32_t c, n;                     /* in_c (a multiple of 16), filters */
    uint32_t k_h, k_w, s_h, s_w, pad_t, pad_l;
    uint32_t pt, pl;     /* zero rows / columns of the buffer before dz's first */
    uint32_t rows, cols; /* the buffer: rows x n x cols floats per thread */
} tli_dx_shape;

static inline uint32_t tli_dx_extent(uint32_t in, uint32_t out, uint32_t k, uint32_t s, uint32_t pad, uint32_t *before)
{
    /* dx cell i reads dz cells (i + pad - k') / s for the taps k' < k that
     * divide evenly: from -ceil((k-1)/s) to (in - 1 + pad) / s. */
    const uint32_t lo = (k - 1 + s - 1) / s, hi = (in - 1 + pad) / s + lo + 1;
    *before = lo;
    return hi > lo + out ? hi : lo + out;
}

static inline tli_dx_shape tli_direct_dx_shape(const tli_conv_geom *g, uint32_t filters)
{
    tli_dx_shape d = {g->in_h, g->in_w, g->out_h, g->out_w, g->in_c, filters, g->k_h, g->k_w,
                      g->s_h,  g->s_w,  g->pad_t, g->pad_l, 0,        0,       0,      0};
    if (g->k_h == 1 && g->k_w == 1 && g->s_h == 1 && g->s_w == 1 && g->pad_t == 0 && g->pad_l == 0 &&
        g->out_h == g->in_h && g->out_w == g->in_w) {
        d.in_w = d.out_w = g->in_h * g->in_w;
        d.in_h = d.out_h = 1;
    }
    d.rows = tli_dx_extent(d.in_h, d.out_h, d.k_h, d.s_h, d.pad_t, &d.pt);
    d.cols = tli_dx_extent(d.in_w, d.out_w, d.k_w, d.s_w, d.pad_l, &d.pl);
    return d;
}

/* Floats of one thread's dz buffer. */
static inline size_t tli_direct_dx_floats(const tli_dx_shape *d)
{
    return (size_t)d->rows * d->n * d->cols;
}

/* dx (unpadded, batch x in_h x in_w x c) = the adjoint of the convolution
 * applied to dz, with wt the kernel transposed per tap to (k_h, k_w,
 * filters, in_c). `buf` holds threads x tli_direct_dx_floats floats.
 * Overwrites dx; the same bits for any thread count. */
void tli_direct_input_grad_avx512(uint32_t threads, const tli_dx_shape *d, const float *dz, const float *wt,
                                  float *dx, float *buf, size_t batch);

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
