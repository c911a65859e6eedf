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
                                        "\"kernel_initializer\":\"default\",\"bias_initializer\":\"default\","
                                        "\"activation_alpha\":0.01,\"activation\":\"relu\","
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

/* ---- tl_model_create_from_safetensors ------------------------------------------------------- */

/* Every tensor of `m` set to deterministic values (variances positive), so
 * that biases and batchnorm statistics are not their zero initial values. */
static void cr_randomize(tl_model *m, uint64_t seed)
{
    for (size_t i = 0; i < tl_model_num_layers(m); i++) {
        tl_layer *l;
        ck_assert_tl_ok(tl_model_layer(&l, m, i));
        for (size_t p = 0; p < tl_layer_num_params(l); p++) {
            tl_param_info info;
            ck_assert_tl_ok(tl_layer_param_info(&info, l, p));
            float *v = malloc(info.count * sizeof *v);
            bool var = strcmp(info.name, "moving_variance") == 0;
            th_fill_uniform(v, info.count, var ? 0.5f : -0.5f, var ? 1.5f : 0.5f, seed * 1000 + i * 10 + p);
            ck_assert_tl_ok(tl_layer_set_weights(l, p, v, info.count));
            free(v);
        }
    }
}

/* `b` is `a` again: layers (kind, name, inputs, settings, activation, bias,
 * trainable flag, output shape), summaries, parameters bit for bit, and
 * predictions bit for bit (with one thread each). */
static void cr_same_model(tl_model *a, tl_model *b)
{
    ck_assert_uint_eq(tl_model_num_layers(a), tl_model_num_layers(b));
    tl_shape sa, sb;
    ck_assert_tl_ok(tl_model_input_shape(&sa, a));
    ck_assert_tl_ok(tl_model_input_shape(&sb, b));
    ck_assert(sa.rank == sb.rank && memcmp(sa.dims, sb.dims, sizeof sa.dims) == 0);
    for (size_t i = 0; i < tl_model_num_layers(a); i++) {
        const tl_layer *la = a->layers[i], *lb = b->layers[i];
        ck_assert_str_eq(lb->name, la->name);
        ck_assert_ptr_eq(lb->ops, la->ops);
        ck_assert_uint_eq(lb->ninputs, la->ninputs);
        for (size_t k = 0; k < la->ninputs; k++)
            ck_assert_uint_eq(lb->inputs[k], la->inputs[k]);
        ck_assert_int_eq(memcmp(lb->cfg, la->cfg, la->ops->cfg_size), 0);
        ck_assert_int_eq(lb->act, la->act);
        ck_assert_int_eq(lb->use_bias, la->use_bias);
        ck_assert_int_eq(tl_layer_is_trainable(lb), tl_layer_is_trainable(la));
        ck_assert(tli_shape_eq(&lb->out_shape, &la->out_shape));
        char da[512], db[512];
        tli_cfg_describe(la, da, sizeof da, false);
        tli_cfg_describe(lb, db, sizeof db, false);
        ck_assert_str_eq(db, da);
    }
    size_t na, nb;
    ck_assert_tl_ok(tl_model_summary(NULL, 0, &na, a));
    ck_assert_tl_ok(tl_model_summary(NULL, 0, &nb, b));
    char *ta = malloc(na + 1), *tb = malloc(nb + 1);
    ck_assert_tl_ok(tl_model_summary(ta, na + 1, NULL, a));
    ck_assert_tl_ok(tl_model_summary(tb, nb + 1, NULL, b));
    ck_assert_str_eq(tb, ta);
    free(ta);
    free(tb);
    ck_assert(th_same_params(a, b));
    ck_assert_tl_ok(tl_model_set_threads(a, 1));
    ck_assert_tl_ok(tl_model_set_threads(b, 1));
    size_t in = (size_t)sa.dims[0] * sa.dims[1] * sa.dims[2], n = 3, ca, cb;
    float *x = malloc(n * in * sizeof *x);
    th_fill_uniform(x, n * in, 0.0f, 1.0f, 77);
    float *ya = th_predict(a, x, n, &ca), *yb = th_predict(b, x, n, &cb);
    ck_assert_ptr_nonnull(ya);
    ck_assert_ptr_nonnull(yb);
    ck_assert_uint_eq(ca, cb);
    ck_assert_msg(memcmp(ya, yb, ca * sizeof *ya) == 0, "predictions differ");
    free(x);
    free(ya);
    free(yb);
}

/* Save `a` in `layout`, create a model from the file, compare. */
static void cr_roundtrip(tl_model *a, tl_tensor_layout layout)
{
    char *path = th_join(dir, layout == TL_LAYOUT_KERAS ? "k.safetensors" : "p.safetensors");
    ck_assert_tl_ok(tl_model_save_safetensors(a, path, layout, NULL));
    tl_model *b = (tl_model *)&b;
    ck_assert_tl_ok(tl_model_create_from_safetensors(&b, path, NULL));
    ck_assert_ptr_nonnull(b);
    ck_assert_ptr_null(tl_model_optimizer(b));
    ck_assert_uint_eq(tl_model_seed(b), 0);
    cr_same_model(a, b);
    tl_model_free(b);
    free(path);
}

START_TEST(create_seed_cnn_both_layouts)
{
    tl_model *a = th_seed_cnn(32, 32, 3, 10, 1);
    cr_randomize(a, 1);
    tl_layer *l;
    ck_assert_tl_ok(tl_model_layer(&l, a, 0));
    ck_assert_tl_ok(tl_layer_set_trainable(l, 0)); /* a frozen layer stays frozen */
    cr_roundtrip(a, TL_LAYOUT_KERAS);
    cr_roundtrip(a, TL_LAYOUT_PYTORCH);
    tl_model_free(a);
}
END_TEST

/* A graph with every kind: add, concatenate, both pools (one on an earlier
 * layer), batchnorm (frozen), a leaky_relu activation layer, a depthwise
 * convolution with explicit pads and no bias, a grouped dilated one,
 * dropout, global average pooling, a flatten of an earlier layer. */
