/*
 * summary.h - the Keras-style layer table, shared by the model's summary
 * (summary.c) and a checkpoint's (io/checkpoint_info.c, over the shell
 * model its parser built): one renderer for both.
 */
#ifndef TLI_SUMMARY_H
#define TLI_SUMMARY_H

#include "model.h"

/* Text goes to `write` in pieces until it asks to stop. */
typedef struct tli_sink {
    tl_write_fn write;
    void *payload;
    bool stopped;
} tli_sink;

void tli_emit(tli_sink *s, const char *fmt, ...) TLI_PRINTF(2, 3);

/* The table of m's layers and the parameter totals, between a title line
 * the caller wrote and the closing rule (tli_summary_end) it writes after
 * any lines of its own. A graph model gets a "Connected to" column. */
void tli_summary_table(const tl_model *m, tli_sink *s);
void tli_summary_end(tli_sink *s);

#endif /* TLI_SUMMARY_H */
