/* qiao.h - the public C API of qiao (桥, "bridge").
 *
 * qiao maps text, images and audio into one shared 1024-dimension embedding
 * space and trains its own models in C. This is the only header an
 * application includes; it is plain C99 and can be included from C++.
 *
 * QUICK EXAMPLE
 *
 *     #include <qiao.h>
 *     #include <stdio.h>
 *
 *     int main(int argc, char **argv) {
 *         qiao_model_file *f = NULL;
 *         qiao_status st = qiao_model_file_open(argv[1], &f);
 *         if (st != QIAO_OK) {
 *             fprintf(stderr, "%s: %s\n", qiao_status_str(st), qiao_last_error());
 *             return 1;
 *         }
 *         for (size_t i = 0; i < qiao_model_file_tensor_count(f); i++) {
 *             qiao_tensor_info ti;
 *             qiao_model_file_tensor(f, i, &ti);
 *             printf("%s %s\n", ti.name, qiao_dtype_str(ti.dtype));
 *         }
 *         qiao_model_file_close(f);
 *         return 0;
 *     }
 *
 * Build: cc app.c $(pkg-config --cflags --libs qiao)
 *        or, in CMake: find_package(qiao) and link qiao::qiao.
 *
 * CONVENTIONS
 *
 * - Every fallible function returns a qiao_status. On failure a detailed,
 *   human-readable message for the calling thread is kept until that
 *   thread's next failing call: read it with qiao_last_error().
 * - The library never exits, aborts or prints. It logs only through the
 *   callback set with qiao_set_log_callback().
 * - Handles are opaque. Every *_close / *_free function accepts NULL.
 * - Strings passed in are copied; the caller keeps ownership of its memory.
 *   Strings returned are owned by the library and valid as documented.
 * - Sizes and counts are size_t or int64_t.
 * - Parameter structs come from *_default_params() and carry struct_size,
 *   so fields can be added without breaking programs built against an older
 *   header: always start from the defaults, then set what you need.
 * - Callbacks carry a user_data pointer. A cancel callback that returns
 *   nonzero asks the call to stop; the call then returns QIAO_ERR_CANCELLED.
 *
 * THREAD SAFETY
 *
 * All functions may be called from any thread. A model (and a model file
 * handle) is immutable once loaded and may be shared by many threads at
 * once; per-thread objects (sessions, trainers) must not be used by two
 * threads at the same time. The log callback is process-wide and may be
 * called from any thread.
 */
#ifndef QIAO_H
#define QIAO_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Version ------------------------------------------------------------ */

#define QIAO_VERSION_MAJOR 0
#define QIAO_VERSION_MINOR 1
#define QIAO_VERSION_PATCH 0
#define QIAO_VERSION_STRING "0.1.0"
/* One integer that grows with every release: 10000*major + 100*minor + patch. */
#define QIAO_VERSION_NUMBER \
    (QIAO_VERSION_MAJOR * 10000 + QIAO_VERSION_MINOR * 100 + QIAO_VERSION_PATCH)

#if defined(_WIN32) && !defined(QIAO_STATIC)
#  if defined(QIAO_BUILDING)
#    define QIAO_API __declspec(dllexport)
#  else
#    define QIAO_API __declspec(dllimport)
#  endif
#elif defined(__GNUC__)
#  define QIAO_API __attribute__((visibility("default")))
#else
#  define QIAO_API
#endif

#if defined(__GNUC__)
#  define QIAO_MUST_CHECK __attribute__((warn_unused_result))
#else
#  define QIAO_MUST_CHECK
#endif

/* The version of the library actually linked, e.g. "0.1.0". Compare with
 * QIAO_VERSION_STRING to detect a header/library mismatch. */
QIAO_API const char *qiao_version(void);
/* The same as QIAO_VERSION_NUMBER, for the linked library. */
QIAO_API int qiao_version_number(void);

/* ---- Status and errors -------------------------------------------------- */

/* Stable numbers: a value, once released, never changes meaning. */
typedef enum qiao_status {
    QIAO_OK = 0,
    QIAO_ERR_INVALID_ARGUMENT = 1, /* a NULL, out-of-range or inconsistent argument */
    QIAO_ERR_OUT_OF_MEMORY = 2,    /* an allocation failed */
    QIAO_ERR_IO = 3,               /* a file could not be opened, read or written */
    QIAO_ERR_FORMAT = 4,           /* a file or buffer is malformed or inconsistent */
    QIAO_ERR_UNSUPPORTED = 5,      /* valid, but not supported by this build */
    QIAO_ERR_NOT_FOUND = 6,        /* a named item (tensor, key...) does not exist */
    QIAO_ERR_CANCELLED = 7,        /* a cancel callback asked to stop */
    QIAO_ERR_TOO_LARGE = 8,        /* a size over a configured or sane limit */
    QIAO_ERR_BACKEND = 9,          /* the compute backend (BLAS, CUDA) failed */
    QIAO_ERR_INTERNAL = 10,        /* a bug in qiao: please report it */
    QIAO_ERR_CONFLICT = 11         /* another writer changed the item first (a conversation): retry */
} qiao_status;

/* A short constant English name for a status, e.g. "format error". Never NULL. */
QIAO_API const char *qiao_status_str(qiao_status status);

/* The detailed message of the calling thread's most recent failure, e.g.
 * "model.safetensors: tensor 'w' data [0, 4096) overlaps tensor 'b'".
 * Never NULL; "" if nothing failed yet on this thread. Valid until the
 * thread's next call into qiao. */
QIAO_API const char *qiao_last_error(void);

/* ---- Logging ------------------------------------------------------------- */

typedef enum qiao_log_level {
    QIAO_LOG_ERROR = 0,
    QIAO_LOG_WARN = 1,
    QIAO_LOG_INFO = 2,
    QIAO_LOG_DEBUG = 3
} qiao_log_level;

/* Receives one message, without a trailing newline. May be called from any
 * thread, including the library's worker threads. */
typedef void (*qiao_log_fn)(qiao_log_level level, const char *message, void *user_data);

/* Sets the process-wide log callback and the most verbose level passed to it.
 * NULL (the default) discards all messages.
 *
 * FFmpeg (used for images, video and audio): the first time qiao calls into
 * FFmpeg it replaces FFmpeg's own process-wide log callback
 * (av_log_set_callback) with one that passes FFmpeg's warnings and errors to
 * this callback at QIAO_LOG_DEBUG, so FFmpeg never prints to stderr. An
 * application that configured FFmpeg's logging itself before loses that
 * configuration; one that installs its own av_log callback afterwards keeps
 * it (and then receives the messages of qiao's FFmpeg calls too). At the
 * same time qiao caps FFmpeg's largest single allocation (av_max_alloc) at
 * 1 GiB, so that a corrupt header cannot make a demuxer allocate gigabytes;
 * an application may set its own cap afterwards. */
QIAO_API void qiao_set_log_callback(qiao_log_fn fn, qiao_log_level max_level, void *user_data);

/* ---- Callbacks for long work -------------------------------------------- */

/* Progress of a long call: `done` out of `total` units (total may be 0 when
 * unknown), with a short description of the phase ("train", "index"...). */
typedef void (*qiao_progress_fn)(const char *phase, int64_t done, int64_t total, void *user_data);
/* Polled during long calls. Return nonzero to stop: the call returns
 * QIAO_ERR_CANCELLED after leaving everything it wrote in a consistent state. */
typedef int (*qiao_cancel_fn)(void *user_data);

/* ---- Data types ---------------------------------------------------------- */

typedef enum qiao_dtype {
    QIAO_DTYPE_F32 = 0,
    QIAO_DTYPE_F16 = 1,
    QIAO_DTYPE_BF16 = 2,
    QIAO_DTYPE_I32 = 3,
    QIAO_DTYPE_I64 = 4,
    QIAO_DTYPE_U8 = 5,
    QIAO_DTYPE_I8 = 6,
    QIAO_DTYPE_F64 = 7
} qiao_dtype;

/* The safetensors name of a dtype ("F32", "BF16"...). Never NULL. */
QIAO_API const char *qiao_dtype_str(qiao_dtype dtype);
/* Bytes per element. */
QIAO_API size_t qiao_dtype_size(qiao_dtype dtype);

/* ---- Model files --------------------------------------------------------- */

/* A model is one .safetensors file: the standard header (JSON) with the
 * model's configuration under "__metadata__", then raw little-endian data.
 * Opening maps the file and validates all of it (header bounds, JSON, dtypes,
 * shapes, byte sizes, offsets inside the data, no overlaps) before returning;
 * a bad file gives QIAO_ERR_FORMAT with a message naming the file and tensor.
 * A handle is immutable and may be shared between threads. */
typedef struct qiao_model_file qiao_model_file;

#define QIAO_MAX_DIMS 8

typedef struct qiao_tensor_info {
    const char *name;           /* owned by the file handle */
    qiao_dtype dtype;
    int ndim;
    int64_t shape[QIAO_MAX_DIMS];
    size_t nbytes;
    const void *data;           /* mapped, read-only, valid while the handle lives */
} qiao_tensor_info;

QIAO_API QIAO_MUST_CHECK qiao_status qiao_model_file_open(const char *path, qiao_model_file **out);
QIAO_API void qiao_model_file_close(qiao_model_file *file);
QIAO_API size_t qiao_model_file_tensor_count(const qiao_model_file *file);
/* Tensors in file order (ascending data offset). */
QIAO_API QIAO_MUST_CHECK qiao_status qiao_model_file_tensor(const qiao_model_file *file, size_t index,
                                                            qiao_tensor_info *out);
QIAO_API QIAO_MUST_CHECK qiao_status qiao_model_file_find(const qiao_model_file *file, const char *name,
                                                          qiao_tensor_info *out);
/* Total element count of all floating-point tensors. */
QIAO_API int64_t qiao_model_file_param_count(const qiao_model_file *file);
/* Metadata (string to string, as safetensors defines it). Returns NULL when the
 * key is absent. The string is owned by the handle. */
QIAO_API const char *qiao_model_file_metadata(const qiao_model_file *file, const char *key);
QIAO_API size_t qiao_model_file_metadata_count(const qiao_model_file *file);
/* The index-th metadata key (sorted), or NULL when out of range. */
QIAO_API const char *qiao_model_file_metadata_key(const qiao_model_file *file, size_t index);

/* ---- Text: the hybrid character+word tokenizer ---------------------------- */
/* A tokenizer turns UTF-8 text (Chinese first, English too) into tokens
 * for the text encoder. Each token is a SentencePiece BPE piece inside one
 * ICU word and carries:
 *   - its piece id (0 = padding, 1 = unknown, 2 = <s>, 3 = </s>; byte
 *     fallback keeps every byte, so no text is lost),
 *   - the ids of its first K characters in a character vocabulary built at
 *     training time (QIAO_CHAR_PAD = 0 fills the rest, QIAO_CHAR_UNK = 1 for
 *     a character not in it; spaces are skipped),
 *   - a word-position tag (begins / continues / ends a word, or is a whole
 *     word; words come from ICU's dictionary-based word break iterator),
 *   - the byte range [start, end) of the ORIGINAL text it came from.
 * Text is first normalized with ICU: NFKC (full-width to half-width),
 * Unicode case folding, every run of white space / control characters made
 * one space and trimmed, and optionally Traditional to Simplified Chinese.
 *
 * A tokenizer is stored in a model's .safetensors file (tensors
 * "tokenizer.spm" and "tokenizer.chars", metadata "tokenizer.config"), so
 * one file is a whole model; a file holding only those is a tokenizer file.
 * A qiao_tokenizer is immutable and may be shared by any number of threads.
 *
 *     qiao_tokenizer *tok = NULL;
 *     qiao_tokens *t = NULL;
 *     qiao_tokenize_params tp = qiao_tokenize_default_params();
 *     if (qiao_tokenizer_load("tok.safetensors", &tok) == QIAO_OK &&
 *         qiao_tokenize(tok, "我喜欢北京", strlen("我喜欢北京"), &tp, &t) == QIAO_OK)
 *         for (size_t i = 0; i < t->count; i++)
 *             printf("%s %d\n", qiao_tokenizer_piece(tok, t->ids[i]), t->ids[i]);
 *     qiao_tokens_free(t);
 *     qiao_tokenizer_free(tok);
 */
