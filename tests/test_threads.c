/*
 * test_threads.c - libtl from several threads at once. Two models trained
 * at the same time in two threads give the same bits as each trained
 * alone (with one thread each, and with two each); the threads start
 * together on a process's first BLIS call; while they train, other threads
 * save, load, transfer and extract features; tl_last_error() is each
 * thread's own. docs/hardening.md says how this suite runs under
 * ThreadSanitizer and helgrind.
 */
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

#include "helpers.h"

#define SIDE 12
#define N 96

/* Small by default; TL_TEST_REDUCED (valgrind, sanitizers) makes it smaller. */
static uint32_t epochs(void)
{
    return getenv("TL_TEST_REDUCED") ? 1 : 2;
}

static char tmpdir[64];

/* One training job: a model of its own, a dataset that may be shared. */
typedef struct job {
    uint64_t seed;
    uint32_t threads;
    const tl_dataset *data;
    pthread_barrier_t *start; /* NULL: run at once */
    tl_status status;
    char error[1024];
    float *params;
    size_t nparams;
} job;

static void *train(void *arg)
{
    job *j = arg;
    j->status = TL_OK;
    j->params = NULL;
    if (j->start)
        pthread_barrier_wait(j->start);
    tl_model *m = th_seed_cnn(SIDE, SIDE, 3, 4, j->seed);
    tl_optimizer *o = NULL;
    tl_status st = m ? tl_model_set_threads(m, j->threads) : TL_ENOMEM;
    if (st == TL_OK)
        st = tl_optimizer_create_adam(&o, NULL);
    if (st == TL_OK)
        st = tl_model_compile(m, o, TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY);
    tl_fit_options fo = TL_FIT_OPTIONS_INIT;
    fo.epochs = epochs();
    fo.batch_size = 16;
    if (st == TL_OK)
        st = tl_model_fit(m, j->data, &fo);
    j->status = st;
    snprintf(j->error, sizeof j->error, "%s", st ? tl_last_error() : "");
    if (st == TL_OK)
        j->params = th_all_params(m, &j->nparams);
    tl_model_free(m);
    return NULL;
}

static void assert_same(const job *a, const job *b, const char *what)
{
    ck_assert_msg(a->status == TL_OK && b->status == TL_OK, "%s: %s / %s", what, a->error, b->error);
    ck_assert_uint_eq(a->nparams, b->nparams);
    size_t diff = 0;
    for (size_t i = 0; i < a->nparams; i++)
        diff += memcmp(&a->params[i], &b->params[i], sizeof(float)) != 0;
    ck_assert_msg(diff == 0, "%s: %zu of %zu parameters differ", what, diff, a->nparams);
}

/* Both jobs in two threads started together, then each alone. */
static void together_equals_alone(uint32_t threads)
{
    tl_dataset *data = th_quadrant_dataset(N, SIDE, SIDE, 3, 5);
    ck_assert_ptr_nonnull(data);
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, 2);
    job a = {1, threads, data, &start, 0, "", NULL, 0}, b = {2, threads, data, &start, 0, "", NULL, 0};
    pthread_t ta, tb;
    ck_assert_int_eq(pthread_create(&ta, NULL, train, &a), 0);
    ck_assert_int_eq(pthread_create(&tb, NULL, train, &b), 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    pthread_barrier_destroy(&start);
    job a1 = {1, threads, data, NULL, 0, "", NULL, 0}, b1 = {2, threads, data, NULL, 0, "", NULL, 0};
    train(&a1);
    train(&b1);
    char what[64];
    snprintf(what, sizeof what, "model 1, %u thread(s) each", threads);
    assert_same(&a, &a1, what);
    snprintf(what, sizeof what, "model 2, %u thread(s) each", threads);
    assert_same(&b, &b1, what);
    free(a.params), free(b.params), free(a1.params), free(b1.params);
    tl_dataset_free(data);
}

START_TEST(two_models_one_thread_each)
{
    together_equals_alone(1);
}
END_TEST

START_TEST(two_models_two_threads_each)
{
    together_equals_alone(2);
}
END_TEST

/* ---- everything else at the same time ------------------------------------------------ */

typedef struct io_job {
    int id;
    const tl_dataset *data;
    pthread_barrier_t *start;
    int rounds;
    char failure[1100];
} io_job;

/* Save, load, transfer, extract features and predict, over and over, on
 * models of this thread, while other threads train. */
static void *io_work(void *arg)
{
    io_job *j = arg;
    j->failure[0] = '\0';
    pthread_barrier_wait(j->start);
    char path[128], st_path[128];
    snprintf(path, sizeof path, "%s/m%d.tlm", tmpdir, j->id);
    snprintf(st_path, sizeof st_path, "%s/m%d.safetensors", tmpdir, j->id);
    for (int r = 0; r < j->rounds && j->failure[0] == '\0'; r++) {
        tl_model *m = th_seed_cnn(SIDE, SIDE, 3, 4, (uint64_t)(j->id * 100 + r)), *back = NULL, *ex = NULL;
        tl_model *dst = th_seed_cnn(SIDE, SIDE, 3, 4, 7);
        tl_dataset *feat = NULL;
        tl_status st = tl_model_save(m, path, NULL);
        if (st == TL_OK)
            st = tl_model_load(&back, path);
        if (st == TL_OK)
            st = tl_model_save_safetensors(back, st_path, TL_LAYOUT_PYTORCH, NULL);
        if (st == TL_OK)
            st = tl_model_load_safetensors(NULL, dst, st_path, TL_LAYOUT_PYTORCH, NULL);
        if (st == TL_OK)
            st = tl_model_extractor_create(&ex, dst, 4);
        if (st == TL_OK)
            st = tl_model_set_threads(ex, 1);
        if (st == TL_OK)
            st = tl_model_extract_features(&feat, ex, j->data, 32);
        if (st) {
            snprintf(j->failure, sizeof j->failure, "round %d: %s", r, tl_last_error());
        } else {
            /* What came back through both files is the model itself. */
            size_t n1, n2;
            float *p1 = th_all_params(m, &n1), *p2 = th_all_params(dst, &n2);
            if (n1 != n2 || memcmp(p1, p2, n1 * sizeof *p1) != 0)
                snprintf(j->failure, sizeof j->failure, "round %d: the parameters changed on the way", r);
            free(p1);
            free(p2);
        }
        tl_dataset_free(feat);
        tl_model_free(ex);
        tl_model_free(back);
        tl_model_free(dst);
        tl_model_free(m);
    }
    return NULL;
}

