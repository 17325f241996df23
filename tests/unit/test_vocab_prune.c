/* Vocabulary pruning (models/vocab/prune.c, tokenizers/spm_prune.c) on the
 * tiny random XLM-R (tests/data/hf/xlmr: 3,000 SentencePiece pieces trained
 * on the intent corpora, f32): pruned to the e-commerce set's training
 * texts, those texts get exactly their old pieces, each id's row the row of
 * its old id, so the model embeds them to the same vectors; the set's test
 * texts and English ones are segmented again where they needed a dropped
 * piece, without <unk>; a tied output's rows move too; the file loads
 * through the public API and prunes again to the same pieces; the wire
 * format edit keeps bytes and forced pieces; bad models, corpora and
 * arguments are refused with a message. One case prunes the real e5 to the
 * bot's corpus (fixture e5). */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "core/safetensors.h"
#include "models/vocab/prune.h"
#include "testfs.h"
#include "testutil.h"
#include "tokenizers/tokenizer.h"

#define XLMR QIAO_TEST_DATA "/hf/xlmr/model.safetensors"
#define TRAIN QIAO_SOURCE_DIR "/datasets/intent/ecommerce_zh/train.jsonl"
#define TEST QIAO_SOURCE_DIR "/datasets/intent/ecommerce_zh/test.jsonl"
#define TEST_EN QIAO_SOURCE_DIR "/datasets/intent/xsid_en/test.jsonl"

static char g_dir[] = "/tmp/qiao-vocab-prune-XXXXXX";
static char g_pruned[256];
static qmv_texts g_train;

static int setup(void **state) {
    (void)state;
    if (!mkdtemp(g_dir)) return -1;
    snprintf(g_pruned, sizeof g_pruned, "%s/pruned.safetensors", g_dir);
    memset(&g_train, 0, sizeof g_train);
    if (qmv_texts_load(TRAIN, &g_train) != QIAO_OK) return -1;
    qmv_prune_params p = {.corpus = &g_train, .chars = true};
    return qmv_prune_file(XLMR, g_pruned, &p, NULL) == QIAO_OK ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    qmv_texts_free(&g_train);
    qt_rm_rf(g_dir);
    return 0;
}

static qiao_tokenizer *tok_load(const char *path) {
    qiao_tokenizer *t = NULL;
    if (qiao_tokenizer_load(path, &t) != QIAO_OK) fail_msg("%s: %s", path, qiao_last_error());
    return t;
}

static qiao_tokens *tokens(const qiao_tokenizer *tok, const char *text, size_t len) {
    qiao_tokenize_params p = qiao_tokenize_default_params();
    qiao_tokens *t = NULL;
    if (qiao_tokenize(tok, text, len, &p, &t) != QIAO_OK) fail_msg("%s", qiao_last_error());
    return t;
}

/* Whether the two tokenizations name the same pieces in the same order. */
static bool same_pieces(const qiao_tokenizer *a, const qiao_tokens *ta, const qiao_tokenizer *b,
                        const qiao_tokens *tb) {
    if (ta->count != tb->count) return false;
    for (size_t i = 0; i < ta->count; i++)
        if (strcmp(qiao_tokenizer_piece(a, ta->ids[i]), qiao_tokenizer_piece(b, tb->ids[i])) != 0) return false;
    return true;
}

/* The pieces joined, "▁" as a space: the text as SentencePiece normalized it. */
static void joined(const qiao_tokenizer *tok, const qiao_tokens *t, char *buf, size_t cap) {
    size_t n = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < t->count; i++) {
        if (t->ids[i] == tok->sp.bos || t->ids[i] == tok->sp.eos) continue;
        const char *p = qiao_tokenizer_piece(tok, t->ids[i]);
        const size_t l = strlen(p);
        assert_true(n + l < cap);
        memcpy(buf + n, p, l + 1);
        n += l;
    }
}

/* Every text made only of characters the pruning keeps. */
static bool kept_chars_only(const char *s, size_t len) {
    for (size_t i = 0; i < len;) {
        int32_t cp;
        i += tk_utf8_decode((const unsigned char *)s + i, len - i, &cp);
        if (!qmv_kept_char(cp)) return false;
    }
    return true;
}

