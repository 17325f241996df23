/* datasets/intent/intent_convert.c - the four upstream corpora (CLINC150,
 * BANKING77, xSID, CrossWOZ) to the JSONL format of intent.h, with a
 * SOURCE.md that keeps the attribution and says how each was converted. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "intent/intent.h"

/* 1-based line of byte offset `off` in data. */
static int64_t line_of(const char *data, size_t off) {
    int64_t line = 1;
    for (size_t i = 0; i < off; i++) line += data[i] == '\n';
    return line;
}

/* ---- CLINC150 -------------------------------------------------------------- */

static qiao_status conv_clinc150(const char *in_dir, qint_writer *w) {
    static const struct {
        const char *key;
        int split;
        int oos;
    } keys[] = {{"train", QINT_TRAIN, 0}, {"oos_train", QINT_TRAIN, 1}, {"val", QINT_VAL, 0},
                {"oos_val", QINT_VAL, 1},  {"test", QINT_TEST, 0},       {"oos_test", QINT_TEST, 1}};
    char path[4200];
    qiao_status st = qint_path(path, sizeof path, in_dir, "data_full.json");
    if (st) return st;
    char *data;
    size_t len;
    if ((st = qint_read_file(path, &data, &len))) return st;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(data, len, &end, 0);
    if (!root) {
        size_t off = end && end >= data && end <= data + len ? (size_t)(end - data) : 0;
        st = qc_error(QIAO_ERR_FORMAT, "%s:%lld: not valid JSON", path, (long long)line_of(data, off));
        free(data);
        return st;
    }
    free(data);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return qc_error(QIAO_ERR_FORMAT, "%s:1: expected an object of splits", path);
    }
    const cJSON *item;
    cJSON_ArrayForEach(item, root) {
        int known = 0;
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) known |= !strcmp(item->string, keys[k].key);
        if (!known) {
            cJSON_Delete(root);
            return qc_error(QIAO_ERR_FORMAT, "%s: unexpected split \"%s\"", path, item->string);
        }
    }
    for (size_t k = 0; k < sizeof keys / sizeof keys[0] && !st; k++) {
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, keys[k].key);
        if (!cJSON_IsArray(arr)) {
            st = qc_error(QIAO_ERR_FORMAT, "%s: missing split \"%s\"", path, keys[k].key);
            break;
        }
        int64_t i = 0;
        const cJSON *ex;
        cJSON_ArrayForEach(ex, arr) {
            char where[4400];
            snprintf(where, sizeof where, "%s: \"%s\"[%lld]", path, keys[k].key, (long long)i);
            const cJSON *t = cJSON_GetArrayItem(ex, 0), *l = cJSON_GetArrayItem(ex, 1);
            if (!cJSON_IsArray(ex) || cJSON_GetArraySize(ex) != 2 || !cJSON_IsString(t) || !cJSON_IsString(l) ||
                !t->valuestring[0] || !l->valuestring[0]) {
                st = qc_error(QIAO_ERR_FORMAT, "%s: expected [utterance, intent]", where);
                break;
            }
            if (keys[k].oos != !strcmp(l->valuestring, "oos")) {
                st = qc_error(QIAO_ERR_FORMAT, "%s: intent \"%s\" in split \"%s\"", where, l->valuestring,
                              keys[k].key);
                break;
            }
            qint_example e = {t->valuestring, strlen(t->valuestring), l->valuestring, NULL, 0, NULL, 0, NULL, 0};
            if ((st = qint_writer_add(w, keys[k].split, &e, where))) break;
            i++;
        }
    }
    cJSON_Delete(root);
    return st;
}

/* ---- BANKING77 (RFC 4180 CSV) -------------------------------------------- */

/* Reads one CSV record of up to 2 fields starting at *pos; unquoted fields
 * into buf (NUL-separated). A record may span lines inside quotes. Returns
 * the number of fields, or -1 with *err set. */
