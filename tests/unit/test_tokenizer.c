/* The hybrid character+word tokenizer: ICU normalization and its byte map,
 * invalid UTF-8, word tags on Chinese and English, offsets into the
 * original text, long text, batches, training round trips, loading from
 * memory and from a model file, corrupt files, and sharing one tokenizer
 * between threads. Most cases use the committed tests/data/tokenizer/
 * tok-test.safetensors (trained on corpus.txt next to it). */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"
#include "tokenizers/tokenizer.h"

#define TOK_PATH QIAO_TEST_DATA "/tokenizer/tok-test.safetensors"
#define CORPUS_PATH QIAO_TEST_DATA "/tokenizer/corpus.txt"

static qiao_tokenizer *load_test_tok(void) {
    qiao_tokenizer *tok = NULL;
    qiao_status st = qiao_tokenizer_load(TOK_PATH, &tok);
    if (st != QIAO_OK) printf("load: %s\n", qiao_last_error());
    assert_int_equal(st, QIAO_OK);
    return tok;
}

static qiao_tokens *tokenize_str(const qiao_tokenizer *tok, const char *s) {
    qiao_tokenize_params p = qiao_tokenize_default_params();
    qiao_tokens *t = NULL;
    qiao_status st = qiao_tokenize(tok, s, strlen(s), &p, &t);
    if (st != QIAO_OK) printf("tokenize: %s\n", qiao_last_error());
    assert_int_equal(st, QIAO_OK);
    return t;
}

static char *normalize_str(const char *s, bool fold, bool t2s) {
    tk_norm_opts o = {.case_fold = fold, .t2s = t2s};
    tk_normalized n;
    assert_int_equal(tk_normalize(s, strlen(s), &o, "test", &n), QIAO_OK);
    char *r = strdup(n.s);
    tk_normalized_free(&n);
    return r;
}

static void expect_norm(const char *in, bool fold, bool t2s, const char *want) {
    char *got = normalize_str(in, fold, t2s);
    if (strcmp(got, want) != 0) printf("normalize '%s': got '%s', want '%s'\n", in, got, want);
    assert_string_equal(got, want);
    free(got);
}

/* Words as the tags group the tokens: each word's original substring,
 * leading space trimmed; appended to out separated by '|'. */
static void words_of(const qiao_tokens *t, const char *text, char *out, size_t cap) {
    out[0] = '\0';
    int64_t ws = -1;
    for (size_t i = 0; i < t->count; i++) {
        uint8_t g = t->tags[i];
        if (g == QIAO_TAG_B || g == QIAO_TAG_S) ws = t->offsets[2 * i];
        if (g == QIAO_TAG_E || g == QIAO_TAG_S) {
            int64_t we = t->offsets[2 * i + 1];
            assert_true(ws >= 0 && we >= ws);
            for (;;) { /* the space before a word is part of its first piece */
                if (ws < we && text[ws] == ' ') ws++;
                else if (ws + 3 <= we && !strncmp(text + ws, "\xE3\x80\x80", 3)) ws += 3;
                else break;
            }
            size_t n = strlen(out);
            snprintf(out + n, cap - n, "%s%.*s", n ? "|" : "", (int)(we - ws), text + ws);
            ws = -1;
        }
    }
}

/* The text the pieces spell: "▁" is a space, "<0xXX>" a byte. */
static char *pieces_text(const qiao_tokenizer *tok, const qiao_tokens *t) {
    size_t cap = 16 + t->count * 64, n = 0;
    char *o = malloc(cap);
    assert_non_null(o);
    for (size_t i = 0; i < t->count; i++) {
        const char *p = qiao_tokenizer_piece(tok, t->ids[i]);
        assert_non_null(p);
        unsigned v;
        if (strlen(p) == 6 && sscanf(p, "<0x%2X>", &v) == 1) {
            o[n++] = (char)v;
            continue;
        }
        for (; *p; p++) {
            if (!strncmp(p, "\xE2\x96\x81", 3)) {
                o[n++] = ' ';
                p += 2;
            } else {
                o[n++] = *p;
            }
        }
    }
    o[n] = '\0';
    return o;
}

static void check_offsets(const qiao_tokenizer *tok, const char *text) {
    size_t len = strlen(text);
    qiao_tokens *t = tokenize_str(tok, text);
    int64_t prev = 0;
    for (size_t i = 0; i < t->count; i++) {
        int64_t s = t->offsets[2 * i], e = t->offsets[2 * i + 1];
        assert_true(s >= 0 && s <= e && e <= (int64_t)len);
        assert_true(s >= prev || s == t->offsets[2 * i - 2]); /* monotone; bytes of one char share */
        prev = s;
        assert_true(t->tags[i] >= QIAO_TAG_B && t->tags[i] <= QIAO_TAG_S);
        for (int k = 0; k < t->k; k++) {
            int32_t c = t->char_ids[i * (size_t)t->k + k];
            assert_true(c >= 0 && c < qiao_tokenizer_char_vocab_size(tok));
        }
    }
    char *spelled = pieces_text(tok, t);
    char *norm = normalize_str(text, true, false);
    if (strcmp(spelled, norm) != 0) printf("pieces spell '%s', normalized is '%s'\n", spelled, norm);
    assert_string_equal(spelled, norm);
    free(spelled);
    free(norm);
    qiao_tokens_free(t);
}

/* ---- normalization ----------------------------------------------------------- */

