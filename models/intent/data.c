/* Intent examples from JSONL (data.h): a strict reader, the label space, a
 * stratified split. */
#define _POSIX_C_SOURCE 200809L /* strdup */

#include "models/intent/data.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

/* What an example owns; the set's `store` is an array of these, one per
 * example, so freeing walks them. */
typedef struct item {
    char *text;
    int32_t *labels;
    qmi_span *spans;
    char **label_names; /* while reading: the names, before they are numbered */
    char **span_types;
    char **context; /* the earlier turns, oldest first */
    int n_labels, n_spans, n_context;
    int n_span_types; /* span_types' count (spans of an unknown type are dropped from spans, not from it) */
    bool listed; /* the labels came from "intents" */
} item;

static void item_free(item *it) {
    for (int i = 0; it->label_names && i < it->n_labels; i++)
        free(it->label_names[i]);
    for (int i = 0; it->span_types && i < it->n_span_types; i++)
        free(it->span_types[i]);
    for (int i = 0; it->context && i < it->n_context; i++)
        free(it->context[i]);
    free(it->text), free(it->labels), free(it->spans), free(it->label_names), free(it->span_types);
    free(it->context);
    memset(it, 0, sizeof *it);
}

static void free_names(char **names, int32_t n) {
    for (int32_t i = 0; names && i < n; i++)
        free(names[i]);
    free(names);
}

