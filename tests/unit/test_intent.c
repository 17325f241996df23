/* tests/unit/test_intent.c - the intent converters on the real corpora in
 * /work/shared/datasets (counts against their SOURCE.txt), the hand-written
 * e-commerce set, and malformed inputs that must fail naming file:line.
 *
 * Every output file is re-read here with cJSON, independently of the
 * converter's writer: each line one object, text valid UTF-8, and every
 * entity span text[start:end] == value. */
#define _POSIX_C_SOURCE 200809L /* mkdtemp, strdup */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <zlib.h>

#include "intent/intent.h"
#include "testutil.h"

#define SHARED "/work/shared/datasets"

/* ---- helpers -------------------------------------------------------------- */

static void make_tmpdir(char *buf, size_t cap) {
    snprintf(buf, cap, "/tmp/qiao-intent-XXXXXX");
    assert_non_null(mkdtemp(buf));
}

/* Removes a directory this test made (one level of files, then itself). */
static void rm_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char path[4200];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) rm_tree(path);
        else remove(path);
    }
    closedir(d);
    rmdir(dir);
}

static int file_exists(const char *dir, const char *name) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    struct stat st;
    return stat(path, &st) == 0;
}

static void write_file(const char *dir, const char *name, const char *content, size_t len) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(content, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

typedef struct labels {
    char *name[512];
    int64_t count[512][QINT_NSPLITS];
    size_t n;
} labels;

static size_t label_index(labels *L, const char *s) {
    for (size_t i = 0; i < L->n; i++)
        if (!strcmp(L->name[i], s)) return i;
    assert_true(L->n < 512);
    L->name[L->n] = strdup(s);
    memset(L->count[L->n], 0, sizeof L->count[L->n]);
    return L->n++;
}

static void labels_free(labels *L) {
    for (size_t i = 0; i < L->n; i++) free(L->name[i]);
    L->n = 0;
}

/* A zip archive at dir/name of one member stored uncompressed (the
 * converter reads stored and deflated members alike). */
static void write_zip(const char *dir, const char *name, const char *member, const char *content) {
    const size_t ml = strlen(member), cl = strlen(content), lh = 30 + ml, ch = 46 + ml;
    const uint32_t crc = (uint32_t)crc32(crc32(0L, Z_NULL, 0), (const Bytef *)content, (uInt)cl);
    unsigned char *z = calloc(lh + cl + ch + 22, 1);
    assert_non_null(z);
#define PUT16(p, v) ((p)[0] = (unsigned char)(v), (p)[1] = (unsigned char)((v) >> 8))
#define PUT32(p, v) (PUT16(p, (v)&0xFFFF), PUT16((p) + 2, ((uint32_t)(v) >> 16)))
    unsigned char *l = z, *c = z + lh + cl, *e = c + ch;
    PUT32(l, 0x04034b50u), PUT16(l + 4, 20), PUT32(l + 14, crc), PUT32(l + 18, cl), PUT32(l + 22, cl);
    PUT16(l + 26, ml);
    memcpy(l + 30, member, ml);
    memcpy(l + lh, content, cl);
    PUT32(c, 0x02014b50u), PUT16(c + 4, 20), PUT16(c + 6, 20), PUT32(c + 16, crc), PUT32(c + 20, cl);
    PUT32(c + 24, cl), PUT16(c + 28, ml), PUT32(c + 42, 0);
    memcpy(c + 46, member, ml);
    PUT32(e, 0x06054b50u), PUT16(e + 8, 1), PUT16(e + 10, 1), PUT32(e + 12, ch), PUT32(e + 16, lh + cl);
#undef PUT16
#undef PUT32
    write_file(dir, name, (const char *)z, lh + cl + ch + 22);
    free(z);
}

typedef struct read_result {
    int64_t lines, entities, multi, with_context, turns;
} read_result;

/* Reads out_dir/<split>.jsonl and checks every line; adds labels ("intents"
 * when present, else "intent") to L and entity types to T. */
static read_result read_split(const char *dir, int split, labels *L, labels *T, int need_entities) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s.jsonl", dir, qint_split_name(split));
    char *data;
    size_t len;
    read_result r = {0, 0, 0, 0, 0};
    assert_int_equal(qint_read_file(path, &data, &len), QIAO_OK);
    assert_true(len > 0 && data[len - 1] == '\n');
    size_t bad;
    assert_true(qint_utf8_valid(data, len, &bad));
    for (size_t pos = 0; pos < len;) {
        char *nl = memchr(data + pos, '\n', len - pos);
        assert_non_null(nl);
        cJSON *o = cJSON_ParseWithLength(data + pos, (size_t)(nl - data) - pos);
        if (!o) fprintf(stderr, "%s:%lld: not JSON\n", path, (long long)r.lines + 1);
        assert_non_null(o);
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(o, "text");
        const cJSON *intent = cJSON_GetObjectItemCaseSensitive(o, "intent");
        const cJSON *intents = cJSON_GetObjectItemCaseSensitive(o, "intents");
        const cJSON *ents = cJSON_GetObjectItemCaseSensitive(o, "entities");
        assert_true(cJSON_IsString(text) && text->valuestring[0]);
        assert_true(cJSON_IsString(intent) && intent->valuestring[0]);
        size_t tl = strlen(text->valuestring);
        if (need_entities) assert_true(cJSON_IsArray(ents));
        const cJSON *e;
        cJSON_ArrayForEach(e, ents) {
            const cJSON *s = cJSON_GetObjectItemCaseSensitive(e, "start");
            const cJSON *en = cJSON_GetObjectItemCaseSensitive(e, "end");
            const cJSON *ty = cJSON_GetObjectItemCaseSensitive(e, "type");
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(e, "value");
            assert_true(cJSON_IsNumber(s) && cJSON_IsNumber(en) && cJSON_IsString(ty) && cJSON_IsString(v));
            size_t a = (size_t)s->valuedouble, b = (size_t)en->valuedouble;
            assert_true(a < b && b <= tl);
            if (strlen(v->valuestring) != b - a || memcmp(text->valuestring + a, v->valuestring, b - a))
                fprintf(stderr, "%s:%lld: text[%zu:%zu] != \"%s\"\n", path, (long long)r.lines + 1, a, b,
                        v->valuestring);
            assert_int_equal(strlen(v->valuestring), b - a);
            assert_memory_equal(text->valuestring + a, v->valuestring, b - a);
            if (T) T->count[label_index(T, ty->valuestring)][split]++;
            r.entities++;
        }
        const cJSON *ctx = cJSON_GetObjectItemCaseSensitive(o, "context"), *turn;
        if (ctx) {
            assert_true(cJSON_IsArray(ctx) && cJSON_GetArraySize(ctx) > 0);
            r.with_context++;
        }
        cJSON_ArrayForEach(turn, ctx) {
            assert_true(cJSON_IsString(turn) && turn->valuestring[0]);
            r.turns++;
        }
        if (cJSON_IsArray(intents)) {
            int n = cJSON_GetArraySize(intents);
            if (n > 1) r.multi++;
            if (n == 1) assert_string_equal(cJSON_GetArrayItem(intents, 0)->valuestring, intent->valuestring);
            const cJSON *it;
            cJSON_ArrayForEach(it, intents) L->count[label_index(L, it->valuestring)][split]++;
        } else {
            L->count[label_index(L, intent->valuestring)][split]++;
        }
        cJSON_Delete(o);
        r.lines++;
        pos = (size_t)(nl - data) + 1;
    }
    free(data);
    /* the library's own checker agrees */
    qint_stats cs;
    memset(&cs, 0, sizeof cs);
    assert_int_equal(qint_check_jsonl(path, &cs), QIAO_OK);
    assert_int_equal(cs.examples[QINT_TRAIN], r.lines);
    assert_int_equal(cs.entities, r.entities);
    return r;
}

