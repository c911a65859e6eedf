/*
 * test_data_readers.c - the dataset readers (CIFAR-10/100, IDX, MNIST
 * layout) and their gzip stream and tar reader, on small files in each
 * format that the tests write themselves. Internal suite: it also drives
 * the tar reader directly and makes allocations fail.
 */
#define _XOPEN_SOURCE 700 /* nftw, mkdtemp */
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

#include "data/stream.h"
#include "data/tar.h"
#include "data_writers.h"
#include "helpers.h"

/* Readers must set *out to NULL on error; this marks "not written yet". */
static char bogus_target;
#define BOGUS ((tl_dataset *)(void *)&bogus_target)

#define ck_assert_msg_has(needle)                                                                        \
    ck_assert_msg(strstr(tl_last_error(), (needle)) != NULL, "message '%s' lacks '%s'", tl_last_error(), \
                  (needle))

/* ---- a temporary directory per test ---------------------------------------- */

static char tmpdir[64];

static void make_tmp(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/tl-data-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void remove_tmp(void)
{
    nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* A path under tmpdir, in one of a few rotating buffers. */
static const char *P(const char *fmt, ...)
{
    static char bufs[8][512];
    static int next;
    char *b = bufs[next++ % 8];
    int n = snprintf(b, 512, "%s/", tmpdir);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b + n, 512 - (size_t)n, fmt, ap);
    va_end(ap);
    return b;
}

static void mkdir_p(const char *path)
{
    ck_assert_int_eq(mkdir(path, 0755), 0);
}

static void write_file(const char *path, const void *data, size_t n, int gz)
{
    ck_assert_msg(dw_write(path, data, n, gz) == 0, "cannot write %s", path);
}

static long file_size(const char *path)
{
    struct stat sb;
    ck_assert_int_eq(stat(path, &sb), 0);
    return (long)sb.st_size;
}

static unsigned char *read_all(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    long size = file_size(path);
    unsigned char *b = malloc((size_t)size + 1);
    ck_assert_int_eq(fread(b, 1, (size_t)size, f), size);
    fclose(f);
    *n = (size_t)size;
    return b;
}

/* ---- CIFAR files with known contents ---------------------------------------- */

#define REC10 3073
#define REC100 3074
#define MAXREC 64

/* What a loaded dataset must hold: per example, the record number and salt
 * its pixels were made from (dw_cifar_pixel) and its label. */
typedef struct expect {
    size_t n;
    size_t rec[MAXREC];
    unsigned salt[MAXREC];
    int32_t label[MAXREC];
} expect;

/* The six CIFAR-10 files, or the two CIFAR-100 files, in memory. */
typedef struct cfiles {
    size_t nfiles;
    const char *names[6];
    unsigned char *data[6];
    size_t size[6];
    expect train, test;
    expect coarse_train, coarse_test; /* CIFAR-100 only: the same with coarse labels */
} cfiles;

static const size_t c10_counts[6] = {3, 2, 1, 2, 4, 3}; /* data_batch_1..5, test_batch */

static unsigned char c10_label(size_t rec, unsigned salt)
{
    return (unsigned char)((rec * 7 + salt) % 10);
}

static void c10_make(cfiles *cf)
{
    static const char *names[6] = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                                   "data_batch_4.bin", "data_batch_5.bin", "test_batch.bin"};
    memset(cf, 0, sizeof *cf);
    cf->nfiles = 6;
    size_t rec = 0;
    for (size_t f = 0; f < 6; f++) {
        expect *e = f < 5 ? &cf->train : &cf->test;
        if (f == 5)
            rec = 0;
        unsigned salt = (unsigned)f + 1;
        cf->names[f] = names[f];
        cf->size[f] = c10_counts[f] * REC10;
        cf->data[f] = malloc(cf->size[f]);
        for (size_t r = 0; r < c10_counts[f]; r++, rec++) {
            unsigned char lab = c10_label(rec, salt);
            dw_cifar_record(cf->data[f] + r * REC10, 1, &lab, rec, salt);
            e->rec[e->n] = rec;
            e->salt[e->n] = salt;
            e->label[e->n++] = lab;
        }
    }
}

static void c100_make(cfiles *cf, size_t ntrain, size_t ntest)
{
    memset(cf, 0, sizeof *cf);
    cf->nfiles = 2;
    cf->names[0] = "train.bin";
    cf->names[1] = "test.bin";
    for (size_t f = 0; f < 2; f++) {
        size_t n = f == 0 ? ntrain : ntest;
        expect *e = f == 0 ? &cf->train : &cf->test, *ec = f == 0 ? &cf->coarse_train : &cf->coarse_test;
        unsigned salt = 20 + (unsigned)f;
        cf->size[f] = n * REC100;
        cf->data[f] = malloc(cf->size[f]);
        for (size_t r = 0; r < n; r++) {
            unsigned char lab[2] = {(unsigned char)((r * 3 + salt) % 20), (unsigned char)((r * 11 + salt) % 100)};
            dw_cifar_record(cf->data[f] + r * REC100, 2, lab, r, salt);
            e->rec[e->n] = ec->rec[ec->n] = r;
            e->salt[e->n] = ec->salt[ec->n] = salt;
            e->label[e->n++] = lab[1];
            ec->label[ec->n++] = lab[0];
        }
    }
}

static void cfiles_free(cfiles *cf)
{
    for (size_t f = 0; f < cf->nfiles; f++)
        free(cf->data[f]);
}

static void cfiles_write_dir(const cfiles *cf, const char *dir)
{
    char path[600];
    for (size_t f = 0; f < cf->nfiles; f++) {
        snprintf(path, sizeof path, "%s/%s", dir, cf->names[f]);
        write_file(path, cf->data[f], cf->size[f], 0);
    }
}

/* The archive as the real one is laid out: a directory entry, the data
 * files out of order, and files the reader must skip. */
static void c10_write_tar(const cfiles *cf, const char *path, int compress)
{
    static const char meta[] = "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n";
    static const int order[6] = {0, -1, 2, 3, 5, -2};
    dw_tar t;
    char name[128];
    ck_assert_int_eq(dw_tar_open(&t, path, compress), 0);
    dw_tar_member(&t, "cifar-10-batches-bin/", NULL, 0, '5');
    for (int i = 0; i < 6; i++) {
        int f = order[i];
        if (f == -1) {
            dw_tar_member(&t, "cifar-10-batches-bin/batches.meta.txt", meta, sizeof meta - 1, '0');
        } else if (f == -2) {
            dw_tar_member(&t, "cifar-10-batches-bin/readme.html", "<html></html>\n", 14, '0');
        } else {
            snprintf(name, sizeof name, "cifar-10-batches-bin/%s", cf->names[f]);
            dw_tar_member(&t, name, cf->data[f], cf->size[f], '0');
        }
    }
    dw_tar_member(&t, "cifar-10-batches-bin/data_batch_2.bin", cf->data[1], cf->size[1], '0');
    dw_tar_member(&t, "cifar-10-batches-bin/data_batch_5.bin", cf->data[4], cf->size[4], '0');
    ck_assert_int_eq(dw_tar_close(&t, 1), 0);
}

static void c100_write_tar(const cfiles *cf, const char *path, int compress)
{
    dw_tar t;
    ck_assert_int_eq(dw_tar_open(&t, path, compress), 0);
    dw_tar_member(&t, "cifar-100-binary/", NULL, 0, '5');
    dw_tar_member(&t, "cifar-100-binary/coarse_label_names.txt", "aquatic_mammals\n", 16, '0');
    dw_tar_member(&t, "cifar-100-binary/test.bin", cf->data[1], cf->size[1], '0');
    dw_tar_member(&t, "cifar-100-binary/train.bin", cf->data[0], cf->size[0], '0');
    ck_assert_int_eq(dw_tar_close(&t, 1), 0);
}

