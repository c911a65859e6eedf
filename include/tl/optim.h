/*
 * tl/optim.h - optimizers, losses, and compiling a model for training.
 *
 * An optimizer is a handle holding hyper-parameters and the step count. Its
 * per-parameter state (Adam moments, SGD velocity) lives beside each
 * parameter in the model and is allocated when training starts, only for
 * trainable layers.
 *
 * Update rules (g = gradient, lr = learning rate x the layer's lr scale,
 * t = step count after increment):
 *  - SGD:      v = momentum*v - lr*(g + wd*w);  w += v
 *              Nesterov: w += momentum*v - lr*(g + wd*w)      (Keras)
 *  - Adam:     m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g^2
 *              w -= lr*sqrt(1-b2^t)/(1-b1^t) * m / (sqrt(v) + eps)   (Keras)
 *              weight_decay adds wd*w to g (L2), as Keras' Adam does not;
 *  - AdamW:    the Adam step and w -= lr*wd*w, both from the weight before
 *              the step (decoupled decay, as Keras and PyTorch).
 * Thread safety: an optimizer belongs to at most one model; see tl/model.h.
 */
#ifndef TL_OPTIM_H
#define TL_OPTIM_H

#include "common.h"
#include "model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tl_optimizer tl_optimizer;

/** Optimizer kinds. Values are stored in model files and never change. */
typedef enum tl_optimizer_kind {
    TL_OPT_SGD = 1,
    TL_OPT_ADAM = 2,
    TL_OPT_ADAMW = 3
} tl_optimizer_kind;

/** Adam / AdamW options. Defaults are Keras': lr 1e-3, b1 0.9, b2 0.999, eps 1e-7. */
typedef struct tl_adam_options {
    unsigned int version; /**< TL_ADAM_OPTIONS_VERSION */
    float learning_rate;
    float beta1, beta2;
    float epsilon;
    float weight_decay;   /**< Adam: L2 added to the gradient; AdamW: decoupled. Default 0 */
} tl_adam_options;
#define TL_ADAM_OPTIONS_VERSION 1
#define TL_ADAM_OPTIONS_INIT { TL_ADAM_OPTIONS_VERSION, 1e-3f, 0.9f, 0.999f, 1e-7f, 0.0f }
/** Fill `opts` with the defaults of `version`. Errors: TL_EINVAL, TL_EVERSION. */
TL_API tl_status tl_adam_options_init(tl_adam_options *opts, unsigned int version);

/** SGD options. Defaults are Keras': lr 0.01, no momentum, no Nesterov. */
typedef struct tl_sgd_options {
    unsigned int version; /**< TL_SGD_OPTIONS_VERSION */
    float learning_rate;
    float momentum;       /**< in [0, 1) */
    int nesterov;         /**< non-zero: Nesterov momentum */
    float weight_decay;   /**< L2 added to the gradient; default 0 */
} tl_sgd_options;
#define TL_SGD_OPTIONS_VERSION 1
#define TL_SGD_OPTIONS_INIT { TL_SGD_OPTIONS_VERSION, 0.01f, 0.0f, 0, 0.0f }
/** Fill `opts` with the defaults of `version`. Errors: TL_EINVAL, TL_EVERSION. */
TL_API tl_status tl_sgd_options_init(tl_sgd_options *opts, unsigned int version);

/**
 * Create an Adam, AdamW or SGD optimizer. `opts` NULL means the defaults.
 * Ownership: the caller owns *out until it passes it to tl_model_compile().
 * Errors: TL_EINVAL (out NULL; learning rate not > 0 or not finite; betas
 * outside [0, 1); epsilon not > 0; momentum outside [0, 1); negative decay),
 * TL_EVERSION, TL_ENOMEM. On error *out is NULL.
 */
TL_API tl_status tl_optimizer_create_adam(tl_optimizer **out, const tl_adam_options *opts);
TL_API tl_status tl_optimizer_create_adamw(tl_optimizer **out, const tl_adam_options *opts);
TL_API tl_status tl_optimizer_create_sgd(tl_optimizer **out, const tl_sgd_options *opts);

/** Free an optimizer the caller still owns. NULL is a no-op. */
TL_API void tl_optimizer_free(tl_optimizer *opt);

/** Kind of the optimizer; 0 when NULL. */
TL_API tl_optimizer_kind tl_optimizer_get_kind(const tl_optimizer *opt);

/**
 * Change the base learning rate (e.g. a lower one for fine-tuning).
 * Errors: TL_EINVAL (NULL, lr not > 0 or not finite).
 */
TL_API tl_status tl_optimizer_set_learning_rate(tl_optimizer *opt, float lr);
/** The base learning rate; 0 when NULL. */
TL_API float tl_optimizer_learning_rate(const tl_optimizer *opt);
/** Number of update steps taken; 0 when NULL. */
TL_API uint64_t tl_optimizer_steps(const tl_optimizer *opt);

/** Losses. Values are stored in model files and never change. */
typedef enum tl_loss {
    /** Integer labels; the last layer's activation must be softmax or linear
     *  (logits). Either way it is computed fused with a softmax, stably. */
    TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY = 1,
    /** One-hot or soft float targets (the dataset's targets, or one-hot of its
     *  labels); same activation rule as above. */
    TL_LOSS_CATEGORICAL_CROSSENTROPY = 2,
    /** Float targets (or one-hot labels); mean over outputs and batch. */
    TL_LOSS_MEAN_SQUARED_ERROR = 3
} tl_loss;

/** A constant name for a loss ("sparse_categorical_crossentropy", ...), or "unknown". */
TL_API const char *tl_loss_str(tl_loss loss);

/**
 * Prepare a model for training with `opt` and `loss` (Keras compile()).
 * The model takes `opt`, even when the call fails; a previous optimizer and
 * all optimizer state are freed. `opt` must not be owned by another model.
 * `opt` NULL (since 1.1) sets only the loss, which is all that
 * tl_model_evaluate() needs; an optimizer the model has is kept as it is.
 * Errors: TL_EINVAL (model NULL, unknown loss, cross-entropy after an
 * activation other than softmax or linear), TL_ESTATE (the model has no
 * layers).
 */
TL_API tl_status tl_model_compile(tl_model *model, tl_optimizer *opt, tl_loss loss);

/** The compiled optimizer (borrowed from the model), or NULL. */
TL_API tl_optimizer *tl_model_optimizer(const tl_model *model);

/** The compiled loss, or 0 when not compiled. */
TL_API tl_loss tl_model_loss(const tl_model *model);

/**
 * Bytes of optimizer state currently allocated in the model (moments,
 * velocities). Frozen layers that never trained contribute 0.
 */
TL_API size_t tl_model_optimizer_state_bytes(const tl_model *model);

/** Drop all optimizer state and set the step count to 0. Errors: TL_EINVAL. */
TL_API tl_status tl_model_reset_optimizer(tl_model *model);

#ifdef __cplusplus
}
#endif

#endif /* TL_OPTIM_H */
