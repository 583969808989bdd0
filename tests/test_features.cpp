// Per-stage parity of both front-ends against the official Python pipeline (tests/data/golden, see its README).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "cocola/audio.hpp"
#include "cocola/error.hpp"
#include "cocola/features.hpp"
#include "features/frontend_torch.hpp"
#include "test_util.hpp"

using namespace cocola;
using testutil::golden;

namespace {

// The mel tolerance, tiered by the reference level (the reference's own float32 FFT rounding grows as
// the bins get quieter; see debug/mel_db_f64ref_*).
double mel_tolerance(float ref_db) {
    if (ref_db > -40) return 3e-3;
    if (ref_db > -60) return 2e-2;
    if (ref_db > -80) return 0.3;
    return 2.0;
}

}  // namespace

TEST(Filterbanks, HtkMatchesTorchaudio) {
    auto ref = npy::load(golden("debug/torchaudio_melscale_fbanks_513x64.npy"));  // [513, 64]
    auto fb = features::htk_mel_filterbank();                                       // [64][513]
    ASSERT_EQ(ref.numel(), static_cast<int64_t>(fb.size()));
    double worst = 0;
    for (int k = 0; k < 513; ++k)
        for (int j = 0; j < 64; ++j) worst = std::max(worst, std::abs(ref.data[k * 64 + j] - fb[j * 513 + k]));
    // torchaudio builds the bank in float32; we replay its arithmetic (incl. ATen's 8-lane linspace), and the one
    // remaining difference is a 1-ulp pow() rounding at one mel point.
    EXPECT_LT(worst, 5e-6);
}

TEST(Filterbanks, SlaneyMatchesLibrosa) {
    auto ref = npy::load(golden("debug/librosa_mel_filterbank_64x513.npy"));
    auto fb = features::slaney_mel_filterbank();
    ASSERT_EQ(ref.numel(), static_cast<int64_t>(fb.size()));
    double worst = 0;
    for (size_t i = 0; i < fb.size(); ++i) worst = std::max(worst, std::abs(ref.data[i] - fb[i]));
    EXPECT_LT(worst, 1e-8);
}

TEST(Stages, Clip03SpectraAndHpssMagnitudes) {
    auto x = audio::load_mono(golden("inputs/03_triad_drums_mix.wav"));
    const int T = features::num_frames(x.size());
    auto power = features::torch_power_spectrogram(x.data(), x.size());
    auto ref_power = npy::load(golden("debug/clip03_torchaudio_power_spec_1x513xT.npy"));
    ASSERT_EQ(ref_power.numel(), static_cast<int64_t>(power.size()));
    for (size_t i = 0; i < power.size(); ++i)
        ASSERT_NEAR(power[i], ref_power.data[i], 1e-5 * std::max(1.0, std::abs(power[i]))) << "bin " << i;

    auto mag = features::librosa_magnitude(x.data(), x.size());
    auto ref_mag = npy::load(golden("debug/clip03_librosa_stft_mag_513xT.npy"));
    ASSERT_EQ(ref_mag.numel(), static_cast<int64_t>(mag.size()));
    for (size_t i = 0; i < mag.size(); ++i)
        ASSERT_NEAR(mag[i], ref_mag.data[i], 1e-6 * std::max(1.0f, ref_mag.data[i])) << "bin " << i;

    std::vector<double> h, p;
    features::hpss_magnitudes(mag, T, h, p);
    auto ref_h = npy::load(golden("debug/clip03_librosa_harmonic_mag_513xT.npy"));
    auto ref_p = npy::load(golden("debug/clip03_librosa_percussive_mag_513xT.npy"));
    for (size_t i = 0; i < h.size(); ++i) {
        ASSERT_NEAR(h[i], ref_h.data[i], 1e-5 * std::max(1e-3f, ref_h.data[i])) << "harmonic bin " << i;
        ASSERT_NEAR(p[i], ref_p.data[i], 1e-5 * std::max(1e-3f, ref_p.data[i])) << "percussive bin " << i;
    }
}

