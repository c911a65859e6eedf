/*
 * common.c - flags, data loading, the document's CNN, a progress bar and
 * JSON results, shared by the examples. See common.h.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* isatty(), fileno() */
#endif

#include "common.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *prog_name = "example"; /* set by ex_parse() */
static int json_mode;                      /* --json given */

void ex_check(tl_status status, const char *call, const char *file, int line)
{
    if (status == TL_OK)
        return;
    fprintf(stderr, "%s: %s failed (%s:%d)\n  %s\n  %s\n", prog_name, call, file, line, tl_status_str(status),
            tl_last_error());
    exit(1);
}

void ex_say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(json_mode ? stderr : stdout, fmt, ap);
    va_end(ap);
    fflush(json_mode ? stderr : stdout); /* keep the order with the progress lines on stderr */
}

/* ---- command line ----------------------------------------------------- */

/* A bad command line: say what is wrong, in one line, and exit 2. */
#if defined(__GNUC__)
__attribute__((format(printf, 1, 2)))
#endif
static void usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", prog_name);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n  (try --help)\n");
    va_end(ap);
    exit(2);
}

/* strtoull() accepts "-1", "12abc" and "" without complaint; a flag should not. */
static unsigned long long parse_unsigned(const char *flag, const char *text, unsigned long long max)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (text[0] < '0' || text[0] > '9' || *end != '\0')
        usage_error("%s wants a non-negative whole number, not '%s'", flag, text);
    if (errno == ERANGE || v > max)
        usage_error("%s: '%s' is too large", flag, text);
    return v;
}

static double parse_positive(const char *flag, const char *text)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (end == text || *end != '\0' || errno == ERANGE || !isfinite(v) || v <= 0)
        usage_error("%s wants a positive number such as 0.001, not '%s'", flag, text);
    return v;
}

static void help_line(const char *flag, const char *arg, const char *text, const char *default_value)
{
    char left[40];
    snprintf(left, sizeof left, "%s%s%s", flag, arg ? " " : "", arg ? arg : "");
    printf("  %-22s %s", left, text);
    if (default_value != NULL)
        printf(" (default: %s)", default_value);
    printf("\n");
}

static void print_help(const ex_options *d, const ex_program *p)
{
    char num[6][32];
    snprintf(num[0], sizeof num[0], "%u", d->epochs);
    snprintf(num[1], sizeof num[1], "%u", d->batch);
    snprintf(num[2], sizeof num[2], "%g", d->lr);
    snprintf(num[3], sizeof num[3], "%llu", (unsigned long long)d->seed);
    snprintf(num[4], sizeof num[4], "%u", d->threads);
    printf("usage: %s [flags]\n\n%s\n\n", p->name, p->summary);
    help_line("--data", "PATH", p->data_help, d->data);
    help_line("--epochs", "N", "training epochs", num[0]);
    help_line("--batch", "N", "examples per training step", num[1]);
    help_line("--lr", "X", "Adam's learning rate", num[2]);
    help_line("--seed", "N", "seed of the weights, the shuffles and the few-shot draws", num[3]);
    help_line("--threads", "N", "threads; 0 means every online CPU", num[4]);
    help_line("--model", "FILE", p->model_help, d->model);
    help_line("--out", "FILE", p->out_help, d->out);
    help_line("--json", NULL, "print one JSON line per result on stdout (progress stays on stderr)", NULL);
    help_line("--help", NULL, "print this help", NULL);
    for (size_t i = 0; i < p->num_flags; i++) {
        const ex_flag *f = &p->flags[i];
        const char *def = NULL;
        if (f->kind == EX_FLAG_UNSIGNED) {
            snprintf(num[5], sizeof num[5], "%u", *(unsigned *)f->value);
            def = num[5];
        } else if (f->kind == EX_FLAG_STRING) {
            def = *(const char **)f->value;
        }
        help_line(f->name, f->arg, f->help, def);
    }
    printf("\nFlags take their value as the next argument or after '=' (--epochs=3).\n");
}

