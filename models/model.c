/* models/model.c - the model container (see model.h). */
#include "models/model.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/safetensors.h"
#include "models/tower.h"
#include "tokenizers/tokenizer.h"

/* Config files are a few hundred bytes; anything this large is not one. */
#define QMOD_CONFIG_MAX ((size_t)1 << 20)
#define QMOD_MSG_MAX 512

static const char *const k_pair_names[QMOD_N_PAIRS] = {
    "logit_scale.text_image", "logit_scale.audio_text", "logit_scale.audio_image"};

/* Re-raises the current thread-local error with `what` in front, so an
 * encoder's "key text.width ..." becomes "m.safetensors: qiao.config: ...". */
static qiao_status rewrap(qiao_status st, const char *what) {
    char msg[QMOD_MSG_MAX];
    snprintf(msg, sizeof msg, "%s", qiao_last_error());
    return qc_error(st, "%s: %s", what, msg);
}

static const qmod_modality k_pair_towers[QMOD_N_PAIRS][2] = {
    {QMOD_TEXT, QMOD_IMAGE}, {QMOD_AUDIO, QMOD_TEXT}, {QMOD_AUDIO, QMOD_IMAGE}};

void qmod_pair_towers(int pair, qmod_modality *a, qmod_modality *b) {
    *a = k_pair_towers[pair][0];
    *b = k_pair_towers[pair][1];
}

bool qmod_has_pair(const qmod_config *cfg, int pair) {
    return pair >= 0 && pair < QMOD_N_PAIRS && qmod_has_tower(cfg, k_pair_towers[pair][0]) &&
           qmod_has_tower(cfg, k_pair_towers[pair][1]);
}

static const char *const k_head_keys[] = {"kind",       "tower", "input",       "hidden",    "classes", "labels",
                                          "label_text", "scale", "temperature", "threshold", "oos_label",
                                          "multi_label", "context"};

/* "labels" (K distinct non-empty strings) and "label_text" ({lang: K
 * strings}) of a head with K classes. */
static qiao_status check_labels(const cJSON *o, const char *what, const char *name, int64_t K) {
    const cJSON *labels = cJSON_GetObjectItemCaseSensitive(o, "labels");
    if (labels) {
        if (!cJSON_IsArray(labels) || cJSON_GetArraySize(labels) != K)
            return qc_error(QIAO_ERR_FORMAT, "%s: heads.%s.labels must be an array of %lld strings (one per class)",
                            what, name, (long long)K);
        for (const cJSON *a = labels->child; a; a = a->next) {
            if (!cJSON_IsString(a) || !a->valuestring[0] || strlen(a->valuestring) >= QMOD_NAME_MAX * 4)
                return qc_error(QIAO_ERR_FORMAT, "%s: heads.%s.labels holds an empty, overlong or non-string entry",
                                what, name);
            for (const cJSON *b = labels->child; b != a; b = b->next)
                if (strcmp(a->valuestring, b->valuestring) == 0)
                    return qc_error(QIAO_ERR_FORMAT, "%s: heads.%s.labels names \"%s\" twice", what, name,
                                    a->valuestring);
        }
    }
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(o, "label_text");
    if (text) {
        if (!cJSON_IsObject(text))
            return qc_error(QIAO_ERR_FORMAT, "%s: heads.%s.label_text must map languages to arrays", what, name);
        for (const cJSON *l = text->child; l; l = l->next) {
            if (!cJSON_IsArray(l) || cJSON_GetArraySize(l) != K)
                return qc_error(QIAO_ERR_FORMAT, "%s: heads.%s.label_text.%s must be an array of %lld strings", what,
                                name, l->string, (long long)K);
            for (const cJSON *a = l->child; a; a = a->next)
                if (!cJSON_IsString(a) || strlen(a->valuestring) >= QMOD_NAME_MAX * 4)
                    return qc_error(QIAO_ERR_FORMAT, "%s: heads.%s.label_text.%s holds a non-string or overlong entry",
                                    what, name, l->string);
        }
    }
    return QIAO_OK;
}

static bool head_name_ok(const char *s) {
    if (!s || !(*s >= 'a' && *s <= 'z') || strlen(s) >= QMOD_NAME_MAX) return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_')) return false;
    return true;
}

