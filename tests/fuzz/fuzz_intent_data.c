/* libFuzzer target: any bytes as an intent JSONL file (models/intent/data.h).
 * Parsing must succeed or fail with a clear status, never crash; a parsed
 * set must hold labels and entity types in range, sorted distinct names,
 * spans inside their text ordered by start, context turns that are
 * non-blank valid UTF-8, and split into two sets that together hold every
 * example and every turn; read again against a space without its last
 * entity type, it must drop and count exactly those spans. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "models/intent/data.h"

/* The context turns of a set (abort on a turn that is NULL, blank or not
 * valid UTF-8, or on too many); returns their count. */
static int64_t turns(const qmi_set *s) {
    int64_t n = 0;
    for (int64_t i = 0; i < s->n; i++) {
        const qmi_example *e = &s->ex[i];
        if (e->n_context < 0 || e->n_context > QMI_MAX_CONTEXT || (e->n_context && !e->context))
            abort();
        for (int j = 0; j < e->n_context; j++) {
            const char *t = e->context[j];
            if (!t || !qc_utf8_valid(t, strlen(t)) || !t[strspn(t, " \t\r\n\v\f")])
                abort();
        }
        n += e->n_context;
    }
    return n;
}

/* The invariants of a parsed set (abort on any broken one); returns its spans. */
static int64_t check(const qmi_set *s) {
    for (int32_t i = 1; i < s->n_labels; i++)
        if (strcmp(s->labels[i - 1], s->labels[i]) >= 0)
            abort();
    for (int32_t i = 1; i < s->n_types; i++)
        if (strcmp(s->types[i - 1], s->types[i]) >= 0)
            abort();
    int64_t spans = 0;
    for (int64_t i = 0; i < s->n; i++) {
        const qmi_example *e = &s->ex[i];
        if (!e->len || strlen(e->text) != e->len || e->n_labels < (s->multi_label ? 0 : 1))
            abort();
        for (int j = 0; j < e->n_labels; j++)
            if (e->labels[j] < 0 || e->labels[j] >= s->n_labels || (j && e->labels[j] <= e->labels[j - 1]))
                abort();
        for (int j = 0; j < e->n_spans; j++) {
            const qmi_span *p = &e->spans[j];
            if (p->start < 0 || p->start >= p->end || p->end > (int64_t)e->len || p->type < 0 ||
                p->type >= s->n_types || (j && p->start < e->spans[j - 1].start))
                abort();
        }
        spans += e->n_spans;
    }
    return spans;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 1 << 16)
        return 0;
    qmi_set s;
    const qiao_status st = qmi_set_parse("fuzz.jsonl", (const char *)data, size, NULL, &s);
    if (st != QIAO_OK) {
        if (st != QIAO_ERR_FORMAT && st != QIAO_ERR_TOO_LARGE)
            abort();
        if (s.n || s.ex)
            abort();
        return 0;
    }
    const int64_t spans = check(&s);
    /* read again against a space without the last entity type: those spans
     * are dropped and counted, the others kept with the same types */
    if (s.n_types >= 2) {
        qmi_set space = s, t;
        space.n_types = s.n_types - 1;
        if (qmi_set_parse("fuzz.jsonl", (const char *)data, size, &space, &t) != QIAO_OK)
            abort();
        int64_t last = 0;
        for (int64_t i = 0; i < s.n; i++)
            for (int j = 0; j < s.ex[i].n_spans; j++)
                last += s.ex[i].spans[j].type == s.n_types - 1;
        if (t.n != s.n || t.n_types != s.n_types - 1 || t.unknown_spans != last || check(&t) + last != spans)
            abort();
        qmi_set_free(&t);
    }
    qmi_set tr, va;
    if (qmi_set_split(&s, 0.2, 1, &tr, &va) != QIAO_OK || tr.n + va.n != s.n || turns(&tr) + turns(&va) != turns(&s))
        abort();
    qmi_set_free(&tr), qmi_set_free(&va);
    qmi_set_free(&s);
    return 0;
}
