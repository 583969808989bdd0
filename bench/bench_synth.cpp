// Synth speed: seconds of audio rendered per wall second, procedural songs and MIDI files, one thread and all.
// Usage: bench_synth [songs=16] [seconds=30]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include "cocola/synth.hpp"

using namespace cocola;
using clk = std::chrono::steady_clock;

static double since(clk::time_point t) { return std::chrono::duration<double>(clk::now() - t).count(); }

int main(int argc, char** argv) {
    const int songs = argc > 1 ? std::atoi(argv[1]) : 16;
    const double seconds = argc > 2 ? std::atof(argv[2]) : 30.0;
    if (!std::filesystem::exists(synth::kDefaultSoundFont)) {
        std::printf("no SoundFont at %s; install timgm6mb-soundfont\n", synth::kDefaultSoundFont);
        return 0;
    }
    auto t = clk::now();
    size_t notes = 0;
    for (int i = 0; i < songs; ++i)
        for (const auto& p : synth::compose(i, seconds).parts) notes += p.notes.size();
    const double compose_s = since(t);
    std::printf("compose: %d songs of %.0f s (%zu notes) in %.3f s\n", songs, seconds, notes, compose_s);

    synth::Renderer r;
    synth::RenderOptions ro;
    ro.max_seconds = seconds;
    t = clk::now();
    size_t stems = 0;
    for (int i = 0; i < songs; ++i) stems += r.render_stems(synth::compose(i, seconds).to_midi(), ro, "song").size();
    const double stems_s = since(t);
    t = clk::now();
    for (int i = 0; i < songs; ++i) r.render_mix(synth::compose(i, seconds).to_midi(), ro, "song");
    const double mix_s = since(t);
    const double audio = songs * seconds;
    std::printf("1 thread, per-channel stems (%zu stems): %.0f s of audio per wall second\n", stems, audio / stems_s);
    std::printf("1 thread, one stereo mix (baseline):     %.0f s of audio per wall second (stems cost %.2fx)\n",
                audio / mix_s, stems_s / mix_s);

    const unsigned n = std::max(1u, std::thread::hardware_concurrency());
    const auto dir = std::filesystem::temp_directory_path() / "cocola_bench_synth";
    std::filesystem::remove_all(dir);
    synth::SetOptions so;
    so.out_dir = dir.string();
    so.jobs = static_cast<int>(n);
    auto rep = synth::write_procedural_set(0, songs, seconds, so);
    std::printf("%u threads, set written to disk: %.0f s of audio per wall second (%.1f s for %.0f s of audio)\n", n,
                rep.audio_seconds / rep.wall_seconds, rep.wall_seconds, rep.audio_seconds);

    const std::string msx = "/usr/share/games/openttd/baseset/openmsx";
    if (std::filesystem::exists(msx)) {
        const auto mdir = std::filesystem::temp_directory_path() / "cocola_bench_synth_midi";
        std::filesystem::remove_all(mdir);
        so.out_dir = mdir.string();
        rep = synth::write_midi_set(msx, so);
        std::printf("%u threads, openttd-openmsx (%zu songs, %zu stems): %.0f s of audio per wall second "
                    "(%.1f s for %.0f s)\n",
                    n, rep.tracks_written, rep.stems, rep.audio_seconds / rep.wall_seconds, rep.wall_seconds,
                    rep.audio_seconds);
        std::filesystem::remove_all(mdir);
    }
    std::filesystem::remove_all(dir);
    return 0;
}
