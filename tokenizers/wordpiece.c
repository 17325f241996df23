/* tokenizers/wordpiece.c - BERT's WordPiece tokenizer, step for step as
 * transformers' slow BertTokenizer (wordpiece.h lists the steps).
 *
 * The text is carried as code points, each with the byte range of the
 * original text it came from. Lowercasing and decomposition give every
 * output code point the range of the one it came from; composition gives
 * the union of the ranges it merged. Ranges therefore never decrease along
 * the text, and a piece's offsets are its first and last code points'.
 *
 * Normalization runs per segment (a code point with a boundary before it
 * starts one), as tokenizers/normalize.c does: the result is the whole
 * text's, because NFC and NFD never look across such a boundary, and it is
 * what gives the ranges. */
#include <stdlib.h>
#include <string.h>

#include <unicode/uchar.h>
#include <unicode/unorm2.h>
#include <unicode/ustring.h>
#include <unicode/utf16.h>

#include "tokenizers/tokenizer.h"
#include "tokenizers/wordpiece.h"

/* A segment longer than this is cut even without a boundary: canonical
 * reordering of a long run of combining marks is quadratic. */
#define SEG_MAX 256

static const char *const default_special[TK_WP_N_SPECIAL] = {"[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"};

struct tk_wp {
    char *buf;           /* the vocabulary, every line NUL-terminated in place */
    uint32_t *off, *len; /* (n): line i is buf[off[i] .. off[i] + len[i]) */
    int32_t n;
    uint32_t *slots; /* (cap): id + 1 of the token hashed there, 0 = empty */
    size_t cap;      /* power of two */
    int32_t max_cps; /* the longest token in code points: no longer piece can match */
    bool lower, strip, chinese;
    int32_t max_chars;
    char *special[TK_WP_N_SPECIAL];
    size_t special_len[TK_WP_N_SPECIAL];
    int32_t *special_cps[TK_WP_N_SPECIAL]; /* (special_ncps[k]) */
    size_t special_ncps[TK_WP_N_SPECIAL];
    int32_t special_id[TK_WP_N_SPECIAL];
};

/* ---- The vocabulary ------------------------------------------------------ */

static uint64_t fnv1a(uint64_t h, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

#define FNV_START 0xcbf29ce484222325ULL

/* The slot holding ("##" if cont) + s[0 .. n), whose hash is h, or the
 * empty slot where it would go. */
static size_t find_slot_hashed(const tk_wp *wp, uint64_t h, bool cont, const char *s, size_t n) {
    size_t mask = wp->cap - 1, i = (size_t)h & mask;
    size_t want = n + (cont ? 2 : 0);
    for (; wp->slots[i]; i = (i + 1) & mask) {
        uint32_t id = wp->slots[i] - 1;
        if (wp->len[id] != want) continue;
        const char *t = wp->buf + wp->off[id];
        if (cont) {
            if (t[0] != '#' || t[1] != '#') continue;
            t += 2;
        }
        if (memcmp(t, s, n) == 0) return i;
    }
    return i;
}

static uint64_t token_hash(bool cont, const char *s, size_t n) {
    uint64_t h = FNV_START;
    if (cont) h = fnv1a(h, "##", 2);
    return fnv1a(h, s, n);
}

static size_t find_slot(const tk_wp *wp, bool cont, const char *s, size_t n) {
    return find_slot_hashed(wp, token_hash(cont, s, n), cont, s, n);
}

static int32_t lookup(const tk_wp *wp, bool cont, const char *s, size_t n) {
    size_t i = find_slot(wp, cont, s, n);
    return wp->slots[i] ? (int32_t)(wp->slots[i] - 1) : -1;
}

tk_wp_options tk_wp_default_options(void) {
    tk_wp_options o;
    memset(&o, 0, sizeof o);
    o.do_lower_case = true;
    o.strip_accents = TK_WP_ACCENTS_AUTO;
    o.tokenize_chinese_chars = true;
    o.max_input_chars_per_word = 100;
    return o;
}

void tk_wp_free(tk_wp *wp) {
    if (!wp) return;
    free(wp->buf);
    free(wp->off);
    free(wp->len);
    free(wp->slots);
    for (int k = 0; k < TK_WP_N_SPECIAL; k++) {
        free(wp->special[k]);
        free(wp->special_cps[k]);
    }
    free(wp);
}

static qiao_status set_special(tk_wp *wp, int k, const char *s) {
    static const char *const names[TK_WP_N_SPECIAL] = {"unk_token", "cls_token", "sep_token", "pad_token",
                                                       "mask_token"};
    if (!s) s = default_special[k];
    size_t n = strlen(s);
    if (n == 0) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "wordpiece: %s is empty", names[k]);
    if (!qc_utf8_valid(s, n)) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "wordpiece: %s is not UTF-8", names[k]);
    wp->special[k] = malloc(n + 1);
    wp->special_cps[k] = malloc(n * sizeof(int32_t));
    if (!wp->special[k] || !wp->special_cps[k])
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "wordpiece: out of memory loading the vocabulary");
    memcpy(wp->special[k], s, n + 1);
    wp->special_len[k] = n;
    size_t m = 0;
    for (size_t p = 0; p < n;) {
        int32_t cp;
        p += tk_utf8_decode((const unsigned char *)s + p, n - p, &cp);
        wp->special_cps[k][m++] = cp;
    }
    wp->special_ncps[k] = m;
    wp->special_id[k] = lookup(wp, false, s, n);
    return QIAO_OK;
}