static int csv_record(const char *d, size_t len, size_t *pos, int64_t *line, char *buf, char **fields,
                      int maxf, const char **err) {
    size_t p = *pos, o = 0;
    int nf = 0;
    for (;;) {
        if (nf == maxf) {
            *err = "too many fields";
            return -1;
        }
        fields[nf++] = buf + o;
        if (p < len && d[p] == '"') {
            p++;
            for (;;) {
                if (p >= len) {
                    *err = "unterminated quoted field";
                    return -1;
                }
                if (d[p] == '"') {
                    if (p + 1 < len && d[p + 1] == '"') {
                        buf[o++] = '"';
                        p += 2;
                        continue;
                    }
                    p++;
                    break;
                }
                if (d[p] == '\n') (*line)++;
                buf[o++] = d[p++];
            }
            if (p < len && d[p] != ',' && d[p] != '\n' && d[p] != '\r') {
                *err = "text after a closing quote";
                return -1;
            }
        } else {
            while (p < len && d[p] != ',' && d[p] != '\n' && d[p] != '\r') {
                if (d[p] == '"') {
                    *err = "quote inside an unquoted field";
                    return -1;
                }
                buf[o++] = d[p++];
            }
        }
        buf[o++] = '\0';
        if (p < len && d[p] == ',') {
            p++;
            continue;
        }
        if (p < len && d[p] == '\r') p++;
        if (p < len && d[p] != '\n') {
            *err = "carriage return inside a field";
            return -1;
        }
        if (p < len) p++;
        break;
    }
    *pos = p;
    return nf;
}

static qiao_status conv_banking77_file(const char *in_dir, const char *name, int split, qint_writer *w) {
    char path[4200];
    qiao_status st = qint_path(path, sizeof path, in_dir, name);
    if (st) return st;
    char *data;
    size_t len;
    if ((st = qint_read_file(path, &data, &len))) return st;
    char *buf = malloc(len + 2);
    if (!buf) {
        free(data);
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    }
    size_t pos = 0;
    int64_t line = 1, rows = 0;
    while (pos < len) {
        int64_t first = line;
        char *f[2];
        const char *err = NULL;
        int n = csv_record(data, len, &pos, &line, buf, f, 2, &err);
        line++;
        char where[4300];
        snprintf(where, sizeof where, "%s:%lld", path, (long long)first);
        if (n < 0) {
            st = qc_error(QIAO_ERR_FORMAT, "%s: %s", where, err);
            break;
        }
        if (n != 2) {
            st = qc_error(QIAO_ERR_FORMAT, "%s: expected 2 fields (text,category), got %d", where, n);
            break;
        }
        if (first == 1) {
            if (strcmp(f[0], "text") || strcmp(f[1], "category")) {
                st = qc_error(QIAO_ERR_FORMAT, "%s: expected the header text,category", where);
                break;
            }
            continue;
        }
        if (!f[0][0] || !f[1][0]) {
            st = qc_error(QIAO_ERR_FORMAT, "%s: empty text or category", where);
            break;
        }
        qint_example e = {f[0], strlen(f[0]), f[1], NULL, 0, NULL, 0, NULL, 0};
        if ((st = qint_writer_add(w, split, &e, where))) break;
        rows++;
    }
    if (!st && rows == 0) st = qc_error(QIAO_ERR_FORMAT, "%s: no rows", path);
    free(buf);
    free(data);
    return st;
}

static qiao_status conv_banking77(const char *in_dir, qint_writer *w) {
    qiao_status st = conv_banking77_file(in_dir, "train.csv", QINT_TRAIN, w);
    if (!st) st = conv_banking77_file(in_dir, "test.csv", QINT_TEST, w);
    return st;
}

/* ---- xSID (CoNLL with "# text" / "# intent" and BIO slots) ---------------- */

#define XSID_MAX_TOKENS 512

typedef struct xsid_tok {
    const char *s; /* token, inside the file buffer */
    size_t len;
    const char *tag; /* BIO tag, NUL-terminated in the buffer */
    int64_t line;
    size_t start, end; /* span in the text */
} xsid_tok;

static int is_space(char c) { return c == ' ' || c == '\t'; }

/* Places the tokens onto the "# text" sentence, left to right, skipping only
 * whitespace between them. Returns 0 if some token is not where expected. */
static int xsid_map(const char *text, size_t tlen, xsid_tok *t, size_t n) {
    size_t p = 0;
    for (size_t i = 0; i < n; i++) {
        while (p < tlen && is_space(text[p])) p++;
        if (t[i].len > tlen - p || memcmp(text + p, t[i].s, t[i].len) != 0) return 0;
        t[i].start = p;
        t[i].end = p + t[i].len;
        p += t[i].len;
    }
    return 1;
}

/* When "# text" does not match the tokens, the text is rebuilt from them:
 * no space between CJK words, one space where both sides are ASCII (Latin
 * words, numbers), as xSID's Chinese sentences are written. */
