/* onnx_build.c - see onnx_build.h. */
#include "onnx_build.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ob_free(ob *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

void ob_raw(ob *b, const void *p, size_t n)
{
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + n)
            cap *= 2;
        uint8_t *q = realloc(b->p, cap);
        if (q == NULL)
            abort();
        b->p = q;
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->n, p, n);
    b->n += n;
}

void ob_varint(ob *b, uint64_t v)
{
    uint8_t t[10];
    size_t n = 0;
    do {
        t[n] = (uint8_t)(v & 0x7f);
        v >>= 7;
        if (v)
            t[n] |= 0x80;
        n++;
    } while (v);
    ob_raw(b, t, n);
}

void ob_tag(ob *b, uint32_t num, unsigned wire)
{
    ob_varint(b, (uint64_t)num << 3 | wire);
}

void ob_int(ob *b, uint32_t num, int64_t v)
{
    ob_tag(b, num, 0);
    ob_varint(b, (uint64_t)v);
}

void ob_f32(ob *b, uint32_t num, float v)
{
    uint32_t u;
    memcpy(&u, &v, 4);
    uint8_t t[4] = {(uint8_t)u, (uint8_t)(u >> 8), (uint8_t)(u >> 16), (uint8_t)(u >> 24)};
    ob_tag(b, num, 5);
    ob_raw(b, t, 4);
}

void ob_bytes(ob *b, uint32_t num, const void *p, size_t n)
{
    ob_tag(b, num, 2);
    ob_varint(b, n);
    ob_raw(b, p, n);
}

void ob_str(ob *b, uint32_t num, const char *s)
{
    ob_bytes(b, num, s, strlen(s));
}

void ob_sub(ob *b, uint32_t num, ob *sub)
{
    ob_bytes(b, num, sub->p, sub->n);
    ob_free(sub);
}

static void put_le32(uint8_t *p, uint32_t u)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(u >> (8 * i));
}

static uint16_t to_f16(float f)
{
    /* Exact for the tests' values (multiples of 1/64 below 2): normal halves. */
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t sign = (u >> 16) & 0x8000u;
    int exp = (int)((u >> 23) & 0xff) - 127 + 15;
    uint32_t mant = (u >> 13) & 0x3ffu;
    if ((u & 0x7fffffffu) == 0)
        return (uint16_t)sign;
    return (uint16_t)(sign | (uint32_t)exp << 10 | mant);
}

void ox_tensor_f(ob *b, uint32_t num, const char *name, const int64_t *dims, int rank, const float *v,
                 ox_store how, ob *ext, const char *location)
{
    ob t = {0};
    size_t n = 1;
    for (int i = 0; i < rank; i++) {
        ob_int(&t, 1, dims[i]);
        n *= (size_t)dims[i];
    }
    ob_int(&t, 2, how == OX_RAW_F16 ? OX_FLOAT16 : how == OX_RAW_BF16 ? OX_BFLOAT16 : OX_FLOAT);
    ob_str(&t, 8, name);
    if (how == OX_FLOAT_DATA) {
        ob packed = {0};
        for (size_t i = 0; i < n; i++) {
            uint32_t u;
            memcpy(&u, &v[i], 4);
            uint8_t q[4];
            put_le32(q, u);
            ob_raw(&packed, q, 4);
        }
        ob_sub(&t, 4, &packed);
    } else if (how == OX_RAW_F16 || how == OX_RAW_BF16) {
        ob raw = {0};
        for (size_t i = 0; i < n; i++) {
            uint32_t u;
            memcpy(&u, &v[i], 4);
            uint16_t h = how == OX_RAW_F16 ? to_f16(v[i]) : (uint16_t)(u >> 16);
            uint8_t q[2] = {(uint8_t)h, (uint8_t)(h >> 8)};
            ob_raw(&raw, q, 2);
        }
        ob_sub(&t, 9, &raw);
    } else {
        ob raw = {0};
        for (size_t i = 0; i < n; i++) {
            uint32_t u;
            memcpy(&u, &v[i], 4);
            uint8_t q[4];
            put_le32(q, u);
            ob_raw(&raw, q, 4);
        }
        if (how == OX_EXTERNAL) {
            char off[32], len[32];
            snprintf(off, sizeof off, "%zu", ext->n);
            snprintf(len, sizeof len, "%zu", raw.n);
            ob_raw(ext, raw.p, raw.n);
            ob_free(&raw);
            const char *kv[3][2] = {{"location", location}, {"offset", off}, {"length", len}};
            for (int k = 0; k < 3; k++) {
                ob e = {0};
                ob_str(&e, 1, kv[k][0]);
                ob_str(&e, 2, kv[k][1]);
                ob_sub(&t, 13, &e);
            }
            ob_int(&t, 14, 1);
        } else {
            ob_sub(&t, 9, &raw);
        }
    }
    ob_sub(b, num, &t);
}

