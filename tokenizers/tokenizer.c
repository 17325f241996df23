/* tokenizers/tokenizer.c - the hybrid character+word tokenizer: loading
 * from a .safetensors file, tokenizing one text or a padded batch.
 *
 * Per text: normalize (normalize.c, with a byte map back to the original),
 * cut into ICU word units, encode each unit with SentencePiece on its own so
 * that no piece crosses a word boundary (which is what makes B/M/E/S tags
 * exact), then give each piece its character ids and original offsets. */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "tokenizers/tokenizer.h"

/* ---- the character map ------------------------------------------------------ */

static uint32_t hash_cp(uint32_t x) {
    x ^= x >> 16;
    x *= 0x7feb352dU;
    x ^= x >> 15;
    x *= 0x846ca68bU;
    x ^= x >> 16;
    return x;
}

static qiao_status charmap_init(tk_charmap *m, size_t n) {
    size_t cap = 16;
    while (cap < 2 * n + 2) cap *= 2;
    m->keys = calloc(cap, sizeof *m->keys);
    m->vals = calloc(cap, sizeof *m->vals);
    m->cap = cap;
    if (!m->keys || !m->vals) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "tokenizer: out of memory (char map)");
    return QIAO_OK;
}

/* Returns false if cp is already present. */
static bool charmap_put(tk_charmap *m, uint32_t cp, int32_t id) {
    size_t i = hash_cp(cp) & (m->cap - 1);
    while (m->keys[i]) {
        if (m->keys[i] == cp + 1) return false;
        i = (i + 1) & (m->cap - 1);
    }
    m->keys[i] = cp + 1;
    m->vals[i] = id;
    return true;
}

static int32_t charmap_get(const tk_charmap *m, uint32_t cp) {
    size_t i = hash_cp(cp) & (m->cap - 1);
    while (m->keys[i]) {
        if (m->keys[i] == cp + 1) return m->vals[i];
        i = (i + 1) & (m->cap - 1);
    }
    return QIAO_CHAR_UNK;
}

/* ---- loading ---------------------------------------------------------------- */

void qiao_tokenizer_free(qiao_tokenizer *tok) {
    if (!tok) return;
    spm_free(tok->spm);
    tk_wp_free(tok->wp);
    tk_bpe_free(tok->bpe);
    free(tok->vocab_text);
    free(tok->spm_bytes);
    free(tok->chars_text);
    free(tok->char_strs);
    free(tok->char_buf);
    free(tok->charmap.keys);
    free(tok->charmap.vals);
    free(tok->config_json);
    free(tok);
}

static const qc_st_tensor *find_bytes(const qc_st_file *f, const char *name, qiao_status *st) {
    const qc_st_tensor *t = qc_st_find(f, name);
    if (!t) {
        *st = qc_error(QIAO_ERR_NOT_FOUND, "%s: no tensor '%s' (not a file with a tokenizer)", qc_st_name(f), name);
        return NULL;
    }
    if (t->dtype != QIAO_DTYPE_U8 || t->ndim != 1 || t->nbytes == 0) {
        *st = qc_error(QIAO_ERR_FORMAT, "%s: tensor '%s' must be a non-empty 1-D U8 tensor", qc_st_name(f), name);
        return NULL;
    }
    return t;
}

/* An integer key of the spm kind's config in [lo, hi]; absent: dflt (or an
 * error when dflt < lo). */
static qiao_status spm_int(const cJSON *c, const char *fname, const char *key, int64_t lo, int64_t hi, int64_t dflt,
                           int64_t *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c, key);
    if (!v && dflt >= lo) {
        *out = dflt;
        return QIAO_OK;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble < (double)lo || v->valuedouble > (double)hi ||
        v->valuedouble != (double)(int64_t)v->valuedouble)
        return qc_error(QIAO_ERR_FORMAT, "%s: %s: %s must be an integer in %lld..%lld", fname, TK_META_CONFIG, key,
                        (long long)lo, (long long)hi);
    *out = (int64_t)v->valuedouble;
    return QIAO_OK;
}

/* "kind": "spm": vocab_size, id_offset, the special ids and whether bos and
 * eos go around every text (tokenizer.h). */
static qiao_status parse_spm_config(qiao_tokenizer *tok, const char *fname, const cJSON *c) {
    int64_t vs = 0, off = 0, ids[5];
    static const char *const names[5] = {"bos", "eos", "pad", "unk", "mask"};
    qiao_status st = spm_int(c, fname, "vocab_size", 1, INT64_C(1) << 24, -1, &vs);
    if (st == QIAO_OK) st = spm_int(c, fname, "id_offset", 0, 1 << 20, 0, &off);
    for (int i = 0; i < 5 && st == QIAO_OK; i++)
        st = spm_int(c, fname, names[i], i == 3 ? 0 : -1, vs - 1, i == 3 ? -2 : -1, &ids[i]);
    if (st != QIAO_OK) return st;
    const cJSON *ab = cJSON_GetObjectItemCaseSensitive(c, "add_bos"), *ae = cJSON_GetObjectItemCaseSensitive(c, "add_eos");
    if ((ab && !cJSON_IsBool(ab)) || (ae && !cJSON_IsBool(ae)))
        return qc_error(QIAO_ERR_FORMAT, "%s: %s: add_bos and add_eos must be booleans", fname, TK_META_CONFIG);
    tok->kind = TK_KIND_SPM;
    tok->vocab_size = vs;
    tok->id_offset = (int32_t)off;
    tok->sp = (tk_specials){(int32_t)ids[0], (int32_t)ids[1], (int32_t)ids[2], (int32_t)ids[3], (int32_t)ids[4],
                            ab && cJSON_IsTrue(ab), ae && cJSON_IsTrue(ae)};
    if ((tok->sp.add_bos && tok->sp.bos < 0) || (tok->sp.add_eos && tok->sp.eos < 0))
        return qc_error(QIAO_ERR_FORMAT, "%s: %s: add_bos / add_eos without a bos / eos id", fname, TK_META_CONFIG);
    return QIAO_OK;
}

/* "kind": "wordpiece": BertTokenizer's options as its tokenizer_config.json
 * gives them: lower (do_lower_case, default true), strip_accents (null:
 * as lower, or a boolean), chinese (tokenize_chinese_chars, default true),
 * max_chars (max_input_chars_per_word, default 100). */
