/* models/data/vqa_manifest.c - a shapes split's questions (see vqa.h):
 * dataset.json's vocabularies and manifest.jsonl's scenes, from memory so
 * the fuzz target (tests/fuzz/fuzz_model_config.c) drives the same code. */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "models/data/vqa.h"

/* Sanity limits: the shapes world has 35 answers and 5 types. */
#define VQA_MAX_ANSWERS 65536
#define VQA_MAX_TYPES 255
#define VQA_MAX_COGENT 4096
#define VQA_MAX_ATTR 32767 /* an attribute index is an int16_t */
#define VQA_MAX_OBJECTS 4096

static const char *const k_attr_lists[QMOD_VQA_NATTR] = {"shapes", "colors", "sizes"};
static const char *const k_attr_keys[QMOD_VQA_NATTR] = {"shape", "color", "size"};

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* DIR/rel, or rel itself when it is absolute. NULL on OOM. */
static char *join_path(const char *dir, const char *rel) {
    if (rel[0] == '/' || !dir || !dir[0]) return dup_str(rel);
    size_t nd = strlen(dir), nr = strlen(rel);
    while (nd > 1 && dir[nd - 1] == '/')
        nd--;
    char *p = malloc(nd + 1 + nr + 1);
    if (!p) return NULL;
    memcpy(p, dir, nd);
    p[nd] = '/';
    memcpy(p + nd + 1, rel, nr + 1);
    return p;
}

static const char *str_item(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;
    return cJSON_IsString(v) && v->valuestring[0] ? v->valuestring : NULL;
}

static int find_str(char *const *list, int32_t n, const char *s) {
    for (int32_t i = 0; i < n; i++)
        if (!strcmp(list[i], s)) return i;
    return -1;
}

/* The cogent pairs as "colour shape" strings. */
typedef struct vocab {
    char **cogent;
    int32_t n_cogent;
} vocab;

static void free_list(char **l, int32_t n) {
    for (int32_t i = 0; l && i < n; i++)
        free(l[i]);
    free(l);
}

/* A list of distinct non-empty strings, or NULL when `a` is not an array. */
static qiao_status parse_names(const char *dir, const char *name, const cJSON *a, const char *key, int32_t max,
                               char ***out, int32_t *n_out) {
    if (!a) return QIAO_OK;
    const int n = cJSON_IsArray(a) ? cJSON_GetArraySize(a) : -1;
    if (n < 0 || n > max) return qc_error(QIAO_ERR_FORMAT, "%s/%s: \"%s\" must be an array of at most %d names", dir, name, key, (int)max);
    if (!(*out = calloc((size_t)(n ? n : 1), sizeof **out))) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s/%s: out of memory", dir, name);
    for (int i = 0; i < n; i++) {
        const cJSON *t = cJSON_GetArrayItem(a, i);
        if (!cJSON_IsString(t) || !t->valuestring[0])
            return qc_error(QIAO_ERR_FORMAT, "%s/%s: %s[%d] is not a string", dir, name, key, i);
        if (find_str(*out, *n_out, t->valuestring) >= 0)
            return qc_error(QIAO_ERR_FORMAT, "%s/%s: %s \"%s\" listed twice", dir, name, key, t->valuestring);
        if (!((*out)[*n_out] = dup_str(t->valuestring)))
            return qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s/%s: out of memory", dir, name);
        (*n_out)++;
    }
    return QIAO_OK;
}

/* dataset.json: "answers" [{"id"}], "question_types" [strings], optional
 * "cogent_pairs" [{"color", "shape"}] and attribute lists "shapes",
 * "colors", "sizes" [strings]. */
