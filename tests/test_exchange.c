/*
 * test_exchange.c - the exchange seam of tl_fit_options (tl_exchange in
 * tl/train.h) with a transport of the test's own: two threads, each
 * fitting its own copy of a model, whose hooks add their buffers through
 * shared memory. Shows the seam works without MPI: equality with one
 * process at the doubled batch, equal models, synchronized batchnorm, a
 * failure on one side reaching the other, the options' checks.
 */
#include <pthread.h>
#include <stdio.h>

#include "helpers.h"

#define WORKERS 2

typedef struct shared {
    pthread_barrier_t bar;
    tl_exchange *x[WORKERS];
} shared;

typedef struct worker {
    shared *sh;
    int rank;
    tl_model *model;
    const tl_dataset *data;
    int bn, sync, stop_at; /* stop_at: on_batch_begin stops at this batch (1-based); 0 never */
    tl_status status;
    char message[1024];
    size_t calls;
} worker;

/* Sum both workers' buffers in rank order (the same bits on both). */
static tl_status hook(tl_exchange *x, void *payload)
{
    worker *w = payload;
    shared *sh = w->sh;
    w->calls++;
    sh->x[w->rank] = x;
    pthread_barrier_wait(&sh->bar);
    int failed = -1;
    for (int r = 0; r < WORKERS; r++)
        if (failed < 0 && sh->x[r] && sh->x[r]->status != TL_OK) /* a lone worker has no x[1] */
            failed = r;
    float *v = NULL;
    double *s = NULL;
    if (failed < 0) {
        v = x->count ? malloc(x->count * sizeof *v) : NULL;
        s = x->nsums ? malloc(x->nsums * sizeof *s) : NULL;
        for (size_t i = 0; i < x->count; i++)
            v[i] = sh->x[0]->values[i] + sh->x[1]->values[i];
        for (size_t i = 0; i < x->nsums; i++)
            s[i] = sh->x[0]->sums[i] + sh->x[1]->sums[i];
    }
    char text[200];
    if (failed >= 0)
        snprintf(text, sizeof text, "worker %d failed with %s", failed, tl_status_str(sh->x[failed]->status));
    pthread_barrier_wait(&sh->bar); /* everyone has read everyone's buffers */
    if (failed >= 0)
        return tl_set_last_error(TL_EPEER, text);
    if (x->count)
        memcpy(x->values, v, x->count * sizeof *v);
    if (x->nsums)
        memcpy(x->sums, s, x->nsums * sizeof *s);
    free(v);
    free(s);
    return TL_OK;
}

static int begin(tl_batch *b, void *payload)
{
    worker *w = payload;
    return w->stop_at && b->batch + 1 == (size_t)w->stop_at;
}

static tl_model *bn_model(uint64_t seed)
{
    tl_model *m;
    tl_optimizer *opt;
    tl_conv2d_options conv = TL_CONV2D_OPTIONS_INIT;
    tl_batchnorm_options bno = TL_BATCHNORM_OPTIONS_INIT;
    tl_dense_options dense = TL_DENSE_OPTIONS_INIT;
    conv.filters = 6;
    conv.activation = TL_ACT_RELU;
    bno.momentum = 0.9f;
    dense.units = 4;
    dense.activation = TL_ACT_SOFTMAX;
    ck_assert_tl_ok(tl_model_create(&m, 12, 12, 1, seed));
    ck_assert_tl_ok(tl_model_set_threads(m, 1));
    ck_assert_tl_ok(tl_model_add_conv2d(NULL, m, &conv));
    ck_assert_tl_ok(tl_model_add_batchnorm(NULL, m, &bno));
    ck_assert_tl_ok(tl_model_add_flatten(NULL, m, NULL));
    ck_assert_tl_ok(tl_model_add_dense(NULL, m, &dense));
    ck_assert_tl_ok(tl_optimizer_create_adam(&opt, NULL));
    ck_assert_tl_ok(tl_model_compile(m, opt, TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY));
    return m;
}

static tl_model *new_model(int bn)
{
    if (bn)
        return bn_model(5);
    tl_model *m = th_seed_cnn(12, 12, 1, 4, 5);
    tl_optimizer *opt;
    ck_assert_tl_ok(tl_optimizer_create_adam(&opt, NULL));
    ck_assert_tl_ok(tl_model_compile(m, opt, TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY));
    return m;
}

static tl_fit_options options(int global_batch)
{
    tl_fit_options fo = TL_FIT_OPTIONS_INIT;
    fo.epochs = 2;
    fo.batch_size = (uint32_t)global_batch;
    fo.seed = 3;
    return fo;
}

static void *work(void *arg)
{
    worker *w = arg;
    tl_fit_options fo = options(16);
    fo.exchange = hook;
    fo.exchange_payload = w;
    fo.shard_rank = (uint32_t)w->rank;
    fo.shard_count = WORKERS;
    fo.sync_batchnorm = w->sync;
    fo.on_batch_begin = begin;
    fo.payload = w;
    w->status = tl_model_fit(w->model, w->data, &fo);
    snprintf(w->message, sizeof w->message, "%s", tl_last_error());
    return NULL;
}

/* Fit on two workers; w[] filled. */
static void fit_two(worker *w, const tl_dataset *ds, int bn, int sync, int stop_rank, int stop_at)
{
    shared sh;
    pthread_barrier_init(&sh.bar, NULL, WORKERS);
    pthread_t t[WORKERS];
    for (int r = 0; r < WORKERS; r++) {
        w[r] = (worker){&sh, r, new_model(bn), ds, bn, sync, r == stop_rank ? stop_at : 0, TL_OK, "", 0};
        pthread_create(&t[r], NULL, work, &w[r]);
    }
    for (int r = 0; r < WORKERS; r++)
        pthread_join(t[r], NULL);
    pthread_barrier_destroy(&sh.bar);
}

