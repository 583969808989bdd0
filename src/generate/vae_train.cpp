// Training the mel autoencoder: its objective on the training core (L1 of the normalised log-mel plus a small
// KL term), its data (random sub-mixes of stem caches, the sub-mixes a generator is conditioned on and asked
// for), its options as data, and the latent scaling factor measured on training data.
#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "cocola/data.hpp"
#include "cocola/error.hpp"
#include "cocola/generate.hpp"
#include "cocola/rng.hpp"
#include "cocola/train_core.hpp"
#include "generate/crops.hpp"
#include "generate/vae_net.hpp"

namespace cocola::generate {
namespace {

// ---------------------------------------------------------------- options as data
struct VisitVaeOptions {
    template <class V>
    void operator()(VaeTrainOptions& o, V&& v) const {
        using train::Option;
        v(Option{"caches", {"--data"}}, o.caches);
        v(Option{"steps", {"--steps"}, true}, o.steps);
        v(Option{"batch", {"--batch"}}, o.batch);
        v(Option{"crop_frames", {"--crop-frames"}}, o.crop_frames);
        v(Option{"lr", {"--lr"}, true}, o.lr);
        v(Option{"warmup_steps", {"--warmup"}}, o.warmup_steps);
        v(Option{"lr_decay", {"--lr-decay"}}, o.lr_decay);
        v(Option{"kl_weight", {"--kl-weight"}}, o.kl_weight);
        v(Option{"clip_grad_norm", {"--clip-grad-norm"}}, o.clip_grad_norm);
        v(Option{"ema_decay", {"--ema"}}, o.ema_decay);
        v(Option{"base_channels", {"--width"}}, o.base_channels);
        v(Option{"channel_mult", {"--channel-mult"}}, o.channel_mult);
        v(Option{"res_blocks", {"--res-blocks"}}, o.res_blocks);
        v(Option{"latent_channels", {"--latent-channels"}}, o.latent_channels);
        v(Option{"mid_attention", {"--no-attention"}}, o.mid_attention);
        v(Option{"seed", {"--seed"}}, o.seed);
        v(Option{"val_every", {"--val-every"}}, o.val_every);
        v(Option{"val_chunks", {"--val-chunks"}}, o.val_chunks);
        v(Option{"checkpoint_every", {"--checkpoint-every"}, true}, o.checkpoint_every);
        v(Option{"checkpoint_minutes", {"--checkpoint-minutes"}, true}, o.checkpoint_minutes);
        v(Option{"keep_snapshots", {"--keep-snapshots"}, true}, o.keep_snapshots);
        v(Option{"device", {"--device"}, true}, o.device);
    }
};

void check_options(const VaeTrainOptions& o) {
    if (o.caches.empty()) throw Error("no training data given");
    if (o.run_dir.empty()) throw Error("no run folder given");
    if (o.steps < 1) throw Error("--steps must be at least 1");
    if (o.batch < 1) throw Error("--batch must be at least 1");
    const int d = 1 << (static_cast<int>(o.channel_mult.size()) - 1);
    if (o.crop_frames < 8 || o.crop_frames % std::max(1, d))
        throw Error("--crop-frames must be at least 8 and a multiple of the downsampling (" + std::to_string(d) + ")");
    if (!(o.lr > 0 && std::isfinite(o.lr))) throw Error("--lr must be > 0");
    if (!(o.kl_weight >= 0 && std::isfinite(o.kl_weight))) throw Error("--kl-weight must be >= 0");
    if (o.device != "cpu" && o.device != "cuda") throw Error("--device must be cpu or cuda");
    train::rate_scale({o.warmup_steps, o.lr_decay, o.steps}, o.steps);  // throws on an unknown decay
}

// ---------------------------------------------------------------- the objective

std::string exact(double v) {
    char buf[40];
    std::snprintf(buf, sizeof(buf), "%.17g", v);
    return buf;
}

struct BatchLoss {
    at::Tensor loss, l1_db, kl;
};

BatchLoss vae_loss(Vae& vae, const at::Tensor& mel, double kl_weight, bool sample) {
    at::Tensor mean, logvar, rec;
    vae.forward(mel, mean, logvar, rec, sample);
    const double std_db = vae.config().mel_std;
    BatchLoss l;
    l.l1_db = (rec - mel).abs().mean();
    l.kl = kl_divergence(mean, logvar);
    // Both terms per input element (the L1 in normalised units), so kl_weight means the same at any crop size.
    const double elements = static_cast<double>(mel.size(1) * mel.size(2));
    l.loss = l.l1_db / std_db + kl_weight * l.kl / elements;
    return l;
}

const uint64_t kTrainDraws = 0x7AE0u, kStatDraws = 0x57A7u, kScaleDraws = 0x5CA1u;

class VaeObjective : public train::Objective {
   public:
    VaeObjective(const VaeTrainOptions& o, Vae& vae, const SubMixCrops& train_crops, const SubMixCrops* val_crops,
                 at::Device device)
        : o_(o), vae_(vae), train_(train_crops), device_(device) {
        std::vector<std::pair<std::string, at::Tensor>> params;
        for (const auto& p : vae.net().named_parameters()) params.emplace_back(p.key(), p.value());
        train::OptimizerOptions oo;
        oo.kind = "adam";
        oo.clip_grad_norm = o.clip_grad_norm;
        oo.ema_decay = o.ema_decay;
        opt_ = std::make_unique<train::Optimizer>(params, std::vector<double>(params.size(), o.lr), oo);
        if (val_crops && !val_crops->empty() && o.val_chunks > 0)
            val_mel_ = mel_spectrograms(val_crops->clips(0, o.val_chunks));  // fixed: the same crops every time
    }

