/* tokenizers/clip_bpe.c - CLIP's byte-level BPE (clip_bpe.h says what it
 * matches and how).
 *
 * Symbols are vocabulary ids from the first byte on: a pair of ids maps to
 * its rank and the id of its concatenation, so no string is built while
 * encoding. The loader checks that every merge's parts and result are
 * tokens, which is what lets ids stand for OpenAI's symbol strings. */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <unicode/uchar.h>
#include <unicode/unorm2.h>
#include <unicode/ustring.h>
#include <unicode/utf16.h>

#include "tokenizers/clip_bpe.h"
#include "tokenizers/tokenizer.h"

#define EOW "</w>"
#define EOW_LEN 4

struct tk_bpe {
    char *vocab_text; /* (vocab_len + 1) the loaded texts, kept for writing them back */
    size_t vocab_len;
    char *merges_text; /* (merges_len + 1) */
    size_t merges_len;

    int32_t n_vocab;
    char *tok_buf;     /* every token, NUL-terminated, in id order */
    size_t *tok_off;   /* (n_vocab) offset of each token in tok_buf */
    uint32_t *tok_len; /* (n_vocab) */
    int32_t *str_slot; /* (str_cap) open addressing on the token bytes: id, or -1 */
    size_t str_cap;

    int32_t n_merges;
    uint64_t *pair_key;   /* (pair_cap) left << 32 | right; PAIR_EMPTY for a free slot */
    int32_t *pair_rank;   /* (pair_cap) */
    int32_t *pair_merged; /* (pair_cap) id of left + right */
    size_t pair_cap;

    int32_t byte_id[256];     /* GPT-2's character of each byte */
    int32_t byte_end_id[256]; /* the same followed by "</w>" */
    int32_t sot, eot;
};

#define PAIR_EMPTY UINT64_MAX

/* ---- hashing ---------------------------------------------------------------- */

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

static uint64_t hash_u64(uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

static size_t pow2_at_least(size_t n) {
    size_t c = 16;
    while (c < n) c *= 2;
    return c;
}

int32_t tk_bpe_find(const tk_bpe *bpe, const char *token, size_t len) {
    if (!bpe || (!token && len)) return -1;
    size_t mask = bpe->str_cap - 1;
    for (size_t i = hash_bytes(token, len) & mask;; i = (i + 1) & mask) {
        int32_t id = bpe->str_slot[i];
        if (id < 0) return -1;
        if (bpe->tok_len[id] == len && memcmp(bpe->tok_buf + bpe->tok_off[id], token, len) == 0) return id;
    }
}

/* The slot of (left, right), or -1. */
static int64_t pair_find(const tk_bpe *bpe, int32_t left, int32_t right) {
    uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    size_t mask = bpe->pair_cap - 1;
    for (size_t i = hash_u64(key) & mask;; i = (i + 1) & mask) {
        if (bpe->pair_key[i] == key) return (int64_t)i;
        if (bpe->pair_key[i] == PAIR_EMPTY) return -1;
    }
}

/* ---- GPT-2's bytes-to-unicode table ------------------------------------------ */

/* Printable Latin-1 bytes stand for themselves; the others (controls, space,
 * soft hyphen) take the code points from 256 on, in byte order, so that no
 * symbol is white space or a control character. */
static uint32_t byte_char(unsigned b) {
    if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)) return b;
    uint32_t n = 0;
    for (unsigned c = 0; c < b; c++)
        if (!((c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF))) n++;
    return 256 + n;
}

