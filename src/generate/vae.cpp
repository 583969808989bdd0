// The mel autoencoder: modules (vae_net.hpp), the Vae class (encode, decode, files) and audio <-> latents.
#include "generate/vae_net.hpp"

#include "generate/generator_training.hpp"

#include <nlohmann/json.hpp>
#include <numeric>

#include "cocola/error.hpp"
#include "cocola/safetensors.hpp"
#include "model/activations.hpp"

namespace cocola::generate {

// ---------------------------------------------------------------- modules

torch::nn::GroupNorm group_norm(int64_t channels) {
    int64_t groups = std::min<int64_t>(32, channels);
    while (channels % groups) --groups;
    return torch::nn::GroupNorm(torch::nn::GroupNormOptions(groups, channels).eps(1e-6));
}

namespace {
torch::nn::Conv2d conv(int64_t in, int64_t out, int64_t k, int64_t stride = 1) {
    return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, k).stride(stride).padding(k / 2));
}
}  // namespace

ResBlockImpl::ResBlockImpl(int64_t in, int64_t out) {
    norm1 = register_module("norm1", group_norm(in));
    conv1 = register_module("conv1", conv(in, out, 3));
    norm2 = register_module("norm2", group_norm(out));
    conv2 = register_module("conv2", conv(out, out, 3));
    if (in != out) skip = register_module("skip", conv(in, out, 1));
}

at::Tensor ResBlockImpl::forward(const at::Tensor& x) {
    at::Tensor h = conv1(model::silu(norm1(x)));
    h = conv2(model::silu(norm2(h)));
    return (skip ? skip(x) : x) + h;
}

AttentionImpl::AttentionImpl(int64_t c) {
    norm = register_module("norm", group_norm(c));
    q = register_module("q", conv(c, c, 1));
    k = register_module("k", conv(c, c, 1));
    v = register_module("v", conv(c, c, 1));
    proj = register_module("proj", conv(c, c, 1));
}

at::Tensor AttentionImpl::forward(const at::Tensor& x) {
    const int64_t B = x.size(0), C = x.size(1), N = x.size(2) * x.size(3);
    const at::Tensor h = norm(x);
    const at::Tensor qs = q(h).reshape({B, C, N}).transpose(1, 2);  // [B, N, C]
    const at::Tensor ks = k(h).reshape({B, C, N});                   // [B, C, N]
    const at::Tensor vs = v(h).reshape({B, C, N}).transpose(1, 2);   // [B, N, C]
    const at::Tensor w = at::softmax(at::bmm(qs, ks) / std::sqrt(static_cast<double>(C)), 2);
    const at::Tensor o = at::bmm(w, vs).transpose(1, 2).reshape(x.sizes());
    return x + proj(o);
}

EncoderImpl::EncoderImpl(const VaeConfig& c) {
    const int64_t base = c.base_channels;
    conv_in = register_module("conv_in", conv(1, base, 3));
    down = torch::nn::Sequential();
    int64_t ch = base;
    for (size_t level = 0; level < c.channel_mult.size(); ++level) {
        const int64_t out = base * c.channel_mult[level];
        for (int b = 0; b < c.res_blocks; ++b, ch = out) down->push_back(ResBlock(ch, out));
        if (level + 1 < c.channel_mult.size()) down->push_back(conv(ch, ch, 3, 2));
    }
    register_module("down", down);
    mid1 = register_module("mid1", ResBlock(ch, ch));
    if (c.mid_attention) attn = register_module("attn", Attention(ch));
    mid2 = register_module("mid2", ResBlock(ch, ch));
    norm_out = register_module("norm_out", group_norm(ch));
    conv_out = register_module("conv_out", conv(ch, 2 * c.latent_channels, 3));
}

at::Tensor EncoderImpl::forward(const at::Tensor& x) {
    at::Tensor h = down->forward(conv_in(x));
    h = mid1(h);
    if (attn) h = attn(h);
    h = mid2(h);
    return conv_out(model::silu(norm_out(h)));
}

DecoderImpl::DecoderImpl(const VaeConfig& c) {
    const int64_t base = c.base_channels;
    int64_t ch = base * c.channel_mult.back();
    conv_in = register_module("conv_in", conv(c.latent_channels, ch, 3));
    mid1 = register_module("mid1", ResBlock(ch, ch));
    if (c.mid_attention) attn = register_module("attn", Attention(ch));
    mid2 = register_module("mid2", ResBlock(ch, ch));
    up = torch::nn::Sequential();
    for (size_t i = c.channel_mult.size(); i-- > 0;) {
        const int64_t out = base * c.channel_mult[i];
        for (int b = 0; b < c.res_blocks + 1; ++b, ch = out) up->push_back(ResBlock(ch, out));
        if (i > 0) {
            up->push_back(torch::nn::Upsample(
                torch::nn::UpsampleOptions().scale_factor(std::vector<double>{2.0, 2.0}).mode(torch::kNearest)));
            up->push_back(conv(ch, ch, 3));
        }
    }
    register_module("up", up);
    norm_out = register_module("norm_out", group_norm(ch));
    conv_out = register_module("conv_out", conv(ch, 1, 3));
}