static qiao_status parse_wp_config(qiao_tokenizer *tok, const char *fname, const cJSON *c) {
    tk_wp_options o = tk_wp_default_options();
    const cJSON *lo = cJSON_GetObjectItemCaseSensitive(c, "lower"), *sa = cJSON_GetObjectItemCaseSensitive(c, "strip_accents"),
                *ch = cJSON_GetObjectItemCaseSensitive(c, "chinese");
    if ((lo && !cJSON_IsBool(lo)) || (ch && !cJSON_IsBool(ch)) || (sa && !cJSON_IsBool(sa) && !cJSON_IsNull(sa)))
        return qc_error(QIAO_ERR_FORMAT, "%s: %s: lower and chinese must be booleans, strip_accents a boolean or null",
                        fname, TK_META_CONFIG);
    int64_t mc = 0;
    qiao_status st = spm_int(c, fname, "max_chars", 1, TK_WP_MAX_WORD_CHARS, 100, &mc);
    if (st != QIAO_OK) return st;
    if (lo) o.do_lower_case = cJSON_IsTrue(lo);
    if (ch) o.tokenize_chinese_chars = cJSON_IsTrue(ch);
    o.strip_accents = !sa || cJSON_IsNull(sa) ? TK_WP_ACCENTS_AUTO : cJSON_IsTrue(sa) ? TK_WP_ACCENTS_STRIP
                                                                                        : TK_WP_ACCENTS_KEEP;
    o.max_input_chars_per_word = (int32_t)mc;
    tok->kind = TK_KIND_WORDPIECE;
    tok->wp_opts = o;
    return QIAO_OK;
}

static qiao_status parse_config(qiao_tokenizer *tok, const char *fname, const char *json) {
    cJSON *c = cJSON_Parse(json);
    if (!cJSON_IsObject(c)) {
        cJSON_Delete(c);
        return qc_error(QIAO_ERR_FORMAT, "%s: metadata '%s' is not a JSON object", fname, TK_META_CONFIG);
    }
    qiao_status st = QIAO_OK;
    const cJSON *kind = cJSON_GetObjectItemCaseSensitive(c, "kind");
    const char *kn = cJSON_IsString(kind) ? kind->valuestring : "";
    if (kind && strcmp(kn, "hybrid") && strcmp(kn, "spm") && strcmp(kn, "wordpiece") && strcmp(kn, "bpe")) {
        cJSON_Delete(c);
        return qc_error(QIAO_ERR_FORMAT, "%s: %s: kind must be \"hybrid\", \"spm\", \"wordpiece\" or \"bpe\"",
                        fname, TK_META_CONFIG);
    }
    if (kind && strcmp(kn, "hybrid")) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(c, "version");
        st = !(cJSON_IsNumber(v) && v->valuedouble == TK_VERSION)
                 ? qc_error(QIAO_ERR_FORMAT, "%s: %s: version must be %d", fname, TK_META_CONFIG, TK_VERSION)
             : !strcmp(kn, "spm")       ? parse_spm_config(tok, fname, c)
             : !strcmp(kn, "wordpiece") ? parse_wp_config(tok, fname, c)
                                        : (tok->kind = TK_KIND_BPE, QIAO_OK); /* no options: CLIP's rules */
        cJSON_Delete(c);
        return st;
    }
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c, "version");
    const cJSON *k = cJSON_GetObjectItemCaseSensitive(c, "k");
    const cJSON *cf = cJSON_GetObjectItemCaseSensitive(c, "case_fold");
    const cJSON *ts = cJSON_GetObjectItemCaseSensitive(c, "t2s");
    if (!cJSON_IsNumber(v) || v->valuedouble != TK_VERSION)
        st = qc_error(QIAO_ERR_FORMAT, "%s: %s: version must be %d", fname, TK_META_CONFIG, TK_VERSION);
    else if (!cJSON_IsNumber(k) || k->valuedouble < 1 || k->valuedouble > TK_MAX_K ||
             k->valuedouble != (double)(int)k->valuedouble)
        st = qc_error(QIAO_ERR_FORMAT, "%s: %s: k must be an integer in 1..%d", fname, TK_META_CONFIG, TK_MAX_K);
    else if (!cJSON_IsBool(cf) || !cJSON_IsBool(ts))
        st = qc_error(QIAO_ERR_FORMAT, "%s: %s: case_fold and t2s must be booleans", fname, TK_META_CONFIG);
    else {
        tok->k = (int)k->valuedouble;
        tok->norm.case_fold = cJSON_IsTrue(cf);
        tok->norm.t2s = cJSON_IsTrue(ts);
    }
    cJSON_Delete(c);
    return st;
}

/* The chars tensor: "<pad>\n<unk>\n" then one character per line, id order. */
static qiao_status parse_chars(qiao_tokenizer *tok, const char *fname) {
    const char *s = tok->chars_text;
    size_t len = tok->chars_len;
    if (!qc_utf8_valid(s, len))
        return qc_error(QIAO_ERR_FORMAT, "%s: tensor '%s' is not valid UTF-8", fname, TK_TENSOR_CHARS);
    size_t lines = 0;
    for (size_t i = 0; i < len; i++) lines += s[i] == '\n';
    if (len && s[len - 1] != '\n') lines++;
    if (lines < 2 || lines > INT32_MAX)
        return qc_error(QIAO_ERR_FORMAT, "%s: tensor '%s' has %zu lines", fname, TK_TENSOR_CHARS, lines);
    tok->char_buf = malloc(len + 1);
    tok->char_strs = calloc(lines, sizeof(char *));
    qiao_status st = charmap_init(&tok->charmap, lines);
    if (st != QIAO_OK) return st;
    if (!tok->char_buf || !tok->char_strs) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory", fname);
    memcpy(tok->char_buf, s, len);
    tok->char_buf[len] = '\0';
    char *p = tok->char_buf, *end = tok->char_buf + len;
    for (size_t id = 0; id < lines; id++) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) nl = end;
        *nl = '\0';
        tok->char_strs[id] = p;
        size_t n = (size_t)(nl - p);
        if (id == 0 || id == 1) {
            if (strcmp(p, id ? "<unk>" : "<pad>") != 0)
                return qc_error(QIAO_ERR_FORMAT, "%s: tensor '%s' line %zu must be '%s'", fname, TK_TENSOR_CHARS,
                                id + 1, id ? "<unk>" : "<pad>");
        } else {
            int32_t cp = -1;
            size_t cl = n ? tk_utf8_decode((const unsigned char *)p, n, &cp) : 0;
            if (n == 0 || cp < 0 || cl != n)
                return qc_error(QIAO_ERR_FORMAT, "%s: tensor '%s' line %zu is not exactly one character", fname,
                                TK_TENSOR_CHARS, id + 1);
            if (!charmap_put(&tok->charmap, (uint32_t)cp, (int32_t)id))
                return qc_error(QIAO_ERR_FORMAT, "%s: tensor '%s' line %zu repeats a character", fname,
                                TK_TENSOR_CHARS, id + 1);
        }
        p = nl < end ? nl + 1 : end;
    }
    tok->n_chars = (int32_t)lines;
    return QIAO_OK;
}

