/* json.c - the strict, bounded JSON parser of json.h. */
#include "json.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Longest number literal accepted: far beyond any real size or offset. */
#define MAX_NUMBER_TEXT 64

typedef struct parser {
    const char *s;
    size_t len, pos, base;
    tli_json *j;
    const tli_json_limits *lim;
} parser;

static tl_status fail(parser *p, tl_status st, size_t at, const char *fmt, ...) TLI_PRINTF(4, 5);
static tl_status fail(parser *p, tl_status st, size_t at, const char *fmt, ...)
{
    char text[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    return tli_error(st, "byte %zu: %s", p->base + at, text);
}

const char *tli_json_type_str(tli_json_type t)
{
    switch (t) {
    case TLI_JSON_NULL: return "null";
    case TLI_JSON_FALSE:
    case TLI_JSON_TRUE: return "boolean";
    case TLI_JSON_NUMBER: return "number";
    case TLI_JSON_STRING: return "string";
    case TLI_JSON_ARRAY: return "array";
    case TLI_JSON_OBJECT: return "object";
    }
    return "value";
}

static void skip_ws(parser *p)
{
    while (p->pos < p->len) {
        char c = p->s[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            break;
        p->pos++;
    }
}

/* What the next character is, for messages. */
static const char *show(parser *p, char *buf, size_t cap)
{
    if (p->pos >= p->len)
        return "the end of the text";
    unsigned char c = (unsigned char)p->s[p->pos];
    if (c >= 0x20 && c < 0x7f)
        snprintf(buf, cap, "'%c'", c);
    else
        snprintf(buf, cap, "byte 0x%02x", c);
    return buf;
}

static tl_status new_node(parser *p, tli_json_type type, uint32_t *idx)
{
    tli_json *j = p->j;
    if (j->count >= p->lim->max_nodes)
        return fail(p, TL_ETOOBIG, p->pos, "more than %zu JSON values", p->lim->max_nodes);
    if (j->count == j->cap) {
        size_t cap = j->cap ? j->cap * 2 : 64;
        if (cap > p->lim->max_nodes)
            cap = p->lim->max_nodes;
        tli_json_node *grown = tli_realloc(j->nodes, cap * sizeof *grown);
        if (grown == NULL)
            return tli_error(TL_ENOMEM, "out of memory for %zu JSON values", cap);
        j->nodes = grown;
        j->cap = cap;
    }
    *idx = (uint32_t)j->count++;
    tli_json_node *n = &j->nodes[*idx];
    memset(n, 0, sizeof *n);
    n->type = type;
    n->offset = p->base + p->pos;
    return TL_OK;
}

static int hex4(const char *s)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

static size_t put_utf8(char *out, uint32_t cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3f));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Length of the well-formed UTF-8 sequence at s (RFC 3629: no overlong
 * forms, no surrogates, nothing above U+10FFFF), or 0. */
static size_t utf8_len(const unsigned char *s, size_t avail)
{
    unsigned char c = s[0];
    size_t n;
    unsigned char lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf)
        n = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        if (c == 0xe0)
            lo = 0xa0;
        if (c == 0xed)
            hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        if (c == 0xf0)
            lo = 0x90;
        if (c == 0xf4)
            hi = 0x8f;
    } else
        return 0;
    if (avail < n || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    return n;
}

