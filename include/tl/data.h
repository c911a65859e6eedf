/*
 * tl/data.h - datasets: images (float32 NHWC) with int32 labels.
 *
 * A dataset holds n examples of h x w x c floats, one int32 label per
 * example in [0, num_classes), and optionally n x k float targets (for
 * categorical cross-entropy with soft labels, or mean squared error).
 *
 * Thread safety: a dataset is never modified by training or evaluation, so
 * one dataset may be read by several models in several threads at once.
 * Calls that modify a dataset need exclusive access.
 *
 * Besides datasets built from memory, this header has:
 *  - readers for the files users download: CIFAR-10 and CIFAR-100 (binary
 *    version, from the extracted files or straight from the .tar.gz) and
 *    IDX (MNIST, Fashion-MNIST; gzip or plain). Pixels become float32 NHWC
 *    in [0, 1] (byte / 255, as Keras' x / 255), labels int32. Readers
 *    stream: the compressed and decompressed files are never held in memory
 *    whole. Every input is treated as hostile: sizes are checked before use,
 *    and an error names the file and the byte offset, returns no dataset
 *    (*out NULL) and leaks nothing;
 *  - operations for transfer experiments (filter and relabel classes, few-
 *    shot subsets, ranges, seeded shuffles and splits, class counts) and
 *    per-channel standardisation. Each returns a NEW dataset that owns a
 *    copy of the selected examples, so the source may be freed at once and
 *    the result outlives it; the source is only read.
 */
#ifndef TL_DATA_H
#define TL_DATA_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tl_dataset tl_dataset;

/** How a dataset constructor treats caller memory. */
typedef enum tl_data_mode {
    /** The dataset copies the arrays; the caller may free them at once. */
    TL_DATA_COPY = 0,
    /** The dataset keeps pointers to the caller's arrays, which must stay
     *  valid and unchanged until the dataset is freed. Nothing is copied. */
    TL_DATA_BORROW = 1
} tl_data_mode;

/**
 * Create a dataset from memory: `images` holds n*h*w*c floats (NHWC),
 * `labels` n int32 values in [0, num_classes).
 * Ownership: the caller owns *out (tl_dataset_free()); see tl_data_mode.
 * Errors: TL_EINVAL (NULL pointers, n or a dimension 0, num_classes 0 or
 * mode unknown), TL_ERANGE (a label outside [0, num_classes): the message
 * gives the example's index and label), TL_ETOOBIG (sizes overflow),
 * TL_ENOMEM. On error *out is NULL.
 * Thread-safe: only reads the caller's arrays.
 */
TL_API tl_status tl_dataset_create(tl_dataset **out, const float *images, const int32_t *labels, size_t n,
                                   uint32_t height, uint32_t width, uint32_t channels, uint32_t num_classes,
                                   tl_data_mode mode);

/**
 * Attach float targets (n x k, row-major) to a dataset, replacing any
 * previous ones. Used by TL_LOSS_CATEGORICAL_CROSSENTROPY and
 * TL_LOSS_MEAN_SQUARED_ERROR instead of one-hot labels.
 * Ownership: with TL_DATA_COPY the dataset owns its copy; with
 * TL_DATA_BORROW `targets` must outlive the dataset (see tl_data_mode).
 * Errors: TL_EINVAL (NULL, k 0, mode unknown), TL_ESHAPE (n differs from
 * the dataset's count), TL_ETOOBIG (n x k overflows), TL_ENOMEM. On error
 * the dataset is unchanged.
 * Not thread-safe for `ds`: no other thread may use it during the call.
 */
TL_API tl_status tl_dataset_set_targets(tl_dataset *ds, const float *targets, size_t n, size_t k,
                                        tl_data_mode mode);

/** Free a dataset (and the arrays it copied; borrowed ones stay the
 *  caller's). NULL is a no-op. No other thread may use `ds` meanwhile. */
TL_API void tl_dataset_free(tl_dataset *ds);

/** Number of examples; 0 when NULL. Thread-safe (reads only). */
TL_API size_t tl_dataset_count(const tl_dataset *ds);

/** Shape of one example (h, w, c); each out pointer may be NULL.
 *  Errors: TL_EINVAL (ds NULL). Thread-safe (reads only). */
TL_API tl_status tl_dataset_shape(uint32_t *out_height, uint32_t *out_width, uint32_t *out_channels,
                                  const tl_dataset *ds);

/** Number of classes; 0 when NULL. Thread-safe (reads only). */
TL_API uint32_t tl_dataset_num_classes(const tl_dataset *ds);

/** Read-only view of the images (n*h*w*c floats), labels (n) and targets
 *  (n*k, or NULL when none; k through `out_k`, which may be NULL). Valid
 *  until the dataset is modified or freed; owned by the dataset (or the
 *  caller, when borrowed). NULL when ds is NULL. Thread-safe (reads only). */
