// Training the neural vocoder on the training core: crops of random sub-mixes, their log-mel as input, the
// log-mel L1 and multi-resolution STFT loss of the audio it makes against the crop (no adversary: measurable on
// the CPU in an hour; a GAN term is the known next step for sharper phase).
#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "cocola/error.hpp"
#include "cocola/generate.hpp"
#include "cocola/train_core.hpp"
#include "generate/crops.hpp"
#include "generate/vocoder_net.hpp"

namespace cocola::generate {
namespace {

struct VisitVocoderOptions {
    template <class V>
    void operator()(VocoderTrainOptions& o, V&& v) const {
        using train::Option;
        v(Option{"caches", {"--data"}}, o.caches);
        v(Option{"steps", {"--steps"}, true}, o.steps);
        v(Option{"batch", {"--batch"}}, o.batch);
        v(Option{"crop_frames", {"--crop-frames"}}, o.crop_frames);
        v(Option{"lr", {"--lr"}, true}, o.lr);
        v(Option{"warmup_steps", {"--warmup"}}, o.warmup_steps);
        v(Option{"lr_decay", {"--lr-decay"}}, o.lr_decay);
        v(Option{"mel_weight", {"--mel-weight"}}, o.mel_weight);
        v(Option{"stft_weight", {"--stft-weight"}}, o.stft_weight);
        v(Option{"clip_grad_norm", {"--clip-grad-norm"}}, o.clip_grad_norm);
        v(Option{"ema_decay", {"--ema"}}, o.ema_decay);
        v(Option{"channels", {"--width"}}, o.channels);
        v(Option{"blocks", {"--blocks"}}, o.blocks);
        v(Option{"n_fft", {"--n-fft"}}, o.n_fft);
        v(Option{"seed", {"--seed"}}, o.seed);
        v(Option{"val_every", {"--val-every"}}, o.val_every);
        v(Option{"val_chunks", {"--val-chunks"}}, o.val_chunks);
        v(Option{"checkpoint_every", {"--checkpoint-every"}, true}, o.checkpoint_every);
        v(Option{"checkpoint_minutes", {"--checkpoint-minutes"}, true}, o.checkpoint_minutes);
        v(Option{"keep_snapshots", {"--keep-snapshots"}, true}, o.keep_snapshots);
        v(Option{"device", {"--device"}, true}, o.device);
    }
};

std::string exact(double v) {
    char buf[40];
    std::snprintf(buf, sizeof(buf), "%.17g", v);
    return buf;
}

struct Losses {
    at::Tensor loss, mel_l1_db, mr_stft;
};

Losses vocoder_losses(Vocoder& voc, const at::Tensor& audio, const at::Tensor& mel, const VocoderTrainOptions& o) {
    const at::Tensor y = voc.forward(mel);
    Losses l;
    l.mel_l1_db = (mel_spectrograms_differentiable(y) - mel_spectrograms_differentiable(audio)).abs().mean();
    l.mr_stft = multi_resolution_stft_loss(y, audio);
    l.loss = o.mel_weight * l.mel_l1_db / voc.config().mel_std + o.stft_weight * l.mr_stft;
    return l;
}

const uint64_t kTrainDraws = 0x70C0u, kStatDraws = 0x57A8u;

class VocoderObjective : public train::Objective {
   public:
    VocoderObjective(const VocoderTrainOptions& o, Vocoder& voc, const SubMixCrops& train_crops,
                     const SubMixCrops& val_crops, at::Device device)
        : o_(o), voc_(voc), train_(train_crops), device_(device) {
        train::NamedTensors params;
        for (const auto& p : voc.net().named_parameters()) params.emplace_back(p.key(), p.value());
        train::OptimizerOptions oo;
        oo.kind = "adamw";
        oo.weight_decay = 0.01;
        oo.clip_grad_norm = o.clip_grad_norm;
        oo.ema_decay = o.ema_decay;
        opt_ = std::make_unique<train::Optimizer>(params, std::vector<double>(params.size(), o.lr), oo);
        if (!val_crops.empty() && o.val_chunks > 0) val_audio_ = val_crops.clips(0, o.val_chunks);
    }
    train::Optimizer& optimizer() override { return *opt_; }

