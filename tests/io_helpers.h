/* io_helpers.h - what the model-file suites (test_io, test_safetensors)
 * share: a scratch directory, whole-file reads and writes, temporary-file
 * detection, and parameter comparisons through the public API. */
#ifndef TL_TEST_IO_HELPERS_H
#define TL_TEST_IO_HELPERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <tl/tl.h>

/* A fresh directory under $TMPDIR (or /tmp); th_dir_remove() deletes it and
 * everything in it (one level of subdirectories). */
char *th_dir_create(void);
void th_dir_remove(char *dir);

/* dir/name into a buffer the caller frees. */
char *th_join(const char *dir, const char *name);

/* The whole file (caller frees), or NULL when it cannot be read. */
uint8_t *th_file_read(const char *path, size_t *len);
void th_file_write(const char *path, const void *data, size_t len);
bool th_file_equals(const char *path, const uint8_t *data, size_t len);

/* Number of entries of `dir` whose name contains ".tmp-" (leftover
 * temporary files of an atomic save). */
size_t th_dir_count_tmp(const char *dir);

/* Same layers, names and parameters, bit for bit. */
bool th_same_params(const tl_model *a, const tl_model *b);

/* Predictions of n examples (caller frees). */
float *th_predict(tl_model *m, const float *x, size_t n, size_t *count);

/* Run argv[0] with argv (a peer: python3 with torch, ...) and wait: its
 * exit status, or -1 when it could not run or was killed. Its output goes
 * to the test's. */
int th_spawn(char *const argv[]);

/* `want` little-endian float32 values from the file dir/name (asserts the
 * size; caller frees). */
float *th_read_f32(const char *dir, const char *name, size_t want);

#endif