/* A string literal at p->pos, decoded into the arena. */
static tl_status parse_string(parser *p, const char **out, size_t *out_len)
{
    const size_t start = p->pos;
    tli_json *j = p->j;
    char *dst = j->strs + j->strs_len;
    size_t n = 0;
    p->pos++; /* the opening quote */
    for (;;) {
        if (p->pos >= p->len)
            return fail(p, TL_EFORMAT, start, "a string that never ends");
        if (n > p->lim->max_string)
            return fail(p, TL_ETOOBIG, start, "a string longer than %zu bytes", p->lim->max_string);
        unsigned char c = (unsigned char)p->s[p->pos];
        if (c == '"') {
            p->pos++;
            break;
        }
        if (c < 0x20)
            return fail(p, TL_EFORMAT, p->pos, "a control character (0x%02x) inside a string", c);
        if (c == '\\') {
            if (p->pos + 1 >= p->len)
                return fail(p, TL_EFORMAT, start, "a string that never ends");
            char e = p->s[p->pos + 1];
            const char *simple = strchr("\"\\/bfnrt", e);
            if (e != '\0' && simple) {
                static const char map[] = "\"\\/\b\f\n\r\t";
                dst[n++] = map[simple - "\"\\/bfnrt"];
                p->pos += 2;
                continue;
            }
            if (e != 'u')
                return fail(p, TL_EFORMAT, p->pos, "an unknown escape '\\%c'", e >= 0x20 && e < 0x7f ? e : '?');
            int cp = p->pos + 6 <= p->len ? hex4(p->s + p->pos + 2) : -1;
            if (cp < 0)
                return fail(p, TL_EFORMAT, p->pos, "a \\u escape without four hexadecimal digits");
            uint32_t code = (uint32_t)cp;
            size_t used = 6;
            if (code >= 0xd800 && code <= 0xdbff) {
                int lo = p->pos + 12 <= p->len && p->s[p->pos + 6] == '\\' && p->s[p->pos + 7] == 'u'
                             ? hex4(p->s + p->pos + 8)
                             : -1;
                if (lo < 0xdc00 || lo > 0xdfff)
                    return fail(p, TL_EFORMAT, p->pos, "a high surrogate \\u%04x without its low surrogate", code);
                code = 0x10000 + ((code - 0xd800) << 10) + ((uint32_t)lo - 0xdc00);
                used = 12;
            } else if (code >= 0xdc00 && code <= 0xdfff) {
                return fail(p, TL_EFORMAT, p->pos, "a lone low surrogate \\u%04x", code);
            } else if (code == 0) {
                return fail(p, TL_EFORMAT, p->pos, "\\u0000 (a NUL character) inside a string");
            }
            n += put_utf8(dst + n, code);
            p->pos += used;
            continue;
        }
        if (c < 0x80) {
            dst[n++] = (char)c;
            p->pos++;
            continue;
        }
        size_t k = utf8_len((const unsigned char *)p->s + p->pos, p->len - p->pos);
        if (k == 0)
            return fail(p, TL_EFORMAT, p->pos, "invalid UTF-8 inside a string");
        memcpy(dst + n, p->s + p->pos, k);
        n += k;
        p->pos += k;
    }
    if (n > p->lim->max_string)
        return fail(p, TL_ETOOBIG, start, "a string longer than %zu bytes", p->lim->max_string);
    /* Decoding never lengthens a literal, and the closing quote pays for
     * the NUL: the arena (as long as the text) cannot overflow. */
    dst[n] = '\0';
    j->strs_len += n + 1;
    *out = dst;
    *out_len = n;
    return TL_OK;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static tl_status parse_number(parser *p, uint32_t idx)
{
    const size_t start = p->pos;
    const char *s = p->s;
    if (p->pos < p->len && s[p->pos] == '-')
        p->pos++;
    if (p->pos < p->len && s[p->pos] == '0') {
        p->pos++;
    } else if (p->pos < p->len && is_digit(s[p->pos])) {
        while (p->pos < p->len && is_digit(s[p->pos]))
            p->pos++;
    } else {
        return fail(p, TL_EFORMAT, start, "a malformed number");
    }
    if (p->pos < p->len && s[p->pos] == '.') {
        p->pos++;
        if (p->pos >= p->len || !is_digit(s[p->pos]))
            return fail(p, TL_EFORMAT, start, "a malformed number (no digit after the point)");
        while (p->pos < p->len && is_digit(s[p->pos]))
            p->pos++;
    }
    if (p->pos < p->len && (s[p->pos] == 'e' || s[p->pos] == 'E')) {
        p->pos++;
        if (p->pos < p->len && (s[p->pos] == '+' || s[p->pos] == '-'))
            p->pos++;
        if (p->pos >= p->len || !is_digit(s[p->pos]))
            return fail(p, TL_EFORMAT, start, "a malformed number (no exponent digits)");
        while (p->pos < p->len && is_digit(s[p->pos]))
            p->pos++;
    }
    if (p->pos - start > MAX_NUMBER_TEXT)
        return fail(p, TL_ETOOBIG, start, "a number of %zu characters", p->pos - start);
    tli_json_node *n = &p->j->nodes[idx];
    n->str = s + start;
    n->len = p->pos - start;
    return TL_OK;
}

typedef struct keyref {
    const char *key;
    size_t offset;
} keyref;

static int keyref_cmp(const void *a, const void *b)
{
    const keyref *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    /* Ties in text order, so the second occurrence is reported. */
    return c ? c : (x->offset > y->offset) - (x->offset < y->offset);
}

static tl_status check_unique_keys(parser *p, uint32_t obj)
{
    const tli_json *j = p->j;
    size_t n = j->nodes[obj].count;
    if (n < 2)
        return TL_OK;
    keyref *refs = tli_malloc(n * sizeof *refs);
    if (refs == NULL)
        return tli_error(TL_ENOMEM, "out of memory checking %zu JSON keys", n);
    size_t k = 0;
    for (uint32_t c = j->nodes[obj].child; k < n; c = j->nodes[c].next)
        refs[k++] = (keyref){j->nodes[c].key, j->nodes[c].offset};
    qsort(refs, n, sizeof *refs, keyref_cmp);
    tl_status st = TL_OK;
    for (size_t i = 1; i < n && st == TL_OK; i++)
        if (strcmp(refs[i - 1].key, refs[i].key) == 0)
            st = tli_error(TL_EFORMAT, "byte %zu: the key '%.200s' appears twice in one object", refs[i].offset,
                           refs[i].key);
    tli_free(refs);
    return st;
}

static tl_status parse_value(parser *p, size_t depth, uint32_t *out);

/* Link child `c` after `last` (0: first child) of container `parent`. */
static void link_child(tli_json *j, uint32_t parent, uint32_t *last, uint32_t c)
{
    if (*last)
        j->nodes[*last].next = c;
    else
        j->nodes[parent].child = c;
    *last = c;
    j->nodes[parent].count++;
}

static tl_status parse_container(parser *p, size_t depth, uint32_t idx, bool object)
{
    char buf[16];
    const char close = object ? '}' : ']';
    if (depth + 1 > p->lim->max_depth)
        return fail(p, TL_ETOOBIG, p->pos, "JSON nested deeper than %zu levels", p->lim->max_depth);
    p->pos++;
    skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == close) {
        p->pos++;
        return TL_OK;
    }
    uint32_t last = 0;
    for (;;) {
        skip_ws(p);
        const char *key = NULL;
        size_t key_len = 0, key_at = p->base + p->pos;
        tl_status st;
        if (object) {
            if (p->pos >= p->len || p->s[p->pos] != '"')
                return fail(p, TL_EFORMAT, p->pos, "%s where a key string should be", show(p, buf, sizeof buf));
            if ((st = parse_string(p, &key, &key_len)))
                return st;
            skip_ws(p);
            if (p->pos >= p->len || p->s[p->pos] != ':')
                return fail(p, TL_EFORMAT, p->pos, "%s where ':' should be", show(p, buf, sizeof buf));
            p->pos++;
        }
        uint32_t c;
        if ((st = parse_value(p, depth + 1, &c)))
            return st;
        if (object) {
            p->j->nodes[c].key = key;
            p->j->nodes[c].offset = key_at; /* messages about a member point at its name */
        }
        link_child(p->j, idx, &last, c);
        skip_ws(p);
        if (p->pos < p->len && p->s[p->pos] == ',') {
            p->pos++;
            continue;
        }
        if (p->pos < p->len && p->s[p->pos] == close) {
            p->pos++;
            return object ? check_unique_keys(p, idx) : TL_OK;
        }
        return fail(p, TL_EFORMAT, p->pos, "%s where ',' or '%c' should be", show(p, buf, sizeof buf), close);
    }
}

