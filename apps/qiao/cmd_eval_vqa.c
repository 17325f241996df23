/* apps/qiao/cmd_eval_vqa.c - `qiao eval vqa`: a VQA model's accuracy on a
 * shapes split (models/answering), typed, spoken and both, per question
 * type and language, beside the blind baselines; with --robustness, the
 * degraded-input table for the three weighting modes. A table on stdout,
 * or JSON with --json; progress on stderr. */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "backend/backend.h"
#include "cli.h"
#include "models/answering/answering.h"

int cmd_eval_vqa(int argc, char **argv);

static void usage(FILE *f) {
    fprintf(f,
            "usage: qiao eval vqa --model M.safetensors --data DIR [--split test[,cogent]] [--max N]\n"
            "                     [--weighting learned|heuristic|equal] [--threads N] [--json]\n"
            "                     [--robustness]\n"
            "  DIR is a split (manifest.jsonl) or a root holding DIR/test and DIR/cogent (both are\n"
            "  evaluated when present). Each split is answered typed, spoken and with both, and\n"
            "  with the picture absent (the question-only baseline), beside the type-majority\n"
            "  prior (always the most frequent answer of the question's type) and the answer-\n"
            "  majority prior (what a picture alone can do: one answer for every question).\n"
            "  Splits need --speech-questions WAVs for the spoken rows.\n"
            "  --robustness instead degrades one input at a time (picture noise and occlusion,\n"
            "  speech noise at several SNRs, an input absent) and reports accuracy and the mean\n"
            "  modality weights for the learned, heuristic and equal weighting modes.\n");
}

typedef struct cond {
    const char *name;
    int input;
    qmod_vqa_params p;
} cond;

static cond make(const char *name, int input) {
    cond c;
    c.name = name;
    c.input = input;
    c.p = qmod_vqa_default_params();
    return c;
}

static void on_progress(const char *phase, int64_t done, int64_t total, void *user) {
    (void)phase;
    cli_progress_show(user, "eval vqa", "questions", done, total);
}

static cJSON *result_json(const qmod_vqa_dataset *d, const qmod_vqa_result *r) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "n", (double)r->n);
    cJSON_AddNumberToObject(o, "accuracy", qmod_vqa_acc(r->correct, r->n));
    cJSON *t = cJSON_AddObjectToObject(o, "by_type");
    for (int k = 0; k < d->n_types && k < 8; k++)
        cJSON_AddNumberToObject(t, d->types[k], qmod_vqa_acc(r->correct_type[k], r->n_type[k]));
    cJSON *l = cJSON_AddObjectToObject(o, "by_lang");
    cJSON_AddNumberToObject(l, "zh", qmod_vqa_acc(r->correct_lang[0], r->n_lang[0]));
    cJSON_AddNumberToObject(l, "en", qmod_vqa_acc(r->correct_lang[1], r->n_lang[1]));
    cJSON_AddNumberToObject(o, "lang_id_accuracy", qmod_vqa_acc(r->lang_correct, r->n));
    cJSON *w = cJSON_AddObjectToObject(o, "mean_weights");
    for (int k = 0; k < QF_NMOD; k++) cJSON_AddNumberToObject(w, qf_modality_name(k), r->mean_w[k]);
    if (r->cell_n[QMOD_VQA_SHAPE] + r->cell_n[QMOD_VQA_COLOR] + r->cell_n[QMOD_VQA_SIZE] > 0) {
        static const char *const attr[QMOD_VQA_NATTR] = {"shape", "color", "size"};
        cJSON *c = cJSON_AddObjectToObject(o, "cell_accuracy");
        for (int a = 0; a < QMOD_VQA_NATTR; a++)
            if (r->cell_n[a]) cJSON_AddNumberToObject(c, attr[a], qmod_vqa_acc(r->cell_correct[a], r->cell_n[a]));
    }
    return o;
}