/* One entry of "heads" (model.h, qmod_head_config); `c` has its towers parsed. */
static qiao_status parse_head(const cJSON *o, const qmod_config *c, const char *what, qmod_head_config *h) {
    const char *name = o->string;
    memset(h, 0, sizeof *h);
    if (!head_name_ok(name))
        return qc_error(QIAO_ERR_FORMAT,
                        "%s: head name \"%s\" must be lowercase letters, digits and _, starting with a letter, "
                        "at most %d bytes", what, name ? name : "", QMOD_NAME_MAX - 1);
    snprintf(h->name, sizeof h->name, "%s", name);
    if (!cJSON_IsObject(o)) return qc_error(QIAO_ERR_FORMAT, "%s: heads.%s must be an object", what, name);
    for (const cJSON *it = o->child; it; it = it->next) {
        bool known = false;
        for (size_t i = 0; i < sizeof k_head_keys / sizeof k_head_keys[0]; i++)
            known = known || (it->string && strcmp(it->string, k_head_keys[i]) == 0);
        if (!known) return qc_error(QIAO_ERR_FORMAT, "%s: unknown key heads.%s.%s", what, name, it->string);
    }
    const cJSON *kind = cJSON_GetObjectItemCaseSensitive(o, "kind");
    if (!cJSON_IsString(kind) || strcmp(kind->valuestring, "mlp") != 0)
        return qc_error(QIAO_ERR_FORMAT, "%s: heads.%s.kind must be \"mlp\"", what, name);
    const cJSON *tower = cJSON_GetObjectItemCaseSensitive(o, "tower");
    h->fused = cJSON_IsString(tower) && strcmp(tower->valuestring, "fusion") == 0;
    if (h->fused && !c->has_fusion)
        return qc_error(QIAO_ERR_FORMAT, "%s: heads.%s reads \"fusion\", but the config has no fusion section", what,
                        name);
    const int mod = cJSON_IsString(tower) ? qmod_tower_find(tower->valuestring) : -1;
    if (!h->fused && (mod < 0 || !qmod_has_tower(c, (qmod_modality)mod)))
        return qc_error(QIAO_ERR_FORMAT, "%s: heads.%s.tower must name a tower the model holds, or \"fusion\"",
                        what, name);
    h->tower = h->fused ? QMOD_TEXT : (qmod_modality)mod;
    const cJSON *input = cJSON_GetObjectItemCaseSensitive(o, "input");
    if (!input || (cJSON_IsString(input) && strcmp(input->valuestring, "embedding") == 0))
        h->input = QMOD_HEAD_EMBEDDING;
    else if (cJSON_IsString(input) && strcmp(input->valuestring, "tokens") == 0)
        h->input = QMOD_HEAD_TOKENS;
    else
        return qc_error(QIAO_ERR_FORMAT, "%s: heads.%s.input must be \"embedding\" or \"tokens\"", what, name);
    char section[QMOD_NAME_MAX + 8];
    snprintf(section, sizeof section, "heads.%s", name);
    qiao_status st;
    h->mlp.hidden = 0;
    if (cJSON_GetObjectItemCaseSensitive(o, "hidden") &&
        (st = qc_json_int(o, section, "hidden", 0, QF_HEAD_MAX_WIDTH, &h->mlp.hidden)) != QIAO_OK)
        return rewrap(st, what);
    if ((st = qc_json_int(o, section, "classes", 1, QF_HEAD_MAX_CLASSES, &h->mlp.classes)) != QIAO_OK)
        return rewrap(st, what);
    if ((st = check_labels(o, what, name, h->mlp.classes)) != QIAO_OK) return st;
    const cJSON *scale = cJSON_GetObjectItemCaseSensitive(o, "scale");
    if (scale && (!cJSON_IsNumber(scale) || !(scale->valuedouble > 0.0) || scale->valuedouble > 1e4))
        return qc_error(QIAO_ERR_FORMAT, "%s: heads.%s.scale must be a number in (0, 10000]", what, name);
    h->scale = scale ? (float)scale->valuedouble : 1.0f;
    const cJSON *temp = cJSON_GetObjectItemCaseSensitive(o, "temperature");
    if (temp && (!cJSON_IsNumber(temp) || !(temp->valuedouble >= 1e-3) || temp->valuedouble > 1e3))
        return qc_error(QIAO_ERR_FORMAT, "%s: heads.%s.temperature must be a number in [0.001, 1000]", what, name);
    h->temperature = temp ? (float)temp->valuedouble : 1.0f;
    const cJSON *thr = cJSON_GetObjectItemCaseSensitive(o, "threshold");
    if (thr && (!cJSON_IsNumber(thr) || !(thr->valuedouble >= 0.0) || thr->valuedouble > 1.0))
        return qc_error(QIAO_ERR_FORMAT, "%s: heads.%s.threshold must be a number in [0, 1]", what, name);
    h->threshold = thr ? (float)thr->valuedouble : 0.0f;
    const cJSON *multi = cJSON_GetObjectItemCaseSensitive(o, "multi_label");
    if (multi && !cJSON_IsBool(multi))
        return qc_error(QIAO_ERR_FORMAT, "%s: heads.%s.multi_label must be true or false", what, name);
    h->multi_label = cJSON_IsTrue(multi);
    h->context = 0;
    if (cJSON_GetObjectItemCaseSensitive(o, "context")) {
        if (h->fused || h->tower != QMOD_TEXT || h->input != QMOD_HEAD_EMBEDDING)
            return qc_error(QIAO_ERR_FORMAT, "%s: heads.%s.context is for a head on the text embedding", what, name);
        if ((st = qc_json_int(o, section, "context", 0, QMOD_HEAD_MAX_CONTEXT, &h->context)) != QIAO_OK)
            return rewrap(st, what);
    }
    h->oos_class = -1;
    const cJSON *oos = cJSON_GetObjectItemCaseSensitive(o, "oos_label");
    if (oos) {
        const cJSON *labels = cJSON_GetObjectItemCaseSensitive(o, "labels");
        int k = 0;
        for (const cJSON *a = cJSON_IsString(oos) && labels ? labels->child : NULL; a && h->oos_class < 0;
             a = a->next, k++)
            if (strcmp(a->valuestring, oos->valuestring) == 0) h->oos_class = k;
        if (h->oos_class < 0)
            return qc_error(QIAO_ERR_FORMAT, "%s: heads.%s.oos_label must be one of the head's labels", what, name);
    }
    h->mlp.in = h->fused ? c->fusion.width
                : h->input == QMOD_HEAD_EMBEDDING ? c->embed_dim
                                                  : qmod_tower_of(h->tower)->trunk_dims(c)->C;
    return QIAO_OK;
}

static const char *const k_fusion_keys[] = {"width",       "layers",    "heads",     "mlp",   "gate_hidden",
                                            "weighting",   "positions", "places",    "question_positions",
                                            "picture_mean"};

/* Optional boolean `key` of a section: *n = the picture's token count when
 * true, 0 when false or absent (the learned picture positions, fuser.h). */
static qiao_status parse_positions(const cJSON *o, const char *section, const qmod_config *c, const char *what,
                                   int64_t *n) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "positions");
    if (v && !cJSON_IsBool(v)) return qc_error(QIAO_ERR_FORMAT, "%s: %s.positions must be true or false", what, section);
    *n = v && cJSON_IsTrue(v) ? c->image.tokens : 0;
    return QIAO_OK;
}

/* Optional `places` G of a section: G x G places pooled over the tower's
 * g x g patches (fuser.h qf_places_forward), then one learned position per
 * place where the section asked for positions. */
static qiao_status parse_places(const cJSON *o, const char *section, const qmod_config *c, const char *what,
                                int64_t *places, int64_t *positions) {
    *places = 0;
    if (!cJSON_GetObjectItemCaseSensitive(o, "places")) return QIAO_OK;
    qiao_status st = qc_json_int(o, section, "places", 1, 64, places);
    if (st != QIAO_OK) return rewrap(st, what);
    const int64_t g = qf_patch_side(c->image.tokens);
    if (!qmod_has_tower(c, QMOD_IMAGE) || g * g != c->image.tokens || *places > g)
        return qc_error(QIAO_ERR_FORMAT,
                        "%s: %s.places (%lld) needs a square grid of at least as many patches per side (the picture "
                        "has %lld tokens)",
                        what, section, (long long)*places, (long long)c->image.tokens);
    if (*positions) *positions = *places * *places;
    return QIAO_OK;
}

/* The fuser and the decoder read the picture tower's tokens as its P
 * patches (positions, cells); a tower with a class token has P + 1. */
static qiao_status check_picture_tokens(const qmod_config *c, const char *section, const char *what) {
    if (qmod_has_tower(c, QMOD_IMAGE) && c->image.class_token)
        return qc_error(QIAO_ERR_UNSUPPORTED,
                        "%s: a %s over a clip image tower (one with a class token) is not supported", what, section);
    return QIAO_OK;
}

