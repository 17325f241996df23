/* The audio encoder: a strided conv1d stem over log-mel frames in front of
 * the shared trunk. See encoder.h for the equations and the mask rule. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "modalities/audio/encoder.h"

/* Bounds that keep every derived size (weights, the (B, H, T, T) attention
 * matrix) far from overflow and memory exhaustion; a config beyond them is a
 * broken file, not a model anyone trains. */
#define QE_AUDIO_MAX_FRAMES 65536 /* 11 minutes at 100 frames per second */
#define QE_AUDIO_MAX_TOKENS 4096
#define QE_AUDIO_MAX_KERNEL 31
#define QE_AUDIO_MAX_STRIDE 16
#define QE_AUDIO_MAX_WIDTH 8192
#define QE_AUDIO_MAX_HEADS 256
#define QE_AUDIO_MAX_MLP 65536
#define QE_AUDIO_MAX_EMBED 65536

static const char *const kKeys[] = {"n_mels", "width", "stem_kernels", "stem_strides", "layers",
                                    "heads",  "mlp",   "max_frames",   "norm_mean",    "norm_std", "pool"};

/* A list of 1..QE_AUDIO_MAX_STEM integers in [lo, hi]; *n receives its length. */
static qiao_status get_list(const cJSON *obj, const char *key, int64_t lo, int64_t hi, int64_t *vals, int64_t *n) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!it) return qc_error(QIAO_ERR_FORMAT, "audio config: missing key '%s'", key);
    if (!cJSON_IsArray(it))
        return qc_error(QIAO_ERR_FORMAT, "audio config: key '%s' must be a list of integers", key);
    int size = cJSON_GetArraySize(it);
    if (size < 1 || size > QE_AUDIO_MAX_STEM)
        return qc_error(QIAO_ERR_FORMAT, "audio config: key '%s' must list 1 to %d stem layers (got %d)", key,
                        QE_AUDIO_MAX_STEM, size);
    int64_t i = 0;
    for (const cJSON *e = it->child; e; e = e->next, i++) {
        qiao_status st = qc_json_int_value(e, "audio", key, lo, hi, &vals[i]);
        if (st != QIAO_OK) return st;
    }
    *n = i;
    return QIAO_OK;
}

static int64_t tokens_through(const int64_t *strides, int64_t n, int64_t frames) {
    int64_t t = frames;
    for (int64_t i = 0; i < n; i++) t = (t + strides[i] - 1) / strides[i];
    return t;
}

int64_t qe_audio_tokens(const qe_audio_config *cfg, int64_t frames) {
    return frames <= 0 ? 0 : tokens_through(cfg->stem_strides, cfg->n_stem, frames);
}