static qiao_status parse_desc(const char *dir, const char *desc, qmod_vqa_dataset *d, vocab *v) {
    const char *name = "dataset.json";
    cJSON *root = desc ? cJSON_Parse(desc) : NULL;
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return qc_error(QIAO_ERR_FORMAT, "%s/%s: not a JSON object", dir, name);
    }
    qiao_status st = QIAO_OK;
    const cJSON *ans = cJSON_GetObjectItemCaseSensitive(root, "answers");
    const cJSON *types = cJSON_GetObjectItemCaseSensitive(root, "question_types");
    const cJSON *cg = cJSON_GetObjectItemCaseSensitive(root, "cogent_pairs");
    int na = cJSON_IsArray(ans) ? cJSON_GetArraySize(ans) : 0,
        nt = cJSON_IsArray(types) ? cJSON_GetArraySize(types) : 0;
    int nc = cJSON_IsArray(cg) ? cJSON_GetArraySize(cg) : 0;
    if (na < 1 || na > VQA_MAX_ANSWERS || nt < 1 || nt > VQA_MAX_TYPES || (cg && !cJSON_IsArray(cg)) ||
        nc > VQA_MAX_COGENT) {
        st = qc_error(QIAO_ERR_FORMAT,
                      "%s/%s: needs \"answers\" (1..%d) and \"question_types\" "
                      "(1..%d) arrays, and \"cogent_pairs\" "
                      "an array if present: not a shapes-world split?",
                      dir, name, VQA_MAX_ANSWERS, VQA_MAX_TYPES);
        goto done;
    }
    d->answers = calloc((size_t)na, sizeof *d->answers);
    v->cogent = calloc((size_t)(nc ? nc : 1), sizeof *v->cogent);
    if (!d->answers || !v->cogent) {
        st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s/%s: out of memory", dir, name);
        goto done;
    }
    for (int i = 0; i < na && st == QIAO_OK; i++) {
        const char *id = str_item(cJSON_GetArrayItem(ans, i), "id");
        if (!id)
            st = qc_error(QIAO_ERR_FORMAT, "%s/%s: answers[%d].id missing or not a string", dir, name, i);
        else if (find_str(d->answers, d->n_answers, id) >= 0)
            st = qc_error(QIAO_ERR_FORMAT, "%s/%s: answer \"%s\" listed twice", dir, name, id);
        else if (!(d->answers[d->n_answers] = dup_str(id)))
            st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s/%s: out of memory", dir, name);
        else
            d->n_answers++;
    }
    if (st == QIAO_OK) st = parse_names(dir, name, types, "question_types", VQA_MAX_TYPES, &d->types, &d->n_types);
    for (int a = 0; a < QMOD_VQA_NATTR && st == QIAO_OK; a++)
        st = parse_names(dir, name, cJSON_GetObjectItemCaseSensitive(root, k_attr_lists[a]), k_attr_lists[a],
                         VQA_MAX_ATTR, &d->attr[a], &d->n_attr[a]);
    for (int i = 0; i < nc && st == QIAO_OK; i++) {
        const cJSON *p = cJSON_GetArrayItem(cg, i);
        const char *c = str_item(p, "color"), *s = str_item(p, "shape");
        if (!c || !s) {
            st = qc_error(QIAO_ERR_FORMAT, "%s/%s: cogent_pairs[%d] needs \"color\" and \"shape\"", dir, name, i);
            break;
        }
        size_t n = strlen(c) + strlen(s) + 2;
        if (!(v->cogent[i] = malloc(n))) {
            st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s/%s: out of memory", dir, name);
            break;
        }
        snprintf(v->cogent[i], n, "%s %s", c, s);
        v->n_cogent++;
    }
done:
    cJSON_Delete(root);
    return st;
}

/* Room for one more of an array of `size`-byte items. */
static bool grow(void **a, int64_t n, int64_t *cap, size_t size) {
    if (n < *cap) return true;
    int64_t nc = *cap ? 2 * *cap : 256;
    void *na = realloc(*a, (size_t)nc * size);
    if (!na) return false;
    *a = na;
    *cap = nc;
    return true;
}

