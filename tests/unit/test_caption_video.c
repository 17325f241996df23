/* Captioning a video through the public API (qiao_caption_video) with a
 * tiny caption model written at test time (random weights: the captions are
 * gibberish, the checks are about times, scenes and statuses), on a video
 * the ffmpeg command line makes from two real photos: 2 s of each at 10 fps
 * with sensor noise, so one cut at 2 s and noise everywhere else.
 *
 * Each caption is the caption of its frame as qiao_image_decode_video_frames
 * gives it; times, ends and the callback agree; --scenes keeps the first
 * frame and the cut; the threshold's ends keep everything or only the
 * first; cancel stops; every bad input is a clear status, decided before
 * the file is opened where it can be. The ffmpeg CLI is a declared test
 * dependency: when it is missing the tests fail. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model_fixture.h"
#include "testfs.h"
#include "testutil.h"

#define PHOTO_A QIAO_TEST_DATA "/image/000000126107.jpg" /* colour, outdoors */
#define PHOTO_B QIAO_TEST_DATA "/image/000000205401.jpg" /* grey content */
#define MAX_LEN 8                                        /* pieces a caption: enough to compare, quick */

static char g_dir[64], g_cap[128], g_base[128], g_video[128], g_txt[128], g_empty[128];

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0) fail_msg("writing %s", path);
}

static int setup(void **state) {
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/qiao-caption-video-XXXXXX");
    if (!mkdtemp(g_dir)) return -1;
    snprintf(g_cap, sizeof g_cap, "%s/caption.safetensors", g_dir);
    snprintf(g_base, sizeof g_base, "%s/base.safetensors", g_dir);
    snprintf(g_video, sizeof g_video, "%s/two.mp4", g_dir);
    snprintf(g_txt, sizeof g_txt, "%s/not-a-video.mp4", g_dir);
    snprintf(g_empty, sizeof g_empty, "%s/empty.mp4", g_dir);
    qmod_model *m = qt_tiny_caption_model(9);
    qiao_status st = qmod_save(m, g_cap, QIAO_DTYPE_F32);
    qmod_free(m);
    if (st != QIAO_OK) return -1;
    qt_write_tiny_model(g_base, 3, true);
    write_file(g_txt, "this is text, not a video\n");
    write_file(g_empty, "");
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "ffmpeg -nostdin -hide_banner -loglevel error -y -loop 1 -framerate 10 -t 2 -i '%s' -loop 1 -framerate "
             "10 -t 2 -i '%s' -filter_complex '[0:v]scale=160:120,setsar=1[a];[1:v]scale=160:120,setsar=1[b];[a][b]"
             "concat=n=2:v=1,noise=alls=12:allf=t,format=yuv420p[v]' -map '[v]' -c:v libx264 -preset ultrafast "
             "-crf 30 '%s'",
             PHOTO_A, PHOTO_B, g_video);
    if (system(cmd) != 0) {
        fprintf(stderr, "ffmpeg failed (the ffmpeg CLI is a required test dependency): %s\n", cmd);
        return -1;
    }
    return 0;
}

static int teardown(void **state) {
    (void)state;
    qt_rm_rf(g_dir);
    return 0;
}

typedef struct fixture {
    qiao_model *model;
    qiao_session *s;
} fixture;

static void must(qiao_status st) {
    if (st != QIAO_OK) fail_msg("%s: %s", qiao_status_str(st), qiao_last_error());
}

static void open_model(fixture *f, const char *path) {
    must(qiao_model_load(path, &f->model));
    must(qiao_session_new(f->model, NULL, &f->s));
}

static void close_model(fixture *f) {
    qiao_session_free(f->s);
    qiao_model_free(f->model);
}

static void expect(qiao_status got, qiao_status want, const char *needle) {
    if (got != want || (needle && !strstr(qiao_last_error(), needle)))
        fail_msg("got %s \"%s\", want %s naming \"%s\"", qiao_status_str(got), qiao_last_error(), qiao_status_str(want),
                 needle ? needle : "");
}