qiao_status qe_audio_config_from_json(const cJSON *obj, int64_t embed_dim, qe_audio_config *cfg) {
    if (!obj || !cfg) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "audio config: NULL argument");
    if (!cJSON_IsObject(obj)) return qc_error(QIAO_ERR_FORMAT, "audio config: key 'audio' must be an object");
    if (embed_dim < 1 || embed_dim > QE_AUDIO_MAX_EMBED)
        return qc_error(QIAO_ERR_FORMAT, "audio config: key 'embed_dim' must be in [1, %d] (got %lld)",
                        QE_AUDIO_MAX_EMBED, (long long)embed_dim);
    for (const cJSON *it = obj->child; it; it = it->next) {
        bool known = false;
        for (size_t k = 0; k < sizeof kKeys / sizeof kKeys[0]; k++)
            if (it->string && strcmp(it->string, kKeys[k]) == 0) known = true;
        if (!known)
            return qc_error(QIAO_ERR_FORMAT, "audio config: unknown key '%s'", it->string ? it->string : "");
    }
    qe_audio_config c = {0};
    int64_t C, L, H, F, nk, ns;
    qiao_status st;
    if ((st = qc_json_int(obj, "audio", "n_mels", 1, QE_AUDIO_MAX_MELS, &c.n_mels)) != QIAO_OK ||
        (st = qc_json_int(obj, "audio", "width", 1, QE_AUDIO_MAX_WIDTH, &C)) != QIAO_OK ||
        (st = get_list(obj, "stem_kernels", 1, QE_AUDIO_MAX_KERNEL, c.stem_kernels, &nk)) != QIAO_OK ||
        (st = get_list(obj, "stem_strides", 1, QE_AUDIO_MAX_STRIDE, c.stem_strides, &ns)) != QIAO_OK ||
        (st = qc_json_int(obj, "audio", "layers", 1, NN_MAX_LAYERS, &L)) != QIAO_OK ||
        (st = qc_json_int(obj, "audio", "heads", 1, QE_AUDIO_MAX_HEADS, &H)) != QIAO_OK ||
        (st = qc_json_int(obj, "audio", "mlp", 1, QE_AUDIO_MAX_MLP, &F)) != QIAO_OK ||
        (st = qc_json_int(obj, "audio", "max_frames", 1, QE_AUDIO_MAX_FRAMES, &c.max_frames)) != QIAO_OK ||
        (st = qc_json_float(obj, "audio", "norm_mean", -1e4, 1e4, -4.0f, &c.norm_mean)) != QIAO_OK ||
        (st = qc_json_float(obj, "audio", "norm_std", 1e-6, 1e4, 4.0f, &c.norm_std)) != QIAO_OK)
        return st;
    if (nk != ns)
        return qc_error(QIAO_ERR_FORMAT, "audio config: key 'stem_strides' lists %lld layers but stem_kernels %lld",
                        (long long)ns, (long long)nk);
    for (int64_t i = 0; i < nk; i++)
        if (c.stem_kernels[i] % 2 == 0)
            return qc_error(QIAO_ERR_FORMAT,
                            "audio config: key 'stem_kernels' must hold odd widths (centred windows; got %lld)",
                            (long long)c.stem_kernels[i]);
    if (C % H)
        return qc_error(QIAO_ERR_FORMAT, "audio config: key 'heads' (%lld) must divide width (%lld)", (long long)H,
                        (long long)C);
    c.n_stem = nk;
    const int64_t T = tokens_through(c.stem_strides, nk, c.max_frames);
    if (T > QE_AUDIO_MAX_TOKENS)
        return qc_error(QIAO_ERR_FORMAT,
                        "audio config: key 'max_frames' gives %lld tokens after the stem, more than %d",
                        (long long)T, QE_AUDIO_MAX_TOKENS);
    nn_pool pool;
    if ((st = nn_pool_from_json(obj, "audio", NN_POOL_MEAN, &pool)) != QIAO_OK) return st;
    c.trunk = (nn_trunk_dims){.B = 0, .T = T, .C = C, .F = F, .H = H, .L = L, .max_T = T, .D = embed_dim, .pool = pool};
    *cfg = c;
    return QIAO_OK;
}

#define PFIELD(m) (field_base + offsetof(qe_audio_params, m))
#define AFIELD(m) (field_base + offsetof(qe_audio_acts, m))

static qiao_status trunk_prefix(char *tp, size_t cap, const char *prefix) {
    int n = snprintf(tp, cap, "%strunk.", prefix);
    if (n < 0 || (size_t)n >= cap)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "tensor prefix '%strunk.' too long", prefix);
    return QIAO_OK;
}

qiao_status qe_audio_describe(qc_table *tab, const char *prefix, const qe_audio_config *cfg, size_t field_base) {
    if (!tab || !prefix || !cfg) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "audio encoder: NULL argument");
    if (cfg->n_stem < 1 || cfg->n_stem > QE_AUDIO_MAX_STEM)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "audio encoder: %lld stem layers", (long long)cfg->n_stem);
    const int64_t C = cfg->trunk.C;
    qiao_status st;
    for (int64_t i = 0; i < cfg->n_stem; i++) {
        const int64_t cin = i ? C : cfg->n_mels, k = cfg->stem_kernels[i];
        char wn[64], bn[64];
        snprintf(wn, sizeof wn, "stem.%lld.weight", (long long)i);
        snprintf(bn, sizeof bn, "stem.%lld.bias", (long long)i);
        /* Fan-in scaled rather than the trunk's 0.02: the normalized mel is
         * O(1), and 0.02 would shrink it by ~sqrt(fan_in) * 0.02 per layer,
         * leaving the stem's output far below the positions at the start. */
        const float std = 1.0f / sqrtf((float)(cin * k));
        if ((st = qc_table_add_dims(tab, prefix, wn, 3, C, cin, k, QC_INIT_NORMAL, std, 0,
                                    PFIELD(stem_w) + (size_t)i * sizeof(float *))) != QIAO_OK ||
            (st = qc_table_add_dims(tab, prefix, bn, 1, C, 0, 0, QC_INIT_ZEROS, 0, QC_NO_DECAY,
                                    PFIELD(stem_b) + (size_t)i * sizeof(float *))) != QIAO_OK)
            return st;
    }
    char tp[QC_NAME_MAX];
    if ((st = trunk_prefix(tp, sizeof tp, prefix)) != QIAO_OK) return st;
    return nn_trunk_describe(tab, tp, &cfg->trunk, PFIELD(trunk));
}