static void free_question(qmod_vqa_question *q) {
    free(q->text);
    free(q->speech);
}

/* One manifest line: its scene is appended to d->scenes, its questions to
 * d->questions (neither on failure). */
static qiao_status parse_line(const char *text, size_t len, const char *dir, const char *file, int64_t line,
                              const vocab *v, qmod_vqa_dataset *d, int64_t *scap, int64_t *qcap) {
    cJSON *root = cJSON_ParseWithLength(text, len);
    if (!root) return qc_error(QIAO_ERR_FORMAT, "%s:%lld: not valid JSON", file, (long long)line);
    qiao_status st = QIAO_OK;
    const int64_t q0 = d->n_questions;
    const char *id = str_item(root, "id"), *image = str_item(root, "image");
    const cJSON *objs = cJSON_GetObjectItemCaseSensitive(root, "objects");
    const cJSON *qa = cJSON_GetObjectItemCaseSensitive(root, "qa");
    const cJSON *speech = cJSON_GetObjectItemCaseSensitive(root, "speech");
    const cJSON *wavs = cJSON_IsObject(speech) ? cJSON_GetObjectItemCaseSensitive(speech, "qa") : NULL;
    qmod_vqa_scene sc = {0};
    if (!cJSON_IsObject(root))
        st = qc_error(QIAO_ERR_FORMAT, "%s:%lld: not a JSON object", file, (long long)line);
    else if (!id)
        st = qc_error(QIAO_ERR_FORMAT, "%s:%lld: \"id\" missing or not a string", file, (long long)line);
    else if (!image)
        st = qc_error(QIAO_ERR_FORMAT,
                      "%s:%lld: \"image\" missing or not a string: VQA needs a "
                      "picture per scene",
                      file, (long long)line);
    else if (!cJSON_IsArray(objs))
        st = qc_error(QIAO_ERR_FORMAT, "%s:%lld: \"objects\" missing or not an array", file, (long long)line);
    else if (!cJSON_IsArray(qa))
        st = qc_error(QIAO_ERR_FORMAT, "%s:%lld: \"qa\" missing or not an array", file, (long long)line);
    else if (speech && !cJSON_IsObject(speech))
        st = qc_error(QIAO_ERR_FORMAT, "%s:%lld: \"speech\" must be an object", file, (long long)line);
    else if (wavs && (!cJSON_IsArray(wavs) || cJSON_GetArraySize(wavs) != cJSON_GetArraySize(qa)))
        st = qc_error(QIAO_ERR_FORMAT,
                      "%s:%lld: \"speech\".\"qa\" must be an array parallel to "
                      "\"qa\" (%d WAVs "
                      "for %d questions)",
                      file, (long long)line, cJSON_IsArray(wavs) ? cJSON_GetArraySize(wavs) : -1,
                      cJSON_GetArraySize(qa));
    if (st != QIAO_OK) goto done;

    /* A cogent scene holds a held-out colour and shape in one object. */
    const int nobj = cJSON_GetArraySize(objs);
    if (nobj > VQA_MAX_OBJECTS) {
        st = qc_error(QIAO_ERR_FORMAT, "%s:%lld: %d objects (at most %d)", file, (long long)line, nobj,
                      VQA_MAX_OBJECTS);
        goto done;
    }
    if (!(sc.objects = calloc((size_t)(nobj ? nobj : 1), sizeof *sc.objects))) {
        st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s:%lld: out of memory", file, (long long)line);
        goto done;
    }
    const cJSON *o;
    cJSON_ArrayForEach(o, objs) {
        const char *c = str_item(o, "color"), *s = str_item(o, "shape");
        if (!c || !s) {
            st = qc_error(QIAO_ERR_FORMAT, "%s:%lld: objects[%d] needs \"color\" and \"shape\" strings", file,
                          (long long)line, sc.n_objects);
            goto done;
        }
        qmod_vqa_object *ob = &sc.objects[sc.n_objects];
        for (int a = 0; a < QMOD_VQA_NATTR; a++) {
            const char *nm = str_item(o, k_attr_keys[a]);
            ob->attr[a] = (int16_t)(nm ? find_str(d->attr[a], d->n_attr[a], nm) : -1);
        }
        const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, "x"), *y = cJSON_GetObjectItemCaseSensitive(o, "y"),
                    *r = cJSON_GetObjectItemCaseSensitive(o, "r");
        /* A place outside the picture or an absurd radius is no place: the
         * object still counts, it only gives no cell labels. */
        if (cJSON_IsNumber(x) && cJSON_IsNumber(y) && cJSON_IsNumber(r) && x->valuedouble >= 0 &&
            x->valuedouble <= 1 && y->valuedouble >= 0 && y->valuedouble <= 1 && r->valuedouble > 0 &&
            r->valuedouble <= 1) {
            ob->x = (float)x->valuedouble, ob->y = (float)y->valuedouble, ob->r = (float)r->valuedouble;
        }
        for (int32_t k = 0; k < v->n_cogent && !sc.cogent; k++) {
            const char *p = v->cogent[k];
            size_t nc = strlen(c);
            sc.cogent = !strncmp(p, c, nc) && p[nc] == ' ' && !strcmp(p + nc + 1, s);
        }
        sc.n_objects++;
    }

    int k = 0;
    const cJSON *q;
    cJSON_ArrayForEach(q, qa) {
        const char *lang = str_item(q, "lang"), *question = str_item(q, "question");
        const char *ans = str_item(q, "answer_id"), *type = str_item(q, "type");
        const cJSON *w = wavs ? cJSON_GetArrayItem(wavs, k) : NULL;
        int l = !lang ? -1 : !strcmp(lang, "zh") ? QMOD_LANG_ZH : !strcmp(lang, "en") ? QMOD_LANG_EN : -1;
        int a = ans ? find_str(d->answers, d->n_answers, ans) : -1;
        int t = type ? find_str(d->types, d->n_types, type) : -1;
        if (l < 0 || !question || a < 0 || t < 0) {
            st = qc_error(QIAO_ERR_FORMAT,
                          "%s:%lld: qa[%d] needs \"lang\" (zh or en), \"question\", "
                          "and \"answer_id\" and \"type\" "
                          "from dataset.json's \"answers\" and \"question_types\"",
                          file, (long long)line, k);
            goto done;
        }
        if (w && (!cJSON_IsString(w) || !w->valuestring[0])) {
            st = qc_error(QIAO_ERR_FORMAT, "%s:%lld: speech.qa[%d] is not a path", file, (long long)line, k);
            goto done;
        }
        if (!grow((void **)&d->questions, d->n_questions, qcap, sizeof *d->questions)) {
            st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s:%lld: out of memory", file, (long long)line);
            goto done;
        }
        qmod_vqa_question *x = &d->questions[d->n_questions];
        memset(x, 0, sizeof *x);
        x->scene = d->n_scenes;
        x->answer = a;
        x->type = (uint8_t)t;
        x->lang = (uint8_t)l;
        x->text = dup_str(question);
        x->speech = w ? join_path(dir, w->valuestring) : NULL;
        if (!x->text || (w && !x->speech)) {
            free_question(x);
            st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s:%lld: out of memory", file, (long long)line);
            goto done;
        }
        d->n_questions++;
        d->n_spoken += x->speech != NULL;
        k++;
    }
    if (!grow((void **)&d->scenes, d->n_scenes, scap, sizeof *d->scenes) || !(sc.id = dup_str(id)) ||
        !(sc.image = join_path(dir, image))) {
        st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s:%lld: out of memory", file, (long long)line);
        goto done;
    }
    sc.first_question = q0;
    sc.n_questions = d->n_questions - q0;
    d->scenes[d->n_scenes++] = sc;
    sc.id = sc.image = NULL;
    sc.objects = NULL;