START_TEST(training_beside_io)
{
    tl_dataset *data = th_quadrant_dataset(N, SIDE, SIDE, 3, 5);
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, 4);
    job a = {1, 1, data, &start, 0, "", NULL, 0}, b = {1, 1, data, &start, 0, "", NULL, 0};
    io_job c = {1, data, &start, 3, ""}, d = {2, data, &start, 3, ""};
    pthread_t t[4];
    ck_assert_int_eq(pthread_create(&t[0], NULL, train, &a), 0);
    ck_assert_int_eq(pthread_create(&t[1], NULL, train, &b), 0);
    ck_assert_int_eq(pthread_create(&t[2], NULL, io_work, &c), 0);
    ck_assert_int_eq(pthread_create(&t[3], NULL, io_work, &d), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&start);
    ck_assert_msg(c.failure[0] == '\0', "io thread 1: %s", c.failure);
    ck_assert_msg(d.failure[0] == '\0', "io thread 2: %s", d.failure);
    job a1 = {1, 1, data, NULL, 0, "", NULL, 0};
    train(&a1);
    assert_same(&a, &a1, "model 1 beside io threads");
    assert_same(&b, &a1, "model 2 beside io threads"); /* same seed as model 1 */
    free(a.params), free(b.params), free(a1.params);
    tl_dataset_free(data);
    for (int i = 1; i <= 2; i++) {
        char p[128];
        snprintf(p, sizeof p, "%s/m%d.tlm", tmpdir, i);
        unlink(p);
        snprintf(p, sizeof p, "%s/m%d.safetensors", tmpdir, i);
        unlink(p);
    }
}
END_TEST

/* ---- the last error is per thread ------------------------------------------------- */

typedef struct err_job {
    uint32_t tag; /* each thread's errors carry its own number */
    pthread_barrier_t *start;
    int mismatches;
} err_job;

static void *errors(void *arg)
{
    err_job *j = arg;
    char want[64];
    pthread_barrier_wait(j->start);
    for (uint32_t i = 0; i < 2000; i++) {
        tl_model *m = NULL;
        /* A zero dimension: the message quotes the shape, which holds the tag. */
        tl_status st = tl_model_create(&m, j->tag, i + 1, 0, 1);
        snprintf(want, sizeof want, "(%u, %u, 0)", j->tag, i + 1);
        if (st != TL_EINVAL || strstr(tl_last_error(), want) == NULL)
            j->mismatches++;
        if (i % 3 == 0) {
            tl_clear_error();
            if (tl_last_error()[0] != '\0')
                j->mismatches++;
        }
        /* A call that succeeds leaves the last error alone. */
        tl_dataset *ds = NULL;
        tl_dataset_load_idx(&ds, "/nonexistent/images", "/nonexistent/labels", 0);
        if (strstr(tl_last_error(), "/nonexistent/labels") == NULL)
            j->mismatches++;
        if (tl_model_create(&m, 2, 2, 1, 1) == TL_OK) {
            if (strstr(tl_last_error(), "/nonexistent/labels") == NULL)
                j->mismatches++;
            tl_model_free(m);
        }
    }
    return NULL;
}

START_TEST(last_error_per_thread_under_load)
{
    enum { T = 4 };
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, T);
    err_job jobs[T];
    pthread_t t[T];
    for (int i = 0; i < T; i++) {
        jobs[i] = (err_job){(uint32_t)(1000 + i), &start, 0};
        ck_assert_int_eq(pthread_create(&t[i], NULL, errors, &jobs[i]), 0);
    }
    for (int i = 0; i < T; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&start);
    for (int i = 0; i < T; i++)
        ck_assert_msg(jobs[i].mismatches == 0, "thread %d saw %d wrong messages", i, jobs[i].mismatches);
}
END_TEST

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/tl-threads-XXXXXX");
    if (mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    Suite *s = suite_create("threads");
    /* Models of one thread each: no OpenMP team, so ThreadSanitizer (which
     * cannot see libgomp's barriers) can run this case alone:
     * CK_RUN_CASE=one_thread_each. */
    TCase *tc = tcase_create("one_thread_each");
    tcase_set_timeout(tc, 600);
    /* First: in a forked test it is the process's first BLIS call. */
    tcase_add_test(tc, two_models_one_thread_each);
    tcase_add_test(tc, training_beside_io);
    tcase_add_test(tc, last_error_per_thread_under_load);
    suite_add_tcase(s, tc);
    tc = tcase_create("two_threads_each");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, two_models_two_threads_each);
    suite_add_tcase(s, tc);
    int rc = th_run(s);
    rmdir(tmpdir);
    return rc;
}
