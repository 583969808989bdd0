// The data side of contrastive training (internal to src/train): the data schedule over the training sources,
// the batches the model sees (sub-mixes, noise, channel masks, features on CPU threads or on the device), and
// the first batches of the schedule that BatchNorm statistics and the centred projection are measured on.
#pragma once
#include <ATen/ATen.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "cocola/data.hpp"
#include "cocola/error.hpp"
#include "cocola/rng.hpp"
#include "cocola/train.hpp"

namespace cocola::train::contrastive {

// ---------------------------------------------------------------- the data schedule
// Step s -> (source, epoch, batch).
//   Without weights (the paper's "All"): each global epoch lists every batch of every source's epoch plan,
//   shuffled with (seed, epoch), so every source is drawn in proportion to its size.
//   With weights (--data-weights): step s draws its source with probability weights[d] from a generator of
//   its own (seed, s) and takes that source's next batch; each source runs through its own epochs in order.
//   A small source can then be seen more often than its size would have it, without copying its songs.
// Both are pure functions of the step (the cursors below only cache the walk), which keeps --resume exact.
struct Schedule {
    std::vector<const data::PairSampler*> samplers;
    std::vector<double> weights;  // empty: in proportion to the sources' sizes
    uint64_t seed = 0;
    struct Entry {
        int source;
        size_t batch;
    };
    mutable int cached_epoch = -1;
    mutable int64_t cached_start = 0;
    mutable std::vector<Entry> cached;
    // The weighted walk: steps [0, drawn) have been drawn; per source, the batches taken so far, and the epoch
    // its next batch falls in with the index of that epoch's first batch.
    mutable int64_t drawn = -1;
    mutable std::vector<int64_t> taken, epoch_start;
    mutable std::vector<int> epoch_of;

    // A copy that walks on its own (the walk caches are not shared between threads).
    Schedule fresh_copy() const {
        Schedule s;
        s.samplers = samplers;
        s.weights = weights;
        s.seed = seed;
        return s;
    }

    std::vector<Entry> epoch_list(int e) const {
        std::vector<Entry> list;
        for (size_t d = 0; d < samplers.size(); ++d)
            for (size_t i = 0; i < samplers[d]->batches_per_epoch(e); ++i) list.push_back({static_cast<int>(d), i});
        Rng rng(mix_seed(seed ^ 0x5C4EDu, static_cast<uint64_t>(e)));
        rng.shuffle(list);
        return list;
    }
    int draw_source(int64_t s) const {
        Rng rng(mix_seed(seed ^ 0x3E1647u, static_cast<uint64_t>(s)));
        return static_cast<int>(rng.weighted(weights));
    }
    // Returns the entry for step s and its epoch (the epoch of the source it comes from). Walks on from the
    // last step looked up, or from the start for an earlier one.
    Entry at(int64_t s, int& epoch) const {
        if (!weights.empty()) return weighted_at(s, epoch);
        if (cached_epoch < 0 || s < cached_start) {
            cached_epoch = 0;
            cached_start = 0;
            cached = epoch_list(0);
        }
        while (s >= cached_start + static_cast<int64_t>(cached.size())) {
            if (cached.empty()) throw Error("the training data yields no batches (too few tracks for the batch size?)");
            cached_start += static_cast<int64_t>(cached.size());
            cached = epoch_list(++cached_epoch);
        }
        epoch = cached_epoch;
        return cached[static_cast<size_t>(s - cached_start)];
    }
    Entry weighted_at(int64_t s, int& epoch) const {
        if (drawn < 0 || s < drawn) {
            drawn = 0;
            taken.assign(samplers.size(), 0);
            epoch_start.assign(samplers.size(), 0);
            epoch_of.assign(samplers.size(), 0);
        }
        for (; drawn < s; ++drawn) ++taken[static_cast<size_t>(draw_source(drawn))];
        const auto d = static_cast<size_t>(draw_source(s));
        for (;;) {
            const auto n = static_cast<int64_t>(samplers[d]->batches_per_epoch(epoch_of[d]));
            if (n == 0)
                throw Error("training data source " + std::to_string(d + 1) +
                            " yields no batches (too few tracks for the batch size?), but its --data-weights share is not 0");
            if (taken[d] < epoch_start[d] + n) break;
            epoch_start[d] += n;
            ++epoch_of[d];
        }
        epoch = epoch_of[d];
        return {static_cast<int>(d), static_cast<size_t>(taken[d] - epoch_start[d])};
    }
};

// --data-weights: one finite weight >= 0 per source, at least one above 0 (or none at all).
void check_data_weights(const TrainOptions& o);

// The training sources of a run: a cache and a pair sampler per --data root (the sampler's seed depends on
// the source's position), and the schedule over them.
struct TrainingData {
    std::vector<std::unique_ptr<data::StemCache>> caches;
    std::vector<std::unique_ptr<data::PairSampler>> samplers;
    Schedule schedule;
    std::vector<std::vector<MusicLabels>> labels;  // per source, per track (--aux-labels only)

    explicit TrainingData(const TrainOptions& o);
};

// A batch ready for the model: features of [anchors; positives] and what the log needs.
// With features on the device (training on a GPU) the prefetcher only sums the sub-mixes: the batch then holds
// the waveforms and the channel masks drawn for them, and features_on() computes the features where the model is.
struct ReadyBatch {
    at::Tensor features;  // [2K, C, 64, T] (CPU features), or undefined
    at::Tensor waves;     // [2K, L] (features on the device), or undefined
    std::vector<int> zeroed_channel;  // per pair: the channel the mask zeroes, -1 for none
    std::vector<int64_t> tempo_target, key_target;  // [2K] (--aux-labels): class, or -1 to leave out
    int epoch = 0;
    double feature_seconds = 0;
};

// Features on the training device (tensor front-end) rather than CPU threads: --feature-path.
bool features_on_device(const TrainOptions& o);

// Features of K anchor and K positive waveforms (each [K, L], row-major), stacked as [anchors; positives]:
// the one batch the encoder sees, as the reference concatenates them.
at::Tensor pair_features(features::Frontend frontend, const float* anchor, const float* positive, int K, int64_t L);

// The pairs of a batch one process computes features for in data-parallel training: [first, first + count).
struct PairRange {
    int first = 0;
    int count = -1;  // < 0: all
};

// The batch of the step with 0-based index `step`. With `td` (the training loop) it also fills the
// --aux-labels targets (for the whole batch). With a `range`, the whole batch is drawn (noise, masks) and the
// features (and channel masks) are those of the range's pairs: [its anchors; its positives].
ReadyBatch prepare(const Schedule& sched, const TrainOptions& o, int64_t step, const TrainingData* td = nullptr,
                   PairRange range = {});

// The batch's features on `device`, channel masks applied.
at::Tensor features_on(ReadyBatch& rb, const TrainOptions& o, at::Device device);

// Calls fn with the features of the first n batches of the training schedule.
void for_first_batches(const Schedule& sched, const TrainOptions& o, int n, at::Device device,
                       const std::function<void(const at::Tensor&)>& fn);

}  // namespace cocola::train::contrastive
