/*
 * methods.h - the four ways to learn a new task that the examples compare.
 * Each is one short function in methods.c; transfer_demo runs all four,
 * cifar100_transfer, feature_extractor and structure_clone one or two each.
 *
 *   scratch            the document's CNN (or the --arch network) with fresh weights
 *   param_transfer     theta_new = theta_old + alpha * delta_theta: copy the
 *                      source's conv layers (a zoo network: every layer but
 *                      the head, by name), then fine-tune everything
 *   feature_extractor  X_new = T(X_old): the source without its head (a zoo
 *                      network: cut at "avgpool"), frozen, run once over the
 *                      data; only a new head is trained
 *   structure_clone    M_new = M_old: the source's architecture with fresh
 *                      weights and a head resized for the new task
 */
#ifndef TL_EXAMPLES_METHODS_H
#define TL_EXAMPLES_METHODS_H

#include "common.h"

/* The task to learn. */
typedef struct ex_task {
    const tl_dataset *train; /* its training examples (few, for a transfer demo) */
    const tl_dataset *test;  /* its test examples */
    uint32_t classes;        /* its number of classes */
} ex_task;

/* Each function trains a model for `task` with opt's epochs, batch, lr,
 * seed and threads, evaluates it on task->test into `r`, and returns the
 * trained model (the caller frees it). `source` is the trained model to
 * reuse; it is only read. r->seconds counts everything the method does
 * before it can predict (for the feature extractor, computing the
 * features too), not the final evaluation. */
tl_model *ex_scratch(ex_result *r, const ex_task *task, const ex_options *opt);
tl_model *ex_param_transfer(ex_result *r, const ex_task *task, const tl_model *source, const ex_options *opt);
tl_model *ex_feature_extractor(ex_result *r, const ex_task *task, const tl_model *source, const ex_options *opt);
tl_model *ex_structure_clone(ex_result *r, const ex_task *task, const tl_model *source, const ex_options *opt);

#endif
