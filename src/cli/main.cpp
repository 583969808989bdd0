#include <cstdio>
#include <iostream>
#include <map>
#include <thread>

#include "cli/commands.hpp"
#include "cocola/audio.hpp"
#include "cocola/error.hpp"
#include "cocola/runtime.hpp"

int main(int argc, char** argv) {
    CLI::App app{"cocola: musical coherence of stems (COCOLA, Ciranni et al. 2024) in C++"};
    app.require_subcommand(1);
    app.set_version_flag("--version", std::string("cocola 0.1.0 (allocator: ") + cocola::runtime::allocator() + ")");
    int threads = 0;
    app.add_option("--threads", threads, "CPU threads for features and the model (default: all cores)")
        ->check(CLI::NonNegativeNumber);

    std::map<CLI::App*, cocola::cli::Runner> runners;
    auto add = [&](const char* name, const char* help, auto adder) {
        CLI::App* sub = app.add_subcommand(name, help);
        runners[sub] = adder(*sub);
    };
    add("features", "Compute log-mel (mel) or harmonic/percussive (hpss) features of audio files as .npy",
        cocola::cli::add_features_command);
    add("synth", "Make multi-stem music: procedural songs, or MIDI files rendered to one stem per channel",
        cocola::cli::add_synth_command);
    add("data", "Stem datasets: index into a cache, describe, write the fixed evaluation pairs",
        cocola::cli::add_data_command);
    add("score", "COCOLA score: how coherent an accompaniment is with its conditioning",
        cocola::cli::add_score_command);
    add("embed", "Embeddings [windows, 512] of audio files as .npy", cocola::cli::add_embed_command);
    add("eval", "Coherent sub-mix classification accuracy (the paper's Table 2) of models on test sets",
        cocola::cli::add_eval_command);
    add("train", "Train COCOLA contrastively on stem datasets (resumable)", cocola::cli::add_train_command);
    add("vae", "The generator's mel autoencoder: train, encode audio to latents, decode latents",
        cocola::cli::add_vae_command);
    add("vocoder", "The generator's neural vocoder (log-mel -> audio): train, export", cocola::cli::add_vocoder_command);
    add("componet", "CompoNet, the prompted latent diffusion generator: train (stage 1, 2), export",
        cocola::cli::add_componet_command);
    add("msdm", "The MSDM baseline: one unconditional diffusion model over fixed sources (accompanies by inpainting): train, export",
        cocola::cli::add_msdm_command);
    add("generate", "Generate stems that fit an input from a prompt (accompany, extract, add, remove)",
        cocola::cli::add_generate_command);
    add("resynth", "Audio -> log-mel (-> VAE) -> audio, with the distance to the input",
        cocola::cli::add_resynth_command);
    add("eval-resynth", "What resynthesis keeps: distances and the K = 2 accuracy of resynthesized sub-mixes",
        cocola::cli::add_eval_resynth_command);
    add("eval-generation", "How coherent generated stems are with their input (COCOLA score), per task, beside the truth and random",
        cocola::cli::add_eval_generation_command);
    add("plot", "Chart the training curves of one or more runs (SVG)", cocola::cli::add_plot_command);

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    }
    try {
        cocola::runtime::set_threads(threads);
        cocola::audio::set_warning_handler(
            [](const std::string& m) { std::fprintf(stderr, "cocola: warning: %s\n", m.c_str()); });
        for (auto& [sub, run] : runners)
            if (sub->parsed()) return run();
    } catch (const cocola::Error& e) {
        std::cerr << "cocola: error: " << e.what() << "\n";
        return 1;
    } catch (const std::exception& e) {
        // Errors from inside libtorch carry a C++ stack trace after their first line: keep the message only.
        std::string msg = e.what();
        std::cerr << "cocola: error: " << msg.substr(0, msg.find('\n')) << "\n";
        return 1;
    }
    return 0;
}
