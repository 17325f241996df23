/* Reading a bot file: JSON, or YAML through libyaml turned into the same
 * cJSON tree, then every name checked against the others and against the
 * classifier, so a business's mistake is found at load with its place
 * ("forms.return.slots[2]") rather than in the middle of a conversation. */
#define _POSIX_C_SOURCE 200809L

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "bot/bot.h"
#include "core/core.h"

#define BOT_FILE_MAX ((size_t)16 << 20)
#define YAML_DEPTH_MAX 64

/* ---- YAML -> cJSON --------------------------------------------------------- */

static cJSON *yaml_scalar(const yaml_node_t *n, bool numbers) {
    const char *v = (const char *)n->data.scalar.value;
    const size_t len = n->data.scalar.length;
    if (n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
        /* The core schema's plain scalars: true/false, null, numbers. */
        if (!strcmp(v, "true") || !strcmp(v, "True")) return cJSON_CreateTrue();
        if (!strcmp(v, "false") || !strcmp(v, "False")) return cJSON_CreateFalse();
        if (!strcmp(v, "null") || !strcmp(v, "~") || len == 0) return cJSON_CreateNull();
        char *end = NULL;
        const double d = strtod(v, &end);
        if (numbers && len > 0 && end == v + len && (v[0] == '-' || v[0] == '.' || (v[0] >= '0' && v[0] <= '9')))
            return cJSON_CreateNumber(d);
    }
    char *s = malloc(len + 1);
    if (!s) return NULL;
    memcpy(s, v, len);
    s[len] = 0;
    cJSON *j = cJSON_CreateString(s);
    free(s);
    return j;
}

static qiao_status yaml_node(const char *path, yaml_document_t *doc, yaml_node_t *n, int depth, bool numbers,
                             cJSON **out) {
    *out = NULL;
    if (!n) return qc_error(QIAO_ERR_FORMAT, "%s: a YAML alias to nothing", path);
    if (depth > YAML_DEPTH_MAX)
        return qc_error(QIAO_ERR_FORMAT, "%s: line %zu: nested deeper than %d", path, n->start_mark.line + 1,
                        YAML_DEPTH_MAX);
    if (n->type == YAML_SCALAR_NODE) {
        *out = yaml_scalar(n, numbers);
        return *out ? QIAO_OK : qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    }
    const bool map = n->type == YAML_MAPPING_NODE;
    cJSON *j = map ? cJSON_CreateObject() : cJSON_CreateArray();
    if (!j) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    if (map) {
        for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
            yaml_node_t *k = yaml_document_get_node(doc, p->key);
            if (!k || k->type != YAML_SCALAR_NODE) {
                cJSON_Delete(j);
                return qc_error(QIAO_ERR_FORMAT, "%s: line %zu: a key must be a plain text", path,
                                (k ? k->start_mark.line : n->start_mark.line) + 1);
            }
            const char *key = (const char *)k->data.scalar.value;
            if (cJSON_GetObjectItemCaseSensitive(j, key)) {
                cJSON_Delete(j);
                return qc_error(QIAO_ERR_FORMAT, "%s: line %zu: key '%s' given twice", path, k->start_mark.line + 1,
                                key);
            }
            cJSON *v = NULL;
            const qiao_status st = yaml_node(path, doc, yaml_document_get_node(doc, p->value), depth + 1, numbers, &v);
            if (st != QIAO_OK) {
                cJSON_Delete(j);
                return st;
            }
            cJSON_AddItemToObject(j, key, v);
        }
    } else {
        for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
            cJSON *v = NULL;
            const qiao_status st = yaml_node(path, doc, yaml_document_get_node(doc, *it), depth + 1, numbers, &v);
            if (st != QIAO_OK) {
                cJSON_Delete(j);
                return st;
            }
            cJSON_AddItemToArray(j, v);
        }
    }
    *out = j;
    return QIAO_OK;
}

qiao_status qbot_parse_yaml(const char *path, const char *text, size_t len, bool numbers, cJSON **out) {
    *out = NULL;
    yaml_parser_t parser;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&parser)) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        const qiao_status st = qc_error(QIAO_ERR_FORMAT, "%s: line %zu column %zu: %s", path,
                                        parser.problem_mark.line + 1, parser.problem_mark.column + 1,
                                        parser.problem ? parser.problem : "not YAML");
        yaml_parser_delete(&parser);
        return st;
    }
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    qiao_status st = root ? yaml_node(path, &doc, root, 0, numbers, out) : qc_error(QIAO_ERR_FORMAT, "%s: empty", path);
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return st;
}

/* ---- Checking the tree ---------------------------------------------------- */

static qiao_status keys_known(const char *path, const char *place, const cJSON *obj, const char *const *known) {
    if (!cJSON_IsObject(obj)) return qc_error(QIAO_ERR_FORMAT, "%s: %s: not an object", path, place);
    for (const cJSON *it = obj->child; it; it = it->next) {
        bool ok = false;
        for (size_t k = 0; known[k] && !ok; k++) ok = !strcmp(it->string, known[k]);
        if (!ok) return qc_error(QIAO_ERR_FORMAT, "%s: %s: unknown key '%s'", path, place, it->string);
    }
    return QIAO_OK;
}

