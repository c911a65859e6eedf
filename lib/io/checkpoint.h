/*
 * checkpoint.h - the native checkpoint format (docs/format-checkpoint.md is
 * the specification; the constants here must match it), and the one parser
 * that tl_model_load(), tl_model_load_params() and tl_checkpoint_info_read()
 * share. The parser validates everything it can without building a model and
 * hands each record to a visitor; the visitor builds or describes.
 */
#ifndef TLI_IO_CHECKPOINT_H
#define TLI_IO_CHECKPOINT_H

#include "../optim.h"
#include "../train.h"

/* "\x89TLM\r\n\x1a\n": the high byte catches 7-bit transfers, CR LF and LF
 * catch newline translation, ^Z stops a DOS `type`. */
#define TLI_CKPT_MAGIC "\x89TLM\r\n\x1a\n"
#define TLI_CKPT_HEADER_SIZE 48
#define TLI_CKPT_COMPRESSION_ZLIB 1

/* Section tags. An upper-case first letter marks a critical section (a
 * reader that does not know it must refuse the file); lower-case marks an
 * ancillary one (skipped when unknown). */
#define TLI_TAG_MODEL "MODL"
#define TLI_TAG_LAYER "LAYR"
#define TLI_TAG_TENSOR "TENS"
#define TLI_TAG_OPTIM "OPTM"
#define TLI_TAG_SCHEDULE "SCHD" /* since 1.1, after OPTM when the optimizer has a schedule */
#define TLI_TAG_LOSS "LOSS"     /* since 1.1, after OPTM (and SCHD) when the loss has options */
#define TLI_TAG_EARLY "ESTP"    /* since 1.1, after OPTM (SCHD, LOSS): an unfinished fit's early stopping */
#define TLI_TAG_END "END "

/* Fixed body sizes of version 1.0 (a later minor version may append). */
#define TLI_MODL_SIZE 60
#define TLI_OPTM_SIZE 44
#define TLI_SCHD_SIZE 184
#define TLI_LOSS_SIZE 8 /* then 4 bytes per class weight */
#define TLI_ESTP_SIZE 32 /* then 4 bytes per value of the best-weights copy */
#define TLI_TENS_META 24 /* layer, param, slot, dtype, count */
#define TLI_SECTION_HEAD 12

/* Limits (documented in the format specification). */
#define TLI_CKPT_MAX_LAYERS 4096u
#define TLI_CKPT_MAX_PAYLOAD ((uint64_t)64 << 30) /* 64 GiB decompressed */

/* Tensor slots: the value, then the optimizer's state arrays. */
#define TLI_SLOT_VALUE 0u
#define TLI_SLOT_STATE0 1u
#define TLI_SLOT_STATE1 2u
#define TLI_DTYPE_F32 1u

typedef struct tli_ckpt_model {
    uint32_t major, minor;
    tl_shape input;
    uint64_t seed;
    uint32_t threads_req;
    uint32_t num_layers;
    uint64_t train_rng[4];
} tli_ckpt_model;

typedef struct tli_ckpt_param {
    char name[TL_MAX_NAME + 1];
    tli_role role;
    tl_shape shape;
    size_t count;
} tli_ckpt_param;

/* A LAYR record as the file has it. By the time a visitor sees it, the
 * parser has built the layer it describes (a shell: shapes and settings,
 * no values) on the earlier layers' outputs, with the kind's own checks,
 * and compared the file's output and tensor shapes with what it gives. */
typedef struct tli_ckpt_layer {
    const tli_layer_ops *ops;
    char name[TL_MAX_NAME + 1];
    tl_activation act;
    int use_bias;
    int trainable;
    float lr_scale;
    size_t ninputs;
    uint32_t inputs[TLI_MAX_INPUTS];
    _Alignas(8) unsigned char cfg[TLI_CFG_BYTES];
    tl_shape out_shape;
    size_t nparams;
    tli_ckpt_param params[TLI_MAX_TENSORS];
} tli_ckpt_layer;

/* An ESTP record's fixed part (its copy streams to the visitor). */
typedef struct tli_ckpt_early {
    tl_schedule_monitor monitor;
    uint32_t wait, best_epoch, epochs;
    double best;
    size_t count; /* values of the best-weights copy; 0: none */
} tli_ckpt_early;

typedef struct tli_ckpt_optim {
    tl_optimizer_kind kind;
    tl_loss loss;
    uint64_t steps;
    float lr, beta1, beta2, eps, momentum, weight_decay;
    int nesterov;
} tli_ckpt_optim;

/* What the parser calls, in file order. `where` names the file and the
 * payload offset ("tl_model_load: m.tlm: payload byte 123"): a visitor puts
 * it in front of its messages. Any status other than TL_OK stops the parse
 * and is returned as it is. */
typedef struct tli_ckpt_visitor {
    void *ctx;
    tl_status (*model)(void *ctx, const tli_ckpt_model *m, const char *where);
    tl_status (*layer)(void *ctx, size_t index, const tli_ckpt_layer *l, const char *where);
    tl_status (*optim)(void *ctx, const tli_ckpt_optim *o, const char *where);
    /* Where the `count` floats of (layer, param, slot) go; *out NULL skips
     * them. The parser turns them into host order afterwards. */
    tl_status (*tensor)(float **out, void *ctx, size_t layer, size_t param, uint32_t slot, size_t count,
                        const char *where);
    /* The optimizer's schedule (SCHD, after OPTM): settings checked as
     * tl_optimizer_set_schedule() does, counters consistent with them. */
    tl_status (*schedule)(void *ctx, const tli_schedule *s, const char *where);
    /* The loss's options (LOSS, after OPTM), checked as
     * tl_model_set_loss_options() does; `weights` is valid during the call. */
    tl_status (*loss)(void *ctx, float smoothing, const float *weights, size_t nweights, const char *where);
    /* An unfinished fit's early stopping (ESTP, after OPTM), checked; *copy
     * receives where its e->count values go (NULL: skipped). */
    tl_status (*early)(float **copy, void *ctx, const tli_ckpt_early *e, const char *where);
} tli_ckpt_visitor;

/* Read and check the checkpoint at `path`, calling `v` for each record.
 * `fn` names the public function in messages. When `shell` is not NULL it
 * receives, on success, the shell model the parser built (layers with
 * shapes and settings and no values; the caller frees it). */
tl_status tli_ckpt_read(const char *path, const tli_ckpt_visitor *v, const char *fn, tl_model **shell);

#endif /* TLI_IO_CHECKPOINT_H */
