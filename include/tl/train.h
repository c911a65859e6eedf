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
#include "optim.h"

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
    double learning_rate;      /**< since 1.1: the learning rate of this batch's update (the base rate
                                    through the optimizer's schedule, before layers' lr scales; a
                                    skipped batch: the rate it would have had); in the epoch callback,
                                    the epoch's last batch's. The epoch callback comes after the
                                    schedule's end-of-epoch update: tl_optimizer_current_learning_rate()
                                    there gives the next epoch's rate */
    uint32_t top_k;            /**< since 1.1: k of the top-k figures below (tl_fit_options.top_k); 0 when
                                    they are not measured */
    double top_k_accuracy;     /**< since 1.1: share of this epoch's training examples so far whose true
                                    class is among the model's k first (counted on the forward pass of each
                                    update, like accuracy; skipped batches excluded); NaN when top_k is 0 */
    double val_top_k_accuracy; /**< since 1.1: the same on the validation set (epoch callback,
                                    has_validation), by tl_model_evaluate_metrics()'s rule and code; NaN
                                    when top_k is 0 or there is no validation */
} tl_progress;

/** Progress callback: return 0 to go on, non-zero to stop (fit returns TL_ECANCELED). */
typedef int (*tl_progress_fn)(const tl_progress *progress, void *payload);

/** What fit does when a loss or gradient is NaN or infinite. */
typedef enum tl_nonfinite_policy {
    TL_NONFINITE_STOP = 0, /**< stop with TL_ENUMERIC; the weights keep the last finite update */
    TL_NONFINITE_SKIP = 1  /**< skip the batch (no update) and go on; counted in tl_progress */
} tl_nonfinite_policy;

/* ---- the training recipe: augmentation, the batch hook, early stopping, history ---- */

/** How tl_augment_options.crop_padding pads an image before the crop. */
typedef enum tl_padding_mode {
    TL_PADDING_ZERO = 0,   /**< zeros (PyTorch padding_mode "constant", fill 0) */
    TL_PADDING_REFLECT = 1 /**< mirror without repeating the edge: d c b | a b c d | c b a (PyTorch "reflect") */
} tl_padding_mode;

/**
 * Augmentation applied by tl_model_fit() to every training batch as it is
 * gathered (the dataset is never copied or changed; evaluation, validation
 * and prediction never augment). For each example, in this order:
 *  1. crop: pad by crop_padding pixels on every side (padding_mode), then
 *     take the h x w window at offsets (oy, ox), each uniform in
 *     [0, 2 * crop_padding] (torchvision RandomCrop(size=(h, w),
 *     padding=crop_padding, padding_mode));
 *  2. horizontal flip with probability flip_probability;
 *  3. cutout (DeVries & Taylor 2017): a centre (cy, cx) uniform over the
 *     h x w pixels; rows [cy - s/2, cy - s/2 + s) and columns
 *     [cx - s/2, cx - s/2 + s), s = cutout_size and s/2 rounded down,
 *     clipped at the borders, are set to 0 in every channel (the square may
 *     lie partly outside the image; for an even s this is exactly their
 *     code's rule).
 * Randomness: when any of the three is on, fit draws one 64-bit key per
 * batch from the model's training random stream (before the batch's dropout
 * key) and derives every example's choices from that key and the example's
 * position in the batch, so the batches do not depend on the thread count
 * and a run resumed from a checkpoint repeats them exactly. With all three
 * off nothing is drawn: the stream is that of a fit without augmentation.
 * Fill with TL_AUGMENT_OPTIONS_INIT or tl_augment_options_init(); the
 * defaults do nothing.
 */
