/*
 * tl/optim.h - optimizers, losses, and compiling a model for training.
 *
 * An optimizer is a handle holding hyper-parameters and the step count. Its
 * per-parameter state (Adam moments, SGD velocity) lives beside each
 * parameter in the model and is allocated when training starts, only for
 * trainable layers.
 *
 * Update rules (g = gradient, lr = the step's learning rate (the base rate,
 * or what a schedule makes of it; see tl_schedule_kind) x the layer's lr
 * scale, t = step count after increment):
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
 * Change the base learning rate (e.g. a lower one for fine-tuning). A
 * schedule the optimizer has goes on from the new base rate, without
 * restarting.
 * Errors: TL_EINVAL (NULL, lr not > 0 or not finite).
 */
TL_API tl_status tl_optimizer_set_learning_rate(tl_optimizer *opt, float lr);
/** The base learning rate (what a schedule starts from; the rate of the
 *  next step is tl_optimizer_current_learning_rate()); 0 when NULL. */
TL_API float tl_optimizer_learning_rate(const tl_optimizer *opt);
/** Number of update steps taken; 0 when NULL. */
TL_API uint64_t tl_optimizer_steps(const tl_optimizer *opt);

/* ---- learning-rate schedules ------------------------------------------------ */

/**
 * Learning-rate schedule kinds (tl_schedule_options.kind). Values are
 * stored in model files and never change.
 *
 * A schedule belongs to an optimizer (as Keras' `optimizer(learning_rate=
 * schedule)`): it turns the optimizer's base rate `lr` (its options'
 * learning_rate, or tl_optimizer_set_learning_rate()) into the rate of each
 * step. A layer's parameters are then updated at that rate times the
 * layer's lr scale (tl_layer_set_lr_scale()); Adam's bias correction does
 * not depend on it. Rates are computed in double precision and rounded to
 * float once per step.
 *
 * Two counters drive them, both restarted by tl_optimizer_set_schedule(),
 * tl_model_compile() and tl_model_reset_optimizer():
 *  - `e`, the **epoch**: epochs of tl_model_fit() completed since then.
 *    fit adds 1 at the end of every epoch (after the validation and
 *    before the epoch callback); tl_model_train_step() never changes it.
 *    The per-epoch kinds (STEP, MULTISTEP, EXPONENTIAL, REDUCE_ON_PLATEAU)
 *    keep one rate for a whole epoch.
 *  - `t`, the **step**: updates made since then (the optimizer's step
 *    count, tl_optimizer_steps(), minus its value when the schedule
 *    started), 0 for the first update. A batch skipped for non-finite
 *    values is not a step. The per-step kinds (COSINE, ONE_CYCLE) change
 *    the rate at every update, in fit and in tl_model_train_step() alike.
 *
 * The rate r of each kind (T = total_steps, W = warmup_steps):
 *  - CONSTANT:    r = lr (no schedule).
 *  - STEP:        r = lr * gamma^floor(e / step_size)  (PyTorch StepLR).
 *  - MULTISTEP:   r = lr * gamma^k, k = how many milestones are <= e
 *                 (PyTorch MultiStepLR).
 *  - EXPONENTIAL: r = lr * gamma^e  (PyTorch ExponentialLR, per epoch).
 *  - COSINE, cosine decay with a linear warm-up:
 *                 t < W:       r = lr * (s + (1 - s) * t / W),
 *                              s = warmup_start_factor;
 *                 W <= t < T:  r = min_lr + (lr - min_lr) * (1 + cos(pi * (t - W) / (T - W))) / 2;
 *                 t >= T:      r = min_lr
 *                 (with s = 0 and min_lr = 0, Hugging Face's
 *                 get_cosine_schedule_with_warmup; W = 0 is PyTorch's
 *                 CosineAnnealingLR over T steps with eta_min = min_lr).
 *  - ONE_CYCLE:   PyTorch OneCycleLR with cosine annealing, two phases,
 *                 max_lr = lr: with a = lr / div_factor,
 *                 z = a / final_div_factor, p = pct_start * T - 1 and
 *                 c(x, y, q) = y + (x - y) * (1 + cos(pi * q)) / 2:
 *                 t <= p:      r = c(a, lr, t / p)               (rising to lr at t = p)
 *                 p < t < T-1: r = c(lr, z, (t - p) / (T - 1 - p))
 *                 t >= T-1:    r = z
 *                 (a phase of length <= 0 ends at once). Only the rate
 *                 cycles: unlike PyTorch's default (cycle_momentum), SGD's
 *                 momentum and Adam's beta1 stay as they are.
 *  - REDUCE_ON_PLATEAU: r = max(lr * f, min_lr), f = 1 at the start. At
 *                 the end of every fit epoch the monitored validation
 *                 figure v (val loss: lower is better; val accuracy:
 *                 higher is better) is compared with the best so far:
 *                 v < best - min_delta (accuracy: v > best + min_delta)
 *                 makes it the best and the epoch good, otherwise the
 *                 epoch is bad. During the `cooldown` epochs after a
 *                 reduction, bad epochs are not counted. After
 *                 patience + 1 bad epochs in a row, f *= factor (only
 *                 while lr * f > min_lr), the count restarts and so
 *                 does the cooldown (PyTorch ReduceLROnPlateau with
 *                 threshold_mode "abs"; Keras reduces one epoch
 *                 earlier). tl_model_fit() refuses it without a
 *                 validation set.
 */
