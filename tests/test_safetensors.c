/* test_safetensors.c - safetensors export and import: round trips in both
 * layouts, a hand-written PyTorch-layout file whose outputs are worked out
 * by hand, half-precision conversion with known bit patterns, names and the
 * rename map, the report, every kind of malformed file, the strict JSON
 * parser, atomic writes and allocation failures. An independent reader
 * written here (not libtl's) checks the exported bytes, as Python's
 * safetensors would see them. */
#include <stdio.h>
#include <sys/stat.h>

#include "helpers.h"
#include "io/json.h"         /* internals: the JSON parser */
#include "io/safetensors.h"  /* internals: half-precision conversion */
#include "io_helpers.h"
#include "model.h"           /* internals: the allocation hook */

static char *dir;

static void setup(void)
{
    dir = th_dir_create();
}

static void teardown(void)
{
    th_dir_remove(dir);
    dir = NULL;
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* A safetensors file from a header text and data bytes, as written by hand. */
static void write_st(const char *path, const char *header, const void *data, size_t data_len)
{
    size_t n = strlen(header);
    uint8_t *f = malloc(8 + n + data_len + 1);
    put_u64(f, n);
    memcpy(f + 8, header, n);
    if (data_len)
        memcpy(f + 8 + n, data, data_len);
    th_file_write(path, f, 8 + n + data_len);
    free(f);
}

/* Little-endian float bytes (the test hosts are little-endian; this keeps
 * the files right on any host). */
static void floats_le(uint8_t *out, const float *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        for (int k = 0; k < 4; k++)
            out[4 * i + k] = (uint8_t)(u >> (8 * k));
    }
}

/* ---- an independent reader ------------------------------------------------------------ */

/* What a minimal reader (the "20-line reader" of the issue) gets out of a
 * file: one tensor's dtype, shape and data, found by name with plain string
 * search in the header - nothing of libtl's parser. */
typedef struct st_view {
    uint8_t *file;
    size_t len;
    uint64_t n;
    const char *header; /* NUL-terminated copy */
} st_view;

static st_view view_open(const char *path)
{
    st_view v;
    v.file = th_file_read(path, &v.len);
    ck_assert_ptr_nonnull(v.file);
    ck_assert_uint_ge(v.len, 8);
    v.n = get_u64(v.file);
    ck_assert_uint_le(8 + v.n, v.len);
    char *h = malloc(v.n + 1);
    memcpy(h, v.file + 8, v.n);
    h[v.n] = '\0';
    v.header = h;
    return v;
}

static void view_close(st_view *v)
{
    free(v->file);
    free((char *)v->header);
}

/* Shape and data of tensor `name`; *rank dims into dims. */
static const float *view_tensor(const st_view *v, const char *name, uint64_t *dims, int *rank, size_t *count)
{
    char key[256];
    snprintf(key, sizeof key, "\"%s\":{\"dtype\":\"F32\",\"shape\":[", name);
    const char *p = strstr(v->header, key);
    ck_assert_msg(p != NULL, "tensor %s not in header %s", name, v->header);
    p += strlen(key);
    *rank = 0;
    *count = 1;
    while (*p != ']') {
        char *end;
        dims[*rank] = strtoull(p, &end, 10);
        *count *= dims[(*rank)++];
        p = *end == ',' ? end + 1 : end;
    }
    unsigned long long b, e;
    ck_assert_int_eq(sscanf(p, "],\"data_offsets\":[%llu,%llu]}", &b, &e), 2);
    ck_assert_uint_eq(e - b, *count * 4);
    ck_assert_uint_le(8 + v->n + e, v->len);
    ck_assert_uint_eq(b % 4, 0);
    return (const float *)(v->file + 8 + v->n + b);
}

/* ---- round trips --------------------------------------------------------------------------- */

static void roundtrip(tl_tensor_layout layout)
{
    tl_model *a = th_seed_cnn(32, 32, 3, 10, 1), *b = th_seed_cnn(32, 32, 3, 10, 2);
    char *path = th_join(dir, "m.safetensors");
    ck_assert_tl_ok(tl_model_save_safetensors(a, path, layout, NULL));
    ck_assert(!th_same_params(a, b));
    tl_transfer_report *r = NULL;
    ck_assert_tl_ok(tl_model_load_safetensors(&r, b, path, layout, NULL));
    ck_assert(th_same_params(a, b));
    ck_assert_uint_eq(tl_transfer_report_count(r), 6);
    ck_assert_uint_eq(tl_transfer_report_count_outcome(r, TL_TRANSFER_COPIED), 6);
    ck_assert_uint_eq(tl_transfer_report_params_copied(r), 42442);
    const char *src, *dst, *why;
    size_t si, di, np;
    ck_assert_tl_ok(tl_transfer_report_entry(NULL, &src, &si, &dst, &di, &np, &why, r, 4));
    ck_assert_str_eq(src, layout == TL_LAYOUT_KERAS ? "dense.kernel" : "dense.weight");
    ck_assert_uint_eq(si, 4);
    ck_assert_str_eq(dst, "dense");
    ck_assert_uint_eq(di, 5);
    ck_assert_uint_eq(np, 23040);
    ck_assert_str_eq(why, layout == TL_LAYOUT_KERAS ? "F32 (2304, 10) -> kernel (2304, 10)"
                                                    : "F32 (10, 2304) -> kernel (2304, 10)");
    tl_transfer_report_free(r);

    /* What an independent reader sees. */
    st_view v = view_open(path);
    const char *start = "{\"__metadata__\":{\"libtl.architecture\":\"{\\\"format\\\":\\\"libtl\\\"";
    ck_assert_msg(strncmp(v.header, start, strlen(start)) == 0, "header starts %.80s", v.header);
    ck_assert_uint_eq((8 + v.n) % 8, 0); /* libtl pads the header: the data are 8-byte aligned */
    ck_assert_ptr_nonnull(strstr(v.header, layout == TL_LAYOUT_KERAS ? "\"libtl.layout\":\"keras\""
                                                                      : "\"libtl.layout\":\"pytorch\""));
    uint64_t dims[8];
    int rank;
    size_t count;
    tl_layer *conv, *dense;
    tl_model_layer(&conv, a, 0);
    tl_model_layer(&dense, a, 5);
    float *k = malloc(864 * sizeof *k), *w = malloc(23040 * sizeof *w);
    tl_layer_get_weights(k, 864, conv, 0);
    tl_layer_get_weights(w, 23040, dense, 0);
    const float *fk = view_tensor(&v, layout == TL_LAYOUT_KERAS ? "conv2d.kernel" : "conv2d.weight", dims, &rank,
                                  &count);
    ck_assert_int_eq(rank, 4);
    ck_assert_uint_eq(count, 864);
    const float *fw = view_tensor(&v, layout == TL_LAYOUT_KERAS ? "dense.kernel" : "dense.weight", dims, &rank,
                                  &count);
    ck_assert_int_eq(rank, 2);
    if (layout == TL_LAYOUT_KERAS) {
        ck_assert_uint_eq(dims[0], 2304);
        ck_assert_int_eq(memcmp(fk, k, 864 * 4), 0);
        ck_assert_int_eq(memcmp(fw, w, 23040 * 4), 0);
    } else {
        /* PyTorch: conv (out, in, kh, kw); Linear (out, in) with inputs in
         * (c, h, w) order after the flatten of (6, 6, 64). */
        ck_assert_uint_eq(dims[0], 10);
        ck_assert_uint_eq(dims[1], 2304);
        for (size_t kh = 0; kh < 3; kh++)
            for (size_t kw = 0; kw < 3; kw++)
                for (size_t i = 0; i < 3; i++)
                    for (size_t o = 0; o < 32; o++)
                        ck_assert(fk[((o * 3 + i) * 3 + kh) * 3 + kw] == k[((kh * 3 + kw) * 3 + i) * 32 + o]);
        for (size_t h = 0; h < 6; h++)
            for (size_t x = 0; x < 6; x++)
                for (size_t c = 0; c < 64; c++)
                    for (size_t o = 0; o < 10; o++)
                        ck_assert(fw[o * 2304 + c * 36 + h * 6 + x] == w[((h * 6 + x) * 64 + c) * 10 + o]);
    }
    free(k);
    free(w);
    view_close(&v);
    tl_model_free(a);
    tl_model_free(b);
    free(path);
}