static size_t xsid_rebuild(char *out, xsid_tok *t, size_t n) {
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && (unsigned char)t[i - 1].s[t[i - 1].len - 1] < 0x80 && (unsigned char)t[i].s[0] < 0x80)
            out[o++] = ' ';
        memcpy(out + o, t[i].s, t[i].len);
        t[i].start = o;
        o += t[i].len;
        t[i].end = o;
    }
    out[o] = '\0';
    return o;
}

static qiao_status xsid_flush(const char *path, int64_t block_line, const char *text, const char *intent,
                              xsid_tok *toks, size_t n, int split, qint_writer *w, char *scratch) {
    char where[4300];
    snprintf(where, sizeof where, "%s:%lld", path, (long long)block_line);
    if (!text || !intent || !intent[0] || n == 0)
        return qc_error(QIAO_ERR_FORMAT, "%s: utterance without \"# text\", \"# intent\" or tokens", where);
    size_t tlen = strlen(text);
    if (!xsid_map(text, tlen, toks, n)) {
        tlen = xsid_rebuild(scratch, toks, n);
        text = scratch;
    }
    qint_entity ents[XSID_MAX_TOKENS];
    size_t ne = 0;
    const char *open = NULL; /* type of the span being extended */
    for (size_t i = 0; i < n; i++) {
        const char *tag = toks[i].tag;
        if (!strcmp(tag, "O")) {
            open = NULL;
            continue;
        }
        if ((tag[0] != 'B' && tag[0] != 'I') || tag[1] != '-' || !tag[2])
            return qc_error(QIAO_ERR_FORMAT, "%s:%lld: bad BIO tag \"%s\"", path, (long long)toks[i].line, tag);
        /* An I- that does not continue the open span starts one, as
         * conlleval reads it. */
        if (tag[0] == 'I' && open && !strcmp(open, tag + 2)) {
            ents[ne - 1].end = toks[i].end;
            continue;
        }
        ents[ne].start = toks[i].start;
        ents[ne].end = toks[i].end;
        ents[ne].type = tag + 2;
        ne++;
        open = tag + 2;
    }
    qint_example e = {text, tlen, intent, NULL, 0, ents, ne, NULL, 0};
    return qint_writer_add(w, split, &e, where);
}

static qiao_status conv_xsid_file(const char *in_dir, const char *name, int split, qint_writer *w) {
    char path[4200];
    qiao_status st = qint_path(path, sizeof path, in_dir, name);
    if (st) return st;
    char *data;
    size_t len;
    if ((st = qint_read_file(path, &data, &len))) return st;
    xsid_tok *toks = malloc(XSID_MAX_TOKENS * sizeof *toks);
    char *scratch = malloc(len + XSID_MAX_TOKENS + 1);
    if (!toks || !scratch) {
        free(toks);
        free(scratch);
        free(data);
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    }
    const char *text = NULL, *intent = NULL;
    size_t n = 0;
    int64_t line = 0, block_line = 0, blocks = 0;
    int in_block = 0;
    for (size_t pos = 0; pos <= len && !st;) {
        char *nl = memchr(data + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - data) : len;
        line++;
        char *l = data + pos;
        data[end] = '\0'; /* the buffer is NUL-terminated at len too */
        if (end > pos && data[end - 1] == '\r') data[end - 1] = '\0';
        pos = end + 1;
        if (!l[0]) {
            if (in_block) {
                st = xsid_flush(path, block_line, text, intent, toks, n, split, w, scratch);
                blocks++;
            }
            in_block = 0;
            text = intent = NULL;
            n = 0;
            if (!nl) break;
            continue;
        }
        if (!in_block) {
            in_block = 1;
            block_line = line;
        }
        if (l[0] == '#') {
            char *eq = strstr(l, " = ");
            if (!eq) continue; /* "# slots: ..." and other comments */
            *eq = '\0';
            const char *key = l + 1, *val = eq + 3;
            while (*key == ' ') key++;
            if (!strcmp(key, "text")) text = val;
            else if (!strcmp(key, "intent")) intent = val;
            continue;
        }
        char *col[4];
        int nc = 0;
        col[nc++] = l;
        for (char *c = l; *c && nc < 4; c++)
            if (*c == '\t') {
                *c = '\0';
                col[nc++] = c + 1;
            }
        if (nc != 4 || strchr(col[3], '\t')) {
            st = qc_error(QIAO_ERR_FORMAT, "%s:%lld: expected index<TAB>token<TAB>intent<TAB>slot", path,
                          (long long)line);
            break;
        }
        /* zh.valid has one empty token (an "O" where the English had a
         * space): it places nowhere and labels nothing. */
        if (!col[1][0]) continue;
        if (n == XSID_MAX_TOKENS) {
            st = qc_error(QIAO_ERR_TOO_LARGE, "%s:%lld: more than %d tokens", path, (long long)line,
                          XSID_MAX_TOKENS);
            break;
        }
        toks[n].s = col[1];
        toks[n].len = strlen(col[1]);
        toks[n].tag = col[3];
        toks[n].line = line;
        n++;
        if (!nl) break;
    }
    if (!st && in_block) {
        st = xsid_flush(path, block_line, text, intent, toks, n, split, w, scratch);
        blocks++;
    }
    if (!st && blocks == 0) st = qc_error(QIAO_ERR_FORMAT, "%s: no utterances", path);
    free(toks);
    free(scratch);
    free(data);
    return st;
}