/* Every pixel and label of a CIFAR dataset against what was written. */
static void check_cifar(const tl_dataset *ds, const expect *e, uint32_t classes)
{
    ck_assert_ptr_nonnull(ds);
    ck_assert_uint_eq(tl_dataset_count(ds), e->n);
    uint32_t h, w, c;
    ck_assert_tl_ok(tl_dataset_shape(&h, &w, &c, ds));
    ck_assert_uint_eq(h, 32);
    ck_assert_uint_eq(w, 32);
    ck_assert_uint_eq(c, 3);
    ck_assert_uint_eq(tl_dataset_num_classes(ds), classes);
    const float *x = tl_dataset_images(ds);
    const int32_t *y = tl_dataset_labels(ds);
    size_t bad = 0, first = SIZE_MAX;
    for (size_t i = 0; i < e->n; i++) {
        ck_assert_msg(y[i] == e->label[i], "example %zu: label %d, expected %d", i, y[i], e->label[i]);
        for (unsigned p = 0; p < 1024; p++)
            for (unsigned ch = 0; ch < 3; ch++) {
                /* NHWC: pixel p = row * 32 + column, channel last. */
                float want = (float)dw_cifar_pixel(e->rec[i], ch, p, e->salt[i]) / 255.0f;
                if (x[(i * 1024 + p) * 3 + ch] != want && bad++ == 0)
                    first = (i * 1024 + p) * 3 + ch;
            }
    }
    ck_assert_msg(bad == 0, "%zu pixels differ, the first at float %zu", bad, first);
}

/* ---- CIFAR-10: good files ------------------------------------------------------ */

START_TEST(cifar10_dir)
{
    make_tmp();
    cfiles cf;
    c10_make(&cf);
    cfiles_write_dir(&cf, tmpdir);
    tl_dataset *ds = NULL;
    ck_assert_tl_ok(tl_dataset_load_cifar10(&ds, tmpdir, TL_SPLIT_TRAIN));
    check_cifar(ds, &cf.train, 10);
    tl_dataset_free(ds);
    ck_assert_tl_ok(tl_dataset_load_cifar10(&ds, tmpdir, TL_SPLIT_TEST));
    check_cifar(ds, &cf.test, 10);
    tl_dataset_free(ds);
    cfiles_free(&cf);
    remove_tmp();
}
END_TEST

START_TEST(cifar10_parent_dir)
{
    /* The parent of the extracted folder, as after `tar xzf` in a data dir. */
    make_tmp();
    cfiles cf;
    c10_make(&cf);
    mkdir_p(P("cifar-10-batches-bin"));
    cfiles_write_dir(&cf, P("cifar-10-batches-bin"));
    tl_dataset *ds = NULL;
    ck_assert_tl_ok(tl_dataset_load_cifar10(&ds, tmpdir, TL_SPLIT_TRAIN));
    check_cifar(ds, &cf.train, 10);
    tl_dataset_free(ds);
    ck_assert_tl_ok(tl_dataset_load_cifar10(&ds, P("cifar-10-batches-bin/"), TL_SPLIT_TEST));
    check_cifar(ds, &cf.test, 10);
    tl_dataset_free(ds);
    cfiles_free(&cf);
    remove_tmp();
}
END_TEST

START_TEST(cifar10_targz)
{
    make_tmp();
    cfiles cf;
    c10_make(&cf);
    c10_write_tar(&cf, P("cifar-10-binary.tar.gz"), 1);
    tl_dataset *ds = NULL;
    ck_assert_tl_ok(tl_dataset_load_cifar10(&ds, P("cifar-10-binary.tar.gz"), TL_SPLIT_TRAIN));
    check_cifar(ds, &cf.train, 10);
    tl_dataset_free(ds);
    ck_assert_tl_ok(tl_dataset_load_cifar10(&ds, P("cifar-10-binary.tar.gz"), TL_SPLIT_TEST));
    check_cifar(ds, &cf.test, 10);
    tl_dataset_free(ds);
    /* The directory that holds the archive finds it too. */
    ck_assert_tl_ok(tl_dataset_load_cifar10(&ds, tmpdir, TL_SPLIT_TEST));
    check_cifar(ds, &cf.test, 10);
    tl_dataset_free(ds);
    cfiles_free(&cf);
    remove_tmp();
}
END_TEST

START_TEST(cifar10_plain_tar)
{
    /* Recognised by its bytes, whatever its name says. */
    make_tmp();
    cfiles cf;
    c10_make(&cf);
    c10_write_tar(&cf, P("cifar10.tar.gz"), 0);
    c10_write_tar(&cf, P("cifar10.bin"), 1);
    tl_dataset *ds = NULL;
    ck_assert_tl_ok(tl_dataset_load_cifar10(&ds, P("cifar10.tar.gz"), TL_SPLIT_TRAIN));
    check_cifar(ds, &cf.train, 10);
    tl_dataset_free(ds);
    ck_assert_tl_ok(tl_dataset_load_cifar10(&ds, P("cifar10.bin"), TL_SPLIT_TRAIN));
    check_cifar(ds, &cf.train, 10);
    tl_dataset_free(ds);
    cfiles_free(&cf);
    remove_tmp();
}
END_TEST

START_TEST(cifar10_member_names)
{
    /* "./" in front of member names (tar -C dir .) is accepted. */
    make_tmp();
    cfiles cf;
    c10_make(&cf);
    dw_tar t;
    ck_assert_int_eq(dw_tar_open(&t, P("c.tar.gz"), 1), 0);
    dw_tar_member(&t, "./cifar-10-batches-bin/test_batch.bin", cf.data[5], cf.size[5], '0');
    ck_assert_int_eq(dw_tar_close(&t, 1), 0);
    tl_dataset *ds = NULL;
    ck_assert_tl_ok(tl_dataset_load_cifar10(&ds, P("c.tar.gz"), TL_SPLIT_TEST));
    check_cifar(ds, &cf.test, 10);
    tl_dataset_free(ds);
    cfiles_free(&cf);
    remove_tmp();
}
END_TEST

/* ---- CIFAR-100 -------------------------------------------------------------------- */

START_TEST(cifar100_dir_and_targz)
{
    make_tmp();
    cfiles cf;
    c100_make(&cf, 7, 4);
    mkdir_p(P("cifar-100-binary"));
    cfiles_write_dir(&cf, P("cifar-100-binary"));
    c100_write_tar(&cf, P("cifar-100-binary.tar.gz"), 1);
    const char *paths[3] = {P("cifar-100-binary"), tmpdir, P("cifar-100-binary.tar.gz")};
    for (int i = 0; i < 3; i++) {
        tl_dataset *ds = NULL;
        ck_assert_tl_ok(tl_dataset_load_cifar100(&ds, paths[i], TL_SPLIT_TRAIN, TL_CIFAR100_FINE));
        check_cifar(ds, &cf.train, 100);
        tl_dataset_free(ds);
        ck_assert_tl_ok(tl_dataset_load_cifar100(&ds, paths[i], TL_SPLIT_TRAIN, TL_CIFAR100_COARSE));
        check_cifar(ds, &cf.coarse_train, 20);
        tl_dataset_free(ds);
        ck_assert_tl_ok(tl_dataset_load_cifar100(&ds, paths[i], TL_SPLIT_TEST, TL_CIFAR100_FINE));
        check_cifar(ds, &cf.test, 100);
        tl_dataset_free(ds);
        ck_assert_tl_ok(tl_dataset_load_cifar100(&ds, paths[i], TL_SPLIT_TEST, TL_CIFAR100_COARSE));
        check_cifar(ds, &cf.coarse_test, 20);
        tl_dataset_free(ds);
    }
    cfiles_free(&cf);
    remove_tmp();
}
END_TEST

