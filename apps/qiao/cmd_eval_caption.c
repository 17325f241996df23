/* apps/qiao/cmd_eval_caption.c - `qiao eval caption`: a caption model's
 * captions of a shapes split in Chinese and English, scored with BLEU-4 and
 * CIDEr-D against every reference caption of the scene (English on words,
 * Chinese on ICU words and on characters) and read back into objects
 * against the scene (precision, recall, F1, exact-scene rate), beside the
 * nearest-neighbour baseline: the long caption of the training picture
 * closest in the shared space. A table on stdout, or JSON with --json. */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "backend/backend.h"
#include "cli.h"
#include "core/core.h"
#include "models/captioning/captioning.h"
#include "models/captioning/metrics.h"
#include "models/embed.h"
#include "shapes/shapes.h"

int cmd_eval_caption(int argc, char **argv);

static void usage(FILE *f) {
    fprintf(f, "usage: qiao eval caption --model M.safetensors --data DIR [--split test[,cogent]] [--max N]\n"
               "                         [--beam K] [--alpha A] [--max-len N] [--train DIR | --no-baseline]\n"
               "                         [--threads N] [--json]\n"
               "  DIR is a shapes split or a root holding DIR/test and DIR/cogent. Every scene (the first\n"
               "  N with --max) is captioned in Chinese and English, greedy or with beam K (GNMT length\n"
               "  penalty alpha, default 0.6), and scored against all of the scene's captions: BLEU-4 and\n"
               "  CIDEr-D (English on words, Chinese on words and on characters), and the objects the\n"
               "  caption names against the scene's (precision, recall, F1, exact-scene rate). The\n"
               "  nearest-neighbour baseline captions each picture with the long caption of the closest\n"
               "  training picture in the shared space (--train DIR, default DIR/train).\n");
}

enum { N_SYS = 2 }; /* the model, the nearest neighbour */
static const char *const k_sys[N_SYS] = {"model", "nearest"};

/* One split's scores for one system and language. */
typedef struct scores {
    int64_t n;
    double bleu4, cider, bleu4_chars, cider_chars; /* _chars: Chinese on characters */
    double precision, recall, f1, exact, faithful;
} scores;

typedef struct split_info {
    uint64_t seed;
    shapes_split split;
    int64_t n;
} split_info;

static qiao_status read_split(const char *dir, split_info *out) {
    char path[4200];
    snprintf(path, sizeof path, "%s/dataset.json", dir);
    uint8_t *bytes = NULL;
    size_t n = 0;
    qiao_status st = qc_read_file(path, 1 << 20, &bytes, &n);
    if (st != QIAO_OK) return st;
    cJSON *d = cJSON_ParseWithLength((const char *)bytes, n);
    free(bytes);
    const cJSON *seed = cJSON_GetObjectItemCaseSensitive(d, "seed"),
                *split = cJSON_GetObjectItemCaseSensitive(d, "split");
    const cJSON *cnt = cJSON_GetObjectItemCaseSensitive(d, "n");
    /* the seed is a decimal string (64 bits do not fit a JSON number exactly) */
    char *end = NULL;
    const unsigned long long sv = cJSON_IsString(seed) ? strtoull(seed->valuestring, &end, 10) : 0;
    if (!cJSON_IsString(seed) || !end || *end || !cJSON_IsString(split) || !cJSON_IsNumber(cnt) ||
        shapes_split_parse(split->valuestring) < 0 || cnt->valuedouble < 1) {
        cJSON_Delete(d);
        return qc_error(QIAO_ERR_FORMAT, "%s: not a shapes split's description (seed, split, n)", path);
    }
    out->seed = (uint64_t)sv;
    out->split = (shapes_split)shapes_split_parse(split->valuestring);
    out->n = (int64_t)cnt->valuedouble;
    cJSON_Delete(d);
    return QIAO_OK;
}