/* Line number (from 1) of byte `at`, for messages. */
static size_t line_of(const char *s, size_t at) {
    size_t line = 1;
    for (size_t i = 0; i < at; i++)
        if (s[i] == '\n' || (s[i] == '\r' && s[i + 1] != '\n')) line++;
    return line;
}

qiao_status tk_wp_load(const char *vocab, size_t len, const tk_wp_options *opts, tk_wp **out) {
    if (!out) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "tk_wp_load: NULL out");
    *out = NULL;
    if (!vocab && len) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "tk_wp_load: NULL vocabulary with length %zu", len);
    tk_wp_options o = opts ? *opts : tk_wp_default_options();
    if (o.max_input_chars_per_word < 1 || o.max_input_chars_per_word > TK_WP_MAX_WORD_CHARS)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "wordpiece: max_input_chars_per_word %d is outside 1..%d",
                        (int)o.max_input_chars_per_word, TK_WP_MAX_WORD_CHARS);
    if (o.strip_accents < TK_WP_ACCENTS_AUTO || o.strip_accents > TK_WP_ACCENTS_STRIP)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "wordpiece: strip_accents %d is not a TK_WP_ACCENTS_ value",
                        o.strip_accents);
    if (len > TK_WP_MAX_VOCAB_BYTES)
        return qc_error(QIAO_ERR_TOO_LARGE, "vocab: %zu bytes (at most %zu)", len, TK_WP_MAX_VOCAB_BYTES);
    size_t bad = qc_utf8_check(vocab, len);
    if (bad != len)
        return qc_error(QIAO_ERR_FORMAT, "vocab: invalid UTF-8 at byte %zu (line %zu)", bad, line_of(vocab, bad));
    /* Python's universal newlines: "\r\n", "\r" and "\n" each end a line. */
    size_t lines = 0;
    for (size_t i = 0; i < len; i++) {
        if (vocab[i] == '\r' && i + 1 < len && vocab[i + 1] == '\n') i++;
        if (vocab[i] == '\n' || vocab[i] == '\r') lines++;
    }
    if (len > 0 && vocab[len - 1] != '\n' && vocab[len - 1] != '\r') lines++;
    if (lines == 0) return qc_error(QIAO_ERR_FORMAT, "vocab: empty (no token)");
    if (lines > (size_t)TK_WP_MAX_VOCAB_TOKENS)
        return qc_error(QIAO_ERR_TOO_LARGE, "vocab: %zu lines (at most %d)", lines, (int)TK_WP_MAX_VOCAB_TOKENS);

    tk_wp *wp = calloc(1, sizeof *wp);
    if (!wp) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "wordpiece: out of memory loading the vocabulary");
    wp->n = (int32_t)lines;
    wp->lower = o.do_lower_case;
    wp->strip = o.strip_accents == TK_WP_ACCENTS_AUTO ? o.do_lower_case : o.strip_accents == TK_WP_ACCENTS_STRIP;
    wp->chinese = o.tokenize_chinese_chars;
    wp->max_chars = o.max_input_chars_per_word;
    wp->cap = 16;
    while (wp->cap < 2 * lines) wp->cap *= 2;
    wp->buf = malloc(len + 1);
    wp->off = malloc(lines * sizeof(uint32_t));
    wp->len = malloc(lines * sizeof(uint32_t));
    wp->slots = calloc(wp->cap, sizeof(uint32_t));
    qiao_status st;
    if (!wp->buf || !wp->off || !wp->len || !wp->slots) {
        st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "wordpiece: out of memory loading the vocabulary");
        goto fail;
    }
    if (len) memcpy(wp->buf, vocab, len);
    wp->buf[len] = '\0';
    size_t k = 0, start = 0;
    for (size_t i = 0; i <= len && k < lines; i++) {
        bool end = i == len || wp->buf[i] == '\n' || wp->buf[i] == '\r';
        if (!end) continue;
        size_t next = i + 1;
        if (i < len && wp->buf[i] == '\r' && i + 1 < len && wp->buf[i + 1] == '\n') next = i + 2;
        wp->buf[i] = '\0';
        wp->off[k] = (uint32_t)start;
        wp->len[k] = (uint32_t)(i - start);
        int32_t cps = 0;
        for (size_t j = start; j < i; j++) cps += ((unsigned char)wp->buf[j] & 0xC0) != 0x80;
        if (cps > wp->max_cps) wp->max_cps = cps;
        k++;
        start = next;
        i = next - 1;
    }
    /* A token on several lines keeps its last line, as a Python dict does. */
    for (int32_t id = 0; id < wp->n; id++) {
        size_t slot = find_slot(wp, false, wp->buf + wp->off[id], wp->len[id]);
        wp->slots[slot] = (uint32_t)id + 1;
    }
    for (int s = 0; s < TK_WP_N_SPECIAL; s++) {
        const char *str = s == TK_WP_UNK   ? o.unk_token
                          : s == TK_WP_CLS ? o.cls_token
                          : s == TK_WP_SEP ? o.sep_token
                          : s == TK_WP_PAD ? o.pad_token
                                           : o.mask_token;
        if ((st = set_special(wp, s, str)) != QIAO_OK) goto fail;
    }
    if (wp->special_id[TK_WP_UNK] < 0) {
        st = qc_error(QIAO_ERR_FORMAT, "vocab: no unknown token '%s' among its %d lines", wp->special[TK_WP_UNK],
                      (int)wp->n);
        goto fail;
    }
    *out = wp;
    return QIAO_OK;
