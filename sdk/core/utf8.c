/* sdk/core/utf8.c - the one UTF-8 validator: strict (RFC 3629), so no
 * overlong forms, no surrogates, nothing above U+10FFFF. Safetensors headers,
 * model configs, tokenizer files, intent corpora and search paths use it.
 * And whether a text is white space only, which the search index refuses
 * as a document and `qiao search index --texts` skips. */
#include "core/core.h"

size_t qc_utf8_check(const char *text, size_t len) {
    const unsigned char *s = (const unsigned char *)text;
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t k;
        unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
        if (c >= 0xC2 && c <= 0xDF) k = 1;
        else if (c == 0xE0) { k = 2; lo = 0xA0; }          /* no overlongs */
        else if (c == 0xED) { k = 2; hi = 0x9F; }          /* no surrogates */
        else if (c >= 0xE1 && c <= 0xEF) k = 2;
        else if (c == 0xF0) { k = 3; lo = 0x90; }          /* no overlongs */
        else if (c >= 0xF1 && c <= 0xF3) k = 3;
        else if (c == 0xF4) { k = 3; hi = 0x8F; }          /* <= U+10FFFF */
        else return i;
        if (len - i <= k) return i;
        if (s[i + 1] < lo || s[i + 1] > hi) return i;
        for (size_t j = 2; j <= k; j++)
            if (s[i + j] < 0x80 || s[i + j] > 0xBF) return i;
        i += k + 1;
    }
    return len;
}

bool qc_utf8_blank(const char *text, size_t len) {
    const unsigned char *s = (const unsigned char *)text;
    for (size_t i = 0; i < len;) {
        uint32_t c;
        if (s[i] < 0x80) {
            c = s[i];
            i += 1;
        } else if (s[i] < 0xE0 && i + 1 < len) {
            c = (uint32_t)(s[i] & 0x1F) << 6 | (uint32_t)(s[i + 1] & 0x3F);
            i += 2;
        } else if (s[i] < 0xF0 && i + 2 < len) {
            c = (uint32_t)(s[i] & 0x0F) << 12 | (uint32_t)(s[i + 1] & 0x3F) << 6 | (uint32_t)(s[i + 2] & 0x3F);
            i += 3;
        } else {
            return false; /* no White_Space above U+FFFF */
        }
        /* Unicode's White_Space property (PropList.txt): 25 code points. */
        bool ws = (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
                  (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
                  c == 0x3000;
        if (!ws) return false;
    }
    return true;
}
