/*
 * fuzz_safetensors.c - tl_model_load_safetensors() on hostile files: the
 * 8-byte header length, the JSON header (strings, escapes, numbers,
 * nesting), the entries (dtype, shape, offsets) and the data, converted
 * from F16/BF16 and reordered for PyTorch's layout. The first input byte
 * chooses the call: bit 0 layout (Keras / PyTorch), bit 1 lenient, bit 2 a
 * rename map, bit 3 permute_flatten off, bit 4 into a graph model (add,
 * concatenate, the pools) instead of the small sequential CNN, bit 5
 * tl_model_create_from_safetensors() instead: the model the file's
 * libtl.architecture describes (bits 2 and 3 still apply). The rest is
 * the file.
 * Checked: a failure leaves the model's parameters as they were (creating:
 * hands back no model) and names the function; a report, when given, can
 * be written out; a created model can be summarized.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int write_nothing(const char *text, size_t len, void *payload)
{
    (void)text;
    (void)len;
    (void)payload;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const rename[] = {"features.0.weight", "conv2d.kernel", "features.0.bias", "conv2d.bias",
                                         "classifier.weight", "dense.kernel",  "classifier.bias", "dense.bias"};
    static tl_model *small, *graph;
    if (small == NULL && (small = fz_small_model(11, 0)) == NULL)
        abort();
    if (graph == NULL && (graph = fz_graph_model(11, 0)) == NULL)
        abort();
    if (size < 1)
        return 0;
    unsigned mode = data[0];
    tl_model *target = (mode & 16) ? graph : small;
    char path[512];
    fz_write(path, sizeof path, "in.safetensors", data + 1, size - 1);
    tl_safetensors_options o = TL_SAFETENSORS_OPTIONS_INIT;
    if (mode & 2)
        o.policy = TL_TRANSFER_LENIENT;
    if (mode & 4) {
        o.rename = rename;
        o.rename_count = 4;
    }
    if (mode & 8)
        o.permute_flatten = 0;
    if (mode & 32) {
        tl_model *made = (tl_model *)&made;
        tl_status st = tl_model_create_from_safetensors(&made, path, &o);
        if (st != TL_OK && (made != NULL || strncmp(tl_last_error(), "tl_model_create_from_safetensors", 32) != 0))
            abort();
        if (st == TL_OK && (made == NULL || tl_model_summary_write(made, write_nothing, NULL) != TL_OK))
            abort();
        tl_model_free(made);
        return 0;
    }
    tl_tensor_layout layout = (mode & 1) ? TL_LAYOUT_PYTORCH : TL_LAYOUT_KERAS;
    size_t before_n, after_n;
    float *before = fz_params(target, &before_n);
    tl_transfer_report *r = NULL;
    tl_status st = tl_model_load_safetensors(&r, target, path, layout, &o);
    if (st != TL_OK) {
        if (strncmp(tl_last_error(), "tl_model_load_safetensors", 25) != 0)
            abort();
        float *after = fz_params(target, &after_n);
        if (after_n != before_n || memcmp(before, after, before_n * sizeof *before) != 0)
            abort(); /* a failed load changed the model */
        free(after);
    }
    if (r != NULL) {
        size_t n = tl_transfer_report_count(r);
        for (size_t i = 0; i < n; i++) {
            const char *src = NULL, *dst = NULL, *why = NULL;
            if (tl_transfer_report_entry(NULL, &src, NULL, &dst, NULL, NULL, &why, r, i) != TL_OK ||
                strlen(src) > TL_MAX_NAME || strlen(dst) > TL_MAX_NAME || strlen(why) >= 512)
                abort();
        }
        if (tl_transfer_report_write(r, write_nothing, NULL) != TL_OK)
            abort();
    }
    tl_transfer_report_free(r);
    free(before);
    return 0;
}
