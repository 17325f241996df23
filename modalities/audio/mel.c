/* modalities/audio/mel.c - log-mel spectrogram, streaming.
 *
 * Matches torchaudio.transforms.MelSpectrogram(n_fft, hop_length=hop,
 * window_fn=torch.hann_window (periodic), power=2, center=True,
 * pad_mode='reflect', norm='slaney', mel_scale='slaney') followed by
 * log(clamp(min=floor)); the filterbank is torchaudio's melscale_fbanks,
 * which equals librosa.filters.mel(htk=False, norm='slaney') on the same
 * frequency grid. Frame t covers input samples [t*hop - n_fft/2,
 * t*hop + n_fft/2), indices outside [0, n) reflected (numpy 'reflect': the
 * edge sample is not repeated); there are 1 + n/hop frames.
 *
 * The whole-signal function runs the stream, so both give identical bits. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <libavutil/mem.h>
#include <libavutil/tx.h>

#include "core/core.h"
#include "modalities/audio/audio.h"
#include "modalities/media/ffmpeg.h"

#define QA_PI 3.14159265358979323846

struct qiao_mel_stream {
    qiao_mel_params p;
    int n_bins;                 /* n_fft/2 + 1 */
    float *window;              /* (n_fft) */
    float *fb;                  /* (n_mels, n_bins), row m nonzero only in [lo[m], hi[m]) */
    int *lo, *hi;               /* (n_mels) */
    AVTXContext *tx;            /* power-of-two n_fft: float real FFT of n_fft */
    av_tx_fn tx_fn;
    float *fin, *fout;          /* (n_fft) and (n_fft + 2), av_malloc'ed for SIMD alignment */
    /* Other n_fft (400 is 2^4 * 5^2), because av_tx in FFmpeg 5.1 falls
     * back to an O(n^2) DFT with on-the-fly sin/cos for lengths with a factor
     * 25 (about 0.9 ms per 400-point frame): the real frame is packed into
     * bh = n_fft/2 complex points (even samples real, odd imaginary), whose
     * DFT comes from Bluestein's chirp-z algorithm over power-of-two float
     * FFTs of length bm >= 2 bh - 1 (av_tx has SIMD code for float, not for
     * double), and one more pass splits it into the real frame's spectrum.
     * The tables are made once per stream, in double. */
    AVTXContext *bfwd, *binv;
    av_tx_fn bfwd_fn, binv_fn;
    int bm, bh;
    AVComplexFloat *chirp;      /* (bh) exp(-i pi k^2 / bh) */
    AVComplexFloat *bspec;      /* (bm) FFT of the conjugate chirp, times 1 / bm */
    AVComplexFloat *twid;       /* (bh + 1) exp(-2 pi i k / n_fft) */
    AVComplexFloat *ba, *bA;    /* (bm) scratch */
    float *power;               /* (n_bins) */
    float *head;                /* the first n_fft samples, for the left reflections */
    int64_t n_head;
    float *buf;                 /* samples [buf_start, buf_start + buf_n) */
    int64_t buf_start;
    size_t buf_n, buf_cap;
    int64_t received;           /* samples pushed so far */
    int64_t next;               /* index of the next frame to emit */
    float *frames;              /* output rows of the last call */
    size_t frames_cap;          /* in floats */
    int finished;
};

QIAO_API qiao_mel_params qiao_mel_default_params(void) {
    qiao_mel_params p;
    memset(&p, 0, sizeof p);
    p.struct_size = sizeof p;
    p.sample_rate = 16000;
    p.n_fft = 400;
    p.hop = 160;
    p.n_mels = 80;
    p.fmin = 0.0f;
    p.fmax = 8000.0f;
    p.floor = 1e-10f;
    return p;
}

static qiao_status read_params(const qiao_mel_params *in, qiao_mel_params *p) {
    *p = qiao_mel_default_params();
    qiao_status st = qc_params_read(p, sizeof *p, in, offsetof(qiao_mel_params, sample_rate) + sizeof(int),
                                    "qiao_mel_default_params");
    if (st != QIAO_OK) return st;
    if (p->fmax == 0.0f) p->fmax = (float)p->sample_rate / 2.0f;
    if (p->sample_rate < 1000 || p->sample_rate > 768000)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "mel: sample_rate %d is outside [1000, 768000]", p->sample_rate);
    if (p->n_fft < 16 || p->n_fft > 65536 || p->n_fft % 2)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "mel: n_fft %d must be even and in [16, 65536]", p->n_fft);
    if (p->hop < 1 || p->hop > p->n_fft)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "mel: hop %d must be in [1, n_fft]", p->hop);
    if (p->n_mels < 1 || p->n_mels > 512)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "mel: n_mels %d must be in [1, 512]", p->n_mels);
    if (!(p->fmin >= 0.0f) || !(p->fmax > p->fmin) || p->fmax > (float)p->sample_rate / 2.0f)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "mel: need 0 <= fmin < fmax <= sample_rate/2 (fmin %g, fmax %g)",
                        (double)p->fmin, (double)p->fmax);
    if (!(p->floor > 0.0f) || !isfinite(p->floor))
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "mel: floor must be > 0");
    return QIAO_OK;
}

