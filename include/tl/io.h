/*
 * tl/io.h - model files: libtl's own checkpoint, and safetensors.
 *
 * Two formats, two jobs:
 *  - The native checkpoint (docs/format-checkpoint.md) loses nothing: the
 *    architecture, every parameter, trainable flags and learning-rate
 *    scales, the training random stream, and optionally the optimizer, its
 *    step count and per-parameter state, its learning-rate schedule, the
 *    loss's options and an unfinished fit's early-stopping state (since
 *    1.1). A run stopped after epoch 3 and
 *    resumed from the file ends with the same bits as one that never
 *    stopped. zlib-compressed, CRC-32 checked, little-endian on every host.
 *  - safetensors (docs/format-safetensors.md) carries parameters by name,
 *    to and from PyTorch, Keras and anything else that reads it. libtl's
 *    own exports also describe the architecture in their metadata, so
 *    tl_model_create_from_safetensors() rebuilds the whole model from one
 *    (without optimizer state or training stream).
 *
 * Saving is atomic: the file is written as `<path>.tmp-XXXXXX` in the same
 * directory, flushed to disk (fsync) and renamed over `path`, and the
 * directory is flushed too. On any failure the temporary file is removed and
 * a previous file at `path` is left exactly as it was - except when only the
 * last step, flushing the directory after the rename, fails (TL_EIO; the
 * message says the file was written). The new file gets the permissions
 * fopen() would give (0666 less the umask); a symbolic link at `path` is
 * replaced, not followed.
 *
 * Every reader treats its file as hostile: sizes are checked before they are
 * used, and a corrupt or truncated file is an error naming the file and the
 * byte offset - never a crash and never a half-built model. Statuses:
 * TL_ENOTFOUND (no such file), TL_EIO (reading or writing failed; the
 * system's reason is in the message), TL_EFORMAT (the bytes break the
 * format), TL_ETRUNCATED (the file ends early), TL_ECHECKSUM (a CRC-32 does
 * not match), TL_EVERSION (a newer format this libtl cannot read),
 * TL_ETOOBIG (a size beyond a documented limit), TL_ENOMEM.
 *
 * Thread safety: a model being saved must not be trained or changed by
 * another thread meanwhile; a model being loaded into is written. Different
 * files and models may be used from different threads at once.
 */
#ifndef TL_IO_H
#define TL_IO_H

#include "common.h"
#include "layer.h"
#include "model.h"
#include "optim.h"
#include "transfer.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- native checkpoint ------------------------------------------------------ */

/** Major and minor version of the checkpoint format this libtl writes. It
 *  reads every file of the same major version (see docs/format-checkpoint.md). */
#define TL_CHECKPOINT_VERSION_MAJOR 1
#define TL_CHECKPOINT_VERSION_MINOR 1

/**
 * Options of tl_model_save(). Fill with TL_SAVE_OPTIONS_INIT or
 * tl_save_options_init(), then set what differs.
 */
typedef struct tl_save_options {
    unsigned int version;  /**< TL_SAVE_OPTIONS_VERSION */
    int include_optimizer; /**< non-zero (default): when the model is compiled, save the optimizer (kind,
                                hyper-parameters, step count), the loss and every per-parameter state
                                array, the schedule, the loss options and an unfinished fit's early
                                stopping (tl_early_stopping_options), so training resumes exactly; 0:
                                the loaded model is not compiled */
    int compression_level; /**< zlib level 0 (stored) .. 9; default 6. Up to 6 libtl deflates with run-length
                                matches only (float data hardly repeat: nearly the size of a full search, about
                                twice as fast); 7..9 search fully */
} tl_save_options;
#define TL_SAVE_OPTIONS_VERSION 1
#define TL_SAVE_OPTIONS_INIT { TL_SAVE_OPTIONS_VERSION, 1, 6 }
/** Fill `opts` with the defaults of `version`. Errors: TL_EINVAL, TL_EVERSION. */
TL_API tl_status tl_save_options_init(tl_save_options *opts, unsigned int version);

