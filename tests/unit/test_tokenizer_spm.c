/* The imported tokenizer kinds (issue 17). "spm", an imported model's
 * SentencePiece model: the ids transformers' XLMRobertaTokenizer gives on a sample of every
 * intent corpus and on edge cases (tests/data/tokenizer/spm-kind.safetensors,
 * tests/golden/make_spm_kind_fixture.py; where the ids differ they must be
 * a tie, another segmentation of the same text with the same total score,
 * which SentencePiece 0.1.97 and 0.2.x break differently), the specials and
 * their names,
 * truncation that keeps </s>, invalid UTF-8 refused or replaced with
 * offsets into the original text, batches without characters, bad
 * configs, and two threads on one tokenizer. "wordpiece", BERT's
 * (tokenizers/wordpiece.c, whose own test compares it with BertTokenizer
 * on every corpus text): stored in a tokenizer file with the real
 * bert-base-chinese vocab.txt, qiao_tokenize gives tk_wp_encode's ids and
 * offsets, [CLS] and [SEP] named, blank text no tokens, truncation keeping
 * [SEP], invalid UTF-8 refused or replaced, batches, bad options. */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <math.h>

#include "core/safetensors.h"
#include "testutil.h"
#include "tokenizers/tokenizer.h"

#define FIXTURE QIAO_TEST_DATA "/tokenizer/spm-kind.safetensors"

typedef struct fixture {
    qc_st_file *f;
    const char *texts; /* NUL-separated */
    int32_t *lengths, *ids;
    float *scores;     /* (pieces) SentencePiece's score of each piece */
    int64_t n, n_scores;
} fixture;

static void fixture_open(fixture *x) {
    memset(x, 0, sizeof *x);
    assert_int_equal(qc_st_open(FIXTURE, &x->f), QIAO_OK);
    const qc_st_tensor *t = qc_st_find(x->f, "fixture.texts"), *l = qc_st_find(x->f, "fixture.lengths"),
                       *i = qc_st_find(x->f, "fixture.ids"), *s = qc_st_find(x->f, "fixture.scores");
    assert_true(t && l && i && s);
    x->texts = t->data;
    x->n = l->numel, x->n_scores = s->numel;
    x->lengths = malloc((size_t)l->nbytes), x->ids = malloc((size_t)i->nbytes), x->scores = malloc((size_t)s->nbytes);
    assert_true(x->lengths && x->ids && x->scores);
    memcpy(x->lengths, l->data, l->nbytes); /* tensor data may be unaligned */
    memcpy(x->ids, i->data, i->nbytes);
    memcpy(x->scores, s->data, s->nbytes);
}

static void fixture_close(fixture *x) {
    free(x->lengths), free(x->ids), free(x->scores);
    qc_st_close(x->f);
}

static qiao_tokenizer *load(void) {
    qiao_tokenizer *tok = NULL;
    qiao_status st = qiao_tokenizer_load(FIXTURE, &tok);
    if (st != QIAO_OK) fail_msg("%s", qiao_last_error());
    return tok;
}

/* The pieces of ids (specials left out) as one string, and their total score. */
static double spelled(const qiao_tokenizer *tok, const fixture *x, const int32_t *ids, size_t n, char *buf, size_t cap) {
    double score = 0.0;
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (ids[i] <= 2) continue; /* <s> <pad> </s> */
        const int64_t sp = ids[i] == 3 ? 0 : ids[i] - 1; /* <unk> is SentencePiece's piece 0 */
        assert_true(sp >= 0 && sp < x->n_scores);
        score += x->scores[sp];
        const char *p = qiao_tokenizer_piece(tok, ids[i]);
        const size_t l = strlen(p);
        if (used + l + 1 < cap) memcpy(buf + used, p, l + 1), used += l;
    }
    return score;
}

/* Whether two segmentations of one text are a tie: the same pieces'
 * text, the same specials at the ends, the same total score. */
static bool tie(const qiao_tokenizer *tok, const fixture *x, const int32_t *a, size_t na, const int32_t *b, size_t nb) {
    if (!na || !nb || a[0] != b[0] || a[na - 1] != b[nb - 1]) return false;
    char sa[4096], sb[4096];
    const double ta = spelled(tok, x, a, na, sa, sizeof sa), tb = spelled(tok, x, b, nb, sb, sizeof sb);
    return !strcmp(sa, sb) && fabs(ta - tb) <= 1e-4 * (1.0 + fabs(ta));
}

