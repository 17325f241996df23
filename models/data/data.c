/* models/data/data.c - the shapes manifest and the training loader (see data.h).
 * The loader's threads and its ring of prefetched batches are ring.c's; this
 * file builds one batch. */
#define _GNU_SOURCE /* getline */
#include "models/data/data.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "models/data/ring.h"

#define DATA_MSG_MAX 1024

static const char *const k_lang_names[QMOD_N_LANGS] = {"zh", "en"};

const char *qmod_lang_name(int lang) { return lang >= 0 && lang < QMOD_N_LANGS ? k_lang_names[lang] : "?"; }

/* ---- the manifest -------------------------------------------------------- */

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* DIR/rel, or rel itself when it is absolute. NULL on OOM. */
static char *join_path(const char *dir, const char *rel) {
    if (rel[0] == '/') return dup_str(rel);
    size_t nd = strlen(dir), nr = strlen(rel);
    while (nd > 1 && dir[nd - 1] == '/') nd--;
    char *p = malloc(nd + 1 + nr + 1);
    if (!p) return NULL;
    memcpy(p, dir, nd);
    p[nd] = '/';
    memcpy(p + nd + 1, rel, nr + 1);
    return p;
}

static void scene_free(qmod_scene *s) {
    free(s->id);
    free(s->image);
    for (int l = 0; l < QMOD_N_LANGS; l++) {
        free(s->caption[l]);
        free(s->speech[l]);
    }
    free(s->signature);
    memset(s, 0, sizeof *s);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Element 0 of obj[lang] when it is a non-empty array of strings; *out stays
 * NULL when the language is absent. `what` names the field in messages. */
static qiao_status first_string(const cJSON *obj, int lang, const char *what, const char *file, int64_t line,
                                const char **out) {
    *out = NULL;
    if (!obj) return QIAO_OK;
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(obj, k_lang_names[lang]);
    if (!a) return QIAO_OK;
    if (!cJSON_IsArray(a))
        return qc_error(QIAO_ERR_FORMAT, "%s:%lld: %s.%s must be an array", file, (long long)line, what,
                        k_lang_names[lang]);
    if (cJSON_GetArraySize(a) == 0) return QIAO_OK;
    const cJSON *e = cJSON_GetArrayItem(a, 0);
    if (!cJSON_IsString(e) || !e->valuestring[0])
        return qc_error(QIAO_ERR_FORMAT, "%s:%lld: %s.%s[0] must be a non-empty string", file, (long long)line, what,
                        k_lang_names[lang]);
    *out = e->valuestring;
    return QIAO_OK;
}

/* The objects as "color size shape@grid" strings, sorted, joined by ';'. */
static qiao_status make_signature(const cJSON *objs, const char *file, int64_t line, char **out) {
    *out = NULL;
    if (!cJSON_IsArray(objs))
        return qc_error(QIAO_ERR_FORMAT, "%s:%lld: \"objects\" missing or not an array", file, (long long)line);
    int n = cJSON_GetArraySize(objs);
    char **parts = calloc((size_t)(n > 0 ? n : 1), sizeof *parts);
    if (!parts) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s:%lld: out of memory", file, (long long)line);
    qiao_status st = QIAO_OK;
    size_t total = 1;
    static const char *const keys[4] = {"color", "size", "shape", "grid"};
    for (int i = 0; i < n && st == QIAO_OK; i++) {
        const cJSON *o = cJSON_GetArrayItem(objs, i);
        const char *v[4];
        for (int k = 0; k < 4 && st == QIAO_OK; k++) {
            const cJSON *f = cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, keys[k]) : NULL;
            if (!cJSON_IsString(f) || !f->valuestring[0])
                st = qc_error(QIAO_ERR_FORMAT, "%s:%lld: objects[%d].%s missing or not a string", file,
                              (long long)line, i, keys[k]);
            else
                v[k] = f->valuestring;
        }
        if (st != QIAO_OK) break;
        size_t len = strlen(v[0]) + strlen(v[1]) + strlen(v[2]) + strlen(v[3]) + 4;
        parts[i] = malloc(len);
        if (!parts[i]) {
            st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s:%lld: out of memory", file, (long long)line);
            break;
        }
        snprintf(parts[i], len, "%s %s %s@%s", v[0], v[1], v[2], v[3]);
        total += len;
    }
    if (st == QIAO_OK) {
        qsort(parts, (size_t)n, sizeof *parts, cmp_str);
        char *sig = malloc(total);
        if (!sig) {
            st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s:%lld: out of memory", file, (long long)line);
        } else {
            size_t at = 0;
            for (int i = 0; i < n; i++) {
                size_t len = strlen(parts[i]);
                if (i) sig[at++] = ';';
                memcpy(sig + at, parts[i], len);
                at += len;
            }
            sig[at] = 0;
            *out = sig;
        }
    }
    for (int i = 0; i < n; i++) free(parts[i]);
    free(parts);
    return st;
}

