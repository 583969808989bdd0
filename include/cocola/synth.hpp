// Multi-stem music made on this machine: procedural songs and MIDI files rendered by libfluidsynth into one stem per
// MIDI channel, in a single synthesizer pass, effects off, so that the stems add up to the mix.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "cocola/audio.hpp"
#include <vector>

namespace cocola::synth {

constexpr const char* kDefaultSoundFont = "/usr/share/sounds/sf2/TimGM6mb.sf2";
constexpr int kDrumChannel = 9;  // GM channel 10, counted from 0

// ---------------------------------------------------------------- General MIDI facts
const char* gm_program_name(int program);   // "Acoustic Grand Piano" for 0 ... 127
std::string gm_program_slug(int program);   // "acoustic_grand_piano"
const char* gm_program_class(int program);  // Slakh-style family: "Piano", "Bass", "Strings", ...

// ---------------------------------------------------------------- MIDI files
struct MidiEvent {
    int64_t tick = 0;
    uint8_t status = 0;  // channel voice status byte (0x80..0xEF), or 0xFF for a meta event
    uint8_t d1 = 0, d2 = 0;
    uint8_t meta_type = 0;
    std::vector<uint8_t> meta;  // meta payload
};

// What a MIDI file holds, per channel: enough to name stems and to check a file before rendering it.
struct MidiSummary {
    int ticks_per_quarter = 0;
    int tracks = 0;
    double seconds = 0;            // time of the last event, following the tempo map
    int notes[16] = {};            // note-on count per channel
    int program[16] = {};          // first program change per channel (0 when none)
    int bank[16] = {};             // bank select (CC0) before the first program change
    std::vector<std::string> track_names;
};

// Parses a Standard MIDI File (format 0 or 1). Throws cocola::Error naming `what` for anything malformed.
MidiSummary summarize_midi(const std::vector<uint8_t>& bytes, const std::string& what);
// Writes a format-0 Standard MIDI File. Events need not be sorted; at equal ticks note-offs go before note-ons.
std::vector<uint8_t> write_midi(std::vector<MidiEvent> events, int ticks_per_quarter);
std::vector<uint8_t> read_file_bytes(const std::string& path);

// ---------------------------------------------------------------- procedural songs
struct Note {
    int64_t tick = 0;
    int64_t dur = 0;
    int key = 60;
    int vel = 90;
};

struct Part {
    std::string role;     // drums, bass, chords, arp, lead, counter
    std::string pattern;  // the rhythm or figure the role plays, e.g. "walking", "pad", "updown16"
    int channel = 0;
    int program = 0;  // GM program (drum kit number on the drum channel)
    int volume = 100; // CC7
    std::vector<Note> notes;
};

struct ChordSpan {
    int64_t start = 0, end = 0;  // ticks
    int degree = 0;              // 0-based scale degree of the root
    std::vector<int> pcs;        // pitch classes, root first
    std::string symbol;          // "F#m7"
    std::string roman;           // "vi7"
};

struct Song {
    uint64_t seed = 0;
    int tonic = 0;  // pitch class
    std::string mode;
    double bpm = 120;  // beats per minute of the meter's beat (dotted quarter in 6/8)
    int meter_num = 4, meter_den = 4;
    int ticks_per_quarter = 480;
    int64_t bar_ticks = 1920;
    int bars = 0;
    double seconds = 0;  // the length the song is rendered to
    std::vector<std::string> form;  // section label per bar ("intro", "A", "B", ...)
    std::string playing = "trained";  // which playing styles: "trained", "unseen" (held out) or "varied"
    std::vector<ChordSpan> chords;
    std::vector<Part> parts;

