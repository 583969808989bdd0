// The training core every model shares: schedules, optimizers and their state, the metrics log by column name,
// the run folder's snapshots, options as data, SVG text escaping.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "cocola/error.hpp"
#include "cocola/safetensors.hpp"
#include "cocola/train.hpp"
#include "cocola/train_core.hpp"
#include "test_util.hpp"

using namespace cocola;
namespace fs = std::filesystem;

namespace {
using testutil::log_without_time;
using testutil::read_all;
// One parameter with a fixed gradient.
train::NamedTensors one_param(std::vector<float> value, std::vector<float> grad) {
    at::Tensor p = at::tensor(value).requires_grad_(true);
    p.mutable_grad() = at::tensor(grad);
    return {{"w", p}};
}
}  // namespace

TEST(TrainCore, RateScaleWarmsUpThenDecaysByCosineToZeroPastTheLastStep) {
    const train::RateSchedule s{4, "cosine", 14};
    EXPECT_DOUBLE_EQ(train::rate_scale(s, 0), 0.25);
    EXPECT_DOUBLE_EQ(train::rate_scale(s, 3), 1.0);
    EXPECT_DOUBLE_EQ(train::rate_scale(s, 4), 1.0);
    EXPECT_NEAR(train::rate_scale(s, 9), 0.5, 1e-12);
    EXPECT_NEAR(train::rate_scale(s, 14), 0.0, 1e-12);
    EXPECT_DOUBLE_EQ(train::rate_scale({0, "none", 10}, 7), 1.0);
    EXPECT_THROW(train::rate_scale({0, "linear", 10}, 3), Error);
}

TEST(TrainCore, AdamStepEqualsTheClosedFormFirstStep) {
    // Adam's first step moves each weight by -lr * sign(g) (m / sqrt(v) = g / |g| after bias correction).
    train::Optimizer opt(one_param({1.0f, -2.0f}, {0.5f, -3.0f}), {0.1});
    opt.step();
    const at::Tensor w = opt.params()[0].second;
    EXPECT_NEAR(w[0].item<float>(), 0.9f, 1e-6);
    EXPECT_NEAR(w[1].item<float>(), -1.9f, 1e-6);
    EXPECT_EQ(opt.updates(), 1);
}

TEST(TrainCore, AdamWDecaysTheWeightsApartFromTheGradient) {
    train::OptimizerOptions o;
    o.kind = "adamw";
    o.weight_decay = 0.5;
    train::Optimizer opt(one_param({2.0f}, {0.0f}), {0.1}, o);
    opt.step();
    // Zero gradient: only the decoupled decay moves the weight, w * (1 - lr * wd).
    EXPECT_NEAR(opt.params()[0].second.item<float>(), 2.0f * (1 - 0.1f * 0.5f), 1e-6);
}

TEST(TrainCore, ClippingScalesTheGlobalNormAndReportsItBeforeClipping) {
    train::OptimizerOptions o;
    o.clip_grad_norm = 1.0;
    auto params = one_param({0.0f, 0.0f}, {3.0f, 4.0f});
    at::Tensor grad = params[0].second.grad();
    train::Optimizer opt(params, {0.0}, o);  // rate 0: only the clipping acts
    EXPECT_NEAR(opt.step(), 5.0, 1e-9);
    EXPECT_NEAR(grad.norm().item<double>(), 1.0, 1e-5);
}

TEST(TrainCore, EmaFollowsTheWeightsAndItsStateRoundTripsThroughACheckpoint) {
    train::OptimizerOptions o;
    o.ema_decay = 0.5;
    train::Optimizer opt(one_param({1.0f}, {1.0f}), {0.1}, o);
    opt.step();  // w: 1 -> 0.9; ema: 0.5 * 1 + 0.5 * 0.9
    EXPECT_NEAR(opt.ema()[0].second.item<float>(), 0.95f, 1e-6);
    train::NamedTensors state;
    std::map<std::string, std::string> meta;
    opt.append_state(state, meta);
    const std::string path = testutil::temp_dir("core_opt") + "/opt.safetensors";
    safetensors::save(path, state, meta);
    train::Optimizer fresh(one_param({1.0f}, {1.0f}), {0.1}, o);
    fresh.load_state(safetensors::load(path), path);
    EXPECT_EQ(fresh.updates(), 1);
    EXPECT_NEAR(fresh.ema()[0].second.item<float>(), 0.95f, 1e-6);
    // A checkpoint without the EMA tensors is refused by name.
    train::Optimizer wants_more(one_param({1.0f}, {1.0f}), {0.1}, o);
    safetensors::save(path, {state[0], state[1]}, meta);
    try {
        wants_more.load_state(safetensors::load(path), path);
        FAIL() << "no error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("ema.w"), std::string::npos) << e.what();
    }
}