START_TEST(roundtrip_keras_layout)
{
    roundtrip(TL_LAYOUT_KERAS);
}
END_TEST

START_TEST(roundtrip_pytorch_layout)
{
    roundtrip(TL_LAYOUT_PYTORCH);
}
END_TEST

START_TEST(architecture_metadata_is_json)
{
    tl_model *m = th_seed_cnn(32, 32, 3, 10, 1);
    char *path = th_join(dir, "m.safetensors");
    ck_assert_tl_ok(tl_model_save_safetensors(m, path, TL_LAYOUT_KERAS, NULL));
    /* libtl's own parser reads the header, then the metadata string. */
    st_view v = view_open(path);
    tli_json j, arch;
    tli_json_limits lim = {16, 1 << 20, 1 << 20};
    ck_assert_tl_ok(tli_json_parse(&j, v.header, v.n, &lim, 8));
    const tli_json_node *meta = tli_json_member(&j, &j.nodes[0], "__metadata__");
    ck_assert_ptr_nonnull(meta);
    const tli_json_node *a = tli_json_member(&j, meta, "libtl.architecture");
    ck_assert_ptr_nonnull(a);
    ck_assert_tl_ok(tli_json_parse(&arch, a->str, a->len, &lim, 0));
    const tli_json_node *layers = tli_json_member(&arch, &arch.nodes[0], "layers");
    ck_assert_ptr_nonnull(layers);
    ck_assert_uint_eq(layers->count, 6);
    ck_assert_ptr_nonnull(strstr(a->str, "{\"name\":\"conv2d\",\"kind\":\"conv2d\",\"inputs\":[null],"
                                        "\"filters\":32,\"kernel_h\":3,\"kernel_w\":3,\"stride_h\":1,\"stride_w\":1,"
                                        "\"padding\":\"valid\",\"groups\":1,\"dilation_h\":1,\"dilation_w\":1,"
                                        "\"pad_top\":0,\"pad_bottom\":0,\"pad_left\":0,\"pad_right\":0,"
                                        "\"activation\":\"relu\","
                                        "\"use_bias\":true,\"trainable\":true,\"output_shape\":[30,30,32]}"));
    ck_assert_ptr_nonnull(strstr(a->str, "{\"name\":\"max_pooling2d\",\"kind\":\"maxpool2d\",\"inputs\":[\"conv2d\"],"
                                        "\"pool_h\":2,\"pool_w\":2,\"stride_h\":2,\"stride_w\":2,\"padding\":\"valid\","
                                        "\"pad_top\":0,\"pad_bottom\":0,\"pad_left\":0,\"pad_right\":0,"
                                        "\"output_shape\":[15,15,32]}"));
    ck_assert_ptr_nonnull(strstr(a->str, "\"input\":[32,32,3]"));
    tli_json_free(&arch);
    tli_json_free(&j);
    view_close(&v);
    tl_model_free(m);
    free(path);
}
END_TEST

/* ---- a hand-written PyTorch file -------------------------------------------------------------- */

/* input (3, 3, 1) -> conv "conv" 2 filters 2x2 valid, linear -> (2, 2, 2)
 * -> flatten (8) -> dense "fc" 2 units, linear. */
static tl_model *tiny_model(void)
{
    tl_model *m;
    ck_assert_tl_ok(tl_model_create(&m, 3, 3, 1, 1));
    tl_model_set_threads(m, 1);
    tl_conv2d_options c = TL_CONV2D_OPTIONS_INIT;
    c.filters = 2;
    c.kernel_h = c.kernel_w = 2;
    c.name = "conv";
    ck_assert_tl_ok(tl_model_add_conv2d(NULL, m, &c));
    ck_assert_tl_ok(tl_model_add_flatten(NULL, m, NULL));
    tl_dense_options d = TL_DENSE_OPTIONS_INIT;
    d.units = 2;
    d.name = "fc";
    ck_assert_tl_ok(tl_model_add_dense(NULL, m, &d));
    return m;
}

static const char *const torch_names[] = {
    "features.0.weight", "conv.kernel", "features.0.bias", "conv.bias",
    "classifier.weight", "fc.kernel",   "classifier.bias", "fc.bias",
};

/* The PyTorch module this file came from would be
 *   nn.Sequential(nn.Conv2d(1, 2, 2), nn.Flatten(), nn.Linear(8, 2))
 * with the values below. */