typedef struct tl_augment_options {
    unsigned int version;         /**< TL_AUGMENT_OPTIONS_VERSION */
    uint32_t crop_padding;        /**< p: 0 (default) no crop; <= h and <= w (zero padding), < h and < w
                                       (reflect) */
    tl_padding_mode padding_mode; /**< default TL_PADDING_ZERO */
    double flip_probability;      /**< in [0, 1]; default 0 (no flip); 0.5 is the usual choice */
    uint32_t cutout_size;         /**< side of the erased square in pixels; 0 (default) none; <= h and <= w */
} tl_augment_options;
#define TL_AUGMENT_OPTIONS_VERSION 1
#define TL_AUGMENT_OPTIONS_INIT { TL_AUGMENT_OPTIONS_VERSION, 0, TL_PADDING_ZERO, 0.0, 0 }
/** Fill `opts` with the defaults of `version`. Errors: TL_EINVAL, TL_EVERSION. */
TL_API tl_status tl_augment_options_init(tl_augment_options *opts, unsigned int version);

/**
 * One training batch as tl_fit_options.on_batch_begin sees it: gathered
 * and augmented, before the forward pass. Filled by libtl; fields are only
 * ever added at the end (`struct_size`). Valid during the callback only.
 */
typedef struct tl_batch {
    size_t struct_size;    /**< sizeof(tl_batch) in the running library */
    uint32_t epoch;        /**< 0-based epoch of this fit call */
    size_t batch;          /**< 0-based batch of this epoch */
    size_t n;              /**< examples in this batch (the last one may be smaller) */
    uint32_t height, width, channels;
    float *inputs;         /**< n * height * width * channels floats, example after example, channels last;
                                may be changed */
    int32_t *labels;       /**< n class labels; may be changed (fit range-checks them as usual: a label
                                outside the model's outputs ends fit with TL_ERANGE) */
    float *targets;        /**< n * target_width floats when the loss reads float targets, else NULL;
                                may be changed */
    size_t target_width;   /**< values per example in targets (0 when targets is NULL) */
    const uint32_t *index; /**< n: the dataset index of each example of the batch */
} tl_batch;

/**
 * Batch hook: may change the batch in place (e.g. mixup, label noise).
 * Return 0 to go on, non-zero to stop (fit returns TL_ECANCELED). It must
 * make no call on the model being trained (or its optimizer or datasets
 * being written); it may read other models and call libtl on them.
 */
typedef int (*tl_batch_fn)(tl_batch *batch, void *payload);

/**
 * Early stopping (Keras EarlyStopping). "Improved" means, for the monitored
 * validation figure v of an epoch: v < best - min_delta (val_loss) or
 * v > best + min_delta (val_accuracy); the first epoch of a fit always
 * improves unless v is NaN, and NaN never improves. Fit stops after
 * `patience` epochs in a row without improvement; stopping early is a normal
 * return (TL_OK) and the history marks the epoch (TL_HISTORY_STOPPED).
 * Resuming (since 1.1): the state - the best value, the best epoch, the
 * epochs without improvement and, with restore_best, the best weights -
 * belongs to the run, not to one fit call. A fit that returns TL_OK
 * forgets it, so the next fit starts afresh. A fit that returns anything
 * else (a callback cancelled it, an error) leaves it in the model, and
 * every checkpoint written during a fit before its last epoch holds it
 * (checkpoint_path; also tl_model_save() after an interrupted fit; the
 * file's ESTP section, docs/format-checkpoint.md), and tl_model_load()
 * restores it. The next fit continues it when its seed is 0 and its
 * monitor and restore_best are the same (min_delta and patience are taken
 * from that fit's options) and the model's tensors are the same size;
 * otherwise, or after tl_model_compile() with another optimizer, it starts
 * afresh. So a run stopped after epoch k and resumed with epochs - k more
 * epochs stops after the same epoch with the same weights, bit for bit, as
 * one never stopped. Fill with TL_EARLY_STOPPING_OPTIONS_INIT or
 * tl_early_stopping_options_init().
 */
