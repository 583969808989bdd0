#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>

#include "cli/commands.hpp"
#include "cli/progress.hpp"
#include "cocola/audio.hpp"
#include "cocola/data.hpp"
#include "cocola/error.hpp"
#include "cocola/runtime.hpp"
#include "cocola/fsutil.hpp"

namespace cocola::cli {

namespace {

void print_dataset(const data::Dataset& ds) {
    std::map<std::string, std::pair<size_t, size_t>> per_split;  // split -> tracks, stems
    std::map<std::string, size_t> classes;
    for (const auto& t : ds.tracks) {
        per_split[t.split].first++;
        per_split[t.split].second += t.stems.size();
        for (const auto& s : t.stems) classes[s.cls]++;
    }
    std::printf("dataset %s\nlayout  %s (not indexed: audio not decoded, hours unknown)\n", ds.root.c_str(),
                data::layout_name(ds.layout));
    for (const auto& [split, n] : per_split)
        std::printf("  %-8s %6zu tracks %7zu stems\n", split.c_str(), n.first, n.second);
    std::printf("classes:");
    for (const auto& [c, n] : classes) std::printf(" %s=%zu", c.c_str(), n);
    std::printf("\n");
    if (ds.stems_not_rendered) std::printf("stems not rendered (Slakh metadata): %zu\n", ds.stems_not_rendered);
    for (const auto& w : ds.warnings) std::printf("warning: %s\n", w.c_str());
}

void print_cache(const data::StemCache& c) {
    std::printf("cache   %s\nlayout  %s\nsource  %s\nformat  %s, %d Hz, activity blocks of %d samples\n",
                c.dir().c_str(), c.layout().c_str(), c.root().c_str(),
                c.format() == data::SampleFormat::Int16 ? "int16" : "float32", c.sample_rate(), c.block());
    double total_h = 0;
    size_t total_t = 0, total_s = 0;
    std::map<std::string, size_t> classes, groups;
    for (const auto& split : c.splits()) {
        size_t stems = 0;
        double h = 0;
        const auto idx = c.tracks_in(split);
        for (size_t t : idx) {
            stems += c.track(t).stems.size();
            h += c.track(t).length / static_cast<double>(c.sample_rate()) / 3600.0;
            for (const auto& s : c.track(t).stems) classes[s.cls]++;
            if (!c.track(t).group.empty()) groups[c.track(t).group]++;
        }
        std::printf("  %-8s %6zu tracks %7zu stems %8.2f h\n", split.c_str(), idx.size(), stems, h);
        total_h += h;
        total_t += idx.size();
        total_s += stems;
    }
    std::printf("  %-8s %6zu tracks %7zu stems %8.2f h\n", "total", total_t, total_s, total_h);
    if (!groups.empty()) {
        std::printf("groups:");
        for (const auto& [g, n] : groups) std::printf(" %s=%zu", g.c_str(), n);
        std::printf("\n");
    }
    std::printf("classes:");
    for (const auto& [cl, n] : classes) std::printf(" %s=%zu", cl.c_str(), n);
    std::printf("\nskipped: %zu tracks (fewer than 2 usable stems), %zu stems (unreadable, empty or silent)\n",
                c.tracks_skipped(), c.stems_skipped());
}

}  // namespace

Runner add_data_command(CLI::App& app) {
    struct Opts {
        std::string root, cache, layout = "auto", format = "int16", split = "test", out;
        data::CacheOptions copt;
        bool single = false;
        std::string wav_dir;
        int64_t window = 80000;
    };
    auto o = std::make_shared<Opts>();
    app.require_subcommand(1);
    CLI::App* index = app.add_subcommand("index", "Decode a dataset once into a memory-mapped stem cache");
    index->add_option("ROOT", o->root, "Dataset root (MUSDB18-HQ, MoisesDB, Slakh2100, CocoChorales or generic)")
        ->required();
    index->add_option("-o,--out", o->cache, "Cache directory")->required();
    index->add_option("--layout", o->layout, "auto, musdb18hq, moisesdb, slakh2100, cocochorales, generic")
        ->capture_default_str();
    index->add_option("--format", o->format, "Sample format on disk")
        ->check(CLI::IsMember({"int16", "float32"}))
        ->capture_default_str();
    index->add_option("--jobs", o->copt.jobs, "Decoding threads (default: all cores)");
    index->add_option("--threshold-db", o->copt.activity.threshold_db,
                      "A 0.1 s block is active at this RMS (dBFS) or above")
        ->capture_default_str();
    index->add_option("--min-active", o->copt.activity.min_fraction,
                      "A stem is active in a window when this fraction of its blocks is")
        ->capture_default_str();
    index->footer("Tracks already in the cache with unchanged sources are reused: an interrupted run resumes.");

    CLI::App* info = app.add_subcommand("info", "Describe a stem cache (or list a dataset without decoding it)");
    info->add_option("PATH", o->cache, "Cache directory, or a dataset root")->required();
    info->add_option("--layout", o->layout, "Layout when PATH is a dataset root")->capture_default_str();

    CLI::App* proto = app.add_subcommand("protocol", "Write the fixed evaluation pairs of a split (the reference's test set)");
    proto->add_option("CACHE", o->cache, "Cache directory")->required();
    proto->add_option("--split", o->split, "Split")->capture_default_str();
    proto->add_flag("--single", o->single, "Single-stem pairs instead of sub-mixes");
    proto->add_option("-o,--out", o->out, "Write the protocol JSON here (default: stdout)");
    proto->add_option("--wav", o->wav_dir, "Also write each pair as DIR/<n>_anchor.wav and DIR/<n>_positive.wav");

    return [o, index, info, proto]() {
        if (index->parsed()) {
            o->copt.format = o->format == "int16" ? data::SampleFormat::Int16 : data::SampleFormat::Float32;
            o->copt.window = o->window;
            if (o->copt.jobs <= 0) o->copt.jobs = runtime::threads();
            const auto ds = data::scan(o->root, data::parse_layout(o->layout));
            std::fprintf(stderr, "%s: %s layout, %zu tracks\n", ds.root.c_str(), data::layout_name(ds.layout),
                         ds.tracks.size());
            for (const auto& w : ds.warnings) std::fprintf(stderr, "cocola: warning: %s\n", w.c_str());
            Progress bar("index", ds.tracks.size());
            auto rep = data::build_cache(ds, o->cache, o->copt, [&](size_t, size_t, const std::string& msg) {
                if (!msg.empty()) bar.message(msg);
                bar.tick();
            });
            bar.finish();
            std::printf("%zu tracks: %zu indexed, %zu reused, %zu skipped; %zu stems (%zu skipped); %.2f h of audio\n",
                        rep.tracks_total, rep.tracks_indexed, rep.tracks_reused, rep.tracks_skipped, rep.stems,
                        rep.stems_skipped, rep.hours);
            return 0;
        }
        if (info->parsed()) {
            if (std::filesystem::exists(std::filesystem::path(o->cache) / "index.json")) {
                data::StemCache c(o->cache);
                print_cache(c);
            } else {
                print_dataset(data::scan(o->cache, data::parse_layout(o->layout)));
            }
            return 0;
        }
        data::StemCache c(o->cache);
        const auto items = data::fixed_protocol(c, o->split, o->window,
                                                o->single ? data::PairMode::SingleStem : data::PairMode::SubMix);
        if (items.empty()) throw Error(o->cache + ": split '" + o->split + "' yields no evaluation pairs");
        const std::string js = data::protocol_json(c, items, o->window) + "\n";
        if (o->out.empty()) std::fwrite(js.data(), 1, js.size(), stdout);
        else fsutil::write_file_atomically(o->out, js);
        if (!o->wav_dir.empty()) {
            std::vector<float> a(o->window), p(o->window);
            for (size_t i = 0; i < items.size(); ++i) {
                data::render_item(c, items[i], o->window, a.data(), p.data());
                char name[32];
                std::snprintf(name, sizeof(name), "%05zu_", i);
                const auto base = std::filesystem::path(o->wav_dir) / name;
                audio::write_wav(base.string() + "anchor.wav", a, c.sample_rate());
                audio::write_wav(base.string() + "positive.wav", p, c.sample_rate());
            }
        }
        std::fprintf(stderr, "%zu evaluation pairs in split '%s'\n", items.size(), o->split.c_str());
        return 0;
    };
}

}  // namespace cocola::cli