void qmi_set_free(qmi_set *s) {
    if (!s)
        return;
    item *items = s->store;
    for (int64_t i = 0; items && i < s->n; i++)
        item_free(&items[i]);
    free(items);
    free(s->ex);
    free_names(s->labels, s->n_labels);
    free_names(s->types, s->n_types);
    free(s->path);
    memset(s, 0, sizeof *s);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int32_t qmi_find(char *const *names, int32_t n, const char *name) {
    int32_t lo = 0, hi = n - 1;
    while (lo <= hi) {
        const int32_t mid = lo + (hi - lo) / 2;
        const int c = strcmp(names[mid], name);
        if (c == 0)
            return mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return -1;
}

static bool blank(const char *s) {
    for (; *s; s++)
        if (!strchr(" \t\r\n\v\f", *s))
            return false;
    return true;
}

/* A label or type name: a non-empty string of at most QMI_MAX_NAME bytes. */
static bool good_name(const cJSON *v) {
    return cJSON_IsString(v) && v->valuestring[0] && strlen(v->valuestring) <= QMI_MAX_NAME;
}

static const char *const k_keys[] = {"text", "intent", "intents", "entities", "context"};
static const char *const k_span_keys[] = {"start", "end", "type", "value"};

static bool known(const char *k, const char *const *keys, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (k && !strcmp(k, keys[i]))
            return true;
    return false;
}

static int cmp_span(const void *a, const void *b) {
    const qmi_span *x = a, *y = b;
    return x->start < y->start ? -1 : x->start > y->start;
}

/* One line (not blank) into *it; errors name name:line. */
static qiao_status read_line(const char *name, int64_t line, const char *s, size_t len, item *it) {
    if (len > QMI_MAX_LINE)
        return qc_error(QIAO_ERR_TOO_LARGE, "%s:%lld: a line of %zu bytes (at most %zu)", name, (long long)line, len,
                        QMI_MAX_LINE);
    const size_t bad = qc_utf8_check(s, len);
    if (bad < len)
        return qc_error(QIAO_ERR_FORMAT, "%s:%lld: invalid UTF-8 at byte %zu of the line", name, (long long)line, bad);
    cJSON *o = cJSON_ParseWithLength(s, len);
    qiao_status st = QIAO_OK;
#define FAIL(...)                                                                                                      \
    do {                                                                                                               \
        st = qc_error(QIAO_ERR_FORMAT, __VA_ARGS__);                                                                   \
        goto done;                                                                                                     \
    } while (0)
    if (!o)
        FAIL("%s:%lld: not valid JSON (one object per line)", name, (long long)line);
    if (!cJSON_IsObject(o))
        FAIL("%s:%lld: not a JSON object", name, (long long)line);
    for (const cJSON *k = o->child; k; k = k->next)
        if (!known(k->string, k_keys, sizeof k_keys / sizeof k_keys[0]))
            FAIL("%s:%lld: unknown key \"%s\" (an example has text, intent or intents, entities, context)", name,
                 (long long)line, k->string ? k->string : "");
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(o, "text");
    const cJSON *intent = cJSON_GetObjectItemCaseSensitive(o, "intent");
    const cJSON *intents = cJSON_GetObjectItemCaseSensitive(o, "intents");
    const cJSON *ents = cJSON_GetObjectItemCaseSensitive(o, "entities");
    const cJSON *ctx = cJSON_GetObjectItemCaseSensitive(o, "context");
    if (!cJSON_IsString(text))
        FAIL("%s:%lld: \"text\" must be a string", name, (long long)line);
    const size_t tlen = strlen(text->valuestring);
    if (!qc_utf8_valid(text->valuestring, tlen)) /* a lone surrogate escape decodes to no valid UTF-8 */
        FAIL("%s:%lld: the text's escapes decode to invalid UTF-8", name, (long long)line);
    if (blank(text->valuestring))
        FAIL("%s:%lld: the text is empty", name, (long long)line);
    if (intents) {
        const int n = cJSON_IsArray(intents) ? cJSON_GetArraySize(intents) : -1;
        if (n < 0 || n > QMI_MAX_LABELS_PER_EXAMPLE)
            FAIL("%s:%lld: \"intents\" must be a list of at most %d names", name, (long long)line,
                 QMI_MAX_LABELS_PER_EXAMPLE);
        it->listed = true;
        if (!(it->label_names = calloc(n ? (size_t)n : 1, sizeof *it->label_names)))
            goto oom;
        size_t joined = 0;
        for (const cJSON *v = intents->child; v; v = v->next) {
            if (!good_name(v))
                FAIL("%s:%lld: \"intents\" holds something that is not a name (a string of 1 to %d bytes)", name,
                     (long long)line, QMI_MAX_NAME);
            for (int j = 0; j < it->n_labels; j++)
                if (!strcmp(it->label_names[j], v->valuestring))
                    FAIL("%s:%lld: \"intents\" names \"%s\" twice", name, (long long)line, v->valuestring);
            if (!(it->label_names[it->n_labels] = strdup(v->valuestring)))
                goto oom;
            it->n_labels++;
            joined += strlen(v->valuestring) + 1;
        }
        if (intent && n == 0 && !(cJSON_IsString(intent) && !strcmp(intent->valuestring, "none")))
            FAIL("%s:%lld: \"intent\" of an empty \"intents\" must be \"none\"", name, (long long)line);
        if (intent && n) { /* then it is the list joined by '|', as the converters write it */
            bool same = cJSON_IsString(intent) && strlen(intent->valuestring) + 1 == joined;
            const char *p = same ? intent->valuestring : "";
            for (int j = 0; same && j < it->n_labels; j++) {
                const size_t l = strlen(it->label_names[j]);
                same = !strncmp(p, it->label_names[j], l) && (p[l] == (j + 1 < it->n_labels ? '|' : '\0'));
                p += l + 1;
            }
            if (!same)
                FAIL("%s:%lld: \"intent\" is not \"intents\" joined by '|'", name, (long long)line);
        }
    } else {
        if (!good_name(intent))
            FAIL("%s:%lld: \"intent\" must be a name (a string of 1 to %d bytes)", name, (long long)line, QMI_MAX_NAME);
        if (!(it->label_names = calloc(1, sizeof *it->label_names)) ||
            !(it->label_names[0] = strdup(intent->valuestring)))
            goto oom;
        it->n_labels = 1;
    }
    if (ents && !cJSON_IsArray(ents))
        FAIL("%s:%lld: \"entities\" must be a list", name, (long long)line);
    const int ne = ents ? cJSON_GetArraySize(ents) : 0;
    if (ne > QMI_MAX_SPANS_PER_EXAMPLE)
        FAIL("%s:%lld: %d entities (at most %d)", name, (long long)line, ne, QMI_MAX_SPANS_PER_EXAMPLE);
    if (ne && (!(it->spans = calloc((size_t)ne, sizeof *it->spans)) ||
               !(it->span_types = calloc((size_t)ne, sizeof *it->span_types))))
        goto oom;
    for (const cJSON *e = ents ? ents->child : NULL; e; e = e->next) {
        const int i = it->n_spans;
        if (!cJSON_IsObject(e))
            FAIL("%s:%lld: entity %d is not an object", name, (long long)line, i);
        for (const cJSON *k = e->child; k; k = k->next)
            if (!known(k->string, k_span_keys, sizeof k_span_keys / sizeof k_span_keys[0]))
                FAIL("%s:%lld: entity %d: unknown key \"%s\" (an entity has start, end, type, value)", name,
                     (long long)line, i, k->string ? k->string : "");
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(e, "start"), *b = cJSON_GetObjectItemCaseSensitive(e, "end");
        const cJSON *ty = cJSON_GetObjectItemCaseSensitive(e, "type"),
                    *v = cJSON_GetObjectItemCaseSensitive(e, "value");
        /* the range first: only then is the cast to an integer defined (a 1e300 or a NaN is not) */
        if (!cJSON_IsNumber(a) || !cJSON_IsNumber(b) || !(a->valuedouble >= 0) || !(b->valuedouble <= (double)tlen) ||
            !(a->valuedouble < b->valuedouble) || a->valuedouble != (double)(int64_t)a->valuedouble ||
            b->valuedouble != (double)(int64_t)b->valuedouble)
            FAIL("%s:%lld: entity %d: need integers 0 <= start < end <= %zu (the text's bytes)", name, (long long)line,
                 i, tlen);
        if (!good_name(ty))
            FAIL("%s:%lld: entity %d: \"type\" must be a name", name, (long long)line, i);
        const size_t s0 = (size_t)a->valuedouble, s1 = (size_t)b->valuedouble;
        if (!cJSON_IsString(v) || strlen(v->valuestring) != s1 - s0 ||
            memcmp(text->valuestring + s0, v->valuestring, s1 - s0))
            FAIL("%s:%lld: entity %d: text[%zu:%zu] is not its \"value\"", name, (long long)line, i, s0, s1);
        it->spans[i] = (qmi_span){(int64_t)s0, (int64_t)s1, -1};
        if (!(it->span_types[i] = strdup(ty->valuestring)))
            goto oom;
        it->n_spans++;
        it->n_span_types++;
    }
    /* sorted by start with their types (a stable insertion sort: ties keep the file's order) */
    for (int i = 1; i < it->n_spans; i++)
        for (int j = i; j > 0 && cmp_span(&it->spans[j - 1], &it->spans[j]) > 0; j--) {
            const qmi_span t = it->spans[j];
            it->spans[j] = it->spans[j - 1], it->spans[j - 1] = t;
            char *tt = it->span_types[j];
            it->span_types[j] = it->span_types[j - 1], it->span_types[j - 1] = tt;
        }
    if (ctx) {
        const int n = cJSON_IsArray(ctx) ? cJSON_GetArraySize(ctx) : -1;
        if (n < 0 || n > QMI_MAX_CONTEXT)
            FAIL("%s:%lld: \"context\" must be a list of at most %d earlier turns (strings, oldest first)", name,
                 (long long)line, QMI_MAX_CONTEXT);
        if (!(it->context = calloc(n ? (size_t)n : 1, sizeof *it->context)))
            goto oom;
        for (const cJSON *v = ctx->child; v; v = v->next) {
            const int i = it->n_context;
            if (!cJSON_IsString(v))
                FAIL("%s:%lld: context turn %d is not a string", name, (long long)line, i);
            if (!qc_utf8_valid(v->valuestring, strlen(v->valuestring)))
                FAIL("%s:%lld: context turn %d: its escapes decode to invalid UTF-8", name, (long long)line, i);
            if (blank(v->valuestring))
                FAIL("%s:%lld: context turn %d is empty", name, (long long)line, i);
            if (!(it->context[i] = strdup(v->valuestring)))
                goto oom;
            it->n_context++;
        }
    }
    if (!(it->text = strdup(text->valuestring)))
        goto oom;
    cJSON_Delete(o);
    return QIAO_OK;
#undef FAIL
oom:
    st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s:%lld: out of memory", name, (long long)line);
done:
    cJSON_Delete(o);
    return st;
}

/* The sorted distinct names of every item's labels (types: their span
 * types) into *out. */
static qiao_status collect(const item *items, int64_t n, bool types, char ***out, int32_t *n_out) {
    *out = NULL;
    *n_out = 0;
    size_t total = 0;
    for (int64_t i = 0; i < n; i++)
        total += (size_t)(types ? items[i].n_spans : items[i].n_labels);
    char **all = malloc((total ? total : 1) * sizeof *all);
    if (!all)
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "intent data: out of memory");
    size_t k = 0;
    for (int64_t i = 0; i < n; i++) {
        const int m = types ? items[i].n_spans : items[i].n_labels;
        for (int j = 0; j < m; j++)
            all[k++] = types ? items[i].span_types[j] : items[i].label_names[j];
    }
    qsort(all, k, sizeof *all, cmp_str);
    size_t u = 0;
    for (size_t i = 0; i < k; i++)
        if (!u || strcmp(all[u - 1], all[i]))
            all[u++] = all[i];
    if (u > QMI_MAX_LABELS) {
        free(all);
        return qc_error(QIAO_ERR_TOO_LARGE, "intent data: %zu distinct %s (at most %d)", u,
                        types ? "entity types" : "intents", QMI_MAX_LABELS);
    }
    char **names = calloc(u ? u : 1, sizeof *names);
    for (size_t i = 0; names && i < u; i++)
        if (!(names[i] = strdup(all[i]))) {
            free_names(names, (int32_t)i);
            names = NULL;
        }
    free(all);
    if (!names)
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "intent data: out of memory");
    *out = names;
    *n_out = (int32_t)u;
    return QIAO_OK;
}

