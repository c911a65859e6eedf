/*
 * json.h - a small, strict JSON parser (RFC 8259) for file headers that come
 * from anywhere. Strict: no comments, no trailing commas, no leading zeros,
 * no lone surrogates or invalid UTF-8, no control characters in strings, no
 * "\u0000", no duplicate keys in an object, nothing but whitespace after the
 * value. Bounded: nesting depth, string length and value count are limited
 * by the caller, so a hostile header cannot exhaust the stack or memory.
 * The parse builds a flat array of nodes (index 0 is the root) with decoded
 * strings in one arena.
 */
#ifndef TLI_IO_JSON_H
#define TLI_IO_JSON_H

#include "../core.h"

typedef enum tli_json_type {
    TLI_JSON_NULL,
    TLI_JSON_FALSE,
    TLI_JSON_TRUE,
    TLI_JSON_NUMBER,
    TLI_JSON_STRING,
    TLI_JSON_ARRAY,
    TLI_JSON_OBJECT
} tli_json_type;

typedef struct tli_json_node {
    tli_json_type type;
    uint32_t next;    /* next sibling in the parent; 0: the last (the root is never a sibling) */
    uint32_t child;   /* first child of an array or object; 0: empty */
    uint32_t count;   /* children of an array or object */
    const char *key;  /* members of an object: the decoded key (NUL-terminated) */
    const char *str;  /* strings: the decoded text (NUL-terminated); numbers: the raw text (not terminated) */
    size_t len;       /* bytes of str */
    size_t offset;    /* byte offset of the value (of its key, for an object's member), plus the base */
} tli_json_node;

typedef struct tli_json {
    tli_json_node *nodes;
    size_t count, cap;
    char *strs; /* decoded keys and strings */
    size_t strs_len, strs_cap;
} tli_json;

typedef struct tli_json_limits {
    size_t max_depth;  /* arrays and objects inside each other */
    size_t max_string; /* decoded bytes of one string or key */
    size_t max_nodes;  /* values in the whole text */
} tli_json_limits;

/* Parse text[0..len). On error the message reads "byte N: ..." with N
 * counted from `base` (the text's offset in its file), and *j is empty.
 * Errors: TL_EFORMAT (not strict JSON), TL_ETOOBIG (a limit), TL_ENOMEM. */
tl_status tli_json_parse(tli_json *j, const char *text, size_t len, const tli_json_limits *lim, size_t base);

void tli_json_free(tli_json *j);

static inline const tli_json_node *tli_json_node_at(const tli_json *j, uint32_t i)
{
    return &j->nodes[i];
}

/* The member of object `obj` called `key`, or NULL. */
const tli_json_node *tli_json_member(const tli_json *j, const tli_json_node *obj, const char *key);

/* A number that is a non-negative integer literal (no sign, fraction or
 * exponent) fitting in 64 bits, into *out; false otherwise. */
bool tli_json_u64(const tli_json_node *n, uint64_t *out);

/* Short name of a type for messages ("string", "array", ...). */
const char *tli_json_type_str(tli_json_type t);

#endif /* TLI_IO_JSON_H */
