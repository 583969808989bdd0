// The generative half, part 2: CompoNet's prompts, its U-Net and ControlNet adapter (zero init, shapes),
// training that overfits and resumes exactly, deterministic DDIM, chunked generation and the generate command.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "cocola/audio.hpp"
#include "cocola/componet.hpp"
#include "cocola/data.hpp"
#include "cocola/error.hpp"
#include "cocola/generate.hpp"
#include "cocola/generation_eval.hpp"
#include "cocola/model.hpp"
#include "cocola/npy.hpp"
#include "cocola/safetensors.hpp"
#include "cocola/score.hpp"
#include "cocola/synth.hpp"
#include "generate/componet_net.hpp"
#include "test_util.hpp"

using namespace cocola;
using namespace cocola::componet;
namespace fs = std::filesystem;

namespace {
using testutil::log_without_time;
using testutil::read_all;

ComponetConfig tiny_config() {
    ComponetConfig c;
    c.latent_channels = 4;
    c.channels = {8, 16};
    c.res_blocks = 1;
    c.head_channels = 8;
    c.prompt_dim = 16;
    c.prompt_layers = 1;
    return c;
}

// Random weights everywhere (the zero-initialised layers too), so outputs depend on every path.
void scramble(torch::nn::Module& m, uint64_t seed) {
    torch::NoGradGuard no_grad;
    at::Generator g = at::detail::createCPUGenerator(seed);
    for (auto& p : m.parameters()) p.copy_(at::randn(p.sizes(), g, at::kFloat) * 0.2);
}

// A tiny random VAE (latent 4 x 16 x 128 for a chunk), written once.
std::string tiny_vae() {
    static const std::string path = [] {
        generate::VaeConfig c;
        c.base_channels = 8;
        c.channel_mult = {1, 2, 2};
        c.latent_channels = 4;
        generate::Vae vae(c, 3);
        const std::string p = testutil::temp_dir("componet_vae") + "/vae.safetensors";
        vae.save(p);
        return p;
    }();
    return path;
}

std::string song_cache() {
    static const std::string dir = testutil::procedural_song_cache("componet_data", 12);
    return dir;
}

ComponetTrainOptions tiny_training(const std::string& run, int stage, int64_t steps, const std::string& base = "",
                                   const std::string& pool = "") {
    ComponetTrainOptions o;
    o.caches = {song_cache()};
    o.run_dir = run;
    o.stage = stage;
    o.vae = tiny_vae();
    o.base = base;
    o.pool = pool;
    o.pool_size = 6;
    o.steps = steps;
    o.batch = 2;
    o.crop_frames = 64;
    o.channels = {8, 16};
    o.res_blocks = 1;
    o.prompt_dim = 16;
    o.prompt_layers = 1;
    o.lr = 1e-3;
    o.warmup_steps = 2;
    o.val_every = 3;
    o.val_chunks = 2;
    o.checkpoint_every = 2;
    o.ema_decay = 0.9;
    o.seed = 5;
    return o;
}

void expect_same_checkpoints(const std::string& a_path, const std::string& b_path) {
    const auto a = safetensors::load(a_path), b = safetensors::load(b_path);
    ASSERT_EQ(a.tensors.size(), b.tensors.size());
    for (size_t i = 0; i < a.tensors.size(); ++i) {
        EXPECT_EQ(a.tensors[i].first, b.tensors[i].first);
        EXPECT_TRUE(at::equal(a.tensors[i].second, b.tensors[i].second)) << a.tensors[i].first;
    }
}

}  // namespace

TEST(Componet, PromptsParseFormatAndRefuseWhatTheyCannotMean) {
    const auto& vocab = builtin_tags();
    const Prompt p = parse_prompt("in: Piano, chromatic_percussion; out: bass, Drums", vocab);
    ASSERT_EQ(p.in.size(), 2u);
    EXPECT_EQ(p.in[1].name, "chromatic percussion");
    ASSERT_EQ(p.out.size(), 2u);
    EXPECT_EQ(p.out[1].name, "drums");
    EXPECT_EQ(format_prompt(p), "in: piano, chromatic percussion; out: bass, drums");
    const Prompt numbered = parse_prompt("out: other_2, vocals", vocab);
    EXPECT_EQ(numbered.out[0], (Tag{"other", 2}));
    EXPECT_EQ(format_prompt(numbered), "out: other_2, vocals");
    EXPECT_EQ(format_prompt(parse_prompt(format_prompt(p), vocab)), format_prompt(p));
    EXPECT_THROW(parse_prompt("in: piano", vocab), Error);            // nothing to make
    EXPECT_THROW(parse_prompt("out: ", vocab), Error);
    EXPECT_THROW(parse_prompt("pop; in: piano; out: bass", vocab), Error);  // a genre part
    EXPECT_THROW(parse_prompt("out: bass; out: drums", vocab), Error);
    try {
        parse_prompt("in: piano; out: kazoo", vocab);
        FAIL() << "an unknown tag was accepted";
    } catch (const Error& e) {
        const std::string m = e.what();
        EXPECT_NE(m.find("kazoo"), std::string::npos) << m;
        EXPECT_NE(m.find("known tags"), std::string::npos) << m;
        EXPECT_NE(m.find("synth lead"), std::string::npos) << m;
    }
    const auto tags = tags_for_classes({"Reed", "Bass", "Reed"});
    EXPECT_EQ(tags[0], (Tag{"reed", 1}));
    EXPECT_EQ(tags[1], (Tag{"bass", 0}));
    EXPECT_EQ(tags[2], (Tag{"reed", 2}));
}

TEST(Componet, EachLevelHasItsShapeAndTheOutputTheInputs) {
    Componet m(tiny_config(), 1);
    auto& net = m.net();
    at::Tensor tokens, mask;
    m.tokenize({parse_prompt("in: piano; out: bass", m.config().vocabulary), Prompt{}}, tokens, mask);
    EXPECT_EQ(tokens.sizes(), (at::IntArrayRef{2, 4, 3}));
    EXPECT_EQ(mask.sum().item<int64_t>(), 4 + 1);
    const at::Tensor x = at::randn({2, 4, 16, 128});
    const at::Tensor t = at::tensor({3, 900}, at::kLong);
    const auto o = net.encoder->forward(x, t, net.prompt->forward(tokens, mask), mask);
    // conv_in, the level-0 block, the downsampling, the level-1 block
    ASSERT_EQ(o.skips.size(), 4u);
    EXPECT_EQ(o.skips[0].sizes(), (at::IntArrayRef{2, 8, 16, 128}));
    EXPECT_EQ(o.skips[1].sizes(), (at::IntArrayRef{2, 8, 16, 128}));
    EXPECT_EQ(o.skips[2].sizes(), (at::IntArrayRef{2, 8, 8, 64}));
    EXPECT_EQ(o.skips[3].sizes(), (at::IntArrayRef{2, 16, 8, 64}));
    EXPECT_EQ(o.middle.sizes(), (at::IntArrayRef{2, 16, 8, 64}));
    EXPECT_EQ(m.predict_noise(x, t, tokens, mask).sizes(), x.sizes());
    // crops: any width the downsampling divides
    EXPECT_EQ(m.predict_noise(x.slice(3, 0, 32), t, tokens, mask).sizes(), (at::IntArrayRef{2, 4, 16, 32}));
}

