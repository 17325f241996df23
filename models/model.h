/* models/model.h - the model container: one config, one parameter table
 * holding its encoders ("text.", "image.", "audio.": any non-empty subset,
 * models/tower.h) and a learnable contrastive temperature for each pair of
 * them, an optional embedded tokenizer, and the model file (.safetensors)
 * that stores all of it.
 *
 * Model file: every parameter under its table name (F32 or BF16), the
 * tokenizer's tensors when one is attached, and the metadata "qiao.config"
 * (the config JSON, printed unformatted by cJSON), "qiao.format" =
 * QMOD_FORMAT and "qiao.version".
 *
 * Not a public header (yet): prefix qmod_ (qm_ belongs to modalities/media). */
#ifndef QIAO_MODELS_MODEL_H
#define QIAO_MODELS_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"
#include "core/safetensors.h"
#include "fusion/decoder.h"
#include "fusion/fuser.h"
#include "fusion/head.h"
#include "modalities/audio/encoder.h"
#include "modalities/image/encoder.h"
#include "modalities/text/encoder.h"
#include "qiao.h"

#define QMOD_FORMAT "qiao-model-1"
#define QMOD_META_CONFIG "qiao.config"
#define QMOD_META_FORMAT "qiao.format"
#define QMOD_META_VERSION "qiao.version"
/* "int8": every GEMM weight (a linear's or conv's ".weight", not the
 * "_emb.weight" tables) is an I8 tensor of codes q with an F32 tensor
 * "<name>.scale" (one scale per output channel, shape[0]); the value is
 * q * scale. "bf16": those weights are BF16. Written by `qiao quantize`. */
#define QMOD_META_QUANTIZED "qiao.quantized"
#define QMOD_NAME_MAX 64
/* Bounds of the optional "space" and "prompts" (qmod_config_space): a space
 * is a checkpoint's name ("intfloat/multilingual-e5-small"); a prompt an
 * instruction of a sentence or two. */
#define QMOD_SPACE_MAX 256
#define QMOD_PROMPT_MAX 1024
#define QMOD_MAX_PROMPTS 8
/* Bound of a head's "context": earlier turns of a conversation it reads. */
#define QMOD_HEAD_MAX_CONTEXT 64
/* ln(1/0.07): CLIP's initial temperature. */
#define QMOD_LOGIT_SCALE_INIT 2.65926003f

/* The towers (models/tower.h), indexed by modality. */
typedef enum qmod_modality { QMOD_TEXT = 0, QMOD_IMAGE = 1, QMOD_AUDIO = 2, QMOD_N_MODALITIES = 3 } qmod_modality;

enum { QMOD_PAIR_TEXT_IMAGE = 0, QMOD_PAIR_AUDIO_TEXT = 1, QMOD_PAIR_AUDIO_IMAGE = 2, QMOD_N_PAIRS = 3 };

#define QMOD_MAX_HEADS 8

/* What a head reads from its tower: the pooled embedding (B, D) or the
 * token sequence after the trunk's final norm (B*T, C). */
typedef enum qmod_head_input { QMOD_HEAD_EMBEDDING = 0, QMOD_HEAD_TOKENS = 1 } qmod_head_input;

/* One entry of the config's "heads" object, keyed by its name:
 *   "intent": {"kind": "mlp", "tower": "text", "input": "embedding",
 *              "hidden": 0, "classes": 12,
 *              "labels": ["greeting", ...],
 *              "label_text": {"zh": ["问候", ...], "en": ["greeting", ...]}}
 * kind "mlp" (fusion/head.h; the only kind so far), tower one the model
 * holds or "fusion" (the fuser's z, for a model with a "fusion" section;
 * input is then ignored), input "embedding" (default) or "tokens", hidden
 * >= 0 (default 0), classes >= 1. Optional "labels": one distinct key per
 * class (what an application matches on); optional "label_text": per
 * language code, one display string per class (VQA answers in the
 * question's language). Read them with qmod_head_label(). Optional
 * "scale" (> 0, default 1) multiplies the input before the head: a head
 * on the unit-length embedding needs it (NormFace's s), or its logits stay
 * within a few units of 0 at a fine-tuning learning rate and never become
 * confident. A classifier's calibration (models/intent) rides along:
 * "temperature" (default 1) divides the logits before the softmax,
 * "threshold" (in [0, 1], default 0) is the calibrated top probability
 * below which a text is out of scope, and "oos_label" names the label, if
 * any, that means out of scope (CLINC150's "oos"); "multi_label" (default
 * false) makes each class a yes-or-no of its own (a sigmoid per class, a
 * text may have several or none: CrossWOZ's dialogue acts); "context"
 * (a head on the text embedding, default 0) is how many earlier turns of
 * a conversation the text tower reads after the text (models/intent). Its
 * parameters are "heads.<name>.*". */