qiao_status tk_tokenizer_from_st(const qc_st_file *f, qiao_tokenizer **out) {
    if (!f || !out) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "tokenizer: NULL argument");
    *out = NULL;
    const char *fname = qc_st_name(f);
    qiao_status st = QIAO_OK;
    const char *cfg = qc_st_metadata_get(f, TK_META_CONFIG);
    if (!cfg && !qc_st_find(f, TK_TENSOR_SPM) && !qc_st_find(f, TK_TENSOR_VOCAB) && !qc_st_find(f, TK_TENSOR_MERGES))
        return qc_error(QIAO_ERR_NOT_FOUND, "%s: no tensor '%s' or '%s' (not a file with a tokenizer)", fname,
                        TK_TENSOR_SPM, TK_TENSOR_VOCAB);
    if (!cfg) return qc_error(QIAO_ERR_FORMAT, "%s: no metadata '%s'", fname, TK_META_CONFIG);
    qiao_tokenizer *tok = calloc(1, sizeof *tok);
    if (!tok) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory", fname);
    if (!(tok->config_json = strdup(cfg))) {
        st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory", fname);
        goto fail;
    }
    if ((st = parse_config(tok, fname, cfg)) != QIAO_OK) goto fail;
    if (tok->kind == TK_KIND_WORDPIECE) {
        const qc_st_tensor *tv = find_bytes(f, TK_TENSOR_VOCAB, &st);
        if (!tv) goto fail;
        if (!(tok->vocab_text = malloc(tv->nbytes))) {
            st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory", fname);
            goto fail;
        }
        memcpy(tok->vocab_text, tv->data, tv->nbytes);
        tok->vocab_len = tv->nbytes;
        if ((st = tk_wp_load(tok->vocab_text, tok->vocab_len, &tok->wp_opts, &tok->wp)) != QIAO_OK) goto fail;
        tok->vocab_size = tk_wp_vocab_size(tok->wp);
        tok->sp = (tk_specials){tk_wp_special_id(tok->wp, TK_WP_CLS), tk_wp_special_id(tok->wp, TK_WP_SEP),
                                tk_wp_special_id(tok->wp, TK_WP_PAD), tk_wp_special_id(tok->wp, TK_WP_UNK),
                                tk_wp_special_id(tok->wp, TK_WP_MASK), true, true};
        if (tok->sp.bos < 0 || tok->sp.eos < 0) {
            st = qc_error(QIAO_ERR_FORMAT, "%s: tensor '%s': no [CLS] or [SEP] token", fname, TK_TENSOR_VOCAB);
            goto fail;
        }
        *out = tok;
        return QIAO_OK;
    }
    if (tok->kind == TK_KIND_BPE) {
        const qc_st_tensor *tv = find_bytes(f, TK_TENSOR_VOCAB, &st);
        const qc_st_tensor *tm = tv ? find_bytes(f, TK_TENSOR_MERGES, &st) : NULL;
        if (!tm) goto fail;
        if ((st = tk_bpe_load(tv->data, tv->nbytes, tm->data, tm->nbytes, &tok->bpe)) != QIAO_OK) {
            char msg[512];
            snprintf(msg, sizeof msg, "%s", qiao_last_error());
            st = qc_error(st, "%s: tensors '%s' and '%s': %s", fname, TK_TENSOR_VOCAB, TK_TENSOR_MERGES, msg);
            goto fail;
        }
        tok->vocab_size = tk_bpe_vocab_size(tok->bpe);
        /* CLIP pads with <|endoftext|> and has no unknown piece (every byte is one) */
        const int32_t sot = tk_bpe_sot_id(tok->bpe), eot = tk_bpe_eot_id(tok->bpe);
        tok->sp = (tk_specials){sot, eot, eot, -1, -1, true, true};
        *out = tok;
        return QIAO_OK;
    }
    const qc_st_tensor *ts = find_bytes(f, TK_TENSOR_SPM, &st);
    if (!ts) goto fail;
    if (!(tok->spm_bytes = malloc(ts->nbytes))) {
        st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory", fname);
        goto fail;
    }
    memcpy(tok->spm_bytes, ts->data, ts->nbytes);
    tok->spm_len = ts->nbytes;
    if (tok->kind == TK_KIND_HYBRID) {
        const qc_st_tensor *tc = find_bytes(f, TK_TENSOR_CHARS, &st);
        if (!tc) goto fail;
        if (!(tok->chars_text = malloc(tc->nbytes))) {
            st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory", fname);
            goto fail;
        }
        memcpy(tok->chars_text, tc->data, tc->nbytes);
        tok->chars_len = tc->nbytes;
        if ((st = parse_chars(tok, fname)) != QIAO_OK) goto fail;
    }
    char err[512] = "";
    spm_rc rc = spm_load(tok->spm_bytes, tok->spm_len, &tok->spm, err, sizeof err);
    if (rc != SPM_OK) {
        st = qc_error(rc == SPM_ERR_NOMEM ? QIAO_ERR_OUT_OF_MEMORY : QIAO_ERR_FORMAT,
                      "%s: tensor '%s': SentencePiece rejects the model: %s", fname, TK_TENSOR_SPM, err);
        goto fail;
    }
    if (tok->kind == TK_KIND_SPM) {
        if ((int64_t)spm_vocab_size(tok->spm) + tok->id_offset > tok->vocab_size) {
            st = qc_error(QIAO_ERR_FORMAT, "%s: %s: %d pieces shifted by %d do not fit vocab_size %lld", fname,
                          TK_META_CONFIG, spm_vocab_size(tok->spm), tok->id_offset, (long long)tok->vocab_size);
            goto fail;
        }
        *out = tok;
        return QIAO_OK;
    }
    const char *p0 = spm_piece_str(tok->spm, 0), *p1 = spm_piece_str(tok->spm, 1);
    if (!p0 || !p1 || strcmp(p0, "<pad>") != 0 || strcmp(p1, "<unk>") != 0) {
        st = qc_error(QIAO_ERR_FORMAT, "%s: tensor '%s': pieces 0 and 1 must be <pad> and <unk>", fname, TK_TENSOR_SPM);
        goto fail;
    }
    *out = tok;
    return QIAO_OK;
