/*
 * transfer.h - internals shared by the transfer operations (params.c,
 * report.c, clone.c, extract.c) and by model files (io), which load
 * parameters from a file with the same matching and report.
 */
#ifndef TLI_TRANSFER_H
#define TLI_TRANSFER_H

#include "../engine.h"

typedef struct tli_report_entry {
    tl_transfer_outcome outcome;
    char src[TL_MAX_NAME + 1], dst[TL_MAX_NAME + 1];
    size_t src_index, dst_index;
    size_t params;
    char reason[192];
} tli_report_entry;

struct tl_transfer_report {
    tli_report_entry *entries;
    size_t count, cap;
};

/* A report with room for `capacity` entries. */
tl_status tli_report_new(tl_transfer_report **out, size_t capacity);

/* Append an entry (names and indices from the layers, which may be NULL). */
tli_report_entry *tli_report_add(tl_transfer_report *r, tl_transfer_outcome outcome, const tl_layer *src,
                                 const tl_layer *dst);

/* Why `a` and `b` cannot exchange parameters, into `why`; false when they
 * can (same kind, same parameter tensors and shapes). */
bool tli_layers_differ(const tl_layer *a, const tl_layer *b, tl_transfer_outcome *outcome, char *why, size_t cap);

/* tl_model_transfer_params() with `fn` naming the public function in
 * messages (tl_model_load_params() transfers from a model read from a file). */
tl_status tli_transfer_params(tl_transfer_report **out_report, tl_model *dst, const tl_model *src,
                              const tl_transfer_options *opts, const char *fn);

/* Append to `dst` a layer with the settings of `src` (kind, configuration,
 * activation, bias) taking `inputs` (src->ninputs indices of dst), named
 * `name` (NULL: an automatic name), copying its weights (every tensor,
 * state included) when `weights` and its trainable flag and learning-rate
 * scale always. */
tl_status tli_model_append_like(tl_model *dst, const tl_layer *src, const uint32_t *inputs, const char *name,
                                bool weights, const char *fn);

#endif /* TLI_TRANSFER_H */
