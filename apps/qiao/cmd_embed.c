/* qiao embed --model M (--text T | --image F | --audio F) [--prompt NAME] [-o OUT.npy] [--threads N]:
 * one embedding through the public API. Without -o it prints the norm (1 for
 * a working model: rows are L2-normalized) and the first 8 values; with -o
 * it writes the row as a (1, D) float32 .npy for numpy.load. --prompt puts
 * the model's prompt of that name (qiao_model_prompt: e5's "query: " for
 * query, "passage: " for document) before the text, as the search index
 * does. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "core/npy.h"

static void usage(FILE *f) {
    fprintf(f, "usage: qiao embed --model M.safetensors (--text TEXT | --image FILE | --audio FILE)\n"
               "                  [--prompt query|document] [-o OUT.npy] [--threads N]\n");
}

int cmd_embed(int argc, char **argv) {
    const char *model_path = NULL, *out_path = NULL, *input = NULL, *kind = NULL, *prompt_name = NULL;
    int n_threads = 0, n_inputs = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        int takes_value = !strcmp(a, "--model") || !strcmp(a, "--text") || !strcmp(a, "--image") ||
                          !strcmp(a, "--audio") || !strcmp(a, "-o") || !strcmp(a, "--threads") ||
                          !strcmp(a, "--prompt");
        if (!takes_value) {
            fprintf(stderr, "qiao embed: %s '%s'\n", a[0] == '-' ? "unknown option" : "unexpected argument", a);
            usage(stderr);
            return 2;
        }
        if (!next) {
            fprintf(stderr, "qiao embed: %s needs a value\n", a);
            usage(stderr);
            return 2;
        }
        i++;
        if (!strcmp(a, "--model")) {
            model_path = next;
        } else if (!strcmp(a, "-o")) {
            out_path = next;
        } else if (!strcmp(a, "--prompt")) {
            prompt_name = next;
        } else if (!strcmp(a, "--threads")) {
            int64_t v;
            if (!cli_int_arg("embed", "--threads", next, 0, 4096, &v)) return 2; /* 0 = all cores */
            n_threads = (int)v;
        } else {
            kind = a + 2; /* "text", "image" or "audio" */
            input = next;
            n_inputs++;
        }
    }
    if (!model_path || n_inputs != 1) {
        if (model_path && n_inputs > 1) fprintf(stderr, "qiao embed: give one of --text, --image, --audio\n");
        usage(stderr);
        return 2;
    }
    if (prompt_name && strcmp(kind, "text") != 0) {
        fprintf(stderr, "qiao embed: --prompt goes with --text\n");
        return 2;
    }

    qiao_model *model = NULL;
    qiao_status st = qiao_model_load(model_path, &model);
    if (st != QIAO_OK) return cli_fail(st);
    qiao_session_params sp = qiao_session_default_params();
    sp.n_threads = n_threads;
    qiao_session *session = NULL;
    st = qiao_session_new(model, &sp, &session);
    const size_t D = (size_t)qiao_model_dim(model);
    float *emb = st == QIAO_OK ? malloc(D * sizeof(float)) : NULL;
    if (st == QIAO_OK && !emb) {
        fprintf(stderr, "qiao embed: out of memory\n");
        qiao_session_free(session);
        qiao_model_free(model);
        return 1;
    }
    const char *prompt = prompt_name ? qiao_model_prompt(model, prompt_name) : "";
    char *prompted = NULL;
    if (st == QIAO_OK && prompt_name && !*prompt)
        fprintf(stderr, "qiao embed: model %s has no \"%s\" prompt: the text is embedded as given\n",
                qiao_model_name(model), prompt_name);
    if (st == QIAO_OK && *prompt) {
        size_t n = strlen(prompt) + strlen(input) + 1;
        if (!(prompted = malloc(n))) {
            fprintf(stderr, "qiao embed: out of memory\n");
            free(emb);
            qiao_session_free(session);
            qiao_model_free(model);
            return 1;
        }
        snprintf(prompted, n, "%s%s", prompt, input);
        input = prompted;
    }
    if (st == QIAO_OK) {
        if (!strcmp(kind, "text"))
            st = qiao_embed_text(session, input, emb, D);
        else if (!strcmp(kind, "image"))
            st = qiao_embed_image_file(session, input, emb, D);
        else
            st = qiao_embed_audio_file(session, input, emb, D);
    }
    if (st == QIAO_OK && out_path) {
        int64_t shape[2] = {1, (int64_t)D};
        st = qc_npy_write_f32(out_path, emb, 2, shape);
        if (st == QIAO_OK) printf("%s: (1, %zu) float32 -> %s\n", kind, D, out_path);
    } else if (st == QIAO_OK) {
        double ss = 0.0;
        for (size_t i = 0; i < D; i++) ss += (double)emb[i] * emb[i];
        printf("model: %s, %zu dims\n%s embedding: norm %.6f\nfirst 8:", qiao_model_name(model), D, kind, sqrt(ss));
        for (size_t i = 0; i < D && i < 8; i++) printf(" %.6f", emb[i]);
        printf("\n");
    }
    free(prompted);
    free(emb);
    qiao_session_free(session);
    qiao_model_free(model);
    return st == QIAO_OK ? 0 : cli_fail(st);
}
