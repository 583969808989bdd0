// Tensor versions of the mel and hpss front-ends (see frontend_torch.hpp for why). Every stage mirrors its
// CPU counterpart in frontend.cpp; the comments there say why each is the way it is.
#include "features/frontend_torch.hpp"

#include <cmath>
#include <mutex>
#include <string>
#include <vector>

#include "cocola/error.hpp"

namespace cocola::features {
namespace {

constexpr double kPi = 3.14159265358979323846;
constexpr int kWindowOffset = (kNFft - kWinLength) / 2;  // 312: where the 400 taps sit in the 1024-sample frame

at::Tensor from_doubles(const std::vector<double>& v, at::IntArrayRef sizes) {
    return at::from_blob(const_cast<double*>(v.data()), sizes, at::kDouble).clone();
}

// [400, 2 * 513]: the windowed real DFT of a frame as one product, real parts then imaginary parts. Frame t's
// taps are clip samples t*hop - 200 ... t*hop + 199, at offset 312 of the 1024-point frame (as FFTW sees them).
const at::Tensor& dft_basis_cpu() {
    static std::once_flag once;
    static at::Tensor basis;
    std::call_once(once, [] {
        std::vector<double> b(static_cast<size_t>(kWinLength) * 2 * kNBins);
        for (int j = 0; j < kWinLength; ++j) {
            const double w = 0.5 - 0.5 * std::cos(2.0 * kPi * j / kWinLength);  // periodic Hann
            for (int k = 0; k < kNBins; ++k) {
                // Reduce k * m mod N in integers first: the angle stays exact for every bin.
                const long long km = (static_cast<long long>(k) * (kWindowOffset + j)) % kNFft;
                const double a = 2.0 * kPi * static_cast<double>(km) / kNFft;
                b[static_cast<size_t>(j) * 2 * kNBins + k] = w * std::cos(a);
                b[static_cast<size_t>(j) * 2 * kNBins + kNBins + k] = -w * std::sin(a);
            }
        }
        basis = from_doubles(b, {kWinLength, 2 * kNBins});
    });
    return basis;
}

const at::Tensor& filterbank_cpu(Frontend f) {
    static std::once_flag once;
    static at::Tensor htk, slaney;
    std::call_once(once, [] {
        htk = from_doubles(htk_mel_filterbank(), {kNMels, kNBins});
        slaney = from_doubles(slaney_mel_filterbank(), {kNMels, kNBins});
    });
    return f == Frontend::Mel ? htk : slaney;
}

// Index of the source sample for every padded position -200 ... (T-1)*hop + 199 of a clip of n samples.
//   reflect (torch.stft): x[-i] = x[i], the edge sample not repeated;  zero (librosa): outside is 0.
at::Tensor padded_signal(const at::Tensor& x, bool reflect) {
    const int64_t n = x.size(1), T = num_frames(static_cast<size_t>(n));
    const int64_t len = (T - 1) * kHop + kWinLength;
    std::vector<int64_t> idx(static_cast<size_t>(len));
    std::vector<float> keep(static_cast<size_t>(len), 1.0f);
    for (int64_t p = 0; p < len; ++p) {
        int64_t i = p - kWinLength / 2;
        if (reflect) {
            if (i < 0) i = -i;
            if (i >= n) i = 2 * (n - 1) - i;
        } else if (i < 0 || i >= n) {
            keep[static_cast<size_t>(p)] = 0.0f;
            i = 0;
        }
        idx[static_cast<size_t>(p)] = i;
    }
    const auto dev = x.device();
    at::Tensor index = at::from_blob(idx.data(), {len}, at::kLong).clone().to(dev);
    at::Tensor out = x.index_select(1, index);
    if (!reflect) out = out * at::from_blob(keep.data(), {len}, at::kFloat).clone().to(dev);
    return out;
}

// Real and imaginary parts [B, T, 513] (float64) of the STFT of clips [B, n].
void stft(const at::Tensor& clips, bool reflect, at::Tensor& re, at::Tensor& im) {
    const at::Tensor frames = padded_signal(clips, reflect).to(at::kDouble).unfold(1, kWinLength, kHop);  // [B,T,400]
    const at::Tensor spec = at::matmul(frames, dft_basis_cpu().to(clips.device()));                        // [B,T,1026]
    re = spec.narrow(2, 0, kNBins);
    im = spec.narrow(2, kNBins, kNBins);
}

// scipy.ndimage.median_filter(size=31, mode='reflect') of m [B, 513, T] along dim 1 (frequency) or 2 (time):
// the borders mirror with the edge repeated (d c b a | a b c d). Processed a few clips at a time: the unfolded
// windows are 31 times the input.
at::Tensor median_filter(const at::Tensor& m, int64_t dim) {
    const int64_t len = m.size(dim), half = kHpssKernel / 2;
    std::vector<int64_t> idx(static_cast<size_t>(len + 2 * half));
    for (int64_t p = 0; p < len + 2 * half; ++p) {
        int64_t i = p - half;
        if (i < 0) i = -i - 1;
        if (i >= len) i = 2 * len - 1 - i;
        idx[static_cast<size_t>(p)] = i;
    }
    const at::Tensor index = at::from_blob(idx.data(), {len + 2 * half}, at::kLong).clone().to(m.device());
    std::vector<at::Tensor> parts;
    for (int64_t b = 0; b < m.size(0); b += 8) {
        const at::Tensor chunk = m.narrow(0, b, std::min<int64_t>(8, m.size(0) - b)).index_select(dim, index);
        parts.push_back(std::get<0>(at::median(chunk.unfold(dim, kHpssKernel, 1), -1)));
    }
    return at::cat(parts, 0);
}

// librosa.power_to_db(M, ref=np.max, amin=1e-10, top_db=80) of every [64, T] plane of mel [B, 64, T].
at::Tensor power_to_db_ref_max(const at::Tensor& mel) {
    const at::Tensor peak = std::get<0>(mel.flatten(1).max(1)).clamp_min(1e-10).view({-1, 1, 1});
    const at::Tensor db = 10.0 * at::log10(mel.clamp_min(1e-10)) - 10.0 * at::log10(peak);
    const at::Tensor floor_db = std::get<0>(db.flatten(1).max(1)).view({-1, 1, 1}) - 80.0;
    return at::maximum(db, floor_db);
}

at::Tensor mel_features(const at::Tensor& clips) {
    at::Tensor re, im;
    stft(clips, /*reflect=*/true, re, im);
    const at::Tensor power = (re * re + im * im).transpose(1, 2);                          // [B, 513, T]
    const at::Tensor mel = at::matmul(filterbank_cpu(Frontend::Mel).to(clips.device()), power);  // [B, 64, T]
    return (10.0 * at::log10(mel.clamp_min(1e-10))).to(at::kFloat).unsqueeze(1);
}

at::Tensor hpss_features(const at::Tensor& clips) {
    at::Tensor re, im;
    stft(clips, /*reflect=*/false, re, im);
    // librosa keeps the STFT as complex64 and takes |D| in float32.
    re = re.to(at::kFloat).to(at::kDouble);
    im = im.to(at::kFloat).to(at::kDouble);
    const at::Tensor mag = at::sqrt(re * re + im * im).to(at::kFloat).transpose(1, 2).contiguous();  // [B, 513, T]
    const at::Tensor h = median_filter(mag, 2).to(at::kDouble);  // along time: the harmonic reference
    const at::Tensor p = median_filter(mag, 1).to(at::kDouble);  // along frequency: the percussive reference
    constexpr double kTiny = 1.17549435e-38f;                   // np.finfo(float32).tiny
    const at::Tensor h2 = h * h, p2 = p * p;
    const at::Tensor both_zero = at::maximum(h, p) < kTiny;
    const at::Tensor mask_h = at::where(both_zero, at::full_like(h, 0.5), h2 / (h2 + p2));
    const at::Tensor mask_p = at::where(both_zero, at::full_like(h, 0.5), p2 / (h2 + p2));
    const at::Tensor m = mag.to(at::kDouble);
    const at::Tensor bank = filterbank_cpu(Frontend::Hpss).to(clips.device());
    const at::Tensor harmonic = at::matmul(bank, (m * mask_h).pow(2));
    const at::Tensor percussive = at::matmul(bank, (m * mask_p).pow(2));
    return at::stack({power_to_db_ref_max(harmonic), power_to_db_ref_max(percussive)}, 1).to(at::kFloat);
}

}  // namespace

at::Tensor compute_batch_tensor(Frontend f, const at::Tensor& clips) {
    if (clips.dim() != 2 || clips.scalar_type() != at::kFloat)
        throw Error("front-end: expected float32 clips [B, samples], got " + std::to_string(clips.dim()) + " dims");
    if (clips.size(1) < static_cast<int64_t>(min_samples(f)))
        throw Error("clip too short for the " + frontend_name(f) + " front-end: " + std::to_string(clips.size(1)) +
                    " samples, needs at least " + std::to_string(min_samples(f)));
    c10::NoGradGuard no_grad;
    const at::Tensor x = clips.contiguous();
    return f == Frontend::Mel ? mel_features(x) : hpss_features(x);
}

}  // namespace cocola::features
