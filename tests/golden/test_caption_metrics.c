/* tests/golden/test_caption_metrics.c - BLEU-1..4 and CIDEr-D
 * (models/captioning/metrics.c) against pycocoevalcap: the fixture
 * tests/data/caption_metrics.json holds tokenized candidate/reference sets
 * and the scores pycocoevalcap's Bleu(4) and Cider gave them
 * (tests/golden/make_caption_metrics_fixture.py); corpus and per-item
 * scores must agree within the fixture's tolerance (1e-4). Then the
 * tokenization helper on captions in both languages, and bad input. */
#include <cjson/cJSON.h>
#include <string.h>

#include "models/captioning/metrics.h"
#include "testutil.h"

#define FIXTURE QIAO_TEST_DATA "/caption_metrics.json"

/* One fixture corpus as metric input; the strings stay in the cJSON tree. */
typedef struct set {
    qmod_caption_item *items;
    qmod_sentence *refs;
    const char **tok;
    size_t n;
} set;

static size_t count_tokens(const cJSON *arr) { return (size_t)cJSON_GetArraySize(arr); }

static qmod_sentence sentence(const cJSON *arr, const char ***cursor) {
    qmod_sentence s = {*cursor, 0};
    const cJSON *t;
    cJSON_ArrayForEach(t, arr) {
        assert_true(cJSON_IsString(t));
        (*cursor)[s.n++] = t->valuestring;
    }
    *cursor += s.n;
    return s;
}

static set load_set(const cJSON *corpus) {
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(corpus, "items"), *it;
    set s = {0};
    size_t ntok = 0, nref = 0;
    cJSON_ArrayForEach(it, items) {
        const cJSON *refs = cJSON_GetObjectItemCaseSensitive(it, "references"), *r;
        ntok += count_tokens(cJSON_GetObjectItemCaseSensitive(it, "candidate"));
        cJSON_ArrayForEach(r, refs) ntok += count_tokens(r), nref++;
    }
    s.n = (size_t)cJSON_GetArraySize(items);
    s.items = calloc(s.n, sizeof *s.items);
    s.refs = calloc(nref, sizeof *s.refs);
    s.tok = calloc(ntok + 1, sizeof *s.tok);
    assert_true(s.items && s.refs && s.tok);
    const char **cur = s.tok;
    qmod_sentence *rp = s.refs;
    size_t i = 0;
    cJSON_ArrayForEach(it, items) {
        const cJSON *refs = cJSON_GetObjectItemCaseSensitive(it, "references"), *r;
        s.items[i].cand = sentence(cJSON_GetObjectItemCaseSensitive(it, "candidate"), &cur);
        s.items[i].refs = rp;
        cJSON_ArrayForEach(r, refs) *rp++ = sentence(r, &cur);
        s.items[i].n_refs = (size_t)(rp - s.items[i].refs);
        i++;
    }
    return s;
}

static void free_set(set *s) {
    free(s->items);
    free(s->refs);
    free(s->tok);
}

static cJSON *load_fixture(void) {
    uint8_t *data = NULL;
    size_t size = 0;
    if (qc_read_file(FIXTURE, 1 << 24, &data, &size) != QIAO_OK) fail_msg("%s", qiao_last_error());
    cJSON *root = cJSON_ParseWithLength((const char *)data, size);
    free(data);
    assert_non_null(root);
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(root, "version")->valueint, 1);
    return root;
}

static double num(const cJSON *o) {
    assert_true(cJSON_IsNumber(o));
    return o->valuedouble;
}

static void close_to(double got, double want, double tol, const char *what, const char *corpus, int item,
                     double *maxdiff) {
    double d = fabs(got - want);
    if (d > *maxdiff) *maxdiff = d;
    if (!(d <= tol)) fail_msg("%s, corpus \"%s\" item %d: %.10g, pycocoevalcap %.10g", what, corpus, item, got, want);
}