static void normalize_fullwidth(void **state) {
    (void)state;
    expect_norm("ＡＢＣ１２３！？（ｘ）", true, false, "abc123!?(x)");
    expect_norm("你好，世界！", true, false, "你好,世界!");
    expect_norm("ｶﾀｶﾅ", true, false, "カタカナ");
}

static void normalize_nfkc_compat(void **state) {
    (void)state;
    expect_norm("\xEF\xAC\x81nd", false, false, "find");          /* U+FB01 ligature fi */
    expect_norm("\xE2\x91\xA0\xE3\x8E\x8F", false, false, "1kg");  /* circled one, square kg */
    expect_norm("e\xCC\x81", false, false, "\xC3\xA9");             /* e + combining acute = é */
    expect_norm("x\xC2\xB2", false, false, "x2");                   /* superscript two */
}

static void normalize_case_fold(void **state) {
    (void)state;
    expect_norm("HeLLo WORLD \xC3\x80\xC3\x89 Stra\xC3\x9F" "e", true, false, "hello world \xC3\xA0\xC3\xA9 strasse");
    expect_norm("HeLLo", false, false, "HeLLo");
}

static void normalize_whitespace(void **state) {
    (void)state;
    expect_norm("  a\t\n b\xE3\x80\x80" "c\xC2\xA0 d \r\n", true, false, "a b c d");
    expect_norm("x\xE2\x80\x8By\xE2\x80\xA8z", true, false, "x y z"); /* zero-width space, line separator */
    expect_norm(" \t\r\n ", true, false, "");
    expect_norm("a\x01\x7F" "b", true, false, "a b");
}

static void normalize_traditional(void **state) {
    (void)state;
    expect_norm("體育館裡的電腦", true, true, "体育馆里的电脑");
    expect_norm("體育館裡的電腦", true, false, "體育館裡的電腦");
    expect_norm("简体不变 ABC", true, true, "简体不变 abc");
}

static void normalize_byte_map(void **state) {
    (void)state;
    const char *in = " Ａ\xEF\xAC\x81  b"; /* space, fullwidth A (3 bytes), fi ligature (3), 2 spaces, b */
    tk_norm_opts o = {.case_fold = true};
    tk_normalized n;
    assert_int_equal(tk_normalize(in, strlen(in), &o, "test", &n), QIAO_OK);
    assert_string_equal(n.s, "afi b");
    int64_t want[5][2] = {{1, 4}, {4, 7}, {4, 7}, {7, 9}, {9, 10}};
    for (int i = 0; i < 5; i++) {
        assert_int_equal(n.ostart[i], want[i][0]);
        assert_int_equal(n.oend[i], want[i][1]);
    }
    tk_normalized_free(&n);
}

/* ---- invalid UTF-8 ------------------------------------------------------------- */

static void invalid_utf8_error(void **state) {
    (void)state;
    qiao_tokenizer *tok = load_test_tok();
    qiao_tokenize_params p = qiao_tokenize_default_params();
    const struct { const char *s; size_t at; } bad[] = {
        {"abc\xFF" "def", 3}, {"\xC0\xAF", 0}, {"ok \xED\xA0\x80", 3}, {"中\xE4\xB8", 3}, {"\xF4\x90\x80\x80", 0}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        qiao_tokens *t = (qiao_tokens *)1;
        assert_int_equal(qiao_tokenize(tok, bad[i].s, strlen(bad[i].s), &p, &t), QIAO_ERR_FORMAT);
        assert_null(t);
        char want[64];
        snprintf(want, sizeof want, "at byte %zu", bad[i].at);
        if (!strstr(qiao_last_error(), want)) printf("message: %s (want '%s')\n", qiao_last_error(), want);
        assert_non_null(strstr(qiao_last_error(), want));
    }
    qiao_tokenizer_free(tok);
}

static void invalid_utf8_replace(void **state) {
    (void)state;
    qiao_tokenizer *tok = load_test_tok();
    qiao_tokenize_params p = qiao_tokenize_default_params();
    p.replace_invalid = 1;
    const char *s = "ab\xFF" "cd\xE4\xB8";
    qiao_tokens *t = NULL;
    assert_int_equal(qiao_tokenize(tok, s, strlen(s), &p, &t), QIAO_OK);
    /* U+FFFD is not in the piece vocabulary: it comes back as its 3 bytes,
     * each pointing at the invalid original byte(s). */
    int covered_ff = 0, covered_tail = 0;
    for (size_t i = 0; i < t->count; i++) {
        int64_t b = t->offsets[2 * i], e = t->offsets[2 * i + 1];
        assert_true(b >= 0 && b <= e && e <= (int64_t)strlen(s));
        if (b == 2 && e == 3) covered_ff++;
        if (b == 5 && e == 7) covered_tail++;
    }
    assert_true(covered_ff >= 1);
    assert_true(covered_tail >= 1);
    char *spelled = pieces_text(tok, t);
    assert_string_equal(spelled, "ab\xEF\xBF\xBD" "cd\xEF\xBF\xBD");
    free(spelled);
    qiao_tokens_free(t);
    qiao_tokenizer_free(tok);
}

/* ---- segmentation and tags ------------------------------------------------------- */