/* The scores of captions cand[i] (scene i, language lang) against the scenes' captions. */
static qiao_status score_set(char *const *cand, const shapes_scene *scenes, int64_t n, int lang, scores *out) {
    memset(out, 0, sizeof *out);
    out->n = n;
    const int modes = lang == SHAPES_ZH ? 2 : 1;
    qiao_status st = QIAO_OK;
    for (int mode = 0; mode < modes && st == QIAO_OK; mode++) {
        const qmod_caption_tok_mode tm = lang == SHAPES_EN ? QMOD_CAPTION_TOK_EN
                                         : mode == 0       ? QMOD_CAPTION_TOK_ZH_WORDS
                                                           : QMOD_CAPTION_TOK_ZH_CHARS;
        qmod_caption_tokens *ct = calloc((size_t)n, sizeof *ct);
        qmod_caption_tokens *rt = calloc((size_t)n * SHAPES_MAX_CAPTIONS, sizeof *rt);
        qmod_sentence *rs = calloc((size_t)n * SHAPES_MAX_CAPTIONS, sizeof *rs);
        qmod_caption_item *items = calloc((size_t)n, sizeof *items);
        if (!ct || !rt || !rs || !items) st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "eval caption: out of memory");
        for (int64_t i = 0; i < n && st == QIAO_OK; i++) {
            st = qmod_caption_tokenize(cand[i], strlen(cand[i]), tm, &ct[i]);
            for (int k = 0; k < scenes[i].ncap && st == QIAO_OK; k++) {
                const char *r = scenes[i].cap[lang][k];
                st = qmod_caption_tokenize(r, strlen(r), tm, &rt[i * SHAPES_MAX_CAPTIONS + k]);
                rs[i * SHAPES_MAX_CAPTIONS + k] = qmod_caption_sentence(&rt[i * SHAPES_MAX_CAPTIONS + k]);
            }
            items[i].cand = qmod_caption_sentence(&ct[i]);
            items[i].refs = rs + i * SHAPES_MAX_CAPTIONS;
            items[i].n_refs = (size_t)scenes[i].ncap;
        }
        double bleu[QMOD_BLEU_N] = {0}, cider = 0;
        if (st == QIAO_OK) st = qmod_caption_bleu(items, (size_t)n, bleu, NULL);
        if (st == QIAO_OK) st = qmod_caption_cider(items, (size_t)n, &cider, NULL);
        if (mode == 0)
            out->bleu4 = bleu[3], out->cider = cider;
        else
            out->bleu4_chars = bleu[3], out->cider_chars = cider;
        for (int64_t i = 0; ct && i < n; i++) qmod_caption_tokens_free(&ct[i]);
        for (int64_t i = 0; rt && i < n * SHAPES_MAX_CAPTIONS; i++) qmod_caption_tokens_free(&rt[i]);
        free(ct), free(rt), free(rs), free(items);
    }
    for (int64_t i = 0; i < n && st == QIAO_OK; i++) {
        shapes_parse p;
        shapes_caption_score s;
        if (shapes_caption_parse(cand[i], strlen(cand[i]), &p) != QIAO_OK) continue; /* counts as nothing right */
        st = shapes_caption_score_of(&p, &scenes[i], &s);
        out->precision += s.precision, out->recall += s.recall, out->f1 += s.f1;
        out->exact += s.exact, out->faithful += s.faithful;
    }
    out->precision /= (double)n, out->recall /= (double)n, out->f1 /= (double)n;
    out->exact /= (double)n, out->faithful /= (double)n;
    return st;
}

