/* libFuzzer target: the WordPiece tokenizer (tokenizers/wordpiece.c).
 *
 * First byte even: the rest is a text, encoded with the committed
 * bert-base-chinese vocabulary lowercased and cased, with and without
 * [CLS]/[SEP] and cut at a few tokens. Each call either succeeds or gives
 * QIAO_ERR_FORMAT, exactly when the text is not UTF-8; ids lie in the
 * vocabulary, offsets inside the text and in order, and the cut encoding is
 * a prefix of the whole one.
 *
 * First byte odd: the rest is a vocabulary. Loading either succeeds or gives
 * QIAO_ERR_FORMAT / QIAO_ERR_TOO_LARGE; a loaded one encodes a few fixed
 * texts and the input itself, and every line's text maps back to a line
 * with the same text. The vocabulary path comes from the build
 * (QIAO_FUZZ_WP_VOCAB). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "tokenizers/wordpiece.h"

static tk_wp *lower, *cased;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    tk_wp_options o = tk_wp_default_options();
    CHECK(tk_wp_load_file(QIAO_FUZZ_WP_VOCAB, &o, &lower) == QIAO_OK);
    o.do_lower_case = false;
    CHECK(tk_wp_load_file(QIAO_FUZZ_WP_VOCAB, &o, &cased) == QIAO_OK);
    return 0;
}

static void check_encoding(const tk_wp *wp, const tk_wp_encoding *e, size_t len) {
    int32_t n = tk_wp_vocab_size(wp);
    for (size_t i = 0; i < e->count; i++) {
        CHECK(e->ids[i] >= 0 && e->ids[i] < n);
        int64_t b = e->offsets[2 * i], end = e->offsets[2 * i + 1];
        CHECK(b >= 0 && b <= end && end <= (int64_t)len);
    }
}

static void fuzz_text(const tk_wp *wp, const char *text, size_t len, bool valid) {
    tk_wp_encoding all, plain, cut;
    qiao_status st = tk_wp_encode(wp, text, len, true, 0, &all);
    if (!valid) {
        CHECK(st == QIAO_ERR_FORMAT && all.count == 0 && !all.ids);
        return;
    }
    CHECK(st == QIAO_OK && all.count >= 2);
    check_encoding(wp, &all, len);
    CHECK(all.ids[0] == tk_wp_special_id(wp, TK_WP_CLS) && all.ids[all.count - 1] == tk_wp_special_id(wp, TK_WP_SEP));
    for (size_t i = 2; i + 1 < all.count; i++) CHECK(all.offsets[2 * i] >= all.offsets[2 * i - 2]);
    CHECK(tk_wp_encode(wp, text, len, false, 0, &plain) == QIAO_OK);
    CHECK(plain.count == all.count - 2);
    if (plain.count) CHECK(!memcmp(plain.ids, all.ids + 1, plain.count * sizeof(int32_t)));
    size_t k = 2 + len % 5;
    CHECK(tk_wp_encode(wp, text, len, true, k, &cut) == QIAO_OK);
    CHECK(cut.count == (k < all.count ? k : all.count));
    CHECK(!memcmp(cut.ids, all.ids, (cut.count - 1) * sizeof(int32_t)));
    tk_wp_encoding_free(&cut);
    tk_wp_encoding_free(&plain);
    tk_wp_encoding_free(&all);
}

static void fuzz_vocab(const char *data, size_t size) {
    tk_wp *wp = NULL;
    qiao_status st = tk_wp_load(data, size, NULL, &wp);
    if (st != QIAO_OK) {
        CHECK(st == QIAO_ERR_FORMAT || st == QIAO_ERR_TOO_LARGE);
        CHECK(!wp);
        return;
    }
    int32_t n = tk_wp_vocab_size(wp);
    CHECK(n >= 1);
    for (int32_t id = 0; id < n && id < 64; id++) {
        size_t len;
        const char *t = tk_wp_token(wp, id, &len);
        CHECK(t && t[len] == '\0');
        int32_t back = tk_wp_token_id(wp, t, len);
        CHECK(back >= id && back < n);
        size_t blen;
        const char *bt = tk_wp_token(wp, back, &blen);
        CHECK(blen == len && !memcmp(bt, t, len));
    }
    static const char *const texts[] = {"", "hello world", "unaffable [MASK] [CLS]x", "\xE4\xBD\xA0\xE5\xA5\xBD",
                                        "a##b ## ###"};
    bool specials = tk_wp_special_id(wp, TK_WP_CLS) >= 0 && tk_wp_special_id(wp, TK_WP_SEP) >= 0;
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
        tk_wp_encoding e;
        CHECK(tk_wp_encode(wp, texts[i], strlen(texts[i]), false, 0, &e) == QIAO_OK);
        check_encoding(wp, &e, strlen(texts[i]));
        tk_wp_encoding_free(&e);
        st = tk_wp_encode(wp, texts[i], strlen(texts[i]), true, 0, &e);
        CHECK(specials ? st == QIAO_OK : st == QIAO_ERR_INVALID_ARGUMENT);
        tk_wp_encoding_free(&e);
    }
    tk_wp_encoding e;
    st = tk_wp_encode(wp, data, size, false, 0, &e);
    CHECK(st == QIAO_OK); /* a vocabulary that loaded is UTF-8 */
    check_encoding(wp, &e, size);
    tk_wp_encoding_free(&e);
    tk_wp_free(wp);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    const char *rest = (const char *)data + 1;
    size_t n = size - 1;
    if (data[0] & 1) {
        fuzz_vocab(rest, n);
        return 0;
    }
    bool valid = qc_utf8_valid(rest, n);
    fuzz_text(lower, rest, n, valid);
    fuzz_text(cased, rest, n, valid);
    return 0;
}
