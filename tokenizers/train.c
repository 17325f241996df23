/* tokenizers/train.c - training a tokenizer from a text corpus.
 *
 * The corpus is normalized line by line exactly as tokenize() will
 * normalize text, cut into the same ICU word units, and SentencePiece BPE
 * is trained on those units as separate sentences: pieces then never merge
 * across a word boundary, which matches how tokenize() encodes word by
 * word. Characters are counted on the normalized text for the character
 * vocabulary (most frequent first). */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tokenizers/tokenizer.h"

#define N_CODEPOINTS 0x110000
#define MAX_VOCAB ((int64_t)1 << 20)

qiao_tokenizer_train_params qiao_tokenizer_train_default_params(void) {
    qiao_tokenizer_train_params p;
    memset(&p, 0, sizeof p);
    p.struct_size = sizeof p;
    p.vocab_size = 2000;
    p.char_vocab_size = 3000;
    p.k = 4;
    p.case_fold = 1;
    p.character_coverage = 0.995;
    p.n_threads = 2;
    return p;
}

typedef struct train_state {
    const tk_normalized *nt;
    char *units;          /* all word units, back to back */
    size_t ulen, ucap;
    size_t *off;          /* (n_units + 1) */
    size_t n_units, ocap;
} train_state;

static qiao_status add_unit(size_t b, size_t e, void *user) {
    train_state *t = user;
    size_t n = e - b;
    if (t->ulen + n > t->ucap) {
        size_t nc = t->ucap ? t->ucap : 1 << 16;
        while (nc < t->ulen + n) nc *= 2;
        char *p = realloc(t->units, nc);
        if (!p) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "tokenizer training: out of memory (%zu bytes of words)", nc);
        t->units = p;
        t->ucap = nc;
    }
    if (t->n_units + 2 > t->ocap) {
        size_t nc = t->ocap ? t->ocap * 2 : 4096;
        size_t *p = realloc(t->off, nc * sizeof *p);
        if (!p) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "tokenizer training: out of memory (%zu words)", nc);
        t->off = p;
        t->ocap = nc;
    }
    memcpy(t->units + t->ulen, t->nt->s + b, n);
    t->ulen += n;
    t->off[++t->n_units] = t->ulen;
    return QIAO_OK;
}

typedef struct cp_count {
    int32_t cp;
    uint64_t n;
} cp_count;

static int by_count(const void *a, const void *b) {
    const cp_count *x = a, *y = b;
    if (x->n != y->n) return x->n > y->n ? -1 : 1;
    return x->cp < y->cp ? -1 : x->cp > y->cp;
}

