/* tokenizers/spm_prune.c - a smaller SentencePiece model for the spm kind:
 * some of its pieces dropped, the rest in their old order, and the ids of
 * an imported model's tokenizer moved to match (vocabulary pruning,
 * models/vocab/prune.c).
 *
 * The serialized ModelProto is edited in protobuf's wire format: Debian's
 * libsentencepiece-dev ships no sentencepiece_model.pb.h, and code
 * generated against another protobuf would clash with the copy of the
 * message classes libsentencepiece.so exports. ModelProto (SentencePiece's
 * sentencepiece_model.proto) is
 *   1 pieces (repeated SentencePiece: 1 piece string, 2 score float,
 *     3 type enum, NORMAL = 1 when absent)
 *   2 trainer_spec, 3 normalizer_spec, 4 self_test_data,
 *   5 denormalizer_spec, 200.. extensions.
 * Dropping entries of field 1 keeps every other byte: the scores and types
 * of the kept pieces, the normalizer (its precompiled character map) and
 * the trainer's record. self_test_data is dropped: its expected pieces may
 * be ones that no longer exist, and SentencePiece checks them at load.
 *
 * A unigram model's Viterbi search over the kept pieces finds, for a text
 * whose best segmentation used only kept pieces, that same segmentation
 * (it is still a path of the smaller lattice, and no other path gained
 * score); a text that needed a dropped piece is segmented again into the
 * pieces that remain. */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "tokenizers/tokenizer.h"

/* ---- protobuf wire format ---------------------------------------------------- */

enum { WT_VARINT = 0, WT_FIXED64 = 1, WT_LEN = 2, WT_FIXED32 = 5 };
enum { F_PIECES = 1, F_SELF_TEST = 4 };
enum { P_TYPE = 3 };
enum { TYPE_NORMAL = 1 };

static bool get_varint(const uint8_t *p, size_t n, size_t *i, uint64_t *v) {
    uint64_t r = 0;
    for (int s = 0; s < 70 && *i < n; s += 7) {
        const uint8_t b = p[(*i)++];
        r |= s < 64 ? (uint64_t)(b & 0x7f) << s : 0;
        if (!(b & 0x80)) {
            *v = r;
            return true;
        }
    }
    return false;
}

/* One field at p[*i ..): its number, and for a length-delimited one its
 * payload [*pay, *i); *i moves past it. False on a malformed field (groups,
 * wire types 3 and 4, are not in ModelProto and count as malformed). */
static bool next_field(const uint8_t *p, size_t n, size_t *i, uint64_t *num, int *wt, size_t *pay) {
    uint64_t tag, v;
    if (!get_varint(p, n, i, &tag)) return false;
    *num = tag >> 3;
    *wt = (int)(tag & 7);
    *pay = *i;
    if (*num == 0 || *num > 536870911u) return false;
    switch (*wt) {
    case WT_VARINT: return get_varint(p, n, i, &v);
    case WT_FIXED64:
        if (n - *i < 8) return false;
        *i += 8;
        return true;
    case WT_FIXED32:
        if (n - *i < 4) return false;
        *i += 4;
        return true;
    case WT_LEN:
        if (!get_varint(p, n, i, &v) || v > n - *i) return false;
        *pay = *i;
        *i += (size_t)v;
        return true;
    default: return false;
    }
}

/* A piece message's type (SentencePiece::Type; NORMAL when absent), or -1
 * when the message is malformed. */
static int64_t piece_type(const uint8_t *p, size_t n) {
    int64_t type = TYPE_NORMAL;
    size_t i = 0;
    while (i < n) {
        uint64_t num, v;
        int wt;
        size_t pay;
        if (!next_field(p, n, &i, &num, &wt, &pay)) return -1;
        if (num == P_TYPE && wt == WT_VARINT) {
            size_t j = pay;
            if (!get_varint(p, n, &j, &v)) return -1;
            type = (int64_t)(v & 0x7fffffff);
        }
    }
    return type;
}