static size_t put_utf8(char *out, uint32_t c) {
    if (c < 0x80) {
        out[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        out[0] = (char)(0xC0 | (c >> 6));
        out[1] = (char)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        out[0] = (char)(0xE0 | (c >> 12));
        out[1] = (char)(0x80 | ((c >> 6) & 0x3F));
        out[2] = (char)(0x80 | (c & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (c >> 18));
    out[1] = (char)(0x80 | ((c >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((c >> 6) & 0x3F));
    out[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}

/* ---- loading ------------------------------------------------------------------ */

tk_bpe_opts tk_bpe_default_opts(void) {
    tk_bpe_opts o = {.add_special = true, .context_length = 0, .pad = false, .pad_id = -1};
    return o;
}

void tk_bpe_free(tk_bpe *bpe) {
    if (!bpe) return;
    free(bpe->vocab_text);
    free(bpe->merges_text);
    free(bpe->tok_buf);
    free(bpe->tok_off);
    free(bpe->tok_len);
    free(bpe->str_slot);
    free(bpe->pair_key);
    free(bpe->pair_rank);
    free(bpe->pair_merged);
    free(bpe);
}

static char *copy_text(const char *s, size_t n) {
    char *c = malloc(n + 1);
    if (!c) return NULL;
    if (n) memcpy(c, s, n);
    c[n] = '\0';
    return c;
}

static qiao_status load_vocab(tk_bpe *bpe) {
    cJSON *root = cJSON_ParseWithLength(bpe->vocab_text, bpe->vocab_len);
    if (!root) return qc_error(QIAO_ERR_FORMAT, "vocab.json: not valid JSON");
    qiao_status st = QIAO_OK;
    if (!cJSON_IsObject(root)) {
        st = qc_error(QIAO_ERR_FORMAT, "vocab.json: not a JSON object of token -> id");
        goto done;
    }
    size_t n = 0, bytes = 0;
    for (const cJSON *it = root->child; it; it = it->next) {
        if (n >= (size_t)TK_BPE_MAX_VOCAB) {
            st = qc_error(QIAO_ERR_FORMAT, "vocab.json: more than %d tokens", (int)TK_BPE_MAX_VOCAB);
            goto done;
        }
        n++;
        bytes += strlen(it->string) + 1;
    }
    if (n == 0) {
        st = qc_error(QIAO_ERR_FORMAT, "vocab.json: no tokens");
        goto done;
    }
    bpe->n_vocab = (int32_t)n;
    bpe->tok_buf = malloc(bytes);
    bpe->tok_off = malloc(n * sizeof *bpe->tok_off);
    bpe->tok_len = malloc(n * sizeof *bpe->tok_len);
    bpe->str_cap = pow2_at_least(2 * n);
    bpe->str_slot = malloc(bpe->str_cap * sizeof *bpe->str_slot);
    if (!bpe->tok_buf || !bpe->tok_off || !bpe->tok_len || !bpe->str_slot) {
        st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "vocab.json: out of memory for %zu tokens", n);
        goto done;
    }
    for (size_t i = 0; i < n; i++) bpe->tok_len[i] = UINT32_MAX; /* id not seen yet */
    memset(bpe->str_slot, 0xFF, bpe->str_cap * sizeof *bpe->str_slot);
    size_t at = 0;
    for (const cJSON *it = root->child; it; it = it->next) {
        const char *key = it->string;
        size_t klen = strlen(key);
        if (klen == 0) {
            st = qc_error(QIAO_ERR_FORMAT, "vocab.json: an empty token");
            goto done;
        }
        if (!qc_utf8_valid(key, klen)) {
            st = qc_error(QIAO_ERR_FORMAT, "vocab.json: a token that is not valid UTF-8");
            goto done;
        }
        double v = cJSON_IsNumber(it) ? it->valuedouble : -1.0;
        if (!(v >= 0 && v < (double)n) || v != (double)(int32_t)v) {
            st = qc_error(QIAO_ERR_FORMAT, "vocab.json: token '%.64s' has id %s; ids must be the integers 0 .. %zu",
                          key, cJSON_IsNumber(it) ? "out of range" : "that is not a number", n - 1);
            goto done;
        }
        int32_t id = (int32_t)v;
        if (bpe->tok_len[id] != UINT32_MAX) {
            st = qc_error(QIAO_ERR_FORMAT, "vocab.json: id %d given to both '%.64s' and '%.64s'", (int)id,
                          bpe->tok_buf + bpe->tok_off[id], key);
            goto done;
        }
        if (tk_bpe_find(bpe, key, klen) >= 0) {
            st = qc_error(QIAO_ERR_FORMAT, "vocab.json: token '%.64s' given twice", key);
            goto done;
        }
        memcpy(bpe->tok_buf + at, key, klen + 1);
        bpe->tok_off[id] = at;
        bpe->tok_len[id] = (uint32_t)klen;
        at += klen + 1;
        size_t mask = bpe->str_cap - 1, i = hash_bytes(key, klen) & mask;
        while (bpe->str_slot[i] >= 0) i = (i + 1) & mask;
        bpe->str_slot[i] = id;
    }
    /* n distinct ids in [0, n): every id is taken. */
done:
    cJSON_Delete(root);
    return st;
}

static bool is_blank(char c) {
    return c == ' ' || c == '\t';
}

/* Adds or, for a pair listed before, re-ranks a merge (HF's dict keeps the later rank). */
static void pair_put(tk_bpe *bpe, int32_t left, int32_t right, int32_t rank, int32_t merged) {
    uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    size_t mask = bpe->pair_cap - 1, i = hash_u64(key) & mask;
    while (bpe->pair_key[i] != PAIR_EMPTY && bpe->pair_key[i] != key) i = (i + 1) & mask;
    if (bpe->pair_key[i] == PAIR_EMPTY) bpe->n_merges++;
    bpe->pair_key[i] = key;
    bpe->pair_rank[i] = rank;
    bpe->pair_merged[i] = merged;
}

static qiao_status load_merges(tk_bpe *bpe) {
    const char *s = bpe->merges_text;
    size_t len = bpe->merges_len;
    size_t bad = qc_utf8_check(s, len);
    if (bad < len) return qc_error(QIAO_ERR_FORMAT, "merges.txt: invalid UTF-8 at byte %zu", bad);
    size_t lines = 1;
    for (size_t i = 0; i < len; i++) lines += s[i] == '\n';
    bpe->pair_cap = pow2_at_least(2 * lines);
    bpe->pair_key = malloc(bpe->pair_cap * sizeof *bpe->pair_key);
    bpe->pair_rank = malloc(bpe->pair_cap * sizeof *bpe->pair_rank);
    bpe->pair_merged = malloc(bpe->pair_cap * sizeof *bpe->pair_merged);
    if (!bpe->pair_key || !bpe->pair_rank || !bpe->pair_merged)
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "merges.txt: out of memory for %zu lines", lines);
    memset(bpe->pair_key, 0xFF, bpe->pair_cap * sizeof *bpe->pair_key);
    char *joined = NULL;
    size_t joined_cap = 0;
    qiao_status st = QIAO_OK;
    int32_t rank = 0;
    size_t line = 0;
    for (size_t pos = 0; pos < len;) {
        const char *nl = memchr(s + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - s) : len, next = nl ? end + 1 : len;
        line++;
        if (end > pos && s[end - 1] == '\r') end--;
        if (line == 1 && end - pos >= 8 && memcmp(s + pos, "#version", 8) == 0) {
            pos = next;
            continue;
        }
        /* The fields, split on runs of blanks as Python's str.split() would. */
        size_t f[3][2], nf = 0;
        for (size_t i = pos; i < end && nf < 3;) {
            while (i < end && is_blank(s[i])) i++;
            if (i == end) break;
            size_t b = i;
            while (i < end && !is_blank(s[i])) i++;
            f[nf][0] = b;
            f[nf][1] = i;
            nf++;
        }
        pos = next;
        if (nf == 0) continue;
        if (nf != 2) {
            st = qc_error(QIAO_ERR_FORMAT, "merges.txt line %zu: expected two tokens separated by a space", line);
            break;
        }
        size_t l0 = f[0][1] - f[0][0], l1 = f[1][1] - f[1][0];
        int32_t a = tk_bpe_find(bpe, s + f[0][0], l0), b = tk_bpe_find(bpe, s + f[1][0], l1);
        if (a < 0 || b < 0) {
            size_t k = a < 0 ? 0 : 1;
            st = qc_error(QIAO_ERR_FORMAT, "merges.txt line %zu: '%.*s' is not in vocab.json", line,
                          (int)(f[k][1] - f[k][0] > 64 ? 64 : f[k][1] - f[k][0]), s + f[k][0]);
            break;
        }
        if (l0 + l1 > joined_cap) {
            joined_cap = 2 * (l0 + l1);
            char *j = realloc(joined, joined_cap);
            if (!j) {
                st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "merges.txt: out of memory");
                break;
            }
            joined = j;
        }
        memcpy(joined, s + f[0][0], l0);
        memcpy(joined + l0, s + f[1][0], l1);
        int32_t m = tk_bpe_find(bpe, joined, l0 + l1);
        if (m < 0) {
            st = qc_error(QIAO_ERR_FORMAT, "merges.txt line %zu: the merged token '%.*s' is not in vocab.json", line,
                          (int)(l0 + l1 > 64 ? 64 : l0 + l1), joined);
            break;
        }
        pair_put(bpe, a, b, rank++, m);
    }
    free(joined);
    return st;
}

static qiao_status find_required(tk_bpe *bpe) {
    for (unsigned b = 0; b < 256; b++) {
        char t[4 + EOW_LEN];
        size_t n = put_utf8(t, byte_char(b));
        memcpy(t + n, EOW, EOW_LEN);
        bpe->byte_id[b] = tk_bpe_find(bpe, t, n);
        bpe->byte_end_id[b] = tk_bpe_find(bpe, t, n + EOW_LEN);
        if (bpe->byte_id[b] < 0 || bpe->byte_end_id[b] < 0)
            return qc_error(QIAO_ERR_FORMAT, "vocab.json: no token '%.*s' for byte 0x%02X (byte-level BPE needs both)",
                            (int)(n + (bpe->byte_id[b] < 0 ? 0 : EOW_LEN)), t, b);
    }
    bpe->sot = tk_bpe_find(bpe, TK_BPE_SOT, strlen(TK_BPE_SOT));
    bpe->eot = tk_bpe_find(bpe, TK_BPE_EOT, strlen(TK_BPE_EOT));
    if (bpe->sot < 0 || bpe->eot < 0)
        return qc_error(QIAO_ERR_FORMAT, "vocab.json: no token '%s'", bpe->sot < 0 ? TK_BPE_SOT : TK_BPE_EOT);
    return QIAO_OK;
}

qiao_status tk_bpe_load(const char *vocab_json, size_t vocab_len, const char *merges_txt, size_t merges_len,
                        tk_bpe **out) {
    if (!out) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "tk_bpe_load: NULL out");
    *out = NULL;
    if ((!vocab_json && vocab_len) || (!merges_txt && merges_len))
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "tk_bpe_load: NULL text with a length");
    if (vocab_len > TK_BPE_MAX_FILE || merges_len > TK_BPE_MAX_FILE)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "tk_bpe_load: %s of %zu bytes (at most %zu)",
                        vocab_len > TK_BPE_MAX_FILE ? "vocab.json" : "merges.txt",
                        vocab_len > TK_BPE_MAX_FILE ? vocab_len : merges_len, TK_BPE_MAX_FILE);
    tk_bpe *bpe = calloc(1, sizeof *bpe);
    if (!bpe) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "tk_bpe_load: out of memory");
    qiao_status st = QIAO_OK;
    bpe->vocab_text = copy_text(vocab_json, vocab_len);
    bpe->merges_text = copy_text(merges_txt, merges_len);
    bpe->vocab_len = vocab_len;
    bpe->merges_len = merges_len;
    if (!bpe->vocab_text || !bpe->merges_text)
        st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "tk_bpe_load: out of memory copying the texts");
    if (st == QIAO_OK) st = load_vocab(bpe);
    if (st == QIAO_OK) st = load_merges(bpe);
    if (st == QIAO_OK) st = find_required(bpe);
    if (st != QIAO_OK) {
        tk_bpe_free(bpe);
        return st;
    }
    *out = bpe;
    return QIAO_OK;
}

