/* The public search index (qiao.h, "Search index"): a search_index (search.h)
 * with its model, the locks that let queries run beside a writer, a pool
 * of sessions for the queries that embed a text, picture or recording, and
 * the documents added by key (qiao_index_add_texts), embedded here in
 * batches and put in place under the key table.
 *
 * Locking: `write_mu` is held for the whole of every writing call (add,
 * remove, load, save), so writers take turns and a writer may read `idx`
 * without the rwlock (nobody else changes it). `rw` guards `idx`, `cap` and
 * `modified` between a writer and the queries: a query holds it shared while
 * it ranks; a writer holds it exclusively only to put its result in place,
 * never while it decodes or embeds. `slots` (the row of each key) is the
 * writers' alone. */
#define _GNU_SOURCE /* strdup, pthread_rwlock_t, pthread_rwlockattr_setkind_np */

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "search.h"

struct qiao_index {
    search_model m;              /* the model, its real path and fingerprint; owned */
    char *path;                  /* where save writes; NULL for memory only; owned */
    qiao_index_params params;
    pthread_mutex_t write_mu;
    pthread_rwlock_t rw;
    search_index idx;            /* idx.model is m.path's copy, idx.fp == m.fp */
    size_t cap;                  /* items and rows allocated in idx (>= idx.n) */
    bool modified;
    size_t *slots;               /* (n_slots) rows by key hash; NULL until a writer needs it */
    size_t n_slots, n_used;      /* n_used counts rows and tombstones */
    pthread_mutex_t pool_mu;
    qiao_session **pool;         /* (n_pool) idle sessions for queries and adds */
    size_t n_pool, cap_pool;
};

/* ---- params ------------------------------------------------------------------- */

QIAO_API qiao_index_params qiao_index_default_params(void) {
    qiao_index_params p;
    memset(&p, 0, sizeof p);
    p.struct_size = sizeof p;
    return p;
}

QIAO_API qiao_index_add_params qiao_index_add_default_params(void) {
    qiao_index_add_params p;
    memset(&p, 0, sizeof p);
    p.struct_size = sizeof p;
    p.recurse = 1;
    p.batch = 32;
    return p;
}

QIAO_API qiao_index_query_params qiao_index_query_default_params(void) {
    qiao_index_query_params p;
    memset(&p, 0, sizeof p);
    p.struct_size = sizeof p;
    p.top_k = 10;
    p.kind = QIAO_INDEX_ANY;
    return p;
}

static qiao_status read_index_params(const qiao_index_params *in, qiao_index_params *p) {
    *p = qiao_index_default_params();
    qiao_status st = qc_params_read(p, sizeof *p, in, offsetof(qiao_index_params, n_threads) + sizeof(int),
                                    "qiao_index_default_params");
    if (st != QIAO_OK) return st;
    if (p->n_threads < 0)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_index_params: n_threads is %d, need >= 0", p->n_threads);
    return QIAO_OK;
}

/* ---- making and freeing -------------------------------------------------------- */

/* The fingerprints differ: say which model made the index and which was
 * given. Another space first: the vectors could not be compared at all,
 * which says more than that the files differ. */
static qiao_status mismatch(const char *index_path, const search_fingerprint *f, const search_model *m) {
    if (strcmp(f->space, m->fp.space) != 0)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT,
                        "%s holds vectors of the embedding space \"%s\" (model %s), but %s embeds into \"%s\": "
                        "vectors of different spaces cannot be compared",
                        index_path, f->space, f->name, m->path, m->fp.space);
    return qc_error(QIAO_ERR_INVALID_ARGUMENT,
                    "%s was built with another model (%s, %lld-d, %lld bytes, hash %016llx) than %s (%s, %lld-d, "
                    "%lld bytes, hash %016llx)",
                    index_path, f->name, (long long)f->dim, (long long)f->file_size, (unsigned long long)f->hash,
                    m->path, m->fp.name, (long long)m->fp.dim, (long long)m->fp.file_size,
                    (unsigned long long)m->fp.hash);
}

/* A new, empty index owning *m (cleared here, whatever happens). */
static qiao_status new_index(search_model *m, const char *path, const qiao_index_params *params, qiao_index **out) {
    qiao_index *ix = calloc(1, sizeof *ix);
    if (!ix) {
        search_model_free(m);
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "qiao_index: out of memory");
    }
    ix->m = *m;
    memset(m, 0, sizeof *m);
    ix->params = *params;
    bool mu = pthread_mutex_init(&ix->write_mu, NULL) == 0;
    /* glibc's default lets new readers in while a writer waits, so a steady
     * stream of queries could keep a writer out for good. A writer here
     * holds the lock only to swap pointers, so preferring it costs queries
     * next to nothing. (No reader takes the lock twice, which this kind
     * would deadlock.) */
    pthread_rwlockattr_t ra;
    bool rw = pthread_rwlockattr_init(&ra) == 0;
#ifdef __GLIBC__
    if (rw) pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
