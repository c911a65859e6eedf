/*
 * test_data.c - datasets through the public API: building them from memory,
 * targets, getters, the operations for transfer experiments and
 * per-channel standardisation. (The file readers are in test_data_readers.c.)
 */
#include "helpers.h"

static char bogus_target;
#define BOGUS ((tl_dataset *)(void *)&bogus_target)

/* Examples of 2 x 2 x 2 whose values say which example they are:
 * value j of example i is i * 16 + j. */
#define EX 8
static float *rows(size_t n)
{
    float *x = malloc(n * EX * sizeof *x);
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < EX; j++)
            x[i * EX + j] = (float)(i * 16 + j);
    return x;
}

/* Which source example a row of `ds` came from (checking the whole row). */
static size_t source_of(const tl_dataset *ds, size_t i)
{
    const float *x = tl_dataset_images(ds) + i * EX;
    size_t src = (size_t)x[0] / 16;
    for (size_t j = 0; j < EX; j++)
        ck_assert_msg(x[j] == (float)(src * 16 + j), "row %zu value %zu is %g", i, j, (double)x[j]);
    return src;
}

/* n examples, label of example i = labels_of(i) given as an array. */
static tl_dataset *make(size_t n, const int32_t *labels, uint32_t classes)
{
    float *x = rows(n);
    tl_dataset *ds = NULL;
    ck_assert_tl_ok(tl_dataset_create(&ds, x, labels, n, 2, 2, 2, classes, TL_DATA_COPY));
    free(x);
    return ds;
}

/* 20 examples, label i % 5 */
static tl_dataset *make20(int32_t *labels_out)
{
    int32_t y[20];
    for (int i = 0; i < 20; i++)
        y[i] = i % 5;
    if (labels_out)
        memcpy(labels_out, y, sizeof y);
    return make(20, y, 5);
}

/* ---- create, targets, getters --------------------------------------------------- */

START_TEST(create_copy)
{
    float *x = rows(3);
    int32_t y[3] = {2, 0, 1};
    tl_dataset *ds = NULL;
    ck_assert_tl_ok(tl_dataset_create(&ds, x, y, 3, 2, 2, 2, 3, TL_DATA_COPY));
    ck_assert_uint_eq(tl_dataset_count(ds), 3);
    ck_assert_uint_eq(tl_dataset_num_classes(ds), 3);
    uint32_t h = 0, w = 0, c = 0;
    ck_assert_tl_ok(tl_dataset_shape(&h, &w, &c, ds));
    ck_assert_uint_eq(h, 2);
    ck_assert_uint_eq(w, 2);
    ck_assert_uint_eq(c, 2);
    ck_assert_tl_ok(tl_dataset_shape(NULL, &w, NULL, ds));
    ck_assert_ptr_ne(tl_dataset_images(ds), x);
    ck_assert_ptr_ne(tl_dataset_labels(ds), y);
    x[0] = -1.0f; /* the copy does not see later changes */
    y[0] = 1;
    ck_assert(tl_dataset_images(ds)[0] == 0.0f);
    ck_assert_int_eq(tl_dataset_labels(ds)[0], 2);
    for (size_t i = 1; i < 3 * EX; i++)
        ck_assert(tl_dataset_images(ds)[i] == x[i]);
    size_t k = 99;
    ck_assert_ptr_null(tl_dataset_targets(ds, &k));
    ck_assert_uint_eq(k, 0);
    tl_dataset_free(ds);
    free(x);
}
END_TEST

START_TEST(create_borrow)
{
    float *x = rows(2);
    int32_t y[2] = {0, 1};
    tl_dataset *ds = NULL;
    ck_assert_tl_ok(tl_dataset_create(&ds, x, y, 2, 2, 2, 2, 2, TL_DATA_BORROW));
    ck_assert_ptr_eq(tl_dataset_images(ds), x);
    ck_assert_ptr_eq(tl_dataset_labels(ds), y);
    tl_dataset_free(ds);
    free(x); /* still the caller's */
}
END_TEST

