// CompoNet's module tree (internal to src/generate): the prompt encoder, the U-Net denoiser (its encoder half,
// shared in shape with the ControlNet adapter, and its decoder half), and the adapter.
#pragma once
#include <torch/torch.h>

#include <vector>

#include "cocola/componet.hpp"

namespace cocola::componet {

// Multi-head scaled dot-product attention: q [B, N, C], k and v [B, S, C]; mask [B, S] (true: attend) or undefined.
at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t heads, const at::Tensor& mask);

struct MultiHeadAttentionImpl : torch::nn::Module {
    MultiHeadAttentionImpl(int64_t dim, int64_t context_dim, int64_t heads);
    at::Tensor forward(const at::Tensor& x, const at::Tensor& context, const at::Tensor& mask);
    torch::nn::Linear q{nullptr}, k{nullptr}, v{nullptr}, out{nullptr};
    int64_t heads;
};
TORCH_MODULE(MultiHeadAttention);

// A pre-norm transformer layer: self-attention (masked), then a GELU feed-forward.
struct TransformerLayerImpl : torch::nn::Module {
    TransformerLayerImpl(int64_t dim, int64_t heads);
    at::Tensor forward(const at::Tensor& x, const at::Tensor& mask);
    torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr};
    MultiHeadAttention attn{nullptr};
    torch::nn::Linear ff1{nullptr}, ff2{nullptr};
};
TORCH_MODULE(TransformerLayer);

// Token ids -> context [B, S, prompt_dim]: token, number and section (in / out) embeddings plus positions,
// then a small transformer.
struct PromptEncoderImpl : torch::nn::Module {
    explicit PromptEncoderImpl(const ComponetConfig& c);
    // tokens [B, S, 3] (tag id, number, section), mask [B, S]
    at::Tensor forward(const at::Tensor& tokens, const at::Tensor& mask);
    torch::nn::Embedding token{nullptr}, number{nullptr}, section{nullptr}, position{nullptr};
    torch::nn::ModuleList layers{nullptr};
    torch::nn::LayerNorm norm{nullptr};
};
TORCH_MODULE(PromptEncoder);

// A residual block with the timestep embedding added between its convolutions.
struct TimeResBlockImpl : torch::nn::Module {
    TimeResBlockImpl(int64_t in, int64_t out, int64_t time_dim);
    at::Tensor forward(const at::Tensor& x, const at::Tensor& temb);
    torch::nn::GroupNorm norm1{nullptr}, norm2{nullptr};
    torch::nn::Conv2d conv1{nullptr}, conv2{nullptr}, skip{nullptr};
    torch::nn::Linear time{nullptr};
};
TORCH_MODULE(TimeResBlock);

// Attention over the positions of a feature map: self-attention (optional), cross-attention to the prompt,
// feed-forward, with a zero-initialised output projection (the block starts as the identity).
struct SpatialAttentionImpl : torch::nn::Module {
    SpatialAttentionImpl(int64_t channels, int64_t context_dim, int64_t heads, bool self_attention);
    at::Tensor forward(const at::Tensor& x, const at::Tensor& context, const at::Tensor& mask);
    torch::nn::GroupNorm norm{nullptr};
    torch::nn::Linear proj_in{nullptr}, proj_out{nullptr}, ff1{nullptr}, ff2{nullptr};
    torch::nn::LayerNorm ln_self{nullptr}, ln_cross{nullptr}, ln_ff{nullptr};
    MultiHeadAttention self_attn{nullptr}, cross_attn{nullptr};
};
TORCH_MODULE(SpatialAttention);

// The U-Net's encoder half: timestep embedding, conv_in, per level res blocks (with attention from
// cross_attention_from on) and a stride-2 downsampling except on the last level, then the middle block.
// The ControlNet adapter is a second instance of it.
struct EncoderHalfImpl : torch::nn::Module {
    explicit EncoderHalfImpl(const ComponetConfig& c);
    struct Output {
        std::vector<at::Tensor> skips;  // every block's output, conv_in's first
        at::Tensor middle, temb;
    };
    // x [B, C, H, W]; added (optional, [B, channels[0], H, W]) is added after conv_in (the adapter's control).
    Output forward(const at::Tensor& x, const at::Tensor& t, const at::Tensor& context, const at::Tensor& mask,
                   const at::Tensor& added = {});
    std::vector<int64_t> skip_channels;
    torch::nn::Linear time1{nullptr}, time2{nullptr};
    torch::nn::Conv2d conv_in{nullptr};
    torch::nn::ModuleList blocks{nullptr}, attns{nullptr}, downs{nullptr};  // attns holds one per block (or none)
    std::vector<int> block_level;
    std::vector<bool> block_has_attention;
    TimeResBlock mid1{nullptr}, mid2{nullptr};
    SpatialAttention mid_attn{nullptr};
    int64_t base_channels;
};
TORCH_MODULE(EncoderHalf);

struct DecoderHalfImpl : torch::nn::Module {
    DecoderHalfImpl(const ComponetConfig& c, const std::vector<int64_t>& skip_channels);
    at::Tensor forward(at::Tensor h, std::vector<at::Tensor> skips, const at::Tensor& temb, const at::Tensor& context,
                       const at::Tensor& mask);
    torch::nn::ModuleList blocks{nullptr}, attns{nullptr}, ups{nullptr};
    std::vector<int> block_level;
    std::vector<bool> block_has_attention;
    torch::nn::GroupNorm norm_out{nullptr};
    torch::nn::Conv2d conv_out{nullptr};
};
TORCH_MODULE(DecoderHalf);

// The adapter: its own copy of the encoder half, a zero-initialised 3x3 conv on the control latent, and a
// zero-initialised 1x1 conv per skip and for the middle.
struct ControlNetImpl : torch::nn::Module {
    explicit ControlNetImpl(const ComponetConfig& c);
    // Residuals for the U-Net's skips and middle.
    std::pair<std::vector<at::Tensor>, at::Tensor> forward(const at::Tensor& x, const at::Tensor& t, const at::Tensor& control,
                                                           const at::Tensor& context, const at::Tensor& mask);
    EncoderHalf encoder{nullptr};
    torch::nn::Conv2d control_in{nullptr};
    torch::nn::ModuleList zero_convs{nullptr};
    torch::nn::Conv2d zero_middle{nullptr};
};
TORCH_MODULE(ControlNet);

class ComponetNet : public torch::nn::Module {
   public:
    explicit ComponetNet(const ComponetConfig& c);
    void add_controlnet(const ComponetConfig& c);  // copies the encoder half's weights into the adapter
    at::Tensor forward(const at::Tensor& x, const at::Tensor& t, const at::Tensor& tokens, const at::Tensor& mask,
                       const at::Tensor& control);
    PromptEncoder prompt{nullptr};
    EncoderHalf encoder{nullptr};
    DecoderHalf decoder{nullptr};
    ControlNet controlnet{nullptr};  // null before stage 2
};

}  // namespace cocola::componet