/* The "fusion" section; `c` has its towers parsed. */
static qiao_status parse_fusion(const cJSON *o, qmod_config *c, const char *what) {
    if (!cJSON_IsObject(o)) return qc_error(QIAO_ERR_FORMAT, "%s: key \"fusion\" must be an object", what);
    for (const cJSON *it = o->child; it; it = it->next) {
        bool known = false;
        for (size_t i = 0; i < sizeof k_fusion_keys / sizeof k_fusion_keys[0]; i++)
            known = known || (it->string && strcmp(it->string, k_fusion_keys[i]) == 0);
        if (!known) return qc_error(QIAO_ERR_FORMAT, "%s: unknown key fusion.%s", what, it->string);
    }
    qf_fuser_config *f = &c->fusion;
    memset(f, 0, sizeof *f);
    qiao_status st = check_picture_tokens(c, "fusion", what);
    if (st != QIAO_OK) return st;
    if ((st = qc_json_int(o, "fusion", "width", 1, 65536, &f->width)) != QIAO_OK ||
        (st = qc_json_int(o, "fusion", "layers", 1, QF_FUSER_MAX_LAYERS, &f->layers)) != QIAO_OK ||
        (st = qc_json_int(o, "fusion", "heads", 1, 1024, &f->heads)) != QIAO_OK ||
        (st = qc_json_int(o, "fusion", "mlp", 1, 262144, &f->mlp)) != QIAO_OK ||
        (st = qc_json_int(o, "fusion", "gate_hidden", 1, 65536, &f->gate_hidden)) != QIAO_OK)
        return rewrap(st, what);
    const cJSON *wt = cJSON_GetObjectItemCaseSensitive(o, "weighting");
    const int mode = !wt ? QF_WEIGHT_LEARNED : cJSON_IsString(wt) ? qf_weighting_parse(wt->valuestring) : -1;
    if (mode < 0)
        return qc_error(QIAO_ERR_FORMAT, "%s: fusion.weighting must be \"learned\", \"heuristic\" or \"equal\"",
                        what);
    f->weighting = (qf_weighting)mode;
    if ((st = parse_positions(o, "fusion", c, what, &f->positions)) != QIAO_OK) return st;
    if ((st = parse_places(o, "fusion", c, what, &f->places, &f->positions)) != QIAO_OK) return st;
    const cJSON *qp = cJSON_GetObjectItemCaseSensitive(o, "question_positions");
    if (qp && !cJSON_IsBool(qp))
        return qc_error(QIAO_ERR_FORMAT, "%s: fusion.question_positions must be true or false", what);
    if (qp && cJSON_IsTrue(qp)) {
        if (!qmod_has_tower(c, QMOD_TEXT))
            return qc_error(QIAO_ERR_FORMAT, "%s: fusion.question_positions needs a text tower", what);
        f->qpositions = c->text.trunk.max_T;
    }
    const cJSON *pm = cJSON_GetObjectItemCaseSensitive(o, "picture_mean");
    if (pm && !cJSON_IsBool(pm))
        return qc_error(QIAO_ERR_FORMAT, "%s: fusion.picture_mean must be true or false", what);
    f->picture_mean = pm && cJSON_IsTrue(pm);
    static const qmod_modality mods[QF_NMOD] = {QMOD_TEXT, QMOD_IMAGE, QMOD_AUDIO}; /* QF_TEXT, QF_IMAGE, QF_AUDIO */
    for (int m = 0; m < QF_NMOD; m++)
        f->in_width[m] = qmod_has_tower(c, mods[m]) ? qmod_tower_of(mods[m])->trunk_dims(c)->C : 0;
    if ((st = qf_fuser_check(f)) != QIAO_OK) return rewrap(st, what);
    c->has_fusion = true;
    return QIAO_OK;
}

static const char *const k_decoder_keys[] = {"width", "layers", "heads", "mlp", "max_len", "tied", "positions", "places"};

/* The "decoder" section; `c` has its towers parsed. */
static qiao_status parse_decoder(const cJSON *o, qmod_config *c, const char *what) {
    if (!cJSON_IsObject(o)) return qc_error(QIAO_ERR_FORMAT, "%s: key \"decoder\" must be an object", what);
    for (const cJSON *it = o->child; it; it = it->next) {
        bool known = false;
        for (size_t i = 0; i < sizeof k_decoder_keys / sizeof k_decoder_keys[0]; i++)
            known = known || (it->string && strcmp(it->string, k_decoder_keys[i]) == 0);
        if (!known) return qc_error(QIAO_ERR_FORMAT, "%s: unknown key decoder.%s", what, it->string);
    }
    if (!qmod_has_tower(c, QMOD_TEXT) || !qmod_has_tower(c, QMOD_IMAGE))
        return qc_error(QIAO_ERR_FORMAT,
                        "%s: a decoder needs the text tower (its tokenizer's pieces are what it writes) and the "
                        "image tower (whose tokens it reads)",
                        what);
    qf_decoder_config *d = &c->decoder;
    memset(d, 0, sizeof *d);
    qiao_status st = check_picture_tokens(c, "decoder", what);
    if (st != QIAO_OK) return st;
    if ((st = qc_json_int(o, "decoder", "width", 1, 65536, &d->width)) != QIAO_OK ||
        (st = qc_json_int(o, "decoder", "layers", 1, QF_DECODER_MAX_LAYERS, &d->layers)) != QIAO_OK ||
        (st = qc_json_int(o, "decoder", "heads", 1, 1024, &d->heads)) != QIAO_OK ||
        (st = qc_json_int(o, "decoder", "mlp", 1, 262144, &d->mlp)) != QIAO_OK ||
        (st = qc_json_int(o, "decoder", "max_len", 2, QF_DECODER_MAX_LEN, &d->max_len)) != QIAO_OK)
        return rewrap(st, what);
    const cJSON *tied = cJSON_GetObjectItemCaseSensitive(o, "tied");
    if (tied && !cJSON_IsBool(tied)) return qc_error(QIAO_ERR_FORMAT, "%s: decoder.tied must be true or false", what);
    d->tied = !tied || cJSON_IsTrue(tied);
    if ((st = parse_positions(o, "decoder", c, what, &d->ctx_positions)) != QIAO_OK) return st;
    if ((st = parse_places(o, "decoder", c, what, &d->places, &d->ctx_positions)) != QIAO_OK) return st;
    d->vocab = c->text.vocab + QMOD_DEC_SPECIALS;
    d->ctx_width = qmod_tower_of(QMOD_IMAGE)->trunk_dims(c)->C;
    /* in a config a bad section is a format error, whatever the layer calls it */
    if (qf_decoder_check(d) != QIAO_OK) return rewrap(QIAO_ERR_FORMAT, what);
    c->has_decoder = true;
    return QIAO_OK;
}

int qmod_head_find(const qmod_config *cfg, const char *name) {
    for (int i = 0; cfg && name && i < cfg->n_heads; i++)
        if (strcmp(cfg->heads[i].name, name) == 0) return i;
    return -1;
}

/* qmod_head_label on a parse of cfg->json (root may be NULL). */
static const char *label_in(const cJSON *root, const qmod_config *cfg, int head, int64_t k, const char *lang, char *buf,
                            size_t cap) {
    if (!buf || cap == 0) return buf;
    snprintf(buf, cap, "%lld", (long long)k);
    if (!root || head < 0 || head >= cfg->n_heads || k < 0 || k >= INT32_MAX) return buf;
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "heads"),
                                                      cfg->heads[head].name);
    const cJSON *key = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(h, "labels"), (int)k);
    const cJSON *text =
        lang ? cJSON_GetArrayItem(
                   cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(h, "label_text"), lang), (int)k)
             : NULL;
    if (cJSON_IsString(text))
        snprintf(buf, cap, "%s", text->valuestring);
    else if (cJSON_IsString(key))
        snprintf(buf, cap, "%s", key->valuestring);
    return buf;
}

const char *qmod_head_label(const qmod_config *cfg, int head, int64_t k, const char *lang, char *buf, size_t cap) {
    cJSON *root = cfg && cfg->json ? cJSON_Parse(cfg->json) : NULL;
    label_in(root, cfg, head, k, lang, buf, cap);
    cJSON_Delete(root);
    return buf;
}