static void write_torch_file(const char *path)
{
    const float conv_w[8] = {1, 0, 0, 0,  /* filter 0: [[1, 0], [0, 0]]: the window's top-left */
                             0, 0, 0, 1}; /* filter 1: [[0, 0], [0, 1]]: its bottom-right */
    const float conv_b[2] = {0.5f, -1.0f};
    const float fc_w[16] = {1, 2, 3, 4, 5, 6, 7, 8,          /* unit 0 */
                            1, 1, 1, 1, -1, -1, -1, -1};     /* unit 1: channel 0 minus channel 1 */
    const float fc_b[2] = {0.25f, 0.0f};
    uint8_t data[(8 + 2 + 16 + 2) * 4];
    floats_le(data, conv_w, 8);
    floats_le(data + 32, conv_b, 2);
    floats_le(data + 40, fc_w, 16);
    floats_le(data + 104, fc_b, 2);
    write_st(path,
             "{\"features.0.weight\":{\"dtype\":\"F32\",\"shape\":[2,1,2,2],\"data_offsets\":[0,32]},"
             "\"features.0.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[32,40]},"
             "\"classifier.weight\":{\"dtype\":\"F32\",\"shape\":[2,8],\"data_offsets\":[40,104]},"
             "\"classifier.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[104,112]},"
             "\"__metadata__\":{\"format\":\"pt\"}}",
             data, sizeof data);
}

