/* sdk/api/search_file.c - the search index file: reading and validating it
 * (from a path or from bytes in memory, one parser for both, which is what
 * tests/fuzz/fuzz_search_index.c drives) and writing it. Kept apart from
 * the indexing in search_update.c so the reader can be compiled into the
 * fuzzer without the model, decoders and sessions. See search.h for the
 * format. */
#define _POSIX_C_SOURCE 200809L /* strdup */

#include "search.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/core.h"
#include "core/safetensors.h"

/* JSON numbers are doubles: integers above this are not exact. */
#define JSON_INT_MAX 9007199254740992.0

const char *search_kind_name(search_kind kind) {
    return kind == SEARCH_AUDIO ? "audio" : kind == SEARCH_TEXT ? "text" : "image";
}

bool search_fingerprint_equal(const search_fingerprint *a, const search_fingerprint *b) {
    return !strcmp(a->name, b->name) && !strcmp(a->space, b->space) && a->dim == b->dim && a->params == b->params &&
           a->file_size == b->file_size && a->hash == b->hash;
}

void search_files_free(search_file *v, size_t n) {
    for (size_t i = 0; v && i < n; i++) free(v[i].path);
    free(v);
}

void search_index_free(search_index *idx) {
    if (!idx) return;
    free(idx->model);
    search_files_free(idx->items, idx->n);
    search_files_free(idx->skipped, idx->n_skipped);
    free(idx->emb);
    memset(idx, 0, sizeof *idx);
}

/* ---- reading ------------------------------------------------------------------ */

/* An integer-valued JSON number in [lo, 2^53]. */
static bool json_int(const cJSON *obj, const char *key, int64_t lo, int64_t *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsNumber(v)) return false;
    double d = v->valuedouble;
    if (!(d >= (double)lo && d <= JSON_INT_MAX) || d != (double)(int64_t)d) return false;
    *out = (int64_t)d;
    return true;
}

/* A string of decimal digits (optionally signed) that fits int64. */
static bool json_i64_string(const cJSON *obj, const char *key, int64_t *out) {
    const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(obj, key));
    if (!s || !*s) return false;
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || (s[0] != '-' && (s[0] < '0' || s[0] > '9'))) return false;
    *out = (int64_t)v;
    return true;
}

/* One entry of "items" (with_kind) or "skipped". `what` is "items[3]".
 * Version 1 knows only files of images and audio; version 2 adds items
 * that are not files (no "size" and "mtime_ns") and the kind "text". */
static qiao_status parse_file(const char *fn, const cJSON *e, bool with_kind, int64_t version, const char *what,
                              search_file *out) {
    if (!cJSON_IsObject(e)) return qc_error(QIAO_ERR_FORMAT, "%s: qiao.index: %s is not an object", fn, what);
    const char *path = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "path"));
    if (!path || !*path) return qc_error(QIAO_ERR_FORMAT, "%s: qiao.index: %s has no \"path\"", fn, what);
    /* cJSON passes any bytes through; keys are promised to be UTF-8. */
    if (!qc_utf8_valid(path, strlen(path)))
        return qc_error(QIAO_ERR_FORMAT, "%s: qiao.index: %s: \"path\" is not valid UTF-8", fn, what);
    if (with_kind) {
        const char *kind = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "kind"));
        if (kind && !strcmp(kind, "image")) out->kind = SEARCH_IMAGE;
        else if (kind && !strcmp(kind, "audio")) out->kind = SEARCH_AUDIO;
        else if (kind && version >= 2 && !strcmp(kind, "text")) out->kind = SEARCH_TEXT;
        else
            return qc_error(QIAO_ERR_FORMAT, "%s: qiao.index: %s (%s): \"kind\" must be \"image\"%s or \"audio\"",
                            fn, what, path, version >= 2 ? ", \"text\"" : "");
    }
    out->is_file = true;
    if (with_kind && version >= 2 && !cJSON_GetObjectItemCaseSensitive(e, "size") &&
        !cJSON_GetObjectItemCaseSensitive(e, "mtime_ns")) {
        out->is_file = false; /* a vector added by key */
    } else if (!json_int(e, "size", 0, &out->size))
        return qc_error(QIAO_ERR_FORMAT, "%s: qiao.index: %s (%s): \"size\" must be a non-negative integer", fn, what,
                        path);
    if (out->is_file && !json_i64_string(e, "mtime_ns", &out->mtime_ns))
        return qc_error(QIAO_ERR_FORMAT, "%s: qiao.index: %s (%s): \"mtime_ns\" must be a string of digits", fn, what,
                        path);
    out->path = strdup(path);
    if (!out->path) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    return QIAO_OK;
}

