/* models/intent/data.h: the intent classifier's examples. The repository's
 * converted corpora read whole (counts, label spaces, multi-label CrossWOZ,
 * entity spans that are their values, CrossWOZ's overlapping ones); a test file against a model's label
 * space; every kind of bad line refused naming file:line; the stratified
 * split's sizes, determinism and rules. */
#include <stdio.h>
#include <string.h>

#include "testutil.h"

#include "models/intent/data.h"

#define INTENT_DIR QIAO_SOURCE_DIR "/datasets/intent"

static int64_t count_lines(const char *path) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    int64_t n = 0;
    for (int c; (c = fgetc(f)) != EOF;)
        n += c == '\n';
    fclose(f);
    return n;
}

static void real_sets(void **state) {
    (void)state;
    qmi_set s;
    qiao_status st = qmi_set_load(INTENT_DIR "/clinc150/train.jsonl", NULL, &s);
    if (st != QIAO_OK)
        fail_msg("%s", qiao_last_error());
    assert_int_equal(s.n, count_lines(INTENT_DIR "/clinc150/train.jsonl"));
    assert_int_equal(s.n_labels, 151); /* 150 intents and oos */
    assert_true(qmi_find(s.labels, s.n_labels, "oos") >= 0 && !s.multi_label);
    for (int32_t i = 1; i < s.n_labels; i++)
        assert_true(strcmp(s.labels[i - 1], s.labels[i]) < 0);
    /* the test split, read against the training set's labels */
    qmi_set t;
    st = qmi_set_load(INTENT_DIR "/clinc150/test.jsonl", &s, &t);
    if (st != QIAO_OK)
        fail_msg("%s", qiao_last_error());
    assert_int_equal(t.n_labels, 151);
    assert_int_equal(t.ex[0].line, 1);
    qmi_set_free(&t);
    /* another business's file is not this model's: the first unknown intent, by line */
    st = qmi_set_load(INTENT_DIR "/ecommerce_zh/test.jsonl", &s, &t);
    assert_int_equal(st, QIAO_ERR_FORMAT);
    assert_non_null(strstr(qiao_last_error(), "test.jsonl:1: intent"));
    assert_non_null(strstr(qiao_last_error(), "not one the model knows"));
    assert_int_equal(t.n, 0);
    qmi_set_free(&t);
    qmi_set_free(&s);
    /* an entity type the space lacks: its spans are dropped and counted, the rest kept */
    static const char line[] = "{\"text\": \"订单123到哪了\", \"intent\": \"a\", \"entities\": [{\"start\": 6, \"end\": "
                               "9, \"type\": \"order_id\", \"value\": \"123\"}, {\"start\": 0, \"end\": 6, \"type\": "
                               "\"thing\", \"value\": \"订单\"}]}\n";
    assert_int_equal(qmi_set_parse("t.jsonl", line, strlen(line), NULL, &s), QIAO_OK);
    assert_int_equal(s.n_types, 2);
    assert_int_equal(s.unknown_spans, 0);
    qmi_set only;
    memset(&only, 0, sizeof only);
    char *one_label[] = {"a"}, *one_type[] = {"order_id"};
    only.labels = one_label, only.n_labels = 1, only.types = one_type, only.n_types = 1;
    assert_int_equal(qmi_set_parse("t.jsonl", line, strlen(line), &only, &t), QIAO_OK);
    assert_int_equal(t.unknown_spans, 1);
    assert_int_equal(t.ex[0].n_spans, 1);
    assert_int_equal(t.ex[0].spans[0].start, 6);
    assert_int_equal(t.ex[0].spans[0].type, 0);
    qmi_set_free(&t);
    qmi_set_free(&s);

    /* entities: every span is its value, types numbered */
    st = qmi_set_load(INTENT_DIR "/ecommerce_zh/train.jsonl", NULL, &s);
    if (st != QIAO_OK)
        fail_msg("%s", qiao_last_error());
    int64_t spans = 0;
    for (int64_t i = 0; i < s.n; i++)
        for (int j = 0; j < s.ex[i].n_spans; j++) {
            const qmi_span *p = &s.ex[i].spans[j];
            assert_true(p->start >= 0 && p->end <= (int64_t)s.ex[i].len && p->type >= 0 && p->type < s.n_types);
            if (j)
                assert_true(p->start >= s.ex[i].spans[j - 1].start);
            spans++;
        }
    assert_true(spans > 100 && s.n_types >= 5 && qmi_find(s.types, s.n_types, "order_id") >= 0);
    qmi_set_free(&s);

    /* multi-label CrossWOZ: several labels, ascending, some example with more than one */
    st = qmi_set_load(INTENT_DIR "/crosswoz/val.jsonl", NULL, &s);
    if (st != QIAO_OK)
        fail_msg("%s", qiao_last_error());
    assert_true(s.multi_label);
    int many = 0;
    for (int64_t i = 0; i < s.n; i++) {
        many += s.ex[i].n_labels > 1;
        for (int j = 1; j < s.ex[i].n_labels; j++)
            assert_true(s.ex[i].labels[j - 1] < s.ex[i].labels[j]);
    }
    assert_true(many > 0);
    int none = 0; /* thank-yous: no act at all */
    for (int64_t i = 0; i < s.n; i++)
        none += s.ex[i].n_labels == 0;
    assert_true(none > 0);
    /* its overlapping spans (one phrase, two slots) are read, both kept */
    int overlaps = 0;
    for (int64_t i = 0; i < s.n; i++)
        for (int j = 1; j < s.ex[i].n_spans; j++)
            overlaps += s.ex[i].spans[j].start < s.ex[i].spans[j - 1].end;
    assert_true(overlaps > 0);
    /* the turns before each user turn: up to three, none before a dialogue's first */
    int with_context = 0;
    for (int64_t i = 0; i < s.n; i++) {
        assert_true(s.ex[i].n_context <= 3);
        with_context += s.ex[i].n_context > 0;
    }
    assert_int_equal(with_context, s.n - 500); /* 500 dialogues */
    printf("crosswoz val: %lld examples, %d labels, %d with several, %d with context\n", (long long)s.n, s.n_labels,
           many, with_context);
    qmi_set_free(&s);
}