fail:
    tk_wp_free(wp);
    return st;
}

qiao_status tk_wp_load_file(const char *path, const tk_wp_options *opts, tk_wp **out) {
    if (!out) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "tk_wp_load_file: NULL out");
    *out = NULL;
    if (!path) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "tk_wp_load_file: NULL path");
    uint8_t *data;
    size_t size;
    qiao_status st = qc_read_file(path, TK_WP_MAX_VOCAB_BYTES, &data, &size);
    if (st != QIAO_OK) return st;
    st = tk_wp_load((const char *)data, size, opts, out);
    free(data);
    return st;
}

int32_t tk_wp_vocab_size(const tk_wp *wp) {
    return wp ? wp->n : 0;
}

int32_t tk_wp_special_id(const tk_wp *wp, tk_wp_special which) {
    if (!wp || (int)which < 0 || which >= TK_WP_N_SPECIAL) return -1;
    return wp->special_id[which];
}

int32_t tk_wp_token_id(const tk_wp *wp, const char *token, size_t len) {
    if (!wp || (!token && len)) return -1;
    return lookup(wp, false, token ? token : "", len);
}

const char *tk_wp_token(const tk_wp *wp, int32_t id, size_t *len) {
    if (!wp || id < 0 || id >= wp->n) return NULL;
    if (len) *len = wp->len[id];
    return wp->buf + wp->off[id];
}

