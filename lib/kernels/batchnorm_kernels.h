/*
 * batchnorm_kernels.h - the two builds of batchnorm_impl.h's loops: the
 * portable one (batchnorm.c) and the AVX-512 one (batchnorm_avx512.c,
 * only called after tli_cpu_has_avx512()). They give the same bits.
 */
#ifndef TLI_BATCHNORM_KERNELS_H
#define TLI_BATCHNORM_KERNELS_H

#include <stddef.h>

#define TLI_BN_DECLARE(sfx)                                                                                      \
    void tli_bn_stats_##sfx(const float *x, size_t lo, size_t hi, size_t c, const float *shift, double *s1,      \
                            double *s2);                                                                         \
    void tli_bn_normalize_##sfx(const float *x, size_t lo, size_t hi, size_t c, const float *mean,               \
                                const float *scale, const float *shift, const float *res, float *y, int clamp);  \
    void tli_bn_grad_sums_##sfx(const float *x, const float *dy, int mask, size_t lo, size_t hi, size_t c,       \
                                const float *mean, const float *inv_std, const float *scale, const float *shift, \
                                double *sdy, double *sdx);                                                       \
    void tli_bn_input_grad_##sfx(const float *x, const float *dy, int mask, size_t lo, size_t hi, size_t c,      \
                                 const float *mean, const float *shift, const float *a, const float *q,          \
                                 const float *b, float *dx);                                                     \
    void tli_bn_scale_##sfx(const float *dy, const float *y, int mask, size_t lo, size_t hi, size_t c,           \
                            const float *a, float *dx);

TLI_BN_DECLARE(portable)
#ifdef TLI_HAVE_AVX512
TLI_BN_DECLARE(avx512)
#endif

#endif /* TLI_BATCHNORM_KERNELS_H */
