// Training CompoNet on the training core: the latent pool (training examples encoded once by the VAE, since
// encoding costs more than a denoiser step on a CPU), the epsilon-prediction objective of both stages, and the
// options as data.
#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <set>

#include "cocola/componet.hpp"
#include "cocola/data.hpp"
#include "cocola/error.hpp"
#include "cocola/rng.hpp"
#include "cocola/safetensors.hpp"
#include "generate/componet_net.hpp"
#include "generate/componet_pool.hpp"
#include "generate/generator_training.hpp"

namespace cocola::componet {
namespace {

struct VisitComponetOptions {
    template <class V>
    void operator()(ComponetTrainOptions& o, V&& v) const {
        using train::Option;
        generate::visit_generator_training(o, v);
        v(Option{"stage", {"--stage"}}, o.stage);
        v(Option{"vae", {"--vae"}}, o.vae);
        v(Option{"base", {"--base"}}, o.base);
        v(Option{"pool", {"--pool"}}, o.pool);
        v(Option{"pool_size", {"--pool-size"}}, o.pool_size);
        v(Option{"channels", {"--channels"}}, o.channels);
        v(Option{"res_blocks", {"--res-blocks"}}, o.res_blocks);
        v(Option{"prompt_dim", {"--prompt-dim"}}, o.prompt_dim);
        v(Option{"prompt_layers", {"--prompt-layers"}}, o.prompt_layers);
        v(Option{"prompt_drop", {"--prompt-drop"}}, o.prompt_drop);
        v(Option{"mix_tag", {"--mix-tag"}}, o.mix_tag);
        v(Option{"weight_decay", {"--weight-decay"}}, o.weight_decay);
        v(Option{"sources", {"--sources"}}, o.sources);
        v(Option{"prediction", {"--prediction"}}, o.prediction);
        v(Option{"init", {"--init"}}, o.init);
    }
};

const uint64_t kDraws = 0xC0B0u, kNoise = 0x0E75u;

// The modules a stage trains: stage 1 the whole net, stage 2 the adapter and the prompt encoder (the prompt's
// "in:" part first appears in stage 2); the U-Net stays frozen.
struct Trainable : torch::nn::Module {
    Trainable(ComponetNet& net, int stage) {
        if (stage == 1) {
            register_module("prompt", net.prompt);
            register_module("unet_encoder", net.encoder);
            register_module("unet_decoder", net.decoder);
        } else {
            register_module("prompt", net.prompt);
            register_module("controlnet", net.controlnet);
            for (auto& p : net.encoder->parameters()) p.set_requires_grad(false);
            for (auto& p : net.decoder->parameters()) p.set_requires_grad(false);
        }
    }
};

train::OptimizerOptions adamw(const ComponetTrainOptions& o) {
    train::OptimizerOptions oo;
    oo.kind = "adamw";
    oo.beta1 = 0.95;  // CompoNet's released settings
    oo.beta2 = 0.999;
    oo.weight_decay = o.weight_decay;
    return oo;
}

class ComponetObjective : public generate::GeneratorObjective {
   public:
    ComponetObjective(const ComponetTrainOptions& o, Componet& model, Trainable& trainable, const LatentPool& pool,
                      at::Device device)
        : GeneratorObjective(o, trainable, unused_mean_, unused_std_, adamw(o)),
          o_(o), model_(model), pool_(pool), device_(device) {}

    train::Metrics train_step(int64_t step) override {
        Rng rng(mix_seed(mix_seed(o_.seed, kDraws), static_cast<uint64_t>(step)));
        const int64_t width = o_.crop_frames / model_.config().downsampling() / pool_.downsampling;
        std::vector<at::Tensor> zs, ws;
        std::vector<Prompt> prompts;
        std::vector<int64_t> ts;
        for (int b = 0; b < o_.batch; ++b) {
            const size_t i = static_cast<size_t>(rng.range(0, static_cast<int64_t>(pool_.size()) - 1));
            const int64_t w0 = rng.range(0, pool_.width() - width);
            zs.push_back(pool_.out_latents[static_cast<int64_t>(i)].slice(2, w0, w0 + width));
            if (o_.stage == 2) ws.push_back(pool_.in_latents[static_cast<int64_t>(i)].slice(2, w0, w0 + width));
            prompts.push_back(training_prompt(pool_.items[i], rng));
            ts.push_back(rng.range(0, model_.config().diffusion_steps - 1));
        }
        const at::Tensor z0 = at::stack(zs).to(at::kFloat).to(device_);
        at::Generator gen = at::detail::createCPUGenerator(mix_seed(mix_seed(o_.seed, kNoise), static_cast<uint64_t>(step)));
        const at::Tensor noise = at::randn(z0.sizes(), gen, at::kFloat).to(device_);
        model_.net().train();
        const at::Tensor loss = denoising_loss(z0, ws.empty() ? at::Tensor() : at::stack(ws).to(at::kFloat).to(device_),
                                               prompts, ts, noise);
        train::Metrics row;
        update(loss, step, row);
        row["loss"] = loss.item<double>();
        return row;
    }

