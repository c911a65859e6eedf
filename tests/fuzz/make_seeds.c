/*
 * make_seeds.c - tl-fuzz-seeds OUTDIR: write the seed corpora of the fuzz
 * harnesses with the tests' own format writers (tests/data_writers.c):
 * OUTDIR/gzip, OUTDIR/tar, OUTDIR/cifar, OUTDIR/idx, and with libtl's own
 * writers OUTDIR/checkpoint and OUTDIR/safetensors (sequential and graph
 * models; plus libtl 1.0.0's checkpoints from tests/fixtures), and
 * OUTDIR/onnx with the ONNX writer of tests/onnx_build.c: one small
 * valid (or nearly valid) file per seed, prefixed with the mode byte where
 * the harness takes one. Generated at test time, never committed.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../data_writers.h"
#include "../onnx_build.h"
#include "fuzz_util.h"

static const char *out;
static int failed;

static void mkdir_or_die(const char *path)
{
    if (mkdir(path, 0755) != 0 && errno != EEXIST) {
        perror(path);
        exit(1);
    }
}

static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        perror(path);
        exit(1);
    }
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)len + 1);
    if (b == NULL || fread(b, 1, (size_t)len, f) != (size_t)len) {
        perror(path);
        exit(1);
    }
    fclose(f);
    *n = (size_t)len;
    return b;
}

/* OUTDIR/<harness>/<name>: `prefix` bytes, then `data`. */
static void seed(const char *harness, const char *name, const void *prefix, size_t plen, const void *data, size_t n)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", out, harness);
    mkdir_or_die(path);
    snprintf(path, sizeof path, "%s/%s/%s", out, harness, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(prefix, 1, plen, f) != plen || (n && fwrite(data, 1, n, f) != n) || fclose(f) != 0) {
        perror(path);
        failed = 1;
    }
}

/* The bytes a writer produced at a scratch path. */
static unsigned char *scratch_file(size_t *n)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/.scratch", out);
    unsigned char *b = slurp(path, n);
    remove(path);
    return b;
}

static const char *scratch_path(void)
{
    static char path[1024];
    snprintf(path, sizeof path, "%s/.scratch", out);
    return path;
}

static void gz_bytes(const void *data, size_t n, unsigned char **gz, size_t *gzn)
{
    if (dw_write(scratch_path(), data, n, 1) != 0)
        failed = 1;
    *gz = scratch_file(gzn);
}

/* ---- gzip ------------------------------------------------------------------- */

static void gzip_seeds(void)
{
    static const char text[] = "libtl reads every dataset through this stream, plain or gzip.\n";
    unsigned char *gz, *gz2, both[4096];
    size_t gzn, gz2n;
    seed("gzip", "plain", "", 0, text, sizeof text - 1);
    gz_bytes(text, sizeof text - 1, &gz, &gzn);
    seed("gzip", "gzip", "", 0, gz, gzn);
    /* Two members back to back, then the same with trailing garbage. */
    gz_bytes("second member\n", 14, &gz2, &gz2n);
    memcpy(both, gz, gzn);
    memcpy(both + gzn, gz2, gz2n);
    seed("gzip", "two-members", "", 0, both, gzn + gz2n);
    memcpy(both + gzn + gz2n, "junk", 4);
    seed("gzip", "trailing", "", 0, both, gzn + gz2n + 4);
    seed("gzip", "cut", "", 0, gz, gzn / 2);
    /* Larger than the stream's 64 KiB buffer, compressible. */
    size_t big = 70000;
    unsigned char *b = malloc(big);
    for (size_t i = 0; i < big; i++)
        b[i] = (unsigned char)(i * 7 / 1000);
    free(gz2);
    gz_bytes(b, big, &gz2, &gz2n);
    seed("gzip", "big", "", 0, gz2, gz2n);
    free(b);
    free(gz);
    free(gz2);
}

/* ---- tar -------------------------------------------------------------------- */

static size_t pax_record(char *dst, const char *kv)
{
    size_t body = strlen(kv) + 2, len = body + 1;
    while ((size_t)snprintf(NULL, 0, "%zu", len) + body != len)
        len++;
    return (size_t)sprintf(dst, "%zu %s\n", len, kv);
}