/* Parses a JSON array of files into a new array; a NULL array is empty. */
static qiao_status parse_files(const char *fn, const cJSON *arr, const char *key, bool with_kind, int64_t version,
                               search_file **out, size_t *n_out) {
    *out = NULL;
    *n_out = 0;
    if (!arr) return QIAO_OK;
    if (!cJSON_IsArray(arr)) return qc_error(QIAO_ERR_FORMAT, "%s: qiao.index: \"%s\" is not an array", fn, key);
    size_t n = (size_t)cJSON_GetArraySize(arr);
    if (n == 0) return QIAO_OK;
    search_file *v = calloc(n, sizeof *v);
    if (!v) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory for %zu %s", fn, n, key);
    *out = v;
    size_t i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, arr) {
        char what[64];
        snprintf(what, sizeof what, "%s[%zu]", key, i);
        qiao_status st = parse_file(fn, e, with_kind, version, what, &v[i]);
        if (st != QIAO_OK) return st; /* v[0 .. i) are owned by *out, freed by the caller */
        *n_out = ++i;
    }
    return QIAO_OK;
}

static qiao_status parse_fingerprint(const char *fn, const cJSON *o, search_fingerprint *fp) {
    const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "name"));
    const char *hash = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "hash"));
    char *end = NULL;
    if (!cJSON_IsObject(o) || !name || strlen(name) >= sizeof fp->name || !json_int(o, "dim", 1, &fp->dim) ||
        !json_int(o, "params", 0, &fp->params) || !json_int(o, "file_size", 0, &fp->file_size) || !hash ||
        strlen(hash) != 16 || (fp->hash = strtoull(hash, &end, 16), *end))
        return qc_error(QIAO_ERR_FORMAT,
                        "%s: qiao.index: \"fingerprint\" must be {\"name\", \"dim\" >= 1, \"params\", \"file_size\", "
                        "\"hash\": 16 hex digits}",
                        fn);
    snprintf(fp->name, sizeof fp->name, "%s", name);
    return QIAO_OK;
}

/* The top-level "space", or the fingerprint's name for an index written
 * before spaces were named (a model without "space" is in its name's). */
static qiao_status parse_space(const char *fn, const cJSON *root, search_fingerprint *fp) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "space");
    if (!v) {
        snprintf(fp->space, sizeof fp->space, "%s", fp->name);
        return QIAO_OK;
    }
    const char *s = cJSON_GetStringValue(v);
    size_t n = s ? strlen(s) : 0;
    if (!n || n >= sizeof fp->space || !qc_utf8_valid(s, n))
        return qc_error(QIAO_ERR_FORMAT, "%s: qiao.index: \"space\" must be a string of 1 to %zu bytes of UTF-8", fn,
                        sizeof fp->space - 1);
    memcpy(fp->space, s, n + 1);
    return QIAO_OK;
}

static int cmp_file_ptr(const void *a, const void *b) {
    return strcmp((*(const search_file *const *)a)->path, (*(const search_file *const *)b)->path);
}

/* One item per path: a key names one vector (qiao_index_remove and
 * qiao_index_add_embedding find it by its key). */
static qiao_status check_unique(const char *fn, const search_index *idx) {
    if (idx->n < 2) return QIAO_OK;
    const search_file **by = malloc(idx->n * sizeof *by);
    if (!by) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory for %zu items", fn, idx->n);
    for (size_t i = 0; i < idx->n; i++) by[i] = &idx->items[i];
    qsort(by, idx->n, sizeof *by, cmp_file_ptr);
    qiao_status st = QIAO_OK;
    for (size_t i = 1; i < idx->n && st == QIAO_OK; i++)
        if (!strcmp(by[i - 1]->path, by[i]->path))
            st = qc_error(QIAO_ERR_FORMAT, "%s: qiao.index: items[%zu] and items[%zu] have the same path (%s)", fn,
                          (size_t)(by[i - 1] - idx->items), (size_t)(by[i] - idx->items), by[i]->path);
    free(by);
    return st;
}

