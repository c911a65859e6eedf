/*
 * transfer_demo.c - the document's transfer workflow on Fashion-MNIST, which
 * installs from Debian (dataset-fashion-mnist), so it runs without network.
 *
 * A source model learns classes 0-4 (T-shirt, trouser, pullover, dress,
 * coat) from all their training images. Then classes 5-9 (sandal, shirt,
 * sneaker, bag, ankle boot), relabelled 0-4, are learned from a few
 * examples per class in four ways - from scratch, by parameter transfer,
 * with the source as a frozen feature extractor, and as a structure clone -
 * and each is tested on every test image of those classes.
 *
 *   transfer_demo [--per-class 10] [--source-epochs 3] [--target-epochs 20] [--json] ...
 *
 * --help lists every flag. With --model FILE the source model is read from
 * a file instead of trained; --out FILE saves the one trained here.
 * --arch resnet20 (or mobilenetv2) uses that zoo network, built for the
 * 28x28x1 images, as the source and the scratch model (see methods.c for
 * what each method does with it); --plot draws every run's curves.
 */
#include <stdio.h>
#include <string.h>

#include "common.h"
#include "methods.h"

enum { MAX_CLASSES = 10 };

/* The demo's own settings, beside the common ones. */
typedef struct demo_settings {
    const char *source_list, *target_list;
    int32_t source[MAX_CLASSES], target[MAX_CLASSES];
    size_t num_source, num_target;
    unsigned source_epochs, per_class;
} demo_settings;

/* Classes `classes` of `ds`, relabelled 0, 1, ... in the order given. */
static tl_dataset *select_classes(const tl_dataset *ds, const int32_t *classes, size_t n)
{
    tl_dataset *out;
    CHECK(tl_dataset_filter_classes(&out, ds, classes, n));
    return out;
}

/* The source model: read from --model, or trained on the source classes. */
static tl_model *source_model(const tl_dataset *train, const tl_dataset *test, const demo_settings *s,
                              const ex_options *opt)
{
    if (opt->model != NULL) {
        tl_model *m = ex_load_model(opt->model);
        CHECK(tl_model_set_threads(m, opt->threads));
        ex_say("source model read from %s\n", opt->model);
        return m;
    }
    tl_dataset *src_train = select_classes(train, s->source, s->num_source);
    tl_dataset *src_test = select_classes(test, s->source, s->num_source);
    uint32_t h, w, c;
    CHECK(tl_dataset_shape(&h, &w, &c, train));
    tl_model *m = ex_build_model(opt, h, w, c, (uint32_t)s->num_source);
    ex_compile_adam(m, opt->lr);
    ex_print_summary(m);

    ex_result r;
    ex_fit(&r, m, src_train, s->source_epochs, opt->batch, "source");
    ex_evaluate(&r, m, src_test);
    ex_say("source model: classes %s, %zu training images, %u epochs in %.1f s, test accuracy %.4f\n",
           s->source_list, tl_dataset_count(src_train), s->source_epochs, r.seconds, r.accuracy);
    ex_save_model(m, opt->out);
    tl_dataset_free(src_train);
    tl_dataset_free(src_test);
    return m;
}

/* A few examples of each target class, drawn with the seed. */
static tl_dataset *few_shot(const tl_dataset *train, const demo_settings *s, uint64_t seed)
{
    tl_dataset *all = select_classes(train, s->target, s->num_target), *shuffled, *few;
    CHECK(tl_dataset_shuffled(&shuffled, all, seed));
    CHECK(tl_dataset_take_per_class(&few, shuffled, s->per_class));
    tl_dataset_free(all);
    tl_dataset_free(shuffled);
    return few;
}

static void print_json(const char *method, const ex_result *r, const demo_settings *s, const ex_options *opt)
{
    ex_json j;
    ex_json_begin(&j, "transfer_demo");
    ex_json_str(&j, "method", method);
    ex_json_num(&j, "test_accuracy", r->accuracy);
    ex_json_num(&j, "train_seconds", r->seconds);
    if (strcmp(method, "feature_extractor") == 0)
        ex_json_num(&j, "head_lr", ex_head_lr(opt)); /* "lr" is the other methods' */
    ex_json_result(&j, r, opt);
    ex_json_str(&j, "data", opt->data);
    ex_json_str(&j, "source_classes", s->source_list);
    ex_json_str(&j, "target_classes", s->target_list);
    ex_json_uint(&j, "source_epochs", s->source_epochs);
    ex_json_uint(&j, "target_epochs", opt->epochs);
    ex_json_uint(&j, "per_class", s->per_class);
    ex_json_end(&j);
}