TEST(Componet, TheAdapterChangesNothingAtStepZeroAndSomethingOnceTrained) {
    Componet m(tiny_config(), 2);
    scramble(m.net(), 7);
    at::Tensor tokens, mask;
    m.tokenize({parse_prompt("in: piano; out: bass, drums", m.config().vocabulary)}, tokens, mask);
    const at::Tensor x = at::randn({1, 4, 16, 64}), w = at::randn({1, 4, 16, 64});
    const at::Tensor t = at::tensor({500}, at::kLong);
    torch::NoGradGuard no_grad;
    m.net().eval();
    const at::Tensor base = m.predict_noise(x, t, tokens, mask);
    ASSERT_GT(base.abs().max().item<double>(), 0);
    m.add_controlnet();
    EXPECT_TRUE(m.config().controlnet);
    // the adapter's encoder is a copy of the U-Net's
    EXPECT_TRUE(at::equal(m.net().controlnet->encoder->conv_in->weight, m.net().encoder->conv_in->weight));
    EXPECT_TRUE(at::equal(m.predict_noise(x, t, tokens, mask, w), base));
    m.net().controlnet->zero_middle->weight.normal_(0, 0.1);
    EXPECT_FALSE(at::allclose(m.predict_noise(x, t, tokens, mask, w), base));
}

TEST(Componet, TheDenoiserOverfitsATinySet) {
    Componet m(tiny_config(), 3);
    at::Generator g = at::detail::createCPUGenerator(11);
    const at::Tensor z0 = at::randn({2, 4, 16, 32}, g, at::kFloat), noise = at::randn({2, 4, 16, 32}, g, at::kFloat);
    const at::Tensor t = at::tensor({100, 600}, at::kLong);
    const at::Tensor a = m.alphas_cumprod().index_select(0, t).to(at::kFloat).view({-1, 1, 1, 1});
    const at::Tensor x_t = a.sqrt() * z0 + (1 - a).sqrt() * noise;
    at::Tensor tokens, mask;
    m.tokenize({parse_prompt("out: bass", m.config().vocabulary), parse_prompt("out: drums", m.config().vocabulary)}, tokens, mask);
    torch::optim::Adam opt(m.net().parameters(), torch::optim::AdamOptions(3e-3));
    double first = 0, last = 0;
    for (int i = 0; i < 60; ++i) {
        opt.zero_grad();
        const at::Tensor loss = at::mse_loss(m.predict_noise(x_t, t, tokens, mask), noise);
        loss.backward();
        opt.step();
        (i == 0 ? first : last) = loss.item<double>();
    }
    EXPECT_NEAR(first, 1.0, 0.2);  // the zero-initialised output predicts no noise at first
    EXPECT_LT(last, 0.5 * first);
}

TEST(Componet, AVModelGivesItsNoiseThroughVAndKeepsItsKindInItsFile) {
    ComponetConfig c = tiny_config();
    c.prediction = "v";
    Componet m(c, 3);
    scramble(m.net(), 12);
    at::Generator g = at::detail::createCPUGenerator(13);
    const at::Tensor z0 = at::randn({3, 4, 16, 32}, g, at::kFloat), noise = at::randn({3, 4, 16, 32}, g, at::kFloat);
    const at::Tensor t = at::tensor({0, 500, 999}, at::kLong);
    const at::Tensor a = m.alphas_cumprod().index_select(0, t).to(at::kFloat).view({-1, 1, 1, 1});
    const at::Tensor x_t = a.sqrt() * z0 + (1 - a).sqrt() * noise;
    at::Tensor tokens, mask;
    m.tokenize({Prompt{}, Prompt{}, Prompt{}}, tokens, mask);
    torch::NoGradGuard no_grad;
    // the noise is read from the network's v
    const at::Tensor v = m.predict(x_t, t, tokens, mask);
    EXPECT_TRUE(at::allclose(m.predict_noise(x_t, t, tokens, mask), a.sqrt() * v + (1 - a).sqrt() * x_t, 1e-5, 1e-5));
    // the target: a network that outputs it exactly gives the true noise, and x0 = sqrt(a) x_t - sqrt(1 - a) v
    const at::Tensor target = m.prediction_target(z0, noise, t);
    EXPECT_TRUE(at::allclose(a.sqrt() * target + (1 - a).sqrt() * x_t, noise, 1e-4, 1e-4));
    EXPECT_TRUE(at::allclose(a.sqrt() * x_t - (1 - a).sqrt() * target, z0, 1e-4, 1e-4));
    // at the top of the schedule v is nearly -x0 (sqrt(a) = 0.012), at the bottom nearly the noise (sqrt(1 - a) = 0.039)
    EXPECT_LT((target[2] + z0[2]).abs().max().item<double>(), 0.012 * 6);
    EXPECT_LT((target[0] - noise[0]).abs().max().item<double>(), 0.039 * 6);
    // an epsilon model outputs the noise itself
    Componet e(tiny_config(), 3);
    scramble(e.net(), 12);
    EXPECT_TRUE(at::equal(e.predict_noise(x_t, t, tokens, mask), e.predict(x_t, t, tokens, mask)));
    EXPECT_TRUE(at::equal(e.prediction_target(z0, noise, t), noise));
    // the kind travels in the file; a file without it is an epsilon model; anything else is refused
    const std::string dir = testutil::temp_dir("componet_v");
    m.save(dir + "/v.safetensors");
    const Componet back = Componet::load(dir + "/v.safetensors");
    EXPECT_EQ(back.config().prediction, "v");
    nlohmann::json j = config_to_json(c);
    j.erase("prediction");
    EXPECT_EQ(config_from_json(j).prediction, "epsilon");
    j["prediction"] = "x0";
    EXPECT_THROW(config_from_json(j), Error);
}

TEST(Componet, InitStartsAnotherPredictionFromATrainedModelsWeights) {
    const std::string base = testutil::temp_dir("componet_init");
    const std::string pool = base + "/e1/pool.safetensors";
    train_componet(tiny_training(base + "/e1", 1, 2), false);
    train_componet(tiny_training(base + "/e2", 2, 2, base + "/e1/last.safetensors", pool), false);
    // an epsilon model of both stages with weights far from anything two steps of training reach
    Componet eps = Componet::load(base + "/e2/last.safetensors");
    scramble(eps.net(), 21);
    eps.save(base + "/eps.safetensors");
    auto farthest = [](const torch::nn::Module& a, const torch::nn::Module& b, const std::string& prefix) {
        auto pb = b.named_parameters();
        double d = 0;
        for (const auto& p : a.named_parameters())
            if (p.key().rfind(prefix, 0) == 0) d = std::max(d, (p.value() - pb[p.key()]).abs().max().item<double>());
        return d;
    };

    // stage 1: prompt encoder and U-Net start from the file's, the prediction is the one asked for
    ComponetTrainOptions o = tiny_training(base + "/v1", 1, 2, "", pool);
    o.prediction = "v";
    o.init = base + "/eps.safetensors";
    train_componet(o, false);
    const Componet v1 = Componet::load(base + "/v1/last.safetensors");
    EXPECT_EQ(v1.config().prediction, "v");
    EXPECT_FALSE(v1.config().controlnet);
    EXPECT_LT(farthest(v1.net(), eps.net(), "unet_"), 0.02);
    EXPECT_LT(farthest(v1.net(), eps.net(), "prompt."), 0.02);
    EXPECT_GT(farthest(Componet::load(base + "/e1/last.safetensors").net(), eps.net(), "unet_"), 0.2);  // not by chance

    // stage 2: the adapter starts from the file's, the U-Net is the base's, the prediction the base's
    ComponetTrainOptions o2 = tiny_training(base + "/v2", 2, 2, base + "/v1/last.safetensors", pool);
    o2.init = base + "/eps.safetensors";
    train_componet(o2, false);
    const Componet v2 = Componet::load(base + "/v2/last.safetensors");
    EXPECT_EQ(v2.config().prediction, "v");
    EXPECT_LT(farthest(v2.net(), eps.net(), "controlnet."), 0.02);
    EXPECT_EQ(farthest(v2.net(), v1.net(), "unet_"), 0);

    // refused: another prediction than the base's in stage 2, an adapter from a file without one, a bad kind
    ComponetTrainOptions bad = tiny_training(base + "/bad1", 2, 2, base + "/v1/last.safetensors", pool);
    bad.prediction = "epsilon";
    EXPECT_THROW(train_componet(bad, false), Error);
    bad = tiny_training(base + "/bad2", 2, 2, base + "/v1/last.safetensors", pool);
    bad.init = base + "/v1/last.safetensors";
    EXPECT_THROW(train_componet(bad, false), Error);
    bad = tiny_training(base + "/bad3", 1, 2, "", pool);
    bad.prediction = "x0";
    EXPECT_THROW(train_componet(bad, false), Error);
}

