/* datasets/shapes/generate.c - writes a split of the shapes world to disk
 * (images, speech, manifest.jsonl, dataset.json) over OpenMP threads, and
 * computes a manifest's blind baseline. */
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "shapes.h"

#define PATH_CAP 4096

shapes_params shapes_default_params(void) {
    shapes_params p;
    memset(&p, 0, sizeof p);
    p.struct_size = sizeof p;
    p.n = 1000;
    p.seed = 1;
    p.split = SHAPES_TRAIN;
    p.size = 64;
    p.speech = 0;
    p.langs = 3;
    p.jobs = 2;
    return p;
}

static const char *const LANG_CODE[SHAPES_NLANGS] = {"zh", "en"};

static int exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Relative paths of a scene's files. */
static void image_rel(char *buf, size_t cap, int64_t i) { snprintf(buf, cap, "images/%06lld.png", (long long)i); }
static void caption_wav_rel(char *buf, size_t cap, int64_t i, int lang, int k) {
    snprintf(buf, cap, "speech/%06lld_cap_%s_%d.wav", (long long)i, LANG_CODE[lang], k);
}
static void qa_wav_rel(char *buf, size_t cap, int64_t i, int lang, int k) {
    snprintf(buf, cap, "speech/%06lld_qa_%s_%d.wav", (long long)i, LANG_CODE[lang], k);
}
/* Each utterance's voice, rate, pitch and noise come from its own stream. */
static uint64_t utterance_seed(const shapes_scene *sc, int what, int lang, int k) {
    qc_rng r;
    qc_rng_seed(&r, sc->seed ^ 0x5EEC45EEC4ull);
    uint64_t x = qc_rng_u64(&r) + (uint64_t)(what * 1000 + lang * 100 + k);
    qc_rng_seed(&r, x);
    return qc_rng_u64(&r);
}

static qiao_status join(char *buf, const char *dir, const char *rel) {
    if ((size_t)snprintf(buf, PATH_CAP, "%s/%s", dir, rel) >= PATH_CAP) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "%s: path too long", dir);
    return QIAO_OK;
}

/* How many captions (questions) of a scene are spoken. */
static int spoken_captions(const shapes_scene *sc, const shapes_params *p) {
    return p->speech == SHAPES_SPEECH_ALL ? sc->ncap : p->speech ? 1 : 0;
}
static int spoken_questions(const shapes_scene *sc, const shapes_params *p) {
    return p->speech == SHAPES_SPEECH_ALL || p->speech == SHAPES_SPEECH_QUESTIONS ? sc->nqa : 0;
}

/* Writes the scene's files that are not there yet. */
static qiao_status scene_files(const shapes_scene *sc, const shapes_params *p, const char *out) {
    char rel[256], path[PATH_CAP];
    image_rel(rel, sizeof rel, sc->index);
    qiao_status st = join(path, out, rel);
    if (st == QIAO_OK && !exists(path)) st = shapes_render_png(sc, p->size, path);
    if (!p->speech) return st;
    for (int lang = 0; st == QIAO_OK && lang < SHAPES_NLANGS; lang++) {
        if (!(p->langs & (1 << lang))) continue;
        for (int k = 0; st == QIAO_OK && k < spoken_captions(sc, p); k++) {
            caption_wav_rel(rel, sizeof rel, sc->index, lang, k);
            st = join(path, out, rel);
            if (st == QIAO_OK && !exists(path))
                st = shapes_speak_wav(sc->cap[lang][k], (shapes_lang)lang, utterance_seed(sc, 0, lang, k), path);
        }
        for (int k = 0; st == QIAO_OK && k < spoken_questions(sc, p); k++) {
            qa_wav_rel(rel, sizeof rel, sc->index, lang, k);
            st = join(path, out, rel);
            if (st == QIAO_OK && !exists(path))
                st = shapes_speak_wav(sc->qa[k].text[lang], (shapes_lang)lang, utterance_seed(sc, 1, lang, k), path);
        }
    }
    return st;
}

