/* models/vocab/prune.c - vocabulary pruning of an imported text encoder
 * (prune.h says what is kept and why). The SentencePiece model is cut in
 * tokenizers/spm_prune.c and the corpora read in corpus.c; this file chooses the pieces,
 * gathers the rows and rewrites the model file. */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/safetensors.h"
#include "models/model.h"
#include "models/vocab/prune.h"
#include "tokenizers/tokenizer.h"

/* ---- which pieces ------------------------------------------------------------- */

bool qmv_kept_char(int32_t cp) {
    static const int32_t ranges[][2] = {
        {0x20, 0x7E},       /* ASCII */
        {0xA0, 0xFF},       /* Latin-1: ¥ £ ° × · and café's letters */
        {0x2000, 0x206F},   /* general punctuation: “ ” ‘ ’ … — */
        {0x20A0, 0x20CF},   /* currency signs */
        {0x2E80, 0x2FDF},   /* CJK and Kangxi radicals */
        {0x3000, 0x303F},   /* CJK symbols and punctuation: 。、「」 */
        {0x3100, 0x312F},   /* Bopomofo */
        {0x31A0, 0x31BF},   /* Bopomofo extended */
        {0x3400, 0x4DBF},   /* CJK extension A */
        {0x4E00, 0x9FFF},   /* CJK unified ideographs */
        {0xF900, 0xFAFF},   /* CJK compatibility ideographs */
        {0xFE30, 0xFE4F},   /* CJK compatibility forms */
        {0xFF00, 0xFFEF},   /* half- and full-width forms */
        {0x20000, 0x2FA1F}, /* CJK extensions B to F, compatibility supplement */
        {0x30000, 0x323AF}, /* CJK extensions G and H */
    };
    for (size_t i = 0; i < sizeof ranges / sizeof ranges[0]; i++)
        if (cp >= ranges[i][0] && cp <= ranges[i][1]) return true;
    return false;
}

bool qmv_script_char(int32_t cp, unsigned mask) {
    static const int32_t zh[][2] = {
        {0x2000, 0x206F}, {0x2E80, 0x2FDF}, {0x3000, 0x303F}, {0x3100, 0x312F}, {0x31A0, 0x31BF},
        {0x3400, 0x4DBF}, {0x4E00, 0x9FFF}, {0xF900, 0xFAFF}, {0xFE30, 0xFE4F}, {0xFF00, 0xFFEF},
        {0x20000, 0x2FA1F}, {0x30000, 0x323AF},
    };
    if ((mask & QMV_SCRIPT_DIGITS) && cp >= '0' && cp <= '9') return true;
    if ((mask & QMV_SCRIPT_EN) && cp >= 0x20 && cp <= 0x7E) return true;
    for (size_t i = 0; (mask & QMV_SCRIPT_ZH) && i < sizeof zh / sizeof zh[0]; i++)
        if (cp >= zh[i][0] && cp <= zh[i][1]) return true;
    return false;
}

qiao_status qmv_scripts_parse(const char *list, unsigned *mask) {
    if (!list || !mask) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmv_scripts_parse: NULL argument");
    *mask = 0;
    for (const char *p = list;;) {
        const char *e = strchr(p, ',');
        const size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n == 2 && !strncmp(p, "zh", 2)) *mask |= QMV_SCRIPT_ZH;
        else if (n == 6 && !strncmp(p, "digits", 6)) *mask |= QMV_SCRIPT_DIGITS;
        else if (n == 2 && !strncmp(p, "en", 2)) *mask |= QMV_SCRIPT_EN;
        else
            return qc_error(QIAO_ERR_INVALID_ARGUMENT, "scripts '%s': '%.*s' is not zh, digits or en", list,
                            (int)(n < 64 ? n : 64), p);
        if (!e) return QIAO_OK;
        p = e + 1;
    }
}

/* A piece written only in the scripts of `mask` ("▁" aside). */
static bool script_piece(const char *p, unsigned mask) {
    static const char mark[] = "\xE2\x96\x81";
    bool any = false;
    for (size_t n = strlen(p); n;) {
        if (n >= 3 && !strncmp(p, mark, 3)) {
            p += 3, n -= 3;
            continue;
        }
        int32_t cp;
        const size_t l = tk_utf8_decode((const unsigned char *)p, n, &cp);
        if (!qmv_script_char(cp, mask)) return false;
        p += l, n -= l, any = true;
    }
    return any;
}