TEST(Componet, DdimIsDeterministicGivenTheSeed) {
    Componet m(tiny_config(), 4);
    scramble(m.net(), 9);
    m.add_controlnet();
    scramble(*m.net().controlnet, 10);
    const Prompt p = parse_prompt("in: mix; out: bass", m.config().vocabulary);
    const at::Tensor w = at::randn({1, 4, 16, 32});
    SampleOptions o;
    o.steps = 4;
    o.guidance = 2;
    o.seed = 3;
    const at::Tensor a = sample(m, p, w, 2, 16, 32, o), b = sample(m, p, w, 2, 16, 32, o);
    EXPECT_TRUE(at::equal(a, b));
    EXPECT_TRUE(at::isfinite(a).all().item<bool>());
    o.seed = 4;
    EXPECT_FALSE(at::allclose(a, sample(m, p, w, 2, 16, 32, o)));
    o.eta = 1;
    EXPECT_TRUE(at::equal(sample(m, p, w, 1, 16, 32, o), sample(m, p, w, 1, 16, 32, o)));
    o.steps = 0;
    EXPECT_THROW(sample(m, p, w, 1, 16, 32, o), Error);
    Componet stage1(tiny_config(), 4);
    EXPECT_THROW(sample(stage1, p, w, 1, 16, 32, SampleOptions{}), Error);  // no adapter to read the input
}

TEST(Componet, ChunksCoverTheInputAndJoinWithoutSteps) {
    EXPECT_EQ(chunk_starts(16000, 81920, 10240), (std::vector<int64_t>{0}));
    const auto starts = chunk_starts(40 * 16000, 81920, 10240);
    EXPECT_EQ(starts.size(), 9u);
    EXPECT_GE(starts.back() + 81920, 40 * 16000);
    // constant chunks join into the constant; a ramp split into chunks joins back into the ramp
    const int64_t n = 3000;
    const auto st = chunk_starts(n, 1000, 200);
    std::vector<std::vector<float>> ones, ramps;
    for (int64_t s : st) {
        ones.emplace_back(1000, 1.f);
        std::vector<float> r(1000);
        for (int64_t i = 0; i < 1000; ++i) r[static_cast<size_t>(i)] = static_cast<float>(s + i) / n;
        ramps.push_back(r);
    }
    const auto joined = join_chunks(ones, st, n), ramp = join_chunks(ramps, st, n);
    ASSERT_EQ(joined.size(), static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
        EXPECT_NEAR(joined[static_cast<size_t>(i)], 1.f, 1e-6);
        EXPECT_NEAR(ramp[static_cast<size_t>(i)], static_cast<float>(i) / n, 1e-6);
    }
}

TEST(Componet, TrainingOfBothStagesResumesExactlyAsAnUninterruptedRun) {
    const std::string base = testutil::temp_dir("componet_resume");
    train_componet(tiny_training(base + "/s1", 1, 6), false);
    int polls = 0;
    train_componet(tiny_training(base + "/s1_parts", 1, 6), false, {}, [&] { return ++polls == 4; });
    EXPECT_EQ(std::stoll(safetensors::load(base + "/s1_parts/checkpoint.safetensors").metadata.at("step")), 4);
    train_componet(read_componet_run_options(base + "/s1_parts"), true);
    EXPECT_EQ(log_without_time(base + "/s1"), log_without_time(base + "/s1_parts"));
    expect_same_checkpoints(base + "/s1/checkpoint.safetensors", base + "/s1_parts/checkpoint.safetensors");
    const std::string log = read_all(base + "/s1/log.csv");
    EXPECT_EQ(log.substr(0, log.find('\n')), "step,loss,grad_norm,lr,val_loss,step_seconds");
    EXPECT_EQ(log.find("nan"), std::string::npos);
    const Componet s1 = Componet::load(base + "/s1/last.safetensors");
    EXPECT_FALSE(s1.config().controlnet);
    EXPECT_TRUE(fs::exists(base + "/s1/pool.safetensors"));
    EXPECT_TRUE(fs::exists(base + "/s1/curves.svg"));

    // Stage 2 on the stage-1 model and its pool: the U-Net stays as it was, the adapter learns.
    const std::string pool = base + "/s1/pool.safetensors";
    train_componet(tiny_training(base + "/s2", 2, 6, base + "/s1/last.safetensors", pool), false);
    polls = 0;
    train_componet(tiny_training(base + "/s2_parts", 2, 6, base + "/s1/last.safetensors", pool), false, {},
                   [&] { return ++polls == 3; });
    train_componet(read_componet_run_options(base + "/s2_parts"), true);
    EXPECT_EQ(log_without_time(base + "/s2"), log_without_time(base + "/s2_parts"));
    expect_same_checkpoints(base + "/s2/checkpoint.safetensors", base + "/s2_parts/checkpoint.safetensors");
    const Componet s2 = Componet::load(base + "/s2/last.safetensors");
    EXPECT_TRUE(s2.config().controlnet);
    auto p1 = s1.net().encoder->named_parameters(), p2 = s2.net().encoder->named_parameters();
    for (const auto& p : p1) EXPECT_TRUE(at::equal(p.value(), p2[p.key()])) << p.key();
    EXPECT_GT(s2.net().controlnet->zero_middle->weight.abs().sum().item<double>(), 0);
    // a stage-2 run needs a stage-1 model
    EXPECT_THROW(train_componet(tiny_training(base + "/bad", 2, 2, base + "/s2/last.safetensors", pool), false), Error);
}

