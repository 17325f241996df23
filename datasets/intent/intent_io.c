/* datasets/intent/intent_io.c - what every intent converter shares: reading
 * files, UTF-8 validation, the JSONL writer (temporary files renamed on
 * success, so a failed conversion never leaves half a data set), and the
 * format checker. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <cjson/cJSON.h>
#include <zlib.h>

#include "intent/intent.h"

/* Larger than any intent corpus by far; a bigger file is a wrong path. */
#define QINT_MAX_FILE ((size_t)512 << 20)

const char *qint_split_name(int split) {
    static const char *const names[QINT_NSPLITS] = {"train", "val", "test"};
    return split >= 0 && split < QINT_NSPLITS ? names[split] : "?";
}

qiao_status qint_path(char *buf, size_t cap, const char *dir, const char *name) {
    int n = snprintf(buf, cap, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= cap) return qc_error(QIAO_ERR_TOO_LARGE, "%s/%s: path too long", dir, name);
    return QIAO_OK;
}

qiao_status qint_read_file(const char *path, char **data, size_t *len) {
    return qc_read_file(path, QINT_MAX_FILE, (uint8_t **)data, len);
}

int qint_utf8_valid(const char *s, size_t len, size_t *bad) {
    /* A NUL inside a line is refused too: the text fields are C strings. */
    const char *nul = memchr(s, 0, len);
    size_t n = qc_utf8_check(s, nul ? (size_t)(nul - s) : len);
    if (n == len) return 1;
    if (bad) *bad = n;
    return 0;
}

qiao_status qint_copy_file(const char *from, const char *to) {
    char *data;
    size_t len;
    qiao_status st = qint_read_file(from, &data, &len);
    if (st) return st;
    FILE *f = fopen(to, "wb");
    if (!f) {
        free(data);
        return qc_error(QIAO_ERR_IO, "%s: %s", to, strerror(errno));
    }
    size_t put = fwrite(data, 1, len, f);
    free(data);
    if (fclose(f) != 0 || put != len) return qc_error(QIAO_ERR_IO, "%s: write failed", to);
    return QIAO_OK;
}

/* ---- zip archives ---------------------------------------------------------- */

static uint32_t le16(const unsigned char *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }
static uint32_t le32(const unsigned char *p) { return le16(p) | le16(p + 2) << 16; }

