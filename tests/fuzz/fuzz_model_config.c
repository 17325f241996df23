/* libFuzzer target for the model config reader (models/model.c with the
 * towers' section parsers and the "heads" object): any bytes are either
 * refused with QIAO_ERR_FORMAT naming the config, or give a config whose
 * towers and heads are consistent and whose parameter table can be laid out
 * (names unique, sizes as the config says), without allocating the model.
 *
 * The same bytes then go, as JSON text, to the VQA split reader
 * (models/data/vqa_manifest.c): once as the manifest under a fixed
 * dataset.json, once as dataset.json over a fixed manifest line. Either is
 * refused with QIAO_ERR_FORMAT naming the file, or gives a data set whose
 * indices hold together. The corpus seeds both (model configs, and the
 * manifest lines and dataset.json files named vqa_*).
 *
 * Build: CC=clang cmake -S . -B build-fuzz -DQIAO_FUZZ=ON -DQIAO_BUILD_BENCH=OFF
 *        cmake --build build-fuzz --target fuzz_model_config
 * Run:   ./build-fuzz/bin/fuzz_model_config NEW_CORPUS_DIR tests/fuzz/corpus/model_config */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "models/data/vqa.h"
#include "models/model.h"

#include "check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A data set the VQA reader accepted: every index in range, the scenes'
 * question ranges tiling the questions in order. */
static void check_vqa(const qmod_vqa_dataset *d) {
    CHECK(d->n_scenes >= 1 && d->n_questions >= 1 && d->n_answers >= 1 && d->n_types >= 1);
    int64_t next = 0, spoken = 0;
    for (int64_t i = 0; i < d->n_scenes; i++) {
        const qmod_vqa_scene *s = &d->scenes[i];
        CHECK(s->id && s->id[0] && s->image && s->image[0] && s->n_objects >= 0);
        CHECK(s->first_question == next && s->n_questions >= 0);
        CHECK(s->n_objects == 0 || s->objects);
        for (int32_t k = 0; k < s->n_objects; k++) {
            const qmod_vqa_object *o = &s->objects[k];
            CHECK(o->r == 0 || (o->r > 0 && o->r <= 1 && o->x >= 0 && o->x <= 1 && o->y >= 0 && o->y <= 1));
            for (int a = 0; a < QMOD_VQA_NATTR; a++) CHECK(o->attr[a] >= -1 && o->attr[a] < d->n_attr[a]);
        }
        /* the cell labels index the lists, or are 0 (empty) or -1 (no target) */
        int32_t lab[16 * QMOD_VQA_NATTR];
        qmod_vqa_cell_labels(d, i, 4, lab);
        for (int c = 0; c < 16; c++)
            for (int a = 0; a < QMOD_VQA_NATTR; a++)
                CHECK(lab[c * QMOD_VQA_NATTR + a] >= -1 && lab[c * QMOD_VQA_NATTR + a] <= d->n_attr[a]);
        for (int64_t k = 0; k < s->n_questions; k++) {
            const qmod_vqa_question *q = &d->questions[next + k];
            CHECK(q->scene == i && q->answer >= 0 && q->answer < d->n_answers && q->type < d->n_types);
            CHECK(q->lang < QMOD_N_LANGS && q->text && q->text[0]);
            spoken += q->speech != NULL;
        }
        next += s->n_questions;
    }
    CHECK(next == d->n_questions && spoken == d->n_spoken);
}

