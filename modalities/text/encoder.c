/* The text encoder: hybrid character + piece embedding front end, gated
 * mix, word-position tags, then the shared trunk; or an imported
 * BERT-family encoder. See encoder.h. */
#include "modalities/text/encoder.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#define PFIELD(m) (field_base + offsetof(qe_text_params, m))
#define AFIELD(m) (field_base + offsetof(qe_text_acts, m))

/* ---- config ------------------------------------------------------------------ */

/* Upper bounds that only reject absurd configs; the shipped ones are far below. */
#define MAX_VOCAB (INT64_C(1) << 22)
#define MAX_K 256
#define MAX_DIM 8192
#define MAX_MLP 65536
#define MAX_TOKENS 65536
#define MAX_TABLE_FLOATS (INT64_C(1) << 28)

static const char *const known_keys[] = {"vocab",     "char_vocab", "k",      "char_dim", "char_kernels",
                                         "char_channels", "width",  "layers", "heads",    "mlp",
                                         "max_tokens", "mix", "fusion", "pool", "arch", NULL};
static const char *const bert_keys[] = {"arch", "vocab", "type_vocab", "width", "layers", "heads", "max_tokens",
                                        "mlp",  "eps",   "pool",       "proj",  "act",    NULL};
static const char *const clip_keys[] = {"arch", "vocab", "width", "layers", "heads", "max_tokens",
                                        "mlp",  "eps",   "pool",  "proj",   "act",   NULL};

/* A misspelt key would otherwise be silently ignored. */
static qiao_status check_keys(const cJSON *obj, const char *const *keys) {
    for (const cJSON *it = obj->child; it; it = it->next) {
        bool known = false;
        for (size_t i = 0; keys[i]; i++)
            if (it->string && strcmp(it->string, keys[i]) == 0) known = true;
        if (!known)
            return qc_error(QIAO_ERR_FORMAT, "text config: unknown key 'text.%s'", it->string ? it->string : "");
    }
    return QIAO_OK;
}

/* The trunk's integers every arch has, and their checks against each other
 * and the vocabulary. */
typedef struct trunk_ints {
    int64_t width, layers, heads, mlp, max_tokens;
} trunk_ints;

static qiao_status read_trunk_ints(const cJSON *obj, int64_t vocab, trunk_ints *t) {
    qiao_status st;
    if ((st = qc_json_int(obj, "text", "width", 1, MAX_DIM, &t->width)) != QIAO_OK ||
        (st = qc_json_int(obj, "text", "layers", 0, NN_MAX_LAYERS, &t->layers)) != QIAO_OK ||
        (st = qc_json_int(obj, "text", "heads", 1, MAX_DIM, &t->heads)) != QIAO_OK ||
        (st = qc_json_int(obj, "text", "mlp", 1, MAX_MLP, &t->mlp)) != QIAO_OK ||
        (st = qc_json_int(obj, "text", "max_tokens", 1, MAX_TOKENS, &t->max_tokens)) != QIAO_OK)
        return st;
    if (t->width % t->heads)
        return qc_error(QIAO_ERR_FORMAT, "text config: 'text.heads' = %lld does not divide 'text.width' = %lld",
                        (long long)t->heads, (long long)t->width);
    if (vocab * t->width > MAX_TABLE_FLOATS)
        return qc_error(QIAO_ERR_FORMAT, "text config: 'text.vocab' x 'text.width' = %lld floats is too large",
                        (long long)(vocab * t->width));
    return QIAO_OK;
}

/* The imported architectures (encoder.h): "bert" (post-norm, a LayerNorm
 * on the embeddings, token types) and "clip" (OpenAI CLIP's text tower:
 * causal pre-norm blocks, read at the last token). */