/**
 * Save `model` to `path` in libtl's checkpoint format: input shape, seed,
 * thread request, every layer (kind, name, settings, activation, bias,
 * trainable flag, learning-rate scale), every parameter with its name and
 * shape, the training random stream, and - see tl_save_options - the
 * optimizer and its state. `opts` NULL means the defaults. Atomic (see the
 * top of this header): on error a previous file at `path` is unchanged and
 * no temporary file is left.
 * Errors: TL_EINVAL (NULL model or path, compression level outside 0..9),
 * TL_EVERSION (options version), TL_EIO (the directory does not exist or
 * refuses a new file, a write, fsync or rename failed - e.g. the disk is
 * full, or `path` is a directory), TL_ENOMEM.
 * Thread safety: the model is only read, but must not change meanwhile.
 */
TL_API tl_status tl_model_save(const tl_model *model, const char *path, const tl_save_options *opts);

/**
 * Load a whole model from a checkpoint written by tl_model_save(): the
 * same architecture, names, parameters (bit for bit), trainable flags,
 * learning-rate scales, seed, thread request and training random stream.
 * When the file holds an optimizer, the model comes back compiled with it
 * (same kind, hyper-parameters, loss and step count) and with its state
 * (and an interrupted fit's early-stopping state, see
 * tl_early_stopping_options), so tl_model_fit() with fit seed 0 continues
 * exactly where the saved run stopped. Layers are rebuilt through the same checks as the add functions,
 * so a file whose layers cannot follow each other is refused.
 * Ownership: the caller owns *out (tl_model_free()).
 * Errors: TL_EINVAL (NULL), TL_ENOTFOUND (no such file), TL_EIO,
 * TL_EFORMAT, TL_ETRUNCATED, TL_ECHECKSUM, TL_EVERSION, TL_ETOOBIG,
 * TL_ENOMEM; the message names the file and the byte offset (in the file,
 * or "payload byte" in the decompressed contents). On error *out is NULL:
 * a partly read model is never returned.
 */
TL_API tl_status tl_model_load(tl_model **out, const char *path);

/**
 * Copy parameters from a checkpoint file into an existing model: a
 * parameter transfer whose source is the file. Selection, matching (by
 * position or by name), the strict and lenient policies, the report and
 * the guarantees are those of tl_model_transfer_params(): on any error
 * `model` is unchanged. Only parameter values are read; the file's
 * optimizer state is ignored and `model` keeps its own trainable flags,
 * learning-rate scales and optimizer state. While it runs, the call holds
 * the file's parameters in memory once.
 * `out_report` may be NULL; otherwise it receives a report (caller frees it
 * with tl_transfer_report_free()), also on TL_ESHAPE and TL_ENOTFOUND.
 * Errors: those of tl_model_load() for the file (TL_ENOTFOUND then means
 * the file is missing) and those of tl_model_transfer_params().
 */
TL_API tl_status tl_model_load_params(tl_transfer_report **out_report, tl_model *model, const char *path,
                                      const tl_transfer_options *opts);

/**
 * What a checkpoint file holds, read without building the model: for a
 * summary of a file, or to decide whether its parameters fit. Opaque; read
 * it with the getters below and free it with tl_checkpoint_info_free().
 * Reading it checks the whole file (both CRCs, every section) but keeps no
 * parameter values.
 */
typedef struct tl_checkpoint_info tl_checkpoint_info;

/**
 * Read the description of the checkpoint at `path`.
 * Ownership: the caller owns *out (tl_checkpoint_info_free()).
 * Errors: as tl_model_load(). On error *out is NULL.
 * Thread safety: the getters below only read and may run concurrently.
 */
TL_API tl_status tl_checkpoint_info_read(tl_checkpoint_info **out, const char *path);
/** Free an info handle. NULL is a no-op. */
TL_API void tl_checkpoint_info_free(tl_checkpoint_info *info);

/** The file's format version. Errors: TL_EINVAL (info NULL; out pointers may be NULL). */
TL_API tl_status tl_checkpoint_info_format_version(uint32_t *out_major, uint32_t *out_minor,
                                                   const tl_checkpoint_info *info);