static void segment_chinese(void **state) {
    (void)state;
    qiao_tokenizer *tok = load_test_tok();
    const char *s = "我喜欢北京天安门";
    qiao_tokens *t = tokenize_str(tok, s);
    char words[512];
    words_of(t, s, words, sizeof words);
    printf("words: %s\n", words);
    assert_string_equal(words, "我|喜欢|北京|天安门");
    qiao_tokens_free(t);
    s = "可以帮我推荐一个酒店吗？";
    t = tokenize_str(tok, s);
    words_of(t, s, words, sizeof words);
    printf("words: %s\n", words);
    assert_non_null(strstr(words, "|推荐|"));
    assert_non_null(strstr(words, "|酒店|"));
    assert_non_null(strstr(words, "|？"));
    qiao_tokens_free(t);
    qiao_tokenizer_free(tok);
}

static void segment_english(void **state) {
    (void)state;
    qiao_tokenizer *tok = load_test_tok();
    const char *s = "Please set an alarm, it's late!";
    qiao_tokens *t = tokenize_str(tok, s);
    char words[512];
    words_of(t, s, words, sizeof words);
    printf("words: %s\n", words);
    assert_string_equal(words, "Please|set|an|alarm|,|it's|late|!");
    /* a frequent corpus word is one piece (S); its piece begins with "▁" */
    int found = 0;
    for (size_t i = 0; i < t->count; i++)
        if (t->offsets[2 * i] == 6 && t->offsets[2 * i + 1] == 10) {
            assert_int_equal(t->tags[i], QIAO_TAG_S);
            assert_string_equal(qiao_tokenizer_piece(tok, t->ids[i]), "\xE2\x96\x81set");
            found = 1;
        }
    assert_true(found);
    qiao_tokens_free(t);
    qiao_tokenizer_free(tok);
}

static void mixed_zh_en_emoji(void **state) {
    (void)state;
    qiao_tokenizer *tok = load_test_tok();
    const char *s = "我用iPhone 14拍了😀照片，cost ￥3,999！👨‍👩‍👧";
    check_offsets(tok, s);
    qiao_tokens *t = tokenize_str(tok, s);
    char words[512];
    words_of(t, s, words, sizeof words);
    printf("words: %s\n", words);
    assert_non_null(strstr(words, "|iPhone|"));
    assert_non_null(strstr(words, "|😀|"));
    assert_non_null(strstr(words, "|👨‍👩‍👧")); /* a ZWJ sequence stays one word */
    /* the emoji has no piece: byte fallback keeps its 4 bytes, each pointing
     * at the whole emoji; its char id is unknown */
    const char *emo = strstr(s, "😀");
    int bytes = 0;
    for (size_t i = 0; i < t->count; i++)
        if (t->offsets[2 * i] == emo - s && t->offsets[2 * i + 1] == emo - s + 4) {
            bytes++;
            assert_int_equal(t->char_ids[i * (size_t)t->k], QIAO_CHAR_UNK);
        }
    assert_int_equal(bytes, 4);
    /* a common character gets its own char id */
    assert_int_equal(t->ids[0], t->ids[0]);
    assert_string_equal(qiao_tokenizer_char(tok, t->char_ids[0]), "我");
    qiao_tokens_free(t);
    qiao_tokenizer_free(tok);
}

/* ---- offsets ---------------------------------------------------------------------- */

static void offsets_cover_text(void **state) {
    (void)state;
    qiao_tokenizer *tok = load_test_tok();
    const char *texts[] = {"我喜欢北京天安门", "  Hello,   WORLD!\t\n", "ＡＢＣ１２３ 全角，标点。", "e\xCC\x81t\xC3\xA9",
                           "\xEF\xAC\x81", "", "   ", "一个人 1 2 3 a-b_c@d.com https://example.org/x?y=1"};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) check_offsets(tok, texts[i]);
    qiao_tokenizer_free(tok);
}

static void offsets_highlight(void **state) {
    (void)state;
    qiao_tokenizer *tok = load_test_tok();
    const char *s = "  Ｉ　ＬＯＶＥ　北京！";
    qiao_tokens *t = tokenize_str(tok, s);
    /* the tokens of the word "love" point at the full-width original */
    char words[256];
    words_of(t, s, words, sizeof words);
    printf("words: %s\n", words);
    assert_string_equal(words, "Ｉ|ＬＯＶＥ|北京|！");
    const char *bj = strstr(s, "北京");
    int64_t lo = -1, hi = -1;
    for (size_t i = 0; i < t->count; i++) {
        const char *p = qiao_tokenizer_piece(tok, t->ids[i]);
        if (strstr(p, "北") || strstr(p, "京")) {
            if (lo < 0) lo = t->offsets[2 * i];
            hi = t->offsets[2 * i + 1];
        }
    }
    assert_int_equal(lo, bj - s);
    assert_int_equal(hi, bj - s + 6);
    qiao_tokens_free(t);
    qiao_tokenizer_free(tok);
}

/* ---- long text ------------------------------------------------------------------- */

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    b[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return b;
}

static double time_tokenize(const qiao_tokenizer *tok, const char *s, size_t len, size_t *count) {
    qiao_tokenize_params p = qiao_tokenize_default_params();
    qiao_tokens *t = NULL;
    double t0 = qc_now();
    assert_int_equal(qiao_tokenize(tok, s, len, &p, &t), QIAO_OK);
    double dt = qc_now() - t0;
    *count = t->count;
    for (size_t i = 0; i < t->count; i++) assert_true(t->offsets[2 * i + 1] <= (int64_t)len);
    qiao_tokens_free(t);
    return dt;
}