typedef struct qiao_tokenizer qiao_tokenizer;

#define QIAO_PIECE_PAD 0
#define QIAO_PIECE_UNK 1
/* Begin and end of sequence: a decoder that writes text (captions) starts
 * from QIAO_PIECE_BOS and stops at QIAO_PIECE_EOS. qiao_tokenize never
 * produces them; qiao_detokenize gives them no text. */
#define QIAO_PIECE_BOS 2
#define QIAO_PIECE_EOS 3
#define QIAO_CHAR_PAD 0
#define QIAO_CHAR_UNK 1

/* Word-position tags; 0 marks padding in a batch. */
typedef enum qiao_token_tag {
    QIAO_TAG_PAD = 0,
    QIAO_TAG_B = 1, /* the piece begins a word of several pieces */
    QIAO_TAG_M = 2, /* the piece is inside such a word */
    QIAO_TAG_E = 3, /* the piece ends such a word */
    QIAO_TAG_S = 4  /* the piece is a whole word */
} qiao_token_tag;

typedef struct qiao_tokenizer_train_params {
    size_t struct_size;          /* set by qiao_tokenizer_train_default_params() */
    const char *corpus_path;     /* UTF-8 text, one sentence per line (required) */
    const char *out_path;        /* the .safetensors written (required) */
    int64_t vocab_size;          /* BPE pieces incl. 4 specials and 256 bytes; default 2000 */
    int64_t char_vocab_size;     /* characters incl. pad and unknown; default 3000 */
    int k;                       /* characters kept per token, 1..64; default 4 */
    int case_fold;               /* nonzero: Unicode case folding (default 1) */
    int traditional_to_simplified; /* nonzero: map Traditional to Simplified (default 0) */
    double character_coverage;   /* share of corpus characters the pieces cover; the
                                    rest go through byte fallback; default 0.995 */
    int n_threads;               /* SentencePiece trainer threads; default 2 */
    qiao_progress_fn progress;   /* phases "read", "train", "write" */
    void *progress_user_data;
    qiao_cancel_fn cancel;       /* polled while reading the corpus and between phases */
    void *cancel_user_data;
} qiao_tokenizer_train_params;

/* Defaults for qiao_tokenizer_train(); set corpus_path and out_path. */
QIAO_API qiao_tokenizer_train_params qiao_tokenizer_train_default_params(void);

/* Trains a tokenizer on a corpus: normalizes each line, counts characters
 * for the character vocabulary, trains SentencePiece BPE on the ICU word
 * units, and writes a tokenizer file to out_path (atomically). Returns
 * QIAO_ERR_IO for an unreadable corpus or unwritable output, QIAO_ERR_FORMAT
 * for invalid UTF-8 in the corpus (naming the line and byte) or a corpus
 * SentencePiece rejects (e.g. too few characters for vocab_size),
 * QIAO_ERR_CANCELLED when cancelled. */
QIAO_API QIAO_MUST_CHECK qiao_status qiao_tokenizer_train(const qiao_tokenizer_train_params *params);

/* Loads the tokenizer stored in a .safetensors file (a model file or a
 * tokenizer file). A file without the tokenizer tensors is
 * QIAO_ERR_NOT_FOUND; a damaged one QIAO_ERR_FORMAT. On success *out is a
 * new tokenizer the caller frees with qiao_tokenizer_free(). */
QIAO_API QIAO_MUST_CHECK qiao_status qiao_tokenizer_load(const char *path, qiao_tokenizer **out);
/* The same from a file image in memory; the bytes are copied. */
QIAO_API QIAO_MUST_CHECK qiao_status qiao_tokenizer_load_memory(const void *data, size_t size,
                                                                qiao_tokenizer **out);
/* Frees a tokenizer. Accepts NULL. */
QIAO_API void qiao_tokenizer_free(qiao_tokenizer *tok);

/* Number of pieces. */
QIAO_API int64_t qiao_tokenizer_vocab_size(const qiao_tokenizer *tok);
/* Number of characters, including QIAO_CHAR_PAD and QIAO_CHAR_UNK. */
QIAO_API int64_t qiao_tokenizer_char_vocab_size(const qiao_tokenizer *tok);
/* Characters kept per token (K). */
QIAO_API int qiao_tokenizer_k(const qiao_tokenizer *tok);
/* The piece string of `id` (SentencePiece spelling: "▁" is a space,
 * "<0xE4>" a byte), owned by the tokenizer; NULL when out of range. */
QIAO_API const char *qiao_tokenizer_piece(const qiao_tokenizer *tok, int64_t id);
/* The character (UTF-8) of char id `id` ("<pad>", "<unk>" for 0 and 1),
 * owned by the tokenizer; NULL when out of range. */
QIAO_API const char *qiao_tokenizer_char(const qiao_tokenizer *tok, int64_t id);

typedef struct qiao_tokenize_params {
    size_t struct_size;     /* set by qiao_tokenize_default_params() */
    int replace_invalid;    /* nonzero: invalid UTF-8 becomes U+FFFD; 0 (default):
                               it is QIAO_ERR_FORMAT naming the byte offset */
    int64_t max_tokens;     /* keep at most this many tokens; 0 (default) = all */
} qiao_tokenize_params;

/* The tokens of one text. Arrays are owned by the result. */
typedef struct qiao_tokens {
    size_t count;
    int k;                  /* characters per token */
    int32_t *ids;           /* (count) piece ids */
    int32_t *char_ids;      /* (count, k) */
    uint8_t *tags;          /* (count) qiao_token_tag */
    int64_t *offsets;       /* (count, 2): [start, end) bytes of the original text;
                               byte-fallback pieces of one character share its range */
} qiao_tokens;

QIAO_API qiao_tokenize_params qiao_tokenize_default_params(void);

/* Tokenizes text[0 .. len) (UTF-8; need not be NUL-terminated). On success
 * *out is a new result the caller frees with qiao_tokens_free(); an empty
 * or all-space text gives count 0. Time and memory are linear in len. */
QIAO_API QIAO_MUST_CHECK qiao_status qiao_tokenize(const qiao_tokenizer *tok, const char *text, size_t len,
                                                   const qiao_tokenize_params *params, qiao_tokens **out);
/* Frees a result. Accepts NULL. */
QIAO_API void qiao_tokens_free(qiao_tokens *tokens);

/* n texts tokenized and padded to one length T. */
typedef struct qiao_token_batch {
    size_t n, t;
    int k;
    int32_t *ids;           /* (n, t); QIAO_PIECE_PAD at padding */
    int32_t *char_ids;      /* (n, t, k); QIAO_CHAR_PAD at padding */
    uint8_t *tags;          /* (n, t); QIAO_TAG_PAD at padding */
    int64_t *offsets;       /* (n, t, 2); -1 at padding */
    uint8_t *mask;          /* (n, t); 1 = real token, 0 = padding */
    size_t *lengths;        /* (n) real tokens per text */
} qiao_token_batch;

/* Tokenizes texts[i][0 .. lens[i]) for i < n (lens may be NULL for
 * NUL-terminated texts) and pads them to T = the longest, or to max_len
 * when max_len > 0 (longer texts are truncated to max_len tokens). Any text
 * failing fails the call, naming its index. On success *out is a new batch
 * the caller frees with qiao_token_batch_free(). */
QIAO_API QIAO_MUST_CHECK qiao_status qiao_tokenize_batch(const qiao_tokenizer *tok, const char *const *texts,
                                                         const size_t *lens, size_t n, size_t max_len,
                                                         const qiao_tokenize_params *params,
                                                         qiao_token_batch **out);
/* Frees a batch. Accepts NULL. */
QIAO_API void qiao_token_batch_free(qiao_token_batch *batch);

typedef struct qiao_detokenize_params {
    size_t struct_size;     /* set by qiao_detokenize_default_params() */
    int exact_spaces;       /* nonzero: a space wherever a piece has one (see below);
                               0 (default): written-text spacing */
} qiao_detokenize_params;

QIAO_API qiao_detokenize_params qiao_detokenize_default_params(void);

/* Turns piece ids (as qiao_tokenize gives them, or as a decoder writes
 * them) back into UTF-8 text. Each "▁" in a piece is a space; a run of
 * byte-fallback pieces ("<0xE4>") is read as UTF-8, every ill-formed part
 * of it becoming U+FFFD; QIAO_PIECE_UNK becomes U+FFFD; QIAO_PIECE_PAD,
 * QIAO_PIECE_BOS and QIAO_PIECE_EOS give no text. Word-position tags are
 * not needed: the pieces carry every space.
 *
 * With exact_spaces, detokenizing the ids of qiao_tokenize gives back the
 * tokenizer's normalized text byte for byte (NFKC, case folded when the
 * tokenizer folds case, white space runs made one space, trimmed; the
 * original's full-width forms, capitals and extra spaces do not come back).
 * By default the text is spaced as written: runs of spaces become one
 * space, none at either end, and none
 *   - before closing punctuation: , . : ; ! ? ) ] } and 。、」』》) ...
 *     (Unicode line-break classes CL, CP, EX, IS, NS),
 *   - after opening punctuation: ( [ { 「 『 《 ... (class OP),
 *   - between two characters of scripts written without spaces (Chinese,
 *     Japanese, Thai...), Chinese punctuation included ("我 喜欢 。" becomes
 *     "我喜欢。"; "我喜欢 NBA" keeps its space),
 *   - between punctuation that follows such a character and such a
 *     character ("你好, 世界" becomes "你好,世界": NFKC made "，" a ",").
 * Spaces are only ever removed, never added.
 *
 * An id outside 0 .. qiao_tokenizer_vocab_size() - 1 is
 * QIAO_ERR_INVALID_ARGUMENT naming its index. On success *text is a new
 * NUL-terminated string ("" for no ids) the caller frees with
 * qiao_text_free(), and *len (len may be NULL) its length in bytes.
 * `params` may be NULL for the defaults. */
QIAO_API QIAO_MUST_CHECK qiao_status qiao_detokenize(const qiao_tokenizer *tok, const int32_t *ids, size_t count,
                                                     const qiao_detokenize_params *params, char **text,
                                                     size_t *len);
/* Frees a string returned by qiao_detokenize(). Accepts NULL. */
QIAO_API void qiao_text_free(char *text);

