/* datasets/shapes/scene.c - one scene of the shapes world: objects on a 3x3
 * grid, background, captions and balanced questions, in Chinese and English.
 *
 * Everything is drawn from the scene's own RNG in a fixed order that does
 * not depend on the languages or media asked for, so a scene is the same
 * whatever the command line selects. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "shapes.h"

/* Circumscribed radii in image units: a cell is 1/3 wide, so a large shape
 * (0.13) plus the 0.01 margin stays inside its cell (half-width 0.1667) and
 * objects in different cells cannot overlap. */
static const float RADIUS[SHAPES_NSIZES] = {0.08f, 0.13f};
#define CELL_MARGIN 0.01f

/* Light backgrounds, RGB 0..255. */
static const unsigned char BG[6][3] = {{246, 246, 246}, {234, 240, 250}, {250, 244, 228},
                                       {234, 246, 234}, {246, 234, 240}, {238, 238, 230}};

static uint64_t mix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static int pick(qc_rng *r, int n) { return (int)qc_rng_below(r, (uint64_t)n); }

static const char *form(shapes_kind k, int id, shapes_lang lang, qc_rng *r) {
    int n = 0;
    while (shapes_form(k, id, lang, n)) n++;
    return shapes_form(k, id, lang, pick(r, n));
}

/* ---- text building ------------------------------------------------------ */

typedef struct sb {
    char *s;
    size_t n;
    int overflow;
} sb;

static void sb_init(sb *b, char *buf) {
    b->s = buf;
    b->n = 0;
    b->overflow = 0;
    buf[0] = '\0';
}

static void sb_add(sb *b, const char *fmt, ...) QC_PRINTF(2, 3);
static void sb_add(sb *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(b->s + b->n, SHAPES_TEXT_MAX - b->n, fmt, ap);
    va_end(ap);
    if (k < 0 || (size_t)k >= SHAPES_TEXT_MAX - b->n) {
        b->overflow = 1;
        b->s[b->n] = '\0';
    } else {
        b->n += (size_t)k;
    }
}

/* Capitalizes the first letter (English sentences start with a noun phrase). */
static void capitalize(char *s) {
    if (s[0] >= 'a' && s[0] <= 'z') s[0] = (char)(s[0] - 'a' + 'A');
}

/* A description of a set of objects: -1 means "any". */
typedef struct desc {
    int color, size, shape;
} desc;

static int matches(const shapes_object *o, desc d) {
    return (d.color < 0 || o->color == d.color) && (d.size < 0 || o->size == d.size) &&
           (d.shape < 0 || o->shape == d.shape);
}

static int count_of(const shapes_scene *sc, desc d) {
    int c = 0;
    for (int i = 0; i < sc->n; i++) c += matches(&sc->obj[i], d);
    return c;
}

static int held_out(const shapes_scene *sc, desc d) {
    return sc->split != SHAPES_COGENT && d.color >= 0 && d.shape >= 0 && shapes_is_cogent_pair(d.color, d.shape);
}

static const char *en_plural(char *buf, size_t cap, const char *w) {
    size_t n = strlen(w);
    snprintf(buf, cap, "%s%s", w, n && w[n - 1] == 's' ? "es" : "s");
    return buf;
}

/* English noun phrase without article: "small red circle(s)"; `noun` stands
 * in when the shape is open ("shape", "object"). */
static void en_np(sb *b, desc d, int plural, const char *noun, qc_rng *r) {
    char pl[64];
    if (d.size >= 0) sb_add(b, "%s ", form(SHAPES_K_SIZE, d.size, SHAPES_EN, r));
    if (d.color >= 0) sb_add(b, "%s ", form(SHAPES_K_COLOR, d.color, SHAPES_EN, r));
    const char *w = d.shape >= 0 ? form(SHAPES_K_SHAPE, d.shape, SHAPES_EN, r) : noun;
    sb_add(b, "%s", plural ? en_plural(pl, sizeof pl, w) : w);
}

