// Training: learning happens, resume equals an uninterrupted run, and a kill never leaves a broken checkpoint.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

#include <nlohmann/json.hpp>

#include "cocola/audio.hpp"
#include "cocola/data.hpp"
#include "cocola/error.hpp"
#include "cocola/evaluate.hpp"
#include "cocola/model.hpp"
#include "cocola/safetensors.hpp"
#include "cocola/synth.hpp"
#include "cocola/train.hpp"
#include "test_util.hpp"

using namespace cocola;
namespace fs = std::filesystem;

namespace {

// Tiny procedural stem sets and their caches, made once for the whole file.
std::string make_cache(const std::string& tag, size_t tracks, const std::string& split, double seconds = 12.0) {
    const std::string root = testutil::temp_dir(tag);
    synth::SetOptions so;
    so.out_dir = root + "/songs";
    so.split = split;
    synth::write_procedural_set(7, tracks, seconds, so);
    data::CacheOptions co;
    data::build_cache(data::scan(root + "/songs"), root + "/cache", co);
    return root + "/cache";
}
const std::string& tiny_cache() {
    static const std::string dir = make_cache("train_data", 16, "auto");
    return dir;
}
// Four tracks whose stems are tones in a register of their own (track t: pitches around 110 * 2^t Hz), all for
// training. Any sub-mix of a track shares its register with the other sub-mix and no other track's, so a working
// training loop must learn to pair them within a few dozen steps.
const std::string& four_register_cache() {
    static const std::string dir = [] {
        const std::string root = testutil::temp_dir("train_four");
        for (int t = 0; t < 4; ++t)
            for (int s = 0; s < 3; ++s) {
                const double f = 110.0 * std::pow(2.0, t) * std::pow(2.0, (4 * s) / 12.0);
                std::vector<float> x(16000 * 8);
                for (size_t i = 0; i < x.size(); ++i) {
                    const double tt = i / 16000.0;
                    x[i] = static_cast<float>(0.2 * (0.6 + 0.4 * std::sin(2 * M_PI * (0.5 + s) * tt)) *
                                              (std::sin(2 * M_PI * f * tt) + 0.3 * std::sin(4 * M_PI * f * tt)));
                }
                audio::write_wav(root + "/songs/train/track" + std::to_string(t) + "/stem" + std::to_string(s) + ".wav", x);
            }
        data::CacheOptions co;
        data::build_cache(data::scan(root + "/songs"), root + "/cache", co);
        return root + "/cache";
    }();
    return dir;
}

train::TrainOptions tiny_options(const std::string& run_dir, int64_t steps) {
    train::TrainOptions o;
    o.caches = {tiny_cache()};
    o.run_dir = run_dir;
    o.batch = 4;
    o.steps = steps;
    o.val_every = 0;
    o.checkpoint_every = 2;
    o.seed = 3;
    return o;
}

// The values of one named column of a run's log.csv, a line each ("" where a line leaves it empty).
std::vector<std::string> log_column(const std::string& run_dir, const std::string& name) {
    std::ifstream in(run_dir + "/log.csv");
    auto fields = [](const std::string& line) {
        std::vector<std::string> f;
        std::stringstream ss(line);
        std::string x;
        while (std::getline(ss, x, ',')) f.push_back(x);
        if (!line.empty() && line.back() == ',') f.push_back("");
        return f;
    };
    std::string line;
    std::getline(in, line);
    const auto names = fields(line);
    const size_t col = static_cast<size_t>(std::find(names.begin(), names.end(), name) - names.begin());
    EXPECT_LT(col, names.size()) << "no column " << name << " in " << line;
    std::vector<std::string> out;
    while (std::getline(in, line)) {
        const auto f = fields(line);
        out.push_back(col < f.size() ? f[col] : "");
    }
    return out;
}

struct Log {
    std::vector<double> loss, acc;
};
// A column that every line fills, as numbers.
std::vector<double> log_numbers(const std::string& run_dir, const std::string& name) {
    std::vector<double> v;
    for (const auto& x : log_column(run_dir, name)) v.push_back(std::stod(x));
    return v;
}
Log read_log(const std::string& run_dir) { return {log_numbers(run_dir, "loss"), log_numbers(run_dir, "accuracy")}; }

// The weights a fresh run of `o` draws before any option touches them (the model's own init for its seed).
safetensors::File random_init_of(const train::TrainOptions& o, const std::string& dir) {
    model::Config cfg;
    cfg.frontend = o.frontend;
    cfg.similarity = o.similarity;
    model::Model(cfg, o.seed).save(dir + "/init.safetensors");
    return safetensors::load(dir + "/init.safetensors");
}

// A one-step run at lr 0, where Adam leaves every weight where it started: its last.safetensors holds the
// initialisation that `configure` asked for, returned beside the plain random init of the same seed.
struct InitAtLr0 {
    train::TrainOptions options;
    safetensors::File init, after;
};

InitAtLr0 init_at_lr0(const std::string& name, const std::function<void(train::TrainOptions&)>& configure) {
    const std::string base = testutil::temp_dir(name);
    auto o = tiny_options(base + "/r", 1);
    o.lr = 0;
    configure(o);
    train::train(o, false);
    return {o, random_init_of(o, base), safetensors::load(o.run_dir + "/last.safetensors")};
}

// Trains a 4-step run whole (base/a) and the same run stopped after step 2 and resumed (base/b), with `aux` set
// on both: the auxiliary heads' weights and Adam state must travel in the checkpoint, so both runs log the same
// losses, and they must stay out of the model file. Each logged aux_loss must lie in [lo, hi] and the checkpoint
// must hold each of `head_tensors`. Returns b's folder.
std::string aux_run_resumed_equals_whole(const std::string& base, const std::function<void(train::TrainOptions&)>& aux,
                                         double lo, double hi, const std::vector<std::string>& head_tensors) {
    auto a = tiny_options(base + "/a", 4);
    aux(a);
    train::train(a, false);
    auto b = tiny_options(base + "/b", 4);
    aux(b);
    int calls = 0;
    train::train(b, false, {}, [&] { return ++calls == 2; });  // "Ctrl-C" after step 2
    train::train(train::read_run_options(b.run_dir), true);
    const auto aux_a = log_numbers(a.run_dir, "aux_loss");
    EXPECT_EQ(aux_a, log_numbers(b.run_dir, "aux_loss"));
    EXPECT_EQ(read_log(a.run_dir).loss, read_log(b.run_dir).loss);
    EXPECT_EQ(aux_a.size(), 4u);
    for (double x : aux_a) {
        EXPECT_GE(x, lo);
        EXPECT_LE(x, hi);
    }
    auto ckpt = safetensors::load(b.run_dir + "/checkpoint.safetensors");
    for (const auto& name : head_tensors) EXPECT_NE(ckpt.find(name), nullptr) << name;
    auto model = safetensors::load(b.run_dir + "/last.safetensors");
    for (const auto& [name, t] : model.tensors) EXPECT_EQ(name.find("aux"), std::string::npos) << name;
    return b.run_dir;
}

double mean(const std::vector<double>& v, size_t a, size_t b) {
    double s = 0;
    for (size_t i = a; i < b; ++i) s += v[i];
    return s / static_cast<double>(b - a);
}

}  // namespace

