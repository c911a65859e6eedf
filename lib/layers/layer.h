/*
 * layer.h - the internal layer interface. One file per layer kind
 * implements a tli_layer_ops table; layer.c holds what all kinds share
 * (names, parameters, getters). Adding a kind is one new file plus one line
 * in tli_layer_ops_for().
 */
#ifndef TLI_LAYER_H
#define TLI_LAYER_H

#include "../core.h"
#include "../kernels/kernels.h"

/* Maximum number of parameter tensors of a layer (kernel, bias). */
#define TLI_MAX_PARAMS 2

/* One parameter tensor with its gradient and optimizer slots. */
typedef struct tli_param {
    const char *name; /* "kernel" or "bias" (static) */
    tl_shape shape;
    size_t count;
    float *value;     /* 64-byte aligned, owned */
    float *grad;      /* 64-byte aligned, owned; valid after a backward pass */
    float *state[2];  /* optimizer slots (Adam m, v; SGD velocity), NULL until used */
} tli_param;

/* Settings of each kind, as given by the user (stored in model files). */
typedef struct tli_conv_cfg {
    uint32_t filters, k_h, k_w, s_h, s_w;
    tl_padding padding;
} tli_conv_cfg;

typedef struct tli_pool_cfg {
    uint32_t p_h, p_w, s_h, s_w;
    tl_padding padding;
} tli_pool_cfg;

typedef struct tli_dense_cfg {
    uint32_t units;
} tli_dense_cfg;

/* Everything a layer needs to know about the call it runs in. */
typedef struct tli_exec {
    uint32_t threads;
    size_t batch;
    bool training;
    /* Backward only, set by tli_backward for one layer's call when a
     * max-pool folds the ReLU of the conv/dense layer below it: the pool
     * also writes that layer's bias gradient here (NULL: it does not), and
     * that layer is then told the bias gradient is already done. */
    float *fold_bias_grad;
    bool bias_grad_done;
} tli_exec;

typedef struct tli_layer_ops tli_layer_ops;

struct tl_layer {
    const tli_layer_ops *ops;
    tl_model *model;
    size_t index;
    char name[TL_MAX_NAME + 1];
    tl_shape in_shape, out_shape;
    size_t in_size, out_size; /* floats per example */
    tl_activation act;
    int use_bias;
    int trainable;
    float lr_scale;
    size_t nparams;
    tli_param params[TLI_MAX_PARAMS];
    union {
        tli_conv_cfg conv;
        tli_pool_cfg pool;
        tli_dense_cfg dense;
    } cfg;
    /* Derived at build time from the shapes and settings. */
    union {
        tli_conv_geom conv;
        tli_pool_geom pool;
    } geom;
    tli_conv_algo conv_algo; /* conv2d: chosen at build time for this CPU */
    /* Workspace views for the current batch size, set by the model. */
    float *out;    /* batch * out_size outputs (an alias of the input for views) */
    void *scratch; /* ops->scratch_bytes of layer-private memory */
};

struct tli_layer_ops {
    tl_layer_kind kind;
    const char *type_name; /* tl_layer_kind_str(): "conv2d", "maxpool2d", ... */
    const char *auto_name; /* Keras' automatic name: "conv2d", "max_pooling2d", ... */
    /* Check the settings against l->in_shape and fill l->out_shape,
     * l->out_size, the parameter shapes and the geometry. Allocates nothing.
     * Returns a status with the message set (without the caller's prefix). */
    tl_status (*build)(tl_layer *l);
    /* Bytes of private scratch for `batch` examples run on `threads`. */
    size_t (*scratch_bytes)(const tl_layer *l, size_t batch, uint32_t threads, bool training);
    /* y = layer(x) for ex->batch examples, applying activation `act`
     * (l->act, or linear when the loss takes the logits). */
    void (*forward)(tl_layer *l, const tli_exec *ex, const float *x, float *y, tl_activation act);
    /* dy holds dL/dy for the batch, where y = act(z) is the forward output;
     * it is overwritten with dL/dz (act is the activation the forward pass
     * applied). Computes parameter gradients when `param_grads`, and dx
     * when dx is not NULL. x and y are the forward pass's input and output.
     * A layer without an activation of its own (maxpool) is given, as `act`,
     * TL_ACT_RELU when the engine asks it to fold the derivative of the ReLU
     * that produced x into dx (see tli_backward), TL_ACT_LINEAR otherwise. */
    void (*backward)(tl_layer *l, const tli_exec *ex, const float *x, const float *y, float *dy, float *dx,
                     tl_activation act, bool param_grads);
    /* Output is the input itself (flatten): no buffer, gradient passes through. */
    bool is_view;
};

extern const tli_layer_ops tli_conv2d_ops;
extern const tli_layer_ops tli_maxpool2d_ops;
extern const tli_layer_ops tli_flatten_ops;
extern const tli_layer_ops tli_dense_ops;

/* The ops of a kind, or NULL for an unknown kind. */
const tli_layer_ops *tli_layer_ops_for(tl_layer_kind kind);

/* Allocate a layer of `ops` called `name` at position `index`, with its
 * settings (cfg may be NULL for kinds without settings), build it on
 * `in_shape`, and allocate its parameters (zero-filled). On error returns
 * the status with a message naming the layer; *out is NULL. The caller
 * sets l->model. */
tl_status tli_layer_new(tl_layer **out, const tli_layer_ops *ops, const void *cfg, tl_activation act,
                        int use_bias, const tl_shape *in_shape, const char *name, size_t index);

/* Free a layer and its parameters and optimizer state. NULL is a no-op. */
void tli_layer_free(tl_layer *l);

/* Draw the layer's kernel (Glorot-uniform) and zero its bias from a stream
 * determined by (seed, stream). */
void tli_layer_init_params(tl_layer *l, uint64_t seed, uint64_t stream);

/* Free the optimizer slots of every parameter. */
void tli_layer_free_state(tl_layer *l);

/* Largest number of floats in one example's tensor or one parameter tensor:
 * indices fit an int32 (max-pool arg-max) and sizes never overflow. */
#define TLI_MAX_ELEMS ((size_t)INT32_MAX)

/* Output length and leading pad of windows of size k, stride s over n cells
 * (Keras rules). False when padding is valid and k > n. */
bool tli_window(uint32_t n, uint32_t k, uint32_t s, tl_padding pad, uint32_t *out_len, uint32_t *pad_before);

/* Shape helpers. */
tl_shape tli_shape3(uint32_t h, uint32_t w, uint32_t c);
tl_shape tli_shape1(uint32_t n);
/* "(13, 13, 64)" into buf. */
const char *tli_shape_str(const tl_shape *s, char *buf, size_t cap);
bool tli_shape_eq(const tl_shape *a, const tl_shape *b);

#endif /* TLI_LAYER_H */