/* Every header kind the reader knows, as tests/test_data_readers.c writes them. */
static void write_ext_tar(int compress)
{
    dw_tar t;
    unsigned char h[512];
    char name[300], pax[256];
    if (dw_tar_open(&t, scratch_path(), compress) != 0) {
        failed = 1;
        return;
    }
    memset(name, 0, sizeof name);
    for (int i = 0; i < 160; i++)
        name[i] = i % 40 == 39 ? '/' : (char)('a' + i % 26);
    strcpy(name + 160, "one.bin");
    dw_tar_member(&t, name, "first", 5, '0');
    char gnu[280];
    memset(gnu, 'g', 270);
    gnu[100] = '/';
    gnu[270] = '\0';
    dw_tar_member(&t, "././@LongLink", gnu, 271, 'L');
    dw_tar_header(h, "cut-short", 6, '0', 1);
    dw_tar_raw(&t, h, 512);
    dw_tar_raw(&t, "second", 6);
    dw_tar_pad(&t, 6);
    size_t plen = pax_record(pax, "path=pax/third.txt");
    plen += pax_record(pax + plen, "size=7");
    dw_tar_member(&t, "PaxHeaders/third", pax, plen, 'x');
    dw_tar_header(h, "ignored-name", 0, '0', 0);
    dw_tar_raw(&t, h, 512);
    dw_tar_raw(&t, "third!!", 7);
    dw_tar_pad(&t, 7);
    plen = pax_record(pax, "comment=hello");
    dw_tar_member(&t, "pax_global_header", pax, plen, 'g');
    dw_tar_member(&t, "././@LongLink", "target", 7, 'K');
    dw_tar_header(h, "./base256.bin", 0, '0', 1);
    memset(h + 124, 0, 12);
    h[124] = 0x80;
    h[135] = 5;
    dw_tar_fix_checksum(h);
    dw_tar_raw(&t, h, 512);
    dw_tar_raw(&t, "fifth", 5);
    dw_tar_pad(&t, 5);
    dw_tar_member(&t, "dir/", NULL, 0, '5');
    dw_tar_member(&t, "link", NULL, 0, '2');
    if (dw_tar_close(&t, compress) != 0)
        failed = 1;
}

static void tar_seeds(void)
{
    unsigned char *b;
    size_t n;
    write_ext_tar(0);
    b = scratch_file(&n);
    seed("tar", "extensions.tar", "", 0, b, n);
    free(b);
    write_ext_tar(1);
    b = scratch_file(&n);
    seed("tar", "extensions.tar.gz", "", 0, b, n);
    free(b);
}

/* ---- CIFAR ------------------------------------------------------------------ */

#define REC10 3073
#define REC100 3074

/* A CIFAR-10 (label_bytes 1) or CIFAR-100 (2) file of `n` records. */
static unsigned char *cifar_file(size_t label_bytes, size_t n, unsigned salt)
{
    size_t rs = label_bytes + 3072;
    unsigned char *b = malloc(n * rs);
    for (size_t r = 0; r < n; r++) {
        unsigned char lab[2] = {(unsigned char)((r * 3 + salt) % (label_bytes == 1 ? 10 : 20)),
                                (unsigned char)((r * 11 + salt) % 100)};
        dw_cifar_record(b + r * rs, label_bytes, lab, r, salt);
    }
    return b;
}

static void cifar_archive(const char *folder, const char *const *files, size_t nfiles, size_t label_bytes,
                          size_t per_file, int compress, unsigned char mode, const char *seed_name)
{
    dw_tar t;
    char name[256];
    if (dw_tar_open(&t, scratch_path(), compress) != 0) {
        failed = 1;
        return;
    }
    snprintf(name, sizeof name, "%s/", folder);
    dw_tar_member(&t, name, NULL, 0, '5');
    snprintf(name, sizeof name, "%s/readme.html", folder);
    dw_tar_member(&t, name, "<html></html>\n", 14, '0');
    for (size_t f = nfiles; f-- > 0;) { /* out of order, as the real archive */
        unsigned char *b = cifar_file(label_bytes, per_file, (unsigned)f + 1);
        snprintf(name, sizeof name, "%s/%s", folder, files[f]);
        dw_tar_member(&t, name, b, per_file * (label_bytes + 3072), '0');
        free(b);
    }
    if (dw_tar_close(&t, 1) != 0)
        failed = 1;
    size_t n;
    unsigned char *b = scratch_file(&n);
    seed("cifar", seed_name, &mode, 1, b, n);
    free(b);
}

