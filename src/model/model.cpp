// Model: weights I/O, config, and the folded inference path used for scoring and embedding.
#include <c10/core/InferenceMode.h>

#include <cstdlib>
#include <mutex>
#include <sstream>

#include "cocola/error.hpp"
#include "cocola/safetensors.hpp"
#include "model/activations.hpp"
#include "model/cocola_net.hpp"

namespace cocola::model {
namespace {

// The reference's InputType enum values, as its checkpoints store them (lower case); upper case is accepted too.
const char* kInputTypeMel = "single_channel_mel_spectrogram";
const char* kInputTypeHpss = "double_channel_harmonic_percussive";

std::string lower(std::string s) {
    for (auto& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    return s;
}

std::string shape_str(at::IntArrayRef s) {
    std::ostringstream o;
    o << "[";
    for (size_t i = 0; i < s.size(); ++i) o << (i ? ", " : "") << s[i];
    o << "]";
    return o.str();
}

// Official state_dict order: a module's own parameters, then its own buffers, then its children in order.
void collect_state(const torch::nn::Module& m, const std::string& prefix,
                   std::vector<std::pair<std::string, at::Tensor>>& out) {
    for (const auto& p : m.named_parameters(false)) out.emplace_back(prefix + p.key(), p.value());
    for (const auto& b : m.named_buffers(false)) out.emplace_back(prefix + b.key(), b.value());
    for (const auto& c : m.named_children()) collect_state(*c.value(), prefix + c.key() + ".", out);
}

// A convolution with its BatchNorm folded in: y = conv(pad(x), w * s) + (beta - mean * s), s = gamma/sqrt(var+eps).
struct FoldedConv {
    at::Tensor w, b;
    std::array<int64_t, 4> pad{0, 0, 0, 0};
    int64_t stride = 1, groups = 1;
    // The static padding is asymmetric (more after than before) for stride 2. When the extra trailing zeros
    // are never reached by a kernel window, symmetric padding gives the same output and the convolution can
    // pad by itself, without a padded copy of the activation.
    bool symmetric_suffices(int64_t H, int64_t W) const {
        auto out_len = [&](int64_t n, int64_t before, int64_t after, int64_t k) { return (n + before + after - k) / stride + 1; };
        const bool h = pad[2] == pad[3] || out_len(H, pad[2], pad[3], w.size(2)) == out_len(H, pad[2], pad[2], w.size(2));
        const bool v = pad[0] == pad[1] || out_len(W, pad[0], pad[1], w.size(3)) == out_len(W, pad[0], pad[0], w.size(3));
        return h && v;
    }
    // On one thread, a 1x1 convolution of a channels-last activation is one matrix product of its [N*H*W, C]
    // view: at::addmm runs it without the copies libtorch's single-threaded 1x1 path makes (it unfolds the
    // input), the model ~1.05x faster (bench_model, 6 interleaved runs: 52.4 against 50.1 pairs/s). With more
    // threads libtorch runs 1x1 convolutions through oneDNN, parallel over channels too, which beats rows split
    // over threads (101-105 against 88 pairs/s at 2 threads). Computing the product in tiles of rows, each
    // finished (bias, SiLU) while in cache, was measured too and is not faster: SiLU's arithmetic, not memory,
    // is what costs in those layers.
    at::Tensor w_matrix;  // [C, O] = w^T, set by fold() for 1x1 kernels with stride 1
    at::Tensor operator()(const at::Tensor& x) const {
        if (w_matrix.defined() && at::get_num_threads() == 1 && x.is_contiguous(at::MemoryFormat::ChannelsLast)) {
            const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), O = w_matrix.size(1);
            at::Tensor y = at::addmm(b, x.permute({0, 2, 3, 1}).reshape({N * H * W, C}), w_matrix);
            return y.view({N, H, W, O}).permute({0, 3, 1, 2});
        }
        return convolve(x);
    }
    at::Tensor convolve(const at::Tensor& x) const {
        const std::vector<int64_t> st{stride, stride}, one{1, 1};
        if (symmetric_suffices(x.size(2), x.size(3)))
            return at::conv2d(x, w, b, st, std::vector<int64_t>{pad[2], pad[0]}, one, groups);
        at::Tensor in = at::constant_pad_nd(x, {pad[0], pad[1], pad[2], pad[3]}, 0);
        return at::conv2d(in, w, b, st, std::vector<int64_t>{0, 0}, one, groups);
    }
    // For an input that already carries the padding.
    at::Tensor unpadded(const at::Tensor& x) const {
        const std::vector<int64_t> st{stride, stride}, one{1, 1};
        return at::conv2d(x, w, b, st, std::vector<int64_t>{0, 0}, one, groups);
    }
};

FoldedConv fold(const torch::nn::Conv2d& conv, const torch::nn::BatchNorm2d& bn, std::array<int64_t, 4> pad,
                bool channels_last) {
    const double eps = bn->options.eps();
    at::Tensor scale = bn->weight / at::sqrt(bn->running_var + eps);
    FoldedConv f;
    f.w = conv->weight * scale.view({-1, 1, 1, 1});
    if (channels_last) f.w = f.w.contiguous(at::MemoryFormat::ChannelsLast);
    f.b = bn->bias - bn->running_mean * scale;
    f.pad = pad;
    f.stride = conv->options.stride()->at(0);
    f.groups = conv->options.groups();
    if (channels_last && f.w.size(2) == 1 && f.w.size(3) == 1 && f.stride == 1 && f.groups == 1)
        f.w_matrix = f.w.reshape({f.w.size(0), f.w.size(1)}).t().contiguous();
    return f;
}

struct FoldedBlock {
    bool has_expand = false, residual = false;
    FoldedConv expand, depthwise, project;
    at::Tensor se_rw, se_rb, se_ew, se_eb;  // SE 1x1 convs as linear layers on the pooled vector
};


}  // namespace

struct Folded {
    FoldedConv stem, head;
    std::vector<FoldedBlock> blocks;
    at::Tensor proj_w, proj_b, ln_w, ln_b;
    bool channels_last = true;

