/*
 * structure_clone.c - the third transfer API, M_new = M_old: the CIFAR-10
 * model's architecture with fresh weights and its head resized to 100
 * classes (tl_model_clone_structure()), trained on CIFAR-100. It reuses the
 * design, not the weights: useful when the code that built a model is not
 * at hand, only its file.
 *
 *   cifar10_train --data cifar-10-binary.tar.gz --out cifar10.tlm
 *   structure_clone --model cifar10.tlm --data cifar-100-binary.tar.gz
 *
 * The method itself is ex_structure_clone() in methods.c. --help lists
 * every flag.
 */
#include "common.h"
#include "methods.h"

int main(int argc, char **argv)
{
    ex_options opt = {.data = "cifar-100-binary.tar.gz", .epochs = 10, .batch = 64, .lr = 1e-3, .seed = 1,
                      .model = "cifar10.tlm"};
    const ex_program prog = {
        "structure_clone",
        "Clones the architecture of a CIFAR-10 model with fresh weights and a 100-way head, and trains\n"
        "the clone on CIFAR-100.",
        "CIFAR-100: cifar-100-binary.tar.gz, a directory holding it, or the extracted folder",
        "the model whose architecture is cloned (e.g. written by cifar10_train --out)",
        "write the trained clone to this file",
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
    tl_model *model = ex_structure_clone(&r, &task, source, &opt);
    ex_print_summary(model);
    ex_save_model(model, opt.out);
    ex_report("structure_clone", &r, &opt);

    tl_model_free(model);
    tl_model_free(source);
    tl_dataset_free(train);
    tl_dataset_free(test);
    return 0;
}
