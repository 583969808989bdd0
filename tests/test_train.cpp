// Training: learning happens, resume equals an uninterrupted run, and a kill never leaves a broken checkpoint.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "cocola/data.hpp"
#include "cocola/safetensors.hpp"
#include "cocola/synth.hpp"
#include "cocola/train.hpp"
#include "test_util.hpp"

using namespace cocola;
namespace fs = std::filesystem;

namespace {

// A tiny procedural stem set and its cache, made once for the whole file.
const std::string& tiny_cache() {
    static const std::string dir = [] {
        const std::string root = testutil::temp_dir("train_data");
        synth::SetOptions so;
        so.out_dir = root + "/songs";
        so.split = "auto";
        synth::write_procedural_set(7, 16, 12.0, so);
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

struct Log {
    std::vector<double> loss, acc;
};
Log read_log(const std::string& run_dir) {
    std::ifstream in(run_dir + "/log.csv");
    std::string line;
    std::getline(in, line);
    Log l;
    while (std::getline(in, line)) {
        std::stringstream ss(line);
        std::string f;
        std::vector<std::string> v;
        while (std::getline(ss, f, ',')) v.push_back(f);
        l.loss.push_back(std::stod(v[2]));
        l.acc.push_back(std::stod(v[3]));
    }
    return l;
}

double mean(const std::vector<double>& v, size_t a, size_t b) {
    double s = 0;
    for (size_t i = a; i < b; ++i) s += v[i];
    return s / static_cast<double>(b - a);
}

}  // namespace

TEST(Train, LossFallsAndAccuracyRisesOnATinySet) {
    const std::string run = testutil::temp_dir("train_learn");
    auto o = tiny_options(run + "/r", 48);
    o.lr = 1e-4;
    o.similarity = model::Similarity::Cosine;
    o.frontend = features::Frontend::Mel;
    train::train(o, false);
    auto l = read_log(o.run_dir);
    ASSERT_EQ(l.loss.size(), 48u);
    const double first = mean(l.loss, 0, 12), last = mean(l.loss, 36, 48);
    EXPECT_LT(last, first) << "mean loss of the first 12 steps " << first << ", of the last 12 " << last;
    EXPECT_GT(mean(l.acc, 36, 48), mean(l.acc, 0, 12));
    EXPECT_TRUE(fs::exists(o.run_dir + "/curves.svg"));
    EXPECT_TRUE(fs::exists(o.run_dir + "/last.safetensors"));
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

TEST(Train, KillDuringCheckpointingNeverLeavesABrokenCheckpoint) {
    const std::string base = testutil::temp_dir("train_kill");
    const std::string run = base + "/run";
    // Start through the CLI (a separate process we can SIGKILL), checkpointing every step.
    const std::string args = "train --data " + tiny_cache() + " -o " + run +
                             " --batch 4 --steps 1000 --checkpoint-every 1 --val-every 0 --seed 5";
    int kills = 0;
    for (int attempt = 0; attempt < 4; ++attempt) {
        pid_t pid = fork();
        if (pid == 0) {
            std::string cmd = std::string(COCOLA_CLI) + " " + args + (attempt ? " --resume " + run : "") +
                              " >/dev/null 2>&1";
            if (attempt) cmd = std::string(COCOLA_CLI) + " train --resume " + run + " >/dev/null 2>&1";
            execl("/bin/sh", "sh", "-c", ("exec " + cmd).c_str(), static_cast<char*>(nullptr));
            _exit(127);
        }
        // Kill at different moments, most of them while a checkpoint is being written (every step writes one).
        usleep(static_cast<useconds_t>((6 + 3 * attempt) * 1000000 + attempt * 137000));
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
