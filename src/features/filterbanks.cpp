// Mel filterbanks, computed in float64 from the same formulas the reference libraries use.
#include <cmath>
#include <vector>

#include "cocola/features.hpp"

namespace cocola::features {
namespace {

constexpr double kSr = 16000.0, kFMin = 60.0, kFMax = 7800.0;

double htk_hz_to_mel(double f) { return 2595.0 * std::log10(1.0 + f / 700.0); }

// Slaney's auditory-toolbox scale: linear below 1 kHz, logarithmic above.
constexpr double kSlaneyFSp = 200.0 / 3.0, kMinLogHz = 1000.0, kMinLogMel = kMinLogHz / kSlaneyFSp;
const double kLogStep = std::log(6.4) / 27.0;
double slaney_hz_to_mel(double f) { return f >= kMinLogHz ? kMinLogMel + std::log(f / kMinLogHz) / kLogStep : f / kSlaneyFSp; }
double slaney_mel_to_hz(double m) { return m >= kMinLogMel ? kMinLogHz * std::exp(kLogStep * (m - kMinLogMel)) : kSlaneyFSp * m; }

std::vector<double> linspace(double a, double b, int n) {
    std::vector<double> v(n);
    for (int i = 0; i < n; ++i) v[i] = n == 1 ? a : a + (b - a) * i / (n - 1);
    return v;
}

}  // namespace

std::vector<double> htk_mel_filterbank() {
    // torchaudio builds this bank in float32 (linspace, pow, divisions); its rounding reaches 4e-6 on the
    // weights, which moves quiet mel bins by up to ~2e-3 dB next to loud ones. We replay the same float32
    // arithmetic so that our features sit on the reference's bank, not a more exact one.
    auto linspace_f32 = [](float a, float b, int n) {
        std::vector<float> v(n);
        const float step = (b - a) / static_cast<float>(n - 1);
        const int half = n / 2;
        // ATen's CPU kernel fills 8-float vectors: each vector starts from a base computed from whichever end
        // is nearer (by the vector's first index), then adds step * lane.
        for (int i = 0; i < n; ++i) {
            const int i0 = i / 8 * 8, lane = i - i0;
            const float base = i0 < half ? a + step * static_cast<float>(i0) : b - step * static_cast<float>(n - i0 - 1);
            v[i] = base + step * static_cast<float>(lane);
        }
        return v;
    };
    auto freqs = linspace_f32(0.f, static_cast<float>(kSr / 2), kNBins);
    auto m = linspace_f32(static_cast<float>(htk_hz_to_mel(kFMin)), static_cast<float>(htk_hz_to_mel(kFMax)), kNMels + 2);
    std::vector<float> f(kNMels + 2);
    for (int i = 0; i < kNMels + 2; ++i) f[i] = 700.0f * (std::pow(10.0f, m[i] / 2595.0f) - 1.0f);
    std::vector<double> fb(static_cast<size_t>(kNMels) * kNBins);
    for (int j = 0; j < kNMels; ++j)
        for (int k = 0; k < kNBins; ++k) {
            const float down = (-1.0f * (f[j] - freqs[k])) / (f[j + 1] - f[j]);
            const float up = (f[j + 2] - freqs[k]) / (f[j + 2] - f[j + 1]);
            fb[static_cast<size_t>(j) * kNBins + k] = std::max(0.0f, std::min(down, up));
        }
    return fb;
}

std::vector<double> slaney_mel_filterbank() {
    auto freqs = linspace(0, kSr / 2, kNBins);
    auto m = linspace(slaney_hz_to_mel(kFMin), slaney_hz_to_mel(kFMax), kNMels + 2);
    std::vector<double> f(kNMels + 2);
    for (int i = 0; i < kNMels + 2; ++i) f[i] = slaney_mel_to_hz(m[i]);
    std::vector<double> fb(static_cast<size_t>(kNMels) * kNBins);
    for (int j = 0; j < kNMels; ++j) {
        const double enorm = 2.0 / (f[j + 2] - f[j]);  // Slaney area normalisation
        for (int k = 0; k < kNBins; ++k) {
            double lower = (freqs[k] - f[j]) / (f[j + 1] - f[j]);
            double upper = (f[j + 2] - freqs[k]) / (f[j + 2] - f[j + 1]);
            fb[static_cast<size_t>(j) * kNBins + k] = std::max(0.0, std::min(lower, upper)) * enorm;
        }
    }
    return fb;
}

}  // namespace cocola::features
