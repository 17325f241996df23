/* tokenizers/normalize.c - ICU normalization that remembers where every
 * output byte came from, and the ICU word units.
 *
 * The text is cut into normalization segments (a code point with a boundary
 * before it under NFKC starts a new segment), each segment is normalized on
 * its own (NFKC, then case folding, then Traditional->Simplified), and each
 * output byte records the original byte range of its segment. Normalizing
 * per segment gives the same result as normalizing the whole text, because
 * NFKC never looks across such a boundary; the map is what lets token
 * offsets point into the caller's original string. */
#include <stdlib.h>
#include <string.h>

#include <unicode/ubrk.h>
#include <unicode/uchar.h>
#include <unicode/unorm2.h>
#include <unicode/ustring.h>
#include <unicode/utext.h>
#include <unicode/utrans.h>
#include <unicode/utf16.h>

#include "tokenizers/tokenizer.h"

/* A segment longer than this is cut even without a boundary: a run of
 * thousands of combining marks would otherwise make canonical reordering
 * quadratic. Unicode's stream-safe format (UAX #15) caps runs at 30. */
#define SEG_MAX 64

size_t tk_utf8_decode(const unsigned char *s, size_t len, int32_t *cp) {
    unsigned char c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t need;
    int32_t v;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
        need = 1;
        v = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 2;
        v = c & 0x0F;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F; /* no surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3;
        v = c & 0x07;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F; /* nothing above U+10FFFF */
    } else {
        *cp = -1;
        return 1;
    }
    for (size_t i = 1; i <= need; i++) {
        if (i >= len) {
            *cp = -1;
            return i;
        }
        unsigned char b = s[i];
        if (b < lo || b > hi) {
            *cp = -1;
            return i;
        }
        lo = 0x80;
        hi = 0xBF;
        v = (v << 6) | (b & 0x3F);
    }
    *cp = v;
    return need + 1;
}

static bool is_space(UChar32 c) {
    if (c == ' ') return true;
    if (c < 0x80) return c < 0x20 || c == 0x7F;
    if (u_isUWhiteSpace(c)) return true;
    int8_t t = u_charType(c);
    if (t == U_CONTROL_CHAR || t == U_LINE_SEPARATOR || t == U_PARAGRAPH_SEPARATOR) return true;
    return c == 0x200B || c == 0xFEFF; /* zero-width space, byte order mark */
}

bool tk_is_punct(int32_t cp) { return cp >= 0 && u_ispunct((UChar32)cp); }

bool tk_is_ideographic(int32_t cp) { return cp >= 0 && u_hasBinaryProperty((UChar32)cp, UCHAR_IDEOGRAPHIC); }

typedef struct norm_state {
    const tk_norm_opts *opts;
    const UNormalizer2 *nfkc;
    UTransliterator *trans;
    tk_normalized *out;
    size_t cap;
    bool pending_space;         /* a space run not yet written */
    int64_t space_start, space_end;
    UChar *b1, *b2;             /* scratch for normalization results */
    int32_t bcap;
    const char *what;
} norm_state;

static qiao_status grow_out(norm_state *ns, size_t more) {
    tk_normalized *o = ns->out;
    if (o->len + more + 1 <= ns->cap) return QIAO_OK;
    size_t nc = ns->cap ? ns->cap : 256;
    while (nc < o->len + more + 1) {
        if (nc > SIZE_MAX / 4 / sizeof(int64_t)) return qc_error(QIAO_ERR_TOO_LARGE, "%s: normalized text too large", ns->what);
        nc *= 2;
    }
    char *s = realloc(o->s, nc);
    if (!s) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory normalizing", ns->what);
    o->s = s;
    int64_t *a = realloc(o->ostart, nc * sizeof(int64_t));
    if (!a) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory normalizing", ns->what);
    o->ostart = a;
    int64_t *b = realloc(o->oend, nc * sizeof(int64_t));
    if (!b) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory normalizing", ns->what);
    o->oend = b;
    ns->cap = nc;
    return QIAO_OK;
}

static qiao_status put_bytes(norm_state *ns, const char *b, size_t n, int64_t os, int64_t oe) {
    qiao_status st = grow_out(ns, n);
    if (st != QIAO_OK) return st;
    tk_normalized *o = ns->out;
    for (size_t i = 0; i < n; i++) {
        o->s[o->len] = b[i];
        o->ostart[o->len] = os;
        o->oend[o->len] = oe;
        o->len++;
    }
    return QIAO_OK;
}