typedef struct qmod_head_config {
    char name[QMOD_NAME_MAX]; /* [a-z0-9_], starting with a letter */
    qmod_modality tower;      /* unused when fused */
    bool fused;               /* reads the fuser's z */
    qmod_head_input input;
    qf_mlp_config mlp;        /* mlp.in = embed_dim, the tower's trunk width or the fusion width */
    float scale;              /* the input's factor ("scale", default 1) */
    float temperature;        /* "temperature", default 1 */
    float threshold;          /* "threshold", default 0 */
    int32_t oos_class;        /* the class "oos_label" names; -1 when none */
    bool multi_label;         /* "multi_label", default false */
    int64_t context;          /* "context": earlier turns read after the text, default 0 */
} qmod_head_config;

/* A parsed model config: "name", "embed_dim", a section for each tower the
 * model holds ("text", "image", "audio"; at least one), an optional
 * "fusion" section (fusion/fuser.h; needs the image tower and text or
 * audio):
 *   "fusion": {"width": 256, "layers": 2, "heads": 4, "mlp": 1024,
 *              "gate_hidden": 64, "weighting": "learned", "positions": true}
 * whose parameters are "fusion.*", an optional "decoder" section
 * (fusion/decoder.h, the caption decoder; needs the text tower, whose
 * tokenizer's pieces it writes, and the image tower, whose tokens it reads):
 *   "decoder": {"width": 256, "layers": 3, "heads": 4, "mlp": 1024,
 *               "max_len": 64, "tied": true, "positions": true}
 * whose parameters are "decoder.*", and optional "heads". "positions"
 * (default false) gives the fuser's picture stream, or the decoder's
 * context, a learned vector per picture token (fuser.h). The decoder's
 * vocabulary is the tokenizer's pieces (its end-of-sequence piece ends a
 * text) and QMOD_DEC_SPECIALS more: the language tokens that start a
 * Chinese or an English text (qmod_dec_eos, qmod_dec_bos). Two optional
 * keys say how the model is used rather than what it is (qmod_config_space,
 * qmod_config_prompt below):
 *   "space": "intfloat/multilingual-e5-small",
 *   "prompts": {"query": "query: ", "document": "passage: "}
 * A model without "space" is in a space of its own name. */
typedef struct qmod_config {
    char name[QMOD_NAME_MAX];
    int64_t embed_dim;           /* D, shared by the towers' projections */
    uint32_t towers;             /* bit (1 << qmod_modality) per tower held */
    qe_text_config text;         /* each valid when its tower is held */
    qe_image_config image;
    qe_audio_config audio;
    bool has_fusion;
    qf_fuser_config fusion;      /* valid when has_fusion; in_width from the towers */
    bool has_decoder;
    qf_decoder_config decoder;   /* valid when has_decoder; vocab and ctx_width from the towers */
    int n_heads;
    qmod_head_config heads[QMOD_MAX_HEADS]; /* in the order the config lists them */
    char *json;                  /* the config as stored in model files; owned */
    char space[QMOD_SPACE_MAX];  /* "space"; "" when the config has none */
    char *prompts;               /* n_prompts "name\0text\0" pairs back to back, prompts_len bytes; owned, NULL
                                    when none */
    size_t prompts_len;
    int n_prompts;
} qmod_config;

/* The decoder ends a caption with the tokenizer's own end-of-sequence piece
 * (SentencePiece's </s>, id 3: tokenizers/spm_shim.cpp; qiao.h
 * QIAO_PIECE_EOS) and starts it with a language token, one of the
 * QMOD_DEC_SPECIALS ids after the tokenizer's pieces. */
#define QMOD_DEC_SPECIALS 2
#define QMOD_DEC_EOS 3
static inline int32_t qmod_dec_eos(const qmod_config *cfg) {
    (void)cfg;
    return QMOD_DEC_EOS;
}
/* lang: QMOD_LANG_ZH (0) or QMOD_LANG_EN (1), models/data/data.h */
static inline int32_t qmod_dec_bos(const qmod_config *cfg, int lang) {
    return (int32_t)cfg->text.vocab + (lang != 0);
}