/* The first non-finite value of the (n, D) rows at `data` (not necessarily
 * aligned), as *row and *col; false when every value is finite. */
static bool find_nonfinite(const void *data, size_t n, size_t D, size_t *row, size_t *col, float *value) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n * D; i++) {
        float v;
        memcpy(&v, p + i * sizeof v, sizeof v);
        if (!isfinite(v)) {
            *row = i / D;
            *col = i % D;
            *value = v;
            return true;
        }
    }
    return false;
}

/* Parses and validates an open container. The rows are copied into
 * out->emb, unless `rows` is given: then *rows points at them inside the
 * container's bytes and out->emb stays NULL (the caller takes them). */
static qiao_status parse_index(const qc_st_file *f, const char *fn, search_index *out, const void **rows) {
    const char *meta = qc_st_metadata_get(f, SEARCH_INDEX_META);
    if (!meta)
        return qc_error(QIAO_ERR_FORMAT, "%s: not a qiao search index (no \"" SEARCH_INDEX_META "\" metadata)", fn);
    cJSON *root = cJSON_Parse(meta);
    if (!root) return qc_error(QIAO_ERR_FORMAT, "%s: qiao.index is not valid JSON", fn);
    qiao_status st = QIAO_OK;
    int64_t version = 0;
    const char *model = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(root, "model"));
    if (!cJSON_IsObject(root) || !json_int(root, "version", 1, &version)) {
        st = qc_error(QIAO_ERR_FORMAT, "%s: qiao.index: no \"version\"", fn);
    } else if (version > SEARCH_INDEX_VERSION) {
        st = qc_error(QIAO_ERR_UNSUPPORTED, "%s: index version %lld is newer than this qiao reads (%d)", fn,
                      (long long)version, SEARCH_INDEX_VERSION);
    } else if (!model) {
        st = qc_error(QIAO_ERR_FORMAT, "%s: qiao.index: no \"model\" path", fn);
    } else if (!(out->model = strdup(model))) {
        st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    }
    if (st == QIAO_OK) st = parse_fingerprint(fn, cJSON_GetObjectItemCaseSensitive(root, "fingerprint"), &out->fp);
    if (st == QIAO_OK) st = parse_space(fn, root, &out->fp);
    if (st == QIAO_OK) {
        const cJSON *items = cJSON_GetObjectItemCaseSensitive(root, "items");
        if (!items) st = qc_error(QIAO_ERR_FORMAT, "%s: qiao.index: no \"items\"", fn);
        else st = parse_files(fn, items, "items", true, version, &out->items, &out->n);
    }
    if (st == QIAO_OK)
        st = parse_files(fn, cJSON_GetObjectItemCaseSensitive(root, "skipped"), "skipped", false, version,
                         &out->skipped, &out->n_skipped);
    cJSON_Delete(root);
    if (st != QIAO_OK) return st;
    if ((st = check_unique(fn, out)) != QIAO_OK) return st;

    const qc_st_tensor *t = qc_st_find(f, SEARCH_INDEX_TENSOR);
    if (!t) return qc_error(QIAO_ERR_FORMAT, "%s: no tensor \"" SEARCH_INDEX_TENSOR "\"", fn);
    if (t->dtype != QIAO_DTYPE_F32 || t->ndim != 2)
        return qc_error(QIAO_ERR_FORMAT, "%s: tensor \"" SEARCH_INDEX_TENSOR "\" must be 2-d F32 (N, D)", fn);
    if (t->shape[0] != (int64_t)out->n || t->shape[1] != out->fp.dim)
        return qc_error(QIAO_ERR_FORMAT,
                        "%s: tensor \"" SEARCH_INDEX_TENSOR "\" is (%lld, %lld) but the index lists %zu items of a "
                        "%lld-d model",
                        fn, (long long)t->shape[0], (long long)t->shape[1], out->n, (long long)out->fp.dim);
    out->dim = out->fp.dim;
    /* A NaN row would rank as "nan" (every comparison with it false, so the
     * order of the whole list becomes arbitrary) and an infinite one as NaN. */
    size_t row, col;
    float bad;
    if (find_nonfinite(t->data, out->n, (size_t)out->dim, &row, &col, &bad))
        return qc_error(QIAO_ERR_FORMAT,
                        "%s: tensor \"" SEARCH_INDEX_TENSOR "\" row %zu (items[%zu], %s) holds a non-finite value (%g) "
                        "at column %zu",
                        fn, row, row, out->items[row].path, (double)bad, col);
    if (rows) {
        *rows = t->data;
    } else if (out->n > 0) {
        out->emb = malloc(t->nbytes);
        if (!out->emb) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory for %zu bytes", fn, t->nbytes);
        memcpy(out->emb, t->data, t->nbytes); /* the data need not be aligned */
    }
    return QIAO_OK;
}

