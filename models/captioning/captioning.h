/* models/captioning/captioning.h - training the caption decoder
 * (fusion/decoder.h) on the shapes world's long captions.
 *
 * Training starts from a trained embedding model (its image tower and
 * tokenizer) and a recipe (models/configs/caption.json): the recipe's
 * "decoder" section becomes the model's decoder, the towers are copied in,
 * and the run goes through the generic trainer (models/train/trainer.h)
 * with the retrieval loader's batches (models/data/data.h: a picture and its
 * long caption in a language drawn per row): the picture's tokens after the
 * image tower's trunk are the decoder's context; the decoder reads
 * [BOS_lang, p_1 .. p_n] and is taught [p_1 .. p_n, EOS] (teacher forcing),
 * cross-entropy with label smoothing over the real positions. The image
 * tower is frozen or fine-tuned as the recipe says. A run can also start
 * from a caption model (fine-tuning) or resume from its checkpoint.
 *
 * Validation is teacher-forced too: the loss and the share of next pieces
 * the decoder ranks first, over the validation split's first scenes in both
 * languages. What captions it writes is measured elsewhere (generation).
 *
 * Not a public header: prefix qmod_cap_. */
#ifndef QIAO_MODELS_CAPTIONING_H
#define QIAO_MODELS_CAPTIONING_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/profile.h"
#include "models/data/data.h"
#include "models/generate.h"
#include "models/picture.h"
#include "models/train/trainer.h"

/* The recipe's "train" object. */
typedef struct qmod_cap_hparams {
    qtr_hparams tr;      /* steps, lr, warmup, clip, decay, eval/ckpt cadence */
    int64_t batch;       /* captions per step (default 64) */
    uint64_t seed;       /* decoder initialization and data order (default 1) */
    bool freeze_image;   /* keep the image tower as loaded (default true) */
    float smoothing;     /* label smoothing (default 0.1) */
    int64_t eval_scenes; /* validation scenes, each in both languages (default 500) */
} qmod_cap_hparams;

/* Defaults overridden by a recipe's "train" object; unknown keys or bad
 * values are QIAO_ERR_FORMAT naming "train.<key>". Keys beyond the
 * trainer's: batch, seed, freeze_image, smoothing, eval_scenes. */
qiao_status qmod_cap_hparams_from_json(const char *recipe_json, const char *what, qmod_cap_hparams *out);

/* Teacher forcing for rows of a text batch (qmod_batch_text): in (B, T+1)
 * = [BOS of row's language, pieces], padded with EOS; target (B, T+1) =
 * [pieces, EOS], -1 at padding. A caption longer than max_len - 1 pieces
 * keeps its first max_len - 1 and no EOS (its end is not taught). *T_out =
 * min(T + 1, max_len). */
void qmod_cap_teacher(const qmod_config *cfg, const qmod_batch *text, const uint8_t *lang, int32_t *in, int32_t *target,
                      int64_t *T_out);

typedef struct qmod_cap_train_params {
    const char *recipe_path; /* models/configs/caption.json: "decoder", "train" */
    const char *init_path;   /* the embedding model whose image tower and tokenizer start the run, or a caption model */
    const char *data_dir;    /* train split */
    const char *val_dir;     /* validation split or NULL */
    const char *out_path;    /* the final model (bf16), written atomically */
    const char *ckpt_path;   /* checkpoint (a model file plus the optimizer state) */
    const char *resume_path; /* checkpoint to resume from, or NULL */
    const char *log_path;    /* CSV log or NULL */
    qmod_cap_hparams hp;     /* after qmod_cap_hparams_from_json and overrides */
    int threads, loader_threads;
    bool no_memo;            /* run the frozen tower every step (tests compare it with the memo); a memo
                                over QMOD_MEMO_MAX bytes, or one that cannot be allocated, is skipped */
    int (*on_step)(const qtr_log *log, void *user); /* after every step; nonzero stops with a checkpoint */
    void *user;
    const volatile sig_atomic_t *stop;
    struct qc_prof *prof;
    int64_t prof_skip;
} qmod_cap_train_params;

qiao_status qmod_cap_train(const qmod_cap_train_params *p);

/* ---- the picture as the decoder reads it -------------------------------------------- */

/* The decoder's context for the pictures of `seq` (qmod_tokens): the
 * patches as they are, or, with decoder.places G, their G x G places
 * pooled into `pl` (models/picture.h; its backward is
 * qmod_places_backward). *T = the context tokens per picture. */
qiao_status qmod_cap_context(const qmod_model *m, const qmod_token_seq *seq, qmod_places *pl, const float **ctx,
                             int64_t *T);

/* ---- writing a caption ---------------------------------------------------------- */

/* Describes `img` in `lang` (QMOD_LANG_ZH or QMOD_LANG_EN) with the model's
 * decoder: the image tower's tokens, a KV cache of gp->beam_size rows (1
 * unless beam search) and qmod_generate (models/generate.h) with gp's
 * strategy, max_len (at most the decoder's max_len), beam, sampling,
 * token callback and cancel; its BOS, EOS, prompt and tokenizer are the
 * model's, so the caller's are ignored. *out holds the pieces and their
 * text (free with qmod_gen_result_free). QIAO_ERR_UNSUPPORTED for a model
 * without a decoder or tokenizer; QIAO_ERR_INVALID_ARGUMENT or
 * QIAO_ERR_TOO_LARGE for a bad language, beam or length. A model is only
 * read: any number of captions may be written at once on different threads. */
qiao_status qmod_caption(const qb_exec *ex, const qmod_model *m, const qiao_image *img, int lang,
                         const qmod_gen_params *gp, qmod_gen_result *out);

#endif /* QIAO_MODELS_CAPTIONING_H */