/* A piece that is one kept character, alone or after "▁", or "▁" itself. */
static bool char_piece(const char *p) {
    static const char mark[] = "\xE2\x96\x81";
    if (!strncmp(p, mark, 3)) p += 3;
    const size_t n = strlen(p);
    if (!n) return true;
    int32_t cp;
    return tk_utf8_decode((const unsigned char *)p, n, &cp) == n && qmv_kept_char(cp);
}

typedef struct marker {
    const qiao_tokenizer *tok;
    bool *keep;           /* (SentencePiece pieces) */
    int64_t n_spm;
    qmv_prune_stats *s;
    char *buf;            /* the prompt and a text */
    size_t cap;
} marker;

static bool is_special(const qiao_tokenizer *tok, int32_t id) {
    const tk_specials *s = &tok->sp;
    return id == s->bos || id == s->eos || id == s->pad || id == s->unk || id == s->mask;
}

/* Marks the pieces of prompt + text[0 .. len) (`what` names it in messages). */
static qiao_status mark(marker *m, const char *prompt, const char *text, size_t len, const char *what) {
    const size_t pl = prompt ? strlen(prompt) : 0;
    if (m->cap < pl + len + 1) {
        size_t cap = m->cap ? m->cap : 4096;
        while (cap < pl + len + 1) cap *= 2;
        char *b = realloc(m->buf, cap);
        if (!b) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "pruning: out of memory");
        m->buf = b, m->cap = cap;
    }
    if (pl) memcpy(m->buf, prompt, pl);
    memcpy(m->buf + pl, text, len);
    qiao_tokenize_params tp = qiao_tokenize_default_params();
    qiao_tokens *t = NULL;
    qiao_status st = qiao_tokenize(m->tok, m->buf, pl + len, &tp, &t);
    if (st != QIAO_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", qiao_last_error());
        return qc_error(st, "%s: %s", what, msg);
    }
    const int32_t off = m->tok->id_offset;
    for (size_t i = 0; i < t->count; i++) {
        const int32_t id = t->ids[i];
        m->s->tokens++;
        if (id == m->tok->sp.unk) m->s->unk++;
        if (!is_special(m->tok, id) && id >= off && id - off < m->n_spm) m->keep[id - off] = true;
    }
    qiao_tokens_free(t);
    return QIAO_OK;
}

/* Marks the pieces of the corpora (each text after the "query" prompt) and
 * of every prompt alone. */
static qiao_status mark_corpus(marker *m, const qmod_config *cfg, const qmv_texts *corpus) {
    qiao_status st = QIAO_OK;
    const char *query = qmod_config_prompt(cfg, "query");
    char what[64];
    for (size_t i = 0; st == QIAO_OK && corpus && i < corpus->n; i++) {
        size_t len;
        const char *text = qmv_text(corpus, i, &len);
        snprintf(what, sizeof what, "corpus text %zu", i + 1);
        st = mark(m, query, text, len, what);
        m->s->texts++;
    }
    const char *p = cfg->prompts;
    for (int i = 0; st == QIAO_OK && p && i < cfg->n_prompts; i++) {
        const char *text = p + strlen(p) + 1;
        st = mark(m, NULL, text, strlen(text), "a prompt");
        p = text + strlen(text) + 1;
    }
    return st;
}

/* ---- the file ------------------------------------------------------------------- */

