// The contrastive training loop: data schedule, on-the-fly features, Adam, validation, checkpoints, resume.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <type_traits>

#include "cocola/error.hpp"
#include "cocola/evaluate.hpp"
#include "cocola/fsutil.hpp"
#include "cocola/rng.hpp"
#include "cocola/safetensors.hpp"
#include "cocola/train.hpp"
#include "features/frontend_torch.hpp"
#include "model/cocola_net.hpp"

namespace cocola::train {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// ---------------------------------------------------------------- options <-> JSON

nlohmann::json to_json(const TrainOptions& o) {
    return {{"caches", o.caches},
            {"frontend", features::frontend_name(o.frontend)},
            {"similarity", model::similarity_name(o.similarity)},
            {"pair_mode", data::pair_mode_name(o.pair_mode)},
            {"batch", o.batch},
            {"lr", o.lr},
            {"steps", o.steps},
            {"noise_sigma", o.noise_sigma},
            {"max_overlap", o.max_overlap},
            {"dropout", o.dropout},
            {"seed", o.seed},
            {"val_every", o.val_every},
            {"val_batches", o.val_batches},
            {"checkpoint_every", o.checkpoint_every},
            {"device", o.device},
            {"init_from", o.init_from},
            {"loss", o.loss == LossKind::Paper ? "paper" : "symmetric"},
            {"similarity_lr", o.similarity_lr},
            {"similarity_init_std", o.similarity_init_std},
            {"channel_masks", o.channel_masks},
            {"swap_roles", o.swap_roles},
            {"windows_per_track", o.windows_per_track},
            {"similarity_init_identity", o.similarity_init_identity},
            {"center_projection", o.center_projection},
            {"warmup_steps", o.warmup_steps},
            {"lr_decay", o.lr_decay},
            {"zero_init_residual", o.zero_init_residual},
            {"aux_tempo", o.aux_tempo},
            {"aux_labels", o.aux_labels},
            {"feature_path", o.feature_path},
            {"data_weights", o.data_weights}};
}

TrainOptions from_json(const nlohmann::json& j) {
    TrainOptions o;
    o.caches = j.at("caches").get<std::vector<std::string>>();
    o.frontend = features::parse_frontend(j.at("frontend"));
    o.similarity = model::parse_similarity(j.at("similarity"));
    o.pair_mode = data::parse_pair_mode(j.at("pair_mode"));
    o.batch = j.at("batch");
    o.lr = j.at("lr");
    o.steps = j.at("steps");
    o.noise_sigma = j.at("noise_sigma");
    o.max_overlap = j.at("max_overlap");
    o.dropout = j.at("dropout");
    o.seed = j.at("seed");
    o.val_every = j.at("val_every");
    o.val_batches = j.at("val_batches");
    o.checkpoint_every = j.at("checkpoint_every");
    o.device = j.value("device", "cpu");
    o.init_from = j.value("init_from", "");
    o.loss = j.value("loss", "paper") == "symmetric" ? LossKind::Symmetric : LossKind::Paper;
    o.similarity_lr = j.value("similarity_lr", 0.0);
    o.similarity_init_std = j.value("similarity_init_std", model::kReferenceSimilarityInitStd);
    o.channel_masks = j.value("channel_masks", true);
    o.swap_roles = j.value("swap_roles", false);
    o.windows_per_track = j.value("windows_per_track", 1);
    o.similarity_init_identity = j.value("similarity_init_identity", 0.0);
    o.center_projection = j.value("center_projection", false);
    o.warmup_steps = j.value("warmup_steps", int64_t{0});
    o.lr_decay = j.value("lr_decay", "none");
    o.zero_init_residual = j.value("zero_init_residual", false);
    o.aux_tempo = j.value("aux_tempo", 0.0);
    o.aux_labels = j.value("aux_labels", 0.0);
    o.feature_path = j.value("feature_path", "auto");
    o.data_weights = j.value("data_weights", std::vector<double>{});
    return o;
}

// ---------------------------------------------------------------- Adam (PyTorch's, defaults)
// Written out rather than torch::optim::Adam so that its state is ours to save and restore with the same
// tensor names in LibTorch 1.13 and 2.x.
struct Adam {
    std::vector<std::pair<std::string, at::Tensor>> params;
    std::vector<at::Tensor> m, v;
    std::vector<double> lr;  // per parameter
    double scale = 1;        // multiplies every rate (the warm-up)
    int64_t t = 0;
    double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;

