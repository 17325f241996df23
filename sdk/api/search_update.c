/* sdk/api/search_update.c - the model fingerprint, ranking, and adding
 * files to a search index: walk the roots, keep what did not change, decode
 * and embed the rest in batches (the next batch is decoded on a second
 * thread while the current one is embedded), merge with the index as it
 * was. Nothing here prints: what the walk passes by and what fails goes to
 * the caller's notice callback. The file format is search_file.c's, the
 * locking and the public functions search.c's; see search.h. */
#define _XOPEN_SOURCE 700 /* realpath, fstatat, st_mtim */

#include "search.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/core.h"

/* A batch stops growing past this many bytes of decoded pixels and samples
 * (one 12-megapixel photo is 36 MB), so --batch 32 of camera images does not
 * hold gigabytes; two batches are alive at once (one decoding, one embedding). */
#define BATCH_BYTES ((size_t)256 << 20)
/* Folders nested deeper than this are not entered (symbolic links to
 * folders are never followed, but bind mounts can still loop). */
#define MAX_DEPTH 128

/* ---- the model and its fingerprint ------------------------------------------- */

/* Not cryptographic: it only has to change when the weights do. 64-bit
 * words through an FNV-style multiply with a shift to mix high bits down,
 * then the splitmix64 finalizer. ~1 GB/s, so hashing the base model costs
 * less than loading it. */
static uint64_t hash_bytes(const unsigned char *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull ^ (uint64_t)n;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = (h ^ w) * 0x100000001b3ull;
        h ^= h >> 29;
    }
    for (; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebull;
    h ^= h >> 31;
    return h;
}

qiao_status search_model_load(const char *path, search_model *out) {
    memset(out, 0, sizeof *out);
    uint8_t *buf = NULL;
    size_t size = 0;
    /* No size limit of its own: the loader validates what the header declares. */
    qiao_status st = qc_read_file(path, (size_t)PTRDIFF_MAX, &buf, &size);
    if (st != QIAO_OK) return st;
    out->fp.hash = hash_bytes(buf, size);
    out->fp.file_size = (int64_t)size;
    st = qiao_model_load_memory(buf, size, &out->model);
    free(buf);
    if (st != QIAO_OK) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", qiao_last_error());
        return qc_error(st, "%s: %s", path, msg);
    }
    snprintf(out->fp.name, sizeof out->fp.name, "%s", qiao_model_name(out->model));
    snprintf(out->fp.space, sizeof out->fp.space, "%s", qiao_model_space(out->model));
    out->fp.dim = qiao_model_dim(out->model);
    out->fp.params = qiao_model_param_count(out->model);
    char *abs = realpath(path, NULL);
    out->path = abs ? abs : strdup(path);
    if (!out->path) {
        search_model_free(out);
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    }
    return QIAO_OK;
}

void search_model_free(search_model *m) {
    if (!m) return;
    qiao_model_free(m->model);
    free(m->path);
    memset(m, 0, sizeof *m);
}

/* ---- notices ------------------------------------------------------------------ */

/* Tells the caller about one path: a sentence naming it. */
static void notice(const search_add_params *p, qiao_log_level level, const char *path, const char *fmt, ...)
    QC_PRINTF(4, 5);
