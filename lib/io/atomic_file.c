/*
 * atomic_file.c - write a file so that a crash, a full disk or any error
 * mid-way never destroys the previous file at that path: the bytes go to a
 * temporary file in the same directory (rename is only atomic within one
 * file system), which is flushed and then renamed over the target; the
 * directory is flushed after the rename so the new name survives a crash.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "file.h"

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Six characters that differ between processes, threads and calls; O_EXCL
 * settles any collision, so they need not be secret, only varied. */
static void tmp_suffix(char out[7], const void *salt, unsigned attempt)
{
    static atomic_uint_fast64_t counter;
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t x = mix64((uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^ ((uint64_t)getpid() << 16) ^
                       (uint64_t)(uintptr_t)salt ^ atomic_fetch_add(&counter, 1) * 0x9e3779b97f4a7c15ULL ^ attempt);
    for (int i = 0; i < 6; i++) {
        out[i] = alphabet[x % 62];
        x /= 62;
    }
    out[6] = '\0';
}

tl_status tli_afile_open(tli_afile *f, const char *path, const char *fn)
{
    char why[128];
    f->fd = -1;
    f->path = path;
    f->fn = fn;
    f->written = 0;
    size_t len = strlen(path), cap;
    if (len == 0)
        return tli_error(TL_EINVAL, "%s: the path is empty", fn);
    if (!tli_add_ok(len, sizeof ".tmp-XXXXXX", &cap))
        return tli_error(TL_ETOOBIG, "%s: the path is too long", fn);
    f->tmp = tli_malloc(cap);
    if (f->tmp == NULL)
        return tli_error(TL_ENOMEM, "%s: %s: out of memory", fn, path);
    for (unsigned attempt = 0; attempt < 100; attempt++) {
        char suffix[7];
        tmp_suffix(suffix, f, attempt);
        snprintf(f->tmp, cap, "%s.tmp-%s", path, suffix);
        /* 0666 less the umask: the permissions fopen() would give. */
        f->fd = open(f->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (f->fd >= 0)
            return TL_OK;
        if (errno != EEXIST && errno != EINTR)
            break;
    }
    int err = errno;
    tli_free(f->tmp);
    f->tmp = NULL;
    return tli_error(TL_EIO, "%s: %s: cannot create a temporary file beside it: %s", fn, path,
                     tli_errno_str(err, why, sizeof why));
}

static tl_status write_at(tli_afile *f, const void *buf, size_t n, uint64_t off)
{
    char why[128];
    const uint8_t *p = buf;
    while (n > 0) {
        size_t chunk = n < ((size_t)1 << 30) ? n : ((size_t)1 << 30);
        ssize_t put = pwrite(f->fd, p, chunk, (off_t)off);
        if (put < 0) {
            if (errno == EINTR)
                continue;
            return tli_error(TL_EIO, "%s: %s: writing byte %llu failed: %s; the previous file is unchanged", f->fn,
                             f->path, (unsigned long long)off, tli_errno_str(errno, why, sizeof why));
        }
        p += put;
        n -= (size_t)put;
        off += (uint64_t)put;
    }
    return TL_OK;
}

tl_status tli_afile_write(tli_afile *f, const void *buf, size_t n)
{
    tl_status st = write_at(f, buf, n, f->written);
    if (st == TL_OK)
        f->written += n;
    return st;
}

tl_status tli_afile_pwrite(tli_afile *f, const void *buf, size_t n, uint64_t off)
{
    return write_at(f, buf, n, off);
}

void tli_afile_abort(tli_afile *f)
{
    if (f->fd >= 0)
        close(f->fd);
    f->fd = -1;
    if (f->tmp) {
        unlink(f->tmp);
        tli_free(f->tmp);
    }
    f->tmp = NULL;
}

/* Flush the directory holding `path`, so the rename itself is durable. */
static int sync_dir(const char *path, char *tmp_buf)
{
    const char *slash = strrchr(path, '/');
    const char *dir = ".";
    if (slash) {
        size_t n = slash == path ? 1 : (size_t)(slash - path);
        memcpy(tmp_buf, path, n);
        tmp_buf[n] = '\0';
        dir = tmp_buf;
    }
    int fd = open(dir, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno;
    int err = 0;
    /* Some file systems cannot sync a directory (EINVAL): nothing to do. */
    if (fsync(fd) != 0 && errno != EINVAL && errno != ENOTSUP)
        err = errno;
    close(fd);
    return err;
}

tl_status tli_afile_commit(tli_afile *f)
{
    char why[128];
    if (fsync(f->fd) != 0) {
        int err = errno;
        tli_afile_abort(f);
        return tli_error(TL_EIO, "%s: %s: flushing the new file failed: %s; the previous file is unchanged", f->fn,
                         f->path, tli_errno_str(err, why, sizeof why));
    }
    int rc = close(f->fd);
    f->fd = -1;
    if (rc != 0) {
        int err = errno;
        tli_afile_abort(f);
        return tli_error(TL_EIO, "%s: %s: closing the new file failed: %s; the previous file is unchanged", f->fn,
                         f->path, tli_errno_str(err, why, sizeof why));
    }
    if (rename(f->tmp, f->path) != 0) {
        int err = errno;
        tli_afile_abort(f);
        return tli_error(TL_EIO, "%s: %s: cannot replace it: %s; the previous file is unchanged", f->fn, f->path,
                         tli_errno_str(err, why, sizeof why));
    }
    /* The temporary name is gone; reuse its buffer (as long as the path
     * plus a suffix) for the directory name. */
    int err = sync_dir(f->path, f->tmp);
    tli_free(f->tmp);
    f->tmp = NULL;
    if (err)
        return tli_error(TL_EIO, "%s: %s: the file was written and renamed, but flushing its directory failed: %s",
                         f->fn, f->path, tli_errno_str(err, why, sizeof why));
    return TL_OK;
}