TEST(MedianFilter, MatchesBruteForceWithReflectBorders) {
    // Rows shorter than the window exercise repeated reflection; ties exercise equal-value removal. Size 31
    // (HPSS's, the unrolled path) on shapes that leave partial groups of 8 series and partial 8 x 8 blocks.
    struct Case { int size, rows, cols; };
    std::vector<Case> cases;
    for (int rows : {1, 3, 20})
        for (int cols : {1, 2, 7, 40}) cases.push_back({5, rows, cols});
    for (auto [rows, cols] : {std::pair{45, 53}, {17, 70}, {64, 9}, {8, 8}}) cases.push_back({31, rows, cols});
    for (const auto& [size, rows, cols] : cases) {
        const int half = size / 2;
        std::vector<float> in(rows * cols), out(in.size());
        unsigned s = 12345;
        for (auto& v : in) { s = s * 1103515245u + 12345u; v = static_cast<float>((s >> 16) % 13); }
        for (int axis : {0, 1}) {
            features::median_filter(in.data(), out.data(), rows, cols, size, axis);
            const int n = axis == 1 ? cols : rows;
            auto refl = [&](int i) { int per = 2 * n; i %= per; if (i < 0) i += per; return i < n ? i : per - 1 - i; };
            for (int r = 0; r < rows; ++r)
                for (int c = 0; c < cols; ++c) {
                    std::vector<float> w;
                    for (int d = -half; d <= half; ++d) {
                        int rr = r, cc = c;
                        (axis == 1 ? cc : rr) += d;
                        if (axis == 1) cc = refl(cc); else rr = refl(rr);
                        w.push_back(in[rr * cols + cc]);
                    }
                    std::sort(w.begin(), w.end());
                    ASSERT_EQ(out[r * cols + c], w[half]) << "size " << size << ", " << rows << "x" << cols << " axis " << axis
                                                          << " at " << r << "," << c;
                }
        }
    }
}

class GoldenClip : public ::testing::TestWithParam<std::string> {};

TEST_P(GoldenClip, MelWithinTieredTolerance) {
    auto x = audio::load_mono(golden("inputs/" + GetParam() + ".wav"));
    auto f = features::compute(features::Frontend::Mel, x.data(), x.size());
    auto ref = npy::load(golden("features/mel_db_" + GetParam() + ".npy"));
    ASSERT_EQ(ref.shape, (std::vector<int64_t>{1, 64, features::num_frames(x.size())}));
    ASSERT_EQ(ref.numel(), static_cast<int64_t>(f.size()));
    double worst_ratio = 0;
    for (size_t i = 0; i < f.size(); ++i) {
        const double err = std::abs(f[i] - ref.data[i]);
        worst_ratio = std::max(worst_ratio, err / mel_tolerance(ref.data[i]));
        ASSERT_LE(err, mel_tolerance(ref.data[i])) << "index " << i << " ref " << ref.data[i] << " ours " << f[i];
    }
    RecordProperty("worst_error_over_tolerance", std::to_string(worst_ratio));
}

TEST_P(GoldenClip, HpssWithin1e3Db) {
    auto x = audio::load_mono(golden("inputs/" + GetParam() + ".wav"));
    auto f = features::compute(features::Frontend::Hpss, x.data(), x.size());
    auto ref = npy::load(golden("features/hpss_" + GetParam() + ".npy"));
    ASSERT_EQ(ref.shape, (std::vector<int64_t>{2, 64, features::num_frames(x.size())}));
    double worst = 0;
    for (size_t i = 0; i < f.size(); ++i) worst = std::max(worst, static_cast<double>(std::abs(f[i] - ref.data[i])));
    EXPECT_LE(worst, 1e-3) << GetParam();
}

INSTANTIATE_TEST_SUITE_P(AllClips, GoldenClip, ::testing::ValuesIn(testutil::kClipsAll));

TEST(Mel, AgreesWithFloat64ReferenceTightly) {
    // Our STFT runs in float64, so against the reference's float64 run it should agree far below the
    // float32 noise, at every level above the -100 dB clamp.
    for (const auto& clip : testutil::kClips5s) {
        auto x = audio::load_mono(golden("inputs/" + clip + ".wav"));
        auto f = features::compute(features::Frontend::Mel, x.data(), x.size());
        auto ref = npy::load(golden("debug/mel_db_f64ref_" + clip + ".npy"));
        for (size_t i = 0; i < f.size(); ++i) {
            const double tol = ref.data[i] > -40 ? 1e-3 : ref.data[i] > -60 ? 5e-3 : ref.data[i] > -80 ? 2e-2 : 0.2;
            ASSERT_NEAR(f[i], ref.data[i], tol) << clip << " index " << i;
        }
    }
}

