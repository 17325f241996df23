/* tests/unit/test_shapes.c - the shapes world generator, checked on the files
 * it writes: same bytes for the same seed and any --jobs, captions and
 * answers true of the objects (re-derived by parsing the text with the word
 * tables), the cogent hold-out, answer balance, no overlap, speech WAVs. */
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <ftw.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testfs.h"
#include "testutil.h"
#include "shapes/shapes.h"

/* ---- files -------------------------------------------------------------- */

static char *tmpdir(void) {
    char *d = strdup("/tmp/qiao_shapes_XXXXXX");
    assert_non_null(mkdtemp(d));
    return d;
}

static unsigned char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)len + 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    b[len] = 0;
    *n = (size_t)len;
    return b;
}

static void same_file(const char *a, const char *b) {
    size_t na, nb;
    unsigned char *x = slurp(a, &na), *y = slurp(b, &nb);
    if (!x || !y || na != nb || memcmp(x, y, na)) fail_msg("%s and %s differ", a, b);
    free(x);
    free(y);
}

static void gen(const char *dir, shapes_split split, int64_t n, uint64_t seed, int jobs, int speech, int langs) {
    shapes_params p = shapes_default_params();
    p.n = n;
    p.seed = seed;
    p.split = split;
    p.jobs = jobs;
    p.speech = speech;
    p.langs = langs;
    p.size = 48;
    qiao_status st = shapes_generate(&p, dir);
    if (st != QIAO_OK) fail_msg("shapes_generate: %s", qiao_last_error());
}

/* The manifest's scenes, one cJSON per line. */
typedef struct manifest {
    cJSON **s;
    size_t n;
} manifest;

static manifest load(const char *dir) {
    char path[512];
    snprintf(path, sizeof path, "%s/manifest.jsonl", dir);
    size_t len;
    char *text = (char *)slurp(path, &len);
    assert_non_null(text);
    manifest m = {calloc(1, sizeof(cJSON *)), 0};
    for (char *save = NULL, *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        m.s = realloc(m.s, (m.n + 1) * sizeof(cJSON *));
        m.s[m.n] = cJSON_Parse(line);
        assert_non_null(m.s[m.n]);
        m.n++;
    }
    free(text);
    return m;
}

static void unload(manifest *m) {
    for (size_t i = 0; i < m->n; i++) cJSON_Delete(m->s[i]);
    free(m->s);
}

static const char *str(const cJSON *o, const char *k) {
    const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, k));
    assert_non_null(s);
    return s;
}
static double num(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    assert_true(cJSON_IsNumber(v));
    return v->valuedouble;
}

/* ---- objects of a scene, from the manifest ------------------------------ */

typedef struct obj {
    int shape, color, size, cell;
    double x, y, r;
} obj;

static int id_of(shapes_kind k, const char *name) {
    for (int i = 0; shapes_name(k, i); i++)
        if (!strcmp(shapes_name(k, i), name)) return i;
    fail_msg("unknown %d name %s", (int)k, name);
    return -1;
}

static int objects(const cJSON *scene, obj *o) {
    int n = 0;
    const cJSON *j;
    cJSON_ArrayForEach(j, cJSON_GetObjectItemCaseSensitive(scene, "objects")) {
        assert_true(n < SHAPES_MAX_OBJECTS);
        o[n] = (obj){id_of(SHAPES_K_SHAPE, str(j, "shape")), id_of(SHAPES_K_COLOR, str(j, "color")),
                     id_of(SHAPES_K_SIZE, str(j, "size")),   id_of(SHAPES_K_PLACE, str(j, "grid")),
                     num(j, "x"), num(j, "y"), num(j, "r")};
        n++;
    }
    assert_true(n >= 1);
    return n;
}

/* ---- reading text back with the word tables ---------------------------- */

/* What a stretch of text mentions; -1 = not mentioned. */
typedef struct mention {
    int shape, color, size, place;
} mention;

static int is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

/* Scans left to right, taking at each position the longest surface form of
 * any word (English words must start at a word boundary). */
