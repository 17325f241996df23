/* qiao dataset fsdd: the Free Spoken Digit Dataset (recordings of English
 * digits, datasets/fsdd/SOURCE.md) as image-less manifests that the trainer
 * and `qiao eval digits` read (models/data/data.h).
 *
 * Splits, from the file names recordings/<digit>_<speaker>_<take>.wav:
 *   train/    takes 5.. of every speaker but the held-out one
 *   test/     takes 0-4 of the same speakers (FSDD's own test convention)
 *   speaker/  every take of the held-out speaker, who is in neither
 * One line per clip:
 *   {"id", "digit", "speaker", "take", "captions": {"zh": ["七"], "en": ["seven"]},
 *    "speech": {"captions": {"en": ["/abs/path/recordings/7_jackson_32.wav"]}}}
 * The paths are absolute and point into the source: the audio is not copied.
 *
 * The default held-out speaker is theo: his accent (USA, neutral) is shared
 * by a training speaker (jackson), so the held-out score measures a new
 * voice rather than a new voice and a new accent at once (george, Greek,
 * or nicolas, Belgian French, would confound the two; pass
 * --holdout-speaker george for that harder test). */
#define _GNU_SOURCE /* realpath */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "core/core.h"

int cmd_dataset_fsdd(int argc, char **argv);

#define FSDD_DEFAULT_HOLDOUT "theo"
#define FSDD_TEST_TAKES 5 /* takes 0-4: the upstream test set */
#define FSDD_NAME_MAX 64

static const char *const k_en[10] = {"zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"};
static const char *const k_zh[10] = {"零", "一", "二", "三", "四", "五", "六", "七", "八", "九"};

enum { SPLIT_TRAIN = 0, SPLIT_TEST, SPLIT_SPEAKER, N_SPLITS };
static const char *const k_split[N_SPLITS] = {"train", "test", "speaker"};

typedef struct clip {
    int digit;
    long take;
    char speaker[FSDD_NAME_MAX];
    char file[FSDD_NAME_MAX * 2];
} clip;

static void usage(FILE *f) {
    fprintf(f,
            "usage: qiao dataset fsdd --src FSDD_DIR --out DIR [--holdout-speaker NAME|none]\n"
            "  FSDD_DIR holds recordings/<digit>_<speaker>_<take>.wav. Writes DIR/train (takes 5+),\n"
            "  DIR/test (takes 0-4, FSDD's test split) and DIR/speaker (every take of the held-out\n"
            "  speaker, default " FSDD_DEFAULT_HOLDOUT "; none: no held-out speaker) as manifest.jsonl with\n"
            "  captions \"seven\"/\"七\" and absolute paths to the source clips (nothing is copied).\n");
}