/* One manifest line into *s (cleared on failure). */
static qiao_status parse_scene(const char *text, size_t len, const char *dir, const char *file, int64_t line,
                               qmod_scene *s) {
    memset(s, 0, sizeof *s);
    cJSON *root = cJSON_ParseWithLength(text, len);
    if (!root) return qc_error(QIAO_ERR_FORMAT, "%s:%lld: not valid JSON", file, (long long)line);
    qiao_status st = QIAO_OK;
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(root, "id");
    const cJSON *image = cJSON_GetObjectItemCaseSensitive(root, "image");
    const cJSON *caps = cJSON_GetObjectItemCaseSensitive(root, "captions");
    const cJSON *speech = cJSON_GetObjectItemCaseSensitive(root, "speech");
    const cJSON *scaps = speech ? cJSON_GetObjectItemCaseSensitive(speech, "captions") : NULL;
    const char *cap[QMOD_N_LANGS] = {0}, *wav[QMOD_N_LANGS] = {0};
    if (!cJSON_IsObject(root))
        st = qc_error(QIAO_ERR_FORMAT, "%s:%lld: not a JSON object", file, (long long)line);
    else if (!cJSON_IsString(id) || !id->valuestring[0])
        st = qc_error(QIAO_ERR_FORMAT, "%s:%lld: \"id\" missing or not a string", file, (long long)line);
    else if (image && (!cJSON_IsString(image) || !image->valuestring[0]))
        st = qc_error(QIAO_ERR_FORMAT, "%s:%lld: \"image\" must be a non-empty string", file, (long long)line);
    else if (!cJSON_IsObject(caps))
        st = qc_error(QIAO_ERR_FORMAT, "%s:%lld: \"captions\" missing or not an object", file, (long long)line);
    else if (speech && (!cJSON_IsObject(speech) || (scaps && !cJSON_IsObject(scaps))))
        st = qc_error(QIAO_ERR_FORMAT, "%s:%lld: \"speech\" must be an object with a \"captions\" object", file,
                      (long long)line);
    for (int l = 0; l < QMOD_N_LANGS && st == QIAO_OK; l++) {
        st = first_string(caps, l, "captions", file, line, &cap[l]);
        if (st == QIAO_OK) st = first_string(scaps, l, "speech.captions", file, line, &wav[l]);
    }
    /* A scene with no caption cannot be trained or evaluated on. */
    if (st == QIAO_OK && !cap[QMOD_LANG_ZH] && !cap[QMOD_LANG_EN])
        st = qc_error(QIAO_ERR_FORMAT, "%s:%lld: no long caption in any language", file, (long long)line);
    /* A picture's scene is its objects, so they are required with an image;
     * without one, the caption itself names the target. */
    const cJSON *objs = cJSON_GetObjectItemCaseSensitive(root, "objects");
    if (st == QIAO_OK && (image || objs)) st = make_signature(objs, file, line, &s->signature);
    if (st == QIAO_OK && !s->signature &&
        !(s->signature = dup_str(cap[QMOD_LANG_EN] ? cap[QMOD_LANG_EN] : cap[QMOD_LANG_ZH])))
        st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s:%lld: out of memory", file, (long long)line);
    if (st == QIAO_OK) {
        bool oom = !(s->id = dup_str(id->valuestring)) || (image && !(s->image = join_path(dir, image->valuestring)));
        for (int l = 0; l < QMOD_N_LANGS; l++) {
            if (cap[l] && !(s->caption[l] = dup_str(cap[l]))) oom = true;
            if (wav[l] && !(s->speech[l] = join_path(dir, wav[l]))) oom = true;
        }
        if (oom) st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s:%lld: out of memory", file, (long long)line);
    }
    cJSON_Delete(root);
    if (st != QIAO_OK) scene_free(s);
    return st;
}

