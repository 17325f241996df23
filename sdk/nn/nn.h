/* sdk/nn/nn.h - layers, losses and optimization, llm.c style.
 *
 * Every layer is a pair x_forward(ex, outputs..., inputs..., dims) /
 * x_backward(ex, input grads..., param grads..., dout, saved..., dims).
 * Backward functions ACCUMULATE (+=) into every gradient they write; zero the
 * gradient arena before a step's first backward. The exceptions say so in
 * their names or comments: a `_first` variant, the residual LayerNorm
 * backward and the GELU + bias backward OVERWRITE their input gradient (the
 * first writer of a buffer then needs no zeroed buffer); parameter gradients
 * always accumulate. A gradient pointer that may be NULL says so (the layer
 * then skips computing it).
 *
 * Layers run on whatever backend `ex` names (sdk/backend/backend.h); all
 * tensor pointers are that backend's memory. Shapes: row-major, channels
 * last: (B, T, C) activations, N = number of rows. Linear weights are
 * (OC, C) as PyTorch stores them, so files and fixtures map one to one.
 */
#ifndef QIAO_NN_H
#define QIAO_NN_H

#include "backend/backend.h"
#include "core/core.h"

/* ---- linear (linear.c) ---------------------------------------------------- */
/* out (N, OC) = inp (N, C) w^T + b; w (OC, C); b (OC) or NULL. */
void nn_linear_forward(const qb_exec *ex, float *out, const float *inp, const float *w, const float *b,
                       int64_t N, int64_t C, int64_t OC);
/* n linear layers of one shape on the same input, as n nn_linear_forward
 * calls, each followed by gelu_outs[j] = gelu(outs[j]) where gelu_outs and
 * its entry are not NULL (an MLP's first layer keeps both, outs for the
 * backward). bs and its entries may be NULL. One call so that a backend can
 * fuse them (backend.h, linears_fused): attention's Q, K and V, or a layer
 * with its GELU. */
void nn_linears_forward(const qb_exec *ex, int n, float *const *outs, float *const *gelu_outs, const float *inp,
                        const float *const *ws, const float *const *bs, int64_t N, int64_t C, int64_t OC);
/* dinp (N, C) or NULL; dw (OC, C); db (OC) or NULL. */
void nn_linear_backward(const qb_exec *ex, float *dinp, float *dw, float *db, const float *dout,
                        const float *inp, const float *w, int64_t N, int64_t C, int64_t OC);
/* As nn_linear_backward, but dinp is OVERWRITTEN (dinp = dout w): for the
 * first writer of that gradient. dw, db still accumulate. */
void nn_linear_backward_first(const qb_exec *ex, float *dinp, float *dw, float *db, const float *dout, const float *inp,
                              const float *w, int64_t N, int64_t C, int64_t OC);

/* ---- normalization (norm.c) ----------------------------------------------- */
#define NN_LAYERNORM_EPS 1e-5f
void nn_layernorm_forward(const qb_exec *ex, float *out, float *mean, float *rstd, const float *inp,
                          const float *w, const float *b, int64_t N, int64_t C);
void nn_layernorm_backward(const qb_exec *ex, float *dinp, float *dw, float *db, const float *dout,
                           const float *inp, const float *w, const float *mean, const float *rstd,
                           int64_t N, int64_t C);
/* A residual add and the LayerNorm after it, in one pass over the rows:
 * h (N, C) = (y + bias) + x, then out = layernorm(h) as nn_layernorm_forward
 * (mean, rstd saved). bias (C) may be NULL (it is the bias of the linear
 * layer that produced y, added here rather than in a pass of its own); h may
 * alias y. Bit-identical to bias_forward, nn_residual_forward and
 * nn_layernorm_forward in turn. */
void nn_residual_layernorm_forward(const qb_exec *ex, float *h, float *out, float *mean, float *rstd, const float *x,
                                   const float *y, const float *bias, const float *w, const float *b, int64_t N,
                                   int64_t C);
/* The two forwards above with the model's own epsilon (an imported BERT's
 * 1e-12): the backwards need none, they read the saved rstd. */
