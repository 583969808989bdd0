// Coherent sub-mix classification, the paper's Eq. 8: batches of K windows from distinct tracks, each anchor
// sub-mix compared with the K positive sub-mixes of its batch; a row is right when its own positive scores highest.
// Accuracy is the share of right rows averaged over batches, over the fixed evaluation protocol of a split.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cocola/data.hpp"
#include "cocola/model.hpp"

namespace cocola::eval {

struct EvalOptions {
    int k = 2;                   // K windows per batch (the paper's Table 2 uses K = 2)
    std::string split = "test";
    int64_t window = 80000;      // 5 s at 16 kHz
    model::EmbeddingMode mode = model::EmbeddingMode::Both;
    data::PairMode pairs = data::PairMode::SubMix;
    uint64_t seed = 0;           // order of the items before batching: fixed, so every model sees the same batches
    size_t items_per_call = 32;  // windows embedded per model call (anchors and positives: twice as many clips)
    // A diagnostic, not the protocol (which is 0): Gaussian noise of this std added to every positive, as training
    // adds it, drawn per item so that the batching does not change it. Shows how much a model reads the noise floor.
    double positive_noise = 0;
    // Applied to every rendered clip (anchors and positives) before its features, one clip at a time in row
    // order: e.g. resynthesis through a spectrogram and a vocoder, to measure how much coherence it keeps
    // (generate::evaluate_reconstruction). Arguments: the clip (changed in place), its samples, its protocol item,
    // and whether it is the item's positive. Empty: the protocol as is.
    std::function<void(float* clip, int64_t n, size_t item, bool positive)> clip_transform;
    // > 0: only the first this many batches of the protocol (a quicker, wider-interval estimate); 0: all.
    size_t max_batches = 0;
};

// One row of one batch: the anchor of `item` against the K positives of its batch.
struct RowOutcome {
    size_t batch = 0, item = 0;  // batch index and protocol item index (into fixed_protocol's items)
    size_t chosen = 0;           // item whose positive scored highest (== item when right)
    double own = 0;              // similarity to its own positive
    double best_other = 0;       // highest similarity to another item's positive
    bool right() const { return chosen == item; }
};

struct EvalResult {
    double accuracy = 0;  // mean over batches, in [0, 1]
    double sd = 0;        // sample standard deviation of the batch accuracies
    double ci95 = 0;      // half-width of the 95% interval of the mean (normal approximation, 1.96 sd / sqrt(n))
    size_t batches = 0;
    size_t items = 0;          // items in the batches (batches * K)
    size_t items_dropped = 0;  // protocol items left over that could not fill a last batch of K
    size_t same_track_batches = 0;  // batches that had to hold two windows of one track (too few tracks)
    std::vector<double> batch_accuracy;
    std::vector<RowOutcome> rows;  // every row of every batch, in batch order (what went wrong, and how close)
};

// Groups items into batches of K: the items are shuffled with `seed`, then each goes to the first open batch that
// holds no window of its track. Items that no batch of distinct tracks can take are pooled into batches of their
// own (marked in same_track), and fewer than K left at the end are dropped. `track[i]` is item i's track.
struct Batching {
    std::vector<std::vector<size_t>> batches;
    std::vector<bool> same_track;
    size_t dropped = 0;
};
Batching make_batches(const std::vector<uint32_t>& track, int k, uint64_t seed);

// Accuracy from precomputed embeddings: anchors and positives [N, D] (row i of both belongs to item i) and the
// batches as row indices. The similarity is the model's own (bilinear or cosine).
EvalResult evaluate_embeddings(const model::Model& m, const at::Tensor& anchors, const at::Tensor& positives,
                               const std::vector<std::vector<size_t>>& batches);

// Mean, sample sd and 95% half-width of per-batch accuracies, filled into a result.
void summarize(EvalResult& r);

using EvalProgress = std::function<void(size_t batches_done, size_t batches_total)>;

// The whole evaluation of one model on one cache split. Throws cocola::Error when the split yields fewer than K
// protocol items.
EvalResult evaluate(const model::Model& m, const data::StemCache& cache, const EvalOptions& o,
                    const EvalProgress& progress = {});

// Batches evaluate() would form for this cache, without running a model (for progress totals and reports).
Batching plan_batches(const data::StemCache& cache, const EvalOptions& o, std::vector<data::EvalItem>* items = nullptr);

// ---- the accuracy table (models x test sets), as `cocola eval --json` and the Python module report it
struct TableModel {
    std::string name, path;
    model::Config config;
};
struct TableDataset {
    std::string name, input, cache, layout;
    size_t batches = 0, items = 0, items_dropped = 0, same_track_batches = 0;
};
struct TableCell {
    EvalResult result;
    double seconds = 0;
};
// A test set's column of the table: its name (the dataset root's folder, also when the input is its cache), input,
// cache, layout and batch counts under `o`; the protocol items too when `items` is given. Names are made unique by
// unique_names() once all columns are known.
TableDataset describe_test_set(const std::string& input, const data::StemCache& cache, const EvalOptions& o,
                               std::vector<data::EvalItem>* items = nullptr);
// The table's JSON: task, k, split, mode, models, datasets and results[model][dataset].
nlohmann::ordered_json accuracy_table_json(const EvalOptions& o, const std::vector<TableModel>& models,
                                           const std::vector<TableDataset>& datasets,
                                           const std::vector<std::vector<TableCell>>& cells);
// A test set's or model's name in a table: the folder's (or file's) last component.
std::string table_name(const std::string& path);
// Names that tell rows and columns apart: a second "test" becomes "test#2".
std::vector<std::string> unique_names(std::vector<std::string> names);

}  // namespace cocola::eval
