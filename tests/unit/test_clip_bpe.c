/* CLIP's byte-level BPE (tokenizers/clip_bpe.c) against Hugging Face's
 * CLIPTokenizer: every utterance of the intent corpora (datasets/intent),
 * the captions and questions of a shapes test split, hand-written edge
 * cases and random strings, with the ids tests/golden/make_clip_bpe_fixture.py
 * wrote into tests/data/clip_bpe/fixture.safetensors; then truncation and
 * padding, the vocabulary, the merge order on made-up merges, invalid
 * UTF-8, sizes, bad vocab.json and merges.txt texts, and threads. */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/safetensors.h"
#include "testutil.h"
#include "tokenizers/clip_bpe.h"

#define BPE_DIR QIAO_TEST_DATA "/clip_bpe"

/* ---- helpers ------------------------------------------------------------------ */

static char *read_all(const char *path, size_t *len) {
    uint8_t *d = NULL;
    qiao_status st = qc_read_file(path, (size_t)256 << 20, &d, len);
    if (st != QIAO_OK) printf("%s: %s\n", path, qiao_last_error());
    assert_int_equal(st, QIAO_OK);
    return (char *)d;
}

static tk_bpe *load_clip(void) {
    size_t vl, ml;
    char *v = read_all(BPE_DIR "/vocab.json", &vl);
    char *m = read_all(BPE_DIR "/merges.txt", &ml);
    tk_bpe *bpe = NULL;
    qiao_status st = tk_bpe_load(v, vl, m, ml, &bpe);
    if (st != QIAO_OK) printf("load: %s\n", qiao_last_error());
    assert_int_equal(st, QIAO_OK);
    free(v);
    free(m);
    return bpe;
}

static void print_ids(const char *label, const int32_t *ids, size_t n) {
    printf("    %s (%zu):", label, n);
    for (size_t i = 0; i < n && i < 24; i++) printf(" %d", (int)ids[i]);
    printf("%s\n", n > 24 ? " ..." : "");
}

/* Encodes s with opts and compares with want[0 .. n); prints and returns false on a difference. */
static bool same_ids(const tk_bpe *bpe, const char *s, size_t len, const tk_bpe_opts *opts, const int32_t *want,
                     size_t n) {
    int32_t *ids = NULL;
    size_t count = 0;
    qiao_status st = tk_bpe_encode(bpe, s, len, opts, &ids, &count);
    bool ok = st == QIAO_OK && count == n && (n == 0 || memcmp(ids, want, n * sizeof *ids) == 0);
    if (!ok) {
        printf("  text '%.*s' (%zu bytes): %s\n", (int)(len > 80 ? 80 : len), s, len,
               st == QIAO_OK ? "ids differ" : qiao_last_error());
        print_ids("got", ids, count);
        print_ids("want", want, n);
    }
    free(ids);
    return ok;
}

static void expect_ids(const tk_bpe *bpe, const char *s, size_t len, const int32_t *want, size_t n) {
    assert_true(same_ids(bpe, s, len, NULL, want, n));
}

#define EXPECT(bpe, s, ...)                                                                                            \
    do {                                                                                                               \
        const int32_t want_[] = {__VA_ARGS__};                                                                         \
        expect_ids(bpe, s, sizeof(s) - 1, want_, sizeof want_ / sizeof *want_);                                        \
    } while (0)

static uint32_t fnv1a32(const char *s, size_t n) {
    uint32_t h = 0x811C9DC5u;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 0x01000193u;
    return h;
}

/* ---- the fixture ---------------------------------------------------------------- */

typedef struct fixture {
    qc_st_file *f;
    size_t n_texts; /* corpus lines + inline texts */
    char **texts;   /* (n_texts) NUL-terminated copies */
    size_t *lens;   /* (n_texts) */
    size_t *entry;  /* (n_texts) the distinct text each one is */
    size_t n_entries;
    int32_t *ids;     /* all the ids, entry after entry */
    int32_t *ids_off; /* (n_entries + 1) */
} fixture;

static const qc_st_tensor *tensor(const qc_st_file *f, const char *name, qiao_dtype dt) {
    const qc_st_tensor *t = qc_st_find(f, name);
    if (!t) printf("fixture: no tensor %s\n", name);
    assert_non_null(t);
    assert_int_equal(t->dtype, dt);
    return t;
}

static void add_text(fixture *fx, const char *s, size_t n) {
    fx->texts[fx->n_texts] = malloc(n + 1);
    assert_non_null(fx->texts[fx->n_texts]);
    memcpy(fx->texts[fx->n_texts], s, n);
    fx->texts[fx->n_texts][n] = '\0';
    fx->lens[fx->n_texts] = n;
    fx->n_texts++;
}

