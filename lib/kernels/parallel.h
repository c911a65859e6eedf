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
 *
 * Loops over a batch split it with schedule(static): thread t of T takes
 * the t-th contiguous share of the images (of the rows, the tiles), in
 * every kernel of a step alike, so the part of a tensor a thread reads is
 * mostly the part it wrote itself a kernel earlier, still in its own L2.
 * Handed out dynamically, the shares mixed and the threads read each
 * other's writes: ResNet-20's two-thread training step took 1.09x as long
 * (1.17x the CPU time). Per-image or per-block dynamic hand-outs stay where
 * a call has fewer items than threads can balance statically (batch 1).
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