static qiao_status imported_config(const cJSON *obj, int64_t embed_dim, qe_text_arch arch, qe_text_config *cfg) {
    const bool bert = arch == QE_TEXT_ARCH_BERT;
    qiao_status st = check_keys(obj, bert ? bert_keys : clip_keys);
    if (st != QIAO_OK) return st;
    qe_text_config c;
    memset(&c, 0, sizeof c);
    c.arch = arch;
    trunk_ints t;
    if ((st = qc_json_int(obj, "text", "vocab", 1, MAX_VOCAB, &c.vocab)) != QIAO_OK ||
        (bert && (st = qc_json_int(obj, "text", "type_vocab", 1, 1024, &c.type_vocab)) != QIAO_OK) ||
        (st = read_trunk_ints(obj, c.vocab, &t)) != QIAO_OK)
        return st;
    float eps; /* the LayerNorms' epsilon: above 0, at most 0.1 */
    if ((st = qc_json_float(obj, "text", "eps", 1e-30, 0.1, bert ? 1e-12f : 1e-5f, &eps)) != QIAO_OK) return st;
    nn_pool pool;
    if ((st = nn_pool_from_json(obj, "text", bert ? NN_POOL_MEAN : NN_POOL_LAST, &pool)) != QIAO_OK) return st;
    if (bert && pool != NN_POOL_MEAN && pool != NN_POOL_FIRST)
        return qc_error(QIAO_ERR_FORMAT, "text config: a bert encoder pools \"mean\" or \"first\"");
    if (!bert && pool != NN_POOL_LAST)
        return qc_error(QIAO_ERR_FORMAT, "text config: a clip encoder pools \"last\" (its end-of-text token)");
    static const char *const projs[] = {"bias", "nobias", "none"}; /* nn_proj's order */
    static const char *const acts[] = {"gelu", "quick_gelu"};     /* nn_act's order */
    int proj, act;
    const int dproj = bert ? NN_PROJ_NONE : NN_PROJ_NOBIAS, dact = bert ? NN_ACT_GELU : NN_ACT_QUICK_GELU;
    if ((st = qc_json_choice(obj, "text", "proj", projs, 3, dproj, &proj)) != QIAO_OK ||
        (st = qc_json_choice(obj, "text", "act", acts, 2, dact, &act)) != QIAO_OK)
        return st;
    if (proj == NN_PROJ_NONE && embed_dim != t.width)
        return qc_error(QIAO_ERR_FORMAT,
                        "text config: without a projection ('text.proj' \"none\") 'embed_dim' (%lld) must be "
                        "'text.width' (%lld)",
                        (long long)embed_dim, (long long)t.width);
    c.trunk = (nn_trunk_dims){.C = t.width,
                              .F = t.mlp,
                              .H = t.heads,
                              .L = t.layers,
                              .max_T = t.max_tokens,
                              .D = embed_dim,
                              .pool = pool,
                              .norm = bert ? NN_NORM_POST : NN_NORM_PRE,
                              .eps = eps,
                              .ln_in = bert,
                              .proj = (nn_proj)proj,
                              .act = (nn_act)act,
                              .causal = !bert};
    *cfg = c;
    return QIAO_OK;
}

