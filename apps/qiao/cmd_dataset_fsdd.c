/* qiao dataset fsdd: the Free Spoken Digit Dataset as image-less manifests.
 * The conversion is fsdd_convert (datasets/fsdd/fsdd.h, which says what is
 * written); this file reads the options and reports what was written. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "fsdd/fsdd.h"

int cmd_dataset_fsdd(int argc, char **argv);

static void usage(FILE *f) {
    fprintf(f,
            "usage: qiao dataset fsdd --src FSDD_DIR --out DIR [--holdout-speaker NAME|none]\n"
            "  FSDD_DIR holds recordings/<digit>_<speaker>_<take>.wav. Writes DIR/train (takes 5+),\n"
            "  DIR/test (takes 0-4, FSDD's test split) and DIR/speaker (every take of the held-out\n"
            "  speaker, default " FSDD_DEFAULT_HOLDOUT "; none: no held-out speaker) as manifest.jsonl with\n"
            "  captions \"seven\"/\"七\" and absolute paths to the source clips (nothing is copied).\n");
}

int cmd_dataset_fsdd(int argc, char **argv) {
    const char *src = NULL, *out = NULL, *holdout = FSDD_DEFAULT_HOLDOUT;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        }
        const char **dst = !strcmp(argv[i], "--src")               ? &src
                           : !strcmp(argv[i], "--out")             ? &out
                           : !strcmp(argv[i], "--holdout-speaker") ? &holdout
                                                                   : NULL;
        if (!dst || i + 1 >= argc) {
            fprintf(stderr, "qiao dataset fsdd: %s '%s'\n", dst ? "missing value for" : "unknown option", argv[i]);
            usage(stderr);
            return 2;
        }
        *dst = argv[++i];
    }
    if (!src || !out) {
        fprintf(stderr, "qiao dataset fsdd: --src and --out are required\n");
        usage(stderr);
        return 2;
    }
    fsdd_params p = fsdd_default_params();
    p.holdout_speaker = strcmp(holdout, "none") ? holdout : NULL;
    fsdd_stats s;
    qiao_status st = fsdd_convert(src, out, &p, &s);
    if (st != QIAO_OK) return cli_fail(st);
    printf("%s: train %lld, test %lld", out, (long long)s.clips[FSDD_TRAIN], (long long)s.clips[FSDD_TEST]);
    if (p.holdout_speaker) printf(", speaker %lld (%s)", (long long)s.clips[FSDD_SPEAKER], p.holdout_speaker);
    printf("; %lld speakers (%s), from %s\n", (long long)s.n_speakers, s.speakers, s.recordings);
    return 0;
}
