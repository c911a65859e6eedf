/*
 * parallel.h - a parallel loop that opens no OpenMP region for one thread.
 *
 * libgomp enters its runtime for every `#pragma omp parallel`, also when
 * the region's if clause is false or it asks for one thread: about 2.6 us
 * on the CI machine (a futex round trip). A batch-1 prediction of
 * ResNet-20 opened 53 such regions (0.14 ms of about 0.8 ms), so the hot
 * loops of inference use TLI_OMP_FOR instead, which runs the plain loop
 * when `parallel` is false.
 *
 *   TLI_OMP_FOR(threads > 1, "omp parallel for num_threads(threads) schedule(static)",
 *               (long i = 0; i < n; i++), { body });
 *
 * The body is expanded twice, so it must not hold preprocessor directives.
 */
#ifndef TLI_PARALLEL_H
#define TLI_PARALLEL_H

#include <stdint.h>

/* The threads worth giving one kernel call: the library's single place that
 * decides whether a call is split over threads (parallel.c). `threads` is
 * the model's setting; `macs` the call's multiply-adds (compute-bound
 * kernels) and `bytes` the memory it reads and writes (memory-bound ones),
 * either may be 0. A call whose one-thread time would not pay for waking
 * another thread gets 1 (and then opens no OpenMP region). Results never
 * depend on the answer: kernels give the same bits for any thread count. */
uint32_t tli_par_threads(uint32_t threads, double macs, double bytes);

#ifdef _OPENMP
#define TLI_OMP_FOR(parallel, omp_pragma, header, ...)                                                             \
    do {                                                                                                           \
        if (parallel) {                                                                                            \
            _Pragma(omp_pragma) for header __VA_ARGS__                                                             \
        } else {                                                                                                   \
            for header __VA_ARGS__                                                                                 \
        }                                                                                                          \
    } while (0)
#else
#define TLI_OMP_FOR(parallel, omp_pragma, header, ...)                                                             \
    do {                                                                                                           \
        (void)(parallel);                                                                                          \
        for header __VA_ARGS__                                                                                     \
    } while (0)
#endif

#endif /* TLI_PARALLEL_H */
