/* datasets/shapes/parse.c - reads a caption back into the objects it
 * mentions, and scores it against a scene (shapes.h says the grammar).
 *
 * The words come from shapes_form, so a synonym added to vocab.c is read
 * back without a change here. The parser is a lexer (longest match over the
 * vocabulary, English case-insensitively and word by word, Chinese by
 * characters) and a small state machine over its tokens; it never fails on
 * valid UTF-8, so a caption model's stray output gives fewer mentions, not
 * an error. */
#include <string.h>

#include "shapes.h"

typedef enum tkind {
    T_SHAPE,  /* a shape word: id */
    T_COLOR,  /* id */
    T_SIZE,   /* id */
    T_PLACE,  /* cell */
    T_NUM,    /* a number: value */
    T_ART,    /* a, an: one */
    T_CL,     /* 个, the measure word */
    T_DE,     /* 的, between attributes */
    T_NOUN,   /* shape(s), object(s), 图形: an object of unsaid shape */
    T_SEP,    /* a clause boundary */
    T_FILLER, /* anything else */
    T_END
} tkind;

typedef struct tok {
    tkind kind;
    int id;
} tok;

typedef struct vocab {
    tkind kind;
    int id;
    const char *s;
    int plural; /* English: the last word may take -s or -es */
} vocab;

/* Shapes, colours, sizes and places of both languages, then the rest. */
enum { VOCAB_MAX = 160 };

static int add(vocab *v, int n, tkind kind, int id, const char *s, int plural) {
    if (n < VOCAB_MAX) v[n++] = (vocab){kind, id, s, plural};
    return n;
}

static int build_vocab(vocab *v, shapes_lang lang) {
    static const shapes_kind K[4] = {SHAPES_K_SHAPE, SHAPES_K_COLOR, SHAPES_K_SIZE, SHAPES_K_PLACE};
    static const tkind T[4] = {T_SHAPE, T_COLOR, T_SIZE, T_PLACE};
    int n = 0;
    for (int k = 0; k < 4; k++)
        for (int id = 0; shapes_name(K[k], id); id++)
            for (int f = 0; shapes_form(K[k], id, lang, f); f++)
                n = add(v, n, T[k], id, shapes_form(K[k], id, lang, f), lang == SHAPES_EN && K[k] == SHAPES_K_SHAPE);
    for (int a = 0; a <= 6; a++) n = add(v, n, T_NUM, a, shapes_answer_text(SHAPES_A_NUM0 + a, lang), 0);
    if (lang == SHAPES_EN) {
        n = add(v, n, T_ART, 1, "a", 0);
        n = add(v, n, T_ART, 1, "an", 0);
        n = add(v, n, T_NOUN, 0, "shape", 1);
        n = add(v, n, T_NOUN, 0, "object", 1);
        n = add(v, n, T_SEP, 0, "and", 0);
    } else {
        /* the generator's 两 before a measure word, and the full-width and
         * list punctuation of Chinese text */
        static const char *const SEP[] = {"和", "，", "。", "：", "；", "、", "！", "？"};
        n = add(v, n, T_NUM, 2, "两", 0);
        n = add(v, n, T_CL, 0, "个", 0);
        n = add(v, n, T_DE, 0, "的", 0);
        n = add(v, n, T_NOUN, 0, "图形", 0);
        for (size_t i = 0; i < sizeof SEP / sizeof SEP[0]; i++) n = add(v, n, T_SEP, 0, SEP[i], 0);
    }
    return n;
}

static int is_alnum(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}
static unsigned char lower(unsigned char c) { return c >= 'A' && c <= 'Z' ? (unsigned char)(c - 'A' + 'a') : c; }
static int is_space(unsigned char c) { return c == ' ' || c == '\0' || (c >= '\t' && c <= '\r'); }

/* Matches English `phrase` (lower case, words split by single spaces) at
 * s[i ..): the text's words may be split by spaces or hyphens ("top-left"),
 * and with `plural` the last may end in -s or -es. Returns the end of the
 * match, or 0. */
static size_t en_match(const unsigned char *s, size_t len, size_t i, const char *phrase, int plural) {
    size_t j = i;
    const char *p = phrase;
    for (;;) {
        while (*p && *p != ' ') {
            if (j >= len || lower(s[j]) != (unsigned char)*p) return 0;
            j++, p++;
        }
        if (!*p) break;
        size_t k = j;
        while (k < len && (is_space(s[k]) || s[k] == '-')) k++;
        if (k == j) return 0;
        j = k, p++;
    }
    static const char *const SUFFIX[3] = {"es", "s", ""};
    for (int k = plural ? 0 : 2; k < 3; k++) {
        size_t n = strlen(SUFFIX[k]);
        if (j + n > len) continue;
        size_t m = 0;
        while (m < n && lower(s[j + m]) == (unsigned char)SUFFIX[k][m]) m++;
        if (m == n && (j + n == len || !is_alnum(s[j + n]))) return j + n;
    }
    return 0;
}