static cJSON *scene_json(const shapes_scene *sc, const shapes_params *p) {
    char id[64], rel[256];
    cJSON *o = cJSON_CreateObject();
    snprintf(id, sizeof id, "shapes-%s-%06lld", shapes_split_name(sc->split), (long long)sc->index);
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddStringToObject(o, "split", shapes_split_name(sc->split));
    image_rel(rel, sizeof rel, sc->index);
    cJSON_AddStringToObject(o, "image", rel);
    cJSON *objs = cJSON_AddArrayToObject(o, "objects");
    for (int i = 0; i < sc->n; i++) {
        const shapes_object *b = &sc->obj[i];
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "shape", shapes_name(SHAPES_K_SHAPE, b->shape));
        cJSON_AddStringToObject(j, "color", shapes_name(SHAPES_K_COLOR, b->color));
        cJSON_AddStringToObject(j, "size", shapes_name(SHAPES_K_SIZE, b->size));
        /* 4 decimals, printed as such (the float's double would print
         * 0.46560001373291016) */
        cJSON_AddNumberToObject(j, "x", round((double)b->x * 1e4) / 1e4);
        cJSON_AddNumberToObject(j, "y", round((double)b->y * 1e4) / 1e4);
        cJSON_AddNumberToObject(j, "r", round((double)b->r * 1e4) / 1e4);
        cJSON_AddNumberToObject(j, "rotation", b->rot);
        cJSON_AddStringToObject(j, "grid", shapes_name(SHAPES_K_PLACE, b->cell));
        cJSON_AddItemToArray(objs, j);
    }
    cJSON *caps = cJSON_AddObjectToObject(o, "captions");
    for (int lang = 0; lang < SHAPES_NLANGS; lang++) {
        if (!(p->langs & (1 << lang))) continue;
        cJSON *a = cJSON_AddArrayToObject(caps, LANG_CODE[lang]);
        for (int k = 0; k < sc->ncap; k++) cJSON_AddItemToArray(a, cJSON_CreateString(sc->cap[lang][k]));
    }
    cJSON *qa = cJSON_AddArrayToObject(o, "qa");
    for (int k = 0; k < sc->nqa; k++)
        for (int lang = 0; lang < SHAPES_NLANGS; lang++) {
            if (!(p->langs & (1 << lang))) continue;
            cJSON *j = cJSON_CreateObject();
            cJSON_AddStringToObject(j, "lang", LANG_CODE[lang]);
            cJSON_AddStringToObject(j, "question", sc->qa[k].text[lang]);
            cJSON_AddStringToObject(j, "answer", shapes_answer_text(sc->qa[k].answer, (shapes_lang)lang));
            cJSON_AddStringToObject(j, "answer_id", shapes_answer_key(sc->qa[k].answer));
            cJSON_AddStringToObject(j, "type", shapes_qtype_name(sc->qa[k].type));
            cJSON_AddItemToArray(qa, j);
        }
    if (p->speech) {
        cJSON *sp = cJSON_AddObjectToObject(o, "speech");
        cJSON *sc_caps = cJSON_AddObjectToObject(sp, "captions");
        for (int lang = 0; lang < SHAPES_NLANGS; lang++) {
            if (!(p->langs & (1 << lang))) continue;
            cJSON *a = cJSON_AddArrayToObject(sc_caps, LANG_CODE[lang]);
            for (int k = 0; k < spoken_captions(sc, p); k++) {
                caption_wav_rel(rel, sizeof rel, sc->index, lang, k);
                cJSON_AddItemToArray(a, cJSON_CreateString(rel));
            }
        }
        if (!spoken_questions(sc, p)) return o;
        cJSON *a = cJSON_AddArrayToObject(sp, "qa"); /* parallel to "qa": the WAV of question k is a[k] */
        for (int k = 0; k < sc->nqa; k++)
            for (int lang = 0; lang < SHAPES_NLANGS; lang++) {
                if (!(p->langs & (1 << lang))) continue;
                qa_wav_rel(rel, sizeof rel, sc->index, lang, k);
                cJSON_AddItemToArray(a, cJSON_CreateString(rel));
            }
    }
    return o;
}