static qiao_status copy_names(char *const *src, int32_t n, char ***out) {
    *out = calloc(n ? (size_t)n : 1, sizeof **out);
    if (!*out)
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "intent data: out of memory");
    for (int32_t i = 0; i < n; i++)
        if (!((*out)[i] = strdup(src[i])))
            return qc_error(QIAO_ERR_OUT_OF_MEMORY, "intent data: out of memory");
    return QIAO_OK;
}

static int cmp_i32(const void *a, const void *b) {
    const int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return x < y ? -1 : x > y;
}

qiao_status qmi_set_parse(const char *name, const char *text, size_t len, const qmi_set *space, qmi_set *out) {
    if (!out)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmi_set_parse: NULL argument");
    memset(out, 0, sizeof *out);
    if (!name || (!text && len))
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmi_set_parse: NULL argument");
    if (len > QMI_MAX_FILE)
        return qc_error(QIAO_ERR_TOO_LARGE, "%s: %zu bytes (at most %zu)", name, len, QMI_MAX_FILE);
    int64_t lines = 0;
    for (size_t i = 0; i < len; i++)
        lines += text[i] == '\n';
    item *items = calloc((size_t)lines + 1, sizeof *items);
    if (!(out->path = strdup(name)) || !items) {
        free(items);
        qmi_set_free(out);
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory", name);
    }
    out->store = items;
    qiao_status st = QIAO_OK;
    int64_t n = 0, line = 0;
    int64_t *line_of = calloc((size_t)lines + 1, sizeof *line_of);
    if (!line_of)
        st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory", name);
    for (size_t pos = 0; pos < len && st == QIAO_OK;) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        const size_t end = nl ? (size_t)(nl - text) : len;
        line++;
        size_t a = pos, b = end;
        while (a < b && strchr(" \t\r", text[a]))
            a++;
        while (b > a && strchr(" \t\r", text[b - 1]))
            b--;
        if (b > a) {
            line_of[n] = line;
            out->n = n + 1; /* so a failure frees what this line allocated */
            st = read_line(name, line, text + a, b - a, &items[n]);
            n++;
        }
        pos = end + 1;
    }
    if (st == QIAO_OK && n == 0)
        st = qc_error(QIAO_ERR_FORMAT, "%s: no examples", name);
    out->n = n;
    if (st == QIAO_OK) {
        if (space) {
            st = copy_names(space->labels, space->n_labels, &out->labels);
            out->n_labels = space->n_labels;
            if (st == QIAO_OK && space->n_types) {
                st = copy_names(space->types, space->n_types, &out->types);
                out->n_types = st == QIAO_OK ? space->n_types : 0;
            } else if (st == QIAO_OK) { /* a space without entity types (no tagger): the file's own */
                st = collect(items, n, true, &out->types, &out->n_types);
            }
        } else {
            st = collect(items, n, false, &out->labels, &out->n_labels);
            if (st == QIAO_OK)
                st = collect(items, n, true, &out->types, &out->n_types);
        }
    }
    if (st == QIAO_OK && !(out->ex = calloc((size_t)n, sizeof *out->ex)))
        st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory", name);
    for (int64_t i = 0; i < n && st == QIAO_OK; i++) {
        item *it = &items[i];
        if (!(it->labels = malloc((it->n_labels ? (size_t)it->n_labels : 1) * sizeof *it->labels))) {
            st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory", name);
            break;
        }
        for (int j = 0; j < it->n_labels && st == QIAO_OK; j++)
            if ((it->labels[j] = qmi_find(out->labels, out->n_labels, it->label_names[j])) < 0)
                st = qc_error(QIAO_ERR_FORMAT, "%s:%lld: intent \"%s\" is not one the model knows (it has %d)", name,
                              (long long)line_of[i], it->label_names[j], out->n_labels);
        int kept = 0;
        for (int j = 0; j < it->n_spans && st == QIAO_OK; j++) {
            const int32_t type = qmi_find(out->types, out->n_types, it->span_types[j]);
            if (type < 0) {
                if (!out->unknown_spans++)
                    qc_log(QIAO_LOG_WARN, "%s:%lld: entity type \"%s\" is not one the model knows (it has %d): "
                           "its spans are left out, as missed", name, (long long)line_of[i], it->span_types[j],
                           out->n_types);
                continue;
            }
            it->spans[kept] = it->spans[j];
            it->spans[kept++].type = type;
        }
        it->n_spans = kept;
        if (st != QIAO_OK)
            break;
        qsort(it->labels, (size_t)it->n_labels, sizeof *it->labels, cmp_i32);
        out->multi_label = out->multi_label || it->listed;
        out->ex[i] = (qmi_example){.text = it->text,
                                   .len = strlen(it->text),
                                   .labels = it->labels,
                                   .n_labels = it->n_labels,
                                   .spans = it->spans,
                                   .n_spans = it->n_spans,
                                   .context = (const char *const *)it->context,
                                   .n_context = it->n_context,
                                   .line = line_of[i]};
    }
    free(line_of);
    if (st != QIAO_OK)
        qmi_set_free(out);
    return st;
}

