// .safetensors read/write: 8-byte little-endian header length, a JSON header (dtype, shape, data_offsets per
// tensor, optional "__metadata__" string map), then the raw little-endian tensor bytes.
#pragma once
#include <ATen/ATen.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace cocola::safetensors {

struct File {
    std::vector<std::pair<std::string, at::Tensor>> tensors;  // in file order, on CPU
    std::map<std::string, std::string> metadata;
    const at::Tensor* find(const std::string& name) const;
};

// Throws cocola::Error naming the file: missing, too short, bad header length, bad JSON, unknown dtype,
// offsets outside the data or overlapping, data truncated.
File load(const std::string& path);

// Writes F32/F64/I64 tensors (moved to CPU, contiguous) in the given order, atomically.
void save(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
          const std::map<std::string, std::string>& metadata);

}  // namespace cocola::safetensors