static qiao_status text_of(const char *path, const char *place, const cJSON *it, bool required, char **out) {
    *out = NULL;
    if (!it) return required ? qc_error(QIAO_ERR_FORMAT, "%s: %s: missing", path, place) : QIAO_OK;
    if (!cJSON_IsString(it) || !it->valuestring[0])
        return qc_error(QIAO_ERR_FORMAT, "%s: %s: not a non-empty text", path, place);
    const size_t n = strlen(it->valuestring);
    if (!qc_utf8_valid(it->valuestring, n)) return qc_error(QIAO_ERR_FORMAT, "%s: %s: invalid UTF-8", path, place);
    *out = strdup(it->valuestring);
    return *out ? QIAO_OK : qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
}

int qbot_find_slot(const qiao_bot *bot, const char *name) {
    for (size_t i = 0; i < bot->n_slots; i++)
        if (!strcmp(bot->slots[i].name, name)) return (int)i;
    return -1;
}

int qbot_find_response(const qiao_bot *bot, const char *name) {
    for (size_t i = 0; i < bot->n_responses; i++)
        if (!strcmp(bot->responses[i].name, name)) return (int)i;
    return -1;
}

static int find_form(const qiao_bot *bot, const char *name) {
    for (size_t i = 0; i < bot->n_forms; i++)
        if (!strcmp(bot->forms[i].name, name)) return (int)i;
    return -1;
}

int qbot_find_action(const qiao_bot *bot, const char *name) {
    for (size_t i = 0; i < bot->n_actions; i++)
        if (!strcmp(bot->actions[i].name, name)) return (int)i;
    return -1;
}

/* A reference to a response, checked. */
static qiao_status response_ref(const qiao_bot *bot, const char *place, const cJSON *it, bool required, int *out) {
    *out = -1;
    if (!it) return required ? qc_error(QIAO_ERR_FORMAT, "%s: %s: missing", bot->path, place) : QIAO_OK;
    if (!cJSON_IsString(it)) return qc_error(QIAO_ERR_FORMAT, "%s: %s: not a response's name", bot->path, place);
    *out = qbot_find_response(bot, it->valuestring);
    if (*out < 0)
        return qc_error(QIAO_ERR_FORMAT, "%s: %s: unknown response '%s'", bot->path, place, it->valuestring);
    return QIAO_OK;
}

/* A template's {names} must be slots, or what a failed check fills in:
 * {value} (the text given), {slot} (its label), {problem} (what is wrong). */
static qiao_status template_ok(const qiao_bot *bot, const char *place, const char *t) {
    for (const char *p = strchr(t, '{'); p; p = strchr(p + 1, '{')) {
        const char *e = strchr(p, '}');
        if (!e) return qc_error(QIAO_ERR_FORMAT, "%s: %s: '{' without '}'", bot->path, place);
        char name[128];
        const size_t n = (size_t)(e - p - 1);
        if (n == 0 || n >= sizeof name) return qc_error(QIAO_ERR_FORMAT, "%s: %s: bad slot name", bot->path, place);
        memcpy(name, p + 1, n);
        name[n] = 0;
        if (strcmp(name, "value") && strcmp(name, "slot") && strcmp(name, "problem") && qbot_find_slot(bot, name) < 0)
            return qc_error(QIAO_ERR_FORMAT, "%s: %s: names slot '%s', which the bot does not declare", bot->path,
                            place, name);
    }
    return QIAO_OK;
}

static qiao_status variants(const qiao_bot *bot, const char *place, const cJSON *it, char ***out, size_t *n) {
    *out = NULL, *n = 0;
    if (!it) return QIAO_OK;
    const size_t count = cJSON_IsArray(it) ? (size_t)cJSON_GetArraySize(it) : 1;
    if (count == 0) return qc_error(QIAO_ERR_FORMAT, "%s: %s: no variants", bot->path, place);
    *out = calloc(count, sizeof **out);
    if (!*out) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory");
    const cJSON *v = cJSON_IsArray(it) ? it->child : it;
    for (size_t i = 0; i < count; i++, v = v->next) {
        char sub[256];
        snprintf(sub, sizeof sub, "%s[%zu]", place, i);
        qiao_status st = text_of(bot->path, sub, v, true, &(*out)[i]);
        if (st == QIAO_OK) *n = i + 1, st = template_ok(bot, sub, (*out)[i]);
        if (st != QIAO_OK) return st;
    }
    return QIAO_OK;
}