static mention scan(const char *s, shapes_lang lang) {
    mention m = {-1, -1, -1, -1};
    static const shapes_kind K[4] = {SHAPES_K_SHAPE, SHAPES_K_COLOR, SHAPES_K_SIZE, SHAPES_K_PLACE};
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        size_t best = 0;
        int bk = -1, bid = -1;
        if (lang == SHAPES_ZH || i == 0 || !is_alpha(s[i - 1]))
            for (int k = 0; k < 4; k++)
                for (int id = 0; shapes_name(K[k], id); id++)
                    for (int f = 0; shapes_form(K[k], id, lang, f); f++) {
                        const char *w = shapes_form(K[k], id, lang, f);
                        size_t l = strlen(w);
                        if (l > best && !strncmp(s + i, w, l)) best = l, bk = k, bid = id;
                    }
        if (best) {
            int *slot = bk == 0 ? &m.shape : bk == 1 ? &m.color : bk == 2 ? &m.size : &m.place;
            if (*slot >= 0 && *slot != bid) fail_msg("two different words of one kind in \"%s\"", s);
            *slot = bid;
            i += best;
        } else {
            i++;
        }
    }
    return m;
}

static int fits(const obj *o, mention m) {
    return (m.shape < 0 || o->shape == m.shape) && (m.color < 0 || o->color == m.color) &&
           (m.size < 0 || o->size == m.size) && (m.place < 0 || o->cell == m.place);
}

/* Splits a caption into clauses (one object each) in place. */
static int clauses(char *s, shapes_lang lang, char **out, int cap) {
    static const char *const SEP_EN[] = {", ", ": ", ".", " and ", NULL};
    static const char *const SEP_ZH[] = {"，", "：", "。", "和", NULL};
    const char *const *sep = lang == SHAPES_EN ? SEP_EN : SEP_ZH;
    int n = 0;
    char *p = s;
    while (*p) {
        char *cut = NULL;
        size_t cl = 0;
        for (int k = 0; sep[k]; k++) {
            char *q = strstr(p, sep[k]);
            if (q && (!cut || q < cut)) cut = q, cl = strlen(sep[k]);
        }
        if (cut) *cut = '\0';
        if (*p && n < cap) out[n++] = p;
        if (!cut) break;
        p = cut + cl;
    }
    return n;
}

/* The number a clause states as the number of shapes, or -1. */
static int stated_count(const char *c, shapes_lang lang) {
    static const char *const ZH[7] = {"零", "一", "两", "三", "四", "五", "六"};
    if (lang == SHAPES_ZH) {
        const char *q = strstr(c, "个图形");
        if (!q || q - c < 3) return -1;
        for (int k = 0; k < 7; k++)
            if (!strncmp(q - 3, ZH[k], 3)) return k;
        fail_msg("no number before 个图形 in \"%s\"", c);
    }
    const char *q = strstr(c, " shape");
    if (!q) return -1;
    for (int k = 0; k <= 6; k++) {
        const char *w = shapes_answer_text(SHAPES_A_NUM0 + k, SHAPES_EN);
        size_t l = strlen(w);
        if ((size_t)(q - c) >= l && !strncmp(q - l, w, l)) return k;
    }
    return -1;
}

/* ---- cases -------------------------------------------------------------- */

