/* version.c - the running library's version, and small platform helpers. */
#include <time.h>
#include <unistd.h>

#include "core.h"

const char *tl_version(void)
{
    return TL_VERSION_STRING;
}

int tl_version_number(void)
{
    return TL_VERSION_NUMBER;
}

uint32_t tli_cpu_count(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1)
        return 1;
    return n > 1024 ? 1024 : (uint32_t)n;
}

double tli_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