START_TEST(create_errors)
{
    float x[EX] = {0};
    int32_t y[2] = {0, 5};
    tl_dataset *ds = BOGUS;
    ck_assert_tl_err(tl_dataset_create(NULL, x, y, 1, 2, 2, 2, 2, TL_DATA_COPY), TL_EINVAL, "out is NULL");
    ck_assert_tl_err(tl_dataset_create(&ds, NULL, y, 1, 2, 2, 2, 2, TL_DATA_COPY), TL_EINVAL, "images is NULL");
    ck_assert_ptr_null(ds);
    ck_assert_tl_err(tl_dataset_create(&ds, x, NULL, 1, 2, 2, 2, 2, TL_DATA_COPY), TL_EINVAL, "labels is NULL");
    ck_assert_tl_err(tl_dataset_create(&ds, x, y, 0, 2, 2, 2, 2, TL_DATA_COPY), TL_EINVAL, "must be > 0");
    ck_assert_tl_err(tl_dataset_create(&ds, x, y, 1, 2, 0, 2, 2, TL_DATA_COPY), TL_EINVAL, "must be > 0");
    ck_assert_tl_err(tl_dataset_create(&ds, x, y, 1, 2, 2, 2, 0, TL_DATA_COPY), TL_EINVAL, "num_classes");
    ck_assert_tl_err(tl_dataset_create(&ds, x, y, 1, 2, 2, 2, 2, (tl_data_mode)5), TL_EINVAL, "unknown mode 5");
    ck_assert_tl_err(tl_dataset_create(&ds, x, y, 2, 1, 2, 2, 3, TL_DATA_COPY), TL_ERANGE,
                     "label 5 of example 1 is outside [0, 3)");
    ck_assert_ptr_null(ds);
    ck_assert_tl_err(tl_dataset_create(&ds, x, y, 1, 65536, 65536, 1, 2, TL_DATA_COPY), TL_ETOOBIG,
                     "too many values");
    ck_assert_ptr_null(ds);
}
END_TEST

START_TEST(targets)
{
    tl_dataset *ds = make20(NULL);
    float t[20 * 3], t2[20 * 2];
    for (int i = 0; i < 60; i++)
        t[i] = (float)i;
    for (int i = 0; i < 40; i++)
        t2[i] = (float)-i;
    ck_assert_tl_ok(tl_dataset_set_targets(ds, t, 20, 3, TL_DATA_COPY));
    size_t k = 0;
    const float *got = tl_dataset_targets(ds, &k);
    ck_assert_uint_eq(k, 3);
    ck_assert_ptr_ne(got, t);
    ck_assert(memcmp(got, t, sizeof t) == 0);
    /* errors leave the dataset as it was */
    ck_assert_tl_err(tl_dataset_set_targets(ds, t, 19, 3, TL_DATA_COPY), TL_ESHAPE, "19 target rows");
    ck_assert_tl_err(tl_dataset_set_targets(ds, t, 20, 0, TL_DATA_COPY), TL_EINVAL, "k must be > 0");
    ck_assert_tl_err(tl_dataset_set_targets(ds, NULL, 20, 3, TL_DATA_COPY), TL_EINVAL, "targets is NULL");
    ck_assert_tl_err(tl_dataset_set_targets(NULL, t, 20, 3, TL_DATA_COPY), TL_EINVAL, "dataset is NULL");
    ck_assert_ptr_eq(tl_dataset_targets(ds, &k), got);
    ck_assert_uint_eq(k, 3);
    /* replaced by borrowed ones */
    ck_assert_tl_ok(tl_dataset_set_targets(ds, t2, 20, 2, TL_DATA_BORROW));
    ck_assert_ptr_eq(tl_dataset_targets(ds, &k), t2);
    ck_assert_uint_eq(k, 2);
    tl_dataset_free(ds);
}
END_TEST

