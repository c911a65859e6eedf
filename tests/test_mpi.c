/*
 * test_mpi.c - the mpi suite: libtl-mpi's data-parallel fit and evaluation
 * run under `mpirun -np 2 --oversubscribe` (tests/mpi_worker.c is the
 * program each process runs; it writes its status, message and tensors to
 * a directory this test reads). Exits 77 (skipped) only when mpirun is
 * missing.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "helpers.h"

static const char *mpirun_path = TL_MPIRUN;
static const char *worker_path = TL_MPI_WORKER;
static const char *valgrind_path = TL_VALGRIND;
static const char *suppressions = TL_MPI_SUPP;

/* Built with AddressSanitizer (scripts/hardening.sh): ASan checks every
 * process's memory accesses, but not its leaks - Open MPI unloads its
 * components in MPI_Finalize, so what they keep until exit shows up in
 * LeakSanitizer's report with frames of no module, which no suppression
 * can name. The leak check is valgrind's, in the regular build (no_leaks),
 * with Open MPI's own allocations suppressed (tests/mpi.supp). The
 * address-space limit of fault_nomem would starve ASan itself. */
#if defined(__SANITIZE_ADDRESS__)
#define TL_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TL_ASAN 1
#endif
#endif
#ifndef TL_ASAN
#define TL_ASAN 0
#endif

static char *new_dir(void)
{
    char *d = strdup("/tmp/tl-mpi-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(d));
    return d;
}

static void remove_dir(char *d)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
    ck_assert_int_eq(system(cmd), 0);
    free(d);
}

/* Run a scenario on 2 processes (or one, without mpirun); the worker
 * itself always exits 0, so anything else is a crash or a hang (timeout).
 * `tool` (may be "") goes before the worker (valgrind). */
static void run_with(const char *dir, const char *scenario, int processes, const char *tool)
{
    char cmd[3072];
    if (processes == 1)
        snprintf(cmd, sizeof cmd, "OMP_NUM_THREADS=1 '%s' %s '%s' > '%s/%s.log' 2>&1", worker_path, scenario, dir, dir,
                 scenario);
    else
        snprintf(cmd, sizeof cmd,
                 "OMP_NUM_THREADS=1 LSAN_OPTIONS=detect_leaks=0 timeout 900 '%s' -np %d "
                 "--oversubscribe %s --mca btl self,vader -x LSAN_OPTIONS %s '%s' %s '%s' > '%s/%s.log' 2>&1",
                 mpirun_path, processes, geteuid() == 0 ? "--allow-run-as-root" : "", tool,
                 worker_path, scenario, dir, dir, scenario);
    int rc = system(cmd);
    if (rc != 0) {
        char log[600];
        snprintf(log, sizeof log, "cat '%s/%s.log' >&2", dir, scenario);
        if (system(log) != 0)
            fprintf(stderr, "(no log)\n");
    }
    ck_assert_msg(rc == 0, "%s on %d process(es) exited with %d (124: it hung; 33: valgrind found a leak)", scenario,
                  processes, rc);
}

static void run(const char *dir, const char *scenario, int processes)
{
    run_with(dir, scenario, processes, "");
}

typedef struct outcome {
    int status;
    size_t batches;
    double loss, accuracy;
    char message[2048];
} outcome;

static outcome result(const char *dir, const char *scenario, int rank)
{
    outcome o;
    memset(&o, 0, sizeof o);
    char path[600];
    snprintf(path, sizeof path, "%s/%s_r%d.txt", dir, scenario, rank);
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "%s: rank %d wrote no result", scenario, rank);
    ck_assert_int_eq(fscanf(f, "status=%d\nbatches=%zu\nloss=%lf\naccuracy=%lf\nmessage=", &o.status, &o.batches,
                            &o.loss, &o.accuracy), 4);
    if (fgets(o.message, sizeof o.message, f) == NULL)
        o.message[0] = '\0';
    o.message[strcspn(o.message, "\n")] = '\0';
    fclose(f);
    return o;
}

static float *params(const char *dir, const char *scenario, int rank, size_t *n)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s_r%d.bin", dir, scenario, rank);
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "no %s", path);
    fseek(f, 0, SEEK_END);
    long bytes = ftell(f);
    fseek(f, 0, SEEK_SET);
    *n = (size_t)bytes / sizeof(float);
    float *v = malloc(bytes ? (size_t)bytes : 1);
    ck_assert_uint_eq(fread(v, sizeof *v, *n, f), *n);
    fclose(f);
    return v;
}

