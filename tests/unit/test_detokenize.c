/* Detokenization (tokenizers/detokenize.c): piece ids back to text.
 *
 * Round trips over real sentences (tests/data/tokenizer/corpus.txt:
 * CrossWOZ, xSID and CLINC150, Chinese and English) and the shapes world's
 * captions in both languages: with exact spaces the tokenizer's normalized
 * text comes back byte for byte; with written spacing it comes back with
 * only some spaces removed, never added, and unchanged wherever it was
 * already written conventionally. Then targeted punctuation and script
 * cases, special and byte-fallback pieces, streaming prefixes, and bad ids. */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/shapes/shapes.h"
#include "testutil.h"
#include "tokenizers/tokenizer.h"

#define TOK_PATH QIAO_TEST_DATA "/tokenizer/tok-test.safetensors"
#define CORPUS_PATH QIAO_TEST_DATA "/tokenizer/corpus.txt"

static qiao_tokenizer *load_tok(void) {
    qiao_tokenizer *tok = NULL;
    qiao_status st = qiao_tokenizer_load(TOK_PATH, &tok);
    if (st != QIAO_OK) printf("load: %s\n", qiao_last_error());
    assert_int_equal(st, QIAO_OK);
    return tok;
}

static qiao_tokens *tokenize(const qiao_tokenizer *tok, const char *s) {
    qiao_tokens *t = NULL;
    qiao_status st = qiao_tokenize(tok, s, strlen(s), NULL, &t);
    if (st != QIAO_OK) printf("tokenize '%s': %s\n", s, qiao_last_error());
    assert_int_equal(st, QIAO_OK);
    return t;
}

static char *normalized(const qiao_tokenizer *tok, const char *s) {
    tk_normalized n;
    assert_int_equal(tk_normalize(s, strlen(s), &tok->norm, "test", &n), QIAO_OK);
    char *r = strdup(n.s);
    tk_normalized_free(&n);
    return r;
}

static char *detok(const qiao_tokenizer *tok, const int32_t *ids, size_t n, int exact) {
    qiao_detokenize_params p = qiao_detokenize_default_params();
    p.exact_spaces = exact;
    char *text = NULL;
    size_t len = 0;
    qiao_status st = qiao_detokenize(tok, ids, n, &p, &text, &len);
    if (st != QIAO_OK) printf("detokenize: %s\n", qiao_last_error());
    assert_int_equal(st, QIAO_OK);
    assert_non_null(text);
    assert_int_equal(strlen(text), len);
    return text;
}

/* Tokenize, detokenize with written spacing. */
static char *written(const qiao_tokenizer *tok, const char *s) {
    qiao_tokens *t = tokenize(tok, s);
    char *r = detok(tok, t->ids, t->count, 0);
    qiao_tokens_free(t);
    return r;
}

static void expect_written(const qiao_tokenizer *tok, const char *in, const char *want) {
    char *got = written(tok, in);
    if (strcmp(got, want) != 0) printf("detokenize(tokenize('%s')): got '%s', want '%s'\n", in, got, want);
    assert_string_equal(got, want);
    qiao_text_free(got);
}

static int32_t piece_id(const qiao_tokenizer *tok, const char *piece) {
    for (int64_t i = 0; i < qiao_tokenizer_vocab_size(tok); i++)
        if (strcmp(qiao_tokenizer_piece(tok, i), piece) == 0) return (int32_t)i;
    printf("no piece '%s'\n", piece);
    fail();
    return -1;
}

/* The sentences: every corpus line and the captions of 150 shapes scenes
 * (train split, seed 7) in Chinese and English. */
typedef struct sentences {
    char **s;
    size_t n, cap;
    size_t n_shapes_en, n_shapes_zh;
} sentences;

static void add(sentences *ss, const char *s) {
    if (ss->n == ss->cap) {
        ss->cap = ss->cap ? 2 * ss->cap : 1024;
        ss->s = realloc(ss->s, ss->cap * sizeof *ss->s);
        assert_non_null(ss->s);
    }
    ss->s[ss->n++] = strdup(s);
}

static void load_sentences(sentences *ss) {
    memset(ss, 0, sizeof *ss);
    FILE *f = fopen(CORPUS_PATH, "r");
    assert_non_null(f);
    char line[4096];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0]) add(ss, line);
    }
    fclose(f);
    for (int64_t i = 0; i < 150; i++) {
        shapes_scene sc;
        assert_int_equal(shapes_scene_make(7, SHAPES_TRAIN, i, &sc), QIAO_OK);
        for (int k = 0; k < sc.ncap; k++) {
            add(ss, sc.cap[SHAPES_ZH][k]);
            add(ss, sc.cap[SHAPES_EN][k]);
            ss->n_shapes_zh++;
            ss->n_shapes_en++;
        }
    }
}