void qmod_head_labels(const qmod_config *cfg, int head, const int64_t *ks, int n, const char *lang, char *keys,
                      char *texts, size_t cap) {
    cJSON *root = cfg && cfg->json && n > 0 ? cJSON_Parse(cfg->json) : NULL;
    for (int i = 0; i < n; i++) {
        if (keys) label_in(root, cfg, head, ks[i], NULL, keys + (size_t)i * cap, cap);
        if (texts) label_in(root, cfg, head, ks[i], lang, texts + (size_t)i * cap, cap);
    }
    cJSON_Delete(root);
}

/* ---- the space and the prompts ------------------------------------------------
 * Two optional keys that say how a model's vectors are used, kept apart from
 * the architecture's parsing: "space" names the space its vectors live in,
 * "prompts" the texts put before a query or a document (model.h). */

/* A string of 1..cap-1 bytes of UTF-8 without control characters (it is
 * shown in messages and listings), or with `empty_ok`, possibly empty. */
static bool meta_string_ok(const cJSON *v, size_t cap, bool empty_ok, bool controls_ok) {
    if (!cJSON_IsString(v)) return false;
    size_t n = strlen(v->valuestring);
    if (n >= cap || (!n && !empty_ok) || !qc_utf8_valid(v->valuestring, n)) return false;
    for (const unsigned char *c = (const unsigned char *)v->valuestring; !controls_ok && *c; c++)
        if (*c < 0x20 || *c == 0x7f) return false;
    return true;
}

static qiao_status parse_space_prompts(const cJSON *root, const char *what, qmod_config *c) {
    const cJSON *space = cJSON_GetObjectItemCaseSensitive(root, "space");
    if (space && !meta_string_ok(space, QMOD_SPACE_MAX, false, false))
        return qc_error(QIAO_ERR_FORMAT, "%s: key \"space\" must be a string of 1 to %d bytes without control "
                        "characters", what, QMOD_SPACE_MAX - 1);
    if (space) snprintf(c->space, sizeof c->space, "%s", space->valuestring);
    const cJSON *prompts = cJSON_GetObjectItemCaseSensitive(root, "prompts");
    if (!prompts) return QIAO_OK;
    if (!cJSON_IsObject(prompts))
        return qc_error(QIAO_ERR_FORMAT, "%s: key \"prompts\" must be an object of strings", what);
    if (!qmod_has_tower(c, QMOD_TEXT))
        return qc_error(QIAO_ERR_FORMAT, "%s: key \"prompts\" needs a text tower", what);
    size_t bytes = 0;
    int n = 0;
    for (const cJSON *p = prompts->child; p; p = p->next, n++) {
        if (n == QMOD_MAX_PROMPTS)
            return qc_error(QIAO_ERR_FORMAT, "%s: more than %d prompts", what, QMOD_MAX_PROMPTS);
        if (!head_name_ok(p->string))
            return qc_error(QIAO_ERR_FORMAT,
                            "%s: prompt name \"%s\" must be lowercase letters, digits and _, starting with a "
                            "letter, at most %d bytes", what, p->string ? p->string : "", QMOD_NAME_MAX - 1);
        /* A prompt may end in a newline (instruction templates do). */
        if (!meta_string_ok(p, QMOD_PROMPT_MAX, true, true))
            return qc_error(QIAO_ERR_FORMAT, "%s: prompts.%s must be a string of at most %d bytes of UTF-8", what,
                            p->string, QMOD_PROMPT_MAX - 1);
        for (const cJSON *q = prompts->child; q != p; q = q->next)
            if (!strcmp(q->string, p->string))
                return qc_error(QIAO_ERR_FORMAT, "%s: prompt \"%s\" is given twice", what, p->string);
        bytes += strlen(p->string) + strlen(p->valuestring) + 2;
    }
    if (n == 0) return QIAO_OK;
    char *block = malloc(bytes);
    if (!block) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory for the prompts", what);
    size_t at = 0;
    for (const cJSON *p = prompts->child; p; p = p->next) {
        size_t k = strlen(p->string) + 1, v = strlen(p->valuestring) + 1;
        memcpy(block + at, p->string, k);
        memcpy(block + at + k, p->valuestring, v);
        at += k + v;
    }
    c->prompts = block;
    c->prompts_len = bytes;
    c->n_prompts = n;
    return QIAO_OK;
}

const char *qmod_config_space(const qmod_config *cfg) {
    if (!cfg) return "";
    return cfg->space[0] ? cfg->space : cfg->name;
}

const char *qmod_config_prompt(const qmod_config *cfg, const char *name) {
    if (!cfg || !name || !cfg->prompts) return NULL;
    const char *p = cfg->prompts;
    for (int i = 0; i < cfg->n_prompts; i++) {
        const char *text = p + strlen(p) + 1;
        if (!strcmp(p, name)) return text;
        p = text + strlen(text) + 1;
    }
    return NULL;
}

