/* The model container (models/model.c): create -> save -> load round trips
 * in F32 (bit-identical) and BF16 (bf16-rounded, half the size), the
 * embedded tokenizer, the shipped base config under issue 5's 25 MB limit,
 * malformed model files and configs, byte-deterministic saves, models of
 * any subset of the towers, the towers' token sequences, and the optional
 * "space" and "prompts" of a config. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "core/safetensors.h"
#include "models/embed.h"
#include "models/model.h"
#include "qiao.h"
#include "model_fixture.h"
#include "testutil.h"

#define TINY_JSON QIAO_SOURCE_DIR "/models/configs/tiny.json"
#define BASE_JSON QIAO_SOURCE_DIR "/models/configs/base.json"
#define TOK_PATH QIAO_TEST_DATA "/tokenizer/tok-test.safetensors"

static void tmp_path(char *buf, size_t n, const char *tag) {
    const char *dir = getenv("TMPDIR");
    snprintf(buf, n, "%s/qiao_test_model_%d_%s.safetensors", dir && *dir ? dir : "/tmp", (int)getpid(), tag);
}

static long file_size(const char *path) {
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    return (long)sb.st_size;
}

static char *read_all(const char *path, size_t *len) {
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, fp), (size_t)n);
    fclose(fp);
    buf[n] = 0;
    *len = (size_t)n;
    return buf;
}

static void expect(qiao_status got, qiao_status want, const char *needle) {
    if (got != want || (needle && !strstr(qiao_last_error(), needle)))
        printf("status %d (want %d), message: %s (want \"%s\")\n", (int)got, (int)want, qiao_last_error(),
               needle ? needle : "");
    else if (got != QIAO_OK)
        printf("  expected error: %s\n", qiao_last_error());
    assert_int_equal(got, want);
    if (needle) assert_non_null(strstr(qiao_last_error(), needle));
}

static qmod_model *tiny_model(uint64_t seed) {
    qmod_config cfg;
    qiao_status st = qmod_config_from_file(TINY_JSON, &cfg);
    if (st != QIAO_OK) printf("%s\n", qiao_last_error());
    assert_int_equal(st, QIAO_OK);
    qmod_model *m = NULL;
    assert_int_equal(qmod_create(&cfg, seed, &m), QIAO_OK);
    qmod_config_free(&cfg);
    return m;
}

static void roundtrip_f32(void **state) {
    (void)state;
    char path[512];
    tmp_path(path, sizeof path, "f32");
    qmod_model *m = tiny_model(7);
    for (int i = 0; i < QMOD_N_PAIRS; i++) assert_float_equal(*m->p.logit_scale[i], logf(1.0f / 0.07f), 1e-6);
    assert_true(qmod_param_count(m, NULL) ==
                qmod_param_count(m, "text.") + qmod_param_count(m, "image.") + qmod_param_count(m, "audio.") + 3);
    assert_int_equal(qmod_save(m, path, QIAO_DTYPE_F32), QIAO_OK);
    qmod_model *l = NULL;
    assert_int_equal(qmod_load(path, &l), QIAO_OK);
    assert_int_equal(l->tab.n, m->tab.n);
    assert_null(l->tok);
    assert_string_equal(l->cfg.name, "tiny");
    for (size_t i = 0; i < m->tab.n; i++) {
        const qc_tensor_desc *t = &m->tab.t[i];
        assert_string_equal(t->name, l->tab.t[i].name);
        if (memcmp(m->arena.base + t->offset, l->arena.base + l->tab.t[i].offset,
                   (size_t)t->numel * sizeof(float)) != 0) {
            printf("tensor %s differs\n", t->name);
            fail();
        }
    }
    /* The bound pointers of the loaded model reach the loaded values. */
    assert_true(l->p.text.piece_emb == l->arena.base + l->tab.t[qc_table_find(&l->tab, "text.piece_emb.weight")].offset);
    assert_float_equal(*l->p.logit_scale[QMOD_PAIR_AUDIO_IMAGE], logf(1.0f / 0.07f), 1e-6);

    /* What `qiao info` sees through the public API. */
    qiao_model_file *f = NULL;
    assert_int_equal(qiao_model_file_open(path, &f), QIAO_OK);
    assert_string_equal(qiao_model_file_metadata(f, "qiao.format"), "qiao-model-1");
    assert_string_equal(qiao_model_file_metadata(f, "qiao.version"), qiao_version());
    assert_int_equal(qiao_model_file_param_count(f), qmod_param_count(m, NULL));
    cJSON *stored = cJSON_Parse(qiao_model_file_metadata(f, "qiao.config"));
    size_t len;
    char *text = read_all(TINY_JSON, &len);
    cJSON *orig = cJSON_Parse(text);
    assert_non_null(stored);
    assert_non_null(orig);
    assert_true(cJSON_Compare(stored, orig, 1));
    cJSON_Delete(stored);
    cJSON_Delete(orig);
    free(text);
    qiao_model_file_close(f);

    /* The same file from memory. */
    char *img = read_all(path, &len);
    qmod_model *mm = NULL;
    assert_int_equal(qmod_load_memory(img, len, "img", &mm), QIAO_OK);
    assert_memory_equal(mm->arena.base, l->arena.base, l->tab.total * sizeof(float));
    qmod_free(mm);
    free(img);
    qmod_free(l);
    qmod_free(m);
    unlink(path);
}