qiao_status qe_text_config_from_json(const cJSON *obj, int64_t embed_dim, qe_text_config *cfg) {
    if (!cfg) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "text config: cfg is NULL");
    if (!cJSON_IsObject(obj)) return qc_error(QIAO_ERR_FORMAT, "text config: 'text' must be an object");
    if (embed_dim < 1 || embed_dim > MAX_DIM)
        return qc_error(QIAO_ERR_FORMAT, "text config: 'embed_dim' = %lld is out of range [1, %d]",
                        (long long)embed_dim, MAX_DIM);
    static const char *const archs[] = {"hybrid", "bert", "clip"}; /* qe_text_arch's order */
    int arch;
    qiao_status ast = qc_json_choice(obj, "text", "arch", archs, 3, QE_TEXT_ARCH_HYBRID, &arch);
    if (ast != QIAO_OK) return ast;
    if (arch != QE_TEXT_ARCH_HYBRID) return imported_config(obj, embed_dim, (qe_text_arch)arch, cfg);
    qiao_status kst = check_keys(obj, known_keys);
    if (kst != QIAO_OK) return kst;
    qe_text_config c;
    memset(&c, 0, sizeof c);
    qiao_status st;
    trunk_ints t;
    if ((st = qc_json_int(obj, "text", "vocab", 1, MAX_VOCAB, &c.vocab)) != QIAO_OK ||
        (st = qc_json_int(obj, "text", "char_vocab", 2, MAX_VOCAB, &c.char_vocab)) != QIAO_OK ||
        (st = qc_json_int(obj, "text", "k", 1, MAX_K, &c.k)) != QIAO_OK ||
        (st = qc_json_int(obj, "text", "char_dim", 1, MAX_DIM, &c.char_dim)) != QIAO_OK ||
        (st = qc_json_int(obj, "text", "char_channels", 1, MAX_DIM, &c.char_channels)) != QIAO_OK ||
        (st = read_trunk_ints(obj, c.vocab, &t)) != QIAO_OK)
        return st;
    if (c.char_vocab * c.char_dim > MAX_TABLE_FLOATS)
        return qc_error(QIAO_ERR_FORMAT,
                        "text config: 'text.char_vocab' x 'text.char_dim' = %lld floats is too large",
                        (long long)(c.char_vocab * c.char_dim));
    const cJSON *ks = cJSON_GetObjectItemCaseSensitive(obj, "char_kernels");
    if (!ks) return qc_error(QIAO_ERR_FORMAT, "text config: missing key 'text.char_kernels'");
    int nk = cJSON_IsArray(ks) ? cJSON_GetArraySize(ks) : -1;
    if (nk < 1 || nk > QE_TEXT_MAX_KERNELS)
        return qc_error(QIAO_ERR_FORMAT, "text config: 'text.char_kernels' must be a list of 1 to %d widths",
                        QE_TEXT_MAX_KERNELS);
    c.n_kernels = nk;
    int i = 0;
    for (const cJSON *it = ks->child; it; it = it->next, i++) {
        if (!cJSON_IsNumber(it) || it->valuedouble != floor(it->valuedouble) || it->valuedouble < 1 ||
            it->valuedouble > (double)c.k)
            return qc_error(QIAO_ERR_FORMAT, "text config: 'text.char_kernels[%d]' must be an integer in [1, k = %lld]",
                            i, (long long)c.k);
        c.char_kernels[i] = (int64_t)it->valuedouble;
    }
    /* "fusion" is the key's old name: the shipped model's stored config
     * still says "fusion": "gate", and "fusion" now names the cross-modal
     * layer (fusion/), so new configs write "mix". */
    c.mix = QE_TEXT_MIX_GATE;
    const char *const mix_keys[] = {"mix", "fusion"};
    const cJSON *seen = NULL;
    for (int j = 0; j < 2; j++) {
        const cJSON *mx = cJSON_GetObjectItemCaseSensitive(obj, mix_keys[j]);
        if (!mx) continue;
        qe_text_mix v;
        if (cJSON_IsString(mx) && strcmp(mx->valuestring, "gate") == 0) v = QE_TEXT_MIX_GATE;
        else if (cJSON_IsString(mx) && strcmp(mx->valuestring, "piece") == 0) v = QE_TEXT_MIX_PIECE;
        else return qc_error(QIAO_ERR_FORMAT, "text config: 'text.%s' must be \"gate\" or \"piece\"", mix_keys[j]);
        if (seen && v != c.mix)
            return qc_error(QIAO_ERR_FORMAT, "text config: 'text.mix' and its old name 'text.fusion' disagree");
        c.mix = v;
        seen = mx;
    }
    nn_pool pool;
    qiao_status pst = nn_pool_from_json(obj, "text", NN_POOL_MEAN, &pool);
    if (pst != QIAO_OK) return pst;
    c.trunk = (nn_trunk_dims){.B = 0, .T = 0, .C = t.width, .F = t.mlp, .H = t.heads, .L = t.layers,
                              .max_T = t.max_tokens, .D = embed_dim, .pool = pool};
    *cfg = c;
    return QIAO_OK;
}