/* Store `value` for flag `name`; returns 0 when `name` is not a flag. */
static int set_flag(ex_options *o, const ex_program *p, const char *name, const char *value)
{
    if (strcmp(name, "--data") == 0)
        o->data = value;
    else if (strcmp(name, "--epochs") == 0)
        o->epochs = (unsigned)parse_unsigned(name, value, 1000000);
    else if (strcmp(name, "--batch") == 0)
        o->batch = (unsigned)parse_unsigned(name, value, 1000000);
    else if (strcmp(name, "--lr") == 0)
        o->lr = parse_positive(name, value);
    else if (strcmp(name, "--seed") == 0)
        o->seed = parse_unsigned(name, value, UINT64_MAX);
    else if (strcmp(name, "--threads") == 0)
        o->threads = (unsigned)parse_unsigned(name, value, 1024);
    else if (strcmp(name, "--model") == 0)
        o->model = value;
    else if (strcmp(name, "--out") == 0)
        o->out = value;
    else {
        for (size_t i = 0; i < p->num_flags; i++) {
            const ex_flag *f = &p->flags[i];
            if (strcmp(name, f->name) != 0)
                continue;
            if (f->kind == EX_FLAG_UNSIGNED)
                *(unsigned *)f->value = (unsigned)parse_unsigned(name, value, 1000000000);
            else
                *(const char **)f->value = value;
            return 1;
        }
        return 0;
    }
    return 1;
}

/* Switches take no argument. Returns 1 when `name` is one. */
static int set_switch(ex_options *o, const ex_program *p, const char *name)
{
    if (strcmp(name, "--json") == 0) {
        o->json = 1;
        return 1;
    }
    for (size_t i = 0; i < p->num_flags; i++)
        if (p->flags[i].kind == EX_FLAG_SWITCH && strcmp(name, p->flags[i].name) == 0) {
            *(int *)p->flags[i].value = 1;
            return 1;
        }
    return 0;
}

/* The flags every example takes (ex_options), as written on the command line. */
static const char *const common_flags[] = {"--data",  "--epochs", "--batch", "--lr",   "--seed",
                                           "--threads", "--model", "--out",   "--json", "--help"};

/* Levenshtein distance, capped: names are short (< 64 bytes). */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), row[64];
    if (la >= 64 || lb >= 64)
        return 64;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* A flag is close to `name` when a typo or two apart, or when one starts
 * with the other (--epoch for --epochs, --thread for --threads). */
static int close_to(const char *name, const char *flag)
{
    size_t ln = strlen(name), lf = strlen(flag);
    if (ln > 3 && (strncmp(name, flag, ln < lf ? ln : lf) == 0))
        return 1;
    return edit_distance(name, flag) <= (lf > 8 ? 3u : 2u);
}

/* An unknown flag: say so, list the close ones, exit 2. */
static void unknown_flag(const ex_program *p, const char *name)
{
    char near[512] = "";
    size_t used = 0, found = 0;
    for (size_t i = 0; i < sizeof common_flags / sizeof common_flags[0] + p->num_flags; i++) {
        const char *f = i < sizeof common_flags / sizeof common_flags[0]
                            ? common_flags[i]
                            : p->flags[i - sizeof common_flags / sizeof common_flags[0]].name;
        if (!close_to(name, f) || used + strlen(f) + 8 >= sizeof near)
            continue;
        used += (size_t)snprintf(near + used, sizeof near - used, "%s%s", found ? ", " : "", f);
        found++;
    }
    if (found)
        usage_error("unknown flag '%s'; did you mean %s?", name, near);
    usage_error("unknown flag '%s'", name);
}

/* Whether `name` is a flag that takes a value (common or the program's). */
static int takes_value(const ex_program *p, const char *name)
{
    for (size_t i = 0; i < sizeof common_flags / sizeof common_flags[0]; i++)
        if (strcmp(name, common_flags[i]) == 0)
            return strcmp(name, "--json") != 0 && strcmp(name, "--help") != 0;
    for (size_t i = 0; i < p->num_flags; i++)
        if (strcmp(name, p->flags[i].name) == 0)
            return p->flags[i].kind != EX_FLAG_SWITCH;
    return 0;
}

