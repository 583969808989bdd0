// The generator trainings' common half (generator_training.hpp).
#include "generate/generator_training.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "cocola/error.hpp"

namespace cocola::generate {

namespace {
std::string exact(double v) {  // 17 significant digits: read back, the same double (resume equals uninterrupted)
    char buf[40];
    std::snprintf(buf, sizeof(buf), "%.17g", v);
    return buf;
}
}  // namespace

std::string shape_text(at::IntArrayRef s) {
    std::string out = "[";
    for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
    return out + "]";
}

GeneratorRun::GeneratorRun(const GeneratorTraining& o, bool resume, int crop_multiple, uint64_t train_draws)
    : folder(o.run_dir) {
    if (o.caches.empty()) throw Error("no training data given");
    if (o.run_dir.empty()) throw Error("no run folder given");
    if (o.steps < 1 || o.batch < 1) throw Error("--steps and --batch must be at least 1");
    if (o.crop_frames < 8 || o.crop_frames % std::max(1, crop_multiple))
        throw Error("--crop-frames must be at least 8 and a multiple of " + std::to_string(crop_multiple));
    if (!(o.lr > 0 && std::isfinite(o.lr))) throw Error("--lr must be > 0");
    if (o.device != "cpu" && o.device != "cuda") throw Error("--device must be cpu or cuda");
    train::rate_scale({o.warmup_steps, o.lr_decay, o.steps}, o.steps);  // throws on an unknown decay
    for (const auto& dir : o.caches) caches.push_back(std::make_unique<data::StemCache>(dir));
    train_crops = std::make_unique<SubMixCrops>(caches, std::vector<std::string>{"train"}, o.crop_frames, mix_seed(o.seed, train_draws));
    if (train_crops->empty()) throw Error("no training tracks (no \"train\" split) in the --data sources");
    val_crops = std::make_unique<SubMixCrops>(caches, std::vector<std::string>{"valid", "validation", "test"}, kChunkFrames,
                                              data::kProtocolSeed);
    folder.open(resume);
    device = at::Device(o.device == "cuda" ? at::kCUDA : at::kCPU);
    if (o.device == "cuda" && !at::hasCUDA()) throw Error("--device cuda: this build's LibTorch has no CUDA, or no GPU is visible");
}

std::pair<double, double> GeneratorRun::mel_statistics(const GeneratorTraining& o, uint64_t draws) const {
    const at::Tensor mel = mel_spectrograms(train_crops->reseeded(mix_seed(o.seed, draws)).clips(0, 32));
    return {mel.mean().item<double>(), std::max(1.0, mel.std().item<double>())};
}

GeneratorObjective::GeneratorObjective(const GeneratorTraining& o, torch::nn::Module& net, double& mel_mean,
                                       double& mel_std, train::OptimizerOptions oo)
    : options_(o), net_(net), mel_mean_(mel_mean), mel_std_(mel_std) {
    train::NamedTensors params;
    for (const auto& p : net.named_parameters()) params.emplace_back(p.key(), p.value());
    oo.clip_grad_norm = o.clip_grad_norm;
    oo.ema_decay = o.ema_decay;
    opt_ = std::make_unique<train::Optimizer>(params, std::vector<double>(params.size(), o.lr), oo);
}

void GeneratorObjective::update(const at::Tensor& loss, int64_t step, train::Metrics& row) {
    opt_->zero_grad();
    loss.backward();
    const double scale = train::rate_scale({options_.warmup_steps, options_.lr_decay, options_.steps}, step);
    const double norm = opt_->step(scale);
    if (norm >= 0) row["grad_norm"] = norm;
    row["lr"] = options_.lr * scale;
    if (!std::isfinite(loss.item<double>()))
        throw Error("training diverged at step " + std::to_string(step + 1) +
                    " (the loss is not finite); resume from the last checkpoint with a lower --lr");
}

void GeneratorObjective::checkpoint_state(train::NamedTensors& tensors, std::map<std::string, std::string>& metadata) {
    for (const auto& p : net_.named_parameters()) tensors.emplace_back(p.key(), p.value());
    metadata["best_val"] = exact(best_);
    metadata["mel_mean"] = exact(mel_mean_);
    metadata["mel_std"] = exact(mel_std_);
}

void GeneratorObjective::restore(const safetensors::File& f, const std::string& path) {
    for (auto& p : net_.named_parameters()) {
        at::Tensor t = p.value();
        train::copy_from(f, path, p.key(), t);
    }
    try {
        best_ = std::stod(f.metadata.at("best_val"));
        mel_mean_ = std::stod(f.metadata.at("mel_mean"));
        mel_std_ = std::stod(f.metadata.at("mel_std"));
    } catch (const std::exception&) {
        throw Error(path + ": missing or malformed best_val / mel_mean / mel_std metadata");
    }
}

void GeneratorObjective::with_model_weights(const std::function<void()>& fn) {
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

bool GeneratorObjective::improved(double score) {
    if (!(score < best_)) return false;
    best_ = score;
    return true;
}

void run_generator(GeneratorObjective& objective, const GeneratorRun& run, const GeneratorTraining& o, bool resume,
                   const nlohmann::json& options, const std::vector<std::string>& columns, const std::string& format,
                   const train::RowCallback& on_row, const std::function<bool()>& stop) {
    const train::MetricsLog log(run.folder.path("log.csv"), columns);
    int64_t step = 0;
    if (resume) {
        step = train::restore_checkpoint(run.folder, objective);
        log.truncate_after(step);
    } else {
        log.create();
    }
    run.folder.write_options(options);
    train::LoopOptions loop;
    loop.steps = o.steps;
    loop.val_every = o.val_every;
    loop.checkpoint_every = o.checkpoint_every;
    loop.checkpoint_seconds = o.checkpoint_minutes * 60;
    loop.keep_snapshots = o.keep_snapshots;
    loop.format = format;
    loop.options = options;
    train::run_loop(objective, run.folder, log, loop, step, on_row, stop);
}

void save_module(const torch::nn::Module& net, const std::string& path, const std::string& format,
                 const nlohmann::json& config, const std::map<std::string, std::string>& extra, bool half) {
    std::vector<std::pair<std::string, at::Tensor>> state;
    for (const auto& p : net.named_parameters())
        state.emplace_back(p.key(), half ? p.value().detach().to(at::kHalf) : p.value().detach());
    std::map<std::string, std::string> meta = extra;
    meta["format"] = format;
    meta["config"] = config.dump();
    safetensors::save(path, state, meta);
}

nlohmann::json module_config(const safetensors::File& f, const std::string& path, const std::string& format,
                             const std::string& what) {
    const auto fmt = f.metadata.find("format");
    if (fmt == f.metadata.end() || fmt->second != format)
        throw Error(path + ": not a " + format + " (its metadata has no \"format\": \"" + format + "\")");
    const auto cfg = f.metadata.find("config");
    const auto j = cfg == f.metadata.end() ? nlohmann::json() : nlohmann::json::parse(cfg->second, nullptr, false);
    if (!j.is_object()) throw Error(path + ": malformed " + what + " config in its metadata");
    return j;
}

void load_module(torch::nn::Module& net, const safetensors::File& f, const std::string& path, const std::string& what) {
    std::map<std::string, const at::Tensor*> in_file;
    for (const auto& [n, t] : f.tensors) in_file[n] = &t;
    std::vector<std::string> problems;
    torch::NoGradGuard no_grad;
    for (auto& p : net.named_parameters()) {
        const auto it = in_file.find(p.key());
        if (it == in_file.end()) {
            problems.push_back("missing tensor " + p.key() + " " + shape_text(p.value().sizes()));
            continue;
        }
        if (it->second->sizes() != p.value().sizes())
            problems.push_back("tensor " + p.key() + " is " + shape_text(it->second->sizes()) + ", expected " +
                               shape_text(p.value().sizes()));
        else if (!at::isfinite(*it->second).all().item<bool>())
            problems.push_back("tensor " + p.key() + " holds NaN or Inf");
        else
            p.value().copy_(*it->second);
        in_file.erase(it);
    }
    for (const auto& [n, t] : in_file) problems.push_back("unexpected tensor " + n + " " + shape_text(t->sizes()));
    if (problems.empty()) return;
    std::string msg = path + ": not a " + what + " of its config:";
    for (size_t i = 0; i < problems.size() && i < 8; ++i) msg += "\n  " + problems[i];
    if (problems.size() > 8) msg += "\n  ... " + std::to_string(problems.size() - 8) + " more";
    throw Error(msg);
}

}  // namespace cocola::generate
