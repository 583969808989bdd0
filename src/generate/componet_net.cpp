// CompoNet's modules (componet_net.hpp).
#include "generate/componet_net.hpp"

#include <cmath>

#include "cocola/error.hpp"
#include "model/activations.hpp"
#include "generate/vae_net.hpp"

namespace cocola::componet {

namespace nn = torch::nn;
using generate::group_norm;

namespace {

nn::Conv2d conv(int64_t in, int64_t out, int64_t k, int64_t stride = 1) {
    return nn::Conv2d(nn::Conv2dOptions(in, out, k).stride(stride).padding(k / 2));
}

template <class M>
void zero_(M& m) {
    torch::NoGradGuard no_grad;
    m->weight.zero_();
    if (m->bias.defined()) m->bias.zero_();
}

int64_t heads_for(int64_t channels, int head_channels) {
    return std::max<int64_t>(1, channels / std::max(1, head_channels));
}

// Sinusoidal embedding of integer timesteps [B] -> [B, dim] (as in DDPM / latent diffusion).
at::Tensor timestep_embedding(const at::Tensor& t, int64_t dim) {
    const int64_t half = dim / 2;
    const at::Tensor freqs =
        at::exp(-std::log(10000.0) * at::arange(half, t.options().dtype(at::kFloat)) / static_cast<double>(half));
    const at::Tensor args = t.to(at::kFloat).unsqueeze(1) * freqs.unsqueeze(0);
    at::Tensor e = at::cat({at::cos(args), at::sin(args)}, 1);
    if (dim % 2) e = at::cat({e, at::zeros({t.size(0), 1}, e.options())}, 1);
    return e;
}

}  // namespace

at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t heads, const at::Tensor& mask) {
    const int64_t B = q.size(0), N = q.size(1), S = k.size(1), C = q.size(2), d = C / heads;
    auto split = [&](const at::Tensor& x, int64_t L) { return x.reshape({B, L, heads, d}).permute({0, 2, 1, 3}); };
    at::Tensor w = at::matmul(split(q, N), split(k, S).transpose(-1, -2)) / std::sqrt(static_cast<double>(d));
    if (mask.defined()) w = w.masked_fill(mask.logical_not().view({B, 1, 1, S}), -1e9);
    const at::Tensor out = at::matmul(at::softmax(w, -1), split(v, S));
    return out.permute({0, 2, 1, 3}).reshape({B, N, C});
}

MultiHeadAttentionImpl::MultiHeadAttentionImpl(int64_t dim, int64_t context_dim, int64_t heads_) : heads(heads_) {
    if (dim % heads) throw Error("attention width " + std::to_string(dim) + " does not divide into " + std::to_string(heads) + " heads");
    q = register_module("q", nn::Linear(nn::LinearOptions(dim, dim).bias(false)));
    k = register_module("k", nn::Linear(nn::LinearOptions(context_dim, dim).bias(false)));
    v = register_module("v", nn::Linear(nn::LinearOptions(context_dim, dim).bias(false)));
    out = register_module("out", nn::Linear(dim, dim));
}

at::Tensor MultiHeadAttentionImpl::forward(const at::Tensor& x, const at::Tensor& context, const at::Tensor& mask) {
    return out(attention(q(x), k(context), v(context), heads, mask));
}

TransformerLayerImpl::TransformerLayerImpl(int64_t dim, int64_t heads) {
    norm1 = register_module("norm1", nn::LayerNorm(nn::LayerNormOptions({dim})));
    norm2 = register_module("norm2", nn::LayerNorm(nn::LayerNormOptions({dim})));
    attn = register_module("attn", MultiHeadAttention(dim, dim, heads));
    ff1 = register_module("ff1", nn::Linear(dim, 4 * dim));
    ff2 = register_module("ff2", nn::Linear(4 * dim, dim));
}

at::Tensor TransformerLayerImpl::forward(const at::Tensor& x, const at::Tensor& mask) {
    const at::Tensor n = norm1(x);
    at::Tensor h = x + attn(n, n, mask);
    return h + ff2(at::gelu(ff1(norm2(h))));
}

