/* The image encoder: a linear patch embedding in front of the shared trunk. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "modalities/image/encoder.h"

/* Bounds that keep every derived size (weights, the (B, H, P, P) attention
 * matrix) far from overflow and memory exhaustion; a config beyond them is a
 * broken file, not a model anyone trains on two cores. */
#define QE_IMAGE_MAX_SIZE 8192   /* as qiao_image_preprocess */
#define QE_IMAGE_MAX_TOKENS 4096
#define QE_IMAGE_MAX_WIDTH 8192
#define QE_IMAGE_MAX_HEADS 256
#define QE_IMAGE_MAX_MLP 65536
#define QE_IMAGE_MAX_EMBED 65536

static const char *const kKeys[] = {"image_size", "patch", "width", "layers", "heads",
                                    "mlp",        "pool",  "arch",  "eps",    "act"};

qiao_status qe_image_config_from_json(const cJSON *obj, int64_t embed_dim, qe_image_config *cfg) {
    if (!obj || !cfg) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "image config: NULL argument");
    if (!cJSON_IsObject(obj)) return qc_error(QIAO_ERR_FORMAT, "image config: key 'image' must be an object");
    if (embed_dim < 1 || embed_dim > QE_IMAGE_MAX_EMBED)
        return qc_error(QIAO_ERR_FORMAT, "image config: key 'embed_dim' must be in [1, %d] (got %lld)",
                        QE_IMAGE_MAX_EMBED, (long long)embed_dim);
    for (const cJSON *it = obj->child; it; it = it->next) {
        bool known = false;
        for (size_t k = 0; k < sizeof kKeys / sizeof kKeys[0]; k++)
            if (it->string && strcmp(it->string, kKeys[k]) == 0) known = true;
        if (!known)
            return qc_error(QIAO_ERR_FORMAT, "image config: unknown key '%s'", it->string ? it->string : "");
    }
    int64_t S, p, C, L, H, F;
    qiao_status st;
    if ((st = qc_json_int(obj, "image", "image_size", 1, QE_IMAGE_MAX_SIZE, &S)) != QIAO_OK ||
        (st = qc_json_int(obj, "image", "patch", 1, QE_IMAGE_MAX_SIZE, &p)) != QIAO_OK ||
        (st = qc_json_int(obj, "image", "width", 1, QE_IMAGE_MAX_WIDTH, &C)) != QIAO_OK ||
        (st = qc_json_int(obj, "image", "layers", 1, NN_MAX_LAYERS, &L)) != QIAO_OK ||
        (st = qc_json_int(obj, "image", "heads", 1, QE_IMAGE_MAX_HEADS, &H)) != QIAO_OK ||
        (st = qc_json_int(obj, "image", "mlp", 1, QE_IMAGE_MAX_MLP, &F)) != QIAO_OK)
        return st;
    if (S % p)
        return qc_error(QIAO_ERR_FORMAT, "image config: key 'patch' (%lld) must divide image_size (%lld)",
                        (long long)p, (long long)S);
    if (C % H)
        return qc_error(QIAO_ERR_FORMAT, "image config: key 'heads' (%lld) must divide width (%lld)", (long long)H,
                        (long long)C);
    const int64_t g = S / p, P = g * g;
    if (P > QE_IMAGE_MAX_TOKENS)
        return qc_error(QIAO_ERR_FORMAT,
                        "image config: key 'patch' gives (image_size / patch)^2 = %lld tokens, more than %d",
                        (long long)P, QE_IMAGE_MAX_TOKENS);
    static const char *const archs[] = {"qiao", "clip"}, *const acts[] = {"gelu", "quick_gelu"};
    int arch, act;
    if ((st = qc_json_choice(obj, "image", "arch", archs, 2, 0, &arch)) != QIAO_OK) return st;
    const bool clip = arch == 1;
    if (!clip && (cJSON_GetObjectItemCaseSensitive(obj, "eps") || cJSON_GetObjectItemCaseSensitive(obj, "act")))
        return qc_error(QIAO_ERR_FORMAT, "image config: keys 'eps' and 'act' belong to \"arch\": \"clip\"");
    if ((st = qc_json_choice(obj, "image", "act", acts, 2, clip ? NN_ACT_QUICK_GELU : NN_ACT_GELU, &act)) != QIAO_OK)
        return st;
    float eps = 0.0f; /* qiao's own: NN_LAYERNORM_EPS */
    if (clip && (st = qc_json_float(obj, "image", "eps", 1e-30, 0.1, 1e-5f, &eps)) != QIAO_OK) return st;
    nn_pool pool;
    if ((st = nn_pool_from_json(obj, "image", clip ? NN_POOL_FIRST : NN_POOL_MEAN, &pool)) != QIAO_OK) return st;
    if (clip && pool != NN_POOL_FIRST)
        return qc_error(QIAO_ERR_FORMAT, "image config: a clip image encoder pools \"first\" (its class token)");
    if (!clip && pool == NN_POOL_LAST)
        return qc_error(QIAO_ERR_FORMAT, "image config: key 'pool' must be \"mean\", \"max\" or \"first\"");
    qe_image_config c = {0};
    c.image_size = S;
    c.patch = p;
    c.patch_dim = 3 * p * p;
    c.tokens = P;
    c.class_token = clip;
    const int64_t T = P + (clip ? 1 : 0);
    c.trunk = (nn_trunk_dims){.B = 0,
                              .T = T,
                              .C = C,
                              .F = F,
                              .H = H,
                              .L = L,
                              .max_T = T,
                              .D = embed_dim,
                              .pool = pool,
                              .eps = eps,
                              .ln_in = clip,
                              .proj = clip ? NN_PROJ_NOBIAS : NN_PROJ_BIAS,
                              .act = (nn_act)act};
    *cfg = c;
    return QIAO_OK;
}

