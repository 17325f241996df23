/* The text encoder (modalities/text/encoder.c): gradients of every front-end
 * tensor and a sample of the trunk against finite differences, thread-count
 * independence, config validation (incl. the shipped configs), the "piece"
 * ablation switch, and real sentences through the committed test tokenizer:
 * unit-norm finite embeddings, independent of padding. */
#include <string.h>

#include "modalities/text/encoder.h"
#include "qiao.h"
#include "testutil.h"

#define TOK_PATH QIAO_TEST_DATA "/tokenizer/tok-test.safetensors"

typedef struct text_case {
    qb_exec ex;
    qe_text_config cfg;
    qt_model m;
    qe_text_params p, g;
    qe_text_acts a, da;
    qe_text_input in;
    float *R;
} text_case;

static void parse_cfg(const char *json, int64_t embed_dim, qe_text_config *cfg) {
    cJSON *o = cJSON_Parse(json);
    assert_non_null(o);
    qiao_status st = qe_text_config_from_json(o, embed_dim, cfg);
    if (st != QIAO_OK) printf("config: %s\n", qiao_last_error());
    assert_int_equal(st, QIAO_OK);
    cJSON_Delete(o);
}

/* Builds the tables and arenas for a B x T batch; in->* arrays are set by the caller. */
static void setup(text_case *k, int threads, const qe_text_config *cfg, int64_t B, int64_t T) {
    memset(k, 0, sizeof *k);
    qb_exec_cpu(&k->ex, threads);
    k->cfg = *cfg;
    qc_table_init_empty(&k->m.pt);
    qc_table_init_empty(&k->m.at);
    assert_int_equal(qe_text_describe(&k->m.pt, "text.", cfg, 0), QIAO_OK);
    assert_int_equal(qe_text_describe_acts(&k->m.at, "text.", cfg, B, T, 0), QIAO_OK);
    qt_model_alloc(&k->m, &k->p, &k->g, &k->a, &k->da);
    k->R = qt_alloc(B * cfg->trunk.D);
    qt_fill_normal(k->R, B * cfg->trunk.D, 1.0f, 13);
}

/* O(1) weights (not the 0.02 init) so finite differences see real
 * curvature and padding leaks would show; norms keep ones plus noise. */
static void big_weights(text_case *k, uint64_t seed) {
    qt_fill_normal(k->m.params.base, (int64_t)k->m.pt.total, 0.3f, seed);
    for (size_t i = 0; i < k->m.pt.n; i++) {
        const qc_tensor_desc *t = &k->m.pt.t[i];
        float add = 0.0f;
        if (strstr(t->name, "ln") && strstr(t->name, "weight")) add = 1.0f;
        /* Character embeddings drive the convolutions: make them larger so the
         * GELUs and the max see inputs of order one. */
        if (strcmp(t->name, "text.char_emb.weight") == 0)
            for (int64_t j = 0; j < t->numel; j++) k->m.params.base[t->offset + j] *= 3.0f;
        for (int64_t j = 0; j < t->numel; j++) k->m.params.base[t->offset + j] += add;
    }
}

static void teardown(text_case *k) {
    qt_model_free(&k->m);
    free(k->R);
}

static void fwd(void *ctx) {
    text_case *k = ctx;
    qe_text_forward(&k->ex, &k->a, &k->p, &k->in, &k->cfg);
}

static void backward(text_case *k) {
    qc_arena_zero(&k->m.grads);
    qc_arena_zero(&k->m.dacts);
    fwd(k);
    qe_text_backward(&k->ex, &k->g, &k->da, k->R, NULL, &k->a, &k->p, &k->in, &k->cfg);
}

static int check_param(text_case *k, const char *name) {
    const qc_tensor_desc *t = qt_model_tensor(&k->m, name);
    return qt_gradcheck(name, fwd, k, k->a.trunk.emb, k->R, k->in.B * k->cfg.trunk.D, k->m.params.base + t->offset,
                        k->m.grads.base + t->offset, t->numel, 1e-3f, 1e-3, 1e-2, 64);
}

/* ---- synthetic input for the gradient check ------------------------------ */

