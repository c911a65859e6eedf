/*
 * common.h - what every example shares, so that each example file shows only
 * its own part of the workflow:
 *
 *   - the common command-line flags and a small table-driven parser;
 *   - CHECK(), which stops with libtl's status and last-error sentence;
 *   - the data loaders, which explain where to get the data when it is missing;
 *   - the document's CNN;
 *   - the --arch networks: the document's CNN or a zoo backbone;
 *   - training with a progress bar (drawn from tl_fit_options' callbacks),
 *     the recipe flags (--augment, --schedule, --early-stop) and the
 *     --history CSV and --plot SVG (plot.c) of every run;
 *   - the one-line JSON result.
 *
 * Nothing here is part of libtl: it uses the public API only, as any
 * program would. Copy what you need.
 */
#ifndef TL_EXAMPLES_COMMON_H
#define TL_EXAMPLES_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include <tl/tl.h>

/* Stop the program when a libtl call fails, printing which call, the status
 * and the sentence tl_last_error() gives (it names the layer, the file, the
 * shapes - whatever is needed to fix the problem). */
#define CHECK(call) ex_check((call), #call, __FILE__, __LINE__)
void ex_check(tl_status status, const char *call, const char *file, int line);

/* ---- command line ----------------------------------------------------- */

/* The flags every example takes. Each example sets its defaults before
 * calling ex_parse(). */
typedef struct ex_options {
    const char *data;  /* --data PATH: dataset directory or archive */
    unsigned epochs;   /* --epochs N */
    unsigned batch;    /* --batch N */
    double lr;         /* --lr X: Adam's learning rate */
    uint64_t seed;     /* --seed N: weights, shuffles, few-shot draws */
    unsigned threads;  /* --threads N: 0 = every online CPU */
    const char *model; /* --model FILE: a model file to read */
    const char *out;   /* --out FILE: where to write the trained model */
    int json;          /* --json: one machine-readable line per result */
    const char *history; /* --history FILE.csv: every training run's history, one row per epoch */
    const char *plot;    /* --plot FILE.svg: the same as curves (plot.c) */
    /* The recipe flags (ex_program.recipe); ex_parse() fills in the defaults. */
    const char *arch;     /* --arch seed|resnet20|mobilenetv2 (EX_RECIPE_ARCH); default "seed" */
    int augment;          /* --augment: random crop (zero padding 4) and horizontal flip (p 0.5) */
    const char *schedule; /* --schedule cosine|step|onecycle|none; default "none" */
    unsigned early_stop;  /* --early-stop N: patience on the validation accuracy; 0: off */
    double head_lr;       /* the feature extractor's head's learning rate (transfer_demo's --head-lr);
                             0: ex_head_lr()'s default for the arch */
} ex_options;

/* Which recipe flags a program takes (ex_program.recipe, or-ed). */
enum {
    EX_RECIPE_ARCH = 1,    /* --arch */
    EX_RECIPE_TRAINING = 2 /* --augment, --schedule, --early-stop */
};

/* An example's own flags, in addition to the common ones. */
typedef enum ex_flag_kind {
    EX_FLAG_SWITCH,   /* no argument; sets an int to 1 */
    EX_FLAG_UNSIGNED, /* unsigned */
    EX_FLAG_STRING,   /* const char * */
    EX_FLAG_POSITIVE  /* double > 0; a default of 0 means "chosen by the program" (said in the help) */
} ex_flag_kind;

typedef struct ex_flag {
    const char *name; /* "--scratch" */
    ex_flag_kind kind;
    void *value;      /* int *, unsigned * or const char ** */
    const char *arg;  /* argument name in --help ("N", "LIST"), NULL for switches */
    const char *help; /* one line */
} ex_flag;

/* What --help prints about a program, and what its --data and --model mean. */
typedef struct ex_program {
    const char *name;       /* "cifar10_train" */
    const char *summary;    /* a sentence or two: what the example does */
    const char *data_help;  /* what --data expects */
    const char *model_help; /* what --model reads */
    const char *out_help;   /* what --out writes */
    const ex_flag *flags;   /* the example's own flags (may be NULL) */
    size_t num_flags;
    unsigned recipe;        /* EX_RECIPE_* flags the program takes (0: none) */
} ex_program;

/* Parse the command line into `opt` (which holds the defaults) and the
 * program's own flags. --help prints every flag with its default and exits
 * 0; an unknown flag, a missing argument or a bad number prints a one-line
 * error naming the flag and exits 2. */
void ex_parse(ex_options *opt, const ex_program *prog, int argc, char **argv);

/* Parse a comma-separated list of class numbers ("5,6,7,8,9") into
 * out[0..*count), at most `cap` entries, each in [0, limit). Exits 2 with a
 * message naming `flag` on a bad list. */
void ex_parse_classes(int32_t *out, size_t *count, size_t cap, const char *text, const char *flag, int32_t limit);

/* Human-readable lines go to stdout, or to stderr with --json, so that
 * stdout then holds nothing but the JSON lines. */
