/* qiao graft: one model file that both answers questions and writes
 * captions, from a VQA model and a caption model trained on the same
 * frozen picture tower (models/model.h qmod_graft_decoder). Each is
 * trained apart; a user who retrains one keeps the other's part. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "models/model.h"

static void usage(FILE *f) {
    fprintf(f, "usage: qiao graft --model M.safetensors --decoder-from CAP.safetensors --out OUT.safetensors\n"
               "                  [--force] [--f32]\n"
               "  Writes M with CAP's caption decoder (its config section and tensors) added, or put in\n"
               "  place of M's own. Refused when the two models' picture towers or tokenizers differ (the\n"
               "  decoder reads the one and writes the other's pieces) unless --force. OUT stores bf16\n"
               "  (f32 with --f32); `qiao quantize` it afterwards for int8.\n");
}

int cmd_graft(int argc, char **argv) {
    const char *model = NULL, *donor = NULL, *out = NULL;
    bool force = false, f32 = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--force")) {
            force = true;
            continue;
        }
        if (!strcmp(a, "--f32")) {
            f32 = true;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "qiao graft: %s needs a value\n", a);
            return 2;
        }
        const char *v = argv[++i];
        if (!strcmp(a, "--model")) model = v;
        else if (!strcmp(a, "--decoder-from")) donor = v;
        else if (!strcmp(a, "--out")) out = v;
        else {
            fprintf(stderr, "qiao graft: unknown option %s\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!model || !donor || !out) {
        usage(stderr);
        return 2;
    }
    qmod_model *m = NULL, *d = NULL;
    qiao_status st = qmod_load(model, &m);
    if (st == QIAO_OK) st = qmod_load(donor, &d);
    if (st == QIAO_OK) st = qmod_graft_decoder(m, d, force, out, f32 ? QIAO_DTYPE_F32 : QIAO_DTYPE_BF16);
    if (st == QIAO_OK)
        printf("%s: %s with the caption decoder of %s (%lld parameters)\n", out, m->cfg.name, d->cfg.name,
               (long long)qmod_param_count(d, "decoder."));
    qmod_free(m), qmod_free(d);
    return st == QIAO_OK ? 0 : cli_fail(st);
}
