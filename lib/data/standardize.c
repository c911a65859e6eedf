/* standardize.c - per-channel statistics and standardisation. */
#include <math.h>
#include <string.h>

#include "dataset.h"

void tli_dataset_channel_moments(const tl_dataset *ds, double *mean, double *sq)
{
    const size_t c = ds->c, pixels = ds->n * ds->h * (size_t)ds->w;
    memset(mean, 0, c * sizeof *mean);
    memset(sq, 0, c * sizeof *sq);
    /* Two passes (mean, then squared deviations) stay accurate where
     * sum(x^2) - n*mean^2 cancels. Per-image partial sums keep the double
     * accumulators' terms of similar size. */
    const size_t per_image = (size_t)ds->h * ds->w;
    for (size_t i = 0; i < ds->n; i++) {
        const float *x = ds->images + i * ds->example_size;
        for (size_t k = 0; k < c; k++) {
            double s = 0.0;
            for (size_t p = 0; p < per_image; p++)
                s += x[p * c + k];
            mean[k] += s;
        }
    }
    for (size_t k = 0; k < c; k++)
        mean[k] /= (double)pixels;
    for (size_t i = 0; i < ds->n; i++) {
        const float *x = ds->images + i * ds->example_size;
        for (size_t k = 0; k < c; k++) {
            double s = 0.0;
            for (size_t p = 0; p < per_image; p++) {
                double d = x[p * c + k] - mean[k];
                s += d * d;
            }
            sq[k] += s;
        }
    }
    for (size_t k = 0; k < c; k++)
        sq[k] /= (double)pixels;
}

tl_status tl_dataset_channel_stats(float *out_mean, float *out_std, uint32_t channels, const tl_dataset *ds)
{
    const char *fn = "tl_dataset_channel_stats";
    if (out_mean == NULL || out_std == NULL || ds == NULL)
        return tli_error(TL_EINVAL, "%s: %s is NULL", fn, ds == NULL ? "dataset" : out_mean ? "out_std" : "out_mean");
    if (channels != ds->c)
        return tli_error(TL_ESHAPE, "%s: arrays of %u channels for a dataset of (%u, %u, %u)", fn, channels, ds->h,
                         ds->w, ds->c);
    const size_t c = ds->c;
    double *acc = tli_calloc(2 * c, sizeof(double));
    if (acc == NULL)
        return tli_error(TL_ENOMEM, "%s: out of memory", fn);
    double *mean = acc, *var = acc + c;
    tli_dataset_channel_moments(ds, mean, var);
    for (size_t k = 0; k < c; k++) {
        out_mean[k] = (float)mean[k];
        out_std[k] = (float)sqrt(var[k]);
    }
    tli_free(acc);
    return TL_OK;
}

tl_status tl_dataset_standardize(tl_dataset **out, const tl_dataset *ds, const float *mean, const float *std,
                                 uint32_t channels)
{
    const char *fn = "tl_dataset_standardize";
    if (out == NULL)
        return tli_error(TL_EINVAL, "%s: out is NULL", fn);
    *out = NULL;
    if (ds == NULL || mean == NULL || std == NULL)
        return tli_error(TL_EINVAL, "%s: %s is NULL", fn, ds == NULL ? "dataset" : mean ? "std" : "mean");
    if (channels != ds->c)
        return tli_error(TL_ESHAPE, "%s: mean and std of %u channels for a dataset of (%u, %u, %u)", fn, channels,
                         ds->h, ds->w, ds->c);
    for (uint32_t k = 0; k < channels; k++) {
        if (!isfinite(mean[k]))
            return tli_error(TL_ERANGE, "%s: mean[%u] = %g is not finite", fn, k, (double)mean[k]);
        if (!isfinite(std[k]) || !(std[k] > 0.0f))
            return tli_error(TL_ERANGE, "%s: std[%u] = %g must be finite and > 0 (pass 1 for a constant channel)",
                             fn, k, (double)std[k]);
    }
    const size_t total = ds->n * ds->example_size, c = ds->c;
    float *img = tli_malloc_aligned(total * sizeof(float));
    int32_t *lab = tli_malloc(ds->n * sizeof(int32_t));
    float *tg = ds->targets ? tli_malloc_aligned(ds->n * ds->k * sizeof(float)) : NULL;
    if (img == NULL || lab == NULL || (ds->targets && tg == NULL)) {
        tli_free_aligned(img);
        tli_free(lab);
        tli_free_aligned(tg);
        return tli_error(TL_ENOMEM, "%s: out of memory copying %zu examples (%.1f MiB)", fn, ds->n,
                         (double)(total * sizeof(float)) / 1048576.0);
    }
    /* NHWC: value i belongs to channel i % c. */
    for (size_t i = 0; i < total; i += c)
        for (size_t k = 0; k < c; k++)
            img[i + k] = (ds->images[i + k] - mean[k]) / std[k];
    memcpy(lab, ds->labels, ds->n * sizeof(int32_t));
    if (tg)
        memcpy(tg, ds->targets, ds->n * ds->k * sizeof(float));
    tl_status st = tli_dataset_adopt(out, img, lab, ds->n, ds->h, ds->w, ds->c, ds->num_classes);
    if (st) {
        tli_free_aligned(tg);
        tli_error_prefix("%s", fn);
        return st;
    }
    if (tg) {
        (*out)->targets = (*out)->own_targets = tg;
        (*out)->k = ds->k;
    }
    return TL_OK;
}