/** The model's input shape (h, w, c). Errors: TL_EINVAL. */
TL_API tl_status tl_checkpoint_info_input_shape(tl_shape *out, const tl_checkpoint_info *info);
/** The model's seed; 0 when NULL. */
TL_API uint64_t tl_checkpoint_info_seed(const tl_checkpoint_info *info);
/** Number of layers; 0 when NULL. */
TL_API size_t tl_checkpoint_info_num_layers(const tl_checkpoint_info *info);
/** Number of float32 parameters in all layers; 0 when NULL. */
TL_API size_t tl_checkpoint_info_param_count(const tl_checkpoint_info *info);
/** Kind of the saved optimizer; 0 when the file holds none (or info is NULL). */
TL_API tl_optimizer_kind tl_checkpoint_info_optimizer(const tl_checkpoint_info *info);
/** The saved optimizer's step count; 0 when none. */
TL_API uint64_t tl_checkpoint_info_optimizer_steps(const tl_checkpoint_info *info);
/** The saved loss; 0 when the file holds no optimizer. */
TL_API tl_loss tl_checkpoint_info_loss(const tl_checkpoint_info *info);
/**
 * The saved optimizer's learning-rate schedule (since 1.1; the file's SCHD
 * section), as the settings tl_optimizer_set_schedule() takes: set
 * out->version first (TL_SCHEDULE_OPTIONS_INIT does); every field of that
 * version is filled. A file without a schedule (a constant rate, or no
 * optimizer saved) gives the defaults, kind TL_SCHEDULE_CONSTANT. The
 * counters (how far the schedule has got) are in the summary
 * (tl_checkpoint_info_summary_write()).
 * Errors: TL_EINVAL (NULL), TL_EVERSION (out->version unknown).
 * Thread safety: info is only read.
 */
TL_API tl_status tl_checkpoint_info_schedule(tl_schedule_options *out, const tl_checkpoint_info *info);
/**
 * The saved loss's options (since 1.1; the file's LOSS section): label
 * smoothing and class weights, as tl_model_set_loss_options() takes them.
 * Set out->version first (TL_LOSS_OPTIONS_INIT does). out->class_weights
 * is borrowed from info (NULL when the file has none): valid until
 * tl_checkpoint_info_free(). A file without a LOSS section gives the
 * defaults (no smoothing, no weights).
 * Errors: TL_EINVAL (NULL), TL_EVERSION (out->version unknown).
 * Thread safety: info is only read.
 */
TL_API tl_status tl_checkpoint_info_loss_options(tl_loss_options *out, const tl_checkpoint_info *info);

/** Kind of layer `i`; 0 when info is NULL or i is out of range. */
TL_API tl_layer_kind tl_checkpoint_info_layer_kind(const tl_checkpoint_info *info, size_t i);
/** Name of layer `i` (owned by info); "" when out of range. */
TL_API const char *tl_checkpoint_info_layer_name(const tl_checkpoint_info *info, size_t i);
/** Output shape of layer `i`, as saved. Errors: TL_EINVAL (NULL), TL_ERANGE (i). */
TL_API tl_status tl_checkpoint_info_layer_output_shape(tl_shape *out, const tl_checkpoint_info *info, size_t i);
/** 1 when layer `i` was trainable, 0 when frozen or out of range. */
TL_API int tl_checkpoint_info_layer_trainable(const tl_checkpoint_info *info, size_t i);
/** Learning-rate scale of layer `i`; 0 when out of range. */
TL_API float tl_checkpoint_info_layer_lr_scale(const tl_checkpoint_info *info, size_t i);
/** Number of tensors of layer `i`; 0 when out of range. */
TL_API size_t tl_checkpoint_info_layer_num_params(const tl_checkpoint_info *info, size_t i);
/**
 * Parameter tensor `index` of layer `layer`: name ("kernel", "bias"; owned by
 * info), shape (Keras layout) and count.
 * Errors: TL_EINVAL (NULL), TL_ERANGE (no such layer or parameter).
 */
TL_API tl_status tl_checkpoint_info_layer_param(tl_param_info *out, const tl_checkpoint_info *info, size_t layer,
                                                size_t index);
