// CompoNet's latent pool (internal to src/generate): training examples (an input and an output sub-mix of one
// 5.12 s chunk, drawn independently, with their stem tags) encoded once by the VAE and kept in a file, since on a
// CPU encoding costs more than a denoiser step.
#pragma once
#include <ATen/ATen.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "cocola/componet.hpp"
#include "cocola/data.hpp"

namespace cocola::componet {

struct PoolItem {
    std::vector<Tag> in, out;
};

struct LatentPool {
    std::vector<PoolItem> items, val_items;
    at::Tensor out_latents, in_latents;  // [N, C, h, w] float16: the output and input sub-mixes' scaled latents
    at::Tensor val_out, val_in;          // the same for fixed validation chunks
    int64_t downsampling = 4;            // the VAE's
    size_t size() const { return items.size(); }
    size_t val_size() const { return val_items.size(); }
    int64_t width() const { return out_latents.size(3); }
};

// What a CompoNet file records of the VAE its latents come from.
nlohmann::json vae_identity(const generate::Vae& vae);

// Reads the pool at `path`, or draws, encodes and writes it (atomically) when the file is absent. A pool made
// with another VAE or size is refused with a message naming the file.
LatentPool open_latent_pool(const std::string& path, const ComponetTrainOptions& o, const generate::Vae& vae,
                            const std::vector<std::unique_ptr<data::StemCache>>& caches,
                            const std::function<void(size_t, size_t)>& progress);

std::string default_pool_path(const ComponetTrainOptions& o);

}  // namespace cocola::componet
