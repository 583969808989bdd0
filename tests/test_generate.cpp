// The generative half, part 1: the generator's spectrogram, Griffin-Lim, distances, the VAE (shapes, files,
// training that resumes exactly) and the commands that use them.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "cocola/audio.hpp"
#include "cocola/data.hpp"
#include "cocola/error.hpp"
#include "cocola/features.hpp"
#include "cocola/generate.hpp"
#include "cocola/model.hpp"
#include "cocola/evaluate.hpp"
#include "generate/vae_net.hpp"
#include "cocola/npy.hpp"
#include "cocola/safetensors.hpp"
#include "cocola/synth.hpp"
#include "test_util.hpp"

using namespace cocola;
namespace fs = std::filesystem;

namespace {
using testutil::log_without_time;
using testutil::read_all;

// A tone with a slow vibrato and a decaying click every half second: pitch, harmonics and onsets.
std::vector<float> test_tone(size_t n, double f0 = 220) {
    std::vector<float> x(n);
    double phase = 0;
    for (size_t i = 0; i < n; ++i) {
        const double t = static_cast<double>(i) / 16000;
        phase += 2 * M_PI * f0 * (1 + 0.01 * std::sin(2 * M_PI * 5 * t)) / 16000;
        const double click = std::exp(-std::fmod(t, 0.5) * 40) * std::sin(2 * M_PI * 2500 * t);
        x[i] = static_cast<float>(0.3 * std::sin(phase) + 0.1 * std::sin(2 * phase) + 0.2 * click);
    }
    return x;
}

generate::VaeConfig tiny_config() {
    generate::VaeConfig c;
    c.base_channels = 8;
    c.channel_mult = {1, 2, 2};
    c.latent_channels = 4;
    return c;
}

std::string song_cache() {
    static const std::string dir = testutil::procedural_song_cache("gen_data", 11);
    return dir;
}

generate::VaeTrainOptions tiny_training(const std::string& run, int64_t steps) {
    generate::VaeTrainOptions o;
    o.caches = {song_cache()};
    o.run_dir = run;
    o.steps = steps;
    o.batch = 2;
    o.crop_frames = 32;
    o.base_channels = 8;
    o.channel_mult = {1, 2, 2};
    o.latent_channels = 4;
    o.lr = 1e-3;
    o.warmup_steps = 2;
    o.val_every = 3;
    o.val_chunks = 2;
    o.checkpoint_every = 2;
    o.ema_decay = 0.9;
    o.seed = 4;
    return o;
}

}  // namespace

TEST(Generate, MelSpectrogramOfAChunkIs64By512AndDropsTheHalfPaddedLastFrame) {
    const auto x = test_tone(generate::kChunkSamples);
    const at::Tensor mel = generate::mel_spectrogram(x.data(), x.size());
    EXPECT_EQ(mel.sizes(), (at::IntArrayRef{64, 512}));
    const at::Tensor batch = generate::mel_spectrograms(at::from_blob(const_cast<float*>(x.data()), {1, generate::kChunkSamples}, at::kFloat));
    EXPECT_TRUE(at::equal(batch[0], mel));
    EXPECT_THROW(generate::mel_spectrogram(x.data(), 100), Error);
}

TEST(Generate, MelToLinearFitsTheMelPowersItCameFrom) {
    const auto x = test_tone(32000);
    const at::Tensor mel = generate::mel_spectrogram(x.data(), x.size());
    const at::Tensor mag = generate::mel_to_linear_magnitude(mel);  // [513, T]
    EXPECT_EQ(mag.size(0), 513);
    EXPECT_TRUE((mag >= 0).all().item<bool>());
    // Back through the filterbank, the fit's mel powers are within a fraction of a dB where there is energy.
    const auto fb = features::htk_mel_filterbank();
    const at::Tensor F = at::from_blob(const_cast<double*>(fb.data()), {64, 513}, at::kDouble);
    const at::Tensor again = 10 * at::log10(at::matmul(F, mag.pow(2)).clamp_min(1e-10));
    const at::Tensor loud = mel.to(at::kDouble) > -60;
    EXPECT_LT((again - mel.to(at::kDouble)).abs().masked_select(loud).mean().item<double>(), 1.0);
}