qiao_status qint_zip_read(const char *path, const char *name, char **data, size_t *len) {
    *data = NULL;
    *len = 0;
    char *zip;
    size_t n;
    qiao_status st = qint_read_file(path, &zip, &n);
    if (st) return st;
    const unsigned char *u = (const unsigned char *)zip;
    /* the end of central directory record: 22 bytes and a comment of at most 64 KiB, at the end */
    size_t eocd = SIZE_MAX;
    for (size_t i = n >= 22 ? n - 22 + 1 : 0; i-- > 0 && n - i <= 22 + 65535;)
        if (le32(u + i) == 0x06054b50u) {
            eocd = i;
            break;
        }
    char *out = NULL;
    size_t out_len = 0;
    bool found = false;
    if (eocd == SIZE_MAX) {
        st = qc_error(QIAO_ERR_FORMAT, "%s: not a zip archive (no end of central directory)", path);
        goto done;
    }
    const size_t entries = le16(u + eocd + 10), cd = le32(u + eocd + 16), cd_size = le32(u + eocd + 12);
    if (cd > eocd || cd_size > eocd - cd) {
        st = qc_error(QIAO_ERR_FORMAT, "%s: central directory outside the file", path);
        goto done;
    }
    size_t at = cd;
    for (size_t e = 0; e < entries && !found; e++) {
        if (at + 46 > eocd || le32(u + at) != 0x02014b50u) {
            st = qc_error(QIAO_ERR_FORMAT, "%s: central directory entry %zu is damaged", path, e);
            goto done;
        }
        const uint32_t method = le16(u + at + 10), crc = le32(u + at + 16);
        const size_t csize = le32(u + at + 20), usize = le32(u + at + 24), nlen = le16(u + at + 28),
                     xlen = le16(u + at + 30), clen = le16(u + at + 32), local = le32(u + at + 42);
        if (at + 46 + nlen > eocd) {
            st = qc_error(QIAO_ERR_FORMAT, "%s: central directory entry %zu is damaged", path, e);
            goto done;
        }
        const bool match = nlen == strlen(name) && !memcmp(u + at + 46, name, nlen);
        at += 46 + nlen + xlen + clen;
        if (!match) continue;
        found = true;
        if (csize == 0xFFFFFFFFu || usize == 0xFFFFFFFFu || local == 0xFFFFFFFFu) {
            st = qc_error(QIAO_ERR_FORMAT, "%s: %s is a ZIP64 member (not supported)", path, name);
            goto done;
        }
        if (method != 0 && method != 8) {
            st = qc_error(QIAO_ERR_FORMAT, "%s: %s is compressed with method %u (stored or deflate only)", path, name,
                          (unsigned)method);
            goto done;
        }
        if (usize > QINT_MAX_FILE) {
            st = qc_error(QIAO_ERR_TOO_LARGE, "%s: %s is %zu bytes (at most %zu)", path, name, usize, QINT_MAX_FILE);
            goto done;
        }
        if (local + 30 > n || le32(u + local) != 0x04034b50u) {
            st = qc_error(QIAO_ERR_FORMAT, "%s: the local header of %s is damaged", path, name);
            goto done;
        }
        const size_t start = local + 30 + le16(u + local + 26) + le16(u + local + 28);
        if (start > n || csize > n - start) {
            st = qc_error(QIAO_ERR_FORMAT, "%s: %s runs past the end of the file", path, name);
            goto done;
        }
        if (!(out = malloc(usize + 1))) {
            st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory for %s (%zu bytes)", path, name, usize);
            goto done;
        }
        if (method == 0) {
            if (csize != usize) {
                st = qc_error(QIAO_ERR_FORMAT, "%s: stored member %s has two sizes", path, name);
                goto done;
            }
            memcpy(out, u + start, usize);
        } else {
            z_stream z;
            memset(&z, 0, sizeof z);
            if (inflateInit2(&z, -MAX_WBITS) != Z_OK) {
                st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: zlib: cannot start inflating", path);
                goto done;
            }
            /* deflate's raw stream; the sizes fit zlib's uInt since neither passes 4 GiB */
            z.next_in = (Bytef *)(uintptr_t)(u + start);
            z.avail_in = (uInt)csize;
            z.next_out = (Bytef *)out;
            z.avail_out = (uInt)usize;
            const int rc = inflate(&z, Z_FINISH);
            const size_t got = (size_t)z.total_out;
            inflateEnd(&z);
            if (rc != Z_STREAM_END || got != usize) {
                st = qc_error(QIAO_ERR_FORMAT, "%s: %s does not inflate to its %zu bytes (zlib %d)", path, name, usize,
                              rc);
                goto done;
            }
        }
        if ((uint32_t)crc32(crc32(0L, Z_NULL, 0), (const Bytef *)out, (uInt)usize) != crc) {
            st = qc_error(QIAO_ERR_FORMAT, "%s: %s fails its CRC-32", path, name);
            goto done;
        }
        out[usize] = '\0';
        out_len = usize;
    }
    if (!found) st = qc_error(QIAO_ERR_NOT_FOUND, "%s: no member %s", path, name);
done:
    free(zip);
    if (st) {
        free(out);
        return st;
    }
    *data = out;
    *len = out_len;
    return QIAO_OK;
}

/* ---- a set of strings (the distinct labels) ------------------------------ */

typedef struct qint_strset {
    char **slots;
    size_t cap, count;
} qint_strset;