    void validate(int64_t step, train::Metrics& row) override {
        if (pool_.val_size() == 0) return;
        torch::NoGradGuard no_grad;
        with_model_weights([&] {
            model_.net().eval();
            const int64_t n = static_cast<int64_t>(pool_.val_size());
            at::Generator gen = at::detail::createCPUGenerator(0x7A1u);
            const at::Tensor noise_all = at::randn(pool_.val_out.sizes(), gen, at::kFloat);
            double total = 0;
            for (int64_t i = 0; i < n; i += 4) {
                const int64_t e = std::min(n, i + 4);
                std::vector<Prompt> prompts;
                std::vector<int64_t> ts;
                for (int64_t k = i; k < e; ++k) {
                    const auto& item = pool_.val_items[static_cast<size_t>(k)];
                    prompts.push_back(model_.config().is_msdm() ? Prompt{}
                                      : o_.stage == 1            ? Prompt{{}, item.out}
                                                                 : Prompt{item.in, item.out});
                    // timesteps spread evenly over the schedule, the same at every validation
                    ts.push_back((2 * k + 1) * model_.config().diffusion_steps / (2 * n));
                }
                const at::Tensor loss =
                    denoising_loss(pool_.val_out.slice(0, i, e).to(at::kFloat).to(device_),
                                   o_.stage == 2 ? pool_.val_in.slice(0, i, e).to(at::kFloat).to(device_) : at::Tensor(),
                                   prompts, ts, noise_all.slice(0, i, e).to(device_));
                total += loss.item<double>() * static_cast<double>(e - i);
            }
            model_.net().train();
            const double v = total / static_cast<double>(n);
            row["val_loss"] = v;
            if (improved(v))
                model_.save(o_.run_dir + "/best.safetensors", {{"step", std::to_string(step)},
                                                               {"val_loss", std::to_string(v)},
                                                               {"trained_by", trained_by()}});
        });
    }

    void write_models(const train::RunFolder& run, int64_t step) override {
        with_model_weights([&] {
            model_.save(run.path("last.safetensors"), {{"step", std::to_string(step)}, {"trained_by", trained_by()}});
        });
    }

   private:
    std::string trained_by() const { return model_.config().is_msdm() ? "cocola msdm train" : "cocola componet train"; }
    Prompt training_prompt(const PoolItem& item, Rng& rng) const {
        if (rng.chance(o_.prompt_drop) || model_.config().is_msdm()) return {};  // MSDM is unconditional
        if (o_.stage == 1) return {{}, item.out};
        if (rng.chance(o_.mix_tag)) return {{Tag{"mix", 0}}, item.out};
        return {item.in, item.out};
    }

    at::Tensor denoising_loss(const at::Tensor& z0, const at::Tensor& w, const std::vector<Prompt>& prompts,
                              const std::vector<int64_t>& ts, const at::Tensor& noise) {
        const auto acp = model_.alphas_cumprod();
        const at::Tensor t = at::tensor(ts, at::kLong);
        const at::Tensor a = acp.index_select(0, t).to(at::kFloat).to(device_).view({-1, 1, 1, 1});
        const at::Tensor x_t = a.sqrt() * z0 + (1 - a).sqrt() * noise;
        at::Tensor tokens, mask;
        model_.tokenize(prompts, tokens, mask);
        const at::Tensor out = model_.predict(x_t, t.to(device_), tokens, mask, w);
        return at::mse_loss(out, model_.prediction_target(z0, noise, t.to(device_)));
    }