static qiao_status conv_xsid(const char *in_dir, const char *lang, qint_writer *w) {
    char valid[64], test[64];
    snprintf(valid, sizeof valid, "%s.valid.conll", lang);
    snprintf(test, sizeof test, "%s.test.conll", lang);
    qiao_status st = conv_xsid_file(in_dir, valid, QINT_VAL, w);
    if (!st) st = conv_xsid_file(in_dir, test, QINT_TEST, w);
    return st;
}

/* ---- CrossWOZ user turns -------------------------------------------------- */

#define CW_MAX_LABELS 64
/* Earlier turns kept before each user turn: BERTNLU's context window
 * (ConvLab-2's context_size), the system's turns and the user's. */
#define CW_CONTEXT 3

static const char *find_bytes(const char *hay, size_t hlen, const char *needle, size_t nlen) {
    if (nlen == 0 || nlen > hlen) return NULL;
    for (size_t i = 0; i + nlen <= hlen; i++)
        if (hay[i] == needle[0] && !memcmp(hay + i, needle, nlen)) return hay + i;
    return NULL;
}

static int ent_cmp(const void *a, const void *b) {
    const qint_entity *x = a, *y = b;
    if (x->start != y->start) return x->start < y->start ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return strcmp(x->type, y->type);
}

/* The dialogues of one split ({dialog_id: dialog}) from the upstream
 * archive <split>.json.zip, whose one member is <split>.json. */
static qiao_status cw_dialogs(const char *in_dir, int split, cJSON **out) {
    *out = NULL;
    char zip[64], member[64], path[4200];
    snprintf(zip, sizeof zip, "%s.json.zip", qint_split_name(split));
    snprintf(member, sizeof member, "%s.json", qint_split_name(split));
    qiao_status st = qint_path(path, sizeof path, in_dir, zip);
    char *data;
    size_t len;
    if (st || (st = qint_zip_read(path, member, &data, &len))) return st;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(data, len, &end, 0);
    if (!root) {
        size_t off = end && end >= data && end <= data + len ? (size_t)(end - data) : 0;
        st = qc_error(QIAO_ERR_FORMAT, "%s: %s:%lld: not valid JSON", path, member, (long long)line_of(data, off));
    } else if (!cJSON_IsObject(root)) {
        st = qc_error(QIAO_ERR_FORMAT, "%s: %s: expected an object of dialogues", path, member);
    }
    free(data);
    if (st) {
        cJSON_Delete(root);
        return st;
    }
    *out = root;
    return QIAO_OK;
}

/* The contents of the CW_CONTEXT messages before message `turn` of
 * dialogue `id` in `dialogs`, oldest first, into ctx (*n of them), after
 * checking that message `turn` is the user's `text`. */
static qiao_status cw_context(const cJSON *dialogs, const char *split, const char *id, int turn, const char *text,
                              const char *where, const char **ctx, size_t *n) {
    *n = 0;
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(dialogs, id);
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(d, "messages");
    if (!cJSON_IsArray(msgs))
        return qc_error(QIAO_ERR_FORMAT, "%s: dialogue %s is not in %s.json.zip (or has no messages)", where, id,
                        split);
    const cJSON *m = cJSON_GetArrayItem(msgs, turn), *role = cJSON_GetObjectItemCaseSensitive(m, "role"),
                *content = cJSON_GetObjectItemCaseSensitive(m, "content");
    if (!cJSON_IsString(role) || strcmp(role->valuestring, "usr") || !cJSON_IsString(content) ||
        strcmp(content->valuestring, text))
        return qc_error(QIAO_ERR_FORMAT, "%s: message %d of dialogue %s in %s.json.zip is not this user turn", where,
                        turn, id, split);
    for (int j = turn > CW_CONTEXT ? turn - CW_CONTEXT : 0; j < turn; j++) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(msgs, j), "content");
        if (!cJSON_IsString(c))
            return qc_error(QIAO_ERR_FORMAT, "%s: message %d of dialogue %s in %s.json.zip has no content", where, j,
                            id, split);
        ctx[(*n)++] = c->valuestring;
    }
    return QIAO_OK;
}