static void keeps_corpus_pieces(void **state) {
    (void)state;
    qiao_tokenizer *a = tok_load(XLMR), *b = tok_load(g_pruned);
    assert_true(qiao_tokenizer_vocab_size(b) < qiao_tokenizer_vocab_size(a));
    for (size_t i = 0; i < g_train.n; i++) {
        size_t len;
        const char *text = qmv_text(&g_train, i, &len);
        qiao_tokens *ta = tokens(a, text, len), *tb = tokens(b, text, len);
        if (!same_pieces(a, ta, b, tb)) fail_msg("train text %zu tokenizes otherwise: %s", i + 1, text);
        /* offsets too: the same segmentation of the same bytes */
        assert_memory_equal(ta->offsets, tb->offsets, ta->count * 2 * sizeof *ta->offsets);
        qiao_tokens_free(ta), qiao_tokens_free(tb);
    }
    /* the specials keep their ids below the pieces; <mask> moves to the end */
    assert_int_equal(b->sp.bos, a->sp.bos);
    assert_int_equal(b->sp.unk, a->sp.unk);
    assert_int_equal(b->sp.mask, qiao_tokenizer_vocab_size(b) - 1);
    assert_string_equal(qiao_tokenizer_piece(b, b->sp.mask), "<mask>");
    qiao_tokenizer_free(a), qiao_tokenizer_free(b);
}

static void resegments_without_unk(void **state) {
    (void)state;
    qiao_tokenizer *a = tok_load(XLMR), *b = tok_load(g_pruned);
    qmv_texts other;
    memset(&other, 0, sizeof other);
    assert_int_equal(qmv_texts_load(TEST, &other), QIAO_OK);
    assert_int_equal(qmv_texts_load(TEST_EN, &other), QIAO_OK);
    size_t changed = 0, checked = 0;
    char ja[8192], jb[8192];
    for (size_t i = 0; i < other.n; i++) {
        size_t len;
        const char *text = qmv_text(&other, i, &len);
        qiao_tokens *ta = tokens(a, text, len), *tb = tokens(b, text, len);
        changed += !same_pieces(a, ta, b, tb);
        bool unk_a = false, unk_b = false;
        for (size_t t = 0; t < ta->count; t++) unk_a |= ta->ids[t] == a->sp.unk;
        for (size_t t = 0; t < tb->count; t++) unk_b |= tb->ids[t] == b->sp.unk;
        if (!unk_a && kept_chars_only(text, len)) {
            checked++;
            if (unk_b) fail_msg("text %zu gained an <unk>: %s", i + 1, text);
            /* finer pieces of the same normalized text */
            joined(a, ta, ja, sizeof ja), joined(b, tb, jb, sizeof jb);
            assert_string_equal(ja, jb);
        }
        qiao_tokens_free(ta), qiao_tokens_free(tb);
    }
    print_message("%zu of %zu unseen texts segmented again, %zu of them checked\n", changed, other.n, checked);
    /* the case means something only if unseen text lost pieces */
    assert_true(changed > 50);
    assert_true(checked > other.n / 2);
    qmv_texts_free(&other);
    qiao_tokenizer_free(a), qiao_tokenizer_free(b);
}

/* The tensor's row `r` of `row` bytes. */
static const void *row_at(const qc_st_tensor *t, int64_t r) {
    return (const char *)t->data + (size_t)r * (t->nbytes / (size_t)t->shape[0]);
}

static void rows_move(void **state) {
    (void)state;
    qiao_tokenizer *a = tok_load(XLMR), *b = tok_load(g_pruned);
    qc_st_file *fa = NULL, *fb = NULL;
    assert_int_equal(qc_st_open(XLMR, &fa), QIAO_OK);
    assert_int_equal(qc_st_open(g_pruned, &fb), QIAO_OK);
    const qc_st_tensor *ea = qc_st_find(fa, "text.piece_emb.weight"), *eb = qc_st_find(fb, "text.piece_emb.weight");
    assert_true(ea && eb);
    assert_int_equal(eb->shape[0], qiao_tokenizer_vocab_size(b));
    const size_t row = ea->nbytes / (size_t)ea->shape[0];
    /* the kept pieces are in their old order: walk both vocabularies */
    int64_t i = 0;
    for (int64_t j = 0; j < eb->shape[0]; j++, i++) {
        while (i < ea->shape[0] && strcmp(qiao_tokenizer_piece(a, i), qiao_tokenizer_piece(b, j)) != 0) i++;
        if (i == ea->shape[0]) fail_msg("new id %lld (%s) has no old id after the last", (long long)j,
                                        qiao_tokenizer_piece(b, j));
        assert_memory_equal(row_at(eb, j), row_at(ea, i), row);
    }
    /* every other tensor as it was */
    for (size_t k = 0; k < qc_st_count(fa); k++) {
        const qc_st_tensor *t = qc_st_at(fa, k), *u = qc_st_find(fb, t->name);
        assert_non_null(u);
        if (t == ea || !strcmp(t->name, TK_TENSOR_SPM)) continue;
        assert_int_equal(u->nbytes, t->nbytes);
        assert_memory_equal(u->data, t->data, t->nbytes);
    }
    qc_st_close(fa), qc_st_close(fb);
    qiao_tokenizer_free(a), qiao_tokenizer_free(b);
}

