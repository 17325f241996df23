/* datasets/intent/intent_ecommerce.c - the hand-written Chinese e-commerce
 * customer-service set: marked-up source lines to JSONL with byte spans and
 * a stratified, deterministic train/test split.
 *
 * Source markup (one example per line, UTF-8):
 *   intent<TAB>text        e.g.  refund_status<TAB>订单[order_id:2024112356789012]退款呢
 *   [type:value]  an entity: the value is kept in the text, its span recorded
 *   \[  \]  \\    a literal bracket or backslash
 *   lines starting with '#' and blank lines are ignored. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "intent/intent.h"

const char *const qint_ecommerce_entity_types[] = {"order_id", "phone", "amount", "date", "product", NULL};

#define EC_MAX_ENTITIES 16
/* Part of the hash that picks the test examples: changing it reshuffles
 * the split, so it is fixed. */
#define EC_SPLIT_SEED 0x71616f2d65633031ull /* "qao-ec01" */
#define EC_TEST_PERCENT 25

typedef struct ec_line {
    int64_t line;
    char *intent;
    char *text;
    size_t len;
    qint_entity ents[EC_MAX_ENTITIES];
    size_t n_ents;
    uint64_t hash;
    int test;
} ec_line;

static const char *known_type(const char *s, size_t n) {
    for (int i = 0; qint_ecommerce_entity_types[i]; i++)
        if (strlen(qint_ecommerce_entity_types[i]) == n && !memcmp(qint_ecommerce_entity_types[i], s, n))
            return qint_ecommerce_entity_types[i];
    return NULL;
}

/* Parses the marked-up text src[0..n) into out (plain text) and entities. */
static qiao_status ec_parse(const char *where, const char *src, size_t n, ec_line *l) {
    char *out = malloc(n + 1);
    if (!out) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory", where);
    size_t o = 0;
    int in_ent = 0;
    qint_entity *cur = NULL;
    for (size_t i = 0; i < n; i++) {
        char c = src[i];
        if (c == '\\') {
            if (i + 1 >= n || (src[i + 1] != '[' && src[i + 1] != ']' && src[i + 1] != '\\')) {
                free(out);
                return qc_error(QIAO_ERR_FORMAT, "%s: bad escape at byte %zu (use \\[ \\] \\\\)", where, i);
            }
            out[o++] = src[++i];
        } else if (c == '[') {
            if (in_ent) {
                free(out);
                return qc_error(QIAO_ERR_FORMAT, "%s: '[' inside an entity at byte %zu", where, i);
            }
            const char *colon = memchr(src + i + 1, ':', n - i - 1);
            const char *type = colon ? known_type(src + i + 1, (size_t)(colon - src - i - 1)) : NULL;
            if (!type) {
                free(out);
                return qc_error(QIAO_ERR_FORMAT, "%s: entity at byte %zu needs [type:value] with a type among "
                                "order_id, phone, amount, date, product", where, i);
            }
            if (l->n_ents == EC_MAX_ENTITIES) {
                free(out);
                return qc_error(QIAO_ERR_TOO_LARGE, "%s: more than %d entities", where, EC_MAX_ENTITIES);
            }
            cur = &l->ents[l->n_ents++];
            cur->type = type;
            cur->start = o;
            in_ent = 1;
            i = (size_t)(colon - src);
        } else if (c == ']') {
            if (!in_ent || o == cur->start) {
                free(out);
                return qc_error(QIAO_ERR_FORMAT, "%s: %s at byte %zu", where,
                                in_ent ? "empty entity value" : "']' outside an entity (escape it as \\])", i);
            }
            cur->end = o;
            in_ent = 0;
        } else {
            out[o++] = c;
        }
    }
    if (in_ent) {
        free(out);
        return qc_error(QIAO_ERR_FORMAT, "%s: entity not closed with ']'", where);
    }
    out[o] = '\0';
    l->text = out;
    l->len = o;
    return QIAO_OK;
}

static int valid_intent(const char *s) {
    if (!*s) return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_')) return 0;
    return 1;
}

static uint64_t split_hash(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull ^ EC_SPLIT_SEED;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    h ^= h >> 33; /* FNV's low bits mix poorly; finish like splitmix64 */
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

static int cmp_text(const void *a, const void *b) {
    const ec_line *x = *(const ec_line *const *)a, *y = *(const ec_line *const *)b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->text, y->text, n);
    if (c) return c;
    return x->len < y->len ? -1 : x->len > y->len ? 1 : (x->line < y->line ? -1 : 1);
}

/* Orders by intent, then by split hash (ties by line, so it is total). */
static int cmp_split(const void *a, const void *b) {
    const ec_line *x = *(const ec_line *const *)a, *y = *(const ec_line *const *)b;
    int c = strcmp(x->intent, y->intent);
    if (c) return c;
    if (x->hash != y->hash) return x->hash < y->hash ? -1 : 1;
    return x->line < y->line ? -1 : 1;
}

static void free_lines(ec_line *lines, size_t n) {
    if (!lines) return;
    for (size_t i = 0; i < n; i++) {
        free(lines[i].intent);
        free(lines[i].text);
    }
    free(lines);
}