PromptEncoderImpl::PromptEncoderImpl(const ComponetConfig& c) {
    const int64_t d = c.prompt_dim;
    // ids: 0 unconditional, 1 "in:", 2 "out:", 3.. the vocabulary
    token = register_module("token", nn::Embedding(static_cast<int64_t>(c.vocabulary.size()) + 3, d));
    number = register_module("number", nn::Embedding(10, d));
    section = register_module("section", nn::Embedding(3, d));
    position = register_module("position", nn::Embedding(c.max_prompt_tokens, d));
    layers = register_module("layers", nn::ModuleList());
    for (int i = 0; i < c.prompt_layers; ++i) layers->push_back(TransformerLayer(d, heads_for(d, c.head_channels)));
    norm = register_module("norm", nn::LayerNorm(nn::LayerNormOptions({d})));
}

at::Tensor PromptEncoderImpl::forward(const at::Tensor& tokens, const at::Tensor& mask) {
    const int64_t S = tokens.size(1);
    at::Tensor h = token(tokens.select(2, 0)) + number(tokens.select(2, 1)) + section(tokens.select(2, 2)) +
                   position(at::arange(S, tokens.options())).unsqueeze(0);
    for (auto& l : *layers) h = l->as<TransformerLayer>()->forward(h, mask);
    return norm(h);
}

TimeResBlockImpl::TimeResBlockImpl(int64_t in, int64_t out, int64_t time_dim) {
    norm1 = register_module("norm1", group_norm(in));
    conv1 = register_module("conv1", conv(in, out, 3));
    time = register_module("time", nn::Linear(time_dim, out));
    norm2 = register_module("norm2", group_norm(out));
    conv2 = register_module("conv2", conv(out, out, 3));
    zero_(conv2);  // the block starts as its skip path
    if (in != out) skip = register_module("skip", conv(in, out, 1));
}

at::Tensor TimeResBlockImpl::forward(const at::Tensor& x, const at::Tensor& temb) {
    at::Tensor h = conv1(model::silu(norm1(x)));
    h = h + time(model::silu(temb)).unsqueeze(-1).unsqueeze(-1);
    h = conv2(model::silu(norm2(h)));
    return (skip ? skip(x) : x) + h;
}

SpatialAttentionImpl::SpatialAttentionImpl(int64_t ch, int64_t context_dim, int64_t heads, bool self_attention) {
    norm = register_module("norm", group_norm(ch));
    proj_in = register_module("proj_in", nn::Linear(ch, ch));
    if (self_attention) {
        ln_self = register_module("ln_self", nn::LayerNorm(nn::LayerNormOptions({ch})));
        self_attn = register_module("self_attn", MultiHeadAttention(ch, ch, heads));
    }
    ln_cross = register_module("ln_cross", nn::LayerNorm(nn::LayerNormOptions({ch})));
    cross_attn = register_module("cross_attn", MultiHeadAttention(ch, context_dim, heads));
    ln_ff = register_module("ln_ff", nn::LayerNorm(nn::LayerNormOptions({ch})));
    ff1 = register_module("ff1", nn::Linear(ch, 4 * ch));
    ff2 = register_module("ff2", nn::Linear(4 * ch, ch));
    proj_out = register_module("proj_out", nn::Linear(ch, ch));
    zero_(proj_out);
}

at::Tensor SpatialAttentionImpl::forward(const at::Tensor& x, const at::Tensor& context, const at::Tensor& mask) {
    const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
    at::Tensor h = proj_in(norm(x).flatten(2).transpose(1, 2));  // [B, HW, C]
    if (self_attn) {
        const at::Tensor n = ln_self(h);
        h = h + self_attn(n, n, at::Tensor());
    }
    h = h + cross_attn(ln_cross(h), context, mask);
    h = h + ff2(at::gelu(ff1(ln_ff(h))));
    return x + proj_out(h).transpose(1, 2).reshape({B, C, H, W});
}