qiao_status qe_audio_describe_acts(qc_table *tab, const char *prefix, const qe_audio_config *cfg, int64_t B,
                                   int64_t T, size_t field_base) {
    if (!tab || !prefix || !cfg) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "audio encoder: NULL argument");
    if (B < 1 || T < 1 || T > cfg->max_frames || cfg->n_stem < 1 || cfg->n_stem > QE_AUDIO_MAX_STEM)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT,
                        "audio encoder: need B >= 1 and 1 <= T <= max_frames = %lld input frames; got B=%lld T=%lld",
                        (long long)cfg->max_frames, (long long)B, (long long)T);
    const int64_t C = cfg->trunk.C;
    qiao_status st;
    if ((st = qc_table_add_dims(tab, prefix, "shift", 1, cfg->n_mels, 0, 0, QC_INIT_ZEROS, 0, 0, AFIELD(shift))) !=
            QIAO_OK ||
        (st = qc_table_add_dims(tab, prefix, "xn", 2, B * T, cfg->n_mels, 0, QC_INIT_ZEROS, 0, 0, AFIELD(xn))) !=
            QIAO_OK)
        return st;
    int64_t t = T;
    for (int64_t i = 0; i < cfg->n_stem; i++) {
        t = (t + cfg->stem_strides[i] - 1) / cfg->stem_strides[i];
        char cn[64], an[64];
        snprintf(cn, sizeof cn, "stem.%lld.conv", (long long)i);
        snprintf(an, sizeof an, "stem.%lld.gelu", (long long)i);
        if ((st = qc_table_add_dims(tab, prefix, cn, 2, B * t, C, 0, QC_INIT_ZEROS, 0, 0,
                                    AFIELD(conv) + (size_t)i * sizeof(float *))) != QIAO_OK ||
            (st = qc_table_add_dims(tab, prefix, an, 2, B * t, C, 0, QC_INIT_ZEROS, 0, 0,
                                    AFIELD(act) + (size_t)i * sizeof(float *))) != QIAO_OK)
            return st;
    }
    /* uint8 (B, t) packed into floats. */
    if ((st = qc_table_add_dims(tab, prefix, "mask", 1, (B * t + 3) / 4, 0, 0, QC_INIT_ZEROS, 0, 0, AFIELD(mask))) !=
        QIAO_OK)
        return st;
    nn_trunk_dims d = cfg->trunk;
    d.B = B;
    d.T = t;
    char tp[QC_NAME_MAX];
    if ((st = trunk_prefix(tp, sizeof tp, prefix)) != QIAO_OK) return st;
    return nn_trunk_describe_acts(tab, tp, &d, AFIELD(trunk));
}

/* Zeroes the rows t of x (B, T, C) whose input frame t * stride is padding
 * (mask (B, Tm), host). Runs of padding cost one memory op each. */
static void zero_padded(const qb_exec *ex, float *x, const uint8_t *mask, int64_t B, int64_t Tm, int64_t T,
                        int64_t stride, int64_t C) {
    if (!mask) return;
    for (int64_t b = 0; b < B; b++) {
        const uint8_t *m = mask + b * Tm;
        for (int64_t t = 0; t < T;) {
            if (m[t * stride]) {
                t++;
                continue;
            }
            int64_t t0 = t;
            while (t < T && !m[t * stride]) t++;
            ex->ops->zero(ex, x + (b * T + t0) * C, (size_t)((t - t0) * C) * sizeof(float));
        }
    }
}

/* Writes the trunk's mask (B, T) in backend memory: token t is real iff input
 * frame t * stride is. */
static void write_mask(const qb_exec *ex, uint8_t *dst, const uint8_t *mask, int64_t B, int64_t Tm, int64_t T,
                       int64_t stride) {
    static const uint8_t ones[256] = {
#define Q1 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1
#define Q16 Q1, Q1, Q1, Q1, Q1, Q1, Q1, Q1, Q1, Q1, Q1, Q1, Q1, Q1, Q1, Q1
        Q16
#undef Q16
#undef Q1
    };
    for (int64_t b = 0; b < B; b++) {
        const uint8_t *m = mask + b * Tm;
        for (int64_t t = 0; t < T;) {
            const uint8_t v = m[t * stride] ? 1 : 0;
            int64_t t0 = t;
            while (t < T && (m[t * stride] ? 1 : 0) == v && t - t0 < (int64_t)sizeof ones) t++;
            if (v)
                ex->ops->to_device(ex, dst + b * T + t0, ones, (size_t)(t - t0));
            else
                ex->ops->zero(ex, dst + b * T + t0, (size_t)(t - t0));
        }
    }
}

