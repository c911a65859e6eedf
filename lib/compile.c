/*
 * compile.c - a model's loss and optimizer, and the optimizer applied to
 * the model's tensors. State (moments, velocities) lives beside each
 * parameter and is allocated by tli_train_prepare() before the first step
 * that needs it, only for parameter tensors of layers that learn: a frozen
 * layer and a state tensor (moving statistics) never get optimizer state,
 * gradient or update. And the changes of a model that make its optimizer
 * state meaningless: removing layers, re-drawing the weights.
 */
#include <string.h>

#include "train.h"

bool tli_loss_takes_logits(const tl_model *m)
{
    return m->loss == TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY || m->loss == TL_LOSS_CATEGORICAL_CROSSENTROPY;
}

tl_status tli_check_loss(const tl_model *m, tl_loss loss, const char *fn)
{
    if (loss != TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY && loss != TL_LOSS_CATEGORICAL_CROSSENTROPY &&
        loss != TL_LOSS_MEAN_SQUARED_ERROR)
        return tli_error(TL_EINVAL, "%s: unknown loss %d", fn, (int)loss);
    if (m->nlayers == 0)
        return tli_error(TL_ESTATE, "%s: the model has no layers", fn);
    const tl_layer *last = m->layers[m->nlayers - 1];
    if (loss != TL_LOSS_MEAN_SQUARED_ERROR && last->act != TL_ACT_SOFTMAX && last->act != TL_ACT_LINEAR)
        return tli_error(TL_EINVAL,
                         "%s: %s needs the last layer ('%s') to end in softmax or linear (logits), not %s", fn,
                         tl_loss_str(loss), last->name, tl_activation_str(last->act));
    if (loss == TL_LOSS_MEAN_SQUARED_ERROR && !tli_loss_options_default(m))
        return tli_error(TL_EINVAL,
                         "%s: %s takes no loss options, but the model has label_smoothing %g and %zu class weights; "
                         "clear them with tl_model_set_loss_options(model, NULL) first",
                         fn, tl_loss_str(loss), (double)m->label_smoothing, m->nclass_weights);
    return TL_OK;
}

tl_status tl_model_compile(tl_model *m, tl_optimizer *opt, tl_loss loss)
{
    const char *fn = "tl_model_compile";
    if (m == NULL) {
        tl_optimizer_free(opt);
        return tli_error(TL_EINVAL, "%s: model is NULL", fn);
    }
    if (opt == NULL) {
        /* The loss alone: enough to evaluate; an optimizer is kept. */
        tl_status st = tli_check_loss(m, loss, fn);
        if (st == TL_OK)
            m->loss = loss;
        return st;
    }
    if (opt->owned && opt != m->opt)
        return tli_error(TL_EINVAL, "%s: the optimizer already belongs to another model", fn);
    tl_status st = tli_check_loss(m, loss, fn);
    if (st) {
        if (opt != m->opt)
            tl_optimizer_free(opt);
        return st;
    }
    if (opt != m->opt) {
        if (m->opt) {
            m->opt->owned = false;
            tl_optimizer_free(m->opt);
        }
        m->opt = opt;
        opt->owned = true;
        /* A new optimizer starts a new run: an interrupted fit's early
         * stopping is not continued. */
        tli_early_clear(&m->early);
    }
    m->loss = loss;
    return tl_model_reset_optimizer(m);
}

tl_optimizer *tl_model_optimizer(const tl_model *m)
{
    return m ? m->opt : NULL;
}

tl_loss tl_model_loss(const tl_model *m)
{
    return m ? m->loss : (tl_loss)0;
}

size_t tl_model_optimizer_state_bytes(const tl_model *m)
{
    size_t bytes = 0;
    if (m)
        for (size_t i = 0; i < m->nlayers; i++)
            for (size_t p = 0; p < m->layers[i]->nparams; p++)
                for (int k = 0; k < 2; k++)
                    if (m->layers[i]->params[p].state[k])
                        bytes += m->layers[i]->params[p].count * sizeof(float);
    return bytes;
}

tl_status tl_model_reset_optimizer(tl_model *m)
{
    if (m == NULL)
        return tli_error(TL_EINVAL, "tl_model_reset_optimizer: model is NULL");
    for (size_t i = 0; i < m->nlayers; i++)
        tli_layer_free_state(m->layers[i]);
    if (m->opt) {
        m->opt->steps = 0;
        tli_optim_restart_schedule(m->opt);
    }
    return TL_OK;
}

tl_status tl_model_pop_layers(tl_model *m, size_t count)
{
    const char *fn = "tl_model_pop_layers";
    if (m == NULL)
        return tli_error(TL_EINVAL, "%s: model is NULL", fn);
    tl_status st = tli_model_pop(m, count, fn);
    return st ? st : tl_model_reset_optimizer(m);
}

tl_status tl_model_init_params(tl_model *m, uint64_t seed)
{
    if (m == NULL)
        return tli_error(TL_EINVAL, "tl_model_init_params: model is NULL");
    tli_model_redraw(m, seed);
    return tl_model_reset_optimizer(m);
}

/* ---- the optimizer over the model's tensors ---------------------------- */

tl_status tli_train_prepare(tl_model *m)
{
    size_t slots = tli_optim_slots(m->opt);
    for (size_t i = 0; i < m->nlayers; i++) {
        tl_layer *l = m->layers[i];
        if (!tli_layer_learns(l))
            continue;
        for (size_t p = 0; p < l->nparams; p++) {
            tli_param *pr = &l->params[p];
            if (pr->role != TLI_ROLE_PARAM)
                continue;
            for (size_t k = 0; k < slots; k++) {
                if (pr->state[k])
                    continue;
                pr->state[k] = tli_malloc_aligned(pr->count * sizeof(float));
                if (pr->state[k] == NULL)
                    return tli_error(TL_ENOMEM, "out of memory allocating optimizer state for layer '%s' %s",
                                     l->name, pr->name);
                memset(pr->state[k], 0, pr->count * sizeof(float));
            }
        }
    }
    return TL_OK;
}

void tli_train_update(tl_model *m)
{
    /* The schedule's rate once per step, times each layer's scale. */
    const float lr = tli_optim_begin_step(m->opt);
    for (size_t i = 0; i < m->nlayers; i++) {
        tl_layer *l = m->layers[i];
        if (!tli_layer_learns(l))
            continue;
        tli_layer_touch(l);
        for (size_t p = 0; p < l->nparams; p++) {
            tli_param *pr = &l->params[p];
            if (pr->role == TLI_ROLE_PARAM)
                tli_optim_update(m->opt, lr * l->lr_scale, pr->value, pr->grad, pr->state[0], pr->state[1],
                                 pr->count);
        }
    }
}
