/* The VQA objective (models/answering/train.c) on a tiny model and a
 * generated split: with the dense object loss on (train.cell_weight) the
 * cell heads appear in the model, their loss falls and their accuracy on
 * covered cells rises, the picture tower learns while the frozen text
 * tower stays bit for bit as loaded, a run stopped half-way resumes from its
 * checkpoint; a VQA model made without the cell heads cannot be fine-tuned
 * with them, and bad recipe values are clear errors. A recipe whose fuser
 * differs from a VQA model's grows the model: the new parameters (the
 * picture's positions) appear, every other tensor is where the model
 * left it. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "model_fixture.h"
#include "models/answering/answering.h"
#include "shapes_fixture.h"
#include "testfs.h"
#include "testutil.h"

#define FUSION                                                                                                         \
    "{\"width\": 32, \"layers\": 1, \"heads\": 2, \"mlp\": 64, \"gate_hidden\": 16, \"weighting\": \"learned\"}"

static char g_dir[512];

static int setup(void **state) {
    (void)state;
    return qt_shapes_fixture(g_dir, sizeof g_dir, "vqat", 64, 13);
}

static int teardown(void **state) {
    (void)state;
    qt_rm_rf(g_dir);
    return 0;
}

static char *write_recipe_with(const char *name, const char *fusion, const char *train) {
    char *path = malloc(700);
    assert_non_null(path);
    snprintf(path, 700, "%s/%s", g_dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "{\"fusion\": %s, \"answer_hidden\": 32, \"train\": %s}", fusion, train);
    fclose(f);
    return path;
}

static char *write_recipe(const char *name, const char *train) {
    return write_recipe_with(name, FUSION, train);
}

static void params_from(qmod_vqa_train_params *p, const char *recipe) {
    char *buf = NULL;
    assert_int_equal(qtr_recipe_read(recipe, &buf), QIAO_OK);
    qiao_status st = qmod_vqa_hparams_from_json(buf, recipe, &p->hp);
    if (st != QIAO_OK) fail_msg("%s", qiao_last_error());
    free(buf);
    p->recipe_path = recipe;
}

/* Column `name` of the CSV log: the mean over rows [from, to) that have it. */
static double csv_mean(const char *csv, const char *name, int from, int to) {
    double v[256], sum = 0;
    const int n = qt_csv_column(csv, name, from, to, v, 256);
    assert_true(n > 0);
    for (int i = 0; i < n; i++) sum += v[i];
    return sum / n;
}

/* qmod_vqa_eval of the first `max` typed questions of `data` on `m`. */
static void eval_typed(const qmod_model *m, const char *data, int64_t max, qmod_vqa_result *r) {
    qmod_vqa_dataset d;
    assert_int_equal(qmod_vqa_dataset_load(data, &d), QIAO_OK);
    qb_exec ex;
    qb_exec_cpu(&ex, 1);
    qmod_vqa_eval_params ep = qmod_vqa_eval_default_params();
    ep.max_questions = max;
    assert_int_equal(qmod_vqa_eval(&ex, m, &d, NULL, &ep, r), QIAO_OK);
    qmod_vqa_dataset_free(&d);
}

static bool same_prefix(const qmod_model *a, const qmod_model *b, const char *prefix, bool *all_same) {
    bool any = false;
    *all_same = true;
    for (size_t i = 0; i < a->tab.n; i++) {
        const qc_tensor_desc *e = &a->tab.t[i];
        if (strncmp(e->name, prefix, strlen(prefix))) continue;
        const int64_t j = qc_table_find(&b->tab, e->name);
        assert_true(j >= 0);
        any = true;
        if (memcmp(a->arena.base + e->offset, b->arena.base + b->tab.t[j].offset, (size_t)e->numel * sizeof(float)))
            *all_same = false;
    }
    return any;
}

