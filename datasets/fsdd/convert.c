/* datasets/fsdd/convert.c - the Free Spoken Digit Dataset as manifests
 * (fsdd.h says what is written and why theo is held out). */
#define _GNU_SOURCE /* realpath */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "fsdd/fsdd.h"

#define FSDD_TEST_TAKES 5 /* takes 0-4: the upstream test set */
#define FSDD_NAME_MAX 64

/* The longest output path is out_dir + "/speaker/manifest.jsonl.tmp". */
#define FSDD_OUT_SUFFIX_MAX (sizeof "/speaker/manifest.jsonl.tmp")

static const char *const k_en[10] = {"zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"};
static const char *const k_zh[10] = {"零", "一", "二", "三", "四", "五", "六", "七", "八", "九"};

static const char *const k_split[FSDD_N_SPLITS] = {"train", "test", "speaker"};

/* realpath() gives at most PATH_MAX bytes; "/recordings" follows. */
_Static_assert(sizeof((fsdd_stats *)0)->recordings >= PATH_MAX + sizeof "/recordings",
               "fsdd_stats.recordings holds an absolute source path and /recordings");

typedef struct clip {
    int digit;
    long take;
    char speaker[FSDD_NAME_MAX];
    char file[FSDD_NAME_MAX * 2];
} clip;

const char *fsdd_split_name(int split) { return split >= 0 && split < FSDD_N_SPLITS ? k_split[split] : NULL; }

fsdd_params fsdd_default_params(void) {
    fsdd_params p;
    memset(&p, 0, sizeof p);
    p.struct_size = sizeof p;
    p.holdout_speaker = FSDD_DEFAULT_HOLDOUT;
    return p;
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

/* Reads the recordings folder: *clips (sorted) and their number. */
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
    /* sized so that neither ever truncates: rec fits fsdd_stats.recordings */
    char id[sizeof c->file + 8], path[sizeof((fsdd_stats *)0)->recordings + sizeof c->file + 1];
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

/* Where the run is, for the progress callback. */
typedef struct run {
    const fsdd_params *p;
    int64_t done, total;
} run;

/* out/<split>/manifest.jsonl, written to a temporary name and renamed, so
 * an interrupted run never leaves a manifest that looks complete. The
 * caller checked that out + FSDD_OUT_SUFFIX_MAX fits PATH_MAX. */
static qiao_status write_split(const char *out, int split, const clip *clips, const int *split_of, size_t n,
                               const char *rec, run *r, int64_t *count) {
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
        if (st != QIAO_OK) break;
        (*count)++;
        r->done++;
        if (r->p->progress && r->p->progress(k_split[split], r->done, r->total, r->p->user_data))
            st = qc_error(QIAO_ERR_CANCELLED, "%s: cancelled", file);
    }
    if (fclose(f) != 0 && st == QIAO_OK) st = qc_error(QIAO_ERR_IO, "%s: %s", tmp, strerror(errno));
    if (st == QIAO_OK && rename(tmp, file) != 0) st = qc_error(QIAO_ERR_IO, "%s: %s", file, strerror(errno));
    if (st != QIAO_OK) remove(tmp);
    return st;
}

qiao_status fsdd_convert(const char *src_dir, const char *out_dir, const fsdd_params *params, fsdd_stats *stats) {
    fsdd_stats local;
    fsdd_stats *s = stats ? stats : &local;
    memset(s, 0, sizeof *s);
    if (!src_dir || !src_dir[0] || !out_dir || !out_dir[0])
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "fsdd_convert: NULL or empty source or output directory");
    fsdd_params p = fsdd_default_params();
    qiao_status st = qc_params_read(&p, sizeof p, params, offsetof(fsdd_params, holdout_speaker) + sizeof(char *),
                                    "fsdd_default_params");
    if (st != QIAO_OK) return st;
    if (strlen(out_dir) + FSDD_OUT_SUFFIX_MAX > PATH_MAX)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "%.64s...: output path too long (%zu bytes)", out_dir,
                        strlen(out_dir));
    const char *holdout = p.holdout_speaker; /* "" is a name no speaker has: refused below */

    /* Absolute paths, so the manifests work from any directory. */
    char abs_src[PATH_MAX];
    if (!realpath(src_dir, abs_src)) return qc_error(QIAO_ERR_IO, "%s: %s", src_dir, strerror(errno));
    const char *rec = s->recordings;
    snprintf(s->recordings, sizeof s->recordings, "%s/recordings", abs_src);
    clip *clips = NULL;
    size_t n = 0;
    if ((st = list_clips(rec, &clips, &n)) != QIAO_OK) return st;

    /* The speakers (clips are sorted by speaker) and the held-out one. */
    int found = 0;
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && !strcmp(clips[i].speaker, clips[i - 1].speaker)) continue;
        s->n_speakers++;
        size_t len = strlen(s->speakers);
        snprintf(s->speakers + len, sizeof s->speakers - len, "%s%s", len ? ", " : "", clips[i].speaker);
        if (holdout && !strcmp(clips[i].speaker, holdout)) found = 1;
    }
    int *split_of = malloc(n * sizeof *split_of);
    if (!split_of) {
        st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory");
        goto done;
    }
    /* The message names the command's option: this is what `qiao dataset
     * fsdd --holdout-speaker` reports. */
    if (holdout && !found) {
        st = qc_error(QIAO_ERR_INVALID_ARGUMENT, "--holdout-speaker %s: no such speaker in %s (speakers: %s)",
                      holdout, rec, s->speakers);
        goto done;
    }
    if (holdout && s->n_speakers < 2) {
        st = qc_error(QIAO_ERR_INVALID_ARGUMENT, "%s: only speaker %s; nothing left to train on", rec, s->speakers);
        goto done;
    }
    for (size_t i = 0; i < n; i++)
        split_of[i] = holdout && !strcmp(clips[i].speaker, holdout) ? FSDD_SPEAKER
                      : clips[i].take < FSDD_TEST_TAKES               ? FSDD_TEST
                                                                      : FSDD_TRAIN;
    if ((st = qc_mkdir_p(out_dir)) != QIAO_OK) goto done;
    run r = {.p = &p, .done = 0, .total = (int64_t)n}; /* every clip goes to one split */
    for (int k = 0; k < FSDD_N_SPLITS; k++) {
        if (k == FSDD_SPEAKER && !holdout) {
            /* a manifest left by an earlier run with a held-out speaker
             * would now overlap train and test */
            char stale[PATH_MAX];
            snprintf(stale, sizeof stale, "%s/%s/manifest.jsonl", out_dir, k_split[k]);
            remove(stale);
            continue;
        }
        if ((st = write_split(out_dir, k, clips, split_of, n, rec, &r, &s->clips[k])) != QIAO_OK) goto done;
    }
done:
    free(split_of);
    free(clips);
    return st;
}
