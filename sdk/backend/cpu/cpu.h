/* sdk/backend/cpu/cpu.h - the CPU kernels that fill qb_cpu_ops. Each has the
 * signature of its qb_ops slot (see backend.h for semantics). Kernels split
 * their work over ex->n_threads with qiao's own pool (threads.h); GEMM goes
 * to OpenBLAS or the packed kernel. */
#ifndef QIAO_BACKEND_CPU_H
#define QIAO_BACKEND_CPU_H

#include <stdint.h>
#include <string.h>

#include "backend/backend.h"
#include "backend/cpu/threads.h"

/* ops.c: memory */
void *qb_cpu_alloc(const qb_exec *ex, size_t bytes);
void qb_cpu_free(const qb_exec *ex, void *p);
void qb_cpu_zero(const qb_exec *ex, void *p, size_t bytes);
void qb_cpu_copy(const qb_exec *ex, void *dst, const void *src, size_t bytes);
qiao_status qb_cpu_sync(const qb_exec *ex);

/* blas_buffer.c: every OpenBLAS call, gated so that OpenBLAS never maps a
 * work buffer that cannot be had (it would retry forever). qb_cpu_sgemm is
 * cblas_sgemm, row-major; false when no buffer could be had, the product
 * left undone. A kernel that gets false, on any of its threads, calls
 * qb_cpu_fault_oom() on its calling thread, and qb_cpu_sync (the backend's
 * sync) then returns QIAO_ERR_OUT_OF_MEMORY on that thread, once. */
bool qb_cpu_sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                  const float *B, int64_t ldb, float beta, float *C, int64_t ldc);
void qb_cpu_fault_oom(void);

/* blas_core.c: on the first CPU context, has OpenBLAS choose its kernels
 * again when it fell back to Prescott's on a CPU it does not know (the file
 * says why and when). Idempotent and thread-safe. */
void qb_cpu_blas_core_init(void);

/* dense.c */
/* OpenBLAS runs single-threaded; qiao's pool splits the work (see
 * dense.c for why). Call before cblas_* from inside a parallel region. */
void qb_cpu_blas_single_threaded(void);
void qb_cpu_gemm(const qb_exec *ex, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                 const float *A, int64_t lda, int64_t stride_a, const float *B, int64_t ldb, int64_t stride_b,
                 float beta, float *C, int64_t ldc, int64_t stride_c, int64_t batch);

/* gemm_packed.c: GEMM against weights packed once (inference).
 * A packed set holds copies of weights W (N, K) row-major in column panels
 * of QB_PACK_NR (zero-padded), looked up by W's address. It costs
 * ceil(N / QB_PACK_NR) * QB_PACK_NR * K floats per weight on top of W, which
 * stays in use for every GEMM the packed kernel does not take. */
#define QB_PACK_NR 32
/* erf(x) as x P(x^2) / Q(x^2) on [-4, 4] and +-erf(4) outside (erf(4) is 1
 * to within 2e-8): the rational approximation of Eigen and TensorFlow
 * (generic_fast_erf_float), written so `omp simd` vectorizes it. glibc's
 * erff is scalar and took about 10 ns an element, 12-15% of an encoder's
 * forward on the 2-core build machine (perf, batch 1 and 32); this is about
 * 0.4 ns. Max |error| 3.8e-7 over the whole line (erff: 5e-8), measured
 * against double erf on 1.2M points; torch's own vectorized GELU uses a
 * formula of the same order (A&S 7.1.26, 1.5e-7). The clamp works on the bit
 * pattern: a float select would keep GCC from vectorizing under the default
 * -ftrapping-math (see qb_exp_neg below). */