qiao_status qmod_config_from_string(const char *json, const char *what, qmod_config *out) {
    if (!out) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_config_from_string: out is NULL");
    memset(out, 0, sizeof *out);
    if (!what) what = "config";
    if (!json) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "%s: JSON is NULL", what);
    size_t len = strlen(json);
    if (!qc_utf8_valid(json, len)) return qc_error(QIAO_ERR_FORMAT, "%s: not valid UTF-8", what);
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root) return qc_error(QIAO_ERR_FORMAT, "%s: not valid JSON", what);
    qiao_status st = QIAO_OK;
    qmod_config c;
    memset(&c, 0, sizeof c);
    const cJSON *name, *dim, *sec = NULL;
    if (!cJSON_IsObject(root)) {
        st = qc_error(QIAO_ERR_FORMAT, "%s: the config must be a JSON object", what);
        goto done;
    }
    name = cJSON_GetObjectItemCaseSensitive(root, "name");
    if (!cJSON_IsString(name) || !name->valuestring[0] || strlen(name->valuestring) >= QMOD_NAME_MAX) {
        st = qc_error(QIAO_ERR_FORMAT, "%s: key \"name\" must be a non-empty string of at most %d bytes", what,
                      QMOD_NAME_MAX - 1);
        goto done;
    }
    snprintf(c.name, sizeof c.name, "%s", name->valuestring);
    dim = cJSON_GetObjectItemCaseSensitive(root, "embed_dim");
    if (!cJSON_IsNumber(dim) || dim->valuedouble != floor(dim->valuedouble) || dim->valuedouble < 1 ||
        dim->valuedouble > 65536) {
        st = qc_error(QIAO_ERR_FORMAT, "%s: key \"embed_dim\" must be an integer in [1, 65536]", what);
        goto done;
    }
    c.embed_dim = (int64_t)dim->valuedouble;
    for (int mod = 0; mod < QMOD_N_MODALITIES; mod++) {
        const qmod_tower *tw = qmod_tower_of((qmod_modality)mod);
        sec = cJSON_GetObjectItemCaseSensitive(root, tw->name);
        if (!sec) continue;
        if (!cJSON_IsObject(sec)) {
            st = qc_error(QIAO_ERR_FORMAT, "%s: key \"%s\" must be an object", what, tw->name);
            goto done;
        }
        if ((st = tw->parse(sec, c.embed_dim, &c)) != QIAO_OK) {
            st = rewrap(st, what);
            goto done;
        }
        c.towers |= 1u << mod;
    }
    const cJSON *fusion = cJSON_GetObjectItemCaseSensitive(root, "fusion");
    if (fusion && c.towers && (st = parse_fusion(fusion, &c, what)) != QIAO_OK) goto done;
    const cJSON *decoder = cJSON_GetObjectItemCaseSensitive(root, "decoder");
    if (decoder && c.towers && (st = parse_decoder(decoder, &c, what)) != QIAO_OK) goto done;
    const cJSON *heads = cJSON_GetObjectItemCaseSensitive(root, "heads");
    if (heads && !cJSON_IsObject(heads)) {
        st = qc_error(QIAO_ERR_FORMAT, "%s: key \"heads\" must be an object", what);
        goto done;
    }
    for (const cJSON *h = heads ? heads->child : NULL; h && c.towers; h = h->next) {
        if (c.n_heads == QMOD_MAX_HEADS) {
            st = qc_error(QIAO_ERR_FORMAT, "%s: more than %d heads", what, QMOD_MAX_HEADS);
            goto done;
        }
        if ((st = parse_head(h, &c, what, &c.heads[c.n_heads])) != QIAO_OK) goto done;
        if (qmod_head_find(&c, c.heads[c.n_heads].name) >= 0) {
            st = qc_error(QIAO_ERR_FORMAT, "%s: head \"%s\" is given twice", what, c.heads[c.n_heads].name);
            goto done;
        }
        c.n_heads++;
    }
    if (!c.towers) {
        st = qc_error(QIAO_ERR_FORMAT,
                      "%s: no tower: a model needs at least one of the keys \"text\", \"image\", "
                      "\"audio\"",
                      what);
        goto done;
    }
    if ((st = parse_space_prompts(root, what, &c)) != QIAO_OK) goto done;
    c.json = cJSON_PrintUnformatted(root);
    if (!c.json) {
        free(c.prompts);
        st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory printing the config", what);
        goto done;
    }
    *out = c;
done:
    cJSON_Delete(root);
    return st;
}

qiao_status qmod_config_from_file(const char *path, qmod_config *out) {
    if (!out) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_config_from_file: out is NULL");
    memset(out, 0, sizeof *out);
    if (!path) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_config_from_file: path is NULL");
    uint8_t *data;
    size_t n;
    qiao_status st = qc_read_file(path, QMOD_CONFIG_MAX, &data, &n);
    if (st == QIAO_ERR_TOO_LARGE)
        return qc_error(QIAO_ERR_FORMAT, "%s: over %zu bytes, not a model config", path, QMOD_CONFIG_MAX);
    if (st != QIAO_OK) return st;
    char *buf = (char *)data;
    if (memchr(buf, 0, n))
        st = qc_error(QIAO_ERR_FORMAT, "%s: contains a NUL byte, not a model config", path);
    else
        st = qmod_config_from_string(buf, path, out);
    free(buf);
    return st;
}

qiao_status qmod_config_for_tokenizer(const qmod_config *cfg, const qiao_tokenizer *tok, qmod_config *out) {
    if (!out) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_config_for_tokenizer: out is NULL");
    memset(out, 0, sizeof *out);
    if (!cfg || !cfg->json || !tok) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_config_for_tokenizer: NULL argument");
    if (!qmod_has_tower(cfg, QMOD_TEXT))
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "config %s has no text tower: a tokenizer does not apply",
                        cfg->name);
    cJSON *root = cJSON_Parse(cfg->json);
    cJSON *text = cJSON_GetObjectItemCaseSensitive(root, "text");
    if (!text) {
        cJSON_Delete(root);
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "config %s: out of memory", cfg->name);
    }
    cJSON_ReplaceItemInObjectCaseSensitive(text, "vocab", cJSON_CreateNumber((double)qiao_tokenizer_vocab_size(tok)));
    cJSON_ReplaceItemInObjectCaseSensitive(text, "char_vocab",
                                           cJSON_CreateNumber((double)qiao_tokenizer_char_vocab_size(tok)));
    cJSON_ReplaceItemInObjectCaseSensitive(text, "k", cJSON_CreateNumber((double)qiao_tokenizer_k(tok)));
    char *json = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!json) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "config %s: out of memory", cfg->name);
    char what[QMOD_NAME_MAX + 32];
    snprintf(what, sizeof what, "config %s with its tokenizer", cfg->name);
    qiao_status st = qmod_config_from_string(json, what, out);
    cJSON_free(json);
    return st;
}

qiao_status qmod_config_copy(const qmod_config *src, qmod_config *dst) {
    *dst = *src;
    dst->json = NULL;
    dst->prompts = NULL;
    if (src->json) {
        size_t n = strlen(src->json) + 1;
        /* cJSON_malloc so qmod_config_free's cJSON_free matches either origin. */
        dst->json = cJSON_malloc(n);
        if (dst->json) memcpy(dst->json, src->json, n);
        if (!dst->json) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "config %s: out of memory", src->name);
    }
    if (src->prompts) {
        dst->prompts = malloc(src->prompts_len);
        if (!dst->prompts) {
            qmod_config_free(dst);
            return qc_error(QIAO_ERR_OUT_OF_MEMORY, "config %s: out of memory", src->name);
        }
        memcpy(dst->prompts, src->prompts, src->prompts_len);
    }
    return QIAO_OK;
}

void qmod_config_free(qmod_config *cfg) {
    if (!cfg) return;
    cJSON_free(cfg->json);
    cfg->json = NULL;
    free(cfg->prompts);
    cfg->prompts = NULL;
    cfg->prompts_len = 0;
    cfg->n_prompts = 0;
}

