/*
 * tl/transfer.h - the three ways to reuse a trained model, and freezing.
 *
 *  1. Parameter transfer, theta_new = theta_old + alpha * delta_theta:
 *     tl_model_transfer_params() copies trained parameters of matching
 *     layers into another model, which is then fine-tuned.
 *  2. Frozen feature extractor, X_new = T(X_old): freeze the trained base
 *     (tl_model_freeze_upto()), or cut it out (tl_model_extractor_create()),
 *     compute its features once (tl_model_extract_features()), train a small
 *     head on them, and join base and head again (tl_model_join()).
 *  3. Structure clone, M_new = M_old: tl_model_clone_structure() gives the
 *     same architecture with fresh weights (optionally with a new head);
 *     tl_model_copy() gives architecture and weights - a separate call, so
 *     the two are never confused.
 *
 * Every model these functions create owns all its memory: nothing is shared
 * with the source, which may be freed at once.
 * Thread safety: the source model is only read, so one source may feed
 * several calls in several threads as long as nobody trains it meanwhile.
 */
#ifndef TL_TRANSFER_H
#define TL_TRANSFER_H

#include "common.h"
#include "data.h"
#include "layer.h"
#include "model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- 1. parameter transfer ------------------------------------------------ */

/** How source layers find their destination layer. */
typedef enum tl_transfer_match {
    TL_MATCH_POSITION = 0, /**< source layer i -> destination layer i (the document's layers[i]) */
    TL_MATCH_NAME = 1      /**< source layer -> the destination layer with the same name */
} tl_transfer_match;

/** What to do with a selected layer that cannot be copied. */
typedef enum tl_transfer_policy {
    /** Fail (TL_ESHAPE for a kind or shape difference, TL_ENOTFOUND for a
     *  missing destination layer) and leave the destination untouched. */
    TL_TRANSFER_STRICT = 0,
    /** Copy what matches, skip the rest; the report says why. */
    TL_TRANSFER_LENIENT = 1
} tl_transfer_policy;

/**
 * Options of tl_model_transfer_params(). Fill with TL_TRANSFER_OPTIONS_INIT
 * or tl_transfer_options_init(). By default every source layer is selected,
 * matched by position, strictly.
 * Selection: when `layers` is not NULL, exactly the `num_layers` source layer
 * indices it lists are selected; otherwise source layers
 * [first, first + count) are (count 0: to the last layer). Layers without
 * parameters (pooling, flatten) are always passed over.
 */
typedef struct tl_transfer_options {
    unsigned int version; /**< TL_TRANSFER_OPTIONS_VERSION */
    tl_transfer_match match;
    tl_transfer_policy policy;
    size_t first;         /**< first selected source layer (range selection) */
    size_t count;         /**< number of selected source layers; 0: all from `first` */
    const size_t *layers; /**< explicit list of source layer indices, or NULL */
    size_t num_layers;
} tl_transfer_options;
#define TL_TRANSFER_OPTIONS_VERSION 1
#define TL_TRANSFER_OPTIONS_INIT { TL_TRANSFER_OPTIONS_VERSION, TL_MATCH_POSITION, TL_TRANSFER_STRICT, 0, 0, NULL, 0 }
/** Fill `opts` with the defaults of `version`. Errors: TL_EINVAL, TL_EVERSION. */
TL_API tl_status tl_transfer_options_init(tl_transfer_options *opts, unsigned int version);

/** Outcome of one layer in a transfer report. Values never change. */
typedef enum tl_transfer_outcome {
    TL_TRANSFER_COPIED = 0,          /**< all its parameters were copied */
    TL_TRANSFER_NOT_SELECTED = 1,    /**< outside the selection: left alone */
    TL_TRANSFER_NO_PARAMS = 2,       /**< a layer without parameters: passed over */
    TL_TRANSFER_KIND_DIFFERS = 3,    /**< the destination layer is of another kind */
    TL_TRANSFER_SHAPE_DIFFERS = 4,   /**< a parameter's shape (or the bias) differs */
    TL_TRANSFER_NO_DESTINATION = 5,  /**< no destination layer at that position / name */
    TL_TRANSFER_NOT_IN_SOURCE = 6    /**< a destination layer with parameters that no source
                                          layer matched (PyTorch's "missing key"); it keeps its weights */
} tl_transfer_outcome;

/** A constant name for an outcome ("copied", "shape differs", ...), or "unknown". */
TL_API const char *tl_transfer_outcome_str(tl_transfer_outcome outcome);

/**
 * What a transfer did, layer by layer: one entry per source layer in order,
 * then one per unmatched destination layer with parameters. Opaque; read it
 * with the functions below; free it with tl_transfer_report_free().
 */
