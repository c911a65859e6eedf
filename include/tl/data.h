/*
 * tl/data.h - datasets: images (float32 NHWC) with int32 labels.
 *
 * A dataset holds n examples of h x w x c floats, one int32 label per
 * example in [0, num_classes), and optionally n x k float targets (for
 * categorical cross-entropy with soft labels, or mean squared error).
 *
 * Thread safety: a dataset is never modified by training or evaluation, so
 * one dataset may be read by several models in several threads at once.
 * Calls that modify a dataset need exclusive access.
 */
#ifndef TL_DATA_H
#define TL_DATA_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tl_dataset tl_dataset;

/** How a dataset constructor treats caller memory. */
typedef enum tl_data_mode {
    /** The dataset copies the arrays; the caller may free them at once. */
    TL_DATA_COPY = 0,
    /** The dataset keeps pointers to the caller's arrays, which must stay
     *  valid and unchanged until the dataset is freed. Nothing is copied. */
    TL_DATA_BORROW = 1
} tl_data_mode;

/**
 * Create a dataset from memory: `images` holds n*h*w*c floats (NHWC),
 * `labels` n int32 values in [0, num_classes).
 * Ownership: the caller owns *out (tl_dataset_free()); see tl_data_mode.
 * Errors: TL_EINVAL (NULL pointers, n or a dimension 0, num_classes 0 or
 * mode unknown), TL_ERANGE (a label outside [0, num_classes): the message
 * gives the example's index and label), TL_ETOOBIG (sizes overflow),
 * TL_ENOMEM. On error *out is NULL.
 */
TL_API tl_status tl_dataset_create(tl_dataset **out, const float *images, const int32_t *labels, size_t n,
                                   uint32_t height, uint32_t width, uint32_t channels, uint32_t num_classes,
                                   tl_data_mode mode);

/**
 * Attach float targets (n x k, row-major) to a dataset, replacing any
 * previous ones. Used by TL_LOSS_CATEGORICAL_CROSSENTROPY and
 * TL_LOSS_MEAN_SQUARED_ERROR instead of one-hot labels.
 * Errors: TL_EINVAL (NULL, k 0), TL_ESHAPE (n differs from the dataset's
 * count), TL_ENOMEM. On error the dataset is unchanged.
 */
TL_API tl_status tl_dataset_set_targets(tl_dataset *ds, const float *targets, size_t n, size_t k,
                                        tl_data_mode mode);

/** Free a dataset (and the arrays it copied). NULL is a no-op. */
TL_API void tl_dataset_free(tl_dataset *ds);

/** Number of examples; 0 when NULL. */
TL_API size_t tl_dataset_count(const tl_dataset *ds);

/** Shape of one example (h, w, c); each out pointer may be NULL. Errors: TL_EINVAL (ds NULL). */
TL_API tl_status tl_dataset_shape(uint32_t *out_height, uint32_t *out_width, uint32_t *out_channels,
                                  const tl_dataset *ds);

/** Number of classes; 0 when NULL. */
TL_API uint32_t tl_dataset_num_classes(const tl_dataset *ds);

/** Read-only view of the images (n*h*w*c floats), labels (n) and targets
 *  (n*k, or NULL when none; k through `out_k`, which may be NULL). Valid
 *  until the dataset is modified or freed. NULL when ds is NULL. */
TL_API const float *tl_dataset_images(const tl_dataset *ds);
TL_API const int32_t *tl_dataset_labels(const tl_dataset *ds);
TL_API const float *tl_dataset_targets(const tl_dataset *ds, size_t *out_k);

#ifdef __cplusplus
}
#endif

#endif /* TL_DATA_H */
