/*
 * plot.c - training curves as SVG, written with fprintf. See plot.h.
 */
#include "plot.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

enum { WIDTH = 960, HEIGHT = 370, PANEL_W = 310, PLOT_L = 62, PLOT_W = 226, PLOT_T = 92, PLOT_H = 210 };

static const char *const run_colours[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
                                          "#e377c2", "#17becf"};
#define TRAIN_COLOUR "#1f77b4"
#define VAL_COLOUR "#ff7f0e"
#define LR_COLOUR "#2ca02c"

/* Text in an SVG is XML: escape what XML reserves, drop control characters. */
static void put_text(FILE *f, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&apos;", f); break;
        default:
            if ((unsigned char)*s >= 0x20)
                fputc(*s, f);
        }
    }
}

static void text(FILE *f, double x, double y, const char *anchor, const char *extra, const char *s)
{
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\"%s>", x, y, anchor, extra ? extra : "");
    put_text(f, s);
    fputs("</text>\n", f);
}

/* A "nice" tick step (1, 2 or 5 times a power of ten) giving about `n` ticks over `range`. */
static double nice_step(double range, int n)
{
    double raw = range / n, p = pow(10, floor(log10(raw))), m = raw / p;
    return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
}

static void tick_label(char *buf, size_t cap, double v, double step)
{
    if (fabs(v) < step * 1e-6)
        v = 0;
    if (step >= 1 && fabs(v) < 1e6)
        snprintf(buf, cap, "%.0f", v);
    else if (fabs(v) >= 1e-3 || v == 0)
        snprintf(buf, cap, "%.*f", (int)ceil(-log10(step) - 1e-9), v);
    else
        snprintf(buf, cap, "%.2g", v);
}

typedef struct panel {
    const char *title;
    tl_history_key keys[2];
    int num_keys;
    double lo, hi;     /* y range */
    double x0;         /* left edge of the plot area */
} panel;

static double px(const panel *p, double epoch, double xmax)
{
    double lo = xmax > 1 ? 1 : 0, hi = xmax > 1 ? xmax : 2;
    return p->x0 + (epoch - lo) / (hi - lo) * PLOT_W;
}

static double py(const panel *p, double v)
{
    return PLOT_T + PLOT_H - (v - p->lo) / (p->hi - p->lo) * PLOT_H;
}

/* The y range of a panel over every run's finite values, padded by 5%. */
static void y_range(panel *p, const ex_plot_run *runs, size_t n)
{
    double lo = INFINITY, hi = -INFINITY;
    for (size_t r = 0; r < n; r++)
        for (int k = 0; k < p->num_keys; k++)
            for (size_t i = 0; i < tl_history_epochs(runs[r].history); i++) {
                double v = tl_history_value(runs[r].history, i, p->keys[k]);
                if (isfinite(v)) {
                    lo = v < lo ? v : lo;
                    hi = v > hi ? v : hi;
                }
            }
    if (!(lo <= hi)) { /* nothing finite */
        lo = 0;
        hi = 1;
    } else if (hi - lo < 1e-12 * (fabs(hi) + 1e-300) || hi == lo) {
        double d = lo != 0 ? fabs(lo) * 0.1 : 1;
        lo -= d;
        hi += d;
    } else {
        double pad = (hi - lo) * 0.05;
        lo -= pad;
        hi += pad;
    }
    if (lo < 0 && p->keys[0] != TL_HISTORY_LOSS) /* accuracy and rates are not negative */
        lo = 0;
    p->lo = lo;
    p->hi = hi;
}

static void axes(FILE *f, const panel *p, double xmax, int val)
{
    char buf[48];
    fprintf(f, "<rect x=\"%.1f\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#444\"/>\n", p->x0,
            PLOT_T, PLOT_W, PLOT_H);
    /* Without validation every curve is a training curve: say so in the title. */
    snprintf(buf, sizeof buf, "%s%s", !val && p->num_keys == 2 ? "training " : "", p->title);
    text(f, p->x0 + PLOT_W / 2.0, PLOT_T - 10, "middle", " font-weight=\"bold\"", buf);
    text(f, p->x0 + PLOT_W / 2.0, PLOT_T + PLOT_H + 36, "middle", NULL, "epoch");
    /* x: whole epochs */
    double xs = xmax > 1 ? nice_step(xmax - 1, 5) : 1;
    if (xs < 1)
        xs = 1;
    /* epoch 1, then the multiples of the step */
    for (double e = xs == 1 || xs >= 4 ? 1 : xs; e <= xmax + 1e-9; e = (floor(e / xs + 1e-9) + 1) * xs) {
        double x = px(p, e, xmax);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#444\"/>\n", x, PLOT_T + PLOT_H, x,
                PLOT_T + PLOT_H + 5);
        snprintf(buf, sizeof buf, "%.0f", e);
        text(f, x, PLOT_T + PLOT_H + 18, "middle", NULL, buf);
    }
    /* y: nice steps, with light grid lines */
    double ys = nice_step(p->hi - p->lo, 4);
    for (double v = ceil(p->lo / ys - 1e-9) * ys; v <= p->hi + ys * 1e-9; v += ys) {
        double y = py(p, v);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", p->x0 + 1, y,
                p->x0 + PLOT_W - 1, y);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#444\"/>\n", p->x0 - 5, y, p->x0,
                y);
        tick_label(buf, sizeof buf, v, ys);
        text(f, p->x0 - 8, y + 4, "end", NULL, buf);
    }
}

/* One series: a polyline through each run of consecutive finite values
 * (NaN leaves a gap), and a dot on every value when there are few. */