#endif
    if (rw) {
        rw = pthread_rwlock_init(&ix->rw, &ra) == 0;
        pthread_rwlockattr_destroy(&ra);
    }
    bool pool = pthread_mutex_init(&ix->pool_mu, NULL) == 0;
    ix->idx.model = strdup(ix->m.path);
    ix->path = path ? strdup(path) : NULL;
    ix->idx.fp = ix->m.fp;
    ix->idx.dim = ix->m.fp.dim;
    if (!mu || !rw || !pool || !ix->idx.model || (path && !ix->path)) {
        if (mu) pthread_mutex_destroy(&ix->write_mu);
        if (rw) pthread_rwlock_destroy(&ix->rw);
        if (pool) pthread_mutex_destroy(&ix->pool_mu);
        search_index_free(&ix->idx);
        search_model_free(&ix->m);
        free(ix->path);
        free(ix);
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "qiao_index: out of memory or locks");
    }
    *out = ix;
    return QIAO_OK;
}

QIAO_API qiao_status qiao_index_create(const char *model_path, const char *index_path,
                                       const qiao_index_params *params, qiao_index **out) {
    if (!out) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_index_create: out is NULL");
    *out = NULL;
    if (!model_path) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_index_create: model_path is NULL");
    qiao_index_params p;
    qiao_status st = read_index_params(params, &p);
    if (st != QIAO_OK) return st;
    search_model m;
    if ((st = search_model_load(model_path, &m)) != QIAO_OK) return st;
    if ((st = new_index(&m, index_path, &p, out)) != QIAO_OK) return st;
    (*out)->modified = true; /* never saved */
    return QIAO_OK;
}

/* Reads the index file at `path` for the model `m`: refuses another model's,
 * and gives the file's items with m's path as the model. *stored_moved says
 * whether the file recorded another path for the model. */
static qiao_status read_for_model(const char *path, const search_model *m, search_index *out, bool *stored_moved) {
    qiao_status st = search_index_read(path, out);
    if (st != QIAO_OK) return st;
    if (!search_fingerprint_equal(&out->fp, &m->fp)) {
        st = mismatch(path, &out->fp, m);
        search_index_free(out);
        return st;
    }
    *stored_moved = strcmp(out->model, m->path) != 0;
    char *model = strdup(m->path);
    if (!model) {
        search_index_free(out);
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    }
    free(out->model);
    out->model = model;
    return QIAO_OK;
}

QIAO_API qiao_status qiao_index_open(const char *index_path, const char *model_path,
                                     const qiao_index_params *params, qiao_index **out) {
    if (!out) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_index_open: out is NULL");
    *out = NULL;
    if (!index_path) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_index_open: index_path is NULL");
    qiao_index_params p;
    qiao_status st = read_index_params(params, &p);
    if (st != QIAO_OK) return st;
    /* The index first: its errors come before the model's, and it names
     * the model when the caller does not. */
    search_index file;
    if ((st = search_index_read(index_path, &file)) != QIAO_OK) return st;
    search_model m;
    st = search_model_load(model_path ? model_path : file.model, &m);
    if (st != QIAO_OK) {
        if (!model_path) {
            char msg[1024];
            snprintf(msg, sizeof msg, "%s", qiao_last_error());
            st = qc_error(st, "%s (the model path stored in %s)", msg, index_path);
        }
        search_index_free(&file);
        return st;
    }
    if (!search_fingerprint_equal(&file.fp, &m.fp)) {
        st = mismatch(index_path, &file.fp, &m);
        search_index_free(&file);
        search_model_free(&m);
        return st;
    }
    bool moved = strcmp(file.model, m.path) != 0;
    if ((st = new_index(&m, index_path, &p, out)) != QIAO_OK) {
        search_index_free(&file);
        return st;
    }
    qiao_index *ix = *out;
    free(file.model);
    file.model = ix->idx.model;
    ix->idx = file;
    ix->cap = file.n;
    ix->modified = moved;
    return QIAO_OK;
}

static void pool_free(qiao_index *ix) {
    for (size_t i = 0; i < ix->n_pool; i++) qiao_session_free(ix->pool[i]);
    free(ix->pool);
    ix->pool = NULL;
    ix->n_pool = ix->cap_pool = 0;
}

QIAO_API void qiao_index_free(qiao_index *index) {
    if (!index) return;
    pool_free(index);
    free(index->slots);
    search_index_free(&index->idx);
    search_model_free(&index->m);
    free(index->path);
    pthread_mutex_destroy(&index->write_mu);
    pthread_rwlock_destroy(&index->rw);
    pthread_mutex_destroy(&index->pool_mu);
    free(index);
}

/* ---- sessions ------------------------------------------------------------------ */

/* An idle session of the index's model, or a new one: one per call in
 * flight, so concurrent queries never share one. */
static qiao_status session_take(qiao_index *ix, qiao_session **out) {
    pthread_mutex_lock(&ix->pool_mu);
    *out = ix->n_pool ? ix->pool[--ix->n_pool] : NULL;
    pthread_mutex_unlock(&ix->pool_mu);
    if (*out) return QIAO_OK;
    qiao_session_params sp = qiao_session_default_params();
    sp.n_threads = ix->params.n_threads;
    return qiao_session_new(ix->m.model, &sp, out);
}