fail:
    qiao_tokenizer_free(tok);
    return st;
}

qiao_status qiao_tokenizer_load(const char *path, qiao_tokenizer **out) {
    if (!path || !out) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_tokenizer_load: NULL argument");
    *out = NULL;
    qc_st_file *f = NULL;
    qiao_status st = qc_st_open(path, &f);
    if (st != QIAO_OK) return st;
    st = tk_tokenizer_from_st(f, out);
    qc_st_close(f);
    return st;
}

qiao_status qiao_tokenizer_load_memory(const void *data, size_t size, qiao_tokenizer **out) {
    if (!out || (!data && size)) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_tokenizer_load_memory: NULL argument");
    *out = NULL;
    qc_st_file *f = NULL;
    /* Borrowed: everything the tokenizer keeps is copied out before closing. */
    qiao_status st = qc_st_open_memory(data, size, "<memory>", false, &f);
    if (st != QIAO_OK) return st;
    st = tk_tokenizer_from_st(f, out);
    qc_st_close(f);
    return st;
}

size_t tk_tokenizer_entries(const qiao_tokenizer *tok, qc_st_entry entries[2], qc_st_kv *meta) {
    memset(entries, 0, 2 * sizeof *entries);
    meta->key = TK_META_CONFIG;
    meta->value = tok->config_json;
    if (tok->kind == TK_KIND_WORDPIECE) {
        entries[0] = (qc_st_entry){.name = TK_TENSOR_VOCAB, .dtype = QIAO_DTYPE_U8, .ndim = 1,
                                   .shape = {(int64_t)tok->vocab_len}, .data = tok->vocab_text};
        return 1;
    }
    if (tok->kind == TK_KIND_BPE) {
        const char *v, *m;
        size_t vn, mn;
        tk_bpe_texts(tok->bpe, &v, &vn, &m, &mn);
        entries[0] = (qc_st_entry){.name = TK_TENSOR_VOCAB, .dtype = QIAO_DTYPE_U8, .ndim = 1,
                                   .shape = {(int64_t)vn}, .data = v};
        entries[1] = (qc_st_entry){.name = TK_TENSOR_MERGES, .dtype = QIAO_DTYPE_U8, .ndim = 1,
                                   .shape = {(int64_t)mn}, .data = m};
        return 2;
    }
    entries[0].name = TK_TENSOR_SPM;
    entries[0].dtype = QIAO_DTYPE_U8;
    entries[0].ndim = 1;
    entries[0].shape[0] = (int64_t)tok->spm_len;
    entries[0].data = tok->spm_bytes;
    entries[1].name = TK_TENSOR_CHARS;
    entries[1].dtype = QIAO_DTYPE_U8;
    entries[1].ndim = 1;
    entries[1].shape[0] = (int64_t)tok->chars_len;
    entries[1].data = tok->chars_text;
    meta->key = TK_META_CONFIG;
    meta->value = tok->config_json;
    return tok->kind == TK_KIND_HYBRID ? 2 : 1;
}

int64_t qiao_tokenizer_vocab_size(const qiao_tokenizer *tok) {
    if (!tok) return 0;
    return tok->kind != TK_KIND_HYBRID ? tok->vocab_size : spm_vocab_size(tok->spm);
}
int64_t qiao_tokenizer_char_vocab_size(const qiao_tokenizer *tok) { return tok ? tok->n_chars : 0; }
int qiao_tokenizer_k(const qiao_tokenizer *tok) { return tok ? tok->k : 0; }

const char *qiao_tokenizer_piece(const qiao_tokenizer *tok, int64_t id) {
    if (!tok || id < 0 || id > INT32_MAX) return NULL;
    if (tok->kind == TK_KIND_WORDPIECE) return tk_wp_token(tok->wp, (int32_t)id, NULL);
    if (tok->kind == TK_KIND_BPE) return tk_bpe_token(tok->bpe, (int32_t)id);
    if (tok->kind == TK_KIND_SPM) {
        const tk_specials *s = &tok->sp;
        if (id >= tok->vocab_size) return NULL;
        if (id == s->bos) return "<s>";
        if (id == s->eos) return "</s>";
        if (id == s->pad) return "<pad>";
        if (id == s->unk) return "<unk>";
        if (id == s->mask) return "<mask>";
        return spm_piece_str(tok->spm, (int32_t)(id - tok->id_offset));
    }
    return spm_piece_str(tok->spm, (int32_t)id);
}

const char *qiao_tokenizer_char(const qiao_tokenizer *tok, int64_t id) {
    if (!tok || id < 0 || id >= tok->n_chars) return NULL;
    return tok->char_strs[id];
}

/* ---- tokenizing -------------------------------------------------------------- */

qiao_tokenize_params qiao_tokenize_default_params(void) {
    qiao_tokenize_params p;
    memset(&p, 0, sizeof p);
    p.struct_size = sizeof p;
    return p;
}

static qiao_status read_params(const qiao_tokenize_params *in, qiao_tokenize_params *p) {
    *p = qiao_tokenize_default_params();
    qiao_status st = qc_params_read(p, sizeof *p, in, sizeof(size_t), "qiao_tokenize_default_params");
    if (st != QIAO_OK) return st;
    if (p->max_tokens < 0) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_tokenize_params: max_tokens %lld < 0", (long long)p->max_tokens);
    return QIAO_OK;
}

/* A per-call cache of SentencePiece results: a unit's pieces depend only
 * on its bytes, and a long text repeats words a lot, so each distinct unit
 * is encoded once. Keys are spans of the normalized text itself (alive for
 * the whole call); values are runs of the shared pieces array. Per call, so
 * nothing is shared between threads. */
typedef struct tk_unit_entry {
    uint64_t hash;          /* 0 = empty slot */
    size_t begin, len;      /* the key: normalized bytes [begin, begin + len) */
    size_t first, count;    /* its pieces: pieces[first .. first + count) */
} tk_unit_entry;

typedef struct tk_run {
    const qiao_tokenizer *tok;
    const tk_normalized *nt;
    size_t text_len;
    spm_piece *pieces;      /* the pieces of every distinct unit so far */
    size_t pcap, npieces;
    spm_scratch *scratch;
    tk_unit_entry *cache;   /* open addressing, power-of-two size */
    size_t ccap, cused;
    qiao_tokens *r;
    size_t cap;
    size_t limit;           /* 0 = no limit */
} tk_run;

