/*
 * conv_wino.h - Winograd F(4x4, 3x3) convolution for 3x3, stride-1,
 * pad-1 layers (same output size), NHWC, any in_c, filters a multiple of
 * 16 (conv_wino_avx512.c). Private to lib/kernels/.
 */
#ifndef TLI_CONV_WINO_H
#define TLI_CONV_WINO_H

#include <stddef.h>
#include <stdint.h>

/* Points of the transformed tile: 6 x 6 per 4 x 4 outputs. */
#define TLI_WINO_POS 36

/* A 3x3 stride-1 pad-1 convolution: h x w pixels in and out. */
typedef struct tli_wino_geom {
    uint32_t h, w, in_c, filters;
} tli_wino_geom;

/* Floats from one point's in_c x filters matrix of the transformed kernel
 * to the next: one cache line more than the matrix, so that the 36 rows
 * the transform writes per channel do not all fall in one L1 set (an
 * in_c x filters matrix is a multiple of 4 KiB: writing it that way took
 * 4 times as long). */
static inline size_t tli_wino_point_floats(const tli_wino_geom *g)
{
    return (size_t)g->in_c * g->filters + 16;
}

/* Floats of the transformed kernel U: TLI_WINO_POS points of in_c x filters. */
static inline size_t tli_wino_weight_floats(const tli_wino_geom *g)
{
    return (size_t)TLI_WINO_POS * tli_wino_point_floats(g);
}

/* Floats of one thread's tile buffers (transformed input and products of
 * a block of tiles). */
size_t tli_wino_buffer_floats(const tli_wino_geom *g);

/* U (TLI_WINO_POS, in_c, filters) = G w G^T for every (channel, filter),
 * w (3, 3, in_c, filters); computed in double, rounded once. */
void tli_wino_weights(const tli_wino_geom *g, const float *w, float *u);

/* y = conv(x, w) + bias (+ res), then the clamp (TLI_CLAMP_*), with u from
 * tli_wino_weights; bias and res may be NULL. xpad, when not NULL,
 * receives the images padded by one zero cell on every side (batch x
 * (h+2) x (w+2) x in_c: what the direct weight gradient reads). `buf`
 * holds threads x tli_wino_buffer_floats floats. The same bits for any
 * thread count. */
void tli_wino_forward_avx512(uint32_t threads, const tli_wino_geom *g, const float *x, const float *u,
                             const float *bias, const float *res, int clamp, float *y, float *xpad, float *buf,
                             size_t batch);

/* Floats of the weight gradient's scratch for `batch` images on at most
 * `threads` threads: per-chunk sums of the 36 points and per-thread tile
 * buffers. */
size_t tli_wino_wgrad_floats(const tli_wino_geom *g, size_t batch, uint32_t threads);

/* dw (3, 3, in_c, filters) = the weight gradient of the convolution for
 * input x and output gradient dz (overwritten, not added to), by
 * Winograd's F(3x3, 4x4) backward filter; `buf` holds
 * tli_wino_wgrad_floats(g, batch, threads) floats. The same bits for any
 * thread count. */
void tli_wino_weight_grad_avx512(uint32_t threads, const tli_wino_geom *g, const float *x, const float *dz, float *dw,
                                 float *buf, size_t batch);

#endif /* TLI_CONV_WINO_H */