/* Reads the fixture and the corpus lines it names, checking each line's hash. */
static void fixture_load(fixture *fx) {
    memset(fx, 0, sizeof *fx);
    qiao_status st = qc_st_open(BPE_DIR "/fixture.safetensors", &fx->f);
    if (st != QIAO_OK) printf("fixture: %s\n", qiao_last_error());
    assert_int_equal(st, QIAO_OK);
    const qc_st_tensor *hash = tensor(fx->f, "corpus.hash", QIAO_DTYPE_I32);
    const qc_st_tensor *dup = tensor(fx->f, "corpus.dup", QIAO_DTYPE_I32);
    const qc_st_tensor *itext = tensor(fx->f, "inline.text", QIAO_DTYPE_U8);
    const qc_st_tensor *ioff = tensor(fx->f, "inline.offsets", QIAO_DTYPE_I64);
    const qc_st_tensor *off = tensor(fx->f, "ids.offsets", QIAO_DTYPE_I32);
    const qc_st_tensor *ids = tensor(fx->f, "ids", QIAO_DTYPE_U8);
    size_t n_corpus = (size_t)hash->numel, n_inline = (size_t)ioff->numel - 1;
    fx->texts = calloc(n_corpus + n_inline, sizeof *fx->texts);
    fx->lens = calloc(n_corpus + n_inline, sizeof *fx->lens);
    fx->entry = calloc(n_corpus + n_inline, sizeof *fx->entry);
    assert_true(fx->texts && fx->lens && fx->entry);

    const char *sources = qc_st_metadata_get(fx->f, "sources");
    assert_non_null(sources);
    cJSON *src = cJSON_Parse(sources);
    assert_true(cJSON_IsArray(src));
    const cJSON *it;
    cJSON_ArrayForEach(it, src) {
        const char *rel = cJSON_GetArrayItem(it, 0)->valuestring;
        int lines = cJSON_GetArrayItem(it, 1)->valueint;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", QIAO_SOURCE_DIR, rel);
        size_t len;
        char *data = read_all(path, &len);
        int got = 0;
        for (char *line = data, *nl; line < data + len; line = nl + 1) {
            nl = memchr(line, '\n', (size_t)(data + len - line));
            if (!nl) nl = data + len;
            cJSON *obj = cJSON_ParseWithLength(line, (size_t)(nl - line));
            const cJSON *t = cJSON_GetObjectItemCaseSensitive(obj, "text");
            assert_true(cJSON_IsString(t));
            size_t i = fx->n_texts;
            assert_true(i < n_corpus);
            add_text(fx, t->valuestring, strlen(t->valuestring));
            int32_t h;
            memcpy(&h, (const char *)hash->data + 4 * i, 4);
            if ((uint32_t)h != fnv1a32(fx->texts[i], fx->lens[i]))
                printf("%s line %d changed since the fixture was made: rerun "
                       "tests/golden/make_clip_bpe_fixture.py\n",
                       rel, got + 1);
            assert_int_equal((uint32_t)h, fnv1a32(fx->texts[i], fx->lens[i]));
            cJSON_Delete(obj);
            got++;
        }
        if (got != lines) printf("%s: %d lines, the fixture has %d\n", rel, got, lines);
        assert_int_equal(got, lines);
        free(data);
    }
    cJSON_Delete(src);
    assert_int_equal(fx->n_texts, n_corpus);

    /* Distinct texts in order of first appearance; dup names the repeats. */
    size_t nd = dup->ndim == 2 ? (size_t)dup->shape[0] : 0, d = 0;
    for (size_t i = 0; i < n_corpus; i++) {
        int32_t pair[2] = {-1, -1};
        if (d < nd) memcpy(pair, (const char *)dup->data + 8 * d, 8);
        if (pair[0] == (int32_t)i) {
            assert_true(pair[1] >= 0 && (size_t)pair[1] < i);
            assert_string_equal(fx->texts[i], fx->texts[pair[1]]);
            fx->entry[i] = fx->entry[pair[1]];
            d++;
        } else {
            fx->entry[i] = fx->n_entries++;
        }
    }
    assert_int_equal(d, nd);
    for (size_t k = 0; k < n_inline; k++) {
        int64_t b, e;
        memcpy(&b, (const char *)ioff->data + 8 * k, 8);
        memcpy(&e, (const char *)ioff->data + 8 * (k + 1), 8);
        assert_true(b >= 0 && b <= e && e <= itext->numel);
        fx->entry[fx->n_texts] = fx->n_entries++;
        add_text(fx, (const char *)itext->data + b, (size_t)(e - b));
    }
    assert_int_equal((size_t)off->numel, fx->n_entries + 1);
    fx->ids_off = malloc((size_t)off->numel * sizeof *fx->ids_off);
    assert_non_null(fx->ids_off);
    memcpy(fx->ids_off, off->data, (size_t)off->numel * sizeof *fx->ids_off);
    size_t n_ids = (size_t)ids->numel / 2;
    assert_int_equal((size_t)fx->ids_off[fx->n_entries], n_ids);
    fx->ids = malloc((n_ids + 1) * sizeof *fx->ids);
    assert_non_null(fx->ids);
    const unsigned char *u = ids->data;
    for (size_t i = 0; i < n_ids; i++) fx->ids[i] = u[2 * i] | u[2 * i + 1] << 8;
}