static void cifar_seeds(void)
{
    static const char *const c10_train[] = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                                            "data_batch_4.bin", "data_batch_5.bin"};
    static const char *const c10_test[] = {"test_batch.bin"};
    static const char *const c100_test[] = {"test.bin"};
    static const char *const c100_train[] = {"train.bin"};
    cifar_archive("cifar-10-batches-bin", c10_test, 1, 1, 2, 1, 0, "c10-test.tar.gz");
    cifar_archive("cifar-10-batches-bin", c10_test, 1, 1, 1, 0, 0, "c10-test.tar");
    cifar_archive("cifar-10-batches-bin", c10_train, 5, 1, 1, 1, 1, "c10-train.tar.gz");
    cifar_archive("cifar-100-binary", c100_test, 1, 2, 2, 1, 2, "c100-test.tar.gz");
    cifar_archive("cifar-100-binary", c100_train, 1, 2, 1, 0, 3, "c100-train.tar");
    unsigned char mode = 4;
    unsigned char *b = cifar_file(1, 2, 9);
    seed("cifar", "c10-dir", &mode, 1, b, 2 * REC10);
    free(b);
    mode = 5;
    b = cifar_file(2, 2, 9);
    seed("cifar", "c100-dir", &mode, 1, b, 2 * REC100);
    free(b);
}

/* ---- IDX -------------------------------------------------------------------- */

static void idx_seed(const char *name, uint32_t n, uint32_t h, uint32_t w, uint32_t c, int gz, unsigned char classes)
{
    unsigned char lab[64 + 8], *img;
    uint32_t ldims[1] = {n}, idims[4] = {n, h, w, c};
    size_t ll = dw_idx_header(lab, 1, ldims);
    for (uint32_t i = 0; i < n; i++)
        lab[ll++] = (unsigned char)(i % 10);
    size_t count = (size_t)n * h * w * c;
    img = malloc(count + 32);
    size_t il = dw_idx_header(img, c > 1 ? 4 : 3, idims);
    for (size_t i = 0; i < count; i++)
        img[il++] = (unsigned char)(i * 13);
    unsigned char *lfile = lab, *ifile = img;
    size_t lsize = ll, isize = il;
    if (gz) {
        gz_bytes(lab, ll, &lfile, &lsize);
        gz_bytes(img, il, &ifile, &isize);
    }
    size_t total = 3 + lsize + isize;
    unsigned char *b = malloc(total);
    b[0] = (unsigned char)(lsize >> 8);
    b[1] = (unsigned char)lsize;
    b[2] = classes;
    memcpy(b + 3, lfile, lsize);
    memcpy(b + 3 + lsize, ifile, isize);
    seed("idx", name, "", 0, b, total);
    free(b);
    if (gz) {
        free(lfile);
        free(ifile);
    }
    free(img);
}

static void idx_seeds(void)
{
    idx_seed("plain", 3, 4, 4, 1, 0, 0);
    idx_seed("gzip", 5, 28, 28, 1, 1, 10);
    idx_seed("four-dims", 2, 3, 3, 3, 0, 10);
    idx_seed("mixed", 4, 8, 8, 1, 1, 0);
}

/* ---- checkpoint ---------------------------------------------------------------- */

static uint64_t le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* A checkpoint's bytes as seeds for every mode: the file (modes 0-3) and
 * its decompressed payload (modes 4-7, framed again by the harness with
 * minor version `minor`: mode bits 3-4). */
static void checkpoint_bytes_seed(const char *name, const unsigned char *f, size_t n, unsigned minor)
{
    char sname[128];
    for (unsigned char mode = 0; mode < 4; mode++) {
        snprintf(sname, sizeof sname, "%s-file-%u", name, mode);
        seed("checkpoint", sname, &mode, 1, f, n);
    }
    uLongf plen = n >= 48 ? (uLongf)le64(f + 16) : 0;
    unsigned char *payload = malloc(plen ? plen : 1);
    if (n < 48 || uncompress(payload, &plen, f + 48, (uLong)(n - 48)) != Z_OK) {
        fprintf(stderr, "%s: cannot decompress the payload\n", name);
        failed = 1;
    } else {
        for (unsigned char mode = 4; mode < 8; mode++) {
            unsigned char m = (unsigned char)(mode | minor << 3);
            snprintf(sname, sizeof sname, "%s-payload-%u", name, m);
            seed("checkpoint", sname, &m, 1, payload, plen);
        }
    }
    free(payload);
}

/* One saved model (taken and freed) as seeds: what libtl writes is format
 * 1.1. */