static void long_text(void **state) {
    (void)state;
    qiao_tokenizer *tok = load_test_tok();
    size_t clen;
    char *corpus = read_file(CORPUS_PATH, &clen);
    const size_t big = (size_t)1 << 20, small = big / 4;
    char *text = malloc(big);
    assert_non_null(text);
    for (size_t i = 0; i < big; i++) text[i] = corpus[i % clen];
    size_t cut = big; /* end on a character boundary */
    while (((unsigned char)text[cut - 1] & 0xC0) == 0x80) cut--;
    if ((unsigned char)text[cut - 1] >= 0xC0) cut--;
    size_t n_small, n_big;
    size_t cut_small = small;
    while (((unsigned char)text[cut_small] & 0xC0) == 0x80) cut_small--;
    double ts = time_tokenize(tok, text, cut_small, &n_small);
    double tb = time_tokenize(tok, text, cut, &n_big);
    printf("256 KB: %zu tokens in %.3f s; 1 MB: %zu tokens in %.3f s (%.2f MB/s)\n", n_small, ts, n_big, tb,
           (double)cut / 1e6 / tb);
    /* 4x the text gives about 4x the tokens. The timings above are for
     * information only: speed is measured by bench/bench_tokenizer, never
     * asserted in a test (a loaded CI machine would make it flaky). */
    assert_true(n_big > 3 * n_small && n_big < 5 * n_small);
    free(text);
    free(corpus);
    qiao_tokenizer_free(tok);
}

/* A token limit tokenizes only as much of a long text as the limit needs
 * (issue 12: 20 MB for 128 tokens took 3.7 s and 507 MB): the tokens must be
 * exactly the first tokens of the whole text, whatever the limit and
 * wherever the prefix ends (spaces, Chinese punctuation, or a 70 KB run with
 * neither), and invalid UTF-8 past the used part is still an error. */
static void limit_reads_prefix(void **state) {
    (void)state;
    qiao_tokenizer *tok = load_test_tok();
    size_t clen;
    char *corpus = read_file(CORPUS_PATH, &clen);
    const size_t big = (size_t)3 << 20;
    char *text = malloc(big + 16);
    assert_non_null(text);
    /* corpus text, then 70 KB of 我喜欢北京 without a break, then corpus again */
    size_t n = 0;
    while (n < big / 3) text[n] = corpus[n % clen], n++;
    while (((unsigned char)corpus[n % clen] & 0xC0) == 0x80) n--; /* end on a character boundary */
    const char *run = "我喜欢北京";
    while (n < big / 3 + 70000) {
        memcpy(text + n, run, strlen(run));
        n += strlen(run);
    }
    for (size_t i = 0; n < big; i++) text[n++] = corpus[i % clen];
    while (((unsigned char)text[n - 1] & 0xC0) == 0x80) n--;
    if ((unsigned char)text[n - 1] >= 0xC0) n--;
    qiao_tokenize_params p = qiao_tokenize_default_params();
    qiao_tokens *all = NULL;
    assert_int_equal(qiao_tokenize(tok, text, n, &p, &all), QIAO_OK);
    const int64_t limits[] = {1, 7, 128, 1000, 40000, 90000, (int64_t)all->count, (int64_t)all->count + 5};
    const int k = all->k;
    for (size_t li = 0; li < sizeof limits / sizeof limits[0]; li++) {
        p.max_tokens = limits[li];
        qiao_tokens *t = NULL;
        assert_int_equal(qiao_tokenize(tok, text, n, &p, &t), QIAO_OK);
        size_t want = (size_t)limits[li] < all->count ? (size_t)limits[li] : all->count;
        if (t->count != want) fail_msg("limit %lld: %zu tokens, want %zu", (long long)limits[li], t->count, want);
        assert_memory_equal(t->ids, all->ids, want * sizeof *t->ids);
        assert_memory_equal(t->tags, all->tags, want);
        assert_memory_equal(t->char_ids, all->char_ids, want * (size_t)k * sizeof *t->char_ids);
        assert_memory_equal(t->offsets, all->offsets, 2 * want * sizeof *t->offsets);
        qiao_tokens_free(t);
    }
    /* A bad byte near the end is found with a limit of 5 tokens too. */
    text[n - 3] = (char)0xFF;
    p.max_tokens = 5;
    qiao_tokens *t = NULL;
    assert_int_equal(qiao_tokenize(tok, text, n, &p, &t), QIAO_ERR_FORMAT);
    assert_null(t);
    char want_msg[64];
    snprintf(want_msg, sizeof want_msg, "invalid UTF-8 at byte %zu", n - 3);
    assert_non_null(strstr(qiao_last_error(), want_msg));
    p.replace_invalid = 1;
    assert_int_equal(qiao_tokenize(tok, text, n, &p, &t), QIAO_OK);
    assert_int_equal(t->count, 5);
    qiao_tokens_free(t);
    qiao_tokens_free(all);
    free(text);
    free(corpus);
    qiao_tokenizer_free(tok);
}

/* Repeated words are encoded once per call and then reused: a text of many
 * repeated sentences must give exactly the tokens of each sentence
 * tokenized on its own (offsets shifted). The sentences end in punctuation,
 * which is always a word boundary, so joining them changes no word. */
