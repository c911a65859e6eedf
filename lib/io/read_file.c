/* read_file.c - positioned, exact reads of a regular file. */
#include <errno.h>
#include <stdio.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "file.h"

const char *tli_errno_str(int err, char *buf, size_t cap)
{
    /* _POSIX_C_SOURCE without _GNU_SOURCE selects the XSI strerror_r, which
     * fills buf and is thread-safe (strerror is not). */
    if (strerror_r(err, buf, cap) != 0)
        snprintf(buf, cap, "error %d", err);
    return buf;
}

tl_status tli_rfile_open(tli_rfile *f, const char *path, const char *fn)
{
    char why[128];
    f->fd = -1;
    f->path = path;
    f->fn = fn;
    f->size = 0;
    int fd;
    do
        fd = open(path, O_RDONLY | O_CLOEXEC);
    while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        int err = errno;
        return tli_error(err == ENOENT || err == ENOTDIR ? TL_ENOTFOUND : TL_EIO, "%s: %s: cannot open: %s", fn,
                         path, tli_errno_str(err, why, sizeof why));
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int err = errno;
        close(fd);
        return tli_error(TL_EIO, "%s: %s: cannot stat: %s", fn, path, tli_errno_str(err, why, sizeof why));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return tli_error(TL_EIO, "%s: %s: not a regular file%s", fn, path, S_ISDIR(st.st_mode) ? " (a directory)" : "");
    }
    f->fd = fd;
    f->size = (uint64_t)st.st_size;
    return TL_OK;
}

tl_status tli_rfile_read(tli_rfile *f, void *buf, size_t n, uint64_t off)
{
    char why[128];
    uint8_t *p = buf;
    while (n > 0) {
        size_t chunk = n < ((size_t)1 << 30) ? n : ((size_t)1 << 30);
        ssize_t got = pread(f->fd, p, chunk, (off_t)off);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            return tli_error(TL_EIO, "%s: %s: byte %llu: read failed: %s", f->fn, f->path, (unsigned long long)off,
                             tli_errno_str(errno, why, sizeof why));
        }
        if (got == 0)
            return tli_error(TL_ETRUNCATED, "%s: %s: byte %llu: the file ended early (did it shrink while being read?)",
                             f->fn, f->path, (unsigned long long)off);
        p += got;
        n -= (size_t)got;
        off += (uint64_t)got;
    }
    return TL_OK;
}

void tli_rfile_close(tli_rfile *f)
{
    if (f->fd >= 0)
        close(f->fd);
    f->fd = -1;
}
