/* models/captioning/metrics.c - BLEU and CIDEr-D as pycocoevalcap computes
 * them (metrics.h says which formulas), and caption tokenization.
 *
 * Tokens are interned to integer ids by sorting every token of the set once,
 * so an n-gram is up to four ints; each sentence keeps its n-grams sorted
 * and counted, and every lookup is a binary search or a merge. No hashing,
 * so no collisions and the same numbers whatever the tokens. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/captioning/metrics.h"
#include "tokenizers/tokenizer.h"

/* pycocoevalcap's constants: bleu_scorer.py's `small` and `tiny`, and
 * Cider's sigma and n. */
#define BLEU_SMALL 1e-9
#define BLEU_TINY 1e-15
#define CIDER_SIGMA 6.0
#define NG 4
/* np.e, which pycocoevalcap raises to the power (np.e ** x, not exp). */
#define E_CONST 2.718281828459045

/* ---- sentences as ids and counted n-grams -------------------------------- */

typedef struct gram {
    int32_t w[NG]; /* token ids; -1 past the order */
    int32_t k;     /* order 1..4 */
    int32_t c;     /* count in the sentence (or documents, for df) */
} gram;

static int gram_cmp(const void *pa, const void *pb) {
    const gram *a = pa, *b = pb;
    if (a->k != b->k) return a->k < b->k ? -1 : 1;
    for (int i = 0; i < NG; i++)
        if (a->w[i] != b->w[i]) return a->w[i] < b->w[i] ? -1 : 1;
    return 0;
}

/* Sorts g[0 .. n) and merges equal n-grams, combining counts by sum (0) or
 * max (1). Returns the number left. */
static size_t gram_reduce(gram *g, size_t n, int use_max) {
    if (n == 0) return 0;
    qsort(g, n, sizeof *g, gram_cmp);
    size_t m = 0;
    for (size_t i = 1; i < n; i++) {
        if (gram_cmp(&g[m], &g[i]) == 0) {
            if (use_max) g[m].c = g[i].c > g[m].c ? g[i].c : g[m].c;
            else g[m].c += g[i].c;
        } else {
            g[++m] = g[i];
        }
    }
    return m + 1;
}

static const gram *gram_find(const gram *g, size_t n, const gram *key) {
    return bsearch(key, g, n, sizeof *g, gram_cmp);
}

typedef struct tokref {
    const char *s;
    size_t at; /* index into corpus.ids */
} tokref;

static int tokref_cmp(const void *pa, const void *pb) {
    const tokref *a = pa, *b = pb;
    return strcmp(a->s, b->s);
}

/* Sentence s of the set: item i's candidate is sentence first[i], its
 * references the sentences after it, up to first[i + 1]. */
typedef struct corpus {
    size_t n_items, n_sent;
    size_t *first; /* (n_items + 1) */
    size_t *len;   /* (n_sent) tokens of each sentence */
    size_t *goff;  /* (n_sent + 1) each sentence's n-grams in g */
    gram *g;       /* sorted and counted n-grams of every sentence */
    gram *scratch; /* as large as g */
    size_t n_grams;
} corpus;

static void corpus_free(corpus *c) {
    free(c->first);
    free(c->len);
    free(c->goff);
    free(c->g);
    free(c->scratch);
    memset(c, 0, sizeof *c);
}

static const qmod_sentence *sentence_of(const qmod_caption_item *it, size_t j) {
    return j == 0 ? &it->cand : &it->refs[j - 1];
}

/* "candidate" or "reference j", for messages. */
static const char *which(char buf[32], size_t j) {
    if (j == 0) return "candidate";
    snprintf(buf, 32, "reference %zu", j - 1);
    return buf;
}

