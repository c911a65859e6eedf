/*
 * cifar.c - CIFAR-10 and CIFAR-100 (binary version) from the extracted
 * files or straight from the .tar.gz archive.
 */
#include <stdio.h>
#include <string.h>

#include "dataset.h"
#include "files.h"
#include "pixels.h"
#include "stream.h"
#include "tar.h"

#define SIDE 32
#define PIXELS (SIDE * SIDE * 3)
#define MAX_FILES 5
/* Records decoded per read in directory mode: ~100 KB of input. */
#define CHUNK_RECORDS 32

/* What distinguishes the two datasets and their splits. */
typedef struct cifar_spec {
    const char *folder;  /* the archive's top folder */
    const char *archive; /* the archive's usual file name */
    const char *const *files;
    size_t nfiles;
    size_t label_bytes;        /* 1 (CIFAR-10) or 2 (coarse, fine) */
    uint32_t limit[2];         /* each label byte must be below this */
    const char *label_name[2]; /* for messages */
    size_t label_at;           /* the byte that becomes the label */
} cifar_spec;

static size_t record_size(const cifar_spec *sp)
{
    return sp->label_bytes + PIXELS;
}

/* Decode `count` records into NHWC floats and labels. Returns the index of
 * the first record with a label byte out of range (its byte in *bad), or
 * count when all are good. */
static size_t decode(const cifar_spec *sp, const float *lut, const unsigned char *rec, size_t count, float *img,
                     int32_t *lab, size_t *bad)
{
    const size_t rs = record_size(sp);
    for (size_t r = 0; r < count; r++, rec += rs) {
        for (size_t b = 0; b < sp->label_bytes; b++)
            if (rec[b] >= sp->limit[b]) {
                *bad = b;
                return r;
            }
        lab[r] = rec[sp->label_at];
        /* The file keeps each colour as a plane; NHWC interleaves them. */
        const unsigned char *red = rec + sp->label_bytes, *green = red + SIDE * SIDE, *blue = green + SIDE * SIDE;
        float *o = img + r * PIXELS;
        for (size_t p = 0; p < SIDE * SIDE; p++) {
            o[3 * p] = lut[red[p]];
            o[3 * p + 1] = lut[green[p]];
            o[3 * p + 2] = lut[blue[p]];
        }
    }
    return count;
}

static tl_status bad_label(const cifar_spec *sp, const unsigned char *rec, size_t byte, const char *file,
                           const char *member, unsigned long long offset, unsigned long long tar_offset,
                           size_t record)
{
    unsigned long long at = offset + byte;
    if (member)
        return tli_error(TL_ERANGE, "%s: member %s: byte %llu (byte %llu of the tar data), record %zu: %s %u is "
                         "outside [0, %u)", file, member, at, tar_offset + at, record, sp->label_name[byte],
                         rec[byte], sp->limit[byte]);
    return tli_error(TL_ERANGE, "%s: byte %llu, record %zu: %s %u is outside [0, %u)", file, at, record,
                     sp->label_name[byte], rec[byte], sp->limit[byte]);
}

/* Images for `total` records, checked against the library's limits. */
static tl_status alloc_arrays(float **img, int32_t **lab, uint64_t total, const char *where)
{
    size_t bytes;
    *img = NULL;
    *lab = NULL;
    if (total > UINT32_MAX || !tli_mul_ok((size_t)total, PIXELS * sizeof(float), &bytes))
        return tli_error(TL_ETOOBIG, "%s: %llu records are more than a dataset can hold", where,
                         (unsigned long long)total);
    *img = tli_malloc_aligned(bytes);
    *lab = tli_malloc((size_t)total * sizeof(int32_t));
    if (*img == NULL || *lab == NULL) {
        tli_free_aligned(*img);
        tli_free(*lab);
        *img = NULL;
        *lab = NULL;
        return tli_error(TL_ENOMEM, "%s: out of memory for %llu images (%.1f MiB)", where,
                         (unsigned long long)total, (double)bytes / 1048576.0);
    }
    return TL_OK;
}

/* ---- the extracted files ------------------------------------------------ */

