/* apps/qiao/caption_video.c - `qiao caption --video`: captions a video
 * through the public API (qiao_caption_video) and writes the captions as
 * timed lines, an SRT subtitle file or JSON. The timestamp formats belong
 * to these outputs, so they live here and not in the library. */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "core/core.h"

/* Milliseconds, rounded: the unit every output here is written in. */
static long long to_ms(double seconds) {
    return seconds > 0 ? llround(seconds * 1000.0) : 0;
}

/* "HH:MM:SS<sep>mmm": sep is ',' in SRT, '.' on the terminal. */
static void format_time(char *buf, size_t cap, double seconds, char sep) {
    const long long ms = to_ms(seconds);
    snprintf(buf, cap, "%02lld:%02lld:%02lld%c%03lld", ms / 3600000, ms / 60000 % 60, ms / 1000 % 60, sep, ms % 1000);
}

static void print_line(const qiao_video_caption *c, size_t index, void *user) {
    (void)index, (void)user;
    char t[32];
    format_time(t, sizeof t, c->time, '.');
    printf("[%s] %s\n", t, c->caption.text);
    fflush(stdout);
}

/* SRT text may not hold a blank line (it ends the entry): line breaks become spaces. */
static bool write_srt_text(FILE *f, const char *text) {
    for (const char *p = text; *p; p++)
        if (fputc(*p == '\n' || *p == '\r' ? ' ' : *p, f) == EOF) return false;
    return fputc('\n', f) != EOF;
}

/* Entries numbered from 1, each shown from its frame's time to the next's;
 * written to a temporary file renamed over `path`, so a reader never sees
 * half a file. */
static qiao_status write_srt(const char *path, const qiao_video_captions *vc) {
    qc_atomic_file af;
    qiao_status st = qc_atomic_begin(&af, path);
    if (st != QIAO_OK) return st;
    /* the stream gets its own descriptor of the same file: closing it flushes, af's stays for the commit */
    int sfd = dup(af.fd);
    FILE *f = sfd >= 0 ? fdopen(sfd, "w") : NULL;
    if (!f) {
        if (sfd >= 0) close(sfd);
        qc_atomic_discard(&af);
        return qc_error(QIAO_ERR_IO, "%s: cannot write", path);
    }
    bool ok = true;
    for (size_t i = 0; i < vc->n && ok; i++) {
        char a[32], b[32];
        format_time(a, sizeof a, vc->items[i].time, ',');
        format_time(b, sizeof b, vc->items[i].end, ',');
        ok = fprintf(f, "%s%zu\n%s --> %s\n", i ? "\n" : "", i + 1, a, b) > 0 &&
             write_srt_text(f, vc->items[i].caption.text);
    }
    ok = fclose(f) == 0 && ok;
    st = ok ? qc_atomic_commit(&af) : qc_error(QIAO_ERR_IO, "%s: write failed", path);
    qc_atomic_discard(&af);
    return st;
}

static double round_ms(double seconds) {
    return (double)to_ms(seconds) / 1000.0;
}

static bool print_json(const char *video, const qiao_video_captions *vc) {
    cJSON *o = cJSON_CreateObject();
    bool ok = o != NULL;
    if (ok) {
        cJSON_AddStringToObject(o, "video", video);
        cJSON_AddStringToObject(o, "lang", vc->lang);
        cJSON_AddNumberToObject(o, "end", round_ms(vc->end));
        cJSON_AddNumberToObject(o, "frames_sampled", (double)vc->frames_sampled);
        cJSON_AddBoolToObject(o, "damaged", vc->damaged);
        cJSON *a = cJSON_AddArrayToObject(o, "captions");
        for (size_t i = 0; a && i < vc->n; i++) {
            const qiao_video_caption *c = &vc->items[i];
            cJSON *e = cJSON_CreateObject();
            if (!e) break;
            cJSON_AddNumberToObject(e, "time", round_ms(c->time));
            cJSON_AddNumberToObject(e, "end", round_ms(c->end));
            cJSON_AddStringToObject(e, "caption", c->caption.text);
            cJSON_AddStringToObject(e, "lang", c->caption.lang);
            cJSON_AddNumberToObject(e, "change", round(c->change * 1e4) / 1e4);
            cJSON_AddItemToArray(a, e);
        }
        char *s = cJSON_Print(o);
        ok = s && puts(s) >= 0;
        cJSON_free(s);
    }
    cJSON_Delete(o);
    return ok;
}

int cli_caption_video(const cli_caption_video_opts *o) {
    qiao_model *model = NULL;
    qiao_session *session = NULL;
    qiao_video_captions vc;
    memset(&vc, 0, sizeof vc);
    qiao_status st = qiao_model_load(o->model, &model);
    qiao_session_params sp = qiao_session_default_params();
    sp.n_threads = o->threads;
    if (st == QIAO_OK) st = qiao_session_new(model, &sp, &session);
    qiao_caption_params cp = qiao_caption_default_params();
    cp.lang = o->lang;
    cp.strategy = o->sample ? QIAO_CAPTION_SAMPLE : o->beam > 1 ? QIAO_CAPTION_BEAM : QIAO_CAPTION_GREEDY;
    cp.beam_size = o->beam;
    cp.length_alpha = o->alpha;
    cp.temperature = o->temperature;
    cp.top_p = o->top_p;
    cp.seed = o->seed;
    cp.max_len = o->max_len > 0 ? o->max_len : QIAO_CAPTION_MAX_LEN; /* cut to the decoder's positions */
    qiao_caption_video_params vp = qiao_caption_video_default_params();
    vp.fps = o->fps;
    vp.scenes = o->scenes;
    if (o->scene_threshold >= 0) vp.scene_threshold = o->scene_threshold;
    if (o->max_frames > 0) vp.max_frames = o->max_frames;
    if (!o->json && !o->srt) vp.on_caption = print_line;
    if (st == QIAO_OK) st = qiao_caption_video(session, o->video, &vp, &cp, &vc);
    if (st == QIAO_OK && vc.damaged) {
        char t[32];
        format_time(t, sizeof t, vc.end, '.');
        fprintf(stderr,
                "qiao caption: warning: %s is damaged or truncated: captions of the frames that decoded, up to %s\n",
                o->video, t);
    }
    if (st == QIAO_OK && o->srt) st = write_srt(o->srt, &vc);
    int rc = st == QIAO_OK ? 0 : cli_fail(st);
    if (rc == 0 && o->json && !print_json(o->video, &vc)) rc = 1;
    if (rc == 0 && o->srt && !o->json) printf("wrote %s: %zu captions\n", o->srt, vc.n);
    qiao_video_captions_free(&vc);
    qiao_session_free(session);
    qiao_model_free(model);
    return rc;
}
