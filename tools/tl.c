/*
 * tl - look at, convert and try libtl's three model formats from the shell.
 *
 *   tl info FILE                    what the file holds: format and version,
 *                                   layers, output shapes, parameter counts
 *   tl convert IN OUT [options]     between checkpoint, safetensors and ONNX
 *   tl predict MODEL DATA [options] class predictions (and accuracy) on a dataset
 *
 * The format of an input file is read from its first bytes, never from its
 * name; an output's format comes from its extension (.onnx, .safetensors,
 * anything else a checkpoint). Exit status: 0 success, 1 a libtl call
 * failed (its status and sentence on stderr), 2 the command line is wrong.
 *
 * It uses the public API only, as any program linking -ltl would.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <tl/tl.h>

enum { EXIT_LIBTL = 1, EXIT_USAGE = 2 };

typedef enum file_format { FORMAT_CHECKPOINT, FORMAT_SAFETENSORS, FORMAT_ONNX } file_format;

static const char *const format_names[] = {"libtl checkpoint", "safetensors", "ONNX"};

static const char usage_text[] =
    "usage: tl info FILE\n"
    "       tl convert IN OUT [--layout pytorch|keras] [--fold-bn] [--nhwc] [--opset N]\n"
    "       tl predict MODEL DATA [--labels FILE] [--show N] [--batch N] [--threads N]\n"
    "       tl --help | --version\n"
    "\n"
    "FILE, IN and MODEL may be a libtl checkpoint, a safetensors file written by libtl\n"
    "(it describes its architecture) or an ONNX file; the format is read from the\n"
    "file's first bytes. OUT's format comes from its extension: .onnx, .safetensors,\n"
    "anything else a checkpoint.\n"
    "\n"
    "convert:\n"
    "  --layout L   safetensors output: tensor layout, pytorch (default) or keras\n"
    "  --fold-bn    ONNX output: fold each batchnorm into the convolution before it\n"
    "  --nhwc       ONNX output: NHWC input instead of NCHW\n"
    "  --opset N    ONNX output: the opset to declare (13 to 17; default 13)\n"
    "predict:\n"
    "  DATA         a directory of MNIST-format IDX files (the test split is used),\n"
    "               a CIFAR-10 archive, .bin file or directory (test split), or an\n"
    "               IDX images file together with --labels FILE\n"
    "  --show N     print the first N predictions (default 10)\n"
    "  --batch N    inference batch size (default 64)\n"
    "  --threads N  threads (default: every online CPU)\n"
    "\n"
    "Exit status: 0 success, 1 a libtl call failed, 2 a wrong command line.\n";

/* ---- errors --------------------------------------------------------------- */

static int fail(const char *cmd, tl_status st)
{
    fprintf(stderr, "tl %s: %s (%s)\n", cmd, tl_last_error(), tl_status_str(st));
    return EXIT_LIBTL;
}

static int usage_error(const char *fmt, const char *arg)
{
    fputs("tl: ", stderr);
    fprintf(stderr, fmt, arg);
    fputs("; see tl --help\n", stderr);
    return EXIT_USAGE;
}

/* ---- formats ---------------------------------------------------------------- */

/* What the first bytes say. A checkpoint starts with its magic; a
 * safetensors file with an 8-byte little-endian header length and then '{';
 * anything else is taken as ONNX, whose reader then checks it strictly. */
static tl_status detect_format(file_format *out, const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        int e = errno;
        return e == ENOENT ? TL_ENOTFOUND : TL_EIO;
    }
    unsigned char head[9] = {0};
    size_t n = fread(head, 1, sizeof head, f);
    fclose(f);
    if (n >= 4 && memcmp(head, "\x89TLM", 4) == 0)
        *out = FORMAT_CHECKPOINT;
    else if (n == 9 && head[8] == '{')
        *out = FORMAT_SAFETENSORS;
    else
        *out = FORMAT_ONNX;
    return TL_OK;
}