/* Every picture of `dir` (scenes 0 .. n) in the shared space, (n, D). */
static qiao_status embed_pictures(const qb_exec *ex, const qmod_model *m, const char *dir, int64_t n, float **out) {
    const int64_t D = m->cfg.embed_dim, B = 64;
    float *e = malloc((size_t)(n * D) * sizeof(float));
    if (!e) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "eval caption: out of memory for %lld embeddings", (long long)n);
    qmod_work w;
    memset(&w, 0, sizeof w);
    qiao_status st = QIAO_OK;
    cli_progress pr;
    cli_progress_start(&pr);
    for (int64_t i0 = 0; i0 < n && st == QIAO_OK; i0 += B) {
        const int64_t k = n - i0 < B ? n - i0 : B;
        qiao_image *imgs[64] = {0};
        for (int64_t i = 0; i < k && st == QIAO_OK; i++) {
            char path[4300];
            snprintf(path, sizeof path, "%s/images/%06lld.png", dir, (long long)(i0 + i));
            st = qiao_image_decode_file(path, NULL, &imgs[i]);
        }
        if (st == QIAO_OK) st = qmod_embed_images(ex, m, &w, (const qiao_image *const *)imgs, (size_t)k, e + i0 * D);
        for (int64_t i = 0; i < k; i++) qiao_image_free(imgs[i]);
        cli_progress_show(&pr, "eval caption", "training pictures", i0 + k, n);
    }
    qmod_work_free(&w);
    if (st != QIAO_OK) {
        free(e);
        return st;
    }
    *out = e;
    return QIAO_OK;
}

typedef struct opts {
    const char *model, *data, *train, *splits;
    int64_t max, threads, beam, max_len;
    double alpha;
    bool json, baseline;
} opts;

