/*
 * train.h - what training adds to a model: the compiled loss and
 * optimizer, and the optimizer applied to the model's parameters
 * (compile.c). Used by train.c and io (which saves and restores them).
 */
#ifndef TLI_TRAIN_H
#define TLI_TRAIN_H

#include "engine.h"
#include "optim.h"

/* The loss takes the logits of the last layer (fused softmax-cross-entropy). */
bool tli_loss_takes_logits(const tl_model *m);

/* Check that the compiled loss fits the last layer; message on error. */
tl_status tli_check_loss(const tl_model *m, tl_loss loss, const char *fn);

/* Allocate the optimizer state of every parameter that learns. */
tl_status tli_train_prepare(tl_model *m);

/* One optimizer step over every parameter that learns (after backward). */
void tli_train_update(tl_model *m);

/* ---- loss options (loss_options.c) ---------------------------------------- */

/* Whether the model's loss options are the defaults (none). */
bool tli_loss_options_default(const tl_model *m);

/* Check loss options against a loss and a model of `outputs` outputs, as
 * tl_model_set_loss_options() does (TL_EINVAL naming the option and the
 * value); the checkpoint reader holds a file to the same rules. */
tl_status tli_loss_options_check(tl_loss loss, float smoothing, const float *weights, size_t nweights,
                                 size_t outputs, const char *fn);

/* Replace the model's loss options with checked ones (weights copied). */
tl_status tli_loss_options_set(tl_model *m, float smoothing, const float *weights, size_t nweights,
                               const char *fn);

/* Copy loss options into the caller's `out` as far as out->version
 * reaches; the weights are borrowed (TL_EINVAL / TL_EVERSION naming fn). */
tl_status tli_loss_options_get(tl_loss_options *out, float smoothing, const float *weights, size_t nweights,
                               const char *fn);

/* Before running the loss: the class weights still fit the last layer. */
tl_status tli_check_loss_options(const tl_model *m, const char *fn);

/* ---- evaluation and metrics (train.c, metrics.c) --------------------------- */

/* tl_model_evaluate() after its NULL checks; `metrics` not NULL also counts
 * the metrics of every batch (tli_metrics_add). */
tl_status tli_model_evaluate(double *out_loss, double *out_accuracy, tl_model *m, const tl_dataset *data,
                             uint32_t batch_size, tl_metrics *metrics, const char *fn);

/* Empty metrics of `classes` classes and top-k `k` (a confusion matrix when
 * `confusion`); TL_ENOMEM with a message naming fn. */
tl_status tli_metrics_create(tl_metrics **out, size_t classes, uint32_t k, bool confusion, const char *fn);

/* Back to nothing counted (fit's validation reuses one per epoch). */
void tli_metrics_reset(tl_metrics *metrics);

/* How many of the n examples have their true class among the first k of
 * y's ranking: tli_metrics_add()'s top-k rule, for fit's training figure. */
size_t tli_top_k_hits(const float *y, size_t n, size_t width, const int32_t *labels, const float *targets,
                      uint32_t k);

/* The k fit measures: tl_fit_options.top_k, or its default for a model of
 * `outputs` outputs (0: not measured). */
uint32_t tli_fit_top_k(uint32_t requested, size_t outputs);

/* Count one evaluated batch: y the model's output (logits for the
 * cross-entropy losses), true classes from labels or the arg-max of the
 * targets rows (width floats each). */
void tli_metrics_add(tl_metrics *metrics, const float *y, size_t n, size_t width, const int32_t *labels,
                     const float *targets);

#endif /* TLI_TRAIN_H */