/* Texts of the fixture whose ids on `tok` differ from transformers' other
 * than by a tie (printing the first few); *ties counts the ties. */
static int64_t mismatches(const qiao_tokenizer *tok, const fixture *x, bool print, int64_t *ties) {
    int64_t bad = 0, at = 0;
    *ties = 0;
    const char *s = x->texts;
    for (int64_t k = 0; k < x->n; k++) {
        const size_t len = strlen(s);
        qiao_tokens *t = NULL;
        qiao_status st = qiao_tokenize(tok, s, len, NULL, &t);
        bool same = st == QIAO_OK && t->count == (size_t)x->lengths[k] &&
                    !memcmp(t->ids, x->ids + at, t->count * sizeof(int32_t));
        if (!same && st == QIAO_OK && tie(tok, x, t->ids, t->count, x->ids + at, (size_t)x->lengths[k])) {
            same = true;
            (*ties)++;
        }
        if (!same && print && bad < 5) {
            printf("text %lld '%s': %s, %zu ids (expected %d):", (long long)k, s, qiao_status_str(st),
                   t ? t->count : 0, x->lengths[k]);
            for (size_t j = 0; t && j < t->count; j++) printf(" %d", t->ids[j]);
            printf("  expected:");
            for (int32_t j = 0; j < x->lengths[k]; j++) printf(" %d", x->ids[at + j]);
            printf("\n");
        }
        bad += !same;
        at += x->lengths[k];
        qiao_tokens_free(t);
        s += len + 1;
    }
    return bad;
}

static void matches_transformers(void **state) {
    (void)state;
    fixture x;
    fixture_open(&x);
    qiao_tokenizer *tok = load();
    int64_t ties = 0;
    const int64_t bad = mismatches(tok, &x, true, &ties);
    printf("%lld texts: %lld as XLMRobertaTokenizer gives them, %lld tied segmentations broken the other way, %lld "
           "different\n",
           (long long)x.n, (long long)(x.n - bad - ties), (long long)ties, (long long)bad);
    assert_int_equal(bad, 0);
    assert_true(x.n > 3000);
    qiao_tokenizer_free(tok);
    fixture_close(&x);
}

static void specials(void **state) {
    (void)state;
    qiao_tokenizer *tok = load();
    assert_int_equal(qiao_tokenizer_vocab_size(tok), 3002);
    assert_int_equal(qiao_tokenizer_k(tok), 0);
    assert_int_equal(qiao_tokenizer_char_vocab_size(tok), 0);
    assert_string_equal(qiao_tokenizer_piece(tok, 0), "<s>");
    assert_string_equal(qiao_tokenizer_piece(tok, 1), "<pad>");
    assert_string_equal(qiao_tokenizer_piece(tok, 2), "</s>");
    assert_string_equal(qiao_tokenizer_piece(tok, 3), "<unk>");
    assert_string_equal(qiao_tokenizer_piece(tok, 3001), "<mask>");
    assert_null(qiao_tokenizer_piece(tok, 3002));
    /* a piece's text is its SentencePiece piece, one id further */
    qiao_tokens *t = NULL;
    assert_int_equal(qiao_tokenize(tok, "hello", 5, NULL, &t), QIAO_OK);
    assert_true(t->count >= 3 && t->ids[0] == 0 && t->ids[t->count - 1] == 2 && t->k == 0);
    assert_non_null(qiao_tokenizer_piece(tok, t->ids[1]));
    assert_int_equal(t->tags[1], QIAO_TAG_S);
    /* bos and eos sit at the ends of the text; the pieces inside it, in order */
    assert_true(t->offsets[0] == 0 && t->offsets[2 * (t->count - 1)] == 5);
    for (size_t i = 1; i + 1 < t->count; i++)
        assert_true(t->offsets[2 * i] <= t->offsets[2 * i + 1] && t->offsets[2 * i + 1] <= 5 &&
                    t->offsets[2 * i] >= t->offsets[2 * i - 2]);
    qiao_tokens_free(t);
    /* detokenizing is the hybrid tokenizer's */
    const int32_t ids[2] = {5, 6};
    char *text = NULL;
    assert_int_equal(qiao_detokenize(tok, ids, 2, NULL, &text, NULL), QIAO_ERR_UNSUPPORTED);
    qiao_tokenizer_free(tok);
}