static inline bool qmod_has_tower(const qmod_config *cfg, qmod_modality mod) {
    return (int)mod >= 0 && mod < QMOD_N_MODALITIES && (cfg->towers >> mod & 1u);
}

/* The two towers of a contrastive pair (QMOD_PAIR_*): a and b. */
void qmod_pair_towers(int pair, qmod_modality *a, qmod_modality *b);
/* True when the config holds both towers of the pair (and so its temperature). */
bool qmod_has_pair(const qmod_config *cfg, int pair);

/* Parses a config from a JSON string. `what` names it in messages (a path,
 * "qiao.config of m.safetensors"); NULL gives "config". A bad config is
 * QIAO_ERR_FORMAT naming `what` and the key. Free with qmod_config_free(). */
qiao_status qmod_config_from_string(const char *json, const char *what, qmod_config *out);
/* Reads and parses a config file (QIAO_ERR_IO when unreadable). */
qiao_status qmod_config_from_file(const char *path, qmod_config *out);
/* `cfg` with text.vocab, text.char_vocab and text.k set to the tokenizer's:
 * the tokenizer decides them (its character table holds the characters its
 * corpus has, up to the size it was trained for), so a config names sizes
 * and a model takes them from the tokenizer it is built with. QIAO_ERR_FORMAT
 * when the result is not a valid config (char_kernels wider than k). */
qiao_status qmod_config_for_tokenizer(const qmod_config *cfg, const qiao_tokenizer *tok, qmod_config *out);
/* Deep copy (the JSON string is duplicated). */
qiao_status qmod_config_copy(const qmod_config *src, qmod_config *dst);
/* Frees cfg->json and cfg->prompts and clears them. Accepts NULL. */
void qmod_config_free(qmod_config *cfg);

/* The embedding space the model's vectors live in: the config's "space"
 * (1 to QMOD_SPACE_MAX - 1 bytes of UTF-8 without control characters), else
 * its name. Vectors of two models compare only when their spaces are the
 * same (the search index refuses the others). Owned by cfg. */
const char *qmod_config_space(const qmod_config *cfg);
/* The text the config's "prompts" give for the role `name` ("query",
 * "document"; a name is [a-z0-9_] starting with a letter, the text at most
 * QMOD_PROMPT_MAX - 1 bytes of UTF-8, possibly empty; at most
 * QMOD_MAX_PROMPTS of them, and only with a text tower): what to put before
 * a text of that role before embedding it, as the model was trained (e5's
 * "query: " and "passage: "). NULL when the config has none of that name.
 * Owned by cfg. */
const char *qmod_config_prompt(const qmod_config *cfg, const char *name);

/* The bound parameters: the table's float* fields point into the arena. */
typedef struct qmod_params {
    qe_text_params text;
    qe_image_params image;
    qe_audio_params audio;
    float *logit_scale[QMOD_N_PAIRS];   /* (1) each, indexed by QMOD_PAIR_*; NULL for a pair not held */
    qf_fuser_params fusion;             /* bound when the config has a fusion section */
    /* With fusion: each tower's token statistics, "fusion.<m>.in_mean" and
     * "fusion.<m>.in_std" (its width each, QC_FROZEN): models/vqa.c hands
     * the fuser (tokens - in_mean) / in_std. Measured on training data when
     * a VQA model is made (models/answering); 0 and 1 until then. */
    float *tok_mean[QF_NMOD], *tok_std[QF_NMOD];
    qf_mlp_params heads[QMOD_MAX_HEADS];
    qf_decoder_params decoder;          /* bound when the config has a decoder section */
} qmod_params;

typedef struct qmod_model {
    qmod_config cfg;
    qc_table tab;            /* every parameter, names as in the model file */
    qc_arena arena;          /* tab.total floats */
    qmod_params p;           /* bound into arena */
    qiao_tokenizer *tok;     /* optional; owned */
    /* What the file's metadata QMOD_META_QUANTIZED says its GEMM weights are
     * stored as (`qiao quantize`): QB_PREC_INT8 or QB_PREC_BF16; QB_PREC_F32
     * for an ordinary file. The arena holds them as f32 all the same; the
     * public API computes at this precision unless a session asks for
     * another (qiao_session_params.precision). */
    qb_precision precision;
} qmod_model;

/* Builds the parameter table of `cfg` (the towers it holds under "text.",
 * "image.", "audio.", then the temperatures of the pairs it holds,
 * "logit_scale.text_image", "logit_scale.audio_text",
 * "logit_scale.audio_image", QC_NO_DECAY), then its heads'
 * "heads.<name>.*", with fields relative to qmod_params. `tab` must be
 * empty. */