void nn_layernorm_forward_eps(const qb_exec *ex, float *out, float *mean, float *rstd, const float *inp, const float *w,
                              const float *b, int64_t N, int64_t C, float eps);
void nn_residual_layernorm_forward_eps(const qb_exec *ex, float *h, float *out, float *mean, float *rstd,
                                       const float *x, const float *y, const float *bias, const float *w,
                                       const float *b, int64_t N, int64_t C, float eps);
/* h (N, C) = (y + bias) + x with bias (C) or NULL; h may alias y: a linear
 * layer's bias and the residual add after it in one pass. */
void nn_bias_residual_forward(const qb_exec *ex, float *h, const float *x, const float *y, const float *bias, int64_t N,
                              int64_t C);
/* The backward of x -> x + f(layernorm(x)) at x: dinp = dres +
 * d layernorm/d inp . dout, OVERWRITTEN, with dres the gradient the residual
 * path carries (NULL: none; may alias dinp). dw, db accumulate. Bit-identical
 * to zeroing dinp, nn_residual_backward(dinp, dres) and nn_layernorm_backward. */
void nn_residual_layernorm_backward(const qb_exec *ex, float *dinp, float *dw, float *db, const float *dres,
                                    const float *dout, const float *inp, const float *w, const float *mean,
                                    const float *rstd, int64_t N, int64_t C);
/* L2 normalization of each row; norm (N) saved for backward. eps as
 * torch.nn.functional.normalize (1e-12). */
#define NN_L2NORM_EPS 1e-12f
void nn_l2norm_forward(const qb_exec *ex, float *out, float *norm, const float *inp, int64_t N, int64_t C);
void nn_l2norm_backward(const qb_exec *ex, float *dinp, const float *dout, const float *out,
                        const float *norm, int64_t N, int64_t C);

/* ---- activations, softmax, dropout, residual (activation.c) ------------- */
void nn_gelu_forward(const qb_exec *ex, float *out, const float *inp, int64_t n);
void nn_gelu_backward(const qb_exec *ex, float *dinp, const float *inp, const float *dout, int64_t n);
/* GELU's backward where inp (N, C) is a linear layer's output with bias:
 * dinp = gelu'(inp) dout, OVERWRITTEN, and dbias (C) += the column sums of
 * dinp (that layer's bias gradient, so its nn_linear_backward passes db =
 * NULL; NULL here skips it). One call so a backend may fuse the two
 * passes; bit-identical to zeroing dinp, nn_gelu_backward and
 * bias_backward. */
void nn_gelu_bias_backward(const qb_exec *ex, float *dinp, float *dbias, const float *inp, const float *dout, int64_t N,
                           int64_t C);
/* The MLP's activation: GELU (exact, erf) or OpenAI CLIP's quick GELU,
 * x sigmoid(1.702 x). */
typedef enum nn_act { NN_ACT_GELU = 0, NN_ACT_QUICK_GELU = 1 } nn_act;
void nn_quick_gelu_forward(const qb_exec *ex, float *out, const float *inp, int64_t n);
/* As nn_gelu_bias_backward: dinp OVERWRITTEN, dbias (C) accumulates (NULL skips it). */
void nn_quick_gelu_bias_backward(const qb_exec *ex, float *dinp, float *dbias, const float *inp, const float *dout,
                                 int64_t N, int64_t C);
void nn_softmax_forward(const qb_exec *ex, float *out, const float *inp, int64_t N, int64_t C);
void nn_softmax_backward(const qb_exec *ex, float *dinp, const float *dout, const float *out, int64_t N,
                         int64_t C);
/* p = 0 (or inference) copies inp to out and sets keep to all ones. */
void nn_dropout_forward(const qb_exec *ex, float *out, uint8_t *keep, const float *inp, int64_t n, float p,
                        uint64_t seed);
void nn_dropout_backward(const qb_exec *ex, float *dinp, const float *dout, const uint8_t *keep, int64_t n,
                         float p);
/* out = a + b; backward: da += dout, db += dout. */
void nn_residual_forward(const qb_exec *ex, float *out, const float *a, const float *b, int64_t n);
void nn_residual_backward(const qb_exec *ex, float *da, float *db, const float *dout, int64_t n);

