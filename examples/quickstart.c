/*
 * quickstart.c - the smallest complete libtl program: build the document's
 * CNN, train it on a generated image task (which quadrant of the image is
 * bright), and report test accuracy. No data files needed.
 *
 *   cc quickstart.c $(pkg-config --cflags --libs tl) -o quickstart
 *   ./quickstart [--epochs N] [--threads N] [--seed N]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tl/tl.h>

#define CHECK(call)                                                                        \
    do {                                                                                   \
        tl_status st_ = (call);                                                            \
        if (st_ != TL_OK) {                                                                \
            fprintf(stderr, "quickstart: %s\n  %s\n", tl_status_str(st_), tl_last_error()); \
            exit(1);                                                                       \
        }                                                                                  \
    } while (0)

/* Quadrant q (0..3) of each 32x32x3 image is brighter; the label is q. */
static tl_dataset *make_data(size_t n, unsigned seed)
{
    const size_t ex = 32 * 32 * 3;
    float *x = malloc(n * ex * sizeof *x);
    int32_t *y = malloc(n * sizeof *y);
    if (x == NULL || y == NULL) {
        fprintf(stderr, "quickstart: out of memory\n");
        exit(1);
    }
    srand(seed);
    for (size_t i = 0; i < n; i++) {
        int q = rand() % 4;
        y[i] = q;
        for (size_t r = 0; r < 32; r++)
            for (size_t c = 0; c < 32; c++)
                for (size_t ch = 0; ch < 3; ch++) {
                    int inside = (int)(r / 16) == q / 2 && (int)(c / 16) == q % 2;
                    x[i * ex + (r * 32 + c) * 3 + ch] = 0.6f * (float)rand() / (float)RAND_MAX + (inside ? 0.25f : 0.0f);
                }
    }
    tl_dataset *ds;
    CHECK(tl_dataset_create(&ds, x, y, n, 32, 32, 3, 4, TL_DATA_COPY));
    free(x);
    free(y);
    return ds;
}

static int on_epoch(const tl_progress *p, void *payload)
{
    (void)payload;
    printf("epoch %u/%u  loss %.4f  accuracy %.4f  val_accuracy %.4f  %.0f images/s\n", p->epoch + 1, p->epochs,
           p->loss, p->accuracy, p->val_accuracy, p->samples_per_second);
    return 0;
}

int main(int argc, char **argv)
{
    unsigned epochs = 2, threads = 0, seed = 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--epochs") == 0 && i + 1 < argc)
            epochs = (unsigned)atoi(argv[++i]);
        else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            threads = (unsigned)atoi(argv[++i]);
        else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc)
            seed = (unsigned)atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--epochs N] [--threads N] [--seed N]\n", argv[0]);
            return strcmp(argv[i], "--help") == 0 ? 0 : 2;
        }
    }
    printf("libtl %s, %s\n", tl_version(), tl_backend_info());

    tl_model *model;
    CHECK(tl_model_create(&model, 32, 32, 3, seed));
    CHECK(tl_model_set_threads(model, threads));
    tl_conv2d_options conv = TL_CONV2D_OPTIONS_INIT;
    tl_maxpool2d_options pool = TL_MAXPOOL2D_OPTIONS_INIT;
    tl_dense_options dense = TL_DENSE_OPTIONS_INIT;
    conv.filters = 32;
    conv.activation = TL_ACT_RELU;
    CHECK(tl_model_add_conv2d(NULL, model, &conv));
    CHECK(tl_model_add_maxpool2d(NULL, model, &pool));
    conv.filters = 64;
    CHECK(tl_model_add_conv2d(NULL, model, &conv));
    CHECK(tl_model_add_maxpool2d(NULL, model, &pool));
    CHECK(tl_model_add_flatten(NULL, model, NULL));
    dense.units = 4;
    dense.activation = TL_ACT_SOFTMAX;
    CHECK(tl_model_add_dense(NULL, model, &dense));

    tl_optimizer *adam;
    CHECK(tl_optimizer_create_adam(&adam, NULL));
    CHECK(tl_model_compile(model, adam, TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY));

    size_t need;
    tl_model_summary(NULL, 0, &need, model);
    char *text = malloc(need + 1);
    if (text && tl_model_summary(text, need + 1, NULL, model) == TL_OK)
        fputs(text, stdout);
    free(text);

    tl_dataset *train = make_data(4000, seed), *test = make_data(1000, seed + 1000);
    tl_fit_options fit = TL_FIT_OPTIONS_INIT;
    fit.epochs = epochs;
    fit.batch_size = 64;
    fit.validation = test;
    fit.on_epoch = on_epoch;
    CHECK(tl_model_fit(model, train, &fit));
    double loss, acc;
    CHECK(tl_model_evaluate(&loss, &acc, model, test, 256));
    printf("test loss %.4f, test accuracy %.4f\n", loss, acc);

    tl_dataset_free(train);
    tl_dataset_free(test);
    tl_model_free(model);
    return acc > 0.9 ? 0 : 1;
}