static void checkpoint_seed(const char *name, tl_model *m, int with_optim, int level)
{
    tl_save_options so = TL_SAVE_OPTIONS_INIT;
    so.include_optimizer = with_optim;
    so.compression_level = level;
    if (m == NULL || tl_model_save(m, scratch_path(), &so) != TL_OK) {
        fprintf(stderr, "%s: %s\n", name, tl_last_error());
        failed = 1;
        tl_model_free(m);
        return;
    }
    tl_model_free(m);
    size_t n;
    unsigned char *f = scratch_file(&n);
    checkpoint_bytes_seed(name, f, n, TL_CHECKPOINT_VERSION_MINOR);
    free(f);
}

static int stop_now(const tl_progress *p, void *payload)
{
    (void)p;
    (void)payload;
    return 1;
}

/* A model in the middle of a fit with early stopping and restore_best (one
 * epoch, then cancelled): its file has an ESTP section with a copy. */
static tl_model *early_model(void)
{
    tl_model *m = fz_small_model(3, 1);
    float x[4 * 36];
    int32_t y[4] = {0, 2, 1, 0};
    for (int i = 0; i < 4 * 36; i++)
        x[i] = (float)(i % 5) / 5.0f;
    tl_dataset *ds = NULL;
    if (m == NULL || tl_dataset_create(&ds, x, y, 4, 6, 6, 1, 3, TL_DATA_COPY) != TL_OK) {
        tl_model_free(m);
        return NULL;
    }
    tl_early_stopping_options es = TL_EARLY_STOPPING_OPTIONS_INIT;
    es.restore_best = 1;
    tl_fit_options fo = TL_FIT_OPTIONS_INIT;
    fo.epochs = 3;
    fo.validation = ds;
    fo.early_stopping = &es;
    fo.on_epoch = stop_now;
    tl_status st = tl_model_fit(m, ds, &fo);
    tl_dataset_free(ds);
    if (st != TL_ECANCELED) {
        tl_model_free(m);
        return NULL;
    }
    return m;
}

static void checkpoint_seeds(void)
{
    checkpoint_seed("early-stopping", early_model(), 1, 6);
    checkpoint_seed("plain", fz_small_model(3, 0), 1, 6);
    checkpoint_seed("adam", fz_small_model(3, 1), 1, 6);
    checkpoint_seed("sgd-stored", fz_small_model(3, 2), 1, 0);
    checkpoint_seed("no-optimizer", fz_small_model(3, 1), 0, 9);
    checkpoint_seed("graph-adam", fz_graph_model(3, 1), 1, 6);
    checkpoint_seed("graph", fz_graph_model(4, 0), 1, 1);
    /* Files of libtl 1.0.0 (format 1.0), from the compatibility tests. */
    static const char *const v1_0[] = {"v1_0_cnn.tlm", "v1_0_cnn_noopt.tlm"};
    for (size_t i = 0; i < sizeof v1_0 / sizeof *v1_0; i++) {
        char path[1024];
        size_t n;
        snprintf(path, sizeof path, "%s/%s", TL_FIXTURES_DIR, v1_0[i]);
        unsigned char *f = slurp(path, &n);
        checkpoint_bytes_seed(v1_0[i], f, n, 0);
        free(f);
    }
}

/* ---- safetensors --------------------------------------------------------------- */