/* ---- tables ------------------------------------------------------------------ */

static qiao_status check_cfg(const qe_text_config *cfg) {
    if (cfg && (cfg->arch == QE_TEXT_ARCH_BERT || cfg->arch == QE_TEXT_ARCH_CLIP)) {
        if (cfg->vocab < 1 || (cfg->arch == QE_TEXT_ARCH_BERT && cfg->type_vocab < 1))
            return qc_error(QIAO_ERR_INVALID_ARGUMENT, "text encoder: invalid config (use qe_text_config_from_json)");
        return QIAO_OK;
    }
    if (!cfg || cfg->arch != QE_TEXT_ARCH_HYBRID || cfg->vocab < 1 || cfg->char_vocab < 2 || cfg->k < 1 || cfg->char_dim < 1 ||
        cfg->char_channels < 1 || cfg->n_kernels < 1 || cfg->n_kernels > QE_TEXT_MAX_KERNELS ||
        (cfg->mix != QE_TEXT_MIX_GATE && cfg->mix != QE_TEXT_MIX_PIECE))
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "text encoder: invalid config (use qe_text_config_from_json)");
    for (int64_t i = 0; i < cfg->n_kernels; i++)
        if (cfg->char_kernels[i] < 1 || cfg->char_kernels[i] > cfg->k)
            return qc_error(QIAO_ERR_INVALID_ARGUMENT,
                            "text encoder: char kernel %lld has width %lld outside [1, %lld]",
                            (long long)i, (long long)cfg->char_kernels[i], (long long)cfg->k);
    return QIAO_OK;
}

qiao_status qe_text_describe(qc_table *tab, const char *prefix, const qe_text_config *cfg, size_t field_base) {
    qiao_status st = check_cfg(cfg);
    if (st != QIAO_OK) return st;
    const int64_t C = cfg->trunk.C, Dc = cfg->char_dim, Cc = cfg->char_channels, nk = cfg->n_kernels;
    if ((st = qc_table_add_dims(tab, prefix, "piece_emb.weight", 2, cfg->vocab, C, 0, QC_INIT_NORMAL, 0.02f, 0,
                                PFIELD(piece_emb))) != QIAO_OK)
        return st;
    if (cfg->arch == QE_TEXT_ARCH_BERT) {
        if ((st = qc_table_add_dims(tab, prefix, "type_emb.weight", 2, cfg->type_vocab, C, 0, QC_INIT_NORMAL, 0.02f, 0,
                                    PFIELD(type_emb))) != QIAO_OK)
            return st;
    } else if (cfg->arch == QE_TEXT_ARCH_HYBRID && cfg->mix == QE_TEXT_MIX_GATE) {
        /* nn.Embedding's N(0, 1) and nn.Conv1d's U(+-1/sqrt(fan_in)) keep the
         * conv outputs O(1), where GELU and the max are not degenerate. */
        if ((st = qc_table_add_dims(tab, prefix, "char_emb.weight", 2, cfg->char_vocab, Dc, 0, QC_INIT_NORMAL, 1.0f, 0,
                                    PFIELD(char_emb))) != QIAO_OK)
            return st;
        for (int64_t i = 0; i < nk; i++) {
            const int64_t w = cfg->char_kernels[i];
            char name[64];
            snprintf(name, sizeof name, "char_conv.%lld.weight", (long long)i);
            if ((st = qc_table_add_dims(tab, prefix, name, 3, Cc, Dc, w, QC_INIT_UNIFORM, 1.0f / sqrtf((float)(Dc * w)),
                                        0, PFIELD(conv_w) + (size_t)i * sizeof(float *))) != QIAO_OK)
                return st;
            snprintf(name, sizeof name, "char_conv.%lld.bias", (long long)i);
            if ((st = qc_table_add_dims(tab, prefix, name, 1, Cc, 0, 0, QC_INIT_ZEROS, 0, QC_NO_DECAY,
                                        PFIELD(conv_b) + (size_t)i * sizeof(float *))) != QIAO_OK)
                return st;
        }
        if ((st = qc_table_add_dims(tab, prefix, "char_proj.weight", 2, C, nk * Cc, 0, QC_INIT_NORMAL, 0.02f, 0,
                                    PFIELD(char_proj_w))) != QIAO_OK ||
            (st = qc_table_add_dims(tab, prefix, "char_proj.bias", 1, C, 0, 0, QC_INIT_ZEROS, 0, QC_NO_DECAY,
                                    PFIELD(char_proj_b))) != QIAO_OK ||
            (st = qc_table_add_dims(tab, prefix, "gate.weight", 2, C, 2 * C, 0, QC_INIT_NORMAL, 0.02f, 0,
                                    PFIELD(gate_w))) != QIAO_OK ||
            (st = qc_table_add_dims(tab, prefix, "gate.bias", 1, C, 0, 0, QC_INIT_ZEROS, 0, QC_NO_DECAY,
                                    PFIELD(gate_b))) != QIAO_OK)
            return st;
    }
    if (cfg->arch == QE_TEXT_ARCH_HYBRID &&
        (st = qc_table_add_dims(tab, prefix, "tag_emb.weight", 2, QE_TEXT_N_TAGS, C, 0, QC_INIT_NORMAL, 0.02f, 0,
                                PFIELD(tag_emb))) != QIAO_OK)
        return st;
    char tp[QC_NAME_MAX];
    int n = snprintf(tp, sizeof tp, "%strunk.", prefix);
    if (n < 0 || (size_t)n >= sizeof tp) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "prefix '%s' too long", prefix);
    return nn_trunk_describe(tab, tp, &cfg->trunk, PFIELD(trunk));
}

