// The Vocos-style neural vocoder (generate.hpp): ConvNeXt blocks at the frame rate -> STFT magnitude and phase ->
// inverse STFT. Also the differentiable log-mel and multi-resolution STFT loss it trains with.
#include <torch/torch.h>

#include <map>
#include <mutex>
#include <nlohmann/json.hpp>

#include "cocola/error.hpp"
#include "cocola/features.hpp"
#include "cocola/generate.hpp"
#include "cocola/safetensors.hpp"
#include "generate/generator_training.hpp"
#include "generate/mel_inverse.hpp"
#include "generate/vocoder_net.hpp"

namespace cocola::generate {

// ---------------------------------------------------------------- the Vocoder

namespace {

const char* kFormat = "cocola vocoder";

nlohmann::json config_json(const VocoderConfig& c) {
    return {{"channels", c.channels}, {"blocks", c.blocks}, {"n_fft", c.n_fft}, {"mel_mean", c.mel_mean}, {"mel_std", c.mel_std}, {"prior", c.prior},
            {"mel_matching_passes", c.mel_matching_passes}};
}

void check_config(const VocoderConfig& c, const std::string& where) {
    auto bad = [&](const std::string& what) { throw Error(where + ": " + what); };
    if (c.channels < 1 || c.channels > 4096) bad("channels must be in [1, 4096]");
    if (c.blocks < 1 || c.blocks > 64) bad("blocks must be in [1, 64]");
    if (c.n_fft < 2 * kHopSamples || c.n_fft > 4096 || c.n_fft % 2) bad("n_fft must be even, in [320, 4096]");
    if (!(std::isfinite(c.mel_mean) && std::isfinite(c.mel_std) && c.mel_std > 0)) bad("mel_std must be > 0");
    if (c.prior != "none" && c.prior != "mel-inverse") bad("prior must be none or mel-inverse, not '" + c.prior + "'");
    if (c.mel_matching_passes < 0 || c.mel_matching_passes > 64) bad("mel_matching_passes must be in [0, 64]");
}

at::Tensor hann(int64_t n, const at::Tensor& like) {
    return at::hann_window(n, at::TensorOptions().dtype(at::kFloat).device(like.device()));
}

}  // namespace

struct Vocoder::Impl {
    VocoderConfig config;
    std::shared_ptr<VocoderNet> net;
    at::Device device = at::kCPU;
};

Vocoder::Vocoder(const VocoderConfig& config, uint64_t seed) : impl_(std::make_unique<Impl>()) {
    check_config(config, "vocoder config");
    impl_->config = config;
    at::manual_seed(seed);
    impl_->net = std::make_shared<VocoderNet>(config);
}
Vocoder::~Vocoder() = default;
Vocoder::Vocoder(Vocoder&&) noexcept = default;
Vocoder& Vocoder::operator=(Vocoder&&) noexcept = default;
const VocoderConfig& Vocoder::config() const { return impl_->config; }
VocoderConfig& Vocoder::mutable_config() { return impl_->config; }
VocoderNet& Vocoder::net() { return *impl_->net; }
at::Device Vocoder::device() const { return impl_->device; }
void Vocoder::to(const at::Device& d) {
    impl_->net->to(d);
    impl_->device = d;
}
int64_t Vocoder::parameter_count() const {
    int64_t n = 0;
    for (const auto& p : impl_->net->parameters()) n += p.numel();
    return n;
}

at::Tensor Vocoder::forward(const at::Tensor& mel_db) {
    if (mel_db.dim() != 3 || mel_db.size(1) != kMelBands || mel_db.size(2) < 2)
        throw Error("vocoder: expected log-mel spectrograms [B, 64, T], got " + shape_text(mel_db.sizes()));
    const VocoderConfig& c = impl_->config;
    const int64_t T = mel_db.size(2);
    // T frames centred on samples 0, 160, ... make T * 160 samples once a last frame closes the final hop: the
    // spectrogram dropped the front-end's half-padded last frame, so the last one is repeated.
    const at::Tensor padded = at::cat({mel_db, mel_db.slice(2, T - 1, T)}, 2);
    const at::Tensor x = (padded - c.mel_mean) / c.mel_std;
    at::Tensor log_mag, phase;
    impl_->net->forward(x, log_mag, phase);
    if (c.prior == "mel-inverse")
        log_mag = log_mag + at::log(mel_inverse_magnitudes(padded, c.n_fft));
    // A cap against overflow while training: the first models learned under 100 (a sine of amplitude 0.6); the
    // prior's full-scale sines reach 160.
    const at::Tensor mag = at::exp(log_mag.clamp_max(std::log(c.prior == "none" ? 100.0 : 1000.0)));
    const at::Tensor spec = at::complex(mag * at::cos(phase), mag * at::sin(phase));
    return at::istft(spec, c.n_fft, kHopSamples, c.n_fft, hann(c.n_fft, spec), /*center=*/true, /*normalized=*/false,
                     /*onesided=*/true, T * kHopSamples, /*return_complex=*/false);
}

std::vector<float> Vocoder::vocode(const at::Tensor& mel_db) const {
    if (mel_db.dim() != 2 || mel_db.size(0) != kMelBands) throw Error("vocoder: expected a log-mel spectrogram [64, T]");
    if (!at::isfinite(mel_db).all().item<bool>()) throw Error("vocoder: the spectrogram holds NaN or Inf");
    torch::NoGradGuard no_grad;
    const bool was_training = impl_->net->is_training();
    impl_->net->eval();
    const at::Tensor mel = mel_db.to(impl_->device, at::kFloat).unsqueeze(0);
    at::Tensor y = const_cast<Vocoder*>(this)->forward(mel);
    if (impl_->config.mel_matching_passes > 0) y = match_log_mel(y, mel, impl_->config.mel_matching_passes);
    y = y[0].cpu().contiguous();
    if (was_training) impl_->net->train();
    return std::vector<float>(y.data_ptr<float>(), y.data_ptr<float>() + y.numel());
}

void Vocoder::save(const std::string& path, const std::map<std::string, std::string>& extra, bool half) const {
    save_module(*impl_->net, path, kFormat, config_json(impl_->config), extra, half);
}

Vocoder Vocoder::load(const std::string& path) {
    const auto f = safetensors::load(path);
    const auto j = module_config(f, path, kFormat, "vocoder");
    VocoderConfig c;
    try {
        c.channels = j.at("channels");
        c.blocks = j.at("blocks");
        c.n_fft = j.at("n_fft");
        c.mel_mean = j.at("mel_mean");
        c.mel_std = j.at("mel_std");
        c.prior = j.value("prior", "none");  // files written before the prior existed have none
        c.mel_matching_passes = j.value("mel_matching_passes", 0);
    } catch (const std::exception& e) {
        throw Error(path + ": malformed vocoder config in its metadata (" + e.what() + ")");
    }
    check_config(c, path);
    Vocoder v(c);
    load_module(*v.impl_->net, f, path, "vocoder");
    return v;
}

// ---------------------------------------------------------------- differentiable measures

namespace {
const at::Tensor& mel_filterbank_float() {
    static std::once_flag once;
    static at::Tensor fb;
    std::call_once(once, [] {
        const auto v = features::htk_mel_filterbank();
        fb = at::from_blob(const_cast<double*>(v.data()), {kMelBands, features::kNBins}, at::kDouble).to(at::kFloat);
    });
    return fb;
}

// |STFT|^2 [B, bins, frames] with autograd safe at zero (no square root).
at::Tensor power(const at::Tensor& audio, int64_t n_fft, int64_t hop, int64_t win) {
    const at::Tensor s = at::stft(audio, n_fft, hop, win, hann(win, audio), /*center=*/true, "reflect",
                                  /*normalized=*/false, /*onesided=*/true, /*return_complex=*/true);
    return at::view_as_real(s).pow(2).sum(-1);
}
}  // namespace

at::Tensor mel_spectrograms_differentiable(const at::Tensor& audio) {
    if (audio.dim() != 2) throw Error("mel spectrograms: expected audio [B, n]");
    const int64_t frames = audio.size(1) / kHopSamples;
    const at::Tensor p = power(audio, features::kNFft, kHopSamples, features::kWinLength);  // [B, 513, frames + 1]
    const at::Tensor mel = at::matmul(mel_filterbank_float().to(audio.device()), p);
    return (10 * at::log10(mel.clamp_min(1e-10))).slice(2, 0, frames);
}

namespace {
// What mel_inverse_magnitudes needs for one n_fft, on one device: the filterbank, its pseudo-inverse, and the
// map from the front-end's 513 bins onto n_fft / 2 + 1.
struct MelInverse {
    at::Tensor F, pinv, onto_bins;
};

MelInverse make_mel_inverse(int64_t n_fft, const at::Device& device) {
    MelInverse m;
    const at::Tensor F = mel_filterbank_float().to(at::kDouble);
    const int64_t bins = n_fft / 2 + 1, front_bins = features::kNBins;
    // Linear interpolation in frequency, times the square root of the ratio of the windows' energies (a periodic
    // Hann of N taps has sum w^2 = 3N / 8; the front-end's has 400): the least-squares fit through 64 bands is a
    // smooth spectral density, so it is scaled as broadband sound scales from one STFT to the other.
    at::Tensor onto = at::zeros({bins, front_bins}, at::kDouble);
    auto a = onto.accessor<double, 2>();
    const double gain = std::sqrt(static_cast<double>(n_fft) / features::kWinLength);
    for (int64_t k = 0; k < bins; ++k) {
        const double f = static_cast<double>(k) * static_cast<double>(features::kNFft) / static_cast<double>(n_fft);
        const int64_t j = std::min<int64_t>(static_cast<int64_t>(f), front_bins - 1);
        const double w = f - static_cast<double>(j);
        a[k][j] = (1 - w) * gain;
        if (w > 0 && j + 1 < front_bins) a[k][j + 1] = w * gain;
    }
    const auto opts = at::TensorOptions().dtype(at::kFloat).device(device);
    m.F = F.to(opts);
    m.pinv = at::linalg_pinv(F).to(opts);
    m.onto_bins = onto.to(opts);
    return m;
}
}  // namespace

at::Tensor mel_inverse_magnitudes(const at::Tensor& mel_db, int64_t n_fft) {
    if (mel_db.dim() != 3 || mel_db.size(1) != kMelBands)
        throw Error("mel-inverse magnitudes: expected log-mel spectrograms [B, 64, T], got " + shape_text(mel_db.sizes()));
    if (n_fft < 2 || n_fft % 2) throw Error("mel-inverse magnitudes: n_fft must be even");
    static std::mutex mutex;
    static std::map<std::pair<int64_t, std::string>, MelInverse> cache;
    MelInverse m;
    {
        const std::lock_guard<std::mutex> lock(mutex);
        const auto key = std::make_pair(n_fft, mel_db.device().str());
        auto it = cache.find(key);
        if (it == cache.end()) it = cache.emplace(key, make_mel_inverse(n_fft, mel_db.device())).first;
        m = it->second;
    }
    torch::NoGradGuard no_grad;
    const at::Tensor P = at::pow(10.0, mel_db.detach().to(at::kFloat).clamp(kMelFloorDb, kMelCeilingDb) / 10.0);
    // Griffin-Lim's start (mel_to_linear_magnitude) with 16 updates instead of 50: the network corrects the rest.
    // Bins no filter covers stay at the floor.
    const at::Tensor S = nnls_through_filterbank(P, m.F, m.pinv, 16, 1e-30);
    return at::matmul(m.onto_bins, S.sqrt()).clamp_min(1e-5);
}

namespace {
// The front-end's STFT (Hann window of 400 taps in 1024 points, hop 160, centred with reflection) of clips [B, n],
// frame-major [B, n / 160 + 1, 513], with its inverse. Each frame's time origin is its window's first sample instead
// of the 1024 points' centre: the same magnitudes (the shift only turns phases), and, with zeros padded before the
// transform and frames of 400 rather than 1024 points overlapped, about 4x quicker than at::stft / at::istft.
class FrontEndStft {
   public:
    FrontEndStft(int64_t n, const at::TensorOptions& options)
        : n_(n), window_(at::hann_window(features::kWinLength, options)) {
        const int64_t frames = n / kHopSamples + 1;
        envelope_ = overlap_add(window_.square().view({1, 1, features::kWinLength}).expand({1, frames, features::kWinLength}));
    }
    at::Tensor forward(const at::Tensor& audio) const {
        const at::Tensor padded = at::reflection_pad1d(audio.unsqueeze(1), {kHalf, kHalf}).squeeze(1);  // [B, n + 400]
        const at::Tensor frames = padded.unfold(1, features::kWinLength, kHopSamples) * window_;     // [B, F, 400]
        return at::fft_rfft(at::constant_pad_nd(frames, {0, features::kNFft - features::kWinLength}), c10::nullopt, 2);
    }
    at::Tensor inverse(const at::Tensor& spec) const {
        const at::Tensor frames = at::fft_irfft(spec, features::kNFft, 2).slice(2, 0, features::kWinLength) * window_;
        return (overlap_add(frames) / envelope_).slice(1, kHalf, kHalf + n_);
    }

