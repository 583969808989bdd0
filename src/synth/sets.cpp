// Writing synthesized sets to disk in the generic layout (DIR/<split>/<track>/<stem>.wav + meta.json), in parallel,
// resumable: a track whose meta.json exists (written last) is complete and is not rendered again.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "cocola/audio.hpp"
#include "cocola/data.hpp"
#include "cocola/error.hpp"
#include "cocola/fsutil.hpp"
#include "cocola/rng.hpp"
#include "cocola/synth.hpp"

namespace cocola::synth {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string track_dir(const SetOptions& opt, const std::string& name) {
    fs::path p(opt.out_dir);
    if (opt.split == "auto") p /= data::split_for(name);
    else if (opt.split != "none" && !opt.split.empty()) p /= opt.split;
    return (p / name).string();
}

bool silent(const std::vector<float>& x) {
    for (float v : x)
        if (v != 0.0f) return false;
    return true;
}

// Runs job(i, renderer) for i in [0, n) on `jobs` threads, each with its own Renderer.
template <class Job>
SetReport run_parallel(size_t n, const SetOptions& opt, const SetProgress& progress, Job&& job) {
    SetReport rep;
    const auto t0 = std::chrono::steady_clock::now();
    int jobs = opt.jobs > 0 ? opt.jobs : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    jobs = static_cast<int>(std::min<size_t>(jobs, std::max<size_t>(n, 1)));
    std::atomic<size_t> next{0};
    std::mutex mu;
    size_t done = 0;
    std::exception_ptr fatal;
    auto worker = [&] {
        try {
            Renderer r(opt.soundfont);
            while (true) {
                const size_t i = next++;
                if (i >= n) break;
                std::string msg;
                SetReport one;
                try {
                    one = job(i, r);
                } catch (const Error& e) {
                    one.tracks_failed = 1;
                    one.errors.push_back(e.what());
                    msg = std::string("cocola: error: ") + e.what();
                }
                std::lock_guard<std::mutex> lk(mu);
                rep.tracks_written += one.tracks_written;
                rep.tracks_existing += one.tracks_existing;
                rep.tracks_failed += one.tracks_failed;
                rep.stems += one.stems;
                rep.audio_seconds += one.audio_seconds;
                rep.errors.insert(rep.errors.end(), one.errors.begin(), one.errors.end());
                ++done;
                if (progress) progress(done, n, msg);
            }
        } catch (...) {
            std::lock_guard<std::mutex> lk(mu);
            if (!fatal) fatal = std::current_exception();
            next = n;  // stop the others
        }
    };
    std::vector<std::thread> threads;
    for (int j = 0; j < jobs; ++j) threads.emplace_back(worker);
    for (auto& t : threads) t.join();
    if (fatal) std::rethrow_exception(fatal);
    rep.wall_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return rep;
}

// Writes the stems (skipping silent channels; through their random effect chains with --effects random, drawn
// from `effects_seed` and the stem's name), optional mix, and finally meta.json.
SetReport write_track(const std::string& dir, const std::vector<ChannelAudio>& chans,
                      const std::vector<std::string>& names, json meta, const SetOptions& opt,
                      const std::vector<uint8_t>* midi, uint64_t effects_seed) {
    SetReport rep;
    fs::create_directories(dir);
    json stems = json::array();
    const bool with_effects = opt.effects == "random";
    json effects = json::object();
    std::vector<float> mix;
    for (size_t k = 0; k < chans.size(); ++k) {
        if (silent(chans[k].audio)) continue;
        std::vector<float> processed;
        if (with_effects) {
            const audio::EffectChain chain = random_effect_chain(mix_seed(effects_seed, hash_name(names[k])));
            processed = apply_stem_effects(chans[k].audio, chain);
            effects[names[k]] = audio::effect_chain_text(chain);
        }
        const auto& a = with_effects ? processed : chans[k].audio;
        audio::write_wav((fs::path(dir) / (names[k] + ".wav")).string(), a, audio::kSampleRate);
        if (opt.write_mix) {
            mix.resize(a.size(), 0.0f);
            for (size_t i = 0; i < a.size(); ++i) mix[i] += a[i];
        }
        stems.push_back(names[k]);
        ++rep.stems;
    }
    if (rep.stems < 2) throw Error(dir + ": fewer than 2 stems have sound; track not written");
    if (opt.write_mix) audio::write_wav((fs::path(dir) / "mix.wav").string(), mix, audio::kSampleRate);
    if (midi) {
        const std::string p = (fs::path(dir) / "song.mid").string();
        fsutil::write_file_atomically(p, std::string(midi->begin(), midi->end()));
    }
    // Keep only the stems that were written in the sidecar's stem list.
    if (meta.contains("stems")) {
        json kept = json::array();
        for (const auto& s : meta["stems"])
            if (std::find(stems.begin(), stems.end(), s["name"]) != stems.end()) kept.push_back(s);
        meta["stems"] = kept;
    }
    meta["sample_rate"] = audio::kSampleRate;
    meta["frames"] = chans.empty() ? 0 : chans[0].audio.size();
    meta["soundfont"] = opt.soundfont;
    if (with_effects) meta["effects"] = effects;  // SoX chain per stem
    fsutil::write_file_atomically((fs::path(dir) / "meta.json").string(), meta.dump(2) + "\n");
    rep.tracks_written = 1;
    rep.audio_seconds = chans.empty() ? 0 : static_cast<double>(chans[0].audio.size()) / audio::kSampleRate;
    return rep;
}

void check_effects(const SetOptions& opt) {
    if (opt.effects != "none" && opt.effects != "random")
        throw Error("synth: --effects must be none or random, got \"" + opt.effects + "\"");
}

bool complete(const std::string& dir, const SetOptions& opt) {
    return !opt.overwrite && fs::exists(fs::path(dir) / "meta.json");
}

}  // namespace

