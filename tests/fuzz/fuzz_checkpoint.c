/*
 * fuzz_checkpoint.c - the native checkpoint reader behind tl_model_load(),
 * tl_checkpoint_info_read() and tl_model_load_params().
 *
 * Three CRC-32s and zlib's Adler-32 guard the file, so mutated files would
 * almost never get past the checksums to the section parser. The first
 * input byte therefore chooses how the rest is used:
 *   bits 0-1: 0 tl_model_load (then predict, save and load again),
 *             1 tl_checkpoint_info_read (then every getter),
 *             2 tl_model_load_params into a small model (lenient),
 *             3 the same, strict and by name
 *   bit 2:    0 the rest is the whole file;
 *             1 the rest is the decompressed payload, which the harness
 *               compresses and frames with a valid header and CRCs
 *   bits 3-4: (framed) the minor version, 0..3 (1.0 and 1.1 lay out LAYR
 *             differently; 2 and 3 are newer than this reader)
 * Checked: a failure hands back nothing and leaves the target model's
 * parameters as they were; a loaded model works.
 */
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* header + zlib(payload), as docs/format-checkpoint.md lays it out. */
static uint8_t *frame(const uint8_t *payload, size_t n, unsigned minor, size_t *out_size)
{
    uLongf bound = compressBound((uLong)n);
    uint8_t *f = malloc(48 + bound);
    if (f == NULL || compress2(f + 48, &bound, payload, (uLong)n, 1) != Z_OK)
        abort();
    memset(f, 0, 48);
    memcpy(f, "\x89TLM\r\n\x1a\n", 8);
    f[8] = 1;
    f[10] = (uint8_t)minor;
    f[12] = 1;
    put64(f + 16, n);
    put64(f + 24, bound);
    put32(f + 32, (uint32_t)crc32(0L, payload, (uInt)n));
    put32(f + 36, (uint32_t)crc32(0L, f + 48, (uInt)bound));
    put32(f + 44, (uint32_t)crc32(0L, f, 44));
    *out_size = 48 + bound;
    return f;
}

static int write_nothing(const char *text, size_t len, void *payload)
{
    (void)text;
    (void)len;
    (void)payload;
    return 0;
}

static void check_failure(tl_status st, const char *fn)
{
    if (st == TL_OK || strncmp(tl_last_error(), fn, strlen(fn)) != 0)
        abort();
}

static void use_model(tl_model *m)
{
    /* The file's thread request may be up to 1024: one is enough here. */
    if (tl_model_set_threads(m, 1) != TL_OK)
        abort();
    tl_shape in, out;
    if (tl_model_input_shape(&in, m) != TL_OK || tl_model_output_shape(&out, m) != TL_OK)
        abort();
    size_t n_in = tl_shape_count(&in), n_out = tl_shape_count(&out);
    /* Predict only where it is cheap; huge but valid models are legal. */
    if (n_in <= 4096 && n_out <= 4096 && tl_model_param_count(m) <= 100000 && tl_model_num_layers(m) > 0) {
        float *x = calloc(n_in, sizeof *x), *y = malloc(n_out * sizeof *y);
        if (x == NULL || y == NULL)
            abort();
        tl_status st = tl_model_predict(y, n_out, m, x, 1, 1);
        if (st != TL_OK && st != TL_ENOMEM)
            abort();
        free(x);
        free(y);
    }
    char buf[512];
    size_t needed = 0;
    tl_model_summary(buf, sizeof buf, &needed, m);
    /* What was loaded saves and loads again. */
    char path[512];
    fz_path(path, sizeof path, "again.tlm");
    if (tl_model_param_count(m) <= 1000000) {
        tl_status st = tl_model_save(m, path, NULL);
        if (st != TL_OK)
            abort();
        tl_model *again = NULL;
        if (tl_model_load(&again, path) != TL_OK || tl_model_num_layers(again) != tl_model_num_layers(m))
            abort();
        tl_model_free(again);
    }
}