static void roundtrip_bf16(void **state) {
    (void)state;
    char p32[512], p16[512];
    tmp_path(p32, sizeof p32, "r32");
    tmp_path(p16, sizeof p16, "r16");
    qmod_model *m = tiny_model(11);
    assert_int_equal(qmod_save(m, p32, QIAO_DTYPE_F32), QIAO_OK);
    assert_int_equal(qmod_save(m, p16, QIAO_DTYPE_BF16), QIAO_OK);
    expect(qmod_save(m, p16, QIAO_DTYPE_F16), QIAO_ERR_INVALID_ARGUMENT, "BF16");
    long s32 = file_size(p32), s16 = file_size(p16);
    printf("tiny: %lld params, F32 %ld bytes, BF16 %ld bytes\n", (long long)qmod_param_count(m, NULL), s32, s16);
    assert_true(s16 < s32 * 0.52 && s16 > s32 * 0.48);
    qmod_model *l = NULL;
    assert_int_equal(qmod_load(p16, &l), QIAO_OK);
    size_t diffs = 0;
    for (size_t i = 0; i < m->tab.n; i++) {
        const qc_tensor_desc *t = &m->tab.t[i];
        const float *a = m->arena.base + t->offset, *b = l->arena.base + l->tab.t[i].offset;
        for (int64_t j = 0; j < t->numel; j++) {
            uint16_t h;
            qc_f32_to_bf16_n(&h, &a[j], 1);
            float want = qc_bf16_to_f32(h);
            if (memcmp(&want, &b[j], sizeof want) != 0) diffs++;
        }
    }
    assert_int_equal(diffs, 0);
    qmod_free(l);
    qmod_free(m);
    unlink(p32);
    unlink(p16);
}

static void ids_of(const qiao_tokenizer *tok, const char *s, qiao_tokens **out) {
    qiao_tokenize_params tp = qiao_tokenize_default_params();
    assert_int_equal(qiao_tokenize(tok, s, strlen(s), &tp, out), QIAO_OK);
    assert_true((*out)->count > 0);
}

static void with_tokenizer(void **state) {
    (void)state;
    char path[512];
    tmp_path(path, sizeof path, "tok");
    qiao_tokenizer *ref = NULL;
    assert_int_equal(qiao_tokenizer_load(TOK_PATH, &ref), QIAO_OK);
    qmod_model *m = qt_tiny_model(3, false);
    qmod_config cfg;
    assert_int_equal(qmod_config_copy(&m->cfg, &cfg), QIAO_OK);
    assert_int_equal(qmod_set_tokenizer(m, TOK_PATH), QIAO_OK);
    assert_int_equal(qmod_save(m, path, QIAO_DTYPE_BF16), QIAO_OK);
    qmod_model *l = NULL;
    assert_int_equal(qmod_load(path, &l), QIAO_OK);
    assert_non_null(l->tok);
    const char *texts[] = {"The quick brown fox jumps over the lazy dog.", "今天天气很好，我们去公园散步吧。",
                           "Café naïve 123 — mixed 中文 text"};
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
        qiao_tokens *a = NULL, *b = NULL;
        ids_of(ref, texts[i], &a);
        ids_of(l->tok, texts[i], &b);
        assert_int_equal(a->count, b->count);
        assert_int_equal(a->k, b->k);
        assert_memory_equal(a->ids, b->ids, a->count * sizeof(int32_t));
        assert_memory_equal(a->char_ids, b->char_ids, a->count * (size_t)a->k * sizeof(int32_t));
        assert_memory_equal(a->tags, b->tags, a->count);
        qiao_tokens_free(a);
        qiao_tokens_free(b);
    }
    qmod_free(l);

    /* A tokenizer whose sizes disagree with the text config is refused,
     * giving both numbers. */
    int64_t tv = qiao_tokenizer_vocab_size(ref);
    qmod_config off;
    assert_int_equal(qmod_config_copy(&cfg, &off), QIAO_OK);
    off.text.vocab = tv + 1;
    qmod_model *t = NULL;
    assert_int_equal(qmod_create(&off, 1, &t), QIAO_OK);
    qmod_config_free(&off);
    char want[128];
    snprintf(want, sizeof want, "vocab %lld != text config vocab %lld", (long long)tv, (long long)(tv + 1));
    expect(qmod_set_tokenizer(t, TOK_PATH), QIAO_ERR_INVALID_ARGUMENT, want);
    assert_null(t->tok);
    expect(qmod_set_tokenizer(t, QIAO_TEST_DATA "/no/such/tok.safetensors"), QIAO_ERR_IO, NULL);
    qmod_free(t);

    qmod_config_free(&cfg);
    qmod_free(m);
    qiao_tokenizer_free(ref);
    unlink(path);
}

static void base_size(void **state) {
    (void)state;
    char path[512];
    tmp_path(path, sizeof path, "base");
    qmod_config cfg;
    qiao_status st = qmod_config_from_file(BASE_JSON, &cfg);
    if (st != QIAO_OK) printf("%s\n", qiao_last_error());
    assert_int_equal(st, QIAO_OK);
    qmod_model *m = NULL;
    assert_int_equal(qmod_create(&cfg, 5, &m), QIAO_OK);
    int64_t nt = qmod_param_count(m, "text."), ni = qmod_param_count(m, "image.");
    int64_t na = qmod_param_count(m, "audio."), nl = qmod_param_count(m, "logit_scale.");
    int64_t all = qmod_param_count(m, NULL);
    assert_true(nt > 0 && ni > 0 && na > 0);
    assert_int_equal(nl, 3);
    assert_true(all == nt + ni + na + nl);
    assert_int_equal(qmod_save(m, path, QIAO_DTYPE_BF16), QIAO_OK);
    long size = file_size(path);
    printf("base: text %lld, image %lld, audio %lld, logit_scale %lld, total %lld params; BF16 file %ld bytes "
           "(%.2f MB)\n",
           (long long)nt, (long long)ni, (long long)na, (long long)nl, (long long)all, size, size / 1e6);
    assert_true(size >= 2 * all);
    assert_true(size <= 25 * 1000 * 1000);
    qmod_free(m);
    qmod_config_free(&cfg);
    unlink(path);
}