static void test_bleu_cider(void **state) {
    (void)state;
    cJSON *root = load_fixture();
    const double tol = num(cJSON_GetObjectItemCaseSensitive(root, "tolerance"));
    double maxb = 0, maxc = 0;
    size_t n_items = 0;
    const cJSON *corpus;
    cJSON_ArrayForEach(corpus, cJSON_GetObjectItemCaseSensitive(root, "corpora")) {
        const char *name = cJSON_GetObjectItemCaseSensitive(corpus, "name")->valuestring;
        set s = load_set(corpus);
        n_items += s.n;
        double bleu[QMOD_BLEU_N], cider, *ib = calloc(4 * s.n, sizeof *ib), *ic = calloc(s.n, sizeof *ic);
        assert_true(ib && ic);
        if (qmod_caption_bleu(s.items, s.n, bleu, ib) != QIAO_OK) fail_msg("BLEU: %s", qiao_last_error());
        if (qmod_caption_cider(s.items, s.n, &cider, ic) != QIAO_OK) fail_msg("CIDEr: %s", qiao_last_error());
        const cJSON *wb = cJSON_GetObjectItemCaseSensitive(corpus, "bleu");
        for (int k = 0; k < 4; k++)
            close_to(bleu[k], num(cJSON_GetArrayItem(wb, k)), tol, "corpus BLEU", name, -1, &maxb);
        close_to(cider, num(cJSON_GetObjectItemCaseSensitive(corpus, "cider")), tol, "corpus CIDEr", name, -1, &maxc);
        const cJSON *wbi = cJSON_GetObjectItemCaseSensitive(corpus, "bleu_items");
        const cJSON *wci = cJSON_GetObjectItemCaseSensitive(corpus, "cider_items");
        for (size_t i = 0; i < s.n; i++) {
            for (int k = 0; k < 4; k++)
                close_to(ib[4 * i + (size_t)k], num(cJSON_GetArrayItem(cJSON_GetArrayItem(wbi, (int)i), k)), tol,
                         "item BLEU", name, (int)i, &maxb);
            close_to(ic[i], num(cJSON_GetArrayItem(wci, (int)i)), tol, "item CIDEr", name, (int)i, &maxc);
        }
        /* without the per-item outputs, the same corpus scores */
        double bleu2[QMOD_BLEU_N], cider2;
        assert_int_equal(qmod_caption_bleu(s.items, s.n, bleu2, NULL), QIAO_OK);
        assert_int_equal(qmod_caption_cider(s.items, s.n, &cider2, NULL), QIAO_OK);
        assert_memory_equal(bleu, bleu2, sizeof bleu);
        assert_true(cider == cider2);
        free(ib);
        free(ic);
        free_set(&s);
    }
    print_message("%zu items: max |difference| to pycocoevalcap: BLEU %.3g, CIDEr %.3g\n", n_items, maxb, maxc);
    assert_true(n_items >= 40);
    cJSON_Delete(root);
}

/* Tokens of `text` must be the space-separated `want`. */
static void tokens_are(const char *text, qmod_caption_tok_mode mode, const char *want) {
    qmod_caption_tokens t;
    if (qmod_caption_tokenize(text, strlen(text), mode, &t) != QIAO_OK) fail_msg("%s: %s", text, qiao_last_error());
    char got[1024] = "";
    for (size_t i = 0; i < t.n; i++) {
        if (i) strcat(got, " ");
        assert_true(strlen(got) + strlen(t.tok[i]) < sizeof got - 1);
        strcat(got, t.tok[i]);
    }
    if (strcmp(got, want)) fail_msg("mode %d \"%s\": got \"%s\", want \"%s\"", (int)mode, text, got, want);
    qmod_caption_tokens_free(&t);
    assert_null(t.tok);
}

static void test_tokenize(void **state) {
    (void)state;
    const qmod_caption_tok_mode EN = QMOD_CAPTION_TOK_EN, W = QMOD_CAPTION_TOK_ZH_WORDS, C = QMOD_CAPTION_TOK_ZH_CHARS;
    tokens_are("There are six shapes: a small red circle in the top left, and a big blue square.", EN,
               "there are six shapes a small red circle in the top left and a big blue square");
    tokens_are("A Plus-Sign (violet) at the TOP... isn't it?", EN, "a plus-sign violet at the top is n't it");
    tokens_are("It's 3.5 cm -- \"roughly\"; 50% off & $3!", EN, "it 's 3.5 cm roughly 50 % off & $ 3");
    tokens_are("Don’t stop", EN, "do n't stop");
    tokens_are("the dogs' bone", EN, "the dogs bone");
    tokens_are("  ...  ", EN, "");
    tokens_are("", EN, "");
    tokens_are("ＡＢＣ, Ｄ", EN, "abc d"); /* NFKC: full-width letters */
    tokens_are("图中有六个图形：左上角有一个小的红色圆形。", C,
               "图 中 有 六 个 图 形 左 上 角 有 一 个 小 的 红 色 圆 形");
    tokens_are("一个Red圆形，3个", C, "一 个 red 圆 形 3 个");
    /* ICU's dictionary decides the words; what is fixed is that punctuation
     * and spaces go, the characters stay in order, and words are longer
     * than characters somewhere */
    const char *zh = "图中有六个图形：左上角有一个小的红色圆形。";
    qmod_caption_tokens t, ch;
    assert_int_equal(qmod_caption_tokenize(zh, strlen(zh), W, &t), QIAO_OK);
    assert_int_equal(qmod_caption_tokenize(zh, strlen(zh), C, &ch), QIAO_OK);
    char joined[256] = "", joined_c[256] = "";
    for (size_t i = 0; i < t.n; i++) strcat(joined, t.tok[i]);
    for (size_t i = 0; i < ch.n; i++) strcat(joined_c, ch.tok[i]);
    assert_string_equal(joined, joined_c);
    assert_true(t.n >= 5 && t.n < ch.n);
    qmod_caption_tokens_free(&t);
    qmod_caption_tokens_free(&ch);
    tokens_are("红色，圆形。", W, "红色 圆形");
    /* tokens feed the metrics: a caption scored against itself is BLEU 1 */
    const char *cap = "A small red circle in the top left.";
    assert_int_equal(qmod_caption_tokenize(cap, strlen(cap), EN, &t), QIAO_OK);
    qmod_sentence s = qmod_caption_sentence(&t);
    qmod_caption_item item = {s, &s, 1};
    double bleu[4];
    assert_int_equal(qmod_caption_bleu(&item, 1, bleu, NULL), QIAO_OK);
    for (int k = 0; k < 4; k++) assert_true(fabs(bleu[k] - 1.0) < 1e-6);
    qmod_caption_tokens_free(&t);
}

