/*
 * tl/common.h - export macro, status codes, last-error text, version.
 *
 * Every libtl header includes this one. Nothing here allocates.
 *
 * Conventions that hold for the whole API (stated once here, repeated where
 * a function departs from them):
 *  - Every fallible function returns a tl_status; TL_OK (0) is success and
 *    every error is negative. Codes may be added in later versions but are
 *    never renumbered.
 *  - Results are written through pointers that come first and are named
 *    `out`. On error, `*out` is left unchanged unless the function says
 *    otherwise (constructors set it to NULL).
 *  - After an error, tl_last_error() returns a sentence that names what was
 *    wrong (the argument, the layer, the file and byte offset, both shapes).
 *  - Objects from *_create / *_load / *_clone belong to the caller, who frees
 *    them with the matching *_free; *_free(NULL) does nothing.
 *  - The library never prints, exits or aborts.
 *  - Thread safety: distinct objects may be used from different threads at
 *    once; one object must not be used from two threads at the same time
 *    unless its function says so. Read-only getters may run concurrently.
 */
#ifndef TL_COMMON_H
#define TL_COMMON_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32) && defined(TL_BUILDING_LIBRARY)
#define TL_API __declspec(dllexport)
#elif defined(_WIN32) && !defined(TL_STATIC)
#define TL_API __declspec(dllimport)
#elif defined(__GNUC__) || defined(__clang__)
#define TL_API __attribute__((visibility("default")))
#else
#define TL_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/** Version of the headers; compare with tl_version_number() at run time. */
#define TL_VERSION_MAJOR 1
#define TL_VERSION_MINOR 1
#define TL_VERSION_PATCH 0
#define TL_VERSION_STRING "1.1.0"
/** MAJOR*1000000 + MINOR*1000 + PATCH, as SQLite does. */
#define TL_VERSION_NUMBER (TL_VERSION_MAJOR * 1000000 + TL_VERSION_MINOR * 1000 + TL_VERSION_PATCH)

/** Status of a call. 0 is success, every error is negative. */
typedef enum tl_status {
    TL_OK = 0,
    TL_EINVAL = -1,      /**< an argument is invalid (NULL handle, zero size, bad enum) */
    TL_ENOMEM = -2,      /**< an allocation failed; nothing was changed */
    TL_ESHAPE = -3,      /**< shapes do not fit (layer after layer, data vs model, transfer) */
    TL_ESTATE = -4,      /**< the object is not in a state that allows the call (e.g. fit before compile) */
    TL_ENOTFOUND = -5,   /**< a named layer, file or archive member does not exist */
    TL_EIO = -6,         /**< reading or writing a file failed (errno text in the message) */
    TL_EFORMAT = -7,     /**< the bytes do not follow the format (wrong magic, bad field) */
    TL_ETRUNCATED = -8,  /**< the input ended before the format said it would */
    TL_ECHECKSUM = -9,   /**< a CRC or checksum does not match the contents */
    TL_EVERSION = -10,   /**< a file or options-struct version this library cannot read */
    TL_ERANGE = -11,     /**< a value is outside its allowed range (label, index) */
    TL_ENUMERIC = -12,   /**< a NaN or infinity appeared in a loss or gradient */
    TL_ECANCELED = -13,  /**< a callback asked to stop */
    TL_ETOOBIG = -14,    /**< a size would overflow or exceeds a documented limit */
    TL_EUNSUPPORTED = -15, /**< the input is valid but uses something libtl cannot represent
                                (e.g. an ONNX operator or attribute value it has no layer for) */
    TL_EPEER = -16       /**< another process of a distributed run failed; the message says
                              which one and why (tl/mpi.h) */
} tl_status;

/**
 * A constant English name for a status ("TL_ESHAPE: shapes do not match").
 * Never NULL; unknown codes give "unknown status". Thread-safe.
 */
TL_API const char *tl_status_str(tl_status status);

/**
 * The sentence describing the last error raised on the calling thread, e.g.
 * "tl_model_add_dense: layer 'dense' (index 4) cannot follow 'conv2d_1' with
 * output shape (13, 13, 64); add a flatten layer first".
 * Never NULL: "" when no error was raised since the thread started or since
 * tl_clear_error(). The string belongs to libtl and stays valid until the next
 * libtl call on this thread. Thread-safe (each thread has its own).
 */
TL_API const char *tl_last_error(void);

/** Forget the calling thread's last error. Thread-safe. */
TL_API void tl_clear_error(void);

/**
 * Set the calling thread's last error to `status`'s `message` (since 1.1),
 * for code built on libtl that reports through tl_last_error() - a
 * transport behind tl_fit_options.exchange (tl/train.h) or a library such
 * as libtl-mpi (tl/mpi.h). The text is copied (cut to libtl's message
 * length, 1023 bytes); NULL means "". Returns `status`, so a hook can
 * `return tl_set_last_error(TL_EPEER, text);`. Thread-safe.
 */
TL_API tl_status tl_set_last_error(tl_status status, const char *message);

/** Version of the library that is running, e.g. "1.0.0". Thread-safe. */
TL_API const char *tl_version(void);

/** TL_VERSION_NUMBER of the library that is running. Thread-safe. */
TL_API int tl_version_number(void);

/**
 * One line describing the compute backend, e.g.
 * "BLIS 0.9.0, kernels skx (chosen by libtl from CPU features)".
 * Calling it initialises BLIS (see tl_model_set_threads() for the kernel
 * choice). The string is owned by libtl and constant. Thread-safe.
 */
TL_API const char *tl_backend_info(void);

/**
 * A read-only text sink for reports (summaries). `text` is not
 * NUL-terminated; `len` bytes are valid during the call only. Return 0 to go
 * on, non-zero to stop (the caller then gets TL_ECANCELED).
 */
typedef int (*tl_write_fn)(const char *text, size_t len, void *payload);

#ifdef __cplusplus
}
#endif

#endif /* TL_COMMON_H */
