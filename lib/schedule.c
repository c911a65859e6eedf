/*
 * schedule.c - learning-rate schedules: checking their settings, the rate
 * at a step, and the counters fit advances. include/tl/optim.h gives the
 * formulas; the rates are computed in double precision, and the optimizer
 * rounds each step's rate to float once (optim.c).
 */
#include <math.h>

#include "schedule.h"

#define TLI_PI 3.14159265358979323846

const char *tli_schedule_kind_str(tl_schedule_kind kind)
{
    switch (kind) {
    case TL_SCHEDULE_CONSTANT: return "constant";
    case TL_SCHEDULE_STEP: return "step";
    case TL_SCHEDULE_MULTISTEP: return "multistep";
    case TL_SCHEDULE_EXPONENTIAL: return "exponential";
    case TL_SCHEDULE_COSINE: return "cosine";
    case TL_SCHEDULE_ONE_CYCLE: return "one_cycle";
    case TL_SCHEDULE_REDUCE_ON_PLATEAU: return "reduce_on_plateau";
    }
    return "unknown";
}

const char *tli_schedule_monitor_str(tl_schedule_monitor m)
{
    return m == TL_MONITOR_VAL_ACCURACY ? "val_accuracy" : "val_loss";
}

bool tli_schedule_per_step(tl_schedule_kind kind)
{
    return kind == TL_SCHEDULE_COSINE || kind == TL_SCHEDULE_ONE_CYCLE;
}

static bool finite_pos(float x)
{
    return x > 0.0f && isfinite(x);
}

static bool finite_nonneg(float x)
{
    return x >= 0.0f && isfinite(x);
}

tl_status tli_schedule_check(const tl_schedule_options *o, const char *fn)
{
    const tl_schedule_kind k = o->kind;
    const char *name = tli_schedule_kind_str(k);
    switch (k) {
    case TL_SCHEDULE_CONSTANT:
        return TL_OK;
    case TL_SCHEDULE_STEP:
    case TL_SCHEDULE_MULTISTEP:
    case TL_SCHEDULE_EXPONENTIAL:
        if (!finite_pos(o->gamma))
            return tli_error(TL_EINVAL, "%s: %s schedule: gamma %g must be finite and > 0", fn, name, (double)o->gamma);
        if (k == TL_SCHEDULE_STEP && o->step_size == 0)
            return tli_error(TL_EINVAL, "%s: step schedule: step_size 0 must be > 0 (epochs between decays)", fn);
        if (k == TL_SCHEDULE_MULTISTEP) {
            if (o->num_milestones == 0 || o->num_milestones > TL_SCHEDULE_MAX_MILESTONES)
                return tli_error(TL_EINVAL, "%s: multistep schedule: num_milestones %u must be in 1..%d", fn,
                                 o->num_milestones, TL_SCHEDULE_MAX_MILESTONES);
            for (uint32_t i = 1; i < o->num_milestones; i++)
                if (o->milestones[i] <= o->milestones[i - 1])
                    return tli_error(TL_EINVAL,
                                     "%s: multistep schedule: milestones[%u] %u must be greater than milestones[%u] "
                                     "%u (milestones increase strictly)",
                                     fn, i, o->milestones[i], i - 1, o->milestones[i - 1]);
        }
        return TL_OK;
    case TL_SCHEDULE_COSINE:
        if (o->total_steps && o->warmup_steps > o->total_steps)
            return tli_error(TL_EINVAL, "%s: cosine schedule: warmup_steps %llu must not exceed total_steps %llu", fn,
                             (unsigned long long)o->warmup_steps, (unsigned long long)o->total_steps);
        if (!finite_nonneg(o->warmup_start_factor))
            return tli_error(TL_EINVAL, "%s: cosine schedule: warmup_start_factor %g must be finite and >= 0", fn,
                             (double)o->warmup_start_factor);
        if (!finite_nonneg(o->min_lr))
            return tli_error(TL_EINVAL, "%s: cosine schedule: min_lr %g must be finite and >= 0", fn,
                             (double)o->min_lr);
        return TL_OK;
    case TL_SCHEDULE_ONE_CYCLE:
        if (!(o->pct_start > 0.0f && o->pct_start < 1.0f))
            return tli_error(TL_EINVAL, "%s: one_cycle schedule: pct_start %g must be in (0, 1)", fn,
                             (double)o->pct_start);
        if (!finite_pos(o->div_factor))
            return tli_error(TL_EINVAL, "%s: one_cycle schedule: div_factor %g must be finite and > 0", fn,
                             (double)o->div_factor);
        if (!finite_pos(o->final_div_factor))
            return tli_error(TL_EINVAL, "%s: one_cycle schedule: final_div_factor %g must be finite and > 0", fn,
                             (double)o->final_div_factor);
        return TL_OK;
    case TL_SCHEDULE_REDUCE_ON_PLATEAU:
        if (o->monitor != TL_MONITOR_VAL_LOSS && o->monitor != TL_MONITOR_VAL_ACCURACY)
            return tli_error(TL_EINVAL, "%s: reduce_on_plateau schedule: unknown monitor %d", fn, (int)o->monitor);
        if (!(o->factor > 0.0f && o->factor < 1.0f))
            return tli_error(TL_EINVAL, "%s: reduce_on_plateau schedule: factor %g must be in (0, 1)", fn,
                             (double)o->factor);
        if (!finite_nonneg(o->min_lr))
            return tli_error(TL_EINVAL, "%s: reduce_on_plateau schedule: min_lr %g must be finite and >= 0", fn,
                             (double)o->min_lr);
        if (!finite_nonneg(o->min_delta))
            return tli_error(TL_EINVAL, "%s: reduce_on_plateau schedule: min_delta %g must be finite and >= 0", fn,
                             (double)o->min_delta);
        return TL_OK;
    }
    return tli_error(TL_EINVAL, "%s: unknown schedule kind %d", fn, (int)k);
}

