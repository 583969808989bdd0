#include <filesystem>
#include <iostream>

#include "cli/model_options.hpp"
#include "cli/progress.hpp"
#include "cocola/fsutil.hpp"
#include "cocola/npy.hpp"
#include "cocola/paths.hpp"

namespace cocola::cli {

std::string default_model_path() { return paths::default_cocola_model(); }

Runner add_embed_command(CLI::App& app) {
    struct Opts {
        ModelOptions model;
        std::string out_dir = ".";
        std::vector<std::string> files;
    };
    auto o = std::make_shared<Opts>();
    o->model.add_to(app);
    app.add_option("-o,--out", o->out_dir, "Output directory for <file stem>.npy")->capture_default_str();
    app.add_option("FILE", o->files, "Audio files")->required();
    app.footer("Writes DIR/<stem>.npy, float32 [windows, 512]: embeddings after LayerNorm and tanh, one row per\n"
               "aligned 5 s window (one row with --whole).");
    return [o]() {
        auto m = o->model.load_model();
        auto opts = o->model.score_options();
        eval::check_score_options(m, opts);
        Progress bar("embed", o->files.size());
        auto res = eval::embed_files(m, o->files, opts, [&](size_t done) { bar.update(done); });
        int failures = 0;
        for (const auto& e : res) {
            for (const auto& w : e.warnings) std::cerr << "cocola: warning: " << e.path << ": " << w << "\n";
            if (!e.error.empty()) {
                std::cerr << "cocola: error: " << e.error << "\n";
                ++failures;
                continue;
            }
            const std::string out = (std::filesystem::path(o->out_dir) / (fsutil::stem(e.path) + ".npy")).string();
            at::Tensor t = e.embeddings.contiguous();
            npy::save(out, t.sizes().vec(), t.data_ptr<float>());
            std::cout << out << "  [" << t.size(0) << ", " << t.size(1) << "]\n";
        }
        bar.finish();
        return failures ? 1 : 0;
    };
}

}  // namespace cocola::cli