/* scene.group = the rank of its signature among the distinct ones. */
static qiao_status number_groups(qmod_dataset *d) {
    const char **sig = malloc((size_t)d->n * sizeof *sig);
    if (!sig) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory numbering signatures", d->dir);
    for (int64_t i = 0; i < d->n; i++) sig[i] = d->scenes[i].signature;
    qsort((void *)sig, (size_t)d->n, sizeof *sig, cmp_str);
    int64_t n = 0;
    for (int64_t i = 0; i < d->n; i++)
        if (i == 0 || strcmp(sig[i], sig[n - 1])) sig[n++] = sig[i];
    for (int64_t i = 0; i < d->n; i++) {
        /* binary search: the distinct signatures are sorted */
        int64_t lo = 0, hi = n - 1;
        const char *x = d->scenes[i].signature;
        while (lo < hi) {
            int64_t mid = lo + (hi - lo) / 2;
            if (strcmp(sig[mid], x) < 0) lo = mid + 1;
            else hi = mid;
        }
        d->scenes[i].group = lo;
    }
    d->n_groups = n;
    free((void *)sig);
    return QIAO_OK;
}

qiao_status qmod_dataset_load(const char *dir, qmod_dataset *out) {
    if (!out) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_dataset_load: out is NULL");
    memset(out, 0, sizeof *out);
    if (!dir || !dir[0]) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_dataset_load: no directory");
    char *file = join_path(dir, "manifest.jsonl");
    if (!file) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "qmod_dataset_load: out of memory");
    FILE *fp;
    qiao_status st = qc_fopen_read(file, &fp, NULL);
    if (st != QIAO_OK) {
        free(file);
        return st;
    }
    qmod_dataset d = {0};
    int64_t cap = 0;
    if (!(d.dir = dup_str(dir))) st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory", file);
    /* getline: a scene's line is ~2 KB and grows with the number of objects
     * and questions, so no fixed maximum is assumed. */
    char *buf = NULL;
    size_t bufcap = 0;
    int64_t line = 0, first_line = 0;
    ssize_t len;
    while (st == QIAO_OK && (len = getline(&buf, &bufcap, fp)) >= 0) {
        line++;
        size_t n = (size_t)len;
        if (memchr(buf, 0, n)) {
            st = qc_error(QIAO_ERR_FORMAT, "%s:%lld: NUL byte in line", file, (long long)line);
            break;
        }
        size_t i = 0;
        while (i < n && (buf[i] == ' ' || buf[i] == '\t' || buf[i] == '\r' || buf[i] == '\n')) i++;
        if (i == n) continue; /* blank line (e.g. a trailing newline) */
        if (d.n == cap) {
            int64_t nc = cap ? 2 * cap : 1024;
            qmod_scene *ns = realloc(d.scenes, (size_t)nc * sizeof *ns);
            if (!ns) {
                st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s:%lld: out of memory", file, (long long)line);
                break;
            }
            d.scenes = ns;
            cap = nc;
        }
        st = parse_scene(buf, n, dir, file, line, &d.scenes[d.n]);
        if (st != QIAO_OK) break;
        qmod_scene *s = &d.scenes[d.n++];
        if (s->speech[0] || s->speech[1]) d.n_speech++;
        /* The first scene decides whether the set has images: batches hold
         * an image per row or none, never some. */
        if (d.n == 1) {
            d.has_images = s->image != NULL;
            first_line = line;
        } else if ((s->image != NULL) != d.has_images) {
            st = qc_error(QIAO_ERR_FORMAT, "%s:%lld: %s \"image\" but line %lld %s: a data set has an image for "
                          "every scene or for none", file, (long long)line, s->image ? "has an" : "has no",
                          (long long)first_line, d.has_images ? "has one" : "has none");
            break;
        }
    }
    if (st == QIAO_OK && ferror(fp)) st = qc_error(QIAO_ERR_IO, "%s: read error", file);
    if (st == QIAO_OK && d.n == 0) st = qc_error(QIAO_ERR_FORMAT, "%s: no scenes", file);
    if (st == QIAO_OK) st = number_groups(&d);
    free(buf);
    fclose(fp);
    free(file);
    if (st != QIAO_OK) {
        qmod_dataset_free(&d);
        return st;
    }
    *out = d;
    return QIAO_OK;
}

void qmod_dataset_free(qmod_dataset *d) {
    if (!d) return;
    for (int64_t i = 0; i < d->n; i++) scene_free(&d->scenes[i]);
    free(d->scenes);
    free(d->dir);
    memset(d, 0, sizeof *d);
}

/* ---- one batch ------------------------------------------------------------- */

/* Stream tags, so the permutation and the language draws never share a seed. */
#define TAG_PERM 0x7065726dULL /* "perm" */
#define TAG_LANG 0x6c616e67ULL /* "lang" */
#define TAG_GRUP 0x67727570ULL /* "grup": a signature group's order (image-less) */
#define TAG_PICK 0x7069636bULL /* "pick": tie-breaks between groups (image-less) */
#define TAG_PLCE 0x706c6365ULL /* "plce": the place-group order */

