/* sdk/backend/backend.h - the kernels behind sdk/nn, behind one interface.
 *
 * A backend is a table of primitive kernels (qb_ops). The layers in sdk/nn
 * call only through an execution context (qb_exec) that names the table, the
 * CPU thread count and, for CUDA, the stream and library handles. The CPU
 * table (sdk/backend/cpu) always builds; a CUDA table (sdk/backend/cuda:
 * cuBLAS for gemm, cuDNN for attention/conv, kernels launched on ex->stream)
 * fills the same slots, so layer callers never change when it arrives.
 *
 * Conventions for every kernel:
 *   - row-major; activations are (B, T, C) with C contiguous (channels last);
 *   - pointers are backend memory (host on CPU, device on CUDA), except those
 *     documented as host (scalars returned through `double *`);
 *   - masks are uint8, 1 = a real token, 0 = padding; a NULL mask = all real;
 *   - token ids and class targets are int32;
 *   - a backward ACCUMULATES (+=) into every gradient it writes, unless its
 *     comment says it overwrites; gradient accumulation over micro-batches and
 *     a layer feeding several consumers are therefore free. Zero gradients
 *     before the first backward.
 *   - sizes are int64_t.
 */
#ifndef QIAO_BACKEND_H
#define QIAO_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qiao.h"

typedef struct qb_ops qb_ops;
/* Weights packed once for inference (sdk/backend/cpu/gemm_packed.c). */
typedef struct qb_packed_set qb_packed_set;
/* The per-layer profiler (sdk/core/profile.h). */
struct qc_prof;

/* The arithmetic a packed set's GEMMs use (sdk/backend/cpu/gemm_lowp.c). */
typedef enum qb_precision { QB_PREC_F32 = 0, QB_PREC_BF16 = 1, QB_PREC_INT8 = 2 } qb_precision;

typedef enum qb_kind { QB_CPU = 0, QB_CUDA = 1 } qb_kind;

typedef struct qb_exec {
    const qb_ops *ops;
    qb_kind kind;
    int n_threads;   /* threads a CPU kernel splits its work over (>= 1) */
    void *stream;    /* cudaStream_t on CUDA; NULL on CPU */
    void *handles;   /* backend-private (cuBLAS/cuDNN handles); NULL on CPU */
    /* CPU: immutable weights packed for the inference GEMM, or NULL (every
     * GEMM through OpenBLAS). Not owned. Only for weights that do not change
     * while this context uses the set: a trainer must leave it NULL. */
    const qb_packed_set *packed;
    /* Where sdk/nn's layers and the trainer report their scopes, or NULL
     * (then a layer pays one branch). Not owned; see sdk/core/profile.h. */
    struct qc_prof *prof;
    /* The arithmetic of the linear layers' GEMMs (nn_linear_forward and
     * nn_linear_backward: forward, dX and dW): QB_PREC_F32 (the default) or
     * QB_PREC_BF16 (mixed-precision training: operands rounded to bf16, f32
     * sums, through ops->gemm_bf16 where the backend has it). Parameters,
     * gradients and the optimizer stay f32 either way. Attention's products
     * and everything else stay f32. */
    qb_precision linear_prec;
} qb_exec;

/* A CPU context with `n_threads` workers (0 = all cores), packed = NULL.
 * Never fails. */
void qb_exec_cpu(qb_exec *ex, int n_threads);

struct qb_ops {
    const char *name;

    /* ---- memory ---------------------------------------------------------- */
    void *(*alloc)(const qb_exec *ex, size_t bytes); /* 64-byte aligned, zeroed; NULL on OOM */
    void (*free)(const qb_exec *ex, void *p);
    void (*zero)(const qb_exec *ex, void *p, size_t bytes);
    void (*to_device)(const qb_exec *ex, void *dst, const void *src_host, size_t bytes);
    void (*to_host)(const qb_exec *ex, void *dst_host, const void *src, size_t bytes);
    void (*copy)(const qb_exec *ex, void *dst, const void *src, size_t bytes); /* device to device */
    qiao_status (*sync)(const qb_exec *ex);

