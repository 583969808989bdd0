// The torch-free half of the .safetensors reader: the 8-byte length and the JSON header, checked against the file
// (dtypes, shapes, offsets inside the data and owning their bytes alone, no duplicate keys) before any tensor is
// made. safetensors.hpp builds the tensors from it; the fuzz target fuzz_safetensors feeds it arbitrary bytes.
#pragma once
#include <cstdint>
#include <istream>
#include <map>
#include <string>
#include <vector>

namespace cocola::safetensors {

struct HeaderEntry {
    std::string name;
    std::string dtype;  // "F32", "F64", "I64", "I32", "F16", "BF16", "U8", "I8", "BOOL"
    size_t dtype_size = 0;
    std::vector<int64_t> shape;
    int64_t begin = 0, end = 0;  // byte offsets into the data section
};
struct Header {
    std::vector<HeaderEntry> entries;  // in file order
    std::map<std::string, std::string> metadata;
    int64_t data_start = 0, data_size = 0;  // where the data section starts in the file, and its bytes
};

// Bytes per element of a dtype name; 0 for a name the format does not have.
size_t dtype_size(const std::string& dtype);

// Reads and checks the header from `in` (at the file's start; `file_size` bytes in all). Throws cocola::Error naming
// `path`: too short, bad header length, bad JSON, a key twice, unknown dtype, a negative dimension, offsets that do
// not match the shape or lie outside the data, tensors sharing bytes.
Header read_header(std::istream& in, int64_t file_size, const std::string& path);

}  // namespace cocola::safetensors