TEST(Train, LossFallsAndAccuracyRisesOnATinySet) {
    const std::string run = testutil::temp_dir("train_learn");
    // The paper's model (hpss, bilinear) with a smaller learning rate than the recipe's 1e-3: with K = 4 and a
    // 512 x 512 bilinear W, Adam's first steps at 1e-3 move the logits by tens, which a few dozen steps do
    // not recover from.
    auto o = tiny_options(run + "/r", 40);
    o.caches = {four_register_cache()};
    o.lr = 1e-3;
    o.similarity = model::Similarity::Cosine;
    o.frontend = features::Frontend::Mel;  // no random channel masking: less noise in a short run
    train::train(o, false);
    auto l = read_log(o.run_dir);
    ASSERT_EQ(l.loss.size(), 40u);
    const double first = mean(l.loss, 0, 10), last = mean(l.loss, 30, 40);
    EXPECT_LT(last, first) << "mean loss of the first 10 steps " << first << ", of the last 10 " << last;
    EXPECT_GT(mean(l.acc, 30, 40), mean(l.acc, 0, 10));
    EXPECT_TRUE(fs::exists(o.run_dir + "/curves.svg"));
    EXPECT_TRUE(fs::exists(o.run_dir + "/last.safetensors"));
}

TEST(Train, ValidationLogsCocolaEvalsK2AccuracyOfTheValidatedWeights) {
    const std::string run = testutil::temp_dir("train_valk2");
    auto o = tiny_options(run + "/r", 3);
    o.val_every = 3;
    o.val_batches = 1;
    train::train(o, false);
    // The last log line (step 3, validated): its val_k2_accuracy column is K = 2 accuracy over the validation split.
    const auto column = log_column(o.run_dir, "val_k2_accuracy");
    ASSERT_EQ(column.size(), 3u);
    const std::string logged = column.back();
    ASSERT_FALSE(logged.empty());
    // last.safetensors holds the weights (and recalibrated BatchNorm statistics) that were validated at step 3.
    const model::Model m = model::Model::load(o.run_dir + "/last.safetensors");
    const data::StemCache cache(tiny_cache());
    const auto splits = cache.splits();
    ASSERT_NE(std::find(splits.begin(), splits.end(), "valid"), splits.end());
    eval::EvalOptions eo;
    eo.k = 2;
    eo.split = "valid";
    const double expected = eval::evaluate(m, cache, eo).accuracy;
    EXPECT_NEAR(std::stod(logged), expected, 1e-5);
    std::ifstream svg(o.run_dir + "/curves.svg");
    const std::string curves((std::istreambuf_iterator<char>(svg)), {});
    EXPECT_NE(curves.find("validation, K = 2"), std::string::npos);
}

TEST(Train, TempoProfilesPeakAtTheBeatPeriodWhereverTheBeatsFall) {
    // Two dB "spectrograms" of silence (-80) with a 2-frame burst (0 dB) every 50 and every 37 frames.
    at::Tensor f = at::full({3, 2, 64, 501}, -80.0f);
    auto clicks = [&](int64_t b, int64_t period, int64_t phase) {
        for (int64_t t = phase; t + 1 < 501; t += period) f[b].slice(2, t, t + 2).fill_(0.0f);
    };
    clicks(0, 50, 3);
    clicks(1, 37, 11);
    clicks(2, 50, 29);  // the first one's beat period, another phase
    const at::Tensor p = train::tempo_profiles(f);
    ASSERT_EQ(p.size(0), 3);
    ASSERT_EQ(p.size(1), 185);
    EXPECT_EQ(p[0].argmax().item<int64_t>() + 15, 50);
    EXPECT_EQ(p[1].argmax().item<int64_t>() + 15, 37);
    EXPECT_NEAR(p[0].norm().item<double>(), 1.0, 1e-5);
    // Same period, other phase: nearly the same profile; another period: clearly another.
    const double same = (p[0] * p[2]).sum().item<double>(), other = (p[0] * p[1]).sum().item<double>();
    EXPECT_GT(same, 0.9);
    EXPECT_LT(other, 0.5);
}

TEST(Train, AuxTempoHeadTrainsAndResumesButStaysOutOfTheModel) {
    const std::string base = testutil::temp_dir("train_aux");
    // The head's loss is 1 - cosine, in [0, 2].
    aux_run_resumed_equals_whole(base, [](train::TrainOptions& o) { o.aux_tempo = 1.0; }, 0.0, 2.0,
                                 {"train_only.aux_tempo.weight"});
    // The paper's recipe (aux off) leaves the column empty.
    auto c = tiny_options(base + "/c", 1);
    train::train(c, false);
    EXPECT_EQ(log_column(c.run_dir, "aux_loss"), std::vector<std::string>{""});
}

