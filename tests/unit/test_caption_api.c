/* The public captioning API (sdk/api/caption_api.c) on a tiny caption model
 * written at test time (random weights: the captions are gibberish, the
 * checks are about the API): captions in Chinese and English from a
 * decoded picture, a file, encoded bytes and packed RGB agree; the pieces
 * read back as the text; greedy equals beam 1 and sampling at temperature
 * 0; the same seed gives the same sample; the streamed text grows to the
 * result's; cancel stops with QIAO_ERR_CANCELLED; every bad input is a
 * clear status; four threads with a session each write the same captions.
 *
 * `test_caption_api --write-fixture DIR` writes what the qiao-caption CLI
 * test runs on: DIR/caption.safetensors, DIR/base.safetensors (no decoder)
 * and DIR/pictures with three generated pictures and a text file. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model_fixture.h"
#include "shapes/shapes.h"
#include "testfs.h"
#include "testutil.h"

static char g_dir[64], g_cap[128], g_end[128], g_base[128], g_vqa[128], g_png[128], g_txt[128];

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0) fail_msg("writing %s", path);
}

/* Scene `index` of the shapes world drawn at 64 x 64. */
static void write_picture(int64_t index, const char *path) {
    shapes_scene sc;
    if (shapes_scene_make(7, SHAPES_TRAIN, index, &sc) != QIAO_OK || shapes_render_png(&sc, 64, path) != QIAO_OK)
        fail_msg("picture %s: %s", path, qiao_last_error());
}

/* A random decoder writes one piece over and over and never ends. With
 * `end_at` > 0 it is made to end: from position end_at on, the position
 * embedding points (strongly) along the end piece's embedding, which is the
 * output row too (tied), so a caption ends after about end_at pieces. */
static void write_caption_model(const char *path, uint64_t seed, int end_at) {
    qmod_model *m = qt_tiny_caption_model(seed);
    if (end_at > 0) {
        const qf_decoder_config *dc = &m->cfg.decoder;
        const int64_t C = dc->width;
        float *e = m->p.decoder.tok + (int64_t)qmod_dec_eos(&m->cfg) * C;
        double norm = 0.0;
        for (int64_t c = 0; c < C; c++) norm += (double)e[c] * e[c];
        for (int64_t c = 0; c < C; c++) e[c] = (float)(e[c] / sqrt(norm)); /* unit length */
        for (int64_t t = end_at; t < dc->max_len; t++)
            for (int64_t c = 0; c < C; c++) m->p.decoder.pos[t * C + c] += 8.0f * e[c];
    }
    qiao_status st = qmod_save(m, path, QIAO_DTYPE_F32);
    qmod_free(m);
    if (st != QIAO_OK) fail_msg("writing %s: %s", path, qiao_last_error());
}

