/*
 * ops.c - operations for transfer experiments: class filters with
 * relabelling, few-shot subsets, ranges, seeded shuffles and splits, class
 * counts. Every result is a new dataset owning copies of its rows.
 */
#include <math.h>
#include <string.h>

#include "../rng.h"
#include "dataset.h"

/* Streams of libtl's generator, so a seed used for shuffling and for
 * splitting gives unrelated draws. */
#define STREAM_SHUFFLE 0x73687566666c65ULL /* "shuffle" */
#define STREAM_SPLIT 0x73706c6974ULL       /* "split" */

/* A new dataset of rows idx[0..n) of ds. Labels come from new_labels when
 * given (already in [0, classes)), else from ds. */
static tl_status gather(tl_dataset **out, const tl_dataset *ds, const uint32_t *idx, size_t n,
                        const int32_t *new_labels, uint32_t classes, bool keep_targets, const char *fn)
{
    const size_t ex = ds->example_size;
    /* n <= ds->n, whose sizes were checked when it was made. */
    float *img = tli_malloc_aligned(n * ex * sizeof(float));
    int32_t *lab = tli_malloc(n * sizeof(int32_t));
    float *tg = NULL;
    bool want_tg = keep_targets && ds->targets != NULL;
    if (want_tg)
        tg = tli_malloc_aligned(n * ds->k * sizeof(float));
    if (img == NULL || lab == NULL || (want_tg && tg == NULL)) {
        tli_free_aligned(img);
        tli_free(lab);
        tli_free_aligned(tg);
        return tli_error(TL_ENOMEM, "%s: out of memory copying %zu examples (%.1f MiB)", fn, n,
                         (double)(n * ex * sizeof(float)) / 1048576.0);
    }
    for (size_t i = 0; i < n; i++) {
        memcpy(img + i * ex, ds->images + (size_t)idx[i] * ex, ex * sizeof(float));
        lab[i] = new_labels ? new_labels[i] : ds->labels[idx[i]];
        if (want_tg)
            memcpy(tg + i * ds->k, ds->targets + (size_t)idx[i] * ds->k, ds->k * sizeof(float));
    }
    tl_status st = tli_dataset_adopt(out, img, lab, n, ds->h, ds->w, ds->c, classes);
    if (st) {
        tli_free_aligned(tg);
        tli_error_prefix("%s", fn);
        return st;
    }
    if (want_tg) {
        (*out)->targets = (*out)->own_targets = tg;
        (*out)->k = ds->k;
    }
    return TL_OK;
}

static uint32_t *index_array(size_t n, const char *fn, tl_status *st)
{
    uint32_t *idx = tli_malloc(n * sizeof *idx);
    *st = idx ? TL_OK : tli_error(TL_ENOMEM, "%s: out of memory for %zu indices", fn, n);
    return idx;
}

tl_status tl_dataset_filter_classes(tl_dataset **out, const tl_dataset *ds, const int32_t *classes, size_t count)
{
    const char *fn = "tl_dataset_filter_classes";
    if (out == NULL)
        return tli_error(TL_EINVAL, "%s: out is NULL", fn);
    *out = NULL;
    if (ds == NULL || classes == NULL)
        return tli_error(TL_EINVAL, "%s: %s is NULL", fn, ds ? "classes" : "dataset");
    if (count == 0)
        return tli_error(TL_EINVAL, "%s: count is 0: keep at least one class", fn);
    /* new_of[old class] = position in `classes`, or -1 when dropped. */
    int32_t *new_of = tli_malloc(ds->num_classes * sizeof(int32_t));
    if (new_of == NULL)
        return tli_error(TL_ENOMEM, "%s: out of memory", fn);
    for (uint32_t c = 0; c < ds->num_classes; c++)
        new_of[c] = -1;
    tl_status st = TL_OK;
    for (size_t i = 0; i < count && st == TL_OK; i++) {
        int32_t c = classes[i];
        if (c < 0 || (uint32_t)c >= ds->num_classes)
            st = tli_error(TL_ERANGE, "%s: classes[%zu] = %d is outside [0, %u)", fn, i, c, ds->num_classes);
        else if (new_of[c] >= 0)
            st = tli_error(TL_EINVAL, "%s: class %d is given twice (classes[%d] and classes[%zu])", fn, c, new_of[c],
                           i);
        else
            new_of[c] = (int32_t)i;
    }
    size_t n = 0;
    for (size_t i = 0; i < ds->n && st == TL_OK; i++)
        n += new_of[ds->labels[i]] >= 0;
    if (st == TL_OK && n == 0)
        st = tli_error(TL_ENOTFOUND, "%s: no example has any of the %zu classes given (first: %d)", fn, count,
                       classes[0]);
    uint32_t *idx = NULL;
    int32_t *lab = NULL;
    if (st == TL_OK) {
        idx = index_array(n, fn, &st);
        if (st == TL_OK && (lab = tli_malloc(n * sizeof *lab)) == NULL)
            st = tli_error(TL_ENOMEM, "%s: out of memory", fn);
    }
    if (st == TL_OK) {
        for (size_t i = 0, j = 0; i < ds->n; i++) {
            int32_t k = new_of[ds->labels[i]];
            if (k >= 0) {
                idx[j] = (uint32_t)i;
                lab[j++] = k;
            }
        }
        st = gather(out, ds, idx, n, lab, (uint32_t)count, false, fn);
    }
    tli_free(new_of);
    tli_free(idx);
    tli_free(lab);
    return st;
}