done:
    free(sc.id);
    free(sc.image);
    free(sc.objects);
    if (st != QIAO_OK) {
        for (int64_t i = q0; i < d->n_questions; i++) {
            d->n_spoken -= d->questions[i].speech != NULL;
            free_question(&d->questions[i]);
        }
        d->n_questions = q0;
    }
    cJSON_Delete(root);
    return st;
}

qiao_status qmod_vqa_dataset_parse(const char *dir, const char *name, const char *desc, const char *manifest,
                                   size_t len, qmod_vqa_dataset *out) {
    if (!out) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_vqa_dataset_parse: out is NULL");
    memset(out, 0, sizeof *out);
    if (!dir || !name || !desc || (!manifest && len))
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_vqa_dataset_parse: NULL argument");
    qmod_vqa_dataset d = {0};
    vocab v = {0};
    int64_t scap = 0, qcap = 0;
    qiao_status st = (d.dir = dup_str(dir)) ? QIAO_OK : qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory", name);
    if (st == QIAO_OK) st = parse_desc(dir, desc, &d, &v);
    if (st == QIAO_OK && len && memchr(manifest, 0, len)) st = qc_error(QIAO_ERR_FORMAT, "%s: NUL byte", name);
    int64_t line = 0;
    for (size_t at = 0; st == QIAO_OK && at < len;) {
        const char *s = manifest + at, *nl = memchr(s, '\n', len - at);
        const size_t n = nl ? (size_t)(nl - s) : len - at;
        at += n + (nl != NULL);
        line++;
        size_t i = 0;
        while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r'))
            i++;
        if (i == n) continue; /* blank line */
        st = parse_line(s, n, dir, name, line, &v, &d, &scap, &qcap);
    }
    if (st == QIAO_OK && d.n_scenes == 0) st = qc_error(QIAO_ERR_FORMAT, "%s: no scenes", name);
    if (st == QIAO_OK && d.n_questions == 0) st = qc_error(QIAO_ERR_FORMAT, "%s: no questions", name);
    free_list(v.cogent, v.n_cogent);
    if (st != QIAO_OK) {
        qmod_vqa_dataset_free(&d);
        return st;
    }
    *out = d;
    return QIAO_OK;
}