static void embeds_the_same(void **state) {
    (void)state;
    qiao_model *ma = NULL, *mb = NULL;
    qiao_session *sa = NULL, *sb = NULL;
    assert_int_equal(qiao_model_load(XLMR, &ma), QIAO_OK);
    if (qiao_model_load(g_pruned, &mb) != QIAO_OK) fail_msg("%s", qiao_last_error());
    assert_int_equal(qiao_session_new(ma, NULL, &sa), QIAO_OK);
    assert_int_equal(qiao_session_new(mb, NULL, &sb), QIAO_OK);
    const int64_t D = qiao_model_dim(ma);
    enum { N = 48 };
    const char *texts[N];
    for (size_t i = 0; i < N; i++) texts[i] = qmv_text(&g_train, i * (g_train.n / N), NULL);
    float *va = qt_alloc(N * D), *vb = qt_alloc(N * D);
    assert_int_equal(qiao_embed_texts(sa, texts, N, va, (size_t)(N * D)), QIAO_OK);
    assert_int_equal(qiao_embed_texts(sb, texts, N, vb, (size_t)(N * D)), QIAO_OK);
    for (int64_t k = 0; k < N * D; k++) assert_true(fabsf(va[k] - vb[k]) <= 1e-6f * (1.0f + fabsf(va[k])));
    free(va), free(vb);
    qiao_session_free(sa), qiao_session_free(sb);
    qiao_model_free(ma), qiao_model_free(mb);
}

static void round_trip(void **state) {
    (void)state;
    qc_st_file *f = NULL;
    assert_int_equal(qc_st_open(g_pruned, &f), QIAO_OK);
    const char *rec = qc_st_metadata_get(f, "qiao.pruned");
    assert_non_null(rec);
    cJSON *r = cJSON_Parse(rec);
    assert_non_null(r);
    const int64_t rows = (int64_t)cJSON_GetObjectItem(r, "rows")->valuedouble;
    assert_int_equal((int64_t)cJSON_GetObjectItem(r, "rows_before")->valuedouble, 3002);
    cJSON_Delete(r);
    qc_st_close(f);
    /* pruning the pruned model to the same corpus keeps every piece */
    char again[300];
    snprintf(again, sizeof again, "%s/again.safetensors", g_dir);
    qmv_prune_params p = {.corpus = &g_train, .chars = true};
    qmv_prune_stats s;
    assert_int_equal(qmv_prune_file(g_pruned, again, &p, &s), QIAO_OK);
    assert_int_equal(s.rows_before, rows);
    assert_int_equal(s.rows_after, rows);
    qiao_model *m = NULL;
    assert_int_equal(qiao_model_load(again, &m), QIAO_OK);
    qiao_model_free(m);
    /* without the characters' rule, and into the same path it reads */
    p.chars = false;
    assert_int_equal(qmv_prune_file(again, again, &p, &s), QIAO_OK);
    assert_true(s.rows_after < rows);
    assert_int_equal(s.by_chars, 0);
    assert_int_equal(qiao_model_load(again, &m), QIAO_OK);
    qiao_model_free(m);
}

/* A tied output (a tensor with a row per id beside the word embeddings) and
 * a 1-D one: their rows move with the ids. */