static qiao_status check_items(const qmod_caption_item *items, size_t n, const char *what, size_t *n_sent,
                               size_t *n_tok) {
    if (!items || n == 0) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "%s: no items to score", what);
    size_t ns = 0, nt = 0;
    for (size_t i = 0; i < n; i++) {
        const qmod_caption_item *it = &items[i];
        if (it->n_refs == 0 || !it->refs)
            return qc_error(QIAO_ERR_INVALID_ARGUMENT, "%s: item %zu has no references", what, i);
        for (size_t j = 0; j <= it->n_refs; j++) {
            const qmod_sentence *s = sentence_of(it, j);
            char wb[32];
            if (s->n && !s->tok)
                return qc_error(QIAO_ERR_INVALID_ARGUMENT, "%s: item %zu %s: NULL token array", what, i, which(wb, j));
            for (size_t t = 0; t < s->n; t++) {
                const char *w = s->tok[t];
                /* pycocoevalcap splits space-joined sentences: a token that
                 * is empty or holds a space would score differently there. */
                const char *why = !w                          ? "NULL"
                                  : !w[0]                     ? "empty"
                                  : strpbrk(w, " \t\n\v\f\r") ? "holding white space"
                                                              : NULL;
                if (why)
                    return qc_error(QIAO_ERR_INVALID_ARGUMENT,
                                    "%s: item %zu %s token %zu is %s (tokens are non-empty, without white space)", what,
                                    i, which(wb, j), t, why);
            }
            const size_t limit = SIZE_MAX / (NG * sizeof(gram));
            if (s->n > limit || nt > limit - s->n)
                return qc_error(QIAO_ERR_TOO_LARGE, "%s: too many tokens", what);
            nt += s->n;
        }
        ns += 1 + it->n_refs;
    }
    *n_sent = ns;
    *n_tok = nt;
    return QIAO_OK;
}

/* Interns the tokens and counts every sentence's n-grams. */
static qiao_status corpus_build(const qmod_caption_item *items, size_t n, const char *what, corpus *c) {
    memset(c, 0, sizeof *c);
    size_t ns = 0, nt = 0;
    qiao_status st = check_items(items, n, what, &ns, &nt);
    if (st != QIAO_OK) return st;
    c->n_items = n;
    c->n_sent = ns;
    c->first = malloc((n + 1) * sizeof *c->first);
    c->len = malloc(ns * sizeof *c->len);
    c->goff = malloc((ns + 1) * sizeof *c->goff);
    c->g = malloc((nt ? NG * nt : 1) * sizeof *c->g);
    c->scratch = malloc((nt ? NG * nt : 1) * sizeof *c->scratch);
    if (nt > (size_t)INT32_MAX) return qc_error(QIAO_ERR_TOO_LARGE, "%s: %zu tokens (at most 2^31 - 1)", what, nt);
    int32_t *ids = malloc((nt ? nt : 1) * sizeof *ids);
    tokref *refs = malloc((nt ? nt : 1) * sizeof *refs);
    if (!c->first || !c->len || !c->goff || !c->g || !c->scratch || !ids || !refs) {
        free(ids);
        free(refs);
        corpus_free(c);
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: %zu tokens", what, nt);
    }
    size_t s = 0, t = 0;
    for (size_t i = 0; i < n; i++) {
        c->first[i] = s;
        for (size_t j = 0; j <= items[i].n_refs; j++, s++) {
            const qmod_sentence *q = sentence_of(&items[i], j);
            c->len[s] = q->n;
            for (size_t k = 0; k < q->n; k++, t++) refs[t] = (tokref){q->tok[k], t};
        }
    }
    c->first[n] = s;
    if (nt) qsort(refs, nt, sizeof *refs, tokref_cmp);
    int32_t id = -1;
    for (size_t k = 0; k < nt; k++) {
        if (k == 0 || strcmp(refs[k].s, refs[k - 1].s)) id++;
        ids[refs[k].at] = id;
    }
    free(refs);
    size_t at = 0, off = 0;
    for (s = 0; s < ns; s++) {
        const int32_t *w = ids + at;
        size_t L = c->len[s], m = 0;
        gram *g = c->g + off;
        for (int k = 1; k <= NG; k++)
            for (size_t i = 0; i + (size_t)k <= L; i++) {
                gram x = {{-1, -1, -1, -1}, k, 1};
                for (int j = 0; j < k; j++) x.w[j] = w[i + (size_t)j];
                g[m++] = x;
            }
        c->goff[s] = off;
        off += gram_reduce(g, m, 0);
        at += L;
    }
    c->goff[ns] = off;
    c->n_grams = off;
    free(ids);
    return QIAO_OK;
}