    Adam(std::vector<std::pair<std::string, at::Tensor>> p, std::vector<double> lr_) : params(std::move(p)), lr(std::move(lr_)) {
        for (auto& [n, x] : params) {
            m.push_back(at::zeros_like(x));
            v.push_back(at::zeros_like(x));
        }
    }
    void step() {
        torch::NoGradGuard no_grad;
        ++t;
        const double bc1 = 1 - std::pow(beta1, static_cast<double>(t)), bc2 = 1 - std::pow(beta2, static_cast<double>(t));
        for (size_t i = 0; i < params.size(); ++i) {
            at::Tensor& p = params[i].second;
            if (!p.grad().defined()) continue;
            const at::Tensor g = p.grad();
            m[i].mul_(beta1).add_(g, 1 - beta1);
            v[i].mul_(beta2).addcmul_(g, g, 1 - beta2);
            at::Tensor denom = (v[i].sqrt() / std::sqrt(bc2)).add_(eps);
            p.addcdiv_(m[i], denom, -lr[i] * scale / bc1);
        }
    }
    void zero_grad() {
        for (auto& [n, p] : params)
            if (p.grad().defined()) p.mutable_grad().zero_();
    }
};

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
void check_data_weights(const TrainOptions& o) {
    if (o.data_weights.empty()) return;
    if (o.data_weights.size() != o.caches.size())
        throw Error("--data-weights: " + std::to_string(o.data_weights.size()) + " weights for " +
                    std::to_string(o.caches.size()) + " --data sources (give one per source, in their order)");
    double total = 0;
    for (double w : o.data_weights) {
        if (!std::isfinite(w) || w < 0) throw Error("--data-weights: every weight must be a finite number >= 0");
        total += w;
    }
    if (!(total > 0)) throw Error("--data-weights: at least one weight must be above 0");
}

// The training sources of a run: a cache and a pair sampler per --data root (the sampler's seed depends on
// the source's position), and the schedule over them.
struct TrainingData {
    std::vector<std::unique_ptr<data::StemCache>> caches;
    std::vector<std::unique_ptr<data::PairSampler>> samplers;
    Schedule schedule;
    std::vector<std::vector<MusicLabels>> labels;  // per source, per track (--aux-labels only)

