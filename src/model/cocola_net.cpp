#include "model/cocola_net.hpp"
#include "model/activations.hpp"

#include <cstdio>

namespace cocola::model {
namespace {

// swish(x) = x * sigmoid(x) = SiLU: one fused kernel (and one for its gradient) instead of two passes.
at::Tensor swish(const at::Tensor& x) { return model::silu(x); }

torch::nn::Conv2d conv(int in, int out, int k, int stride = 1, int groups = 1, bool bias = false) {
    return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, k).stride(stride).groups(groups).bias(bias));
}
// efficientnet_pytorch: BatchNorm eps 1e-3 and momentum 0.01 (PyTorch convention for TF's 0.99).
torch::nn::BatchNorm2d bn(int c) { return torch::nn::BatchNorm2d(torch::nn::BatchNorm2dOptions(c).eps(1e-3).momentum(0.01)); }

at::Tensor pad(const at::Tensor& x, const std::array<int64_t, 4>& p) {
    if (p[0] == 0 && p[1] == 0 && p[2] == 0 && p[3] == 0) return x;
    return at::constant_pad_nd(x, {p[0], p[1], p[2], p[3]}, 0);
}

constexpr int kImageSize = 224;  // from_name('efficientnet-b0') fixes the static padding for 224x224

}  // namespace

at::Tensor normalize(torch::nn::BatchNorm2d& bn, const at::Tensor& x, const BatchPartition* partition) {
    if (partition && bn->is_training()) return partition->batch_norm(x, *bn);
    return bn->forward(x);
}

at::Tensor uniform_rows(at::IntArrayRef shape, const at::TensorOptions& options, const BatchPartition* partition) {
    if (!partition) return at::rand(shape, options);
    std::vector<int64_t> global(shape.begin(), shape.end());
    global[0] = partition->global_rows;
    return at::rand(global, options).index_select(0, partition->rows);
}

const std::array<BlockSpec, 16>& b0_blocks() {
    static const std::array<BlockSpec, 16> blocks = {{
        {3, 1, 1, 32, 16},  {3, 2, 6, 16, 24},   {3, 1, 6, 24, 24},   {5, 2, 6, 24, 40},
        {5, 1, 6, 40, 40},  {3, 2, 6, 40, 80},   {3, 1, 6, 80, 80},   {3, 1, 6, 80, 80},
        {5, 1, 6, 80, 112}, {5, 1, 6, 112, 112}, {5, 1, 6, 112, 112}, {5, 2, 6, 112, 192},
        {5, 1, 6, 192, 192}, {5, 1, 6, 192, 192}, {5, 1, 6, 192, 192}, {3, 1, 6, 192, 320},
    }};
    return blocks;
}

std::array<int64_t, 4> static_same_padding(int image_size, int kernel, int stride) {
    const int out = (image_size + stride - 1) / stride;
    const int total = std::max((out - 1) * stride + kernel - image_size, 0);
    const int before = total / 2, after = total - before;
    return {before, after, before, after};
}

MBConvBlockImpl::MBConvBlockImpl(const BlockSpec& s, int image_size, double dc)
    : spec(s), drop_connect_rate(dc) {
    const int mid = s.in * s.expand;
    has_expand = s.expand != 1;
    residual = s.stride == 1 && s.in == s.out;
    if (has_expand) {
        expand_conv = register_module("_expand_conv", conv(s.in, mid, 1));
        bn0 = register_module("_bn0", bn(mid));
    }
    depthwise_conv = register_module("_depthwise_conv", conv(mid, mid, s.kernel, s.stride, mid));
    bn1 = register_module("_bn1", bn(mid));
    const int se = std::max(1, static_cast<int>(s.in * 0.25));  // from the block's input filters
    se_reduce = register_module("_se_reduce", conv(mid, se, 1, 1, 1, true));
    se_expand = register_module("_se_expand", conv(se, mid, 1, 1, 1, true));
    project_conv = register_module("_project_conv", conv(mid, s.out, 1));
    bn2 = register_module("_bn2", bn(s.out));
    dw_pad = static_same_padding(image_size, s.kernel, s.stride);
}

at::Tensor MBConvBlockImpl::forward(const at::Tensor& input) {
    at::Tensor x = input;
    if (has_expand) x = swish(normalize(bn0, expand_conv->forward(x), partition));
    x = swish(normalize(bn1, depthwise_conv->forward(pad(x, dw_pad)), partition));
    at::Tensor s = at::mean(x, {2, 3}, true);
    s = se_expand->forward(swish(se_reduce->forward(s)));
    x = at::sigmoid(s) * x;
    x = normalize(bn2, project_conv->forward(x), partition);
    if (residual) {
        if (is_training() && drop_connect_rate > 0) {
            // Stochastic depth: drop the whole residual branch per example, rescale the survivors.
            const double keep = 1.0 - drop_connect_rate;
            at::Tensor mask = at::floor(keep + uniform_rows({x.size(0), 1, 1, 1}, x.options(), partition));
            x = x / keep * mask;
        }
        x = x + input;
    }
    return x;
}

