/*
 * metrics.c - tl_model_evaluate_metrics(): top-k accuracy, per-class
 * accuracy and the confusion matrix, counted batch by batch inside
 * tl_model_evaluate()'s own loop (train.c calls tli_metrics_add from
 * run_batch), so the loss and accuracy are that function's exactly.
 */
#include <math.h>
#include <string.h>

#include "options.h"
#include "train_exchange.h"

TLI_OPTIONS_TYPE_V2(evaluate_type, tl_evaluate_options, TL_EVALUATE_OPTIONS, exchange);

/* The default k, when the model has at least that many outputs. */
#define DEFAULT_TOP_K 5u

struct tl_metrics {
    size_t n;          /* examples counted */
    size_t classes;    /* K, the model's outputs */
    uint32_t k;
    uint64_t top_k;    /* examples whose true class ranks below k */
    double loss, accuracy;
    uint64_t *count;   /* K: examples per true class */
    uint64_t *correct; /* K: of those, predicted right (rank 0) */
    uint64_t *confusion; /* K x K, or NULL */
};

tl_status tl_evaluate_options_init(tl_evaluate_options *opts, unsigned int version)
{
    const tl_evaluate_options d = TL_EVALUATE_OPTIONS_INIT;
    return tli_options_init(opts, version, &d, &evaluate_type, "tl_evaluate_options_init");
}

/* Example r's true class: its label, or the arg-max of its targets row. The
 * loss kernel has checked the labels' range. */
static size_t truth_of(size_t r, size_t width, const int32_t *labels, const float *targets)
{
    return labels ? (size_t)labels[r] : tli_argmax(targets + r * width, width);
}

size_t tli_top_k_hits(const float *y, size_t n, size_t width, const int32_t *labels, const float *targets,
                      uint32_t k)
{
    size_t hits = 0;
    for (size_t r = 0; r < n; r++)
        hits += tli_rank(y + r * width, width, truth_of(r, width, labels, targets)) < k;
    return hits;
}

uint32_t tli_fit_top_k(uint32_t requested, size_t outputs)
{
    if (requested)
        return requested;
    return outputs > DEFAULT_TOP_K ? DEFAULT_TOP_K : 0;
}

void tli_metrics_add(tl_metrics *mt, const float *y, size_t n, size_t width, const int32_t *labels,
                     const float *targets)
{
    for (size_t r = 0; r < n; r++) {
        const float *yr = y + r * width;
        const size_t truth = truth_of(r, width, labels, targets);
        const size_t rank = tli_rank(yr, width, truth);
        mt->count[truth]++;
        if (rank == 0)
            mt->correct[truth]++;
        if (rank < mt->k)
            mt->top_k++;
        if (mt->confusion)
            mt->confusion[truth * width + (rank == 0 ? truth : tli_argmax(yr, width))]++;
    }
    mt->n += n;
}

/* The counts as doubles (exact below 2^53): examples, top-k hits, then per
 * class the examples and the hits, then the confusion matrix when counted
 * (every process of a run counts it or none: the options are the same). */
size_t tli_metrics_nsums(const tl_metrics *mt)
{
    return 2 + 2 * mt->classes + (mt->confusion ? mt->classes * mt->classes : 0);
}

void tli_metrics_to_sums(const tl_metrics *mt, double *out)
{
    const size_t k = mt->classes;
    out[0] = (double)mt->n;
    out[1] = (double)mt->top_k;
    for (size_t i = 0; i < k; i++) {
        out[2 + i] = (double)mt->count[i];
        out[2 + k + i] = (double)mt->correct[i];
    }
    if (mt->confusion)
        for (size_t i = 0; i < k * k; i++)
            out[2 + 2 * k + i] = (double)mt->confusion[i];
}

void tli_metrics_from_sums(tl_metrics *mt, const double *in)
{
    const size_t k = mt->classes;
    mt->n = (size_t)in[0];
    mt->top_k = (uint64_t)in[1];
    for (size_t i = 0; i < k; i++) {
        mt->count[i] = (uint64_t)in[2 + i];
        mt->correct[i] = (uint64_t)in[2 + k + i];
    }
    if (mt->confusion)
        for (size_t i = 0; i < k * k; i++)
            mt->confusion[i] = (uint64_t)in[2 + 2 * k + i];
}

void tl_metrics_free(tl_metrics *mt)
{
    if (mt == NULL)
        return;
    tli_free(mt->count);
    tli_free(mt->correct);
    tli_free(mt->confusion);
    tli_free(mt);
}

tl_status tli_metrics_create(tl_metrics **out, size_t classes, uint32_t k, bool confusion, const char *fn)
{
    *out = NULL;
    tl_metrics *mt = tli_calloc(1, sizeof *mt);
    if (mt == NULL)
        return tli_error(TL_ENOMEM, "%s: out of memory", fn);
    mt->classes = classes;
    mt->k = k;
    mt->count = tli_calloc(classes, sizeof *mt->count);
    mt->correct = tli_calloc(classes, sizeof *mt->correct);
    bool ok = mt->count && mt->correct;
    if (ok && confusion) {
        ok = classes <= SIZE_MAX / sizeof *mt->confusion / classes;
        mt->confusion = ok ? tli_calloc(classes * classes, sizeof *mt->confusion) : NULL;
        ok = mt->confusion != NULL;
    }
    if (!ok) {
        tl_metrics_free(mt);
        return tli_error(TL_ENOMEM, "%s: out of memory for the metrics of %zu classes%s", fn, classes,
                         confusion ? " (the confusion matrix needs 8 K^2 bytes; it can be left out)" : "");
    }
    *out = mt;
    return TL_OK;
}

