/*
 * safetensors.h - what the safetensors reader, loader and writer share:
 * the parsed file, tensor names and the rename map, the layout transforms
 * between libtl's parameter order and a file's, and half-precision floats.
 * docs/format-safetensors.md describes the format and libtl's rules.
 */
#ifndef TLI_IO_SAFETENSORS_H
#define TLI_IO_SAFETENSORS_H

#include "../model.h"
#include "file.h"
#include "json.h"

/* Limits: the header size is the safetensors project's own; nesting and
 * string limits are libtl's (a valid header nests 3 deep). */
#define TLI_ST_MAX_HEADER 100000000u
#define TLI_ST_MAX_DEPTH 16u
#define TLI_ST_MAX_STRING ((size_t)1 << 20)
#define TLI_ST_MAX_RANK 16u

typedef enum tli_st_dtype {
    TLI_ST_OTHER = 0, /* a dtype libtl does not convert (its size may still be known) */
    TLI_ST_F32,
    TLI_ST_F16,
    TLI_ST_BF16
} tli_st_dtype;

typedef struct tli_st_tensor {
    const char *name;  /* decoded, in the JSON arena */
    const char *dtype; /* as written */
    tli_st_dtype kind;
    size_t elem_size;  /* 0: an unknown dtype, size not checked */
    uint32_t rank;
    uint64_t dims[TLI_ST_MAX_RANK];
    uint64_t count;
    uint64_t begin, end; /* relative to the start of the data */
    size_t offset;       /* byte offset of its JSON entry in the file */
} tli_st_tensor;

typedef struct tli_st_file {
    tli_rfile file;
    char *header;
    tli_json json;
    tli_st_tensor *tensors; /* in header order */
    size_t count;
    uint64_t data_start, data_len;
} tli_st_file;

/* Open and check `path`: sizes, JSON, every entry, offsets covering the data
 * exactly. On error nothing stays open. */
tl_status tli_st_open(tli_st_file *f, const char *path, const char *fn);
void tli_st_close(tli_st_file *f);

/* ---- names -------------------------------------------------------------------- */

/* Validated options: defaults for NULL, version, policy and rename checked. */
tl_status tli_st_options(tl_safetensors_options *o, const tl_safetensors_options *opts, tl_tensor_layout layout,
                         const char *fn);

/* The libtl name a file's tensor stands for: its rename target or itself. */
const char *tli_st_to_libtl(const tl_safetensors_options *o, const char *file_name);

/* The file name of parameter p of layer l: a rename entry whose libtl name
 * is "<layer>.kernel", "<layer>.weight" or "<layer>.bias", or the default
 * for the layout, written into buf. */
const char *tli_st_to_file(const tl_safetensors_options *o, const tl_layer *l, size_t p, tl_tensor_layout layout,
                           char *buf, size_t cap);

/* Find the parameter a libtl name ("<layer>.kernel|weight|bias") names. */
bool tli_st_resolve(const tl_model *m, const char *name, tl_layer **layer, size_t *param);

/* PyTorch's BatchNorm counter "<bn>.num_batches_tracked" (an I64 scalar):
 * the PyTorch layout writes it (0) for every batchnorm layer and accepts it
 * on load without reading its value (libtl's momentum is fixed; PyTorch
 * only reads the counter when momentum=None). */
#define TLI_ST_COUNTER "num_batches_tracked"

/* When `name` is "<layer>.num_batches_tracked" and the model has a layer
 * of that name (of any kind), that layer; otherwise NULL. */
tl_layer *tli_st_resolve_counter(const tl_model *m, const char *name);

/* The file name of batchnorm l's counter: a rename entry whose libtl name
 * is "<layer>.num_batches_tracked", or that name itself, written into buf. */
const char *tli_st_counter_to_file(const tl_safetensors_options *o, const tl_layer *l, char *buf, size_t cap);

/* ---- layouts ----------------------------------------------------------------------- */

typedef struct tli_layout {
    enum { TLI_LAYOUT_SAME, TLI_LAYOUT_CONV, TLI_LAYOUT_DENSE } how;
    tl_shape lib_shape, file_shape;
    uint32_t fh, fw, fc; /* dense after a flatten of (fh, fw, fc): rows reordered (c, h, w) <-> (h, w, c) */
    bool flatten;
} tli_layout;

/* How parameter p of layer l is laid out in a file of `layout`. */
void tli_layout_for(tli_layout *out, const tl_layer *l, size_t p, tl_tensor_layout layout, bool permute_flatten);

/* Reorder between the file's order and libtl's: to_libtl copies file-order
 * `src` into libtl-order `dst`, otherwise the reverse. src != dst. */
void tli_layout_apply(const tli_layout *L, const float *src, float *dst, bool to_libtl);

/* ---- half precision ------------------------------------------------------------------ */

float tli_f16_to_f32(uint16_t h);
float tli_bf16_to_f32(uint16_t h);

#endif /* TLI_IO_SAFETENSORS_H */