static void session_give(qiao_index *ix, qiao_session *s) {
    pthread_mutex_lock(&ix->pool_mu);
    if (ix->n_pool == ix->cap_pool) {
        size_t cap = ix->cap_pool ? 2 * ix->cap_pool : 4;
        qiao_session **p = realloc(ix->pool, cap * sizeof *p);
        if (p) {
            ix->pool = p;
            ix->cap_pool = cap;
        }
    }
    if (ix->n_pool < ix->cap_pool) {
        ix->pool[ix->n_pool++] = s;
        s = NULL;
    }
    pthread_mutex_unlock(&ix->pool_mu);
    qiao_session_free(s); /* only when the pool could not grow */
}

/* ---- reading ------------------------------------------------------------------- */

QIAO_API const qiao_model *qiao_index_model(const qiao_index *index) { return index ? index->m.model : NULL; }

QIAO_API const char *qiao_index_model_path(const qiao_index *index) { return index ? index->m.path : ""; }

QIAO_API int64_t qiao_index_dim(const qiao_index *index) { return index ? index->m.fp.dim : 0; }

QIAO_API size_t qiao_index_count(qiao_index *index, int kind) {
    if (!index) return 0;
    pthread_rwlock_rdlock(&index->rw);
    size_t n = 0;
    for (size_t i = 0; i < index->idx.n; i++) n += kind < 0 || (int)index->idx.items[i].kind == kind;
    pthread_rwlock_unlock(&index->rw);
    return n;
}

QIAO_API int qiao_index_modified(qiao_index *index) {
    if (!index) return 0;
    pthread_rwlock_rdlock(&index->rw);
    int m = index->modified;
    pthread_rwlock_unlock(&index->rw);
    return m;
}

/* ---- writing ------------------------------------------------------------------- */

/* Puts `next` in place of the index's items (taking it) and frees the old. */
static void swap_in(qiao_index *ix, search_index *next, bool modified) {
    search_index old;
    pthread_rwlock_wrlock(&ix->rw);
    old = ix->idx;
    ix->idx = *next;
    ix->cap = next->n;
    ix->modified = modified;
    pthread_rwlock_unlock(&ix->rw);
    memset(next, 0, sizeof *next);
    search_index_free(&old);
    free(ix->slots); /* rows moved: made again when a writer needs them */
    ix->slots = NULL;
    ix->n_slots = ix->n_used = 0;
}

QIAO_API qiao_status qiao_index_load(qiao_index *index, const char *path) {
    if (!index || !path) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_index_load: index and path are required");
    pthread_mutex_lock(&index->write_mu);
    search_index file;
    bool moved = false;
    qiao_status st = read_for_model(path, &index->m, &file, &moved);
    if (st == QIAO_OK) swap_in(index, &file, moved || !index->path || strcmp(path, index->path) != 0);
    pthread_mutex_unlock(&index->write_mu);
    return st;
}

QIAO_API qiao_status qiao_index_save(qiao_index *index, const char *path) {
    if (!index) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_index_save: index is NULL");
    const char *to = path ? path : index->path;
    if (!to) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_index_save: the index is in memory only: give a path");
    pthread_mutex_lock(&index->write_mu);
    /* No writer runs, and queries only read: idx stays as it is. */
    qiao_status st = search_index_write(to, &index->idx);
    if (st == QIAO_OK && (!path || (index->path && !strcmp(path, index->path)))) {
        pthread_rwlock_wrlock(&index->rw);
        index->modified = false;
        pthread_rwlock_unlock(&index->rw);
    }
    pthread_mutex_unlock(&index->write_mu);
    return st;
}

static qiao_status read_add_params(const qiao_index_add_params *in, qiao_index_add_params *p) {
    *p = qiao_index_add_default_params();
    qiao_status st = qc_params_read(p, sizeof *p, in, offsetof(qiao_index_add_params, recurse) + sizeof(int),
                                    "qiao_index_add_default_params");
    if (st != QIAO_OK) return st;
    if (p->batch < 1 || p->batch > 512)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_index_add_params: batch is %d, need 1..512", p->batch);
    return QIAO_OK;
}

QIAO_API qiao_status qiao_index_add_files(qiao_index *index, const char *const *paths, size_t n,
                                          const qiao_index_add_params *params, qiao_index_add_stats *stats) {
    qiao_index_add_stats local;
    if (!stats) stats = &local;
    memset(stats, 0, sizeof *stats);
    if (!index || (n && !paths))
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_index_add_files: index and paths are required");
    qiao_index_add_params p;
    qiao_status st = read_add_params(params, &p);
    if (st != QIAO_OK) return st;
    search_add_params sp = {.roots = paths, .n_roots = n, .recurse = p.recurse != 0, .mirror = p.mirror != 0,
                            .batch = p.batch, .exclude = {index->path, index->m.path}, .progress = p.progress,
                            .progress_user_data = p.progress_user_data, .cancel = p.cancel,
                            .cancel_user_data = p.cancel_user_data, .notice = p.notice,
                            .notice_user_data = p.notice_user_data};
    pthread_mutex_lock(&index->write_mu);
    qiao_session *session = NULL;
    st = session_take(index, &session);
    if (st == QIAO_OK) {
        search_index next;
        bool changed = false;
        /* Decoding and embedding run without the rwlock: queries go on. */
        st = search_add_files(&sp, session, &index->idx, &next, stats, &changed);
        if (next.model) swap_in(index, &next, index->modified || changed);
        session_give(index, session);
    }
    pthread_mutex_unlock(&index->write_mu);
    return st;
}