static void free_sentences(sentences *ss) {
    for (size_t i = 0; i < ss->n; i++) free(ss->s[i]);
    free(ss->s);
}

/* Exact spaces: the normalized text, byte for byte, for every sentence. */
static void roundtrip_exact(void **state) {
    (void)state;
    qiao_tokenizer *tok = load_tok();
    sentences ss;
    load_sentences(&ss);
    assert_true(ss.n > 6000);
    size_t bytes_pieces = 0;
    for (size_t i = 0; i < ss.n; i++) {
        qiao_tokens *t = tokenize(tok, ss.s[i]);
        for (size_t j = 0; j < t->count; j++) bytes_pieces += qiao_tokenizer_piece(tok, t->ids[j])[0] == '<';
        char *got = detok(tok, t->ids, t->count, 1);
        char *want = normalized(tok, ss.s[i]);
        if (strcmp(got, want) != 0) printf("line %zu '%s': got '%s', want '%s'\n", i, ss.s[i], got, want);
        assert_string_equal(got, want);
        qiao_text_free(got);
        free(want);
        qiao_tokens_free(t);
    }
    printf("%zu sentences (%zu shapes captions), %zu byte-fallback pieces among them: all exact\n", ss.n,
           ss.n_shapes_zh + ss.n_shapes_en, bytes_pieces);
    assert_true(bytes_pieces > 0); /* the path through byte pieces was taken */
    free_sentences(&ss);
    qiao_tokenizer_free(tok);
}

/* Written spacing removes spaces only: dropping every space from both
 * sides leaves equal strings, and the written text is the normalized text
 * with some spaces deleted. English sentences and the shapes captions,
 * conventionally written already, come back unchanged. */
static void roundtrip_written(void **state) {
    (void)state;
    qiao_tokenizer *tok = load_tok();
    sentences ss;
    load_sentences(&ss);
    size_t changed = 0, shown = 0;
    for (size_t i = 0; i < ss.n; i++) {
        char *got = written(tok, ss.s[i]);
        char *want = normalized(tok, ss.s[i]);
        size_t a = 0, b = 0;
        while (want[b]) {
            if (got[a] == want[b]) {
                a++;
                b++;
            } else {
                if (want[b] != ' ') printf("line %zu: '%s' is not '%s' less spaces\n", i, got, want);
                assert_int_equal(want[b], ' ');
                b++;
            }
        }
        assert_int_equal(got[a], '\0');
        assert_true(strstr(got, "  ") == NULL);
        if (strcmp(got, want) != 0) {
            changed++;
            if (shown++ < 6) printf("  '%s' -> '%s'\n", want, got);
            bool latin_only = true;
            for (const char *p = want; *p; p++) latin_only &= (unsigned char)*p < 0x80;
            /* An ASCII sentence loses a space only before , . ! ? ; : or
             * after an opening bracket. */
            if (latin_only) {
                for (size_t j = 0, k = 0; want[j]; j++) {
                    if (want[j] == got[k]) {
                        k++;
                        continue;
                    }
                    bool ok = strchr(",.!?;:)]}", want[j + 1]) || (j > 0 && strchr("([{", want[j - 1]));
                    if (!ok) printf("line %zu: space %zu of '%s' removed\n", i, j, want);
                    assert_true(ok);
                }
            }
        }
        if (i >= ss.n - ss.n_shapes_zh - ss.n_shapes_en) {
            if (strcmp(got, want) != 0) printf("shapes caption '%s' -> '%s'\n", want, got);
            assert_string_equal(got, want);
        }
        qiao_text_free(got);
        free(want);
    }
    printf("%zu of %zu sentences lost spaces to written spacing\n", changed, ss.n);
    free_sentences(&ss);
    qiao_tokenizer_free(tok);
}

static void punctuation(void **state) {
    (void)state;
    qiao_tokenizer *tok = load_tok();
    expect_written(tok, "Hello , world !", "hello, world!");
    expect_written(tok, "what ? yes ; no : maybe .", "what? yes; no: maybe.");
    expect_written(tok, "a ( b ) [ c ] { d }", "a (b) [c] {d}");
    expect_written(tok, "it costs 50 % and 3.5 dollars", "it costs 50 % and 3.5 dollars");
    expect_written(tok, "well-known, don't", "well-known, don't");
    /* Chinese punctuation that NFKC keeps: 。、「」《》 */
    expect_written(tok, "我 喜欢 北京 。", "我喜欢北京。");
    expect_written(tok, "他说 「 你好 」 ， 然后 走了 、 没有 回头", "他说「你好」,然后走了、没有回头");
    expect_written(tok, "《 红楼梦 》 很 好看", "《红楼梦》很好看");
    qiao_tokenizer_free(tok);
}