typedef struct synth {
    int32_t ids[2 * 4], chars[2 * 4 * 4];
    uint8_t tags[2 * 4], mask[2 * 4];
} synth;

static const char *tiny_json =
    "{\"vocab\": 20, \"char_vocab\": 10, \"k\": 4, \"char_dim\": 3, \"char_kernels\": [1, 2, 3],"
    " \"char_channels\": 4, \"width\": 8, \"layers\": 1, \"heads\": 2, \"mlp\": 16, \"max_tokens\": 8}";

static void make_synth(synth *s, qe_text_input *in) {
    qc_rng r;
    qc_rng_seed(&r, 5);
    const int64_t B = 2, T = 4, K = 4;
    for (int64_t n = 0; n < B * T; n++) {
        const int64_t b = n / T, t = n % T;
        const int real = t < T - b; /* sequence 1 has one padding token */
        s->mask[n] = (uint8_t)real;
        s->ids[n] = real ? 1 + (int32_t)(qc_rng_uniform(&r) * 19.0f) % 19 : QIAO_PIECE_PAD;
        s->tags[n] = real ? (uint8_t)(1 + (int)(qc_rng_uniform(&r) * 4.0f) % 4) : QIAO_TAG_PAD;
        /* Real tokens carry 1..K characters (ids 1..9, 1 = unknown), left-packed;
         * token 2 of sequence 0 has none (pools to zeros). */
        int64_t nch = real ? 1 + (n * 3) % K : 0;
        if (n == 2) nch = 0;
        for (int64_t j = 0; j < K; j++)
            s->chars[n * K + j] = j < nch ? 1 + (int32_t)(qc_rng_uniform(&r) * 9.0f) % 9 : QIAO_CHAR_PAD;
    }
    *in = (qe_text_input){.B = B, .T = T, .K = K, .ids = s->ids, .char_ids = s->chars, .tags = s->tags,
                          .mask = s->mask};
}

static void gradients(void **state) {
    (void)state;
    qe_text_config cfg;
    parse_cfg(tiny_json, 6, &cfg);
    text_case k;
    setup(&k, 1, &cfg, 2, 4);
    big_weights(&k, 7);
    synth s;
    make_synth(&s, &k.in);
    assert_int_equal(qe_text_check_input(&k.in, &cfg), QIAO_OK);
    backward(&k);
    const char *names[] = {"text.piece_emb.weight",     "text.char_emb.weight",      "text.char_conv.0.weight",
                           "text.char_conv.0.bias",     "text.char_conv.1.weight",   "text.char_conv.1.bias",
                           "text.char_conv.2.weight",   "text.char_conv.2.bias",     "text.char_proj.weight",
                           "text.char_proj.bias",       "text.gate.weight",          "text.gate.bias",
                           "text.tag_emb.weight",       "text.trunk.pos",
                           "text.trunk.blocks.0.attn.q.weight",
                           "text.trunk.blocks.0.mlp.fc.weight", "text.trunk.proj.weight"};
    int bad = 0;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) bad += check_param(&k, names[i]);
    /* Gradients do reach the real characters' embeddings. */
    const qc_tensor_desc *ce = qt_model_tensor(&k.m, "text.char_emb.weight");
    double s2 = 0;
    for (int64_t j = cfg.char_dim; j < ce->numel; j++) s2 += fabs(k.m.grads.base[ce->offset + j]);
    assert_true(s2 > 1e-3);
    assert_int_equal(bad, 0);
    teardown(&k);
}

/* ---- the mix switch --------------------------------------------------------- */

