/*
 * parallel.c - whether a kernel call is worth splitting over threads.
 *
 * Waking a sleeping OpenMP thread is a futex round trip and a context
 * switch: 20-30 us on the 2-core Zen 5 machine with OMP_WAIT_POLICY=passive
 * (a region with no work, measured between bursts of serial work), about
 * 1-3 us when the threads spin (active, or libgomp's default of spinning a
 * while before sleeping). A batch-1 layer of ResNet-20 is 2.4 M
 * multiply-adds, 35 us on one core, so with passive threads most batch-1
 * layers ran slower on two threads than on one (MobileNetV2's batch-1
 * prediction took 3.0 ms on two threads against 1.5 ms on one).
 *
 * The estimate: one thread's time = macs / MACS_PER_NS + bytes / BYTES_PER_NS,
 * and a call gets one more thread for every WAKE_NS of it (the others'
 * start-up then costs at most what they save: with a static split, t
 * threads finish after time / t + wake).
 */
#include <pthread.h>
#include <stdlib.h>
#include <strings.h>

#include "parallel.h"

/* One core's rate in the AVX-512 direct convolution (ResNet-20 inference:
 * 1,750 img/s x 41 M multiply-adds = 72 per ns); slower kernels (portable
 * paths, BLIS at small sizes) take longer than estimated, so they split a
 * little later than they could: the safe side. */
#define MACS_PER_NS 64.0
/* A streaming loop over tensors in L2/L3 (an add, batchnorm's passes). */
#define BYTES_PER_NS 16.0
/* Work per added thread, in ns of one thread: the wake-up cost (above)
 * with a margin for the barrier at the region's end and for a machine
 * whose other core is busy. Chosen on MobileNetV2's batch-1 prediction
 * with passive threads: at 30 us six depthwise layers per prediction
 * still split and two threads stayed 5-10% slower than one; at 60 us none
 * do and two threads match one. Batch-64 layers are milliseconds: split. */
#define WAKE_NS_PASSIVE 60000.0
#define WAKE_NS_SPIN 5000.0

static pthread_once_t wake_once = PTHREAD_ONCE_INIT;
static double wake_ns = WAKE_NS_PASSIVE;

/* libgomp reads OMP_WAIT_POLICY once, at start-up; so do we. Only
 * "active" and unset (libgomp spins ~0.3 M iterations, far longer than
 * the gap between a model's layers, before it sleeps) keep threads awake. */
static void wake_setup(void)
{
    const char *p = getenv("OMP_WAIT_POLICY");
    wake_ns = p && strcasecmp(p, "passive") == 0 ? WAKE_NS_PASSIVE : WAKE_NS_SPIN;
}

uint32_t tli_par_threads(uint32_t threads, double macs, double bytes)
{
    if (threads <= 1)
        return 1;
    pthread_once(&wake_once, wake_setup);
    const double ns = macs / MACS_PER_NS + bytes / BYTES_PER_NS;
    const double t = ns / wake_ns;
    return t >= (double)threads ? threads : t < 2.0 ? 1 : (uint32_t)t;
}
