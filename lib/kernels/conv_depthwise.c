/*
 * conv_depthwise.c - the depthwise convolution kernels for any CPU (the
 * code is in conv_depthwise_impl.h; conv_depthwise_avx512.c builds the
 * same code for AVX-512, and conv_algo.c picks one at run time).
 */
#include "conv_direct.h"

#define TLI_DW(name) tli_depthwise_##name##_c
#include "conv_depthwise_impl.h"