/* Writes m's tensors with the named one dropped or reshaped, and the given metadata. */
static void write_variant(const qmod_model *m, const char *path, const char *drop, const char *reshape,
                          const qc_st_kv *meta, size_t n_meta) {
    qc_st_entry *e = calloc(m->tab.n, sizeof *e);
    assert_non_null(e);
    qc_st_table_entries(&m->tab, m->arena.base, e);
    size_t n = 0;
    static const float two[2] = {1.0f, 2.0f};
    for (size_t i = 0; i < m->tab.n; i++) {
        if (drop && strcmp(e[i].name, drop) == 0) continue;
        e[n] = e[i];
        if (reshape && strcmp(e[n].name, reshape) == 0) {
            e[n].ndim = 1;
            e[n].shape[0] = 2;
            e[n].data = two;
        }
        n++;
    }
    assert_int_equal(qc_st_write(path, e, n, meta, n_meta), QIAO_OK);
    free(e);
}

static void bad_files(void **state) {
    (void)state;
    char path[512];
    tmp_path(path, sizeof path, "bad");
    qmod_model *m = tiny_model(2), *l = NULL;
    const qc_st_kv good[] = {{"qiao.config", m->cfg.json}, {"qiao.format", "qiao-model-1"}};

    const qc_st_kv no_config[] = {{"qiao.format", "qiao-model-1"}};
    write_variant(m, path, NULL, NULL, no_config, 1);
    expect(qmod_load(path, &l), QIAO_ERR_FORMAT, "qiao.config");
    assert_non_null(strstr(qiao_last_error(), path));
    assert_null(l);

    write_variant(m, path, NULL, NULL, NULL, 0);
    expect(qmod_load(path, &l), QIAO_ERR_FORMAT, "qiao.format");

    const qc_st_kv wrong_format[] = {{"qiao.config", m->cfg.json}, {"qiao.format", "qiao-model-9"}};
    write_variant(m, path, NULL, NULL, wrong_format, 2);
    expect(qmod_load(path, &l), QIAO_ERR_FORMAT, "qiao-model-9");

    const qc_st_kv not_json[] = {{"qiao.config", "{\"name\": \"tiny\", "}, {"qiao.format", "qiao-model-1"}};
    write_variant(m, path, NULL, NULL, not_json, 2);
    expect(qmod_load(path, &l), QIAO_ERR_FORMAT, "not valid JSON");
    assert_non_null(strstr(qiao_last_error(), path));

    /* Valid JSON, but an encoder key is wrong: the message names file and key. */
    size_t blen = strlen(m->cfg.json) + 1;
    char *bad = malloc(blen);
    assert_non_null(bad);
    memcpy(bad, m->cfg.json, blen);
    char *w = strstr(bad, "\"heads\":4");
    assert_non_null(w);
    memcpy(w, "\"heads\":3", 9);
    const qc_st_kv bad_key[] = {{"qiao.config", bad}, {"qiao.format", "qiao-model-1"}};
    write_variant(m, path, NULL, NULL, bad_key, 2);
    expect(qmod_load(path, &l), QIAO_ERR_FORMAT, "heads");
    assert_non_null(strstr(qiao_last_error(), path));
    free(bad);

    write_variant(m, path, "logit_scale.audio_text", NULL, good, 2);
    expect(qmod_load(path, &l), QIAO_ERR_FORMAT, "logit_scale.audio_text");
    assert_non_null(strstr(qiao_last_error(), path));

    assert_true(qc_table_find(&m->tab, "image.trunk.ln_f.weight") >= 0);
    write_variant(m, path, "image.trunk.ln_f.weight", NULL, good, 2);
    expect(qmod_load(path, &l), QIAO_ERR_FORMAT, "image.trunk.ln_f.weight");

    write_variant(m, path, NULL, "text.gate.bias", good, 2);
    assert_true(qc_table_find(&m->tab, "text.gate.bias") >= 0);
    expect(qmod_load(path, &l), QIAO_ERR_FORMAT, "text.gate.bias");
    assert_null(l);

    expect(qmod_load(QIAO_TEST_DATA "/no/such/model.safetensors", &l), QIAO_ERR_IO, "model.safetensors");
    const char junk[] = "definitely not a safetensors file";
    expect(qmod_load_memory(junk, sizeof junk, "junk", &l), QIAO_ERR_FORMAT, "junk");
    expect(qmod_load_memory(junk, 0, "empty", &l), QIAO_ERR_FORMAT, NULL);
    assert_null(l);
    qmod_free(m);
    unlink(path);
}

static void deterministic(void **state) {
    (void)state;
    char pa[512], pb[512], pc[512];
    tmp_path(pa, sizeof pa, "da");
    tmp_path(pb, sizeof pb, "db");
    tmp_path(pc, sizeof pc, "dc");
    qmod_model *a = tiny_model(42), *b = tiny_model(42), *c = tiny_model(43);
    assert_int_equal(qmod_save(a, pa, QIAO_DTYPE_BF16), QIAO_OK);
    assert_int_equal(qmod_save(b, pb, QIAO_DTYPE_BF16), QIAO_OK);
    assert_int_equal(qmod_save(c, pc, QIAO_DTYPE_BF16), QIAO_OK);
    size_t la, lb, lc;
    char *ba = read_all(pa, &la), *bb = read_all(pb, &lb), *bc = read_all(pc, &lc);
    assert_int_equal(la, lb);
    assert_memory_equal(ba, bb, la);
    assert_int_equal(la, lc);
    assert_true(memcmp(ba, bc, la) != 0);
    free(ba);
    free(bb);
    free(bc);
    qmod_free(a);
    qmod_free(b);
    qmod_free(c);
    unlink(pa);
    unlink(pb);
    unlink(pc);
}