static void test_determinism(void **state) {
    (void)state;
    char *a = tmpdir(), *b = tmpdir(), *c = tmpdir();
    gen(a, SHAPES_TRAIN, 40, 11, 1, 0, 3);
    gen(b, SHAPES_TRAIN, 40, 11, 2, 0, 3);
    char pa[512], pb[512], pc[512];
    snprintf(pa, sizeof pa, "%s/manifest.jsonl", a);
    snprintf(pb, sizeof pb, "%s/manifest.jsonl", b);
    same_file(pa, pb);
    snprintf(pa, sizeof pa, "%s/dataset.json", a);
    snprintf(pb, sizeof pb, "%s/dataset.json", b);
    same_file(pa, pb);
    for (int i = 0; i < 40; i++) {
        snprintf(pa, sizeof pa, "%s/images/%06d.png", a, i);
        snprintf(pb, sizeof pb, "%s/images/%06d.png", b, i);
        same_file(pa, pb);
    }
    /* a PNG is a real 48x48 image */
    size_t n;
    unsigned char *png = slurp(pa, &n);
    assert_true(n > 33 && !memcmp(png, "\x89PNG", 4));
    assert_int_equal(png[16] << 24 | png[17] << 16 | png[18] << 8 | png[19], 48);
    free(png);

    /* resume: a lost image and manifest come back with the same bytes */
    snprintf(pb, sizeof pb, "%s/images/000007.png", b);
    assert_int_equal(remove(pb), 0);
    snprintf(pb, sizeof pb, "%s/manifest.jsonl", b);
    assert_int_equal(remove(pb), 0);
    gen(b, SHAPES_TRAIN, 40, 11, 2, 0, 3);
    snprintf(pa, sizeof pa, "%s/images/000007.png", a);
    snprintf(pb, sizeof pb, "%s/images/000007.png", b);
    same_file(pa, pb);
    snprintf(pa, sizeof pa, "%s/manifest.jsonl", a);
    snprintf(pb, sizeof pb, "%s/manifest.jsonl", b);
    same_file(pa, pb);
    /* other arguments into the same directory are refused */
    shapes_params p = shapes_default_params();
    p.n = 40;
    p.seed = 12;
    p.size = 48;
    assert_int_equal(shapes_generate(&p, b), QIAO_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(qiao_last_error(), "other arguments"));
    /* another seed gives another manifest */
    gen(c, SHAPES_TRAIN, 40, 12, 2, 0, 3);
    snprintf(pc, sizeof pc, "%s/manifest.jsonl", c);
    size_t na, nc;
    unsigned char *x = slurp(pa, &na), *y = slurp(pc, &nc);
    assert_true(na != nc || memcmp(x, y, na));
    free(x);
    free(y);

    /* speech: same WAV bytes from one and two jobs */
    char *s1 = tmpdir(), *s2 = tmpdir();
    gen(s1, SHAPES_VAL, 1, 5, 1, 1, 3);
    gen(s2, SHAPES_VAL, 1, 5, 2, 1, 3);
    manifest m = load(s1);
    const cJSON *w;
    int wavs = 0;
    cJSON_ArrayForEach(w, cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(m.s[0], "speech"), "qa")) {
        snprintf(pa, sizeof pa, "%s/%s", s1, w->valuestring);
        snprintf(pb, sizeof pb, "%s/%s", s2, w->valuestring);
        same_file(pa, pb);
        wavs++;
    }
    assert_true(wavs >= 2);
    unload(&m);
    const char *dirs[5] = {a, b, c, s1, s2};
    for (int i = 0; i < 5; i++) {
        qt_rm_rf(dirs[i]);
        free((void *)dirs[i]);
    }
}

static void test_captions_true(void **state) {
    (void)state;
    char *d = tmpdir();
    gen(d, SHAPES_TRAIN, 150, 21, 2, 0, 3);
    manifest m = load(d);
    assert_int_equal(m.n, 150);
    for (size_t i = 0; i < m.n; i++) {
        obj o[SHAPES_MAX_OBJECTS];
        int n = objects(m.s[i], o);
        for (int lang = 0; lang < SHAPES_NLANGS; lang++) {
            const cJSON *caps = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(m.s[i], "captions"),
                                                                 lang ? "en" : "zh");
            assert_true(cJSON_GetArraySize(caps) >= 2 && cJSON_GetArraySize(caps) <= 3);
            int k = 0;
            const cJSON *c;
            cJSON_ArrayForEach(c, caps) {
                char buf[SHAPES_TEXT_MAX], *cl[16];
                snprintf(buf, sizeof buf, "%s", c->valuestring);
                int nc = clauses(buf, (shapes_lang)lang, cl, 16);
                int used[SHAPES_MAX_OBJECTS] = {0}, mentioned = 0;
                for (int j = 0; j < nc; j++) {
                    mention me = scan(cl[j], (shapes_lang)lang);
                    if (me.shape < 0) {
                        if (me.color >= 0 || me.size >= 0 || me.place >= 0)
                            fail_msg("attribute without a shape in \"%s\"", c->valuestring);
                        int cnt = stated_count(cl[j], (shapes_lang)lang);
                        if (cnt >= 0 && cnt != n) fail_msg("\"%s\" states %d shapes, scene has %d", c->valuestring, cnt, n);
                        continue;
                    }
                    mentioned++;
                    int found = -1;
                    for (int q = 0; q < n && found < 0; q++)
                        if (fits(&o[q], me) && (k > 0 || !used[q])) found = q;
                    if (found < 0) fail_msg("scene %zu: \"%s\" is not in the image", i, cl[j]);
                    if (k == 0) { /* the long caption names every attribute of every object once */
                        if (me.color < 0 || me.size < 0 || me.place < 0) fail_msg("long caption clause \"%s\" is incomplete", cl[j]);
                        used[found] = 1;
                    }
                }
                if (k == 0 && mentioned != n) fail_msg("scene %zu: long caption names %d of %d objects", i, mentioned, n);
                k++;
            }
        }
    }
    unload(&m);
    qt_rm_rf(d);
    free(d);
}

