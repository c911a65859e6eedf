/* cpu.c - what the CPU can run, asked once. The answers come from CPUID as
 * the OS reports it (XSAVE state included), so under valgrind, which hides
 * AVX-512, the portable paths are taken. */
#include <pthread.h>

#include "kernels.h"

static pthread_once_t cpu_once = PTHREAD_ONCE_INIT;
static bool has_avx512, has_avx2_fma;

static void probe(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    has_avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
                 __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
    has_avx2_fma = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
}

bool tli_cpu_has_avx512(void)
{
    pthread_once(&cpu_once, probe);
    return has_avx512;
}

bool tli_cpu_has_avx2_fma(void)
{
    pthread_once(&cpu_once, probe);
    return has_avx2_fma;
}