    train::Optimizer& optimizer() override { return *opt_; }

    train::Metrics train_step(int64_t step) override {
        const at::Tensor mel = mel_spectrograms(train_.clips(step * o_.batch, o_.batch)).to(device_);
        // The posterior draw comes from torch's generator, seeded per step: a resumed run draws the same.
        at::manual_seed(mix_seed(o_.seed ^ 0xD1A0u, static_cast<uint64_t>(step)));
        vae_.net().train();
        BatchLoss l = vae_loss(vae_, mel, o_.kl_weight, /*sample=*/true);
        opt_->zero_grad();
        l.loss.backward();
        const double scale = train::rate_scale({o_.warmup_steps, o_.lr_decay, o_.steps}, step);
        const double norm = opt_->step(scale);
        train::Metrics row;
        row["loss"] = l.loss.item<double>();
        row["l1_db"] = l.l1_db.item<double>();
        row["kl"] = l.kl.item<double>();
        if (norm >= 0) row["grad_norm"] = norm;
        row["lr"] = o_.lr * scale;
        if (!std::isfinite(row["loss"]))
            throw Error("VAE training diverged at step " + std::to_string(step + 1) +
                        " (the loss is not finite); resume from the last checkpoint with a lower --lr");
        return row;
    }

    void validate(int64_t step, train::Metrics& row) override {
        if (!val_mel_.defined()) return;
        torch::NoGradGuard no_grad;
        with_model_weights([&] {
            vae_.net().eval();
            double l1 = 0, kl = 0;
            for (int64_t i = 0; i < val_mel_.size(0); i += 4) {
                const at::Tensor mel = val_mel_.slice(0, i, std::min(val_mel_.size(0), i + 4)).to(device_);
                const BatchLoss l = vae_loss(vae_, mel, o_.kl_weight, /*sample=*/false);
                l1 += l.l1_db.item<double>() * static_cast<double>(mel.size(0));
                kl += l.kl.item<double>() * static_cast<double>(mel.size(0));
            }
            vae_.net().train();
            l1 /= static_cast<double>(val_mel_.size(0));
            row["val_l1_db"] = l1;
            row["val_kl"] = kl / static_cast<double>(val_mel_.size(0));
            if (l1 < best_) {
                best_ = l1;
                measure_scale_factor();
                vae_.save(o_.run_dir + "/best.safetensors", {{"step", std::to_string(step)},
                                                             {"val_l1_db", std::to_string(l1)},
                                                             {"trained_by", "cocola vae train"}});
            }
        });
    }