static int64_t windows_total(const qe_text_config *cfg) {
    int64_t s = 0;
    for (int64_t i = 0; i < cfg->n_kernels; i++) s += cfg->k - cfg->char_kernels[i] + 1;
    return s;
}

qiao_status qe_text_describe_acts(qc_table *tab, const char *prefix, const qe_text_config *cfg, int64_t B,
                                  int64_t T, size_t field_base) {
    qiao_status st = check_cfg(cfg);
    if (st != QIAO_OK) return st;
    if (B < 1 || T < 1 || T > cfg->trunk.max_T)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "text encoder: batch %lld x %lld tokens (max_tokens %lld)",
                        (long long)B, (long long)T, (long long)cfg->trunk.max_T);
    const int64_t C = cfg->trunk.C, N = B * T, K = cfg->k, Cc = cfg->char_channels;
    if ((st = qc_table_add_dims(tab, prefix, "piece", 2, N, C, 0, QC_INIT_ZEROS, 0, 0, AFIELD(piece))) != QIAO_OK)
        return st;
    if (cfg->arch == QE_TEXT_ARCH_HYBRID && cfg->mix == QE_TEXT_MIX_GATE) {
        if ((st = qc_table_add_dims(tab, prefix, "chars", 3, N, K, cfg->char_dim, QC_INIT_ZEROS, 0, 0,
                                    AFIELD(chars))) != QIAO_OK)
            return st;
        for (int64_t i = 0; i < cfg->n_kernels; i++) {
            const int64_t To = K - cfg->char_kernels[i] + 1;
            const size_t o = (size_t)i * sizeof(float *);
            char name[64];
            snprintf(name, sizeof name, "conv.%lld", (long long)i);
            if ((st = qc_table_add_dims(tab, prefix, name, 3, N, To, Cc, QC_INIT_ZEROS, 0, 0, AFIELD(conv) + o)) !=
                QIAO_OK)
                return st;
            snprintf(name, sizeof name, "conv_gelu.%lld", (long long)i);
            if ((st = qc_table_add_dims(tab, prefix, name, 3, N, To, Cc, QC_INIT_ZEROS, 0, 0, AFIELD(conv_gelu) + o)) !=
                QIAO_OK)
                return st;
            snprintf(name, sizeof name, "pool.%lld", (long long)i);
            if ((st = qc_table_add_dims(tab, prefix, name, 2, N, Cc, 0, QC_INIT_ZEROS, 0, 0, AFIELD(pool) + o)) !=
                QIAO_OK)
                return st;
            snprintf(name, sizeof name, "pool_arg.%lld", (long long)i);
            if ((st = qc_table_add_dims(tab, prefix, name, 2, N, Cc, 0, QC_INIT_ZEROS, 0, 0, AFIELD(pool_arg) + o)) !=
                QIAO_OK)
                return st;
        }
        const int64_t mask_floats = (N * windows_total(cfg) + (int64_t)sizeof(float) - 1) / (int64_t)sizeof(float);
        if ((st = qc_table_add_dims(tab, prefix, "char_mask", 1, mask_floats, 0, 0, QC_INIT_ZEROS, 0, 0,
                                    AFIELD(char_mask))) != QIAO_OK ||
            (st = qc_table_add_dims(tab, prefix, "char_out", 2, N, C, 0, QC_INIT_ZEROS, 0, 0, AFIELD(char_out))) !=
                QIAO_OK ||
            (st = qc_table_add_dims(tab, prefix, "gate", 2, N, C, 0, QC_INIT_ZEROS, 0, 0, AFIELD(gate))) != QIAO_OK ||
            (st = qc_table_add_dims(tab, prefix, "fused", 2, N, C, 0, QC_INIT_ZEROS, 0, 0, AFIELD(fused))) != QIAO_OK)
            return st;
    }
    if ((cfg->arch == QE_TEXT_ARCH_HYBRID &&
         (st = qc_table_add_dims(tab, prefix, "tag_ids", 1, N, 0, 0, QC_INIT_ZEROS, 0, 0, AFIELD(tag_ids))) !=
             QIAO_OK) ||
        (st = qc_table_add_dims(tab, prefix, "x", 2, N, C, 0, QC_INIT_ZEROS, 0, 0, AFIELD(x))) != QIAO_OK)
        return st;
    nn_trunk_dims d = cfg->trunk;
    d.B = B;
    d.T = T;
    char tp[QC_NAME_MAX];
    int n = snprintf(tp, sizeof tp, "%strunk.", prefix);
    if (n < 0 || (size_t)n >= sizeof tp) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "prefix '%s' too long", prefix);
    return nn_trunk_describe_acts(tab, tp, &d, AFIELD(trunk));
}

