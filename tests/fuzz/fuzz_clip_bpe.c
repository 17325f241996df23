/* libFuzzer target: CLIP's byte-level BPE (tokenizers/clip_bpe.c).
 *
 * The first byte picks what the rest is:
 *   0 (and anything not below): option bits, then text for the real CLIP
 *     vocabulary (tests/data/clip_bpe, QIAO_FUZZ_CLIP_BPE). The text
 *     either encodes, with every id in range and the specials and length
 *     the options ask for, or is refused with QIAO_ERR_FORMAT exactly when
 *     it is not UTF-8; with a context length the ids are the first ones of
 *     the whole text's, and without specials the ones between them;
 *   1: vocab.json, a NUL, merges.txt, loaded together;
 *   2: merges.txt against a small vocabulary made from CLIP's first merges.
 * A load either fails with QIAO_ERR_FORMAT or QIAO_ERR_INVALID_ARGUMENT or
 * gives a tokenizer whose tokens and ids agree and that encodes its own
 * input and a fixed sentence with ids in range. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "tokenizers/clip_bpe.h"

#define SMALL_MERGES 500

static tk_bpe *clip;
static char *small_vocab;
static size_t small_vocab_len;

/* GPT-2's character of byte b, as UTF-8. */
static size_t byte_char(unsigned b, char *out) {
    unsigned c = b;
    if (!((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE)) {
        c = 256;
        for (unsigned x = 0; x < b; x++) c += !((x >= 0x21 && x <= 0x7E) || (x >= 0xA1 && x <= 0xAC) || x >= 0xAE);
    }
    if (c < 0x80) {
        out[0] = (char)c;
        return 1;
    }
    out[0] = (char)(0xC0 | (c >> 6));
    out[1] = (char)(0x80 | (c & 0x3F));
    return 2;
}

static void put(char **s, size_t *n, size_t *cap, const char *p, size_t k) {
    if (*n + k + 1 > *cap) {
        *cap = 2 * (*n + k + 1);
        *s = realloc(*s, *cap);
        CHECK(*s);
    }
    memcpy(*s + *n, p, k);
    *n += k;
    (*s)[*n] = '\0';
}

/* vocab.json of the byte tokens, the tokens of CLIP's first SMALL_MERGES
 * merges and the specials: small enough to load on every input. */
static void make_small_vocab(const char *merges, size_t len) {
    char *s = NULL, tok[64];
    size_t n = 0, cap = 0;
    int id = 0;
    put(&s, &n, &cap, "{", 1);
    for (int pass = 0; pass < 2; pass++) {
        for (unsigned b = 0; b < 256; b++) {
            char c[2];
            size_t k = byte_char(b, c);
            put(&s, &n, &cap, id ? ",\"" : "\"", id ? 2 : 1);
            if (c[0] == '"' || c[0] == '\\') put(&s, &n, &cap, "\\", 1);
            put(&s, &n, &cap, c, k);
            if (pass) put(&s, &n, &cap, "</w>", 4);
            int w = snprintf(tok, sizeof tok, "\":%d", id++);
            put(&s, &n, &cap, tok, (size_t)w);
        }
    }
    const char *p = memchr(merges, '\n', len), *end = merges + len;
    for (int m = 0; p && p + 1 < end && m < SMALL_MERGES; m++) {
        const char *line = p + 1, *nl = memchr(line, '\n', (size_t)(end - line));
        const char *sp = memchr(line, ' ', (size_t)((nl ? nl : end) - line));
        CHECK(sp);
        put(&s, &n, &cap, ",\"", 2);
        for (const char *q = line; q < (nl ? nl : end); q++) {
            if (q == sp) continue;
            if (*q == '"' || *q == '\\') put(&s, &n, &cap, "\\", 1);
            put(&s, &n, &cap, q, 1);
        }
        int w = snprintf(tok, sizeof tok, "\":%d", id++);
        put(&s, &n, &cap, tok, (size_t)w);
        p = nl;
    }
    int w = snprintf(tok, sizeof tok, ",\"" TK_BPE_SOT "\":%d,\"" TK_BPE_EOT "\":%d}", id, id + 1);
    put(&s, &n, &cap, tok, (size_t)w);
    small_vocab = s;
    small_vocab_len = n;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    uint8_t *v, *m;
    size_t vl, ml;
    CHECK(qc_read_file(QIAO_FUZZ_CLIP_BPE "/vocab.json", TK_BPE_MAX_FILE, &v, &vl) == QIAO_OK);
    CHECK(qc_read_file(QIAO_FUZZ_CLIP_BPE "/merges.txt", TK_BPE_MAX_FILE, &m, &ml) == QIAO_OK);
    CHECK(tk_bpe_load((const char *)v, vl, (const char *)m, ml, &clip) == QIAO_OK);
    make_small_vocab((const char *)m, ml);
    free(v);
    free(m);
    return 0;
}

static bool ids_in_range(const tk_bpe *bpe, const int32_t *ids, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= tk_bpe_vocab_size(bpe)) return false;
    return true;
}

