#include <filesystem>
#include <iostream>

#include "cli/commands.hpp"
#include "cli/progress.hpp"
#include "cocola/audio.hpp"
#include "cocola/error.hpp"
#include "cocola/features.hpp"
#include "cocola/fsutil.hpp"
#include "cocola/npy.hpp"

namespace cocola::cli {

Runner add_features_command(CLI::App& app) {
    struct Opts {
        std::string frontend = "hpss";
        std::string out_dir = ".";
        std::vector<std::string> files;
    };
    auto o = std::make_shared<Opts>();
    app.add_option("--frontend", o->frontend, "mel (the paper's input) or hpss (the released checkpoint's input)")
        ->check(CLI::IsMember({"mel", "hpss"}))
        ->capture_default_str();
    app.add_option("-o,--out", o->out_dir, "Output directory for <file stem>.npy")->capture_default_str();
    app.add_option("FILE", o->files, "Audio files (WAV, FLAC, OGG, MP3; any rate and channel count)")->required();
    app.footer("Writes DIR/<stem>.npy, float32 [C, 64, 1 + S/160] of the whole file at 16 kHz mono.");
    return [o]() {
        const auto frontend = features::parse_frontend(o->frontend);
        int failures = 0;
        Progress bar("features", o->files.size());
        for (const auto& path : o->files) {
            try {
                auto x = audio::load_mono(path);
                std::vector<float> f;
                try {
                    f = features::compute(frontend, x.data(), x.size());
                } catch (const Error& e) {
                    throw Error(path + ": " + e.what());
                }
                const std::string out = (std::filesystem::path(o->out_dir) / (fsutil::stem(path) + ".npy")).string();
                npy::save(out, {features::num_channels(frontend), features::kNMels, features::num_frames(x.size())},
                          f.data());
            } catch (const Error& e) {
                bar.message(std::string("cocola: error: ") + e.what());
                ++failures;
            }
            bar.tick();
        }
        bar.finish();
        return failures ? 1 : 0;
    };
}

}  // namespace cocola::cli
