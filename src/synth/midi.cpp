// Standard MIDI Files: a writer for our songs and a reader that summarizes a file per channel (notes, program) so
// stems can be named and bad files rejected before the synthesizer sees them.
#include <algorithm>
#include <cctype>
#include <fstream>
#include <iterator>
#include <map>

#include "cocola/error.hpp"
#include "cocola/synth.hpp"

namespace cocola::synth {

namespace {

const char* const kGmNames[128] = {
    "Acoustic Grand Piano", "Bright Acoustic Piano", "Electric Grand Piano", "Honky-tonk Piano",
    "Electric Piano 1", "Electric Piano 2", "Harpsichord", "Clavinet",
    "Celesta", "Glockenspiel", "Music Box", "Vibraphone",
    "Marimba", "Xylophone", "Tubular Bells", "Dulcimer",
    "Drawbar Organ", "Percussive Organ", "Rock Organ", "Church Organ",
    "Reed Organ", "Accordion", "Harmonica", "Tango Accordion",
    "Acoustic Guitar (nylon)", "Acoustic Guitar (steel)", "Electric Guitar (jazz)", "Electric Guitar (clean)",
    "Electric Guitar (muted)", "Overdriven Guitar", "Distortion Guitar", "Guitar Harmonics",
    "Acoustic Bass", "Electric Bass (finger)", "Electric Bass (pick)", "Fretless Bass",
    "Slap Bass 1", "Slap Bass 2", "Synth Bass 1", "Synth Bass 2",
    "Violin", "Viola", "Cello", "Contrabass",
    "Tremolo Strings", "Pizzicato Strings", "Orchestral Harp", "Timpani",
    "String Ensemble 1", "String Ensemble 2", "Synth Strings 1", "Synth Strings 2",
    "Choir Aahs", "Voice Oohs", "Synth Voice", "Orchestra Hit",
    "Trumpet", "Trombone", "Tuba", "Muted Trumpet",
    "French Horn", "Brass Section", "Synth Brass 1", "Synth Brass 2",
    "Soprano Sax", "Alto Sax", "Tenor Sax", "Baritone Sax",
    "Oboe", "English Horn", "Bassoon", "Clarinet",
    "Piccolo", "Flute", "Recorder", "Pan Flute",
    "Blown Bottle", "Shakuhachi", "Whistle", "Ocarina",
    "Lead 1 (square)", "Lead 2 (sawtooth)", "Lead 3 (calliope)", "Lead 4 (chiff)",
    "Lead 5 (charang)", "Lead 6 (voice)", "Lead 7 (fifths)", "Lead 8 (bass + lead)",
    "Pad 1 (new age)", "Pad 2 (warm)", "Pad 3 (polysynth)", "Pad 4 (choir)",
    "Pad 5 (bowed)", "Pad 6 (metallic)", "Pad 7 (halo)", "Pad 8 (sweep)",
    "FX 1 (rain)", "FX 2 (soundtrack)", "FX 3 (crystal)", "FX 4 (atmosphere)",
    "FX 5 (brightness)", "FX 6 (goblins)", "FX 7 (echoes)", "FX 8 (sci-fi)",
    "Sitar", "Banjo", "Shamisen", "Koto",
    "Kalimba", "Bagpipe", "Fiddle", "Shanai",
    "Tinkle Bell", "Agogo", "Steel Drums", "Woodblock",
    "Taiko Drum", "Melodic Tom", "Synth Drum", "Reverse Cymbal",
    "Guitar Fret Noise", "Breath Noise", "Seashore", "Bird Tweet",
    "Telephone Ring", "Helicopter", "Applause", "Gunshot"};

// The 16 GM families (Slakh's metadata uses the same names, but 'Strings (continued)' for Ensemble).
const char* const kGmClasses[16] = {"Piano",      "Chromatic Percussion", "Organ",         "Guitar",
                                    "Bass",       "Strings",              "Ensemble", "Brass",
                                    "Reed",       "Pipe",                 "Synth Lead",    "Synth Pad",
                                    "Synth Effects", "Ethnic",            "Percussive",    "Sound Effects"};

struct Reader {
    const std::vector<uint8_t>& b;
    size_t pos;
    size_t end;
    const std::string& what;
    uint8_t u8() {
        if (pos >= end) throw Error(what + ": truncated MIDI data");
        return b[pos++];
    }
    uint32_t be(int n) {
        uint32_t v = 0;
        for (int i = 0; i < n; ++i) v = (v << 8) | u8();
        return v;
    }
    uint32_t vlq() {
        uint32_t v = 0;
        for (int i = 0; i < 4; ++i) {
            uint8_t c = u8();
            v = (v << 7) | (c & 0x7F);
            if (!(c & 0x80)) return v;
        }
        throw Error(what + ": malformed variable-length number in MIDI data");
    }
};

void put_vlq(std::vector<uint8_t>& out, uint32_t v) {
    uint8_t tmp[5];
    int n = 0;
    tmp[n++] = v & 0x7F;
    while (v >>= 7) tmp[n++] = 0x80 | (v & 0x7F);
    while (n) out.push_back(tmp[--n]);
}
void put_be(std::vector<uint8_t>& out, uint32_t v, int n) {
    for (int i = n - 1; i >= 0; --i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

}  // namespace

const char* gm_program_name(int program) { return kGmNames[std::clamp(program, 0, 127)]; }
const char* gm_program_class(int program) {
    return kGmClasses[std::clamp(program, 0, 127) / 8];
}
std::string gm_program_slug(int program) {
    std::string s;
    for (char c : std::string(gm_program_name(program))) {
        if (std::isalnum(static_cast<unsigned char>(c)))
            s += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        else if (!s.empty() && s.back() != '_')
            s += '_';
    }
    while (!s.empty() && s.back() == '_') s.pop_back();
    return s;
}

std::vector<uint8_t> read_file_bytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(path + ": cannot open");
    return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

std::vector<uint8_t> write_midi(std::vector<MidiEvent> events, int tpq) {
    // Stable order: by tick, then meta events, note-offs, controllers/programs, and note-ons last, so a note
    // repeated at the same key is released before it is struck again.
    auto rank = [](const MidiEvent& e) {
        if (e.status == 0xFF) return 0;
        const int kind = e.status & 0xF0;
        if (kind == 0x80 || (kind == 0x90 && e.d2 == 0)) return 1;
        if (kind == 0x90) return 3;
        return 2;
    };
    std::stable_sort(events.begin(), events.end(), [&](const MidiEvent& a, const MidiEvent& b) {
        if (a.tick != b.tick) return a.tick < b.tick;
        return rank(a) < rank(b);
    });
    std::vector<uint8_t> trk;
    int64_t last = 0;
    for (const auto& e : events) {
        put_vlq(trk, static_cast<uint32_t>(std::max<int64_t>(0, e.tick - last)));
        last = std::max(last, e.tick);
        if (e.status == 0xFF) {
            trk.push_back(0xFF);
            trk.push_back(e.meta_type);
            put_vlq(trk, static_cast<uint32_t>(e.meta.size()));
            trk.insert(trk.end(), e.meta.begin(), e.meta.end());
        } else {
            trk.push_back(e.status);
            trk.push_back(e.d1 & 0x7F);
            const int kind = e.status & 0xF0;
            if (kind != 0xC0 && kind != 0xD0) trk.push_back(e.d2 & 0x7F);
        }
    }
    put_vlq(trk, 0);
    trk.insert(trk.end(), {0xFF, 0x2F, 0x00});  // end of track

    std::vector<uint8_t> out = {'M', 'T', 'h', 'd'};
    put_be(out, 6, 4);
    put_be(out, 0, 2);  // format 0
    put_be(out, 1, 2);
    put_be(out, static_cast<uint32_t>(tpq), 2);
    out.insert(out.end(), {'M', 'T', 'r', 'k'});
    put_be(out, static_cast<uint32_t>(trk.size()), 4);
    out.insert(out.end(), trk.begin(), trk.end());
    return out;
}

MidiSummary summarize_midi(const std::vector<uint8_t>& bytes, const std::string& what) {
    MidiSummary s;
    Reader r{bytes, 0, bytes.size(), what};
    if (bytes.size() < 14 || std::string(bytes.begin(), bytes.begin() + 4) != "MThd")
        throw Error(what + ": not a Standard MIDI File (no MThd header)");
    r.pos = 4;
    const uint32_t hlen = r.be(4);
    const int format = static_cast<int>(r.be(2));
    const int ntracks = static_cast<int>(r.be(2));
    const int division = static_cast<int>(r.be(2));
    if (format > 2) throw Error(what + ": unknown MIDI file format " + std::to_string(format));
    if (division & 0x8000) throw Error(what + ": SMPTE time division is not supported");
    if (division == 0) throw Error(what + ": MIDI file has zero ticks per quarter note");
    s.ticks_per_quarter = division;
    r.pos = 8 + hlen;

    std::map<int64_t, uint32_t> tempo;  // tick -> microseconds per quarter (first wins per tick)
    int64_t last_tick = 0;
    bool program_seen[16] = {};
    int bank_msb[16] = {};
    for (int t = 0; t < ntracks; ++t) {
        // Chunks other than MTrk are skipped, as the standard asks.
        while (true) {
            if (r.pos + 8 > bytes.size()) throw Error(what + ": truncated MIDI file (track " + std::to_string(t) + " missing)");
            std::string id(bytes.begin() + r.pos, bytes.begin() + r.pos + 4);
            r.pos += 4;
            const uint32_t len = r.be(4);
            if (id == "MTrk") {
                if (r.pos + len > bytes.size()) throw Error(what + ": truncated MIDI file (track " + std::to_string(t) + ")");
                r.end = r.pos + len;
                break;
            }
            r.pos += len;
        }
        ++s.tracks;
        int64_t tick = 0;
        uint8_t running = 0;
        while (r.pos < r.end) {
            tick += r.vlq();
            uint8_t st = r.u8();
            if (st < 0x80) {
                if (!running) throw Error(what + ": MIDI data byte without a status");
                --r.pos;
                st = running;
            }
            if (st == 0xFF) {
                const uint8_t type = r.u8();
                const uint32_t len = r.vlq();
                if (r.pos + len > r.end) throw Error(what + ": truncated meta event");
                if (type == 0x51 && len == 3) {
                    const uint32_t us = (bytes[r.pos] << 16) | (bytes[r.pos + 1] << 8) | bytes[r.pos + 2];
                    tempo.emplace(tick, us);
                } else if (type == 0x03) {
                    s.track_names.emplace_back(bytes.begin() + r.pos, bytes.begin() + r.pos + len);
                }
                r.pos += len;
                if (type == 0x2F) break;
                continue;
            }
            if (st == 0xF0 || st == 0xF7) {
                r.pos += r.vlq();
                if (r.pos > r.end) throw Error(what + ": truncated sysex event");
                continue;
            }
            if (st >= 0xF0) throw Error(what + ": unexpected system message in MIDI file");
            running = st;
            const int ch = st & 0x0F, kind = st & 0xF0;
            const uint8_t d1 = r.u8();
            const uint8_t d2 = (kind == 0xC0 || kind == 0xD0) ? 0 : r.u8();
            if (kind == 0x90 && d2 > 0) ++s.notes[ch];
            if (kind == 0xB0 && d1 == 0) bank_msb[ch] = d2;
            if (kind == 0xC0 && !program_seen[ch]) {
                program_seen[ch] = true;
                s.program[ch] = d1;
                s.bank[ch] = bank_msb[ch];
            }
            last_tick = std::max(last_tick, tick);
        }
        r.pos = r.end;
        r.end = bytes.size();
    }
    // Seconds of the last event through the tempo map (120 BPM until the first tempo event).
    double secs = 0;
    int64_t at = 0;
    uint32_t us = 500000;
    for (const auto& [tk, u] : tempo) {
        if (tk >= last_tick) break;
        secs += (tk - at) * (us / 1e6) / division;
        at = tk;
        us = u;
    }
    secs += (last_tick - at) * (us / 1e6) / division;
    s.seconds = secs;
    return s;
}

}  // namespace cocola::synth