/* splitmix64's finalizer: a bijective avalanche mix. */
static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t hash4(uint64_t a, uint64_t b, uint64_t c, uint64_t d) {
    uint64_t h = mix64(a + 0x9E3779B97F4A7C15ull);
    h = mix64(h ^ (b + 0x9E3779B97F4A7C15ull));
    h = mix64(h ^ (c + 0x9E3779B97F4A7C15ull));
    return mix64(h ^ (d + 0x9E3779B97F4A7C15ull));
}

/* Scenes in the order epoch `epoch` visits them: Fisher-Yates over 0..n-1. */
static void epoch_perm(uint64_t seed, int64_t epoch, int64_t n, int64_t *perm) {
    qc_rng rng;
    qc_rng_seed(&rng, hash4(TAG_PERM, seed, (uint64_t)epoch, 0));
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)qc_rng_below(&rng, (uint64_t)i + 1);
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

/* Scenes of each group: members[start[g] .. start[g + 1]) hold group g's
 * scene indices in increasing order. start has G + 1 entries. */
static void group_members(const qmod_dataset *d, int64_t *start, int64_t *members) {
    const int64_t G = d->n_groups;
    memset(start, 0, (size_t)(G + 1) * sizeof *start);
    for (int64_t i = 0; i < d->n; i++) start[d->scenes[i].group + 1]++;
    for (int64_t g = 0; g < G; g++) start[g + 1] += start[g];
    for (int64_t i = 0; i < d->n; i++) members[start[d->scenes[i].group]++] = i;
    /* the fill advanced start[g] to start[g + 1]: shift back */
    for (int64_t g = G; g > 0; g--) start[g] = start[g - 1];
    start[0] = 0;
}

int64_t qmod_loader_epoch_batches(const qmod_dataset *d, int64_t batch) {
    if (!d || d->n < 1 || batch < 1) return 0;
    if (d->has_images) return d->n / batch;
    const int64_t G = d->n_groups;
    if (batch > G) return 0;
    int64_t *size = calloc((size_t)G, sizeof *size);
    if (!size) return 0;
    for (int64_t i = 0; i < d->n; i++) size[d->scenes[i].group]++;
    /* f(t) = sum_g min(s_g, t) - B t is concave with f(0) = 0, so the t
     * with f(t) >= 0 form an interval [0, t*]: binary search for t*. */
    int64_t lo = 0, hi = d->n / batch;
    while (lo < hi) {
        const int64_t t = lo + (hi - lo + 1) / 2;
        int64_t sum = 0;
        for (int64_t g = 0; g < G; g++) sum += size[g] < t ? size[g] : t;
        if (sum >= batch * t) lo = t;
        else hi = t - 1;
    }
    free(size);
    return lo;
}

static qiao_status check_params(const qmod_loader_params *p, const char *fn) {
    if (!p || !p->model || !p->data)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "%s: params, model and data are required", fn);
    if (!p->model->tok) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "%s: the model has no tokenizer", fn);
    const char *dir = p->data->dir ? p->data->dir : "the dataset";
    if (p->batch < 1 || p->batch > p->data->n)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "%s: batch %lld must be in 1..%lld (the scenes in %s)", fn,
                        (long long)p->batch, (long long)p->data->n, dir);
    if (!p->data->has_images && p->batch > p->data->n_groups)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT,
                        "%s: batch %lld is more than the %lld distinct captions in %s: without images a batch holds "
                        "one scene per caption (use --batch %lld or less)",
                        fn, (long long)p->batch, (long long)p->data->n_groups, dir, (long long)p->data->n_groups);
    if (qmod_loader_epoch_batches(p->data, p->batch) < 1)
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory sizing the epochs of %s", fn, dir);
    return QIAO_OK;
}

typedef struct group_pick {
    int64_t left;    /* scenes of the group not yet used this epoch */
    uint64_t key;    /* random tie-break */
    int64_t g;
} group_pick;

/* Most scenes left first, then the random key. */
static int cmp_pick(const void *a, const void *b) {
    const group_pick *x = a, *y = b;
    if (x->left != y->left) return x->left > y->left ? -1 : 1;
    return (x->key > y->key) - (x->key < y->key);
}

/* The image-less epoch order (data.h): bpe batches of B scenes with
 * distinct signatures, then the scenes left over, so perm stays a
 * permutation of 0..n-1. */
