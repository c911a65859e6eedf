/*
 * loss_options.c - the options of the cross-entropy losses: label smoothing
 * and class weights (tl_loss_options, include/tl/optim.h). The model keeps
 * its own copy of the weights; train.c hands both to the loss kernel
 * (tli_softmax_xent_ex); checkpoints store them in a LOSS section.
 */
#include <math.h>
#include <string.h>

#include "options.h"
#include "train.h"

TLI_OPTIONS_TYPE_V1(loss_options_type, tl_loss_options, TL_LOSS_OPTIONS);

tl_status tl_loss_options_init(tl_loss_options *opts, unsigned int version)
{
    const tl_loss_options d = TL_LOSS_OPTIONS_INIT;
    return tli_options_init(opts, version, &d, &loss_options_type, "tl_loss_options_init");
}

bool tli_loss_options_default(const tl_model *m)
{
    return m->label_smoothing == 0.0f && m->class_weights == NULL;
}

tl_status tli_loss_options_check(tl_loss loss, float smoothing, const float *weights, size_t nweights,
                                 size_t outputs, const char *fn)
{
    if (loss == TL_LOSS_MEAN_SQUARED_ERROR && !(smoothing == 0.0f && weights == NULL && nweights == 0))
        return tli_error(TL_EINVAL, "%s: loss options apply to the cross-entropy losses, but the model's loss is %s",
                         fn, tl_loss_str(loss));
    if (!(smoothing >= 0.0f && smoothing < 1.0f))
        return tli_error(TL_EINVAL, "%s: label_smoothing %g is outside [0, 1)", fn, (double)smoothing);
    if (weights == NULL) {
        if (nweights != 0)
            return tli_error(TL_EINVAL, "%s: class_weights is NULL but num_class_weights is %zu (0 without weights)",
                             fn, nweights);
        return TL_OK;
    }
    if (nweights != outputs)
        return tli_error(TL_EINVAL, "%s: num_class_weights %zu is not the model's %zu outputs (one weight per class)",
                         fn, nweights, outputs);
    bool any = false;
    for (size_t c = 0; c < nweights; c++) {
        if (!(weights[c] >= 0.0f) || isinf(weights[c]))
            return tli_error(TL_EINVAL, "%s: class_weights[%zu] is %g; a class weight must be finite and >= 0", fn, c,
                             (double)weights[c]);
        any = any || weights[c] > 0.0f;
    }
    if (!any)
        return tli_error(TL_EINVAL, "%s: class_weights are all 0 (%zu classes); at least one class must count", fn,
                         nweights);
    return TL_OK;
}

tl_status tli_loss_options_set(tl_model *m, float smoothing, const float *weights, size_t nweights, const char *fn)
{
    float *copy = NULL;
    if (weights) {
        copy = tli_malloc(nweights * sizeof *copy);
        if (copy == NULL)
            return tli_error(TL_ENOMEM, "%s: out of memory for %zu class weights", fn, nweights);
        memcpy(copy, weights, nweights * sizeof *copy);
    }
    tli_free(m->class_weights);
    m->class_weights = copy;
    m->nclass_weights = weights ? nweights : 0;
    m->label_smoothing = smoothing;
    return TL_OK;
}

tl_status tli_check_loss_options(const tl_model *m, const char *fn)
{
    const size_t width = tli_model_out_size(m);
    if (m->class_weights && m->nclass_weights != width)
        return tli_error(TL_EINVAL, "%s: the loss has %zu class weights but the model now has %zu outputs; set them "
                         "again with tl_model_set_loss_options()", fn, m->nclass_weights, width);
    return TL_OK;
}

tl_status tl_model_set_loss_options(tl_model *m, const tl_loss_options *opts)
{
    const char *fn = "tl_model_set_loss_options";
    if (m == NULL)
        return tli_error(TL_EINVAL, "%s: model is NULL", fn);
    tl_loss_options o = TL_LOSS_OPTIONS_INIT;
    tl_status st = tli_options_read(&o, opts, &loss_options_type, fn);
    if (st)
        return st;
    if (m->nlayers == 0)
        return tli_error(TL_ESTATE, "%s: the model has no layers", fn);
    /* A model never compiled is evaluated with sparse cross-entropy. */
    const tl_loss loss = m->loss ? m->loss : TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY;
    if ((st = tli_loss_options_check(loss, o.label_smoothing, o.class_weights, o.num_class_weights,
                                     tli_model_out_size(m), fn)))
        return st;
    return tli_loss_options_set(m, o.label_smoothing, o.class_weights, o.num_class_weights, fn);
}

tl_status tl_model_loss_options(const tl_model *m, tl_loss_options *out)
{
    const char *fn = "tl_model_loss_options";
    if (m == NULL || out == NULL)
        return tli_error(TL_EINVAL, "%s: %s is NULL", fn, m ? "out" : "model");
    return tli_loss_options_get(out, m->label_smoothing, m->class_weights, m->nclass_weights, fn);
}

tl_status tli_loss_options_get(tl_loss_options *out, float smoothing, const float *weights, size_t nweights,
                               const char *fn)
{
    if (out == NULL)
        return tli_error(TL_EINVAL, "%s: out is NULL", fn);
    tl_loss_options cur = TL_LOSS_OPTIONS_INIT;
    cur.label_smoothing = smoothing;
    cur.class_weights = weights;
    cur.num_class_weights = nweights;
    return tli_options_init(out, out->version, &cur, &loss_options_type, fn);
}
