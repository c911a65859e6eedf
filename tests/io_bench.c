/* io_bench.c - tl-io-bench: file sizes and save/load times of the document's
 * CIFAR-10 CNN (th_seed_cnn(32, 32, 3, 10)) as a checkpoint (with and
 * without Adam state) and as safetensors; medians of N runs. Built, not run
 * as a test; the numbers go into the measurements.
 * Usage: tl-io-bench DIR [RUNS] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "helpers.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void check(tl_status st, const char *what)
{
    if (st != TL_OK) {
        fprintf(stderr, "%s: %s\n", what, tl_last_error());
        exit(1);
    }
}

static long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

/* The payload size from the checkpoint header (bytes 16..23). */
static unsigned long long raw_size(const char *path)
{
    unsigned char h[24];
    FILE *f = fopen(path, "rb");
    unsigned long long v = 0;
    if (f && fread(h, 1, 24, f) == 24)
        for (int i = 7; i >= 0; i--)
            v = v << 8 | h[16 + i];
    if (f)
        fclose(f);
    return v;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: tl-io-bench DIR [RUNS]\n");
        return 2;
    }
    const int runs = argc > 2 ? atoi(argv[2]) : 21;
    double *t = malloc((size_t)runs * sizeof *t);
    char path[4096];
    tl_model *m = th_seed_cnn(32, 32, 3, 10, 1);
    tl_optimizer *adam;
    check(tl_optimizer_create_adam(&adam, NULL), "adam");
    check(tl_model_compile(m, adam, TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY), "compile");
    /* A few steps, so the weights are trained ones and Adam has its state. */
    enum { B = 32 };
    float *x = malloc(sizeof(float) * B * 32 * 32 * 3);
    int32_t y[B];
    th_fill_uniform(x, (size_t)B * 32 * 32 * 3, 0.0f, 1.0f, 7);
    for (int i = 0; i < B; i++)
        y[i] = i % 10;
    for (int s = 0; s < 20; s++)
        check(tl_model_train_step(NULL, m, x, y, NULL, B), "train_step");
    printf("model: %zu parameters (%zu bytes as float32), Adam state %zu bytes\n", tl_model_param_count(m),
           tl_model_param_count(m) * 4, tl_model_optimizer_state_bytes(m));
    printf("%-40s %10s %10s %10s %10s\n", "file", "bytes", "raw", "save ms", "load ms");

    struct {
        const char *name;
        int opt, level;
    } cases[] = {{"checkpoint, Adam state, level 6", 1, 6}, {"checkpoint, no optimizer, level 6", 0, 6},
                 {"checkpoint, Adam state, level 1", 1, 1}, {"checkpoint, no optimizer, level 0", 0, 0},
                 {"checkpoint, no optimizer, level 9", 0, 9}};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        snprintf(path, sizeof path, "%s/bench-%zu.tlm", argv[1], c);
        tl_save_options so = TL_SAVE_OPTIONS_INIT;
        so.include_optimizer = cases[c].opt;
        so.compression_level = cases[c].level;
        for (int r = 0; r < runs; r++) {
            double t0 = now();
            check(tl_model_save(m, path, &so), "save");
            t[r] = now() - t0;
        }
        double save = median(t, runs);
        for (int r = 0; r < runs; r++) {
            tl_model *l;
            double t0 = now();
            check(tl_model_load(&l, path), "load");
            t[r] = now() - t0;
            tl_model_free(l);
        }
        double load = median(t, runs);
        printf("%-40s %10ld %10llu %10.2f %10.2f\n", cases[c].name, file_size(path), raw_size(path), 1e3 * save,
               1e3 * load);
        if (c == 0) {
            for (int r = 0; r < runs; r++) {
                tl_checkpoint_info *info;
                double t0 = now();
                check(tl_checkpoint_info_read(&info, path), "info");
                t[r] = now() - t0;
                tl_checkpoint_info_free(info);
            }
            printf("%-40s %10s %10s %10s %10.2f\n", "  tl_checkpoint_info_read of it", "", "", "", 1e3 * median(t, runs));
        }
    }
    const tl_tensor_layout layouts[] = {TL_LAYOUT_KERAS, TL_LAYOUT_PYTORCH};
    for (int k = 0; k < 2; k++) {
        snprintf(path, sizeof path, "%s/bench-%d.safetensors", argv[1], k);
        for (int r = 0; r < runs; r++) {
            double t0 = now();
            check(tl_model_save_safetensors(m, path, layouts[k], NULL), "save_safetensors");
            t[r] = now() - t0;
        }
        double save = median(t, runs);
        for (int r = 0; r < runs; r++) {
            double t0 = now();
            check(tl_model_load_safetensors(NULL, m, path, layouts[k], NULL), "load_safetensors");
            t[r] = now() - t0;
        }
        printf("%-40s %10ld %10s %10.2f %10.2f\n", k ? "safetensors, PyTorch layout" : "safetensors, Keras layout",
               file_size(path), "", 1e3 * save, 1e3 * median(t, runs));
    }
    free(x);
    free(t);
    tl_model_free(m);
    return 0;
}