static void assert_same_caption(const qiao_caption_result *a, const qiao_caption_result *b) {
    assert_string_equal(a->text, b->text);
    assert_int_equal(a->n_pieces, b->n_pieces);
    if (a->n_pieces) assert_memory_equal(a->pieces, b->pieces, a->n_pieces * sizeof *a->pieces);
    assert_true(a->logprob == b->logprob);
    assert_string_equal(a->lang, b->lang);
}

static void assert_near(double got, double want) {
    if (fabs(got - want) > 1e-3) fail_msg("got %.6f, want %.6f", got, want);
}

/* What the callback saw: a copy of each caption's times and text. */
typedef struct seen {
    size_t n;
    double time[16], end[16];
    char text[16][512];
    int cancel_at; /* > 0: cancel once this many captions were seen */
} seen;

static void on_caption(const qiao_video_caption *c, size_t index, void *user) {
    seen *s = user;
    assert_int_equal(index, s->n);
    assert_true(s->n < 16);
    s->time[s->n] = c->time;
    s->end[s->n] = c->end;
    snprintf(s->text[s->n], sizeof s->text[s->n], "%s", c->caption.text);
    s->n++;
}

static int cancel_after(void *user) {
    const seen *s = user;
    return s->cancel_at > 0 && s->n >= (size_t)s->cancel_at;
}

static void check_callback(const seen *s, const qiao_video_captions *vc) {
    assert_int_equal(s->n, vc->n);
    for (size_t i = 0; i < vc->n; i++) {
        assert_true(s->time[i] == vc->items[i].time);
        assert_true(s->end[i] == vc->items[i].end);
        assert_string_equal(s->text[i], vc->items[i].caption.text);
    }
}

/* Every sampled frame, then the scenes, then the threshold's two ends. */
static void test_video(void **state) {
    (void)state;
    fixture f;
    open_model(&f, g_cap);
    qiao_caption_params p = qiao_caption_default_params();
    p.max_len = MAX_LEN;
    qiao_caption_video_params vp = qiao_caption_video_default_params();
    assert_int_equal(vp.struct_size, sizeof vp);
    assert_true(vp.fps == 1.0 && vp.scenes == 0 && vp.scene_threshold == 0.15 && vp.max_frames == 3600);
    seen s;
    memset(&s, 0, sizeof s);
    vp.on_caption = on_caption, vp.on_caption_user_data = &s;
    qiao_video_captions all;
    must(qiao_caption_video(f.s, g_video, &vp, &p, &all));
    /* one a second: 0, 1, 2, 3, each until the next, the last until the end of the last frame */
    assert_int_equal(all.n, 4);
    assert_int_equal(all.frames_sampled, 4);
    assert_int_equal(all.damaged, 0);
    assert_string_equal(all.lang, "zh");
    assert_near(all.end, 4.0);
    for (size_t i = 0; i < 4; i++) {
        printf("%.3f-%.3f change %.4f: %s\n", all.items[i].time, all.items[i].end, all.items[i].change,
               all.items[i].caption.text);
        assert_near(all.items[i].time, (double)i);
        assert_near(all.items[i].end, (double)i + 1);
        if (i) assert_true(all.items[i].time == all.items[i - 1].end);
    }
    assert_true(all.items[0].change == 0.0);
    assert_true(all.items[2].change > 0.15);                               /* the cut */
    assert_true(all.items[1].change < 0.05 && all.items[3].change < 0.05); /* noise and x264 */
    check_callback(&s, &all);
    /* each caption is its frame's */
    qiao_video_params dp = qiao_video_default_params();
    qiao_image **fr = NULL;
    size_t n = 0;
    must(qiao_image_decode_video_frames(g_video, &dp, &fr, &n));
    assert_int_equal(n, 4);
    for (size_t i = 0; i < n; i++) {
        qiao_caption_result r;
        must(qiao_caption_image(f.s, fr[i], &p, &r));
        assert_same_caption(&r, &all.items[i].caption);
        qiao_caption_result_free(&r);
    }
    qiao_image_frames_free(fr, n);

    /* scenes at 2 fps: the first frame and the cut, 2 s each */
    memset(&s, 0, sizeof s);
    vp.fps = 2.0;
    vp.scenes = 1;
    qiao_video_captions sc;
    must(qiao_caption_video(f.s, g_video, &vp, &p, &sc));
    assert_int_equal(sc.n, 2);
    assert_int_equal(sc.frames_sampled, 8);
    assert_near(sc.items[0].time, 0.0);
    assert_near(sc.items[0].end, 2.0);
    assert_near(sc.items[1].time, 2.0);
    assert_near(sc.items[1].end, 4.0);
    assert_true(sc.items[1].change > 0.15);
    assert_same_caption(&sc.items[0].caption, &all.items[0].caption); /* the same frames */
    assert_same_caption(&sc.items[1].caption, &all.items[2].caption);
    check_callback(&s, &sc);
    qiao_video_captions_free(&sc);
    /* no change exceeds 1: only the first frame, until the end */
    memset(&s, 0, sizeof s);
    vp.scene_threshold = 1.0;
    must(qiao_caption_video(f.s, g_video, &vp, NULL, &sc));
    assert_int_equal(sc.n, 1);
    assert_near(sc.items[0].end, 4.0);
    check_callback(&s, &sc);
    qiao_video_captions_free(&sc);
    /* any change exceeds 0 where sensor noise is: every sampled frame */
    vp.scene_threshold = 0.0;
    vp.on_caption = NULL;
    must(qiao_caption_video(f.s, g_video, &vp, &p, &sc));
    assert_int_equal(sc.n, 8);
    qiao_video_captions_free(&sc);
    /* English, beam search: passed through to each caption */
    p.lang = "en";
    p.strategy = QIAO_CAPTION_BEAM;
    p.beam_size = 2;
    vp.scene_threshold = 0.15;
    must(qiao_caption_video(f.s, g_video, &vp, &p, &sc));
    assert_int_equal(sc.n, 2);
    assert_string_equal(sc.lang, "en");
    assert_string_equal(sc.items[1].caption.lang, "en");
    qiao_video_captions_free(&sc);
    qiao_video_captions_free(&sc); /* twice, and NULL: harmless */
    qiao_video_captions_free(NULL);
    qiao_video_captions_free(&all);
    close_model(&f);
}