qiao_status qmod_describe(qc_table *tab, const qmod_config *cfg);

/* A new model with parameters initialized from `seed`; free with qmod_free(). */
qiao_status qmod_create(const qmod_config *cfg, uint64_t seed, qmod_model **out);
/* Accepts NULL. */
void qmod_free(qmod_model *m);
/* Copies every tensor of `src` whose name `dst` holds too (a new VQA or
 * caption model takes its towers from an embedding model this way);
 * QIAO_ERR_FORMAT naming a tensor whose size differs. Returns how many were
 * copied through *n_copied (may be NULL). */
qiao_status qmod_copy_shared(qmod_model *dst, const qmod_model *src, size_t *n_copied);

/* Writes to `path` (atomically, parameters as `storage`) a copy of `base`
 * that also holds `donor`'s caption decoder: the donor's config section
 * "decoder" and every "decoder." tensor, replacing any decoder base had.
 * What base has beside it (its towers, fuser and heads) stays as it is:
 * this joins a VQA model and a caption model trained on the same frozen
 * picture tower into one file. The decoder reads the picture tower's
 * tokens and writes the tokenizer's pieces, so QIAO_ERR_INVALID_ARGUMENT
 * names the first picture-tower tensor or tokenizer piece that differs
 * between the two, unless `force`; QIAO_ERR_UNSUPPORTED when the donor has
 * no decoder or either model lacks a tokenizer. */
qiao_status qmod_graft_decoder(const qmod_model *base, const qmod_model *donor, bool force, const char *path,
                               qiao_dtype storage);

/* Writes the model to `path` atomically, every parameter converted to
 * `storage` (QIAO_DTYPE_F32 or QIAO_DTYPE_BF16; anything else is
 * QIAO_ERR_INVALID_ARGUMENT), plus the tokenizer when attached. */
qiao_status qmod_save(const qmod_model *m, const char *path, qiao_dtype storage);

/* qmod_save plus `n_extra` more tensors and metadata pairs (a training
 * checkpoint adds the optimizer state this way; the file stays a model file
 * that qmod_load reads, ignoring the extras). */
qiao_status qmod_save_ex(const qmod_model *m, const char *path, qiao_dtype storage, const qc_st_entry *extra,
                         size_t n_extra, const qc_st_kv *extra_meta, size_t n_extra_meta);

/* Loads a model file: parses "qiao.config", rebuilds the table, loads every
 * parameter with shape checks (BF16/F16 widened to f32) and the tokenizer
 * when its tensors are present. QIAO_ERR_IO when the file cannot be read;
 * any problem with the content is QIAO_ERR_FORMAT naming the file and the
 * tensor or key. The caller frees *out with qmod_free(). */
qiao_status qmod_load(const char *path, qmod_model **out);
/* The same from a file image in memory (only read during the call). `name`
 * is used in messages (NULL gives "<memory>"). */
qiao_status qmod_load_memory(const void *data, size_t size, const char *name, qmod_model **out);

/* Loads a standalone tokenizer file and attaches it (replacing any other),
 * after checking that its vocab, char_vocab and k equal the text config's:
 * a mismatch is QIAO_ERR_INVALID_ARGUMENT giving both numbers. */
qiao_status qmod_set_tokenizer(qmod_model *m, const char *tokenizer_file);

/* The index of the head named `name`, or -1. */
int qmod_head_find(const qmod_config *cfg, const char *name);
/* Class k's label of head `head` into buf: with lang NULL its key from
 * "labels", else its text in `lang` from "label_text" (falling back to the
 * key, then to the class number). Returns buf. */
const char *qmod_head_label(const qmod_config *cfg, int head, int64_t k, const char *lang, char *buf, size_t cap);
/* qmod_head_label for n classes ks[0..n) with one parse of the config (a
 * parse costs about 20 us, the labels of an answer's top k need 2k): class
 * ks[i]'s key into keys + i * cap and its text in `lang` into texts + i *
 * cap; keys or texts may be NULL. */
void qmod_head_labels(const qmod_config *cfg, int head, const int64_t *ks, int n, const char *lang, char *keys,
                      char *texts, size_t cap);

/* Parameters (elements) whose name starts with `prefix` ("text.", "image.",
 * "audio.", "logit_scale."); NULL or "" counts all. */
int64_t qmod_param_count(const qmod_model *m, const char *prefix);

#endif /* QIAO_MODELS_MODEL_H */