int main(int argc, char **argv)
{
    ex_options opt = {.data = "/usr/share/datasets/fashion-mnist", .epochs = 20, .batch = 32, .lr = 1e-3, .seed = 1};
    demo_settings s = {.source_list = "0,1,2,3,4", .target_list = "5,6,7,8,9", .source_epochs = 3, .per_class = 10};
    const ex_flag flags[] = {
        {"--source-classes", EX_FLAG_STRING, &s.source_list, "LIST", "classes the source model learns"},
        {"--target-classes", EX_FLAG_STRING, &s.target_list, "LIST", "classes of the new task, learned from few examples"},
        {"--source-epochs", EX_FLAG_UNSIGNED, &s.source_epochs, "N", "epochs of the source model"},
        {"--target-epochs", EX_FLAG_UNSIGNED, &opt.epochs, "N", "epochs of each method on the new task (= --epochs)"},
        {"--per-class", EX_FLAG_UNSIGNED, &s.per_class, "N", "training examples per target class"},
        {"--head-lr", EX_FLAG_POSITIVE, &opt.head_lr, "X",
         "Adam's rate for feature_extractor's new head (default: --lr with --arch seed,\n"
         "                         10 x --lr with resnet20 or mobilenetv2: their head sees few pooled features)"},
    };
    const ex_program prog = {
        "transfer_demo",
        "Trains a source model on some Fashion-MNIST classes, then learns other classes from a few\n"
        "examples each in four ways (scratch, param_transfer, feature_extractor, structure_clone) and\n"
        "prints each one's accuracy on every test image of those classes and its training time.",
        "directory with the Fashion-MNIST (or MNIST) *-ubyte[.gz] files",
        "read the source model from this file instead of training it",
        "write the source model trained here to this file",
        flags,
        sizeof flags / sizeof flags[0],
        EX_RECIPE_ARCH,
    };
    ex_parse(&opt, &prog, argc, argv);
    ex_parse_classes(s.source, &s.num_source, MAX_CLASSES, s.source_list, "--source-classes", 10);
    ex_parse_classes(s.target, &s.num_target, MAX_CLASSES, s.target_list, "--target-classes", 10);
    if (s.source_epochs == 0 || s.per_class == 0) {
        fprintf(stderr, "transfer_demo: --source-epochs and --per-class must be at least 1\n");
        return 2;
    }
    ex_say("libtl %s, %s\n", tl_version(), tl_backend_info());

    tl_dataset *train = ex_load_fashion_mnist(opt.data, TL_SPLIT_TRAIN);
    tl_dataset *test = ex_load_fashion_mnist(opt.data, TL_SPLIT_TEST);
    tl_model *source = source_model(train, test, &s, &opt);

    tl_dataset *target_train = few_shot(train, &s, opt.seed);
    tl_dataset *target_test = select_classes(test, s.target, s.num_target);
    ex_task task = {target_train, target_test, (uint32_t)s.num_target};
    ex_say("new task: classes %s, %u training images per class, %zu test images\n", s.target_list, s.per_class,
           tl_dataset_count(target_test));

    const char *names[4] = {"scratch", "param_transfer", "feature_extractor", "structure_clone"};
    ex_result results[4];
    tl_model *models[4];
    models[0] = ex_scratch(&results[0], &task, &opt);
    models[1] = ex_param_transfer(&results[1], &task, source, &opt);
    models[2] = ex_feature_extractor(&results[2], &task, source, &opt);
    models[3] = ex_structure_clone(&results[3], &task, source, &opt);

    ex_say("\n%-18s  %13s  %16s\n", "method", "test accuracy", "training seconds");
    for (int i = 0; i < 4; i++) {
        ex_say("%-18s  %13.4f  %16.2f\n", names[i], results[i].accuracy, results[i].seconds);
        if (opt.json)
            print_json(names[i], &results[i], &s, &opt);
        tl_model_free(models[i]);
    }

    tl_model_free(source);
    tl_dataset_free(target_train);
    tl_dataset_free(target_test);
    tl_dataset_free(train);
    tl_dataset_free(test);
    return 0;
}