/* Reads from borrowed bytes; with `rows`, as parse_index. */
static qiao_status read_bytes(const void *data, size_t size, const char *name, search_index *out, const void **rows) {
    memset(out, 0, sizeof *out);
    qc_st_file *f = NULL;
    qiao_status st = qc_st_open_memory(data, size, name, false, &f);
    if (st != QIAO_OK) return st; /* the message names the file */
    st = parse_index(f, name, out, rows);
    qc_st_close(f);
    if (st != QIAO_OK) search_index_free(out);
    return st;
}

qiao_status search_index_read_memory(const void *data, size_t size, const char *name, search_index *out) {
    if (!out) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "search_index_read_memory: out is NULL");
    return read_bytes(data, size, name ? name : "<memory>", out, NULL);
}

qiao_status search_index_read(const char *path, search_index *out) {
    memset(out, 0, sizeof *out);
    uint8_t *buf = NULL;
    size_t size = 0;
    /* No size limit of its own: the container's header bounds are checked
     * by the parser, and the rows are as large as the collection. */
    qiao_status st = qc_read_file(path, (size_t)PTRDIFF_MAX, &buf, &size);
    if (st != QIAO_OK) return st;
    const void *rows = NULL;
    st = read_bytes(buf, size, path, out, &rows);
    if (st == QIAO_OK && out->n > 0) {
        /* The rows become out->emb in the buffer that holds them, so reading
         * an index needs the file's size in memory once, not twice. */
        size_t nbytes = out->n * (size_t)out->dim * sizeof(float);
        memmove(buf, rows, nbytes);
        float *emb = realloc(buf, nbytes);
        out->emb = emb ? emb : (float *)(void *)buf;
        buf = NULL;
    }
    free(buf);
    return st;
}

/* ---- writing ------------------------------------------------------------------ */