qiao_status qmi_set_load(const char *path, const qmi_set *space, qmi_set *out) {
    if (!out)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmi_set_load: NULL argument");
    memset(out, 0, sizeof *out);
    if (!path)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmi_set_load: NULL argument");
    uint8_t *data = NULL;
    size_t len = 0;
    qiao_status st = qc_read_file(path, QMI_MAX_FILE, &data, &len);
    if (st != QIAO_OK)
        return st;
    st = qmi_set_parse(path, (const char *)data, len, space, out);
    free(data);
    return st;
}

/* Appends a deep copy of example e to s (whose store and ex have room). */
static qiao_status add_copy(qmi_set *s, const qmi_example *e) {
    item *it = &((item *)s->store)[s->n];
    qmi_example *x = &s->ex[s->n];
    it->text = malloc(e->len + 1);
    it->labels = malloc((e->n_labels ? (size_t)e->n_labels : 1) * sizeof *it->labels);
    it->spans = e->n_spans ? malloc((size_t)e->n_spans * sizeof *it->spans) : NULL;
    it->context = e->n_context ? calloc((size_t)e->n_context, sizeof *it->context) : NULL;
    s->n++;
    if (!it->text || !it->labels || (e->n_spans && !it->spans) || (e->n_context && !it->context))
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "intent data: out of memory");
    for (; it->n_context < e->n_context; it->n_context++)
        if (!(it->context[it->n_context] = strdup(e->context[it->n_context])))
            return qc_error(QIAO_ERR_OUT_OF_MEMORY, "intent data: out of memory");
    memcpy(it->text, e->text, e->len + 1);
    memcpy(it->labels, e->labels, (size_t)e->n_labels * sizeof *it->labels);
    if (e->n_spans)
        memcpy(it->spans, e->spans, (size_t)e->n_spans * sizeof *it->spans);
    it->n_labels = e->n_labels;
    it->n_spans = e->n_spans;
    *x = *e;
    x->text = it->text, x->labels = it->labels, x->spans = it->spans;
    x->context = (const char *const *)it->context;
    return QIAO_OK;
}