static void cache_consistent(void **state) {
    (void)state;
    qiao_tokenizer *tok = load_test_tok();
    static const char *const sents[] = {"我喜欢北京天安门。", "我们明天去北京吧！", "北京的天气很好，我喜欢。",
                                        "hello world, 北京 hello!", "ＡＢＣ北京天安门？"};
    const size_t ns = sizeof sents / sizeof *sents, reps = 300;
    size_t cap = 0;
    for (size_t i = 0; i < ns; i++) cap += strlen(sents[i]);
    char *text = malloc(cap * reps + 1);
    assert_non_null(text);
    size_t len = 0;
    for (size_t r = 0; r < reps; r++)
        for (size_t i = 0; i < ns; i++) {
            memcpy(text + len, sents[(i + r) % ns], strlen(sents[(i + r) % ns]));
            len += strlen(sents[(i + r) % ns]);
        }
    text[len] = '\0';
    qiao_tokens *all = tokenize_str(tok, text);
    qiao_tokens *one[sizeof sents / sizeof *sents];
    for (size_t i = 0; i < ns; i++) one[i] = tokenize_str(tok, sents[i]);
    size_t k = (size_t)all->k, t = 0, off = 0;
    for (size_t r = 0; r < reps; r++)
        for (size_t i = 0; i < ns; i++) {
            const qiao_tokens *o = one[(i + r) % ns];
            assert_true(t + o->count <= all->count);
            for (size_t j = 0; j < o->count; j++, t++) {
                assert_int_equal(all->ids[t], o->ids[j]);
                assert_int_equal(all->tags[t], o->tags[j]);
                assert_int_equal(all->offsets[2 * t], o->offsets[2 * j] + (int64_t)off);
                assert_int_equal(all->offsets[2 * t + 1], o->offsets[2 * j + 1] + (int64_t)off);
                assert_memory_equal(all->char_ids + t * k, o->char_ids + j * k, k * sizeof *o->char_ids);
            }
            off += strlen(sents[(i + r) % ns]);
        }
    assert_int_equal(t, all->count);
    for (size_t i = 0; i < ns; i++) qiao_tokens_free(one[i]);
    qiao_tokens_free(all);
    free(text);
    qiao_tokenizer_free(tok);
}

/* ---- batches ------------------------------------------------------------------- */

static void batch_padding_mask(void **state) {
    (void)state;
    qiao_tokenizer *tok = load_test_tok();
    const char *texts[] = {"我喜欢北京天安门", "", "set an alarm for 7 am please"};
    size_t counts[3];
    qiao_tokens *single[3];
    for (int i = 0; i < 3; i++) {
        single[i] = tokenize_str(tok, texts[i]);
        counts[i] = single[i]->count;
    }
    size_t longest = counts[0] > counts[2] ? counts[0] : counts[2];
    qiao_tokenize_params p = qiao_tokenize_default_params();
    for (int mode = 0; mode < 2; mode++) {
        size_t max_len = mode ? 4 : 0, T = mode ? 4 : longest;
        qiao_token_batch *b = NULL;
        assert_int_equal(qiao_tokenize_batch(tok, texts, NULL, 3, max_len, &p, &b), QIAO_OK);
        assert_int_equal(b->n, 3);
        assert_int_equal(b->t, T);
        size_t K = (size_t)b->k;
        for (size_t i = 0; i < 3; i++) {
            size_t real = counts[i] < T ? counts[i] : T;
            assert_int_equal(b->lengths[i], real);
            for (size_t j = 0; j < T; j++) {
                size_t c = i * T + j;
                if (j < real) {
                    assert_int_equal(b->mask[c], 1);
                    assert_int_equal(b->ids[c], single[i]->ids[j]);
                    assert_int_equal(b->tags[c], single[i]->tags[j]);
                    assert_int_equal(b->offsets[2 * c], single[i]->offsets[2 * j]);
                    assert_memory_equal(b->char_ids + c * K, single[i]->char_ids + j * K, K * sizeof(int32_t));
                } else {
                    assert_int_equal(b->mask[c], 0);
                    assert_int_equal(b->ids[c], QIAO_PIECE_PAD);
                    assert_int_equal(b->tags[c], QIAO_TAG_PAD);
                    assert_int_equal(b->offsets[2 * c], -1);
                    for (size_t k = 0; k < K; k++) assert_int_equal(b->char_ids[c * K + k], QIAO_CHAR_PAD);
                }
            }
        }
        qiao_token_batch_free(b);
    }
    /* a bad text fails the batch, naming it */
    const char *bad[] = {"ok", "\xFF"};
    qiao_token_batch *b = NULL;
    assert_int_equal(qiao_tokenize_batch(tok, bad, NULL, 2, 0, &p, &b), QIAO_ERR_FORMAT);
    assert_null(b);
    assert_non_null(strstr(qiao_last_error(), "text 1"));
    for (int i = 0; i < 3; i++) qiao_tokens_free(single[i]);
    qiao_tokenizer_free(tok);
}

/* ---- training, saving, loading ----------------------------------------------------- */

static void tmp_path(char *buf, size_t cap, const char *name) {
    snprintf(buf, cap, "/tmp/qiao-test-tok-%ld-%s", (long)getpid(), name);
}

typedef struct progress_log {
    int read, train, write;
} progress_log;

static void on_progress(const char *phase, int64_t done, int64_t total, void *user) {
    progress_log *l = user;
    assert_true(done >= 0 && done <= total);
    if (!strcmp(phase, "read")) l->read++;
    else if (!strcmp(phase, "train")) l->train++;
    else if (!strcmp(phase, "write")) l->write++;
}

static int cancel_now(void *user) {
    (void)user;
    return 1;
}

