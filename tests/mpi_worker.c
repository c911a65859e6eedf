/*
 * mpi_worker.c - one process of the mpi suite's runs (test_mpi.c starts it
 * with mpirun -np 2, or alone for the one-process reference). Usage:
 *   mpi_worker SCENARIO OUTDIR
 * Each process writes OUTDIR/SCENARIO_rR.txt (its status, message, the
 * batches it began and the evaluation figures) and OUTDIR/SCENARIO_rR.bin
 * (every tensor of its model after the run), for test_mpi.c to compare.
 * Scenarios: ref, fit, bn_ref, bn, bn_sync, resume_full, resume_part, eval and the
 * faults fault_label, fault_nan, fault_stop_begin, fault_stop_batch,
 * fault_stop_epoch, fault_checkpoint, fault_model, fault_nomem, fault_mpi.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <tl/mpi.h>

#include "helpers.h"

#define N_TRAIN 192
#define BATCH 32 /* the global batch; each of 2 processes takes 16 */
#define SEED 7

typedef struct run {
    int rank;
    const char *scenario;
    size_t begun; /* batches begun on this process */
} run;

static void write_params(const char *dir, const char *scenario, int rank, const tl_model *m)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s_r%d.bin", dir, scenario, rank);
    size_t n = 0;
    float *v = m ? th_all_params(m, &n) : NULL;
    FILE *f = fopen(path, "wb");
    if (f) {
        if (v)
            fwrite(v, sizeof *v, n, f);
        fclose(f);
    }
    free(v);
}

static void write_status(const char *dir, const run *r, tl_status st, const char *msg, double loss, double acc)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s_r%d.txt", dir, r->scenario, r->rank);
    FILE *f = fopen(path, "w");
    if (f) {
        fprintf(f, "status=%d\nbatches=%zu\nloss=%.17g\naccuracy=%.17g\nmessage=%s\n", (int)st, r->begun, loss, acc,
                msg);
        fclose(f);
    }
}

static tl_model *model_for(int bn, uint32_t classes)
{
    if (!bn) {
        tl_model *m = th_seed_cnn(12, 12, 1, classes, SEED);
        tl_optimizer *opt = NULL;
        if (m == NULL || tl_optimizer_create_adam(&opt, NULL) ||
            tl_model_compile(m, opt, TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY)) {
            tl_model_free(m);
            return NULL;
        }
        return m;
    }
    /* conv -> batchnorm -> relu -> pool -> flatten -> dense */
    tl_model *m = NULL;
    tl_optimizer *opt = NULL;
    tl_conv2d_options conv = TL_CONV2D_OPTIONS_INIT;
    tl_batchnorm_options bno = TL_BATCHNORM_OPTIONS_INIT;
    tl_activation_options act = TL_ACTIVATION_OPTIONS_INIT;
    tl_maxpool2d_options pool = TL_MAXPOOL2D_OPTIONS_INIT;
    tl_dense_options dense = TL_DENSE_OPTIONS_INIT;
    conv.filters = 8;
    conv.use_bias = 0;
    bno.momentum = 0.9f;
    act.activation = TL_ACT_RELU;
    dense.units = classes;
    dense.activation = TL_ACT_SOFTMAX;
    if (tl_model_create(&m, 12, 12, 1, SEED) || tl_model_set_threads(m, 1) ||
        tl_model_add_conv2d(NULL, m, &conv) || tl_model_add_batchnorm(NULL, m, &bno) ||
        tl_model_add_activation(NULL, m, &act) || tl_model_add_maxpool2d(NULL, m, &pool) ||
        tl_model_add_flatten(NULL, m, NULL) || tl_model_add_dense(NULL, m, &dense) ||
        tl_optimizer_create_adam(&opt, NULL) ||
        tl_model_compile(m, opt, TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY)) {
        tl_model_free(m);
        return NULL;
    }
    return m;
}

/* The faults, provoked on one process. */
static int on_batch_begin(tl_batch *b, void *payload)
{
    run *r = payload;
    r->begun++;
    if (r->rank != 1 || b->batch != 2)
        return 0;
    if (strcmp(r->scenario, "fault_label") == 0)
        b->labels[1] = 99;
    else if (strcmp(r->scenario, "fault_nan") == 0)
        b->inputs[5] = NAN;
    else if (strcmp(r->scenario, "fault_stop_begin") == 0)
        return 1;
    return 0;
}

static int on_batch(const tl_progress *p, void *payload)
{
    run *r = payload;
    return strcmp(r->scenario, "fault_stop_batch") == 0 && p->batch == 3;
}

