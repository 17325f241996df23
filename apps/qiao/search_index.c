/* apps/qiao/search_index.c - `qiao search index` on the public index API:
 * open the index (or start one), add the roots and the lines of the text
 * files with `mirror`, save when anything changed, and turn the library's
 * notices into the command's stderr lines. The index is reached through qiao.h alone. See
 * search_index.h. */
#define _XOPEN_SOURCE 700 /* stat, realpath */

#include "search_index.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/core.h" /* qc_error: the command's messages are the thread's last error, as the library's */

static void on_notice(qiao_log_level level, const char *path, const char *message, void *user_data) {
    (void)path;
    const search_update_params *p = user_data;
    /* Warnings always; what is simply not media only when asked. */
    if (level <= QIAO_LOG_WARN || p->verbose) fprintf(stderr, "qiao search: %s\n", message);
}

static void on_progress(const qiao_index_progress *pr, void *user_data) {
    const search_update_params *p = user_data;
    p->progress(pr->done, pr->total, pr->embedded, pr->seconds, p->progress_user_data);
}

static void on_text_progress(const qiao_index_progress *pr, void *user_data) {
    const search_update_params *p = user_data;
    p->text_progress(pr->done, pr->total, pr->embedded, pr->seconds, p->progress_user_data);
}

/* ---- text files --------------------------------------------------------------- */

/* A text file bigger than this is not a list of documents to embed line by
 * line (a gigabyte of lines takes days on a CPU). */
#define TEXT_FILE_MAX ((size_t)1 << 30)

/* The documents of the text files: texts[i] points into its file's bytes
 * (each line cut in place), keys[i] is "PATH:N" (owned). */
typedef struct text_docs {
    char **bufs, **files;    /* (n_files) each file's bytes and real path, owned */
    size_t n_files;
    const char **keys, **texts;
    size_t n, cap;
} text_docs;

static void text_docs_free(text_docs *d) {
    for (size_t i = 0; i < d->n_files; i++) {
        free(d->bufs[i]);
        free(d->files[i]);
    }
    for (size_t i = 0; i < d->n; i++) free((void *)d->keys[i]);
    free(d->bufs);
    free(d->files);
    free((void *)d->keys);
    free((void *)d->texts);
    memset(d, 0, sizeof *d);
}

static qiao_status text_docs_add(text_docs *d, const char *abs, size_t line, const char *text) {
    if (d->n == d->cap) {
        size_t cap = d->cap ? 2 * d->cap : 256;
        const char **k = realloc((void *)d->keys, cap * sizeof *k);
        if (k) d->keys = k;
        const char **t = k ? realloc((void *)d->texts, cap * sizeof *t) : NULL;
        if (!t) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory reading %s", abs);
        d->texts = t;
        d->cap = cap;
    }
    size_t len = strlen(abs) + 24;
    char *key = malloc(len);
    if (!key) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory reading %s", abs);
    snprintf(key, len, "%s:%zu", abs, line);
    d->keys[d->n] = key;
    d->texts[d->n++] = text;
    return QIAO_OK;
}

/* Reads one text file's lines into d. A file read before (the same real
 * path) is not read again: its keys would repeat. */
static qiao_status read_text_file(const char *path, text_docs *d, search_update_stats *stats) {
    uint8_t *data = NULL;
    size_t size = 0;
    qiao_status st = qc_read_file(path, TEXT_FILE_MAX, &data, &size);
    if (st == QIAO_ERR_TOO_LARGE)
        return qc_error(QIAO_ERR_TOO_LARGE, "%s: over %zu bytes, too much to embed line by line", path, TEXT_FILE_MAX);
    if (st != QIAO_OK) return st;
    char *abs = realpath(path, NULL);
    /* One byte more for the last line's end. */
    char *buf = abs ? realloc(data, size + 1) : NULL;
    char **bufs = buf ? realloc(d->bufs, (d->n_files + 1) * sizeof *bufs) : NULL;
    if (bufs) d->bufs = bufs;
    char **files = bufs ? realloc(d->files, (d->n_files + 1) * sizeof *files) : NULL;
    if (files) d->files = files;
    if (!files) {
        st = abs ? qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory reading %s", path)
                 : qc_error(QIAO_ERR_IO, "%s: %s", path, strerror(errno));
        free(abs);
        if (buf) free(buf);
        else free(data);
        return st;
    }
    for (size_t i = 0; i < d->n_files; i++)
        if (!strcmp(d->files[i], abs)) {
            free(abs);
            free(buf);
            return QIAO_OK;
        }
    buf[size] = '\0';
    d->bufs[d->n_files] = buf;
    d->files[d->n_files++] = abs;
    size_t line = 0;
    for (char *s = buf; st == QIAO_OK && s < buf + size;) {
        char *nl = memchr(s, '\n', (size_t)(buf + size - s)), *end = nl ? nl : buf + size;
        line++;
        size_t len = (size_t)(end - s);
        if (len && s[len - 1] == '\r') len--;
        size_t ok = qc_utf8_check(s, len);
        if (memchr(s, '\0', len)) {
            fprintf(stderr, "qiao search: %s:%zu: holds a NUL byte, not indexed\n", path, line);
            stats->texts_failed++;
        } else if (ok < len) {
            fprintf(stderr, "qiao search: %s:%zu: invalid UTF-8 at byte %zu, not indexed\n", path, line, ok);
            stats->texts_failed++;
        } else if (!qc_utf8_blank(s, len)) {
            s[len] = '\0';
            st = text_docs_add(d, abs, line, s);
        }
        s = end + 1;
    }
    return st;
}

