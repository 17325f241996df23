/* The caption objective (models/captioning/train.c): teacher forcing lays
 * out BOS, pieces, EOS and padding as captioning.h says; a tiny decoder on
 * the tiny model's image tower learns the captions of a generated split
 * (its teacher-forced validation loss falls well below the untrained one's
 * and below the uniform guess), resumes from its checkpoint, and bad
 * recipes and models are clear errors; writing a caption through the KV
 * cache and the search agrees with the full forward, over patches and over
 * places. A recipe that gives a caption model's decoder context positions
 * grows the model. With places the decoder reads G x G pooled tokens; the
 * frozen tower's memo trains exactly as running the tower every step. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model_fixture.h"
#include "models/answering/answering.h"
#include "models/captioning/captioning.h"
#include "shapes_fixture.h"
#include "testfs.h"
#include "testutil.h"

#define DECODER "{\"width\": 32, \"layers\": 1, \"heads\": 2, \"mlp\": 64, \"max_len\": 96, \"tied\": true}"

static char g_dir[512];

static int setup(void **state) {
    (void)state;
    return qt_shapes_fixture(g_dir, sizeof g_dir, "cap", 48, 11);
}

static int teardown(void **state) {
    (void)state;
    qt_rm_rf(g_dir);
    return 0;
}

static void teacher(void **state) {
    (void)state;
    qmod_model *m = qt_tiny_model(1, true);
    char *json = NULL;
    {
        cJSON *root = cJSON_Parse(m->cfg.json);
        cJSON_AddItemToObject(root, "decoder",
                              cJSON_Parse("{\"width\": 16, \"layers\": 1, \"heads\": 2, \"mlp\": 32, \"max_len\": 4}"));
        json = cJSON_PrintUnformatted(root);
        cJSON_Delete(root);
    }
    qmod_config cfg;
    assert_int_equal(qmod_config_from_string(json, "teacher", &cfg), QIAO_OK);
    free(json);
    /* rows of 2, 0 and 5 pieces in a batch padded to T = 5 */
    int32_t ids[15] = {7, 8, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5};
    int64_t lengths[3] = {2, 0, 5};
    qmod_batch text = {.mod = QMOD_TEXT, .B = 3, .T = 5, .ids = ids, .lengths = lengths};
    const uint8_t lang[3] = {QMOD_LANG_ZH, QMOD_LANG_EN, QMOD_LANG_EN};
    int32_t in[12], target[12];
    int64_t T = 0;
    qmod_cap_teacher(&cfg, &text, lang, in, target, &T);
    assert_int_equal(T, 4); /* min(T + 1, max_len) */
    const int32_t eos = qmod_dec_eos(&cfg), zh = qmod_dec_bos(&cfg, QMOD_LANG_ZH), en = qmod_dec_bos(&cfg, QMOD_LANG_EN);
    const int32_t want_in[12] = {zh, 7, 8, eos, en, eos, eos, eos, en, 1, 2, 3};
    const int32_t want_t[12] = {7, 8, eos, -1, eos, -1, -1, -1, 1, 2, 3, 4}; /* the long row: no EOS taught */
    assert_memory_equal(in, want_in, sizeof in);
    assert_memory_equal(target, want_t, sizeof target);
    qmod_config_free(&cfg);
    qmod_free(m);
}

static char *write_recipe_with(const char *name, const char *decoder, const char *train) {
    char *path = malloc(700);
    assert_non_null(path);
    snprintf(path, 700, "%s/%s", g_dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "{\"decoder\": %s, \"train\": %s}", decoder, train);
    fclose(f);
    return path;
}

static char *write_recipe(const char *name, const char *train) { return write_recipe_with(name, DECODER, train); }

/* The last validation loss of a training log. */
static float last_val_loss(const char *csv) {
    double v[64];
    const int n = qt_csv_column(csv, "val_loss", 0, 1 << 30, v, 64);
    assert_true(n > 0);
    return (float)v[n - 1];
}

