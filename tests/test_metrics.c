/* test_metrics.c - tl_model_evaluate_metrics() and the loss options
 * (tl_model_set_loss_options()), by hand on small cases.
 *
 * The model of most cases is flatten -> dense(K, linear) with the identity
 * kernel and no bias, so its logits are its inputs: every example's scores
 * are written down and each figure is counted by hand. Top-k, ties,
 * per-class accuracy and the confusion matrix; label smoothing and class
 * weights: losses against PyTorch's F.cross_entropy (values printed by
 * PyTorch 1.13 in float64), gradients against central differences (the
 * kernel alone and a whole training step), a step whose batch carries no
 * weight, save/load, and every bad input. Internal suite: it also drives
 * the loss kernel and saves a model whose options it corrupted. */
#include <stdio.h>
#include <unistd.h>

#include "helpers.h"
#include "train.h"

static tl_model *logit_model(uint32_t k)
{
    tl_model *m;
    tl_layer *f, *d;
    ck_assert_tl_ok(tl_model_create(&m, 1, 1, k, 1));
    ck_assert_tl_ok(tl_model_set_threads(m, 1));
    ck_assert_tl_ok(tl_model_add_flatten(&f, m, NULL));
    tl_dense_options o = TL_DENSE_OPTIONS_INIT;
    o.units = k;
    o.use_bias = 0;
    ck_assert_tl_ok(tl_model_add_dense(&d, m, &o));
    float *eye = calloc((size_t)k * k, sizeof *eye);
    for (uint32_t i = 0; i < k; i++)
        eye[i * k + i] = 1.0f;
    ck_assert_tl_ok(tl_layer_set_weights(d, 0, eye, (size_t)k * k));
    free(eye);
    return m;
}

static tl_dataset *logit_data(const float *z, const int32_t *labels, size_t n, uint32_t k)
{
    tl_dataset *ds;
    ck_assert_tl_ok(tl_dataset_create(&ds, z, labels, n, 1, 1, k, k, TL_DATA_COPY));
    return ds;
}

/* Mean sparse cross-entropy of logits rows, in double. */
static double xent(const float *z, const int32_t *labels, size_t n, size_t k)
{
    double sum = 0.0;
    for (size_t r = 0; r < n; r++) {
        double mx = -INFINITY, s = 0.0;
        for (size_t c = 0; c < k; c++)
            mx = fmax(mx, z[r * k + c]);
        for (size_t c = 0; c < k; c++)
            s += exp(z[r * k + c] - mx);
        sum += mx + log(s) - z[r * k + labels[r]];
    }
    return sum / (double)n;
}

/* ---- metrics -------------------------------------------------------------------- */

/* Seven examples of four classes; rank = classes ahead of the label in a
 * descending order whose ties go to the lower index. */
static const float Z7[7][4] = {
    {4, 3, 2, 1}, /* label 0: rank 0, predicted 0 */
    {1, 4, 3, 2}, /* label 2: rank 1, predicted 1 */
    {2, 2, 1, 0}, /* label 1: tied with class 0, which comes first: rank 1, predicted 0 */
    {2, 2, 1, 0}, /* label 0: the same scores, rank 0: right */
    {0, 1, 2, 3}, /* label 0: rank 3, predicted 3 */
    {1, 1, 1, 1}, /* label 3: all tied: rank 3, predicted 0 */
    {0, 5, 5, 5}, /* label 2: tied with 1 and 3, only 1 ahead: rank 1, predicted 1 */
};
static const int32_t L7[7] = {0, 2, 1, 0, 0, 3, 2};