EfficientNetB0Impl::EfficientNetB0Impl(int in_channels) {
    conv_stem = register_module("_conv_stem", conv(in_channels, 32, 3, 2));
    bn0 = register_module("_bn0", bn(32));
    stem_pad = static_same_padding(kImageSize, 3, 2);
    blocks = register_module("_blocks", torch::nn::ModuleList());
    int image = (kImageSize + 1) / 2;  // after the stem
    const auto& specs = b0_blocks();
    for (size_t i = 0; i < specs.size(); ++i) {
        const double dc = 0.2 * static_cast<double>(i) / specs.size();
        blocks->push_back(MBConvBlock(specs[i], image, dc));
        image = (image + specs[i].stride - 1) / specs[i].stride;
    }
    conv_head = register_module("_conv_head", conv(320, 1280, 1));
    bn1 = register_module("_bn1", bn(1280));
}

at::Tensor EfficientNetB0Impl::forward(const at::Tensor& input, const ActivationHook& hook) {
    at::Tensor x = conv_stem->forward(pad(input, stem_pad));
    if (channels_last) x = x.contiguous(at::MemoryFormat::ChannelsLast);
    x = swish(normalize(bn0, x, partition));
    if (hook) hook("stem_swish", x);
    for (size_t i = 0; i < blocks->size(); ++i) {
        x = blocks[i]->as<MBConvBlock>()->forward(x);
        if (hook) {
            char name[32];
            std::snprintf(name, sizeof(name), "block%02zu_out", i);
            hook(name, x);
        }
    }
    x = normalize(bn1, conv_head->forward(x), partition);
    if (hook) hook("head_bn", x);
    x = swish(x);
    if (hook) hook("head_swish", x);
    x = at::mean(x, {2, 3}, true);
    if (hook) hook("avgpool", x);
    return x.flatten(1);
}

CocolaNet::CocolaNet(const Config& c) : config(c), dropout_p(c.dropout) {
    // encoder.encoder.model.0 = EfficientNet; .1 Dropout and .2 Flatten carry no state.
    auto outer = register_module("encoder", std::make_shared<torch::nn::Module>());
    auto inner = outer->register_module("encoder", std::make_shared<torch::nn::Module>());
    auto seq = inner->register_module("model", std::make_shared<torch::nn::Module>());
    effnet = seq->register_module("0", EfficientNetB0(c.in_channels()));
    projection = outer->register_module("projection", torch::nn::Linear(1280, c.embedding_dim));
    layer_norm = register_module(
        "layer_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.embedding_dim}).eps(1e-5)));
    if (c.similarity == Similarity::Bilinear) {
        auto sim = register_module("similarity", std::make_shared<torch::nn::Module>());
        similarity_w = sim->register_parameter("w", at::randn({c.embedding_dim, c.embedding_dim}) * kReferenceSimilarityInitStd);
    }
}

void CocolaNet::use_channels_last(bool on) {
    channels_last = on;
    effnet->channels_last = on;
    torch::NoGradGuard no_grad;
    const auto fmt = on ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
    for (auto& p : effnet->parameters())
        if (p.dim() == 4) p.set_data(p.data().contiguous(fmt));
}

void CocolaNet::set_partition(const BatchPartition* p) {
    partition = p;
    effnet->partition = p;
    for (size_t i = 0; i < effnet->blocks->size(); ++i) effnet->blocks[i]->as<MBConvBlock>()->partition = p;
}

at::Tensor CocolaNet::embed(const at::Tensor& features, const ActivationHook& hook) {
    at::Tensor x = effnet->forward(channels_last ? features.contiguous(at::MemoryFormat::ChannelsLast) : features, hook);
    if (is_training() && dropout_p > 0) {
        if (!partition) {
            x = at::dropout(x, dropout_p, true);
        } else {
            // The draw at::dropout makes on the CPU (Bernoulli noise of the input's shape, scaled by 1 / keep),
            // made for the global batch.
            at::Tensor noise = at::empty({partition->global_rows, x.size(1)}, x.options()).bernoulli_(1 - dropout_p);
            x = x * noise.div_(1 - dropout_p).index_select(0, partition->rows);
        }
    }
    x = projection->forward(x);
    if (hook) hook("projection", x);
    x = layer_norm->forward(x);
    if (hook) hook("layer_norm", x);
    x = at::tanh(x);
    if (hook) hook("embedding", x);
    return x;
}

at::Tensor CocolaNet::similarity(const at::Tensor& a, const at::Tensor& b) const {
    if (config.similarity == Similarity::Bilinear) return at::matmul(at::matmul(a, similarity_w), b.t());
    auto an = a / a.norm(2, {1}, true).clamp_min(1e-8);
    auto bn_ = b / b.norm(2, {1}, true).clamp_min(1e-8);
    return at::matmul(an, bn_.t());
}

}  // namespace cocola::model