static tl_status parse_value(parser *p, size_t depth, uint32_t *out)
{
    char buf[16];
    skip_ws(p);
    if (p->pos >= p->len)
        return fail(p, TL_EFORMAT, p->pos, "the text ends where a value should be");
    char c = p->s[p->pos];
    tl_status st;
    static const struct {
        const char *word;
        tli_json_type type;
    } words[] = {{"true", TLI_JSON_TRUE}, {"false", TLI_JSON_FALSE}, {"null", TLI_JSON_NULL}};
    for (size_t i = 0; i < sizeof words / sizeof *words; i++) {
        size_t n = strlen(words[i].word);
        if (c == words[i].word[0]) {
            if (p->len - p->pos < n || memcmp(p->s + p->pos, words[i].word, n) != 0)
                return fail(p, TL_EFORMAT, p->pos, "a malformed literal (expected %s)", words[i].word);
            if ((st = new_node(p, words[i].type, out)))
                return st;
            p->pos += n;
            return TL_OK;
        }
    }
    if (c == '{' || c == '[') {
        if ((st = new_node(p, c == '{' ? TLI_JSON_OBJECT : TLI_JSON_ARRAY, out)))
            return st;
        return parse_container(p, depth, *out, c == '{');
    }
    if (c == '"') {
        if ((st = new_node(p, TLI_JSON_STRING, out)))
            return st;
        const char *s;
        size_t n;
        if ((st = parse_string(p, &s, &n)))
            return st;
        p->j->nodes[*out].str = s;
        p->j->nodes[*out].len = n;
        return TL_OK;
    }
    if (c == '-' || is_digit(c)) {
        if ((st = new_node(p, TLI_JSON_NUMBER, out)))
            return st;
        return parse_number(p, *out);
    }
    return fail(p, TL_EFORMAT, p->pos, "%s where a JSON value should be", show(p, buf, sizeof buf));
}

