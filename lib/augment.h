/*
 * augment.h - the augmentation of training batches inside fit (crop after
 * padding, horizontal flip, cutout; see tl_augment_options in tl/train.h).
 */
#ifndef TLI_AUGMENT_H
#define TLI_AUGMENT_H

#include <stdbool.h>

#include "core.h"

/* The caller's options (src, any version; NULL: the defaults) as a
 * current-size struct. Errors: TL_EVERSION. */
tl_status tli_augment_read(tl_augment_options *dst, const tl_augment_options *src, const char *fn);

/* True when the options change anything (then fit draws a key per batch). */
bool tli_augment_active(const tl_augment_options *o);

/* TL_EINVAL (a sentence naming the option and its value, prefixed by fn)
 * when the options do not fit h x w images. */
tl_status tli_augment_check(const tl_augment_options *o, uint32_t h, uint32_t w, const char *fn);

/* The choices for example `i` of a batch drawn with `key`: crop offsets in
 * [0, 2p], flip, cutout centre. Exposed for the tests. */
typedef struct tli_augment_draw {
    uint32_t oy, ox;
    bool flip;
    uint32_t cy, cx;
} tli_augment_draw;
tli_augment_draw tli_augment_choose(const tl_augment_options *o, uint64_t key, size_t i, uint32_t h, uint32_t w);

/* Write examples idx[0..n) of `images` (h x w x c each), augmented, into
 * out (n examples): one pass per image, threaded over images. */
void tli_augment_gather(uint32_t threads, const tl_augment_options *o, uint64_t key, const float *images,
                        const uint32_t *idx, size_t n, uint32_t h, uint32_t w, uint32_t c, float *out);

/* The same for a process's part of a global batch (tl_fit_options.shard_*):
 * its examples are positions first.. of the batch, and draw the choices
 * one process would give them there. */
void tli_augment_gather_at(uint32_t threads, const tl_augment_options *o, uint64_t key, size_t first,
                           const float *images, const uint32_t *idx, size_t n, uint32_t h, uint32_t w, uint32_t c,
                           float *out);

#endif /* TLI_AUGMENT_H */
