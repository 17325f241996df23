/* datasets/shapes/shapes.h - the shapes world: a synthetic tri-modal data set
 * (image, captions and questions in Chinese and English, optional speech).
 *
 * Every scene is a pure function of (seed, split, index): its RNG stream is
 * derived from those three numbers, never from thread order, so the same
 * arguments give the same bytes for any number of jobs. Internal to the qiao
 * command and its tests (not part of the public SDK API).
 *
 * Thread-safety: every function may be called from several threads at once;
 * nothing here keeps process-global mutable state. Speech runs the espeak-ng
 * command in a fresh process per utterance, because the espeak-ng library
 * keeps global state that makes an utterance depend on the ones before it. */
#ifndef QIAO_SHAPES_H
#define QIAO_SHAPES_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

#define SHAPES_VERSION "shapes-1.1" /* 1.1: natural Mandarin speech rate, --speech-long */

enum {
    SHAPES_NSHAPES = 7,
    SHAPES_NCOLORS = 8,
    SHAPES_NSIZES = 2,
    SHAPES_NPLACES = 9,
    SHAPES_MAX_OBJECTS = 6,
    SHAPES_NCOGENT = 4,    /* held-out colour+shape pairs */
    SHAPES_NLANGS = 2,     /* 0 = zh, 1 = en */
    SHAPES_MAX_CAPTIONS = 3,
    SHAPES_NQTYPES = 5,
    SHAPES_TEXT_MAX = 768  /* bytes of one caption or question, UTF-8, with NUL */
};

typedef enum shapes_split { SHAPES_TRAIN = 0, SHAPES_VAL, SHAPES_TEST, SHAPES_COGENT, SHAPES_NSPLITS } shapes_split;
typedef enum shapes_qtype { SHAPES_Q_COUNT = 0, SHAPES_Q_ATTRIBUTE, SHAPES_Q_EXIST, SHAPES_Q_SPATIAL, SHAPES_Q_COMPARE } shapes_qtype;
typedef enum shapes_lang { SHAPES_ZH = 0, SHAPES_EN = 1 } shapes_lang;

/* The answer vocabulary: one canonical id per answer, ordered
 * yes, no, 0..6, colours, shapes, sizes, places. */
enum {
    SHAPES_A_YES = 0,
    SHAPES_A_NO = 1,
    SHAPES_A_NUM0 = 2,                                    /* numbers 0..6 */
    SHAPES_A_COLOR0 = SHAPES_A_NUM0 + 7,                  /* colours */
    SHAPES_A_SHAPE0 = SHAPES_A_COLOR0 + SHAPES_NCOLORS,   /* shapes */
    SHAPES_A_SIZE0 = SHAPES_A_SHAPE0 + SHAPES_NSHAPES,    /* sizes */
    SHAPES_A_PLACE0 = SHAPES_A_SIZE0 + SHAPES_NSIZES,     /* places */
    SHAPES_NANSWERS = SHAPES_A_PLACE0 + SHAPES_NPLACES
};

/* Vocabulary kinds, for the word tables below. */
typedef enum shapes_kind { SHAPES_K_SHAPE = 0, SHAPES_K_COLOR, SHAPES_K_SIZE, SHAPES_K_PLACE } shapes_kind;

/* Canonical English name of item `id` of `kind` ("circle", "red", "small",
 * "top-left"), or NULL when out of range. */
const char *shapes_name(shapes_kind kind, int id);
/* The k-th surface form (synonym) of item `id` of `kind` in `lang` as it
 * appears in captions and questions, or NULL past the last one. Static
 * strings. */
const char *shapes_form(shapes_kind kind, int id, shapes_lang lang, int k);
/* Canonical answer id string ("yes", "3", "red", "top-left") and its surface
 * text in `lang`; NULL when out of range. */
const char *shapes_answer_key(int answer);
const char *shapes_answer_text(int answer, shapes_lang lang);
const char *shapes_qtype_name(int qtype);
const char *shapes_split_name(shapes_split split);
/* Parses "train" / "val" / "test" / "cogent"; returns -1 when unknown. */
int shapes_split_parse(const char *s);
/* The held-out (colour, shape) pair i of SHAPES_NCOGENT: never in train, val
 * or test, at least one in every cogent scene. */