static void fixture_free(fixture *fx) {
    for (size_t i = 0; i < fx->n_texts; i++) free(fx->texts[i]);
    free(fx->texts);
    free(fx->lens);
    free(fx->entry);
    free(fx->ids);
    free(fx->ids_off);
    qc_st_close(fx->f);
}

/* The ids of text i between <|startoftext|> and <|endoftext|>. */
static const int32_t *fixture_ids(const fixture *fx, size_t i, size_t *n) {
    size_t e = fx->entry[i];
    *n = (size_t)(fx->ids_off[e + 1] - fx->ids_off[e]);
    return fx->ids + fx->ids_off[e];
}

/* Every fixture text, with and without the special tokens, and cut to
 * CLIP's context with padding: the first 75 ids between the specials,
 * padded with <|endoftext|> (what the generator checked HF does). */
static void fixture_texts(void **state) {
    (void)state;
    tk_bpe *bpe = load_clip();
    fixture fx;
    fixture_load(&fx);
    const int32_t sot = tk_bpe_sot_id(bpe), eot = tk_bpe_eot_id(bpe);
    tk_bpe_opts bare = tk_bpe_default_opts(), full = bare, ctx = bare;
    bare.add_special = false;
    ctx.context_length = TK_BPE_CLIP_CONTEXT;
    ctx.pad = true;
    size_t fails = 0, n_ids = 0;
    int32_t *want = NULL;
    size_t want_cap = 0;
    for (size_t i = 0; i < fx.n_texts; i++) {
        size_t n;
        const int32_t *body = fixture_ids(&fx, i, &n);
        n_ids += n;
        if (n + 2 > want_cap) {
            want_cap = 2 * (n + 2) + TK_BPE_CLIP_CONTEXT;
            want = realloc(want, want_cap * sizeof *want);
            assert_non_null(want);
        }
        bool ok = same_ids(bpe, fx.texts[i], fx.lens[i], &bare, body, n);
        if (ok) {
            want[0] = sot;
            memcpy(want + 1, body, n * sizeof *want);
            want[n + 1] = eot;
            ok = same_ids(bpe, fx.texts[i], fx.lens[i], &full, want, n + 2);
        }
        if (ok && (n > TK_BPE_CLIP_CONTEXT - 2 || i % 97 == 0)) {
            size_t keep = n < TK_BPE_CLIP_CONTEXT - 2 ? n : TK_BPE_CLIP_CONTEXT - 2;
            want[keep + 1] = eot;
            for (size_t k = keep + 2; k < TK_BPE_CLIP_CONTEXT; k++) want[k] = eot;
            ok = same_ids(bpe, fx.texts[i], fx.lens[i], &ctx, want, TK_BPE_CLIP_CONTEXT);
        }
        if (!ok && ++fails >= 10) {
            printf("  (stopping after %zu mismatches)\n", fails);
            break;
        }
    }
    printf("clip bpe fixture (transformers %s, tokenizers %s): %zu texts, %zu distinct, %zu ids, %zu mismatched\n",
           qc_st_metadata_get(fx.f, "transformers"), qc_st_metadata_get(fx.f, "tokenizers"), fx.n_texts, fx.n_entries,
           n_ids, fails);
    assert_int_equal(fails, 0);
    free(want);
    fixture_free(&fx);
    tk_bpe_free(bpe);
}

/* ---- the vocabulary --------------------------------------------------------------- */

