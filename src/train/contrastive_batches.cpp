// The data side of contrastive training: sources, schedule, batches and their features (contrastive_batches.hpp).
#include "train/contrastive_batches.hpp"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "cocola/synth.hpp"
#include "features/frontend_torch.hpp"

namespace cocola::train {
namespace contrastive {
namespace {
using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }
}  // namespace

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

TrainingData::TrainingData(const TrainOptions& o) {
    check_data_weights(o);
    if (!(o.stem_effects >= 0 && o.stem_effects <= 1)) throw Error("--stem-effects: a probability, from 0 to 1");
    if (!(o.stem_gain_db >= 0 && o.stem_gain_db <= 40)) throw Error("--stem-gain-db: from 0 to 40 dB");
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
        if (o.stem_effects > 0 || o.stem_gain_db > 0) {
            const double p = o.stem_effects, g = o.stem_gain_db;
            so.stem_transform = [p, g](std::vector<float>& stem, uint64_t seed) {
                // A silent stem stays silent whatever the chain or gain; SoX's time is better spent elsewhere.
                if (std::all_of(stem.begin(), stem.end(), [](float v) { return v == 0.0f; })) return;
                Rng rng(seed);
                if (p > 0 && rng.chance(p)) stem = synth::apply_stem_effects(stem, synth::random_effect_chain(rng.next()));
                if (g > 0) {
                    // Its own stream: the effects drawn for a window do not depend on whether gains are on.
                    const float gain = static_cast<float>(std::pow(10.0, Rng(mix_seed(seed, 0x6A1)).uniform(-g, g) / 20));
                    for (float& v : stem) v *= gain;
                }
            };
        }
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
ReadyBatch prepare(const Schedule& sched, const TrainOptions& o, int64_t step, const TrainingData* td, PairRange range) {
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
    const int first = range.count < 0 ? 0 : range.first;
    const int n = range.count < 0 ? K : range.count;
    if (first < 0 || first + n > K) throw Error("pair range outside the batch");
    r.zeroed_channel = std::vector<int>(r.zeroed_channel.begin() + first, r.zeroed_channel.begin() + first + n);
    const float* anchor = b.anchor.data() + static_cast<size_t>(first) * b.L;
    const float* positive = b.positive.data() + static_cast<size_t>(first) * b.L;
    if (features_on_device(o)) {
        const size_t side = static_cast<size_t>(n) * b.L;
        r.waves = at::empty({2 * n, b.L}, at::kFloat);
        std::copy(anchor, anchor + side, r.waves.data_ptr<float>());
        std::copy(positive, positive + side, r.waves.data_ptr<float>() + side);
    } else {
        r.features = pair_features(o.frontend, anchor, positive, n, b.L);
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

}  // namespace contrastive

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

std::vector<ScheduledBatch> data_schedule(const TrainOptions& o, int64_t first, int64_t count) {
    if (o.caches.empty()) throw Error("no training data given");
    if (first < 0 || count < 0) throw Error("data_schedule: negative step range");
    contrastive::TrainingData td(o);
    std::vector<ScheduledBatch> out;
    for (int64_t s = first; s < first + count; ++s) {
        int epoch = 0;
        const auto e = td.schedule.at(s, epoch);
        out.push_back({e.source, epoch, e.batch});
    }
    return out;
}

}  // namespace cocola::train
