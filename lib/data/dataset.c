/* dataset.c - datasets from memory: create, targets, getters, free. */
#include <string.h>

#include "dataset.h"

tl_status tli_dataset_adopt(tl_dataset **out, float *images, int32_t *labels, size_t n, uint32_t h, uint32_t w,
                            uint32_t c, uint32_t num_classes)
{
    *out = NULL;
    tl_dataset *ds = tli_calloc(1, sizeof *ds);
    if (ds == NULL) {
        tli_free_aligned(images);
        tli_free(labels);
        return tli_error(TL_ENOMEM, "out of memory allocating a dataset");
    }
    ds->n = n;
    ds->h = h;
    ds->w = w;
    ds->c = c;
    ds->num_classes = num_classes;
    ds->example_size = (size_t)h * w * c;
    ds->images = ds->own_images = images;
    ds->labels = ds->own_labels = labels;
    *out = ds;
    return TL_OK;
}

tl_status tl_dataset_create(tl_dataset **out, const float *images, const int32_t *labels, size_t n, uint32_t h,
                            uint32_t w, uint32_t c, uint32_t num_classes, tl_data_mode mode)
{
    const char *fn = "tl_dataset_create";
    if (out == NULL)
        return tli_error(TL_EINVAL, "%s: out is NULL", fn);
    *out = NULL;
    if (images == NULL || labels == NULL)
        return tli_error(TL_EINVAL, "%s: %s is NULL", fn, images ? "labels" : "images");
    if (n == 0 || h == 0 || w == 0 || c == 0)
        return tli_error(TL_EINVAL, "%s: %zu examples of (%u, %u, %u): every size must be > 0", fn, n, h, w, c);
    if (num_classes == 0)
        return tli_error(TL_EINVAL, "%s: num_classes must be > 0", fn);
    if (mode != TL_DATA_COPY && mode != TL_DATA_BORROW)
        return tli_error(TL_EINVAL, "%s: unknown mode %d", fn, (int)mode);
    size_t ex = (size_t)h * w * c, elems, bytes;
    if (tli_mul_sat(tli_mul_sat(h, w), c) > (uint64_t)INT32_MAX || !tli_mul_ok(n, ex, &elems) ||
        !tli_mul_ok(elems, sizeof(float), &bytes) || n > (size_t)UINT32_MAX)
        return tli_error(TL_ETOOBIG, "%s: %zu examples of (%u, %u, %u) are too many values", fn, n, h, w, c);
    for (size_t i = 0; i < n; i++)
        if (labels[i] < 0 || (uint32_t)labels[i] >= num_classes)
            return tli_error(TL_ERANGE, "%s: label %d of example %zu is outside [0, %u)", fn, labels[i], i,
                             num_classes);
    if (mode == TL_DATA_BORROW) {
        tl_dataset *ds = tli_calloc(1, sizeof *ds);
        if (ds == NULL)
            return tli_error(TL_ENOMEM, "%s: out of memory", fn);
        ds->n = n;
        ds->h = h;
        ds->w = w;
        ds->c = c;
        ds->num_classes = num_classes;
        ds->example_size = ex;
        ds->images = images;
        ds->labels = labels;
        *out = ds;
        return TL_OK;
    }
    float *img = tli_malloc_aligned(bytes);
    int32_t *lab = tli_malloc(n * sizeof(int32_t));
    if (img == NULL || lab == NULL) {
        tli_free_aligned(img);
        tli_free(lab);
        return tli_error(TL_ENOMEM, "%s: out of memory copying %zu examples (%.1f MiB)", fn, n,
                         (double)bytes / 1048576.0);
    }
    memcpy(img, images, bytes);
    memcpy(lab, labels, n * sizeof(int32_t));
    tl_status st = tli_dataset_adopt(out, img, lab, n, h, w, c, num_classes);
    if (st)
        tli_error_prefix("%s", fn);
    return st;
}

tl_status tl_dataset_set_targets(tl_dataset *ds, const float *targets, size_t n, size_t k, tl_data_mode mode)
{
    const char *fn = "tl_dataset_set_targets";
    if (ds == NULL || targets == NULL)
        return tli_error(TL_EINVAL, "%s: %s is NULL", fn, ds ? "targets" : "dataset");
    if (k == 0)
        return tli_error(TL_EINVAL, "%s: k must be > 0", fn);
    if (mode != TL_DATA_COPY && mode != TL_DATA_BORROW)
        return tli_error(TL_EINVAL, "%s: unknown mode %d", fn, (int)mode);
    if (n != ds->n)
        return tli_error(TL_ESHAPE, "%s: %zu target rows for a dataset of %zu examples", fn, n, ds->n);
    size_t elems, bytes;
    if (k > (size_t)INT32_MAX || !tli_mul_ok(n, k, &elems) || !tli_mul_ok(elems, sizeof(float), &bytes))
        return tli_error(TL_ETOOBIG, "%s: %zu x %zu targets are too many values", fn, n, k);
    float *own = NULL;
    if (mode == TL_DATA_COPY) {
        own = tli_malloc_aligned(bytes);
        if (own == NULL)
            return tli_error(TL_ENOMEM, "%s: out of memory copying %zu x %zu targets", fn, n, k);
        memcpy(own, targets, bytes);
    }
    tli_free_aligned(ds->own_targets);
    ds->own_targets = own;
    ds->targets = own ? own : targets;
    ds->k = k;
    return TL_OK;
}

void tl_dataset_free(tl_dataset *ds)
{
    if (ds == NULL)
        return;
    tli_free_aligned(ds->own_images);
    tli_free(ds->own_labels);
    tli_free_aligned(ds->own_targets);
    tli_free(ds);
}

size_t tl_dataset_count(const tl_dataset *ds)
{
    return ds ? ds->n : 0;
}

tl_status tl_dataset_shape(uint32_t *out_height, uint32_t *out_width, uint32_t *out_channels, const tl_dataset *ds)
{
    if (ds == NULL)
        return tli_error(TL_EINVAL, "tl_dataset_shape: dataset is NULL");
    if (out_height)
        *out_height = ds->h;
    if (out_width)
        *out_width = ds->w;
    if (out_channels)
        *out_channels = ds->c;
    return TL_OK;
}

uint32_t tl_dataset_num_classes(const tl_dataset *ds)
{
    return ds ? ds->num_classes : 0;
}

const float *tl_dataset_images(const tl_dataset *ds)
{
    return ds ? ds->images : NULL;
}

const int32_t *tl_dataset_labels(const tl_dataset *ds)
{
    return ds ? ds->labels : NULL;
}

const float *tl_dataset_targets(const tl_dataset *ds, size_t *out_k)
{
    if (out_k)
        *out_k = ds ? ds->k : 0;
    return ds ? ds->targets : NULL;
}
