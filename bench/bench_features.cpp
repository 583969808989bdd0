// Front-end throughput: clips/s of 5 s clips for mel and hpss, at 1 thread and at all threads.
// Baseline in the same run: bench/reference_frontends.py (torchaudio for mel; numpy + scipy.ndimage, the same
// calls librosa makes, for hpss), when /usr/bin/python3 has torchaudio and scipy.
// Also the tensor front-end (features::compute_batch_tensor, for training on a GPU) on the CPU and, in a CUDA
// build on a GPU machine, on the GPU, against the FFTW front-end at all threads in the same run.
// Usage: bench_features [--clips N] [--no-python]
#include <omp.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "cocola/features.hpp"
#include "cocola/runtime.hpp"
#include "features/frontend_torch.hpp"

using namespace cocola;

namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

std::vector<std::vector<float>> make_clips(int n) {
    // Music-like test signals: a few decaying partials plus noise bursts, different per clip.
    std::vector<std::vector<float>> clips(n, std::vector<float>(80000));
    unsigned s = 1;
    for (int c = 0; c < n; ++c)
        for (size_t i = 0; i < 80000; ++i) {
            s = s * 1664525u + 1013904223u;
            const double t = i / 16000.0;
            const double noise = ((s >> 9) / 8388608.0 - 1.0) * std::exp(-8.0 * std::fmod(t, 0.5));
            clips[c][i] = static_cast<float>(0.3 * std::sin(2 * M_PI * (110.0 + 20 * c) * t) +
                                             0.2 * std::sin(2 * M_PI * 330.0 * t) + 0.1 * noise);
        }
    return clips;
}

double clips_per_second(features::Frontend f, const std::vector<std::vector<float>>& clips, int threads) {
    runtime::set_threads(threads);
    std::vector<const float*> ptrs;
    for (auto& c : clips) ptrs.push_back(c.data());
    const size_t per = static_cast<size_t>(features::num_channels(f)) * 64 * 501;
    std::vector<float> out(per * clips.size());
    features::compute_batch(f, {ptrs[0]}, 80000, out.data());  // warm-up (plans, filterbanks)
    double best = 0;
    for (int rep = 0; rep < 3; ++rep) {
        const double t0 = now();
        features::compute_batch(f, ptrs, 80000, out.data());
        best = std::max(best, clips.size() / (now() - t0));
    }
    return best;
}

// The tensor front-end on one batch of all clips; reading one value waits for the device.
double tensor_clips_per_second(features::Frontend f, const std::vector<std::vector<float>>& clips, at::Device device) {
    at::Tensor batch = at::empty({static_cast<int64_t>(clips.size()), 80000}, at::kFloat);
    for (size_t c = 0; c < clips.size(); ++c) std::copy(clips[c].begin(), clips[c].end(), batch[c].data_ptr<float>());
    batch = batch.to(device);
    features::compute_batch_tensor(f, batch.narrow(0, 0, 1)).max().item<float>();  // warm-up
    double best = 0;
    for (int rep = 0; rep < 3; ++rep) {
        const double t0 = now();
        features::compute_batch_tensor(f, batch).max().item<float>();
        best = std::max(best, clips.size() / (now() - t0));
    }
    return best;
}

}  // namespace

int main(int argc, char** argv) {
    int n = 64;
    bool python = true;
    for (int i = 1; i < argc; ++i) {
        if (!std::strcmp(argv[i], "--clips") && i + 1 < argc) n = std::atoi(argv[++i]);
        if (!std::strcmp(argv[i], "--no-python")) python = false;
    }
    const int all = static_cast<int>(std::thread::hardware_concurrency());
    auto clips = make_clips(n);
    std::printf("front-end throughput, %d clips of 5 s, best of 3 (clips/s)\n", n);
    double ours1[2], oursN[2];
    for (int k = 0; k < 2; ++k) {
        auto f = k == 0 ? features::Frontend::Mel : features::Frontend::Hpss;
        ours1[k] = clips_per_second(f, clips, 1);
        oursN[k] = clips_per_second(f, clips, all);
        std::printf("  cocola %-4s  1 thread: %8.1f   %d threads: %8.1f\n", features::frontend_name(f).c_str(),
                    ours1[k], all, oursN[k]);
    }
    for (int k = 0; k < 2; ++k) {
        auto f = k == 0 ? features::Frontend::Mel : features::Frontend::Hpss;
        runtime::set_threads(all);
        const double cpu = tensor_clips_per_second(f, clips, at::kCPU);
        std::printf("  tensor %-4s  cpu, %d threads: %8.1f (%.2fx the FFTW path)", features::frontend_name(f).c_str(), all,
                    cpu, cpu / oursN[k]);
        if (at::hasCUDA()) {
            const double gpu = tensor_clips_per_second(f, clips, at::kCUDA);
            std::printf("   cuda: %8.1f (%.1fx the FFTW path at %d threads)", gpu, gpu / oursN[k], all);
        }
        std::printf("\n");
    }
    if (python) {
        std::string cmd = std::string("/usr/bin/python3 ") + COCOLA_BENCH_DIR + "/reference_frontends.py 2>/dev/null";
        FILE* p = popen(cmd.c_str(), "r");
        double ref[2] = {0, 0};
        if (p && std::fscanf(p, "%lf %lf", &ref[0], &ref[1]) == 2 && ref[0] > 0 && ref[1] > 0) {
            std::printf("  python reference (same run, 1 thread): mel %.1f clips/s, hpss %.2f clips/s\n", ref[0], ref[1]);
            std::printf("  ratio at 1 thread: mel %.1fx, hpss %.1fx\n", ours1[0] / ref[0], ours1[1] / ref[1]);
        } else {
            std::printf("  python reference unavailable (needs /usr/bin/python3 with torchaudio and scipy)\n");
        }
        if (p) pclose(p);
    }
    std::printf("  issue's reference numbers (official Python, 1 thread): mel 83, hpss 3.3 -> ratios %.1fx, %.1fx\n",
                ours1[0] / 83.0, ours1[1] / 3.3);
    return 0;
}