qiao_status qe_text_check_input(const qe_text_input *in, const qe_text_config *cfg) {
    qiao_status st = check_cfg(cfg);
    if (st != QIAO_OK) return st;
    const bool imported = cfg->arch != QE_TEXT_ARCH_HYBRID;
    if (!in || !in->ids || (!imported && (!in->char_ids || !in->tags)) || !in->mask)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "text input: missing array");
    if (imported ? in->K != 0 : in->K != cfg->k)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "text input: %lld chars per token, the model expects k = %lld",
                        (long long)in->K, (long long)cfg->k);
    if (in->B < 1 || in->T < 1 || in->T > cfg->trunk.max_T)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "text input: batch %lld x %lld tokens (max_tokens %lld)",
                        (long long)in->B, (long long)in->T, (long long)cfg->trunk.max_T);
    const int64_t N = in->B * in->T;
    for (int64_t n = 0; n < N; n++) {
        if (in->ids[n] < 0 || in->ids[n] >= cfg->vocab)
            return qc_error(QIAO_ERR_INVALID_ARGUMENT, "text input: token %lld has piece id %d outside [0, %lld)",
                            (long long)n, in->ids[n], (long long)cfg->vocab);
        if (imported) continue;
        if (in->tags[n] >= QE_TEXT_N_TAGS)
            return qc_error(QIAO_ERR_INVALID_ARGUMENT, "text input: token %lld has tag %u outside [0, %d)",
                            (long long)n, in->tags[n], QE_TEXT_N_TAGS);
        for (int64_t j = 0; j < in->K; j++) {
            const int32_t c = in->char_ids[n * in->K + j];
            if (c < 0 || c >= cfg->char_vocab)
                return qc_error(QIAO_ERR_INVALID_ARGUMENT, "text input: token %lld has char id %d outside [0, %lld)",
                                (long long)n, c, (long long)cfg->char_vocab);
        }
    }
    return QIAO_OK;
}