/* ---- Images --------------------------------------------------------------- */
/* Decoding: PNG, JPEG, BMP, GIF (first frame), TGA, PSD, PNM and HDR through
 * stb_image; WebP, TIFF and the other still-image formats FFmpeg knows
 * through libavcodec. The format is sniffed from the bytes, never from the
 * file name. Every image comes out as packed 8-bit RGB: alpha is composited
 * onto a stated background color, grayscale is expanded to three equal
 * channels, 16-bit samples are reduced to 8 bits.
 *
 * Limits are checked before the pixels are allocated: the dimensions are read
 * from the header first, and an image over max_pixels gives
 * QIAO_ERR_TOO_LARGE. FFmpeg's log goes to qiao's log (see Logging).
 *
 *     qiao_image *img = NULL;
 *     qiao_image_decode_params dp = qiao_image_decode_default_params();
 *     if (qiao_image_decode_file("cat.jpg", &dp, &img) != QIAO_OK) ... qiao_last_error() ...
 *     qiao_image_preprocess_params pp = qiao_image_preprocess_default_params();
 *     float *x = malloc(qiao_image_preprocess_len(&pp) * sizeof(float));   (3 x 224 x 224)
 *     qiao_status st = qiao_image_preprocess(img, &pp, x, qiao_image_preprocess_len(&pp));
 *     qiao_image_free(img);
 *
 * An image is immutable once made and may be read from many threads. */
typedef struct qiao_image qiao_image;

typedef struct qiao_image_decode_params {
    size_t struct_size;         /* set by qiao_image_decode_default_params() */
    int64_t max_pixels;         /* width * height above this -> QIAO_ERR_TOO_LARGE; default 64 Mi (67108864) */
    size_t max_file_bytes;      /* files larger than this are not read: QIAO_ERR_TOO_LARGE; default 256 MiB */
    uint8_t background[3];      /* RGB that transparent pixels are composited onto; default white */
} qiao_image_decode_params;

QIAO_API qiao_image_decode_params qiao_image_decode_default_params(void);

/* Reads the file at `path` (at most params->max_file_bytes) and decodes it as
 * qiao_image_decode_memory does. params may be NULL for the defaults.
 * QIAO_ERR_IO if the file cannot be read, QIAO_ERR_FORMAT for an empty,
 * truncated, corrupt or unknown file (the message names the file),
 * QIAO_ERR_TOO_LARGE over a limit. On success *out is a new image the caller
 * frees with qiao_image_free; on failure *out is NULL. */
QIAO_API QIAO_MUST_CHECK qiao_status qiao_image_decode_file(const char *path, const qiao_image_decode_params *params,
                                                            qiao_image **out);

/* Decodes an encoded image held in memory (the bytes are only read during
 * the call). Same formats, limits, statuses and ownership as
 * qiao_image_decode_file. */
QIAO_API QIAO_MUST_CHECK qiao_status qiao_image_decode_memory(const void *data, size_t size,
                                                              const qiao_image_decode_params *params,
                                                              qiao_image **out);

/* Makes an image from packed 8-bit RGB pixels (rows `stride` bytes apart,
 * stride >= 3 * width), copying them. QIAO_ERR_INVALID_ARGUMENT for a NULL
 * pointer, a non-positive size or a short stride. The caller frees *out with
 * qiao_image_free. */
QIAO_API QIAO_MUST_CHECK qiao_status qiao_image_from_rgb(const uint8_t *pixels, int64_t width, int64_t height,
                                                         size_t stride, qiao_image **out);

/* Frees an image; NULL is fine. */
QIAO_API void qiao_image_free(qiao_image *img);

/* Accessors. Pixels are packed RGB, row y starting at pixels + y * stride;
 * they stay valid until the image is freed. The format is the decoder's name
 * for what it read ("png", "jpeg", "gif", "bmp", "tga", "webp", "tiff", the
 * video codec name such as "h264" for video frames, "rgb" for
 * qiao_image_from_rgb). The timestamp is the frame's time in seconds from the
 * start of the stream for video frames, 0 otherwise. */
QIAO_API int64_t qiao_image_width(const qiao_image *img);
QIAO_API int64_t qiao_image_height(const qiao_image *img);
QIAO_API size_t qiao_image_stride(const qiao_image *img);
QIAO_API const uint8_t *qiao_image_pixels(const qiao_image *img);
QIAO_API const char *qiao_image_format(const qiao_image *img);
QIAO_API double qiao_image_timestamp(const qiao_image *img);

/* Video: frames sampled from a video file (any container and codec FFmpeg
 * reads, e.g. MP4/H.264, MKV). With fps > 0, a frame is taken at each time
 * k / fps (k = 0, 1, ...) before the end: the first decoded frame at or after
 * that time, each source frame at most once. With fps == 0 and count > 0,
 * `count` frames are spread evenly: targets k * duration / count, which needs
 * a known duration (QIAO_ERR_UNSUPPORTED otherwise). */
typedef struct qiao_video_params {
    size_t struct_size;         /* set by qiao_video_default_params() */
    double fps;                 /* frames per second to sample; default 1.0; 0 to use count */
    int64_t count;              /* used when fps == 0; default 0 */
    int64_t max_frames;         /* more frames than this -> QIAO_ERR_TOO_LARGE; default 1024 */
    int64_t max_pixels;         /* per frame, as in qiao_image_decode_params; default 64 Mi */
    uint8_t background[3];      /* for codecs with alpha; default white */
} qiao_video_params;

QIAO_API qiao_video_params qiao_video_default_params(void);

/* Decodes the sampled frames of the video at `path` (params may be NULL for
 * the defaults). On success *frames is an array of *n new images in time
 * order (timestamps strictly increasing), freed with qiao_image_frames_free;
 * on failure *frames is NULL and *n is 0. QIAO_ERR_IO if the file cannot be
 * opened, QIAO_ERR_FORMAT if it holds no decodable video stream. */
QIAO_API QIAO_MUST_CHECK qiao_status qiao_image_decode_video_frames(const char *path,
                                                                    const qiao_video_params *params,
                                                                    qiao_image ***frames, size_t *n);

/* Frees the array from qiao_image_decode_video_frames and its n images; NULL is fine. */
QIAO_API void qiao_image_frames_free(qiao_image **frames, size_t n);

/* Preprocessing to the encoder's input: resize, fit to size x size, then
 * x = (v / 255 - mean[c]) / std[c] as float.
 *
 * Fit CROP (the default, as CLIP does): scale so the short side is `size`,
 * then cut the centered size x size square. LETTERBOX: scale so the long side
 * is `size`, center the image and fill the rest with `pad` (for an odd
 * margin, the extra row or column goes to the bottom or right). Resampling is
 * libswscale bicubic by default: like PIL's bicubic (what CLIP's preprocess
 * uses), its kernel widens when shrinking, so downscaling is antialiased;
 * AREA (box average) is the cheaper choice for large reductions. */
typedef enum qiao_image_fit {
    QIAO_IMAGE_FIT_CROP = 0,
    QIAO_IMAGE_FIT_LETTERBOX = 1
} qiao_image_fit;

typedef enum qiao_image_filter {
    QIAO_IMAGE_FILTER_BICUBIC = 0,
    QIAO_IMAGE_FILTER_BILINEAR = 1,
    QIAO_IMAGE_FILTER_AREA = 2
} qiao_image_filter;

typedef enum qiao_image_layout {
    QIAO_IMAGE_CHW = 0,         /* (3, size, size): the default, what the patch embedding reads */
    QIAO_IMAGE_HWC = 1          /* (size, size, 3) */
} qiao_image_layout;

typedef struct qiao_image_preprocess_params {
    size_t struct_size;         /* set by qiao_image_preprocess_default_params() */
    int64_t size;               /* output side S; default 224; 1..8192 */
    qiao_image_fit fit;         /* default QIAO_IMAGE_FIT_CROP */
    qiao_image_filter filter;   /* default QIAO_IMAGE_FILTER_BICUBIC */
    qiao_image_layout layout;   /* default QIAO_IMAGE_CHW */
    uint8_t pad[3];             /* letterbox fill; default (123, 117, 104), the CLIP mean, so it normalizes to ~0 */
    float mean[3];              /* default CLIP's (0.48145466, 0.4578275, 0.40821073) */
    float std[3];               /* default CLIP's (0.26862954, 0.26130258, 0.27577711); each > 0 */
} qiao_image_preprocess_params;

QIAO_API qiao_image_preprocess_params qiao_image_preprocess_default_params(void);

/* Floats the preprocessed tensor holds: 3 * size * size (0 for invalid params). */
QIAO_API size_t qiao_image_preprocess_len(const qiao_image_preprocess_params *params);

/* Preprocesses `img` into `out` (out_len >= qiao_image_preprocess_len(params),
 * caller-owned) in params->layout. params may be NULL for the defaults.
 * QIAO_ERR_INVALID_ARGUMENT for bad params or a short buffer. */
QIAO_API QIAO_MUST_CHECK qiao_status qiao_image_preprocess(const qiao_image *img,
                                                           const qiao_image_preprocess_params *params,
                                                           float *out, size_t out_len);

/* Floats of the patch matrix: (size / patch)^2 * patch * patch * 3, or 0 when
 * patch does not divide size. */
QIAO_API size_t qiao_image_patches_len(const qiao_image_preprocess_params *params, int64_t patch);

/* Preprocesses `img` (params->layout is ignored) and cuts the size x size
 * result into patch x patch squares: out is (num_patches, 3 * patch * patch),
 * row-major. Patch k covers rows (k / g) * patch.. and columns (k % g) * patch..
 * with g = size / patch; inside a patch vector the order is (channel, row,
 * column), the layout of a PyTorch Conv2d patch-embedding weight
 * (out, 3, patch, patch), so such a weight reshaped to (out, 3*patch*patch)
 * applies as a matrix product. QIAO_ERR_INVALID_ARGUMENT if patch does not
 * divide size or out_len < qiao_image_patches_len(). */
QIAO_API QIAO_MUST_CHECK qiao_status qiao_image_patches(const qiao_image *img,
                                                        const qiao_image_preprocess_params *params, int64_t patch,
                                                        float *out, size_t out_len);

/* ---- Audio ---------------------------------------------------------------- */
/* Audio is decoded, downmixed to mono (the mean of the channels) and
 * resampled (libswresample) to one rate, 16 kHz by default, as float PCM
 * clamped to [-1, 1]. WAV, FLAC and AIFF are read with libsndfile; Ogg
 * (Vorbis, Opus), MP3, AAC/M4A and the soundtrack of a video (MP4, MKV,
 * WebM...) with FFmpeg. The format is recognised from the bytes, never from
 * the file name. Decoding runs in blocks: the decoded result is the only
 * whole-file buffer. Sizes are checked before anything is allocated: a file
 * longer than max_seconds, or claiming one, gives QIAO_ERR_TOO_LARGE; a
 * sample rate outside [1000, 768000] Hz or more than max_channels channels
 * gives QIAO_ERR_FORMAT. FFmpeg's log goes to qiao's log (see Logging). */
typedef struct qiao_audio_params {
    size_t struct_size;      /* set by qiao_audio_default_params() */
    int target_rate;         /* output sample rate in Hz; default 16000, 0 keeps the source rate */
    double max_seconds;      /* refuse longer audio (QIAO_ERR_TOO_LARGE); default 3600 */
    int max_channels;        /* refuse more channels (QIAO_ERR_FORMAT); default 32 */
} qiao_audio_params;

/* Decoded audio. Fields are read-only; free with qiao_audio_free(). */
typedef struct qiao_audio {
    float *samples;          /* (n_samples,) mono, in [-1, 1] */
    int64_t n_samples;
    int sample_rate;         /* Hz, of samples */
    int source_rate;         /* Hz, of the file before resampling */
    int source_channels;
    int64_t source_frames;   /* frames decoded at source_rate */
    char source_format[32];  /* e.g. "wav", "flac", "ogg/vorbis", "aiff", "mp3", "mov/aac", "pcm" */
} qiao_audio;