/**
 * The settings of a conv2d / maxpool2d / dense layer `i` as the options the
 * add functions take, so a caller can rebuild it: set out->version first
 * (the _INIT macro does); every field of that version is filled, `name`
 * points into info. tl_model_add_conv2d(NULL, m, out) then adds the same layer.
 * Errors: TL_EINVAL (NULL, or layer `i` is of another kind), TL_ERANGE (i),
 * TL_EVERSION (out->version unknown).
 */
TL_API tl_status tl_checkpoint_info_layer_conv2d(tl_conv2d_options *out, const tl_checkpoint_info *info, size_t i);
TL_API tl_status tl_checkpoint_info_layer_maxpool2d(tl_maxpool2d_options *out, const tl_checkpoint_info *info,
                                                    size_t i);
TL_API tl_status tl_checkpoint_info_layer_dense(tl_dense_options *out, const tl_checkpoint_info *info, size_t i);

/**
 * The settings of layer `i`, of any kind (the getters above cover the
 * kinds of libtl 1.0), as text: "name=value, ..." in the
 * order of the format's fields ("filters=32, kernel_h=3, ..."; "" for kinds
 * without settings; an activation layer's starts with its activation:
 * "activation=leaky_relu, alpha=0.25"), into `buf` of `cap` bytes (NUL-terminated when
 * cap > 0). `needed` (may be NULL) receives the length without the NUL; a
 * first call with cap 0 sizes the buffer and returns TL_OK.
 * Errors: TL_EINVAL (NULL), TL_ERANGE (i), TL_ETOOBIG (cap too small).
 * (Since 1.1.)
 */
TL_API tl_status tl_checkpoint_info_layer_settings(char *buf, size_t cap, size_t *needed,
                                                   const tl_checkpoint_info *info, size_t i);

/**
 * Write a Keras-style summary of the file (the table of tl_model_summary()
 * plus the file's format version and optimizer) to `write`.
 * Errors: TL_EINVAL (NULL), TL_ECANCELED (the callback asked to stop).
 */
TL_API tl_status tl_checkpoint_info_summary_write(const tl_checkpoint_info *info, tl_write_fn write, void *payload);

/* ---- safetensors ------------------------------------------------------------ */

/**
 * How parameter tensors are laid out in a safetensors file. There is no
 * default and no guessing: a square dense kernel looks the same either way.
 */
typedef enum tl_tensor_layout {
    /** Keras / TensorFlow, and libtl itself: conv2d kernel (kh, kw, in, out),
     *  dense kernel (in, out), biases (n). Names `<layer>.kernel`, `<layer>.bias`. */
    TL_LAYOUT_KERAS = 1,
    /** PyTorch: conv2d weight (out, in, kh, kw), dense (Linear) weight
     *  (out, in), biases (n). Names `<layer>.weight`, `<layer>.bias`. A dense
     *  layer right after a flatten of an (h, w, c) tensor also has its input
     *  rows reordered between PyTorch's (c, h, w) flatten order and libtl's
     *  (h, w, c) one, unless tl_safetensors_options.permute_flatten is 0. */
    TL_LAYOUT_PYTORCH = 2
} tl_tensor_layout;

/**
 * Options of tl_model_save_safetensors() and tl_model_load_safetensors().
 * Fill with TL_SAFETENSORS_OPTIONS_INIT or tl_safetensors_options_init().
 *
 * Names: libtl calls a tensor `<layer name>.kernel` (also accepted as
 * `<layer name>.weight`) or `<layer name>.bias` (a batchnorm's also
 * `.gamma`/`.weight`, `.beta`/`.bias`, `.moving_mean`/`.running_mean`,
 * `.moving_variance`/`.running_var`, and in the PyTorch layout
 * `.num_batches_tracked`, see tl_model_save_safetensors(); a
 * normalization layer's `.mean` and `.std` in both layouts). `rename` maps
 * other names onto these: `rename_count` pairs of strings, {file name, libtl name},
 * e.g. {"features.0.weight", "conv2d.kernel", "features.0.bias",
 * "conv2d.bias", "classifier.weight", "dense.kernel"}. Loading looks file
 * names up in the first column; saving writes the first column for the
 * libtl names of the second. Names not in the map are used as they are.
 */