static tl_model *cr_graph_model(void)
{
    tl_model *m;
    ck_assert_tl_ok(tl_model_create(&m, 12, 12, 3, 4));
    tl_layer *stem, *bn, *act, *dw, *sum, *avg, *mx, *cat, *c2, *gap, *fl, *both;
    tl_conv2d_options c = TL_CONV2D_OPTIONS_INIT;
    c.filters = 8;
    c.padding = TL_PAD_SAME;
    c.activation = TL_ACT_RELU;
    c.name = "stem";
    ck_assert_tl_ok(tl_model_add_conv2d(&stem, m, &c));
    tl_batchnorm_options b = TL_BATCHNORM_OPTIONS_INIT;
    b.epsilon = 1e-5f;
    b.momentum = 0.9f;
    ck_assert_tl_ok(tl_model_add_batchnorm(&bn, m, &b));
    ck_assert_tl_ok(tl_layer_set_trainable(bn, 0));
    tl_activation_options a = TL_ACTIVATION_OPTIONS_INIT;
    a.activation = TL_ACT_LEAKY_RELU;
    a.alpha = 0.3f;
    ck_assert_tl_ok(tl_model_add_activation(&act, m, &a));
    c.name = "depthwise";
    c.groups = 8;
    c.padding = TL_PAD_EXPLICIT;
    c.pad_top = c.pad_bottom = c.pad_left = c.pad_right = 1;
    c.activation = TL_ACT_LINEAR;
    c.use_bias = 0;
    ck_assert_tl_ok(tl_model_add_conv2d(&dw, m, &c));
    const tl_layer *pair[2] = {dw, stem};
    ck_assert_tl_ok(tl_model_add_add(&sum, m, pair, 2, "join"));
    tl_avgpool2d_options ap = TL_AVGPOOL2D_OPTIONS_INIT;
    ap.padding = TL_PAD_SAME;
    ap.count_include_pad = 1;
    ck_assert_tl_ok(tl_model_add_avgpool2d(&avg, m, &ap));
    tl_maxpool2d_options mp = TL_MAXPOOL2D_OPTIONS_INIT;
    mp.input = stem;
    ck_assert_tl_ok(tl_model_add_maxpool2d(&mx, m, &mp));
    pair[0] = avg;
    pair[1] = mx;
    ck_assert_tl_ok(tl_model_add_concatenate(&cat, m, pair, 2, NULL));
    tl_conv2d_options g = TL_CONV2D_OPTIONS_INIT;
    g.filters = 4;
    g.groups = 2;
    g.dilation_h = g.dilation_w = 2;
    g.padding = TL_PAD_SAME;
    g.activation = TL_ACT_RELU6;
    ck_assert_tl_ok(tl_model_add_conv2d(&c2, m, &g));
    tl_dropout_options d = TL_DROPOUT_OPTIONS_INIT;
    d.rate = 0.2f;
    ck_assert_tl_ok(tl_model_add_dropout(NULL, m, &d));
    ck_assert_tl_ok(tl_model_add_global_avgpool2d(&gap, m, NULL, NULL));
    ck_assert_tl_ok(tl_model_add_flatten_from(&fl, m, mx, NULL));
    pair[0] = gap;
    pair[1] = fl;
    ck_assert_tl_ok(tl_model_add_concatenate(&both, m, pair, 2, NULL));
    tl_dense_options o = TL_DENSE_OPTIONS_INIT;
    o.units = 5;
    o.activation = TL_ACT_SOFTMAX;
    ck_assert_tl_ok(tl_model_add_dense(NULL, m, &o));
    cr_randomize(m, 2);
    return m;
}

START_TEST(create_graph_both_layouts)
{
    tl_model *a = cr_graph_model();
    cr_roundtrip(a, TL_LAYOUT_KERAS);
    cr_roundtrip(a, TL_LAYOUT_PYTORCH);
    tl_model_free(a);
}
END_TEST

START_TEST(create_zoo_models_both_layouts)
{
    tl_zoo_options o = TL_ZOO_OPTIONS_INIT;
    o.seed = 3;
    tl_model *a;
    ck_assert_tl_ok(tl_zoo_resnet_cifar(&a, 20, &o));
    cr_randomize(a, 3);
    cr_roundtrip(a, TL_LAYOUT_KERAS);
    cr_roundtrip(a, TL_LAYOUT_PYTORCH);
    tl_model_free(a);
    o.cifar_stem = 1;
    ck_assert_tl_ok(tl_zoo_mobilenet_v2(&a, &o));
    cr_randomize(a, 4);
    cr_roundtrip(a, TL_LAYOUT_KERAS);
    cr_roundtrip(a, TL_LAYOUT_PYTORCH);
    tl_model_free(a);
}
END_TEST

START_TEST(create_with_rename_map)
{
    static const char *const names[] = {"features.0.weight", "conv2d.kernel", "features.0.bias", "conv2d.bias"};
    tl_model *a = th_seed_cnn(16, 16, 1, 3, 5);
    char *path = th_join(dir, "r.safetensors");
    tl_safetensors_options o = TL_SAFETENSORS_OPTIONS_INIT;
    o.rename = names;
    o.rename_count = 2;
    ck_assert_tl_ok(tl_model_save_safetensors(a, path, TL_LAYOUT_PYTORCH, &o));
    tl_model *b = (tl_model *)&b;
    /* Without the map the file's names pair with nothing: strict refuses. */
    ck_assert_tl_err(tl_model_create_from_safetensors(&b, path, NULL), TL_ENOTFOUND, "features.0.weight");
    ck_assert_ptr_null(b);
    ck_assert_tl_ok(tl_model_create_from_safetensors(&b, path, &o));
    cr_same_model(a, b);
    tl_model_free(b);
    o.policy = TL_TRANSFER_LENIENT;
    b = (tl_model *)&b;
    ck_assert_tl_err(tl_model_create_from_safetensors(&b, path, &o), TL_EINVAL, "TL_TRANSFER_STRICT");
    ck_assert_ptr_null(b);
    tl_model_free(a);
    free(path);
}
END_TEST

/* The file's header with every `from` replaced by `to`; the data are
 * kept. `escape`: from and to are JSON inside the architecture string,
 * written unescaped here. */
static void cr_edit_how(const char *src, const char *dst, const char *from, const char *to, bool escape)
{
    size_t len;
    uint8_t *f = th_file_read(src, &len);
    ck_assert_ptr_nonnull(f);
    uint64_t n = get_u64(f);
    char ef[1024], et[1024];
    const char *in[2] = {from, to};
    char *out[2] = {ef, et};
    for (int k = 0; k < 2; k++) {
        size_t o = 0;
        for (const char *p = in[k]; *p; p++) {
            if (escape && (*p == '"' || *p == '\\'))
                out[k][o++] = '\\';
            out[k][o++] = *p;
        }
        out[k][o] = '\0';
    }
    size_t cap = n + 8 * strlen(et) + 64, hl = 0;
    char *h = malloc(cap);
    const char *p = (const char *)f + 8, *end = p + n;
    bool found = false;
    while (p < end) {
        if ((size_t)(end - p) >= strlen(ef) && memcmp(p, ef, strlen(ef)) == 0) {
            ck_assert_uint_lt(hl + strlen(et), cap);
            memcpy(h + hl, et, strlen(et));
            hl += strlen(et);
            p += strlen(ef);
            found = true;
        } else {
            h[hl++] = *p++;
        }
        ck_assert_uint_lt(hl, cap);
    }
    ck_assert_msg(found, "'%s' is not in the header", ef);
    uint8_t *g = malloc(8 + hl + (len - 8 - n));
    put_u64(g, hl);
    memcpy(g + 8, h, hl);
    memcpy(g + 8 + hl, f + 8 + n, len - 8 - n);
    th_file_write(dst, g, 8 + hl + (len - 8 - n));
    free(g);
    free(h);
    free(f);
}