static void tied_rows_move(void **state) {
    (void)state;
    qc_st_file *f = NULL;
    assert_int_equal(qc_st_open(XLMR, &f), QIAO_OK);
    enum { V = 3002 };
    float *tied = qt_alloc(V * 2), *bias = qt_alloc(V);
    for (int i = 0; i < V; i++) tied[2 * i] = (float)i, tied[2 * i + 1] = -(float)i, bias[i] = (float)i + 0.5f;
    const qc_st_entry add[2] = {
        {.name = "heads.tied.weight", .dtype = QIAO_DTYPE_F32, .ndim = 2, .shape = {V, 2}, .data = tied},
        {.name = "heads.tied.bias", .dtype = QIAO_DTYPE_F32, .ndim = 1, .shape = {V}, .data = bias},
    };
    char in[300], out[300];
    snprintf(in, sizeof in, "%s/tied.safetensors", g_dir);
    snprintf(out, sizeof out, "%s/tied-pruned.safetensors", g_dir);
    assert_int_equal(qc_st_rewrite(f, in, add, 2, NULL, 0), QIAO_OK);
    qc_st_close(f);
    qmv_prune_params p = {.corpus = &g_train, .chars = true};
    qmv_prune_stats s;
    assert_int_equal(qmv_prune_file(in, out, &p, &s), QIAO_OK);
    assert_int_equal(s.tensors, 3);
    qiao_tokenizer *a = tok_load(in), *b = tok_load(out);
    assert_int_equal(qc_st_open(out, &f), QIAO_OK);
    const qc_st_tensor *t = qc_st_find(f, "heads.tied.weight"), *u = qc_st_find(f, "heads.tied.bias");
    assert_true(t && u && t->shape[0] == s.rows_after && u->shape[0] == s.rows_after);
    for (int64_t j = 0; j < s.rows_after; j++) {
        float x[2], y;
        memcpy(x, row_at(t, j), sizeof x);
        memcpy(&y, row_at(u, j), sizeof y);
        const int64_t old = (int64_t)x[0];
        assert_true(x[1] == -x[0] && y == x[0] + 0.5f);
        assert_string_equal(qiao_tokenizer_piece(a, old), qiao_tokenizer_piece(b, j));
    }
    qc_st_close(f);
    qiao_tokenizer_free(a), qiao_tokenizer_free(b);
    free(tied), free(bias);
}

static void wire_format(void **state) {
    (void)state;
    qiao_tokenizer *a = tok_load(XLMR);
    size_t n = 0;
    assert_int_equal(tk_spm_proto_count(a->spm_bytes, a->spm_len, "spm", &n), QIAO_OK);
    assert_int_equal((int64_t)n, spm_vocab_size(a->spm));
    bool *keep = calloc(n, sizeof *keep);
    assert_non_null(keep);
    char *out = NULL;
    size_t out_len = 0;
    /* all kept: the same bytes (the model has no self-test data) */
    for (size_t i = 0; i < n; i++) keep[i] = true;
    assert_int_equal(tk_spm_proto_prune(a->spm_bytes, a->spm_len, keep, n, "spm", &out, &out_len), QIAO_OK);
    assert_int_equal(out_len, a->spm_len);
    assert_memory_equal(out, a->spm_bytes, out_len);
    free(out);
    /* none asked for: <unk> <s> </s> stay, nothing else */
    memset(keep, 0, n * sizeof *keep);
    assert_int_equal(tk_spm_proto_prune(a->spm_bytes, a->spm_len, keep, n, "spm", &out, &out_len), QIAO_OK);
    size_t kept = 0;
    assert_int_equal(tk_spm_proto_count(out, out_len, "out", &kept), QIAO_OK);
    assert_int_equal(kept, 3);
    assert_true(keep[0] && keep[1] && keep[2] && !keep[3]);
    free(out);
    /* a count that is not the model's, and bytes that are not a model */
    assert_int_equal(tk_spm_proto_prune(a->spm_bytes, a->spm_len, keep, n - 1, "spm", &out, &out_len),
                     QIAO_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(qiao_last_error(), "pieces"));
    static const unsigned char junk[] = {0x0a, 0x7f, 0x01}, group[] = {0x0b, 0x0c};
    assert_int_equal(tk_spm_proto_count(junk, sizeof junk, "junk", &kept), QIAO_ERR_FORMAT);
    assert_non_null(strstr(qiao_last_error(), "junk"));
    assert_int_equal(tk_spm_proto_count(group, sizeof group, "group", &kept), QIAO_ERR_FORMAT);
    free(keep);
    qiao_tokenizer_free(a);
}

