// Sampler speed: (anchor, positive) windows per second from the stem cache, against decoding the stems' audio
// files per window (what a loader without the cache does).
// Usage: bench_sampler [CACHE]   (without CACHE: a procedural set of 40 songs x 30 s is made and indexed first)
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "cocola/audio.hpp"
#include "cocola/data.hpp"
#include "cocola/synth.hpp"

using namespace cocola;
using clk = std::chrono::steady_clock;

static double since(clk::time_point t) { return std::chrono::duration<double>(clk::now() - t).count(); }

int run(int argc, char** argv);

int main(int argc, char** argv) {
    if (argc > 1 && (std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h")) {
        std::printf("usage: bench_sampler [CACHE]   (without CACHE: a 40-song procedural set is made in /tmp)\n");
        return 0;
    }
    try {
        return run(argc, argv);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench_sampler: error: %s\n", e.what());
        return 1;
    }
}

int run(int argc, char** argv) {
    std::string cache_dir, root;
    if (argc > 1) {
        cache_dir = argv[1];
    } else {
        const auto base = std::filesystem::temp_directory_path() / "cocola_bench_sampler";
        root = (base / "set").string();
        cache_dir = (base / "cache").string();
        synth::SetOptions so;
        so.out_dir = root;
        so.split = "train";
        auto t = clk::now();
        const auto rep = synth::write_procedural_set(1, 40, 30.0, so);
        std::printf("made %zu songs (%.0f s of audio) in %.1f s\n", rep.tracks_written + rep.tracks_existing,
                    40 * 30.0, since(t));
        t = clk::now();
        data::CacheOptions co;
        const auto cr = data::build_cache(data::scan(root), cache_dir, co);
        std::printf("indexed %zu tracks (%.2f h) in %.1f s\n", cr.tracks_total, cr.hours, since(t));
    }
    data::StemCache cache(cache_dir);
    data::SamplerOptions o;
    o.batch = 32;
    o.split = cache.tracks_in("train").size() >= 32 ? "train" : "all";
    data::PairSampler ps(cache, o);
    auto t = clk::now();
    const size_t nb = ps.batches_per_epoch(0);
    std::printf("epoch plan: %zu batches of K=32, L=80000 in %.3f s\n", nb, since(t));

    t = clk::now();
    size_t windows = 0;
    for (size_t i = 0; i < nb; ++i) windows += ps.batch(0, i).K;
    const double direct = windows / since(t);
    std::printf("1 thread, direct:          %8.0f windows/s\n", direct);

    const int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    t = clk::now();
    windows = 0;
    {
        data::Prefetcher pf(ps, 1, threads, 8);
        while (auto b = pf.next()) windows += b->K;
    }
    const double pre = windows / since(t);
    std::printf("%d threads, prefetched:    %8.0f windows/s\n", threads, pre);

    // Baseline: decode each window's stems from the source files (whole-file decode, as a naive loader does).
    if (!root.empty()) {
        const auto ds = data::scan(root);
        t = clk::now();
        size_t n = 0;
        for (size_t k = 0; k < 32 && k < ds.tracks.size(); ++k) {
            for (const auto& s : ds.tracks[k].stems) audio::load_mono(s.path);
            ++n;
        }
        const double base = n / since(t);
        std::printf("baseline, decode files:    %8.0f windows/s  (cache: %.0fx faster, prefetched)\n", base, pre / base);
        std::filesystem::remove_all(std::filesystem::path(root).parent_path());
    }
    // For scale: a trainer running 10 steps/s at K = 32 consumes 320 windows/s.
    std::printf("headroom over 10 training steps/s at K=32 (320 windows/s): %.0fx\n", pre / 320);
    return 0;
}