TEST(Generate, GriffinLimIterationsBringTheAudioCloserToTheSpectrogram) {
    const auto x = test_tone(48000);
    const at::Tensor mel = generate::mel_spectrogram(x.data(), x.size());
    generate::GriffinLimOptions none, some;
    none.iterations = 0;
    some.iterations = 16;
    const auto y0 = generate::griffin_lim(mel, none), y16 = generate::griffin_lim(mel, some);
    ASSERT_EQ(y16.size(), 48000u);
    const double l1_0 = generate::log_mel_l1(x.data(), y0.data(), x.size());
    const double l1_16 = generate::log_mel_l1(x.data(), y16.data(), x.size());
    EXPECT_LT(l1_16, l1_0 * 0.7) << l1_0 << " -> " << l1_16;
    EXPECT_LT(generate::multi_resolution_stft_distance(x.data(), y16.data(), x.size()),
              generate::multi_resolution_stft_distance(x.data(), y0.data(), x.size()));
    // Same seed, same audio.
    EXPECT_EQ(generate::griffin_lim(mel, some), y16);
    EXPECT_THROW(generate::griffin_lim(at::zeros({3, 10}), some), Error);
}

TEST(Generate, SpectrogramsNoAudioCanHaveAreClampedToAudiblesRangeBeforeVocoding) {
    // A decoder overshooting to hundreds of dB (seen from the VAE on silent chunks) gave audio of 1e15 and an
    // infinite log-mel distance; clamped at kMelCeilingDb the audio stays finite and bounded.
    generate::GriffinLimOptions gl;
    gl.iterations = 4;
    const at::Tensor wild = at::full({64, 200}, 400.0f);
    const auto y = generate::griffin_lim(wild, gl);
    const auto ceiling = generate::griffin_lim(at::full({64, 200}, static_cast<float>(generate::kMelCeilingDb)), gl);
    EXPECT_EQ(y, ceiling);
    double peak = 0;
    for (float v : y) {
        ASSERT_TRUE(std::isfinite(v));
        peak = std::max(peak, static_cast<double>(std::abs(v)));
    }
    EXPECT_LT(peak, 1e3);
    EXPECT_TRUE(std::isfinite(generate::log_mel_l1(y.data(), test_tone(y.size()).data(), y.size())));
    // Below the front-end's floor is the floor.
    EXPECT_TRUE(at::equal(generate::mel_to_linear_magnitude(at::full({64, 20}, -300.0f)),
                          generate::mel_to_linear_magnitude(at::full({64, 20}, static_cast<float>(generate::kMelFloorDb)))));
}

TEST(Generate, DistancesAreZeroForIdenticalClipsAndGrowWithTheDifference) {
    const auto x = test_tone(16000), y = test_tone(16000, 233);
    EXPECT_EQ(generate::log_mel_l1(x.data(), x.data(), x.size()), 0.0);
    EXPECT_EQ(generate::multi_resolution_stft_distance(x.data(), x.data(), x.size()), 0.0);
    std::vector<float> quieter(x);
    for (auto& v : quieter) v *= 0.5f;
    // Half the amplitude is 6.02 dB less in every band above the floor (bands at the -100 dB floor in both stay).
    const at::Tensor mx = generate::mel_spectrogram(x.data(), x.size()), mq = generate::mel_spectrogram(quieter.data(), x.size());
    EXPECT_NEAR((mx - mq).masked_select(mx > -70).mean().item<double>(), 20 * std::log10(2.0), 0.01);
    const double l1 = generate::log_mel_l1(x.data(), quieter.data(), x.size());
    EXPECT_GT(l1, 0);
    EXPECT_LE(l1, 20 * std::log10(2.0) + 0.01);
    EXPECT_GT(generate::multi_resolution_stft_distance(x.data(), y.data(), x.size()),
              generate::multi_resolution_stft_distance(x.data(), quieter.data(), x.size()));
}

TEST(Generate, VaeShapesKlAndRoundTripOfItsLatents) {
    generate::Vae vae(tiny_config(), 1);
    const at::Tensor mel = at::randn({2, 64, 96}) * 20 - 40;
    const at::Tensor z = vae.encode(mel);
    EXPECT_EQ(z.sizes(), (at::IntArrayRef{2, 4, 16, 24}));
    const at::Tensor back = vae.decode(z);
    EXPECT_EQ(back.sizes(), mel.sizes());
    at::Tensor mean, logvar, rec;
    vae.forward(mel, mean, logvar, rec, /*sample=*/true);
    const double kl = generate::kl_divergence(mean, logvar).item<double>();
    EXPECT_TRUE(std::isfinite(kl));
    EXPECT_GE(kl, 0);
    EXPECT_NEAR(generate::kl_divergence(at::zeros({2, 4, 4, 4}), at::zeros({2, 4, 4, 4})).item<double>(), 0, 1e-12);
    EXPECT_THROW(vae.encode(at::zeros({1, 64, 30})), Error);  // frames not a multiple of 4
    EXPECT_THROW(vae.decode(at::zeros({1, 3, 16, 8})), Error);
    // Audio of any length: chunks of 5.12 s, the last padded.
    const at::Tensor za = generate::encode_audio(vae, test_tone(100000));
    EXPECT_EQ(za.sizes(), (at::IntArrayRef{2, 4, 16, 128}));
    const at::Tensor decoded = generate::decode_to_mel(vae, za);
    EXPECT_EQ(decoded.sizes(), (at::IntArrayRef{64, 1024}));
    // Whatever the decoder says, what goes on to a vocoder is a spectrogram audio can have.
    EXPECT_TRUE(at::equal(generate::decode_to_mel(vae, za * 1e4),
                          generate::decode_to_mel(vae, za * 1e4).clamp(generate::kMelFloorDb, generate::kMelCeilingDb)));
    EXPECT_LE(decoded.max().item<double>(), generate::kMelCeilingDb);
    EXPECT_GE(decoded.min().item<double>(), generate::kMelFloorDb);
}