/* ---- attention (attention.c) --------------------------------------------- */
/* Multi-head scaled dot-product attention core (projections are linears):
 * self-attention passes the same sequence's q, k, v; cross-attention passes
 * k, v from the other sequence (Tk != Tq). key_mask (B, Tk) and key_bias
 * (B, Tk, added to the scores) may be NULL. See qb_ops.attention_forward. */
void nn_attention_forward(const qb_exec *ex, float *out, float *att, const float *q, const float *k,
                          const float *v, const uint8_t *key_mask, const float *key_bias, int64_t B, int64_t Tq,
                          int64_t Tk, int64_t C, int64_t H, bool causal);
/* datt: scratch (B, H, Tq, Tk). dq, dk, dv accumulate; dkey_bias (B, Tk)
 * accumulates unless NULL. */
void nn_attention_backward(const qb_exec *ex, float *dq, float *dk, float *dv, float *dkey_bias, float *datt,
                           const float *dout, const float *q, const float *k, const float *v,
                           const float *att, int64_t B, int64_t Tq, int64_t Tk, int64_t C, int64_t H);
/* As nn_attention_backward, but dq, dk, dv are OVERWRITTEN (every element). */
void nn_attention_backward_first(const qb_exec *ex, float *dq, float *dk, float *dv, float *datt, const float *dout,
                                 const float *q, const float *k, const float *v, const float *att, int64_t B,
                                 int64_t Tq, int64_t Tk, int64_t C, int64_t H);

/* ---- embedding (embedding.c) ---------------------------------------------- */
void nn_embedding_forward(const qb_exec *ex, float *out, const int32_t *ids, const float *table, int64_t N,
                          int64_t V, int64_t C);
void nn_embedding_backward(const qb_exec *ex, float *dtable, const float *dout, const int32_t *ids,
                           int64_t N, int64_t V, int64_t C);

/* ---- conv1d (conv.c) ------------------------------------------------------- */
/* See qb_ops.conv1d_forward. Tout = (T + 2*pad - K) / stride + 1. */
static inline int64_t nn_conv1d_out_len(int64_t T, int64_t K, int64_t stride, int64_t pad) {
    return (T + 2 * pad - K) / stride + 1;
}
void nn_conv1d_forward(const qb_exec *ex, float *out, const float *inp, const float *w, const float *b,
                       int64_t B, int64_t T, int64_t C, int64_t OC, int64_t K, int64_t stride, int64_t pad);
void nn_conv1d_backward(const qb_exec *ex, float *dinp, float *dw, float *db, const float *dout,
                        const float *inp, const float *w, int64_t B, int64_t T, int64_t C, int64_t OC,
                        int64_t K, int64_t stride, int64_t pad);

/* ---- pooling (pool.c) ------------------------------------------------------- */
void nn_pool_mean_forward(const qb_exec *ex, float *out, const float *inp, const uint8_t *mask, int64_t B,
                          int64_t T, int64_t C);
void nn_pool_mean_backward(const qb_exec *ex, float *dinp, const float *dout, const uint8_t *mask,
                           int64_t B, int64_t T, int64_t C);
void nn_pool_max_forward(const qb_exec *ex, float *out, int32_t *argmax, const float *inp,
                         const uint8_t *mask, int64_t B, int64_t T, int64_t C);
void nn_pool_max_backward(const qb_exec *ex, float *dinp, const float *dout, const int32_t *argmax,
                          int64_t B, int64_t T, int64_t C);

/* out (B, C) = inp[b, the last real token] (zeros for a row with none);
 * the backward adds dout[b] there. */
void nn_pool_last_forward(const qb_exec *ex, float *out, const float *inp, const uint8_t *mask, int64_t B, int64_t T,
                          int64_t C);
void nn_pool_last_backward(const qb_exec *ex, float *dinp, const float *dout, const uint8_t *mask, int64_t B,
                           int64_t T, int64_t C);