/* "<digit>_<speaker>_<take>.wav" -> c; 0 when the name has another form. */
static int parse_name(const char *name, clip *c) {
    size_t n = strlen(name);
    if (n < 9 || n >= sizeof c->file || strcmp(name + n - 4, ".wav")) return 0;
    if (name[0] < '0' || name[0] > '9' || name[1] != '_') return 0;
    const char *sp = name + 2, *us = strchr(sp, '_');
    if (!us || us == sp || (size_t)(us - sp) >= FSDD_NAME_MAX) return 0;
    for (const char *q = sp; q < us; q++)
        if (!((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') || (*q >= '0' && *q <= '9'))) return 0;
    const char *tk = us + 1, *end = name + n - 4;
    /* no leading zeros: 7_jackson_032 and 7_jackson_32 would be one id */
    if (tk == end || end - tk > 6 || (end - tk > 1 && tk[0] == '0')) return 0;
    long take = 0;
    for (const char *q = tk; q < end; q++) {
        if (*q < '0' || *q > '9') return 0;
        take = take * 10 + (*q - '0');
    }
    c->digit = name[0] - '0';
    c->take = take;
    memcpy(c->speaker, sp, (size_t)(us - sp));
    c->speaker[us - sp] = 0;
    memcpy(c->file, name, n + 1);
    return 1;
}

/* Speaker, then digit, then take: the manifests read in a stable order
 * whatever order readdir gives. */
static int cmp_clip(const void *a, const void *b) {
    const clip *x = a, *y = b;
    int c = strcmp(x->speaker, y->speaker);
    if (c) return c;
    if (x->digit != y->digit) return x->digit - y->digit;
    return (x->take > y->take) - (x->take < y->take);
}

/* Reads FSDD_DIR/recordings: *clips (sorted) and their number. */
static qiao_status list_clips(const char *rec, clip **out, size_t *n_out) {
    *out = NULL;
    *n_out = 0;
    DIR *d = opendir(rec);
    if (!d) return qc_error(QIAO_ERR_IO, "%s: %s", rec, strerror(errno));
    clip *v = NULL;
    size_t n = 0, cap = 0;
    qiao_status st = QIAO_OK;
    struct dirent *e;
    while (st == QIAO_OK && (e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len < 4 || strcmp(e->d_name + len - 4, ".wav")) continue; /* README, .gitkeep... */
        if (n == cap) {
            size_t nc = cap ? 2 * cap : 4096;
            clip *nv = realloc(v, nc * sizeof *nv);
            if (!nv) {
                st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory", rec);
                break;
            }
            v = nv;
            cap = nc;
        }
        if (!parse_name(e->d_name, &v[n]))
            st = qc_error(QIAO_ERR_FORMAT, "%s/%s: not named <digit>_<speaker>_<take>.wav", rec, e->d_name);
        else
            n++;
    }
    closedir(d);
    if (st == QIAO_OK && n == 0) st = qc_error(QIAO_ERR_FORMAT, "%s: no .wav recordings", rec);
    if (st != QIAO_OK) {
        free(v);
        return st;
    }
    qsort(v, n, sizeof *v, cmp_clip);
    *out = v;
    *n_out = n;
    return QIAO_OK;
}

/* One manifest line (no newline); NULL on OOM. Freed with cJSON_free. */
static char *clip_json(const clip *c, const char *rec) {
    char id[FSDD_NAME_MAX * 2 + 8], path[PATH_MAX + FSDD_NAME_MAX * 2 + 2];
    size_t n = strlen(c->file) - 4;
    snprintf(id, sizeof id, "fsdd-%.*s", (int)n, c->file);
    snprintf(path, sizeof path, "%s/%s", rec, c->file);
    const char *zh[1] = {k_zh[c->digit]}, *en[1] = {k_en[c->digit]}, *wav[1] = {path};
    cJSON *o = cJSON_CreateObject();
    bool ok = o && cJSON_AddStringToObject(o, "id", id) && cJSON_AddNumberToObject(o, "digit", c->digit) &&
              cJSON_AddStringToObject(o, "speaker", c->speaker) &&
              cJSON_AddNumberToObject(o, "take", (double)c->take);
    cJSON *caps = ok ? cJSON_AddObjectToObject(o, "captions") : NULL;
    ok = caps && cJSON_AddItemToObject(caps, "zh", cJSON_CreateStringArray(zh, 1)) &&
         cJSON_AddItemToObject(caps, "en", cJSON_CreateStringArray(en, 1));
    cJSON *speech = ok ? cJSON_AddObjectToObject(o, "speech") : NULL;
    cJSON *scaps = speech ? cJSON_AddObjectToObject(speech, "captions") : NULL;
    ok = scaps && cJSON_AddItemToObject(scaps, "en", cJSON_CreateStringArray(wav, 1));
    char *s = ok ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    return s;
}

/* DIR/<split>/manifest.jsonl, written to a temporary name and renamed, so
 * an interrupted run never leaves a manifest that looks complete. */
static qiao_status write_split(const char *out, int split, const clip *clips, const int *split_of, size_t n,
                               const char *rec, int64_t *count) {
    char dir[PATH_MAX], file[PATH_MAX + 32], tmp[PATH_MAX + 48];
    snprintf(dir, sizeof dir, "%s/%s", out, k_split[split]);
    snprintf(file, sizeof file, "%s/manifest.jsonl", dir);
    snprintf(tmp, sizeof tmp, "%s/manifest.jsonl.tmp", dir);
    qiao_status st = qc_mkdir_p(dir);
    if (st != QIAO_OK) return st;
    FILE *f = fopen(tmp, "wb");
    if (!f) return qc_error(QIAO_ERR_IO, "%s: %s", tmp, strerror(errno));
    *count = 0;
    for (size_t i = 0; i < n && st == QIAO_OK; i++) {
        if (split_of[i] != split) continue;
        char *line = clip_json(&clips[i], rec);
        if (!line) st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory", file);
        else if (fprintf(f, "%s\n", line) < 0) st = qc_error(QIAO_ERR_IO, "%s: write failed", tmp);
        cJSON_free(line);
        (*count)++;
    }
    if (fclose(f) != 0 && st == QIAO_OK) st = qc_error(QIAO_ERR_IO, "%s: %s", tmp, strerror(errno));
    if (st == QIAO_OK && rename(tmp, file) != 0) st = qc_error(QIAO_ERR_IO, "%s: %s", file, strerror(errno));
    if (st != QIAO_OK) remove(tmp);
    return st;
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
    const int no_holdout = !strcmp(holdout, "none");

    /* Absolute paths, so the manifests work from any directory. */
    char abs_src[PATH_MAX], rec[PATH_MAX + 16];
    if (!realpath(src, abs_src)) return cli_fail(qc_error(QIAO_ERR_IO, "%s: %s", src, strerror(errno)));
    snprintf(rec, sizeof rec, "%s/recordings", abs_src);
    clip *clips = NULL;
    size_t n = 0;
    qiao_status st = list_clips(rec, &clips, &n);
    if (st != QIAO_OK) return cli_fail(st);

    /* The speakers (clips are sorted by speaker) and the held-out one. */
    char speakers[1024] = "";
    size_t n_speakers = 0;
    int found = 0;
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && !strcmp(clips[i].speaker, clips[i - 1].speaker)) continue;
        n_speakers++;
        size_t len = strlen(speakers);
        snprintf(speakers + len, sizeof speakers - len, "%s%s", len ? ", " : "", clips[i].speaker);
        if (!strcmp(clips[i].speaker, holdout)) found = 1;
    }
    int *split_of = malloc(n * sizeof *split_of);
    int rc = 1;
    if (!split_of) {
        cli_fail(qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory"));
        goto done;
    }
    if (!no_holdout && !found) {
        cli_fail(qc_error(QIAO_ERR_INVALID_ARGUMENT, "--holdout-speaker %s: no such speaker in %s (speakers: %s)",
                          holdout, rec, speakers));
        goto done;
    }
    if (!no_holdout && n_speakers < 2) {
        cli_fail(qc_error(QIAO_ERR_INVALID_ARGUMENT, "%s: only speaker %s; nothing left to train on", rec, speakers));
        goto done;
    }
    for (size_t i = 0; i < n; i++)
        split_of[i] = !no_holdout && !strcmp(clips[i].speaker, holdout) ? SPLIT_SPEAKER
                      : clips[i].take < FSDD_TEST_TAKES                 ? SPLIT_TEST
                                                                        : SPLIT_TRAIN;
    if ((st = qc_mkdir_p(out)) != QIAO_OK) {
        cli_fail(st);
        goto done;
    }
    int64_t count[N_SPLITS] = {0, 0, 0};
    for (int s = 0; s < N_SPLITS; s++) {
        if (s == SPLIT_SPEAKER && no_holdout) {
            /* a manifest left by an earlier run with a held-out speaker
             * would now overlap train and test */
            char stale[PATH_MAX + 32];
            snprintf(stale, sizeof stale, "%s/%s/manifest.jsonl", out, k_split[s]);
            remove(stale);
            continue;
        }
        if ((st = write_split(out, s, clips, split_of, n, rec, &count[s])) != QIAO_OK) {
            cli_fail(st);
            goto done;
        }
    }
    printf("%s: train %lld, test %lld", out, (long long)count[SPLIT_TRAIN], (long long)count[SPLIT_TEST]);
    if (!no_holdout) printf(", speaker %lld (%s)", (long long)count[SPLIT_SPEAKER], holdout);
    printf("; %zu speakers (%s), from %s\n", n_speakers, speakers, rec);
    rc = 0;
done:
    free(split_of);
    free(clips);
    return rc;
}
