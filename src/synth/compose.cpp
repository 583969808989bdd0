// Procedural songs: key, mode, tempo, meter, a chord progression with voice leading, and six roles (drums, bass,
// chords, arpeggio, lead, counter-melody) that follow it. The aim is training data whose stems are coherent in the
// paper's sense (same key, same harmony, same grid), with enough variety in timbre, rhythm and texture.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>

#include "cocola/error.hpp"
#include "cocola/rng.hpp"
#include "cocola/synth.hpp"

namespace cocola::synth {

namespace {

constexpr int TPQ = 480;

struct ModeDef {
    const char* name;
    std::array<int, 7> iv;
    int to_major;  // semitones from this mode's tonic to its relative major (for the key signature)
};
const ModeDef kModes[] = {{"major", {0, 2, 4, 5, 7, 9, 11}, 0},
                          {"minor", {0, 2, 3, 5, 7, 8, 10}, 3},
                          {"dorian", {0, 2, 3, 5, 7, 9, 10}, 10},
                          {"mixolydian", {0, 2, 4, 5, 7, 9, 10}, 5}};

const char* const kSharp[12] = {"C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"};
const char* const kFlat[12] = {"C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B"};

// GM programs per role: 48 in all, so timbre varies widely across songs.
const std::vector<int> kBassPrograms = {32, 33, 34, 35, 38, 39};
const std::vector<int> kPadPrograms = {48, 49, 50, 52, 88, 89, 19, 16};
const std::vector<int> kCompPrograms = {0, 2, 4, 5, 24, 25, 26, 27};
const std::vector<int> kArpPrograms = {46, 8, 11, 12, 13, 10, 108, 6};
const std::vector<int> kLeadPrograms = {73, 40, 56, 65, 66, 71, 68, 80, 81, 78, 22};
const std::vector<int> kCounterPrograms = {42, 60, 57, 70, 41, 69, 61};
// GM drum kits (bank 128): standard, room, power, electronic, TR-808, jazz, brush.
const std::vector<int> kDrumKits = {0, 8, 16, 24, 25, 32, 40};

// Drum notes (GM percussion key map).
enum Drum { KICK = 36, RIM = 37, SNARE = 38, CLAP = 39, CHH = 42, PHH = 44, OHH = 46, CRASH = 49, RIDE = 51,
            TOM_LO = 45, TOM_MID = 47, TOM_HI = 50, TOM_FLOOR = 41, COWBELL = 56, CLAVES = 75 };

struct DrumLine {
    int key;
    const char* steps;  // one char per 16th: 'X' accent, 'x' normal, 'o' ghost, '.' rest
};
struct DrumStyle {
    const char* name;
    int steps;  // per bar
    bool swing;
    std::vector<DrumLine> lines;
};
const std::vector<DrumStyle> kStyles44 = {
    {"rock", 16, false, {{KICK, "X.......x.x....."}, {SNARE, "....X.......X..."}, {CHH, "x.x.x.x.x.x.x.x."}}},
    {"four_on_floor", 16, false, {{KICK, "X...x...X...x..."}, {CLAP, "....x.......x..."}, {OHH, "..x...x...x...x."},
                                  {CHH, "x...x...x...x..."}}},
    {"halftime", 16, false, {{KICK, "X.........x....."}, {SNARE, "........X......."}, {CHH, "x.x.x.x.x.x.x.x."}}},
    {"funk16", 16, false, {{KICK, "X..x..x...x..x.."}, {SNARE, "....X..o.o..X..o"}, {CHH, "XxXxXxXxXxXxXxXx"}}},
    {"swing_ride", 16, true, {{RIDE, "x...x.x.x...x.x."}, {PHH, "....x.......x..."}, {KICK, "o...o...o...o..."},
                              {SNARE, "......o.......o."}}},
};
const DrumStyle kWaltz = {"waltz", 12, false, {{KICK, "X..........."}, {SNARE, "....x...x..."}, {CHH, "x.x.x.x.x.x."}}};
const DrumStyle kSixEight = {"six_eight", 12, false,
                             {{KICK, "X.........x."}, {SNARE, "......X....."}, {CHH, "x.x.x.x.x.x."}}};

// The held-out playing styles (`cocola synth --playing unseen`): grooves no training song has, to measure how
// well a model hears coherence in playing it never heard. Training sets never draw from these.
const std::vector<DrumStyle> kUnseenStyles44 = {
    {"bossa", 16, false, {{KICK, "X..xX..xX..xX..x"}, {CLAVES, "x..x..x...x.x..."}, {CHH, "x.x.x.x.x.x.x.x."}}},
    {"breakbeat", 16, false, {{KICK, "X.........X.x..."}, {SNARE, "....X.....o.X..o"}, {OHH, "x...x...x...x..."}}},
    {"one_drop", 16, false, {{KICK, "........X......."}, {RIM, "........x......."}, {CHH, "..x...x...x...x."}}},
    {"shuffle", 16, true, {{RIDE, "x.x.x.x.x.x.x.x."}, {KICK, "X.....x.X.....x."}, {SNARE, "....X.......X..."}}},
    {"train", 16, false, {{KICK, "X.......X......."}, {SNARE, "oxoXoxoXoxoXoxoX"}}},
};
const DrumStyle kUnseenWaltz = {"jazz_waltz", 12, true,
                                {{RIDE, "x...x.x.x.x."}, {PHH, "....x...x..."}, {KICK, "X..........."}}};
const DrumStyle kUnseenSixEight = {"bembe", 12, false,
                                   {{COWBELL, "x.x.xx.x.x.x"}, {KICK, "X.....X....."}, {RIM, "...x.....x.."}}};

// Extra training styles (`--playing varied`: each role draws from these or from the usual ones, half and half),
// disjoint from the held-out ones above: does more variety in training carry over to playing never heard?
const std::vector<DrumStyle> kExtraStyles44 = {
    {"hiphop", 16, false, {{KICK, "X......xX.x....."}, {SNARE, "....X.......X..."}, {CHH, "x.xxx.x.x.xxx.x."}}},
    {"motown", 16, false, {{KICK, "X.x...x.X.x...x."}, {SNARE, "x...X...x...X..."}, {CHH, "x.x.x.x.x.x.x.x."}}},
    {"march", 16, false, {{KICK, "X.......X......."}, {SNARE, "X..oX.o.X..oXooo"}}},
    {"toms", 16, false, {{TOM_FLOOR, "X..x..x...x..x.."}, {TOM_LO, "....x.......x..."}, {CHH, "x...x...x...x..."}}},
};
const DrumStyle kExtraWaltz = {"waltz_toms", 12, false,
                               {{TOM_FLOOR, "X..........."}, {TOM_LO, "....x...x..."}, {CHH, "x.x.x.x.x.x."}}};
const DrumStyle kExtraSixEight = {"ballad68", 12, false,
                                  {{KICK, "X.....x....."}, {SNARE, "......X....."}, {RIDE, "x..x..x..x.."}}};

int wrap12(int x) { return ((x % 12) + 12) % 12; }

// The pitch with pitch class `pc` nearest to `ref`, kept inside [lo, hi] by octaves.
int nearest_pitch(int pc, int ref, int lo, int hi) {
    int p = ref + wrap12(pc - ref);
    if (p - ref > 6) p -= 12;
    while (p < lo) p += 12;
    while (p > hi) p -= 12;
    return p;
}

struct Ctx {
    Song& song;
    Rng& rng;
    const ModeDef& mode;
    bool unseen;          // draw the held-out playing styles instead of the training ones
    bool varied;          // draw each role's style from the extra pool half the time