/* ---- IDX ------------------------------------------------------------------------------ */

static unsigned char idx_pixel(size_t i, size_t p)
{
    return (unsigned char)(i * 13 + p * 17 + 5);
}

/* n images of h x w (x c when c > 0: a 4-dimensional file), label i*3 % 10. */
static void write_idx(const char *ipath, const char *lpath, uint32_t n, uint32_t h, uint32_t w, uint32_t c, int gz)
{
    uint32_t dims[4] = {n, h, w, c};
    unsigned ndim = c ? 4 : 3;
    size_t ex = (size_t)h * w * (c ? c : 1);
    unsigned char *b = malloc(32 + n * ex);
    size_t off = dw_idx_header(b, ndim, dims);
    for (size_t i = 0; i < n; i++)
        for (size_t p = 0; p < ex; p++)
            b[off + i * ex + p] = idx_pixel(i, p);
    write_file(ipath, b, off + n * ex, gz);
    off = dw_idx_header(b, 1, dims);
    for (size_t i = 0; i < n; i++)
        b[off + i] = (unsigned char)(i * 3 % 10);
    write_file(lpath, b, off + n, gz);
    free(b);
}

static void check_idx(const tl_dataset *ds, size_t n, uint32_t h, uint32_t w, uint32_t c, uint32_t classes)
{
    ck_assert_ptr_nonnull(ds);
    ck_assert_uint_eq(tl_dataset_count(ds), n);
    uint32_t hh, ww, cc;
    ck_assert_tl_ok(tl_dataset_shape(&hh, &ww, &cc, ds));
    ck_assert_uint_eq(hh, h);
    ck_assert_uint_eq(ww, w);
    ck_assert_uint_eq(cc, c);
    ck_assert_uint_eq(tl_dataset_num_classes(ds), classes);
    const float *x = tl_dataset_images(ds);
    const int32_t *y = tl_dataset_labels(ds);
    size_t ex = (size_t)h * w * c, bad = 0;
    for (size_t i = 0; i < n; i++) {
        ck_assert_int_eq(y[i], (int32_t)(i * 3 % 10));
        for (size_t p = 0; p < ex; p++)
            bad += x[i * ex + p] != (float)idx_pixel(i, p) / 255.0f;
    }
    ck_assert_msg(bad == 0, "%zu pixels differ", bad);
}

START_TEST(idx_plain_and_gzip)
{
    make_tmp();
    write_idx(P("img"), P("lab"), 9, 5, 4, 0, 0);
    /* gzip is found by its magic bytes, not the name. */
    write_idx(P("img.idx"), P("lab.idx"), 9, 5, 4, 0, 1);
    tl_dataset *ds = NULL;
    ck_assert_tl_ok(tl_dataset_load_idx(&ds, P("img"), P("lab"), 0));
    check_idx(ds, 9, 5, 4, 1, 10); /* the largest label is 9 */
    tl_dataset_free(ds);
    ck_assert_tl_ok(tl_dataset_load_idx(&ds, P("img.idx"), P("lab.idx"), 12));
    check_idx(ds, 9, 5, 4, 1, 12);
    tl_dataset_free(ds);
    /* mixed: gzip images, plain labels */
    ck_assert_tl_ok(tl_dataset_load_idx(&ds, P("img.idx"), P("lab"), 10));
    check_idx(ds, 9, 5, 4, 1, 10);
    tl_dataset_free(ds);
    remove_tmp();
}
END_TEST

START_TEST(idx_four_dims)
{
    make_tmp();
    write_idx(P("img.gz"), P("lab.gz"), 3, 2, 3, 4, 1);
    tl_dataset *ds = NULL;
    ck_assert_tl_ok(tl_dataset_load_idx(&ds, P("img.gz"), P("lab.gz"), 0));
    check_idx(ds, 3, 2, 3, 4, 7); /* labels 0, 3, 6 */
    tl_dataset_free(ds);
    remove_tmp();
}
END_TEST

START_TEST(idx_gzip_members)
{
    /* Concatenated gzip members are one stream (gzip(1) semantics). */
    make_tmp();
    write_idx(P("img"), P("lab"), 6, 2, 2, 0, 0);
    size_t n;
    unsigned char *lab = read_all(P("lab"), &n);
    write_file(P("a.gz"), lab, 11, 1);
    write_file(P("b.gz"), lab + 11, n - 11, 1);
    size_t na, nb;
    unsigned char *a = read_all(P("a.gz"), &na), *b = read_all(P("b.gz"), &nb);
    unsigned char *ab = malloc(na + nb);
    memcpy(ab, a, na);
    memcpy(ab + na, b, nb);
    write_file(P("lab2.gz"), ab, na + nb, 0);
    tl_dataset *ds = NULL;
    ck_assert_tl_ok(tl_dataset_load_idx(&ds, P("img"), P("lab2.gz"), 10));
    check_idx(ds, 6, 2, 2, 1, 10);
    tl_dataset_free(ds);
    free(lab);
    free(a);
    free(b);
    free(ab);
    remove_tmp();
}
END_TEST

START_TEST(mnist_dir_layout)
{
    make_tmp();
    write_idx(P("train-images-idx3-ubyte.gz"), P("train-labels-idx1-ubyte.gz"), 7, 28, 28, 0, 1);
    write_idx(P("t10k-images-idx3-ubyte"), P("t10k-labels-idx1-ubyte"), 4, 28, 28, 0, 0);
    tl_dataset *ds = NULL;
    ck_assert_tl_ok(tl_dataset_load_mnist_dir(&ds, tmpdir, TL_SPLIT_TRAIN));
    check_idx(ds, 7, 28, 28, 1, 10);
    tl_dataset_free(ds);
    ck_assert_tl_ok(tl_dataset_load_mnist_dir(&ds, tmpdir, TL_SPLIT_TEST));
    check_idx(ds, 4, 28, 28, 1, 10);
    tl_dataset_free(ds);
    remove_tmp();
}
END_TEST

/* ---- the tar reader itself ------------------------------------------------------------ */

/* A pax record "LEN key=value\n", LEN counting the whole record. */
static size_t pax_record(char *out, const char *kv)
{
    size_t body = strlen(kv) + 2; /* space and newline */
    size_t len = body + 1;
    while ((size_t)snprintf(NULL, 0, "%zu", len) + body != len)
        len++;
    return (size_t)sprintf(out, "%zu %s\n", len, kv);
}