TEST(Train, AuxLabelsReadTempoAndKeyFromTheSongsAndTrainHeadsThatStayOutOfTheModel) {
    // The labels: from each procedural song's meta.json (bpm, tonic, mode), read here independently.
    data::StemCache cache(tiny_cache());
    const auto labels = train::music_labels(cache);
    ASSERT_EQ(labels.size(), cache.size());
    int majors = 0, minors = 0;
    for (size_t t = 0; t < cache.size(); ++t) {
        const auto& tr = cache.track(t);
        std::ifstream in(cache.root() + "/" + tr.split + "/" + tr.id + "/meta.json");
        ASSERT_TRUE(in) << tr.id;
        const auto j = nlohmann::json::parse(in);
        const double bpm = j.at("bpm"), class_bpm = 48.0 * std::pow(2.0, labels[t].tempo_class / 12.0);
        EXPECT_LT(std::abs(std::log2(bpm / class_bpm)), 1.0 / 24 + 1e-9) << tr.id << ": " << bpm << " BPM";
        const int tonic = j.at("tonic");
        if (j.at("mode") == "major") {
            ++majors;
            EXPECT_EQ(labels[t].key_class, tonic) << tr.id;
        }
        if (j.at("mode") == "minor") {
            ++minors;
            EXPECT_EQ(labels[t].key_class, (tonic + 3) % 12) << tr.id;
        }
        EXPECT_GE(labels[t].key_class, 0);
    }
    EXPECT_GT(majors + minors, 0);
    // Songs without meta.json (the tone registers) have no labels, and a run with nothing to learn from refuses.
    data::StemCache tones(four_register_cache());
    for (const auto& l : train::music_labels(tones)) {
        EXPECT_EQ(l.tempo_class, -1);
        EXPECT_EQ(l.key_class, -1);
    }
    const std::string base = testutil::temp_dir("train_labels");
    // A meta.json that is not JSON gives its song no labels, and is named.
    {
        const std::string song = base + "/broken/songs/train/song0";
        for (const char* stem : {"bass", "lead"})
            audio::write_wav(song + "/" + stem + ".wav", std::vector<float>(16000 * 6, 0.1f));
        std::ofstream(song + "/meta.json") << "{\"bpm\": 120, \"tonic\":";  // cut off mid-write
        data::build_cache(data::scan(base + "/broken/songs"), base + "/broken/cache", data::CacheOptions{});
        data::StemCache broken(base + "/broken/cache");
        std::vector<std::string> unreadable;
        const auto l = train::music_labels(broken, &unreadable);
        ASSERT_EQ(l.size(), 1u);
        EXPECT_EQ(l[0].tempo_class, -1);
        EXPECT_EQ(l[0].key_class, -1);
        ASSERT_EQ(unreadable.size(), 1u);
        EXPECT_EQ(fs::path(unreadable[0]), fs::path(song + "/meta.json"));
        unreadable.clear();
        train::music_labels(cache, &unreadable);
        EXPECT_TRUE(unreadable.empty()) << "the procedural songs' meta.json all parse";
    }
    auto bad = tiny_options(base + "/bad", 2);
    bad.caches = {four_register_cache()};
    bad.aux_labels = 1.0;
    EXPECT_THROW(train::train(bad, false), Error);
    EXPECT_FALSE(fs::exists(bad.run_dir));

    // A run: the heads learn (cross-entropy of two heads from about ln 24 + ln 12 = 5.7), resume exactly, and
    // travel in the checkpoint only.
    const std::string b_dir =
        aux_run_resumed_equals_whole(base, [](train::TrainOptions& o) { o.aux_labels = 1.0; }, 1.0, 12.0,
                                     {"train_only.aux_labels.tempo.weight", "train_only.aux_labels.key.weight"});
    EXPECT_EQ(train::read_run_options(b_dir).aux_labels, 1.0);
}

TEST(Train, ResumeEqualsAnUninterruptedRun) {
    const std::string base = testutil::temp_dir("train_resume");
    auto a = tiny_options(base + "/a", 6);
    train::train(a, false);

    auto b = tiny_options(base + "/b", 6);
    int calls = 0;
    train::train(b, false, {}, [&] { return ++calls == 3; });  // "Ctrl-C" after step 3
    ASSERT_EQ(read_log(b.run_dir).loss.size(), 3u);
    train::train(train::read_run_options(b.run_dir), true);

    auto fa = safetensors::load(a.run_dir + "/last.safetensors");
    auto fb = safetensors::load(b.run_dir + "/last.safetensors");
    ASSERT_EQ(fa.tensors.size(), fb.tensors.size());
    for (size_t i = 0; i < fa.tensors.size(); ++i)
        EXPECT_TRUE(at::equal(fa.tensors[i].second, fb.tensors[i].second)) << fa.tensors[i].first;
    EXPECT_EQ(read_log(a.run_dir).loss, read_log(b.run_dir).loss);
}

// The tensor feature path (the default on a GPU) trains as the CPU-thread one: same batches, same channel masks,
// features equal to float rounding, so the same losses and weights (here on the CPU, where both run).
TEST(Train, TensorFeaturePathTrainsAsTheThreadsPath) {
    const std::string base = testutil::temp_dir("train_feature_path");
    auto a = tiny_options(base + "/threads", 4);
    a.feature_path = "threads";
    train::train(a, false);
    auto b = tiny_options(base + "/tensor", 4);
    b.feature_path = "tensor";
    ASSERT_TRUE(b.channel_masks);  // the masks are drawn in the prefetcher and applied after the features
    train::train(b, false);
    const auto la = read_log(a.run_dir).loss, lb = read_log(b.run_dir).loss;
    ASSERT_EQ(la.size(), 4u);
    ASSERT_EQ(lb.size(), 4u);
    for (size_t i = 0; i < la.size(); ++i) EXPECT_NEAR(la[i], lb[i], 1e-4 * std::max(1.0, std::abs(la[i]))) << "step " << i + 1;
    auto fa = safetensors::load(a.run_dir + "/last.safetensors");
    auto fb = safetensors::load(b.run_dir + "/last.safetensors");
    ASSERT_EQ(fa.tensors.size(), fb.tensors.size());
    for (size_t i = 0; i < fa.tensors.size(); ++i)
        EXPECT_TRUE(at::allclose(fa.tensors[i].second, fb.tensors[i].second, 1e-3, 1e-5)) << fa.tensors[i].first;
    EXPECT_EQ(train::read_run_options(b.run_dir).feature_path, "tensor");
}