QIAO_API qiao_audio_params qiao_audio_default_params(void);

/* Decodes the audio file at `path` (see above for formats and limits).
 * `params` may be NULL for the defaults. On success *out is a new
 * qiao_audio the caller frees with qiao_audio_free(). Returns QIAO_ERR_IO
 * when the file cannot be opened or read, QIAO_ERR_FORMAT for an unknown,
 * truncated or corrupt file, QIAO_ERR_TOO_LARGE over the limits; the
 * message names the file. */
QIAO_API QIAO_MUST_CHECK qiao_status qiao_audio_decode_file(const char *path, const qiao_audio_params *params,
                                                            qiao_audio **out);
/* Same as qiao_audio_decode_file() for an encoded file held in memory
 * (`size` bytes at `data`, not copied, only read during the call). The
 * result is identical to decoding the same bytes from a file. */
QIAO_API QIAO_MUST_CHECK qiao_status qiao_audio_decode_memory(const void *data, size_t size,
                                                              const qiao_audio_params *params, qiao_audio **out);
/* Makes a qiao_audio from raw float PCM: `n_frames` frames of `channels`
 * interleaved samples at `sample_rate` Hz. The samples are copied,
 * downmixed, resampled to params->target_rate and clamped as a decoded file
 * would be. `params` may be NULL. The caller frees *out with qiao_audio_free(). */
QIAO_API QIAO_MUST_CHECK qiao_status qiao_audio_from_pcm(const float *samples, int64_t n_frames, int sample_rate,
                                                         int channels, const qiao_audio_params *params,
                                                         qiao_audio **out);
/* Frees audio from any qiao_audio_* function. Accepts NULL. */
QIAO_API void qiao_audio_free(qiao_audio *audio);

/* Log-mel spectrogram, as torchaudio.transforms.MelSpectrogram (and
 * librosa's defaults) compute it, followed by a natural log:
 * periodic Hann window of n_fft samples, hop `hop`, center=True with
 * reflect padding of n_fft/2 on both sides (so frames = 1 + n / hop),
 * power spectrum |X|^2, Slaney mel scale with Slaney area normalization
 * (htk=False, norm='slaney'), then log(max(mel, floor)). The defaults
 * (16 kHz, n_fft 400 = 25 ms, hop 160 = 10 ms, 80 mels, 0..8000 Hz,
 * floor 1e-10) are the audio encoder's input. Output is row-major
 * (frames, n_mels). */
typedef struct qiao_mel_params {
    size_t struct_size;      /* set by qiao_mel_default_params() */
    int sample_rate;         /* Hz of the input PCM; default 16000 */
    int n_fft;               /* window and FFT length, even, 16..65536; default 400 */
    int hop;                 /* 1..n_fft; default 160 */
    int n_mels;              /* 1..512; default 80 */
    float fmin;              /* Hz; default 0 */
    float fmax;              /* Hz, <= sample_rate / 2; 0 means sample_rate / 2; default 8000 */
    float floor;             /* > 0; default 1e-10 */
} qiao_mel_params;

QIAO_API qiao_mel_params qiao_mel_default_params(void);

/* Computes the log-mel spectrogram of `audio` (whose sample_rate must equal
 * params->sample_rate). `params` may be NULL. On success *out is a new
 * (frames x n_mels) float array the caller frees with qiao_mel_free(), and
 * *frames its row count (0 for empty audio, *out then NULL). */
QIAO_API QIAO_MUST_CHECK qiao_status qiao_mel_compute(const qiao_audio *audio, const qiao_mel_params *params,
                                                      float **out, int64_t *frames);
/* Frees an array from qiao_mel_compute(). Accepts NULL. */
QIAO_API void qiao_mel_free(float *mel);

/* A streaming log-mel computer: push PCM in chunks of any size and receive
 * the frames completed so far; memory stays bounded by the chunk size plus
 * one window. The frames are bit-identical to qiao_mel_compute() on the
 * concatenated input. A stream is used by one thread at a time. */
typedef struct qiao_mel_stream qiao_mel_stream;

/* Creates a stream (the mel filterbank and FFT plan are built here, once).
 * `params` may be NULL. Free with qiao_mel_stream_free(). */
QIAO_API QIAO_MUST_CHECK qiao_status qiao_mel_stream_new(const qiao_mel_params *params, qiao_mel_stream **out);
/* Appends `n` mono samples at params.sample_rate. On success *frames points
 * to *n_frames new rows of n_mels floats (possibly 0), owned by the stream
 * and valid until its next call. */
QIAO_API QIAO_MUST_CHECK qiao_status qiao_mel_stream_push(qiao_mel_stream *stream, const float *samples, size_t n,
                                                          const float **frames, int64_t *n_frames);
/* Ends the input and returns the last frames (those that need the right
 * padding), as qiao_mel_stream_push() does. After it, only
 * qiao_mel_stream_free() may be called. */
QIAO_API QIAO_MUST_CHECK qiao_status qiao_mel_stream_finish(qiao_mel_stream *stream, const float **frames,
                                                            int64_t *n_frames);
/* Frees a stream. Accepts NULL. */
QIAO_API void qiao_mel_stream_free(qiao_mel_stream *stream);

/* ---- Models and embeddings -------------------------------------------------- */
/* A model embeds text, images and audio into one shared space of
 * qiao_model_dim() dimensions (1024 for the shipped models): rows are
 * L2-normalized, so the dot product of two embeddings is their cosine
 * similarity, whatever their modalities.
 *
 * Threads: a qiao_model is immutable after loading and may be shared by any
 * number of threads. A qiao_session holds the scratch memory of embedding
 * (one workspace per modality, made on its first use and sized to the
 * largest batch it has run) and belongs to one thread at a time; create one
 * per thread. Results do not depend on the calling thread or the session's
 * n_threads: the same call gives the same bits. Freeing the model while a
 * session of it exists is an error the library cannot detect: free sessions
 * first.
 *
 * Every embed call writes n * qiao_model_dim() floats to `out` (row i for
 * item i) and checks its arguments first (a NULL pointer or item, n == 0,
 * `out_len` (floats available) below n * dim): such a call is
 * QIAO_ERR_INVALID_ARGUMENT, computes nothing and writes nothing. After a
 * later failure (an undecodable file...) `out` may hold some rows. A batch
 * is computed together, at most 32 items per pass (so a session's memory is
 * bounded whatever n is), and gives the same rows, to within float rounding
 * (~1e-6), as embedding each item alone. */
typedef struct qiao_model qiao_model;
typedef struct qiao_session qiao_session;

/* Loads a model file (.safetensors written by `qiao train`: config,
 * parameters in f32, bf16 or f16, and the tokenizer). QIAO_ERR_IO when it
 * cannot be read, QIAO_ERR_FORMAT naming the file and tensor or key when
 * its content is wrong (a model without a tokenizer is QIAO_ERR_FORMAT: it
 * could not embed text). *out is freed with qiao_model_free().
 * Memory: the parameters as f32 (qiao_model_param_count() * 4 bytes) and,
 * by default on a CPU with AVX-512F, a second copy of the linear and conv
 * weights packed for the inference GEMM (nearly all parameters: close to
 * the same size again), shared by every session of the model;
 * qiao_model_memory() tells the total, qiao_model_params.pack_weights turns
 * the copy off. qiao_session_memory() counts neither. */
QIAO_API QIAO_MUST_CHECK qiao_status qiao_model_load(const char *path, qiao_model **out);
/* The same from a file image in memory (`size` bytes, only read during the call). */
QIAO_API QIAO_MUST_CHECK qiao_status qiao_model_load_memory(const void *data, size_t size, qiao_model **out);

typedef struct qiao_model_params {
    size_t struct_size; /* set by qiao_model_default_params() */
    /* 1 (default): pack the GEMM weights once at load, which makes single
     * items much faster and batches somewhat (docs/benchmarks.md, "Packed
     * weights"), for memory about the size of the f32 parameters again
     * (43 MiB for the base model). 0: no copy; OpenBLAS packs the weights
     * on every call. Rows differ
     * between the two only by float rounding (~1e-6); either way they do
     * not depend on the thread count. No effect on a CPU without AVX-512F. */
    int pack_weights;
} qiao_model_params;

QIAO_API qiao_model_params qiao_model_default_params(void);
/* qiao_model_load and qiao_model_load_memory with params (NULL: the
 * defaults, which is what those two use). */
QIAO_API QIAO_MUST_CHECK qiao_status qiao_model_load_with(const char *path, const qiao_model_params *params,
                                                          qiao_model **out);
QIAO_API QIAO_MUST_CHECK qiao_status qiao_model_load_memory_with(const void *data, size_t size,
                                                                 const qiao_model_params *params, qiao_model **out);
/* Bytes the model holds: its f32 parameters and the packed copy, if any
 * (not the tokenizer's small tables). 0 for NULL. */
QIAO_API size_t qiao_model_memory(const qiao_model *model);
/* Accepts NULL. */
QIAO_API void qiao_model_free(qiao_model *model);
/* The embedding dimension (0 for NULL). */
QIAO_API int64_t qiao_model_dim(const qiao_model *model);
/* The config's name ("base", "tiny"...); "" for NULL. Owned by the model. */
QIAO_API const char *qiao_model_name(const qiao_model *model);
/* Parameters (elements) of the three encoders and the temperatures: what
 * qiao_model_file_param_count() reports for the model's file. */
QIAO_API int64_t qiao_model_param_count(const qiao_model *model);
/* The embedding space the model's vectors live in: its config's "space" (a
 * converted checkpoint names its origin, e.g.
 * "intfloat/multilingual-e5-small"), or, when the config names none, the
 * model's name ("base"). Vectors of different spaces are not comparable; a
 * search index refuses a model of another space than its own. "" for NULL.
 * Owned by the model. */
QIAO_API const char *qiao_model_space(const qiao_model *model);
/* The prompt the model expects before a text in the role `name`: "query"
 * (a search query) or "document" (a text to be found), or another name its
 * config's "prompts" give. e5 expects "query: " and "passage: "; a model
 * trained without prompts (qiao's own) has none. qiao_embed_text() embeds a
 * text as given: an application prepends the prompt itself, as
 * qiao_index_query_text() and qiao_index_add_texts() do. "" when the model
 * has no such prompt (and for NULL). Owned by the model. */
QIAO_API const char *qiao_model_prompt(const qiao_model *model, const char *name);

typedef struct qiao_session_params {
    size_t struct_size;      /* set by qiao_session_default_params() */
    int n_threads;           /* compute threads for this session's calls; 0 = all cores (default) */
    /* Appended (older callers' smaller struct_size gets the default): the
     * arithmetic of the encoders' weight GEMMs, a qiao_precision.
     * QIAO_PRECISION_MODEL (0, the default) takes the model file's: int8 or
     * bf16 for a file `qiao quantize` wrote, f32 otherwise.
     * QIAO_PRECISION_F32 is the reference; BF16 rounds weights and
     * activations to bfloat16 and sums in f32; INT8 uses per-output-channel
     * int8 weights and activations quantized per token at each call.
     * Embeddings then differ from f32 by a small rounding (cosine bounds and
     * retrieval recall: docs/design.md "Precision"). Fast where the CPU has
     * AVX512-BF16 (bf16) or AVX-VNNI/AVX512-VNNI (int8); correct, slower,
     * elsewhere. The model packs its weights for a precision once, at the
     * first session asking for it (thread-safe), and shares them. */
    int precision;
} qiao_session_params;