/* exp(x) for x <= 0 (softmax arguments after the row max is subtracted,
 * the GELU derivative's exp(-x^2 / 2)), written so `omp simd` vectorizes it (glibc's expf is scalar here and cost
 * as much as both GEMMs together): x = n ln2 + r with |r| <= ln2/2, exp(r) by
 * the degree-6 Taylor polynomial (relative error < 3e-7, measured over
 * [-87, 0]), 2^n built in the exponent bits. |x| > 87 (below FLT_MIN), -inf
 * (masked keys) included, gives exactly 0. Every step is branch-free integer
 * or float arithmetic: a float select or fmaxf keeps GCC from vectorizing
 * under the default -ftrapping-math. */
static inline float qb_exp_neg(float x) {
    const float ln2_hi = 0.693145751953125f, ln2_lo = 1.428606765330187e-06f;
    const float log2e = 1.44269504088896341f;
    const float round_magic = 12582912.0f; /* 1.5 * 2^23: x + magic - magic rounds to an integer */
    const uint32_t lim = 0x42AE0000u;      /* bits of 87.0f */
    uint32_t ax;
    memcpy(&ax, &x, sizeof ax);
    ax &= 0x7fffffffu; /* |x|; x <= 0 so x = -|x| */
    uint32_t live = ax <= lim ? 0xffffffffu : 0u;
    uint32_t cb = ax < lim ? ax : lim;
    float xc;
    memcpy(&xc, &cb, sizeof xc);
    xc = -xc;
    float n = (xc * log2e + round_magic) - round_magic;
    float r = xc - n * ln2_hi - n * ln2_lo;
    float p = 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    uint32_t eb = (uint32_t)((int32_t)n + 127) << 23; /* n in [-126, 0] */
    float e2n;
    memcpy(&e2n, &eb, sizeof e2n);
    float res = p * e2n;
    uint32_t rb;
    memcpy(&rb, &res, sizeof rb);
    rb &= live;
    memcpy(&res, &rb, sizeof res);
    return res;
}

static inline float qb_erf_fast(float x) {
    uint32_t b;
    memcpy(&b, &x, sizeof b);
    uint32_t ax = b & 0x7fffffffu;
    const uint32_t lim = 0x40800000u; /* 4.0f */
    ax = ax < lim ? ax : lim;
    b = (b & 0x80000000u) | ax;
    memcpy(&x, &b, sizeof x);
    const float x2 = x * x;
    float p = -2.72614225801306e-10f;
    p = p * x2 + 2.77068142495902e-08f;
    p = p * x2 + -2.10102402082508e-06f;
    p = p * x2 + -5.69250639462346e-05f;
    p = p * x2 + -7.34990630326855e-04f;
    p = p * x2 + -2.95459980854025e-03f;
    p = p * x2 + -1.60960333262415e-02f;
    float q = -1.45660718464996e-05f;
    q = q * x2 + -2.13374055278905e-04f;
    q = q * x2 + -1.68282697438203e-03f;
    q = q * x2 + -7.37332916720468e-03f;
    q = q * x2 + -1.42647390514189e-02f;
    return x * p / q;
}


/* The exact GELU, 0.5 x (1 + erf(x / sqrt 2)) (torch.nn.GELU()), with
 * qb_erf_fast: qb_cpu_gelu_forward and the packed GEMM's fused epilogue
 * (gemm_packed.c) both use this, so the two give the same values. */
static inline float qb_gelu_fast(float x) { return 0.5f * x * (1.0f + qb_erf_fast(x * 0.70710678118654752440f)); }

/* Rows (M) up to which qb_cpu_gemm takes the packed kernel. On the 2-core
 * build machine (Zen 4) bench/bench_gemm_packed measured it 1.1-1.7x faster
 * than OpenBLAS from M = 63 to 2048 at the encoders' shapes (K <= 1024), and
 * 1.15-5.5x for M <= 8; larger M was not measured, and the kernel does not
 * block K, so OpenBLAS keeps those calls. */
#define QB_PACK_MAX_M 2048
typedef struct qb_packed_src {
    const float *w; /* (N, K) row-major; must stay unchanged while the set is used */
    int64_t N, K;
} qb_packed_src;
/* Packs the n weights (copies; src and the weights are only read during the
 * call). Weights must not overlap. QIAO_ERR_OUT_OF_MEMORY or
 * QIAO_ERR_INVALID_ARGUMENT with a message. Free with qb_packed_set_free(). */
