/* tokenizers/detokenize.c - piece ids back to text.
 *
 * The id space is SentencePiece's: 0 <pad>, 1 <unk>, 2 <s>, 3 </s>, then
 * 256 byte-fallback pieces and the BPE pieces (tokenizer.h). Every space of
 * the normalized text is inside a piece, as the "▁" (U+2581) that starts a
 * word unit (tk_word_units glues the single space before a word to it), so
 * the pieces concatenated, with "▁" read as a space and runs of byte pieces
 * read as UTF-8, are exactly the normalized text. Word-position tags add
 * nothing to that and are not needed.
 *
 * Written text then drops the spaces that written Chinese and punctuation
 * do not have (written_spacing below). It only ever removes spaces: where a
 * decoder put none, none is added, because the pieces already say where
 * the spaces of its training text were. */
#include <stdlib.h>
#include <string.h>

#include <unicode/uchar.h>
#include <unicode/uscript.h>

#include "tokenizers/tokenizer.h"

#define REPLACEMENT "\xEF\xBF\xBD" /* U+FFFD */
#define SPACE_MARK "\xE2\x96\x81"  /* U+2581, SentencePiece's space */

typedef struct tk_buf {
    char *s;
    size_t len, cap;
} tk_buf;

static qiao_status put(tk_buf *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 64;
        while (nc < b->len + n + 1) nc *= 2;
        char *p = realloc(b->s, nc);
        if (!p) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "detokenize: out of memory for %zu bytes of text", nc);
        b->s = p;
        b->cap = nc;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
    return QIAO_OK;
}

/* True if s[0 .. n) is a proper prefix of a well-formed UTF-8 sequence:
 * more byte pieces may still complete it. */
static bool utf8_incomplete(const unsigned char *s, size_t n) {
    if (n == 0 || s[0] < 0xC2 || s[0] > 0xF4) return false;
    int32_t cp;
    return tk_utf8_decode(s, n, &cp) == n && cp < 0;
}

/* Appends the bytes of a run of byte-fallback pieces as UTF-8: each
 * maximal ill-formed subsequence becomes one U+FFFD (Unicode's substitution
 * practice, as tk_utf8_decode counts it). With `hold`, an incomplete
 * sequence at the end is left in `bytes` for later pieces to finish
 * (*nbytes says what is left); otherwise it is ill-formed too. */
static qiao_status flush_bytes(tk_buf *b, unsigned char *bytes, size_t *nbytes, bool hold) {
    size_t n = *nbytes, i = 0;
    qiao_status st = QIAO_OK;
    while (i < n && st == QIAO_OK) {
        if (hold && utf8_incomplete(bytes + i, n - i)) break;
        int32_t cp;
        size_t l = tk_utf8_decode(bytes + i, n - i, &cp);
        st = cp >= 0 ? put(b, (const char *)bytes + i, l) : put(b, REPLACEMENT, 3);
        i += l;
    }
    memmove(bytes, bytes + i, n - i);
    *nbytes = n - i;
    return st;
}

/* The value of a byte piece, spelled "<0xE4>" by SentencePiece. */
static bool byte_value(const char *piece, unsigned char *v) {
    if (!piece || strlen(piece) != 6 || strncmp(piece, "<0x", 3) != 0 || piece[5] != '>') return false;
    unsigned x = 0;
    for (int i = 3; i < 5; i++) {
        char c = piece[i];
        unsigned d = c >= '0' && c <= '9' ? (unsigned)(c - '0') : c >= 'A' && c <= 'F' ? (unsigned)(c - 'A' + 10) : 16;
        if (d == 16) return false;
        x = x * 16 + d;
    }
    *v = (unsigned char)x;
    return true;
}

/* ---- written-text spacing ------------------------------------------------ */

/* A character of a script written without spaces between words (Han,
 * kana, Thai...: ICU's uscript_breaksBetweenLetters). A Common or Inherited
 * character counts when one of its Script_Extensions is such a script:
 * that is how 。、「」《》 and the iteration marks count as Chinese
 * punctuation while , . ( ) do not. */
static bool spaceless(UChar32 c) {
    UErrorCode e = U_ZERO_ERROR;
    UScriptCode sc = uscript_getScript(c, &e);
    if (U_FAILURE(e)) return false;
    if (sc != USCRIPT_COMMON && sc != USCRIPT_INHERITED) return uscript_breaksBetweenLetters(sc) != 0;
    UScriptCode ext[32];
    e = U_ZERO_ERROR;
    int n = uscript_getScriptExtensions(c, ext, 32, &e);
    if (U_FAILURE(e)) return false;
    for (int i = 0; i < n; i++)
        if (ext[i] != USCRIPT_COMMON && ext[i] != USCRIPT_INHERITED && uscript_breaksBetweenLetters(ext[i]))
            return true;
    return false;
}

/* Whether a space between character a and character b is dropped; a0 is
 * the character before a (-1 at the start). The punctuation classes are
 * Unicode's line-breaking classes (UAX #14), which already say which
 * characters never begin a line (closing brackets and quotes CL/CP, ! ? EX,
 * , . : ; IS, nonstarters NS) and which never end one (opening brackets
 * OP): written text has no space there either. NFKC turns Chinese
 * full-width ，！？：；（） into ASCII, so punctuation that follows
 * Chinese counts as Chinese: no space between it and Chinese after it. */
