/* qiao demo: the README's first command. Loads a model (by default the
 * shipped models/qiao-base.safetensors), generates a few sample scenes of the
 * shapes world with their captions spoken in Chinese and English, indexes
 * the pictures and the speech with the library's search index (qiao_index,
 * as `qiao search` does), and answers
 * typed and spoken queries in both languages, marking where the right scene
 * landed. Then, with the shipped VQA and caption model (by default
 * models/qiao-vqa.safetensors; skipped when it is not there), it describes
 * one of the pictures in both languages and answers the scene's questions.
 *
 *   qiao demo [--model M] [--vqa-model V] [--work DIR] [--threads N]
 *
 * The samples are the first DEMO_SCENES scenes of the shapes world's test
 * split for the seed the shipped model's data used (scripts/train-base.sh):
 * scenes the model never saw in training, and the same bytes on every
 * machine, so "bundled" samples need not be committed. Reruns reuse the
 * samples and the index (only what changed is redone). */
#define _XOPEN_SOURCE 700 /* realpath */

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "models/data/data.h"
#include "models/data/vqa.h"
#include "search_index.h"
#include "shapes/shapes.h"

#define DEMO_MODEL "models/qiao-base.safetensors"
#define DEMO_VQA_MODEL "models/qiao-vqa.safetensors"
#define DEMO_WORK "build/demo"
#define DEMO_SCENES 24  /* small enough to generate and index in seconds, big enough that chance is 1 in 24 */
#define DEMO_SEED 1     /* scripts/train-base.sh's seed: these are its test scenes 0..23 */
#define DEMO_TOP 3
#define CHECK "\xe2\x9c\x93" /* U+2713 CHECK MARK */

static void usage(FILE *f) {
    fprintf(f, "usage: qiao demo [--model M] [--vqa-model V] [--work DIR] [--threads N]\n"
               "  M defaults to " DEMO_MODEL " (relative to the current folder), V to\n"
               "  " DEMO_VQA_MODEL ", DIR to " DEMO_WORK ".\n"
               "  Generates %d sample scenes (pictures, captions spoken in Chinese and English) into\n"
               "  DIR/samples, indexes them into DIR/index.safetensors and runs typed and spoken queries;\n"
               "  then V captions one picture and answers its questions (skipped when V is not there).\n",
            DEMO_SCENES);
}

/* ---- the samples, as the index sees them ------------------------------------ */

typedef struct sample_file {
    char *real;     /* real path; owned */
    int64_t scene;
} sample_file;

typedef struct demo {
    qmod_dataset data;
    qiao_index *ix;
    int64_t dim;
    sample_file *files;     /* (n_files) the manifest's files by real path, sorted */
    size_t n_files;
    const char *samples;    /* WORK/samples as given */
    char *samples_abs;      /* its real path */
    qiao_session *session;
    float *q;               /* (D) the query's embedding */
    int n_queries, n_first; /* queries run, and those with a right item first */
} demo;

static int cmp_sample(const void *a, const void *b) {
    return strcmp(((const sample_file *)a)->real, ((const sample_file *)b)->real);
}

/* The manifest names images/NNNNNN.png and speech/NNNNNN_cap_LANG_0.wav
 * under the samples folder as given; the index's keys are real paths: so
 * resolve the manifest's files once and sort them for scene_of. Files that
 * do not exist simply match nothing. */
static qiao_status map_files(demo *d) {
    enum { PER_SCENE = 1 + QMOD_N_LANGS };
    d->files = malloc(((size_t)d->data.n * PER_SCENE + 1) * sizeof *d->files);
    if (!d->files) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "demo: %lld scenes", (long long)d->data.n);
    for (int64_t s = 0; s < d->data.n; s++) {
        const qmod_scene *sc = &d->data.scenes[s];
        const char *files[PER_SCENE] = {sc->image, sc->speech[0], sc->speech[1]};
        for (int k = 0; k < PER_SCENE; k++) {
            char *r = files[k] ? realpath(files[k], NULL) : NULL;
            if (r) d->files[d->n_files++] = (sample_file){r, s};
        }
    }
    qsort(d->files, d->n_files, sizeof *d->files, cmp_sample);
    return QIAO_OK;
}

/* The scene of an index item (its key, a real path); -1 for a file the
 * manifest does not name. */