static uint64_t fnv1a(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static int strset_add(qint_strset *set, const char *s) {
    if ((set->count + 1) * 2 > set->cap) {
        size_t ncap = set->cap ? set->cap * 2 : 64;
        char **ns = calloc(ncap, sizeof *ns);
        if (!ns) return -1;
        for (size_t i = 0; i < set->cap; i++) {
            if (!set->slots[i]) continue;
            size_t j = fnv1a(set->slots[i]) & (ncap - 1);
            while (ns[j]) j = (j + 1) & (ncap - 1);
            ns[j] = set->slots[i];
        }
        free(set->slots);
        set->slots = ns;
        set->cap = ncap;
    }
    size_t j = fnv1a(s) & (set->cap - 1);
    while (set->slots[j]) {
        if (!strcmp(set->slots[j], s)) return 0;
        j = (j + 1) & (set->cap - 1);
    }
    size_t n = strlen(s);
    char *copy = malloc(n + 1);
    if (!copy) return -1;
    memcpy(copy, s, n + 1);
    set->slots[j] = copy;
    set->count++;
    return 1;
}

static void strset_free(qint_strset *set) {
    for (size_t i = 0; i < set->cap; i++) free(set->slots[i]);
    free(set->slots);
}

/* ---- JSONL writer --------------------------------------------------------- */

struct qint_writer {
    char dir[4096];
    FILE *f[QINT_NSPLITS];
    int with_entities, with_intents;
    qint_stats stats;
    qint_strset labels;
    qiao_status error;
};

/* Writes s[0..len) as a JSON string. The text was validated as UTF-8, so it
 * goes out unescaped except quotes, backslashes and control characters. */
static void put_json_str(FILE *f, const char *s, size_t len) {
    fputc('"', f);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        default:
            if (c < 0x20 || c == 0x7F) fprintf(f, "\\u%04x", c);
            else fputc(c, f);
        }
    }
    fputc('"', f);
}

qiao_status qint_writer_open(qint_writer **out, const char *out_dir, int with_entities, int with_intents) {
    *out = NULL;
    if (strlen(out_dir) + 32 > sizeof((qint_writer *)0)->dir)
        return qc_error(QIAO_ERR_TOO_LARGE, "%s: path too long", out_dir);
    qiao_status st = qc_mkdir_p(out_dir);
    if (st) return st;
    qint_writer *w = calloc(1, sizeof *w);
    if (!w) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory");
    snprintf(w->dir, sizeof w->dir, "%s", out_dir);
    w->with_entities = with_entities;
    w->with_intents = with_intents;
    *out = w;
    return QIAO_OK;
}

static void tmp_name(char *buf, size_t cap, const qint_writer *w, int split) {
    snprintf(buf, cap, "%s/.%s.jsonl.tmp", w->dir, qint_split_name(split));
}