tl_status tl_dataset_class_counts(size_t *out, size_t out_len, const tl_dataset *ds)
{
    const char *fn = "tl_dataset_class_counts";
    if (out == NULL || ds == NULL)
        return tli_error(TL_EINVAL, "%s: %s is NULL", fn, out ? "dataset" : "out");
    if (out_len < ds->num_classes)
        return tli_error(TL_EINVAL, "%s: out has %zu entries but the dataset has %u classes", fn, out_len,
                         ds->num_classes);
    memset(out, 0, out_len * sizeof *out);
    for (size_t i = 0; i < ds->n; i++)
        out[ds->labels[i]]++;
    return TL_OK;
}

tl_status tl_dataset_take_per_class(tl_dataset **out, const tl_dataset *ds, size_t per_class)
{
    const char *fn = "tl_dataset_take_per_class";
    if (out == NULL)
        return tli_error(TL_EINVAL, "%s: out is NULL", fn);
    *out = NULL;
    if (ds == NULL)
        return tli_error(TL_EINVAL, "%s: dataset is NULL", fn);
    if (per_class == 0)
        return tli_error(TL_EINVAL, "%s: per_class is 0", fn);
    size_t *taken = tli_calloc(ds->num_classes, sizeof *taken);
    if (taken == NULL)
        return tli_error(TL_ENOMEM, "%s: out of memory", fn);
    tl_status st = TL_OK;
    for (size_t i = 0; i < ds->n; i++)
        taken[ds->labels[i]]++;
    size_t n = 0;
    for (uint32_t c = 0; c < ds->num_classes && st == TL_OK; c++) {
        if (taken[c] < per_class)
            st = tli_error(TL_ERANGE, "%s: class %u has %zu examples, fewer than the %zu asked for", fn, c, taken[c],
                           per_class);
        n += per_class;
        taken[c] = 0;
    }
    uint32_t *idx = NULL;
    if (st == TL_OK)
        idx = index_array(n, fn, &st);
    if (st == TL_OK) {
        for (size_t i = 0, j = 0; j < n; i++)
            if (taken[ds->labels[i]] < per_class) {
                taken[ds->labels[i]]++;
                idx[j++] = (uint32_t)i;
            }
        st = gather(out, ds, idx, n, NULL, ds->num_classes, true, fn);
    }
    tli_free(taken);
    tli_free(idx);
    return st;
}

tl_status tl_dataset_slice(tl_dataset **out, const tl_dataset *ds, size_t start, size_t count)
{
    const char *fn = "tl_dataset_slice";
    if (out == NULL)
        return tli_error(TL_EINVAL, "%s: out is NULL", fn);
    *out = NULL;
    if (ds == NULL)
        return tli_error(TL_EINVAL, "%s: dataset is NULL", fn);
    if (count == 0)
        return tli_error(TL_EINVAL, "%s: count is 0", fn);
    if (start >= ds->n || count > ds->n - start)
        return tli_error(TL_ERANGE, "%s: examples [%zu, %zu + %zu) go past the end of a dataset of %zu", fn, start,
                         start, count, ds->n);
    tl_status st;
    uint32_t *idx = index_array(count, fn, &st);
    if (st)
        return st;
    for (size_t i = 0; i < count; i++)
        idx[i] = (uint32_t)(start + i);
    st = gather(out, ds, idx, count, NULL, ds->num_classes, true, fn);
    tli_free(idx);
    return st;
}

tl_status tl_dataset_shuffled(tl_dataset **out, const tl_dataset *ds, uint64_t seed)
{
    const char *fn = "tl_dataset_shuffled";
    if (out == NULL)
        return tli_error(TL_EINVAL, "%s: out is NULL", fn);
    *out = NULL;
    if (ds == NULL)
        return tli_error(TL_EINVAL, "%s: dataset is NULL", fn);
    tl_status st;
    uint32_t *idx = index_array(ds->n, fn, &st);
    if (st)
        return st;
    for (size_t i = 0; i < ds->n; i++)
        idx[i] = (uint32_t)i;
    tli_rng rng;
    tli_rng_seed(&rng, seed, STREAM_SHUFFLE);
    tli_rng_shuffle(&rng, idx, ds->n);
    st = gather(out, ds, idx, ds->n, NULL, ds->num_classes, true, fn);
    tli_free(idx);
    return st;
}

/* Validation examples of x (all, or one class's) as picked by `how`:
 * marks pick[i] = 1 for round(fraction * m) of the m given indices. */
