/*
 * common.c - flags, data loading, the document's CNN, a progress bar and
 * JSON results, shared by the examples. See common.h.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* isatty(), fileno() */
#endif

#include "common.h"
#include "plot.h"

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
static const ex_options *parsed;           /* the options ex_parse() filled (ex_fit() reads the recipe) */
static unsigned recipe;                    /* the program's EX_RECIPE_* flags */
static int early_stop_given;               /* --early-stop appeared (0 is refused, not "off") */

/* ex_head_lr()'s default for a zoo network, as a multiple of --lr
 * (measured on Fashion-MNIST: docs/results.md). */
#define HEAD_LR_FACTOR 10.0

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
    help_line("--history", "FILE.csv",
              "write every training run's history as CSV, one row per epoch", NULL);
    help_line("--plot", "FILE.svg", "draw the loss, accuracy and learning-rate curves of every run as SVG", NULL);
    if (p->recipe & EX_RECIPE_ARCH)
        help_line("--arch", "NAME",
                  "seed (the document's CNN), resnet20 (tl_zoo_resnet_cifar) or mobilenetv2 (cifar_stem)",
                  d->arch ? d->arch : "seed");
    if (p->recipe & EX_RECIPE_TRAINING) {
        help_line("--augment", NULL, "random crop (zero padding 4) and horizontal flip (probability 0.5)", NULL);
        help_line("--schedule", "NAME",
                  "cosine (1 epoch warm-up, to 0), step (x0.1 at 50% and 75% of the epochs), onecycle, none",
                  d->schedule ? d->schedule : "none");
        help_line("--early-stop", "N",
                  "hold out 10% of the training data for validation (only with this flag); stop after N\n"
                  "                         epochs without a better validation accuracy, keep the best epoch's weights",
                  NULL);
    }
    help_line("--help", NULL, "print this help", NULL);
    for (size_t i = 0; i < p->num_flags; i++) {
        const ex_flag *f = &p->flags[i];
        const char *def = NULL;
        if (f->kind == EX_FLAG_UNSIGNED) {
            snprintf(num[5], sizeof num[5], "%u", *(unsigned *)f->value);
            def = num[5];
        } else if (f->kind == EX_FLAG_STRING) {
            def = *(const char **)f->value;
        } else if (f->kind == EX_FLAG_POSITIVE && *(double *)f->value > 0) {
            snprintf(num[5], sizeof num[5], "%g", *(double *)f->value);
            def = num[5];
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
    else if (strcmp(name, "--history") == 0)
        o->history = value;
    else if (strcmp(name, "--plot") == 0)
        o->plot = value;
    else if ((p->recipe & EX_RECIPE_ARCH) && strcmp(name, "--arch") == 0)
        o->arch = value;
    else if ((p->recipe & EX_RECIPE_TRAINING) && strcmp(name, "--schedule") == 0)
        o->schedule = value;
    else if ((p->recipe & EX_RECIPE_TRAINING) && strcmp(name, "--early-stop") == 0) {
        o->early_stop = (unsigned)parse_unsigned(name, value, 1000000);
        early_stop_given = 1;
    } else {
        for (size_t i = 0; i < p->num_flags; i++) {
            const ex_flag *f = &p->flags[i];
            if (strcmp(name, f->name) != 0)
                continue;
            if (f->kind == EX_FLAG_UNSIGNED)
                *(unsigned *)f->value = (unsigned)parse_unsigned(name, value, 1000000000);
            else if (f->kind == EX_FLAG_POSITIVE)
                *(double *)f->value = parse_positive(name, value);
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
    if ((p->recipe & EX_RECIPE_TRAINING) && strcmp(name, "--augment") == 0) {
        o->augment = 1;
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
static const char *const common_flags[] = {"--data",  "--epochs", "--batch", "--lr",   "--seed",    "--threads",
                                           "--model", "--out",    "--json",  "--help", "--history", "--plot"};
/* The recipe flags, by group: those the program takes count as its own. */
static const char *const arch_flags[] = {"--arch"};
static const char *const training_flags[] = {"--augment", "--schedule", "--early-stop"};

/* Every flag name `p` takes, one by one: i from 0 until NULL. */
static const char *flag_name(const ex_program *p, size_t i)
{
    size_t nc = sizeof common_flags / sizeof common_flags[0];
    if (i < nc)
        return common_flags[i];
    i -= nc;
    if (p->recipe & EX_RECIPE_ARCH) {
        if (i < 1)
            return arch_flags[i];
        i -= 1;
    }
    if (p->recipe & EX_RECIPE_TRAINING) {
        if (i < 3)
            return training_flags[i];
        i -= 3;
    }
    return i < p->num_flags ? p->flags[i].name : NULL;
}

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
    const char *f;
    for (size_t i = 0; (f = flag_name(p, i)) != NULL; i++) {
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
    if ((p->recipe & EX_RECIPE_ARCH) && strcmp(name, "--arch") == 0)
        return 1;
    if ((p->recipe & EX_RECIPE_TRAINING) && (strcmp(name, "--schedule") == 0 || strcmp(name, "--early-stop") == 0))
        return 1;
    for (size_t i = 0; i < p->num_flags; i++)
        if (strcmp(name, p->flags[i].name) == 0)
            return p->flags[i].kind != EX_FLAG_SWITCH;
    return 0;
}

void ex_parse(ex_options *opt, const ex_program *prog, int argc, char **argv)
{
    prog_name = prog->name;
    recipe = prog->recipe;
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
    if (opt->arch == NULL)
        opt->arch = "seed";
    if (strcmp(opt->arch, "seed") != 0 && strcmp(opt->arch, "resnet20") != 0 && strcmp(opt->arch, "mobilenetv2") != 0)
        usage_error("--arch wants seed, resnet20 or mobilenetv2, not '%s'", opt->arch);
    if (opt->schedule == NULL)
        opt->schedule = "none";
    if (strcmp(opt->schedule, "cosine") != 0 && strcmp(opt->schedule, "step") != 0 &&
        strcmp(opt->schedule, "onecycle") != 0 && strcmp(opt->schedule, "none") != 0)
        usage_error("--schedule wants cosine, step, onecycle or none, not '%s'", opt->schedule);
    if (early_stop_given && opt->early_stop == 0)
        usage_error("--early-stop wants a patience of at least 1 epoch");
    if (opt->history != NULL && opt->history[0] == '\0')
        usage_error("--history wants a file name");
    if (opt->plot != NULL && opt->plot[0] == '\0')
        usage_error("--plot wants a file name");
    json_mode = opt->json;
    parsed = opt;
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

/* An MNIST-format directory (Fashion-MNIST's four *-ubyte files, gzipped
 * or not) rather than CIFAR: its training images file is there. */
static int is_mnist_dir(const char *path)
{
    static const char *const names[] = {"train-images-idx3-ubyte.gz", "train-images-idx3-ubyte"};
    for (size_t i = 0; i < 2; i++) {
        char file[4096];
        if ((size_t)snprintf(file, sizeof file, "%s/%s", path, names[i]) >= sizeof file)
            return 0;
        if (access(file, R_OK) == 0)
            return 1;
    }
    return 0;
}

tl_dataset *ex_load_ten_classes(const char *path, tl_split split, const char **name)
{
    if (is_mnist_dir(path)) {
        *name = "Fashion-MNIST";
        return ex_load_fashion_mnist(path, split);
    }
    *name = "CIFAR-10";
    return ex_load_cifar10(path, split);
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

int ex_arch_is_seed(const ex_options *opt)
{
    return opt->arch == NULL || strcmp(opt->arch, "seed") == 0;
}

double ex_head_lr(const ex_options *opt)
{
    if (opt->head_lr > 0)
        return opt->head_lr;
    return ex_arch_is_seed(opt) ? opt->lr : HEAD_LR_FACTOR * opt->lr;
}

tl_model *ex_build_model(const ex_options *opt, uint32_t h, uint32_t w, uint32_t c, uint32_t classes)
{
    if (ex_arch_is_seed(opt))
        return ex_seed_cnn(h, w, c, classes, opt->seed, opt->threads);
    tl_zoo_options zoo = TL_ZOO_OPTIONS_INIT;
    zoo.num_classes = classes;
    zoo.input_h = h;
    zoo.input_w = w;
    zoo.input_channels = c;
    zoo.seed = opt->seed;
    tl_model *m;
    if (strcmp(opt->arch, "resnet20") == 0) {
        CHECK(tl_zoo_resnet_cifar(&m, 20, &zoo));
    } else {
        zoo.cifar_stem = 1; /* stride 1 where 224 x 224 inputs have stride 2 */
        CHECK(tl_zoo_mobilenet_v2(&m, &zoo));
    }
    CHECK(tl_model_set_threads(m, opt->threads));
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
    char val[48] = "";
    if (p->has_validation)
        snprintf(val, sizeof val, " val_loss %.4f val_acc %.4f", p->val_loss, p->val_accuracy);
    fprintf(stderr, "%s%s epoch %u/%u [%s] %zu/%zu ETA %u:%02u loss %.4f acc %.4f%s %.0f img/s%s", s->tty ? "\r" : "",
            s->label, p->epoch + 1, p->epochs, bar, p->batch, p->batches, eta / 60, eta % 60, p->loss, p->accuracy,
            val, p->samples_per_second, end);
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

/* Every run's history so far, for --history and --plot. */
enum { MAX_RUNS = 16 };
static struct {
    char label[64];
    tl_history *history;
} runs[MAX_RUNS];
static size_t num_runs;

/* A growing buffer for tl_history_write_csv(). */
typedef struct text_buffer {
    char *text;
    size_t len, cap;
} text_buffer;

static int buffer_write(const char *text, size_t len, void *payload)
{
    text_buffer *b = payload;
    if (b->len + len + 1 > b->cap) {
        size_t cap = 2 * (b->len + len + 1);
        char *t = realloc(b->text, cap);
        if (t == NULL)
            return 1;
        b->text = t;
        b->cap = cap;
    }
    memcpy(b->text + b->len, text, len);
    b->len += len;
    b->text[b->len] = '\0';
    return 0;
}

/* --history: tl_history_write_csv() of each run, a "run" column in front. */
static void write_history_csv(const char *path)
{
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        fprintf(stderr, "%s: cannot write %s: %s\n", prog_name, path, strerror(errno));
        exit(1);
    }
    for (size_t r = 0; r < num_runs; r++) {
        text_buffer b = {NULL, 0, 0};
        CHECK(tl_history_write_csv(runs[r].history, buffer_write, &b));
        char *line = b.text, *nl;
        for (int first = 1; line != NULL && (nl = strchr(line, '\n')) != NULL; line = nl + 1, first = 0) {
            if (first && r == 0)
                fprintf(f, "run,%.*s\n", (int)(nl - line), line);
            else if (!first)
                fprintf(f, "%s,%.*s\n", runs[r].label, (int)(nl - line), line);
        }
        free(b.text);
    }
    if (fclose(f) != 0) {
        fprintf(stderr, "%s: cannot write %s: %s\n", prog_name, path, strerror(errno));
        exit(1);
    }
}

/* Keep the run and rewrite --history and --plot with every run so far. */
static void record_run(const char *label, tl_history *history, const ex_options *o)
{
    if (num_runs == MAX_RUNS) {
        tl_history_free(history);
        return;
    }
    snprintf(runs[num_runs].label, sizeof runs[num_runs].label, "%s", label);
    runs[num_runs++].history = history;
    if (o == NULL)
        return;
    if (o->history != NULL)
        write_history_csv(o->history);
    if (o->plot != NULL) {
        ex_plot_run pr[MAX_RUNS];
        for (size_t i = 0; i < num_runs; i++)
            pr[i] = (ex_plot_run){runs[i].label, runs[i].history};
        char title[160];
        if (recipe & EX_RECIPE_ARCH)
            snprintf(title, sizeof title, "%s (--arch %s)", prog_name, o->arch);
        else
            snprintf(title, sizeof title, "%s", prog_name);
        if (ex_plot_svg(o->plot, title, pr, num_runs) != 0) {
            fprintf(stderr, "%s: cannot write %s: %s\n", prog_name, o->plot, strerror(errno));
            exit(1);
        }
    }
}

/* --schedule: the named schedule on the model's optimizer, for `epochs`
 * epochs of `steps` steps each. */
static void set_schedule(tl_model *model, const char *name, unsigned epochs, size_t steps)
{
    tl_schedule_options s = TL_SCHEDULE_OPTIONS_INIT;
    if (strcmp(name, "cosine") == 0) {
        s.kind = TL_SCHEDULE_COSINE; /* total_steps 0: fit sets it to epochs x steps; min_lr 0 */
        s.warmup_steps = steps;      /* one epoch of linear warm-up */
    } else if (strcmp(name, "step") == 0) {
        s.kind = TL_SCHEDULE_MULTISTEP; /* x gamma (0.1) at 50% and 75% of the epochs */
        uint32_t m[2] = {epochs / 2, epochs * 3 / 4};
        for (int i = 0; i < 2; i++)
            if (m[i] > 0 && (s.num_milestones == 0 || m[i] > s.milestones[s.num_milestones - 1]))
                s.milestones[s.num_milestones++] = m[i];
        if (s.num_milestones == 0) /* one epoch: nothing to decay */
            return;
    } else if (strcmp(name, "onecycle") == 0) {
        s.kind = TL_SCHEDULE_ONE_CYCLE; /* PyTorch's defaults, max_lr = --lr */
    } else {
        return;
    }
    CHECK(tl_optimizer_set_schedule(tl_model_optimizer(model), &s));
}

void ex_fit(ex_result *r, tl_model *model, const tl_dataset *train, unsigned epochs, unsigned batch,
            const char *label)
{
    const ex_options *o = parsed;
    bar_state state = {label, isatty(fileno(stderr)), 0, ex_now()};
    tl_fit_options fit = TL_FIT_OPTIONS_INIT;
    tl_augment_options augment = TL_AUGMENT_OPTIONS_INIT;
    tl_early_stopping_options early = TL_EARLY_STOPPING_OPTIONS_INIT;
    tl_dataset *part = NULL, *validation = NULL;
    fit.epochs = epochs;
    fit.batch_size = batch;
    fit.on_batch = on_batch;
    fit.on_epoch = on_epoch;
    fit.payload = &state;
    if (o != NULL && o->early_stop > 0) {
        /* Early stopping needs data the model does not train on: 10% of
         * each class, or of the whole set when the classes are too small
         * for that (10% of each would be nothing). */
        if (tl_dataset_split(&part, &validation, train, 0.1, TL_HOLDOUT_STRATIFIED, o->seed) != TL_OK)
            CHECK(tl_dataset_split(&part, &validation, train, 0.1, TL_HOLDOUT_RANDOM, o->seed));
        train = part;
        fit.validation = validation;
        early.monitor = TL_MONITOR_VAL_ACCURACY;
        early.patience = o->early_stop;
        early.restore_best = 1;
        fit.early_stopping = &early;
    }
    if (o != NULL && o->augment) {
        augment.crop_padding = 4; /* zeros, as PyTorch's CIFAR recipes */
        augment.padding_mode = TL_PADDING_ZERO;
        augment.flip_probability = 0.5;
        fit.augment = &augment;
    }
    if (o != NULL && o->schedule != NULL)
        set_schedule(model, o->schedule, epochs, (tl_dataset_count(train) + batch - 1) / batch);
    tl_history *history;
    CHECK(tl_history_create(&history));
    fit.history = history;
    double t0 = ex_now();
    CHECK(tl_model_fit(model, train, &fit));
    r->seconds = ex_now() - t0;
    r->epochs = (unsigned)tl_history_epochs(history);
    r->images_per_second = (double)r->epochs * (double)tl_dataset_count(train) / r->seconds;
    r->threads = tl_model_threads(model);
    if (validation != NULL) {
        size_t best = 0;
        for (size_t i = 1; i < r->epochs; i++)
            if (tl_history_value(history, i, TL_HISTORY_VAL_ACCURACY) >
                tl_history_value(history, best, TL_HISTORY_VAL_ACCURACY))
                best = i;
        ex_say("%s: %u of %u epochs%s; kept epoch %zu (validation accuracy %.4f on %zu held-out images)\n", label,
               r->epochs, epochs, r->epochs < epochs ? " (stopped early)" : "", best + 1,
               tl_history_value(history, best, TL_HISTORY_VAL_ACCURACY), tl_dataset_count(validation));
    }
    record_run(label, history, o);
    tl_dataset_free(part);
    tl_dataset_free(validation);
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
