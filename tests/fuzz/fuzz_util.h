/* fuzz_util.h - what the libFuzzer harnesses share: the readers take file
 * paths, so each input is written to a file in a private directory first.
 * Test code, not libtl. */
#ifndef TL_FUZZ_UTIL_H
#define TL_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* The harness's private directory (created on first use, removed at exit;
 * under /dev/shm when it exists, so the file system is not the bottleneck). */
const char *fz_dir(void);

/* "<fz_dir>/<name>" into the caller's buf; returns buf. */
const char *fz_path(char *buf, size_t cap, const char *name);

/* Write `size` bytes to <fz_dir>/<name>, creating subdirectories named in
 * `name`; returns the path (in the caller's `buf`). Aborts
 * on I/O errors: a harness that cannot write its input tests nothing. */
const char *fz_write(char *buf, size_t cap, const char *name, const uint8_t *data, size_t size);

#include <tl/tl.h>

/* The model the io harnesses load into and the seed writer saves: conv2d(2
 * filters, 3x3, relu) on 6x6x1 -> maxpool -> flatten -> dense(3, softmax),
 * one thread; compiled with Adam after one training step when `trained`
 * (so it has optimizer state), with SGD momentum when `trained` is 2.
 * NULL on failure. */
tl_model *fz_small_model(uint64_t seed, int trained);

/* A graph with every layer kind on the same 6x6x1 input: conv2d(2, 3x3,
 * same, relu) "stem" -> conv2d(2, 3x3, same); add(that, stem) ->
 * avgpool2d(2x2, same, count_include_pad); maxpool2d(stem); concatenate(the
 * two pools) -> global_avgpool2d -> dense(3, softmax). One thread;
 * compiled with Adam after one training step when `trained`. NULL on
 * failure. */
tl_model *fz_graph_model(uint64_t seed, int trained);

/* All parameter values of a model, concatenated, into a malloc'd array. */
float *fz_params(const tl_model *m, size_t *count);

#endif