static qiao_status read_responses(qiao_bot *bot, const cJSON *root) {
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(root, "responses");
    if (!cJSON_IsObject(rs)) return qc_error(QIAO_ERR_FORMAT, "%s: responses: missing or not an object", bot->path);
    const size_t n = (size_t)cJSON_GetArraySize(rs);
    bot->responses = calloc(n ? n : 1, sizeof *bot->responses);
    if (!bot->responses) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory");
    for (const cJSON *r = rs->child; r; r = r->next) {
        qbot_response *q = &bot->responses[bot->n_responses++];
        q->name = strdup(r->string);
        if (!q->name) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory");
    }
    return QIAO_OK;
}

/* Templates are checked once the slots are known. */
static qiao_status read_response_texts(qiao_bot *bot, const cJSON *root) {
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(root, "responses");
    size_t i = 0;
    for (const cJSON *r = rs->child; r; r = r->next, i++) {
        qbot_response *q = &bot->responses[i];
        char place[256];
        snprintf(place, sizeof place, "responses.%s", r->string);
        qiao_status st;
        if (cJSON_IsString(r) || cJSON_IsArray(r)) {
            /* One language: as the bot's default. */
            const bool zh = !strcmp(bot->default_language, "zh");
            st = variants(bot, place, r, zh ? &q->zh : &q->en, zh ? &q->n_zh : &q->n_en);
        } else {
            static const char *const known[] = {"zh", "en", NULL};
            st = keys_known(bot->path, place, r, known);
            char sub[300];
            snprintf(sub, sizeof sub, "%s.zh", place);
            if (st == QIAO_OK) st = variants(bot, sub, cJSON_GetObjectItemCaseSensitive(r, "zh"), &q->zh, &q->n_zh);
            snprintf(sub, sizeof sub, "%s.en", place);
            if (st == QIAO_OK) st = variants(bot, sub, cJSON_GetObjectItemCaseSensitive(r, "en"), &q->en, &q->n_en);
        }
        if (st != QIAO_OK) return st;
        if (q->n_zh + q->n_en == 0) return qc_error(QIAO_ERR_FORMAT, "%s: %s: no text", bot->path, place);
    }
    return QIAO_OK;
}

static qiao_status read_check(qiao_bot *bot, qbot_slot *s, const char *place, const cJSON *o) {
    const cJSON *re = cJSON_GetObjectItemCaseSensitive(o, "regex");
    const cJSON *num = cJSON_GetObjectItemCaseSensitive(o, "number");
    const cJSON *date = cJSON_GetObjectItemCaseSensitive(o, "date");
    const cJSON *en = cJSON_GetObjectItemCaseSensitive(o, "enum");
    if (!!re + !!num + !!(date && cJSON_IsTrue(date)) + !!en > 1)
        return qc_error(QIAO_ERR_FORMAT, "%s: %s: at most one of regex, number, date, enum", bot->path, place);
    if (date && !cJSON_IsBool(date)) return qc_error(QIAO_ERR_FORMAT, "%s: %s.date: not true/false", bot->path, place);
    if (re) {
        if (!cJSON_IsString(re) || !re->valuestring[0])
            return qc_error(QIAO_ERR_FORMAT, "%s: %s.regex: not a non-empty text", bot->path, place);
        const int rc = regcomp(&s->re, re->valuestring, REG_EXTENDED);
        if (rc != 0) {
            char msg[160];
            regerror(rc, &s->re, msg, sizeof msg);
            return qc_error(QIAO_ERR_FORMAT, "%s: %s.regex: %s", bot->path, place, msg);
        }
        s->has_re = true, s->check = QBOT_CHECK_REGEX;
    } else if (num) {
        static const char *const known[] = {"min", "max", NULL};
        char sub[300];
        snprintf(sub, sizeof sub, "%s.number", place);
        qiao_status st = keys_known(bot->path, sub, num, known);
        if (st != QIAO_OK) return st;
        const cJSON *lo = cJSON_GetObjectItemCaseSensitive(num, "min"), *hi = cJSON_GetObjectItemCaseSensitive(num, "max");
        if ((lo && !cJSON_IsNumber(lo)) || (hi && !cJSON_IsNumber(hi)))
            return qc_error(QIAO_ERR_FORMAT, "%s: %s: min and max must be numbers", bot->path, sub);
        s->min = lo ? lo->valuedouble : -1e300, s->max = hi ? hi->valuedouble : 1e300;
        if (s->min > s->max) return qc_error(QIAO_ERR_FORMAT, "%s: %s: min above max", bot->path, sub);
        s->check = QBOT_CHECK_NUMBER;
    } else if (date && cJSON_IsTrue(date)) {
        s->check = QBOT_CHECK_DATE;
    } else if (en) {
        /* A list of values, or an object of value -> synonyms. */
        char sub[300];
        snprintf(sub, sizeof sub, "%s.enum", place);
        if ((!cJSON_IsArray(en) && !cJSON_IsObject(en)) || cJSON_GetArraySize(en) == 0)
            return qc_error(QIAO_ERR_FORMAT, "%s: %s: a list of values, or values with their synonyms", bot->path,
                            sub);
        const size_t n = (size_t)cJSON_GetArraySize(en);
        s->values = calloc(n, sizeof *s->values);
        s->synonyms = calloc(n, sizeof *s->synonyms);
        if (!s->values || !s->synonyms) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory");
        for (const cJSON *v = en->child; v; v = v->next) {
            char vp[400];
            snprintf(vp, sizeof vp, "%s[%zu]", sub, s->n_values);
            const size_t k = s->n_values;
            if (cJSON_IsObject(en)) {
                s->values[k] = strdup(v->string);
                if (!s->values[k]) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory");
                s->n_values++;
                const size_t m = cJSON_IsArray(v) ? (size_t)cJSON_GetArraySize(v) : 0;
                if (!cJSON_IsArray(v)) return qc_error(QIAO_ERR_FORMAT, "%s: %s: synonyms must be a list", bot->path, vp);
                s->synonyms[k] = calloc(m + 1, sizeof **s->synonyms);
                if (!s->synonyms[k]) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory");
                size_t j = 0;
                for (const cJSON *w = v->child; w; w = w->next, j++) {
                    const qiao_status st = text_of(bot->path, vp, w, true, &s->synonyms[k][j]);
                    if (st != QIAO_OK) return st;
                }
            } else {
                const qiao_status st = text_of(bot->path, vp, v, true, &s->values[k]);
                if (st != QIAO_OK) return st;
                s->n_values++;
                s->synonyms[k] = calloc(1, sizeof **s->synonyms);
                if (!s->synonyms[k]) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory");
            }
        }
        s->check = QBOT_CHECK_ENUM;
    }
    return QIAO_OK;
}