int32_t tk_bpe_vocab_size(const tk_bpe *bpe) {
    return bpe ? bpe->n_vocab : 0;
}

int32_t tk_bpe_merge_count(const tk_bpe *bpe) {
    return bpe ? bpe->n_merges : 0;
}

int32_t tk_bpe_sot_id(const tk_bpe *bpe) {
    return bpe ? bpe->sot : -1;
}

int32_t tk_bpe_eot_id(const tk_bpe *bpe) {
    return bpe ? bpe->eot : -1;
}

const char *tk_bpe_token(const tk_bpe *bpe, int32_t id) {
    if (!bpe || id < 0 || id >= bpe->n_vocab) return NULL;
    return bpe->tok_buf + bpe->tok_off[id];
}

void tk_bpe_texts(const tk_bpe *bpe, const char **vocab_json, size_t *vocab_len, const char **merges_txt,
                  size_t *merges_len) {
    if (vocab_json) *vocab_json = bpe->vocab_text;
    if (vocab_len) *vocab_len = bpe->vocab_len;
    if (merges_txt) *merges_txt = bpe->merges_text;
    if (merges_len) *merges_len = bpe->merges_len;
}

/* ---- encoding: scratch ---------------------------------------------------------- */

/* Everything one call needs; nothing of it outlives the call. */
typedef struct enc {
    const tk_bpe *bpe;
    int32_t *ids; /* the result */
    size_t n, cap;
    size_t limit; /* stop once n reaches it (SIZE_MAX: never) */

    UChar *word; /* one white-space-delimited word after cleanup (UTF-16) */
    int32_t word_n, word_cap;
    UChar *nfc, *low; /* its NFC and lowercase forms */
    int32_t nfc_cap, low_cap;
    char *bytes; /* one pattern match in UTF-8 */
    size_t bytes_cap;

    int32_t *sym;    /* (sym_cap) BPE symbols of one match: id, or -1 once merged away */
    int32_t *next;   /* (sym_cap) the next live symbol, or -1 */
    int32_t *prev;   /* (sym_cap) */
    uint64_t *heap;  /* (3 * sym_cap) rank << 32 | position of the pair's left symbol */
    uint64_t *fresh; /* (3 * sym_cap) pairs made during the current rank's pass */
    size_t sym_cap;  /* heap and fresh hold 3 * sym_cap */

    const UNormalizer2 *nfc_norm;
} enc;