qiao_status qmod_describe(qc_table *tab, const qmod_config *cfg) {
    qiao_status st;
    for (int mod = 0; mod < QMOD_N_MODALITIES; mod++)
        if (qmod_has_tower(cfg, (qmod_modality)mod) &&
            (st = qmod_tower_of((qmod_modality)mod)->describe(tab, cfg)) != QIAO_OK)
            return st;
    const int64_t one = 1;
    for (int i = 0; i < QMOD_N_PAIRS; i++) {
        if (!qmod_has_pair(cfg, i)) continue;
        st = qc_table_add(tab, k_pair_names[i], 1, &one, QC_INIT_CONST, QMOD_LOGIT_SCALE_INIT, QC_NO_DECAY,
                          offsetof(qmod_params, logit_scale) + (size_t)i * sizeof(float *));
        if (st != QIAO_OK) return st;
    }
    if (cfg->has_fusion && (st = qf_fuser_describe(tab, "fusion.", &cfg->fusion, offsetof(qmod_params, fusion))) !=
                               QIAO_OK)
        return st;
    for (int m = 0; cfg->has_fusion && m < QF_NMOD; m++) {
        const int64_t C = cfg->fusion.in_width[m];
        if (!C) continue;
        char name[64];
        snprintf(name, sizeof name, "fusion.%s.in_mean", qf_modality_name(m));
        if ((st = qc_table_add_dims(tab, "", name, 1, C, 0, 0, QC_INIT_ZEROS, 0, QC_NO_DECAY | QC_FROZEN,
                                    offsetof(qmod_params, tok_mean) + (size_t)m * sizeof(float *))) != QIAO_OK)
            return st;
        snprintf(name, sizeof name, "fusion.%s.in_std", qf_modality_name(m));
        if ((st = qc_table_add_dims(tab, "", name, 1, C, 0, 0, QC_INIT_ONES, 0, QC_NO_DECAY | QC_FROZEN,
                                    offsetof(qmod_params, tok_std) + (size_t)m * sizeof(float *))) != QIAO_OK)
            return st;
    }
    if (cfg->has_decoder &&
        (st = qf_decoder_describe(tab, "decoder.", &cfg->decoder, offsetof(qmod_params, decoder))) != QIAO_OK)
        return st;
    for (int i = 0; i < cfg->n_heads; i++) {
        char prefix[QMOD_NAME_MAX + 8];
        snprintf(prefix, sizeof prefix, "heads.%s.", cfg->heads[i].name);
        st = qf_mlp_describe(tab, prefix, &cfg->heads[i].mlp,
                             offsetof(qmod_params, heads) + (size_t)i * sizeof(qf_mlp_params));
        if (st != QIAO_OK) return st;
    }
    return QIAO_OK;
}

/* A model with its table and a zeroed arena, parameters not yet set. */
static qiao_status model_alloc(const qmod_config *cfg, qmod_model **out) {
    qmod_model *m = calloc(1, sizeof *m);
    if (!m) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "model %s: out of memory", cfg->name);
    qc_table_init_empty(&m->tab);
    qiao_status st = qmod_config_copy(cfg, &m->cfg);
    if (st == QIAO_OK) st = qmod_describe(&m->tab, &m->cfg);
    if (st == QIAO_OK) st = qc_arena_alloc(&m->arena, m->tab.total);
    if (st != QIAO_OK) {
        qmod_free(m);
        return st;
    }
    qc_table_bind(&m->tab, m->arena.base, &m->p);
    *out = m;
    return QIAO_OK;
}

qiao_status qmod_create(const qmod_config *cfg, uint64_t seed, qmod_model **out) {
    if (!out) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_create: out is NULL");
    *out = NULL;
    if (!cfg || !cfg->json) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_create: no parsed config");
    qmod_model *m = NULL;
    qiao_status st = model_alloc(cfg, &m);
    if (st != QIAO_OK) return st;
    qc_table_init(&m->tab, m->arena.base, seed);
    *out = m;
    return QIAO_OK;
}

void qmod_free(qmod_model *m) {
    if (!m) return;
    qiao_tokenizer_free(m->tok);
    qc_arena_free(&m->arena);
    qc_table_free(&m->tab);
    qmod_config_free(&m->cfg);
    free(m);
}

qiao_status qmod_save(const qmod_model *m, const char *path, qiao_dtype storage) {
    return qmod_save_ex(m, path, storage, NULL, 0, NULL, 0);
}

qiao_status qmod_save_ex(const qmod_model *m, const char *path, qiao_dtype storage, const qc_st_entry *extra,
                         size_t n_extra, const qc_st_kv *extra_meta, size_t n_extra_meta) {
    if (!m || !path) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_save: model or path is NULL");
    if (storage != QIAO_DTYPE_F32 && storage != QIAO_DTYPE_BF16)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "%s: storage dtype must be F32 or BF16, not %d", path,
                        (int)storage);
    if ((n_extra && !extra) || (n_extra_meta && !extra_meta))
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_save: extra entries are NULL");
    size_t n = m->tab.n;
    qc_st_entry *e = calloc(n + 2 + n_extra, sizeof *e);
    qc_st_kv *meta = calloc(4 + n_extra_meta, sizeof *meta);
    if (!e || !meta) {
        free(e);
        free(meta);
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    }
    qc_st_table_entries(&m->tab, m->arena.base, e);
    for (size_t i = 0; i < n; i++) e[i].dtype = storage;
    meta[0] = (qc_st_kv){QMOD_META_CONFIG, m->cfg.json};
    meta[1] = (qc_st_kv){QMOD_META_FORMAT, QMOD_FORMAT};
    meta[2] = (qc_st_kv){QMOD_META_VERSION, qiao_version()};
    size_t n_meta = 3;
    if (m->tok) {
        n += tk_tokenizer_entries(m->tok, e + n, &meta[3]);
        n_meta = 4;
    }
    for (size_t i = 0; i < n_extra; i++) e[n++] = extra[i];
    for (size_t i = 0; i < n_extra_meta; i++) meta[n_meta++] = extra_meta[i];
    qiao_status st = qc_st_write(path, e, n, meta, n_meta);
    free(e);
    free(meta);
    return st;
}

/* Checks the attached tokenizer against the text config; `what` names its source. */
static qiao_status check_tokenizer(const qiao_tokenizer *tok, const qe_text_config *tc, const char *what,
                                   qiao_status fail) {
    int64_t v = qiao_tokenizer_vocab_size(tok), cv = qiao_tokenizer_char_vocab_size(tok);
    int64_t k = qiao_tokenizer_k(tok);
    /* hybrid reads the hybrid kind, bert an spm or wordpiece one, clip the bpe kind */
    const bool fits = tc->arch == QE_TEXT_ARCH_HYBRID ? tok->kind == TK_KIND_HYBRID
                      : tc->arch == QE_TEXT_ARCH_BERT ? tok->kind == TK_KIND_SPM || tok->kind == TK_KIND_WORDPIECE
                                                      : tok->kind == TK_KIND_BPE;
    static const char *const archs[] = {"hybrid", "bert", "clip"};
    static const char *const kinds[] = {"hybrid", "spm", "wordpiece", "bpe"};
    if (!fits)
        return qc_error(fail, "%s: a %s text encoder with a %s tokenizer", what, archs[tc->arch], kinds[tok->kind]);
    if (v != tc->vocab)
        return qc_error(fail, "%s: tokenizer vocab %lld != text config vocab %lld", what, (long long)v,
                        (long long)tc->vocab);
    if (cv != tc->char_vocab)
        return qc_error(fail, "%s: tokenizer char_vocab %lld != text config char_vocab %lld", what,
                        (long long)cv, (long long)tc->char_vocab);
    if (k != tc->k)
        return qc_error(fail, "%s: tokenizer k %lld != text config k %lld", what, (long long)k,
                        (long long)tc->k);
    return QIAO_OK;
}

/* A file `qiao quantize` wrote with int8 weights: each I8 tensor is
 * dequantized into the arena (code * its row's scale, exact in f32: an
 * int8 times a float), every other tensor loads as qc_st_load_table would.
 * The int8 inference path re-quantizes those rows at packing time and gets
 * the same codes back (a row's largest |code| is 127, so its scale is
 * recovered to within rounding and every code to the integer), so the file
 * computes with its own int8 weights. */