static tl_status load_dir(tl_dataset **out, const cifar_spec *sp, const char *dir)
{
    const size_t rs = record_size(sp);
    tli_stream *s[MAX_FILES] = {0};
    uint64_t records[MAX_FILES] = {0}, total = 0;
    unsigned char *chunk = NULL;
    float *img = NULL, *lutbuf = NULL;
    int32_t *lab = NULL;
    tl_status st = TL_OK;

    /* Size every file first, so the images are allocated once. */
    for (size_t i = 0; i < sp->nfiles && st == TL_OK; i++) {
        char *path = tli_path_join(dir, sp->files[i]);
        if (path == NULL) {
            st = tli_error(TL_ENOMEM, "%s: out of memory", dir);
            break;
        }
        st = tli_stream_open(&s[i], path, false);
        uint64_t size = 0;
        if (st == TL_OK && !tli_stream_file_size(s[i], &size))
            st = tli_error(TL_EIO, "%s: not a regular file", path);
        else if (st == TL_OK && size == 0)
            st = tli_error(TL_ETRUNCATED, "%s: byte 0: the file is empty (records are %zu bytes)", path, rs);
        else if (st == TL_OK && size % rs != 0)
            st = tli_error(TL_ETRUNCATED,
                           "%s: %llu bytes are not a whole number of %zu-byte records: the record at byte %llu "
                           "is cut off after %llu bytes",
                           path, (unsigned long long)size, rs, (unsigned long long)(size - size % rs),
                           (unsigned long long)(size % rs));
        records[i] = size / rs;
        total += records[i];
        tli_free(path);
    }
    if (st == TL_OK)
        st = alloc_arrays(&img, &lab, total, dir);
    if (st == TL_OK) {
        chunk = tli_malloc(CHUNK_RECORDS * rs);
        lutbuf = tli_malloc(256 * sizeof(float));
        if (chunk == NULL || lutbuf == NULL)
            st = tli_error(TL_ENOMEM, "%s: out of memory", dir);
        else
            tli_byte_to_unit(lutbuf);
    }
    size_t base = 0;
    for (size_t i = 0; i < sp->nfiles && st == TL_OK; i++) {
        for (uint64_t r = 0; r < records[i] && st == TL_OK;) {
            size_t k = records[i] - r < CHUNK_RECORDS ? (size_t)(records[i] - r) : CHUNK_RECORDS;
            st = tli_stream_read_exact(s[i], chunk, k * rs, NULL, "a record (the file shrank while being read)");
            if (st)
                break;
            size_t bad = 0, j = decode(sp, lutbuf, chunk, k, img + (base + r) * PIXELS, lab + base + r, &bad);
            if (j < k)
                st = bad_label(sp, chunk + j * rs, bad, tli_stream_path(s[i]), NULL, (r + j) * rs, 0,
                               (size_t)(r + j));
            r += k;
        }
        base += (size_t)records[i];
    }
    for (size_t i = 0; i < sp->nfiles; i++)
        tli_stream_close(s[i]);
    tli_free(chunk);
    tli_free(lutbuf);
    if (st) {
        tli_free_aligned(img);
        tli_free(lab);
        return st;
    }
    return tli_dataset_adopt(out, img, lab, (size_t)total, SIDE, SIDE, 3, sp->limit[sp->label_at]);
}

/* ---- the archive ---------------------------------------------------------- */

typedef struct member {
    char name[96];
    unsigned char *raw; /* the member's bytes until decoded */
    uint64_t size;
    uint64_t data_offset;
} member;

