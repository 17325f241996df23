/* qiao dataset shapes: generates a split of the shapes world (images,
 * captions and questions in Chinese and English, optional speech), or
 * prints the blind baseline of a generated manifest (--baseline DIR). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "shapes/shapes.h"

int cmd_dataset_shapes(int argc, char **argv);

static void usage(FILE *f) {
    fprintf(f,
            "usage: qiao dataset shapes --n N --seed S --out DIR [--speech | --speech-long | --speech-questions]\n"
            "                           [--langs zh,en] [--size 64]\n"
            "                           [--split train|val|test|cogent] [--jobs J]\n"
            "       qiao dataset shapes --baseline DIR   (blind baseline of DIR/manifest.jsonl)\n");
}

static int on_progress(int64_t done, int64_t total, void *user_data) {
    cli_progress_show(user_data, "shapes", "scenes", done, total);
    return 0;
}

static int baseline(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/manifest.jsonl", dir);
    shapes_baseline b;
    qiao_status st = shapes_blind_baseline(path, &b);
    if (st != QIAO_OK) return cli_fail(st);
    printf("%-10s %9s  %-10s %s\n", "type", "questions", "majority", "blind accuracy");
    for (int t = 0; t < SHAPES_NQTYPES; t++)
        printf("%-10s %9lld  %-10s %.1f%%\n", shapes_qtype_name(t), (long long)b.count[t],
               b.majority[t] >= 0 ? shapes_answer_key(b.majority[t]) : "-", 100.0 * b.accuracy[t]);
    return 0;
}

int cmd_dataset_shapes(int argc, char **argv) {
    shapes_params p = shapes_default_params();
    const char *out = NULL;
    int have_n = 0, have_seed = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int64_t x;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--speech")) {
            p.speech = SHAPES_SPEECH_ALL;
            continue;
        } else if (!strcmp(a, "--speech-long")) {
            p.speech = SHAPES_SPEECH_LONG;
            continue;
        } else if (!strcmp(a, "--speech-questions")) {
            p.speech = SHAPES_SPEECH_QUESTIONS;
            continue;
        } else if (!strcmp(a, "--baseline")) {
            if (!v) break;
            return baseline(v);
        }
        if (!v) {
            fprintf(stderr, "qiao dataset shapes: %s needs a value (or is an unknown option)\n", a);
            usage(stderr);
            return 2;
        }
        i++;
        if (!strcmp(a, "--n") && cli_int(v, 0, INT64_MAX, &x)) {
            p.n = x;
            have_n = 1;
        } else if (!strcmp(a, "--seed") && cli_int(v, 0, INT64_MAX, &x)) {
            p.seed = (uint64_t)x;
            have_seed = 1;
        } else if (!strcmp(a, "--size") && cli_int(v, 16, 1024, &x)) {
            p.size = (int)x;
        } else if (!strcmp(a, "--jobs") && cli_int(v, 1, 256, &x)) {
            p.jobs = (int)x;
        } else if (!strcmp(a, "--out")) {
            out = v;
        } else if (!strcmp(a, "--split") && shapes_split_parse(v) >= 0) {
            p.split = (shapes_split)shapes_split_parse(v);
        } else if (!strcmp(a, "--langs")) {
            p.langs = 0;
            char buf[64];
            snprintf(buf, sizeof buf, "%s", v);
            for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
                if (!strcmp(t, "zh")) p.langs |= 1;
                else if (!strcmp(t, "en")) p.langs |= 2;
                else p.langs = -1000;
            }
            if (p.langs <= 0) {
                fprintf(stderr, "qiao dataset shapes: --langs takes zh, en or zh,en\n");
                return 2;
            }
        } else {
            fprintf(stderr, "qiao dataset shapes: bad option or value: %s %s\n", a, v);
            usage(stderr);
            return 2;
        }
    }
    if (!out || !have_n || !have_seed) {
        fprintf(stderr, "qiao dataset shapes: --n, --seed and --out are required\n");
        usage(stderr);
        return 2;
    }
    cli_progress pr;
    cli_progress_start(&pr);
    p.progress = on_progress;
    p.user_data = &pr;
    qiao_status st = shapes_generate(&p, out);
    if (st != QIAO_OK) {
        fputc('\n', stderr);
        return cli_fail(st);
    }
    double t = qc_now() - pr.t0;
    fprintf(stderr, "shapes: wrote %lld %s scenes to %s in %.1f s (%.0f scenes/s)\n", (long long)p.n,
            shapes_split_name(p.split), out, t, t > 0 ? (double)p.n / t : 0.0);
    return 0;
}