static const gram *grams_of(const corpus *c, size_t s, size_t *n) {
    *n = c->goff[s + 1] - c->goff[s];
    return c->g + c->goff[s];
}

/* ---- BLEU ------------------------------------------------------------------ */

/* bleu_scorer.py's compute_score for one set of sums: the cumulative
 * geometric means of the precisions, then the brevity penalty. */
static void bleu_from_counts(const double correct[NG], const double guess[NG], double testlen, double reflen,
                             double out[NG]) {
    double b = 1.0;
    for (int k = 0; k < NG; k++) {
        b *= (correct[k] + BLEU_TINY) / (guess[k] + BLEU_SMALL);
        out[k] = pow(b, 1.0 / (k + 1));
    }
    double ratio = (testlen + BLEU_TINY) / (reflen + BLEU_SMALL);
    if (ratio < 1)
        for (int k = 0; k < NG; k++) out[k] *= exp(1 - 1 / ratio);
}

qiao_status qmod_caption_bleu(const qmod_caption_item *items, size_t n, double bleu[QMOD_BLEU_N], double *item_bleu) {
    if (!bleu) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "caption BLEU: NULL output");
    corpus c;
    qiao_status st = corpus_build(items, n, "caption BLEU", &c);
    if (st != QIAO_OK) return st;
    double tot_correct[NG] = {0}, tot_guess[NG] = {0}, tot_test = 0, tot_ref = 0;
    for (size_t i = 0; i < n; i++) {
        size_t cs = c.first[i], nref = c.first[i + 1] - cs - 1;
        /* the per-n-gram maximum count over the references */
        size_t m = 0;
        for (size_t r = 0; r < nref; r++) {
            size_t nr;
            const gram *g = grams_of(&c, cs + 1 + r, &nr);
            memcpy(c.scratch + m, g, nr * sizeof *g);
            m += nr;
        }
        m = gram_reduce(c.scratch, m, 1);
        size_t nc;
        const gram *cg = grams_of(&c, cs, &nc);
        double correct[NG] = {0}, guess[NG];
        for (size_t k = 0; k < nc; k++) {
            const gram *f = gram_find(c.scratch, m, &cg[k]);
            if (f) correct[cg[k].k - 1] += cg[k].c < f->c ? cg[k].c : f->c;
        }
        size_t testlen = c.len[cs];
        for (int k = 0; k < NG; k++) guess[k] = testlen >= (size_t)k + 1 ? (double)(testlen - (size_t)k) : 0.0;
        /* "closest": the reference length nearest the candidate's, the
         * shorter of two equally near (Python's min over (|l - t|, l)) */
        size_t reflen = c.len[cs + 1];
        for (size_t r = 1; r < nref; r++) {
            size_t l = c.len[cs + 1 + r];
            size_t d = l > testlen ? l - testlen : testlen - l,
                   bd = reflen > testlen ? reflen - testlen : testlen - reflen;
            if (d < bd || (d == bd && l < reflen)) reflen = l;
        }
        if (item_bleu) bleu_from_counts(correct, guess, (double)testlen, (double)reflen, item_bleu + NG * i);
        for (int k = 0; k < NG; k++) {
            tot_correct[k] += correct[k];
            tot_guess[k] += guess[k];
        }
        tot_test += (double)testlen;
        tot_ref += (double)reflen;
    }
    bleu_from_counts(tot_correct, tot_guess, tot_test, tot_ref, bleu);
    corpus_free(&c);
    return QIAO_OK;
}

/* ---- CIDEr-D ------------------------------------------------------------- */

