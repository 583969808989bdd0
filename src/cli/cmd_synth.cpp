#include <cstdio>
#include <iostream>

#include "cli/commands.hpp"
#include "cli/progress.hpp"
#include "cocola/error.hpp"
#include "cocola/runtime.hpp"
#include "cocola/synth.hpp"

namespace cocola::cli {

Runner add_synth_command(CLI::App& app) {
    struct Opts {
        synth::SetOptions set;
        size_t tracks = 16;
        double seconds = 30;
        uint64_t seed = 0;
        std::string midi_dir;
        bool demo = false;
    };
    auto o = std::make_shared<Opts>();
    app.add_option("-o,--out", o->set.out_dir, "Output directory (generic layout: DIR/<split>/<track>/<stem>.wav)")
        ->required();
    app.add_option("--tracks", o->tracks, "Number of procedural songs")->capture_default_str();
    app.add_option("--seconds", o->seconds, "Length of each procedural song in seconds (0 < s <= 3600)")
        ->capture_default_str();
    app.add_option("--seed", o->seed, "Seed: the same seed gives the same songs")->capture_default_str();
    app.add_option("--soundfont", o->set.soundfont, "General MIDI SoundFont (.sf2/.sf3)")->capture_default_str();
    app.add_option("--midi", o->midi_dir,
                   "Render the .mid files under DIR instead (one stem per MIDI channel, one synth pass per song)");
    app.add_option("--split", o->set.split,
                   "auto (0.8/0.1/0.1 by track name), none (no split folder), or a split name for every track")
        ->capture_default_str();
    app.add_option("--jobs", o->set.jobs, "Worker threads (default: all cores)");
    app.add_option("--effects", o->set.effects,
                   "none (dry renders), or random: each stem through its own random production chain (equalizer, "
                   "filters, compression, overdrive, chorus, reverb; SoX), the same for a track whatever the "
                   "SoundFont, recorded in meta.json")
        ->check(CLI::IsMember({"none", "random"}))
        ->capture_default_str();
    app.add_option("--playing", o->set.playing,
                   "Procedural songs: trained (the playing styles of the shipped models' training sets), unseen "
                   "(held-out drum grooves, bass lines, comping, arpeggios and lead rhythms: a test set of playing "
                   "no model trained on), or varied (each role half the time from an extra pool, disjoint from "
                   "the held-out one: more variety to train on)")
        ->check(CLI::IsMember({"trained", "unseen", "varied"}))
        ->capture_default_str();
    app.add_flag("--mix", o->set.write_mix, "Also write mix.wav (the sum of the stems) in each track folder");
    app.add_flag("--overwrite", o->set.overwrite, "Render tracks again even if their folder is complete");
    app.add_flag("--demo", o->demo, "The built-in demo set: 240 songs of 30 s, 2 hours (seed 0 unless --seed)");
    app.footer(
        "Each track folder holds one WAV per stem (16 kHz mono float; the stems sum to the mix) and "
        "meta.json (key, tempo, meter, chords, programs, seed); procedural tracks also keep song.mid. Complete "
        "tracks are skipped, so an interrupted run resumes.");
    return [o]() {
        if (o->set.jobs <= 0) o->set.jobs = runtime::threads();
        if (o->demo) {
            o->tracks = 240;
            o->seconds = 30;
        }
        const bool midi = !o->midi_dir.empty();
        if (midi && o->set.playing != "trained")
            throw Error("synth: --playing applies to procedural songs; " + o->midi_dir + " holds MIDI files that already say how they are played");
        Progress bar(midi ? "synth --midi" : "synth", midi ? 0 : o->tracks);
        Progress* pb = &bar;
        std::unique_ptr<Progress> midi_bar;
        auto progress = [&](size_t done, size_t total, const std::string& msg) {
            if (midi && !midi_bar) {
                midi_bar = std::make_unique<Progress>("synth --midi", total);
                pb = midi_bar.get();
            }
            if (!msg.empty()) pb->message(msg);
            pb->tick();
        };
        synth::SetReport rep = midi ? synth::write_midi_set(o->midi_dir, o->set, progress)
                                    : synth::write_procedural_set(o->seed, o->tracks, o->seconds, o->set, progress);
        pb->finish();
        std::printf("%zu tracks written (%zu stems, %.1f s of audio), %zu already complete, %zu failed, in %.1f s: "
                    "%.1f s of audio per wall second\n",
                    rep.tracks_written, rep.stems, rep.audio_seconds, rep.tracks_existing, rep.tracks_failed,
                    rep.wall_seconds, rep.wall_seconds > 0 ? rep.audio_seconds / rep.wall_seconds : 0.0);
        return rep.tracks_failed ? 1 : 0;
    };
}

}  // namespace cocola::cli