TEST(Componet, GenerateKeepsTheInputsLengthFromOneSecondToFortySeconds) {
    const std::string dir = testutil::temp_dir("componet_generate");
    Componet m(tiny_config(), 6);
    m.add_controlnet();
    scramble(m.net(), 12);
    const auto vae = generate::Vae::load(tiny_vae());
    GenerateOptions o;
    o.sampling.steps = 2;
    o.candidates = 2;
    o.select = "norm";
    const Prompt p = parse_prompt("in: mix; out: bass, drums", m.config().vocabulary);
    for (double seconds : {1.0, 40.0}) {
        std::vector<float> x(static_cast<size_t>(seconds * 16000));
        for (size_t i = 0; i < x.size(); ++i) x[i] = 0.3f * static_cast<float>(std::sin(2 * M_PI * 220 * static_cast<double>(i) / 16000));
        size_t chunks = 0;
        const auto g = generate_audio(m, vae, nullptr, nullptr, x, p, o, [&](size_t done, size_t) { chunks = done; });
        ASSERT_EQ(g.audio.size(), x.size()) << seconds;
        EXPECT_EQ(chunks, seconds < 5 ? 1u : 9u);
        double energy = 0;
        for (float v : g.audio) {
            ASSERT_TRUE(std::isfinite(v));
            energy += static_cast<double>(v) * v;
        }
        EXPECT_GT(energy, 0);
    }
    // The command: a model file, a prompt, the JSON summary with the COCOLA score; bad prompts and files are named.
    m.save(dir + "/componet.safetensors");
    std::vector<float> x(16000 * 2);
    for (size_t i = 0; i < x.size(); ++i) x[i] = 0.2f * static_cast<float>(std::sin(2 * M_PI * 330 * static_cast<double>(i) / 16000));
    audio::write_wav(dir + "/in.wav", x);
    const std::string common = " --model " + dir + "/componet.safetensors --vae " + tiny_vae() +
                               " --vocoder griffin-lim --steps 2 --cocola-model " +
                               testutil::golden("models/cocola_mel_seed0.safetensors");
    auto r = testutil::run_cli("generate " + dir + "/in.wav --prompt \"in: piano; out: bass\" -o " + dir + "/out.wav --json" + common);
    ASSERT_EQ(r.code, 0) << r.out;
    const auto j = nlohmann::json::parse(r.out.substr(r.out.find("{\n")));
    EXPECT_EQ(j.at("prompt"), "in: piano; out: bass");
    EXPECT_TRUE(j.at("cocola_score").is_number());
    EXPECT_EQ(audio::load_mono(dir + "/out.wav").size(), x.size());
    // By default the output is brought to the input's loudness; --level keep leaves the generator's own level, and
    // the two files differ by exactly the reported gain (the same seed draws the same output).
    EXPECT_EQ(j.at("level"), "input");
    r = testutil::run_cli("generate " + dir + "/in.wav --prompt \"in: piano; out: bass\" -o " + dir + "/kept.wav --json --level keep" + common);
    ASSERT_EQ(r.code, 0) << r.out;
    EXPECT_EQ(nlohmann::json::parse(r.out.substr(r.out.find("{\n"))).at("level_gain_db").get<double>(), 0.0);
    {
        const auto matched = audio::load_mono(dir + "/out.wav"), kept = audio::load_mono(dir + "/kept.wav");
        const double gain = std::pow(10.0, j.at("level_gain_db").get<double>() / 20.0);
        double rms_in = 0, rms_out = 0, peak = 0;
        for (size_t i = 0; i < x.size(); ++i) {
            ASSERT_NEAR(matched[i], kept[i] * gain, 2e-3 + 1e-3 * std::abs(matched[i])) << i;  // 24-bit or 16-bit WAVs
            rms_in += static_cast<double>(x[i]) * x[i];
            rms_out += static_cast<double>(matched[i]) * matched[i];
            peak = std::max(peak, static_cast<double>(std::abs(matched[i])));
        }
        // Matched, or short of it where the gain met its bounds (40 dB; the peak at 0.99): this untrained tiny
        // model's output is far quieter than anything real.
        const double gap_db = 10 * std::log10(rms_out / rms_in), gain_db = j.at("level_gain_db").get<double>();
        EXPECT_TRUE(std::abs(gap_db) < 0.1 || (gap_db < 0 && (peak > 0.98 || gain_db > 39.999)))
            << gap_db << " dB, gain " << gain_db << " dB, peak " << peak;
        EXPECT_LE(peak, 0.991);
    }
    // Kept by a guide: its score is reported as the guide's, not as the judge's.
    r = testutil::run_cli("generate " + dir + "/in.wav --prompt \"in: piano; out: bass\" -o " + dir + "/guided.wav --json --candidates 2 "
                          "--select guide --guide-model " + testutil::golden("models/cocola_mel_seed0.safetensors") + common);
    ASSERT_EQ(r.code, 0) << r.out;
    EXPECT_NE(r.out.find("\"guide_score\""), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find("\"cocola_score\""), std::string::npos) << r.out;
    EXPECT_TRUE(fs::exists(dir + "/guided.wav"));
    r = testutil::run_cli("generate " + dir + "/in.wav --task remove --in-tags bass,drums,piano --out-tags drums -o " + dir +
                          "/rm.wav --json" + common);
    ASSERT_EQ(r.code, 0) << r.out;
    EXPECT_EQ(nlohmann::json::parse(r.out.substr(r.out.find("{\n"))).at("prompt"), "in: bass, drums, piano; out: bass, piano");
    EXPECT_EQ(nlohmann::json::parse(r.out.substr(r.out.find("{\n"))).at("level"), "keep");  // a part of the input
    // --pairs: RFC 4180 CSV (a header, a comment, a quoted prompt holding a comma and a blank line), each job made;
    // an unterminated quote or a row of the wrong width names the file and line.
    std::ofstream(dir + "/jobs.csv") << "input,output,prompt\n# a comment\n" << dir << "/in.wav," << dir
                                     << "/p1.wav,\"in: piano; out: bass, drums\"\n\n"
                                     << "in.wav,\"p2.wav\"\n";  // relative: to the CSV's folder
    r = testutil::run_cli("generate --pairs " + dir + "/jobs.csv --prompt \"out: bass\"" + common);
    ASSERT_EQ(r.code, 0) << r.out;
    EXPECT_EQ(audio::load_mono(dir + "/p1.wav").size(), x.size());
    EXPECT_EQ(audio::load_mono(dir + "/p2.wav").size(), x.size());
    std::ofstream(dir + "/bad.csv") << "input,output\n" << dir << "/in.wav\n";
    r = testutil::run_cli("generate --pairs " + dir + "/bad.csv --prompt \"out: bass\"" + common);
    EXPECT_NE(r.code, 0);
    EXPECT_NE(r.out.find("bad.csv:2: expected input,output"), std::string::npos) << r.out;
    std::ofstream(dir + "/open.csv") << dir << "/in.wav," << dir << "/p3.wav,\"out: bass\n";
    r = testutil::run_cli("generate --pairs " + dir + "/open.csv" + common);
    EXPECT_NE(r.code, 0);
    EXPECT_NE(r.out.find("open.csv: line 1"), std::string::npos) << r.out;
    r = testutil::run_cli("generate " + dir + "/in.wav --prompt \"out: kazoo\" -o " + dir + "/k.wav" + common);
    EXPECT_NE(r.code, 0);
    EXPECT_NE(r.out.find("known tags"), std::string::npos) << r.out;
    std::ofstream(dir + "/junk.safetensors") << "not a model";
    r = testutil::run_cli("generate " + dir + "/in.wav --prompt \"out: bass\" -o " + dir + "/k.wav --model " + dir + "/junk.safetensors");
    EXPECT_NE(r.code, 0);
    EXPECT_NE(r.out.find("junk.safetensors"), std::string::npos) << r.out;
}