typedef struct tl_safetensors_options {
    unsigned int version;      /**< TL_SAFETENSORS_OPTIONS_VERSION */
    tl_transfer_policy policy; /**< load: TL_TRANSFER_STRICT (default: every tensor of the file and every
                                    parameter of the model must pair up, or nothing is loaded) or
                                    TL_TRANSFER_LENIENT (load what pairs up, report the rest) */
    const char *const *rename; /**< 2 * rename_count strings, or NULL */
    size_t rename_count;
    int permute_flatten;       /**< TL_LAYOUT_PYTORCH only: non-zero (default) reorders a dense kernel after
                                    a flatten between (c, h, w) and (h, w, c) input order; 0 when the
                                    PyTorch model already flattened channels-last */
} tl_safetensors_options;
#define TL_SAFETENSORS_OPTIONS_VERSION 1
#define TL_SAFETENSORS_OPTIONS_INIT { TL_SAFETENSORS_OPTIONS_VERSION, TL_TRANSFER_STRICT, NULL, 0, 1 }
/** Fill `opts` with the defaults of `version`. Errors: TL_EINVAL, TL_EVERSION. */
TL_API tl_status tl_safetensors_options_init(tl_safetensors_options *opts, unsigned int version);

/**
 * Export every parameter of `model` to a safetensors file as F32 tensors in
 * `layout`, named as described at tl_safetensors_options (after `rename`),
 * in layer order. `__metadata__` carries "libtl.version", "libtl.layout"
 * ("keras" or "pytorch") and "libtl.architecture" (a JSON description of
 * the layers, see docs/format-safetensors.md). The header is padded with
 * spaces so the data start at a multiple of 8 bytes. Atomic, as
 * tl_model_save(). `opts` NULL means the defaults.
 * TL_LAYOUT_PYTORCH also writes, after each batchnorm layer's running_var,
 * `<layer>.num_batches_tracked`: an I64 of shape () and value 0, as
 * PyTorch's BatchNorm2d has in its state_dict(), so that the file is a
 * complete state dict for PyTorch's load_state_dict(strict=True). libtl
 * keeps no such count (its batchnorm moves its statistics with a fixed
 * momentum); 0 is what PyTorch assumes for a state dict without one, and
 * PyTorch reads the counter only for momentum=None (a cumulative average,
 * which then starts afresh). TL_LAYOUT_KERAS writes none.
 * Errors: TL_EINVAL (NULL, unknown layout, a rename entry NULL, or two
 * tensors ending up with the same name), TL_EVERSION, TL_EIO, TL_ENOMEM.
 */
TL_API tl_status tl_model_save_safetensors(const tl_model *model, const char *path, tl_tensor_layout layout,
                                           const tl_safetensors_options *opts);

/**
 * Load parameters from a safetensors file into `model`, tensor by tensor,
 * matched by name (after `rename`). F32 tensors are copied; F16 and BF16
 * are converted to F32 exactly. Each tensor's shape must be the one
 * `layout` gives for its destination parameter; a shape that fits neither
 * is reported naming the tensor (TL_ESHAPE under the strict policy).
 * The report has one entry per tensor of the file, in file order
 * (src = tensor name, cut to TL_MAX_NAME bytes; src index = position in the
 * header; dst = layer): TL_TRANSFER_COPIED, TL_TRANSFER_NO_DESTINATION (an
 * unexpected tensor: no such layer or parameter), TL_TRANSFER_SHAPE_DIFFERS
 * (wrong shape or an unsupported dtype), TL_TRANSFER_NO_PARAMS (PyTorch's
 * batch counter, below); then one TL_TRANSFER_NOT_IN_SOURCE
 * entry per parameter of the model that no tensor fills (missing).
 * With TL_LAYOUT_PYTORCH, a batchnorm layer's `<layer>.num_batches_tracked`
 * (every BatchNorm2d state_dict() has one) is checked - dtype I64, shape ()
 * or (1,) - and its value ignored: libtl's batchnorm has a fixed momentum
 * and keeps no count (PyTorch itself reads the counter only for
 * momentum=None). Its entry is TL_TRANSFER_NO_PARAMS (no parameter takes
 * it, 0 values copied; dst = the layer), which fails neither policy; a file
 * without it loads as well. Another dtype or shape is
 * TL_TRANSFER_SHAPE_DIFFERS naming the tensor (TL_ESHAPE under strict); a
 * counter for a layer that is no batchnorm, or in the Keras layout, is
 * unexpected (TL_TRANSFER_NO_DESTINATION).
 * Strict: any such problem fails the call (TL_ESHAPE for a shape or dtype,
 * TL_ENOTFOUND for an unexpected or missing tensor) and `model` is
 * unchanged. Lenient: what pairs up is copied. On every error `model` is
 * unchanged; optimizer state, trainable flags and lr scales are kept.
 * `out_report` may be NULL; otherwise it receives the report (caller frees
 * it), also on TL_ESHAPE and TL_ENOTFOUND.
 * Errors: TL_EINVAL (NULL, unknown layout or policy, a rename entry NULL,
 * two tensors naming the same parameter), TL_EVERSION, TL_ENOTFOUND (no such
 * file), TL_EIO, TL_EFORMAT (the header breaks the format or JSON, offsets
 * overlap, leave holes or pass the end), TL_ETRUNCATED, TL_ETOOBIG (header
 * over 100,000,000 bytes, nesting deeper than 16, a size overflows),
 * TL_ESHAPE, TL_ENOMEM.
 */
