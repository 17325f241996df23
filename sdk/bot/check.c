/* Slot values: found in a message and checked by the slot's validator
 * (regex, number, date, enum), and normalized (a date to YYYY-MM-DD, an
 * enum synonym to its value), and a message's language. */
#define _POSIX_C_SOURCE 200809L

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "bot/bot.h"
#include "core/core.h"

/* The next code point of a valid UTF-8 string (the bot checks every text first). */
static uint32_t next_cp(const char **p) {
    const unsigned char *s = (const unsigned char *)*p;
    uint32_t c = s[0];
    size_t n = 1;
    if (c >= 0xF0) c &= 0x07, n = 4;
    else if (c >= 0xE0) c &= 0x0F, n = 3;
    else if (c >= 0xC0) c &= 0x1F, n = 2;
    for (size_t i = 1; i < n && s[i]; i++) c = (c << 6) | (s[i] & 0x3F);
    *p += n;
    return c;
}

const char *qbot_language(const char *text) {
    bool latin = false;
    for (const char *p = text; *p;) {
        const uint32_t c = next_cp(&p);
        if ((c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2FA1F))
            return "zh";
        latin |= (c < 0x80 && isalpha((int)c)) != 0;
    }
    return latin ? "en" : NULL;
}

static char *dup_range(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

/* Trims ASCII and ideographic spaces and the usual trailing punctuation. */
static void trim(const char **s, size_t *n) {
    static const char *const junk[] = {" ", "\t", "\n", "\r", "\xe3\x80\x80", "\xe3\x80\x82", "\xef\xbc\x8c",
                                       "\xef\xbc\x81", "\xef\xbc\x9f", ".", ",", "!", "?", "~"};
    for (bool again = true; again;) {
        again = false;
        for (size_t k = 0; k < sizeof junk / sizeof *junk; k++) {
            const size_t m = strlen(junk[k]);
            if (*n >= m && !memcmp(*s, junk[k], m)) *s += m, *n -= m, again = true;
            if (*n >= m && !memcmp(*s + *n - m, junk[k], m)) *n -= m, again = true;
        }
    }
}

static int days_in(int y, int m) {
    static const int d[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)) return 29;
    return d[m - 1];
}

/* A date in the text: ISO-like (2024-11-20, 2024/11/20, 2024年11月20日),
 * a month and day (11月20号, 11/20: this year), or a relative day (今天,
 * 明天, 后天, 昨天, 前天, today, tomorrow, yesterday) from `now` (UTC). */
static bool find_date(const char *text, double now, char out[48]) {
    const time_t t = (time_t)now;
    struct tm tm;
    gmtime_r(&t, &tm);
    static const struct {
        const char *word;
        int days;
    } rel[] = {{"\xe5\xa4\xa7\xe5\x89\x8d\xe5\xa4\xa9", -3}, /* 大前天 */
               {"\xe5\x89\x8d\xe5\xa4\xa9", -2},             /* 前天 */
               {"\xe6\x98\xa8\xe5\xa4\xa9", -1},             /* 昨天 */
               {"\xe4\xbb\x8a\xe5\xa4\xa9", 0},              /* 今天 */
               {"\xe6\x98\x8e\xe5\xa4\xa9", 1},              /* 明天 */
               {"\xe5\x90\x8e\xe5\xa4\xa9", 2},              /* 后天 */
               {"yesterday", -1},
               {"today", 0},
               {"tomorrow", 1}};
    for (const char *p = text; *p; p++) {
        if (!isdigit((unsigned char)*p) || (p > text && isdigit((unsigned char)p[-1]))) continue;
        int a = 0, b = 0, c = 0, used = 0;
        /* year first */
        if (sscanf(p, "%4d-%2d-%2d%n", &a, &b, &c, &used) == 3 || sscanf(p, "%4d/%2d/%2d%n", &a, &b, &c, &used) == 3 ||
            sscanf(p, "%4d.%2d.%2d%n", &a, &b, &c, &used) == 3 ||
            sscanf(p, "%4d\xe5\xb9\xb4%2d\xe6\x9c\x88%2d%n", &a, &b, &c, &used) == 3) {
            if (a >= 1900 && a <= 2200 && b >= 1 && b <= 12 && c >= 1 && c <= days_in(a, b)) {
                snprintf(out, 48, "%04d-%02d-%02d", a, b, c);
                return true;
            }
        }
        if (sscanf(p, "%2d\xe6\x9c\x88%2d%n", &b, &c, &used) == 2 || sscanf(p, "%2d/%2d%n", &b, &c, &used) == 2) {
            a = tm.tm_year + 1900;
            if (b >= 1 && b <= 12 && c >= 1 && c <= days_in(a, b)) {
                snprintf(out, 48, "%04d-%02d-%02d", a, b, c);
                return true;
            }
        }
    }
    for (size_t k = 0; k < sizeof rel / sizeof *rel; k++) {
        const char *hit = strstr(text, rel[k].word);
        if (!hit && rel[k].word[0] >= 'a') {
            /* English, any case. */
            const size_t m = strlen(rel[k].word);
            for (const char *p = text; *p && !hit; p++)
                if (!strncasecmp(p, rel[k].word, m)) hit = p;
        }
        if (!hit) continue;
        /* 前天 is inside 大前天: the longer word comes first in the table. */
        const time_t d = t + (time_t)rel[k].days * 86400;
        struct tm dt;
        gmtime_r(&d, &dt);
        snprintf(out, 48, "%04d-%02d-%02d", dt.tm_year + 1900, dt.tm_mon + 1, dt.tm_mday);
        return true;
    }
    return false;
}