TEST(Batch, EqualsOneClipAtATime) {
    std::vector<std::vector<float>> clips;
    for (int i = 0; i < 4; ++i) clips.push_back(audio::load_mono(golden("inputs/" + testutil::kClips5s[i] + ".wav")));
    for (auto fe : {features::Frontend::Mel, features::Frontend::Hpss}) {
        std::vector<const float*> ptrs;
        for (auto& c : clips) ptrs.push_back(c.data());
        const size_t per = static_cast<size_t>(features::num_channels(fe)) * 64 * 501;
        std::vector<float> out(per * clips.size());
        features::compute_batch(fe, ptrs, clips[0].size(), out.data());
        for (size_t b = 0; b < clips.size(); ++b) {
            auto one = features::compute(fe, clips[b].data(), clips[b].size());
            for (size_t i = 0; i < per; ++i) ASSERT_EQ(out[b * per + i], one[i]);
        }
    }
}

// The tensor front-end (for training on a GPU) against the FFTW one, on four golden clips plus a silent one
// and a 1 kHz tone: the same features up to float rounding, and within the same tolerance of the reference.
TEST(TensorFrontend, EqualsTheCpuFrontEnd) {
    std::vector<std::vector<float>> clips;
    for (int i = 0; i < 4; ++i) clips.push_back(audio::load_mono(golden("inputs/" + testutil::kClips5s[i] + ".wav")));
    const size_t n = clips[0].size();
    clips.emplace_back(n, 0.0f);
    std::vector<float> tone(n);
    for (size_t i = 0; i < n; ++i) tone[i] = 0.3f * static_cast<float>(std::sin(2 * M_PI * 1000.0 * i / 16000.0));
    clips.push_back(tone);
    at::Tensor batch = at::empty({static_cast<int64_t>(clips.size()), static_cast<int64_t>(n)}, at::kFloat);
    for (size_t b = 0; b < clips.size(); ++b) std::copy(clips[b].begin(), clips[b].end(), batch[b].data_ptr<float>());
    for (auto fe : {features::Frontend::Mel, features::Frontend::Hpss}) {
        std::vector<const float*> ptrs;
        for (auto& c : clips) ptrs.push_back(c.data());
        const size_t per = static_cast<size_t>(features::num_channels(fe)) * 64 * features::num_frames(n);
        std::vector<float> cpu(per * clips.size());
        features::compute_batch(fe, ptrs, n, cpu.data());
        at::Tensor t = features::compute_batch_tensor(fe, batch);
        ASSERT_EQ(t.sizes(), (std::vector<int64_t>{static_cast<int64_t>(clips.size()), features::num_channels(fe), 64,
                              features::num_frames(n)}));
        const float* got = t.contiguous().data_ptr<float>();
        double worst = 0, sum = 0;
        for (size_t i = 0; i < cpu.size(); ++i) {
            const double err = std::abs(static_cast<double>(got[i]) - cpu[i]);
            worst = std::max(worst, err);
            sum += err;
        }
        EXPECT_LE(worst, 1e-3) << features::frontend_name(fe);
        EXPECT_LE(sum / cpu.size(), 1e-5) << features::frontend_name(fe);
        RecordProperty("worst_db_" + features::frontend_name(fe), std::to_string(worst));
        if (at::hasCUDA()) {  // on a GPU machine: the device path equals the CPU tensor path
            at::Tensor g = features::compute_batch_tensor(fe, batch.to(at::kCUDA)).cpu();
            EXPECT_LE((g - t).abs().max().item<double>(), 1e-3) << features::frontend_name(fe) << " on cuda";
        }
    }
    EXPECT_THROW(features::compute_batch_tensor(features::Frontend::Mel, batch.narrow(1, 0, 300)), cocola::Error);
    EXPECT_THROW(features::compute_batch_tensor(features::Frontend::Hpss, batch[0]), cocola::Error);
}

TEST(Frontend, TooShortForMelIsAnError) {
    std::vector<float> x(300, 0.1f);
    EXPECT_THROW(features::compute(features::Frontend::Mel, x.data(), x.size()), cocola::Error);
    EXPECT_NO_THROW(features::compute(features::Frontend::Hpss, x.data(), x.size()));
}

TEST(Frontend, ParseNames) {
    EXPECT_EQ(features::parse_frontend("mel"), features::Frontend::Mel);
    EXPECT_EQ(features::parse_frontend("hpss"), features::Frontend::Hpss);
    EXPECT_THROW(features::parse_frontend("cqt"), cocola::Error);
}
