// libfluidsynth rendering: one synth pass with an audio group per MIDI channel, so each channel's voices land in
// their own buffers while sharing everything else (voice allocation, timing) with an ordinary render. Rendering
// channel-split files separately does not add up to the mix; this does, to float rounding.
#include <fluidsynth.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <mutex>

#include "cocola/error.hpp"
#include "cocola/synth.hpp"

namespace cocola::synth {

namespace {

constexpr int kBlock = 512;  // frames per fluid_synth_process call; any size gives the same samples

void init_fluidsynth_once() {
    static std::once_flag once;
    std::call_once(once, [] {
        // The library never prints: fluidsynth's own messages would land on stderr. Failures are detected
        // through return codes instead.
        for (int level : {FLUID_PANIC, FLUID_ERR, FLUID_WARN, FLUID_INFO, FLUID_DBG})
            fluid_set_log_function(level, nullptr, nullptr);
        // fluidsynth initialises process-wide state (its default modulators among it) in the first
        // new_fluid_synth. A set rendered on 2 worker threads once gave one song other channel levels than a
        // 1-thread render (the same notes, stems 2.5x to 8.6x louder), which that first-call set-up racing
        // between two threads would explain. Creating one synth here, once, takes the set-up out of the race.
        fluid_settings_t* settings = new_fluid_settings();
        if (settings) {
            if (fluid_synth_t* synth = new_fluid_synth(settings)) delete_fluid_synth(synth);
            delete_fluid_settings(settings);
        }
    });
}

fluid_settings_t* make_settings(int sample_rate, int groups, double gain) {
    fluid_settings_t* s = new_fluid_settings();
    if (!s) throw Error("fluidsynth: cannot create settings");
    fluid_settings_setnum(s, "synth.sample-rate", sample_rate);
    fluid_settings_setint(s, "synth.audio-channels", groups);
    fluid_settings_setint(s, "synth.audio-groups", groups);
    // Effects would be a shared bus that no stem owns: off, so stems add up to the mix.
    fluid_settings_setint(s, "synth.reverb.active", 0);
    fluid_settings_setint(s, "synth.chorus.active", 0);
    fluid_settings_setnum(s, "synth.gain", gain);
    fluid_settings_setint(s, "synth.cpu-cores", 1);
    fluid_settings_setint(s, "synth.threadsafe-api", 0);
    fluid_settings_setint(s, "synth.polyphony", 512);
    // Events are timed by the samples we pull, not by the wall clock: rendering is as fast as the CPU allows
    // and identical on every run.
    fluid_settings_setstr(s, "player.timing-source", "sample");
    return s;
}

}  // namespace

struct Renderer::Impl {
    std::string sf;
    // Settings are read when a synth is created; kept per (rate, layout, gain) for reuse across songs.
    struct Cached {
        int rate, groups;
        double gain;
        fluid_settings_t* s;
    };
    mutable std::vector<Cached> settings;
    ~Impl() {
        for (auto& c : settings) delete_fluid_settings(c.s);
    }
    fluid_settings_t* get(int rate, int groups, double gain) const {
        for (auto& c : settings)
            if (c.rate == rate && c.groups == groups && c.gain == gain) return c.s;
        settings.push_back({rate, groups, gain, make_settings(rate, groups, gain)});
        return settings.back().s;
    }