void ox_tensor_i64(ob *b, uint32_t num, const char *name, const int64_t *dims, int rank, const int64_t *v)
{
    ob t = {0};
    size_t n = 1;
    for (int i = 0; i < rank; i++) {
        ob_int(&t, 1, dims[i]);
        n *= (size_t)dims[i];
    }
    ob_int(&t, 2, OX_INT64);
    ob_str(&t, 8, name);
    ob packed = {0};
    for (size_t i = 0; i < n; i++)
        ob_varint(&packed, (uint64_t)v[i]);
    ob_sub(&t, 7, &packed);
    ob_sub(b, num, &t);
}

void ox_attr_int(ob *a, const char *name, int64_t v)
{
    ob t = {0};
    ob_str(&t, 1, name);
    ob_int(&t, 20, 2);
    ob_int(&t, 3, v);
    ob_sub(a, 5, &t);
}

void ox_attr_float(ob *a, const char *name, float v)
{
    ob t = {0};
    ob_str(&t, 1, name);
    ob_int(&t, 20, 1);
    ob_f32(&t, 2, v);
    ob_sub(a, 5, &t);
}

void ox_attr_ints(ob *a, const char *name, const int64_t *v, int n)
{
    ob t = {0};
    ob_str(&t, 1, name);
    ob_int(&t, 20, 7);
    for (int i = 0; i < n; i++)
        ob_int(&t, 8, v[i]); /* unpacked, as the onnx package writes them */
    ob_sub(a, 5, &t);
}

void ox_attr_str(ob *a, const char *name, const char *s)
{
    ob t = {0};
    ob_str(&t, 1, name);
    ob_int(&t, 20, 3);
    ob_str(&t, 4, s);
    ob_sub(a, 5, &t);
}

static void names(ob *n, uint32_t num, const char *list)
{
    if (list == NULL || list[0] == '\0')
        return;
    for (const char *p = list;;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        ob_bytes(n, num, p, len);
        if (e == NULL)
            break;
        p = e + 1;
    }
}

void ox_node(ob *graph, const char *op, const char *name, const char *ins, const char *outs, ob *attrs)
{
    ob n = {0};
    names(&n, 1, ins);
    names(&n, 2, outs);
    if (name)
        ob_str(&n, 3, name);
    ob_str(&n, 4, op);
    if (attrs) {
        ob_raw(&n, attrs->p, attrs->n);
        ob_free(attrs);
    }
    ob_sub(graph, 1, &n);
}

void ox_value(ob *graph, uint32_t num, const char *name, const int64_t *dims, int rank)
{
    ob shape = {0}, tt = {0}, type = {0}, v = {0};
    for (int i = 0; i < rank; i++) {
        ob d = {0};
        if (dims[i] >= 0)
            ob_int(&d, 1, dims[i]);
        else
            ob_str(&d, 2, "N");
        ob_sub(&shape, 1, &d);
    }
    ob_int(&tt, 1, OX_FLOAT);
    ob_sub(&tt, 2, &shape);
    ob_sub(&type, 1, &tt);
    ob_str(&v, 1, name);
    ob_sub(&v, 2, &type);
    ob_sub(graph, num, &v);
}