START_TEST(metrics_by_hand)
{
    tl_model *m = logit_model(4);
    tl_dataset *ds = logit_data(&Z7[0][0], L7, 7, 4);
    tl_evaluate_options o = TL_EVALUATE_OPTIONS_INIT;
    o.top_k = 2;
    o.batch_size = 3; /* batches of 3, 3 and 1 */
    tl_metrics *mt;
    ck_assert_tl_ok(tl_model_evaluate_metrics(&mt, m, ds, &o));
    ck_assert_uint_eq(tl_metrics_num_examples(mt), 7);
    ck_assert_uint_eq(tl_metrics_num_classes(mt), 4);
    ck_assert_uint_eq(tl_metrics_top_k(mt), 2);
    ck_assert(tl_metrics_accuracy(mt) == 2.0 / 7.0);
    ck_assert(tl_metrics_top_k_accuracy(mt) == 5.0 / 7.0);
    ck_assert_close(tl_metrics_loss(mt), xent(&Z7[0][0], L7, 7, 4), 1e-6);
    /* tl_model_evaluate gives the same figures, from the same loop. */
    double loss, acc;
    ck_assert_tl_ok(tl_model_evaluate(&loss, &acc, m, ds, 3));
    ck_assert(loss == tl_metrics_loss(mt) && acc == tl_metrics_accuracy(mt));
    /* Per class: 0 has examples 0, 3, 4 (two right), 1 has 2, 2 has 1 and
     * 6, 3 has 5; only class 0 is ever right. */
    const uint64_t counts[4] = {3, 1, 2, 1};
    const double accs[4] = {2.0 / 3.0, 0, 0, 0};
    for (size_t c = 0; c < 4; c++) {
        ck_assert_uint_eq(tl_metrics_class_count(mt, c), counts[c]);
        ck_assert(tl_metrics_class_accuracy(mt, c) == accs[c]);
    }
    ck_assert(isnan(tl_metrics_class_accuracy(mt, 4)) && tl_metrics_class_count(mt, 4) == 0);
    /* Rows: true class; columns: predicted. */
    const uint64_t want[16] = {2, 0, 0, 1, /* */ 1, 0, 0, 0, /* */ 0, 2, 0, 0, /* */ 1, 0, 0, 0};
    ck_assert_int_eq(tl_metrics_has_confusion(mt), 1);
    uint64_t got[16];
    ck_assert_tl_ok(tl_metrics_confusion_copy(mt, got, 16));
    for (size_t i = 0; i < 16; i++) {
        ck_assert_uint_eq(got[i], want[i]);
        ck_assert_uint_eq(tl_metrics_confusion(mt, i / 4, i % 4), want[i]);
    }
    ck_assert_uint_eq(tl_metrics_confusion(mt, 4, 0), 0);
    ck_assert_tl_err(tl_metrics_confusion_copy(mt, got, 15), TL_EINVAL, "15");
    ck_assert_tl_err(tl_metrics_confusion_copy(mt, NULL, 16), TL_EINVAL, "out");
    tl_metrics_free(mt);

    /* k = 1 is the accuracy; k = 3 adds nothing (examples 4 and 5 rank
     * 3); k = 4 = K counts everything. Any batch size gives the same. */
    const double want_k[5] = {0, 2.0 / 7.0, 5.0 / 7.0, 5.0 / 7.0, 1.0};
    for (uint32_t k = 1; k <= 4; k++) {
        o.top_k = k;
        o.batch_size = k == 1 ? 1 : 64;
        o.confusion_matrix = 0;
        ck_assert_tl_ok(tl_model_evaluate_metrics(&mt, m, ds, &o));
        ck_assert_msg(tl_metrics_top_k_accuracy(mt) == want_k[k], "top-%u: %g", k, tl_metrics_top_k_accuracy(mt));
        ck_assert(tl_metrics_accuracy(mt) == 2.0 / 7.0);
        ck_assert_int_eq(tl_metrics_has_confusion(mt), 0);
        ck_assert_uint_eq(tl_metrics_confusion(mt, 0, 0), 0);
        ck_assert_tl_err(tl_metrics_confusion_copy(mt, got, 16), TL_ESTATE, "confusion_matrix");
        tl_metrics_free(mt);
    }
    /* The default k: 5, or K when the model has fewer outputs. */
    ck_assert_tl_ok(tl_model_evaluate_metrics(&mt, m, ds, NULL));
    ck_assert_uint_eq(tl_metrics_top_k(mt), 4);
    ck_assert(tl_metrics_top_k_accuracy(mt) == 1.0);
    tl_metrics_free(mt);
    tl_dataset_free(ds);
    tl_model_free(m);

    tl_model *m6 = logit_model(6);
    float z6[2][6] = {{0, 1, 2, 3, 4, 5}, {6, 5, 4, 3, 2, 1}};
    int32_t l6[2] = {0, 4}; /* ranks 5 and 4 */
    ck_assert_tl_ok(tl_dataset_create(&ds, &z6[0][0], l6, 2, 1, 1, 6, 6, TL_DATA_COPY));
    ck_assert_tl_ok(tl_model_evaluate_metrics(&mt, m6, ds, NULL));
    ck_assert_uint_eq(tl_metrics_top_k(mt), 5);
    ck_assert(tl_metrics_top_k_accuracy(mt) == 0.5);
    ck_assert(tl_metrics_accuracy(mt) == 0.0);
    ck_assert(isnan(tl_metrics_class_accuracy(mt, 5)) && tl_metrics_class_count(mt, 5) == 0);
    ck_assert(tl_metrics_class_accuracy(mt, 4) == 0.0 && tl_metrics_confusion(mt, 4, 0) == 1);
    ck_assert(tl_metrics_confusion(mt, 0, 5) == 1);
    tl_metrics_free(mt);
    tl_dataset_free(ds);
    tl_model_free(m6);
}
END_TEST

START_TEST(metrics_true_class_from_targets)
{
    /* Categorical cross-entropy reads float targets: the true class is
     * their arg-max, not the label. */
    tl_model *m = logit_model(3);
    const float z[3][3] = {{3, 1, 0}, {0, 3, 1}, {1, 0, 3}};
    const int32_t labels[3] = {0, 0, 0};
    const float t[3][3] = {{0.8f, 0.1f, 0.1f}, {0.1f, 0.1f, 0.8f}, {0, 0, 1}};
    tl_dataset *ds = logit_data(&z[0][0], labels, 3, 3);
    ck_assert_tl_ok(tl_dataset_set_targets(ds, &t[0][0], 3, 3, TL_DATA_COPY));
    ck_assert_tl_ok(tl_model_compile(m, NULL, TL_LOSS_CATEGORICAL_CROSSENTROPY));
    tl_metrics *mt;
    tl_evaluate_options o = TL_EVALUATE_OPTIONS_INIT;
    o.top_k = 2;
    ck_assert_tl_ok(tl_model_evaluate_metrics(&mt, m, ds, &o));
    ck_assert(tl_metrics_accuracy(mt) == 2.0 / 3.0);
    ck_assert(tl_metrics_top_k_accuracy(mt) == 1.0); /* example 1: class 2 ranks second */
    ck_assert_uint_eq(tl_metrics_class_count(mt, 0), 1);
    ck_assert_uint_eq(tl_metrics_class_count(mt, 2), 2);
    ck_assert_uint_eq(tl_metrics_confusion(mt, 2, 1), 1);
    ck_assert_uint_eq(tl_metrics_confusion(mt, 2, 2), 1);
    tl_metrics_free(mt);
    tl_dataset_free(ds);
    tl_model_free(m);

    /* NULL metrics. */
    ck_assert_uint_eq(tl_metrics_num_examples(NULL), 0);
    ck_assert_uint_eq(tl_metrics_num_classes(NULL), 0);
    ck_assert_uint_eq(tl_metrics_top_k(NULL), 0);
    ck_assert(isnan(tl_metrics_loss(NULL)) && isnan(tl_metrics_accuracy(NULL)));
    ck_assert(isnan(tl_metrics_top_k_accuracy(NULL)) && isnan(tl_metrics_class_accuracy(NULL, 0)));
    ck_assert_uint_eq(tl_metrics_class_count(NULL, 0), 0);
    ck_assert_int_eq(tl_metrics_has_confusion(NULL), 0);
    ck_assert_uint_eq(tl_metrics_confusion(NULL, 0, 0), 0);
    tl_metrics_free(NULL);
}
END_TEST

