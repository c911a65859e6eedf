#include "io_helpers.h"
#include "helpers.h"

#include <dirent.h>
#include <errno.h>
#include <spawn.h>
#include <sys/wait.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

char *th_dir_create(void)
{
    const char *base = getenv("TMPDIR");
    char *tmpl = th_join(base && *base ? base : "/tmp", "tl-io-XXXXXX");
    if (mkdtemp(tmpl) == NULL) {
        perror("mkdtemp");
        abort();
    }
    return tmpl;
}

static void remove_entries(const char *dir, int depth)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char *p = th_join(dir, e->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode) && depth > 0) {
            remove_entries(p, depth - 1);
            rmdir(p);
        } else {
            unlink(p);
        }
        free(p);
    }
    closedir(d);
}

void th_dir_remove(char *dir)
{
    remove_entries(dir, 1);
    rmdir(dir);
    free(dir);
}

char *th_join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

uint8_t *th_file_read(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *d = malloc(n > 0 ? (size_t)n : 1);
    size_t got = fread(d, 1, (size_t)n, f);
    fclose(f);
    *len = got;
    return d;
}

void th_file_write(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL || (len && fwrite(data, 1, len, f) != len)) {
        perror(path);
        abort();
    }
    fclose(f);
}

bool th_file_equals(const char *path, const uint8_t *data, size_t len)
{
    size_t n;
    uint8_t *d = th_file_read(path, &n);
    bool same = d != NULL && n == len && memcmp(d, data, len) == 0;
    free(d);
    return same;
}

size_t th_dir_count_tmp(const char *dir)
{
    DIR *d = opendir(dir);
    size_t n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL)
        n += strstr(e->d_name, ".tmp-") != NULL;
    if (d)
        closedir(d);
    return n;
}

bool th_same_params(const tl_model *a, const tl_model *b)
{
    if (tl_model_num_layers(a) != tl_model_num_layers(b))
        return false;
    for (size_t i = 0; i < tl_model_num_layers(a); i++) {
        tl_layer *la, *lb;
        tl_model_layer(&la, a, i);
        tl_model_layer(&lb, b, i);
        if (strcmp(tl_layer_name(la), tl_layer_name(lb)) != 0)
            return false;
    }
    size_t na, nb;
    float *va = th_all_params(a, &na), *vb = th_all_params(b, &nb);
    bool same = va != NULL && vb != NULL && na == nb && memcmp(va, vb, na * sizeof *va) == 0;
    free(va);
    free(vb);
    return same;
}

float *th_predict(tl_model *m, const float *x, size_t n, size_t *count)
{
    tl_shape s;
    tl_model_output_shape(&s, m);
    size_t k = tl_shape_count(&s);
    float *y = calloc(n * k, sizeof *y);
    if (tl_model_predict(y, n * k, m, x, n, 0) != TL_OK) {
        free(y);
        return NULL;
    }
    *count = n * k;
    return y;
}

extern char **environ;

int th_spawn(char *const argv[])
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid;
    if (posix_spawn(&pid, argv[0], NULL, NULL, argv, environ) != 0)
        return -1;
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

float *th_read_f32(const char *dir, const char *name, size_t want)
{
    char *path = th_join(dir, name);
    size_t len = 0;
    uint8_t *b = th_file_read(path, &len);
    ck_assert_msg(b != NULL && len == want * 4, "%s: %zu bytes, expected %zu", path, len, want * 4);
    free(path);
    float *v = malloc(want * sizeof *v);
    for (size_t i = 0; i < want; i++) {
        uint32_t u = (uint32_t)b[4 * i] | (uint32_t)b[4 * i + 1] << 8 | (uint32_t)b[4 * i + 2] << 16 |
                     (uint32_t)b[4 * i + 3] << 24;
        memcpy(&v[i], &u, 4);
    }
    free(b);
    return v;
}
