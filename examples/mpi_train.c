/*
 * mpi_train.c - data-parallel training with libtl-mpi (tl/mpi.h): every
 * process loads the same data, takes its part of each global batch, and
 * the gradients are averaged with MPI_Allreduce after every step.
 *
 *   mpirun -np 2 mpi_train --data /usr/share/datasets/fashion-mnist --epochs 1
 *   mpirun -np 4 --hostfile hosts mpi_train --data cifar-10-binary.tar.gz --arch resnet20
 *
 * --batch is the global batch (each of N processes takes batch / N).
 * --limit N trains on the first N training examples. --out writes rank 0's
 * model; --compare FILE prints the largest difference between the trained
 * weights and those of FILE (e.g. the same run on one process).
 * --allreduce-bench times MPI_Allreduce of the seed CNN's and ResNet-20's
 * gradient sizes on 32 x 32 x 3 inputs and exits. docs/mpi.md shows how to
 * run on several machines and what to expect.
 */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tl/mpi.h>

#include "common.h"

static int rank_ = 0;

static int on_epoch(const tl_progress *p, void *payload)
{
    (void)payload;
    /* libtl-mpi calls it on rank 0 only, with the figures of every process. */
    printf("epoch %u/%u: loss %.4f, accuracy %.4f, %.1f s, %.0f examples/s (all processes)\n", p->epoch + 1,
           p->epochs, p->loss, p->accuracy, p->seconds, p->samples_per_second);
    fflush(stdout);
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median time of MPI_Allreduce (SUM, in place) of n floats. */
static double allreduce_seconds(size_t n, int reps)
{
    float *buf = calloc(n, sizeof *buf);
    double *t = malloc((size_t)reps * sizeof *t);
    if (buf == NULL || t == NULL) {
        fprintf(stderr, "mpi_train: out of memory\n");
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    for (int i = 0; i < 10; i++)
        MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    for (int i = 0; i < reps; i++) {
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = MPI_Wtime();
        MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        t[i] = MPI_Wtime() - t0;
    }
    /* Each rank's median; the slowest rank's is what a step waits for. */
    qsort(t, (size_t)reps, sizeof *t, cmp_double);
    double med = t[reps / 2];
    MPI_Allreduce(MPI_IN_PLACE, &med, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    free(buf);
    free(t);
    return med;
}

static void allreduce_bench(ex_options *opt, int size)
{
    const char *archs[2] = {"seed", "resnet20"};
    const char *names[2] = {"seed CNN", "ResNet-20"};
    if (rank_ == 0)
        printf("MPI_Allreduce over %d processes (median of 200, the slowest rank's):\n", size);
    double small = allreduce_seconds(16, 200);
    if (rank_ == 0)
        printf("  16 doubles (libtl-mpi's status word): %.1f us\n", small * 1e6);
    for (int a = 0; a < 2; a++) {
        ex_options o = *opt;
        o.arch = archs[a];
        tl_model *m = ex_build_model(&o, 32, 32, 3, 10);
        size_t n = tl_model_trainable_param_count(m);
        tl_model_free(m);
        double s = allreduce_seconds(n, 200);
        if (rank_ == 0)
            printf("  %s on 32x32x3, %zu trainable parameters (%.2f MB): %.3f ms, %.2f GB/s of buffer\n", names[a],
                   n, n * 4.0 / 1e6, s * 1e3, n * 4.0 / s / 1e9);
    }
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    ex_options opt = {.data = "/usr/share/datasets/fashion-mnist", .epochs = 1, .batch = 64, .lr = 1e-3,
                      .seed = 1, .threads = 1, .out = NULL};
    unsigned limit = 0, bench = 0, check_every = 0;
    const char *compare = NULL;
    const ex_flag flags[] = {
        {"--limit", EX_FLAG_UNSIGNED, &limit, "N", "train on the first N training examples only (0: all)"},
        {"--compare", EX_FLAG_STRING, &compare, "FILE", "print the largest weight difference from this model file"},
        {"--check-every", EX_FLAG_UNSIGNED, &check_every, "N", "compare the processes' parameter hashes every N steps"},
        {"--allreduce-bench", EX_FLAG_SWITCH, &bench, NULL, "time MPI_Allreduce of the gradient sizes and exit"},
    };
    const ex_program prog = {
        "mpi_train",
        "Trains the seed CNN (or --arch resnet20) on every process of an MPI run (mpirun -np N mpi_train ...),\n"
        "each taking its part of every global batch; the gradients are averaged with MPI_Allreduce.",
        "a directory of Fashion-MNIST's *-ubyte files, or CIFAR-10 (archive or directory)",
        "not used",
        "write rank 0's trained model to this file",
        flags,
        sizeof flags / sizeof flags[0],
        EX_RECIPE_ARCH | EX_RECIPE_TRAINING,
    };
    ex_parse(&opt, &prog, argc, argv);
    if (bench) {
        allreduce_bench(&opt, size);
        MPI_Finalize();
        return 0;
    }
    const char *set;
    tl_dataset *train = ex_load_ten_classes(opt.data, TL_SPLIT_TRAIN, &set);
    tl_dataset *test = ex_load_ten_classes(opt.data, TL_SPLIT_TEST, &set);
    if (limit && limit < tl_dataset_count(train)) {
        tl_dataset *part;
        CHECK(tl_dataset_slice(&part, train, 0, limit));
        tl_dataset_free(train);
        train = part;
    }
    uint32_t h, w, c;
    CHECK(tl_dataset_shape(&h, &w, &c, train));
    if (rank_ == 0)
        printf("libtl %s; %d process%s x %u thread%s; %s: %zu training, %zu test images; global batch %u (%u per "
               "process)\n", tl_version(), size, size == 1 ? "" : "es", opt.threads, opt.threads == 1 ? "" : "s", set,
               tl_dataset_count(train), tl_dataset_count(test), opt.batch, (opt.batch + size - 1) / size);
    tl_model *model = ex_build_model(&opt, h, w, c, 10);
    ex_compile_adam(model, opt.lr);

    tl_fit_options fo = TL_FIT_OPTIONS_INIT;
    fo.epochs = opt.epochs;
    fo.batch_size = opt.batch;
    fo.seed = opt.seed;
    fo.on_epoch = on_epoch;
    tl_augment_options aug = TL_AUGMENT_OPTIONS_INIT;
    if (opt.augment) {
        aug.crop_padding = h >= 32 ? 4 : 2;
        aug.flip_probability = 0.5;
        fo.augment = &aug;
    }
    tl_mpi_options mo = TL_MPI_OPTIONS_INIT;
    mo.check_every = check_every;
    double t0 = MPI_Wtime();
    tl_status st = tl_model_fit_mpi(model, train, &fo, MPI_COMM_WORLD, &mo);
    double seconds = MPI_Wtime() - t0;
    if (st) {
        fprintf(stderr, "mpi_train: rank %d: %s\n  %s\n", rank_, tl_status_str(st), tl_last_error());
        MPI_Finalize();
        return 1;
    }
    const size_t steps = opt.epochs * ((tl_dataset_count(train) + opt.batch - 1) / opt.batch);
    double loss, acc;
    st = tl_model_evaluate_mpi(&loss, &acc, model, test, 256, MPI_COMM_WORLD);
    if (st) {
        fprintf(stderr, "mpi_train: rank %d: %s\n  %s\n", rank_, tl_status_str(st), tl_last_error());
        MPI_Finalize();
        return 1;
    }
    if (rank_ == 0) {
        printf("fit: %.2f s, %zu steps, %.2f ms per step, %.0f examples/s; test loss %.4f, accuracy %.4f\n", seconds,
               steps, seconds / steps * 1e3, tl_dataset_count(train) * opt.epochs / seconds, loss, acc);
        if (opt.out)
            ex_save_model(model, opt.out);
        if (compare) {
            tl_model *other = ex_load_model(compare);
            double d = 0.0;
            size_t n = 0;
            for (size_t i = 0; i < tl_model_num_layers(model); i++) {
                tl_layer *a, *b;
                CHECK(tl_model_layer(&a, model, i));
                CHECK(tl_model_layer(&b, other, i));
                for (size_t k = 0; k < tl_layer_num_params(a); k++) {
                    tl_param_info info;
                    CHECK(tl_layer_param_info(&info, a, k));
                    float *x = malloc(info.count * sizeof *x), *y = malloc(info.count * sizeof *y);
                    CHECK(tl_layer_get_weights(x, info.count, a, k));
                    CHECK(tl_layer_get_weights(y, info.count, b, k));
                    for (size_t j = 0; j < info.count; j++)
                        if (fabs((double)x[j] - y[j]) > d)
                            d = fabs((double)x[j] - y[j]);
                    n += info.count;
                    free(x);
                    free(y);
                }
            }
            printf("largest difference from %s over %zu values: %.3g\n", compare, n, d);
            tl_model_free(other);
        }
    }
    tl_model_free(model);
    tl_dataset_free(train);
    tl_dataset_free(test);
    MPI_Finalize();
    return 0;
}