typedef struct tl_early_stopping_options {
    unsigned int version;        /**< TL_EARLY_STOPPING_OPTIONS_VERSION */
    tl_schedule_monitor monitor; /**< TL_MONITOR_VAL_LOSS (default) or TL_MONITOR_VAL_ACCURACY; needs
                                      tl_fit_options.validation */
    uint32_t patience;           /**< >= 1; default 5. UINT32_MAX never stops: to use restore_best or
                                      checkpoint_on_improvement alone */
    double min_delta;            /**< >= 0, finite; default 0 */
    int restore_best;            /**< non-zero: when fit ends with TL_OK (stopped early or not), every
                                      tensor (parameters and layer state such as batchnorm statistics) is
                                      set back to its value at the end of the best epoch. The optimizer's
                                      state and the random stream are not rewound. Default 0 */
} tl_early_stopping_options;
#define TL_EARLY_STOPPING_OPTIONS_VERSION 1
#define TL_EARLY_STOPPING_OPTIONS_INIT { TL_EARLY_STOPPING_OPTIONS_VERSION, TL_MONITOR_VAL_LOSS, 5, 0.0, 0 }
/** Fill `opts` with the defaults of `version`. Errors: TL_EINVAL, TL_EVERSION. */
TL_API tl_status tl_early_stopping_options_init(tl_early_stopping_options *opts, unsigned int version);

/**
 * Training history: one row per epoch, appended by every tl_model_fit()
 * given it (several fit calls keep appending to the same history). Created
 * and freed by the caller. Thread safety: one fit at a time may append; the
 * getters only read.
 */
typedef struct tl_history tl_history;

/** The columns of a history row. More may be added (at the end) in later versions. */
typedef enum tl_history_key {
    TL_HISTORY_EPOCH = 0,           /**< 1-based epoch of its fit call */
    TL_HISTORY_LOSS = 1,            /**< mean training loss of the epoch (NaN when every batch was skipped) */
    TL_HISTORY_ACCURACY = 2,        /**< training accuracy of the epoch */
    TL_HISTORY_VAL_LOSS = 3,        /**< validation loss; NaN without validation */
    TL_HISTORY_VAL_ACCURACY = 4,    /**< validation accuracy; NaN without validation */
    TL_HISTORY_LEARNING_RATE = 5,   /**< the rate of the epoch's last batch (tl_progress.learning_rate) */
    TL_HISTORY_SECONDS = 6,         /**< wall time of the epoch, validation included */
    TL_HISTORY_SKIPPED_BATCHES = 7, /**< batches skipped for non-finite values */
    TL_HISTORY_IMPROVED = 8,        /**< early stopping: 1 when the monitored figure improved, else 0; NaN
                                         without early stopping */
    TL_HISTORY_STOPPED = 9,         /**< 1 on the epoch after which fit stopped early, else 0 */
    TL_HISTORY_TOP_K = 10,          /**< since 1.1: k of the two top-k columns (tl_progress.top_k); NaN when
                                         top-k was not measured */
    TL_HISTORY_TOP_K_ACCURACY = 11, /**< since 1.1: training top-k accuracy of the epoch
                                         (tl_progress.top_k_accuracy); NaN when not measured */
    TL_HISTORY_VAL_TOP_K_ACCURACY = 12 /**< since 1.1: validation top-k accuracy
                                            (tl_progress.val_top_k_accuracy): what
                                            tl_model_evaluate_metrics() with the same k and batch size gives
                                            after the epoch; NaN without validation or top-k */
} tl_history_key;
/** The number of columns this libtl knows (keys 0 .. TL_HISTORY_KEYS - 1). */
#define TL_HISTORY_KEYS 13

/** Create an empty history. Errors: TL_EINVAL (out NULL), TL_ENOMEM. */
TL_API tl_status tl_history_create(tl_history **out);
/** Free a history. NULL is a no-op. */
TL_API void tl_history_free(tl_history *history);
/** Rows (epochs) recorded so far; 0 for NULL. */
TL_API size_t tl_history_epochs(const tl_history *history);
/** The value of column `key` in row `row` (0-based, across fit calls); NaN when history is NULL, row is
 *  out of range or the key unknown. */
