/*
 * schedule.h - learning-rate schedules (include/tl/optim.h documents the
 * kinds and their formulas): the settings and the counters an optimizer
 * keeps, the rate at a step, and what fit does at its start and at the end
 * of each epoch. Knows nothing of models.
 */
#ifndef TLI_SCHEDULE_H
#define TLI_SCHEDULE_H

#include "core.h"

typedef struct tli_schedule {
    tl_schedule_options o; /* checked settings; kind CONSTANT: no schedule */
    /* The counters (saved in checkpoints, section SCHD). */
    uint64_t origin;       /* the optimizer's step count when the schedule started */
    uint64_t total;        /* T in effect: o.total_steps, or what fit set (0: not yet) */
    uint32_t epoch;        /* fit epochs completed since the start */
    uint32_t bad;          /* REDUCE_ON_PLATEAU: bad epochs in a row (<= patience) */
    uint32_t cooldown_left;
    double best;           /* best monitored value; +-inf before the first epoch */
    double scale;          /* f: the product of the reductions, in (0, 1] */
} tli_schedule;

/* Whether a schedule is set (kind other than CONSTANT). */
static inline bool tli_schedule_active(const tli_schedule *s)
{
    return s->o.kind != TL_SCHEDULE_CONSTANT;
}

/* Whether the kind changes the rate at every step (COSINE, ONE_CYCLE). */
bool tli_schedule_per_step(tl_schedule_kind kind);

/* Check settings (`fn`: the public function for messages, "option" wording
 * in every message). TL_OK or TL_EINVAL. */
tl_status tli_schedule_check(const tl_schedule_options *o, const char *fn);

/* Install checked settings and start the counters, the step counter at
 * `origin` (the optimizer's step count now). */
void tli_schedule_set(tli_schedule *s, const tl_schedule_options *o, uint64_t origin);

/* Start again: counters 0, T back to the settings' value. */
void tli_schedule_restart(tli_schedule *s, uint64_t origin);

/* The rate of the update made when the optimizer has taken `steps` steps,
 * from base rate `lr`, in double precision. */
double tli_schedule_rate(const tli_schedule *s, float lr, uint64_t steps);

/* fit's checks before its first step: `epochs` x `batches` is the T it
 * would set, `has_validation` whether it has a validation set. TL_EINVAL
 * with a message. Changes nothing. */
tl_status tli_schedule_fit_check(const tli_schedule *s, uint64_t epochs, uint64_t batches, bool has_validation,
                                 const char *fn);

/* tl_model_train_step()'s check before its step: a per-step kind needs T.
 * TL_EINVAL with a message. */
tl_status tli_schedule_step_check(const tli_schedule *s, const char *fn);

/* fit's start: set T when the settings leave it to fit. */
void tli_schedule_fit_begin(tli_schedule *s, uint64_t epochs, uint64_t batches);

/* The end of a fit epoch: the epoch counter, and REDUCE_ON_PLATEAU's
 * update from the validation figures. `lr` is the base rate. */
void tli_schedule_epoch_end(tli_schedule *s, float lr, double val_loss, double val_accuracy);

/* Kind and monitor names for messages ("cosine", "val_loss"). */
const char *tli_schedule_kind_str(tl_schedule_kind kind);
const char *tli_schedule_monitor_str(tl_schedule_monitor m);

#endif /* TLI_SCHEDULE_H */