static cJSON *file_json(const search_file *f, bool with_kind) {
    char mt[32];
    snprintf(mt, sizeof mt, "%lld", (long long)f->mtime_ns);
    cJSON *o = cJSON_CreateObject();
    if (!o || !cJSON_AddStringToObject(o, "path", f->path) ||
        (with_kind && !cJSON_AddStringToObject(o, "kind", search_kind_name(f->kind))) ||
        (f->is_file &&
         (!cJSON_AddNumberToObject(o, "size", (double)f->size) || !cJSON_AddStringToObject(o, "mtime_ns", mt)))) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

/* Version 1 when every item is a file of an image or audio, so that a reader
 * of version 1 (an older qiao) still opens an index of files. */
static int version_needed(const search_index *idx) {
    for (size_t i = 0; i < idx->n; i++)
        if (!idx->items[i].is_file || idx->items[i].kind == SEARCH_TEXT) return 2;
    return 1;
}

/* `order` (n) lists the items in the order written. */
static char *index_json(const search_index *idx, const size_t *order) {
    char hash[17];
    snprintf(hash, sizeof hash, "%016llx", (unsigned long long)idx->fp.hash);
    cJSON *root = cJSON_CreateObject(), *fp = cJSON_CreateObject(), *items = cJSON_CreateArray(),
          *skipped = cJSON_CreateArray();
    bool ok = root && fp && items && skipped;
    if (ok) {
        ok = cJSON_AddNumberToObject(root, "version", version_needed(idx)) &&
             cJSON_AddStringToObject(root, "model", idx->model ? idx->model : "") &&
             cJSON_AddStringToObject(root, "space", idx->fp.space[0] ? idx->fp.space : idx->fp.name) &&
             cJSON_AddStringToObject(fp, "name", idx->fp.name) &&
             cJSON_AddNumberToObject(fp, "dim", (double)idx->fp.dim) &&
             cJSON_AddNumberToObject(fp, "params", (double)idx->fp.params) &&
             cJSON_AddNumberToObject(fp, "file_size", (double)idx->fp.file_size) &&
             cJSON_AddStringToObject(fp, "hash", hash);
        cJSON_AddItemToObject(root, "fingerprint", fp);
        cJSON_AddItemToObject(root, "items", items);
        cJSON_AddItemToObject(root, "skipped", skipped);
    } else {
        cJSON_Delete(fp);
        cJSON_Delete(items);
        cJSON_Delete(skipped);
    }
    for (size_t i = 0; ok && i < idx->n; i++) {
        cJSON *o = file_json(&idx->items[order[i]], true);
        ok = o && cJSON_AddItemToArray(items, o);
    }
    for (size_t i = 0; ok && i < idx->n_skipped; i++) {
        cJSON *o = file_json(&idx->skipped[i], false);
        ok = o && cJSON_AddItemToArray(skipped, o);
    }
    char *s = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    return s;
}

qiao_status search_index_write(const char *path, const search_index *idx) {
    size_t row, col;
    float bad;
    /* The reader refuses such a file, so never write one. */
    if (find_nonfinite(idx->emb, idx->n, (size_t)idx->dim, &row, &col, &bad))
        return qc_error(QIAO_ERR_INVALID_ARGUMENT,
                        "%s: not written: the embedding of %s (row %zu) holds a non-finite value (%g) at column %zu",
                        path, idx->items[row].path, row, (double)bad, col);
    /* Items go out in path order, whatever their order in memory (a key
     * added or removed through the API does not move the others). */
    size_t D = (size_t)idx->dim;
    size_t *order = malloc((idx->n ? idx->n : 1) * sizeof *order);
    const search_file **by = malloc((idx->n ? idx->n : 1) * sizeof *by);
    if (!order || !by) {
        free(order);
        free(by);
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory for %zu items", path, idx->n);
    }
    bool sorted = true;
    for (size_t i = 0; i < idx->n; i++) {
        by[i] = &idx->items[i];
        if (i && strcmp(idx->items[i - 1].path, idx->items[i].path) > 0) sorted = false;
    }
    if (!sorted) qsort(by, idx->n, sizeof *by, cmp_file_ptr);
    for (size_t i = 0; i < idx->n; i++) order[i] = (size_t)(by[i] - idx->items);
    free(by);
    const float *rows = idx->emb;
    float *permuted = NULL;
    if (!sorted) {
        permuted = malloc(idx->n * D * sizeof(float));
        if (!permuted) {
            free(order);
            return qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory for %zu items", path, idx->n);
        }
        for (size_t i = 0; i < idx->n; i++) memcpy(permuted + i * D, idx->emb + order[i] * D, D * sizeof(float));
        rows = permuted;
    }
    char *json = index_json(idx, order);
    free(order);
    if (!json) {
        free(permuted);
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory for the index header", path);
    }
    qc_st_entry e = {.name = SEARCH_INDEX_TENSOR, .dtype = QIAO_DTYPE_F32, .ndim = 2,
                     .shape = {(int64_t)idx->n, idx->dim}, .data = rows, .from_f32 = false};
    qc_st_kv kv = {SEARCH_INDEX_META, json};
    qiao_status st = qc_st_write(path, &e, 1, &kv, 1);
    cJSON_free(json);
    free(permuted);
    return st;
}