START_TEST(metrics_bad_input)
{
    tl_model *m = logit_model(4);
    tl_dataset *ds = logit_data(&Z7[0][0], L7, 7, 4);
    tl_metrics *mt = (tl_metrics *)&mt;
    tl_evaluate_options o = TL_EVALUATE_OPTIONS_INIT;
    o.top_k = 5;
    ck_assert_tl_err(tl_model_evaluate_metrics(&mt, m, ds, &o), TL_EINVAL, "top_k 5");
    ck_assert_ptr_null(mt);
    o.top_k = 1000;
    ck_assert_tl_err(tl_model_evaluate_metrics(&mt, m, ds, &o), TL_EINVAL, "model's 4 outputs");
    o.top_k = 0;
    o.version = 0;
    ck_assert_tl_err(tl_model_evaluate_metrics(&mt, m, ds, &o), TL_EVERSION, "tl_evaluate_options");
    ck_assert_tl_err(tl_model_evaluate_metrics(NULL, m, ds, NULL), TL_EINVAL, "out");
    ck_assert_tl_err(tl_model_evaluate_metrics(&mt, NULL, ds, NULL), TL_EINVAL, "model");
    ck_assert_tl_err(tl_model_evaluate_metrics(&mt, m, NULL, NULL), TL_EINVAL, "data");
    ck_assert_tl_err(tl_evaluate_options_init(&o, 3), TL_EVERSION, "tl_evaluate_options");
    ck_assert_tl_ok(tl_evaluate_options_init(&o, TL_EVALUATE_OPTIONS_VERSION));
    ck_assert(o.top_k == 0 && o.batch_size == 0 && o.confusion_matrix == 1);
    /* Errors of tl_model_evaluate: data of another shape. */
    tl_model *m5 = logit_model(5);
    ck_assert_tl_err(tl_model_evaluate_metrics(&mt, m5, ds, NULL), TL_ESHAPE, "model takes");
    ck_assert_ptr_null(mt);
    tl_model *empty;
    ck_assert_tl_ok(tl_model_create(&empty, 1, 1, 4, 1));
    ck_assert_tl_err(tl_model_evaluate_metrics(&mt, empty, ds, NULL), TL_ESTATE, "no layers");
    tl_model_free(empty);
    tl_model_free(m5);
    tl_dataset_free(ds);
    tl_model_free(m);
}
END_TEST

/* ---- loss options: values ----------------------------------------------------- */

/* Three examples, three classes; the reference values are PyTorch's
 * F.cross_entropy in float64 on the same numbers. */
static const float Z3[3][3] = {{1, 2, 0.5f}, {0.25f, -1, 2}, {3, 0, -2}};
static const int32_t L3[3] = {0, 2, 1};
static const float W3[3] = {1, 2, 0.5f};

static double loss_with(tl_model *m, const tl_dataset *ds, tl_loss loss, float eps, const float *w)
{
    ck_assert_tl_ok(tl_model_set_loss_options(m, NULL));
    ck_assert_tl_ok(tl_model_compile(m, NULL, loss));
    tl_loss_options lo = TL_LOSS_OPTIONS_INIT;
    lo.label_smoothing = eps;
    lo.class_weights = w;
    lo.num_class_weights = w ? 3 : 0;
    ck_assert_tl_ok(tl_model_set_loss_options(m, &lo));
    double l, l1;
    ck_assert_tl_ok(tl_model_evaluate(&l, NULL, m, ds, 0));
    ck_assert_tl_ok(tl_model_evaluate(&l1, NULL, m, ds, 1)); /* batch by batch: the same weighted mean */
    ck_assert_close(l1, l, 1e-12);
    return l;
}

START_TEST(loss_options_values)
{
    tl_model *m = logit_model(3);
    tl_dataset *ds = logit_data(&Z3[0][0], L3, 3, 3);
    const tl_loss sparse = TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY, cat = TL_LOSS_CATEGORICAL_CROSSENTROPY;
    ck_assert_close(loss_with(m, ds, sparse, 0, NULL), 1.5737064962565084, 1e-6);
    ck_assert_close(loss_with(m, ds, sparse, 0.2f, NULL), 1.6459287184787306, 1e-6);
    ck_assert_close(loss_with(m, ds, sparse, 0, W3), 2.192920568429845, 1e-6);
    ck_assert_close(loss_with(m, ds, sparse, 0.2f, W3), 2.145268230185654, 1e-6);
    /* One example by hand: e = 0.2, K = 3, label 0, z = (1, 2, 0.5):
     * q = (0.8 + 0.2/3, 0.2/3, 0.2/3), loss = sum_c q_c (lse - z_c). */
    {
        tl_dataset *one = logit_data(&Z3[0][0], L3, 1, 3);
        double lse = log(exp(1.0) + exp(2.0) + exp(0.5)), u = 0.2 / 3;
        double want = (0.8 + u) * (lse - 1) + u * (lse - 2) + u * (lse - 0.5);
        ck_assert_close(loss_with(m, one, sparse, 0.2f, NULL), want, 1e-6);
        /* With weights, one example's weighted mean is sum_c w_c q_c l_c / w_label. */
        double wwant = ((0.8 + u) * 1 * (lse - 1) + u * 2 * (lse - 2) + u * 0.5 * (lse - 0.5)) / 1.0;
        ck_assert_close(loss_with(m, one, sparse, 0.2f, W3), wwant, 1e-6);
        tl_dataset_free(one);
    }
    /* Categorical on one-hot targets is the sparse loss, smoothed and weighted alike. */
    const float onehot[3][3] = {{1, 0, 0}, {0, 0, 1}, {0, 1, 0}};
    ck_assert_tl_ok(tl_dataset_set_targets(ds, &onehot[0][0], 3, 3, TL_DATA_COPY));
    ck_assert_close(loss_with(m, ds, cat, 0.2f, W3), 2.145268230185654, 1e-6);
    ck_assert_close(loss_with(m, ds, cat, 0, W3), 2.192920568429845, 1e-6);
    /* Soft targets without weights: PyTorch's mean over the examples. */
    const float soft[3][3] = {{0.7f, 0.2f, 0.1f}, {0, 0, 1}, {0.5f, 0.5f, 0}};
    ck_assert_tl_ok(tl_dataset_set_targets(ds, &soft[0][0], 3, 3, TL_DATA_COPY));
    ck_assert_close(loss_with(m, ds, cat, 0.2f, NULL), 1.2059287184787306, 1e-6);
    /* Soft targets with weights: divided by sum_n sum_c w_c t_nc (targets summing to 1). */
    double num = 0, den = 0;
    for (int r = 0; r < 3; r++) {
        double mx = fmax(fmax(Z3[r][0], Z3[r][1]), Z3[r][2]), s = 0;
        for (int c = 0; c < 3; c++)
            s += exp(Z3[r][c] - mx);
        for (int c = 0; c < 3; c++) {
            double q = 0.8 * soft[r][c] + 0.2 / 3;
            num += W3[c] * q * (mx + log(s) - Z3[r][c]);
            den += W3[c] * soft[r][c];
        }
    }
    ck_assert_close(loss_with(m, ds, cat, 0.2f, W3), num / den, 1e-6);
    /* The accuracy is never weighted. */
    double acc;
    ck_assert_tl_ok(tl_model_evaluate(NULL, &acc, m, ds, 0));
    ck_assert(acc == 2.0 / 3.0);
    /* The metrics' loss is evaluate's. */
    tl_metrics *mt;
    ck_assert_tl_ok(tl_model_evaluate_metrics(&mt, m, ds, NULL));
    ck_assert(tl_metrics_loss(mt) == num / den || fabs(tl_metrics_loss(mt) - num / den) < 1e-6);
    double l;
    ck_assert_tl_ok(tl_model_evaluate(&l, NULL, m, ds, 0));
    ck_assert(tl_metrics_loss(mt) == l);
    tl_metrics_free(mt);
    tl_dataset_free(ds);
    tl_model_free(m);
}
END_TEST