/* The unique object a noun phrase (with its attribute words) picks out. */
static int resolve(const obj *o, int n, const char *np) {
    mention me = scan(np, SHAPES_EN);
    int found = -1, c = 0;
    for (int q = 0; q < n; q++)
        if (fits(&o[q], me)) found = q, c++;
    if (c != 1) fail_msg("\"%s\" picks %d objects, not one", np, c);
    return found;
}

static int rel_holds(const obj *a, const obj *b, int rel) {
    switch (rel) {
    case 0: return a->cell % 3 < b->cell % 3;
    case 1: return a->cell % 3 > b->cell % 3;
    case 2: return a->cell / 3 < b->cell / 3;
    default: return a->cell / 3 > b->cell / 3;
    }
}

static const char *const REL[4] = {" to the left of the ", " to the right of the ", " above the ", " below the "};

/* The referent of "the object in the top left" / "the NP" / "the object
 * <relation> the NP". */
static int referent(const obj *o, int n, const char *ref) {
    for (int rel = 0; rel < 4; rel++) {
        const char *p = strstr(ref, REL[rel]);
        if (!p) continue;
        int anchor = resolve(o, n, p + strlen(REL[rel]));
        int found = -1, c = 0;
        for (int q = 0; q < n; q++)
            if (q != anchor && rel_holds(&o[q], &o[anchor], rel)) found = q, c++;
        if (c != 1) fail_msg("\"%s\": %d objects in that relation", ref, c);
        return found;
    }
    return resolve(o, n, ref);
}

