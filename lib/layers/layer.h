/*
 * layer.h - the internal layer interface.
 *
 * A layer kind is one file that defines a tli_layer_ops table: everything
 * the rest of libtl ever asks about the kind is in it - building and
 * checking its settings, its tensors (name, role, initializer, layout),
 * its settings as a list of named fields (which the checkpoint, the
 * safetensors metadata and the summaries encode, decode and describe
 * generically), forward, backward and scratch. Nothing outside lib/layers/
 * switches on a kind: a new kind is its file, its line in the table of
 * layer.c, its public add function (lib/model_add.c) and enum value.
 */
#ifndef TLI_LAYER_H
#define TLI_LAYER_H

#include "../core.h"
#include "../kernels/batchnorm.h"
#include "../kernels/elementwise.h"
#include "../kernels/kernels.h"

/* Most tensors one layer may have (batch normalization has four). */
#define TLI_MAX_TENSORS 8
/* Most inputs of one layer (add, concatenate). */
#define TLI_MAX_INPUTS 16
/* The input index that means "the model's input". */
#define TLI_INPUT_MODEL UINT32_MAX
/* Bytes of a kind's settings struct and of its derived geometry. */
#define TLI_CFG_BYTES 64
#define TLI_GEOM_BYTES 96

/* What a tensor is to training. */
typedef enum tli_role {
    TLI_ROLE_PARAM = 0, /* trainable: gets a gradient and optimizer updates */
    TLI_ROLE_STATE = 1  /* updated by the layer itself (moving statistics): saved, never touched by
                         * gradients or the optimizer */
} tli_role;

/* How a tensor's first values are drawn (tli_layer_init_params): the
 * public tl_initializer's values, resolved (never TL_INIT_DEFAULT; see
 * tli_init_resolve). The fans are the tensor's (tli_param.fan_in,
 * fan_out). */
typedef enum tli_init {
    TLI_INIT_ZEROS = TL_INIT_ZEROS,
    TLI_INIT_ONES = TL_INIT_ONES,
    TLI_INIT_GLOROT_UNIFORM = TL_INIT_GLOROT_UNIFORM, /* Keras' default for kernels */
    TLI_INIT_GLOROT_TRUNCATED_NORMAL = TL_INIT_GLOROT_TRUNCATED_NORMAL,
    TLI_INIT_HE_UNIFORM = TL_INIT_HE_UNIFORM,
    TLI_INIT_HE_TRUNCATED_NORMAL = TL_INIT_HE_TRUNCATED_NORMAL,
    TLI_INIT_HE_NORMAL_FAN_OUT = TL_INIT_HE_NORMAL_FAN_OUT,
    TLI_INIT_UNIFORM_INV_SQRT_FAN_IN = TL_INIT_UNIFORM_INV_SQRT_FAN_IN,
    TLI_INIT_NORMAL_STDDEV_0_01 = TL_INIT_NORMAL_STDDEV_0_01
} tli_init;

/* The largest tl_initializer value. */
#define TLI_INIT_MAX TL_INIT_NORMAL_STDDEV_0_01

/* Names of tl_initializer's values (TLI_INIT_MAX + 1), for the settings
 * fields that hold one. */
extern const char *const tli_initializer_names[];

/* A settings word holding a tl_initializer: TL_INIT_DEFAULT becomes `def`. */
static inline tli_init tli_init_resolve(uint32_t word, tli_init def)
{
    return word == TL_INIT_DEFAULT ? def : (tli_init)word;
}

/* How a tensor is laid out in PyTorch, against libtl's (Keras') layout. */
typedef enum tli_torch_layout {
    TLI_TORCH_SAME = 0,        /* biases, per-channel vectors */
    TLI_TORCH_CONV_KERNEL = 1, /* (kh, kw, in, out) here, (out, in, kh, kw) in PyTorch */
    TLI_TORCH_DENSE_KERNEL = 2 /* (in, out) here, (out, in) in PyTorch */
} tli_torch_layout;

