/*
 * fuzz_idx.c - the public IDX loader on a hostile pair of files. Input:
 * two bytes (big-endian) give the length L of the labels file, one byte the
 * num_classes argument (0: from the data), then L bytes of the labels file,
 * and the rest is the images file. Either file may be gzip.
 */
#include <stdlib.h>
#include <string.h>

#include <tl/tl.h>

#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    size_t lab_len = (size_t)data[0] << 8 | data[1];
    uint32_t classes = data[2];
    data += 3;
    size -= 3;
    if (lab_len > size)
        lab_len = size;
    char lpath[512], ipath[512];
    fz_write(lpath, sizeof lpath, "labels-idx1-ubyte", data, lab_len);
    fz_write(ipath, sizeof ipath, "images-idx3-ubyte", data + lab_len, size - lab_len);
    tl_dataset *ds = NULL;
    tl_status st = tl_dataset_load_idx(&ds, ipath, lpath, classes);
    if (st != TL_OK) {
        if (ds != NULL || strncmp(tl_last_error(), "tl_dataset_load_idx: ", 21) != 0)
            abort();
        return 0;
    }
    uint32_t h = 0, w = 0, c = 0;
    size_t n = tl_dataset_count(ds);
    if (ds == NULL || n == 0 || tl_dataset_shape(&h, &w, &c, ds) != TL_OK || h == 0 || w == 0 || c == 0)
        abort();
    uint32_t k = tl_dataset_num_classes(ds);
    if (classes != 0 && k != classes)
        abort();
    const int32_t *y = tl_dataset_labels(ds);
    for (size_t i = 0; i < n; i++)
        if (y[i] < 0 || (uint32_t)y[i] >= k)
            abort();
    const float *x = tl_dataset_images(ds);
    size_t last = n * h * w * c - 1;
    if (!(x[last] >= 0.0f && x[last] <= 1.0f))
        abort();
    tl_dataset_free(ds);
    return 0;
}