qiao_status qb_packed_set_new(const qb_packed_src *src, size_t n, qb_packed_set **out);
void qb_packed_set_free(qb_packed_set *s); /* accepts NULL */
/* Bytes the set holds (panels and index). */
size_t qb_packed_set_bytes(const qb_packed_set *s);
/* Whether this CPU runs the packed kernel (AVX-512F); without it a packed
 * set is never used, so callers need not build one. */
bool qb_cpu_gemm_packed_supported(void);
/* The packed kernel, if it takes this call: ex->packed set, the CPU has
 * AVX-512F, !trans_a && trans_b && batch == 1, and
 * B is W + k0 for a packed W with N rows, ldb == W's K and k0 + K <= W's K
 * (a column range of W, as K-blocked calls use). Returns false, touching
 * nothing, otherwise. Any M >= 1 (qb_cpu_gemm calls it only up to
 * QB_PACK_MAX_M). Bits do not depend on ex->n_threads. */
bool qb_cpu_gemm_packed(const qb_exec *ex, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                        const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc,
                        int64_t batch);

/* The backend's linears_fused (backend.h): n (1..8) linear layers on the
 * same input through the packed kernel, in one parallel region, each with
 * its bias and GELU fused into the tile epilogue (finished while the tile
 * is in registers and cache). Takes the call when ex->packed holds every
 * weight, the CPU has AVX-512F and N <= QB_PACK_MAX_M; false, touching
 * nothing, otherwise. The values equal the packed GEMM followed by
 * qb_cpu_bias_forward and qb_cpu_gelu_forward. */
bool qb_cpu_linears_packed(const qb_exec *ex, int n, float *const *outs, float *const *gelu_outs, const float *inp,
                           const float *const *ws, const float *const *bs, int64_t N, int64_t C, int64_t OC);

/* gemm_lowp.c: int8 and bf16 GEMMs on weights packed once (inference).
 * int8: per-output-channel symmetric weights (scale = max|row| / 127),
 * activations quantized per row (per token) at each call, int32 sums by
 * vpdpbusd; bf16: weights and activations rounded to bf16, f32 sums by
 * vdpbf16ps. Precision, tolerance and speed: docs/design.md "Precision" and
 * docs/benchmarks.md "int8 and bf16 inference". */
/* The kernel paths, in the order a cap selects them (qb_cpu_isa_force):
 * int8 runs the best of generic/avx2/avxvnni/avx512vnni at or below the
 * cap that the CPU has; bf16 runs avx512bf16 when the cap allows and the
 * CPU has it, else generic. Every int8 path gives the same bits; the bf16
 * paths give the same bits on normal numbers (see gemm_lowp.c). */
typedef enum qb_isa {
    QB_ISA_GENERIC = 0, /* portable C */
    QB_ISA_AVX2,        /* int8: vpmaddwd emulating vpdpbusd exactly */
    QB_ISA_AVX_VNNI,    /* int8: 256-bit vpdpbusd */
    QB_ISA_AVX512_VNNI, /* int8: 512-bit vpdpbusd */
    QB_ISA_AVX512_BF16, /* bf16: vdpbf16ps */
    QB_ISA_COUNT
} qb_isa;
/* Largest K a low-precision weight may have: int32 sums of K products of
 * at most 255 * 127 stay below 2^31. */
#define QB_LOWP_MAX_K 65536
/* Caps the paths for the whole process: "auto" (or NULL: the best this CPU
 * has), "generic", "avx2", "avxvnni", "avx512vnni", "avx512bf16".
 * QIAO_ERR_UNSUPPORTED if this CPU lacks it, QIAO_ERR_INVALID_ARGUMENT for
 * an unknown name; the cap is unchanged then. For tests and benchmarks:
 * call it before inference starts, not while other threads compute. Without
 * a call, the environment variable QIAO_ISA (same names; read once, at the
 * first low-precision GEMM; ignored when unknown or unavailable) sets it. */