    void checkpoint_state(train::NamedTensors& tensors, std::map<std::string, std::string>& metadata) override {
        for (const auto& p : vae_.net().named_parameters()) tensors.emplace_back(p.key(), p.value());
        // 17 significant digits: read back, they are the same doubles (resume equals uninterrupted).
        metadata["best_val_l1_db"] = exact(best_);
        metadata["mel_mean"] = exact(vae_.config().mel_mean);
        metadata["mel_std"] = exact(vae_.config().mel_std);
    }

    void restore(const safetensors::File& f, const std::string& path) override {
        for (auto& p : vae_.net().named_parameters()) {
            at::Tensor t = p.value();
            train::copy_from(f, path, p.key(), t);
        }
        try {
            best_ = std::stod(f.metadata.at("best_val_l1_db"));
            // The normalisation measured when the run started.
            vae_.mutable_config().mel_mean = std::stod(f.metadata.at("mel_mean"));
            vae_.mutable_config().mel_std = std::stod(f.metadata.at("mel_std"));
        } catch (const std::exception&) {
            throw Error(path + ": missing or malformed best_val_l1_db / mel_mean / mel_std metadata");
        }
    }

    void write_models(const train::RunFolder& run, int64_t step) override {
        with_model_weights([&] {
            measure_scale_factor();
            vae_.save(run.path("last.safetensors"), {{"step", std::to_string(step)}, {"trained_by", "cocola vae train"}});
        });
    }

   private:
    // Runs fn with the weights the model files hold: the moving average when --ema is on, else the weights.
    void with_model_weights(const std::function<void()>& fn) {
        const auto& ema = opt_->ema();
        if (ema.empty()) return fn();
        torch::NoGradGuard no_grad;
        std::vector<at::Tensor> kept;
        const auto& params = opt_->params();
        for (size_t i = 0; i < params.size(); ++i) {
            kept.push_back(params[i].second.detach().clone());
            params[i].second.detach().copy_(ema[i].second);
        }
        try {
            fn();
        } catch (...) {
            for (size_t i = 0; i < params.size(); ++i) params[i].second.detach().copy_(kept[i]);
            throw;
        }
        for (size_t i = 0; i < params.size(); ++i) params[i].second.detach().copy_(kept[i]);
    }

    // 1 / std of the latent means of fixed training crops: latents of unit variance for the diffusion model.
    void measure_scale_factor() {
        torch::NoGradGuard no_grad;
        const double old = vae_.config().scale_factor;
        vae_.mutable_config().scale_factor = 1;
        const at::Tensor mel = mel_spectrograms(scale_crops().clips(0, 16));
        const double sd = vae_.encode(mel).std().item<double>();
        vae_.mutable_config().scale_factor = sd > 0 && std::isfinite(sd) ? 1 / sd : old;
    }
    const SubMixCrops& scale_crops() {
        if (!scale_) scale_ = std::make_unique<SubMixCrops>(train_.reseeded(mix_seed(o_.seed, kScaleDraws)));
        return *scale_;
    }

    const VaeTrainOptions& o_;
    Vae& vae_;
    const SubMixCrops& train_;
    std::unique_ptr<SubMixCrops> scale_;
    at::Device device_;
    std::unique_ptr<train::Optimizer> opt_;
    at::Tensor val_mel_;
    double best_ = 1e300;
};

const std::vector<std::string> kLogColumns = {"step", "loss", "l1_db", "kl", "grad_norm", "lr",
                                              "val_l1_db", "val_kl", "step_seconds"};

void write_vae_curves(const std::string& run_dir) {
    const std::string log = run_dir + "/log.csv";
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
        run_dir + "/curves.svg", "cocola vae train");
}

}  // namespace