static qiao_status epoch_order_distinct(const qmod_dataset *d, uint64_t seed, int64_t epoch, int64_t B, int64_t bpe,
                                        int64_t *perm) {
    const int64_t n = d->n, G = d->n_groups;
    int64_t *start = malloc((size_t)(G + 1) * sizeof *start);
    int64_t *members = malloc((size_t)n * sizeof *members);
    int64_t *taken = calloc((size_t)G, sizeof *taken);
    group_pick *pk = malloc((size_t)G * sizeof *pk);
    qiao_status st = QIAO_OK;
    if (!start || !members || !taken || !pk) {
        st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "loader: out of memory ordering %lld scenes", (long long)n);
        goto done;
    }
    group_members(d, start, members);
    for (int64_t g = 0; g < G; g++) {
        qc_rng rng;
        qc_rng_seed(&rng, hash4(TAG_GRUP, seed, (uint64_t)epoch, (uint64_t)g));
        int64_t *m = members + start[g];
        for (int64_t i = start[g + 1] - start[g] - 1; i > 0; i--) {
            int64_t j = (int64_t)qc_rng_below(&rng, (uint64_t)i + 1);
            int64_t t = m[i];
            m[i] = m[j];
            m[j] = t;
        }
    }
    int64_t o = 0;
    for (int64_t b = 0; b < bpe; b++) {
        qc_rng rng;
        qc_rng_seed(&rng, hash4(TAG_PICK, seed, (uint64_t)epoch, (uint64_t)b));
        for (int64_t g = 0; g < G; g++) pk[g] = (group_pick){start[g + 1] - start[g] - taken[g], qc_rng_u64(&rng), g};
        qsort(pk, (size_t)G, sizeof *pk, cmp_pick);
        for (int64_t i = 0; i < B; i++) {
            const int64_t g = pk[i].g;
            /* cannot happen while bpe is qmod_loader_epoch_batches' bound */
            if (pk[i].left < 1) {
                st = qc_error(QIAO_ERR_INTERNAL, "loader: epoch %lld batch %lld: no group left for row %lld",
                              (long long)epoch, (long long)b, (long long)i);
                goto done;
            }
            perm[o++] = members[start[g] + taken[g]++];
        }
    }
    for (int64_t g = 0; g < G; g++)
        for (int64_t j = start[g] + taken[g]; j < start[g + 1]; j++) perm[o++] = members[j];
done:
    free(start);
    free(members);
    free(taken);
    free(pk);
    return st;
}

/* a signature without its places: "red small circle@top;blue large star@left"
 * -> "red small circle;blue large star". The parts stay sorted, since the
 * place is each part's last field. */
static char *place_free(const char *sig) {
    char *k = malloc(strlen(sig) + 1), *o = k;
    if (!k) return NULL;
    for (const char *c = sig; *c;) {
        if (*c == '@') {
            c += strcspn(c, ";");
            continue;
        }
        *o++ = *c++;
    }
    *o = 0;
    return k;
}

typedef struct place_ref {
    const char *key; /* place-free signature (NULL: a scene without objects, alone) */
    const char *sig;
    uint64_t r;      /* random order among equals */
    int64_t i;
} place_ref;

static int cmp_place(const void *a, const void *b) {
    const place_ref *x = a, *y = b;
    int c = (x->key == NULL) - (y->key == NULL);
    if (!c && x->key) c = strcmp(x->key, y->key);
    if (!c && x->sig && y->sig) c = strcmp(x->sig, y->sig);
    if (!c) c = (x->r > y->r) - (x->r < y->r);
    return c ? c : (x->i > y->i) - (x->i < y->i);
}

typedef struct unit_ref {
    uint64_t r;
    int64_t at, n; /* members: order[at .. at + n) */
} unit_ref;

static int cmp_unit(const void *a, const void *b) {
    const unit_ref *x = a, *y = b;
    if (x->r != y->r) return (x->r > y->r) - (x->r < y->r);
    return (x->at > y->at) - (x->at < y->at);
}

/* The place-group epoch order (data.h): scenes whose objects are the same
 * but stand in different places are dealt into groups of at most G, which
 * the batches then hold side by side; everything else is shuffled around
 * them. Dealing a run sorted by signature round-robin keeps equal
 * signatures (the same caption, a false negative) in different groups. */