START_TEST(null_getters)
{
    ck_assert_uint_eq(tl_dataset_count(NULL), 0);
    ck_assert_uint_eq(tl_dataset_num_classes(NULL), 0);
    ck_assert_ptr_null(tl_dataset_images(NULL));
    ck_assert_ptr_null(tl_dataset_labels(NULL));
    size_t k = 5;
    ck_assert_ptr_null(tl_dataset_targets(NULL, &k));
    ck_assert_uint_eq(k, 0);
    uint32_t h;
    ck_assert_tl_err(tl_dataset_shape(&h, NULL, NULL, NULL), TL_EINVAL, "dataset is NULL");
    tl_dataset_free(NULL);
}
END_TEST

/* ---- operations --------------------------------------------------------------------- */

START_TEST(filter_classes)
{
    tl_dataset *ds = make20(NULL);
    float t[20];
    ck_assert_tl_ok(tl_dataset_set_targets(ds, t, 20, 1, TL_DATA_COPY));
    int32_t keep[2] = {3, 1}; /* 3 -> 0, 1 -> 1 */
    tl_dataset *f = NULL;
    ck_assert_tl_ok(tl_dataset_filter_classes(&f, ds, keep, 2));
    ck_assert_uint_eq(tl_dataset_count(f), 8);
    ck_assert_uint_eq(tl_dataset_num_classes(f), 2);
    static const size_t src[8] = {1, 3, 6, 8, 11, 13, 16, 18};
    for (size_t i = 0; i < 8; i++) {
        ck_assert_uint_eq(source_of(f, i), src[i]);
        ck_assert_int_eq(tl_dataset_labels(f)[i], src[i] % 5 == 3 ? 0 : 1);
    }
    ck_assert_ptr_null(tl_dataset_targets(f, NULL)); /* they described the old classes */
    tl_dataset_free(f);
    tl_dataset_free(ds);
}
END_TEST

START_TEST(filter_classes_errors)
{
    int32_t y[6] = {0, 1, 0, 1, 0, 1};
    tl_dataset *ds = make(6, y, 4), *f = BOGUS;
    int32_t dup[3] = {1, 0, 1}, out_of_range[2] = {0, 4}, negative[1] = {-1}, absent[2] = {2, 3};
    ck_assert_tl_err(tl_dataset_filter_classes(&f, ds, dup, 3), TL_EINVAL,
                     "class 1 is given twice (classes[0] and classes[2])");
    ck_assert_ptr_null(f);
    ck_assert_tl_err(tl_dataset_filter_classes(&f, ds, out_of_range, 2), TL_ERANGE, "classes[1] = 4 is outside [0, 4)");
    ck_assert_tl_err(tl_dataset_filter_classes(&f, ds, negative, 1), TL_ERANGE, "classes[0] = -1");
    ck_assert_tl_err(tl_dataset_filter_classes(&f, ds, absent, 2), TL_ENOTFOUND, "no example has any of the 2 classes");
    ck_assert_tl_err(tl_dataset_filter_classes(&f, ds, absent, 0), TL_EINVAL, "count is 0");
    ck_assert_tl_err(tl_dataset_filter_classes(&f, NULL, absent, 1), TL_EINVAL, "dataset is NULL");
    ck_assert_tl_err(tl_dataset_filter_classes(&f, ds, NULL, 1), TL_EINVAL, "classes is NULL");
    ck_assert_ptr_null(f);
    tl_dataset_free(ds);
}
END_TEST