static qiao_status crosswoz_line(const char *path, int64_t lineno, const char *line, size_t len,
                                 cJSON *const *dialogs, qint_writer *w, int64_t *dropped) {
    char where[4300];
    snprintf(where, sizeof where, "%s:%lld", path, (long long)lineno);
    cJSON *o = cJSON_ParseWithLength(line, len);
    if (!o) return qc_error(QIAO_ERR_FORMAT, "%s: not valid JSON", where);
    qiao_status st = QIAO_OK;
    char *types = NULL;
    const cJSON *split = cJSON_GetObjectItemCaseSensitive(o, "split");
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(o, "text");
    const cJSON *labels = cJSON_GetObjectItemCaseSensitive(o, "intent_domain");
    const cJSON *acts = cJSON_GetObjectItemCaseSensitive(o, "dialog_act");
    const cJSON *dialog = cJSON_GetObjectItemCaseSensitive(o, "dialog_id");
    const cJSON *turn = cJSON_GetObjectItemCaseSensitive(o, "turn");
    if (!cJSON_IsString(split) || !cJSON_IsString(text) || !text->valuestring[0] || !cJSON_IsArray(labels) ||
        !cJSON_IsArray(acts) || !cJSON_IsString(dialog) || !cJSON_IsNumber(turn) || !(turn->valuedouble >= 0) ||
        turn->valuedouble > 1e6 || turn->valuedouble != (double)(int)turn->valuedouble) {
        st = qc_error(QIAO_ERR_FORMAT,
                      "%s: expected {\"split\", \"dialog_id\", \"turn\", \"text\", \"dialog_act\", \"intent_domain\"}",
                      where);
        goto done;
    }
    int sp = !strcmp(split->valuestring, "train") ? QINT_TRAIN
             : !strcmp(split->valuestring, "val") ? QINT_VAL
             : !strcmp(split->valuestring, "test") ? QINT_TEST
                                                   : -1;
    if (sp < 0) {
        st = qc_error(QIAO_ERR_FORMAT, "%s: unknown split \"%s\"", where, split->valuestring);
        goto done;
    }
    if (!dialogs[sp]) {
        st = qc_error(QIAO_ERR_FORMAT, "%s: split \"%s\" has no dialogues to take the context from", where,
                      split->valuestring);
        goto done;
    }
    const char *ctx[CW_CONTEXT];
    size_t nctx = 0;
    if ((st = cw_context(dialogs[sp], split->valuestring, dialog->valuestring, (int)turn->valuedouble,
                         text->valuestring, where, ctx, &nctx)))
        goto done;
    const char *lab[CW_MAX_LABELS];
    size_t nl = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, labels) {
        if (!cJSON_IsString(it) || !it->valuestring[0] || nl == CW_MAX_LABELS) {
            st = qc_error(QIAO_ERR_FORMAT, "%s: \"intent_domain\" must be a list of labels", where);
            goto done;
        }
        lab[nl++] = it->valuestring;
    }
    /* Multi-label: "intent" joins the sorted labels with '|', so it is one
     * deterministic class name; "intents" keeps them apart. */
    size_t ilen = 1;
    for (size_t i = 0; i < nl; i++) ilen += strlen(lab[i]) + 1;
    int nacts = cJSON_GetArraySize(acts);
    size_t tcap = ilen + 8;
    cJSON_ArrayForEach(it, acts) {
        const cJSON *d = cJSON_GetArrayItem(it, 1), *s = cJSON_GetArrayItem(it, 2);
        if (cJSON_IsString(d) && cJSON_IsString(s)) tcap += strlen(d->valuestring) + strlen(s->valuestring) + 2;
    }
    types = malloc(tcap);
    qint_entity *ents = malloc(((size_t)nacts + 1) * sizeof *ents);
    if (!types || !ents) {
        free(ents);
        st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory", where);
        goto done;
    }
    char *intent = types;
    size_t o2 = 0;
    if (nl == 0) o2 = (size_t)sprintf(intent, "none");
    for (size_t i = 0; i < nl; i++) o2 += (size_t)sprintf(intent + o2, "%s%s", i ? "|" : "", lab[i]);
    char *tp = intent + o2 + 1;
    size_t ne = 0, tl = strlen(text->valuestring);
    cJSON_ArrayForEach(it, acts) {
        const cJSON *a = cJSON_GetArrayItem(it, 0), *d = cJSON_GetArrayItem(it, 1), *s = cJSON_GetArrayItem(it, 2),
                    *v = cJSON_GetArrayItem(it, 3);
        if (!cJSON_IsArray(it) || cJSON_GetArraySize(it) != 4 || !cJSON_IsString(a) || !cJSON_IsString(d) ||
            !cJSON_IsString(s) || !cJSON_IsString(v)) {
            free(ents);
            st = qc_error(QIAO_ERR_FORMAT, "%s: a dialog act must be [intent, domain, slot, value]", where);
            goto done;
        }
        const char *val = v->valuestring;
        if (!val[0] || !strcmp(val, "none")) continue;
        const char *hit = find_bytes(text->valuestring, tl, val, strlen(val));
        if (!hit) {
            (*dropped)++;
            continue;
        }
        ents[ne].start = (size_t)(hit - text->valuestring);
        ents[ne].end = ents[ne].start + strlen(val);
        ents[ne].type = tp;
        tp += sprintf(tp, "%s-%s", d->valuestring, s->valuestring) + 1;
        ne++;
    }
    qsort(ents, ne, sizeof *ents, ent_cmp);
    size_t u = 0; /* the same value under the same act twice is one span */
    for (size_t i = 0; i < ne; i++)
        if (u == 0 || ent_cmp(&ents[u - 1], &ents[i]) != 0) ents[u++] = ents[i];
    qint_example e = {text->valuestring, tl, intent, lab, nl, ents, u, ctx, nctx};
    st = qint_writer_add(w, sp, &e, where);
    free(ents);
