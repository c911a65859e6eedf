/* extract.c - X_new = T(X_old): run a (frozen) base over a dataset once
 * and keep its outputs as a new dataset, so a head trains on them without
 * recomputing the base every epoch. */
#include <string.h>

#include "../data/dataset.h"
#include "transfer.h"

tl_status tl_model_extract_features(tl_dataset **out, tl_model *m, const tl_dataset *data, uint32_t batch_size)
{
    const char *fn = "tl_model_extract_features";
    if (out == NULL || m == NULL || data == NULL)
        return tli_error(TL_EINVAL, "%s: %s is NULL", fn, out == NULL ? "out" : m ? "data" : "model");
    *out = NULL;
    if (m->nlayers == 0)
        return tli_error(TL_ESTATE, "%s: the model has no layers", fn);
    if (data->h != m->input.dims[0] || data->w != m->input.dims[1] || data->c != m->input.dims[2]) {
        char a[64];
        return tli_error(TL_ESHAPE, "%s: the data's examples are (%u, %u, %u) but the model takes %s", fn, data->h,
                         data->w, data->c, tli_shape_str(&m->input, a, sizeof a));
    }
    const tl_shape *os = &m->layers[m->nlayers - 1]->out_shape;
    tl_shape fs = os->rank == 3 ? *os : tli_shape3(1, 1, os->dims[0]);
    const size_t width = tli_model_out_size(m);
    size_t elems, bytes;
    if (!tli_mul_ok(data->n, width, &elems) || !tli_mul_ok(elems, sizeof(float), &bytes))
        return tli_error(TL_ETOOBIG, "%s: %zu examples of %zu features are too many values", fn, data->n, width);
    size_t chunk = batch_size ? batch_size : 256;
    if (chunk > data->n)
        chunk = data->n;
    tl_status st = tli_workspace_ensure(m, chunk, false);
    if (st) {
        tli_error_prefix("%s", fn);
        return st;
    }
    float *feat = tli_malloc_aligned(bytes);
    int32_t *labels = tli_malloc(data->n * sizeof *labels);
    if (feat == NULL || labels == NULL) {
        tli_free_aligned(feat);
        tli_free(labels);
        return tli_error(TL_ENOMEM, "%s: out of memory for %zu x %zu features (%.1f MiB)", fn, data->n, width,
                         (double)bytes / 1048576.0);
    }
    for (size_t done = 0; done < data->n; done += chunk) {
        size_t b = data->n - done < chunk ? data->n - done : chunk;
        /* as tl_model_predict: the batch split over the threads */
        if (tli_split_worth(m, b)) {
            if ((st = tli_split_predict(m, data->images + done * data->example_size, b, feat + done * width)))
                break;
            continue;
        }
        tli_exec ex = tli_exec_for(m, b, false);
        const float *y = tli_forward(m, &ex, data->images + done * data->example_size, false);
        memcpy(feat + done * width, y, b * width * sizeof(float));
    }
    if (st) {
        tli_free_aligned(feat);
        tli_free(labels);
        tli_error_prefix("%s", fn);
        return st;
    }
    memcpy(labels, data->labels, data->n * sizeof *labels);
    tl_dataset *ds;
    if ((st = tli_dataset_adopt(&ds, feat, labels, data->n, fs.dims[0], fs.dims[1], fs.dims[2], data->num_classes))) {
        tli_error_prefix("%s", fn);
        return st;
    }
    if (data->targets && (st = tl_dataset_set_targets(ds, data->targets, data->n, data->k, TL_DATA_COPY))) {
        tl_dataset_free(ds);
        tli_error_prefix("%s", fn);
        return st;
    }
    *out = ds;
    return TL_OK;
}