static void safetensors_seeds(void)
{
    static const char *const rename[] = {"features.0.weight", "conv2d.kernel", "features.0.bias", "conv2d.bias"};
    tl_model *m = fz_small_model(5, 0), *g = fz_graph_model(5, 1);
    tl_safetensors_options so = TL_SAFETENSORS_OPTIONS_INIT;
    /* Mode bit 4: the harness loads into its graph model. */
    static const struct {
        const char *name;
        tl_tensor_layout layout;
        int renamed, graph;
        unsigned char mode;
    } v[] = {{"keras", TL_LAYOUT_KERAS, 0, 0, 0},
             {"pytorch", TL_LAYOUT_PYTORCH, 0, 0, 1},
             {"pytorch-renamed", TL_LAYOUT_PYTORCH, 1, 0, 5},
             {"keras-lenient", TL_LAYOUT_KERAS, 0, 0, 2},
             {"graph-keras", TL_LAYOUT_KERAS, 0, 1, 16},
             {"graph-pytorch", TL_LAYOUT_PYTORCH, 0, 1, 17},
             {"graph-pytorch-lenient", TL_LAYOUT_PYTORCH, 0, 1, 19},
             /* Mode bit 5: the harness creates the model the file describes. */
             {"create-keras", TL_LAYOUT_KERAS, 0, 0, 32},
             {"create-pytorch-renamed", TL_LAYOUT_PYTORCH, 1, 0, 36},
             {"create-graph-pytorch", TL_LAYOUT_PYTORCH, 0, 1, 32}};
    for (size_t i = 0; m && g && i < sizeof v / sizeof *v; i++) {
        so.rename = v[i].renamed ? rename : NULL;
        so.rename_count = v[i].renamed ? 2 : 0;
        if (tl_model_save_safetensors(v[i].graph ? g : m, scratch_path(), v[i].layout, &so) != TL_OK) {
            fprintf(stderr, "%s: %s\n", v[i].name, tl_last_error());
            failed = 1;
            continue;
        }
        size_t n;
        unsigned char *f = scratch_file(&n);
        seed("safetensors", v[i].name, &v[i].mode, 1, f, n);
        free(f);
    }
    if (m == NULL || g == NULL)
        failed = 1;
    tl_model_free(m);
    tl_model_free(g);
    /* Half precision and bfloat16 beside F32, written by hand. */
    static const char json[] =
        "{\"__metadata__\":{\"format\":\"pt\"},"
        "\"conv2d.kernel\":{\"dtype\":\"F16\",\"shape\":[3,3,1,2],\"data_offsets\":[0,36]},"
        "\"conv2d.bias\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[36,40]},"
        "\"dense.kernel\":{\"dtype\":\"F32\",\"shape\":[8,3],\"data_offsets\":[40,136]},"
        "\"dense.bias\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[136,142]}}";
    unsigned char file[8 + sizeof json + 142 + 8];
    size_t hl = sizeof json - 1, pad = (8 - hl % 8) % 8;
    memcpy(file + 8, json, hl);
    memset(file + 8 + hl, ' ', pad);
    hl += pad;
    for (int i = 0; i < 8; i++)
        file[i] = (unsigned char)(hl >> (8 * i));
    for (size_t i = 0; i < 142; i++)
        file[8 + hl + i] = i % 2 ? 0x3c : (unsigned char)(i * 5);
    unsigned char mode = 0;
    seed("safetensors", "half", &mode, 1, file, 8 + hl + 142);
    /* libtl 1.0's description (a chain, window settings as pairs). */
    char path[1024];
    size_t n;
    snprintf(path, sizeof path, "%s/%s", TL_FIXTURES_DIR, "v1_0_cnn.torch.safetensors");
    unsigned char *f = slurp(path, &n);
    mode = 32;
    seed("safetensors", "create-v1_0", &mode, 1, f, n);
    free(f);
}

/* ---- onnx ------------------------------------------------------------------------------------ */

/* The tests' tiny CNN in every storage, the external one with its data
 * file after the model (mode bit 1), and a symbolic-size graph (bit 0). */