done:
    free(types);
    cJSON_Delete(o);
    return st;
}

static qiao_status conv_crosswoz(const char *in_dir, qint_writer *w, int64_t *dropped) {
    char path[4200];
    qiao_status st = qint_path(path, sizeof path, in_dir, "usr_utterances_val_test.jsonl");
    if (st) return st;
    char *data;
    size_t len;
    if ((st = qint_read_file(path, &data, &len))) return st;
    /* the dialogues, for each user turn's context (upstream has no train split here) */
    cJSON *dialogs[QINT_NSPLITS] = {NULL, NULL, NULL};
    st = cw_dialogs(in_dir, QINT_VAL, &dialogs[QINT_VAL]);
    if (!st) st = cw_dialogs(in_dir, QINT_TEST, &dialogs[QINT_TEST]);
    int64_t lineno = 0, rows = 0;
    for (size_t pos = 0; pos < len && !st;) {
        char *nl = memchr(data + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - data) : len;
        lineno++;
        if (end > pos) {
            st = crosswoz_line(path, lineno, data + pos, end - pos, dialogs, w, dropped);
            rows++;
        }
        pos = end + 1;
    }
    if (!st && rows == 0) st = qc_error(QIAO_ERR_FORMAT, "%s: no utterances", path);
    for (int s = 0; s < QINT_NSPLITS; s++) cJSON_Delete(dialogs[s]);
    free(data);
    return st;
}

/* ---- SOURCE.md ------------------------------------------------------------ */

typedef struct qint_set_info {
    const char *from;
    const char *title;
    const char *upstream; /* repo, commit, licence, citation */
    const char *how;      /* what was converted and how */
} qint_set_info;