EncoderHalfImpl::EncoderHalfImpl(const ComponetConfig& c) : base_channels(c.channels.at(0)) {
    const int64_t c0 = base_channels, tdim = 4 * c0;
    const int levels = static_cast<int>(c.channels.size());
    time1 = register_module("time1", nn::Linear(c0, tdim));
    time2 = register_module("time2", nn::Linear(tdim, tdim));
    conv_in = register_module("conv_in", conv(c.latent_channels, c0, 3));
    blocks = register_module("blocks", nn::ModuleList());
    attns = register_module("attns", nn::ModuleList());
    downs = register_module("downs", nn::ModuleList());
    skip_channels.push_back(c0);
    int64_t ch = c0;
    for (int l = 0; l < levels; ++l) {
        const int64_t out = c.channels[static_cast<size_t>(l)];
        for (int r = 0; r < c.res_blocks; ++r) {
            blocks->push_back(TimeResBlock(ch, out, tdim));
            ch = out;
            const bool attn = l >= c.cross_attention_from;
            if (attn) attns->push_back(SpatialAttention(ch, c.prompt_dim, heads_for(ch, c.head_channels), l == levels - 1));
            block_level.push_back(l);
            block_has_attention.push_back(attn);
            skip_channels.push_back(ch);
        }
        if (l + 1 < levels) {
            downs->push_back(conv(ch, ch, 3, 2));
            skip_channels.push_back(ch);
        }
    }
    mid1 = register_module("mid1", TimeResBlock(ch, ch, tdim));
    mid_attn = register_module("mid_attn", SpatialAttention(ch, c.prompt_dim, heads_for(ch, c.head_channels), true));
    mid2 = register_module("mid2", TimeResBlock(ch, ch, tdim));
}

EncoderHalfImpl::Output EncoderHalfImpl::forward(const at::Tensor& x, const at::Tensor& t, const at::Tensor& context,
                                                 const at::Tensor& mask, const at::Tensor& added) {
    Output o;
    o.temb = time2(model::silu(time1(timestep_embedding(t, base_channels))));
    at::Tensor h = conv_in(x);
    if (added.defined()) h = h + added;
    o.skips.push_back(h);
    size_t attn_i = 0, down_i = 0;
    for (size_t b = 0; b < blocks->size(); ++b) {
        h = blocks[b]->as<TimeResBlock>()->forward(h, o.temb);
        if (block_has_attention[b]) h = attns[attn_i++]->as<SpatialAttention>()->forward(h, context, mask);
        o.skips.push_back(h);
        const bool last_of_level = b + 1 == blocks->size() || block_level[b + 1] != block_level[b];
        if (last_of_level && down_i < downs->size()) {
            h = downs[down_i++]->as<nn::Conv2d>()->forward(h);
            o.skips.push_back(h);
        }
    }
    h = mid1(h, o.temb);
    h = mid_attn(h, context, mask);
    o.middle = mid2(h, o.temb);
    return o;
}

DecoderHalfImpl::DecoderHalfImpl(const ComponetConfig& c, const std::vector<int64_t>& skip_channels) {
    const int64_t tdim = 4 * c.channels.at(0);
    const int levels = static_cast<int>(c.channels.size());
    blocks = register_module("blocks", nn::ModuleList());
    attns = register_module("attns", nn::ModuleList());
    ups = register_module("ups", nn::ModuleList());
    std::vector<int64_t> skips = skip_channels;
    int64_t ch = c.channels.back();
    for (int l = levels - 1; l >= 0; --l) {
        const int64_t out = c.channels[static_cast<size_t>(l)];
        for (int r = 0; r <= c.res_blocks; ++r) {
            const int64_t skip = skips.back();
            skips.pop_back();
            blocks->push_back(TimeResBlock(ch + skip, out, tdim));
            ch = out;
            const bool attn = l >= c.cross_attention_from;
            if (attn) attns->push_back(SpatialAttention(ch, c.prompt_dim, heads_for(ch, c.head_channels), l == levels - 1));
            block_level.push_back(l);
            block_has_attention.push_back(attn);
        }
        if (l > 0) ups->push_back(conv(ch, ch, 3));
    }
    norm_out = register_module("norm_out", group_norm(ch));
    conv_out = register_module("conv_out", conv(ch, c.latent_channels, 3));
    zero_(conv_out);
}