static void en_a_np(sb *b, desc d, const char *noun, qc_rng *r) {
    char tmp[SHAPES_TEXT_MAX];
    sb t;
    sb_init(&t, tmp);
    en_np(&t, d, 0, noun, r);
    sb_add(b, "%s %s", strchr("aeiou", tmp[0]) ? "an" : "a", tmp);
}

/* Chinese noun phrase: "小的红色圆形", "红色的小圆形", "红色的图形". */
static void zh_np(sb *b, desc d, qc_rng *r) {
    const char *shape = d.shape >= 0 ? form(SHAPES_K_SHAPE, d.shape, SHAPES_ZH, r) : "图形";
    const char *color = d.color >= 0 ? form(SHAPES_K_COLOR, d.color, SHAPES_ZH, r) : NULL;
    const char *size = d.size >= 0 ? form(SHAPES_K_SIZE, d.size, SHAPES_ZH, r) : NULL;
    if (color && size) {
        if (pick(r, 2)) sb_add(b, "%s的%s%s", size, color, shape);
        else sb_add(b, "%s的%s%s", color, size, shape);
    } else if (color) {
        sb_add(b, pick(r, 2) ? "%s的%s" : "%s%s", color, shape);
    } else if (size) {
        sb_add(b, d.shape >= 0 ? "%s%s" : "%s的%s", size, shape);
    } else {
        sb_add(b, "%s", shape);
    }
}

static const char *en_place_phrase(char *buf, size_t cap, int cell, qc_rng *r) {
    static const char *const PREP[SHAPES_NPLACES] = {"in the", "at the", "in the", "on the", "in the",
                                                     "on the", "in the", "at the", "in the"};
    snprintf(buf, cap, "%s %s", PREP[cell], form(SHAPES_K_PLACE, cell, SHAPES_EN, r));
    return buf;
}

static const char *en_num(int n) { return shapes_answer_text(SHAPES_A_NUM0 + n, SHAPES_EN); }
static const char *zh_count(int n) { return n == 2 ? "两" : shapes_answer_text(SHAPES_A_NUM0 + n, SHAPES_ZH); }

static desc full_desc(const shapes_object *o) { return (desc){o->color, o->size, o->shape}; }

/* A description that keeps the shape and a random subset of colour and size
 * (short captions mention some attributes, never a false one). */
static desc partial_desc(const shapes_object *o, qc_rng *r) {
    desc d = {-1, -1, o->shape};
    int m = pick(r, 4);
    if (m & 1) d.color = o->color;
    if (m & 2) d.size = o->size;
    return d;
}

/* ---- captions ----------------------------------------------------------- */

static void caption_long_en(const shapes_scene *sc, sb *b, qc_rng *r) {
    int ord[SHAPES_MAX_OBJECTS];
    for (int i = 0; i < sc->n; i++) ord[i] = i;
    for (int i = sc->n - 1; i > 0; i--) {
        int j = pick(r, i + 1), t = ord[i];
        ord[i] = ord[j];
        ord[j] = t;
    }
    int t = pick(r, 4);
    if (sc->n == 1) {
        sb_add(b, t < 2 ? "There is one shape: " : "The picture shows ");
    } else if (t == 0) {
        sb_add(b, "There are %s shapes: ", en_num(sc->n));
    } else if (t == 1) {
        sb_add(b, "The picture shows %s shapes: ", en_num(sc->n));
    } else if (t == 2) {
        sb_add(b, "This image contains ");
    } else {
        sb_add(b, "In this picture there is ");
    }
    for (int k = 0; k < sc->n; k++) {
        const shapes_object *o = &sc->obj[ord[k]];
        char place[64];
        if (k > 0) sb_add(b, k == sc->n - 1 ? " and " : ", ");
        en_a_np(b, full_desc(o), "shape", r);
        sb_add(b, " %s", en_place_phrase(place, sizeof place, o->cell, r));
    }
    sb_add(b, ".");
}