qiao_status qb_cpu_isa_force(const char *name);
bool qb_cpu_isa_available(qb_isa isa);
/* The path a GEMM of this precision runs now. */
qb_isa qb_cpu_isa_selected(qb_precision prec);
const char *qb_cpu_isa_name(qb_isa isa);

/* gemm_bf16.c: C = alpha op(A) op(B) + beta C with both operands rounded
 * to bf16 as they are packed (per call) and f32 sums, vdpbf16ps's order
 * (the portable path repeats it bit for bit on normal numbers); the path
 * is qb_cpu_isa_selected(QB_PREC_BF16). Bits do not depend on
 * ex->n_threads. False, touching nothing, when its packed copies cannot be
 * allocated (or M, N or K is not positive). For mixed-precision training's
 * linear layers (qb_exec.linear_prec); docs/design.md "Precision". */
bool qb_cpu_gemm_bf16(const qb_exec *ex, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                      const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);
/* Whether bf16 GEMMs run vdpbf16ps now (the CPU has AVX512-BF16 and no
 * cap below it); otherwise they run the portable path, which is exact in
 * the same way but scalar: a trainer refuses bf16 then. */
bool qb_cpu_gemm_bf16_supported(void);

/* f32 to bf16, rounding to nearest even (NaN stays a quiet NaN). */
static inline uint16_t qb_bf16_from_f32(float x) {
    uint32_t b;
    memcpy(&b, &x, sizeof b);
    /* Both computed and selected, so loops over it vectorize. */
    const uint32_t nan = (b >> 16) | 0x40u, rounded = (b + 0x7fffu + ((b >> 16) & 1u)) >> 16;
    return (uint16_t)((b & 0x7fffffffu) > 0x7f800000u ? nan : rounded);
}

/* Symmetric int8 codes of x (K values): returns the scale max|x| / 127 and
 * writes q[k] = round(x[k] / scale) (half away from zero) in [-127, 127].
 * A row of zeros (or with a NaN or infinity) gives scale 0 and codes 0.
 * The one definition the weights (at pack time), the activations (per
 * row, per call) and `qiao quantize` use. */
float qb_lowp_quantize_row(int8_t *q, const float *x, int64_t K);

typedef struct qb_lowp_set qb_lowp_set;
/* Packs the n weights (N, K) as int8 codes with per-row scales, or as
 * bf16 (copies; looked up by W's address like qb_packed_set). K must be
 * <= QB_LOWP_MAX_K. QIAO_ERR_OUT_OF_MEMORY or QIAO_ERR_INVALID_ARGUMENT. */
qiao_status qb_lowp_set_new(const qb_packed_src *src, size_t n, qb_precision prec, qb_lowp_set **out);
void qb_lowp_set_free(qb_lowp_set *s); /* accepts NULL */
size_t qb_lowp_set_bytes(const qb_lowp_set *s);
qb_precision qb_lowp_set_precision(const qb_lowp_set *s); /* QB_PREC_F32 for NULL */
/* C (M, N) = alpha dq(A) dq(W)^T + beta C, for B == W exactly (a whole
 * weight of s, ldb == K). False, touching nothing, when s lacks W or the
 * scratch copy of A cannot be allocated (the caller's f32 path runs). Any
 * CPU: the generic path needs no particular ISA. Bits do not depend on
 * ex->n_threads or on the path (see qb_isa). */
bool qb_lowp_gemm(const qb_exec *ex, const qb_lowp_set *s, int64_t M, int64_t N, int64_t K, float alpha,
                  const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);
/* qb_cpu_linears_packed's contract (bias and GELU fused) through s. */
bool qb_lowp_linears(const qb_exec *ex, const qb_lowp_set *s, int n, float *const *outs, float *const *gelu_outs,
                     const float *inp, const float *const *ws, const float *const *bs, int64_t N, int64_t C,
                     int64_t OC);