/* Read the wanted members' bytes as the archive streams by. */
static tl_status collect(member *m, const cifar_spec *sp, tli_stream *s, tli_tar *t)
{
    const size_t rs = record_size(sp);
    const char *path = tli_stream_path(s);
    size_t found = 0;
    while (found < sp->nfiles) {
        bool end;
        tl_status st = tli_tar_next(t, &end);
        if (st)
            return st;
        if (end)
            break;
        const tli_tar_entry *e = &t->entry;
        size_t i = 0;
        while (i < sp->nfiles && (m[i].raw != NULL || e->name_truncated || strcmp(e->name, m[i].name) != 0))
            i++;
        if (i == sp->nfiles)
            continue;
        if (e->type != '0')
            return tli_error(TL_EFORMAT, "%s: byte %llu: member %s is not a regular file (tar type '%c')", path,
                             (unsigned long long)e->header_offset, e->name, e->type);
        if (e->size == 0 || e->size % rs != 0)
            return tli_error(TL_EFORMAT, "%s: byte %llu: member %s has %llu bytes, not a whole number of %zu-byte "
                             "records", path, (unsigned long long)e->header_offset, e->name,
                             (unsigned long long)e->size, rs);
        uint64_t limit = SIZE_MAX; /* what a 32-bit size_t can hold */
        if (e->size > SIZE_MAX || !tli_stream_may_hold(s, e->size, &limit))
            return tli_error(TL_ETRUNCATED, "%s: byte %llu: member %s announces %llu bytes but the rest of the "
                             "archive can hold at most %llu", path, (unsigned long long)e->header_offset, e->name,
                             (unsigned long long)e->size, (unsigned long long)limit);
        m[i].raw = tli_malloc((size_t)e->size);
        if (m[i].raw == NULL)
            return tli_error(TL_ENOMEM, "%s: out of memory for member %s (%.1f MiB)", path, e->name,
                             (double)e->size / 1048576.0);
        m[i].size = e->size;
        m[i].data_offset = e->data_offset;
        st = tli_tar_read(t, m[i].raw, (size_t)e->size);
        if (st)
            return st;
        found++;
    }
    for (size_t i = 0; i < sp->nfiles; i++)
        if (m[i].raw == NULL)
            return tli_error(TL_ENOTFOUND, "%s: member %s not found (%zu of %zu members found before the end of "
                             "the archive at byte %llu)", path, m[i].name, found, sp->nfiles,
                             (unsigned long long)tli_stream_pos(s));
    return TL_OK;
}

static tl_status load_tar(tl_dataset **out, const cifar_spec *sp, const char *archive)
{
    const size_t rs = record_size(sp);
    member m[MAX_FILES];
    memset(m, 0, sizeof m);
    for (size_t i = 0; i < sp->nfiles; i++)
        snprintf(m[i].name, sizeof m[i].name, "%s/%s", sp->folder, sp->files[i]);
    tli_stream *s = NULL;
    tli_tar *t = NULL;
    float *img = NULL, *lutbuf = NULL;
    int32_t *lab = NULL;
    uint64_t total = 0;
    tl_status st = tli_stream_open(&s, archive, true);
    if (st == TL_OK) {
        t = tli_malloc(sizeof *t);
        if (t == NULL)
            st = tli_error(TL_ENOMEM, "%s: out of memory", archive);
    }
    if (st == TL_OK) {
        tli_tar_init(t, s);
        st = collect(m, sp, s, t);
    }
    tli_free(t);
    tli_stream_close(s);
    for (size_t i = 0; i < sp->nfiles && st == TL_OK; i++)
        total += m[i].size / rs;
    if (st == TL_OK)
        st = alloc_arrays(&img, &lab, total, archive);
    if (st == TL_OK && (lutbuf = tli_malloc(256 * sizeof(float))) == NULL)
        st = tli_error(TL_ENOMEM, "%s: out of memory", archive);
    if (st == TL_OK)
        tli_byte_to_unit(lutbuf);
    size_t base = 0;
    for (size_t i = 0; i < sp->nfiles && st == TL_OK; i++) {
        size_t k = (size_t)(m[i].size / rs), bad = 0;
        size_t j = decode(sp, lutbuf, m[i].raw, k, img + base * PIXELS, lab + base, &bad);
        if (j < k)
            st = bad_label(sp, m[i].raw + j * rs, bad, archive, m[i].name, (unsigned long long)j * rs,
                           m[i].data_offset, j);
        /* Give each member's bytes back as soon as it is decoded. */
        tli_free(m[i].raw);
        m[i].raw = NULL;
        base += k;
    }
    for (size_t i = 0; i < sp->nfiles; i++)
        tli_free(m[i].raw);
    tli_free(lutbuf);
    if (st) {
        tli_free_aligned(img);
        tli_free(lab);
        return st;
    }
    return tli_dataset_adopt(out, img, lab, (size_t)total, SIDE, SIDE, 3, sp->limit[sp->label_at]);
}

/* ---- choosing the source ------------------------------------------------ */