static bool drop_space(UChar32 a0, UChar32 a, UChar32 b) {
    int lb = u_getIntPropertyValue(b, UCHAR_LINE_BREAK);
    if (lb == U_LB_CLOSE_PUNCTUATION || lb == U_LB_CLOSE_PARENTHESIS || lb == U_LB_EXCLAMATION ||
        lb == U_LB_INFIX_NUMERIC || lb == U_LB_NONSTARTER)
        return true;
    if (u_getIntPropertyValue(a, UCHAR_LINE_BREAK) == U_LB_OPEN_PUNCTUATION) return true;
    if (!spaceless(b)) return false;
    return spaceless(a) || (u_ispunct(a) && (a0 < 0 || spaceless(a0)));
}

/* Rewrites s[0 .. len) in place (it only shrinks) and returns the new
 * length: each run of spaces becomes one space or none (none at either end,
 * none where drop_space says so). */
static size_t written_spacing(char *s, size_t len) {
    const unsigned char *u = (const unsigned char *)s;
    size_t r = 0, w = 0;
    UChar32 prev = -1, prev2 = -1; /* the last two characters written */
    while (r < len) {
        if (s[r] == ' ') {
            size_t e = r;
            while (e < len && s[e] == ' ') e++;
            if (prev >= 0 && e < len) {
                int32_t next;
                tk_utf8_decode(u + e, len - e, &next);
                if (next >= 0 && !drop_space(prev2, prev, next)) s[w++] = ' ';
            }
            r = e;
            continue;
        }
        int32_t cp;
        size_t l = tk_utf8_decode(u + r, len - r, &cp);
        memmove(s + w, s + r, l);
        w += l;
        r += l;
        prev2 = prev;
        prev = cp;
    }
    s[w] = '\0';
    return w;
}

/* ---- detokenizing -------------------------------------------------------- */

qiao_status tk_detokenize(const qiao_tokenizer *tok, const int32_t *ids, size_t count, bool exact_spaces, bool partial,
                          const char *what, char **out, size_t *out_len) {
    *out = NULL;
    if (out_len) *out_len = 0;
    if (tok->kind != TK_KIND_HYBRID)
        return qc_error(QIAO_ERR_UNSUPPORTED, "%s: detokenizing is for qiao's own tokenizer, not an imported one", what);
    int32_t vocab = spm_vocab_size(tok->spm);
    tk_buf b = {0};
    unsigned char bytes[8];
    size_t nbytes = 0;
    qiao_status st = put(&b, "", 0);
    for (size_t i = 0; i < count && st == QIAO_OK; i++) {
        int32_t id = ids[i];
        spm_kind kind = spm_piece_kind(tok->spm, id);
        if (kind == SPM_PIECE_INVALID) {
            st = qc_error(QIAO_ERR_INVALID_ARGUMENT,
                          "%s: ids[%zu] = %d is not a piece id (the tokenizer has %d pieces, 0..%d)", what, i, id,
                          vocab, vocab - 1);
            break;
        }
        const char *piece = spm_piece_str(tok->spm, id);
        unsigned char v;
        if (kind == SPM_PIECE_BYTE && byte_value(piece, &v)) {
            /* A run of byte pieces is at most one character's 4 bytes plus
             * ill-formed ones: flush all but an incomplete tail. */
            if (nbytes == sizeof bytes) st = flush_bytes(&b, bytes, &nbytes, true);
            bytes[nbytes++] = v;
            continue;
        }
        if (nbytes && (st = flush_bytes(&b, bytes, &nbytes, false)) != QIAO_OK) break;
        if (kind == SPM_PIECE_CONTROL) continue; /* <pad>, <s>, </s>: no text */
        if (kind == SPM_PIECE_UNKNOWN || !piece) {
            st = put(&b, REPLACEMENT, 3);
            continue;
        }
        for (const char *p = piece; *p && st == QIAO_OK;) {
            const char *m = strstr(p, SPACE_MARK);
            size_t n = m ? (size_t)(m - p) : strlen(p);
            st = put(&b, p, n);
            if (m && st == QIAO_OK) st = put(&b, " ", 1);
            p = m ? m + 3 : p + n;
        }
    }
    if (st == QIAO_OK && nbytes) st = flush_bytes(&b, bytes, &nbytes, partial);
    if (st != QIAO_OK) {
        free(b.s);
        return st;
    }
    if (!exact_spaces) b.len = written_spacing(b.s, b.len);
    *out = b.s;
    if (out_len) *out_len = b.len;
    return QIAO_OK;
}

qiao_detokenize_params qiao_detokenize_default_params(void) {
    qiao_detokenize_params p;
    memset(&p, 0, sizeof p);
    p.struct_size = sizeof p;
    return p;
}

qiao_status qiao_detokenize(const qiao_tokenizer *tok, const int32_t *ids, size_t count,
                            const qiao_detokenize_params *params, char **text, size_t *len) {
    if (!text) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_detokenize: NULL text");
    *text = NULL;
    if (len) *len = 0;
    if (!tok || (!ids && count)) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_detokenize: NULL argument");
    qiao_detokenize_params p = qiao_detokenize_default_params();
    qiao_status st = qc_params_read(&p, sizeof p, params, sizeof(size_t), "qiao_detokenize_default_params");
    if (st != QIAO_OK) return st;
    return tk_detokenize(tok, ids, count, p.exact_spaces != 0, false, "qiao_detokenize", text, len);
}

void qiao_text_free(char *text) { free(text); }