/* "qiao.pruned": what was kept, for whoever reads the file later. */
static char *record_json(const qmv_prune_params *p, const qmv_prune_stats *s) {
    cJSON *r = cJSON_CreateObject(), *src = cJSON_CreateArray();
    if (!r || !src) {
        cJSON_Delete(r), cJSON_Delete(src);
        return NULL;
    }
    cJSON_AddNumberToObject(r, "rows_before", (double)s->rows_before);
    cJSON_AddNumberToObject(r, "rows", (double)s->rows_after);
    cJSON_AddNumberToObject(r, "corpus_texts", (double)s->texts);
    cJSON_AddNumberToObject(r, "corpus_pieces", (double)s->by_corpus);
    cJSON_AddBoolToObject(r, "chinese_english_chars", p->chars);
    cJSON_AddNumberToObject(r, "char_pieces", (double)s->by_chars);
    cJSON *sc = cJSON_AddArrayToObject(r, "scripts");
    static const char *const names[3] = {"zh", "digits", "en"};
    for (int i = 0; i < 3 && sc; i++)
        if (p->scripts >> i & 1u) cJSON_AddItemToArray(sc, cJSON_CreateString(names[i]));
    cJSON_AddNumberToObject(r, "script_pieces", (double)s->by_scripts);
    for (size_t i = 0; i < p->n_sources && p->sources; i++)
        cJSON_AddItemToArray(src, cJSON_CreateString(p->sources[i] ? p->sources[i] : ""));
    cJSON_AddItemToObject(r, "corpora", src);
    char *json = cJSON_PrintUnformatted(r);
    cJSON_Delete(r);
    return json;
}

/* The model config with text.vocab set to `vocab` (malloc'd), or NULL. */
static char *config_with_vocab(const char *json, int64_t vocab) {
    cJSON *root = cJSON_Parse(json);
    cJSON *text = root ? cJSON_GetObjectItemCaseSensitive(root, "text") : NULL;
    char *out = NULL;
    if (text && cJSON_ReplaceItemInObjectCaseSensitive(text, "vocab", cJSON_CreateNumber((double)vocab)))
        out = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return out;
}