/* Slaney's mel scale (Auditory Toolbox; librosa htk=False): linear below
 * 1 kHz at 3 mels per 200/3 Hz... i.e. mel = f / (200/3), logarithmic above. */
static double hz_to_mel(double f) {
    const double f_sp = 200.0 / 3.0, min_log_hz = 1000.0, min_log_mel = min_log_hz / f_sp;
    const double logstep = log(6.4) / 27.0;
    return f < min_log_hz ? f / f_sp : min_log_mel + log(f / min_log_hz) / logstep;
}
static double mel_to_hz(double m) {
    const double f_sp = 200.0 / 3.0, min_log_hz = 1000.0, min_log_mel = min_log_hz / f_sp;
    const double logstep = log(6.4) / 27.0;
    return m < min_log_mel ? f_sp * m : min_log_hz * exp(logstep * (m - min_log_mel));
}

qiao_status qa_mel_centers_hz(const qiao_mel_params *params, float *hz) {
    qiao_mel_params p;
    qiao_status st = read_params(params, &p);
    if (st != QIAO_OK) return st;
    const double m_min = hz_to_mel(p.fmin), m_max = hz_to_mel(p.fmax);
    for (int m = 0; m < p.n_mels; m++) hz[m] = (float)mel_to_hz(m_min + (m_max - m_min) * (m + 1) / (p.n_mels + 1));
    return QIAO_OK;
}

/* torchaudio.functional.melscale_fbanks in double: triangles between
 * n_mels + 2 points equally spaced in mel, on the FFT bin frequencies
 * linspace(0, sr/2, n_bins), each scaled by 2 / (its width in Hz). */
static qiao_status build_filterbank(qiao_mel_stream *s) {
    const int nm = s->p.n_mels, nb = s->n_bins;
    double *f_pts = malloc((size_t)(nm + 2) * sizeof(double));
    if (!f_pts) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "mel: out of memory");
    double m_min = hz_to_mel(s->p.fmin), m_max = hz_to_mel(s->p.fmax);
    for (int i = 0; i < nm + 2; i++) f_pts[i] = mel_to_hz(m_min + (m_max - m_min) * i / (nm + 1));
    const double nyq = (double)(s->p.sample_rate / 2); /* torchaudio uses sample_rate // 2 */
    memset(s->fb, 0, (size_t)nm * (size_t)nb * sizeof(float));
    for (int m = 0; m < nm; m++) {
        double enorm = 2.0 / (f_pts[m + 2] - f_pts[m]);
        s->lo[m] = nb;
        s->hi[m] = 0;
        /* Bins a whole bin or more outside (f_pts[m], f_pts[m + 2]) get 0
         * from the formula below, so only the ones near the triangle are
         * evaluated (the full 201 x 80 grid of divisions and libm calls was
         * most of the stream's set-up time). */
        double klo = floor(f_pts[m] / nyq * (nb - 1)) - 1.0, khi = ceil(f_pts[m + 2] / nyq * (nb - 1)) + 2.0;
        int k0 = klo > 0.0 ? (int)klo : 0, k1 = khi < (double)nb ? (int)khi : nb;
        for (int k = k0; k < k1; k++) {
            double f = nyq * k / (nb - 1);
            double down = (f - f_pts[m]) / (f_pts[m + 1] - f_pts[m]);
            double up = (f_pts[m + 2] - f) / (f_pts[m + 2] - f_pts[m + 1]);
            double w = fmax(0.0, fmin(down, up)) * enorm;
            s->fb[(size_t)m * (size_t)nb + (size_t)k] = (float)w;
            if (w > 0.0) {
                if (k < s->lo[m]) s->lo[m] = k;
                s->hi[m] = k + 1;
            }
        }
        if (s->lo[m] > s->hi[m]) s->lo[m] = s->hi[m] = 0; /* empty filter (too many mels): all floor */
    }
    free(f_pts);
    return QIAO_OK;
}