static void fuzz_vqa(const char *text, size_t size) {
    static const char desc[] =
        "{\"answers\": [{\"id\": \"yes\"}, {\"id\": \"no\"}, {\"id\": \"3\"}], \"question_types\": [\"count\", "
        "\"exist\"], \"cogent_pairs\": [{\"color\": \"red\", \"shape\": \"triangle\"}], \"shapes\": [\"star\", "
        "\"triangle\"], \"colors\": [\"red\"], \"sizes\": [\"small\", \"large\"]}";
    static const char line[] =
        "{\"id\": \"s0\", \"image\": \"a.png\", \"objects\": [{\"color\": \"red\", \"shape\": \"star\", \"size\": "
        "\"small\", \"x\": 0.3, \"y\": 0.6, \"r\": 0.1}], "
        "\"qa\": [{\"lang\": \"en\", \"question\": \"How many?\", \"answer_id\": \"3\", \"type\": \"count\"}], "
        "\"speech\": {\"qa\": [\"q.wav\"]}}\n";
    for (int as_desc = 0; as_desc < 2; as_desc++) {
        qmod_vqa_dataset d;
        qiao_status st = as_desc ? qmod_vqa_dataset_parse("dir", "fuzz.jsonl", text, line, sizeof line - 1, &d)
                                 : qmod_vqa_dataset_parse("dir", "fuzz.jsonl", desc, text, size, &d);
        if (st != QIAO_OK) {
            CHECK(st == QIAO_ERR_FORMAT || st == QIAO_ERR_OUT_OF_MEMORY);
            CHECK(strstr(qiao_last_error(), as_desc ? "dataset.json" : "fuzz.jsonl") != NULL);
            CHECK(d.scenes == NULL && d.questions == NULL);
            continue;
        }
        check_vqa(&d);
        qmod_vqa_dataset_free(&d);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 1 << 16) return 0;
    char *json = malloc(size + 1);
    if (!json) return 0;
    memcpy(json, data, size);
    json[size] = 0;
    fuzz_vqa(json, size);
    qmod_config cfg;
    qiao_status st = qmod_config_from_string(json, "fuzz.json", &cfg);
    free(json);
    if (st != QIAO_OK) {
        CHECK(st == QIAO_ERR_FORMAT || st == QIAO_ERR_OUT_OF_MEMORY);
        CHECK(strstr(qiao_last_error(), "fuzz.json") != NULL);
        CHECK(cfg.json == NULL && cfg.prompts == NULL);
        return 0;
    }
    CHECK(cfg.json != NULL && cfg.towers != 0 && cfg.towers < (1u << QMOD_N_MODALITIES));
    CHECK(cfg.n_heads >= 0 && cfg.n_heads <= QMOD_MAX_HEADS);
    for (int i = 0; i < cfg.n_heads; i++) {
        CHECK(cfg.heads[i].fused ? cfg.has_fusion : qmod_has_tower(&cfg, cfg.heads[i].tower));
        char label[512];
        CHECK(qmod_head_label(&cfg, i, 0, "zh", label, sizeof label) == label && label[0]);
        CHECK(qmod_head_label(&cfg, i, cfg.heads[i].mlp.classes, NULL, label, sizeof label) == label);
        CHECK(qmod_head_find(&cfg, cfg.heads[i].name) == i);
        CHECK(cfg.heads[i].mlp.classes >= 1 && cfg.heads[i].mlp.in >= 1);
    }
    /* The space is never empty; the prompts are whole. */
    const char *space = qmod_config_space(&cfg);
    CHECK(space[0] && strlen(space) < QMOD_SPACE_MAX && qc_utf8_valid(space, strlen(space)));
    CHECK(cfg.n_prompts >= 0 && cfg.n_prompts <= QMOD_MAX_PROMPTS && (cfg.n_prompts == 0) == (cfg.prompts == NULL));
    CHECK(cfg.n_prompts == 0 || qmod_has_tower(&cfg, QMOD_TEXT));
    for (const char *p = cfg.prompts; p && p < cfg.prompts + cfg.prompts_len;) {
        const char *text = qmod_config_prompt(&cfg, p);
        CHECK(text && strlen(text) < QMOD_PROMPT_MAX && qc_utf8_valid(text, strlen(text)));
        p += strlen(p) + 1;
        CHECK(text == p); /* the first of that name is the one */
        p += strlen(p) + 1;
    }
    /* The stored JSON reads back to the same config. */
    qmod_config again;
    CHECK(qmod_config_from_string(cfg.json, "fuzz.json again", &again) == QIAO_OK);
    CHECK(again.towers == cfg.towers && again.n_heads == cfg.n_heads && again.embed_dim == cfg.embed_dim);
    CHECK(again.has_fusion == cfg.has_fusion && (!cfg.has_fusion || again.fusion.width == cfg.fusion.width));
    CHECK(!strcmp(qmod_config_space(&again), space) && again.prompts_len == cfg.prompts_len &&
          (!cfg.prompts || !memcmp(again.prompts, cfg.prompts, cfg.prompts_len)));
    qmod_config_free(&again);
    qc_table tab;
    qc_table_init_empty(&tab);
    st = qmod_describe(&tab, &cfg);
    if (st == QIAO_OK) {
        int64_t sum = 0;
        for (size_t i = 0; i < tab.n; i++) {
            CHECK(tab.t[i].numel >= 1);
            CHECK(qc_table_find(&tab, tab.t[i].name) == (int64_t)i);
            sum += tab.t[i].numel;
        }
        CHECK((size_t)sum <= tab.total);
    } else {
        CHECK(st == QIAO_ERR_TOO_LARGE || st == QIAO_ERR_INVALID_ARGUMENT || st == QIAO_ERR_FORMAT ||
              st == QIAO_ERR_OUT_OF_MEMORY);
    }
    qc_table_free(&tab);
    qmod_config_free(&cfg);
    return 0;
}