static void vocabulary(void **state) {
    (void)state;
    tk_bpe *bpe = load_clip();
    assert_int_equal(tk_bpe_vocab_size(bpe), 49408);
    assert_int_equal(tk_bpe_merge_count(bpe), 49152 - 256 - 2);
    assert_int_equal(tk_bpe_sot_id(bpe), 49406);
    assert_int_equal(tk_bpe_eot_id(bpe), 49407);
    assert_string_equal(tk_bpe_token(bpe, 0), "!");
    assert_string_equal(tk_bpe_token(bpe, 256), "!</w>");
    assert_string_equal(tk_bpe_token(bpe, 512), "in");
    assert_string_equal(tk_bpe_token(bpe, 1125), "photo</w>");
    assert_string_equal(tk_bpe_token(bpe, 49405), "jekyll</w>");
    assert_string_equal(tk_bpe_token(bpe, 49407), "<|endoftext|>");
    assert_null(tk_bpe_token(bpe, -1));
    assert_null(tk_bpe_token(bpe, 49408));
    assert_int_equal(tk_bpe_find(bpe, "photo</w>", 9), 1125);
    assert_int_equal(tk_bpe_find(bpe, "photo</w>x", 10), -1);
    assert_int_equal(tk_bpe_find(bpe, "", 0), -1);
    for (int32_t id = 0; id < tk_bpe_vocab_size(bpe); id++) {
        const char *t = tk_bpe_token(bpe, id);
        assert_int_equal(tk_bpe_find(bpe, t, strlen(t)), id);
    }
    /* The texts come back as loaded, so a model file can store them. */
    size_t vl, ml;
    char *v = read_all(BPE_DIR "/vocab.json", &vl);
    char *m = read_all(BPE_DIR "/merges.txt", &ml);
    const char *bv, *bm;
    size_t bvl, bml;
    tk_bpe_texts(bpe, &bv, &bvl, &bm, &bml);
    assert_int_equal(bvl, vl);
    assert_int_equal(bml, ml);
    assert_memory_equal(bv, v, vl);
    assert_memory_equal(bm, m, ml);
    tk_bpe *again = NULL;
    assert_int_equal(tk_bpe_load(bv, bvl, bm, bml, &again), QIAO_OK);
    assert_int_equal(tk_bpe_vocab_size(again), 49408);
    tk_bpe_free(again);
    free(v);
    free(m);
    tk_bpe_free(bpe);
}

/* ---- edge cases with the ids HF gives ---------------------------------------------- */

static void edge_cases(void **state) {
    (void)state;
    tk_bpe *bpe = load_clip();
    EXPECT(bpe, "", 49406, 49407);
    EXPECT(bpe, " \t\n ", 49406, 49407);
    EXPECT(bpe, "a photo of a cat", 49406, 320, 1125, 539, 320, 2368, 49407);
    EXPECT(bpe, "Hello, World!", 49406, 3306, 267, 1002, 256, 49407);
    EXPECT(bpe, "DON'T", 49406, 847, 713, 49407);
    EXPECT(bpe, "12345", 49406, 272, 273, 274, 275, 276, 49407);
    /* each ideograph a word of its own, in bytes */
    EXPECT(bpe, "我喜欢", 49406, 162, 230, 495, 161, 244, 506, 162, 105, 351, 49407);
    EXPECT(bpe, "café", 49406, 15304, 49407);
    EXPECT(bpe, "cafe\xCC\x81", 49406, 15304, 49407); /* NFC */
    EXPECT(bpe, "\xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD", 49406, 43722, 49407);
    /* special tokens typed in text, in any case */
    EXPECT(bpe, "<|endoftext|>", 49406, 49407, 49407);
    EXPECT(bpe, "<|ENDOFTEXT|>", 49406, 49407, 49407);
    EXPECT(bpe, "a<|endoftext|>b", 49406, 320, 49407, 321, 49407);
    EXPECT(bpe, "!!<|endoftext|>", 49406, 748, 49407, 49407);
    /* NUL dropped; U+0345 matches no branch of the pattern */
    EXPECT(bpe, "a\0b", 49406, 3937, 49407);
    EXPECT(bpe, "a\u0345b", 49406, 320, 321, 49407);
    /* text need not end in NUL */
    int32_t *ids = NULL;
    size_t n = 0;
    assert_int_equal(tk_bpe_encode(bpe, "catdog", 3, NULL, &ids, &n), QIAO_OK);
    assert_int_equal(n, 3);
    assert_int_equal(ids[1], 2368);
    free(ids);
    assert_int_equal(tk_bpe_encode(bpe, NULL, 0, NULL, &ids, &n), QIAO_OK);
    assert_int_equal(n, 2);
    free(ids);
    tk_bpe_free(bpe);
}