/* ---- forward / backward ----------------------------------------------------- */

/* The window mask of kernel i starts at this byte offset of char_mask. */
static int64_t mask_offset(const qe_text_config *cfg, int64_t N, int64_t i) {
    int64_t off = 0;
    for (int64_t j = 0; j < i; j++) off += N * (cfg->k - cfg->char_kernels[j] + 1);
    return off;
}

void qe_text_forward(const qb_exec *ex, qe_text_acts *a, const qe_text_params *p, const qe_text_input *in,
                     const qe_text_config *cfg) {
    const int64_t B = in->B, T = in->T, N = B * T, C = cfg->trunk.C, K = cfg->k, Dc = cfg->char_dim;
    const int64_t Cc = cfg->char_channels, nk = cfg->n_kernels;
    nn_trunk_dims d = cfg->trunk;
    d.B = B;
    d.T = T;
    if (cfg->arch != QE_TEXT_ARCH_HYBRID) {
        /* x = piece_emb[id] (+ type_emb[0] for bert: one segment) */
        nn_embedding_forward(ex, a->x, in->ids, p->piece_emb, N, cfg->vocab, C);
        if (cfg->arch == QE_TEXT_ARCH_BERT)
            for (int64_t n = 0; n < N; n++) ex->ops->axpy(ex, a->x + n * C, 1.0f, p->type_emb, C);
        nn_trunk_forward(ex, &a->trunk, &p->trunk, a->x, in->mask, &d);
        return;
    }
    nn_embedding_forward(ex, a->piece, in->ids, p->piece_emb, N, cfg->vocab, C);
    const float *e = a->piece;
    if (cfg->mix == QE_TEXT_MIX_GATE) {
        nn_embedding_forward(ex, a->chars, in->char_ids, p->char_emb, N * K, cfg->char_vocab, Dc);
        uint8_t *masks = (uint8_t *)a->char_mask;
        for (int64_t i = 0; i < nk; i++) {
            const int64_t w = cfg->char_kernels[i], To = K - w + 1;
            uint8_t *m = masks + mask_offset(cfg, N, i);
            /* A window counts when it starts on a real character, so a
             * one-character token still has its width-3 window. */
            for (int64_t n = 0; n < N; n++)
                for (int64_t t = 0; t < To; t++) m[n * To + t] = in->char_ids[n * K + t] != 0;
            nn_conv1d_forward(ex, a->conv[i], a->chars, p->conv_w[i], p->conv_b[i], N, K, Dc, Cc, w, 1, 0);
            nn_gelu_forward(ex, a->conv_gelu[i], a->conv[i], N * To * Cc);
            nn_pool_max_forward(ex, a->pool[i], (int32_t *)a->pool_arg[i], a->conv_gelu[i], m, N, To, Cc);
        }
        /* char_out = [pool_0 ... pool_nk-1] W^T + b with W's column block i
         * used in place (ld nk*Cc), so the concatenation is never built. */
        for (int64_t i = 0; i < nk; i++)
            ex->ops->gemm(ex, false, true, N, C, Cc, 1.0f, a->pool[i], Cc, 0, p->char_proj_w + i * Cc, nk * Cc, 0,
                          i ? 1.0f : 0.0f, a->char_out, C, 0, 1);
        ex->ops->bias_forward(ex, a->char_out, p->char_proj_b, N, C);
        nn_gate_forward(ex, a->fused, a->gate, a->piece, a->char_out, p->gate_w, p->gate_b, N, C);
        e = a->fused;
    }
    int32_t *tags = (int32_t *)a->tag_ids;
    for (int64_t n = 0; n < N; n++) tags[n] = in->tags[n];
    nn_embedding_forward(ex, a->x, tags, p->tag_emb, N, QE_TEXT_N_TAGS, C);
    nn_residual_forward(ex, a->x, a->x, e, N * C);
    nn_trunk_forward(ex, &a->trunk, &p->trunk, a->x, in->mask, &d);
}

