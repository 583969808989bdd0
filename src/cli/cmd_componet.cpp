// cocola componet train | export: CompoNet, the prompted latent diffusion model with its ControlNet adapter; and
// cocola msdm train | export: the paper's baseline, one unconditional diffusion model over fixed sources stacked as
// latent channels. Both are the same denoiser trained by the same objective; MSDM differs in its data and prompt.
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/commands.hpp"
#include "cli/generator_training.hpp"
#include "cli/progress.hpp"
#include "cocola/componet.hpp"
#include "cocola/data.hpp"
#include "cocola/generation_eval.hpp"
#include "cocola/error.hpp"
#include "cocola/fsutil.hpp"

namespace cocola::cli {
namespace {

Runner add_componet_train(CLI::App& app, bool msdm) {
    struct Opts {
        componet::ComponetTrainOptions t;
        GeneratorCli cli;
    };
    auto o = std::make_shared<Opts>();
    if (msdm) o->t.sources = {"bass", "drums", "guitar", "piano"};
    add_generator_training_flags(app, o->t, o->cli);
    app.add_option("--prediction", o->t.prediction,
                   "What the denoiser outputs: epsilon (the noise, as the paper) or v (sqrt(a) eps - sqrt(1-a) x0: its clean estimate "
                   "is exact where the noise is loudest, which sets each chunk's loudness and spectral balance); default: epsilon"
                   + std::string(msdm ? "" : ", stage 2 its --base's"))
        ->check(CLI::IsMember({"epsilon", "v"}));
    app.add_option("--init", o->t.init, msdm ? "Start from this MSDM model's weights (fine-tuning, e.g. to another --prediction)"
                                             : "Start the trained modules from this model's weights (stage 1: prompt encoder and U-Net, "
                                               "e.g. of a shipped model, to fine-tune it to another --prediction; stage 2: the adapter)");
    if (msdm) {
        app.add_option("--sources", o->t.sources, "The fixed sources (stem tags), stacked as latent channels; a source is the "
                                                  "mix of a song's stems of that tag")
            ->delimiter(',')->capture_default_str();
        app.add_option("--vae", o->t.vae, "VAE whose latents are denoised (default: models/vae_default.safetensors)");
        app.add_option("--pool", o->t.pool, "Latent pool file (default: RUN/pool.safetensors); drawn and encoded once when absent");
        app.add_option("--pool-size", o->t.pool_size, "Training examples in the pool (5.12 s chunks)")->capture_default_str()
            ->check(CLI::Range(1, 10000000));
        app.add_option("--channels", o->t.channels, "U-Net widths per level")->delimiter(',')->capture_default_str();
        app.add_option("--res-blocks", o->t.res_blocks, "Residual blocks per level")->capture_default_str()->check(CLI::Range(1, 8));
        app.add_option("--weight-decay", o->t.weight_decay, "AdamW weight decay")->capture_default_str();
        app.footer("Trains one unconditional denoiser (epsilon or v prediction, 1000 steps) over the joint distribution of the\n"
                   "sources: each training chunk's sources are encoded by the VAE one by one and stacked (an absent source:\n"
                   "the latent of silence). Accompaniment is inpainting (cocola generate --model MSDM). --crop-frames must\n"
                   "divide by 16. Ctrl-C stops after the current step with a checkpoint; --resume RUN continues identically.");
    } else {
    app.add_option("--stage", o->t.stage, "1: the U-Net and its prompt encoder; 2: the ControlNet adapter (U-Net frozen)")
        ->check(CLI::IsMember({1, 2}))->capture_default_str();
    app.add_option("--vae", o->t.vae, "VAE whose latents are denoised (default: models/vae_default.safetensors)");
    app.add_option("--base", o->t.base, "Stage 2: the stage-1 model (e.g. RUN1/last.safetensors)");
    app.add_option("--pool", o->t.pool, "Latent pool file, shared by the stages (default: RUN/pool.safetensors); "
                                        "drawn and encoded once when absent");
    app.add_option("--pool-size", o->t.pool_size, "Training examples in the pool (5.12 s chunks)")->capture_default_str()
        ->check(CLI::Range(1, 10000000));
    app.add_option("--channels", o->t.channels, "Stage 1: U-Net widths per level")->delimiter(',')->capture_default_str();
    app.add_option("--res-blocks", o->t.res_blocks, "Stage 1: residual blocks per level")->capture_default_str()->check(CLI::Range(1, 8));
    app.add_option("--prompt-dim", o->t.prompt_dim, "Stage 1: width of the prompt encoder")->capture_default_str()->check(CLI::Range(8, 2048));
    app.add_option("--prompt-layers", o->t.prompt_layers, "Stage 1: transformer layers of the prompt encoder")->capture_default_str()
        ->check(CLI::Range(0, 24));
    app.add_option("--prompt-drop", o->t.prompt_drop, "Prompts dropped for classifier-free guidance")->capture_default_str();
    app.add_option("--mix-tag", o->t.mix_tag, "Stage 2: input tags replaced by \"mix\" this often")->capture_default_str();
    app.add_option("--weight-decay", o->t.weight_decay, "AdamW weight decay")->capture_default_str();
    app.footer("Stage 1 trains the denoiser (epsilon or v prediction, 1000 steps) on VAE latents of sub-mixes, prompted with\n"
               "\"out: <their stems>\"; stage 2 adds the ControlNet adapter to a stage-1 model and trains it with input and\n"
               "output stems drawn independently (accompaniment, extraction, adding, removing). --crop-frames must divide\n"
               "by 16. The first run of a pool encodes it (progress shown). Ctrl-C stops after the current step with a\n"
               "checkpoint; a killed run continues with --resume RUN, identically.");
    }
    return [o, &app, msdm]() {
        if (o->t.vae.empty() && o->cli.resume.empty()) o->t.vae = default_generator_path("vae_default", "--vae");
        const GeneratorCommand<componet::ComponetTrainOptions> cmd{
            componet::read_componet_run_options, componet::apply_componet_resumable_options,
            componet::componet_fixed_on_resume_flags, [](componet::ComponetTrainOptions t, bool resume, const train::RowCallback& row,
                                                         const std::function<bool()>& stop) {
                Progress bar("encode latent pool", static_cast<size_t>(t.pool_size));
                componet::prepare_latent_pool(t, [&](size_t done, size_t total) {
                    bar.set_total(total);
                    bar.update(done);
                });
                bar.finish();
                componet::train_componet(t, resume, row, stop);
            },
            msdm ? "msdm" : "componet", "loss", "val_loss", ""};
        return cmd.run(app, o->t, o->cli);
    };
}

Runner add_componet_export(CLI::App& app) {
    struct Opts {
        std::string in, out;
        bool half = false;
    };
    auto o = std::make_shared<Opts>();
    app.add_option("MODEL", o->in, "CompoNet .safetensors (e.g. a run's best.safetensors)")->required();
    app.add_option("-o,--out", o->out, "Output .safetensors")->required();
    app.add_flag("--half", o->half, "Store the weights as float16");
    return [o]() {
        const auto m = componet::Componet::load(o->in);
        m.save(o->out, {{"exported_from", fsutil::stem(o->in)}}, o->half);
        std::string what = m.config().controlnet ? "with the ControlNet adapter" : "without the ControlNet adapter";
        if (m.config().is_msdm()) what = "MSDM over " + nlohmann::json(m.config().sources).dump();
        std::cout << o->out << " (" << m.parameter_count() << " parameters, " << what << (o->half ? ", float16" : "") << ")\n";
        return 0;
    };
}

Runner add_componet_probe(CLI::App& app) {
    struct Opts {
        std::vector<std::string> data;
        std::string model, vae, split = "test", task = "accompany", cache_dir = data::default_cache_dir();
        size_t n = 20;
        uint64_t seed = 0;
        std::vector<int64_t> timesteps = {980, 900, 800, 600, 400, 200, 100, 40, 0};
        bool json = false;
    };
    auto o = std::make_shared<Opts>();
    app.add_option("--data", o->data, "Dataset roots or caches (their --split is used)")->required()->delimiter(',');
    app.add_option("--model", o->model, "CompoNet weights (default: models/componet_default.safetensors)");
    app.add_option("--vae", o->vae, "VAE (default: models/vae_default.safetensors)");
    app.add_option("--split", o->split, "Split of each dataset")->capture_default_str();
    app.add_option("--task", o->task, "Items as eval-generation draws them")->check(CLI::IsMember(componet::generation_tasks()))
        ->capture_default_str();
    app.add_option("--n", o->n, "Items per dataset")->check(CLI::Range(1, 10000))->capture_default_str();
    app.add_option("--seed", o->seed, "Seed of the items and the noise")->capture_default_str();
    app.add_option("--timesteps", o->timesteps, "Noise levels to probe")->delimiter(',')->capture_default_str();
    app.add_flag("--json", o->json, "Print JSON instead of a table");
    app.add_option("--cache-dir", o->cache_dir, "Where dataset roots are indexed")->capture_default_str();
    app.footer("Encodes each item's target and input with the VAE, noises the target to each level and measures the\n"
               "model's clean estimate against it: RMS error over the latent and over its per-channel means (a chunk's\n"
               "loudness and spectral balance). The bar: the error of the items' own mean latent (a model that knows\n"
               "nothing). Example: cocola componet probe --data data/demo,data/openmsx --n 20");
    return [o]() {
        componet::Componet model = componet::Componet::load(o->model.empty() ? default_generator_path("componet_default", "--model") : o->model);
        const generate::Vae vae = generate::Vae::load(o->vae.empty() ? default_generator_path("vae_default", "--vae") : o->vae);
        std::vector<componet::GenerationItem> items;
        for (const auto& d : o->data) {
            const data::StemCache cache(data::ensure_cache(d, o->cache_dir));
            auto drawn = componet::draw_generation_items(cache, generation_set_name(d), o->split, o->task, o->n, o->seed, model.config().vocabulary);
            items.insert(items.end(), std::make_move_iterator(drawn.begin()), std::make_move_iterator(drawn.end()));
        }
        const componet::DenoiserProbe p = componet::probe_denoiser(model, vae, items, o->timesteps, o->seed);
        if (o->json) {
            nlohmann::json rows = nlohmann::json::array();
            for (const auto& r : p.rows)
                rows.push_back({{"t", r.t}, {"alpha_bar", r.alpha_bar}, {"x0_rmse", r.x0_rmse}, {"channel_mean_rmse", r.mean_rmse}});
            std::cout << nlohmann::json{{"items", p.items}, {"prediction", model.config().prediction},
                                        {"prior_x0_rmse", p.prior_rmse}, {"prior_channel_mean_rmse", p.prior_mean_rmse}, {"rows", rows}}
                             .dump(2)
                      << "\n";
            return 0;
        }
        std::printf("%zu items, %s prediction; knowing nothing (the items' mean latent): x0 RMSE %.3f, channel means %.3f\n",
                    p.items, model.config().prediction.c_str(), p.prior_rmse, p.prior_mean_rmse);
        std::printf("%6s %10s %10s %14s\n", "t", "alpha_bar", "x0 RMSE", "channel means");
        for (const auto& r : p.rows)
            std::printf("%6lld %10.3g %10.3f %14.3f%s\n", static_cast<long long>(r.t), r.alpha_bar, r.x0_rmse, r.mean_rmse,
                        r.x0_rmse > p.prior_rmse ? "   worse than knowing nothing" : "");
        return 0;
    };
}

}  // namespace

static Runner add_model_command(CLI::App& app, bool msdm) {
    app.require_subcommand(1);
    auto* train = app.add_subcommand("train", msdm ? "Train the MSDM baseline (one unconditional denoiser over fixed sources); resumable"
                                                   : "Train CompoNet, stage 1 (denoiser) or 2 (ControlNet adapter); resumable");
    auto* exp = app.add_subcommand("export", "Copy the model's weights (e.g. as float16) with its config");
    auto runners = std::make_shared<std::vector<std::pair<CLI::App*, Runner>>>();
    runners->push_back({train, add_componet_train(*train, msdm)});
    runners->push_back({exp, add_componet_export(*exp)});
    if (!msdm) {
        auto* probe = app.add_subcommand("probe", "How well the denoiser recovers real targets' latents at each noise level");
        runners->push_back({probe, add_componet_probe(*probe)});
    }
    return [runners]() {
        for (auto& [sub, run] : *runners)
            if (sub->parsed()) return run();
        return 1;
    };
}

Runner add_componet_command(CLI::App& app) { return add_model_command(app, false); }
Runner add_msdm_command(CLI::App& app) { return add_model_command(app, true); }

}  // namespace cocola::cli