static tl_status exists(bool *out, const char *dir, const char *name, tli_path_kind want)
{
    char *p = tli_path_join(dir, name);
    if (p == NULL)
        return tli_error(TL_ENOMEM, "%s: out of memory", dir);
    tli_path_kind k;
    tl_status st = tli_path_kind_of(&k, p);
    tli_free(p);
    *out = st == TL_OK && k == want;
    return st;
}

static tl_status load_any(tl_dataset **out, const cifar_spec *sp, const char *path)
{
    tli_path_kind kind;
    tl_status st = tli_path_kind_of(&kind, path);
    if (st)
        return st;
    if (kind == TLI_PATH_MISSING)
        return tli_error(TL_ENOTFOUND, "%s: no such file or directory", path);
    if (kind == TLI_PATH_FILE)
        return load_tar(out, sp, path);

    bool here = false, below = false, archive = false;
    if ((st = exists(&here, path, sp->files[0], TLI_PATH_FILE)) != TL_OK)
        return st;
    if (here)
        return load_dir(out, sp, path);
    char *sub = tli_path_join(path, sp->folder);
    if (sub == NULL)
        return tli_error(TL_ENOMEM, "%s: out of memory", path);
    st = exists(&below, sub, sp->files[0], TLI_PATH_FILE);
    if (st == TL_OK && below)
        st = load_dir(out, sp, sub);
    tli_free(sub);
    if (st || below)
        return st;
    if ((st = exists(&archive, path, sp->archive, TLI_PATH_FILE)) != TL_OK)
        return st;
    if (archive) {
        char *a = tli_path_join(path, sp->archive);
        if (a == NULL)
            return tli_error(TL_ENOMEM, "%s: out of memory", path);
        st = load_tar(out, sp, a);
        tli_free(a);
        return st;
    }
    return tli_error(TL_ENOTFOUND, "%s: found neither %s, nor %s/%s, nor %s in this directory", path, sp->files[0],
                     sp->folder, sp->files[0], sp->archive);
}

static const char *const c10_train[] = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                                        "data_batch_4.bin", "data_batch_5.bin"};
static const char *const c10_test[] = {"test_batch.bin"};
static const char *const c100_train[] = {"train.bin"};
static const char *const c100_test[] = {"test.bin"};

tl_status tl_dataset_load_cifar10(tl_dataset **out, const char *path, tl_split split)
{
    const char *fn = "tl_dataset_load_cifar10";
    if (out == NULL)
        return tli_error(TL_EINVAL, "%s: out is NULL", fn);
    *out = NULL;
    if (path == NULL)
        return tli_error(TL_EINVAL, "%s: path is NULL", fn);
    if (split != TL_SPLIT_TRAIN && split != TL_SPLIT_TEST)
        return tli_error(TL_EINVAL, "%s: unknown split %d", fn, (int)split);
    cifar_spec sp = {"cifar-10-batches-bin", "cifar-10-binary.tar.gz",
                     split == TL_SPLIT_TRAIN ? c10_train : c10_test, split == TL_SPLIT_TRAIN ? 5 : 1,
                     1, {10, 0}, {"label", NULL}, 0};
    tl_status st = load_any(out, &sp, path);
    if (st)
        tli_error_prefix("%s", fn);
    return st;
}

tl_status tl_dataset_load_cifar100(tl_dataset **out, const char *path, tl_split split, tl_cifar100_label label)
{
    const char *fn = "tl_dataset_load_cifar100";
    if (out == NULL)
        return tli_error(TL_EINVAL, "%s: out is NULL", fn);
    *out = NULL;
    if (path == NULL)
        return tli_error(TL_EINVAL, "%s: path is NULL", fn);
    if (split != TL_SPLIT_TRAIN && split != TL_SPLIT_TEST)
        return tli_error(TL_EINVAL, "%s: unknown split %d", fn, (int)split);
    if (label != TL_CIFAR100_FINE && label != TL_CIFAR100_COARSE)
        return tli_error(TL_EINVAL, "%s: unknown label kind %d", fn, (int)label);
    cifar_spec sp = {"cifar-100-binary", "cifar-100-binary.tar.gz",
                     split == TL_SPLIT_TRAIN ? c100_train : c100_test, 1,
                     2, {20, 100}, {"coarse label", "fine label"}, label == TL_CIFAR100_FINE ? 1 : 0};
    tl_status st = load_any(out, &sp, path);
    if (st)
        tli_error_prefix("%s", fn);
    return st;
}
