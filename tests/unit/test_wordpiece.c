/* tests/unit/test_wordpiece.c - the WordPiece tokenizer (tokenizers/wordpiece.c)
 * against transformers' slow BertTokenizer on the bert-base-chinese
 * vocabulary: every corpus utterance, shapes caption, edge case and random
 * string of tests/data/wordpiece/fixture.bin in each configuration it
 * holds, every Unicode character (the sweep), then offsets, truncation,
 * vocabulary parsing, errors and two threads sharing one tokenizer.
 *
 * The fixture and its format: tests/golden/make_wordpiece_fixture.py. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <unicode/uchar.h>

#include "testutil.h"
#include "tokenizers/wordpiece.h"

#define WP_DIR QIAO_TEST_DATA "/wordpiece"
#define VOCAB_PATH WP_DIR "/vocab.txt"
#define FIXTURE_PATH WP_DIR "/fixture.bin"
#define MAX_MODES 8
#define MAX_SOURCES 32
#define SHOW_MISMATCHES 10

/* ---- the fixture ----------------------------------------------------------- */

typedef struct fx_text {
    char *text; /* owned copy, NUL-terminated */
    size_t len;
    size_t max_tokens; /* 0, or the ids are a truncated encode() with [CLS] and [SEP] */
    int nmodes;
    int32_t *ids[MAX_MODES];
    size_t count[MAX_MODES];
} fx_text;

typedef struct fixture {
    cJSON *header;
    int nmodes, ref_modes;
    tk_wp_options modes[MAX_MODES];
    fx_text *texts;
    size_t ntexts;
    int block, nblocks;
    const uint8_t *sweep; /* (nblocks, nmodes) u32 hashes */
    uint8_t *data;
    int uver[3]; /* the generator's Unicode version */
} fixture;

typedef struct rd {
    const uint8_t *p, *end;
} rd;

static uint64_t rd_varint(rd *r) {
    uint64_t v = 0;
    for (int shift = 0;; shift += 7) {
        assert_true(r->p < r->end && shift < 64);
        uint8_t b = *r->p++;
        v |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) return v;
    }
}

static uint32_t rd_u32(rd *r) {
    assert_true(r->end - r->p >= 4);
    uint32_t v = (uint32_t)r->p[0] | (uint32_t)r->p[1] << 8 | (uint32_t)r->p[2] << 16 | (uint32_t)r->p[3] << 24;
    r->p += 4;
    return v;
}

static uint32_t fnv32(const void *data, size_t n) {
    const uint8_t *s = data;
    uint32_t h = 0x811C9DC5u;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 0x01000193u;
    }
    return h;
}

static uint32_t ids_hash(const int32_t *ids, size_t n) {
    uint32_t h = 0x811C9DC5u;
    for (size_t i = 0; i < n; i++) {
        uint32_t v = (uint32_t)ids[i];
        for (int k = 0; k < 4; k++) {
            h ^= (v >> (8 * k)) & 0xFF;
            h *= 0x01000193u;
        }
    }
    return h;
}

/* One corpus file, its lines found once. */
typedef struct source {
    uint8_t *data;
    size_t size;
    size_t *line; /* start of each line */
    size_t nlines;
} source;

static void source_load(source *s, const char *rel) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", QIAO_SOURCE_DIR, rel);
    qiao_status st = qc_read_file(path, (size_t)1 << 30, &s->data, &s->size);
    if (st != QIAO_OK) printf("%s: %s\n", path, qiao_last_error());
    assert_int_equal(st, QIAO_OK);
    size_t cap = 1024;
    s->line = malloc(cap * sizeof *s->line);
    s->nlines = 0;
    for (size_t i = 0; i < s->size;) {
        if (s->nlines == cap) s->line = realloc(s->line, (cap *= 2) * sizeof *s->line);
        assert_non_null(s->line);
        s->line[s->nlines++] = i;
        while (i < s->size && s->data[i] != '\n') i++;
        i++;
    }
}

static tk_wp_options mode_options(const cJSON *m) {
    tk_wp_options o = tk_wp_default_options();
    const cJSON *v;
    if ((v = cJSON_GetObjectItemCaseSensitive(m, "do_lower_case"))) o.do_lower_case = cJSON_IsTrue(v);
    if ((v = cJSON_GetObjectItemCaseSensitive(m, "strip_accents")))
        o.strip_accents = cJSON_IsTrue(v) ? TK_WP_ACCENTS_STRIP : TK_WP_ACCENTS_KEEP;
    if ((v = cJSON_GetObjectItemCaseSensitive(m, "tokenize_chinese_chars"))) o.tokenize_chinese_chars = cJSON_IsTrue(v);
    return o;
}