static void mix_switch(void **state) {
    (void)state;
    char json[512];
    snprintf(json, sizeof json, "%.*s, \"mix\": \"piece\"}", (int)strlen(tiny_json) - 1, tiny_json);
    qe_text_config gate, piece;
    parse_cfg(tiny_json, 6, &gate);
    parse_cfg(json, 6, &piece);
    assert_int_equal(gate.mix, QE_TEXT_MIX_GATE);
    assert_int_equal(piece.mix, QE_TEXT_MIX_PIECE);
    /* The key's old name, which the shipped model's stored config uses, reads the same. */
    qe_text_config legacy;
    snprintf(json, sizeof json, "%.*s, \"fusion\": \"piece\"}", (int)strlen(tiny_json) - 1, tiny_json);
    parse_cfg(json, 6, &legacy);
    assert_int_equal(legacy.mix, QE_TEXT_MIX_PIECE);
    text_case kg, kp;
    setup(&kg, 1, &gate, 2, 4);
    setup(&kp, 1, &piece, 2, 4);
    assert_true(qc_table_find(&kg.m.pt, "text.char_emb.weight") >= 0);
    assert_true(qc_table_find(&kg.m.pt, "text.gate.weight") >= 0);
    for (size_t i = 0; i < kp.m.pt.n; i++) {
        assert_null(strstr(kp.m.pt.t[i].name, "char"));
        assert_null(strstr(kp.m.pt.t[i].name, "gate"));
    }
    assert_int_equal(kg.m.pt.n, kp.m.pt.n + 1 + 2 * 3 + 2 + 2);
    /* The ablated encoder still trains: its gradients check out too. */
    big_weights(&kp, 9);
    synth s;
    make_synth(&s, &kp.in);
    backward(&kp);
    int bad = check_param(&kp, "text.piece_emb.weight") + check_param(&kp, "text.tag_emb.weight") +
              check_param(&kp, "text.trunk.blocks.0.attn.v.weight");
    assert_int_equal(bad, 0);
    teardown(&kg);
    teardown(&kp);
}

/* ---- config validation ------------------------------------------------------ */

static void expect_bad(const char *json, const char *key) {
    cJSON *o = cJSON_Parse(json);
    assert_non_null(o);
    qe_text_config cfg;
    qiao_status st = qe_text_config_from_json(o, 1024, &cfg);
    cJSON_Delete(o);
    if (st != QIAO_ERR_FORMAT || !strstr(qiao_last_error(), key))
        printf("config %s: status %d, message '%s' (expected to name '%s')\n", json, (int)st, qiao_last_error(), key);
    assert_int_equal(st, QIAO_ERR_FORMAT);
    assert_non_null(strstr(qiao_last_error(), key));
}

static void config(void **state) {
    (void)state;
    qe_text_config cfg;
    parse_cfg(tiny_json, 6, &cfg);
    assert_int_equal(cfg.vocab, 20);
    assert_int_equal(cfg.n_kernels, 3);
    assert_int_equal(cfg.char_kernels[2], 3);
    assert_int_equal(cfg.trunk.C, 8);
    assert_int_equal(cfg.trunk.D, 6);
    const char *keys[] = {"vocab", "char_vocab", "k", "char_dim", "char_kernels", "char_channels",
                          "width", "layers", "heads", "mlp", "max_tokens"};
    /* Each required key missing, then with a wrong type. */
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        cJSON *o = cJSON_Parse(tiny_json);
        cJSON_DeleteItemFromObjectCaseSensitive(o, keys[i]);
        char *s = cJSON_PrintUnformatted(o);
        expect_bad(s, keys[i]);
        free(s);
        cJSON_AddItemToObject(o, keys[i], cJSON_CreateString("8"));
        s = cJSON_PrintUnformatted(o);
        expect_bad(s, keys[i]);
        free(s);
        cJSON_Delete(o);
    }
    char buf[512];
#define WITH(extra) (snprintf(buf, sizeof buf, "%.*s, %s}", (int)strlen(tiny_json) - 1, tiny_json, extra), buf)
    expect_bad(WITH("\"fusion\": \"concat\""), "fusion");
    expect_bad(WITH("\"fusion\": 1"), "fusion");
    expect_bad(WITH("\"mix\": \"concat\""), "mix");
    expect_bad(WITH("\"mix\": \"gate\", \"fusion\": \"piece\""), "disagree");
    expect_bad(WITH("\"dropout\": 0.1"), "dropout");