START_TEST(tar_reader_extensions)
{
    make_tmp();
    dw_tar t;
    unsigned char h[512];
    char longname[300], pax[256];
    ck_assert_int_eq(dw_tar_open(&t, P("x.tar"), 0), 0);
    /* 1: a 160-byte name, split into the ustar prefix and name fields */
    memset(longname, 0, sizeof longname);
    for (int i = 0; i < 160; i++)
        longname[i] = i % 40 == 39 ? '/' : (char)('a' + i % 26);
    strcpy(longname + 160, "one.bin");
    dw_tar_member(&t, longname, "first", 5, '0');
    /* 2: a GNU long name (270 bytes) for the next member */
    char gnu[280];
    memset(gnu, 'g', 270);
    gnu[100] = '/';
    gnu[270] = '\0';
    dw_tar_member(&t, "././@LongLink", gnu, 271, 'L');
    dw_tar_header(h, "cut-short", 6, '0', 1);
    dw_tar_raw(&t, h, 512);
    dw_tar_raw(&t, "second", 6);
    dw_tar_pad(&t, 6);
    /* 3: a pax header giving path and size; the ustar size says 0 */
    size_t plen = pax_record(pax, "path=pax/third.txt");
    plen += pax_record(pax + plen, "size=7");
    plen += pax_record(pax + plen, "mtime=1234567890.5");
    dw_tar_member(&t, "PaxHeaders/third", pax, plen, 'x');
    dw_tar_header(h, "ignored-name", 0, '0', 0);
    dw_tar_raw(&t, h, 512);
    dw_tar_raw(&t, "third!!", 7);
    dw_tar_pad(&t, 7);
    /* 4: a global pax header, skipped */
    plen = pax_record(pax, "comment=hello");
    dw_tar_member(&t, "pax_global_header", pax, plen, 'g');
    /* 5: a size in GNU base-256 */
    dw_tar_header(h, "./base256.bin", 0, '0', 1);
    memset(h + 124, 0, 12);
    h[124] = 0x80;
    h[135] = 5;
    dw_tar_fix_checksum(h);
    dw_tar_raw(&t, h, 512);
    dw_tar_raw(&t, "fifth", 5);
    dw_tar_pad(&t, 5);
    /* 6: a symlink; then the archive ends without end blocks */
    dw_tar_member(&t, "link", NULL, 0, '2');
    ck_assert_int_eq(dw_tar_close(&t, 0), 0);

    static const struct {
        const char *data;
        char type;
    } want[] = {{"first", '0'}, {"second", '0'}, {"third!!", '0'}, {"fifth", '0'}, {"", '2'}};
    const char *names[5] = {longname, gnu, "pax/third.txt", "base256.bin", "link"};
    tli_stream *s;
    ck_assert_tl_ok(tli_stream_open(&s, P("x.tar"), true));
    tli_tar *tar = malloc(sizeof *tar);
    tli_tar_init(tar, s);
    for (int i = 0; i < 5; i++) {
        bool end;
        ck_assert_tl_ok(tli_tar_next(tar, &end));
        ck_assert(!end);
        ck_assert_str_eq(tar->entry.name, names[i]);
        ck_assert_int_eq(tar->entry.type, want[i].type);
        ck_assert_uint_eq(tar->entry.size, strlen(want[i].data));
        if (i == 1)
            continue; /* left unread: next() must skip it */
        char buf[16] = {0};
        ck_assert_tl_ok(tli_tar_read(tar, buf, (size_t)tar->entry.size));
        ck_assert_str_eq(buf, want[i].data);
    }
    bool end;
    ck_assert_tl_ok(tli_tar_next(tar, &end));
    ck_assert(end);
    free(tar);
    tli_stream_close(s);
    remove_tmp();
}
END_TEST

START_TEST(cifar10_pax_renamed_member)
{
    /* The reader matches the name a pax header gives, not the ustar field. */
    make_tmp();
    cfiles cf;
    c10_make(&cf);
    dw_tar t;
    unsigned char h[512];
    char pax[128];
    size_t plen = pax_record(pax, "path=cifar-10-batches-bin/test_batch.bin");
    ck_assert_int_eq(dw_tar_open(&t, P("p.tar.gz"), 1), 0);
    dw_tar_member(&t, "PaxHeaders.0/test_batch.bin", pax, plen, 'x');
    dw_tar_header(h, "cifar-10-batches-bin/test_bat", cf.size[5], '0', 0);
    dw_tar_raw(&t, h, 512);
    dw_tar_raw(&t, cf.data[5], cf.size[5]);
    dw_tar_pad(&t, cf.size[5]);
    ck_assert_int_eq(dw_tar_close(&t, 1), 0);
    tl_dataset *ds = NULL;
    ck_assert_tl_ok(tl_dataset_load_cifar10(&ds, P("p.tar.gz"), TL_SPLIT_TEST));
    check_cifar(ds, &cf.test, 10);
    tl_dataset_free(ds);
    cfiles_free(&cf);
    remove_tmp();
}
END_TEST

/* ---- bad input: one test each ----------------------------------------------------------- */

START_TEST(bad_missing_path)
{
    make_tmp();
    tl_dataset *ds = BOGUS;
    ck_assert_tl_err(tl_dataset_load_cifar10(&ds, P("nowhere"), TL_SPLIT_TRAIN), TL_ENOTFOUND, "nowhere");
    ck_assert_ptr_null(ds);
    ds = BOGUS;
    ck_assert_tl_err(tl_dataset_load_cifar100(&ds, tmpdir, TL_SPLIT_TEST, TL_CIFAR100_FINE), TL_ENOTFOUND,
                     "found neither test.bin, nor cifar-100-binary/test.bin, nor cifar-100-binary.tar.gz");
    ck_assert_ptr_null(ds);
    ds = BOGUS;
    ck_assert_tl_err(tl_dataset_load_mnist_dir(&ds, tmpdir, TL_SPLIT_TRAIN), TL_ENOTFOUND,
                     "neither train-images-idx3-ubyte.gz nor train-images-idx3-ubyte");
    ck_assert_ptr_null(ds);
    ds = BOGUS;
    ck_assert_tl_err(tl_dataset_load_mnist_dir(&ds, P("nodir"), TL_SPLIT_TEST), TL_ENOTFOUND, "nodir");
    ck_assert_ptr_null(ds);
    remove_tmp();
}
END_TEST

START_TEST(bad_missing_file)
{
    make_tmp();
    cfiles cf;
    c10_make(&cf);
    cfiles_write_dir(&cf, tmpdir);
    ck_assert_int_eq(remove(P("data_batch_3.bin")), 0);
    tl_dataset *ds = BOGUS;
    ck_assert_tl_err(tl_dataset_load_cifar10(&ds, tmpdir, TL_SPLIT_TRAIN), TL_ENOTFOUND,
                     "data_batch_3.bin: cannot open: No such file or directory");
    ck_assert_msg_has("tl_dataset_load_cifar10: ");
    ck_assert_ptr_null(ds);
    write_idx(P("img"), P("lab"), 2, 2, 2, 0, 0);
    ds = BOGUS;
    ck_assert_tl_err(tl_dataset_load_idx(&ds, P("img"), P("labels-missing"), 0), TL_ENOTFOUND, "labels-missing");
    ck_assert_ptr_null(ds);
    cfiles_free(&cf);
    remove_tmp();
}
END_TEST

START_TEST(bad_unreadable)
{
    /* A directory where a file should be: it exists but cannot be read. */
    make_tmp();
    write_idx(P("img"), P("lab"), 2, 2, 2, 0, 0);
    mkdir_p(P("dir-not-file"));
    tl_dataset *ds = BOGUS;
    ck_assert_tl_err(tl_dataset_load_idx(&ds, P("dir-not-file"), P("lab"), 0), TL_EIO,
                     "dir-not-file: cannot read: Is a directory");
    ck_assert_ptr_null(ds);
    remove_tmp();
}
END_TEST