static void context_length(void **state) {
    (void)state;
    tk_bpe *bpe = load_clip();
    tk_bpe_opts o = tk_bpe_default_opts();
    o.context_length = 5;
    {
        const int32_t want[] = {49406, 320, 1125, 539, 49407};
        assert_true(same_ids(bpe, "a photo of a cat", 16, &o, want, 5));
    }
    o.pad = true;
    o.context_length = 8;
    {
        const int32_t want[] = {49406, 320, 1125, 539, 320, 2368, 49407, 49407};
        assert_true(same_ids(bpe, "a photo of a cat", 16, &o, want, 8));
    }
    o.pad_id = 0; /* OpenAI's clip.tokenize */
    {
        const int32_t want[] = {49406, 320, 1125, 539, 320, 2368, 49407, 0};
        assert_true(same_ids(bpe, "a photo of a cat", 16, &o, want, 8));
    }
    o = tk_bpe_default_opts();
    o.add_special = false;
    {
        const int32_t want[] = {320, 1125, 539, 320, 2368};
        assert_true(same_ids(bpe, "a photo of a cat", 16, &o, want, 5));
    }
    o.context_length = 2;
    {
        const int32_t want[] = {320, 1125};
        assert_true(same_ids(bpe, "a photo of a cat", 16, &o, want, 2));
    }
    /* a cut inside a word's ids, and the specials inside the text */
    o = tk_bpe_default_opts();
    o.context_length = 3;
    {
        const int32_t want[] = {49406, 162, 49407};
        assert_true(same_ids(bpe, "我喜欢", strlen("我喜欢"), &o, want, 3));
        const int32_t want2[] = {49406, 49407, 49407};
        assert_true(same_ids(bpe, "<|endoftext|>a", 14, &o, want2, 3));
    }
    /* the part past the context is not encoded but still checked */
    int32_t *ids = NULL;
    size_t n = 0;
    assert_int_equal(tk_bpe_encode(bpe, "a b c d e f \xFF", 13, &o, &ids, &n), QIAO_ERR_FORMAT);
    assert_null(ids);
    assert_int_equal(n, 0);
    tk_bpe_free(bpe);
}

/* ---- merge order, on merges made up for it ---------------------------------------- */

/* GPT-2's bytes-to-unicode character of byte b, as UTF-8. */
static size_t byte_char_utf8(unsigned b, char *out) {
    unsigned n = 0, c = b;
    bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
    if (!printable) {
        for (unsigned x = 0; x < b; x++)
            if (!((x >= 0x21 && x <= 0x7E) || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE))) n++;
        c = 256 + n;
    }
    if (c < 0x80) {
        out[0] = (char)c;
        return 1;
    }
    out[0] = (char)(0xC0 | (c >> 6));
    out[1] = (char)(0x80 | (c & 0x3F));
    return 2;
}

typedef struct sbuf {
    char *s;
    size_t n, cap;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        b->cap = 2 * (b->n + n + 1);
        b->s = realloc(b->s, b->cap);
        assert_non_null(b->s);
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = '\0';
}

static void sb_str(sbuf *b, const char *s) {
    sb_put(b, s, strlen(s));
}

/* vocab.json of the 512 byte tokens, `extra` tokens (NULL-ended) and the specials. */
static char *tiny_vocab(const char *const *extra, size_t *len) {
    sbuf b = {0};
    int id = 0;
    char num[64];
    sb_str(&b, "{");
    for (int pass = 0; pass < 2; pass++) {
        for (unsigned c = 0; c < 256; c++) {
            char t[4];
            size_t n = byte_char_utf8(c, t);
            sb_str(&b, id ? ",\"" : "\"");
            if (t[0] == '"' || t[0] == '\\') sb_str(&b, "\\");
            sb_put(&b, t, n);
            if (pass) sb_str(&b, "</w>");
            snprintf(num, sizeof num, "\":%d", id++);
            sb_str(&b, num);
        }
    }
    for (; *extra; extra++) {
        snprintf(num, sizeof num, "\":%d", id++);
        sb_str(&b, ",\"");
        sb_str(&b, *extra);
        sb_str(&b, num);
    }
    snprintf(num, sizeof num, ",\"<|startoftext|>\":%d,\"<|endoftext|>\":%d}", id, id + 1);
    sb_str(&b, num);
    *len = b.n;
    return b.s;
}