static void caption_long_zh(const shapes_scene *sc, sb *b, qc_rng *r) {
    int ord[SHAPES_MAX_OBJECTS];
    for (int i = 0; i < sc->n; i++) ord[i] = i;
    for (int i = sc->n - 1; i > 0; i--) {
        int j = pick(r, i + 1), t = ord[i];
        ord[i] = ord[j];
        ord[j] = t;
    }
    int t = pick(r, 3);
    if (t == 0) sb_add(b, "图中有%s个图形：", zh_count(sc->n));
    else if (t == 1) sb_add(b, "这张图片里一共有%s个图形：", zh_count(sc->n));
    else sb_add(b, "这张图里：");
    for (int k = 0; k < sc->n; k++) {
        const shapes_object *o = &sc->obj[ord[k]];
        const char *place = form(SHAPES_K_PLACE, o->cell, SHAPES_ZH, r);
        const char *size = form(SHAPES_K_SIZE, o->size, SHAPES_ZH, r);
        const char *color = form(SHAPES_K_COLOR, o->color, SHAPES_ZH, r);
        const char *shape = form(SHAPES_K_SHAPE, o->shape, SHAPES_ZH, r);
        if (k > 0) sb_add(b, "，");
        switch (pick(r, 3)) {
        case 0: sb_add(b, "%s有一个%s的%s%s", place, size, color, shape); break;
        case 1: sb_add(b, "%s是一个%s的%s%s", place, color, size, shape); break;
        default: sb_add(b, "一个%s的%s%s在%s", size, color, shape, place); break;
        }
    }
    sb_add(b, "。");
}

static void caption_short(const shapes_scene *sc, shapes_lang lang, sb *b, qc_rng *r) {
    int kind = pick(r, sc->n >= 2 ? 3 : 2);
    int en = lang == SHAPES_EN;
    if (kind == 0) { /* the number of objects */
        if (en && sc->n == 1) sb_add(b, "There is only one shape in the picture.");
        else if (en) sb_add(b, pick(r, 2) ? "There are %s shapes in the picture." : "The image contains %s shapes in total.",
                            en_num(sc->n));
        else sb_add(b, pick(r, 2) ? "图中一共有%s个图形。" : "这张图里有%s个图形。", zh_count(sc->n));
    } else if (kind == 1) { /* one object, some attributes, maybe its place */
        const shapes_object *o = &sc->obj[pick(r, sc->n)];
        desc d = partial_desc(o, r);
        int with_place = pick(r, 2);
        if (en) {
            char place[64];
            sb_add(b, "There is ");
            en_a_np(b, d, "shape", r);
            sb_add(b, " %s.", with_place ? en_place_phrase(place, sizeof place, o->cell, r) : "in the picture");
        } else {
            if (with_place) sb_add(b, "%s有一个", form(SHAPES_K_PLACE, o->cell, SHAPES_ZH, r));
            else sb_add(b, "图中有一个");
            zh_np(b, d, r);
            sb_add(b, "。");
        }
    } else { /* two objects */
        int i = pick(r, sc->n), j = pick(r, sc->n - 1);
        if (j >= i) j++;
        desc di = partial_desc(&sc->obj[i], r), dj = partial_desc(&sc->obj[j], r);
        if (en) {
            sb_add(b, "The picture contains ");
            en_a_np(b, di, "shape", r);
            sb_add(b, " and ");
            en_a_np(b, dj, "shape", r);
            sb_add(b, ".");
        } else {
            sb_add(b, "图中有一个");
            zh_np(b, di, r);
            sb_add(b, "和一个");
            zh_np(b, dj, r);
            sb_add(b, "。");
        }
    }
}

/* ---- questions ---------------------------------------------------------- */

/* A candidate question: what it asks and its answer. */
typedef struct cand {
    int answer;
    int kind;     /* per type */
    int a, b, c;  /* object indices / relation / attribute, per kind */
    desc d1, d2;
} cand;

#define MAXCAND 1024

/* Picks a candidate whose answer is a target drawn uniformly from `answers`:
 * rejection sampling on the answer, so within a type every answer is about
 * equally frequent over the data set and the question alone tells little.
 * When the scene has no question for the target, up to `tries` - 1 more
 * targets are drawn from the same group (group[i] of answers[i]; e.g. the
 * colours, or the sizes), so an answer that is always possible (a size) is
 * not favoured over one that is often impossible (a colour). Returns -1 when
 * nothing fits: the scene then has no question of this type. */