static int64_t label_count(const labels *L, const char *name, int split) {
    for (size_t i = 0; i < L->n; i++)
        if (!strcmp(L->name[i], name)) return L->count[i][split];
    return 0;
}

static void expect_error(qiao_status st, qiao_status want, const char *needle) {
    if (st != want || !strstr(qiao_last_error(), needle))
        fprintf(stderr, "status %d (want %d), message \"%s\" (want \"%s\")\n", st, want, qiao_last_error(), needle);
    assert_int_equal(st, want);
    assert_non_null(strstr(qiao_last_error(), needle));
}

/* ---- real corpora --------------------------------------------------------- */

static void test_clinc150(void **state) {
    (void)state;
    char dir[64];
    make_tmpdir(dir, sizeof dir);
    qint_stats s;
    assert_int_equal(qint_convert("clinc150", SHARED "/clinc150", NULL, dir, &s), QIAO_OK);
    labels L = {0};
    int64_t want[QINT_NSPLITS] = {15000 + 100, 3000 + 100, 4500 + 1000};
    for (int sp = 0; sp < QINT_NSPLITS; sp++) {
        read_result r = read_split(dir, sp, &L, NULL, 0);
        assert_int_equal(r.lines, want[sp]);
        assert_int_equal(s.examples[sp], want[sp]);
        assert_int_equal(r.entities, 0);
    }
    assert_int_equal(L.n, 151); /* 150 intents + oos */
    assert_int_equal(label_count(&L, "oos", QINT_TRAIN), 100);
    assert_int_equal(label_count(&L, "oos", QINT_VAL), 100);
    assert_int_equal(label_count(&L, "oos", QINT_TEST), 1000);
    /* 100/20/30 per in-scope intent */
    for (size_t i = 0; i < L.n; i++) {
        if (!strcmp(L.name[i], "oos")) continue;
        assert_int_equal(L.count[i][QINT_TRAIN], 100);
        assert_int_equal(L.count[i][QINT_VAL], 20);
        assert_int_equal(L.count[i][QINT_TEST], 30);
    }
    assert_int_equal(label_count(&L, "translate", QINT_TRAIN), 100);
    assert_true(file_exists(dir, "LICENSE.txt") && file_exists(dir, "SOURCE.md"));
    labels_free(&L);
    rm_tree(dir);
}