/* Writes one normalized code point that came from original bytes [os, oe). */
static qiao_status emit(norm_state *ns, UChar32 c, int64_t os, int64_t oe) {
    if (is_space(c)) {
        if (ns->pending_space) {
            if (oe > ns->space_end) ns->space_end = oe;
        } else {
            ns->pending_space = true;
            ns->space_start = os;
            ns->space_end = oe;
        }
        return QIAO_OK;
    }
    qiao_status st;
    if (ns->pending_space) {
        ns->pending_space = false;
        if (ns->out->len > 0 && (st = put_bytes(ns, " ", 1, ns->space_start, ns->space_end)) != QIAO_OK)
            return st;
    }
    char b[4];
    size_t n;
    if (c < 0x80) {
        b[0] = (char)c;
        n = 1;
    } else if (c < 0x800) {
        b[0] = (char)(0xC0 | (c >> 6));
        b[1] = (char)(0x80 | (c & 0x3F));
        n = 2;
    } else if (c < 0x10000) {
        b[0] = (char)(0xE0 | (c >> 12));
        b[1] = (char)(0x80 | ((c >> 6) & 0x3F));
        b[2] = (char)(0x80 | (c & 0x3F));
        n = 3;
    } else {
        b[0] = (char)(0xF0 | (c >> 18));
        b[1] = (char)(0x80 | ((c >> 12) & 0x3F));
        b[2] = (char)(0x80 | ((c >> 6) & 0x3F));
        b[3] = (char)(0x80 | (c & 0x3F));
        n = 4;
    }
    return put_bytes(ns, b, n, os, oe);
}

static qiao_status ensure_scratch(norm_state *ns, int32_t n) {
    if (n <= ns->bcap) return QIAO_OK;
    int32_t nc = ns->bcap ? ns->bcap : 256;
    while (nc < n) nc *= 2;
    UChar *a = realloc(ns->b1, (size_t)nc * sizeof(UChar));
    if (!a) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory normalizing", ns->what);
    ns->b1 = a;
    UChar *b = realloc(ns->b2, (size_t)nc * sizeof(UChar));
    if (!b) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory normalizing", ns->what);
    ns->b2 = b;
    ns->bcap = nc;
    return QIAO_OK;
}

/* Normalizes one segment seg[0 .. n) (UTF-16) from original bytes [os, oe). */
static qiao_status flush(norm_state *ns, const UChar *seg, int32_t n, int64_t os, int64_t oe) {
    if (n == 1 && seg[0] < 0x80) { /* ASCII alone is its own NFKC form */
        UChar32 c = seg[0];
        if (ns->opts->case_fold && c >= 'A' && c <= 'Z') c += 'a' - 'A';
        return emit(ns, c, os, oe);
    }
    qiao_status st;
    /* NFKC expands by at most 18x (U+FDFA), folding by 3x; T->S keeps length. */
    if ((st = ensure_scratch(ns, n * 18 * 3 + 16)) != QIAO_OK) return st;
    UErrorCode e = U_ZERO_ERROR;
    int32_t len = unorm2_normalize(ns->nfkc, seg, n, ns->b1, ns->bcap, &e);
    if (U_FAILURE(e)) return qc_error(QIAO_ERR_INTERNAL, "%s: ICU NFKC failed: %s", ns->what, u_errorName(e));
    UChar *cur = ns->b1;
    if (ns->opts->case_fold) {
        e = U_ZERO_ERROR;
        len = u_strFoldCase(ns->b2, ns->bcap, ns->b1, len, U_FOLD_CASE_DEFAULT, &e);
        if (U_FAILURE(e)) return qc_error(QIAO_ERR_INTERNAL, "%s: ICU case folding failed: %s", ns->what, u_errorName(e));
        cur = ns->b2;
    }
    if (ns->trans) {
        bool han = false;
        for (int32_t i = 0; i < len && !han; i++) han = cur[i] >= 0x2E80;
        if (han) {
            int32_t limit = len;
            e = U_ZERO_ERROR;
            utrans_transUChars(ns->trans, cur, &len, ns->bcap, 0, &limit, &e);
            if (U_FAILURE(e))
                return qc_error(QIAO_ERR_INTERNAL, "%s: ICU Traditional-Simplified failed: %s", ns->what,
                                u_errorName(e));
        }
    }
    for (int32_t i = 0; i < len;) {
        UChar32 c;
        U16_NEXT(cur, i, len, c);
        if ((st = emit(ns, c, os, oe)) != QIAO_OK) return st;
    }
    return QIAO_OK;
}