static qiao_status init_bluestein(qiao_mel_stream *s) {
    const int n = s->p.n_fft, h = n / 2;
    int m = 1;
    while (m < 2 * h - 1) m *= 2;
    s->bm = m;
    s->bh = h;
    s->chirp = av_malloc((size_t)h * sizeof(AVComplexFloat));
    s->bspec = av_malloc((size_t)m * sizeof(AVComplexFloat));
    s->twid = av_malloc((size_t)(h + 1) * sizeof(AVComplexFloat));
    s->ba = av_malloc((size_t)m * sizeof(AVComplexFloat));
    s->bA = av_malloc((size_t)m * sizeof(AVComplexFloat));
    AVComplexDouble *da = av_malloc((size_t)m * sizeof(AVComplexDouble));
    AVComplexDouble *dA = av_malloc((size_t)m * sizeof(AVComplexDouble));
    AVTXContext *dtx = NULL;
    av_tx_fn dtx_fn = NULL;
    qiao_status st = QIAO_OK;
    float fscale = 1.0f;
    double dscale = 1.0;
    if (!s->chirp || !s->bspec || !s->twid || !s->ba || !s->bA || !da || !dA) {
        st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "mel: out of memory");
    } else if (av_tx_init(&s->bfwd, &s->bfwd_fn, AV_TX_FLOAT_FFT, 0, m, &fscale, 0) < 0 ||
               av_tx_init(&s->binv, &s->binv_fn, AV_TX_FLOAT_FFT, 1, m, &fscale, 0) < 0 ||
               av_tx_init(&dtx, &dtx_fn, AV_TX_DOUBLE_FFT, 0, m, &dscale, 0) < 0) {
        st = qc_error(QIAO_ERR_BACKEND, "mel: av_tx cannot make a complex FFT of length %d", m);
    } else {
        memset(da, 0, (size_t)m * sizeof(AVComplexDouble));
        for (int k = 0; k < h; k++) {
            /* k^2 mod 2h keeps the angle exact for large k */
            int64_t q = ((int64_t)k * k) % (2 * (int64_t)h);
            double ang = -QA_PI * (double)q / (double)h;
            s->chirp[k] = (AVComplexFloat){(float)cos(ang), (float)sin(ang)};
            AVComplexDouble c = {cos(ang), -sin(ang)};
            da[k] = c;
            if (k) da[m - k] = c;
        }
        dtx_fn(dtx, dA, da, sizeof(AVComplexDouble));
        for (int k = 0; k < m; k++) s->bspec[k] = (AVComplexFloat){(float)(dA[k].re / m), (float)(dA[k].im / m)};
        for (int k = 0; k <= h; k++) {
            double ang = -2.0 * QA_PI * (double)k / (double)n;
            s->twid[k] = (AVComplexFloat){(float)cos(ang), (float)sin(ang)};
        }
    }
    av_tx_uninit(&dtx);
    av_free(da);
    av_free(dA);
    return st;
}

/* Power spectrum |X_k|^2, k < n_fft/2 + 1, of the windowed frame in s->fin. */
static void power_spectrum(qiao_mel_stream *s) {
    const int nb = s->n_bins;
    if (!s->bm) {
        s->tx_fn(s->tx, s->fout, s->fin, sizeof(float));
        for (int k = 0; k < nb; k++) {
            float re = s->fout[2 * k], im = s->fout[2 * k + 1];
            s->power[k] = re * re + im * im;
        }
        return;
    }
    const int h = s->bh, m = s->bm;
    const float *x = s->fin;
    const AVComplexFloat *c = s->chirp, *b = s->bspec, *w = s->twid;
    AVComplexFloat *restrict a = s->ba, *restrict A = s->bA;
    for (int k = 0; k < h; k++) {
        float zr = x[2 * k], zi = x[2 * k + 1];
        a[k] = (AVComplexFloat){zr * c[k].re - zi * c[k].im, zr * c[k].im + zi * c[k].re};
    }
    memset(a + h, 0, (size_t)(m - h) * sizeof(AVComplexFloat));
    s->bfwd_fn(s->bfwd, A, a, sizeof(AVComplexFloat));
    for (int k = 0; k < m; k++) {
        float re = A[k].re * b[k].re - A[k].im * b[k].im, im = A[k].re * b[k].im + A[k].im * b[k].re;
        A[k] = (AVComplexFloat){re, im};
    }
    s->binv_fn(s->binv, a, A, sizeof(AVComplexFloat));
    /* Z_k = chirp_k * conv_k, the DFT of the packed frame; Z_h = Z_0 */
    for (int k = 0; k < h; k++)
        A[k] = (AVComplexFloat){a[k].re * c[k].re - a[k].im * c[k].im, a[k].re * c[k].im + a[k].im * c[k].re};
    A[h] = A[0];
    /* X_k = E_k + w_k O_k with E_k = (Z_k + conj Z_{h-k}) / 2 (the even
     * samples' DFT) and O_k = (Z_k - conj Z_{h-k}) / 2i (the odd ones'). */
    for (int k = 0; k <= h; k++) {
        AVComplexFloat z = A[k], y = A[h - k];
        float er = 0.5f * (z.re + y.re), ei = 0.5f * (z.im - y.im);
        float or_ = 0.5f * (z.im + y.im), oi = -0.5f * (z.re - y.re);
        float xr = er + w[k].re * or_ - w[k].im * oi, xi = ei + w[k].re * oi + w[k].im * or_;
        s->power[k] = xr * xr + xi * xi;
    }
}

