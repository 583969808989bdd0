#include "cocola/safetensors_header.hpp"

#include <algorithm>
#include <cstdint>
#include <nlohmann/json.hpp>

#include "cocola/error.hpp"

namespace cocola::safetensors {

size_t dtype_size(const std::string& dtype) {
    static const std::map<std::string, size_t> sizes = {{"F32", 4}, {"F64", 8}, {"I64", 8}, {"I32", 4},  {"F16", 2},
                                                        {"BF16", 2}, {"U8", 1}, {"I8", 1},  {"BOOL", 1}};
    const auto it = sizes.find(dtype);
    return it == sizes.end() ? 0 : it->second;
}

Header read_header(std::istream& in, int64_t file_size, const std::string& path) {
    if (file_size < 8) throw Error(path + ": not a .safetensors file (shorter than its 8-byte header length)");
    uint64_t header_len = 0;
    in.read(reinterpret_cast<char*>(&header_len), 8);
    if (header_len == 0 || header_len > static_cast<uint64_t>(file_size - 8) || header_len > (100u << 20))
        throw Error(path + ": bad header length " + std::to_string(header_len) + " for a file of " +
                    std::to_string(file_size) + " bytes (truncated or not a .safetensors file)");
    std::string header(header_len, '\0');
    if (!in.read(header.data(), static_cast<std::streamsize>(header_len))) throw Error(path + ": truncated header");
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
    if (!duplicate_key.empty()) throw Error(path + ": header has the key \"" + duplicate_key.substr(0, 200) + "\" twice");
    if (!j.is_object()) throw Error(path + ": header is not a JSON object");
    Header h;
    h.data_start = 8 + static_cast<int64_t>(header_len);
    h.data_size = file_size - h.data_start;
    for (auto it = j.begin(); it != j.end(); ++it) {
        if (it.key() == "__metadata__") {
            if (!it.value().is_object()) throw Error(path + ": __metadata__ is not an object");
            for (auto m = it.value().begin(); m != it.value().end(); ++m)
                h.metadata[m.key()] = m.value().is_string() ? m.value().get<std::string>() : m.value().dump();
            continue;
        }
        const auto& v = it.value();
        // Numbers are checked to be integers in range before they are read as int64: nlohmann-json parses
        // 4.4e20 (or 444444442404444444440) as a double, and converting that to int64 is undefined behaviour
        // (found by fuzz_safetensors).
        const auto is_int64 = [](const nlohmann::ordered_json& x) {
            return x.is_number_integer() &&
                   (!x.is_number_unsigned() || x.get<uint64_t>() <= static_cast<uint64_t>(INT64_MAX));
        };
        const auto malformed = [&](const std::string& what) {
            return Error(path + ": malformed header entry for " + it.key() + " (" + what + ")");
        };
        if (!v.is_object() || !v.contains("dtype") || !v["dtype"].is_string()) throw malformed("no dtype string");
        if (!v.contains("shape") || !v["shape"].is_array() ||
            !std::all_of(v["shape"].begin(), v["shape"].end(), is_int64))
            throw malformed("shape is not a list of integers");
        if (!v.contains("data_offsets") || !v["data_offsets"].is_array() || v["data_offsets"].size() != 2 ||
            !is_int64(v["data_offsets"][0]) || !is_int64(v["data_offsets"][1]))
            throw malformed("data_offsets is not two integers");
        try {
            HeaderEntry e{it.key(), v.at("dtype").get<std::string>(), 0, v.at("shape").get<std::vector<int64_t>>(),
                          v.at("data_offsets").at(0).get<int64_t>(), v.at("data_offsets").at(1).get<int64_t>()};
            e.dtype_size = dtype_size(e.dtype);
            if (!e.dtype_size) throw Error(path + ": tensor " + it.key() + " has unsupported dtype " + v.at("dtype").dump());
            // Elements counted without overflow: a shape larger than the data section cannot match it anyway.
            int64_t n = 1;
            bool too_large = false;
            for (auto d : e.shape) {
                if (d < 0) throw Error(path + ": tensor " + it.key() + " has a negative dimension");
                if (d != 0 && n > (h.data_size / static_cast<int64_t>(e.dtype_size)) / d) too_large = true;
                else n *= d;
            }
            if (std::find(e.shape.begin(), e.shape.end(), 0) != e.shape.end()) n = 0, too_large = false;
            if (too_large)
                throw Error(path + ": truncated: tensor " + it.key() + " has more elements than the data section holds");
            if (e.begin < 0 || e.end < e.begin || e.end - e.begin != n * static_cast<int64_t>(e.dtype_size))
                throw Error(path + ": tensor " + it.key() + " has data_offsets that do not match its shape and dtype");
            if (e.end > h.data_size)
                throw Error(path + ": truncated: tensor " + it.key() + " ends at byte " + std::to_string(e.end) +
                            " of a data section of " + std::to_string(h.data_size) + " bytes");
            h.entries.push_back(std::move(e));
        } catch (const nlohmann::json::exception& ex) {
            throw Error(path + ": malformed header entry for " + it.key() + " (" + ex.what() + ")");
        }
    }
    // Each tensor owns its bytes: two tensors sharing or overlapping bytes are refused (the format forbids it). Sorted
    // by start, any overlap shows between neighbours. Empty tensors own no bytes.
    std::vector<const HeaderEntry*> by_offset;
    for (const auto& e : h.entries)
        if (e.end > e.begin) by_offset.push_back(&e);
    std::sort(by_offset.begin(), by_offset.end(), [](const HeaderEntry* a, const HeaderEntry* b) {
        return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
    });
    for (size_t i = 1; i < by_offset.size(); ++i) {
        const HeaderEntry &a = *by_offset[i - 1], &b = *by_offset[i];
        if (b.begin < a.end)
            throw Error(path + ": tensors " + a.name + " and " + b.name + " share bytes (data_offsets [" +
                        std::to_string(a.begin) + ", " + std::to_string(a.end) + ") and [" + std::to_string(b.begin) +
                        ", " + std::to_string(b.end) + "))");
    }
    return h;
}

}  // namespace cocola::safetensors