void ex_say(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

/* ---- data ------------------------------------------------------------- */

/* Load a split. When the data is not there, these print what they looked
 * for and where to download it, and exit 1. */
tl_dataset *ex_load_cifar10(const char *path, tl_split split);
tl_dataset *ex_load_cifar100(const char *path, tl_split split);
tl_dataset *ex_load_fashion_mnist(const char *dir, tl_split split);
/* CIFAR-10, or Fashion-MNIST when `path` is a directory of MNIST-format
 * files (the other 10-class set on a machine without network); *name says
 * which. */
tl_dataset *ex_load_ten_classes(const char *path, tl_split split, const char **name);

/* ---- models ----------------------------------------------------------- */

/* The document's network for h x w x c inputs and `classes` outputs:
 * conv2d(32, 3x3, relu) -> maxpool(2) -> conv2d(64, 3x3, relu) -> maxpool(2)
 * -> flatten -> dense(classes, softmax). Not compiled. */
tl_model *ex_seed_cnn(uint32_t h, uint32_t w, uint32_t c, uint32_t classes, uint64_t seed, unsigned threads);

/* The network --arch names for h x w x c inputs and `classes` outputs,
 * seeded with opt->seed, using opt->threads: "seed" is ex_seed_cnn();
 * "resnet20" tl_zoo_resnet_cifar(20); "mobilenetv2" tl_zoo_mobilenet_v2()
 * with cifar_stem. The zoo's heads are linear (logits), which sparse
 * cross-entropy takes as they are. Not compiled. */
tl_model *ex_build_model(const ex_options *opt, uint32_t h, uint32_t w, uint32_t c, uint32_t classes);

/* Whether opt->arch is the document's CNN. */
int ex_arch_is_seed(const ex_options *opt);

/* The learning rate of the frozen feature extractor's new head: --head-lr
 * when given, else --lr for the seed CNN (the document's workflow, as it
 * always was) and 10 x --lr for a zoo network. Why: Adam moves each weight
 * by about the rate per step, whatever the features' scale, and a zoo
 * network's head sees only the 64 (ResNet-20) or 1280 (MobileNetV2)
 * pooled features, with Glorot-uniform weights about sqrt(6 / (64 + k))
 * ~ 0.3 in size: 40 steps at 1e-3 move them by at most 0.04, so the head
 * stays near its random start (docs/results.md measures it). */
double ex_head_lr(const ex_options *opt);

/* Compile with Adam at learning rate `lr` and sparse categorical
 * cross-entropy, as the document does. */
void ex_compile_adam(tl_model *model, double lr);

/* Print the model's Keras-style summary (where ex_say() prints). */
void ex_print_summary(const tl_model *model);

/* A tl_write_fn for libtl's text reports: writes where ex_say() does. */
int ex_write_text(const char *text, size_t len, void *payload);

/* Read a model file written by --out (tl_model_load()). */
tl_model *ex_load_model(const char *path);
/* Write `model` to `path` (tl_model_save()), when `path` is not NULL. */
void ex_save_model(const tl_model *model, const char *path);

/* ---- training and results -------------------------------------------- */

/* What one way of learning a task achieved. */
typedef struct ex_result {
    double accuracy;          /* on the test set */
    double loss;              /* on the test set */
    unsigned epochs;
    double seconds;           /* training wall time */
    double images_per_second; /* training throughput */
    unsigned threads;         /* threads the model used */
} ex_result;

/* Seconds from a monotonic clock. */
double ex_now(void);

/* tl_model_fit() with a progress bar on stderr (epoch, ETA, loss, accuracy,
 * images/s). `label` names the run on the bar, in --history and in --plot.
 * Fills `r`'s epochs (those run: fewer when stopped early), seconds and
 * images_per_second. The recipe flags given apply here: --augment,
 * --schedule (set on the model's optimizer for these epochs) and
 * --early-stop (10% of `train`, drawn per class with --seed, is held out
 * for validation; the best epoch's weights are restored). After the run,
 * --history and --plot are (re)written with every run so far. */
void ex_fit(ex_result *r, tl_model *model, const tl_dataset *train, unsigned epochs, unsigned batch,
            const char *label);

/* tl_model_evaluate() on `test` into `r`'s accuracy and loss. */
void ex_evaluate(ex_result *r, tl_model *model, const tl_dataset *test);

/* Print one result: a line for people, and with --json one JSON line on
 * stdout (example, method, the ex_json_result() fields, data, model). */
void ex_report(const char *method, const ex_result *r, const ex_options *opt);

/* One JSON object on one line of stdout, built field by field:
 *   ex_json j; ex_json_begin(&j, "cifar10_train"); ex_json_num(&j, "accuracy", 0.61); ... ex_json_end(&j); */
typedef struct ex_json {
    char text[2048];
    size_t len;
} ex_json;
void ex_json_begin(ex_json *j, const char *example);
void ex_json_str(ex_json *j, const char *key, const char *value);
void ex_json_num(ex_json *j, const char *key, double value);
void ex_json_uint(ex_json *j, const char *key, unsigned long long value);
/* The result fields (accuracy, loss, epochs, seconds, images_per_second) and
 * the settings (batch, lr, seed, threads). */
void ex_json_result(ex_json *j, const ex_result *r, const ex_options *opt);
void ex_json_end(ex_json *j);

#endif