static void pick_some(unsigned char *pick, uint32_t *members, size_t m, double fraction, tl_holdout how,
                      tli_rng *rng)
{
    size_t k = (size_t)llround(fraction * (double)m);
    if (k > m)
        k = m;
    if (how == TL_HOLDOUT_TAIL) {
        for (size_t i = m - k; i < m; i++)
            pick[members[i]] = 1;
        return;
    }
    /* A partial Fisher-Yates: the first k of a shuffle. */
    for (size_t i = 0; i < k; i++) {
        size_t j = i + (size_t)tli_rng_below(rng, m - i);
        uint32_t t = members[i];
        members[i] = members[j];
        members[j] = t;
        pick[members[i]] = 1;
    }
}

tl_status tl_dataset_split(tl_dataset **out_train, tl_dataset **out_validation, const tl_dataset *ds,
                           double validation_fraction, tl_holdout how, uint64_t seed)
{
    const char *fn = "tl_dataset_split";
    if (out_train == NULL || out_validation == NULL)
        return tli_error(TL_EINVAL, "%s: %s is NULL", fn, out_train ? "out_validation" : "out_train");
    *out_train = *out_validation = NULL;
    if (ds == NULL)
        return tli_error(TL_EINVAL, "%s: dataset is NULL", fn);
    if (!(validation_fraction > 0.0 && validation_fraction < 1.0))
        return tli_error(TL_EINVAL, "%s: validation_fraction %g is not strictly between 0 and 1", fn,
                         validation_fraction);
    if (how != TL_HOLDOUT_TAIL && how != TL_HOLDOUT_RANDOM && how != TL_HOLDOUT_STRATIFIED)
        return tli_error(TL_EINVAL, "%s: unknown holdout %d", fn, (int)how);

    tl_status st = TL_OK;
    unsigned char *pick = tli_calloc(ds->n, 1);
    uint32_t *members = index_array(ds->n, fn, &st);
    size_t *starts = tli_calloc((size_t)ds->num_classes + 1, sizeof *starts);
    if (st == TL_OK && (pick == NULL || starts == NULL))
        st = tli_error(TL_ENOMEM, "%s: out of memory", fn);
    uint32_t *idx_train = NULL, *idx_val = NULL;
    tli_rng rng;
    tli_rng_seed(&rng, seed, STREAM_SPLIT);
    if (st == TL_OK) {
        if (how != TL_HOLDOUT_STRATIFIED) {
            for (size_t i = 0; i < ds->n; i++)
                members[i] = (uint32_t)i;
            pick_some(pick, members, ds->n, validation_fraction, how, &rng);
        } else {
            /* Group indices by class (a counting sort keeps their order). */
            for (size_t i = 0; i < ds->n; i++)
                starts[ds->labels[i] + 1]++;
            for (uint32_t c = 0; c < ds->num_classes; c++)
                starts[c + 1] += starts[c];
            size_t *fill = tli_malloc(((size_t)ds->num_classes + 1) * sizeof *fill);
            if (fill == NULL) {
                st = tli_error(TL_ENOMEM, "%s: out of memory", fn);
            } else {
                memcpy(fill, starts, ((size_t)ds->num_classes + 1) * sizeof *fill);
                for (size_t i = 0; i < ds->n; i++)
                    members[fill[ds->labels[i]]++] = (uint32_t)i;
                tli_free(fill);
                for (uint32_t c = 0; c < ds->num_classes; c++)
                    pick_some(pick, members + starts[c], starts[c + 1] - starts[c], validation_fraction, how,
                              &rng);
            }
        }
    }
    size_t nval = 0;
    for (size_t i = 0; i < ds->n && st == TL_OK; i++)
        nval += pick[i];
    if (st == TL_OK && (nval == 0 || nval == ds->n))
        st = tli_error(TL_EINVAL, "%s: a validation fraction of %g of %zu examples leaves the %s part empty", fn,
                       validation_fraction, ds->n, nval == 0 ? "validation" : "training");
    if (st == TL_OK) {
        idx_train = index_array(ds->n - nval, fn, &st);
        if (st == TL_OK)
            idx_val = index_array(nval, fn, &st);
    }
    if (st == TL_OK) {
        for (size_t i = 0, a = 0, b = 0; i < ds->n; i++) {
            if (pick[i])
                idx_val[b++] = (uint32_t)i;
            else
                idx_train[a++] = (uint32_t)i;
        }
        st = gather(out_train, ds, idx_train, ds->n - nval, NULL, ds->num_classes, true, fn);
        if (st == TL_OK) {
            st = gather(out_validation, ds, idx_val, nval, NULL, ds->num_classes, true, fn);
            if (st) {
                tl_dataset_free(*out_train);
                *out_train = NULL;
            }
        }
    }
    tli_free(pick);
    tli_free(members);
    tli_free(starts);
    tli_free(idx_train);
    tli_free(idx_val);
    return st;
}