/* ---- loss options: gradients ---------------------------------------------------- */

typedef struct kctx {
    float *z;
    const int32_t *labels;
    const float *t;
    float eps;
    const float *w;
} kctx;

static double kernel_loss(void *p)
{
    kctx *c = p;
    tli_loss_result r;
    size_t bad;
    ck_assert(tli_softmax_xent_ex(c->z, 4, 5, c->labels, c->t, c->eps, c->w, NULL, &r, &bad));
    return tli_loss_mean(r.loss_sum, r.weight_sum);
}

START_TEST(loss_options_kernel_gradient)
{
    float z[20], t[20], dz[20];
    double num[20];
    th_fill_uniform(z, 20, -2, 2, 11);
    th_fill_uniform(t, 20, 0, 1, 12);
    for (int r = 0; r < 4; r++) { /* rows summing to 1 but the last, which sums to 2 */
        float s = 0;
        for (int c = 0; c < 5; c++)
            s += t[r * 5 + c];
        for (int c = 0; c < 5; c++)
            t[r * 5 + c] *= (r == 3 ? 2.0f : 1.0f) / s;
    }
    const int32_t labels[4] = {1, 4, 0, 4};
    const float w[5] = {1, 0.5f, 2, 0, 3};
    const float eps[3] = {0, 0.1f, 0.3f};
    for (int e = 0; e < 3; e++)
        for (int weighted = 0; weighted < 2; weighted++)
            for (int soft = 0; soft < 2; soft++) {
                kctx c = {z, soft ? NULL : labels, soft ? t : NULL, eps[e], weighted ? w : NULL};
                tli_loss_result r;
                size_t bad;
                ck_assert(tli_softmax_xent_ex(z, 4, 5, c.labels, c.t, c.eps, c.w, dz, &r, &bad));
                for (int i = 0; i < 20; i++)
                    num[i] = th_central(&z[i], kernel_loss, &c);
                char what[64];
                snprintf(what, sizeof what, "dz (eps %g, %s, %s)", (double)eps[e], weighted ? "weighted" : "unweighted",
                         soft ? "soft targets" : "labels");
                th_check_grad(dz, num, 20, what);
                /* Without options the general kernel is the plain one. */
                if (e == 0 && !weighted) {
                    float dz0[20];
                    tli_loss_result r0;
                    ck_assert(tli_softmax_xent(z, 4, 5, c.labels, c.t, dz0, &r0, &bad));
                    ck_assert_close(r.loss_sum, r0.loss_sum, 1e-12);
                    ck_assert(r.weight_sum == 4.0 && r0.weight_sum == 4.0 && r.correct == r0.correct);
                    for (int i = 0; i < 20; i++)
                        ck_assert_close(dz[i], dz0[i], 1e-7);
                }
            }
    /* A label outside the outputs. */
    const int32_t bad_labels[4] = {0, 5, 0, 0};
    tli_loss_result r;
    size_t bad = 99;
    ck_assert(!tli_softmax_xent_ex(z, 4, 5, bad_labels, NULL, 0.1f, w, dz, &r, &bad));
    ck_assert_uint_eq(bad, 1);
}
END_TEST

/* The model-level check: one SGD step (lr 0.5, no momentum) moves every
 * parameter by -0.5 x the gradient of the smoothed, weighted loss, which
 * central differences of tl_model_evaluate's loss give. */
typedef struct mctx {
    tl_model *m;
    tl_layer *dense;
    const tl_dataset *ds;
    float *params; /* kernel (9) then bias (3) */
} mctx;

static double model_loss(void *p)
{
    mctx *c = p;
    ck_assert_tl_ok(tl_layer_set_weights(c->dense, 0, c->params, 9));
    ck_assert_tl_ok(tl_layer_set_weights(c->dense, 1, c->params + 9, 3));
    double l;
    ck_assert_tl_ok(tl_model_evaluate(&l, NULL, c->m, c->ds, 0));
    return l;
}