static qiao_status epoch_order_places(const qmod_dataset *d, uint64_t seed, int64_t epoch, int64_t G, int64_t *perm) {
    const int64_t n = d->n;
    place_ref *r = calloc((size_t)n, sizeof *r);
    int64_t *order = malloc((size_t)n * sizeof *order);
    unit_ref *u = malloc((size_t)n * sizeof *u);
    qiao_status st = QIAO_OK;
    if (!r || !order || !u) {
        st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "loader: out of memory ordering %lld scenes", (long long)n);
        goto done;
    }
    qc_rng rng;
    qc_rng_seed(&rng, hash4(TAG_PLCE, seed, (uint64_t)epoch, 0));
    for (int64_t i = 0; i < n && st == QIAO_OK; i++) {
        r[i] = (place_ref){NULL, d->scenes[i].signature, qc_rng_u64(&rng), i};
        if (r[i].sig && strchr(r[i].sig, '@') && !(r[i].key = place_free(r[i].sig)))
            st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "loader: out of memory ordering %lld scenes", (long long)n);
    }
    if (st != QIAO_OK) goto done;
    qsort(r, (size_t)n, sizeof *r, cmp_place);
    int64_t nu = 0, at = 0;
    for (int64_t a = 0; a < n;) {
        int64_t b = a + 1;
        while (r[a].key && b < n && r[b].key && !strcmp(r[a].key, r[b].key)) b++;
        /* run [a, b): ng groups, scene a + k into group k % ng */
        const int64_t len = b - a, ng = (len + G - 1) / G;
        for (int64_t g = 0; g < ng; g++) {
            u[nu] = (unit_ref){qc_rng_u64(&rng), at, 0};
            for (int64_t k = g; k < len; k += ng) order[at + u[nu].n++] = r[a + k].i;
            at += u[nu++].n;
        }
        a = b;
    }
    qsort(u, (size_t)nu, sizeof *u, cmp_unit);
    int64_t o = 0;
    for (int64_t k = 0; k < nu; k++)
        for (int64_t j = 0; j < u[k].n; j++) perm[o++] = order[u[k].at + j];
done:
    if (r)
        for (int64_t i = 0; i < n; i++) free((char *)r[i].key);
    free(r);
    free(order);
    free(u);
    return st;
}

/* The scenes in the order epoch `epoch` visits them. */
static qiao_status epoch_order(const qmod_loader_params *p, int64_t bpe, int64_t epoch, int64_t *perm) {
    if (!p->data->has_images) return epoch_order_distinct(p->data, p->seed, epoch, p->batch, bpe, perm);
    if (p->place_groups > 1) return epoch_order_places(p->data, p->seed, epoch, p->place_groups, perm);
    epoch_perm(p->seed, epoch, p->data->n, perm);
    return QIAO_OK;
}

/* A decode error re-raised with the scene's id, keeping the decoder's
 * message and naming the path if that message did not. */
static qiao_status scene_error(qiao_status st, const qmod_scene *s, const char *path) {
    char msg[DATA_MSG_MAX];
    snprintf(msg, sizeof msg, "%s", qiao_last_error());
    if (strstr(msg, path)) return qc_error(st, "scene %s: %s", s->id, msg);
    return qc_error(st, "scene %s: %s: %s", s->id, path, msg);
}

/* Row i of out->image = the picture of scene out->scene[i], decoded row by
 * row so only one decoded image is alive at a time. */
static qiao_status load_images(const qmod_model *m, const qmod_dataset *d, int64_t index, qmod_train_batch *out) {
    const int64_t B = out->B, P = m->cfg.image.tokens;
    const size_t per = qmod_image_floats(m);
    size_t nf;
    if (!qc_mul_size(per, (size_t)B, &nf) || !(out->image.patches = malloc(nf * sizeof(float))) ||
        !(out->image.lengths = malloc((size_t)B * sizeof(int64_t))))
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "batch %lld: out of memory for %lld images", (long long)index,
                        (long long)B);
    out->image.B = B;
    out->image.T = P;
    for (int64_t i = 0; i < B; i++) {
        const qmod_scene *s = &d->scenes[out->scene[i]];
        qiao_image *img = NULL;
        qiao_status st = qiao_image_decode_file(s->image, NULL, &img);
        if (st == QIAO_OK) st = qmod_image_patches(m, img, out->image.patches + (size_t)i * per);
        qiao_image_free(img);
        if (st != QIAO_OK) return scene_error(st, s, s->image);
        out->image.lengths[i] = P;
    }
    return QIAO_OK;
}