START_TEST(hand_written_pytorch_file_gives_hand_checked_outputs)
{
    char *path = th_join(dir, "torch.safetensors");
    write_torch_file(path);
    tl_model *m = tiny_model();
    tl_safetensors_options o = TL_SAFETENSORS_OPTIONS_INIT;
    o.rename = torch_names;
    o.rename_count = 4;
    tl_transfer_report *r = NULL;
    ck_assert_tl_ok(tl_model_load_safetensors(&r, m, path, TL_LAYOUT_PYTORCH, &o));
    ck_assert_uint_eq(tl_transfer_report_count_outcome(r, TL_TRANSFER_COPIED), 4);
    tl_transfer_report_free(r);

    /* The conv kernel in libtl's (kh, kw, in, out) order. */
    tl_layer *conv;
    tl_model_layer(&conv, m, 0);
    float k[8];
    ck_assert_tl_ok(tl_layer_get_weights(k, 8, conv, 0));
    const float want_k[8] = {1, 0, 0, 0, 0, 0, 0, 1};
    ck_assert_int_eq(memcmp(k, want_k, sizeof k), 0);

    /* Input 1..9 row by row. Channel 0 = top-left of each 2x2 window + 0.5:
     * [[1.5, 2.5], [4.5, 5.5]]; channel 1 = bottom-right - 1: [[4, 5], [7, 8]].
     * PyTorch flattens (c, h, w): [1.5, 2.5, 4.5, 5.5, 4, 5, 7, 8].
     * unit 0: 1.5*1 + 2.5*2 + 4.5*3 + 5.5*4 + 4*5 + 5*6 + 7*7 + 8*8 + 0.25 = 205.25
     * unit 1: (1.5 + 2.5 + 4.5 + 5.5) - (4 + 5 + 7 + 8) = 14 - 24 = -10 */
    const float x[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    float y[2];
    ck_assert_tl_ok(tl_model_predict(y, 2, m, x, 1, 1));
    ck_assert(y[0] == 205.25f);
    ck_assert(y[1] == -10.0f);

    /* Without the flatten reordering the same file means something else:
     * libtl's (h, w, c) order [1.5, 4, 2.5, 5, 4.5, 7, 5.5, 8] gives
     * 1.5 + 8 + 7.5 + 20 + 22.5 + 42 + 38.5 + 64 + 0.25 = 204.25 and
     * 1.5 + 4 + 2.5 + 5 - 4.5 - 7 - 5.5 - 8 = -12. */
    o.permute_flatten = 0;
    ck_assert_tl_ok(tl_model_load_safetensors(NULL, m, path, TL_LAYOUT_PYTORCH, &o));
    ck_assert_tl_ok(tl_model_predict(y, 2, m, x, 1, 1));
    ck_assert(y[0] == 204.25f);
    ck_assert(y[1] == -12.0f);

    /* The same network written in Keras layout by hand: conv kernel
     * (kh, kw, in, out), dense kernel (in, out) with rows in (h, w, c) order. */
    const float kk[8] = {1, 0, 0, 0, 0, 0, 0, 1};
    const float kb[2] = {0.5f, -1.0f};
    const float dk[16] = {1, 1, 5, -1, 2, 1, 6, -1, 3, 1, 7, -1, 4, 1, 8, -1};
    const float db[2] = {0.25f, 0.0f};
    uint8_t data[112];
    floats_le(data, kk, 8);
    floats_le(data + 32, kb, 2);
    floats_le(data + 40, dk, 16);
    floats_le(data + 104, db, 2);
    write_st(path,
             "{\"conv.kernel\":{\"dtype\":\"F32\",\"shape\":[2,2,1,2],\"data_offsets\":[0,32]},"
             "\"conv.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[32,40]},"
             "\"fc.kernel\":{\"dtype\":\"F32\",\"shape\":[8,2],\"data_offsets\":[40,104]},"
             "\"fc.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[104,112]}}",
             data, sizeof data);
    tl_model *m2 = tiny_model();
    ck_assert_tl_ok(tl_model_load_safetensors(NULL, m2, path, TL_LAYOUT_KERAS, NULL));
    ck_assert_tl_ok(tl_model_predict(y, 2, m2, x, 1, 1));
    ck_assert(y[0] == 205.25f);
    ck_assert(y[1] == -10.0f);

    /* And libtl's PyTorch export of it gives back the hand-written bytes. */
    char *out = th_join(dir, "again.safetensors");
    o.permute_flatten = 1;
    ck_assert_tl_ok(tl_model_save_safetensors(m2, out, TL_LAYOUT_PYTORCH, &o));
    write_torch_file(path);
    st_view a = view_open(out), b = view_open(path);
    uint64_t dims[8];
    int rank;
    size_t na, nb;
    const char *names[] = {"features.0.weight", "features.0.bias", "classifier.weight", "classifier.bias"};
    for (int i = 0; i < 4; i++) {
        const float *fa = view_tensor(&a, names[i], dims, &rank, &na);
        const float *fb = view_tensor(&b, names[i], dims, &rank, &nb);
        ck_assert_uint_eq(na, nb);
        ck_assert_int_eq(memcmp(fa, fb, na * 4), 0);
    }
    view_close(&a);
    view_close(&b);
    free(out);
    tl_model_free(m2);
    tl_model_free(m);
    free(path);
}
END_TEST

/* ---- half precision --------------------------------------------------------------------------- */

static uint32_t bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

START_TEST(half_precision_known_values)
{
    /* binary16 */
    ck_assert(tli_f16_to_f32(0x3c00) == 1.0f);
    ck_assert(tli_f16_to_f32(0xc000) == -2.0f);
    ck_assert(tli_f16_to_f32(0x3555) == 0.333251953125f);
    ck_assert(tli_f16_to_f32(0x7bff) == 65504.0f);           /* largest finite */
    ck_assert(tli_f16_to_f32(0x0400) == 6.103515625e-05f);   /* smallest normal, 2^-14 */
    ck_assert(tli_f16_to_f32(0x0001) == 5.9604644775390625e-08f); /* smallest subnormal, 2^-24 */
    ck_assert(tli_f16_to_f32(0x03ff) == 6.097555160522461e-05f);  /* largest subnormal, 1023 * 2^-24 */
    ck_assert_uint_eq(bits(tli_f16_to_f32(0x8000)), 0x80000000u); /* -0 */
    ck_assert_uint_eq(bits(tli_f16_to_f32(0x7c00)), 0x7f800000u); /* +inf */
    ck_assert_uint_eq(bits(tli_f16_to_f32(0xfc00)), 0xff800000u); /* -inf */
    ck_assert(isnan(tli_f16_to_f32(0x7e00)));
    /* bfloat16: the top half of a binary32 */
    ck_assert(tli_bf16_to_f32(0x3f80) == 1.0f);
    ck_assert(tli_bf16_to_f32(0xc040) == -3.0f);
    ck_assert(tli_bf16_to_f32(0x4049) == 3.140625f);
    ck_assert_uint_eq(bits(tli_bf16_to_f32(0x0001)), 0x00010000u);
    ck_assert_uint_eq(bits(tli_bf16_to_f32(0xff80)), 0xff800000u);

    /* Through a file: a dense 2 -> 2 layer, kernel in F16, bias in BF16. */
    tl_model *m;
    ck_assert_tl_ok(tl_model_create(&m, 1, 1, 2, 1));
    ck_assert_tl_ok(tl_model_add_flatten(NULL, m, NULL));
    tl_dense_options d = TL_DENSE_OPTIONS_INIT;
    d.units = 2;
    ck_assert_tl_ok(tl_model_add_dense(NULL, m, &d));
    /* PyTorch (out, in) = [[1, -2], [1/3, 65504]] -> libtl (in, out) = [[1, 1/3], [-2, 65504]] */
    const uint8_t data[] = {0x00, 0x3c, 0x00, 0xc0, 0x55, 0x35, 0xff, 0x7b, /* F16 */
                            0x49, 0x40, 0x40, 0xc0};                         /* BF16 3.140625, -3 */
    char *path = th_join(dir, "half.safetensors");
    write_st(path,
             "{\"dense.weight\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[0,8]},"
             "\"dense.bias\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[8,12]}}",
             data, sizeof data);
    ck_assert_tl_ok(tl_model_load_safetensors(NULL, m, path, TL_LAYOUT_PYTORCH, NULL));
    tl_layer *l;
    tl_model_layer(&l, m, 1);
    float k[4], b[2];
    tl_layer_get_weights(k, 4, l, 0);
    tl_layer_get_weights(b, 2, l, 1);
    ck_assert(k[0] == 1.0f && k[1] == 0.333251953125f && k[2] == -2.0f && k[3] == 65504.0f);
    ck_assert(b[0] == 3.140625f && b[1] == -3.0f);
    tl_model_free(m);
    free(path);
}
END_TEST

/* ---- names, the rename map and the report ------------------------------------------------------------ */

START_TEST(rename_map_on_export_and_import)
{
    tl_model *a = tiny_model(), *b = tiny_model();
    ck_assert_tl_ok(tl_model_init_params(b, 77));
    char *path = th_join(dir, "named.safetensors");
    tl_safetensors_options o;
    ck_assert_tl_ok(tl_safetensors_options_init(&o, TL_SAFETENSORS_OPTIONS_VERSION));
    ck_assert_int_eq(o.permute_flatten, 1);
    ck_assert_int_eq(o.policy, TL_TRANSFER_STRICT);
    o.rename = torch_names;
    o.rename_count = 4;
    ck_assert_tl_ok(tl_model_save_safetensors(a, path, TL_LAYOUT_PYTORCH, &o));
    st_view v = view_open(path);
    ck_assert_ptr_nonnull(strstr(v.header, "\"features.0.weight\":{\"dtype\":\"F32\",\"shape\":[2,1,2,2]"));
    ck_assert_ptr_nonnull(strstr(v.header, "\"classifier.bias\":"));
    ck_assert_ptr_null(strstr(v.header, "\"fc.bias\":"));
    view_close(&v);
    /* Without the map the names do not match: strict refuses, nothing changes. */
    size_t n0, n1;
    float *before = th_all_params(b, &n0);
    tl_transfer_report *r = NULL;
    ck_assert_tl_err(tl_model_load_safetensors(&r, b, path, TL_LAYOUT_PYTORCH, NULL), TL_ENOTFOUND,
                     "tensor 'features.0.weight' (byte ");
    ck_assert_ptr_nonnull(strstr(tl_last_error(), "and more: see the report"));
    ck_assert_ptr_nonnull(strstr(tl_last_error(), "the model was not changed"));
    float *after = th_all_params(b, &n1);
    ck_assert_int_eq(memcmp(before, after, n0 * 4), 0);
    free(after);
    ck_assert_uint_eq(tl_transfer_report_count_outcome(r, TL_TRANSFER_NO_DESTINATION), 4); /* unexpected */
    ck_assert_uint_eq(tl_transfer_report_count_outcome(r, TL_TRANSFER_NOT_IN_SOURCE), 4);  /* missing */
    const char *why, *dst;
    ck_assert_tl_ok(tl_transfer_report_entry(NULL, NULL, NULL, &dst, NULL, NULL, &why, r, 4));
    ck_assert_str_eq(dst, "conv");
    ck_assert_str_eq(why, "missing: no tensor 'conv.weight' for kernel; it keeps its values");
    tl_transfer_report_free(r);
    /* With it, everything comes back. */
    ck_assert_tl_ok(tl_model_load_safetensors(NULL, b, path, TL_LAYOUT_PYTORCH, &o));
    ck_assert(th_same_params(a, b));
    free(before);
    tl_model_free(a);
    tl_model_free(b);
    free(path);
}
END_TEST

START_TEST(lenient_load_reports_unexpected_missing_and_mismatched)
{
    /* A PyTorch-style file with an extra tensor (an int64 counter, as
     * BatchNorm keeps), a bias of the wrong size, and no fc.bias. */
    float w[8] = {1, 2, 3, 4, 5, 6, 7, 8}, cb[3] = {9, 9, 9}, fw[16] = {0};
    uint8_t data[8 + 32 + 12 + 64];
    memset(data, 0, 8);
    floats_le(data + 8, w, 8);
    floats_le(data + 40, cb, 3);
    floats_le(data + 52, fw, 16);
    char *path = th_join(dir, "mixed.safetensors");
    write_st(path,
             "{\"num_batches_tracked\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[0,8]},"
             "\"conv.weight\":{\"dtype\":\"F32\",\"shape\":[2,1,2,2],\"data_offsets\":[8,40]},"
             "\"conv.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[40,52]},"
             "\"fc.weight\":{\"dtype\":\"F32\",\"shape\":[2,8],\"data_offsets\":[52,116]}}",
             data, sizeof data);
    tl_model *m = tiny_model();
    tl_layer *fc;
    tl_model_layer(&fc, m, 2);
    float fb_before[2];
    tl_layer_get_weights(fb_before, 2, fc, 1);

    tl_transfer_report *r = NULL;
    ck_assert_tl_err(tl_model_load_safetensors(&r, m, path, TL_LAYOUT_PYTORCH, NULL), TL_ENOTFOUND,
                     "tensor 'num_batches_tracked' (byte 9): unexpected");
    tl_transfer_report_free(r);
    tl_safetensors_options o = TL_SAFETENSORS_OPTIONS_INIT;
    o.policy = TL_TRANSFER_LENIENT;
    ck_assert_tl_ok(tl_model_load_safetensors(&r, m, path, TL_LAYOUT_PYTORCH, &o));
    ck_assert_uint_eq(tl_transfer_report_count(r), 5);
    tl_transfer_outcome oc;
    const char *src, *why;
    size_t si, np;
    ck_assert_tl_ok(tl_transfer_report_entry(&oc, &src, &si, NULL, NULL, NULL, NULL, r, 0));
    ck_assert_int_eq(oc, TL_TRANSFER_NO_DESTINATION);
    ck_assert_str_eq(src, "num_batches_tracked");
    ck_assert_tl_ok(tl_transfer_report_entry(&oc, &src, &si, NULL, NULL, &np, NULL, r, 1));
    ck_assert_int_eq(oc, TL_TRANSFER_COPIED);
    ck_assert_uint_eq(np, 8);
    ck_assert_tl_ok(tl_transfer_report_entry(&oc, NULL, NULL, NULL, NULL, NULL, &why, r, 2));
    ck_assert_int_eq(oc, TL_TRANSFER_SHAPE_DIFFERS);
    ck_assert_str_eq(why, "F32 (3,) fits neither: the PyTorch layout needs (2,) for conv2d 'conv' bias");
    ck_assert_tl_ok(tl_transfer_report_entry(&oc, NULL, NULL, NULL, NULL, NULL, &why, r, 4));
    ck_assert_int_eq(oc, TL_TRANSFER_NOT_IN_SOURCE);
    ck_assert_str_eq(why, "missing: no tensor 'fc.bias' for bias; it keeps its values");
    ck_assert_uint_eq(tl_transfer_report_params_copied(r), 8 + 16);
    tl_transfer_report_free(r);
    float fb_after[2];
    tl_layer_get_weights(fb_after, 2, fc, 1);
    ck_assert_int_eq(memcmp(fb_before, fb_after, sizeof fb_after), 0);
    tl_model_free(m);
    free(path);
}
END_TEST

START_TEST(layout_mismatch_names_the_tensor)
{
    tl_model *a = th_seed_cnn(32, 32, 3, 10, 1), *b = th_seed_cnn(32, 32, 3, 10, 2);
    char *path = th_join(dir, "k.safetensors");
    ck_assert_tl_ok(tl_model_save_safetensors(a, path, TL_LAYOUT_KERAS, NULL));
    ck_assert_tl_err(tl_model_load_safetensors(NULL, b, path, TL_LAYOUT_PYTORCH, NULL), TL_ESHAPE,
                     "tensor 'conv2d.kernel' (byte ");
    ck_assert_ptr_nonnull(strstr(tl_last_error(), "F32 (3, 3, 3, 32) fits neither: the PyTorch layout needs "
                                                  "(32, 3, 3, 3) for conv2d 'conv2d' kernel (the tensor is in the "
                                                  "other layout)"));
    ck_assert(!th_same_params(a, b));
    /* A dtype libtl does not load, on a tensor that names a parameter. */
    uint8_t data[8] = {0};
    write_st(path, "{\"fc.bias\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[0,8]}}", data, 8);
    tl_model *t = tiny_model();
    tl_safetensors_options o = TL_SAFETENSORS_OPTIONS_INIT;
    o.policy = TL_TRANSFER_LENIENT;
    tl_transfer_report *r;
    ck_assert_tl_ok(tl_model_load_safetensors(&r, t, path, TL_LAYOUT_KERAS, &o));
    const char *why;
    tl_transfer_report_entry(NULL, NULL, NULL, NULL, NULL, NULL, &why, r, 0);
    ck_assert_str_eq(why, "dtype I32 cannot be loaded (F32, F16 or BF16)");
    tl_transfer_report_free(r);
    ck_assert_tl_err(tl_model_load_safetensors(NULL, t, path, TL_LAYOUT_KERAS, NULL), TL_ESHAPE, "dtype I32");
    tl_model_free(t);
    tl_model_free(a);
    tl_model_free(b);
    free(path);
}
END_TEST

START_TEST(argument_errors)
{
    tl_model *m = tiny_model();
    char *path = th_join(dir, "a.safetensors");
    ck_assert_tl_err(tl_model_save_safetensors(m, path, (tl_tensor_layout)0, NULL), TL_EINVAL,
                     "unknown layout 0 (TL_LAYOUT_KERAS or TL_LAYOUT_PYTORCH; there is no default)");
    ck_assert_tl_ok(tl_model_save_safetensors(m, path, TL_LAYOUT_KERAS, NULL));
    ck_assert_tl_err(tl_model_load_safetensors(NULL, m, path, (tl_tensor_layout)3, NULL), TL_EINVAL, "unknown layout 3");
    tl_safetensors_options o = TL_SAFETENSORS_OPTIONS_INIT;
    o.rename_count = 1;
    ck_assert_tl_err(tl_model_load_safetensors(NULL, m, path, TL_LAYOUT_KERAS, &o), TL_EINVAL, "rename is NULL");
    const char *bad[] = {"x", NULL};
    o.rename = bad;
    ck_assert_tl_err(tl_model_save_safetensors(m, path, TL_LAYOUT_KERAS, &o), TL_EINVAL,
                     "rename entry 1 (libtl name of pair 0) is NULL");
    const char *clash[] = {"conv.bias", "fc.bias"};
    o.rename = clash;
    ck_assert_tl_err(tl_model_save_safetensors(m, path, TL_LAYOUT_KERAS, &o), TL_EINVAL,
                     "two tensors would be called 'conv.bias'");
    /* Two file tensors for one parameter. */
    const char *two[] = {"conv.bias", "fc.bias"};
    o.rename = two;
    o.policy = TL_TRANSFER_LENIENT;
    ck_assert_tl_ok(tl_model_save_safetensors(m, path, TL_LAYOUT_KERAS, NULL));
    ck_assert_tl_err(tl_model_load_safetensors(NULL, m, path, TL_LAYOUT_KERAS, &o), TL_EINVAL,
                     "tensors 'conv.bias' and 'fc.bias' both name parameter bias of layer 'fc'");
    o.rename_count = 0;
    o.policy = (tl_transfer_policy)5;
    ck_assert_tl_err(tl_model_load_safetensors(NULL, m, path, TL_LAYOUT_KERAS, &o), TL_EINVAL, "unknown policy 5");
    o.version = 9;
    ck_assert_tl_err(tl_model_load_safetensors(NULL, m, path, TL_LAYOUT_KERAS, &o), TL_EVERSION, "version 9");
    ck_assert_tl_err(tl_safetensors_options_init(&o, 2), TL_EVERSION, "version 2");
    ck_assert_tl_err(tl_model_load_safetensors(NULL, NULL, path, TL_LAYOUT_KERAS, NULL), TL_EINVAL, "model is NULL");
    ck_assert_tl_err(tl_model_save_safetensors(m, NULL, TL_LAYOUT_KERAS, NULL), TL_EINVAL, "path is NULL");
    char *missing = th_join(dir, "missing.safetensors");
    tl_transfer_report *r = (tl_transfer_report *)&r;
    ck_assert_tl_err(tl_model_load_safetensors(&r, m, missing, TL_LAYOUT_KERAS, NULL), TL_ENOTFOUND, "missing.safetensors");
    ck_assert_ptr_null(r);
    free(missing);
    tl_model_free(m);
    free(path);
}
END_TEST

/* ---- malformed files ---------------------------------------------------------------------------------- */

/* Loading `header` + data into the tiny model fails with `status` and a
 * message naming the file and containing `needle`. */
static void refused_bytes(const void *file, size_t len, tl_status status, const char *needle)
{
    char *path = th_join(dir, "bad.safetensors");
    th_file_write(path, file, len);
    tl_model *m = tiny_model();
    size_t n0, n1;
    float *before = th_all_params(m, &n0);
    tl_transfer_report *r = (tl_transfer_report *)&r;
    ck_assert_tl_err(tl_model_load_safetensors(&r, m, path, TL_LAYOUT_KERAS, NULL), status, needle);
    ck_assert_ptr_null(r);
    ck_assert_msg(strstr(tl_last_error(), path) != NULL, "'%s' lacks the path", tl_last_error());
    ck_assert_msg(strstr(tl_last_error(), "byte ") != NULL, "'%s' lacks the offset", tl_last_error());
    float *after = th_all_params(m, &n1);
    ck_assert_int_eq(memcmp(before, after, n0 * 4), 0);
    free(before);
    free(after);
    tl_model_free(m);
    free(path);
}

static void refused(const char *header, size_t data_len, tl_status status, const char *needle)
{
    size_t n = strlen(header);
    uint8_t *f = calloc(8 + n + data_len + 1, 1);
    put_u64(f, n);
    memcpy(f + 8, header, n);
    refused_bytes(f, 8 + n + data_len, status, needle);
    free(f);
}

#define ONE "\"fc.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}"

START_TEST(header_length_checks)
{
    uint8_t f[16] = {0};
    refused_bytes(f, 5, TL_ETRUNCATED, "byte 5: the file ends inside the 8-byte header length");
    put_u64(f, 100000001);
    refused_bytes(f, 16, TL_ETOOBIG, "byte 0: a header of 100000001 bytes exceeds the limit of 100000000");
    put_u64(f, (uint64_t)1 << 60);
    refused_bytes(f, 16, TL_ETOOBIG, "exceeds the limit");
    put_u64(f, 9);
    refused_bytes(f, 16, TL_ETRUNCATED, "the file is cut: it announces a 9-byte header, 8 bytes follow");
    put_u64(f, 0);
    refused_bytes(f, 8, TL_EFORMAT, "byte 8: the header does not start with '{'");
    refused(" {" ONE "}", 8, TL_EFORMAT, "byte 8: the header does not start with '{'");
}
END_TEST

START_TEST(strict_json)
{
    char needle[64];
    snprintf(needle, sizeof needle, "byte %zu: '}' where a key string should be", 8 + 1 + strlen(ONE) + 1);
    refused("{" ONE ",}", 8, TL_EFORMAT, needle);
    refused("{" ONE "} x", 8, TL_EFORMAT, "text after the end of the JSON value");
    refused("{\"fc.bias\":{\"dtype\":\"F32\",\"shape\":[02],\"data_offsets\":[0,8]}}", 8, TL_EFORMAT,
            "where ',' or ']' should be");
    refused("{\"fc.bias\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, TL_EFORMAT,
            "shape dimension 0 is not a non-negative integer");
    refused("{\"fc.bias\":{\"dtype\":\"F32\",\"shape\":[2.0],\"data_offsets\":[0,8]}}", 8, TL_EFORMAT,
            "shape dimension 0 is not a non-negative integer");
    refused("{\"fc.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}, \"fc.bias\":{}}", 8,
            TL_EFORMAT, "the key 'fc.bias' appears twice in one object");
    refused("{\"fc\xff\":{}}", 0, TL_EFORMAT, "byte 12: invalid UTF-8 inside a string");
    refused("{\"fc\xc0\xaf\":{}}", 0, TL_EFORMAT, "invalid UTF-8"); /* overlong '/' */
    refused("{\"fc\xed\xa0\x80\":{}}", 0, TL_EFORMAT, "invalid UTF-8"); /* an encoded surrogate */
    refused("{\"a\\ud800\":{}}", 0, TL_EFORMAT, "a high surrogate \\ud800 without its low surrogate");
    refused("{\"a\\udc00\":{}}", 0, TL_EFORMAT, "a lone low surrogate");
    refused("{\"a\\u0000\":{}}", 0, TL_EFORMAT, "\\u0000");
    refused("{\"a\\x\":{}}", 0, TL_EFORMAT, "an unknown escape '\\x'");
    refused("{\"a\tb\":{}}", 0, TL_EFORMAT, "a control character (0x09) inside a string");
    refused("{\"a\":tru}", 0, TL_EFORMAT, "a malformed literal (expected true)");
    refused("{\"a\":{}", 0, TL_EFORMAT, "where ',' or '}' should be");
    refused("{\"a", 0, TL_EFORMAT, "a string that never ends");
    /* Nesting: the root and 16 arrays are 17 levels, one too many; the
     * root and 15 arrays pass the parser (and fail later). */
    char deep[256] = "{\"__metadata__\":";
    for (int i = 0; i < 16; i++)
        strcat(deep, "[");
    for (int i = 0; i < 16; i++)
        strcat(deep, "]");
    strcat(deep, "}");
    refused(deep, 0, TL_ETOOBIG, "JSON nested deeper than 16 levels");
    char ok15[256] = "{\"__metadata__\":";
    for (int i = 0; i < 15; i++)
        strcat(ok15, "[");
    for (int i = 0; i < 15; i++)
        strcat(ok15, "]");
    strcat(ok15, "}");
    refused(ok15, 0, TL_EFORMAT, "__metadata__ is a JSON array, not an object");
}
END_TEST

START_TEST(entry_checks)
{
    refused("[]", 0, TL_EFORMAT, "the header does not start with '{'");
    refused("{\"fc.bias\":[]}", 8, TL_EFORMAT, "tensor 'fc.bias' is a JSON array, not an object");
    refused("{\"fc.bias\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, TL_EFORMAT, "tensor 'fc.bias' lacks 'data_offsets'");
    refused("{\"fc.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"x\":1}}", 8, TL_EFORMAT,
            "tensor 'fc.bias' has an unknown field 'x'");
    refused("{\"fc.bias\":{\"dtype\":7,\"shape\":[2],\"data_offsets\":[0,8]}}", 8, TL_EFORMAT,
            "dtype is a number, not a string");
    refused("{\"fc.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, TL_EFORMAT,
            "data_offsets [0, 8] hold 8 bytes, but F32 of 3 elements needs 12");
    refused("{\"fc.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, TL_EFORMAT,
            "end before they begin");
    refused("{\"fc.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 8, TL_EFORMAT,
            "data_offsets is not [begin, end] in integers");
    refused("{\"fc.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,18446744073709551616]}}", 8,
            TL_EFORMAT, "data_offsets is not [begin, end]");
    refused("{\"fc.bias\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}", 8,
            TL_ETOOBIG, "the shape's element count overflows");
    refused("{\"fc.bias\":{\"dtype\":\"F64\",\"shape\":[2305843009213693952],\"data_offsets\":[0,8]}}", 8,
            TL_ETOOBIG, "its size in bytes overflows");
    refused("{\"x\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4,
            TL_ETOOBIG, "rank 17, more than 16");
    refused("{\"__metadata__\":{\"a\":1}," ONE "}", 8, TL_EFORMAT, "__metadata__ 'a' is a number; values must be strings");
}
END_TEST

START_TEST(offset_checks)
{
    refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
            "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
            12, TL_EFORMAT, "tensor 'b' (data [4, 12)) overlaps tensor 'a'");
    refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
            "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]}}",
            20, TL_EFORMAT, "a hole: no tensor covers data bytes [8, 12) before tensor 'b'");
    refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, TL_EFORMAT,
            "a hole: no tensor covers data bytes [0, 4)");
    refused("{" ONE "}", 9, TL_EFORMAT, "1 bytes after the last tensor's data");
    refused("{" ONE "}", 7, TL_ETRUNCATED, "the file is cut: its tensors need 8 bytes of data after the header, it has 7");
    refused("{}", 3, TL_EFORMAT, "3 bytes of data but no tensor");
    /* Zero-size tensors and an empty file are fine. */
    char *path = th_join(dir, "ok.safetensors");
    write_st(path, "{\"z\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[0,0]},\"__metadata__\":{}}", NULL, 0);
    tl_model *m = tiny_model();
    tl_safetensors_options o = TL_SAFETENSORS_OPTIONS_INIT;
    o.policy = TL_TRANSFER_LENIENT;
    ck_assert_tl_ok(tl_model_load_safetensors(NULL, m, path, TL_LAYOUT_KERAS, &o));
    tl_model_free(m);
    free(path);
}
END_TEST