    std::string key_name() const;                 // "D dorian"
    double microseconds_per_quarter() const;
    std::vector<uint8_t> to_midi() const;         // the whole song as a Standard MIDI File
    std::string to_json() const;                  // the sidecar: key, tempo, meter, chords, programs, seed
};

// A new song from `seed` lasting at least `seconds`. Same seed and length: the same song, on every platform.
// `playing` "unseen" draws drum grooves, bass lines, comping, arpeggios and lead rhythms from a held-out pool
// that "trained" (every training set) never uses: a test of coherence in playing a model never heard. "varied"
// draws each role's style half the time from a third pool, disjoint from both (more variety to train on).
Song compose(uint64_t seed, double seconds, const std::string& playing = "trained");

// ---------------------------------------------------------------- rendering
struct ChannelAudio {
    int channel = 0;
    std::vector<float> audio;  // mono (L+R)/2, at the renderer's rate
};

struct RenderOptions {
    double max_seconds = 0;     // > 0: stop exactly there (procedural songs); 0: play to the end plus the tail
    double tail_seconds = 3.0;  // after the last event, keep rendering until voices are silent, at most this long
    int sample_rate = 16000;
    // Master gain. fluidsynth's default (0.2) leaves our stems near -45 dBFS RMS, close to the activity threshold
    // the sampler uses; 0.5 lifts them by 8 dB.
    double gain = 0.5;
};

// One SoundFont and fluidsynth settings, reused across songs; each song gets a fresh synth (resetting one synth
// between songs can leave notes ringing). Not thread-safe: one Renderer per thread.
class Renderer {
   public:
    explicit Renderer(const std::string& soundfont = kDefaultSoundFont);
    ~Renderer();
    Renderer(const Renderer&) = delete;
    Renderer& operator=(const Renderer&) = delete;

    // One synth pass with an audio group per MIDI channel. Returns the channels that play notes (per `summary`),
    // all of the same length. `what` names the song in errors.
    std::vector<ChannelAudio> render_stems(const std::vector<uint8_t>& midi, const RenderOptions& opt,
                                           const std::string& what) const;
    // An ordinary stereo render of the same file, averaged to mono: what the stems must sum to.
    std::vector<float> render_mix(const std::vector<uint8_t>& midi, const RenderOptions& opt,
                                  const std::string& what) const;
    const std::string& soundfont() const { return soundfont_; }

   private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
    std::string soundfont_;
};

// ---------------------------------------------------------------- writing data sets
struct SetOptions {
    std::string out_dir;
    std::string soundfont = kDefaultSoundFont;
    std::string split = "auto";  // auto (deterministic 0.8/0.1/0.1 by track name), none, or a split name
    int jobs = 0;                // worker threads; 0: all cores
    bool write_mix = false;      // also write mix.wav (outside the generic layout's stems: readers skip it)
    bool overwrite = false;      // re-render tracks whose folder is already complete
    // "random": each stem goes through its own random chain of production effects (random_effect_chain), drawn
    // from the track and the stem's name, recorded in meta.json; "none": the dry render.
    std::string effects = "none";
    // Procedural songs only: "trained" (the playing styles every training set uses), "unseen" (the held-out
    // ones) or "varied" (the trained ones and an extra pool, half and half per role): compose().
    std::string playing = "trained";
};

// A random production chain for one stem (SoX effects, audio::apply_effects), a function of `seed`: equalizer
// bands (-9..+6 dB, 100 Hz-6 kHz) and sometimes high/low-pass filters, then maybe compression, overdrive,
// chorus and reverb. Models trained on dry renders never hear these; real recordings have them.
audio::EffectChain random_effect_chain(uint64_t seed);
// Runs `stem` through `chain` and scales the result back to the stem's RMS level (effects change the sound,
// not the mix balance).
std::vector<float> apply_stem_effects(const std::vector<float>& stem, const audio::EffectChain& chain);

struct SetReport {
    size_t tracks_written = 0, tracks_existing = 0, tracks_failed = 0, stems = 0;
    double audio_seconds = 0, wall_seconds = 0;
    std::vector<std::string> errors;
};

// Progress callback: (tracks done, total, a message or empty). Called from one thread at a time.
using SetProgress = std::function<void(size_t, size_t, const std::string&)>;

// Writes `tracks` procedural songs of `seconds` each as DIR/<split>/songNNNNN/<role>.wav + meta.json + song.mid.
// Track i depends only on (seed, i), so a larger set starts with the smaller one.
SetReport write_procedural_set(uint64_t seed, size_t tracks, double seconds, const SetOptions& opt,
                               const SetProgress& progress = {});

// Renders every .mid/.midi file under `midi_dir` (recursively, sorted) to DIR/<split>/<file stem>/<stem>.wav with
// one stem per MIDI channel that plays notes (chNN_<program> or drums) + meta.json.
SetReport write_midi_set(const std::string& midi_dir, const SetOptions& opt, const SetProgress& progress = {});

}  // namespace cocola::synth