static void test_banking77(void **state) {
    (void)state;
    char dir[64];
    make_tmpdir(dir, sizeof dir);
    qint_stats s;
    assert_int_equal(qint_convert("banking77", SHARED "/banking77", NULL, dir, &s), QIAO_OK);
    labels L = {0};
    read_result tr = read_split(dir, QINT_TRAIN, &L, NULL, 0);
    read_result te = read_split(dir, QINT_TEST, &L, NULL, 0);
    assert_int_equal(tr.lines, 10003);
    assert_int_equal(te.lines, 3080);
    assert_false(file_exists(dir, "val.jsonl"));
    assert_int_equal(L.n, 77);
    for (size_t i = 0; i < L.n; i++) {
        assert_int_equal(L.count[i][QINT_TEST], 40);
        assert_true(L.count[i][QINT_TRAIN] > 0);
    }
    /* the categories file upstream lists the same 77 labels */
    char *cats;
    size_t len;
    assert_int_equal(qint_read_file(SHARED "/banking77/categories.json", &cats, &len), QIAO_OK);
    cJSON *arr = cJSON_Parse(cats);
    free(cats);
    assert_non_null(arr);
    assert_int_equal(cJSON_GetArraySize(arr), 77);
    const cJSON *c;
    cJSON_ArrayForEach(c, arr) assert_int_equal(label_count(&L, c->valuestring, QINT_TEST), 40);
    cJSON_Delete(arr);
    /* a quoted field with commas survives: this row is quoted upstream */
    char *tx;
    assert_int_equal(qint_read_file(strcat(strcpy((char[128]){0}, dir), "/train.jsonl"), &tx, &len), QIAO_OK);
    assert_non_null(strstr(tx, ","));
    free(tx);
    labels_free(&L);
    rm_tree(dir);
}

