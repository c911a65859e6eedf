/*
 * core.h - what every libtl source file needs: the public API, error
 * reporting, checked allocation and size arithmetic. Private to lib/.
 */
#ifndef TLI_CORE_H
#define TLI_CORE_H

#ifndef TL_BUILDING_LIBRARY
#define TL_BUILDING_LIBRARY 1
#endif

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tl/tl.h"

#if defined(__GNUC__) || defined(__clang__)
#define TLI_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define TLI_LIKELY(x) __builtin_expect(!!(x), 1)
#define TLI_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define TLI_PRINTF(f, a)
#define TLI_LIKELY(x) (x)
#define TLI_UNLIKELY(x) (x)
#endif

/* Record `status` and a formatted sentence as the calling thread's last
 * error, and return `status` so callers can write `return tli_error(...)`. */
tl_status tli_error(tl_status status, const char *fmt, ...) TLI_PRINTF(2, 3);

/* Prefix the current last-error text with "context: " (used when a helper
 * raised the error and the caller knows the file or layer). */
void tli_error_prefix(const char *fmt, ...) TLI_PRINTF(1, 2);

/* x as text for files and programs: the fewest digits that read back as
 * the same float (as_float) or double, '.' as the decimal point in every
 * locale. */
void tli_format_number(char *out, size_t cap, double x, bool as_float);

/* Allocation. Every allocation in libtl goes through these so that tests can
 * make the n-th one fail (tli_alloc_fail_at). They never set an error; the
 * caller reports TL_ENOMEM with what it was allocating. */
void *tli_malloc(size_t size);
void *tli_calloc(size_t count, size_t size);
void *tli_realloc(void *ptr, size_t size);
void tli_free(void *ptr);
/* 64-byte aligned memory (cache line, AVX-512 vector) freed with tli_free_aligned. */
void *tli_malloc_aligned(size_t size);
void tli_free_aligned(void *ptr);
char *tli_strdup(const char *s);

/* Test hook: the n-th allocation from now on the calling thread fails
 * (n = 1: the next one); 0 disables. Returns how many allocations were made
 * on this thread since the last call (to size loops over every n). */
long tli_alloc_fail_at(long n);

/* a * b and a + b into *out; false when the result does not fit in size_t. */
static inline bool tli_mul_ok(size_t a, size_t b, size_t *out)
{
    return !__builtin_mul_overflow(a, b, out);
}
static inline bool tli_add_ok(size_t a, size_t b, size_t *out)
{
    return !__builtin_add_overflow(a, b, out);
}

/* a * b, or UINT64_MAX when it does not fit: a product of three or more
 * 32-bit sizes (h * w * c, kh * kw * in * out) can pass 2^64 and wrap to a
 * small number, so such products saturate and are then compared against a
 * limit. */
static inline uint64_t tli_mul_sat(uint64_t a, uint64_t b)
{
    uint64_t r;
    return __builtin_mul_overflow(a, b, &r) ? UINT64_MAX : r;
}

/* Free an optimizer that a model owned (tl_model_free(); optim.c).
 * NULL is a no-op. */
void tli_optimizer_release(tl_optimizer *opt);

/* Number of online CPUs (at least 1). */
uint32_t tli_cpu_count(void);

/* Monotonic wall clock in seconds. */
double tli_now(void);

#endif /* TLI_CORE_H */