static qiao_status grow_tokens(tk_run *run, size_t more) {
    qiao_tokens *r = run->r;
    if (r->count + more <= run->cap) return QIAO_OK;
    size_t nc = run->cap ? run->cap : 64;
    while (nc < r->count + more) nc *= 2;
    size_t k = (size_t)r->k;
    int32_t *ids = realloc(r->ids, nc * sizeof *ids);
    if (ids) r->ids = ids;
    int32_t *ch = realloc(r->char_ids, nc * k * sizeof *ch);
    if (ch) r->char_ids = ch;
    uint8_t *tg = realloc(r->tags, nc);
    if (tg) r->tags = tg;
    int64_t *of = realloc(r->offsets, nc * 2 * sizeof *of);
    if (of) r->offsets = of;
    if (!ids || !ch || !tg || !of) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "qiao_tokenize: out of memory for %zu tokens", nc);
    run->cap = nc;
    return QIAO_OK;
}

/* Char ids of the characters that start in normalized bytes [b, e), spaces
 * skipped; a span that starts inside a character (a byte-fallback piece)
 * is widened back to that character's first byte. */
static void piece_chars(const qiao_tokenizer *tok, const tk_normalized *nt, size_t b, size_t e, int32_t *out) {
    int k = tok->k;
    for (int i = 0; i < k; i++) out[i] = QIAO_CHAR_PAD;
    const unsigned char *s = (const unsigned char *)nt->s;
    while (b > 0 && b < nt->len && (s[b] & 0xC0) == 0x80) b--;
    int n = 0;
    for (size_t i = b; i < e && i < nt->len && n < k;) {
        int32_t cp;
        size_t l = tk_utf8_decode(s + i, nt->len - i, &cp);
        if (cp >= 0 && cp != ' ') out[n++] = charmap_get(&tok->charmap, (uint32_t)cp);
        i += l;
    }
}

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 14695981039346656037ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h ? h : 1;
}

static qiao_status cache_grow(tk_run *run) {
    size_t nc = run->ccap ? 2 * run->ccap : 64;
    tk_unit_entry *c = calloc(nc, sizeof *c);
    if (!c) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "qiao_tokenize: out of memory (word cache of %zu)", nc);
    for (size_t i = 0; i < run->ccap; i++) {
        const tk_unit_entry *e = &run->cache[i];
        if (!e->hash) continue;
        size_t j = (size_t)e->hash & (nc - 1);
        while (c[j].hash) j = (j + 1) & (nc - 1);
        c[j] = *e;
    }
    free(run->cache);
    run->cache = c;
    run->ccap = nc;
    return QIAO_OK;
}

/* The pieces of unit [ub, ue) of the normalized text, from the cache or
 * from SentencePiece (then cached): run->pieces[*first .. *first + *np). */
static qiao_status unit_pieces(tk_run *run, size_t ub, size_t ue, size_t *first, size_t *np) {
    const char *s = run->nt->s;
    size_t len = ue - ub;
    uint64_t h = hash_bytes(s + ub, len);
    if (2 * (run->cused + 1) > run->ccap) {
        qiao_status st = cache_grow(run);
        if (st != QIAO_OK) return st;
    }
    size_t j = (size_t)h & (run->ccap - 1);
    for (; run->cache[j].hash; j = (j + 1) & (run->ccap - 1)) {
        const tk_unit_entry *e = &run->cache[j];
        if (e->hash == h && e->len == len && memcmp(s + e->begin, s + ub, len) == 0) {
            *first = e->first;
            *np = e->count;
            return QIAO_OK;
        }
    }
    size_t n = run->npieces;
    char err[512] = "";
    spm_rc rc = spm_encode(run->tok->spm, run->scratch, s + ub, len, &run->pieces, &run->pcap, &n, err, sizeof err);
    if (rc != SPM_OK)
        return qc_error(rc == SPM_ERR_NOMEM ? QIAO_ERR_OUT_OF_MEMORY : QIAO_ERR_INTERNAL,
                        "qiao_tokenize: SentencePiece failed on bytes [%zu, %zu) of the normalized text: %s", ub, ue, err);
    run->cache[j] = (tk_unit_entry){.hash = h, .begin = ub, .len = len, .first = run->npieces, .count = n - run->npieces};
    run->cused++;
    *first = run->npieces;
    *np = n - run->npieces;
    run->npieces = n;
    return QIAO_OK;
}

static qiao_status on_unit(size_t ub, size_t ue, void *user) {
    tk_run *run = user;
    qiao_tokens *r = run->r;
    if (run->limit && r->count >= run->limit) return QIAO_OK;
    size_t first = 0, np = 0;
    qiao_status st = unit_pieces(run, ub, ue, &first, &np);
    if (st != QIAO_OK) return st;
    /* Truncation keeps the tags of the full word: a word cut short ends in
     * B or M, which says so. */
    size_t keep = np;
    if (run->limit && keep > run->limit - r->count) keep = run->limit - r->count;
    st = grow_tokens(run, keep);
    if (st != QIAO_OK) return st;
    const tk_normalized *nt = run->nt;
    size_t k = (size_t)r->k;
    for (size_t i = 0; i < keep; i++) {
        const spm_piece *p = &run->pieces[first + i];
        size_t b = ub + p->begin, e = ub + p->end;
        if (e > ue) e = ue;
        if (b > e) b = e;
        if (b == e && b < ue) {
            /* SentencePiece gives the leading byte-fallback pieces of a
             * character an empty span (the last one gets the character):
             * give each the whole character instead. */
            int32_t cp;
            e = b + tk_utf8_decode((const unsigned char *)nt->s + b, ue - b, &cp);
        }
        size_t t = r->count++;
        r->ids[t] = p->id;
        r->tags[t] = np == 1 ? QIAO_TAG_S : i == 0 ? QIAO_TAG_B : i + 1 == np ? QIAO_TAG_E : QIAO_TAG_M;
        int64_t os, oe;
        if (e > b) {
            os = nt->ostart[b];
            oe = nt->oend[e - 1];
        } else { /* an empty span: a point just before normalized byte b */
            os = oe = b < nt->len ? nt->ostart[b] : (int64_t)run->text_len;
        }
        r->offsets[2 * t] = os;
        r->offsets[2 * t + 1] = oe;
        piece_chars(run->tok, nt, b, e > b ? e : b + 1, r->char_ids + t * k);
    }
    return QIAO_OK;
}

