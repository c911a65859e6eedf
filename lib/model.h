/*
 * model.h - the model's internals, shared by model.c (structure),
 * engine.c (forward/backward), optim.c, train.c, transfer and io.
 */
#ifndef TLI_MODEL_H
#define TLI_MODEL_H

#include "core.h"
#include "layers/layer.h"
#include "rng.h"

/* Memory for one batch size, allocated once and reused by every step. */
typedef struct tli_workspace {
    size_t batch;     /* capacity in examples; 0: nothing allocated */
    bool training;    /* sized for training (gradients, arg-max) */
    void *arena;      /* one aligned block holding everything below */
    size_t bytes;
    float *input;     /* batch * in_size: the gathered batch */
    int32_t *labels;  /* batch */
    float *targets;   /* batch * output width */
    float *grad[2];   /* ping-pong gradient buffers (training only) */
} tli_workspace;

struct tl_optimizer {
    tl_optimizer_kind kind;
    float lr;
    float beta1, beta2, eps; /* Adam */
    float momentum;          /* SGD */
    int nesterov;
    float weight_decay;
    uint64_t steps;
    bool owned;              /* taken by a model: tl_optimizer_free() refuses it */
};

struct tl_model {
    tl_shape input;
    size_t in_size;
    uint64_t seed;
    tl_layer **layers;
    size_t nlayers, cap;
    uint32_t threads_req; /* 0: all online CPUs */
    uint32_t threads;     /* resolved, >= 1 */
    tl_optimizer *opt;
    tl_loss loss;
    tli_rng train_rng;    /* shuffling; continues across fit calls */
    tli_workspace ws;
};

/* Stream numbers of the model's seed. Weight init uses stream = layer index. */
#define TLI_STREAM_TRAIN 0x7472616e696e67ULL /* "training" */

/* Append a layer built from `ops` and `cfg` (the add functions and io use
 * it); `name` NULL for an automatic name; `fn` prefixes error messages. */
tl_status tli_model_append(tl_layer **out, tl_model *m, const tli_layer_ops *ops, const void *cfg,
                           tl_activation act, int use_bias, const char *name, const char *fn);

/* Width of the last layer's output (the model's output count per example). */
size_t tli_model_out_size(const tl_model *m);

/* Drop the workspace (after the structure changed). */
void tli_workspace_free(tl_model *m);

/* Make sure the workspace holds `batch` examples (for training when
 * `training`). Allocates only when it must grow. */
tl_status tli_workspace_ensure(tl_model *m, size_t batch, bool training);

/* The loss takes the logits of the last layer (fused softmax-cross-entropy). */
bool tli_loss_takes_logits(const tl_model *m);

/* Check that the compiled loss fits the last layer; message on error. */
tl_status tli_check_loss(const tl_model *m, tl_loss loss, const char *fn);

/* Run layers [0, m->nlayers) on ex->batch examples at x (the workspace must
 * be ensured). The last layer applies its activation unless `logits`.
 * Returns the last layer's output (the input when there are no layers). */
const float *tli_forward(tl_model *m, const tli_exec *ex, const float *x, bool logits);

/* Run layers [from, to) only, starting from x (the input of layer `from`). */
const float *tli_forward_range(tl_model *m, const tli_exec *ex, const float *x, size_t from, size_t to,
                               bool logits);

/* Index of the lowest layer that has trainable parameters, or nlayers when
 * none: backward stops there. */
size_t tli_backward_stop(const tl_model *m);

/* Backward pass after tli_forward(): dlast (in ws.grad[0]) holds dL/d(last
 * output) - or dL/d(logits) when `logits`. Computes parameter gradients of
 * trainable layers; stops at tli_backward_stop(). */
void tli_backward(tl_model *m, const tli_exec *ex, const float *x, bool logits);

/* The execution context for a batch of n examples. */
tli_exec tli_exec_for(const tl_model *m, size_t n, bool training);

/* Optimizer internals (optim.c). */
tl_status tli_optim_prepare(tl_model *m); /* allocate state of trainable params */
void tli_optim_step(tl_model *m);         /* one update of every trainable param */

/* A layer takes part in training: it has parameters and is trainable. */
static inline bool tli_layer_learns(const tl_layer *l)
{
    return l->trainable && l->nparams > 0;
}

#endif /* TLI_MODEL_H */