static int pick_balanced(qc_rng *r, const cand *c, int nc, const int *answers, const int *group, int na, int tries) {
    int idx[MAXCAND];
    int g = -1;
    for (int t = 0; t < tries; t++) {
        int target, m = 0;
        do {
            int k = pick(r, na);
            target = answers[k];
            if (g < 0) g = group[k];
            if (group[k] == g) break;
        } while (1);
        for (int i = 0; i < nc; i++)
            if (c[i].answer == target) idx[m++] = i;
        if (m > 0) return idx[pick(r, m)];
    }
    return -1;
}

/* Descriptions that pick out object i alone, usable in this split. */
static int unique_refs(const shapes_scene *sc, int i, desc *out) {
    const shapes_object *o = &sc->obj[i];
    const desc opts[6] = {{-1, -1, o->shape},      {o->color, -1, o->shape}, {-1, o->size, o->shape},
                          {o->color, o->size, o->shape}, {o->color, -1, -1},       {o->color, o->size, -1}};
    int n = 0;
    for (int k = 0; k < 6; k++)
        if (count_of(sc, opts[k]) == 1 && !held_out(sc, opts[k])) out[n++] = opts[k];
    return n;
}

static int ref_of(const shapes_scene *sc, int i, qc_rng *r, desc *d) {
    desc refs[6];
    int n = unique_refs(sc, i, refs);
    if (n == 0) return 0;
    *d = refs[pick(r, n)];
    return 1;
}

static int col_of(const shapes_object *o) { return o->cell % 3; }
static int row_of(const shapes_object *o) { return o->cell / 3; }

/* Relations 0 left of, 1 right of, 2 above, 3 below, judged on grid cells:
 * A is left of B when A's column is left of B's (any row). */
static int related(const shapes_object *a, const shapes_object *b, int rel) {
    switch (rel) {
    case 0: return col_of(a) < col_of(b);
    case 1: return col_of(a) > col_of(b);
    case 2: return row_of(a) < row_of(b);
    default: return row_of(a) > row_of(b);
    }
}

static int attr_answer(const shapes_object *o, int attr) {
    if (attr == 0) return SHAPES_A_COLOR0 + o->color;
    if (attr == 1) return SHAPES_A_SHAPE0 + o->shape;
    return SHAPES_A_SIZE0 + o->size;
}

static const char *const EN_REL[4] = {"to the left of", "to the right of", "above", "below"};
static const char *const ZH_REL[4] = {"左边", "右边", "上面", "下面"};

static void all_descs(const shapes_scene *sc, desc *out, int *n, int need_color_or_shape) {
    *n = 0;
    for (int c = -1; c < SHAPES_NCOLORS; c++)
        for (int s = -1; s < SHAPES_NSIZES; s++)
            for (int h = -1; h < SHAPES_NSHAPES; h++) {
                desc d = {c, s, h};
                if (need_color_or_shape && c < 0 && h < 0) continue;
                if (!held_out(sc, d)) out[(*n)++] = d;
            }
}

static int q_count(const shapes_scene *sc, qc_rng *r, shapes_qa *q, sb *en, sb *zh) {
    /* large counts are listed more often: few scenes make them possible */
    static const int ANS[14] = {2, 3, 4, 5, 5, 6, 6, 6, 7, 7, 7, 8, 8, 8}, G[14] = {0};
    cand c[MAXCAND];
    desc ds[256];
    int nd, nc = 0;
    all_descs(sc, ds, &nd, 0);
    for (int i = 0; i < nd; i++) c[nc++] = (cand){.answer = SHAPES_A_NUM0 + count_of(sc, ds[i]), .d1 = ds[i]};
    /* one try: large counts are possible in few scenes, and retries would
     * pile up the small ones */
    int k = pick_balanced(r, c, nc, ANS, G, 14, 1);
    if (k < 0) return 0;
    q->answer = c[k].answer;
    int t = pick(r, 3);
    sb_add(en, "How many ");
    en_np(en, c[k].d1, 1, "shape", r);
    sb_add(en, t == 0 ? " are there?" : t == 1 ? " are in the picture?" : " can you see?");
    t = pick(r, 3);
    if (t == 0) sb_add(zh, "图中有几个");
    else if (t == 2) sb_add(zh, "一共有多少个");
    zh_np(zh, c[k].d1, r);
    sb_add(zh, t == 1 ? "有多少个？" : "？");
    return 1;
}

