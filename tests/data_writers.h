/* data_writers.h - write files in the dataset formats (CIFAR records, IDX,
 * ustar archives, gzip) for the reader tests and tl-data-tool. Writers
 * return 0 on success and -1 on any I/O error. Test code, not libtl. */
#ifndef TL_TEST_DATA_WRITERS_H
#define TL_TEST_DATA_WRITERS_H

#include <stddef.h>
#include <stdint.h>
#include <zlib.h>

/* The pixel byte of record `rec` (counted over the whole split), colour
 * plane `ch` (0 R, 1 G, 2 B), pixel p (row-major 32 x 32), mixed with `salt`
 * so different files differ. */
unsigned char dw_cifar_pixel(size_t rec, unsigned ch, unsigned p, unsigned salt);

/* Fill one CIFAR record: label bytes, then the planes of dw_cifar_pixel. */
void dw_cifar_record(unsigned char *out, size_t label_bytes, const unsigned char *labels, size_t rec,
                     unsigned salt);

/* Write `n` bytes to `path`, plain (gz 0) or gzip-compressed (gz 1). */
int dw_write(const char *path, const void *data, size_t n, int gz);

/* An IDX header: 0, 0, 0x08, ndim, then ndim big-endian dims. Returns its length. */
size_t dw_idx_header(unsigned char *out, unsigned ndim, const uint32_t *dims);

/* A ustar writer over zlib's gz* API: compressed, or plain ("wbT"). */
typedef struct dw_tar {
    gzFile gz;
    int failed;
} dw_tar;

int dw_tar_open(dw_tar *t, const char *path, int compress);
/* A 512-byte header for `name` (split into prefix/name when longer than
 * 100), `size` bytes, `type` ('0' file, '5' directory, 'x' pax, 'L' GNU
 * long name). `gnu` selects the GNU magic "ustar  " instead of POSIX. */
void dw_tar_header(unsigned char h[512], const char *name, uint64_t size, char type, int gnu);
/* Recompute the checksum of a header after editing it. */
void dw_tar_fix_checksum(unsigned char h[512]);
void dw_tar_raw(dw_tar *t, const void *data, size_t n);
/* Zero bytes up to the next 512 boundary after a member of `size` bytes. */
void dw_tar_pad(dw_tar *t, uint64_t size);
/* Header + data + padding. */
void dw_tar_member(dw_tar *t, const char *name, const void *data, size_t size, char type);
/* The end blocks (when `end_blocks`) and close; 0 when everything was written. */
int dw_tar_close(dw_tar *t, int end_blocks);

#endif