static void use_info(const tl_checkpoint_info *info)
{
    uint32_t major, minor;
    tl_shape s;
    tl_param_info pi;
    tl_checkpoint_info_format_version(&major, &minor, info);
    tl_checkpoint_info_input_shape(&s, info);
    (void)tl_checkpoint_info_seed(info);
    (void)tl_checkpoint_info_param_count(info);
    (void)tl_checkpoint_info_optimizer(info);
    (void)tl_checkpoint_info_optimizer_steps(info);
    (void)tl_checkpoint_info_loss(info);
    size_t n = tl_checkpoint_info_num_layers(info);
    for (size_t i = 0; i <= n; i++) { /* one past the end on purpose */
        (void)tl_checkpoint_info_layer_kind(info, i);
        if (strlen(tl_checkpoint_info_layer_name(info, i)) > TL_MAX_NAME)
            abort();
        tl_checkpoint_info_layer_output_shape(&s, info, i);
        (void)tl_checkpoint_info_layer_trainable(info, i);
        (void)tl_checkpoint_info_layer_lr_scale(info, i);
        size_t np = tl_checkpoint_info_layer_num_params(info, i);
        for (size_t p = 0; p <= np; p++)
            tl_checkpoint_info_layer_param(&pi, info, i, p);
        tl_conv2d_options c = TL_CONV2D_OPTIONS_INIT;
        tl_maxpool2d_options mp = TL_MAXPOOL2D_OPTIONS_INIT;
        tl_dense_options d = TL_DENSE_OPTIONS_INIT;
        tl_checkpoint_info_layer_conv2d(&c, info, i);
        tl_checkpoint_info_layer_maxpool2d(&mp, info, i);
        tl_checkpoint_info_layer_dense(&d, info, i);
        char settings[256];
        size_t needed = 0;
        if (tl_checkpoint_info_layer_settings(NULL, 0, &needed, info, i) == TL_OK &&
            tl_checkpoint_info_layer_settings(settings, sizeof settings, NULL, info, i) == TL_OK &&
            strlen(settings) != needed)
            abort();
    }
    if (tl_checkpoint_info_summary_write(info, write_nothing, NULL) != TL_OK)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static tl_model *target;
    if (target == NULL && (target = fz_small_model(7, 1)) == NULL)
        abort();
    if (size < 1)
        return 0;
    unsigned mode = data[0];
    data++;
    size--;
    char path[512];
    if (mode & 4) {
        size_t n;
        uint8_t *f = frame(data, size, (mode >> 3) & 3, &n);
        fz_write(path, sizeof path, "in.tlm", f, n);
        free(f);
    } else {
        fz_write(path, sizeof path, "in.tlm", data, size);
    }
    tl_status st;
    switch (mode & 3) {
    case 0: {
        tl_model *m = NULL;
        st = tl_model_load(&m, path);
        if (st != TL_OK) {
            check_failure(st, "tl_model_load");
            if (m != NULL)
                abort();
            break;
        }
        use_model(m);
        tl_model_free(m);
        break;
    }
    case 1: {
        tl_checkpoint_info *info = NULL;
        st = tl_checkpoint_info_read(&info, path);
        if (st != TL_OK) {
            check_failure(st, "tl_checkpoint_info_read");
            if (info != NULL)
                abort();
            break;
        }
        use_info(info);
        tl_checkpoint_info_free(info);
        break;
    }
    default: {
        size_t before_n, after_n;
        float *before = fz_params(target, &before_n);
        tl_transfer_options o = TL_TRANSFER_OPTIONS_INIT;
        if ((mode & 3) == 2)
            o.policy = TL_TRANSFER_LENIENT;
        else
            o.match = TL_MATCH_NAME;
        tl_transfer_report *r = NULL;
        st = tl_model_load_params(&r, target, path, &o);
        if (st != TL_OK) {
            check_failure(st, "tl_model_load_params");
            float *after = fz_params(target, &after_n);
            if (after_n != before_n || memcmp(before, after, before_n * sizeof *before) != 0)
                abort(); /* a failed load changed the model */
            free(after);
        }
        if (r != NULL && tl_transfer_report_write(r, write_nothing, NULL) != TL_OK)
            abort();
        tl_transfer_report_free(r);
        free(before);
        break;
    }
    }
    return 0;
}