qiao_status tk_spm_proto_count(const void *proto, size_t len, const char *what, size_t *n_pieces) {
    if (!proto || !n_pieces) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "tk_spm_proto_count: NULL argument");
    const uint8_t *p = proto;
    size_t i = 0, n = 0;
    while (i < len) {
        uint64_t num;
        int wt;
        size_t at = i, pay;
        if (!next_field(p, len, &i, &num, &wt, &pay))
            return qc_error(QIAO_ERR_FORMAT, "%s: not a SentencePiece model (bad protobuf field at byte %zu)", what, at);
        if (num == F_PIECES) {
            if (wt != WT_LEN || piece_type(p + pay, i - pay) < 0)
                return qc_error(QIAO_ERR_FORMAT, "%s: SentencePiece model: piece %zu is malformed", what, n);
            n++;
        }
    }
    *n_pieces = n;
    return QIAO_OK;
}

qiao_status tk_spm_proto_prune(const void *proto, size_t len, bool *keep, size_t n_pieces, const char *what,
                               char **out, size_t *out_len) {
    if (!out || !out_len) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "tk_spm_proto_prune: NULL argument");
    *out = NULL, *out_len = 0;
    if (!proto || (!keep && n_pieces)) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "tk_spm_proto_prune: NULL argument");
    size_t have;
    qiao_status st = tk_spm_proto_count(proto, len, what, &have);
    if (st != QIAO_OK) return st;
    if (have != n_pieces)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "%s: the SentencePiece model holds %zu pieces, not %zu", what, have,
                        n_pieces);
    const uint8_t *p = proto;
    uint8_t *o = malloc(len ? len : 1);
    if (!o) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory", what);
    size_t i = 0, w = 0, k = 0;
    while (i < len) {
        uint64_t num = 0;
        int wt = 0;
        size_t at = i, pay = i;
        if (!next_field(p, len, &i, &num, &wt, &pay)) { /* the count above read the same bytes */
            free(o);
            return qc_error(QIAO_ERR_INTERNAL, "%s: SentencePiece model: field at byte %zu", what, at);
        }
        if (num == F_SELF_TEST) continue;
        if (num == F_PIECES) {
            /* what SentencePiece never produces from text (<unk>, control,
             * byte and unused pieces, user-defined symbols) stays, so the
             * specials and byte fallback keep working */
            if (piece_type(p + pay, i - pay) != TYPE_NORMAL) keep[k] = true;
            if (!keep[k++]) continue;
        }
        memcpy(o + w, p + at, i - at);
        w += i - at;
    }
    *out = (char *)o;
    *out_len = w;
    return QIAO_OK;
}

/* ---- the spm kind's tokenizer ------------------------------------------------ */

void tk_pruned_free(tk_pruned *p) {
    if (!p) return;
    free(p->spm);
    free(p->config);
    free(p->old_id);
    memset(p, 0, sizeof *p);
}

/* A special id of the old numbering in the new one: ids below the pieces
 * stay, ids after them move with the pieces' end, ids on a piece follow it
 * (its piece is kept: tk_spm_prune makes sure). */
static int64_t new_special(int64_t id, int64_t off, int64_t n_old, int64_t n_new, const int64_t *rank) {
    if (id < off) return id;
    if (id >= off + n_old) return id - n_old + n_new;
    return rank[id - off] + off;
}

