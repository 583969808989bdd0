// What the generator's trainings share (internal to src/generate): the common options as data, the run setup
// (caches, crops, run folder, device, log, loop), the objective's common half (its module's parameters, the
// optimizer, EMA weights for the model files, the spectrogram normalisation, the best score), and module files.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cocola/generate.hpp"
#include "cocola/safetensors.hpp"
#include "cocola/train_core.hpp"
#include "generate/crops.hpp"

namespace cocola::generate {

// The options every generator's training has, in options.json order (resumable: the length, the rate for the
// rest of the run, the checkpoint cadence and the device, which change no number on the CPU).
template <class O, class V>
void visit_generator_training(O& o, V&& v) {
    using train::Option;
    v(Option{"caches", {"--data"}}, o.caches);
    v(Option{"steps", {"--steps"}, true}, o.steps);
    v(Option{"batch", {"--batch"}}, o.batch);
    v(Option{"crop_frames", {"--crop-frames"}}, o.crop_frames);
    v(Option{"lr", {"--lr"}, true}, o.lr);
    v(Option{"warmup_steps", {"--warmup"}}, o.warmup_steps);
    v(Option{"lr_decay", {"--lr-decay"}}, o.lr_decay);
    v(Option{"clip_grad_norm", {"--clip-grad-norm"}}, o.clip_grad_norm);
    v(Option{"ema_decay", {"--ema"}}, o.ema_decay);
    v(Option{"seed", {"--seed"}}, o.seed);
    v(Option{"val_every", {"--val-every"}}, o.val_every);
    v(Option{"val_chunks", {"--val-chunks"}}, o.val_chunks);
    v(Option{"checkpoint_every", {"--checkpoint-every"}, true}, o.checkpoint_every);
    v(Option{"checkpoint_minutes", {"--checkpoint-minutes"}, true}, o.checkpoint_minutes);
    v(Option{"keep_snapshots", {"--keep-snapshots"}, true}, o.keep_snapshots);
    v(Option{"device", {"--device"}, true}, o.device);
}

// Reads run_dir/options.json with a visitor over the whole options struct; throws naming the file.
template <class O, class Visit>
O read_generator_options(const std::string& run_dir, Visit visit) {
    const train::RunFolder run(run_dir);
    const auto j = run.read_options();
    try {
        O o = train::options_from_json<O>(j, visit, {"caches", "steps"});
        o.run_dir = run_dir;
        return o;
    } catch (const std::exception& e) {
        throw Error(run.path("options.json") + ": malformed (" + e.what() + ")");
    }
}

// The sources, crops and folder of a run. Throws on bad options (crop_multiple: what crop_frames must divide by).
struct GeneratorRun {
    GeneratorRun(const GeneratorTraining& o, bool resume, int crop_multiple, uint64_t train_draws);
    std::vector<std::unique_ptr<data::StemCache>> caches;
    std::unique_ptr<SubMixCrops> train_crops, val_crops;
    train::RunFolder folder;
    at::Device device = at::kCPU;
    // Mean and spread of the dB values of 32 training crops drawn with `draws` (the input normalisation).
    std::pair<double, double> mel_statistics(const GeneratorTraining& o, uint64_t draws) const;
};

// The common half of a generator's objective: one module trained by one optimizer.
class GeneratorObjective : public train::Objective {
   public:
    GeneratorObjective(const GeneratorTraining& o, torch::nn::Module& net, double& mel_mean, double& mel_std,
                       train::OptimizerOptions optimizer);
    train::Optimizer& optimizer() override { return *opt_; }
    // The module's parameters, the best validation score and the normalisation (exact doubles).
    void checkpoint_state(train::NamedTensors& tensors, std::map<std::string, std::string>& metadata) override;
    void restore(const safetensors::File& f, const std::string& path) override;

   protected:
    // One optimizer step on `loss` at the schedule's rate for `step`; adds grad_norm and lr to the row.
    void update(const at::Tensor& loss, int64_t step, train::Metrics& row);
    // Runs fn with the weights the model files hold: the moving average when EMA is on, else the weights.
    void with_model_weights(const std::function<void()>& fn);
    // True (and remembered) when `score` is the best validation score so far.
    bool improved(double score);

    const GeneratorTraining& options_;
    torch::nn::Module& net_;

   private:
    double& mel_mean_;
    double& mel_std_;
    std::unique_ptr<train::Optimizer> opt_;
    double best_ = 1e300;
};

// Opens the log (fresh or truncated to the checkpoint), restores a resumed run, writes options.json and runs the
// core's loop with the generator's cadence.
void run_generator(GeneratorObjective& objective, const GeneratorRun& run, const GeneratorTraining& o, bool resume,
                   const nlohmann::json& options, const std::vector<std::string>& columns, const std::string& format,
                   const train::RowCallback& on_row, const std::function<bool()>& stop);

// "[2, 64, 512]": a shape for error messages.
std::string shape_text(at::IntArrayRef shape);

// Writes a module's parameters (float32, or float16 with `half`) with `format` and `config` in the metadata.
void save_module(const torch::nn::Module& net, const std::string& path, const std::string& format,
                 const nlohmann::json& config, const std::map<std::string, std::string>& extra, bool half);
// Checks that `f` is a file of `format` and returns its config JSON; throws naming `path` otherwise.
nlohmann::json module_config(const safetensors::File& f, const std::string& path, const std::string& format,
                             const std::string& what);
// Copies every parameter of `net` from `f`, listing every missing, mis-shaped, non-finite or unexpected tensor.
void load_module(torch::nn::Module& net, const safetensors::File& f, const std::string& path, const std::string& what);

}  // namespace cocola::generate