TEST(Generate, VaeWeightsAreWrittenAndReadBackBitIdenticallyAndBadFilesAreRefusedByName) {
    const std::string dir = testutil::temp_dir("gen_vae_files");
    generate::VaeConfig c = tiny_config();
    c.scale_factor = 0.37;
    c.mel_mean = -31.5;
    generate::Vae vae(c, 2);
    vae.save(dir + "/v.safetensors");
    const generate::Vae back = generate::Vae::load(dir + "/v.safetensors");
    EXPECT_EQ(back.config().scale_factor, 0.37);
    EXPECT_EQ(back.config().mel_mean, -31.5);
    const auto a = vae.net().named_parameters(), b = back.net().named_parameters();
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(at::equal(a[i].value(), b[i].value())) << a[i].key();
    const at::Tensor mel = at::randn({1, 64, 64}) * 10 - 40;
    EXPECT_TRUE(at::equal(vae.decode(vae.encode(mel)), back.decode(back.encode(mel))));
    // Half precision: half the bytes, the same decoder within float16 rounding.
    vae.save(dir + "/h.safetensors", {}, /*half=*/true);
    EXPECT_LT(fs::file_size(dir + "/h.safetensors"), fs::file_size(dir + "/v.safetensors") * 0.6);
    const generate::Vae half = generate::Vae::load(dir + "/h.safetensors");
    EXPECT_LT((half.decode(vae.encode(mel)) - vae.decode(vae.encode(mel))).abs().max().item<double>(), 0.5);

    auto refused = [&](const std::string& path, const std::string& words) {
        try {
            generate::Vae::load(path);
            ADD_FAILURE() << path << ": loaded";
        } catch (const Error& e) {
            const std::string msg = e.what();
            EXPECT_NE(msg.find(path), std::string::npos) << msg;
            EXPECT_NE(msg.find(words), std::string::npos) << msg;
        }
    };
    // Truncated.
    const std::string bytes = read_all(dir + "/v.safetensors");
    std::ofstream(dir + "/cut.safetensors", std::ios::binary) << bytes.substr(0, bytes.size() - 100);
    refused(dir + "/cut.safetensors", "");
    // Another kind of model.
    refused(testutil::golden("models/cocola_mel_seed0.safetensors"), "not a cocola vae");
    // The right format, the wrong tensors for its config.
    auto f = safetensors::load(dir + "/v.safetensors");
    f.tensors.pop_back();
    safetensors::save(dir + "/missing.safetensors", f.tensors, f.metadata);
    refused(dir + "/missing.safetensors", "missing tensor");
    f.metadata["config"] = "{\"base_channels\": 8}";
    safetensors::save(dir + "/badcfg.safetensors", f.tensors, f.metadata);
    refused(dir + "/badcfg.safetensors", "config");
    refused(dir + "/none.safetensors", "");
}