void shapes_cogent_pair(int i, int *color, int *shape);
int shapes_is_cogent_pair(int color, int shape);

typedef struct shapes_object {
    int shape, color, size;
    int cell;       /* 0..8, row-major on the 3x3 grid: 0 = top-left, 4 = center */
    float x, y;     /* centre, in [0, 1] image units (x right, y down) */
    float r;        /* circumscribed radius, image units; the shape lies inside its cell */
    float rot;      /* rotation in degrees */
} shapes_object;

typedef struct shapes_qa {
    int type;       /* shapes_qtype */
    int answer;     /* canonical answer id */
    char text[SHAPES_NLANGS][SHAPES_TEXT_MAX];
} shapes_qa;

typedef struct shapes_scene {
    int64_t index;
    shapes_split split;
    uint64_t seed;                      /* this scene's own stream */
    int n;
    shapes_object obj[SHAPES_MAX_OBJECTS];
    int bg_gradient;                    /* 0 solid, 1 horizontal, 2 vertical */
    float bg[2][3];                     /* background colour(s), RGB in [0, 1] */
    int ncap;                           /* captions per language; caption 0 is the long one */
    char cap[SHAPES_NLANGS][SHAPES_MAX_CAPTIONS][SHAPES_TEXT_MAX];
    int nqa;                            /* questions; each is asked in both languages */
    shapes_qa qa[SHAPES_NQTYPES];
} shapes_scene;

/* Fills `sc` with scene `index` of `split` for `seed`: objects, background,
 * captions and questions. Pure and cheap (no I/O). */
qiao_status shapes_scene_make(uint64_t seed, shapes_split split, int64_t index, shapes_scene *sc);

/* Draws the scene at size x size pixels (antialiased, light noise) and writes
 * it as a PNG to `path` (through `path`.tmp and a rename). */
qiao_status shapes_render_png(const shapes_scene *sc, int size, const char *path);

/* Speaks `text` with espeak-ng (voice, rate and pitch drawn from `seed`),
 * resamples 22050 -> 16000 Hz (the SDK's audio decoder, libswresample), adds light noise, and writes a 16 kHz mono
 * 16-bit WAV to `path` (through a temporary file and a rename). */
qiao_status shapes_speak_wav(const char *text, shapes_lang lang, uint64_t seed, const char *path);


/* Called after every scene (from any thread, one call at a time); a nonzero
 * return cancels the run with QIAO_ERR_CANCELLED. */
typedef int (*shapes_progress_fn)(int64_t done, int64_t total, void *user_data);

/* What --speech writes: nothing, only the long caption of each language
 * (what retrieval trains and evaluates on; about 7x fewer utterances, and
 * speech is the slow part of generation), every caption and question, or
 * the long captions and every question (one split serves retrieval and
 * spoken visual question answering; about 12 utterances a scene). A
 * question's WAV is the same file in SHAPES_SPEECH_ALL and
 * SHAPES_SPEECH_QUESTIONS (same name, same voice). */
enum { SHAPES_SPEECH_NONE = 0, SHAPES_SPEECH_ALL = 1, SHAPES_SPEECH_LONG = 2, SHAPES_SPEECH_QUESTIONS = 3 };

typedef struct shapes_params {
    size_t struct_size;
    int64_t n;                 /* scenes */
    uint64_t seed;
    shapes_split split;
    int size;                  /* image side in pixels (16..1024) */
    int speech;                /* SHAPES_SPEECH_*: which texts are also spoken as WAVs */
    int langs;                 /* bit 0 zh, bit 1 en */
    int jobs;                  /* threads */
    shapes_progress_fn progress;
    void *user_data;
} shapes_params;

shapes_params shapes_default_params(void);

/* Generates the data set into directory `out` (created if missing):
 * images/, speech/ (with speech), manifest.jsonl and dataset.json. A rerun
 * with the same arguments skips the files that already exist (each is
 * written through a temporary file and a rename, so one that exists is
 * complete); a rerun with other arguments into the same directory fails. */
qiao_status shapes_generate(const shapes_params *params, const char *out);

