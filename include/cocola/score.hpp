// The COCOLA score CCS(y, x) = sim(f(y), f(x)) of an accompaniment x given its conditioning y, on audio files:
// aligned 5 s windows (or the whole file), embedded in batches, scores averaged over windows.
#pragma once
#include <ATen/ATen.h>

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "cocola/model.hpp"

namespace cocola::eval {

constexpr size_t kWindowSamples = 80000;  // 5 s at 16 kHz, the model's training window

struct ScoreOptions {
    model::EmbeddingMode mode = model::EmbeddingMode::Both;
    double hop_seconds = 5.0;   // hop between aligned windows
    bool whole = false;         // one pass over the whole file (the network pools over time)
    size_t files_per_batch = 16;
};

// Throws cocola::Error when `o` does not suit `m`: a harmonic or percussive mode for a one-channel (mel) model,
// or a hop that is not a positive, finite number of seconds. The CLI and the Python module both call it.
void check_score_options(const model::Model& m, const ScoreOptions& o);

using ProgressFn = std::function<void(size_t done)>;

// Start offsets of the aligned windows of a clip of n samples: 0, hop, 2*hop, ... while a full window fits;
// a clip shorter than one window gets one window (zero-padded by the caller).
std::vector<size_t> window_offsets(size_t n, size_t hop);

struct Embedded {
    std::string path;
    std::string error;                  // non-empty if the file could not be embedded
    std::vector<std::string> warnings;  // e.g. "shorter than 5 s: zero-padded"
    at::Tensor embeddings;              // [windows, D]
    size_t samples = 0;
};

// Embeddings of audio already loaded (mono, 16 kHz). Windows of all clips are embedded together in batches.
std::vector<Embedded> embed_clips(const model::Model& m, const std::vector<std::vector<float>>& clips,
                                  const ScoreOptions& o);
// Loads and embeds files; a bad file gets its error recorded, the others go on.
std::vector<Embedded> embed_files(const model::Model& m, const std::vector<std::string>& paths,
                                  const ScoreOptions& o, const ProgressFn& progress = {});

struct PairScore {
    std::string cond, acc;
    std::string error;  // non-empty when either file failed
    std::vector<std::string> warnings;
    double score = 0;                    // mean over windows
    std::vector<double> window_scores;
};

// Scores (cond, acc) pairs. Files of different lengths are compared on their common part (with a warning).
std::vector<PairScore> score_pairs(const model::Model& m, const std::vector<std::pair<std::string, std::string>>& pairs,
                                   const ScoreOptions& o, const ProgressFn& progress = {});

// A pair already in memory (mono, 16 kHz), named for reports and errors.
struct ClipPair {
    std::string cond, acc;
    std::vector<float> cond_audio, acc_audio;
};
// What score_pairs does after loading: pairs of different lengths are scored on their common part (warning).
std::vector<PairScore> score_clip_pairs(const model::Model& m, std::vector<ClipPair> pairs, const ScoreOptions& o);

struct ScoreMatrix {
    std::vector<std::string> conds, cands;
    std::vector<std::vector<double>> scores;  // [cond][cand]; NaN where a file failed
    std::vector<std::string> errors;
    std::vector<std::string> warnings;
};

// All conditionings against all candidates ("which of these stems fits this mix best"). Windows are aligned
// from the start of each file; a pair is scored over the windows both files have.
ScoreMatrix score_matrix(const model::Model& m, const std::vector<std::string>& conds,
                         const std::vector<std::string>& cands, const ScoreOptions& o,
                         const ProgressFn& progress = {});

// score_matrix on clips in memory (mono, 16 kHz), named for reports and errors.
ScoreMatrix score_matrix_clips(const model::Model& m, const std::vector<std::string>& cond_names,
                               const std::vector<std::vector<float>>& conds, const std::vector<std::string>& cand_names,
                               const std::vector<std::vector<float>>& cands, const ScoreOptions& o);

}  // namespace cocola::eval