static int on_epoch(const tl_progress *p, void *payload)
{
    run *r = payload;
    return strcmp(r->scenario, "fault_stop_epoch") == 0 && p->epoch == 0;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: mpi_worker SCENARIO OUTDIR\n");
        return 2;
    }
    const char *sc = argv[1], *dir = argv[2];
    const int single = strcmp(sc, "ref") == 0 || strcmp(sc, "bn_ref") == 0;
    run r = {0, sc, 0};
    if (!single) {
        MPI_Init(&argc, &argv);
        MPI_Comm_rank(MPI_COMM_WORLD, &r.rank);
    }
    const int bn = strncmp(sc, "bn", 2) == 0;
    tl_dataset *train = th_quadrant_dataset(N_TRAIN, 12, 12, 1, 11);
    tl_dataset *val = th_quadrant_dataset(50, 12, 12, 1, 12);
    tl_model *m = NULL;
    tl_status st = TL_OK;
    if (strcmp(sc, "resume_part") == 0) {
        char path[512];
        snprintf(path, sizeof path, "%s/ck_1.tlm", dir);
        st = tl_model_load(&m, path);
        if (st == TL_OK)
            st = tl_model_set_threads(m, 1);
    } else {
        /* fault_model: rank 1's head is wider. */
        m = model_for(bn, strcmp(sc, "fault_model") == 0 && r.rank == 1 ? 5 : 4);
    }
    tl_fit_options fo = TL_FIT_OPTIONS_INIT;
    fo.epochs = 2;
    fo.batch_size = single ? BATCH : BATCH;
    fo.seed = strcmp(sc, "resume_part") == 0 ? 0 : 99;
    fo.validation = val;
    fo.on_batch_begin = on_batch_begin;
    fo.on_batch = on_batch;
    fo.on_epoch = on_epoch;
    fo.payload = &r;
    fo.sync_batchnorm = strcmp(sc, "bn_sync") == 0;
    char ck[512];
    if (strcmp(sc, "resume_full") == 0) {
        snprintf(ck, sizeof ck, "%s/ck_{epoch}.tlm", dir);
        fo.checkpoint_path = ck;
        fo.checkpoint_every = 1;
    } else if (strcmp(sc, "fault_checkpoint") == 0) {
        snprintf(ck, sizeof ck, "%s/no/such/dir/ck.tlm", dir);
        fo.checkpoint_path = ck;
        fo.checkpoint_every = 1;
    }
    if (strcmp(sc, "resume_part") == 0)
        fo.epochs = 1;
    tl_mpi_options mo = TL_MPI_OPTIONS_INIT;
    mo.check_every = 1;
    double loss = NAN, acc = NAN;
    if (m == NULL && st == TL_OK)
        st = TL_ENOMEM;
    if (st == TL_OK && strcmp(sc, "fault_nomem") == 0 && r.rank == 1) {
        /* Leave this process a little more address space than it uses now:
         * fit's workspace and gradient buffers no longer fit. */
        FILE *f = fopen("/proc/self/statm", "r");
        unsigned long pages = 0;
        if (f && fscanf(f, "%lu", &pages) == 1) {
            struct rlimit rl = {(rlim_t)pages * 4096 + (1u << 20), RLIM_INFINITY};
            rl.rlim_max = RLIM_INFINITY;
            setrlimit(RLIMIT_AS, &rl);
        }
        if (f)
            fclose(f);
    }
    if (st == TL_OK) {
        if (single)
            st = tl_model_fit(m, train, &fo);
        else if (strcmp(sc, "eval") == 0)
            st = tl_model_evaluate_mpi(&loss, &acc, m, val, 8, MPI_COMM_WORLD);
        else if (strcmp(sc, "fault_mpi") == 0) {
            /* An MPI error: a null communicator. MPI raises it on the world
             * communicator's handler, which must return for libtl to see it. */
            MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
            st = tl_model_fit_mpi(m, train, &fo, MPI_COMM_NULL, &mo);
        }
        else
            st = tl_model_fit_mpi(m, train, &fo, MPI_COMM_WORLD, &mo);
    }
    if (strcmp(sc, "fault_nomem") == 0 && r.rank == 1) {
        struct rlimit rl = {RLIM_INFINITY, RLIM_INFINITY};
        setrlimit(RLIMIT_AS, &rl);
    }
    if (st == TL_OK && strcmp(sc, "eval") == 0) {
        /* The same figures from one process, for the test to compare. */
        double l1, a1;
        st = tl_model_evaluate(&l1, &a1, m, val, 8);
        char msg[128];
        snprintf(msg, sizeof msg, "local %.17g %.17g", l1, a1);
        write_status(dir, &r, st, msg, loss, acc);
    } else if (strcmp(sc, "fault_mpi") == 0) {
        /* The test looks for MPI's own text of the error in libtl's message. */
        char text[MPI_MAX_ERROR_STRING + 1], msg[2048];
        int len = 0;
        MPI_Error_string(MPI_ERR_COMM, text, &len);
        text[len > 0 ? len : 0] = '\0';
        snprintf(msg, sizeof msg, "%s|%s", st ? tl_last_error() : "", text);
        write_status(dir, &r, st, msg, loss, acc);
    } else {
        write_status(dir, &r, st, st ? tl_last_error() : "", loss, acc);
    }
    write_params(dir, sc, r.rank, m);
    tl_model_free(m);
    tl_dataset_free(train);
    tl_dataset_free(val);
    if (!single)
        MPI_Finalize();
    return 0;
}
