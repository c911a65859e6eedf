/*
 * methods.c - scratch, parameter transfer, frozen feature extractor and
 * structure clone, each as the few libtl calls it takes. See methods.h.
 */
#include "methods.h"

/* Compile with Adam, train, and evaluate on the task's test set. */
static void train_and_test(ex_result *r, tl_model *m, const ex_task *task, const ex_options *opt, const char *label)
{
    ex_compile_adam(m, opt->lr);
    ex_fit(r, m, task->train, opt->epochs, opt->batch, label);
    ex_evaluate(r, m, task->test);
}

tl_model *ex_scratch(ex_result *r, const ex_task *task, const ex_options *opt)
{
    uint32_t h, w, c;
    CHECK(tl_dataset_shape(&h, &w, &c, task->train));
    tl_model *m = ex_build_model(opt, h, w, c, task->classes);
    train_and_test(r, m, task, opt, "scratch");
    return m;
}

tl_model *ex_param_transfer(ex_result *r, const ex_task *task, const tl_model *source, const ex_options *opt)
{
    uint32_t h, w, c;
    CHECK(tl_dataset_shape(&h, &w, &c, task->train));
    tl_model *m = ex_build_model(opt, h, w, c, task->classes);

    /* The head stays fresh, since it answers a different question. */
    tl_transfer_options how = TL_TRANSFER_OPTIONS_INIT; /* layer i -> layer i, every shape must match */
    size_t convs[16], n = 0;
    if (ex_arch_is_seed(opt)) {
        /* The document copies layers[0] and layers[2], the two conv layers:
         * select the source's conv layers by kind. */
        for (size_t i = 0; i < tl_model_num_layers(source) && n < 16; i++) {
            tl_layer *layer;
            CHECK(tl_model_layer(&layer, source, i));
            if (tl_layer_get_kind(layer) == TL_LAYER_CONV2D)
                convs[n++] = i;
        }
        how.layers = convs;
        how.num_layers = n;
    } else {
        /* A zoo network: every layer but the head (its last layer, "fc" or
         * "classifier.1"), convolutions and batch normalization (with its
         * running statistics) alike, matched by name. */
        how.match = TL_MATCH_NAME;
        how.first = 0;
        how.count = tl_model_num_layers(source) - 1;
    }
    tl_transfer_report *report = NULL;
    tl_status st = tl_model_transfer_params(&report, m, source, &how);
    /* The report says, layer by layer, what was copied, or why not. */
    if (report != NULL)
        tl_transfer_report_write(report, ex_write_text, NULL);
    tl_transfer_report_free(report);
    ex_check(st, "tl_model_transfer_params(&report, m, source, &how)", __FILE__, __LINE__);

    /* Fine-tune every layer, the copied ones included. */
    train_and_test(r, m, task, opt, "param_transfer");
    return m;
}

tl_model *ex_feature_extractor(ex_result *r, const ex_task *task, const tl_model *source, const ex_options *opt)
{
    double t0 = ex_now();
    /* T: copies of every source layer but the old head, all frozen (a zoo
     * network is cut at its global average pooling, "avgpool"). */
    tl_model *base;
    tl_layer *avgpool;
    if (!ex_arch_is_seed(opt) && tl_model_layer_by_name(&avgpool, source, "avgpool") == TL_OK)
        CHECK(tl_model_extractor_create_at(&base, source, "avgpool"));
    else
        CHECK(tl_model_extractor_create(&base, source, tl_model_num_layers(source) - 1));
    CHECK(tl_model_set_threads(base, opt->threads));

    /* X_new = T(X_old), once: the base never changes, so the head can be
     * trained on these features for every epoch without running the base
     * again. */
    tl_dataset *features;
    CHECK(tl_model_extract_features(&features, base, task->train, 256));

    /* The new head takes the base's output as its input. */
    tl_model *head;
    CHECK(tl_model_head_create(&head, base, opt->seed));
    CHECK(tl_model_set_threads(head, opt->threads));
    tl_dense_options dense = TL_DENSE_OPTIONS_INIT;
    dense.units = task->classes;
    dense.activation = TL_ACT_SOFTMAX;
    CHECK(tl_model_add_flatten(NULL, head, NULL)); /* features come as (1, 1, n) */
    CHECK(tl_model_add_dense(NULL, head, &dense));
    /* Its own rate (--head-lr; ex_head_lr() says why a zoo network's
     * small head needs a larger one). */
    ex_compile_adam(head, ex_head_lr(opt));
    ex_fit(r, head, features, opt->epochs, opt->batch, "feature_extractor");
    r->seconds = ex_now() - t0; /* the features are part of the training cost */
    r->images_per_second = (double)opt->epochs * (double)tl_dataset_count(task->train) / r->seconds;
    tl_dataset_free(features);

    /* Base + head as one model, to predict on images (evaluate needs no
     * optimizer); the base layers stay frozen. */
    tl_model *full;
    CHECK(tl_model_join(&full, base, head));
    CHECK(tl_model_set_threads(full, opt->threads));
    ex_evaluate(r, full, task->test);
    tl_model_free(base);
    tl_model_free(head);
    return full;
}

tl_model *ex_structure_clone(ex_result *r, const ex_task *task, const tl_model *source, const ex_options *opt)
{
    /* The source's architecture, fresh weights from the seed, and the last
     * dense layer resized to the new number of classes. No weights are
     * copied: this reuses the design, not the knowledge. */
    tl_clone_options how = TL_CLONE_OPTIONS_INIT;
    how.seed = opt->seed;
    how.head_units = task->classes;
    tl_model *m;
    CHECK(tl_model_clone_structure(&m, source, &how));
    CHECK(tl_model_set_threads(m, opt->threads));
    train_and_test(r, m, task, opt, "structure_clone");
    return m;
}
