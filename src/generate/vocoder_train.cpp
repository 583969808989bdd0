// Training the neural vocoder on the training core: crops of random sub-mixes, their log-mel as input, the
// log-mel L1 and multi-resolution STFT loss of the audio it makes against the crop (no adversary: measurable on
// the CPU in an hour; a GAN term is the known next step for sharper phase).
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <tuple>

#include "cocola/error.hpp"
#include "cocola/generate.hpp"
#include "cocola/train_core.hpp"
#include "generate/generator_training.hpp"
#include "generate/vocoder_net.hpp"

namespace cocola::generate {
namespace {

struct VisitVocoderOptions {
    template <class V>
    void operator()(VocoderTrainOptions& o, V&& v) const {
        using train::Option;
        visit_generator_training(o, v);
        v(Option{"mel_weight", {"--mel-weight"}}, o.mel_weight);
        v(Option{"stft_weight", {"--stft-weight"}}, o.stft_weight);
        v(Option{"channels", {"--width"}}, o.channels);
        v(Option{"blocks", {"--blocks"}}, o.blocks);
        v(Option{"n_fft", {"--n-fft"}}, o.n_fft);
        v(Option{"prior", {"--prior"}}, o.prior);
        v(Option{"mel_matching_passes", {"--mel-matching-passes"}, true}, o.mel_matching_passes);
    }
};

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

train::OptimizerOptions adamw() {
    train::OptimizerOptions oo;
    oo.kind = "adamw";
    oo.weight_decay = 0.01;
    return oo;
}

class VocoderObjective : public GeneratorObjective {
   public:
    VocoderObjective(const VocoderTrainOptions& o, Vocoder& voc, const GeneratorRun& run)
        : GeneratorObjective(o, voc.net(), voc.mutable_config().mel_mean, voc.mutable_config().mel_std, adamw()),
          o_(o), voc_(voc), run_(run) {
        if (!run.val_crops->empty() && o.val_chunks > 0) val_audio_ = run.val_crops->clips(0, o.val_chunks);
    }

    train::Metrics train_step(int64_t step) override {
        const at::Tensor audio = run_.train_crops->clips(step * o_.batch, o_.batch);
        const at::Tensor mel = mel_spectrograms(audio);
        voc_.net().train();
        const Losses l = vocoder_losses(voc_, audio.to(run_.device), mel.to(run_.device), o_);
        train::Metrics row;
        update(l.loss, step, row);
        row["loss"] = l.loss.item<double>();
        row["mel_l1_db"] = l.mel_l1_db.item<double>();
        row["mr_stft"] = l.mr_stft.item<double>();
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
                const Losses l = vocoder_losses(voc_, a.to(run_.device), mel_spectrograms(a).to(run_.device), o_);
                mel += l.mel_l1_db.item<double>() * static_cast<double>(a.size(0));
                mr += l.mr_stft.item<double>() * static_cast<double>(a.size(0));
            }
            voc_.net().train();
            row["val_mel_l1_db"] = mel / static_cast<double>(n);
            row["val_mr_stft"] = mr / static_cast<double>(n);
            if (improved(row["val_mel_l1_db"] / voc_.config().mel_std + row["val_mr_stft"]))
                voc_.save(o_.run_dir + "/best.safetensors", {{"step", std::to_string(step)},
                                                             {"val_mel_l1_db", std::to_string(row["val_mel_l1_db"])},
                                                             {"val_mr_stft", std::to_string(row["val_mr_stft"])},
                                                             {"trained_by", "cocola vocoder train"}});
        });
    }

    void write_models(const train::RunFolder& run, int64_t step) override {
        with_model_weights([&] {
            voc_.save(run.path("last.safetensors"), {{"step", std::to_string(step)}, {"trained_by", "cocola vocoder train"}});
        });
    }

   private:
    const VocoderTrainOptions& o_;
    Vocoder& voc_;
    const GeneratorRun& run_;
    at::Tensor val_audio_;
};

const std::vector<std::string> kLogColumns = {"step", "loss", "mel_l1_db", "mr_stft", "grad_norm", "lr",
                                              "val_mel_l1_db", "val_mr_stft", "step_seconds"};

}  // namespace

VocoderTrainOptions read_vocoder_run_options(const std::string& run_dir) {
    return read_generator_options<VocoderTrainOptions>(run_dir, VisitVocoderOptions{});
}

std::vector<std::string> vocoder_fixed_on_resume_flags() {
    return train::option_flags<VocoderTrainOptions>(VisitVocoderOptions{}, false);
}

void apply_vocoder_resumable_options(const VocoderTrainOptions& given, VocoderTrainOptions& run,
                                     const std::function<bool(const std::string&)>& was_given) {
    train::apply_resumable(given, run, VisitVocoderOptions{}, was_given);
}

void train_vocoder(VocoderTrainOptions o, bool resume, const train::RowCallback& on_row, const std::function<bool()>& stop) {
    const GeneratorRun run(o, resume, 1, kTrainDraws);
    VocoderConfig cfg;
    cfg.channels = o.channels;
    cfg.blocks = o.blocks;
    cfg.n_fft = o.n_fft;
    cfg.prior = o.prior;
    cfg.mel_matching_passes = o.mel_matching_passes;
    if (!resume) std::tie(cfg.mel_mean, cfg.mel_std) = run.mel_statistics(o, kStatDraws);
    Vocoder voc(cfg, mix_seed(o.seed, 0x70C1u));
    voc.to(run.device);
    VocoderObjective objective(o, voc, run);
    run_generator(objective, run, o, resume, train::options_to_json(o, VisitVocoderOptions{}), kLogColumns,
                  "cocola vocoder training checkpoint", on_row, stop);
    const std::string lp = run.folder.path("log.csv");
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
                            run.folder.path("curves.svg"), "cocola vocoder train");
}

}  // namespace cocola::generate