    // Whether this role plays an extra style (a draw only in varied songs, so the others keep their draws).
    bool extra() { return varied && rng.chance(0.5); }
    int beat_ticks;       // the meter's beat: quarter, or dotted quarter in 6/8
    int beats_per_bar;
    int64_t total_ticks;  // composed length
    std::vector<int> section_of_bar;
    std::vector<std::string> section_labels;  // per section
    std::vector<std::map<std::string, bool>> active;  // per section: role -> plays

    int scale_pc(int deg) const {
        const int d = ((deg % 7) + 7) % 7;
        return wrap12(song.tonic + mode.iv[d]);
    }
    bool plays(const std::string& role, int64_t tick) const {
        const int bar = static_cast<int>(tick / song.bar_ticks);
        if (bar < 0 || bar >= static_cast<int>(section_of_bar.size())) return false;
        auto it = active[section_of_bar[bar]].find(role);
        return it != active[section_of_bar[bar]].end() && it->second;
    }
    const ChordSpan& chord_at(int64_t tick) const {
        for (const auto& c : song.chords)
            if (tick >= c.start && tick < c.end) return c;
        return song.chords.back();
    }
};

std::string chord_symbol(int root, const std::vector<int>& pcs, bool flats, std::string* quality_out) {
    const int third = wrap12(pcs[1] - root), fifth = wrap12(pcs[2] - root);
    std::string q;
    if (third == 4 && fifth == 8) q = "+";
    else if (third == 3 && fifth == 6) q = "dim";
    else if (third == 3) q = "m";
    if (pcs.size() > 3) {
        const int sev = wrap12(pcs[3] - root);
        if (q == "dim" && sev == 10) q = "m7b5";
        else if (sev == 11) q += "maj7";
        else q += "7";
    }
    if (quality_out) *quality_out = q;
    return std::string(flats ? kFlat[root] : kSharp[root]) + q;
}

std::string roman(int degree, const std::string& quality, bool seventh) {
    static const char* const R[7] = {"I", "II", "III", "IV", "V", "VI", "VII"};
    std::string r = R[degree];
    const bool minor = quality.rfind("m", 0) == 0 && quality.rfind("maj", 0) != 0;
    const bool dim = quality.rfind("dim", 0) == 0 || quality == "m7b5";
    if (minor || dim) std::transform(r.begin(), r.end(), r.begin(), ::tolower);
    if (dim) r += "o";
    if (quality.rfind("+", 0) == 0) r += "+";
    if (seventh) r += quality.find("maj7") != std::string::npos ? "maj7" : "7";
    return r;
}

// A progression of scale degrees: a common template, or a walk through tonic -> predominant -> dominant functions.
std::vector<int> make_progression(Rng& rng, bool minorish) {
    static const std::vector<std::vector<int>> major_t = {
        {0, 4, 5, 3}, {0, 5, 3, 4}, {0, 3, 4, 0}, {0, 5, 1, 4}, {1, 4, 0, 0}, {0, 3, 0, 4},
        {5, 3, 0, 4}, {0, 2, 3, 4}, {0, 4, 5, 2, 3, 0, 3, 4}, {3, 4, 2, 5}};
    static const std::vector<std::vector<int>> minor_t = {
        {0, 5, 2, 6}, {0, 3, 4, 0}, {0, 6, 5, 6}, {0, 5, 3, 4}, {0, 3, 6, 2}, {0, 6, 5, 4}, {3, 4, 0, 0},
        {0, 2, 6, 3}};
    if (rng.chance(0.65)) return rng.pick(minorish ? minor_t : major_t);
    // Functional walk: T (0, 2, 5) -> S (1, 3) -> D (4, 6) -> T, with some freedom.
    std::vector<int> p = {0};
    const std::vector<int> T = {0, 5, 2}, S = {3, 1}, D = {4, 6};
    int fn = 0;
    while (p.size() < 4) {
        const double u = rng.uniform();
        if (fn == 0) fn = u < 0.6 ? 1 : (u < 0.85 ? 2 : 0);
        else if (fn == 1) fn = u < 0.7 ? 2 : (u < 0.85 ? 0 : 1);
        else fn = u < 0.8 ? 0 : 1;
        const auto& set = fn == 0 ? T : (fn == 1 ? S : D);
        int d = set[rng.weighted(fn == 0 ? std::vector<double>{3, 2, 1} : std::vector<double>{3, 1})];
        if (minorish && fn == 2 && d == 6) d = 4;
        if (d == p.back()) d = set[0] == d ? set[1 % set.size()] : set[0];
        p.push_back(d);
    }
    return p;
}

// Close-position voicings of `pcs` within [lo, hi]; the one nearest to `prev` (sum of voice movements), which is
// what voice leading asks for, with a pull towards the middle of the range so voicings do not drift away.
std::vector<int> lead_voices(const std::vector<int>& prev, std::vector<int> pcs, int lo, int hi) {
    if (pcs.size() == 3) pcs.push_back(pcs[0]);  // four voices: double the root
    std::vector<int> best;
    double best_cost = 1e18;
    const double center = 0.5 * (lo + hi);
    for (size_t rot = 0; rot < pcs.size(); ++rot) {
        for (int base = lo; base < lo + 12; ++base) {
            if (wrap12(base) != pcs[rot]) continue;
            std::vector<int> v = {base};
            for (size_t k = 1; k < pcs.size(); ++k) {
                int p = v.back() + 1;
                while (wrap12(p) != pcs[(rot + k) % pcs.size()]) ++p;
                v.push_back(p);
            }
            for (int shift = 0; v.back() + shift <= hi; shift += 12) {
                std::vector<int> c(v);
                for (int& x : c) x += shift;
                double cost = 0, mean = 0;
                for (size_t i = 0; i < c.size(); ++i) {
                    if (!prev.empty()) cost += std::abs(c[i] - prev[std::min(i, prev.size() - 1)]);
                    mean += c[i];
                }
                mean /= c.size();
                cost += 0.35 * std::abs(mean - center);
                if (cost < best_cost) {
                    best_cost = cost;
                    best = c;
                }
            }
        }
    }
    return best;
}

void add(Part& p, int64_t tick, int64_t dur, int key, int vel) {
    if (dur <= 0 || key < 0 || key > 127) return;
    p.notes.push_back({tick, dur, key, std::clamp(vel, 1, 127)});
}

// ---------------------------------------------------------------- roles
void compose_drums(Ctx& c, Part& part) {
    const DrumStyle* st;
    if (c.unseen) st = c.song.meter_num == 3 ? &kUnseenWaltz
                       : (c.song.meter_num == 6 ? &kUnseenSixEight : &c.rng.pick(kUnseenStyles44));
    else if (c.extra()) st = c.song.meter_num == 3 ? &kExtraWaltz
                             : (c.song.meter_num == 6 ? &kExtraSixEight : &c.rng.pick(kExtraStyles44));
    else if (c.song.meter_num == 3) st = &kWaltz;
    else if (c.song.meter_num == 6) st = &kSixEight;
    else {
        // Swing suits the middle tempi, four-on-the-floor the faster ones.
        std::vector<double> w = {3, c.song.bpm > 110 ? 2.5 : 0.8, 1.2, c.song.bpm < 125 ? 1.5 : 0.5,
                                 c.song.bpm < 170 ? 1.0 : 0.2};
        st = &kStyles44[c.rng.weighted(w)];
    }
    part.pattern = st->name;
    const int64_t step = c.song.bar_ticks / st->steps;
    for (int bar = 0; bar < c.song.bars; ++bar) {
        const int64_t t0 = bar * c.song.bar_ticks;
        if (!c.plays("drums", t0)) continue;
        const int sec = c.section_of_bar[bar];
        const bool section_start = bar == 0 || c.section_of_bar[bar - 1] != sec;
        const bool section_end = bar + 1 < c.song.bars && c.section_of_bar[bar + 1] != sec;
        const int fill_from = section_end ? st->steps - st->steps / 4 : st->steps;
        for (const auto& line : st->lines) {
            for (int s = 0; s < std::min(fill_from, st->steps); ++s) {
                const char ch = line.steps[s];
                if (ch == '.') continue;
                int vel = ch == 'X' ? 112 : (ch == 'x' ? 92 : 58);
                vel += static_cast<int>(c.rng.range(-7, 7));
                int64_t t = t0 + s * step;
                if (st->swing && s % 4 == 2) t += step / 3;  // swung off-beat eighths
                add(part, t, step, line.key, vel);
            }
        }
        if (section_start && bar > 0) add(part, t0, step * 4, CRASH, 105);
        if (section_end) {
            // A fill over the last beat: snare and toms falling in pitch.
            static const int toms[] = {SNARE, TOM_HI, TOM_MID, TOM_LO, TOM_FLOOR};
            for (int s = fill_from; s < st->steps; ++s) {
                const int k = c.rng.chance(0.3) ? SNARE : toms[std::min<int>(4, (s - fill_from) * 5 / (st->steps / 4))];
                add(part, t0 + s * step, step, k, 85 + static_cast<int>(c.rng.range(0, 25)));
            }
            add(part, t0 + fill_from * step, step, KICK, 95);
        }
    }
}

void compose_bass(Ctx& c, Part& part) {
    std::vector<std::string> options = {"whole", "root_fifth", "eighths", "syncopated"};
    if (c.song.meter_num != 6) options.push_back("walking");
    if (c.song.meter_num == 6) options = {"whole", "root_fifth", "eighths"};
    if (c.unseen) options = {"octaves", "arpeggio", "offbeat"};
    else if (c.extra()) options = {"dotted", "sixteenths", "tumbao"};
    part.pattern = c.rng.pick(options);
    int prev = 40;
    const int lo = 28, hi = 50;
    for (size_t ci = 0; ci < c.song.chords.size(); ++ci) {
        const auto& ch = c.song.chords[ci];
        if (!c.plays("bass", ch.start)) continue;
        const int root = nearest_pitch(ch.pcs[0], prev, 31, 47);
        const int fifth = nearest_pitch(ch.pcs[2], root + 5, lo, hi);
        const int64_t len = ch.end - ch.start;
        const int vel = 96;
        const std::string& pat = part.pattern;
        if (pat == "whole") {
            add(part, ch.start, len - 30, root, vel);
        } else if (pat == "root_fifth") {
            int k = 0;
            for (int64_t t = ch.start; t < ch.end; t += c.beat_ticks, ++k)
                add(part, t, c.beat_ticks - 40, (k % 2 == 0) ? root : fifth, k == 0 ? vel : vel - 12);
        } else if (pat == "eighths") {
            const int64_t e = c.song.meter_num == 6 ? TPQ / 2 : TPQ / 2;
            int k = 0;
            for (int64_t t = ch.start; t < ch.end; t += e, ++k) {
                const int key = (k % 4 == 3 && c.rng.chance(0.5)) ? root + 12 : root;
                add(part, t, e - 30, key <= hi + 12 ? key : root, k % 2 == 0 ? vel : vel - 15);
            }
        } else if (pat == "syncopated") {
            static const char* const figs[] = {"x..x..x...x.x...", "x.....x.x..x....", "x..x....x..x..x."};
            const char* f = figs[c.rng.range(0, 2)];
            const int64_t s16 = TPQ / 4;
            const int n = static_cast<int>(len / s16);
            for (int s = 0; s < n; ++s) {
                if (f[s % 16] != 'x') continue;
                int nxt = s + 1;
                while (nxt < n && f[nxt % 16] != 'x') ++nxt;
                const int key = s == 0 ? root : (c.rng.chance(0.3) ? fifth : (c.rng.chance(0.2) ? root + 12 : root));
                add(part, ch.start + s * s16, (nxt - s) * s16 - 30, key, s == 0 ? vel : vel - 10);
            }
        } else if (pat == "dotted") {  // extra: a dotted eighth and a sixteenth on every beat
            for (int64_t t = ch.start; t < ch.end; t += TPQ) {
                add(part, t, 3 * TPQ / 4 - 30, root, vel);
                add(part, t + 3 * TPQ / 4, TPQ / 4 - 20, c.rng.chance(0.3) ? fifth : root, vel - 20);
            }
        } else if (pat == "sixteenths") {  // extra: the root in sixteenths, accented on the beat
            int k = 0;
            for (int64_t t = ch.start; t < ch.end; t += TPQ / 4, ++k) add(part, t, TPQ / 4 - 20, root, k % 4 == 0 ? vel : vel - 25);
        } else if (pat == "tumbao") {  // extra: the Latin bass's anticipations, on the fourth and seventh eighths
            static const char fig[] = "...x..x.";
            int k = 0;
            for (int64_t t = ch.start; t < ch.end; t += TPQ / 2, ++k)
                if (fig[((t % c.song.bar_ticks) / (TPQ / 2)) % 8] == 'x')
                    add(part, t, std::min<int64_t>(TPQ, ch.end - t) - 30, k % 2 ? fifth : root, vel);
        } else if (pat == "octaves") {  // held out: root and its octave alternating in eighths
            int k = 0;
            for (int64_t t = ch.start; t < ch.end; t += TPQ / 2, ++k)
                add(part, t, TPQ / 2 - 40, k % 2 == 0 ? root : root + 12, k % 2 == 0 ? vel : vel - 18);
        } else if (pat == "arpeggio") {  // held out: up and down the chord's tones, one per beat
            std::vector<int> tones;
            for (int pc : ch.pcs) tones.push_back(nearest_pitch(pc, root + 4, root, root + 12));
            std::sort(tones.begin(), tones.end());
            int k = 0;
            for (int64_t t = ch.start; t < ch.end; t += c.beat_ticks, ++k) {
                const int n = static_cast<int>(tones.size());
                const int i = k % (2 * n - 2 > 0 ? 2 * n - 2 : 1);
                add(part, t, c.beat_ticks - 30, tones[i < n ? i : 2 * n - 2 - i], k == 0 ? vel : vel - 10);
            }
        } else if (pat == "offbeat") {  // held out: silent downbeats, the root on the off-beat eighths
            for (int64_t t = ch.start + TPQ / 2; t < ch.end; t += TPQ)
                add(part, t, TPQ / 2 - 30, c.rng.chance(0.25) ? fifth : root, vel - 5);
        } else {  // walking: chord tones, then an approach to the next root by step or half step
            const int beats = static_cast<int>(len / c.beat_ticks);
            const auto& next = c.song.chords[std::min(ci + 1, c.song.chords.size() - 1)];
            const int next_root = nearest_pitch(next.pcs[0], root, 31, 47);
            int cur = root;
            for (int b = 0; b < beats; ++b) {
                int key;
                if (b == 0) key = root;
                else if (b == beats - 1) key = next_root + (c.rng.chance(0.5) ? (next_root > cur ? -1 : 1) : (next_root > cur ? -2 : 2));
                else key = nearest_pitch(ch.pcs[c.rng.range(0, static_cast<int64_t>(ch.pcs.size()) - 1)], cur + (c.rng.chance(0.5) ? 3 : -3), lo, hi);
                key = std::clamp(key, lo, hi);
                add(part, ch.start + b * c.beat_ticks, c.beat_ticks - 30, key, b == 0 ? vel : vel - 10);
                cur = key;
            }
        }
        prev = root;
    }
}

// Chords: sustained pads or rhythmic comping, four voices led smoothly from chord to chord.
void compose_chords(Ctx& c, Part& part, bool pad, std::vector<std::vector<int>>& voicings) {
    std::vector<int> prev;
    const int lo = pad ? 50 : 52, hi = pad ? 74 : 77;
    voicings.clear();
    for (const auto& ch : c.song.chords) {
        prev = lead_voices(prev, ch.pcs, lo, hi);
        voicings.push_back(prev);
    }
    const char* fig = nullptr;
    if (pad) {
        part.pattern = c.unseen ? "pulsing_pad" : "pad";
    } else if (c.unseen) {
        // Held out: reggae skank, a bossa comp, and rolled (strummed) chords.
        std::vector<std::pair<const char*, const char*>> figs;
        if (c.song.meter_num == 4) figs = {{"skank", "..x...x."}, {"bossa", "x.x..x.x"}, {"rolled", "x..x.x.."}};
        else if (c.song.meter_num == 3) figs = {{"skank", ".x.x.x"}, {"rolled", "x....."}};
        else figs = {{"pulse", "xxxxxx"}, {"rolled", "x....."}};
        const auto& f = c.rng.pick(figs);
        part.pattern = f.first;
        fig = f.second;
    } else if (c.extra()) {
        // Extra: stabs, off-beat syncopation, bar hits; a hemiola in 6/8.
        std::vector<std::pair<const char*, const char*>> figs;
        if (c.song.meter_num == 4) figs = {{"stabs", "x.....x."}, {"syncopated", ".x..x..x"}, {"bar_hits", "x...x.x."}};
        else if (c.song.meter_num == 3) figs = {{"two_three", "x..x.x"}};
        else figs = {{"hemiola", "x.x.x."}};
        const auto& f = c.rng.pick(figs);
        part.pattern = f.first;
        fig = f.second;
    } else {
        std::vector<std::pair<const char*, const char*>> figs;  // name, one char per eighth of a bar
        if (c.song.meter_num == 4)
            figs = {{"quarters", "x.x.x.x."}, {"charleston", "x..x...."}, {"offbeat", ".x.x.x.x"},
                    {"pushes", "x..x..x."}, {"halves", "x...x..."}};
        else if (c.song.meter_num == 3)
            figs = {{"oompah", "..x.x."}, {"quarters", "x.x.x."}};
        else
            figs = {{"dotted", "x..x.."}, {"lilt", "x.xx.x"}};
        const auto& f = c.rng.pick(figs);
        part.pattern = f.first;
        fig = f.second;
    }
    for (size_t ci = 0; ci < c.song.chords.size(); ++ci) {
        const auto& ch = c.song.chords[ci];
        if (!c.plays("chords", ch.start)) continue;
        const auto& v = voicings[ci];
        if (pad && c.unseen) {  // held out: the pad struck again on every beat, softer after the first
            for (int64_t t = ch.start; t < ch.end; t += c.beat_ticks)
                for (size_t i = 0; i < v.size(); ++i)
                    if (i == 0 || v[i] != v[i - 1]) add(part, t, c.beat_ticks - 30, v[i], t == ch.start ? 76 : 60);
            continue;
        }
        if (pad) {
            for (size_t i = 0; i < v.size(); ++i)
                if (i == 0 || v[i] != v[i - 1]) add(part, ch.start, ch.end - ch.start - 20, v[i], 72);
            continue;
        }
        const int64_t e = TPQ / 2;
        const int n = static_cast<int>(std::strlen(fig));
        const bool staccato = part.pattern == "offbeat" || part.pattern == "skank" || part.pattern == "stabs";
        const bool rolled = part.pattern == "rolled";
        for (int64_t t = ch.start; t < ch.end; t += e) {
            const int s = static_cast<int>(((t % c.song.bar_ticks) / e) % n);
            if (fig[s] != 'x') continue;
            int nxt = 1;
            while (nxt < n - s && fig[s + nxt] != 'x') ++nxt;
            const int64_t dur = staccato ? e / 2 : std::min<int64_t>(nxt * e, ch.end - t) - 30;
            const int vel = (s == 0 ? 86 : 74) + static_cast<int>(c.rng.range(-5, 5));
            if (rolled) {  // strummed upwards: each voice 25 ticks after the one below
                for (size_t i = 0; i < v.size(); ++i) add(part, t + 25 * static_cast<int64_t>(i), dur - 25 * static_cast<int64_t>(i), v[i], vel);
            } else {
                for (int k : v) add(part, t, dur, k, vel);
            }
        }
    }
}

void compose_arp(Ctx& c, Part& part, const std::vector<std::vector<int>>& voicings) {
    bool fast;
    int64_t step;
    std::string shape;
    if (c.unseen) {
        // Held out: triplet eighths in 4/4 and 3/4 (sixteenths in 6/8), and three shapes training never uses.
        fast = c.song.meter_num != 6;
        step = fast ? TPQ / 3 : TPQ / 4;
        shape = c.rng.pick(std::vector<std::string>{"alberti", "converge", "random"});
        part.pattern = shape + (fast ? "_triplets" : "16");
    } else {
        fast = c.song.meter_num != 6 && c.song.bpm <= 112 && c.rng.chance(0.6);
        step = fast ? TPQ / 4 : TPQ / 2;
        const std::vector<std::string> shapes = {"up", "down", "updown", "pinky"};
        const std::vector<std::string> extra_shapes = {"skip", "broken"};
        shape = c.extra() ? c.rng.pick(extra_shapes) : c.rng.pick(shapes);
        part.pattern = shape + (fast ? "16" : "8");
    }
    for (size_t ci = 0; ci < c.song.chords.size(); ++ci) {
        const auto& ch = c.song.chords[ci];
        if (!c.plays("arp", ch.start)) continue;
        // The pad's voicing an octave up (so the arpeggio sits above it), deduplicated, plus the top octave.
        std::vector<int> tones;
        for (int k : voicings[ci]) tones.push_back(k + 12);
        std::sort(tones.begin(), tones.end());
        tones.erase(std::unique(tones.begin(), tones.end()), tones.end());
        tones.push_back(tones.front() + 12);
        std::vector<int> seq;
        if (shape == "up") seq = tones;
        else if (shape == "down") seq.assign(tones.rbegin(), tones.rend());
        else if (shape == "updown") {
            seq = tones;
            for (int i = static_cast<int>(tones.size()) - 2; i > 0; --i) seq.push_back(tones[i]);
        } else if (shape == "pinky") {
            for (size_t i = 1; i < tones.size(); ++i) {
                seq.push_back(tones[0]);
                seq.push_back(tones[i]);
            }
        } else if (shape == "skip") {  // extra: up in thirds of the chord, 1 3 2 4 ...
            for (size_t i = 0; i + 1 < tones.size(); ++i) {
                seq.push_back(tones[i]);
                seq.push_back(tones[std::min(i + 2, tones.size() - 1)]);
            }
        } else if (shape == "broken") {  // extra: each tone twice, rising
            for (int k : tones) {
                seq.push_back(k);
                seq.push_back(k);
            }
        } else if (shape == "alberti") {  // low, high, middle, high
            seq = {tones.front(), tones.back(), tones[tones.size() / 2], tones.back()};
        } else if (shape == "converge") {  // the outer tones moving inwards
            for (size_t lo = 0, hi = tones.size() - 1; lo <= hi; ++lo, --hi) {
                seq.push_back(tones[lo]);
                if (hi != lo) seq.push_back(tones[hi]);
                if (hi == 0) break;
            }
        } else {  // random: a chord tone drawn anew for every step
            for (int64_t t = ch.start; t < ch.end; t += step) seq.push_back(tones[c.rng.range(0, static_cast<int64_t>(tones.size()) - 1)]);
        }
        int k = 0;
        for (int64_t t = ch.start; t < ch.end; t += step, ++k) {
            const int key = seq[k % seq.size()];
            const int vel = (t % c.beat_ticks == 0 ? 84 : 70) + static_cast<int>(c.rng.range(-4, 4));
            add(part, t, step - 15, key, vel);
        }
    }
}

// Lead: a motif of rhythm cells per section label, repeated when the section returns (with a varied ending),
// chord tones on strong beats and steps in between.
void compose_lead(Ctx& c, Part& part, std::vector<int>& contour) {
    const int lo = 62, hi = 86;
    struct Cell {
        std::vector<int> dur;  // in ticks; negative = rest
    };
    std::vector<Cell> cells;
    std::vector<double> weights;
    const bool extra_rhythms = !c.unseen && c.extra();
    if (c.unseen && c.song.meter_num == 6) {
        // Held out: two against three (dotted eighths), short-long, a late entry.
        cells = {{{360, 360}}, {{180, 180, 360}}, {{-360, 360}}, {{120, 600}}};
        weights = {3, 2, 1, 1};
    } else if (c.unseen) {
        // Held out: triplets, a shuffle, a Scotch snap, a late entry, a dotted half.
        cells = {{{160, 160, 160}}, {{320, 160}}, {{120, 360}}, {{-120, 360}}, {{720, 240}}};
        weights = {3, 3, 1.5, 1, 1};
    } else if (extra_rhythms && c.song.meter_num == 6) {
        // Extra: sixteenth figures and a held bar.
        cells = {{{240, 120, 360}}, {{120, 120, 120, 360}}, {{1440}}, {{480, 240}}};
        weights = {3, 2, 1, 2};
    } else if (extra_rhythms) {
        // Extra: runs of sixteenths, eighth-two-sixteenths, a rest then two sixteenths, two halves.
        cells = {{{120, 120, 120, 120}}, {{240, 120, 120}}, {{-240, 120, 120}}, {{960, 960}}, {{480}}};
        weights = {2, 3, 1, 1, 2};
    } else if (c.song.meter_num == 6) {
        cells = {{{720}}, {{480, 240}}, {{240, 240, 240}}, {{-240, 240, 240}}, {{-720}}};
        weights = {2, 3, 3, 1, 0.7};
    } else {
        cells = {{{480}}, {{240, 240}}, {{360, 120}}, {{-240, 240}}, {{-480}}, {{120, 120, 240}}, {{960}}};
        weights = {3, 3, 1.2, 1.2, 0.8, c.song.bpm < 110 ? 0.8 : 0.2, 1.2};
    }
    part.pattern = c.unseen ? "motif_unseen_rhythms" : (extra_rhythms ? "motif_extra_rhythms" : "motif");
    const int bars_per_section = 4;
    std::map<std::string, std::vector<std::vector<int>>> rhythm_of_label;  // label -> per bar durations
    int cur = nearest_pitch(c.song.tonic, 74, lo, hi);
    contour.assign(c.song.chords.size(), 0);
    for (int bar = 0; bar < c.song.bars; ++bar) {
        const int64_t t0 = bar * c.song.bar_ticks;
        if (!c.plays("lead", t0)) continue;
        const int sec = c.section_of_bar[bar];
        const std::string& label = c.section_labels[sec];
        int first_bar = bar;
        while (first_bar > 0 && c.section_of_bar[first_bar - 1] == sec) --first_bar;
        const int pos = (bar - first_bar) % bars_per_section;
        auto& rh = rhythm_of_label[label];
        if (rh.size() < bars_per_section) rh.resize(bars_per_section);
        const bool phrase_end = pos == bars_per_section - 1;
        // Reuse the label's rhythm for this bar; the phrase end varies half the time when a section returns.
        if (rh[pos].empty() || (phrase_end && c.rng.chance(0.5))) {
            std::vector<int> d;
            if (phrase_end) {
                // Cadence: something short, then a long note to rest on.
                d = {c.beat_ticks};
                d.push_back(static_cast<int>(c.song.bar_ticks - c.beat_ticks));
            } else if (pos == 1 && !rh[0].empty() && c.rng.chance(0.5)) {
                d = rh[0];  // answer the first bar with the same rhythm
            } else {
                int64_t filled = 0;
                while (filled < c.song.bar_ticks) {
                    const Cell& cell = cells[c.rng.weighted(weights)];
                    int64_t len = 0;
                    for (int x : cell.dur) len += std::abs(x);
                    if (filled + len > c.song.bar_ticks || (len > c.beat_ticks && filled % (2 * c.beat_ticks) != 0))
                        continue;
                    for (int x : cell.dur) d.push_back(x);
                    filled += len;
                }
            }
            rh[pos] = d;
        }
        int64_t t = t0;
        for (int d : rh[pos]) {
            const int64_t len = std::abs(d);
            if (d > 0) {
                const ChordSpan& ch = c.chord_at(t);
                const bool strong = (t - t0) % c.beat_ticks == 0 && ((t - t0) / c.beat_ticks) % 2 == 0;
                int key;
                if (strong || len >= 2 * c.beat_ticks) {
                    // A chord tone near a small move from the current note.
                    const int target = cur + static_cast<int>(c.rng.range(-4, 4));
                    key = nearest_pitch(ch.pcs[c.rng.range(0, std::min<int64_t>(2, ch.pcs.size() - 1))], target, lo, hi);
                } else {
                    // A scale step, drifting back to the middle of the range when far from it.
                    int dir = c.rng.chance(0.5) ? 1 : -1;
                    if (cur > hi - 5) dir = -1;
                    if (cur < lo + 5) dir = 1;
                    const int steps = c.rng.chance(0.8) ? 1 : 2;
                    key = cur;
                    for (int s = 0; s < steps; ++s) {
                        int k = key + dir;
                        while (std::find(c.mode.iv.begin(), c.mode.iv.end(), wrap12(k - c.song.tonic)) == c.mode.iv.end())
                            k += dir;
                        key = k;
                    }
                    key = std::clamp(key, lo, hi);
                }
                const int vel = (strong ? 100 : 88) + static_cast<int>(c.rng.range(-6, 6));
                add(part, t, len - 20, key, vel);
                for (size_t ci = 0; ci < c.song.chords.size(); ++ci)
                    if (t >= c.song.chords[ci].start && t < c.song.chords[ci].end) contour[ci] += key - cur;
                cur = key;
            }
            t += len;
        }
    }
}

// Counter-melody: long guide tones (thirds and sevenths) moving against the lead's direction.
void compose_counter(Ctx& c, Part& part, const std::vector<int>& lead_contour) {
    const int lo = 53, hi = 72;
    const bool halves = c.song.meter_num == 4 && c.rng.chance(0.5);
    part.pattern = halves ? "halves" : "sustained";
    int cur = 62;
    for (size_t ci = 0; ci < c.song.chords.size(); ++ci) {
        const auto& ch = c.song.chords[ci];
        if (!c.plays("counter", ch.start)) continue;
        std::vector<int> pool = {ch.pcs[1]};
        if (ch.pcs.size() > 3) pool.push_back(ch.pcs[3]);
        pool.push_back(ch.pcs[2]);
        const int want_dir = ci < lead_contour.size() && lead_contour[ci] > 0 ? -1 : 1;
        int best = -1, best_cost = 1 << 30;
        for (int pc : pool)
            for (int oct = 0; oct < 3; ++oct) {
                int k = nearest_pitch(pc, cur, lo, hi) + (oct - 1) * 12;
                if (k < lo || k > hi) continue;
                int cost = std::abs(k - cur) + ((k - cur) * want_dir < 0 ? 3 : 0);
                if (cost < best_cost) {
                    best_cost = cost;
                    best = k;
                }
            }
        if (best < 0) continue;
        const int64_t len = ch.end - ch.start;
        if (halves && len >= 4 * TPQ) {
            add(part, ch.start, len / 2 - 20, best, 80);
            // The second half moves to another chord tone by the smallest step.
            int second = best;
            for (int d = 1; d <= 4; ++d) {
                const int up = best + d * want_dir;
                if (std::find(ch.pcs.begin(), ch.pcs.end(), wrap12(up)) != ch.pcs.end() && up >= lo && up <= hi) {
                    second = up;
                    break;
                }
            }
            add(part, ch.start + len / 2, len / 2 - 20, second, 74);
            cur = second;
        } else {
            add(part, ch.start, len - 20, best, 78);
            cur = best;
        }
    }
}

// A note held across the start of the same key would be cut by the next one's note-off order; shorten it.
void fix_overlaps(Part& p) {
    std::sort(p.notes.begin(), p.notes.end(), [](const Note& a, const Note& b) {
        return a.tick != b.tick ? a.tick < b.tick : a.key < b.key;
    });
    std::map<int, size_t> last;  // key -> index of the latest note
    std::vector<Note> out;
    for (const auto& n : p.notes) {
        auto it = last.find(n.key);
        if (it != last.end()) {
            Note& prev = out[it->second];
            if (prev.tick == n.tick) continue;  // a duplicate strike
            if (prev.tick + prev.dur > n.tick) prev.dur = n.tick - prev.tick;
        }
        last[n.key] = out.size();
        out.push_back(n);
    }
    p.notes = std::move(out);
}

}  // namespace

std::string Song::key_name() const {
    const ModeDef* m = &kModes[0];
    for (const auto& md : kModes)
        if (mode == md.name) m = &md;
    const int major = wrap12(tonic + m->to_major);
    const bool flats = major == 5 || major == 10 || major == 3 || major == 8 || major == 1;
    return std::string(flats ? kFlat[tonic] : kSharp[tonic]) + " " + mode;
}

double Song::microseconds_per_quarter() const {
    // bpm counts the meter's beat: in 6/8 that is a dotted quarter, 1.5 quarters.
    return meter_num == 6 ? 60e6 / (bpm * 1.5) : 60e6 / bpm;
}

Song compose(uint64_t seed, double seconds, const std::string& playing) {
    if (playing != "trained" && playing != "unseen" && playing != "varied")
        throw Error("synth: playing styles must be trained, unseen or varied, got \"" + playing + "\"");
    Song s;
    s.playing = playing;
    s.seed = seed;
    Rng rng(mix_seed(seed, 0x50C6));
    s.tonic = static_cast<int>(rng.range(0, 11));
    const ModeDef& mode = kModes[rng.weighted({4, 3, 1.2, 1.2})];
    s.mode = mode.name;
    const size_t meter = rng.weighted({7, 1.5, 1.5});
    s.meter_num = meter == 0 ? 4 : (meter == 1 ? 3 : 6);
    s.meter_den = meter == 2 ? 8 : 4;
    s.ticks_per_quarter = TPQ;
    s.bar_ticks = s.meter_num == 4 ? 4 * TPQ : 3 * TPQ;
    s.bpm = s.meter_num == 6 ? rng.range(48, 84) : (s.meter_num == 3 ? rng.range(84, 160) : rng.range(72, 150));
    const int beat_ticks = s.meter_num == 6 ? 3 * TPQ / 2 : TPQ;
    const double bar_seconds = s.bar_ticks * s.microseconds_per_quarter() / 1e6 / TPQ;
    s.seconds = seconds;
    s.bars = std::max(1, static_cast<int>(std::ceil(seconds / bar_seconds)));

    Ctx c{s, rng, mode, playing == "unseen", playing == "varied", beat_ticks, s.meter_num == 4 ? 4 : (s.meter_num == 3 ? 3 : 2), s.bars * s.bar_ticks, {}, {}, {}};

    // Form: sections of 4 bars; an intro for longer songs; labels from a common pattern.
    static const std::vector<std::string> forms = {"AABA", "ABAB", "AABB", "ABAC", "ABCA"};
    const std::string form = rng.pick(forms);
    const bool intro = s.bars >= 12 && rng.chance(0.6);
    for (int b = 0, sec = -1; b < s.bars; ++b) {
        if (b % 4 == 0) {
            ++sec;
            c.section_labels.push_back(intro && sec == 0 ? "intro"
                                                         : std::string(1, form[(sec - (intro ? 1 : 0)) % form.size()]));
        }
        c.section_of_bar.push_back(sec);
        s.form.push_back(c.section_labels.back());
    }

    // Harmony: one progression per label; two chords a bar at slow tempi sometimes.
    const bool minorish = s.mode == "minor" || s.mode == "dorian";
    const int per_bar = (s.meter_num == 4 && s.bpm < 100 && rng.chance(0.35)) ? 2 : 1;
    std::map<std::string, std::vector<int>> prog;
    const bool sevenths = rng.chance(0.35);
    const bool flats = [&] {
        const int major = wrap12(s.tonic + mode.to_major);
        return major == 5 || major == 10 || major == 3 || major == 8 || major == 1;
    }();
    for (int b = 0; b < s.bars; ++b) {
        std::string label = s.form[b];
        if (label == "intro") label = "A";
        if (!prog.count(label)) prog[label] = make_progression(rng, minorish);
        const auto& p = prog[label];
        int first = b;
        while (first > 0 && s.form[first - 1] == s.form[b]) --first;
        for (int k = 0; k < per_bar; ++k) {
            const int slot = ((b - first) * per_bar + k) % static_cast<int>(p.size());
            const int deg = p[slot];
            ChordSpan ch;
            ch.start = b * s.bar_ticks + k * s.bar_ticks / per_bar;
            ch.end = ch.start + s.bar_ticks / per_bar;
            ch.degree = deg;
            const int root = c.scale_pc(deg);
            ch.pcs = {root, c.scale_pc(deg + 2), c.scale_pc(deg + 4)};
            // Minor keys borrow the major dominant (harmonic minor's leading tone) most of the time.
            if (s.mode == "minor" && deg == 4 && rng.chance(0.7)) ch.pcs[1] = wrap12(ch.pcs[1] + 1);
            const bool seventh = sevenths ? rng.chance(0.6) : (deg == 4 && rng.chance(0.3));
            if (seventh) ch.pcs.push_back(deg == 4 && s.mode == "minor" ? wrap12(root + 10) : c.scale_pc(deg + 6));
            std::string quality;
            ch.symbol = chord_symbol(root, ch.pcs, flats, &quality);
            ch.roman = roman(deg, quality, seventh);
            s.chords.push_back(ch);
        }
    }

    // Roles present in this song, and which sections each plays in.
    const bool has_drums = rng.chance(0.9), has_arp = rng.chance(0.6), has_lead = rng.chance(0.85);
    const bool has_counter = rng.chance(0.5);
    const bool pad = rng.chance(0.5);
    std::map<std::string, bool> present = {{"drums", has_drums}, {"bass", true},     {"chords", true},
                                           {"arp", has_arp},     {"lead", has_lead}, {"counter", has_counter}};
    for (size_t sec = 0; sec < c.section_labels.size(); ++sec) {
        std::map<std::string, bool> a;
        const bool is_intro = c.section_labels[sec] == "intro";
        for (const auto& [role, on] : present) {
            bool plays = on;
            if (is_intro && (role == "drums" || role == "lead" || role == "counter")) plays = false;
            if (!is_intro && sec > 0 && (role == "arp" || role == "counter") && rng.chance(0.2)) plays = false;
            a[role] = plays;
        }
        c.active.push_back(a);
    }

    auto new_part = [&](const std::string& role, int channel, const std::vector<int>& programs, int volume) {
        Part p;
        p.role = role;
        p.channel = channel;
        p.program = rng.pick(programs);
        p.volume = volume;
        return p;
    };
    // Programs are drawn even for absent roles so that adding a role elsewhere does not reshuffle the others.
    Part drums = new_part("drums", kDrumChannel, kDrumKits, 100);
    Part bass = new_part("bass", 0, kBassPrograms, 100);
    Part chords = new_part("chords", 1, pad ? kPadPrograms : kCompPrograms, pad ? 78 : 84);
    Part arp = new_part("arp", 2, kArpPrograms, 76);
    Part lead = new_part("lead", 3, kLeadPrograms, 100);
    Part counter = new_part("counter", 4, kCounterPrograms, 86);

    std::vector<std::vector<int>> voicings;
    std::vector<int> contour;
    compose_chords(c, chords, pad, voicings);
    compose_bass(c, bass);
    if (has_drums) compose_drums(c, drums);
    if (has_arp) compose_arp(c, arp, voicings);
    if (has_lead) compose_lead(c, lead, contour);
    if (has_counter) compose_counter(c, counter, contour);
    for (Part* p : {&drums, &bass, &chords, &arp, &lead, &counter}) {
        fix_overlaps(*p);
        if (!p->notes.empty()) s.parts.push_back(std::move(*p));
    }
    return s;
}

std::vector<uint8_t> Song::to_midi() const {
    std::vector<MidiEvent> ev;
    auto meta = [&](uint8_t type, std::vector<uint8_t> data) {
        MidiEvent e;
        e.status = 0xFF;
        e.meta_type = type;
        e.meta = std::move(data);
        ev.push_back(std::move(e));
    };
    const uint32_t us = static_cast<uint32_t>(std::lround(microseconds_per_quarter()));
    meta(0x51, {static_cast<uint8_t>(us >> 16), static_cast<uint8_t>(us >> 8), static_cast<uint8_t>(us)});
    meta(0x58, {static_cast<uint8_t>(meter_num), static_cast<uint8_t>(meter_den == 8 ? 3 : 2), 24, 8});
    const ModeDef* m = &kModes[0];
    for (const auto& md : kModes)
        if (mode == md.name) m = &md;
    // Key signature: sharps (+) or flats (-) of the relative major.
    static const int fifths[12] = {0, -5, 2, -3, 4, -1, 6, 1, -4, 3, -2, 5};
    meta(0x59, {static_cast<uint8_t>(static_cast<int8_t>(fifths[wrap12(tonic + m->to_major)])),
                static_cast<uint8_t>(mode == "major" || mode == "mixolydian" ? 0 : 1)});
    for (const auto& p : parts) {
        const uint8_t ch = static_cast<uint8_t>(p.channel);
        auto cc = [&](uint8_t num, uint8_t val) { ev.push_back({0, static_cast<uint8_t>(0xB0 | ch), num, val, 0, {}}); };
        cc(0, p.channel == kDrumChannel ? 0 : 0);  // bank 0 (the drum channel is mapped to bank 128 by the synth)
        ev.push_back({0, static_cast<uint8_t>(0xC0 | ch), static_cast<uint8_t>(p.program), 0, 0, {}});
        cc(7, static_cast<uint8_t>(p.volume));
        cc(10, 64);  // centred: stems are mono anyway
        cc(91, 0);   // no reverb send
        cc(93, 0);   // no chorus send
        for (const auto& n : p.notes) {
            ev.push_back({n.tick, static_cast<uint8_t>(0x90 | ch), static_cast<uint8_t>(n.key), static_cast<uint8_t>(n.vel), 0, {}});
            ev.push_back({n.tick + n.dur, static_cast<uint8_t>(0x80 | ch), static_cast<uint8_t>(n.key), 64, 0, {}});
        }
    }
    return write_midi(std::move(ev), ticks_per_quarter);
}

std::string Song::to_json() const {
    using nlohmann::json;
    const double sec_per_tick = microseconds_per_quarter() / 1e6 / ticks_per_quarter;
    json j;
    j["generator"] = "cocola synth (procedural)";
    j["seed"] = seed;
    j["key"] = key_name();
    j["tonic"] = tonic;
    j["mode"] = mode;
    j["bpm"] = bpm;
    j["meter"] = std::to_string(meter_num) + "/" + std::to_string(meter_den);
    j["bars"] = bars;
    j["seconds"] = seconds;
    j["form"] = form;
    if (playing != "trained") j["playing"] = playing;
    json chs = json::array();
    for (const auto& c : chords) {
        if (c.start * sec_per_tick >= seconds) break;
        chs.push_back({{"time", c.start * sec_per_tick}, {"bar", c.start / bar_ticks}, {"symbol", c.symbol},
                       {"roman", c.roman}});
    }
    j["chords"] = chs;
    json st = json::array();
    for (const auto& p : parts) {
        const bool drums = p.channel == kDrumChannel;
        st.push_back({{"name", p.role},
                      {"role", p.role},
                      {"pattern", p.pattern},
                      {"channel", p.channel},
                      {"program", p.program},
                      {"program_name", drums ? "Drum kit " + std::to_string(p.program) : gm_program_name(p.program)},
                      {"class", drums ? "Drums" : gm_program_class(p.program)},
                      {"notes", p.notes.size()}});
    }
    j["stems"] = st;
    return j.dump(2);
}

}  // namespace cocola::synth
