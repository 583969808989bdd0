// The autoencoder's module tree (AudioLDM / latent-diffusion style): GroupNorm-SiLU-conv residual blocks,
// strided-conv downsampling, nearest-neighbour upsampling, single-head self-attention in the middle.
// Spectrograms enter as [B, 1, 64 bins, T frames]; both axes shrink by 2 per level after the first.
#pragma once
#include <torch/torch.h>

#include "cocola/generate.hpp"

namespace cocola::generate {

// GroupNorm with the largest group count <= 32 that divides the channels (32 for the usual widths; small test
// models still normalise).
torch::nn::GroupNorm group_norm(int64_t channels);

struct ResBlockImpl : torch::nn::Module {
    ResBlockImpl(int64_t in, int64_t out);
    at::Tensor forward(const at::Tensor& x);
    torch::nn::GroupNorm norm1{nullptr}, norm2{nullptr};
    torch::nn::Conv2d conv1{nullptr}, conv2{nullptr}, skip{nullptr};
};
TORCH_MODULE(ResBlock);

struct AttentionImpl : torch::nn::Module {
    explicit AttentionImpl(int64_t channels);
    at::Tensor forward(const at::Tensor& x);
    torch::nn::GroupNorm norm{nullptr};
    torch::nn::Conv2d q{nullptr}, k{nullptr}, v{nullptr}, proj{nullptr};
};
TORCH_MODULE(Attention);

struct EncoderImpl : torch::nn::Module {
    explicit EncoderImpl(const VaeConfig& c);
    at::Tensor forward(const at::Tensor& x);  // [B, 1, H, W] -> [B, 2 z, H/d, W/d] (mean, logvar)
    torch::nn::Conv2d conv_in{nullptr}, conv_out{nullptr};
    torch::nn::Sequential down{nullptr};  // per level: res blocks, then a stride-2 conv except on the last level
    ResBlock mid1{nullptr}, mid2{nullptr};
    Attention attn{nullptr};
    torch::nn::GroupNorm norm_out{nullptr};
    std::vector<int> blocks_per_level;
};
TORCH_MODULE(Encoder);

struct DecoderImpl : torch::nn::Module {
    explicit DecoderImpl(const VaeConfig& c);
    at::Tensor forward(const at::Tensor& z);  // [B, z, h, w] -> [B, 1, h d, w d]
    torch::nn::Conv2d conv_in{nullptr}, conv_out{nullptr};
    torch::nn::Sequential up{nullptr};  // per level (deepest first): res blocks, then upsampling + conv except last
    ResBlock mid1{nullptr}, mid2{nullptr};
    Attention attn{nullptr};
    torch::nn::GroupNorm norm_out{nullptr};
    std::vector<int> blocks_per_level;
};
TORCH_MODULE(Decoder);

class VaeNet : public torch::nn::Module {
   public:
    explicit VaeNet(const VaeConfig& c);
    Encoder encoder{nullptr};
    Decoder decoder{nullptr};
};

}  // namespace cocola::generate