static int64_t scene_of(const demo *d, const char *key) {
    sample_file probe = {(char *)key, -1};
    const sample_file *hit = bsearch(&probe, d->files, d->n_files, sizeof *d->files, cmp_sample);
    return hit ? hit->scene : -1;
}

/* A path relative to the samples folder when it lies inside: index items
 * hold real paths, the manifest's paths start with the folder as given. */
static const char *short_path(const demo *d, const char *path) {
    const char *dirs[2] = {d->samples_abs, d->samples};
    for (int k = 0; k < 2; k++) {
        size_t n = dirs[k] ? strlen(dirs[k]) : 0;
        if (n && !strncmp(path, dirs[k], n) && path[n] == '/') return path + n + 1;
    }
    return path;
}

/* A hit: the item is the query's scene, or one described by the same long
 * caption (equal signatures), which the caption cannot tell apart. */
static bool is_right(const demo *d, const char *key, int64_t scene) {
    int64_t s = scene_of(d, key);
    return s >= 0 && (s == scene || !strcmp(d->data.scenes[s].signature, d->data.scenes[scene].signature));
}

/* Ranks the items of `kind` against d->q, prints the top DEMO_TOP with a
 * check mark on the right ones and counts the query. */
static void show_ranking(demo *d, qiao_index_kind kind, int64_t scene) {
    qiao_index_query_params qp = qiao_index_query_default_params();
    qp.top_k = 0; /* all: the right scene's rank is printed when it is not in the top */
    qp.kind = (int)kind;
    qiao_index_hit *h = NULL;
    size_t n = 0;
    if (qiao_index_query_vector(d->ix, d->q, (size_t)d->dim, &qp, &h, &n) != QIAO_OK) {
        printf("    (%s)\n", qiao_last_error());
        return;
    }
    int64_t right_rank = -1;
    for (size_t k = 0; k < n && right_rank < 0; k++)
        if (is_right(d, h[k].key, scene)) right_rank = (int64_t)k + 1;
    for (size_t k = 0; k < n && k < DEMO_TOP; k++)
        printf("    %zu %s %6.3f  %s\n", k + 1, is_right(d, h[k].key, scene) ? CHECK : " ", (double)h[k].score,
               short_path(d, h[k].key));
    if (right_rank > DEMO_TOP) printf("      (the right scene first appears at rank %lld of %zu)\n", (long long)right_rank, n);
    else if (right_rank < 0) printf("      (the right one is not in the index)\n");
    d->n_queries++;
    if (right_rank == 1) d->n_first++;
    qiao_index_hits_free(h);
}

static const char *const LANG_LABEL[QMOD_N_LANGS] = {"Chinese", "English"};

static int typed_query(demo *d, int64_t scene, int lang) {
    const char *text = d->data.scenes[scene].caption[lang];
    if (!text) return 0; /* a data set without this language: nothing to ask */
    printf("  typed, %s: \"%s\"\n", LANG_LABEL[lang], text);
    qiao_status st = qiao_embed_text(d->session, text, d->q, (size_t)d->dim);
    if (st != QIAO_OK) return cli_fail(st);
    show_ranking(d, QIAO_INDEX_IMAGE, scene);
    return 0;
}

static int spoken_query(demo *d, int64_t scene, int lang) {
    const qmod_scene *sc = &d->data.scenes[scene];
    if (!sc->speech[lang]) return 0;
    printf("  spoken, %s: %s\n    (it says \"%s\")\n", LANG_LABEL[lang], short_path(d, sc->speech[lang]),
           sc->caption[lang] ? sc->caption[lang] : "?");
    qiao_status st = qiao_embed_audio_file(d->session, sc->speech[lang], d->q, (size_t)d->dim);
    if (st != QIAO_OK) return cli_fail(st);
    show_ranking(d, QIAO_INDEX_IMAGE, scene);
    return 0;
}

static int picture_query(demo *d, int64_t scene) {
    const qmod_scene *sc = &d->data.scenes[scene];
    printf("  picture: %s -> spoken captions\n", short_path(d, sc->image));
    qiao_status st = qiao_embed_image_file(d->session, sc->image, d->q, (size_t)d->dim);
    if (st != QIAO_OK) return cli_fail(st);
    show_ranking(d, QIAO_INDEX_AUDIO, scene);
    return 0;
}