typedef enum qiao_precision {
    QIAO_PRECISION_MODEL = 0,
    QIAO_PRECISION_F32 = 1,
    QIAO_PRECISION_BF16 = 2,
    QIAO_PRECISION_INT8 = 3
} qiao_precision;

QIAO_API qiao_session_params qiao_session_default_params(void);
/* A session on `model` (params may be NULL for the defaults). *out is freed
 * with qiao_session_free(). */
QIAO_API QIAO_MUST_CHECK qiao_status qiao_session_new(const qiao_model *model, const qiao_session_params *params,
                                                      qiao_session **out);
/* Accepts NULL. */
QIAO_API void qiao_session_free(qiao_session *session);
/* Bytes of scratch memory the session holds now: 0 for a new session; it
 * grows with the largest batch (up to 32 items) and the longest text or clip
 * embedded per modality, and stays put for calls that fit. What a service
 * budgets per thread. */
QIAO_API size_t qiao_session_memory(const qiao_session *session);

/* Text: UTF-8, NUL-terminated. Longer than the model's max_tokens tokens is
 * truncated (the first tokens are kept). Invalid UTF-8 is QIAO_ERR_FORMAT
 * naming the text's index and byte. An empty or all-space text has no
 * tokens: every such text gets the same row, the model's normalized
 * projection bias (all zeros, so not unit length, in an untrained model). */
QIAO_API QIAO_MUST_CHECK qiao_status qiao_embed_text(qiao_session *session, const char *text, float *out,
                                                     size_t out_len);
QIAO_API QIAO_MUST_CHECK qiao_status qiao_embed_texts(qiao_session *session, const char *const *texts, size_t n,
                                                      float *out, size_t out_len);

/* Images: decoded (qiao_image), a file, encoded bytes, or raw RGB (3 bytes
 * per pixel, rows `stride` bytes apart). Files and bytes are decoded with
 * the defaults of qiao_image_decode_params, with the same statuses
 * (QIAO_ERR_IO, QIAO_ERR_FORMAT naming the file, QIAO_ERR_TOO_LARGE).
 * Preprocessing (centre crop, resize, normalization) is the model's; the
 * same pixels give the same row whichever way they come in. */
QIAO_API QIAO_MUST_CHECK qiao_status qiao_embed_image(qiao_session *session, const qiao_image *image, float *out,
                                                      size_t out_len);
QIAO_API QIAO_MUST_CHECK qiao_status qiao_embed_images(qiao_session *session, const qiao_image *const *images,
                                                       size_t n, float *out, size_t out_len);
QIAO_API QIAO_MUST_CHECK qiao_status qiao_embed_image_file(qiao_session *session, const char *path, float *out,
                                                           size_t out_len);
QIAO_API QIAO_MUST_CHECK qiao_status qiao_embed_image_memory(qiao_session *session, const void *data, size_t size,
                                                             float *out, size_t out_len);
QIAO_API QIAO_MUST_CHECK qiao_status qiao_embed_image_rgb(qiao_session *session, const uint8_t *pixels,
                                                          int64_t width, int64_t height, size_t stride, float *out,
                                                          size_t out_len);

/* Audio: decoded (qiao_audio, any rate: resampled to 16 kHz when needed), a
 * file, encoded bytes (decoded with the defaults of qiao_audio_params), or
 * mono float PCM at `sample_rate` Hz (clamped to [-1, 1] and resampled as
 * qiao_audio_from_pcm() does). Clips longer than the model's max_frames
 * (10 ms each) keep their beginning; the rest is not even resampled or
 * analysed. Empty audio is QIAO_ERR_INVALID_ARGUMENT. */
QIAO_API QIAO_MUST_CHECK qiao_status qiao_embed_audio(qiao_session *session, const qiao_audio *audio, float *out,
                                                      size_t out_len);
QIAO_API QIAO_MUST_CHECK qiao_status qiao_embed_audios(qiao_session *session, const qiao_audio *const *clips,
                                                       size_t n, float *out, size_t out_len);
QIAO_API QIAO_MUST_CHECK qiao_status qiao_embed_audio_file(qiao_session *session, const char *path, float *out,
                                                           size_t out_len);
QIAO_API QIAO_MUST_CHECK qiao_status qiao_embed_audio_memory(qiao_session *session, const void *data, size_t size,
                                                             float *out, size_t out_len);
QIAO_API QIAO_MUST_CHECK qiao_status qiao_embed_audio_pcm(qiao_session *session, const float *samples,
                                                          int64_t n_samples, int sample_rate, float *out,
                                                          size_t out_len);

/* Cosine similarity of two n-float vectors, computed in double: their dot
 * product over the product of their norms (0 when either is all zeros, NULL,
 * or n is 0). */
QIAO_API float qiao_cosine(const float *a, const float *b, size_t n);

/* ---- Visual question answering --------------------------------------------- */
/* A VQA model (one with a fusion section and an "answer" head, e.g.
 * models/qiao-vqa.safetensors) answers a question about a picture. The
 * question is typed (UTF-8, Chinese or English), spoken (a qiao_audio), or
 * both; the answer comes in the question's language with its probability,
 * the ranked alternatives and how much each input counted (dynamic modality
 * weighting: a noisy or missing input weighs less). Pictures and sound come
 * in decoded, so a path, encoded bytes or raw pixels / PCM all work through
 * qiao_image_decode_file / _memory / qiao_image_from_rgb and
 * qiao_audio_decode_file / _memory / qiao_audio_from_pcm.
 *
 *     qiao_vqa_answer a;
 *     if (qiao_vqa_ask(session, img, "How many circles are there?", NULL, NULL, &a) == QIAO_OK)
 *         show_answer(a.best.text, a.best.p);   -- the application's own function
 *
 * Thread-safe as embedding is: a model is shared, a session is one
 * thread's at a time. A model without a VQA head gives
 * QIAO_ERR_UNSUPPORTED with a message. */
#define QIAO_VQA_MAX_TOP 8
#define QIAO_VQA_TEXT_MAX 64

typedef enum qiao_weighting {
    QIAO_WEIGHTING_MODEL = 0,     /* as the model was trained */
    QIAO_WEIGHTING_LEARNED = 1,   /* the learned gates */
    QIAO_WEIGHTING_HEURISTIC = 2, /* the fixed formula on the inputs' statistics */
    QIAO_WEIGHTING_EQUAL = 3      /* every present input alike */
} qiao_weighting;

typedef struct qiao_vqa_params {
    size_t struct_size; /* set by qiao_vqa_default_params() */
    int top_k;          /* answers ranked in qiao_vqa_answer.top, 1..QIAO_VQA_MAX_TOP; default 3 */
    int weighting;      /* a qiao_weighting; default QIAO_WEIGHTING_MODEL */
    const char *lang;   /* the answer's language, "zh" or "en"; NULL (default): the question's (a typed
                         * question's script, else the model's language head on the spoken one) */
} qiao_vqa_params;

QIAO_API qiao_vqa_params qiao_vqa_default_params(void);

typedef struct qiao_vqa_choice {
    char key[QIAO_VQA_TEXT_MAX];  /* the canonical answer: "yes", "3", "red", "top-left" */
    char text[QIAO_VQA_TEXT_MAX]; /* it in the answer's language: "是", "三", "红色", "左上角" */
    float p;                      /* its probability */
} qiao_vqa_choice;

typedef struct qiao_vqa_answer {
    char lang[8];                         /* "zh" or "en" */
    qiao_vqa_choice best;                 /* top[0] */
    int n_top;
    qiao_vqa_choice top[QIAO_VQA_MAX_TOP];
    float w_text, w_image, w_audio;       /* the inputs' weights (sum 1; 0 for an absent one) */
} qiao_vqa_answer;

/* 1 when the model answers questions (qiao_vqa_ask), else 0. */
QIAO_API int qiao_model_can_answer(const qiao_model *model);

/* Answers `question` (UTF-8 text, or NULL / "" for none) and/or
 * `question_audio` (NULL for none; any rate, resampled to 16 kHz) about
 * `image`. At least one form of the question is needed
 * (QIAO_ERR_INVALID_ARGUMENT otherwise); with both, both count. Text past
 * the model's max_tokens is cut; invalid UTF-8 is QIAO_ERR_FORMAT; empty
 * audio is QIAO_ERR_INVALID_ARGUMENT; audio past the model's max_frames
 * keeps its beginning. params may be NULL. */
QIAO_API QIAO_MUST_CHECK qiao_status qiao_vqa_ask(qiao_session *session, const qiao_image *image,
                                                  const char *question, const qiao_audio *question_audio,
                                                  const qiao_vqa_params *params, qiao_vqa_answer *out);
/* The same with the picture and the recording read from files (audio_path
 * NULL for a typed question only). */
QIAO_API QIAO_MUST_CHECK qiao_status qiao_vqa_ask_files(qiao_session *session, const char *image_path,
                                                        const char *question, const char *audio_path,
                                                        const qiao_vqa_params *params, qiao_vqa_answer *out);

/* ---- Intent classification -------------------------------------------------- */
/* An intent classifier (a model with an "intent" head, written by `qiao
 * intent train` from a business's own examples: docs/intent.md) tells what
 * a customer's message asks for: the intents ranked with calibrated
 * confidences (temperature scaling on the validation set), the margin
 * between the first two (small: ambiguous, ask again), and whether the
 * message is out of scope (the model's "oos" intent came first, or the top
 * confidence is below the threshold chosen on validation, which rejects
 * at most 5 % of the in-scope messages there by default). A classifier
 * trained on examples with entities also tags them: each entity's type
 * and its bytes in the text (an order number, a phone number, a date...).
 * A multi-label classifier (trained on "intents" lists: a text may inform
 * and request at once, or do neither, as CrossWOZ's dialogue acts) gives
 * each intent its own probability (they need not sum to 1): the text's
 * intents are those at 0.5 or more, and it is out of scope when none is.
 * A classifier trained with context (`"context": N` in its recipe) reads
 * the last N earlier turns of the conversation after the text: pass them
 * in qiao_intent_params.context, oldest first, both sides' turns as the
 * training data had them (CrossWOZ: the system's and the user's). A model
 * trained without context ignores them; entities are always the text's.
 *
 *     qiao_intent_result r;
 *     if (qiao_intent_classify(session, "我想退货", NULL, &r) == QIAO_OK && !r.out_of_scope)
 *         route(r.intent, r.confidence);    -- the application's own function
 *     qiao_intent_result_free(&r);
 *
 * Thread-safe as embedding is: a model is shared, a session is one
 * thread's at a time; the same text gives the same result on any thread and
 * in any batch (to float rounding, ~1e-6). A model without an intent head
 * gives QIAO_ERR_UNSUPPORTED with a message. */

typedef struct qiao_intent_params {
    size_t struct_size; /* set by qiao_intent_default_params() */
    int top_k;          /* intents in the ranking, best first; 0 (default): all of them */
    /* Out of scope below this calibrated confidence, in [0, 1]; negative
     * (default): the model's own threshold (qiao_model_intent_threshold). */
    float threshold;
    /* The conversation before the text: n_context earlier turns, oldest
     * first, each NUL-terminated UTF-8 (invalid UTF-8 is QIAO_ERR_FORMAT
     * naming the turn), read during the call only; the same for every
     * text of a batch. NULL and 0 (default): none. A model reads its last
     * qiao_model_intent_context() of them; the turns fill what the text
     * leaves of max_tokens, the newest first, and never cut the text. */
    const char *const *context;
    size_t n_context;
} qiao_intent_params;