/* ---- keys ---------------------------------------------------------------------
 * The row of each key, so that adding or removing one item costs the same
 * in an index of any size: open addressing with linear probing over a
 * power-of-two table at most half full (rows and tombstones together), so
 * every probe sequence meets an empty slot. Writers only, under write_mu. */

#define SLOT_EMPTY SIZE_MAX
#define SLOT_GONE (SIZE_MAX - 1)

/* FNV-1a. */
static uint64_t key_hash(const char *k) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (const unsigned char *c = (const unsigned char *)k; *c; c++) h = (h ^ *c) * 0x100000001b3ull;
    return h;
}

/* A table for `rows` rows (the index's and those about to come), without tombstones. */
static qiao_status keys_rebuild(qiao_index *ix, size_t rows) {
    size_t n = 16;
    while (n / 4 < rows) {
        if (n > SIZE_MAX / 2 / sizeof(size_t)) return qc_error(QIAO_ERR_TOO_LARGE, "qiao_index: %zu keys", rows);
        n *= 2;
    }
    size_t *t = malloc(n * sizeof *t);
    if (!t) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "qiao_index: out of memory for %zu keys", rows);
    for (size_t i = 0; i < n; i++) t[i] = SLOT_EMPTY;
    for (size_t r = 0; r < ix->idx.n; r++) {
        size_t p = (size_t)key_hash(ix->idx.items[r].path) & (n - 1);
        while (t[p] != SLOT_EMPTY) p = (p + 1) & (n - 1);
        t[p] = r;
    }
    free(ix->slots);
    ix->slots = t;
    ix->n_slots = n;
    ix->n_used = ix->idx.n;
    return QIAO_OK;
}

/* The slot holding `key` (*found), or else the slot where it goes: the
 * first tombstone or empty slot on its probe sequence. */
static size_t keys_find(const qiao_index *ix, const char *key, bool *found) {
    size_t mask = ix->n_slots - 1, p = (size_t)key_hash(key) & mask, free_slot = SLOT_EMPTY;
    for (;; p = (p + 1) & mask) {
        size_t r = ix->slots[p];
        if (r == SLOT_EMPTY) break;
        if (r == SLOT_GONE) {
            if (free_slot == SLOT_EMPTY) free_slot = p;
        } else if (!strcmp(ix->idx.items[r].path, key)) {
            *found = true;
            return p;
        }
    }
    *found = false;
    return free_slot != SLOT_EMPTY ? free_slot : p;
}

/* Room for `need` items. Grown under the write lock (the caller holds rw
 * exclusively): a query may be reading the old arrays. Doubling, so adding
 * one item at a time costs the same in an index of any size. */
static qiao_status reserve_rows(qiao_index *ix, size_t need, const char *fn) {
    search_index *idx = &ix->idx;
    if (need <= ix->cap) return QIAO_OK;
    size_t cap = ix->cap ? 2 * ix->cap : 16, bytes;
    if (cap < need) cap = need;
    search_file *items = NULL;
    float *emb = NULL;
    if (qc_mul_size(cap, (size_t)idx->dim * sizeof(float), &bytes) && cap <= SIZE_MAX / sizeof *items &&
        (items = realloc(idx->items, cap * sizeof *items)))
        idx->items = items;
    if (!items || !(emb = realloc(idx->emb, bytes)))
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory for %zu items", fn, cap);
    idx->emb = emb;
    ix->cap = cap;
    return QIAO_OK;
}

QIAO_API qiao_status qiao_index_add_embedding(qiao_index *index, const char *key, qiao_index_kind kind,
                                              const float *vec, size_t dim) {
    if (!index || !key || !vec)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_index_add_embedding: index, key and vec are required");
    size_t D = (size_t)index->m.fp.dim;
    if (!*key || !qc_utf8_valid(key, strlen(key)))
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_index_add_embedding: the key must be non-empty UTF-8");
    if ((int)kind < QIAO_INDEX_IMAGE || (int)kind > QIAO_INDEX_TEXT)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_index_add_embedding: kind %d is not a qiao_index_kind",
                        (int)kind);
    if (dim != D)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT,
                        "qiao_index_add_embedding: %s: the vector has %zu dimensions, the index's model (%s) makes "
                        "%zu",
                        key, dim, index->m.fp.name, D);
    for (size_t c = 0; c < D; c++)
        if (!isfinite(vec[c]))
            return qc_error(QIAO_ERR_INVALID_ARGUMENT,
                            "qiao_index_add_embedding: %s: the vector holds a non-finite value (%g) at %zu", key,
                            (double)vec[c], c);
    char *copy = strdup(key);
    if (!copy) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "qiao_index_add_embedding: out of memory");
    pthread_mutex_lock(&index->write_mu);
    search_index *idx = &index->idx;
    qiao_status st = QIAO_OK;
    /* One more row may come: keep the table at most half full. */
    if (!index->slots || 2 * (index->n_used + 1) > index->n_slots) st = keys_rebuild(index, idx->n + 1);
    if (st == QIAO_OK) {
        bool found = false;
        size_t slot = keys_find(index, key, &found), i = found ? index->slots[slot] : idx->n;
        pthread_rwlock_wrlock(&index->rw);
        if (!found) st = reserve_rows(index, idx->n + 1, "qiao_index_add_embedding");
        if (st == QIAO_OK) {
            if (found) {
                free(idx->items[i].path);
            } else {
                idx->n++;
                if (index->slots[slot] == SLOT_EMPTY) index->n_used++;
                index->slots[slot] = i;
            }
            idx->items[i] = (search_file){.path = copy, .kind = (search_kind)kind, .is_file = false};
            memcpy(idx->emb + i * D, vec, D * sizeof(float));
            index->modified = true;
            copy = NULL;
        }
        pthread_rwlock_unlock(&index->rw);
    }
    pthread_mutex_unlock(&index->write_mu);
    free(copy);
    return st;
}

