// The vocoder's module tree: ConvNeXt blocks at the frame rate and a linear head to STFT log-magnitudes and phases.
#pragma once
#include <torch/torch.h>

#include <cmath>

#include "cocola/generate.hpp"

namespace cocola::generate {

struct ConvNeXtBlockImpl : torch::nn::Module {
    ConvNeXtBlockImpl(int64_t c, double layer_scale) {
        dw = register_module("dw", torch::nn::Conv1d(torch::nn::Conv1dOptions(c, c, 7).padding(3).groups(c)));
        norm = register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c}).eps(1e-6)));
        pw1 = register_module("pw1", torch::nn::Linear(c, 3 * c));
        pw2 = register_module("pw2", torch::nn::Linear(3 * c, c));
        gamma = register_parameter("gamma", at::full({c}, layer_scale));
    }
    at::Tensor forward(const at::Tensor& x) {  // [B, C, T]
        at::Tensor h = norm(dw(x).transpose(1, 2));
        h = pw2(at::gelu(pw1(h))) * gamma;
        return x + h.transpose(1, 2);
    }
    torch::nn::Conv1d dw{nullptr};
    torch::nn::LayerNorm norm{nullptr};
    torch::nn::Linear pw1{nullptr}, pw2{nullptr};
    at::Tensor gamma;
};
TORCH_MODULE(ConvNeXtBlock);

class VocoderNet : public torch::nn::Module {
   public:
    explicit VocoderNet(const VocoderConfig& c) : bins(c.n_fft / 2 + 1) {
        conv_in = register_module("conv_in", torch::nn::Conv1d(torch::nn::Conv1dOptions(kMelBands, c.channels, 7).padding(3)));
        norm_in = register_module("norm_in", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.channels}).eps(1e-6)));
        blocks = torch::nn::Sequential();
        for (int i = 0; i < c.blocks; ++i) blocks->push_back(ConvNeXtBlock(c.channels, 1.0 / c.blocks));
        register_module("blocks", blocks);
        norm_out = register_module("norm_out", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.channels}).eps(1e-6)));
        head = register_module("head", torch::nn::Linear(c.channels, 2 * bins));
        torch::NoGradGuard no_grad;
        if (c.prior == "mel-inverse") {
            // The magnitude rows predict a correction to the mel-inverse magnitudes: start at none.
            head->weight.slice(0, 0, bins).zero_();
            head->bias.slice(0, 0, bins).zero_();
        } else {
            // Start quiet: magnitudes of about 1e-2 rather than 1, so the first steps do not fight a roar.
            head->bias.slice(0, 0, bins).fill_(std::log(1e-2));
        }
    }
    // Normalised mel [B, 64, T] -> log-magnitudes and phases [B, bins, T].
    void forward(const at::Tensor& x, at::Tensor& log_mag, at::Tensor& phase) {
        at::Tensor h = norm_in(conv_in(x).transpose(1, 2)).transpose(1, 2);
        h = blocks->forward(h);
        h = head(norm_out(h.transpose(1, 2))).transpose(1, 2);  // [B, 2 bins, T]
        log_mag = h.slice(1, 0, bins);
        phase = h.slice(1, bins, 2 * bins);
    }
    int64_t bins;
    torch::nn::Conv1d conv_in{nullptr};
    torch::nn::LayerNorm norm_in{nullptr}, norm_out{nullptr};
    torch::nn::Sequential blocks{nullptr};
    torch::nn::Linear head{nullptr};
};

}  // namespace cocola::generate
