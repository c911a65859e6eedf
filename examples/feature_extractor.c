/*
 * feature_extractor.c - the second transfer API, X_new = T(X_old): the
 * CIFAR-10 model without its head becomes a frozen function T. Its features
 * of the CIFAR-100 training images are computed once
 * (tl_model_extract_features()), a new 100-way head is trained on them, and
 * base and head are joined (tl_model_join()) to test on CIFAR-100 images.
 *
 *   cifar10_train --data cifar-10-binary.tar.gz --out cifar10.tlm
 *   feature_extractor --model cifar10.tlm --data cifar-100-binary.tar.gz --out cifar100-head.tlm
 *
 * The method itself is ex_feature_extractor() in methods.c. --help lists
 * every flag.
 */
#include "common.h"
#include "methods.h"

int main(int argc, char **argv)
{
    ex_options opt = {.data = "cifar-100-binary.tar.gz", .epochs = 10, .batch = 64, .lr = 1e-3, .seed = 1,
                      .model = "cifar10.tlm"};
    const ex_program prog = {
        "feature_extractor",
        "Uses a CIFAR-10 model without its head as a frozen feature extractor and trains only a new\n"
        "100-way head on its features of CIFAR-100.",
        "CIFAR-100: cifar-100-binary.tar.gz, a directory holding it, or the extracted folder",
        "the CIFAR-10 model written by cifar10_train --out",
        "write the joined model (frozen base + trained head) to this file",
        NULL,
        0,
        0,
    };
    ex_parse(&opt, &prog, argc, argv);
    ex_say("libtl %s, %s\n", tl_version(), tl_backend_info());

    tl_model *source = ex_load_model(opt.model); /* first: it fails faster than the data */
    tl_dataset *train = ex_load_cifar100(opt.data, TL_SPLIT_TRAIN);
    tl_dataset *test = ex_load_cifar100(opt.data, TL_SPLIT_TEST);
    ex_task task = {train, test, 100};

    ex_result r;
    tl_model *model = ex_feature_extractor(&r, &task, source, &opt);
    ex_print_summary(model); /* the base layers are listed as not trainable */
    ex_save_model(model, opt.out);
    ex_report("feature_extractor", &r, &opt);

    tl_model_free(model);
    tl_model_free(source);
    tl_dataset_free(train);
    tl_dataset_free(test);
    return 0;
}
