// Measuring generation (generation_eval.hpp).
#include "cocola/generation_eval.hpp"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <algorithm>
#include <map>
#include <set>

#include "cocola/distribution_distance.hpp"
#include "cocola/error.hpp"
#include "cocola/generate.hpp"
#include "cocola/rng.hpp"
#include "cocola/score.hpp"
#include "generate/componet_net.hpp"

namespace cocola::componet {

const std::vector<std::string>& generation_tasks() {
    static const std::vector<std::string> t = {"accompany", "extract"};
    return t;
}
const std::vector<std::string>& generation_generators() {
    static const std::vector<std::string> g = {"componet", "msdm", "truth", "resynth", "random"};
    return g;
}

namespace {

const uint64_t kItemDraws = 0x6e17u;

// A chunk's active stems whose tags the vocabulary knows, and every stem's tag.
std::vector<int> usable_stems(const data::StemCache& cache, size_t t, int64_t offset, const std::set<std::string>& known,
                              std::vector<Tag>& tags) {
    const auto& track = cache.track(t);
    std::vector<std::string> classes;
    for (const auto& s : track.stems) classes.push_back(s.cls);
    tags = tags_for_classes(classes);
    std::vector<int> out;
    for (int s : cache.active_stems(t, offset, generate::kChunkSamples, data::ActivityRule{}))
        if (known.count(tags[static_cast<size_t>(s)].name)) out.push_back(s);
    return out;
}

std::vector<float> mix(const data::StemCache& cache, size_t t, int64_t offset, const std::vector<int>& stems) {
    std::vector<float> out(static_cast<size_t>(generate::kChunkSamples), 0.f);
    for (size_t i = 0; i < stems.size(); ++i)
        cache.read(t, static_cast<size_t>(stems[i]), offset, generate::kChunkSamples, out.data(), i > 0);
    return out;
}

int64_t random_offset(const data::CachedTrack& track, Rng& rng) {
    const int64_t last = std::max<int64_t>(0, (track.length - generate::kChunkSamples) / generate::kHopSamples);
    return rng.range(0, last) * generate::kHopSamples;
}

void mean_ci(const std::vector<double>& v, double& mean, double& ci95) {
    mean = ci95 = NAN;
    if (v.empty()) return;
    double s = 0;
    for (double x : v) s += x;
    mean = s / static_cast<double>(v.size());
    if (v.size() < 2) return;
    double ss = 0;
    for (double x : v) ss += (x - mean) * (x - mean);
    ci95 = 1.96 * std::sqrt(ss / static_cast<double>(v.size() - 1) / static_cast<double>(v.size()));
}

}  // namespace

std::vector<GenerationItem> draw_generation_items(const data::StemCache& cache, const std::string& set,
                                                  const std::string& split, const std::string& task, size_t n,
                                                  uint64_t seed, const std::vector<std::string>& vocabulary,
                                                  bool whole_tags) {
    const auto& tasks = generation_tasks();
    if (std::find(tasks.begin(), tasks.end(), task) == tasks.end()) throw Error("unknown task \"" + task + "\"");
    const std::set<std::string> known(vocabulary.begin(), vocabulary.end());
    std::vector<size_t> tracks;
    for (size_t t : cache.tracks_in(split))
        if (cache.track(t).length >= generate::kChunkSamples) tracks.push_back(t);
    if (tracks.size() < 2)
        throw Error(cache.dir() + ": the \"" + split + "\" split has " + std::to_string(tracks.size()) +
                    " song(s) of at least 5.12 s; the evaluation needs two (one gives the random row)");
    const uint64_t task_seed = mix_seed(mix_seed(seed, kItemDraws), task == "accompany" ? 1 : 2);
    std::vector<GenerationItem> items;
    const size_t max_tries = 200 * std::max<size_t>(n, 1);
    for (size_t attempt = 0; items.size() < n && attempt < max_tries; ++attempt) {
        Rng rng(mix_seed(task_seed, attempt));
        const size_t t = tracks[static_cast<size_t>(rng.range(0, static_cast<int64_t>(tracks.size()) - 1))];
        const int64_t offset = random_offset(cache.track(t), rng);
        std::vector<Tag> tags;
        const std::vector<int> stems = usable_stems(cache, t, offset, known, tags);
        if (stems.size() < 2) continue;
        // The units a task splits: stems, or with whole_tags the groups of stems of one tag.
        std::vector<std::vector<int>> units;
        for (int s : stems) {
            auto same = std::find_if(units.begin(), units.end(), [&](const std::vector<int>& u) {
                return whole_tags && tags[static_cast<size_t>(u[0])].name == tags[static_cast<size_t>(s)].name;
            });
            if (same == units.end()) units.push_back({s});
            else same->push_back(s);
        }
        if (units.size() < 2) continue;
        std::vector<int> in, out;
        if (task == "accompany") {
            // A non-empty proper subset: each unit in with probability 1/2, drawn again until both sides have one.
            while (in.empty() || out.empty()) {
                in.clear(), out.clear();
                for (const auto& u : units) {
                    auto& side = rng.chance(0.5) ? in : out;
                    side.insert(side.end(), u.begin(), u.end());
                }
            }
        } else {
            in = stems;
            out = units[static_cast<size_t>(rng.range(0, static_cast<int64_t>(units.size()) - 1))];
        }
        // The random row: a sub-mix of another song at a random place, among its active stems (any, if none is).
        size_t r = t;
        while (r == t) r = tracks[static_cast<size_t>(rng.range(0, static_cast<int64_t>(tracks.size()) - 1))];
        const int64_t r_offset = random_offset(cache.track(r), rng);
        std::vector<int> r_stems = cache.active_stems(r, r_offset, generate::kChunkSamples, data::ActivityRule{});
        if (r_stems.empty())
            for (size_t s = 0; s < cache.track(r).stems.size(); ++s) r_stems.push_back(static_cast<int>(s));
        std::vector<int> r_chosen;
        while (r_chosen.empty())
            for (int s : r_stems)
                if (rng.chance(0.5)) r_chosen.push_back(s);

        GenerationItem item;
        item.set = set;
        item.task = task;
        item.index = items.size();
        item.track = cache.track(t).id;
        item.random_track = cache.track(r).id;
        item.offset = offset;
        for (int s : in) item.prompt.in.push_back(tags[static_cast<size_t>(s)]);
        for (int s : out) item.prompt.out.push_back(tags[static_cast<size_t>(s)]);
        item.input = mix(cache, t, offset, in);
        for (int st : in) {
            const std::string& name = tags[static_cast<size_t>(st)].name;
            auto it = std::find_if(item.input_sources.begin(), item.input_sources.end(), [&](const auto& p) { return p.first == name; });
            const std::vector<float> one = mix(cache, t, offset, {st});
            if (it == item.input_sources.end()) item.input_sources.push_back({name, one});
            else
                for (size_t k = 0; k < one.size(); ++k) it->second[k] += one[k];
        }
        item.target = mix(cache, t, offset, out);
        item.random = mix(cache, r, r_offset, r_chosen);
        items.push_back(std::move(item));
    }
    if (items.empty())
        throw Error(cache.dir() + ": no chunk of the \"" + split + "\" split has two active stems this CompoNet knows");
    return items;
}

double si_sdr(const float* estimate, const float* reference, size_t n) {
    if (n == 0) return NAN;
    double me = 0, mr = 0;
    for (size_t i = 0; i < n; ++i) me += estimate[i], mr += reference[i];
    me /= static_cast<double>(n), mr /= static_cast<double>(n);
    double dot = 0, rr = 0;
    for (size_t i = 0; i < n; ++i) {
        const double r = reference[i] - mr;
        dot += (estimate[i] - me) * r;
        rr += r * r;
    }
    if (rr <= 0) return NAN;
    const double alpha = dot / rr;
    double target = 0, noise = 0;
    for (size_t i = 0; i < n; ++i) {
        const double s = alpha * (reference[i] - mr), e = (estimate[i] - me) - s;
        target += s * s;
        noise += e * e;
    }
    if (noise <= 0) return INFINITY;
    if (target <= 0) return -INFINITY;
    return 10 * std::log10(target / noise);
}

double level_difference_db(const std::vector<float>& audio, const std::vector<float>& reference) {
    auto energy = [](const std::vector<float>& x) {
        double e = 0;
        for (float v : x) e += static_cast<double>(v) * v;
        return e;
    };
    const double a = energy(audio), r = energy(reference);
    constexpr double kSilent = 1e-12;  // a mean square below -120 dBFS (per sample): no level to compare
    if (a < kSilent * static_cast<double>(audio.size()) || r < kSilent * static_cast<double>(reference.size())) return NAN;
    return 10.0 * std::log10((a / static_cast<double>(audio.size())) / (r / static_cast<double>(reference.size())));
}

OutputMeasures measure_output(const model::Model* judge, const GenerationItem& item, const std::vector<float>& output,
                              const model::Model* second_judge) {
    const size_t n = static_cast<size_t>(generate::kChunkSamples);
    if (output.size() != n || item.input.size() != n || item.target.size() != n)
        throw Error("measure_output: the clips must have " + std::to_string(n) + " samples");
    OutputMeasures m;
    auto score = [&](const model::Model& j, at::Tensor* output_embedding) {
        const auto emb = eval::embed_clips(j, {item.input, output}, eval::ScoreOptions{});
        for (const auto& e : emb)
            if (!e.error.empty()) throw Error("scoring an output: " + e.error);
        if (output_embedding) *output_embedding = emb[1].embeddings[0].to(at::kFloat).contiguous();
        return j.similarity_matrix(emb[0].embeddings.slice(0, 0, 1), emb[1].embeddings.slice(0, 0, 1)).item<double>();
    };
    if (judge) {
        at::Tensor e;
        m.cocola = score(*judge, &e);
        m.cocola_embedding.assign(e.data_ptr<float>(), e.data_ptr<float>() + e.numel());
    }
    if (second_judge) m.cocola2 = score(*second_judge, nullptr);
    m.log_mel_l1 = generate::log_mel_l1(output.data(), item.target.data(), n);
    m.si_sdr = si_sdr(output.data(), item.target.data(), n);
    m.level = level_difference_db(output, item.target);
    return m;
}

std::vector<GenerationRow> summarize_generation(const std::vector<MeasuredItem>& items) {
    std::vector<std::tuple<std::string, std::string, std::string>> order;
    std::map<std::tuple<std::string, std::string, std::string>, std::vector<const MeasuredItem*>> groups;
    auto add = [&](const std::tuple<std::string, std::string, std::string>& key, const MeasuredItem* it) {
        if (!groups.count(key)) order.push_back(key);
        groups[key].push_back(it);
    };
    std::set<std::string> sets;
    for (const auto& it : items) sets.insert(it.set);
    for (const auto& it : items) add({it.set, it.task, it.generator}, &it);
    if (sets.size() > 1)
        for (const auto& it : items) add({"all", it.task, it.generator}, &it);
    std::vector<GenerationRow> rows;
    for (const auto& key : order) {
        GenerationRow r;
        std::tie(r.set, r.task, r.generator) = key;
        std::vector<double> c, c2, l1, sd, lv;
        for (const MeasuredItem* it : groups[key]) {
            if (std::isfinite(it->m.cocola)) c.push_back(it->m.cocola);
            if (std::isfinite(it->m.cocola2)) c2.push_back(it->m.cocola2);
            if (std::isfinite(it->m.log_mel_l1)) l1.push_back(it->m.log_mel_l1);
            if (std::isfinite(it->m.si_sdr)) sd.push_back(it->m.si_sdr);
            if (std::isfinite(it->m.level)) lv.push_back(it->m.level);
        }
        r.items = groups[key].size();
        mean_ci(c, r.cocola, r.cocola_ci95);
        mean_ci(c2, r.cocola2, r.cocola2_ci95);
        mean_ci(l1, r.log_mel_l1, r.log_mel_l1_ci95);
        mean_ci(sd, r.si_sdr, r.si_sdr_ci95);
        mean_ci(lv, r.level, r.level_ci95);
        rows.push_back(r);
    }
    return rows;
}

std::vector<float> vae_embedding(const generate::Vae& vae, const std::vector<float>& clip) {
    torch::NoGradGuard no_grad;
    const at::Tensor z = generate::encode_audio(vae, clip)[0].to(at::kFloat);  // [C, H, W] of the first chunk
    const at::Tensor flat = z.reshape({-1, z.size(2)});
    const at::Tensor e = at::cat({flat.mean(1), flat.std(1, /*unbiased=*/false)}).contiguous();
    return std::vector<float>(e.data_ptr<float>(), e.data_ptr<float>() + e.numel());
}

DistanceRow set_distances(const std::vector<std::vector<float>>& outputs, const std::vector<std::vector<float>>& targets,
                          uint64_t seed) {
    if (outputs.size() != targets.size()) throw Error("set_distances: outputs and targets differ in number");
    DistanceRow r;
    r.items = outputs.size();
    if (outputs.size() < 3) return r;
    auto matrix = [](const std::vector<std::vector<float>>& rows) {
        const int64_t d = static_cast<int64_t>(rows[0].size());
        at::Tensor m = at::empty({static_cast<int64_t>(rows.size()), d}, at::kDouble);
        for (size_t i = 0; i < rows.size(); ++i) {
            if (static_cast<int64_t>(rows[i].size()) != d) throw Error("set_distances: embeddings of different widths");
            for (int64_t k = 0; k < d; ++k) m[static_cast<int64_t>(i)][k] = rows[i][static_cast<size_t>(k)];
        }
        return m;
    };
    const at::Tensor g = matrix(outputs), t = matrix(targets);
    r.fad = eval::fad(g, t);
    const double bandwidth = eval::median_pairwise_distance(t);
    r.kad = bandwidth > 0 ? eval::kad(g, t, bandwidth, /*paired=*/true) : NAN;
    if (outputs.size() >= 6) {
        r.fad_inf = eval::fad_inf(g, t, 6, 0, seed).value;
        const auto f = eval::bootstrap_interval(eval::SetDistance::fad, g, t, true, 200, seed);
        r.fad_low = f.low, r.fad_high = f.high;
        if (bandwidth > 0) {
            const auto k = eval::bootstrap_interval(eval::SetDistance::kad, g, t, true, 200, seed, bandwidth);
            r.kad_low = k.low, r.kad_high = k.high;
        }
    }
    return r;
}

DenoiserProbe probe_denoiser(Componet& model, const generate::Vae& vae, const std::vector<GenerationItem>& items,
                             const std::vector<int64_t>& timesteps, uint64_t seed) {
    if (model.config().is_msdm()) throw Error("the probe reads CompoNet models (an MSDM model's latent stacks its sources)");
    if (items.empty()) throw Error("the probe needs at least one item");
    torch::NoGradGuard no_grad;
    model.net().eval();
    const at::Device dev = model.device();
    std::vector<at::Tensor> targets, inputs;
    std::vector<Prompt> prompts;
    for (const auto& item : items) {
        targets.push_back(generate::encode_audio(vae, item.target).slice(0, 0, 1));
        inputs.push_back(generate::encode_audio(vae, item.input).slice(0, 0, 1));
        prompts.push_back(model.config().controlnet ? item.prompt : Prompt{{}, item.prompt.out});
    }
    const at::Tensor z0 = at::cat(targets).to(at::kFloat), w = at::cat(inputs).to(at::kFloat);
    if (z0.size(1) != model.config().latent_channels) throw Error("the VAE's latents do not have the model's channels");
    DenoiserProbe probe;
    probe.items = items.size();
    const at::Tensor prior = z0.mean({0, 2, 3}, true);
    probe.prior_rmse = (z0 - prior).pow(2).mean().sqrt().item<double>();
    probe.prior_mean_rmse = (z0.mean({2, 3}, true) - prior).pow(2).mean().sqrt().item<double>();
    const auto acp = model.alphas_cumprod();
    const int64_t n = z0.size(0), batch = 8;
    for (int64_t t : timesteps) {
        if (t < 0 || t >= model.config().diffusion_steps)
            throw Error("probe: timestep " + std::to_string(t) + " is outside 0.." + std::to_string(model.config().diffusion_steps - 1));
        at::Generator gen = at::detail::createCPUGenerator(mix_seed(seed, static_cast<uint64_t>(t)));
        const at::Tensor noise = at::randn(z0.sizes(), gen, at::kFloat);
        const double a = acp[t].item<double>();
        const at::Tensor x_t = std::sqrt(a) * z0 + std::sqrt(1 - a) * noise;
        std::vector<at::Tensor> x0s;
        for (int64_t i = 0; i < n; i += batch) {
            const int64_t e = std::min(n, i + batch);
            at::Tensor tokens, mask;
            model.tokenize(std::vector<Prompt>(prompts.begin() + i, prompts.begin() + e), tokens, mask);
            const at::Tensor xb = x_t.slice(0, i, e).to(dev);
            const at::Tensor eps = model.predict_noise(xb, at::full({e - i}, t, at::TensorOptions(at::kLong).device(dev)), tokens, mask,
                                                       model.config().controlnet ? w.slice(0, i, e).to(dev) : at::Tensor());
            x0s.push_back(((xb - std::sqrt(1 - a) * eps) / std::sqrt(a)).to(at::kCPU));
        }
        const at::Tensor x0 = at::cat(x0s);
        probe.rows.push_back({t, a, (x0 - z0).pow(2).mean().sqrt().item<double>(),
                              (x0.mean({2, 3}) - z0.mean({2, 3})).pow(2).mean().sqrt().item<double>()});
    }
    return probe;
}

}  // namespace cocola::componet