static void cr_edit(const char *src, const char *dst, const char *from, const char *to)
{
    cr_edit_how(src, dst, from, to, true);
}

/* Creating from `path` fails with `status`, a message holding the path and
 * `needle`, and *out NULL. */
static void cr_refused(const char *path, const tl_safetensors_options *o, tl_status status, const char *needle)
{
    tl_model *m = (tl_model *)&m;
    ck_assert_tl_err(tl_model_create_from_safetensors(&m, path, o), status, needle);
    ck_assert_ptr_null(m);
    ck_assert_msg(strstr(tl_last_error(), path) != NULL, "'%s' lacks the path", tl_last_error());
    ck_assert_msg(strncmp(tl_last_error(), "tl_model_create_from_safetensors", 32) == 0, "'%s' lacks the function",
                  tl_last_error());
}

/* `from` -> `to` in the seed CNN's file, then refused as said. */
static void cr_edited(const char *from, const char *to, tl_status status, const char *needle)
{
    char *good = th_join(dir, "good.safetensors"), *bad = th_join(dir, "bad.safetensors");
    cr_edit(good, bad, from, to);
    cr_refused(bad, NULL, status, needle);
    free(good);
    free(bad);
}

/* Two edits, then refused as said. */
static void cr_edited2(const char *from1, const char *to1, const char *from2, const char *to2, tl_status status,
                       const char *needle)
{
    char *good = th_join(dir, "good.safetensors"), *mid = th_join(dir, "mid.safetensors"),
         *bad = th_join(dir, "bad.safetensors");
    cr_edit(good, mid, from1, to1);
    cr_edit(mid, bad, from2, to2);
    cr_refused(bad, NULL, status, needle);
    free(good);
    free(mid);
    free(bad);
}