TL_API double tl_history_value(const tl_history *history, size_t row, tl_history_key key);
/** The CSV name of a column ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate",
 *  "seconds", "skipped_batches", "improved", "stopped", "top_k", "top_k_accuracy", "val_top_k_accuracy"),
 *  or NULL for an unknown key. */
TL_API const char *tl_history_key_name(tl_history_key key);
/**
 * Write the history as CSV: a header line of the column names, then one
 * line per row; fields separated by ',' and lines ended by '\n'. The
 * columns are the keys in their order, so a column added later comes last
 * (top_k, top_k_accuracy and val_top_k_accuracy did). Epoch, skipped
 * batches, improved, stopped and top_k are written as integers, the others
 * with the fewest significant digits (at most 9) that read back as the same
 * float, and '.' as the decimal point whatever the locale; NaN is an empty
 * field. Later versions may append
 * columns. `write` receives pieces of the text (see tl_write_fn).
 * Errors: TL_EINVAL (NULL), TL_ECANCELED (write returned non-zero).
 */
TL_API tl_status tl_history_write_csv(const tl_history *history, tl_write_fn write, void *payload);

/* ---- data-parallel training: the exchange between processes ---------------- */

/** What a call of a tl_exchange_fn carries. */
typedef enum tl_exchange_kind {
    TL_EXCHANGE_GRADIENTS = 0, /**< fit, once per step after backward: `values` are the gradients */
    TL_EXCHANGE_SUMS = 1,      /**< counts only (validation, tl_model_evaluate_metrics()): `values` is NULL */
    TL_EXCHANGE_END = 2,       /**< fit's last call, just before it returns: nothing to add; `status` is
                                    what this process returns */
    TL_EXCHANGE_UPDATED = 3    /**< fit, after each step's update: nothing to add (a hook may compare the
                                    processes' parameters here, where they must be equal) */
} tl_exchange_kind;

/**
 * One call of the exchange hook (tl_fit_options.exchange,
 * tl_evaluate_options.exchange). Filled by libtl; fields are only ever
 * added at the end (`struct_size`). Valid during the call only.
 *
 * The hook's one job is a sum over the processes of a run: on a TL_OK
 * return, `values` and `sums` must hold, on every process, the element-wise
 * sums of every process's `values` and `sums` (an allreduce). libtl does
 * the rest: it hands over each gradient multiplied by its process's share
 * of the batch (sums[0], the examples' total weight: the example count
 * without class weights), so that the sum divided by the summed weight is
 * the gradient of the whole global batch, the same on every process.
 *
 * Failures: `status` is TL_OK, or the failure this process is about to
 * return (its message in tl_last_error()): the hook must then tell the
 * other processes, whose hook returns an error (TL_EPEER by convention)
 * from its matching call, and `values` and `sums` are not used. A hook
 * that returns a status other than TL_OK ends the fit or evaluation with
 * that status and the message it set (tl_set_last_error()). Every process
 * makes the same sequence of calls as long as all succeed; a process that
 * fails makes one call with its failure (its next one, at the latest its
 * TL_EXCHANGE_END) and then none. The others may then be in a call of
 * another kind (a batchnorm sum while the failing process is at its
 * gradients), so a hook whose every call starts with the same fixed-size
 * status exchange never waits on a process that has gone (libtl-mpi's
 * does; tests/test_exchange.c has one over threads).
 */