#undef WITH
    /* C % H, absurd sizes, fractions, kernels wider than k, empty kernel list. */
    expect_bad("{\"vocab\": 20, \"char_vocab\": 10, \"k\": 4, \"char_dim\": 3, \"char_kernels\": [1],"
               " \"char_channels\": 4, \"width\": 8, \"layers\": 1, \"heads\": 3, \"mlp\": 16, \"max_tokens\": 8}",
               "heads");
    expect_bad("{\"vocab\": 1e12, \"char_vocab\": 10, \"k\": 4, \"char_dim\": 3, \"char_kernels\": [1],"
               " \"char_channels\": 4, \"width\": 8, \"layers\": 1, \"heads\": 2, \"mlp\": 16, \"max_tokens\": 8}",
               "vocab");
    expect_bad("{\"vocab\": 20, \"char_vocab\": 10, \"k\": 4, \"char_dim\": 3, \"char_kernels\": [1],"
               " \"char_channels\": 4, \"width\": 8.5, \"layers\": 1, \"heads\": 2, \"mlp\": 16, \"max_tokens\": 8}",
               "width");
    expect_bad("{\"vocab\": 20, \"char_vocab\": 10, \"k\": 4, \"char_dim\": 3, \"char_kernels\": [1],"
               " \"char_channels\": 4, \"width\": 8, \"layers\": 99, \"heads\": 2, \"mlp\": 16, \"max_tokens\": 8}",
               "layers");
    expect_bad("{\"vocab\": 20, \"char_vocab\": 10, \"k\": 4, \"char_dim\": 3, \"char_kernels\": [2, 5],"
               " \"char_channels\": 4, \"width\": 8, \"layers\": 1, \"heads\": 2, \"mlp\": 16, \"max_tokens\": 8}",
               "char_kernels[1]");
    expect_bad("{\"vocab\": 20, \"char_vocab\": 10, \"k\": 4, \"char_dim\": 3, \"char_kernels\": [],"
               " \"char_channels\": 4, \"width\": 8, \"layers\": 1, \"heads\": 2, \"mlp\": 16, \"max_tokens\": 8}",
               "char_kernels");
    expect_bad("{\"vocab\": 20, \"char_vocab\": 10, \"k\": 4, \"char_dim\": 3, \"char_kernels\": [1],"
               " \"char_channels\": 4, \"width\": 8, \"layers\": 1, \"heads\": 2, \"mlp\": 16, \"max_tokens\": -3}",
               "max_tokens");
    expect_bad("[1, 2]", "text");
    cJSON *o = cJSON_Parse(tiny_json);
    assert_int_equal(qe_text_config_from_json(o, 0, &cfg), QIAO_ERR_FORMAT);
    assert_non_null(strstr(qiao_last_error(), "embed_dim"));
    cJSON_Delete(o);
    /* an imported BERT (arch "bert"): its own keys, defaults and errors */
#define BERT "{\"arch\": \"bert\", \"vocab\": 30, \"type_vocab\": 2, \"width\": 8, \"layers\": 1, \"heads\": 2, " \
             "\"mlp\": 16, \"max_tokens\": 12"
    o = cJSON_Parse(BERT "}");
    assert_int_equal(qe_text_config_from_json(o, 8, &cfg), QIAO_OK);
    cJSON_Delete(o);
    assert_int_equal(cfg.arch, QE_TEXT_ARCH_BERT);
    assert_true(cfg.trunk.norm == NN_NORM_POST && cfg.trunk.ln_in && cfg.trunk.proj == NN_PROJ_NONE);
    assert_true(cfg.trunk.eps == 1e-12f && cfg.trunk.pool == NN_POOL_MEAN && cfg.type_vocab == 2);
    qc_table t;
    qc_table_init_empty(&t);
    assert_int_equal(qe_text_describe(&t, "text.", &cfg, 0), QIAO_OK);
    assert_true(qc_table_find(&t, "text.type_emb.weight") >= 0 && qc_table_find(&t, "text.tag_emb.weight") < 0 &&
                qc_table_find(&t, "text.char_emb.weight") < 0 && qc_table_find(&t, "text.trunk.ln_in.weight") >= 0);
    qc_table_free(&t);
    o = cJSON_Parse(BERT ", \"pool\": \"first\", \"proj\": \"nobias\", \"eps\": 1e-5}");
    assert_int_equal(qe_text_config_from_json(o, 4, &cfg), QIAO_OK);
    cJSON_Delete(o);
    assert_true(cfg.trunk.pool == NN_POOL_FIRST && cfg.trunk.proj == NN_PROJ_NOBIAS && cfg.trunk.eps == 1e-5f);
    expect_bad(BERT "}", "embed_dim"); /* no projection: 1024 is not the width */
    expect_bad(BERT ", \"char_dim\": 3}", "char_dim");
    expect_bad(BERT ", \"eps\": 0}", "eps");
    expect_bad(BERT ", \"pool\": \"max\"}", "bert");
    expect_bad(BERT ", \"proj\": \"tanh\"}", "proj");
    expect_bad("{\"arch\": \"gpt\"}", "arch");
    expect_bad("{\"arch\": \"bert\", \"vocab\": 30}", "type_vocab");
    expect_bad(BERT ", \"act\": \"relu\"}", "act");