START_TEST(create_refuses_bad_descriptions)
{
    tl_model *a = th_seed_cnn(32, 32, 3, 10, 1);
    char *good = th_join(dir, "good.safetensors");
    ck_assert_tl_ok(tl_model_save_safetensors(a, good, TL_LAYOUT_KERAS, NULL));
    /* Sanity: the edit machinery keeps a good file good. */
    char *same = th_join(dir, "same.safetensors");
    cr_edit(good, same, "\"format\":\"libtl\"", "\"format\":\"libtl\"");
    tl_model *b;
    ck_assert_tl_ok(tl_model_create_from_safetensors(&b, same, NULL));
    tl_model_free(b);

    /* Output shapes, settings and kinds. */
    cr_edited("\"output_shape\":[30,30,32]", "\"output_shape\":[30,30,33]", TL_EFORMAT,
              "layer 0 ('conv2d', conv2d): the file says its output is (30, 30, 33), its settings and inputs give "
              "(30, 30, 32)");
    cr_edited("\"kind\":\"maxpool2d\"", "\"kind\":\"maxpool3d\"", TL_EFORMAT,
              "layer 1 ('max_pooling2d'): unknown kind 'maxpool3d'");
    cr_edited("\"filters\":32", "\"filters\":0", TL_EFORMAT, "layer 'conv2d' (conv2d, index 0)");
    cr_edited("\"units\":10", "\"units\":\"ten\"", TL_EFORMAT,
              "layer 5 ('dense', dense): 'units' is not an integer 0..4294967295");
    cr_edited("\"padding\":\"valid\",\"groups\":1", "\"padding\":\"diagonal\",\"groups\":1", TL_EFORMAT,
              "layer 0 ('conv2d', conv2d): 'padding' is \"diagonal\", which is not valid");
    cr_edited("\"activation\":\"relu\"", "\"activation\":\"gelu\"", TL_EFORMAT,
              "layer 0 ('conv2d', conv2d): activation \"gelu\", which is not valid");
    cr_edited("\"use_bias\":true", "\"use_bias\":1", TL_EFORMAT, "'use_bias' is a number, not true or false");
    cr_edited("\"trainable\":true", "\"trainable\":true,\"colour\":\"red\"", TL_EFORMAT,
              "layer 0 ('conv2d', conv2d): a member 'colour' for this kind, which is not valid");
    cr_edited("\"kind\":\"flatten\"", "\"kind\":\"flatten\",\"units\":3", TL_EFORMAT, "a member 'units'");
    cr_edited(",\"activation\":\"softmax\"", "", TL_EFORMAT, "layer 5 ('dense', dense): 'activation' is missing");
    cr_edited("\"inputs\":[\"conv2d\"],", "", TL_EFORMAT, "layer 1 ('max_pooling2d', maxpool2d): 'inputs' is missing");
    cr_edited("\"kernel_w\":3,", "\"kernel_size\":[3,3],", TL_EFORMAT,
              "layer 0 ('conv2d', conv2d): a member 'kernel_size' for this kind, which is not valid");
    /* Names and inputs. */
    cr_edited("\"inputs\":[\"conv2d\"]", "\"inputs\":[\"dense\"]", TL_EFORMAT,
              "layer 1 ('max_pooling2d', maxpool2d): input 0 names 'dense', which is not a layer before it");
    cr_edited("\"inputs\":[\"conv2d\"]", "\"inputs\":[\"max_pooling2d\"]", TL_EFORMAT,
              "input 0 names 'max_pooling2d', which is not a layer before it");
    cr_edited("\"inputs\":[\"conv2d\"]", "\"inputs\":[\"conv2d\",null]", TL_EFORMAT, "max_pooling2d");
    cr_edited("\"inputs\":[\"conv2d\"]", "\"inputs\":[]", TL_EFORMAT, "'inputs' is not an array of 1..16 names");
    cr_edited("\"name\":\"conv2d_1\"", "\"name\":\"conv2d\"", TL_EFORMAT,
              "the model already has a layer named 'conv2d'");
    char long_name[128];
    snprintf(long_name, sizeof long_name, "\"name\":\"%064d\"", 7);
    cr_edited("\"name\":\"flatten\"", long_name, TL_EFORMAT, "layer 4: a name of 64 bytes");
    cr_edited("\"name\":\"flatten\",", "", TL_EFORMAT, "layer 4 has no name");
    /* A layer whose output nothing takes. */
    cr_edited("{\"name\":\"max_pooling2d\",", "{\"name\":\"extra\",\"kind\":\"dropout\",\"inputs\":[\"conv2d\"],"
              "\"rate\":0.5,\"output_shape\":[30,30,32]},{\"name\":\"max_pooling2d\",", TL_EFORMAT, "'extra'");
    /* The top level. */
    cr_edited("\"input\":[32,32,3]", "\"input\":[32,32]", TL_EFORMAT, "\"input\" is not an array [h, w, c]");
    cr_edited("\"input\":[32,32,3]", "\"input\":[31,32,3]", TL_EFORMAT,
              "layer 0 ('conv2d', conv2d): the file says its output is (30, 30, 32), its settings and inputs give (29, 30, 32)");
    cr_edited("\"format\":\"libtl\"", "\"format\":\"keras\"", TL_EFORMAT, "\"format\" is not \"libtl\"");
    cr_edited("\"version\":\"1.1.0\"", "\"version\":\"one\"", TL_EFORMAT, "\"version\" is not a libtl version");
    cr_edited("\"version\":\"1.1.0\"", "\"version\":\"1.1.0\",\"optimizer\":\"adam\"", TL_EFORMAT,
              "a member 'optimizer' at the top level, which is not valid");
    /* Newer versions: what this libtl lacks is named. */
    cr_edited("\"version\":\"1.1.0\"", "\"version\":\"2.0.0\"", TL_EVERSION, "written by libtl 2.0.0");
    char *newer = th_join(dir, "newer.safetensors"), *newer2 = th_join(dir, "newer2.safetensors");
    cr_edit(good, newer, "\"version\":\"1.1.0\"", "\"version\":\"1.7.2\"");
    cr_edit(newer, newer2, "\"kind\":\"flatten\"", "\"kind\":\"flatten3d\"");
    cr_refused(newer2, NULL, TL_EVERSION,
               "layer 4 ('flatten') is a 'flatten3d' layer, a kind this libtl (" TL_VERSION_STRING ") does not know; "
               "the file was written by libtl 1.7.2");
    cr_edit(newer, newer2, "\"activation\":\"relu\"", "\"activation\":\"gelu\"");
    cr_refused(newer2, NULL, TL_EVERSION, "activation \"gelu\", which this libtl");
    cr_edit(newer, newer2, "\"trainable\":true", "\"trainable\":true,\"lr_scale\":0.5");
    cr_refused(newer2, NULL, TL_EVERSION, "a member 'lr_scale' for this kind, which this libtl");
    /* Bad JSON, and JSON beyond the limits. */
    cr_edited("\"output_shape\":[10]}", "\"output_shape\":[10]", TL_EFORMAT, "libtl.architecture (in the decoded text)");
    cr_edited("\"output_shape\":[10]}", "\"output_shape\":[10],}", TL_EFORMAT, "libtl.architecture");
    cr_edited("\"output_shape\":[10]", "\"output_shape\":[[[[[[[[[10]]]]]]]]]", TL_ETOOBIG, "libtl.architecture");
    /* The layout (metadata of its own, outside the description). */
    char *bad = th_join(dir, "bad.safetensors");
    cr_edit_how(good, bad, "\"libtl.layout\":\"keras\"", "\"libtl.layout\":\"jax\"", false);
    cr_refused(bad, NULL, TL_EFORMAT, "libtl.layout \"jax\" is neither \"keras\" nor \"pytorch\"");
    cr_edit_how(good, bad, "\"libtl.layout\":\"keras\"", "\"libtl.layouts\":\"keras\"", false);
    cr_refused(bad, NULL, TL_EFORMAT, "no \"libtl.layout\" metadata");
    free(bad);
    /* Tensors against the description: shape, missing, unexpected. */
    cr_edited2("\"units\":10", "\"units\":9", "\"output_shape\":[10]", "\"output_shape\":[9]", TL_ESHAPE,
               "tensor 'dense.kernel'");
    cr_edited2("\"units\":10", "\"units\":11", "\"output_shape\":[10]", "\"output_shape\":[11]", TL_ENOTFOUND,
               "the layers have 44747 parameter values, the file's tensors only 42442: tensors are missing");
    cr_edited("\"activation\":\"softmax\",\"use_bias\":true", "\"activation\":\"softmax\",\"use_bias\":false",
              TL_ENOTFOUND, "tensor 'dense.bias' (byte ");
    tl_model_free(a);
    free(good);
    free(same);
    free(newer);
    free(newer2);
}
END_TEST

START_TEST(create_refuses_weights_only_and_bad_arguments)
{
    char *path = th_join(dir, "w.safetensors");
    float v[2] = {1, 2};
    uint8_t d[8];
    floats_le(d, v, 2);
    write_st(path, "{\"__metadata__\":{\"format\":\"pt\"},\"fc.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
             d, 8);
    cr_refused(path, NULL, TL_EFORMAT, "carries weights only");
    ck_assert_msg(strstr(tl_last_error(), "tl_model_load_safetensors()") != NULL, "%s", tl_last_error());
    write_st(path, "{\"fc.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", d, 8);
    cr_refused(path, NULL, TL_EFORMAT, "no \"libtl.architecture\" metadata");
    /* The file's own format is checked first, as by the loader. */
    write_st(path, "{\"fc.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", d, 4);
    cr_refused(path, NULL, TL_ETRUNCATED, "byte ");
    char *missing = th_join(dir, "missing.safetensors");
    cr_refused(missing, NULL, TL_ENOTFOUND, "missing.safetensors");
    tl_model *m = (tl_model *)&m;
    ck_assert_tl_err(tl_model_create_from_safetensors(&m, NULL, NULL), TL_EINVAL, "path is NULL");
    ck_assert_ptr_null(m);
    ck_assert_tl_err(tl_model_create_from_safetensors(NULL, path, NULL), TL_EINVAL, "out is NULL");
    tl_safetensors_options o = TL_SAFETENSORS_OPTIONS_INIT;
    o.version = 7;
    m = (tl_model *)&m;
    ck_assert_tl_err(tl_model_create_from_safetensors(&m, path, &o), TL_EVERSION, "version 7");
    ck_assert_ptr_null(m);
    o.version = TL_SAFETENSORS_OPTIONS_VERSION;
    o.rename_count = 1;
    ck_assert_tl_err(tl_model_create_from_safetensors(&m, path, &o), TL_EINVAL, "rename is NULL");
    free(missing);
    free(path);
}
END_TEST

/* A description of `n` dropout layers in a chain on a 1x1x1 input, as a
 * file without tensors. */