at::Tensor DecoderHalfImpl::forward(at::Tensor h, std::vector<at::Tensor> skips, const at::Tensor& temb,
                                    const at::Tensor& context, const at::Tensor& mask) {
    size_t attn_i = 0, up_i = 0;
    for (size_t b = 0; b < blocks->size(); ++b) {
        h = at::cat({h, skips.back()}, 1);
        skips.pop_back();
        h = blocks[b]->as<TimeResBlock>()->forward(h, temb);
        if (block_has_attention[b]) h = attns[attn_i++]->as<SpatialAttention>()->forward(h, context, mask);
        const bool last_of_level = b + 1 == blocks->size() || block_level[b + 1] != block_level[b];
        if (last_of_level && up_i < ups->size()) {
            h = at::upsample_nearest2d(h, {h.size(2) * 2, h.size(3) * 2});
            h = ups[up_i++]->as<nn::Conv2d>()->forward(h);
        }
    }
    return conv_out(model::silu(norm_out(h)));
}

ControlNetImpl::ControlNetImpl(const ComponetConfig& c) {
    encoder = register_module("encoder", EncoderHalf(c));
    control_in = register_module("control_in", conv(c.latent_channels, c.channels.at(0), 3));
    zero_(control_in);
    zero_convs = register_module("zero_convs", nn::ModuleList());
    for (int64_t ch : encoder->skip_channels) {
        nn::Conv2d z = conv(ch, ch, 1);
        zero_(z);
        zero_convs->push_back(z);
    }
    zero_middle = register_module("zero_middle", conv(c.channels.back(), c.channels.back(), 1));
    zero_(zero_middle);
}

std::pair<std::vector<at::Tensor>, at::Tensor> ControlNetImpl::forward(const at::Tensor& x, const at::Tensor& t,
                                                                       const at::Tensor& control, const at::Tensor& context,
                                                                       const at::Tensor& mask) {
    auto o = encoder(x, t, context, mask, control_in(control));
    std::vector<at::Tensor> res;
    for (size_t i = 0; i < o.skips.size(); ++i) res.push_back(zero_convs[i]->as<nn::Conv2d>()->forward(o.skips[i]));
    return {res, zero_middle(o.middle)};
}

ComponetNet::ComponetNet(const ComponetConfig& c) {
    prompt = register_module("prompt", PromptEncoder(c));
    encoder = register_module("unet_encoder", EncoderHalf(c));
    decoder = register_module("unet_decoder", DecoderHalf(c, encoder->skip_channels));
    if (c.controlnet) controlnet = register_module("controlnet", ControlNet(c));
}

void ComponetNet::add_controlnet(const ComponetConfig& c) {
    if (controlnet) return;
    controlnet = register_module("controlnet", ControlNet(c));
    controlnet->to(encoder->conv_in->weight.device());
    torch::NoGradGuard no_grad;
    auto src = encoder->named_parameters();
    for (auto& p : controlnet->encoder->named_parameters()) p.value().copy_(src[p.key()]);
}

at::Tensor ComponetNet::forward(const at::Tensor& x, const at::Tensor& t, const at::Tensor& tokens, const at::Tensor& mask,
                                const at::Tensor& control) {
    const at::Tensor context = prompt(tokens, mask);
    auto o = encoder(x, t, context, mask);
    if (controlnet && control.defined()) {
        auto [res, mid] = controlnet(x, t, control, context, mask);
        for (size_t i = 0; i < res.size(); ++i) o.skips[i] = o.skips[i] + res[i];
        o.middle = o.middle + mid;
    }
    return decoder(o.middle, o.skips, o.temb, context, mask);
}

}  // namespace cocola::componet
