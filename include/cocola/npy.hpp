// NumPy .npy files (version 1.0, little-endian float32/float64/int64, C order): the format our users read.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace cocola::npy {

struct Array {
    std::vector<int64_t> shape;
    std::vector<float> data;  // converted to float32 whatever the stored dtype
    int64_t numel() const;
};

// Reads '<f4', '<f8' or '<i8' arrays in C order. Throws cocola::Error naming the file on anything else.
Array load(const std::string& path);

// Writes a float32 array atomically (temp file + rename).
void save(const std::string& path, const std::vector<int64_t>& shape, const float* data);
inline void save(const std::string& path, const Array& a) { save(path, a.shape, a.data.data()); }

}  // namespace cocola::npy
