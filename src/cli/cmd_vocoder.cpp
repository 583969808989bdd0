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
        std::vector<std::string> data;
        std::string resume, cache_dir = data::default_cache_dir();
    };
    auto o = std::make_shared<Opts>();
    app.add_option("--data", o->data, "Dataset roots (any layout) or caches; examples are random sub-mixes of their "
                                      "\"train\" split, validation chunks come from \"valid\" (or \"test\")")
        ->delimiter(',');
    app.add_option("-o,--out", o->t.run_dir, "Run folder: checkpoint, log.csv, curves.svg, last/best.safetensors");
    app.add_option("--resume", o->resume, "Continue the run in this folder where it stopped (--steps, --lr, "
                                          "--checkpoint-every, --checkpoint-minutes, --keep-snapshots, --device may "
                                          "be given anew)");
    app.add_option("--steps", o->t.steps, "Total optimizer steps")->capture_default_str();
    app.add_option("--batch", o->t.batch, "Crops per batch")->capture_default_str()->check(CLI::Range(1, 4096));
    app.add_option("--crop-frames", o->t.crop_frames, "Frames per training crop (10 ms each)")->capture_default_str();
    app.add_option("--lr", o->t.lr, "AdamW learning rate")->capture_default_str();
    app.add_option("--warmup", o->t.warmup_steps, "Linear warm-up steps")->capture_default_str()->check(CLI::NonNegativeNumber);
    app.add_option("--lr-decay", o->t.lr_decay, "none or cosine (down to 0 at --steps)")
        ->check(CLI::IsMember({"none", "cosine"}))->capture_default_str();
    app.add_option("--mel-weight", o->t.mel_weight, "Weight of the log-mel L1 (normalised units)")->capture_default_str();
    app.add_option("--stft-weight", o->t.stft_weight, "Weight of the multi-resolution STFT loss")->capture_default_str();
    app.add_option("--clip-grad-norm", o->t.clip_grad_norm, "Clip the gradients' global norm (0: off)")->capture_default_str();
    app.add_option("--ema", o->t.ema_decay, "EMA decay of the weights the model files hold (0: off)")
        ->check(CLI::Range(0.0, 0.99999))->capture_default_str();
    app.add_option("--width", o->t.channels, "Channels of the ConvNeXt backbone")->capture_default_str()->check(CLI::Range(1, 4096));
    app.add_option("--blocks", o->t.blocks, "ConvNeXt blocks")->capture_default_str()->check(CLI::Range(1, 64));
    app.add_option("--n-fft", o->t.n_fft, "FFT size of the inverse STFT (hop 160)")->capture_default_str();
    app.add_option("--seed", o->t.seed, "Seed of the init and the crops")->capture_default_str();
    app.add_option("--val-every", o->t.val_every, "Steps between validations (0: none)")->capture_default_str();
    app.add_option("--val-chunks", o->t.val_chunks, "Fixed 5.12 s validation chunks")->capture_default_str();
    app.add_option("--checkpoint-every", o->t.checkpoint_every, "Steps between checkpoints")->capture_default_str();
    app.add_option("--checkpoint-minutes", o->t.checkpoint_minutes, "Also checkpoint after this much wall time")->capture_default_str();
    app.add_option("--keep-snapshots", o->t.keep_snapshots, "Model snapshots kept (snap_STEP.safetensors at validations)")
        ->capture_default_str();
    app.add_option("--device", o->t.device, "cpu, or cuda with a CUDA build of LibTorch")
        ->check(CLI::IsMember({"cpu", "cuda"}))->capture_default_str();
    app.add_option("--cache-dir", o->cache_dir, "Where dataset roots are indexed")->capture_default_str();
    app.footer("Trains the Vocos-style vocoder (log-mel -> STFT magnitude and phase -> inverse STFT) with the log-mel\n"
               "L1 and the multi-resolution STFT loss. Ctrl-C stops after the current step with a checkpoint; a killed\n"
               "run continues with --resume RUN, identically.");
    return [o, &app]() {
        generate::VocoderTrainOptions t = o->t;
        const bool resume = !o->resume.empty();
        if (resume) {
            t = generate::read_vocoder_run_options(o->resume);
            generate::apply_vocoder_resumable_options(o->t, t, [&](const std::string& f) { return app.count(f) > 0; });
            for (const auto& fixed : generate::vocoder_fixed_on_resume_flags())
                if (app.count(fixed)) std::cerr << "note: " << fixed << " is ignored with --resume (the run keeps its options.json)\n";
        } else {
            if (o->data.empty()) throw Error("--data is required (dataset roots or caches)");
            if (t.run_dir.empty()) throw Error("-o/--out RUN_DIR is required");
            t.caches = index_sources(o->data, o->cache_dir);
        }
        return run_generator_training("vocoder", t.steps, t.run_dir, "mel_l1_db", "val_mel_l1_db", " dB",
                                      [&](const train::RowCallback& row, const std::function<bool()>& stop) {
                                          generate::train_vocoder(t, resume, row, stop);
                                      });
    };
}

Runner add_vocoder_export(CLI::App& app) {
    struct Opts {
        std::string in, out;
        bool half = false;
    };
    auto o = std::make_shared<Opts>();
    app.add_option("MODEL", o->in, "Vocoder .safetensors (e.g. a run's best.safetensors)")->required();
    app.add_option("-o,--out", o->out, "Output .safetensors")->required();
    app.add_flag("--half", o->half, "Store the weights as float16");
    return [o]() {
        const auto v = generate::Vocoder::load(o->in);
        v.save(o->out, {{"exported_from", fsutil::stem(o->in)}}, o->half);
        std::cout << o->out << " (" << v.parameter_count() << " parameters" << (o->half ? ", float16" : "") << ")\n";
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