static int q_attribute(const shapes_scene *sc, qc_rng *r, shapes_qa *q, sb *en, sb *zh) {
    int ANS[SHAPES_NCOLORS + SHAPES_NSHAPES + SHAPES_NSIZES], G[SHAPES_NCOLORS + SHAPES_NSHAPES + SHAPES_NSIZES];
    for (int i = 0; i < SHAPES_NCOLORS + SHAPES_NSHAPES + SHAPES_NSIZES; i++) {
        ANS[i] = SHAPES_A_COLOR0 + i;
        G[i] = i < SHAPES_NCOLORS ? 0 : i < SHAPES_NCOLORS + SHAPES_NSHAPES ? 1 : 2;
    }
    cand c[MAXCAND];
    int nc = 0;
    for (int i = 0; i < sc->n; i++) {
        const shapes_object *o = &sc->obj[i];
        for (int attr = 0; attr < 3; attr++) c[nc++] = (cand){.answer = attr_answer(o, attr), .kind = 0, .a = i, .c = attr};
        desc refs[6];
        int nr = unique_refs(sc, i, refs);
        for (int k = 0; k < nr; k++) {
            int attrs[3] = {refs[k].color < 0, refs[k].shape < 0, refs[k].size < 0};
            for (int attr = 0; attr < 3; attr++)
                if (attrs[attr]) c[nc++] = (cand){.answer = attr_answer(o, attr), .kind = 1, .a = i, .c = attr, .d1 = refs[k]};
        }
        for (int rel = 0; rel < 4; rel++) { /* object j is the only one `rel` of the referent i */
            int only = -1, m = 0;
            for (int j = 0; j < sc->n; j++)
                if (j != i && related(&sc->obj[j], o, rel)) only = j, m++;
            if (m != 1 || nr == 0) continue;
            for (int attr = 0; attr < 3; attr++)
                c[nc++] = (cand){.answer = attr_answer(&sc->obj[only], attr), .kind = 2, .a = i, .b = rel, .c = attr};
        }
    }
    int k = pick_balanced(r, c, nc, ANS, G, SHAPES_NCOLORS + SHAPES_NSHAPES + SHAPES_NSIZES, 6);
    if (k < 0) return 0;
    const cand *x = &c[k];
    q->answer = x->answer;
    char ref_en[SHAPES_TEXT_MAX], ref_zh[SHAPES_TEXT_MAX], place[64];
    sb re, rz;
    sb_init(&re, ref_en);
    sb_init(&rz, ref_zh);
    if (x->kind == 0) {
        sb_add(&re, "the object %s", en_place_phrase(place, sizeof place, sc->obj[x->a].cell, r));
        sb_add(&rz, "%s的图形", form(SHAPES_K_PLACE, sc->obj[x->a].cell, SHAPES_ZH, r));
    } else if (x->kind == 1) {
        sb_add(&re, "the ");
        en_np(&re, x->d1, 0, "object", r);
        zh_np(&rz, x->d1, r);
    } else {
        desc d;
        ref_of(sc, x->a, r, &d);
        sb_add(&re, "the object %s the ", EN_REL[x->b]);
        en_np(&re, d, 0, "object", r);
        zh_np(&rz, d, r);
        sb_add(&rz, "%s的图形", ZH_REL[x->b]);
    }
    if (re.overflow || rz.overflow) return 0;
    if (x->c == 0) {
        sb_add(en, "What color is %s?", ref_en);
        sb_add(zh, "%s是什么颜色？", ref_zh);
    } else if (x->c == 1) {
        sb_add(en, "What shape is %s?", ref_en);
        sb_add(zh, "%s是什么形状？", ref_zh);
    } else {
        sb_add(en, pick(r, 2) ? "What size is %s?" : "Is %s small or large?", ref_en);
        sb_add(zh, "%s是大还是小？", ref_zh);
    }
    return 1;
}