    explicit TrainingData(const TrainOptions& o) {
        check_data_weights(o);
        schedule.weights = o.data_weights;
        schedule.seed = o.seed;
        for (const auto& dir : o.caches) {
            caches.push_back(std::make_unique<data::StemCache>(dir));
            data::SamplerOptions so;
            so.batch = o.batch;
            so.max_overlap = o.max_overlap;
            so.mode = o.pair_mode;
            so.swap_roles = o.swap_roles;
            so.windows_per_track = o.windows_per_track;
            so.split = "train";
            so.seed = mix_seed(o.seed, caches.size());
            samplers.push_back(std::make_unique<data::PairSampler>(*caches.back(), so));
            schedule.samplers.push_back(samplers.back().get());
            std::vector<std::string> unreadable;
            labels.push_back(o.aux_labels > 0 ? music_labels(*caches.back(), &unreadable) : std::vector<MusicLabels>{});
            // Not fatal (those songs still train on the contrastive loss), but a user should know their labels
            // are missing.
            if (!unreadable.empty())
                std::fprintf(stderr, "cocola: warning: --aux-labels: %zu meta.json file%s of %s could not be read "
                             "as JSON (first: %s); those songs train without tempo and key labels\n",
                             unreadable.size(), unreadable.size() == 1 ? "" : "s", dir.c_str(), unreadable[0].c_str());
        }
        if (o.aux_labels > 0) {
            size_t known = 0;
            for (const auto& l : labels)
                for (const auto& t : l) known += t.tempo_class >= 0;
            if (known == 0)
                throw Error("--aux-labels: no training source has labels (meta.json with bpm, tonic and mode, as "
                            "`cocola synth` writes them)");
        }
    }
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

bool features_on_device(const TrainOptions& o) {
    return o.feature_path == "tensor" || (o.feature_path == "auto" && o.device != "cpu");
}

// Features of K anchor and K positive waveforms (each [K, L], row-major), stacked as [anchors; positives]:
// the one batch the encoder sees, as the reference concatenates them.
at::Tensor pair_features(features::Frontend frontend, const float* anchor, const float* positive, int K, int64_t L) {
    std::vector<const float*> clips;
    for (int k = 0; k < K; ++k) clips.push_back(anchor + static_cast<size_t>(k) * L);
    for (int k = 0; k < K; ++k) clips.push_back(positive + static_cast<size_t>(k) * L);
    at::Tensor f = at::empty({2 * K, features::num_channels(frontend), features::kNMels,
                              features::num_frames(static_cast<size_t>(L))},
                             at::kFloat);
    features::compute_batch(frontend, clips, static_cast<size_t>(L), f.data_ptr<float>());
    return f;
}

// With `td` (the training loop) it also fills the --aux-labels targets.
ReadyBatch prepare(const Schedule& sched, const TrainOptions& o, int64_t step, const TrainingData* td = nullptr) {
    // Runs on the prefetch thread. On the CPU it is single-threaded, while the model trains on the others; on a
    // GPU the model needs no CPU threads and the features would be the bottleneck, so they get all of them
    // (each clip's features are computed alone: the thread count does not change them).
    omp_set_num_threads(o.device == "cpu" ? 1 : std::max(1, at::get_num_threads()));
    ReadyBatch r;
    const auto e = sched.at(step, r.epoch);
    data::PairBatch b = sched.samplers[e.source]->batch(r.epoch, e.batch);
    if (td && o.aux_labels > 0) {
        // Anchors first, then positives, as the features are stacked. A side made of drums alone has no key.
        const auto& labels = td->labels[static_cast<size_t>(e.source)];
        const auto& cache = *td->caches[static_cast<size_t>(e.source)];
        for (const auto* sides : {&b.anchor_stems, &b.positive_stems})
            for (int k = 0; k < b.K; ++k) {
                const auto t = b.track[static_cast<size_t>(k)];
                const MusicLabels& l = labels[t];
                bool pitched = false;
                for (int s : (*sides)[static_cast<size_t>(k)]) pitched |= cache.track(t).stems[static_cast<size_t>(s)].cls != "Drums";
                r.tempo_target.push_back(l.tempo_class);
                r.key_target.push_back(pitched ? l.key_class : -1);
            }
    }
    const auto t0 = Clock::now();
    Rng rng(mix_seed(o.seed ^ 0xA0153u, static_cast<uint64_t>(step)));
    // Gaussian noise on the positives (Box-Muller on our portable generator).
    if (o.noise_sigma > 0) rng.add_gaussian(b.positive.data(), b.positive.size(), o.noise_sigma);
    const int K = b.K;
    // The reference's random channel masking for harmonic/percussive models: per pair, both channels,
    // harmonic only or percussive only (the same choice for anchor and positive). Drawn after the noise, in
    // the same order wherever the features are computed.
    r.zeroed_channel.assign(static_cast<size_t>(K), -1);
    if (features::num_channels(o.frontend) == 2 && o.channel_masks)
        for (int k = 0; k < K; ++k) {
            const int64_t c = rng.range(0, 2);
            if (c != 0) r.zeroed_channel[static_cast<size_t>(k)] = c == 1 ? 1 : 0;
        }
    if (features_on_device(o)) {
        r.waves = at::empty({2 * K, b.L}, at::kFloat);
        std::copy(b.anchor.begin(), b.anchor.end(), r.waves.data_ptr<float>());
        std::copy(b.positive.begin(), b.positive.end(), r.waves.data_ptr<float>() + b.anchor.size());
    } else {
        r.features = pair_features(o.frontend, b.anchor.data(), b.positive.data(), K, b.L);
    }
    r.feature_seconds = seconds_since(t0);
    return r;
}

// The batch's features on `device`: moved there, or computed there from the waveforms (then the time it took is
// added to feature_seconds; reading one value waits for the device, which the step's loss.item() does anyway).
at::Tensor features_on(ReadyBatch& rb, const TrainOptions& o, at::Device device) {
    at::Tensor f;
    if (rb.features.defined()) {
        f = rb.features.to(device);
    } else {
        const auto t0 = Clock::now();
        f = features::compute_batch_tensor(o.frontend, rb.waves.to(device));
        f.max().item<float>();
        rb.feature_seconds += seconds_since(t0);
    }
    const int64_t K = f.size(0) / 2;
    for (int64_t k = 0; k < K; ++k) {
        const int ch = rb.zeroed_channel.empty() ? -1 : rb.zeroed_channel[static_cast<size_t>(k)];
        if (ch < 0) continue;
        f[k][ch].zero_();
        f[K + k][ch].zero_();
    }
    return f;
}

// Calls fn with the features of the first n batches of the training schedule. It walks a copy of the schedule
// (its own epoch cache: the training schedule's is in use by the prefetch thread) and gives the model all
// threads back after each prepare(), which is made for the one-thread prefetcher.
void for_first_batches(const Schedule& sched, const TrainOptions& o, int n, at::Device device,
                       const std::function<void(const at::Tensor&)>& fn) {
    const int threads = omp_get_max_threads();
    Schedule own = sched.fresh_copy();
    for (int i = 0; i < n; ++i) {
        ReadyBatch rb = prepare(own, o, i);
        at::Tensor f = features_on(rb, o, device);
        omp_set_num_threads(threads);
        fn(f);
    }
}

// ---------------------------------------------------------------- the loss
// Logits and targets of the contrastive cross-entropy for embeddings e = [anchors; positives] ([2K, D]).
//   paper:     S = sim(anchors, positives), K x K, the positive of row i in column i (the paper's Eq.).
//   symmetric: every embedding against the 2K - 1 others (self removed), the partner as target: the
//              variant the reference code trains with (twice the rows, anchors also as negatives).
void contrastive_logits(model::CocolaNet& net, const at::Tensor& e, int K, LossKind kind, at::Tensor& S, at::Tensor& target) {
    const auto long_opts = at::TensorOptions().dtype(at::kLong).device(e.device());
    if (kind == LossKind::Paper) {
        S = net.similarity(e.slice(0, 0, K), e.slice(0, K));
        target = at::arange(K, long_opts);
        return;
    }
    at::Tensor full = net.similarity(e, e);
    at::Tensor keep = at::eye(2 * K, at::TensorOptions().dtype(at::kBool).device(e.device())).logical_not();
    S = full.masked_select(keep).reshape({2 * K, 2 * K - 1});
    // Row i < K: its partner K + i sits at column K + i - 1 once the diagonal is gone; row K + i: column i.
    target = at::cat({at::arange(K - 1, 2 * K - 1, long_opts), at::arange(0, K, long_opts)});
}

// ---------------------------------------------------------------- auxiliary tempo hint
// Lags of the tempo profile: 0.15-2 s at 100 frames/s (hop 160 at 16 kHz), beat periods of 30-400 BPM.
constexpr int64_t kTempoMinLag = 15, kTempoMaxLag = 200;

}  // namespace

// Tempo profiles of feature windows [B, C, M, T] (dB): the onset envelope (frame-to-frame rises summed over
// channels and bands), centred and normalised, then its autocorrelation at each lag, centred and normalised.
// Two windows with the same beat period have similar profiles wherever their beats fall (the hand-made "tempo"
// cue of tools/coherence_cues.py: 89.9 % K = 2 on the procedural test split, 95.2 % on openmsx).

at::Tensor tempo_profiles(const at::Tensor& features) {
    const int64_t T = features.size(3);
    at::Tensor rise = (features.slice(3, 1, T) - features.slice(3, 0, T - 1)).clamp_min(0).sum({1, 2});  // [B, T-1]
    rise = rise - rise.mean(1, true);
    rise = rise / (rise.norm(2, 1, true) + 1e-9);
    const int64_t n = rise.size(1);
    std::vector<at::Tensor> lags;
    for (int64_t lag = kTempoMinLag; lag < std::min(kTempoMaxLag, n); ++lag)
        lags.push_back((rise.slice(1, 0, n - lag) * rise.slice(1, lag, n)).sum(1));
    at::Tensor p = at::stack(lags, 1);
    p = p - p.mean(1, true);
    return p / (p.norm(2, 1, true) + 1e-9);
}

std::vector<MusicLabels> music_labels(const data::StemCache& cache, std::vector<std::string>* unreadable) {
    // Semitones from a mode's tonic to its relative major's (the key signature), as src/synth/compose.cpp
    // writes the modes it uses.
    static const std::map<std::string, int> to_major = {{"major", 0}, {"ionian", 0}, {"minor", 3}, {"aeolian", 3},
                                                        {"dorian", 10}, {"phrygian", 8}, {"lydian", 7},
                                                        {"mixolydian", 5}, {"locrian", 1}};
    std::vector<MusicLabels> out(cache.size());
    for (size_t t = 0; t < cache.size(); ++t) {
        const auto& tr = cache.track(t);
        const std::string path = cache.root() + "/" + tr.split + "/" + tr.id + "/meta.json";
        std::ifstream in(path);
        if (!in) continue;
        const auto j = nlohmann::json::parse(in, nullptr, false);
        if (j.is_discarded() || !j.is_object()) {
            if (unreadable) unreadable->push_back(path);
            continue;
        }
        MusicLabels& l = out[t];
        if (j.contains("bpm") && j["bpm"].is_number()) {
            const double bpm = j["bpm"].get<double>();
            if (bpm > 0 && std::isfinite(bpm))
                l.tempo_class = static_cast<int>(
                    std::clamp(std::lround(12.0 * std::log2(bpm / 48.0)), 0L, static_cast<long>(kTempoClasses - 1)));
        }
        if (j.contains("tonic") && j["tonic"].is_number_integer() && j.contains("mode") && j["mode"].is_string()) {
            const auto m = to_major.find(j["mode"].get<std::string>());
            if (m != to_major.end()) l.key_class = ((j["tonic"].get<int>() + m->second) % 12 + 12) % 12;
        }
    }
    return out;
}

namespace {

// --aux-labels: cross-entropy of the tempo and key heads over the windows that have the label; a head whose
// batch has none adds nothing.
at::Tensor labels_loss(const at::Tensor& pooled, torch::nn::Linear& tempo_head, torch::nn::Linear& key_head,
                       const ReadyBatch& rb, at::Device device) {
    at::Tensor total = at::zeros({}, pooled.options());
    const std::pair<torch::nn::Linear*, const std::vector<int64_t>*> heads[] = {{&tempo_head, &rb.tempo_target},
                                                                                {&key_head, &rb.key_target}};
    for (const auto& [head, target] : heads) {
        if (std::none_of(target->begin(), target->end(), [](int64_t c) { return c >= 0; })) continue;
        const at::Tensor y = at::tensor(*target, at::kLong).to(device);
        total = total + at::nll_loss(at::log_softmax((*head)->forward(pooled), 1), y, {}, at::Reduction::Mean, -1);
    }
    return total;
}

// Names of training-only parameters (the auxiliary head) in the checkpoint: kept for --resume, never in the
// model files.
const std::string kTrainOnlyPrefix = "train_only.";

// ---------------------------------------------------------------- precise BatchNorm
// BatchNorm's running statistics are an average with momentum 0.01 over the last ~100 steps, taken while the
// weights moved: early in training they lag the current weights so far that the eval-mode network maps every
// input to nearly the same embedding.
// (Measured: at step 150 of a batch-16 run, scores of different songs were equal to 4 decimals.)
// Before a model is validated or written, its statistics are measured again for the current weights: the
// cumulative average over a fixed set of training batches (the first kBatchNormBatches of the schedule), in
// train mode, without gradients. This erases the running history, so the result depends only on the weights:
// a resumed run ends with the same statistics as an uninterrupted one.
constexpr int kBatchNormBatches = 8;

void recalibrate_batchnorm(model::CocolaNet& net, const Schedule& sched, const TrainOptions& o, at::Device device) {
    torch::NoGradGuard no_grad;
    std::vector<torch::nn::BatchNorm2dImpl*> bns;
    for (const auto& mod : net.modules(/*include_self=*/false))
        if (auto* b = mod->as<torch::nn::BatchNorm2dImpl>()) bns.push_back(b);
    // c10::optional in LibTorch 1.13, std::optional in 2.x: the options' own type, and {} for "none".
    using Momentum = std::decay_t<decltype(bns.front()->options.momentum())>;
    std::vector<Momentum> momentum;
    for (auto* b : bns) {
        momentum.push_back(b->options.momentum());
        b->options.momentum(Momentum{});  // none: a cumulative average
        b->reset_running_stats();
    }
    at::manual_seed(mix_seed(o.seed ^ 0xB4u, 0));  // drop-connect draws
    for_first_batches(sched, o, kBatchNormBatches, device, [&](const at::Tensor& f) { net.embed(f); });
    for (size_t i = 0; i < bns.size(); ++i) bns[i]->options.momentum(momentum[i]);
}

// ---------------------------------------------------------------- centred projection (data-dependent init)
// Embeddings of different inputs that start nearly equal give a contrastive gradient that is second order in
// their differences (a column's common part cancels in the softmax). This init rescales each projection output
// to zero mean and unit spread over the first training batches, so they start apart whatever the random draw
// (the architecture is unchanged: only W and b of the Linear). It reports how large the input-dependent part
// was against the common part: measured 2.2 (K 16) and 1.5 (K 4) at our random init, so there it changes the
// scale more than the spread; the collapse seen later in runs is learnt (docs/training.md, section 5).
constexpr int kCenterBatches = 2;

void center_projection(model::CocolaNet& net, const Schedule& sched, const TrainOptions& o, at::Device device) {
    torch::NoGradGuard no_grad;
    at::manual_seed(mix_seed(o.seed ^ 0xCE7u, 0));  // drop-connect draws
    std::vector<at::Tensor> pooled;  // the EfficientNet's pooled features, before dropout and projection
    for_first_batches(sched, o, kCenterBatches, device, [&](const at::Tensor& f) {
        net.embed(f, [&](const std::string& stage, const at::Tensor& x) {
            if (stage == "avgpool") pooled.push_back(x.flatten(1));
        });
    });
    at::Tensor y = net.projection->forward(at::cat(pooled));  // [N, D]
    at::Tensor mean = y.mean(0), spread = y.std(0).clamp_min(1e-6);
    const double before = (y - mean).norm().item<double>() / (mean.norm().item<double>() * std::sqrt(y.size(0)) + 1e-12);
    auto& w = net.projection->weight;
    auto& b = net.projection->bias;
    w.div_(spread.unsqueeze(1));
    b.sub_(mean).div_(spread);
    std::fprintf(stderr, "centred the projection on %lld windows (input-dependent / common part was %.4f)\n",
                 static_cast<long long>(y.size(0)), before);
}

// ---------------------------------------------------------------- validation

struct ValSet {
    const data::StemCache* cache;
    std::string split;
    std::vector<data::EvalItem> items;
};

struct Validation {
    double loss = -1, accuracy = -1;  // the K x K measure over val_batches batches
    double k2_accuracy = -1;          // cocola eval's measure (K = 2, distinct tracks, the whole split)
};

// The paper's Table-2 measure on the validation split, as `cocola eval --k 2` computes it on a test split: the
// K x K loss falls and rises with the scale of W while the pairwise choice it stands for may not, so checkpoints
// are better judged by this. The mean over the data sets (each counts once, whatever its size); -1 when no set
// has the two items a K = 2 batch needs.
double validate_k2(const model::Model& m, const std::vector<ValSet>& sets, data::PairMode pairs) {
    double sum = 0;
    int n = 0;
    for (const auto& vs : sets) {
        if (vs.items.size() < 2) continue;
        eval::EvalOptions eo;
        eo.k = 2;
        eo.split = vs.split;
        eo.pairs = pairs;
        sum += eval::evaluate(m, *vs.cache, eo).accuracy;
        ++n;
    }
    return n ? sum / n : -1;
}

Validation validate(model::Model& m, const std::vector<ValSet>& sets, const TrainOptions& o) {
    auto& net = m.net();
    torch::NoGradGuard no_grad;
    net.eval();
    double loss = 0, acc = 0;
    int batches = 0;
    const int K = o.batch;
    const int64_t L = 80000;
    for (const auto& vs : sets) {
        int in_set = 0;
        for (size_t s = 0; s + K <= vs.items.size() && in_set < o.val_batches; s += K, ++in_set) {
            std::vector<float> a(static_cast<size_t>(K) * L), p(a.size());
            for (int k = 0; k < K; ++k) data::render_item(*vs.cache, vs.items[s + k], L, a.data() + k * L, p.data() + k * L);
            at::Tensor e = net.embed(pair_features(o.frontend, a.data(), p.data(), K, L).to(m.device()));
            // Validation always reports the paper's K x K measure, whatever loss trains.
            at::Tensor S, target;
            contrastive_logits(net, e, K, LossKind::Paper, S, target);
            loss += at::nll_loss(at::log_softmax(S, 1), target).item<double>();
            acc += S.argmax(1).eq(target).to(at::kFloat).mean().item<double>();
            ++batches;
        }
    }
    net.train();
    Validation v;
    if (batches > 0) {
        v.loss = loss / batches;
        v.accuracy = acc / batches;
    }
    // The pairs the K x K validation measures (the shared-stem warm-up is judged on disjoint sub-mixes).
    v.k2_accuracy = validate_k2(m, sets, o.pair_mode == data::PairMode::SharedStem ? data::PairMode::SubMix : o.pair_mode);
    return v;
}

// ---------------------------------------------------------------- checkpoints

std::vector<std::pair<std::string, at::Tensor>> model_state(model::Model& m) {
    std::vector<std::pair<std::string, at::Tensor>> out;
    for (const auto& p : m.net().named_parameters()) out.emplace_back(p.key(), p.value());
    for (const auto& b : m.net().named_buffers()) out.emplace_back(b.key(), b.value());
    return out;
}

void save_checkpoint(const std::string& run_dir, model::Model& m, const Adam& adam, int64_t step, double best_val,
                     const TrainOptions& o) {
    // One file holds the model, the optimizer and the step, written atomically: a kill at any moment leaves
    // either the previous checkpoint or this one, never a mix.
    auto state = model_state(m);
    for (const auto& [name, t] : adam.params)
        if (name.rfind(kTrainOnlyPrefix, 0) == 0) state.emplace_back(name, t);
    for (size_t i = 0; i < adam.params.size(); ++i) {
        state.emplace_back("adam.m." + adam.params[i].first, adam.m[i]);
        state.emplace_back("adam.v." + adam.params[i].first, adam.v[i]);
    }
    std::map<std::string, std::string> meta = {{"step", std::to_string(step)},
                                               {"adam_t", std::to_string(adam.t)},
                                               {"best_val_loss", std::to_string(best_val)},
                                               {"options", to_json(o).dump()},
                                               {"format", "cocola training checkpoint"}};
    safetensors::save(run_dir + "/checkpoint.safetensors", state, meta);
    m.save(run_dir + "/last.safetensors", {{"step", std::to_string(step)}, {"trained_by", "cocola train"}});
}

void load_checkpoint(const std::string& path, model::Model& m, Adam& adam, int64_t& step, double& best_val) {
    auto f = safetensors::load(path);
    torch::NoGradGuard no_grad;
    auto copy = [&](const std::string& name, at::Tensor& dst) {
        const at::Tensor* t = f.find(name);
        if (!t) throw Error(path + ": missing tensor " + name);
        if (t->sizes() != dst.sizes()) throw Error(path + ": tensor " + name + " has the wrong shape");
        dst.copy_(*t);
    };
    for (auto& [n, t] : model_state(m)) copy(n, t);
    for (auto& [n, t] : adam.params)
        if (n.rfind(kTrainOnlyPrefix, 0) == 0) copy(n, t);
    for (size_t i = 0; i < adam.params.size(); ++i) {
        copy("adam.m." + adam.params[i].first, adam.m[i]);
        copy("adam.v." + adam.params[i].first, adam.v[i]);
    }
    try {
        step = std::stoll(f.metadata.at("step"));
        adam.t = std::stoll(f.metadata.at("adam_t"));
        best_val = std::stod(f.metadata.at("best_val_loss"));
    } catch (const std::exception&) {
        throw Error(path + ": missing or malformed step/adam_t/best_val_loss metadata");
    }
}

// val_k2_accuracy and aux_loss came last so that the columns before them keep their places for older readers
// of the log.
const char* kLogHeader =
    "step,epoch,loss,accuracy,val_loss,val_accuracy,step_seconds,feature_seconds,val_k2_accuracy,aux_loss";

void append_log(const std::string& run_dir, const StepLog& s) {
    std::ofstream f(run_dir + "/log.csv", std::ios::app);
    f << s.step << "," << s.epoch << "," << s.loss << "," << s.accuracy << ",";
    if (s.val_loss >= 0) f << s.val_loss << "," << s.val_accuracy;
    else f << ",";
    f << "," << s.seconds << "," << s.feature_seconds << ",";
    if (s.val_k2_accuracy >= 0) f << s.val_k2_accuracy;
    f << ",";
    if (s.aux_loss >= 0) f << s.aux_loss;
    f << "\n";
}

// Keeps the log lines up to `step` (a resumed run rewrites what the killed run logged after its checkpoint).
void truncate_log(const std::string& run_dir, int64_t step) {
    std::ifstream in(run_dir + "/log.csv");
    std::string out = std::string(kLogHeader) + "\n", line;
    std::getline(in, line);
    while (std::getline(in, line)) {
        if (line.empty()) continue;
        if (std::stoll(line.substr(0, line.find(','))) <= step) out += line + "\n";
    }
    fsutil::write_file_atomically(run_dir + "/log.csv", out);
}

}  // namespace

double learning_rate_scale(const TrainOptions& o, int64_t step) {
    if (step < o.warmup_steps) return static_cast<double>(step + 1) / static_cast<double>(o.warmup_steps);
    if (o.lr_decay == "none") return 1.0;
    if (o.lr_decay != "cosine") throw Error("unknown learning-rate decay '" + o.lr_decay + "' (none or cosine)");
    // The first step after the warm-up runs at the full rate; the rate reaches zero one step past the last.
    const double span = static_cast<double>(std::max<int64_t>(1, o.steps - o.warmup_steps));
    const double progress = std::min(1.0, static_cast<double>(step - o.warmup_steps) / span);
    return 0.5 * (1.0 + std::cos(M_PI * progress));
}

std::vector<ScheduledBatch> data_schedule(const TrainOptions& o, int64_t first, int64_t count) {
    if (o.caches.empty()) throw Error("no training data given");
    if (first < 0 || count < 0) throw Error("data_schedule: negative step range");
    TrainingData td(o);
    std::vector<ScheduledBatch> out;
    for (int64_t s = first; s < first + count; ++s) {
        int epoch = 0;
        const auto e = td.schedule.at(s, epoch);
        out.push_back({e.source, epoch, e.batch});
    }
    return out;
}

TrainOptions read_run_options(const std::string& run_dir) {
    std::ifstream in(run_dir + "/options.json");
    if (!in) throw Error(run_dir + ": not a training run (no options.json)");
    try {
        TrainOptions o = from_json(nlohmann::json::parse(in));
        o.run_dir = run_dir;
        return o;
    } catch (const std::exception& e) {
        throw Error(run_dir + "/options.json: malformed (" + e.what() + ")");
    }
}

void train(TrainOptions o, bool resume, const StepCallback& on_step, const std::function<bool()>& stop) {
    if (o.caches.empty()) throw Error("no training data given");
    if (o.batch < 2) throw Error("batch must be at least 2 (the loss contrasts each pair with the others)");
    learning_rate_scale(o, std::max(o.steps, o.warmup_steps));  // throws on an unknown --lr-decay before any work
    // The data (caches, samplers, schedule; bad --data-weights throw here), before the run folder is made.
    TrainingData td(o);
    const Schedule& sched = td.schedule;
    fs::create_directories(o.run_dir);
    // A kill during a write leaves its temp file behind (never a half-written target): clear those.
    for (const auto& entry : fs::directory_iterator(o.run_dir))
        if (entry.path().filename().string().find(".tmp.") != std::string::npos) fs::remove(entry.path());
    const at::Device device(o.device == "cuda" ? at::kCUDA : at::kCPU);
    if (o.device == "cuda" && !at::hasCUDA())
        throw Error("--device cuda: this build's LibTorch has no CUDA, or no GPU is visible (build against a CUDA "
                    "LibTorch via CMAKE_PREFIX_PATH, see README)");

    // Validation sets: each source's validation split.
    std::vector<ValSet> val;
    for (const auto& cache : td.caches) {
        const auto splits = cache->splits();
        for (const char* vs : {"valid", "validation", "test"})
            if (std::find(splits.begin(), splits.end(), vs) != splits.end()) {
                // The shared-stem warm-up is validated on the real task (disjoint sub-mixes): how much carries over.
                auto items = data::fixed_protocol(*cache, vs, 80000,
                                                  o.pair_mode == data::PairMode::SharedStem ? data::PairMode::SubMix
                                                                                            : o.pair_mode);
                Rng(data::kProtocolSeed).shuffle(items);  // mix tracks within validation batches
                val.push_back({cache.get(), vs, std::move(items)});
                break;
            }
    }

    // Model and optimizer.
    model::Config cfg;
    cfg.frontend = o.frontend;
    cfg.similarity = o.similarity;
    cfg.dropout = o.dropout;
    model::Model m = o.init_from.empty() ? model::Model(cfg, o.seed) : model::Model::load(o.init_from);
    if (m.config().frontend != o.frontend) throw Error(o.init_from + ": its front-end differs from --frontend");
    if (o.init_from.empty() && o.similarity == model::Similarity::Bilinear &&
        (o.similarity_init_std != model::kReferenceSimilarityInitStd || o.similarity_init_identity != 0)) {
        // The model draws W ~ N(0, 0.05^2) as the reference does; rescale that same draw, and add s * I: a scaled
        // dot product to start from, which hands the encoder its partner's embedding as the gradient.
        torch::NoGradGuard no_grad;
        for (auto& p : m.net().named_parameters())
            if (p.key() == "similarity.w") {
                p.value().mul_(o.similarity_init_std / model::kReferenceSimilarityInitStd);
                p.value().add_(at::eye(p.value().size(0), p.value().options()) * o.similarity_init_identity);
            }
    }
    if (!resume && o.init_from.empty() && o.zero_init_residual) {
        // Measured (docs/training.md section 6): from the default init the 16-block EfficientNet stays at chance
        // on sub-mix pairs for thousands of steps, while a 6-layer CNN learns within 200; with every residual
        // branch starting at zero the EfficientNet starts as its shallow skeleton and learns.
        torch::NoGradGuard no_grad;
        auto& blocks = m.net().effnet->blocks;
        for (size_t i = 0; i < blocks->size(); ++i) {
            auto* b = blocks[i]->as<model::MBConvBlock>();
            if (b->residual) b->bn2->weight.zero_();
        }
    }
    m.to(device);
    if (o.device == "cpu") m.net().use_channels_last(true);
    if (!resume && o.init_from.empty() && o.center_projection) {
        m.net().train();
        center_projection(m.net(), sched, o, device);
    }
    std::vector<std::pair<std::string, at::Tensor>> params;
    std::vector<double> lrs;
    for (const auto& p : m.net().named_parameters()) {
        params.emplace_back(p.key(), p.value());
        // Adam moves every entry of the D x D bilinear matrix by about lr per step, all in the direction that
        // helps, so one step changes a logit a^T W b by about lr * |a|_1 * |b|_1 (~100 for lr 1e-3, D 512):
        // a separate, smaller rate for W keeps the softmax out of saturation while the encoder learns.
        const bool is_w = p.key().rfind("similarity.", 0) == 0;
        lrs.push_back(is_w && o.similarity_lr > 0 ? o.similarity_lr : o.lr);
    }
    // Training-only heads on the pooled features: in the optimizer and the checkpoint under `name`, never in a
    // model file. Each group is drawn from a seed of its own, so a run is reproducible.
    auto train_only_head = [&](const std::string& name, int64_t outputs) {
        torch::nn::Linear head(1280, outputs);
        head->to(device);
        for (const auto& p : head->named_parameters()) {
            params.emplace_back(kTrainOnlyPrefix + name + "." + p.key(), p.value());
            lrs.push_back(o.lr);
        }
        return head;
    };
    torch::nn::Linear aux_head{nullptr};  // --aux-tempo
    if (o.aux_tempo > 0) {
        at::manual_seed(mix_seed(o.seed ^ 0x7E3Bu, 0));
        aux_head = train_only_head("aux_tempo", kTempoMaxLag - kTempoMinLag);
    }
    torch::nn::Linear tempo_head{nullptr}, key_head{nullptr};  // --aux-labels
    if (o.aux_labels > 0) {
        at::manual_seed(mix_seed(o.seed ^ 0x1AB3Lu, 0));
        tempo_head = train_only_head("aux_labels.tempo", kTempoClasses);
        key_head = train_only_head("aux_labels.key", kKeyClasses);
    }
    Adam adam(params, lrs);

    int64_t step = 0;
    double best_val = 1e300;
    const std::string ckpt = o.run_dir + "/checkpoint.safetensors";
    if (resume) {
        if (!fs::exists(ckpt)) throw Error(o.run_dir + ": nothing to resume (no checkpoint.safetensors)");
        load_checkpoint(ckpt, m, adam, step, best_val);
        truncate_log(o.run_dir, step);
        // Keeps what a resume may change (steps, learning rates) for the next resume and for the record.
        fsutil::write_file_atomically(o.run_dir + "/options.json", to_json(o).dump(2) + "\n");
    } else {
        if (fs::exists(ckpt)) throw Error(o.run_dir + ": a run already exists here; use --resume or another --out");
        fsutil::write_file_atomically(o.run_dir + "/options.json", to_json(o).dump(2) + "\n");
        fsutil::write_file_atomically(o.run_dir + "/log.csv", std::string(kLogHeader) + "\n");
    }
    m.net().train();

    auto prefetch = [&](int64_t s) { return std::async(std::launch::async, [&td, &o](int64_t s) { return prepare(td.schedule, o, s, &td); }, s); };
    std::future<ReadyBatch> next;
    if (step < o.steps) next = prefetch(step);
    while (step < o.steps) {
        const auto t0 = Clock::now();
        ReadyBatch rb = next.get();  // the model waits here only if features are slower than a step
        if (step + 1 < o.steps) next = prefetch(step + 1);
        const at::Tensor feats = features_on(rb, o, device);
        const int K = static_cast<int>(feats.size(0) / 2);
        // Dropout and drop-connect draw from torch's generator: seeded per step, so a resumed run draws the same.
        at::manual_seed(mix_seed(o.seed ^ 0xD309u, static_cast<uint64_t>(step)));
        at::Tensor pooled;  // the encoder's [2K, 1280] features, for the auxiliary head
        model::ActivationHook keep_pooled;
        if (aux_head || tempo_head)
            keep_pooled = [&](const std::string& stage, const at::Tensor& x) { if (stage == "avgpool") pooled = x; };
        at::Tensor e = m.net().embed(feats, keep_pooled);
        at::Tensor S, target;
        contrastive_logits(m.net(), e, K, o.loss, S, target);
        at::Tensor loss = at::nll_loss(at::log_softmax(S, 1), target);
        at::Tensor aux_loss;
        if (aux_head) {
            at::Tensor wanted;
            {
                torch::NoGradGuard no_grad;
                wanted = tempo_profiles(feats);
            }
            aux_loss = 1 - at::cosine_similarity(aux_head->forward(pooled.flatten(1)), wanted, 1).mean();
        }
        at::Tensor label_loss;
        if (tempo_head) label_loss = labels_loss(pooled.flatten(1), tempo_head, key_head, rb, device);
        at::Tensor total = loss;
        if (aux_head) total = total + o.aux_tempo * aux_loss;
        if (tempo_head) total = total + o.aux_labels * label_loss;
        adam.zero_grad();
        total.backward();
        // A function of the step alone, so a resumed run warms up exactly as an uninterrupted one.
        adam.scale = learning_rate_scale(o, step);
        adam.step();
        m.weights_changed();
        ++step;

        StepLog log;
        log.step = step;
        log.epoch = rb.epoch;
        log.loss = loss.item<double>();  // the contrastive loss alone, comparable across runs
        if (aux_head || tempo_head)
            log.aux_loss = (aux_head ? aux_loss.item<double>() : 0.0) + (tempo_head ? label_loss.item<double>() : 0.0);
        log.accuracy = S.argmax(1).eq(target).to(at::kFloat).mean().item<double>();
        log.feature_seconds = rb.feature_seconds;
        const bool validate_now = o.val_every > 0 && (step % o.val_every == 0 || step == o.steps);
        const bool stopping = stop && stop();
        // The statistics last.safetensors and best.safetensors carry are measured for their weights.
        if (validate_now || stopping || step == o.steps) recalibrate_batchnorm(m.net(), sched, o, device);
        if (validate_now && !val.empty()) {
            const Validation v = validate(m, val, o);
            const double vl = v.loss, va = v.accuracy;
            log.val_loss = vl;
            log.val_accuracy = va;
            log.val_k2_accuracy = v.k2_accuracy;
            if (vl >= 0 && vl < best_val) {
                best_val = vl;
                m.save(o.run_dir + "/best.safetensors", {{"step", std::to_string(step)},
                                                         {"val_loss", std::to_string(vl)},
                                                         {"val_accuracy", std::to_string(va)},
                                                         {"val_k2_accuracy", std::to_string(v.k2_accuracy)}});
            }
        }
        log.seconds = seconds_since(t0);
        append_log(o.run_dir, log);
        if (step % std::max(1, o.checkpoint_every) == 0 || step == o.steps || stopping || validate_now)
            save_checkpoint(o.run_dir, m, adam, step, best_val, o);
        if (on_step) on_step(log, o.steps);
        if (stopping) break;
    }
    if (next.valid()) next.wait();
    write_curves_svg(o.run_dir);
}

}  // namespace cocola::train