    at::Tensor forward(at::Tensor x) const {
        if (channels_last) x = x.contiguous(at::MemoryFormat::ChannelsLast);
        // In-place SiLU (= swish) and residual adds: one pass over each activation instead of two or three.
        x = stem(x);
        // A one-channel input (the mel front-end) is contiguous and channels-last at once, and the convolution
        // keeps its input's layout: without this the whole network would run channels-first, 1.5x slower.
        if (channels_last) x = x.contiguous(at::MemoryFormat::ChannelsLast);
        model::silu_(x);
        for (const auto& b : blocks) {
            at::Tensor h = x;
            const auto& p = b.depthwise.pad;
            if (b.has_expand && !b.depthwise.symmetric_suffices(x.size(2), x.size(3))) {
                // The depthwise conv needs an asymmetric zero border. Padding the narrow block input (before
                // the 6x expansion) is 6x cheaper than padding the expanded activation; the border of the
                // expanded activation is then reset to zero (the 1x1 conv's bias and SiLU made it non-zero).
                h = b.expand(at::constant_pad_nd(x, {p[0], p[1], p[2], p[3]}, 0));
                model::silu_(h);
                const int64_t H = h.size(2), W = h.size(3);
                if (p[2]) h.slice(2, 0, p[2]).zero_();
                if (p[3]) h.slice(2, H - p[3], H).zero_();
                if (p[0]) h.slice(3, 0, p[0]).zero_();
                if (p[1]) h.slice(3, W - p[1], W).zero_();
                h = b.depthwise.unpadded(h);
            } else {
                if (b.has_expand) {
                    h = b.expand(x);
                    model::silu_(h);
                }
                h = b.depthwise(h);
            }
            model::silu_(h);
            at::Tensor s = at::mean(h, {2, 3});
            s = at::sigmoid(at::linear(at::silu(at::linear(s, b.se_rw, b.se_rb)), b.se_ew, b.se_eb));
            h = h.mul_(s.unsqueeze(2).unsqueeze(3));
            h = b.project(h);
            x = b.residual ? h.add_(x) : h;
        }
        x = head(x);
        model::silu_(x);
        x = at::mean(x, {2, 3});
        x = at::linear(x, proj_w, proj_b);
        x = at::layer_norm(x, {x.size(1)}, ln_w, ln_b, 1e-5);
        return at::tanh(x);
    }
};

struct Model::Impl {
    std::shared_ptr<CocolaNet> net;
    mutable std::mutex folded_mutex;
    mutable std::shared_ptr<Folded> folded;