static void train_roundtrip(void **state) {
    (void)state;
    char out[256], out2[256];
    tmp_path(out, sizeof out, "a.safetensors");
    tmp_path(out2, sizeof out2, "b.safetensors");
    progress_log log = {0};
    qiao_tokenizer_train_params tp = qiao_tokenizer_train_default_params();
    tp.corpus_path = CORPUS_PATH;
    tp.out_path = out;
    tp.vocab_size = 1800;
    tp.char_vocab_size = 500;
    tp.k = 3;
    tp.traditional_to_simplified = 1;
    tp.progress = on_progress;
    tp.progress_user_data = &log;
    qiao_status st = qiao_tokenizer_train(&tp);
    if (st != QIAO_OK) printf("train: %s\n", qiao_last_error());
    assert_int_equal(st, QIAO_OK);
    assert_true(log.read > 0 && log.train == 2 && log.write == 2);
    /* training is deterministic: same corpus and settings, same file */
    tp.out_path = out2;
    tp.progress = NULL;
    assert_int_equal(qiao_tokenizer_train(&tp), QIAO_OK);
    size_t l1, l2;
    char *f1 = read_file(out, &l1), *f2 = read_file(out2, &l2);
    assert_int_equal(l1, l2);
    assert_memory_equal(f1, f2, l1);

    qiao_tokenizer *a = NULL, *b = NULL;
    assert_int_equal(qiao_tokenizer_load(out, &a), QIAO_OK);
    assert_int_equal(qiao_tokenizer_load_memory(f2, l2, &b), QIAO_OK);
    free(f2); /* load_memory copied what it keeps */
    assert_int_equal(qiao_tokenizer_k(a), 3);
    assert_int_equal(qiao_tokenizer_char_vocab_size(a), 500);
    assert_true(qiao_tokenizer_vocab_size(a) > 1000 && qiao_tokenizer_vocab_size(a) <= 1800);
    assert_string_equal(qiao_tokenizer_piece(a, 0), "<pad>");
    assert_string_equal(qiao_tokenizer_char(a, 1), "<unk>");
    assert_null(qiao_tokenizer_piece(a, qiao_tokenizer_vocab_size(a)));
    assert_null(qiao_tokenizer_char(a, -1));
    const char *s = "這個酒店附近有什麼景點？Book a table for 2";
    qiao_tokens *ta = tokenize_str(a, s), *tb = tokenize_str(b, s);
    assert_int_equal(ta->count, tb->count);
    assert_memory_equal(ta->ids, tb->ids, ta->count * sizeof(int32_t));
    assert_memory_equal(ta->char_ids, tb->char_ids, ta->count * 3 * sizeof(int32_t));
    /* the t2s option travels in the file: the traditional text is read as simplified */
    qiao_tokens *simp = tokenize_str(a, "这个酒店附近有什么景点？Book a table for 2");
    assert_int_equal(simp->count, ta->count);
    assert_memory_equal(simp->ids, ta->ids, ta->count * sizeof(int32_t));
    qiao_tokens_free(simp);
    qiao_tokens_free(ta);
    qiao_tokens_free(tb);
    qiao_tokenizer_free(a);
    qiao_tokenizer_free(b);
    free(f1);

    tp.cancel = cancel_now;
    assert_int_equal(qiao_tokenizer_train(&tp), QIAO_ERR_CANCELLED);
    tp.cancel = NULL;
    tp.corpus_path = "/nonexistent/corpus.txt";
    assert_int_equal(qiao_tokenizer_train(&tp), QIAO_ERR_IO);
    tp.corpus_path = CORPUS_PATH;
    tp.k = 0;
    assert_int_equal(qiao_tokenizer_train(&tp), QIAO_ERR_INVALID_ARGUMENT);
    unlink(out);
    unlink(out2);
}

static void load_memory(void **state) {
    (void)state;
    size_t len;
    char *img = read_file(TOK_PATH, &len);
    qiao_tokenizer *m = NULL;
    assert_int_equal(qiao_tokenizer_load_memory(img, len, &m), QIAO_OK);
    memset(img, 0, len); /* the tokenizer must not depend on the caller's buffer */
    free(img);
    qiao_tokenizer *f = load_test_tok();
    const char *s = "你好，可以帮我推荐一个评分是4分以上的酒店吗？ I need a hotel";
    qiao_tokens *a = tokenize_str(m, s), *b = tokenize_str(f, s);
    assert_int_equal(a->count, b->count);
    assert_memory_equal(a->ids, b->ids, a->count * sizeof(int32_t));
    assert_memory_equal(a->offsets, b->offsets, a->count * 2 * sizeof(int64_t));
    qiao_tokens_free(a);
    qiao_tokens_free(b);
    qiao_tokenizer_free(m);
    qiao_tokenizer_free(f);
    qiao_tokenizer_free(NULL);
    qiao_tokens_free(NULL);
    qiao_token_batch_free(NULL);
}