static void print_row(const char *split, const char *what, const qmod_vqa_dataset *d, const qmod_vqa_result *r) {
    printf("%-7s %-22s %6lld %7.2f%%", split, what, (long long)r->n, 100.0 * qmod_vqa_acc(r->correct, r->n));
    for (int k = 0; k < d->n_types && k < 8; k++)
        printf(" %7.2f%%", 100.0 * qmod_vqa_acc(r->correct_type[k], r->n_type[k]));
    printf(" %7.2f%% %7.2f%%  %.2f/%.2f/%.2f\n", 100.0 * qmod_vqa_acc(r->correct_lang[0], r->n_lang[0]),
           100.0 * qmod_vqa_acc(r->correct_lang[1], r->n_lang[1]), r->mean_w[0], r->mean_w[1], r->mean_w[2]);
}

/* The picture tower's cell heads, when the model has them: a line under the
 * table, not a column, since they answer no question. */
static void print_cells(const char *split, const char *what, const qmod_vqa_result *r) {
    if (!r->cell_n[QMOD_VQA_SHAPE] && !r->cell_n[QMOD_VQA_COLOR]) return;
    printf("%-7s %-22s cells an object covers (%lld): shape %.2f%%, colour %.2f%%, size %.2f%%\n", split, what,
           (long long)r->cell_n[QMOD_VQA_SHAPE],
           100.0 * qmod_vqa_acc(r->cell_correct[QMOD_VQA_SHAPE], r->cell_n[QMOD_VQA_SHAPE]),
           100.0 * qmod_vqa_acc(r->cell_correct[QMOD_VQA_COLOR], r->cell_n[QMOD_VQA_COLOR]),
           100.0 * qmod_vqa_acc(r->cell_correct[QMOD_VQA_SIZE], r->cell_n[QMOD_VQA_SIZE]));
}

static void print_header(const qmod_vqa_dataset *d) {
    printf("%-7s %-22s %6s %8s", "split", "input", "n", "overall");
    for (int k = 0; k < d->n_types && k < 8; k++) printf(" %8.8s", d->types[k]);
    printf(" %8s %8s  %s\n", "zh", "en", "w text/image/audio");
}

/* The priors from the split's own answers: the most frequent answer of each
 * type, and the most frequent answer overall. */
static void priors(const qmod_vqa_dataset *d, double *type_acc, double *answer_acc) {
    int64_t *cnt = calloc((size_t)d->n_answers * 9, sizeof *cnt);
    if (!cnt) {
        *type_acc = *answer_acc = NAN;
        return;
    }
    for (int64_t i = 0; i < d->n_questions; i++) {
        const qmod_vqa_question *q = &d->questions[i];
        const int t = q->type < 8 ? q->type : 0;
        cnt[(size_t)t * (size_t)d->n_answers + (size_t)q->answer]++;
        cnt[(size_t)8 * (size_t)d->n_answers + (size_t)q->answer]++;
    }
    int64_t right = 0, best_all = 0;
    for (int t = 0; t < 9; t++) {
        int64_t best = 0;
        for (int a = 0; a < d->n_answers; a++)
            if (cnt[(size_t)t * (size_t)d->n_answers + (size_t)a] > best) best = cnt[(size_t)t * (size_t)d->n_answers + (size_t)a];
        if (t < 8) right += best;
        else best_all = best;
    }
    *type_acc = d->n_questions ? (double)right / (double)d->n_questions : NAN;
    *answer_acc = d->n_questions ? (double)best_all / (double)d->n_questions : NAN;
    free(cnt);
}