static double max_diff(const float *a, const float *b, size_t n)
{
    double d = 0.0;
    for (size_t i = 0; i < n; i++)
        if (fabs((double)a[i] - b[i]) > d)
            d = fabs((double)a[i] - b[i]);
    return d;
}

static void assert_ok(const char *dir, const char *scenario, int rank)
{
    outcome o = result(dir, scenario, rank);
    ck_assert_msg(o.status == TL_OK, "%s rank %d: %s: %s", scenario, rank, tl_status_str((tl_status)o.status),
                  o.message);
}

/* Both ranks end with the same bits; returns rank 0's tensors. */
static float *same_on_both(const char *dir, const char *scenario, size_t *n)
{
    size_t n1;
    float *a = params(dir, scenario, 0, n), *b = params(dir, scenario, 1, &n1);
    ck_assert_uint_eq(*n, n1);
    ck_assert_msg(memcmp(a, b, *n * sizeof *a) == 0, "%s: the ranks' tensors differ (largest %g)", scenario,
                  max_diff(a, b, *n));
    free(b);
    return a;
}

START_TEST(equals_one_process_at_the_doubled_batch)
{
    char *dir = new_dir();
    run(dir, "ref", 1);
    run(dir, "fit", 2);
    assert_ok(dir, "ref", 0);
    assert_ok(dir, "fit", 0);
    assert_ok(dir, "fit", 1);
    size_t n, nr;
    float *mpi = same_on_both(dir, "fit", &n);
    float *ref = params(dir, "ref", 0, &nr);
    ck_assert_uint_eq(n, nr);
    ck_assert_uint_gt(n, 1000);
    const double d = max_diff(mpi, ref, n);
    printf("2 ranks x batch 16 vs 1 process x batch 32, 2 epochs (12 steps, Adam): largest weight difference %.3g\n",
           d);
    ck_assert_msg(d < 1e-4, "2 ranks differ from one process by %g", d);
    /* The same figures: rank 0's validation matches the reference's history row. */
    free(mpi);
    free(ref);
    remove_dir(dir);
}
END_TEST

START_TEST(repeats_bit_for_bit)
{
    char *a = new_dir(), *b = new_dir();
    run(a, "fit", 2);
    run(b, "fit", 2);
    size_t na, nb;
    float *pa = same_on_both(a, "fit", &na), *pb = same_on_both(b, "fit", &nb);
    ck_assert_uint_eq(na, nb);
    ck_assert(memcmp(pa, pb, na * sizeof *pa) == 0);
    free(pa);
    free(pb);
    remove_dir(a);
    remove_dir(b);
}
END_TEST

START_TEST(resumes_from_rank_0s_checkpoint)
{
    char *dir = new_dir();
    run(dir, "resume_full", 2);
    assert_ok(dir, "resume_full", 0);
    char path[600];
    struct stat sb;
    snprintf(path, sizeof path, "%s/ck_1.tlm", dir);
    ck_assert_int_eq(stat(path, &sb), 0);
    run(dir, "resume_part", 2);
    assert_ok(dir, "resume_part", 0);
    assert_ok(dir, "resume_part", 1);
    size_t nf, np;
    float *full = same_on_both(dir, "resume_full", &nf), *part = same_on_both(dir, "resume_part", &np);
    ck_assert_uint_eq(nf, np);
    ck_assert_msg(memcmp(full, part, nf * sizeof *full) == 0, "the resumed run differs by %g",
                  max_diff(full, part, nf));
    free(full);
    free(part);
    remove_dir(dir);
}
END_TEST

START_TEST(local_batchnorm_stays_equal)
{
    char *dir = new_dir();
    run(dir, "bn", 2);
    run(dir, "bn_ref", 1);
    assert_ok(dir, "bn", 0);
    assert_ok(dir, "bn", 1);
    size_t n, nr;
    float *mpi = same_on_both(dir, "bn", &n); /* moving statistics included */
    float *ref = params(dir, "bn_ref", 0, &nr);
    ck_assert_uint_eq(n, nr);
    const double d = max_diff(mpi, ref, n);
    printf("batchnorm, local statistics: 2 ranks x 16 vs 1 process x 32 differ by up to %.3g (each rank normalizes "
           "with its own 16 examples)\n", d);
    ck_assert(d > 0.0);
    free(mpi);
    free(ref);
    remove_dir(dir);
}
END_TEST