TEST(Generate, VaeTrainingResumesExactlyAsAnUninterruptedRun) {
    const std::string base = testutil::temp_dir("gen_vae_resume");
    generate::train_vae(tiny_training(base + "/whole", 6), false);
    // The same run stopped after its 4th step (Ctrl-C), then resumed to 6.
    int polls = 0;
    generate::train_vae(tiny_training(base + "/parts", 6), false, {}, [&] { return ++polls == 4; });
    EXPECT_EQ(std::stoll(safetensors::load(base + "/parts/checkpoint.safetensors").metadata.at("step")), 4);
    generate::train_vae(generate::read_vae_run_options(base + "/parts"), true);
    EXPECT_EQ(log_without_time(base + "/whole"), log_without_time(base + "/parts"));
    const auto a = safetensors::load(base + "/whole/checkpoint.safetensors");
    const auto b = safetensors::load(base + "/parts/checkpoint.safetensors");
    ASSERT_EQ(a.tensors.size(), b.tensors.size());
    for (size_t i = 0; i < a.tensors.size(); ++i) {
        EXPECT_EQ(a.tensors[i].first, b.tensors[i].first);
        EXPECT_TRUE(at::equal(a.tensors[i].second, b.tensors[i].second)) << a.tensors[i].first;
    }
    // The loss is finite, the log has the VAE's own columns and validation rows, the model file loads and
    // carries a measured scale factor, and EMA state travels in the checkpoint.
    const std::string log = read_all(base + "/whole/log.csv");
    EXPECT_EQ(log.substr(0, log.find('\n')), "step,loss,l1_db,kl,grad_norm,lr,val_l1_db,val_kl,step_seconds");
    EXPECT_EQ(log.find("nan"), std::string::npos);
    EXPECT_NE(a.find("ema.encoder.conv_in.weight"), nullptr);
    const auto vae = generate::Vae::load(base + "/whole/last.safetensors");
    EXPECT_NE(vae.config().scale_factor, 1.0);
    EXPECT_TRUE(fs::exists(base + "/whole/best.safetensors"));
    EXPECT_TRUE(fs::exists(base + "/whole/curves.svg"));
    // A fresh run over an existing one is refused.
    EXPECT_THROW(generate::train_vae(tiny_training(base + "/whole", 6), false), Error);
}

TEST(Generate, CommandsTrainEncodeDecodeAndResynthesizeEndToEnd) {
    const std::string dir = testutil::temp_dir("gen_cli");
    auto r = testutil::run_cli("vae train --data " + song_cache() + " -o " + dir + "/run --steps 3 --batch 2 "
                               "--crop-frames 32 --width 8 --channel-mult 1,2,2 --latent-channels 4 --val-every 3 "
                               "--val-chunks 2");
    ASSERT_EQ(r.code, 0) << r.out;
    const std::string vae = dir + "/run/last.safetensors";
    const std::string wav = testutil::golden("inputs/x12s_full_mix.wav");
    r = testutil::run_cli("vae encode -m " + vae + " -o " + dir + " " + wav);
    ASSERT_EQ(r.code, 0) << r.out;
    const npy::Array z = npy::load(dir + "/x12s_full_mix.npy");
    EXPECT_EQ(z.shape, (std::vector<int64_t>{3, 4, 16, 128}));  // 12 s: three 5.12 s chunks
    r = testutil::run_cli("vae decode -m " + vae + " " + dir + "/x12s_full_mix.npy -o " + dir + "/mel.npy");
    ASSERT_EQ(r.code, 0) << r.out;
    EXPECT_EQ(npy::load(dir + "/mel.npy").shape, (std::vector<int64_t>{64, 1536}));
    r = testutil::run_cli("vae decode -m " + vae + " " + dir + "/x12s_full_mix.npy -o " + dir + "/dec.wav --iterations 2");
    ASSERT_EQ(r.code, 0) << r.out;
    EXPECT_EQ(audio::load_mono(dir + "/dec.wav").size(), 1536u * 160);
    r = testutil::run_cli("vae export " + vae + " -o " + dir + "/half.safetensors --half");
    ASSERT_EQ(r.code, 0) << r.out;
    for (const std::string via : {"mel", "vae"}) {
        r = testutil::run_cli("resynth " + wav + " -o " + dir + "/re_" + via + ".wav --via " + via + " --vae " + dir +
                              "/half.safetensors --iterations 4 --json");
        ASSERT_EQ(r.code, 0) << r.out;
        EXPECT_NE(r.out.find("\"log_mel_l1_db\""), std::string::npos) << r.out;
        EXPECT_NEAR(static_cast<double>(audio::load_mono(dir + "/re_" + via + ".wav").size()), 12 * 16000, 160);
    }
    r = testutil::run_cli("eval-resynth -m " + testutil::golden("models/cocola_mel_seed0.safetensors") + " --data " +
                          song_cache() + " --split train --vae " + vae + " --max-batches 1 --iterations 2 --examples 1 -o " +
                          dir + "/table");
    ASSERT_EQ(r.code, 0) << r.out;
    const std::string table = read_all(dir + "/table/reconstruction.md");
    for (const char* row : {"original audio", "mel + griffin-lim", "vae + griffin-lim"})
        EXPECT_NE(table.find(row), std::string::npos) << table;
    EXPECT_TRUE(fs::exists(dir + "/table/reconstruction.json"));
    EXPECT_TRUE(fs::exists(dir + "/table/spectrograms.svg"));
    EXPECT_TRUE(fs::exists(dir + "/table/examples/cache_0_original.wav"));
    EXPECT_TRUE(fs::exists(dir + "/table/examples/cache_0_vae.wav"));
    // Bad input: named, exit 1.
    std::ofstream(dir + "/junk.safetensors") << "not weights";
    r = testutil::run_cli("vae encode -m " + dir + "/junk.safetensors -o " + dir + " " + wav);
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.out.find("junk.safetensors"), std::string::npos) << r.out;
    std::vector<float> bad(3 * 4 * 16 * 8, std::nanf(""));
    npy::save(dir + "/nan.npy", {3, 4, 16, 8}, bad.data());
    r = testutil::run_cli("vae decode -m " + vae + " " + dir + "/nan.npy -o " + dir + "/x.npy");
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.out.find("nan.npy"), std::string::npos) << r.out;
    r = testutil::run_cli("resynth " + dir + "/junk.safetensors -o " + dir + "/x.wav");
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.out.find("junk.safetensors"), std::string::npos) << r.out;
    // --resume keeps the run's fixed options and says so.
    r = testutil::run_cli("vae train --resume " + dir + "/run --steps 4 --width 16");
    EXPECT_EQ(r.code, 0) << r.out;
    EXPECT_NE(r.out.find("--width is ignored"), std::string::npos) << r.out;
}

