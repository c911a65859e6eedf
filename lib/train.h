/*
 * train.h - what training adds to a model: the compiled loss and
 * optimizer, and the optimizer applied to the model's parameters
 * (compile.c). Used by train.c and io (which saves and restores them).
 */
#ifndef TLI_TRAIN_H
#define TLI_TRAIN_H

#include "engine.h"
#include "optim.h"

/* The loss takes the logits of the last layer (fused softmax-cross-entropy). */
bool tli_loss_takes_logits(const tl_model *m);

/* Check that the compiled loss fits the last layer; message on error. */
tl_status tli_check_loss(const tl_model *m, tl_loss loss, const char *fn);

/* Allocate the optimizer state of every parameter that learns. */
tl_status tli_train_prepare(tl_model *m);

/* One optimizer step over every parameter that learns (after backward). */
void tli_train_update(tl_model *m);

#endif /* TLI_TRAIN_H */