static int has_suffix(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static file_format output_format(const char *path)
{
    if (has_suffix(path, ".onnx"))
        return FORMAT_ONNX;
    if (has_suffix(path, ".safetensors"))
        return FORMAT_SAFETENSORS;
    return FORMAT_CHECKPOINT;
}

/* Open a model file of any of the three formats. The checkpoint keeps
 * everything (optimizer included); the others rebuild the model. */
static tl_status open_model(tl_model **out, file_format *out_format, const char *path)
{
    tl_status st = detect_format(out_format, path);
    if (st != TL_OK) {
        /* Let the reader write the sentence (it names the file and errno). */
        return tl_model_load(out, path);
    }
    switch (*out_format) {
    case FORMAT_CHECKPOINT: return tl_model_load(out, path);
    case FORMAT_SAFETENSORS: return tl_model_create_from_safetensors(out, path, NULL);
    case FORMAT_ONNX: return tl_model_load_onnx(out, path, NULL);
    }
    return TL_EINVAL;
}

/* ---- tl info -------------------------------------------------------------- */

static int write_stdout(const char *text, size_t len, void *payload)
{
    (void)payload;
    return fwrite(text, 1, len, stdout) == len ? 0 : 1;
}

static int cmd_info(int argc, char **argv)
{
    if (argc != 1)
        return usage_error("info takes one FILE, not %s", argc ? "several" : "none");
    const char *path = argv[0];
    file_format fmt;
    tl_status st = detect_format(&fmt, path);
    if (st == TL_OK && fmt == FORMAT_CHECKPOINT) {
        /* The checkpoint's own summary says more than the model's: the
         * format version, the optimizer and its step count. */
        tl_checkpoint_info *info = NULL;
        st = tl_checkpoint_info_read(&info, path);
        if (st != TL_OK)
            return fail("info", st);
        printf("%s: %s\n", path, format_names[fmt]);
        st = tl_checkpoint_info_summary_write(info, write_stdout, NULL);
        tl_checkpoint_info_free(info);
        return st == TL_OK ? 0 : fail("info", st);
    }
    tl_model *m = NULL;
    st = open_model(&m, &fmt, path);
    if (st != TL_OK)
        return fail("info", st);
    printf("%s: %s\n", path, format_names[fmt]);
    st = tl_model_summary_write(m, write_stdout, NULL);
    tl_model_free(m);
    return st == TL_OK ? 0 : fail("info", st);
}

/* ---- tl convert ----------------------------------------------------------- */

static int parse_uint(unsigned long *out, const char *flag, const char *text, unsigned long max)
{
    char *end = NULL;
    errno = 0;
    unsigned long v = text ? strtoul(text, &end, 10) : 0;
    if (!text || !*text || *end || errno || v > max || text[0] == '-') {
        fprintf(stderr, "tl: %s needs a whole number up to %lu, not '%s'; see tl --help\n", flag, max,
                text ? text : "");
        return EXIT_USAGE;
    }
    *out = v;
    return 0;
}

static int cmd_convert(int argc, char **argv)
{
    const char *in = NULL, *out = NULL;
    tl_tensor_layout layout = TL_LAYOUT_PYTORCH;
    tl_onnx_save_options onnx = TL_ONNX_SAVE_OPTIONS_INIT;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--layout") == 0 && i + 1 < argc) {
            const char *v = argv[++i];
            if (strcmp(v, "pytorch") == 0)
                layout = TL_LAYOUT_PYTORCH;
            else if (strcmp(v, "keras") == 0)
                layout = TL_LAYOUT_KERAS;
            else
                return usage_error("--layout is pytorch or keras, not '%s'", v);
        } else if (strcmp(a, "--fold-bn") == 0) {
            onnx.fold_batchnorm = 1;
        } else if (strcmp(a, "--nhwc") == 0) {
            onnx.nhwc_input = 1;
        } else if (strcmp(a, "--opset") == 0 && i + 1 < argc) {
            unsigned long v;
            if (parse_uint(&v, "--opset", argv[++i], 1000))
                return EXIT_USAGE;
            onnx.opset = (int64_t)v;
        } else if (a[0] == '-' && a[1] == '-') {
            return usage_error("convert has no option %s (or it needs a value)", a);
        } else if (!in) {
            in = a;
        } else if (!out) {
            out = a;
        } else {
            return usage_error("convert takes IN and OUT; '%s' is one file too many", a);
        }
    }
    if (!out)
        return usage_error("convert needs %s", in ? "OUT" : "IN and OUT");
    tl_model *m = NULL;
    file_format from;
    tl_status st = open_model(&m, &from, in);
    if (st != TL_OK)
        return fail("convert", st);
    file_format to = output_format(out);
    switch (to) {
    case FORMAT_CHECKPOINT: st = tl_model_save(m, out, NULL); break;
    case FORMAT_SAFETENSORS: st = tl_model_save_safetensors(m, out, layout, NULL); break;
    case FORMAT_ONNX: st = tl_model_save_onnx(m, out, &onnx); break;
    }
    tl_model_free(m);
    if (st != TL_OK)
        return fail("convert", st);
    printf("%s (%s) -> %s (%s)\n", in, format_names[from], out, format_names[to]);
    return 0;
}

/* ---- tl predict ----------------------------------------------------------- */