/* Builds batch `index` with the epoch's order (bpe batches) already in `perm`. */
static qiao_status make_batch(const qmod_loader_params *p, int64_t bpe, int64_t index, const int64_t *perm,
                              qmod_train_batch *out) {
    const qmod_model *m = p->model;
    const qmod_dataset *d = p->data;
    const int64_t B = p->batch;
    const int64_t base = (index % bpe) * B;
    memset(out, 0, sizeof *out);
    out->index = index;
    out->B = B;
    out->text.mod = QMOD_TEXT;
    out->image.mod = QMOD_IMAGE;
    out->audio.mod = QMOD_AUDIO;
    qiao_status st = QIAO_OK;
    const char **texts = malloc((size_t)B * sizeof *texts);
    qmod_batch *mels = calloc((size_t)B, sizeof *mels);     /* (A) one clip's mel each */
    const float **mel_ptr = calloc((size_t)B, sizeof *mel_ptr);
    int64_t *frames = calloc((size_t)B, sizeof *frames);
    out->scene = malloc((size_t)B * sizeof *out->scene);
    out->text_lang = malloc((size_t)B);
    out->audio_rows = malloc((size_t)B * sizeof *out->audio_rows);
    out->audio_lang = malloc((size_t)B);
    if (!texts || !mels || !mel_ptr || !frames || !out->scene || !out->text_lang || !out->audio_rows || !out->audio_lang) {
        st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "batch %lld: out of memory", (long long)index);
        goto done;
    }

    /* Rows and languages. The audio language is drawn independently of the
     * text one, so audio-text pairs cross languages too; a language the
     * scene lacks falls back to the other. */
    for (int64_t i = 0; i < B; i++) {
        const int64_t si = perm[base + i];
        const qmod_scene *s = &d->scenes[si];
        qc_rng rng;
        qc_rng_seed(&rng, hash4(TAG_LANG, p->seed, (uint64_t)index, (uint64_t)i));
        int tl = (int)qc_rng_below(&rng, QMOD_N_LANGS);
        int al = (int)qc_rng_below(&rng, QMOD_N_LANGS);
        if (!s->caption[tl]) tl = 1 - tl;
        if (!s->speech[al]) al = 1 - al;
        out->scene[i] = si;
        out->text_lang[i] = (uint8_t)tl;
        texts[i] = s->caption[tl];
        if (p->audio && s->speech[al]) {
            out->audio_rows[out->A] = i;
            out->audio_lang[out->A] = (uint8_t)al;
            out->A++;
        }
    }

    st = qmod_batch_text(m, texts, (size_t)B, &out->text);
    if (st != QIAO_OK) {
        char msg[DATA_MSG_MAX];
        snprintf(msg, sizeof msg, "%s", qiao_last_error());
        st = qc_error(st, "batch %lld: %s", (long long)index, msg);
        goto done;
    }

    /* An image-less set leaves `image` empty (B = 0). */
    if (d->has_images && (st = load_images(m, d, index, out)) != QIAO_OK) goto done;

    /* Audio clip by clip through qmod_batch_audio (the path inference
     * takes), keeping only each clip's log-mel: a decoded clip is several
     * times larger than its mel, and a batch may hold hundreds. */
    if (out->A > 0) {
        qiao_audio_params ap = qiao_audio_default_params();
        ap.target_rate = 16000;
        for (int64_t j = 0; j < out->A; j++) {
            const qmod_scene *s = &d->scenes[out->scene[out->audio_rows[j]]];
            const char *path = s->speech[out->audio_lang[j]];
            qiao_audio *a = NULL;
            st = qiao_audio_decode_file(path, &ap, &a);
            if (st == QIAO_OK) st = qmod_batch_audio(m, (const qiao_audio *const *)&a, 1, &mels[j]);
            qiao_audio_free(a);
            if (st != QIAO_OK) {
                st = scene_error(st, s, path);
                goto done;
            }
            mel_ptr[j] = mels[j].mel;
            frames[j] = mels[j].lengths[0];
        }
        st = qmod_batch_mels(m, mel_ptr, frames, (size_t)out->A, &out->audio);
        if (st != QIAO_OK) {
            char msg[DATA_MSG_MAX];
            snprintf(msg, sizeof msg, "%s", qiao_last_error());
            st = qc_error(st, "batch %lld: audio: %s", (long long)index, msg);
            goto done;
        }
    }

done:
    if (mels)
        for (int64_t j = 0; j < B; j++) qmod_batch_free(&mels[j]);
    free(mels);
    free((void *)mel_ptr);
    free(frames);
    free((void *)texts);
    if (st != QIAO_OK) qmod_train_batch_free(out);
    return st;
}