TEST(Generate, ReconstructionOfTheOriginalKeepsTheEvalNumbersAndResynthesisIsMeasured) {
    const auto judge = model::Model::load(testutil::golden("models/cocola_mel_seed0.safetensors"));
    const data::StemCache cache(song_cache());
    eval::EvalOptions eo;
    eo.split = "train";
    eo.max_batches = 2;
    const auto plain = eval::evaluate(judge, cache, eo);
    EXPECT_EQ(plain.batches, 2u);
    const auto same = generate::evaluate_reconstruction(judge, cache, eo, "original audio", {}, 1);
    EXPECT_EQ(same.k2.batch_accuracy, plain.batch_accuracy);
    EXPECT_EQ(same.log_mel_l1, 0);
    ASSERT_EQ(same.examples.size(), 1u);
    EXPECT_EQ(same.examples[0].first, same.examples[0].second);
    generate::GriffinLimOptions gl;
    gl.iterations = 2;
    const auto re = generate::evaluate_reconstruction(
        judge, cache, eo, "mel + griffin-lim", [&](const std::vector<float>& x) { return generate::resynthesize(x, nullptr, gl); }, 2);
    EXPECT_EQ(re.clips, 8u);  // 2 batches of K = 2, anchors and positives
    EXPECT_GT(re.log_mel_l1, 0);
    EXPECT_GT(re.mr_stft, 0);
    ASSERT_EQ(re.examples.size(), 2u);
    EXPECT_EQ(re.examples[0].first.size(), re.examples[0].second.size());
    EXPECT_NE(re.examples[0].first, re.examples[0].second);
}

TEST(Generate, SpectrogramPicturesAreWellFormedPngAndSvg) {
    const std::string dir = testutil::temp_dir("gen_pic");
    const auto x = test_tone(32000);
    const at::Tensor mel = generate::mel_spectrogram(x.data(), x.size());  // [64, 200]
    generate::write_spectrogram_png(dir + "/s.png", {mel, mel});
    const std::string png = read_all(dir + "/s.png");
    ASSERT_GT(png.size(), 33u);
    EXPECT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
    EXPECT_EQ(png.substr(12, 4), "IHDR");
    auto be32 = [&](size_t at) {
        return (static_cast<uint32_t>(static_cast<uint8_t>(png[at])) << 24) | (static_cast<uint8_t>(png[at + 1]) << 16) |
               (static_cast<uint8_t>(png[at + 2]) << 8) | static_cast<uint8_t>(png[at + 3]);
    };
    EXPECT_EQ(be32(16), 200u);              // width: one pixel per frame
    EXPECT_EQ(be32(20), 2u * 128 + 6);      // two panels of 64 bands x 2 pixels, a 6-pixel gap
    EXPECT_EQ(png.substr(png.size() - 8, 4), "IEND");
    // Raw rows (1 filter byte + 3 bytes per pixel) in stored deflate blocks: the IDAT length is known exactly.
    const size_t raw = (1 + 3 * 200) * size_t{262}, blocks = (raw + 65534) / 65535;
    EXPECT_EQ(be32(33), 2 + raw + 5 * blocks + 4);
    generate::write_spectrogram_svg(dir + "/s.svg", {{"original <x>", mel}, {"again", mel}});
    const std::string svg = read_all(dir + "/s.svg");
    EXPECT_NE(svg.find("data:image/png;base64,iVBORw0KGgo"), std::string::npos);
    EXPECT_NE(svg.find("original &lt;x&gt;"), std::string::npos);
    EXPECT_THROW(generate::write_spectrogram_png(dir + "/bad.png", {at::zeros({3, 4})}), Error);
}