static int q_exist(const shapes_scene *sc, qc_rng *r, shapes_qa *q, sb *en, sb *zh) {
    static const int ANS[2] = {SHAPES_A_YES, SHAPES_A_NO}, G[2] = {0};
    cand c[MAXCAND];
    desc ds[256];
    int nd, nc = 0;
    all_descs(sc, ds, &nd, 1);
    for (int i = 0; i < nd; i++)
        c[nc++] = (cand){.answer = count_of(sc, ds[i]) > 0 ? SHAPES_A_YES : SHAPES_A_NO, .d1 = ds[i]};
    int k = pick_balanced(r, c, nc, ANS, G, 2, 4);
    if (k < 0) return 0;
    q->answer = c[k].answer;
    int t = pick(r, 3);
    sb_add(en, t == 2 ? "Can you see " : "Is there ");
    en_a_np(en, c[k].d1, "shape", r);
    sb_add(en, t == 1 ? " in the picture?" : "?");
    t = pick(r, 2);
    sb_add(zh, t ? "图中有" : "有没有");
    zh_np(zh, c[k].d1, r);
    sb_add(zh, t ? "吗？" : "？");
    return 1;
}

static int q_spatial(const shapes_scene *sc, qc_rng *r, shapes_qa *q, sb *en, sb *zh) {
    int ANS[2 + SHAPES_NPLACES + SHAPES_NCOLORS], G[2 + SHAPES_NPLACES + SHAPES_NCOLORS], na = 0;
    G[na] = 0, ANS[na++] = SHAPES_A_YES;
    G[na] = 0, ANS[na++] = SHAPES_A_NO;
    for (int i = 0; i < SHAPES_NPLACES; i++) G[na] = 1, ANS[na++] = SHAPES_A_PLACE0 + i;
    for (int i = 0; i < SHAPES_NCOLORS; i++) G[na] = 2, ANS[na++] = SHAPES_A_COLOR0 + i;
    cand c[MAXCAND];
    int nc = 0;
    desc tmp[6];
    for (int i = 0; i < sc->n; i++) {
        if (!unique_refs(sc, i, tmp)) continue;
        const shapes_object *a = &sc->obj[i];
        c[nc++] = (cand){.answer = SHAPES_A_PLACE0 + a->cell, .kind = 1, .a = i};
        for (int j = 0; j < sc->n; j++) {
            if (j == i || !unique_refs(sc, j, tmp)) continue;
            const shapes_object *b = &sc->obj[j];
            for (int rel = 0; rel < 4; rel++) {
                /* only where the grid decides: different columns for
                 * left/right, different rows for above/below */
                if (rel < 2 ? col_of(a) == col_of(b) : row_of(a) == row_of(b)) continue;
                c[nc++] = (cand){.answer = related(a, b, rel) ? SHAPES_A_YES : SHAPES_A_NO, .kind = 0, .a = i, .b = j, .c = rel};
            }
        }
        if (sc->n >= 3) { /* nearest, when clearly nearest */
            float d1 = 1e9f, d2 = 1e9f;
            int best = -1;
            for (int j = 0; j < sc->n; j++) {
                if (j == i) continue;
                float d = hypotf(sc->obj[j].x - a->x, sc->obj[j].y - a->y);
                if (d < d1) d2 = d1, d1 = d, best = j;
                else if (d < d2) d2 = d;
            }
            if (d2 >= 1.25f * d1 + 0.02f)
                c[nc++] = (cand){.answer = SHAPES_A_COLOR0 + sc->obj[best].color, .kind = 2, .a = i, .b = best};
        }
    }
    int k = pick_balanced(r, c, nc, ANS, G, na, 6);
    if (k < 0) return 0;
    const cand *x = &c[k];
    q->answer = x->answer;
    desc da, db;
    ref_of(sc, x->a, r, &da);
    if (x->kind == 0) {
        ref_of(sc, x->b, r, &db);
        sb_add(en, "Is the ");
        en_np(en, da, 0, "object", r);
        sb_add(en, " %s the ", EN_REL[x->c]);
        en_np(en, db, 0, "object", r);
        sb_add(en, "?");
        zh_np(zh, da, r);
        sb_add(zh, "在");
        zh_np(zh, db, r);
        sb_add(zh, "的%s吗？", ZH_REL[x->c]);
    } else if (x->kind == 1) {
        sb_add(en, "Where is the ");
        en_np(en, da, 0, "object", r);
        sb_add(en, "?");
        zh_np(zh, da, r);
        sb_add(zh, pick(r, 2) ? "在哪里？" : "在什么位置？");
    } else {
        sb_add(en, pick(r, 2) ? "What color is the object nearest to the " : "What color is the object closest to the ");
        en_np(en, da, 0, "object", r);
        sb_add(en, "?");
        sb_add(zh, "离");
        zh_np(zh, da, r);
        sb_add(zh, "最近的图形是什么颜色？");
    }
    return 1;
}

