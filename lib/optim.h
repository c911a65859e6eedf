/*
 * optim.h - the optimizer: its handle, and the update as a function over
 * arrays (parameters, gradients, state, learning-rate scale). It knows
 * nothing of models; train.c walks the model's tensors and calls it.
 */
#ifndef TLI_OPTIM_H
#define TLI_OPTIM_H

#include "core.h"
#include "schedule.h"

struct tl_optimizer {
    tl_optimizer_kind kind;
    float lr;
    float beta1, beta2, eps; /* Adam */
    float momentum;          /* SGD */
    int nesterov;
    float weight_decay;
    uint64_t steps;
    bool owned;              /* taken by a model: tl_optimizer_free() refuses it */
    tli_schedule sched;      /* the learning-rate schedule; kind CONSTANT: none */
};

/* State arrays (0, 1 or 2) the update of `o` uses per tensor. */
size_t tli_optim_slots(const tl_optimizer *o);

/* State slots a saved optimizer of `kind` may have (1 for SGD, 2 for Adam). */
static inline uint32_t tli_optim_kind_slots(tl_optimizer_kind kind)
{
    return kind == TL_OPT_SGD ? 1u : 2u;
}

/* The rate the next step uses: the base rate through the schedule, rounded
 * to float once (the base rate itself, bit for bit, without a schedule). */
float tli_optim_rate(const tl_optimizer *o);

/* Count one step (before the updates of that step: Adam's bias correction
 * uses it) and return its rate (tli_optim_rate() before the count). */
float tli_optim_begin_step(tl_optimizer *o);

/* Copy schedule settings `cur` into the caller's `out` as far as
 * out->version reaches (TL_EINVAL / TL_EVERSION naming fn otherwise). */
tl_status tli_schedule_options_get(tl_schedule_options *out, const tl_schedule_options *cur, const char *fn);

/* Start the schedule again (its counters 0) at the current step count:
 * with the step count reset, and by tl_model_reset_optimizer(). */
void tli_optim_restart_schedule(tl_optimizer *o);

/* One update of the n values at w from gradient g, with state s0, s1 (as
 * many as tli_optim_slots() says; zero-filled before the first step), at
 * learning rate `lr`: the step's rate (tli_optim_begin_step()) times the
 * layer's lr scale. */
void tli_optim_update(const tl_optimizer *o, float lr, float *w, const float *g, float *s0, float *s1, size_t n);

#endif /* TLI_OPTIM_H */
