/*
 * files.h - opening files and joining paths for the dataset readers, with
 * the error sentences every reader gives (file name and errno text).
 */
#ifndef TLI_FILES_H
#define TLI_FILES_H

#include <stdio.h>

#include "../core.h"

/* What a path names. */
typedef enum tli_path_kind {
    TLI_PATH_MISSING = 0, /* does not exist (ENOENT, ENOTDIR) */
    TLI_PATH_FILE,        /* a regular file, or anything that is not a directory */
    TLI_PATH_DIR
} tli_path_kind;

/* stat() `path`. Errors other than "missing" (EACCES on a parent, ELOOP,
 * ...) are TL_EIO with the errno text, so a caller never mistakes an
 * unreadable file for an absent one. */
tl_status tli_path_kind_of(tli_path_kind *out, const char *path);

/* fopen(path, "rb") and refuse directories. TL_ENOTFOUND when it does not
 * exist, TL_EIO otherwise; the message starts with the path. */
tl_status tli_file_open(FILE **out, const char *path);

/* errno text into buf (strerror_r, so threads do not share a buffer). */
const char *tli_errno_text(int err, char *buf, size_t cap);

/* "dir/name" in memory from tli_malloc, or NULL when out of memory (the
 * caller reports TL_ENOMEM). */
char *tli_path_join(const char *dir, const char *name);

#endif /* TLI_FILES_H */