TL_API const float *tl_dataset_images(const tl_dataset *ds);
TL_API const int32_t *tl_dataset_labels(const tl_dataset *ds);
TL_API const float *tl_dataset_targets(const tl_dataset *ds, size_t *out_k);

/* ------------------------------------------------------------------------
 * Reading datasets from files. Every error message names the file (and
 * the archive member) and the byte offset: decompressed bytes, plus the
 * compressed offset for gzip errors.
 * ------------------------------------------------------------------------ */

/** Which part of a dataset to load. */
typedef enum tl_split {
    TL_SPLIT_TRAIN = 0, /**< the training examples (CIFAR: 50,000; MNIST: 60,000) */
    TL_SPLIT_TEST = 1   /**< the test examples (CIFAR, MNIST: 10,000) */
} tl_split;

/** Which CIFAR-100 label becomes the dataset's label. */
typedef enum tl_cifar100_label {
    TL_CIFAR100_FINE = 0,  /**< the 100 classes */
    TL_CIFAR100_COARSE = 1 /**< the 20 superclasses */
} tl_cifar100_label;

/**
 * Load CIFAR-10 (binary version): 32 x 32 x 3 images, 10 classes. The train
 * split is data_batch_1.bin .. data_batch_5.bin in that order (50,000 in the
 * real files), the test split test_batch.bin (10,000). Each record is one
 * label byte and 3072 pixel bytes (1024 red, 1024 green, 1024 blue, each
 * plane 32 x 32 row-major), turned into NHWC floats byte / 255.
 * `path` may be:
 *  - a directory holding the .bin files;
 *  - a directory holding the folder cifar-10-batches-bin/ (as extracted);
 *  - a directory holding cifar-10-binary.tar.gz;
 *  - the archive itself (gzip-compressed or plain tar; recognised by its
 *    bytes, not its name), read without extracting it: the members
 *    cifar-10-batches-bin/<file> are decoded as the archive streams by, in
 *    any order (the first member of each name counts).
 * Each file (member) may hold any whole number of records, so smaller
 * files in the same format load too.
 * Memory: the decoded floats (614 MB for the train split) and a small
 * read buffer. From an archive, whose members come in any order, the wanted
 * members' raw bytes (a quarter of the floats) are kept until all are found
 * and each is freed as soon as it is decoded; the peak measured on Linux is
 * the floats plus one member (about 650 MB for the train split).
 * Ownership: the caller owns *out (tl_dataset_free()).
 * Errors (*out is NULL, nothing leaks): TL_EINVAL (out or path NULL,
 * unknown split), TL_ENOTFOUND (no such path; none of the layouts above;
 * a .bin file or archive member missing), TL_EIO (a file exists but cannot
 * be opened or read; errno text), TL_ETRUNCATED (a file's size is not a
 * whole number of records; the archive ends inside a header or member, or
 * a member announces more bytes than the archive can hold), TL_EFORMAT (not
 * a tar archive; a member of the wrong type or of a size that is not a
 * whole number of records; corrupt gzip data), TL_ECHECKSUM (a tar header's
 * checksum), TL_ERANGE (a label > 9), TL_ETOOBIG (more than 2^32-1 records),
 * TL_ENOMEM.
 * Thread-safe: loads share no state and may run at the same time.
 */
TL_API tl_status tl_dataset_load_cifar10(tl_dataset **out, const char *path, tl_split split);

/**
 * Load CIFAR-100 (binary version): train.bin (50,000) or test.bin (10,000),
 * 32 x 32 x 3 images; each record is a coarse label byte (< 20), a fine
 * label byte (< 100) and 3072 pixel bytes as in CIFAR-10. `label` chooses
 * the fine labels (100 classes) or the coarse ones (20 classes); both bytes
 * are checked either way. `path` as for tl_dataset_load_cifar10(), with the
 * folder cifar-100-binary/ and the archive cifar-100-binary.tar.gz. Memory
 * as for CIFAR-10.
 * Ownership: the caller owns *out (tl_dataset_free()).
 * Errors (*out is NULL, nothing leaks): those of tl_dataset_load_cifar10(),
 * with TL_EINVAL also for an unknown `label` and TL_ERANGE for a coarse
 * label > 19 or a fine label > 99.
 * Thread-safe: loads share no state and may run at the same time.
 */
TL_API tl_status tl_dataset_load_cifar100(tl_dataset **out, const char *path, tl_split split,
                                          tl_cifar100_label label);