#undef BERT
    /* OpenAI CLIP's text tower (arch "clip"): causal, quick GELU, read at the last token, no token types */
#define CLIP "{\"arch\": \"clip\", \"vocab\": 30, \"width\": 8, \"layers\": 1, \"heads\": 2, \"mlp\": 16, " \
             "\"max_tokens\": 12"
    o = cJSON_Parse(CLIP "}");
    assert_int_equal(qe_text_config_from_json(o, 6, &cfg), QIAO_OK);
    cJSON_Delete(o);
    assert_int_equal(cfg.arch, QE_TEXT_ARCH_CLIP);
    assert_true(cfg.trunk.norm == NN_NORM_PRE && !cfg.trunk.ln_in && cfg.trunk.causal);
    assert_true(cfg.trunk.pool == NN_POOL_LAST);
    assert_true(cfg.trunk.act == NN_ACT_QUICK_GELU && cfg.trunk.proj == NN_PROJ_NOBIAS && cfg.trunk.eps == 1e-5f);
    qc_table_init_empty(&t);
    assert_int_equal(qe_text_describe(&t, "text.", &cfg, 0), QIAO_OK);
    assert_true(qc_table_find(&t, "text.type_emb.weight") < 0 && qc_table_find(&t, "text.char_emb.weight") < 0 &&
                qc_table_find(&t, "text.tag_emb.weight") < 0 && qc_table_find(&t, "text.trunk.ln_f.weight") >= 0 &&
                qc_table_find(&t, "text.trunk.proj.bias") < 0);
    qc_table_free(&t);
    expect_bad(CLIP ", \"type_vocab\": 2}", "type_vocab");
    expect_bad(CLIP ", \"pool\": \"first\"}", "last");
    expect_bad(CLIP ", \"act\": \"swish\"}", "act");
#undef CLIP
}

/* The shipped configs parse, and their sizes are reported. */
static void shipped_configs(void **state) {
    (void)state;
    const char *files[] = {QIAO_SOURCE_DIR "/models/configs/tiny.json", QIAO_SOURCE_DIR "/models/configs/base.json"};
    for (size_t f = 0; f < 2; f++) {
        FILE *fp = fopen(files[f], "rb");
        assert_non_null(fp);
        char *buf = calloc(1, 1 << 16);
        assert_non_null(buf);
        size_t n = fread(buf, 1, (1 << 16) - 1, fp);
        fclose(fp);
        assert_true(n > 0);
        cJSON *root = cJSON_Parse(buf);
        free(buf);
        assert_non_null(root);
        const cJSON *ed = cJSON_GetObjectItemCaseSensitive(root, "embed_dim");
        assert_true(cJSON_IsNumber(ed));
        qe_text_config cfg;
        qiao_status st = qe_text_config_from_json(cJSON_GetObjectItemCaseSensitive(root, "text"),
                                                  (int64_t)ed->valuedouble, &cfg);
        if (st != QIAO_OK) printf("%s: %s\n", files[f], qiao_last_error());
        assert_int_equal(st, QIAO_OK);
        qc_table t;
        qc_table_init_empty(&t);
        assert_int_equal(qe_text_describe(&t, "text.", &cfg, 0), QIAO_OK);
        int64_t total = 0;
        for (size_t i = 0; i < t.n; i++) total += t.t[i].numel;
        printf("%s: text encoder %lld parameters (%.2f MB in bf16)\n", files[f], (long long)total,
               (double)total * 2.0 / 1e6);
        qc_table_free(&t);
        cJSON_Delete(root);
    }
}