static fixture *fixture_load(void) {
    fixture *fx = calloc(1, sizeof *fx);
    assert_non_null(fx);
    size_t size;
    qiao_status st = qc_read_file(FIXTURE_PATH, (size_t)64 << 20, &fx->data, &size);
    if (st != QIAO_OK) printf("%s: %s\n", FIXTURE_PATH, qiao_last_error());
    assert_int_equal(st, QIAO_OK);
    const uint8_t *nl = memchr(fx->data, '\n', size);
    assert_non_null(nl);
    fx->header = cJSON_ParseWithLength((const char *)fx->data, (size_t)(nl - fx->data));
    assert_non_null(fx->header);
    const cJSON *h = fx->header;
    const cJSON *modes = cJSON_GetObjectItemCaseSensitive(h, "modes");
    fx->nmodes = cJSON_GetArraySize(modes);
    assert_true(fx->nmodes >= 2 && fx->nmodes <= MAX_MODES);
    for (int m = 0; m < fx->nmodes; m++) fx->modes[m] = mode_options(cJSON_GetArrayItem(modes, m));
    fx->ref_modes = cJSON_GetObjectItemCaseSensitive(h, "reference_modes")->valueint;
    const cJSON *sweep = cJSON_GetObjectItemCaseSensitive(h, "sweep");
    fx->block = cJSON_GetObjectItemCaseSensitive(sweep, "block")->valueint;
    fx->nblocks = cJSON_GetObjectItemCaseSensitive(sweep, "blocks")->valueint;
    const char *uv = cJSON_GetObjectItemCaseSensitive(h, "unicodedata")->valuestring;
    assert_int_equal(sscanf(uv, "%d.%d.%d", &fx->uver[0], &fx->uver[1], &fx->uver[2]), 3);
    const cJSON *srcs = cJSON_GetObjectItemCaseSensitive(h, "sources");
    int nsrc = cJSON_GetArraySize(srcs);
    assert_true(nsrc <= MAX_SOURCES);
    source sources[MAX_SOURCES];
    for (int i = 0; i < nsrc; i++) source_load(&sources[i], cJSON_GetArrayItem(srcs, i)->valuestring);

    fx->ntexts = (size_t)cJSON_GetObjectItemCaseSensitive(h, "records")->valuedouble;
    fx->texts = calloc(fx->ntexts, sizeof *fx->texts);
    assert_non_null(fx->texts);
    rd r = {nl + 1, fx->data + size};
    for (size_t t = 0; t < fx->ntexts; t++) {
        fx_text *x = &fx->texts[t];
        assert_true(r.p < r.end);
        uint8_t flags = *r.p++;
        if (flags & 1) {
            x->len = (size_t)rd_varint(&r);
            assert_true((size_t)(r.end - r.p) >= x->len);
            x->text = malloc(x->len + 1);
            memcpy(x->text, r.p, x->len);
            r.p += x->len;
        } else {
            uint64_t si = rd_varint(&r), li = rd_varint(&r);
            uint32_t want = rd_u32(&r);
            assert_true(si < (uint64_t)nsrc && li < sources[si].nlines);
            const source *s = &sources[si];
            size_t b = s->line[li], e = b;
            while (e < s->size && s->data[e] != '\n') e++;
            cJSON *obj = cJSON_ParseWithLength((const char *)s->data + b, e - b);
            const cJSON *txt = cJSON_GetObjectItemCaseSensitive(obj, "text");
            assert_true(cJSON_IsString(txt));
            x->len = strlen(txt->valuestring);
            x->text = malloc(x->len + 1);
            memcpy(x->text, txt->valuestring, x->len);
            cJSON_Delete(obj);
            if (fnv32(x->text, x->len) != want) {
                printf("%s line %llu changed since the fixture was made: rerun "
                       "tests/golden/make_wordpiece_fixture.py\n",
                       cJSON_GetArrayItem(srcs, (int)si)->valuestring, (unsigned long long)li + 1);
                fail();
            }
        }
        x->text[x->len] = '\0';
        if (flags & 2) x->max_tokens = (size_t)rd_varint(&r);
        x->nmodes = (flags & 1) ? fx->nmodes : fx->ref_modes;
        for (int m = 0; m < x->nmodes; m++) {
            uint64_t c = rd_varint(&r);
            if (c == 0) {
                uint64_t j = rd_varint(&r);
                assert_true(j < (uint64_t)m);
                x->count[m] = x->count[j];
                x->ids[m] = malloc((x->count[m] + 1) * sizeof(int32_t));
                memcpy(x->ids[m], x->ids[j], x->count[m] * sizeof(int32_t));
                continue;
            }
            x->count[m] = (size_t)c - 1;
            x->ids[m] = malloc((x->count[m] + 1) * sizeof(int32_t));
            for (size_t i = 0; i < x->count[m]; i++) x->ids[m][i] = (int32_t)rd_varint(&r);
        }
    }
    size_t want = (size_t)fx->nblocks * (size_t)fx->nmodes * 4;
    assert_int_equal((size_t)(r.end - r.p), want);
    fx->sweep = r.p;
    for (int i = 0; i < nsrc; i++) {
        free(sources[i].data);
        free(sources[i].line);
    }
    return fx;
}