TEST(Generate, DifferentiableMelEqualsTheFrontEndsAndTheLossesHaveGradients) {
    const auto x = test_tone(32000), y = test_tone(32000, 233);
    const at::Tensor a = at::from_blob(const_cast<float*>(x.data()), {1, 32000}, at::kFloat).clone();
    const at::Tensor b = at::from_blob(const_cast<float*>(y.data()), {1, 32000}, at::kFloat).clone();
    const at::Tensor reference = generate::mel_spectrograms(a);
    const at::Tensor mine = generate::mel_spectrograms_differentiable(a);
    ASSERT_EQ(mine.sizes(), reference.sizes());
    // float32 against the front-end's float64: hundredths of a dB in the quietest bands, far less on average.
    const at::Tensor diff = (mine - reference).abs().masked_select(reference > -80);
    EXPECT_LT(diff.max().item<double>(), 0.1);
    EXPECT_LT(diff.mean().item<double>(), 0.005);
    const at::Tensor w = b.clone().requires_grad_(true);
    const at::Tensor loss = generate::multi_resolution_stft_loss(w, a) + (generate::mel_spectrograms_differentiable(w) - mine).abs().mean();
    loss.backward();
    EXPECT_TRUE(at::isfinite(w.grad()).all().item<bool>());
    EXPECT_GT(w.grad().abs().sum().item<double>(), 0);
    EXPECT_NEAR(generate::multi_resolution_stft_loss(a, a).item<double>(), 0, 1e-6);
}

TEST(Generate, VocoderMakesAudioOfTheSpectrogramsLengthAndItsFilesRoundTrip) {
    generate::VocoderConfig c;
    c.channels = 16;
    c.blocks = 2;
    generate::Vocoder v(c, 3);
    const at::Tensor mel = at::randn({2, 64, 50}) * 10 - 40;
    const at::Tensor audio = v.forward(mel);
    EXPECT_EQ(audio.sizes(), (at::IntArrayRef{2, 50 * 160}));
    EXPECT_EQ(v.vocode(mel[0]).size(), 50u * 160);
    const std::string dir = testutil::temp_dir("gen_voc_files");
    v.save(dir + "/v.safetensors");
    const auto back = generate::Vocoder::load(dir + "/v.safetensors");
    EXPECT_EQ(back.vocode(mel[1]), v.vocode(mel[1]));
    EXPECT_THROW(generate::Vocoder::load(testutil::golden("models/cocola_mel_seed0.safetensors")), Error);
    EXPECT_THROW(v.vocode(at::full({64, 10}, NAN)), Error);
    EXPECT_THROW(v.vocode(at::zeros({3, 10})), Error);
}

TEST(Generate, MelInverseMagnitudesMatchTheLevelOfBroadbandSoundOnTheVocodersBins) {
    // White noise: its log-mel, back through the filterbank onto a 640-point STFT, against that STFT's own power
    // per bin, over the bins the filters cover (100 Hz to 7.5 kHz). A wrong window gain or a shifted bin map
    // moves the ratio by decibels; the fit itself is exact to a fraction of one.
    at::manual_seed(5);
    const at::Tensor noise = at::randn({1, 16000}) * 0.1;
    const at::Tensor mel = generate::mel_spectrograms(noise);  // [1, 64, 100]
    const at::Tensor prior = generate::mel_inverse_magnitudes(mel, 640);
    ASSERT_EQ(prior.sizes(), (at::IntArrayRef{1, 321, 100}));
    const at::Tensor spec = at::stft(noise, 640, 160, 640, at::hann_window(640), true, "reflect", false, true, true);
    const int64_t lo = 4, hi = 300;  // bins of 25 Hz
    const double truth = spec.abs().pow(2).slice(1, lo, hi).slice(2, 0, 100).mean().item<double>();
    const double implied = prior.pow(2).slice(1, lo, hi).mean().item<double>();
    EXPECT_NEAR(10 * std::log10(implied / truth), 0.0, 1.0);
    // A louder spectrogram implies proportionally louder magnitudes; bad shapes are refused.
    const at::Tensor louder = generate::mel_inverse_magnitudes(mel + 20, 640);
    EXPECT_NEAR((louder / prior).slice(1, lo, hi).mean().item<double>(), 10.0, 0.25);
    EXPECT_THROW(generate::mel_inverse_magnitudes(at::zeros({64, 10}), 640), Error);
}