qiao_status qmod_caption_cider(const qmod_caption_item *items, size_t n, double *cider, double *item_cider) {
    if (!cider) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "caption CIDEr: NULL output");
    corpus c;
    qiao_status st = corpus_build(items, n, "caption CIDEr", &c);
    if (st != QIAO_OK) return st;
    double *wt = malloc((c.n_grams ? c.n_grams : 1) * sizeof *wt);
    double *norm = malloc(c.n_sent * NG * sizeof *norm);
    double *blen = malloc(c.n_sent * sizeof *blen);
    gram *df = malloc((c.n_grams ? c.n_grams : 1) * sizeof *df);
    if (!wt || !norm || !blen || !df) {
        free(wt);
        free(norm);
        free(blen);
        free(df);
        corpus_free(&c);
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "caption CIDEr: %zu n-grams", c.n_grams);
    }
    /* document frequency: in how many items' references an n-gram occurs */
    size_t ndf = 0;
    for (size_t i = 0; i < n; i++) {
        size_t m = 0;
        for (size_t s = c.first[i] + 1; s < c.first[i + 1]; s++) {
            size_t nr;
            const gram *g = grams_of(&c, s, &nr);
            memcpy(c.scratch + m, g, nr * sizeof *g);
            m += nr;
        }
        m = gram_reduce(c.scratch, m, 1);
        for (size_t k = 0; k < m; k++) {
            df[ndf] = c.scratch[k];
            df[ndf++].c = 1;
        }
    }
    ndf = gram_reduce(df, ndf, 0);
    /* tf-idf vectors, their norms per order, and the bigram count that
     * pycocoevalcap uses as the length */
    const double ref_len = log((double)n);
    for (size_t s = 0; s < c.n_sent; s++) {
        size_t ng;
        const gram *g = grams_of(&c, s, &ng);
        double *w = wt + c.goff[s], sq[NG] = {0}, len = 0;
        for (size_t k = 0; k < ng; k++) {
            const gram *f = gram_find(df, ndf, &g[k]);
            double d = log(fmax(1.0, f ? (double)f->c : 0.0));
            w[k] = (double)g[k].c * (ref_len - d);
            sq[g[k].k - 1] += w[k] * w[k];
            if (g[k].k == 2) len += g[k].c;
        }
        for (int k = 0; k < NG; k++) norm[s * NG + (size_t)k] = sqrt(sq[k]);
        blen[s] = len;
    }
    double sum = 0;
    for (size_t i = 0; i < n; i++) {
        size_t cs = c.first[i], nref = c.first[i + 1] - cs - 1, nc;
        const gram *cg = grams_of(&c, cs, &nc);
        const double *cw = wt + c.goff[cs], *cn = norm + cs * NG;
        double score[NG] = {0};
        for (size_t r = 0; r < nref; r++) {
            size_t rs = cs + 1 + r, nr;
            const gram *rg = grams_of(&c, rs, &nr);
            const double *rw = wt + c.goff[rs], *rn = norm + rs * NG;
            double val[NG] = {0};
            /* both lists are sorted: one merge finds the shared n-grams */
            for (size_t a = 0, b = 0; a < nc && b < nr;) {
                int o = gram_cmp(&cg[a], &rg[b]);
                if (o < 0) {
                    a++;
                } else if (o > 0) {
                    b++;
                } else {
                    val[cg[a].k - 1] += fmin(cw[a], rw[b]) * rw[b];
                    a++;
                    b++;
                }
            }
            double delta = blen[cs] - blen[rs];
            for (int k = 0; k < NG; k++) {
                if (cn[k] != 0 && rn[k] != 0) val[k] /= cn[k] * rn[k];
                val[k] *= pow(E_CONST, -(delta * delta) / (2 * CIDER_SIGMA * CIDER_SIGMA));
                score[k] += val[k];
            }
        }
        double avg = (score[0] + score[1] + score[2] + score[3]) / NG;
        avg = avg / (double)nref * 10.0;
        if (item_cider) item_cider[i] = avg;
        sum += avg;
    }
    *cider = sum / (double)n;
    free(wt);
    free(norm);
    free(blen);
    free(df);
    corpus_free(&c);
    return QIAO_OK;
}

/* ---- tokenization ---------------------------------------------------------- */