TEST(Train, KillDuringCheckpointingNeverLeavesABrokenCheckpoint) {
    const std::string base = testutil::temp_dir("train_kill");
    const std::string run = base + "/run";
    // Start through the CLI (a separate process we can SIGKILL), checkpointing every step.
    const std::string args = "train --data " + tiny_cache() + " -o " + run +
                             " --batch 4 --steps 1000 --checkpoint-every 1 --val-every 0 --seed 5";
    int kills = 0;
    auto log_lines = [&] {
        std::ifstream in(run + "/log.csv");
        return static_cast<int>(std::count(std::istreambuf_iterator<char>(in), {}, '\n'));
    };
    for (int attempt = 0; attempt < 4; ++attempt) {
        const int lines_before = std::max(1, log_lines());  // the header line is there from the start
        const bool resume = fs::exists(run + "/checkpoint.safetensors");
        pid_t pid = fork();
        if (pid == 0) {
            const std::string cmd = !resume ? std::string(COCOLA_CLI) + " " + args
                                            : std::string(COCOLA_CLI) + " train --resume " + run;
            execl("/bin/sh", "sh", "-c", ("exec " + cmd + " >/dev/null 2>&1").c_str(), static_cast<char*>(nullptr));
            _exit(127);
        }
        // Wait until this process has trained (and so checkpointed, every step) at least one step, then kill it
        // a little later each time: the kills land at different points of the step/checkpoint cycle.
        bool exited = false;
        for (int waited = 0; waited < 3000 && log_lines() <= lines_before; ++waited) {
            if (waitpid(pid, nullptr, WNOHANG) == pid) {
                exited = true;
                break;
            }
            usleep(100000);
        }
        ASSERT_FALSE(exited) << "cocola train exited on its own (attempt " << attempt << ")";
        usleep(static_cast<useconds_t>(attempt * 173000));
        kill(pid, SIGKILL);
        waitpid(pid, nullptr, 0);
        ++kills;
        if (fs::exists(run + "/checkpoint.safetensors")) {
            auto f = safetensors::load(run + "/checkpoint.safetensors");  // throws if half-written
            EXPECT_FALSE(f.metadata.at("step").empty());
        }
    }
    ASSERT_TRUE(fs::exists(run + "/checkpoint.safetensors")) << "no checkpoint after " << kills << " kills";
    auto before = std::stoll(safetensors::load(run + "/checkpoint.safetensors").metadata.at("step"));
    // The run continues from the surviving checkpoint.
    auto opts = train::read_run_options(run);
    opts.steps = before + 1;
    train::train(opts, true);
    EXPECT_EQ(std::stoll(safetensors::load(run + "/checkpoint.safetensors").metadata.at("step")), before + 1);
}

TEST(Train, BilinearMatrixHasItsOwnInitAndLearningRate) {
    // Adam's first step moves every parameter with a gradient by exactly its rate (m/sqrt(v) = sign(g)): after one
    // step W must have moved by similarity_lr per entry and the encoder by lr, from a W drawn at the chosen std
    // plus the chosen multiple of the identity.
    const std::string base = testutil::temp_dir("train_wlr");
    auto o = tiny_options(base + "/r", 1);
    o.lr = 1e-3;
    o.similarity_lr = 1e-6;
    o.similarity_init_std = 0.002;
    o.similarity_init_identity = 0.01;
    train::train(o, false);

    auto init = random_init_of(o, base);
    auto after = safetensors::load(o.run_dir + "/last.safetensors");
    const at::Tensor w0 = *init.find("similarity.w") * (0.002 / 0.05) + at::eye(512) * 0.01,
                     w1 = *after.find("similarity.w");
    EXPECT_NEAR((w1 - at::eye(512) * 0.01).std().item<double>(), 0.002, 2e-4);
    EXPECT_NEAR(w1.diagonal().mean().item<double>(), 0.01, 5e-4);
    const double dw = (w1 - w0).abs().max().item<double>();
    EXPECT_NEAR(dw, 1e-6, 1e-7) << "W moved by " << dw;
    const std::string enc = "encoder.projection.weight";
    const double de = (*after.find(enc) - *init.find(enc)).abs().max().item<double>();
    EXPECT_NEAR(de, 1e-3, 1e-4) << enc << " moved by " << de;
    EXPECT_EQ(train::read_run_options(o.run_dir).similarity_lr, 1e-6);
}

TEST(Train, ResumeMayChangeStepsAndLearningRatesOnly) {
    const std::string run = testutil::temp_dir("train_resume_lr") + "/run";
    auto r = testutil::run_cli("train --data " + tiny_cache() + " -o " + run +
                               " --batch 4 --steps 2 --val-every 0 --similarity-lr 1e-5 --seed 1");
    ASSERT_EQ(r.code, 0) << r.out;
    r = testutil::run_cli("train --resume " + run + " --steps 3 --lr 5e-4 --similarity-lr 2e-5 --batch 8");
    ASSERT_EQ(r.code, 0) << r.out;
    const auto o = train::read_run_options(run);
    EXPECT_EQ(o.steps, 3);
    EXPECT_EQ(o.lr, 5e-4);
    EXPECT_EQ(o.similarity_lr, 2e-5);
    EXPECT_EQ(o.batch, 4) << "--batch is fixed for the life of a run";
    EXPECT_NE(r.out.find("--batch is ignored with --resume"), std::string::npos) << r.out;
    EXPECT_EQ(read_log(run).loss.size(), 3u);
}

