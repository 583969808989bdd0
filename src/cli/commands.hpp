// Each subcommand lives in its own file: it declares its flags on a CLI11 subcommand and returns the function
// that runs it. main.cpp only wires them together, sets threads and turns errors into exit codes.
#pragma once
#include <CLI/CLI.hpp>
#include <functional>
#include <memory>
#include <string>

namespace cocola::model {
class Model;
}

namespace cocola::cli {

using Runner = std::function<int()>;  // returns the process exit code

Runner add_features_command(CLI::App& app);
Runner add_score_command(CLI::App& app);
Runner add_embed_command(CLI::App& app);
Runner add_train_command(CLI::App& app);
Runner add_plot_command(CLI::App& app);
Runner add_synth_command(CLI::App& app);
Runner add_data_command(CLI::App& app);
Runner add_eval_command(CLI::App& app);
Runner add_vae_command(CLI::App& app);
Runner add_vocoder_command(CLI::App& app);
Runner add_resynth_command(CLI::App& app);
Runner add_componet_command(CLI::App& app);
Runner add_msdm_command(CLI::App& app);
Runner add_generate_command(CLI::App& app);
Runner add_eval_resynth_command(CLI::App& app);
Runner add_eval_generation_command(CLI::App& app);

// Where shipped generator weights live (models/<name>.safetensors in the source tree or next to the binary);
// throws cocola::Error when there are none.
std::string default_generator_path(const std::string& name, const std::string& flag = "-m");

// A test set's name in generation tables: the last folder name of its dataset root or cache ("data/demo/" -> demo).
std::string generation_set_name(const std::string& dataset);

// The COCOLA model that guides CompoNet (--guide-model; empty `path`: the shipped models/cocola_mel_guide, and
// `path` is set to it). Throws unless it reads the mel front-end, which the decoder's spectrogram is.
std::unique_ptr<model::Model> load_guide_model(std::string& path);

// Where the shipped default model lives (models/ in the source tree, or next to the installed binary).
std::string default_model_path();

// A CSV field, quoted (RFC 4180) when it holds a comma, a quote or a newline.
inline std::string csv_field(const std::string& s) {
    if (s.find_first_of(",\"\n") == std::string::npos) return s;
    std::string q = "\"";
    for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
    return q + "\"";
}

}  // namespace cocola::cli
