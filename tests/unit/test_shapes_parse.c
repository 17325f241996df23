/* tests/unit/test_shapes_parse.c - reading shapes-world captions back
 * (datasets/shapes/parse.c): every caption the generator writes for a few
 * hundred scenes of every split, in both languages, parses to a perfect score
 * against its own scene; long captions with a colour changed, an object
 * dropped or an object added score below 1 by exactly the expected amount;
 * hand-written captions (synonyms, plurals, numbers, partial mentions); bad
 * and hostile input. */
#include <string.h>

#include "shapes/shapes.h"
#include "testutil.h"

static shapes_caption_score score_text(const char *text, const shapes_scene *sc) {
    shapes_parse p;
    if (shapes_caption_parse(text, strlen(text), &p) != QIAO_OK) fail_msg("\"%s\": %s", text, qiao_last_error());
    shapes_caption_score s;
    assert_int_equal(shapes_caption_score_of(&p, sc, &s), QIAO_OK);
    return s;
}

static void scene(shapes_split split, int64_t i, shapes_scene *sc) {
    if (shapes_scene_make(7, split, i, sc) != QIAO_OK) fail_msg("scene %lld: %s", (long long)i, qiao_last_error());
}

static void test_generated(void **state) {
    (void)state;
    static shapes_scene sc;
    int n_caps = 0, n_counts = 0, n_partial = 0;
    for (int split = 0; split < SHAPES_NSPLITS; split++)
        for (int64_t i = 0; i < 100; i++) {
            scene((shapes_split)split, i, &sc);
            for (int lang = 0; lang < SHAPES_NLANGS; lang++)
                for (int k = 0; k < sc.ncap; k++) {
                    const char *cap = sc.cap[lang][k];
                    shapes_parse p;
                    assert_int_equal(shapes_caption_parse(cap, strlen(cap), &p), QIAO_OK);
                    shapes_caption_score s;
                    assert_int_equal(shapes_caption_score_of(&p, &sc, &s), QIAO_OK);
                    n_caps++;
                    n_counts += p.count >= 0;
                    if (!s.faithful || s.precision != 1.0)
                        fail_msg("split %d scene %lld: \"%s\": %d of %d mentions matched, count %d (scene %d)", split,
                                 (long long)i, cap, s.matched, s.mentions, p.count, sc.n);
                    if (p.count >= 0 && !s.count_right) fail_msg("\"%s\": count %d, scene %d", cap, p.count, sc.n);
                    if (s.mentions == 0 && p.count < 0) fail_msg("\"%s\" says nothing the parser reads", cap);
                    if (k == 0 && (!s.exact || s.recall != 1.0 || s.f1 != 1.0))
                        fail_msg("long caption \"%s\": %d of %d objects, exact %d", cap, s.matched, sc.n, s.exact);
                    if (k > 0) {
                        n_partial += s.mentions > 0 && !s.exact;
                        assert_true(s.mentions <= 2);
                    }
                }
        }
    print_message("%d captions of %d scenes parsed to their scenes; %d state a count, %d short ones name objects\n",
                  n_caps, 4 * 100, n_counts, n_partial);
    assert_true(n_counts > 100 && n_partial > 100);
}

/* ---- corrupted long captions -------------------------------------------- */