void ex_parse(ex_options *opt, const ex_program *prog, int argc, char **argv)
{
    prog_name = prog->name;
    ex_options defaults = *opt; /* --help shows them even after other flags */
    for (int i = 1; i < argc; i++) {
        char name[64];
        const char *arg = argv[i], *eq = strchr(arg, '=');
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            print_help(&defaults, prog);
            exit(0);
        }
        if (strncmp(arg, "--", 2) != 0)
            usage_error("unexpected argument '%s'", arg);
        /* --flag=value and --flag value are both accepted. */
        size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
        if (len >= sizeof name)
            usage_error("unknown flag '%s'", arg);
        memcpy(name, arg, len);
        name[len] = '\0';
        if (!eq && set_switch(opt, prog, name))
            continue;
        if (eq && set_switch(&(ex_options){0}, prog, name))
            usage_error("%s takes no value", name);
        if (!takes_value(prog, name))
            unknown_flag(prog, name); /* before looking for a value: '--bogus' is not "missing its value" */
        const char *value = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
        if (value == NULL)
            usage_error("%s needs a value", name);
        if (!set_flag(opt, prog, name, value))
            usage_error("unknown flag '%s'", name);
    }
    if (opt->epochs == 0 || opt->batch == 0)
        usage_error("%s must be at least 1", opt->epochs == 0 ? "--epochs" : "--batch");
    json_mode = opt->json;
}

void ex_parse_classes(int32_t *out, size_t *count, size_t cap, const char *text, const char *flag, int32_t limit)
{
    const char *s = text;
    *count = 0;
    while (*s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 0 || v >= limit || (*end != ',' && *end != '\0') || *count == cap)
            usage_error("%s wants a comma-separated list of classes such as 0,1,2, not '%s'", flag, text);
        for (size_t i = 0; i < *count; i++)
            if (out[i] == (int32_t)v)
                usage_error("%s lists a class twice: '%s'", flag, text);
        out[(*count)++] = (int32_t)v;
        s = *end ? end + 1 : end;
    }
    if (*count == 0)
        usage_error("%s wants at least one class", flag);
}

/* ---- data ------------------------------------------------------------- */

/* A missing dataset is the most common first-run problem: say what was
 * looked for (libtl's sentence names the files) and where to get it. */
static void data_missing(tl_status status, const char *what, const char *path, const char *how_to_get)
{
    fprintf(stderr, "%s: cannot load %s from '%s'\n  %s: %s\n%s\n", prog_name, what, path, tl_status_str(status),
            tl_last_error(), how_to_get);
    exit(1);
}

static const char cifar_help[] =
    "  Download the binary version from https://www.cs.toronto.edu/~kriz/cifar.html\n"
    "  (cifar-10-binary.tar.gz for CIFAR-10, cifar-100-binary.tar.gz for CIFAR-100) and\n"
    "  give --data the archive itself, the directory holding it, or the extracted folder.";

tl_dataset *ex_load_cifar10(const char *path, tl_split split)
{
    tl_dataset *ds;
    tl_status st = tl_dataset_load_cifar10(&ds, path, split);
    if (st == TL_ENOTFOUND)
        data_missing(st, "CIFAR-10", path, cifar_help);
    ex_check(st, "tl_dataset_load_cifar10(&ds, path, split)", __FILE__, __LINE__);
    return ds;
}

tl_dataset *ex_load_cifar100(const char *path, tl_split split)
{
    tl_dataset *ds;
    tl_status st = tl_dataset_load_cifar100(&ds, path, split, TL_CIFAR100_FINE);
    if (st == TL_ENOTFOUND)
        data_missing(st, "CIFAR-100", path, cifar_help);
    ex_check(st, "tl_dataset_load_cifar100(&ds, path, split, TL_CIFAR100_FINE)", __FILE__, __LINE__);
    return ds;
}

tl_dataset *ex_load_fashion_mnist(const char *dir, tl_split split)
{
    tl_dataset *ds;
    tl_status st = tl_dataset_load_mnist_dir(&ds, dir, split);
    if (st == TL_ENOTFOUND)
        data_missing(st, "Fashion-MNIST", dir,
                     "  On Debian: apt-get install dataset-fashion-mnist (files in /usr/share/datasets/fashion-mnist/),\n"
                     "  or download the four *-ubyte.gz files from https://github.com/zalandoresearch/fashion-mnist\n"
                     "  into a directory and give it with --data.");
    ex_check(st, "tl_dataset_load_mnist_dir(&ds, dir, split)", __FILE__, __LINE__);
    return ds;
}

/* ---- models ----------------------------------------------------------- */

