/* libFuzzer target for the question path of the public VQA API
 * (sdk/api/vqa_api.c, models/vqa.c, fusion/): the first byte picks typed,
 * spoken or both, the rest is the question's text (any bytes: invalid
 * UTF-8, NULs cut it short, 100 KB) and, for a spoken question, the same
 * bytes read as 16-bit PCM at a rate the byte picks. Every call must either
 * answer, with an answer that keeps qiao.h's promises (1..top_k choices in
 * falling probability, weights that sum to 1, zh or en), or refuse with
 * QIAO_ERR_FORMAT (bad UTF-8) or QIAO_ERR_INVALID_ARGUMENT (no question,
 * no samples) and a message. The model is a tiny random VQA model built
 * from models/configs/tiny.json and the test tokenizer at start-up.
 *
 * Build: CC=clang CXX=clang++ cmake -S . -B build-fuzz -DQIAO_FUZZ=ON -DQIAO_BUILD_BENCH=OFF
 *        cmake --build build-fuzz --target fuzz_vqa_question
 * Run:   scripts/fuzz.sh fuzz_vqa_question */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "models/model.h"
#include "qiao.h"

#include "check.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static qiao_model *g_model;
static qiao_session *g_session;
static qiao_image *g_image;

static const char k_fusion[] = "{\"width\": 16, \"layers\": 1, \"heads\": 2, \"mlp\": 32, \"gate_hidden\": 8}";
static const char k_heads[] =
    "{\"answer\": {\"kind\": \"mlp\", \"tower\": \"fusion\", \"hidden\": 12, \"classes\": 3, \"labels\": [\"yes\", "
    "\"no\", \"red\"], \"label_text\": {\"zh\": [\"是\", \"否\", \"红色\"]}}, \"lang\": {\"kind\": \"mlp\", "
    "\"tower\": \"fusion\", \"classes\": 2}}";

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    qiao_tokenizer *tok = NULL;
    qmod_config file, sized, cfg;
    qmod_model *m = NULL;
    if (qiao_tokenizer_load(QIAO_FUZZ_TOKENIZER, &tok) != QIAO_OK) abort();
    if (qmod_config_from_file(QIAO_FUZZ_TINY_CONFIG, &file) != QIAO_OK) abort();
    if (qmod_config_for_tokenizer(&file, tok, &sized) != QIAO_OK) abort();
    cJSON *root = cJSON_Parse(sized.json);
    cJSON_AddItemToObject(root, "fusion", cJSON_Parse(k_fusion));
    cJSON_AddItemToObject(root, "heads", cJSON_Parse(k_heads));
    char *json = cJSON_PrintUnformatted(root);
    if (!json || qmod_config_from_string(json, "fuzz-vqa", &cfg) != QIAO_OK) abort();
    if (qmod_create(&cfg, 7, &m) != QIAO_OK) abort();
    m->tok = tok;
    char path[64];
    snprintf(path, sizeof path, "/tmp/fuzz-vqa-%d.safetensors", (int)getpid());
    if (qmod_save(m, path, QIAO_DTYPE_F32) != QIAO_OK) abort();
    if (qiao_model_load(path, &g_model) != QIAO_OK) abort();
    unlink(path);
    qiao_session_params sp = qiao_session_default_params();
    sp.n_threads = 1;
    if (qiao_session_new(g_model, &sp, &g_session) != QIAO_OK) abort();
    uint8_t px[32 * 32 * 3];
    for (size_t i = 0; i < sizeof px; i++) px[i] = (uint8_t)(i * 37u);
    if (qiao_image_from_rgb(px, 32, 32, 32 * 3, &g_image) != QIAO_OK) abort();
    cJSON_free(json);
    cJSON_Delete(root);
    qmod_config_free(&cfg);
    qmod_config_free(&sized);
    qmod_config_free(&file);
    qmod_free(m);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > 200000) return 0;
    const int mode = data[0] % 3; /* 0 typed, 1 spoken, 2 both */
    static const int rates[4] = {8000, 16000, 22050, 44100};
    const int rate = rates[(data[0] / 3) % 4];
    char *text = malloc(size);
    if (!text) return 0;
    memcpy(text, data + 1, size - 1);
    text[size - 1] = 0;
    qiao_audio *clip = NULL;
    if (mode != 0) {
        const size_t n = (size - 1) / 2;
        float *pcm = malloc((n ? n : 1) * sizeof *pcm);
        if (!pcm) {
            free(text);
            return 0;
        }
        for (size_t i = 0; i < n; i++) pcm[i] = (float)(int16_t)(data[1 + 2 * i] | data[2 + 2 * i] << 8) / 32768.0f;
        qiao_audio_params ap = qiao_audio_default_params();
        ap.target_rate = rate;
        if (n == 0 || qiao_audio_from_pcm(pcm, (int64_t)n, rate, 1, &ap, &clip) != QIAO_OK) clip = NULL;
        free(pcm);
    }
    qiao_vqa_answer a;
    qiao_status st = qiao_vqa_ask(g_session, g_image, mode == 1 ? NULL : text, clip, NULL, &a);
    if (st == QIAO_OK) {
        CHECK(a.n_top >= 1 && a.n_top <= 3);
        CHECK(!strcmp(a.lang, "zh") || !strcmp(a.lang, "en"));
        for (int k = 0; k < a.n_top; k++) {
            CHECK(a.top[k].p > 0.0f && a.top[k].p <= 1.0f);
            CHECK(k == 0 || a.top[k].p <= a.top[k - 1].p);
            CHECK(a.top[k].key[0] && a.top[k].text[0]);
        }
        CHECK(fabsf(a.w_text + a.w_image + a.w_audio - 1.0f) < 1e-4f);
        CHECK(clip || a.w_audio == 0.0f);
    } else {
        CHECK(st == QIAO_ERR_FORMAT || st == QIAO_ERR_INVALID_ARGUMENT);
        CHECK(qiao_last_error()[0] != '\0');
        CHECK(a.n_top == 0);
    }
    qiao_audio_free(clip);
    free(text);
    return 0;
}
