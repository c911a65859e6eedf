/*
 * idx.c - the IDX format of MNIST and Fashion-MNIST (gzip or plain), and
 * the directory layout of their downloads.
 *
 * An IDX file is: two zero bytes, a data type byte (0x08: unsigned byte),
 * the number of dimensions d, then d big-endian uint32 sizes, then the
 * values in row-major order.
 */
#include <string.h>

#include "dataset.h"
#include "files.h"
#include "pixels.h"
#include "stream.h"

#define IDX_UBYTE 0x08
/* Bytes decoded per read: small next to the images, large next to a call. */
#define CHUNK ((size_t)1 << 16)

typedef struct idx_file {
    tli_stream *s;
    uint32_t ndim;
    uint32_t dims[4];
} idx_file;

/* Open and check the header: `min_dim`..`max_dim` dimensions, none zero. */
static tl_status open_idx(idx_file *f, const char *path, uint32_t min_dim, uint32_t max_dim, const char *kind)
{
    unsigned char h[4 + 4 * 4];
    memset(f, 0, sizeof *f);
    tl_status st = tli_stream_open(&f->s, path, true);
    if (st)
        return st;
    if ((st = tli_stream_read_exact(f->s, h, 4, NULL, "the IDX magic number")) != TL_OK)
        return st;
    unsigned long long magic = (unsigned long long)h[0] << 24 | (unsigned long long)h[1] << 16 |
                               (unsigned long long)h[2] << 8 | h[3];
    if (h[0] != 0 || h[1] != 0)
        return tli_error(TL_EFORMAT, "%s: byte 0: wrong magic number 0x%08llx: an IDX %s file starts with "
                         "0x0000080%u", path, magic, kind, min_dim);
    if (h[2] != IDX_UBYTE)
        return tli_error(TL_EFORMAT, "%s: byte 2: IDX data type 0x%02x is not supported (magic 0x%08llx): only "
                         "unsigned bytes (0x08) are", path, h[2], magic);
    if (h[3] < min_dim || h[3] > max_dim)
        return tli_error(TL_EFORMAT, "%s: byte 3: %u dimensions (magic 0x%08llx), but an IDX %s file has %u%s",
                         path, h[3], magic, kind, min_dim, max_dim > min_dim ? " or 4" : "");
    f->ndim = h[3];
    if ((st = tli_stream_read_exact(f->s, h + 4, 4 * f->ndim, NULL, "the IDX dimensions")) != TL_OK)
        return st;
    for (uint32_t d = 0; d < f->ndim; d++) {
        const unsigned char *b = h + 4 + 4 * d;
        f->dims[d] = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
        if (f->dims[d] == 0)
            return tli_error(TL_EFORMAT, "%s: byte %u: dimension %u of the IDX header is 0", path, 4 + 4 * d, d);
    }
    return TL_OK;
}

static tl_status too_short(const tli_stream *s, uint64_t need, const char *what)
{
    uint64_t limit;
    if (tli_stream_may_hold(s, need, &limit))
        return TL_OK;
    return tli_error(TL_ETRUNCATED, "%s: byte %llu: the header announces %s (%llu bytes) but the rest of the file "
                     "can hold at most %llu bytes%s", tli_stream_path(s), (unsigned long long)tli_stream_pos(s),
                     what, (unsigned long long)need, (unsigned long long)limit,
                     tli_stream_is_gzip(s) ? " even at gzip's best ratio" : "");
}

/* Read k bytes from value `first` on; when the data ends first, name the
 * item (label or image, `item_size` bytes each) it ends in. */
static tl_status read_chunk(tli_stream *s, unsigned char *buf, size_t k, size_t first, size_t item_size,
                            const char *item, uint32_t n)
{
    size_t got;
    tl_status st = tli_stream_read(s, buf, k, &got);
    if (st == TL_OK && got < k)
        st = tli_error(TL_ETRUNCATED, "%s: ends at byte %llu, inside %s %zu of %u", tli_stream_path(s),
                       (unsigned long long)tli_stream_pos(s), item, (first + got) / item_size, n);
    return st;
}