static void cells_learn_and_resume(void **state) {
    (void)state;
    char init[700], data[600], out[700], ckpt[700], csv[700];
    snprintf(init, sizeof init, "%s/tiny.safetensors", g_dir);
    snprintf(data, sizeof data, "%s/data", g_dir);
    snprintf(out, sizeof out, "%s/vqa.safetensors", g_dir);
    snprintf(ckpt, sizeof ckpt, "%s/vqa.ckpt.safetensors", g_dir);
    snprintf(csv, sizeof csv, "%s/vqa.csv", g_dir);
    qt_write_tiny_model(init, 1, true);
    char *recipe = write_recipe("cells.json", "{\"batch\": 16, \"steps\": 160, \"warmup\": 10, \"lr\": 0.003, "
                                              "\"eval_every\": 1000, \"ckpt_every\": 40, \"freeze\": [\"text\", "
                                              "\"audio\"], \"cell_weight\": 1.0, \"p_image_noise\": 0, "
                                              "\"p_occlude\": 0, \"p_drop_image\": 0, \"image_sigma\": [2, 9], "
                                              "\"audio_noise\": \"babble\"}");
    qmod_vqa_train_params p;
    memset(&p, 0, sizeof p);
    params_from(&p, recipe);
    assert_true(p.hp.cell_weight == 1.0f);
    p.init_path = init, p.data_dir = data, p.out_path = out, p.ckpt_path = ckpt, p.log_path = csv;
    p.threads = 2, p.loader_threads = 1;
    /* 160 steps, stopped at 80 and resumed from the checkpoint */
    p.hp.tr.steps = 80;
    qiao_status st = qmod_vqa_train(&p);
    if (st != QIAO_OK) fail_msg("%s", qiao_last_error());
    p.hp.tr.steps = 160;
    p.resume_path = ckpt;
    st = qmod_vqa_train(&p);
    if (st != QIAO_OK) fail_msg("%s", qiao_last_error());
    /* the checkpoint holds the recipe the run began with, so a resume without
     * one goes on with the same hyperparameters */
    char *rj = NULL;
    assert_int_equal(qtr_checkpoint_recipe(ckpt, &rj), QIAO_OK);
    qmod_vqa_hparams back;
    st = qmod_vqa_hparams_from_json(rj, ckpt, &back);
    if (st != QIAO_OK) fail_msg("%s: %s", rj, qiao_last_error());
    free(rj);
    assert_true(back.tr.lr == p.hp.tr.lr && back.tr.lr == 0.003f && back.tr.steps == 160 && back.tr.warmup == 10);
    assert_true(back.batch == 16 && back.freeze == p.hp.freeze && back.cell_weight == 1.0f);
    assert_true(back.eval_questions == p.hp.eval_questions && back.data.audio_noise == QMOD_VQA_NOISE_BABBLE);
    assert_true(back.data.image_sigma[0] == 2.0f && back.data.image_sigma[1] == 9.0f);
    assert_true(back.data.p_drop_text == p.hp.data.p_drop_text && back.data.p_occlude == 0.0f);
    assert_true(!memcmp(back.data.occlude_frac, p.hp.data.occlude_frac, sizeof back.data.occlude_frac));
    assert_true(!memcmp(back.data.audio_snr_db, p.hp.data.audio_snr_db, sizeof back.data.audio_snr_db));
    const double l0 = csv_mean(csv, "loss_cell", 0, 10), l1 = csv_mean(csv, "loss_cell", 140, 160);
    const double a0 = csv_mean(csv, "cell_color_acc", 0, 10), a1 = csv_mean(csv, "cell_color_acc", 140, 160);
    const double s1 = csv_mean(csv, "cell_shape_acc", 140, 160);
    printf("cell loss %.3f -> %.3f; colour accuracy on covered cells %.3f -> %.3f; shape %.3f at the end\n", l0, l1, a0,
           a1, s1);
    assert_true(l1 < 0.6 * l0);
    assert_true(a1 > a0 + 0.3);
    /* the evaluation reads the cell heads too (on the training pictures: this
     * checks the counting, not generalization) */
    qmod_model *ev = NULL;
    assert_int_equal(qmod_load(out, &ev), QIAO_OK);
    qmod_vqa_result r;
    eval_typed(ev, data, 100, &r);
    const double ec = qmod_vqa_acc(r.cell_correct[QMOD_VQA_COLOR], r.cell_n[QMOD_VQA_COLOR]);
    printf("evaluation: %lld covered cells, colour %.3f\n", (long long)r.cell_n[QMOD_VQA_COLOR], ec);
    assert_true(r.n == 100 && r.cell_n[QMOD_VQA_COLOR] > 100 && r.cell_n[QMOD_VQA_SHAPE] == r.cell_n[QMOD_VQA_COLOR]);
    assert_true(ec > a0 + 0.3);
    qmod_free(ev);
    /* the heads, one class per attribute value plus "none" */
    qmod_model *m = NULL, *base = NULL;
    assert_int_equal(qmod_load(out, &m), QIAO_OK);
    assert_int_equal(qmod_load(init, &base), QIAO_OK);
    const int hs = qmod_head_find(&m->cfg, "cell_shape"), hc = qmod_head_find(&m->cfg, "cell_color");
    assert_true(hs >= 0 && hc >= 0 && qmod_head_find(&m->cfg, "cell_size") >= 0);
    assert_int_equal(m->cfg.heads[hs].mlp.classes, 1 + SHAPES_NSHAPES);
    assert_int_equal(m->cfg.heads[hc].mlp.classes, 1 + SHAPES_NCOLORS);
    char label[64];
    assert_string_equal(qmod_head_label(&m->cfg, hs, 0, NULL, label, sizeof label), "none");
    assert_string_equal(qmod_head_label(&m->cfg, hc, 1, NULL, label, sizeof label), shapes_name(SHAPES_K_COLOR, 0));
    /* the output is bf16: compare the towers after the same rounding */
    qmod_model *base16 = NULL;
    char b16[700];
    snprintf(b16, sizeof b16, "%s/tiny16.safetensors", g_dir);
    assert_int_equal(qmod_save(base, b16, QIAO_DTYPE_BF16), QIAO_OK);
    assert_int_equal(qmod_load(b16, &base16), QIAO_OK);
    bool same = false;
    assert_true(same_prefix(m, base16, "text.", &same));
    assert_true(same);
    assert_true(same_prefix(m, base16, "image.", &same));
    assert_false(same);
    qmod_free(m), qmod_free(base), qmod_free(base16);
    free(recipe);
}