/* ---- Character classes (transformers' tokenization_utils.py) ------------- */

/* _is_control: every general category C* but tab, LF and CR. */
static bool is_control(int32_t c) {
    if (c == '\t' || c == '\n' || c == '\r') return false;
    if (c < 0x80) return c < 0x20 || c == 0x7F;
    int8_t t = u_charType(c);
    return t == U_CONTROL_CHAR || t == U_FORMAT_CHAR || t == U_SURROGATE || t == U_PRIVATE_USE_CHAR ||
           t == U_UNASSIGNED;
}

/* _is_whitespace: space, tab, LF, CR and category Zs. */
static bool is_space(int32_t c) {
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') return true;
    return c >= 0x80 && u_charType(c) == U_SPACE_SEPARATOR;
}

/* _is_punctuation: every ASCII character that is not a letter, a digit or
 * a space or control, and category P*. */
static bool is_punct(int32_t c) {
    if (c < 0x80) return (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126);
    int8_t t = u_charType(c);
    return t == U_CONNECTOR_PUNCTUATION || t == U_DASH_PUNCTUATION || t == U_START_PUNCTUATION ||
           t == U_END_PUNCTUATION || t == U_INITIAL_PUNCTUATION || t == U_FINAL_PUNCTUATION || t == U_OTHER_PUNCTUATION;
}

/* BasicTokenizer._is_chinese_char: BERT's CJK ideograph blocks, exactly
 * (not the Ideographic property: no kana, hangul or CJK punctuation). */
