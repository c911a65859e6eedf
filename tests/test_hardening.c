/*
 * test_hardening.c - regression tests for what the fuzzers (tests/fuzz)
 * and the sanitizer runs found, one test per finding, each with the
 * smallest input that showed it. docs/hardening.md lists them.
 */
#include <stdio.h>
#include <unistd.h>

#include "helpers.h"

static char tmpdir[64];

/* A file in the suite's directory (made before the tests fork). */
static const char *tmp_path(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, "%s/%s", tmpdir, name);
    return buf;
}

static void write_bytes(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(data, 1, n, f), n);
    ck_assert_int_eq(fclose(f), 0);
}

/*
 * fuzz_idx: an IDX images header whose h * w * c (0x2b0000 x 0x3000000 x
 * 0x3000000 = 387 * 2^64) wrapped to 0 in 64 bits, so the size check
 * passed and a dataset of 2 "images" of 0 values came back, with shape
 * dimensions that say otherwise. Now TL_ETOOBIG.
 */
START_TEST(idx_image_size_wraps)
{
    static const unsigned char labels[] = {0, 0, 8, 1, 0, 0, 0, 2, 0, 1};
    static const unsigned char images[] = {0, 0, 8, 4, 0, 0, 0, 2, 0, 0x2b, 0, 0, 3, 0, 0, 0, 3, 0, 0, 0};
    char lp[128], ip[128];
    write_bytes(tmp_path(lp, sizeof lp, "labels-idx1-ubyte"), labels, sizeof labels);
    write_bytes(tmp_path(ip, sizeof ip, "images-idx3-ubyte"), images, sizeof images);
    tl_dataset *ds = NULL;
    ck_assert_tl_err(tl_dataset_load_idx(&ds, ip, lp, 0), TL_ETOOBIG, "too large");
    ck_assert_ptr_null(ds);
    unlink(lp);
    unlink(ip);
}
END_TEST

/* The same wrap in tl_model_create(): the model took an input of 0 values. */
START_TEST(model_input_size_wraps)
{
    tl_model *m = NULL;
    ck_assert_tl_err(tl_model_create(&m, 0x2b0000u, 0x3000000u, 0x3000000u, 1), TL_ETOOBIG, "exceeds 2^31");
    ck_assert_ptr_null(m);
}
END_TEST

/* ... and in tl_dataset_create(): a dataset of examples of 0 values. */
START_TEST(dataset_example_size_wraps)
{
    float x[4] = {0};
    int32_t y[1] = {0};
    tl_dataset *ds = NULL;
    ck_assert_tl_err(tl_dataset_create(&ds, x, y, 1, 0x2b0000u, 0x3000000u, 0x3000000u, 1, TL_DATA_BORROW),
                     TL_ETOOBIG, "too many values");
    ck_assert_ptr_null(ds);
}
END_TEST

/*
 * A conv2d kernel of 2^31 x 2^31 x 4 inputs (same padding lets a kernel be
 * larger than its input) has 2^64 values: the count wrapped to 0 and the
 * layer was added with a kernel of no values at all.
 */
START_TEST(conv_kernel_count_wraps)
{
    tl_model *m = NULL;
    ck_assert_tl_ok(tl_model_create(&m, 1, 1, 4, 1));
    tl_conv2d_options c = TL_CONV2D_OPTIONS_INIT;
    c.filters = 1;
    c.kernel_h = c.kernel_w = 1u << 31;
    c.padding = TL_PAD_SAME;
    ck_assert_tl_err(tl_model_add_conv2d(NULL, m, &c), TL_ETOOBIG, "exceeds 2^31");
    ck_assert_uint_eq(tl_model_num_layers(m), 0);
    tl_model_free(m);
}
END_TEST

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/tl-hardening-XXXXXX");
    if (mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    Suite *s = suite_create("hardening");
    TCase *tc = tcase_create("regressions");
    tcase_add_test(tc, idx_image_size_wraps);
    tcase_add_test(tc, model_input_size_wraps);
    tcase_add_test(tc, dataset_example_size_wraps);
    tcase_add_test(tc, conv_kernel_count_wraps);
    suite_add_tcase(s, tc);
    int rc = th_run(s);
    rmdir(tmpdir);
    return rc;
}