/* A fuser with places (fusion/fuser.h): the labels name every object once,
 * in the place its centre lies in; the cell heads then read the places, and
 * their loss falls and their colour accuracy rises as the picture tower
 * learns through the places' max. */
static void places_learn(void **state) {
    (void)state;
    char init[700], data[600], out[700], csv[700], ckpt[700];
    snprintf(init, sizeof init, "%s/tiny.safetensors", g_dir);
    snprintf(data, sizeof data, "%s/data", g_dir);
    snprintf(out, sizeof out, "%s/places.safetensors", g_dir);
    snprintf(ckpt, sizeof ckpt, "%s/places.ckpt.safetensors", g_dir);
    snprintf(csv, sizeof csv, "%s/places.csv", g_dir);
    qt_write_tiny_model(init, 1, true);
    qmod_vqa_dataset d;
    assert_int_equal(qmod_vqa_dataset_load(data, &d), QIAO_OK);
    int32_t lab[9 * QMOD_VQA_NATTR];
    for (int64_t sc = 0; sc < d.n_scenes; sc++) {
        qmod_vqa_place_labels(&d, sc, 3, lab);
        int objects = 0;
        for (int q = 0; q < 9; q++) {
            objects += lab[q * QMOD_VQA_NATTR + QMOD_VQA_SHAPE] > 0;
            /* a place holds an object in every attribute or in none */
            assert_int_equal(lab[q * QMOD_VQA_NATTR + QMOD_VQA_SHAPE] > 0, lab[q * QMOD_VQA_NATTR + QMOD_VQA_COLOR] > 0);
        }
        assert_int_equal(objects, d.scenes[sc].n_objects);
    }
    qmod_vqa_dataset_free(&d);
    char *recipe = write_recipe_with("places.json",
                                     "{\"width\": 32, \"layers\": 1, \"heads\": 2, \"mlp\": 64, \"gate_hidden\": 16, "
                                     "\"places\": 3, \"positions\": true}",
                                     "{\"batch\": 16, \"steps\": 120, \"warmup\": 10, \"lr\": 0.003, "
                                     "\"eval_every\": 1000, \"ckpt_every\": 1000, \"freeze\": [\"text\", \"audio\"], "
                                     "\"cell_weight\": 1.0, \"p_image_noise\": 0, \"p_occlude\": 0, "
                                     "\"p_drop_image\": 0}");
    qmod_vqa_train_params p;
    memset(&p, 0, sizeof p);
    params_from(&p, recipe);
    p.init_path = init, p.data_dir = data, p.out_path = out, p.log_path = csv, p.ckpt_path = ckpt;
    p.threads = 2, p.loader_threads = 1;
    if (qmod_vqa_train(&p) != QIAO_OK) fail_msg("%s", qiao_last_error());
    const double l0 = csv_mean(csv, "loss_cell", 0, 10), l1 = csv_mean(csv, "loss_cell", 100, 120);
    const double a0 = csv_mean(csv, "cell_color_acc", 0, 10), a1 = csv_mean(csv, "cell_color_acc", 100, 120);
    printf("place loss %.3f -> %.3f; colour accuracy on the objects' places %.3f -> %.3f\n", l0, l1, a0, a1);
    assert_true(l1 < 0.6 * l0);
    assert_true(a1 > a0 + 0.3);
    qmod_model *m = NULL;
    assert_int_equal(qmod_load(out, &m), QIAO_OK);
    assert_int_equal(m->cfg.fusion.places, 3);
    qmod_vqa_result r;
    eval_typed(m, data, 100, &r);
    /* one labelled place per object of the questions' scenes: far fewer than
     * the covered patches, and never more than 6 a question */
    printf("evaluation: %lld objects' places, colour %.3f\n", (long long)r.cell_n[QMOD_VQA_COLOR],
           qmod_vqa_acc(r.cell_correct[QMOD_VQA_COLOR], r.cell_n[QMOD_VQA_COLOR]));
    assert_true(r.n == 100 && r.cell_n[QMOD_VQA_COLOR] >= 100 && r.cell_n[QMOD_VQA_COLOR] <= 600);
    assert_true(qmod_vqa_acc(r.cell_correct[QMOD_VQA_COLOR], r.cell_n[QMOD_VQA_COLOR]) > a0 + 0.3);
    qmod_free(m);
    free(recipe);
}