/**
 * Load an IDX pair (the MNIST format): `images_path` an idx3-ubyte file
 * (n x rows x cols, one channel) or a four-dimensional idx file
 * (n x rows x cols x channels); `labels_path` an idx1-ubyte file of n
 * labels. Each file may be gzip-compressed or plain (recognised by the
 * bytes 1f 8b, not by the name). The big-endian header is checked: two zero
 * bytes, data type 0x08 (unsigned byte), the number of dimensions, no zero
 * dimension, the same count in both files, and no byte after the data (for
 * gzip this also checks the CRC-32 of the stream). Pixels become byte / 255.
 * `num_classes`: the dataset's class count, labels must be below it; 0
 * means the largest label + 1.
 * Memory: the decoded floats and a 64 KiB buffer per file.
 * Ownership: the caller owns *out (tl_dataset_free()).
 * Errors (*out is NULL, nothing leaks): TL_EINVAL (a pointer NULL),
 * TL_ENOTFOUND (a file does not exist), TL_EIO (it cannot be opened or
 * read; errno text), TL_EFORMAT (wrong magic, data type or number of
 * dimensions, a zero dimension, data after the announced end, corrupt
 * gzip data), TL_ETRUNCATED (a file ends before the header says, or
 * announces more than it can hold even at gzip's best ratio), TL_ESHAPE
 * (the two files' counts differ), TL_ETOOBIG (an image of more than 2^31-1
 * values, or sizes beyond size_t), TL_ERANGE (a label >= num_classes),
 * TL_ENOMEM.
 * Thread-safe: loads share no state and may run at the same time.
 */
TL_API tl_status tl_dataset_load_idx(tl_dataset **out, const char *images_path, const char *labels_path,
                                     uint32_t num_classes);

/**
 * Load MNIST or Fashion-MNIST from the directory layout of their downloads
 * (Debian's dataset-fashion-mnist installs it in
 * /usr/share/datasets/fashion-mnist/): train-images-idx3-ubyte and
 * train-labels-idx1-ubyte, or t10k-images-idx3-ubyte and
 * t10k-labels-idx1-ubyte, each with ".gz" or without (".gz" is tried
 * first), read as tl_dataset_load_idx() with 10 classes. The images have
 * the files' shape (28 x 28 x 1 for MNIST and Fashion-MNIST).
 * Ownership: the caller owns *out (tl_dataset_free()).
 * Errors (*out is NULL, nothing leaks): those of tl_dataset_load_idx()
 * (TL_ERANGE for a label > 9), TL_EINVAL also for an unknown split, and
 * TL_ENOTFOUND when `dir` or a file is missing (the message names both
 * names tried).
 * Thread-safe: loads share no state and may run at the same time.
 */
TL_API tl_status tl_dataset_load_mnist_dir(tl_dataset **out, const char *dir, tl_split split);

/* ------------------------------------------------------------------------
 * Operations for transfer experiments. Each reads `ds` only and writes a
 * NEW dataset that owns copies of its rows, so the source may be freed
 * first. A dataset is never empty, so an operation that would select
 * nothing fails. Float targets (tl_dataset_set_targets()) follow their
 * rows, except in tl_dataset_filter_classes().
 * ------------------------------------------------------------------------ */

/**
 * Keep the examples whose label is one of `classes[0..count)` and relabel
 * them by position: an example of class classes[i] gets label i, so the
 * result has `count` classes (e.g. Fashion-MNIST classes {5,6,7,8,9} ->
 * 0..4, or {9,0} -> 9 becomes 0 and 0 becomes 1). Order of examples is
 * kept. Targets are not copied: they describe the old classes.
 * Ownership: the caller owns *out (tl_dataset_free()); `ds` and `classes`
 * stay the caller's.
 * Errors (*out is NULL): TL_EINVAL (a pointer NULL, count 0, a class given
 * twice), TL_ERANGE (a class outside [0, num_classes)), TL_ENOTFOUND (no
 * example has any of the classes), TL_ENOMEM.
 * Thread-safe: only reads `ds`, so other threads may read it meanwhile.
 */
TL_API tl_status tl_dataset_filter_classes(tl_dataset **out, const tl_dataset *ds, const int32_t *classes,
                                           size_t count);

/**
 * Few-shot subsets: the first `per_class` examples of every class, in the
 * dataset's order (shuffle first with tl_dataset_shuffled() for a random
 * draw). The result has exactly per_class x num_classes examples.
 * Ownership: the caller owns *out (tl_dataset_free()).
 * Errors (*out is NULL): TL_EINVAL (a pointer NULL, per_class 0), TL_ERANGE
 * (a class has fewer than per_class examples; the message names the class
 * and its count), TL_ENOMEM.
 * Thread-safe: only reads `ds`, so other threads may read it meanwhile.
 */
TL_API tl_status tl_dataset_take_per_class(tl_dataset **out, const tl_dataset *ds, size_t per_class);