START_TEST(synchronized_batchnorm_equals_one_process)
{
    char *dir = new_dir();
    run(dir, "bn_sync", 2);
    run(dir, "bn", 2);
    run(dir, "bn_ref", 1);
    assert_ok(dir, "bn_sync", 0);
    assert_ok(dir, "bn_sync", 1);
    size_t n, nl, nr;
    float *sync = same_on_both(dir, "bn_sync", &n), *local = same_on_both(dir, "bn", &nl);
    float *ref = params(dir, "bn_ref", 0, &nr);
    ck_assert_uint_eq(n, nr);
    ck_assert_uint_eq(n, nl);
    const double ds = max_diff(sync, ref, n), dl = max_diff(local, ref, n);
    printf("batchnorm vs 1 process x 32: synchronized 2 x 16 differs by up to %.3g, local 2 x 16 by %.3g\n", ds, dl);
    ck_assert_msg(ds < 1e-4, "synchronized batchnorm differs from one process by %g", ds);
    ck_assert(dl > 100 * ds);
    free(sync);
    free(local);
    free(ref);
    remove_dir(dir);
}
END_TEST

START_TEST(evaluates_the_whole_set)
{
    char *dir = new_dir();
    run(dir, "eval", 2);
    for (int r = 0; r < 2; r++) {
        outcome o = result(dir, "eval", r);
        ck_assert_msg(o.status == TL_OK, "%s", o.message);
        double l1, a1;
        ck_assert_int_eq(sscanf(o.message, "local %lf %lf", &l1, &a1), 2);
        /* The same loss up to the order of the float sums of the batches. */
        ck_assert_close(o.loss, l1, 1e-6 * fabs(l1));
        ck_assert_close(o.accuracy, a1, 0.0);
    }
    remove_dir(dir);
}
END_TEST

/* One process fails; both return an error at the same step; the other
 * one's message names the failing rank and its reason. */
/* `bad_batches`, `other_batches`: the batches each began (the other at
 * most one more: it hears of the failure at its next exchange). */
static void fault(const char *scenario, int failing, tl_status status, const char *needle, size_t bad_batches,
                  size_t other_batches)
{
    char *dir = new_dir();
    run(dir, scenario, 2);
    outcome bad = result(dir, scenario, failing), other = result(dir, scenario, 1 - failing);
    ck_assert_msg(bad.status == (int)status, "%s: rank %d returned %s: %s", scenario, failing,
                  tl_status_str((tl_status)bad.status), bad.message);
    ck_assert_msg(strstr(bad.message, needle), "%s: '%s' lacks '%s'", scenario, bad.message, needle);
    ck_assert_msg(other.status == TL_EPEER, "%s: rank %d returned %s: %s", scenario, 1 - failing,
                  tl_status_str((tl_status)other.status), other.message);
    char who[64];
    snprintf(who, sizeof who, "rank %d of 2 failed with %s", failing, tl_status_str(status));
    ck_assert_msg(strstr(other.message, who) && strstr(other.message, needle), "%s: '%s' lacks '%s' or '%s'",
                  scenario, other.message, who, needle);
    ck_assert_uint_eq(bad.batches, bad_batches);
    ck_assert_uint_eq(other.batches, other_batches);
    remove_dir(dir);
}

START_TEST(fault_bad_label)
{
    fault("fault_label", 1, TL_ERANGE, "label 99", 3, 3);
}
END_TEST

START_TEST(fault_nonfinite)
{
    fault("fault_nan", 1, TL_ENUMERIC, "not finite", 3, 3);
}
END_TEST

START_TEST(fault_batch_begin_stop)
{
    fault("fault_stop_begin", 1, TL_ECANCELED, "batch-begin callback", 3, 3);
}
END_TEST

START_TEST(fault_rank0_progress_stop)
{
    fault("fault_stop_batch", 0, TL_ECANCELED, "batch callback", 3, 4);
}
END_TEST

START_TEST(fault_rank0_epoch_stop)
{
    fault("fault_stop_epoch", 0, TL_ECANCELED, "epoch callback", 6, 7);
}
END_TEST

START_TEST(fault_checkpoint_write)
{
    fault("fault_checkpoint", 0, TL_EIO, "no/such/dir", 6, 7);
}
END_TEST