tl_status tli_json_parse(tli_json *j, const char *text, size_t len, const tli_json_limits *lim, size_t base)
{
    memset(j, 0, sizeof *j);
    size_t cap;
    if (!tli_add_ok(len, 1, &cap))
        return tli_error(TL_ETOOBIG, "byte %zu: the JSON text is too large", base);
    j->strs = tli_malloc(cap);
    if (j->strs == NULL)
        return tli_error(TL_ENOMEM, "out of memory for %zu bytes of JSON strings", len);
    j->strs_cap = cap;
    parser p = {text, len, 0, base, j, lim};
    uint32_t root;
    tl_status st = parse_value(&p, 0, &root);
    if (st == TL_OK) {
        skip_ws(&p);
        if (p.pos != len)
            st = fail(&p, TL_EFORMAT, p.pos, "text after the end of the JSON value");
    }
    if (st)
        tli_json_free(j);
    return st;
}

void tli_json_free(tli_json *j)
{
    tli_free(j->nodes);
    tli_free(j->strs);
    memset(j, 0, sizeof *j);
}

const tli_json_node *tli_json_member(const tli_json *j, const tli_json_node *obj, const char *key)
{
    if (obj->type != TLI_JSON_OBJECT)
        return NULL;
    uint32_t c = obj->child;
    for (uint32_t k = 0; k < obj->count; k++, c = j->nodes[c].next)
        if (strcmp(j->nodes[c].key, key) == 0)
            return &j->nodes[c];
    return NULL;
}

bool tli_json_u64(const tli_json_node *n, uint64_t *out)
{
    if (n->type != TLI_JSON_NUMBER || n->len == 0 || (n->len > 1 && n->str[0] == '0'))
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < n->len; i++) {
        char c = n->str[i];
        if (!is_digit(c))
            return false; /* a sign, a fraction or an exponent */
        uint64_t d = (uint64_t)(c - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}