typedef struct tokbuf {
    char *bytes; /* tokens, each NUL-terminated */
    size_t len, cap;
    size_t *start; /* (n) */
    size_t n, ncap;
    int oom;
} tokbuf;

static void emit(tokbuf *b, const char *s, size_t n) {
    if (b->oom || n == 0) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->bytes, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->bytes = p;
        b->cap = cap;
    }
    if (b->n == b->ncap) {
        size_t cap = b->ncap ? 2 * b->ncap : 16;
        size_t *p = realloc(b->start, cap * sizeof *p);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->start = p;
        b->ncap = cap;
    }
    b->start[b->n++] = b->len;
    memcpy(b->bytes + b->len, s, n);
    b->len += n;
    b->bytes[b->len++] = '\0';
}

static int32_t cp_at(const char *s, size_t len, size_t i, size_t *w) {
    int32_t cp;
    *w = tk_utf8_decode((const unsigned char *)s + i, len - i, &cp);
    return cp;
}

static int is_alnum(int32_t c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }
static int is_digit(int32_t c) { return c >= '0' && c <= '9'; }
/* U+2019, the typographic apostrophe, is an apostrophe to PTB as well. */
static int is_apos(int32_t c) { return c == '\'' || c == 0x2019; }

/* What continues an English word: letters and digits, and any non-ASCII
 * character that is neither punctuation nor space. */
static int is_word_cp(int32_t c) {
    if (c < 0) return 0;
    if (c < 0x80) return is_alnum(c);
    return !tk_is_punct(c);
}

/* PTB's clitics after an apostrophe: 's 'm 'd 'll 're 've. Returns the
 * letters' length (0 when none follows) for s[i ..) just past the apostrophe. */
static size_t clitic_len(const char *s, size_t len, size_t i) {
    static const char *const C[] = {"s", "m", "d", "ll", "re", "ve"};
    for (size_t k = 0; k < sizeof C / sizeof C[0]; k++) {
        size_t n = strlen(C[k]), w;
        if (i + n > len || memcmp(s + i, C[k], n)) continue;
        if (i + n == len || !is_word_cp(cp_at(s, len, i + n, &w))) return n;
    }
    return 0;
}

static void tokenize_en(const char *s, size_t len, tokbuf *b) {
    size_t i = 0;
    while (i < len) {
        size_t w;
        int32_t c = cp_at(s, len, i, &w);
        if (is_apos(c)) { /* a clitic after a space ("it 's"), else a quote */
            size_t n = clitic_len(s, len, i + w);
            if (n) {
                char t[4] = {'\''};
                memcpy(t + 1, s + i + w, n);
                emit(b, t, n + 1);
            }
            i += w + n;
            continue;
        }
        if (!is_word_cp(c)) {
            /* PTBTokenizer's filter drops . , ; : ? ! - -- ... quotes and
             * brackets; other ASCII symbols ($ % & + ...) are tokens */
            if (c > ' ' && c < 0x80 && !strchr(".,;:?!-`\"()[]{}", (char)c)) emit(b, s + i, 1);
            i += w;
            continue;
        }
        size_t j = i, cut = 0; /* cut: the word ends at j, a clitic follows */
        while (j < len) {
            size_t wj, w2;
            int32_t cj = cp_at(s, len, j, &wj);
            if (is_word_cp(cj)) {
                j += wj;
                continue;
            }
            int32_t next = j + wj < len ? cp_at(s, len, j + wj, &w2) : -1;
            int32_t prev = (unsigned char)s[j - 1];
            if (cj == '-' && is_word_cp(next)) { /* hyphenated word */
                j += wj;
            } else if ((cj == '.' || cj == ',') && is_digit(prev) && is_digit(next)) { /* 3.5, 1,000 */
                j += wj;
            } else if (is_apos(cj)) {
                cut = 1;
                break;
            } else {
                break;
            }
        }
        if (cut) {
            size_t aw, nl;
            cp_at(s, len, j, &aw);
            /* "don't" -> "do" "n't" */
            if (j - i >= 2 && s[j - 1] == 'n' && j + aw < len && s[j + aw] == 't' &&
                (j + aw + 1 == len || !is_word_cp(cp_at(s, len, j + aw + 1, &nl)))) {
                emit(b, s + i, j - 1 - i);
                emit(b, "n't", 3);
                i = j + aw + 1;
                continue;
            }
            emit(b, s + i, j - i);
            i = j; /* the apostrophe: a clitic or a dropped quote, above */
            continue;
        }
        emit(b, s + i, j - i);
        i = j;
    }
}