static void corpus_files(void **state) {
    (void)state;
    qmv_texts t;
    memset(&t, 0, sizeof t);
    static const char jsonl[] = "\xEF\xBB\xBF{\"text\": \"我想退货\", \"intent\": \"return_request\"}\r\n\n"
                                "  \n{\"text\": \"hello\"}";
    assert_int_equal(qmv_texts_parse("a.jsonl", jsonl, sizeof jsonl - 1, &t), QIAO_OK);
    assert_int_equal(t.n, 2);
    size_t len;
    assert_string_equal(qmv_text(&t, 0, &len), "我想退货");
    assert_int_equal(len, strlen("我想退货"));
    static const char plain[] = "line one\r\n{not json}\n\nlast";
    assert_int_equal(qmv_texts_parse("b.txt", plain, sizeof plain - 1, &t), QIAO_OK);
    assert_int_equal(t.n, 5);
    assert_string_equal(qmv_text(&t, 3, NULL), "{not json}");
    assert_string_equal(qmv_text(&t, 4, &len), "last");
    assert_null(qmv_text(&t, 5, NULL));
    /* errors name file:line and keep what came before */
    static const char no_text[] = "{\"text\": \"a\"}\n{\"txet\": \"b\"}\n";
    assert_int_equal(qmv_texts_parse("c.jsonl", no_text, sizeof no_text - 1, &t), QIAO_ERR_FORMAT);
    assert_non_null(strstr(qiao_last_error(), "c.jsonl:2: no string \"text\""));
    static const char not_json[] = "{\"text\": \"a\"}\nplain\n";
    assert_int_equal(qmv_texts_parse("d.jsonl", not_json, sizeof not_json - 1, &t), QIAO_ERR_FORMAT);
    assert_non_null(strstr(qiao_last_error(), "d.jsonl:2: not JSON"));
    static const char bad_utf8[] = "ok\nbad \xC3\x28 byte\n";
    assert_int_equal(qmv_texts_parse("e.txt", bad_utf8, sizeof bad_utf8 - 1, &t), QIAO_ERR_FORMAT);
    assert_non_null(strstr(qiao_last_error(), "e.txt:2: invalid UTF-8 at byte 4"));
    assert_int_equal(t.n, 5);
    assert_int_equal(qmv_texts_load("/nonexistent/corpus.txt", &t), QIAO_ERR_IO);
    assert_non_null(strstr(qiao_last_error(), "/nonexistent/corpus.txt"));
    qmv_texts_free(&t);
    qmv_texts_free(NULL);
}

static void bad_arguments(void **state) {
    (void)state;
    qmv_prune_params p = {.corpus = &g_train, .chars = true};
    char out[300];
    snprintf(out, sizeof out, "%s/never.safetensors", g_dir);
    assert_int_equal(qmv_prune_file(NULL, out, &p, NULL), QIAO_ERR_INVALID_ARGUMENT);
    assert_int_equal(qmv_prune_file(XLMR, NULL, &p, NULL), QIAO_ERR_INVALID_ARGUMENT);
    assert_int_equal(qmv_prune_file(XLMR, out, NULL, NULL), QIAO_ERR_INVALID_ARGUMENT);
    assert_int_equal(qmv_prune_file("/nonexistent/m.safetensors", out, &p, NULL), QIAO_ERR_IO);
    /* a tokenizer file is not a model */
    assert_int_equal(qmv_prune_file(QIAO_TEST_DATA "/tokenizer/spm-kind.safetensors", out, &p, NULL), QIAO_ERR_FORMAT);
    assert_non_null(strstr(qiao_last_error(), "not a qiao model"));
    /* qiao's own hybrid tokenizer has no SentencePiece vocabulary of this kind */
    assert_int_equal(qmv_prune_file(QIAO_SOURCE_DIR "/models/qiao-base.safetensors", out, &p, NULL),
                     QIAO_ERR_UNSUPPORTED);
    assert_non_null(strstr(qiao_last_error(), "\"spm\""));
    /* nothing asked for: no piece of text would be left */
    qmv_prune_params none = {.chars = false};
    assert_int_equal(qmv_prune_file(XLMR, out, &none, NULL), QIAO_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(qiao_last_error(), "no piece of text"));
    assert_int_equal(access(out, F_OK), -1);
    unsigned mask = 0;
    assert_int_equal(qmv_scripts_parse("zh,digits", &mask), QIAO_OK);
    assert_int_equal(mask, QMV_SCRIPT_ZH | QMV_SCRIPT_DIGITS);
    assert_int_equal(qmv_scripts_parse("zh,fr", &mask), QIAO_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(qiao_last_error(), "'fr' is not zh, digits or en"));
    assert_int_equal(qmv_scripts_parse("", &mask), QIAO_ERR_INVALID_ARGUMENT);
    /* an spm tokenizer of another kind is refused by the tokenizer step too */
    qiao_tokenizer *h = tok_load(QIAO_TEST_DATA "/tokenizer/tok-test.safetensors");
    bool keep[4] = {true, true, true, true};
    tk_pruned pr;
    assert_int_equal(tk_spm_prune(h, keep, &pr), QIAO_ERR_UNSUPPORTED);
    assert_null(pr.spm);
    tk_pruned_free(&pr);
    tk_pruned_free(NULL);
    qiao_tokenizer_free(h);
}