static void onnx_seeds(void)
{
    static const char *const names[] = {"tiny-f32", "tiny-float-data", "tiny-f16", "tiny-bf16", "tiny-external"};
    for (int how = OX_RAW_F32; how <= OX_EXTERNAL; how++) {
        ob b = {0}, ext = {0};
        ox_tiny_cnn(&b, how == OX_RAW_F16 ? 11 : 13, (ox_store)how, &ext);
        unsigned char prefix[3] = {0, (unsigned char)b.n, (unsigned char)(b.n >> 8)};
        if (how == OX_EXTERNAL) {
            prefix[0] = 2;
            ob_raw(&b, ext.p, ext.n);
        }
        seed("onnx", names[how], prefix, how == OX_EXTERNAL ? 3 : 1, b.p, b.n);
        ob_free(&b);
        ob_free(&ext);
    }
    /* More operators: BatchNormalization, SiLU, average pooling, Concat,
     * GlobalAveragePool, MatMul + Add, on a symbolic (N, 2, H, W) input. */
    ob g = {0}, a = {0}, b = {0};
    const float gamma[2] = {1.0f, 0.5f}, beta[2] = {0.25f, -0.5f}, mean[2] = {0.0f, 0.125f}, var[2] = {1.0f, 2.0f};
    const float w[8] = {0.5f, -0.25f, 1.0f, 0.75f, -1.0f, 0.5f, 0.25f, 0.125f}, bias[2] = {0.5f, -0.5f};
    const int64_t d2[1] = {2}, dw[2] = {4, 2}, k3[2] = {3, 3}, one[2] = {1, 1}, p1[4] = {1, 1, 1, 1};
    const int64_t xin[4] = {-1, 2, -1, -1}, yout[2] = {-1, 2};
    ox_tensor_f(&g, 5, "bn.weight", d2, 1, gamma, OX_RAW_F32, NULL, NULL);
    ox_tensor_f(&g, 5, "bn.bias", d2, 1, beta, OX_RAW_F32, NULL, NULL);
    ox_tensor_f(&g, 5, "bn.running_mean", d2, 1, mean, OX_FLOAT_DATA, NULL, NULL);
    ox_tensor_f(&g, 5, "bn.running_var", d2, 1, var, OX_RAW_BF16, NULL, NULL);
    ox_tensor_f(&g, 5, "w", dw, 2, w, OX_RAW_F32, NULL, NULL);
    ox_tensor_f(&g, 5, "b", d2, 1, bias, OX_RAW_F16, NULL, NULL);
    ox_attr_float(&a, "epsilon", 1e-5f);
    ox_node(&g, "BatchNormalization", "bn", "x,bn.weight,bn.bias,bn.running_mean,bn.running_var", "n", &a);
    ox_node(&g, "Sigmoid", "sig", "n", "s", NULL);
    ox_node(&g, "Mul", "silu", "n,s", "u", NULL);
    ox_attr_ints(&a, "kernel_shape", k3, 2);
    ox_attr_ints(&a, "strides", one, 2);
    ox_attr_ints(&a, "pads", p1, 4);
    ox_attr_int(&a, "count_include_pad", 1);
    ox_node(&g, "AveragePool", "avg", "u", "v", &a);
    ox_attr_int(&a, "axis", 1);
    ox_node(&g, "Concat", "cat", "u,v", "c", &a);
    ox_node(&g, "GlobalAveragePool", "gap", "c", "p", NULL);
    ox_node(&g, "Flatten", "flat", "p", "f", NULL);
    ox_node(&g, "MatMul", "mm", "f,w", "z", NULL);
    ox_node(&g, "Add", "add", "z,b", "y", NULL);
    ox_value(&g, 11, "x", xin, 4);
    ox_value(&g, 12, "y", yout, 2);
    ox_model(&b, 15, &g);
    unsigned char m1 = 1;
    seed("onnx", "ops-symbolic", &m1, 1, b.p, b.n);
    ob_free(&b);
    /* x.view(x.size(0), -1) with a dynamic batch: Shape, Gather,
     * Unsqueeze, Concat, Reshape (opset 11: Unsqueeze's axes an attribute). */
    const int64_t zero[1] = {0}, minus1[1] = {-1}, d1[1] = {1}, x2[4] = {-1, 2, 3, 3}, y2[2] = {-1, 2};
    const float w2[36] = {0.5f, -0.5f};
    const int64_t dw2[2] = {2, 18};
    ox_tensor_i64(&g, 5, "zero", d1, 0, zero);
    ox_tensor_i64(&g, 5, "minus1", d1, 1, minus1);
    ox_tensor_f(&g, 5, "fc.weight", dw2, 2, w2, OX_RAW_F32, NULL, NULL);
    ox_node(&g, "Shape", "shape", "x", "s", NULL);
    ox_node(&g, "Gather", "gather", "s,zero", "n", NULL);
    ox_attr_ints(&a, "axes", zero, 1);
    ox_node(&g, "Unsqueeze", "unsqueeze", "n", "u", &a);
    ox_attr_int(&a, "axis", 0);
    ox_node(&g, "Concat", "concat", "u,minus1", "shape2", &a);
    ox_node(&g, "Reshape", "reshape", "x,shape2", "f", NULL);
    ox_attr_int(&a, "transB", 1);
    ox_node(&g, "Gemm", "fc", "f,fc.weight", "y", &a);
    ox_value(&g, 11, "x", x2, 4);
    ox_value(&g, 12, "y", y2, 2);
    ox_model(&b, 11, &g);
    unsigned char m0 = 0;
    seed("onnx", "view-dynamic-batch", &m0, 1, b.p, b.n);
    ob_free(&b);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s OUTDIR\n", argv[0]);
        return 2;
    }
    out = argv[1];
    mkdir_or_die(out);
    gzip_seeds();
    tar_seeds();
    cifar_seeds();
    idx_seeds();
    checkpoint_seeds();
    safetensors_seeds();
    onnx_seeds();
    return failed;
}