TEST(Componet, MatchLevelBringsAudioToTheReferencesLoudnessWithoutClipping) {
    auto sine = [](float amplitude, size_t n) {
        std::vector<float> x(n);
        for (size_t i = 0; i < n; ++i) x[i] = amplitude * static_cast<float>(std::sin(2 * M_PI * 440 * static_cast<double>(i) / 16000));
        return x;
    };
    auto rms = [](const std::vector<float>& x) {
        double s = 0;
        for (float v : x) s += static_cast<double>(v) * v;
        return std::sqrt(s / static_cast<double>(x.size()));
    };
    // 20 dB too quiet: raised to the reference's RMS.
    auto quiet = sine(0.01f, 16000);
    EXPECT_NEAR(match_level(quiet, sine(0.1f, 8000)), 20.0, 0.01);
    EXPECT_NEAR(rms(quiet), rms(sine(0.1f, 8000)), 1e-4);
    // Too loud: lowered.
    auto loud = sine(0.5f, 16000);
    EXPECT_NEAR(match_level(loud, sine(0.05f, 16000)), -20.0, 0.01);
    // A spike: the gain stops where the peak reaches 0.99, so nothing clips.
    auto spiky = sine(0.001f, 16000);
    spiky[100] = 0.5f;
    const double gain_db = match_level(spiky, sine(0.5f, 16000));
    EXPECT_NEAR(gain_db, 20 * std::log10(0.99 / 0.5), 1e-6);
    EXPECT_NEAR(spiky[100], 0.99f, 1e-5);
    // At most 40 dB either way; silence on either side changes nothing.
    auto faint = sine(1e-5f, 16000);
    EXPECT_NEAR(match_level(faint, sine(0.5f, 16000)), 40.0, 1e-9);
    auto silent = std::vector<float>(16000, 0.f);
    EXPECT_EQ(match_level(silent, sine(0.5f, 16000)), 0.0);
    auto kept = sine(0.3f, 16000);
    EXPECT_EQ(match_level(kept, std::vector<float>(16000, 0.f)), 0.0);
    EXPECT_EQ(kept, sine(0.3f, 16000));
    // Level "keep" only keeps audio inside full scale: a peak of 2 comes down to 0.99, a quiet clip is untouched.
    auto over = sine(2.0f, 16000);
    EXPECT_NEAR(limit_peak(over), 20 * std::log10(0.99 / 2.0), 1e-4);
    float peak = 0.f;
    for (float v : over) peak = std::max(peak, std::abs(v));
    EXPECT_NEAR(peak, 0.99f, 1e-5);
    auto under = sine(0.3f, 16000);
    EXPECT_EQ(limit_peak(under), 0.0);
    EXPECT_EQ(under, sine(0.3f, 16000));
    // "auto": a part of the input (extraction, removal) keeps its level; new stems (accompaniment, adding) take
    // the input's.
    auto level_for = [](const std::string& prompt) { return resolve_level("auto", parse_prompt(prompt, builtin_tags())); };
    EXPECT_EQ(level_for("in: piano; out: bass, drums"), "input");
    EXPECT_EQ(level_for("in: mix; out: drums"), "input");
    EXPECT_EQ(level_for("in: piano, bass; out: piano, bass, drums"), "input");
    EXPECT_EQ(level_for("in: bass, drums, piano; out: drums"), "keep");
    EXPECT_EQ(level_for("in: bass, drums, piano; out: bass, piano"), "keep");
    EXPECT_EQ(resolve_level("input", parse_prompt("in: bass, drums; out: drums", builtin_tags())), "input");
}

// ---------------------------------------------------------------- MSDM, the baseline
TEST(Msdm, InpaintingKeepsTheGivenSourcesAtTheirNoisedTruth) {
    at::Generator g0 = at::detail::createCPUGenerator(1);
    const at::Tensor x = at::randn({3, 8, 4, 6}, g0, at::kFloat), known = at::randn({1, 8, 4, 6}, g0, at::kFloat);
    at::Tensor mask = at::zeros({1, 8, 1, 1});
    mask.slice(1, 0, 4).fill_(1);  // the first source (4 channels) is given
    const double a = 0.3;
    at::Generator g1 = at::detail::createCPUGenerator(7), g2 = at::detail::createCPUGenerator(7);
    const at::Tensor y = inpaint(x, Inpainting{known, mask}, a, g1);
    const at::Tensor noise = at::randn(x.sizes(), g2, at::kFloat);
    const at::Tensor expected = std::sqrt(a) * known.expand_as(x) + std::sqrt(1 - a) * noise;
    EXPECT_TRUE(at::allclose(y.slice(1, 0, 4), expected.slice(1, 0, 4), 1e-6, 1e-6));
    EXPECT_TRUE(at::equal(y.slice(1, 4, 8), x.slice(1, 4, 8)));  // the rest untouched
    EXPECT_TRUE(at::allclose(inpaint(x, Inpainting{known, mask}, 1.0, g1).slice(1, 0, 4), known.slice(1, 0, 4).expand({3, 4, 4, 6}), 0, 1e-6));
    // Through a whole DDIM run the given channels end exactly at the truth; the others are drawn.
    ComponetConfig c = tiny_config();
    c.latent_channels = 8;
    c.sources = {"bass", "drums"};
    Componet m(c, 3);
    scramble(m.net(), 4);
    SampleOptions so;
    so.steps = 3;
    so.guidance = 1.0;
    const at::Tensor z = sample(m, Prompt{}, {}, 2, 4, 6, so, {}, Inpainting{known, mask});
    EXPECT_TRUE(at::allclose(z.slice(1, 0, 4), known.slice(1, 0, 4).expand({2, 4, 4, 6}), 1e-5, 1e-5));
    EXPECT_FALSE(at::allclose(z.slice(1, 4, 8), known.slice(1, 4, 8).expand({2, 4, 4, 6}), 1e-2, 1e-2));
    EXPECT_FALSE(at::allclose(z[0].slice(0, 4, 8), z[1].slice(0, 4, 8), 1e-3, 1e-3));  // two different candidates
    EXPECT_THROW(sample(m, Prompt{}, {}, 1, 4, 6, so, {}, Inpainting{known.slice(1, 0, 4), mask}), Error);
}