qiao_status qmod_vqa_dataset_load(const char *dir, qmod_vqa_dataset *out) {
    if (!out) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_vqa_dataset_load: out is NULL");
    memset(out, 0, sizeof *out);
    if (!dir || !dir[0]) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_vqa_dataset_load: no directory");
    char *dpath = join_path(dir, "dataset.json"), *mpath = join_path(dir, "manifest.jsonl");
    uint8_t *desc = NULL, *man = NULL;
    size_t ndesc = 0, nman = 0;
    qiao_status st = dpath && mpath ? QIAO_OK : qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory", dir);
    /* qc_read_file NUL-terminates what it reads. A manifest is about 2 KB a
     * scene; 4 GB would be two million scenes. */
    if (st == QIAO_OK) st = qc_read_file(dpath, (size_t)16 << 20, &desc, &ndesc);
    if (st == QIAO_OK) st = qc_read_file(mpath, (size_t)4 << 30, &man, &nman);
    if (st == QIAO_OK) st = qmod_vqa_dataset_parse(dir, mpath, (const char *)desc, (const char *)man, nman, out);
    free(desc);
    free(man);
    free(dpath);
    free(mpath);
    return st;
}

void qmod_vqa_dataset_free(qmod_vqa_dataset *d) {
    if (!d) return;
    for (int64_t i = 0; i < d->n_scenes; i++) {
        free(d->scenes[i].id);
        free(d->scenes[i].image);
        free(d->scenes[i].objects);
    }
    for (int64_t i = 0; i < d->n_questions; i++)
        free_question(&d->questions[i]);
    free(d->scenes);
    free(d->questions);
    free_list(d->answers, d->n_answers);
    free_list(d->types, d->n_types);
    for (int a = 0; a < QMOD_VQA_NATTR; a++) free_list(d->attr[a], d->n_attr[a]);
    free(d->dir);
    memset(d, 0, sizeof *d);
}