/* Check the two headers against each other and the library's limits, then
 * decode both files into new arrays. */
static tl_status read_pair(idx_file *fi, idx_file *fl, uint32_t classes, float **out_img, int32_t **out_lab,
                           uint32_t *out_max)
{
    const char *ipath = tli_stream_path(fi->s), *lpath = tli_stream_path(fl->s);
    const uint32_t n = fi->dims[0], h = fi->dims[1], w = fi->dims[2], c = fi->ndim == 4 ? fi->dims[3] : 1;
    const uint64_t ex = tli_mul_sat(tli_mul_sat(h, w), c);
    size_t elems, bytes;
    char what[160];
    if (ex > (uint64_t)INT32_MAX)
        return tli_error(TL_ETOOBIG, "%s: byte 8: images of %u x %u x %u are too large (more than 2^31-1 values "
                         "each)", ipath, h, w, c);
    if (!tli_mul_ok(n, (size_t)ex, &elems) || !tli_mul_ok(elems, sizeof(float), &bytes))
        return tli_error(TL_ETOOBIG, "%s: byte 4: %u images of %u x %u x %u would need more bytes than memory can "
                         "address", ipath, n, h, w, c);
    if (fl->dims[0] != n)
        return tli_error(TL_ESHAPE, "the images file %s holds %u images (header byte 4) but the labels file %s "
                         "holds %u labels (header byte 4)", ipath, n, lpath, fl->dims[0]);
    snprintf(what, sizeof what, "%u labels", n);
    tl_status st = too_short(fl->s, n, what);
    if (st)
        return st;
    snprintf(what, sizeof what, "%u images of %u x %u x %u", n, h, w, c);
    if ((st = too_short(fi->s, elems, what)) != TL_OK)
        return st;

    float *img = tli_malloc_aligned(bytes), *lut = tli_malloc(256 * sizeof(float));
    int32_t *lab = tli_malloc((size_t)n * sizeof(int32_t));
    unsigned char *chunk = tli_malloc(CHUNK);
    uint32_t max_label = 0;
    if (img == NULL || lab == NULL || chunk == NULL || lut == NULL)
        st = tli_error(TL_ENOMEM, "%s: out of memory for %u images (%.1f MiB)", ipath, n, (double)bytes / 1048576.0);
    else
        tli_byte_to_unit(lut);
    for (size_t i = 0; i < n && st == TL_OK;) {
        size_t k = n - i < CHUNK ? n - i : CHUNK;
        if ((st = read_chunk(fl->s, chunk, k, i, 1, "label", n)) != TL_OK)
            break;
        for (size_t j = 0; j < k; j++) {
            if (classes != 0 && chunk[j] >= classes) {
                st = tli_error(TL_ERANGE, "%s: byte %llu: label %u of example %zu is outside [0, %u)", lpath,
                               (unsigned long long)(tli_stream_pos(fl->s) - k + j), chunk[j], i + j, classes);
                break;
            }
            lab[i + j] = chunk[j];
            if (chunk[j] > max_label)
                max_label = chunk[j];
        }
        i += k;
    }
    for (size_t i = 0; i < elems && st == TL_OK;) {
        size_t k = elems - i < CHUNK ? elems - i : CHUNK;
        if ((st = read_chunk(fi->s, chunk, k, i, (size_t)ex, "image", n)) != TL_OK)
            break;
        for (size_t j = 0; j < k; j++)
            img[i + j] = lut[chunk[j]];
        i += k;
    }
    if (st == TL_OK) {
        snprintf(what, sizeof what, "data continues after the %u labels the header announces", n);
        st = tli_stream_expect_end(fl->s, what);
    }
    if (st == TL_OK) {
        snprintf(what, sizeof what, "data continues after the %u images the header announces", n);
        st = tli_stream_expect_end(fi->s, what);
    }
    tli_free(chunk);
    tli_free(lut);
    if (st) {
        tli_free_aligned(img);
        tli_free(lab);
        return st;
    }
    *out_img = img;
    *out_lab = lab;
    *out_max = max_label;
    return TL_OK;
}

