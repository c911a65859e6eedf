/*
 * fuzz_cifar.c - the public CIFAR loaders on hostile files. The first byte
 * chooses the loader and the layout; the rest is the file:
 *   0 CIFAR-10 archive (.tar or .tar.gz), test split
 *   1 CIFAR-10 archive, train split (five members)
 *   2 CIFAR-100 archive, test split, fine labels
 *   3 CIFAR-100 archive, train split, coarse labels
 *   4 CIFAR-10 directory: the bytes are test_batch.bin
 *   5 CIFAR-100 directory: the bytes are test.bin
 * A success must give a well-formed dataset; a failure no dataset and a
 * sentence.
 */
#include <stdlib.h>
#include <string.h>

#include <tl/tl.h>

#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(tl_status st, tl_dataset *ds, uint32_t classes)
{
    if (st != TL_OK) {
        if (ds != NULL || strncmp(tl_last_error(), "tl_dataset_load_cifar", 21) != 0)
            abort();
        return;
    }
    uint32_t h = 0, w = 0, c = 0;
    size_t n = tl_dataset_count(ds);
    if (ds == NULL || n == 0 || tl_dataset_shape(&h, &w, &c, ds) != TL_OK || h != 32 || w != 32 || c != 3 ||
        tl_dataset_num_classes(ds) != classes)
        abort();
    const int32_t *y = tl_dataset_labels(ds);
    const float *x = tl_dataset_images(ds);
    for (size_t i = 0; i < n; i++)
        if (y[i] < 0 || (uint32_t)y[i] >= classes)
            abort();
    /* Touch the last pixel: the images must be as long as the count says. */
    if (!(x[n * 32 * 32 * 3 - 1] >= 0.0f && x[n * 32 * 32 * 3 - 1] <= 1.0f))
        abort();
    tl_dataset_free(ds);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned mode = data[0] % 6;
    data++;
    size--;
    char path[512], dir[512];
    tl_dataset *ds = NULL;
    tl_status st;
    switch (mode) {
    case 0:
    case 1:
        fz_write(path, sizeof path, "cifar-10-binary.tar.gz", data, size);
        st = tl_dataset_load_cifar10(&ds, path, mode == 0 ? TL_SPLIT_TEST : TL_SPLIT_TRAIN);
        check(st, ds, 10);
        break;
    case 2:
    case 3:
        fz_write(path, sizeof path, "cifar-100-binary.tar.gz", data, size);
        st = tl_dataset_load_cifar100(&ds, path, mode == 2 ? TL_SPLIT_TEST : TL_SPLIT_TRAIN,
                                      mode == 2 ? TL_CIFAR100_FINE : TL_CIFAR100_COARSE);
        check(st, ds, mode == 2 ? 100 : 20);
        break;
    case 4:
        fz_write(path, sizeof path, "c10/test_batch.bin", data, size);
        st = tl_dataset_load_cifar10(&ds, fz_path(dir, sizeof dir, "c10"), TL_SPLIT_TEST);
        check(st, ds, 10);
        break;
    default:
        fz_write(path, sizeof path, "c100/test.bin", data, size);
        st = tl_dataset_load_cifar100(&ds, fz_path(dir, sizeof dir, "c100"), TL_SPLIT_TEST, TL_CIFAR100_FINE);
        check(st, ds, 100);
        break;
    }
    return 0;
}