/* The real e5 pruned to the bot's corpus with every Chinese and digit
 * piece: the training texts and every Chinese-and-digits test text
 * tokenize exactly as before, after the model's "query: " prompt. */
static void e5_bot_corpus(void **state) {
    (void)state;
    char out[300];
    snprintf(out, sizeof out, "%s/e5.safetensors", g_dir);
    qmv_prune_params p = {.corpus = &g_train, .chars = true, .scripts = QMV_SCRIPT_ZH | QMV_SCRIPT_DIGITS};
    qmv_prune_stats s;
    if (qmv_prune_file(QIAO_E5_MODEL, out, &p, &s) != QIAO_OK) fail_msg("%s", qiao_last_error());
    assert_int_equal(s.rows_before, 250002);
    assert_true(s.rows_after > 18578 && s.rows_after < 25000);
    qiao_tokenizer *a = tok_load(QIAO_E5_MODEL), *b = tok_load(out);
    qmv_texts test;
    memset(&test, 0, sizeof test);
    assert_int_equal(qmv_texts_load(TEST, &test), QIAO_OK);
    char buf[4096];
    size_t zh = 0;
    for (int set = 0; set < 2; set++) {
        const qmv_texts *t = set ? &test : &g_train;
        for (size_t i = 0; i < t->n; i++) {
            size_t len;
            const char *text = qmv_text(t, i, &len);
            bool ok = true;
            for (size_t k = 0; k < len && set;) {
                int32_t cp;
                k += tk_utf8_decode((const unsigned char *)text + k, len - k, &cp);
                ok = ok && qmv_script_char(cp, QMV_SCRIPT_ZH | QMV_SCRIPT_DIGITS);
            }
            if (!ok) continue;
            zh += set;
            const int n = snprintf(buf, sizeof buf, "query: %s", text);
            assert_true(n > 0 && (size_t)n < sizeof buf);
            qiao_tokens *ta = tokens(a, buf, (size_t)n), *tb = tokens(b, buf, (size_t)n);
            if (!same_pieces(a, ta, b, tb)) fail_msg("%s text %zu tokenizes otherwise: %s", set ? "test" : "train", i + 1,
                                                     text);
            qiao_tokens_free(ta), qiao_tokens_free(tb);
        }
    }
    print_message("e5: %lld rows kept; %zu Chinese-and-digits test texts as before\n", (long long)s.rows_after, zh);
    assert_true(zh > 300);
    qmv_texts_free(&test);
    qiao_tokenizer_free(a), qiao_tokenizer_free(b);
    unlink(out);
}

int main(int argc, char **argv) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(keeps_corpus_pieces), cmocka_unit_test(resegments_without_unk),
        cmocka_unit_test(rows_move),           cmocka_unit_test(embeds_the_same),
        cmocka_unit_test(round_trip),          cmocka_unit_test(tied_rows_move),
        cmocka_unit_test(wire_format),         cmocka_unit_test(corpus_files),
        cmocka_unit_test(bad_arguments),       cmocka_unit_test(e5_bot_corpus),
    };
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, setup, teardown);
}