TEST(Train, NegativeRatesAndScalesForWAreRefused) {
    for (const char* flag : {"--similarity-lr -1", "--similarity-init-std -0.1"}) {
        const std::string run = testutil::temp_dir("train_bad_w") + "/run";
        auto r = testutil::run_cli("train --data " + tiny_cache() + " -o " + run + " " + flag);
        EXPECT_NE(r.code, 0) << flag;
        EXPECT_NE(r.out.find(std::string(flag).substr(0, std::string(flag).find(' '))), std::string::npos) << r.out;
        EXPECT_FALSE(fs::exists(run)) << flag;
    }
}

TEST(Train, CentredProjectionRescalesEachOutputOfTheRandomInit) {
    // With lr 0 Adam leaves every weight where it started, so last.safetensors holds the init: with
    // --center-projection each projection row is its random-init row times a positive factor (1 / spread), and
    // the bias is moved (minus the mean); the rest of the network is the plain random init.
    const auto [o, init, after] = init_at_lr0("train_centre", [](auto& t) { t.center_projection = true; });
    EXPECT_TRUE(train::read_run_options(o.run_dir).center_projection);
    const at::Tensor w0 = *init.find("encoder.projection.weight"), w1 = *after.find("encoder.projection.weight");
    const at::Tensor ratio = (w1 / w0);  // [512, 1280]: constant along each row
    const at::Tensor row_factor = std::get<0>(ratio.median(1));
    EXPECT_GT(row_factor.min().item<double>(), 0);
    EXPECT_LT((ratio - row_factor.unsqueeze(1)).abs().max().item<double>(), 1e-3 * row_factor.max().item<double>());
    EXPECT_GT((row_factor - 1).abs().max().item<double>(), 0.05) << "the rows were rescaled";
    const at::Tensor b0 = *init.find("encoder.projection.bias"), b1 = *after.find("encoder.projection.bias");
    EXPECT_GT((b1 - b0).abs().max().item<double>(), 1e-3);
    EXPECT_TRUE(at::equal(*after.find("similarity.w"), *init.find("similarity.w")));
    EXPECT_TRUE(at::equal(*after.find("layer_norm.weight"), *init.find("layer_norm.weight")));
}

TEST(Train, ZeroInitResidualStartsEveryResidualBlockAsTheIdentity) {
    // lr 0 keeps the init: with --zero-init-residual the last BatchNorm scale of the 9 residual MBConv blocks
    // of B0 (stride 1, same width in and out) is 0, of the 7 others 1, and every other weight is the plain init.
    const auto [o, init, after] = init_at_lr0("train_zero_residual", [](auto& t) { t.zero_init_residual = true; });
    EXPECT_TRUE(train::read_run_options(o.run_dir).zero_init_residual);
    const std::string prefix = "encoder.encoder.model.0._blocks.";
    for (int i = 0; i < 16; ++i) {
        const at::Tensor g = *after.find(prefix + std::to_string(i) + "._bn2.weight");
        const bool residual = i == 2 || i == 4 || i == 6 || i == 7 || i == 9 || i == 10 || (i >= 12 && i <= 14);
        if (residual)
            EXPECT_EQ(g.abs().max().item<double>(), 0.0) << "block " << i;
        else
            EXPECT_TRUE(at::equal(g, at::ones_like(g))) << "block " << i;
    }
    for (const std::string& k : std::vector<std::string>{"encoder.projection.weight", "similarity.w", prefix + "2._project_conv.weight"})
        EXPECT_TRUE(at::equal(*after.find(k), *init.find(k))) << k;
}

TEST(Train, CosineDecayFollowsTheWarmUpDownToZeroAtTheLastStep) {
    train::TrainOptions o;
    o.steps = 104;
    o.warmup_steps = 4;
    EXPECT_DOUBLE_EQ(train::learning_rate_scale(o, 0), 0.25);
    EXPECT_DOUBLE_EQ(train::learning_rate_scale(o, 3), 1.0);
    EXPECT_DOUBLE_EQ(train::learning_rate_scale(o, 60), 1.0);  // "none": constant after the warm-up
    o.lr_decay = "cosine";
    EXPECT_DOUBLE_EQ(train::learning_rate_scale(o, 1), 0.5);   // the warm-up is unchanged
    EXPECT_DOUBLE_EQ(train::learning_rate_scale(o, 4), 1.0);   // full rate right after it
    EXPECT_NEAR(train::learning_rate_scale(o, 54), 0.5, 1e-12);  // half-way: cos(pi/2)
    EXPECT_NEAR(train::learning_rate_scale(o, 29), 0.5 * (1 + std::cos(M_PI * 0.25)), 1e-12);
    EXPECT_NEAR(train::learning_rate_scale(o, 103), 0.5 * (1 + std::cos(M_PI * 0.99)), 1e-12);  // the last step
    EXPECT_GT(train::learning_rate_scale(o, 103), 0.0);
    EXPECT_EQ(train::learning_rate_scale(o, 500), 0.0);  // past the end (a resume with fewer --steps)
    for (int64_t s = 5; s < 104; ++s) EXPECT_LT(train::learning_rate_scale(o, s), train::learning_rate_scale(o, s - 1));
    o.lr_decay = "linear";
    EXPECT_THROW(train::learning_rate_scale(o, 50), cocola::Error);
}