static qiao_status oom(void) {
    return qc_error(QIAO_ERR_OUT_OF_MEMORY, "clip bpe: out of memory encoding");
}

static qiao_status grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return QIAO_OK;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q) return oom();
    *p = q;
    *cap = c;
    return QIAO_OK;
}

static qiao_status grow_u16(UChar **p, int32_t *cap, int32_t need) {
    size_t c = (size_t)*cap;
    qiao_status st = grow((void **)p, &c, (size_t)need, sizeof(UChar));
    if (st == QIAO_OK) *cap = c > INT32_MAX ? INT32_MAX : (int32_t)c;
    return st;
}

static qiao_status push_id(enc *e, int32_t id) {
    qiao_status st = grow((void **)&e->ids, &e->cap, e->n + 1, sizeof *e->ids);
    if (st != QIAO_OK) return st;
    e->ids[e->n++] = id;
    return QIAO_OK;
}

static void enc_free(enc *e) {
    free(e->word);
    free(e->nfc);
    free(e->low);
    free(e->bytes);
    free(e->sym);
    free(e->next);
    free(e->prev);
    free(e->heap);
    free(e->fresh);
}

/* ---- encoding: BPE on one match ------------------------------------------------- */

static void heap_push(uint64_t *h, size_t *n, uint64_t v) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (h[p] <= v) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = v;
}

