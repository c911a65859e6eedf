/*
 * options.h - versioned options structs, handled in one place.
 *
 * Every public options struct starts with `unsigned int version` and only
 * ever grows at its end: version v of a struct is its first sizes[v] bytes.
 * A caller compiled against older headers passes a smaller struct, so the
 * library must never read or write more of it than its version has - not
 * `*opts = defaults` or `o = *opts`, which copy the library's (larger)
 * current struct. When a struct gets version 2, its table gains the new size
 * and version 1's entry becomes offsetof(type, first_new_field).
 */
#ifndef TLI_OPTIONS_H
#define TLI_OPTIONS_H

#include <stddef.h>

#include "core.h"

typedef struct tli_options_type {
    const char *name;       /* "tl_fit_options" */
    const char *init_macro; /* "TL_FIT_OPTIONS_INIT" */
    unsigned int current;   /* the newest version this library knows */
    const size_t *sizes;    /* sizes[v] for v in 1..current; sizes[0] unused */
} tli_options_type;

/* Describe an options struct whose only version is 1 (its whole size). The
 * static assertion fires when a header bumps the version, as a reminder to
 * list the new size. */
#define TLI_OPTIONS_TYPE_V1(var, type, prefix)                                                \
    _Static_assert(prefix##_VERSION == 1, "list the sizes of every version of " #type);      \
    static const size_t var##_sizes[] = {0, sizeof(type)};                                   \
    static const tli_options_type var = {#type, #prefix "_INIT", prefix##_VERSION, var##_sizes}

/* Describe an options struct whose version 2 appended fields starting at
 * member `first_v2` to version 1. */
#define TLI_OPTIONS_TYPE_V2(var, type, prefix, first_v2)                                      \
    _Static_assert(prefix##_VERSION == 2, "list the sizes of every version of " #type);      \
    static const size_t var##_sizes[] = {0, offsetof(type, first_v2), sizeof(type)};         \
    static const tli_options_type var = {#type, #prefix "_INIT", prefix##_VERSION, var##_sizes}

/* Describe an options struct whose version 2 appended fields starting at
 * member `first_v2`, and version 3 those starting at `first_v3`. */
#define TLI_OPTIONS_TYPE_V3(var, type, prefix, first_v2, first_v3)                            \
    _Static_assert(prefix##_VERSION == 3, "list the sizes of every version of " #type);      \
    static const size_t var##_sizes[] = {0, offsetof(type, first_v2), offsetof(type, first_v3), sizeof(type)}; \
    static const tli_options_type var = {#type, #prefix "_INIT", prefix##_VERSION, var##_sizes}

/* The _init functions: copy the defaults into the caller's struct, only the
 * bytes of `version`, and set its version field. */
tl_status tli_options_init(void *opts, unsigned int version, const void *defaults, const tli_options_type *t,
                           const char *fn);

/* The consumers: `dst` (a current-size struct) holds the defaults; copy the
 * caller's struct over it, only the bytes its version has. `src` NULL keeps
 * the defaults. */
tl_status tli_options_read(void *dst, const void *src, const tli_options_type *t, const char *fn);

#endif /* TLI_OPTIONS_H */