    std::shared_ptr<Folded> get_folded() const {
        std::lock_guard<std::mutex> lock(folded_mutex);
        if (folded) return folded;
        torch::NoGradGuard no_grad;
        auto f = std::make_shared<Folded>();
        const auto& e = net->effnet;
        f->channels_last = std::getenv("COCOLA_CHANNELS_FIRST") == nullptr;
        f->stem = fold(e->conv_stem, e->bn0, e->stem_pad, f->channels_last);
        f->head = fold(e->conv_head, e->bn1, {0, 0, 0, 0}, f->channels_last);
        for (size_t i = 0; i < e->blocks->size(); ++i) {
            auto blk = e->blocks->ptr(i)->as<MBConvBlock>();
            FoldedBlock fb;
            fb.has_expand = blk->has_expand;
            fb.residual = blk->residual;
            if (blk->has_expand) fb.expand = fold(blk->expand_conv, blk->bn0, {0, 0, 0, 0}, f->channels_last);
            fb.depthwise = fold(blk->depthwise_conv, blk->bn1, blk->dw_pad, f->channels_last);
            fb.project = fold(blk->project_conv, blk->bn2, {0, 0, 0, 0}, f->channels_last);
            fb.se_rw = blk->se_reduce->weight.flatten(1).clone();
            fb.se_rb = blk->se_reduce->bias.clone();
            fb.se_ew = blk->se_expand->weight.flatten(1).clone();
            fb.se_eb = blk->se_expand->bias.clone();
            f->blocks.push_back(std::move(fb));
        }
        f->proj_w = net->projection->weight.clone();
        f->proj_b = net->projection->bias.clone();
        f->ln_w = net->layer_norm->weight.clone();
        f->ln_b = net->layer_norm->bias.clone();
        folded = f;
        return f;
    }
};

Similarity parse_similarity(const std::string& s) {
    if (s == "bilinear") return Similarity::Bilinear;
    if (s == "cosine") return Similarity::Cosine;
    throw Error("unknown similarity '" + s + "' (expected bilinear or cosine)");
}
std::string similarity_name(Similarity s) { return s == Similarity::Bilinear ? "bilinear" : "cosine"; }

EmbeddingMode parse_mode(const std::string& s) {
    if (s == "both") return EmbeddingMode::Both;
    if (s == "harmonic") return EmbeddingMode::Harmonic;
    if (s == "percussive") return EmbeddingMode::Percussive;
    if (s == "random") return EmbeddingMode::Random;
    throw Error("unknown embedding mode '" + s + "' (expected both, harmonic or percussive)");
}
std::string mode_name(EmbeddingMode m) {
    switch (m) {
        case EmbeddingMode::Both: return "both";
        case EmbeddingMode::Harmonic: return "harmonic";
        case EmbeddingMode::Percussive: return "percussive";
        default: return "random";
    }
}

void apply_mode(at::Tensor& f, EmbeddingMode mode, at::Generator* gen) {
    if (f.size(1) != 2 || mode == EmbeddingMode::Both) return;
    torch::NoGradGuard no_grad;
    if (mode == EmbeddingMode::Harmonic) {
        f.select(1, 1).zero_();  // keep harmonic: zero the percussive channel
    } else if (mode == EmbeddingMode::Percussive) {
        f.select(1, 0).zero_();
    } else {
        // Per example: 0 = both, 1 = harmonic only, 2 = percussive only (the reference's RANDOM mode).
        at::Tensor choice = gen ? at::randint(3, {f.size(0)}, *gen, at::TensorOptions().dtype(at::kLong))
                                : at::randint(3, {f.size(0)}, at::TensorOptions().dtype(at::kLong));
        auto c = choice.accessor<int64_t, 1>();
        for (int64_t i = 0; i < f.size(0); ++i) {
            if (c[i] == 1) f[i][1].zero_();
            if (c[i] == 2) f[i][0].zero_();
        }
    }
}

Model::Model(const Config& config, uint64_t seed) : impl_(std::make_unique<Impl>()) {
    at::manual_seed(seed);
    impl_->net = std::make_shared<CocolaNet>(config);
    impl_->net->eval();
}
Model::~Model() = default;
Model::Model(Model&&) noexcept = default;
Model& Model::operator=(Model&&) noexcept = default;

const Config& Model::config() const { return impl_->net->config; }
CocolaNet& Model::net() { return *impl_->net; }
const CocolaNet& Model::net() const { return *impl_->net; }
void Model::weights_changed() {
    std::lock_guard<std::mutex> lock(impl_->folded_mutex);
    impl_->folded.reset();
}
void Model::to(const at::Device& device) {
    impl_->net->to(device);
    weights_changed();
}
at::Device Model::device() const { return impl_->net->projection->weight.device(); }

Model Model::load(const std::string& path) {
    auto file = safetensors::load(path);
    Config c;
    auto meta = [&](const char* k) -> const std::string* {
        auto it = file.metadata.find(k);
        return it == file.metadata.end() ? nullptr : &it->second;
    };
    if (const auto* it = meta("input_type")) {
        if (lower(*it) == kInputTypeMel) c.frontend = features::Frontend::Mel;
        else if (lower(*it) == kInputTypeHpss) c.frontend = features::Frontend::Hpss;
        else throw Error(path + ": unknown input_type '" + *it + "' in metadata");
    } else if (const auto* stem = file.find("encoder.encoder.model.0._conv_stem.weight"); stem && stem->dim() == 4) {
        c.frontend = stem->size(1) == 1 ? features::Frontend::Mel : features::Frontend::Hpss;
    }
    try {
        if (const auto* v = meta("embedding_dim")) c.embedding_dim = std::stoi(*v);
        else if (const auto* p = file.find("encoder.projection.weight"); p && p->dim() == 2) c.embedding_dim = p->size(0);
        if (const auto* v = meta("dropout_p")) c.dropout = std::stod(*v);
    } catch (const std::exception&) {
        throw Error(path + ": malformed embedding_dim or dropout_p in metadata");
    }
    if (const auto* v = meta("similarity")) {
        try {
            c.similarity = parse_similarity(*v);
        } catch (const std::exception& e) {
            throw Error(path + ": metadata similarity: " + e.what());
        }
    }
    else c.similarity = file.find("similarity.w") ? Similarity::Bilinear : Similarity::Cosine;

    Model m(c);
    std::vector<std::pair<std::string, at::Tensor>> expected;
    collect_state(*m.impl_->net, "", expected);
    std::vector<std::string> problems;
    std::map<std::string, const at::Tensor*> in_file;
    for (const auto& [n, t] : file.tensors) in_file[n] = &t;
    for (const auto& [name, t] : expected) {
        auto it = in_file.find(name);
        if (it == in_file.end()) {
            problems.push_back("missing tensor " + name + " " + shape_str(t.sizes()));
            continue;
        }
        if (it->second->sizes() != t.sizes())
            problems.push_back("tensor " + name + " has shape " + shape_str(it->second->sizes()) +
                               ", the model expects " + shape_str(t.sizes()));
        in_file.erase(it);
    }
    for (const auto& [n, t] : in_file) problems.push_back("unexpected tensor " + n + " " + shape_str(t->sizes()));
    // A negative BatchNorm variance makes sqrt(var + eps) NaN for every input.
    for (const auto& [name, t] : file.tensors)
        if (name.size() > 12 && name.compare(name.size() - 12, 12, ".running_var") == 0 && t.numel() > 0 &&
            t.min().item<double>() < 0)
            problems.push_back("tensor " + name + " has a negative variance (" + std::to_string(t.min().item<double>()) + ")");
    if (!problems.empty()) {
        std::string msg = path + ": not a COCOLA " + features::frontend_name(c.frontend) + " checkpoint (" +
                          std::to_string(problems.size()) + " problems):";
        for (size_t i = 0; i < problems.size() && i < 25; ++i) msg += "\n  " + problems[i];
        if (problems.size() > 25) msg += "\n  ... and " + std::to_string(problems.size() - 25) + " more";
        throw Error(msg);
    }
    torch::NoGradGuard no_grad;
    for (auto& [name, t] : expected) t.copy_(*file.find(name));
    return m;
}

void Model::save(const std::string& path, const std::map<std::string, std::string>& extra) const {
    std::vector<std::pair<std::string, at::Tensor>> state;
    collect_state(*impl_->net, "", state);
    const auto& c = config();
    std::map<std::string, std::string> meta = extra;
    meta["input_type"] = c.frontend == features::Frontend::Mel ? kInputTypeMel : kInputTypeHpss;
    meta["embedding_dim"] = std::to_string(c.embedding_dim);
    std::ostringstream d;
    d << c.dropout;
    meta["dropout_p"] = d.str();
    meta["similarity"] = similarity_name(c.similarity);
    meta["format"] = "pt";
    safetensors::save(path, state, meta);
}

at::Tensor Model::embed(const at::Tensor& features, EmbeddingMode mode) const {
    if (features.dim() != 4 || features.size(1) != config().in_channels() || features.size(2) != features::kNMels)
        throw Error("features of shape " + shape_str(features.sizes()) + " do not fit this model (expects [B, " +
                    std::to_string(config().in_channels()) + ", 64, T])");
    // Five stride-2 stages with static SAME padding: narrower inputs leave a 5x5 kernel wider than its input.
    constexpr int64_t kMinFrames = 32;  // 0.31 s at hop 160: the fourth stride-2 stage must see a width of 2
    if (features.size(3) < kMinFrames)
        throw Error("input of " + std::to_string(features.size(3)) + " frames is too short for the network (needs at least " +
                    std::to_string(kMinFrames) + " frames, 0.31 s of audio)");
    auto folded = impl_->get_folded();
    c10::InferenceMode guard;
    at::Tensor x = features.to(device(), at::kFloat);
    if (mode != EmbeddingMode::Both) {
        x = x.clone();
        apply_mode(x, mode);
    }
    // Inputs are embedded in chunks; results do not depend on the chunking beyond float rounding. On the CPU, 4
    // windows at a time keep each layer's activations in cache: 1.4-1.5x the pairs/s of 32 at a time
    // (bench_model, session 34: chunks of 2, 4, 8, 32 windows measured). A GPU wants wide batches instead.
    const int64_t chunk_windows = x.is_cuda() ? 64 : 4;
    const int64_t chunk = std::max<int64_t>(1, chunk_windows * 501 / std::max<int64_t>(1, x.size(3)));
    std::vector<at::Tensor> parts;
    for (int64_t i = 0; i < x.size(0); i += chunk) parts.push_back(folded->forward(x.slice(0, i, std::min(x.size(0), i + chunk))));
    return at::cat(parts, 0).to(at::kCPU);
}

at::Tensor Model::embed_traced(const at::Tensor& features, const ActivationHook& hook) const {
    torch::NoGradGuard no_grad;
    auto& net = *impl_->net;
    const bool was_training = net.is_training();
    net.eval();
    at::Tensor e = net.embed(features.to(device(), at::kFloat), hook);
    net.train(was_training);
    return e.to(at::kCPU);
}

at::Tensor Model::similarity_matrix(const at::Tensor& a, const at::Tensor& b) const {
    c10::InferenceMode guard;
    return impl_->net->similarity(a.to(device()), b.to(device())).to(at::kCPU);
}

at::Tensor Model::pair_scores(const at::Tensor& a, const at::Tensor& b) const {
    c10::InferenceMode guard;
    auto& net = *impl_->net;
    at::Tensor A = a.to(device()), B = b.to(device());
    if (net.config.similarity == Similarity::Bilinear) return (at::matmul(A, net.similarity_w) * B).sum(1).to(at::kCPU);
    auto an = A / A.norm(2, {1}, true).clamp_min(1e-8);
    auto bn_ = B / B.norm(2, {1}, true).clamp_min(1e-8);
    return (an * bn_).sum(1).to(at::kCPU);
}

}  // namespace cocola::model