static qiao_status eval_split(const qb_exec *ex, const qmod_model *m, const opts *o, const char *dir,
                              const float *train_e, const split_info *train, cJSON *jout, const char *name) {
    split_info si;
    qiao_status st = read_split(dir, &si);
    if (st != QIAO_OK) return st;
    const int64_t n = o->max > 0 && o->max < si.n ? o->max : si.n, D = m->cfg.embed_dim;
    shapes_scene *scenes = calloc((size_t)n, sizeof *scenes);
    char **cand[N_SYS][SHAPES_NLANGS];
    memset(cand, 0, sizeof cand);
    for (int s = 0; s < N_SYS; s++)
        for (int l = 0; l < SHAPES_NLANGS; l++) cand[s][l] = calloc((size_t)n, sizeof(char *));
    float *e = malloc((size_t)D * sizeof(float));
    qmod_work w;
    memset(&w, 0, sizeof w);
    if (!scenes || !e) st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "eval caption: out of memory");
    for (int s = 0; s < N_SYS; s++)
        for (int l = 0; l < SHAPES_NLANGS; l++)
            if (!cand[s][l]) st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "eval caption: out of memory");
    qmod_gen_params gp = qmod_gen_default_params();
    gp.strategy = o->beam > 1 ? QMOD_GEN_BEAM : QMOD_GEN_GREEDY;
    gp.beam_size = (int)(o->beam > 1 ? o->beam : 1);
    gp.length_alpha = o->alpha;
    gp.max_len = (int)(o->max_len > 0 ? o->max_len : m->cfg.decoder.max_len);
    cli_progress pr;
    cli_progress_start(&pr);
    double seconds = 0.0;
    int64_t tokens = 0;
    for (int64_t i = 0; i < n && st == QIAO_OK; i++) {
        st = shapes_scene_make(si.seed, si.split, i, &scenes[i]);
        char path[4300];
        snprintf(path, sizeof path, "%s/images/%06lld.png", dir, (long long)i);
        qiao_image *img = NULL;
        if (st == QIAO_OK) st = qiao_image_decode_file(path, NULL, &img);
        for (int l = 0; l < SHAPES_NLANGS && st == QIAO_OK; l++) {
            qmod_gen_result r;
            const double t0 = qc_now();
            st = qmod_caption(ex, m, img, l, &gp, &r);
            seconds += qc_now() - t0;
            if (st == QIAO_OK) {
                tokens += (int64_t)r.n + r.eos;
                cand[0][l][i] = r.text ? r.text : strdup("");
                r.text = NULL;
                qmod_gen_result_free(&r);
                if (!cand[0][l][i]) st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "eval caption: out of memory");
            }
        }
        if (st == QIAO_OK && train_e) {
            st = qmod_embed_images(ex, m, &w, (const qiao_image *const *)&img, 1, e);
            int64_t best = 0;
            double best_s = -2.0;
            for (int64_t j = 0; j < train->n && st == QIAO_OK; j++) {
                double s = 0.0;
                for (int64_t k = 0; k < D; k++) s += (double)e[k] * (double)train_e[j * D + k];
                if (s > best_s) best_s = s, best = j;
            }
            shapes_scene nn;
            if (st == QIAO_OK) st = shapes_scene_make(train->seed, train->split, best, &nn);
            for (int l = 0; l < SHAPES_NLANGS && st == QIAO_OK; l++)
                if (!(cand[1][l][i] = strdup(nn.cap[l][0])))
                    st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "eval caption: out of memory");
        }
        qiao_image_free(img);
        cli_progress_show(&pr, "eval caption", "pictures", i + 1, n);
    }
    static const char *const langs[SHAPES_NLANGS] = {"zh", "en"};
    cJSON *js = jout ? cJSON_AddObjectToObject(jout, name) : NULL;
    if (js) {
        cJSON_AddNumberToObject(js, "pictures", (double)n);
        cJSON_AddNumberToObject(js, "tokens_per_second", seconds > 0 ? (double)tokens / seconds : 0.0);
    }
    for (int s = 0; s < N_SYS && st == QIAO_OK; s++) {
        if (s == 1 && !train_e) continue;
        for (int l = 0; l < SHAPES_NLANGS && st == QIAO_OK; l++) {
            scores sc;
            st = score_set(cand[s][l], scenes, n, l, &sc);
            if (st != QIAO_OK) break;
            if (js) {
                cJSON *o2 = cJSON_AddObjectToObject(cJSON_GetObjectItemCaseSensitive(js, k_sys[s])
                                                        ? cJSON_GetObjectItemCaseSensitive(js, k_sys[s])
                                                        : cJSON_AddObjectToObject(js, k_sys[s]),
                                                    langs[l]);
                cJSON_AddNumberToObject(o2, "bleu4", sc.bleu4);
                cJSON_AddNumberToObject(o2, "cider_d", sc.cider);
                if (l == SHAPES_ZH) {
                    cJSON_AddNumberToObject(o2, "bleu4_chars", sc.bleu4_chars);
                    cJSON_AddNumberToObject(o2, "cider_d_chars", sc.cider_chars);
                }
                cJSON_AddNumberToObject(o2, "object_precision", sc.precision);
                cJSON_AddNumberToObject(o2, "object_recall", sc.recall);
                cJSON_AddNumberToObject(o2, "object_f1", sc.f1);
                cJSON_AddNumberToObject(o2, "exact_scene", sc.exact);
                cJSON_AddNumberToObject(o2, "faithful", sc.faithful);
                cJSON_AddStringToObject(o2, "example", n > 0 ? cand[s][l][0] : "");
            } else {
                printf("%-7s %-8s %-3s %7.4f %8.4f", name, k_sys[s], langs[l], sc.bleu4, sc.cider);
                if (l == SHAPES_ZH)
                    printf(" %7.4f %8.4f", sc.bleu4_chars, sc.cider_chars);
                else
                    printf(" %7s %8s", "-", "-");
                printf(" %7.4f %7.4f %7.4f %7.4f\n", sc.precision, sc.recall, sc.f1, sc.exact);
            }
        }
    }
    if (!js && st == QIAO_OK) {
        printf("%-7s examples (scene 0): zh \"%s\" | en \"%s\"\n", name, n ? cand[0][0][0] : "",
               n ? cand[0][1][0] : "");
        printf("%-7s decoding: %.1f tokens/s (%s)\n", name, seconds > 0 ? (double)tokens / seconds : 0.0,
               gp.strategy == QMOD_GEN_BEAM ? "beam" : "greedy");
    }
    for (int s = 0; s < N_SYS; s++)
        for (int l = 0; l < SHAPES_NLANGS; l++) {
            for (int64_t i = 0; cand[s][l] && i < n; i++) free(cand[s][l][i]);
            free(cand[s][l]);
        }
    free(scenes), free(e);
    qmod_work_free(&w);
    return st;
}