qiao_status qmv_prune_file(const char *in, const char *out, const qmv_prune_params *p, qmv_prune_stats *stats) {
    qmv_prune_stats s;
    memset(&s, 0, sizeof s);
    if (stats) *stats = s;
    if (!in || !out || !p) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmv_prune_file: NULL argument");
    qc_st_file *f = NULL;
    qiao_tokenizer *tok = NULL;
    qmod_config cfg;
    memset(&cfg, 0, sizeof cfg);
    tk_pruned pr;
    memset(&pr, 0, sizeof pr);
    marker mk;
    memset(&mk, 0, sizeof mk);
    bool *keep = NULL;
    char *config = NULL, *record = NULL;
    qc_st_entry *repl = NULL;
    size_t n_repl = 0;
    qiao_status st = qc_st_open(in, &f);
    const char *fmt = st == QIAO_OK ? qc_st_metadata_get(f, QMOD_META_FORMAT) : NULL;
    const char *json = st == QIAO_OK ? qc_st_metadata_get(f, QMOD_META_CONFIG) : NULL;
    if (st == QIAO_OK && (!fmt || strcmp(fmt, QMOD_FORMAT) != 0 || !json))
        st = qc_error(QIAO_ERR_FORMAT, "%s: not a qiao model (no %s \"%s\" and %s metadata)", in, QMOD_META_FORMAT,
                      QMOD_FORMAT, QMOD_META_CONFIG);
    if (st == QIAO_OK) {
        char what[1200];
        snprintf(what, sizeof what, "%s: metadata %s", in, QMOD_META_CONFIG);
        st = qmod_config_from_string(json, what, &cfg);
    }
    if (st == QIAO_OK && !qmod_has_tower(&cfg, QMOD_TEXT))
        st = qc_error(QIAO_ERR_UNSUPPORTED, "%s: the model has no text tower, so no vocabulary to prune", in);
    if (st == QIAO_OK && cfg.has_decoder)
        st = qc_error(QIAO_ERR_UNSUPPORTED,
                      "%s: the model's caption decoder writes its tokenizer's pieces; pruning them is not supported", in);
    if (st == QIAO_OK) st = tk_tokenizer_from_st(f, &tok);
    if (st == QIAO_OK && tok->kind != TK_KIND_SPM)
        st = qc_error(QIAO_ERR_UNSUPPORTED,
                      "%s: pruning needs an imported SentencePiece tokenizer (tokenizer.config kind \"spm\": "
                      "converted e5 or XLM-R); this model's is another kind",
                      in);
    if (st == QIAO_OK && tok->vocab_size != cfg.text.vocab)
        st = qc_error(QIAO_ERR_FORMAT, "%s: tokenizer vocab_size %lld != text.vocab %lld", in,
                      (long long)tok->vocab_size, (long long)cfg.text.vocab);
    const int64_t n_spm = st == QIAO_OK ? spm_vocab_size(tok->spm) : 0;
    if (st == QIAO_OK && !(keep = calloc((size_t)n_spm + 1, sizeof *keep)))
        st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory", in);
    mk = (marker){.tok = tok, .keep = keep, .n_spm = n_spm, .s = &s};
    if (st == QIAO_OK) st = mark_corpus(&mk, &cfg, p->corpus);
    for (int64_t i = 0; st == QIAO_OK && i < n_spm; i++) {
        s.by_corpus += keep[i];
        if (spm_piece_kind(tok->spm, (int32_t)i) != SPM_PIECE_NORMAL) continue;
        const char *piece = spm_piece_str(tok->spm, (int32_t)i);
        if (p->chars && char_piece(piece)) keep[i] = true, s.by_chars++;
        if (p->scripts && script_piece(piece, p->scripts)) keep[i] = true, s.by_scripts++;
    }
    if (st == QIAO_OK) st = tk_spm_prune(tok, keep, &pr);
    if (st == QIAO_OK) {
        s.pieces_before = n_spm, s.pieces_after = pr.pieces;
        s.rows_before = tok->vocab_size, s.rows_after = pr.vocab_size;
        s.bytes_before = (int64_t)tok->spm_len, s.bytes_after = (int64_t)pr.spm_len;
        if (!(config = config_with_vocab(json, pr.vocab_size)) || !(record = record_json(p, &s)) ||
            !(repl = calloc(qc_st_count(f) + 1, sizeof *repl)))
            st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory", in);
    }
    /* every tensor with a row per id: the word embeddings, a tied output, their scales */
    for (size_t i = 0; st == QIAO_OK && i < qc_st_count(f); i++) {
        const qc_st_tensor *t = qc_st_at(f, i);
        if (t->ndim < 1 || t->shape[0] != s.rows_before || !strncmp(t->name, "tokenizer.", 10)) continue;
        const size_t row = t->nbytes / (size_t)t->shape[0];
        char *g = malloc((size_t)pr.vocab_size * row + 1);
        if (!g) {
            st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory", in);
            break;
        }
        for (int64_t r = 0; r < pr.vocab_size; r++)
            memcpy(g + (size_t)r * row, (const char *)t->data + (size_t)pr.old_id[r] * row, row);
        qc_st_entry *e = &repl[n_repl++];
        *e = (qc_st_entry){.name = t->name, .dtype = t->dtype, .ndim = t->ndim, .data = g};
        memcpy(e->shape, t->shape, sizeof e->shape);
        e->shape[0] = pr.vocab_size;
        s.tensors++;
        s.bytes_before += (int64_t)t->nbytes, s.bytes_after += (int64_t)((size_t)pr.vocab_size * row);
    }
    if (st == QIAO_OK && !s.tensors)
        st = qc_error(QIAO_ERR_FORMAT, "%s: no tensor has a row per id of the %lld-id vocabulary", in,
                      (long long)s.rows_before);
    if (st == QIAO_OK) {
        repl[n_repl] = (qc_st_entry){.name = TK_TENSOR_SPM, .dtype = QIAO_DTYPE_U8, .ndim = 1,
                                     .shape = {(int64_t)pr.spm_len}, .data = pr.spm};
        const qc_st_kv meta[3] = {{QMOD_META_CONFIG, config}, {TK_META_CONFIG, pr.config}, {"qiao.pruned", record}};
        st = qc_st_rewrite(f, out, repl, n_repl + 1, meta, 3);
    }
    for (size_t i = 0; i < n_repl; i++) free((void *)repl[i].data);
    free(repl);
    free(config);
    free(record);
    free(mk.buf);
    free(keep);
    tk_pruned_free(&pr);
    qiao_tokenizer_free(tok);
    qmod_config_free(&cfg);
    qc_st_close(f);
    if (stats && st == QIAO_OK) *stats = s;
    return st;
}