/* ---- gated mix (gate.c) ----------------------------------------------------- */
/* g = sigmoid(W [a; b] + c), out = g * a + (1 - g) * b, per element:
 * a, b, out, g (N, C); W (C, 2C) as a linear on the concatenation; c (C).
 * g is saved for backward. */
void nn_gate_forward(const qb_exec *ex, float *out, float *g, const float *a, const float *b,
                     const float *w, const float *c, int64_t N, int64_t C);
/* scratch (N, C) is overwritten. da, db, dw, dc accumulate. */
void nn_gate_backward(const qb_exec *ex, float *da, float *db, float *dw, float *dc, float *scratch,
                      const float *dout, const float *a, const float *b, const float *g, const float *w,
                      int64_t N, int64_t C);

/* ---- losses (loss.c) --------------------------------------------------------- */
/* Mean cross-entropy over rows whose target != ignore_index (0 if none);
 * returned through *loss (host). losses (N) and probs (N, V) are saved. */
void nn_cross_entropy_forward(const qb_exec *ex, float *loss, float *losses, float *probs,
                              const float *logits, const int32_t *targets, int64_t N, int64_t V,
                              float smoothing, int32_t ignore_index);
/* dlogits += dloss * d(mean loss)/d(logits); dloss is the upstream scalar (host). */
void nn_cross_entropy_backward(const qb_exec *ex, float *dlogits, float dloss, const float *probs,
                               const int32_t *targets, int64_t N, int64_t V, float smoothing,
                               int32_t ignore_index);

/* Symmetric InfoNCE (CLIP) over N pairs: a, b (N, D) L2-normalized rows;
 * logits = exp(logit_scale) a b^T with logit_scale clamped to [0, ln 100]
 * as CLIP does; loss = (CE(logits, diag) + CE(logits^T, diag)) / 2.
 * logit_scale is a host pointer to the learnable scalar (a parameter). */
#define NN_INFONCE_MAX_LOGIT_SCALE 4.605170185988091f /* ln(100) */
typedef struct nn_infonce_acts {
    float *logits;  /* (N, N) scaled a b^T */
    float *probs_r; /* (N, N) row softmax of logits */
    float *probs_c; /* (N, N) row softmax of logits^T */
    float *losses;  /* (N) scratch */
    float *scratch; /* (N, N) scratch for backward */
} nn_infonce_acts;
void nn_infonce_forward(const qb_exec *ex, float *loss, nn_infonce_acts *acts, const float *a, const float *b,
                        const float *logit_scale, int64_t N, int64_t D);
/* da, db (N, D) and dlogit_scale (host scalar) accumulate; dloss is the
 * upstream scalar. No gradient flows into logit_scale while it is clamped. */
void nn_infonce_backward(const qb_exec *ex, float *da, float *db, float *dlogit_scale, float dloss,
                         nn_infonce_acts *acts, const float *a, const float *b, const float *logit_scale,
                         int64_t N, int64_t D);

/* ---- optimization (optim.c) --------------------------------------------------- */
typedef struct nn_adamw_config {
    float lr;            /* overwritten each step by the schedule if one is used */
    float beta1, beta2;
    float eps;
    float weight_decay;  /* decoupled; skipped for tensors flagged QC_NO_DECAY */
} nn_adamw_config;

static inline nn_adamw_config nn_adamw_default(void) {
    nn_adamw_config c = {1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f};
    return c;
}

/* One AdamW step over every tensor of `tab` (params, grads, m, v are arenas
 * laid out by tab) on the gradients times grad_scale (nn_clip_scale's factor,
 * or 1). t is the 1-based step number. Tensors flagged QC_FROZEN are left
 * alone; a tensor's lr_scale (> 0) multiplies its learning rate (a new head
 * on a pretrained encoder learns faster than the encoder moves). */
void nn_adamw_update(const qb_exec *ex, const qc_table *tab, float *params, const float *grads, float *m, float *v,
                     int64_t t, float grad_scale, const nn_adamw_config *cfg);
/* Global L2 norm of the gradient arena; if above max_norm (> 0) scales all
 * gradients by max_norm / norm. Returns the norm before clipping. */