int cmd_eval_vqa(int argc, char **argv) {
    const char *model_path = NULL, *data = NULL, *splits = NULL, *weighting = NULL;
    int64_t max_q = 0, threads = 0;
    bool json = false, robust = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--json")) {
            json = true;
            continue;
        }
        if (!strcmp(a, "--robustness")) {
            robust = true;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "qiao eval vqa: %s needs a value (or is an unknown option)\n", a);
            usage(stderr);
            return 2;
        }
        const char *v = argv[++i];
        if (!strcmp(a, "--model")) model_path = v;
        else if (!strcmp(a, "--data")) data = v;
        else if (!strcmp(a, "--split")) splits = v;
        else if (!strcmp(a, "--weighting")) weighting = v;
        else if (!strcmp(a, "--max")) {
            if (!cli_int_arg("eval vqa", a, v, 1, INT64_MAX, &max_q)) return 2;
        } else if (!strcmp(a, "--threads")) {
            if (!cli_int_arg("eval vqa", a, v, 1, 1024, &threads)) return 2;
        } else {
            fprintf(stderr, "qiao eval vqa: unknown option %s\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!model_path || !data) {
        fprintf(stderr, "qiao eval vqa: --model and --data are required\n");
        usage(stderr);
        return 2;
    }
    qmod_model *m = NULL;
    qiao_status st = qmod_load(model_path, &m);
    if (st == QIAO_OK) st = qmod_vqa_check(m);
    if (st != QIAO_OK) {
        qmod_free(m);
        return cli_fail(st);
    }
    qf_weighting mode = m->cfg.fusion.weighting;
    if (weighting) {
        const int w = qf_weighting_parse(weighting);
        if (w < 0) {
            fprintf(stderr, "qiao eval vqa: --weighting is learned, heuristic or equal\n");
            qmod_free(m);
            return 2;
        }
        mode = (qf_weighting)w;
    }
    qb_exec ex;
    qb_exec_cpu(&ex, (int)threads);
    /* which splits: the named ones under a root, or DIR itself */
    char dirs[2][4096];
    const char *names[2] = {"test", "cogent"};
    int nsplit = 0;
    char manifest[4200];
    snprintf(manifest, sizeof manifest, "%s/manifest.jsonl", data);
    if (cli_is_file(manifest)) {
        snprintf(dirs[0], sizeof dirs[0], "%s", data);
        names[0] = "split";
        nsplit = 1;
    } else {
        const char *want = splits ? splits : "test,cogent";
        const char *cand[2] = {"test", "cogent"};
        for (int k = 0; k < 2; k++) {
            if (!strstr(want, cand[k])) continue;
            snprintf(dirs[nsplit], sizeof dirs[nsplit], "%.4000s/%s", data, cand[k]);
            snprintf(manifest, sizeof manifest, "%s/manifest.jsonl", dirs[nsplit]);
            if (!cli_is_file(manifest)) continue;
            names[nsplit++] = cand[k];
        }
    }
    if (!nsplit) {
        fprintf(stderr, "qiao eval vqa: no split with a manifest.jsonl under %s\n", data);
        qmod_free(m);
        return 1;
    }
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "model", model_path);
    cJSON_AddStringToObject(root, "weighting", qf_weighting_name(mode));
    int rc = 0;
    for (int s = 0; s < nsplit && rc == 0; s++) {
        qmod_vqa_dataset d;
        qmod_vqa_cache *cache = NULL;
        st = qmod_vqa_dataset_load(dirs[s], &d);
        if (st == QIAO_OK) st = qmod_vqa_cache_new(&d, &cache);
        if (st != QIAO_OK) {
            rc = cli_fail(st);
            break;
        }
        cJSON *sj = cJSON_AddObjectToObject(root, names[s]);
        cond conds[16];
        int nc = 0;
        const bool spoken = d.n_spoken == d.n_questions;
        if (!robust) {
            conds[nc++] = make("typed", QMOD_VQA_TYPED);
            if (spoken) conds[nc++] = make("spoken", QMOD_VQA_SPOKEN);
            if (spoken) conds[nc++] = make("typed+spoken", QMOD_VQA_BOTH);
            conds[nc] = make("question only (typed)", QMOD_VQA_TYPED);
            conds[nc++].p.p_drop_image = 1.0f;
        } else {
            conds[nc++] = make("clean", QMOD_VQA_BOTH);
            static const float sig[2] = {30.0f, 60.0f};
            for (int k = 0; k < 2; k++) {
                conds[nc] = make(k ? "picture noise s=60" : "picture noise s=30", QMOD_VQA_BOTH);
                conds[nc].p.p_image_noise = 1.0f;
                conds[nc].p.image_sigma[0] = conds[nc].p.image_sigma[1] = sig[k];
                nc++;
            }
            conds[nc] = make("picture occluded 40%", QMOD_VQA_BOTH);
            conds[nc].p.p_occlude = 1.0f;
            conds[nc].p.occlude_frac[0] = conds[nc].p.occlude_frac[1] = 0.4f;
            nc++;
            conds[nc] = make("picture absent", QMOD_VQA_BOTH);
            conds[nc++].p.p_drop_image = 1.0f;
            static const float snr[3] = {10.0f, 0.0f, -5.0f};
            static const char *const snr_name[3] = {"speech SNR 10 dB", "speech SNR 0 dB", "speech SNR -5 dB"};
            for (int k = 0; k < 3; k++) {
                conds[nc] = make(snr_name[k], QMOD_VQA_BOTH);
                conds[nc].p.p_audio_noise = 1.0f;
                conds[nc].p.audio_snr_db[0] = conds[nc].p.audio_snr_db[1] = snr[k];
                nc++;
            }
            conds[nc] = make("spoken only, SNR 0 dB", QMOD_VQA_SPOKEN);
            conds[nc].p.p_audio_noise = 1.0f;
            conds[nc].p.audio_snr_db[0] = conds[nc].p.audio_snr_db[1] = 0.0f;
            nc++;
            conds[nc++] = make("typed absent", QMOD_VQA_SPOKEN);
            conds[nc++] = make("spoken absent", QMOD_VQA_TYPED);
            if (!spoken) {
                fprintf(stderr, "qiao eval vqa: --robustness needs spoken questions (--speech-questions)\n");
                rc = 1;
            }
        }
        const qf_weighting modes[3] = {QF_WEIGHT_LEARNED, QF_WEIGHT_HEURISTIC, QF_WEIGHT_EQUAL};
        const int nmodes = robust ? 3 : 1;
        qmod_vqa_result first;
        memset(&first, 0, sizeof first);
        if (!json && rc == 0) {
            printf("%s: %s (%lld questions%s)\n", names[s], dirs[s], (long long)d.n_questions,
                   max_q ? ", capped by --max" : "");
            if (!robust) print_header(&d);
        }
        for (int mi = 0; mi < nmodes && rc == 0; mi++) {
            const qf_weighting md = robust ? modes[mi] : mode;
            cJSON *mj = robust ? cJSON_AddObjectToObject(sj, qf_weighting_name(md)) : sj;
            if (!json && robust) {
                printf("weighting: %s\n", qf_weighting_name(md));
                print_header(&d);
            }
            for (int c = 0; c < nc && rc == 0; c++) {
                qmod_vqa_eval_params ep = qmod_vqa_eval_default_params();
                ep.input = conds[c].input;
                ep.cond = conds[c].p;
                ep.mode = md;
                ep.max_questions = max_q;
                ep.threads = 1;
                cli_progress pr;
                cli_progress_start(&pr);
                ep.progress = on_progress;
                ep.progress_user = &pr;
                qmod_vqa_result r;
                st = qmod_vqa_eval(&ex, m, &d, cache, &ep, &r);
                if (st != QIAO_OK) {
                    rc = cli_fail(st);
                    break;
                }
                cJSON_AddItemToObject(mj, conds[c].name, result_json(&d, &r));
                if (!json) print_row(names[s], conds[c].name, &d, &r);
                if (c == 0) first = r; /* the cells need the picture, which the last row may drop */
            }
        }
        if (!robust && rc == 0 && !json) print_cells(names[s], "picture tower", &first);
        if (!robust && rc == 0) {
            double ta, aa;
            priors(&d, &ta, &aa);
            cJSON_AddNumberToObject(sj, "prior_type_majority", ta);
            cJSON_AddNumberToObject(sj, "prior_answer_majority", aa);
            if (!json)
                printf("%-7s %-22s %6lld %7.2f%%\n%-7s %-22s %6lld %7.2f%%\n", names[s], "prior: type majority",
                       (long long)d.n_questions, 100.0 * ta, names[s], "prior: answer majority",
                       (long long)d.n_questions, 100.0 * aa);
        }
        if (!json) printf("\n");
        qmod_vqa_cache_free(cache);
        qmod_vqa_dataset_free(&d);
    }
    if (json && rc == 0) {
        char *s = cJSON_Print(root);
        if (s) printf("%s\n", s);
        cJSON_free(s);
    }
    cJSON_Delete(root);
    qmod_free(m);
    return rc;
}