static int answer_of(const obj *o, int n, const char *type, const char *q) {
    char buf[SHAPES_TEXT_MAX];
    snprintf(buf, sizeof buf, "%s", q);
    size_t L = strlen(buf);
    assert_true(L > 1 && buf[L - 1] == '?');
    buf[--L] = '\0';
    if (!strcmp(type, "count") || !strcmp(type, "exist")) {
        mention me = scan(buf, SHAPES_EN);
        int c = 0;
        for (int k = 0; k < n; k++) c += fits(&o[k], me);
        if (!strcmp(type, "count")) return SHAPES_A_NUM0 + c;
        return c ? SHAPES_A_YES : SHAPES_A_NO;
    }
    if (!strcmp(type, "compare")) {
        int rel = !strncmp(buf, "Are there more ", 15) ? 0 : !strncmp(buf, "Are there fewer ", 16) ? 1 : 2;
        char *mid = rel == 2 ? strstr(buf + strlen("Are there as many"), " as ") : strstr(buf, " than ");
        assert_non_null(mid);
        *mid = '\0';
        mention a = scan(buf, SHAPES_EN), b = scan(mid + 1, SHAPES_EN);
        int ca = 0, cb = 0;
        for (int k = 0; k < n; k++) ca += fits(&o[k], a), cb += fits(&o[k], b);
        int yes = rel == 0 ? ca > cb : rel == 1 ? ca < cb : ca == cb;
        return yes ? SHAPES_A_YES : SHAPES_A_NO;
    }
    if (!strcmp(type, "spatial")) {
        if (!strncmp(buf, "Where is the ", 13)) return SHAPES_A_PLACE0 + o[resolve(o, n, buf + 13)].cell;
        char *near = strstr(buf, " to the ");
        if (!strncmp(buf, "What color is the object ", 25) && near && (strstr(buf, "nearest") || strstr(buf, "closest"))) {
            int a = resolve(o, n, near + 8), best = -1;
            double d1 = 1e9;
            for (int k = 0; k < n; k++) {
                double d = hypot(o[k].x - o[a].x, o[k].y - o[a].y);
                if (k != a && d < d1) d1 = d, best = k;
            }
            return SHAPES_A_COLOR0 + o[best].color;
        }
        assert_true(!strncmp(buf, "Is the ", 7));
        for (int rel = 0; rel < 4; rel++) {
            char *p = strstr(buf, REL[rel]);
            if (!p) continue;
            *p = '\0';
            int a = resolve(o, n, buf + 7), b = resolve(o, n, p + strlen(REL[rel]));
            assert_true(rel < 2 ? o[a].cell % 3 != o[b].cell % 3 : o[a].cell / 3 != o[b].cell / 3);
            return rel_holds(&o[a], &o[b], rel) ? SHAPES_A_YES : SHAPES_A_NO;
        }
        fail_msg("unknown spatial question \"%s\"", q);
    }
    /* attribute */
    int what;
    char *ref;
    if (!strncmp(buf, "What color is ", 14)) what = 0, ref = buf + 14;
    else if (!strncmp(buf, "What shape is ", 14)) what = 1, ref = buf + 14;
    else if (!strncmp(buf, "What size is ", 13)) what = 2, ref = buf + 13;
    else if (!strncmp(buf, "Is ", 3) && L > 15 && !strcmp(buf + L - 15, " small or large")) {
        what = 2;
        ref = buf + 3;
        buf[L - 15] = '\0';
    } else {
        fail_msg("unknown attribute question \"%s\"", q);
        return -1;
    }
    int t = referent(o, n, ref);
    return what == 0 ? SHAPES_A_COLOR0 + o[t].color : what == 1 ? SHAPES_A_SHAPE0 + o[t].shape : SHAPES_A_SIZE0 + o[t].size;
}

static int answer_index(const char *key) {
    for (int a = 0; a < SHAPES_NANSWERS; a++)
        if (!strcmp(key, shapes_answer_key(a))) return a;
    fail_msg("unknown answer_id %s", key);
    return -1;
}

static void test_qa_answers_correct(void **state) {
    (void)state;
    char *d = tmpdir();
    gen(d, SHAPES_TEST, 200, 31, 2, 0, 3);
    manifest m = load(d);
    int checked[SHAPES_NQTYPES] = {0};
    for (size_t i = 0; i < m.n; i++) {
        obj o[SHAPES_MAX_OBJECTS];
        int n = objects(m.s[i], o);
        const cJSON *q, *prev = NULL;
        cJSON_ArrayForEach(q, cJSON_GetObjectItemCaseSensitive(m.s[i], "qa")) {
            const char *lang = str(q, "lang"), *type = str(q, "type"), *key = str(q, "answer_id");
            int a = answer_index(key);
            shapes_lang l = !strcmp(lang, "zh") ? SHAPES_ZH : SHAPES_EN;
            assert_string_equal(str(q, "answer"), shapes_answer_text(a, l));
            if (l == SHAPES_ZH) { /* the zh question is followed by its English twin */
                prev = q;
                continue;
            }
            assert_non_null(prev);
            assert_string_equal(str(prev, "answer_id"), key);
            assert_string_equal(str(prev, "type"), type);
            int want = answer_of(o, n, type, str(q, "question"));
            if (want != a)
                fail_msg("scene %zu: \"%s\" answered %s, objects say %s", i, str(q, "question"), key, shapes_answer_key(want));
            for (int t = 0; t < SHAPES_NQTYPES; t++)
                if (!strcmp(type, shapes_qtype_name(t))) checked[t]++;
            prev = NULL;
        }
    }
    for (int t = 0; t < SHAPES_NQTYPES; t++) assert_true(checked[t] > 50);
    unload(&m);
    qt_rm_rf(d);
    free(d);
}