QIAO_API qiao_intent_params qiao_intent_default_params(void);

typedef struct qiao_intent_score {
    const char *intent; /* the intent's label; owned by the model */
    float confidence;   /* its calibrated probability (the ranking's sum to 1 over all intents) */
} qiao_intent_score;

typedef struct qiao_entity {
    const char *type;  /* the entity's type ("order_id"); owned by the model */
    size_t start, end; /* its bytes in the text, [start, end) */
    float confidence;  /* the mean probability of its tokens' tags */
} qiao_entity;

typedef struct qiao_intent_result {
    const char *intent;          /* the top intent (ranking[0]); owned by the model */
    float confidence;            /* its calibrated probability */
    float margin;                /* confidence minus the second intent's */
    int out_of_scope;            /* 1: the top intent is the model's out-of-scope label, or confidence < the
                                  * threshold */
    size_t n_ranking;            /* top_k, or every intent */
    qiao_intent_score *ranking;  /* best first; owned by the result */
    size_t n_entities;           /* 0 for a model without an entity tagger */
    qiao_entity *entities;       /* in text order; owned by the result (NULL when none) */
} qiao_intent_result;

/* 1 when the model classifies intents, else 0. */
QIAO_API int qiao_model_can_classify(const qiao_model *model);
/* The model's intents (0 when it has none) and the label of intent i (NULL
 * past the end); owned by the model. */
QIAO_API size_t qiao_model_intent_count(const qiao_model *model);
QIAO_API const char *qiao_model_intent(const qiao_model *model, size_t i);
/* The label meaning out of scope ("oos"), or "" when the model has none. */
QIAO_API const char *qiao_model_intent_oos(const qiao_model *model);
/* The calibrated confidence below which a text is out of scope (0: the
 * model has no threshold), and the softmax temperature calibration chose. */
QIAO_API float qiao_model_intent_threshold(const qiao_model *model);
/* The entity types the model tags (0 without a tagger), and type i (NULL
 * past the end); owned by the model. */
QIAO_API size_t qiao_model_entity_type_count(const qiao_model *model);
QIAO_API const char *qiao_model_entity_type(const qiao_model *model, size_t i);
QIAO_API float qiao_model_intent_temperature(const qiao_model *model);
/* How many earlier turns of a conversation the classifier reads after the
 * text (qiao_intent_params.context); 0 for a model trained without. */
QIAO_API size_t qiao_model_intent_context(const qiao_model *model);

/* Classifies `text` (UTF-8; longer than the model's max_tokens is cut;
 * invalid UTF-8 is QIAO_ERR_FORMAT; an empty text is classified like any
 * other). params may be NULL. *out is zeroed first and filled on success;
 * free it with qiao_intent_result_free (also after a failure). */
QIAO_API QIAO_MUST_CHECK qiao_status qiao_intent_classify(qiao_session *session, const char *text,
                                                          const qiao_intent_params *params, qiao_intent_result *out);
/* The same for n texts together (faster per text than one at a time) into
 * out[0 .. n); on failure every out[i] is zeroed and nothing needs freeing.
 * Free each result with qiao_intent_result_free. */
QIAO_API QIAO_MUST_CHECK qiao_status qiao_intent_classify_batch(qiao_session *session, const char *const *texts,
                                                                size_t n, const qiao_intent_params *params,
                                                                qiao_intent_result *out);
/* Frees what a result owns and zeroes it. Accepts NULL and a zeroed result. */
QIAO_API void qiao_intent_result_free(qiao_intent_result *result);

/* ---- Captioning ------------------------------------------------------------- */
/* A caption model (one with a decoder section, written by `qiao train
 * caption`) describes a picture in a sentence or a few, in Chinese or
 * English. The picture comes decoded (qiao_image), as a file, as encoded
 * bytes or as packed RGB, as the embedding functions take it; the caption
 * is written piece by piece by greedy search, beam search (GNMT length
 * penalty) or sampling (temperature, top-p, a seed), and each piece can be
 * streamed to a callback with the text so far.
 *
 *     qiao_caption_params cp = qiao_caption_default_params();
 *     cp.lang = "en";
 *     qiao_caption_result r;
 *     if (qiao_caption_image_file(session, "cat.jpg", &cp, &r) == QIAO_OK)
 *         puts(r.text);
 *     qiao_caption_result_free(&r);
 *
 * Thread-safe as embedding is: a model is shared, a session is one
 * thread's at a time; the same call gives the same caption on any thread.
 * A model without a decoder (an embedding or VQA model) gives
 * QIAO_ERR_UNSUPPORTED with a message. */

/* How the pieces are chosen. */
typedef enum qiao_caption_strategy {
    QIAO_CAPTION_GREEDY = 0, /* the most likely piece at each step */
    QIAO_CAPTION_BEAM = 1,   /* beam search over beam_size hypotheses, the best by logprob / lp(length) */
    QIAO_CAPTION_SAMPLE = 2  /* each piece drawn with temperature and top-p from a seeded generator */
} qiao_caption_strategy;

/* Bounds of qiao_caption_params.max_len and beam_size. */
#define QIAO_CAPTION_MAX_LEN 4096
#define QIAO_CAPTION_MAX_BEAM 256

/* One piece of the caption, handed to the token callback as soon as it is
 * certain to be in the result (beam search: once every hypothesis that can
 * still win shares it). Valid during the call only. */
typedef struct qiao_caption_token {
    int32_t piece;    /* its id in the model's tokenizer */
    size_t index;     /* 0 for the first piece */
    const char *text; /* the caption so far (written spacing), NUL-terminated; a
                         character still incomplete after this piece is left out */
    size_t text_len;  /* bytes of text */
    size_t new_from;  /* text + new_from is what this piece added; the text only grows,
                         so the previous call's text is text[0 .. new_from) */
} qiao_caption_token;

typedef void (*qiao_caption_token_fn)(const qiao_caption_token *token, void *user_data);

typedef struct qiao_caption_params {
    size_t struct_size;   /* set by qiao_caption_default_params() */
    const char *lang;     /* the caption's language: "zh" (default) or "en"; read during the call */
    int strategy;         /* a qiao_caption_strategy; default QIAO_CAPTION_GREEDY */
    int beam_size;        /* beams of QIAO_CAPTION_BEAM, 1..QIAO_CAPTION_MAX_BEAM (1 is greedy); default 4 */
    double length_alpha;  /* beam search's GNMT length penalty ((5 + len) / 6)^alpha, alpha >= 0; default 0.6 */
    int max_len;          /* pieces written at most, the end included, 1..QIAO_CAPTION_MAX_LEN; default 64.
                             Above the decoder's positions (96 for the recipe's) it is cut to them */
    double temperature;   /* QIAO_CAPTION_SAMPLE: >= 0, 0 is greedy; default 1 */
    double top_p;         /* QIAO_CAPTION_SAMPLE: in (0, 1], draw from the fewest most likely pieces whose
                             probability reaches it; default 1 (all) */
    uint64_t seed;        /* QIAO_CAPTION_SAMPLE: the same seed, picture and model give the same caption */
    qiao_caption_token_fn on_token; /* NULL (default): no streaming */
    void *on_token_user_data;
    qiao_cancel_fn cancel;          /* polled before each piece; nonzero stops with QIAO_ERR_CANCELLED */
    void *cancel_user_data;
} qiao_caption_params;

QIAO_API qiao_caption_params qiao_caption_default_params(void);

/* A caption. Freed with qiao_caption_result_free(). */
typedef struct qiao_caption_result {
    char *text;        /* UTF-8, NUL-terminated, written spacing; "" when the model ended at once */
    size_t text_len;   /* bytes of text */
    int32_t *pieces;   /* (n_pieces) the tokenizer's piece ids, without the end piece; NULL when none */
    size_t n_pieces;
    double logprob;    /* natural log-probability of the pieces and the end under the model
                          (temperature 1, before top-p) */
    double score;      /* beam search: logprob / lp(length); otherwise logprob */
    int ended;         /* 1: the model ended the caption; 0: it was cut at max_len */
    char lang[8];      /* "zh" or "en" */
} qiao_caption_result;

/* 1 when the model writes captions (qiao_caption_image), else 0 (and for NULL). */
QIAO_API int qiao_model_can_caption(const qiao_model *model);

/* Describes `image` in params->lang (params may be NULL for the defaults).
 * On success *out holds the caption, which the caller frees with
 * qiao_caption_result_free(); on failure *out is zeroed (freeing it is
 * harmless). The token callback and cancel run on the calling thread;
 * the last token's text is the result's text (but for a caption that ends
 * inside a character, which the result closes with U+FFFD). Every field of
 * params is checked, whatever the strategy, before any work: a lang other
 * than "zh" and "en", an unknown strategy, a beam_size or max_len below 1,
 * a negative or non-finite length_alpha or temperature, a top_p outside
 * (0, 1], or a NULL argument is QIAO_ERR_INVALID_ARGUMENT; a beam_size
 * over QIAO_CAPTION_MAX_BEAM or a max_len over QIAO_CAPTION_MAX_LEN is
 * QIAO_ERR_TOO_LARGE. */
QIAO_API QIAO_MUST_CHECK qiao_status qiao_caption_image(qiao_session *session, const qiao_image *image,
                                                        const qiao_caption_params *params, qiao_caption_result *out);
/* The same with the picture read from a file, from encoded bytes (`size`
 * bytes, only read during the call) or from packed RGB (3 bytes per pixel,
 * rows `stride` bytes apart), decoded as qiao_image_decode_file,
 * qiao_image_decode_memory and qiao_image_from_rgb do, with their statuses
 * (QIAO_ERR_IO; QIAO_ERR_FORMAT, naming the file, for what is not a
 * picture; QIAO_ERR_TOO_LARGE). The same pixels give the same caption
 * whichever way they come in. */
QIAO_API QIAO_MUST_CHECK qiao_status qiao_caption_image_file(qiao_session *session, const char *path,
                                                             const qiao_caption_params *params,
                                                             qiao_caption_result *out);
QIAO_API QIAO_MUST_CHECK qiao_status qiao_caption_image_memory(qiao_session *session, const void *data, size_t size,
                                                               const qiao_caption_params *params,
                                                               qiao_caption_result *out);
QIAO_API QIAO_MUST_CHECK qiao_status qiao_caption_image_rgb(qiao_session *session, const uint8_t *pixels,
                                                            int64_t width, int64_t height, size_t stride,
                                                            const qiao_caption_params *params,
                                                            qiao_caption_result *out);
/* Frees the caption's text and pieces and zeroes *result. Accepts NULL and
 * a zeroed result. */
QIAO_API void qiao_caption_result_free(qiao_caption_result *result);