static qiao_status read_slots(qiao_bot *bot, const cJSON *root) {
    const cJSON *ss = cJSON_GetObjectItemCaseSensitive(root, "slots");
    if (!ss) return QIAO_OK;
    if (!cJSON_IsObject(ss)) return qc_error(QIAO_ERR_FORMAT, "%s: slots: not an object", bot->path);
    const size_t n = (size_t)cJSON_GetArraySize(ss);
    bot->slots = calloc(n ? n : 1, sizeof *bot->slots);
    if (!bot->slots) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory");
    for (const cJSON *o = ss->child; o; o = o->next) {
        qbot_slot *s = &bot->slots[bot->n_slots++];
        s->ask = s->invalid = -1;
        s->name = strdup(o->string);
        if (!s->name) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory");
        char place[256];
        snprintf(place, sizeof place, "slots.%s", o->string);
        if (!strcmp(o->string, "value") || !strcmp(o->string, "slot") || !strcmp(o->string, "problem"))
            return qc_error(QIAO_ERR_FORMAT, "%s: %s: a reserved name (replies use {%s} for a failed check)", bot->path,
                            place, o->string);
        static const char *const known[] = {"label", "entity", "regex", "number", "date", "enum", "free_text",
                                            "keep", "ask", "invalid", NULL};
        qiao_status st = keys_known(bot->path, place, o, known);
        if (st != QIAO_OK) return st;
        const cJSON *label = cJSON_GetObjectItemCaseSensitive(o, "label");
        if (label) {
            char sub[300];
            snprintf(sub, sizeof sub, "%s.label", place);
            if (cJSON_IsString(label)) {
                st = text_of(bot->path, sub, label, true, &s->label_zh);
                if (st == QIAO_OK) s->label_en = strdup(s->label_zh);
            } else {
                static const char *const lk[] = {"zh", "en", NULL};
                st = keys_known(bot->path, sub, label, lk);
                if (st == QIAO_OK) st = text_of(bot->path, sub, cJSON_GetObjectItemCaseSensitive(label, "zh"), false, &s->label_zh);
                if (st == QIAO_OK) st = text_of(bot->path, sub, cJSON_GetObjectItemCaseSensitive(label, "en"), false, &s->label_en);
            }
            if (st != QIAO_OK) return st;
        }
        st = text_of(bot->path, place, cJSON_GetObjectItemCaseSensitive(o, "entity"), false, &s->entity);
        if (st != QIAO_OK) return st;
        if (s->entity) {
            bool found = false;
            for (size_t t = 0; t < bot->n_types && !found; t++) found = !strcmp(bot->types[t], s->entity);
            if (!found)
                return qc_error(QIAO_ERR_FORMAT, "%s: %s.entity: the classifier tags no entity '%s'", bot->path, place,
                                s->entity);
        }
        st = read_check(bot, s, place, o);
        if (st != QIAO_OK) return st;
        const cJSON *ft = cJSON_GetObjectItemCaseSensitive(o, "free_text"), *kp = cJSON_GetObjectItemCaseSensitive(o, "keep");
        if ((ft && !cJSON_IsBool(ft)) || (kp && !cJSON_IsBool(kp)))
            return qc_error(QIAO_ERR_FORMAT, "%s: %s: free_text and keep are true or false", bot->path, place);
        s->free_text = cJSON_IsTrue(ft), s->keep = cJSON_IsTrue(kp);
        char sub[300];
        snprintf(sub, sizeof sub, "%s.ask", place);
        st = response_ref(bot, sub, cJSON_GetObjectItemCaseSensitive(o, "ask"), false, &s->ask);
        snprintf(sub, sizeof sub, "%s.invalid", place);
        if (st == QIAO_OK) st = response_ref(bot, sub, cJSON_GetObjectItemCaseSensitive(o, "invalid"), false, &s->invalid);
        if (st != QIAO_OK) return st;
    }
    for (size_t i = 0; i < bot->n_slots; i++)
        for (size_t j = 0; j < i; j++)
            if (bot->slots[i].entity && bot->slots[j].entity && !strcmp(bot->slots[i].entity, bot->slots[j].entity))
                return qc_error(QIAO_ERR_FORMAT, "%s: slots.%s: entity '%s' already fills slot '%s'", bot->path,
                                bot->slots[i].name, bot->slots[i].entity, bot->slots[j].name);
    return QIAO_OK;
}