START_TEST(cut_at_every_sixteenth)
{
    tl_model *m = tiny_model();
    char *path = th_join(dir, "m.safetensors");
    ck_assert_tl_ok(tl_model_save_safetensors(m, path, TL_LAYOUT_KERAS, NULL));
    size_t n;
    uint8_t *f = th_file_read(path, &n);
    for (size_t k = 0; k < 16; k++)
        refused_bytes(f, n * k / 16, TL_ETRUNCATED, "byte ");
    free(f);
    tl_model_free(m);
    free(path);
}
END_TEST

/* ---- the JSON parser on its own -------------------------------------------------------------------------- */

START_TEST(json_parser_decodes_exactly)
{
    tli_json j;
    tli_json_limits lim = {4, 64, 64};
    const char *text = " {\"a\\u00e9\\ud83d\\ude00\\n\": [0, -1.5e+3, true, false, null, \"\\\"\\\\/\"], \"b\": {}} ";
    ck_assert_tl_ok(tli_json_parse(&j, text, strlen(text), &lim, 0));
    const tli_json_node *root = &j.nodes[0];
    ck_assert_int_eq(root->type, TLI_JSON_OBJECT);
    ck_assert_uint_eq(root->count, 2);
    const tli_json_node *a = &j.nodes[root->child];
    ck_assert_str_eq(a->key, "a\xc3\xa9\xf0\x9f\x98\x80\n");
    ck_assert_uint_eq(a->count, 6);
    const tli_json_node *zero = &j.nodes[a->child];
    uint64_t v;
    ck_assert(tli_json_u64(zero, &v) && v == 0);
    const tli_json_node *neg = &j.nodes[zero->next];
    ck_assert(!tli_json_u64(neg, &v));
    ck_assert_uint_eq(neg->len, 7);
    const tli_json_node *s = &j.nodes[j.nodes[j.nodes[j.nodes[neg->next].next].next].next];
    ck_assert_int_eq(s->type, TLI_JSON_STRING);
    ck_assert_str_eq(s->str, "\"\\/");
    ck_assert_ptr_nonnull(tli_json_member(&j, root, "b"));
    ck_assert_ptr_null(tli_json_member(&j, root, "c"));
    tli_json_free(&j);
    /* Limits. */
    ck_assert_tl_err(tli_json_parse(&j, "[[[[[1]]]]]", 11, &lim, 100), TL_ETOOBIG, "byte 104: JSON nested deeper than 4");
    const char *many = "[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,"
                       "33,34,35,36,37,38,39,40,41,42,43,44,45,46,47,48,49,50,51,52,53,54,55,56,57,58,59,60,61,62,63,64]";
    ck_assert_tl_err(tli_json_parse(&j, many, strlen(many), &lim, 0), TL_ETOOBIG, "more than 64 JSON values");
    char long_str[80];
    memset(long_str, 'x', sizeof long_str);
    long_str[0] = '"';
    long_str[79] = '"';
    ck_assert_tl_err(tli_json_parse(&j, long_str, 80, &lim, 0), TL_ETOOBIG, "a string longer than 64 bytes");
    ck_assert_tl_ok(tli_json_parse(&j, "18446744073709551615", 20, &lim, 0));
    ck_assert(tli_json_u64(&j.nodes[0], &v) && v == UINT64_MAX);
    tli_json_free(&j);
    ck_assert_tl_ok(tli_json_parse(&j, "18446744073709551616", 20, &lim, 0));
    ck_assert(!tli_json_u64(&j.nodes[0], &v));
    tli_json_free(&j);
    ck_assert_tl_err(tli_json_parse(&j, "1.", 2, &lim, 0), TL_EFORMAT, "no digit after the point");
    ck_assert_tl_err(tli_json_parse(&j, "1e", 2, &lim, 0), TL_EFORMAT, "no exponent digits");
    ck_assert_tl_err(tli_json_parse(&j, "-", 1, &lim, 0), TL_EFORMAT, "a malformed number");
    ck_assert_tl_err(tli_json_parse(&j, "", 0, &lim, 0), TL_EFORMAT, "the text ends where a value should be");
    ck_assert_tl_err(tli_json_parse(&j, "[1,]", 4, &lim, 0), TL_EFORMAT, "']' where a JSON value should be");
    ck_assert_tl_err(tli_json_parse(&j, "{\"a\":1 /* c */}", 15, &lim, 0), TL_EFORMAT, "'/' where ',' or '}' should be");
}
END_TEST