/* Cancel between frames: the call stops with QIAO_ERR_CANCELLED and keeps nothing. */
static void test_cancel(void **state) {
    (void)state;
    fixture f;
    open_model(&f, g_cap);
    seen s;
    memset(&s, 0, sizeof s);
    s.cancel_at = 2;
    qiao_caption_params p = qiao_caption_default_params();
    p.max_len = MAX_LEN;
    p.cancel = cancel_after, p.cancel_user_data = &s;
    qiao_caption_video_params vp = qiao_caption_video_default_params();
    vp.on_caption = on_caption, vp.on_caption_user_data = &s;
    qiao_video_captions vc;
    expect(qiao_caption_video(f.s, g_video, &vp, &p, &vc), QIAO_ERR_CANCELLED, NULL);
    assert_int_equal(s.n, 2);
    assert_int_equal(vc.n, 0);
    assert_null(vc.items);
    close_model(&f);
}

static void test_bad_input(void **state) {
    (void)state;
    fixture f;
    open_model(&f, g_cap);
    qiao_video_captions vc;
    qiao_caption_video_params vp;
    /* NULL arguments */
    expect(qiao_caption_video(NULL, g_video, NULL, NULL, &vc), QIAO_ERR_INVALID_ARGUMENT, "required");
    expect(qiao_caption_video(f.s, NULL, NULL, NULL, &vc), QIAO_ERR_INVALID_ARGUMENT, "required");
    expect(qiao_caption_video(f.s, g_video, NULL, NULL, NULL), QIAO_ERR_INVALID_ARGUMENT, "required");
    /* fps: none, backwards, not a number, absurd */
    const double fps[] = {0.0, -1.0, NAN, INFINITY, QIAO_CAPTION_VIDEO_MAX_FPS * 1.001, 1e300};
    for (size_t i = 0; i < sizeof fps / sizeof *fps; i++) {
        vp = qiao_caption_video_default_params();
        vp.fps = fps[i];
        expect(qiao_caption_video(f.s, g_video, &vp, NULL, &vc), QIAO_ERR_INVALID_ARGUMENT, "fps");
        assert_int_equal(vc.n, 0);
    }
    const double thresholds[] = {-0.01, 1.5, NAN, -INFINITY};
    for (size_t i = 0; i < sizeof thresholds / sizeof *thresholds; i++) {
        vp = qiao_caption_video_default_params();
        vp.scenes = 1;
        vp.scene_threshold = thresholds[i];
        expect(qiao_caption_video(f.s, g_video, &vp, NULL, &vc), QIAO_ERR_INVALID_ARGUMENT, "scene_threshold");
    }
    vp = qiao_caption_video_default_params();
    vp.max_frames = 0;
    expect(qiao_caption_video(f.s, g_video, &vp, NULL, &vc), QIAO_ERR_INVALID_ARGUMENT, "max_frames");
    vp = qiao_caption_video_default_params();
    vp.struct_size = 3;
    expect(qiao_caption_video(f.s, g_video, &vp, NULL, &vc), QIAO_ERR_INVALID_ARGUMENT, "struct_size");
    qiao_caption_params p = qiao_caption_default_params();
    p.lang = "fr";
    expect(qiao_caption_video(f.s, g_video, NULL, &p, &vc), QIAO_ERR_INVALID_ARGUMENT, "lang");
    /* params from an older header: struct_size and fps only, the rest the defaults */
    vp = qiao_caption_video_default_params();
    vp.struct_size = offsetof(qiao_caption_video_params, fps) + sizeof vp.fps;
    vp.fps = 0.5;
    vp.scenes = 1; /* not read */
    p = qiao_caption_default_params();
    p.max_len = MAX_LEN;
    must(qiao_caption_video(f.s, g_video, &vp, &p, &vc));
    assert_int_equal(vc.n, 2); /* 0 and 2 s */
    qiao_video_captions_free(&vc);
    /* limits: 4 s at 1 fps is 4 frames; a 160 x 120 frame is 19200 pixels */
    vp = qiao_caption_video_default_params();
    vp.max_frames = 3;
    expect(qiao_caption_video(f.s, g_video, &vp, &p, &vc), QIAO_ERR_TOO_LARGE, "max_frames");
    vp = qiao_caption_video_default_params();
    vp.max_pixels = 19199;
    expect(qiao_caption_video(f.s, g_video, &vp, &p, &vc), QIAO_ERR_TOO_LARGE, "19200");
    /* what is not a video */
    expect(qiao_caption_video(f.s, g_txt, NULL, &p, &vc), QIAO_ERR_FORMAT, "not-a-video.mp4");
    expect(qiao_caption_video(f.s, g_empty, NULL, &p, &vc), QIAO_ERR_FORMAT, "empty");
    expect(qiao_caption_video(f.s, "/nonexistent/x.mp4", NULL, &p, &vc), QIAO_ERR_IO, "x.mp4");
    expect(qiao_caption_video(f.s, g_dir, NULL, &p, &vc), QIAO_ERR_IO, NULL); /* a folder */
    assert_int_equal(vc.n, 0);
    assert_null(vc.items);
    close_model(&f);
    /* a model without a decoder, said before the file is opened */
    open_model(&f, g_base);
    expect(qiao_caption_video(f.s, g_video, NULL, NULL, &vc), QIAO_ERR_UNSUPPORTED, "writes no captions");
    expect(qiao_caption_video(f.s, "/nonexistent/x.mp4", NULL, NULL, &vc), QIAO_ERR_UNSUPPORTED, "no decoder");
    close_model(&f);
}

#define CASE(name)                                                                                                     \
    { #name, test_##name, NULL, NULL, NULL }
static const struct CMUnitTest tests[] = {
    CASE(video),
    CASE(cancel),
    CASE(bad_input),
};

int main(int argc, char **argv) {
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, setup, teardown);
}
