/*
 * tl/train.h - fit, evaluate, single training steps, progress callbacks.
 *
 * Training needs a compiled model (tl_model_compile()). The library prints
 * nothing: progress reaches the caller through the callbacks below.
 * Determinism: with the same seeds and the same thread count, training gives
 * bit-identical weights.
 * Thread safety: one model per thread; a dataset may be shared (read-only).
 */
#ifndef TL_TRAIN_H
#define TL_TRAIN_H

#include "common.h"
#include "data.h"
#include "model.h"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * What a progress callback receives. The struct is filled by libtl; fields
 * are only ever added at the end and `struct_size` tells how many there are.
 * Valid during the callback only.
 */
typedef struct tl_progress {
    size_t struct_size;        /**< sizeof(tl_progress) in the running library */
    uint32_t epoch;            /**< 0-based epoch of this fit call */
    uint32_t epochs;           /**< epochs of this fit call */
    size_t batch;              /**< batches done in this epoch (1-based count) */
    size_t batches;            /**< batches per epoch */
    size_t samples;            /**< examples seen in this epoch */
    double loss;               /**< mean training loss over this epoch so far */
    double accuracy;           /**< training accuracy over this epoch so far, in [0, 1] */
    int has_validation;        /**< 1 in the epoch callback when a validation set was given */
    double val_loss;           /**< validation loss (epoch callback, has_validation) */
    double val_accuracy;       /**< validation accuracy (epoch callback, has_validation) */
    double seconds;            /**< wall time since this epoch started */
    double samples_per_second; /**< training throughput in this epoch so far */
    size_t skipped_batches;    /**< batches skipped for non-finite values (TL_NONFINITE_SKIP) */
} tl_progress;

/** Progress callback: return 0 to go on, non-zero to stop (fit returns TL_ECANCELED). */
typedef int (*tl_progress_fn)(const tl_progress *progress, void *payload);

/** What fit does when a loss or gradient is NaN or infinite. */
typedef enum tl_nonfinite_policy {
    TL_NONFINITE_STOP = 0, /**< stop with TL_ENUMERIC; the weights keep the last finite update */
    TL_NONFINITE_SKIP = 1  /**< skip the batch (no update) and go on; counted in tl_progress */
} tl_nonfinite_policy;

/** Options of tl_model_fit(). Fill with TL_FIT_OPTIONS_INIT or tl_fit_options_init(). */
typedef struct tl_fit_options {
    unsigned int version;         /**< TL_FIT_OPTIONS_VERSION */
    uint32_t epochs;              /**< default 1 */
    uint32_t batch_size;          /**< default 32, as Keras */
    int shuffle;                  /**< non-zero (default): reshuffle every epoch */
    uint64_t seed;                /**< 0 (default): continue the model's own training random
                                       stream (seeded by the model seed, saved in checkpoints);
                                       otherwise restart that stream from this seed */
    const tl_dataset *validation; /**< optional; evaluated after each epoch */
    tl_progress_fn on_batch;      /**< optional; after every batch */
    tl_progress_fn on_epoch;      /**< optional; after every epoch (and its validation) */
    void *payload;                /**< passed to the callbacks */
    tl_nonfinite_policy on_nonfinite;
} tl_fit_options;
#define TL_FIT_OPTIONS_VERSION 1
#define TL_FIT_OPTIONS_INIT \
    { TL_FIT_OPTIONS_VERSION, 1, 32, 1, 0, NULL, NULL, NULL, NULL, TL_NONFINITE_STOP }
/** Fill `opts` with the defaults of `version`. Errors: TL_EINVAL, TL_EVERSION. */
TL_API tl_status tl_fit_options_init(tl_fit_options *opts, unsigned int version);

/**
 * Train `model` on `train` (Keras fit()). The last batch of an epoch may be
 * smaller. `opts` NULL means the defaults.
 * Errors: TL_EINVAL (NULL model or data, epochs or batch size 0),
 * TL_EVERSION, TL_ESTATE (not compiled), TL_ESHAPE (the data's example
 * shape or class count does not fit the model's input / output, or the
 * loss needs targets of another width; the message gives both shapes),
 * TL_ENUMERIC (non-finite loss or gradient under TL_NONFINITE_STOP: the
 * message names the epoch, the batch and the first layer affected),
 * TL_ECANCELED (a callback returned non-zero), TL_ENOMEM. Work done before an
 * error (completed steps) is kept.
 */
TL_API tl_status tl_model_fit(tl_model *model, const tl_dataset *train, const tl_fit_options *opts);

/**
 * Mean loss and accuracy of the model on `data` (Keras evaluate()), in
 * chunks of `batch_size` (0 means 64), with the compiled loss. No optimizer
 * is needed: a model never compiled is evaluated with sparse categorical
 * cross-entropy, and tl_model_compile(model, NULL, loss) chooses another
 * loss without an optimizer. Either out pointer may be NULL.
 * Errors: as tl_model_fit() (no TL_ECANCELED; TL_EINVAL when the last
 * layer's activation does not fit the loss).
 */
TL_API tl_status tl_model_evaluate(double *out_loss, double *out_accuracy, tl_model *model,
                                   const tl_dataset *data, uint32_t batch_size);

/**
 * One optimizer step on one batch of `n` examples given in memory:
 * `inputs` n*h*w*c floats, `labels` n int32 (sparse cross-entropy) or
 * `targets` n*k floats (the other losses; labels are then used one-hot when
 * targets is NULL). `out_loss` (may be NULL) receives the batch's mean loss
 * before the update.
 * Errors: TL_EINVAL (NULL, n 0), TL_ESTATE (not compiled), TL_ERANGE (a
 * label outside the output width), TL_ENUMERIC (non-finite loss or
 * gradient; no update is made), TL_ENOMEM.
 */
TL_API tl_status tl_model_train_step(double *out_loss, tl_model *model, const float *inputs,
                                     const int32_t *labels, const float *targets, size_t n);

#ifdef __cplusplus
}
#endif

#endif /* TL_TRAIN_H */
