// Model and scoring throughput, both golden models, at 1 thread and at all threads:
//   model alone : pairs/s of embedding + scoring precomputed features (B0 ~0.49 GFLOP per 5 s clip)
//   end to end  : pairs/s of `cocola score` work from WAV files (decode, features, model, score)
// Baseline in the same run: the same weights through the eager, unfolded, channels-first module path (what
// PyTorch eager runs for the reference). Usage: bench_model [--pairs N]
#include <c10/core/InferenceMode.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <thread>

#include "cocola/audio.hpp"
#include "cocola/features.hpp"
#include "cocola/model.hpp"
#include "cocola/runtime.hpp"
#include "cocola/score.hpp"
#include "model/cocola_net.hpp"

using namespace cocola;

namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

template <typename F>
double best_rate(int units, int reps, F&& f) {
    f();  // warm-up
    double best = 0;
    for (int r = 0; r < reps; ++r) {
        const double t0 = now();
        f();
        best = std::max(best, units / (now() - t0));
    }
    return best;
}

}  // namespace

int main(int argc, char** argv) {
    int pairs = 16;
    for (int i = 1; i < argc; ++i)
        if (!std::strcmp(argv[i], "--pairs") && i + 1 < argc) pairs = std::atoi(argv[++i]);
    const int all = static_cast<int>(std::thread::hardware_concurrency());
    const std::string data = COCOLA_TEST_DATA;
    const auto tmp = std::filesystem::temp_directory_path() / "cocola_bench_model";
    std::filesystem::create_directories(tmp);
    // End-to-end inputs: 5 s golden clips, written as 16-bit WAVs like typical user files.
    const char* clips[] = {"00_triad", "01_drums", "02_bass", "03_triad_drums_mix"};
    std::vector<std::pair<std::string, std::string>> pair_files;
    for (int i = 0; i < pairs; ++i) {
        auto a = audio::load_mono(data + "/golden/inputs/" + clips[i % 4] + ".wav");
        auto b = audio::load_mono(data + "/golden/inputs/" + clips[(i + 1) % 4] + ".wav");
        const std::string pa = (tmp / ("c" + std::to_string(i) + ".wav")).string();
        const std::string pb = (tmp / ("a" + std::to_string(i) + ".wav")).string();
        audio::write_wav(pa, a);
        audio::write_wav(pb, b);
        pair_files.emplace_back(pa, pb);
    }
    std::printf("COCOLA model throughput (pairs/s; a pair = 2 windows of 5 s), %d pairs per run, best of 3\n", pairs);
    for (const std::string kind : {"mel", "hpss"}) {
        auto m = model::Model::load(data + "/golden/models/cocola_" + kind + "_seed0.safetensors");
        const int C = m.config().in_channels();
        at::Tensor feats = at::randn({2L * pairs, C, 64, 501}) * 10 - 40;
        for (int threads : {1, all}) {
            runtime::set_threads(threads);
            const double fast = best_rate(pairs, 3, [&] {
                auto e = m.embed(feats);
                m.pair_scores(e.slice(0, 0, pairs), e.slice(0, pairs));
            });
            const double eager = best_rate(pairs, 2, [&] {
                c10::InferenceMode guard;
                auto e = m.net().embed(feats);
                m.net().similarity(e.slice(0, 0, pairs), e.slice(0, pairs));
            });
            eval::ScoreOptions o;
            o.files_per_batch = 32;
            const double e2e = best_rate(pairs, 2, [&] { eval::score_pairs(m, pair_files, o); });
            std::printf("  %-4s %2d thread(s): model %7.2f pairs/s (%5.1f GFLOP/s) | eager baseline %6.2f pairs/s "
                        "-> %.2fx | end to end %6.2f pairs/s\n",
                        kind.c_str(), threads, fast, fast * 2 * 0.49, eager, fast / eager, e2e);
        }
    }
    std::printf("issue's reference numbers (official Python, 1 thread): model alone 11.9 pairs/s, end to end "
                "8.8 (mel) / 1.5 (hpss) pairs/s\n");
    std::filesystem::remove_all(tmp);
    return 0;
}