static void test_xsid(void **state) {
    (void)state;
    const char *langs[] = {"zh", "en"};
    for (int li = 0; li < 2; li++) {
        char dir[64];
        make_tmpdir(dir, sizeof dir);
        qint_stats s;
        assert_int_equal(qint_convert("xsid", SHARED "/xsid-zh", langs[li], dir, &s), QIAO_OK);
        labels L = {0}, T = {0};
        read_result va = read_split(dir, QINT_VAL, &L, &T, 1);
        read_result te = read_split(dir, QINT_TEST, &L, &T, 1);
        assert_int_equal(va.lines, 300);
        assert_int_equal(te.lines, 500);
        assert_int_equal(L.n, 16);
        /* SOURCE.txt label counts (val + test) */
        assert_int_equal(label_count(&L, "weather/find", QINT_VAL) + label_count(&L, "weather/find", QINT_TEST), 202);
        assert_int_equal(label_count(&L, "alarm/modify_alarm", QINT_VAL) +
                             label_count(&L, "alarm/modify_alarm", QINT_TEST), 1);
        assert_true(va.entities + te.entities > 1000);
        assert_true(label_count(&T, "datetime", QINT_TEST) > 0);
        labels_free(&L);
        labels_free(&T);
        if (li == 0) {
            /* the Chinese text is the "# text" sentence, not space-joined tokens */
            char *tx;
            size_t len;
            char p[128];
            snprintf(p, sizeof p, "%s/test.jsonl", dir);
            assert_int_equal(qint_read_file(p, &tx, &len), QIAO_OK);
            assert_non_null(strstr(tx, "{\"text\": \"增加一项提醒在今天下午4点\""));
            assert_non_null(strstr(tx, "\"type\": \"datetime\", \"value\": \"今天下午4点\""));
            free(tx);
        }
        rm_tree(dir);
    }
}

static void test_crosswoz(void **state) {
    (void)state;
    char dir[64];
    make_tmpdir(dir, sizeof dir);
    qint_stats s;
    assert_int_equal(qint_convert("crosswoz", SHARED "/crosswoz", NULL, dir, &s), QIAO_OK);
    labels L = {0}, T = {0};
    read_result va = read_split(dir, QINT_VAL, &L, &T, 1);
    read_result te = read_split(dir, QINT_TEST, &L, &T, 1);
    assert_false(file_exists(dir, "train.jsonl"));
    assert_int_equal(va.lines, 4229);
    assert_int_equal(te.lines, 4238);
    assert_int_equal(L.n, 16);
    /* label frequencies from SOURCE.txt */
    assert_int_equal(label_count(&L, "Request-餐馆", QINT_VAL) + label_count(&L, "Request-餐馆", QINT_TEST), 2209);
    assert_int_equal(label_count(&L, "General-bye", QINT_VAL) + label_count(&L, "General-bye", QINT_TEST), 62);
    /* 3,932 single-label, 39 without acts: the rest are multi-label */
    assert_int_equal(va.multi + te.multi, 8467 - 3932 - 39);
    assert_int_equal(s.multi_label, va.multi + te.multi);
    assert_true(va.entities + te.entities > 5000);
    assert_true(label_count(&T, "酒店-价格", QINT_VAL) > 0);
    /* every turn but a dialogue's first (500 dialogues a split) has up to three before it */
    assert_int_equal(va.with_context, 4229 - 500);
    assert_int_equal(te.with_context, 4238 - 500);
    assert_true(va.turns > 2 * va.with_context && va.turns <= 3 * va.with_context);
    /* the second user turn of val dialogue 23: its first turn and the system's answer */
    char p[128], *tx;
    size_t len;
    snprintf(p, sizeof p, "%s/val.jsonl", dir);
    assert_int_equal(qint_read_file(p, &tx, &len), QIAO_OK);
    assert_non_null(strstr(tx, "\"context\": [\"你好，可以帮我推荐一个评分是4分以上，最低价格是400-500元的酒店吗？\", "
                               "\"可以呀，给您推荐北京工体A. Hotel酒店和北京中裕世纪大酒店，你看行吗？\"]}\n"));
    free(tx);
    labels_free(&L);
    labels_free(&T);
    rm_tree(dir);
}

/* ---- the e-commerce set --------------------------------------------------- */