START_TEST(loss_options_training_step)
{
    for (int soft = 0; soft < 2; soft++) {
        tl_model *m;
        tl_layer *f, *d;
        ck_assert_tl_ok(tl_model_create(&m, 1, 1, 3, 5));
        ck_assert_tl_ok(tl_model_set_threads(m, 1));
        ck_assert_tl_ok(tl_model_add_flatten(&f, m, NULL));
        tl_dense_options o = TL_DENSE_OPTIONS_INIT;
        o.units = 3;
        o.bias_initializer = TL_INIT_ONES;
        ck_assert_tl_ok(tl_model_add_dense(&d, m, &o));
        float x[12];
        th_fill_uniform(x, 12, -1, 1, 7);
        const int32_t labels[4] = {0, 1, 2, 1};
        const float t[12] = {0.6f, 0.3f, 0.1f, 0, 1, 0, 0.2f, 0.2f, 0.6f, 0.1f, 0.8f, 0.1f};
        tl_dataset *ds = logit_data(x, labels, 4, 3);
        if (soft)
            ck_assert_tl_ok(tl_dataset_set_targets(ds, t, 4, 3, TL_DATA_COPY));
        tl_optimizer *opt;
        tl_sgd_options so = TL_SGD_OPTIONS_INIT;
        so.learning_rate = 0.5f;
        ck_assert_tl_ok(tl_optimizer_create_sgd(&opt, &so));
        ck_assert_tl_ok(tl_model_compile(m, opt, soft ? TL_LOSS_CATEGORICAL_CROSSENTROPY
                                                      : TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY));
        const float w[3] = {1, 2.5f, 0.5f};
        tl_loss_options lo = TL_LOSS_OPTIONS_INIT;
        lo.label_smoothing = 0.15f;
        lo.class_weights = w;
        lo.num_class_weights = 3;
        ck_assert_tl_ok(tl_model_set_loss_options(m, &lo));
        float params[12], before[12], after[12], grad[12];
        double num[12];
        ck_assert_tl_ok(tl_layer_get_weights(params, 9, d, 0));
        ck_assert_tl_ok(tl_layer_get_weights(params + 9, 3, d, 1));
        memcpy(before, params, sizeof before);
        mctx c = {m, d, ds, params};
        for (int i = 0; i < 12; i++)
            num[i] = th_central(&params[i], model_loss, &c);
        model_loss(&c); /* the weights as they were */
        double eval_loss, step_loss;
        ck_assert_tl_ok(tl_model_evaluate(&eval_loss, NULL, m, ds, 0));
        ck_assert_tl_ok(tl_model_train_step(&step_loss, m, x, labels, soft ? t : NULL, 4));
        ck_assert_close(step_loss, eval_loss, 1e-12); /* the loss before the update */
        ck_assert_tl_ok(tl_layer_get_weights(after, 9, d, 0));
        ck_assert_tl_ok(tl_layer_get_weights(after + 9, 3, d, 1));
        for (int i = 0; i < 12; i++)
            grad[i] = (before[i] - after[i]) / 0.5f;
        th_check_grad(grad, num, 12, soft ? "step (soft targets)" : "step (labels)");
        double after_loss;
        ck_assert_tl_ok(tl_model_evaluate(&after_loss, NULL, m, ds, 0));
        ck_assert_msg(after_loss < eval_loss, "the step raised the loss: %g -> %g", eval_loss, after_loss);
        tl_dataset_free(ds);
        tl_model_free(m);
    }
}
END_TEST

START_TEST(loss_options_zero_weight_batch)
{
    /* A batch whose examples all have weight 0 has loss 0 and no gradient:
     * plain SGD leaves the weights as they were. */
    tl_model *m = logit_model(3);
    tl_optimizer *opt;
    ck_assert_tl_ok(tl_optimizer_create_sgd(&opt, NULL));
    ck_assert_tl_ok(tl_model_compile(m, opt, TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY));
    const float w[3] = {1, 0, 1};
    tl_loss_options lo = TL_LOSS_OPTIONS_INIT;
    lo.label_smoothing = 0.1f;
    lo.class_weights = w;
    lo.num_class_weights = 3;
    ck_assert_tl_ok(tl_model_set_loss_options(m, &lo));
    tl_layer *d;
    ck_assert_tl_ok(tl_model_layer(&d, m, 1));
    float k0[9], k1[9];
    ck_assert_tl_ok(tl_layer_get_weights(k0, 9, d, 0));
    const int32_t ones[2] = {1, 1};
    double loss = -1;
    ck_assert_tl_ok(tl_model_train_step(&loss, m, &Z3[0][0], ones, NULL, 2));
    ck_assert(loss == 0.0);
    ck_assert_tl_ok(tl_layer_get_weights(k1, 9, d, 0));
    ck_assert(memcmp(k0, k1, sizeof k0) == 0);
    /* With one example of class 0 in the batch, it learns. */
    const int32_t mixed[2] = {1, 0};
    ck_assert_tl_ok(tl_model_train_step(&loss, m, &Z3[0][0], mixed, NULL, 2));
    ck_assert(loss > 0.0);
    ck_assert_tl_ok(tl_layer_get_weights(k1, 9, d, 0));
    ck_assert(memcmp(k0, k1, sizeof k0) != 0);
    tl_model_free(m);
}
END_TEST

START_TEST(loss_options_in_fit)
{
    /* fit's epoch loss is the weighted mean over the epoch, which with one
     * batch is evaluate's loss before the update. */
    tl_model *m = logit_model(3);
    tl_optimizer *opt;
    ck_assert_tl_ok(tl_optimizer_create_sgd(&opt, NULL));
    ck_assert_tl_ok(tl_model_compile(m, opt, TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY));
    tl_loss_options lo = TL_LOSS_OPTIONS_INIT;
    lo.label_smoothing = 0.2f;
    lo.class_weights = W3;
    lo.num_class_weights = 3;
    ck_assert_tl_ok(tl_model_set_loss_options(m, &lo));
    tl_dataset *ds = logit_data(&Z3[0][0], L3, 3, 3);
    double before;
    ck_assert_tl_ok(tl_model_evaluate(&before, NULL, m, ds, 0));
    ck_assert_close(before, 2.145268230185654, 1e-6);
    tl_fit_options fo = TL_FIT_OPTIONS_INIT;
    fo.batch_size = 3;
    fo.shuffle = 0;
    ck_assert_tl_ok(tl_model_fit(m, ds, &fo));
    double after;
    ck_assert_tl_ok(tl_model_evaluate(&after, NULL, m, ds, 0));
    ck_assert_msg(after < before, "%g -> %g", before, after);
    tl_dataset_free(ds);
    tl_model_free(m);
}
END_TEST