tl_model *ex_seed_cnn(uint32_t h, uint32_t w, uint32_t c, uint32_t classes, uint64_t seed, unsigned threads)
{
    tl_model *m;
    CHECK(tl_model_create(&m, h, w, c, seed));
    CHECK(tl_model_set_threads(m, threads));

    tl_conv2d_options conv = TL_CONV2D_OPTIONS_INIT; /* 3x3, stride 1, valid */
    tl_maxpool2d_options pool = TL_MAXPOOL2D_OPTIONS_INIT; /* 2x2 */
    tl_dense_options dense = TL_DENSE_OPTIONS_INIT;
    conv.filters = 32;
    conv.activation = TL_ACT_RELU;
    CHECK(tl_model_add_conv2d(NULL, m, &conv));
    CHECK(tl_model_add_maxpool2d(NULL, m, &pool));
    conv.filters = 64;
    CHECK(tl_model_add_conv2d(NULL, m, &conv));
    CHECK(tl_model_add_maxpool2d(NULL, m, &pool));
    CHECK(tl_model_add_flatten(NULL, m, NULL));
    dense.units = classes;
    dense.activation = TL_ACT_SOFTMAX;
    CHECK(tl_model_add_dense(NULL, m, &dense));
    return m;
}

void ex_compile_adam(tl_model *model, double lr)
{
    tl_adam_options adam = TL_ADAM_OPTIONS_INIT;
    adam.learning_rate = (float)lr;
    tl_optimizer *opt;
    CHECK(tl_optimizer_create_adam(&opt, &adam));
    CHECK(tl_model_compile(model, opt, TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY)); /* takes opt */
}

int ex_write_text(const char *text, size_t len, void *payload)
{
    (void)payload;
    fwrite(text, 1, len, json_mode ? stderr : stdout);
    fflush(json_mode ? stderr : stdout);
    return 0;
}

void ex_print_summary(const tl_model *model)
{
    CHECK(tl_model_summary_write(model, ex_write_text, NULL));
}

tl_model *ex_load_model(const char *path)
{
    tl_model *m;
    tl_status st = tl_model_load(&m, path);
    if (st == TL_ENOTFOUND) {
        fprintf(stderr, "%s: no model file '%s'\n  %s\n  Train one first, e.g. cifar10_train --out %s\n",
                prog_name, path, tl_last_error(), path);
        exit(1);
    }
    ex_check(st, "tl_model_load(&m, path)", __FILE__, __LINE__);
    return m;
}

void ex_save_model(const tl_model *model, const char *path)
{
    if (path == NULL || path[0] == '\0')
        return;
    CHECK(tl_model_save(model, path, NULL));
    ex_say("saved %s\n", path);
}

/* ---- training and results -------------------------------------------- */