/* A limit keeps <s>, the first pieces and </s>, as the model's own truncation does. */
static void truncation(void **state) {
    (void)state;
    qiao_tokenizer *tok = load();
    const char *s = "what expression would i use to say i love you if i were an italian";
    qiao_tokens *full = NULL, *t = NULL;
    assert_int_equal(qiao_tokenize(tok, s, strlen(s), NULL, &full), QIAO_OK);
    assert_true(full->count > 8);
    qiao_tokenize_params p = qiao_tokenize_default_params();
    const int64_t limits[] = {6, 2, 1};
    for (int i = 0; i < 3; i++) {
        p.max_tokens = limits[i];
        assert_int_equal(qiao_tokenize(tok, s, strlen(s), &p, &t), QIAO_OK);
        assert_int_equal(t->count, limits[i]);
        assert_int_equal(t->ids[0], 0);
        if (limits[i] >= 2) assert_int_equal(t->ids[t->count - 1], 2);
        for (size_t j = 1; j + 1 < t->count; j++) assert_int_equal(t->ids[j], full->ids[j]);
        qiao_tokens_free(t);
    }
    qiao_tokens_free(full);
    qiao_tokenizer_free(tok);
}

static void invalid_utf8(void **state) {
    (void)state;
    qiao_tokenizer *tok = load();
    const char bad[] = "ok \xff\xfe then 中文 \xe4\xb8";
    qiao_tokens *t = NULL;
    assert_int_equal(qiao_tokenize(tok, bad, sizeof bad - 1, NULL, &t), QIAO_ERR_FORMAT);
    assert_non_null(strstr(qiao_last_error(), "byte 3"));
    assert_null(t);
    qiao_tokenize_params p = qiao_tokenize_default_params();
    p.replace_invalid = 1;
    assert_int_equal(qiao_tokenize(tok, bad, sizeof bad - 1, &p, &t), QIAO_OK);
    for (size_t i = 0; i < t->count; i++)
        assert_true(t->offsets[2 * i] >= 0 && t->offsets[2 * i] <= t->offsets[2 * i + 1] &&
                    t->offsets[2 * i + 1] <= (int64_t)(sizeof bad - 1));
    qiao_tokens_free(t);
    qiao_tokenizer_free(tok);
}

static void batch(void **state) {
    (void)state;
    qiao_tokenizer *tok = load();
    const char *texts[3] = {"hello there", "你好", "can you tell me how to say it in spanish"};
    qiao_token_batch *b = NULL;
    assert_int_equal(qiao_tokenize_batch(tok, texts, NULL, 3, 0, NULL, &b), QIAO_OK);
    assert_true(b->n == 3 && b->k == 0);
    for (size_t i = 0; i < 3; i++) {
        qiao_tokens *t = NULL;
        assert_int_equal(qiao_tokenize(tok, texts[i], strlen(texts[i]), NULL, &t), QIAO_OK);
        assert_int_equal(b->lengths[i], t->count);
        assert_memory_equal(b->ids + i * b->t, t->ids, t->count * sizeof(int32_t));
        for (size_t j = 0; j < b->t; j++) assert_int_equal(b->mask[i * b->t + j], j < t->count);
        qiao_tokens_free(t);
    }
    qiao_token_batch_free(b);
    /* a length cap keeps </s> in every row */
    assert_int_equal(qiao_tokenize_batch(tok, texts, NULL, 3, 4, NULL, &b), QIAO_OK);
    assert_true(b->t == 4 && b->ids[2 * 4 + 3] == 2 && b->ids[0] == 0);
    qiao_token_batch_free(b);
    qiao_tokenizer_free(tok);
}

/* A tokenizer file of one tensor (`tensor`: the bytes) and `config` as its
 * metadata, loaded. */
static qiao_status load_file_with(const char *tensor, const void *data, size_t n, const char *config,
                                  qiao_tokenizer **out) {
    char path[] = "/tmp/qiao-tok-kind-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    qc_st_entry e = {.name = tensor, .dtype = QIAO_DTYPE_U8, .ndim = 1, .shape = {(int64_t)n}, .data = data};
    qc_st_kv kv = {TK_META_CONFIG, config};
    assert_int_equal(qc_st_write(path, &e, 1, &kv, 1), QIAO_OK);
    qiao_status st = qiao_tokenizer_load(path, out);
    unlink(path);
    return st;
}