TEST(Train, CosineDecayIsRecordedAndTheLastStepMovesTheWeightsByItsScaledRate) {
    // Two steps, no warm-up: step 1 at the full rate, step 2 at (1 + cos(pi/2))/2 = 1/2. Adam's step moves every
    // weight by about its rate, so the second step's move is half the first's (run them one at a time).
    const std::string base = testutil::temp_dir("train_cosine");
    auto o = tiny_options(base + "/r", 1);
    o.lr = 1e-3;
    o.similarity_lr = 1e-5;
    o.lr_decay = "cosine";
    o.steps = 2;
    o.checkpoint_every = 1;
    train::train(o, false, {}, [] { return true; });  // stops after the first step, with a checkpoint
    auto first = safetensors::load(o.run_dir + "/last.safetensors");
    train::train(train::read_run_options(o.run_dir), true);
    auto second = safetensors::load(o.run_dir + "/last.safetensors");
    auto init = random_init_of(o, base);
    const std::string enc = "encoder.projection.weight";
    EXPECT_NEAR((*first.find(enc) - *init.find(enc)).abs().max().item<double>(), 1e-3, 1e-4);
    EXPECT_NEAR((*second.find(enc) - *first.find(enc)).abs().max().item<double>(), 5e-4, 5e-5);
    EXPECT_EQ(train::read_run_options(o.run_dir).lr_decay, "cosine");
    o.lr_decay = "step";
    o.run_dir = base + "/bad";
    EXPECT_THROW(train::train(o, false), cocola::Error);
}

TEST(Train, WarmUpScalesTheFirstStepsRates) {
    // Adam's first step moves each weight by exactly its rate: with --warmup 4 the first step uses a quarter of it.
    const std::string base = testutil::temp_dir("train_warmup");
    auto o = tiny_options(base + "/r", 1);
    o.lr = 1e-3;
    o.similarity_lr = 1e-5;
    o.warmup_steps = 4;
    train::train(o, false);
    auto init = random_init_of(o, base);
    auto after = safetensors::load(o.run_dir + "/last.safetensors");
    const std::string enc = "encoder.projection.weight";
    EXPECT_NEAR((*after.find(enc) - *init.find(enc)).abs().max().item<double>(), 2.5e-4, 2.5e-5);
    const double dw = (*after.find("similarity.w") - *init.find("similarity.w")).abs().max().item<double>();
    EXPECT_NEAR(dw, 2.5e-6, 2.5e-7);
    EXPECT_EQ(train::read_run_options(o.run_dir).warmup_steps, 4);
}

// --data-weights: each step draws its source by the weights and takes that source's next batch.
TEST(Train, DataWeightsDrawEachSourceByItsShareAndWalkItsEpochsInOrder) {
    auto o = tiny_options(testutil::temp_dir("train_weights") + "/r", 1);
    o.caches = {tiny_cache(), four_register_cache()};
    const int64_t n = 2000;

    // Unweighted (the paper's "All"): both sources, in proportion to their sizes.
    const auto plain = train::data_schedule(o, 0, n);
    const auto share0 = [&](const std::vector<train::ScheduledBatch>& s) {
        return std::count_if(s.begin(), s.end(), [](const auto& b) { return b.source == 0; }) / double(s.size());
    };
    const double plain0 = share0(plain);
    EXPECT_GT(plain0, 0.6) << "tiny_cache has more training windows than the four-track set";
    EXPECT_LT(plain0, 1.0);

    o.data_weights = {1, 3};
    const auto weighted = train::data_schedule(o, 0, n);
    EXPECT_NEAR(share0(weighted), 0.25, 0.03);
    // Every source walks its own epochs in order: batch 0, 1, .. of epoch 0, then batch 0 of epoch 1, ..
    for (int d = 0; d < 2; ++d) {
        int epoch = 0;
        size_t next = 0;
        int epochs_seen = 0;
        for (const auto& b : weighted) {
            if (b.source != d) continue;
            if (b.epoch != epoch) {
                EXPECT_EQ(b.epoch, epoch + 1) << "source " << d;
                EXPECT_GT(next, 0u);
                EXPECT_EQ(b.batch, 0u) << "source " << d << " epoch " << b.epoch;
                epoch = b.epoch;
                ++epochs_seen;
            } else {
                EXPECT_EQ(b.batch, next) << "source " << d << " epoch " << b.epoch;
            }
            next = b.batch + 1;
        }
        EXPECT_GT(epochs_seen, 2) << "source " << d;
    }
    // A pure function of the step: a resumed run sees the same batches as an uninterrupted one.
    const auto tail = train::data_schedule(o, 1500, 100);
    for (size_t i = 0; i < tail.size(); ++i) {
        EXPECT_EQ(tail[i].source, weighted[1500 + i].source);
        EXPECT_EQ(tail[i].epoch, weighted[1500 + i].epoch);
        EXPECT_EQ(tail[i].batch, weighted[1500 + i].batch);
    }
    // Weight 0: never trained on.
    o.data_weights = {0, 1};
    EXPECT_EQ(share0(train::data_schedule(o, 0, 500)), 0.0);

    for (const std::vector<double>& bad : std::vector<std::vector<double>>{{1}, {1, 2, 3}, {-1, 2}, {0, 0}, {NAN, 1}}) {
        o.data_weights = bad;
        EXPECT_THROW(train::data_schedule(o, 0, 1), cocola::Error) << bad.size();
    }
}

TEST(Train, DataWeightsAreRecordedAndFixedForTheRun) {
    const std::string run = testutil::temp_dir("train_weights_cli") + "/run";
    auto r = testutil::run_cli("train --data " + tiny_cache() + "," + four_register_cache() + " -o " + run +
                               " --data-weights 1,0 --batch 4 --steps 2 --val-every 0 --seed 1");
    ASSERT_EQ(r.code, 0) << r.out;
    r = testutil::run_cli("train --resume " + run + " --steps 3 --data-weights 0,1");
    ASSERT_EQ(r.code, 0) << r.out;
    EXPECT_NE(r.out.find("--data-weights is ignored with --resume"), std::string::npos) << r.out;
    EXPECT_EQ(train::read_run_options(run).data_weights, (std::vector<double>{1, 0}));
    EXPECT_EQ(read_log(run).loss.size(), 3u);

    const std::string bad = testutil::temp_dir("train_weights_bad") + "/run";
    r = testutil::run_cli("train --data " + tiny_cache() + "," + four_register_cache() + " -o " + bad +
                          " --data-weights 1 --batch 4 --steps 1");
    EXPECT_NE(r.code, 0);
    EXPECT_NE(r.out.find("1 weights for 2 --data sources"), std::string::npos) << r.out;
}

