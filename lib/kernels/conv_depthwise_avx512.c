/*
 * conv_depthwise_avx512.c - conv_depthwise_impl.h compiled with AVX-512
 * enabled, so that the compiler vectorises its channel loops 16 floats
 * wide. The same sums in the same order as the portable build, so the same
 * bits. Only called after tli_cpu_has_avx512().
 */
#include "conv_direct.h"

#define TLI_DW(name) tli_depthwise_##name##_avx512
#define TLI_DW_WIDE 1
#include "conv_depthwise_impl.h"
