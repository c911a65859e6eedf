/*
 * plot.h - training curves as a small self-contained SVG: the training and
 * validation loss, the training and validation accuracy, and the learning
 * rate, one panel each, with axes, ticks, labels and a legend. Plain stdio,
 * no plotting library. Used by every training example's --plot FILE.svg.
 */
#ifndef TL_EXAMPLES_PLOT_H
#define TL_EXAMPLES_PLOT_H

#include <stddef.h>

#include <tl/tl.h>

/* One training run: its name in the legend and its history (one row per
 * epoch, as tl_model_fit() appends them). */
typedef struct ex_plot_run {
    const char *label;
    const tl_history *history;
} ex_plot_run;

/* Write `n` runs as an SVG file at `path` under the heading `title`.
 * One run: train in blue, validation in orange, the learning rate in
 * green. Several runs: a colour per run, validation dashed. A NaN leaves a
 * gap in its line; a series that is NaN throughout (no validation set) is
 * not drawn and not in the legend. Returns 0, or -1 when the file cannot
 * be written (errno tells why). */
int ex_plot_svg(const char *path, const char *title, const ex_plot_run *runs, size_t n);

#endif