static char *dataset_json(const shapes_params *p) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "generator", SHAPES_VERSION);
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)p->seed); /* a string: JSON numbers lose 64-bit seeds */
    cJSON_AddStringToObject(o, "seed", seed);
    cJSON_AddStringToObject(o, "split", shapes_split_name(p->split));
    cJSON_AddNumberToObject(o, "n", (double)p->n);
    cJSON_AddNumberToObject(o, "size", p->size);
    cJSON *langs = cJSON_AddArrayToObject(o, "langs");
    for (int l = 0; l < SHAPES_NLANGS; l++)
        if (p->langs & (1 << l)) cJSON_AddItemToArray(langs, cJSON_CreateString(LANG_CODE[l]));
    if (p->speech == SHAPES_SPEECH_LONG)
        cJSON_AddStringToObject(o, "speech", "long");
    else if (p->speech == SHAPES_SPEECH_QUESTIONS)
        cJSON_AddStringToObject(o, "speech", "questions");
    else
        cJSON_AddBoolToObject(o, "speech", p->speech != 0);
    if (p->speech) {
        cJSON_AddNumberToObject(o, "sample_rate", 16000);
        cJSON_AddStringToObject(o, "tts", "espeak-ng (cmn; en, en-us, en-gb-x-rp; variants m1-m5,m7,f1-f4)");
    }
    static const shapes_kind K[4] = {SHAPES_K_SHAPE, SHAPES_K_COLOR, SHAPES_K_SIZE, SHAPES_K_PLACE};
    static const char *const KN[4] = {"shapes", "colors", "sizes", "places"};
    static const int KC[4] = {SHAPES_NSHAPES, SHAPES_NCOLORS, SHAPES_NSIZES, SHAPES_NPLACES};
    for (int k = 0; k < 4; k++) {
        cJSON *a = cJSON_AddArrayToObject(o, KN[k]);
        for (int i = 0; i < KC[k]; i++) cJSON_AddItemToArray(a, cJSON_CreateString(shapes_name(K[k], i)));
    }
    cJSON *cg = cJSON_AddArrayToObject(o, "cogent_pairs");
    for (int i = 0; i < SHAPES_NCOGENT; i++) {
        int c, s;
        shapes_cogent_pair(i, &c, &s);
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "color", shapes_name(SHAPES_K_COLOR, c));
        cJSON_AddStringToObject(j, "shape", shapes_name(SHAPES_K_SHAPE, s));
        cJSON_AddItemToArray(cg, j);
    }
    cJSON *qt = cJSON_AddArrayToObject(o, "question_types");
    for (int t = 0; t < SHAPES_NQTYPES; t++) cJSON_AddItemToArray(qt, cJSON_CreateString(shapes_qtype_name(t)));
    cJSON *av = cJSON_AddArrayToObject(o, "answers");
    for (int a = 0; a < SHAPES_NANSWERS; a++) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "id", shapes_answer_key(a));
        cJSON_AddStringToObject(j, "zh", shapes_answer_text(a, SHAPES_ZH));
        cJSON_AddStringToObject(j, "en", shapes_answer_text(a, SHAPES_EN));
        cJSON_AddItemToArray(av, j);
    }
    char *s = cJSON_Print(o);
    cJSON_Delete(o);
    return s;
}

static qiao_status write_text_atomic(const char *path, const char *text) {
    char tmp[PATH_CAP];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) >= sizeof tmp) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "%s: path too long", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) return qc_error(QIAO_ERR_IO, "%s: %s", tmp, strerror(errno));
    size_t n = strlen(text);
    int ok = fwrite(text, 1, n, f) == n && fputc('\n', f) != EOF;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        remove(tmp);
        return qc_error(QIAO_ERR_IO, "%s: write failed", path);
    }
    return QIAO_OK;
}

static char *read_all(const char *path) {
    uint8_t *data;
    size_t n;
    return qc_read_file(path, (size_t)64 << 20, &data, &n) == QIAO_OK ? (char *)data : NULL;
}

