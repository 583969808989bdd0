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
        std::vector<std::string> data;
        std::string resume, cache_dir = data::default_cache_dir();
        bool no_attention = false;
    };
    auto o = std::make_shared<Opts>();
    app.add_option("--data", o->data, "Dataset roots (any layout) or caches; examples are random sub-mixes of their "
                                      "\"train\" split, validation crops come from \"valid\" (or \"test\")")
        ->delimiter(',');
    app.add_option("-o,--out", o->t.run_dir, "Run folder: checkpoint, log.csv, curves.svg, last/best.safetensors");
    app.add_option("--resume", o->resume, "Continue the run in this folder where it stopped (--steps, --lr, "
                                          "--checkpoint-every, --checkpoint-minutes, --keep-snapshots, --device may "
                                          "be given anew)");
    app.add_option("--steps", o->t.steps, "Total optimizer steps")->capture_default_str();
    app.add_option("--batch", o->t.batch, "Crops per batch")->capture_default_str()->check(CLI::Range(1, 4096));
    app.add_option("--crop-frames", o->t.crop_frames, "Frames per training crop (10 ms each; a multiple of the "
                                                      "downsampling)")->capture_default_str();
    app.add_option("--lr", o->t.lr, "Adam learning rate")->capture_default_str();
    app.add_option("--warmup", o->t.warmup_steps, "Linear warm-up steps")->capture_default_str()->check(CLI::NonNegativeNumber);
    app.add_option("--lr-decay", o->t.lr_decay, "none or cosine (down to 0 at --steps)")
        ->check(CLI::IsMember({"none", "cosine"}))->capture_default_str();
    app.add_option("--kl-weight", o->t.kl_weight, "Weight of the KL term (per input element)")->capture_default_str();
    app.add_option("--clip-grad-norm", o->t.clip_grad_norm, "Clip the gradients' global norm (0: off)")->capture_default_str();
    app.add_option("--ema", o->t.ema_decay, "EMA decay of the weights the model files hold (0: off)")
        ->check(CLI::Range(0.0, 0.99999))->capture_default_str();
    app.add_option("--width", o->t.base_channels, "Channels of the first level")->capture_default_str()->check(CLI::Range(1, 1024));
    app.add_option("--channel-mult", o->t.channel_mult, "Channel multiplier per level (3 levels: 4x smaller latents)")
        ->delimiter(',')->capture_default_str();
    app.add_option("--res-blocks", o->t.res_blocks, "Residual blocks per level")->capture_default_str()->check(CLI::Range(1, 8));
    app.add_option("--latent-channels", o->t.latent_channels, "Latent channels")->capture_default_str()->check(CLI::Range(1, 64));
    app.add_flag("--no-attention", o->no_attention, "No self-attention in the middle blocks");
    app.add_option("--seed", o->t.seed, "Seed of the init, the crops and the posterior draws")->capture_default_str();
    app.add_option("--val-every", o->t.val_every, "Steps between validations (0: none)")->capture_default_str();
    app.add_option("--val-chunks", o->t.val_chunks, "Fixed 5.12 s validation chunks")->capture_default_str();
    app.add_option("--checkpoint-every", o->t.checkpoint_every, "Steps between checkpoints")->capture_default_str();
    app.add_option("--checkpoint-minutes", o->t.checkpoint_minutes, "Also checkpoint after this much wall time")
        ->capture_default_str();
    app.add_option("--keep-snapshots", o->t.keep_snapshots, "Model snapshots kept (snap_STEP.safetensors at validations)")
        ->capture_default_str();
    app.add_option("--device", o->t.device, "cpu, or cuda with a CUDA build of LibTorch")
        ->check(CLI::IsMember({"cpu", "cuda"}))->capture_default_str();
    app.add_option("--cache-dir", o->cache_dir, "Where dataset roots are indexed")->capture_default_str();
    app.footer("Trains the KL autoencoder of log-mel spectrograms (64 bands, 10 ms frames): L1 of the normalised\n"
               "spectrogram plus a small KL term. Ctrl-C stops after the current step with a checkpoint; a killed\n"
               "run continues with --resume RUN, identically. The model files carry the latent scaling factor.");
    return [o, &app]() {
        generate::VaeTrainOptions t = o->t;
        const bool resume = !o->resume.empty();
        if (resume) {
            t = generate::read_vae_run_options(o->resume);
            generate::apply_vae_resumable_options(o->t, t, [&](const std::string& f) { return app.count(f) > 0; });
            for (const auto& fixed : generate::vae_fixed_on_resume_flags())
                if (app.count(fixed)) std::cerr << "note: " << fixed << " is ignored with --resume (the run keeps its options.json)\n";
        } else {
            if (o->data.empty()) throw Error("--data is required (dataset roots or caches)");
            if (t.run_dir.empty()) throw Error("-o/--out RUN_DIR is required");
            t.mid_attention = !o->no_attention;
            t.caches = index_sources(o->data, o->cache_dir);
        }
        return run_generator_training("vae", t.steps, t.run_dir, "l1_db", "val_l1_db", " dB",
                                      [&](const train::RowCallback& row, const std::function<bool()>& stop) {
                                          generate::train_vae(t, resume, row, stop);
                                      });
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

std::string default_generator_path(const std::string& name) {
    namespace fs = std::filesystem;
    std::error_code ec;
    const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
    std::vector<fs::path> candidates;
    if (!ec) {
        candidates.push_back(exe.parent_path() / ("../share/cocola/models/" + name + ".safetensors"));
        candidates.push_back(exe.parent_path() / ("../models/" + name + ".safetensors"));
    }
    candidates.push_back(fs::path(COCOLA_SOURCE_DIR) / ("models/" + name + ".safetensors"));
    for (const auto& c : candidates)
        if (fs::exists(c, ec)) return fs::weakly_canonical(c, ec).string();
    throw Error("no " + name + ".safetensors in models/: give the weights with -m (or --vae)");
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