static void fixture_free(fixture *fx) {
    for (size_t t = 0; t < fx->ntexts; t++) {
        free(fx->texts[t].text);
        for (int m = 0; m < fx->texts[t].nmodes; m++) free(fx->texts[t].ids[m]);
    }
    free(fx->texts);
    cJSON_Delete(fx->header);
    free(fx->data);
    free(fx);
}

static tk_wp *load_vocab(const tk_wp_options *o) {
    tk_wp *wp = NULL;
    qiao_status st = tk_wp_load_file(VOCAB_PATH, o, &wp);
    if (st != QIAO_OK) printf("load: %s\n", qiao_last_error());
    assert_int_equal(st, QIAO_OK);
    return wp;
}

static void print_ids(const char *what, const int32_t *ids, size_t n) {
    printf("    %-8s", what);
    for (size_t i = 0; i < n; i++) printf(" %d", ids[i]);
    printf("\n");
}

/* Encodes x in mode m both ways and compares with the fixture. */
static bool matches(const tk_wp *wp, const fx_text *x, int m, bool report) {
    tk_wp_encoding e;
    const int32_t *want = x->ids[m];
    size_t n = x->count[m];
    bool ok = true;
    qiao_status st = tk_wp_encode(wp, x->text, x->len, true, x->max_tokens, &e);
    if (st != QIAO_OK) {
        if (report) printf("  mode %d: %s\n", m, qiao_last_error());
        return false;
    }
    int32_t cls = tk_wp_special_id(wp, TK_WP_CLS), sep = tk_wp_special_id(wp, TK_WP_SEP);
    if (x->max_tokens)
        ok = e.count == n && !memcmp(e.ids, want, n * sizeof *want);
    else
        ok = e.count == n + 2 && e.ids[0] == cls && e.ids[n + 1] == sep && !memcmp(e.ids + 1, want, n * sizeof *want);
    for (size_t i = 0; i < e.count && ok; i++) {
        int64_t b = e.offsets[2 * i], en = e.offsets[2 * i + 1];
        ok = b >= 0 && b <= en && en <= (int64_t)x->len && (i == 0 || e.ids[i] == sep || b >= e.offsets[2 * i - 2]);
    }
    if (!ok && report) {
        printf("  mode %d, text \"%s\"%s:\n", m, x->text, x->max_tokens ? " (truncated)" : "");
        print_ids("want", want, n);
        print_ids("got", e.ids, e.count);
    }
    tk_wp_encoding_free(&e);
    if (!ok || x->max_tokens) return ok;
    st = tk_wp_encode(wp, x->text, x->len, false, 0, &e);
    ok = st == QIAO_OK && e.count == n && (n == 0 || !memcmp(e.ids, want, n * sizeof *want));
    if (!ok && report) printf("  mode %d, text \"%s\": differs without [CLS] and [SEP]\n", m, x->text);
    tk_wp_encoding_free(&e);
    return ok;
}

/* ---- cases ----------------------------------------------------------------- */

static void fixture_texts(void **state) {
    (void)state;
    fixture *fx = fixture_load();
    size_t checked = 0, bad = 0;
    for (int m = 0; m < fx->nmodes; m++) {
        tk_wp *wp = load_vocab(&fx->modes[m]);
        size_t bad_mode = 0, n_mode = 0;
        for (size_t t = 0; t < fx->ntexts; t++) {
            const fx_text *x = &fx->texts[t];
            if (m >= x->nmodes) continue;
            n_mode++;
            if (!matches(wp, x, m, false)) {
                if (bad < SHOW_MISMATCHES) matches(wp, x, m, true);
                bad++;
                bad_mode++;
            }
        }
        printf("mode %d: %zu texts, %zu differ from BertTokenizer\n", m, n_mode, bad_mode);
        checked += n_mode;
        tk_wp_free(wp);
    }
    printf("%zu distinct texts, %zu (text, mode) pairs checked, %zu differ\n", fx->ntexts, checked, bad);
    assert_int_equal(bad, 0);
    assert_true(fx->ntexts > 40000);
    fixture_free(fx);
}