float nn_clip_grad_norm(const qb_exec *ex, float *grads, int64_t n, float max_norm);
/* Global L2 norm of the gradients of tab's tensors not flagged QC_FROZEN
 * (grads laid out by tab): what a frozen tensor's gradient holds never
 * counts. Equal to nn_clip_grad_norm's when nothing is frozen. */
double nn_grad_norm(const qb_exec *ex, const qc_table *tab, const float *grads);
/* The factor clipping to max_norm applies: max_norm / norm when
 * max_norm > 0 and norm is finite and above it, else 1 (the factor
 * nn_clip_grad_norm scales by, to the bit). */
float nn_clip_scale(double norm, float max_norm);
/* Zeroes the gradients of tab's tensors not flagged QC_FROZEN; a frozen
 * tensor's gradient is left as it is (no update reads it). */
void nn_zero_grads(const qb_exec *ex, const qc_table *tab, float *grads);
/* Linear warmup from 0 to lr_max over `warmup` steps, then cosine decay to
 * lr_min at `total`; step is 0-based; after total stays at lr_min. */
float nn_lr_warmup_cosine(int64_t step, int64_t warmup, int64_t total, float lr_max, float lr_min);


/* ---- transformer block (transformer.c) --------------------------------------
 * Pre-norm (the default: GPT-2, ViT, CLIP and every qiao tower):
 *   h   = x + proj(attention(q(ln1 x), k(ln1 x), v(ln1 x), mask))
 *   out = h + fc2(gelu(fc(ln2 h)))
 * Post-norm (BERT, XLM-RoBERTa: the imported text encoders):
 *   h   = x + proj(attention(q x, k x, v x, mask)),   n = ln1 h
 *   out = ln2(n + fc2(gelu(fc n)))
 * where gelu may be quick_gelu (act) and the attention causal (a token
 * reads itself and those before it: CLIP's text tower), with separate q,
 * k, v projections (so a cross-attention block reuses the
 * same shapes). C = width, F = MLP width, H = heads. Parameters and
 * activations are described in tensor tables, so the same struct binds to
 * the parameter, gradient and moment arenas. */

/* Where a block's LayerNorms sit. */
typedef enum nn_norm { NN_NORM_PRE = 0, NN_NORM_POST = 1 } nn_norm;
typedef struct nn_block_params {
    float *ln1_w, *ln1_b;   /* (C) */
    float *q_w, *q_b;       /* (C, C), (C) */
    float *k_w, *k_b;       /* (C, C), (C) */
    float *v_w, *v_b;       /* (C, C), (C) */
    float *proj_w, *proj_b; /* (C, C), (C) */
    float *ln2_w, *ln2_b;   /* (C) */
    float *fc_w, *fc_b;     /* (F, C), (F) */
    float *fc2_w, *fc2_b;   /* (C, F), (C) */
} nn_block_params;

/* Post-norm reuses the fields: ln1 holds ln1(h), the stream after the
 * attention; ln2 holds n + fc2(...), the sum ln2 reads. */
typedef struct nn_block_acts {
    float *ln1, *ln1_mean, *ln1_rstd; /* (N, C), (N), (N) with N = B*T */
    float *q, *k, *v;                 /* (N, C) */
    float *att;                       /* (B, H, T, T) probabilities */
    float *atty;                      /* (N, C) attention output, heads concatenated */
    float *h;                         /* (N, C) after the attention residual */
    float *ln2, *ln2_mean, *ln2_rstd; /* (N, C), (N), (N) */
    float *fc;                        /* (N, F) before GELU */
    float *fc_gelu;                   /* (N, F) */
    float *out;                       /* (N, C) block output */
} nn_block_acts;

typedef struct nn_block_dims {
    int64_t B, T, C, F, H;
    nn_norm norm; /* pre (default) or post */
    float eps;    /* the LayerNorms' epsilon; 0 = NN_LAYERNORM_EPS */
    nn_act act;   /* the MLP's activation: GELU (default) or quick GELU */
    bool causal;  /* self-attention reads only the token itself and those before it */
} nn_block_dims;