/* Removes the item in `slot` (which holds one). The last item takes its
 * row: order in memory means nothing (ranking breaks ties by key, the file
 * is written in key order). The caller holds write_mu and rw exclusively. */
static void remove_slot(qiao_index *ix, size_t slot) {
    search_index *idx = &ix->idx;
    size_t D = (size_t)idx->dim, i = ix->slots[slot], last = idx->n - 1;
    ix->slots[slot] = SLOT_GONE;
    if (i != last) {
        bool there = false;
        size_t q = keys_find(ix, idx->items[last].path, &there);
        if (there) ix->slots[q] = i;
    }
    free(idx->items[i].path);
    idx->n = last;
    if (i != last) {
        idx->items[i] = idx->items[last];
        memcpy(idx->emb + i * D, idx->emb + last * D, D * sizeof(float));
    }
    ix->modified = true;
}

QIAO_API qiao_status qiao_index_remove(qiao_index *index, const char *key) {
    if (!index || !key) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_index_remove: index and key are required");
    pthread_mutex_lock(&index->write_mu);
    qiao_status st = index->slots ? QIAO_OK : keys_rebuild(index, index->idx.n);
    bool found = false;
    size_t slot = st == QIAO_OK ? keys_find(index, key, &found) : 0;
    if (st == QIAO_OK && !found) {
        st = qc_error(QIAO_ERR_NOT_FOUND, "qiao_index_remove: no item has the key %s", key);
    } else if (st == QIAO_OK) {
        pthread_rwlock_wrlock(&index->rw);
        remove_slot(index, slot);
        pthread_rwlock_unlock(&index->rw);
    }
    pthread_mutex_unlock(&index->write_mu);
    return st;
}

/* ---- texts ---------------------------------------------------------------------- */

typedef struct text_key {
    const char *key;
    size_t i;
} text_key;

static int cmp_text_key(const void *a, const void *b) {
    const text_key *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    return c ? c : (x->i > y->i) - (x->i < y->i);
}

/* Every key and text checked before anything is embedded, so a bad one
 * costs nothing and names itself. */
static qiao_status check_texts(const char *const *keys, const char *const *texts, size_t n) {
    static const char fn[] = "qiao_index_add_texts";
    for (size_t i = 0; i < n; i++) {
        if (!keys[i] || !*keys[i] || !qc_utf8_valid(keys[i], strlen(keys[i])))
            return qc_error(QIAO_ERR_INVALID_ARGUMENT, "%s: keys[%zu] must be a non-empty UTF-8 string", fn, i);
        if (!texts[i]) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "%s: texts[%zu] (key %s) is NULL", fn, i, keys[i]);
        size_t len = strlen(texts[i]), ok = qc_utf8_check(texts[i], len);
        if (ok < len)
            return qc_error(QIAO_ERR_FORMAT, "%s: texts[%zu] (key %s): invalid UTF-8 at byte %zu (0x%02X)", fn, i,
                            keys[i], ok, (unsigned)(unsigned char)texts[i][ok]);
        if (qc_utf8_blank(texts[i], len))
            return qc_error(QIAO_ERR_INVALID_ARGUMENT, "%s: texts[%zu] (key %s) is %s: there is nothing to embed",
                            fn, i, keys[i], len ? "only white space" : "empty");
    }
    if (n < 2) return QIAO_OK;
    /* One key names one item: a second text under it would silently win. */
    text_key *by = malloc(n * sizeof *by);
    if (!by) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory for %zu keys", fn, n);
    for (size_t i = 0; i < n; i++) by[i] = (text_key){keys[i], i};
    qsort(by, n, sizeof *by, cmp_text_key);
    qiao_status st = QIAO_OK;
    for (size_t k = 1; k < n && st == QIAO_OK; k++)
        if (!strcmp(by[k - 1].key, by[k].key))
            st = qc_error(QIAO_ERR_INVALID_ARGUMENT, "%s: keys[%zu] and keys[%zu] are the same (%s)", fn, by[k - 1].i,
                          by[k].i, by[k].key);
    free(by);
    return st;
}