qiao_status qint_writer_add(qint_writer *w, int split, const qint_example *ex, const char *where) {
    if (w->error) return w->error;
    if (split < 0 || split >= QINT_NSPLITS) return w->error = qc_error(QIAO_ERR_INTERNAL, "%s: bad split", where);
    size_t bad;
    if (!qint_utf8_valid(ex->text, ex->len, &bad))
        return w->error = qc_error(QIAO_ERR_FORMAT, "%s: text is not valid UTF-8 (byte %zu)", where, bad);
    if (!qint_utf8_valid(ex->intent, strlen(ex->intent), &bad))
        return w->error = qc_error(QIAO_ERR_FORMAT, "%s: intent is not valid UTF-8", where);
    for (size_t i = 0; i < ex->n_context; i++) {
        const size_t n = strlen(ex->context[i]);
        size_t a = 0;
        while (a < n && strchr(" \t\r\n\v\f", ex->context[i][a])) a++;
        if (a == n) return w->error = qc_error(QIAO_ERR_FORMAT, "%s: context turn %zu is empty", where, i);
        if (!qint_utf8_valid(ex->context[i], n, &bad))
            return w->error =
                       qc_error(QIAO_ERR_FORMAT, "%s: context turn %zu is not valid UTF-8 (byte %zu)", where, i, bad);
    }
    for (size_t i = 0; i < ex->n_entities; i++) {
        const qint_entity *e = &ex->entities[i];
        if (e->start >= e->end || e->end > ex->len)
            return w->error = qc_error(QIAO_ERR_FORMAT, "%s: entity %zu [%zu, %zu) outside the text (%zu bytes)",
                                       where, i, e->start, e->end, ex->len);
        if (!qint_utf8_valid(ex->text + e->start, e->end - e->start, &bad))
            return w->error =
                       qc_error(QIAO_ERR_FORMAT, "%s: entity %zu [%zu, %zu) cuts a UTF-8 character", where, i,
                                e->start, e->end);
    }
    if (!w->f[split]) {
        char path[4200];
        tmp_name(path, sizeof path, w, split);
        w->f[split] = fopen(path, "wb");
        if (!w->f[split]) return w->error = qc_error(QIAO_ERR_IO, "%s: %s", path, strerror(errno));
    }
    FILE *f = w->f[split];
    fputs("{\"text\": ", f);
    put_json_str(f, ex->text, ex->len);
    fputs(", \"intent\": ", f);
    put_json_str(f, ex->intent, strlen(ex->intent));
    if (w->with_intents) {
        fputs(", \"intents\": [", f);
        for (size_t i = 0; i < ex->n_labels; i++) {
            if (i) fputs(", ", f);
            put_json_str(f, ex->labels[i], strlen(ex->labels[i]));
        }
        fputc(']', f);
    }
    if (w->with_entities || ex->n_entities) {
        fputs(", \"entities\": [", f);
        for (size_t i = 0; i < ex->n_entities; i++) {
            const qint_entity *e = &ex->entities[i];
            fprintf(f, "%s{\"start\": %zu, \"end\": %zu, \"type\": ", i ? ", " : "", e->start, e->end);
            put_json_str(f, e->type, strlen(e->type));
            fputs(", \"value\": ", f);
            put_json_str(f, ex->text + e->start, e->end - e->start);
            fputc('}', f);
        }
        fputc(']', f);
    }
    if (ex->n_context) {
        fputs(", \"context\": [", f);
        for (size_t i = 0; i < ex->n_context; i++) {
            if (i) fputs(", ", f);
            put_json_str(f, ex->context[i], strlen(ex->context[i]));
        }
        fputc(']', f);
    }
    fputs("}\n", f);
    w->stats.examples[split]++;
    w->stats.entities += (int64_t)ex->n_entities;
    if (ex->n_labels > 1) w->stats.multi_label++;
    if (strset_add(&w->labels, ex->intent) < 0) return w->error = qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory");
    return QIAO_OK;
}

qiao_status qint_writer_close(qint_writer *w, int commit, qint_stats *stats) {
    if (!w) return QIAO_OK;
    qiao_status st = w->error;
    for (int s = 0; s < QINT_NSPLITS; s++) {
        if (!w->f[s]) continue;
        int bad = ferror(w->f[s]);
        if (fclose(w->f[s]) != 0 || bad) {
            if (!st) st = qc_error(QIAO_ERR_IO, "%s: write failed for %s.jsonl", w->dir, qint_split_name(s));
        }
    }
    for (int s = 0; s < QINT_NSPLITS; s++) {
        if (!w->f[s]) continue;
        char tmp[4200], final[4200];
        tmp_name(tmp, sizeof tmp, w, s);
        snprintf(final, sizeof final, "%s/%s.jsonl", w->dir, qint_split_name(s));
        if (commit && !st) {
            if (rename(tmp, final) != 0) st = qc_error(QIAO_ERR_IO, "%s: %s", final, strerror(errno));
        } else {
            remove(tmp);
        }
    }
    w->stats.labels = (int64_t)w->labels.count;
    if (stats) {
        int64_t dropped = stats->entities_dropped;
        *stats = w->stats;
        stats->entities_dropped += dropped;
    }
    strset_free(&w->labels);
    free(w);
    return st;
}

/* ---- checker -------------------------------------------------------------- */

