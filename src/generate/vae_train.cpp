// Training the mel autoencoder: its objective on the training core (L1 of the normalised log-mel plus a small
// KL term), its data (random sub-mixes of stem caches, the sub-mixes a generator is conditioned on and asked
// for), its options as data, and the latent scaling factor measured on training data.
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <tuple>

#include "cocola/data.hpp"
#include "cocola/error.hpp"
#include "cocola/generate.hpp"
#include "cocola/rng.hpp"
#include "cocola/train_core.hpp"
#include "generate/generator_training.hpp"
#include "generate/vae_net.hpp"

namespace cocola::generate {
namespace {

struct VisitVaeOptions {
    template <class V>
    void operator()(VaeTrainOptions& o, V&& v) const {
        using train::Option;
        visit_generator_training(o, v);
        v(Option{"kl_weight", {"--kl-weight"}}, o.kl_weight);
        v(Option{"base_channels", {"--width"}}, o.base_channels);
        v(Option{"channel_mult", {"--channel-mult"}}, o.channel_mult);
        v(Option{"res_blocks", {"--res-blocks"}}, o.res_blocks);
        v(Option{"latent_channels", {"--latent-channels"}}, o.latent_channels);
        v(Option{"mid_attention", {"--no-attention"}}, o.mid_attention);
    }
};

struct BatchLoss {
    at::Tensor loss, l1_db, kl;
};

BatchLoss vae_loss(Vae& vae, const at::Tensor& mel, double kl_weight, bool sample) {
    at::Tensor mean, logvar, rec;
    vae.forward(mel, mean, logvar, rec, sample);
    BatchLoss l;
    l.l1_db = (rec - mel).abs().mean();
    l.kl = kl_divergence(mean, logvar);
    // Both terms per input element (the L1 in normalised units), so kl_weight means the same at any crop size.
    const double elements = static_cast<double>(mel.size(1) * mel.size(2));
    l.loss = l.l1_db / vae.config().mel_std + kl_weight * l.kl / elements;
    return l;
}

const uint64_t kTrainDraws = 0x7AE0u, kStatDraws = 0x57A7u, kScaleDraws = 0x5CA1u;

class VaeObjective : public GeneratorObjective {
   public:
    VaeObjective(const VaeTrainOptions& o, Vae& vae, const GeneratorRun& run)
        : GeneratorObjective(o, vae.net(), vae.mutable_config().mel_mean, vae.mutable_config().mel_std, {}),
          o_(o), vae_(vae), run_(run),
          scale_crops_(run.train_crops->reseeded(mix_seed(o.seed, kScaleDraws))) {
        if (!run.val_crops->empty() && o.val_chunks > 0) val_mel_ = mel_spectrograms(run.val_crops->clips(0, o.val_chunks));
    }

    train::Metrics train_step(int64_t step) override {
        const at::Tensor mel = mel_spectrograms(run_.train_crops->clips(step * o_.batch, o_.batch)).to(run_.device);
        // The posterior draw comes from torch's generator, seeded per step: a resumed run draws the same.
        at::manual_seed(mix_seed(o_.seed ^ 0xD1A0u, static_cast<uint64_t>(step)));
        vae_.net().train();
        const BatchLoss l = vae_loss(vae_, mel, o_.kl_weight, /*sample=*/true);
        train::Metrics row;
        update(l.loss, step, row);
        row["loss"] = l.loss.item<double>();
        row["l1_db"] = l.l1_db.item<double>();
        row["kl"] = l.kl.item<double>();
        return row;
    }

    void validate(int64_t step, train::Metrics& row) override {
        if (!val_mel_.defined()) return;
        torch::NoGradGuard no_grad;
        with_model_weights([&] {
            vae_.net().eval();
            double l1 = 0, kl = 0;
            for (int64_t i = 0; i < val_mel_.size(0); i += 4) {
                const at::Tensor mel = val_mel_.slice(0, i, std::min(val_mel_.size(0), i + 4)).to(run_.device);
                const BatchLoss l = vae_loss(vae_, mel, o_.kl_weight, /*sample=*/false);
                l1 += l.l1_db.item<double>() * static_cast<double>(mel.size(0));
                kl += l.kl.item<double>() * static_cast<double>(mel.size(0));
            }
            vae_.net().train();
            l1 /= static_cast<double>(val_mel_.size(0));
            row["val_l1_db"] = l1;
            row["val_kl"] = kl / static_cast<double>(val_mel_.size(0));
            if (improved(l1)) {
                measure_scale_factor();
                vae_.save(o_.run_dir + "/best.safetensors", {{"step", std::to_string(step)},
                                                             {"val_l1_db", std::to_string(l1)},
                                                             {"trained_by", "cocola vae train"}});
            }
        });
    }

