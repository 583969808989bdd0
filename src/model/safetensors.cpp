#include "cocola/safetensors.hpp"
#include "cocola/safetensors_header.hpp"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cocola/error.hpp"
#include "cocola/fsutil.hpp"
#include "model/torch_includes.hpp"

namespace cocola::safetensors {
namespace {

struct DType {
    const char* name;
    at::ScalarType type;
    size_t size;
};
const DType kDTypes[] = {{"F32", at::kFloat, 4}, {"F64", at::kDouble, 8}, {"I64", at::kLong, 8},
                         {"I32", at::kInt, 4},   {"F16", at::kHalf, 2},   {"BF16", at::kBFloat16, 2},
                         {"U8", at::kByte, 1},   {"I8", at::kChar, 1},    {"BOOL", at::kBool, 1}};

const DType* dtype_by_name(const std::string& s) {
    for (const auto& d : kDTypes)
        if (s == d.name) return &d;
    return nullptr;
}
const DType* dtype_by_type(at::ScalarType t) {
    for (const auto& d : kDTypes)
        if (t == d.type) return &d;
    return nullptr;
}

}  // namespace

const at::Tensor* File::find(const std::string& name) const {
    for (const auto& [n, t] : tensors)
        if (n == name) return &t;
    return nullptr;
}

File load(const std::string& path) {
    std::ifstream in(path, std::ios::binary | std::ios::ate);
    if (!in) throw Error(path + ": cannot open (no such file?)");
    const int64_t file_size = in.tellg();
    in.seekg(0);
    const Header h = read_header(in, file_size, path);
    File f;
    f.metadata = h.metadata;
    const int64_t data_size = h.data_size;
    std::string data(static_cast<size_t>(data_size), '\0');
    if (!in.read(data.data(), data_size)) throw Error(path + ": truncated data section");
    for (const auto& e : h.entries) {
        auto t = at::empty(e.shape, at::TensorOptions().dtype(dtype_by_name(e.dtype)->type));
        std::memcpy(t.data_ptr(), data.data() + e.begin, static_cast<size_t>(e.end - e.begin));
        // No weights, optimizer state or statistics we write is ever NaN or infinite: such a file is damaged, and
        // would otherwise give NaN results with exit 0.
        if (t.is_floating_point() && t.numel() > 0 && !at::isfinite(t).all().item<bool>())
            throw Error(path + ": tensor " + e.name + " holds NaN or infinite values");
        f.tensors.emplace_back(e.name, t);
    }
    return f;
}

void save(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
          const std::map<std::string, std::string>& metadata) {
    nlohmann::ordered_json j;
    if (!metadata.empty()) {
        nlohmann::ordered_json m = nlohmann::ordered_json::object();
        for (const auto& [k, v] : metadata) m[k] = v;
        j["__metadata__"] = m;
    }
    std::vector<at::Tensor> cpu;
    int64_t offset = 0;
    for (const auto& [name, t0] : tensors) {
        at::Tensor t = t0.detach().to(at::kCPU).contiguous();
        const DType* dt = dtype_by_type(t.scalar_type());
        if (!dt) throw Error(path + ": cannot store tensor " + name + " of this dtype");
        const int64_t bytes = t.numel() * static_cast<int64_t>(dt->size);
        j[name] = {{"dtype", dt->name}, {"shape", t.sizes().vec()}, {"data_offsets", {offset, offset + bytes}}};
        offset += bytes;
        cpu.push_back(t);
    }
    std::string header = j.dump();
    header.append((8 - header.size() % 8) % 8, ' ');  // align the data section to 8 bytes
    std::string out;
    out.reserve(8 + header.size() + static_cast<size_t>(offset));
    uint64_t hl = header.size();
    out.append(reinterpret_cast<const char*>(&hl), 8);
    out += header;
    for (const auto& t : cpu) out.append(static_cast<const char*>(t.data_ptr()), t.numel() * t.element_size());
    fsutil::write_file_atomically(path, out);
}

}  // namespace cocola::safetensors