void tli_metrics_reset(tl_metrics *mt)
{
    mt->n = 0;
    mt->top_k = 0;
    mt->loss = mt->accuracy = 0.0;
    memset(mt->count, 0, mt->classes * sizeof *mt->count);
    memset(mt->correct, 0, mt->classes * sizeof *mt->correct);
    if (mt->confusion)
        memset(mt->confusion, 0, mt->classes * mt->classes * sizeof *mt->confusion);
}

tl_status tl_model_evaluate_metrics(tl_metrics **out, tl_model *m, const tl_dataset *data,
                                    const tl_evaluate_options *opts)
{
    const char *fn = "tl_model_evaluate_metrics";
    if (out)
        *out = NULL;
    if (out == NULL || m == NULL || data == NULL)
        return tli_error(TL_EINVAL, "%s: %s is NULL", fn, out == NULL ? "out" : m == NULL ? "model" : "data");
    tl_evaluate_options o = TL_EVALUATE_OPTIONS_INIT;
    tl_status st = tli_options_read(&o, opts, &evaluate_type, fn);
    if (st)
        return st;
    tli_xchg x;
    if ((st = tli_xchg_begin(&x, m, o.exchange, o.exchange_payload, o.shard_rank, o.shard_count, false, fn)))
        return tli_xchg_sums(&x, st, NULL, 0);
    /* Before the evaluation: a failure here is still exchanged, so that no
     * process waits for this one. */
    if (m->nlayers == 0)
        return tli_xchg_sums(&x, tli_error(TL_ESTATE, "%s: the model has no layers", fn), NULL, 0);
    const size_t classes = tli_model_out_size(m);
    if (o.top_k > classes)
        return tli_xchg_sums(&x, tli_error(TL_EINVAL, "%s: top_k %u is larger than the model's %zu outputs (classes)",
                                           fn, o.top_k, classes), NULL, 0);
    tl_metrics *mt;
    const uint32_t k = o.top_k ? o.top_k : (classes < DEFAULT_TOP_K ? (uint32_t)classes : DEFAULT_TOP_K);
    if ((st = tli_metrics_create(&mt, classes, k, o.confusion_matrix != 0, fn)))
        return tli_xchg_sums(&x, st, NULL, 0);
    if ((st = tli_model_evaluate_x(&mt->loss, &mt->accuracy, m, data, o.batch_size, mt, &x, fn))) {
        tl_metrics_free(mt);
        return st;
    }
    *out = mt;
    return TL_OK;
}

size_t tl_metrics_num_examples(const tl_metrics *mt)
{
    return mt ? mt->n : 0;
}

size_t tl_metrics_num_classes(const tl_metrics *mt)
{
    return mt ? mt->classes : 0;
}

double tl_metrics_loss(const tl_metrics *mt)
{
    return mt ? mt->loss : NAN;
}

double tl_metrics_accuracy(const tl_metrics *mt)
{
    return mt ? mt->accuracy : NAN;
}

uint32_t tl_metrics_top_k(const tl_metrics *mt)
{
    return mt ? mt->k : 0;
}

double tl_metrics_top_k_accuracy(const tl_metrics *mt)
{
    return mt ? (double)mt->top_k / (double)mt->n : NAN;
}

uint64_t tl_metrics_class_count(const tl_metrics *mt, size_t cls)
{
    return mt && cls < mt->classes ? mt->count[cls] : 0;
}

double tl_metrics_class_accuracy(const tl_metrics *mt, size_t cls)
{
    if (mt == NULL || cls >= mt->classes || mt->count[cls] == 0)
        return NAN;
    return (double)mt->correct[cls] / (double)mt->count[cls];
}

int tl_metrics_has_confusion(const tl_metrics *mt)
{
    return mt && mt->confusion ? 1 : 0;
}

uint64_t tl_metrics_confusion(const tl_metrics *mt, size_t true_cls, size_t predicted)
{
    if (mt == NULL || mt->confusion == NULL || true_cls >= mt->classes || predicted >= mt->classes)
        return 0;
    return mt->confusion[true_cls * mt->classes + predicted];
}

tl_status tl_metrics_confusion_copy(const tl_metrics *mt, uint64_t *out, size_t count)
{
    const char *fn = "tl_metrics_confusion_copy";
    if (mt == NULL || out == NULL)
        return tli_error(TL_EINVAL, "%s: %s is NULL", fn, mt ? "out" : "metrics");
    if (mt->confusion == NULL)
        return tli_error(TL_ESTATE, "%s: the confusion matrix was not counted (tl_evaluate_options.confusion_matrix "
                         "was 0)", fn);
    const size_t need = mt->classes * mt->classes;
    if (count < need)
        return tli_error(TL_EINVAL, "%s: count %zu is smaller than the %zu x %zu = %zu values of the matrix", fn, count,
                         mt->classes, mt->classes, need);
    memcpy(out, mt->confusion, need * sizeof *out);
    return TL_OK;
}