qiao_status search_update(const search_update_params *p, search_update_stats *stats) {
    memset(stats, 0, sizeof *stats);
    if (!p || !p->model_path || !p->index_path || (p->n_roots && !p->roots) || (p->n_text_files && !p->text_files))
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "search_update: model, index and roots are required");
    qiao_index_params ip = qiao_index_default_params();
    ip.n_threads = p->n_threads;
    qiao_index *ix = NULL;
    /* The model first: a bad --model is reported as such, whatever --out is. */
    qiao_status st = qiao_index_create(p->model_path, p->index_path, &ip, &ix);
    if (st != QIAO_OK) return st;
    /* Then the text files: one that cannot be read stops the run before any work. */
    text_docs docs;
    memset(&docs, 0, sizeof docs);
    for (size_t i = 0; st == QIAO_OK && i < p->n_text_files; i++) st = read_text_file(p->text_files[i], &docs, stats);
    struct stat sb;
    if (st != QIAO_OK) {
        /* reported below */
    } else if (stat(p->index_path, &sb) == 0) {
        st = qiao_index_load(ix, p->index_path);
        if (st == QIAO_ERR_INVALID_ARGUMENT) {
            /* Another model's index: start afresh, so everything is embedded again. */
            stats->model_changed = true;
            st = QIAO_OK;
        } else if (st != QIAO_OK) {
            char msg[1024];
            snprintf(msg, sizeof msg, "%s", qiao_last_error());
            st = qc_error(st, "%s exists and is not a valid search index (not overwritten; remove it or choose "
                              "another --out): %s", p->index_path, msg);
        }
    } else if (errno != ENOENT) {
        st = qc_error(QIAO_ERR_IO, "%s: %s", p->index_path, strerror(errno));
    }
    qiao_index_add_stats as;
    memset(&as, 0, sizeof as);
    if (st == QIAO_OK) {
        qiao_index_add_params ap = qiao_index_add_default_params();
        ap.mirror = 1;
        ap.batch = p->batch < 1 ? 1 : p->batch > 512 ? 512 : p->batch;
        ap.progress = p->progress ? on_progress : NULL;
        ap.progress_user_data = (void *)p;
        ap.cancel = p->cancel;
        ap.cancel_user_data = p->cancel_user_data;
        ap.notice = on_notice;
        ap.notice_user_data = (void *)p;
        st = qiao_index_add_files(ix, p->roots, p->n_roots, &ap, &as);
    }
    stats->found = as.found;
    stats->embedded = as.embedded;
    stats->kept = as.kept;
    stats->removed = as.removed;
    stats->failed = as.failed;
    stats->skipped_known = as.skipped_known;
    stats->pending = as.pending;
    qiao_index_add_stats ts;
    memset(&ts, 0, sizeof ts);
    if (st == QIAO_OK) {
        qiao_index_add_params ap = qiao_index_add_default_params();
        ap.mirror = 1; /* the lines of these files and nothing else */
        ap.batch = p->batch < 1 ? 1 : p->batch > 512 ? 512 : p->batch;
        ap.progress = p->text_progress ? on_text_progress : NULL;
        ap.progress_user_data = (void *)p;
        ap.cancel = p->cancel;
        ap.cancel_user_data = p->cancel_user_data;
        st = qiao_index_add_texts(ix, docs.keys, docs.texts, docs.n, &ap, &ts);
        stats->texts_embedded = ts.embedded;
        stats->texts_removed = ts.removed;
        stats->texts_pending = ts.pending;
    }
    text_docs_free(&docs);
    /* A cancel while listing (found is 0 then) changed nothing: leave the
     * file. A cancel among the texts comes after the files were done. */
    bool listed = st == QIAO_OK || (st == QIAO_ERR_CANCELLED && (as.found > 0 || ts.found > 0));
    if (listed && qiao_index_modified(ix)) {
        qiao_status ws = qiao_index_save(ix, NULL);
        if (ws != QIAO_OK) st = ws;
        else stats->written = true;
    }
    stats->images = (int64_t)qiao_index_count(ix, QIAO_INDEX_IMAGE);
    stats->audios = (int64_t)qiao_index_count(ix, QIAO_INDEX_AUDIO);
    stats->texts = (int64_t)qiao_index_count(ix, QIAO_INDEX_TEXT);
    qiao_index_free(ix);
    return st;
}
