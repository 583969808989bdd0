// The COCOLA model: encoder f (EfficientNet-B0 -> dropout -> Linear 1280->512 -> LayerNorm -> tanh) and the
// similarity sim(a, b) (bilinear a^T W b, or cosine for the paper's ablation).
// Parameter names equal the official PyTorch state_dict keys, so a converted official checkpoint loads as is.
#pragma once
#include <ATen/ATen.h>

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "cocola/features.hpp"

namespace cocola::model {

enum class Similarity { Bilinear, Cosine };
// Std of the normal draw of a new bilinear W, as the reference initialises it.
constexpr double kReferenceSimilarityInitStd = 0.05;
// Which channels of a 2-channel (hpss) input the encoder sees. Random picks one of the three per example
// (the reference's training-time augmentation).
enum class EmbeddingMode { Both, Harmonic, Percussive, Random };

Similarity parse_similarity(const std::string& s);  // "bilinear" | "cosine"
std::string similarity_name(Similarity s);
EmbeddingMode parse_mode(const std::string& s);     // "both" | "harmonic" | "percussive"
std::string mode_name(EmbeddingMode m);

struct Config {
    features::Frontend frontend = features::Frontend::Hpss;
    int embedding_dim = 512;
    double dropout = 0.1;
    Similarity similarity = Similarity::Bilinear;
    int in_channels() const { return features::num_channels(frontend); }
};

// Called with (stage name, activation) during a traced forward: "stem_swish", "block00_out", ..., "head_bn",
// "head_swish", "avgpool", "projection", "layer_norm", "embedding".
using ActivationHook = std::function<void(const std::string&, const at::Tensor&)>;

class CocolaNet;  // the torch::nn::Module tree (src/model/cocola_net.hpp)

class Model {
   public:
    explicit Model(const Config& config, uint64_t seed = 0);
    ~Model();
    Model(Model&&) noexcept;
    Model& operator=(Model&&) noexcept;

    // Loads a .safetensors checkpoint. The config comes from its __metadata__ (input_type, embedding_dim,
    // dropout_p, similarity); a file with missing, unexpected or mis-shaped tensors is refused with a message
    // listing every problem.
    static Model load(const std::string& path);
    void save(const std::string& path, const std::map<std::string, std::string>& extra_metadata = {}) const;

    const Config& config() const;
    void to(const at::Device& device);
    at::Device device() const;

    // Inference: features [B, C, 64, T] -> embeddings [B, D] (after LayerNorm and tanh). Eval mode, no
    // gradients, BatchNorm folded into the convolutions, channels-last. Splits large batches.
    at::Tensor embed(const at::Tensor& features, EmbeddingMode mode = EmbeddingMode::Both) const;
    // The same chain through the unfolded modules, reporting every stage to `hook` (for parity tests).
    at::Tensor embed_traced(const at::Tensor& features, const ActivationHook& hook) const;

    at::Tensor similarity_matrix(const at::Tensor& a, const at::Tensor& b) const;  // [Na, Nb]
    at::Tensor pair_scores(const at::Tensor& a, const at::Tensor& b) const;        // [N], row i vs row i

    // For training: the module tree (train()/eval(), parameters(), forward with autograd).
    CocolaNet& net();
    const CocolaNet& net() const;
    // Training changes the weights; the folded inference copy is rebuilt on the next embed().
    void weights_changed();

   private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// Applies an embedding mode to 2-channel features in place (zeroes the other channel); no-op for 1 channel.
void apply_mode(at::Tensor& features, EmbeddingMode mode, at::Generator* gen = nullptr);

}  // namespace cocola::model
