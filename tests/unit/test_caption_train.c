/* The caption objective (models/captioning/train.c): teacher forcing lays
 * out BOS, pieces, EOS and padding as captioning.h says; a tiny decoder on
 * the tiny model's image tower learns the captions of a generated split
 * (its teacher-forced validation loss falls well below the untrained one's
 * and below the uniform guess), resumes from its checkpoint, and bad
 * recipes and models are clear errors. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model_fixture.h"
#include "models/answering/answering.h"
#include "models/captioning/captioning.h"
#include "shapes/shapes.h"
#include "testfs.h"
#include "testutil.h"

#define DECODER "{\"width\": 32, \"layers\": 1, \"heads\": 2, \"mlp\": 64, \"max_len\": 96, \"tied\": true}"

static char g_dir[512];

static int setup(void **state) {
    (void)state;
    const char *t = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/qiao_cap_XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(g_dir)) return -1;
    char data[600];
    snprintf(data, sizeof data, "%s/data", g_dir);
    shapes_params p = shapes_default_params();
    p.n = 48;
    p.seed = 11;
    p.split = SHAPES_TRAIN;
    p.jobs = 2;
    if (shapes_generate(&p, data) != QIAO_OK) {
        printf("shapes_generate: %s\n", qiao_last_error());
        return -1;
    }
    return 0;
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

static char *write_recipe(const char *name, const char *train) {
    char *path = malloc(700);
    assert_non_null(path);
    snprintf(path, 700, "%s/%s", g_dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "{\"decoder\": %s, \"train\": %s}", DECODER, train);
    fclose(f);
    return path;
}

static float last_val_loss(const char *csv) {
    FILE *f = fopen(csv, "r");
    assert_non_null(f);
    char line[4096], header[4096] = "";
    float v = NAN;
    int col = -1;
    while (fgets(line, sizeof line, f)) {
        if (col < 0) {
            snprintf(header, sizeof header, "%s", line);
            int c = 0;
            for (char *tok = strtok(header, ",\n"); tok; tok = strtok(NULL, ",\n"), c++)
                if (!strcmp(tok, "val_loss")) col = c;
            assert_true(col >= 0);
            continue;
        }
        int c = 0;
        const char *p = line;
        while (c < col && (p = strchr(p, ','))) p++, c++;
        if (p && *p != ',' && *p != '\n') v = strtof(p, NULL);
    }
    fclose(f);
    return v;
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
    assert_int_equal(qmod_vqa_recipe_read(r0, &buf), QIAO_OK);
    assert_int_equal(qmod_cap_hparams_from_json(buf, r0, &p0.hp), QIAO_OK);
    free(buf);
    qiao_status st = qmod_cap_train(&p0);
    if (st != QIAO_OK) fail_msg("%s", qiao_last_error());
    const float before = last_val_loss(csv);
    unlink(csv), unlink(ckpt), unlink(out);
    /* 300 steps, stopped half-way by a run of 150 and resumed */
    assert_int_equal(qmod_vqa_recipe_read(recipe, &buf), QIAO_OK);
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
}

int main(int argc, char **argv) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(teacher),
        cmocka_unit_test(learns_and_resumes),
        cmocka_unit_test(errors),
    };
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, setup, teardown);
}
