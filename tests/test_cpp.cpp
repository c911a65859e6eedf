// test_cpp.cpp - the public API from C++: <tl/tl.h> compiles as C++ (the
// extern "C" guards, every _INIT macro as an aggregate initialiser) and its
// functions link and run.
#include <tl/tl.h>

#include <cmath>
#include <cstdio>
#include <cstring>

static int failures = 0;

#define CHECK(cond)                                                                      \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            std::fprintf(stderr, "%s:%d: %s failed (%s)\n", __FILE__, __LINE__, #cond,   \
                         tl_last_error());                                               \
            failures++;                                                                  \
        }                                                                                \
    } while (0)

int main()
{
    CHECK(std::strcmp(tl_version(), TL_VERSION_STRING) == 0);
    CHECK(tl_version_number() == TL_VERSION_NUMBER);
    CHECK(std::strstr(tl_status_str(TL_ESHAPE), "TL_ESHAPE") != nullptr);

    tl_model *m = nullptr;
    CHECK(tl_model_create(&m, 8, 8, 1, 1) == TL_OK);
    CHECK(tl_model_set_threads(m, 1) == TL_OK);
    tl_conv2d_options conv = TL_CONV2D_OPTIONS_INIT;
    conv.filters = 4;
    conv.activation = TL_ACT_RELU;
    tl_layer *l = nullptr;
    CHECK(tl_model_add_conv2d(&l, m, &conv) == TL_OK);
    CHECK(std::strcmp(tl_layer_name(l), "conv2d") == 0);
    tl_maxpool2d_options pool = TL_MAXPOOL2D_OPTIONS_INIT;
    CHECK(tl_model_add_maxpool2d(nullptr, m, &pool) == TL_OK);
    CHECK(tl_model_add_flatten(nullptr, m, nullptr) == TL_OK);
    tl_dense_options dense = TL_DENSE_OPTIONS_INIT;
    dense.units = 3;
    dense.activation = TL_ACT_SOFTMAX;
    CHECK(tl_model_add_dense(nullptr, m, &dense) == TL_OK);
    CHECK(tl_model_param_count(m) == (3 * 3 * 4 + 4) + (3 * 3 * 4 * 3 + 3));

    // An error: status and sentence.
    CHECK(tl_model_add_dense(nullptr, m, nullptr) == TL_EINVAL);
    CHECK(std::strstr(tl_last_error(), "options is NULL") != nullptr);

    tl_adam_options adam = TL_ADAM_OPTIONS_INIT;
    tl_sgd_options sgd = TL_SGD_OPTIONS_INIT;
    CHECK(sgd.learning_rate == 0.01f);
    tl_optimizer *opt = nullptr;
    CHECK(tl_optimizer_create_adam(&opt, &adam) == TL_OK);
    CHECK(tl_model_compile(m, opt, TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY) == TL_OK);

    float x[2 * 64];
    for (int i = 0; i < 2 * 64; i++)
        x[i] = static_cast<float>(i % 7) / 7.0f;
    const int32_t labels[2] = {0, 2};
    double loss = -1.0;
    CHECK(tl_model_train_step(&loss, m, x, labels, nullptr, 2) == TL_OK);
    CHECK(std::isfinite(loss) && loss > 0.0);
    float y[2 * 3];
    CHECK(tl_model_predict(y, 6, m, x, 2, 0) == TL_OK);
    CHECK(std::fabs(y[0] + y[1] + y[2] - 1.0f) < 1e-5f);

    tl_dataset *ds = nullptr;
    CHECK(tl_dataset_create(&ds, x, labels, 2, 8, 8, 1, 3, TL_DATA_BORROW) == TL_OK);
    tl_fit_options fit = TL_FIT_OPTIONS_INIT;
    fit.batch_size = 2;
    CHECK(tl_model_fit(m, ds, &fit) == TL_OK);
    tl_dataset_free(ds);
    tl_model_free(m);

    if (failures == 0)
        std::puts("C++: ok");
    return failures == 0 ? 0 : 1;
}