typedef struct tl_exchange {
    size_t struct_size;     /**< sizeof(tl_exchange) in the running library */
    tl_exchange_kind kind;
    tl_status status;       /**< TL_OK, or this process's failure (see above) */
    float *values;          /**< GRADIENTS: `count` floats, times sums[0]: every trainable tensor's
                                 gradient, layer after layer, tensor after tensor (the order of
                                 tl_layer_param_info() over the layers that learn), then the state tensors
                                 that training moves (the moving statistics of trainable batchnorm
                                 layers, computed from this process's part of the batch), which libtl
                                 replaces by their weighted mean so that they stay equal everywhere;
                                 NULL otherwise */
    size_t count;           /**< floats in values */
    double *sums;           /**< `nsums` doubles to be summed. GRADIENTS: [0] the batch weight, [1] the
                                 loss sum, [2] correct predictions, [3] examples, [4] 1 when this process
                                 skips the batch for a non-finite value (TL_NONFINITE_SKIP; when the sum
                                 is non-zero no process updates). SUMS: [0] loss sum, [1] weight,
                                 [2] correct, [3] examples, then tl_model_evaluate_metrics()'s counts */
    size_t nsums;
    uint32_t epoch;         /**< fit: 0-based epoch */
    size_t batch;           /**< fit: 0-based batch of the epoch (GRADIENTS) */
} tl_exchange;

/**
 * Exchange hook: sum `x->values` and `x->sums` over the processes of a
 * data-parallel run (see tl_exchange). Return TL_OK, or a status with its
 * message set through tl_set_last_error(). It must make no call on the
 * model being trained except read-only ones (tl_layer_get_weights()).
 */
typedef tl_status (*tl_exchange_fn)(tl_exchange *x, void *payload);

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
    tl_nonfinite_policy on_nonfinite; /**< default TL_NONFINITE_STOP */
    /* Version 2 (libtl 1.1): the training recipe. */
    const tl_augment_options *augment; /**< optional (NULL, default: none); read during the call only */
    tl_batch_fn on_batch_begin;        /**< optional; after gathering and augmenting each batch, before its
                                            forward pass; gets `payload` */
    const tl_early_stopping_options *early_stopping; /**< optional (NULL, default: never stop early) */
    tl_history *history;          /**< optional; fit appends one row per epoch (it reserves the rows
                                       before the first step) */
    const char *checkpoint_path;  /**< optional: tl_model_save() (atomic, default save options: the
                                       optimizer, the random stream and early stopping's state are saved,
                                       so tl_model_load() and a fit with seed 0 resume exactly) writes here
                                       at the end of an
                                       epoch, before on_epoch; every "{epoch}" in it becomes the 1-based
                                       epoch of this fit call. A failed save ends fit with its status */
    uint32_t checkpoint_every;    /**< non-zero: save after every checkpoint_every-th epoch; default 0 */
    int checkpoint_on_improvement; /**< non-zero: save after every epoch where early_stopping's monitored
                                        figure improved (needs early_stopping); default 0 */
    /* Version 3 (libtl 1.1): data-parallel training (tl/mpi.h builds on these). */
    tl_exchange_fn exchange;      /**< optional (NULL, default: one process): called once per step after
                                       backward with the gradients (TL_EXCHANGE_GRADIENTS) and after its
                                       update (TL_EXCHANGE_UPDATED), after each validation with its counts,
                                       inside batchnorm with sync_batchnorm, and once at the end
                                       (tl_exchange); the update then uses the summed gradient over the
                                       summed weight, and the progress figures, history and early stopping
                                       the summed counts */
    void *exchange_payload;       /**< passed to exchange */
    uint32_t shard_rank;          /**< this process's part of every batch: of the global batch of
                                       batch_size examples (the same shuffle on every process: give every
                                       process the same data and seed), it takes examples
                                       [cnt * rank / count, cnt * (rank + 1) / count) of a batch of cnt;
                                       and the same part of the validation set. Default 0 */
    uint32_t shard_count;         /**< processes; 0 or 1 (default): the whole batch. shard_rank < shard_count.
                                       With more than 1, augmentation draws each example's choices at
                                       its position in the global batch (as one process would), and
                                       dropout from the batch's key mixed with shard_rank (so the
                                       processes' masks differ, fixed by the seed) */
    int sync_batchnorm;           /**< with exchange and shard_count > 1: non-zero makes trainable
                                       batchnorm layers normalize with the statistics of the whole global
                                       batch (PyTorch's SyncBatchNorm): each one's training forward pass
                                       sums per-channel sums over the processes (two TL_EXCHANGE_SUMS calls,
                                       c + 1 and c values) and its backward pass the gradient's sums (one
                                       call, 2c values). Needs every process's part of every batch to be
                                       non-empty (batch_size and the last batch at least shard_count:
                                       TL_EINVAL otherwise). Default 0: each process's own statistics */
    /* Also version 3: top-k accuracy in the progress and the history. */
    uint32_t top_k;               /**< k of the training and validation top-k accuracy (tl_progress.top_k,
                                       TL_HISTORY_TOP_K...), 1..the model's outputs; 0 (default): 5 when
                                       the model has more than 5 outputs, else not measured (with 5 or
                                       fewer classes top-5 is always 1). Ranking as
                                       tl_model_evaluate_metrics() */
} tl_fit_options;
#define TL_FIT_OPTIONS_VERSION 3
#define TL_FIT_OPTIONS_INIT                                                                                    \
    { TL_FIT_OPTIONS_VERSION, 1, 32, 1, 0, NULL, NULL, NULL, NULL, TL_NONFINITE_STOP, NULL, NULL, NULL, NULL, NULL, \
      0, 0, NULL, NULL, 0, 0, 0, 0 }