START_TEST(bad_truncated_record)
{
    make_tmp();
    cfiles cf;
    c10_make(&cf);
    cf.size[1] -= 100; /* data_batch_2: its second record loses 100 bytes */
    cfiles_write_dir(&cf, tmpdir);
    tl_dataset *ds = BOGUS;
    ck_assert_tl_err(tl_dataset_load_cifar10(&ds, tmpdir, TL_SPLIT_TRAIN), TL_ETRUNCATED, "data_batch_2.bin: ");
    ck_assert_msg_has("the record at byte 3073 is cut off after 2973 bytes");
    ck_assert_ptr_null(ds);
    cfiles_free(&cf);
    remove_tmp();
}
END_TEST

START_TEST(bad_truncated_idx)
{
    make_tmp();
    write_idx(P("img"), P("lab"), 3, 4, 4, 0, 0);
    /* A plain file's size shows the truncation before anything is read... */
    ck_assert_int_eq(truncate(P("img"), 16 + 2 * 16 + 5), 0);
    tl_dataset *ds = BOGUS;
    ck_assert_tl_err(tl_dataset_load_idx(&ds, P("img"), P("lab"), 0), TL_ETRUNCATED,
                     "img: byte 16: the header announces 3 images of 4 x 4 x 1 (48 bytes) but the rest of the "
                     "file can hold at most 37 bytes");
    ck_assert_ptr_null(ds);
    /* ...a complete gzip stream of too few bytes only when it ends. */
    size_t n;
    unsigned char *b = read_all(P("img"), &n);
    write_file(P("img.gz"), b, n, 1);
    ds = BOGUS;
    ck_assert_tl_err(tl_dataset_load_idx(&ds, P("img.gz"), P("lab"), 0), TL_ETRUNCATED,
                     "img.gz: ends at byte 53, inside image 2 of 3");
    ck_assert_ptr_null(ds);
    free(b);
    /* The header cut short. */
    ck_assert_int_eq(truncate(P("img"), 10), 0);
    ds = BOGUS;
    ck_assert_tl_err(tl_dataset_load_idx(&ds, P("img"), P("lab"), 0), TL_ETRUNCATED,
                     "img: ends at byte 10, inside the IDX dimensions");
    ck_assert_ptr_null(ds);
    remove_tmp();
}
END_TEST

START_TEST(bad_truncated_gzip)
{
    make_tmp();
    write_idx(P("img.gz"), P("lab.gz"), 50, 8, 8, 0, 1);
    long size = file_size(P("img.gz"));
    ck_assert_int_eq(truncate(P("img.gz"), size / 2), 0);
    tl_dataset *ds = BOGUS;
    ck_assert_tl_err(tl_dataset_load_idx(&ds, P("img.gz"), P("lab.gz"), 0), TL_ETRUNCATED,
                     "img.gz: the gzip stream is cut off at compressed byte");
    ck_assert_ptr_null(ds);
    remove_tmp();
}
END_TEST

START_TEST(bad_truncated_tar_member)
{
    make_tmp();
    cfiles cf;
    c10_make(&cf);
    dw_tar t;
    ck_assert_int_eq(dw_tar_open(&t, P("t.tar"), 0), 0);
    dw_tar_member(&t, "cifar-10-batches-bin/test_batch.bin", cf.data[5], cf.size[5], '0');
    ck_assert_int_eq(dw_tar_close(&t, 1), 0);
    ck_assert_int_eq(truncate(P("t.tar"), 512 + 4000), 0);
    tl_dataset *ds = BOGUS;
    ck_assert_tl_err(tl_dataset_load_cifar10(&ds, P("t.tar"), TL_SPLIT_TEST), TL_ETRUNCATED,
                     "t.tar: byte 0: member cifar-10-batches-bin/test_batch.bin announces 9219 bytes but the rest "
                     "of the archive can hold at most 4000");
    ck_assert_ptr_null(ds);
    /* Compressed, the end of the data shows it. */
    size_t n;
    unsigned char *b = read_all(P("t.tar"), &n);
    write_file(P("t.tar.gz"), b, n, 1);
    ds = BOGUS;
    ck_assert_tl_err(tl_dataset_load_cifar10(&ds, P("t.tar.gz"), TL_SPLIT_TEST), TL_ETRUNCATED,
                     "t.tar.gz: ends at byte 4512, inside member cifar-10-batches-bin/test_batch.bin");
    ck_assert_ptr_null(ds);
    free(b);
    /* Cut inside a header. */
    ck_assert_int_eq(truncate(P("t.tar"), 300), 0);
    ds = BOGUS;
    ck_assert_tl_err(tl_dataset_load_cifar10(&ds, P("t.tar"), TL_SPLIT_TEST), TL_ETRUNCATED,
                     "ends at byte 300, inside the tar header that starts at byte 0");
    ck_assert_ptr_null(ds);
    cfiles_free(&cf);
    remove_tmp();
}
END_TEST

START_TEST(bad_magic)
{
    make_tmp();
    write_idx(P("img"), P("lab"), 2, 2, 2, 0, 0);
    tl_dataset *ds = BOGUS;
    /* The files swapped: the labels reader sees three dimensions. */
    ck_assert_tl_err(tl_dataset_load_idx(&ds, P("lab"), P("img"), 0), TL_EFORMAT,
                     "img: byte 3: 3 dimensions (magic 0x00000803), but an IDX labels (idx1-ubyte) file has 1");
    ck_assert_ptr_null(ds);
    unsigned char junk[64] = "GIF89a not an IDX file at all";
    write_file(P("junk"), junk, sizeof junk, 0);
    ds = BOGUS;
    ck_assert_tl_err(tl_dataset_load_idx(&ds, P("junk"), P("lab"), 0), TL_EFORMAT,
                     "junk: byte 0: wrong magic number 0x47494638");
    ck_assert_ptr_null(ds);
    /* Another element type (0x0D: float). */
    uint32_t dims[3] = {2, 2, 2};
    unsigned char b[64] = {0};
    dw_idx_header(b, 3, dims);
    b[2] = 0x0D;
    write_file(P("floats"), b, 16 + 32, 0);
    ds = BOGUS;
    ck_assert_tl_err(tl_dataset_load_idx(&ds, P("floats"), P("lab"), 0), TL_EFORMAT,
                     "floats: byte 2: IDX data type 0x0d is not supported");
    ck_assert_ptr_null(ds);
    /* A zero dimension. */
    dims[2] = 0;
    dw_idx_header(b, 3, dims);
    write_file(P("zero"), b, 16, 0);
    ds = BOGUS;
    ck_assert_tl_err(tl_dataset_load_idx(&ds, P("zero"), P("lab"), 0), TL_EFORMAT,
                     "zero: byte 12: dimension 2 of the IDX header is 0");
    ck_assert_ptr_null(ds);
    remove_tmp();
}
END_TEST

START_TEST(bad_not_a_tar)
{
    make_tmp();
    unsigned char junk[2048];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (unsigned char)(i * 7 + 1);
    write_file(P("junk.tar.gz"), junk, sizeof junk, 1);
    tl_dataset *ds = BOGUS;
    ck_assert_tl_err(tl_dataset_load_cifar10(&ds, P("junk.tar.gz"), TL_SPLIT_TRAIN), TL_EFORMAT,
                     "junk.tar.gz: byte 0: not a tar header");
    ck_assert_ptr_null(ds);
    remove_tmp();
}
END_TEST