QIAO_API void qiao_mel_stream_free(qiao_mel_stream *s) {
    if (!s) return;
    av_tx_uninit(&s->tx);
    av_tx_uninit(&s->bfwd);
    av_tx_uninit(&s->binv);
    av_free(s->chirp);
    av_free(s->bspec);
    av_free(s->ba);
    av_free(s->bA);
    av_free(s->twid);
    av_free(s->fin);
    av_free(s->fout);
    free(s->window);
    free(s->fb);
    free(s->lo);
    free(s->hi);
    free(s->power);
    free(s->head);
    free(s->buf);
    free(s->frames);
    free(s);
}

QIAO_API qiao_status qiao_mel_stream_new(const qiao_mel_params *params, qiao_mel_stream **out) {
    if (!out) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "mel: out is NULL");
    *out = NULL;
    qiao_mel_params p;
    qiao_status st = read_params(params, &p);
    if (st != QIAO_OK) return st;
    qm_ffmpeg_init(); /* av_tx logs through FFmpeg's log */
    qiao_mel_stream *s = calloc(1, sizeof *s);
    if (!s) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "mel: out of memory");
    s->p = p;
    const size_t nf = (size_t)p.n_fft;
    s->n_bins = p.n_fft / 2 + 1;
    s->window = malloc(nf * sizeof(float));
    s->fb = malloc((size_t)p.n_mels * (size_t)s->n_bins * sizeof(float));
    s->lo = malloc((size_t)p.n_mels * sizeof(int));
    s->hi = malloc((size_t)p.n_mels * sizeof(int));
    s->power = malloc((size_t)s->n_bins * sizeof(float));
    s->head = malloc(nf * sizeof(float));
    s->fin = av_malloc(nf * sizeof(float));
    s->fout = av_malloc((nf + 2) * sizeof(float));
    if (!s->window || !s->fb || !s->lo || !s->hi || !s->power || !s->head || !s->fin || !s->fout) {
        qiao_mel_stream_free(s);
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "mel: out of memory");
    }
    /* FFmpeg's real FFT leaves the imaginary parts of the DC and Nyquist
     * bins (always 0) unwritten on some lengths: uninitialized, they made a
     * stream's frames differ from another's on the same samples
     * (fuzz_audio_mel; valgrind named the reads). */
    memset(s->fout, 0, (nf + 2) * sizeof(float));
    /* Periodic Hann (torch.hann_window(n, periodic=True)), in double then rounded. */
    for (size_t i = 0; i < nf; i++) s->window[i] = (float)(0.5 - 0.5 * cos(2.0 * QA_PI * (double)i / (double)nf));
    st = (p.n_fft & (p.n_fft - 1)) ? init_bluestein(s) : QIAO_OK;
    float scale = 1.0f;
    if (st == QIAO_OK && !s->bm && av_tx_init(&s->tx, &s->tx_fn, AV_TX_FLOAT_RDFT, 0, p.n_fft, &scale, 0) < 0)
        st = qc_error(QIAO_ERR_BACKEND, "mel: av_tx cannot make a real FFT of length %d", p.n_fft);
    if (st != QIAO_OK) {
        qiao_mel_stream_free(s);
        return st;
    }
    st = build_filterbank(s);
    if (st != QIAO_OK) {
        qiao_mel_stream_free(s);
        return st;
    }
    *out = s;
    return QIAO_OK;
}