    /* ---- dense ----------------------------------------------------------- */
    /* C_i = alpha * op(A_i) op(B_i) + beta * C_i for i < batch, where
     * X_i = X + i * stride_x; op(A) is M x K, op(B) is K x N, C is M x N. */
    void (*gemm)(const qb_exec *ex, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                 float alpha, const float *A, int64_t lda, int64_t stride_a, const float *B,
                 int64_t ldb, int64_t stride_b, float beta, float *C, int64_t ldc, int64_t stride_c,
                 int64_t batch);
    /* Optional: gemm (batch 1) with op(A) and op(B) rounded to bf16 and the
     * products summed in f32 (qb_exec.linear_prec). Returns false, touching
     * nothing, when it cannot take the call (no memory for its packed
     * copies); nn then calls gemm. NULL: the backend has none (f32). */
    bool (*gemm_bf16)(const qb_exec *ex, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                      const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);
    /* out[n, c] += bias[c] */
    void (*bias_forward)(const qb_exec *ex, float *out, const float *bias, int64_t N, int64_t C);
    /* Optional: n (1..8) linear layers of one shape on the same input, fused
     * (nn_linears_forward): outs[j] (N, OC) = inp (N, C) ws[j]^T + bs[j],
     * and gelu_outs[j] = gelu(outs[j]) as gelu_forward computes it; bs,
     * gelu_outs and their entries may be NULL. Returns false, touching
     * nothing, when it does not take the call, and nn composes gemm,
     * bias_forward and gelu_forward instead; NULL never takes it. The CPU
     * takes it for weights packed for inference: one pass and one parallel
     * region for an MLP layer with its GELU, or for attention's Q, K, V. */
    bool (*linears_fused)(const qb_exec *ex, int n, float *const *outs, float *const *gelu_outs, const float *inp,
                          const float *const *ws, const float *const *bs, int64_t N, int64_t C, int64_t OC);
    /* dbias[c] += sum_n dout[n, c] */
    void (*bias_backward)(const qb_exec *ex, float *dbias, const float *dout, int64_t N, int64_t C);

    /* ---- elementwise and reductions --------------------------------------- */
    void (*add)(const qb_exec *ex, float *out, const float *a, const float *b, int64_t n); /* out = a + b */
    void (*axpy)(const qb_exec *ex, float *y, float alpha, const float *x, int64_t n);    /* y += alpha x */
    void (*scale)(const qb_exec *ex, float *x, float s, int64_t n);                      /* x *= s */
    void (*dot)(const qb_exec *ex, double *out_host, const float *a, const float *b, int64_t n);
    void (*sumsq)(const qb_exec *ex, double *out_host, const float *x, int64_t n);
    /* exact GELU: x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)), as torch.nn.GELU() */
    void (*gelu_forward)(const qb_exec *ex, float *out, const float *inp, int64_t n);
    void (*gelu_backward)(const qb_exec *ex, float *dinp, const float *inp, const float *dout, int64_t n);
    /* GELU's backward for the output of a linear layer with bias: dinp (N, C)
     * = gelu'(inp) dout, OVERWRITTEN (the first writer of that gradient), and
     * dbias (C) += its column sums (that layer's bias gradient; NULL skips
     * it). One call so that a backend may fuse the two; each column is
     * summed in row order, as bias_backward does (the CPU runs two passes:
     * its one-pass kernel measured slower, activation.c). */
    void (*gelu_bias_backward)(const qb_exec *ex, float *dinp, float *dbias, const float *inp, const float *dout,
                               int64_t N, int64_t C);
    /* quick_gelu(x) = x sigmoid(1.702 x), OpenAI CLIP's activation, and its
     * backward as gelu_bias_backward's (dinp OVERWRITTEN, dbias += column
     * sums, NULL skips it). */
    void (*quick_gelu_forward)(const qb_exec *ex, float *out, const float *inp, int64_t n);
    void (*quick_gelu_bias_backward)(const qb_exec *ex, float *dinp, float *dbias, const float *inp,
                                     const float *dout, int64_t N, int64_t C);
    /* Inverted dropout: keep[i] = 1 with probability 1-p, out = inp * keep / (1-p).
     * The mask depends only on (seed, i), never on the thread count. */
    void (*dropout_forward)(const qb_exec *ex, float *out, uint8_t *keep, const float *inp, int64_t n,
                            float p, uint64_t seed);
    void (*dropout_backward)(const qb_exec *ex, float *dinp, const float *dout, const uint8_t *keep,
                             int64_t n, float p);