audio::EffectChain random_effect_chain(uint64_t seed) {
    Rng rng(seed);
    auto num = [](double v, int decimals = 1) {
        char b[32];
        std::snprintf(b, sizeof(b), "%.*f", decimals, v);
        return std::string(b);
    };
    audio::EffectChain chain;
    // Equalizer: one or two bands; sometimes a high-pass (thinner) or low-pass (duller) filter.
    const int bands = rng.chance(0.8) ? static_cast<int>(rng.range(1, 2)) : 0;
    for (int b = 0; b < bands; ++b)
        chain.push_back({"equalizer", num(100 * std::pow(60.0, rng.uniform()), 0), num(rng.uniform(0.7, 2.0)) + "q",
                         num(rng.uniform(-9, 6))});
    if (rng.chance(0.3)) chain.push_back({"highpass", num(rng.uniform(60, 300), 0)});
    if (rng.chance(0.2)) chain.push_back({"lowpass", num(rng.uniform(2500, 7000), 0)});
    // Compression: ratio 2-6 above a threshold of -35..-15 dB (the chain runs 18 dB below the stem's level).
    if (rng.chance(0.4)) {
        const double t = rng.uniform(-35, -15), ratio = rng.uniform(2, 6);
        chain.push_back({"compand", "0.005,0.15", "6:-90,-90," + num(t) + "," + num(t) + ",0," + num(t * (1 - 1 / ratio))});
    }
    // Saturation: the drive must make up the chain's 18 dB of headroom to bite.
    if (rng.chance(0.25)) chain.push_back({"overdrive", num(rng.uniform(12, 30)), num(rng.uniform(10, 40), 0)});
    if (rng.chance(0.25))
        chain.push_back({"chorus", "0.7", "0.9", num(rng.uniform(40, 60), 0), "0.4", num(rng.uniform(0.2, 1.0), 2),
                         num(rng.uniform(1, 3)), "-t"});
    if (rng.chance(0.6))
        // Stereo depth 0: SoX's reverb would otherwise turn a mono stem into two channels.
        chain.push_back({"reverb", num(rng.uniform(10, 80), 0), num(rng.uniform(20, 80), 0), num(rng.uniform(20, 100), 0), "0"});
    return chain;
}

std::vector<float> apply_stem_effects(const std::vector<float>& stem, const audio::EffectChain& chain) {
    std::vector<float> out = audio::apply_effects(stem, audio::kSampleRate, chain);
    double in = 0, now = 0;
    for (float v : stem) in += static_cast<double>(v) * v;
    for (float v : out) now += static_cast<double>(v) * v;
    if (now > 0) {
        const float g = static_cast<float>(std::sqrt(in / now));
        for (float& v : out) v *= g;
    }
    return out;
}