static qiao_status read_actions(qiao_bot *bot, const cJSON *root) {
    const cJSON *as = cJSON_GetObjectItemCaseSensitive(root, "actions");
    if (!as) return QIAO_OK;
    if (!cJSON_IsArray(as)) return qc_error(QIAO_ERR_FORMAT, "%s: actions: not a list of names", bot->path);
    const size_t n = (size_t)cJSON_GetArraySize(as);
    bot->actions = calloc(n ? n : 1, sizeof *bot->actions);
    if (!bot->actions) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory");
    for (const cJSON *a = as->child; a; a = a->next) {
        char place[64];
        snprintf(place, sizeof place, "actions[%zu]", bot->n_actions);
        char *name = NULL;
        const qiao_status st = text_of(bot->path, place, a, true, &name);
        if (st != QIAO_OK) return st;
        if (qbot_find_action(bot, name) >= 0) {
            const qiao_status e = qc_error(QIAO_ERR_FORMAT, "%s: %s: '%s' listed twice", bot->path, place, name);
            free(name);
            return e;
        }
        bot->actions[bot->n_actions++].name = name;
    }
    return QIAO_OK;
}

static qiao_status action_ref(const qiao_bot *bot, const char *place, const cJSON *it, int *out) {
    *out = -1;
    if (!it) return QIAO_OK;
    if (!cJSON_IsString(it)) return qc_error(QIAO_ERR_FORMAT, "%s: %s: not an action's name", bot->path, place);
    *out = qbot_find_action(bot, it->valuestring);
    if (*out < 0)
        return qc_error(QIAO_ERR_FORMAT, "%s: %s: action '%s' is not in the file's actions", bot->path, place,
                        it->valuestring);
    return QIAO_OK;
}