static void cr_write_chain(const char *path, int n)
{
    size_t cap = (size_t)n * 160 + 400, len = 0;
    char *h = malloc(cap);
    len += (size_t)snprintf(h + len, cap - len, "{\"__metadata__\":{\"libtl.architecture\":\"{\\\"format\\\":"
                            "\\\"libtl\\\",\\\"version\\\":\\\"1.1.0\\\",\\\"input\\\":[1,1,1],\\\"layers\\\":[");
    for (int i = 0; i < n; i++) {
        char in[32];
        if (i)
            snprintf(in, sizeof in, "\\\"d%d\\\"", i - 1);
        else
            snprintf(in, sizeof in, "null");
        len += (size_t)snprintf(h + len, cap - len,
                                "%s{\\\"name\\\":\\\"d%d\\\",\\\"kind\\\":\\\"dropout\\\",\\\"inputs\\\":[%s],"
                                "\\\"rate\\\":0.5,\\\"output_shape\\\":[1,1,1]}",
                                i ? "," : "", i, in);
    }
    len += (size_t)snprintf(h + len, cap - len, "]}\",\"libtl.layout\":\"keras\"}}");
    ck_assert_uint_lt(len, cap);
    write_st(path, h, NULL, 0);
    free(h);
}

START_TEST(create_refuses_too_many_layers)
{
    char *path = th_join(dir, "long.safetensors");
    cr_write_chain(path, 4097);
    cr_refused(path, NULL, TL_ETOOBIG, "4097 layers exceed the limit of 4096");
    /* 4096 of them are a model. */
    cr_write_chain(path, 4096);
    tl_model *m;
    ck_assert_tl_ok(tl_model_create_from_safetensors(&m, path, NULL));
    ck_assert_uint_eq(tl_model_num_layers(m), 4096);
    tl_layer *l;
    ck_assert_tl_ok(tl_model_layer(&l, m, 4095));
    ck_assert_str_eq(tl_layer_name(l), "d4095");
    ck_assert_uint_eq(tl_layer_num_inputs(l), 1);
    tl_model_free(m);
    free(path);
}
END_TEST

/* libtl 1.0's description: no inputs (a chain), window settings as pairs. */
static const char v1_0_arch[] =
    "{\"format\":\"libtl\",\"version\":\"1.0.0\",\"input\":[12,12,3],\"layers\":["
    "{\"name\":\"conv2d\",\"kind\":\"conv2d\",\"filters\":8,\"kernel_size\":[3,3],\"strides\":[1,1],"
    "\"padding\":\"valid\",\"activation\":\"relu\",\"use_bias\":true,\"trainable\":true,\"output_shape\":[10,10,8]},"
    "{\"name\":\"max_pooling2d\",\"kind\":\"maxpool2d\",\"pool_size\":[2,2],\"strides\":[2,2],\"padding\":\"valid\","
    "\"output_shape\":[5,5,8]},"
    "{\"name\":\"conv2d_1\",\"kind\":\"conv2d\",\"filters\":8,\"kernel_size\":[3,3],\"strides\":[1,1],"
    "\"padding\":\"same\",\"activation\":\"relu\",\"use_bias\":true,\"trainable\":false,\"output_shape\":[5,5,8]},"
    "{\"name\":\"max_pooling2d_1\",\"kind\":\"maxpool2d\",\"pool_size\":[2,2],\"strides\":[2,2],"
    "\"padding\":\"valid\",\"output_shape\":[2,2,8]},"
    "{\"name\":\"flatten\",\"kind\":\"flatten\",\"output_shape\":[32]},"
    "{\"name\":\"dense\",\"kind\":\"dense\",\"units\":5,\"activation\":\"softmax\",\"use_bias\":true,"
    "\"trainable\":true,\"output_shape\":[5]}]}";

/* The 1.0 CNN built with the add functions. */
static tl_model *cr_v1_0_model(void)
{
    tl_model *m;
    ck_assert_tl_ok(tl_model_create(&m, 12, 12, 3, 9));
    tl_conv2d_options conv = TL_CONV2D_OPTIONS_INIT;
    tl_maxpool2d_options pool = TL_MAXPOOL2D_OPTIONS_INIT;
    tl_dense_options dense = TL_DENSE_OPTIONS_INIT;
    conv.filters = 8;
    conv.activation = TL_ACT_RELU;
    ck_assert_tl_ok(tl_model_add_conv2d(NULL, m, &conv));
    ck_assert_tl_ok(tl_model_add_maxpool2d(NULL, m, &pool));
    conv.padding = TL_PAD_SAME;
    tl_layer *c1;
    ck_assert_tl_ok(tl_model_add_conv2d(&c1, m, &conv));
    ck_assert_tl_ok(tl_layer_set_trainable(c1, 0));
    ck_assert_tl_ok(tl_model_add_maxpool2d(NULL, m, &pool));
    ck_assert_tl_ok(tl_model_add_flatten(NULL, m, NULL));
    dense.units = 5;
    dense.activation = TL_ACT_SOFTMAX;
    ck_assert_tl_ok(tl_model_add_dense(NULL, m, &dense));
    cr_randomize(m, 6);
    return m;
}

