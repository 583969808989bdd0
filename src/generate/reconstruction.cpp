// What resynthesis keeps: the distances of resynthesized clips to their originals and the K = 2 coherence
// accuracy of a COCOLA model when every sub-mix is resynthesized (the reconstruction table of docs/generation.md).
#include <cmath>

#include "cocola/error.hpp"
#include "cocola/generate.hpp"

namespace cocola::generate {

std::vector<float> resynthesize(const std::vector<float>& audio, const Vae* vae, const GriffinLimOptions& gl,
                                const Vocoder* vocoder) {
    const int64_t frames = static_cast<int64_t>(audio.size()) / kHopSamples;
    if (frames < 8) throw Error("resynthesis: a clip of " + std::to_string(audio.size()) + " samples is too short");
    at::Tensor mel = mel_spectrogram(audio.data(), static_cast<size_t>(frames * kHopSamples));
    if (vae) mel = decode_to_mel(*vae, encode_audio(*vae, audio)).slice(1, 0, frames).contiguous();
    std::vector<float> out = vocoder ? vocoder->vocode(mel) : griffin_lim(mel, gl);
    out.resize(audio.size(), 0.0f);
    return out;
}

namespace {
void mean_ci(const std::vector<double>& v, double& mean, double& ci95) {
    mean = ci95 = 0;
    if (v.empty()) return;
    for (double x : v) mean += x;
    mean /= static_cast<double>(v.size());
    if (v.size() < 2) return;
    double ss = 0;
    for (double x : v) ss += (x - mean) * (x - mean);
    ci95 = 1.96 * std::sqrt(ss / static_cast<double>(v.size() - 1)) / std::sqrt(static_cast<double>(v.size()));
}
}  // namespace

ReconstructionResult evaluate_reconstruction(const model::Model& model, const data::StemCache& cache,
                                             eval::EvalOptions eo, const std::string& name,
                                             const ResynthesisFn& resynth, size_t keep_examples,
                                             const eval::EvalProgress& progress) {
    ReconstructionResult r;
    r.path = name;
    std::vector<double> l1, mr;
    if (resynth) {
        eo.clip_transform = [&](float* clip, int64_t n, size_t, bool positive) {
            const std::vector<float> original(clip, clip + n);
            std::vector<float> y = resynth(original);
            if (static_cast<int64_t>(y.size()) != n) y.resize(static_cast<size_t>(n), 0.0f);
            l1.push_back(log_mel_l1(original.data(), y.data(), static_cast<size_t>(n)));
            mr.push_back(multi_resolution_stft_distance(original.data(), y.data(), static_cast<size_t>(n)));
            if (!positive && r.examples.size() < keep_examples) r.examples.push_back({original, y});
            std::copy(y.begin(), y.end(), clip);
        };
    } else if (keep_examples > 0) {
        eo.clip_transform = [&](float* clip, int64_t n, size_t, bool positive) {
            if (!positive && r.examples.size() < keep_examples) r.examples.push_back({{clip, clip + n}, {clip, clip + n}});
        };
    }
    r.k2 = eval::evaluate(model, cache, eo, progress);
    r.clips = resynth ? l1.size() : 2 * r.k2.items;
    mean_ci(l1, r.log_mel_l1, r.log_mel_l1_ci95);
    mean_ci(mr, r.mr_stft, r.mr_stft_ci95);
    return r;
}

}  // namespace cocola::generate