TEST(TrainCore, MetricsLogWritesColumnsByNameAndTruncatesOnResume) {
    const std::string path = testutil::temp_dir("core_log") + "/log.csv";
    train::MetricsLog log(path, {"step", "loss", "val", "seconds"});
    log.create();
    log.append({{"step", 1}, {"loss", 0.25}, {"seconds", 1.5}});
    log.append({{"step", 2}, {"loss", 0.125}, {"val", 3}, {"ignored", 7}});
    log.append({{"step", 1000000}, {"loss", 2}});
    EXPECT_EQ(read_all(path), "step,loss,val,seconds\n1,0.25,,1.5\n2,0.125,3,\n1000000,2,,\n");
    log.truncate_after(1);
    EXPECT_EQ(read_all(path), "step,loss,val,seconds\n1,0.25,,1.5\n");
    const auto loss = train::read_log_column(path, "loss");
    ASSERT_EQ(loss.size(), 1u);
    EXPECT_EQ(loss[0], std::make_pair(1.0, 0.25));
    EXPECT_TRUE(train::read_log_column(path, "val").empty());
    EXPECT_TRUE(train::read_log_column(path, "no such column").empty());
    EXPECT_THROW(train::read_log_column(path + ".missing", "loss"), Error);
}

TEST(TrainCore, RunFolderKeepsTheNewestSnapshotsByCountAndRefusesToOverwriteARun) {
    const std::string dir = testutil::temp_dir("core_run") + "/run";
    train::RunFolder run(dir);
    EXPECT_THROW(run.open(/*resume=*/true), Error);  // nothing to resume
    run.open(false);
    std::ofstream(run.path("last.safetensors")) << "weights";
    std::ofstream(run.path("checkpoint.safetensors.tmp.123")) << "half-written";
    for (int64_t s : {100, 200, 300, 400}) run.snapshot("last.safetensors", s, 3);
    EXPECT_EQ(run.snapshot_steps(), (std::vector<int64_t>{200, 300, 400}));
    std::ofstream(run.checkpoint_path()) << "x";
    EXPECT_THROW(run.open(false), Error);  // a run already exists here
    run.open(true);
    EXPECT_FALSE(fs::exists(run.path("checkpoint.safetensors.tmp.123")));  // cleared
}

TEST(TrainCore, ContrastiveOptionsRoundTripThroughTheirOneMapping) {
    train::TrainOptions o;
    o.caches = {"a", "b"};
    o.lr = 3e-4;
    o.windows_per_track = 2;
    o.loss = train::LossKind::Symmetric;
    o.frontend = features::Frontend::Mel;
    o.data_weights = {3, 1};
    const std::string dir = testutil::temp_dir("core_opts");
    train::RunFolder(dir).write_options(train::options_json(o));
    const train::TrainOptions back = train::read_run_options(dir);
    EXPECT_EQ(train::options_json(back), train::options_json(o));
    EXPECT_EQ(back.loss, train::LossKind::Symmetric);
    EXPECT_EQ(back.frontend, features::Frontend::Mel);
    // The flags --resume may change are exactly the run's length, its rates and where features are computed.
    const auto fixed = train::fixed_on_resume_flags();
    for (const char* f : {"--steps", "--lr", "--similarity-lr", "--feature-path"})
        EXPECT_EQ(std::count(fixed.begin(), fixed.end(), f), 0) << f;
    for (const char* f : {"--batch", "--data", "--out", "--seed", "--single-stem", "--no-channel-masks", "--aux-labels"})
        EXPECT_EQ(std::count(fixed.begin(), fixed.end(), f), 1) << f;
    train::TrainOptions given;
    given.lr = 1e-5;
    given.batch = 99;
    train::TrainOptions run = back;
    train::apply_resumable_options(given, run, [](const std::string& f) { return f == "--lr" || f == "--batch"; });
    EXPECT_DOUBLE_EQ(run.lr, 1e-5);
    EXPECT_EQ(run.batch, back.batch);  // fixed for the run's life
    // A malformed options.json names the file.
    std::ofstream(dir + "/options.json") << "{\"caches\": 3}";
    try {
        train::read_run_options(dir);
        FAIL() << "no error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("options.json"), std::string::npos) << e.what();
    }
}

TEST(TrainCore, SvgTextIsEscaped) {
    EXPECT_EQ(train::svg_escape("a<b & 'c' \"d\">"), "a&lt;b &amp; &apos;c&apos; &quot;d&quot;&gt;");
    const std::string path = testutil::temp_dir("core_svg") + "/c.svg";
    train::write_panels_svg({{"loss <x>", {{"run & co", "#123456", {{1, 2}, {2, 1}}}}}}, path, "t<i>tle");
    const std::string svg = read_all(path);
    EXPECT_NE(svg.find("run &amp; co"), std::string::npos);
    EXPECT_NE(svg.find("loss &lt;x&gt;"), std::string::npos);
    EXPECT_EQ(svg.find("<x>"), std::string::npos);
    EXPECT_EQ(svg.find("<i>"), std::string::npos);
}