/* ---- loss options: files -------------------------------------------------------- */

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n);
    ck_assert_uint_eq(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return b;
}

static tl_model *compiled_adam(uint32_t k)
{
    tl_model *m = logit_model(k);
    tl_optimizer *opt;
    ck_assert_tl_ok(tl_optimizer_create_adam(&opt, NULL));
    ck_assert_tl_ok(tl_model_compile(m, opt, TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY));
    return m;
}

START_TEST(loss_options_saved)
{
    char dir[] = "/tmp/tl_metrics_XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char a[64], b[64], c[64];
    snprintf(a, sizeof a, "%s/a.tlm", dir);
    snprintf(b, sizeof b, "%s/b.tlm", dir);
    snprintf(c, sizeof c, "%s/c.tlm", dir);
    tl_model *m = compiled_adam(3);
    ck_assert_tl_ok(tl_model_save(m, a, NULL));
    const float w[3] = {0.5f, 2, 1};
    tl_loss_options lo = TL_LOSS_OPTIONS_INIT;
    lo.label_smoothing = 0.1f;
    lo.class_weights = w;
    lo.num_class_weights = 3;
    ck_assert_tl_ok(tl_model_set_loss_options(m, &lo));
    ck_assert_tl_ok(tl_model_save(m, b, NULL));
    /* tl_checkpoint_info reads them back without building the model. */
    {
        tl_checkpoint_info *info;
        tl_loss_options got = TL_LOSS_OPTIONS_INIT;
        ck_assert_tl_ok(tl_checkpoint_info_read(&info, b));
        ck_assert_tl_ok(tl_checkpoint_info_loss_options(&got, info));
        ck_assert(got.label_smoothing == 0.1f && got.num_class_weights == 3);
        ck_assert(got.class_weights != w && memcmp(got.class_weights, w, sizeof w) == 0);
        got.version = 0;
        ck_assert_tl_err(tl_checkpoint_info_loss_options(&got, info), TL_EVERSION, "tl_loss_options version 0");
        ck_assert_tl_err(tl_checkpoint_info_loss_options(NULL, info), TL_EINVAL, "out is NULL");
        ck_assert_tl_err(tl_checkpoint_info_loss_options(&got, NULL), TL_EINVAL, "info is NULL");
        tl_checkpoint_info_free(info);
        /* A file without LOSS: the defaults. */
        ck_assert_tl_ok(tl_checkpoint_info_read(&info, a));
        tl_loss_options none = {TL_LOSS_OPTIONS_VERSION, 0.7f, w, 3};
        ck_assert_tl_ok(tl_checkpoint_info_loss_options(&none, info));
        ck_assert(none.label_smoothing == 0.0f && none.class_weights == NULL && none.num_class_weights == 0);
        tl_checkpoint_info_free(info);
    }
    /* The options need format 1.1 (a LOSS section); the defaults do not. */
    size_t na, nb, nc;
    char *fa = read_all(a, &na), *fb = read_all(b, &nb);
    ck_assert_int_eq(fa[10], 0);
    ck_assert_int_eq(fb[10], 1);
    free(fb);
    /* Back to the defaults: byte for byte the file of a model that never had options. */
    ck_assert_tl_ok(tl_model_set_loss_options(m, NULL));
    ck_assert_tl_ok(tl_model_save(m, c, NULL));
    char *fc = read_all(c, &nc);
    ck_assert(na == nc && memcmp(fa, fc, na) == 0);
    free(fa);
    free(fc);
    ck_assert_tl_ok(tl_model_set_loss_options(m, &lo));

    tl_model *back;
    ck_assert_tl_ok(tl_model_load(&back, b));
    tl_loss_options got = TL_LOSS_OPTIONS_INIT;
    ck_assert_tl_ok(tl_model_loss_options(back, &got));
    ck_assert(got.label_smoothing == 0.1f && got.num_class_weights == 3);
    ck_assert(got.class_weights != w && memcmp(got.class_weights, w, sizeof w) == 0);
    tl_dataset *ds = logit_data(&Z3[0][0], L3, 3, 3);
    double l0, l1;
    ck_assert_tl_ok(tl_model_evaluate(&l0, NULL, m, ds, 0));
    ck_assert_tl_ok(tl_model_evaluate(&l1, NULL, back, ds, 0));
    ck_assert(l0 == l1);
    tl_model_free(back);
    /* Smoothing alone (no weights). */
    lo.class_weights = NULL;
    lo.num_class_weights = 0;
    ck_assert_tl_ok(tl_model_set_loss_options(m, &lo));
    ck_assert_tl_ok(tl_model_save(m, b, NULL));
    ck_assert_tl_ok(tl_model_load(&back, b));
    ck_assert_tl_ok(tl_model_loss_options(back, &got));
    ck_assert(got.label_smoothing == 0.1f && got.class_weights == NULL && got.num_class_weights == 0);
    tl_model_free(back);
    /* Saved without the optimizer: no loss, so no options either. */
    ck_assert_tl_ok(tl_model_set_loss_options(m, &lo));
    tl_save_options so = TL_SAVE_OPTIONS_INIT;
    so.include_optimizer = 0;
    ck_assert_tl_ok(tl_model_save(m, b, &so));
    ck_assert_tl_ok(tl_model_load(&back, b));
    ck_assert_tl_ok(tl_model_loss_options(back, &got));
    ck_assert(got.label_smoothing == 0.0f && got.class_weights == NULL);
    tl_model_free(back);
    /* A reader holds LOSS to the setter's rules (options corrupted in memory,
     * where the setter cannot see them). */
    m->label_smoothing = 1.5f;
    ck_assert_tl_ok(tl_model_save(m, b, NULL));
    ck_assert_tl_err(tl_model_load(&back, b), TL_EFORMAT, "label_smoothing 1.5");
    ck_assert_ptr_null(back);
    m->label_smoothing = 0.0f;
    ck_assert_tl_ok(tl_model_set_loss_options(m, NULL));
    float neg[3] = {1, -1, 1};
    m->class_weights = malloc(sizeof neg); /* freed by the model: tli_free is free */
    memcpy(m->class_weights, neg, sizeof neg);
    m->nclass_weights = 3;
    ck_assert_tl_ok(tl_model_save(m, b, NULL));
    ck_assert_tl_err(tl_model_load(&back, b), TL_EFORMAT, "class_weights[1] is -1");
    /* The parser checks the section for every reader... */
    tl_model *params = compiled_adam(3);
    ck_assert_tl_err(tl_model_load_params(NULL, params, b, NULL), TL_EFORMAT, "class_weights[1]");
    /* ...and tl_model_load_params, which takes no optimizer, skips a valid one. */
    m->class_weights[1] = 4.0f;
    ck_assert_tl_ok(tl_model_save(m, b, NULL));
    ck_assert_tl_ok(tl_model_load_params(NULL, params, b, NULL));
    ck_assert_tl_ok(tl_model_loss_options(params, &got));
    ck_assert(got.class_weights == NULL);
    tl_model_free(params);
    tl_dataset_free(ds);
    tl_model_free(m);
    unlink(a);
    unlink(b);
    unlink(c);
    rmdir(dir);
}
END_TEST