static qiao_status write_manifest(const shapes_params *p, const char *out) {
    char path[PATH_CAP], tmp[PATH_CAP];
    qiao_status st = join(path, out, "manifest.jsonl");
    if (st != QIAO_OK) return st;
    st = join(tmp, out, "manifest.jsonl.tmp");
    if (st != QIAO_OK) return st;
    FILE *f = fopen(tmp, "wb");
    if (!f) return qc_error(QIAO_ERR_IO, "%s: %s", tmp, strerror(errno));
    shapes_scene *sc = malloc(sizeof *sc);
    if (!sc) {
        fclose(f);
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: scene", path);
    }
    int ok = 1;
    for (int64_t i = 0; st == QIAO_OK && ok && i < p->n; i++) {
        st = shapes_scene_make(p->seed, p->split, i, sc);
        if (st != QIAO_OK) break;
        cJSON *j = scene_json(sc, p);
        char *s = j ? cJSON_PrintUnformatted(j) : NULL;
        cJSON_Delete(j);
        if (!s) st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: scene %lld", path, (long long)i);
        else ok = fputs(s, f) >= 0 && fputc('\n', f) != EOF;
        free(s);
    }
    free(sc);
    ok = (fclose(f) == 0) && ok;
    if (st == QIAO_OK && !ok) st = qc_error(QIAO_ERR_IO, "%s: write failed", tmp);
    if (st == QIAO_OK && rename(tmp, path) != 0) st = qc_error(QIAO_ERR_IO, "%s: rename: %s", path, strerror(errno));
    if (st != QIAO_OK) remove(tmp);
    return st;
}

qiao_status shapes_generate(const shapes_params *params, const char *out) {
    shapes_params p = shapes_default_params();
    if (!params || !out || !out[0]) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "shapes_generate: NULL params or output directory");
    size_t take = params->struct_size < sizeof p ? params->struct_size : sizeof p;
    memcpy(&p, params, take);
    p.struct_size = sizeof p;
    if (p.n < 0 || p.n > 100000000) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "shapes: --n %lld out of range (0..1e8)", (long long)p.n);
    if (p.size < 16 || p.size > 1024) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "shapes: --size %d out of range (16..1024)", p.size);
    if ((int)p.split < 0 || p.split >= SHAPES_NSPLITS) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "shapes: bad split %d", (int)p.split);
    if (p.langs <= 0 || p.langs > 3) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "shapes: no language selected");
    if (p.speech < SHAPES_SPEECH_NONE || p.speech > SHAPES_SPEECH_QUESTIONS)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "shapes: bad speech mode %d", p.speech);
    if (p.jobs < 1 || p.jobs > 256) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "shapes: --jobs %d out of range (1..256)", p.jobs);

    char path[PATH_CAP];
    qiao_status st = qc_mkdir_p(out);
    if (st == QIAO_OK) st = join(path, out, "images");
    if (st == QIAO_OK) st = qc_mkdir_p(path);
    if (st == QIAO_OK && p.speech) st = join(path, out, "speech");
    if (st == QIAO_OK && p.speech) st = qc_mkdir_p(path);
    if (st == QIAO_OK) st = join(path, out, "dataset.json");
    if (st != QIAO_OK) return st;

    /* dataset.json first: a rerun must have the same arguments, or the
     * files it skips would belong to another data set */
    char *desc = dataset_json(&p);
    if (!desc) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s", path);
    char *old = read_all(path);
    if (old) {
        size_t m = strlen(old);
        if (m && old[m - 1] == '\n') old[--m] = '\0';
        if (strcmp(old, desc) != 0)
            st = qc_error(QIAO_ERR_INVALID_ARGUMENT,
                          "%s: this directory holds a data set made with other arguments; use another --out", path);
        free(old);
    } else {
        st = write_text_atomic(path, desc);
    }
    free(desc);
    if (st != QIAO_OK) return st;

    int64_t done = 0, first_bad = -1;
    int cancelled = 0;
    qiao_status bad = QIAO_OK;
    char bad_msg[512] = "";