START_TEST(take_per_class)
{
    int32_t y[10] = {2, 0, 2, 1, 2, 0, 1, 1, 0, 2};
    tl_dataset *ds = make(10, y, 3), *few = NULL;
    float t[10 * 2];
    for (int i = 0; i < 20; i++)
        t[i] = (float)i;
    ck_assert_tl_ok(tl_dataset_set_targets(ds, t, 10, 2, TL_DATA_COPY));
    ck_assert_tl_ok(tl_dataset_take_per_class(&few, ds, 2));
    ck_assert_uint_eq(tl_dataset_count(few), 6);
    ck_assert_uint_eq(tl_dataset_num_classes(few), 3);
    static const size_t src[6] = {0, 1, 2, 3, 5, 6}; /* dataset order, two of each class */
    size_t k;
    const float *tt = tl_dataset_targets(few, &k);
    ck_assert_uint_eq(k, 2);
    for (size_t i = 0; i < 6; i++) {
        ck_assert_uint_eq(source_of(few, i), src[i]);
        ck_assert_int_eq(tl_dataset_labels(few)[i], y[src[i]]);
        ck_assert(tt[2 * i] == (float)(2 * src[i]) && tt[2 * i + 1] == (float)(2 * src[i] + 1));
    }
    tl_dataset_free(few);
    few = BOGUS;
    ck_assert_tl_err(tl_dataset_take_per_class(&few, ds, 4), TL_ERANGE,
                     "class 0 has 3 examples, fewer than the 4 asked for");
    ck_assert_ptr_null(few);
    ck_assert_tl_err(tl_dataset_take_per_class(&few, ds, 0), TL_EINVAL, "per_class is 0");
    tl_dataset_free(ds);
}
END_TEST

START_TEST(slice)
{
    tl_dataset *ds = make20(NULL), *s = NULL;
    ck_assert_tl_ok(tl_dataset_slice(&s, ds, 3, 4));
    ck_assert_uint_eq(tl_dataset_count(s), 4);
    ck_assert_uint_eq(tl_dataset_num_classes(s), 5);
    for (size_t i = 0; i < 4; i++) {
        ck_assert_uint_eq(source_of(s, i), 3 + i);
        ck_assert_int_eq(tl_dataset_labels(s)[i], (int)((3 + i) % 5));
    }
    tl_dataset_free(s);
    ck_assert_tl_ok(tl_dataset_slice(&s, ds, 19, 1));
    ck_assert_uint_eq(source_of(s, 0), 19);
    tl_dataset_free(s);
    s = BOGUS;
    ck_assert_tl_err(tl_dataset_slice(&s, ds, 18, 3), TL_ERANGE, "examples [18, 18 + 3) go past the end of a dataset of 20");
    ck_assert_ptr_null(s);
    ck_assert_tl_err(tl_dataset_slice(&s, ds, 20, 1), TL_ERANGE, "past the end");
    ck_assert_tl_err(tl_dataset_slice(&s, ds, SIZE_MAX, 2), TL_ERANGE, "past the end");
    ck_assert_tl_err(tl_dataset_slice(&s, ds, 0, 0), TL_EINVAL, "count is 0");
    tl_dataset_free(ds);
}
END_TEST

START_TEST(shuffled)
{
    tl_dataset *ds = make20(NULL), *a = NULL, *b = NULL, *c = NULL;
    float t[20];
    for (int i = 0; i < 20; i++)
        t[i] = (float)(100 + i);
    ck_assert_tl_ok(tl_dataset_set_targets(ds, t, 20, 1, TL_DATA_COPY));
    ck_assert_tl_ok(tl_dataset_shuffled(&a, ds, 42));
    ck_assert_tl_ok(tl_dataset_shuffled(&b, ds, 42));
    ck_assert_tl_ok(tl_dataset_shuffled(&c, ds, 43));
    int seen[20] = {0}, moved = 0, same_as_c = 1;
    for (size_t i = 0; i < 20; i++) {
        size_t s = source_of(a, i);
        seen[s]++;
        moved += s != i;
        ck_assert_uint_eq(source_of(b, i), s); /* same seed, same order */
        same_as_c &= source_of(c, i) == s;
        ck_assert_int_eq(tl_dataset_labels(a)[i], (int)(s % 5)); /* labels and targets follow */
        ck_assert(tl_dataset_targets(a, NULL)[i] == (float)(100 + s));
    }
    for (int i = 0; i < 20; i++)
        ck_assert_int_eq(seen[i], 1);
    ck_assert_int_gt(moved, 10);
    ck_assert(!same_as_c);
    tl_dataset_free(a);
    tl_dataset_free(b);
    tl_dataset_free(c);
    a = BOGUS;
    ck_assert_tl_err(tl_dataset_shuffled(&a, NULL, 1), TL_EINVAL, "dataset is NULL");
    ck_assert_ptr_null(a);
    tl_dataset_free(ds);
}
END_TEST

