/*
 * tl/tl.h - the whole libtl API. Include this one header:
 *
 *     #include <tl/tl.h>
 *     cc prog.c $(pkg-config --cflags --libs tl)
 *
 * Each concept has its own header, included here; the conventions shared by
 * all of them (status codes, ownership, threads) are at the top of common.h.
 */
#ifndef TL_TL_H
#define TL_TL_H

#include "common.h"
#include "layer.h"
#include "model.h"
#include "optim.h"
#include "data.h"
#include "train.h"
#include "transfer.h"
#include "io.h"
#include "zoo.h"
#include "onnx.h"

#endif /* TL_TL_H */