static void series(FILE *f, const panel *p, const tl_history *h, tl_history_key key, double xmax, const char *colour,
                   int dashed, double width, const char *name)
{
    size_t rows = tl_history_epochs(h), open = 0;
    int dots = rows <= 40;
    for (size_t i = 0; i <= rows; i++) {
        double v = i < rows ? tl_history_value(h, i, key) : NAN;
        int next_ok = i + 1 < rows && isfinite(tl_history_value(h, i + 1, key));
        if (isfinite(v) && !open && next_ok) {
            fprintf(f, "<polyline class=\"series\" data-series=\"");
            put_text(f, name);
            fprintf(f, "\" fill=\"none\" stroke=\"%s\" stroke-width=\"%.2f\"%s points=\"", colour, width,
                    dashed ? " stroke-dasharray=\"6 4\"" : "");
            open = 1;
        }
        if (isfinite(v) && open)
            fprintf(f, "%.1f,%.1f ", px(p, (double)i + 1, xmax), py(p, v));
        if (open && (!isfinite(v) || !next_ok)) {
            fputs("\"/>\n", f);
            open = 0;
        }
    }
    if (dots)
        for (size_t i = 0; i < rows; i++) {
            double v = tl_history_value(h, i, key);
            if (isfinite(v))
                fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.5\" fill=\"%s\"/>\n", px(p, (double)i + 1, xmax),
                        py(p, v), colour);
        }
}

static int has_finite(const ex_plot_run *runs, size_t n, tl_history_key key)
{
    for (size_t r = 0; r < n; r++)
        for (size_t i = 0; i < tl_history_epochs(runs[r].history); i++)
            if (isfinite(tl_history_value(runs[r].history, i, key)))
                return 1;
    return 0;
}

static double legend_entry(FILE *f, double x, const char *colour, int dashed, const char *label)
{
    fprintf(f, "<line x1=\"%.1f\" y1=\"52\" x2=\"%.1f\" y2=\"52\" stroke=\"%s\" stroke-width=\"2\"%s/>\n", x, x + 24,
            colour, dashed ? " stroke-dasharray=\"6 4\"" : "");
    fprintf(f, "<text class=\"legend\" x=\"%.1f\" y=\"56\">", x + 30);
    put_text(f, label);
    fputs("</text>\n", f);
    return x + 30 + 7.5 * (double)strlen(label) + 24;
}

int ex_plot_svg(const char *path, const char *title, const ex_plot_run *runs, size_t n)
{
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return -1;
    panel panels[3] = {
        {"loss", {TL_HISTORY_LOSS, TL_HISTORY_VAL_LOSS}, 2, 0, 1, 0},
        {"accuracy", {TL_HISTORY_ACCURACY, TL_HISTORY_VAL_ACCURACY}, 2, 0, 1, 0},
        {"learning rate", {TL_HISTORY_LEARNING_RATE, TL_HISTORY_LEARNING_RATE}, 1, 0, 1, 0},
    };
    double xmax = 1;
    for (size_t r = 0; r < n; r++)
        if ((double)tl_history_epochs(runs[r].history) > xmax)
            xmax = (double)tl_history_epochs(runs[r].history);
    int val = has_finite(runs, n, TL_HISTORY_VAL_LOSS) || has_finite(runs, n, TL_HISTORY_VAL_ACCURACY);

    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
               "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
               "font-family=\"sans-serif\" font-size=\"12\">\n"
               "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
            WIDTH, HEIGHT, WIDTH, HEIGHT);
    text(f, WIDTH / 2.0, 24, "middle", " font-size=\"15\" font-weight=\"bold\"", title);

    /* The legend: what each colour and dash means. */
    double x = 20;
    if (n == 1) {
        x = legend_entry(f, x, TRAIN_COLOUR, 0, "train");
        if (val)
            x = legend_entry(f, x, VAL_COLOUR, 0, "validation");
        legend_entry(f, x, LR_COLOUR, 0, "learning rate");
    } else {
        for (size_t r = 0; r < n; r++)
            x = legend_entry(f, x, run_colours[r % 8], 0, runs[r].label);
        if (val) { /* solid and dashed tell train and validation apart */
            x = legend_entry(f, x, "#777", 0, "train");
            legend_entry(f, x, "#777", 1, "validation");
        }
    }

    for (int k = 0; k < 3; k++) {
        panel *p = &panels[k];
        p->x0 = 20 + k * PANEL_W + PLOT_L;
        y_range(p, runs, n);
        axes(f, p, xmax, val);
        for (size_t r = 0; r < n; r++) {
            const char *c = run_colours[r % 8];
            char name[160];
            for (int s = 0; s < p->num_keys; s++) {
                const char *kind = k == 2 ? "learning rate" : s == 0 ? "train" : "validation";
                snprintf(name, sizeof name, "%s%s%s %s", n > 1 ? runs[r].label : "", n > 1 ? ": " : "", kind,
                         p->title);
                if (n == 1)
                    c = k == 2 ? LR_COLOUR : s == 0 ? TRAIN_COLOUR : VAL_COLOUR;
                /* Earlier runs a little wider, so that a later run on the same curve leaves them visible. */
                double width = n > 1 ? 1.5 + 1.5 * (double)(n - 1 - r) / (double)(n - 1) : 2;
                series(f, p, runs[r].history, p->keys[s], xmax, c, n > 1 && s == 1, width, name);
            }
        }
    }
    fputs("</svg>\n", f);
    int bad = ferror(f);
    if (fclose(f) != 0 || bad)
        return -1;
    return 0;
}
