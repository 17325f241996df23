/* apps/qiao/cmd_caption.c - `qiao caption`: describe a picture in Chinese or
 * English with a caption model (models/captioning), greedy, beam or
 * sampled; the text streams to stdout as it is written, or comes as JSON.
 * With --video, the frames of a video, each with its time (caption_video.c). */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "backend/backend.h"
#include "cli.h"
#include "models/captioning/captioning.h"



static void usage(FILE *f) {
    fprintf(f, "usage: qiao caption --model M.safetensors --image FILE [--lang zh|en] [--beam K] [--alpha A]\n"
               "                    [--sample [--temperature T] [--top-p P] [--seed S]] [--max-len N]\n"
               "                    [--threads N] [--json]\n"
               "       qiao caption --model M.safetensors --video FILE [--fps X] [--scenes [--scene-threshold T]]\n"
               "                    [--max-frames N] [--srt OUT.srt] [--json] [the options above]\n"
               "  Describes the picture in FILE in Chinese (zh, the default) or English. Greedy by\n"
               "  default; --beam K searches K beams with the GNMT length penalty (alpha, default 0.6);\n"
               "  --sample draws each piece (temperature, nucleus top-p, a seed for repeatable draws).\n"
               "  The caption streams to stdout as it is written; --json prints it once with its\n"
               "  pieces and log-probability instead.\n"
               "  --video captions frames sampled at --fps (default 1 a second, at most 1000); --scenes\n"
               "  keeps only the first frame and those that differ from the last kept one by more than\n"
               "  --scene-threshold (0..1, default 0.15). Prints \"[HH:MM:SS.mmm] caption\" lines; --srt\n"
               "  writes subtitles (each caption until the next), --json an array of {time, end,\n"
               "  caption, lang}. At most --max-frames sampled frames (default 3600).\n");
}

static void on_token(const qmod_gen_token *t, void *user) {
    (void)user;
    if (t->text) {
        fputs(t->text + t->new_from, stdout);
        fflush(stdout);
    }
}

