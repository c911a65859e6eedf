/*
 * engine.h - running a model over a batch: the workspace, the forward and
 * backward passes over the layer graph.
 */
#ifndef TLI_ENGINE_H
#define TLI_ENGINE_H

#include "model.h"

/* Make sure the workspace holds `batch` examples (for training when
 * `training`). Allocates only when it must grow. Checks the graph first
 * (tli_model_check_graph): a model with an unused layer output cannot run. */
tl_status tli_workspace_ensure(tl_model *m, size_t batch, bool training);

/* The execution context for a batch of n examples (rng_key 0). */
tli_exec tli_exec_for(const tl_model *m, size_t n, bool training);

/* Before a training step's forward pass: when a layer of the model draws
 * random numbers (dropout), draw ex->rng_key from the model's training
 * stream (m->train_rng, saved in checkpoints), so that training repeats
 * and resumes bit for bit. A model without such a layer draws nothing. */
void tli_exec_draw_key(tl_model *m, tli_exec *ex);

/* Run every layer on ex->batch examples at x (the workspace must be
 * ensured). The last layer applies its activation unless `logits`.
 * Returns the last layer's output (the input when there are no layers). */
const float *tli_forward(tl_model *m, const tli_exec *ex, const float *x, bool logits);

/* Run layers [0, last] only (inference) and return layer `last`'s output. */
const float *tli_forward_to(tl_model *m, const tli_exec *ex, const float *x, size_t last);

/* Where the loss writes dL/d(last output) for the backward pass (training
 * workspace only). */
float *tli_output_grad(tl_model *m);

/* Index of the lowest layer that has trainable parameters, or nlayers when
 * none: backward stops there. */
size_t tli_backward_stop(const tl_model *m);

/* Backward pass after tli_forward(): tli_output_grad() holds dL/d(last
 * output) - or dL/d(logits) when `logits`. Computes parameter gradients of
 * layers that learn; gradients of a layer's output from all the layers
 * that take it are summed. Stops at tli_backward_stop(). */
void tli_backward(tl_model *m, const tli_exec *ex, const float *x, bool logits);

/* Whether a prediction of n examples goes split over the batch
 * (engine_split.c): several threads, and at least two examples each. */
bool tli_split_worth(const tl_model *m, size_t n);

/* Predict n examples of x into out (n * the output width), each of the
 * model's threads running every layer on its own slice of the batch.
 * Only when tli_split_worth(m, n). Returns TL_ENOMEM when the threads'
 * workspaces cannot be had (the message set); the model is unchanged. */
tl_status tli_split_predict(tl_model *m, const float *x, size_t n, float *out);

#endif /* TLI_ENGINE_H */