static void test_cogent_holdout(void **state) {
    (void)state;
    char *tr = tmpdir(), *cg = tmpdir();
    gen(tr, SHAPES_TRAIN, 200, 41, 2, 0, 3);
    gen(cg, SHAPES_COGENT, 60, 41, 2, 0, 3);
    manifest m = load(tr);
    for (size_t i = 0; i < m.n; i++) {
        obj o[SHAPES_MAX_OBJECTS];
        int n = objects(m.s[i], o);
        for (int k = 0; k < n; k++)
            if (shapes_is_cogent_pair(o[k].color, o[k].shape)) fail_msg("train scene %zu holds a cogent pair", i);
        /* nor does any English question ask about one */
        const cJSON *q;
        cJSON_ArrayForEach(q, cJSON_GetObjectItemCaseSensitive(m.s[i], "qa")) {
            for (int p = 0; p < SHAPES_NCOGENT; p++) {
                int c, s;
                shapes_cogent_pair(p, &c, &s);
                char phrase[64];
                snprintf(phrase, sizeof phrase, "%s %s", shapes_form(SHAPES_K_COLOR, c, SHAPES_EN, 0),
                         shapes_form(SHAPES_K_SHAPE, s, SHAPES_EN, 0));
                assert_null(strstr(str(q, "question"), phrase));
            }
        }
    }
    unload(&m);
    m = load(cg);
    assert_int_equal(m.n, 60);
    int seen[SHAPES_NCOGENT] = {0};
    for (size_t i = 0; i < m.n; i++) {
        obj o[SHAPES_MAX_OBJECTS];
        int n = objects(m.s[i], o), has = 0;
        assert_string_equal(str(m.s[i], "split"), "cogent");
        for (int k = 0; k < n; k++)
            for (int p = 0; p < SHAPES_NCOGENT; p++) {
                int c, s;
                shapes_cogent_pair(p, &c, &s);
                if (o[k].color == c && o[k].shape == s) has = 1, seen[p]++;
            }
        if (!has) fail_msg("cogent scene %zu holds no cogent pair", i);
    }
    for (int p = 0; p < SHAPES_NCOGENT; p++) assert_true(seen[p] > 0);
    unload(&m);
    /* dataset.json lists the pairs */
    char path[512];
    snprintf(path, sizeof path, "%s/dataset.json", cg);
    size_t len;
    char *t = (char *)slurp(path, &len);
    cJSON *ds = cJSON_Parse(t);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(ds, "cogent_pairs")), SHAPES_NCOGENT);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(ds, "answers")), SHAPES_NANSWERS);
    cJSON_Delete(ds);
    free(t);
    qt_rm_rf(tr);
    qt_rm_rf(cg);
    free(tr);
    free(cg);
}

static void test_balance(void **state) {
    (void)state;
    char *d = tmpdir();
    gen(d, SHAPES_VAL, 300, 51, 2, 0, 3);
    char path[512];
    snprintf(path, sizeof path, "%s/manifest.jsonl", d);
    shapes_baseline b;
    assert_int_equal(shapes_blind_baseline(path, &b), QIAO_OK);
    /* the most frequent answer's share, per type: uniform would be 1/7,
     * 1/17, 1/2, 1/19, 1/2 */
    static const double LIMIT[SHAPES_NQTYPES] = {0.30, 0.15, 0.60, 0.15, 0.60};
    manifest m = load(d);
    int64_t hist[SHAPES_NQTYPES][SHAPES_NANSWERS] = {{0}}, tot[SHAPES_NQTYPES] = {0};
    for (size_t i = 0; i < m.n; i++) {
        const cJSON *q;
        cJSON_ArrayForEach(q, cJSON_GetObjectItemCaseSensitive(m.s[i], "qa")) {
            for (int t = 0; t < SHAPES_NQTYPES; t++)
                if (!strcmp(str(q, "type"), shapes_qtype_name(t))) hist[t][answer_index(str(q, "answer_id"))]++, tot[t]++;
        }
    }
    for (int t = 0; t < SHAPES_NQTYPES; t++) {
        int64_t best = 0;
        for (int a = 0; a < SHAPES_NANSWERS; a++) best = hist[t][a] > best ? hist[t][a] : best;
        assert_int_equal(b.count[t], tot[t]);
        assert_true(tot[t] > 100);
        assert_true(fabs(b.accuracy[t] - (double)best / (double)tot[t]) < 1e-12);
        if (b.accuracy[t] >= LIMIT[t])
            fail_msg("%s: majority answer %s has %.1f%% (limit %.0f%%)", shapes_qtype_name(t),
                     shapes_answer_key(b.majority[t]), 100 * b.accuracy[t], 100 * LIMIT[t]);
    }
    unload(&m);
    /* a broken manifest is refused */
    FILE *f = fopen(path, "ab");
    fputs("{\"qa\": [{\"type\": \"count\", \"answer_id\": \"seven\"}]}\n", f);
    fclose(f);
    assert_int_equal(shapes_blind_baseline(path, &b), QIAO_ERR_FORMAT);
    qt_rm_rf(d);
    free(d);
}

