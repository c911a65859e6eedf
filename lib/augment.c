/*
 * augment.c - batch augmentation inside fit: every output pixel is read
 * once from the dataset's image (through the crop, the flip and the
 * padding) or set to 0 (zero padding, cutout), so an image costs one pass
 * and no scratch memory. Each example's choices come from a counter-based
 * hash of the batch key and the example's position (rng.h), so the result
 * does not depend on the thread count.
 */
#include <math.h>
#include <string.h>

#include "augment.h"
#include "kernels/parallel.h"
#include "options.h"
#include "rng.h"

/* Hash counters per example: crop, flip, cutout. */
#define DRAWS 3

TLI_OPTIONS_TYPE_V1(augment_type, tl_augment_options, TL_AUGMENT_OPTIONS);

tl_status tl_augment_options_init(tl_augment_options *opts, unsigned int version)
{
    const tl_augment_options d = TL_AUGMENT_OPTIONS_INIT;
    return tli_options_init(opts, version, &d, &augment_type, "tl_augment_options_init");
}

tl_status tli_augment_read(tl_augment_options *dst, const tl_augment_options *src, const char *fn)
{
    const tl_augment_options d = TL_AUGMENT_OPTIONS_INIT;
    *dst = d;
    return tli_options_read(dst, src, &augment_type, fn);
}

bool tli_augment_active(const tl_augment_options *o)
{
    return o && (o->crop_padding > 0 || o->flip_probability > 0.0 || o->cutout_size > 0);
}

tl_status tli_augment_check(const tl_augment_options *o, uint32_t h, uint32_t w, const char *fn)
{
    if (o->padding_mode != TL_PADDING_ZERO && o->padding_mode != TL_PADDING_REFLECT)
        return tli_error(TL_EINVAL, "%s: augment padding_mode %d is not TL_PADDING_ZERO or TL_PADDING_REFLECT", fn,
                         (int)o->padding_mode);
    if (!(o->flip_probability >= 0.0 && o->flip_probability <= 1.0))
        return tli_error(TL_EINVAL, "%s: augment flip_probability %g is not in [0, 1]", fn, o->flip_probability);
    if (!tli_augment_active(o))
        return TL_OK;
    if (h == 1 && w == 1)
        return tli_error(TL_EINVAL,
                         "%s: augmentation (crop_padding %u, flip_probability %g, cutout_size %u) needs images, "
                         "but the data's examples are 1x1 (h and w both 1)",
                         fn, o->crop_padding, o->flip_probability, o->cutout_size);
    if (o->padding_mode == TL_PADDING_REFLECT && (o->crop_padding >= h || o->crop_padding >= w))
        return tli_error(TL_EINVAL,
                         "%s: augment crop_padding %u with reflect padding must be smaller than the image's "
                         "height and width (%ux%u)",
                         fn, o->crop_padding, h, w);
    if (o->crop_padding > h || o->crop_padding > w)
        return tli_error(TL_EINVAL, "%s: augment crop_padding %u is larger than the image (%ux%u)", fn,
                         o->crop_padding, h, w);
    if (o->cutout_size > h || o->cutout_size > w)
        return tli_error(TL_EINVAL, "%s: augment cutout_size %u is larger than the image (%ux%u)", fn,
                         o->cutout_size, h, w);
    return TL_OK;
}

/* Uniform in [0, n) from 32 random bits (Lemire's multiply-shift). */
static uint32_t below(uint64_t bits32, uint32_t n)
{
    return (uint32_t)((bits32 * (uint64_t)n) >> 32);
}

tli_augment_draw tli_augment_choose(const tl_augment_options *o, uint64_t key, size_t i, uint32_t h, uint32_t w)
{
    tli_augment_draw d = {0, 0, false, 0, 0};
    const uint64_t base = (uint64_t)i * DRAWS;
    if (o->crop_padding > 0) {
        const uint64_t r = tli_hash64(key, base);
        d.oy = below(r >> 32, 2 * o->crop_padding + 1);
        d.ox = below(r & 0xffffffffu, 2 * o->crop_padding + 1);
    } else {
        d.oy = d.ox = 0;
    }
    if (o->flip_probability > 0.0) {
        /* flip when the top 32 bits fall below p * 2^32 (p = 1: always). */
        const uint64_t threshold = (uint64_t)(o->flip_probability * 4294967296.0);
        d.flip = (tli_hash64(key, base + 1) >> 32) < threshold;
    }
    if (o->cutout_size > 0) {
        const uint64_t r = tli_hash64(key, base + 2);
        d.cy = below(r >> 32, h);
        d.cx = below(r & 0xffffffffu, w);
    }
    return d;
}

/* Source coordinate of padded coordinate i - p in [-p, n - 1 + p]: -1 for
 * zero padding outside the image. */
static int64_t source(int64_t i, int64_t n, bool reflect)
{
    if (i >= 0 && i < n)
        return i;
    if (!reflect)
        return -1;
    return i < 0 ? -i : 2 * (n - 1) - i;
}

static void one_image(const tl_augment_options *o, const tli_augment_draw *d, const float *src, uint32_t h,
                      uint32_t w, uint32_t c, float *dst)
{
    const int64_t p = o->crop_padding;
    const bool reflect = o->padding_mode == TL_PADDING_REFLECT;
    const int64_t half = o->cutout_size / 2;
    const int64_t y0 = (int64_t)d->cy - half, y1 = y0 + o->cutout_size;
    const int64_t x0 = (int64_t)d->cx - half, x1 = x0 + o->cutout_size;
    for (int64_t y = 0; y < h; y++) {
        const int64_t sy = source(y + d->oy - p, h, reflect);
        const bool row_cut = o->cutout_size > 0 && y >= y0 && y < y1;
        for (int64_t x = 0; x < w; x++) {
            float *out = dst + ((size_t)y * w + (size_t)x) * c;
            const int64_t xs = d->flip ? (int64_t)w - 1 - x : x;
            const int64_t sx = source(xs + d->ox - p, w, reflect);
            if (sy < 0 || sx < 0 || (row_cut && x >= x0 && x < x1))
                memset(out, 0, c * sizeof(float));
            else
                memcpy(out, src + ((size_t)sy * w + (size_t)sx) * c, c * sizeof(float));
        }
    }
}

void tli_augment_gather(uint32_t threads, const tl_augment_options *o, uint64_t key, const float *images,
                        const uint32_t *idx, size_t n, uint32_t h, uint32_t w, uint32_t c, float *out)
{
    tli_augment_gather_at(threads, o, key, 0, images, idx, n, h, w, c, out);
}

void tli_augment_gather_at(uint32_t threads, const tl_augment_options *o, uint64_t key, size_t first,
                           const float *images, const uint32_t *idx, size_t n, uint32_t h, uint32_t w, uint32_t c,
                           float *out)
{
    const size_t ex = (size_t)h * w * c;
    const int nt = n > 1 ? (int)tli_par_threads(threads, 0, (double)n * ex * 2 * sizeof(float)) : 1;
    TLI_OMP_FOR(nt > 1, "omp parallel for num_threads(nt) schedule(static)", (size_t i = 0; i < n; i++), {
        const tli_augment_draw d = tli_augment_choose(o, key, first + i, h, w);
        one_image(o, &d, images + (size_t)idx[i] * ex, h, w, c, out + i * ex);
    });
}
