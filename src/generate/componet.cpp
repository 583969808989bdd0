// CompoNet: the model file, tokens, the noise prediction, DDIM sampling with classifier-free guidance, and audio
// generation chunk by chunk (componet.hpp).
#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "cocola/componet.hpp"
#include "cocola/error.hpp"
#include "cocola/features.hpp"
#include "cocola/safetensors.hpp"
#include "cocola/score.hpp"
#include "generate/componet_net.hpp"
#include "model/cocola_net.hpp"
#include "generate/generator_training.hpp"

namespace cocola::componet {

namespace {
const char* kFormat = "cocola componet";
}

nlohmann::json config_to_json(const ComponetConfig& c) {
    return {{"latent_channels", c.latent_channels},   {"channels", c.channels},
            {"res_blocks", c.res_blocks},             {"cross_attention_from", c.cross_attention_from},
            {"head_channels", c.head_channels},       {"prompt_dim", c.prompt_dim},
            {"prompt_layers", c.prompt_layers},       {"max_prompt_tokens", c.max_prompt_tokens},
            {"diffusion_steps", c.diffusion_steps},   {"beta_start", c.beta_start},
            {"beta_end", c.beta_end},                 {"controlnet", c.controlnet},
            {"vocabulary", c.vocabulary},             {"vae", c.vae},
            {"sources", c.sources},                   {"prediction", c.prediction}};
}

ComponetConfig config_from_json(const nlohmann::json& j) {
    ComponetConfig c;
    c.latent_channels = j.at("latent_channels").get<int>();
    c.channels = j.at("channels").get<std::vector<int>>();
    c.res_blocks = j.at("res_blocks").get<int>();
    c.cross_attention_from = j.at("cross_attention_from").get<int>();
    c.head_channels = j.at("head_channels").get<int>();
    c.prompt_dim = j.at("prompt_dim").get<int>();
    c.prompt_layers = j.at("prompt_layers").get<int>();
    c.max_prompt_tokens = j.at("max_prompt_tokens").get<int>();
    c.diffusion_steps = j.at("diffusion_steps").get<int>();
    c.beta_start = j.at("beta_start").get<double>();
    c.beta_end = j.at("beta_end").get<double>();
    c.controlnet = j.at("controlnet").get<bool>();
    c.vocabulary = j.at("vocabulary").get<std::vector<std::string>>();
    c.vae = j.value("vae", nlohmann::json::object());
    c.sources = j.value("sources", std::vector<std::string>{});
    c.prediction = j.value("prediction", std::string("epsilon"));
    if (c.prediction != "epsilon" && c.prediction != "v") throw Error("prediction must be \"epsilon\" or \"v\", not \"" + c.prediction + "\"");
    if (c.is_msdm() && c.controlnet) throw Error("an MSDM model has no ControlNet adapter");
    if (c.channels.empty() || c.latent_channels < 1 || c.res_blocks < 1 || c.prompt_dim < 1 || c.diffusion_steps < 2 ||
        c.max_prompt_tokens < 2 || !(c.beta_start > 0 && c.beta_end < 1 && c.beta_start <= c.beta_end))
        throw Error("implausible CompoNet config");
    for (int ch : c.channels)
        if (ch < 1) throw Error("implausible CompoNet channels");
    return c;
}

struct Componet::Impl {
    ComponetConfig config;
    std::shared_ptr<ComponetNet> net;
    at::Tensor alphas_cumprod;
    std::map<std::string, int64_t> ids;
    void index() {
        ids.clear();
        for (size_t i = 0; i < config.vocabulary.size(); ++i) ids[config.vocabulary[i]] = static_cast<int64_t>(i) + 3;
        const at::Tensor betas =
            at::linspace(std::sqrt(config.beta_start), std::sqrt(config.beta_end), config.diffusion_steps, at::kDouble).pow(2);
        alphas_cumprod = at::cumprod(1 - betas, 0);
    }
};

Componet::Componet(const ComponetConfig& config, uint64_t seed) : impl_(std::make_unique<Impl>()) {
    impl_->config = config;
    if (impl_->config.vocabulary.empty()) impl_->config.vocabulary = builtin_tags();
    torch::manual_seed(seed);
    impl_->net = std::make_shared<ComponetNet>(impl_->config);
    impl_->index();
}
Componet::~Componet() = default;
Componet::Componet(Componet&&) noexcept = default;
Componet& Componet::operator=(Componet&&) noexcept = default;

const ComponetConfig& Componet::config() const { return impl_->config; }
ComponetNet& Componet::net() { return *impl_->net; }
const ComponetNet& Componet::net() const { return *impl_->net; }
const at::Tensor& Componet::alphas_cumprod() const { return impl_->alphas_cumprod; }
void Componet::to(const at::Device& d) { impl_->net->to(d); }
at::Device Componet::device() const { return impl_->net->prompt->token->weight.device(); }

int64_t Componet::parameter_count() const {
    int64_t n = 0;
    for (const auto& p : impl_->net->parameters()) n += p.numel();
    return n;
}

void Componet::add_controlnet() {
    impl_->config.controlnet = true;
    impl_->net->add_controlnet(impl_->config);
}

Componet Componet::load(const std::string& path) {
    const safetensors::File f = safetensors::load(path);
    const nlohmann::json j = generate::module_config(f, path, kFormat, "CompoNet");
    ComponetConfig c;
    try {
        c = config_from_json(j);
    } catch (const std::exception& e) {
        throw Error(path + ": malformed CompoNet config (" + e.what() + ")");
    }
    Componet m(c);
    generate::load_module(*m.impl_->net, f, path, "CompoNet");
    return m;
}

void Componet::save(const std::string& path, const std::map<std::string, std::string>& extra, bool half) const {
    generate::save_module(*impl_->net, path, kFormat, config_to_json(impl_->config), extra, half);
}

void Componet::tokenize(const std::vector<Prompt>& prompts, at::Tensor& tokens, at::Tensor& mask) const {
    std::vector<std::vector<std::array<int64_t, 3>>> seqs;
    size_t longest = 1;
    for (const auto& p : prompts) {
        std::vector<std::array<int64_t, 3>> s;
        auto add = [&](const std::vector<Tag>& tags, int64_t section) {
            s.push_back({section == 0 ? 1 : 2, 0, section});
            for (const auto& t : tags) {
                const auto it = impl_->ids.find(t.name);
                if (it == impl_->ids.end()) throw Error("tag \"" + t.name + "\" is not in this CompoNet's vocabulary");
                s.push_back({it->second, std::min<int64_t>(t.number, 9), section});
            }
        };
        if (p.empty()) s.push_back({0, 0, 2});
        else {
            if (!p.in.empty()) add(p.in, 0);
            add(p.out, 1);
        }
        if (s.size() > static_cast<size_t>(impl_->config.max_prompt_tokens))
            throw Error("prompt \"" + format_prompt(p) + "\" has more than " + std::to_string(impl_->config.max_prompt_tokens - 2) + " tags");
        longest = std::max(longest, s.size());
        seqs.push_back(std::move(s));
    }
    const int64_t B = static_cast<int64_t>(prompts.size()), S = static_cast<int64_t>(longest);
    tokens = at::zeros({B, S, 3}, at::kLong);
    mask = at::zeros({B, S}, at::kBool);
    auto tk = tokens.accessor<int64_t, 3>();
    auto mk = mask.accessor<bool, 2>();
    for (int64_t b = 0; b < B; ++b)
        for (size_t i = 0; i < seqs[static_cast<size_t>(b)].size(); ++i) {
            for (int k = 0; k < 3; ++k) tk[b][static_cast<int64_t>(i)][k] = seqs[static_cast<size_t>(b)][i][static_cast<size_t>(k)];
            mk[b][static_cast<int64_t>(i)] = true;
        }
    tokens = tokens.to(device());
    mask = mask.to(device());
}

at::Tensor Componet::predict(const at::Tensor& x_t, const at::Tensor& t, const at::Tensor& tokens, const at::Tensor& mask,
                             const at::Tensor& control) {
    return impl_->net->forward(x_t, t, tokens, mask, control);
}

namespace {
// sqrt(alpha_bar(t)) and sqrt(1 - alpha_bar(t)) as [B, 1, 1, 1] on `like`'s device and dtype.
std::pair<at::Tensor, at::Tensor> noise_levels(const at::Tensor& alphas_cumprod, const at::Tensor& t, const at::Tensor& like) {
    const at::Tensor a = alphas_cumprod.index_select(0, t.to(at::kCPU, at::kLong)).to(like.device(), like.scalar_type()).view({-1, 1, 1, 1});
    return {a.sqrt(), (1 - a).sqrt()};
}
}  // namespace

at::Tensor Componet::predict_noise(const at::Tensor& x_t, const at::Tensor& t, const at::Tensor& tokens, const at::Tensor& mask,
                                   const at::Tensor& control) {
    const at::Tensor out = predict(x_t, t, tokens, mask, control);
    if (impl_->config.prediction == "epsilon") return out;
    // v = sqrt(a) eps - sqrt(1 - a) x0 and x_t = sqrt(a) x0 + sqrt(1 - a) eps give eps = sqrt(a) v + sqrt(1 - a) x_t.
    const auto [sa, s1a] = noise_levels(impl_->alphas_cumprod, t, x_t);
    return sa * out + s1a * x_t;
}

at::Tensor Componet::prediction_target(const at::Tensor& z0, const at::Tensor& noise, const at::Tensor& t) const {
    if (impl_->config.prediction == "epsilon") return noise;
    const auto [sa, s1a] = noise_levels(impl_->alphas_cumprod, t, z0);
    return sa * noise - s1a * z0;
}

// ---------------------------------------------------------------- DDIM
at::Tensor inpaint(const at::Tensor& x, const Inpainting& in, double alpha_bar, at::Generator& gen) {
    if (!in.active()) return x;
    const at::Tensor noise = at::randn(x.sizes(), gen, at::kFloat).to(x.device());
    const at::Tensor noised = std::sqrt(alpha_bar) * in.known.to(x.device()).expand_as(x) + std::sqrt(1 - alpha_bar) * noise;
    const at::Tensor m = in.mask.to(x.device(), at::kFloat);
    return m * noised + (1 - m) * x;
}

at::Tensor guide_embedding(model::Model& guide, const std::vector<float>& chunk) {
    if (guide.config().frontend != features::Frontend::Mel)
        throw Error("the COCOLA guide must read the mel front-end (it is given the VAE decoder's spectrogram); this one reads " +
                    features::frontend_name(guide.config().frontend));
    torch::NoGradGuard no_grad;
    const at::Tensor mel = generate::mel_spectrogram(chunk.data(), chunk.size());  // [64, T]
    guide.net().eval();
    return guide.net().embed(mel.unsqueeze(0).unsqueeze(0).to(guide.device())).detach();
}

at::Tensor guidance_gradient(const CocolaGuidance& g, const at::Tensor& clean_latents, at::Tensor* scores) {
    torch::AutoGradMode grad_mode(true);
    at::Tensor z = clean_latents.detach().clone().set_requires_grad(true);
    if (g.views < 1 || g.views > 64) throw Error("COCOLA guidance: views must be between 1 and 64");
    const at::Tensor decoded = g.vae->decode(z, /*with_grad=*/true);  // [B, 64, T] dB
    const int64_t batch = decoded.size(0), frames = decoded.size(2);
    const at::Tensor e = g.input_embedding.to(g.guide->device());
    g.guide->net().eval();
    const at::Tensor whole = decoded.clamp(generate::kMelFloorDb, generate::kMelCeilingDb);
    at::Tensor s = g.guide->net().similarity(e, g.guide->net().embed(whole.unsqueeze(1).to(g.guide->device()))).squeeze(0);  // [B]
    if (g.views > 1) {
        // Fixed views (deterministic): crops 64 frames shorter at starts spread over the 64 frames, gains cycling
        // 0, +4, -4, +2, -2 dB; view 0 is the spectrogram itself. The crops have one length and batch together.
        static const double kGainDb[] = {0, 4, -4, 2, -2};
        const int64_t crop = std::max<int64_t>(frames - 64, frames / 2);
        std::vector<at::Tensor> cropped;
        for (int k = 1; k < g.views; ++k) {
            const int64_t start = (static_cast<int64_t>(k - 1) * 37) % (frames - crop + 1);
            cropped.push_back((decoded.slice(2, start, start + crop) + kGainDb[k % 5]).clamp(generate::kMelFloorDb, generate::kMelCeilingDb));
        }
        const at::Tensor views = at::cat(cropped).unsqueeze(1).to(g.guide->device());  // [(V-1) B, 1, 64, crop]
        const at::Tensor sv = g.guide->net().similarity(e, g.guide->net().embed(views)).view({g.views - 1, batch});
        s = (s + sv.sum(0)) / static_cast<double>(g.views);
    }
    if (scores) *scores = s.detach().cpu();
    return torch::autograd::grad({s.sum()}, {z})[0].detach();
}

at::Tensor sample(Componet& model, const Prompt& prompt, const at::Tensor& control, int64_t batch, int64_t height,
                  int64_t width, const SampleOptions& o, const StepProgress& progress, const Inpainting& inpainting,
                  const CocolaGuidance& guidance) {
    const ComponetConfig& c = model.config();
    if (o.steps < 1 || o.steps > c.diffusion_steps)
        throw Error("--steps must be between 1 and " + std::to_string(c.diffusion_steps));
    if (!(o.eta >= 0) || !(o.guidance >= 0)) throw Error("--eta and --guidance must be >= 0");
    if (control.defined() && !c.controlnet) throw Error("this CompoNet has no ControlNet adapter (a stage-1 model): it cannot read an input");
    torch::NoGradGuard no_grad;
    model.net().eval();
    const at::Device dev = model.device();
    at::Generator gen = at::detail::createCPUGenerator(o.seed);
    at::Tensor x = at::randn({batch, c.latent_channels, height, width}, gen, at::kFloat).to(dev);
    const bool guided = o.guidance != 1.0;
    at::Tensor tokens, mask;
    model.tokenize(guided ? std::vector<Prompt>{prompt, Prompt{}} : std::vector<Prompt>{prompt}, tokens, mask);
    // Rows 0..B-1 conditional, B..2B-1 unconditional.
    const at::Tensor rows = at::cat({at::zeros({batch}, at::kLong), at::ones({batch}, at::kLong)}).slice(0, 0, guided ? 2 * batch : batch).to(dev);
    const at::Tensor tok = tokens.index_select(0, rows), msk = mask.index_select(0, rows);
    at::Tensor ctrl;
    if (control.defined()) {
        ctrl = control.to(dev);
        if (ctrl.size(0) == 1 && batch > 1) ctrl = ctrl.expand({batch, -1, -1, -1});
        if (guided) ctrl = at::cat({ctrl, ctrl});
    }
    const auto acp = model.alphas_cumprod().accessor<double, 1>();
    std::vector<int64_t> ts;
    for (int i = 0; i < o.steps; ++i) ts.push_back(static_cast<int64_t>(i) * c.diffusion_steps / o.steps);
    if (inpainting.active()) {
        if (inpainting.known.dim() != 4 || inpainting.known.size(1) != c.latent_channels || inpainting.mask.numel() != c.latent_channels)
            throw Error("inpainting: known latents and mask must have the model's " + std::to_string(c.latent_channels) + " channels");
        x = inpaint(x, inpainting, acp[ts.back()], gen);
    }
    for (int i = o.steps - 1; i >= 0; --i) {
        const int64_t t = ts[static_cast<size_t>(i)];
        const double a_t = acp[t], a_prev = i > 0 ? acp[ts[static_cast<size_t>(i) - 1]] : 1.0;
        const at::Tensor xin = guided ? at::cat({x, x}) : x;
        const at::Tensor tt = at::full({xin.size(0)}, t, at::TensorOptions(at::kLong).device(dev));
        at::Tensor eps = model.predict_noise(xin, tt, tok, msk, ctrl);
        if (guided) {
            const auto parts = eps.chunk(2);
            eps = parts[1] + o.guidance * (parts[0] - parts[1]);
        }
        if (guidance.active()) {
            // d score / d x_t = (1 / sqrt(a_t)) d score / d x0 with the prediction held fixed; normalised per sample
            // so that `scale` is in units of the noise's own size.
            const at::Tensor g = guidance_gradient(guidance, (x - std::sqrt(1 - a_t) * eps) / std::sqrt(a_t)).to(dev);
            const at::Tensor rms = g.pow(2).mean({1, 2, 3}, true).sqrt().clamp_min(1e-12);
            eps = eps - guidance.scale * std::sqrt(1 - a_t) * g / rms;
        }
        const at::Tensor x0 = (x - std::sqrt(1 - a_t) * eps) / std::sqrt(a_t);
        const double sigma = o.eta * std::sqrt((1 - a_prev) / (1 - a_t)) * std::sqrt(std::max(0.0, 1 - a_t / a_prev));
        x = std::sqrt(a_prev) * x0 + std::sqrt(std::max(0.0, 1 - a_prev - sigma * sigma)) * eps;
        if (sigma > 0) x = x + sigma * at::randn(x.sizes(), gen, at::kFloat).to(dev);
        // The known sources at the next step's noise level (exactly themselves after the last step).
        if (inpainting.active()) x = inpaint(x, inpainting, a_prev, gen);
        if (progress) progress(o.steps - i, o.steps);
    }
    return x;
}

// ---------------------------------------------------------------- chunks and joins
std::vector<int64_t> chunk_starts(int64_t n, int64_t chunk, int64_t overlap) {
    if (chunk < 1 || overlap < 0 || overlap >= chunk) throw Error("chunk_starts: bad chunk or overlap");
    std::vector<int64_t> starts{0};
    while (starts.back() + chunk < n) starts.push_back(starts.back() + chunk - overlap);
    return starts;
}

namespace {
double rms(const std::vector<float>& x) {
    double sum = 0;
    for (float v : x) sum += static_cast<double>(v) * v;
    return x.empty() ? 0.0 : std::sqrt(sum / static_cast<double>(x.size()));
}

float peak(const std::vector<float>& x) {
    float p = 0.f;
    for (float v : x) p = std::max(p, std::abs(v));
    return p;
}

constexpr float kPeakCeiling = 0.99f;  // what level matching and the full-scale guard leave as the highest sample

}  // namespace

double match_level(std::vector<float>& audio, const std::vector<float>& reference, double max_gain_db) {
    const double level = rms(audio), target = rms(reference);
    constexpr double kSilent = 1e-6;  // -120 dBFS: nothing to match, or nothing to match to
    if (level < kSilent || target < kSilent) return 0.0;
    double gain_db = std::clamp(20.0 * std::log10(target / level), -max_gain_db, max_gain_db);
    gain_db = std::min(gain_db, 20.0 * std::log10(static_cast<double>(kPeakCeiling) / peak(audio)));
    const float gain = static_cast<float>(std::pow(10.0, gain_db / 20.0));
    for (float& v : audio) v *= gain;
    return gain_db;
}

double limit_peak(std::vector<float>& audio) {
    const float highest = peak(audio);
    if (!(highest > kPeakCeiling)) return 0.0;
    const float gain = kPeakCeiling / highest;
    for (float& v : audio) v *= gain;
    return 20.0 * std::log10(static_cast<double>(gain));
}

std::string resolve_level(const std::string& level, const Prompt& prompt) {
    if (level != "auto") return level;
    // Described input stems all of which the output keeps or drops, and no new stem: a part of the input.
    const bool described = !prompt.in.empty() && !(prompt.in.size() == 1 && prompt.in[0].name == "mix");
    bool all_from_input = described && !prompt.out.empty();
    for (const auto& t : prompt.out)
        all_from_input &= std::find(prompt.in.begin(), prompt.in.end(), t) != prompt.in.end();
    return all_from_input && prompt.out.size() < prompt.in.size() ? "keep" : "input";
}

std::vector<float> join_chunks(const std::vector<std::vector<float>>& chunks, const std::vector<int64_t>& starts, int64_t n) {
    std::vector<double> sum(static_cast<size_t>(n), 0.0), weight(static_cast<size_t>(n), 0.0);
    for (size_t k = 0; k < chunks.size(); ++k) {
        const int64_t s = starts[k], len = static_cast<int64_t>(chunks[k].size());
        // raised-cosine ramps over the overlaps with the neighbours (weights of neighbours sum to 1 there)
        const int64_t up = k > 0 ? std::max<int64_t>(0, starts[k - 1] + static_cast<int64_t>(chunks[k - 1].size()) - s) : 0;
        const int64_t down = k + 1 < chunks.size() ? std::max<int64_t>(0, s + len - starts[k + 1]) : 0;
        for (int64_t i = 0; i < len && s + i < n; ++i) {
            double w = 1;
            if (i < up) w *= 0.5 - 0.5 * std::cos(M_PI * (static_cast<double>(i) + 0.5) / static_cast<double>(up));
            if (i >= len - down) w *= 0.5 + 0.5 * std::cos(M_PI * (static_cast<double>(i - (len - down)) + 0.5) / static_cast<double>(down));
            sum[static_cast<size_t>(s + i)] += w * chunks[k][static_cast<size_t>(i)];
            weight[static_cast<size_t>(s + i)] += w;
        }
    }
    std::vector<float> out(static_cast<size_t>(n), 0.f);
    for (size_t i = 0; i < out.size(); ++i) out[i] = weight[i] > 0 ? static_cast<float>(sum[i] / weight[i]) : 0.f;
    return out;
}

// ---------------------------------------------------------------- audio
namespace {

void check_options(const GenerateOptions& o, const model::Model* judge) {
    if (o.candidates < 1) throw Error("--candidates must be at least 1");
    if (o.select != "cocola" && o.select != "guide" && o.select != "norm") throw Error("--select must be cocola, guide or norm");
    if (o.select == "cocola" && o.candidates > 1 && !judge) throw Error("--select cocola needs a COCOLA model");
    if (o.select == "guide" && o.candidates > 1 && !o.guide) throw Error("--select guide needs a guide (--guide-model)");
    if (o.level != "input" && o.level != "keep" && o.level != "auto")
        throw Error("--level must be input, keep or auto, not \"" + o.level + "\"");
}

// The model whose score picks among candidates: the guide for "guide", the judge otherwise (unused for "norm").
const model::Model* candidate_picker(const GenerateOptions& o, const model::Model* judge) {
    return o.select == "guide" ? o.guide : judge;
}

void check_vae(const Componet& model, const generate::Vae& vae) {
    const ComponetConfig& c = model.config();
    if (!c.vae.empty() && c.vae.contains("scale_factor")) {
        const double sf = c.vae.at("scale_factor").get<double>();
        if (std::abs(sf - vae.config().scale_factor) > 1e-6 * std::max(1.0, std::abs(sf)))
            throw Error("this model was trained on the latents of another VAE (scale factor " + std::to_string(sf) +
                        ", the VAE given has " + std::to_string(vae.config().scale_factor) + ")");
    }
}

int64_t overlap_samples(const GenerateOptions& o) {
    return std::clamp<int64_t>(static_cast<int64_t>(std::llround(o.overlap_seconds * 16000 / generate::kHopSamples)) * generate::kHopSamples,
                               0, generate::kChunkSamples / 2);
}

std::vector<float> latent_to_audio(const generate::Vae& vae, const generate::Vocoder* vocoder, const at::Tensor& z) {
    const at::Tensor mel = generate::decode_to_mel(vae, z);
    std::vector<float> a = vocoder ? vocoder->vocode(mel) : generate::griffin_lim(mel);
    a.resize(static_cast<size_t>(generate::kChunkSamples), 0.f);
    return a;
}

// The candidate kept for one chunk: the highest COCOLA score against `reference` or the highest L2 norm; the
// kept one's COCOLA score is appended to `scores` when there is a judge.
size_t pick_candidate(const std::vector<std::vector<float>>& cands, const std::vector<float>& reference, const model::Model* judge,
                      const std::string& select, std::vector<double>& scores_out) {
    std::vector<double> scores(cands.size(), 0.0);
    if (judge) {
        std::vector<std::vector<float>> clips{reference};
        clips.insert(clips.end(), cands.begin(), cands.end());
        const auto emb = eval::embed_clips(*judge, clips, eval::ScoreOptions{});
        for (const auto& e : emb)
            if (!e.error.empty()) throw Error("scoring a generated chunk: " + e.error);
        for (size_t i = 0; i < cands.size(); ++i)
            scores[i] = judge->similarity_matrix(emb[0].embeddings.slice(0, 0, 1), emb[i + 1].embeddings.slice(0, 0, 1)).item<double>();
    }
    size_t best = 0;
    double best_value = 0;
    for (size_t i = 0; i < cands.size(); ++i) {
        double v = scores[i];
        if (select == "norm") {
            v = 0;
            for (float x : cands[i]) v += static_cast<double>(x) * x;
        }
        if (i == 0 || v > best_value) best = i, best_value = v;
    }
    if (judge) scores_out.push_back(scores[best]);
    return best;
}

std::vector<float> chunk_of(const std::vector<float>& audio, int64_t start) {
    std::vector<float> c(static_cast<size_t>(generate::kChunkSamples), 0.f);
    const int64_t len = std::min<int64_t>(generate::kChunkSamples, static_cast<int64_t>(audio.size()) - start);
    if (len > 0) std::copy(audio.begin() + start, audio.begin() + start + len, c.begin());
    return c;
}

}  // namespace

Generated generate_audio(Componet& model, const generate::Vae& vae, const generate::Vocoder* vocoder,
                         const model::Model* judge, const std::vector<float>& input, const Prompt& prompt,
                         const GenerateOptions& o, const std::function<void(size_t, size_t)>& progress) {
    using generate::kChunkSamples;
    if (input.empty()) throw Error("the input audio is empty");
    if (model.config().is_msdm()) throw Error("this is an MSDM model: it generates by inpainting given sources (generate_msdm_audio)");
    check_options(o, judge);
    check_vae(model, vae);
    const ComponetConfig& c = model.config();
    const int64_t n = static_cast<int64_t>(input.size());
    const auto starts = chunk_starts(n, kChunkSamples, overlap_samples(o));
    std::vector<std::vector<float>> chunks;
    Generated g;
    for (size_t k = 0; k < starts.size(); ++k) {
        const std::vector<float> in_chunk = chunk_of(input, starts[k]);
        at::Tensor control;
        if (c.controlnet) control = generate::encode_audio(vae, in_chunk);  // [1, C, 16, 128]
        const int64_t d = vae.config().downsampling();
        SampleOptions so = o.sampling;
        so.seed = mix_seed(o.sampling.seed, k);
        CocolaGuidance guidance;
        if (o.cocola_guidance > 0) {
            if (!o.guide) throw Error("--cocola-guidance needs a guide (a COCOLA model of the mel front-end)");
            guidance = {o.guide, &vae, guide_embedding(*o.guide, in_chunk), o.cocola_guidance, o.guide_views};
        }
        const at::Tensor z = sample(model, prompt, control, o.candidates, generate::kMelBands / d, generate::kChunkFrames / d, so, {},
                                    {}, guidance);
        std::vector<std::vector<float>> cands;
        for (int64_t b = 0; b < z.size(0); ++b) cands.push_back(latent_to_audio(vae, vocoder, z.slice(0, b, b + 1)));
        const size_t best = pick_candidate(cands, in_chunk, candidate_picker(o, judge), o.select, g.chunk_scores);
        chunks.push_back(std::move(cands[best]));
        if (progress) progress(k + 1, starts.size());
    }
    g.audio = join_chunks(chunks, starts, n);
    g.level_gain_db = resolve_level(o.level, prompt) == "input" ? match_level(g.audio, input) : limit_peak(g.audio);
    return g;
}

Generated generate_msdm_audio(Componet& model, const generate::Vae& vae, const generate::Vocoder* vocoder,
                              const model::Model* judge, const std::vector<std::pair<std::string, std::vector<float>>>& given,
                              const std::vector<std::string>& wanted, const GenerateOptions& o,
                              const std::function<void(size_t, size_t)>& progress) {
    using generate::kChunkSamples;
    const ComponetConfig& c = model.config();
    if (!c.is_msdm()) throw Error("this model is not an MSDM model (it has no fixed sources)");
    check_options(o, judge);
    check_vae(model, vae);
    const int64_t per = vae.config().latent_channels;
    if (per * static_cast<int64_t>(c.sources.size()) != c.latent_channels)
        throw Error("this MSDM model's latent (" + std::to_string(c.latent_channels) + " channels) does not match " +
                    std::to_string(c.sources.size()) + " sources of the VAE's " + std::to_string(per) + " channels");
    auto source_index = [&](const std::string& tag) {
        for (size_t i = 0; i < c.sources.size(); ++i)
            if (c.sources[i] == tag) return static_cast<int64_t>(i);
        std::string known;
        for (const auto& s : c.sources) known += (known.empty() ? "" : ", ") + s;
        throw Error("\"" + tag + "\" is not one of this MSDM model's sources (" + known + ")");
    };
    if (wanted.empty()) throw Error("MSDM: no source to generate");
    std::vector<int64_t> given_at, wanted_at;
    int64_t n = -1;
    for (const auto& [tag, audio] : given) {
        given_at.push_back(source_index(tag));
        if (audio.empty()) throw Error("MSDM: the given " + tag + " is empty");
        if (n >= 0 && static_cast<int64_t>(audio.size()) != n) throw Error("MSDM: the given sources differ in length");
        n = static_cast<int64_t>(audio.size());
    }
    if (given.empty()) throw Error("MSDM: no given source (unconditional generation is not an accompaniment)");
    for (const auto& tag : wanted) {
        const int64_t i = source_index(tag);
        if (std::find(given_at.begin(), given_at.end(), i) != given_at.end()) throw Error("MSDM: \"" + tag + "\" is both given and wanted");
        wanted_at.push_back(i);
    }
    const int64_t d = vae.config().downsampling(), h = generate::kMelBands / d, w = generate::kChunkFrames / d;
    at::Tensor mask = at::zeros({1, c.latent_channels, 1, 1}, at::kFloat);
    for (int64_t i : given_at) mask.slice(1, i * per, (i + 1) * per).fill_(1);
    // The latent of silence stands for sources neither given nor wanted (they are inpainted as silent too, as a
    // Slakh2100 MSDM is asked for the missing instruments).
    const at::Tensor silence = generate::encode_audio(vae, std::vector<float>(static_cast<size_t>(kChunkSamples), 0.f));
    for (size_t i = 0; i < c.sources.size(); ++i) {
        const int64_t s = static_cast<int64_t>(i);
        if (std::find(given_at.begin(), given_at.end(), s) == given_at.end() &&
            std::find(wanted_at.begin(), wanted_at.end(), s) == wanted_at.end())
            mask.slice(1, s * per, (s + 1) * per).fill_(1);
    }
    const auto starts = chunk_starts(n, kChunkSamples, overlap_samples(o));
    std::vector<std::vector<float>> chunks;
    Generated g;
    for (size_t k = 0; k < starts.size(); ++k) {
        at::Tensor known = silence.repeat({1, static_cast<int64_t>(c.sources.size()), 1, 1}).clone();
        std::vector<float> reference(static_cast<size_t>(kChunkSamples), 0.f);
        for (size_t j = 0; j < given.size(); ++j) {
            const std::vector<float> part = chunk_of(given[j].second, starts[k]);
            for (size_t i = 0; i < part.size(); ++i) reference[i] += part[i];
            known.slice(1, given_at[j] * per, (given_at[j] + 1) * per).copy_(generate::encode_audio(vae, part));
        }
        SampleOptions so = o.sampling;
        so.seed = mix_seed(o.sampling.seed, k);
        so.guidance = 1.0;  // unconditional: nothing to guide by
        const at::Tensor z = sample(model, Prompt{}, {}, o.candidates, h, w, so, {}, Inpainting{known, mask});
        std::vector<std::vector<float>> cands;
        for (int64_t b = 0; b < z.size(0); ++b) {
            std::vector<float> sum(static_cast<size_t>(kChunkSamples), 0.f);
            for (int64_t i : wanted_at) {
                const auto a = latent_to_audio(vae, vocoder, z.slice(0, b, b + 1).slice(1, i * per, (i + 1) * per));
                for (size_t q = 0; q < sum.size(); ++q) sum[q] += a[q];
            }
            cands.push_back(std::move(sum));
        }
        const size_t best = pick_candidate(cands, reference, candidate_picker(o, judge), o.select, g.chunk_scores);
        chunks.push_back(std::move(cands[best]));
        if (progress) progress(k + 1, starts.size());
    }
    g.audio = join_chunks(chunks, starts, n);
    if (o.level != "keep") {  // MSDM only accompanies: "auto" is "input"
        std::vector<float> given_sum(static_cast<size_t>(n), 0.f);
        for (const auto& part : given)
            for (size_t i = 0; i < given_sum.size(); ++i) given_sum[i] += part.second[i];
        g.level_gain_db = match_level(g.audio, given_sum);
    } else {
        g.level_gain_db = limit_peak(g.audio);
    }
    return g;
}

}  // namespace cocola::componet