#define PFIELD(m) (field_base + offsetof(qe_image_params, m))
#define AFIELD(m) (field_base + offsetof(qe_image_acts, m))

qiao_status qe_image_describe(qc_table *tab, const char *prefix, const qe_image_config *cfg, size_t field_base) {
    if (!tab || !prefix || !cfg) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "image encoder: NULL argument");
    const int64_t K = cfg->patch_dim, C = cfg->trunk.C;
    /* Fan-in scaled (LeCun) normal, std 1/sqrt(3 p^2), as big_vision's ViT
     * initializes its patch embedding, rather than the trunk's fixed 0.02:
     * the patch vectors are standardized per channel, so this starts every
     * token at about unit variance whatever the patch size, whereas 0.02
     * would tie the token scale to p (std 0.28 at p = 8, 0.55 at p = 16)
     * and so change the balance against the positions with the config. */
    const float std = 1.0f / sqrtf((float)K);
    qiao_status st;
    if ((st = qc_table_add_dims(tab, prefix, "patch_embed.weight", 2, C, K, 0, QC_INIT_NORMAL, std, 0,
                                PFIELD(patch_w))) != QIAO_OK ||
        (st = qc_table_add_dims(tab, prefix, "patch_embed.bias", 1, C, 0, 0, QC_INIT_ZEROS, 0, QC_NO_DECAY,
                                PFIELD(patch_b))) != QIAO_OK ||
        (cfg->class_token && (st = qc_table_add_dims(tab, prefix, "class_emb", 1, C, 0, 0, QC_INIT_NORMAL, 0.02f,
                                                     QC_NO_DECAY, PFIELD(cls))) != QIAO_OK))
        return st;
    char tp[QC_NAME_MAX];
    int n = snprintf(tp, sizeof tp, "%strunk.", prefix);
    if (n < 0 || (size_t)n >= sizeof tp)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "tensor prefix '%strunk.' too long", prefix);
    return nn_trunk_describe(tab, tp, &cfg->trunk, PFIELD(trunk));
}

qiao_status qe_image_describe_acts(qc_table *tab, const char *prefix, const qe_image_config *cfg, int64_t B,
                                   int64_t T, size_t field_base) {
    if (!tab || !prefix || !cfg) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "image encoder: NULL argument");
    if (B < 1 || T != cfg->tokens)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT,
                        "image encoder: need B >= 1 and T = %lld patches (images have no padding); got B=%lld T=%lld",
                        (long long)cfg->tokens, (long long)B, (long long)T);
    nn_trunk_dims d = cfg->trunk;
    d.B = B;
    d.T = d.max_T;
    qiao_status st = qc_table_add_dims(tab, prefix, "x", 2, B * d.T, d.C, 0, QC_INIT_ZEROS, 0, 0, AFIELD(x));
    if (st != QIAO_OK) return st;
    char tp[QC_NAME_MAX];
    int n = snprintf(tp, sizeof tp, "%strunk.", prefix);
    if (n < 0 || (size_t)n >= sizeof tp)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "tensor prefix '%strunk.' too long", prefix);
    return nn_trunk_describe_acts(tab, tp, &d, AFIELD(trunk));
}

static nn_trunk_dims batch_dims(const qe_image_config *cfg, int64_t B) {
    nn_trunk_dims d = cfg->trunk;
    d.B = B;
    d.T = d.max_T;
    return d;
}

void qe_image_forward(const qb_exec *ex, qe_image_acts *a, const qe_image_params *p, const qe_image_input *in,
                      const qe_image_config *cfg) {
    const nn_trunk_dims d = batch_dims(cfg, in->B);
    const int64_t P = cfg->tokens, K = cfg->patch_dim, C = d.C;
    if (!cfg->class_token) {
        nn_linear_forward(ex, a->x, in->patches, p->patch_w, p->patch_b, d.B * P, K, C);
    } else {
        /* each image's rows: the class vector, then its P patches */
        for (int64_t b = 0; b < d.B; b++) {
            ex->ops->copy(ex, a->x + b * d.T * C, p->cls, (size_t)C * sizeof(float));
            nn_linear_forward(ex, a->x + (b * d.T + 1) * C, in->patches + b * P * K, p->patch_w, p->patch_b, P, K, C);
        }
    }
    nn_trunk_forward(ex, &a->trunk, &p->trunk, a->x, NULL, &d);
}

void qe_image_backward(const qb_exec *ex, qe_image_params *g, qe_image_acts *da, const float *demb,
                       const float *dtokens, const qe_image_acts *a, const qe_image_params *p, const qe_image_input *in,
                       const qe_image_config *cfg) {
    const nn_trunk_dims d = batch_dims(cfg, in->B);
    /* da->x is zero on entry (the caller's contract), so the trunk's
     * accumulated dx is exactly dL/dx. */
    nn_trunk_backward(ex, da->x, &g->trunk, &da->trunk, demb, dtokens, &a->trunk, &p->trunk, a->x, NULL, &d);
    const int64_t P = cfg->tokens, K = cfg->patch_dim, C = d.C;
    if (!cfg->class_token) {
        nn_linear_backward(ex, NULL, g->patch_w, g->patch_b, da->x, in->patches, p->patch_w, d.B * P, K, C);
        return;
    }
    for (int64_t b = 0; b < d.B; b++) {
        ex->ops->axpy(ex, g->cls, 1.0f, da->x + b * d.T * C, C);
        nn_linear_backward(ex, NULL, g->patch_w, g->patch_b, da->x + (b * d.T + 1) * C, in->patches + b * P * K,
                           p->patch_w, P, K, C);
    }
}