static qiao_status write_counts(const char *out_dir, ec_line **by_intent, size_t n) {
    char path[4200], tmp[4200];
    qiao_status st = qint_path(path, sizeof path, out_dir, "intents.tsv");
    if (st) return st;
    if ((st = qint_path(tmp, sizeof tmp, out_dir, ".intents.tsv.tmp"))) return st;
    FILE *f = fopen(tmp, "wb");
    if (!f) return qc_error(QIAO_ERR_IO, "%s: %s", tmp, strerror(errno));
    fprintf(f, "intent\ttrain\ttest\n");
    for (size_t i = 0; i < n;) {
        size_t j = i, tr = 0, te = 0;
        while (j < n && !strcmp(by_intent[j]->intent, by_intent[i]->intent)) {
            if (by_intent[j]->test) te++;
            else tr++;
            j++;
        }
        fprintf(f, "%s\t%zu\t%zu\n", by_intent[i]->intent, tr, te);
        i = j;
    }
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) {
        remove(tmp);
        return qc_error(QIAO_ERR_IO, "%s: write failed", tmp);
    }
    if (rename(tmp, path) != 0) return qc_error(QIAO_ERR_IO, "%s: %s", path, strerror(errno));
    return QIAO_OK;
}

qiao_status qint_ecommerce_build(const char *source, const char *out_dir, qint_stats *stats) {
    if (stats) memset(stats, 0, sizeof *stats);
    if (!source || !out_dir) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qint_ecommerce_build: NULL argument");
    char *data;
    size_t len;
    qiao_status st = qint_read_file(source, &data, &len);
    if (st) return st;
    size_t bad;
    if (!qint_utf8_valid(data, len, &bad)) {
        int64_t line = 1;
        for (size_t i = 0; i < bad; i++) line += data[i] == '\n';
        st = qc_error(QIAO_ERR_FORMAT, "%s:%lld: invalid UTF-8", source, (long long)line);
        free(data);
        return st;
    }
    size_t cap = 256, n = 0;
    ec_line *lines = calloc(cap, sizeof *lines);
    ec_line **order = NULL;
    qint_writer *w = NULL;
    if (!lines) {
        free(data);
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory");
    }
    int64_t lineno = 0;
    for (size_t pos = 0; pos < len && !st;) {
        char *nl = memchr(data + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - data) : len;
        lineno++;
        char *l = data + pos;
        size_t ll = end - pos;
        pos = end + 1;
        if (ll && l[ll - 1] == '\r') ll--;
        if (ll == 0 || l[0] == '#') continue;
        char where[4300];
        snprintf(where, sizeof where, "%s:%lld", source, (long long)lineno);
        char *tab = memchr(l, '\t', ll);
        if (!tab || tab == l || memchr(tab + 1, '\t', ll - (size_t)(tab + 1 - l)) || tab + 1 == l + ll) {
            st = qc_error(QIAO_ERR_FORMAT, "%s: expected intent<TAB>text", where);
            break;
        }
        if (n == cap) {
            ec_line *nb = realloc(lines, 2 * cap * sizeof *lines);
            if (!nb) {
                st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory");
                break;
            }
            memset(nb + cap, 0, cap * sizeof *lines);
            lines = nb;
            cap *= 2;
        }
        ec_line *e = &lines[n];
        e->line = lineno;
        size_t il = (size_t)(tab - l);
        e->intent = malloc(il + 1);
        if (!e->intent) {
            st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory");
            break;
        }
        n++;
        memcpy(e->intent, l, il);
        e->intent[il] = '\0';
        if (!valid_intent(e->intent)) {
            st = qc_error(QIAO_ERR_FORMAT, "%s: intent \"%s\" must be [a-z0-9_]+", where, e->intent);
            break;
        }
        if ((st = ec_parse(where, tab + 1, ll - il - 1, e))) break;
        e->hash = split_hash(e->text, e->len);
    }
    if (!st && n == 0) st = qc_error(QIAO_ERR_FORMAT, "%s: no examples", source);
    if (!st && !(order = malloc(n * sizeof *order))) st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory");
    if (!st) {
        for (size_t i = 0; i < n; i++) order[i] = &lines[i];
        qsort(order, n, sizeof *order, cmp_text);
        for (size_t i = 1; i < n && !st; i++)
            if (order[i]->len == order[i - 1]->len && !memcmp(order[i]->text, order[i - 1]->text, order[i]->len))
                st = qc_error(QIAO_ERR_FORMAT, "%s:%lld: duplicate of line %lld", source,
                              (long long)order[i]->line, (long long)order[i - 1]->line);
    }
    if (!st) {
        qsort(order, n, sizeof *order, cmp_split);
        for (size_t i = 0; i < n;) {
            size_t j = i;
            while (j < n && !strcmp(order[j]->intent, order[i]->intent)) j++;
            size_t k = ((j - i) * EC_TEST_PERCENT + 50) / 100;
            for (size_t t = 0; t < k; t++) order[i + t]->test = 1;
            i = j;
        }
        st = qint_writer_open(&w, out_dir, 1, 0);
    }
    for (size_t i = 0; i < n && !st; i++) {
        char where[4300];
        snprintf(where, sizeof where, "%s:%lld", source, (long long)lines[i].line);
        qint_example ex = {lines[i].text, lines[i].len, lines[i].intent, NULL, 0, lines[i].ents, lines[i].n_ents,
                           NULL, 0};
        st = qint_writer_add(w, lines[i].test ? QINT_TEST : QINT_TRAIN, &ex, where);
    }
    if (w) {
        qiao_status cst = qint_writer_close(w, !st, stats);
        if (!st) st = cst;
    }
    if (!st) st = write_counts(out_dir, order, n);
    free(order);
    free_lines(lines, n);
    free(data);
    return st;
}