double ex_now(void)
{
    struct timespec ts;
    timespec_get(&ts, TIME_UTC); /* C11; fine for durations of seconds */
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* What the progress callbacks need between calls. */
typedef struct bar_state {
    const char *label;
    int tty;          /* stderr is a terminal: redraw one line in place */
    double last_draw; /* when the bar was last drawn */
    double last_line; /* when a finished line was last kept */
} bar_state;

static void draw_bar(const tl_progress *p, const bar_state *s, const char *end)
{
    enum { WIDTH = 24 };
    int filled = (int)(WIDTH * p->batch / (p->batches ? p->batches : 1));
    char bar[WIDTH + 1];
    for (int i = 0; i < WIDTH; i++)
        bar[i] = i < filled ? '=' : ' ';
    bar[WIDTH] = '\0';
    /* The time left: this epoch's remaining batches plus every later epoch,
     * at the pace of this epoch so far. */
    double per_batch = p->batch ? p->seconds / (double)p->batch : 0;
    double left = per_batch * (double)(p->batches - p->batch + (size_t)(p->epochs - p->epoch - 1) * p->batches);
    unsigned eta = (unsigned)(left + 0.5);
    fprintf(stderr, "%s%s epoch %u/%u [%s] %zu/%zu ETA %u:%02u loss %.4f acc %.4f %.0f img/s%s", s->tty ? "\r" : "",
            s->label, p->epoch + 1, p->epochs, bar, p->batch, p->batches, eta / 60, eta % 60, p->loss, p->accuracy,
            p->samples_per_second, end);
    fflush(stderr);
}

static int on_batch(const tl_progress *p, void *payload)
{
    bar_state *s = payload;
    double t = ex_now();
    /* On a terminal, redraw ten times a second at most. */
    if (s->tty && p->batch < p->batches && t - s->last_draw >= 0.1) {
        draw_bar(p, s, "\033[K"); /* clear what a longer line left behind */
        s->last_draw = t;
    }
    return 0; /* non-zero would stop training */
}

/* Keep a line per epoch, but no more than one a second: many short epochs
 * (few-shot training) would otherwise flood the screen or the log. */
static int on_epoch(const tl_progress *p, void *payload)
{
    bar_state *s = payload;
    double t = ex_now();
    int last = p->epoch + 1 == p->epochs;
    if (last || t - s->last_line >= 1.0) {
        draw_bar(p, s, "\n");
        s->last_line = t;
    } else if (s->tty) {
        draw_bar(p, s, "\033[K");
    }
    return 0;
}

void ex_fit(ex_result *r, tl_model *model, const tl_dataset *train, unsigned epochs, unsigned batch,
            const char *label)
{
    bar_state state = {label, isatty(fileno(stderr)), 0, ex_now()};
    tl_fit_options fit = TL_FIT_OPTIONS_INIT;
    fit.epochs = epochs;
    fit.batch_size = batch;
    fit.on_batch = on_batch;
    fit.on_epoch = on_epoch;
    fit.payload = &state;
    double t0 = ex_now();
    CHECK(tl_model_fit(model, train, &fit));
    r->seconds = ex_now() - t0;
    r->epochs = epochs;
    r->images_per_second = (double)epochs * (double)tl_dataset_count(train) / r->seconds;
    r->threads = tl_model_threads(model);
}

void ex_evaluate(ex_result *r, tl_model *model, const tl_dataset *test)
{
    CHECK(tl_model_evaluate(&r->loss, &r->accuracy, model, test, 256));
}

/* ---- JSON --------------------------------------------------------------- */

/* Append "key":value, where `value` is already JSON text. */
static void json_field(ex_json *j, const char *key, const char *value)
{
    int n = snprintf(j->text + j->len, sizeof j->text - j->len, "%s\"%s\":%s", j->len > 1 ? "," : "", key, value);
    if (n > 0 && (size_t)n < sizeof j->text - j->len)
        j->len += (size_t)n;
}

void ex_json_begin(ex_json *j, const char *example)
{
    j->text[0] = '{';
    j->text[1] = '\0';
    j->len = 1;
    ex_json_str(j, "example", example);
}

/* Values here are file names and fixed words: escape the two characters
 * JSON requires and drop control characters. */
void ex_json_str(ex_json *j, const char *key, const char *value)
{
    char esc[512];
    size_t n = 0;
    esc[n++] = '"';
    for (const char *c = value ? value : ""; *c && n + 3 < sizeof esc; c++) {
        if (*c == '"' || *c == '\\')
            esc[n++] = '\\';
        if ((unsigned char)*c >= 0x20)
            esc[n++] = *c;
    }
    esc[n++] = '"';
    esc[n] = '\0';
    json_field(j, key, esc);
}

void ex_json_num(ex_json *j, const char *key, double value)
{
    char text[32] = "null"; /* JSON has no NaN or infinity */
    if (isfinite(value))
        snprintf(text, sizeof text, "%.6g", value);
    json_field(j, key, text);
}

void ex_json_uint(ex_json *j, const char *key, unsigned long long value)
{
    char text[24];
    snprintf(text, sizeof text, "%llu", value);
    json_field(j, key, text);
}

void ex_json_result(ex_json *j, const ex_result *r, const ex_options *opt)
{
    ex_json_num(j, "accuracy", r->accuracy);
    ex_json_num(j, "loss", r->loss);
    ex_json_uint(j, "epochs", r->epochs);
    ex_json_num(j, "seconds", r->seconds);
    ex_json_num(j, "images_per_second", r->images_per_second);
    ex_json_uint(j, "batch", opt->batch);
    ex_json_num(j, "lr", opt->lr);
    ex_json_uint(j, "seed", opt->seed);
    ex_json_uint(j, "threads", r->threads);
}

void ex_json_end(ex_json *j)
{
    printf("%s}\n", j->text);
    fflush(stdout);
}

void ex_report(const char *method, const ex_result *r, const ex_options *opt)
{
    ex_say("%s: test accuracy %.4f, test loss %.4f (%u epoch%s in %.1f s, %.0f images/s)\n", method, r->accuracy,
           r->loss, r->epochs, r->epochs == 1 ? "" : "s", r->seconds, r->images_per_second);
    if (opt->json) {
        ex_json j;
        ex_json_begin(&j, prog_name);
        ex_json_str(&j, "method", method);
        ex_json_result(&j, r, opt);
        ex_json_str(&j, "data", opt->data);
        ex_json_str(&j, "model", opt->model);
        ex_json_str(&j, "out", opt->out);
        ex_json_end(&j);
    }
}
