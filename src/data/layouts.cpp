// Dataset layouts: where each dataset keeps its splits, tracks and stems, told apart by their folder structure.
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>

#include "cocola/audio.hpp"
#include "cocola/data.hpp"
#include "cocola/error.hpp"
#include "cocola/rng.hpp"

namespace cocola::data {

namespace fs = std::filesystem;

namespace {

std::string lower(std::string s) {
    for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

std::vector<fs::path> subdirs(const fs::path& p) {
    std::vector<fs::path> out;
    std::error_code ec;
    for (auto it = fs::directory_iterator(p, ec); !ec && it != fs::directory_iterator(); it.increment(ec))
        if (it->is_directory(ec) && it->path().filename().string()[0] != '.') out.push_back(it->path());
    std::sort(out.begin(), out.end());
    return out;
}

bool is_audio(const fs::path& p) {
    static const std::set<std::string> ext = {".wav", ".flac", ".ogg", ".aif", ".aiff", ".mp3"};
    return ext.count(lower(p.extension().string())) > 0;
}

std::vector<fs::path> audio_files(const fs::path& dir) {
    std::vector<fs::path> out;
    std::error_code ec;
    for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator(); it.increment(ec))
        if (it->is_regular_file(ec) && is_audio(it->path()) && it->path().filename().string()[0] != '.')
            out.push_back(it->path());
    std::sort(out.begin(), out.end());
    return out;
}

bool has(const fs::path& p) {
    std::error_code ec;
    return fs::exists(p, ec);
}

// Split folder names normalised, so that --split valid works on every layout.
std::string norm_split(const std::string& s) {
    const std::string l = lower(s);
    if (l == "validation" || l == "val" || l == "valid" || l == "dev") return "valid";
    return l;
}
bool is_split_name(const std::string& s) {
    const std::string l = lower(s);
    return l == "train" || l == "test" || l == "valid" || l == "validation" || l == "val" || l == "omitted" ||
           l == "eval" || l == "dev";
}

const std::vector<std::string> kMusdbStems = {"bass", "drums", "other", "vocals"};

bool looks_musdb_track(const fs::path& t) {
    int n = 0;
    for (const auto& s : kMusdbStems) n += has(t / (s + ".wav"));
    return n >= 3;
}
bool looks_slakh_track(const fs::path& t) {
    return has(t / "metadata.yaml") && has(t / "stems");
}
const std::regex kCocoTrack("(string|brass|woodwind|random)_track[0-9]+");
bool looks_coco_track(const fs::path& t) {
    return std::regex_match(t.filename().string(), kCocoTrack) && has(t / "stems_audio");
}
bool looks_moises_track(const fs::path& t) {
    if (!has(t / "data.json")) return false;
    for (const auto& d : subdirs(t))
        if (!audio_files(d).empty()) return true;
    return false;
}

// Track folders of a layout: under split folders, or directly under the root.
template <class Pred>
bool any_track(const fs::path& root, Pred&& pred) {
    for (const auto& d : subdirs(root)) {
        if (pred(d)) return true;
        if (is_split_name(d.filename().string()))
            for (const auto& t : subdirs(d))
                if (pred(t)) return true;
    }
    return false;
}

fs::path moises_root(const fs::path& root) {
    // The archive unpacks to moisesdb/moisesdb_v0.1/<track id>/...; accept either level.
    if (has(root / "moisesdb_v0.1")) return root / "moisesdb_v0.1";
    return root;
}

TrackSource make_track(const std::string& id, const std::string& split) {
    TrackSource t;
    t.id = id;
    t.split = split;
    return t;
}

// ---------------------------------------------------------------- readers
void read_musdb(const fs::path& root, Dataset& ds) {
    for (const auto& sd : subdirs(root)) {
        if (!is_split_name(sd.filename().string())) continue;
        for (const auto& td : subdirs(sd)) {
            TrackSource t = make_track(td.filename().string(), norm_split(sd.filename().string()));
            for (const auto& s : kMusdbStems) {
                const fs::path p = td / (s + ".wav");
                if (has(p)) t.stems.push_back({s, s, p.string()});
                else ds.warnings.push_back(p.string() + ": missing stem");
            }
            ds.tracks.push_back(std::move(t));
        }
    }
}

void read_moises(const fs::path& root, Dataset& ds) {
    for (const auto& td : subdirs(moises_root(root))) {
        if (!has(td / "data.json") && subdirs(td).empty()) continue;
        const std::string id = td.filename().string();
        TrackSource t = make_track(id, split_for(id));
        // Every file under a stem-type folder is a stem of that type (a song may have two guitars).
        for (const auto& sd : subdirs(td)) {
            const std::string type = sd.filename().string();
            for (const auto& f : audio_files(sd))
                t.stems.push_back({type + "/" + f.stem().string(), type, f.string()});
        }
        ds.tracks.push_back(std::move(t));
    }
}

void read_slakh_track(const fs::path& td, const std::string& split, Dataset& ds) {
    TrackSource t = make_track(td.filename().string(), split);
    const fs::path meta = td / "metadata.yaml";
    YAML::Node y;
    try {
        y = YAML::LoadFile(meta.string());
    } catch (const std::exception& e) {
        ds.warnings.push_back(meta.string() + ": unreadable metadata (" + e.what() + "); track skipped");
        return;
    }
    // Values of the wrong type (a map where a bool should be, a list as a key) make yaml-cpp throw its own
    // exceptions: the track is skipped with a warning, as for an unreadable file.
    try {
        const YAML::Node stems = y["stems"];
        if (!stems || !stems.IsMap()) {
            ds.warnings.push_back(meta.string() + ": no 'stems' map; track skipped");
            return;
        }
        std::vector<std::pair<std::string, YAML::Node>> entries;
        for (const auto& kv : stems) entries.emplace_back(kv.first.as<std::string>(), kv.second);
        std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
        for (const auto& [name, node] : entries) {
            // Stems not rendered (too quiet, or an instrument Slakh dropped) have no audio file.
            if (node["audio_rendered"] && !node["audio_rendered"].as<bool>()) {
                ++ds.stems_not_rendered;
                continue;
            }
            std::string cls = node["inst_class"] ? node["inst_class"].as<std::string>() : "unknown";
            if (node["is_drum"] && node["is_drum"].as<bool>()) cls = "Drums";
            fs::path f;
            for (const char* ext : {".flac", ".wav"})
                if (has(td / "stems" / (name + ext))) f = td / "stems" / (name + ext);
            if (f.empty()) {
                ds.warnings.push_back((td / "stems" / (name + ".flac")).string() + ": listed in metadata.yaml but missing");
                continue;
            }
            t.stems.push_back({name, cls, f.string()});
        }
    } catch (const YAML::Exception& e) {
        ds.warnings.push_back(meta.string() + ": malformed metadata (" + e.what() + "); track skipped");
        return;
    }
    ds.tracks.push_back(std::move(t));
}

void read_slakh(const fs::path& root, Dataset& ds) {
    for (const auto& d : subdirs(root)) {
        if (looks_slakh_track(d)) read_slakh_track(d, split_for(d.filename().string()), ds);
        else if (is_split_name(d.filename().string()))
            for (const auto& td : subdirs(d))
                if (looks_slakh_track(td)) read_slakh_track(td, norm_split(d.filename().string()), ds);
    }
}

void read_coco(const fs::path& root, Dataset& ds) {
    auto track = [&](const fs::path& td, const std::string& split) {
        TrackSource t = make_track(td.filename().string(), split);
        const std::string name = td.filename().string();
        t.group = name.substr(0, name.find('_'));
        // stems_audio/<part number>_<instrument>.wav: the class is the instrument.
        for (const auto& f : audio_files(td / "stems_audio")) {
            const std::string s = f.stem().string();
            const size_t u = s.find('_');
            t.stems.push_back({s, u == std::string::npos ? s : s.substr(u + 1), f.string()});
        }
        ds.tracks.push_back(std::move(t));
    };
    for (const auto& d : subdirs(root)) {
        if (looks_coco_track(d)) track(d, split_for(d.filename().string()));
        else if (is_split_name(d.filename().string()))
            for (const auto& td : subdirs(d))
                if (looks_coco_track(td)) track(td, norm_split(d.filename().string()));
    }
}

void read_generic_track(const fs::path& td, const std::string& split, Dataset& ds) {
    TrackSource t = make_track(td.filename().string(), split);
    // Our own sets (cocola synth) say each stem's class in meta.json; elsewhere the class is the stem's name.
    std::map<std::string, std::string> classes;
    if (has(td / "meta.json")) {
        try {
            std::ifstream in(td / "meta.json");
            const auto j = nlohmann::json::parse(in);
            if (j.contains("stems"))
                for (const auto& s : j["stems"])
                    if (s.is_object() && s.contains("name") && s.contains("class"))
                        classes[s["name"].get<std::string>()] = s["class"].get<std::string>();
        } catch (const std::exception& e) {
            ds.warnings.push_back((td / "meta.json").string() + ": unreadable (" + e.what() + "); classes not used");
        }
    }
    for (const auto& f : audio_files(td)) {
        const std::string s = f.stem().string();
        const std::string l = lower(s);
        if (l == "mix" || l == "mixture") continue;  // the full mix is not a stem
        auto it = classes.find(s);
        t.stems.push_back({s, it != classes.end() ? it->second : s, f.string()});
    }
    if (!t.stems.empty()) ds.tracks.push_back(std::move(t));
}

void read_generic(const fs::path& root, Dataset& ds) {
    const auto dirs = subdirs(root);
    const bool split_folders =
        !dirs.empty() && std::all_of(dirs.begin(), dirs.end(), [](const fs::path& d) {
            return is_split_name(d.filename().string());
        });
    if (split_folders) {
        for (const auto& sd : dirs)
            for (const auto& td : subdirs(sd)) read_generic_track(td, norm_split(sd.filename().string()), ds);
    } else {
        for (const auto& td : dirs) read_generic_track(td, split_for(td.filename().string()), ds);
    }
}

}  // namespace

const char* layout_name(Layout l) {
    switch (l) {
        case Layout::Auto: return "auto";
        case Layout::Musdb: return "musdb18hq";
        case Layout::Moises: return "moisesdb";
        case Layout::Slakh: return "slakh2100";
        case Layout::CocoChorales: return "cocochorales";
        case Layout::Generic: return "generic";
    }
    return "generic";
}

Layout parse_layout(const std::string& name) {
    const std::string l = lower(name);
    if (l == "auto") return Layout::Auto;
    if (l == "musdb" || l == "musdb18" || l == "musdb18hq") return Layout::Musdb;
    if (l == "moises" || l == "moisesdb") return Layout::Moises;
    if (l == "slakh" || l == "slakh2100") return Layout::Slakh;
    if (l == "coco" || l == "cocochorales") return Layout::CocoChorales;
    if (l == "generic") return Layout::Generic;
    throw Error("unknown dataset layout '" + name + "' (auto, musdb18hq, moisesdb, slakh2100, cocochorales, generic)");
}

std::string split_for(const std::string& track_id) {
    // A hash, not the position in a listing: a track keeps its split when others are added or removed.
    const double u = static_cast<double>(hash_name(track_id) >> 11) * 0x1.0p-53;
    return u < 0.8 ? "train" : (u < 0.9 ? "valid" : "test");
}

Layout detect_layout(const std::string& root_str) {
    const fs::path root(root_str);
    if (any_track(root, looks_slakh_track)) return Layout::Slakh;
    if (any_track(root, looks_coco_track)) return Layout::CocoChorales;
    for (const auto& d : subdirs(root))
        if (is_split_name(d.filename().string()))
            for (const auto& t : subdirs(d))
                if (looks_musdb_track(t)) return Layout::Musdb;
    for (const auto& t : subdirs(moises_root(root)))
        if (looks_moises_track(t)) return Layout::Moises;
    return Layout::Generic;
}

Dataset scan(const std::string& root, Layout layout) {
    std::error_code ec;
    if (!fs::is_directory(root, ec)) throw Error(root + ": no such directory");
    Dataset ds;
    ds.root = fs::absolute(root).lexically_normal().string();
    ds.layout = layout == Layout::Auto ? detect_layout(root) : layout;
    const fs::path r(root);
    switch (ds.layout) {
        case Layout::Musdb: read_musdb(r, ds); break;
        case Layout::Moises: read_moises(r, ds); break;
        case Layout::Slakh: read_slakh(r, ds); break;
        case Layout::CocoChorales: read_coco(r, ds); break;
        default: read_generic(r, ds); break;
    }
    std::sort(ds.tracks.begin(), ds.tracks.end(), [](const TrackSource& a, const TrackSource& b) {
        return a.split != b.split ? a.split < b.split : a.id < b.id;
    });
    if (ds.tracks.empty())
        throw Error(root + ": no tracks found (layout " + layout_name(ds.layout) +
                    "; expected e.g. <root>/<split>/<track>/<stem>.wav)");
    return ds;
}

TrackAudio load_track(const TrackSource& track, int sample_rate) {
    TrackAudio out;
    for (const auto& s : track.stems) {
        try {
            auto x = audio::load_mono(s.path, sample_rate);
            bool any = false;
            for (float v : x)
                if (v != 0.0f) {
                    any = true;
                    break;
                }
            if (!any) {
                // A stem that never sounds can never be part of a pair.
                out.warnings.push_back(s.path + ": silent throughout; stem skipped");
                ++out.stems_skipped;
                continue;
            }
            out.stems.push_back(s);
            out.audio.push_back(std::move(x));
        } catch (const Error& e) {
            out.warnings.push_back(std::string(e.what()) + "; stem skipped");
            ++out.stems_skipped;
        }
    }
    if (out.audio.size() < 2)
        throw Error(track.split + "/" + track.id + ": fewer than 2 usable stems (" + std::to_string(out.audio.size()) +
                    " of " + std::to_string(track.stems.size()) + "); track skipped");
    size_t shortest = out.audio[0].size(), longest = 0;
    for (const auto& a : out.audio) {
        shortest = std::min(shortest, a.size());
        longest = std::max(longest, a.size());
    }
    // Stems of one track may differ by a few samples; cut all to the shortest, as the reference does.
    if (longest - shortest > static_cast<size_t>(sample_rate))
        out.warnings.push_back(track.split + "/" + track.id + ": stem lengths differ by " +
                               std::to_string((longest - shortest) / static_cast<double>(sample_rate)) +
                               " s; cut to the shortest");
    for (auto& a : out.audio) a.resize(shortest);
    out.length = shortest;
    return out;
}

}  // namespace cocola::data