static size_t put_utf8(char *p, int32_t c) {
    if (c < 0x80) {
        p[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        p[0] = (char)(0xC0 | (c >> 6));
        p[1] = (char)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        p[0] = (char)(0xE0 | (c >> 12));
        p[1] = (char)(0x80 | ((c >> 6) & 0x3F));
        p[2] = (char)(0x80 | (c & 0x3F));
        return 3;
    }
    p[0] = (char)(0xF0 | (c >> 18));
    p[1] = (char)(0x80 | ((c >> 12) & 0x3F));
    p[2] = (char)(0x80 | ((c >> 6) & 0x3F));
    p[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}

/* Whether c was assigned in Unicode `ver` (what the generator's
 * unicodedata calls anything but Cn and Cs). */
static bool assigned_in(int32_t c, const int ver[3]) {
    int8_t t = u_charType(c);
    if (t == U_UNASSIGNED || t == U_SURROGATE) return false;
    UVersionInfo age;
    u_charAge(c, age);
    for (int i = 0; i < 3; i++)
        if (age[i] != ver[i]) return age[i] < ver[i];
    return true;
}

static void unicode_sweep(void **state) {
    (void)state;
    fixture *fx = fixture_load();
    UVersionInfo icu;
    u_getUnicodeVersion(icu);
    printf("ICU's Unicode %d.%d.%d, the fixture's %d.%d.%d\n", icu[0], icu[1], icu[2], fx->uver[0], fx->uver[1],
           fx->uver[2]);
    if (icu[0] < fx->uver[0] || (icu[0] == fx->uver[0] && icu[1] < fx->uver[1])) {
        printf("ICU's Unicode is older than the Python that made the fixture: sweep skipped\n");
        fixture_free(fx);
        skip();
    }
    char *text = malloc((size_t)fx->block * 8);
    assert_non_null(text);
    size_t bad = 0, chars = 0;
    for (int m = 0; m < fx->nmodes; m++) {
        tk_wp *wp = load_vocab(&fx->modes[m]);
        for (int b = 0; b < fx->nblocks; b++) {
            size_t n = 0;
            for (int32_t c = b * fx->block; c < (b + 1) * fx->block; c++) {
                if (!assigned_in(c, fx->uver)) continue;
                if (n) text[n++] = ' ';
                text[n++] = 'a';
                n += put_utf8(text + n, c);
                text[n++] = 'a';
                if (m == 0) chars++;
            }
            tk_wp_encoding e;
            assert_int_equal(tk_wp_encode(wp, text, n, false, 0, &e), QIAO_OK);
            const uint8_t *p = fx->sweep + ((size_t)b * (size_t)fx->nmodes + (size_t)m) * 4;
            uint32_t want = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
            if (ids_hash(e.ids, e.count) != want) {
                if (bad < SHOW_MISMATCHES)
                    printf("  mode %d: block U+%04X..U+%04X differs from BertTokenizer\n", m, b * fx->block,
                           (b + 1) * fx->block - 1);
                bad++;
            }
            tk_wp_encoding_free(&e);
        }
        tk_wp_free(wp);
    }
    printf("%zu characters in %d blocks, %d modes: %zu blocks differ\n", chars, fx->nblocks, fx->nmodes, bad);
    free(text);
    fixture_free(fx);
    assert_int_equal(bad, 0);
}

/* The tokens of text as "tok tok tok" (no [CLS]/[SEP]). */
static char *tokens_of(const tk_wp *wp, const char *text) {
    tk_wp_encoding e;
    qiao_status st = tk_wp_encode(wp, text, strlen(text), false, 0, &e);
    if (st != QIAO_OK) printf("encode: %s\n", qiao_last_error());
    assert_int_equal(st, QIAO_OK);
    size_t cap = 16, n = 0;
    for (size_t i = 0; i < e.count; i++) cap += 64;
    char *s = malloc(cap);
    s[0] = '\0';
    for (size_t i = 0; i < e.count; i++) {
        size_t l;
        const char *t = tk_wp_token(wp, e.ids[i], &l);
        assert_non_null(t);
        n += (size_t)snprintf(s + n, cap - n, "%s%s", i ? " " : "", t);
    }
    tk_wp_encoding_free(&e);
    return s;
}

static void expect_tokens(const tk_wp *wp, const char *text, const char *want) {
    char *got = tokens_of(wp, text);
    if (strcmp(got, want) != 0) printf("'%s': got '%s', want '%s'\n", text, got, want);
    assert_string_equal(got, want);
    free(got);
}

static void edge_cases(void **state) {
    (void)state;
    tk_wp_options o = tk_wp_default_options();
    tk_wp *lower = load_vocab(&o);
    o.do_lower_case = false;
    tk_wp *cased = load_vocab(&o);
    expect_tokens(lower, "", "");
    expect_tokens(lower, " \t\r\n \xE3\x80\x80 ", "");
    expect_tokens(lower, "unaffable", "u ##na ##ff ##able");
    expect_tokens(lower, "Hello, World!", "hello , world !");
    expect_tokens(cased, "Hello, World!", "[UNK] , [UNK] !");
    expect_tokens(lower, "我喜欢北京", "我 喜 欢 北 京");
    expect_tokens(lower, "我的order还没到", "我 的 order 还 没 到");
    /* accents go with lowercasing: café -> cafe, NFD or NFC written alike */
    expect_tokens(lower, "CAF\xC3\x89 cafe\xCC\x81", "cafe cafe");
    /* the special tokens' text is kept whole and uppercase in either mode */
    expect_tokens(lower, "a[MASK]b [CLS]", "a [MASK] b [CLS]");
    expect_tokens(cased, "[MASK]", "[MASK]");
    expect_tokens(lower, "[mask]", "[ ma ##sk ]");
    /* a special token broken by a dropped format character is kept whole too */
    expect_tokens(cased, "[MA\xE2\x80\x8BSK]", "[MASK]");
    /* control characters vanish without splitting; tab and newline split */
    expect_tokens(lower, "ab\001\177cd\tef", "abc ##d ef");
    expect_tokens(lower, "a\342\200\250b", "a b"); /* U+2028 */
    /* a word over 100 characters is one [UNK]; at 100 it is pieces */
    char w[128];
    memset(w, 'a', 101);
    w[101] = '\0';
    expect_tokens(lower, w, "[UNK]");
    tk_wp_encoding e;
    assert_int_equal(tk_wp_encode(lower, w, 100, false, 0, &e), QIAO_OK);
    assert_true(e.count > 1);
    tk_wp_encoding_free(&e);
    tk_wp_free(lower);
    tk_wp_free(cased);
}

static void offsets(void **state) {
    (void)state;
    tk_wp_options o = tk_wp_default_options();
    tk_wp *wp = load_vocab(&o);
    const char *text = "X CAF\xC3\x89, \xE5\x8C\x97 [SEP]unaffable";
    tk_wp_encoding e;
    assert_int_equal(tk_wp_encode(wp, text, strlen(text), true, 0, &e), QIAO_OK);
    /* [CLS] x cafe , 北 [SEP] u ##na ##ff ##able [SEP] */
    static const int64_t want[][2] = {{0, 0},   {0, 1},   {2, 7},   {7, 8},   {9, 12}, {13, 18},
                                      {18, 19}, {19, 21}, {21, 23}, {23, 27}, {0, 0}};
    assert_int_equal(e.count, 11);
    for (size_t i = 0; i < e.count; i++) {
        if (e.offsets[2 * i] != want[i][0] || e.offsets[2 * i + 1] != want[i][1])
            printf("token %zu: [%lld, %lld), want [%lld, %lld)\n", i, (long long)e.offsets[2 * i],
                   (long long)e.offsets[2 * i + 1], (long long)want[i][0], (long long)want[i][1]);
        assert_int_equal(e.offsets[2 * i], want[i][0]);
        assert_int_equal(e.offsets[2 * i + 1], want[i][1]);
    }
    assert_int_equal(e.ids[5], tk_wp_special_id(wp, TK_WP_SEP));
    tk_wp_encoding_free(&e);
    /* a decomposed accent belongs to its letter's piece */
    const char *nfd = "e\xCC\x81";
    assert_int_equal(tk_wp_encode(wp, nfd, strlen(nfd), false, 0, &e), QIAO_OK);
    assert_int_equal(e.count, 1);
    assert_int_equal(e.offsets[0], 0);
    assert_int_equal(e.offsets[1], 3);
    tk_wp_encoding_free(&e);
    tk_wp_free(wp);
}

static void truncation(void **state) {
    (void)state;
    tk_wp_options o = tk_wp_default_options();
    tk_wp *wp = load_vocab(&o);
    const char *text = "unaffable words and 更多的中文字符 for a longer text";
    tk_wp_encoding all, part;
    assert_int_equal(tk_wp_encode(wp, text, strlen(text), true, 0, &all), QIAO_OK);
    for (size_t k = 2; k < all.count + 3; k++) {
        assert_int_equal(tk_wp_encode(wp, text, strlen(text), true, k, &part), QIAO_OK);
        size_t want = k < all.count ? k : all.count;
        assert_int_equal(part.count, want);
        assert_memory_equal(part.ids, all.ids, (want - 1) * sizeof(int32_t));
        assert_int_equal(part.ids[want - 1], tk_wp_special_id(wp, TK_WP_SEP));
        tk_wp_encoding_free(&part);
        assert_int_equal(tk_wp_encode(wp, text, strlen(text), false, k, &part), QIAO_OK);
        want = k < all.count - 2 ? k : all.count - 2;
        assert_int_equal(part.count, want);
        assert_memory_equal(part.ids, all.ids + 1, want * sizeof(int32_t));
        tk_wp_encoding_free(&part);
    }
    tk_wp_encoding_free(&all);
    assert_int_equal(tk_wp_encode(wp, text, strlen(text), true, 1, &part), QIAO_ERR_INVALID_ARGUMENT);
    tk_wp_free(wp);
}

static tk_wp *load_text(const char *vocab, size_t len, const tk_wp_options *o) {
    tk_wp *wp = NULL;
    qiao_status st = tk_wp_load(vocab, len, o, &wp);
    if (st != QIAO_OK) printf("load: %s\n", qiao_last_error());
    assert_int_equal(st, QIAO_OK);
    return wp;
}

static void vocab_parsing(void **state) {
    (void)state;
    /* CRLF, a lone CR, an empty line, a duplicate, no final newline */
    static const char v[] = "[PAD]\r\n[UNK]\r[CLS]\n\n[SEP]\nab\n##c\nab\n##cd";
    tk_wp_options o = tk_wp_default_options();
    tk_wp *wp = load_text(v, sizeof v - 1, &o);
    assert_int_equal(tk_wp_vocab_size(wp), 9);
    assert_int_equal(tk_wp_special_id(wp, TK_WP_PAD), 0);
    assert_int_equal(tk_wp_special_id(wp, TK_WP_UNK), 1);
    assert_int_equal(tk_wp_special_id(wp, TK_WP_CLS), 2);
    assert_int_equal(tk_wp_special_id(wp, TK_WP_SEP), 4);
    assert_int_equal(tk_wp_special_id(wp, TK_WP_MASK), -1);
    size_t len;
    assert_string_equal(tk_wp_token(wp, 3, &len), "");
    assert_int_equal(len, 0);
    assert_string_equal(tk_wp_token(wp, 8, NULL), "##cd");
    assert_string_equal(tk_wp_token(wp, 5, NULL), "ab"); /* every line keeps its text */
    assert_null(tk_wp_token(wp, 9, NULL));
    assert_null(tk_wp_token(wp, -1, NULL));
    /* a duplicate encodes as its last line, as BertTokenizer's dict */
    assert_int_equal(tk_wp_token_id(wp, "ab", 2), 7);
    assert_int_equal(tk_wp_token_id(wp, "abc", 3), -1);
    tk_wp_encoding e;
    assert_int_equal(tk_wp_encode(wp, "abcd abc x", 10, true, 0, &e), QIAO_OK);
    static const int32_t want[] = {2, 7, 8, 7, 6, 1, 4};
    assert_int_equal(e.count, 7);
    assert_memory_equal(e.ids, want, sizeof want);
    tk_wp_encoding_free(&e);
    /* without [MASK] in the vocabulary its text is one unknown word
     * (BertTokenizer would add it with a new id: wordpiece.h) */
    assert_int_equal(tk_wp_encode(wp, "[MASK]", 6, false, 0, &e), QIAO_OK);
    assert_int_equal(e.count, 1);
    assert_int_equal(e.ids[0], 1);
    tk_wp_encoding_free(&e);
    tk_wp_free(wp);

    /* custom special tokens, and a line ending in "\r\r\n" (two lines) */
    static const char v2[] = "<unk>\r\r\n<s>\n</s>\nhi\n";
    o.unk_token = "<unk>";
    o.cls_token = "<s>";
    o.sep_token = "</s>";
    wp = load_text(v2, sizeof v2 - 1, &o);
    assert_int_equal(tk_wp_vocab_size(wp), 5);
    assert_int_equal(tk_wp_encode(wp, "hi <s>HI zz", 11, true, 0, &e), QIAO_OK);
    static const int32_t want2[] = {2, 4, 2, 4, 0, 3};
    assert_int_equal(e.count, 6);
    assert_memory_equal(e.ids, want2, sizeof want2);
    tk_wp_encoding_free(&e);
    tk_wp_free(wp);

    /* the real vocabulary: its size and its specials */
    o = tk_wp_default_options();
    wp = load_vocab(&o);
    assert_int_equal(tk_wp_vocab_size(wp), 21128);
    assert_int_equal(tk_wp_special_id(wp, TK_WP_PAD), 0);
    assert_int_equal(tk_wp_special_id(wp, TK_WP_UNK), 100);
    assert_int_equal(tk_wp_special_id(wp, TK_WP_CLS), 101);
    assert_int_equal(tk_wp_special_id(wp, TK_WP_SEP), 102);
    assert_int_equal(tk_wp_special_id(wp, TK_WP_MASK), 103);
    tk_wp_free(wp);
}

static void errors(void **state) {
    (void)state;
    tk_wp_options o = tk_wp_default_options();
    tk_wp *wp = NULL;
    /* vocabularies */
    assert_int_equal(tk_wp_load("", 0, &o, &wp), QIAO_ERR_FORMAT);
    assert_null(wp);
    assert_int_equal(tk_wp_load("a\nb\n", 4, &o, &wp), QIAO_ERR_FORMAT);
    assert_non_null(strstr(qiao_last_error(), "[UNK]"));
    assert_int_equal(tk_wp_load("[UNK]\n\xC3\x28\n", 8, &o, &wp), QIAO_ERR_FORMAT);
    assert_non_null(strstr(qiao_last_error(), "line 2"));
    assert_int_equal(tk_wp_load("[UNK]", TK_WP_MAX_VOCAB_BYTES + 1, &o, &wp), QIAO_ERR_TOO_LARGE);
    assert_int_equal(tk_wp_load(NULL, 3, &o, &wp), QIAO_ERR_INVALID_ARGUMENT);
    assert_int_equal(tk_wp_load("[UNK]", 5, &o, NULL), QIAO_ERR_INVALID_ARGUMENT);
    tk_wp_options bad = o;
    bad.max_input_chars_per_word = 0;
    assert_int_equal(tk_wp_load("[UNK]", 5, &bad, &wp), QIAO_ERR_INVALID_ARGUMENT);
    bad = o;
    bad.cls_token = "";
    assert_int_equal(tk_wp_load("[UNK]", 5, &bad, &wp), QIAO_ERR_INVALID_ARGUMENT);
    bad = o;
    bad.strip_accents = 7;
    assert_int_equal(tk_wp_load("[UNK]", 5, &bad, &wp), QIAO_ERR_INVALID_ARGUMENT);
    assert_int_equal(tk_wp_load_file(WP_DIR "/no-such-vocab.txt", &o, &wp), QIAO_ERR_IO);
    assert_null(wp);
    /* NULL options are the defaults; [CLS] and [SEP] are needed only for them */
    assert_int_equal(tk_wp_load("[UNK]\nab", 8, NULL, &wp), QIAO_OK);
    tk_wp_encoding e;
    assert_int_equal(tk_wp_encode(wp, "ab", 2, true, 0, &e), QIAO_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(qiao_last_error(), "[CLS]"));
    assert_int_equal(tk_wp_encode(wp, "ab", 2, false, 0, &e), QIAO_OK);
    assert_int_equal(e.count, 1);
    tk_wp_encoding_free(&e);
    tk_wp_free(wp);

    /* texts */
    wp = load_vocab(&o);
    const char *inv = "ok \xE4\xB8 broken";
    assert_int_equal(tk_wp_encode(wp, inv, strlen(inv), true, 0, &e), QIAO_ERR_FORMAT);
    assert_non_null(strstr(qiao_last_error(), "byte 3"));
    assert_null(e.ids);
    assert_int_equal(e.count, 0);
    assert_int_equal(tk_wp_encode(wp, "\xED\xA0\x80", 3, false, 0, &e), QIAO_ERR_FORMAT); /* a surrogate */
    assert_int_equal(tk_wp_encode(wp, "\xC0\xAF", 2, false, 0, &e), QIAO_ERR_FORMAT);     /* overlong */
    /* the size is refused before the text is read */
    assert_int_equal(tk_wp_encode(wp, "x", TK_WP_MAX_TEXT + 1, false, 0, &e), QIAO_ERR_TOO_LARGE);
    assert_int_equal(tk_wp_encode(wp, "x", SIZE_MAX, false, 0, &e), QIAO_ERR_TOO_LARGE);
    assert_int_equal(tk_wp_encode(wp, NULL, 1, false, 0, &e), QIAO_ERR_INVALID_ARGUMENT);
    assert_int_equal(tk_wp_encode(NULL, "x", 1, false, 0, &e), QIAO_ERR_INVALID_ARGUMENT);
    assert_int_equal(tk_wp_encode(wp, "x", 1, false, 0, NULL), QIAO_ERR_INVALID_ARGUMENT);
    assert_int_equal(tk_wp_encode(wp, NULL, 0, true, 0, &e), QIAO_OK);
    assert_int_equal(e.count, 2);
    tk_wp_encoding_free(&e);
    tk_wp_encoding_free(&e);
    tk_wp_encoding_free(NULL);
    /* the largest text is accepted: a megabyte of words and punctuation */
    char *big = malloc(TK_WP_MAX_TEXT);
    assert_non_null(big);
    for (size_t i = 0; i < TK_WP_MAX_TEXT; i++) big[i] = "ab, "[i % 4];
    assert_int_equal(tk_wp_encode(wp, big, TK_WP_MAX_TEXT, true, 0, &e), QIAO_OK);
    assert_int_equal(e.count, TK_WP_MAX_TEXT / 2 + 2);
    tk_wp_encoding_free(&e);
    free(big);
    tk_wp_free(NULL);
    tk_wp_free(wp);
}

/* Texts of the largest size built to be slow: combining marks whose classes
 * alternate (canonical reordering), one endless word, nothing but
 * punctuation, nothing but CJK ideographs. Each must simply finish. */
static void hostile_texts(void **state) {
    (void)state;
    char *t = malloc(TK_WP_MAX_TEXT);
    assert_non_null(t);
    static const char *const units[] = {"\xCC\x81\xCC\xA3", "a", "!", "\xE4\xB8\xAD"};
    for (int lower = 0; lower < 2; lower++) {
        tk_wp_options o = tk_wp_default_options();
        o.do_lower_case = lower;
        tk_wp *wp = load_vocab(&o);
        for (size_t u = 0; u < sizeof units / sizeof *units; u++) {
            size_t k = strlen(units[u]), n = 0;
            while (n + k <= TK_WP_MAX_TEXT) {
                memcpy(t + n, units[u], k);
                n += k;
            }
            tk_wp_encoding e;
            assert_int_equal(tk_wp_encode(wp, t, n, true, 0, &e), QIAO_OK);
            /* the marks stripped to nothing or one [UNK]; one [UNK]; a
             * token per character */
            size_t want = u == 0 ? (lower ? 2 : 3) : u == 1 ? 3 : n / k + 2;
            assert_int_equal(e.count, want);
            tk_wp_encoding_free(&e);
        }
        tk_wp_free(wp);
    }
    free(t);
}

typedef struct thread_job {
    const tk_wp *wp;
    const fixture *fx;
    bool backwards;
    size_t bad;
} thread_job;

static void *thread_main(void *arg) {
    thread_job *j = arg;
    for (size_t i = 0; i < j->fx->ntexts; i++) {
        size_t t = j->backwards ? j->fx->ntexts - 1 - i : i;
        if (!matches(j->wp, &j->fx->texts[t], 1, false)) j->bad++;
    }
    return NULL;
}

static void threads(void **state) {
    (void)state;
    fixture *fx = fixture_load();
    tk_wp *wp = load_vocab(&fx->modes[1]);
    /* both threads encode every text, from different ends of the list */
    thread_job jobs[2] = {{wp, fx, false, 0}, {wp, fx, true, 0}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++) assert_int_equal(pthread_create(&th[i], NULL, thread_main, &jobs[i]), 0);
    for (int i = 0; i < 2; i++) assert_int_equal(pthread_join(th[i], NULL), 0);
    assert_int_equal(jobs[0].bad, 0);
    assert_int_equal(jobs[1].bad, 0);
    tk_wp_free(wp);
    fixture_free(fx);
}

int main(int argc, char **argv) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fixture_texts), cmocka_unit_test(unicode_sweep), cmocka_unit_test(edge_cases),
        cmocka_unit_test(offsets),       cmocka_unit_test(truncation),    cmocka_unit_test(vocab_parsing),
        cmocka_unit_test(errors),        cmocka_unit_test(hostile_texts), cmocka_unit_test(threads),
    };
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
