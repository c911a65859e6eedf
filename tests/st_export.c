/* st_export.c - writes the seed CNN (32x32x3, 10 classes, seed 1) to a
 * safetensors file and prints what a reader must find in it, for
 * safetensors_check.py (Python's standard library only, no libtl):
 *   tensor <name> <shape a,b,..> <count> <sum %.17g> <min %.9g> <max %.9g>
 *   probe <name> <flat index in the file> <value %.9g>
 * Usage: st_export PATH keras|pytorch */
#include <stdio.h>
#include <string.h>

#include "helpers.h"

static void print_tensor(const char *name, const float *v, size_t n, const tl_shape *file_shape)
{
    double sum = 0;
    float lo = v[0], hi = v[0];
    for (size_t i = 0; i < n; i++) {
        sum += v[i];
        lo = v[i] < lo ? v[i] : lo;
        hi = v[i] > hi ? v[i] : hi;
    }
    printf("tensor %s ", name);
    for (uint32_t d = 0; d < file_shape->rank; d++)
        printf(d ? ",%u" : "%u", file_shape->dims[d]);
    printf(" %zu %.17g %.9g %.9g\n", n, sum, (double)lo, (double)hi);
}

int main(int argc, char **argv)
{
    if (argc != 3 || (strcmp(argv[2], "keras") != 0 && strcmp(argv[2], "pytorch") != 0)) {
        fprintf(stderr, "usage: st_export PATH keras|pytorch\n");
        return 2;
    }
    const int torch = strcmp(argv[2], "pytorch") == 0;
    tl_model *m = th_seed_cnn(32, 32, 3, 10, 1);
    if (m == NULL)
        return 1;
    tl_status st = tl_model_save_safetensors(m, argv[1], torch ? TL_LAYOUT_PYTORCH : TL_LAYOUT_KERAS, NULL);
    if (st != TL_OK) {
        fprintf(stderr, "st_export: %s\n", tl_last_error());
        return 1;
    }
    for (size_t i = 0; i < tl_model_num_layers(m); i++) {
        tl_layer *l;
        tl_model_layer(&l, m, i);
        for (size_t p = 0; p < tl_layer_num_params(l); p++) {
            tl_param_info info;
            tl_layer_param_info(&info, l, p);
            float *v = malloc(info.count * sizeof *v);
            tl_layer_get_weights(v, info.count, l, p);
            char name[96];
            snprintf(name, sizeof name, "%s.%s", tl_layer_name(l), p == 0 && torch ? "weight" : info.name);
            tl_shape fs = info.shape;
            const uint32_t *d = info.shape.dims;
            if (torch && p == 0 && info.shape.rank == 4)
                fs = (tl_shape){4, {d[3], d[2], d[0], d[1]}};
            else if (torch && p == 0 && info.shape.rank == 2)
                fs = (tl_shape){2, {d[1], d[0], 0, 0}};
            print_tensor(name, v, info.count, &fs);
            /* One element whose position depends on the layout. */
            if (p == 0 && info.shape.rank == 4) {
                size_t kh = 1, kw = 2, in = 1, o = 5, KH = d[0], KW = d[1], I = d[2], O = d[3];
                size_t lib = ((kh * KW + kw) * I + in) * O + o;
                size_t file = torch ? ((o * I + in) * KH + kh) * KW + kw : lib;
                printf("probe %s %zu %.9g\n", name, file, (double)v[lib]);
            } else if (p == 0 && info.shape.rank == 2) {
                /* The dense layer follows a flatten of (6, 6, 64): PyTorch's
                 * inputs are in (c, h, w) order. */
                size_t h = 2, w = 3, c = 7, o = 4, O = d[1], IN = d[0];
                size_t lib = ((h * 6 + w) * 64 + c) * O + o;
                size_t file = torch ? o * IN + c * 36 + h * 6 + w : lib;
                printf("probe %s %zu %.9g\n", name, file, (double)v[lib]);
            }
            free(v);
        }
    }
    tl_model_free(m);
    return 0;
}
