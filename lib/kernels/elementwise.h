/*
 * elementwise.h - the loops of the graph layers (add, concatenate) and of
 * gradients that several layers add into one buffer. Float32, densely
 * packed; results do not depend on `threads`.
 */
#ifndef TLI_ELEMENTWISE_H
#define TLI_ELEMENTWISE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* y[i] = x[0][i] + x[1][i] + ... + x[nx-1][i] for i < n, summed in input
 * order. y may be x[0]. */
void tli_sum(uint32_t threads, float *y, const float *const *x, size_t nx, size_t n);

/* y[i] += x[i] when `add`, y[i] = x[i] otherwise, for i < n. */
void tli_accumulate(uint32_t threads, float *y, const float *x, size_t n, bool add);

/* Rows side by side: y[r] = (x[0][r], x[1][r], ...), where row r of x[k]
 * has width[k] floats, for r < rows. */
void tli_concat_rows(uint32_t threads, float *y, const float *const *x, const size_t *width, size_t nx,
                     size_t rows);

/* The adjoint: dx[k][r] = (or += when acc[k]) the width[k] floats of dy[r]
 * that came from x[k]. dx[k] NULL: skipped. */
void tli_split_rows(uint32_t threads, float *const *dx, const bool *acc, const float *dy, const size_t *width,
                    size_t nx, size_t rows);

#endif /* TLI_ELEMENTWISE_H */
