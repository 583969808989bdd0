// CompoNet's latent pool (componet_pool.hpp).
#include "generate/componet_pool.hpp"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "cocola/error.hpp"
#include "cocola/rng.hpp"
#include "cocola/safetensors.hpp"

namespace cocola::componet {

namespace {

const uint64_t kPoolDraws = 0x9001u;

struct Draw {
    size_t cache = 0, track = 0;
    int64_t offset = 0;
    std::vector<int> in, out;
};

// A non-empty subset of `stems`: all of them one time in five, else each with probability 1/2.
std::vector<int> subset(const std::vector<int>& stems, Rng& rng) {
    if (rng.chance(0.2)) return stems;
    std::vector<int> chosen;
    while (chosen.empty())
        for (int s : stems)
            if (rng.chance(0.5)) chosen.push_back(s);
    return chosen;
}

class PairDraws {
   public:
    PairDraws(const std::vector<std::unique_ptr<data::StemCache>>& caches, const std::vector<std::string>& splits, uint64_t seed)
        : caches_(caches), seed_(seed) {
        for (size_t c = 0; c < caches.size(); ++c)
            for (const auto& split : splits) {
                const auto in = caches[c]->tracks_in(split);
                if (in.empty()) continue;
                for (size_t t : in) tracks_.push_back({c, t});
                break;
            }
    }
    bool empty() const { return tracks_.empty(); }

    Draw draw(int64_t index) const {
        Rng rng(mix_seed(seed_, static_cast<uint64_t>(index)));
        Draw d;
        std::tie(d.cache, d.track) = tracks_[static_cast<size_t>(rng.range(0, static_cast<int64_t>(tracks_.size()) - 1))];
        const auto& cache = *caches_[d.cache];
        const auto& track = cache.track(d.track);
        const int64_t last = std::max<int64_t>(0, (track.length - generate::kChunkSamples) / generate::kHopSamples);
        d.offset = rng.range(0, last) * generate::kHopSamples;
        std::vector<int> stems = cache.active_stems(d.track, d.offset, generate::kChunkSamples, data::ActivityRule{});
        if (stems.empty())
            for (size_t s = 0; s < track.stems.size(); ++s) stems.push_back(static_cast<int>(s));
        d.out = subset(stems, rng);
        d.in = subset(stems, rng);
        return d;
    }

    // The mix of `stems` [kChunkSamples] and their tags (numbered over the whole track's classes).
    void mix(const Draw& d, const std::vector<int>& stems, float* out, std::vector<Tag>& tags) const {
        const auto& cache = *caches_[d.cache];
        const auto& track = cache.track(d.track);
        std::vector<std::string> classes;
        for (const auto& s : track.stems) classes.push_back(s.cls);
        const auto all = tags_for_classes(classes);
        for (size_t i = 0; i < stems.size(); ++i) {
            cache.read(d.track, static_cast<size_t>(stems[i]), d.offset, generate::kChunkSamples, out, i > 0);
            tags.push_back(all[static_cast<size_t>(stems[i])]);
        }
    }

   private:
    const std::vector<std::unique_ptr<data::StemCache>>& caches_;
    std::vector<std::pair<size_t, size_t>> tracks_;
    uint64_t seed_;
};

// MSDM's examples: a chunk of a track holding at least two of the sources, each source the mix of the track's stems
// of that tag (silence when it has none).
class SourceDraws {
   public:
    SourceDraws(const std::vector<std::unique_ptr<data::StemCache>>& caches, const std::vector<std::string>& splits,
                const std::vector<std::string>& sources, uint64_t seed)
        : caches_(caches), sources_(sources), seed_(seed) {
        for (size_t c = 0; c < caches.size(); ++c)
            for (const auto& split : splits) {
                const auto in = caches[c]->tracks_in(split);
                if (in.empty()) continue;
                for (size_t t : in) {
                    const auto members = source_stems(*caches[c], t);
                    int present = 0;
                    for (const auto& m : members) present += !m.empty();
                    if (present >= 2) tracks_.push_back({c, t});
                }
                break;
            }
    }
    bool empty() const { return tracks_.empty(); }