static tk_bpe *tiny(const char *const *extra, const char *merges) {
    size_t vl;
    char *v = tiny_vocab(extra, &vl);
    tk_bpe *bpe = NULL;
    qiao_status st = tk_bpe_load(v, vl, merges, strlen(merges), &bpe);
    if (st != QIAO_OK) printf("tiny: %s\n", qiao_last_error());
    assert_int_equal(st, QIAO_OK);
    free(v);
    return bpe;
}

/* The tokens of text's ids, space-separated, into out. */
static void tokens_of(const tk_bpe *bpe, const char *text, char *out, size_t cap) {
    int32_t *ids = NULL;
    size_t n = 0;
    tk_bpe_opts o = tk_bpe_default_opts();
    o.add_special = false;
    assert_int_equal(tk_bpe_encode(bpe, text, strlen(text), &o, &ids, &n), QIAO_OK);
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(out);
        snprintf(out + l, cap - l, "%s%s", i ? " " : "", tk_bpe_token(bpe, ids[i]));
    }
    free(ids);
}

static void merge_order(void **state) {
    (void)state;
    char got[256];
    /* OpenAI merges every "a a" left to right before it looks at "aa a",
     * though that pair ranks better: a heap that popped the new pair at
     * once would give "aaa a b</w>". */
    const char *const t1[] = {"aa", "aaa", NULL};
    tk_bpe *bpe = tiny(t1, "#version: 0.2\naa a\na a\n");
    tokens_of(bpe, "aaaab", got, sizeof got);
    assert_string_equal(got, "aa aa b</w>");
    tokens_of(bpe, "aaab", got, sizeof got);
    assert_string_equal(got, "aaa b</w>");
    tokens_of(bpe, "a", got, sizeof got);
    assert_string_equal(got, "a</w>");
    tk_bpe_free(bpe);
    /* A pair listed twice takes its later rank (HF's dict); no header line,
     * CRLF and blank lines are fine. */
    const char *const t2[] = {"ab", "bc", NULL};
    bpe = tiny(t2, "b c\r\na b\r\n\r\nb  c\r\n");
    assert_int_equal(tk_bpe_merge_count(bpe), 2);
    tokens_of(bpe, "abcx", got, sizeof got);
    assert_string_equal(got, "ab c x</w>");
    tk_bpe_free(bpe);
    bpe = tiny(t2, "b c\na b\n");
    tokens_of(bpe, "abcx", got, sizeof got);
    assert_string_equal(got, "a bc x</w>");
    /* "</w>" is only on the last symbol: "b c" does not merge "b c</w>" */
    tokens_of(bpe, "abc", got, sizeof got);
    assert_string_equal(got, "ab c</w>");
    tk_bpe_free(bpe);
}

/* ---- errors ---------------------------------------------------------------------- */

static void expect_encode_error(const tk_bpe *bpe, const char *s, size_t len, qiao_status want, const char *msg) {
    int32_t *ids = (int32_t *)&want;
    size_t n = 99;
    assert_int_equal(tk_bpe_encode(bpe, s, len, NULL, &ids, &n), want);
    assert_null(ids);
    assert_int_equal(n, 0);
    if (msg && !strstr(qiao_last_error(), msg)) printf("message '%s' lacks '%s'\n", qiao_last_error(), msg);
    if (msg) assert_non_null(strstr(qiao_last_error(), msg));
}

static void invalid_utf8(void **state) {
    (void)state;
    tk_bpe *bpe = load_clip();
    expect_encode_error(bpe, "\xFF", 1, QIAO_ERR_FORMAT, "invalid UTF-8 at byte 0");
    expect_encode_error(bpe, "abc\xC3", 4, QIAO_ERR_FORMAT, "invalid UTF-8 at byte 3");
    expect_encode_error(bpe, "a \xC0\xAF", 4, QIAO_ERR_FORMAT, "at byte 2");       /* overlong */
    expect_encode_error(bpe, "\xED\xA0\x80", 3, QIAO_ERR_FORMAT, "at byte 0");     /* surrogate */
    expect_encode_error(bpe, "\xF4\x90\x80\x80", 4, QIAO_ERR_FORMAT, "at byte 0"); /* past U+10FFFF */
    expect_encode_error(bpe, "<|endoftext|>\x80", 14, QIAO_ERR_FORMAT, "at byte 13");
    tk_bpe_free(bpe);
}

