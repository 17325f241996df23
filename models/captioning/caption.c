/* models/captioning/caption.c - writing a caption: the image tower's tokens
 * of a picture, the decoder's KV cache (fusion/decoder.h) and the search
 * (models/generate.h) stepping it, the pieces read back as text. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "models/captioning/captioning.h"

qiao_status qmod_cap_context(const qmod_model *m, const qmod_token_seq *seq, qmod_places *pl, const float **ctx,
                             int64_t *T) {
    const int64_t G = m->cfg.decoder.places;
    *ctx = seq->x, *T = seq->T;
    if (G == 0) return QIAO_OK;
    qiao_status st = qmod_places_pool(pl, seq->x, seq->B, seq->T, G, seq->C, "caption");
    if (st != QIAO_OK) return st;
    *ctx = pl->x, *T = G * G;
    return QIAO_OK;
}

typedef struct cap_step_ctx {
    const qb_exec *ex;
    const qmod_model *m;
    qf_decoder_cache *cache;
    int32_t bos;      /* the language token the search's BOS stands for */
    int32_t *ids;     /* (rows) */
    int64_t *parents; /* (rows) */
} cap_step_ctx;

/* The search sees the tokenizer's pieces only: its first token (BOS) is the
 * language token here, and the language tokens' logits are left out, so it
 * never writes one. The cache holds `rows` (the beam width) rows; a step of
 * fewer beams runs the rest as copies of row 0 and drops their logits. */
static qiao_status cap_step(void *user, const qmod_gen_step *s, float *logits) {
    cap_step_ctx *c = user;
    const qf_decoder_config *dc = &c->m->cfg.decoder;
    const int64_t rows = c->cache->B, V = c->m->cfg.text.vocab;
    if (s->n_new != 1 || s->pos != c->cache->len || s->n_beams > rows)
        return qc_error(QIAO_ERR_INTERNAL, "caption: a step of %d tokens at %d for %d rows (cache at %lld, %lld rows)",
                        s->n_new, s->pos, s->n_beams, (long long)c->cache->len, (long long)rows);
    for (int64_t r = 0; r < rows; r++) {
        const bool real = r < s->n_beams;
        c->ids[r] = s->pos == 0 ? c->bos : real ? s->tokens[r] : s->tokens[0];
        c->parents[r] = s->parents && real ? s->parents[r] : s->parents ? s->parents[0] : r;
    }
    const float *lg = NULL;
    qiao_status st =
        qf_decoder_step(c->ex, c->cache, &c->m->p.decoder, c->ids, s->parents ? c->parents : NULL, dc, &lg);
    if (st != QIAO_OK) return st;
    for (int b = 0; b < s->n_beams; b++)
        memcpy(logits + (size_t)b * (size_t)V, lg + b * dc->vocab, (size_t)V * sizeof(float));
    return QIAO_OK;
}

qiao_status qmod_caption(const qb_exec *ex, const qmod_model *m, const qiao_image *img, int lang,
                         const qmod_gen_params *gp, qmod_gen_result *out) {
    if (out) memset(out, 0, sizeof *out);
    if (!ex || !m || !img || !gp || !out) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_caption: NULL argument");
    if (!m->cfg.has_decoder || !m->tok)
        return qc_error(QIAO_ERR_UNSUPPORTED, "model %s writes no captions (it has no decoder%s)", m->cfg.name,
                        m->tok ? "" : " and no tokenizer");
    if (lang != QMOD_LANG_ZH && lang != QMOD_LANG_EN)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_caption: language %d is neither zh (0) nor en (1)", lang);
    const qf_decoder_config *dc = &m->cfg.decoder;
    if (gp->max_len < 1 || gp->max_len > dc->max_len)
        return qc_error(gp->max_len < 1 ? QIAO_ERR_INVALID_ARGUMENT : QIAO_ERR_TOO_LARGE,
                        "caption: max_len %d outside 1..%lld (the decoder's positions)", gp->max_len,
                        (long long)dc->max_len);
    const int64_t rows = gp->strategy == QMOD_GEN_BEAM ? gp->beam_size : 1;
    if (rows < 1 || rows > QMOD_GEN_MAX_BEAM)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "caption: beam size %lld outside 1..%d", (long long)rows,
                        QMOD_GEN_MAX_BEAM);
    qmod_batch b;
    qmod_work w;
    qf_decoder_cache cache;
    memset(&b, 0, sizeof b), memset(&w, 0, sizeof w), memset(&cache, 0, sizeof cache);
    float *y = NULL;
    cap_step_ctx c = {ex, m, &cache, qmod_dec_bos(&m->cfg, lang), NULL, NULL};
    qmod_places pl;
    memset(&pl, 0, sizeof pl);
    const float *emb, *ctx = NULL;
    int64_t T = 0;
    qmod_token_seq seq;
    qiao_status st = qmod_batch_images(m, &img, 1, &b);
    if (st == QIAO_OK) st = qmod_work_init(&w, m, QMOD_IMAGE, 1, 0, false);
    if (st == QIAO_OK) st = qmod_forward(ex, m, &w, &b, &emb);
    if (st == QIAO_OK) st = qmod_tokens(m, &w, &b, &seq);
    if (st == QIAO_OK) st = qmod_cap_context(m, &seq, &pl, &ctx, &T);
    if (st == QIAO_OK) st = qf_decoder_cache_init(&cache, dc, rows, gp->max_len, T);
    const size_t per = st == QIAO_OK ? (size_t)(T * seq.C) : 0;
    if (st == QIAO_OK &&
        (!(y = malloc((size_t)rows * per * sizeof(float))) || !(c.ids = malloc((size_t)rows * sizeof(int32_t))) ||
         !(c.parents = malloc((size_t)rows * sizeof(int64_t)))))
        st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "caption: out of memory");
    if (st == QIAO_OK) {
        for (int64_t r = 0; r < rows; r++) memcpy(y + (size_t)r * per, ctx, per * sizeof(float));
        qf_decoder_cache_start(ex, &cache, &m->p.decoder, y, NULL, dc);
        qmod_gen_params p = *gp;
        p.bos_id = QIAO_PIECE_BOS; /* the step reads the language token in its place */
        p.eos_id = qmod_dec_eos(&m->cfg);
        p.prompt = NULL, p.n_prompt = 0;
        p.tok = m->tok;
        st = qmod_generate(&p, cap_step, &c, (int32_t)m->cfg.text.vocab, out);
    }
    free(y), free(c.ids), free(c.parents);
    qmod_places_free(&pl);
    qf_decoder_cache_free(&cache);
    qmod_work_free(&w);
    qmod_batch_free(&b);
    return st;
}