static void learns_and_resumes(void **state) {
    (void)state;
    char init[700], data[600], out[700], ckpt[700], csv[700];
    snprintf(init, sizeof init, "%s/tiny.safetensors", g_dir);
    snprintf(data, sizeof data, "%s/data", g_dir);
    snprintf(out, sizeof out, "%s/cap.safetensors", g_dir);
    snprintf(ckpt, sizeof ckpt, "%s/cap.ckpt.safetensors", g_dir);
    snprintf(csv, sizeof csv, "%s/cap.csv", g_dir);
    qt_write_tiny_model(init, 1, true);
    char *recipe = write_recipe("cap.json", "{\"batch\": 16, \"steps\": 300, \"warmup\": 10, \"lr\": 0.003, "
                                            "\"eval_every\": 150, \"ckpt_every\": 50, \"eval_scenes\": 16}");
    qmod_cap_train_params p;
    memset(&p, 0, sizeof p);
    p.recipe_path = recipe, p.init_path = init, p.data_dir = data, p.val_dir = data;
    p.out_path = out, p.ckpt_path = ckpt, p.log_path = csv, p.threads = 2, p.loader_threads = 1;
    /* an untrained decoder first: one step at a vanishing rate */
    char *r0 = write_recipe("cap0.json", "{\"batch\": 16, \"steps\": 1, \"lr\": 1e-9, \"eval_every\": 1, "
                                         "\"eval_scenes\": 16}");
    qmod_cap_train_params p0 = p;
    p0.recipe_path = r0;
    char *buf = NULL;
    assert_int_equal(qtr_recipe_read(r0, &buf), QIAO_OK);
    assert_int_equal(qmod_cap_hparams_from_json(buf, r0, &p0.hp), QIAO_OK);
    free(buf);
    qiao_status st = qmod_cap_train(&p0);
    if (st != QIAO_OK) fail_msg("%s", qiao_last_error());
    const float before = last_val_loss(csv);
    unlink(csv), unlink(ckpt), unlink(out);
    /* 300 steps, stopped half-way by a run of 150 and resumed */
    assert_int_equal(qtr_recipe_read(recipe, &buf), QIAO_OK);
    assert_int_equal(qmod_cap_hparams_from_json(buf, recipe, &p.hp), QIAO_OK);
    free(buf);
    p.hp.tr.steps = 150;
    assert_int_equal(qmod_cap_train(&p), QIAO_OK);
    p.hp.tr.steps = 300;
    p.resume_path = ckpt;
    st = qmod_cap_train(&p);
    if (st != QIAO_OK) fail_msg("%s", qiao_last_error());
    const float after = last_val_loss(csv);
    qmod_model *m = NULL;
    assert_int_equal(qmod_load(out, &m), QIAO_OK);
    const float uniform = logf((float)m->cfg.decoder.vocab);
    printf("teacher-forced validation loss: untrained %.3f, after 300 steps %.3f (uniform %.3f)\n", (double)before,
           (double)after, (double)uniform);
    assert_true(before > 0.9f * uniform);
    assert_true(after < 0.5f * before);
    assert_true(m->cfg.has_decoder);
    assert_non_null(m->tok);
    qmod_free(m);
    free(recipe), free(r0);
}

