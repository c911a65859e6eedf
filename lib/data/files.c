/* files.c - opening dataset files with errors that name the file and errno. */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "files.h"

const char *tli_errno_text(int err, char *buf, size_t cap)
{
    /* _POSIX_C_SOURCE without _GNU_SOURCE selects the XSI strerror_r. */
    if (strerror_r(err, buf, cap) != 0)
        snprintf(buf, cap, "errno %d", err);
    return buf;
}

static bool is_missing(int err)
{
    return err == ENOENT || err == ENOTDIR;
}

tl_status tli_path_kind_of(tli_path_kind *out, const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        int err = errno;
        if (is_missing(err)) {
            *out = TLI_PATH_MISSING;
            return TL_OK;
        }
        char eb[128];
        return tli_error(TL_EIO, "%s: cannot stat: %s", path, tli_errno_text(err, eb, sizeof eb));
    }
    *out = S_ISDIR(st.st_mode) ? TLI_PATH_DIR : TLI_PATH_FILE;
    return TL_OK;
}

tl_status tli_file_open(FILE **out, const char *path)
{
    char eb[128];
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        int err = errno;
        return tli_error(is_missing(err) ? TL_ENOTFOUND : TL_EIO, "%s: cannot open: %s", path,
                         tli_errno_text(err, eb, sizeof eb));
    }
    /* glibc opens a directory for reading and fails at the first read;
     * saying so at once gives a clearer sentence. */
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        fclose(f);
        return tli_error(TL_EIO, "%s: cannot read: %s", path, tli_errno_text(EISDIR, eb, sizeof eb));
    }
    *out = f;
    return TL_OK;
}

char *tli_path_join(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name), len;
    bool slash = a > 0 && dir[a - 1] != '/';
    if (!tli_add_ok(a, b, &len) || !tli_add_ok(len, 2, &len))
        return NULL;
    char *p = tli_malloc(len);
    if (p == NULL)
        return NULL;
    memcpy(p, dir, a);
    if (slash)
        p[a++] = '/';
    memcpy(p + a, name, b + 1);
    return p;
}