/** Fill `opts` with the defaults of `version`. Errors: TL_EINVAL, TL_EVERSION. */
TL_API tl_status tl_fit_options_init(tl_fit_options *opts, unsigned int version);

/**
 * Train `model` on `train` (Keras fit()). The last batch of an epoch may be
 * smaller. `opts` NULL means the defaults.
 * Each batch: shuffle order -> gather (and augment, tl_augment_options) ->
 * on_batch_begin -> forward, loss, backward, update -> on_batch. Each epoch
 * ends with: validation -> the schedule's epoch update -> early stopping's
 * bookkeeping, the best-weights copy, the history row, the checkpoint ->
 * on_epoch -> stop when early stopping says so (a normal TL_OK return).
 * The random stream: per epoch the shuffle (shuffle on), then per batch the
 * augmentation key (augmentation on) and the dropout key (a dropout layer).
 * Errors: TL_EINVAL (NULL model or data, epochs or batch size 0; a
 * learning-rate schedule this fit cannot follow, before any step: see
 * tl_optimizer_set_schedule(); a recipe option that does not fit, before
 * any step, the message naming the option and its value: augmentation on
 * 1x1 examples, crop_padding or cutout_size larger than the image,
 * flip_probability outside [0, 1], early stopping without validation,
 * patience 0, min_delta negative or NaN, an unknown monitor or padding
 * mode, checkpoint_every or checkpoint_on_improvement without
 * checkpoint_path, checkpoint_on_improvement without early_stopping,
 * top_k larger than the model's outputs),
 * TL_EVERSION (also of the augment and early-stopping options), TL_ESTATE (not compiled),
 * TL_ERANGE (a label outside the model's outputs, the dataset's or one the
 * batch hook wrote), the status of tl_model_save() when a checkpoint cannot
 * be written (the message names the epoch and the path; fit stops there),
 * TL_ESHAPE (the data's example shape or class count does not fit the
 * model's input / output, or the loss needs targets of another width; the
 * message gives both shapes), TL_ENUMERIC (non-finite loss or gradient
 * under TL_NONFINITE_STOP: the message names the epoch, the batch and the
 * first layer affected; a schedule whose rate overflows), TL_ECANCELED (a
 * callback returned non-zero), TL_ENOMEM; with an exchange hook, the
 * status it returned (TL_EPEER when another process failed) and TL_EINVAL
 * for shard_rank >= shard_count or a sync_batchnorm split that leaves a
 * process without examples. Work done before an error (completed steps)
 * is kept.
 */