static void config_errors(void **state) {
    (void)state;
    qmod_config cfg;
    expect(qmod_config_from_file(QIAO_TEST_DATA "/no/such.json", &cfg), QIAO_ERR_IO, "such.json");
    expect(qmod_config_from_string("[1,2]", "c.json", &cfg), QIAO_ERR_FORMAT, "c.json");
    expect(qmod_config_from_string("{\"embed_dim\":1024}", "c.json", &cfg), QIAO_ERR_FORMAT, "\"name\"");
    expect(qmod_config_from_string("{\"name\":\"x\",\"embed_dim\":-3}", "c.json", &cfg), QIAO_ERR_FORMAT,
           "embed_dim");
    expect(qmod_config_from_string("{\"name\":\"x\",\"embed_dim\":\"big\"}", "c.json", &cfg), QIAO_ERR_FORMAT,
           "embed_dim");
    /* A config holds any non-empty subset of the towers: without all three
     * it names the keys it needs. */
    size_t len;
    char *text = read_all(TINY_JSON, &len);
    cJSON *root = cJSON_Parse(text);
    const char *secs[] = {"text", "image", "audio"};
    for (int i = 0; i < 3; i++)
        cJSON_DeleteItemFromObjectCaseSensitive(root, secs[i]);
    char *s = cJSON_PrintUnformatted(root);
    expect(qmod_config_from_string(s, "c.json", &cfg), QIAO_ERR_FORMAT, "no tower");
    cJSON_free(s);
    cJSON_AddItemToObject(root, "image", cJSON_CreateArray());
    s = cJSON_PrintUnformatted(root);
    expect(qmod_config_from_string(s, "c.json", &cfg), QIAO_ERR_FORMAT, "\"image\" must be an object");
    cJSON_free(s);
    cJSON_Delete(root);
    free(text);
}

/* tiny.json with `extra` (a JSON object's members, without the braces)
 * added at the top level, parsed as "c.json". */
static qiao_status tiny_extra(const char *extra, qmod_config *cfg) {
    size_t len;
    char *text = read_all(TINY_JSON, &len);
    char *brace = strrchr(text, '}');
    assert_non_null(brace);
    *brace = '\0';
    size_t n = len + strlen(extra) + 8;
    char *json = malloc(n);
    assert_non_null(json);
    snprintf(json, n, "%s, %s}", text, extra);
    qiao_status st = qmod_config_from_string(json, "c.json", cfg);
    free(json);
    free(text);
    return st;
}

/* The optional "space" and "prompts": read, kept by a copy, a save and a
 * load, seen through the public API; without them the space is the name
 * and there are no prompts; every malformed form refused naming the key. */