TEST(Msdm, TrainsOnStackedSourcesAndAccompaniesThroughTheCommand) {
    const std::string dir = testutil::temp_dir("msdm");
    ComponetTrainOptions o = tiny_training(dir + "/run", 1, 4);
    o.sources = {"Bass", "drums"};  // class names are made tags
    o.val_every = 2;
    train_componet(o, false);
    Componet m = Componet::load(dir + "/run/last.safetensors");
    ASSERT_TRUE(m.config().is_msdm());
    EXPECT_EQ(m.config().sources, (std::vector<std::string>{"bass", "drums"}));
    EXPECT_EQ(m.config().latent_channels, 8);  // two sources of the tiny VAE's 4 channels
    const auto pool = safetensors::load(dir + "/run/pool.safetensors");
    ASSERT_NE(pool.find("out"), nullptr);
    EXPECT_EQ(pool.find("out")->size(1), 8);
    // A CompoNet run cannot reuse the MSDM pool, and an MSDM has no second stage.
    ComponetTrainOptions wrong = tiny_training(dir + "/wrong", 1, 2, "", dir + "/run/pool.safetensors");
    EXPECT_THROW(train_componet(wrong, false), Error);
    ComponetTrainOptions stage2 = tiny_training(dir + "/s2", 2, 2, dir + "/run/last.safetensors");
    stage2.sources = {"bass", "drums"};
    EXPECT_THROW(train_componet(stage2, false), Error);

    const auto vae = generate::Vae::load(tiny_vae());
    std::vector<float> bass(16000 * 7);
    for (size_t i = 0; i < bass.size(); ++i) bass[i] = 0.3f * static_cast<float>(std::sin(2 * M_PI * 55 * static_cast<double>(i) / 16000));
    GenerateOptions go;
    go.sampling.steps = 2;
    go.candidates = 3;
    go.select = "norm";
    const auto g = generate_msdm_audio(m, vae, nullptr, nullptr, {{"bass", bass}}, {"drums"}, go);
    ASSERT_EQ(g.audio.size(), bass.size());
    for (float v : g.audio) ASSERT_TRUE(std::isfinite(v));
    EXPECT_THROW(generate_msdm_audio(m, vae, nullptr, nullptr, {{"bass", bass}}, {"bass"}, go), Error);
    EXPECT_THROW(generate_msdm_audio(m, vae, nullptr, nullptr, {{"piano", bass}}, {"drums"}, go), Error);
    EXPECT_THROW(generate_audio(m, vae, nullptr, nullptr, bass, parse_prompt("out: drums", m.config().vocabulary), go), Error);

    audio::write_wav(dir + "/bass.wav", bass);
    const std::string common = " --model " + dir + "/run/last.safetensors --vae " + tiny_vae() +
                               " --vocoder griffin-lim --steps 2 --candidates 2 --cocola-model " +
                               testutil::golden("models/cocola_mel_seed0.safetensors");
    auto r = testutil::run_cli("generate --source bass=" + dir + "/bass.wav --prompt \"out: drums\" -o " + dir + "/drums.wav --json" + common);
    ASSERT_EQ(r.code, 0) << r.out;
    auto j = nlohmann::json::parse(r.out.substr(r.out.find("{\n")));
    EXPECT_EQ(j.at("model"), "msdm");
    EXPECT_EQ(j.at("select"), "norm");  // the paper's choice for MSDM, unless --select is given
    EXPECT_TRUE(j.at("cocola_score").is_number());
    EXPECT_EQ(audio::load_mono(dir + "/drums.wav").size(), bass.size());
    r = testutil::run_cli("generate " + dir + "/bass.wav --prompt \"in: bass; out: drums\" -o " + dir + "/d2.wav" + common);
    ASSERT_EQ(r.code, 0) << r.out;
    // A mix of several inputs cannot be inpainted source by source; a tag MSDM does not have is named.
    r = testutil::run_cli("generate " + dir + "/bass.wav --prompt \"in: bass, drums; out: drums\" -o " + dir + "/x.wav" + common);
    EXPECT_NE(r.code, 0);
    EXPECT_NE(r.out.find("--source"), std::string::npos) << r.out;
    r = testutil::run_cli("generate --source bass=" + dir + "/bass.wav --prompt \"out: piano\" -o " + dir + "/x.wav" + common);
    EXPECT_NE(r.code, 0);
    EXPECT_NE(r.out.find("known tags"), std::string::npos) << r.out;
}

// ---------------------------------------------------------------- COCOLA-guided sampling
TEST(CocolaGuidance, TheGradientRaisesTheGuidesScoreAndTheSamplerFollowsIt) {
    const auto vae = generate::Vae::load(tiny_vae());
    auto guide = model::Model::load(testutil::golden("models/cocola_mel_seed0.safetensors"));
    std::vector<float> input(static_cast<size_t>(generate::kChunkSamples));
    for (size_t i = 0; i < input.size(); ++i) input[i] = 0.3f * static_cast<float>(std::sin(2 * M_PI * 196 * static_cast<double>(i) / 16000));
    CocolaGuidance g{&guide, &vae, guide_embedding(guide, input), 1.0};
    ASSERT_EQ(g.input_embedding.size(0), 1);
    at::Generator gen = at::detail::createCPUGenerator(3);
    const at::Tensor z = at::randn({2, 4, 16, 128}, gen, at::kFloat);
    at::Tensor before, after;
    const at::Tensor grad = guidance_gradient(g, z, &before);
    ASSERT_EQ(grad.sizes(), z.sizes());
    EXPECT_GT(grad.abs().sum().item<double>(), 0);
    // A small step along the gradient raises each latent's score (first order).
    const at::Tensor step = 1e-2 * grad / grad.pow(2).mean({1, 2, 3}, true).sqrt();
    guidance_gradient(g, z + step, &after);
    for (int64_t b = 0; b < 2; ++b) EXPECT_GT(after[b].item<double>(), before[b].item<double>()) << b;
    // Over several views of the spectrogram: another score (their mean), another gradient, which raises it too.
    CocolaGuidance gv = g;
    gv.views = 4;
    at::Tensor before_v, after_v;
    const at::Tensor grad_v = guidance_gradient(gv, z, &before_v);
    ASSERT_EQ(grad_v.sizes(), z.sizes());
    EXPECT_TRUE(at::isfinite(grad_v).all().item<bool>());
    EXPECT_FALSE(at::allclose(grad_v, grad, 1e-3, 1e-6));
    const at::Tensor step_v = 1e-2 * grad_v / grad_v.pow(2).mean({1, 2, 3}, true).sqrt();
    guidance_gradient(gv, z + step_v, &after_v);
    for (int64_t b = 0; b < 2; ++b) EXPECT_GT(after_v[b].item<double>(), before_v[b].item<double>()) << b;
    gv.views = 0;
    EXPECT_THROW(guidance_gradient(gv, z), Error);
    // The sampler with guidance: deterministic, different from unguided sampling.
    Componet m(tiny_config(), 5);
    m.add_controlnet();
    scramble(m.net(), 15);
    SampleOptions so;
    so.steps = 3;
    const Prompt p = parse_prompt("in: mix; out: bass", m.config().vocabulary);
    const at::Tensor control = generate::encode_audio(vae, input);
    const at::Tensor plain = sample(m, p, control, 1, 16, 128, so);
    const at::Tensor guided = sample(m, p, control, 1, 16, 128, so, {}, {}, g);
    EXPECT_TRUE(at::equal(guided, sample(m, p, control, 1, 16, 128, so, {}, {}, g)));
    EXPECT_FALSE(at::allclose(plain, guided, 1e-4, 1e-4));
    EXPECT_TRUE(at::isfinite(guided).all().item<bool>());
    // The guide must read spectrograms as the decoder makes them.
    auto hpss = model::Model::load(testutil::golden("models/cocola_hpss_seed0.safetensors"));
    EXPECT_THROW(guide_embedding(hpss, input), Error);
}

// --select guide: among the candidates, the one the guide (not the judge) scores highest against the input.
TEST(CocolaGuidance, SelectGuideKeepsTheCandidateTheGuideScoresHighest) {
    const auto vae = generate::Vae::load(tiny_vae());
    auto guide = model::Model::load(testutil::golden("models/cocola_mel_seed0.safetensors"));
    Componet m(tiny_config(), 6);
    m.add_controlnet();
    scramble(m.net(), 21);
    std::vector<float> input(static_cast<size_t>(generate::kChunkSamples));  // one chunk: the output is the kept candidate
    for (size_t i = 0; i < input.size(); ++i) input[i] = 0.3f * static_cast<float>(std::sin(2 * M_PI * 262 * static_cast<double>(i) / 16000));
    const Prompt p = parse_prompt("in: mix; out: bass", m.config().vocabulary);
    auto guide_score = [&](const std::vector<float>& out) {
        const auto emb = eval::embed_clips(guide, {input, out}, eval::ScoreOptions{});
        return guide.similarity_matrix(emb[0].embeddings.slice(0, 0, 1), emb[1].embeddings.slice(0, 0, 1)).item<double>();
    };
    GenerateOptions o;
    o.sampling.steps = 2;
    o.sampling.seed = 9;
    o.candidates = 4;
    o.select = "guide";
    EXPECT_THROW(generate_audio(m, vae, nullptr, nullptr, input, p, o), Error);  // no guide given
    o.guide = &guide;
    const auto picked = generate_audio(m, vae, nullptr, nullptr, input, p, o);
    ASSERT_EQ(picked.chunk_scores.size(), 1u);
    EXPECT_NEAR(picked.chunk_scores[0], guide_score(picked.audio), 1e-3 * std::max(1.0, std::abs(picked.chunk_scores[0])));
    // The same candidates (same seed) kept by another rule score no higher by the guide.
    o.select = "norm";
    const auto loudest = generate_audio(m, vae, nullptr, nullptr, input, p, o);
    EXPECT_LE(guide_score(loudest.audio), picked.chunk_scores[0] + 1e-3);
}