void qmod_vqa_place_labels(const qmod_vqa_dataset *d, int64_t scene, int G, int32_t *labels) {
    const int64_t places = (int64_t)G * G;
    for (int64_t i = 0; i < places * QMOD_VQA_NATTR; i++) labels[i] = -1;
    if (!d || scene < 0 || scene >= d->n_scenes || G < 1) return;
    const qmod_vqa_scene *sc = &d->scenes[scene];
    for (int32_t k = 0; k < sc->n_objects; k++)
        if (sc->objects[k].r <= 0) return; /* an object without a place could be in any */
    int32_t who[64 * 64];
    for (int64_t q = 0; q < places; q++) who[q] = -1;
    for (int32_t k = 0; k < sc->n_objects; k++) {
        const qmod_vqa_object *ob = &sc->objects[k];
        const int gx = ob->x <= 0 ? 0 : ob->x >= 1 ? G - 1 : (int)(ob->x * (float)G);
        const int gy = ob->y <= 0 ? 0 : ob->y >= 1 ? G - 1 : (int)(ob->y * (float)G);
        const int64_t q = (int64_t)gy * G + gx;
        if (who[q] < 0 || ob->r > sc->objects[who[q]].r) who[q] = k;
    }
    for (int64_t q = 0; q < places; q++)
        for (int a = 0; a < QMOD_VQA_NATTR; a++) {
            if (!d->n_attr[a]) continue;
            const int32_t k = who[q];
            labels[q * QMOD_VQA_NATTR + a] = k < 0 ? 0 : sc->objects[k].attr[a] < 0 ? -1 : 1 + sc->objects[k].attr[a];
        }
}

void qmod_vqa_cell_labels(const qmod_vqa_dataset *d, int64_t scene, int grid, int32_t *labels) {
    const int64_t cells = (int64_t)grid * grid;
    for (int64_t i = 0; i < cells * QMOD_VQA_NATTR; i++) labels[i] = -1;
    if (!d || scene < 0 || scene >= d->n_scenes || grid < 1) return;
    const qmod_vqa_scene *sc = &d->scenes[scene];
    for (int32_t k = 0; k < sc->n_objects; k++)
        if (sc->objects[k].r <= 0) return; /* an object without a place could hide under any cell */
    enum { S = 4 }; /* samples per cell side */
    for (int gy = 0; gy < grid; gy++)
        for (int gx = 0; gx < grid; gx++) {
            int best = -1, best_n = 0;
            for (int32_t k = 0; k < sc->n_objects; k++) {
                const qmod_vqa_object *ob = &sc->objects[k];
                const float rr = 0.8f * ob->r;
                int n = 0;
                for (int sy = 0; sy < S; sy++)
                    for (int sx = 0; sx < S; sx++) {
                        const float px = ((float)gx + ((float)sx + 0.5f) / S) / (float)grid - ob->x;
                        const float py = ((float)gy + ((float)sy + 0.5f) / S) / (float)grid - ob->y;
                        n += px * px + py * py <= rr * rr;
                    }
                if (n > best_n) best = k, best_n = n;
            }
            int32_t *l = labels + ((int64_t)gy * grid + gx) * QMOD_VQA_NATTR;
            for (int a = 0; a < QMOD_VQA_NATTR; a++) {
                if (!d->n_attr[a]) continue;
                if (best < 0 || best_n * 4 < S * S)
                    l[a] = 0;
                else
                    l[a] = sc->objects[best].attr[a] < 0 ? -1 : 1 + sc->objects[best].attr[a];
            }
        }
}
