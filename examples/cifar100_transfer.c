/*
 * cifar100_transfer.c - step 2 of the document's workflow: build the same
 * CNN with a 100-way head, copy the two conv layers' parameters from the
 * CIFAR-10 model (tl_model_transfer_params()), fine-tune on CIFAR-100 and
 * report the test accuracy, top-1 and top-5 (tl_model_evaluate_metrics(),
 * top-5 being the usual CIFAR-100 figure). With --scratch, the same network
 * is also trained from fresh weights, for comparison. With --arch resnet20
 * (or mobilenetv2) both models are that zoo network, and every layer but
 * the head is copied, by name; the recipe flags (--augment, --schedule,
 * --early-stop) apply to every training run.
 *
 *   cifar10_train --data cifar-10-binary.tar.gz --out cifar10.tlm
 *   cifar100_transfer --model cifar10.tlm --data cifar-100-binary.tar.gz --scratch
 *
 * The transfer itself is ex_param_transfer() in methods.c. --help lists
 * every flag.
 */
#include "common.h"
#include "methods.h"

/* The top-1 and top-5 test accuracies of `model`: one more pass over the
 * test set, with tl_model_evaluate_metrics(). */
static void report_top5(const char *method, tl_model *model, const tl_dataset *test)
{
    tl_evaluate_options eo = TL_EVALUATE_OPTIONS_INIT;
    eo.batch_size = 256;
    eo.top_k = 5;
    eo.confusion_matrix = 0; /* 100 x 100 counts this example does not print */
    tl_metrics *metrics;
    CHECK(tl_model_evaluate_metrics(&metrics, model, test, &eo));
    ex_say("%s: top-1 accuracy %.4f, top-5 accuracy %.4f\n", method, tl_metrics_accuracy(metrics),
           tl_metrics_top_k_accuracy(metrics));
    tl_metrics_free(metrics);
}

int main(int argc, char **argv)
{
    ex_options opt = {.data = "cifar-100-binary.tar.gz", .epochs = 10, .batch = 64, .lr = 1e-3, .seed = 1,
                      .model = "cifar10.tlm"};
    int scratch = 0;
    const ex_flag flags[] = {
        {"--scratch", EX_FLAG_SWITCH, &scratch, NULL, "also train the same network from scratch, for comparison"},
    };
    const ex_program prog = {
        "cifar100_transfer",
        "Copies the conv layers of a CIFAR-10 model into the same CNN with 100 classes and fine-tunes\n"
        "it on CIFAR-100 (parameter transfer). With --arch resnet20 or mobilenetv2 the model file must\n"
        "be of that network (cifar10_train --arch), and every layer but the head is copied, by name.",
        "CIFAR-100: cifar-100-binary.tar.gz, a directory holding it, or the extracted folder",
        "the CIFAR-10 model written by cifar10_train --out",
        "write the fine-tuned model to this file",
        flags,
        sizeof flags / sizeof flags[0],
        EX_RECIPE_ARCH | EX_RECIPE_TRAINING,
    };
    ex_parse(&opt, &prog, argc, argv);
    ex_say("libtl %s, %s\n", tl_version(), tl_backend_info());

    tl_model *source = ex_load_model(opt.model); /* first: it fails faster than the data */
    tl_dataset *train = ex_load_cifar100(opt.data, TL_SPLIT_TRAIN);
    tl_dataset *test = ex_load_cifar100(opt.data, TL_SPLIT_TEST);
    ex_task task = {train, test, 100};
    ex_say("CIFAR-100: %zu training and %zu test images; source model %s\n", tl_dataset_count(train),
           tl_dataset_count(test), opt.model);

    ex_result transfer, fresh;
    tl_model *model = ex_param_transfer(&transfer, &task, source, &opt);
    ex_save_model(model, opt.out);
    ex_report("param_transfer", &transfer, &opt);
    report_top5("param_transfer", model, test);
    if (scratch) {
        tl_model *baseline = ex_scratch(&fresh, &task, &opt);
        ex_report("scratch", &fresh, &opt);
        report_top5("scratch", baseline, test);
        tl_model_free(baseline);
    }

    tl_model_free(model);
    tl_model_free(source);
    tl_dataset_free(train);
    tl_dataset_free(test);
    return 0;
}