static qiao_status load_int8(const qc_st_file *f, qmod_model *m) {
    const char *name = qc_st_name(f);
    for (size_t i = 0; i < m->tab.n; i++) {
        const qc_tensor_desc *t = &m->tab.t[i];
        const qc_st_tensor *x = qc_st_find(f, t->name);
        if (!x) return qc_error(QIAO_ERR_FORMAT, "%s: tensor %s is missing", name, t->name);
        bool same = x->ndim == t->ndim && x->numel == t->numel;
        for (int d = 0; same && d < t->ndim; d++) same = x->shape[d] == t->shape[d];
        if (!same) return qc_error(QIAO_ERR_FORMAT, "%s: tensor %s has another shape than its config's", name, t->name);
        float *dst = m->arena.base + t->offset;
        if (x->dtype != QIAO_DTYPE_I8) {
            if (x->dtype == QIAO_DTYPE_F32) memcpy(dst, x->data, (size_t)t->numel * sizeof(float));
            else if (x->dtype == QIAO_DTYPE_BF16) qc_bf16_to_f32_n(dst, x->data, (size_t)t->numel);
            else if (x->dtype == QIAO_DTYPE_F16) qc_f16_to_f32_n(dst, x->data, (size_t)t->numel);
            else return qc_error(QIAO_ERR_FORMAT, "%s: tensor %s is %s, not a float or I8", name, t->name,
                                 qc_st_dtype_name(x->dtype));
            continue;
        }
        char sname[QC_ST_MAX_NAME + 8];
        snprintf(sname, sizeof sname, "%s.scale", t->name);
        const qc_st_tensor *s = qc_st_find(f, sname);
        if (t->ndim < 1 || !s || s->dtype != QIAO_DTYPE_F32 || s->numel != t->shape[0])
            return qc_error(QIAO_ERR_FORMAT, "%s: I8 tensor %s needs an F32 tensor %s of %lld scales", name, t->name,
                            sname, t->ndim ? (long long)t->shape[0] : 0LL);
        const int64_t rows = t->shape[0], cols = t->numel / rows;
        const int8_t *q = x->data;
        for (int64_t r = 0; r < rows; r++) {
            float sc;
            memcpy(&sc, (const char *)s->data + r * sizeof(float), sizeof sc);
            if (!isfinite(sc) || sc < 0)
                return qc_error(QIAO_ERR_FORMAT, "%s: %s[%lld] is not a finite scale >= 0", name, sname, (long long)r);
            for (int64_t c = 0; c < cols; c++) dst[r * cols + c] = (float)q[r * cols + c] * sc;
        }
    }
    return QIAO_OK;
}

static qiao_status load_st(const qc_st_file *f, qmod_model **out) {
    const char *name = qc_st_name(f);
    const char *fmt = qc_st_metadata_get(f, QMOD_META_FORMAT);
    if (!fmt) return qc_error(QIAO_ERR_FORMAT, "%s: metadata key %s missing (not a qiao model)", name,
                              QMOD_META_FORMAT);
    if (strcmp(fmt, QMOD_FORMAT) != 0)
        return qc_error(QIAO_ERR_FORMAT, "%s: metadata %s is \"%s\", expected \"%s\"", name, QMOD_META_FORMAT,
                        fmt, QMOD_FORMAT);
    const char *json = qc_st_metadata_get(f, QMOD_META_CONFIG);
    if (!json) return qc_error(QIAO_ERR_FORMAT, "%s: metadata key %s missing", name, QMOD_META_CONFIG);
    char what[QMOD_MSG_MAX];
    snprintf(what, sizeof what, "%s: metadata %s", name, QMOD_META_CONFIG);
    qmod_config cfg;
    qiao_status st = qmod_config_from_string(json, what, &cfg);
    if (st != QIAO_OK) return st;
    qmod_model *m = NULL;
    st = model_alloc(&cfg, &m);
    qmod_config_free(&cfg);
    if (st != QIAO_OK) return st;
    const char *quant = qc_st_metadata_get(f, QMOD_META_QUANTIZED);
    if (!quant) {
        st = qc_st_load_table(f, &m->tab, m->arena.base);
    } else if (!strcmp(quant, "bf16")) {
        m->precision = QB_PREC_BF16;
        st = qc_st_load_table(f, &m->tab, m->arena.base);
    } else if (!strcmp(quant, "int8")) {
        m->precision = QB_PREC_INT8;
        st = load_int8(f, m);
    } else {
        st = qc_error(QIAO_ERR_FORMAT, "%s: metadata %s is \"%s\"; this qiao reads \"int8\" and \"bf16\"", name,
                      QMOD_META_QUANTIZED, quant);
    }
    if (st == QIAO_OK) {
        for (size_t i = 0; i < m->tab.n && st == QIAO_OK; i++) {
            const qc_tensor_desc *t = &m->tab.t[i];
            const float *x = m->arena.base + t->offset;
            for (int64_t j = 0; j < t->numel; j++)
                if (!isfinite(x[j])) {
                    st = qc_error(QIAO_ERR_FORMAT, "%s: tensor %s holds a non-finite value at %lld", name,
                                  t->name, (long long)j);
                    break;
                }
        }
    }
    if (st == QIAO_OK &&
        (qc_st_find(f, TK_TENSOR_SPM) || qc_st_find(f, TK_TENSOR_CHARS) || qc_st_find(f, TK_TENSOR_VOCAB))) {
        st = qmod_has_tower(&m->cfg, QMOD_TEXT)
                 ? tk_tokenizer_from_st(f, &m->tok)
                 : qc_error(QIAO_ERR_FORMAT, "%s: holds a tokenizer but its config has no text tower", name);
        if (st == QIAO_OK) st = check_tokenizer(m->tok, &m->cfg.text, name, QIAO_ERR_FORMAT);
    }
    if (st != QIAO_OK) {
        qmod_free(m);
        return st;
    }
    *out = m;
    return QIAO_OK;
}

qiao_status qmod_load(const char *path, qmod_model **out) {
    if (!out) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_load: out is NULL");
    *out = NULL;
    if (!path) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_load: path is NULL");
    qc_st_file *f = NULL;
    qiao_status st = qc_st_open(path, &f);
    if (st != QIAO_OK) return st;
    st = load_st(f, out);
    qc_st_close(f);
    return st;
}

qiao_status qmod_load_memory(const void *data, size_t size, const char *name, qmod_model **out) {
    if (!out) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_load_memory: out is NULL");
    *out = NULL;
    if (!data && size) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_load_memory: data is NULL");
    qc_st_file *f = NULL;
    /* Borrowed: everything is copied out before the handle closes. */
    qiao_status st = qc_st_open_memory(data, size, name, false, &f);
    if (st != QIAO_OK) return st;
    st = load_st(f, out);
    qc_st_close(f);
    return st;
}

