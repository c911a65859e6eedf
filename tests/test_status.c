/* test_status.c - status names, the thread-local last error, versions. */
#include <pthread.h>

#include "helpers.h"

START_TEST(status_names)
{
    ck_assert_str_eq(tl_status_str(TL_OK), "TL_OK: success");
    ck_assert_ptr_nonnull(strstr(tl_status_str(TL_ESHAPE), "TL_ESHAPE"));
    ck_assert_ptr_nonnull(strstr(tl_status_str(TL_ETOOBIG), "TL_ETOOBIG"));
    ck_assert_str_eq(tl_status_str((tl_status)-999), "unknown status");
    ck_assert_str_eq(tl_status_str((tl_status)5), "unknown status");
    /* Every defined code has its own name. */
    for (int a = TL_EPEER; a <= TL_OK; a++)
        for (int b = a + 1; b <= TL_OK; b++)
            ck_assert_str_ne(tl_status_str((tl_status)a), tl_status_str((tl_status)b));
}
END_TEST

START_TEST(last_error_set_and_cleared)
{
    tl_clear_error();
    ck_assert_str_eq(tl_last_error(), "");
    tl_model *m = NULL;
    ck_assert_tl_err(tl_model_create(&m, 0, 4, 1, 1), TL_EINVAL, "(0, 4, 1)");
    ck_assert_ptr_null(m);
    tl_clear_error();
    ck_assert_str_eq(tl_last_error(), "");
}
END_TEST

static void *other_thread(void *arg)
{
    (void)arg;
    /* A fresh thread sees no error even though the main thread has one. */
    int clean = tl_last_error()[0] == '\0';
    tl_model *m = NULL;
    tl_model_create(&m, 1, 1, 0, 0);
    int own = strstr(tl_last_error(), "(1, 1, 0)") != NULL;
    return (void *)(intptr_t)(clean && own);
}

START_TEST(last_error_is_per_thread)
{
    tl_model *m = NULL;
    tl_model_create(&m, 7, 0, 1, 0);
    ck_assert_ptr_nonnull(strstr(tl_last_error(), "(7, 0, 1)"));
    pthread_t t;
    void *ok = NULL;
    ck_assert_int_eq(pthread_create(&t, NULL, other_thread, NULL), 0);
    pthread_join(t, &ok);
    ck_assert_int_eq((int)(intptr_t)ok, 1);
    /* The other thread's error did not replace ours. */
    ck_assert_ptr_nonnull(strstr(tl_last_error(), "(7, 0, 1)"));
}
END_TEST

START_TEST(versions_agree)
{
    ck_assert_str_eq(tl_version(), TL_VERSION_STRING);
    ck_assert_int_eq(tl_version_number(), TL_VERSION_NUMBER);
    ck_assert_int_eq(TL_VERSION_NUMBER, TL_VERSION_MAJOR * 1000000 + TL_VERSION_MINOR * 1000 + TL_VERSION_PATCH);
}
END_TEST

START_TEST(backend_info_names_blis)
{
    const char *info = tl_backend_info();
    ck_assert_ptr_nonnull(strstr(info, "BLIS"));
    ck_assert_ptr_nonnull(strstr(info, "kernels"));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("status");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, status_names);
    tcase_add_test(tc, last_error_set_and_cleared);
    tcase_add_test(tc, last_error_is_per_thread);
    tcase_add_test(tc, versions_agree);
    tcase_add_test(tc, backend_info_names_blis);
    suite_add_tcase(s, tc);
    return th_run(s);
}