START_TEST(bad_tar_checksum)
{
    make_tmp();
    cfiles cf;
    c10_make(&cf);
    dw_tar t;
    unsigned char h[512];
    ck_assert_int_eq(dw_tar_open(&t, P("t.tar.gz"), 1), 0);
    dw_tar_member(&t, "cifar-10-batches-bin/readme.html", "hi\n", 3, '0');
    dw_tar_header(h, "cifar-10-batches-bin/test_batch.bin", cf.size[5], '0', 0);
    h[0] ^= 0x20; /* one flipped bit after the checksum was computed */
    dw_tar_raw(&t, h, 512);
    dw_tar_raw(&t, cf.data[5], cf.size[5]);
    dw_tar_pad(&t, cf.size[5]);
    ck_assert_int_eq(dw_tar_close(&t, 1), 0);
    tl_dataset *ds = BOGUS;
    ck_assert_tl_err(tl_dataset_load_cifar10(&ds, P("t.tar.gz"), TL_SPLIT_TEST), TL_ECHECKSUM,
                     "t.tar.gz: byte 1024: tar header checksum does not match");
    ck_assert_ptr_null(ds);
    cfiles_free(&cf);
    remove_tmp();
}
END_TEST

START_TEST(bad_label_cifar10)
{
    make_tmp();
    cfiles cf;
    c10_make(&cf);
    cf.data[1][REC10] = 10; /* data_batch_2, record 1 */
    cfiles_write_dir(&cf, tmpdir);
    c10_write_tar(&cf, P("cifar-10-binary.tar.gz"), 1);
    tl_dataset *ds = BOGUS;
    ck_assert_tl_err(tl_dataset_load_cifar10(&ds, tmpdir, TL_SPLIT_TRAIN), TL_ERANGE,
                     "data_batch_2.bin: byte 3073, record 1: label 10 is outside [0, 10)");
    ck_assert_ptr_null(ds);
    ds = BOGUS;
    /* In the archive, data_batch_2.bin's data starts at byte 512 + 512 +
     * 9219 (padded to 9728) + 512 + 512 + 512 + 3584 + 512 + 6656 + 512 +
     * 9728 + 512 + 512 + 512: after the directory entry, data_batch_1,
     * batches.meta.txt, data_batch_3, data_batch_4, test_batch and
     * readme.html. */
    ck_assert_tl_err(tl_dataset_load_cifar10(&ds, P("cifar-10-binary.tar.gz"), TL_SPLIT_TRAIN), TL_ERANGE,
                     "cifar-10-binary.tar.gz: member cifar-10-batches-bin/data_batch_2.bin: byte 3073");
    ck_assert_msg_has("record 1: label 10 is outside [0, 10)");
    ck_assert_ptr_null(ds);
    cfiles_free(&cf);
    remove_tmp();
}
END_TEST

START_TEST(bad_label_cifar100)
{
    make_tmp();
    cfiles cf;
    c100_make(&cf, 3, 2);
    cf.data[1][REC100 + 1] = 100; /* test.bin record 1: fine label */
    cf.data[0][2 * REC100] = 20;  /* train.bin record 2: coarse label */
    cfiles_write_dir(&cf, tmpdir);
    tl_dataset *ds = BOGUS;
    ck_assert_tl_err(tl_dataset_load_cifar100(&ds, tmpdir, TL_SPLIT_TEST, TL_CIFAR100_COARSE), TL_ERANGE,
                     "test.bin: byte 3075, record 1: fine label 100 is outside [0, 100)");
    ck_assert_ptr_null(ds);
    ds = BOGUS;
    ck_assert_tl_err(tl_dataset_load_cifar100(&ds, tmpdir, TL_SPLIT_TRAIN, TL_CIFAR100_FINE), TL_ERANGE,
                     "train.bin: byte 6148, record 2: coarse label 20 is outside [0, 20)");
    ck_assert_ptr_null(ds);
    cfiles_free(&cf);
    remove_tmp();
}
END_TEST

START_TEST(bad_label_idx)
{
    make_tmp();
    write_idx(P("train-images-idx3-ubyte"), P("train-labels-idx1-ubyte"), 5, 28, 28, 0, 0);
    size_t n;
    unsigned char *lab = read_all(P("train-labels-idx1-ubyte"), &n);
    lab[8 + 3] = 10;
    write_file(P("train-labels-idx1-ubyte"), lab, n, 0);
    tl_dataset *ds = BOGUS;
    ck_assert_tl_err(tl_dataset_load_mnist_dir(&ds, tmpdir, TL_SPLIT_TRAIN), TL_ERANGE,
                     "train-labels-idx1-ubyte: byte 11: label 10 of example 3 is outside [0, 10)");
    ck_assert_ptr_null(ds);
    /* The generic reader takes the classes from the data unless told. */
    ck_assert_tl_ok(tl_dataset_load_idx(&ds, P("train-images-idx3-ubyte"), P("train-labels-idx1-ubyte"), 0));
    ck_assert_uint_eq(tl_dataset_num_classes(ds), 11);
    tl_dataset_free(ds);
    free(lab);
    remove_tmp();
}
END_TEST

START_TEST(bad_tar_member_missing)
{
    make_tmp();
    cfiles cf;
    c10_make(&cf);
    dw_tar t;
    char name[64];
    ck_assert_int_eq(dw_tar_open(&t, P("c.tar.gz"), 1), 0);
    for (int f = 0; f < 5; f++)
        if (f != 3) {
            snprintf(name, sizeof name, "cifar-10-batches-bin/%s", cf.names[f]);
            dw_tar_member(&t, name, cf.data[f], cf.size[f], '0');
        }
    ck_assert_int_eq(dw_tar_close(&t, 1), 0);
    tl_dataset *ds = BOGUS;
    ck_assert_tl_err(tl_dataset_load_cifar10(&ds, P("c.tar.gz"), TL_SPLIT_TRAIN), TL_ENOTFOUND,
                     "c.tar.gz: member cifar-10-batches-bin/data_batch_4.bin not found");
    ck_assert_msg_has("4 of 5 members found before the end of the archive at byte");
    ck_assert_ptr_null(ds);
    cfiles_free(&cf);
    remove_tmp();
}
END_TEST

START_TEST(bad_tar_member_size)
{
    make_tmp();
    cfiles cf;
    c10_make(&cf);
    dw_tar t;
    ck_assert_int_eq(dw_tar_open(&t, P("c.tar.gz"), 1), 0);
    dw_tar_member(&t, "cifar-10-batches-bin/batches.meta.txt", "x\n", 2, '0');
    dw_tar_member(&t, "cifar-10-batches-bin/test_batch.bin", cf.data[5], 3000, '0');
    ck_assert_int_eq(dw_tar_close(&t, 1), 0);
    tl_dataset *ds = BOGUS;
    ck_assert_tl_err(tl_dataset_load_cifar10(&ds, P("c.tar.gz"), TL_SPLIT_TEST), TL_EFORMAT,
                     "c.tar.gz: byte 1024: member cifar-10-batches-bin/test_batch.bin has 3000 bytes, not a whole "
                     "number of 3073-byte records");
    ck_assert_ptr_null(ds);
    /* A member of the right name that is not a file. */
    ck_assert_int_eq(dw_tar_open(&t, P("d.tar.gz"), 1), 0);
    dw_tar_member(&t, "cifar-10-batches-bin/test_batch.bin", NULL, 0, '5');
    ck_assert_int_eq(dw_tar_close(&t, 1), 0);
    ds = BOGUS;
    ck_assert_tl_err(tl_dataset_load_cifar10(&ds, P("d.tar.gz"), TL_SPLIT_TEST), TL_EFORMAT,
                     "d.tar.gz: byte 0: member cifar-10-batches-bin/test_batch.bin is not a regular file");
    ck_assert_ptr_null(ds);
    cfiles_free(&cf);
    remove_tmp();
}
END_TEST