    // The stems of each source in a track (by tag name, numbered classes merged).
    std::vector<std::vector<int>> source_stems(const data::StemCache& cache, size_t t) const {
        std::vector<std::string> classes;
        for (const auto& s : cache.track(t).stems) classes.push_back(s.cls);
        const auto tags = tags_for_classes(classes);
        std::vector<std::vector<int>> out(sources_.size());
        for (size_t s = 0; s < tags.size(); ++s)
            for (size_t k = 0; k < sources_.size(); ++k)
                if (tags[s].name == sources_[k]) out[k].push_back(static_cast<int>(s));
        return out;
    }

    // Writes each present source's audio [kChunkSamples] into `clips` (one per present source, in source order) and
    // returns which sources are present.
    std::vector<bool> draw(int64_t index, std::vector<std::vector<float>>& clips) const {
        Rng rng(mix_seed(seed_, static_cast<uint64_t>(index)));
        const auto [c, t] = tracks_[static_cast<size_t>(rng.range(0, static_cast<int64_t>(tracks_.size()) - 1))];
        const auto& cache = *caches_[c];
        const auto& track = cache.track(t);
        const int64_t last = std::max<int64_t>(0, (track.length - generate::kChunkSamples) / generate::kHopSamples);
        const int64_t offset = rng.range(0, last) * generate::kHopSamples;
        const auto members = source_stems(cache, t);
        std::vector<bool> present;
        for (const auto& m : members) {
            present.push_back(!m.empty());
            if (m.empty()) continue;
            clips.emplace_back(static_cast<size_t>(generate::kChunkSamples), 0.f);
            for (size_t i = 0; i < m.size(); ++i)
                cache.read(t, static_cast<size_t>(m[i]), offset, generate::kChunkSamples, clips.back().data(), i > 0);
        }
        return present;
    }

   private:
    const std::vector<std::unique_ptr<data::StemCache>>& caches_;
    std::vector<std::string> sources_;
    std::vector<std::pair<size_t, size_t>> tracks_;
    uint64_t seed_;
};

// Encodes `count` source draws into stacked latents [count, sources x C, h, w] (float16); absent sources get the
// latent of silence. Items record the present sources as "out" tags.
void encode_source_draws(const SourceDraws& draws, const std::vector<std::string>& sources, int64_t count,
                         const generate::Vae& vae, std::vector<PoolItem>& items, at::Tensor& latents,
                         const std::function<void(size_t)>& done) {
    const at::Tensor silence =
        vae.encode(generate::mel_spectrograms(at::zeros({1, generate::kChunkSamples}, at::kFloat)).to(vae.device())).cpu();
    std::vector<at::Tensor> out;
    const int64_t batch = 4;
    for (int64_t i = 0; i < count; i += batch) {
        const int64_t n = std::min(batch, count - i);
        std::vector<std::vector<float>> clips;
        std::vector<std::vector<bool>> present;
        for (int64_t b = 0; b < n; ++b) {
            present.push_back(draws.draw(i + b, clips));
            PoolItem item;
            for (size_t k = 0; k < sources.size(); ++k)
                if (present.back()[k]) item.out.push_back({sources[k], 0});
            items.push_back(std::move(item));
        }
        at::Tensor audio = at::zeros({static_cast<int64_t>(clips.size()), generate::kChunkSamples}, at::kFloat);
        for (size_t k = 0; k < clips.size(); ++k) std::copy(clips[k].begin(), clips[k].end(), audio[static_cast<int64_t>(k)].data_ptr<float>());
        const at::Tensor z = vae.encode(generate::mel_spectrograms(audio).to(vae.device())).cpu();
        size_t next = 0;
        for (int64_t b = 0; b < n; ++b) {
            std::vector<at::Tensor> parts;
            for (size_t k = 0; k < sources.size(); ++k)
                parts.push_back(present[static_cast<size_t>(b)][k] ? z.slice(0, static_cast<int64_t>(next), static_cast<int64_t>(next) + 1) : silence),
                    next += present[static_cast<size_t>(b)][k];
            out.push_back(at::cat(parts, 1).to(at::kHalf));
        }
        if (done) done(static_cast<size_t>(n));
    }
    latents = out.empty() ? at::zeros({0}, at::kHalf) : at::cat(out);
}

nlohmann::json tags_json(const std::vector<Tag>& tags) {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& t : tags) j.push_back({t.name, t.number});
    return j;
}
std::vector<Tag> tags_from(const nlohmann::json& j) {
    std::vector<Tag> out;
    for (const auto& t : j) out.push_back({t.at(0).get<std::string>(), t.at(1).get<int>()});
    return out;
}

// Encodes `count` draws into latents [count, C, h, w] (float16) and their tags.
void encode_draws(const PairDraws& draws, int64_t count, const generate::Vae& vae, std::vector<PoolItem>& items,
                  at::Tensor& out_latents, at::Tensor& in_latents, const std::function<void(size_t)>& done) {
    std::vector<at::Tensor> outs, ins;
    const int64_t batch = 8;
    for (int64_t i = 0; i < count; i += batch) {
        const int64_t n = std::min(batch, count - i);
        at::Tensor out_audio = at::zeros({n, generate::kChunkSamples}, at::kFloat), in_audio = at::zeros_like(out_audio);
        for (int64_t b = 0; b < n; ++b) {
            const Draw d = draws.draw(i + b);
            PoolItem item;
            draws.mix(d, d.out, out_audio[b].data_ptr<float>(), item.out);
            draws.mix(d, d.in, in_audio[b].data_ptr<float>(), item.in);
            items.push_back(std::move(item));
        }
        outs.push_back(vae.encode(generate::mel_spectrograms(out_audio).to(vae.device())).cpu().to(at::kHalf));
        ins.push_back(vae.encode(generate::mel_spectrograms(in_audio).to(vae.device())).cpu().to(at::kHalf));
        if (done) done(static_cast<size_t>(n));
    }
    out_latents = at::cat(outs);
    in_latents = at::cat(ins);
}

}  // namespace