static size_t put_utf8(char *o, int32_t c) {
    if (c < 0x80) { o[0] = (char)c; return 1; }
    if (c < 0x800) { o[0] = (char)(0xC0 | (c >> 6)); o[1] = (char)(0x80 | (c & 0x3F)); return 2; }
    if (c < 0x10000) {
        o[0] = (char)(0xE0 | (c >> 12)); o[1] = (char)(0x80 | ((c >> 6) & 0x3F)); o[2] = (char)(0x80 | (c & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (c >> 18)); o[1] = (char)(0x80 | ((c >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((c >> 6) & 0x3F)); o[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}

qiao_status qiao_tokenizer_train(const qiao_tokenizer_train_params *in) {
    if (!in) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_tokenizer_train: NULL params");
    qiao_tokenizer_train_params p = qiao_tokenizer_train_default_params();
    qiao_status pst = qc_params_read(&p, sizeof p, in, sizeof(size_t), "qiao_tokenizer_train_default_params");
    if (pst != QIAO_OK) return pst;
    if (!p.corpus_path || !p.out_path)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_tokenizer_train: corpus_path and out_path are required");
    if (p.vocab_size < 300 || p.vocab_size > MAX_VOCAB)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_tokenizer_train: vocab_size %lld not in 300..%lld (256 are bytes)",
                        (long long)p.vocab_size, (long long)MAX_VOCAB);
    if (p.char_vocab_size < 3 || p.char_vocab_size > N_CODEPOINTS)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_tokenizer_train: char_vocab_size %lld not in 3..%d",
                        (long long)p.char_vocab_size, N_CODEPOINTS);
    if (p.k < 1 || p.k > TK_MAX_K)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_tokenizer_train: k %d not in 1..%d", p.k, TK_MAX_K);
    if (!(p.character_coverage > 0.0 && p.character_coverage <= 1.0))
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_tokenizer_train: character_coverage %g not in (0, 1]",
                        p.character_coverage);

    qiao_status st;
    FILE *f;
    int64_t total;
    st = qc_fopen_read(p.corpus_path, &f, &total);
    if (st != QIAO_OK) return st;
    uint64_t *counts = calloc(N_CODEPOINTS, sizeof *counts);
    train_state ts = {0};
    char *line = NULL, *model = NULL, *chars = NULL;
    cp_count *order = NULL;
    size_t lcap = 0, model_len = 0;
    tk_norm_opts no = {.case_fold = p.case_fold != 0, .t2s = p.traditional_to_simplified != 0};
    if (!counts) {
        st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "tokenizer training: out of memory");
        goto done;
    }
    ts.off = malloc(4096 * sizeof *ts.off);
    ts.ocap = 4096;
    if (!ts.off) {
        st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "tokenizer training: out of memory");
        goto done;
    }
    ts.off[0] = 0;
    int64_t done_bytes = 0, lineno = 0;
    ssize_t got;
    while ((got = getline(&line, &lcap, f)) >= 0) {
        lineno++;
        done_bytes += got;
        if ((lineno & 255) == 0) {
            if (p.cancel && p.cancel(p.cancel_user_data)) {
                st = qc_error(QIAO_ERR_CANCELLED, "tokenizer training cancelled while reading %s", p.corpus_path);
                goto done;
            }
            if (p.progress) p.progress("read", done_bytes, total, p.progress_user_data);
        }
        char what[64 + 32];
        snprintf(what, sizeof what, "%.64s line %lld", p.corpus_path, (long long)lineno);
        tk_normalized nt;
        if ((st = tk_normalize(line, (size_t)got, &no, what, &nt)) != QIAO_OK) goto done;
        for (size_t i = 0; i < nt.len;) {
            int32_t cp;
            i += tk_utf8_decode((const unsigned char *)nt.s + i, nt.len - i, &cp);
            if (cp > ' ') counts[cp]++;
        }
        ts.nt = &nt;
        st = tk_word_units(nt.s, nt.len, add_unit, &ts);
        tk_normalized_free(&nt);
        if (st != QIAO_OK) goto done;
    }
    if (ferror(f)) {
        st = qc_error(QIAO_ERR_IO, "%s: read error after line %lld", p.corpus_path, (long long)lineno);
        goto done;
    }
    if (p.progress) p.progress("read", total, total, p.progress_user_data);
    if (ts.n_units == 0) {
        st = qc_error(QIAO_ERR_FORMAT, "%s: no text to train on", p.corpus_path);
        goto done;
    }
    if (p.cancel && p.cancel(p.cancel_user_data)) {
        st = qc_error(QIAO_ERR_CANCELLED, "tokenizer training cancelled before SentencePiece");
        goto done;
    }
    if (p.progress) p.progress("train", 0, 1, p.progress_user_data);
    spm_train_opts so = {.vocab_size = p.vocab_size, .character_coverage = p.character_coverage,
                         .n_threads = p.n_threads};
    char err[1024] = "";
    spm_rc rc = spm_train(ts.units ? ts.units : "", ts.off, ts.n_units, &so, &model, &model_len, err, sizeof err);
    if (rc != SPM_OK) {
        st = qc_error(rc == SPM_ERR_NOMEM ? QIAO_ERR_OUT_OF_MEMORY : QIAO_ERR_FORMAT,
                      "%s: SentencePiece training failed: %s", p.corpus_path, err);
        goto done;
    }
    if (p.progress) p.progress("train", 1, 1, p.progress_user_data);
    if (p.cancel && p.cancel(p.cancel_user_data)) {
        st = qc_error(QIAO_ERR_CANCELLED, "tokenizer training cancelled before writing");
        goto done;
    }

    size_t distinct = 0;
    for (int32_t c = 0; c < N_CODEPOINTS; c++) distinct += counts[c] > 0;
    order = malloc((distinct ? distinct : 1) * sizeof *order);
    if (!order) {
        st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "tokenizer training: out of memory");
        goto done;
    }
    size_t m = 0;
    for (int32_t c = 0; c < N_CODEPOINTS; c++)
        if (counts[c]) order[m++] = (cp_count){c, counts[c]};
    qsort(order, m, sizeof *order, by_count);
    if (m > (size_t)p.char_vocab_size - 2) m = (size_t)p.char_vocab_size - 2;
    chars = malloc(12 + m * 5);
    if (!chars) {
        st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "tokenizer training: out of memory");
        goto done;
    }
    size_t cl = 0;
    memcpy(chars, "<pad>\n<unk>\n", 12);
    cl = 12;
    for (size_t i = 0; i < m; i++) {
        cl += put_utf8(chars + cl, order[i].cp);
        chars[cl++] = '\n';
    }
    char config[256];
    snprintf(config, sizeof config,
             "{\"version\": %d, \"k\": %d, \"nfkc\": true, \"case_fold\": %s, \"t2s\": %s, "
             "\"word_locale\": \"%s\", \"spm\": \"bpe, identity normalization, byte fallback\"}",
             TK_VERSION, p.k, p.case_fold ? "true" : "false", p.traditional_to_simplified ? "true" : "false",
             TK_WORD_LOCALE);
    qc_st_entry e[2];
    memset(e, 0, sizeof e);
    e[0] = (qc_st_entry){.name = TK_TENSOR_SPM, .dtype = QIAO_DTYPE_U8, .ndim = 1, .shape = {(int64_t)model_len},
                         .data = model};
    e[1] = (qc_st_entry){.name = TK_TENSOR_CHARS, .dtype = QIAO_DTYPE_U8, .ndim = 1, .shape = {(int64_t)cl},
                         .data = chars};
    qc_st_kv meta = {TK_META_CONFIG, config};
    if (p.progress) p.progress("write", 0, 1, p.progress_user_data);
    if ((st = qc_st_write(p.out_path, e, 2, &meta, 1)) != QIAO_OK) goto done;
    if (p.progress) p.progress("write", 1, 1, p.progress_user_data);
done:
    fclose(f);
    free(line);
    free(counts);
    free(ts.units);
    free(ts.off);
    free(model);
    free(chars);
    free(order);
    return st;
}