START_TEST(create_reads_libtl_1_0_descriptions)
{
    tl_model *a = cr_v1_0_model();
    char *path = th_join(dir, "now.safetensors"), *old = th_join(dir, "v1_0.safetensors");
    ck_assert_tl_ok(tl_model_save_safetensors(a, path, TL_LAYOUT_PYTORCH, NULL));
    /* This file's tensors under 1.0's metadata. */
    size_t len;
    uint8_t *f = th_file_read(path, &len);
    uint64_t n = get_u64(f);
    char *h = malloc(n + 1);
    memcpy(h, f + 8, n);
    h[n] = '\0';
    const char *tensors = strstr(h, "\"libtl.version\":\"" TL_VERSION_STRING "\"},");
    ck_assert_ptr_nonnull(tensors);
    tensors += strlen("\"libtl.version\":\"" TL_VERSION_STRING "\"},");
    char esc[sizeof v1_0_arch * 2];
    size_t e = 0;
    for (const char *p = v1_0_arch; *p; p++) {
        if (*p == '"')
            esc[e++] = '\\';
        esc[e++] = *p;
    }
    esc[e] = '\0';
    size_t cap = strlen(esc) + strlen(tensors) + 200;
    char *header = malloc(cap);
    snprintf(header, cap, "{\"__metadata__\":{\"libtl.architecture\":\"%s\",\"libtl.layout\":\"pytorch\","
             "\"libtl.version\":\"1.0.0\"},%s", esc, tensors);
    write_st(old, header, f + 8 + n, len - 8 - n);
    tl_model *b;
    ck_assert_tl_ok(tl_model_create_from_safetensors(&b, old, NULL));
    cr_same_model(a, b);
    tl_model_free(b);
    /* What 1.0 could not have written. */
    char *bad = th_join(dir, "bad.safetensors");
    cr_edit(old, bad, "\"kind\":\"flatten\"", "\"kind\":\"global_avgpool2d\"");
    cr_refused(bad, NULL, TL_EFORMAT, "layer 4 ('flatten'): kind 'global_avgpool2d' did not exist in libtl 1.0");
    cr_edit(old, bad, "\"activation\":\"relu\"", "\"activation\":\"relu6\"");
    cr_refused(bad, NULL, TL_EFORMAT, "activation 'relu6' did not exist in libtl 1.0");
    cr_edit(old, bad, "\"kernel_size\":[3,3],\"strides\":[1,1],\"padding\":\"valid\"",
            "\"kernel_size\":[3],\"strides\":[1,1],\"padding\":\"valid\"");
    cr_refused(bad, NULL, TL_EFORMAT, "layer 0 ('conv2d', conv2d): 'kernel_size' is not an array [h, w]");
    cr_edit(old, bad, "\"filters\":8,\"kernel_size\":[3,3]", "\"filters\":8,\"kernel_h\":3,\"kernel_size\":[3,3]");
    cr_refused(bad, NULL, TL_EFORMAT, "setting 'kernel_h' is given twice ('kernel_size')");
    free(bad);

    /* The fixture libtl 1.0.0 wrote itself (tests/fixtures; meson gives
     * its absolute path). */
    char fixture[1024];
    snprintf(fixture, sizeof fixture, "%s/v1_0_cnn.torch.safetensors", TL_FIXTURES_DIR);
    FILE *probe = fopen(fixture, "rb");
    ck_assert_msg(probe != NULL, "fixture %s not found", fixture);
    fclose(probe);
    tl_model *c;
    ck_assert_tl_ok(tl_model_create_from_safetensors(&c, fixture, NULL));
    ck_assert_uint_eq(tl_model_num_layers(c), 6);
    ck_assert_uint_eq(tl_model_param_count(c), 973);
    tl_model *d = cr_v1_0_model();
    tl_layer *l;
    ck_assert_tl_ok(tl_model_layer(&l, d, 2));
    ck_assert_tl_ok(tl_layer_set_trainable(l, 1));
    tl_transfer_report *r = NULL;
    ck_assert_tl_ok(tl_model_load_safetensors(&r, d, fixture, TL_LAYOUT_PYTORCH, NULL));
    tl_transfer_report_free(r);
    cr_same_model(d, c);
    tl_model_free(c);
    tl_model_free(d);
    free(header);
    free(h);
    free(f);
    free(path);
    free(old);
    tl_model_free(a);
}
END_TEST

START_TEST(create_every_allocation_failure)
{
    tl_model *a = cr_graph_model();
    char *path = th_join(dir, "g.safetensors");
    ck_assert_tl_ok(tl_model_save_safetensors(a, path, TL_LAYOUT_PYTORCH, NULL));
    long i;
    for (i = 1; i < 10000; i++) {
        tl_model *b = (tl_model *)&b;
        tl_clear_error();
        tli_alloc_fail_at(i);
        tl_status st = tl_model_create_from_safetensors(&b, path, NULL);
        long made = tli_alloc_fail_at(0);
        if (made < i) {
            ck_assert_tl_ok(st);
            cr_same_model(a, b);
            tl_model_free(b);
            break;
        }
        ck_assert_msg(st == TL_ENOMEM, "allocation %ld: %s: %s", i, tl_status_str(st), tl_last_error());
        ck_assert_msg(strstr(tl_last_error(), "tl_model_create_from_safetensors") != NULL, "allocation %ld: %s", i,
                      tl_last_error());
        ck_assert_ptr_null(b);
    }
    ck_assert_int_gt(i, 10);
    ck_assert_int_lt(i, 10000);
    tl_model_free(a);
    free(path);
}
END_TEST

/* A Keras DepthwiseConv2D kernel (kh, kw, in, multiplier) loads into a
 * depthwise conv2d, whose own kernel is (kh, kw, 1, in * multiplier):
 * the same values in the same order. A grouped conv that is not
 * depthwise, or the PyTorch layout, does not take that shape. */
START_TEST(keras_depthwise_kernel_shape)
{
    tl_model *m[2];
    for (int i = 0; i < 2; i++) {
        ck_assert_tl_ok(tl_model_create(&m[i], 6, 6, 4, 10 + (uint64_t)i));
        tl_conv2d_options c = TL_CONV2D_OPTIONS_INIT;
        c.filters = 8; /* multiplier 2 */
        c.groups = 4;
        c.name = "dw";
        ck_assert_tl_ok(tl_model_add_conv2d(NULL, m[i], &c));
    }
    char *path = th_join(dir, "dw.safetensors"), *edited = th_join(dir, "dw-keras.safetensors");
    ck_assert_tl_ok(tl_model_save_safetensors(m[0], path, TL_LAYOUT_KERAS, NULL));
    cr_edit_how(path, edited, "\"shape\":[3,3,1,8]", "\"shape\":[3,3,4,2]", false);
    ck_assert(!th_same_params(m[0], m[1]));
    ck_assert_tl_ok(tl_model_load_safetensors(NULL, m[1], edited, TL_LAYOUT_KERAS, NULL));
    ck_assert(th_same_params(m[0], m[1]));
    /* (3, 3, 2, 4) has the same size but is not the Keras shape. */
    cr_edit_how(path, edited, "\"shape\":[3,3,1,8]", "\"shape\":[3,3,2,4]", false);
    ck_assert_tl_err(tl_model_load_safetensors(NULL, m[1], edited, TL_LAYOUT_KERAS, NULL), TL_ESHAPE, "dw.kernel");
    tl_model_free(m[0]);
    tl_model_free(m[1]);
    free(path);
    free(edited);
}
END_TEST

static TCase *create_tcase(void)
{
    TCase *tc = tcase_create("create");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, create_seed_cnn_both_layouts);
    tcase_add_test(tc, create_graph_both_layouts);
    tcase_add_test(tc, create_zoo_models_both_layouts);
    tcase_add_test(tc, create_with_rename_map);
    tcase_add_test(tc, create_refuses_bad_descriptions);
    tcase_add_test(tc, create_refuses_weights_only_and_bad_arguments);
    tcase_add_test(tc, create_refuses_too_many_layers);
    tcase_add_test(tc, create_reads_libtl_1_0_descriptions);
    tcase_add_test(tc, create_every_allocation_failure);
    return tc;
}