static int q_compare(const shapes_scene *sc, qc_rng *r, shapes_qa *q, sb *en, sb *zh) {
    static const int ANS[2] = {SHAPES_A_YES, SHAPES_A_NO}, G[2] = {0};
    desc single[SHAPES_NCOLORS + SHAPES_NSHAPES + SHAPES_NSIZES];
    int ns = 0, group[SHAPES_NCOLORS + SHAPES_NSHAPES + SHAPES_NSIZES];
    for (int i = 0; i < SHAPES_NCOLORS; i++) group[ns] = 0, single[ns++] = (desc){i, -1, -1};
    for (int i = 0; i < SHAPES_NSHAPES; i++) group[ns] = 1, single[ns++] = (desc){-1, -1, i};
    for (int i = 0; i < SHAPES_NSIZES; i++) group[ns] = 2, single[ns++] = (desc){-1, i, -1};
    cand c[MAXCAND];
    int nc = 0;
    for (int i = 0; i < ns; i++)
        for (int j = 0; j < ns; j++) {
            if (i == j || group[i] != group[j]) continue;
            int ci = count_of(sc, single[i]), cj = count_of(sc, single[j]);
            if (ci + cj == 0) continue;
            for (int rel = 0; rel < 3; rel++) {
                int yes = rel == 0 ? ci > cj : rel == 1 ? ci < cj : ci == cj;
                c[nc++] = (cand){.answer = yes ? SHAPES_A_YES : SHAPES_A_NO, .c = rel, .d1 = single[i], .d2 = single[j]};
            }
        }
    int k = pick_balanced(r, c, nc, ANS, G, 2, 4);
    if (k < 0) return 0;
    const cand *x = &c[k];
    q->answer = x->answer;
    sb_add(en, x->c == 0 ? "Are there more " : x->c == 1 ? "Are there fewer " : "Are there as many ");
    en_np(en, x->d1, 1, "shape", r);
    sb_add(en, x->c == 2 ? " as " : " than ");
    en_np(en, x->d2, 1, "shape", r);
    sb_add(en, "?");
    zh_np(zh, x->d1, r);
    sb_add(zh, x->c == 2 ? "和" : "比");
    zh_np(zh, x->d2, r);
    sb_add(zh, x->c == 0 ? "多吗？" : x->c == 1 ? "少吗？" : "一样多吗？");
    return 1;
}

/* ---- the scene ---------------------------------------------------------- */

