/*
 * history.h - what fit does with a tl_history (history.c) and the early
 * stopping, best weights and checkpoints of fit (recipe state).
 */
#ifndef TLI_HISTORY_H
#define TLI_HISTORY_H

#include "core.h"

/* Make room for `more` rows, so that appending them cannot fail. */
tl_status tli_history_reserve(tl_history *h, size_t more);

/* Append a row of TL_HISTORY_KEYS values (room reserved before). */
void tli_history_append(tl_history *h, const double *row);

/* The recipe state of one fit call: early stopping, the best weights,
 * checkpoints. Everything is allocated by tli_recipe_begin. */
typedef struct tli_recipe {
    const tl_fit_options *o;
    tl_early_stopping_options es; /* a current-size copy (read through the version) */
    bool early;                   /* early stopping on */
    double best;                  /* best monitored value so far (NaN: none yet) */
    uint32_t wait;                /* epochs in a row without improvement */
    uint32_t best_epoch;          /* 1-based, 0: none */
    float *best_copy;             /* restore_best: every tensor at the best epoch */
    size_t best_count;
    char *path;                   /* checkpoint path with {epoch} replaced */
    size_t path_cap;
} tli_recipe;

/* Check every recipe option of o (before any step); TL_EINVAL naming it. */
tl_status tli_recipe_check(const tl_fit_options *o, const tl_dataset *train, const char *fn);

/* Allocate what the recipe needs for this fit (the best copy, the path,
 * history rows). On error nothing is left allocated. */
tl_status tli_recipe_begin(tli_recipe *r, tl_model *m, const tl_fit_options *o, const char *fn);

/* After epoch e (0-based) and its validation, before the epoch callback:
 * improvement, best copy, history row, checkpoints. *stop is set when
 * early stopping ends the fit after this epoch. */
tl_status tli_recipe_epoch_end(tli_recipe *r, tl_model *m, uint32_t e, const tl_progress *p, bool *stop,
                               const char *fn);

/* At the end of fit with status st: restore the best weights (TL_OK only),
 * free everything. */
void tli_recipe_end(tli_recipe *r, tl_model *m, tl_status st);

#endif /* TLI_HISTORY_H */