static void test_no_overlap(void **state) {
    (void)state;
    char *d = tmpdir();
    gen(d, SHAPES_TRAIN, 200, 61, 2, 0, 3);
    manifest m = load(d);
    for (size_t i = 0; i < m.n; i++) {
        obj o[SHAPES_MAX_OBJECTS];
        int n = objects(m.s[i], o);
        for (int k = 0; k < n; k++) {
            int col = (int)(o[k].x * 3), row = (int)(o[k].y * 3);
            assert_int_equal(row * 3 + col, o[k].cell);
            /* the shape's circumscribed circle stays inside its cell */
            assert_true(o[k].x - o[k].r >= col / 3.0 && o[k].x + o[k].r <= (col + 1) / 3.0);
            assert_true(o[k].y - o[k].r >= row / 3.0 && o[k].y + o[k].r <= (row + 1) / 3.0);
            for (int j = 0; j < k; j++) {
                assert_int_not_equal(o[j].cell, o[k].cell);
                assert_true(hypot(o[j].x - o[k].x, o[j].y - o[k].y) > o[j].r + o[k].r);
            }
        }
    }
    unload(&m);
    qt_rm_rf(d);
    free(d);
}

static size_t utf8_chars(const char *s) {
    size_t n = 0;
    for (; *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

static void test_speech(void **state) {
    (void)state;
    char *d = tmpdir();
    gen(d, SHAPES_TRAIN, 2, 71, 2, 1, 3);
    manifest m = load(d);
    int wavs = 0;
    for (size_t i = 0; i < m.n; i++) {
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(m.s[i], "speech");
        assert_non_null(sp);
        const cJSON *texts[3], *paths[3];
        texts[0] = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(m.s[i], "captions"), "zh");
        texts[1] = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(m.s[i], "captions"), "en");
        texts[2] = cJSON_GetObjectItemCaseSensitive(m.s[i], "qa");
        paths[0] = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(sp, "captions"), "zh");
        paths[1] = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(sp, "captions"), "en");
        paths[2] = cJSON_GetObjectItemCaseSensitive(sp, "qa");
        for (int g = 0; g < 3; g++) {
            assert_int_equal(cJSON_GetArraySize(texts[g]), cJSON_GetArraySize(paths[g]));
            for (int k = 0; k < cJSON_GetArraySize(paths[g]); k++) {
                const cJSON *t = cJSON_GetArrayItem(texts[g], k);
                const char *text = g < 2 ? t->valuestring : str(t, "question");
                int zh = g == 0 || (g == 2 && !strcmp(str(t, "lang"), "zh"));
                char path[512];
                snprintf(path, sizeof path, "%s/%s", d, cJSON_GetArrayItem(paths[g], k)->valuestring);
                size_t len;
                unsigned char *w = slurp(path, &len);
                if (!w) fail_msg("%s missing", path);
                assert_true(len > 44 && !memcmp(w, "RIFF", 4) && !memcmp(w + 8, "WAVEfmt ", 8));
                assert_int_equal(w[22] | w[23] << 8, 1);                                         /* mono */
                assert_int_equal(w[24] | w[25] << 8 | w[26] << 16 | w[27] << 24, 16000);         /* Hz */
                assert_int_equal(w[34] | w[35] << 8, 16);                                        /* bits */
                size_t ns = (size_t)(w[40] | w[41] << 8 | w[42] << 16 | w[43] << 24) / 2;
                assert_int_equal(44 + 2 * ns, len);
                double sec = (double)ns / 16000.0, rms = 0;
                for (size_t s = 0; s < ns; s++) {
                    double v = (int16_t)(w[44 + 2 * s] | w[45 + 2 * s] << 8);
                    rms += v * v;
                }
                rms = sqrt(rms / (double)ns);
                double per_char = sec / (double)utf8_chars(text);
                if (rms < 300 || sec < 0.4 || sec > 40 || per_char < (zh ? 0.08 : 0.02) || per_char > (zh ? 0.9 : 0.2))
                    fail_msg("%s: %.2f s, rms %.0f for \"%s\"", path, sec, rms, text);
                free(w);
                wavs++;
            }
        }
    }
    assert_true(wavs >= 2 * (2 * 2 + 2 * 3));
    unload(&m);
    qt_rm_rf(d);
    free(d);
}