SetReport write_procedural_set(uint64_t seed, size_t tracks, double seconds, const SetOptions& opt,
                               const SetProgress& progress) {
    if (!(seconds > 0) || seconds > 3600) throw Error("synth: --seconds must be above 0 and at most 3600 (an hour a song)");
    if (opt.out_dir.empty()) throw Error("synth: no output directory");
    check_effects(opt);
    if (opt.playing != "trained" && opt.playing != "unseen" && opt.playing != "varied")
        throw Error("synth: --playing must be trained, unseen or varied, got \"" + opt.playing + "\"");
    return run_parallel(tracks, opt, progress, [&](size_t i, Renderer& r) {
        char name[32];
        std::snprintf(name, sizeof(name), "song%05zu", i);
        const std::string dir = track_dir(opt, name);
        SetReport rep;
        if (complete(dir, opt)) {
            rep.tracks_existing = 1;
            return rep;
        }
        // Track i depends on (seed, i) only: a set of N tracks is a prefix of a set of N + M.
        const Song song = compose(mix_seed(seed, i), seconds, opt.playing);
        const auto midi = song.to_midi();
        RenderOptions ro;
        ro.max_seconds = seconds;
        auto chans = r.render_stems(midi, ro, dir);
        std::vector<std::string> names;
        for (const auto& c : chans) {
            std::string n = "ch" + std::to_string(c.channel);
            for (const auto& p : song.parts)
                if (p.channel == c.channel) n = p.role;
            names.push_back(n);
        }
        json meta = json::parse(song.to_json());
        meta["set_seed"] = seed;
        meta["track_index"] = i;
        return write_track(dir, chans, names, meta, opt, &midi, mix_seed(seed ^ 0xEFFEC75u, i));
    });
}

SetReport write_midi_set(const std::string& midi_dir, const SetOptions& opt, const SetProgress& progress) {
    std::error_code ec;
    if (!fs::is_directory(midi_dir, ec)) throw Error(midi_dir + ": no such directory");
    check_effects(opt);
    std::vector<std::string> files;
    for (auto it = fs::recursive_directory_iterator(midi_dir, ec); !ec && it != fs::recursive_directory_iterator();
         it.increment(ec)) {
        if (!it->is_regular_file()) continue;
        std::string ext = it->path().extension().string();
        for (auto& ch : ext) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        if (ext == ".mid" || ext == ".midi" || ext == ".smf") files.push_back(it->path().string());
    }
    std::sort(files.begin(), files.end());
    if (files.empty()) throw Error(midi_dir + ": no .mid files found");
    return run_parallel(files.size(), opt, progress, [&](size_t i, Renderer& r) {
        const std::string& file = files[i];
        const std::string dir = track_dir(opt, fsutil::stem(file));
        SetReport rep;
        if (complete(dir, opt)) {
            rep.tracks_existing = 1;
            return rep;
        }
        const auto bytes = read_file_bytes(file);
        const MidiSummary sum = summarize_midi(bytes, file);
        RenderOptions ro;
        auto chans = r.render_stems(bytes, ro, file);
        std::vector<std::string> names;
        json stems = json::array();
        for (const auto& c : chans) {
            const bool drums = c.channel == kDrumChannel;
            char prefix[16];
            std::snprintf(prefix, sizeof(prefix), "ch%02d_", c.channel + 1);
            const std::string name = drums ? std::string("ch10_drums") : prefix + gm_program_slug(sum.program[c.channel]);
            names.push_back(name);
            stems.push_back({{"name", name},
                             {"channel", c.channel},
                             {"program", sum.program[c.channel]},
                             {"program_name", drums ? "Drums" : gm_program_name(sum.program[c.channel])},
                             {"class", drums ? "Drums" : gm_program_class(sum.program[c.channel])},
                             {"notes", sum.notes[c.channel]}});
        }
        json meta = {{"generator", "cocola synth --midi"},
                     {"source", fs::absolute(file).string()},
                     {"midi_seconds", sum.seconds},
                     {"midi_tracks", sum.tracks},
                     {"stems", stems}};
        return write_track(dir, chans, names, meta, opt, nullptr, hash_name(fsutil::stem(file)));
    });
}

}  // namespace cocola::synth