    void restore(const safetensors::File& f, const std::string& path) override {
        if (!f.metadata.count("best_val") && f.metadata.count("best_val_l1_db")) {  // runs started before the rename
            safetensors::File renamed = f;
            renamed.metadata["best_val"] = f.metadata.at("best_val_l1_db");
            return GeneratorObjective::restore(renamed, path);
        }
        GeneratorObjective::restore(f, path);
    }

    void write_models(const train::RunFolder& run, int64_t step) override {
        with_model_weights([&] {
            measure_scale_factor();
            vae_.save(run.path("last.safetensors"), {{"step", std::to_string(step)}, {"trained_by", "cocola vae train"}});
        });
    }

   private:
    // 1 / std of the latent means of fixed training crops: latents of unit variance for the diffusion model.
    void measure_scale_factor() {
        torch::NoGradGuard no_grad;
        const double old = vae_.config().scale_factor;
        vae_.mutable_config().scale_factor = 1;
        const double sd = vae_.encode(mel_spectrograms(scale_crops_.clips(0, 16))).std().item<double>();
        vae_.mutable_config().scale_factor = sd > 0 && std::isfinite(sd) ? 1 / sd : old;
    }

    const VaeTrainOptions& o_;
    Vae& vae_;
    const GeneratorRun& run_;
    SubMixCrops scale_crops_;
    at::Tensor val_mel_;
};

const std::vector<std::string> kLogColumns = {"step", "loss", "l1_db", "kl", "grad_norm", "lr",
                                              "val_l1_db", "val_kl", "step_seconds"};

}  // namespace

VaeTrainOptions read_vae_run_options(const std::string& run_dir) {
    return read_generator_options<VaeTrainOptions>(run_dir, VisitVaeOptions{});
}

std::vector<std::string> vae_fixed_on_resume_flags() { return train::option_flags<VaeTrainOptions>(VisitVaeOptions{}, false); }

void apply_vae_resumable_options(const VaeTrainOptions& given, VaeTrainOptions& run,
                                 const std::function<bool(const std::string&)>& was_given) {
    train::apply_resumable(given, run, VisitVaeOptions{}, was_given);
}

void train_vae(VaeTrainOptions o, bool resume, const train::RowCallback& on_row, const std::function<bool()>& stop) {
    if (!(o.kl_weight >= 0 && std::isfinite(o.kl_weight))) throw Error("--kl-weight must be >= 0");
    const GeneratorRun run(o, resume, 1 << (static_cast<int>(o.channel_mult.size()) - 1), kTrainDraws);
    VaeConfig cfg;
    cfg.base_channels = o.base_channels;
    cfg.channel_mult = o.channel_mult;
    cfg.res_blocks = o.res_blocks;
    cfg.latent_channels = o.latent_channels;
    cfg.mid_attention = o.mid_attention;
    if (!resume) std::tie(cfg.mel_mean, cfg.mel_std) = run.mel_statistics(o, kStatDraws);
    Vae vae(cfg, mix_seed(o.seed, 0x1417u));
    vae.to(run.device);
    VaeObjective objective(o, vae, run);
    run_generator(objective, run, o, resume, train::options_to_json(o, VisitVaeOptions{}), kLogColumns,
                  "cocola vae training checkpoint", on_row, stop);
    const std::string log = run.folder.path("log.csv");
    const auto l1 = train::read_log_column(log, "l1_db"), kl = train::read_log_column(log, "kl");
    const size_t win = std::max<size_t>(1, l1.size() / 50);
    train::write_panels_svg(
        {{"log-mel L1 (dB)",
          {{"training (moving average)", "#1f77b4", train::smooth(l1, win)},
           {"validation (posterior mean)", "#d62728", train::read_log_column(log, "val_l1_db"), true}},
          0,
          -1},
         {"KL divergence (per example)",
          {{"training (moving average)", "#1f77b4", train::smooth(kl, win)},
           {"validation", "#d62728", train::read_log_column(log, "val_kl"), true}},
          0,
          -1,
          true}},
        run.folder.path("curves.svg"), "cocola vae train");
}

}  // namespace cocola::generate