/* text with each invalid UTF-8 byte made U+FFFD, and the original byte
 * each of its bytes came from (map has *n_out + 1 entries: the last is len). */
static qiao_status utf8_repair(const char *text, size_t len, char **out, size_t *n_out, size_t **map) {
    *out = malloc(3 * len + 1);
    *map = malloc((3 * len + 1) * sizeof **map);
    if (!*out || !*map) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "qiao_tokenize: out of memory");
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        size_t ok = qc_utf8_check(text + i, len - i);
        for (size_t j = 0; j < ok; j++) (*map)[o] = i + j, (*out)[o++] = text[i + j];
        i += ok;
        if (i < len) {
            static const char fffd[3] = {(char)0xEF, (char)0xBF, (char)0xBD};
            for (int j = 0; j < 3; j++) (*map)[o] = i, (*out)[o++] = fffd[j];
            i++;
        }
    }
    (*map)[o] = len;
    *n_out = o;
    return QIAO_OK;
}

/* The spm kind: the model's SentencePiece on the raw text (it normalizes
 * as its own spec says), ids shifted, the specials around them; a limit
 * keeps the first pieces and still ends with eos, as the models' own
 * truncation does. Tags are S and there are no characters (k = 0). */
/* The text an imported kind reads: text itself when it is valid UTF-8;
 * else QIAO_ERR_FORMAT, or with replace_invalid a repaired copy (*fixed,
 * freed by the caller) whose byte i came from the text's byte (*map)[i]. */
static qiao_status imported_text(const char *text, size_t len, const qiao_tokenize_params *p, const char *what,
                                 const char **src, size_t *n, char **fixed, size_t **map) {
    *src = text, *n = len, *fixed = NULL, *map = NULL;
    const size_t valid = qc_utf8_check(text, len);
    if (valid == len) return QIAO_OK;
    if (!p->replace_invalid)
        return qc_error(QIAO_ERR_FORMAT, "%s: invalid UTF-8 at byte %zu (0x%02X)", what, valid,
                        (unsigned char)text[valid]);
    qiao_status st = utf8_repair(text, len, fixed, n, map);
    if (st != QIAO_OK) {
        free(*fixed), free(*map);
        *fixed = NULL, *map = NULL;
        return st;
    }
    *src = *fixed;
    return QIAO_OK;
}

/* Whether a text is empty or ASCII white space only: no tokens, whatever
 * specials the kind puts around a text. */
static bool blank(const char *text, size_t len) {
    for (size_t i = 0; i < len; i++)
        if (!strchr(" \t\n\r\v\f", text[i]) || !text[i]) return false;
    return true;
}

/* A result of `count` tokens for an imported kind (ids, tags, offsets; no
 * characters), count set; NULL when out of memory (the error set). */
static qiao_tokens *imported_tokens(size_t count) {
    const size_t cells = count ? count : 1;
    qiao_tokens *r = calloc(1, sizeof *r);
    if (!r || !(r->ids = malloc(cells * sizeof *r->ids)) || !(r->tags = malloc(cells)) ||
        !(r->offsets = malloc(cells * 2 * sizeof *r->offsets))) {
        qiao_tokens_free(r);
        qc_error(QIAO_ERR_OUT_OF_MEMORY, "qiao_tokenize: out of memory for %zu tokens", count);
        return NULL;
    }
    r->count = count;
    return r;
}

/* The wordpiece kind: BertTokenizer's encode(text), a limit as its
 * truncation (a limit of 1 keeps [CLS]); tags S, no characters. */
static qiao_status tokenize_wp(const qiao_tokenizer *tok, const char *text, size_t len, const qiao_tokenize_params *p,
                               const char *what, qiao_tokens **out) {
    const char *src;
    char *fixed;
    size_t n, *map;
    qiao_status st = imported_text(text, len, p, what, &src, &n, &fixed, &map);
    if (st != QIAO_OK) return st;
    const size_t limit = (size_t)p->max_tokens;
    tk_wp_encoding e;
    st = tk_wp_encode(tok->wp, src, n, true, limit == 1 ? 2 : limit, &e);
    if (st != QIAO_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", qiao_last_error());
        st = qc_error(st, "%s: %s", what, msg);
    }
    const size_t count = st != QIAO_OK ? 0 : limit == 1 && e.count > 1 ? 1 : e.count;
    qiao_tokens *r = st == QIAO_OK ? imported_tokens(count) : NULL;
    if (st == QIAO_OK && !r) st = QIAO_ERR_OUT_OF_MEMORY;
    if (st == QIAO_OK) {
        memcpy(r->ids, e.ids, count * sizeof *r->ids);
        for (size_t i = 0; i < 2 * count; i++) {
            const size_t b = e.offsets[i] < 0 ? 0 : (size_t)e.offsets[i] < n ? (size_t)e.offsets[i] : n;
            r->offsets[i] = (int64_t)(map ? map[b] : b);
        }
        /* [SEP] sits at the end of the text, as the spm kind's </s> */
        if (count > 1) r->offsets[2 * count - 2] = r->offsets[2 * count - 1] = (int64_t)len;
        memset(r->tags, QIAO_TAG_S, count);
        r->count = blank(text, len) ? 0 : count; /* no text, no tokens: as the hybrid kind */
    }
    tk_wp_encoding_free(&e);
    free(fixed), free(map);
    if (st != QIAO_OK) {
        qiao_tokens_free(r);
        return st;
    }
    *out = r;
    return QIAO_OK;
}

/* The bpe kind: CLIPTokenizer's encode(text), a limit as its truncation
 * (<|endoftext|> stays last; a limit of 1 keeps <|startoftext|>); tags S,
 * no characters. The byte-level BPE runs on the text after CLIP's cleaning
 * (characters dropped, NFC, lowercase), which keeps no map back to the
 * bytes: each piece's offsets span the whole text, the specials sit at its
 * two ends. */