   private:
    static constexpr int64_t kHalf = features::kWinLength / 2;
    // frames [B, F, 400] -> their sum at hop 160, [B, (F - 1) * 160 + 400]
    at::Tensor overlap_add(const at::Tensor& frames) const {
        const int64_t length = (frames.size(1) - 1) * kHopSamples + features::kWinLength;
        return at::col2im(frames.transpose(1, 2), {1, length}, {1, features::kWinLength}, {1, 1}, {0, 0}, {1, kHopSamples})
            .view({frames.size(0), length});
    }
    int64_t n_;
    at::Tensor window_, envelope_;
};
}  // namespace

at::Tensor match_log_mel(const at::Tensor& audio_in, const at::Tensor& target_db, int passes) {
    if (audio_in.dim() != 2 || target_db.dim() != 3 || target_db.size(0) != audio_in.size(0) ||
        target_db.size(1) != kMelBands || target_db.size(2) < 2 || audio_in.size(1) != target_db.size(2) * kHopSamples)
        throw Error("match log-mel: expected audio [B, T * 160] and spectrograms [B, 64, T >= 2], got " +
                    shape_text(audio_in.sizes()) + " and " + shape_text(target_db.sizes()));
    if (passes < 0) throw Error("match log-mel: passes must be >= 0");
    torch::NoGradGuard no_grad;
    // Why each band's step adapts: a gain that is smooth in time and frequency (an equaliser) is realised in full
    // by the inverse STFT, but the vocoder's errors change from frame to frame, and the overlap-add keeps only about
    // half of such a gain. So every (band, frame) starts at the measured difference and, Rprop-like, grows its step
    // by 1.5 while the difference keeps its sign and halves it when it flips (measured on the vocoder's test clips:
    // as good as the best fixed over-relaxation, 1.8, which overshoots an equaliser's error by 80% a pass). Each
    // pass's difference is clamped to 12 dB, so a silent or clipped spot cannot blow up.
    constexpr double kMaxStepDb = 12, kGrow = 1.5, kShrink = 0.5, kMinStep = 0.25, kMaxStep = 3;
    const int64_t T = target_db.size(2), n = audio_in.size(1);
    at::Tensor audio = audio_in.detach().to(at::kFloat);
    const FrontEndStft stft(n, audio.options());
    const at::Tensor target = target_db.detach().to(audio.options()).clamp(kMelFloorDb, kMelCeilingDb).transpose(1, 2);
    const at::Tensor F = mel_filterbank_float().to(audio.device());                     // [64, 513]
    const at::Tensor Ft = F.t(), onto_bins = F / F.sum(0, true).clamp_min(1e-12);        // bins no band covers get 0
    at::Tensor step = at::ones_like(target), previous;                                   // frame-major [B, T, 64]
    for (int i = 0; i < passes; ++i) {
        const at::Tensor s = stft.forward(audio);  // [B, T + 1, 513]
        // The log-mel as the front-end computes it (its T frames are the STFT's first T of T + 1).
        const at::Tensor now = 10 * at::log10(at::matmul(s.slice(1, 0, T).abs().square(), Ft).clamp_min(1e-10));
        const at::Tensor diff = (target - now).clamp(-kMaxStepDb, kMaxStepDb);
        if (i > 0) step = at::where(diff * previous > 0, step * kGrow, step * kShrink).clamp(kMinStep, kMaxStep);
        previous = diff;
        // Each bin takes the filter-weighted mean of the bands that cover it; the last frame repeats frame T - 1.
        at::Tensor gain_db = at::matmul(diff * step, onto_bins);
        gain_db = at::cat({gain_db, gain_db.slice(1, T - 1, T)}, 1);
        audio = stft.inverse(s * at::exp(gain_db * (M_LN10 / 20)));
    }
    return audio;
}

at::Tensor multi_resolution_stft_loss(const at::Tensor& audio, const at::Tensor& reference) {
    at::Tensor total = at::zeros({}, audio.options());
    const int64_t sizes[][2] = {{512, 128}, {1024, 256}, {2048, 512}};
    for (const auto& [fft, hop] : sizes) {
        const at::Tensor X = power(reference, fft, hop, fft).clamp_min(1e-7).sqrt();
        const at::Tensor Y = power(audio, fft, hop, fft).clamp_min(1e-7).sqrt();
        total = total + (X - Y).norm() / X.norm().clamp_min(1e-7) + (X.log() - Y.log()).abs().mean();
    }
    return total / 3;
}

}  // namespace cocola::generate