int cmd_eval_caption(int argc, char **argv) {
    opts o = {0};
    o.splits = "test,cogent";
    o.beam = 1;
    o.alpha = 0.6;
    o.baseline = true;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--json")) {
            o.json = true;
            continue;
        }
        if (!strcmp(a, "--no-baseline")) {
            o.baseline = false;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "qiao eval caption: %s needs a value (or is an unknown option)\n", a);
            usage(stderr);
            return 2;
        }
        const char *v = argv[++i];
        bool ok = true;
        int64_t x = 0;
        if (!strcmp(a, "--model"))
            o.model = v;
        else if (!strcmp(a, "--data"))
            o.data = v;
        else if (!strcmp(a, "--train"))
            o.train = v;
        else if (!strcmp(a, "--split"))
            o.splits = v;
        else if (!strcmp(a, "--max"))
            ok = cli_int_arg("eval caption", a, v, 1, INT64_MAX, &x), o.max = x;
        else if (!strcmp(a, "--beam"))
            ok = cli_int_arg("eval caption", a, v, 1, 64, &x), o.beam = x;
        else if (!strcmp(a, "--max-len"))
            ok = cli_int_arg("eval caption", a, v, 1, 4096, &x), o.max_len = x;
        else if (!strcmp(a, "--alpha"))
            ok = cli_num_arg("eval caption", a, v, 0, 10, &o.alpha);
        else if (!strcmp(a, "--threads"))
            ok = cli_int_arg("eval caption", a, v, 1, 1024, &x), o.threads = x;
        else {
            fprintf(stderr, "qiao eval caption: unknown option %s\n", a);
            usage(stderr);
            return 2;
        }
        if (!ok) return 2;
    }
    if (!o.model || !o.data) {
        fprintf(stderr, "qiao eval caption: --model and --data are required\n");
        usage(stderr);
        return 2;
    }
    qmod_model *m = NULL;
    qiao_status st = qmod_load(o.model, &m);
    if (st == QIAO_OK && (!m->cfg.has_decoder || !m->tok))
        st = qc_error(QIAO_ERR_UNSUPPORTED, "%s: model %s writes no captions (no decoder)", o.model, m->cfg.name);
    if (st != QIAO_OK) {
        qmod_free(m);
        return cli_fail(st);
    }
    qb_exec ex;
    qb_exec_cpu(&ex, (int)o.threads);
    float *train_e = NULL;
    split_info train = {0};
    char train_dir[4096];
    if (o.baseline) {
        if (o.train)
            snprintf(train_dir, sizeof train_dir, "%s", o.train);
        else
            cli_split_dir(o.data, "train", train_dir, sizeof train_dir);
        st = read_split(train_dir, &train);
        if (st == QIAO_OK) st = embed_pictures(&ex, m, train_dir, train.n, &train_e);
    }
    cJSON *jout = o.json ? cJSON_CreateObject() : NULL;
    if (!o.json && st == QIAO_OK)
        printf("%-7s %-8s %-3s %7s %8s %7s %8s %7s %7s %7s %7s\n", "split", "system", "", "BLEU-4", "CIDEr-D",
               "BLEU-4c", "CIDEr-Dc", "obj P", "obj R", "obj F1", "exact");
    char done[4096] = "";
    for (const char *c = o.splits; st == QIAO_OK && *c;) {
        const size_t len = strcspn(c, ",");
        char name[64], dir[4096];
        snprintf(name, sizeof name, "%.*s", (int)(len < 63 ? len : 63), c);
        cli_split_dir(o.data, name, dir, sizeof dir);
        char manifest[4200];
        snprintf(manifest, sizeof manifest, "%s/dataset.json", dir);
        /* --data naming one split holds neither test/ nor cogent/: evaluate it once */
        if (cli_is_file(manifest) && strcmp(dir, done) != 0) {
            st = eval_split(&ex, m, &o, dir, train_e, &train, jout, name);
            snprintf(done, sizeof done, "%s", dir);
        }
        c += len + (c[len] == ',');
    }
    if (jout && st == QIAO_OK) {
        char *s = cJSON_Print(jout);
        if (s) puts(s);
        cJSON_free(s);
    }
    cJSON_Delete(jout);
    free(train_e);
    qmod_free(m);
    return st == QIAO_OK ? 0 : cli_fail(st);
}