qiao_status tk_normalize(const char *text, size_t len, const tk_norm_opts *opts, const char *what,
                         tk_normalized *out) {
    memset(out, 0, sizeof *out);
    if (!what) what = "text";
    if (!text && len) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "%s: NULL text with length %zu", what, len);
    if (len > (size_t)INT64_MAX / 4) return qc_error(QIAO_ERR_TOO_LARGE, "%s: %zu bytes", what, len);
    UErrorCode e = U_ZERO_ERROR;
    norm_state ns = {.opts = opts, .out = out, .what = what};
    ns.nfkc = unorm2_getNFKCInstance(&e);
    if (U_FAILURE(e)) return qc_error(QIAO_ERR_INTERNAL, "ICU NFKC data unavailable: %s", u_errorName(e));
    qiao_status st = QIAO_OK;
    if (opts->t2s) {
        /* A transliterator is not safe to share between threads: each call
         * opens its own (ICU caches the compiled rules process-wide). */
        static const UChar id[] = u"Traditional-Simplified";
        ns.trans = utrans_openU(id, -1, UTRANS_FORWARD, NULL, 0, NULL, &e);
        if (U_FAILURE(e))
            return qc_error(QIAO_ERR_UNSUPPORTED, "ICU transliterator Traditional-Simplified unavailable: %s",
                            u_errorName(e));
    }
    if ((st = grow_out(&ns, len)) != QIAO_OK) goto done;
    UChar seg[SEG_MAX + 2];
    int32_t sn = 0;
    int64_t seg_os = 0, seg_oe = 0;
    const unsigned char *u = (const unsigned char *)text;
    for (size_t pos = 0; pos < len;) {
        int32_t cp;
        size_t n = tk_utf8_decode(u + pos, len - pos, &cp);
        if (cp < 0) {
            if (!opts->replace_invalid) {
                st = qc_error(QIAO_ERR_FORMAT, "%s: invalid UTF-8 at byte %zu (0x%02X)", what, pos, u[pos]);
                goto done;
            }
            cp = 0xFFFD;
        }
        if (sn > 0 && (sn >= SEG_MAX || unorm2_hasBoundaryBefore(ns.nfkc, cp))) {
            if ((st = flush(&ns, seg, sn, seg_os, seg_oe)) != QIAO_OK) goto done;
            sn = 0;
        }
        if (sn == 0) seg_os = (int64_t)pos;
        U16_APPEND_UNSAFE(seg, sn, cp);
        pos += n;
        seg_oe = (int64_t)pos;
    }
    if (sn > 0 && (st = flush(&ns, seg, sn, seg_os, seg_oe)) != QIAO_OK) goto done;
    out->s[out->len] = '\0';
done:
    if (ns.trans) utrans_close(ns.trans);
    free(ns.b1);
    free(ns.b2);
    if (st != QIAO_OK) tk_normalized_free(out);
    return st;
}

void tk_normalized_free(tk_normalized *n) {
    if (!n) return;
    free(n->s);
    free(n->ostart);
    free(n->oend);
    memset(n, 0, sizeof *n);
}

qiao_status tk_word_units(const char *s, size_t len, tk_unit_fn fn, void *user) {
    if (len == 0) return QIAO_OK;
    /* ICU break iterators index with int32_t. */
    if (len > (size_t)INT32_MAX)
        return qc_error(QIAO_ERR_TOO_LARGE, "text: %zu normalized bytes (the word segmenter takes at most 2 GiB)", len);
    UErrorCode e = U_ZERO_ERROR;
    UText *ut = utext_openUTF8(NULL, s, (int64_t)len, &e);
    if (U_FAILURE(e)) return qc_error(QIAO_ERR_INTERNAL, "ICU utext_openUTF8 failed: %s", u_errorName(e));
    /* A break iterator holds its position: one per call, never shared. */
    UBreakIterator *bi = ubrk_open(UBRK_WORD, TK_WORD_LOCALE, NULL, 0, &e);
    if (U_SUCCESS(e)) ubrk_setUText(bi, ut, &e);
    if (U_FAILURE(e)) {
        if (bi) ubrk_close(bi);
        utext_close(ut);
        return qc_error(QIAO_ERR_INTERNAL, "ICU word break iterator failed: %s", u_errorName(e));
    }
    qiao_status st = QIAO_OK;
    /* On UTF-8 UText, ICU's boundaries are byte offsets into s. */
    size_t prev = (size_t)ubrk_first(bi), unit = prev;
    for (int32_t b = ubrk_next(bi); b != UBRK_DONE; b = ubrk_next(bi)) {
        size_t end = (size_t)b;
        /* Normalized text has single spaces only: a space segment is glued to
         * the word after it, as SentencePiece's "▁word" pieces expect. */
        if (end - prev == 1 && s[prev] == ' ' && end < len) {
            prev = end;
            continue;
        }
        if ((st = fn(unit, end, user)) != QIAO_OK) break;
        prev = unit = end;
    }
    ubrk_close(bi);
    utext_close(ut);
    return st;
}