static void mixed_scripts(void **state) {
    (void)state;
    qiao_tokenizer *tok = load_tok();
    expect_written(tok, "我喜欢 NBA 比赛", "我喜欢 nba 比赛"); /* Han next to Latin: the pieces decide */
    expect_written(tok, "我喜欢NBA比赛", "我喜欢nba比赛");
    expect_written(tok, "北京 天安门", "北京天安门");
    expect_written(tok, "东京 に 行く", "东京に行く"); /* kana and Han: no spaces */
    expect_written(tok, "안녕 하세요", "안녕 하세요"); /* Hangul keeps its spaces */
    expect_written(tok, "I ❤ 北京 !", "i ❤ 北京!");
    expect_written(tok, "第 3 名", "第 3 名");
    expect_written(tok, "  leading and trailing  ", "leading and trailing");
    qiao_tokenizer_free(tok);
}

/* Pieces as a decoder writes them: <s> first, </s> last, padding after,
 * a lone "▁" piece, doubled spaces, a space before the first word. */
static void decoder_pieces(void **state) {
    (void)state;
    qiao_tokenizer *tok = load_tok();
    int32_t sp = piece_id(tok, "\xE2\x96\x81");
    qiao_tokens *t = tokenize(tok, "a red circle.");
    int32_t ids[64];
    size_t n = 0;
    ids[n++] = QIAO_PIECE_BOS;
    ids[n++] = sp;
    for (size_t i = 0; i < t->count; i++) {
        if (strncmp(qiao_tokenizer_piece(tok, t->ids[i]),
                    "\xE2\x96\x81"
                    "c",
                    4) == 0)
            ids[n++] = sp;
        ids[n++] = t->ids[i];
    }
    ids[n++] = sp;
    ids[n++] = QIAO_PIECE_EOS;
    ids[n++] = QIAO_PIECE_PAD;
    ids[n++] = QIAO_PIECE_PAD;
    char *w = detok(tok, ids, n, 0);
    assert_string_equal(w, "a red circle.");
    char *e = detok(tok, ids, n, 1);
    assert_string_equal(e, " a red  circle. ");
    qiao_text_free(w);
    qiao_text_free(e);
    qiao_tokens_free(t);
    /* Control pieces alone: empty text, not NULL. */
    int32_t ctl[] = {QIAO_PIECE_BOS, QIAO_PIECE_EOS, QIAO_PIECE_PAD};
    char *z = detok(tok, ctl, 3, 0);
    assert_string_equal(z, "");
    qiao_text_free(z);
    z = detok(tok, NULL, 0, 0);
    assert_string_equal(z, "");
    qiao_text_free(z);
    assert_string_equal(qiao_tokenizer_piece(tok, QIAO_PIECE_BOS), "<s>");
    assert_string_equal(qiao_tokenizer_piece(tok, QIAO_PIECE_EOS), "</s>");
    qiao_tokenizer_free(tok);
}

/* Byte fallback: a character outside the pieces comes back whole; a
 * sequence cut short or ill-formed is U+FFFD; <unk> is U+FFFD; a streaming
 * (partial) text leaves an unfinished character out. */
static void byte_pieces(void **state) {
    (void)state;
    qiao_tokenizer *tok = load_tok();
    const char *text = "我\xF0\x9F\x90\x88的"; /* U+1F408 CAT: four byte pieces */
    qiao_tokens *t = tokenize(tok, text);
    size_t nb = 0;
    for (size_t i = 0; i < t->count; i++) nb += strncmp(qiao_tokenizer_piece(tok, t->ids[i]), "<0x", 3) == 0;
    assert_int_equal(nb, 4);
    char *r = detok(tok, t->ids, t->count, 0);
    assert_string_equal(r, text);
    qiao_text_free(r);
    /* Stop after each byte of the cat: whole text, partial text. */
    size_t first = 0;
    while (strncmp(qiao_tokenizer_piece(tok, t->ids[first]), "<0x", 3) != 0) first++;
    for (size_t cut = first + 1; cut < first + 4; cut++) {
        r = detok(tok, t->ids, cut, 0);
        assert_string_equal(r, "我\xEF\xBF\xBD");
        qiao_text_free(r);
        char *part = NULL;
        assert_int_equal(tk_detokenize(tok, t->ids, cut, false, true, "test", &part, NULL), QIAO_OK);
        assert_string_equal(part, "我");
        free(part);
    }
    qiao_tokens_free(t);
    int32_t e4 = piece_id(tok, "<0xE4>"), b8 = piece_id(tok, "<0xB8>"), x80 = piece_id(tok, "<0x80>"),
            ff = piece_id(tok, "<0xFF>"), a = piece_id(tok, "a");
    int32_t ok[] = {e4, b8, x80}; /* U+4E00 一 */
    r = detok(tok, ok, 3, 0);
    assert_string_equal(r, "\xE4\xB8\x80");
    qiao_text_free(r);
    int32_t bad[] = {x80, a, e4, b8, a, ff, QIAO_PIECE_UNK};
    r = detok(tok, bad, 7, 0);
    /* lone continuation; E4 B8 cut short by a piece; FF never starts one */
    assert_string_equal(r, "\xEF\xBF\xBD"
                           "a"
                           "\xEF\xBF\xBD"
                           "a"
                           "\xEF\xBF\xBD"
                           "\xEF\xBF\xBD");
    qiao_text_free(r);
    /* Nine byte pieces in a row: more than any character, all ill-formed. */
    int32_t many[9];
    for (int i = 0; i < 9; i++) many[i] = x80;
    r = detok(tok, many, 9, 0);
    assert_int_equal(strlen(r), 27);
    qiao_text_free(r);
    qiao_tokenizer_free(tok);
}

