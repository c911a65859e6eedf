/* zalloc.h - zlib's memory goes through libtl's allocator, so allocation
 * failures can be injected into compression too (tli_alloc_fail_at). */
#ifndef TLI_IO_ZALLOC_H
#define TLI_IO_ZALLOC_H

#include <zlib.h>

#include "../core.h"

static inline voidpf tli_zalloc(voidpf opaque, uInt items, uInt size)
{
    (void)opaque;
    size_t bytes;
    if (!tli_mul_ok(items, size, &bytes))
        return Z_NULL;
    return tli_malloc(bytes);
}

static inline void tli_zfree(voidpf opaque, voidpf p)
{
    (void)opaque;
    tli_free(p);
}

#endif /* TLI_IO_ZALLOC_H */
