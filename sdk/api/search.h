/* sdk/api/search.h - the search index behind qiao.h's "Search index" (the
 * public qiao_index in search.c): its file format (search_file.c), the
 * model fingerprint that says whether stored embeddings are still valid,
 * ranking, and the walk-decode-embed-merge of a set of files and folders
 * (search_update.c). Private to the library; the tests, the fuzzer
 * (tests/fuzz/fuzz_search_index.c, the reader) and the CLI's internals
 * (apps/qiao/search_index.h) see it too.
 *
 * INDEX FILE: one .safetensors file (written atomically) with
 *   - tensor "embeddings" (N, D) F32: row i embeds items[i]; all finite;
 *   - metadata "qiao.index" = JSON
 *       {"version": 1 or 2,
 *        "model": "/abs/path/model.safetensors",
 *        "space": "intfloat/multilingual-e5-small",
 *        "fingerprint": {"name", "dim", "params", "file_size", "hash"},
 *        "items":   [{"path", "kind", "size", "mtime_ns"}...],
 *        "skipped": [{"path", "size", "mtime_ns"}...]}
 *     Version 1: every item is a file ("kind" "image" or "audio", with
 *     "size" and "mtime_ns"). Version 2 adds items that are not files (a
 *     vector added by key: no "size" and "mtime_ns") and the kind "text".
 *     The writer writes the lowest version that holds the index, so an
 *     index of files stays readable by a version-1 reader.
 *     File paths are absolute. "mtime_ns" is a string of decimal digits: a
 *     JSON number is a double and would round nanosecond times (2^60 > 2^53).
 *     "skipped" lists files that were found not to be media (or that failed
 *     to decode for a reason that does not go away by itself), so a rerun
 *     does not decode them again while they stay unchanged. Items are
 *     written in path (key) order.
 *     "space" is the model's embedding space (qiao_model_space); an index
 *     without it (written before spaces were named) is in the space of its
 *     fingerprint's name, as a model without one is. Readers of either
 *     version that do not know the key pass it by, so it needs no version.
 *
 * FINGERPRINT: the model's name, dimension, parameter count, file size and
 * a 64-bit hash of the whole model file. Any change to the weights changes
 * the hash, so an index is never silently mixed from two models; moving or
 * renaming the model file does not (the path is not part of it). The
 * space is compared first: a model of another space is refused saying so,
 * one of the same space but another file by the fingerprint.
 *
 * A search_index is plain data: whoever shares one between threads locks
 * (search.c does). */
#ifndef QIAO_API_SEARCH_H
#define QIAO_API_SEARCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <qiao.h>

#define SEARCH_INDEX_META "qiao.index"
#define SEARCH_INDEX_TENSOR "embeddings"
/* The newest version read and written; files are written as version 1
 * whenever they fit it (see above). */
#define SEARCH_INDEX_VERSION 2

/* The same numbers as qiao_index_kind. */
typedef enum search_kind { SEARCH_IMAGE = 0, SEARCH_AUDIO = 1, SEARCH_TEXT = 2 } search_kind;

/* "image", "audio" or "text". */
const char *search_kind_name(search_kind kind);

/* An item (a file or a vector added by key) or a skipped file. */
typedef struct search_file {
    char *path;          /* absolute file path or key, valid UTF-8; owned */
    search_kind kind;    /* meaningless in the skipped list */
    bool is_file;        /* size and mtime_ns are a file's; false for a vector added by key */
    int64_t size;        /* bytes; 0 when !is_file */
    int64_t mtime_ns;    /* modification time, ns since the epoch; 0 when !is_file */
} search_file;

typedef struct search_fingerprint {
    char name[64];       /* the config's name ("base", "tiny") */
    char space[256];     /* the model's embedding space (QMOD_SPACE_MAX); never empty */
    int64_t dim;         /* D */
    int64_t params;      /* parameter count */
    int64_t file_size;   /* bytes of the model file */
    uint64_t hash;       /* of the model file's bytes */
} search_fingerprint;

/* True when two fingerprints name the same model (every field equal). */
bool search_fingerprint_equal(const search_fingerprint *a, const search_fingerprint *b);