static qiao_status tokenize_bpe(const qiao_tokenizer *tok, const char *text, size_t len, const qiao_tokenize_params *p,
                                const char *what, qiao_tokens **out) {
    const char *src;
    char *fixed;
    size_t n, *map;
    qiao_status st = imported_text(text, len, p, what, &src, &n, &fixed, &map);
    if (st != QIAO_OK) return st;
    const size_t limit = (size_t)p->max_tokens;
    tk_bpe_opts o = tk_bpe_default_opts();
    o.context_length = limit == 1 ? 2 : (int64_t)limit;
    int32_t *ids = NULL;
    size_t got = 0;
    st = tk_bpe_encode(tok->bpe, src, n, &o, &ids, &got);
    free(fixed), free(map);
    if (st != QIAO_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", qiao_last_error());
        return qc_error(st, "%s: %s", what, msg);
    }
    const size_t count = limit == 1 && got > 1 ? 1 : got;
    qiao_tokens *r = imported_tokens(count);
    if (!r) {
        free(ids);
        return QIAO_ERR_OUT_OF_MEMORY;
    }
    memcpy(r->ids, ids, count * sizeof *r->ids);
    free(ids);
    for (size_t t = 0; t < count; t++) {
        const bool first = t == 0, last = t + 1 == count && count > 1;
        r->offsets[2 * t] = last ? (int64_t)len : 0;
        r->offsets[2 * t + 1] = first ? 0 : (int64_t)len;
    }
    memset(r->tags, QIAO_TAG_S, count);
    r->count = blank(text, len) ? 0 : count; /* no text, no tokens: as the hybrid kind */
    *out = r;
    return QIAO_OK;
}

static qiao_status tokenize_spm(const qiao_tokenizer *tok, const char *text, size_t len, const qiao_tokenize_params *p,
                                const char *what, qiao_tokens **out) {
    const char *src;
    char *fixed;
    size_t n, *map;
    qiao_status ist = imported_text(text, len, p, what, &src, &n, &fixed, &map);
    if (ist != QIAO_OK) return ist;
    spm_piece *pieces = NULL;
    size_t cap = 0, np = 0;
    char err[256] = "";
    spm_rc rc = spm_encode(tok->spm, NULL, src, n, &pieces, &cap, &np, err, sizeof err);
    qiao_status st = QIAO_OK;
    if (rc != SPM_OK)
        st = qc_error(rc == SPM_ERR_NOMEM ? QIAO_ERR_OUT_OF_MEMORY : QIAO_ERR_INTERNAL, "%s: SentencePiece: %s", what,
                      err);
    const tk_specials *s = &tok->sp;
    const size_t limit = (size_t)p->max_tokens;
    /* a limit below the specials' count keeps bos, then nothing */
    const bool bos = s->add_bos && (!limit || limit >= 1), eos = s->add_eos && (!limit || limit >= 1 + (size_t)bos);
    const size_t extra = (size_t)bos + (size_t)eos;
    size_t keep = np;
    if (limit && keep + extra > limit) keep = limit - extra;
    const size_t count = keep + extra;
    qiao_tokens *r = st == QIAO_OK ? imported_tokens(count) : NULL;
    if (st == QIAO_OK && !r) st = QIAO_ERR_OUT_OF_MEMORY;
    if (st == QIAO_OK) {
        size_t t = 0;
        if (bos) r->ids[t] = s->bos, r->offsets[2 * t] = r->offsets[2 * t + 1] = 0, t++;
        for (size_t i = 0; i < keep; i++, t++) {
            const spm_kind kind = spm_piece_kind(tok->spm, pieces[i].id);
            r->ids[t] = kind == SPM_PIECE_UNKNOWN ? s->unk : pieces[i].id + tok->id_offset;
            const size_t b = pieces[i].begin < n ? pieces[i].begin : n, e = pieces[i].end < n ? pieces[i].end : n;
            r->offsets[2 * t] = (int64_t)(map ? map[b] : b);
            r->offsets[2 * t + 1] = (int64_t)(map ? map[e] : e);
        }
        if (eos) r->ids[t] = s->eos, r->offsets[2 * t] = r->offsets[2 * t + 1] = (int64_t)len, t++;
        memset(r->tags, QIAO_TAG_S, count);
        r->count = count;
        r->k = 0;
        if (blank(text, len)) r->count = 0; /* no text, no tokens: as the hybrid kind */
    }
    free(pieces), free(fixed), free(map);
    if (st != QIAO_OK) {
        qiao_tokens_free(r);
        return st;
    }
    *out = r;
    return QIAO_OK;
}

/* Tokenizes text[0 .. len). */
static qiao_status tokenize_all(const qiao_tokenizer *tok, const char *text, size_t len, const qiao_tokenize_params *p,
                                const char *what, qiao_tokens **out) {
    if (tok->kind == TK_KIND_SPM) return tokenize_spm(tok, text, len, p, what, out);
    if (tok->kind == TK_KIND_WORDPIECE) return tokenize_wp(tok, text, len, p, what, out);
    if (tok->kind == TK_KIND_BPE) return tokenize_bpe(tok, text, len, p, what, out);
    tk_norm_opts o = tok->norm;
    o.replace_invalid = p->replace_invalid != 0;
    tk_normalized nt;
    qiao_status st = tk_normalize(text, len, &o, what, &nt);
    if (st != QIAO_OK) return st;
    qiao_tokens *r = calloc(1, sizeof *r);
    if (!r) {
        tk_normalized_free(&nt);
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "qiao_tokenize: out of memory");
    }
    r->k = tok->k;
    tk_run run = {.tok = tok, .nt = &nt, .text_len = len, .r = r, .limit = (size_t)p->max_tokens};
    run.scratch = spm_scratch_new();
    st = run.scratch ? grow_tokens(&run, 1) : qc_error(QIAO_ERR_OUT_OF_MEMORY, "qiao_tokenize: out of memory");
    if (st == QIAO_OK) st = tk_word_units(nt.s, nt.len, on_unit, &run);
    free(run.pieces);
    free(run.cache);
    spm_scratch_free(run.scratch);
    tk_normalized_free(&nt);
    if (st != QIAO_OK) {
        qiao_tokens_free(r);
        return st;
    }
    *out = r;
    return QIAO_OK;
}

/* The first hard boundary at or after byte `at`: ASCII white space, the
 * ideographic space, or 。！？，； . Normalization and word segmentation on
 * either side of one do not depend on the other side, so the tokens of the
 * text before it are the first tokens of the whole text. A run of 64 KiB
 * without one is cut at a character boundary (only the last word before the
 * cut may then differ). */