/* One tensor of a layer, with its gradient and optimizer slots. */
typedef struct tli_param {
    const char *name;       /* Keras' name: "kernel", "bias" (static) */
    const char *torch_name; /* PyTorch's name: "weight", "bias" (static) */
    tli_role role;
    tli_init init;
    tli_torch_layout torch_layout;
    tl_shape shape;
    size_t count;
    double fan_in, fan_out; /* for the initializers: the shape's (tli_tensor_set), or the kernel's for
                             * a bias (tli_tensor_set_fans) */
    bool preset; /* state the user sets (normalization statistics), not drawn: structure clones copy it
                  * and tl_model_init_params keeps it (tli_tensor_set_preset) */
    float *value;    /* 64-byte aligned, owned; NULL in a shell layer (see tli_layer_new) */
    float *grad;     /* parameters only; valid after a backward pass */
    float *state[2]; /* optimizer slots (Adam m, v; SGD velocity), NULL until used */
} tli_param;

/* ---- settings as fields ------------------------------------------------- */

typedef enum tli_field_type {
    TLI_FIELD_U32 = 0,  /* a count or size */
    TLI_FIELD_ENUM = 1, /* a public enum; values above `max` are unknown */
    TLI_FIELD_BOOL = 2, /* 0 or 1 */
    TLI_FIELD_F32 = 3
} tli_field_type;

/* One setting of a kind: a 32-bit member of its settings struct. The
 * checkpoint stores the fields in table order as 32-bit words, so a kind
 * only ever appends fields; `def` (bits for F32) fills a field that an
 * older file does not have. */
typedef struct tli_field {
    const char *name;
    tli_field_type type;
    size_t offset;
    uint32_t max; /* ENUM only */
    uint32_t def;
    const char *const *names; /* ENUM: the values' names (max + 1) for JSON and text, or NULL */
} tli_field;

/* Names of tl_padding's values, for the fields that hold one. */
extern const char *const tli_padding_names[];

/* ---- layers ------------------------------------------------------------- */

/* Everything a layer needs to know about the call it runs in. */
typedef struct tli_exec {
    uint32_t threads;
    size_t batch;
    bool training;
    /* Backward only. fold_bias_grad: a max-pool that folds the ReLU of the
     * layer below also writes that layer's bias gradient here (NULL: it
     * does not). bias_grad_done: this layer's bias gradient was written by
     * the layer above. dx_acc[k]: add input k's gradient into dx[k] instead
     * of overwriting it (only for kinds with .accumulates). */
    float *fold_bias_grad;
    bool bias_grad_done;
    const bool *dx_acc;
    /* Training: a key drawn from the model's training random stream once
     * per forward pass (tli_exec_draw_key) when a layer draws_random; the
     * layer derives its random numbers from (key, its index, element
     * index), so they do not depend on the thread count. 0 otherwise. */
    uint64_t rng_key;
    /* Training, data-parallel with synchronized batch normalization
     * (tl_fit_options.sync_batchnorm): how batchnorm sums its statistics
     * over the processes; NULL otherwise. */
    const tli_bn_sync *bn_sync;
} tli_exec;

typedef struct tli_layer_ops tli_layer_ops;

/* The ONNX graph a kind exports itself into (lib/io/onnx_export.h). */
typedef struct tli_onnx tli_onnx;

/* What a kind does with a flat input that the ONNX export leaves in ONNX's
 * (c, h, w) flatten order instead of libtl's (h, w, c) (see flatten.c). */
typedef enum tli_onnx_flat {
    TLI_ONNX_FLAT_NO = 0,    /* needs libtl's order (the flatten then transposes first) */
    TLI_ONNX_FLAT_TAKES = 1, /* takes either: permutes its weights (dense) */
    TLI_ONNX_FLAT_PASSES = 2 /* leaves the order as it is for its own consumers (dropout) */
} tli_onnx_flat;