void ox_model(ob *out, int64_t opset, ob *graph)
{
    ob_int(out, 1, 8);
    ob_str(out, 2, "libtl-tests");
    ob os = {0};
    ob_str(&os, 1, "");
    ob_int(&os, 2, opset);
    ob_sub(out, 8, &os);
    ob_sub(out, 7, graph); /* last: a cut anywhere in the graph is a cut file */
}

void ox_tiny_weights(float *w1, float *b1, float *w2, float *b2)
{
    /* Multiples of 1/64 in [-1, 1): exact in float16 and bfloat16. */
    uint32_t s = 12345;
    float *all[4] = {w1, b1, w2, b2};
    const size_t n[4] = {3 * 2 * 3 * 3, 3, 4 * 27, 4};
    for (int k = 0; k < 4; k++)
        for (size_t i = 0; i < n[k]; i++) {
            s = s * 1103515245u + 12345u;
            all[k][i] = (float)((int)((s >> 16) % 128) - 64) / 64.0f;
        }
}

void ox_tiny_cnn(ob *out, int64_t opset, ox_store how, ob *ext)
{
    float w1[54], b1[3], w2[108], b2[4];
    ox_tiny_weights(w1, b1, w2, b2);
    ob g = {0}, a = {0};
    ob_str(&g, 2, "tiny");
    const int64_t pads[8] = {0, 0, 1, 0, 0, 0, 0, 1};
    const int64_t pd[1] = {8};
    ox_tensor_i64(&g, 5, "pads", pd, 1, pads);
    const int64_t d1[4] = {3, 2, 3, 3}, db1[1] = {3}, d2[2] = {4, 27}, db2[1] = {4};
    ox_tensor_f(&g, 5, "conv.weight", d1, 4, w1, how, ext, "tiny.bin");
    ox_tensor_f(&g, 5, "conv.bias", db1, 1, b1, how, ext, "tiny.bin");
    ox_tensor_f(&g, 5, "fc.weight", d2, 2, w2, how, ext, "tiny.bin");
    ox_tensor_f(&g, 5, "fc.bias", db2, 1, b2, how, ext, "tiny.bin");
    ox_node(&g, "Pad", "/pad/Pad", "x,pads", "xp", NULL);
    const int64_t cp[4] = {0, 1, 1, 0}, k3[2] = {3, 3};
    ox_attr_ints(&a, "pads", cp, 4);
    ox_attr_ints(&a, "kernel_shape", k3, 2);
    ox_attr_int(&a, "group", 1);
    ox_node(&g, "Conv", "/conv/Conv", "xp,conv.weight,conv.bias", "c", &a);
    ox_node(&g, "Relu", "/relu/Relu", "c", "r", NULL);
    const int64_t k2[2] = {2, 2};
    ox_attr_ints(&a, "kernel_shape", k2, 2);
    ox_attr_ints(&a, "strides", k2, 2);
    ox_node(&g, "MaxPool", "/pool/MaxPool", "r", "p", &a);
    ox_node(&g, "Flatten", "/flatten/Flatten", "p", "f", NULL);
    ox_attr_int(&a, "transB", 1);
    ox_node(&g, "Gemm", "/fc/Gemm", "f,fc.weight,fc.bias", "z", &a);
    ox_attr_int(&a, "axis", 1);
    ox_node(&g, "Softmax", "/softmax/Softmax", "z", "y", &a);
    const int64_t xin[4] = {1, 2, 6, 6}, yout[2] = {1, 4};
    ox_value(&g, 11, "x", xin, 4);
    ox_value(&g, 12, "y", yout, 2);
    ox_model(out, opset, &g);
}