static void test_ecommerce(void **state) {
    (void)state;
    char dir[64];
    make_tmpdir(dir, sizeof dir);
    qint_stats s;
    assert_int_equal(
        qint_ecommerce_build(QIAO_SOURCE_DIR "/datasets/intent/ecommerce_zh/source.tsv", dir, &s), QIAO_OK);
    labels L = {0}, T = {0};
    read_result tr = read_split(dir, QINT_TRAIN, &L, &T, 1);
    read_result te = read_split(dir, QINT_TEST, &L, &T, 1);
    assert_true(L.n >= 30);
    for (size_t i = 0; i < L.n; i++) {
        int64_t n = L.count[i][QINT_TRAIN] + L.count[i][QINT_TEST];
        if (n < 40) fprintf(stderr, "%s: %lld examples\n", L.name[i], (long long)n);
        assert_true(n >= 40);
        /* stratified: 25% of each intent, rounded */
        assert_int_equal(L.count[i][QINT_TEST], (n * 25 + 50) / 100);
    }
    assert_true(tr.entities + te.entities >= 150);
    for (size_t i = 0; i < T.n; i++) {
        int known = 0;
        for (int k = 0; qint_ecommerce_entity_types[k]; k++) known |= !strcmp(T.name[i], qint_ecommerce_entity_types[k]);
        assert_true(known);
    }
    assert_true(label_count(&T, "order_id", QINT_TRAIN) + label_count(&T, "order_id", QINT_TEST) > 20);
    assert_true(label_count(&T, "phone", QINT_TRAIN) + label_count(&T, "phone", QINT_TEST) > 10);
    /* no duplicate texts across both files */
    char *all[8192];
    size_t na = 0;
    for (int sp = QINT_TRAIN; sp <= QINT_TEST; sp += QINT_TEST) {
        char p[128];
        snprintf(p, sizeof p, "%s/%s.jsonl", dir, qint_split_name(sp));
        char *data;
        size_t len;
        assert_int_equal(qint_read_file(p, &data, &len), QIAO_OK);
        for (char *line = strtok(data, "\n"); line; line = strtok(NULL, "\n")) {
            cJSON *o = cJSON_Parse(line);
            assert_non_null(o);
            assert_true(na < 8192);
            all[na++] = strdup(cJSON_GetObjectItemCaseSensitive(o, "text")->valuestring);
            cJSON_Delete(o);
        }
        free(data);
    }
    assert_int_equal((int64_t)na, tr.lines + te.lines);
    for (size_t i = 0; i < na; i++)
        for (size_t j = i + 1; j < na; j++) assert_true(strcmp(all[i], all[j]) != 0);
    for (size_t i = 0; i < na; i++) free(all[i]);
    /* deterministic: a second build gives the same bytes */
    char dir2[64];
    make_tmpdir(dir2, sizeof dir2);
    assert_int_equal(
        qint_ecommerce_build(QIAO_SOURCE_DIR "/datasets/intent/ecommerce_zh/source.tsv", dir2, NULL), QIAO_OK);
    for (int sp = QINT_TRAIN; sp <= QINT_TEST; sp += QINT_TEST) {
        char p1[128], p2[128];
        snprintf(p1, sizeof p1, "%s/%s.jsonl", dir, qint_split_name(sp));
        snprintf(p2, sizeof p2, "%s/%s.jsonl", dir2, qint_split_name(sp));
        char *a, *b;
        size_t la, lb;
        assert_int_equal(qint_read_file(p1, &a, &la), QIAO_OK);
        assert_int_equal(qint_read_file(p2, &b, &lb), QIAO_OK);
        assert_int_equal(la, lb);
        assert_memory_equal(a, b, la);
        free(a);
        free(b);
    }
    labels_free(&L);
    labels_free(&T);
    rm_tree(dir);
    rm_tree(dir2);
}

/* ---- malformed input ------------------------------------------------------ */