TL_API tl_status tl_model_fit(tl_model *model, const tl_dataset *train, const tl_fit_options *opts);

/**
 * Mean loss and accuracy of the model on `data` (Keras evaluate()), in
 * chunks of `batch_size` (0 means 64), with the compiled loss. No optimizer
 * is needed: a model never compiled is evaluated with sparse categorical
 * cross-entropy, and tl_model_compile(model, NULL, loss) chooses another
 * loss without an optimizer. The loss is that of training, with the
 * model's loss options (tl_model_set_loss_options()): smoothed and
 * weighted when they say so. Either out pointer may be NULL.
 * tl_model_evaluate_metrics() gives more figures from the same pass.
 * Errors: as tl_model_fit() (no TL_ECANCELED; TL_EINVAL when the last
 * layer's activation does not fit the loss).
 */
TL_API tl_status tl_model_evaluate(double *out_loss, double *out_accuracy, tl_model *model,
                                   const tl_dataset *data, uint32_t batch_size);

/* ---- metrics ------------------------------------------------------------------ */

/** What tl_model_evaluate_metrics() measured (opaque; read with the tl_metrics_* getters). */
typedef struct tl_metrics tl_metrics;

/** Options of tl_model_evaluate_metrics(). Fill with TL_EVALUATE_OPTIONS_INIT or tl_evaluate_options_init(). */
typedef struct tl_evaluate_options {
    unsigned int version;  /**< TL_EVALUATE_OPTIONS_VERSION */
    uint32_t batch_size;   /**< examples per forward pass; 0 (default): 64 */
    uint32_t top_k;        /**< k of the top-k accuracy, 1..the model's outputs; 0 (default): 5, or
                                the number of outputs when the model has fewer */
    int confusion_matrix;  /**< non-zero (default): count the K x K confusion matrix (8 K^2 bytes) */
    /* Version 2 (libtl 1.1): evaluation split over processes (see tl_fit_options). */
    tl_exchange_fn exchange; /**< optional: called once (TL_EXCHANGE_SUMS) to sum every count over the
                                  processes, whose metrics are then those of the whole data set; also
                                  on an error, except for NULL arguments and an unreadable version
                                  (checked before the hook is known: check those first, as libtl-mpi
                                  does) */
    void *exchange_payload;  /**< passed to exchange */
    uint32_t shard_rank;     /**< this process evaluates examples [n * rank / count, n * (rank + 1) / count) */
    uint32_t shard_count;    /**< 0 or 1 (default): all of them */
} tl_evaluate_options;
#define TL_EVALUATE_OPTIONS_VERSION 2
#define TL_EVALUATE_OPTIONS_INIT { TL_EVALUATE_OPTIONS_VERSION, 0, 0, 1, NULL, NULL, 0, 0 }
/** Fill `opts` with the defaults of `version`. Errors: TL_EINVAL, TL_EVERSION. */
TL_API tl_status tl_evaluate_options_init(tl_evaluate_options *opts, unsigned int version);

/**
 * Evaluate `model` on `data` as tl_model_evaluate() does (same loss, same
 * accuracy, from the same pass; since 1.1) and also measure the top-k
 * accuracy, each class's accuracy and the confusion matrix. The classes are
 * the model's K outputs; an example's true class is its label, or the
 * arg-max of its float targets when the loss reads them, and its predicted
 * class the arg-max of the model's output (the first on ties, as the
 * accuracy's). Classes are ranked by output value, ties going to the lower
 * class index (a stable descending sort): an example counts in the top-k
 * accuracy when its true class is among the first k of that order. So
 * top-1 is the accuracy exactly, and an example whose true class ties
 * with the k-th is counted only if its index is lower (TensorFlow's
 * in_top_k, behind Keras' top-k metrics, would count every tied class).
 * `opts` NULL means the defaults.
 * Ownership: *out belongs to the caller (tl_metrics_free()); on error it is
 * NULL. Errors: those of tl_model_evaluate(); TL_EINVAL (out NULL; top_k
 * larger than the model's outputs; the message names the option and its
 * value), TL_EVERSION, TL_ENOMEM.
 * Thread safety: as tl_model_evaluate(); a tl_metrics is read-only and may
 * be read from any thread.
 */