static size_t hard_boundary(const unsigned char *u, size_t len, size_t at) {
    size_t give_up = at + ((size_t)64 << 10);
    for (size_t i = at; i < len; i++) {
        unsigned char c = u[i];
        if (c == ' ' || c == '\n' || c == '\t' || c == '\r') return i;
        if (i + 2 < len && c == 0xE3 && u[i + 1] == 0x80 && (u[i + 2] == 0x80 || u[i + 2] == 0x82)) return i;
        if (i + 2 < len && c == 0xEF && u[i + 1] == 0xBC &&
            (u[i + 2] == 0x81 || u[i + 2] == 0x8C || u[i + 2] == 0x9B || u[i + 2] == 0x9F))
            return i;
        if (i >= give_up && (c & 0xC0) != 0x80) return i;
    }
    return len;
}

/* With a token limit, a long text is tokenized by prefixes that double
 * until one yields the limit: time and memory follow what the model uses,
 * not the text's length (a 20 MB text for 128 tokens took 3.7 s and 507 MB).
 * Invalid UTF-8 past the prefix is still an error, as it is without a limit. */
static qiao_status tokenize_one(const qiao_tokenizer *tok, const char *text, size_t len, const qiao_tokenize_params *p,
                                const char *what, qiao_tokens **out) {
    size_t limit = (size_t)p->max_tokens;
    size_t at = limit > 0 && limit < ((size_t)1 << 40) ? 16 * limit + 4096 : len;
    const unsigned char *u = (const unsigned char *)text;
    for (;;) {
        size_t cut = at >= len ? len : hard_boundary(u, len, at);
        qiao_tokens *r = NULL;
        qiao_status st = tokenize_all(tok, text, cut, p, what, &r);
        if (st != QIAO_OK) return st;
        if (cut == len || r->count >= limit) {
            size_t bad = p->replace_invalid ? len - cut : qc_utf8_check(text + cut, len - cut);
            if (cut + bad < len) {
                qiao_tokens_free(r);
                return qc_error(QIAO_ERR_FORMAT, "%s: invalid UTF-8 at byte %zu (0x%02X)", what, cut + bad,
                                u[cut + bad]);
            }
            *out = r;
            return QIAO_OK;
        }
        qiao_tokens_free(r);
        at = at > len / 2 ? len : 2 * at;
    }
}

qiao_status qiao_tokenize(const qiao_tokenizer *tok, const char *text, size_t len, const qiao_tokenize_params *params,
                          qiao_tokens **out) {
    if (!out) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_tokenize: NULL out");
    *out = NULL;
    if (!tok || (!text && len)) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_tokenize: NULL argument");
    qiao_tokenize_params p;
    qiao_status st = read_params(params, &p);
    if (st != QIAO_OK) return st;
    return tokenize_one(tok, text ? text : "", len, &p, "text", out);
}

void qiao_tokens_free(qiao_tokens *t) {
    if (!t) return;
    free(t->ids);
    free(t->char_ids);
    free(t->tags);
    free(t->offsets);
    free(t);
}

void qiao_token_batch_free(qiao_token_batch *b) {
    if (!b) return;
    free(b->ids);
    free(b->char_ids);
    free(b->tags);
    free(b->offsets);
    free(b->mask);
    free(b->lengths);
    free(b);
}

qiao_status qiao_tokenize_batch(const qiao_tokenizer *tok, const char *const *texts, const size_t *lens, size_t n,
                                size_t max_len, const qiao_tokenize_params *params, qiao_token_batch **out) {
    if (!out) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_tokenize_batch: NULL out");
    *out = NULL;
    if (!tok || (!texts && n)) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_tokenize_batch: NULL argument");
    qiao_tokenize_params p;
    qiao_status st = read_params(params, &p);
    if (st != QIAO_OK) return st;
    if (max_len > 0 && (p.max_tokens == 0 || (size_t)p.max_tokens > max_len)) p.max_tokens = (int64_t)max_len;
    qiao_tokens **all = calloc(n ? n : 1, sizeof *all);
    qiao_token_batch *b = calloc(1, sizeof *b);
    if (!all || !b) {
        st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "qiao_tokenize_batch: out of memory");
        goto done;
    }
    size_t T = 0;
    for (size_t i = 0; i < n; i++) {
        if (!texts[i] && lens && lens[i]) {
            st = qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_tokenize_batch: text %zu is NULL", i);
            goto done;
        }
        const char *s = texts[i] ? texts[i] : "";
        char what[48];
        snprintf(what, sizeof what, "text %zu", i);
        if ((st = tokenize_one(tok, s, lens ? lens[i] : strlen(s), &p, what, &all[i])) != QIAO_OK) goto done;
        if (all[i]->count > T) T = all[i]->count;
    }
    if (max_len > 0) T = max_len;
    size_t k = (size_t)tok->k, nt;
    if (!qc_mul_size(n, T, &nt) || nt > SIZE_MAX / (2 * (k ? k : 1) * sizeof(int64_t))) {
        st = qc_error(QIAO_ERR_TOO_LARGE, "qiao_tokenize_batch: %zu x %zu tokens", n, T);
        goto done;
    }
    b->n = n;
    b->t = T;
    b->k = tok->k;
    size_t cells = nt ? nt : 1;
    b->ids = calloc(cells, sizeof *b->ids);
    b->char_ids = calloc(cells * (k ? k : 1), sizeof *b->char_ids);
    b->tags = calloc(cells, 1);
    b->offsets = malloc(cells * 2 * sizeof *b->offsets);
    b->mask = calloc(cells, 1);
    b->lengths = calloc(n ? n : 1, sizeof *b->lengths);
    if (!b->ids || !b->char_ids || !b->tags || !b->offsets || !b->mask || !b->lengths) {
        st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "qiao_tokenize_batch: out of memory for %zu x %zu tokens", n, T);
        goto done;
    }
    for (size_t i = 0; i < cells * 2; i++) b->offsets[i] = -1;
    for (size_t i = 0; i < n; i++) {
        const qiao_tokens *r = all[i];
        size_t c = r->count < T ? r->count : T;
        b->lengths[i] = c;
        memcpy(b->ids + i * T, r->ids, c * sizeof *r->ids);
        if (k) memcpy(b->char_ids + i * T * k, r->char_ids, c * k * sizeof *r->char_ids);
        memcpy(b->tags + i * T, r->tags, c);
        memcpy(b->offsets + i * T * 2, r->offsets, c * 2 * sizeof *r->offsets);
        memset(b->mask + i * T, 1, c);
    }
    *out = b;
    b = NULL;
done:
    if (all)
        for (size_t i = 0; i < n; i++) qiao_tokens_free(all[i]);
    free(all);
    qiao_token_batch_free(b);
    return st;
}
