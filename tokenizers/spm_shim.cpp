// tokenizers/spm_shim.cpp - the C boundary around SentencePiece: the only
// C++ in qiao. Each function body runs inside SPM_TRY / SPM_CATCH so that no
// exception (std::bad_alloc, anything SentencePiece or protobuf throws)
// reaches C code; each becomes a status and a message instead.
#include "tokenizers/spm_shim.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <mutex>
#include <new>
#include <string>
#include <unordered_map>

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

// Exported by libsentencepiece but not declared in its installed headers.
namespace sentencepiece {
namespace logging {
void SetMinLogLevel(int v);
}
}  // namespace sentencepiece

struct spm_model {
    sentencepiece::SentencePieceProcessor sp;
};

namespace {

void set_err(char *err, size_t cap, const char *msg) {
    if (err && cap) std::snprintf(err, cap, "%s", msg);
}

// SentencePiece logs its training to stderr at INFO; a library must not
// print, so keep only its errors (which we report as statuses anyway). The
// level is process-wide inside SentencePiece; setting it once is idempotent.
void quiet_logging() {
    static std::once_flag once;
    std::call_once(once, [] { sentencepiece::logging::SetMinLogLevel(3); });
}

class UnitIterator : public sentencepiece::SentenceIterator {
  public:
    UnitIterator(const char *text, const size_t *off, size_t n) : text_(text), off_(off), n_(n) { load(); }
    bool done() const override { return i_ >= n_; }
    void Next() override {
        i_++;
        load();
    }
    const std::string &value() const override { return cur_; }
    sentencepiece::util::Status status() const override { return sentencepiece::util::Status(); }

  private:
    void load() {
        if (i_ < n_) cur_.assign(text_ + off_[i_], off_[i_ + 1] - off_[i_]);
    }
    const char *text_;
    const size_t *off_;
    size_t n_, i_ = 0;
    std::string cur_;
};

}  // namespace

#define SPM_TRY try {
#define SPM_CATCH                                                    \
    }                                                                \
    catch (const std::bad_alloc &) {                                 \
        set_err(err, errcap, "out of memory in SentencePiece");      \
        return SPM_ERR_NOMEM;                                        \
    }                                                                \
    catch (const std::exception &e) {                                \
        set_err(err, errcap, e.what());                              \
        return SPM_ERR_INTERNAL;                                     \
    }                                                                \
    catch (...) {                                                    \
        set_err(err, errcap, "unknown exception in SentencePiece");  \
        return SPM_ERR_INTERNAL;                                     \
    }

extern "C" spm_rc spm_load(const void *data, size_t size, spm_model **out, char *err, size_t errcap) {
    if (!out || (!data && size)) {
        set_err(err, errcap, "spm_load: NULL argument");
        return SPM_ERR_INVALID;
    }
    *out = nullptr;
    SPM_TRY
    quiet_logging();
    spm_model *m = new spm_model;
    auto st = m->sp.LoadFromSerializedProto(
        absl::string_view(static_cast<const char *>(data ? data : ""), size));
    if (!st.ok()) {
        set_err(err, errcap, st.ToString().c_str());
        delete m;
        return SPM_ERR_FORMAT;
    }
    *out = m;
    return SPM_OK;
    SPM_CATCH
}

extern "C" void spm_free(spm_model *m) {
    try {
        delete m;
    } catch (...) {
    }
}

extern "C" int32_t spm_vocab_size(const spm_model *m) {
    if (!m) return 0;
    try {
        return m->sp.GetPieceSize();
    } catch (...) {
        return 0;
    }
}

extern "C" const char *spm_piece_str(const spm_model *m, int32_t id) {
    if (!m) return nullptr;
    try {
        if (id < 0 || id >= m->sp.GetPieceSize()) return nullptr;
        return m->sp.IdToPiece(id).c_str();
    } catch (...) {
        return nullptr;
    }
}