// --stem-effects: windows go through random production chains drawn per window and stem, as a function of the
// step's batch, so the run resumes exactly; the model sees other audio than without them; the option is kept.
// --stem-gain-db likewise.
TEST(Train, StemEffectsAndGainsChangeWhatTheModelHearsAndResumeExactly) {
    const std::string base = testutil::temp_dir("train_stem_effects");
    auto dry = tiny_options(base + "/dry", 3);
    train::train(dry, false);
    auto a = tiny_options(base + "/a", 3);
    a.stem_effects = 1;
    train::train(a, false);
    auto b = tiny_options(base + "/b", 3);
    b.stem_effects = 1;
    int calls = 0;
    train::train(b, false, {}, [&] { return ++calls == 2; });  // "Ctrl-C" after step 2
    const auto kept = train::read_run_options(b.run_dir);
    EXPECT_EQ(kept.stem_effects, 1.0);
    train::train(kept, true);
    const auto la = read_log(a.run_dir).loss;
    EXPECT_EQ(la, read_log(b.run_dir).loss);
    ASSERT_EQ(la.size(), 3u);
    EXPECT_NE(la.front(), read_log(dry.run_dir).loss.front()) << "the first batch must sound different";
    auto fa = safetensors::load(a.run_dir + "/last.safetensors");
    auto fb = safetensors::load(b.run_dir + "/last.safetensors");
    ASSERT_EQ(fa.tensors.size(), fb.tensors.size());
    for (size_t i = 0; i < fa.tensors.size(); ++i)
        EXPECT_TRUE(at::equal(fa.tensors[i].second, fb.tensors[i].second)) << fa.tensors[i].first;

    // --stem-gain-db: other balances within the sub-mixes, recorded with the run.
    auto gain = tiny_options(base + "/gain", 1);
    gain.stem_gain_db = 12;
    train::train(gain, false);
    EXPECT_EQ(train::read_run_options(gain.run_dir).stem_gain_db, 12.0);
    EXPECT_NE(read_log(gain.run_dir).loss.front(), read_log(dry.run_dir).loss.front());

    auto bad = tiny_options(base + "/bad", 1);
    bad.stem_effects = 1.5;
    EXPECT_THROW(train::train(bad, false), Error);
    bad.stem_effects = 0;
    bad.stem_gain_db = -1;
    EXPECT_THROW(train::train(bad, false), Error);
    auto r = testutil::run_cli("train --data " + tiny_cache() + " -o " + base + "/cli --stem-effects -0.1 --steps 1");
    EXPECT_NE(r.code, 0);
    EXPECT_NE(r.out.find("--stem-effects"), std::string::npos) << r.out;
}

// ---------------------------------------------------------------- data-parallel training (--processes, --world-size)

namespace {

// The first Adam moment after one step is 0.1 x the gradient: two runs' gradients compared tensor by tensor,
// relative to each tensor's largest entry. Returns the median over tensors and the worst over the tensors whose
// gradient matters (largest entry at least 1e-3 of the largest of all: BatchNorm biases followed by another
// BatchNorm have a gradient of zero up to rounding, whose rounding differs with any change of summation order).
std::pair<double, double> gradient_differences(const std::string& run_a, const std::string& run_b) {
    const auto a = safetensors::load(run_a + "/checkpoint.safetensors");
    const auto b = safetensors::load(run_b + "/checkpoint.safetensors");
    double largest = 0;
    for (const auto& [name, t] : a.tensors)
        if (name.rfind("adam.m.", 0) == 0) largest = std::max(largest, t.abs().max().item<double>());
    std::vector<double> rel;
    double worst = 0;
    for (const auto& [name, t] : a.tensors) {
        if (name.rfind("adam.m.", 0) != 0) continue;
        const at::Tensor* u = b.find(name);
        EXPECT_TRUE(u) << name;
        if (!u) continue;
        const double scale = t.abs().max().item<double>();
        const double r = (t.to(at::kDouble) - u->to(at::kDouble)).abs().max().item<double>() / std::max(scale, 1e-30);
        rel.push_back(r);
        if (scale >= 1e-3 * largest) worst = std::max(worst, r);
    }
    if (rel.empty()) return {1e9, 1e9};
    std::nth_element(rel.begin(), rel.begin() + static_cast<long>(rel.size() / 2), rel.end());
    return {rel[rel.size() / 2], worst};
}

std::string train_flags(const std::string& run, int steps) {
    return " --data " + tiny_cache() + " -o " + run + " --batch 4 --steps " + std::to_string(steps) +
           " --val-every 0 --checkpoint-every 1 --seed 3";
}

}  // namespace

// Two processes, each embedding half of every batch, compute the gradients of one process training on the whole
// batch (synchronised BatchNorm, the global batch's dropout and drop-connect masks, the K x K loss over the
// gathered embeddings): as close as one process is to itself at another thread count.
TEST(Distributed, TwoProcessesComputeTheGradientsOfOneProcessOnTheWholeBatch) {
    if (!train::distributed_available()) GTEST_SKIP() << "built without Gloo";
    const std::string base = testutil::temp_dir("train_dist_grad");
    auto r = testutil::run_cli("--threads 1 train" + train_flags(base + "/one", 1));
    ASSERT_EQ(r.code, 0) << r.out;
    r = testutil::run_cli("--threads 2 train" + train_flags(base + "/one_2threads", 1));
    ASSERT_EQ(r.code, 0) << r.out;
    r = testutil::run_cli("--threads 1 train --processes 2" + train_flags(base + "/two", 1));
    ASSERT_EQ(r.code, 0) << r.out;
    EXPECT_NE(r.out.find("2 local processes"), std::string::npos) << r.out;
    // Only rank 0 wrote, once.
    EXPECT_EQ(read_log(base + "/two").loss.size(), 1u);

    const auto [threads_median, threads_worst] = gradient_differences(base + "/one", base + "/one_2threads");
    const auto [median, worst] = gradient_differences(base + "/one", base + "/two");
    EXPECT_LT(median, 1e-3) << "1 vs 2 threads: " << threads_median;
    EXPECT_LT(worst, 2e-2) << "1 vs 2 threads: " << threads_worst;
    EXPECT_NEAR(read_log(base + "/two").loss[0], read_log(base + "/one").loss[0], 1e-3 * read_log(base + "/one").loss[0]);
}