static int is_word_byte(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

/* The first occurrence of any colour form in `s` (whole words in English):
 * its offset, length and colour id. */
static int find_color(const char *s, shapes_lang lang, size_t *at, size_t *len) {
    const char *best = NULL;
    int color = -1;
    for (int c = 0; c < SHAPES_NCOLORS; c++)
        for (int f = 0; shapes_form(SHAPES_K_COLOR, c, lang, f); f++) {
            const char *w = shapes_form(SHAPES_K_COLOR, c, lang, f);
            for (const char *p = strstr(s, w); p; p = strstr(p + 1, w)) {
                size_t n = strlen(w);
                if (lang == SHAPES_EN && ((p > s && is_word_byte(p[-1])) || is_word_byte(p[n]))) continue;
                if (!best || p < best) best = p, *len = n, color = c;
                break;
            }
        }
    if (best) *at = (size_t)(best - s);
    return color;
}

static void replace(char *out, size_t cap, const char *s, size_t at, size_t n, const char *with) {
    assert_true(strlen(s) - n + strlen(with) < cap);
    snprintf(out, cap, "%.*s%s%s", (int)at, s, with, s + at + n);
}

static void near(double got, double want, const char *what, const char *cap) {
    if (fabs(got - want) > 1e-12) fail_msg("%s of \"%s\": %g, expected %g", what, cap, got, want);
}

static void test_corrupted(void **state) {
    (void)state;
    static shapes_scene sc;
    char buf[2 * SHAPES_TEXT_MAX];
    int tried[3] = {0};
    for (int64_t i = 0; i < 150; i++) {
        scene(SHAPES_VAL, i, &sc);
        const double n = sc.n;
        for (int lang = 0; lang < SHAPES_NLANGS; lang++) {
            const char *cap = sc.cap[lang][0];
            shapes_caption_score s;
            /* a colour changed: that mention (its place is its object's)
             * now fits no object */
            size_t at = 0, len = 0;
            int c = find_color(cap, (shapes_lang)lang, &at, &len);
            assert_true(c >= 0);
            replace(buf, sizeof buf, cap, at, len,
                    shapes_form(SHAPES_K_COLOR, (c + 1) % SHAPES_NCOLORS, (shapes_lang)lang, 0));
            s = score_text(buf, &sc);
            near(s.precision, (n - 1) / n, "precision", buf);
            near(s.recall, (n - 1) / n, "recall", buf);
            assert_false(s.exact || s.faithful);
            tried[0]++;
            /* an object dropped: the last one listed */
            if (sc.n >= 2) {
                const char *cut = NULL;
                if (lang == SHAPES_EN) {
                    for (const char *p = strstr(cap, " and "); p; p = strstr(p + 1, " and ")) cut = p;
                    assert_non_null(cut);
                    snprintf(buf, sizeof buf, "%.*s.", (int)(cut - cap), cap);
                } else {
                    for (const char *p = strstr(cap, "，"); p; p = strstr(p + 1, "，")) cut = p;
                    assert_non_null(cut);
                    snprintf(buf, sizeof buf, "%.*s。", (int)(cut - cap), cap);
                }
                s = score_text(buf, &sc);
                near(s.precision, 1.0, "precision", buf);
                near(s.recall, (n - 1) / n, "recall", buf);
                near(s.f1, 2 * (n - 1) / (2 * n - 1), "F1", buf);
                assert_true(s.faithful && !s.exact);
                tried[1]++;
            }
            /* an object added, in a free cell */
            int used[SHAPES_NPLACES] = {0}, free_cell = 0;
            for (int j = 0; j < sc.n; j++) used[sc.obj[j].cell] = 1;
            while (used[free_cell]) free_cell++;
            char extra[128];
            const char *place = shapes_form(SHAPES_K_PLACE, free_cell, (shapes_lang)lang, 1);
            if (lang == SHAPES_EN) snprintf(extra, sizeof extra, " and a big violet rhombus in the %s.", place);
            else snprintf(extra, sizeof extra, "，一个大的紫色菱形在%s。", place);
            size_t end = strlen(cap) - (lang == SHAPES_EN ? 1 : strlen("。"));
            replace(buf, sizeof buf, cap, end, strlen(cap) - end, extra);
            s = score_text(buf, &sc);
            near(s.precision, n / (n + 1), "precision", buf);
            near(s.recall, 1.0, "recall", buf);
            assert_false(s.exact || s.faithful);
            tried[2]++;
        }
    }
    assert_true(tried[0] == 300 && tried[1] > 150 && tried[2] == 300);
}

/* ---- hand-written captions ------------------------------------------------ */

static shapes_scene hand_scene(void) {
    shapes_scene sc;
    memset(&sc, 0, sizeof sc);
    sc.n = 4;
    /* shape, color, size, cell: colours 0 red 4 blue 5 purple; shapes 0 circle
     * 4 hexagon 5 cross 6 diamond; cells 0 top-left 4 center 5 right 8 bottom-right */
    sc.obj[0] = (shapes_object){.shape = 0, .color = 0, .size = 0, .cell = 0};
    sc.obj[1] = (shapes_object){.shape = 0, .color = 4, .size = 1, .cell = 4};
    sc.obj[2] = (shapes_object){.shape = 5, .color = 5, .size = 1, .cell = 5};
    sc.obj[3] = (shapes_object){.shape = 4, .color = 4, .size = 0, .cell = 8};
    sc.ncap = 0;
    return sc;
}

static void parse_ok(const char *text, shapes_parse *p) {
    if (shapes_caption_parse(text, strlen(text), p) != QIAO_OK) fail_msg("\"%s\": %s", text, qiao_last_error());
}

static void mention_is(const shapes_parse *p, int i, int shape, int color, int size, int cell) {
    assert_true(i < p->n);
    const shapes_mention *m = &p->m[i];
    if (m->shape != shape || m->color != color || m->size != size || m->cell != cell)
        fail_msg("mention %d: (%d %d %d %d), expected (%d %d %d %d)", i, m->shape, m->color, m->size, m->cell, shape,
                 color, size, cell);
}

static void test_hand(void **state) {
    (void)state;
    shapes_scene sc = hand_scene();
    shapes_parse p;
    /* synonyms, hyphens, capitals, plurals and numbers */
    parse_ok("Four shapes: a little red disk in the upper-left, a BIG blue circle in the middle, "
             "a large violet plus sign on the right side and a small blue hexagon in the lower right.",
             &p);
    assert_int_equal(p.n, 4);
    assert_int_equal(p.count, 4);
    mention_is(&p, 0, 0, 0, 0, 0);
    mention_is(&p, 2, 5, 5, 1, 5);
    shapes_caption_score s;
    assert_int_equal(shapes_caption_score_of(&p, &sc, &s), QIAO_OK);
    assert_true(s.exact && s.faithful && s.count_right && s.f1 == 1.0);

    parse_ok("two blue circles on the left and 3 crosses", &p);
    assert_int_equal(p.n, 5);
    mention_is(&p, 0, 0, 4, -1, 3);
    mention_is(&p, 1, 0, 4, -1, 3);
    mention_is(&p, 4, 5, -1, -1, -1);
    assert_int_equal(p.count, -1);

    parse_ok("右上方有一个大的紫色十字，一个蓝色的小六边形在右下方，图中一共有四个图形，两个圆", &p);
    assert_int_equal(p.n, 4);
    mention_is(&p, 0, 5, 5, 1, 2);
    mention_is(&p, 1, 4, 4, 0, 8);
    mention_is(&p, 2, 0, -1, -1, -1);
    assert_int_equal(p.count, 4);

    /* partial mentions take any unmatched object with those attributes, and
     * the matching is the largest one: "a circle" must leave the red circle
     * to "a red circle" */
    s = score_text("A circle, a red circle and a blue hexagon.", &sc);
    assert_int_equal(s.matched, 3);
    assert_true(s.faithful && !s.exact);
    near(s.recall, 0.75, "recall", "partial");
    s = score_text("Three circles.", &sc);
    assert_int_equal(s.matched, 2);
    near(s.precision, 2.0 / 3.0, "precision", "three circles");
    /* a colour or size with a bare noun is a mention; a bare number is a count */
    s = score_text("a purple shape and two blue objects", &sc);
    assert_int_equal(s.mentions, 3);
    assert_int_equal(s.matched, 3);
    s = score_text("There are five shapes in the picture.", &sc);
    assert_int_equal(s.mentions, 0);
    assert_int_equal(s.count, 5);
    assert_true(!s.count_right && !s.faithful);
    near(s.precision, 1.0, "precision", "count only");
    assert_true(s.recall == 0.0 && s.f1 == 0.0);
    parse_ok("There are four shapes. There are six shapes.", &p);
    assert_true(p.count == 4 && p.count_conflict);
    assert_int_equal(shapes_caption_score_of(&p, &sc, &s), QIAO_OK);
    assert_false(s.count_right);
    /* a place never crosses a clause; words between attributes end them */
    parse_ok("a red circle, in the top left", &p);
    mention_is(&p, 0, 0, 0, -1, -1);
    parse_ok("左上角，有一个红色的圆形", &p);
    mention_is(&p, 0, 0, 0, -1, -1);
    parse_ok("a red shiny circle", &p);
    mention_is(&p, 0, 0, -1, -1, -1);
    /* words are whole words */
    parse_ok("reddish circles are starred and centered", &p);
    assert_int_equal(p.n, 1);
    mention_is(&p, 0, 0, -1, -1, -1);
}

static void test_bad_input(void **state) {
    (void)state;
    shapes_parse p;
    const char bad[] = "a red \xE5\x9C circle";
    assert_int_equal(shapes_caption_parse(bad, sizeof bad - 1, &p), QIAO_ERR_FORMAT);
    assert_non_null(strstr(qiao_last_error(), "invalid UTF-8 at byte 6"));
    assert_true(p.n == 0 && p.count == -1);
    assert_int_equal(shapes_caption_parse(NULL, 3, &p), QIAO_ERR_INVALID_ARGUMENT);
    assert_int_equal(shapes_caption_parse("x", 1, NULL), QIAO_ERR_INVALID_ARGUMENT);
    assert_int_equal(shapes_caption_parse(NULL, 0, &p), QIAO_OK);
    assert_true(p.n == 0 && p.count == -1);
    /* garbage is an empty parse; NULs are spaces */
    const char nul[] = "a\0red\0circle";
    assert_int_equal(shapes_caption_parse(nul, sizeof nul - 1, &p), QIAO_OK);
    mention_is(&p, 0, 0, 0, -1, -1);
    parse_ok("¿¡ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ~~ 123456 shapes ?? 图 圆形的的的", &p);
    assert_int_equal(p.count, -1); /* 123456 is no count */
    assert_int_equal(p.n, 1);
    /* more mentions than kept: counted, and they lower precision */
    char many[4096] = "";
    for (int i = 0; i < 40; i++) strcat(many, "six red circles, ");
    parse_ok(many, &p);
    assert_int_equal(p.n, SHAPES_PARSE_MAX);
    assert_int_equal(p.n + p.n_dropped, 240);
    shapes_scene sc = hand_scene();
    shapes_caption_score s;
    assert_int_equal(shapes_caption_score_of(&p, &sc, &s), QIAO_OK);
    assert_int_equal(s.mentions, 240);
    assert_int_equal(s.matched, 1);
    assert_int_equal(shapes_caption_score_of(NULL, &sc, &s), QIAO_ERR_INVALID_ARGUMENT);
    p.n = -3;
    assert_int_equal(shapes_caption_score_of(&p, &sc, &s), QIAO_ERR_INVALID_ARGUMENT);
    /* random bytes: an error for invalid UTF-8, else a parse; never a crash */
    qc_rng r;
    qc_rng_seed(&r, 5);
    char junk[257];
    for (int t = 0; t < 2000; t++) {
        size_t n = (size_t)qc_rng_below(&r, 256);
        for (size_t i = 0; i < n; i++) junk[i] = (char)qc_rng_below(&r, t % 2 ? 128 : 256);
        qiao_status st = shapes_caption_parse(junk, n, &p);
        assert_true(st == QIAO_OK || st == QIAO_ERR_FORMAT);
        assert_true(p.n >= 0 && p.n <= SHAPES_PARSE_MAX && p.count >= -1);
    }
}

int main(int argc, char **argv) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_generated), cmocka_unit_test(test_corrupted),
                                       cmocka_unit_test(test_hand), cmocka_unit_test(test_bad_input)};
    if (argc > 1) {
        char filter[128];
        snprintf(filter, sizeof filter, "test_%s", argv[1]);
        cmocka_set_test_filter(filter);
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