static qiao_status read_forms(qiao_bot *bot, const cJSON *root) {
    const cJSON *fs = cJSON_GetObjectItemCaseSensitive(root, "forms");
    if (!fs) return QIAO_OK;
    if (!cJSON_IsObject(fs)) return qc_error(QIAO_ERR_FORMAT, "%s: forms: not an object", bot->path);
    const size_t n = (size_t)cJSON_GetArraySize(fs);
    bot->forms = calloc(n ? n : 1, sizeof *bot->forms);
    if (!bot->forms) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory");
    for (const cJSON *o = fs->child; o; o = o->next) {
        qbot_form *f = &bot->forms[bot->n_forms++];
        f->confirm = f->action = f->done = f->next = -1;
        f->name = strdup(o->string);
        if (!f->name) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory");
    }
    size_t fi = 0;
    for (const cJSON *o = fs->child; o; o = o->next, fi++) {
        qbot_form *f = &bot->forms[fi];
        char place[256], sub[300];
        snprintf(place, sizeof place, "forms.%s", o->string);
        static const char *const known[] = {"slots", "confirm", "action", "done", "next", NULL};
        qiao_status st = keys_known(bot->path, place, o, known);
        if (st != QIAO_OK) return st;
        const cJSON *sl = cJSON_GetObjectItemCaseSensitive(o, "slots");
        if (!cJSON_IsArray(sl))
            return qc_error(QIAO_ERR_FORMAT, "%s: %s.slots: missing or not a list", bot->path, place);
        const size_t m = (size_t)cJSON_GetArraySize(sl);
        f->slots = calloc(m ? m : 1, sizeof *f->slots);
        if (!f->slots) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory");
        for (const cJSON *s = sl->child; s; s = s->next) {
            snprintf(sub, sizeof sub, "%s.slots[%zu]", place, f->n_slots);
            const int k = cJSON_IsString(s) ? qbot_find_slot(bot, s->valuestring) : -1;
            if (k < 0)
                return qc_error(QIAO_ERR_FORMAT, "%s: %s: unknown slot '%s'", bot->path, sub,
                                cJSON_IsString(s) ? s->valuestring : "(not a name)");
            for (size_t j = 0; j < f->n_slots; j++)
                if (f->slots[j] == k) return qc_error(QIAO_ERR_FORMAT, "%s: %s: slot '%s' twice", bot->path, sub, s->valuestring);
            if (bot->slots[k].ask < 0)
                return qc_error(QIAO_ERR_FORMAT, "%s: %s: slot '%s' has no 'ask' response to ask for it", bot->path,
                                sub, s->valuestring);
            f->slots[f->n_slots++] = k;
        }
        snprintf(sub, sizeof sub, "%s.confirm", place);
        st = response_ref(bot, sub, cJSON_GetObjectItemCaseSensitive(o, "confirm"), false, &f->confirm);
        snprintf(sub, sizeof sub, "%s.done", place);
        if (st == QIAO_OK) st = response_ref(bot, sub, cJSON_GetObjectItemCaseSensitive(o, "done"), false, &f->done);
        snprintf(sub, sizeof sub, "%s.action", place);
        if (st == QIAO_OK) st = action_ref(bot, sub, cJSON_GetObjectItemCaseSensitive(o, "action"), &f->action);
        if (st != QIAO_OK) return st;
        const cJSON *nx = cJSON_GetObjectItemCaseSensitive(o, "next");
        if (nx) {
            f->next = cJSON_IsString(nx) ? find_form(bot, nx->valuestring) : -1;
            if (f->next < 0)
                return qc_error(QIAO_ERR_FORMAT, "%s: %s.next: unknown form '%s'", bot->path, place,
                                cJSON_IsString(nx) ? nx->valuestring : "(not a name)");
        }
        if (f->done < 0 && f->action < 0)
            return qc_error(QIAO_ERR_FORMAT, "%s: %s: neither an action nor a 'done' response ends it", bot->path, place);
    }
    /* A chain of `next` forms must end: walk each for at most n_forms steps. */
    for (size_t i = 0; i < bot->n_forms; i++) {
        int at = (int)i;
        for (size_t step = 0; at >= 0; step++) {
            if (step > bot->n_forms)
                return qc_error(QIAO_ERR_FORMAT, "%s: forms.%s.next: the forms lead back to '%s' (a cycle)", bot->path,
                                bot->forms[i].name, bot->forms[i].name);
            at = bot->forms[at].next;
        }
    }
    return QIAO_OK;
}

static qiao_status read_intents(qiao_bot *bot, const cJSON *root) {
    const cJSON *is = cJSON_GetObjectItemCaseSensitive(root, "intents");
    if (!cJSON_IsObject(is)) return qc_error(QIAO_ERR_FORMAT, "%s: intents: missing or not an object", bot->path);
    bot->n_intents = bot->n_labels;
    bot->intents = calloc(bot->n_intents ? bot->n_intents : 1, sizeof *bot->intents);
    if (!bot->intents) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory");
    bot->affirm = bot->deny = -1;
    for (size_t i = 0; i < bot->n_intents; i++) {
        bot->intents[i].name = bot->labels[i];
        bot->intents[i].response = bot->intents[i].form = bot->intents[i].action = -1;
    }
    const char *oos = bot->oos_label ? bot->oos_label : "";
    for (const cJSON *o = is->child; o; o = o->next) {
        char place[256], sub[300];
        snprintf(place, sizeof place, "intents.%s", o->string);
        int k = -1;
        for (size_t i = 0; i < bot->n_intents && k < 0; i++)
            if (!strcmp(bot->intents[i].name, o->string)) k = (int)i;
        if (k < 0)
            return qc_error(QIAO_ERR_FORMAT, "%s: %s: the classifier has no intent '%s'", bot->path, place, o->string);
        qbot_intent *it = &bot->intents[k];
        static const char *const known[] = {"respond", "form", "action", "handoff", "stop", "affirm", "deny",
                                            "out_of_scope", "global", NULL};
        qiao_status st = keys_known(bot->path, place, o, known);
        if (st != QIAO_OK) return st;
        static const char *const flags[] = {"handoff", "stop", "affirm", "deny", "out_of_scope", "global"};
        for (size_t f = 0; f < sizeof flags / sizeof *flags; f++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, flags[f]);
            if (v && !cJSON_IsBool(v))
                return qc_error(QIAO_ERR_FORMAT, "%s: %s.%s: true or false", bot->path, place, flags[f]);
        }
        const bool form = cJSON_GetObjectItemCaseSensitive(o, "form") != NULL;
        const bool handoff = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "handoff"));
        const bool stop = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "stop"));
        const bool affirm = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "affirm"));
        const bool deny = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "deny"));
        const bool out = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "out_of_scope")) ||
                         (oos[0] && !strcmp(oos, o->string));
        if (form + handoff + stop + affirm + deny + out > 1)
            return qc_error(QIAO_ERR_FORMAT, "%s: %s: one of form, handoff, stop, affirm, deny, out_of_scope", bot->path,
                            place);
        it->handled = true;
        it->kind = form ? QBOT_FORM : handoff ? QBOT_HANDOFF : stop ? QBOT_STOP : affirm ? QBOT_AFFIRM
                 : deny ? QBOT_DENY : out ? QBOT_OOS : QBOT_RESPOND;
        /* Stopping always interrupts a form; a handoff interrupts a question
         * of a checked slot, and a free-text answer only when global. */
        it->global = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "global")) || stop;
        if (affirm) bot->affirm = k;
        if (deny) bot->deny = k;
        snprintf(sub, sizeof sub, "%s.respond", place);
        st = response_ref(bot, sub, cJSON_GetObjectItemCaseSensitive(o, "respond"), false, &it->response);
        snprintf(sub, sizeof sub, "%s.action", place);
        if (st == QIAO_OK) st = action_ref(bot, sub, cJSON_GetObjectItemCaseSensitive(o, "action"), &it->action);
        if (st != QIAO_OK) return st;
        if (form) {
            const cJSON *fv = cJSON_GetObjectItemCaseSensitive(o, "form");
            it->form = cJSON_IsString(fv) ? find_form(bot, fv->valuestring) : -1;
            if (it->form < 0)
                return qc_error(QIAO_ERR_FORMAT, "%s: %s.form: unknown form '%s'", bot->path, place,
                                cJSON_IsString(fv) ? fv->valuestring : "(not a name)");
        }
        if (it->kind == QBOT_RESPOND && it->response < 0 && it->action < 0)
            return qc_error(QIAO_ERR_FORMAT, "%s: %s: says nothing and does nothing (give respond, form, action...)",
                            bot->path, place);
    }
    return QIAO_OK;
}