/* --speech-questions: the long caption of each language and every question
 * spoken, the WAV of question k at speech.qa[k], each the same bytes as
 * --speech writes for that question; dataset.json says "questions". */
static void test_speech_questions(void **state) {
    (void)state;
    char *d = tmpdir(), *all = tmpdir();
    gen(d, SHAPES_TRAIN, 2, 73, 2, SHAPES_SPEECH_QUESTIONS, 3);
    manifest m = load(d);
    for (size_t i = 0; i < m.n; i++) {
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(m.s[i], "speech");
        assert_non_null(sp);
        const cJSON *caps = cJSON_GetObjectItemCaseSensitive(sp, "captions");
        assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(caps, "zh")), 1);
        assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(caps, "en")), 1);
        const cJSON *qa = cJSON_GetObjectItemCaseSensitive(m.s[i], "qa");
        const cJSON *wav = cJSON_GetObjectItemCaseSensitive(sp, "qa");
        assert_true(cJSON_GetArraySize(qa) >= 2);
        assert_int_equal(cJSON_GetArraySize(qa), cJSON_GetArraySize(wav));
        for (int k = 0; k < cJSON_GetArraySize(wav); k++) {
            const char *rel = cJSON_GetArrayItem(wav, k)->valuestring;
            char path[512];
            snprintf(path, sizeof path, "%s/%s", d, rel);
            size_t len;
            unsigned char *w = slurp(path, &len);
            if (!w || len <= 44) fail_msg("%s missing or empty", path);
            free(w);
            /* question k is asked in the language its WAV's name says */
            char want[16];
            snprintf(want, sizeof want, "_qa_%s_", str(cJSON_GetArrayItem(qa, k), "lang"));
            assert_non_null(strstr(rel, want));
        }
    }
    char path[512];
    snprintf(path, sizeof path, "%s/dataset.json", d);
    size_t len;
    char *desc = (char *)slurp(path, &len);
    assert_non_null(desc);
    assert_non_null(strstr(desc, "\"speech\":\t\"questions\""));
    free(desc);
    /* the same question WAVs as --speech (one scene is enough) */
    gen(all, SHAPES_TRAIN, 1, 73, 1, SHAPES_SPEECH_ALL, 3);
    const cJSON *wav = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(m.s[0], "speech"), "qa");
    for (int k = 0; k < cJSON_GetArraySize(wav); k++) {
        char a[512], b[512];
        snprintf(a, sizeof a, "%s/%s", d, cJSON_GetArrayItem(wav, k)->valuestring);
        snprintf(b, sizeof b, "%s/%s", all, cJSON_GetArrayItem(wav, k)->valuestring);
        same_file(a, b);
    }
    unload(&m);
    qt_rm_rf(d);
    qt_rm_rf(all);
    free(d);
    free(all);
}

int main(int argc, char **argv) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_determinism), cmocka_unit_test(test_captions_true),
        cmocka_unit_test(test_qa_answers_correct), cmocka_unit_test(test_cogent_holdout),
        cmocka_unit_test(test_balance), cmocka_unit_test(test_no_overlap),
        cmocka_unit_test(test_speech), cmocka_unit_test(test_speech_questions),
    };
    if (argc > 1) {
        char filter[128];
        snprintf(filter, sizeof filter, "test_%s", argv[1]);
        cmocka_set_test_filter(filter);
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