static uint64_t heap_pop(uint64_t *h, size_t *n) {
    uint64_t top = h[0], v = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && h[c + 1] < h[c]) c++;
        if (v <= h[c]) break;
        h[i] = h[c];
        i = c;
    }
    if (*n) h[i] = v;
    return top;
}

/* Room for a match of n bytes: n symbols, and at most n - 1 pairs at the
 * start plus two per merge after. */
static qiao_status word_scratch(enc *e, size_t n) {
    if (n <= e->sym_cap) return QIAO_OK;
    size_t c = e->sym_cap ? e->sym_cap : 64;
    while (c < n) c *= 2;
    int32_t *sym = realloc(e->sym, c * sizeof *sym);
    if (sym) e->sym = sym;
    int32_t *next = realloc(e->next, c * sizeof *next);
    if (next) e->next = next;
    int32_t *prev = realloc(e->prev, c * sizeof *prev);
    if (prev) e->prev = prev;
    uint64_t *heap = realloc(e->heap, 3 * c * sizeof *heap);
    if (heap) e->heap = heap;
    uint64_t *fresh = realloc(e->fresh, 3 * c * sizeof *fresh);
    if (fresh) e->fresh = fresh;
    if (!sym || !next || !prev || !heap || !fresh) return oom();
    e->sym_cap = c;
    return QIAO_OK;
}

/* The pair starting at symbol i as a heap entry, or UINT64_MAX if it is no merge. */
static uint64_t pair_entry(const enc *e, int32_t i) {
    int32_t j = e->next[i];
    if (j < 0) return UINT64_MAX;
    int64_t slot = pair_find(e->bpe, e->sym[i], e->sym[j]);
    if (slot < 0) return UINT64_MAX;
    return (uint64_t)(uint32_t)e->bpe->pair_rank[slot] << 32 | (uint32_t)i;
}

/* Merges the bytes of one match and appends the ids. OpenAI's loop takes the
 * best-ranked pair and merges all its occurrences left to right before it
 * looks again; here each rank's pass pops that rank's entries in position
 * order and holds the pairs it creates until the pass ends, which gives the
 * same words for any merges file (with trained merges a new pair never
 * outranks the one that made it, so the holding changes nothing there). */