/* A tokenizer file with the fixture's model and `config` as its metadata. */
static qiao_status load_with_config(const char *config, qiao_tokenizer **out) {
    qc_st_file *f = NULL;
    assert_int_equal(qc_st_open(FIXTURE, &f), QIAO_OK);
    const qc_st_tensor *m = qc_st_find(f, TK_TENSOR_SPM);
    assert_non_null(m);
    qiao_status st = load_file_with(TK_TENSOR_SPM, m->data, m->nbytes, config, out);
    qc_st_close(f);
    return st;
}

static void bad_configs(void **state) {
    (void)state;
    static const struct {
        const char *config, *needle;
    } cases[] = {
        {"{\"version\": 1, \"kind\": \"wordpiece2\"}", "kind"},
        {"{\"version\": 1, \"kind\": \"spm\", \"vocab_size\": 3002, \"id_offset\": 1}", "unk"},
        {"{\"version\": 1, \"kind\": \"spm\", \"vocab_size\": 100, \"id_offset\": 1, \"unk\": 3}", "do not fit"},
        {"{\"version\": 1, \"kind\": \"spm\", \"vocab_size\": 3002, \"unk\": 3, \"add_bos\": true}", "add_bos"},
        {"{\"version\": 1, \"kind\": \"spm\", \"vocab_size\": 3002, \"unk\": 3, \"bos\": 3002}", "bos"},
        {"{\"version\": 2, \"kind\": \"spm\", \"vocab_size\": 3002, \"unk\": 3}", "version"},
        {"{\"version\": 1, \"kind\": \"spm\", \"vocab_size\": 3002, \"unk\": 3, \"add_eos\": 1}", "add_eos"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        qiao_tokenizer *tok = NULL;
        qiao_status st = load_with_config(cases[i].config, &tok);
        if (st != QIAO_ERR_FORMAT || !strstr(qiao_last_error(), cases[i].needle))
            fail_msg("%s: %s '%s', want FORMAT naming %s", cases[i].config, qiao_status_str(st), qiao_last_error(),
                     cases[i].needle);
        assert_null(tok);
    }
    /* the minimal one loads: no specials around the text */
    qiao_tokenizer *tok = NULL;
    assert_int_equal(load_with_config("{\"version\": 1, \"kind\": \"spm\", \"vocab_size\": 3000, \"unk\": 0}", &tok),
                     QIAO_OK);
    qiao_tokens *t = NULL;
    assert_int_equal(qiao_tokenize(tok, "hello", 5, NULL, &t), QIAO_OK);
    assert_true(t->count >= 1 && t->ids[0] != 0);
    qiao_tokens_free(t);
    qiao_tokenizer_free(tok);
}

typedef struct worker {
    const qiao_tokenizer *tok;
    const fixture *x;
    int64_t bad, ties;
} worker;

static void *work(void *arg) {
    worker *w = arg;
    w->bad = mismatches(w->tok, w->x, false, &w->ties);
    return NULL;
}

static void threads(void **state) {
    (void)state;
    fixture x;
    fixture_open(&x);
    qiao_tokenizer *tok = load();
    worker w[2] = {{tok, &x, -1, 0}, {tok, &x, -1, 0}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++) assert_int_equal(pthread_create(&th[i], NULL, work, &w[i]), 0);
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    assert_true(w[0].bad == 0 && w[1].bad == 0);
    qiao_tokenizer_free(tok);
    fixture_close(&x);
}

/* A tokenizer file holding the bert-base-chinese vocab.txt as the wordpiece
 * kind with `config`. */
static qiao_status load_wordpiece(const char *config, qiao_tokenizer **out) {
    uint8_t *vocab = NULL;
    size_t n = 0;
    assert_int_equal(qc_read_file(QIAO_TEST_DATA "/wordpiece/vocab.txt", 1 << 24, &vocab, &n), QIAO_OK);
    qiao_status st = load_file_with(TK_TENSOR_VOCAB, vocab, n, config, out);
    free(vocab);
    return st;
}

/* What every imported kind does: blank text has no tokens, a limit keeps
 * the start token (and the end token from 2 on), invalid UTF-8 is refused
 * naming its byte or replaced with offsets into the original text. */
static void imported_kind_rules(const qiao_tokenizer *tok, const char *text, int32_t start, int32_t end) {
    qiao_tokens *t = NULL;
    assert_int_equal(qiao_tokenize(tok, " \t ", 3, NULL, &t), QIAO_OK);
    assert_int_equal(t->count, 0);
    qiao_tokens_free(t);
    qiao_tokenize_params p = qiao_tokenize_default_params();
    const int64_t limits[] = {5, 2, 1};
    for (int i = 0; i < 3; i++) {
        p.max_tokens = limits[i];
        assert_int_equal(qiao_tokenize(tok, text, strlen(text), &p, &t), QIAO_OK);
        assert_int_equal(t->count, limits[i]);
        assert_int_equal(t->ids[0], start);
        if (limits[i] >= 2) assert_int_equal(t->ids[t->count - 1], end);
        qiao_tokens_free(t);
    }
    const char bad[] = "ok \xff\xfe 中文 \xe4\xb8";
    assert_int_equal(qiao_tokenize(tok, bad, sizeof bad - 1, NULL, &t), QIAO_ERR_FORMAT);
    assert_non_null(strstr(qiao_last_error(), "byte 3"));
    p = qiao_tokenize_default_params();
    p.replace_invalid = 1;
    assert_int_equal(qiao_tokenize(tok, bad, sizeof bad - 1, &p, &t), QIAO_OK);
    assert_true(t->count > 2);
    for (size_t i = 0; i < t->count; i++)
        assert_true(t->offsets[2 * i] >= 0 && t->offsets[2 * i] <= t->offsets[2 * i + 1] &&
                    t->offsets[2 * i + 1] <= (int64_t)(sizeof bad - 1));
    qiao_tokens_free(t);
}

static void wordpiece_kind(void **state) {
    (void)state;
    qiao_tokenizer *tok = NULL;
    qiao_status st = load_wordpiece("{\"version\": 1, \"kind\": \"wordpiece\", \"lower\": true}", &tok);
    if (st != QIAO_OK) fail_msg("%s", qiao_last_error());
    assert_int_equal(qiao_tokenizer_vocab_size(tok), 21128);
    assert_int_equal(qiao_tokenizer_k(tok), 0);
    assert_string_equal(qiao_tokenizer_piece(tok, 101), "[CLS]");
    assert_string_equal(qiao_tokenizer_piece(tok, 102), "[SEP]");
    tk_wp *wp = NULL;
    tk_wp_options o = tk_wp_default_options();
    assert_int_equal(tk_wp_load_file(QIAO_TEST_DATA "/wordpiece/vocab.txt", &o, &wp), QIAO_OK);
    const char *texts[] = {"你好，我想找一家经济型的酒店，推荐一下。", "Can you tell me how to say I LOVE YOU in Italian?",
                           "价格从1299降到999了", "naïve café 😀"};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        qiao_tokens *t = NULL;
        tk_wp_encoding e;
        const size_t len = strlen(texts[i]);
        assert_int_equal(qiao_tokenize(tok, texts[i], len, NULL, &t), QIAO_OK);
        assert_int_equal(tk_wp_encode(wp, texts[i], len, true, 0, &e), QIAO_OK);
        assert_int_equal(t->count, e.count);
        assert_memory_equal(t->ids, e.ids, e.count * sizeof(int32_t));
        for (size_t j = 1; j + 1 < e.count; j++) assert_true(t->offsets[2 * j] == e.offsets[2 * j]);
        assert_true(t->ids[0] == 101 && t->ids[t->count - 1] == 102 && t->tags[1] == QIAO_TAG_S);
        tk_wp_encoding_free(&e);
        qiao_tokens_free(t);
    }
    imported_kind_rules(tok, texts[1], 101, 102);
    qiao_tokens *t = NULL;
    /* a batch without characters */
    qiao_token_batch *b = NULL;
    assert_int_equal(qiao_tokenize_batch(tok, texts, NULL, 3, 0, NULL, &b), QIAO_OK);
    assert_true(b->k == 0 && b->ids[0] == 101 && b->lengths[1] > b->lengths[2]);
    qiao_token_batch_free(b);
    tk_wp_free(wp);
    qiao_tokenizer_free(tok);
    /* cased, and bad options */
    assert_int_equal(load_wordpiece("{\"version\": 1, \"kind\": \"wordpiece\", \"lower\": false, \"strip_accents\": null}",
                                    &tok),
                     QIAO_OK);
    assert_int_equal(qiao_tokenize(tok, "ABC", 3, NULL, &t), QIAO_OK);
    assert_true(t->count >= 3 && t->ids[1] == 100); /* "ABC": no such cased piece, [UNK] */
    qiao_tokens_free(t);
    qiao_tokenizer_free(tok);
    const char *bads[] = {"{\"version\": 1, \"kind\": \"wordpiece\", \"lower\": 1}",
                          "{\"version\": 1, \"kind\": \"wordpiece\", \"max_chars\": 0}",
                          "{\"version\": 1, \"kind\": \"wordpiece\", \"strip_accents\": \"yes\"}"};
    for (int i = 0; i < 3; i++) {
        tok = NULL;
        assert_int_equal(load_wordpiece(bads[i], &tok), QIAO_ERR_FORMAT);
        assert_null(tok);
    }
}