TL_API tl_status tl_model_evaluate_metrics(tl_metrics **out, tl_model *model, const tl_dataset *data,
                                           const tl_evaluate_options *opts);

/** Free the metrics. NULL is a no-op. */
TL_API void tl_metrics_free(tl_metrics *metrics);
/** Examples evaluated; 0 when NULL. */
TL_API size_t tl_metrics_num_examples(const tl_metrics *metrics);
/** Number of classes K (the model's outputs); 0 when NULL. */
TL_API size_t tl_metrics_num_classes(const tl_metrics *metrics);
/** Mean loss, as tl_model_evaluate() gives it; NaN when NULL. */
TL_API double tl_metrics_loss(const tl_metrics *metrics);
/** Accuracy (top-1), in [0, 1], as tl_model_evaluate() gives it; NaN when NULL. */
TL_API double tl_metrics_accuracy(const tl_metrics *metrics);
/** The k of tl_metrics_top_k_accuracy(); 0 when NULL. */
TL_API uint32_t tl_metrics_top_k(const tl_metrics *metrics);
/** Share of examples whose true class is among the k first (see tl_model_evaluate_metrics()); NaN when NULL. */
TL_API double tl_metrics_top_k_accuracy(const tl_metrics *metrics);
/** Examples whose true class is `cls`; 0 when NULL or cls >= K. */
TL_API uint64_t tl_metrics_class_count(const tl_metrics *metrics, size_t cls);
/**
 * Accuracy on the examples of class `cls` (its recall: the share predicted
 * as `cls`), in [0, 1]; NaN when the class has no examples, cls >= K or
 * metrics is NULL.
 */
TL_API double tl_metrics_class_accuracy(const tl_metrics *metrics, size_t cls);
/** 1 when the confusion matrix was counted (tl_evaluate_options.confusion_matrix), else 0. */
TL_API int tl_metrics_has_confusion(const tl_metrics *metrics);
/**
 * Examples of true class `true_cls` predicted as `predicted`; 0 when
 * either is >= K, there is no matrix, or metrics is NULL.
 */
TL_API uint64_t tl_metrics_confusion(const tl_metrics *metrics, size_t true_cls, size_t predicted);
/**
 * Copy the confusion matrix into `out`, K x K row-major (row: true class,
 * column: predicted class), which must hold `count` >= K * K values.
 * Errors: TL_EINVAL (NULL; count smaller than K * K: the message gives
 * both), TL_ESTATE (the matrix was not counted).
 */
TL_API tl_status tl_metrics_confusion_copy(const tl_metrics *metrics, uint64_t *out, size_t count);

/**
 * One optimizer step on one batch of `n` examples given in memory:
 * `inputs` n*h*w*c floats, `labels` n int32 (sparse cross-entropy) or
 * `targets` n*k floats (the other losses; labels are then used one-hot when
 * targets is NULL). `out_loss` (may be NULL) receives the batch's mean loss
 * before the update.
 * Errors: TL_EINVAL (NULL, n 0; a cosine or one-cycle schedule whose
 * total_steps is 0), TL_ESTATE (not compiled), TL_ERANGE (a label outside
 * the output width), TL_ENUMERIC (non-finite loss, gradient or scheduled
 * learning rate; no update is made), TL_ENOMEM.
 */
TL_API tl_status tl_model_train_step(double *out_loss, tl_model *model, const float *inputs,
                                     const int32_t *labels, const float *targets, size_t n);

#ifdef __cplusplus
}
#endif

#endif /* TL_TRAIN_H */