static void space_prompts(void **state) {
    (void)state;
    qmod_config cfg, copy;
    expect(tiny_extra("\"space\": \"org/model-x\", \"prompts\": {\"query\": \"query: \", \"document\": \"passage: \", "
                     "\"instruct_2\": \"Given a question\\nfind: \"}",
                     &cfg),
           QIAO_OK, NULL);
    assert_string_equal(qmod_config_space(&cfg), "org/model-x");
    assert_string_equal(qmod_config_prompt(&cfg, "query"), "query: ");
    assert_string_equal(qmod_config_prompt(&cfg, "document"), "passage: ");
    assert_string_equal(qmod_config_prompt(&cfg, "instruct_2"), "Given a question\nfind: ");
    assert_null(qmod_config_prompt(&cfg, "passage"));
    assert_null(qmod_config_prompt(&cfg, NULL));
    assert_int_equal(qmod_config_copy(&cfg, &copy), QIAO_OK);
    qmod_config_free(&cfg); /* the copy owns its own */
    assert_string_equal(qmod_config_prompt(&copy, "document"), "passage: ");
    assert_string_equal(qmod_config_space(&copy), "org/model-x");

    /* Through a model file and the public API. */
    char path[512];
    tmp_path(path, sizeof path, "prompts");
    qiao_tokenizer *tok = NULL;
    assert_int_equal(qiao_tokenizer_load(TOK_PATH, &tok), QIAO_OK);
    qmod_config fitted;
    expect(qmod_config_for_tokenizer(&copy, tok, &fitted), QIAO_OK, NULL);
    assert_string_equal(qmod_config_prompt(&fitted, "query"), "query: ");
    qmod_model *m = NULL;
    assert_int_equal(qmod_create(&fitted, 1, &m), QIAO_OK);
    m->tok = tok;
    assert_int_equal(qmod_save(m, path, QIAO_DTYPE_F32), QIAO_OK);
    qmod_free(m);
    qmod_config_free(&fitted);
    qmod_config_free(&copy);
    qiao_model *pm = NULL;
    assert_int_equal(qiao_model_load(path, &pm), QIAO_OK);
    assert_string_equal(qiao_model_space(pm), "org/model-x");
    assert_string_equal(qiao_model_prompt(pm, "query"), "query: ");
    assert_string_equal(qiao_model_prompt(pm, "document"), "passage: ");
    assert_string_equal(qiao_model_prompt(pm, "summary"), "");
    assert_string_equal(qiao_model_prompt(pm, NULL), "");
    qiao_model_free(pm);
    assert_string_equal(qiao_model_space(NULL), "");
    assert_string_equal(qiao_model_prompt(NULL, "query"), "");
    unlink(path);

    /* Without the keys: the name is the space; no prompts. */
    expect(tiny_extra("\"source\": {\"note\": \"no space, no prompts\"}", &cfg), QIAO_OK, NULL);
    assert_string_equal(qmod_config_space(&cfg), cfg.name);
    assert_null(qmod_config_prompt(&cfg, "query"));
    qmod_config_free(&cfg);
    /* An empty prompt is a prompt (a model may want none before documents). */
    expect(tiny_extra("\"prompts\": {\"document\": \"\"}", &cfg), QIAO_OK, NULL);
    assert_string_equal(qmod_config_prompt(&cfg, "document"), "");
    qmod_config_free(&cfg);

    char long_space[400], long_prompt[1200], many[600];
    snprintf(long_space, sizeof long_space, "\"space\": \"%0300d\"", 0);
    snprintf(long_prompt, sizeof long_prompt, "\"prompts\": {\"query\": \"%01100d\"}", 0);
    size_t at = (size_t)snprintf(many, sizeof many, "\"prompts\": {");
    for (int i = 0; i < QMOD_MAX_PROMPTS + 1; i++)
        at += (size_t)snprintf(many + at, sizeof many - at, "%s\"p%d\": \"x\"", i ? ", " : "", i);
    snprintf(many + at, sizeof many - at, "}");
    expect(tiny_extra("\"space\": \"\"", &cfg), QIAO_ERR_FORMAT, "key \"space\"");
    expect(tiny_extra("\"space\": 7", &cfg), QIAO_ERR_FORMAT, "key \"space\"");
    expect(tiny_extra("\"space\": \"a\\tb\"", &cfg), QIAO_ERR_FORMAT, "control characters");
    expect(tiny_extra(long_space, &cfg), QIAO_ERR_FORMAT, "key \"space\"");
    expect(tiny_extra("\"prompts\": [\"query: \"]", &cfg), QIAO_ERR_FORMAT, "\"prompts\" must be an object");
    expect(tiny_extra("\"prompts\": {\"Query\": \"q\"}", &cfg), QIAO_ERR_FORMAT, "prompt name \"Query\"");
    expect(tiny_extra("\"prompts\": {\"query\": 1}", &cfg), QIAO_ERR_FORMAT, "prompts.query");
    expect(tiny_extra(long_prompt, &cfg), QIAO_ERR_FORMAT, "prompts.query");
    expect(tiny_extra(many, &cfg), QIAO_ERR_FORMAT, "more than 8 prompts");
    expect(tiny_extra("\"prompts\": {\"query\": \"a\", \"query\": \"b\"}", &cfg), QIAO_ERR_FORMAT, "given twice");
    /* Prompts are for texts: a model without a text tower has no use for them. */
    size_t len;
    char *text = read_all(TINY_JSON, &len);
    cJSON *root = cJSON_Parse(text);
    free(text);
    cJSON_DeleteItemFromObjectCaseSensitive(root, "text");
    cJSON_AddItemToObject(root, "prompts", cJSON_Parse("{\"query\": \"query: \"}"));
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    expect(qmod_config_from_string(s, "c.json", &cfg), QIAO_ERR_FORMAT, "needs a text tower");
    cJSON_free(s);
}

/* tiny.json with only the towers in `mask` (bit 1 << QMOD_*), its text
 * section fitted to the test tokenizer when it has one. */
static qmod_model *subset_model(uint32_t mask, uint64_t seed, qiao_tokenizer *tok) {
    size_t len;
    char *text = read_all(TINY_JSON, &len);
    cJSON *root = cJSON_Parse(text);
    free(text);
    const char *secs[] = {"text", "image", "audio"};
    for (int i = 0; i < 3; i++)
        if (!(mask >> i & 1u)) cJSON_DeleteItemFromObjectCaseSensitive(root, secs[i]);
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    qmod_config cfg, fitted;
    expect(qmod_config_from_string(s, "subset", &cfg), QIAO_OK, NULL);
    cJSON_free(s);
    assert_int_equal(cfg.towers, mask);
    if (mask & 1u) {
        expect(qmod_config_for_tokenizer(&cfg, tok, &fitted), QIAO_OK, NULL);
        qmod_config_free(&cfg);
        cfg = fitted;
    } else {
        expect(qmod_config_for_tokenizer(&cfg, tok, &fitted), QIAO_ERR_INVALID_ARGUMENT, "no text tower");
    }
    qmod_model *m = NULL;
    expect(qmod_create(&cfg, seed, &m), QIAO_OK, NULL);
    qmod_config_free(&cfg);
    return m;
}

/* Every non-empty subset of the towers makes a model: its table holds
 * exactly those towers (with the full model's names and shapes) and the
 * temperatures of the pairs among them; with the full model's weights a
 * tower embeds bit-identically with or without the others; a tower the
 * model lacks is a clear error; the subset survives a save and load. */