/* Appends the block's parameters to `tab` as "<prefix>ln1.weight", ... with
 * PyTorch-style names, bound at `field_base` + offsetof(nn_block_params, ...)
 * inside the caller's struct. Init: weights N(0, 0.02), the residual output
 * projections (proj, fc2) scaled by 1/sqrt(2 * n_layers) as GPT-2 does,
 * biases 0, norms 1; norms and biases flagged QC_NO_DECAY. */
qiao_status nn_block_describe(qc_table *tab, const char *prefix, const nn_block_dims *d, int64_t n_layers,
                              size_t field_base);
/* Appends the block's activations (for d->B x d->T tokens) to `tab`. */
qiao_status nn_block_describe_acts(qc_table *tab, const char *prefix, const nn_block_dims *d,
                                   size_t field_base);
/* x (B, T, C) -> a->out; mask (B, T) or NULL. */
void nn_block_forward(const qb_exec *ex, nn_block_acts *a, const nn_block_params *p, const float *x,
                      const uint8_t *mask, const nn_block_dims *d);
/* Backward from dout (B, T, C). dx is OVERWRITTEN with dL/dx; g (parameter
 * gradients) accumulates; da is an activation-gradient buffer with the
 * layout of the activations, scratch whose contents on entry do not matter
 * (each of its gradients is written before it is read; da->out is unused). */
void nn_block_backward(const qb_exec *ex, float *dx, nn_block_params *g, nn_block_acts *da,
                       const float *dout, const nn_block_acts *a, const nn_block_params *p, const float *x,
                       const nn_block_dims *d);

/* ---- encoder trunk (trunk.c) -----------------------------------------------
 * What every modality's encoder ends with: positions, L pre-norm blocks,
 * a final layernorm, masked mean pooling, a projection to the shared space
 * and L2 normalization:
 *   h_0 = x + pos[t];  h_l = block_l(h_{l-1});  z = ln_f(h_L)
 *   e = l2norm(W_proj masked_pool(z) + b_proj)        e: (B, D), D = 1024
 * (pool: mean or max over the real tokens, nn_trunk_dims.pool)
 * The modality-specific front end (hybrid text embedding, patch embedding,
 * conv stem) produces x (B, T, C) and consumes dx.
 *
 * The options an imported encoder needs (a BERT: post-norm blocks, a
 * LayerNorm on the embeddings, eps 1e-12, the first token's vector or the
 * mean, no projection):
 *   ln_in   h_0 = ln_in(x + pos[t])
 *   norm    post-norm blocks, and then no ln_f: z = h_L
 *   eps     every LayerNorm's epsilon
 *   pool    NN_POOL_FIRST: z of token 0 ([CLS]); NN_POOL_LAST: z of the
 *           last real token (CLIP's end of text)
 *   proj    NN_PROJ_NOBIAS: W_proj without b_proj; NN_PROJ_NONE: e =
 *           l2norm(pool(z)), D = C
 *   act     the blocks' MLP activation (CLIP: quick GELU)
 *   causal  causal self-attention (CLIP's text tower)
 * CLIP's vision tower is ln_in + pre-norm blocks + ln_f read at the class
 * token, its text tower causal pre-norm blocks + ln_f read at the last
 * token; both project without bias. */
#define NN_MAX_LAYERS 24

/* How the trunk pools its tokens. Mean suits inputs whose every token
 * carries content (text, speech); max lets a few tokens decide (an image
 * whose objects cover a small part of mostly uniform background: mean
 * pooling makes every such picture embed alike, and contrastive training
 * then stalls at its chance loss). */
typedef enum nn_pool { NN_POOL_MEAN = 0, NN_POOL_MAX = 1, NN_POOL_FIRST = 2, NN_POOL_LAST = 3 } nn_pool;

/* The projection to the shared space. */
typedef enum nn_proj { NN_PROJ_BIAS = 0, NN_PROJ_NOBIAS = 1, NN_PROJ_NONE = 2 } nn_proj;

/* Reads the optional "pool" key ("mean", "max", "first" or "last", default `dflt`)
 * of a modality's config object; `section` names it in the error. */