/* Both parts in increasing source order, disjoint, covering everything. */
static void check_partition(const tl_dataset *tr, const tl_dataset *va, size_t n, int *is_val)
{
    ck_assert_uint_eq(tl_dataset_count(tr) + tl_dataset_count(va), n);
    memset(is_val, 0, n * sizeof *is_val);
    int seen[64] = {0};
    const tl_dataset *parts[2] = {tr, va};
    for (int p = 0; p < 2; p++) {
        size_t prev = 0;
        for (size_t i = 0; i < tl_dataset_count(parts[p]); i++) {
            size_t s = source_of(parts[p], i);
            ck_assert(i == 0 || s > prev);
            prev = s;
            seen[s]++;
            is_val[s] = p;
            ck_assert_int_eq(tl_dataset_labels(parts[p])[i], (int)(s % 5));
        }
        ck_assert_uint_eq(tl_dataset_num_classes(parts[p]), 5);
    }
    for (size_t i = 0; i < n; i++)
        ck_assert_int_eq(seen[i], 1);
}

START_TEST(split_tail)
{
    tl_dataset *ds = make20(NULL), *tr = NULL, *va = NULL;
    int is_val[20];
    ck_assert_tl_ok(tl_dataset_split(&tr, &va, ds, 0.25, TL_HOLDOUT_TAIL, 0));
    check_partition(tr, va, 20, is_val);
    for (int i = 0; i < 20; i++)
        ck_assert_int_eq(is_val[i], i >= 15);
    tl_dataset_free(tr);
    tl_dataset_free(va);
    tl_dataset_free(ds);
}
END_TEST

START_TEST(split_random)
{
    tl_dataset *ds = make20(NULL), *tr = NULL, *va = NULL;
    int v1[20], v2[20];
    ck_assert_tl_ok(tl_dataset_split(&tr, &va, ds, 0.3, TL_HOLDOUT_RANDOM, 7));
    ck_assert_uint_eq(tl_dataset_count(va), 6);
    check_partition(tr, va, 20, v1);
    tl_dataset_free(tr);
    tl_dataset_free(va);
    ck_assert_tl_ok(tl_dataset_split(&tr, &va, ds, 0.3, TL_HOLDOUT_RANDOM, 7));
    check_partition(tr, va, 20, v2);
    ck_assert(memcmp(v1, v2, sizeof v1) == 0); /* same seed, same split */
    int tail = 1;
    for (int i = 0; i < 20; i++)
        tail &= v1[i] == (i >= 14);
    ck_assert(!tail);
    tl_dataset_free(tr);
    tl_dataset_free(va);
    tl_dataset_free(ds);
}
END_TEST

START_TEST(split_stratified)
{
    tl_dataset *ds = make20(NULL), *tr = NULL, *va = NULL;
    int is_val[20];
    ck_assert_tl_ok(tl_dataset_split(&tr, &va, ds, 0.25, TL_HOLDOUT_STRATIFIED, 3));
    check_partition(tr, va, 20, is_val);
    size_t counts[5];
    ck_assert_tl_ok(tl_dataset_class_counts(counts, 5, va));
    for (int c = 0; c < 5; c++)
        ck_assert_uint_eq(counts[c], 1); /* a quarter of the 4 of each class */
    ck_assert_tl_ok(tl_dataset_class_counts(counts, 5, tr));
    for (int c = 0; c < 5; c++)
        ck_assert_uint_eq(counts[c], 3);
    tl_dataset_free(tr);
    tl_dataset_free(va);
    tl_dataset_free(ds);
}
END_TEST

