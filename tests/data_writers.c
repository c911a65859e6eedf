/* data_writers.c - see data_writers.h. */
#include "data_writers.h"

#include <stdio.h>
#include <string.h>

unsigned char dw_cifar_pixel(size_t rec, unsigned ch, unsigned p, unsigned salt)
{
    /* Distinct per record, plane and pixel, with every byte value used. */
    return (unsigned char)(rec * 131u + ch * 67u + p * 7u + (p >> 5) * 3u + salt * 29u);
}

void dw_cifar_record(unsigned char *out, size_t label_bytes, const unsigned char *labels, size_t rec, unsigned salt)
{
    memcpy(out, labels, label_bytes);
    for (unsigned ch = 0; ch < 3; ch++)
        for (unsigned p = 0; p < 1024; p++)
            out[label_bytes + ch * 1024 + p] = dw_cifar_pixel(rec, ch, p, salt);
}

int dw_write(const char *path, const void *data, size_t n, int gz)
{
    if (gz) {
        gzFile g = gzopen(path, "wb6");
        if (g == NULL)
            return -1;
        int ok = n == 0 || gzwrite(g, data, (unsigned)n) == (int)n;
        return gzclose(g) == Z_OK && ok ? 0 : -1;
    }
    FILE *f = fopen(path, "wb");
    if (f == NULL)
        return -1;
    int ok = fwrite(data, 1, n, f) == n;
    return fclose(f) == 0 && ok ? 0 : -1;
}

size_t dw_idx_header(unsigned char *out, unsigned ndim, const uint32_t *dims)
{
    out[0] = out[1] = 0;
    out[2] = 0x08;
    out[3] = (unsigned char)ndim;
    for (unsigned d = 0; d < ndim; d++) {
        out[4 + 4 * d] = (unsigned char)(dims[d] >> 24);
        out[5 + 4 * d] = (unsigned char)(dims[d] >> 16);
        out[6 + 4 * d] = (unsigned char)(dims[d] >> 8);
        out[7 + 4 * d] = (unsigned char)dims[d];
    }
    return 4 + 4 * (size_t)ndim;
}

int dw_tar_open(dw_tar *t, const char *path, int compress)
{
    t->failed = 0;
    t->gz = gzopen(path, compress ? "wb6" : "wbT");
    return t->gz ? 0 : -1;
}

void dw_tar_header(unsigned char h[512], const char *name, uint64_t size, char type, int gnu)
{
    memset(h, 0, 512);
    size_t len = strlen(name);
    if (len <= 100) {
        memcpy(h, name, len);
    } else {
        /* ustar: split at a '/' so the prefix holds at most 155 bytes. */
        size_t cut = len - 1 < 155 ? len - 1 : 155;
        while (cut > 0 && (name[cut] != '/' || len - cut - 1 > 100))
            cut--;
        memcpy(h + 345, name, cut);
        memcpy(h, name + cut + 1, len - cut - 1);
    }
    snprintf((char *)h + 100, 8, "%07o", 0644);
    snprintf((char *)h + 108, 8, "%07o", 1000);
    snprintf((char *)h + 116, 8, "%07o", 1000);
    snprintf((char *)h + 124, 12, "%011llo", (unsigned long long)size);
    snprintf((char *)h + 136, 12, "%011o", 1234567890u);
    h[156] = (unsigned char)type;
    if (gnu)
        memcpy(h + 257, "ustar  ", 8);
    else
        memcpy(h + 257, "ustar\0" "00", 8);
    memcpy(h + 265, "user", 4);
    memcpy(h + 297, "group", 5);
    dw_tar_fix_checksum(h);
}

void dw_tar_fix_checksum(unsigned char h[512])
{
    memset(h + 148, ' ', 8);
    unsigned sum = 0;
    for (int i = 0; i < 512; i++)
        sum += h[i];
    snprintf((char *)h + 148, 8, "%06o", sum); /* six digits, NUL, space */
    h[155] = ' ';
}

void dw_tar_raw(dw_tar *t, const void *data, size_t n)
{
    const unsigned char *p = data;
    while (n > 0) {
        unsigned k = n > (1u << 30) ? (1u << 30) : (unsigned)n;
        if (gzwrite(t->gz, p, k) != (int)k)
            t->failed = 1;
        p += k;
        n -= k;
    }
}

void dw_tar_pad(dw_tar *t, uint64_t size)
{
    static const unsigned char zero[512];
    size_t pad = (size_t)((512 - size % 512) % 512);
    if (pad)
        dw_tar_raw(t, zero, pad);
}

void dw_tar_member(dw_tar *t, const char *name, const void *data, size_t size, char type)
{
    unsigned char h[512];
    dw_tar_header(h, name, size, type, 0);
    dw_tar_raw(t, h, 512);
    if (size)
        dw_tar_raw(t, data, size);
    dw_tar_pad(t, size);
}

int dw_tar_close(dw_tar *t, int end_blocks)
{
    static const unsigned char zero[1024];
    if (end_blocks)
        dw_tar_raw(t, zero, sizeof zero);
    int rc = gzclose(t->gz);
    return rc == Z_OK && !t->failed ? 0 : -1;
}