/* Captioning a video: frames are sampled at `fps` (as
 * qiao_image_decode_video_frames samples them, but decoded one at a time,
 * so a long video needs no more memory than a short one) and each kept
 * frame is captioned, with its time. With `scenes`, a frame is kept only
 * where the picture changes: the first frame, then each sampled frame whose
 * change from the last KEPT frame exceeds scene_threshold (comparing with
 * the last kept frame, not the previous one, lets a slow pan or fade add
 * up to a new caption).
 *
 * The change (0 for the same picture, 1 for black against white) is the
 * mean of two measures on a 32 x 32 RGB thumbnail of each frame (each cell
 * the mean of its pixels, whatever the aspect ratio, which averages away
 * sensor noise and compression artefacts): where things are, the mean
 * absolute difference of the 8 x 8 layouts (4 x 4 cells each) over 255; and
 * what colours there are, half the L1 distance between the thumbnails'
 * 64-bin colour histograms (4 levels a channel), which a moving camera
 * hardly changes. It needs no model. The default threshold, 0.15, lies
 * between what camera motion within one shot gives between frames a second
 * apart and what a cut between two shots gives (docs/captioning.md,
 * "Video", has the measurements). A strong, quick change of brightness (a
 * flash, a light switched on) counts as a change.
 *
 *     qiao_caption_video_params vp = qiao_caption_video_default_params();
 *     vp.scenes = 1;
 *     qiao_video_captions vc;
 *     if (qiao_caption_video(session, "clip.mp4", &vp, NULL, &vc) == QIAO_OK)
 *         for (size_t i = 0; i < vc.n; i++)
 *             show_subtitle(vc.items[i].time, vc.items[i].end, vc.items[i].caption.text);  (the app's own)
 *     qiao_video_captions_free(&vc);
 *
 * Thread-safety as for qiao_caption_image: the session is one thread's for
 * the call. */

/* The upper bound of qiao_caption_video_params.fps. */
#define QIAO_CAPTION_VIDEO_MAX_FPS 1000.0

/* One caption of a video: the kept frame's time and the time the next kept
 * frame takes over. */
typedef struct qiao_video_caption {
    double time;                 /* seconds from the start of the video stream */
    double end;                  /* the next caption's time; for the last, the end of the video (the last decoded
                                    frame's end, else the container's duration), or time + 1 / fps when unknown */
    double change;               /* the change from the previous kept frame that kept this one, 0..1 (0 for the
                                    first, and without scenes the change from the previous sampled frame) */
    qiao_caption_result caption; /* owned by the qiao_video_captions it is in */
} qiao_video_caption;

/* Called as each caption is complete (its end known: at the next kept frame
 * or at the end of the video), on the calling thread; `caption` is valid
 * during the call only. `index` counts from 0. */
typedef void (*qiao_video_caption_fn)(const qiao_video_caption *caption, size_t index, void *user_data);

typedef struct qiao_caption_video_params {
    size_t struct_size;      /* set by qiao_caption_video_default_params() */
    double fps;              /* frames sampled per second, in (0, QIAO_CAPTION_VIDEO_MAX_FPS]; default 1 */
    int scenes;              /* nonzero: caption only the frames where the picture changes; default 0 */
    double scene_threshold;  /* the change (0..1) a frame must exceed to be kept, in [0, 1]; default 0.15 */
    int64_t max_frames;      /* frames sampled at most (kept or not); more is QIAO_ERR_TOO_LARGE, refused before
                                decoding when the video's duration is known; default 3600 (an hour at 1 fps) */
    int64_t max_pixels;      /* per frame, as in qiao_video_params; default 64 Mi */
    qiao_video_caption_fn on_caption; /* NULL (default): none */
    void *on_caption_user_data;
} qiao_caption_video_params;

QIAO_API qiao_caption_video_params qiao_caption_video_default_params(void);

/* The captions of a video, in time order. Freed with qiao_video_captions_free(). */
typedef struct qiao_video_captions {
    qiao_video_caption *items; /* (n) */
    size_t n;
    int64_t frames_sampled;    /* frames sampled at fps, kept or not */
    double end;                /* the end of the video in seconds, as the last caption's end sees it; 0 unknown */
    int damaged;               /* 1: the demuxer or decoder rejected data, or the frames end well before the
                                  duration the container states (a damaged or cut file): the captions are those
                                  of the frames that decoded, which may stop early */
    char lang[8];              /* "zh" or "en" */
} qiao_video_captions;

/* Captions the video at `path` (any container and codec FFmpeg reads) with
 * the session's caption model: `vparams` (NULL for the defaults) choose the
 * frames, `params` (NULL for the defaults) write each caption as
 * qiao_caption_image does; their token callback streams each caption in
 * turn, and their cancel is polled between frames too. On success *out
 * holds at least one caption, which the caller frees with
 * qiao_video_captions_free(); on failure *out is zeroed (freeing it is
 * harmless), even when captions were already handed to on_caption.
 * Everything is checked before the file is opened: a model without a
 * decoder is QIAO_ERR_UNSUPPORTED; a NULL argument, an fps that is not in
 * (0, QIAO_CAPTION_VIDEO_MAX_FPS], a scene_threshold outside [0, 1] (or
 * NaN), max_frames or max_pixels below 1, or a bad caption param is
 * QIAO_ERR_INVALID_ARGUMENT (QIAO_ERR_TOO_LARGE for the caption params'
 * upper bounds). Then: QIAO_ERR_IO when the file cannot be opened;
 * QIAO_ERR_FORMAT, naming the file, for what is not a video, an empty file,
 * one with no decodable frame, or a cut MP4 whose index was at its end;
 * QIAO_ERR_TOO_LARGE for more than max_frames frames or a frame over
 * max_pixels; QIAO_ERR_CANCELLED when cancelled. A damaged or cut video
 * whose first frames decode is not an error: it gives the captions of the
 * frames that decode, as a player shows them, and sets out->damaged. */
QIAO_API QIAO_MUST_CHECK qiao_status qiao_caption_video(qiao_session *session, const char *path,
                                                        const qiao_caption_video_params *vparams,
                                                        const qiao_caption_params *params, qiao_video_captions *out);
/* Frees every caption and zeroes *captions. Accepts NULL and a zeroed value. */
QIAO_API void qiao_video_captions_free(qiao_video_captions *captions);

/* ---- Search index ----------------------------------------------------------- */
/* An index holds embeddings of one model under string keys and ranks them
 * by cosine similarity against a query: a text, a picture, a recording or a
 * vector. Files are added by path (folders walked), recognised by their
 * content (an image when the image decoder takes it, else audio) and embedded
 * with the index's model; texts (documents) are added under keys of the
 * caller's choice and embedded with it too; vectors computed elsewhere are
 * added under a key. `qiao search` is a program on these functions.
 *
 *     qiao_index *ix = NULL;
 *     qiao_index_hit *hits = NULL;
 *     size_t n = 0;
 *     const char *dirs[] = {"photos"};
 *     qiao_index_add_stats s;
 *     qiao_index_query_params qp = qiao_index_query_default_params();
 *     if (qiao_index_create("model.safetensors", "photos.index", NULL, &ix) == QIAO_OK &&
 *         qiao_index_add_files(ix, dirs, 1, NULL, &s) == QIAO_OK && qiao_index_save(ix, NULL) == QIAO_OK &&
 *         qiao_index_query_text(ix, "a red circle", &qp, &hits, &n) == QIAO_OK)
 *         for (size_t i = 0; i < n; i++) show_hit(hits[i].key, hits[i].score); // the app's own
 *     qiao_index_hits_free(hits);
 *     qiao_index_free(ix);
 *
 * MODEL: an index is made by one model and records it: the model's path,
 * its embedding space (qiao_model_space(): the config's "space", e.g.
 * "intfloat/multilingual-e5-small" for a converted e5, else the model's
 * name, "base" for qiao-base) and a fingerprint (its name, dimension,
 * parameter count, file size and a 64-bit hash of the whole model file).
 * Opening an index with a model of another space is refused naming both
 * spaces; with a model of the same space whose fingerprint differs (another
 * file: retrained, converted again, quantized) it is refused naming both
 * models; so vectors of two models never mix. An index written before
 * spaces were recorded is in the space of its model's name. The index loads
 * its model itself (reading the file once to hash and load it);
 * qiao_index_model() lends it to embed other things in the same space.
 *
 * PROMPTS: a model trained with prompts (e5: "query: " before a query,
 * "passage: " before a document; qiao_model_prompt()) gets them here
 * without the caller's help: qiao_index_query_text() puts the "query"
 * prompt before the query, qiao_index_add_texts() the "document" prompt
 * before each text. A vector given to qiao_index_add_embedding() or
 * qiao_index_query_vector() is the caller's, prompt and all.
 *
 * FILE: one .safetensors file (tensor "embeddings" (N, D) F32, metadata
 * "qiao.index" JSON with the model, the fingerprint and each item's key,
 * kind, and for files their size and modification time), written
 * atomically. Version 1 files (what `qiao search` wrote before this API)
 * are read; a file holding only image and audio files is still written as
 * version 1, one with vectors added by key or text items as version 2.
 *
 * THREADS: an index may be used from any number of threads at once. Queries
 * run concurrently with each other and with a writer's long work (a writer
 * embeds outside the lock and swaps its result in at the end); writers
 * (add, remove, load, save) take turns. Each query borrows a session from a
 * pool the index keeps (one per query in flight), so callers need none.
 * A query sees the index as it was before or after a write, never between. */
typedef struct qiao_index qiao_index;

/* What an item is. Files are IMAGE or AUDIO, documents of
 * qiao_index_add_texts() TEXT; a vector added by key has the kind its
 * caller gives. */
typedef enum qiao_index_kind {
    QIAO_INDEX_IMAGE = 0,
    QIAO_INDEX_AUDIO = 1,
    QIAO_INDEX_TEXT = 2
} qiao_index_kind;
/* For a query or count: every kind. */
#define QIAO_INDEX_ANY (-1)

typedef struct qiao_index_params {
    size_t struct_size;      /* set by qiao_index_default_params() */
    int n_threads;           /* compute threads of each session the index embeds with; 0 = all cores (default) */
} qiao_index_params;

QIAO_API qiao_index_params qiao_index_default_params(void);

/* A new, empty index of the model at `model_path`, to be saved at
 * `index_path` (NULL: in memory only; qiao_index_save() then needs a path).
 * Nothing is read or written at index_path now; qiao_index_save() replaces
 * whatever is there. `params` may be NULL. Model errors are
 * qiao_model_load()'s (QIAO_ERR_IO, QIAO_ERR_FORMAT naming the file). The
 * caller frees *out with qiao_index_free(). */
QIAO_API QIAO_MUST_CHECK qiao_status qiao_index_create(const char *model_path, const char *index_path,
                                                       const qiao_index_params *params, qiao_index **out);
/* Opens the index file at `index_path` with the model at `model_path`, or,
 * when model_path is NULL, the model path the file records. The file is
 * validated whole (QIAO_ERR_FORMAT naming the file and what is wrong; a
 * non-finite vector names its row and key; QIAO_ERR_UNSUPPORTED for a newer
 * version; QIAO_ERR_IO for a missing file or one that is a FIFO, device or
 * folder, without blocking). A model with another fingerprint than the
 * file's is QIAO_ERR_INVALID_ARGUMENT naming both models. The index saves
 * back to index_path. The caller frees *out with qiao_index_free(). */
QIAO_API QIAO_MUST_CHECK qiao_status qiao_index_open(const char *index_path, const char *model_path,
                                                     const qiao_index_params *params, qiao_index **out);
/* Replaces the items of `index` with those of the index file at `path`,
 * checked as qiao_index_open() checks it (another model's file is
 * QIAO_ERR_INVALID_ARGUMENT). On failure the index is as it was. Where it
 * saves does not change. */
QIAO_API QIAO_MUST_CHECK qiao_status qiao_index_load(qiao_index *index, const char *path);
/* Writes the index atomically to `path`, or to its own path when path is
 * NULL (QIAO_ERR_INVALID_ARGUMENT for a memory-only index). Items are
 * written in key order. */