static qiao_status read_system(qiao_bot *bot, const cJSON *root) {
    static const char *const names[QBOT_R_COUNT] = {"rephrase", "handoff", "resume", "action_failed", "stopped",
                                                    "nothing_to_do", "invalid_value", "out_of_scope", "unhandled"};
    for (int r = 0; r < QBOT_R_COUNT; r++) bot->sys[r] = qbot_find_response(bot, names[r]);
    (void)root;
    /* The replies every bot can need. */
    static const int required[] = {QBOT_R_REPHRASE, QBOT_R_HANDOFF, QBOT_R_RESUME, QBOT_R_ACTION_FAILED,
                                   QBOT_R_INVALID};
    for (size_t i = 0; i < sizeof required / sizeof *required; i++)
        if (bot->sys[required[i]] < 0)
            return qc_error(QIAO_ERR_FORMAT, "%s: responses: '%s' is missing (every bot needs it)", bot->path,
                            names[required[i]]);
    bool stop = false, yesno = false, unhandled = false;
    for (size_t i = 0; i < bot->n_intents; i++) {
        const qbot_intent *it = &bot->intents[i];
        stop |= it->handled && it->kind == QBOT_STOP;
        yesno |= it->handled && (it->kind == QBOT_AFFIRM || it->kind == QBOT_DENY);
        unhandled |= !it->handled;
    }
    const struct {
        bool need;
        int role;
        const char *why;
    } needs[] = {{stop, QBOT_R_STOPPED, "a stop intent"},
                 {stop || yesno, QBOT_R_NOTHING, "a stop, affirm or deny intent"},
                 {true, QBOT_R_OOS, "out-of-scope messages"},
                 {unhandled, QBOT_R_UNHANDLED, "the classifier's intents the file does not name"}};
    for (size_t i = 0; i < sizeof needs / sizeof *needs; i++)
        if (needs[i].need && bot->sys[needs[i].role] < 0)
            return qc_error(QIAO_ERR_FORMAT, "%s: responses: '%s' is missing (needed for %s)", bot->path,
                            names[needs[i].role], needs[i].why);
    return QIAO_OK;
}

static qiao_status policy_number(const qiao_bot *bot, const cJSON *p, const char *key, double lo, double hi,
                                 bool integer, double *v) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(p, key);
    if (!it) return QIAO_OK;
    if (!cJSON_IsNumber(it) || !(it->valuedouble >= lo && it->valuedouble <= hi) ||
        (integer && it->valuedouble != (double)(int64_t)it->valuedouble))
        return qc_error(QIAO_ERR_FORMAT, "%s: policy.%s: %s in [%g, %g]", bot->path, key,
                        integer ? "a whole number" : "a number", lo, hi);
    *v = it->valuedouble;
    return QIAO_OK;
}