/* Sample i of the signal of length n (known once finished; n = INT64_MAX
 * while streaming, when only left reflections can happen). */
static float sample(const qiao_mel_stream *s, int64_t i, int64_t n) {
    if (n == 1) return s->head[0];
    const int64_t period = n == INT64_MAX ? 0 : 2 * (n - 1);
    if (i < 0 || i >= n) {
        if (n == INT64_MAX) return s->head[-i]; /* streaming: only left reflections happen */
        i %= period;
        if (i < 0) i += period;
        if (i >= n) i = period - i;
    }
    if (i < s->n_head) return s->head[i];
    return s->buf[i - s->buf_start];
}

static void compute_frame(qiao_mel_stream *s, int64_t t, int64_t n, float *row) {
    const int nf = s->p.n_fft, nb = s->n_bins;
    const int64_t start = t * s->p.hop - nf / 2;
    const int64_t avail = n == INT64_MAX ? s->received : n;
    const float *src = NULL; /* the frame as contiguous samples, when it is (same values as sample()) */
    if (start >= s->n_head && start + nf <= avail) src = s->buf + (start - s->buf_start);
    else if (start >= 0 && start + nf <= s->n_head) src = s->head + start;
    if (src)
        for (int i = 0; i < nf; i++) s->fin[i] = src[i] * s->window[i];
    else
        for (int i = 0; i < nf; i++) s->fin[i] = sample(s, start + i, n) * s->window[i];
    power_spectrum(s);
    for (int m = 0; m < s->p.n_mels; m++) {
        const float *w = s->fb + (size_t)m * (size_t)nb;
        double acc = 0.0;
        for (int k = s->lo[m]; k < s->hi[m]; k++) acc += (double)w[k] * (double)s->power[k];
        /* logf, not log: a third of the frame's time otherwise, and within
         * an ulp of the double log rounded to float */
        float v = (float)acc;
        row[m] = logf(v > s->p.floor ? v : s->p.floor);
    }
}

static qiao_status reserve_frames(qiao_mel_stream *s, int64_t count) {
    size_t need = (size_t)count * (size_t)s->p.n_mels;
    if (need <= s->frames_cap) return QIAO_OK;
    float *q = realloc(s->frames, need * sizeof(float));
    if (!q) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "mel: out of memory for %lld frames", (long long)count);
    s->frames = q;
    s->frames_cap = need;
    return QIAO_OK;
}

/* Emits frames [s->next, last) into s->frames, then forgets the samples no
 * later frame can reach: later frames read from (next*hop - n_fft/2) on, and
 * the right reflection of frame t reaches at most n_fft/2 + 1 samples before
 * n >= t*hop; keeping everything from next*hop - n_fft is enough for both. */
static qiao_status emit(qiao_mel_stream *s, int64_t last, int64_t n, const float **frames, int64_t *n_frames) {
    int64_t count = last > s->next ? last - s->next : 0;
    qiao_status st = reserve_frames(s, count);
    if (st != QIAO_OK) return st;
    for (int64_t j = 0; j < count; j++) compute_frame(s, s->next + j, n, s->frames + (size_t)j * (size_t)s->p.n_mels);
    s->next += count;
    int64_t keep = s->next * s->p.hop - s->p.n_fft;
    if (keep > s->buf_start) {
        int64_t drop = keep - s->buf_start;
        if (drop > (int64_t)s->buf_n) drop = (int64_t)s->buf_n;
        memmove(s->buf, s->buf + drop, (s->buf_n - (size_t)drop) * sizeof(float));
        s->buf_n -= (size_t)drop;
        s->buf_start += drop;
    }
    *frames = count ? s->frames : NULL;
    *n_frames = count;
    return QIAO_OK;
}