static void sizes(void **state) {
    (void)state;
    tk_bpe *bpe = load_clip();
    size_t big = TK_BPE_MAX_TEXT + 1;
    char *s = malloc(big);
    assert_non_null(s);
    memset(s, 'a', big);
    expect_encode_error(bpe, s, big, QIAO_ERR_INVALID_ARGUMENT, "at most");
    /* One word of the largest size: merges on a heap, not quadratic. */
    int32_t *ids = NULL;
    size_t n = 0;
    assert_int_equal(tk_bpe_encode(bpe, s, TK_BPE_MAX_TEXT, NULL, &ids, &n), QIAO_OK);
    assert_true(n > 2 && n < TK_BPE_MAX_TEXT / 4);
    free(ids);
    qc_rng r;
    qc_rng_seed(&r, 7);
    for (size_t i = 0; i < TK_BPE_MAX_TEXT; i++) s[i] = (char)('a' + qc_rng_below(&r, 26));
    assert_int_equal(tk_bpe_encode(bpe, s, TK_BPE_MAX_TEXT, NULL, &ids, &n), QIAO_OK);
    assert_true(n > 2);
    free(ids);
    /* with a context length only the start is encoded */
    tk_bpe_opts o = tk_bpe_default_opts();
    o.context_length = TK_BPE_CLIP_CONTEXT;
    assert_int_equal(tk_bpe_encode(bpe, s, TK_BPE_MAX_TEXT, &o, &ids, &n), QIAO_OK);
    assert_int_equal(n, TK_BPE_CLIP_CONTEXT);
    free(ids);
    free(s);
    tk_bpe_free(bpe);
}

static void bad_arguments(void **state) {
    (void)state;
    tk_bpe *bpe = load_clip();
    int32_t *ids = NULL;
    size_t n = 0;
    assert_int_equal(tk_bpe_encode(NULL, "a", 1, NULL, &ids, &n), QIAO_ERR_INVALID_ARGUMENT);
    assert_int_equal(tk_bpe_encode(bpe, NULL, 1, NULL, &ids, &n), QIAO_ERR_INVALID_ARGUMENT);
    assert_int_equal(tk_bpe_encode(bpe, "a", 1, NULL, NULL, &n), QIAO_ERR_INVALID_ARGUMENT);
    assert_int_equal(tk_bpe_encode(bpe, "a", 1, NULL, &ids, NULL), QIAO_ERR_INVALID_ARGUMENT);
    tk_bpe_opts o = tk_bpe_default_opts();
    o.context_length = 1; /* no room for both specials */
    assert_int_equal(tk_bpe_encode(bpe, "a", 1, &o, &ids, &n), QIAO_ERR_INVALID_ARGUMENT);
    o.context_length = -3;
    assert_int_equal(tk_bpe_encode(bpe, "a", 1, &o, &ids, &n), QIAO_ERR_INVALID_ARGUMENT);
    o = tk_bpe_default_opts();
    o.pad = true; /* padding without a length */
    assert_int_equal(tk_bpe_encode(bpe, "a", 1, &o, &ids, &n), QIAO_ERR_INVALID_ARGUMENT);
    o.context_length = 77;
    o.pad_id = 49408;
    assert_int_equal(tk_bpe_encode(bpe, "a", 1, &o, &ids, &n), QIAO_ERR_INVALID_ARGUMENT);
    assert_null(ids);
    assert_int_equal(tk_bpe_load(NULL, 0, NULL, 0, NULL), QIAO_ERR_INVALID_ARGUMENT);
    tk_bpe *x = NULL;
    assert_int_equal(tk_bpe_load(NULL, 5, "", 0, &x), QIAO_ERR_INVALID_ARGUMENT);
    assert_int_equal(tk_bpe_load("{}", TK_BPE_MAX_FILE + 1, "", 0, &x), QIAO_ERR_INVALID_ARGUMENT);
    assert_null(x);
    tk_bpe_free(NULL);
    tk_bpe_free(bpe);
}

static void expect_load_error(const char *vocab, size_t vl, const char *merges, const char *msg) {
    tk_bpe *bpe = (tk_bpe *)&vl;
    qiao_status st = tk_bpe_load(vocab, vl, merges, strlen(merges), &bpe);
    if (st != QIAO_ERR_FORMAT || !strstr(qiao_last_error(), msg))
        printf("want FORMAT with '%s', got %s: '%s'\n", msg, qiao_status_str(st), qiao_last_error());
    assert_int_equal(st, QIAO_ERR_FORMAT);
    assert_null(bpe);
    assert_non_null(strstr(qiao_last_error(), msg));
}

