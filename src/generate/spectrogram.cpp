// The generator's spectrogram (COCOLA's mel front-end), Griffin-Lim back to audio, and distances between clips.
#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <cmath>
#include <mutex>

#include "cocola/error.hpp"
#include "cocola/features.hpp"
#include "cocola/generate.hpp"
#include "generate/mel_inverse.hpp"

namespace cocola::generate {
namespace {

// The mel front-end's STFT: n_fft 1024, periodic Hann window of 400 taps (zero-padded to 1024 and centred, as
// torch.stft does), hop 160, reflect padding.
at::Tensor stft(const at::Tensor& x, int64_t n_fft, int64_t hop, int64_t win) {
    const at::Tensor window = at::hann_window(win, at::TensorOptions().dtype(x.scalar_type()).device(x.device()));
    return at::stft(x, n_fft, hop, win, window, /*center=*/true, "reflect", /*normalized=*/false, /*onesided=*/true,
                    /*return_complex=*/true);
}

at::Tensor istft(const at::Tensor& spec, int64_t n_fft, int64_t hop, int64_t win, int64_t length) {
    const at::Tensor window = at::hann_window(win, at::TensorOptions().dtype(at::kDouble).device(spec.device()));
    return at::istft(spec, n_fft, hop, win, window, /*center=*/true, /*normalized=*/false, /*onesided=*/true, length,
                     /*return_complex=*/false);
}

const at::Tensor& mel_filterbank() {  // [64, 513] float64, the mel front-end's (HTK, 60-7800 Hz)
    static std::once_flag once;
    static at::Tensor fb;
    std::call_once(once, [] {
        const auto v = features::htk_mel_filterbank();
        fb = at::from_blob(const_cast<double*>(v.data()), {features::kNMels, features::kNBins}, at::kDouble).clone();
    });
    return fb;
}

void check_mel(const at::Tensor& mel_db, const char* what) {
    if (mel_db.dim() != 2 || mel_db.size(0) != kMelBands || mel_db.size(1) < 1)
        throw Error(std::string(what) + ": expected a log-mel spectrogram [64, frames]");
    if (!at::isfinite(mel_db).all().item<bool>()) throw Error(std::string(what) + ": the spectrogram holds NaN or Inf");
}

}  // namespace

at::Tensor mel_spectrogram(const float* samples, size_t n) {
    if (n < static_cast<size_t>(kHopSamples) || n < features::min_samples(features::Frontend::Mel))
        throw Error("mel spectrogram: a clip of " + std::to_string(n) + " samples is too short");
    const auto f = features::compute(features::Frontend::Mel, samples, n);  // [1, 64, 1 + n/160]
    const int64_t T = 1 + static_cast<int64_t>(n) / kHopSamples, keep = static_cast<int64_t>(n) / kHopSamples;
    at::Tensor all = at::from_blob(const_cast<float*>(f.data()), {kMelBands, T}, at::kFloat);
    return all.slice(1, 0, keep).clone();
}

at::Tensor mel_spectrograms(const at::Tensor& clips) {
    if (clips.dim() != 2 || clips.scalar_type() != at::kFloat) throw Error("mel spectrograms: expected float clips [B, n]");
    const at::Tensor c = clips.contiguous().cpu();
    const int64_t B = c.size(0), n = c.size(1), T = 1 + n / kHopSamples;
    if (n < static_cast<int64_t>(features::min_samples(features::Frontend::Mel)))
        throw Error("mel spectrograms: clips of " + std::to_string(n) + " samples are too short");
    std::vector<const float*> ptrs;
    for (int64_t b = 0; b < B; ++b) ptrs.push_back(c.data_ptr<float>() + b * n);
    at::Tensor out = at::empty({B, 1, kMelBands, T}, at::kFloat);
    features::compute_batch(features::Frontend::Mel, ptrs, static_cast<size_t>(n), out.data_ptr<float>());
    return out.squeeze(1).slice(2, 0, n / kHopSamples).contiguous();
}

at::Tensor mel_to_linear_magnitude(const at::Tensor& mel_db) {
    check_mel(mel_db, "mel to linear");
    torch::NoGradGuard no_grad;
    const at::Tensor& F = mel_filterbank();                               // [64, 513]
    const at::Tensor P = at::pow(10.0, mel_db.to(at::kDouble).cpu().clamp(kMelFloorDb, kMelCeilingDb) / 10.0);  // [64, T]
    // Bins no filter covers (below 60 Hz, above 7.8 kHz) stay at (nearly) zero.
    return nnls_through_filterbank(P, F, at::linalg_pinv(F), 50, 1e-20).sqrt();
}

std::vector<float> griffin_lim(const at::Tensor& mel_db, const GriffinLimOptions& o) {
    if (o.iterations < 0) throw Error("Griffin-Lim: iterations must be >= 0");
    if (!(o.momentum >= 0 && o.momentum < 1)) throw Error("Griffin-Lim: momentum must be in [0, 1)");
    torch::NoGradGuard no_grad;
    const int64_t T = mel_db.size(1), length = T * kHopSamples;
    // The STFT of `length` samples has T + 1 centred frames; the spectrogram dropped the last: repeat frame T-1.
    at::Tensor mag = mel_to_linear_magnitude(mel_db);
    mag = at::cat({mag, mag.slice(1, T - 1, T)}, 1);  // [513, T + 1]
    at::Generator gen = at::detail::createCPUGenerator(o.seed);
    at::Tensor phase = at::rand(mag.sizes(), gen, at::TensorOptions().dtype(at::kDouble)) * (2 * M_PI);
    at::Tensor angles = at::polar(at::ones_like(mag), phase);
    at::Tensor previous = at::zeros_like(angles);
    const double m = o.momentum / (1 + o.momentum);
    for (int i = 0; i < o.iterations; ++i) {
        const at::Tensor audio = istft(mag * angles, features::kNFft, kHopSamples, features::kWinLength, length);
        const at::Tensor rebuilt = stft(audio, features::kNFft, kHopSamples, features::kWinLength);
        angles = rebuilt - m * previous;
        angles = angles / (angles.abs() + 1e-16);
        previous = rebuilt;
    }
    const at::Tensor audio = istft(mag * angles, features::kNFft, kHopSamples, features::kWinLength, length).to(at::kFloat);
    return std::vector<float>(audio.data_ptr<float>(), audio.data_ptr<float>() + audio.numel());
}

double log_mel_l1(const float* a, const float* b, size_t n) {
    return (mel_spectrogram(a, n) - mel_spectrogram(b, n)).abs().mean().item<double>();
}

double multi_resolution_stft_distance(const float* a, const float* b, size_t n) {
    if (n < 2048) throw Error("multi-resolution STFT distance: clips of " + std::to_string(n) + " samples are too short");
    torch::NoGradGuard no_grad;
    const at::Tensor x = at::from_blob(const_cast<float*>(a), {static_cast<int64_t>(n)}, at::kFloat).to(at::kDouble);
    const at::Tensor y = at::from_blob(const_cast<float*>(b), {static_cast<int64_t>(n)}, at::kFloat).to(at::kDouble);
    double total = 0;
    const int64_t sizes[][2] = {{512, 128}, {1024, 256}, {2048, 512}};
    for (const auto& [fft, hop] : sizes) {
        const at::Tensor X = stft(x, fft, hop, fft).abs(), Y = stft(y, fft, hop, fft).abs();
        // Spectral convergence of b against the reference a, and the L1 of log magnitudes.
        const double sc = (X - Y).norm().item<double>() / std::max(X.norm().item<double>(), 1e-12);
        const double lm = (X.clamp_min(1e-7).log() - Y.clamp_min(1e-7).log()).abs().mean().item<double>();
        total += sc + lm;
    }
    return total / 3;
}

}  // namespace cocola::generate