qiao_status qmod_set_tokenizer(qmod_model *m, const char *tokenizer_file) {
    if (!m || !tokenizer_file)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_set_tokenizer: model or path is NULL");
    if (!qmod_has_tower(&m->cfg, QMOD_TEXT))
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "model %s has no text tower: a tokenizer does not apply",
                        m->cfg.name);
    qiao_tokenizer *tok = NULL;
    qiao_status st = qiao_tokenizer_load(tokenizer_file, &tok);
    if (st != QIAO_OK) return st;
    st = check_tokenizer(tok, &m->cfg.text, tokenizer_file, QIAO_ERR_INVALID_ARGUMENT);
    if (st != QIAO_OK) {
        qiao_tokenizer_free(tok);
        return st;
    }
    qiao_tokenizer_free(m->tok);
    m->tok = tok;
    return QIAO_OK;
}

qiao_status qmod_copy_shared(qmod_model *dst, const qmod_model *src, size_t *n_copied) {
    size_t copied = 0;
    for (size_t i = 0; i < dst->tab.n; i++) {
        const int64_t j = qc_table_find(&src->tab, dst->tab.t[i].name);
        if (j < 0) continue;
        if (src->tab.t[j].numel != dst->tab.t[i].numel)
            return qc_error(QIAO_ERR_FORMAT, "%s: %s differs in size from %s's", dst->cfg.name, dst->tab.t[i].name,
                            src->cfg.name);
        memcpy(dst->arena.base + dst->tab.t[i].offset, src->arena.base + src->tab.t[j].offset,
               (size_t)dst->tab.t[i].numel * sizeof(float));
        copied++;
    }
    if (n_copied) *n_copied = copied;
    return QIAO_OK;
}

/* The first tensor under `prefix` whose values differ between a and b (or
 * that only one holds), or NULL. */
static const char *first_difference(const qmod_model *a, const qmod_model *b, const char *prefix) {
    const size_t plen = strlen(prefix);
    for (int pass = 0; pass < 2; pass++) {
        const qmod_model *x = pass ? b : a, *y = pass ? a : b;
        for (size_t i = 0; i < x->tab.n; i++) {
            const qc_tensor_desc *t = &x->tab.t[i];
            if (strncmp(t->name, prefix, plen) != 0) continue;
            const int64_t j = qc_table_find(&y->tab, t->name);
            if (j < 0 || y->tab.t[j].numel != t->numel ||
                memcmp(x->arena.base + t->offset, y->arena.base + y->tab.t[j].offset,
                       (size_t)t->numel * sizeof(float)) != 0)
                return t->name;
        }
    }
    return NULL;
}

/* -1 when the tokenizers agree on every piece and char, else the first piece id that differs (or vocab size). */
static int64_t tokenizer_difference(const qiao_tokenizer *a, const qiao_tokenizer *b) {
    const int64_t V = qiao_tokenizer_vocab_size(a), Vc = qiao_tokenizer_char_vocab_size(a);
    if (V != qiao_tokenizer_vocab_size(b) || Vc != qiao_tokenizer_char_vocab_size(b) ||
        qiao_tokenizer_k(a) != qiao_tokenizer_k(b))
        return V;
    for (int64_t i = 0; i < V; i++) {
        const char *pa = qiao_tokenizer_piece(a, i), *pb = qiao_tokenizer_piece(b, i);
        if (!pa || !pb || strcmp(pa, pb) != 0) return i;
    }
    for (int64_t i = 0; i < Vc; i++) {
        const char *ca = qiao_tokenizer_char(a, i), *cb = qiao_tokenizer_char(b, i);
        if (!ca || !cb || strcmp(ca, cb) != 0) return V + i;
    }
    return -1;
}

qiao_status qmod_graft_decoder(const qmod_model *base, const qmod_model *donor, bool force, const char *path,
                               qiao_dtype storage) {
    if (!base || !donor || !path) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_graft_decoder: NULL argument");
    if (!donor->cfg.has_decoder)
        return qc_error(QIAO_ERR_UNSUPPORTED, "%s has no caption decoder to take", donor->cfg.name);
    if (!base->tok || !donor->tok)
        return qc_error(QIAO_ERR_UNSUPPORTED, "%s has no tokenizer: a decoder writes the tokenizer's pieces",
                        base->tok ? donor->cfg.name : base->cfg.name);
    if (!force) {
        const char *t = first_difference(base, donor, "image.");
        if (t)
            return qc_error(QIAO_ERR_INVALID_ARGUMENT,
                            "%s's decoder was trained on another picture tower: %s differs from %s's (force to "
                            "graft it anyway)",
                            donor->cfg.name, t, base->cfg.name);
        const int64_t k = tokenizer_difference(base->tok, donor->tok);
        if (k >= 0)
            return qc_error(QIAO_ERR_INVALID_ARGUMENT,
                            "%s and %s have different tokenizers (they differ at id %lld; force to graft anyway)",
                            base->cfg.name, donor->cfg.name, (long long)k);
    }
    cJSON *root = cJSON_Parse(base->cfg.json), *from = cJSON_Parse(donor->cfg.json);
    const cJSON *dec = cJSON_GetObjectItemCaseSensitive(from, "decoder");
    qiao_status st = root && cJSON_IsObject(dec) ? QIAO_OK : qc_error(QIAO_ERR_FORMAT, "graft: a config is not valid JSON");
    char *json = NULL;
    if (st == QIAO_OK) {
        cJSON_DeleteItemFromObjectCaseSensitive(root, "decoder");
        cJSON_AddItemToObject(root, "decoder", cJSON_Duplicate(dec, true));
        if (!(json = cJSON_PrintUnformatted(root))) st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "graft: out of memory");
    }
    cJSON_Delete(root), cJSON_Delete(from);
    qmod_config cfg;
    memset(&cfg, 0, sizeof cfg);
    qmod_model *m = NULL;
    if (st == QIAO_OK) st = qmod_config_from_string(json, "grafted config", &cfg);
    free(json);
    if (st == QIAO_OK) st = qmod_create(&cfg, 0, &m);
    qmod_config_free(&cfg);
    for (size_t i = 0; st == QIAO_OK && i < m->tab.n; i++) {
        const qc_tensor_desc *t = &m->tab.t[i];
        const qmod_model *src = strncmp(t->name, "decoder.", 8) == 0 ? donor : base;
        const int64_t j = qc_table_find(&src->tab, t->name);
        if (j < 0 || src->tab.t[j].numel != t->numel)
            st = qc_error(QIAO_ERR_FORMAT, "graft: %s has no tensor %s of %lld values", src->cfg.name, t->name,
                          (long long)t->numel);
        else
            memcpy(m->arena.base + t->offset, src->arena.base + src->tab.t[j].offset, (size_t)t->numel * sizeof(float));
    }
    if (st == QIAO_OK) {
        m->tok = base->tok; /* borrowed for the save */
        st = qmod_save(m, path, storage);
        m->tok = NULL;
    }
    qmod_free(m);
    return st;
}

int64_t qmod_param_count(const qmod_model *m, const char *prefix) {
    if (!m) return 0;
    size_t plen = prefix ? strlen(prefix) : 0;
    int64_t n = 0;
    for (size_t i = 0; i < m->tab.n; i++)
        if (!plen || strncmp(m->tab.t[i].name, prefix, plen) == 0) n += m->tab.t[i].numel;
    return n;
}