qiao_status nn_pool_from_json(const void *cjson_obj, const char *section, nn_pool dflt, nn_pool *out);

typedef struct nn_trunk_dims {
    int64_t B, T, C, F, H; /* batch, tokens, width, MLP width, heads */
    int64_t L;             /* layers */
    int64_t max_T;         /* rows of the position table */
    int64_t D;             /* output (shared space) width */
    nn_pool pool;          /* masked mean (default), masked max, or the first token */
    nn_norm norm;          /* the blocks' norms: pre (default, with ln_f) or post (no ln_f) */
    float eps;             /* every LayerNorm's epsilon; 0 = NN_LAYERNORM_EPS */
    bool ln_in;            /* a LayerNorm on x + pos before the blocks */
    nn_proj proj;          /* with bias (default), without, or none (D = C) */
    nn_act act;            /* the blocks' MLP activation */
    bool causal;           /* causal self-attention in the blocks */
} nn_trunk_dims;

typedef struct nn_trunk_params {
    float *pos;                          /* (max_T, C) learned positions */
    float *ln_in_w, *ln_in_b;            /* (C) with ln_in */
    nn_block_params blocks[NN_MAX_LAYERS];
    float *ln_w, *ln_b;                  /* (C) pre-norm only */
    float *proj_w, *proj_b;              /* (D, C), (D): as proj says */
} nn_trunk_params;

typedef struct nn_trunk_acts {
    float *h0;                           /* (B*T, C) x + positions */
    float *ln_in, *ln_in_mean, *ln_in_rstd; /* (B*T, C), (B*T), (B*T) with ln_in */
    nn_block_acts blocks[NN_MAX_LAYERS];
    float *lnf, *lnf_mean, *lnf_rstd;    /* (B*T, C), (B*T), (B*T); post-norm: lnf = h_L */
    float *pooled;                       /* (B, C) */
    float *pool_arg;                     /* (B, C) int32 argmax of max pooling */
    float *proj;                         /* (B, D) before normalization */
    float *norm;                         /* (B) */
    float *emb;                          /* (B, D) the L2-normalized embedding */
    float *flow[2];                      /* (B*T, C) gradient between blocks (backward only) */
} nn_trunk_acts;

/* Parameters as "<prefix>pos", "<prefix>ln_in.weight" (ln_in),
 * "<prefix>blocks.<l>.…", "<prefix>ln_f.weight" (pre-norm),
 * "<prefix>proj.weight"... bound at field_base + offsetof(nn_trunk_params, …). */
qiao_status nn_trunk_describe(qc_table *tab, const char *prefix, const nn_trunk_dims *d, size_t field_base);
qiao_status nn_trunk_describe_acts(qc_table *tab, const char *prefix, const nn_trunk_dims *d, size_t field_base);
/* x (B, T, C), mask (B, T) or NULL (all real); T <= max_T. -> a->emb, and
 * a->lnf (B*T, C): every token after the final norm, for heads that attend
 * over the sequence (padded rows hold values too; use the mask). */
void nn_trunk_forward(const qb_exec *ex, nn_trunk_acts *a, const nn_trunk_params *p, const float *x,
                      const uint8_t *mask, const nn_trunk_dims *d);
/* The gradient enters at the pooled embedding, demb (B, D), at the token
 * sequence after the final norm (a->lnf), dtokens (B*T, C), or both; either
 * may be NULL (a caption decoder or cross-modal attention reads the tokens,
 * the contrastive objective the embedding). A head that ignores padding
 * passes zeros there. dx (B, T, C) accumulates; g accumulates; da
 * (activation gradients, same layout as the activations) is scratch whose
 * contents on entry do not matter: the trunk writes each of them before it
 * reads it, so a caller need not clear them (about 0.5 GB per tower at
 * base.json's batch 128). */
void nn_trunk_backward(const qb_exec *ex, float *dx, nn_trunk_params *g, nn_trunk_acts *da, const float *demb,
                       const float *dtokens, const nn_trunk_acts *a, const nn_trunk_params *p, const float *x,
                       const uint8_t *mask, const nn_trunk_dims *d);

#endif /* QIAO_NN_H */