// A run started on two processes continues on one (or any world size that divides the batch): the state
// travels in the checkpoint, the global batch is the same.
TEST(Distributed, ARunResumesWithAnotherWorldSize) {
    if (!train::distributed_available()) GTEST_SKIP() << "built without Gloo";
    const std::string base = testutil::temp_dir("train_dist_resume");
    auto r = testutil::run_cli("--threads 1 train --processes 2" + train_flags(base + "/run", 2));
    ASSERT_EQ(r.code, 0) << r.out;
    r = testutil::run_cli("train --resume " + base + "/run --steps 3");
    ASSERT_EQ(r.code, 0) << r.out;
    r = testutil::run_cli("--threads 1 train" + train_flags(base + "/one", 3));
    ASSERT_EQ(r.code, 0) << r.out;
    const auto resumed = read_log(base + "/run").loss, one = read_log(base + "/one").loss;
    ASSERT_EQ(resumed.size(), 3u);
    for (size_t i = 0; i < 3; ++i) EXPECT_NEAR(resumed[i], one[i], 0.01 * std::abs(one[i])) << "step " << i + 1;
    EXPECT_EQ(safetensors::load(base + "/run/checkpoint.safetensors").metadata.at("step"), "3");
}

// A rank that dies makes the others stop with an error that says so (not a hang), and no rank but 0 writes.
TEST(Distributed, ARankThatDiesStopsTheOthersWithAClearError) {
    if (!train::distributed_available()) GTEST_SKIP() << "built without Gloo";
    const std::string base = testutil::temp_dir("train_dist_dead");
    const std::string run = base + "/run";
    const std::string port = std::to_string(20000 + getpid() % 20000);
    auto start = [&](int rank) {
        const pid_t pid = fork();
        if (pid == 0) {
            const std::string cmd = std::string(COCOLA_CLI) + " --threads 1 train" + train_flags(run, 1000) +
                                    " --world-size 2 --rank " + std::to_string(rank) + " --master 127.0.0.1:" + port +
                                    " --dist-timeout 120 > " + base + "/rank" + std::to_string(rank) + ".txt 2>&1";
            execl("/bin/sh", "sh", "-c", ("exec " + cmd).c_str(), static_cast<char*>(nullptr));
            _exit(127);
        }
        return pid;
    };
    const pid_t rank0 = start(0), rank1 = start(1);
    auto log_rows = [&] {  // rows of log.csv (0 before rank 0 made it)
        std::ifstream in(run + "/log.csv");
        const auto lines = std::count(std::istreambuf_iterator<char>(in), {}, '\n');
        return static_cast<size_t>(std::max<long>(0, lines - 1));
    };
    int status = 0;
    bool exited = false;
    for (int waited = 0; waited < 1200 && log_rows() < 2; ++waited) {
        if (waitpid(rank0, &status, WNOHANG) == rank0) {
            exited = true;
            break;
        }
        usleep(100000);
    }
    ASSERT_FALSE(exited) << testutil::read_all(base + "/rank0.txt");
    ASSERT_GE(log_rows(), 2u) << testutil::read_all(base + "/rank0.txt");
    kill(rank1, SIGKILL);
    waitpid(rank1, nullptr, 0);
    // Rank 0 notices at its next collective, well before the 120 s timeout.
    for (int waited = 0; waited < 600 && !exited; ++waited) {
        if (waitpid(rank0, &status, WNOHANG) == rank0) exited = true;
        else usleep(100000);
    }
    if (!exited) {
        kill(rank0, SIGKILL);
        waitpid(rank0, nullptr, 0);
    }
    ASSERT_TRUE(exited) << "rank 0 still running 60 s after rank 1 died";
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) != 0);
    const std::string out = testutil::read_all(base + "/rank0.txt");
    EXPECT_NE(out.find("lost the group"), std::string::npos) << out;
    // The run is resumable from rank 0's last checkpoint.
    EXPECT_NO_THROW(safetensors::load(run + "/checkpoint.safetensors"));
}

TEST(Distributed, WorldSizesThatDoNotDivideTheBatchAndBadRanksAreRefused) {
    const std::string base = testutil::temp_dir("train_dist_bad");
    auto r = testutil::run_cli("train --data " + tiny_cache() + " -o " + base + "/a --batch 4 --steps 1 --world-size 2 --rank 2");
    EXPECT_NE(r.code, 0);
    EXPECT_NE(r.out.find("--rank 2 must be below --world-size 2"), std::string::npos) << r.out;
    r = testutil::run_cli("train --data " + tiny_cache() + " -o " + base + "/b --batch 4 --steps 1 --world-size 2 --master nohost");
    EXPECT_NE(r.code, 0);
    if (train::distributed_available()) {
        EXPECT_NE(r.out.find("--master must be HOST:PORT"), std::string::npos) << r.out;
        r = testutil::run_cli("--threads 1 train --processes 3 --data " + tiny_cache() + " -o " + base +
                              "/c --batch 4 --steps 1 --val-every 0");
        EXPECT_NE(r.code, 0);
        EXPECT_NE(r.out.find("--batch 4 must be a multiple of --world-size 3"), std::string::npos) << r.out;
        EXPECT_FALSE(fs::exists(base + "/c/checkpoint.safetensors"));
    }
}
