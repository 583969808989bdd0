// The contrastive pair sampler (COCOLA section 3.1) and the reference's fixed evaluation protocol.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <deque>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "cocola/data.hpp"
#include "cocola/error.hpp"
#include "cocola/rng.hpp"

namespace cocola::data {

const char* pair_mode_name(PairMode m) {
    switch (m) {
        case PairMode::SubMix: return "submix";
        case PairMode::SingleStem: return "single";
        case PairMode::SharedStem: return "shared";
    }
    return "submix";
}

PairMode parse_pair_mode(const std::string& name) {
    if (name == "submix") return PairMode::SubMix;
    if (name == "single") return PairMode::SingleStem;
    if (name == "shared") return PairMode::SharedStem;
    throw Error("unknown pair mode '" + name + "' (submix, single or shared)");
}

void draw_pair(std::vector<int> active, PairMode mode, uint64_t seed, std::vector<int>& anchor,
               std::vector<int>& positive) {
    if (active.size() < 2) throw Error("draw_pair: fewer than 2 active stems");
    Rng rng(seed);
    rng.shuffle(active);
    const int64_t n = static_cast<int64_t>(active.size());
    if (mode == PairMode::SharedStem) {
        // active[0] is common; of the n - 1 others the anchor takes a, the positive p, disjoint, a + p >= 1.
        const int64_t a = rng.range(0, n - 2);
        const int64_t p = rng.range(a == 0 ? 1 : 0, n - 1 - a);
        anchor.assign(active.begin(), active.begin() + 1 + a);
        positive.assign(1, active[0]);
        positive.insert(positive.end(), active.begin() + 1 + a, active.begin() + 1 + a + p);
        std::sort(anchor.begin(), anchor.end());
        std::sort(positive.begin(), positive.end());
        return;
    }
    // As the reference: anchor size in [1, n-1], positive size in [1, n - anchor], both uniform.
    const int64_t a = mode == PairMode::SingleStem ? 1 : rng.range(1, n - 1);
    const int64_t p = mode == PairMode::SingleStem ? 1 : rng.range(1, n - a);
    anchor.assign(active.begin(), active.begin() + a);
    positive.assign(active.begin() + a, active.begin() + a + p);
    std::sort(anchor.begin(), anchor.end());
    std::sort(positive.begin(), positive.end());
}

PairSampler::PairSampler(const StemCache& cache, SamplerOptions opt) : cache_(cache), opt_(std::move(opt)) {
    if (opt_.batch < 1) throw Error("sampler: batch size K must be at least 1");
    if (opt_.window < cache_.block()) throw Error("sampler: window L shorter than the cache's block");
    if (!(opt_.max_overlap >= 0 && opt_.max_overlap < 1)) throw Error("sampler: overlap ratio r must be in [0, 1)");
    if (opt_.windows_per_track < 1 || opt_.batch % opt_.windows_per_track != 0)
        throw Error("sampler: " + std::to_string(opt_.windows_per_track) + " windows per track need a batch size K " +
                    "that is a multiple of it, not " + std::to_string(opt_.batch));
    tracks_ = cache_.tracks_in(opt_.split);
    if (tracks_.empty()) throw Error(cache_.dir() + ": no tracks in split '" + opt_.split + "'");
}

const std::vector<std::vector<Window>>& PairSampler::plan(int epoch) const { return *plan_ptr(epoch); }

std::shared_ptr<const std::vector<std::vector<Window>>> PairSampler::plan_ptr(int epoch) const {
    {
        std::lock_guard<std::mutex> lk(mu_);
        auto it = plans_.find(epoch);
        if (it != plans_.end()) return it->second;
    }
    const int64_t L = opt_.window, B = cache_.block();
    // Windows of one track start `stride` apart, so neighbours overlap by L - stride <= r L. The stride is
    // rounded up to the block grid: rounding down would let overlaps exceed r.
    const int64_t min_stride = static_cast<int64_t>(std::ceil(L * (1.0 - opt_.max_overlap) - 1e-9));
    const int64_t stride = std::max<int64_t>(B, (min_stride + B - 1) / B * B);
    Rng rng(mix_seed(mix_seed(opt_.seed, 0x91A4), static_cast<uint64_t>(epoch)));
    std::vector<Window> windows;
    for (size_t t : tracks_) {
        const int64_t len = cache_.track(t).length;
        std::vector<int64_t> offsets;
        if (len <= L) {
            if (len >= L / 2) offsets.push_back(0);  // one zero-padded window, as the reference pads
        } else {
            // A random phase per track and epoch, so every part of a track is seen over the epochs.
            const int64_t max_off = len - L;
            const int64_t phase = B * rng.range(0, std::min(stride - 1, max_off) / B);
            for (int64_t o = phase; o <= max_off; o += stride) offsets.push_back(o);
        }
        for (int64_t o : offsets) {
            auto act = cache_.active_stems(t, o, L, opt_.activity);
            if (act.size() >= 2) windows.push_back({static_cast<uint32_t>(t), o, std::move(act)});
        }
    }
    rng.shuffle(windows);
    // The units a batch is made of: one window each, or N windows of one track that do not overlap one another
    // (each window, in shuffled order, joins the first open group of its track it overlaps nowhere, or opens
    // one; a group is a unit when it holds N; windows left in open groups sit this epoch out).
    const size_t per_unit = static_cast<size_t>(opt_.windows_per_track);
    const size_t per_batch = static_cast<size_t>(opt_.batch) / per_unit;
    std::vector<std::vector<Window>> units;
    if (per_unit == 1) {
        for (auto& w : windows) units.push_back({std::move(w)});
    } else {
        std::map<uint32_t, std::vector<std::vector<Window>>> open;
        for (auto& w : windows) {
            auto& groups = open[w.track];
            auto group = std::find_if(groups.begin(), groups.end(), [&](const std::vector<Window>& g) {
                return std::all_of(g.begin(), g.end(), [&](const Window& v) { return std::abs(v.offset - w.offset) >= L; });
            });
            if (group == groups.end()) {
                groups.push_back({std::move(w)});
                continue;
            }
            group->push_back(std::move(w));
            if (group->size() == per_unit) {
                units.push_back(std::move(*group));
                groups.erase(group);
            }
        }
    }
    std::set<uint32_t> distinct;
    for (const auto& u : units) distinct.insert(u.front().track);
    if (distinct.size() < per_batch) {
        if (per_unit > 1)
            throw Error(cache_.dir() + ": split '" + opt_.split + "' has " + std::to_string(distinct.size()) +
                        " tracks with " + std::to_string(per_unit) + " non-overlapping windows of 2 or more active "
                        "stems, fewer than K/" + std::to_string(per_unit) + " = " + std::to_string(per_batch) +
                        " (" + std::to_string(per_unit) + " windows of each of K/" + std::to_string(per_unit) +
                        " tracks): use --batch " + std::to_string(per_unit * distinct.size()) +
                        " or less, fewer windows per track, or more (or longer) songs");
        throw Error(cache_.dir() + ": split '" + opt_.split + "' has " + std::to_string(distinct.size()) +
                    " tracks with 2 or more active stems, fewer than the batch size K = " +
                    std::to_string(opt_.batch) + " (every window of a batch comes from another track): use --batch " +
                    std::to_string(distinct.size()) + " or less, or more songs");
    }
    // Batches of distinct tracks, greedily in shuffled order; units that would repeat a track wait for a later
    // batch. What cannot fill a last batch is left for the next epoch's draw.
    auto batches = std::make_shared<std::vector<std::vector<Window>>>();
    std::deque<std::vector<Window>> pending(std::make_move_iterator(units.begin()), std::make_move_iterator(units.end()));
    while (pending.size() >= per_batch) {
        std::vector<Window> b;
        size_t taken = 0;
        std::set<uint32_t> used;
        std::deque<std::vector<Window>> rest;
        while (!pending.empty()) {
            std::vector<Window> u = std::move(pending.front());
            pending.pop_front();
            if (taken < per_batch && !used.count(u.front().track)) {
                used.insert(u.front().track);
                for (auto& w : u) b.push_back(std::move(w));
                if (++taken == per_batch) break;
            } else {
                rest.push_back(std::move(u));
            }
        }
        if (taken < per_batch) break;
        for (auto& u : pending) rest.push_back(std::move(u));
        pending.swap(rest);
        batches->push_back(std::move(b));
    }
    std::lock_guard<std::mutex> lk(mu_);
    // Keep a few epochs only; a long run asks for epochs in order.
    while (plans_.size() > 4) plans_.erase(plans_.begin());
    auto it = plans_.emplace(epoch, std::move(batches)).first;
    return it->second;
}

PairBatch PairSampler::batch(int epoch, size_t i) const {
    // Holds the plan alive even if another thread evicts it from the map meanwhile.
    const auto keep = plan_ptr(epoch);
    const auto& p = *keep;
    if (i >= p.size()) throw Error("sampler: batch " + std::to_string(i) + " beyond the epoch's " + std::to_string(p.size()));
    const auto& ws = p[i];
    PairBatch b;
    b.epoch = epoch;
    b.index = i;
    b.K = static_cast<int>(ws.size());
    b.L = opt_.window;
    b.anchor.assign(static_cast<size_t>(b.K) * b.L, 0.0f);
    b.positive.assign(static_cast<size_t>(b.K) * b.L, 0.0f);
    b.anchor_stems.resize(b.K);
    b.positive_stems.resize(b.K);
    const uint64_t bseed = mix_seed(mix_seed(opt_.seed, 0xBA7C + static_cast<uint64_t>(epoch)), i);
    std::vector<float> stem(opt_.stem_transform ? static_cast<size_t>(b.L) : 0);  // one stem's window (--stem-* only)
    for (int k = 0; k < b.K; ++k) {
        const Window& w = ws[k];
        b.track.push_back(w.track);
        b.offset.push_back(w.offset);
        draw_pair(w.active, opt_.mode, mix_seed(bseed, k), b.anchor_stems[k], b.positive_stems[k]);
        // Its own stream, so that runs without the swap draw exactly what they drew before it existed.
        if (opt_.swap_roles && Rng(mix_seed(mix_seed(bseed, 0x5A4B), k)).chance(0.5))
            b.anchor_stems[k].swap(b.positive_stems[k]);
        float* a = b.anchor.data() + static_cast<size_t>(k) * b.L;
        float* q = b.positive.data() + static_cast<size_t>(k) * b.L;
        if (!opt_.stem_transform) {
            for (int s : b.anchor_stems[k]) cache_.read(w.track, s, w.offset, b.L, a, true);
            for (int s : b.positive_stems[k]) cache_.read(w.track, s, w.offset, b.L, q, true);
            continue;
        }
        const uint64_t pseed = mix_seed(mix_seed(bseed, 0x57E3), k);
        for (auto [side, out] : {std::pair{&b.anchor_stems[k], a}, std::pair{&b.positive_stems[k], q}})
            for (int s : *side) {
                cache_.read(w.track, s, w.offset, b.L, stem.data(), false);
                opt_.stem_transform(stem, mix_seed(pseed, static_cast<uint64_t>(s)));
                if (stem.size() != static_cast<size_t>(b.L)) throw Error("sampler: the stem transform changed the window's length");
                for (int64_t j = 0; j < b.L; ++j) out[j] += stem[static_cast<size_t>(j)];
            }
    }
    return b;
}

// ---------------------------------------------------------------- Prefetcher
Prefetcher::Prefetcher(const PairSampler& sampler, int epoch, int threads, int depth)
    : sampler_(sampler), epoch_(epoch), total_(sampler.batches_per_epoch(epoch)),
      depth_(static_cast<size_t>(std::max(1, depth))) {
    for (int i = 0; i < std::max(1, threads); ++i) workers_.emplace_back([this] { work(); });
}

Prefetcher::~Prefetcher() {
    {
        std::lock_guard<std::mutex> lk(mu_);
        stop_ = true;
    }
    cv_.notify_all();
    for (auto& w : workers_) w.join();
}

void Prefetcher::work() {
    while (true) {
        const size_t i = next_job_++;
        if (i >= total_) return;
        {
            // Stay at most `depth` batches ahead of the consumer: bounded memory.
            std::unique_lock<std::mutex> lk(mu_);
            cv_.wait(lk, [&] { return stop_ || i < next_out_ + depth_; });
            if (stop_) return;
        }
        try {
            PairBatch b = sampler_.batch(epoch_, i);
            std::lock_guard<std::mutex> lk(mu_);
            ready_.emplace(i, std::move(b));
        } catch (...) {
            std::lock_guard<std::mutex> lk(mu_);
            if (!error_) error_ = std::current_exception();
        }
        cv_.notify_all();
    }
}

std::optional<PairBatch> Prefetcher::next() {
    std::unique_lock<std::mutex> lk(mu_);
    if (next_out_ >= total_) return std::nullopt;
    cv_.wait(lk, [&] { return error_ || ready_.count(next_out_); });
    if (error_) std::rethrow_exception(error_);
    PairBatch b = std::move(ready_.at(next_out_));
    ready_.erase(next_out_);
    ++next_out_;
    lk.unlock();
    cv_.notify_all();
    return b;
}

// ---------------------------------------------------------------- fixed protocol
std::vector<EvalItem> fixed_protocol(const StemCache& cache, const std::string& split, int64_t window, PairMode mode,
                                     uint64_t seed, const ActivityRule& rule) {
    std::vector<EvalItem> items;
    for (size_t t : cache.tracks_in(split)) {
        const auto& tr = cache.track(t);
        const uint64_t tseed = mix_seed(seed, hash_name(tr.split + "/" + tr.id));
        for (int64_t shift : {int64_t{0}, window / 2}) {
            for (int64_t off = shift; off < tr.length; off += window) {
                if (tr.length - off < window / 2) break;  // a sliver of a chunk is no test item
                auto act = cache.active_stems(t, off, window, rule);
                if (act.size() < 2) continue;
                EvalItem it;
                it.track = static_cast<uint32_t>(t);
                it.offset = off;
                // Seeded by (track id, offset) alone: adding or removing other tracks leaves this item unchanged.
                draw_pair(act, mode, mix_seed(tseed, static_cast<uint64_t>(off)), it.anchor, it.positive);
                items.push_back(std::move(it));
            }
        }
    }
    return items;
}

void render_item(const StemCache& cache, const EvalItem& item, int64_t window, float* anchor, float* positive) {
    std::fill(anchor, anchor + window, 0.0f);
    std::fill(positive, positive + window, 0.0f);
    for (int s : item.anchor) cache.read(item.track, s, item.offset, window, anchor, true);
    for (int s : item.positive) cache.read(item.track, s, item.offset, window, positive, true);
}

std::string protocol_json(const StemCache& cache, const std::vector<EvalItem>& items, int64_t window) {
    using nlohmann::json;
    json arr = json::array();
    for (const auto& it : items) {
        const auto& tr = cache.track(it.track);
        json a = json::array(), p = json::array();
        for (int s : it.anchor) a.push_back(tr.stems[s].name);
        for (int s : it.positive) p.push_back(tr.stems[s].name);
        arr.push_back({{"track", tr.id}, {"split", tr.split}, {"offset", it.offset}, {"anchor", a}, {"positive", p}});
    }
    return json{{"window", window}, {"items", arr}}.dump(1);
}

}  // namespace cocola::data