static qiao_status empty_like(const qmi_set *all, int64_t cap, const char *suffix, qmi_set *s) {
    memset(s, 0, sizeof *s);
    const size_t pl = strlen(all->path) + strlen(suffix) + 1;
    s->path = malloc(pl);
    s->store = calloc((size_t)(cap ? cap : 1), sizeof(item));
    s->ex = calloc((size_t)(cap ? cap : 1), sizeof *s->ex);
    if (!s->path || !s->store || !s->ex)
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "intent data: out of memory");
    snprintf(s->path, pl, "%s%s", all->path, suffix);
    s->multi_label = all->multi_label;
    qiao_status st = copy_names(all->labels, all->n_labels, &s->labels);
    s->n_labels = st == QIAO_OK ? all->n_labels : 0;
    if (st == QIAO_OK)
        st = copy_names(all->types, all->n_types, &s->types);
    s->n_types = st == QIAO_OK ? all->n_types : 0;
    return st;
}

qiao_status qmi_set_split(const qmi_set *all, double val_fraction, uint64_t seed, qmi_set *train, qmi_set *val) {
    if (!train || !val)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmi_set_split: NULL argument");
    memset(train, 0, sizeof *train);
    memset(val, 0, sizeof *val);
    if (!all || !all->path)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmi_set_split: NULL argument");
    if (!(val_fraction > 0.0 && val_fraction < 1.0))
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmi_set_split: the validation fraction must be in (0, 1), not %g",
                        val_fraction);
    const int64_t n = all->n;
    /* to_val[i]: example i goes to validation */
    uint8_t *to_val = calloc((size_t)(n ? n : 1), 1);
    int64_t *idx = malloc((size_t)(n ? n : 1) * sizeof *idx);
    qiao_status st = to_val && idx ? QIAO_OK : qc_error(QIAO_ERR_OUT_OF_MEMORY, "intent data: out of memory");
    for (int32_t l = -1; l < all->n_labels && st == QIAO_OK; l++) { /* -1: the examples without a label */
        int64_t k = 0;
        for (int64_t i = 0; i < n; i++)
            if ((all->ex[i].n_labels ? all->ex[i].labels[0] : -1) == l)
                idx[k++] = i;
        if (k < 2)
            continue;
        int64_t take = (int64_t)((double)k * val_fraction + 0.5);
        if (take < 1)
            take = 1;
        if (take > k - 1)
            take = k - 1;
        qc_rng rng;
        qc_rng_seed(&rng, seed ^ (0x9E3779B97F4A7C15ull * (uint64_t)(l + 2)));
        for (int64_t i = k - 1; i > 0; i--) { /* Fisher-Yates */
            const int64_t j = (int64_t)(qc_rng_u64(&rng) % (uint64_t)(i + 1));
            const int64_t t = idx[i];
            idx[i] = idx[j], idx[j] = t;
        }
        for (int64_t i = 0; i < take; i++)
            to_val[idx[i]] = 1;
    }
    int64_t nv = 0;
    for (int64_t i = 0; st == QIAO_OK && i < n; i++)
        nv += to_val[i];
    if (st == QIAO_OK)
        st = empty_like(all, n - nv, " (training part)", train);
    if (st == QIAO_OK)
        st = empty_like(all, nv, " (validation part)", val);
    for (int64_t i = 0; i < n && st == QIAO_OK; i++)
        st = add_copy(to_val[i] ? val : train, &all->ex[i]);
    free(to_val), free(idx);
    if (st != QIAO_OK)
        qmi_set_free(train), qmi_set_free(val);
    return st;
}
