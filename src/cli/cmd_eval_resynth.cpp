// cocola eval-resynth: the reconstruction table of docs/generation.md. For each test set and each way back to
// sound (the original audio, mel + Griffin-Lim, VAE + Griffin-Lim): the log-mel L1 and multi-resolution STFT
// distance of the resynthesized sub-mixes to the originals, and the K = 2 coherence accuracy of a COCOLA model
// when both sub-mixes of every pair are resynthesized. Also writes listening examples and a spectrogram picture.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>

#include "cli/commands.hpp"
#include "cli/model_options.hpp"
#include "cli/progress.hpp"
#include "cocola/audio.hpp"
#include "cocola/data.hpp"
#include "cocola/error.hpp"
#include "cocola/fsutil.hpp"
#include "cocola/generate.hpp"

namespace cocola::cli {

Runner add_eval_resynth_command(CLI::App& app) {
    struct Opts {
        ModelOptions model;
        std::vector<std::string> data, paths = {"original", "mel", "vae"};
        std::string split = "test", vae, vocoder, out = "resynth-eval", cache_dir = data::default_cache_dir();
        int iterations = 32, examples = 2;
        size_t max_batches = 0;
    };
    auto o = std::make_shared<Opts>();
    app.add_option("-m,--model", o->model.model_path, "COCOLA model that judges coherence (default: the shipped one)");
    app.add_option("--data", o->data, "Dataset roots or caches (their --split is used)")->required()->delimiter(',');
    app.add_option("--split", o->split, "Split of each dataset")->capture_default_str();
    app.add_option("--paths", o->paths, "Ways back to sound: original (no resynthesis), mel (mel + Griffin-Lim), vae "
                                        "(VAE + Griffin-Lim), mel-neural and vae-neural (the neural vocoder instead)")
        ->delimiter(',')->check(CLI::IsMember({"original", "mel", "vae", "mel-neural", "vae-neural"}))->capture_default_str();
    app.add_option("--vocoder-model", o->vocoder, "Neural vocoder weights (default: models/vocoder_default.safetensors)");
    app.add_option("--vae", o->vae, "VAE weights for the vae path (default: models/vae_default.safetensors)");
    app.add_option("--iterations", o->iterations, "Griffin-Lim iterations")->capture_default_str()->check(CLI::Range(0, 10000));
    app.add_option("--max-batches", o->max_batches, "Only the first N K = 2 batches of each split (0: all; fewer is "
                                                    "quicker, with a wider interval)")->capture_default_str();
    app.add_option("--examples", o->examples, "Listening examples (original / resynthesized WAV pairs) per set and path")
        ->capture_default_str()->check(CLI::Range(0, 100));
    app.add_option("-o,--out", o->out, "Output folder: reconstruction.md, reconstruction.json, examples/, spectrograms.svg")
        ->capture_default_str();
    app.add_option("--cache-dir", o->cache_dir, "Where dataset roots are indexed")->capture_default_str();
    return [o]() {
        namespace fs = std::filesystem;
        const model::Model judge = o->model.load_model();
        std::unique_ptr<generate::Vae> vae;
        std::unique_ptr<generate::Vocoder> neural;
        for (const auto& p : o->paths) {
            if ((p == "vae" || p == "vae-neural") && !vae)
                vae = std::make_unique<generate::Vae>(generate::Vae::load(o->vae.empty() ? default_generator_path("vae_default", "--vae") : o->vae));
            if ((p == "mel-neural" || p == "vae-neural") && !neural)
                neural = std::make_unique<generate::Vocoder>(generate::Vocoder::load(
                    o->vocoder.empty() ? default_generator_path("vocoder_default", "--vocoder-model") : o->vocoder));
        }
        fs::create_directories(o->out + "/examples");
        generate::GriffinLimOptions gl;
        gl.iterations = o->iterations;
        nlohmann::json rows = nlohmann::json::array();
        std::string md = "| test set | path | log-mel L1 (dB) | MR-STFT distance | K = 2 accuracy (%) | batches |\n"
                         "|---|---|---|---|---|---|\n";
        std::vector<std::pair<std::string, at::Tensor>> picture;
        for (const auto& d : o->data) {
            const std::string dir = data::ensure_cache(d, o->cache_dir);
            const data::StemCache cache(dir);
            const std::string set = fs::path(d).filename().string().empty() ? fs::path(d).parent_path().filename().string()
                                                                             : fs::path(d).filename().string();
            eval::EvalOptions eo;
            eo.k = 2;
            eo.split = o->split;
            eo.max_batches = o->max_batches;
            for (const auto& p : o->paths) {
                const std::map<std::string, std::string> names = {{"original", "original audio"},
                                                                  {"mel", "mel + griffin-lim"},
                                                                  {"vae", "vae + griffin-lim"},
                                                                  {"mel-neural", "mel + neural vocoder"},
                                                                  {"vae-neural", "vae + neural vocoder"}};
                const std::string name = names.at(p);
                generate::ResynthesisFn fn;
                if (p != "original") {
                    const generate::Vae* through = p.rfind("vae", 0) == 0 ? vae.get() : nullptr;
                    const generate::Vocoder* voc = p.size() > 7 && p.substr(p.size() - 7) == "-neural" ? neural.get() : nullptr;
                    fn = [&gl, through, voc](const std::vector<float>& x) { return generate::resynthesize(x, through, gl, voc); };
                }
                Progress bar(set + " " + p, 1);
                const auto r = generate::evaluate_reconstruction(judge, cache, eo, name, fn, static_cast<size_t>(o->examples),
                                                                 [&](size_t done, size_t total) {
                                                                     bar.set_total(total);
                                                                     bar.update(done);
                                                                 });
                bar.finish();
                for (size_t i = 0; i < r.examples.size(); ++i) {
                    const std::string stem = o->out + "/examples/" + set + "_" + std::to_string(i);
                    if (p == "original") audio::write_wav(stem + "_original.wav", r.examples[i].first);
                    else audio::write_wav(stem + "_" + p + ".wav", r.examples[i].second);
                    if (i == 0 && picture.size() < o->paths.size()) {
                        const auto& y = r.examples[i].second;
                        picture.push_back({set + ", " + name, generate::mel_spectrogram(y.data(), y.size() / 160 * 160)});
                    }
                }
                char line[256];
                if (p == "original")
                    std::snprintf(line, sizeof(line), "| %s | %s | 0 | 0 | %.2f ± %.2f | %zu |\n", set.c_str(), name.c_str(),
                                  100 * r.k2.accuracy, 100 * r.k2.ci95, r.k2.batches);
                else
                    std::snprintf(line, sizeof(line), "| %s | %s | %.3f ± %.3f | %.4f ± %.4f | %.2f ± %.2f | %zu |\n", set.c_str(),
                                  name.c_str(), r.log_mel_l1, r.log_mel_l1_ci95, r.mr_stft, r.mr_stft_ci95,
                                  100 * r.k2.accuracy, 100 * r.k2.ci95, r.k2.batches);
                md += line;
                std::cout << line << std::flush;
                rows.push_back({{"test_set", set}, {"cache", dir}, {"split", o->split}, {"path", name},
                                {"log_mel_l1_db", r.log_mel_l1}, {"log_mel_l1_ci95", r.log_mel_l1_ci95},
                                {"mr_stft", r.mr_stft}, {"mr_stft_ci95", r.mr_stft_ci95}, {"clips", r.clips},
                                {"k2_accuracy", r.k2.accuracy}, {"k2_ci95", r.k2.ci95}, {"batches", r.k2.batches},
                                {"griffin_lim_iterations", o->iterations}});
            }
        }
        fsutil::write_file_atomically(o->out + "/reconstruction.md", md);
        fsutil::write_file_atomically(o->out + "/reconstruction.json", rows.dump(2) + "\n");
        if (!picture.empty()) generate::write_spectrogram_svg(o->out + "/spectrograms.svg", picture);
        std::cout << o->out << "/reconstruction.md, reconstruction.json, examples/, spectrograms.svg\n";
        return 0;
    };
}

}  // namespace cocola::cli
