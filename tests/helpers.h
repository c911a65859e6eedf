/* helpers.h - shared by the test suites: assertions that print libtl's
 * last error, the seed CNN, and a generated, learnable image task. Uses the
 * public API only. */
#ifndef TL_TEST_HELPERS_H
#define TL_TEST_HELPERS_H

#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <tl/tl.h>

/* Assert TL_OK, showing the status and the library's sentence otherwise. */
#define ck_assert_tl_ok(expr)                                                                            \
    do {                                                                                                 \
        tl_status st_ = (expr);                                                                          \
        ck_assert_msg(st_ == TL_OK, "%s returned %s: %s", #expr, tl_status_str(st_), tl_last_error());   \
    } while (0)

/* Assert a given status, and that the message mentions `needle`. */
#define ck_assert_tl_err(expr, status, needle)                                                           \
    do {                                                                                                 \
        tl_clear_error();                                                                                \
        tl_status st_ = (expr);                                                                          \
        ck_assert_msg(st_ == (status), "%s returned %s, expected %s (%s)", #expr, tl_status_str(st_),    \
                      tl_status_str(status), tl_last_error());                                           \
        ck_assert_msg(strstr(tl_last_error(), (needle)) != NULL, "%s: message '%s' lacks '%s'", #expr,   \
                      tl_last_error(), (needle));                                                        \
    } while (0)

#define ck_assert_close(a, b, tol)                                                                       \
    do {                                                                                                 \
        double a_ = (a), b_ = (b);                                                                       \
        ck_assert_msg(fabs(a_ - b_) <= (tol), "%s = %.9g, expected %.9g (tol %g)", #a, a_, b_, (double)(tol)); \
    } while (0)

/* The document's network on an h x w x c input with `classes` outputs:
 * conv2d(32,3x3,relu) -> maxpool -> conv2d(64,3x3,relu) -> maxpool -> flatten
 * -> dense(classes, softmax). One thread unless the test is about threads. */
tl_model *th_seed_cnn(uint32_t h, uint32_t w, uint32_t c, uint32_t classes, uint64_t seed);

/* n examples of a 4-class task: class k = quadrant k is brighter, plus
 * uniform noise. Images h x w x c in [0, 1]. Caller frees both with free(). */
void th_quadrant_data(float **images, int32_t **labels, size_t n, uint32_t h, uint32_t w, uint32_t c,
                      uint64_t seed);

/* A dataset built from th_quadrant_data (copied). */
tl_dataset *th_quadrant_dataset(size_t n, uint32_t h, uint32_t w, uint32_t c, uint64_t seed);

/* A harder version of the quadrant task: n examples whose class k is the
 * quadrant holding a square spot of side h/4 x w/4 (at a random place
 * inside that quadrant) brighter by `contrast`, on uniform noise in
 * [0, noise). Caller frees both with free(). */
void th_spot_data(float **images, int32_t **labels, size_t n, uint32_t h, uint32_t w, uint32_t c, float noise,
                  float contrast, uint64_t seed);

/* A dataset built from th_spot_data (copied). */
tl_dataset *th_spot_dataset(size_t n, uint32_t h, uint32_t w, uint32_t c, float noise, float contrast,
                            uint64_t seed);

/* Deterministic uniform floats in [lo, hi) from a seed (test data only). */
void th_fill_uniform(float *v, size_t n, float lo, float hi, uint64_t seed);

/* Run a suite and return the process exit status. */
int th_run(Suite *s);

/* Every parameter of a model, layer by layer in order, in one malloc'd
 * array (the caller frees it); *count receives the length. NULL (and
 * *count 0) when a call fails. No Check assertions inside, so threads other
 * than the test's may call it. */
float *th_all_params(const tl_model *m, size_t *count);

/* Gradient checks (test_gradients, test_activation, test_batchnorm). */
/* Step of the central differences: large enough for float rounding, small
 * enough for the curvature of every layer tested. */
#define TH_GRAD_EPS 1e-3f
typedef double (*th_objective_fn)(void *ctx);
/* Central difference of f at *v with step TH_GRAD_EPS; restores *v. */
double th_central(float *v, th_objective_fn f, void *ctx);
/* Compare analytical `a` with numerical `num` over n values (relative 1e-2
 * plus an absolute floor of 5e-3 of the largest component); fails on the
 * first value outside, and on a gradient that is negligible everywhere
 * (which would prove nothing). `what` names the tensor. */
void th_check_grad(const float *a, const double *num, size_t n, const char *what);

#endif