    // Plays `midi` and hands each block's output buffers (2 per group) to `sink(block, frames)`.
    template <class Sink>
    void play(const std::vector<uint8_t>& midi, const RenderOptions& opt, int groups, const std::string& what,
              const MidiSummary& summary, Sink&& sink) const {
        fluid_synth_t* synth = new_fluid_synth(get(opt.sample_rate, groups, opt.gain));
        if (!synth) throw Error(what + ": fluidsynth cannot create a synthesizer");
        fluid_player_t* player = nullptr;
        auto cleanup = [&] {
            if (player) delete_fluid_player(player);
            delete_fluid_synth(synth);
        };
        try {
            if (fluid_synth_sfload(synth, sf.c_str(), 1) == FLUID_FAILED)
                throw Error(sf + ": not a SoundFont fluidsynth can load");
            player = new_fluid_player(synth);
            if (!player) throw Error(what + ": fluidsynth cannot create a MIDI player");
            if (fluid_player_add_mem(player, midi.data(), midi.size()) != FLUID_OK)
                throw Error(what + ": fluidsynth rejected the MIDI data");
            if (fluid_player_play(player) != FLUID_OK) throw Error(what + ": fluidsynth cannot play the MIDI data");

            std::vector<std::vector<float>> buf(2 * groups, std::vector<float>(kBlock));
            std::vector<float*> out(2 * groups);
            for (int i = 0; i < 2 * groups; ++i) out[i] = buf[i].data();
            const int64_t target = opt.max_seconds > 0 ? std::llround(opt.max_seconds * opt.sample_rate) : -1;
            // Without a target length: the song's events, then a bounded tail for releases; the hard cap guards
            // against a player that never reports the end.
            const int64_t tail_max = std::llround(opt.tail_seconds * opt.sample_rate);
            const int64_t hard_cap = std::llround((summary.seconds + opt.tail_seconds + 30.0) * opt.sample_rate);
            int64_t done = 0, tail = 0;
            while (true) {
                int n = kBlock;
                if (target >= 0) {
                    if (done >= target) break;
                    n = static_cast<int>(std::min<int64_t>(kBlock, target - done));
                } else {
                    const bool playing = fluid_player_get_status(player) == FLUID_PLAYER_PLAYING;
                    if (!playing) {
                        if (tail > 0 && fluid_synth_get_active_voice_count(synth) == 0) break;
                        if (tail >= tail_max) break;
                        tail += n;
                    }
                    if (done >= hard_cap) break;
                }
                // fluid_synth_process mixes into the buffers: clear them first.
                for (auto& b : buf) std::fill(b.begin(), b.begin() + n, 0.0f);
                if (fluid_synth_process(synth, n, 0, nullptr, 2 * groups, out.data()) != FLUID_OK)
                    throw Error(what + ": fluidsynth failed while rendering");
                sink(buf, n);
                done += n;
            }
        } catch (...) {
            cleanup();
            throw;
        }
        cleanup();
    }
};

Renderer::Renderer(const std::string& soundfont) : impl_(std::make_unique<Impl>()), soundfont_(soundfont) {
    init_fluidsynth_once();
    std::error_code ec;
    if (!std::filesystem::is_regular_file(soundfont, ec))
        throw Error(soundfont + ": no such SoundFont (install timgm6mb-soundfont or pass --soundfont)");
    impl_->sf = soundfont;
}
Renderer::~Renderer() = default;

std::vector<ChannelAudio> Renderer::render_stems(const std::vector<uint8_t>& midi, const RenderOptions& opt,
                                                 const std::string& what) const {
    const MidiSummary summary = summarize_midi(midi, what);
    std::vector<ChannelAudio> stems;
    std::vector<int> slot(16, -1);
    for (int ch = 0; ch < 16; ++ch)
        if (summary.notes[ch] > 0) {
            slot[ch] = static_cast<int>(stems.size());
            stems.push_back({ch, {}});
        }
    if (stems.empty()) throw Error(what + ": the MIDI file plays no notes");
    impl_->play(midi, opt, 16, what, summary, [&](const std::vector<std::vector<float>>& buf, int n) {
        for (int ch = 0; ch < 16; ++ch) {
            if (slot[ch] < 0) {
                continue;  // channels without notes are silent; nothing to keep
            }
            auto& a = stems[slot[ch]].audio;
            const float* l = buf[2 * ch].data();
            const float* r = buf[2 * ch + 1].data();
            for (int i = 0; i < n; ++i) a.push_back(0.5f * (l[i] + r[i]));
        }
    });
    return stems;
}

std::vector<float> Renderer::render_mix(const std::vector<uint8_t>& midi, const RenderOptions& opt,
                                        const std::string& what) const {
    const MidiSummary summary = summarize_midi(midi, what);
    std::vector<float> mix;
    impl_->play(midi, opt, 1, what, summary, [&](const std::vector<std::vector<float>>& buf, int n) {
        for (int i = 0; i < n; ++i) mix.push_back(0.5f * (buf[0][i] + buf[1][i]));
    });
    return mix;
}

}  // namespace cocola::synth