/* The recipes models/configs holds for VQA read as a run would read them:
 * their "train" objects, and their "fusion" sections on a model's towers. */
static void recipes(void **state) {
    (void)state;
    const char *names[] = {"vqa.json", "vqa-places-tower.json", "vqa-places-fuser.json"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char path[600];
        snprintf(path, sizeof path, "%s/models/configs/%s", QIAO_SOURCE_DIR, names[i]);
        qmod_vqa_train_params p;
        memset(&p, 0, sizeof p);
        params_from(&p, path);
        assert_true(p.hp.batch > 0 && p.hp.tr.steps > 0);
        char *buf = NULL;
        assert_int_equal(qtr_recipe_read(path, &buf), QIAO_OK);
        cJSON *recipe = cJSON_Parse(buf);
        free(buf);
        assert_non_null(recipe);
        qmod_model *t = qt_tiny_model(1, false);
        cJSON *root = cJSON_Parse(t->cfg.json);
        qmod_free(t);
        cJSON_AddItemToObject(root, "fusion",
                              cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(recipe, "fusion"), true));
        char *json = cJSON_PrintUnformatted(root);
        qmod_config c;
        if (qmod_config_from_string(json, path, &c) != QIAO_OK) fail_msg("%s: %s", names[i], qiao_last_error());
        assert_true(c.has_fusion);
        qmod_config_free(&c);
        free(json);
        cJSON_Delete(root);
        cJSON_Delete(recipe);
    }
}

static void errors(void **state) {
    (void)state;
    qmod_vqa_hparams h;
    assert_int_equal(qmod_vqa_hparams_from_json("{\"train\": {\"cell_weight\": -1}}", "r.json", &h), QIAO_ERR_FORMAT);
    assert_non_null(strstr(qiao_last_error(), "train.cell_weight"));
    assert_int_equal(qmod_vqa_hparams_from_json("{\"train\": {\"cell_weight\": \"a\"}}", "r.json", &h),
                     QIAO_ERR_FORMAT);
    assert_int_equal(qmod_vqa_hparams_from_json(NULL, NULL, &h), QIAO_OK);
    assert_true(h.cell_weight == 0.0f);
    /* a VQA model made without the cell heads, then fine-tuned with them */
    char init[700], data[600], out[700], ckpt[700];
    snprintf(init, sizeof init, "%s/tiny-e.safetensors", g_dir);
    snprintf(data, sizeof data, "%s/data", g_dir);
    snprintf(out, sizeof out, "%s/plain.safetensors", g_dir);
    snprintf(ckpt, sizeof ckpt, "%s/plain.ckpt.safetensors", g_dir);
    qt_write_tiny_model(init, 2, true);
    char *recipe = write_recipe("plain.json", "{\"batch\": 8, \"steps\": 1, \"eval_every\": 1000}");
    qmod_vqa_train_params p;
    memset(&p, 0, sizeof p);
    params_from(&p, recipe);
    p.init_path = init, p.data_dir = data, p.out_path = out, p.ckpt_path = ckpt;
    p.threads = 1, p.loader_threads = 1;
    qiao_status st = qmod_vqa_train(&p);
    if (st != QIAO_OK) fail_msg("%s", qiao_last_error());
    qmod_model *m = NULL;
    assert_int_equal(qmod_load(out, &m), QIAO_OK);
    assert_true(qmod_head_find(&m->cfg, "cell_shape") < 0);
    /* its evaluation counts no cells */
    qmod_vqa_result r;
    eval_typed(m, data, 16, &r);
    assert_true(r.n == 16 && r.cell_n[QMOD_VQA_SHAPE] == 0 && r.cell_n[QMOD_VQA_COLOR] == 0);
    qmod_free(m);
    p.init_path = out;
    p.hp.cell_weight = 1.0f;
    assert_int_equal(qmod_vqa_train(&p), QIAO_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(qiao_last_error(), "cell heads"));
    free(recipe);
}