static void tower_subsets(void **state) {
    (void)state;
    qiao_tokenizer *tok = NULL;
    expect(qiao_tokenizer_load(TOK_PATH, &tok), QIAO_OK, NULL);
    qmod_model *full = subset_model(7u, 5, tok);
    assert_int_equal(qmod_set_tokenizer(full, TOK_PATH), QIAO_OK);
    qb_exec ex;
    qb_exec_cpu(&ex, 1);
    /* Inputs: two texts, a picture, a second of a chirp. */
    const char *texts[] = {"a red circle", "两个蓝色的方块"};
    uint8_t rgb[48 * 40 * 3];
    for (size_t i = 0; i < sizeof rgb; i++)
        rgb[i] = (uint8_t)(i * 37 % 251);
    qiao_image *img = NULL;
    expect(qiao_image_from_rgb(rgb, 48, 40, 48 * 3, &img), QIAO_OK, NULL);
    float pcm[16000];
    for (int i = 0; i < 16000; i++)
        pcm[i] = 0.3f * sinf(6.2831853f * (200.0f + 0.2f * (float)i) * (float)i / 16000.0f);
    qiao_audio *clip = NULL;
    expect(qiao_audio_from_pcm(pcm, 16000, 16000, 1, NULL, &clip), QIAO_OK, NULL);
    const void *const items[3][2] = {{texts[0], texts[1]}, {img, img}, {clip, clip}};
    const size_t D = (size_t)full->cfg.embed_dim;
    float ref[3][2 * 1024], got[2 * 1024];
    assert_true(D <= 1024);
    qmod_work w;
    for (int mod = 0; mod < QMOD_N_MODALITIES; mod++) {
        memset(&w, 0, sizeof w);
        expect(qmod_embed(&ex, full, &w, (qmod_modality)mod, items[mod], 2, ref[mod]), QIAO_OK, NULL);
        qmod_work_free(&w);
    }
    for (uint32_t mask = 1; mask < 7; mask++) {
        qmod_model *m = subset_model(mask, 5, tok);
        if (mask & 1u)
            assert_int_equal(qmod_set_tokenizer(m, TOK_PATH), QIAO_OK);
        else
            expect(qmod_set_tokenizer(m, TOK_PATH), QIAO_ERR_INVALID_ARGUMENT, "no text tower");
        int64_t want = 0;
        const char *prefixes[] = {"text.", "image.", "audio."};
        for (int mod = 0; mod < QMOD_N_MODALITIES; mod++) {
            const int64_t n = qmod_param_count(m, prefixes[mod]);
            assert_true((mask >> mod & 1u) ? n == qmod_param_count(full, prefixes[mod]) : n == 0);
            want += n;
        }
        for (int pair = 0; pair < QMOD_N_PAIRS; pair++) {
            assert_int_equal(qmod_has_pair(&m->cfg, pair), m->p.logit_scale[pair] != NULL);
            want += m->p.logit_scale[pair] ? 1 : 0;
        }
        assert_true(qmod_param_count(m, NULL) == want);
        /* Every tensor is one of the full model's, of the same shape: take its values. */
        for (size_t i = 0; i < m->tab.n; i++) {
            const qc_tensor_desc *t = &m->tab.t[i];
            const ptrdiff_t j = qc_table_find(&full->tab, t->name);
            assert_true(j >= 0 && full->tab.t[j].numel == t->numel);
            memcpy(m->arena.base + t->offset, full->arena.base + full->tab.t[j].offset,
                   (size_t)t->numel * sizeof(float));
        }
        char path[512];
        tmp_path(path, sizeof path, "subset");
        assert_int_equal(qmod_save(m, path, QIAO_DTYPE_F32), QIAO_OK);
        qmod_model *l = NULL;
        expect(qmod_load(path, &l), QIAO_OK, NULL);
        unlink(path);
        assert_int_equal(l->cfg.towers, mask);
        assert_int_equal(l->tab.n, m->tab.n);
        for (int mod = 0; mod < QMOD_N_MODALITIES; mod++) {
            memset(&w, 0, sizeof w);
            qiao_status st = qmod_embed(&ex, l, &w, (qmod_modality)mod, items[mod], 2, got);
            if (mask >> mod & 1u) {
                expect(st, QIAO_OK, NULL);
                assert_memory_equal(got, ref[mod], 2 * D * sizeof(float));
            } else {
                expect(st, QIAO_ERR_UNSUPPORTED, "tower");
                expect(qmod_work_init(&w, l, (qmod_modality)mod, 2, 0, false), QIAO_ERR_UNSUPPORTED, "tower");
            }
            qmod_work_free(&w);
        }
        qmod_free(l);
        qmod_free(m);
    }
    qiao_image_free(img);
    qiao_audio_free(clip);
    qiao_tokenizer_free(tok);
    qmod_free(full);
}

/* The token sequence each tower's trunk ends with, and a gradient entered
 * there: (B, T, C) with T the trunk's tokens (audio after its stem's
 * strides), and the masks that say which are real; a backward from the
 * tokens alone reaches the tower's first parameters, and a backward from
 * both entries is the sum of the two alone. */