nlohmann::json vae_identity(const generate::Vae& vae) {
    const auto& c = vae.config();
    return {{"latent_channels", c.latent_channels}, {"downsampling", c.downsampling()}, {"scale_factor", c.scale_factor},
            {"mel_mean", c.mel_mean}, {"mel_std", c.mel_std}};
}

LatentPool open_latent_pool(const std::string& path, const ComponetTrainOptions& o, const generate::Vae& vae,
                            const std::vector<std::unique_ptr<data::StemCache>>& caches,
                            const std::function<void(size_t, size_t)>& progress) {
    LatentPool pool;
    pool.downsampling = vae.config().downsampling();
    const nlohmann::json identity = vae_identity(vae);
    const bool msdm = !o.sources.empty();
    if (std::filesystem::exists(path)) {
        const safetensors::File f = safetensors::load(path);
        try {
            const auto meta = nlohmann::json::parse(f.metadata.at("pool"));
            if (meta.at("vae") != identity)
                throw Error(path + ": this latent pool was encoded by another VAE; delete it or give another --pool");
            if (meta.value("sources", std::vector<std::string>{}) != o.sources)
                throw Error(path + ": this latent pool was made for " +
                            (msdm ? std::string("another model (not these MSDM sources)") : std::string("an MSDM model")) +
                            "; delete it or give another --pool");
            if (meta.at("size").get<int64_t>() < o.pool_size)
                throw Error(path + ": holds " + std::to_string(meta.at("size").get<int64_t>()) + " examples, --pool-size asks " +
                            std::to_string(o.pool_size) + "; delete it or lower --pool-size");
            for (const auto& it : meta.at("items")) pool.items.push_back({tags_from(it.at(0)), tags_from(it.at(1))});
            for (const auto& it : meta.at("val_items")) pool.val_items.push_back({tags_from(it.at(0)), tags_from(it.at(1))});
            auto get = [&](const char* name) {
                const at::Tensor* t = f.find(name);
                if (!t) throw Error(path + ": missing tensor " + name);
                return *t;
            };
            pool.out_latents = get("out");
            pool.in_latents = get("in");
            pool.val_out = get("val_out");
            pool.val_in = get("val_in");
        } catch (const Error&) {
            throw;
        } catch (const std::exception& e) {
            throw Error(path + ": not a CompoNet latent pool (" + e.what() + ")");
        }
        if (pool.out_latents.dim() != 4 || pool.out_latents.size(0) != static_cast<int64_t>(pool.items.size()) ||
            (!msdm && pool.in_latents.sizes() != pool.out_latents.sizes()) ||
            pool.val_out.size(0) != static_cast<int64_t>(pool.val_items.size()))
            throw Error(path + ": its latents and examples do not match");
        return pool;
    }
    if (o.pool_size < 1) throw Error("--pool-size must be at least 1");
    torch::NoGradGuard no_grad;
    size_t done = 0;
    auto tick = [&](size_t n, size_t total) {
        done += n;
        if (progress) progress(done, total);
    };
    nlohmann::json meta = {{"vae", identity}, {"size", o.pool_size}, {"items", nlohmann::json::array()},
                           {"val_items", nlohmann::json::array()}};
    if (msdm) {
        meta["sources"] = o.sources;
        const SourceDraws train(caches, {"train"}, o.sources, mix_seed(o.seed, kPoolDraws));
        if (train.empty()) throw Error("no training track holds two of the sources (" + nlohmann::json(o.sources).dump() + ")");
        const SourceDraws val(caches, {"valid", "validation", "test"}, o.sources, data::kProtocolSeed);
        const int64_t val_count = val.empty() ? 0 : o.val_chunks;
        const size_t total = static_cast<size_t>(o.pool_size + val_count);
        encode_source_draws(train, o.sources, o.pool_size, vae, pool.items, pool.out_latents, [&](size_t n) { tick(n, total); });
        if (val_count > 0) encode_source_draws(val, o.sources, val_count, vae, pool.val_items, pool.val_out, [&](size_t n) { tick(n, total); });
        else pool.val_out = at::zeros({0, pool.out_latents.size(1), pool.out_latents.size(2), pool.out_latents.size(3)}, at::kHalf);
        pool.in_latents = at::zeros({0}, at::kHalf);
        pool.val_in = at::zeros({0}, at::kHalf);
    } else {
    const PairDraws train(caches, {"train"}, mix_seed(o.seed, kPoolDraws));
    if (train.empty()) throw Error("no training tracks (no \"train\" split) in the --data sources");
    const PairDraws val(caches, {"valid", "validation", "test"}, data::kProtocolSeed);
    const int64_t val_count = val.empty() ? 0 : o.val_chunks;
    const size_t total = static_cast<size_t>(o.pool_size + val_count);
    encode_draws(train, o.pool_size, vae, pool.items, pool.out_latents, pool.in_latents, [&](size_t n) { tick(n, total); });
    if (val_count > 0) encode_draws(val, val_count, vae, pool.val_items, pool.val_out, pool.val_in, [&](size_t n) { tick(n, total); });
    else pool.val_out = pool.val_in = at::zeros({0, pool.out_latents.size(1), pool.out_latents.size(2), pool.out_latents.size(3)}, at::kHalf);
    }
    for (const auto& it : pool.items) meta["items"].push_back({tags_json(it.in), tags_json(it.out)});
    for (const auto& it : pool.val_items) meta["val_items"].push_back({tags_json(it.in), tags_json(it.out)});
    std::filesystem::create_directories(std::filesystem::path(path).parent_path().empty() ? "." : std::filesystem::path(path).parent_path());
    safetensors::save(path, {{"out", pool.out_latents}, {"in", pool.in_latents}, {"val_out", pool.val_out}, {"val_in", pool.val_in}},
                      {{"format", "cocola componet latent pool"}, {"pool", meta.dump()}});
    return pool;
}

}  // namespace cocola::componet