/* Streaming: the text of each prefix (partial) is a prefix of the text of
 * the next, and the last one is the whole text. */
static void partial_prefixes(void **state) {
    (void)state;
    qiao_tokenizer *tok = load_tok();
    const char *lines[] = {"Hello , world ! 我 喜欢 北京 。 ( ok ) 猫\xF0\x9F\x90\x88咪 done .",
                           "There are three shapes: a small red circle in the top left."};
    for (size_t l = 0; l < 2; l++) {
        qiao_tokens *t = tokenize(tok, lines[l]);
        char *prev = strdup("");
        for (size_t n = 1; n <= t->count; n++) {
            char *cur = NULL;
            assert_int_equal(tk_detokenize(tok, t->ids, n, false, true, "test", &cur, NULL), QIAO_OK);
            if (strncmp(cur, prev, strlen(prev)) != 0) printf("'%s' does not extend '%s'\n", cur, prev);
            assert_true(strncmp(cur, prev, strlen(prev)) == 0);
            free(prev);
            prev = cur;
        }
        char *full = detok(tok, t->ids, t->count, 0);
        assert_string_equal(prev, full);
        free(prev);
        qiao_text_free(full);
        qiao_tokens_free(t);
    }
    qiao_tokenizer_free(tok);
}

static void bad_ids(void **state) {
    (void)state;
    qiao_tokenizer *tok = load_tok();
    int32_t V = (int32_t)qiao_tokenizer_vocab_size(tok);
    int32_t cases[] = {-1, V, INT32_MAX, INT32_MIN};
    for (size_t c = 0; c < 4; c++) {
        int32_t ids[] = {QIAO_PIECE_BOS, 10, cases[c], 11};
        char *text = (char *)"sentinel";
        size_t len = 99;
        assert_int_equal(qiao_detokenize(tok, ids, 4, NULL, &text, &len), QIAO_ERR_INVALID_ARGUMENT);
        assert_null(text);
        assert_int_equal(len, 0);
        char want[128];
        snprintf(want, sizeof want, "ids[2] = %d is not a piece id (the tokenizer has %d pieces, 0..%d)", cases[c], V,
                 V - 1);
        if (!strstr(qiao_last_error(), want)) printf("message: %s\n", qiao_last_error());
        assert_non_null(strstr(qiao_last_error(), want));
    }
    int32_t one = 5;
    char *text = NULL;
    assert_int_equal(qiao_detokenize(NULL, &one, 1, NULL, &text, NULL), QIAO_ERR_INVALID_ARGUMENT);
    assert_int_equal(qiao_detokenize(tok, NULL, 1, NULL, &text, NULL), QIAO_ERR_INVALID_ARGUMENT);
    assert_int_equal(qiao_detokenize(tok, &one, 1, NULL, NULL, NULL), QIAO_ERR_INVALID_ARGUMENT);
    qiao_detokenize_params p = qiao_detokenize_default_params();
    p.struct_size = 0;
    assert_int_equal(qiao_detokenize(tok, &one, 1, &p, &text, NULL), QIAO_ERR_INVALID_ARGUMENT);
    assert_null(text);
    qiao_text_free(NULL);
    qiao_tokenizer_free(tok);
}

int main(int argc, char **argv) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(roundtrip_exact),  cmocka_unit_test(roundtrip_written), cmocka_unit_test(punctuation),
        cmocka_unit_test(mixed_scripts),    cmocka_unit_test(decoder_pieces),    cmocka_unit_test(byte_pieces),
        cmocka_unit_test(partial_prefixes), cmocka_unit_test(bad_ids),
    };
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