// A tiny vocoder's config with the mel-inverse prior.
static generate::VocoderConfig tiny_prior_vocoder() {
    generate::VocoderConfig c;
    c.channels = 16;
    c.blocks = 2;
    c.prior = "mel-inverse";
    return c;
}

TEST(Generate, AVocoderWithTheMelInversePriorStartsFromItsMagnitudesAndKeepsItInItsFile) {
    generate::VocoderConfig c = tiny_prior_vocoder();
    generate::Vocoder v(c, 3);
    // Untrained, its magnitudes are the prior's; the untrained net's phases disagree from frame to frame, so the
    // overlap-add cancels part of them (about 12 dB here), but it starts near the spectrogram's level where the
    // prior-less vocoder starts at magnitudes of 1e-2, far below it.
    at::manual_seed(6);
    const at::Tensor noise = at::randn({1, 8000}) * 0.1;
    const at::Tensor mel = generate::mel_spectrograms(noise);
    const double level = generate::mel_spectrograms_differentiable(noise).mean().item<double>();
    const double with_prior = generate::mel_spectrograms_differentiable(v.forward(mel).detach()).mean().item<double>();
    EXPECT_GT(with_prior, level - 16);
    EXPECT_LT(with_prior, level + 3);
    c.prior = "none";
    generate::Vocoder plain(c, 3);
    const double without = generate::mel_spectrograms_differentiable(plain.forward(mel).detach()).mean().item<double>();
    EXPECT_LT(without, with_prior - 15) << "level " << level;
    const std::string dir = testutil::temp_dir("gen_voc_prior");
    v.save(dir + "/v.safetensors");
    const auto back = generate::Vocoder::load(dir + "/v.safetensors");
    EXPECT_EQ(back.config().prior, "mel-inverse");
    EXPECT_EQ(back.vocode(mel[0]), v.vocode(mel[0]));
    c.prior = "mel-inverted";
    EXPECT_THROW(generate::Vocoder bad(c), Error);
}

TEST(Generate, MelMatchingPassesBringAMisLevelledClipsLogMelToItsTargetAndKeepItsPhases) {
    // A chord of three tones over quiet noise, and the same clip with its highs 12 dB down and its lows 6 dB up
    // (an equaliser): the passes must bring the equalised clip's log-mel back to the original's, more with each
    // pass, and leave a clip already at its target as it is.
    at::manual_seed(7);
    const int64_t n = 16000, T = n / generate::kHopSamples;
    const at::Tensor t = at::arange(n, at::kFloat) / 16000.0;
    const at::Tensor clip = (0.3 * at::sin(2 * M_PI * 220 * t) + 0.2 * at::sin(2 * M_PI * 1500 * t) +
                             0.1 * at::sin(2 * M_PI * 5000 * t) + 0.01 * at::randn({n}))
                                .unsqueeze(0);
    const at::Tensor target = generate::mel_spectrograms_differentiable(clip).detach();
    ASSERT_EQ(target.sizes(), (at::IntArrayRef{1, 64, T}));
    const at::Tensor spec = at::stft(clip, 1024, 160, 400, at::hann_window(400), true, "reflect", false, true, true);
    const at::Tensor freq = at::arange(513, at::kFloat).view({1, 513, 1}) * (8000.0 / 512);
    const at::Tensor eq = at::where(freq > 1000, at::full({}, std::pow(10.0, -12 / 20.0)), at::full({}, std::pow(10.0, 6 / 20.0)));
    const at::Tensor bent = at::istft(spec * eq, 1024, 160, 400, at::hann_window(400), true, false, true, n, false);
    auto error = [&](const at::Tensor& a) {
        return (generate::mel_spectrograms_differentiable(a) - target).abs().mean().item<double>();
    };
    const double before = error(bent), one = error(generate::match_log_mel(bent, target, 1)),
                 four = error(generate::match_log_mel(bent, target, 4));
    EXPECT_GT(before, 5.0);
    EXPECT_LT(one, before / 2) << before;
    EXPECT_LT(four, one);
    EXPECT_LT(four, 1.0) << before << " " << one;
    EXPECT_TRUE(at::equal(generate::match_log_mel(bent, target, 0), bent));
    EXPECT_LT(error(generate::match_log_mel(clip, target, 4)), 0.05);
    // The waveform stays the clip's (phases kept): after matching it correlates with the original, not just in level.
    auto correlation = [&](const at::Tensor& a) {
        return (a[0] * clip[0]).sum().item<double>() / (a[0].norm() * clip[0].norm()).item<double>();
    };
    const double bent_corr = correlation(bent), matched_corr = correlation(generate::match_log_mel(bent, target, 4));
    EXPECT_GT(matched_corr, 0.9);
    EXPECT_GT(matched_corr, bent_corr + 0.05) << bent_corr;
    EXPECT_THROW(generate::match_log_mel(bent, target.slice(2, 0, T - 1), 1), Error);
    EXPECT_THROW(generate::match_log_mel(bent, target, -1), Error);
}