QIAO_API QIAO_MUST_CHECK qiao_status qiao_index_save(qiao_index *index, const char *path);
/* Accepts NULL. Frees the index's model too: free the index after the last
 * use of qiao_index_model(). */
QIAO_API void qiao_index_free(qiao_index *index);

/* The model the index embeds with (owned by the index, valid until it is
 * freed; NULL for NULL). */
QIAO_API const qiao_model *qiao_index_model(const qiao_index *index);
/* The model's path as recorded (absolute where it could be resolved), owned
 * by the index; "" for NULL. */
QIAO_API const char *qiao_index_model_path(const qiao_index *index);
/* The embedding dimension (0 for NULL). */
QIAO_API int64_t qiao_index_dim(const qiao_index *index);
/* Items of `kind` (QIAO_INDEX_ANY: all); 0 for NULL. */
QIAO_API size_t qiao_index_count(qiao_index *index, int kind);
/* Nonzero when the index differs from its own file: changed since it was
 * opened or saved there, never saved, or opened with the model at another
 * path than the one recorded. */
QIAO_API int qiao_index_modified(qiao_index *index);

/* Progress of qiao_index_add_files() and qiao_index_add_texts(), after each batch. */
typedef struct qiao_index_progress {
    int64_t done;            /* files decoded and embedded (or failed), or texts embedded, so far, of... */
    int64_t total;           /* ...the new or changed files, or the texts, this call embeds */
    int64_t embedded;        /* of `done`, those that made it into the index */
    double seconds;          /* since embedding began */
} qiao_index_progress;
typedef void (*qiao_index_progress_fn)(const qiao_index_progress *progress, void *user_data);
/* A file qiao_index_add_files() did not index, or something its walk passed
 * by, with a sentence saying what and why (naming the path). QIAO_LOG_WARN:
 * something the caller should hear of (a damaged picture, an unreadable
 * folder, a path that is not UTF-8); QIAO_LOG_INFO: what is simply not
 * media (a text file, a FIFO, a link to a folder, a link loop). */
typedef void (*qiao_index_notice_fn)(qiao_log_level level, const char *path, const char *message,
                                     void *user_data);

typedef struct qiao_index_add_params {
    size_t struct_size;      /* set by qiao_index_add_default_params() */
    int recurse;             /* nonzero (default): walk folders to any depth; 0: a folder's own files only */
    int mirror;              /* nonzero: afterwards the index's files are exactly those found (items of
                                files elsewhere are removed), or its texts exactly those given (other
                                items of kind QIAO_INDEX_TEXT are removed); 0 (default): only files under
                                the given paths are added, updated or (when gone) removed, only the
                                texts given added or replaced */
    int batch;               /* files or texts per embedding batch, 1..512; default 32 */
    qiao_index_progress_fn progress;
    void *progress_user_data;
    qiao_cancel_fn cancel;   /* polled after listing and between batches */
    void *cancel_user_data;
    qiao_index_notice_fn notice;
    void *notice_user_data;
} qiao_index_add_params;

QIAO_API qiao_index_add_params qiao_index_add_default_params(void);

typedef struct qiao_index_add_stats {
    int64_t found;           /* regular, non-hidden files under the paths (0 when cancelled while listing) */
    int64_t embedded;        /* new or changed files embedded */
    int64_t kept;            /* unchanged files whose stored vector was kept */
    int64_t removed;         /* files of the index that are gone */
    int64_t failed;          /* files not indexed: not media, or decoding or embedding failed */
    int64_t skipped_known;   /* unchanged files an earlier call found not to be media */
    int64_t pending;         /* left for the next call after a cancel */
} qiao_index_add_stats;

/* Indexes the files and folders `paths[0 .. n)` (a folder's entries whose
 * names start with '.' are not visited; symbolic links to files are
 * followed, to anything else not). A file whose size and modification time
 * are those stored keeps its vector; the others are decoded and embedded in
 * batches (the next batch decoded on a second thread), and files an earlier
 * call found not to be media are not decoded again while unchanged. A file
 * that cannot be decoded or embedded (a non-finite vector included) goes to
 * `notice` and is left out, never fatal. The index file and the model file
 * are never indexed. A path that does not exist, or is neither a file nor a
 * folder, is QIAO_ERR_IO, the index unchanged. `params` and `stats` may be
 * NULL.
 *
 * Cancel: the call returns QIAO_ERR_CANCELLED. Cancelled while listing, the
 * index is unchanged. Otherwise the index holds the work that was finished:
 * the batches embedded are added, files that are gone are removed, and the
 * files not yet reached are not in it (a changed file's old vector is
 * dropped rather than kept stale); stats->pending counts them, and the
 * same call later embeds only those. Every item is whole either way: the
 * result is swapped in at once. */
QIAO_API QIAO_MUST_CHECK qiao_status qiao_index_add_files(qiao_index *index, const char *const *paths, size_t n,
                                                          const qiao_index_add_params *params,
                                                          qiao_index_add_stats *stats);
/* Adds the documents `texts[0 .. n)` under `keys[0 .. n)` (both UTF-8,
 * copied) as items of kind QIAO_INDEX_TEXT, embedded with the index's model
 * after its "document" prompt (PROMPTS above) in batches of params->batch,
 * the way qiao_embed_texts() embeds them (a text past the model's
 * max_tokens is cut there). An item with the same key, of any kind, is
 * replaced. Everything is checked before anything is embedded, and a
 * failure leaves the index as it was: a key that is NULL, empty or not
 * UTF-8, a key given twice, or a text that is NULL, empty or only white
 * space is QIAO_ERR_INVALID_ARGUMENT; a text that is not valid UTF-8 is
 * QIAO_ERR_FORMAT (as qiao_embed_texts); each message names the index i
 * of keys[i] or texts[i] (and its key). A model that gives a non-finite
 * vector is QIAO_ERR_INVALID_ARGUMENT naming the text. `params` (NULL: the
 * defaults) gives batch, mirror, progress (done and total count texts) and
 * cancel (polled before the first batch and between batches); recurse and
 * notice are not used. `stats` (may be NULL): found = n, embedded,
 * removed (by mirror), pending; the others are 0. keys and texts may be
 * NULL when n is 0 (with mirror, the index's texts are then removed).
 *
 * Queries go on while the texts are embedded; the result is swapped in at
 * once. Cancel: the call returns QIAO_ERR_CANCELLED, the batches finished
 * are added (and with mirror the other texts removed), and the texts not
 * reached, texts[n - stats->pending .. n), are not: items under their keys
 * stay as they were, so a call with just those goes on where this one
 * stopped. */
QIAO_API QIAO_MUST_CHECK qiao_status qiao_index_add_texts(qiao_index *index, const char *const *keys,
                                                          const char *const *texts, size_t n,
                                                          const qiao_index_add_params *params,
                                                          qiao_index_add_stats *stats);
/* Adds `dim` floats (which must be the index's dimension and all finite,
 * else QIAO_ERR_INVALID_ARGUMENT) under `key` (non-empty UTF-8, copied), as
 * an item of `kind`. An item with the same key is replaced. The vector is
 * stored as given: ranking is by cosine, so its length does not matter. */
QIAO_API QIAO_MUST_CHECK qiao_status qiao_index_add_embedding(qiao_index *index, const char *key,
                                                              qiao_index_kind kind, const float *vec, size_t dim);
/* Removes the item with `key` (QIAO_ERR_NOT_FOUND when there is none). */
QIAO_API QIAO_MUST_CHECK qiao_status qiao_index_remove(qiao_index *index, const char *key);

typedef struct qiao_index_query_params {
    size_t struct_size;      /* set by qiao_index_query_default_params() */
    size_t top_k;            /* at most this many hits; 0 = every item; default 10 */
    int kind;                /* QIAO_INDEX_ANY (default) or one qiao_index_kind */
} qiao_index_query_params;

QIAO_API qiao_index_query_params qiao_index_query_default_params(void);

/* One result: owned by the array it is in. */
typedef struct qiao_index_hit {
    const char *key;         /* the file's absolute path, or the key given */
    qiao_index_kind kind;
    float score;             /* cosine similarity with the query, in [-1, 1] */
} qiao_index_hit;

/* Ranks the items against a query: best first, equal scores in key order
 * (strcmp), so the same index and query give the same list. On success
 * *hits is a new array of *n_hits (<= top_k) results, freed with
 * qiao_index_hits_free() (NULL when there are none). `params` may be NULL.
 * The text, picture or recording is embedded with the index's model (as
 * qiao_embed_text(), qiao_embed_image_file() and qiao_embed_audio_file(),
 * with their errors; the text after the model's "query" prompt, whose
 * length does not shift the byte an invalid-UTF-8 error names). A vector
 * must have the index's dimension and be finite, else
 * QIAO_ERR_INVALID_ARGUMENT; so must the query's embedding. */
QIAO_API QIAO_MUST_CHECK qiao_status qiao_index_query_vector(qiao_index *index, const float *vec, size_t dim,
                                                             const qiao_index_query_params *params,
                                                             qiao_index_hit **hits, size_t *n_hits);
QIAO_API QIAO_MUST_CHECK qiao_status qiao_index_query_text(qiao_index *index, const char *text,
                                                           const qiao_index_query_params *params,
                                                           qiao_index_hit **hits, size_t *n_hits);
QIAO_API QIAO_MUST_CHECK qiao_status qiao_index_query_image(qiao_index *index, const char *path,
                                                            const qiao_index_query_params *params,
                                                            qiao_index_hit **hits, size_t *n_hits);
QIAO_API QIAO_MUST_CHECK qiao_status qiao_index_query_audio(qiao_index *index, const char *path,
                                                            const qiao_index_query_params *params,
                                                            qiao_index_hit **hits, size_t *n_hits);
/* Frees an array of hits (keys included). Accepts NULL. */
QIAO_API void qiao_index_hits_free(qiao_index_hit *hits);

/* ---- Self-check training -------------------------------------------------- */

/* Trains the built-in 2-layer transformer sequence classifier on a synthetic
 * task (each sequence of 8..16 symbols holds one marker; the class is the
 * symbol right after it, which no bag-of-tokens model can tell) and measures
 * its accuracy on held-out sequences from a separate seed stream. It exercises the whole training runtime
 * (layers, backward, AdamW, schedules, model file writing) and is what
 * `qiao selfcheck` runs. */
typedef struct qiao_selfcheck_params {
    size_t struct_size;      /* set by qiao_selfcheck_default_params() */
    int n_threads;           /* worker threads for kernels; 0 = all cores */
    uint64_t seed;           /* data and initialization seed */
    int64_t steps;           /* optimizer steps */
    int64_t batch_size;
    float learning_rate;     /* peak, after linear warmup, then cosine decay */
    const char *out_path;    /* if not NULL, the trained model is written here */
    qiao_progress_fn progress;
    void *progress_user_data;
    qiao_cancel_fn cancel;
    void *cancel_user_data;
} qiao_selfcheck_params;

typedef struct qiao_selfcheck_result {
    float final_loss;        /* mean training loss over the last 10% of steps */
    float accuracy;          /* on 2048 held-out sequences */
    float chance_accuracy;   /* what guessing gets: 1 / classes (classes are balanced) */
    int64_t steps;
    double seconds;
} qiao_selfcheck_result;

QIAO_API qiao_selfcheck_params qiao_selfcheck_default_params(void);
QIAO_API QIAO_MUST_CHECK qiao_status qiao_selfcheck_train(const qiao_selfcheck_params *params,
                                                          qiao_selfcheck_result *result);

#ifdef __cplusplus
}
#endif

#endif /* QIAO_H */