static void bad_vocab(void **state) {
    (void)state;
    const char *const none[] = {NULL};
    const char *const ab[] = {"ab", NULL};
    expect_load_error("{\"a\":", 5, "", "not valid JSON");
    expect_load_error("[1,2]", 5, "", "not a JSON object");
    expect_load_error("{}", 2, "", "no tokens");
    expect_load_error("{\"a\":0,\"b\":0}", 13, "", "id 0 given to both");
    expect_load_error("{\"a\":0,\"a\":1}", 13, "", "given twice");
    expect_load_error("{\"a\":0,\"b\":2}", 13, "", "out of range");
    expect_load_error("{\"a\":0,\"b\":0.5}", 15, "", "ids must be");
    expect_load_error("{\"a\":0,\"b\":\"1\"}", 15, "", "not a number");
    expect_load_error("{\"\":0}", 6, "", "empty token");
    expect_load_error("{\"\xFF\":0}", 7, "", "not valid UTF-8");
    expect_load_error("{\"a\":0}", 7, "", "for byte 0x00");
    /* no special tokens */
    size_t vl;
    char *v = tiny_vocab(none, &vl);
    char *cut = strstr(v, ",\"<|startoftext|>\"");
    assert_non_null(cut);
    strcpy(cut, "}");
    expect_load_error(v, strlen(v), "", "<|startoftext|>");
    free(v);
    /* merges.txt against a good vocabulary */
    v = tiny_vocab(ab, &vl);
    expect_load_error(v, vl, "a b c\n", "line 1: expected two tokens");
    expect_load_error(v, vl, "#version: 0.2\nab\n", "line 2: expected two tokens");
    expect_load_error(v, vl, "a b\nz q\nx y\n", "line 2: the merged token 'zq'");
    expect_load_error(v, vl, "a b\nab c\n", "line 2: the merged token 'abc'");
    expect_load_error(v, vl, "a b\nqq c\n", "line 2: 'qq' is not in vocab.json");
    expect_load_error(v, vl, "a b\n\xC3\n", "invalid UTF-8 at byte 4");
    tk_bpe *bpe = NULL;
    assert_int_equal(tk_bpe_load(v, vl, "", 0, &bpe), QIAO_OK); /* no merges: bytes only */
    assert_int_equal(tk_bpe_merge_count(bpe), 0);
    char got[64];
    tokens_of(bpe, "ab", got, sizeof got);
    assert_string_equal(got, "a b</w>");
    tk_bpe_free(bpe);
    free(v);
}

/* ---- threads ------------------------------------------------------------------------ */

typedef struct job {
    const tk_bpe *bpe;
    const fixture *fx;
    size_t start, step;
    size_t fails;
} job;

static void *run_job(void *arg) {
    job *j = arg;
    tk_bpe_opts o = tk_bpe_default_opts();
    o.add_special = false;
    for (size_t i = j->start; i < j->fx->n_texts; i += j->step) {
        size_t n;
        const int32_t *want = fixture_ids(j->fx, i, &n);
        int32_t *ids = NULL;
        size_t count = 0;
        if (tk_bpe_encode(j->bpe, j->fx->texts[i], j->fx->lens[i], &o, &ids, &count) != QIAO_OK || count != n ||
            (n && memcmp(ids, want, n * sizeof *ids) != 0))
            j->fails++;
        free(ids);
    }
    return NULL;
}

/* Four threads share one tokenizer, each going through every text from
 * its own start, so the same texts are encoded at the same time. */
static void threads(void **state) {
    (void)state;
    tk_bpe *bpe = load_clip();
    fixture fx;
    fixture_load(&fx);
    job jobs[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        jobs[i] = (job){.bpe = bpe, .fx = &fx, .start = (size_t)i, .step = 1 + (size_t)(i % 2)};
        assert_int_equal(pthread_create(&th[i], NULL, run_job, &jobs[i]), 0);
    }
    for (int i = 0; i < 4; i++) assert_int_equal(pthread_join(th[i], NULL), 0);
    for (int i = 0; i < 4; i++) assert_int_equal(jobs[i].fails, 0);
    fixture_free(&fx);
    tk_bpe_free(bpe);
}

int main(int argc, char **argv) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fixture_texts),  cmocka_unit_test(vocabulary),    cmocka_unit_test(edge_cases),
        cmocka_unit_test(context_length), cmocka_unit_test(merge_order),   cmocka_unit_test(invalid_utf8),
        cmocka_unit_test(sizes),          cmocka_unit_test(bad_arguments), cmocka_unit_test(bad_vocab),
        cmocka_unit_test(threads),
    };
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
