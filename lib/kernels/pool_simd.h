/* pool_simd.h - the AVX-512 pooling kernel, private to lib/kernels/. */
#ifndef TLI_POOL_SIMD_H
#define TLI_POOL_SIMD_H

#include "kernels.h"

/* tli_maxpool_forward for g->c % 16 == 0 on AVX-512 CPUs; same results. */
void tli_maxpool_forward_avx512(uint32_t threads, const tli_pool_geom *g, const float *x, size_t batch, float *y,
                                int32_t *argmax);

/* One image of tli_maxpool_backward's tiled case for g->c % 16 == 0 on
 * AVX-512 CPUs (pool_avx512.c); y NULL without the ReLU mask. */
void tli_maxpool_backward_tiled_avx512(const tli_pool_geom *g, const float *d, const int32_t *a, const float *y,
                                       float *img);

#endif /* TLI_POOL_SIMD_H */