/* The first number in the text (¥199.00, 199块, 3.5). */
static bool find_number(const char *text, double *v, const char **at, size_t *len) {
    for (const char *p = text; *p; p++) {
        if (!isdigit((unsigned char)*p)) continue;
        char *end = NULL;
        *v = strtod(p, &end);
        *at = p, *len = (size_t)(end - p);
        if (p > text && p[-1] == '-') *v = -*v, (*at)--, (*len)++;
        return true;
    }
    return false;
}

/* needle in hay, ASCII case ignored; an English word only as a whole word
 * ("L" is not in "XXL", "no" not in "know"). */
static bool ascii_contains_ci(const char *hay, const char *needle) {
    const size_t m = strlen(needle);
    if (m == 0) return false;
    const bool word_start = isalnum((unsigned char)needle[0]), word_end = isalnum((unsigned char)needle[m - 1]);
    for (const char *p = hay; *p; p++) {
        if (strncasecmp(p, needle, m)) continue;
        if (word_start && p > hay && isalnum((unsigned char)p[-1])) continue;
        if (word_end && isalnum((unsigned char)p[m])) continue;
        return true;
    }
    return false;
}

qiao_status qbot_check_value(const qbot_slot *slot, const char *text, bool search, double now, char **out,
                             const char **why) {
    *out = NULL, *why = NULL;
    const char *s = text;
    size_t n = strlen(text);
    trim(&s, &n);
    if (n == 0) {
        *why = "empty";
        return QIAO_ERR_FORMAT;
    }
    switch (slot->check) {
    case QBOT_CHECK_TEXT:
        *out = dup_range(s, n);
        break;
    case QBOT_CHECK_REGEX: {
        char *v = dup_range(s, n);
        if (!v) break;
        regmatch_t m;
        const int rc = regexec(&slot->re, v, 1, &m, 0);
        if (rc == 0 && (search || (m.rm_so == 0 && (size_t)m.rm_eo == n)) && m.rm_eo > m.rm_so) {
            *out = dup_range(v + m.rm_so, (size_t)(m.rm_eo - m.rm_so));
            free(v);
            break;
        }
        free(v);
        *why = "wrong form";
        return QIAO_ERR_FORMAT;
    }
    case QBOT_CHECK_NUMBER: {
        double v = 0;
        const char *at = NULL;
        size_t len = 0;
        if (!find_number(s, &v, &at, &len)) {
            *why = "not a number";
            return QIAO_ERR_FORMAT;
        }
        if (!(v >= slot->min && v <= slot->max)) {
            *why = "out of range";
            return QIAO_ERR_FORMAT;
        }
        char buf[64];
        snprintf(buf, sizeof buf, "%.15g", v);
        *out = strdup(buf);
        break;
    }
    case QBOT_CHECK_DATE: {
        char buf[48];
        char *v = dup_range(s, n);
        if (!v) break;
        const bool ok = find_date(v, now, buf);
        free(v);
        if (!ok) {
            *why = "not a date";
            return QIAO_ERR_FORMAT;
        }
        *out = strdup(buf);
        break;
    }
    case QBOT_CHECK_ENUM: {
        char *v = dup_range(s, n);
        if (!v) break;
        int hit = -1;
        for (size_t k = 0; k < slot->n_values && hit < 0; k++) {
            if (search ? ascii_contains_ci(v, slot->values[k]) : !strcasecmp(v, slot->values[k])) hit = (int)k;
            for (char **w = slot->synonyms[k]; *w && hit < 0; w++)
                if (search ? ascii_contains_ci(v, *w) : !strcasecmp(v, *w)) hit = (int)k;
        }
        free(v);
        if (hit < 0) {
            *why = "not one of the choices";
            return QIAO_ERR_FORMAT;
        }
        *out = strdup(slot->values[hit]);
        break;
    }
    }
    if (!*out) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory");
    return QIAO_OK;
}