typedef enum tl_schedule_kind {
    TL_SCHEDULE_CONSTANT = 0,
    TL_SCHEDULE_STEP = 1,
    TL_SCHEDULE_MULTISTEP = 2,
    TL_SCHEDULE_EXPONENTIAL = 3,
    TL_SCHEDULE_COSINE = 4,
    TL_SCHEDULE_ONE_CYCLE = 5,
    TL_SCHEDULE_REDUCE_ON_PLATEAU = 6
} tl_schedule_kind;

/** What REDUCE_ON_PLATEAU watches. Values are stored in model files. */
typedef enum tl_schedule_monitor {
    TL_MONITOR_VAL_LOSS = 0,    /**< the validation loss; lower is better */
    TL_MONITOR_VAL_ACCURACY = 1 /**< the validation accuracy; higher is better */
} tl_schedule_monitor;

/** Most milestones a MULTISTEP schedule takes. */
#define TL_SCHEDULE_MAX_MILESTONES 16

/**
 * A learning-rate schedule. Fill with TL_SCHEDULE_OPTIONS_INIT or
 * tl_schedule_options_init(), then set `kind` and the fields that kind
 * reads (the others are ignored, and not checked). Defaults follow PyTorch.
 */
typedef struct tl_schedule_options {
    unsigned int version;        /**< TL_SCHEDULE_OPTIONS_VERSION */
    tl_schedule_kind kind;       /**< default TL_SCHEDULE_CONSTANT */
    float gamma;                 /**< STEP, MULTISTEP, EXPONENTIAL: the factor of each decay; finite, > 0; default 0.1 */
    uint32_t step_size;          /**< STEP: epochs between decays; > 0, no default (0) */
    uint32_t num_milestones;     /**< MULTISTEP: 1..TL_SCHEDULE_MAX_MILESTONES; no default (0) */
    uint32_t milestones[TL_SCHEDULE_MAX_MILESTONES]; /**< MULTISTEP: epochs, strictly increasing */
    uint64_t total_steps;        /**< COSINE, ONE_CYCLE: T; 0 (default): the first tl_model_fit() sets it to
                                      its epochs x batches per epoch (tl_model_train_step() needs it set) */
    uint64_t warmup_steps;       /**< COSINE: W, <= T; default 0 */
    float warmup_start_factor;   /**< COSINE: the first step's rate / lr; finite, >= 0; default 0 */
    float min_lr;                /**< COSINE: the final rate; REDUCE_ON_PLATEAU: the floor; finite, >= 0; default 0 */
    float pct_start;             /**< ONE_CYCLE: the rising part of the cycle, in (0, 1); default 0.3 */
    float div_factor;            /**< ONE_CYCLE: lr / the first rate; finite, > 0; default 25 */
    float final_div_factor;      /**< ONE_CYCLE: the first rate / the last; finite, > 0; default 1e4 */
    tl_schedule_monitor monitor; /**< REDUCE_ON_PLATEAU: default TL_MONITOR_VAL_LOSS */
    float factor;                /**< REDUCE_ON_PLATEAU: in (0, 1); default 0.1 */
    uint32_t patience;           /**< REDUCE_ON_PLATEAU: bad epochs tolerated; default 10 */
    float min_delta;             /**< REDUCE_ON_PLATEAU: the smallest improvement; finite, >= 0; default 1e-4 */
    uint32_t cooldown;           /**< REDUCE_ON_PLATEAU: epochs after a reduction not counted; default 0 */
} tl_schedule_options;
#define TL_SCHEDULE_OPTIONS_VERSION 1
#define TL_SCHEDULE_OPTIONS_INIT                                                                          \
    { TL_SCHEDULE_OPTIONS_VERSION, TL_SCHEDULE_CONSTANT, 0.1f, 0, 0, {0}, 0, 0, 0.0f, 0.0f, 0.3f, 25.0f, 1e4f, \
      TL_MONITOR_VAL_LOSS, 0.1f, 10, 1e-4f, 0 }