qiao_status tk_spm_prune(const qiao_tokenizer *tok, bool *keep, tk_pruned *out) {
    if (!out) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "tk_spm_prune: NULL argument");
    memset(out, 0, sizeof *out);
    if (!tok || !keep) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "tk_spm_prune: NULL argument");
    if (tok->kind != TK_KIND_SPM)
        return qc_error(QIAO_ERR_UNSUPPORTED,
                        "pruning a vocabulary needs an imported SentencePiece tokenizer (kind \"spm\", as e5's and "
                        "XLM-R's); this one is another kind");
    const int64_t n_old = spm_vocab_size(tok->spm), off = tok->id_offset;
    const int32_t specials[5] = {tok->sp.bos, tok->sp.eos, tok->sp.pad, tok->sp.unk, tok->sp.mask};
    for (int s = 0; s < 5; s++)
        if (specials[s] >= off && specials[s] < off + n_old) keep[specials[s] - off] = true;
    qiao_status st = tk_spm_proto_prune(tok->spm_bytes, tok->spm_len, keep, (size_t)n_old, TK_TENSOR_SPM, &out->spm,
                                        &out->spm_len);
    int64_t *rank = st == QIAO_OK ? malloc((size_t)n_old * sizeof *rank) : NULL;
    if (st == QIAO_OK && !rank) st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "tk_spm_prune: out of memory");
    int64_t n_new = 0, n_text = 0;
    for (int64_t i = 0; st == QIAO_OK && i < n_old; i++) {
        rank[i] = keep[i] ? n_new++ : -1;
        n_text += keep[i] && spm_piece_kind(tok->spm, (int32_t)i) == SPM_PIECE_NORMAL;
    }
    /* SentencePiece refuses a model without a piece of text */
    if (st == QIAO_OK && !n_text)
        st = qc_error(QIAO_ERR_INVALID_ARGUMENT, "pruning would keep no piece of text (no corpus, no characters)");
    out->pieces = n_new;
    out->vocab_size = tok->vocab_size - n_old + n_new;
    if (st == QIAO_OK && !(out->old_id = malloc((size_t)out->vocab_size * sizeof *out->old_id)))
        st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "tk_spm_prune: out of memory");
    for (int64_t i = 0, j = 0; st == QIAO_OK && i < out->vocab_size; i++) {
        if (i < off) {
            out->old_id[i] = i;
        } else if (i < off + n_new) {
            while (!keep[j]) j++;
            out->old_id[i] = off + j++;
        } else {
            out->old_id[i] = i - n_new + n_old;
        }
    }
    /* the config with the new size and special ids; everything else as stored */
    cJSON *c = st == QIAO_OK ? cJSON_Parse(tok->config_json) : NULL;
    if (st == QIAO_OK && !c) st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "tk_spm_prune: out of memory");
    static const char *const names[5] = {"bos", "eos", "pad", "unk", "mask"};
    bool ok = st == QIAO_OK && cJSON_ReplaceItemInObjectCaseSensitive(c, "vocab_size",
                                                                      cJSON_CreateNumber((double)out->vocab_size));
    for (int s = 0; ok && s < 5; s++)
        if (specials[s] >= 0)
            ok = cJSON_ReplaceItemInObjectCaseSensitive(
                c, names[s], cJSON_CreateNumber((double)new_special(specials[s], off, n_old, n_new, rank)));
    if (st == QIAO_OK && (!ok || !(out->config = cJSON_PrintUnformatted(c))))
        st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "tk_spm_prune: out of memory");
    cJSON_Delete(c);
    /* The new model must load and name the kept pieces as the old one did:
     * what the wire-format edit promises, checked against SentencePiece. */
    spm_model *m = NULL;
    char err[512] = "";
    if (st == QIAO_OK) {
        const spm_rc rc = spm_load(out->spm, out->spm_len, &m, err, sizeof err);
        if (rc != SPM_OK)
            st = qc_error(rc == SPM_ERR_NOMEM ? QIAO_ERR_OUT_OF_MEMORY : QIAO_ERR_INTERNAL,
                          "tk_spm_prune: SentencePiece rejects the pruned model: %s", err);
    }
    if (st == QIAO_OK && spm_vocab_size(m) != n_new)
        st = qc_error(QIAO_ERR_INTERNAL, "tk_spm_prune: the pruned model holds %d pieces, not %lld", spm_vocab_size(m),
                      (long long)n_new);
    for (int64_t i = 0; st == QIAO_OK && i < n_new; i++) {
        const int32_t was = (int32_t)(out->old_id[off + i] - off);
        const char *a = spm_piece_str(m, (int32_t)i), *b = spm_piece_str(tok->spm, was);
        if (!a || !b || strcmp(a, b) != 0 || spm_piece_kind(m, (int32_t)i) != spm_piece_kind(tok->spm, was))
            st = qc_error(QIAO_ERR_INTERNAL, "tk_spm_prune: piece %lld of the pruned model is not old piece %d",
                          (long long)i, was);
    }
    spm_free(m);
    free(rank);
    if (st != QIAO_OK) tk_pruned_free(out);
    return st;
}