/* The blind baseline of a manifest: for each question type, the share of
 * questions answered right by always giving that type's most frequent
 * answer (answer_id). */
typedef struct shapes_baseline {
    int64_t count[SHAPES_NQTYPES];       /* questions of the type (all languages) */
    int majority[SHAPES_NQTYPES];        /* most frequent answer id, -1 if none */
    double accuracy[SHAPES_NQTYPES];
} shapes_baseline;

qiao_status shapes_blind_baseline(const char *manifest_path, shapes_baseline *out);

/* ---- Reading captions back (parse.c) --------------------------------------
 *
 * A caption, generated or a caption model's, read back into the objects it
 * mentions, to score it against the scene. The words are the generator's
 * (shapes_form, both languages, every synonym), English plurals ("circles",
 * "plus signs"), number words 0..6 (English, and 零一二两三四五六 with 个)
 * and digits. A mention is a run of size and colour words ending in a shape
 * word (or in "shape"/"object"/图形 when a colour or size is stated), with
 * an optional article or number before it ("a", "an", "two", 一个, 两个); a
 * number makes that many mentions. Within a clause (text between , . ; : ! ?
 * their full-width forms, 、 and the words "and" / 和), a place after a
 * mention belongs to it ("... circle in the top left", "...圆形在左上角"); a
 * place before any mention belongs to the next one ("左上角有一个..."). Any
 * other word ends a noun phrase in progress (only 的, 个 and articles may sit
 * inside one). A number before "shape(s)", "object(s)" or 个图形 with no
 * colour or size is a count ("six shapes", "图中有六个图形"). Both languages
 * are read in one pass, so the language need not be given. */

enum { SHAPES_PARSE_MAX = 32 }; /* mentions kept; more are counted in n_dropped */

typedef struct shapes_mention {
    int shape, color, size, cell; /* ids as in shapes_object; -1 where the caption does not say */
} shapes_mention;

typedef struct shapes_parse {
    int n;                               /* mentions in m */
    int n_dropped;                       /* mentions past SHAPES_PARSE_MAX, counted, not kept */
    shapes_mention m[SHAPES_PARSE_MAX];  /* in the caption's order */
    int count;                           /* the number of shapes the caption states; -1 none */
    int count_conflict;                  /* 1 when a later count states another number */
} shapes_parse;

/* Parses text[0 .. len) (UTF-8; NUL bytes count as spaces) into *out.
 * Text without any vocabulary gives an empty parse (n = 0, count = -1).
 * QIAO_ERR_FORMAT for invalid UTF-8, naming the byte; QIAO_ERR_INVALID_ARGUMENT
 * for a NULL. On failure *out is an empty parse. */
qiao_status shapes_caption_parse(const char *text, size_t len, shapes_parse *out);

/* How a parsed caption fares against its scene. Mentions are matched one to
 * one to the scene's objects (a maximum bipartite matching): a mention
 * matches an object when every attribute it states is the object's, so a
 * partial mention ("a blue hexagon") takes any unmatched blue hexagon,
 * whatever its size and place. precision = matched / mentions (1 when there
 * are none: nothing false was said), recall = matched / objects, f1 their
 * harmonic mean (0 when both are 0). Short captions name one or two objects
 * with some of their attributes, so for them only precision and `faithful`
 * say something; recall, f1 and `exact` are meant for the long caption,
 * which lists every object. */
typedef struct shapes_caption_score {
    int mentions;      /* n + n_dropped */
    int objects;       /* the scene's */
    int matched;
    double precision, recall, f1;
    int count;         /* the stated count, -1 none */
    int count_right;   /* a count is stated, it is the scene's, and no other count contradicts it */
    int faithful;      /* nothing false: every mention matched, and any stated count right */
    int exact;         /* the caption is the scene: every object matched by a mention that states its colour,
                          size, shape and place, no other mention, and any stated count right */
} shapes_caption_score;

/* Scores `p` against `sc` into *out. QIAO_ERR_INVALID_ARGUMENT for a NULL or
 * a parse whose counts are out of range. */
qiao_status shapes_caption_score_of(const shapes_parse *p, const shapes_scene *sc, shapes_caption_score *out);

#endif