static bool is_cjk(int32_t c) {
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
           (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

/* ---- Encoding ------------------------------------------------------------ */

typedef struct wp_char {
    int32_t cp;
    int32_t b, e; /* bytes [b, e) of the original text */
} wp_char;

typedef struct wp_vec {
    wp_char *v;
    size_t n, cap;
} wp_vec;

typedef struct wp_piece {
    int32_t id, b, e;
} wp_piece;

typedef struct enc {
    const tk_wp *wp;
    const UNormalizer2 *nfc, *nfd;
    wp_vec text;      /* the text after lowercasing */
    wp_vec run, a, b; /* one word and its transformations */
    UChar *u16;       /* a normalized segment */
    int32_t u16cap;
    char *wbytes;     /* (4 * max_chars) a piece's word as UTF-8 */
    size_t *wpos;     /* (max_chars + 1) byte offset of each code point in wbytes */
    uint64_t *whash;  /* (max_chars + 1) hash of the piece from the current start to each code point */
    wp_piece *pieces; /* (max_chars) */
    tk_wp_encoding *out;
    size_t cap, limit;
    bool full; /* limit reached: nothing more is read */
} enc;

static qiao_status oom(void) {
    return qc_error(QIAO_ERR_OUT_OF_MEMORY, "wordpiece: out of memory encoding");
}

static qiao_status vec_push(wp_vec *a, int32_t cp, int32_t b, int32_t e) {
    if (a->n == a->cap) {
        size_t nc = a->cap ? a->cap * 2 : 64;
        wp_char *v = realloc(a->v, nc * sizeof *v);
        if (!v) return oom();
        a->v = v;
        a->cap = nc;
    }
    a->v[a->n++] = (wp_char){cp, b, e};
    return QIAO_OK;
}

static qiao_status emit(enc *en, int32_t id, int32_t b, int32_t e) {
    tk_wp_encoding *o = en->out;
    if (o->count >= en->limit) {
        en->full = true;
        return QIAO_OK;
    }
    if (o->count == en->cap) {
        size_t nc = en->cap ? en->cap * 2 : 64;
        int32_t *ids = realloc(o->ids, nc * sizeof *ids);
        if (!ids) return oom();
        o->ids = ids;
        int64_t *offs = realloc(o->offsets, nc * 2 * sizeof *offs);
        if (!offs) return oom();
        o->offsets = offs;
        en->cap = nc;
    }
    o->ids[o->count] = id;
    o->offsets[2 * o->count] = b;
    o->offsets[2 * o->count + 1] = e;
    o->count++;
    return QIAO_OK;
}

/* Python's str.lower() of one character: ICU's full mapping in the root
 * locale (U+0130 gives two code points). Returns how many went to out. */
static int lower_cp(int32_t c, int32_t out[8]) {
    if (c < 0x80) {
        out[0] = c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
        return 1;
    }
    UChar src[2], dst[16];
    int32_t sn = 0;
    U16_APPEND_UNSAFE(src, sn, c);
    UErrorCode e = U_ZERO_ERROR;
    int32_t dn = u_strToLower(dst, 16, src, sn, "", &e);
    if (U_FAILURE(e) || dn > 16) return -1;
    int n = 0;
    for (int32_t i = 0; i < dn && n < 8;) {
        UChar32 u;
        U16_NEXT(dst, i, dn, u);
        out[n++] = u;
    }
    return n;
}

static qiao_status lower_into(const wp_char *c, wp_vec *dst) {
    int32_t l[8];
    int k = lower_cp(c->cp, l);
    if (k < 0) return qc_error(QIAO_ERR_INTERNAL, "wordpiece: ICU lowercasing U+%04X failed", (unsigned)c->cp);
    for (int j = 0; j < k; j++) {
        qiao_status st = vec_push(dst, l[j], c->b, c->e);
        if (st != QIAO_OK) return st;
    }
    return QIAO_OK;
}

/* Normalizes in[s .. t) as one segment into out. */
static qiao_status norm_segment(enc *en, const UNormalizer2 *nz, const wp_char *in, size_t s, size_t t, wp_vec *out) {
    if (t - s == 1 && (in[s].cp < 0x80 || unorm2_isInert(nz, in[s].cp)))
        return vec_push(out, in[s].cp, in[s].b, in[s].e);
    UChar src[2 * SEG_MAX];
    int32_t sn = 0;
    for (size_t i = s; i < t; i++) U16_APPEND_UNSAFE(src, sn, in[i].cp);
    for (;;) {
        UErrorCode e = U_ZERO_ERROR;
        int32_t dn = unorm2_normalize(nz, src, sn, en->u16, en->u16cap, &e);
        if (e == U_BUFFER_OVERFLOW_ERROR && dn > en->u16cap) {
            UChar *u = realloc(en->u16, (size_t)dn * sizeof(UChar));
            if (!u) return oom();
            en->u16 = u;
            en->u16cap = dn;
            continue;
        }
        if (U_FAILURE(e)) return qc_error(QIAO_ERR_INTERNAL, "wordpiece: ICU normalization failed: %s", u_errorName(e));
        for (int32_t i = 0; i < dn;) {
            UChar32 u;
            U16_NEXT(en->u16, i, dn, u);
            qiao_status st = vec_push(out, u, in[s].b, in[t - 1].e);
            if (st != QIAO_OK) return st;
        }
        return QIAO_OK;
    }
}

static qiao_status normalize(enc *en, const UNormalizer2 *nz, const wp_vec *in, wp_vec *out) {
    out->n = 0;
    bool ascii = true;
    for (size_t i = 0; i < in->n && ascii; i++) ascii = in->v[i].cp < 0x80;
    if (ascii) {
        for (size_t i = 0; i < in->n; i++) {
            qiao_status st = vec_push(out, in->v[i].cp, in->v[i].b, in->v[i].e);
            if (st != QIAO_OK) return st;
        }
        return QIAO_OK;
    }
    size_t s = 0;
    for (size_t j = 1; j <= in->n; j++) {
        if (j < in->n && j - s < SEG_MAX && !unorm2_hasBoundaryBefore(nz, in->v[j].cp)) continue;
        qiao_status st = norm_segment(en, nz, in->v, s, j, out);
        if (st != QIAO_OK) return st;
        s = j;
    }
    return QIAO_OK;
}

/* WordpieceTokenizer.tokenize on one word w[0 .. n). */
static qiao_status wordpiece(enc *en, const wp_char *w, size_t n) {
    const tk_wp *wp = en->wp;
    if (n == 0) return QIAO_OK;
    int32_t unk = wp->special_id[TK_WP_UNK];
    if (n > (size_t)wp->max_chars) return emit(en, unk, w[0].b, w[n - 1].e);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        en->wpos[i] = m;
        int32_t c = w[i].cp;
        char *p = en->wbytes + m;
        if (c < 0x80) {
            p[0] = (char)c;
            m += 1;
        } else if (c < 0x800) {
            p[0] = (char)(0xC0 | (c >> 6));
            p[1] = (char)(0x80 | (c & 0x3F));
            m += 2;
        } else if (c < 0x10000) {
            p[0] = (char)(0xE0 | (c >> 12));
            p[1] = (char)(0x80 | ((c >> 6) & 0x3F));
            p[2] = (char)(0x80 | (c & 0x3F));
            m += 3;
        } else {
            p[0] = (char)(0xF0 | (c >> 18));
            p[1] = (char)(0x80 | ((c >> 12) & 0x3F));
            p[2] = (char)(0x80 | ((c >> 6) & 0x3F));
            p[3] = (char)(0x80 | (c & 0x3F));
            m += 4;
        }
    }
    en->wpos[n] = m;
    /* Pieces are found first and emitted after: a word that fails half way
     * is one [UNK], even when the limit falls inside it. */
    size_t np = 0;
    for (size_t start = 0; start < n;) {
        size_t end = n - start > (size_t)wp->max_cps ? start + (size_t)wp->max_cps : n;
        /* Every candidate's hash in one pass, so a start costs its longest
         * candidate's length, not the sum of all of theirs. */
        uint64_t h = token_hash(start > 0, "", 0);
        for (size_t i = start; i < end; i++) {
            h = fnv1a(h, en->wbytes + en->wpos[i], en->wpos[i + 1] - en->wpos[i]);
            en->whash[i + 1] = h;
        }
        int32_t id = -1;
        for (; end > start; end--) {
            const char *p = en->wbytes + en->wpos[start];
            size_t slot = find_slot_hashed(wp, en->whash[end], start > 0, p, en->wpos[end] - en->wpos[start]);
            id = wp->slots[slot] ? (int32_t)(wp->slots[slot] - 1) : -1;
            if (id >= 0) break;
        }
        if (id < 0) return emit(en, unk, w[0].b, w[n - 1].e);
        en->pieces[np++] = (wp_piece){id, w[start].b, w[end - 1].e};
        start = end;
    }
    for (size_t i = 0; i < np && !en->full; i++) {
        qiao_status st = emit(en, en->pieces[i].id, en->pieces[i].b, en->pieces[i].e);
        if (st != QIAO_OK) return st;
    }
    return QIAO_OK;
}

static bool is_special_text(const tk_wp *wp, const wp_vec *w) {
    for (int k = 0; k < TK_WP_N_SPECIAL; k++) {
        if (w->n != wp->special_ncps[k]) continue;
        size_t i = 0;
        while (i < w->n && w->v[i].cp == wp->special_cps[k][i]) i++;
        if (i == w->n) return true;
    }
    return false;
}

/* One white-space-separated word of BasicTokenizer.tokenize, cleaned and
 * with the CJK ideographs already apart (in en->run). */
static qiao_status word(enc *en) {
    const tk_wp *wp = en->wp;
    qiao_status st;
    if (en->run.n == 0) return QIAO_OK;
    if ((st = normalize(en, en->nfc, &en->run, &en->a)) != QIAO_OK) return st;
    en->run.n = 0;
    /* never_split: BertTokenizer passes its special tokens, so such a word
     * is neither lowercased nor split at its brackets. */
    if (is_special_text(wp, &en->a)) return wordpiece(en, en->a.v, en->a.n);
    wp_vec *cur = &en->a, *other = &en->b;
    if (wp->lower) {
        /* Lowercased once already (step 1); done again because
         * BertTokenizer does, on the NFC form. */
        other->n = 0;
        for (size_t i = 0; i < cur->n; i++)
            if ((st = lower_into(&cur->v[i], other)) != QIAO_OK) return st;
        wp_vec *t = cur;
        cur = other;
        other = t;
    }
    if (wp->strip) {
        if ((st = normalize(en, en->nfd, cur, other)) != QIAO_OK) return st;
        size_t k = 0;
        for (size_t i = 0; i < other->n; i++)
            if (other->v[i].cp < 0x300 || u_charType(other->v[i].cp) != U_NON_SPACING_MARK) other->v[k++] = other->v[i];
        other->n = k;
        cur = other;
    }
    /* _run_split_on_punc: each punctuation character is a word of its own. */
    size_t s = 0;
    for (size_t i = 0; i < cur->n && !en->full; i++) {
        if (!is_punct(cur->v[i].cp)) continue;
        if ((st = wordpiece(en, cur->v + s, i - s)) != QIAO_OK) return st;
        if ((st = wordpiece(en, cur->v + i, 1)) != QIAO_OK) return st;
        s = i + 1;
    }
    if (!en->full) return wordpiece(en, cur->v + s, cur->n - s);
    return QIAO_OK;
}

/* BasicTokenizer.tokenize on text[s .. t), which holds no special token. */
static qiao_status basic(enc *en, size_t s, size_t t) {
    qiao_status st;
    en->run.n = 0;
    for (size_t i = s; i < t && !en->full; i++) {
        const wp_char *c = &en->text.v[i];
        int32_t cp = c->cp;
        /* _clean_text */
        if (cp == 0 || cp == 0xFFFD || is_control(cp)) continue;
        /* Line and paragraph separators survive _clean_text (they are not
         * Zs), and Python's str.split() then splits at them. */
        if (is_space(cp) || cp == 0x2028 || cp == 0x2029) {
            if ((st = word(en)) != QIAO_OK) return st;
            continue;
        }
        if (en->wp->chinese && is_cjk(cp)) {
            if ((st = word(en)) != QIAO_OK) return st;
            if ((st = vec_push(&en->run, cp, c->b, c->e)) != QIAO_OK) return st;
            if ((st = word(en)) != QIAO_OK) return st;
            continue;
        }
        if ((st = vec_push(&en->run, cp, c->b, c->e)) != QIAO_OK) return st;
    }
    if (en->full) return QIAO_OK;
    return word(en);
}

/* The longest special token whose text starts at s[0 .. n) (bytes), or 0. */
static size_t special_at_bytes(const tk_wp *wp, const char *s, size_t n, int *which) {
    size_t best = 0;
    for (int k = 0; k < TK_WP_N_SPECIAL; k++) {
        size_t m = wp->special_len[k];
        if (m > best && m <= n && memcmp(s, wp->special[k], m) == 0) {
            best = m;
            *which = k;
        }
    }
    return best;
}

/* The same on code points, among the special tokens the vocabulary has. */
static size_t special_at_cps(const tk_wp *wp, const wp_char *v, size_t n, int *which) {
    size_t best = 0;
    for (int k = 0; k < TK_WP_N_SPECIAL; k++) {
        size_t m = wp->special_ncps[k];
        if (wp->special_id[k] < 0 || m <= best || m > n || v[0].cp != wp->special_cps[k][0]) continue;
        size_t i = 1;
        while (i < m && v[i].cp == wp->special_cps[k][i]) i++;
        if (i == m) {
            best = m;
            *which = k;
        }
    }
    return best;
}

/* Steps 1 and 2 (PreTrainedTokenizer.tokenize): with do_lower_case every
 * character but the special tokens' text is lowercased on its own (a regular
 * expression there), then the special tokens are cut out (its trie) and the
 * text between them goes through BasicTokenizer. */
static qiao_status run_text(enc *en, const char *text, size_t len) {
    const tk_wp *wp = en->wp;
    qiao_status st;
    for (size_t p = 0; p < len;) {
        int which;
        size_t m = wp->lower ? special_at_bytes(wp, text + p, len - p, &which) : 0;
        size_t stop = p + (m ? m : 1);
        while (p < stop) {
            int32_t cp;
            size_t k = tk_utf8_decode((const unsigned char *)text + p, len - p, &cp);
            wp_char c = {cp, (int32_t)p, (int32_t)(p + k)};
            st = m || !wp->lower ? vec_push(&en->text, cp, c.b, c.e) : lower_into(&c, &en->text);
            if (st != QIAO_OK) return st;
            p += k;
        }
    }
    const wp_vec *t = &en->text;
    size_t seg = 0;
    for (size_t i = 0; i < t->n && !en->full;) {
        int which;
        size_t m = special_at_cps(wp, t->v + i, t->n - i, &which);
        if (!m) {
            i++;
            continue;
        }
        if ((st = basic(en, seg, i)) != QIAO_OK) return st;
        if ((st = emit(en, wp->special_id[which], t->v[i].b, t->v[i + m - 1].e)) != QIAO_OK) return st;
        i += m;
        seg = i;
    }
    if (en->full) return QIAO_OK;
    return basic(en, seg, t->n);
}

qiao_status tk_wp_encode(const tk_wp *wp, const char *text, size_t len, bool add_special, size_t max_tokens,
                         tk_wp_encoding *out) {
    if (!out) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "tk_wp_encode: NULL out");
    memset(out, 0, sizeof *out);
    if (!wp) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "tk_wp_encode: NULL tokenizer");
    if (!text && len) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "tk_wp_encode: NULL text with length %zu", len);
    if (len > TK_WP_MAX_TEXT)
        return qc_error(QIAO_ERR_TOO_LARGE, "text: %zu bytes (the WordPiece tokenizer takes at most %zu)", len,
                        TK_WP_MAX_TEXT);
    if (add_special && max_tokens == 1)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "tk_wp_encode: max_tokens 1 leaves no room for [CLS] and [SEP]");
    int32_t cls = wp->special_id[TK_WP_CLS], sep = wp->special_id[TK_WP_SEP];
    if (add_special && (cls < 0 || sep < 0))
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "tk_wp_encode: the vocabulary has no '%s'",
                        cls < 0 ? wp->special[TK_WP_CLS] : wp->special[TK_WP_SEP]);
    size_t bad = qc_utf8_check(text, len);
    if (bad != len)
        return qc_error(QIAO_ERR_FORMAT, "text: invalid UTF-8 at byte %zu (0x%02X)", bad, (unsigned char)text[bad]);
    UErrorCode e = U_ZERO_ERROR;
    enc en = {.wp = wp, .out = out, .limit = SIZE_MAX};
    en.nfc = unorm2_getNFCInstance(&e);
    if (U_SUCCESS(e)) en.nfd = unorm2_getNFDInstance(&e);
    if (U_FAILURE(e)) return qc_error(QIAO_ERR_INTERNAL, "ICU normalization data unavailable: %s", u_errorName(e));
    qiao_status st = QIAO_OK;
    size_t mc = (size_t)wp->max_chars;
    en.wbytes = malloc(4 * mc);
    en.wpos = malloc((mc + 1) * sizeof *en.wpos);
    en.whash = malloc((mc + 1) * sizeof *en.whash);
    en.pieces = malloc(mc * sizeof *en.pieces);
    if (!en.wbytes || !en.wpos || !en.whash || !en.pieces) {
        st = oom();
        goto done;
    }
    if (add_special && (st = emit(&en, cls, 0, 0)) != QIAO_OK) goto done;
    if (max_tokens) en.limit = add_special ? max_tokens - 1 : max_tokens;
    if ((st = run_text(&en, text, len)) != QIAO_OK) goto done;
    en.limit = SIZE_MAX;
    if (add_special) st = emit(&en, sep, 0, 0);
done:
    free(en.text.v);
    free(en.run.v);
    free(en.a.v);
    free(en.b.v);
    free(en.u16);
    free(en.wbytes);
    free(en.wpos);
    free(en.whash);
    free(en.pieces);
    if (st != QIAO_OK) tk_wp_encoding_free(out);
    return st;
}

void tk_wp_encoding_free(tk_wp_encoding *e) {
    if (!e) return;
    free(e->ids);
    free(e->offsets);
    memset(e, 0, sizeof *e);
}