at::Tensor DecoderImpl::forward(const at::Tensor& z) {
    at::Tensor h = mid1(conv_in(z));
    if (attn) h = attn(h);
    h = up->forward(mid2(h));
    return conv_out(model::silu(norm_out(h)));
}

VaeNet::VaeNet(const VaeConfig& c) {
    encoder = register_module("encoder", Encoder(c));
    decoder = register_module("decoder", Decoder(c));
}

// ---------------------------------------------------------------- the Vae

namespace {

const char* kFormat = "cocola vae";

nlohmann::json config_json(const VaeConfig& c) {
    return {{"base_channels", c.base_channels}, {"channel_mult", c.channel_mult},   {"res_blocks", c.res_blocks},
            {"latent_channels", c.latent_channels}, {"mid_attention", c.mid_attention}, {"mel_mean", c.mel_mean},
            {"mel_std", c.mel_std},                {"scale_factor", c.scale_factor}};
}

void check_config(const VaeConfig& c, const std::string& where) {
    auto bad = [&](const std::string& what) { throw Error(where + ": " + what); };
    if (c.base_channels < 1 || c.base_channels > 1024) bad("base_channels must be in [1, 1024]");
    if (c.channel_mult.empty() || c.channel_mult.size() > 5) bad("channel_mult needs 1 to 5 levels");
    for (int m : c.channel_mult)
        if (m < 1 || m > 16) bad("every channel_mult must be in [1, 16]");
    if (c.res_blocks < 1 || c.res_blocks > 8) bad("res_blocks must be in [1, 8]");
    if (c.latent_channels < 1 || c.latent_channels > 64) bad("latent_channels must be in [1, 64]");
    if (!(std::isfinite(c.mel_mean) && std::isfinite(c.mel_std) && c.mel_std > 0)) bad("mel_std must be > 0");
    if (!(std::isfinite(c.scale_factor) && c.scale_factor > 0)) bad("scale_factor must be > 0");
    if (kMelBands % c.downsampling()) bad("64 mel bands must divide by the downsampling");
}

VaeConfig config_from_json(const nlohmann::json& j) {
    VaeConfig c;
    c.base_channels = j.at("base_channels");
    c.channel_mult = j.at("channel_mult").get<std::vector<int>>();
    c.res_blocks = j.at("res_blocks");
    c.latent_channels = j.at("latent_channels");
    c.mid_attention = j.at("mid_attention");
    c.mel_mean = j.at("mel_mean");
    c.mel_std = j.at("mel_std");
    c.scale_factor = j.at("scale_factor");
    return c;
}

}  // namespace

struct Vae::Impl {
    VaeConfig config;
    std::shared_ptr<VaeNet> net;
    at::Device device = at::kCPU;
};

Vae::Vae(const VaeConfig& config, uint64_t seed) : impl_(std::make_unique<Impl>()) {
    check_config(config, "VAE config");
    impl_->config = config;
    at::manual_seed(seed);
    impl_->net = std::make_shared<VaeNet>(config);
}
Vae::~Vae() = default;
Vae::Vae(Vae&&) noexcept = default;
Vae& Vae::operator=(Vae&&) noexcept = default;

const VaeConfig& Vae::config() const { return impl_->config; }
VaeConfig& Vae::mutable_config() { return impl_->config; }
VaeNet& Vae::net() { return *impl_->net; }
const VaeNet& Vae::net() const { return *impl_->net; }
at::Device Vae::device() const { return impl_->device; }
void Vae::to(const at::Device& device) {
    impl_->net->to(device);
    impl_->device = device;
}
int64_t Vae::parameter_count() const {
    int64_t n = 0;
    for (const auto& p : impl_->net->parameters()) n += p.numel();
    return n;
}

void Vae::save(const std::string& path, const std::map<std::string, std::string>& extra, bool half) const {
    save_module(*impl_->net, path, kFormat, config_json(impl_->config), extra, half);
}

Vae Vae::load(const std::string& path) {
    const auto f = safetensors::load(path);
    const auto j = module_config(f, path, kFormat, "VAE");
    VaeConfig c;
    try {
        c = config_from_json(j);
    } catch (const std::exception& e) {
        throw Error(path + ": malformed VAE config in its metadata (" + e.what() + ")");
    }
    check_config(c, path);
    Vae vae(c);
    load_module(*vae.impl_->net, f, path, "VAE");
    return vae;
}