/** Fill `opts` with the defaults of `version`. Errors: TL_EINVAL, TL_EVERSION. */
TL_API tl_status tl_schedule_options_init(tl_schedule_options *opts, unsigned int version);

/**
 * Give `opt` a learning-rate schedule, replacing any it had; `s` NULL or
 * of kind TL_SCHEDULE_CONSTANT removes it. The settings are copied
 * (milestones included): `s` may be freed afterwards. The schedule starts
 * now: its epoch and step counters (see tl_schedule_kind) are 0 and a
 * REDUCE_ON_PLATEAU has no best value yet, even when the optimizer has
 * trained before. It is saved with the optimizer in checkpoints (settings
 * and counters), so a run resumed from a file continues it exactly.
 * Works on an optimizer a model owns (tl_model_optimizer()) as on one the
 * caller still owns.
 * Errors (nothing changes): TL_EINVAL (opt NULL; unknown kind; for the
 * kind in use: gamma not finite or <= 0; step_size 0; num_milestones
 * outside 1..16 or milestones not strictly increasing; total_steps set
 * and smaller than warmup_steps; warmup_start_factor, min_lr or min_delta
 * negative or not finite; pct_start outside (0, 1); div_factor or
 * final_div_factor not finite or <= 0; factor outside (0, 1); unknown
 * monitor - the message names the option and its value), TL_EVERSION.
 * tl_model_fit() checks the rest before its first step: TL_EINVAL when
 * REDUCE_ON_PLATEAU has no validation set, or when the total_steps it
 * sets is smaller than warmup_steps; tl_model_train_step() answers
 * TL_EINVAL for COSINE or ONE_CYCLE whose total_steps is still 0.
 * Thread safety: not while the optimizer's model trains in another thread.
 */
TL_API tl_status tl_optimizer_set_schedule(tl_optimizer *opt, const tl_schedule_options *s);

/**
 * The rate the next update will use: the base learning rate through the
 * schedule at the current epoch and step (before a layer's lr scale).
 * Without a schedule, tl_optimizer_learning_rate(). For COSINE and
 * ONE_CYCLE whose total_steps is still 0, the base rate. 0 when NULL.
 */
TL_API float tl_optimizer_current_learning_rate(const tl_optimizer *opt);

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
 * Loss options (tl_model_set_loss_options()) are kept.
 * Errors: TL_EINVAL (model NULL, unknown loss, cross-entropy after an
 * activation other than softmax or linear, mean squared error while the
 * model has loss options: clear them first), TL_ESTATE (the model has no
 * layers).
 */
TL_API tl_status tl_model_compile(tl_model *model, tl_optimizer *opt, tl_loss loss);

/** The compiled optimizer (borrowed from the model), or NULL. */
TL_API tl_optimizer *tl_model_optimizer(const tl_model *model);

/** The compiled loss, or 0 when not compiled. */
TL_API tl_loss tl_model_loss(const tl_model *model);

