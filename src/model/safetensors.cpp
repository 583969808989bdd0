#include "cocola/safetensors.hpp"

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
    if (file_size < 8) throw Error(path + ": not a .safetensors file (shorter than its 8-byte header length)");
    uint64_t header_len = 0;
    in.read(reinterpret_cast<char*>(&header_len), 8);
    if (header_len == 0 || header_len > static_cast<uint64_t>(file_size - 8) || header_len > (100u << 20))
        throw Error(path + ": bad header length " + std::to_string(header_len) + " for a file of " +
                    std::to_string(file_size) + " bytes (truncated or not a .safetensors file)");
    std::string header(header_len, '\0');
    in.read(header.data(), static_cast<std::streamsize>(header_len));
    nlohmann::ordered_json j;
    // The format forbids duplicate keys; a JSON parser silently keeps one of them, so they are caught while parsing.
    std::vector<std::vector<std::string>> keys_of_open_objects;
    std::string duplicate_key;
    const auto watch_keys = [&](int, nlohmann::ordered_json::parse_event_t event, nlohmann::ordered_json& parsed) {
        using E = nlohmann::ordered_json::parse_event_t;
        if (event == E::object_start) keys_of_open_objects.emplace_back();
        else if (event == E::object_end && !keys_of_open_objects.empty()) keys_of_open_objects.pop_back();
        else if (event == E::key && !keys_of_open_objects.empty() && parsed.is_string()) {
            auto& keys = keys_of_open_objects.back();
            const std::string k = parsed.get<std::string>();
            if (std::find(keys.begin(), keys.end(), k) != keys.end() && duplicate_key.empty()) duplicate_key = k;
            keys.push_back(k);
        }
        return true;
    };
    try {
        j = nlohmann::ordered_json::parse(header, watch_keys);
    } catch (const std::exception& e) {
        // The parser's message can quote the whole header: keep its first line short.
        std::string why = e.what();
        if (why.size() > 300) why = why.substr(0, 300) + "...";
        throw Error(path + ": header is not valid JSON (" + why + ")");
    }
    if (!duplicate_key.empty()) throw Error(path + ": header has the key \"" + duplicate_key + "\" twice");
    if (!j.is_object()) throw Error(path + ": header is not a JSON object");
    const int64_t data_start = 8 + static_cast<int64_t>(header_len);
    const int64_t data_size = file_size - data_start;
    File f;
    struct Entry {
        std::string name;
        const DType* dt;
        std::vector<int64_t> shape;
        int64_t begin, end;
    };
    std::vector<Entry> entries;
    for (auto it = j.begin(); it != j.end(); ++it) {
        if (it.key() == "__metadata__") {
            if (!it.value().is_object()) throw Error(path + ": __metadata__ is not an object");
            for (auto m = it.value().begin(); m != it.value().end(); ++m)
                f.metadata[m.key()] = m.value().is_string() ? m.value().get<std::string>() : m.value().dump();
            continue;
        }
        const auto& v = it.value();
        try {
            Entry e{it.key(), dtype_by_name(v.at("dtype").get<std::string>()), v.at("shape").get<std::vector<int64_t>>(),
                    v.at("data_offsets").at(0).get<int64_t>(), v.at("data_offsets").at(1).get<int64_t>()};
            if (!e.dt) throw Error(path + ": tensor " + it.key() + " has unsupported dtype " + v.at("dtype").dump());
            int64_t n = 1;
            for (auto d : e.shape) {
                if (d < 0) throw Error(path + ": tensor " + it.key() + " has a negative dimension");
                n *= d;
            }
            if (e.begin < 0 || e.end < e.begin || e.end - e.begin != n * static_cast<int64_t>(e.dt->size))
                throw Error(path + ": tensor " + it.key() + " has data_offsets that do not match its shape and dtype");
            if (e.end > data_size)
                throw Error(path + ": truncated: tensor " + it.key() + " ends at byte " + std::to_string(e.end) +
                            " of a data section of " + std::to_string(data_size) + " bytes");
            entries.push_back(std::move(e));
        } catch (const nlohmann::json::exception& ex) {
            throw Error(path + ": malformed header entry for " + it.key() + " (" + ex.what() + ")");
        }
    }
    // Each tensor owns its bytes: two tensors sharing or overlapping bytes are refused (the format forbids it). Sorted
    // by start, any overlap shows between neighbours. Empty tensors own no bytes.
    std::vector<const Entry*> by_offset;
    for (const auto& e : entries)
        if (e.end > e.begin) by_offset.push_back(&e);
    std::sort(by_offset.begin(), by_offset.end(), [](const Entry* a, const Entry* b) {
        return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
    });
    for (size_t i = 1; i < by_offset.size(); ++i) {
        const Entry &a = *by_offset[i - 1], &b = *by_offset[i];
        if (b.begin < a.end)
            throw Error(path + ": tensors " + a.name + " and " + b.name + " share bytes (data_offsets [" +
                        std::to_string(a.begin) + ", " + std::to_string(a.end) + ") and [" + std::to_string(b.begin) +
                        ", " + std::to_string(b.end) + "))");
    }
    std::string data(static_cast<size_t>(data_size), '\0');
    if (!in.read(data.data(), data_size)) throw Error(path + ": truncated data section");
    for (const auto& e : entries) {
        auto t = at::empty(e.shape, at::TensorOptions().dtype(e.dt->type));
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
