// Minimal .npy reader/writer (format version 1.0/2.0), enough for float features, embeddings and golden data.
#include "cocola/npy.hpp"

#include <cstring>
#include <fstream>
#include <sstream>

#include "cocola/error.hpp"
#include "cocola/fsutil.hpp"

namespace cocola::npy {

int64_t Array::numel() const {
    int64_t n = 1;
    for (auto d : shape) n *= d;
    return n;
}

namespace {

std::string header_value(const std::string& header, const std::string& key) {
    auto pos = header.find("'" + key + "'");
    if (pos == std::string::npos) return {};
    pos = header.find(':', pos);
    if (pos == std::string::npos) return {};
    ++pos;
    while (pos < header.size() && header[pos] == ' ') ++pos;
    if (header[pos] == '(') return header.substr(pos, header.find(')', pos) - pos + 1);
    if (header[pos] == '\'') return header.substr(pos + 1, header.find('\'', pos + 1) - pos - 1);
    auto end = header.find_first_of(",}", pos);
    return header.substr(pos, end - pos);
}

}  // namespace

Array load(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(path + ": cannot open");
    char magic[8];
    if (!in.read(magic, 8) || std::memcmp(magic, "\x93NUMPY", 6) != 0) throw Error(path + ": not a .npy file");
    uint32_t hlen = 0;
    if (magic[6] == 1) {
        uint16_t h16;
        in.read(reinterpret_cast<char*>(&h16), 2);
        hlen = h16;
    } else {
        in.read(reinterpret_cast<char*>(&hlen), 4);
    }
    std::string header(hlen, '\0');
    if (!in.read(header.data(), hlen)) throw Error(path + ": truncated .npy header");
    const std::string descr = header_value(header, "descr");
    if (header_value(header, "fortran_order").find("True") != std::string::npos)
        throw Error(path + ": Fortran-order arrays are not supported");
    Array a;
    std::string shape = header_value(header, "shape");
    std::stringstream ss(shape.substr(1, shape.size() - 2));
    std::string item;
    while (std::getline(ss, item, ',')) {
        if (item.find_first_not_of(' ') == std::string::npos) continue;
        a.shape.push_back(std::stoll(item));
    }
    const int64_t n = a.numel();
    a.data.resize(static_cast<size_t>(n));
    auto read_as = [&](auto tag) {
        using T = decltype(tag);
        std::vector<T> raw(static_cast<size_t>(n));
        if (!in.read(reinterpret_cast<char*>(raw.data()), static_cast<std::streamsize>(n * sizeof(T))))
            throw Error(path + ": truncated .npy data");
        for (int64_t i = 0; i < n; ++i) a.data[i] = static_cast<float>(raw[i]);
    };
    if (descr == "<f4") {
        if (!in.read(reinterpret_cast<char*>(a.data.data()), static_cast<std::streamsize>(n * 4)))
            throw Error(path + ": truncated .npy data");
    } else if (descr == "<f8") {
        read_as(double{});
    } else if (descr == "<i8") {
        read_as(int64_t{});
    } else {
        throw Error(path + ": unsupported dtype " + descr);
    }
    return a;
}

void save(const std::string& path, const std::vector<int64_t>& shape, const float* data) {
    std::string dims;
    int64_t n = 1;
    for (size_t i = 0; i < shape.size(); ++i) {
        dims += std::to_string(shape[i]);
        if (shape.size() == 1 || i + 1 < shape.size()) dims += ",";
        if (i + 1 < shape.size()) dims += " ";
        n *= shape[i];
    }
    std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + "), }";
    // Pad so that magic(6)+version(2)+len(2)+header is a multiple of 64, ending in '\n'.
    size_t total = 10 + header.size() + 1;
    header.append((64 - total % 64) % 64, ' ');
    header.push_back('\n');
    std::string bytes("\x93NUMPY\x01\x00", 8);
    uint16_t hlen = static_cast<uint16_t>(header.size());
    bytes.append(reinterpret_cast<const char*>(&hlen), 2);
    bytes += header;
    bytes.append(reinterpret_cast<const char*>(data), static_cast<size_t>(n) * 4);
    fsutil::write_file_atomically(path, bytes);
}

}  // namespace cocola::npy
