/*
 * model.h - a model's structure: its layers as a graph, names, the
 * workspace memory it owns. engine.c (running it), train.c, transfer and
 * io build on this; this header knows nothing of them or of optimizers.
 */
#ifndef TLI_MODEL_H
#define TLI_MODEL_H

#include "core.h"
#include "layers/layer.h"
#include "rng.h"

/* The threads' shadows of a prediction split over the batch (engine_split.c). */
typedef struct tli_split tli_split;

/* Memory for one batch size, allocated once and reused by every step
 * (laid out by engine.c). */
typedef struct tli_workspace {
    size_t batch;     /* capacity in examples; 0: nothing allocated */
    bool training;    /* sized for training (gradients, arg-max) */
    void *arena;      /* one aligned block holding everything below */
    size_t bytes;
    float *input;     /* batch * in_size: the gathered batch */
    int32_t *labels;  /* batch */
    float *targets;   /* batch * output width */
    float **gslots;   /* training: gradient buffers that layers' outputs share by liveness */
    size_t nslots;
    float *gtmp;      /* training: a gradient to be added into a shared one */
    tli_split *split; /* a prediction split over the batch: the threads' shadows, or NULL */
} tli_workspace;

/* The early-stopping state of a fit that has not finished (history.c):
 * kept in the model so that a checkpoint written during the fit (section
 * ESTP) and a fit resumed from it, or after a fit that ended with an error
 * or was cancelled, continue the patience and the best weights exactly. */
typedef struct tli_early_state {
    bool pending;                /* a fit with early stopping is under way or was interrupted */
    tl_schedule_monitor monitor;
    double best;                 /* best monitored value; NaN: none yet */
    uint32_t best_epoch;         /* 1-based epoch of the run; 0: none yet */
    uint32_t wait;               /* epochs in a row without improvement */
    uint32_t epochs;             /* epochs the run has completed */
    float *copy;                 /* restore_best: every tensor at the best epoch (count values); else NULL */
    size_t count;
} tli_early_state;

/* Forget the state (frees the copy). */
void tli_early_clear(tli_early_state *s);

/* Values of every tensor of the model (parameters and state), the size of
 * a best-weights copy. */
size_t tli_model_tensor_values(const tl_model *m);

struct tl_model {
    tl_shape input;
    size_t in_size;
    uint64_t seed;
    tl_layer **layers;
    size_t nlayers, cap;
    bool shell;           /* layers describe a file's model and hold no values */
    uint32_t threads_req; /* 0: all online CPUs */
    uint32_t threads;     /* resolved, >= 1 */
    tl_optimizer *opt;
    tl_loss loss;
    float label_smoothing; /* the cross-entropy losses' options (tl_model_set_loss_options, */
    float *class_weights;  /* loss_options.c): NULL or nclass_weights floats, the model's copy */
    size_t nclass_weights;
    tli_rng train_rng;    /* shuffling; continues across fit calls */
    tli_early_state early; /* an unfinished fit's early stopping (saved in checkpoints) */
    tli_workspace ws;
};

/* Stream numbers of the model's seed. Weight init uses stream = layer index. */
#define TLI_STREAM_TRAIN 0x7472616e696e67ULL /* "training" */

/* Append a layer (the add functions, io and transfer use it). `inputs`
 * NULL: the previous layer (the model's input for the first); otherwise
 * `ninputs` indices of earlier layers or TLI_INPUT_MODEL. `cfg` NULL: the
 * fields' defaults. `name` NULL: an automatic name. `fn` prefixes error
 * messages. On error the model is unchanged. */
tl_status tli_model_append(tl_layer **out, tl_model *m, const tli_layer_ops *ops, const void *cfg,
                           tl_activation act, int use_bias, const uint32_t *inputs, size_t ninputs,
                           const char *name, const char *fn);

/* The index of `input` in model `m` for an add function: NULL is the
 * previous layer (TLI_INPUT_MODEL for the first). TL_EINVAL when it is a
 * layer of another model. */
tl_status tli_model_input_index(uint32_t *out, const tl_model *m, const tl_layer *input, const char *fn);

/* The output shape of input index `i` (TLI_INPUT_MODEL: the model's input). */
const tl_shape *tli_model_shape_of(const tl_model *m, uint32_t i);

/* Width of the last layer's output (the model's output count per example). */
size_t tli_model_out_size(const tl_model *m);

/* TL_EINVAL when a layer other than the last one has an output nothing
 * uses (the message names it and says what to do); `fn` prefixes it. */
tl_status tli_model_check_graph(const tl_model *m, const char *fn);

/* Remove the last `count` layers, unless that would leave a kept layer's
 * output unused (TL_EINVAL naming it; the model is unchanged). Optimizer
 * state is the caller's to reset. */
tl_status tli_model_pop(tl_model *m, size_t count, const char *fn);

/* Re-draw every tensor from `seed`, which becomes the model's seed. */
void tli_model_redraw(tl_model *m, uint64_t seed);

/* Drop the workspace and the layers' caches (after the structure or
 * thread count changed). */
void tli_workspace_free(tl_model *m);

/* Drop the batch split's shadows and their memory (engine_split.c). */
void tli_split_free(tl_model *m);

/* tli_layer_touch every layer: their values may all have changed. */
void tli_model_touch(tl_model *m);

#endif /* TLI_MODEL_H */