static void tokenize_chars(const char *s, size_t len, tokbuf *b) {
    size_t i = 0, run = 0; /* run: start of the pending non-CJK token */
    int in_run = 0;
    while (i < len) {
        size_t w;
        int32_t c = cp_at(s, len, i, &w);
        int sep = c == ' ' || tk_is_punct(c), ideo = tk_is_ideographic(c);
        if ((sep || ideo) && in_run) {
            emit(b, s + run, i - run);
            in_run = 0;
        }
        if (ideo) emit(b, s + i, w);
        else if (!sep && !in_run) run = i, in_run = 1;
        i += w;
    }
    if (in_run) emit(b, s + run, len - run);
}

typedef struct unit_ctx {
    const char *s;
    tokbuf *b;
} unit_ctx;

static qiao_status word_unit(size_t begin, size_t end, void *user) {
    unit_ctx *u = user;
    if (begin < end && u->s[begin] == ' ') begin++; /* the space ICU's unit carries */
    for (size_t i = begin; i < end;) {
        size_t w;
        int32_t c = cp_at(u->s, end, i, &w);
        if (c != ' ' && !tk_is_punct(c)) {
            emit(u->b, u->s + begin, end - begin);
            break;
        }
        i += w;
    }
    return u->b->oom ? qc_error(QIAO_ERR_OUT_OF_MEMORY, "caption tokens") : QIAO_OK;
}

void qmod_caption_tokens_free(qmod_caption_tokens *t) {
    if (!t) return;
    free((void *)t->tok);
    t->tok = NULL;
    t->n = 0;
}

qiao_status qmod_caption_tokenize(const char *text, size_t len, qmod_caption_tok_mode mode, qmod_caption_tokens *out) {
    if (!out) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "caption tokens: NULL output");
    out->tok = NULL;
    out->n = 0;
    if (!text && len) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "caption tokens: NULL text");
    if (mode != QMOD_CAPTION_TOK_EN && mode != QMOD_CAPTION_TOK_ZH_WORDS && mode != QMOD_CAPTION_TOK_ZH_CHARS)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "caption tokens: unknown mode %d", (int)mode);
    tk_normalized nt = {0};
    tk_norm_opts opts = {.case_fold = true, .t2s = false, .replace_invalid = false};
    qiao_status st = tk_normalize(text ? text : "", len, &opts, "caption", &nt);
    if (st != QIAO_OK) return st;
    tokbuf b = {0};
    if (mode == QMOD_CAPTION_TOK_EN) {
        tokenize_en(nt.s, nt.len, &b);
    } else if (mode == QMOD_CAPTION_TOK_ZH_CHARS) {
        tokenize_chars(nt.s, nt.len, &b);
    } else {
        unit_ctx u = {nt.s, &b};
        st = tk_word_units(nt.s, nt.len, word_unit, &u);
    }
    tk_normalized_free(&nt);
    if (st == QIAO_OK && b.oom) st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "caption tokens");
    if (st == QIAO_OK) {
        /* one block: the pointers, then the bytes they point at */
        char *blk = malloc(b.n * sizeof(char *) + b.len + 1);
        if (!blk) {
            st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "caption tokens: %zu bytes", b.len);
        } else {
            const char **tok = (const char **)(void *)blk;
            char *bytes = blk + b.n * sizeof(char *);
            if (b.len) memcpy(bytes, b.bytes, b.len);
            for (size_t k = 0; k < b.n; k++) tok[k] = bytes + b.start[k];
            out->tok = tok;
            out->n = b.n;
        }
    }
    free(b.bytes);
    free(b.start);
    return st;
}
