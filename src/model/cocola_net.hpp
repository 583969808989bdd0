// The module tree of COCOLA, named exactly like the official PyTorch model so that named_parameters() and
// named_buffers() yield the official state_dict keys:
//   encoder.encoder.model.0.<EfficientNet-B0>   encoder.projection   layer_norm   similarity.w
#pragma once
#include <array>
#include <functional>
#include <vector>

#include "cocola/model.hpp"
#include "model/torch_includes.hpp"
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

namespace cocola::model {

// One MBConv block's hyper-parameters after EfficientNet-B0 scaling.
struct BlockSpec {
    int kernel, stride, expand, in, out;
};
const std::array<BlockSpec, 16>& b0_blocks();

// TF "SAME" padding fixed at construction for a 224x224 image, as efficientnet_pytorch's
// Conv2dStaticSamePadding does (not from the live input): {left, right, top, bottom}.
std::array<int64_t, 4> static_same_padding(int image_size, int kernel, int stride);

// Data-parallel training (src/train/distributed.hpp): this process holds some rows of a global batch. Random
// masks (dropout, drop-connect) are drawn for the whole global batch and sliced, so they are the masks one
// process training on the whole batch draws; BatchNorm in training mode normalises over the whole batch.
struct BatchPartition {
    int64_t global_rows = 0;
    at::Tensor rows;  // indices of this process's rows in the global batch (long, on the model's device)
    std::function<at::Tensor(const at::Tensor& x, torch::nn::BatchNorm2dImpl& bn)> batch_norm;
};

// BatchNorm of a module in training or inference mode, over the global batch when `partition` is set.
at::Tensor normalize(torch::nn::BatchNorm2d& bn, const at::Tensor& x, const BatchPartition* partition);
// A mask of `shape` (first dimension the batch) of uniform [0, 1) draws, the global batch's rows where partitioned.
at::Tensor uniform_rows(at::IntArrayRef shape, const at::TensorOptions& options, const BatchPartition* partition);

struct MBConvBlockImpl : torch::nn::Module {
    MBConvBlockImpl(const BlockSpec& spec, int image_size, double drop_connect_rate);
    at::Tensor forward(const at::Tensor& x);
    BlockSpec spec;
    std::array<int64_t, 4> dw_pad;
    double drop_connect_rate;
    bool has_expand, residual;
    torch::nn::Conv2d expand_conv{nullptr}, depthwise_conv{nullptr}, se_reduce{nullptr}, se_expand{nullptr},
        project_conv{nullptr};
    torch::nn::BatchNorm2d bn0{nullptr}, bn1{nullptr}, bn2{nullptr};
    const BatchPartition* partition = nullptr;  // set by CocolaNet::set_partition
};
TORCH_MODULE(MBConvBlock);

struct EfficientNetB0Impl : torch::nn::Module {
    explicit EfficientNetB0Impl(int in_channels);
    // Returns the pooled features [B, 1280]; `hook` (may be empty) sees every stage.
    at::Tensor forward(const at::Tensor& x, const ActivationHook& hook = {});
    torch::nn::Conv2d conv_stem{nullptr}, conv_head{nullptr};
    torch::nn::BatchNorm2d bn0{nullptr}, bn1{nullptr};
    torch::nn::ModuleList blocks{nullptr};
    std::array<int64_t, 4> stem_pad;
    // Set by CocolaNet::use_channels_last: the stem's output is made channels-last explicitly, since a one-channel
    // input cannot say which layout it is in and the convolution would keep the whole network channels-first.
    bool channels_last = false;
    const BatchPartition* partition = nullptr;  // set by CocolaNet::set_partition
};
TORCH_MODULE(EfficientNetB0);

struct CocolaNet : torch::nn::Module {
    explicit CocolaNet(const Config& config);
    Config config;
    EfficientNetB0 effnet{nullptr};
    torch::nn::Linear projection{nullptr};
    torch::nn::LayerNorm layer_norm{nullptr};
    at::Tensor similarity_w;  // [D, D] for bilinear; undefined for cosine
    double dropout_p;

    // Training runs channels-last (oneDNN's fastest layout here) when on; the weights are converted in place.
    void use_channels_last(bool on);
    bool channels_last = false;

    // Data-parallel training: the rows this process holds of the global batch (nullptr: the whole batch).
    // Only training mode reads it; the partition must outlive its use.
    void set_partition(const BatchPartition* partition);
    const BatchPartition* partition = nullptr;

    // Full chain with autograd (train or eval mode as set): features -> embeddings [B, D].
    at::Tensor embed(const at::Tensor& features, const ActivationHook& hook = {});
    at::Tensor similarity(const at::Tensor& a, const at::Tensor& b) const;  // [Na, Nb]
};

}  // namespace cocola::model