extern "C" spm_kind spm_piece_kind(const spm_model *m, int32_t id) {
    if (!m) return SPM_PIECE_INVALID;
    try {
        if (id < 0 || id >= m->sp.GetPieceSize()) return SPM_PIECE_INVALID;
        if (m->sp.IsByte(id)) return SPM_PIECE_BYTE;
        if (m->sp.IsControl(id)) return SPM_PIECE_CONTROL;
        if (m->sp.IsUnknown(id)) return SPM_PIECE_UNKNOWN;
        if (m->sp.IsUnused(id)) return SPM_PIECE_UNUSED;
        return SPM_PIECE_NORMAL;
    } catch (...) {
        return SPM_PIECE_INVALID;
    }
}

struct spm_scratch {
    sentencepiece::ImmutableSentencePieceText spt;
};

extern "C" spm_scratch *spm_scratch_new(void) {
    try {
        return new spm_scratch;
    } catch (...) {
        return nullptr;
    }
}

extern "C" void spm_scratch_free(spm_scratch *s) {
    try {
        delete s;
    } catch (...) {
    }
}

extern "C" spm_rc spm_encode(const spm_model *m, spm_scratch *scratch, const char *text, size_t len,
                             spm_piece **buf, size_t *cap, size_t *n, char *err, size_t errcap) {
    if (!m || (!text && len) || !buf || !cap || !n) {
        set_err(err, errcap, "spm_encode: NULL argument");
        return SPM_ERR_INVALID;
    }
    SPM_TRY
    sentencepiece::ImmutableSentencePieceText local;
    // Encode() clears the message first; a reused one keeps its allocations.
    sentencepiece::ImmutableSentencePieceText &spt = scratch ? scratch->spt : local;
    auto st = m->sp.Encode(absl::string_view(text ? text : "", len), spt.mutable_proto());
    if (!st.ok()) {
        set_err(err, errcap, st.ToString().c_str());
        return SPM_ERR_FORMAT;
    }
    size_t k = spt.pieces_size();
    if (*n + k > *cap) {
        size_t nc = *cap ? *cap : 64;
        while (nc < *n + k) nc *= 2;
        void *p = std::realloc(*buf, nc * sizeof(spm_piece));
        if (!p) {
            set_err(err, errcap, "out of memory growing the piece buffer");
            return SPM_ERR_NOMEM;
        }
        *buf = static_cast<spm_piece *>(p);
        *cap = nc;
    }
    for (size_t i = 0; i < k; i++) {
        auto p = spt.pieces(static_cast<int>(i));
        (*buf)[*n + i] = spm_piece{static_cast<int32_t>(p.id()), p.begin(), p.end()};
    }
    *n += k;
    return SPM_OK;
    SPM_CATCH
}

extern "C" spm_rc spm_train(const char *text, const size_t *off, size_t n, const spm_train_opts *opts,
                            char **model, size_t *model_len, char *err, size_t errcap) {
    if (!text || !off || !opts || !model || !model_len) {
        set_err(err, errcap, "spm_train: NULL argument");
        return SPM_ERR_INVALID;
    }
    *model = nullptr;
    *model_len = 0;
    SPM_TRY
    quiet_logging();
    std::unordered_map<std::string, std::string> kw = {
        {"model_type", "bpe"},
        {"vocab_size", std::to_string(opts->vocab_size)},
        {"character_coverage", std::to_string(opts->character_coverage)},
        {"num_threads", std::to_string(opts->n_threads > 0 ? opts->n_threads : 1)},
        {"byte_fallback", "true"},
        {"normalization_rule_name", "identity"},
        {"remove_extra_whitespaces", "false"},
        {"add_dummy_prefix", "false"},
        {"hard_vocab_limit", "false"},
        {"max_sentence_length", "4096"},
        {"pad_id", "0"},
        {"unk_id", "1"},
        {"bos_id", "2"},
        {"eos_id", "3"},
    };
    UnitIterator it(text, off, n);
    std::string out;
    auto st = sentencepiece::SentencePieceTrainer::Train(kw, &it, &out);
    if (!st.ok()) {
        set_err(err, errcap, st.ToString().c_str());
        return SPM_ERR_FORMAT;
    }
    char *p = static_cast<char *>(std::malloc(out.size() ? out.size() : 1));
    if (!p) {
        set_err(err, errcap, "out of memory copying the trained model");
        return SPM_ERR_NOMEM;
    }
    std::memcpy(p, out.data(), out.size());
    *model = p;
    *model_len = out.size();
    return SPM_OK;
    SPM_CATCH
}