int cmd_caption(int argc, char **argv) {
    const char *model = NULL, *image = NULL, *video = NULL, *srt = NULL, *lang_s = "zh";
    bool json = false, sample = false, scenes = false, video_opt = false;
    int64_t beam = 1, max_len = 0, threads = 0, seed = 0, max_frames = 0;
    double alpha = 0.6, temperature = 1.0, top_p = 1.0, fps = 1.0, scene_threshold = -1.0;
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
        if (!strcmp(a, "--sample")) {
            sample = true;
            continue;
        }
        if (!strcmp(a, "--scenes")) {
            scenes = video_opt = true;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "qiao caption: %s needs a value (or is an unknown option)\n", a);
            usage(stderr);
            return 2;
        }
        const char *v = argv[++i];
        bool ok = true;
        if (!strcmp(a, "--model")) model = v;
        else if (!strcmp(a, "--image")) image = v;
        else if (!strcmp(a, "--video")) video = v;
        else if (!strcmp(a, "--srt")) srt = v, video_opt = true;
        else if (!strcmp(a, "--fps")) {
            video_opt = true;
            if (!cli_num(v, -INFINITY, INFINITY, &fps) || !(fps > 0 && fps <= QIAO_CAPTION_VIDEO_MAX_FPS)) {
                fprintf(stderr, "qiao caption: --fps needs a number of frames a second in (0, %g], got '%s'\n",
                        QIAO_CAPTION_VIDEO_MAX_FPS, v);
                return 2;
            }
        } else if (!strcmp(a, "--scene-threshold"))
            ok = cli_num_arg("caption", a, v, 0, 1, &scene_threshold), video_opt = true;
        else if (!strcmp(a, "--max-frames"))
            ok = cli_int_arg("caption", a, v, 1, INT64_MAX, &max_frames), video_opt = true;
        else if (!strcmp(a, "--lang")) lang_s = v;
        else if (!strcmp(a, "--beam")) ok = cli_int_arg("caption", a, v, 1, 256, &beam);
        else if (!strcmp(a, "--max-len")) ok = cli_int_arg("caption", a, v, 1, 4096, &max_len);
        else if (!strcmp(a, "--seed")) ok = cli_int_arg("caption", a, v, 0, INT64_MAX, &seed);
        else if (!strcmp(a, "--threads")) ok = cli_int_arg("caption", a, v, 1, 1024, &threads);
        else if (!strcmp(a, "--alpha")) ok = cli_num_arg("caption", a, v, 0, 10, &alpha);
        else if (!strcmp(a, "--temperature")) ok = cli_num_arg("caption", a, v, 0, 100, &temperature);
        else if (!strcmp(a, "--top-p")) ok = cli_num_arg("caption", a, v, 1e-9, 1, &top_p);
        else {
            fprintf(stderr, "qiao caption: unknown option %s\n", a);
            usage(stderr);
            return 2;
        }
        if (!ok) return 2;
    }
    if (!model || !image == !video) {
        fprintf(stderr, "qiao caption: --model and one of --image and --video are required\n");
        usage(stderr);
        return 2;
    }
    if (video_opt && !video) {
        fprintf(stderr, "qiao caption: --fps, --scenes, --scene-threshold, --max-frames and --srt need --video\n");
        return 2;
    }
    if (scene_threshold >= 0 && !scenes) {
        fprintf(stderr, "qiao caption: --scene-threshold needs --scenes\n");
        return 2;
    }
    const int lang = !strcmp(lang_s, "zh") ? 0 : !strcmp(lang_s, "en") ? 1 : -1;
    if (lang < 0) {
        fprintf(stderr, "qiao caption: --lang is zh or en\n");
        return 2;
    }
    if (sample && beam > 1) {
        fprintf(stderr, "qiao caption: --sample and --beam exclude each other\n");
        return 2;
    }
    if (video) {
        cli_caption_video_opts o = {.model = model, .video = video, .lang = lang_s, .srt = srt, .json = json,
                                    .sample = sample, .scenes = scenes, .beam = (int)beam, .max_len = (int)max_len,
                                    .threads = (int)threads, .alpha = alpha, .temperature = temperature,
                                    .top_p = top_p, .fps = fps, .scene_threshold = scene_threshold,
                                    .max_frames = max_frames, .seed = (uint64_t)seed};
        return cli_caption_video(&o);
    }
    qmod_model *m = NULL;
    qiao_image *img = NULL;
    qiao_status st = qmod_load(model, &m);
    if (st == QIAO_OK) st = qiao_image_decode_file(image, NULL, &img);
    qmod_gen_params gp = qmod_gen_default_params();
    gp.strategy = sample ? QMOD_GEN_SAMPLE : beam > 1 ? QMOD_GEN_BEAM : QMOD_GEN_GREEDY;
    gp.beam_size = (int)beam;
    gp.length_alpha = alpha;
    gp.temperature = temperature;
    gp.top_p = top_p;
    gp.seed = (uint64_t)seed;
    if (st == QIAO_OK) gp.max_len = (int)(max_len > 0 ? max_len : (m->cfg.has_decoder ? m->cfg.decoder.max_len : 1));
    if (!json) gp.on_token = on_token;
    qmod_gen_result r;
    memset(&r, 0, sizeof r);
    qb_exec ex;
    qb_exec_cpu(&ex, (int)threads);
    if (st == QIAO_OK) st = qmod_caption(&ex, m, img, lang, &gp, &r);
    if (st == QIAO_OK) {
        if (json) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "image", image);
            cJSON_AddStringToObject(o, "lang", lang_s);
            cJSON_AddStringToObject(o, "caption", r.text ? r.text : "");
            cJSON *ids = cJSON_AddArrayToObject(o, "pieces");
            for (size_t i = 0; i < r.n; i++) cJSON_AddItemToArray(ids, cJSON_CreateNumber(r.tokens[i]));
            cJSON_AddBoolToObject(o, "ended", r.eos);
            cJSON_AddNumberToObject(o, "logprob", r.logprob);
            char *s = cJSON_Print(o);
            if (s) puts(s);
            cJSON_free(s);
            cJSON_Delete(o);
        } else {
            fputc('\n', stdout);
        }
    }
    qmod_gen_result_free(&r);
    qiao_image_free(img);
    qmod_free(m);
    return st == QIAO_OK ? 0 : cli_fail(st);
}
