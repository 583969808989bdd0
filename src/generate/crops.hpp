// Training examples for the generators: crops of random sub-mixes of stem caches (internal to src/generate).
#pragma once
#include <ATen/ATen.h>

#include <memory>
#include <string>
#include <vector>

#include "cocola/data.hpp"
#include "cocola/generate.hpp"
#include "cocola/rng.hpp"

namespace cocola::generate {

// Crops of random sub-mixes: a track of the split, a start on the 10 ms frame grid, and a non-empty random
// subset of the stems active there (every stem when none is). A pure function of (seed, index): resume is exact.
class SubMixCrops {
   public:
    SubMixCrops(const std::vector<std::unique_ptr<data::StemCache>>& caches, const std::vector<std::string>& splits,
                int64_t frames, uint64_t seed)
        : caches_(caches), samples_(frames * kHopSamples), seed_(seed) {
        for (size_t c = 0; c < caches.size(); ++c)
            for (const auto& split : splits) {
                const auto in = caches[c]->tracks_in(split);
                if (in.empty()) continue;
                for (size_t t : in) tracks_.push_back({c, t});
                break;  // the first split that exists
            }
    }
    bool empty() const { return tracks_.empty(); }
    // The same tracks, drawn with another seed.
    SubMixCrops reseeded(uint64_t seed) const {
        SubMixCrops c = *this;
        c.seed_ = seed;
        return c;
    }
    size_t tracks() const { return tracks_.size(); }

    // Clips [count, samples] of draws index, index + 1, ...
    at::Tensor clips(int64_t index, int64_t count) const {
        at::Tensor out = at::zeros({count, samples_}, at::kFloat);
        for (int64_t b = 0; b < count; ++b) draw(index + b, out.data_ptr<float>() + b * samples_);
        return out;
    }

   private:
    void draw(int64_t index, float* out) const {
        Rng rng(mix_seed(seed_, static_cast<uint64_t>(index)));
        const auto [c, t] = tracks_[static_cast<size_t>(rng.range(0, static_cast<int64_t>(tracks_.size()) - 1))];
        const data::StemCache& cache = *caches_[c];
        const auto& track = cache.track(t);
        const int64_t last_start = std::max<int64_t>(0, (track.length - samples_) / kHopSamples);
        const int64_t offset = rng.range(0, last_start) * kHopSamples;
        std::vector<int> stems = cache.active_stems(t, offset, samples_, data::ActivityRule{});
        if (stems.empty())
            for (size_t s = 0; s < track.stems.size(); ++s) stems.push_back(static_cast<int>(s));
        std::vector<int> chosen;
        while (chosen.empty())
            for (int s : stems)
                if (rng.chance(0.5)) chosen.push_back(s);
        for (size_t i = 0; i < chosen.size(); ++i)
            cache.read(t, static_cast<size_t>(chosen[i]), offset, samples_, out, /*accumulate=*/i > 0);
    }

    const std::vector<std::unique_ptr<data::StemCache>>& caches_;
    std::vector<std::pair<size_t, size_t>> tracks_;
    int64_t samples_;
    uint64_t seed_;
};

}  // namespace cocola::generate
