/*
 * fuzz_onnx.c - tl_model_load_onnx() on hostile files: the protobuf wire
 * format (tags, varints, lengths, nesting, packed arrays), the ONNX
 * messages (model, opsets, graph, nodes, attributes, tensors, value
 * infos), the graph's translation into layers (operators, attributes,
 * shapes, fusions, folded pads) and tensor data (raw, typed, float16,
 * bfloat16, external). The first input byte chooses: bit 0 the options
 * give a 6 x 6 input size (for symbolic graphs), bit 1 the input is split:
 * two bytes (little-endian) give the model's length, and what follows the
 * model is written beside it as "tiny.bin", the external data file the
 * seeds name. The rest is the file.
 * Checked: a failure hands back no model and its message comes from
 * tl_model_load_onnx; a model handed back can be summarized, and - when
 * its layers' outputs are small - predicts one example.
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

/* Floats of all layer outputs for one example, saturating. */
static size_t activation_floats(const tl_model *m)
{
    size_t total = 0;
    for (size_t i = 0; i < tl_model_num_layers(m); i++) {
        tl_layer *l;
        tl_shape s;
        if (tl_model_layer(&l, m, i) != TL_OK || tl_layer_output_shape(&s, l) != TL_OK)
            abort();
        size_t n = tl_shape_count(&s);
        total = total + n < total ? SIZE_MAX : total + n;
    }
    return total;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const unsigned mode = data[0];
    data++, size--;
    size_t model_len = size;
    if (mode & 2) {
        if (size < 2)
            return 0;
        model_len = (size_t)data[0] | (size_t)data[1] << 8;
        data += 2, size -= 2;
        if (model_len > size)
            model_len = size;
        char ext[512];
        fz_write(ext, sizeof ext, "tiny.bin", data + model_len, size - model_len);
    }
    char path[512];
    fz_write(path, sizeof path, "in.onnx", data, model_len);
    tl_onnx_load_options o = TL_ONNX_LOAD_OPTIONS_INIT;
    if (mode & 1)
        o.input_height = o.input_width = 6;
    tl_model *sentinel = (tl_model *)&sentinel, *m = sentinel;
    tl_status st = tl_model_load_onnx(&m, path, &o);
    if (st != TL_OK) {
        if (m != sentinel || strncmp(tl_last_error(), "tl_model_load_onnx", 18) != 0)
            abort();
        return 0;
    }
    if (m == NULL || m == sentinel || tl_model_summary_write(m, write_nothing, NULL) != TL_OK)
        abort();
    tl_shape in, out;
    if (tl_model_input_shape(&in, m) != TL_OK || tl_model_output_shape(&out, m) != TL_OK)
        abort();
    if (activation_floats(m) <= ((size_t)1 << 20) && tl_shape_count(&in) <= ((size_t)1 << 16) &&
        tl_model_param_count(m) <= ((size_t)1 << 20)) {
        size_t nin = tl_shape_count(&in), nout = tl_shape_count(&out);
        float *x = calloc(nin, sizeof *x), *y = malloc(nout * sizeof *y);
        if (x == NULL || y == NULL || tl_model_set_threads(m, 1) != TL_OK)
            abort();
        st = tl_model_predict(y, nout, m, x, 1, 1);
        /* Values a file chose may still be refused at run time (a batchnorm variance
         * that makes no sense is not among them: any float runs). */
        if (st != TL_OK && strlen(tl_last_error()) == 0)
            abort();
        free(x);
        free(y);
    }
    tl_model_free(m);
    return 0;
}