static void errors(void **state) {
    (void)state;
    qmod_cap_hparams h;
    assert_int_equal(qmod_cap_hparams_from_json("{\"train\": {\"beam\": 3}}", "r.json", &h), QIAO_ERR_FORMAT);
    assert_non_null(strstr(qiao_last_error(), "train.beam"));
    assert_int_equal(qmod_cap_hparams_from_json("{\"train\": {\"freeze_image\": 1}}", "r.json", &h), QIAO_ERR_FORMAT);
    assert_int_equal(qmod_cap_hparams_from_json("{\"train\": {\"smoothing\": 0.9}}", "r.json", &h), QIAO_ERR_FORMAT);
    assert_int_equal(qmod_cap_hparams_from_json("{", "r.json", &h), QIAO_ERR_FORMAT);
    assert_int_equal(qmod_cap_hparams_from_json(NULL, NULL, &h), QIAO_OK);
    assert_true(h.freeze_image && h.batch == 64);
    /* no decoder and no recipe: a clear error */
    char init[700], data[600];
    snprintf(init, sizeof init, "%s/tiny-e.safetensors", g_dir);
    snprintf(data, sizeof data, "%s/data", g_dir);
    qt_write_tiny_model(init, 2, true);
    qmod_cap_train_params p;
    memset(&p, 0, sizeof p);
    p.init_path = init, p.data_dir = data, p.out_path = init, p.ckpt_path = init;
    p.hp = h;
    assert_int_equal(qmod_cap_train(&p), QIAO_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(qiao_last_error(), "no decoder"));
    /* a recipe without a decoder section */
    char path[700];
    snprintf(path, sizeof path, "%s/nodec.json", g_dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("{\"train\": {}}", f);
    fclose(f);
    p.recipe_path = path;
    assert_int_equal(qmod_cap_train(&p), QIAO_ERR_FORMAT);
    assert_non_null(strstr(qiao_last_error(), "no \"decoder\""));
    /* more places than the 8 x 8 patches have sides, or none */
    const char *bad[] = {"9", "0", "\"3\""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        f = fopen(path, "w");
        assert_non_null(f);
        fprintf(f, "{\"decoder\": {\"width\": 32, \"layers\": 1, \"heads\": 2, \"mlp\": 64, \"max_len\": 96, "
                   "\"places\": %s}}", bad[i]);
        fclose(f);
        assert_int_equal(qmod_cap_train(&p), QIAO_ERR_FORMAT);
        if (!strstr(qiao_last_error(), "places")) fail_msg("%s", qiao_last_error());
    }
}

/* A caption model, then a recipe that adds the context's positions: the
 * grown model has them, keeps its name, and every tensor it shares moved
 * no further than a step at lr 1e-7 and bf16 rounding allow. */
static void grows(void **state) {
    (void)state;
    char init[700], data[600], out[700], grown[700], ckpt[700], path[700];
    snprintf(init, sizeof init, "%s/tiny-g.safetensors", g_dir);
    snprintf(data, sizeof data, "%s/data", g_dir);
    snprintf(out, sizeof out, "%s/g0.safetensors", g_dir);
    snprintf(grown, sizeof grown, "%s/g1.safetensors", g_dir);
    snprintf(ckpt, sizeof ckpt, "%s/g.ckpt.safetensors", g_dir);
    qt_write_tiny_model(init, 3, true);
    char *r0 = write_recipe("g0.json", "{\"batch\": 8, \"steps\": 2, \"eval_every\": 1000}");
    qmod_cap_train_params p;
    memset(&p, 0, sizeof p);
    p.recipe_path = r0, p.init_path = init, p.data_dir = data, p.out_path = out, p.ckpt_path = ckpt;
    p.threads = 1, p.loader_threads = 1;
    char *buf = NULL;
    assert_int_equal(qtr_recipe_read(r0, &buf), QIAO_OK);
    assert_int_equal(qmod_cap_hparams_from_json(buf, r0, &p.hp), QIAO_OK);
    free(buf);
    qiao_status st = qmod_cap_train(&p);
    if (st != QIAO_OK) fail_msg("%s", qiao_last_error());
    snprintf(path, sizeof path, "%s/g1.json", g_dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("{\"decoder\": {\"width\": 32, \"layers\": 1, \"heads\": 2, \"mlp\": 64, \"max_len\": 96, \"tied\": true, "
          "\"positions\": true}, \"train\": {\"batch\": 8, \"steps\": 1, \"lr\": 1e-7, \"warmup\": 0, \"eval_every\": 1000}}",
          f);
    fclose(f);
    assert_int_equal(qtr_recipe_read(path, &buf), QIAO_OK);
    assert_int_equal(qmod_cap_hparams_from_json(buf, path, &p.hp), QIAO_OK);
    free(buf);
    p.recipe_path = path, p.init_path = out, p.out_path = grown;
    unlink(ckpt);
    st = qmod_cap_train(&p);
    if (st != QIAO_OK) fail_msg("%s", qiao_last_error());
    qmod_model *a = NULL, *b = NULL;
    assert_int_equal(qmod_load(out, &a), QIAO_OK);
    assert_int_equal(qmod_load(grown, &b), QIAO_OK);
    assert_string_equal(a->cfg.name, b->cfg.name);
    assert_true(a->cfg.decoder.ctx_positions == 0 && b->cfg.decoder.ctx_positions == b->cfg.image.tokens);
    assert_true(qc_table_find(&b->tab, "decoder.ctx.pos") >= 0);
    assert_int_equal(b->tab.n, a->tab.n + 1);
    int64_t n = 0;
    const int64_t far = qt_shared_far(a, b, 0.01f, 1e-5f, &n);
    printf("grown: %lld of %lld shared values moved further than one step allows\n", (long long)far, (long long)n);
    assert_int_equal(far, 0);
    qmod_free(a), qmod_free(b);
    free(r0);
}

/* A tiny caption model with random weights: the tiny model plus a decoder. */
static qmod_model *tiny_caption_model(const char *decoder) {
    qmod_model *t = qt_tiny_model(1, true);
    cJSON *root = cJSON_Parse(t->cfg.json);
    cJSON_AddItemToObject(root, "decoder", cJSON_Parse(decoder));
    char *json = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    qmod_config cfg;
    assert_int_equal(qmod_config_from_string(json, "tiny caption", &cfg), QIAO_OK);
    free(json);
    qmod_model *m = NULL;
    assert_int_equal(qmod_create(&cfg, 9, &m), QIAO_OK);
    qmod_config_free(&cfg);
    assert_int_equal(qmod_copy_shared(m, t, NULL), QIAO_OK);
    m->tok = t->tok;
    t->tok = NULL;
    qmod_free(t);
    return m;
}

/* qmod_caption: greedy through the KV cache writes, at every position, the
 * piece the full teacher-forced forward over the same prefix ranks first;
 * beam 1 is greedy; a wider beam scores at least as well; bad requests are
 * clear errors. */
static void generate_with(const char *decoder) {
    qmod_model *m = tiny_caption_model(decoder);
    qb_exec ex;
    qb_exec_cpu(&ex, 2);
    char path[700];
    snprintf(path, sizeof path, "%s/data/images/000000.png", g_dir);
    qiao_image *img = NULL;
    assert_int_equal(qiao_image_decode_file(path, NULL, &img), QIAO_OK);
    qmod_gen_params gp = qmod_gen_default_params();
    gp.max_len = 12;
    qmod_gen_result g, b1, b4;
    assert_int_equal(qmod_caption(&ex, m, img, QMOD_LANG_EN, &gp, &g), QIAO_OK);
    assert_non_null(g.text);
    /* the full forward over [BOS_en, g.tokens] */
    const qmod_config *c = &m->cfg;
    const int64_t T = (int64_t)g.n + 1, V = c->decoder.vocab;
    int32_t ids[16];
    ids[0] = qmod_dec_bos(c, QMOD_LANG_EN);
    for (size_t i = 0; i < g.n; i++) ids[i + 1] = g.tokens[i];
    qmod_batch b;
    assert_int_equal(qmod_batch_images(m, (const qiao_image *const *)&img, 1, &b), QIAO_OK);
    qmod_work w;
    assert_int_equal(qmod_work_init(&w, m, QMOD_IMAGE, 1, 0, false), QIAO_OK);
    const float *emb, *ctx = NULL;
    qmod_token_seq seq;
    assert_int_equal(qmod_forward(&ex, m, &w, &b, &emb), QIAO_OK);
    assert_int_equal(qmod_tokens(m, &w, &b, &seq), QIAO_OK);
    /* the context: the patches, or the places pooled from them */
    qmod_places pl;
    memset(&pl, 0, sizeof pl);
    int64_t Ty = 0;
    assert_int_equal(qmod_cap_context(m, &seq, &pl, &ctx, &Ty), QIAO_OK);
    const int64_t G = c->decoder.places;
    assert_int_equal(Ty, G > 0 ? G * G : seq.T);
    if (G > 0) /* a place is at least every patch whose centre lies in it, channel by channel */
        for (int64_t p = 0; p < seq.T; p++) {
            const int64_t side = 8, place = (p / side * G / side) * G + (p % side) * G / side;
            for (int64_t k = 0; k < seq.C; k++) assert_true(ctx[place * seq.C + k] >= seq.x[p * seq.C + k]);
        }
    qc_table at;
    qc_table_init_empty(&at);
    assert_int_equal(qf_decoder_describe_acts(&at, "d.", &c->decoder, 1, T, Ty, 0), QIAO_OK);
    qc_arena acts;
    assert_int_equal(qc_arena_alloc(&acts, at.total), QIAO_OK);
    qf_decoder_acts a;
    qc_table_bind(&at, acts.base, &a);
    qf_decoder_forward(&ex, &a, &m->p.decoder, ids, ctx, NULL, &c->decoder, 1, T, Ty);
    for (int64_t t = 0; t < T; t++) {
        const float *l = a.logits + t * V;
        int64_t best = 0; /* over the pieces only: the search never writes a language token */
        for (int64_t k = 1; k < c->text.vocab; k++)
            if (l[k] > l[best]) best = k;
        const int64_t want = t < (int64_t)g.n ? g.tokens[t] : qmod_dec_eos(c);
        if (t < (int64_t)g.n || g.eos) assert_int_equal(best, want);
    }
    qc_arena_free(&acts);
    qc_table_free(&at);
    qmod_places_free(&pl);
    qmod_work_free(&w);
    qmod_batch_free(&b);
    /* beam 1 = greedy; beam 4 finds a sequence at least as likely under its own score */
    gp.strategy = QMOD_GEN_BEAM, gp.beam_size = 1, gp.length_alpha = 0.0;
    assert_int_equal(qmod_caption(&ex, m, img, QMOD_LANG_EN, &gp, &b1), QIAO_OK);
    assert_int_equal(b1.n, g.n);
    assert_memory_equal(b1.tokens, g.tokens, g.n * sizeof(int32_t));
    gp.beam_size = 4;
    assert_int_equal(qmod_caption(&ex, m, img, QMOD_LANG_EN, &gp, &b4), QIAO_OK);
    if (b4.eos == b1.eos) assert_true(b4.score >= b1.score - 1e-6);
    qmod_gen_result_free(&g), qmod_gen_result_free(&b1), qmod_gen_result_free(&b4);
    /* bad requests */
    gp = qmod_gen_default_params();
    gp.max_len = 0;
    assert_int_equal(qmod_caption(&ex, m, img, QMOD_LANG_ZH, &gp, &g), QIAO_ERR_INVALID_ARGUMENT);
    gp.max_len = 1000000;
    assert_int_equal(qmod_caption(&ex, m, img, QMOD_LANG_ZH, &gp, &g), QIAO_ERR_TOO_LARGE);
    assert_non_null(strstr(qiao_last_error(), "max_len"));
    gp.max_len = 8, gp.strategy = QMOD_GEN_BEAM, gp.beam_size = 0;
    assert_int_equal(qmod_caption(&ex, m, img, QMOD_LANG_ZH, &gp, &g), QIAO_ERR_INVALID_ARGUMENT);
    gp.beam_size = 2;
    assert_int_equal(qmod_caption(&ex, m, img, 7, &gp, &g), QIAO_ERR_INVALID_ARGUMENT);
    qmod_model *plain = qt_tiny_model(1, true);
    assert_int_equal(qmod_caption(&ex, plain, img, QMOD_LANG_ZH, &gp, &g), QIAO_ERR_UNSUPPORTED);
    assert_null(g.tokens);
    qmod_free(plain);
    qiao_image_free(img);
    qmod_free(m);
}

static void generate(void **state) {
    (void)state;
    generate_with(DECODER);
}

#define DECODER_PLACES                                                                                                 \
    "{\"width\": 32, \"layers\": 1, \"heads\": 2, \"mlp\": 64, \"max_len\": 96, \"tied\": true, \"places\": 3, "         \
    "\"positions\": true}"

static void generate_places(void **state) {
    (void)state;
    generate_with(DECODER_PLACES);
}

/* A recipe file with the places decoder. */
static char *write_places_recipe(const char *name, const char *train) {
    return write_recipe_with(name, DECODER_PLACES, train);
}

/* Trains `steps` from the tiny model with the places recipe; returns the model. */
static qmod_model *train_places(const char *recipe, bool no_memo, const char *tag) {
    char init[700], data[600], out[700], ckpt[700];
    snprintf(init, sizeof init, "%s/tiny-p.safetensors", g_dir);
    snprintf(data, sizeof data, "%s/data", g_dir);
    snprintf(out, sizeof out, "%s/p-%s.safetensors", g_dir, tag);
    snprintf(ckpt, sizeof ckpt, "%s/p-%s.ckpt.safetensors", g_dir, tag);
    qt_write_tiny_model(init, 4, true);
    qmod_cap_train_params p;
    memset(&p, 0, sizeof p);
    p.recipe_path = recipe, p.init_path = init, p.data_dir = data, p.out_path = out, p.ckpt_path = ckpt;
    p.threads = 2, p.loader_threads = 1, p.no_memo = no_memo;
    char *buf = NULL;
    assert_int_equal(qtr_recipe_read(recipe, &buf), QIAO_OK);
    assert_int_equal(qmod_cap_hparams_from_json(buf, recipe, &p.hp), QIAO_OK);
    free(buf);
    qiao_status st = qmod_cap_train(&p);
    if (st != QIAO_OK) fail_msg("%s", qiao_last_error());
    qmod_model *m = NULL;
    assert_int_equal(qmod_load(out, &m), QIAO_OK);
    unlink(ckpt);
    return m;
}

/* Places in training: the model has one context position per place; with
 * the tower frozen, the memo (every picture's places computed once) trains
 * the decoder to the same weights as running the tower every step, over
 * several passes of the 48 pictures; with the tower trained, the gradient
 * reaches it through the places. */
static void places(void **state) {
    (void)state;
    char *r = write_places_recipe("p.json", "{\"batch\": 16, \"steps\": 12, \"warmup\": 2, \"lr\": 0.003, "
                                            "\"eval_every\": 1000}");
    qmod_model *memo = train_places(r, false, "memo"), *tower = train_places(r, true, "tower");
    assert_int_equal(memo->cfg.decoder.places, 3);
    assert_int_equal(memo->cfg.decoder.ctx_positions, 9);
    int64_t n = 0;
    /* not to the bit: the tower run on a different mix of pictures rounds differently in its
       GEMMs, which moves a few bf16 weights by an ulp (0.4 %) */
    const int64_t far = qt_shared_far(memo, tower, 1e-2f, 1e-6f, &n);
    printf("places: %lld of %lld values differ between the memo and the tower every step\n", (long long)far,
           (long long)n);
    assert_int_equal(far, 0);
    free(r);
    r = write_places_recipe("pt.json", "{\"batch\": 16, \"steps\": 2, \"warmup\": 0, \"lr\": 0.003, "
                                       "\"eval_every\": 1000, \"freeze_image\": false}");
    qmod_model *tuned = train_places(r, false, "tuned");
    /* the frozen run kept the tower as loaded; the tuned one moved it through the places */
    const int64_t i = qc_table_find(&memo->tab, "image.patch_embed.weight"), j = qc_table_find(&tuned->tab, "image.patch_embed.weight");
    assert_true(i >= 0 && j >= 0);
    const float *x = memo->arena.base + memo->tab.t[i].offset, *y = tuned->arena.base + tuned->tab.t[j].offset;
    double moved = 0.0;
    for (int64_t k = 0; k < memo->tab.t[i].numel; k++) moved += fabs((double)x[k] - (double)y[k]);
    printf("places: the trained tower's patch weights moved %.4g in all\n", moved);
    assert_true(moved > 1e-3);
    qmod_free(memo), qmod_free(tower), qmod_free(tuned);
    free(r);
}

/* qmod_graft_decoder: the base keeps its own parts and gains the donor's
 * decoder, and writes the donor's captions; a donor on another picture
 * tower is refused unless forced; a donor without a decoder is
 * unsupported. */
static void graft(void **state) {
    (void)state;
    qmod_model *base = qt_tiny_model(1, true), *donor = tiny_caption_model(DECODER);
    /* the base's own text tower, so the result shows whose parts it kept */
    base->arena.base[base->tab.t[qc_table_find(&base->tab, "text.piece_emb.weight")].offset] += 0.5f;
    char out[700];
    snprintf(out, sizeof out, "%s/grafted.safetensors", g_dir);
    assert_int_equal(qmod_graft_decoder(base, donor, false, out, QIAO_DTYPE_F32), QIAO_OK);
    qmod_model *m = NULL;
    assert_int_equal(qmod_load(out, &m), QIAO_OK);
    assert_true(m->cfg.has_decoder && m->tok);
    assert_int_equal(m->cfg.decoder.layers, donor->cfg.decoder.layers);
    for (size_t i = 0; i < m->tab.n; i++) {
        const qc_tensor_desc *t = &m->tab.t[i];
        const qmod_model *src = strncmp(t->name, "decoder.", 8) == 0 ? donor : base;
        const int64_t j = qc_table_find(&src->tab, t->name);
        assert_true(j >= 0);
        assert_memory_equal(m->arena.base + t->offset, src->arena.base + src->tab.t[j].offset,
                            (size_t)t->numel * sizeof(float));
    }
    /* it writes what the donor writes */
    qb_exec ex;
    qb_exec_cpu(&ex, 2);
    char path[700];
    snprintf(path, sizeof path, "%s/data/images/000001.png", g_dir);
    qiao_image *img = NULL;
    assert_int_equal(qiao_image_decode_file(path, NULL, &img), QIAO_OK);
    qmod_gen_params gp = qmod_gen_default_params();
    gp.max_len = 12;
    qmod_gen_result a, b;
    assert_int_equal(qmod_caption(&ex, m, img, QMOD_LANG_ZH, &gp, &a), QIAO_OK);
    assert_int_equal(qmod_caption(&ex, donor, img, QMOD_LANG_ZH, &gp, &b), QIAO_OK);
    assert_int_equal(a.n, b.n);
    assert_memory_equal(a.tokens, b.tokens, a.n * sizeof a.tokens[0]);
    qmod_gen_result_free(&a), qmod_gen_result_free(&b);
    qiao_image_free(img);
    /* a decoder trained on another picture tower */
    donor->arena.base[donor->tab.t[qc_table_find(&donor->tab, "image.patch_embed.weight")].offset] += 0.25f;
    assert_int_equal(qmod_graft_decoder(base, donor, false, out, QIAO_DTYPE_F32), QIAO_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(qiao_last_error(), "image.patch_embed.weight"));
    assert_int_equal(qmod_graft_decoder(base, donor, true, out, QIAO_DTYPE_BF16), QIAO_OK);
    /* nothing to take */
    assert_int_equal(qmod_graft_decoder(donor, base, false, out, QIAO_DTYPE_F32), QIAO_ERR_UNSUPPORTED);
    qmod_free(m), qmod_free(base), qmod_free(donor);
}

int main(int argc, char **argv) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(teacher),
        cmocka_unit_test(learns_and_resumes),
        cmocka_unit_test(errors),
        cmocka_unit_test(generate),
        cmocka_unit_test(generate_places),
        cmocka_unit_test(places),
        cmocka_unit_test(grows),
        cmocka_unit_test(graft),
    };
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, setup, teardown);
}