static qiao_status bpe_word(enc *e, const unsigned char *b, size_t n) {
    const tk_bpe *bpe = e->bpe;
    if (n == 1) return push_id(e, bpe->byte_end_id[b[0]]);
    qiao_status st = word_scratch(e, n);
    if (st != QIAO_OK) return st;
    for (size_t i = 0; i < n; i++) {
        e->sym[i] = i + 1 < n ? bpe->byte_id[b[i]] : bpe->byte_end_id[b[i]];
        e->next[i] = i + 1 < n ? (int32_t)(i + 1) : -1;
        e->prev[i] = (int32_t)i - 1;
    }
    size_t hn = 0;
    for (size_t i = 0; i + 1 < n; i++) {
        uint64_t v = pair_entry(e, (int32_t)i);
        if (v != UINT64_MAX) heap_push(e->heap, &hn, v);
    }
    while (hn > 0) {
        uint32_t rank = (uint32_t)(e->heap[0] >> 32);
        size_t fn = 0;
        while (hn > 0 && (uint32_t)(e->heap[0] >> 32) == rank) {
            int32_t i = (int32_t)(uint32_t)heap_pop(e->heap, &hn);
            /* Stale when symbol i was merged into its left neighbour or now
             * starts another pair; a rank names one pair. */
            if (e->sym[i] < 0) continue;
            int32_t j = e->next[i];
            if (j < 0) continue;
            int64_t slot = pair_find(bpe, e->sym[i], e->sym[j]);
            if (slot < 0 || (uint32_t)bpe->pair_rank[slot] != rank) continue;
            e->sym[i] = bpe->pair_merged[slot];
            e->sym[j] = -1;
            e->next[i] = e->next[j];
            if (e->next[j] >= 0) e->prev[e->next[j]] = i;
            uint64_t v;
            if (e->prev[i] >= 0 && (v = pair_entry(e, e->prev[i])) != UINT64_MAX) e->fresh[fn++] = v;
            if ((v = pair_entry(e, i)) != UINT64_MAX) e->fresh[fn++] = v;
        }
        for (size_t k = 0; k < fn; k++) heap_push(e->heap, &hn, e->fresh[k]);
    }
    for (int32_t i = 0; i >= 0; i = e->next[i])
        if ((st = push_id(e, e->sym[i])) != QIAO_OK) return st;
    return QIAO_OK;
}

/* ---- encoding: CLIP's pattern on one word ----------------------------------------- */

static bool is_letter(UChar32 c) {
    return (U_GET_GC_MASK(c) & U_GC_L_MASK) != 0;
}

static bool is_number(UChar32 c) {
    return (U_GET_GC_MASK(c) & U_GC_N_MASK) != 0;
}

/* Python regex with IGNORECASE tests a class on a character's case
 * equivalents too: a character that is no letter or number itself but whose
 * folding is one fails both [\p{L}] and the negated class. */
static bool is_other(UChar32 c) {
    if (is_letter(c) || is_number(c)) return false;
    UChar32 f = u_foldCase(c, U_FOLD_CASE_DEFAULT);
    return !(is_letter(f) || is_number(f));
}

/* Case-insensitive match of ASCII `lit` at w[i ..); returns the code units matched, 0 if none. */
static int32_t match_literal(const UChar *w, int32_t n, int32_t i, const char *lit) {
    int32_t j = i;
    for (const char *p = lit; *p; p++) {
        if (j >= n) return 0;
        UChar32 c;
        U16_NEXT(w, j, n, c);
        if (c != (unsigned char)*p && u_foldCase(c, U_FOLD_CASE_DEFAULT) != (unsigned char)*p) return 0;
    }
    return j - i;
}

static qiao_status emit_match(enc *e, const UChar *w, int32_t b, int32_t end) {
    qiao_status st = grow((void **)&e->bytes, &e->bytes_cap, (size_t)(end - b) * 3, 1);
    if (st != QIAO_OK) return st;
    size_t n = 0;
    for (int32_t i = b; i < end;) {
        UChar32 c;
        U16_NEXT(w, i, end, c);
        n += put_utf8(e->bytes + n, (uint32_t)c);
    }
    const tk_bpe *bpe = e->bpe;
    /* HF's BPE cache returns the special tokens unchanged. */
    if (n == bpe->tok_len[bpe->sot] && memcmp(e->bytes, TK_BPE_SOT, n) == 0) return push_id(e, bpe->sot);
    if (n == bpe->tok_len[bpe->eot] && memcmp(e->bytes, TK_BPE_EOT, n) == 0) return push_id(e, bpe->eot);
    return bpe_word(e, (const unsigned char *)e->bytes, n);
}

static const char *const contractions[] = {"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"};

static qiao_status split_word(enc *e, const UChar *w, int32_t n) {
    qiao_status st;
    for (int32_t i = 0; i < n && e->n < e->limit;) {
        int32_t m = match_literal(w, n, i, TK_BPE_SOT);
        if (!m) m = match_literal(w, n, i, TK_BPE_EOT);
        for (size_t k = 0; !m && w[i] == '\'' && k < sizeof contractions / sizeof *contractions; k++)
            m = match_literal(w, n, i, contractions[k]);
        if (m) {
            if ((st = emit_match(e, w, i, i + m)) != QIAO_OK) return st;
            i += m;
            continue;
        }
        UChar32 c;
        int32_t j = i;
        U16_NEXT(w, j, n, c);
        bool (*cls)(UChar32) = is_letter(c) ? is_letter : is_other(c) ? is_other : NULL;
        if (cls) {
            for (int32_t k = j; k < n;) {
                UChar32 d;
                U16_NEXT(w, k, n, d);
                if (!cls(d)) break;
                j = k;
            }
        } else if (!is_number(c)) {
            i = j; /* matches no branch: regex's findall steps over it */
            continue;
        }
        if ((st = emit_match(e, w, i, j)) != QIAO_OK) return st;
        i = j;
    }
    return QIAO_OK;
}