void qe_text_backward(const qb_exec *ex, qe_text_params *g, qe_text_acts *da, const float *demb, const float *dtokens,
                      const qe_text_acts *a, const qe_text_params *p, const qe_text_input *in,
                      const qe_text_config *cfg) {
    const int64_t B = in->B, T = in->T, N = B * T, C = cfg->trunk.C, K = cfg->k, Dc = cfg->char_dim;
    const int64_t Cc = cfg->char_channels, nk = cfg->n_kernels;
    nn_trunk_dims d = cfg->trunk;
    d.B = B;
    d.T = T;
    nn_trunk_backward(ex, da->x, &g->trunk, &da->trunk, demb, dtokens, &a->trunk, &p->trunk, a->x, in->mask, &d);
    if (cfg->arch != QE_TEXT_ARCH_HYBRID) {
        nn_embedding_backward(ex, g->piece_emb, da->x, in->ids, N, cfg->vocab, C);
        if (cfg->arch == QE_TEXT_ARCH_BERT)
            for (int64_t n = 0; n < N; n++) ex->ops->axpy(ex, g->type_emb, 1.0f, da->x + n * C, C);
        return;
    }
    nn_embedding_backward(ex, g->tag_emb, da->x, (const int32_t *)a->tag_ids, N, QE_TEXT_N_TAGS, C);
    if (cfg->mix != QE_TEXT_MIX_GATE) {
        nn_embedding_backward(ex, g->piece_emb, da->x, in->ids, N, cfg->vocab, C);
        return;
    }
    /* da->gate is free (g has no upstream gradient): the gate's scratch. */
    nn_gate_backward(ex, da->piece, da->char_out, g->gate_w, g->gate_b, da->gate, da->x, a->piece, a->char_out,
                     a->gate, p->gate_w, N, C);
    nn_embedding_backward(ex, g->piece_emb, da->piece, in->ids, N, cfg->vocab, C);
    ex->ops->bias_backward(ex, g->char_proj_b, da->char_out, N, C);
    for (int64_t i = 0; i < nk; i++) {
        const int64_t w = cfg->char_kernels[i], To = K - w + 1;
        /* dpool_i += dchar W_i;  dW_i += dchar^T pool_i */
        ex->ops->gemm(ex, false, false, N, Cc, C, 1.0f, da->char_out, C, 0, p->char_proj_w + i * Cc, nk * Cc, 0,
                      1.0f, da->pool[i], Cc, 0, 1);
        ex->ops->gemm(ex, true, false, C, Cc, N, 1.0f, da->char_out, C, 0, a->pool[i], Cc, 0, 1.0f,
                      g->char_proj_w + i * Cc, nk * Cc, 0, 1);
        nn_pool_max_backward(ex, da->conv_gelu[i], da->pool[i], (const int32_t *)a->pool_arg[i], N, To, Cc);
        nn_gelu_backward(ex, da->conv[i], a->conv[i], da->conv_gelu[i], N * To * Cc);
        nn_conv1d_backward(ex, da->chars, g->conv_w[i], g->conv_b[i], da->conv[i], a->chars, p->conv_w[i], N, K, Dc,
                           Cc, w, 1, 0);
    }
    nn_embedding_backward(ex, g->char_emb, da->chars, in->char_ids, N * K, cfg->char_vocab, Dc);
}
