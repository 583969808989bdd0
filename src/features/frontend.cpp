// STFT, the mel and hpss front-ends, and their batched, multi-threaded driver.
#include <fftw3.h>

#include <algorithm>
#include <cmath>
#include <mutex>
#include <vector>

#include "cocola/error.hpp"
#include "cocola/features.hpp"

namespace cocola::features {
namespace {

constexpr double kPi = 3.14159265358979323846;

// The element-wise loops of this file are vectorised (built for AVX-512, AVX2 and baseline x86-64, picked at run
// time; the file is compiled without errno, FP traps and multiply-add contraction, so that square roots and
// selects vectorise and no rounding is fused away) and compute exactly what scalar code does.
#if defined(__x86_64__) && !defined(__clang__)
#define COCOLA_VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
#else
#define COCOLA_VECTOR_CLONES
#endif

// acc[t] += w * row[t]: a filterbank's inner loop (multiply, then add: no fused multiply-add, so the same bits
// as scalar code).
COCOLA_VECTOR_CLONES
void add_scaled_row(const double* row, double w, int n, double* acc) {
    for (int t = 0; t < n; ++t) acc[t] += w * row[t];
}

// One FFTW plan for the whole process. Planning is not thread-safe in FFTW, execution with the new-array
// interface is, so threads share the plan and bring their own aligned buffers.
struct FftPlan {
    fftw_plan plan;
    FftPlan() {
        double* in = fftw_alloc_real(kNFft);
        fftw_complex* out = fftw_alloc_complex(kNBins);
        // FFTW_ESTIMATE, not MEASURE: a measured plan can differ between runs, and so could the last bit of
        // the features; training and resume must be reproducible.
        plan = fftw_plan_dft_r2c_1d(kNFft, in, out, FFTW_ESTIMATE);
        fftw_free(in);
        fftw_free(out);
    }
};
const FftPlan& fft_plan() {
    static std::mutex m;
    std::lock_guard<std::mutex> lock(m);
    static FftPlan p;
    return p;
}

struct FftBuffers {
    double* in = fftw_alloc_real(kNFft);
    fftw_complex* out = fftw_alloc_complex(kNBins);
    ~FftBuffers() { fftw_free(in); fftw_free(out); }
};

const std::vector<double>& hann400() {
    static const std::vector<double> w = [] {
        std::vector<double> v(kWinLength);
        for (int k = 0; k < kWinLength; ++k) v[k] = 0.5 - 0.5 * std::cos(2.0 * kPi * k / kWinLength);  // periodic
        return v;
    }();
    return w;
}

// A filterbank stored as per-filter [first, last) bin ranges: each triangle spans a few bins, so this is
// ~30x fewer multiplications than the dense [64 x 513] product.
struct SparseBank {
    std::vector<int> first, last;
    std::vector<std::vector<double>> weights;
    explicit SparseBank(const std::vector<double>& dense) {
        for (int j = 0; j < kNMels; ++j) {
            const double* row = dense.data() + static_cast<size_t>(j) * kNBins;
            int a = 0, b = kNBins;
            while (a < kNBins && row[a] == 0.0) ++a;
            while (b > a && row[b - 1] == 0.0) --b;
            first.push_back(a);
            last.push_back(b);
            weights.emplace_back(row + a, row + b);
        }
    }
    // spec is [513][T]; out is [64][T].
    template <typename Out>
    void apply(const double* spec, int T, Out* out) const {
        thread_local std::vector<double> acc;
        for (int j = 0; j < kNMels; ++j) {
            Out* o = out + static_cast<size_t>(j) * T;
            acc.assign(T, 0.0);
            for (int k = first[j]; k < last[j]; ++k)
                add_scaled_row(spec + static_cast<size_t>(k) * T, weights[j][k - first[j]], T, acc.data());
            for (int t = 0; t < T; ++t) o[t] = static_cast<Out>(acc[t]);
        }
    }
};
const SparseBank& htk_bank() { static const SparseBank b(htk_mel_filterbank()); return b; }
const SparseBank& slaney_bank() { static const SparseBank b(slaney_mel_filterbank()); return b; }

// out[k] = window[k] * x[k] for the 400 taps.
COCOLA_VECTOR_CLONES
void window_frame(const float* x, const double* window, double* out) {
    for (int k = 0; k < kWinLength; ++k) out[k] = window[k] * x[k];
}

// Runs the STFT of the clip x[0, n) frame by frame; `sample(i)` returns the padded signal at index i relative to
// the clip start (i may be negative or past the end); `emit(t, out)` receives the 513 complex bins of frame t.
template <typename Sample, typename Emit>
void stft(const float* x, size_t n, Sample sample, Emit emit) {
    const int T = num_frames(n);
    const auto& w = hann400();
    const fftw_plan plan = fft_plan().plan;
    thread_local FftBuffers buf;
    std::fill(buf.in, buf.in + kNFft, 0.0);
    for (int t = 0; t < T; ++t) {
        // Frame t covers padded samples [t*hop - n_fft/2, t*hop + n_fft/2); the 400-tap window sits in its
        // middle, at offset (1024-400)/2 = 312, i.e. clip samples t*hop - 200 ... t*hop + 199. Placing the
        // windowed samples at that same offset keeps the phase (and the rounding) of the reference.
        const long long base = static_cast<long long>(t) * kHop - kWinLength / 2;
        if (base >= 0 && base + kWinLength <= static_cast<long long>(n))
            window_frame(x + base, w.data(), buf.in + 312);  // inside the clip: no padding to look up
        else
            for (int k = 0; k < kWinLength; ++k) buf.in[312 + k] = w[k] * sample(base + k);
        fftw_execute_dft_r2c(plan, buf.in, buf.out);
        emit(t, buf.out);
    }
}

// |X| of one frame as librosa takes it: the STFT kept as complex64, the hypot of the complex64 parts evaluated
// in double and rounded once (as glibc's hypotf does).
COCOLA_VECTOR_CLONES
void complex64_magnitudes(const fftw_complex* X, float* out) {
    for (int k = 0; k < kNBins; ++k) {
        const double re = static_cast<float>(X[k][0]), im = static_cast<float>(X[k][1]);
        const double sq = re * re + im * im;
        out[k] = static_cast<float>(std::sqrt(sq));
    }
}

// librosa's soft masks (power 2) applied to the magnitudes; both medians ~0 (split_zeros): half each.
// librosa divides by max(h, p) first to keep float32 in range; in double the ratio needs no rescaling.
// `Power`: the masked magnitudes squared, in the same pass (what the mel filterbank takes next).
template <bool Power>
COCOLA_VECTOR_CLONES
void apply_soft_masks(const float* mag, const float* hm, const float* pm, size_t n, double* harmonic,
                      double* percussive) {
    constexpr float kTiny = 1.17549435e-38f;  // np.finfo(float32).tiny
    for (size_t i = 0; i < n; ++i) {
        const double h = hm[i], p = pm[i];
        const double a = h * h, b = p * p, inv = 1.0 / (a + b);
        const bool split = (hm[i] > pm[i] ? hm[i] : pm[i]) >= kTiny;
        const double mh = split ? a * inv : 0.5, mp = split ? b * inv : 0.5;
        const double hv = mag[i] * mh, pv = mag[i] * mp;
        harmonic[i] = Power ? hv * hv : hv;
        percussive[i] = Power ? pv * pv : pv;
    }
}

// The harmonic and percussive magnitudes (or powers) of a [513][T] magnitude spectrogram.
void hpss_split(const std::vector<float>& mag, int T, std::vector<double>& harmonic, std::vector<double>& percussive,
                bool power) {
    const size_t N = static_cast<size_t>(kNBins) * T;
    // Scratch reused across calls on a thread: zero-filling and first-touching megabytes per clip costs
    // about as much as the arithmetic.
    thread_local std::vector<float> hm, pm;
    hm.resize(N);
    pm.resize(N);
    median_filter(mag.data(), hm.data(), kNBins, T, kHpssKernel, 1);  // along time: harmonic reference
    median_filter(mag.data(), pm.data(), kNBins, T, kHpssKernel, 0);  // along frequency: percussive reference
    harmonic.resize(N);
    percussive.resize(N);
    if (power) apply_soft_masks<true>(mag.data(), hm.data(), pm.data(), N, harmonic.data(), percussive.data());
    else apply_soft_masks<false>(mag.data(), hm.data(), pm.data(), N, harmonic.data(), percussive.data());
}

// Collects frames and stores them bin-major ([bin][frame], the layout of the spectrograms). Storing each frame
// as it comes would touch 513 cache lines per frame; a block of 8 frames writes 8 neighbouring values per bin.
template <typename Value>
class BinMajorBlocks {
public:
    BinMajorBlocks(Value* out, int frames) : out_(out), frames_(frames) {}
    Value* frame(int t) { return block_[t % kBlock]; }  // fill it, then call done(t)
    void done(int t) {
        if (t % kBlock != kBlock - 1 && t != frames_ - 1) return;
        const int first = t - t % kBlock, count = t - first + 1;
        for (int k = 0; k < kNBins; ++k) {
            Value* o = out_ + static_cast<size_t>(k) * frames_ + first;
            for (int i = 0; i < count; ++i) o[i] = block_[i][k];
        }
    }

private:
    static constexpr int kBlock = 8;
    Value* out_;
    int frames_;
    Value block_[kBlock][kNBins];
};

void check_length(Frontend f, size_t n) {
    if (n < min_samples(f))
        throw Error("clip too short for the " + frontend_name(f) + " front-end: " + std::to_string(n) +
                    " samples, needs at least " + std::to_string(min_samples(f)));
}

void mel_features(const float* x, size_t n, float* out) {
    const int T = num_frames(n);
    auto power = torch_power_spectrogram(x, n);
    htk_bank().apply(power.data(), T, out);
    for (size_t i = 0; i < static_cast<size_t>(kNMels) * T; ++i)
        out[i] = static_cast<float>(10.0 * std::log10(std::max(static_cast<double>(out[i]), 1e-10)));
}

// librosa.power_to_db(M, ref=np.max, amin=1e-10, top_db=80) on one channel.
void power_to_db_ref_max(const std::vector<double>& mel, float* out) {
    double max_power = 0;
    for (double v : mel) max_power = std::max(max_power, v);
    const double ref_db = 10.0 * std::log10(std::max(1e-10, max_power));
    thread_local std::vector<double> db;
    db.resize(mel.size());
    double max_db = -1e300;
    for (size_t i = 0; i < mel.size(); ++i) {
        db[i] = 10.0 * std::log10(std::max(1e-10, mel[i])) - ref_db;
        max_db = std::max(max_db, db[i]);
    }
    const double floor_db = max_db - 80.0;
    for (size_t i = 0; i < mel.size(); ++i) out[i] = static_cast<float>(std::max(db[i], floor_db));
}

void hpss_features(const float* x, size_t n, float* out) {
    const int T = num_frames(n);
    auto mag = librosa_magnitude(x, n);
    thread_local std::vector<double> harm, perc, mel;
    hpss_split(mag, T, harm, perc, /*power=*/true);
    mel.resize(static_cast<size_t>(kNMels) * T);
    slaney_bank().apply(harm.data(), T, mel.data());
    power_to_db_ref_max(mel, out);
    slaney_bank().apply(perc.data(), T, mel.data());
    power_to_db_ref_max(mel, out + static_cast<size_t>(kNMels) * T);
}

}  // namespace

Frontend parse_frontend(const std::string& name) {
    if (name == "mel") return Frontend::Mel;
    if (name == "hpss") return Frontend::Hpss;
    throw Error("unknown front-end '" + name + "' (expected mel or hpss)");
}
std::string frontend_name(Frontend f) { return f == Frontend::Mel ? "mel" : "hpss"; }
int num_channels(Frontend f) { return f == Frontend::Mel ? 1 : 2; }
size_t min_samples(Frontend f) { return f == Frontend::Mel ? kNFft / 2 + 1 : 1; }

std::vector<double> torch_power_spectrogram(const float* x, size_t n) {
    const int T = num_frames(n);
    std::vector<double> power(static_cast<size_t>(kNBins) * T);
    const long long len = static_cast<long long>(n);
    // torch reflect padding: the edge sample is not repeated (x[-1] = x[1]).
    auto sample = [&](long long i) -> double {
        if (i < 0) i = -i;
        if (i >= len) i = 2 * (len - 1) - i;
        return x[i];
    };
    BinMajorBlocks<double> blocks(power.data(), T);
    stft(x, n, sample, [&](int t, const fftw_complex* X) {
        double* f = blocks.frame(t);
        for (int k = 0; k < kNBins; ++k) f[k] = X[k][0] * X[k][0] + X[k][1] * X[k][1];
        blocks.done(t);
    });
    return power;
}

std::vector<float> librosa_magnitude(const float* x, size_t n) {
    const int T = num_frames(n);
    std::vector<float> mag(static_cast<size_t>(kNBins) * T);
    const long long len = static_cast<long long>(n);
    auto sample = [&](long long i) -> double { return (i < 0 || i >= len) ? 0.0 : x[i]; };
    BinMajorBlocks<float> blocks(mag.data(), T);
    stft(x, n, sample, [&](int t, const fftw_complex* X) {
        // librosa keeps the STFT as complex64; |D| is then taken in float32.
        complex64_magnitudes(X, blocks.frame(t));
        blocks.done(t);
    });
    return mag;
}

void hpss_magnitudes(const std::vector<float>& mag, int T, std::vector<double>& harmonic,
                     std::vector<double>& percussive) {
    hpss_split(mag, T, harmonic, percussive, /*power=*/false);
}

std::vector<float> compute(Frontend f, const float* x, size_t n) {
    check_length(f, n);
    std::vector<float> out(static_cast<size_t>(num_channels(f)) * kNMels * num_frames(n));
    if (f == Frontend::Mel) mel_features(x, n, out.data());
    else hpss_features(x, n, out.data());
    return out;
}

void compute_batch(Frontend f, const std::vector<const float*>& clips, size_t n, float* out) {
    check_length(f, n);
    const size_t per_clip = static_cast<size_t>(num_channels(f)) * kNMels * num_frames(n);
    const int B = static_cast<int>(clips.size());
#pragma omp parallel for schedule(dynamic, 1) if (B > 1)
    for (int b = 0; b < B; ++b) {
        if (f == Frontend::Mel) mel_features(clips[b], n, out + per_clip * b);
        else hpss_features(clips[b], n, out + per_clip * b);
    }
}

}  // namespace cocola::features