/* NFC, then lowercase, then the pattern. Each word is one of the tokens
 * whitespace_tokenize gives in HF's BasicTokenizer; NFC never composes
 * across the white space or ideograph that ends a word, so normalizing word
 * by word equals normalizing the text. */
static qiao_status flush_word(enc *e) {
    if (e->word_n == 0) return QIAO_OK;
    int32_t n = e->word_n;
    e->word_n = 0;
    qiao_status st;
    UErrorCode err = U_ZERO_ERROR;
    const UChar *src = e->word;
    if (!unorm2_isNormalized(e->nfc_norm, e->word, n, &err)) {
        if (U_FAILURE(err)) return qc_error(QIAO_ERR_INTERNAL, "clip bpe: ICU NFC check: %s", u_errorName(err));
        int32_t len;
        for (;;) {
            err = U_ZERO_ERROR;
            len = unorm2_normalize(e->nfc_norm, e->word, n, e->nfc, e->nfc_cap, &err);
            if (err != U_BUFFER_OVERFLOW_ERROR) break;
            if ((st = grow_u16(&e->nfc, &e->nfc_cap, len + 1)) != QIAO_OK) return st;
        }
        if (U_FAILURE(err)) return qc_error(QIAO_ERR_INTERNAL, "clip bpe: ICU NFC: %s", u_errorName(err));
        n = len;
        src = e->nfc;
    } else if (U_FAILURE(err)) {
        return qc_error(QIAO_ERR_INTERNAL, "clip bpe: ICU NFC check: %s", u_errorName(err));
    }
    int32_t len;
    for (;;) {
        err = U_ZERO_ERROR;
        len = u_strToLower(e->low, e->low_cap, src, n, "", &err);
        if (err != U_BUFFER_OVERFLOW_ERROR) break;
        if ((st = grow_u16(&e->low, &e->low_cap, len + 1)) != QIAO_OK) return st;
    }
    if (U_FAILURE(err)) return qc_error(QIAO_ERR_INTERNAL, "clip bpe: ICU lowercase: %s", u_errorName(err));
    return split_word(e, e->low, len);
}

/* ---- encoding: HF's BasicTokenizer cleanup ---------------------------------------- */