static qiao_status read_policy(qiao_bot *bot, const cJSON *root) {
    double conf = 0.3, margin = 0.1, boost = 4, failures = 2, turns = 15, seed = 1;
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(root, "policy");
    if (p) {
        static const char *const known[] = {"confidence", "margin", "max_failures", "context_turns", "seed",
                                            "confirm_boost", NULL};
        qiao_status st = keys_known(bot->path, "policy", p, known);
        if (st == QIAO_OK) st = policy_number(bot, p, "confidence", 0, 1, false, &conf);
        if (st == QIAO_OK) st = policy_number(bot, p, "margin", 0, 1, false, &margin);
        if (st == QIAO_OK) st = policy_number(bot, p, "confirm_boost", 1, 1000, false, &boost);
        if (st == QIAO_OK) st = policy_number(bot, p, "max_failures", 1, 100, true, &failures);
        if (st == QIAO_OK) st = policy_number(bot, p, "context_turns", 1, 1000, true, &turns);
        if (st == QIAO_OK) st = policy_number(bot, p, "seed", 0, 9007199254740992.0, true, &seed);
        if (st != QIAO_OK) return st;
    }
    bot->min_confidence = (float)conf, bot->min_margin = (float)margin, bot->confirm_boost = (float)boost;
    bot->max_failures = (int)failures, bot->context_turns = (int)turns, bot->seed = (uint64_t)seed;
    return QIAO_OK;
}

/* ---- The whole file --------------------------------------------------------- */

qiao_status qbot_read(qiao_bot *bot, const cJSON *root) {
    const char *path = bot->path;
    static const char *const known[] = {"name", "model", "language", "policy", "slots", "forms", "intents",
                                        "responses", "actions", "app", "version", NULL};
    qiao_status st = keys_known(path, "the bot", root, known);
    const cJSON *ver = cJSON_GetObjectItemCaseSensitive(root, "version");
    if (st == QIAO_OK && ver && !(cJSON_IsNumber(ver) && ver->valuedouble == 1))
        st = qc_error(QIAO_ERR_UNSUPPORTED, "%s: version: this qiao reads version 1", path);
    if (st == QIAO_OK) st = text_of(path, "name", cJSON_GetObjectItemCaseSensitive(root, "name"), true, &bot->name);
    const cJSON *lang = cJSON_GetObjectItemCaseSensitive(root, "language");
    if (st == QIAO_OK) st = text_of(path, "language", lang, false, &bot->default_language);
    if (st == QIAO_OK && !bot->default_language) bot->default_language = strdup("zh");
    if (st == QIAO_OK && !bot->default_language) st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory");
    if (st == QIAO_OK && strcmp(bot->default_language, "zh") && strcmp(bot->default_language, "en"))
        st = qc_error(QIAO_ERR_FORMAT, "%s: language: \"zh\" or \"en\"", path);
    if (st == QIAO_OK) {
        const cJSON *app = cJSON_GetObjectItemCaseSensitive(root, "app");
        if (app && !cJSON_IsObject(app)) st = qc_error(QIAO_ERR_FORMAT, "%s: app: not an object", path);
        else bot->app_json = app ? cJSON_PrintUnformatted(app) : strdup("{}");
        if (st == QIAO_OK && !bot->app_json) st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory");
    }
    if (st == QIAO_OK) st = read_policy(bot, root);
    if (st == QIAO_OK) st = read_responses(bot, root);
    if (st == QIAO_OK) st = read_actions(bot, root);
    if (st == QIAO_OK) st = read_slots(bot, root);
    if (st == QIAO_OK) st = read_response_texts(bot, root);
    if (st == QIAO_OK) st = read_forms(bot, root);
    if (st == QIAO_OK) st = read_intents(bot, root);
    if (st == QIAO_OK) st = read_system(bot, root);
    return st;
}

qiao_status qbot_text(const char *path, const char *place, const cJSON *it, bool required, char **out) {
    return text_of(path, place, it, required, out);
}

void qbot_clear(qiao_bot *bot) {

    for (size_t i = 0; i < bot->n_responses; i++) {
        qbot_response *r = &bot->responses[i];
        for (size_t k = 0; k < r->n_zh; k++) free(r->zh[k]);
        for (size_t k = 0; k < r->n_en; k++) free(r->en[k]);
        free(r->zh), free(r->en), free(r->name);
    }
    free(bot->responses);
    for (size_t i = 0; i < bot->n_slots; i++) {
        qbot_slot *s = &bot->slots[i];
        if (s->has_re) regfree(&s->re);
        for (size_t k = 0; k < s->n_values; k++) {
            for (char **w = s->synonyms[k]; w && *w; w++) free(*w);
            free(s->synonyms[k]), free(s->values[k]);
        }
        free(s->values), free(s->synonyms);
        free(s->name), free(s->label_zh), free(s->label_en), free(s->entity);
    }
    free(bot->slots);
    for (size_t i = 0; i < bot->n_forms; i++) free(bot->forms[i].name), free(bot->forms[i].slots);
    free(bot->forms);
    for (size_t i = 0; i < bot->n_actions; i++) free(bot->actions[i].name);
    free(bot->actions);
    free(bot->intents);
    free(bot->name), free(bot->app_json), free(bot->default_language);
}