static int is_directory(const char *path)
{
    struct stat s;
    return stat(path, &s) == 0 && S_ISDIR(s.st_mode);
}

/* A directory of IDX files, or else a CIFAR-10 file or directory, or an IDX
 * images file with its labels. The error of the likelier reader is kept. */
static tl_status load_data(tl_dataset **out, const char *path, const char *labels)
{
    if (labels)
        return tl_dataset_load_idx(out, path, labels, 0);
    if (is_directory(path)) {
        tl_status st = tl_dataset_load_mnist_dir(out, path, TL_SPLIT_TEST);
        if (st != TL_ENOTFOUND)
            return st;
    }
    return tl_dataset_load_cifar10(out, path, TL_SPLIT_TEST);
}

static size_t argmax(const float *v, size_t n)
{
    size_t best = 0;
    for (size_t i = 1; i < n; i++)
        if (v[i] > v[best])
            best = i;
    return best;
}

static int cmd_predict(int argc, char **argv)
{
    const char *model_path = NULL, *data_path = NULL, *labels = NULL;
    unsigned long show = 10, batch = 64, threads = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        int bad = 0;
        if (strcmp(a, "--labels") == 0 && i + 1 < argc)
            labels = argv[++i];
        else if (strcmp(a, "--show") == 0)
            bad = parse_uint(&show, a, i + 1 < argc ? argv[++i] : NULL, 1000000000);
        else if (strcmp(a, "--batch") == 0)
            bad = parse_uint(&batch, a, i + 1 < argc ? argv[++i] : NULL, 65536);
        else if (strcmp(a, "--threads") == 0)
            bad = parse_uint(&threads, a, i + 1 < argc ? argv[++i] : NULL, 1024);
        else if (a[0] == '-' && a[1] == '-')
            return usage_error("predict has no option %s (or it needs a value)", a);
        else if (!model_path)
            model_path = a;
        else if (!data_path)
            data_path = a;
        else
            return usage_error("predict takes MODEL and DATA; '%s' is one file too many", a);
        if (bad)
            return EXIT_USAGE;
    }
    if (!data_path)
        return usage_error("predict needs %s", model_path ? "DATA" : "MODEL and DATA");
    if (batch == 0)
        return usage_error("--batch must be at least 1, not %s", "0");

    tl_model *m = NULL;
    file_format fmt;
    tl_status st = open_model(&m, &fmt, model_path);
    if (st != TL_OK)
        return fail("predict", st);
    tl_dataset *ds = NULL;
    st = load_data(&ds, data_path, labels);
    if (st == TL_OK)
        st = tl_model_set_threads(m, (uint32_t)threads);
    tl_shape shape;
    size_t classes = 0, n = ds ? tl_dataset_count(ds) : 0;
    if (st == TL_OK && (st = tl_model_output_shape(&shape, m)) == TL_OK)
        classes = tl_shape_count(&shape);
    float *scores = NULL;
    if (st == TL_OK) {
        scores = malloc(n * classes * sizeof *scores);
        st = scores ? tl_model_predict(scores, n * classes, m, tl_dataset_images(ds), n, (uint32_t)batch)
                    : TL_ENOMEM;
    }
    if (st != TL_OK) {
        free(scores);
        tl_dataset_free(ds);
        tl_model_free(m);
        return fail("predict", st);
    }
    const int32_t *truth = tl_dataset_labels(ds);
    size_t right = 0;
    for (size_t i = 0; i < n; i++) {
        size_t p = argmax(scores + i * classes, classes);
        right += truth && (size_t)truth[i] == p;
        if (i < show)
            printf("%zu: class %zu (score %.4f)%s\n", i, p, (double)scores[i * classes + p],
                   truth ? (truth[i] == (int32_t)p ? ", right" : ", wrong") : "");
    }
    if (truth)
        printf("accuracy: %.4f (%zu of %zu)\n", n ? (double)right / (double)n : 0.0, right, n);
    free(scores);
    tl_dataset_free(ds);
    tl_model_free(m);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage_error("%s", "a command is needed: info, convert or predict");
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        fputs(usage_text, stdout);
        return 0;
    }
    if (strcmp(cmd, "--version") == 0) {
        printf("tl (libtl) %s\n", tl_version());
        return 0;
    }
    if (strcmp(cmd, "info") == 0)
        return cmd_info(argc - 2, argv + 2);
    if (strcmp(cmd, "convert") == 0)
        return cmd_convert(argc - 2, argv + 2);
    if (strcmp(cmd, "predict") == 0)
        return cmd_predict(argc - 2, argv + 2);
    return usage_error("unknown command '%s' (info, convert or predict)", cmd);
}