static void fuzz_text(const uint8_t *data, size_t size) {
    if (size < 2) return;
    uint8_t flags = data[0], ctx_byte = data[1];
    const char *text = (const char *)data + 2;
    size_t len = size - 2;
    bool valid = qc_utf8_valid(text, len);
    const int32_t sot = tk_bpe_sot_id(clip), eot = tk_bpe_eot_id(clip);

    int32_t *full = NULL;
    size_t nfull = 0;
    qiao_status st = tk_bpe_encode(clip, text, len, NULL, &full, &nfull);
    CHECK(st == (valid ? QIAO_OK : QIAO_ERR_FORMAT));
    if (!valid) {
        CHECK(!full && nfull == 0);
        return;
    }
    CHECK(nfull >= 2 && full[0] == sot && full[nfull - 1] == eot && ids_in_range(clip, full, nfull));

    tk_bpe_opts o = tk_bpe_default_opts();
    o.add_special = flags & 1;
    o.pad = flags & 2;
    o.pad_id = flags & 4 ? 0 : -1;
    o.context_length = (flags & 8) || o.pad ? (o.add_special ? 2 : 1) + ctx_byte % 80 : 0;
    int32_t *ids = NULL;
    size_t n = 0;
    CHECK(tk_bpe_encode(clip, text, len, &o, &ids, &n) == QIAO_OK);
    CHECK(ids_in_range(clip, ids, n));
    /* The same ids as the whole text's, cut and padded as asked. */
    const int32_t *body = full + 1;
    size_t nbody = nfull - 2, keep = nbody, at = 0;
    if (o.context_length) {
        size_t room = (size_t)o.context_length - (o.add_special ? 2 : 0);
        if (keep > room) keep = room;
    }
    if (o.add_special) CHECK(n > at && ids[at++] == sot);
    CHECK(n >= at + keep && memcmp(ids + at, body, keep * sizeof *ids) == 0);
    at += keep;
    if (o.add_special) CHECK(n > at && ids[at++] == eot);
    if (o.pad) {
        CHECK(n == (size_t)o.context_length);
        for (; at < n; at++) CHECK(ids[at] == (o.pad_id < 0 ? eot : 0));
    }
    CHECK(at == n);
    free(ids);
    free(full);
}

/* Whatever loaded must hold together. */
static void use(const tk_bpe *bpe, const uint8_t *data, size_t size) {
    int32_t n = tk_bpe_vocab_size(bpe);
    CHECK(n > 0 && tk_bpe_token(bpe, n) == NULL && tk_bpe_token(bpe, -1) == NULL);
    for (int32_t id = 0; id < n; id++) {
        const char *t = tk_bpe_token(bpe, id);
        CHECK(t && tk_bpe_find(bpe, t, strlen(t)) == id);
    }
    static const char sample[] = "A photo of 2 cats, DON'T 你好 <|endoftext|> caf\xC3\xA9 \xF0\x9F\x99\x82";
    const char *texts[2] = {sample, (const char *)data};
    size_t lens[2] = {sizeof sample - 1, size};
    for (int k = 0; k < 2; k++) {
        int32_t *ids = NULL;
        size_t count = 0;
        qiao_status st = tk_bpe_encode(bpe, texts[k], lens[k], NULL, &ids, &count);
        CHECK(st == QIAO_OK || (st == QIAO_ERR_FORMAT && !qc_utf8_valid(texts[k], lens[k])));
        if (st == QIAO_OK) CHECK(count >= 2 && ids_in_range(bpe, ids, count));
        free(ids);
    }
}

static void fuzz_load(const char *vocab, size_t vl, const char *merges, size_t ml, const uint8_t *data, size_t size) {
    tk_bpe *bpe = NULL;
    qiao_status st = tk_bpe_load(vocab, vl, merges, ml, &bpe);
    CHECK(st == QIAO_OK || st == QIAO_ERR_FORMAT || st == QIAO_ERR_INVALID_ARGUMENT);
    CHECK((st == QIAO_OK) == (bpe != NULL));
    if (bpe) use(bpe, data, size);
    tk_bpe_free(bpe);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    const char *rest = (const char *)data + 1;
    size_t n = size - 1;
    if (data[0] == 1) {
        const char *nul = memchr(rest, '\0', n);
        size_t vl = nul ? (size_t)(nul - rest) : n;
        fuzz_load(rest, vl, nul ? nul + 1 : "", nul ? n - vl - 1 : 0, data + 1, n);
    } else if (data[0] == 2) {
        fuzz_load(small_vocab, small_vocab_len, rest, n, data + 1, n);
    } else {
        fuzz_text(data + 1, n);
    }
    return 0;
}