START_TEST(fault_other_model)
{
    char *dir = new_dir();
    run(dir, "fault_model", 2);
    for (int r = 0; r < 2; r++) {
        outcome o = result(dir, "fault_model", r);
        ck_assert_msg(o.status == TL_EINVAL && strstr(o.message, "models differ"), "rank %d: %s: %s", r,
                      tl_status_str((tl_status)o.status), o.message);
        ck_assert_uint_eq(o.batches, 0);
    }
    remove_dir(dir);
}
END_TEST

/* An error MPI itself returns (here for a null communicator) is TL_EPEER
 * with the call and MPI's own error string, on every process, and the
 * model is untouched. */
START_TEST(fault_mpi_error)
{
    char *dir = new_dir();
    run(dir, "fault_mpi", 2);
    for (int r = 0; r < 2; r++) {
        outcome o = result(dir, "fault_mpi", r);
        ck_assert_msg(o.status == TL_EPEER, "rank %d returned %s: %s", r, tl_status_str((tl_status)o.status),
                      o.message);
        /* The worker appends "|" and MPI_Error_string(MPI_ERR_COMM). */
        char *bar = strrchr(o.message, '|');
        ck_assert_msg(bar && bar[1] != '\0', "rank %d: no MPI text after '%s'", r, o.message);
        *bar = '\0';
        ck_assert_msg(strstr(o.message, "tl_model_fit_mpi") && strstr(o.message, "MPI_Comm_dup failed") &&
                          strstr(o.message, bar + 1),
                      "rank %d: '%s' lacks the call or MPI's text '%s'", r, o.message, bar + 1);
        ck_assert_uint_eq(o.batches, 0);
    }
    remove_dir(dir);
}
END_TEST

START_TEST(fault_out_of_memory)
{
    if (TL_ASAN) {
        printf("built with ASan: fault_nomem's address-space limit would starve ASan; not run\n");
        return;
    }
    fault("fault_nomem", 1, TL_ENOMEM, "out of memory", 0, 1);
}
END_TEST

/* Nothing of libtl's leaks on a run that succeeds or on one that fails on
 * a process (Open MPI's own allocations are suppressed: tests/mpi.supp). */
START_TEST(no_leaks)
{
    if (TL_ASAN) {
        printf("built with ASan: valgrind cannot run it; the regular build's run of this test checks leaks\n");
        return;
    }
    if (access(valgrind_path, X_OK) != 0) {
        printf("valgrind not found: the leak check did not run\n");
        return;
    }
    char tool[1024];
    snprintf(tool, sizeof tool,
             "'%s' -q --undef-value-errors=no --leak-check=full --errors-for-leak-kinds=definite,indirect "
             "--show-leak-kinds=definite,indirect --error-exitcode=33 --suppressions='%s'",
             valgrind_path, suppressions);
    const char *scenarios[] = {"fit", "fault_label"};
    for (size_t i = 0; i < 2; i++) {
        char *dir = new_dir();
        run_with(dir, scenarios[i], 2, tool);
        remove_dir(dir);
    }
}
END_TEST

int main(void)
{
    if (access(mpirun_path, X_OK) != 0) {
        printf("mpirun (%s) not found: skipped\n", mpirun_path);
        return 77;
    }
    Suite *s = suite_create("mpi");
    TCase *tc = tcase_create("mpi");
    tcase_set_timeout(tc, 900);
    tcase_add_test(tc, equals_one_process_at_the_doubled_batch);
    tcase_add_test(tc, repeats_bit_for_bit);
    tcase_add_test(tc, resumes_from_rank_0s_checkpoint);
    tcase_add_test(tc, local_batchnorm_stays_equal);
    tcase_add_test(tc, synchronized_batchnorm_equals_one_process);
    tcase_add_test(tc, evaluates_the_whole_set);
    tcase_add_test(tc, fault_bad_label);
    tcase_add_test(tc, fault_nonfinite);
    tcase_add_test(tc, fault_batch_begin_stop);
    tcase_add_test(tc, fault_rank0_progress_stop);
    tcase_add_test(tc, fault_rank0_epoch_stop);
    tcase_add_test(tc, fault_checkpoint_write);
    tcase_add_test(tc, fault_other_model);
    tcase_add_test(tc, fault_out_of_memory);
    tcase_add_test(tc, fault_mpi_error);
    tcase_add_test(tc, no_leaks);
    suite_add_tcase(s, tc);
    return th_run(s);
}