/**
 * Examples [start, start + count) in order.
 * Ownership: the caller owns *out (tl_dataset_free()).
 * Errors (*out is NULL): TL_EINVAL (a pointer NULL, count 0), TL_ERANGE
 * (the range goes past the end), TL_ENOMEM.
 * Thread-safe: only reads `ds`, so other threads may read it meanwhile.
 */
TL_API tl_status tl_dataset_slice(tl_dataset **out, const tl_dataset *ds, size_t start, size_t count);

/**
 * All examples in an order drawn from `seed` (Fisher-Yates with libtl's
 * generator): the same seed gives the same order on every platform.
 * Ownership: the caller owns *out (tl_dataset_free()).
 * Errors (*out is NULL): TL_EINVAL (a pointer NULL), TL_ENOMEM.
 * Thread-safe: only reads `ds`, so other threads may read it meanwhile.
 */
TL_API tl_status tl_dataset_shuffled(tl_dataset **out, const tl_dataset *ds, uint64_t seed);

/** How tl_dataset_split() chooses the validation examples. */
typedef enum tl_holdout {
    /** The last round(fraction x n) examples, without drawing (as Keras'
     *  validation_split); `seed` is unused. */
    TL_HOLDOUT_TAIL = 0,
    /** round(fraction x n) examples drawn with `seed`. */
    TL_HOLDOUT_RANDOM = 1,
    /** round(fraction x n_c) examples of each class c drawn with `seed`, so
     *  both parts keep the class proportions (few-shot sets). */
    TL_HOLDOUT_STRATIFIED = 2
} tl_holdout;

/**
 * Split into a training part and a validation part (for
 * tl_fit_options.validation). Every example goes to exactly one part, and
 * both parts keep the dataset's order and its number of classes. The same
 * seed gives the same split.
 * Ownership: the caller owns *out_train and *out_validation
 * (tl_dataset_free() each).
 * Errors (both outs NULL): TL_EINVAL (a pointer NULL, fraction not strictly
 * between 0 and 1, unknown `how`, or a part would be empty), TL_ENOMEM.
 * Thread-safe: only reads `ds`, so other threads may read it meanwhile.
 */
TL_API tl_status tl_dataset_split(tl_dataset **out_train, tl_dataset **out_validation, const tl_dataset *ds,
                                  double validation_fraction, tl_holdout how, uint64_t seed);

/**
 * Examples per class: out[c] for c in [0, num_classes); `out_len` entries
 * are available and must be >= num_classes (entries beyond are set to 0).
 * Ownership: `out` is the caller's array; nothing is allocated.
 * Errors (out unchanged): TL_EINVAL (a pointer NULL, out_len too small: the
 * message gives the size needed).
 * Thread-safe: only reads `ds`, so other threads may read it meanwhile.
 */
TL_API tl_status tl_dataset_class_counts(size_t *out, size_t out_len, const tl_dataset *ds);

/**
 * Per-channel mean and standard deviation over every pixel of every example
 * (population deviation, i.e. divided by the count; computed in double in
 * two passes). `channels` is the length of both out arrays and must equal
 * the dataset's channel count. Compute them on the training set and apply
 * them to every set with tl_dataset_standardize(), or put them inside the
 * model, where they are saved with it: tl_model_add_normalization() and
 * tl_layer_normalization_adapt() (since 1.1).
 * Ownership: the arrays are the caller's; nothing is allocated.
 * Errors (arrays unchanged): TL_EINVAL (a pointer NULL), TL_ESHAPE
 * (channels differs from the dataset's), TL_ENOMEM.
 * Thread-safe: only reads `ds`, so other threads may read it meanwhile.
 */
TL_API tl_status tl_dataset_channel_stats(float *out_mean, float *out_std, uint32_t channels,
                                          const tl_dataset *ds);

/**
 * A copy of `ds` with every value x of channel k replaced by
 * (x - mean[k]) / std[k] (computed in float). Labels and targets are
 * copied. `channels` is the length of mean and std and must equal the
 * dataset's. A constant channel has std 0: pass 1 for it.
 * Ownership: the caller owns *out (tl_dataset_free()); `ds` is unchanged.
 * Errors (*out is NULL): TL_EINVAL (a pointer NULL), TL_ESHAPE (channel
 * count), TL_ERANGE (a mean not finite, or a std not finite or not > 0),
 * TL_ENOMEM.
 * Thread-safe: only reads `ds`, so other threads may read it meanwhile.
 */
TL_API tl_status tl_dataset_standardize(tl_dataset **out, const tl_dataset *ds, const float *mean,
                                        const float *std, uint32_t channels);

#ifdef __cplusplus
}
#endif

#endif /* TL_DATA_H */
