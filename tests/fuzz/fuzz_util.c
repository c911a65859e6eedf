/* fuzz_util.c - see fuzz_util.h. */
/* nftw() is XSI. */
#define _XOPEN_SOURCE 700

#include "fuzz_util.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[256];

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void cleanup(void)
{
    if (dir[0])
        nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

const char *fz_dir(void)
{
    if (dir[0])
        return dir;
    struct stat sb;
    const char *base = stat("/dev/shm", &sb) == 0 && S_ISDIR(sb.st_mode) && access("/dev/shm", W_OK) == 0
                           ? "/dev/shm"
                           : getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(dir, sizeof dir, "%s/tl-fuzz-XXXXXX", base);
    if (mkdtemp(dir) == NULL) {
        perror("fuzz: mkdtemp");
        abort();
    }
    atexit(cleanup);
    return dir;
}

const char *fz_path(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, "%s/%s", fz_dir(), name);
    return buf;
}

const char *fz_write(char *buf, size_t cap, const char *name, const uint8_t *data, size_t size)
{
    fz_path(buf, cap, name);
    /* Make the parent directories of a nested name. */
    for (char *p = buf + strlen(fz_dir()) + 1; (p = strchr(p, '/')) != NULL; p++) {
        *p = '\0';
        mkdir(buf, 0700);
        *p = '/';
    }
    FILE *f = fopen(buf, "wb");
    if (f == NULL || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) {
        perror(buf);
        abort();
    }
    return buf;
}

tl_model *fz_small_model(uint64_t seed, int trained)
{
    tl_model *m = NULL;
    if (tl_model_create(&m, 6, 6, 1, seed) != TL_OK)
        return NULL;
    tl_model_set_threads(m, 1);
    tl_conv2d_options conv = TL_CONV2D_OPTIONS_INIT;
    tl_maxpool2d_options pool = TL_MAXPOOL2D_OPTIONS_INIT;
    tl_dense_options dense = TL_DENSE_OPTIONS_INIT;
    conv.filters = 2;
    conv.activation = TL_ACT_RELU;
    dense.units = 3;
    dense.activation = TL_ACT_SOFTMAX;
    int ok = tl_model_add_conv2d(NULL, m, &conv) == TL_OK && tl_model_add_maxpool2d(NULL, m, &pool) == TL_OK &&
             tl_model_add_flatten(NULL, m, NULL) == TL_OK && tl_model_add_dense(NULL, m, &dense) == TL_OK;
    if (ok && trained) {
        tl_optimizer *o = NULL;
        tl_sgd_options sgd = TL_SGD_OPTIONS_INIT;
        sgd.momentum = 0.9f;
        ok = (trained == 2 ? tl_optimizer_create_sgd(&o, &sgd) : tl_optimizer_create_adam(&o, NULL)) == TL_OK &&
             tl_model_compile(m, o, TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY) == TL_OK;
        float x[2 * 36];
        int32_t y[2] = {0, 2};
        for (int i = 0; i < 72; i++)
            x[i] = (float)(i % 7) / 7.0f;
        ok = ok && tl_model_train_step(NULL, m, x, y, NULL, 2) == TL_OK;
    }
    if (!ok) {
        tl_model_free(m);
        return NULL;
    }
    return m;
}

tl_model *fz_graph_model(uint64_t seed, int trained)
{
    tl_model *m = NULL;
    if (tl_model_create(&m, 6, 6, 1, seed) != TL_OK)
        return NULL;
    tl_model_set_threads(m, 1);
    tl_layer *stem = NULL, *conv = NULL, *sum = NULL, *avg = NULL, *max = NULL, *cat = NULL;
    tl_conv2d_options conv_o = TL_CONV2D_OPTIONS_INIT;
    tl_avgpool2d_options avg_o = TL_AVGPOOL2D_OPTIONS_INIT;
    tl_maxpool2d_options max_o = TL_MAXPOOL2D_OPTIONS_INIT;
    tl_dense_options dense = TL_DENSE_OPTIONS_INIT;
    conv_o.filters = 2;
    conv_o.padding = TL_PAD_SAME;
    conv_o.activation = TL_ACT_RELU;
    avg_o.padding = TL_PAD_SAME;
    avg_o.count_include_pad = 1;
    dense.units = 3;
    dense.activation = TL_ACT_SOFTMAX;
    int ok = tl_model_add_conv2d(&stem, m, &conv_o) == TL_OK;
    conv_o.activation = TL_ACT_LINEAR;
    ok = ok && tl_model_add_conv2d(&conv, m, &conv_o) == TL_OK;
    const tl_layer *pair[2] = {conv, stem};
    ok = ok && tl_model_add_add(&sum, m, pair, 2, NULL) == TL_OK;
    ok = ok && tl_model_add_avgpool2d(&avg, m, &avg_o) == TL_OK;
    max_o.input = stem;
    ok = ok && tl_model_add_maxpool2d(&max, m, &max_o) == TL_OK;
    pair[0] = avg;
    pair[1] = max;
    ok = ok && tl_model_add_concatenate(&cat, m, pair, 2, NULL) == TL_OK;
    ok = ok && tl_model_add_global_avgpool2d(NULL, m, cat, NULL) == TL_OK;
    ok = ok && tl_model_add_dense(NULL, m, &dense) == TL_OK;
    if (ok && trained) {
        tl_optimizer *o = NULL;
        ok = tl_optimizer_create_adam(&o, NULL) == TL_OK &&
             tl_model_compile(m, o, TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY) == TL_OK;
        float x[2 * 36];
        int32_t y[2] = {1, 2};
        for (int i = 0; i < 72; i++)
            x[i] = (float)(i % 5) / 5.0f;
        ok = ok && tl_model_train_step(NULL, m, x, y, NULL, 2) == TL_OK;
    }
    if (!ok) {
        tl_model_free(m);
        return NULL;
    }
    return m;
}

float *fz_params(const tl_model *m, size_t *count)
{
    size_t n = tl_model_param_count(m), k = 0;
    float *v = malloc((n ? n : 1) * sizeof *v);
    if (v == NULL)
        abort();
    for (size_t i = 0; i < tl_model_num_layers(m); i++) {
        tl_layer *l = NULL;
        tl_model_layer(&l, m, i);
        for (size_t p = 0; p < tl_layer_num_params(l); p++) {
            tl_param_info info;
            tl_layer_param_info(&info, l, p);
            tl_layer_get_weights(v + k, info.count, l, p);
            k += info.count;
        }
    }
    *count = n;
    return v;
}