/* ---- loss options: bad input ---------------------------------------------------- */

START_TEST(loss_options_bad_input)
{
    tl_model *m = compiled_adam(3);
    const float good[3] = {1, 2, 3};
    tl_loss_options lo = TL_LOSS_OPTIONS_INIT;
    lo.label_smoothing = 0.25f;
    lo.class_weights = good;
    lo.num_class_weights = 3;
    ck_assert_tl_ok(tl_model_set_loss_options(m, &lo));
#define BAD(field_set, needle)                                                       \
    do {                                                                             \
        tl_loss_options b_ = TL_LOSS_OPTIONS_INIT;                                   \
        b_.class_weights = good;                                                     \
        b_.num_class_weights = 3;                                                    \
        field_set;                                                                   \
        ck_assert_tl_err(tl_model_set_loss_options(m, &b_), TL_EINVAL, needle);      \
    } while (0)
    BAD(b_.label_smoothing = -0.1f, "label_smoothing -0.1");
    BAD(b_.label_smoothing = 1.0f, "label_smoothing 1 is outside [0, 1)");
    BAD(b_.label_smoothing = NAN, "label_smoothing nan");
    const float neg[3] = {1, -0.5f, 1}, nan_w[3] = {1, 1, NAN}, inf_w[3] = {INFINITY, 1, 1}, zeros[3] = {0, 0, 0};
    BAD(b_.class_weights = neg, "class_weights[1] is -0.5");
    BAD(b_.class_weights = nan_w, "class_weights[2] is nan");
    BAD(b_.class_weights = inf_w, "class_weights[0] is inf");
    BAD(b_.class_weights = zeros, "all 0");
    BAD(b_.num_class_weights = 2, "num_class_weights 2 is not the model's 3 outputs");
    BAD(b_.num_class_weights = 4, "num_class_weights 4");
    BAD((b_.class_weights = NULL, b_.num_class_weights = 3), "class_weights is NULL but num_class_weights is 3");
#undef BAD
    /* Nothing changed. */
    tl_loss_options got = TL_LOSS_OPTIONS_INIT;
    ck_assert_tl_ok(tl_model_loss_options(m, &got));
    ck_assert(got.label_smoothing == 0.25f && got.num_class_weights == 3 && got.class_weights[2] == 3.0f);
    lo.version = 7;
    ck_assert_tl_err(tl_model_set_loss_options(m, &lo), TL_EVERSION, "tl_loss_options");
    ck_assert_tl_err(tl_model_set_loss_options(NULL, NULL), TL_EINVAL, "model");
    ck_assert_tl_err(tl_model_loss_options(m, NULL), TL_EINVAL, "out");
    ck_assert_tl_err(tl_model_loss_options(NULL, &got), TL_EINVAL, "model");
    got.version = 0;
    ck_assert_tl_err(tl_model_loss_options(m, &got), TL_EVERSION, "tl_loss_options");
    ck_assert_tl_err(tl_loss_options_init(&got, 2), TL_EVERSION, "tl_loss_options");
    ck_assert_tl_ok(tl_loss_options_init(&got, TL_LOSS_OPTIONS_VERSION));
    ck_assert(got.label_smoothing == 0.0f && got.class_weights == NULL && got.num_class_weights == 0);
    tl_model *empty;
    ck_assert_tl_ok(tl_model_create(&empty, 1, 1, 3, 1));
    ck_assert_tl_err(tl_model_set_loss_options(empty, NULL), TL_ESTATE, "no layers");
    tl_model_free(empty);

    /* MSE takes no options: compile refuses while the model has some, the
     * setter refuses them on an MSE model; clearing is always allowed. */
    ck_assert_tl_err(tl_model_compile(m, NULL, TL_LOSS_MEAN_SQUARED_ERROR), TL_EINVAL, "label_smoothing 0.25");
    ck_assert_int_eq(tl_model_loss(m), TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY);
    ck_assert_tl_ok(tl_model_set_loss_options(m, NULL));
    ck_assert_tl_ok(tl_model_compile(m, NULL, TL_LOSS_MEAN_SQUARED_ERROR));
    ck_assert_tl_err(tl_model_set_loss_options(m, &lo), TL_EVERSION, "version 7");
    lo.version = TL_LOSS_OPTIONS_VERSION;
    ck_assert_tl_err(tl_model_set_loss_options(m, &lo), TL_EINVAL, "mean_squared_error");
    ck_assert_tl_ok(tl_model_set_loss_options(m, NULL));
    /* Compile with a cross-entropy keeps them. */
    ck_assert_tl_ok(tl_model_compile(m, NULL, TL_LOSS_CATEGORICAL_CROSSENTROPY));
    ck_assert_tl_ok(tl_model_set_loss_options(m, &lo));
    tl_optimizer *opt;
    ck_assert_tl_ok(tl_optimizer_create_sgd(&opt, NULL));
    ck_assert_tl_ok(tl_model_compile(m, opt, TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY));
    ck_assert_tl_ok(tl_model_loss_options(m, &got));
    ck_assert(got.label_smoothing == 0.25f && got.num_class_weights == 3);

    /* A new head of another width: the weights no longer fit, and fit,
     * train_step and evaluate say so before any step. */
    ck_assert_tl_ok(tl_model_pop_layers(m, 1));
    tl_dense_options d = TL_DENSE_OPTIONS_INIT;
    d.units = 4;
    ck_assert_tl_ok(tl_model_add_dense(NULL, m, &d));
    ck_assert_tl_ok(tl_model_compile(m, NULL, TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY));
    const float x[3] = {1, 2, 3};
    const int32_t y[1] = {0};
    tl_dataset *ds;
    ck_assert_tl_ok(tl_dataset_create(&ds, x, y, 1, 1, 1, 3, 4, TL_DATA_COPY));
    ck_assert_tl_err(tl_model_evaluate(NULL, NULL, m, ds, 0), TL_EINVAL, "3 class weights but the model now has 4");
    ck_assert_tl_err(tl_model_fit(m, ds, NULL), TL_EINVAL, "3 class weights");
    ck_assert_tl_err(tl_model_train_step(NULL, m, x, y, NULL, 1), TL_EINVAL, "3 class weights");
    tl_metrics *mt;
    ck_assert_tl_err(tl_model_evaluate_metrics(&mt, m, ds, NULL), TL_EINVAL, "3 class weights");
    ck_assert_uint_eq(tl_optimizer_steps(tl_model_optimizer(m)), 0);
    ck_assert_tl_ok(tl_model_set_loss_options(m, NULL));
    ck_assert_tl_ok(tl_model_evaluate(NULL, NULL, m, ds, 0));
    tl_dataset_free(ds);
    tl_model_free(m);
}
END_TEST