struct tl_layer {
    const tli_layer_ops *ops;
    tl_model *model;
    size_t index;
    char name[TL_MAX_NAME + 1];
    /* Inputs: indices of earlier layers of the model, or TLI_INPUT_MODEL. */
    size_t ninputs;
    uint32_t inputs[TLI_MAX_INPUTS];
    tl_shape in_shapes[TLI_MAX_INPUTS];
    tl_shape in_shape, out_shape; /* in_shape = in_shapes[0] */
    size_t in_size, out_size;     /* floats per example (in_size of input 0) */
    tl_activation act;
    int use_bias;
    int trainable;
    float lr_scale;
    size_t nparams; /* tensors, parameters and state */
    tli_param params[TLI_MAX_TENSORS];
    int bias_index; /* the tensor that is the bias the activation follows, or -1 (set by build) */
    /* The kind's settings and what it derives from them at build time
     * (each kind casts these to its own structs). */
    _Alignas(8) unsigned char cfg[TLI_CFG_BYTES];
    _Alignas(8) unsigned char geom[TLI_GEOM_BYTES];
    /* Graph bookkeeping, kept by the model: layers that take this one's output. */
    size_t nconsumers;
    /* Set by the engine for the current structure (see engine.c). */
    int32_t gslot;                  /* gradient buffer of this layer's output, -1: none */
    bool in_acc[TLI_MAX_INPUTS];    /* input k's gradient is added, not written */
    bool relu_folded, bias_folded;  /* backward: done by the consumer (a max-pool) */
    struct tl_layer *act_folded;    /* backward: the ReLU / ReLU6 layer after it, whose backward this
                                     * one's backward_act does (see engine.c), or NULL */
    /* Workspace views for the current batch size, set by the engine. */
    float *out;    /* batch * out_size outputs (the input itself for views) */
    void *scratch; /* ops->scratch_bytes of layer-private memory */
    /* Bumped (tli_layer_touch) by every path that may change the values
     * of the layer's tensors or its trainable flag: what is derived from
     * them and kept across calls (the cache below) compares versions to
     * know whether it is stale. */
    uint64_t version;
    /* What a kind derives from its tensors in inference and keeps across
     * calls (conv2d: its kernel and bias with the next layer's affine
     * folded in), 64-byte aligned, owned by the layer; cache_key records
     * what it was made from (cache_key[0] 0: nothing). Dropped with the
     * workspace (tli_workspace_free: structure or thread changes) and by
     * tli_layer_free. */
    void *cache;
    uint64_t cache_key[4];
};

/* The layer's tensor values or trainable flag may have changed (see
 * tl_layer.version). Every write path calls it: setters, loads, transfer,
 * the optimizer, batchnorm's moving statistics, best-weights restore. */
static inline void tli_layer_touch(tl_layer *l)
{
    l->version++;
}