    /* ---- normalization --------------------------------------------------- */
    /* Over the last dim C of N rows. mean, rstd: (N), saved for backward. */
    void (*layernorm_forward)(const qb_exec *ex, float *out, float *mean, float *rstd, const float *inp,
                              const float *w, const float *b, int64_t N, int64_t C, float eps);
    void (*layernorm_backward)(const qb_exec *ex, float *dinp, float *dw, float *db, const float *dout,
                               const float *inp, const float *w, const float *mean, const float *rstd,
                               int64_t N, int64_t C);
    /* A residual add and the LayerNorm that reads its sum, in one pass:
     * h = (y + bias) + x, then out = layernorm(h) as layernorm_forward. bias
     * (C) may be NULL; h may alias y (a linear's output completed in place).
     * With out NULL only h is computed (mean, rstd, w, b are then unused). */
    void (*residual_layernorm_forward)(const qb_exec *ex, float *h, float *out, float *mean, float *rstd,
                                       const float *x, const float *y, const float *bias, const float *w,
                                       const float *b, int64_t N, int64_t C, float eps);
    /* layernorm_backward with the residual branch's gradient added in the
     * same pass: dinp = dres + d layernorm / d inp . dout, OVERWRITTEN (dres
     * NULL adds nothing; dres may alias dinp). dw, db accumulate. */
    void (*residual_layernorm_backward)(const qb_exec *ex, float *dinp, float *dw, float *db, const float *dres,
                                        const float *dout, const float *inp, const float *w, const float *mean,
                                        const float *rstd, int64_t N, int64_t C);
    /* out = inp / max(||inp||_2, eps) per row; norm (N) keeps the divisor. */
    void (*l2norm_forward)(const qb_exec *ex, float *out, float *norm, const float *inp, int64_t N,
                           int64_t C, float eps);
    void (*l2norm_backward)(const qb_exec *ex, float *dinp, const float *dout, const float *out,
                            const float *norm, int64_t N, int64_t C, float eps);
    /* Row softmax over the last dim. */
    void (*softmax_forward)(const qb_exec *ex, float *out, const float *inp, int64_t N, int64_t C);
    void (*softmax_backward)(const qb_exec *ex, float *dinp, const float *dout, const float *out,
                             int64_t N, int64_t C);

    /* ---- attention core --------------------------------------------------
     * q (B, Tq, C), k and v (B, Tk, C), C = H * D with head h in columns
     * [h*D, (h+1)*D). att (B, H, Tq, Tk) receives the softmax probabilities
     * of scale * q k^T + key_bias, scale = 1/sqrt(D), with key_bias (B, Tk) or
     * NULL added to every head's and query's score of key j (a per-key prior,
     * as dynamic modality weighting's log-weights), keys masked by key_mask
     * (B, Tk) and, if causal, key j > query i masked (needs Tq == Tk). A query
     * row whose keys are all masked gets all-zero probabilities and a zero
     * output. out (B, Tq, C) = att v, heads concatenated back. */
    void (*attention_forward)(const qb_exec *ex, float *out, float *att, const float *q, const float *k,
                              const float *v, const uint8_t *key_mask, const float *key_bias, int64_t B,
                              int64_t Tq, int64_t Tk, int64_t C, int64_t H, bool causal);
    /* datt: scratch (B, H, Tq, Tk), overwritten (it holds the scores'
     * gradient on return). dq, dk, dv = beta * themselves + their gradients:
     * beta 1 accumulates, beta 0 overwrites (every element, masked keys'
     * rows included). dkey_bias (B, Tk) accumulates unless it is NULL. */
    void (*attention_backward)(const qb_exec *ex, float *dq, float *dk, float *dv, float *dkey_bias, float *datt,
                               const float *dout, const float *q, const float *k, const float *v, const float *att,
                               int64_t B, int64_t Tq, int64_t Tk, int64_t C, int64_t H, float beta);

    /* ---- lookup and convolution ------------------------------------------ */
    /* out (N, C) = table[ids] with table (V, C). An id outside [0, V) gives a
     * zero row (callers validate ids before; this only keeps memory safe). */
    void (*embedding_forward)(const qb_exec *ex, float *out, const int32_t *ids, const float *table,
                              int64_t N, int64_t V, int64_t C);
    void (*embedding_backward)(const qb_exec *ex, float *dtable, const float *dout, const int32_t *ids,
                               int64_t N, int64_t V, int64_t C);
    /* 1-D convolution, channels last: inp (B, T, C), w (OC, C, K) as PyTorch's
     * Conv1d, b (OC) or NULL, out (B, Tout, OC) with
     * Tout = (T + 2*pad - K) / stride + 1; dilation 1; zero padding. */
    void (*conv1d_forward)(const qb_exec *ex, float *out, const float *inp, const float *w, const float *b,
                           int64_t B, int64_t T, int64_t C, int64_t OC, int64_t K, int64_t stride,
                           int64_t pad);
    void (*conv1d_backward)(const qb_exec *ex, float *dinp, float *dw, float *db, const float *dout,
                            const float *inp, const float *w, int64_t B, int64_t T, int64_t C, int64_t OC,
                            int64_t K, int64_t stride, int64_t pad);