static const qint_set_info SETS[] = {
    {"clinc150", "CLINC150",
     "- Paper: Larson et al., \"An Evaluation Dataset for Intent Classification and Out-of-Scope Prediction\", "
     "EMNLP-IJCNLP 2019.\n"
     "- Upstream: github.com/clinc/oos-eval, commit 828f8093932c8fe6ca7936c3d2e52903b1c523de, data/data_full.json.\n"
     "- Licence: Creative Commons Attribution 3.0 Unported (CC BY 3.0), full text in LICENSE.txt (copied unchanged).\n"
     "- Attribution: data by Clinc, Inc. and the paper's authors; cite Larson et al. 2019 when you use it.\n",
     "data_full.json splits train/val/test (150 intents, 100/20/30 per intent) become train/val/test.jsonl; the "
     "out-of-scope splits oos_train/oos_val/oos_test are appended to the matching file with intent \"oos\". "
     "Utterances are copied unchanged (lower-cased as upstream). No entities.\n"},
    {"banking77", "BANKING77",
     "- Paper: Casanueva et al., \"Efficient Intent Detection with Dual Sentence Encoders\", NLP4ConvAI 2020.\n"
     "- Upstream: github.com/PolyAI-LDN/task-specific-datasets, commit 57ec275d8078af65b7731c2a98be812d844a6d6b, "
     "banking_data/train.csv and test.csv.\n"
     "- Licence: Creative Commons Attribution 4.0 International (CC BY 4.0), full text in LICENSE.txt (copied "
     "unchanged).\n"
     "- Attribution: data by PolyAI; cite Casanueva et al. 2020 when you use it.\n",
     "train.csv -> train.jsonl, test.csv -> test.jsonl (there is no validation split upstream). The CSV is read as "
     "RFC 4180 (quoted fields with commas, doubled quotes and, in 10 training rows, line breaks, which are kept "
     "in the text). Text copied unchanged (cased, punctuated). No entities.\n"},
    {"xsid", "xSID",
     "- Paper: van der Goot et al., \"From Masked Language Modeling to Translation: Non-English Auxiliary Tasks "
     "Improve Zero-shot Spoken Language Understanding\", NAACL 2021.\n"
     "- Upstream: github.com/mainlp/xsid, commit 761d926c3f2e9f6bea13192d2f39cec1d04d9777, data/xSID-0.7/"
     "{zh,en}.{valid,test}.conll.\n"
     "- Licence: Creative Commons Attribution-ShareAlike 4.0 International (CC BY-SA 4.0), full text in "
     "LICENSE.txt (copied unchanged). This converted version is an adaptation and is shared under the same "
     "licence (ShareAlike).\n"
     "- Attribution: cite van der Goot et al. 2021 and the papers listed in the upstream README (the English "
     "side comes from the Snips and Facebook multilingual task-oriented data sets).\n",
     "<lang>.valid.conll -> val.jsonl, <lang>.test.conll -> test.jsonl (no training split: upstream's is "
     "machine-projected and was not copied). \"text\" is the \"# text\" line; each token is placed on it left to "
     "right (all 1,600 tokenized utterances match), so for Chinese the original sentence is kept, without spaces "
     "between words. Entities come from the BIO slot column: a B- tag opens a span, I- of the same type extends "
     "it (an I- that continues nothing opens a span); type = the tag without B-/I- (e.g. \"datetime\", "
     "\"weather/attribute\"); start/end are the byte offsets of the first token's start and the last token's end, "
     "so the value includes the spaces between English words.\n"},
    {"crosswoz", "CrossWOZ user turns",
     "- Paper: Zhu et al., \"CrossWOZ: A Large-Scale Chinese Cross-Domain Task-Oriented Dialogue Dataset\", TACL "
     "2020.\n"
     "- Upstream: github.com/thu-coai/CrossWOZ, commit df82c9fdff91b9b130f2d6b89110d3870ba6260e, "
     "data/crosswoz/val.json.zip and test.json.zip (the user turns were extracted on import into "
     "usr_utterances_val_test.jsonl, see /work/shared/datasets/crosswoz/SOURCE.txt; the context is read from the "
     "zip archives themselves).\n"
     "- Licence: Apache License 2.0 (the repository's licence; no separate data licence), full text in LICENSE.txt "
     "(copied unchanged).\n"
     "- Attribution: data by the THU CoAI group; cite Zhu et al. 2020 when you use it.\n",
     "Every user turn of the official val and test dialogues -> val.jsonl / test.jsonl (the train split was not "
     "available). Multi-label: \"intents\" is the sorted list of intent-domain labels (e.g. \"Inform-酒店\", "
     "\"General-greet\") from the turn's dialogue acts; \"intent\" is that label when there is exactly one, the "
     "labels joined with '|' when there are several, and \"none\" for the turns without any act. Entities: every "
     "dialogue-act value (Inform and Select acts) that occurs verbatim in the utterance, at its first occurrence, "
     "type \"<domain>-<slot>\" (e.g. \"酒店-价格\"); values that are not in the text verbatim (normalized by the "
     "annotators) are dropped and counted below. Context: \"context\" holds the contents of the (at most) 3 "
     "messages before the user turn in its dialogue, oldest first, the system's and the user's as they alternate "
     "(system, user, system for most turns; fewer at the start of a dialogue, none for the first turn): "
     "BERTNLU's context window. They come from the \"messages\" of the dialogue (\"dialog_id\") in "
     "val.json.zip / test.json.zip, read by the converter itself (zlib), which checks that message \"turn\" "
     "is the user turn's text.\n"},
};