struct tli_layer_ops {
    tl_layer_kind kind;
    const char *type_name; /* tl_layer_kind_str(): "conv2d", "maxpool2d", ... */
    const char *auto_name; /* Keras' automatic name: "conv2d", "max_pooling2d", ... */
    /* Settings: the kind's struct size, its fields, and how many of them a
     * format 1.0 checkpoint holds (0: the kind is newer than 1.0). */
    size_t cfg_size;
    const tli_field *fields;
    size_t nfields;
    size_t nfields_v1_0;
    /* Inputs it takes: min_inputs..max_inputs (1..1 for most kinds). */
    size_t min_inputs, max_inputs;
    bool has_activation; /* applies l->act, any of them (conv2d, dense, activation); others must be
                          * linear */
    bool is_activation;  /* the layer is its activation (activation): the settings text names it */
    bool draws_random;   /* forward in training uses ex->rng_key (dropout) */
    bool has_bias;       /* honours l->use_bias; others must have it 0 */
    bool is_view;        /* output is input 0 itself (flatten): no buffer, gradient passes through */
    bool accumulates;    /* backward honours ex->dx_acc */
    bool folds_input_relu; /* backward can apply the ReLU derivative of its input's layer and
                            * write that layer's bias gradient (see tli_maxpool_backward) */
    bool torch_batch_counter; /* PyTorch's state dict has "<layer>.num_batches_tracked" (batchnorm) */
    bool trains_state; /* a training pass of a trainable layer moves its state tensors (batchnorm's
                        * moving statistics): data-parallel fit averages them across processes */
    bool sums_inputs;  /* y = the element-wise sum of its inputs, clamped by a fused ReLU / ReLU6
                        * as tli_sum does (add): a layer feeding one of two inputs may add the
                        * other in its own pass - forward_affine (inference, frozen base) or
                        * forward_residual (training) - and the engine skips this one */
    /* Check the settings (l->cfg) against l->in_shapes and fill
     * l->out_shape, l->out_size, the tensors (name, role, shape, count,
     * init, layout), l->bias_index and the geometry. Allocates nothing.
     * Returns a status with the message set (naming the layer). */
    tl_status (*build)(tl_layer *l);
    /* Bytes of private scratch for `batch` examples run on `threads`. In
     * an inference workspace every layer gets the same block (engine.c,
     * layout): nothing may be kept there from one forward call to the next. */
    size_t (*scratch_bytes)(const tl_layer *l, size_t batch, uint32_t threads, bool training);
    /* y = layer(x[0..ninputs)) for ex->batch examples, applying activation
     * `act` (l->act, or linear when the loss takes the logits). */
    void (*forward)(tl_layer *l, const tli_exec *ex, const float *const *x, float *y, tl_activation act);
    /* dy holds dL/dy for the batch, where y = act(z) is the forward output;
     * it may be overwritten with dL/dz (act is the activation the forward
     * pass applied). Computes parameter gradients when `param_grads`, and
     * dx[k] for every input k whose dx[k] is not NULL. x and y are the
     * forward pass's inputs and output. A kind with folds_input_relu is
     * given TL_ACT_RELU as `act` when it is to fold its input layer's ReLU
     * derivative into dx[0], TL_ACT_LINEAR otherwise. */
    void (*backward)(tl_layer *l, const tli_exec *ex, const float *const *x, const float *y, float *dy,
                     float *const *dx, tl_activation act, bool param_grads);
    /* Optional. Set the width of the output (a classifier head's classes)
     * in settings `cfg`: tl_model_clone_structure's head_units. */
    void (*set_units)(void *cfg, uint32_t units);
    /* Optional: the kinds with a public options struct. from_options fills
     * settings `cfg` (defaults already in it), activation and bias from the
     * caller's options (read into a current-version struct); get_options
     * copies them back into one (tl_checkpoint_info_layer_*), touching
     * only the fields of options version `version`. */
    void (*from_options)(void *cfg, tl_activation *act, int *use_bias, const void *opts);
    void (*get_options)(const tl_layer *l, void *opts, unsigned int version);
    /* Optional: check values `v` (params[i].count floats) for tensor `i`
     * of built layer `l`: tl_layer_set_weights before it copies them, and
     * tli_model_check_graph (every run and save) with each tensor's own
     * values. Returns a status with the message set, naming the layer,
     * the tensor, the element and the value (normalization: std > 0). */
    tl_status (*check_values)(const tl_layer *l, size_t i, const float *v);
    /* ONNX export (lib/io/onnx_export.h has the conventions). onnx_export
     * adds the layer's nodes and weights in inference form, ending in the
     * tensor tli_onnx_out(g, l) or an alias; returns a status with the
     * message set; the writer calls it twice per export (two passes), and
     * both calls must do the same. NULL: the kind has no ONNX equivalent,
     * and the export fails with TL_EUNSUPPORTED naming the layer. */
    tl_status (*onnx_export)(const tl_layer *l, tli_onnx *g);
    tli_onnx_flat onnx_flat;
    /* Optional: in inference the layer is y = x * scale[k] + shift[k] for
     * channel k of its last axis (out_shape's last dim floats each), so a
     * linear conv2d or dense layer before it can take it into its weights
     * (batchnorm; the ONNX export's fold_batchnorm). */
    void (*channel_affine)(const tl_layer *l, float *scale, float *shift);
    /* Optional: the multiply-add work of one example in FLOPs (2 per
     * multiply-add): out[0] forward, out[1] the input gradient, out[2] the
     * parameter gradients (tl_layer_flops). NULL: none (element-wise kinds). */
    void (*flops)(const tl_layer *l, double out[3]);
    /* Optional (the engine's fusion, see run_fused in engine.c): when the
     * layer is, in pass `ex`, the per-channel map y = x * scale[c] +
     * shift[c] over the last axis, point *scale and *shift at out_shape's
     * channels of floats in its scratch, valid until its next call, and
     * return true; false when it is not (batchnorm with batch statistics).
     * (An inference workspace shares one scratch block among all layers:
     * the caller reads them before its own kernels use its scratch.)
     * The answer and the values depend only on whether `ex` is a training
     * pass, the layer's trainable flag and its tensors' values, so a layer
     * that folds them may keep the result while l->version is unchanged. */
    bool (*affine)(tl_layer *l, const tli_exec *ex, const float **scale, const float **shift);
    /* Optional, for layers no backward pass will reach (inference, or
     * below the backward stop of a training pass: a frozen base; the
     * engine decides): y = act(f(x) * scale + shift + residual) with the
     * layer's own activation linear, in one pass over y - the layer folds
     * the per-channel affine of `next`, its sole consumer (whose
     * ops->affine it asks when it must fold anew; it may keep the folded
     * weights in l->cache while both layers' versions and the pass kind
     * are unchanged), and the activation after that into its own
     * arithmetic. residual (NULL: none) is, when `next` feeds a two-input
     * sums_inputs layer (a residual join), that layer's other input, laid
     * out as y; act is then linear, ReLU or ReLU6 (the activation after
     * the join). Returns false, having done nothing, when it cannot
     * (next->ops->affine says no, or no memory for the cache); the engine
     * then runs the layers one by one. */
    bool (*forward_affine)(tl_layer *l, const tli_exec *ex, const float *const *x, float *y, tl_layer *next,
                           const float *residual, tl_activation act);
    /* Optional, any pass: forward with `act` (TL_ACT_RELU or TL_ACT_RELU6)
     * applied in the same pass, y = act(layer(x)), written to the output
     * of the activation layer after it (its sole consumer), whose forward
     * the engine then skips. The layer's own output is not written, so its
     * backward must not read y (batchnorm and add do not), and the
     * activation kind's backward reads its own output, not its input, for
     * these two activations. */
    void (*forward_act)(tl_layer *l, const tli_exec *ex, const float *const *x, float *y, tl_activation act);
    /* Optional, training passes: forward writing y = act(layer(x) + res)
     * (act TL_ACT_LINEAR, TL_ACT_RELU or TL_ACT_RELU6, applied as
     * tli_sum's clamp), the work of the sums_inputs layer after it (its sole
     * consumer, with two inputs, the other one `res`) and of the
     * activation layer after that when act is not linear; y is the output
     * of the last of them, whose forwards the engine then skips. The same
     * bits as the layers one by one. The layer's own output is not
     * written (as forward_act). */
    void (*forward_residual)(tl_layer *l, const tli_exec *ex, const float *const *x, const float *res, float *y,
                             tl_activation act);
    /* Optional, the backward counterpart: the layer's backward together
     * with that of the ReLU / ReLU6 activation layer after it (its sole
     * consumer), whose backward the engine then skips. act_y is the
     * activation's output, dy the gradient of it (may be overwritten:
     * nothing else reads it); the layer
     * applies the activation's derivative (dy where 0 < act_y, and
     * act_y < 6 for ReLU6; 0 elsewhere) in its own passes. Otherwise as
     * backward (its own y is not given: it may not have been written). */
    void (*backward_act)(tl_layer *l, const tli_exec *ex, const float *const *x, const float *act_y,
                         float *dy, float *const *dx, tl_activation act, bool param_grads);
};