/* Lengths T_0 = Tm, T_i and cumulative strides S_0 = 1, S_i of the stem. */
static void stem_dims(const qe_audio_config *cfg, int64_t Tm, int64_t *Ts, int64_t *Ss) {
    Ts[0] = Tm;
    Ss[0] = 1;
    for (int64_t i = 0; i < cfg->n_stem; i++) {
        const int64_t s = cfg->stem_strides[i];
        Ts[i + 1] = (Ts[i] + s - 1) / s;
        Ss[i + 1] = Ss[i] * s;
    }
}

void qe_audio_forward(const qb_exec *ex, qe_audio_acts *a, const qe_audio_params *p, const qe_audio_input *in,
                      const qe_audio_config *cfg) {
    const int64_t B = in->B, Tm = in->Tm, M = cfg->n_mels, C = cfg->trunk.C, S = cfg->n_stem;
    int64_t Ts[QE_AUDIO_MAX_STEM + 1], Ss[QE_AUDIO_MAX_STEM + 1];
    stem_dims(cfg, Tm, Ts, Ss);

    float shift[QE_AUDIO_MAX_MELS];
    for (int64_t c = 0; c < M; c++) shift[c] = -cfg->norm_mean / cfg->norm_std;
    ex->ops->to_device(ex, a->shift, shift, (size_t)M * sizeof(float));
    ex->ops->copy(ex, a->xn, in->mel, (size_t)(B * Tm * M) * sizeof(float));
    ex->ops->scale(ex, a->xn, 1.0f / cfg->norm_std, B * Tm * M);
    ex->ops->bias_forward(ex, a->xn, a->shift, B * Tm, M);
    zero_padded(ex, a->xn, in->mask, B, Tm, Tm, 1, M);

    const float *x = a->xn;
    for (int64_t i = 0; i < S; i++) {
        const int64_t cin = i ? C : M, k = cfg->stem_kernels[i];
        nn_conv1d_forward(ex, a->conv[i], x, p->stem_w[i], p->stem_b[i], B, Ts[i], cin, C, k, cfg->stem_strides[i],
                          k / 2);
        nn_gelu_forward(ex, a->act[i], a->conv[i], B * Ts[i + 1] * C);
        zero_padded(ex, a->act[i], in->mask, B, Tm, Ts[i + 1], Ss[i + 1], C);
        x = a->act[i];
    }
    const uint8_t *mask = NULL;
    if (in->mask) {
        write_mask(ex, (uint8_t *)a->mask, in->mask, B, Tm, Ts[S], Ss[S]);
        mask = (const uint8_t *)a->mask;
    }
    nn_trunk_dims d = cfg->trunk;
    d.B = B;
    d.T = Ts[S];
    nn_trunk_forward(ex, &a->trunk, &p->trunk, x, mask, &d);
}

void qe_audio_backward(const qb_exec *ex, qe_audio_params *g, qe_audio_acts *da, const float *demb,
                       const float *dtokens, const qe_audio_acts *a, const qe_audio_params *p, const qe_audio_input *in,
                       const qe_audio_config *cfg) {
    const int64_t B = in->B, Tm = in->Tm, M = cfg->n_mels, C = cfg->trunk.C, S = cfg->n_stem;
    int64_t Ts[QE_AUDIO_MAX_STEM + 1], Ss[QE_AUDIO_MAX_STEM + 1];
    stem_dims(cfg, Tm, Ts, Ss);
    nn_trunk_dims d = cfg->trunk;
    d.B = B;
    d.T = Ts[S];
    const uint8_t *mask = in->mask ? (const uint8_t *)a->mask : NULL;
    /* da->act[S-1] is zero on entry (the caller's contract), so the trunk's
     * accumulated dx is exactly dL/dx. */
    nn_trunk_backward(ex, da->act[S - 1], &g->trunk, &da->trunk, demb, dtokens, &a->trunk, &p->trunk, a->act[S - 1],
                      mask, &d);
    for (int64_t i = S - 1; i >= 0; i--) {
        const int64_t cin = i ? C : M, k = cfg->stem_kernels[i];
        /* The forward multiplied these rows by 0: no gradient passes them. */
        zero_padded(ex, da->act[i], in->mask, B, Tm, Ts[i + 1], Ss[i + 1], C);
        nn_gelu_backward(ex, da->conv[i], a->conv[i], da->act[i], B * Ts[i + 1] * C);
        nn_conv1d_backward(ex, i ? da->act[i - 1] : NULL, g->stem_w[i], g->stem_b[i], da->conv[i],
                           i ? a->act[i - 1] : a->xn, p->stem_w[i], B, Ts[i], cin, C, k, cfg->stem_strides[i],
                           k / 2);
    }
}
