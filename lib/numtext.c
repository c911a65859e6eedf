/*
 * numtext.c - numbers as libtl writes them into text that programs read
 * back (JSON metadata, settings text, CSV): the fewest digits that read
 * back as the same value, and '.' as the decimal point whatever LC_NUMERIC
 * the host program chose ("0,5" would be two CSV fields or broken JSON).
 */
#include <stdio.h>
#include <stdlib.h>

#include "core.h"

void tli_format_number(char *out, size_t cap, double x, bool as_float)
{
    char raw[64];
    /* %.1g .. %.9g (a float) or .. %.17g (a double): the first that reads
     * back as x, 0.01 rather than 0.00999999978. Read back in the locale
     * it was written in, so the comparison holds in any locale. */
    const int most = as_float ? 9 : 17;
    for (int digits = 1; digits <= most; digits++) {
        snprintf(raw, sizeof raw, "%.*g", digits, x);
        double back = strtod(raw, NULL);
        if (as_float ? (float)back == (float)x : back == x)
            break;
    }
    /* The locale's decimal point (maybe several bytes) is the only run of
     * characters printf puts there other than digits, signs, 'e' and the
     * letters of inf and nan. */
    size_t o = 0;
    bool in_point = false;
    for (const char *r = raw; *r && o + 1 < cap; r++) {
        const char ch = *r;
        const bool plain = (ch >= '0' && ch <= '9') || ch == '-' || ch == '+' || (ch >= 'a' && ch <= 'z') ||
                           (ch >= 'A' && ch <= 'Z');
        if (plain) {
            out[o++] = ch;
            in_point = false;
        } else if (!in_point) {
            out[o++] = '.';
            in_point = true;
        }
    }
    if (cap)
        out[o] = '\0';
}
