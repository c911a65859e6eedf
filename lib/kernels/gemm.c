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
    rntm_t rntm = BLIS_RNTM_INITIALIZER;
    bli_rntm_set_num_threads((dim_t)(threads ? threads : 1), &rntm);
    if (m == 1 && k > 0) {
        /* One row (a batch of one): c = B^T a is a matrix-vector product,
         * which BLIS does without packing B - several times faster. */
        bli_sgemv_ex(BLIS_TRANSPOSE, BLIS_NO_CONJUGATE, (dim_t)k, (dim_t)n, &alpha, (float *)b, (inc_t)rsb,
                     (inc_t)csb, (float *)a, (inc_t)csa, &beta, c, (inc_t)csc, NULL, &rntm);
        return;
    }
    bli_sgemm_ex(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, (dim_t)m, (dim_t)n, (dim_t)k, &alpha, (float *)a,
                 (inc_t)rsa, (inc_t)csa, (float *)b, (inc_t)rsb, (inc_t)csb, &beta, c, (inc_t)rsc, (inc_t)csc,
                 NULL, &rntm);
}