START_TEST(bad_tar_member_too_big)
{
    /* A header announcing far more than the archive holds is refused before
     * anything is allocated for it. */
    make_tmp();
    dw_tar t;
    unsigned char h[512];
    ck_assert_int_eq(dw_tar_open(&t, P("big.tar.gz"), 1), 0);
    dw_tar_header(h, "cifar-10-batches-bin/test_batch.bin", (uint64_t)3073 * 2000000, '0', 0);
    dw_tar_raw(&t, h, 512);
    dw_tar_raw(&t, "abc", 3);
    ck_assert_int_eq(dw_tar_close(&t, 0), 0);
    tl_dataset *ds = BOGUS;
    ck_assert_tl_err(tl_dataset_load_cifar10(&ds, P("big.tar.gz"), TL_SPLIT_TEST), TL_ETRUNCATED,
                     "big.tar.gz: byte 0: member cifar-10-batches-bin/test_batch.bin announces 6146000000 bytes");
    ck_assert_ptr_null(ds);
    remove_tmp();
}
END_TEST

/* Write the gzip file of write_idx's labels with byte `at` (from the start,
 * or from the end when negative) XORed with `mask`. */
static void corrupt_gz(const char *path, long at, unsigned char mask)
{
    size_t n;
    unsigned char *b = read_all(path, &n);
    size_t i = at >= 0 ? (size_t)at : n - (size_t)(-at);
    b[i] ^= mask;
    write_file(path, b, n, 0);
    free(b);
}

START_TEST(bad_corrupt_gzip)
{
    make_tmp();
    write_idx(P("img.gz"), P("lab.gz"), 40, 6, 6, 0, 1);
    tl_dataset *ds = BOGUS;
    /* the compression method byte of the gzip header */
    corrupt_gz(P("img.gz"), 2, 0x0f);
    ck_assert_tl_err(tl_dataset_load_idx(&ds, P("img.gz"), P("lab.gz"), 0), TL_EFORMAT,
                     "img.gz: corrupt gzip data at compressed byte");
    ck_assert_msg_has("unknown compression method");
    ck_assert_ptr_null(ds);
    corrupt_gz(P("img.gz"), 2, 0x0f);
    /* the CRC-32 in the trailer: only reading to the end notices */
    corrupt_gz(P("lab.gz"), -8, 0x01);
    ds = BOGUS;
    ck_assert_tl_err(tl_dataset_load_idx(&ds, P("img.gz"), P("lab.gz"), 0), TL_EFORMAT,
                     "lab.gz: corrupt gzip data at compressed byte");
    ck_assert_msg_has("incorrect data check");
    ck_assert_ptr_null(ds);
    remove_tmp();
}
END_TEST

START_TEST(bad_gzip_trailing_garbage)
{
    make_tmp();
    write_idx(P("img.gz"), P("lab.gz"), 4, 3, 3, 0, 1);
    size_t n;
    unsigned char *b = read_all(P("lab.gz"), &n);
    b = realloc(b, n + 5);
    memcpy(b + n, "JUNK!", 5);
    write_file(P("lab.gz"), b, n + 5, 0);
    tl_dataset *ds = BOGUS;
    ck_assert_tl_err(tl_dataset_load_idx(&ds, P("img.gz"), P("lab.gz"), 0), TL_EFORMAT,
                     "is not another gzip member");
    ck_assert_msg_has("lab.gz: compressed byte");
    ck_assert_ptr_null(ds);
    free(b);
    remove_tmp();
}
END_TEST

START_TEST(bad_idx_trailing_data)
{
    make_tmp();
    write_idx(P("img"), P("lab"), 4, 3, 3, 0, 0);
    size_t n;
    unsigned char *b = read_all(P("img"), &n);
    b = realloc(b, n + 1);
    b[n] = 7;
    write_file(P("img"), b, n + 1, 0);
    tl_dataset *ds = BOGUS;
    ck_assert_tl_err(tl_dataset_load_idx(&ds, P("img"), P("lab"), 0), TL_EFORMAT,
                     "img: byte 52: data continues after the 4 images the header announces");
    ck_assert_ptr_null(ds);
    free(b);
    remove_tmp();
}
END_TEST

START_TEST(bad_count_mismatch)
{
    make_tmp();
    write_idx(P("img"), P("lab"), 5, 3, 3, 0, 1);
    write_idx(P("img4"), P("lab4"), 4, 3, 3, 0, 1);
    tl_dataset *ds = BOGUS;
    ck_assert_tl_err(tl_dataset_load_idx(&ds, P("img"), P("lab4"), 0), TL_ESHAPE, "img holds 5 images");
    ck_assert_msg_has("lab4 holds 4 labels (header byte 4)");
    ck_assert_ptr_null(ds);
    remove_tmp();
}
END_TEST

START_TEST(bad_absurd_dimensions)
{
    make_tmp();
    unsigned char b[32];
    uint32_t lab_dims[1] = {2};
    write_file(P("lab"), b, dw_idx_header(b, 1, lab_dims) + 0, 0);
    /* one image would have 2^64 values */
    uint32_t dims[3] = {2, 0xFFFFFFFFu, 0xFFFFFFFFu};
    write_file(P("img"), b, dw_idx_header(b, 3, dims), 0);
    tl_dataset *ds = BOGUS;
    ck_assert_tl_err(tl_dataset_load_idx(&ds, P("img"), P("lab"), 0), TL_ETOOBIG,
                     "img: byte 8: images of 4294967295 x 4294967295 x 1 are too large");
    ck_assert_ptr_null(ds);
    /* each image fits, all of them overflow size_t bytes */
    uint32_t dims2[4] = {0xFFFFFFFFu, 0xFFFFu, 0x7FFFu, 1};
    write_file(P("img"), b, dw_idx_header(b, 4, dims2), 0);
    ds = BOGUS;
    ck_assert_tl_err(tl_dataset_load_idx(&ds, P("img"), P("lab"), 0), TL_ETOOBIG,
                     "img: byte 4: 4294967295 images of 65535 x 32767 x 1 would need more bytes");
    ck_assert_ptr_null(ds);
    /* plausible sizes, far more than the file holds: refused before allocating */
    uint32_t dims3[3] = {2000000, 28, 28};
    lab_dims[0] = 2000000;
    write_file(P("lab"), b, dw_idx_header(b, 1, lab_dims), 0);
    write_file(P("img"), b, dw_idx_header(b, 3, dims3), 0);
    ds = BOGUS;
    ck_assert_tl_err(tl_dataset_load_idx(&ds, P("img"), P("lab"), 0), TL_ETRUNCATED,
                     "lab: byte 8: the header announces 2000000 labels (2000000 bytes) but the rest of the file can "
                     "hold at most 0 bytes");
    ck_assert_ptr_null(ds);
    remove_tmp();
}
END_TEST

