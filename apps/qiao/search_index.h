/* apps/qiao/search_index.h - the index behind `qiao search`: its file
 * format, the model fingerprint that says whether stored embeddings are
 * still valid, and the incremental (re)indexing of a set of files and
 * folders (the file in search_index_file.c, the rest in search_index.c).
 * cmd_search.c is the command line on top; the tests call these functions
 * directly, and tests/fuzz/fuzz_search_index.c the reader.
 *
 * INDEX FILE: one .safetensors file (written atomically) with
 *   - tensor "embeddings" (N, D) F32: row i embeds items[i]; all finite;
 *   - metadata "qiao.index" = JSON
 *       {"version": 1,
 *        "model": "/abs/path/model.safetensors",
 *        "fingerprint": {"name", "dim", "params", "file_size", "hash"},
 *        "items":   [{"path", "kind": "image"|"audio", "size", "mtime_ns"}...],
 *        "skipped": [{"path", "size", "mtime_ns"}...]}
 *     Paths are absolute. "mtime_ns" is a string of decimal digits: a JSON
 *     number is a double and would round nanosecond times (2^60 > 2^53).
 *     "skipped" lists files that were found not to be media (or that failed
 *     to decode for a reason that does not go away by itself), so a rerun
 *     does not decode them again while they stay unchanged.
 *
 * FINGERPRINT: the model's name, dimension, parameter count, file size and
 * a 64-bit hash of the whole model file. Any change to the weights changes
 * the hash, so an index is never silently mixed from two models; moving or
 * renaming the model file does not (the path is not part of it).
 *
 * Not thread-safe in any interesting way: one update at a time per index. */
#ifndef QIAO_SEARCH_INDEX_H
#define QIAO_SEARCH_INDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <qiao.h>

#define SEARCH_INDEX_META "qiao.index"
#define SEARCH_INDEX_TENSOR "embeddings"
#define SEARCH_INDEX_VERSION 1

typedef enum search_kind { SEARCH_IMAGE = 0, SEARCH_AUDIO = 1 } search_kind;

/* "image" or "audio". */
const char *search_kind_name(search_kind kind);

/* A file as the index remembers it. */
typedef struct search_file {
    char *path;          /* absolute, valid UTF-8; owned */
    search_kind kind;    /* meaningless in the skipped list */
    int64_t size;        /* bytes */
    int64_t mtime_ns;    /* modification time, ns since the epoch */
} search_file;

typedef struct search_fingerprint {
    char name[64];       /* the config's name ("base", "tiny") */
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
    search_file *items;      /* (n) */
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
/* Writes the index atomically (temporary file, fsync, rename). A row with a
 * non-finite value is QIAO_ERR_INVALID_ARGUMENT naming its path, and nothing
 * is written. */
qiao_status search_index_write(const char *path, const search_index *idx);
/* Frees what the index owns and clears it. Accepts NULL and a cleared index. */
void search_index_free(search_index *idx);
/* Frees an array of n files and their paths. Accepts NULL. */
void search_files_free(search_file *v, size_t n);

/* One ranked item: its cosine with the query and its index in idx->items. */
typedef struct search_hit {
    float score;
    size_t i;
} search_hit;

/* Ranks the items of `kind` (-1: all kinds) against the query embedding q
 * (idx->dim floats): best first, ties in index (path) order so the output is
 * deterministic. *hits (malloc'd, the caller frees it) holds *n entries.
 * A query with a non-finite value is QIAO_ERR_INVALID_ARGUMENT; errors
 * leave *hits NULL. */
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

/* ---- (Re)indexing ----------------------------------------------------------- */

/* Progress of an update, after each batch: `done` of `total` files to
 * decode and embed this run, `embedded` of them succeeded; `seconds` since
 * embedding began. */
typedef void (*search_progress_fn)(int64_t done, int64_t total, int64_t embedded, double seconds, void *user_data);

typedef struct search_update_params {
    const char *model_path;
    const char *index_path;          /* read when present, then (re)written */
    const char *const *roots;        /* files and folders to index */
    size_t n_roots;
    int n_threads;                   /* session threads; 0 = all cores */
    int batch;                       /* files per embedding batch; >= 1 */
    int verbose;                     /* nonzero: a note on stderr for each file not indexed */
    search_progress_fn progress;     /* may be NULL */
    void *progress_user_data;
    qiao_cancel_fn cancel;           /* polled between batches; may be NULL */
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
    bool model_changed;      /* an old index of another model: everything re-embedded */
    bool written;            /* false when nothing changed and the file was left alone */
} search_update_stats;

/* Walks the roots (recursively; names starting with '.' are skipped below a
 * root; symbolic links to files are followed, to anything else not), keeps
 * the stored embedding of every file whose (size, mtime_ns) did not change,
 * decodes the others (an image when qiao_image_decode_file accepts it, else
 * audio when qiao_audio_decode_file does), embeds them in batches and
 * writes the index. A file that cannot be decoded or embedded (a non-finite
 * embedding included) is reported on stderr and left out, never fatal; a
 * file that is simply not media, and whatever the walk passes by (a link to
 * a folder or device, a link loop, a dangling link, a FIFO), is reported
 * only with `verbose`, saying what it is. A missing root, or one that is
 * neither a file nor a folder, is QIAO_ERR_IO. The model and an existing
 * index are read with qc_read_file, so a FIFO or device there fails at once
 * (QIAO_ERR_IO naming what it is). An existing
 * index_path that is not a valid index is refused (QIAO_ERR_FORMAT), so a
 * mistyped --out never overwrites a model. When `cancel` asks to stop, what
 * was embedded so far is written and QIAO_ERR_CANCELLED returned. `stats`
 * is filled in either case. */
qiao_status search_update(const search_update_params *p, search_update_stats *stats);

#endif /* QIAO_SEARCH_INDEX_H */
