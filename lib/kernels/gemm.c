/*
 * gemm.c - the GEMM entry point and BLIS set-up. The only file that
 * includes blis.h.
 *
 * Debian's BLIS 0.9.0 does not recognise recent CPUs (Zen 4/5; on some
 * virtual machines it cannot count the FMA units of a Skylake-X either) and
 * then silently runs its haswell or reference kernels at a fraction of the
 * machine's speed. Its only switch is the environment variable
 * BLIS_ARCH_TYPE, read once when BLIS initialises. So, before libtl's first
 * BLIS call, we pick the family from the CPU's reported features - never
 * overriding a value the user set - and record which one BLIS then uses.
 * Reported features (CPUID with the OS's XSAVE support) are what matters:
 * valgrind hides AVX-512 from the program, and forcing skx there would be
 * SIGILL.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include <blis.h>

#include "kernels.h"
#include "parallel.h"

static pthread_once_t blas_once = PTHREAD_ONCE_INIT;
static char blas_info[160];
static const char *blas_arch = "unknown";

static int choose_arch(void)
{
    if (tli_cpu_has_avx512())
        return (int)BLIS_ARCH_SKX;
    if (tli_cpu_has_avx2_fma())
        return (int)BLIS_ARCH_HASWELL;
    return -1;
}

static void blas_setup(void)
{
    const char *how = "set by BLIS_ARCH_TYPE in the environment";
    const char *user = getenv("BLIS_ARCH_TYPE");
    if (user == NULL || user[0] == '\0') {
        int arch = choose_arch();
        if (arch >= 0) {
            char num[16];
            snprintf(num, sizeof num, "%d", arch);
            /* overwrite = 0: a value set concurrently by the host wins. */
            setenv("BLIS_ARCH_TYPE", num, 0);
            how = "chosen by libtl from CPU features";
        } else {
            how = "chosen by BLIS";
        }
    }
    bli_init();
    blas_arch = bli_arch_string(bli_arch_query_id());
    snprintf(blas_info, sizeof blas_info, "BLIS %s, kernels %s (%s)", bli_info_get_version_str(), blas_arch,
             how);
}

void tli_blas_init(void)
{
    pthread_once(&blas_once, blas_setup);
}

const char *tl_backend_info(void)
{
    tli_blas_init();
    return blas_info;
}

/* Rows of C per call in a tall product (a convolution's pixels). */
#define GEMM_ROWS 2048

/* Whether libtl's own threads split a product (below); built without
 * OpenMP, BLIS threads each call itself, as it did before. */
#ifdef _OPENMP
#define OWN_THREADS 1
#else
#define OWN_THREADS 0
#endif

static void sgemm(size_t m, size_t n, size_t k, float alpha, const float *a, ptrdiff_t rsa, ptrdiff_t csa,
                  const float *b, ptrdiff_t rsb, ptrdiff_t csb, float beta, float *c, ptrdiff_t rsc, ptrdiff_t csc,
                  uint32_t threads)
{
    rntm_t rntm = BLIS_RNTM_INITIALIZER;
    bli_rntm_set_num_threads((dim_t)threads, &rntm);
    bli_sgemm_ex(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, (dim_t)m, (dim_t)n, (dim_t)k, &alpha, (float *)a,
                 (inc_t)rsa, (inc_t)csa, (float *)b, (inc_t)rsb, (inc_t)csb, &beta, c, (inc_t)rsc, (inc_t)csc, NULL,
                 &rntm);
}

void tli_gemm(uint32_t threads, size_t m, size_t n, size_t k, float alpha, const float *a, ptrdiff_t rsa,
              ptrdiff_t csa, const float *b, ptrdiff_t rsb, ptrdiff_t csb, float beta, float *c,
              ptrdiff_t rsc, ptrdiff_t csc)
{
    if (m == 0 || n == 0)
        return;
    tli_blas_init();
    /* The thread count travels with the call: BLIS's global setting belongs
     * to the host program. */
    /* A small product (a small dense layer) stays on one thread: BLIS's
     * thread start-up and barriers would cost more than a core saves. */
    threads = tli_par_threads(threads, (double)m * (double)n * (double)k, 0);
    if (m >= 2 * GEMM_ROWS && (OWN_THREADS || threads == 1)) {
        /* A tall product (a convolution's GEMM over pixels) goes in fixed
         * blocks of rows, one single-threaded BLIS call each, the blocks
         * spread over our threads: BLIS's own threads meet in barriers
         * that spin, and with n as small as 24 (MobileNetV2's 1x1
         * projections) they spent more time there than in the product.
         * The blocks are the same for any thread count, so are the bits. */
        const long blocks = (long)((m + GEMM_ROWS - 1) / GEMM_ROWS);
        TLI_OMP_FOR(threads > 1, "omp parallel for num_threads(threads) schedule(static)",
                    (long i = 0; i < blocks; i++), {
                        const size_t r0 = (size_t)i * GEMM_ROWS, rows = m - r0 < GEMM_ROWS ? m - r0 : GEMM_ROWS;
                        sgemm(rows, n, k, alpha, a + (ptrdiff_t)r0 * rsa, rsa, csa, b, rsb, csb, beta,
                              c + (ptrdiff_t)r0 * rsc, rsc, csc, 1);
                    });
        return;
    }
    if (OWN_THREADS && threads > 1 && m > 1 && (m >= 64 || n >= 64)) {
        /* Otherwise (a weight gradient: few rows, a long sum over pixels)
         * each thread takes whole 32-row (or column) blocks of C for one
         * single-threaded call, for the same reason. BLIS computes each
         * value of C alike whichever part of C it is called for (no split
         * of k), so the bits do not depend on the split (test_kernels.c). */
        const bool by_rows = m >= 64;
        const size_t len = by_rows ? m : n, blocks = (len + 31) / 32;
        const uint32_t nt = blocks < threads ? (uint32_t)blocks : threads;
        TLI_OMP_FOR(true, "omp parallel for num_threads(nt) schedule(static)", (uint32_t t = 0; t < nt; t++), {
            const size_t lo = blocks * t / nt * 32, hi = t + 1 == nt ? len : blocks * (t + 1) / nt * 32;
            if (by_rows)
                sgemm(hi - lo, n, k, alpha, a + (ptrdiff_t)lo * rsa, rsa, csa, b, rsb, csb, beta,
                      c + (ptrdiff_t)lo * rsc, rsc, csc, 1);
            else
                sgemm(m, hi - lo, k, alpha, a, rsa, csa, b + (ptrdiff_t)lo * csb, rsb, csb, beta,
                      c + (ptrdiff_t)lo * csc, rsc, csc, 1);
        });
        return;
    }
    rntm_t rntm = BLIS_RNTM_INITIALIZER;
    bli_rntm_set_num_threads((dim_t)(threads ? threads : 1), &rntm);
    if (m == 1 && k > 0) {
        /* One row (a batch of one): c = B^T a is a matrix-vector product,
         * which BLIS does without packing B - several times faster. */
        bli_sgemv_ex(BLIS_TRANSPOSE, BLIS_NO_CONJUGATE, (dim_t)k, (dim_t)n, &alpha, (float *)b, (inc_t)rsb,
                     (inc_t)csb, (float *)a, (inc_t)csa, &beta, c, (inc_t)csc, NULL, &rntm);
        return;
    }
    sgemm(m, n, k, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc, threads ? threads : 1);
}
