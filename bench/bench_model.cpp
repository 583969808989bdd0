// Model and scoring throughput, both golden models, at 1 thread and at all threads:
//   model alone : pairs/s of embedding + scoring precomputed features (B0 ~0.49 GFLOP per 5 s clip)
//   end to end  : pairs/s of `cocola score` work from WAV files (decode, features, model, score)
// Baselines in the same run: the same weights through the eager, unfolded, channels-first module path (what
// PyTorch eager runs), and the network in eager PyTorch from Python (reference_model.py, Debian's python3-torch;
// its front-ends from reference_frontends.py need python3-torchaudio and python3-scipy), after a parity check of
// its embeddings against ours. Usage: bench_model [--pairs N] [--no-python]
#include <c10/core/InferenceMode.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <thread>

#include "bench_timing.hpp"
#include "cocola/audio.hpp"
#include "cocola/npy.hpp"
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
    bool python = true;
    for (int i = 1; i < argc; ++i) {
        if (!std::strcmp(argv[i], "--pairs") && i + 1 < argc) pairs = std::atoi(argv[++i]);
        if (!std::strcmp(argv[i], "--no-python")) python = false;
    }
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
    const std::string pairs_csv = (tmp / "pairs.csv").string();
    {
        std::FILE* f = std::fopen(pairs_csv.c_str(), "w");
        for (const auto& [a, b] : pair_files) std::fprintf(f, "%s,%s\n", a.c_str(), b.c_str());
        std::fclose(f);
    }
    std::printf("COCOLA model throughput (pairs/s; a pair = 2 windows of 5 s), %d pairs per run, best of 3\n", pairs);
    for (const std::string kind : {"mel", "hpss"}) {
        const std::string weights = data + "/golden/models/cocola_" + kind + "_seed0.safetensors";
        auto m = model::Model::load(weights);
        const int C = m.config().in_channels();
        at::Tensor feats = at::randn({2L * pairs, C, 64, 501}) * 10 - 40;
        double fast1 = 0, e2e1 = 0;
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
            if (threads == 1) fast1 = fast, e2e1 = e2e;
            std::printf("  %-4s %2d thread(s): model %7.2f pairs/s (%5.1f GFLOP/s) | eager baseline %6.2f pairs/s "
                        "-> %.2fx | end to end %6.2f pairs/s\n",
                        kind.c_str(), threads, fast, fast * 2 * 0.49, eager, fast / eager, e2e);
        }
        if (!python) continue;
        // Parity first: a baseline that computed something else would make any ratio meaningless.
        const std::string fin = (tmp / "feats.npy").string(), fout = (tmp / "python_embeddings.npy").string();
        const at::Tensor check = feats.slice(0, 0, 4).contiguous();
        npy::save(fin, {check.size(0), C, 64, 501}, check.data_ptr<float>());
        if (bench::python_reference("embed " + weights + " " + fin + " " + fout) != 0 || !std::filesystem::exists(fout)) {
            std::printf("  %-4s python reference unavailable (needs /usr/bin/python3 with python3-torch)\n", kind.c_str());
            continue;
        }
        const auto pe = npy::load(fout);
        runtime::set_threads(1);
        const at::Tensor ours = m.embed(check);
        const at::Tensor theirs = at::from_blob(const_cast<float*>(pe.data.data()), ours.sizes(), at::kFloat);
        const double diff = (ours - theirs).abs().max().item<double>();
        const double py_model = bench::python_reference("model " + weights + " --pairs " + std::to_string(pairs) + " --threads 1");
        const double py_e2e = bench::python_reference("score " + weights + " --pairs-csv " + pairs_csv + " --threads 1");
        std::printf("  %-4s python eager reference, same run, 1 thread (embeddings within %.1e of ours): model %.2f "
                    "pairs/s -> %.2fx | end to end ",
                    kind.c_str(), diff, py_model, py_model > 0 ? fast1 / py_model : 0.0);
        if (py_e2e > 0)
            std::printf("%.2f pairs/s -> %.1fx\n", py_e2e, e2e1 / py_e2e);
        else
            std::printf("unavailable (needs python3-torchaudio and python3-scipy)\n");
    }
    std::filesystem::remove_all(tmp);
    return 0;
}