static double largest_difference(const tl_model *a, const tl_model *b, int *equal)
{
    size_t na, nb;
    float *pa = th_all_params(a, &na), *pb = th_all_params(b, &nb);
    ck_assert_uint_eq(na, nb);
    double d = 0.0;
    for (size_t i = 0; i < na; i++)
        d = fmax(d, fabs((double)pa[i] - pb[i]));
    if (equal)
        *equal = memcmp(pa, pb, na * sizeof *pa) == 0;
    free(pa);
    free(pb);
    return d;
}

static void compare_with_one(int bn, int sync, double tol)
{
    tl_dataset *ds = th_quadrant_dataset(96, 12, 12, 1, 21);
    worker w[WORKERS];
    fit_two(w, ds, bn, sync, -1, 0);
    for (int r = 0; r < WORKERS; r++)
        ck_assert_msg(w[r].status == TL_OK, "worker %d: %s: %s", r, tl_status_str(w[r].status), w[r].message);
    /* 2 epochs x 6 steps: one GRADIENTS and one UPDATED call each, one END. */
    ck_assert_uint_eq(w[0].calls, 2 * 6 * 2 + 1 + (sync ? 2 * 6 * 3 : 0));
    int equal;
    largest_difference(w[0].model, w[1].model, &equal);
    ck_assert_msg(equal, "the workers' models differ");
    tl_model *one = new_model(bn);
    tl_fit_options fo = options(16);
    ck_assert_tl_ok(tl_model_fit(one, ds, &fo));
    double d = largest_difference(w[0].model, one, NULL);
    ck_assert_msg(d <= tol, "2 x 8 differs from 1 x 16 by %g (tolerance %g)", d, tol);
    if (!bn || sync)
        ck_assert_msg(d < 1e-5, "%g", d);
    else
        ck_assert_msg(d > 1e-5, "local batchnorm should differ from one process, differs by %g", d);
    tl_model_free(one);
    for (int r = 0; r < WORKERS; r++)
        tl_model_free(w[r].model);
    tl_dataset_free(ds);
}

START_TEST(two_workers_equal_one_at_the_doubled_batch)
{
    compare_with_one(0, 0, 1e-5);
}
END_TEST

START_TEST(synchronized_batchnorm_equals_one)
{
    compare_with_one(1, 1, 1e-5);
}
END_TEST

START_TEST(local_batchnorm_differs_but_workers_agree)
{
    compare_with_one(1, 0, 1.0);
}
END_TEST

START_TEST(a_failure_reaches_the_other_worker)
{
    tl_dataset *ds = th_quadrant_dataset(96, 12, 12, 1, 21);
    worker w[WORKERS];
    fit_two(w, ds, 0, 0, 1, 3);
    ck_assert_int_eq(w[1].status, TL_ECANCELED);
    ck_assert_msg(strstr(w[1].message, "batch-begin callback at epoch 1, batch 3"), "%s", w[1].message);
    ck_assert_int_eq(w[0].status, TL_EPEER);
    ck_assert_msg(strstr(w[0].message, "worker 1 failed with TL_ECANCELED"), "%s", w[0].message);
    /* Two steps done (2 calls each), then the third's exchange. */
    ck_assert_uint_eq(w[0].calls, 5);
    ck_assert_uint_eq(w[1].calls, 5);
    for (int r = 0; r < WORKERS; r++)
        tl_model_free(w[r].model);
    tl_dataset_free(ds);
}
END_TEST

START_TEST(bad_shard_options)
{
    tl_dataset *ds = th_quadrant_dataset(20, 12, 12, 1, 21);
    tl_model *m = new_model(1);
    tl_fit_options fo = options(8);
    fo.shard_rank = 2;
    fo.shard_count = 2;
    ck_assert_tl_err(tl_model_fit(m, ds, &fo), TL_EINVAL, "shard_rank 2 is not below shard_count 2");
    /* 20 = 2 x 8 + 4: fine for 2 processes, not for 5. */
    worker self = {NULL, 0, m, ds, 1, 1, 0, TL_OK, "", 0};
    fo.shard_rank = 0;
    fo.shard_count = 5;
    fo.sync_batchnorm = 1;
    fo.exchange = hook;
    fo.exchange_payload = &self;
    shared sh;
    memset(&sh, 0, sizeof sh);
    pthread_barrier_init(&sh.bar, NULL, 1);
    self.sh = &sh;
    ck_assert_tl_err(tl_model_fit(m, ds, &fo), TL_EINVAL, "a batch of 4 examples");
    /* The failure was still handed to the hook (its END call), once. */
    ck_assert_uint_eq(self.calls, 1);
    pthread_barrier_destroy(&sh.bar);
    tl_model_free(m);
    tl_dataset_free(ds);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("exchange");
    TCase *tc = tcase_create("exchange");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, two_workers_equal_one_at_the_doubled_batch);
    tcase_add_test(tc, synchronized_batchnorm_equals_one);
    tcase_add_test(tc, local_batchnorm_differs_but_workers_agree);
    tcase_add_test(tc, a_failure_reaches_the_other_worker);
    tcase_add_test(tc, bad_shard_options);
    suite_add_tcase(s, tc);
    return th_run(s);
}