/* Each bad line, third in a file whose second line is blank: the error
 * names "f.jsonl:3" and says what is wrong. */
static void bad_lines(void **state) {
    (void)state;
    static const struct {
        const char *line, *says;
    } bad[] = {
        {"not json", "not valid JSON"},
        {"[1, 2]", "not a JSON object"},
        {"{\"text\": \"hi\", \"intnet\": \"greet\"}", "unknown key \"intnet\""},
        {"{\"text\": \"  \", \"intent\": \"greet\"}", "empty"},
        {"{\"text\": 5, \"intent\": \"greet\"}", "\"text\" must be a string"},
        {"{\"text\": \"hi\"}", "\"intent\" must be a name"},
        {"{\"text\": \"hi\", \"intent\": \"\"}", "\"intent\" must be a name"},
        {"{\"text\": \"hi\", \"intents\": {}}", "list of at most"},
        {"{\"text\": \"hi\", \"intents\": [], \"intent\": \"greet\"}", "must be \"none\""},
        {"{\"text\": \"hi\", \"intents\": [\"a\", \"a\"]}", "twice"},
        {"{\"text\": \"hi\", \"intents\": [\"a\", \"b\"], \"intent\": \"a|c\"}", "joined"},
        {"{\"text\": \"hi\\ud800\", \"intent\": \"greet\"}", "not valid JSON"}, /* cJSON refuses a lone surrogate */
        {"{\"text\": \"hi \xff\", \"intent\": \"greet\"}", "invalid UTF-8"},
        {"{\"text\": \"hi\", \"intent\": \"greet\", \"entities\": {}}", "must be a list"},
        {"{\"text\": \"hi\", \"intent\": \"g\", \"entities\": [{\"start\": 0, \"end\": 3, \"type\": \"t\", \"value\": "
         "\"hi!\"}]}",
         "start < end <= 2"},
        {"{\"text\": \"hi\", \"intent\": \"g\", \"entities\": [{\"start\": 0, \"end\": 1, \"type\": \"t\", \"value\": "
         "\"x\"}]}",
         "is not its \"value\""},
        {"{\"text\": \"hi\", \"intent\": \"g\", \"entities\": [{\"start\": 0.5, \"end\": 1, \"type\": \"t\", "
         "\"value\": \"h\"}]}",
         "integers"},
        {"{\"text\": \"hi\", \"intent\": \"g\", \"entities\": [{\"start\": 0, \"end\": 1e300, \"type\": \"t\", "
         "\"value\": \"h\"}]}",
         "integers"}, /* found by fuzz_intent_data: the cast of 1e300 was undefined */
        {"{\"text\": \"hi\", \"intent\": \"g\", \"entities\": [{\"start\": 0, \"end\": 1, \"type\": \"t\", \"value\": "
         "\"h\", \"score\": 1}]}",
         "unknown key \"score\""},
        {"{\"text\": \"hi\", \"intent\": \"g\", \"entities\": [{\"start\": 0, \"end\": 1, \"type\": \"\", "
         "\"value\": \"h\"}]}",
         "\"type\" must be a name"},
        {"{\"text\": \"hi\", \"intent\": \"g\", \"context\": \"earlier\"}", "\"context\" must be a list"},
        {"{\"text\": \"hi\", \"intent\": \"g\", \"context\": [\"ok\", 3]}", "context turn 1 is not a string"},
        {"{\"text\": \"hi\", \"intent\": \"g\", \"context\": [\"ok\", \" \\t\"]}", "context turn 1 is empty"},
        {"{\"text\": \"hi\", \"intent\": \"g\", \"context\": [\"\"]}", "context turn 0 is empty"},
        {"{\"text\": \"hi\", \"intent\": \"g\", \"context\": [\"a\\ud800\"]}", "not valid JSON"},
        {"{\"text\": \"hi\", \"intent\": \"g\", \"context\": [\"\xc3\"]}", "invalid UTF-8"},
        {"{\"text\": \"hi\", \"intent\": \"g\", \"context\": [[\"nested\"]]}", "context turn 0 is not a string"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char text[1024];
        const int n = snprintf(text, sizeof text, "{\"text\": \"ok\", \"intent\": \"g\"}\n\n%s\n", bad[i].line);
        qmi_set s;
        const qiao_status st = qmi_set_parse("f.jsonl", text, (size_t)n, NULL, &s);
        if (st != QIAO_ERR_FORMAT || !strstr(qiao_last_error(), "f.jsonl:3") || !strstr(qiao_last_error(), bad[i].says))
            fail_msg("line %zu (%s): status %d, '%s' (wanted '%s')", i, bad[i].line, (int)st, qiao_last_error(),
                     bad[i].says);
        assert_int_equal(s.n, 0);
        assert_null(s.ex);
        qmi_set_free(&s);
    }
    /* no examples at all; a NUL-free file of blank lines is the same */
    qmi_set s;
    assert_int_equal(qmi_set_parse("f.jsonl", "\n \n\t\n", 5, NULL, &s), QIAO_ERR_FORMAT);
    assert_non_null(strstr(qiao_last_error(), "no examples"));
    /* a missing file */
    assert_int_equal(qmi_set_load(QIAO_TEST_DATA "/no-such.jsonl", NULL, &s), QIAO_ERR_IO);
    assert_int_equal(qmi_set_parse("f.jsonl", NULL, 0, NULL, &s), QIAO_ERR_FORMAT);

    /* more turns than a line may carry */
    char many[4096];
    int at = snprintf(many, sizeof many, "{\"text\": \"hi\", \"intent\": \"g\", \"context\": [");
    for (int i = 0; i <= QMI_MAX_CONTEXT; i++)
        at += snprintf(many + at, sizeof many - (size_t)at, "%s\"t\"", i ? ", " : "");
    at += snprintf(many + at, sizeof many - (size_t)at, "]}\n");
    assert_int_equal(qmi_set_parse("f.jsonl", many, (size_t)at, NULL, &s), QIAO_ERR_FORMAT);
    assert_non_null(strstr(qiao_last_error(), "at most 256 earlier turns"));

    /* what is right: CRLF lines, a last line without newline, multi-label, context */
    static const char good[] = "{\"text\": \"订单123\", \"intent\": \"track\", \"entities\": [{\"start\": 6, \"end\": "
                               "9, \"type\": \"order_id\", \"value\": \"123\"}], \"context\": []}\r\n"
                               "{\"text\": \"hi\", \"intents\": [\"b\", \"a\"], \"intent\": \"b|a\", "
                               "\"context\": [\"您好\", \"要订酒店吗\\n？\"]}";
    qiao_status st = qmi_set_parse("g.jsonl", good, sizeof good - 1, NULL, &s);
    if (st != QIAO_OK)
        fail_msg("%s", qiao_last_error());
    assert_int_equal(s.n, 2);
    assert_int_equal(s.n_labels, 3); /* a, b, track */
    assert_string_equal(s.labels[2], "track");
    assert_true(s.multi_label && s.ex[1].n_labels == 2 && s.ex[1].labels[0] == 0 && s.ex[1].labels[1] == 1);
    assert_int_equal(s.ex[0].n_spans, 1);
    assert_true(s.ex[0].spans[0].start == 6 && s.ex[0].spans[0].end == 9 && s.ex[0].spans[0].type == 0);
    assert_int_equal(s.ex[1].line, 2);
    assert_int_equal(s.ex[0].n_context, 0);
    assert_int_equal(s.ex[1].n_context, 2);
    assert_string_equal(s.ex[1].context[0], "您好");
    assert_string_equal(s.ex[1].context[1], "要订酒店吗\n？");
    /* a split copies the turns: they outlive the set */
    qmi_set tr, va;
    assert_int_equal(qmi_set_split(&s, 0.5, 1, &tr, &va), QIAO_OK);
    qmi_set_free(&s);
    int copies = 0;
    for (int k = 0; k < 2; k++)
        for (int64_t i = 0; i < (k ? va.n : tr.n); i++) {
            const qmi_example *e = &(k ? &va : &tr)->ex[i];
            if (e->n_context) {
                assert_int_equal(e->n_context, 2);
                assert_string_equal(e->context[1], "要订酒店吗\n？");
                copies++;
            }
        }
    assert_int_equal(copies, 1);
    qmi_set_free(&tr), qmi_set_free(&va);
    qmi_set_free(&s); /* twice is harmless */
}

static void split(void **state) {
    (void)state;
    qmi_set all, tr, va, tr2, va2;
    qiao_status st = qmi_set_load(INTENT_DIR "/clinc150/train.jsonl", NULL, &all);
    if (st != QIAO_OK)
        fail_msg("%s", qiao_last_error());
    assert_int_equal(qmi_set_split(&all, 0.1, 7, &tr, &va), QIAO_OK);
    assert_int_equal(tr.n + va.n, all.n);
    assert_true(tr.n_labels == all.n_labels && va.n_labels == all.n_labels);
    /* stratified: each label gives round(k / 10) of its k examples */
    for (int32_t l = 0; l < all.n_labels; l++) {
        int64_t k = 0, v = 0;
        for (int64_t i = 0; i < all.n; i++)
            k += all.ex[i].labels[0] == l;
        for (int64_t i = 0; i < va.n; i++)
            v += va.ex[i].labels[0] == l;
        assert_int_equal(v, (int64_t)((double)k * 0.1 + 0.5));
    }
    /* deterministic in the seed, another seed another choice */
    assert_int_equal(qmi_set_split(&all, 0.1, 7, &tr2, &va2), QIAO_OK);
    assert_int_equal(va2.n, va.n);
    for (int64_t i = 0; i < va.n; i++)
        assert_int_equal(va.ex[i].line, va2.ex[i].line);
    qmi_set_free(&tr2), qmi_set_free(&va2);
    assert_int_equal(qmi_set_split(&all, 0.1, 8, &tr2, &va2), QIAO_OK);
    int64_t same = 0;
    for (int64_t i = 0; i < va.n; i++)
        same += va.ex[i].line == va2.ex[i].line;
    assert_true(same < va.n);
    qmi_set_free(&tr2), qmi_set_free(&va2);
    /* copies: the split outlives the set it came from */
    const int64_t first_line = va.ex[0].line;
    char first_text[256];
    snprintf(first_text, sizeof first_text, "%s", va.ex[0].text);
    qmi_set_free(&all);
    assert_int_equal(va.ex[0].line, first_line);
    assert_string_equal(va.ex[0].text, first_text);
    qmi_set_free(&tr), qmi_set_free(&va);

    /* a label seen once stays in training; two give one to each side */
    static const char small[] = "{\"text\": \"a\", \"intent\": \"x\"}\n{\"text\": \"b\", \"intent\": \"y\"}\n"
                                "{\"text\": \"c\", \"intent\": \"y\"}\n";
    assert_int_equal(qmi_set_parse("s.jsonl", small, sizeof small - 1, NULL, &all), QIAO_OK);
    assert_int_equal(qmi_set_split(&all, 0.01, 1, &tr, &va), QIAO_OK);
    assert_int_equal(tr.n, 2);
    assert_int_equal(va.n, 1);
    assert_int_equal(va.ex[0].labels[0], 1);
    qmi_set_free(&tr), qmi_set_free(&va);
    assert_int_equal(qmi_set_split(&all, 1.0, 1, &tr, &va), QIAO_ERR_INVALID_ARGUMENT);
    assert_int_equal(qmi_set_split(&all, 0.0, 1, &tr, &va), QIAO_ERR_INVALID_ARGUMENT);
    qmi_set_free(&all);
}

static const struct CMUnitTest tests[] = {cmocka_unit_test(real_sets), cmocka_unit_test(bad_lines),
                                          cmocka_unit_test(split)};
QT_MAIN(tests)