/* The next token at s[*pos ..): English words and Chinese words by longest
 * match, ASCII punctuation, and one filler per unknown word or character. */
static tok next_token(const unsigned char *s, size_t len, size_t *pos, const vocab *en, int n_en, const vocab *zh,
                      int n_zh) {
    size_t i = *pos;
    while (i < len && is_space(s[i])) i++;
    if (i >= len) {
        *pos = len;
        return (tok){T_END, 0};
    }
    unsigned char c = s[i];
    if (is_alnum(c)) {
        size_t best = 0;
        tok t = {T_FILLER, 0};
        for (int k = 0; k < n_en; k++) {
            size_t e = en_match(s, len, i, en[k].s, en[k].plural);
            if (e > best) best = e, t = (tok){en[k].kind, en[k].id};
        }
        if (best) {
            *pos = best;
            return t;
        }
        size_t j = i;
        while (j < len && is_alnum(s[j])) j++;
        *pos = j;
        int digits = 1, v = 0;
        for (size_t k = i; k < j; k++) digits &= s[k] >= '0' && s[k] <= '9';
        /* "6 shapes"; longer digit strings are no count of this world */
        if (digits && j - i <= 2) {
            for (size_t k = i; k < j; k++) v = v * 10 + (s[k] - '0');
            return (tok){T_NUM, v};
        }
        return t;
    }
    if (c < 0x80) {
        *pos = i + 1;
        return (tok){strchr(",.;:!?", c) ? T_SEP : T_FILLER, 0};
    }
    size_t best = 0;
    tok t = {T_FILLER, 0};
    for (int k = 0; k < n_zh; k++) {
        size_t n = strlen(zh[k].s);
        if (n > best && i + n <= len && !memcmp(s + i, zh[k].s, n)) best = n, t = (tok){zh[k].kind, zh[k].id};
    }
    if (!best) { /* one code point (the text is valid UTF-8) */
        best = 1;
        while (i + best < len && (s[i + best] & 0xC0) == 0x80) best++;
    }
    *pos = i + best;
    return t;
}

/* ---- the grammar ------------------------------------------------------------ */

typedef struct pstate {
    shapes_parse *out;
    int qty;           /* the article's or number's value; -1 none */
    int color, size;   /* attributes so far; -1 none */
    int pending_place; /* a place before its mention; -1 none */
    int clause_first;  /* first mention (index over all, n + n_dropped) of the clause */
    int group_first;   /* first mention of the latest noun phrase; -1 none */
} pstate;

static void np_reset(pstate *ps) { ps->qty = ps->color = ps->size = -1; }

static void clause_reset(pstate *ps) {
    np_reset(ps);
    ps->pending_place = -1;
    ps->clause_first = ps->out->n + ps->out->n_dropped;
    ps->group_first = -1;
}

static void emit_mentions(pstate *ps, int shape) {
    shapes_parse *o = ps->out;
    int q = ps->qty < 0 ? 1 : ps->qty;
    ps->group_first = o->n + o->n_dropped;
    for (int k = 0; k < q; k++) {
        if (o->n < SHAPES_PARSE_MAX) o->m[o->n++] = (shapes_mention){shape, ps->color, ps->size, ps->pending_place};
        else o->n_dropped++;
    }
    if (q > 0 && ps->pending_place >= 0) {
        ps->pending_place = -1;
        ps->group_first = -1; /* placed: a later place is not its */
    }
    np_reset(ps);
}

static void state_place(pstate *ps, int cell) {
    shapes_parse *o = ps->out;
    int end = o->n + o->n_dropped;
    if (ps->group_first >= ps->clause_first && ps->group_first < end) {
        for (int k = ps->group_first; k < end && k < o->n; k++) o->m[k].cell = cell;
        ps->group_first = -1;
    } else {
        ps->pending_place = cell;
    }
}

static void state_count(pstate *ps, int v) {
    shapes_parse *o = ps->out;
    if (o->count < 0) o->count = v;
    else if (o->count != v) o->count_conflict = 1;
}