QIAO_API qiao_status qiao_mel_stream_push(qiao_mel_stream *s, const float *samples, size_t n, const float **frames,
                                          int64_t *n_frames) {
    if (!s || !frames || !n_frames || (n && !samples))
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "mel: stream, samples, frames and n_frames are required");
    *frames = NULL;
    *n_frames = 0;
    if (s->finished) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "mel: push after finish");
    if (n > (size_t)(INT64_MAX / 4) - (size_t)s->received) return qc_error(QIAO_ERR_TOO_LARGE, "mel: input too long");
    const int64_t nf = s->p.n_fft;
    size_t take = 0;
    if (s->n_head < nf) {
        take = (size_t)(nf - s->n_head) < n ? (size_t)(nf - s->n_head) : n;
        memcpy(s->head + s->n_head, samples, take * sizeof(float));
        s->n_head += (int64_t)take;
    }
    /* The buffer holds everything after the head (plus what the head also
     * holds once head is full, kept simple: indices >= n_head come from buf). */
    if (s->buf_n == 0 && s->buf_start < s->n_head) s->buf_start = s->n_head;
    size_t rest = n - take;
    if (rest) {
        if (s->buf_cap - s->buf_n < rest) {
            size_t cap = s->buf_n + rest;
            if (cap < 2 * s->buf_cap) cap = 2 * s->buf_cap;
            float *q = realloc(s->buf, cap * sizeof(float));
            if (!q) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "mel: out of memory");
            s->buf = q;
            s->buf_cap = cap;
        }
        memcpy(s->buf + s->buf_n, samples + take, rest * sizeof(float));
        s->buf_n += rest;
    }
    s->received += (int64_t)n;
    /* Frame t is complete without right padding when t*hop + n_fft/2 <= received,
     * and needs the head for its left reflection: received > n_fft/2. */
    int64_t last = s->received > nf / 2 ? (s->received - nf / 2) / s->p.hop + 1 : 0;
    return emit(s, last, INT64_MAX, frames, n_frames);
}

QIAO_API qiao_status qiao_mel_stream_finish(qiao_mel_stream *s, const float **frames, int64_t *n_frames) {
    if (!s || !frames || !n_frames) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "mel: stream, frames and n_frames are required");
    *frames = NULL;
    *n_frames = 0;
    if (s->finished) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "mel: finish called twice");
    s->finished = 1;
    if (s->received == 0) return QIAO_OK;
    return emit(s, 1 + s->received / s->p.hop, s->received, frames, n_frames);
}

QIAO_API qiao_status qiao_mel_compute(const qiao_audio *audio, const qiao_mel_params *params, float **out,
                                      int64_t *frames) {
    if (!audio || !out || !frames) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "mel: audio, out and frames are required");
    *out = NULL;
    *frames = 0;
    if (audio->n_samples < 0 || (audio->n_samples > 0 && !audio->samples))
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "mel: audio has no samples");
    qiao_mel_stream *s = NULL;
    qiao_status st = qiao_mel_stream_new(params, &s);
    if (st != QIAO_OK) return st;
    if (audio->sample_rate != s->p.sample_rate) {
        int want = s->p.sample_rate;
        qiao_mel_stream_free(s);
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "mel: audio is at %d Hz, params expect %d Hz", audio->sample_rate,
                        want);
    }
    if (audio->n_samples == 0) {
        qiao_mel_stream_free(s);
        return QIAO_OK;
    }
    const int64_t total = 1 + audio->n_samples / s->p.hop;
    const size_t nm = (size_t)s->p.n_mels;
    float *res = malloc((size_t)total * nm * sizeof(float));
    if (!res) {
        qiao_mel_stream_free(s);
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "mel: out of memory for %lld frames", (long long)total);
    }
    /* Pushing in blocks keeps the stream's own buffers small. */
    int64_t done = 0;
    const int64_t block = 65536;
    for (int64_t i = 0; st == QIAO_OK && i <= audio->n_samples; i += block) {
        const float *f = NULL;
        int64_t k = 0;
        if (i < audio->n_samples) {
            int64_t len = audio->n_samples - i < block ? audio->n_samples - i : block;
            st = qiao_mel_stream_push(s, audio->samples + i, (size_t)len, &f, &k);
        } else {
            st = qiao_mel_stream_finish(s, &f, &k);
        }
        if (st == QIAO_OK && k > total - done) st = qc_error(QIAO_ERR_INTERNAL, "mel: more frames than expected");
        if (st == QIAO_OK && k) {
            memcpy(res + (size_t)done * nm, f, (size_t)k * nm * sizeof(float));
            done += k;
        }
        if (i < audio->n_samples && i + block > audio->n_samples) i = audio->n_samples - block; /* then finish */
    }
    qiao_mel_stream_free(s);
    if (st == QIAO_OK && done != total)
        st = qc_error(QIAO_ERR_INTERNAL, "mel: produced %lld frames, expected %lld", (long long)done, (long long)total);
    if (st != QIAO_OK) {
        free(res);
        return st;
    }
    *out = res;
    *frames = total;
    return QIAO_OK;
}

QIAO_API void qiao_mel_free(float *mel) { free(mel); }