/* BERT's "Chinese character" blocks, as HF's BasicTokenizer lists them. */
static bool is_cjk(UChar32 c) {
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
           (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

/* Dropped by _clean_text: NUL, U+FFFD and category C* but tab, LF and CR. */
static bool is_dropped(UChar32 c) {
    if (c == '\t' || c == '\n' || c == '\r') return false;
    return c == 0 || c == 0xFFFD || (U_GET_GC_MASK(c) & U_GC_C_MASK) != 0;
}

/* A word boundary: _clean_text's white space (tab, LF, CR, Zs), then what
 * Python's str.split() splits on (bidi class WS, B or S, or Zs), which adds
 * the line and paragraph separators. */
static bool is_space(UChar32 c) {
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || u_charType(c) == U_SPACE_SEPARATOR) return true;
    UCharDirection d = u_charDirection(c);
    return d == U_WHITE_SPACE_NEUTRAL || d == U_BLOCK_SEPARATOR || d == U_SEGMENT_SEPARATOR;
}

static qiao_status encode_piece(enc *e, const unsigned char *s, size_t len) {
    qiao_status st;
    for (size_t pos = 0; pos < len && e->n < e->limit;) {
        int32_t c;
        pos += tk_utf8_decode(s + pos, len - pos, &c); /* the caller checked the UTF-8 */
        if (is_dropped(c)) continue;
        bool cjk = is_cjk(c);
        if (cjk || is_space(c)) {
            if ((st = flush_word(e)) != QIAO_OK) return st;
            if (!cjk) continue;
        }
        if ((st = grow_u16(&e->word, &e->word_cap, e->word_n + 2)) != QIAO_OK) return st;
        U16_APPEND_UNSAFE(e->word, e->word_n, c);
        if (cjk && (st = flush_word(e)) != QIAO_OK) return st;
    }
    if (e->n >= e->limit) { /* the rest would be cut */
        e->word_n = 0;
        return QIAO_OK;
    }
    return flush_word(e);
}

/* ---- encoding ---------------------------------------------------------------------- */

/* The next exact special token at or after `from`: its offset (len if none), *len_out and *id_out. */
static size_t find_special(const tk_bpe *bpe, const char *s, size_t len, size_t from, size_t *len_out,
                           int32_t *id_out) {
    for (size_t i = from; i < len; i++) {
        const char *lt = memchr(s + i, '<', len - i);
        if (!lt) break;
        i = (size_t)(lt - s);
        if (len - i >= strlen(TK_BPE_SOT) && memcmp(lt, TK_BPE_SOT, strlen(TK_BPE_SOT)) == 0) {
            *len_out = strlen(TK_BPE_SOT);
            *id_out = bpe->sot;
            return i;
        }
        if (len - i >= strlen(TK_BPE_EOT) && memcmp(lt, TK_BPE_EOT, strlen(TK_BPE_EOT)) == 0) {
            *len_out = strlen(TK_BPE_EOT);
            *id_out = bpe->eot;
            return i;
        }
    }
    *len_out = 0;
    *id_out = -1;
    return len;
}

qiao_status tk_bpe_encode(const tk_bpe *bpe, const char *text, size_t len, const tk_bpe_opts *opts, int32_t **ids,
                          size_t *count) {
    if (ids) *ids = NULL;
    if (count) *count = 0;
    if (!bpe || !ids || !count) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "tk_bpe_encode: NULL argument");
    if (!text && len) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "tk_bpe_encode: NULL text with length %zu", len);
    if (!text) text = "";
    if (len > TK_BPE_MAX_TEXT)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "tk_bpe_encode: text of %zu bytes (at most %zu)", len,
                        TK_BPE_MAX_TEXT);
    tk_bpe_opts o = opts ? *opts : tk_bpe_default_opts();
    int64_t min_ctx = o.add_special ? 2 : 1;
    if (o.context_length < 0 || (o.context_length > 0 && o.context_length < min_ctx) ||
        o.context_length > (int64_t)TK_BPE_MAX_TEXT + 2)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "tk_bpe_encode: context length %lld (0 for none, else at least %d)",
                        (long long)o.context_length, (int)min_ctx);
    if (o.pad && o.context_length == 0)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "tk_bpe_encode: padding needs a context length");
    int32_t pad_id = o.pad_id < 0 ? bpe->eot : o.pad_id;
    if (o.pad && pad_id >= bpe->n_vocab)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "tk_bpe_encode: pad id %d out of range (%d tokens)", (int)pad_id,
                        (int)bpe->n_vocab);
    size_t bad = qc_utf8_check(text, len);
    if (bad < len)
        return qc_error(QIAO_ERR_FORMAT, "tk_bpe_encode: invalid UTF-8 at byte %zu (0x%02X)", bad,
                        (unsigned)(unsigned char)text[bad]);

    enc e = {.bpe = bpe, .limit = SIZE_MAX};
    UErrorCode err = U_ZERO_ERROR;
    e.nfc_norm = unorm2_getNFCInstance(&err);
    if (U_FAILURE(err)) return qc_error(QIAO_ERR_INTERNAL, "ICU NFC data unavailable: %s", u_errorName(err));
    /* Room for <|endoftext|> after the cut. */
    if (o.context_length > 0) e.limit = (size_t)o.context_length - (o.add_special ? 1 : 0);
    qiao_status st = QIAO_OK;
    if (o.add_special) st = push_id(&e, bpe->sot);
    for (size_t pos = 0; st == QIAO_OK && pos <= len && e.n < e.limit;) {
        size_t slen;
        int32_t sid;
        size_t at = find_special(bpe, text, len, pos, &slen, &sid);
        st = encode_piece(&e, (const unsigned char *)text + pos, at - pos);
        if (st == QIAO_OK && sid >= 0 && e.n < e.limit) st = push_id(&e, sid);
        if (at >= len) break;
        pos = at + slen;
    }
    if (st == QIAO_OK) {
        if (e.n > e.limit) e.n = e.limit;
        if (o.add_special) st = push_id(&e, bpe->eot);
        while (st == QIAO_OK && o.pad && e.n < (size_t)o.context_length) st = push_id(&e, pad_id);
        if (st == QIAO_OK && !e.ids) st = grow((void **)&e.ids, &e.cap, 1, sizeof *e.ids);
    }
    enc_free(&e);
    if (st != QIAO_OK) {
        free(e.ids);
        return st;
    }
    *ids = e.ids;
    *count = e.n;
    return QIAO_OK;
}