START_TEST(split_errors)
{
    tl_dataset *ds = make20(NULL), *tr = BOGUS, *va = BOGUS;
    ck_assert_tl_err(tl_dataset_split(&tr, &va, ds, 0.0, TL_HOLDOUT_TAIL, 0), TL_EINVAL, "not strictly between 0 and 1");
    ck_assert_ptr_null(tr);
    ck_assert_ptr_null(va);
    ck_assert_tl_err(tl_dataset_split(&tr, &va, ds, 1.0, TL_HOLDOUT_TAIL, 0), TL_EINVAL, "not strictly between");
    ck_assert_tl_err(tl_dataset_split(&tr, &va, ds, NAN, TL_HOLDOUT_TAIL, 0), TL_EINVAL, "not strictly between");
    ck_assert_tl_err(tl_dataset_split(&tr, &va, ds, 0.5, (tl_holdout)9, 0), TL_EINVAL, "unknown holdout 9");
    ck_assert_tl_err(tl_dataset_split(&tr, &va, ds, 0.01, TL_HOLDOUT_RANDOM, 0), TL_EINVAL,
                     "leaves the validation part empty");
    ck_assert_tl_err(tl_dataset_split(&tr, &va, ds, 0.99, TL_HOLDOUT_STRATIFIED, 0), TL_EINVAL,
                     "leaves the training part empty");
    ck_assert_ptr_null(tr);
    ck_assert_ptr_null(va);
    ck_assert_tl_err(tl_dataset_split(NULL, &va, ds, 0.5, TL_HOLDOUT_TAIL, 0), TL_EINVAL, "out_train is NULL");
    tl_dataset_free(ds);
}
END_TEST

START_TEST(class_counts)
{
    int32_t y[7] = {3, 3, 0, 1, 3, 1, 3};
    tl_dataset *ds = make(7, y, 5);
    size_t counts[7];
    memset(counts, 0xff, sizeof counts);
    ck_assert_tl_ok(tl_dataset_class_counts(counts, 7, ds));
    static const size_t want[7] = {1, 2, 0, 4, 0, 0, 0};
    for (int c = 0; c < 7; c++)
        ck_assert_uint_eq(counts[c], want[c]);
    ck_assert_tl_err(tl_dataset_class_counts(counts, 4, ds), TL_EINVAL,
                     "out has 4 entries but the dataset has 5 classes");
    ck_assert_tl_err(tl_dataset_class_counts(NULL, 4, ds), TL_EINVAL, "out is NULL");
    tl_dataset_free(ds);
}
END_TEST

/* ---- standardisation ---------------------------------------------------------------- */

START_TEST(channel_stats_and_standardize)
{
    /* 3 examples of 2 x 2 x 3, channel k of pixel p of example i = a
     * value with a different mean and spread per channel. */
    enum { N = 3, HW = 4, C = 3 };
    float x[N * HW * C];
    int32_t y[N] = {0, 1, 0};
    for (int i = 0; i < N; i++)
        for (int p = 0; p < HW; p++)
            for (int k = 0; k < C; k++)
                x[(i * HW + p) * C + k] = (float)(k * 10) + (float)((i * 7 + p * 3) % 5) * (float)(k + 1) * 0.25f;
    tl_dataset *ds = NULL, *st = NULL;
    ck_assert_tl_ok(tl_dataset_create(&ds, x, y, N, 2, 2, C, 2, TL_DATA_COPY));
    float mean[C], sd[C];
    ck_assert_tl_ok(tl_dataset_channel_stats(mean, sd, C, ds));
    for (int k = 0; k < C; k++) {
        double m = 0, v = 0;
        for (int i = 0; i < N * HW; i++)
            m += x[i * C + k];
        m /= N * HW;
        for (int i = 0; i < N * HW; i++)
            v += (x[i * C + k] - m) * (x[i * C + k] - m);
        ck_assert_close(mean[k], m, 1e-6);
        ck_assert_close(sd[k], sqrt(v / (N * HW)), 1e-6);
        ck_assert(sd[k] > 0.0f);
    }
    ck_assert_tl_ok(tl_dataset_standardize(&st, ds, mean, sd, C));
    ck_assert_uint_eq(tl_dataset_count(st), N);
    ck_assert_uint_eq(tl_dataset_num_classes(st), 2);
    for (int i = 0; i < N * HW * C; i++)
        ck_assert(tl_dataset_images(st)[i] == (x[i] - mean[i % C]) / sd[i % C]);
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(tl_dataset_labels(st)[i], y[i]);
    float m2[C], s2[C];
    ck_assert_tl_ok(tl_dataset_channel_stats(m2, s2, C, st));
    for (int k = 0; k < C; k++) {
        ck_assert_close(m2[k], 0.0, 1e-6);
        ck_assert_close(s2[k], 1.0, 1e-6);
    }
    ck_assert(tl_dataset_images(ds)[5] == x[5]); /* the source is untouched */
    tl_dataset_free(st);
    tl_dataset_free(ds);
}
END_TEST