static qiao_status write_source_md(const char *out_dir, const qint_set_info *info, const char *lang,
                                   const qint_stats *s) {
    char path[4200];
    qiao_status st = qint_path(path, sizeof path, out_dir, "SOURCE.md");
    if (st) return st;
    FILE *f = fopen(path, "wb");
    if (!f) return qc_error(QIAO_ERR_IO, "%s: %s", path, strerror(errno));
    fprintf(f, "# %s%s%s in qiao's intent JSONL format\n\n", info->title, lang ? " " : "", lang ? lang : "");
    fprintf(f, "## Upstream, licence, attribution\n\n%s\n", info->upstream);
    fprintf(f, "## What was converted and how\n\n%s\n", info->how);
    fprintf(f,
            "Format: one JSON object per line, {\"text\", \"intent\"%s%s%s}; entity \"start\"/\"end\" are byte "
            "offsets into the UTF-8 text, [start, end), so text[start:end] == value.\n\n",
            !strcmp(info->from, "crosswoz") ? ", \"intents\"" : "",
            !strcmp(info->from, "xsid") || !strcmp(info->from, "crosswoz") ? ", \"entities\"" : "",
            !strcmp(info->from, "crosswoz") ? ", \"context\" (a list of strings, oldest first; absent for a "
                                              "dialogue's first turn)" : "");
    fprintf(f, "## Counts\n\n");
    for (int i = 0; i < QINT_NSPLITS; i++)
        if (s->examples[i]) fprintf(f, "- %s.jsonl: %lld examples\n", qint_split_name(i), (long long)s->examples[i]);
    fprintf(f, "- distinct \"intent\" values: %lld\n", (long long)s->labels);
    if (s->multi_label) fprintf(f, "- multi-label examples: %lld\n", (long long)s->multi_label);
    if (s->entities || s->entities_dropped)
        fprintf(f, "- entity spans: %lld (values not found verbatim, dropped: %lld)\n", (long long)s->entities,
                (long long)s->entities_dropped);
    fprintf(f, "\n## Regenerate\n\n    qiao dataset intent convert --from %s%s%s --in /work/shared/datasets/%s "
               "--out datasets/intent/%s%s%s\n",
            info->from, lang ? " --lang " : "", lang ? lang : "",
            !strcmp(info->from, "xsid") ? "xsid-zh" : info->from, info->from, lang ? "_" : "", lang ? lang : "");
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) return qc_error(QIAO_ERR_IO, "%s: write failed", path);
    return QIAO_OK;
}

qiao_status qint_convert(const char *from, const char *in_dir, const char *lang, const char *out_dir,
                       qint_stats *stats) {
    if (stats) memset(stats, 0, sizeof *stats);
    if (!from || !in_dir || !out_dir) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qint_convert: NULL argument");
    const qint_set_info *info = NULL;
    for (size_t i = 0; i < sizeof SETS / sizeof SETS[0]; i++)
        if (!strcmp(SETS[i].from, from)) info = &SETS[i];
    if (!info)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT,
                        "unknown corpus \"%s\" (expected clinc150, banking77, xsid or crosswoz)", from);
    int xsid = !strcmp(from, "xsid");
    if (xsid) {
        if (!lang) lang = "zh";
        if (strcmp(lang, "zh") && strcmp(lang, "en"))
            return qc_error(QIAO_ERR_INVALID_ARGUMENT, "xsid: language \"%s\" (expected zh or en)", lang);
    } else {
        lang = NULL;
    }
    int cw = !strcmp(from, "crosswoz");
    qint_writer *w;
    qiao_status st = qint_writer_open(&w, out_dir, xsid || cw, cw);
    if (st) return st;
    qint_stats s;
    memset(&s, 0, sizeof s);
    if (!strcmp(from, "clinc150")) st = conv_clinc150(in_dir, w);
    else if (!strcmp(from, "banking77")) st = conv_banking77(in_dir, w);
    else if (xsid) st = conv_xsid(in_dir, lang, w);
    else st = conv_crosswoz(in_dir, w, &s.entities_dropped);
    qiao_status cst = qint_writer_close(w, !st, &s);
    if (!st) st = cst;
    if (st) return st;
    char src[4200], dst[4200];
    if ((st = qint_path(src, sizeof src, in_dir, "LICENSE.txt"))) return st;
    if ((st = qint_path(dst, sizeof dst, out_dir, "LICENSE.txt"))) return st;
    if ((st = qint_copy_file(src, dst))) return st;
    if ((st = write_source_md(out_dir, info, lang, &s))) return st;
    if (stats) *stats = s;
    return QIAO_OK;
}
