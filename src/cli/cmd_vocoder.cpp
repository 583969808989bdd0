// cocola vocoder train | export: the neural vocoder (log-mel -> audio).
#include <iostream>

#include "cli/commands.hpp"
#include "cli/generator_training.hpp"
#include "cocola/error.hpp"
#include "cocola/fsutil.hpp"
#include "cocola/generate.hpp"

namespace cocola::cli {
namespace {

Runner add_vocoder_train(CLI::App& app) {
    struct Opts {
        generate::VocoderTrainOptions t;
        GeneratorCli cli;
    };
    auto o = std::make_shared<Opts>();
    // New runs train with the prior (measured better, docs/generation.md section 4); the library's default stays
    // "none", which is what a run folder written before the option existed holds.
    o->t.prior = "mel-inverse";
    // The passes that bring the vocoder's log-mel to its input's (measured, docs/generation.md section 4).
    o->t.mel_matching_passes = 8;
    add_generator_training_flags(app, o->t, o->cli);
    app.add_option("--mel-weight", o->t.mel_weight, "Weight of the log-mel L1 (normalised units)")->capture_default_str();
    app.add_option("--stft-weight", o->t.stft_weight, "Weight of the multi-resolution STFT loss")->capture_default_str();
    app.add_option("--width", o->t.channels, "Channels of the ConvNeXt backbone")->capture_default_str()->check(CLI::Range(1, 4096));
    app.add_option("--blocks", o->t.blocks, "ConvNeXt blocks")->capture_default_str()->check(CLI::Range(1, 64));
    app.add_option("--n-fft", o->t.n_fft, "FFT size of the inverse STFT (hop 160)")->capture_default_str();
    app.add_option("--prior", o->t.prior,
                   "none: predict the STFT log-magnitudes outright; mel-inverse: predict a correction to the "
                   "magnitudes the spectrogram implies through the mel filterbank (FreeV)")
        ->capture_default_str()
        ->check(CLI::IsMember({"none", "mel-inverse"}));
    app.add_option("--mel-matching-passes", o->t.mel_matching_passes,
                   "Passes after the network that re-level its audio band by band to the input's log-mel (each one "
                   "STFT and inverse STFT; 0: the network's audio as it is). Stored in the weights, used when vocoding")
        ->capture_default_str()
        ->check(CLI::Range(0, 64));
    app.footer("Trains the Vocos-style vocoder (log-mel -> STFT magnitude and phase -> inverse STFT) with the log-mel\n"
               "L1 and the multi-resolution STFT loss. Ctrl-C stops after the current step with a checkpoint; a killed\n"
               "run continues with --resume RUN, identically.");
    return [o, &app]() {
        const GeneratorCommand<generate::VocoderTrainOptions> cmd{
            generate::read_vocoder_run_options, generate::apply_vocoder_resumable_options,
            generate::vocoder_fixed_on_resume_flags, generate::train_vocoder, "vocoder", "mel_l1_db", "val_mel_l1_db"};
        return cmd.run(app, o->t, o->cli);
    };
}

Runner add_vocoder_export(CLI::App& app) {
    struct Opts {
        std::string in, out;
        bool half = false;
        int passes = -1;
    };
    auto o = std::make_shared<Opts>();
    app.add_option("MODEL", o->in, "Vocoder .safetensors (e.g. a run's best.safetensors)")->required();
    app.add_option("-o,--out", o->out, "Output .safetensors")->required();
    app.add_flag("--half", o->half, "Store the weights as float16");
    app.add_option("--mel-matching-passes", o->passes,
                   "Set the passes that re-level the audio to the input's log-mel (default: keep the model's)")
        ->check(CLI::Range(0, 64));
    return [o]() {
        auto v = generate::Vocoder::load(o->in);
        if (o->passes >= 0) v.mutable_config().mel_matching_passes = o->passes;
        v.save(o->out, {{"exported_from", fsutil::stem(o->in)}}, o->half);
        std::cout << o->out << " (" << v.parameter_count() << " parameters" << (o->half ? ", float16" : "")
                  << ", mel-matching passes " << v.config().mel_matching_passes << ")\n";
        return 0;
    };
}

}  // namespace

Runner add_vocoder_command(CLI::App& app) {
    app.require_subcommand(1);
    auto* train = app.add_subcommand("train", "Train the neural vocoder on stem datasets (resumable)");
    auto* exp = app.add_subcommand("export", "Copy a vocoder's weights (e.g. as float16) with its config");
    auto runners = std::make_shared<std::vector<std::pair<CLI::App*, Runner>>>();
    runners->push_back({train, add_vocoder_train(*train)});
    runners->push_back({exp, add_vocoder_export(*exp)});
    return [runners]() {
        for (auto& [sub, run] : *runners)
            if (sub->parsed()) return run();
        return 1;
    };
}

}  // namespace cocola::cli