void Vae::forward(const at::Tensor& mel_db, at::Tensor& mean, at::Tensor& logvar, at::Tensor& reconstruction,
                  bool sample, at::Generator* gen) {
    const VaeConfig& c = impl_->config;
    const at::Tensor x = ((mel_db - c.mel_mean) / c.mel_std).unsqueeze(1);
    const auto moments = impl_->net->encoder->forward(x).chunk(2, 1);
    mean = moments[0];
    logvar = moments[1].clamp(-30.0, 20.0);
    at::Tensor z = mean;
    if (sample) {
        const at::Tensor eps = gen ? at::randn(mean.sizes(), *gen, mean.options()) : at::randn_like(mean);
        z = mean + at::exp(0.5 * logvar) * eps;
    }
    reconstruction = impl_->net->decoder->forward(z).squeeze(1) * c.mel_std + c.mel_mean;
}

namespace {
void check_mel_batch(const at::Tensor& mel, int d) {
    if (mel.dim() != 3 || mel.size(1) != kMelBands || mel.size(2) < d || mel.size(2) % d)
        throw Error("VAE encode: expected log-mel spectrograms [B, 64, T] with T a multiple of " + std::to_string(d) +
                    ", got " + shape_text(mel.sizes()));
}
}  // namespace

at::Tensor Vae::encode(const at::Tensor& mel_db, bool sample) const {
    const VaeConfig& c = impl_->config;
    check_mel_batch(mel_db, c.downsampling());
    torch::NoGradGuard no_grad;
    const bool was_training = impl_->net->is_training();
    impl_->net->eval();
    const at::Tensor x = ((mel_db.to(impl_->device, at::kFloat) - c.mel_mean) / c.mel_std).unsqueeze(1);
    const auto moments = impl_->net->encoder->forward(x).chunk(2, 1);
    at::Tensor z = moments[0];
    if (sample) z = z + at::exp(0.5 * moments[1].clamp(-30.0, 20.0)) * at::randn_like(z);
    if (was_training) impl_->net->train();
    return z * c.scale_factor;
}

at::Tensor Vae::decode(const at::Tensor& latent, bool with_grad) const {
    const VaeConfig& c = impl_->config;
    if (latent.dim() != 4 || latent.size(1) != c.latent_channels || latent.size(2) * c.downsampling() != kMelBands)
        throw Error("VAE decode: expected latents [B, " + std::to_string(c.latent_channels) + ", " +
                    std::to_string(kMelBands / c.downsampling()) + ", w], got " + shape_text(latent.sizes()));
    torch::AutoGradMode grad_mode(with_grad);
    const bool was_training = impl_->net->is_training();
    impl_->net->eval();
    const at::Tensor mel = impl_->net->decoder->forward(latent.to(impl_->device, at::kFloat) / c.scale_factor).squeeze(1);
    if (was_training) impl_->net->train();
    return mel * c.mel_std + c.mel_mean;
}

at::Tensor kl_divergence(const at::Tensor& mean, const at::Tensor& logvar) {
    return 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).flatten(1).sum(1).mean();
}

at::Tensor encode_audio(const Vae& vae, const std::vector<float>& audio) {
    if (audio.empty()) throw Error("VAE encode: empty audio");
    const int64_t chunks = (static_cast<int64_t>(audio.size()) + kChunkSamples - 1) / kChunkSamples;
    at::Tensor clips = at::zeros({chunks, kChunkSamples}, at::kFloat);
    std::copy(audio.begin(), audio.end(), clips.data_ptr<float>());
    std::vector<at::Tensor> out;
    for (int64_t i = 0; i < chunks; i += 4)  // a few chunks at a time: bounded memory for long files
        out.push_back(vae.encode(mel_spectrograms(clips.slice(0, i, std::min(chunks, i + 4)))).cpu());
    return at::cat(out);
}

at::Tensor decode_to_mel(const Vae& vae, const at::Tensor& latents) {
    std::vector<at::Tensor> out;
    for (int64_t i = 0; i < latents.size(0); i += 4) {
        const at::Tensor mel = vae.decode(latents.slice(0, i, std::min(latents.size(0), i + 4))).cpu();
        for (int64_t b = 0; b < mel.size(0); ++b) out.push_back(mel[b]);
    }
    // A spectrogram audio can have: the decoder is unbounded and overshoots on latents unlike its training set.
    return at::cat(out, 1).clamp(kMelFloorDb, kMelCeilingDb);  // [64, chunks * frames]
}

}  // namespace cocola::generate