static void test_bad_input(void **state) {
    (void)state;
    char in[64], out[64];
    make_tmpdir(in, sizeof in);
    make_tmpdir(out, sizeof out);
    char o[128];
    snprintf(o, sizeof o, "%s/o", out);

    /* CSV: unterminated quote on line 3, text after a quote, wrong field count */
    const char *csv1 = "text,category\nfine,card_arrival\n\"never closed,card_arrival\n";
    write_file(in, "train.csv", csv1, strlen(csv1));
    expect_error(qint_convert("banking77", in, NULL, o, NULL), QIAO_ERR_FORMAT, "train.csv:3");
    const char *csv2 = "text,category\n\"a \"\"quoted\"\", row\",x\n\"ok\"junk,y\n";
    write_file(in, "train.csv", csv2, strlen(csv2));
    expect_error(qint_convert("banking77", in, NULL, o, NULL), QIAO_ERR_FORMAT, "train.csv:3");
    const char *csv3 = "text,category\n\"multi\nline\",a\nthree,fields,here\n";
    write_file(in, "train.csv", csv3, strlen(csv3));
    expect_error(qint_convert("banking77", in, NULL, o, NULL), QIAO_ERR_FORMAT, "train.csv:4");
    const char *csv4 = "text,category\nbad \xC3\x28 utf8,a\n";
    write_file(in, "train.csv", csv4, strlen(csv4));
    expect_error(qint_convert("banking77", in, NULL, o, NULL), QIAO_ERR_FORMAT, "train.csv:2");
    const char *csv5 = "txt,cat\na,b\n";
    write_file(in, "train.csv", csv5, strlen(csv5));
    expect_error(qint_convert("banking77", in, NULL, o, NULL), QIAO_ERR_FORMAT, "train.csv:1");
    write_file(in, "train.csv", "", 0);
    expect_error(qint_convert("banking77", in, NULL, o, NULL), QIAO_ERR_FORMAT, "train.csv");
    /* a good train.csv with no test.csv: IO error, and nothing left behind */
    const char *csv6 = "text,category\n\"a, b\",x\n";
    write_file(in, "train.csv", csv6, strlen(csv6));
    expect_error(qint_convert("banking77", in, NULL, o, NULL), QIAO_ERR_IO, "test.csv");
    assert_false(file_exists(o, "train.jsonl"));
    assert_false(file_exists(o, ".train.jsonl.tmp"));

    /* JSON: a syntax error on line 4 */
    const char *js = "{\n  \"train\": [\n    [\"hi\", \"greet\"],\n    [\"oops\" \"x\"]\n  ]\n}\n";
    write_file(in, "data_full.json", js, strlen(js));
    expect_error(qint_convert("clinc150", in, NULL, o, NULL), QIAO_ERR_FORMAT, "data_full.json:4");
    const char *js2 = "{\"train\": [[\"hi\"]], \"val\": [], \"test\": [], \"oos_train\": [], \"oos_val\": [], "
                      "\"oos_test\": []}";
    write_file(in, "data_full.json", js2, strlen(js2));
    expect_error(qint_convert("clinc150", in, NULL, o, NULL), QIAO_ERR_FORMAT, "\"train\"[0]");
    write_file(in, "data_full.json", "[1, 2", 5);
    expect_error(qint_convert("clinc150", in, NULL, o, NULL), QIAO_ERR_FORMAT, "data_full.json:1");

    /* CrossWOZ: the user turns' JSONL and the dialogues' archives (the context) */
    const char *cw = "{\"split\": \"val\", \"dialog_id\": \"7\", \"turn\": 2, \"text\": \"有wifi吗\", \"dialog_act\": [], "
                     "\"intent_domain\": []}\n";
    write_file(in, "usr_utterances_val_test.jsonl", cw, strlen(cw));
    expect_error(qint_convert("crosswoz", in, NULL, o, NULL), QIAO_ERR_IO, "val.json.zip");
    const char *dialogs = "{\"7\": {\"messages\": [{\"role\": \"usr\", \"content\": \"推荐个酒店\"}, {\"role\": \"sys\", "
                          "\"content\": \"北京饭店\"}, {\"role\": \"usr\", \"content\": \"有wifi吗\"}]}}";
    write_zip(in, "val.json.zip", "val.json", dialogs);
    write_zip(in, "test.json.zip", "other.json", "{}");
    expect_error(qint_convert("crosswoz", in, NULL, o, NULL), QIAO_ERR_NOT_FOUND, "no member test.json");
    write_zip(in, "test.json.zip", "test.json", "{}");
    write_file(in, "LICENSE.txt", "Apache-2.0\n", 11);
    if (qint_convert("crosswoz", in, NULL, o, NULL) != QIAO_OK) fail_msg("%s", qiao_last_error());
    {
        char p[4200], *tx;
        size_t len;
        snprintf(p, sizeof p, "%s/val.jsonl", o);
        assert_int_equal(qint_read_file(p, &tx, &len), QIAO_OK);
        assert_non_null(strstr(tx, "\"context\": [\"推荐个酒店\", \"北京饭店\"]}\n"));
        free(tx);
    }
    /* a damaged archive: one byte of the member changed, so its CRC-32 fails */
    {
        char p[4200], *z;
        size_t len;
        snprintf(p, sizeof p, "%s/val.json.zip", in);
        assert_int_equal(qint_read_file(p, &z, &len), QIAO_OK);
        z[40] ^= 1;
        write_file(in, "val.json.zip", z, len);
        expect_error(qint_convert("crosswoz", in, NULL, o, NULL), QIAO_ERR_FORMAT, "fails its CRC-32");
        write_file(in, "val.json.zip", "PK not a zip", 12);
        expect_error(qint_convert("crosswoz", in, NULL, o, NULL), QIAO_ERR_FORMAT, "not a zip archive");
        free(z);
    }
    write_zip(in, "val.json.zip", "val.json", dialogs);
    /* a user turn that is not the dialogue's message */
    const char *cw3 = "{\"split\": \"val\", \"dialog_id\": \"7\", \"turn\": 1, \"text\": \"有wifi吗\", \"dialog_act\": [], "
                      "\"intent_domain\": []}\n";
    write_file(in, "usr_utterances_val_test.jsonl", cw3, strlen(cw3));
    expect_error(qint_convert("crosswoz", in, NULL, o, NULL), QIAO_ERR_FORMAT, "is not this user turn");
    /* line 2 is not JSON, line 1 of the next has a bad act, then one without its dialogue */
    char cw4[512];
    snprintf(cw4, sizeof cw4, "%s{\"split\": \n", cw);
    write_file(in, "usr_utterances_val_test.jsonl", cw4, strlen(cw4));
    expect_error(qint_convert("crosswoz", in, NULL, o, NULL), QIAO_ERR_FORMAT, "usr_utterances_val_test.jsonl:2");
    const char *cw2 = "{\"split\": \"val\", \"dialog_id\": \"7\", \"turn\": 2, \"text\": \"有wifi吗\", "
                      "\"dialog_act\": [[\"Inform\", 3]], \"intent_domain\": []}\n";
    write_file(in, "usr_utterances_val_test.jsonl", cw2, strlen(cw2));
    expect_error(qint_convert("crosswoz", in, NULL, o, NULL), QIAO_ERR_FORMAT, "usr_utterances_val_test.jsonl:1");
    const char *cw5 = "{\"split\": \"val\", \"text\": \"你好\", \"dialog_act\": [], \"intent_domain\": []}\n";
    write_file(in, "usr_utterances_val_test.jsonl", cw5, strlen(cw5));
    expect_error(qint_convert("crosswoz", in, NULL, o, NULL), QIAO_ERR_FORMAT, "\"dialog_id\", \"turn\"");

    /* CoNLL: 2 columns on line 6; a bad BIO tag on line 5; a block without intent */
    const char *cl = "# text = 显示提醒\n# intent = reminder/show\n1\t显示\tx\tO\n\n# text = 你好\n2\t你好\n";
    write_file(in, "zh.valid.conll", cl, strlen(cl));
    expect_error(qint_convert("xsid", in, "zh", o, NULL), QIAO_ERR_FORMAT, "zh.valid.conll:6");
    const char *cl2 = "# text = 显示提醒\n# intent = r\n1\t显示\tr\tO\n2\t提醒\tr\tX-foo\n";
    write_file(in, "zh.valid.conll", cl2, strlen(cl2));
    expect_error(qint_convert("xsid", in, "zh", o, NULL), QIAO_ERR_FORMAT, "zh.valid.conll:4");
    const char *cl3 = "\n\n# text = 显示提醒\n1\t显示\tr\tO\n";
    write_file(in, "zh.valid.conll", cl3, strlen(cl3));
    expect_error(qint_convert("xsid", in, "zh", o, NULL), QIAO_ERR_FORMAT, "zh.valid.conll:3");
    expect_error(qint_convert("xsid", in, "fr", o, NULL), QIAO_ERR_INVALID_ARGUMENT, "fr");
    expect_error(qint_convert("nope", in, NULL, o, NULL), QIAO_ERR_INVALID_ARGUMENT, "nope");

    /* markup: unknown type, unclosed, stray ']', bad escape, duplicate, no tab */
    static const struct {
        const char *src, *needle;
    } mk[] = {
        {"# c\na\t好[date:昨天]\nb\t订单[zip:100000]\n", "src.tsv:3"},
        {"a\t好[date:昨天\n", "src.tsv:1"},
        {"a\tx\n\na\t多了]\n", "src.tsv:3"},
        {"a\t\\n转义\n", "src.tsv:1"},
        {"a\t你好\nb\t不同\nc\t你好\n", "duplicate of line 1"},
        {"a\t你好\nb 没有tab\n", "src.tsv:2"},
        {"A-b\t大写\n", "src.tsv:1"},
        {"a\t空值[phone:]\n", "src.tsv:1"},
        {"a\t坏\xE4\xBD\n", "src.tsv:1"},
        {"# only comments\n", "no examples"},
    };
    for (size_t i = 0; i < sizeof mk / sizeof mk[0]; i++) {
        write_file(in, "src.tsv", mk[i].src, strlen(mk[i].src));
        char p[128];
        snprintf(p, sizeof p, "%s/src.tsv", in);
        expect_error(qint_ecommerce_build(p, o, NULL), QIAO_ERR_FORMAT, mk[i].needle);
    }
    /* escapes work and spans are computed after them */
    const char *okm = "a\t\\[括号\\]订单[order_id:123]和\\\\\n";
    write_file(in, "src.tsv", okm, strlen(okm));
    char p[128];
    snprintf(p, sizeof p, "%s/src.tsv", in);
    assert_int_equal(qint_ecommerce_build(p, o, NULL), QIAO_OK);
    char *tx;
    size_t len;
    char q[160];
    snprintf(q, sizeof q, "%s/train.jsonl", o);
    assert_int_equal(qint_read_file(q, &tx, &len), QIAO_OK);
    assert_string_equal(tx, "{\"text\": \"[括号]订单123和\\\\\", \"intent\": \"a\", \"entities\": [{\"start\": 14, "
                            "\"end\": 17, \"type\": \"order_id\", \"value\": \"123\"}]}\n");
    free(tx);

    /* the checker names the bad line */
    const char *jl = "{\"text\": \"ab\", \"intent\": \"x\"}\n{\"text\": \"ab\", \"intent\": \"x\", \"entities\": "
                     "[{\"start\": 0, \"end\": 1, \"type\": \"t\", \"value\": \"b\"}]}\n";
    write_file(in, "x.jsonl", jl, strlen(jl));
    snprintf(p, sizeof p, "%s/x.jsonl", in);
    expect_error(qint_check_jsonl(p, NULL), QIAO_ERR_FORMAT, "x.jsonl:2");

    /* missing input */
    expect_error(qint_convert("clinc150", "/nonexistent-qiao", NULL, o, NULL), QIAO_ERR_IO, "/nonexistent-qiao");
    size_t bad = 99;
    assert_false(qint_utf8_valid("\xED\xA0\x80", 3, &bad)); /* a surrogate */
    assert_int_equal(bad, 0);
    assert_false(qint_utf8_valid("ok\xC0\xAF", 4, &bad)); /* overlong */
    assert_int_equal(bad, 2);
    assert_true(qint_utf8_valid("退货 ok", strlen("退货 ok"), &bad));
    rm_tree(in);
    rm_tree(out);
}

int main(int argc, char **argv) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clinc150), cmocka_unit_test(test_banking77), cmocka_unit_test(test_xsid),
        cmocka_unit_test(test_crosswoz), cmocka_unit_test(test_ecommerce), cmocka_unit_test(test_bad_input),
    };
    if (argc > 1) {
        char filter[64];
        snprintf(filter, sizeof filter, "test_%s", argv[1]);
        cmocka_set_test_filter(filter);
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