/**
 * Options of the two cross-entropy losses (since 1.1): label smoothing and
 * class weights. Fill with TL_LOSS_OPTIONS_INIT or tl_loss_options_init().
 *
 * With K the model's outputs, smoothing e and weights w (all 1 when none
 * are given), example n with target row t_n (one-hot of its label for
 * sparse cross-entropy, or of the label when a categorical loss has no
 * float targets) has the smoothed targets q_n = (1 - e) t_n + e / K (Keras'
 * `label_smoothing` and PyTorch's, which agree), the loss
 *     l_n = -sum_c w_c q_nc log softmax(z_n)_c
 * and the weight v_n = w of its label (float targets:
 * sum_c w_c t_nc / sum_c t_nc, 0 for an all-zero row). A batch's (and an
 * evaluation's) loss is sum_n l_n / sum_n v_n: for labels exactly
 * PyTorch's CrossEntropyLoss(weight=w, label_smoothing=e) with reduction
 * "mean", and with one-hot targets the categorical loss equals the sparse
 * one. Without weights that is the plain mean (v_n = 1). Differences:
 * PyTorch divides by the batch size for probability targets; Keras'
 * `class_weight` (a fit argument, training only) multiplies each
 * example's loss by the weight of its label and divides by the batch
 * size. A set of examples whose weights sum to 0 has loss 0 and gives no
 * gradient.
 *
 * The options are the loss's, so they apply wherever it is computed: the
 * training loss and gradient (tl_model_fit(), tl_model_train_step()), and
 * the losses tl_model_evaluate(), tl_model_evaluate_metrics() and fit's
 * validation report (as PyTorch's criterion; so a validation loss compares
 * with the training loss). Accuracies are never weighted.
 */
typedef struct tl_loss_options {
    unsigned int version;        /**< TL_LOSS_OPTIONS_VERSION */
    float label_smoothing;       /**< e, in [0, 1); default 0 */
    const float *class_weights;  /**< NULL (default): every class 1; otherwise num_class_weights
                                      finite weights >= 0, not all 0, one per model output */
    size_t num_class_weights;    /**< the model's outputs when class_weights is set; default 0 */
} tl_loss_options;
#define TL_LOSS_OPTIONS_VERSION 1
#define TL_LOSS_OPTIONS_INIT { TL_LOSS_OPTIONS_VERSION, 0.0f, NULL, 0 }
/** Fill `opts` with the defaults of `version`. Errors: TL_EINVAL, TL_EVERSION. */
TL_API tl_status tl_loss_options_init(tl_loss_options *opts, unsigned int version);

/**
 * Set the options of the model's cross-entropy loss (since 1.1), replacing
 * any it had; `opts` NULL means the defaults (no smoothing, no weights).
 * The weights are copied into the model: the caller's array may be freed
 * afterwards. The model must have its layers (the weights are one per
 * output); it need not be compiled yet (tl_model_evaluate() of a model
 * never compiled uses sparse cross-entropy), and tl_model_compile() with
 * a cross-entropy loss keeps the options, so they may be set before or
 * after it. They are saved with the loss in checkpoints (with the
 * optimizer: a file saved without it has neither) and restored by
 * tl_model_load(). If the last layer later changes its width, fit,
 * train_step and evaluate refuse to run (TL_EINVAL) until the options are
 * set again.
 * Errors (the options are unchanged): TL_EINVAL (model NULL; the model's
 * loss is mean squared error; label_smoothing NaN or outside [0, 1); a
 * class weight negative, NaN or infinite; all weights 0; class_weights set
 * with num_class_weights not the model's outputs, or NULL with
 * num_class_weights not 0 - the message names the option and its value),
 * TL_EVERSION, TL_ESTATE (the model has no layers), TL_ENOMEM.
 * Thread safety: not while the model trains or evaluates in another thread.
 */
TL_API tl_status tl_model_set_loss_options(tl_model *model, const tl_loss_options *opts);

/**
 * The model's loss options (since 1.1), written into `out`, whose version
 * the caller sets (TL_LOSS_OPTIONS_INIT). out->class_weights is borrowed
 * from the model (NULL when it has none): valid until its loss options
 * change or it is freed.
 * Errors: TL_EINVAL (NULL), TL_EVERSION.
 */
TL_API tl_status tl_model_loss_options(const tl_model *model, tl_loss_options *out);

/**
 * Bytes of optimizer state currently allocated in the model (moments,
 * velocities). Frozen layers that never trained contribute 0.
 */
TL_API size_t tl_model_optimizer_state_bytes(const tl_model *model);

/**
 * Drop all optimizer state and set the step count to 0; a schedule the
 * optimizer has starts again (epoch and step 0, no plateau history, a
 * total_steps that fit had set back to 0). Errors: TL_EINVAL.
 */
TL_API tl_status tl_model_reset_optimizer(tl_model *model);

#ifdef __cplusplus
}
#endif

#endif /* TL_OPTIM_H */