/* Embeds texts[0 ..) in batches of p->batch after the model's document
 * prompt into rows (n, D); *done counts the texts embedded. A cancel is
 * polled before the first batch and between batches (QIAO_ERR_CANCELLED,
 * *done the batches finished). */
static qiao_status embed_texts(qiao_index *ix, qiao_session *s, const char *const *keys, const char *const *texts,
                               size_t n, const qiao_index_add_params *p, float *rows, size_t *done) {
    static const char fn[] = "qiao_index_add_texts";
    const char *prompt = qiao_model_prompt(ix->m.model, "document");
    size_t plen = strlen(prompt), B = (size_t)p->batch, D = (size_t)ix->m.fp.dim;
    const char **batch = malloc(B * sizeof *batch);
    char **owned = calloc(B, sizeof *owned);
    qiao_status st = batch && owned ? QIAO_OK : qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    double t0 = qc_now();
    *done = 0;
    if (st == QIAO_OK && n && p->cancel && p->cancel(p->cancel_user_data))
        st = qc_error(QIAO_ERR_CANCELLED, "%s: cancelled before the first batch", fn);
    while (st == QIAO_OK && *done < n) {
        size_t b = n - *done < B ? n - *done : B;
        for (size_t k = 0; k < b && st == QIAO_OK; k++) {
            const char *t = texts[*done + k];
            batch[k] = t;
            if (!plen) continue;
            size_t len = strlen(t);
            if (!(owned[k] = malloc(plen + len + 1))) {
                st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
                break;
            }
            memcpy(owned[k], prompt, plen);
            memcpy(owned[k] + plen, t, len + 1);
            batch[k] = owned[k];
        }
        float *out = rows + *done * D;
        if (st == QIAO_OK) st = qiao_embed_texts(s, batch, b, out, b * D);
        for (size_t k = 0; k < b; k++) {
            free(owned[k]);
            owned[k] = NULL;
        }
        if (st != QIAO_OK && st != QIAO_ERR_OUT_OF_MEMORY) {
            char msg[1024];
            snprintf(msg, sizeof msg, "%s", qiao_last_error());
            st = qc_error(st, "%s: texts[%zu .. %zu): %s", fn, *done, *done + b, msg);
        }
        /* The index refuses such a row (it would rank as "nan"). */
        for (size_t k = 0; st == QIAO_OK && k < b; k++)
            for (size_t c = 0; c < D; c++)
                if (!isfinite(out[k * D + c])) {
                    st = qc_error(QIAO_ERR_INVALID_ARGUMENT,
                                  "%s: texts[%zu] (key %s): the model gives a non-finite embedding (%g at %zu; are "
                                  "its weights finite?)",
                                  fn, *done + k, keys[*done + k], (double)out[k * D + c], c);
                    break;
                }
        if (st != QIAO_OK) break;
        *done += b;
        if (p->progress) {
            qiao_index_progress pr = {.done = (int64_t)*done, .total = (int64_t)n, .embedded = (int64_t)*done,
                                      .seconds = qc_now() - t0};
            p->progress(&pr, p->progress_user_data);
        }
        if (*done < n && p->cancel && p->cancel(p->cancel_user_data))
            st = qc_error(QIAO_ERR_CANCELLED, "%s: cancelled: %zu of %zu texts left for the next call", fn, n - *done,
                          n);
    }
    free(batch);
    free(owned);
    return st;
}

/* Puts rows (done, D) in under keys[0 .. done) as text items, replacing
 * items of the same keys, and with `mirror` removes the other text items
 * (not those of keys[done .. n), which the call has not reached): all of it
 * in one exclusive section, so a query sees the index before or after. The
 * caller holds write_mu. On failure the index is as it was. */