START_TEST(allocation_failures)
{
    /* Each allocation of the new calls fails in turn: TL_ENOMEM, nothing
     * handed out or changed; then the call succeeds. */
    tl_model *m = compiled_adam(4);
    tl_dataset *ds = logit_data(&Z7[0][0], L7, 7, 4);
    long n;
    tl_status st;
    for (n = 1;; n++) {
        tl_metrics *mt = (tl_metrics *)&mt;
        tli_alloc_fail_at(n);
        st = tl_model_evaluate_metrics(&mt, m, ds, NULL);
        tli_alloc_fail_at(0);
        if (st == TL_OK) {
            ck_assert(tl_metrics_accuracy(mt) == 2.0 / 7.0);
            tl_metrics_free(mt);
            break;
        }
        ck_assert_msg(st == TL_ENOMEM, "evaluate_metrics, allocation %ld: %s", n, tl_last_error());
        ck_assert_ptr_null(mt);
    }
    ck_assert_int_gt(n, 3);
    const float w[4] = {1, 2, 3, 4};
    tl_loss_options lo = TL_LOSS_OPTIONS_INIT;
    lo.label_smoothing = 0.1f;
    lo.class_weights = w;
    lo.num_class_weights = 4;
    tli_alloc_fail_at(1);
    st = tl_model_set_loss_options(m, &lo);
    tli_alloc_fail_at(0);
    ck_assert_int_eq(st, TL_ENOMEM);
    tl_loss_options got = TL_LOSS_OPTIONS_INIT;
    ck_assert_tl_ok(tl_model_loss_options(m, &got));
    ck_assert(got.label_smoothing == 0.0f && got.class_weights == NULL);
    ck_assert_tl_ok(tl_model_set_loss_options(m, &lo));
    char dir[] = "/tmp/tl_metrics_XXXXXX", path[64];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/m.tlm", dir);
    ck_assert_tl_ok(tl_model_save(m, path, NULL));
    for (n = 1;; n++) {
        tl_model *back = (tl_model *)&back;
        tli_alloc_fail_at(n);
        st = tl_model_load(&back, path);
        tli_alloc_fail_at(0);
        if (st == TL_OK) {
            ck_assert_tl_ok(tl_model_loss_options(back, &got));
            ck_assert(got.label_smoothing == 0.1f && got.class_weights[3] == 4.0f);
            tl_model_free(back);
            break;
        }
        ck_assert_msg(st == TL_ENOMEM, "load, allocation %ld: %s", n, tl_last_error());
        ck_assert_ptr_null(back);
    }
    unlink(path);
    rmdir(dir);
    tl_dataset_free(ds);
    tl_model_free(m);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("metrics");
    TCase *tc = tcase_create("metrics");
    tcase_add_test(tc, metrics_by_hand);
    tcase_add_test(tc, metrics_true_class_from_targets);
    tcase_add_test(tc, metrics_bad_input);
    suite_add_tcase(s, tc);
    tc = tcase_create("loss_options");
    tcase_add_test(tc, loss_options_values);
    tcase_add_test(tc, loss_options_kernel_gradient);
    tcase_add_test(tc, loss_options_training_step);
    tcase_add_test(tc, loss_options_zero_weight_batch);
    tcase_add_test(tc, loss_options_in_fit);
    tcase_add_test(tc, loss_options_saved);
    tcase_add_test(tc, loss_options_bad_input);
    tcase_add_test(tc, allocation_failures);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return th_run(suite());
}