static void token_sequences(void **state) {
    (void)state;
    qiao_tokenizer *tok = NULL;
    expect(qiao_tokenizer_load(TOK_PATH, &tok), QIAO_OK, NULL);
    qmod_model *m = subset_model(7u, 3, tok);
    assert_int_equal(qmod_set_tokenizer(m, TOK_PATH), QIAO_OK);
    qb_exec ex;
    qb_exec_cpu(&ex, 1);
    const char *texts[] = {"a red circle to the left of a square", "圆"};
    qmod_batch b;
    expect(qmod_batch_text(m, texts, 2, &b), QIAO_OK, NULL);
    qmod_work w;
    expect(qmod_work_init(&w, m, QMOD_TEXT, 2, b.T, true), QIAO_OK, NULL);
    const float *emb = NULL;
    expect(qmod_forward(&ex, m, &w, &b, &emb), QIAO_OK, NULL);
    qmod_token_seq ts;
    expect(qmod_tokens(m, &w, &b, &ts), QIAO_OK, NULL);
    assert_true(ts.B == 2 && ts.T == b.T && ts.C == m->cfg.text.trunk.C);
    assert_ptr_equal(ts.mask, b.mask);
    assert_true(b.lengths[1] < b.lengths[0]);
    /* After the final norm: each real token's row has mean ~0 before the affine (ones, zeros at init). */
    double mean = 0;
    for (int64_t c = 0; c < ts.C; c++)
        mean += ts.x[c];
    assert_true(fabs(mean / (double)ts.C) < 1e-4);
    const size_t n_tok = (size_t)(ts.B * ts.T * ts.C), n_emb = (size_t)(2 * m->cfg.embed_dim);
    float *dtok = malloc(n_tok * sizeof(float)), *demb = malloc(n_emb * sizeof(float));
    assert_true(dtok && demb);
    for (size_t i = 0; i < n_tok; i++)
        dtok[i] = (float)((int)(i * 7919 % 200) - 100) / 100.0f;
    for (size_t i = 0; i < n_emb; i++)
        demb[i] = (float)((int)(i * 104729 % 200) - 100) / 100.0f;
    qc_arena g[3];
    qmod_params gp[3];
    const float *dembs[3] = {demb, NULL, demb}, *dtoks[3] = {NULL, dtok, dtok};
    for (int k = 0; k < 3; k++) {
        assert_int_equal(qc_arena_alloc(&g[k], m->tab.total), QIAO_OK);
        qc_arena_zero(&g[k]);
        qc_table_bind(&m->tab, g[k].base, &gp[k]);
        qmod_backward_at(&ex, m, &gp[k], &w, &b, dembs[k], dtoks[k]);
    }
    const ptrdiff_t emb_i = qc_table_find(&m->tab, "text.piece_emb.weight");
    const ptrdiff_t proj_i = qc_table_find(&m->tab, "text.trunk.proj.weight");
    assert_true(emb_i >= 0 && proj_i >= 0);
    double from_tokens = 0, proj_from_tokens = 0, worst = 0, scale = 0;
    const qc_tensor_desc *te = &m->tab.t[emb_i], *tp = &m->tab.t[proj_i];
    for (int64_t j = 0; j < te->numel; j++)
        from_tokens += fabs(g[1].base[te->offset + j]);
    for (int64_t j = 0; j < tp->numel; j++)
        proj_from_tokens += fabs(g[1].base[tp->offset + j]);
    for (size_t j = 0; j < m->tab.total; j++) {
        worst = fmax(worst, fabs((double)g[2].base[j] - g[0].base[j] - g[1].base[j]));
        scale = fmax(scale, fabs((double)g[2].base[j]));
    }
    printf("token gradient: |d piece_emb| %.3g, |d proj| %.3g; both vs the sum of each: max |diff| %.3g of %.3g\n",
           from_tokens, proj_from_tokens, worst, scale);
    assert_true(from_tokens > 1e-3);
    assert_true(proj_from_tokens == 0.0); /* the tokens come before the projection */
    assert_true(worst <= 1e-5 * scale);
    for (int k = 0; k < 3; k++)
        qc_arena_free(&g[k]);
    free(dtok);
    free(demb);
    qmod_work_free(&w);
    qmod_batch_free(&b);
    /* Audio: the trunk's tokens follow the stem's strides, with their own mask. */
    float pcm[24000];
    for (int i = 0; i < 24000; i++)
        pcm[i] = 0.2f * sinf(0.05f * (float)i);
    qiao_audio *a1 = NULL, *a2 = NULL;
    expect(qiao_audio_from_pcm(pcm, 24000, 16000, 1, NULL, &a1), QIAO_OK, NULL);
    expect(qiao_audio_from_pcm(pcm, 8000, 16000, 1, NULL, &a2), QIAO_OK, NULL);
    const qiao_audio *clips[] = {a1, a2};
    expect(qmod_batch_audio(m, clips, 2, &b), QIAO_OK, NULL);
    expect(qmod_work_init(&w, m, QMOD_AUDIO, 2, b.T, false), QIAO_OK, NULL);
    expect(qmod_forward(&ex, m, &w, &b, &emb), QIAO_OK, NULL);
    expect(qmod_tokens(m, &w, &b, &ts), QIAO_OK, NULL);
    assert_true(ts.T == qe_audio_tokens(&m->cfg.audio, b.T) && ts.T < b.T);
    assert_non_null(ts.mask);
    int64_t real[2] = {0, 0};
    for (int i = 0; i < 2; i++)
        for (int64_t t = 0; t < ts.T; t++)
            real[i] += ts.mask[i * ts.T + t];
    assert_true(real[0] == ts.T && real[1] == qe_audio_tokens(&m->cfg.audio, b.lengths[1]));
    qmod_work_free(&w);
    qmod_batch_free(&b);
    qiao_audio_free(a1);
    qiao_audio_free(a2);
    qiao_tokenizer_free(tok);
    qmod_free(m);
}

/* A "decoder" section (fusion/decoder.h): its vocabulary follows the
 * tokenizer's, its context width the image tower's; it saves and loads with
 * the rest; a bad section names its key. */
static char *tiny_with(const char *extra) {
    size_t n;
    char *json = read_all(TINY_JSON, &n);
    cJSON *root = cJSON_Parse(json);
    free(json);
    assert_non_null(root);
    cJSON *add = cJSON_Parse(extra);
    assert_non_null(add);
    for (cJSON *it = add->child; it; it = it->next) {
        cJSON_DeleteItemFromObjectCaseSensitive(root, it->string);
        if (!cJSON_IsNull(it)) cJSON_AddItemToObject(root, it->string, cJSON_Duplicate(it, true));
    }
    cJSON_Delete(add);
    char *out = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return out;
}

