/* apps/qiao/cmd_vqa.c - `qiao vqa`: ask a VQA model a question about a
 * picture, typed or spoken, through the public API (qiao.h) alone. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli.h"

int cmd_vqa(int argc, char **argv);

static void usage(FILE *f) {
    fprintf(f,
            "usage: qiao vqa --model VQA.safetensors --image PICTURE (--question TEXT | --question-audio WAV | both)\n"
            "                [--top K] [--lang zh|en] [--weighting model|learned|heuristic|equal] [--threads N]\n"
            "                [--json]\n"
            "  Answers the question (Chinese or English, typed or spoken) about the picture, in the\n"
            "  question's language (--lang to choose), with its probability, the next K-1 answers\n"
            "  and how much the typed question, the picture and the spoken question counted.\n");
}

int cmd_vqa(int argc, char **argv) {
    const char *model_path = NULL, *image = NULL, *question = NULL, *audio = NULL, *lang = NULL, *weighting = NULL;
    int64_t top = 3, threads = 0;
    bool json = false;
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
        if (i + 1 >= argc) {
            fprintf(stderr, "qiao vqa: %s needs a value (or is an unknown option)\n", a);
            usage(stderr);
            return 2;
        }
        const char *v = argv[++i];
        if (!strcmp(a, "--model")) model_path = v;
        else if (!strcmp(a, "--image")) image = v;
        else if (!strcmp(a, "--question")) question = v;
        else if (!strcmp(a, "--question-audio")) audio = v;
        else if (!strcmp(a, "--lang")) lang = v;
        else if (!strcmp(a, "--weighting")) weighting = v;
        else if (!strcmp(a, "--top")) {
            if (!cli_int_arg("vqa", a, v, 1, QIAO_VQA_MAX_TOP, &top)) return 2;
        } else if (!strcmp(a, "--threads")) {
            if (!cli_int_arg("vqa", a, v, 1, 1024, &threads)) return 2;
        } else {
            fprintf(stderr, "qiao vqa: unknown option %s\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!model_path || !image || (!question && !audio)) {
        fprintf(stderr, "qiao vqa: --model, --image and --question or --question-audio are required\n");
        usage(stderr);
        return 2;
    }
    qiao_vqa_params vp = qiao_vqa_default_params();
    vp.top_k = (int)top;
    vp.lang = lang;
    if (weighting) {
        static const char *const names[] = {"model", "learned", "heuristic", "equal"};
        vp.weighting = -1;
        for (int k = 0; k < 4; k++)
            if (!strcmp(weighting, names[k])) vp.weighting = k;
        if (vp.weighting < 0) {
            fprintf(stderr, "qiao vqa: --weighting is model, learned, heuristic or equal\n");
            return 2;
        }
    }
    qiao_model *model = NULL;
    qiao_session *s = NULL;
    qiao_session_params sp = qiao_session_default_params();
    sp.n_threads = (int)threads;
    qiao_status st = qiao_model_load(model_path, &model);
    if (st == QIAO_OK) st = qiao_session_new(model, &sp, &s);
    qiao_vqa_answer ans;
    if (st == QIAO_OK) st = qiao_vqa_ask_files(s, image, question, audio, &vp, &ans);
    int rc = 0;
    if (st != QIAO_OK) {
        rc = cli_fail(st);
    } else if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "answer", ans.best.text);
        cJSON_AddStringToObject(o, "key", ans.best.key);
        cJSON_AddNumberToObject(o, "confidence", ans.best.p);
        cJSON_AddStringToObject(o, "lang", ans.lang);
        cJSON *t = cJSON_AddArrayToObject(o, "top");
        for (int k = 0; k < ans.n_top; k++) {
            cJSON *c = cJSON_CreateObject();
            cJSON_AddStringToObject(c, "answer", ans.top[k].text);
            cJSON_AddStringToObject(c, "key", ans.top[k].key);
            cJSON_AddNumberToObject(c, "p", ans.top[k].p);
            cJSON_AddItemToArray(t, c);
        }
        cJSON *w = cJSON_AddObjectToObject(o, "weights");
        cJSON_AddNumberToObject(w, "text", ans.w_text);
        cJSON_AddNumberToObject(w, "image", ans.w_image);
        cJSON_AddNumberToObject(w, "audio", ans.w_audio);
        char *txt = cJSON_Print(o);
        if (txt) printf("%s\n", txt);
        cJSON_free(txt);
        cJSON_Delete(o);
    } else {
        printf("%s  (%.1f%%)\n", ans.best.text, 100.0 * ans.best.p);
        for (int k = 1; k < ans.n_top; k++) printf("  %d. %s  (%.1f%%)\n", k + 1, ans.top[k].text, 100.0 * ans.top[k].p);
        printf("weights: text %.2f, picture %.2f, speech %.2f\n", ans.w_text, ans.w_image, ans.w_audio);
    }
    qiao_session_free(s);
    qiao_model_free(model);
    return rc;
}