static void place_objects(shapes_scene *sc, qc_rng *r) {
    int cells[SHAPES_NPLACES];
    for (int i = 0; i < SHAPES_NPLACES; i++) cells[i] = i;
    for (int i = SHAPES_NPLACES - 1; i > 0; i--) {
        int j = pick(r, i + 1), t = cells[i];
        cells[i] = cells[j];
        cells[j] = t;
    }
    sc->n = 1 + pick(r, SHAPES_MAX_OBJECTS);
    int forced = sc->split == SHAPES_COGENT ? pick(r, sc->n) : -1;
    for (int i = 0; i < sc->n; i++) {
        shapes_object *o = &sc->obj[i];
        if (i == forced) {
            shapes_cogent_pair(pick(r, SHAPES_NCOGENT), &o->color, &o->shape);
        } else {
            do { /* train, val and test never hold a cogent pair */
                o->color = pick(r, SHAPES_NCOLORS);
                o->shape = pick(r, SHAPES_NSHAPES);
            } while (sc->split != SHAPES_COGENT && shapes_is_cogent_pair(o->color, o->shape));
        }
        o->size = pick(r, SHAPES_NSIZES);
        o->cell = cells[i];
        o->r = RADIUS[o->size];
        float slack = 1.0f / 6.0f - o->r - CELL_MARGIN;
        float cx = ((float)(o->cell % 3) + 0.5f) / 3.0f, cy = ((float)(o->cell / 3) + 0.5f) / 3.0f;
        /* rounded to 4 decimals so the manifest's numbers are exact */
        o->x = roundf((cx + slack * (2.0f * qc_rng_uniform(r) - 1.0f)) * 10000.0f) / 10000.0f;
        o->y = roundf((cy + slack * (2.0f * qc_rng_uniform(r) - 1.0f)) * 10000.0f) / 10000.0f;
        int rotate = o->shape != 0 && pick(r, 2);
        float rot = (float)pick(r, 91) - 45.0f;
        o->rot = rotate ? rot : 0.0f;
    }
}

qiao_status shapes_scene_make(uint64_t seed, shapes_split split, int64_t index, shapes_scene *sc) {
    if (!sc || (int)split < 0 || split >= SHAPES_NSPLITS || index < 0)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "shapes_scene_make: bad split %d or index %lld", (int)split,
                        (long long)index);
    memset(sc, 0, sizeof *sc);
    sc->index = index;
    sc->split = split;
    sc->seed = mix64(mix64(mix64(seed) ^ (0xC0FFEEull + (uint64_t)split)) ^ (uint64_t)index);
    qc_rng r;
    qc_rng_seed(&r, sc->seed);

    place_objects(sc, &r);
    sc->bg_gradient = pick(&r, 3);
    for (int k = 0; k < 2; k++) {
        int p = pick(&r, 6);
        for (int ch = 0; ch < 3; ch++) sc->bg[k][ch] = (float)BG[p][ch] / 255.0f;
    }

    sc->ncap = 2 + pick(&r, 2);
    for (int lang = 0; lang < SHAPES_NLANGS; lang++) {
        for (int k = 0; k < sc->ncap; k++) {
            sb b;
            sb_init(&b, sc->cap[lang][k]);
            if (k == 0 && lang == SHAPES_EN) caption_long_en(sc, &b, &r);
            else if (k == 0) caption_long_zh(sc, &b, &r);
            else caption_short(sc, (shapes_lang)lang, &b, &r);
            if (lang == SHAPES_EN) capitalize(sc->cap[lang][k]);
            if (b.overflow) return qc_error(QIAO_ERR_INTERNAL, "shapes: scene %lld: caption too long", (long long)index);
        }
    }

    typedef int (*qfn)(const shapes_scene *, qc_rng *, shapes_qa *, sb *, sb *);
    static const qfn Q[SHAPES_NQTYPES] = {q_count, q_attribute, q_exist, q_spatial, q_compare};
    for (int t = 0; t < SHAPES_NQTYPES; t++) {
        shapes_qa *q = &sc->qa[sc->nqa];
        sb en, zh;
        sb_init(&en, q->text[SHAPES_EN]);
        sb_init(&zh, q->text[SHAPES_ZH]);
        q->type = t;
        if (!Q[t](sc, &r, q, &en, &zh)) {
            memset(q, 0, sizeof *q);
            continue;
        }
        if (en.overflow || zh.overflow)
            return qc_error(QIAO_ERR_INTERNAL, "shapes: scene %lld: question too long", (long long)index);
        capitalize(q->text[SHAPES_EN]);
        sc->nqa++;
    }
    return QIAO_OK;
}