/* A VQA model, then a recipe that adds the picture's positions to its
 * fuser: the grown model has them, keeps its name, and every tensor it
 * shares with the model moved no further than one step at lr 1e-7 and the
 * bf16 rounding of the file (a fresh start would be off by the whole
 * value). */
static void grows(void **state) {
    (void)state;
    char init[700], data[600], out[700], grown[700], ckpt[700];
    snprintf(init, sizeof init, "%s/tiny-g.safetensors", g_dir);
    snprintf(data, sizeof data, "%s/data", g_dir);
    snprintf(out, sizeof out, "%s/g0.safetensors", g_dir);
    snprintf(grown, sizeof grown, "%s/g1.safetensors", g_dir);
    snprintf(ckpt, sizeof ckpt, "%s/g.ckpt.safetensors", g_dir);
    qt_write_tiny_model(init, 3, true);
    char *recipe = write_recipe("g0.json", "{\"batch\": 8, \"steps\": 2, \"eval_every\": 1000}");
    qmod_vqa_train_params p;
    memset(&p, 0, sizeof p);
    params_from(&p, recipe);
    p.init_path = init, p.data_dir = data, p.out_path = out, p.ckpt_path = ckpt;
    p.threads = 1, p.loader_threads = 1;
    qiao_status st = qmod_vqa_train(&p);
    if (st != QIAO_OK) fail_msg("%s", qiao_last_error());
    char *recipe2 = write_recipe_with("g1.json",
                                      "{\"width\": 32, \"layers\": 1, \"heads\": 2, \"mlp\": 64, \"gate_hidden\": 16, "
                                      "\"weighting\": \"learned\", \"positions\": true}",
                                      "{\"batch\": 8, \"steps\": 1, \"lr\": 1e-7, \"warmup\": 0, \"eval_every\": 1000}");
    memset(&p, 0, sizeof p);
    params_from(&p, recipe2);
    p.init_path = out, p.data_dir = data, p.out_path = grown, p.ckpt_path = ckpt;
    p.threads = 1, p.loader_threads = 1;
    unlink(ckpt);
    st = qmod_vqa_train(&p);
    if (st != QIAO_OK) fail_msg("%s", qiao_last_error());
    qmod_model *a = NULL, *b = NULL;
    assert_int_equal(qmod_load(out, &a), QIAO_OK);
    assert_int_equal(qmod_load(grown, &b), QIAO_OK);
    assert_string_equal(a->cfg.name, b->cfg.name);
    assert_true(a->cfg.fusion.positions == 0 && b->cfg.fusion.positions == b->cfg.image.tokens);
    assert_true(qc_table_find(&a->tab, "fusion.image.pos") < 0);
    const int64_t pi = qc_table_find(&b->tab, "fusion.image.pos");
    assert_true(pi >= 0);
    assert_int_equal(b->tab.n, a->tab.n + 1);
    int64_t n = 0;
    const int64_t far = qt_shared_far(a, b, 0.01f, 1e-5f, &n);
    printf("grown: %lld of %lld shared values moved further than one step allows\n", (long long)far, (long long)n);
    assert_int_equal(far, 0);
    qmod_free(a), qmod_free(b);
    free(recipe), free(recipe2);
}

int main(int argc, char **argv) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(cells_learn_and_resume),
                                       cmocka_unit_test(places_learn), cmocka_unit_test(recipes),
                                       cmocka_unit_test(errors),
                                       cmocka_unit_test(grows)};
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, setup, teardown);
}
