/* alloc.c - the one place libtl allocates, with a failure-injection hook. */
#include <stdlib.h>
#include <string.h>

#include "core.h"

/* Per thread, so a test that injects failures does not disturb other threads. */
static _Thread_local long fail_countdown; /* 0: off; 1: the next allocation fails */
static _Thread_local long alloc_count;

long tli_alloc_fail_at(long n)
{
    long made = alloc_count;
    alloc_count = 0;
    fail_countdown = n > 0 ? n : 0;
    return made;
}

static bool should_fail(void)
{
    alloc_count++;
    if (TLI_LIKELY(fail_countdown == 0))
        return false;
    return --fail_countdown == 0;
}

void *tli_malloc(size_t size)
{
    if (should_fail())
        return NULL;
    return malloc(size ? size : 1);
}

void *tli_calloc(size_t count, size_t size)
{
    if (should_fail())
        return NULL;
    if (count == 0 || size == 0)
        count = size = 1;
    return calloc(count, size);
}

void *tli_realloc(void *ptr, size_t size)
{
    if (should_fail())
        return NULL;
    return realloc(ptr, size ? size : 1);
}

void tli_free(void *ptr)
{
    free(ptr);
}

void *tli_malloc_aligned(size_t size)
{
    if (should_fail())
        return NULL;
    size_t rounded = (size + 63) & ~(size_t)63;
    if (rounded < size)
        return NULL;
    return aligned_alloc(64, rounded ? rounded : 64);
}

void tli_free_aligned(void *ptr)
{
    free(ptr);
}

char *tli_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = tli_malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}