void tli_schedule_restart(tli_schedule *s, uint64_t origin)
{
    s->origin = origin;
    s->total = s->o.total_steps;
    s->epoch = 0;
    s->bad = 0;
    s->cooldown_left = 0;
    s->best = s->o.monitor == TL_MONITOR_VAL_ACCURACY ? -INFINITY : INFINITY;
    s->scale = 1.0;
}

void tli_schedule_set(tli_schedule *s, const tl_schedule_options *o, uint64_t origin)
{
    s->o = *o;
    s->o.version = TL_SCHEDULE_OPTIONS_VERSION;
    tli_schedule_restart(s, origin);
}

/* c(x, y, q) of one-cycle: from x at q = 0 to y at q = 1 along a half cosine. */
static double anneal_cos(double from, double to, double q)
{
    return to + (from - to) / 2.0 * (cos(TLI_PI * q) + 1.0);
}

static double one_cycle(const tl_schedule_options *o, double lr, double t, double T)
{
    const double first = lr / (double)o->div_factor, last = first / (double)o->final_div_factor;
    const double peak = (double)o->pct_start * T - 1.0; /* PyTorch: float(pct_start * total_steps) - 1 */
    if (t <= peak)
        return anneal_cos(first, lr, peak > 0.0 ? t / peak : 1.0);
    if (t >= T - 1.0)
        return last;
    return anneal_cos(lr, last, (t - peak) / (T - 1.0 - peak));
}