/* ---- real sentences through the test tokenizer ---------------------------- */

static const char *const sentences[] = {
    "你好，可以帮我推荐一个评分是4分以上的酒店吗？",
    "Please book a table for two at an Italian restaurant tonight.",
    "我想听周杰伦的歌",
    "what is the weather like in Beijing",
};

static void cfg_for_tokenizer(const qiao_tokenizer *tok, const char *mix, qe_text_config *cfg) {
    char json[512];
    snprintf(json, sizeof json,
             "{\"vocab\": %lld, \"char_vocab\": %lld, \"k\": %d, \"char_dim\": 16, \"char_kernels\": [1, 2, 3],"
             " \"char_channels\": 16, \"width\": 64, \"layers\": 2, \"heads\": 4, \"mlp\": 128,"
             " \"max_tokens\": 64, \"mix\": \"%s\"}",
             (long long)qiao_tokenizer_vocab_size(tok), (long long)qiao_tokenizer_char_vocab_size(tok),
             qiao_tokenizer_k(tok), mix);
    parse_cfg(json, 32, cfg);
}

static qiao_token_batch *tokenize(const qiao_tokenizer *tok, const char *const *texts, size_t n) {
    qiao_token_batch *b = NULL;
    qiao_tokenize_params tp = qiao_tokenize_default_params();
    qiao_status st = qiao_tokenize_batch(tok, texts, NULL, n, 0, &tp, &b);
    if (st != QIAO_OK) printf("tokenize: %s\n", qiao_last_error());
    assert_int_equal(st, QIAO_OK);
    return b;
}

static qe_text_input input_of(const qiao_token_batch *b) {
    return (qe_text_input){.B = (int64_t)b->n, .T = (int64_t)b->t, .K = b->k, .ids = b->ids,
                           .char_ids = b->char_ids, .tags = b->tags, .mask = b->mask};
}

static void run_batch(text_case *k, int threads, const qe_text_config *cfg, const qiao_token_batch *b,
                      uint64_t seed) {
    setup(k, threads, cfg, (int64_t)b->n, (int64_t)b->t);
    big_weights(k, seed);
    k->in = input_of(b);
    assert_int_equal(qe_text_check_input(&k->in, cfg), QIAO_OK);
    fwd(k);
}

static void end_to_end(void **state) {
    (void)state;
    qiao_tokenizer *tok = NULL;
    assert_int_equal(qiao_tokenizer_load(TOK_PATH, &tok), QIAO_OK);
    const char *mixes[] = {"gate", "piece"};
    for (int f = 0; f < 2; f++) {
        qe_text_config cfg;
        cfg_for_tokenizer(tok, mixes[f], &cfg);
        qiao_token_batch *b = tokenize(tok, sentences, 4);
        assert_true(b->t >= 8);
        text_case k;
        run_batch(&k, 2, &cfg, b, 21);
        const int64_t D = cfg.trunk.D;
        for (int64_t i = 0; i < 4; i++) {
            double s = 0;
            for (int64_t j = 0; j < D; j++) {
                assert_true(isfinite(k.a.trunk.emb[i * D + j]));
                s += (double)k.a.trunk.emb[i * D + j] * k.a.trunk.emb[i * D + j];
            }
            assert_true(fabs(s - 1.0) < 1e-5);
        }
        /* Different sentences embed differently (the input reaches the output). */
        double diff = 0;
        for (int64_t j = 0; j < D; j++) diff += fabs(k.a.trunk.emb[j] - k.a.trunk.emb[D + j]);
        assert_true(diff > 1e-3);
        /* A training step's backward runs on the real batch and reaches the
         * char embedding table (gate) or not at all (piece). */
        backward(&k);
        for (size_t j = 0; j < k.m.pt.total; j++) assert_true(isfinite(k.m.grads.base[j]));
        teardown(&k);
        qiao_token_batch_free(b);
    }
    qiao_tokenizer_free(tok);
}

