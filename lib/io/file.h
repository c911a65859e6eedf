/*
 * file.h - the two ends of every model file: a reader over a regular file
 * with exact positioned reads, and an atomic writer (temporary file in the
 * same directory, fsync, rename over the target, fsync of the directory).
 * Both put the file name and the system's reason into their messages.
 */
#ifndef TLI_IO_FILE_H
#define TLI_IO_FILE_H

#include "../core.h"

/* The system's text for errno value `err`, into buf. */
const char *tli_errno_str(int err, char *buf, size_t cap);

/* ---- reading --------------------------------------------------------------- */

typedef struct tli_rfile {
    int fd;
    uint64_t size;    /* at open time; readers check every offset against it */
    const char *path; /* borrowed */
    const char *fn;   /* borrowed: the public function, for messages */
} tli_rfile;

/* Open `path` for reading. Errors: TL_ENOTFOUND (no such file),
 * TL_EIO (cannot open, or not a regular file). */
tl_status tli_rfile_open(tli_rfile *f, const char *path, const char *fn);

/* Exactly n bytes at offset `off`. The caller has checked off + n against
 * f->size; a short read means the file shrank meanwhile (TL_ETRUNCATED). */
tl_status tli_rfile_read(tli_rfile *f, void *buf, size_t n, uint64_t off);

void tli_rfile_close(tli_rfile *f);

/* ---- atomic writing ----------------------------------------------------------- */

typedef struct tli_afile {
    int fd;
    char *tmp;        /* "<path>.tmp-XXXXXX", owned */
    const char *path; /* borrowed */
    const char *fn;   /* borrowed */
    uint64_t written; /* bytes appended so far */
} tli_afile;

/* Create the temporary file beside `path`. Errors: TL_EIO (the directory is
 * missing or refuses the file), TL_ENOMEM. On error nothing is left behind. */
tl_status tli_afile_open(tli_afile *f, const char *path, const char *fn);

/* Append n bytes. On error the caller calls tli_afile_abort(). */
tl_status tli_afile_write(tli_afile *f, const void *buf, size_t n);

/* Overwrite n bytes at offset `off` (< written): headers that are only known
 * at the end. */
tl_status tli_afile_pwrite(tli_afile *f, const void *buf, size_t n, uint64_t off);

/* fsync, close, rename over the target, fsync the directory. On error the
 * temporary file is removed and the target is as it was, except when only
 * the last directory fsync fails (the message says so). Either way `f` is
 * released. */
tl_status tli_afile_commit(tli_afile *f);

/* Close and remove the temporary file; `f` is released. Safe after a failed
 * open (does nothing). */
void tli_afile_abort(tli_afile *f);

#endif /* TLI_IO_FILE_H */