/* Objects in a scene: its signature joins one part per object with ';'. */
static int n_objects(const qmod_scene *sc) {
    int n = sc->signature[0] != '\0';
    for (const char *c = sc->signature; *c; c++) n += *c == ';';
    return n;
}

/* The queries' scenes: those of at least two objects (one alone says too
 * little) with the shortest captions (both languages together), so the
 * lines stay readable; ties by index. Fixed by the data set alone, never by
 * a model's answers. Falls back to one-object scenes when there are too few. */
static void pick_scenes(const qmod_dataset *data, int64_t *pick, int n_pick) {
    for (int k = 0; k < n_pick; k++) {
        pick[k] = -1;
        size_t best = 0;
        for (int pass = 0; pass < 2 && pick[k] < 0; pass++) {
            for (int64_t s = 0; s < data->n; s++) {
                bool used = pass == 0 && n_objects(&data->scenes[s]) < 2;
                for (int j = 0; j < k; j++) used |= pick[j] == s;
                if (used) continue;
                size_t len = 0;
                for (int l = 0; l < QMOD_N_LANGS; l++)
                    len += data->scenes[s].caption[l] ? strlen(data->scenes[s].caption[l]) : 0;
                if (pick[k] < 0 || len < best) {
                    pick[k] = s;
                    best = len;
                }
            }
        }
    }
}

/* ---- the command ------------------------------------------------------------- */

/* [5/5]: the VQA and caption model on scene `scene` of the samples: its
 * captions in both languages, then its typed questions. Returns the exit
 * code. */
static int ask_and_describe(const char *vqa_path, const char *samples, int64_t scene, int threads) {
    double t = qc_now();
    qiao_model *m = NULL;
    qiao_session *s = NULL;
    qmod_vqa_dataset qa;
    memset(&qa, 0, sizeof qa);
    qiao_session_params sp = qiao_session_default_params();
    sp.n_threads = threads;
    qiao_status st = qiao_model_load(vqa_path, &m);
    if (st == QIAO_OK) st = qiao_session_new(m, &sp, &s);
    if (st == QIAO_OK) st = qmod_vqa_dataset_load(samples, &qa);
    if (st == QIAO_OK && (scene >= qa.n_scenes || !qiao_model_can_answer(m) || !qiao_model_can_caption(m)))
        st = qc_error(QIAO_ERR_UNSUPPORTED, "%s must answer questions and write captions", vqa_path);
    if (st != QIAO_OK) {
        qmod_vqa_dataset_free(&qa);
        qiao_session_free(s);
        qiao_model_free(m);
        return cli_fail(st);
    }
    const char *picture = qa.scenes[scene].image;
    printf("\n[5/5] %s (\"%s\") describes %s and answers its questions\n", vqa_path, qiao_model_name(m),
           picture + strlen(samples) + 1);
    static const char *const langs[2] = {"zh", "en"};
    for (int l = 0; l < 2 && st == QIAO_OK; l++) {
        qiao_caption_params cp = qiao_caption_default_params();
        cp.lang = langs[l];
        qiao_caption_result r;
        if ((st = qiao_caption_image_file(s, picture, &cp, &r)) == QIAO_OK)
            printf("  caption, %s: %s\n", LANG_LABEL[l], r.text);
        qiao_caption_result_free(&r);
    }
    int asked = 0, right = 0;
    for (int64_t i = 0; i < qa.n_questions && st == QIAO_OK; i++) {
        const qmod_vqa_question *q = &qa.questions[i];
        if (q->scene != scene) continue;
        qiao_vqa_answer a;
        if ((st = qiao_vqa_ask_files(s, picture, q->text, NULL, NULL, &a)) != QIAO_OK) break;
        const bool ok = strcmp(a.best.key, qa.answers[q->answer]) == 0;
        asked++, right += ok;
        printf("  %s %-9s %s -> %s (%.2f)%s%s\n", ok ? CHECK : " ", qa.types[q->type], q->text, a.best.text,
               (double)a.best.p, ok ? "" : "; the scene says ", ok ? "" : qa.answers[q->answer]);
    }
    if (st == QIAO_OK)
        printf("  %d of %d answers right (%.1f s; the model's card, models/qiao-vqa.md, has its accuracy)\n", right,
               asked, qc_now() - t);
    qmod_vqa_dataset_free(&qa);
    qiao_session_free(s);
    qiao_model_free(m);
    return st == QIAO_OK ? 0 : cli_fail(st);
}