typedef struct tl_transfer_report tl_transfer_report;

/**
 * Copy the parameters of the selected source layers into their matching
 * destination layers, bit for bit. A layer matches when it is of the same
 * kind and every parameter tensor has the same shape. Trainable flags,
 * learning-rate scales and optimizer state of the destination are kept;
 * the destination's other layers keep their weights (e.g. a new head keeps
 * its fresh initialisation).
 * `opts` NULL means the defaults. `out_report` may be NULL; otherwise it
 * receives a report the caller frees with tl_transfer_report_free() - also
 * when the call fails with TL_ESHAPE or TL_ENOTFOUND, so every mismatch can
 * be read (on other errors it is NULL).
 * Errors: TL_EINVAL (NULL models, dst == src, unknown match or policy),
 * TL_EVERSION, TL_ERANGE (a selected index is past the source's last layer,
 * or listed twice), TL_ESHAPE (strict: kind or shape differs; the message
 * names both layers and both shapes), TL_ENOTFOUND (strict: no destination
 * layer), TL_ENOMEM. On any error the destination is unchanged.
 * Thread safety: src is only read; dst must not be in use elsewhere.
 */
TL_API tl_status tl_model_transfer_params(tl_transfer_report **out_report, tl_model *dst, const tl_model *src,
                                          const tl_transfer_options *opts);

/** Free a report. NULL is a no-op. */
TL_API void tl_transfer_report_free(tl_transfer_report *report);
/** Number of entries; 0 when NULL. */
TL_API size_t tl_transfer_report_count(const tl_transfer_report *report);
/** Total number of float parameters copied; 0 when NULL. */
TL_API size_t tl_transfer_report_params_copied(const tl_transfer_report *report);
/** Number of entries with `outcome`; 0 when NULL. */
TL_API size_t tl_transfer_report_count_outcome(const tl_transfer_report *report, tl_transfer_outcome outcome);
/**
 * Entry `i` (< tl_transfer_report_count()). Strings are owned by the report.
 * Errors: TL_EINVAL (NULL report), TL_ERANGE (i too large). Each out pointer
 * may be NULL. Names are "" when there is no such layer; indices are then
 * SIZE_MAX. `out_reason` is a sentence such as "kernel (3, 3, 3, 32) vs
 * (3, 3, 1, 32)".
 */
TL_API tl_status tl_transfer_report_entry(tl_transfer_outcome *out_outcome, const char **out_src_layer,
                                          size_t *out_src_index, const char **out_dst_layer, size_t *out_dst_index,
                                          size_t *out_params, const char **out_reason,
                                          const tl_transfer_report *report, size_t i);
/** Write the report as a text table to `write`. Errors: TL_EINVAL, TL_ECANCELED. */
TL_API tl_status tl_transfer_report_write(const tl_transfer_report *report, tl_write_fn write, void *payload);

/* ---- 2. freezing and feature extraction ------------------------------------ */

/**
 * Set trainable (non-zero) or frozen (0) on layers [first, first + count) of
 * `model`; count 0 means to the last layer. See tl_layer_set_trainable() for
 * what freezing guarantees. Errors: TL_EINVAL (NULL), TL_ERANGE (the range
 * passes the last layer); nothing changes on error.
 */
TL_API tl_status tl_model_set_trainable(tl_model *model, size_t first, size_t count, int trainable);

/**
 * Freeze layers [0, k) and make layers [k, end) trainable: "everything up to
 * layer k" is a frozen base, the rest is trained. Backward then stops at
 * layer k. Errors: TL_EINVAL (NULL), TL_ERANGE (k > number of layers).
 */
TL_API tl_status tl_model_freeze_upto(tl_model *model, size_t k);

/**
 * A new model made of copies of `src`'s first `k` layers (names, settings
 * and weights) - in a graph, of layer k - 1 and the layers its output
 * depends on - all frozen: the feature extractor T. Its parameters are
 * copies, not shared, so `src` may be trained or freed afterwards without
 * changing it. Not compiled.
 * Ownership: the caller owns *out (tl_model_free()).
 * Errors: TL_EINVAL (NULL), TL_ERANGE (k 0 or > layers), TL_ENOMEM.
 */
TL_API tl_status tl_model_extractor_create(tl_model **out, const tl_model *src, size_t k);

/**
 * The feature extractor cut at the layer called `layer`: a new model whose
 * output is that layer's output, made of copies of it and of every layer
 * its output depends on (in a graph, branches that do not lead to it are
 * left out), with their weights, all frozen. tl_model_extractor_create(out,
 * src, k) is the same cut at layer k - 1. Not compiled.
 * Ownership: the caller owns *out (tl_model_free()).
 * Errors: TL_EINVAL (NULL), TL_ENOTFOUND (no such layer), TL_ENOMEM.
 * (Since 1.1.)
 */