/* The int8 codes (N, K) and scales (N) s holds for W; false if s is not
 * int8 or lacks W. For tests and `qiao quantize`. */
bool qb_lowp_weight_codes(const qb_lowp_set *s, const float *W, int8_t *codes, float *scales);
/* A packed set (gemm_packed.c) of precision prec: f32 panels of every
 * weight (for the calls the low-precision kernels do not take: column
 * ranges, and every call on a CPU where the f32 kernel runs) plus, for bf16
 * and int8, a low-precision copy the GEMMs consult first. */
qiao_status qb_packed_set_new_prec(const qb_packed_src *src, size_t n, qb_precision prec, qb_packed_set **out);
qb_precision qb_packed_set_precision(const qb_packed_set *s); /* QB_PREC_F32 for NULL */
const qb_lowp_set *qb_packed_set_lowp(const qb_packed_set *s);

void qb_cpu_bias_forward(const qb_exec *ex, float *out, const float *bias, int64_t N, int64_t C);
void qb_cpu_bias_backward(const qb_exec *ex, float *dbias, const float *dout, int64_t N, int64_t C);
void qb_cpu_add(const qb_exec *ex, float *out, const float *a, const float *b, int64_t n);
void qb_cpu_axpy(const qb_exec *ex, float *y, float alpha, const float *x, int64_t n);
void qb_cpu_scale(const qb_exec *ex, float *x, float s, int64_t n);
void qb_cpu_dot(const qb_exec *ex, double *out_host, const float *a, const float *b, int64_t n);
void qb_cpu_sumsq(const qb_exec *ex, double *out_host, const float *x, int64_t n);

/* activation.c */
void qb_cpu_gelu_forward(const qb_exec *ex, float *out, const float *inp, int64_t n);
void qb_cpu_gelu_backward(const qb_exec *ex, float *dinp, const float *inp, const float *dout, int64_t n);
void qb_cpu_gelu_bias_backward(const qb_exec *ex, float *dinp, float *dbias, const float *inp, const float *dout,
                               int64_t N, int64_t C);
void qb_cpu_quick_gelu_forward(const qb_exec *ex, float *out, const float *inp, int64_t n);
void qb_cpu_quick_gelu_bias_backward(const qb_exec *ex, float *dinp, float *dbias, const float *inp, const float *dout,
                                     int64_t N, int64_t C);
void qb_cpu_dropout_forward(const qb_exec *ex, float *out, uint8_t *keep, const float *inp, int64_t n,
                            float p, uint64_t seed);
void qb_cpu_dropout_backward(const qb_exec *ex, float *dinp, const float *dout, const uint8_t *keep,
                             int64_t n, float p);
void qb_cpu_softmax_forward(const qb_exec *ex, float *out, const float *inp, int64_t N, int64_t C);
void qb_cpu_softmax_backward(const qb_exec *ex, float *dinp, const float *dout, const float *out, int64_t N,
                             int64_t C);

/* norm.c */
void qb_cpu_layernorm_forward(const qb_exec *ex, float *out, float *mean, float *rstd, const float *inp,
                              const float *w, const float *b, int64_t N, int64_t C, float eps);
void qb_cpu_layernorm_backward(const qb_exec *ex, float *dinp, float *dw, float *db, const float *dout,
                               const float *inp, const float *w, const float *mean, const float *rstd,
                               int64_t N, int64_t C);
void qb_cpu_residual_layernorm_forward(const qb_exec *ex, float *h, float *out, float *mean, float *rstd,
                                       const float *x, const float *y, const float *bias, const float *w,
                                       const float *b, int64_t N, int64_t C, float eps);
void qb_cpu_residual_layernorm_backward(const qb_exec *ex, float *dinp, float *dw, float *db, const float *dres,
                                        const float *dout, const float *inp, const float *w, const float *mean,
                                        const float *rstd, int64_t N, int64_t C);