/* ---- PyTorch's num_batches_tracked ------------------------------------------------------------ */

/* A model of one batchnorm "bn" on a (1, 1, 2) input. */
static tl_model *nbt_bn_model(void)
{
    tl_model *m;
    ck_assert_tl_ok(tl_model_create(&m, 1, 1, 2, 1));
    tl_batchnorm_options o = TL_BATCHNORM_OPTIONS_INIT;
    o.name = "bn";
    ck_assert_tl_ok(tl_model_add_batchnorm(NULL, m, &o));
    return m;
}

/* A PyTorch BatchNorm2d(2) state dict by hand: weight, bias, running_mean,
 * running_var (F32 (2,)) and num_batches_tracked with `dtype`, `shape` and
 * `nbytes` bytes of value 7 (little-endian). */
static void nbt_write(const char *path, const char *name, const char *dtype, const char *shape, size_t nbytes)
{
    const float v[8] = {1.5f, 2.5f, 0.25f, -0.5f, 3.0f, 4.0f, 0.5f, 2.0f};
    uint8_t data[32 + 16] = {0};
    floats_le(data, v, 8);
    data[32] = 7;
    char header[512];
    snprintf(header, sizeof header,
             "{\"bn.weight\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
             "\"bn.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]},"
             "\"bn.running_mean\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[16,24]},"
             "\"bn.running_var\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[24,32]},"
             "\"%s\":{\"dtype\":\"%s\",\"shape\":%s,\"data_offsets\":[32,%zu]}}",
             name, dtype, shape, 32 + nbytes);
    write_st(path, header, data, 32 + nbytes);
}

START_TEST(nbt_accepted_on_load)
{
    char *path = th_join(dir, "bn.safetensors");
    /* PyTorch writes shape (); (1,) is accepted too (older exporters). */
    const char *shapes[] = {"[]", "[1]"};
    for (int s = 0; s < 2; s++) {
        nbt_write(path, "bn.num_batches_tracked", "I64", shapes[s], 8);
        tl_model *m = nbt_bn_model();
        tl_transfer_report *r = NULL;
        ck_assert_tl_ok(tl_model_load_safetensors(&r, m, path, TL_LAYOUT_PYTORCH, NULL));
        ck_assert_uint_eq(tl_transfer_report_count(r), 5);
        ck_assert_uint_eq(tl_transfer_report_count_outcome(r, TL_TRANSFER_COPIED), 4);
        ck_assert_uint_eq(tl_transfer_report_params_copied(r), 8);
        tl_transfer_outcome oc;
        const char *src, *dst, *reason;
        size_t src_index, params;
        ck_assert_tl_ok(tl_transfer_report_entry(&oc, &src, &src_index, &dst, NULL, &params, &reason, r, 4));
        ck_assert_int_eq(oc, TL_TRANSFER_NO_PARAMS);
        ck_assert_str_eq(src, "bn.num_batches_tracked");
        ck_assert_uint_eq(src_index, 4);
        ck_assert_str_eq(dst, "bn");
        ck_assert_uint_eq(params, 0);
        ck_assert_msg(strstr(reason, "not loaded") != NULL, "%s", reason);
        tl_transfer_report_free(r);
        /* The four tensors are in; the counter's value went nowhere. */
        tl_layer *bn;
        ck_assert_tl_ok(tl_model_layer_by_name(&bn, m, "bn"));
        float got[2];
        const float want[4][2] = {{1.5f, 2.5f}, {0.25f, -0.5f}, {3.0f, 4.0f}, {0.5f, 2.0f}};
        for (size_t p = 0; p < 4; p++) {
            ck_assert_tl_ok(tl_layer_get_weights(got, 2, bn, p));
            ck_assert(got[0] == want[p][0] && got[1] == want[p][1]);
        }
        tl_model_free(m);
    }
    /* Without the counter (a file of another exporter) all is well too. */
    tl_model *m = nbt_bn_model(), *m2 = nbt_bn_model();
    ck_assert_tl_ok(tl_model_save_safetensors(m, path, TL_LAYOUT_KERAS, NULL));
    ck_assert_tl_ok(tl_model_load_safetensors(NULL, m2, path, TL_LAYOUT_KERAS, NULL));
    /* The Keras layout knows no counter: unexpected, strict fails. */
    nbt_write(path, "bn.num_batches_tracked", "I64", "[]", 8);
    static const char *const keras_names[] = {"bn.weight", "bn.gamma", "bn.bias", "bn.beta",
                                              "bn.running_mean", "bn.moving_mean", "bn.running_var",
                                              "bn.moving_variance"};
    tl_safetensors_options o = TL_SAFETENSORS_OPTIONS_INIT;
    o.rename = keras_names;
    o.rename_count = 4;
    ck_assert_tl_err(tl_model_load_safetensors(NULL, m, path, TL_LAYOUT_KERAS, &o), TL_ENOTFOUND,
                     "bn.num_batches_tracked");
    tl_model_free(m);
    tl_model_free(m2);
    free(path);
}
END_TEST