static void test_bad_input(void **state) {
    (void)state;
    qmod_caption_tokens t = {0};
    const char bad[] = "red \xC3\x28 circle";
    assert_int_equal(qmod_caption_tokenize(bad, sizeof bad - 1, QMOD_CAPTION_TOK_EN, &t), QIAO_ERR_FORMAT);
    assert_non_null(strstr(qiao_last_error(), "4"));
    assert_null(t.tok);
    assert_int_equal(t.n, 0);
    assert_int_equal(qmod_caption_tokenize("x", 1, (qmod_caption_tok_mode)7, &t), QIAO_ERR_INVALID_ARGUMENT);
    assert_int_equal(qmod_caption_tokenize(NULL, 3, QMOD_CAPTION_TOK_EN, &t), QIAO_ERR_INVALID_ARGUMENT);
    qmod_caption_tokens_free(NULL);
    qmod_caption_tokens_free(&t);

    const char *a[] = {"a", "red", "circle"}, *sp[] = {"a", "red circle"}, *empty[] = {"a", ""}, *nul[] = {"a", NULL};
    qmod_sentence s = {a, 3}, s_sp = {sp, 2}, s_empty = {empty, 2}, s_nul = {nul, 2};
    double bleu[4], cider;
    qmod_caption_item ok = {s, &s, 1}, norefs = {s, NULL, 0}, space = {s, &s_sp, 1}, emp = {s_empty, &s, 1},
                      nulltok = {s, &s_nul, 1};
    assert_int_equal(qmod_caption_bleu(&ok, 0, bleu, NULL), QIAO_ERR_INVALID_ARGUMENT);
    assert_int_equal(qmod_caption_bleu(NULL, 1, bleu, NULL), QIAO_ERR_INVALID_ARGUMENT);
    assert_int_equal(qmod_caption_bleu(&ok, 1, NULL, NULL), QIAO_ERR_INVALID_ARGUMENT);
    assert_int_equal(qmod_caption_cider(&norefs, 1, &cider, NULL), QIAO_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(qiao_last_error(), "no references"));
    assert_int_equal(qmod_caption_bleu(&space, 1, bleu, NULL), QIAO_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(qiao_last_error(), "reference 0 token 1 is holding white space"));
    assert_int_equal(qmod_caption_cider(&emp, 1, &cider, NULL), QIAO_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(qiao_last_error(), "candidate token 1 is empty"));
    assert_int_equal(qmod_caption_bleu(&nulltok, 1, bleu, NULL), QIAO_ERR_INVALID_ARGUMENT);
    /* an empty candidate is allowed (it scores 0), as in pycocoevalcap */
    qmod_sentence none = {NULL, 0};
    qmod_caption_item e = {none, &s, 1};
    assert_int_equal(qmod_caption_bleu(&e, 1, bleu, NULL), QIAO_OK);
    assert_int_equal(qmod_caption_cider(&e, 1, &cider, NULL), QIAO_OK);
    assert_true(bleu[3] < 1e-6 && cider == 0.0);
}

int main(int argc, char **argv) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_bleu_cider), cmocka_unit_test(test_tokenize),
                                       cmocka_unit_test(test_bad_input)};
    if (argc > 1) {
        char filter[128];
        snprintf(filter, sizeof filter, "test_%s", argv[1]);
        cmocka_set_test_filter(filter);
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