TL_API tl_status tl_model_load_safetensors(tl_transfer_report **out_report, tl_model *model, const char *path,
                                           tl_tensor_layout layout, const tl_safetensors_options *opts);

/**
 * Create the model a safetensors file written by tl_model_save_safetensors()
 * describes, with its parameters: one file carries a whole model. The
 * file's "libtl.architecture" metadata gives the input shape and every
 * layer - kind, name, inputs, settings, activation, bias, trainable flag -
 * which are rebuilt with the same checks as the add functions, and each
 * layer's "output_shape" must be what they give; then the tensors are
 * loaded as tl_model_load_safetensors() does, in the layout the file's
 * "libtl.layout" names, strictly: every tensor must fill a parameter and
 * every parameter must be filled. Descriptions written by libtl 1.0 (a
 * chain of conv2d, maxpool2d, flatten and dense) are read too.
 * `opts` NULL means the defaults; `rename` and `permute_flatten` apply as
 * in tl_model_load_safetensors() (a file saved with them needs the same
 * options back); `policy` must be TL_TRANSFER_STRICT.
 * The model comes back uncompiled, with seed 0 (the seed matters only to
 * tl_model_init_params() and training's shuffles and dropout), all online
 * CPUs as threads (tl_model_set_threads()) and learning-rate scales 1 (a
 * safetensors file holds neither an optimizer nor these).
 * Limits: at most 4096 layers (as a checkpoint), names of 1..TL_MAX_NAME
 * bytes; the description is parsed with the limits of the header (nesting,
 * string sizes). Parameters are allocated only after the whole description
 * checked out and the file's tensors proved large enough to fill them.
 * Ownership: the caller owns *out (tl_model_free()).
 * Thread safety: reads only the file; calls on different files (or the same
 * one) may run at once.
 * Errors: TL_EINVAL (NULL out or path, bad options, a policy other than
 * strict), TL_EVERSION (options version; a description written by a newer
 * libtl with a kind, setting or value this one lacks - the message names
 * it), TL_ENOTFOUND (no such file; a tensor missing or unexpected),
 * TL_EIO, TL_ETRUNCATED, TL_EFORMAT (the file breaks the format; it has no
 * "libtl.architecture" - it carries weights only: build the model and use
 * tl_model_load_safetensors(); the description is not strict JSON, lacks a
 * member, has an unknown member, kind or value, a setting the kind
 * refuses, an input that is not an earlier layer, a duplicate name, an
 * output shape other than the settings give), TL_ESHAPE (a tensor's shape
 * or dtype does not fit its parameter), TL_ETOOBIG (limits),
 * TL_ENOMEM. The message names the file, the layer (index, name, kind)
 * and what is wrong. On error *out is NULL and nothing is left allocated.
 * (Since 1.1.)
 */
TL_API tl_status tl_model_create_from_safetensors(tl_model **out, const char *path,
                                                  const tl_safetensors_options *opts);

#ifdef __cplusplus
}
#endif

#endif /* TL_IO_H */