static qiao_status check_line(const char *path, int64_t lineno, const char *line, size_t len, qint_stats *stats) {
    size_t bad;
    if (!qint_utf8_valid(line, len, &bad))
        return qc_error(QIAO_ERR_FORMAT, "%s:%lld: invalid UTF-8 at byte %zu", path, (long long)lineno, bad);
    cJSON *o = cJSON_ParseWithLength(line, len);
    if (!o) return qc_error(QIAO_ERR_FORMAT, "%s:%lld: not valid JSON", path, (long long)lineno);
    qiao_status st = QIAO_OK;
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(o, "text");
    const cJSON *intent = cJSON_GetObjectItemCaseSensitive(o, "intent");
    const cJSON *ents = cJSON_GetObjectItemCaseSensitive(o, "entities");
    if (!cJSON_IsObject(o) || !cJSON_IsString(text) || !cJSON_IsString(intent) || !intent->valuestring[0]) {
        st = qc_error(QIAO_ERR_FORMAT, "%s:%lld: expected {\"text\": string, \"intent\": string, ...}", path,
                      (long long)lineno);
        goto done;
    }
    size_t tlen = strlen(text->valuestring);
    if (ents && !cJSON_IsArray(ents)) {
        st = qc_error(QIAO_ERR_FORMAT, "%s:%lld: \"entities\" is not a list", path, (long long)lineno);
        goto done;
    }
    const cJSON *ctx = cJSON_GetObjectItemCaseSensitive(o, "context"), *turn;
    if (ctx && !cJSON_IsArray(ctx)) {
        st = qc_error(QIAO_ERR_FORMAT, "%s:%lld: \"context\" is not a list", path, (long long)lineno);
        goto done;
    }
    cJSON_ArrayForEach(turn, ctx) {
        if (!cJSON_IsString(turn) || !turn->valuestring[0]) {
            st = qc_error(QIAO_ERR_FORMAT, "%s:%lld: \"context\" holds something that is not a turn (a non-empty string)",
                          path, (long long)lineno);
            goto done;
        }
    }
    const cJSON *e;
    cJSON_ArrayForEach(e, ents) {
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(e, "start");
        const cJSON *en = cJSON_GetObjectItemCaseSensitive(e, "end");
        const cJSON *ty = cJSON_GetObjectItemCaseSensitive(e, "type");
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(e, "value");
        if (!cJSON_IsNumber(s) || !cJSON_IsNumber(en) || !cJSON_IsString(ty) || !cJSON_IsString(v) ||
            s->valuedouble < 0 || en->valuedouble > (double)tlen || s->valuedouble >= en->valuedouble) {
            st = qc_error(QIAO_ERR_FORMAT, "%s:%lld: bad entity (need 0 <= start < end <= %zu, type, value)", path,
                          (long long)lineno, tlen);
            goto done;
        }
        size_t a = (size_t)s->valuedouble, b = (size_t)en->valuedouble;
        if (strlen(v->valuestring) != b - a || memcmp(text->valuestring + a, v->valuestring, b - a) != 0) {
            st = qc_error(QIAO_ERR_FORMAT, "%s:%lld: text[%zu:%zu] != value \"%s\"", path, (long long)lineno, a, b,
                          v->valuestring);
            goto done;
        }
        if (stats) stats->entities++;
    }
    if (stats) stats->examples[QINT_TRAIN]++;
done:
    cJSON_Delete(o);
    return st;
}

qiao_status qint_check_jsonl(const char *path, qint_stats *stats) {
    char *data;
    size_t len;
    qiao_status st = qint_read_file(path, &data, &len);
    if (st) return st;
    if (len == 0) {
        free(data);
        return qc_error(QIAO_ERR_FORMAT, "%s: empty file", path);
    }
    int64_t lineno = 0;
    for (size_t pos = 0; pos < len && !st;) {
        char *nl = memchr(data + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - data) : len;
        lineno++;
        if (!nl) st = qc_error(QIAO_ERR_FORMAT, "%s:%lld: last line has no newline", path, (long long)lineno);
        else st = check_line(path, lineno, data + pos, end - pos, stats);
        pos = end + 1;
    }
    free(data);
    return st;
}
