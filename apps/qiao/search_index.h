/* apps/qiao/search_index.h - `qiao search index` as a function: bring an
 * index file up to date with a set of files and folders, on the public
 * qiao_index API (qiao.h, "Search index"), printing what it passes by.
 * cmd_search.c, cmd_demo.c and the tests call it.
 *
 * The index itself (format, fingerprint, walk, ranking) is library code in
 * sdk/api/search*.c. Its private header is included here for the tests,
 * which still read index files directly (search_index_read, search_rank);
 * search_update, cmd_search.c and cmd_demo.c reach the index through qiao.h
 * alone. */
#ifndef QIAO_APP_SEARCH_INDEX_H
#define QIAO_APP_SEARCH_INDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <qiao.h>

#include "api/search.h"

/* Progress of an update, after each batch: `done` of `total` files to
 * decode and embed this run, `embedded` of them succeeded; `seconds` since
 * embedding began. */
typedef void (*search_progress_fn)(int64_t done, int64_t total, int64_t embedded, double seconds, void *user_data);

typedef struct search_update_params {
    const char *model_path;
    const char *index_path;          /* read when present, then (re)written */
    const char *const *roots;        /* files and folders to index */
    size_t n_roots;
    const char *const *text_files;   /* files of documents, one per line (search_update below) */
    size_t n_text_files;
    int n_threads;                   /* session threads; 0 = all cores */
    int batch;                       /* files per embedding batch; clamped to 1..512 */
    int verbose;                     /* nonzero: a note on stderr for each file not indexed */
    search_progress_fn progress;     /* may be NULL */
    search_progress_fn text_progress; /* the same for the texts, counted in lines; may be NULL */
    void *progress_user_data;         /* of both */
    qiao_cancel_fn cancel;           /* polled after listing and between batches; may be NULL */
    void *cancel_user_data;
} search_update_params;

typedef struct search_update_stats {
    int64_t found;           /* regular, non-hidden files under the roots */
    int64_t embedded;        /* new or changed files embedded this run */
    int64_t kept;            /* unchanged: the stored embedding was kept */
    int64_t removed;         /* in the old index, no longer found */
    int64_t failed;          /* not indexed this run: not media, or decoding/embedding failed */
    int64_t skipped_known;   /* unchanged files an earlier run found not to be media */
    int64_t pending;         /* left for the next run after a cancel */
    int64_t images, audios;  /* items in the index written */
    int64_t texts;           /* text items in the index written */
    int64_t texts_embedded;  /* lines of the text files embedded this run */
    int64_t texts_removed;   /* text items no longer among those lines */
    int64_t texts_failed;    /* lines not indexed: not UTF-8 or holding a NUL byte */
    int64_t texts_pending;   /* lines left out after a cancel */
    bool model_changed;      /* an old index of another model: everything re-embedded */
    bool written;            /* false when nothing changed and the file was left alone */
} search_update_stats;

/* Makes the index at index_path hold exactly the image and audio files
 * under the roots (qiao_index_add_files with `mirror`; its rules for what
 * is kept, embedded, skipped and removed) and the lines of the text files
 * (qiao_index_add_texts with `mirror`: every line is embedded again, with
 * the model's document prompt), then writes it when anything changed. A
 * text file holds one document per line (UTF-8; a "\r" before the "\n" is
 * dropped; blank lines are skipped; a line that is not UTF-8 or holds a NUL
 * is reported and skipped); each line's key is "PATH:N", the file's real
 * path and the line's number from 1. A text file that cannot be read is
 * QIAO_ERR_IO before anything is embedded. A file not indexed is reported on stderr ("qiao search: ..."),
 * one that is simply not media, and whatever the walk passes by, only with
 * `verbose`. The model is loaded first, so its errors come first. An
 * existing index_path that is not a valid index is refused
 * (QIAO_ERR_FORMAT or QIAO_ERR_IO, saying it was not overwritten), so a
 * mistyped --out never overwrites a model; one of another model is
 * replaced, everything re-embedded. When `cancel` asks to stop, what was
 * embedded so far is written and QIAO_ERR_CANCELLED returned. `stats` is
 * filled in either case. */
qiao_status search_update(const search_update_params *p, search_update_stats *stats);

#endif /* QIAO_APP_SEARCH_INDEX_H */