static void decoder_section(void **state) {
    (void)state;
    char *json = tiny_with("{\"decoder\": {\"width\": 32, \"layers\": 2, \"heads\": 4, \"mlp\": 64, \"max_len\": 24}}");
    qmod_config cfg;
    expect(qmod_config_from_string(json, "tiny+decoder", &cfg), QIAO_OK, NULL);
    cJSON_free(json);
    assert_true(cfg.has_decoder);
    assert_true(cfg.decoder.tied); /* the default */
    assert_int_equal(cfg.decoder.vocab, cfg.text.vocab + QMOD_DEC_SPECIALS);
    assert_int_equal(cfg.decoder.ctx_width, cfg.image.trunk.C);
    assert_int_equal(qmod_dec_eos(&cfg), 3); /* SentencePiece's </s> */
    assert_int_equal(qmod_dec_bos(&cfg, 0), cfg.text.vocab);
    assert_int_equal(qmod_dec_bos(&cfg, 1), cfg.text.vocab + 1);
    qmod_model *m = NULL;
    assert_int_equal(qmod_create(&cfg, 3, &m), QIAO_OK);
    const int64_t ti = qc_table_find(&m->tab, "decoder.tok");
    assert_true(ti >= 0);
    assert_int_equal(m->tab.t[ti].shape[0], cfg.text.vocab + QMOD_DEC_SPECIALS);
    assert_int_equal(m->tab.t[ti].shape[1], 32);
    assert_true(qc_table_find(&m->tab, "decoder.blocks.1.xattn.k.weight") >= 0);
    assert_true(qc_table_find(&m->tab, "decoder.out.weight") < 0);
    assert_true(m->p.decoder.tok == m->arena.base + m->tab.t[ti].offset);
    char path[512];
    tmp_path(path, sizeof path, "decoder");
    assert_int_equal(qmod_save(m, path, QIAO_DTYPE_F32), QIAO_OK);
    qmod_model *l = NULL;
    assert_int_equal(qmod_load(path, &l), QIAO_OK);
    assert_true(l->cfg.has_decoder);
    const int64_t lp = qc_table_find(&l->tab, "decoder.pos");
    assert_true(lp >= 0);
    assert_memory_equal(l->arena.base + l->tab.t[lp].offset,
                        m->arena.base + m->tab.t[qc_table_find(&m->tab, "decoder.pos")].offset,
                        (size_t)l->tab.t[lp].numel * sizeof(float));
    qmod_free(l);
    qmod_free(m);
    unlink(path);
    qmod_config_free(&cfg);
    /* untied: its own output layer */
    json = tiny_with("{\"decoder\": {\"width\": 32, \"layers\": 1, \"heads\": 4, \"mlp\": 64, \"max_len\": 8, "
                     "\"tied\": false}}");
    expect(qmod_config_from_string(json, "untied", &cfg), QIAO_OK, NULL);
    cJSON_free(json);
    assert_int_equal(qmod_create(&cfg, 3, &m), QIAO_OK);
    assert_true(qc_table_find(&m->tab, "decoder.out.weight") >= 0);
    assert_true(qc_table_find(&m->tab, "decoder.ctx.pos") < 0);
    qmod_free(m);
    qmod_config_free(&cfg);
    /* context positions: a learned vector per picture token */
    json = tiny_with("{\"decoder\": {\"width\": 32, \"layers\": 1, \"heads\": 4, \"mlp\": 64, \"max_len\": 8, "
                     "\"positions\": true}}");
    expect(qmod_config_from_string(json, "positions", &cfg), QIAO_OK, NULL);
    cJSON_free(json);
    assert_int_equal(cfg.decoder.ctx_positions, cfg.image.tokens);
    assert_int_equal(qmod_create(&cfg, 3, &m), QIAO_OK);
    const int64_t cp = qc_table_find(&m->tab, "decoder.ctx.pos");
    assert_true(cp >= 0);
    assert_int_equal(m->tab.t[cp].numel, cfg.image.tokens * 32);
    qmod_free(m);
    qmod_config_free(&cfg);
    /* errors name the key */
    static const struct {
        const char *extra, *needle;
    } bad[] = {
        {"{\"decoder\": {\"width\": 32, \"layers\": 1, \"heads\": 4, \"mlp\": 64, \"max_len\": 8, \"beam\": 4}}",
         "decoder.beam"},
        {"{\"decoder\": {\"width\": 30, \"layers\": 1, \"heads\": 4, \"mlp\": 64, \"max_len\": 8}}", "multiple"},
        {"{\"decoder\": {\"width\": 32, \"layers\": 1, \"heads\": 4, \"mlp\": 64, \"max_len\": 1000000}}", "max_len"},
        {"{\"decoder\": {\"width\": 32, \"layers\": 1, \"heads\": 4, \"mlp\": 64, \"max_len\": 8, \"tied\": 1}}",
         "decoder.tied"},
        {"{\"decoder\": {\"width\": 32, \"layers\": 1, \"heads\": 4, \"mlp\": 64}}", "max_len"},
        {"{\"decoder\": {\"width\": 32, \"layers\": 1, \"heads\": 4, \"mlp\": 64, \"max_len\": 8, \"positions\": "
         "\"yes\"}}",
         "decoder.positions"},
        {"{\"decoder\": [1]}", "\"decoder\" must be an object"},
        {"{\"image\": null, \"decoder\": {\"width\": 32, \"layers\": 1, \"heads\": 4, \"mlp\": 64, \"max_len\": 8}}",
         "image tower"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json = tiny_with(bad[i].extra);
        expect(qmod_config_from_string(json, "bad decoder", &cfg), QIAO_ERR_FORMAT, bad[i].needle);
        cJSON_free(json);
    }
}

int main(int argc, char **argv) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(roundtrip_f32), cmocka_unit_test(roundtrip_bf16), cmocka_unit_test(with_tokenizer),
        cmocka_unit_test(base_size),     cmocka_unit_test(bad_files),      cmocka_unit_test(deterministic),
        cmocka_unit_test(config_errors), cmocka_unit_test(tower_subsets),  cmocka_unit_test(token_sequences),
        cmocka_unit_test(decoder_section), cmocka_unit_test(space_prompts),
    };
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