/* The bpe kind (CLIP's byte-level BPE) as a converted CLIP model holds it:
 * the ids of clip_bpe.c (which test_clip_bpe checks against transformers),
 * the specials around them, truncation keeping <|endoftext|>, blank text,
 * invalid UTF-8, offsets in range; a file without its merges is refused
 * (QIAO_ERR_NOT_FOUND naming the tensor, as for the other kinds). */
static void bpe_kind(void **state) {
    (void)state;
    qiao_tokenizer *tok = NULL;
    qiao_status st = qiao_tokenizer_load(QIAO_TEST_DATA "/hf/clip/model.safetensors", &tok);
    if (st != QIAO_OK) fail_msg("%s", qiao_last_error());
    assert_int_equal(qiao_tokenizer_vocab_size(tok), 49408);
    assert_string_equal(qiao_tokenizer_piece(tok, 49406), "<|startoftext|>");
    assert_string_equal(qiao_tokenizer_piece(tok, 49407), "<|endoftext|>");
    uint8_t *vj = NULL, *mt = NULL;
    size_t vn = 0, mn = 0;
    assert_int_equal(qc_read_file(QIAO_TEST_DATA "/clip_bpe/vocab.json", 1 << 24, &vj, &vn), QIAO_OK);
    assert_int_equal(qc_read_file(QIAO_TEST_DATA "/clip_bpe/merges.txt", 1 << 24, &mt, &mn), QIAO_OK);
    tk_bpe *bpe = NULL;
    assert_int_equal(tk_bpe_load((const char *)vj, vn, (const char *)mt, mn, &bpe), QIAO_OK);
    const char *texts[] = {"a photo of a red circle left of a small blue square", "你好，我想找一家经济型的酒店。",
                           "Can't you tell me how to say I LOVE YOU in Italian?", "naïve café 😀"};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        qiao_tokens *t = NULL;
        int32_t *ids = NULL;
        size_t n = 0;
        const size_t len = strlen(texts[i]);
        assert_int_equal(qiao_tokenize(tok, texts[i], len, NULL, &t), QIAO_OK);
        assert_int_equal(tk_bpe_encode(bpe, texts[i], len, NULL, &ids, &n), QIAO_OK);
        assert_int_equal(t->count, n);
        assert_memory_equal(t->ids, ids, n * sizeof(int32_t));
        assert_true(t->ids[0] == 49406 && t->ids[t->count - 1] == 49407 && t->tags[1] == QIAO_TAG_S);
        for (size_t j = 0; j < t->count; j++)
            assert_true(t->offsets[2 * j] >= 0 && t->offsets[2 * j] <= t->offsets[2 * j + 1] &&
                        t->offsets[2 * j + 1] <= (int64_t)len);
        free(ids);
        qiao_tokens_free(t);
    }
    imported_kind_rules(tok, texts[2], 49406, 49407);
    tk_bpe_free(bpe);
    qiao_tokenizer_free(tok);
    /* vocab.json without merges.txt */
    tok = NULL;
    assert_int_equal(load_file_with(TK_TENSOR_VOCAB, vj, vn, "{\"version\": 1, \"kind\": \"bpe\"}", &tok),
                     QIAO_ERR_NOT_FOUND);
    assert_non_null(strstr(qiao_last_error(), TK_TENSOR_MERGES));
    assert_null(tok);
    free(vj), free(mt);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(matches_transformers), cmocka_unit_test(specials),    cmocka_unit_test(truncation),
    cmocka_unit_test(invalid_utf8),         cmocka_unit_test(batch),       cmocka_unit_test(bad_configs),
    cmocka_unit_test(threads),              cmocka_unit_test(wordpiece_kind), cmocka_unit_test(bpe_kind),
};
QT_MAIN(tests)