qiao_status shapes_caption_parse(const char *text, size_t len, shapes_parse *out) {
    if (!out) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "shapes_caption_parse: NULL output");
    memset(out, 0, sizeof *out);
    out->count = -1;
    if (!text && len) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "shapes_caption_parse: NULL text");
    size_t bad = qc_utf8_check(text, len);
    if (bad != len) return qc_error(QIAO_ERR_FORMAT, "shapes caption: invalid UTF-8 at byte %zu of %zu", bad, len);
    vocab en[VOCAB_MAX], zh[VOCAB_MAX];
    int n_en = build_vocab(en, SHAPES_EN), n_zh = build_vocab(zh, SHAPES_ZH);
    pstate ps = {.out = out};
    clause_reset(&ps);
    const unsigned char *s = (const unsigned char *)text;
    size_t pos = 0;
    int num_pending = 0; /* qty came from a number (a count when a bare noun follows) */
    for (;;) {
        tok t = next_token(s, len, &pos, en, n_en, zh, n_zh);
        switch (t.kind) {
        case T_END: return QIAO_OK;
        case T_SEP: clause_reset(&ps); break;
        case T_ART:
            np_reset(&ps);
            ps.qty = 1;
            num_pending = 0;
            break;
        case T_NUM:
            np_reset(&ps);
            ps.qty = t.id;
            num_pending = 1;
            break;
        case T_CL:
        case T_DE: break;
        case T_COLOR: ps.color = t.id; break;
        case T_SIZE: ps.size = t.id; break;
        case T_SHAPE: emit_mentions(&ps, t.id); break;
        case T_PLACE: state_place(&ps, t.id); break;
        case T_NOUN:
            if (ps.color >= 0 || ps.size >= 0) emit_mentions(&ps, -1);
            else if (ps.qty >= 0 && num_pending) state_count(&ps, ps.qty);
            else if (ps.qty >= 0) emit_mentions(&ps, -1); /* "a shape" */
            np_reset(&ps);
            break;
        case T_FILLER: np_reset(&ps); break;
        }
    }
}

/* ---- scoring ------------------------------------------------------------------ */

static int fits(const shapes_mention *m, const shapes_object *o) {
    return (m->shape < 0 || m->shape == o->shape) && (m->color < 0 || m->color == o->color) &&
           (m->size < 0 || m->size == o->size) && (m->cell < 0 || m->cell == o->cell);
}

/* Kuhn's augmenting path from mention i: at most SHAPES_MAX_OBJECTS deep. */
static int augment(const shapes_parse *p, const shapes_scene *sc, int i, int *owner, int *seen) {
    for (int j = 0; j < sc->n; j++) {
        if (seen[j] || !fits(&p->m[i], &sc->obj[j])) continue;
        seen[j] = 1;
        if (owner[j] < 0 || augment(p, sc, owner[j], owner, seen)) {
            owner[j] = i;
            return 1;
        }
    }
    return 0;
}

qiao_status shapes_caption_score_of(const shapes_parse *p, const shapes_scene *sc, shapes_caption_score *out) {
    if (!p || !sc || !out) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "shapes_caption_score_of: NULL argument");
    memset(out, 0, sizeof *out);
    if (p->n < 0 || p->n > SHAPES_PARSE_MAX || p->n_dropped < 0 || sc->n < 0 || sc->n > SHAPES_MAX_OBJECTS)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT,
                        "shapes_caption_score_of: %d mentions (+%d) or %d objects out of range", p->n, p->n_dropped,
                        sc->n);
    int owner[SHAPES_MAX_OBJECTS];
    for (int j = 0; j < SHAPES_MAX_OBJECTS; j++) owner[j] = -1;
    int matched = 0;
    for (int i = 0; i < p->n; i++) {
        int seen[SHAPES_MAX_OBJECTS] = {0};
        matched += augment(p, sc, i, owner, seen);
    }
    out->mentions = p->n + p->n_dropped;
    out->objects = sc->n;
    out->matched = matched;
    out->precision = out->mentions ? (double)matched / out->mentions : 1.0;
    out->recall = sc->n ? (double)matched / sc->n : 1.0;
    out->f1 = out->precision + out->recall > 0 ? 2 * out->precision * out->recall / (out->precision + out->recall) : 0;
    out->count = p->count;
    out->count_right = p->count >= 0 && p->count == sc->n && !p->count_conflict;
    int count_ok = p->count < 0 || out->count_right;
    out->faithful = matched == out->mentions && count_ok;
    int full = 1;
    for (int i = 0; i < p->n; i++)
        full &= p->m[i].shape >= 0 && p->m[i].color >= 0 && p->m[i].size >= 0 && p->m[i].cell >= 0;
    out->exact = full && matched == sc->n && out->mentions == sc->n && count_ok;
    return QIAO_OK;
}