static int setup(void **state) {
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/qiao-caption-api-XXXXXX");
    if (!mkdtemp(g_dir)) return -1;
    snprintf(g_cap, sizeof g_cap, "%s/caption.safetensors", g_dir);
    snprintf(g_base, sizeof g_base, "%s/base.safetensors", g_dir);
    snprintf(g_end, sizeof g_end, "%s/caption-ends.safetensors", g_dir);
    snprintf(g_vqa, sizeof g_vqa, "%s/vqa.safetensors", g_dir);
    snprintf(g_png, sizeof g_png, "%s/scene.png", g_dir);
    snprintf(g_txt, sizeof g_txt, "%s/not-a-picture.png", g_dir);
    write_caption_model(g_cap, 9, 0);
    write_caption_model(g_end, 9, 5);
    qt_write_tiny_model(g_base, 3, true);
    qmod_model *v = qt_tiny_vqa_model(3);
    if (qmod_save(v, g_vqa, QIAO_DTYPE_F32) != QIAO_OK) return -1;
    qmod_free(v);
    write_picture(0, g_png);
    write_text(g_txt, "this is text, not a PNG\n");
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

static void open_model(fixture *f, const char *path) {
    assert_int_equal(qiao_model_load(path, &f->model), QIAO_OK);
    assert_int_equal(qiao_session_new(f->model, NULL, &f->s), QIAO_OK);
}

static void close_model(fixture *f) {
    qiao_session_free(f->s);
    qiao_model_free(f->model);
}

static void must(qiao_status st) {
    if (st != QIAO_OK) fail_msg("%s: %s", qiao_status_str(st), qiao_last_error());
}

static void expect(qiao_status got, qiao_status want, const char *needle) {
    if (got != want || (needle && !strstr(qiao_last_error(), needle)))
        fail_msg("got %s \"%s\", want %s naming \"%s\"", qiao_status_str(got), qiao_last_error(), qiao_status_str(want),
                 needle ? needle : "");
}

/* What every caption is: text and pieces that agree, a log-probability,
 * and an end or max_len pieces. */
static void check_caption(const qiao_caption_result *r, const char *lang, int max_len) {
    assert_non_null(r->text);
    assert_int_equal(r->text_len, strlen(r->text));
    assert_string_equal(r->lang, lang);
    assert_true(r->n_pieces == 0 || r->pieces);
    assert_true(isfinite(r->logprob) && r->logprob <= 0.0);
    if (r->ended)
        assert_true(r->n_pieces < (size_t)max_len);
    else
        assert_int_equal(r->n_pieces, max_len);
    /* the pieces read back as the text */
    qiao_tokenizer *tok = NULL;
    must(qiao_tokenizer_load(QT_TOKENIZER, &tok));
    char *text = NULL;
    must(qiao_detokenize(tok, r->pieces, r->n_pieces, NULL, &text, NULL));
    assert_string_equal(text, r->text);
    qiao_text_free(text);
    qiao_tokenizer_free(tok);
}

static void assert_same_caption(const qiao_caption_result *a, const qiao_caption_result *b) {
    assert_string_equal(a->text, b->text);
    assert_int_equal(a->n_pieces, b->n_pieces);
    if (a->n_pieces) assert_memory_equal(a->pieces, b->pieces, a->n_pieces * sizeof *a->pieces);
    assert_int_equal(a->ended, b->ended);
    assert_string_equal(a->lang, b->lang);
}

static void caption_on(const char *model) {
    fixture f;
    open_model(&f, model);
    assert_int_equal(qiao_model_can_caption(f.model), 1);
    assert_int_equal(qiao_model_can_caption(NULL), 0);
    qiao_image *img = NULL;
    must(qiao_image_decode_file(g_png, NULL, &img));
    qiao_caption_params p = qiao_caption_default_params();
    assert_int_equal(p.struct_size, sizeof p);
    assert_string_equal(p.lang, "zh");
    qiao_caption_result zh, en, r;
    must(qiao_caption_image(f.s, img, NULL, &zh)); /* the defaults: Chinese, greedy, 64 */
    check_caption(&zh, "zh", 64);
    p.lang = "en";
    must(qiao_caption_image(f.s, img, &p, &en));
    check_caption(&en, "en", 64);
    printf("zh: \"%s\" (%zu pieces, logprob %.2f, %s)\nen: \"%s\" (%zu pieces, logprob %.2f, %s)\n", zh.text,
           zh.n_pieces, zh.logprob, zh.ended ? "ended" : "cut", en.text, en.n_pieces, en.logprob,
           en.ended ? "ended" : "cut");
    /* the same picture from its file, its bytes and its pixels */
    must(qiao_caption_image_file(f.s, g_png, &p, &r));
    assert_same_caption(&r, &en);
    assert_true(r.logprob == en.logprob);
    qiao_caption_result_free(&r);
    uint8_t *bytes = NULL;
    size_t n = 0;
    {
        FILE *fp = fopen(g_png, "rb");
        assert_non_null(fp);
        bytes = malloc(1 << 20);
        assert_non_null(bytes);
        n = fread(bytes, 1, 1 << 20, fp);
        fclose(fp);
    }
    must(qiao_caption_image_memory(f.s, bytes, n, &p, &r));
    assert_same_caption(&r, &en);
    qiao_caption_result_free(&r);
    free(bytes);
    must(qiao_caption_image_rgb(f.s, qiao_image_pixels(img), qiao_image_width(img), qiao_image_height(img),
                                qiao_image_stride(img), &p, &r));
    assert_same_caption(&r, &en);
    qiao_caption_result_free(&r);
    /* max_len: 1 is one piece or the end at once; past the decoder's 96
     * positions it is cut to them */
    p.max_len = 1;
    must(qiao_caption_image(f.s, img, &p, &r));
    check_caption(&r, "en", 1);
    qiao_caption_result_free(&r);
    p.max_len = QIAO_CAPTION_MAX_LEN;
    must(qiao_caption_image(f.s, img, &p, &r));
    check_caption(&r, "en", 96);
    if (en.ended) assert_same_caption(&r, &en);
    qiao_caption_result_free(&r);
    qiao_caption_result_free(&zh);
    qiao_caption_result_free(&en);
    qiao_caption_result_free(&en); /* twice, and NULL: harmless */
    qiao_caption_result_free(NULL);
    qiao_image_free(img);
    close_model(&f);
}

/* On the model that never ends and on the one that does. */
static void test_caption(void **state) {
    (void)state;
    caption_on(g_cap);
    caption_on(g_end);
}

static void strategies_on(const char *model) {
    fixture f;
    open_model(&f, model);
    qiao_image *img = NULL;
    must(qiao_image_decode_file(g_png, NULL, &img));
    for (int l = 0; l < 2; l++) {
        const char *lang = l ? "en" : "zh";
        qiao_caption_params p = qiao_caption_default_params();
        p.lang = lang;
        p.max_len = 24;
        qiao_caption_result greedy, beam1, beam4, t0, s1, s1b;
        must(qiao_caption_image(f.s, img, &p, &greedy));
        check_caption(&greedy, lang, 24);
        /* beam 1 is greedy (without a length penalty it ranks alike) */
        p.strategy = QIAO_CAPTION_BEAM;
        p.beam_size = 1;
        p.length_alpha = 0.0;
        must(qiao_caption_image(f.s, img, &p, &beam1));
        assert_same_caption(&beam1, &greedy);
        assert_true(fabs(beam1.logprob - greedy.logprob) < 1e-6);
        /* four beams find a caption at least as likely under their score */
        p.beam_size = 4;
        must(qiao_caption_image(f.s, img, &p, &beam4));
        check_caption(&beam4, lang, 24);
        if (beam4.ended == beam1.ended) assert_true(beam4.score >= beam1.score - 1e-6);
        /* sampling at temperature 0 is greedy; a seed repeats its draw */
        p = qiao_caption_default_params();
        p.lang = lang;
        p.max_len = 24;
        p.strategy = QIAO_CAPTION_SAMPLE;
        p.temperature = 0.0;
        must(qiao_caption_image(f.s, img, &p, &t0));
        assert_same_caption(&t0, &greedy);
        p.temperature = 1.0;
        p.top_p = 0.9;
        p.seed = 42;
        must(qiao_caption_image(f.s, img, &p, &s1));
        must(qiao_caption_image(f.s, img, &p, &s1b));
        check_caption(&s1, lang, 24);
        assert_same_caption(&s1, &s1b);
        assert_true(s1.logprob == s1b.logprob);
        /* other seeds draw other captions (a random model over thousands of pieces) */
        int differ = 0;
        for (uint64_t seed = 1; seed <= 4; seed++) {
            qiao_caption_result o;
            p.seed = seed;
            must(qiao_caption_image(f.s, img, &p, &o));
            differ += strcmp(o.text, s1.text) != 0;
            qiao_caption_result_free(&o);
        }
        assert_true(differ > 0);
        qiao_caption_result_free(&greedy), qiao_caption_result_free(&beam1), qiao_caption_result_free(&beam4);
        qiao_caption_result_free(&t0), qiao_caption_result_free(&s1), qiao_caption_result_free(&s1b);
    }
    qiao_image_free(img);
    close_model(&f);
}

/* On the model that never ends and on the one that does. */
static void test_strategies(void **state) {
    (void)state;
    strategies_on(g_cap);
    strategies_on(g_end);
}

/* What the token callback saw. */
typedef struct stream {
    char text[8192];
    size_t len;
    size_t calls;
    int32_t pieces[128];
    int bad; /* a call that broke the contract */
} stream;

static void on_token(const qiao_caption_token *t, void *user) {
    stream *s = user;
    if (t->index != s->calls || t->new_from != s->len || t->text_len < s->len || strlen(t->text) != t->text_len ||
        memcmp(t->text, s->text, s->len) != 0 || t->text_len >= sizeof s->text || s->calls >= 128) {
        s->bad++;
        return;
    }
    memcpy(s->text, t->text, t->text_len + 1);
    s->len = t->text_len;
    s->pieces[s->calls++] = t->piece;
}

static void check_stream(const stream *s, const qiao_caption_result *r) {
    assert_int_equal(s->bad, 0);
    assert_int_equal(s->calls, r->n_pieces);
    if (r->n_pieces) assert_memory_equal(s->pieces, r->pieces, r->n_pieces * sizeof *r->pieces);
    /* the text streamed is the caption (the result closes a cut character with U+FFFD) */
    if (strcmp(s->text, r->text) != 0) {
        assert_int_equal(r->text_len, s->len + 3);
        assert_memory_equal(r->text, s->text, s->len);
        assert_string_equal(r->text + s->len, "\xEF\xBF\xBD");
    }
}

typedef struct canceller {
    stream *s;
    size_t after; /* stop once this many pieces have streamed */
    int polls;
} canceller;

static int cancel_after(void *user) {
    canceller *c = user;
    c->polls++;
    return c->s->calls >= c->after;
}

static void stream_cancel_on(const char *model) {
    fixture f;
    open_model(&f, model);
    qiao_image *img = NULL;
    must(qiao_image_decode_file(g_png, NULL, &img));
    for (int k = 0; k < 4; k++) {
        qiao_caption_params p = qiao_caption_default_params();
        p.lang = k & 1 ? "en" : "zh";
        p.max_len = 40;
        if (k >= 2) p.strategy = QIAO_CAPTION_BEAM, p.beam_size = 3;
        qiao_caption_result plain, r;
        must(qiao_caption_image(f.s, img, &p, &plain));
        stream *s = calloc(1, sizeof *s);
        assert_non_null(s);
        p.on_token = on_token;
        p.on_token_user_data = s;
        must(qiao_caption_image(f.s, img, &p, &r));
        check_stream(s, &r);
        assert_same_caption(&r, &plain); /* streaming changes nothing */
        qiao_caption_result_free(&r);
        /* cancel before the first piece, and after two */
        for (size_t after = 0; after <= 2; after += 2) {
            if (after >= plain.n_pieces) continue; /* the caption is done before the cancel */
            memset(s, 0, sizeof *s);
            canceller c = {s, after, 0};
            p.cancel = cancel_after;
            p.cancel_user_data = &c;
            expect(qiao_caption_image(f.s, img, &p, &r), QIAO_ERR_CANCELLED, "cancelled");
            assert_null(r.text);
            assert_null(r.pieces);
            assert_true(c.polls >= 1);
            assert_true(s->calls >= after && s->calls <= plain.n_pieces);
            qiao_caption_result_free(&r);
        }
        p.cancel = NULL;
        free(s);
        qiao_caption_result_free(&plain);
    }
    /* after a cancel the session writes the same caption again */
    qiao_caption_result a, b;
    must(qiao_caption_image(f.s, img, NULL, &a));
    must(qiao_caption_image(f.s, img, NULL, &b));
    assert_same_caption(&a, &b);
    qiao_caption_result_free(&a), qiao_caption_result_free(&b);
    qiao_image_free(img);
    close_model(&f);
}

/* On the model that never ends and on the one that does. */
static void test_stream_cancel(void **state) {
    (void)state;
    stream_cancel_on(g_cap);
    stream_cancel_on(g_end);
}

static void test_bad_input(void **state) {
    (void)state;
    fixture f;
    open_model(&f, g_cap);
    qiao_image *img = NULL;
    must(qiao_image_decode_file(g_png, NULL, &img));
    qiao_caption_result r;
    const uint8_t px[12] = {0};
    /* NULL arguments, each function */
    expect(qiao_caption_image(NULL, img, NULL, &r), QIAO_ERR_INVALID_ARGUMENT, "required");
    expect(qiao_caption_image(f.s, NULL, NULL, &r), QIAO_ERR_INVALID_ARGUMENT, "required");
    expect(qiao_caption_image(f.s, img, NULL, NULL), QIAO_ERR_INVALID_ARGUMENT, "required");
    expect(qiao_caption_image_file(f.s, NULL, NULL, &r), QIAO_ERR_INVALID_ARGUMENT, "required");
    expect(qiao_caption_image_file(NULL, g_png, NULL, &r), QIAO_ERR_INVALID_ARGUMENT, "required");
    expect(qiao_caption_image_memory(f.s, NULL, 10, NULL, &r), QIAO_ERR_INVALID_ARGUMENT, "required");
    expect(qiao_caption_image_rgb(f.s, NULL, 2, 2, 6, NULL, &r), QIAO_ERR_INVALID_ARGUMENT, "required");
    expect(qiao_caption_image_rgb(f.s, px, 2, 2, 6, NULL, NULL), QIAO_ERR_INVALID_ARGUMENT, "required");
    /* what is not a picture */
    expect(qiao_caption_image_file(f.s, g_txt, NULL, &r), QIAO_ERR_FORMAT, "not-a-picture");
    assert_null(r.text);
    expect(qiao_caption_image_file(f.s, "/nonexistent/x.png", NULL, &r), QIAO_ERR_IO, NULL);
    expect(qiao_caption_image_file(f.s, g_dir, NULL, &r), QIAO_ERR_IO, NULL); /* a folder */
    expect(qiao_caption_image_memory(f.s, "no picture here", 15, NULL, &r), QIAO_ERR_FORMAT, NULL);
    expect(qiao_caption_image_memory(f.s, px, 0, NULL, &r), QIAO_ERR_FORMAT, "empty");
    expect(qiao_caption_image_rgb(f.s, px, 0, 2, 6, NULL, &r), QIAO_ERR_INVALID_ARGUMENT, NULL);
    expect(qiao_caption_image_rgb(f.s, px, 2, 2, 5, NULL, &r), QIAO_ERR_INVALID_ARGUMENT, NULL);
    /* params */
    qiao_caption_params p = qiao_caption_default_params();
    p.max_len = 0;
    expect(qiao_caption_image(f.s, img, &p, &r), QIAO_ERR_INVALID_ARGUMENT, "max_len");
    p.max_len = -5;
    expect(qiao_caption_image(f.s, img, &p, &r), QIAO_ERR_INVALID_ARGUMENT, "max_len");
    p.max_len = 1000000;
    expect(qiao_caption_image(f.s, img, &p, &r), QIAO_ERR_TOO_LARGE, "max_len");
    p = qiao_caption_default_params();
    p.strategy = QIAO_CAPTION_BEAM;
    p.beam_size = 0;
    expect(qiao_caption_image(f.s, img, &p, &r), QIAO_ERR_INVALID_ARGUMENT, "beam_size");
    p.beam_size = QIAO_CAPTION_MAX_BEAM + 1;
    expect(qiao_caption_image(f.s, img, &p, &r), QIAO_ERR_TOO_LARGE, "beam_size");
    p.strategy = QIAO_CAPTION_GREEDY; /* checked whatever the strategy */
    p.beam_size = 0;
    expect(qiao_caption_image(f.s, img, &p, &r), QIAO_ERR_INVALID_ARGUMENT, "beam_size");
    const char *langs[] = {"fr", "ZH", "", "zh-CN", NULL};
    for (size_t i = 0; i < sizeof langs / sizeof *langs; i++) {
        p = qiao_caption_default_params();
        p.lang = langs[i];
        expect(qiao_caption_image(f.s, img, &p, &r), QIAO_ERR_INVALID_ARGUMENT, "lang");
    }
    p = qiao_caption_default_params();
    p.strategy = 3;
    expect(qiao_caption_image(f.s, img, &p, &r), QIAO_ERR_INVALID_ARGUMENT, "strategy");
    p.strategy = -1;
    expect(qiao_caption_image(f.s, img, &p, &r), QIAO_ERR_INVALID_ARGUMENT, "strategy");
    p = qiao_caption_default_params();
    p.length_alpha = -0.5;
    expect(qiao_caption_image(f.s, img, &p, &r), QIAO_ERR_INVALID_ARGUMENT, "length_alpha");
    p.length_alpha = NAN;
    expect(qiao_caption_image(f.s, img, &p, &r), QIAO_ERR_INVALID_ARGUMENT, "length_alpha");
    p = qiao_caption_default_params();
    p.strategy = QIAO_CAPTION_SAMPLE;
    p.temperature = -1.0;
    expect(qiao_caption_image(f.s, img, &p, &r), QIAO_ERR_INVALID_ARGUMENT, "temperature");
    p.temperature = INFINITY;
    expect(qiao_caption_image(f.s, img, &p, &r), QIAO_ERR_INVALID_ARGUMENT, "temperature");
    p.temperature = 1.0;
    const double top_ps[] = {0.0, -0.1, 1.5, NAN};
    for (size_t i = 0; i < 4; i++) {
        p.top_p = top_ps[i];
        expect(qiao_caption_image(f.s, img, &p, &r), QIAO_ERR_INVALID_ARGUMENT, "top_p");
    }
    p = qiao_caption_default_params();
    p.struct_size = 3;
    expect(qiao_caption_image(f.s, img, &p, &r), QIAO_ERR_INVALID_ARGUMENT, NULL);
    p.struct_size = (size_t)1 << 20;
    expect(qiao_caption_image(f.s, img, &p, &r), QIAO_ERR_INVALID_ARGUMENT, NULL);
    /* params from an older header: only struct_size and lang; the rest the defaults */
    p = qiao_caption_default_params();
    p.struct_size = offsetof(qiao_caption_params, lang) + sizeof(const char *);
    p.lang = "en";
    p.max_len = 0; /* not read */
    must(qiao_caption_image(f.s, img, &p, &r));
    assert_string_equal(r.lang, "en");
    qiao_caption_result_free(&r);
    /* a 2 x 2 picture is a picture */
    must(qiao_caption_image_rgb(f.s, px, 2, 2, 6, NULL, &r));
    check_caption(&r, "zh", 64);
    qiao_caption_result_free(&r);
    qiao_image_free(img);
    close_model(&f);
    /* models without a decoder: an embedding model, a VQA model */
    const char *plain[2] = {g_base, g_vqa};
    for (int k = 0; k < 2; k++) {
        open_model(&f, plain[k]);
        assert_int_equal(qiao_model_can_caption(f.model), 0);
        expect(qiao_caption_image_file(f.s, g_png, NULL, &r), QIAO_ERR_UNSUPPORTED, "no decoder");
        expect(qiao_caption_image_rgb(f.s, px, 2, 2, 6, NULL, &r), QIAO_ERR_UNSUPPORTED, "writes no captions");
        assert_null(r.text);
        close_model(&f);
    }
}

/* Four threads, a session each on one model, caption the same picture in
 * both languages, greedy and with three beams: every caption equals the
 * single-thread one. */
typedef struct job {
    const qiao_model *model;
    const qiao_image *img;
    qiao_caption_result out[4];
    qiao_status st;
} job;

static void *caption_all(void *arg) {
    job *j = arg;
    qiao_session *s = NULL;
    qiao_session_params sp = qiao_session_default_params();
    sp.n_threads = 1;
    j->st = qiao_session_new(j->model, &sp, &s);
    for (int k = 0; k < 4 && j->st == QIAO_OK; k++) {
        qiao_caption_params p = qiao_caption_default_params();
        p.lang = k & 1 ? "en" : "zh";
        p.max_len = 32;
        if (k >= 2) p.strategy = QIAO_CAPTION_BEAM, p.beam_size = 3;
        j->st = qiao_caption_image(s, j->img, &p, &j->out[k]);
    }
    qiao_session_free(s);
    return NULL;
}

static void test_threads(void **state) {
    (void)state;
    qiao_model *model = NULL;
    must(qiao_model_load(g_cap, &model));
    qiao_image *img = NULL;
    must(qiao_image_decode_file(g_png, NULL, &img));
    job ref;
    memset(&ref, 0, sizeof ref);
    ref.model = model, ref.img = img;
    caption_all(&ref);
    must(ref.st);
    job jobs[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        memset(&jobs[i], 0, sizeof jobs[i]);
        jobs[i].model = model, jobs[i].img = img;
        assert_int_equal(pthread_create(&th[i], NULL, caption_all, &jobs[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        must(jobs[i].st);
        for (int k = 0; k < 4; k++) {
            assert_same_caption(&jobs[i].out[k], &ref.out[k]);
            assert_true(jobs[i].out[k].logprob == ref.out[k].logprob);
            qiao_caption_result_free(&jobs[i].out[k]);
        }
    }
    for (int k = 0; k < 4; k++) qiao_caption_result_free(&ref.out[k]);
    qiao_image_free(img);
    qiao_model_free(model);
}

/* --write-fixture DIR */
static int write_fixture(const char *dir) {
    char path[4096];
    if (mkdir(dir, 0755) != 0 && access(dir, W_OK) != 0) return 1;
    snprintf(path, sizeof path, "%s/caption.safetensors", dir);
    write_caption_model(path, 9, 6);
    snprintf(path, sizeof path, "%s/base.safetensors", dir);
    qt_write_tiny_model(path, 3, true);
    snprintf(path, sizeof path, "%s/pictures", dir);
    if (mkdir(path, 0755) != 0 && access(path, W_OK) != 0) return 1;
    const char *names[3] = {"a red scene.png", "b-scene.png", "c&scene.png"};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/pictures/%s", dir, names[i]);
        write_picture(i, path);
    }
    snprintf(path, sizeof path, "%s/pictures/notes.txt", dir);
    write_text(path, "not a picture\n");
    return 0;
}

#define CASE(name)                                                                                                     \
    { #name, test_##name, NULL, NULL, NULL }
static const struct CMUnitTest tests[] = {
    CASE(caption), CASE(strategies), CASE(stream_cancel), CASE(bad_input), CASE(threads),
};

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--write-fixture")) return write_fixture(argv[2]);
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, setup, teardown);
}