START_TEST(bad_arguments)
{
    tl_dataset *ds = BOGUS;
    ck_assert_tl_err(tl_dataset_load_cifar10(NULL, "x", TL_SPLIT_TRAIN), TL_EINVAL, "out is NULL");
    ck_assert_tl_err(tl_dataset_load_cifar10(&ds, NULL, TL_SPLIT_TRAIN), TL_EINVAL, "path is NULL");
    ck_assert_ptr_null(ds);
    ck_assert_tl_err(tl_dataset_load_cifar10(&ds, "x", (tl_split)7), TL_EINVAL, "unknown split 7");
    ck_assert_tl_err(tl_dataset_load_cifar100(&ds, "x", TL_SPLIT_TEST, (tl_cifar100_label)3), TL_EINVAL,
                     "unknown label kind 3");
    ck_assert_tl_err(tl_dataset_load_idx(&ds, "x", NULL, 0), TL_EINVAL, "labels_path is NULL");
    ck_assert_tl_err(tl_dataset_load_mnist_dir(&ds, NULL, TL_SPLIT_TEST), TL_EINVAL, "dir is NULL");
}
END_TEST

/* ---- hostile bytes: mutated and cut files never crash or leak --------------------------- */

/* Load `path` (CIFAR-10 test split, or IDX with `labels`), expecting either
 * success or an error with a sentence and no dataset. */
static void load_any_outcome(const char *path, const char *labels)
{
    tl_dataset *ds = BOGUS;
    tl_clear_error();
    tl_status st = labels ? tl_dataset_load_idx(&ds, path, labels, 0) : tl_dataset_load_cifar10(&ds, path, TL_SPLIT_TEST);
    if (st == TL_OK) {
        ck_assert_ptr_nonnull(ds);
        ck_assert_ptr_ne(ds, BOGUS);
        tl_dataset_free(ds);
    } else {
        ck_assert_ptr_null(ds);
        ck_assert_msg(strlen(tl_last_error()) > 10, "status %s without a sentence", tl_status_str(st));
    }
}

START_TEST(hostile_mutations)
{
    make_tmp();
    cfiles cf;
    c10_make(&cf);
    c10_write_tar(&cf, P("c.tar"), 0);
    c10_write_tar(&cf, P("c.tar.gz"), 1);
    write_idx(P("img.gz"), P("lab.gz"), 5, 6, 6, 0, 1);
    write_idx(P("img"), P("lab"), 5, 6, 6, 0, 0);
    const char *files[4] = {P("c.tar"), P("c.tar.gz"), P("img.gz"), P("img")};
    const char *labels[4] = {NULL, NULL, P("lab.gz"), P("lab")};
    uint64_t seed = 12345;
    for (int f = 0; f < 4; f++) {
        size_t n;
        unsigned char *orig = read_all(files[f], &n), *b = malloc(n);
        /* Every cut, in steps: headers, record boundaries, gzip trailer. */
        for (size_t len = 0; len < n; len += n / 150 + 1) {
            write_file(P("m"), orig, len, 0);
            load_any_outcome(P("m"), labels[f]);
        }
        /* Random bytes changed, mostly near the start where the headers are. */
        for (int trial = 0; trial < 150; trial++) {
            memcpy(b, orig, n);
            for (int k = 0; k < 1 + trial % 4; k++) {
                seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
                size_t at = (size_t)(seed >> 33) % (trial % 2 ? n : (n < 600 ? n : 600));
                b[at] = (unsigned char)(seed >> 20);
            }
            write_file(P("m"), b, n, 0);
            load_any_outcome(P("m"), labels[f]);
        }
        free(orig);
        free(b);
    }
    cfiles_free(&cf);
    remove_tmp();
}
END_TEST

/* ---- allocation failures: every one is TL_ENOMEM, with nothing leaked ---------------- */

typedef tl_status (*load_fn)(tl_dataset **out, const void *arg);

static tl_status load_c10_train(tl_dataset **out, const void *path)
{
    return tl_dataset_load_cifar10(out, path, TL_SPLIT_TRAIN);
}

static tl_status load_mnist_test(tl_dataset **out, const void *dir)
{
    return tl_dataset_load_mnist_dir(out, dir, TL_SPLIT_TEST);
}

static void fail_each_allocation(load_fn fn, const void *arg, size_t expect_n)
{
    long i;
    for (i = 1; i < 10000; i++) {
        tl_dataset *ds = BOGUS;
        tli_alloc_fail_at(i);
        tl_status st = fn(&ds, arg);
        tli_alloc_fail_at(0);
        if (st == TL_OK) {
            ck_assert_uint_eq(tl_dataset_count(ds), expect_n);
            tl_dataset_free(ds);
            break;
        }
        ck_assert_msg(st == TL_ENOMEM, "allocation %ld: %s: %s", i, tl_status_str(st), tl_last_error());
        ck_assert_ptr_null(ds);
    }
    ck_assert_int_gt(i, 3);
    ck_assert_int_lt(i, 10000);
}

START_TEST(alloc_failures)
{
    make_tmp();
    cfiles cf;
    c10_make(&cf);
    mkdir_p(P("d"));
    cfiles_write_dir(&cf, P("d"));
    c10_write_tar(&cf, P("c.tar.gz"), 1);
    write_idx(P("t10k-images-idx3-ubyte.gz"), P("t10k-labels-idx1-ubyte.gz"), 6, 28, 28, 0, 1);
    fail_each_allocation(load_c10_train, P("d"), 12);
    fail_each_allocation(load_c10_train, P("c.tar.gz"), 12);
    fail_each_allocation(load_mnist_test, tmpdir, 6);
    cfiles_free(&cf);
    remove_tmp();
}
END_TEST

int main(void)
{
    Suite *s = suite_create("data_readers");
    TCase *tc = tcase_create("good");
    tcase_add_test(tc, cifar10_dir);
    tcase_add_test(tc, cifar10_parent_dir);
    tcase_add_test(tc, cifar10_targz);
    tcase_add_test(tc, cifar10_plain_tar);
    tcase_add_test(tc, cifar10_member_names);
    tcase_add_test(tc, cifar10_pax_renamed_member);
    tcase_add_test(tc, cifar100_dir_and_targz);
    tcase_add_test(tc, idx_plain_and_gzip);
    tcase_add_test(tc, idx_four_dims);
    tcase_add_test(tc, idx_gzip_members);
    tcase_add_test(tc, mnist_dir_layout);
    tcase_add_test(tc, tar_reader_extensions);
    suite_add_tcase(s, tc);
    tc = tcase_create("bad");
    tcase_add_test(tc, bad_missing_path);
    tcase_add_test(tc, bad_missing_file);
    tcase_add_test(tc, bad_unreadable);
    tcase_add_test(tc, bad_truncated_record);
    tcase_add_test(tc, bad_truncated_idx);
    tcase_add_test(tc, bad_truncated_gzip);
    tcase_add_test(tc, bad_truncated_tar_member);
    tcase_add_test(tc, bad_magic);
    tcase_add_test(tc, bad_not_a_tar);
    tcase_add_test(tc, bad_tar_checksum);
    tcase_add_test(tc, bad_label_cifar10);
    tcase_add_test(tc, bad_label_cifar100);
    tcase_add_test(tc, bad_label_idx);
    tcase_add_test(tc, bad_tar_member_missing);
    tcase_add_test(tc, bad_tar_member_size);
    tcase_add_test(tc, bad_tar_member_too_big);
    tcase_add_test(tc, bad_corrupt_gzip);
    tcase_add_test(tc, bad_gzip_trailing_garbage);
    tcase_add_test(tc, bad_idx_trailing_data);
    tcase_add_test(tc, bad_count_mismatch);
    tcase_add_test(tc, bad_absurd_dimensions);
    tcase_add_test(tc, bad_arguments);
    tcase_add_test(tc, alloc_failures);
    tcase_add_test(tc, hostile_mutations);
    suite_add_tcase(s, tc);
    return th_run(s);
}