double tli_schedule_rate(const tli_schedule *s, float lr_f, uint64_t steps)
{
    const tl_schedule_options *o = &s->o;
    const double lr = lr_f;
    const uint64_t t = steps >= s->origin ? steps - s->origin : 0;
    switch (o->kind) {
    case TL_SCHEDULE_CONSTANT:
        break;
    case TL_SCHEDULE_STEP:
        return lr * pow((double)o->gamma, (double)(s->epoch / o->step_size));
    case TL_SCHEDULE_MULTISTEP: {
        uint32_t k = 0;
        while (k < o->num_milestones && o->milestones[k] <= s->epoch)
            k++;
        return lr * pow((double)o->gamma, (double)k);
    }
    case TL_SCHEDULE_EXPONENTIAL:
        return lr * pow((double)o->gamma, (double)s->epoch);
    case TL_SCHEDULE_COSINE: {
        const uint64_t T = s->total, W = o->warmup_steps;
        const double lo = o->min_lr;
        if (T == 0)
            break;
        if (t < W) {
            const double sf = o->warmup_start_factor;
            return lr * (sf + (1.0 - sf) * (double)t / (double)W);
        }
        if (t >= T)
            return lo;
        return lo + (lr - lo) * (1.0 + cos(TLI_PI * (double)(t - W) / (double)(T - W))) / 2.0;
    }
    case TL_SCHEDULE_ONE_CYCLE:
        if (s->total == 0)
            break;
        return one_cycle(o, lr, (double)t, (double)s->total);
    case TL_SCHEDULE_REDUCE_ON_PLATEAU: {
        const double r = lr * s->scale;
        return r > (double)o->min_lr ? r : (double)o->min_lr;
    }
    }
    return lr;
}

tl_status tli_schedule_fit_check(const tli_schedule *s, uint64_t epochs, uint64_t batches, bool has_validation,
                                 const char *fn)
{
    const tl_schedule_options *o = &s->o;
    if (o->kind == TL_SCHEDULE_REDUCE_ON_PLATEAU && !has_validation)
        return tli_error(TL_EINVAL,
                         "%s: the reduce_on_plateau schedule's monitor %s needs a validation set, and the fit "
                         "options' validation is NULL",
                         fn, tli_schedule_monitor_str(o->monitor));
    if (tli_schedule_per_step(o->kind) && s->total == 0) {
        const uint64_t T = epochs * batches;
        if (o->kind == TL_SCHEDULE_COSINE && o->warmup_steps > T)
            return tli_error(TL_EINVAL,
                             "%s: cosine schedule: warmup_steps %llu exceeds the total_steps %llu this fit sets "
                             "(%llu epochs x %llu batches; total_steps was 0)",
                             fn, (unsigned long long)o->warmup_steps, (unsigned long long)T,
                             (unsigned long long)epochs, (unsigned long long)batches);
    }
    return TL_OK;
}

void tli_schedule_fit_begin(tli_schedule *s, uint64_t epochs, uint64_t batches)
{
    if (tli_schedule_per_step(s->o.kind) && s->total == 0)
        s->total = epochs * batches;
}

void tli_schedule_epoch_end(tli_schedule *s, float lr, double val_loss, double val_accuracy)
{
    const tl_schedule_options *o = &s->o;
    if (!tli_schedule_active(s))
        return;
    if (s->epoch < UINT32_MAX)
        s->epoch++;
    if (o->kind != TL_SCHEDULE_REDUCE_ON_PLATEAU)
        return;
    /* PyTorch's ReduceLROnPlateau (threshold_mode "abs"), step by step. A
     * NaN is never better. */
    const bool max_mode = o->monitor == TL_MONITOR_VAL_ACCURACY;
    const double v = max_mode ? val_accuracy : val_loss, d = o->min_delta;
    const bool better = max_mode ? v > s->best + d : v < s->best - d;
    if (better) {
        s->best = v;
        s->bad = 0;
    } else if (s->bad < UINT32_MAX) {
        s->bad++;
    }
    if (s->cooldown_left > 0) {
        s->cooldown_left--;
        s->bad = 0;
    }
    if (s->bad > o->patience) {
        if ((double)lr * s->scale > (double)o->min_lr)
            s->scale *= (double)o->factor;
        s->cooldown_left = o->cooldown;
        s->bad = 0;
    }
}

tl_status tli_schedule_step_check(const tli_schedule *s, const char *fn)
{
    if (tli_schedule_per_step(s->o.kind) && s->total == 0)
        return tli_error(TL_EINVAL,
                         "%s: %s schedule: total_steps is 0; set it in the schedule's options to train with "
                         "single steps (tl_model_fit() sets it from its epochs and batches)",
                         fn, tli_schedule_kind_str(s->o.kind));
    return TL_OK;
}
