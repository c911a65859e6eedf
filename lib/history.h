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
    bool early;                   /* early stopping on; its state is the model's (m->early) */
    char *path;                   /* checkpoint path with {epoch} replaced */
    size_t path_cap;
} tli_recipe;

/* Check every recipe option of o (before any step); TL_EINVAL naming it. */
tl_status tli_recipe_check(const tl_fit_options *o, const tl_dataset *train, const char *fn);

/* Allocate what the recipe needs for this fit (the path, history rows,
 * the best copy) and start early stopping, or continue the model's
 * pending state (see tl_early_stopping_options). On error nothing is left
 * allocated and the model's state is unchanged. */
tl_status tli_recipe_begin(tli_recipe *r, tl_model *m, const tl_fit_options *o, const char *fn);

/* After epoch e (0-based) and its validation, before the epoch callback:
 * improvement, best copy, history row, checkpoints. *stop is set when
 * early stopping ends the fit after this epoch. */
tl_status tli_recipe_epoch_end(tli_recipe *r, tl_model *m, uint32_t e, const tl_progress *p, bool *stop,
                               const char *fn);

/* At the end of fit with status st: with TL_OK, restore the best weights
 * and forget the early-stopping state; otherwise keep it pending in the
 * model (a later fit may continue it). Frees the recipe's own memory. */
void tli_recipe_end(tli_recipe *r, tl_model *m, tl_status st);

#endif /* TLI_HISTORY_H */