static qiao_status put_texts(qiao_index *ix, const char *const *keys, size_t n, size_t done, const float *rows,
                             bool mirror, qiao_index_add_stats *stats) {
    static const char fn[] = "qiao_index_add_texts";
    search_index *idx = &ix->idx;
    size_t D = (size_t)idx->dim, n_new = 0, n_victims = 0;
    char **copies = calloc(done ? done : 1, sizeof *copies);
    const char **victims = NULL;
    qiao_status st = copies ? QIAO_OK : qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    for (size_t i = 0; st == QIAO_OK && i < done; i++)
        if (!(copies[i] = strdup(keys[i]))) st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    /* The table stays at most half full with every new key in. */
    if (st == QIAO_OK && (!ix->slots || 2 * (ix->n_used + done) > ix->n_slots)) st = keys_rebuild(ix, idx->n + done);
    if (st == QIAO_OK && mirror) {
        bool *keep = calloc(idx->n ? idx->n : 1, sizeof *keep);
        victims = malloc((idx->n ? idx->n : 1) * sizeof *victims);
        if (!keep || !victims) st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
        for (size_t i = 0; st == QIAO_OK && i < n; i++) {
            bool found = false;
            size_t slot = keys_find(ix, keys[i], &found);
            if (found) keep[ix->slots[slot]] = true;
        }
        for (size_t r = 0; st == QIAO_OK && r < idx->n; r++)
            if (idx->items[r].kind == SEARCH_TEXT && !keep[r]) victims[n_victims++] = idx->items[r].path;
        free(keep);
    }
    for (size_t i = 0; st == QIAO_OK && i < done; i++) {
        bool found = false;
        keys_find(ix, keys[i], &found);
        n_new += !found;
    }
    if (st == QIAO_OK) {
        pthread_rwlock_wrlock(&ix->rw);
        st = reserve_rows(ix, idx->n + n_new, fn);
        for (size_t i = 0; st == QIAO_OK && i < done; i++) {
            bool found = false;
            size_t slot = keys_find(ix, copies[i], &found), r = found ? ix->slots[slot] : idx->n;
            if (found) {
                free(idx->items[r].path);
            } else {
                idx->n++;
                if (ix->slots[slot] == SLOT_EMPTY) ix->n_used++;
                ix->slots[slot] = r;
            }
            idx->items[r] = (search_file){.path = copies[i], .kind = SEARCH_TEXT, .is_file = false};
            copies[i] = NULL;
            memcpy(idx->emb + r * D, rows + i * D, D * sizeof(float));
        }
        /* A victim's key is its item's own string, freed as it goes. */
        for (size_t v = 0; st == QIAO_OK && v < n_victims; v++) {
            bool found = false;
            size_t slot = keys_find(ix, victims[v], &found);
            if (found) remove_slot(ix, slot);
        }
        if (st == QIAO_OK && (done || n_victims)) ix->modified = true;
        pthread_rwlock_unlock(&ix->rw);
    }
    if (st == QIAO_OK) {
        stats->embedded = (int64_t)done;
        stats->removed = (int64_t)n_victims;
    }
    for (size_t i = 0; copies && i < done; i++) free(copies[i]);
    free(copies);
    free(victims);
    return st;
}

QIAO_API qiao_status qiao_index_add_texts(qiao_index *index, const char *const *keys, const char *const *texts,
                                          size_t n, const qiao_index_add_params *params,
                                          qiao_index_add_stats *stats) {
    qiao_index_add_stats local;
    if (!stats) stats = &local;
    memset(stats, 0, sizeof *stats);
    if (!index || (n && (!keys || !texts)))
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_index_add_texts: index, keys and texts are required");
    qiao_index_add_params p;
    qiao_status st = read_add_params(params, &p);
    if (st == QIAO_OK) st = check_texts(keys, texts, n);
    if (st != QIAO_OK) return st;
    size_t D = (size_t)index->m.fp.dim, bytes;
    if (!qc_mul_size(n ? n : 1, D * sizeof(float), &bytes))
        return qc_error(QIAO_ERR_TOO_LARGE, "qiao_index_add_texts: %zu texts: too many", n);
    float *rows = malloc(bytes);
    if (!rows) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "qiao_index_add_texts: out of memory for %zu texts", n);
    stats->found = (int64_t)n;
    pthread_mutex_lock(&index->write_mu);
    qiao_session *session = NULL;
    size_t done = 0;
    st = session_take(index, &session);
    if (st == QIAO_OK) {
        /* Embedding runs without the rwlock: queries go on. */
        st = embed_texts(index, session, keys, texts, n, &p, rows, &done);
        session_give(index, session);
    }
    if (st == QIAO_OK || st == QIAO_ERR_CANCELLED) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", qiao_last_error());
        qiao_status put = put_texts(index, keys, n, done, rows, p.mirror != 0, stats);
        if (put != QIAO_OK) st = put;
        else if (st == QIAO_ERR_CANCELLED) st = qc_error(st, "%s", msg); /* the cancel's message, not put's */
        if (st == QIAO_OK || st == QIAO_ERR_CANCELLED) stats->pending = (int64_t)(n - done);
    }
    pthread_mutex_unlock(&index->write_mu);
    free(rows);
    return st;
}

/* ---- queries ------------------------------------------------------------------- */

QIAO_API void qiao_index_hits_free(qiao_index_hit *hits) { free(hits); }

static qiao_status read_query_params(const qiao_index_query_params *in, qiao_index_query_params *p) {
    *p = qiao_index_query_default_params();
    qiao_status st = qc_params_read(p, sizeof *p, in, offsetof(qiao_index_query_params, top_k) + sizeof(size_t),
                                    "qiao_index_query_default_params");
    if (st != QIAO_OK) return st;
    if (p->kind < QIAO_INDEX_ANY || p->kind > QIAO_INDEX_TEXT)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_index_query_params: kind %d is not a qiao_index_kind or "
                                                   "QIAO_INDEX_ANY", p->kind);
    return QIAO_OK;
}

/* Ranks against q (dim floats) and copies the best top_k out: one block,
 * the hits then their keys, so the result outlives any later write. */