static void inside_model_file(void **state) {
    (void)state;
    /* one file is a whole model: weights plus the tokenizer */
    qiao_tokenizer *tok = load_test_tok();
    qc_st_entry e[3];
    qc_st_kv meta[2];
    tk_tokenizer_entries(tok, e, &meta[0]);
    float w[6] = {1, 2, 3, 4, 5, 6};
    e[2] = (qc_st_entry){.name = "text.embed.weight", .dtype = QIAO_DTYPE_F32, .ndim = 2, .shape = {2, 3}, .data = w,
                         .from_f32 = true};
    meta[1] = (qc_st_kv){"qiao.config", "{}"};
    char path[256];
    tmp_path(path, sizeof path, "model.safetensors");
    assert_int_equal(qc_st_write(path, e, 3, meta, 2), QIAO_OK);
    qiao_tokenizer *back = NULL;
    assert_int_equal(qiao_tokenizer_load(path, &back), QIAO_OK);
    qiao_tokens *a = tokenize_str(tok, "北京欢迎你"), *b = tokenize_str(back, "北京欢迎你");
    assert_int_equal(a->count, b->count);
    assert_memory_equal(a->ids, b->ids, a->count * sizeof(int32_t));
    qiao_tokens_free(a);
    qiao_tokens_free(b);
    qiao_tokenizer_free(back);
    /* a model file without a tokenizer is NOT_FOUND */
    assert_int_equal(qc_st_write(path, &e[2], 1, NULL, 0), QIAO_OK);
    assert_int_equal(qiao_tokenizer_load(path, &back), QIAO_ERR_NOT_FOUND);
    assert_null(back);
    unlink(path);
    qiao_tokenizer_free(tok);
}

/* Writes the test tokenizer with one part replaced, then expects `want`. */
static void expect_corrupt(const qiao_tokenizer *tok, const void *spm, size_t spm_len, const char *chars,
                           const char *config, qiao_status want, const char *msg_part) {
    qc_st_entry e[2];
    qc_st_kv meta;
    tk_tokenizer_entries(tok, e, &meta);
    if (spm) {
        e[0].data = spm;
        e[0].shape[0] = (int64_t)spm_len;
    }
    if (chars) {
        e[1].data = chars;
        e[1].shape[0] = (int64_t)strlen(chars);
    }
    if (config) meta.value = config;
    char path[256];
    tmp_path(path, sizeof path, "corrupt.safetensors");
    assert_int_equal(qc_st_write(path, e, 2, &meta, 1), QIAO_OK);
    qiao_tokenizer *t = (qiao_tokenizer *)1;
    qiao_status st = qiao_tokenizer_load(path, &t);
    if (st != want || !strstr(qiao_last_error(), msg_part))
        printf("corrupt: got %s '%s', want %s '%s'\n", qiao_status_str(st), qiao_last_error(), qiao_status_str(want),
               msg_part);
    assert_int_equal(st, want);
    assert_null(t);
    assert_non_null(strstr(qiao_last_error(), msg_part));
    unlink(path);
}

static void corrupt_file(void **state) {
    (void)state;
    qiao_tokenizer *tok = load_test_tok();
    /* a truncated file */
    size_t len;
    char *img = read_file(TOK_PATH, &len);
    qiao_tokenizer *t = NULL;
    for (size_t cut = 0; cut < len; cut += len / 7 + 1) {
        assert_int_equal(qiao_tokenizer_load_memory(img, cut, &t), QIAO_ERR_FORMAT);
        assert_null(t);
    }
    /* SentencePiece bytes damaged: garbage, and the real model cut short */
    char junk[64];
    memset(junk, 0xAB, sizeof junk);
    expect_corrupt(tok, junk, sizeof junk, NULL, NULL, QIAO_ERR_FORMAT, "SentencePiece");
    expect_corrupt(tok, tok->spm_bytes, tok->spm_len / 2, NULL, NULL, QIAO_ERR_FORMAT, "tokenizer.spm");
    /* character list damaged */
    expect_corrupt(tok, NULL, 0, "<pad>\n<unk>\nab\n", NULL, QIAO_ERR_FORMAT, "line 3");
    expect_corrupt(tok, NULL, 0, "<pad>\n<unk>\nx\ny\nx\n", NULL, QIAO_ERR_FORMAT, "repeats");
    expect_corrupt(tok, NULL, 0, "<unk>\n<pad>\n", NULL, QIAO_ERR_FORMAT, "line 1");
    expect_corrupt(tok, NULL, 0, "<pad>\n<unk>\n\xFF\n", NULL, QIAO_ERR_FORMAT, "UTF-8");
    /* config damaged */
    expect_corrupt(tok, NULL, 0, NULL, "not json", QIAO_ERR_FORMAT, "JSON");
    expect_corrupt(tok, NULL, 0, NULL, "{\"version\": 1, \"k\": 0, \"case_fold\": true, \"t2s\": false}",
                   QIAO_ERR_FORMAT, "k must be");
    expect_corrupt(tok, NULL, 0, NULL, "{\"version\": 9, \"k\": 4, \"case_fold\": true, \"t2s\": false}",
                   QIAO_ERR_FORMAT, "version");
    /* random byte flips in the whole file never crash: either it loads and
     * tokenizes, or it is a clean error */
    qc_rng r;
    qc_rng_seed(&r, 7);
    for (int i = 0; i < 200; i++) {
        char *m = malloc(len);
        assert_non_null(m);
        memcpy(m, img, len);
        for (int k = 0; k < 4; k++) m[qc_rng_below(&r, len)] ^= (char)(1 + qc_rng_below(&r, 255));
        qiao_status st = qiao_tokenizer_load_memory(m, len, &t);
        if (st == QIAO_OK) {
            qiao_tokens *x = tokenize_str(t, "测试 test 123");
            qiao_tokens_free(x);
            qiao_tokenizer_free(t);
        } else {
            assert_true(st == QIAO_ERR_FORMAT || st == QIAO_ERR_NOT_FOUND || st == QIAO_ERR_TOO_LARGE);
            assert_null(t);
        }
        free(m);
    }
    free(img);
    assert_int_equal(qiao_tokenizer_load("/nonexistent/tok.safetensors", &t), QIAO_ERR_IO);
    qiao_tokenizer_free(tok);
}