    const ComponetTrainOptions& o_;
    Componet& model_;
    const LatentPool& pool_;
    at::Device device_;
    double unused_mean_ = 0, unused_std_ = 1;  // latents need no spectrogram normalisation
};

const std::vector<std::string> kLogColumns = {"step", "loss", "grad_norm", "lr", "val_loss", "step_seconds"};

std::vector<std::string> vocabulary_for(const std::vector<std::unique_ptr<data::StemCache>>& caches) {
    std::vector<std::string> vocab = builtin_tags();
    std::set<std::string> known(vocab.begin(), vocab.end());
    std::set<std::string> extra;
    for (const auto& c : caches)
        for (size_t t = 0; t < c->size(); ++t)
            for (const auto& s : c->track(t).stems) {
                const std::string tag = canonical_tag(s.cls);
                if (!tag.empty() && !known.count(tag)) extra.insert(tag);
            }
    vocab.insert(vocab.end(), extra.begin(), extra.end());
    return vocab;
}

// --init: the trained modules' weights from another model of the same architecture (stage 1: the prompt encoder and
// the U-Net, so a stage-2 file serves too; stage 2: the adapter). The prediction may differ: that is the point.
void start_from(Componet& model, const std::string& path, int stage) {
    const Componet init = Componet::load(path);
    const ComponetConfig &c = model.config(), &i = init.config();
    if (i.vocabulary != c.vocabulary || i.sources != c.sources || i.latent_channels != c.latent_channels)
        throw Error(path + ": --init must have this model's vocabulary, sources and latent channels");
    if (stage == 2 && !i.controlnet) throw Error(path + ": --init in stage 2 needs a model with a ControlNet adapter");
    std::map<std::string, at::Tensor> from;
    for (const auto& p : init.net().named_parameters()) from[p.key()] = p.value();
    std::vector<std::string> problems;
    torch::NoGradGuard no_grad;
    for (auto& p : model.net().named_parameters()) {
        const bool adapter = p.key().rfind("controlnet.", 0) == 0;
        if (adapter != (stage == 2)) continue;
        const auto it = from.find(p.key());
        if (it == from.end() || it->second.sizes() != p.value().sizes())
            problems.push_back(p.key() + (it == from.end() ? " is missing" : " has another shape"));
        else
            p.value().copy_(it->second.to(p.value().device(), p.value().scalar_type()));
    }
    if (!problems.empty()) throw Error(path + ": --init is not of this architecture (" + problems.front() + ", " +
                                       std::to_string(problems.size()) + " tensors in all)");
}

// MSDM's sources as canonical tags, distinct, at least two; only stage 1.
void check_sources(ComponetTrainOptions& o) {
    if (o.sources.empty()) return;
    if (o.stage != 1) throw Error("an MSDM model is trained in one stage (no ControlNet adapter)");
    std::set<std::string> seen;
    for (auto& s : o.sources) {
        const std::string tag = canonical_tag(s);
        if (tag.empty() || !seen.insert(tag).second) throw Error("--sources: \"" + s + "\" is empty or repeated");
        s = tag;
    }
    if (o.sources.size() < 2) throw Error("--sources: an MSDM model needs at least two sources");
}

}  // namespace

ComponetTrainOptions read_componet_run_options(const std::string& run_dir) {
    return generate::read_generator_options<ComponetTrainOptions>(run_dir, VisitComponetOptions{});
}

std::vector<std::string> componet_fixed_on_resume_flags() {
    return train::option_flags<ComponetTrainOptions>(VisitComponetOptions{}, false);
}

void apply_componet_resumable_options(const ComponetTrainOptions& given, ComponetTrainOptions& run,
                                      const std::function<bool(const std::string&)>& was_given) {
    train::apply_resumable(given, run, VisitComponetOptions{}, was_given);
}

std::string default_pool_path(const ComponetTrainOptions& o) {
    return o.pool.empty() ? (std::filesystem::path(o.run_dir) / "pool.safetensors").string() : o.pool;
}

void prepare_latent_pool(ComponetTrainOptions o, const std::function<void(size_t, size_t)>& progress) {
    check_sources(o);
    if (o.vae.empty()) throw Error("--vae is required (the VAE whose latents are denoised)");
    if (std::filesystem::exists(default_pool_path(o))) return;
    const generate::Vae vae = generate::Vae::load(o.vae);
    std::vector<std::unique_ptr<data::StemCache>> caches;
    for (const auto& dir : o.caches) caches.push_back(std::make_unique<data::StemCache>(dir));
    open_latent_pool(default_pool_path(o), o, vae, caches, progress);
}

void train_componet(ComponetTrainOptions o, bool resume, const train::RowCallback& on_row, const std::function<bool()>& stop) {
    if (o.stage != 1 && o.stage != 2) throw Error("--stage must be 1 or 2");
    if (o.vae.empty()) throw Error("--vae is required (the VAE whose latents are denoised)");
    if (o.stage == 2 && o.base.empty()) throw Error("--stage 2 needs --base, the stage-1 model file");
    check_sources(o);
    if (!o.prediction.empty() && o.prediction != "epsilon" && o.prediction != "v")
        throw Error("--prediction must be epsilon or v, not \"" + o.prediction + "\"");
    if (!(o.prompt_drop >= 0 && o.prompt_drop < 1) || !(o.mix_tag >= 0 && o.mix_tag <= 1))
        throw Error("--prompt-drop must be in [0, 1) and --mix-tag in [0, 1]");
    const generate::Vae vae = generate::Vae::load(o.vae);
    const generate::GeneratorRun run(o, resume, vae.config().downsampling() * (1 << (static_cast<int>(o.channels.size()) - 1)), kDraws);
    if (o.crop_frames > generate::kChunkFrames) throw Error("--crop-frames must be at most 512 (a 5.12 s chunk)");

    std::unique_ptr<Componet> model;
    if (o.stage == 1) {
        ComponetConfig c;
        c.latent_channels = vae.config().latent_channels * std::max<int>(1, static_cast<int>(o.sources.size()));
        c.sources = o.sources;
        c.channels = o.channels;
        c.res_blocks = o.res_blocks;
        c.prompt_dim = o.prompt_dim;
        c.prompt_layers = o.prompt_layers;
        c.vocabulary = vocabulary_for(run.caches);
        c.vae = vae_identity(vae);
        c.prediction = o.prediction.empty() ? "epsilon" : o.prediction;
        model = std::make_unique<Componet>(c, mix_seed(o.seed, 0xC0DEu));
    } else {
        model = std::make_unique<Componet>(Componet::load(o.base));
        if (model->config().controlnet) throw Error(o.base + ": already has a ControlNet adapter (give a stage-1 model)");
        if (model->config().latent_channels != vae.config().latent_channels)
            throw Error(o.base + ": its latents have " + std::to_string(model->config().latent_channels) + " channels, the VAE's " +
                        std::to_string(vae.config().latent_channels));
        if (!o.prediction.empty() && o.prediction != model->config().prediction)
            throw Error("--prediction " + o.prediction + ": stage 2 keeps its base's (" + o.base + " predicts " +
                        model->config().prediction + ")");
        torch::manual_seed(mix_seed(o.seed, 0xC7A1u));
        model->add_controlnet();
    }
    if (!o.init.empty() && !resume) start_from(*model, o.init, o.stage);
    if (o.crop_frames % (vae.config().downsampling() * model->config().downsampling()))
        throw Error("--crop-frames must be a multiple of " + std::to_string(vae.config().downsampling() * model->config().downsampling()));
    model->to(run.device);
    const LatentPool pool = open_latent_pool(default_pool_path(o), o, vae, run.caches, {});
    Trainable trainable(model->net(), o.stage);
    ComponetObjective objective(o, *model, trainable, pool, run.device);
    generate::run_generator(objective, run, o, resume, train::options_to_json(o, VisitComponetOptions{}), kLogColumns,
                            "cocola componet training checkpoint", on_row, stop);
    const std::string log = run.folder.path("log.csv");
    const auto loss = train::read_log_column(log, "loss");
    train::write_panels_svg({{model->config().prediction == "v" ? "denoising loss (MSE of the predicted v)" : "denoising loss (MSE of the predicted noise)",
                              {{"training (moving average)", "#1f77b4", train::smooth(loss, std::max<size_t>(1, loss.size() / 50))},
                               {"validation (fixed noise and timesteps)", "#d62728", train::read_log_column(log, "val_loss"), true}},
                              0,
                              -1}},
                            run.folder.path("curves.svg"),
                            o.sources.empty() ? "cocola componet train, stage " + std::to_string(o.stage) : std::string("cocola msdm train"));
}

}  // namespace cocola::componet