TEST(Generate, AVocodersMelMatchingPassesTravelInItsFileAndApplyWhenVocoding) {
    generate::VocoderConfig c = tiny_prior_vocoder();
    generate::Vocoder v(c, 4);
    at::manual_seed(8);
    const at::Tensor noise = at::randn({1, 8000}) * 0.1;
    const at::Tensor mel = generate::mel_spectrograms(noise);
    auto l1 = [&](const std::vector<float>& y) {
        const at::Tensor a = at::from_blob(const_cast<float*>(y.data()), {1, static_cast<int64_t>(y.size())}, at::kFloat);
        return (generate::mel_spectrograms_differentiable(a) - mel).abs().mean().item<double>();
    };
    const auto plain = v.vocode(mel[0]);
    v.mutable_config().mel_matching_passes = 6;
    const auto matched = v.vocode(mel[0]);
    EXPECT_LT(l1(matched), l1(plain) / 2) << l1(plain);  // the untrained net is ~12 dB off; the passes fix the level
    const std::string dir = testutil::temp_dir("gen_voc_passes");
    v.save(dir + "/v.safetensors");
    const auto back = generate::Vocoder::load(dir + "/v.safetensors");
    EXPECT_EQ(back.config().mel_matching_passes, 6);
    EXPECT_EQ(back.vocode(mel[0]), matched);
    // `cocola vocoder export --mel-matching-passes N` rewrites the setting, the weights unchanged; out of range refused.
    auto r = testutil::run_cli("vocoder export " + dir + "/v.safetensors --mel-matching-passes 0 -o " + dir + "/none.safetensors");
    ASSERT_EQ(r.code, 0) << r.out;
    const auto none = generate::Vocoder::load(dir + "/none.safetensors");
    EXPECT_EQ(none.config().mel_matching_passes, 0);
    EXPECT_EQ(none.vocode(mel[0]), plain);
    r = testutil::run_cli("vocoder export " + dir + "/v.safetensors --mel-matching-passes 65 -o " + dir + "/bad.safetensors");
    EXPECT_NE(r.code, 0);
    EXPECT_FALSE(fs::exists(dir + "/bad.safetensors"));
    c.mel_matching_passes = 65;
    EXPECT_THROW(generate::Vocoder bad(c), Error);
}

TEST(Generate, VocoderTrainingResumesExactlyAsAnUninterruptedRun) {
    const std::string base = testutil::temp_dir("gen_voc_train");
    auto options = [&](const std::string& run) {
        generate::VocoderTrainOptions o;
        o.caches = {song_cache()};
        o.run_dir = run;
        o.steps = 6;
        o.batch = 2;
        o.crop_frames = 32;
        o.channels = 32;
        o.blocks = 2;
        o.lr = 2e-3;
        o.warmup_steps = 0;
        o.lr_decay = "none";
        o.val_every = 3;
        o.val_chunks = 2;
        o.checkpoint_every = 2;
        o.seed = 2;
        return o;
    };
    generate::train_vocoder(options(base + "/whole"), false);
    int polls = 0;
    generate::train_vocoder(options(base + "/parts"), false, {}, [&] { return ++polls == 2; });
    generate::train_vocoder(generate::read_vocoder_run_options(base + "/parts"), true);
    EXPECT_EQ(log_without_time(base + "/whole"), log_without_time(base + "/parts"));
    const auto a = safetensors::load(base + "/whole/checkpoint.safetensors");
    const auto b = safetensors::load(base + "/parts/checkpoint.safetensors");
    ASSERT_EQ(a.tensors.size(), b.tensors.size());
    for (size_t i = 0; i < a.tensors.size(); ++i)
        EXPECT_TRUE(at::equal(a.tensors[i].second, b.tensors[i].second)) << a.tensors[i].first;
    EXPECT_NO_THROW(generate::Vocoder::load(base + "/whole/best.safetensors"));
}