    /* ---- pooling over a sequence ----------------------------------------- */
    /* inp (B, T, C), mask (B, T) or NULL, out (B, C). A sequence with no real
     * token pools to zeros. argmax (B, C) int32 is the chosen t, -1 if none. */
    void (*pool_mean_forward)(const qb_exec *ex, float *out, const float *inp, const uint8_t *mask,
                              int64_t B, int64_t T, int64_t C);
    void (*pool_mean_backward)(const qb_exec *ex, float *dinp, const float *dout, const uint8_t *mask,
                               int64_t B, int64_t T, int64_t C);
    void (*pool_max_forward)(const qb_exec *ex, float *out, int32_t *argmax, const float *inp,
                             const uint8_t *mask, int64_t B, int64_t T, int64_t C);
    void (*pool_max_backward)(const qb_exec *ex, float *dinp, const float *dout, const int32_t *argmax,
                              int64_t B, int64_t T, int64_t C);
    /* out[b] = inp[b, the last real t]: a causal encoder's summary token
     * (CLIP's end of text, the last real token of a right-padded row). */
    void (*pool_last_forward)(const qb_exec *ex, float *out, const float *inp, const uint8_t *mask, int64_t B,
                              int64_t T, int64_t C);
    void (*pool_last_backward)(const qb_exec *ex, float *dinp, const float *dout, const uint8_t *mask, int64_t B,
                               int64_t T, int64_t C);

    /* ---- gated mix (the mixing half; the logits come from gemm) -------------
     * g = sigmoid(logits) is stored in g (may alias logits);
     * out = g * a + (1 - g) * b. */
    void (*gate_forward)(const qb_exec *ex, float *out, float *g, const float *logits, const float *a,
                         const float *b, int64_t n);
    /* da += g dout; db += (1-g) dout; dlogits = dout (a - b) g (1 - g) (overwrites). */
    void (*gate_backward)(const qb_exec *ex, float *da, float *db, float *dlogits, const float *dout,
                          const float *a, const float *b, const float *g, int64_t n);

    /* ---- losses ---------------------------------------------------------- */
    /* Per-row cross-entropy of logits (N, V) against targets (N), with label
     * smoothing s: target distribution (1-s) onehot + s/V. losses (N) gets 0
     * where targets[i] == ignore_index; probs (N, V) keeps the softmax.
     * targets == NULL means row i's target is i (the diagonal of a square
     * logits matrix: what contrastive losses need, with no buffer). */
    void (*cross_entropy_forward)(const qb_exec *ex, float *losses, float *probs, const float *logits,
                                  const int32_t *targets, int64_t N, int64_t V, float smoothing,
                                  int32_t ignore_index);
    /* dlogits[i] += scale * (probs[i] - target_dist[i]); ignored rows get
     * nothing. One scale for all rows: mean reductions weigh rows equally. */
    void (*cross_entropy_backward)(const qb_exec *ex, float *dlogits, float scale, const float *probs,
                                   const int32_t *targets, int64_t N, int64_t V, float smoothing,
                                   int32_t ignore_index);

    /* ---- optimizer --------------------------------------------------------- */
    /* One AdamW step (Loshchilov & Hutter) over n floats: decoupled decay
     * p -= lr * wd * p, then the Adam update with bias corrections
     * bc1 = 1 - beta1^t and bc2 = 1 - beta2^t computed by the caller, on the
     * gradient g = grad * grad_scale (gradient clipping's factor, applied
     * here rather than in a pass of its own; 1 = as is). */
    void (*adamw_step)(const qb_exec *ex, float *param, const float *grad, float *m, float *v, int64_t n,
                       float grad_scale, float lr, float beta1, float beta2, float eps, float weight_decay, float bc1,
                       float bc2);
};

/* The CPU backend's table (sdk/backend/cpu). */
extern const qb_ops qb_cpu_ops;

#endif /* QIAO_BACKEND_H */