VaeTrainOptions read_vae_run_options(const std::string& run_dir) {
    const train::RunFolder run(run_dir);
    const auto j = run.read_options();
    try {
        VaeTrainOptions o = train::options_from_json<VaeTrainOptions>(j, VisitVaeOptions{}, {"caches", "steps"});
        o.run_dir = run_dir;
        return o;
    } catch (const std::exception& e) {
        throw Error(run.path("options.json") + ": malformed (" + e.what() + ")");
    }
}

std::vector<std::string> vae_fixed_on_resume_flags() { return train::option_flags<VaeTrainOptions>(VisitVaeOptions{}, false); }

void apply_vae_resumable_options(const VaeTrainOptions& given, VaeTrainOptions& run,
                                 const std::function<bool(const std::string&)>& was_given) {
    train::apply_resumable(given, run, VisitVaeOptions{}, was_given);
}

void train_vae(VaeTrainOptions o, bool resume, const train::RowCallback& on_row, const std::function<bool()>& stop) {
    check_options(o);
    std::vector<std::unique_ptr<data::StemCache>> caches;
    for (const auto& dir : o.caches) caches.push_back(std::make_unique<data::StemCache>(dir));
    const SubMixCrops train_crops(caches, {"train"}, o.crop_frames, mix_seed(o.seed, kTrainDraws));
    if (train_crops.empty()) throw Error("no training tracks (no \"train\" split) in the --data sources");
    const SubMixCrops val_crops(caches, {"valid", "validation", "test"}, kChunkFrames, data::kProtocolSeed);
    const train::RunFolder run(o.run_dir);
    run.open(resume);
    const at::Device device(o.device == "cuda" ? at::kCUDA : at::kCPU);
    if (o.device == "cuda" && !at::hasCUDA())
        throw Error("--device cuda: this build's LibTorch has no CUDA, or no GPU is visible");

    VaeConfig cfg;
    cfg.base_channels = o.base_channels;
    cfg.channel_mult = o.channel_mult;
    cfg.res_blocks = o.res_blocks;
    cfg.latent_channels = o.latent_channels;
    cfg.mid_attention = o.mid_attention;
    if (!resume) {
        // The spectrogram's normalisation: mean and spread of the dB values of training crops.
        const at::Tensor mel = mel_spectrograms(SubMixCrops(caches, {"train"}, o.crop_frames, mix_seed(o.seed, kStatDraws)).clips(0, 32));
        cfg.mel_mean = mel.mean().item<double>();
        cfg.mel_std = std::max(1.0, mel.std().item<double>());
    }
    Vae vae(cfg, mix_seed(o.seed, 0x1417u));
    vae.to(device);
    VaeObjective objective(o, vae, train_crops, &val_crops, device);

    const nlohmann::json options = train::options_to_json(o, VisitVaeOptions{});
    const train::MetricsLog log(run.path("log.csv"), kLogColumns);
    int64_t step = 0;
    if (resume) {
        step = train::restore_checkpoint(run, objective);
        log.truncate_after(step);
    } else {
        log.create();
    }
    run.write_options(options);
    train::LoopOptions loop;
    loop.steps = o.steps;
    loop.val_every = o.val_every;
    loop.checkpoint_every = o.checkpoint_every;
    loop.checkpoint_seconds = o.checkpoint_minutes * 60;
    loop.keep_snapshots = o.keep_snapshots;
    loop.format = "cocola vae training checkpoint";
    loop.options = options;
    train::run_loop(objective, run, log, loop, step, on_row, stop);
    write_vae_curves(o.run_dir);
}

}  // namespace cocola::generate