/* ---- atomic writes and allocation failures --------------------------------------------------------------- */

START_TEST(export_over_a_directory_fails_cleanly)
{
    tl_model *m = tiny_model();
    char *target = th_join(dir, "target.safetensors");
    ck_assert_int_eq(mkdir(target, 0755), 0);
    ck_assert_tl_err(tl_model_save_safetensors(m, target, TL_LAYOUT_KERAS, NULL), TL_EIO, "cannot replace it");
    ck_assert_uint_eq(th_dir_count_tmp(dir), 0);
    char *sub = th_join(dir, "none/x.safetensors");
    ck_assert_tl_err(tl_model_save_safetensors(m, sub, TL_LAYOUT_KERAS, NULL), TL_EIO, "cannot create a temporary file");
    free(sub);
    free(target);
    tl_model_free(m);
}
END_TEST

START_TEST(every_allocation_failure)
{
    tl_model *a = th_seed_cnn(16, 16, 3, 10, 1);
    char *path = th_join(dir, "m.safetensors");
    ck_assert_tl_ok(tl_model_save_safetensors(a, path, TL_LAYOUT_PYTORCH, NULL));
    size_t n;
    uint8_t *old = th_file_read(path, &n);
    tl_model *b = th_seed_cnn(16, 16, 3, 10, 1);
    ck_assert_tl_ok(tl_model_init_params(b, 5));
    long i;
    for (i = 1; i < 1000; i++) {
        tli_alloc_fail_at(i);
        tl_status st = tl_model_save_safetensors(b, path, TL_LAYOUT_PYTORCH, NULL);
        tli_alloc_fail_at(0);
        if (st == TL_OK)
            break;
        ck_assert_msg(st == TL_ENOMEM, "allocation %ld: %s: %s", i, tl_status_str(st), tl_last_error());
        ck_assert(th_file_equals(path, old, n));
        ck_assert_uint_eq(th_dir_count_tmp(dir), 0);
    }
    ck_assert_int_gt(i, 2);
    ck_assert_int_lt(i, 1000);
    /* Now the file holds b's parameters; load them into a, failing each
     * allocation in turn: a is unchanged until the one that succeeds. */
    size_t n0, n1;
    float *before = th_all_params(a, &n0);
    for (i = 1; i < 1000; i++) {
        tl_transfer_report *r = (tl_transfer_report *)&r;
        tli_alloc_fail_at(i);
        tl_status st = tl_model_load_safetensors(&r, a, path, TL_LAYOUT_PYTORCH, NULL);
        tli_alloc_fail_at(0);
        if (st == TL_OK) {
            tl_transfer_report_free(r);
            break;
        }
        ck_assert_msg(st == TL_ENOMEM, "allocation %ld: %s: %s", i, tl_status_str(st), tl_last_error());
        ck_assert_ptr_null(r);
        float *after = th_all_params(a, &n1);
        ck_assert_int_eq(memcmp(before, after, n0 * 4), 0);
        free(after);
    }
    ck_assert_int_gt(i, 2);
    ck_assert_int_lt(i, 1000);
    ck_assert(th_same_params(a, b));
    free(before);
    free(old);
    tl_model_free(a);
    tl_model_free(b);
    free(path);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("safetensors");
    TCase *rt = tcase_create("roundtrip");
    tcase_add_checked_fixture(rt, setup, teardown);
    tcase_add_test(rt, roundtrip_keras_layout);
    tcase_add_test(rt, roundtrip_pytorch_layout);
    tcase_add_test(rt, architecture_metadata_is_json);
    tcase_add_test(rt, hand_written_pytorch_file_gives_hand_checked_outputs);
    tcase_add_test(rt, half_precision_known_values);
    tcase_add_test(rt, rename_map_on_export_and_import);
    tcase_add_test(rt, lenient_load_reports_unexpected_missing_and_mismatched);
    tcase_add_test(rt, layout_mismatch_names_the_tensor);
    tcase_add_test(rt, argument_errors);
    suite_add_tcase(s, rt);
    TCase *bad = tcase_create("malformed");
    tcase_add_checked_fixture(bad, setup, teardown);
    tcase_add_test(bad, header_length_checks);
    tcase_add_test(bad, strict_json);
    tcase_add_test(bad, entry_checks);
    tcase_add_test(bad, offset_checks);
    tcase_add_test(bad, cut_at_every_sixteenth);
    tcase_add_test(bad, json_parser_decodes_exactly);
    suite_add_tcase(s, bad);
    TCase *fail = tcase_create("failures");
    tcase_add_checked_fixture(fail, setup, teardown);
    tcase_add_test(fail, export_over_a_directory_fails_cleanly);
    tcase_add_test(fail, every_allocation_failure);
    suite_add_tcase(s, fail);
    return th_run(s);
}