qiao_status qmod_train_batch_make(const qmod_loader_params *p, int64_t index, qmod_train_batch *out) {
    if (!out) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_train_batch_make: out is NULL");
    memset(out, 0, sizeof *out);
    qiao_status st = check_params(p, "qmod_train_batch_make");
    if (st != QIAO_OK) return st;
    if (index < 0) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_train_batch_make: index %lld < 0", (long long)index);
    int64_t *perm = malloc((size_t)p->data->n * sizeof *perm);
    if (!perm) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "qmod_train_batch_make: out of memory");
    const int64_t bpe = qmod_loader_epoch_batches(p->data, p->batch);
    st = epoch_order(p, bpe, index / bpe, perm);
    if (st == QIAO_OK) st = make_batch(p, bpe, index, perm, out);
    free(perm);
    return st;
}

void qmod_train_batch_free(qmod_train_batch *b) {
    if (!b) return;
    free(b->scene);
    free(b->text_lang);
    free(b->audio_rows);
    free(b->audio_lang);
    qmod_batch_free(&b->text);
    qmod_batch_free(&b->image);
    qmod_batch_free(&b->audio);
    memset(b, 0, sizeof *b);
}

/* ---- the loader ----------------------------------------------------------- */

/* One worker's cached epoch order: consecutive batches of a worker share an
 * epoch, and drawing the order (n scenes) per batch would be wasted work. */
typedef struct worker_order {
    int64_t *perm;         /* (n) the order of perm_epoch */
    int64_t perm_epoch;    /* -1: none yet */
} worker_order;

struct qmod_loader {
    qmod_loader_params p;
    int64_t bpe;           /* batches per epoch */
    worker_order *orders;  /* (threads) each touched by its worker's thread alone */
    qmod_ring *ring;       /* the workers and the prefetched batches (ring.h) */
};

static qiao_status ring_make(void *ctx, int64_t index, void *batch, int worker) {
    qmod_loader *l = ctx;
    worker_order *o = &l->orders[worker];
    const int64_t n = l->p.data->n;
    const int64_t epoch = index / l->bpe;
    if (o->perm_epoch != epoch) {
        if (!o->perm) o->perm = malloc((size_t)n * sizeof *o->perm);
        if (!o->perm)
            return qc_error(QIAO_ERR_OUT_OF_MEMORY, "loader: out of memory for a permutation of %lld scenes",
                            (long long)n);
        qiao_status st = epoch_order(&l->p, l->bpe, epoch, o->perm);
        if (st != QIAO_OK) return st;
        o->perm_epoch = epoch;
    }
    return make_batch(&l->p, l->bpe, index, o->perm, batch);
}

static void ring_free(void *ctx, void *batch) {
    (void)ctx;
    qmod_train_batch_free(batch);
}

static void loader_free(qmod_loader *l) {
    if (!l) return;
    if (l->orders)
        for (int i = 0; i < l->p.threads; i++)
            free(l->orders[i].perm);
    free(l->orders);
    free(l);
}

qiao_status qmod_loader_start(const qmod_loader_params *p, qmod_loader **out) {
    if (!out) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_loader_start: out is NULL");
    *out = NULL;
    qiao_status st = check_params(p, "qmod_loader_start");
    if (st != QIAO_OK) return st;
    qmod_ring_params rp = {.name = "qmod_loader",
                           .batch_size = sizeof(qmod_train_batch),
                           .threads = p->threads,
                           .prefetch = p->prefetch,
                           .first_batch = p->first_batch,
                           .end = INT64_MAX,
                           .make = ring_make,
                           .free_batch = ring_free};
    if ((st = qmod_ring_check(&rp)) != QIAO_OK) return st;
    qmod_loader *l = calloc(1, sizeof *l);
    if (l) {
        l->p = *p;
        l->orders = calloc((size_t)p->threads, sizeof *l->orders);
    }
    if (!l || !l->orders) {
        loader_free(l);
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "qmod_loader_start: out of memory");
    }
    l->bpe = qmod_loader_epoch_batches(p->data, p->batch);
    for (int i = 0; i < p->threads; i++)
        l->orders[i].perm_epoch = -1;
    rp.ctx = l;
    if ((st = qmod_ring_start(&rp, &l->ring)) != QIAO_OK) {
        loader_free(l);
        return st;
    }
    *out = l;
    return QIAO_OK;
}

qiao_status qmod_loader_next(qmod_loader *l, qmod_train_batch **out) {
    if (!l || !out) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_loader_next: loader and out are required");
    void *b = NULL;
    qiao_status st = qmod_ring_next(l->ring, &b);
    *out = b;
    return st;
}

void qmod_loader_release(qmod_loader *l, qmod_train_batch *b) {
    if (l) qmod_ring_release(l->ring, b);
}

void qmod_loader_stop(qmod_loader *l) {
    if (!l) return;
    qmod_ring_stop(l->ring);
    loader_free(l);
}