START_TEST(nbt_written_on_pytorch_export)
{
    /* conv -> bn -> flatten -> fc, as a PyTorch model would have it. */
    tl_model *a = tiny_model();
    ck_assert_tl_ok(tl_model_pop_layers(a, 2));
    tl_batchnorm_options bo = TL_BATCHNORM_OPTIONS_INIT;
    bo.name = "bn";
    ck_assert_tl_ok(tl_model_add_batchnorm(NULL, a, &bo));
    ck_assert_tl_ok(tl_model_add_flatten(NULL, a, NULL));
    tl_dense_options d = TL_DENSE_OPTIONS_INIT;
    d.units = 2;
    d.name = "fc";
    ck_assert_tl_ok(tl_model_add_dense(NULL, a, &d));
    char *path = th_join(dir, "torch.safetensors");
    ck_assert_tl_ok(tl_model_save_safetensors(a, path, TL_LAYOUT_PYTORCH, NULL));

    st_view v = view_open(path);
    /* After running_var, as BatchNorm2d's state_dict() orders them: I64,
     * shape (), 8 bytes of 0. */
    const char *rv = strstr(v.header, "\"bn.running_var\":");
    const char *key = "\"bn.num_batches_tracked\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[";
    const char *p = strstr(v.header, key);
    ck_assert_msg(rv != NULL && p != NULL && p > rv, "header %s", v.header);
    unsigned long long b, e;
    ck_assert_int_eq(sscanf(p + strlen(key), "%llu,%llu]}", &b, &e), 2);
    ck_assert_uint_eq(e - b, 8);
    ck_assert_uint_le(8 + v.n + e, v.len);
    for (unsigned long long i = b; i < e; i++)
        ck_assert_uint_eq(v.file[8 + v.n + i], 0);
    /* Every tensor of the model, plus the counter; the F32 ones unchanged. */
    size_t entries = 0;
    for (const char *q = v.header; (q = strstr(q, "\"data_offsets\"")) != NULL; q++)
        entries++;
    size_t tensors = 0;
    for (size_t i = 0; i < tl_model_num_layers(a); i++) {
        tl_layer *l;
        ck_assert_tl_ok(tl_model_layer(&l, a, i));
        tensors += tl_layer_num_params(l);
    }
    ck_assert_uint_eq(entries, tensors + 1);
    uint64_t dims[16];
    int rank;
    size_t count;
    view_tensor(&v, "bn.running_var", dims, &rank, &count);
    ck_assert_int_eq(rank, 1);
    ck_assert_uint_eq(count, 2);
    view_close(&v);

    /* libtl reads its own export back, strict, counter passed over. */
    tl_model *b2 = NULL;
    ck_assert_tl_ok(tl_model_copy(&b2, a));
    ck_assert_tl_ok(tl_model_init_params(b2, 99));
    tl_transfer_report *r = NULL;
    ck_assert_tl_ok(tl_model_load_safetensors(&r, b2, path, TL_LAYOUT_PYTORCH, NULL));
    ck_assert_uint_eq(tl_transfer_report_count_outcome(r, TL_TRANSFER_NO_PARAMS), 1);
    ck_assert_uint_eq(tl_transfer_report_count(r), tensors + 1);
    tl_transfer_report_free(r);
    ck_assert(th_same_params(a, b2));

    /* The Keras layout writes none. */
    ck_assert_tl_ok(tl_model_save_safetensors(a, path, TL_LAYOUT_KERAS, NULL));
    v = view_open(path);
    ck_assert_ptr_null(strstr(v.header, "num_batches_tracked"));
    view_close(&v);

    /* A rename entry names the counter too, both ways. */
    static const char *const names[] = {"norm.num_batches_tracked", "bn.num_batches_tracked"};
    tl_safetensors_options o = TL_SAFETENSORS_OPTIONS_INIT;
    o.rename = names;
    o.rename_count = 1;
    ck_assert_tl_ok(tl_model_save_safetensors(a, path, TL_LAYOUT_PYTORCH, &o));
    v = view_open(path);
    ck_assert_ptr_nonnull(strstr(v.header, "\"norm.num_batches_tracked\":{\"dtype\":\"I64\""));
    ck_assert_ptr_null(strstr(v.header, "\"bn.num_batches_tracked\""));
    view_close(&v);
    ck_assert_tl_ok(tl_model_load_safetensors(NULL, b2, path, TL_LAYOUT_PYTORCH, &o));
    ck_assert_tl_err(tl_model_load_safetensors(NULL, b2, path, TL_LAYOUT_PYTORCH, NULL), TL_ENOTFOUND,
                     "norm.num_batches_tracked");
    tl_model_free(a);
    tl_model_free(b2);
    free(path);
}
END_TEST

START_TEST(nbt_wrong_dtype_or_shape_refused)
{
    char *path = th_join(dir, "bad.safetensors");
    const struct {
        const char *dtype, *shape;
        size_t bytes;
    } bad[] = {{"F32", "[]", 4}, {"I32", "[]", 4}, {"F64", "[]", 8}, {"I64", "[2]", 16}, {"I64", "[1,1]", 8}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        nbt_write(path, "bn.num_batches_tracked", bad[i].dtype, bad[i].shape, bad[i].bytes);
        tl_model *m = nbt_bn_model();
        size_t n0 = 0, n1 = 0;
        float *before = th_all_params(m, &n0);
        tl_transfer_report *r = NULL;
        ck_assert_tl_err(tl_model_load_safetensors(&r, m, path, TL_LAYOUT_PYTORCH, NULL), TL_ESHAPE,
                         "'bn.num_batches_tracked'");
        ck_assert_msg(strstr(tl_last_error(), bad[i].dtype) != NULL, "%s", tl_last_error());
        ck_assert_uint_eq(tl_transfer_report_count_outcome(r, TL_TRANSFER_SHAPE_DIFFERS), 1);
        tl_transfer_report_free(r);
        float *after = th_all_params(m, &n1);
        ck_assert_int_eq(memcmp(before, after, n0 * sizeof *before), 0); /* strict: unchanged */
        free(after);
        /* Lenient: the four tensors are loaded, the counter reported. */
        tl_safetensors_options o = TL_SAFETENSORS_OPTIONS_INIT;
        o.policy = TL_TRANSFER_LENIENT;
        ck_assert_tl_ok(tl_model_load_safetensors(&r, m, path, TL_LAYOUT_PYTORCH, &o));
        ck_assert_uint_eq(tl_transfer_report_count_outcome(r, TL_TRANSFER_COPIED), 4);
        ck_assert_uint_eq(tl_transfer_report_count_outcome(r, TL_TRANSFER_SHAPE_DIFFERS), 1);
        tl_transfer_report_free(r);
        free(before);
        tl_model_free(m);
    }
    /* A counter for a layer that is no batchnorm, or for no layer: unexpected. */
    tl_model *m = nbt_bn_model();
    tl_dense_options d = TL_DENSE_OPTIONS_INIT;
    d.units = 2;
    d.name = "fc";
    ck_assert_tl_ok(tl_model_add_flatten(NULL, m, NULL));
    ck_assert_tl_ok(tl_model_add_dense(NULL, m, &d));
    nbt_write(path, "fc.num_batches_tracked", "I64", "[]", 8);
    ck_assert_tl_err(tl_model_load_safetensors(NULL, m, path, TL_LAYOUT_PYTORCH, NULL), TL_ENOTFOUND,
                     "only a batchnorm has num_batches_tracked");
    nbt_write(path, "bn2.num_batches_tracked", "I64", "[]", 8);
    ck_assert_tl_err(tl_model_load_safetensors(NULL, m, path, TL_LAYOUT_PYTORCH, NULL), TL_ENOTFOUND,
                     "'bn2.num_batches_tracked'");
    tl_model_free(m);
    free(path);
}
END_TEST

static TCase *nbt_tcase(void)
{
    TCase *tc = tcase_create("num_batches_tracked");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, nbt_accepted_on_load);
    tcase_add_test(tc, nbt_written_on_pytorch_export);
    tcase_add_test(tc, nbt_wrong_dtype_or_shape_refused);
    return tc;
}

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
    tcase_add_test(rt, keras_depthwise_kernel_shape);
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
    suite_add_tcase(s, create_tcase());
    suite_add_tcase(s, nbt_tcase());
    return th_run(s);
}
