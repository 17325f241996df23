/* models/vocab/corpus.c - the texts whose pieces a pruned vocabulary keeps
 * (prune.h): a JSON Lines file's "text" fields or a plain file's lines.
 * Apart from prune.c, so the fuzzer reads corpora without the models. */
#define _POSIX_C_SOURCE 200809L

#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "models/vocab/prune.h"

void qmv_texts_free(qmv_texts *t) {
    if (!t) return;
    free(t->buf);
    free(t->off);
    memset(t, 0, sizeof *t);
}

const char *qmv_text(const qmv_texts *t, size_t i, size_t *len) {
    if (!t || i >= t->n) return NULL;
    if (len) *len = (i + 1 < t->n ? t->off[i + 1] : t->used) - t->off[i] - 1;
    return t->buf + t->off[i];
}

static qiao_status add_text(qmv_texts *t, const char *s, size_t l) {
    if (t->n == t->ocap) {
        const size_t cap = t->ocap ? 2 * t->ocap : 1024;
        size_t *o = realloc(t->off, cap * sizeof *o);
        if (!o) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "corpus: out of memory");
        t->off = o, t->ocap = cap;
    }
    if (t->cap - t->used < l + 1) {
        size_t cap = t->cap ? t->cap : 1 << 16;
        while (cap - t->used < l + 1) cap *= 2;
        char *b = realloc(t->buf, cap);
        if (!b) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "corpus: out of memory");
        t->buf = b, t->cap = cap;
    }
    t->off[t->n++] = t->used;
    memcpy(t->buf + t->used, s, l);
    t->buf[t->used + l] = '\0';
    t->used += l + 1;
    return QIAO_OK;
}

static bool blank_line(const char *s, size_t l) {
    for (size_t i = 0; i < l; i++)
        if (!strchr(" \t\r\v\f", s[i]) || !s[i]) return false;
    return true;
}

/* A JSON object's "text" (NULL with *why set when the line is not one). */
static const cJSON *json_text(const cJSON *o, const char **why) {
    if (!cJSON_IsObject(o)) {
        *why = "not a JSON object (the corpus's first line made it JSON Lines)";
        return NULL;
    }
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "text");
    if (!cJSON_IsString(t)) {
        *why = "no string \"text\"";
        return NULL;
    }
    return t;
}

qiao_status qmv_texts_parse(const char *name, const char *data, size_t len, qmv_texts *out) {
    if (!name || (!data && len) || !out) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmv_texts_parse: NULL argument");
    const size_t n0 = out->n, used0 = out->used;
    qiao_status st = QIAO_OK;
    int jsonl = -1; /* unknown until the first non-blank line */
    size_t i = len >= 3 && !memcmp(data, "\xEF\xBB\xBF", 3) ? 3 : 0, line = 0;
    while (st == QIAO_OK && i < len) {
        const char *s = data + i, *nl = memchr(s, '\n', len - i);
        size_t l = nl ? (size_t)(nl - s) : len - i;
        i += l + (nl != NULL);
        line++;
        if (l && s[l - 1] == '\r') l--;
        if (blank_line(s, l)) continue;
        cJSON *o = jsonl != 0 ? cJSON_ParseWithLength(s, l) : NULL;
        if (jsonl < 0) jsonl = cJSON_IsObject(o);
        if (jsonl) {
            const char *why = o ? NULL : "not JSON (the corpus's first line made it JSON Lines)";
            const cJSON *t = o ? json_text(o, &why) : NULL;
            const size_t tl = t ? strlen(t->valuestring) : 0;
            const size_t bad = t ? qc_utf8_check(t->valuestring, tl) : 0;
            if (!t)
                st = qc_error(QIAO_ERR_FORMAT, "%s:%zu: %s", name, line, why);
            else if (bad != tl)
                st = qc_error(QIAO_ERR_FORMAT, "%s:%zu: \"text\" is not valid UTF-8 (byte %zu)", name, line, bad);
            else
                st = add_text(out, t->valuestring, tl);
        } else {
            const size_t bad = qc_utf8_check(s, l);
            st = bad != l ? qc_error(QIAO_ERR_FORMAT, "%s:%zu: invalid UTF-8 at byte %zu of the line", name, line, bad)
                          : add_text(out, s, l);
        }
        cJSON_Delete(o);
    }
    if (st != QIAO_OK) out->n = n0, out->used = used0;
    return st;
}

qiao_status qmv_texts_load(const char *path, qmv_texts *out) {
    if (!path || !out) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmv_texts_load: NULL argument");
    uint8_t *data = NULL;
    size_t len = 0;
    qiao_status st = qc_read_file(path, QMV_MAX_FILE, &data, &len);
    if (st == QIAO_OK) st = qmv_texts_parse(path, (const char *)data, len, out);
    free(data);
    return st;
}