static tl_status load_idx(tl_dataset **out, const char *images_path, const char *labels_path, uint32_t classes)
{
    idx_file fi = {0}, fl = {0};
    float *img = NULL;
    int32_t *lab = NULL;
    uint32_t max_label = 0;
    tl_status st = open_idx(&fl, labels_path, 1, 1, "labels (idx1-ubyte)");
    if (st == TL_OK)
        st = open_idx(&fi, images_path, 3, 4, "images (idx3-ubyte)");
    if (st == TL_OK)
        st = read_pair(&fi, &fl, classes, &img, &lab, &max_label);
    tli_stream_close(fl.s);
    tli_stream_close(fi.s);
    if (st)
        return st;
    return tli_dataset_adopt(out, img, lab, fi.dims[0], fi.dims[1], fi.dims[2], fi.ndim == 4 ? fi.dims[3] : 1,
                             classes ? classes : max_label + 1);
}

tl_status tl_dataset_load_idx(tl_dataset **out, const char *images_path, const char *labels_path,
                              uint32_t num_classes)
{
    const char *fn = "tl_dataset_load_idx";
    if (out == NULL)
        return tli_error(TL_EINVAL, "%s: out is NULL", fn);
    *out = NULL;
    if (images_path == NULL || labels_path == NULL)
        return tli_error(TL_EINVAL, "%s: %s is NULL", fn, images_path ? "labels_path" : "images_path");
    tl_status st = load_idx(out, images_path, labels_path, num_classes);
    if (st)
        tli_error_prefix("%s", fn);
    return st;
}

/* dir/name.gz when it exists, else dir/name when it exists. */
static tl_status find_file(char **out, const char *dir, const char *name)
{
    char gz[64];
    snprintf(gz, sizeof gz, "%s.gz", name);
    const char *tries[2] = {gz, name};
    *out = NULL;
    for (int i = 0; i < 2; i++) {
        char *p = tli_path_join(dir, tries[i]);
        if (p == NULL)
            return tli_error(TL_ENOMEM, "%s: out of memory", dir);
        tli_path_kind k;
        tl_status st = tli_path_kind_of(&k, p);
        if (st == TL_OK && k == TLI_PATH_FILE) {
            *out = p;
            return TL_OK;
        }
        tli_free(p);
        if (st)
            return st;
    }
    return tli_error(TL_ENOTFOUND, "%s: found neither %s nor %s in this directory", dir, gz, name);
}

tl_status tl_dataset_load_mnist_dir(tl_dataset **out, const char *dir, tl_split split)
{
    const char *fn = "tl_dataset_load_mnist_dir";
    if (out == NULL)
        return tli_error(TL_EINVAL, "%s: out is NULL", fn);
    *out = NULL;
    if (dir == NULL)
        return tli_error(TL_EINVAL, "%s: dir is NULL", fn);
    if (split != TL_SPLIT_TRAIN && split != TL_SPLIT_TEST)
        return tli_error(TL_EINVAL, "%s: unknown split %d", fn, (int)split);
    const char *prefix = split == TL_SPLIT_TRAIN ? "train" : "t10k";
    char iname[40], lname[40];
    snprintf(iname, sizeof iname, "%s-images-idx3-ubyte", prefix);
    snprintf(lname, sizeof lname, "%s-labels-idx1-ubyte", prefix);
    char *ipath = NULL, *lpath = NULL;
    tli_path_kind kind;
    tl_status st = tli_path_kind_of(&kind, dir);
    if (st == TL_OK && kind != TLI_PATH_DIR)
        st = tli_error(TL_ENOTFOUND, "%s: %s", dir, kind == TLI_PATH_MISSING ? "no such directory" : "not a directory");
    if (st == TL_OK)
        st = find_file(&ipath, dir, iname);
    if (st == TL_OK)
        st = find_file(&lpath, dir, lname);
    if (st == TL_OK)
        st = load_idx(out, ipath, lpath, 10);
    tli_free(ipath);
    tli_free(lpath);
    if (st)
        tli_error_prefix("%s", fn);
    return st;
}