TEST(GenerationEval, SiSdrIsScaleInvariantAndFallsWithTheNoise) {
    std::vector<float> x(16000), y(16000), noisy(16000), silent(16000, 0.f);
    at::Generator g = at::detail::createCPUGenerator(4);
    const at::Tensor n = at::randn({16000}, g, at::kFloat);
    for (size_t i = 0; i < x.size(); ++i) {
        x[i] = static_cast<float>(0.5 * std::sin(2 * M_PI * 440 * static_cast<double>(i) / 16000));
        y[i] = -3.f * x[i];
        noisy[i] = x[i] + 0.05f * n[static_cast<int64_t>(i)].item<float>();
    }
    EXPECT_EQ(si_sdr(x.data(), x.data(), x.size()), INFINITY);
    EXPECT_GT(si_sdr(y.data(), x.data(), x.size()), 100);  // any scale, either sign (up to float rounding)
    // A sine of power 0.125 with white noise of power 0.0025: 10 log10(50) = 17 dB.
    EXPECT_NEAR(si_sdr(noisy.data(), x.data(), x.size()), 17.0, 0.5);
    EXPECT_TRUE(std::isnan(si_sdr(x.data(), silent.data(), x.size())));
    // the level: RMS over RMS, in dB
    EXPECT_NEAR(level_difference_db(y, x), 20 * std::log10(3.0), 1e-6);
    EXPECT_NEAR(level_difference_db(x, y), -20 * std::log10(3.0), 1e-6);
    EXPECT_TRUE(std::isnan(level_difference_db(x, silent)));
    EXPECT_TRUE(std::isnan(level_difference_db(silent, x)));
}

TEST(GenerationEval, TheProbeMeasuresTheCleanEstimateAgainstTheTargetsLatent) {
    const data::StemCache cache(song_cache());
    const generate::Vae vae = generate::Vae::load(tiny_vae());
    const auto items = draw_generation_items(cache, "songs", "", "accompany", 4, 3, builtin_tags());
    ASSERT_EQ(items.size(), 4u);
    // Fresh models output zeros: an epsilon model then takes x_t / sqrt(a) for the clean latent (off by
    // sqrt((1 - a) / a) times the noise), a v model sqrt(a) x_t (nearly zero at the top: off by the latent itself).
    Componet eps(tiny_config(), 1);
    eps.add_controlnet();
    ComponetConfig vc = tiny_config();
    vc.prediction = "v";
    Componet v(vc, 1);
    v.add_controlnet();
    const std::vector<int64_t> ts = {999, 500, 0};
    const DenoiserProbe pe = probe_denoiser(eps, vae, items, ts, 7), pv = probe_denoiser(v, vae, items, ts, 7);
    ASSERT_EQ(pe.rows.size(), 3u);
    EXPECT_EQ(pe.items, 4u);
    for (const auto& r : pe.rows) {
        const double off = std::sqrt((1 - r.alpha_bar) / r.alpha_bar);
        EXPECT_NEAR(r.x0_rmse, off, 0.05 * off) << r.t;
    }
    std::vector<at::Tensor> z;
    for (const auto& item : items) z.push_back(generate::encode_audio(vae, item.target).slice(0, 0, 1));
    const double latent_rms = at::cat(z).pow(2).mean().sqrt().item<double>();
    EXPECT_NEAR(pv.rows[0].x0_rmse, latent_rms, 0.05 * latent_rms);
    EXPECT_LE(pv.prior_rmse, latent_rms + 1e-9);  // the items' mean latent is the best constant
    EXPECT_GT(pe.rows[0].x0_rmse, pe.prior_rmse);  // "worse than knowing nothing"
    // the same noise for every model and call
    const DenoiserProbe again = probe_denoiser(eps, vae, items, ts, 7);
    for (size_t i = 0; i < ts.size(); ++i) EXPECT_EQ(again.rows[i].x0_rmse, pe.rows[i].x0_rmse);
    // refused: an MSDM model, a timestep outside the schedule
    ComponetConfig mc = tiny_config();
    mc.sources = {"bass", "drums"};
    Componet msdm(mc, 1);
    EXPECT_THROW(probe_denoiser(msdm, vae, items, ts), Error);
    EXPECT_THROW(probe_denoiser(eps, vae, items, {1000}), Error);
}

TEST(GenerationEval, ItemsAreDeterministicAndSplitTheStemsAsTheirTaskSays) {
    const data::StemCache cache(song_cache());
    const auto vocab = builtin_tags();
    for (const std::string task : {"accompany", "extract"}) {
        const auto a = draw_generation_items(cache, "songs", "", task, 5, 3, vocab);
        const auto b = draw_generation_items(cache, "songs", "", task, 5, 3, vocab);
        ASSERT_EQ(a.size(), 5u);
        ASSERT_EQ(b.size(), 5u);
        for (size_t i = 0; i < a.size(); ++i) {
            EXPECT_EQ(a[i].index, i);
            EXPECT_EQ(a[i].input, b[i].input);
            EXPECT_EQ(a[i].random, b[i].random);
            EXPECT_NE(a[i].track, a[i].random_track);
            EXPECT_EQ(a[i].input.size(), static_cast<size_t>(generate::kChunkSamples));
            ASSERT_FALSE(a[i].prompt.out.empty());
            ASSERT_FALSE(a[i].prompt.in.empty());
            if (task == "extract") {
                ASSERT_EQ(a[i].prompt.out.size(), 1u);
                EXPECT_NE(std::find(a[i].prompt.in.begin(), a[i].prompt.in.end(), a[i].prompt.out[0]), a[i].prompt.in.end());
            } else {
                for (const auto& t : a[i].prompt.out)
                    EXPECT_EQ(std::find(a[i].prompt.in.begin(), a[i].prompt.in.end(), t), a[i].prompt.in.end());
            }
        }
        EXPECT_NE(draw_generation_items(cache, "songs", "", task, 1, 4, vocab)[0].input, a[0].input);
    }
    // The truth measured against itself; a stem vocabulary that knows none of the songs' stems finds no item.
    const auto items = draw_generation_items(cache, "songs", "", "extract", 1, 3, vocab);
    const auto m = measure_output(nullptr, items[0], items[0].target);
    EXPECT_TRUE(std::isnan(m.cocola));
    EXPECT_EQ(m.log_mel_l1, 0.0);
    EXPECT_THROW(draw_generation_items(cache, "songs", "", "extract", 1, 3, {"kazoo"}), Error);
    EXPECT_THROW(draw_generation_items(cache, "songs", "", "sing", 1, 3, vocab), Error);
}