typedef struct search_index {
    char *model;             /* model path as stored; owned */
    search_fingerprint fp;
    int64_t dim;             /* D of the embeddings (== fp.dim) */
    search_file *items;      /* (n), in no particular order in memory */
    size_t n;
    float *emb;              /* (n, dim), owned; NULL when n == 0 */
    search_file *skipped;    /* (n_skipped) */
    size_t n_skipped;
} search_index;

/* Reads and validates an index file: the safetensors container, the JSON
 * (version, every field's type, kinds), N items == the tensor's rows, D ==
 * the fingerprint's dim, every value finite. Any defect is QIAO_ERR_FORMAT
 * naming the file and what is wrong (the row and its path for a non-finite
 * value; QIAO_ERR_UNSUPPORTED for a newer version). A path that cannot be
 * read, or that names a FIFO, device or folder, is QIAO_ERR_IO saying so,
 * without blocking (qc_read_file). On success the caller frees *out with
 * search_index_free(); on failure *out is cleared. */
qiao_status search_index_read(const char *path, search_index *out);
/* The same from a file image in memory (only read during the call); `name`
 * (NULL: "<memory>") stands for the file in messages. search_index_read is
 * this after reading the file. */
qiao_status search_index_read_memory(const void *data, size_t size, const char *name, search_index *out);
/* Writes the index atomically (temporary file, fsync, rename), items in
 * path order whatever their order in memory. A row with a non-finite value
 * is QIAO_ERR_INVALID_ARGUMENT naming its path, and nothing is written. */
qiao_status search_index_write(const char *path, const search_index *idx);
/* Frees what the index owns and clears it. Accepts NULL and a cleared index. */
void search_index_free(search_index *idx);
/* Frees an array of n files and their paths. Accepts NULL. */
void search_files_free(search_file *v, size_t n);

/* One ranked item: its cosine with the query and its index in idx->items. */
typedef struct search_hit {
    float score;
    size_t i;
    const char *key;         /* idx->items[i].path, for the tie order */
} search_hit;

/* Ranks the items of `kind` (-1: all kinds) against the query embedding q
 * (idx->dim floats): best first, ties in path (key) order so the output is
 * deterministic whatever the order in memory. *hits (malloc'd, the caller
 * frees it) holds *n entries. A query with a non-finite value is
 * QIAO_ERR_INVALID_ARGUMENT; errors leave *hits NULL. */
qiao_status search_rank(const search_index *idx, const float *q, int kind, search_hit **hits, size_t *n);

/* A loaded model with its fingerprint. */
typedef struct search_model {
    qiao_model *model;
    char *path;              /* absolute when it could be resolved; owned */
    search_fingerprint fp;
} search_model;

/* Reads the model file once, hashes it and loads the model from those
 * bytes. Errors are qiao_model_load()'s (QIAO_ERR_IO, QIAO_ERR_FORMAT). */
qiao_status search_model_load(const char *path, search_model *out);
void search_model_free(search_model *m);

/* ---- Adding files (search_update.c) --------------------------------------- */

typedef struct search_add_params {
    const char *const *roots;        /* files and folders to index */
    size_t n_roots;
    bool recurse;                    /* below a root folder's own files */
    bool mirror;                     /* drop file items the walk did not find, wherever they are */
    int batch;                       /* files per embedding batch, 1..512 */
    const char *exclude[2];          /* files never indexed (the index, the model); NULL entries are fine */
    qiao_index_progress_fn progress; /* may be NULL */
    void *progress_user_data;
    qiao_cancel_fn cancel;           /* polled after listing and between batches; may be NULL */
    void *cancel_user_data;
    qiao_index_notice_fn notice;     /* may be NULL */
    void *notice_user_data;
} search_add_params;

/* Walks the roots, merges what it finds with `old` (read only, so queries
 * may go on reading it) and embeds what is new or changed with `session`
 * (of the model `old` was made by), giving the index that results in *out:
 * qiao_index_add_files() without the locking (qiao.h says what it keeps,
 * embeds, removes and reports). *changed says whether *out differs from
 * `old`. On QIAO_OK, and on QIAO_ERR_CANCELLED after listing, *out is the
 * new index, which the caller frees; on other errors (and a cancel while
 * listing) *out is cleared and `old` stays what it is. */
qiao_status search_add_files(const search_add_params *p, qiao_session *session, const search_index *old,
                             search_index *out, qiao_index_add_stats *stats, bool *changed);

#endif /* QIAO_API_SEARCH_H */