static qiao_status rank(qiao_index *ix, const float *q, const qiao_index_query_params *p, qiao_index_hit **hits,
                        size_t *n_hits) {
    pthread_rwlock_rdlock(&ix->rw);
    search_hit *h = NULL;
    size_t n = 0;
    qiao_status st = search_rank(&ix->idx, q, p->kind, &h, &n);
    if (st == QIAO_OK && p->top_k && n > p->top_k) n = p->top_k;
    size_t bytes = n * sizeof **hits;
    for (size_t k = 0; st == QIAO_OK && k < n; k++) bytes += strlen(h[k].key) + 1;
    qiao_index_hit *out = st == QIAO_OK && n ? malloc(bytes) : NULL;
    if (st == QIAO_OK && n && !out) st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "qiao_index_query: out of memory");
    if (out) {
        char *keys = (char *)(out + n);
        for (size_t k = 0; k < n; k++) {
            size_t len = strlen(h[k].key) + 1;
            memcpy(keys, h[k].key, len);
            out[k] = (qiao_index_hit){.key = keys, .kind = (qiao_index_kind)ix->idx.items[h[k].i].kind,
                                      .score = h[k].score};
            keys += len;
        }
        *hits = out;
        *n_hits = n;
    }
    pthread_rwlock_unlock(&ix->rw);
    free(h);
    return st;
}

static qiao_status query_begin(qiao_index *index, const void *what, const qiao_index_query_params *params,
                               qiao_index_hit **hits, size_t *n_hits, qiao_index_query_params *p, const char *fn) {
    if (hits) *hits = NULL;
    if (n_hits) *n_hits = 0;
    if (!index || !what || !hits || !n_hits)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "%s: index, query, hits and n_hits are required", fn);
    return read_query_params(params, p);
}

QIAO_API qiao_status qiao_index_query_vector(qiao_index *index, const float *vec, size_t dim,
                                             const qiao_index_query_params *params, qiao_index_hit **hits,
                                             size_t *n_hits) {
    qiao_index_query_params p;
    qiao_status st = query_begin(index, vec, params, hits, n_hits, &p, "qiao_index_query_vector");
    if (st != QIAO_OK) return st;
    if (dim != (size_t)index->m.fp.dim)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT,
                        "qiao_index_query_vector: the vector has %zu dimensions, the index's model (%s) makes %lld",
                        dim, index->m.fp.name, (long long)index->m.fp.dim);
    return rank(index, vec, &p, hits, n_hits);
}

enum { Q_TEXT, Q_IMAGE, Q_AUDIO };

/* Embeds the query with a pooled session (no index lock held), then ranks. */
static qiao_status query_embed(qiao_index *index, int what, const char *arg, const qiao_index_query_params *params,
                               qiao_index_hit **hits, size_t *n_hits, const char *fn) {
    qiao_index_query_params p;
    qiao_status st = query_begin(index, arg, params, hits, n_hits, &p, fn);
    if (st != QIAO_OK) return st;
    size_t D = (size_t)index->m.fp.dim;
    /* A text query goes in after the model's query prompt (e5's "query: "),
     * as the model was trained to see queries. */
    const char *prompt = what == Q_TEXT ? qiao_model_prompt(index->m.model, "query") : "";
    char *prompted = NULL;
    if (*prompt) {
        size_t len = strlen(arg), ok = qc_utf8_check(arg, len), plen = strlen(prompt);
        /* Checked here, so the byte named is the caller's, not one shifted by the prompt. */
        if (ok < len)
            return qc_error(QIAO_ERR_FORMAT, "%s: invalid UTF-8 at byte %zu (0x%02X)", fn, ok,
                            (unsigned)(unsigned char)arg[ok]);
        if (!(prompted = malloc(plen + len + 1))) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
        memcpy(prompted, prompt, plen);
        memcpy(prompted + plen, arg, len + 1);
        arg = prompted;
    }
    float *q = malloc(D * sizeof *q);
    if (!q) {
        free(prompted);
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    }
    qiao_session *s = NULL;
    st = session_take(index, &s);
    if (st == QIAO_OK) {
        st = what == Q_TEXT    ? qiao_embed_text(s, arg, q, D)
             : what == Q_IMAGE ? qiao_embed_image_file(s, arg, q, D)
                               : qiao_embed_audio_file(s, arg, q, D);
        session_give(index, s);
    }
    if (st == QIAO_OK) st = rank(index, q, &p, hits, n_hits);
    free(q);
    free(prompted);
    return st;
}

QIAO_API qiao_status qiao_index_query_text(qiao_index *index, const char *text,
                                           const qiao_index_query_params *params, qiao_index_hit **hits,
                                           size_t *n_hits) {
    return query_embed(index, Q_TEXT, text, params, hits, n_hits, "qiao_index_query_text");
}

QIAO_API qiao_status qiao_index_query_image(qiao_index *index, const char *path,
                                            const qiao_index_query_params *params, qiao_index_hit **hits,
                                            size_t *n_hits) {
    return query_embed(index, Q_IMAGE, path, params, hits, n_hits, "qiao_index_query_image");
}

QIAO_API qiao_status qiao_index_query_audio(qiao_index *index, const char *path,
                                            const qiao_index_query_params *params, qiao_index_hit **hits,
                                            size_t *n_hits) {
    return query_embed(index, Q_AUDIO, path, params, hits, n_hits, "qiao_index_query_audio");
}