START_TEST(standardize_errors)
{
    tl_dataset *ds = make20(NULL), *st = BOGUS;
    float mean[2] = {0, 0}, sd[2] = {1, 0};
    ck_assert_tl_err(tl_dataset_standardize(&st, ds, mean, sd, 2), TL_ERANGE, "std[1] = 0 must be finite and > 0");
    ck_assert_ptr_null(st);
    sd[1] = INFINITY;
    ck_assert_tl_err(tl_dataset_standardize(&st, ds, mean, sd, 2), TL_ERANGE, "std[1] = inf");
    sd[1] = 1;
    mean[0] = NAN;
    ck_assert_tl_err(tl_dataset_standardize(&st, ds, mean, sd, 2), TL_ERANGE, "mean[0] = nan is not finite");
    ck_assert_tl_err(tl_dataset_standardize(&st, ds, mean, sd, 3), TL_ESHAPE, "of 3 channels for a dataset of (2, 2, 2)");
    ck_assert_tl_err(tl_dataset_standardize(&st, ds, NULL, sd, 2), TL_EINVAL, "mean is NULL");
    ck_assert_ptr_null(st);
    ck_assert_tl_err(tl_dataset_channel_stats(mean, sd, 1, ds), TL_ESHAPE, "arrays of 1 channels");
    ck_assert_tl_err(tl_dataset_channel_stats(mean, NULL, 2, ds), TL_EINVAL, "out_std is NULL");
    tl_dataset_free(ds);
}
END_TEST

START_TEST(standardize_keeps_targets)
{
    tl_dataset *ds = make20(NULL), *st = NULL;
    float t[40];
    for (int i = 0; i < 40; i++)
        t[i] = (float)i * 0.5f;
    ck_assert_tl_ok(tl_dataset_set_targets(ds, t, 20, 2, TL_DATA_BORROW));
    float mean[2] = {1, 2}, sd[2] = {2, 4};
    ck_assert_tl_ok(tl_dataset_standardize(&st, ds, mean, sd, 2));
    size_t k;
    const float *tt = tl_dataset_targets(st, &k);
    ck_assert_uint_eq(k, 2);
    ck_assert_ptr_ne(tt, t); /* a copy: the result outlives the borrowed array */
    ck_assert(memcmp(tt, t, sizeof t) == 0);
    tl_dataset_free(st);
    tl_dataset_free(ds);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("data");
    TCase *tc = tcase_create("create");
    tcase_add_test(tc, create_copy);
    tcase_add_test(tc, create_borrow);
    tcase_add_test(tc, create_errors);
    tcase_add_test(tc, targets);
    tcase_add_test(tc, null_getters);
    suite_add_tcase(s, tc);
    tc = tcase_create("operations");
    tcase_add_test(tc, filter_classes);
    tcase_add_test(tc, filter_classes_errors);
    tcase_add_test(tc, take_per_class);
    tcase_add_test(tc, slice);
    tcase_add_test(tc, shuffled);
    tcase_add_test(tc, split_tail);
    tcase_add_test(tc, split_random);
    tcase_add_test(tc, split_stratified);
    tcase_add_test(tc, split_errors);
    tcase_add_test(tc, class_counts);
    suite_add_tcase(s, tc);
    tc = tcase_create("standardize");
    tcase_add_test(tc, channel_stats_and_standardize);
    tcase_add_test(tc, standardize_errors);
    tcase_add_test(tc, standardize_keeps_targets);
    suite_add_tcase(s, tc);
    return th_run(s);
}