/* The ops of a kind, or NULL for an unknown kind. */
const tli_layer_ops *tli_layer_ops_for(tl_layer_kind kind);

/* What a new layer is made of. */
typedef struct tli_layer_spec {
    const tli_layer_ops *ops;
    const void *cfg; /* ops->cfg_size bytes; NULL: the fields' defaults */
    tl_activation act;
    int use_bias;
    size_t ninputs;
    const uint32_t *inputs;   /* ninputs indices */
    const tl_shape *in_shapes; /* their output shapes */
} tli_layer_spec;

/* Allocate a layer from `spec` called `name` at position `index`, build
 * it, and - unless `shell` - allocate its tensors (zero-filled). A shell
 * layer has shapes, settings and tensor descriptions but no values: it
 * describes a layer of a file (tl_checkpoint_info). On error returns the
 * status with a message naming the layer; *out is NULL. The caller sets
 * l->model. */
tl_status tli_layer_new(tl_layer **out, const tli_layer_spec *spec, const char *name, size_t index, bool shell);

/* Free a layer and its tensors and optimizer state. NULL is a no-op. */
void tli_layer_free(tl_layer *l);

/* Draw the layer's tensors with their initializers from a stream
 * determined by (seed, stream); `keep_preset`: leave the preset tensors
 * (tli_param.preset) as they are (a redraw of an existing layer). */
void tli_layer_init_params(tl_layer *l, uint64_t seed, uint64_t stream, bool keep_preset);

/* Check every tensor of `l` that has values with its kind's check_values. */
tl_status tli_layer_check_values(const tl_layer *l);

/* Free the optimizer slots of every tensor. */
void tli_layer_free_state(tl_layer *l);

/* A layer takes part in training: it is trainable and has a parameter. */
bool tli_layer_learns(const tl_layer *l);

/* Number of float values in its tensors of role `role`. */
size_t tli_layer_count(const tl_layer *l, tli_role role);

/* ---- settings fields: what io and the summaries use ------------------- */

/* Field `f` of settings `cfg` as a 32-bit word (F32 as its bits). */
uint32_t tli_field_get(const void *cfg, const tli_field *f);
void tli_field_set(void *cfg, const tli_field *f, uint32_t word);