static void notice(const search_add_params *p, qiao_log_level level, const char *path, const char *fmt, ...) {
    if (!p->notice) return;
    char small[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    char *msg = small;
    if ((size_t)n >= sizeof small && (msg = malloc((size_t)n + 1)) != NULL) {
        va_start(ap, fmt);
        vsnprintf(msg, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    p->notice(level, path, msg ? msg : small, p->notice_user_data);
    if (msg != small) free(msg);
}

/* ---- walking the roots -------------------------------------------------------- */

typedef struct file_list {
    search_file *v;
    size_t n, cap;
} file_list;

/* A root as walked: its real path, and whether it is a folder. */
typedef struct walk_root {
    char *abs;
    bool dir;
} walk_root;

typedef struct walk_ctx {
    const search_add_params *p;
    file_list *list;
    /* Files the walk must not pick up: the index itself and the model. */
    dev_t ex_dev[2];
    ino_t ex_ino[2];
    int n_ex;
} walk_ctx;

static int64_t mtime_ns_of(const struct stat *sb) {
    return (int64_t)sb->st_mtim.tv_sec * 1000000000 + (int64_t)sb->st_mtim.tv_nsec;
}

static qiao_status list_add(walk_ctx *w, const char *path, const struct stat *sb) {
    for (int i = 0; i < w->n_ex; i++)
        if (sb->st_dev == w->ex_dev[i] && sb->st_ino == w->ex_ino[i]) return QIAO_OK;
    if (!qc_utf8_valid(path, strlen(path))) {
        /* The index stores paths in JSON, which must be UTF-8. */
        notice(w->p, QIAO_LOG_WARN, path, "skipping a file whose path is not valid UTF-8: %s", path);
        return QIAO_OK;
    }
    file_list *l = w->list;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 256;
        search_file *v = realloc(l->v, cap * sizeof *v);
        if (!v) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory listing files");
        l->v = v;
        l->cap = cap;
    }
    char *p = strdup(path);
    if (!p) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory listing files");
    l->v[l->n++] = (search_file){.path = p, .kind = SEARCH_IMAGE, .is_file = true, .size = (int64_t)sb->st_size,
                                 .mtime_ns = mtime_ns_of(sb)};
    return QIAO_OK;
}

/* Why stat() could not follow the link at `path` (err is its errno). */
static void report_unfollowable_link(const walk_ctx *w, const char *path, int err) {
    char target[1024];
    ssize_t n = readlink(path, target, sizeof target - 1);
    if (n < 0) n = 0;
    target[n] = '\0';
    if (err == ELOOP)
        notice(w->p, QIAO_LOG_INFO, path, "%s: symbolic link loop (ELOOP; -> %s), skipped", path, target);
    else if (err == ENOENT || err == ENOTDIR)
        notice(w->p, QIAO_LOG_INFO, path, "%s: dangling symbolic link (-> %s: %s), skipped", path, target,
               strerror(err));
    else
        notice(w->p, QIAO_LOG_INFO, path, "%s: symbolic link (-> %s) that cannot be followed: %s, skipped", path,
               target, strerror(err));
}

static qiao_status walk_dir(walk_ctx *w, const char *dir, int depth) {
    if (depth > MAX_DEPTH) {
        notice(w->p, QIAO_LOG_WARN, dir, "%s: nested more than %d folders deep, not entered", dir, MAX_DEPTH);
        return QIAO_OK;
    }
    DIR *d = opendir(dir);
    if (!d) {
        /* Not fatal: the rest of the tree is still indexed. */
        notice(w->p, QIAO_LOG_WARN, dir, "cannot read folder %s: %s", dir, strerror(errno));
        return QIAO_OK;
    }
    size_t dlen = strlen(dir);
    bool slash = dlen > 0 && dir[dlen - 1] == '/';
    qiao_status st = QIAO_OK;
    struct dirent *e;
    while (st == QIAO_OK && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue; /* ".", ".." and hidden files */
        size_t len = dlen + 1 + strlen(e->d_name) + 1;
        char *path = malloc(len);
        if (!path) {
            st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory listing %s", dir);
            break;
        }
        snprintf(path, len, "%s%s%s", dir, slash ? "" : "/", e->d_name);
        struct stat sb;
        if (lstat(path, &sb) != 0) {
            notice(w->p, QIAO_LOG_WARN, path, "cannot stat %s: %s", path, strerror(errno));
        } else if (S_ISDIR(sb.st_mode)) {
            if (w->p->recurse) st = walk_dir(w, path, depth + 1);
        } else if (S_ISLNK(sb.st_mode)) {
            struct stat tb;
            if (stat(path, &tb) != 0) {
                report_unfollowable_link(w, path, errno);
            } else if (S_ISREG(tb.st_mode)) {
                st = list_add(w, path, &tb);
            } else {
                notice(w->p, QIAO_LOG_INFO, path, "%s: symbolic link to %s, not followed", path,
                       qc_file_kind(tb.st_mode));
            }
        } else if (S_ISREG(sb.st_mode)) {
            st = list_add(w, path, &sb);
        } else {
            notice(w->p, QIAO_LOG_INFO, path, "%s: %s, skipped", path, qc_file_kind(sb.st_mode));
        }
        free(path);
    }
    closedir(d);
    return st;
}

static int cmp_file_path(const void *a, const void *b) {
    return strcmp(((const search_file *)a)->path, ((const search_file *)b)->path);
}

static int cmp_file_ptr_path(const void *a, const void *b) {
    return strcmp((*(const search_file *const *)a)->path, (*(const search_file *const *)b)->path);
}

static void roots_free(walk_root *r, size_t n) {
    for (size_t i = 0; r && i < n; i++) free(r[i].abs);
    free(r);
}

/* Every regular file under the roots, sorted by path, duplicates removed;
 * *roots_out (p->n_roots) the roots as walked. */
static qiao_status walk_roots(const search_add_params *p, file_list *out, walk_root **roots_out) {
    walk_ctx w = {.p = p, .list = out};
    for (int i = 0; i < 2; i++) {
        struct stat sb;
        if (p->exclude[i] && stat(p->exclude[i], &sb) == 0) {
            w.ex_dev[w.n_ex] = sb.st_dev;
            w.ex_ino[w.n_ex++] = sb.st_ino;
        }
    }
    walk_root *roots = calloc(p->n_roots ? p->n_roots : 1, sizeof *roots);
    if (!roots) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory for %zu paths", p->n_roots);
    *roots_out = roots;
    for (size_t i = 0; i < p->n_roots; i++) {
        struct stat sb;
        if (!p->roots[i]) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_index_add_files: paths[%zu] is NULL", i);
        if (stat(p->roots[i], &sb) != 0) return qc_error(QIAO_ERR_IO, "%s: %s", p->roots[i], strerror(errno));
        char *abs = realpath(p->roots[i], NULL);
        if (!abs) return qc_error(QIAO_ERR_IO, "%s: %s", p->roots[i], strerror(errno));
        roots[i] = (walk_root){abs, S_ISDIR(sb.st_mode)};
        qiao_status st = QIAO_OK;
        if (S_ISDIR(sb.st_mode)) st = walk_dir(&w, abs, 0);
        else if (S_ISREG(sb.st_mode)) st = list_add(&w, abs, &sb);
        else st = qc_error(QIAO_ERR_IO, "%s: is %s, not a file or folder", p->roots[i], qc_file_kind(sb.st_mode));
        if (st != QIAO_OK) return st;
    }
    if (out->n > 1) {
        qsort(out->v, out->n, sizeof *out->v, cmp_file_path);
        size_t k = 1;
        for (size_t i = 1; i < out->n; i++) {
            if (!strcmp(out->v[i].path, out->v[k - 1].path)) free(out->v[i].path);
            else out->v[k++] = out->v[i];
        }
        out->n = k;
    }
    return QIAO_OK;
}

/* True when the walk of `roots` would have found a file at `path` had it
 * been there: it is a root, or lies under a root folder (directly, unless
 * recursing) with no hidden name on the way. Such an item that the walk did
 * not find is gone. */
static bool covered(const search_add_params *p, const walk_root *roots, const char *path) {
    for (size_t i = 0; i < p->n_roots; i++) {
        const char *r = roots[i].abs;
        size_t n = strlen(r);
        if (!roots[i].dir) {
            if (!strcmp(path, r)) return true;
            continue;
        }
        if (n && r[n - 1] == '/') n--; /* the root "/" */
        if (strncmp(path, r, n) != 0 || path[n] != '/') continue;
        const char *rest = path + n + 1;
        if (rest[0] == '.' || strstr(rest, "/.")) continue; /* the walk does not look there */
        if (p->recurse || !strchr(rest, '/')) return true;
    }
    return false;
}

/* ---- decoding a batch (on the prefetch thread) -------------------------------- */

typedef struct decoded {
    size_t cand;             /* index into the candidate list */
    qiao_image *img;         /* exactly one of img, aud on success */
    qiao_audio *aud;
    qiao_status st;          /* QIAO_OK, or why the file is not indexed */
    bool not_media;          /* both decoders said QIAO_ERR_FORMAT */
    char *msg;               /* on failure; owned */
} decoded;

typedef struct batch_job {
    const search_file *cands;
    const size_t *todo;      /* candidate indices still to embed */
    size_t n_todo;
    size_t begin, end;       /* todo[begin .. end) taken into this batch */
    int batch;
    decoded *d;              /* (batch) */
    size_t n;
} batch_job;

static void set_failure(decoded *d, qiao_status st, bool not_media, const char *image_msg) {
    d->st = st;
    d->not_media = not_media;
    size_t n = strlen(qiao_last_error()) + (image_msg ? strlen(image_msg) : 0) + 32;
    d->msg = malloc(n);
    if (!d->msg) return;
    if (image_msg) snprintf(d->msg, n, "as an image: %s; as audio: %s", image_msg, qiao_last_error());
    else snprintf(d->msg, n, "%s", qiao_last_error());
}

/* True when the file name ends in an image, audio or video extension. Only
 * used to decide how loudly to report a file that failed to decode: files
 * are always recognised by their content. */
static bool media_name(const char *path) {
    static const char *const ext[] = {"jpg", "jpeg", "png", "gif", "bmp", "tga", "psd", "pnm", "ppm", "pgm",
                                      "hdr", "webp", "tif", "tiff", "avif", "heic", "jxl", "wav", "flac", "aif",
                                      "aiff", "ogg", "oga", "opus", "mp3", "m4a", "aac", "wma", "mp4", "m4v",
                                      "mkv", "webm", "mov", "avi"};
    const char *dot = strrchr(path, '.'), *slash = strrchr(path, '/');
    if (!dot || (slash && dot < slash) || strlen(dot + 1) > 8) return false;
    char low[9];
    size_t n = 0;
    for (const char *c = dot + 1; *c; c++) low[n++] = (char)(*c >= 'A' && *c <= 'Z' ? *c - 'A' + 'a' : *c);
    low[n] = '\0';
    for (size_t i = 0; i < sizeof ext / sizeof ext[0]; i++)
        if (!strcmp(low, ext[i])) return true;
    return false;
}

/* Recognises a file by its content: an image when the image decoder
 * accepts it, else audio. Returns the decoded bytes held. */
static size_t decode_one(const search_file *f, decoded *d) {
    qiao_image_decode_params dp = qiao_image_decode_default_params();
    qiao_status st = QIAO_ERR_FORMAT;
    char image_msg[1024] = "";
    /* A file over the image reader's size limit can still be a long
     * recording or a video with a soundtrack: go straight to audio. */
    if ((uint64_t)f->size <= (uint64_t)dp.max_file_bytes) {
        st = qiao_image_decode_file(f->path, &dp, &d->img);
        if (st == QIAO_OK) return (size_t)qiao_image_height(d->img) * qiao_image_stride(d->img);
        if (st != QIAO_ERR_FORMAT) {
            set_failure(d, st, false, NULL);
            return 0;
        }
        snprintf(image_msg, sizeof image_msg, "%s", qiao_last_error());
    }
    st = qiao_audio_decode_file(f->path, NULL, &d->aud);
    if (st == QIAO_OK && d->aud->n_samples == 0) {
        qiao_audio_free(d->aud);
        d->aud = NULL;
        st = qc_error(QIAO_ERR_FORMAT, "%s: audio without samples", f->path);
        set_failure(d, st, false, NULL);
        return 0;
    }
    if (st == QIAO_OK) return (size_t)d->aud->n_samples * sizeof(float);
    /* Neither decoder knows it. Quietly skipped, unless its name says it
     * should have been media: then it is damaged, and the user is told. */
    set_failure(d, st, st == QIAO_ERR_FORMAT && !media_name(f->path), image_msg[0] ? image_msg : NULL);
    return 0;
}

static void *decode_batch(void *arg) {
    batch_job *j = arg;
    size_t bytes = 0;
    j->n = 0;
    j->end = j->begin;
    while (j->end < j->n_todo && j->n < (size_t)j->batch && (j->n == 0 || bytes < BATCH_BYTES)) {
        decoded *d = &j->d[j->n++];
        memset(d, 0, sizeof *d);
        d->cand = j->todo[j->end++];
        bytes += decode_one(&j->cands[d->cand], d);
    }
    return NULL;
}

static void batch_clear(batch_job *j) {
    for (size_t i = 0; i < j->n; i++) {
        qiao_image_free(j->d[i].img);
        qiao_audio_free(j->d[i].aud);
        free(j->d[i].msg);
    }
    j->n = 0;
}

/* ---- the update --------------------------------------------------------------- */

enum { C_TODO = 0, C_KEEP, C_DONE, C_FAIL, C_KNOWN };

typedef struct update {
    const search_add_params *p;
    qiao_index_add_stats *stats;
    qiao_session *session;
    int64_t D;
    file_list c;             /* candidates, sorted by path */
    unsigned char *state;    /* (c.n) C_* */
    bool *remember;          /* (c.n) a failure to list under "skipped" */
    float *emb;              /* (c.n + carried, D): row i for candidate i, then the carried items */
} update;

static void report_failure(const update *u, size_t cand, qiao_status st, const char *msg, bool not_media) {
    const char *path = u->c.v[cand].path;
    if (not_media)
        notice(u->p, QIAO_LOG_INFO, path, "%s: not an image or audio file, skipped", path);
    else
        notice(u->p, QIAO_LOG_WARN, path, "skipping %s: %s: %s", path, qiao_status_str(st), msg ? msg : "");
}

static void mark_failed(update *u, size_t cand, qiao_status st) {
    u->state[cand] = C_FAIL;
    /* Content problems stay until the file changes; I/O and memory may not. */
    u->remember[cand] = st == QIAO_ERR_FORMAT || st == QIAO_ERR_TOO_LARGE || st == QIAO_ERR_INVALID_ARGUMENT ||
                        st == QIAO_ERR_UNSUPPORTED;
    u->stats->failed++;
}

/* Embeds the decoded items of one kind: together, and one by one when the
 * batch fails, so one bad file costs only itself. */
static qiao_status embed_kind(update *u, batch_job *j, search_kind kind, float *tmp) {
    size_t n = 0;
    const void *ptrs[512];
    size_t idx[512];
    for (size_t i = 0; i < j->n; i++) {
        decoded *d = &j->d[i];
        if (d->st != QIAO_OK || (kind == SEARCH_IMAGE ? !d->img : !d->aud)) continue;
        ptrs[n] = kind == SEARCH_IMAGE ? (const void *)d->img : (const void *)d->aud;
        idx[n++] = i;
    }
    if (n == 0) return QIAO_OK;
    size_t D = (size_t)u->D;
    qiao_status st = kind == SEARCH_IMAGE
                         ? qiao_embed_images(u->session, (const qiao_image *const *)ptrs, n, tmp, n * D)
                         : qiao_embed_audios(u->session, (const qiao_audio *const *)ptrs, n, tmp, n * D);
    for (size_t k = 0; k < n; k++) {
        decoded *d = &j->d[idx[k]];
        qiao_status s1 = st;
        if (st != QIAO_OK) {
            if (st == QIAO_ERR_OUT_OF_MEMORY || st == QIAO_ERR_BACKEND || st == QIAO_ERR_INTERNAL) return st;
            s1 = kind == SEARCH_IMAGE ? qiao_embed_image(u->session, d->img, tmp + k * D, D)
                                      : qiao_embed_audio(u->session, d->aud, tmp + k * D, D);
        }
        const float *row = tmp + k * D;
        size_t bad = D;
        for (size_t c = 0; s1 == QIAO_OK && c < D && bad == D; c++)
            if (!isfinite(row[c])) bad = c;
        if (bad < D) {
            /* The index refuses such a row (it would rank as "nan"). The
             * same model gives the same row, so the file is remembered as
             * skipped until it or the model changes. */
            s1 = qc_error(QIAO_ERR_INVALID_ARGUMENT,
                          "the model gives a non-finite embedding (%g at %zu; are its weights finite?)",
                          (double)row[bad], bad);
        }
        if (s1 == QIAO_OK) {
            memcpy(u->emb + d->cand * D, row, D * sizeof(float));
            u->state[d->cand] = C_DONE;
            u->c.v[d->cand].kind = kind;
            u->stats->embedded++;
        } else {
            report_failure(u, d->cand, s1, qiao_last_error(), false);
            mark_failed(u, d->cand, s1);
        }
    }
    return QIAO_OK;
}

static qiao_status embed_batch(update *u, batch_job *j, float *tmp) {
    for (size_t i = 0; i < j->n; i++) {
        decoded *d = &j->d[i];
        if (d->st == QIAO_OK) continue;
        report_failure(u, d->cand, d->st, d->msg, d->not_media);
        mark_failed(u, d->cand, d->st);
    }
    qiao_status st = embed_kind(u, j, SEARCH_IMAGE, tmp);
    if (st == QIAO_OK) st = embed_kind(u, j, SEARCH_AUDIO, tmp);
    return st;
}

/* Decodes and embeds every C_TODO candidate; the next batch is decoded on
 * a second thread while the current one is embedded. Returns
 * QIAO_ERR_CANCELLED when asked to stop (the finished batches stay done). */
static qiao_status embed_todo(update *u, const size_t *todo, size_t n_todo) {
    const search_add_params *p = u->p;
    if (n_todo == 0) return QIAO_OK;
    int B = p->batch < 1 ? 1 : p->batch > 512 ? 512 : p->batch;
    batch_job jobs[2];
    decoded *dd = calloc(2 * (size_t)B, sizeof *dd);
    float *tmp = malloc((size_t)B * (size_t)u->D * sizeof(float));
    if (!dd || !tmp) {
        free(dd);
        free(tmp);
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory for a batch of %d", B);
    }
    for (int k = 0; k < 2; k++)
        jobs[k] = (batch_job){.cands = u->c.v, .todo = todo, .n_todo = n_todo, .batch = B, .d = dd + k * B};
    double t0 = qc_now();
    qiao_status st = QIAO_OK;
    batch_job *cur = &jobs[0], *nxt = &jobs[1];
    if (p->cancel && p->cancel(p->cancel_user_data)) st = QIAO_ERR_CANCELLED;
    else decode_batch(cur);
    while (st == QIAO_OK && cur->n > 0) {
        pthread_t th;
        bool threaded = false, more = cur->end < n_todo;
        if (more) {
            nxt->begin = cur->end;
            threaded = pthread_create(&th, NULL, decode_batch, nxt) == 0;
        }
        st = embed_batch(u, cur, tmp);
        batch_clear(cur);
        if (threaded) pthread_join(th, NULL);
        if (p->progress) {
            qiao_index_progress pr = {.done = (int64_t)cur->end, .total = (int64_t)n_todo,
                                      .embedded = u->stats->embedded, .seconds = qc_now() - t0};
            p->progress(&pr, p->progress_user_data);
        }
        if (st == QIAO_OK && p->cancel && p->cancel(p->cancel_user_data)) st = QIAO_ERR_CANCELLED;
        if (st != QIAO_OK || !more) {
            batch_clear(nxt);
            break;
        }
        if (!threaded) decode_batch(nxt);
        batch_job *t = cur;
        cur = nxt;
        nxt = t;
    }
    batch_clear(cur);
    free(dd);
    free(tmp);
    return st;
}

/* Old entries by path, for lookups during the merge. */
static const search_file **by_path(const search_file *v, size_t n) {
    const search_file **s = malloc((n ? n : 1) * sizeof *s);
    if (!s) return NULL;
    for (size_t i = 0; i < n; i++) s[i] = &v[i];
    if (n > 1) qsort(s, n, sizeof *s, cmp_file_ptr_path);
    return s;
}

static const search_file *lookup(const search_file **s, size_t n, const search_file *key) {
    const search_file *k = key;
    const search_file **hit = n ? bsearch(&k, s, n, sizeof *s, cmp_file_ptr_path) : NULL;
    return hit ? *hit : NULL;
}

/* What the merge decided about the old index's entries. */
typedef struct carry {
    bool *item;              /* (old->n) the item goes on as it is */
    bool *skip;              /* (old->n_skipped) the skipped entry goes on */
    size_t n_items, n_skips;
} carry;

/* The index that results: kept and embedded candidates (rows compacted in
 * place), then the carried old items; failures worth remembering and the
 * carried old skipped entries as "skipped". Moves the candidates' paths out
 * of u->c and u->emb into *out. */
static qiao_status assemble(update *u, const search_index *old, const carry *cr, search_index *out) {
    memset(out, 0, sizeof *out);
    size_t n = cr->n_items, ns = cr->n_skips, D = (size_t)u->D;
    for (size_t i = 0; i < u->c.n; i++) {
        if (u->state[i] == C_KEEP || u->state[i] == C_DONE) n++;
        else if (u->state[i] == C_KNOWN || (u->state[i] == C_FAIL && u->remember[i])) ns++;
    }
    out->model = strdup(old->model ? old->model : "");
    out->items = calloc(n ? n : 1, sizeof *out->items);
    out->skipped = calloc(ns ? ns : 1, sizeof *out->skipped);
    bool ok = out->model && out->items && out->skipped;
    out->fp = old->fp;
    out->dim = u->D;
    for (size_t i = 0; ok && i < u->c.n; i++) {
        search_file *f = &u->c.v[i];
        if (u->state[i] == C_KEEP || u->state[i] == C_DONE) {
            if (out->n != i) memmove(u->emb + out->n * D, u->emb + i * D, D * sizeof(float));
            out->items[out->n++] = *f;
            f->path = NULL;
        } else if (u->state[i] == C_KNOWN || (u->state[i] == C_FAIL && u->remember[i])) {
            out->skipped[out->n_skipped++] = *f;
            f->path = NULL;
        }
    }
    size_t j = 0; /* the carried rows sit after the candidates' */
    for (size_t i = 0; ok && i < old->n; i++) {
        if (!cr->item[i]) continue;
        search_file f = old->items[i];
        if (!(f.path = strdup(f.path))) ok = false;
        else {
            memmove(u->emb + out->n * D, u->emb + (u->c.n + j++) * D, D * sizeof(float));
            out->items[out->n++] = f;
        }
    }
    for (size_t i = 0; ok && i < old->n_skipped; i++) {
        if (!cr->skip[i]) continue;
        search_file f = old->skipped[i];
        if (!(f.path = strdup(f.path))) ok = false;
        else out->skipped[out->n_skipped++] = f;
    }
    if (!ok) {
        search_index_free(out);
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory assembling the index");
    }
    if (out->n > 0) {
        out->emb = u->emb; /* the first n rows; the tail is unused */
        u->emb = NULL;
    }
    return QIAO_OK;
}

static qiao_status run_update(update *u, const search_index *old, search_index *out, bool *changed) {
    const search_add_params *p = u->p;
    qiao_index_add_stats *s = u->stats;
    walk_root *roots = NULL;
    qiao_status st = walk_roots(p, &u->c, &roots);
    if (st == QIAO_OK && p->cancel && p->cancel(p->cancel_user_data))
        st = qc_error(QIAO_ERR_CANCELLED, "cancelled while listing");
    if (st != QIAO_OK) {
        roots_free(roots, p->n_roots);
        return st;
    }
    s->found = (int64_t)u->c.n;

    const search_file **old_items = by_path(old->items, old->n), **old_skip = by_path(old->skipped, old->n_skipped);
    carry cr = {.item = calloc(old->n ? old->n : 1, sizeof *cr.item),
                .skip = calloc(old->n_skipped ? old->n_skipped : 1, sizeof *cr.skip)};
    bool *matched = calloc(old->n ? old->n : 1, sizeof *matched);
    size_t *todo = malloc((u->c.n ? u->c.n : 1) * sizeof *todo);
    u->state = calloc(u->c.n ? u->c.n : 1, 1);
    u->remember = calloc(u->c.n ? u->c.n : 1, sizeof *u->remember);
    if (!old_items || !old_skip || !cr.item || !cr.skip || !matched || !todo || !u->state || !u->remember) {
        st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory for %zu files", u->c.n);
        goto done;
    }

    /* What goes on untouched: vectors added by key, and (unless mirroring)
     * files the walk could not have found; every other old file item that
     * the walk did not find is gone. */
    size_t D = (size_t)u->D, n_todo = 0, covered_items = 0, covered_skips = 0;
    for (size_t i = 0; i < u->c.n; i++) {
        const search_file *o = lookup(old_items, old->n, &u->c.v[i]);
        if (o) matched[o - old->items] = true;
    }
    for (size_t i = 0; i < old->n; i++) {
        const search_file *o = &old->items[i];
        bool cov = o->is_file && (p->mirror || covered(p, roots, o->path));
        if (cov) covered_items++;
        if (!matched[i] && !cov) {
            cr.item[i] = true;
            cr.n_items++;
        } else if (!matched[i] && o->is_file) {
            s->removed++;
        }
    }
    for (size_t i = 0; i < old->n_skipped; i++) {
        const search_file *k = &old->skipped[i];
        bool cov = p->mirror || covered(p, roots, k->path);
        if (cov) covered_skips++;
        cr.skip[i] = !cov; /* every candidate is covered, so it never shares a path with these */
        cr.n_skips += cr.skip[i];
    }

    size_t rows;
    if (!qc_mul_size(u->c.n + cr.n_items ? u->c.n + cr.n_items : 1, D * sizeof(float), &rows)) {
        st = qc_error(QIAO_ERR_TOO_LARGE, "%zu files: too many to index", u->c.n);
        goto done;
    }
    if (!(u->emb = malloc(rows))) {
        st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory for %zu files", u->c.n);
        goto done;
    }
    for (size_t i = 0, j = 0; i < old->n; i++)
        if (cr.item[i]) memcpy(u->emb + (u->c.n + j++) * D, old->emb + i * D, D * sizeof(float));

    /* Merge: an unchanged file keeps its row. */
    for (size_t i = 0; i < u->c.n; i++) {
        search_file *f = &u->c.v[i];
        const search_file *o = lookup(old_items, old->n, f);
        bool same = o && o->is_file && o->size == f->size && o->mtime_ns == f->mtime_ns;
        const search_file *k = lookup(old_skip, old->n_skipped, f);
        if (same) {
            u->state[i] = C_KEEP;
            f->kind = o->kind;
            memcpy(u->emb + i * D, old->emb + (size_t)(o - old->items) * D, D * sizeof(float));
            s->kept++;
        } else if (k && k->size == f->size && k->mtime_ns == f->mtime_ns) {
            u->state[i] = C_KNOWN;
            s->skipped_known++;
        } else {
            todo[n_todo++] = i;
        }
    }

    qiao_status est = embed_todo(u, todo, n_todo);
    for (size_t i = 0; i < n_todo; i++) s->pending += u->state[todo[i]] == C_TODO;
    if (est != QIAO_OK && est != QIAO_ERR_CANCELLED) {
        st = est;
        goto done;
    }
    *changed = s->embedded || s->removed || s->failed || (size_t)s->skipped_known != covered_skips ||
               (size_t)s->kept != covered_items;
    st = assemble(u, old, &cr, out);
    if (st == QIAO_OK && est == QIAO_ERR_CANCELLED)
        st = qc_error(QIAO_ERR_CANCELLED, "interrupted: %lld files left for the next run", (long long)s->pending);
done:
    free(old_items);
    free(old_skip);
    free(cr.item);
    free(cr.skip);
    free(matched);
    free(todo);
    roots_free(roots, p->n_roots);
    return st;
}

qiao_status search_add_files(const search_add_params *p, qiao_session *session, const search_index *old,
                             search_index *out, qiao_index_add_stats *stats, bool *changed) {
    memset(out, 0, sizeof *out);
    memset(stats, 0, sizeof *stats);
    *changed = false;
    update u = {.p = p, .stats = stats, .session = session, .D = old->dim};
    qiao_status st = run_update(&u, old, out, changed);
    search_files_free(u.c.v, u.c.n);
    free(u.state);
    free(u.remember);
    free(u.emb);
    if (st != QIAO_OK && st != QIAO_ERR_CANCELLED) search_index_free(out);
    return st;
}

/* ---- ranking ------------------------------------------------------------------ */

static int cmp_hit(const void *a, const void *b) {
    const search_hit *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    return strcmp(x->key, y->key);
}

qiao_status search_rank(const search_index *idx, const float *q, int kind, search_hit **hits, size_t *n) {
    *hits = NULL;
    *n = 0;
    const size_t D = (size_t)idx->dim;
    /* Every score would be NaN, and qsort's order of NaNs is arbitrary. */
    for (size_t k = 0; k < D; k++)
        if (!isfinite(q[k]))
            return qc_error(QIAO_ERR_INVALID_ARGUMENT,
                            "search: the query's embedding holds a non-finite value (%g) at %zu", (double)q[k], k);
    search_hit *h = malloc((idx->n ? idx->n : 1) * sizeof *h);
    if (!h) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "search: out of memory ranking %zu items", idx->n);
    size_t k = 0;
    for (size_t i = 0; i < idx->n; i++)
        if (kind < 0 || (int)idx->items[i].kind == kind)
            h[k++] = (search_hit){qiao_cosine(q, idx->emb + i * D, D), i, idx->items[i].path};
    qsort(h, k, sizeof *h, cmp_hit);
    *hits = h;
    *n = k;
    return QIAO_OK;
}