TEST(GenerationEval, TheCommandWritesEveryFileResumesAnInterruptedRunAndThePageLoadsInABrowser) {
    const std::string dir = testutil::temp_dir("componet_eval_generation");
    Componet m(tiny_config(), 6);
    m.add_controlnet();
    scramble(m.net(), 13);
    m.save(dir + "/componet.safetensors");
    ComponetConfig mc = tiny_config();
    mc.latent_channels = 8;
    mc.sources = {"bass", "drums"};
    Componet msdm(mc, 7);
    scramble(msdm.net(), 14);
    msdm.save(dir + "/msdm.safetensors");
    const std::string args = "eval-generation --data " + song_cache() + " --split all --n 3 --steps 2 --msdm-candidates 2 "
                             "--vocoder griffin-lim --model " + dir + "/componet.safetensors --msdm-model " + dir +
                             "/msdm.safetensors --vae " + tiny_vae() + " -m " + testutil::golden("models/cocola_mel_seed0.safetensors") +
                             " --second-model " + testutil::golden("models/cocola_hpss_seed0.safetensors") + " -o " + dir + "/ev";
    auto r = testutil::run_cli(args);
    ASSERT_EQ(r.code, 0) << r.out;
    const auto table = nlohmann::json::parse(read_all(dir + "/ev/table.json"));
    ASSERT_EQ(table.size(), 9u);  // accompany: 5 generators; extract: 4 (MSDM only accompanies)
    for (const auto& row : table) {
        EXPECT_EQ(row.at("items"), 3);
        EXPECT_TRUE(row.at("cocola_score").is_number()) << row.dump();
        EXPECT_TRUE(row.at("cocola_score_2").is_number()) << row.dump();
        if (row.at("generator") == "truth") {
            EXPECT_DOUBLE_EQ(row.at("cocola_score_of_truth").get<double>(), 1.0);
            EXPECT_DOUBLE_EQ(row.at("cocola_random_to_truth").get<double>(), 1.0);
        }
        if (row.at("generator") == "random") {
            EXPECT_DOUBLE_EQ(row.at("cocola_random_to_truth").get<double>(), 0.0);
        }
        if (row.at("generator") == "componet" || row.at("generator") == "msdm") {
            EXPECT_GT(row.at("log_mel_l1_db").get<double>(), 0);
            EXPECT_TRUE(row.at("level_db").is_number()) << row.dump();
        }
    }
    // Items use only MSDM's sources, each tag on one side.
    for (const auto& line : {std::string("bass"), std::string("drums")}) EXPECT_NE(read_all(dir + "/ev/items.jsonl").find(line), std::string::npos);
    const auto dist = nlohmann::json::parse(read_all(dir + "/ev/distances.json"));
    ASSERT_EQ(dist.size(), 2u * 7u);  // (cocola, vae) x (accompany: 4 non-truth generators, extract: 3)
    for (const auto& d : dist) {
        EXPECT_TRUE(d.at("fad").is_number()) << d.dump();
        EXPECT_TRUE(d.at("kad").is_number()) << d.dump();
        EXPECT_GE(d.at("fad").get<double>(), -1e-9);
    }
    for (const std::string f : {"table.md", "items.csv", "chart.svg", "index.html", "settings.json",
                                "audio/cache_accompany_0_componet.wav", "audio/cache_accompany_2_msdm.wav",
                                "audio/cache_extract_0_target.wav", "audio/cache_extract_1_input.wav", "audio/cache_accompany_1.png",
                                "embeddings/cache_accompany_0_target.cocola.npy", "embeddings/cache_extract_2_random.vae.npy"})
        EXPECT_TRUE(fs::exists(dir + "/ev/" + f)) << f;
    EXPECT_FALSE(fs::exists(dir + "/ev/audio/cache_extract_0_msdm.wav"));
    const std::string lines = read_all(dir + "/ev/items.jsonl");
    ASSERT_EQ(std::count(lines.begin(), lines.end(), '\n'), 27);
    const std::string before = read_all(dir + "/ev/table.json");

    // Embeddings made elsewhere (here: a fixed projection of each file's samples) give a third space.
    fs::create_directories(dir + "/user");
    for (const auto& e : fs::directory_iterator(dir + "/ev/audio")) {
        if (e.path().extension() != ".wav") continue;
        const auto a = audio::load_mono(e.path().string());
        std::vector<float> v(4, 0.f);
        for (size_t i = 0; i < a.size(); ++i) v[i % 4] += std::abs(a[i]);
        npy::save(dir + "/user/" + e.path().stem().string() + ".npy", {4}, v.data());
    }
    // Again without --resume: refused. An interrupted run (the log cut after 10 items, the last line half
    // written) continues and ends with the same log and table as the uninterrupted one.
    r = testutil::run_cli(args);
    EXPECT_NE(r.code, 0);
    EXPECT_NE(r.out.find("--resume"), std::string::npos) << r.out;
    {
        std::istringstream in(lines);
        std::string line, cut;
        for (int i = 0; i < 10 && std::getline(in, line); ++i) cut += line + "\n";
        std::getline(in, line);
        std::ofstream(dir + "/ev/items.jsonl") << cut << line.substr(0, line.size() / 2);
    }
    r = testutil::run_cli(args + " --resume --embeddings toy=" + dir + "/user");
    ASSERT_EQ(r.code, 0) << r.out;
    const std::string after = read_all(dir + "/ev/items.jsonl");
    EXPECT_EQ(std::count(after.begin(), after.end(), '\n'), 27 + 1);  // the half line ended by the next one
    EXPECT_EQ(read_all(dir + "/ev/table.json"), before);
    EXPECT_EQ(nlohmann::json::parse(read_all(dir + "/ev/distances.json")).size(), 3u * 7u);
    // --resume with other options is refused, naming the settings file; a missing user embedding is named.
    r = testutil::run_cli(args + " --resume --guidance 3");
    EXPECT_NE(r.code, 0);
    EXPECT_NE(r.out.find("settings.json"), std::string::npos) << r.out;
    fs::remove(dir + "/user/cache_accompany_0_msdm.npy");
    r = testutil::run_cli(args + " --resume --embeddings toy=" + dir + "/user");
    EXPECT_NE(r.code, 0);
    EXPECT_NE(r.out.find("cache_accompany_0_msdm.npy"), std::string::npos) << r.out;

    // The listening page in a headless browser: every player loads its file, and it renders.
    const char* browsers[] = {"/usr/bin/chromium-headless-shell", "/usr/bin/chromium"};
    std::string browser;
    for (const char* b : browsers)
        if (fs::exists(b)) browser = b;
    if (browser.empty()) GTEST_SKIP() << "no Chromium here (scripts/setup.sh installs chromium-headless-shell)";
    const std::string page = "file://" + fs::absolute(dir + "/ev/index.html").string();
    const std::string flags = " --headless --no-sandbox --disable-gpu --allow-file-access-from-files --autoplay-policy=no-user-gesture-required "
                              "--virtual-time-budget=20000 --user-data-dir=" + dir + "/chromium ";
    const auto dom = testutil::run_shell(browser + flags + "--dump-dom " + page + " 2>/dev/null");
    const size_t players = 3 * 2 * 2 + 3 * 5 + 3 * 4;  // input and target per item, then each output
    EXPECT_NE(dom.out.find("audio loaded: " + std::to_string(players) + " of " + std::to_string(players) + "<"), std::string::npos)
        << dom.out.substr(0, 3000);
    testutil::run_shell(browser + flags + "--window-size=1400,1800 --screenshot=" + dir + "/ev/screenshot.png " + page + " 2>/dev/null");
    ASSERT_TRUE(fs::exists(dir + "/ev/screenshot.png"));
    EXPECT_GT(fs::file_size(dir + "/ev/screenshot.png"), 10000u);
}