TL_API tl_status tl_model_extractor_create_at(tl_model **out, const tl_model *src, const char *layer);

/**
 * Run `model` (all its layers, inference mode) over every example of `data`
 * once and return the outputs as a new dataset with the same labels (and
 * targets): X_new = T(X_old). Rank-3 outputs keep their (h, w, c) shape;
 * a flat output of n values becomes (1, 1, n). Processes `batch_size`
 * examples at a time (0 means 256).
 * Ownership: the caller owns *out (tl_dataset_free()).
 * Errors: TL_EINVAL (NULL), TL_ESTATE (no layers), TL_ESHAPE (the data's
 * example shape differs from the model's input), TL_ETOOBIG, TL_ENOMEM.
 */
TL_API tl_status tl_model_extract_features(tl_dataset **out, tl_model *model, const tl_dataset *data,
                                           uint32_t batch_size);

/**
 * An empty model whose input is `base`'s output, ready for head layers:
 * (h, w, c) for a rank-3 output, (1, 1, n) for a flat one (add a flatten
 * layer first, then dense layers). Seeded with `seed`.
 * Errors: TL_EINVAL (NULL), TL_ESTATE (base has no layers), TL_ENOMEM.
 */
TL_API tl_status tl_model_head_create(tl_model **out, const tl_model *base, uint64_t seed);

/**
 * One model made of copies of `base`'s layers followed by copies of
 * `head`'s layers, with their weights, trainable flags and learning-rate
 * scales: the extractor and the head trained on its features, joined for
 * prediction or further fine-tuning. A leading flatten of the head is kept
 * (a no-op on a flat base output). Head layer names already used in the
 * base are renamed with Keras' automatic scheme (dense -> dense_1).
 * Ownership: the caller owns *out. Not compiled.
 * Errors: TL_EINVAL (NULL), TL_ESTATE (base without layers), TL_ESHAPE (the
 * head's input is not the base's output; (1, 1, n) and (n) count as equal),
 * TL_ENOMEM.
 */
TL_API tl_status tl_model_join(tl_model **out, const tl_model *base, const tl_model *head);

/* ---- 3. structure clone and full copy -------------------------------------- */

/** Options of tl_model_clone_structure(). */
typedef struct tl_clone_options {
    unsigned int version; /**< TL_CLONE_OPTIONS_VERSION */
    uint64_t seed;        /**< seed of the fresh weights (and of the clone) */
    size_t drop_last;     /**< remove this many last layers (then add new ones yourself) */
    uint32_t head_units;  /**< non-zero: the last dense layer (after dropping) gets this many
                               units, e.g. 10 -> 100; it must be the model's last layer */
} tl_clone_options;
#define TL_CLONE_OPTIONS_VERSION 1
#define TL_CLONE_OPTIONS_INIT { TL_CLONE_OPTIONS_VERSION, 0, 0, 0 }
/** Fill `opts` with the defaults of `version`. Errors: TL_EINVAL, TL_EVERSION. */
TL_API tl_status tl_clone_options_init(tl_clone_options *opts, unsigned int version);

/**
 * The same architecture as `src` (kinds, settings, names, activations,
 * trainable flags, learning-rate scales, thread count) with freshly drawn
 * weights from opts->seed, each tensor drawn with its layer's initializer
 * (by default Glorot-uniform kernels and zero biases; batch normalization
 * starts again at gamma 1, beta 0, mean 0, variance 1; a normalization
 * layer's statistics, which describe the data, are copied) - Keras'
 * clone_model. `opts` NULL: seed 0, nothing dropped or resized. Not compiled.
 * Ownership: the caller owns *out.
 * Errors: TL_EINVAL (NULL), TL_EVERSION, TL_ERANGE (drop_last larger than
 * the number of layers), TL_ESTATE (head_units set but the last remaining
 * layer is not dense), TL_ENOMEM.
 */
TL_API tl_status tl_model_clone_structure(tl_model **out, const tl_model *src, const tl_clone_options *opts);

/**
 * A full, independent copy of `src`: architecture, weights, seed, trainable
 * flags, learning-rate scales and thread count. Not compiled, no optimizer
 * state (compile it to train). Ownership: the caller owns *out.
 * Errors: TL_EINVAL (NULL), TL_ENOMEM.
 */
TL_API tl_status tl_model_copy(tl_model **out, const tl_model *src);

#ifdef __cplusplus
}
#endif

#endif /* TL_TRANSFER_H */
