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
    if (pos >= header.size()) return {};
    if (header[pos] == '(') {
        const auto close = header.find(')', pos);
        return close == std::string::npos ? std::string() : header.substr(pos, close - pos + 1);
    }
    if (header[pos] == '\'') {
        const auto close = header.find('\'', pos + 1);
        return close == std::string::npos ? std::string() : header.substr(pos + 1, close - pos - 1);
    }
    auto end = header.find_first_of(",}", pos);
    return header.substr(pos, end == std::string::npos ? std::string::npos : end - pos);
}

// "(3, 4)", "(5,)" or "()" -> dimensions; anything else (a negative or non-numeric dimension) is an error.
std::vector<int64_t> parse_shape(const std::string& path, const std::string& shape) {
    if (shape.size() < 2 || shape.front() != '(' || shape.back() != ')')
        throw Error(path + ": malformed .npy header (shape '" + shape.substr(0, 40) + "')");
    std::vector<int64_t> dims;
    std::stringstream ss(shape.substr(1, shape.size() - 2));
    std::string item;
    while (std::getline(ss, item, ',')) {
        const auto first = item.find_first_not_of(' ');
        if (first == std::string::npos) continue;
        const auto last = item.find_last_not_of(' ');
        const std::string digits = item.substr(first, last - first + 1);
        if (digits.empty() || digits.size() > 18 || digits.find_first_not_of("0123456789") != std::string::npos)
            throw Error(path + ": malformed .npy header (dimension '" + digits.substr(0, 20) + "')");
        dims.push_back(std::stoll(digits));
    }
    return dims;
}

}  // namespace

Array load(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(path + ": cannot open");
    in.seekg(0, std::ios::end);
    const auto file_size = static_cast<int64_t>(in.tellg());
    in.seekg(0);
    char magic[8];
    if (!in.read(magic, 8) || std::memcmp(magic, "\x93NUMPY", 6) != 0) throw Error(path + ": not a .npy file");
    if (magic[6] < 1 || magic[6] > 3)
        throw Error(path + ": .npy format version " + std::to_string(static_cast<int>(magic[6])) + " is not supported");
    uint32_t hlen = 0;
    if (magic[6] == 1) {
        uint16_t h16 = 0;
        in.read(reinterpret_cast<char*>(&h16), 2);
        hlen = h16;
    } else {
        in.read(reinterpret_cast<char*>(&hlen), 4);
    }
    if (!in || static_cast<int64_t>(hlen) > file_size) throw Error(path + ": truncated .npy header");
    std::string header(hlen, '\0');
    if (!in.read(header.data(), hlen)) throw Error(path + ": truncated .npy header");
    const std::string descr = header_value(header, "descr");
    if (header_value(header, "fortran_order").find("True") != std::string::npos)
        throw Error(path + ": Fortran-order arrays are not supported");
    size_t item_size = 0;
    if (descr == "<f4") item_size = 4;
    else if (descr == "<f8" || descr == "<i8") item_size = 8;
    else throw Error(path + ": unsupported dtype " + descr.substr(0, 40));
    Array a;
    a.shape = parse_shape(path, header_value(header, "shape"));
    // The data must be in the file before anything is allocated for it (a header may claim any shape).
    const int64_t data_bytes = file_size - static_cast<int64_t>(in.tellg());
    int64_t n = 1;
    for (int64_t d : a.shape) {
        if (d != 0 && n > data_bytes / static_cast<int64_t>(item_size) / d) {
            n = -1;
            break;
        }
        n *= d;
    }
    if (n < 0 || n * static_cast<int64_t>(item_size) > data_bytes) throw Error(path + ": truncated .npy data");
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
    } else {
        read_as(int64_t{});
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