int cmd_demo(int argc, char **argv) {
    const char *model_path = DEMO_MODEL, *work = DEMO_WORK, *vqa_path = DEMO_VQA_MODEL;
    int threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if ((!strcmp(a, "--model") || !strcmp(a, "--work") || !strcmp(a, "--vqa-model")) && i + 1 < argc) {
            if (!strcmp(a, "--model")) model_path = argv[++i];
            else if (!strcmp(a, "--vqa-model")) vqa_path = argv[++i];
            else work = argv[++i];
        } else if (!strcmp(a, "--threads")) {
            int64_t v;
            if (!cli_int_arg("demo", "--threads", i + 1 < argc ? argv[++i] : NULL, 0, 1024, &v)) return 2;
            threads = (int)v;
        } else {
            fprintf(stderr, "qiao demo: %s '%s'\n", a[0] == '-' ? "unknown option or missing value" : "unexpected argument", a);
            usage(stderr);
            return 2;
        }
    }
    struct stat msb;
    bool found = stat(model_path, &msb) == 0;
    if (!found || !S_ISREG(msb.st_mode)) {
        fprintf(stderr,
                "qiao demo: model %s: %s.\n"
                "  The demo needs a trained model: train the default one with scripts/train-base.sh\n"
                "  (it writes data/qiao-base.safetensors; copy it to " DEMO_MODEL "),\n"
                "  or pass --model FILE.safetensors.\n",
                model_path, !found ? strerror(errno) : "not a file");
        return 1;
    }

    printf("qiao %s demo: text, pictures and speech, in Chinese and English, in one embedding space\n\n",
           qiao_version());
    double t0 = qc_now(), t;

    /* 1. The model, loaded first so that a broken file fails before any work. */
    qiao_model *model = NULL;
    qiao_status st = qiao_model_load(model_path, &model);
    if (st != QIAO_OK) return cli_fail(st);
    printf("[1/4] model %s: \"%s\", %.1f M parameters, %lld dims (%.1f s)\n", model_path, qiao_model_name(model),
           1e-6 * (double)qiao_model_param_count(model), (long long)qiao_model_dim(model), qc_now() - t0);

    /* 2. The samples: shapes_generate skips the files already there (each is
     * written whole through a rename), so a rerun costs almost nothing, and it
     * refuses a folder made with other arguments instead of mixing sets. */
    char samples[4096], images[4200], speech[4200], index[4200], manifest[4200];
    snprintf(samples, sizeof samples, "%s/samples", work);
    snprintf(images, sizeof images, "%s/images", samples);
    snprintf(speech, sizeof speech, "%s/speech", samples);
    snprintf(manifest, sizeof manifest, "%s/manifest.jsonl", samples);
    snprintf(index, sizeof index, "%s/index.safetensors", work);
    bool had = cli_is_file(manifest);
    t = qc_now();
    shapes_params sp = shapes_default_params();
    sp.n = DEMO_SCENES;
    sp.seed = DEMO_SEED;
    sp.split = SHAPES_TEST;
    sp.speech = SHAPES_SPEECH_LONG;
    sp.jobs = threads > 0 ? threads : 2;
    /* make WORK (and its parents) first: shapes_generate makes only the last level */
    for (char *c = samples + 1; *c; c++) {
        if (*c != '/') continue;
        *c = '\0';
        mkdir(samples, 0777); /* an error shows up below, when the samples cannot be written */
        *c = '/';
    }
    st = shapes_generate(&sp, samples);
    if (st != QIAO_OK) {
        qiao_model_free(model);
        return cli_fail(st);
    }
    printf("[2/4] samples: %d scenes of the shapes world's test split (never seen in training),\n"
           "      pictures and long captions spoken in Chinese and English -> %s (%s%.1f s)\n",
           DEMO_SCENES, samples, had ? "already there, " : "", qc_now() - t);

    /* 3. The index: the same code and file as `qiao search index`. */
    t = qc_now();
    const char *roots[2] = {images, speech};
    search_update_params up = {.model_path = model_path, .index_path = index, .roots = roots, .n_roots = 2,
                               .n_threads = threads, .batch = 32};
    search_update_stats us;
    if ((st = search_update(&up, &us)) != QIAO_OK) {
        qiao_model_free(model);
        return cli_fail(st);
    }
    printf("[3/4] index: %lld pictures and %lld recordings -> %s (%lld embedded, %lld unchanged%s, %.1f s)\n",
           (long long)us.images, (long long)us.audios, index, (long long)us.embedded, (long long)us.kept,
           us.model_changed ? "; another model's index was replaced" : "", qc_now() - t);

    /* 4. Queries. */
    demo d;
    memset(&d, 0, sizeof d);
    d.samples = samples;
    d.samples_abs = realpath(samples, NULL);
    int rc = 0;
    if ((st = qmod_dataset_load(samples, &d.data)) != QIAO_OK ||
        (st = qiao_index_open(index, model_path, NULL, &d.ix)) != QIAO_OK || (st = map_files(&d)) != QIAO_OK) {
        rc = cli_fail(st);
    } else if ((d.dim = qiao_index_dim(d.ix)) != qiao_model_dim(model)) {
        fprintf(stderr, "qiao demo: %s holds %lld-d embeddings but the model makes %lld-d ones\n", index,
                (long long)d.dim, (long long)qiao_model_dim(model));
        rc = 1;
    } else if (d.data.n < 5) {
        fprintf(stderr, "qiao demo: %s holds %lld scenes; the demo needs 5\n", manifest, (long long)d.data.n);
        rc = 1;
    }
    qiao_session_params ssp = qiao_session_default_params();
    ssp.n_threads = threads;
    if (rc == 0 && !(d.q = malloc((size_t)d.dim * sizeof *d.q))) {
        fprintf(stderr, "qiao demo: out of memory\n");
        rc = 1;
    }
    if (rc == 0 && (st = qiao_session_new(model, &ssp, &d.session)) != QIAO_OK) rc = cli_fail(st);
    if (rc == 0) {
        t = qc_now();
        int64_t pick[5]; /* two scenes typed in both languages, one spoken in each, one picture */
        pick_scenes(&d.data, pick, 5);
        printf("[4/4] queries against the %lld pictures (%s = the right scene; scores are cosine similarities)\n\n",
               (long long)us.images, CHECK);
        for (int k = 0; k < 2 && rc == 0; k++) rc = typed_query(&d, pick[k], QMOD_LANG_ZH);
        for (int k = 0; k < 2 && rc == 0; k++) rc = typed_query(&d, pick[k], QMOD_LANG_EN);
        if (rc == 0) rc = spoken_query(&d, pick[2], QMOD_LANG_ZH);
        if (rc == 0) rc = spoken_query(&d, pick[3], QMOD_LANG_EN);
        if (rc == 0) rc = picture_query(&d, pick[4]);
        if (rc == 0) {
            printf("\n%d of %d queries found the right scene first (chance: about 1 in %lld each; %.1f s)\n",
                   d.n_first, d.n_queries, (long long)us.images, qc_now() - t);
            printf("\nnext:\n"
                   "  qiao search query --index %s --text \"一个红色的圆形\"\n"
                   "  qiao search query --index %s --image %s/000000.png --kind audio\n"
                   "  qiao search index --model %s --out my.index ~/Pictures ~/Music   # your own files\n"
                   "  qiao eval retrieval --model %s --data %s   # recall@k on the samples\n",
                   index, index, images, model_path, model_path, samples);
            if (cli_is_file(vqa_path)) rc = ask_and_describe(vqa_path, samples, pick[0], threads);
            else
                printf("\n(no %s: train it with scripts/train-vqa.sh to see questions answered and pictures\n"
                       " described here)\n",
                       vqa_path);
            printf("(done in %.1f s)\n", qc_now() - t0);
        }
    }
    qiao_session_free(d.session);
    free(d.q);
    for (size_t k = 0; k < d.n_files; k++) free(d.files[k].real);
    free(d.files);
    free(d.samples_abs);
    qiao_index_free(d.ix);
    qmod_dataset_free(&d.data);
    qiao_model_free(model);
    return rc;
}
