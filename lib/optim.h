/*
 * optim.h - the optimizer: its handle, and the update as a function over
 * arrays (parameters, gradients, state, learning-rate scale). It knows
 * nothing of models; train.c walks the model's tensors and calls it.
 */
#ifndef TLI_OPTIM_H
#define TLI_OPTIM_H

#include "core.h"

struct tl_optimizer {
    tl_optimizer_kind kind;
    float lr;
    float beta1, beta2, eps; /* Adam */
    float momentum;          /* SGD */
    int nesterov;
    float weight_decay;
    uint64_t steps;
    bool owned;              /* taken by a model: tl_optimizer_free() refuses it */
};

/* State arrays (0, 1 or 2) the update of `o` uses per tensor. */
size_t tli_optim_slots(const tl_optimizer *o);

/* State slots a saved optimizer of `kind` may have (1 for SGD, 2 for Adam). */
static inline uint32_t tli_optim_kind_slots(tl_optimizer_kind kind)
{
    return kind == TL_OPT_SGD ? 1u : 2u;
}

/* Count one step (before the updates of that step: Adam's bias correction
 * uses it). */
void tli_optim_begin_step(tl_optimizer *o);

/* One update of the n values at w from gradient g, with state s0, s1 (as
 * many as tli_optim_slots() says; zero-filled before the first step), at
 * the learning rate times `lr_scale`. */
void tli_optim_update(const tl_optimizer *o, float lr_scale, float *w, const float *g, float *s0, float *s1,
                      size_t n);

#endif /* TLI_OPTIM_H */