/* Fill `cfg` with the defaults of every field of `ops`. */
void tli_cfg_defaults(const tli_layer_ops *ops, void *cfg);

/* Append `, "name": value` for every field to buf (JSON), or
 * "name=value, ..." when `json` is false. Returns the length it would
 * have (snprintf-style). */
size_t tli_cfg_describe(const tl_layer *l, char *buf, size_t cap, bool json);

/* ---- pooling windows (pool_window.c) ------------------------------------ */

/* The window settings every pooling kind has, at the start of its
 * settings struct. */
typedef struct tli_pool_window {
    uint32_t p_h, p_w, s_h, s_w; /* stride 0: the pool size, as Keras */
    uint32_t padding;            /* tl_padding */
    uint32_t pad_t, pad_b, pad_l, pad_r; /* TL_PAD_EXPLICIT only */
} tli_pool_window;

/* Check a pooling layer's window against its (h, w, c) input and fill
 * `g`, l->out_shape and l->out_size. Fills a zero stride with the pool
 * size and turns explicit padding of nothing into valid padding. */
tl_status tli_pool_window_build(tl_layer *l, tli_pool_window *w, tli_pool_geom *g);

/* Start the ONNX node `op` (MaxPool, AveragePool) of pooling layer l with
 * its window's kernel_shape, strides and pads; the caller adds its own
 * attributes and ends the node. */
void tli_pool_onnx(tli_onnx *g, const tl_layer *l, const char *op);

/* ---- shapes -------------------------------------------------------------- */

/* Largest number of floats in one example's tensor or one parameter tensor:
 * indices fit an int32 (max-pool arg-max) and sizes never overflow. */
#define TLI_MAX_ELEMS ((size_t)INT32_MAX)

/* Output length and leading pad of windows of size k, stride s over n cells
 * (Keras rules). False when padding is valid and k > n. */
bool tli_window(uint32_t n, uint32_t k, uint32_t s, tl_padding pad, uint32_t *out_len, uint32_t *pad_before);

tl_shape tli_shape3(uint32_t h, uint32_t w, uint32_t c);
tl_shape tli_shape1(uint32_t n);
/* "(13, 13, 64)" into buf. */
const char *tli_shape_str(const tl_shape *s, char *buf, size_t cap);
bool tli_shape_eq(const tl_shape *a, const tl_shape *b);

/* Describe tensor `i` of layer `l` (built), for the kinds' build functions.
 * Its fans are the shape's: a rank >= 2 shape (..., in, out) has fan_in =
 * receptive * in and fan_out = receptive * out, receptive the product of
 * the leading dims (Keras' and, for libtl's layouts, PyTorch's rule); a
 * rank-1 shape (n) has n for both. */
void tli_tensor_set(tl_layer *l, size_t i, const char *name, const char *torch_name, tli_role role, tli_init init,
                    tli_torch_layout torch_layout, tl_shape shape);

/* Mark tensor `i` preset (tli_param.preset). */
void tli_tensor_set_preset(tl_layer *l, size_t i);

/* Give tensor `i` the fans of tensor `from` (a bias those of its kernel). */
void tli_tensor_set_fans(tl_layer *l, size_t i, size_t from);

/* Check a settings word that holds a tl_initializer (the field called
 * `option`): TL_EINVAL naming the layer, the option and the value when it
 * is not one. */
tl_status tli_check_initializer(const tl_layer *l, const char *option, uint32_t word);

/* leaky_relu's default slope: the activation layer's alpha and conv2d's
 * and dense's activation_alpha (PyTorch's LeakyReLU default), 0.01f. */
#define TLI_ACT_ALPHA_DEFAULT 0.01f
#define TLI_ACT_ALPHA_DEFAULT_BITS 0x3c23d70au

/* Check a fused activation's slope (the settings field activation_alpha,
 * conv2d and dense): TL_EINVAL naming the layer and the value when it is
 * not finite. Only leaky_relu reads it: for the other activations it
 * becomes the default, so that it never keeps a model from format 1.0. */
tl_status tli_check_act_alpha(tl_layer *l, float *alpha);

/* Messages of the build functions start "layer 'NAME' (KIND, index I)". */
#define TLI_LFMT "layer '%s' (%s, index %zu)"
#define TLI_LARG(l) (l)->name, (l)->ops->type_name, (l)->index

#endif /* TLI_LAYER_H */
