// cocola vae train | encode | decode: the mel autoencoder of the generator.
#include <csignal>
#include <filesystem>
#include <iostream>

#include "cli/commands.hpp"
#include "cli/generator_training.hpp"
#include "cli/progress.hpp"
#include "cocola/audio.hpp"
#include "cocola/data.hpp"
#include "cocola/error.hpp"
#include "cocola/fsutil.hpp"
#include "cocola/paths.hpp"
#include "cocola/generate.hpp"
#include "cocola/npy.hpp"

namespace cocola::cli {
namespace {

bool ends_with(const std::string& s, const std::string& tail) {
    return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

Runner add_vae_train(CLI::App& app) {
    struct Opts {
        generate::VaeTrainOptions t;
        GeneratorCli cli;
        bool no_attention = false;
    };
    auto o = std::make_shared<Opts>();
    add_generator_training_flags(app, o->t, o->cli);
    app.add_option("--kl-weight", o->t.kl_weight, "Weight of the KL term (per input element)")->capture_default_str();
    app.add_option("--width", o->t.base_channels, "Channels of the first level")->capture_default_str()->check(CLI::Range(1, 1024));
    app.add_option("--channel-mult", o->t.channel_mult, "Channel multiplier per level (3 levels: 4x smaller latents)")
        ->delimiter(',')->capture_default_str();
    app.add_option("--res-blocks", o->t.res_blocks, "Residual blocks per level")->capture_default_str()->check(CLI::Range(1, 8));
    app.add_option("--latent-channels", o->t.latent_channels, "Latent channels")->capture_default_str()->check(CLI::Range(1, 64));
    app.add_flag("--no-attention", o->no_attention, "No self-attention in the middle blocks");
    app.footer("Trains the KL autoencoder of log-mel spectrograms (64 bands, 10 ms frames): L1 of the normalised\n"
               "spectrogram plus a small KL term. --crop-frames must divide by the downsampling. Ctrl-C stops after\n"
               "the current step with a checkpoint; a killed run continues with --resume RUN, identically. The model\n"
               "files carry the latent scaling factor.");
    return [o, &app]() {
        const GeneratorCommand<generate::VaeTrainOptions> cmd{generate::read_vae_run_options, generate::apply_vae_resumable_options,
                                                              generate::vae_fixed_on_resume_flags, generate::train_vae,
                                                              "vae", "l1_db", "val_l1_db"};
        return cmd.run(app, o->t, o->cli, [&](generate::VaeTrainOptions& t) { t.mid_attention = !o->no_attention; });
    };
}

Runner add_vae_encode(CLI::App& app) {
    struct Opts {
        std::string model, out_dir = ".";
        std::vector<std::string> files;
        bool sample = false;
    };
    auto o = std::make_shared<Opts>();
    app.add_option("-m,--model", o->model, "VAE .safetensors (default: models/vae_default.safetensors)");
    app.add_option("-o,--out", o->out_dir, "Output folder for <stem>.npy")->capture_default_str();
    app.add_flag("--sample", o->sample, "Draw from the posterior instead of its mean");
    app.add_option("FILE", o->files, "Audio files")->required();
    app.footer("Writes DIR/<stem>.npy, float32 [chunks, C, 16, 128]: scaled latents of 5.12 s chunks (the last\n"
               "zero-padded).");
    return [o]() {
        const auto vae = generate::Vae::load(o->model.empty() ? default_generator_path("vae_default") : o->model);
        std::filesystem::create_directories(o->out_dir);
        for (const auto& f : o->files) {
            const auto audio = audio::load_mono(f);
            at::Tensor z = generate::encode_audio(vae, audio).contiguous();
            const std::string out = (std::filesystem::path(o->out_dir) / (fsutil::stem(f) + ".npy")).string();
            npy::save(out, z.sizes().vec(), z.data_ptr<float>());
            std::cout << out << "  " << z.sizes() << "\n";
        }
        return 0;
    };
}

Runner add_vae_decode(CLI::App& app) {
    struct Opts {
        std::string model, in, out;
        int iterations = 32;
        uint64_t seed = 0;
    };
    auto o = std::make_shared<Opts>();
    app.add_option("-m,--model", o->model, "VAE .safetensors (default: models/vae_default.safetensors)");
    app.add_option("LATENTS", o->in, "Latents .npy [chunks, C, h, w] (as vae encode writes them)")->required();
    app.add_option("-o,--out", o->out, "OUT.npy (log-mel [64, frames], dB) or OUT.wav (through Griffin-Lim)")->required();
    app.add_option("--iterations", o->iterations, "Griffin-Lim iterations (.wav)")->capture_default_str()->check(CLI::Range(0, 10000));
    app.add_option("--seed", o->seed, "Seed of Griffin-Lim's initial phases")->capture_default_str();
    return [o]() {
        const auto vae = generate::Vae::load(o->model.empty() ? default_generator_path("vae_default") : o->model);
        const npy::Array a = npy::load(o->in);
        if (a.shape.size() != 4) throw Error(o->in + ": expected latents [chunks, C, h, w], got " + std::to_string(a.shape.size()) + " dimensions");
        const at::Tensor z = at::from_blob(const_cast<float*>(a.data.data()), a.shape, at::kFloat).clone();
        if (!at::isfinite(z).all().item<bool>()) throw Error(o->in + ": the latents hold NaN or Inf");
        at::Tensor mel;
        try {
            mel = generate::decode_to_mel(vae, z).contiguous();
        } catch (const Error& e) {
            throw Error(o->in + ": " + e.what());
        }
        if (ends_with(o->out, ".wav")) {
            generate::GriffinLimOptions g;
            g.iterations = o->iterations;
            g.seed = o->seed;
            audio::write_wav(o->out, generate::griffin_lim(mel, g));
        } else {
            npy::save(o->out, mel.sizes().vec(), mel.data_ptr<float>());
        }
        std::cout << o->out << "\n";
        return 0;
    };
}

Runner add_vae_export(CLI::App& app) {
    struct Opts {
        std::string in, out;
        bool half = false;
    };
    auto o = std::make_shared<Opts>();
    app.add_option("MODEL", o->in, "VAE .safetensors (e.g. a run's best.safetensors)")->required();
    app.add_option("-o,--out", o->out, "Output .safetensors")->required();
    app.add_flag("--half", o->half, "Store the weights as float16 (half the size; decoded spectrograms move by "
                                    "~0.01 dB)");
    return [o]() {
        const auto vae = generate::Vae::load(o->in);
        vae.save(o->out, {{"exported_from", fsutil::stem(o->in)}}, o->half);
        std::cout << o->out << " (" << vae.parameter_count() << " parameters" << (o->half ? ", float16" : "") << ")\n";
        return 0;
    };
}

}  // namespace

std::string default_generator_path(const std::string& name, const std::string& flag) {
    std::string p = paths::shipped_model(name);
    if (p.empty()) throw Error("no " + name + ".safetensors in models/ (not trained and shipped yet?): give the weights with " + flag);
    return p;
}

Runner add_vae_command(CLI::App& app) {
    app.require_subcommand(1);
    auto* train = app.add_subcommand("train", "Train the mel autoencoder on stem datasets (resumable)");
    auto* encode = app.add_subcommand("encode", "Audio files -> latents .npy");
    auto* decode = app.add_subcommand("decode", "Latents .npy -> log-mel .npy or audio (.wav, Griffin-Lim)");
    auto* exp = app.add_subcommand("export", "Copy a VAE's weights (e.g. as float16) with its config");
    auto runners = std::make_shared<std::vector<std::pair<CLI::App*, Runner>>>();
    runners->push_back({train, add_vae_train(*train)});
    runners->push_back({encode, add_vae_encode(*encode)});
    runners->push_back({decode, add_vae_decode(*decode)});
    runners->push_back({exp, add_vae_export(*exp)});
    return [runners]() {
        for (auto& [sub, run] : *runners)
            if (sub->parsed()) return run();
        return 1;
    };
}

}  // namespace cocola::cli