#pragma omp parallel num_threads(p.jobs)
    {
        shapes_scene *sc = malloc(sizeof *sc);
#pragma omp for schedule(dynamic, 4)
        for (int64_t i = 0; i < p.n; i++) {
            int stop;
#pragma omp atomic read
            stop = cancelled;
            if (stop) continue;
            qiao_status s = sc ? shapes_scene_make(p.seed, p.split, i, sc)
                               : qc_error(QIAO_ERR_OUT_OF_MEMORY, "shapes: scene buffer");
            if (s == QIAO_OK) s = scene_files(sc, &p, out);
            if (s != QIAO_OK) {
#pragma omp critical(shapes_error)
                if (first_bad < 0 || i < first_bad) { /* report the first scene that failed */
                    first_bad = i;
                    bad = s;
                    snprintf(bad_msg, sizeof bad_msg, "%s", qiao_last_error());
                }
#pragma omp atomic write
                cancelled = 1;
                continue;
            }
            int stop_now = 0;
#pragma omp critical(shapes_progress)
            {
                done++;
                if (p.progress && p.progress(done, p.n, p.user_data)) stop_now = 1;
            }
            if (stop_now) {
#pragma omp atomic write
                cancelled = 2;
            }
        }
        free(sc);
    }
    if (bad != QIAO_OK) return qc_error(bad, "%s", bad_msg);
    if (cancelled) return qc_error(QIAO_ERR_CANCELLED, "shapes: cancelled after %lld scenes; rerun to resume", (long long)done);
    return write_manifest(&p, out);
}

qiao_status shapes_blind_baseline(const char *manifest_path, shapes_baseline *out) {
    if (!manifest_path || !out) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "shapes_blind_baseline: NULL argument");
    memset(out, 0, sizeof *out);
    FILE *f;
    qiao_status fst = qc_fopen_read(manifest_path, &f, NULL);
    if (fst != QIAO_OK) return fst;
    int64_t hist[SHAPES_NQTYPES][SHAPES_NANSWERS];
    memset(hist, 0, sizeof hist);
    char *line = NULL;
    size_t cap = 0;
    int64_t lineno = 0;
    qiao_status st = QIAO_OK;
    while (st == QIAO_OK && getline(&line, &cap, f) > 0) {
        lineno++;
        cJSON *j = cJSON_Parse(line);
        cJSON *qa = cJSON_GetObjectItemCaseSensitive(j, "qa");
        if (!cJSON_IsArray(qa)) st = qc_error(QIAO_ERR_FORMAT, "%s:%lld: not a scene with a qa list", manifest_path, (long long)lineno);
        cJSON *q;
        cJSON_ArrayForEach(q, qa) {
            if (st != QIAO_OK) break;
            const char *type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(q, "type"));
            const char *ans = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(q, "answer_id"));
            int t = -1, a = -1;
            for (int k = 0; type && k < SHAPES_NQTYPES; k++)
                if (!strcmp(type, shapes_qtype_name(k))) t = k;
            for (int k = 0; ans && k < SHAPES_NANSWERS; k++)
                if (!strcmp(ans, shapes_answer_key(k))) a = k;
            if (t < 0 || a < 0)
                st = qc_error(QIAO_ERR_FORMAT, "%s:%lld: question with unknown type or answer_id", manifest_path, (long long)lineno);
            else
                hist[t][a]++;
        }
        cJSON_Delete(j);
    }
    free(line);
    fclose(f);
    if (st != QIAO_OK) return st;
    for (int t = 0; t < SHAPES_NQTYPES; t++) {
        int64_t best = 0, total = 0;
        out->majority[t] = -1;
        for (int a = 0; a < SHAPES_NANSWERS; a++) {
            total += hist[t][a];
            if (hist[t][a] > best) best = hist[t][a], out->majority[t] = a;
        }
        out->count[t] = total;
        out->accuracy[t] = total ? (double)best / (double)total : 0.0;
    }
    return QIAO_OK;
}