/* The short sentence alone and padded in a batch with a longer one. */
static void padding_independent(void **state) {
    (void)state;
    qiao_tokenizer *tok = NULL;
    assert_int_equal(qiao_tokenizer_load(TOK_PATH, &tok), QIAO_OK);
    const char *mixes[] = {"gate", "piece"};
    for (int f = 0; f < 2; f++) {
        qe_text_config cfg;
        cfg_for_tokenizer(tok, mixes[f], &cfg);
        const char *alone_texts[] = {sentences[2]};
        const char *pair_texts[] = {sentences[0], sentences[2]};
        qiao_token_batch *alone = tokenize(tok, alone_texts, 1);
        qiao_token_batch *pair = tokenize(tok, pair_texts, 2);
        assert_true(pair->t > alone->t); /* really padded */
        assert_int_equal(pair->lengths[1], alone->t);
        text_case ka, kp;
        run_batch(&ka, 1, &cfg, alone, 33);
        run_batch(&kp, 1, &cfg, pair, 33);
        const int64_t D = cfg.trunk.D;
        double worst = 0;
        for (int64_t j = 0; j < D; j++) worst = fmax(worst, fabs(ka.a.trunk.emb[j] - kp.a.trunk.emb[D + j]));
        printf("mix %s: alone vs padded max |diff| = %.3g\n", mixes[f], worst);
        assert_true(worst < 1e-5);
        teardown(&ka);
        teardown(&kp);
        qiao_token_batch_free(alone);
        qiao_token_batch_free(pair);
    }
    qiao_tokenizer_free(tok);
}

static void threads(void **state) {
    (void)state;
    qiao_tokenizer *tok = NULL;
    assert_int_equal(qiao_tokenizer_load(TOK_PATH, &tok), QIAO_OK);
    qe_text_config cfg;
    cfg_for_tokenizer(tok, "gate", &cfg);
    qiao_token_batch *b = tokenize(tok, sentences, 4);
    text_case k1, k2;
    run_batch(&k1, 1, &cfg, b, 5);
    run_batch(&k2, 2, &cfg, b, 5);
    assert_memory_equal(k1.a.trunk.emb, k2.a.trunk.emb, sizeof(float) * (size_t)(4 * cfg.trunk.D));
    backward(&k1);
    backward(&k2);
    assert_memory_equal(k1.m.grads.base, k2.m.grads.base, sizeof(float) * k1.m.pt.total);
    teardown(&k1);
    teardown(&k2);
    qiao_token_batch_free(b);
    qiao_tokenizer_free(tok);
}

static void bad_input(void **state) {
    (void)state;
    qe_text_config cfg;
    parse_cfg(tiny_json, 6, &cfg);
    synth s;
    qe_text_input in;
    make_synth(&s, &in);
    assert_int_equal(qe_text_check_input(&in, &cfg), QIAO_OK);
    s.ids[3] = 20;
    assert_int_equal(qe_text_check_input(&in, &cfg), QIAO_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(qiao_last_error(), "piece id 20"));
    s.ids[3] = 1;
    s.chars[5] = 10;
    assert_int_equal(qe_text_check_input(&in, &cfg), QIAO_ERR_INVALID_ARGUMENT);
    s.chars[5] = -1;
    assert_int_equal(qe_text_check_input(&in, &cfg), QIAO_ERR_INVALID_ARGUMENT);
    s.chars[5] = 0;
    s.tags[0] = 5;
    assert_int_equal(qe_text_check_input(&in, &cfg), QIAO_ERR_INVALID_ARGUMENT);
    s.tags[0] = 1;
    in.K = 3;
    assert_int_equal(qe_text_check_input(&in, &cfg), QIAO_ERR_INVALID_ARGUMENT);
    in.K = 4;
    in.T = 9;
    assert_int_equal(qe_text_check_input(&in, &cfg), QIAO_ERR_INVALID_ARGUMENT);
    qc_table t;
    qc_table_init_empty(&t);
    assert_int_equal(qe_text_describe_acts(&t, "text.", &cfg, 1, 9, 0), QIAO_ERR_INVALID_ARGUMENT);
    qc_table_free(&t);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(gradients),   cmocka_unit_test(mix_switch),       cmocka_unit_test(config),
    cmocka_unit_test(shipped_configs), cmocka_unit_test(end_to_end),  cmocka_unit_test(padding_independent),
    cmocka_unit_test(threads),     cmocka_unit_test(bad_input),
};
QT_MAIN(tests)
