/*
 * dataset.h - the dataset's internals, for the readers and operations in
 * lib/data/ and for training.
 */
#ifndef TLI_DATASET_H
#define TLI_DATASET_H

#include "../core.h"

struct tl_dataset {
    size_t n;
    uint32_t h, w, c;
    uint32_t num_classes;
    size_t example_size;    /* h * w * c */
    const float *images;    /* n * example_size */
    const int32_t *labels;  /* n */
    const float *targets;   /* n * k, or NULL */
    size_t k;
    /* What the dataset owns (freed with it); NULL for borrowed arrays. */
    float *own_images;
    int32_t *own_labels;
    float *own_targets;
};

/* Wrap images from tli_malloc_aligned and labels from tli_malloc: the
 * dataset takes them, even on failure (they are freed then). Labels must
 * already be checked against num_classes. */
tl_status tli_dataset_adopt(tl_dataset **out, float *images, int32_t *labels, size_t n, uint32_t h, uint32_t w,
                            uint32_t c, uint32_t num_classes);

/* Per-channel mean and population variance of every pixel of every
 * example, in double, two passes (tl_dataset_channel_stats): mean and var
 * hold ds->c values each. */
void tli_dataset_channel_moments(const tl_dataset *ds, double *mean, double *var);

#endif /* TLI_DATASET_H */