/* ---- threads --------------------------------------------------------------------- */

typedef struct thread_job {
    const qiao_tokenizer *tok;
    const char *text;
    size_t len;
    qiao_tokens *out[8];
    int fails;
} thread_job;

static void *thread_main(void *arg) {
    thread_job *j = arg;
    qiao_tokenize_params p = qiao_tokenize_default_params();
    for (int i = 0; i < 8; i++)
        if (qiao_tokenize(j->tok, j->text, j->len, &p, &j->out[i]) != QIAO_OK) j->fails++;
    return NULL;
}

static void thread_safety(void **state) {
    (void)state;
    qiao_tokenizer *tok = load_test_tok();
    size_t clen;
    char *corpus = read_file(CORPUS_PATH, &clen);
    size_t len = 20000;
    while (((unsigned char)corpus[len] & 0xC0) == 0x80) len--;
    qiao_tokenize_params p = qiao_tokenize_default_params();
    qiao_tokens *ref = NULL;
    assert_int_equal(qiao_tokenize(tok, corpus, len, &p, &ref), QIAO_OK);
    thread_job jobs[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        jobs[i] = (thread_job){.tok = tok, .text = corpus, .len = len};
        assert_int_equal(pthread_create(&th[i], NULL, thread_main, &jobs[i]), 0);
    }
    for (int i = 0; i < 4; i++) assert_int_equal(pthread_join(th[i], NULL), 0);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(jobs[i].fails, 0);
        for (int k = 0; k < 8; k++) {
            qiao_tokens *t = jobs[i].out[k];
            assert_int_equal(t->count, ref->count);
            assert_memory_equal(t->ids, ref->ids, ref->count * sizeof(int32_t));
            assert_memory_equal(t->char_ids, ref->char_ids, ref->count * (size_t)ref->k * sizeof(int32_t));
            assert_memory_equal(t->tags, ref->tags, ref->count);
            assert_memory_equal(t->offsets, ref->offsets, ref->count * 2 * sizeof(int64_t));
            qiao_tokens_free(t);
        }
    }
    qiao_tokens_free(ref);
    free(corpus);
    qiao_tokenizer_free(tok);
}

static void bad_arguments(void **state) {
    (void)state;
    qiao_tokenizer *tok = load_test_tok();
    qiao_tokens *t = NULL;
    qiao_tokenize_params p = qiao_tokenize_default_params();
    assert_int_equal(qiao_tokenize(NULL, "a", 1, &p, &t), QIAO_ERR_INVALID_ARGUMENT);
    assert_int_equal(qiao_tokenize(tok, NULL, 3, &p, &t), QIAO_ERR_INVALID_ARGUMENT);
    p.struct_size = 0;
    assert_int_equal(qiao_tokenize(tok, "a", 1, &p, &t), QIAO_ERR_INVALID_ARGUMENT);
    /* NULL params = defaults; an older, shorter struct still works */
    assert_int_equal(qiao_tokenize(tok, "a", 1, NULL, &t), QIAO_OK);
    qiao_tokens_free(t);
    p = qiao_tokenize_default_params();
    p.struct_size = offsetof(qiao_tokenize_params, max_tokens);
    p.max_tokens = 1;
    assert_int_equal(qiao_tokenize(tok, "a b c", 5, &p, &t), QIAO_OK);
    assert_int_equal(t->count, 3); /* max_tokens was beyond the struct the caller claims */
    qiao_tokens_free(t);
    p.struct_size = sizeof p;
    assert_int_equal(qiao_tokenize(tok, "a b c", 5, &p, &t), QIAO_OK);
    assert_int_equal(t->count, 1);
    qiao_tokens_free(t);
    /* text need not be NUL-terminated, and embedded NULs are control characters */
    assert_int_equal(qiao_tokenize(tok, "ab\0cd", 5, NULL, &t), QIAO_OK);
    char *sp = pieces_text(tok, t);
    assert_string_equal(sp, "ab cd");
    free(sp);
    qiao_tokens_free(t);
    qiao_tokenizer_free(tok);
}

int main(int argc, char **argv) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(normalize_fullwidth),  cmocka_unit_test(normalize_nfkc_compat),
        cmocka_unit_test(normalize_case_fold),  cmocka_unit_test(normalize_whitespace),
        cmocka_unit_test(normalize_traditional), cmocka_unit_test(normalize_byte_map),
        cmocka_unit_test(invalid_utf8_error),   cmocka_unit_test(invalid_utf8_replace),
        cmocka_unit_test(segment_chinese),      cmocka_unit_test(segment_english),
        cmocka_unit_test(mixed_zh_en_emoji),    cmocka_unit_test(offsets_cover_text),
        cmocka_unit_test(offsets_highlight),    cmocka_unit_test(long_text), cmocka_unit_test(limit_reads_prefix),
        cmocka_unit_test(batch_padding_mask),   cmocka_unit_test(train_roundtrip),
        cmocka_unit_test(load_memory),          cmocka_unit_test(inside_model_file),
        cmocka_unit_test(corrupt_file),         cmocka_unit_test(thread_safety),
        cmocka_unit_test(bad_arguments),        cmocka_unit_test(cache_consistent),
    };
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
