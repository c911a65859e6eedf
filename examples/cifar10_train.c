/*
 * cifar10_train.c - step 1 of the document's workflow: train its CNN on
 * CIFAR-10 with Adam and sparse categorical cross-entropy (10 epochs, batch
 * 64), report the test accuracy, and save the model for the transfer steps.
 *
 *   cifar10_train --data cifar-10-binary.tar.gz --out cifar10.tlm
 *   cifar100_transfer --model cifar10.tlm --data cifar-100-binary.tar.gz
 *
 * The archive comes from https://www.cs.toronto.edu/~kriz/cifar.html
 * (binary version); it is read without unpacking. --data may also name
 * a directory of MNIST-format files (Fashion-MNIST, which Debian packages:
 * /usr/share/datasets/fashion-mnist), to run the recipe without CIFAR.
 * --arch resnet20 or
 * mobilenetv2 trains a zoo backbone instead; --augment, --schedule and
 * --early-stop add the training recipe; --plot draws the curves. --help
 * lists every flag.
 */
#include "common.h"

int main(int argc, char **argv)
{
    ex_options opt = {.data = "cifar-10-binary.tar.gz", .epochs = 10, .batch = 64, .lr = 1e-3, .seed = 1,
                      .out = "cifar10.tlm"};
    const ex_program prog = {
        "cifar10_train",
        "Trains the document's CNN (conv 32, pool, conv 64, pool, dense 10), or with --arch a ResNet-20 or\n"
        "MobileNetV2 from the zoo, on CIFAR-10 and saves it.",
        "CIFAR-10: cifar-10-binary.tar.gz, a directory holding it, or the extracted folder; or a directory of\n"
        "                         Fashion-MNIST's *-ubyte files (/usr/share/datasets/fashion-mnist)",
        "start from this model file instead of fresh weights (e.g. to train more epochs)",
        "write the trained model to this file",
        NULL,
        0,
        EX_RECIPE_ARCH | EX_RECIPE_TRAINING,
    };
    ex_parse(&opt, &prog, argc, argv);
    ex_say("libtl %s, %s\n", tl_version(), tl_backend_info());

    const char *set;
    tl_dataset *train = ex_load_ten_classes(opt.data, TL_SPLIT_TRAIN, &set);
    tl_dataset *test = ex_load_ten_classes(opt.data, TL_SPLIT_TEST, &set);
    ex_say("%s: %zu training and %zu test images\n", set, tl_dataset_count(train), tl_dataset_count(test));
    uint32_t h, w, c;
    CHECK(tl_dataset_shape(&h, &w, &c, train));

    tl_model *model;
    if (opt.model != NULL) {
        /* A saved model comes back compiled, with its optimizer state, so
         * training continues exactly where it stopped. */
        model = ex_load_model(opt.model);
        CHECK(tl_model_set_threads(model, opt.threads));
        if (tl_model_optimizer(model) == NULL)
            ex_compile_adam(model, opt.lr);
    } else {
        model = ex_build_model(&opt, h, w, c, 10);
        ex_compile_adam(model, opt.lr);
    }
    ex_print_summary(model);

    ex_result r;
    ex_fit(&r, model, train, opt.epochs, opt.batch, "cifar10");
    ex_evaluate(&r, model, test);
    ex_save_model(model, opt.out);
    ex_report("train", &r, &opt);

    tl_model_free(model);
    tl_dataset_free(train);
    tl_dataset_free(test);
    return 0;
}
