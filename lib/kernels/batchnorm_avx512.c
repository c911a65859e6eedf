/*
 * batchnorm_avx512.c - batchnorm_impl.h compiled with AVX-512 enabled, so
 * that the compiler vectorises its channel loops 16 floats (8 doubles)
 * wide. The same sums in the same order as the portable build, so the
 * same bits. Only called after tli_cpu_has_avx512().
 */
#include "batchnorm_kernels.h"

#define TLI_BN(name) tli_bn_##name##_avx512
#include "batchnorm_impl.h"
