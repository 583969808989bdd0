// Multi-stem synthesis: MIDI files, procedural songs, per-channel rendering that sums to the mix, data sets on disk.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "cocola/audio.hpp"
#include "cocola/data.hpp"
#include "cocola/error.hpp"
#include "cocola/synth.hpp"
#include "test_util.hpp"

namespace fs = std::filesystem;
using namespace cocola;

namespace {

bool have_soundfont() { return fs::exists(synth::kDefaultSoundFont); }

double snr_db(const std::vector<float>& ref, const std::vector<float>& x) {
    double s = 0, n = 0;
    for (size_t i = 0; i < ref.size(); ++i) {
        s += double(ref[i]) * ref[i];
        const double d = double(ref[i]) - (i < x.size() ? x[i] : 0.0f);
        n += d * d;
    }
    return 10 * std::log10(s / std::max(n, 1e-30));
}

std::string slurp(const std::string& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

TEST(GeneralMidi, NamesSlugsClasses) {
    EXPECT_STREQ(synth::gm_program_name(0), "Acoustic Grand Piano");
    EXPECT_STREQ(synth::gm_program_name(127), "Gunshot");
    EXPECT_EQ(synth::gm_program_slug(24), "acoustic_guitar_nylon");
    EXPECT_EQ(synth::gm_program_slug(81), "lead_2_sawtooth");
    EXPECT_STREQ(synth::gm_program_class(33), "Bass");
    EXPECT_STREQ(synth::gm_program_class(48), "Ensemble");
}

TEST(Midi, WriteThenSummarize) {
    std::vector<synth::MidiEvent> ev;
    ev.push_back({0, 0xFF, 0, 0, 0x51, {0x07, 0xA1, 0x20}});  // 500000 us per quarter: 120 BPM
    ev.push_back({0, 0xC3, 40, 0, 0, {}});
    for (int i = 0; i < 8; ++i) {
        ev.push_back({i * 480, 0x93, static_cast<uint8_t>(60 + i), 100, 0, {}});
        ev.push_back({i * 480 + 400, 0x83, static_cast<uint8_t>(60 + i), 0, 0, {}});
        ev.push_back({i * 480, 0x99, 36, 100, 0, {}});
        ev.push_back({i * 480 + 100, 0x89, 36, 0, 0, {}});
    }
    const auto bytes = synth::write_midi(ev, 480);
    const auto s = synth::summarize_midi(bytes, "test.mid");
    EXPECT_EQ(s.ticks_per_quarter, 480);
    EXPECT_EQ(s.notes[3], 8);
    EXPECT_EQ(s.notes[9], 8);
    EXPECT_EQ(s.notes[0], 0);
    EXPECT_EQ(s.program[3], 40);
    EXPECT_NEAR(s.seconds, (7 * 480 + 400) / 960.0, 1e-9);
}

TEST(Midi, BadFilesNameTheFile) {
    std::vector<uint8_t> junk = {'R', 'I', 'F', 'F', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    try {
        synth::summarize_midi(junk, "junk.mid");
        FAIL();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("junk.mid"), std::string::npos);
    }
    auto song = synth::compose(3, 4).to_midi();
    song.resize(song.size() / 2);  // truncated mid-track
    EXPECT_THROW(synth::summarize_midi(song, "half.mid"), Error);
}

TEST(Compose, DeterministicAndVaried) {
    const auto a = synth::compose(42, 8), b = synth::compose(42, 8), c = synth::compose(43, 8);
    EXPECT_EQ(a.to_midi(), b.to_midi());
    EXPECT_EQ(a.to_json(), b.to_json());
    EXPECT_NE(a.to_midi(), c.to_midi());

    std::set<int> programs;
    std::set<std::string> modes, meters, patterns;
    std::set<int> tonics;
    for (uint64_t seed = 0; seed < 120; ++seed) {
        const auto s = synth::compose(seed, 10);
        EXPECT_GE(s.parts.size(), 2u);
        EXPECT_FALSE(s.chords.empty());
        modes.insert(s.mode);
        meters.insert(std::to_string(s.meter_num) + "/" + std::to_string(s.meter_den));
        tonics.insert(s.tonic);
        for (const auto& p : s.parts) {
            if (p.role == "drums") EXPECT_EQ(p.channel, synth::kDrumChannel);
            else programs.insert(p.program);
            patterns.insert(p.role + ":" + p.pattern);
            for (const auto& n : p.notes) {
                ASSERT_GE(n.key, 0);
                ASSERT_LE(n.key, 127);
                ASSERT_GT(n.dur, 0);
            }
        }
    }
    EXPECT_GE(programs.size(), 24u) << "the issue asks for at least 24 GM programs across roles";
    EXPECT_GE(modes.size(), 3u);
    EXPECT_EQ(meters.size(), 3u);
    EXPECT_GE(tonics.size(), 10u);
    EXPECT_GE(patterns.size(), 20u);
}

TEST(Compose, UnseenPlayingSharesNoPatternWithTrainingAndKeepsTheSongsHarmony) {
    std::set<std::string> trained, unseen, varied;
    for (uint64_t seed = 0; seed < 120; ++seed) {
        const auto t = synth::compose(seed, 12), u = synth::compose(seed, 12, "unseen");
        const auto v = synth::compose(seed, 12, "varied");
        EXPECT_EQ(v.chords.size(), t.chords.size());
        for (const auto& p : v.parts) {
            varied.insert(p.role + ":" + p.pattern);
            for (const auto& n : p.notes) ASSERT_GT(n.dur, 0);
        }
        // The same song underneath: key, tempo, meter and chords come before the playing is drawn.
        EXPECT_EQ(u.tonic, t.tonic);
        EXPECT_EQ(u.bpm, t.bpm);
        EXPECT_EQ(u.meter_num, t.meter_num);
        ASSERT_EQ(u.chords.size(), t.chords.size());
        for (size_t i = 0; i < u.chords.size(); ++i) EXPECT_EQ(u.chords[i].symbol, t.chords[i].symbol);
        EXPECT_NE(u.to_midi(), t.to_midi());
        EXPECT_NE(u.to_json().find("\"playing\": \"unseen\""), std::string::npos);
        EXPECT_EQ(t.to_json().find("\"playing\""), std::string::npos);  // training sets' sidecars unchanged
        for (const auto& p : t.parts) trained.insert(p.role + ":" + p.pattern);
        for (const auto& p : u.parts) {
            unseen.insert(p.role + ":" + p.pattern);
            if (p.role != "bass" && p.role != "chords" && p.role != "arp") continue;
            // Held-out playing is still coherent: every pitched accompaniment note is a tone of its chord.
            for (const auto& n : p.notes) {
                const synth::ChordSpan* ch = &u.chords.back();
                for (const auto& c : u.chords)
                    if (n.tick >= c.start && n.tick < c.end) ch = &c;
                EXPECT_NE(std::find(ch->pcs.begin(), ch->pcs.end(), n.key % 12), ch->pcs.end())
                    << "seed " << seed << " " << p.role << ":" << p.pattern << " key " << n.key;
            }
            for (const auto& n : p.notes) ASSERT_GT(n.dur, 0);
        }
    }
    EXPECT_GE(unseen.size(), 14u);
    for (const auto& p : unseen)
        if (p.rfind("counter:", 0) != 0) {
            EXPECT_EQ(trained.count(p), 0u) << p << " is a training pattern";
            EXPECT_EQ(varied.count(p), 0u) << p << " is in the varied training pool";
        }
    // Varied songs play both pools: most of the usual patterns and at least a dozen extra ones.
    size_t extra = 0, usual = 0;
    for (const auto& p : varied) (trained.count(p) ? usual : extra) += 1;
    EXPECT_GE(extra, 12u);
    EXPECT_GE(usual, trained.size() / 2);
    EXPECT_EQ(synth::compose(7, 8, "unseen").to_midi(), synth::compose(7, 8, "unseen").to_midi());
    EXPECT_THROW(synth::compose(7, 8, "unheard"), Error);
}

TEST(Compose, ChordTonesAndVoiceLeading) {
    // Pads move little between chords: the mean movement per voice stays small.
    for (uint64_t seed = 0; seed < 30; ++seed) {
        const auto s = synth::compose(seed, 20);
        for (const auto& p : s.parts) {
            if (p.role != "chords" || p.pattern != "pad") continue;
            std::map<int64_t, std::vector<int>> by_tick;
            for (const auto& n : p.notes) by_tick[n.tick].push_back(n.key);
            std::vector<int> prev;
            double moved = 0;
            int changes = 0;
            for (auto& [t, keys] : by_tick) {
                std::sort(keys.begin(), keys.end());
                if (!prev.empty() && prev.size() == keys.size()) {
                    for (size_t i = 0; i < keys.size(); ++i) moved += std::abs(keys[i] - prev[i]);
                    changes += keys.size();
                }
                prev = keys;
            }
            if (changes) {
                EXPECT_LT(moved / changes, 4.0) << "seed " << seed;
            }
        }
        // Bass notes on chord starts are chord roots.
        for (const auto& p : s.parts) {
            if (p.role != "bass") continue;
            for (const auto& ch : s.chords)
                for (const auto& n : p.notes)
                    if (n.tick == ch.start) {
                        EXPECT_EQ(((n.key % 12) + 12) % 12, ch.pcs[0]) << "seed " << seed;
                    }
        }
    }
}

TEST(Render, StemsSumToTheMixAndRepeat) {
    if (!have_soundfont()) GTEST_SKIP() << "no " << synth::kDefaultSoundFont;
    synth::Renderer r;
    synth::RenderOptions ro;
    ro.max_seconds = 4.0;
    for (uint64_t seed : {7u, 8u}) {
        const auto midi = synth::compose(seed, 4.0).to_midi();
        const auto stems = r.render_stems(midi, ro, "song");
        ASSERT_GE(stems.size(), 2u);
        std::vector<float> sum(64000, 0.0f);
        for (const auto& s : stems) {
            ASSERT_EQ(s.audio.size(), 64000u);
            for (size_t i = 0; i < sum.size(); ++i) sum[i] += s.audio[i];
        }
        const auto mix = r.render_mix(midi, ro, "song");
        ASSERT_EQ(mix.size(), 64000u);
        const double snr = snr_db(mix, sum);
        std::printf("seed %d: sum of %zu stems vs one stereo render: SNR %.1f dB\n", int(seed), stems.size(), snr);
        EXPECT_GT(snr, 60.0) << "stems must add up to an ordinary render";
        const auto again = r.render_stems(midi, ro, "song");
        for (size_t k = 0; k < stems.size(); ++k) EXPECT_EQ(stems[k].audio, again[k].audio);
    }
}

TEST(Render, MissingSoundFontIsAnError) {
    EXPECT_THROW(synth::Renderer("/nonexistent/font.sf2"), Error);
}

TEST(SynthSet, ProceduralLayoutResumeAndDeterminism) {
    if (!have_soundfont()) GTEST_SKIP();
    const std::string a = testutil::temp_dir("synth_a"), b = testutil::temp_dir("synth_b");
    synth::SetOptions o;
    o.out_dir = a;
    o.jobs = 2;
    o.write_mix = true;
    auto rep = synth::write_procedural_set(5, 3, 4.0, o);
    EXPECT_EQ(rep.tracks_written, 3u);
    EXPECT_EQ(rep.tracks_failed, 0u);
    EXPECT_NEAR(rep.audio_seconds, 12.0, 1e-6);
    // The generic reader sees our layout, ignores mix.wav and takes classes from meta.json.
    const auto ds = data::scan(a);
    EXPECT_EQ(ds.layout, data::Layout::Generic);
    ASSERT_EQ(ds.tracks.size(), 3u);
    for (const auto& t : ds.tracks) {
        EXPECT_EQ(t.split, data::split_for(t.id));
        const fs::path dir = fs::path(a) / t.split / t.id;
        const auto meta = nlohmann::json::parse(slurp((dir / "meta.json").string()));
        EXPECT_EQ(meta["stems"].size(), t.stems.size());
        for (const char* k : {"key", "bpm", "meter", "chords", "seed"}) EXPECT_TRUE(meta.contains(k)) << k;
        std::vector<float> sum;
        for (const auto& s : t.stems) {
            EXPECT_NE(s.name, "mix");
            EXPECT_NE(s.cls, s.name) << "class should come from meta.json";
            const auto x = audio::load_mono(s.path);
            sum.resize(x.size(), 0.0f);
            for (size_t i = 0; i < x.size(); ++i) sum[i] += x[i];
        }
        EXPECT_GT(snr_db(audio::load_mono((dir / "mix.wav").string()), sum), 60.0);
        EXPECT_TRUE(fs::exists(dir / "song.mid"));
    }
    // Resume: complete tracks are not rendered again.
    rep = synth::write_procedural_set(5, 4, 4.0, o);
    EXPECT_EQ(rep.tracks_existing, 3u);
    EXPECT_EQ(rep.tracks_written, 1u);
    // Same seed elsewhere, other thread count: identical audio (the WAV header's PEAK chunk holds a timestamp,
    // so samples are compared, not bytes).
    o.out_dir = b;
    o.jobs = 1;
    o.split = "none";
    synth::write_procedural_set(5, 2, 4.0, o);
    for (const auto& t : ds.tracks) {
        if (t.id != "song00000" && t.id != "song00001") continue;
        for (const auto& s : t.stems)
            EXPECT_TRUE(audio::load_mono(s.path) == audio::load_mono((fs::path(b) / t.id / (s.name + ".wav")).string()))
                << s.path;
    }
}

TEST(SynthSet, MidiFilesToChannelStems) {
    if (!have_soundfont()) GTEST_SKIP();
    const std::string in = testutil::temp_dir("synth_midi_in"), out = testutil::temp_dir("synth_midi_out");
    const auto song = synth::compose(11, 4.0);
    {
        const auto m = song.to_midi();
        std::ofstream(in + "/tune.mid", std::ios::binary).write(reinterpret_cast<const char*>(m.data()), m.size());
        std::ofstream(in + "/broken.mid", std::ios::binary) << "MThd garbage";
    }
    synth::SetOptions o;
    o.out_dir = out;
    o.split = "train";
    o.jobs = 2;
    const auto rep = synth::write_midi_set(in, o);
    EXPECT_EQ(rep.tracks_written, 1u);
    EXPECT_EQ(rep.tracks_failed, 1u);
    ASSERT_EQ(rep.errors.size(), 1u);
    EXPECT_NE(rep.errors[0].find("broken.mid"), std::string::npos);
    const fs::path dir = fs::path(out) / "train" / "tune";
    const auto meta = nlohmann::json::parse(slurp((dir / "meta.json").string()));
    std::set<std::string> names;
    for (const auto& s : meta["stems"]) names.insert(s["name"].get<std::string>());
    for (const auto& p : song.parts) {
        if (p.channel == synth::kDrumChannel) EXPECT_TRUE(names.count("ch10_drums"));
        else {
            char buf[16];
            std::snprintf(buf, sizeof(buf), "ch%02d_", p.channel + 1);
            EXPECT_TRUE(names.count(buf + synth::gm_program_slug(p.program))) << buf;
        }
    }
    // Without a length limit the song plays to its end plus the release tail: longer than the composed 4 s.
    const auto x = audio::load_mono((dir / (*names.begin() + ".wav")).string());
    EXPECT_GT(x.size(), 4u * 16000u);
}

TEST(SynthCli, WritesASetAndReportsSpeed) {
    if (!have_soundfont()) GTEST_SKIP();
    const std::string out = testutil::temp_dir("synth_cli");
    auto r = testutil::run_cli("synth --tracks 2 --seconds 4 --seed 9 --split none -o " + out);
    EXPECT_EQ(r.code, 0) << r.out;
    EXPECT_NE(r.out.find("2 tracks written"), std::string::npos) << r.out;
    EXPECT_TRUE(fs::exists(out + "/song00001/meta.json"));
    r = testutil::run_cli("synth --tracks 1 --seconds 4 --soundfont /nonexistent.sf2 -o " + out + "/x");
    EXPECT_NE(r.code, 0);
    EXPECT_NE(r.out.find("/nonexistent.sf2"), std::string::npos) << r.out;
    // Held-out playing: the same song, other patterns, recorded in the sidecar; MIDI files are refused it.
    r = testutil::run_cli("synth --tracks 2 --seconds 4 --seed 9 --split none --playing unseen -o " + out + "/u");
    EXPECT_EQ(r.code, 0) << r.out;
    const auto meta = nlohmann::json::parse(std::ifstream(out + "/u/song00001/meta.json"));
    EXPECT_EQ(meta.at("playing"), "unseen");
    EXPECT_EQ(meta.at("key"), nlohmann::json::parse(std::ifstream(out + "/song00001/meta.json")).at("key"));
    r = testutil::run_cli("synth --midi " + out + " --playing unseen -o " + out + "/m");
    EXPECT_NE(r.code, 0);
    EXPECT_NE(r.out.find("--playing applies to procedural songs"), std::string::npos) << r.out;
    r = testutil::run_cli("synth --tracks 1 --playing human -o " + out + "/h");
    EXPECT_NE(r.code, 0);
}

// ---------------------------------------------------------------- production effects (libsox)

TEST(Effects, ChainsRunThroughSoxAndKeepTheLength) {
    std::vector<float> tone(16000);
    for (size_t i = 0; i < tone.size(); ++i) tone[i] = 0.5f * static_cast<float>(std::sin(2 * M_PI * 440.0 * i / 16000));
    // SoX's gain effect: -6.02 dB halves every sample (to the 32-bit integer precision of the chain).
    const auto half = audio::apply_effects(tone, 16000, {{"gain", "-6.0206"}});
    ASSERT_EQ(half.size(), tone.size());
    for (size_t i = 0; i < tone.size(); i += 97) EXPECT_NEAR(half[i], tone[i] / 2, 1e-5) << i;
    // A reverb's tail is cut: as many samples out as in, and the sound changed.
    const auto wet = audio::apply_effects(tone, 16000, {{"reverb", "80", "50", "100", "0"}});
    ASSERT_EQ(wet.size(), tone.size());
    EXPECT_LT(snr_db(tone, wet), 20.0);
    // Full-scale input with a boost does not clip inside the chain (it runs 18 dB down).
    std::vector<float> loud(tone);
    for (float& v : loud) v *= 1.9f;
    const auto boosted = audio::apply_effects(loud, 16000, {{"gain", "6.0206"}});
    EXPECT_NEAR(*std::max_element(boosted.begin(), boosted.end()), 2 * *std::max_element(loud.begin(), loud.end()), 1e-3);
    // Nothing to do: the input as it is.
    EXPECT_EQ(audio::apply_effects(tone, 16000, {}), tone);
}

TEST(Effects, UnknownEffectsAndBadOptionsNameTheEffect) {
    const std::vector<float> x(1600, 0.1f);
    try {
        audio::apply_effects(x, 16000, {{"equalizer", "1000", "1q", "-3"}, {"flanger-deluxe", "3"}});
        FAIL() << "no error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("flanger-deluxe"), std::string::npos) << e.what();
    }
    try {
        audio::apply_effects(x, 16000, {{"reverb", "not-a-number"}});
        FAIL() << "no error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("reverb not-a-number"), std::string::npos) << e.what();
    }
    // A mono stem must stay mono: SoX's default reverb would make two channels.
    EXPECT_THROW(audio::apply_effects(x, 16000, {{"reverb", "50"}}), Error);
}

TEST(Effects, RandomChainsAreAFunctionOfTheSeedAndKeepTheStemLevel) {
    EXPECT_EQ(audio::effect_chain_text(synth::random_effect_chain(11)), audio::effect_chain_text(synth::random_effect_chain(11)));
    std::set<std::string> chains;
    for (uint64_t s = 0; s < 40; ++s) chains.insert(audio::effect_chain_text(synth::random_effect_chain(s)));
    EXPECT_GT(chains.size(), 35u);
    std::vector<float> stem(32000);
    for (size_t i = 0; i < stem.size(); ++i)
        stem[i] = 0.3f * static_cast<float>(std::sin(2 * M_PI * 220.0 * i / 16000) * (i % 4000 < 2000 ? 1.0 : 0.2));
    auto rms = [](const std::vector<float>& x) {
        double s = 0;
        for (float v : x) s += double(v) * v;
        return std::sqrt(s / x.size());
    };
    for (uint64_t s = 0; s < 40; ++s) {
        const auto chain = synth::random_effect_chain(s);
        const auto out = synth::apply_stem_effects(stem, chain);  // throws if SoX refuses a drawn chain
        ASSERT_EQ(out.size(), stem.size());
        EXPECT_NEAR(rms(out), rms(stem), 1e-3 * rms(stem)) << audio::effect_chain_text(chain);
    }
}

TEST(SynthSet, RandomEffectsChangeTheStemsNotTheSongAndAreRecorded) {
    if (!have_soundfont()) GTEST_SKIP();
    const std::string dry = testutil::temp_dir("synth_dry"), wet = testutil::temp_dir("synth_fx");
    synth::SetOptions o;
    o.out_dir = dry;
    o.split = "none";
    o.jobs = 2;
    synth::write_procedural_set(9, 2, 4.0, o);
    o.out_dir = wet;
    o.effects = "random";
    o.write_mix = true;
    ASSERT_EQ(synth::write_procedural_set(9, 2, 4.0, o).tracks_written, 2u);
    for (const char* id : {"song00000", "song00001"}) {
        const auto meta = nlohmann::json::parse(slurp((fs::path(wet) / id / "meta.json").string()));
        ASSERT_TRUE(meta.contains("effects"));
        std::vector<float> sum;
        int changed = 0;
        for (const auto& s : meta["stems"]) {
            const std::string name = s["name"];
            ASSERT_TRUE(meta["effects"].contains(name)) << name;
            const auto a = audio::load_mono((fs::path(dry) / id / (name + ".wav")).string());
            const auto b = audio::load_mono((fs::path(wet) / id / (name + ".wav")).string());
            ASSERT_EQ(a.size(), b.size()) << name;
            if (!meta["effects"][name].get<std::string>().empty() && snr_db(a, b) < 30) ++changed;
            sum.resize(b.size(), 0.0f);
            for (size_t i = 0; i < b.size(); ++i) sum[i] += b[i];
        }
        EXPECT_GT(changed, 0) << id;
        // The mix is the sum of the processed stems.
        EXPECT_GT(snr_db(audio::load_mono((fs::path(wet) / id / "mix.wav").string()), sum), 60.0);
    }
    o.effects = "plenty";
    EXPECT_THROW(synth::write_procedural_set(9, 1, 4.0, o), Error);
}