    train::Metrics train_step(int64_t step) override {
        const at::Tensor audio = train_.clips(step * o_.batch, o_.batch);
        const at::Tensor mel = mel_spectrograms(audio);
        voc_.net().train();
        const Losses l = vocoder_losses(voc_, audio.to(device_), mel.to(device_), o_);
        opt_->zero_grad();
        l.loss.backward();
        const double scale = train::rate_scale({o_.warmup_steps, o_.lr_decay, o_.steps}, step);
        const double norm = opt_->step(scale);
        train::Metrics row;
        row["loss"] = l.loss.item<double>();
        row["mel_l1_db"] = l.mel_l1_db.item<double>();
        row["mr_stft"] = l.mr_stft.item<double>();
        if (norm >= 0) row["grad_norm"] = norm;
        row["lr"] = o_.lr * scale;
        if (!std::isfinite(row["loss"]))
            throw Error("vocoder training diverged at step " + std::to_string(step + 1) +
                        " (the loss is not finite); resume from the last checkpoint with a lower --lr");
        return row;
    }

    void validate(int64_t step, train::Metrics& row) override {
        if (!val_audio_.defined()) return;
        torch::NoGradGuard no_grad;
        with_model_weights([&] {
            voc_.net().eval();
            double mel = 0, mr = 0;
            const int64_t n = val_audio_.size(0);
            for (int64_t i = 0; i < n; i += 4) {
                const at::Tensor a = val_audio_.slice(0, i, std::min(n, i + 4));
                const Losses l = vocoder_losses(voc_, a.to(device_), mel_spectrograms(a).to(device_), o_);
                mel += l.mel_l1_db.item<double>() * static_cast<double>(a.size(0));
                mr += l.mr_stft.item<double>() * static_cast<double>(a.size(0));
            }
            voc_.net().train();
            row["val_mel_l1_db"] = mel / static_cast<double>(n);
            row["val_mr_stft"] = mr / static_cast<double>(n);
            const double score = row["val_mel_l1_db"] / voc_.config().mel_std + row["val_mr_stft"];
            if (score < best_) {
                best_ = score;
                voc_.save(o_.run_dir + "/best.safetensors", {{"step", std::to_string(step)},
                                                             {"val_mel_l1_db", std::to_string(row["val_mel_l1_db"])},
                                                             {"val_mr_stft", std::to_string(row["val_mr_stft"])},
                                                             {"trained_by", "cocola vocoder train"}});
            }
        });
    }

    void checkpoint_state(train::NamedTensors& tensors, std::map<std::string, std::string>& metadata) override {
        for (const auto& p : voc_.net().named_parameters()) tensors.emplace_back(p.key(), p.value());
        metadata["best_val"] = exact(best_);
        metadata["mel_mean"] = exact(voc_.config().mel_mean);
        metadata["mel_std"] = exact(voc_.config().mel_std);
    }

    void restore(const safetensors::File& f, const std::string& path) override {
        for (auto& p : voc_.net().named_parameters()) {
            at::Tensor t = p.value();
            train::copy_from(f, path, p.key(), t);
        }
        try {
            best_ = std::stod(f.metadata.at("best_val"));
            voc_.mutable_config().mel_mean = std::stod(f.metadata.at("mel_mean"));
            voc_.mutable_config().mel_std = std::stod(f.metadata.at("mel_std"));
        } catch (const std::exception&) {
            throw Error(path + ": missing or malformed best_val / mel_mean / mel_std metadata");
        }
    }

    void write_models(const train::RunFolder& run, int64_t step) override {
        with_model_weights([&] {
            voc_.save(run.path("last.safetensors"), {{"step", std::to_string(step)}, {"trained_by", "cocola vocoder train"}});
        });
    }

   private:
    void with_model_weights(const std::function<void()>& fn) {
        const auto& ema = opt_->ema();
        if (ema.empty()) return fn();
        torch::NoGradGuard no_grad;
        const auto& params = opt_->params();
        std::vector<at::Tensor> kept;
        for (size_t i = 0; i < params.size(); ++i) {
            kept.push_back(params[i].second.detach().clone());
            params[i].second.detach().copy_(ema[i].second);
        }
        auto put_back = [&] {
            for (size_t i = 0; i < params.size(); ++i) params[i].second.detach().copy_(kept[i]);
        };
        try {
            fn();
        } catch (...) {
            put_back();
            throw;
        }
        put_back();
    }

