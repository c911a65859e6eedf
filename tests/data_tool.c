/*
 * data_tool.c - tl-data-tool: write a CIFAR-format archive of any size and
 * time the dataset readers (for the load-time and peak-memory figures; run
 * it under /usr/bin/time -v). Built with the tests, never run as one.
 *
 *   tl-data-tool gen-cifar10 OUT.tar.gz [RECORDS_PER_BATCH]   (default 10000, as the real files)
 *   tl-data-tool load-cifar10 PATH train|test
 *   tl-data-tool load-cifar100 PATH train|test fine|coarse
 *   tl-data-tool load-mnist DIR train|test
 *   tl-data-tool load-idx IMAGES LABELS
 *
 * A load prints the count, shape, classes, seconds, and FNV-1a-64 checksums
 * of the pixel bytes (round(x * 255) of every value, in dataset order) and
 * of the labels (one byte each), which other tools can recompute from the
 * raw files.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <tl/tl.h>

#include "data_writers.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* One record: a smooth colour gradient plus 6 bits of noise, so deflate
 * compresses it about as badly as real photographs (CIFAR-10's archive is
 * 95% of its contents). */
static void make_record(unsigned char *r, uint64_t *s)
{
    uint64_t a = rng_next(s);
    r[0] = (unsigned char)(a % 10);
    for (int ch = 0; ch < 3; ch++) {
        int base = (int)((a >> (8 + 8 * ch)) & 0xff), dx = (int)((a >> (32 + 4 * ch)) & 7) - 3;
        for (int p = 0; p < 1024; p += 8) {
            uint64_t noise = rng_next(s);
            for (int q = 0; q < 8; q++) {
                int x = (p + q) % 32, y = (p + q) / 32;
                int v = base + dx * (x + y) / 2 + (int)((noise >> (8 * q)) & 63) - 32;
                r[1 + ch * 1024 + p + q] = (unsigned char)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
        }
    }
}

static int gen_cifar10(const char *out, size_t per_batch)
{
    /* The member order of the real cifar-10-binary.tar.gz is not sorted;
     * this one is not either. */
    static const char *order[] = {"data_batch_1.bin", "batches.meta.txt", "data_batch_3.bin", "data_batch_4.bin",
                                  "test_batch.bin", "readme.html", "data_batch_2.bin", "data_batch_5.bin"};
    static const char meta[] = "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n";
    dw_tar t;
    if (dw_tar_open(&t, out, 1) != 0) {
        perror(out);
        return 1;
    }
    unsigned char rec[3073], h[512];
    uint64_t seed = 1;
    char name[96];
    dw_tar_member(&t, "cifar-10-batches-bin/", NULL, 0, '5');
    for (size_t m = 0; m < sizeof order / sizeof order[0]; m++) {
        snprintf(name, sizeof name, "cifar-10-batches-bin/%s", order[m]);
        if (strstr(order[m], ".bin") == NULL) {
            dw_tar_member(&t, name, meta, sizeof meta - 1, '0');
            continue;
        }
        uint64_t size = (uint64_t)per_batch * sizeof rec;
        dw_tar_header(h, name, size, '0', 0);
        dw_tar_raw(&t, h, 512);
        for (size_t r = 0; r < per_batch; r++) {
            make_record(rec, &seed);
            dw_tar_raw(&t, rec, sizeof rec);
        }
        dw_tar_pad(&t, size);
    }
    if (dw_tar_close(&t, 1) != 0) {
        fprintf(stderr, "%s: write failed\n", out);
        return 1;
    }
    printf("%s: %zu records per batch (%zu train, %zu test)\n", out, per_batch, 5 * per_batch, per_batch);
    return 0;
}

static uint64_t fnv1a(uint64_t hsh, unsigned char b)
{
    return (hsh ^ b) * 0x100000001b3ULL;
}

static int report(tl_status st, tl_dataset **dsp, double t0)
{
    tl_dataset *ds = *dsp; /* read after the load: argument order is unspecified */
    double secs = now() - t0;
    if (st != TL_OK) {
        fprintf(stderr, "%s\n  %s\n", tl_status_str(st), tl_last_error());
        return 1;
    }
    uint32_t h, w, c;
    tl_dataset_shape(&h, &w, &c, ds);
    size_t n = tl_dataset_count(ds), values = n * h * w * c;
    const float *x = tl_dataset_images(ds);
    const int32_t *y = tl_dataset_labels(ds);
    uint64_t hp = 0xcbf29ce484222325ULL, hl = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < values; i++)
        hp = fnv1a(hp, (unsigned char)(x[i] * 255.0f + 0.5f));
    for (size_t i = 0; i < n; i++)
        hl = fnv1a(hl, (unsigned char)y[i]);
    printf("%zu examples of %u x %u x %u, %u classes, loaded in %.3f s\n", n, h, w, c, tl_dataset_num_classes(ds),
           secs);
    printf("fnv1a64 pixels %016llx labels %016llx\n", (unsigned long long)hp, (unsigned long long)hl);
    tl_dataset_free(ds);
    return 0;
}

static tl_split split_of(const char *s)
{
    return strcmp(s, "test") == 0 ? TL_SPLIT_TEST : TL_SPLIT_TRAIN;
}

int main(int argc, char **argv)
{
    tl_dataset *ds = NULL;
    if (argc >= 3 && strcmp(argv[1], "gen-cifar10") == 0)
        return gen_cifar10(argv[2], argc > 3 ? (size_t)strtoul(argv[3], NULL, 10) : 10000);
    double t0 = now();
    if (argc == 4 && strcmp(argv[1], "load-cifar10") == 0)
        return report(tl_dataset_load_cifar10(&ds, argv[2], split_of(argv[3])), &ds, t0);
    if (argc == 5 && strcmp(argv[1], "load-cifar100") == 0)
        return report(tl_dataset_load_cifar100(&ds, argv[2], split_of(argv[3]),
                                               strcmp(argv[4], "coarse") == 0 ? TL_CIFAR100_COARSE : TL_CIFAR100_FINE),
                      &ds, t0);
    if (argc == 4 && strcmp(argv[1], "load-mnist") == 0)
        return report(tl_dataset_load_mnist_dir(&ds, argv[2], split_of(argv[3])), &ds, t0);
    if (argc == 4 && strcmp(argv[1], "load-idx") == 0)
        return report(tl_dataset_load_idx(&ds, argv[2], argv[3], 0), &ds, t0);
    fprintf(stderr,
            "usage: %s gen-cifar10 OUT.tar.gz [RECORDS_PER_BATCH]\n"
            "       %s load-cifar10 PATH train|test\n"
            "       %s load-cifar100 PATH train|test fine|coarse\n"
            "       %s load-mnist DIR train|test\n"
            "       %s load-idx IMAGES LABELS\n",
            argv[0], argv[0], argv[0], argv[0], argv[0]);
    return 2;
}