void qb_cpu_l2norm_forward(const qb_exec *ex, float *out, float *norm, const float *inp, int64_t N, int64_t C,
                           float eps);
void qb_cpu_l2norm_backward(const qb_exec *ex, float *dinp, const float *dout, const float *out,
                            const float *norm, int64_t N, int64_t C, float eps);

/* attention.c */
void qb_cpu_attention_forward(const qb_exec *ex, float *out, float *att, const float *q, const float *k,
                              const float *v, const uint8_t *key_mask, const float *key_bias, int64_t B,
                              int64_t Tq, int64_t Tk, int64_t C, int64_t H, bool causal);
void qb_cpu_attention_backward(const qb_exec *ex, float *dq, float *dk, float *dv, float *dkey_bias, float *datt,
                               const float *dout, const float *q, const float *k, const float *v, const float *att,
                               int64_t B, int64_t Tq, int64_t Tk, int64_t C, int64_t H, float beta);

/* embedding.c */
void qb_cpu_embedding_forward(const qb_exec *ex, float *out, const int32_t *ids, const float *table,
                              int64_t N, int64_t V, int64_t C);
void qb_cpu_embedding_backward(const qb_exec *ex, float *dtable, const float *dout, const int32_t *ids,
                               int64_t N, int64_t V, int64_t C);

/* conv.c */
void qb_cpu_conv1d_forward(const qb_exec *ex, float *out, const float *inp, const float *w, const float *b,
                           int64_t B, int64_t T, int64_t C, int64_t OC, int64_t K, int64_t stride,
                           int64_t pad);
void qb_cpu_conv1d_backward(const qb_exec *ex, float *dinp, float *dw, float *db, const float *dout,
                            const float *inp, const float *w, int64_t B, int64_t T, int64_t C, int64_t OC,
                            int64_t K, int64_t stride, int64_t pad);

/* pool.c */
void qb_cpu_pool_mean_forward(const qb_exec *ex, float *out, const float *inp, const uint8_t *mask,
                              int64_t B, int64_t T, int64_t C);
void qb_cpu_pool_mean_backward(const qb_exec *ex, float *dinp, const float *dout, const uint8_t *mask,
                               int64_t B, int64_t T, int64_t C);
void qb_cpu_pool_max_forward(const qb_exec *ex, float *out, int32_t *argmax, const float *inp,
                             const uint8_t *mask, int64_t B, int64_t T, int64_t C);
void qb_cpu_pool_max_backward(const qb_exec *ex, float *dinp, const float *dout, const int32_t *argmax,
                              int64_t B, int64_t T, int64_t C);
void qb_cpu_pool_last_forward(const qb_exec *ex, float *out, const float *inp, const uint8_t *mask, int64_t B,
                              int64_t T, int64_t C);
void qb_cpu_pool_last_backward(const qb_exec *ex, float *dinp, const float *dout, const uint8_t *mask, int64_t B,
                               int64_t T, int64_t C);

/* gate.c */
void qb_cpu_gate_forward(const qb_exec *ex, float *out, float *g, const float *logits, const float *a,
                         const float *b, int64_t n);
void qb_cpu_gate_backward(const qb_exec *ex, float *da, float *db, float *dlogits, const float *dout,
                          const float *a, const float *b, const float *g, int64_t n);

/* loss.c */
void qb_cpu_cross_entropy_forward(const qb_exec *ex, float *losses, float *probs, const float *logits,
                                  const int32_t *targets, int64_t N, int64_t V, float smoothing,
                                  int32_t ignore_index);
void qb_cpu_cross_entropy_backward(const qb_exec *ex, float *dlogits, float scale, const float *probs,
                                   const int32_t *targets, int64_t N, int64_t V, float smoothing,
                                   int32_t ignore_index);

/* adamw.c */
void qb_cpu_adamw_step(const qb_exec *ex, float *param, const float *grad, float *m, float *v, int64_t n,
                       float grad_scale, float lr, float beta1, float beta2, float eps, float weight_decay, float bc1,
                       float bc2);

#endif