    const VocoderTrainOptions& o_;
    Vocoder& voc_;
    const SubMixCrops& train_;
    at::Device device_;
    std::unique_ptr<train::Optimizer> opt_;
    at::Tensor val_audio_;
    double best_ = 1e300;
};

const std::vector<std::string> kLogColumns = {"step", "loss", "mel_l1_db", "mr_stft", "grad_norm", "lr",
                                              "val_mel_l1_db", "val_mr_stft", "step_seconds"};

}  // namespace

VocoderTrainOptions read_vocoder_run_options(const std::string& run_dir) {
    const train::RunFolder run(run_dir);
    const auto j = run.read_options();
    try {
        VocoderTrainOptions o = train::options_from_json<VocoderTrainOptions>(j, VisitVocoderOptions{}, {"caches", "steps"});
        o.run_dir = run_dir;
        return o;
    } catch (const std::exception& e) {
        throw Error(run.path("options.json") + ": malformed (" + e.what() + ")");
    }
}

std::vector<std::string> vocoder_fixed_on_resume_flags() {
    return train::option_flags<VocoderTrainOptions>(VisitVocoderOptions{}, false);
}

void apply_vocoder_resumable_options(const VocoderTrainOptions& given, VocoderTrainOptions& run,
                                     const std::function<bool(const std::string&)>& was_given) {
    train::apply_resumable(given, run, VisitVocoderOptions{}, was_given);
}

void train_vocoder(VocoderTrainOptions o, bool resume, const train::RowCallback& on_row, const std::function<bool()>& stop) {
    if (o.caches.empty()) throw Error("no training data given");
    if (o.steps < 1 || o.batch < 1) throw Error("--steps and --batch must be at least 1");
    if (o.crop_frames < 8) throw Error("--crop-frames must be at least 8");
    if (!(o.lr > 0)) throw Error("--lr must be > 0");
    if (o.device != "cpu" && o.device != "cuda") throw Error("--device must be cpu or cuda");
    train::rate_scale({o.warmup_steps, o.lr_decay, o.steps}, o.steps);
    std::vector<std::unique_ptr<data::StemCache>> caches;
    for (const auto& dir : o.caches) caches.push_back(std::make_unique<data::StemCache>(dir));
    const SubMixCrops train_crops(caches, {"train"}, o.crop_frames, mix_seed(o.seed, kTrainDraws));
    if (train_crops.empty()) throw Error("no training tracks (no \"train\" split) in the --data sources");
    const SubMixCrops val_crops(caches, {"valid", "validation", "test"}, kChunkFrames, data::kProtocolSeed);
    const train::RunFolder run(o.run_dir);
    run.open(resume);
    const at::Device device(o.device == "cuda" ? at::kCUDA : at::kCPU);
    if (o.device == "cuda" && !at::hasCUDA()) throw Error("--device cuda: this build's LibTorch has no CUDA, or no GPU is visible");

    VocoderConfig cfg;
    cfg.channels = o.channels;
    cfg.blocks = o.blocks;
    cfg.n_fft = o.n_fft;
    if (!resume) {
        const at::Tensor mel = mel_spectrograms(SubMixCrops(caches, {"train"}, o.crop_frames, mix_seed(o.seed, kStatDraws)).clips(0, 32));
        cfg.mel_mean = mel.mean().item<double>();
        cfg.mel_std = std::max(1.0, mel.std().item<double>());
    }
    Vocoder voc(cfg, mix_seed(o.seed, 0x70C1u));
    voc.to(device);
    VocoderObjective objective(o, voc, train_crops, val_crops, device);
    const nlohmann::json options = train::options_to_json(o, VisitVocoderOptions{});
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
    loop.format = "cocola vocoder training checkpoint";
    loop.options = options;
    train::run_loop(objective, run, log, loop, step, on_row, stop);
    const std::string lp = run.path("log.csv");
    const auto mel = train::read_log_column(lp, "mel_l1_db"), mr = train::read_log_column(lp, "mr_stft");
    const size_t win = std::max<size_t>(1, mel.size() / 50);
    train::write_panels_svg({{"log-mel L1 (dB)",
                              {{"training (moving average)", "#1f77b4", train::smooth(mel, win)},
                               {"validation", "#d62728", train::read_log_column(lp, "val_mel_l1_db"), true}},
                              0,
                              -1},
                             {"multi-resolution STFT loss",
                              {{"training (moving average)", "#1f77b4", train::smooth(mr, win)},
                               {"validation", "#d62728", train::read_log_column(lp, "val_mr_stft"), true}},
                              0,
                              -1}},
                            run.path("curves.svg"), "cocola vocoder train");
}

}  // namespace cocola::generate
