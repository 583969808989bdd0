#include "cocola/fsutil.hpp"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <unistd.h>

#include "cocola/error.hpp"

namespace cocola::fsutil {

void write_atomically(const std::string& path, const std::function<void(const std::string&)>& write) {
    namespace fs = std::filesystem;
    fs::path target(path);
    if (target.has_parent_path() && !fs::exists(target.parent_path())) {
        std::error_code ec;
        fs::create_directories(target.parent_path(), ec);
        if (ec) throw Error(path + ": cannot create directory " + target.parent_path().string() + ": " + ec.message());
    }
    // The temp file sits next to the target so that rename() stays on one file system and is atomic.
    std::string tmp = path + ".tmp." + std::to_string(::getpid());
    try {
        write(tmp);
    } catch (...) {
        std::remove(tmp.c_str());
        throw;
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
        std::remove(tmp.c_str());
        throw Error(path + ": cannot write (rename of temp file failed)");
    }
}

void write_file_atomically(const std::string& path, const std::string& bytes) {
    write_atomically(path, [&](const std::string& tmp) {
        std::ofstream out(tmp, std::ios::binary);
        if (!out) throw Error(path + ": cannot open for writing");
        out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
        out.flush();
        if (!out) throw Error(path + ": write failed (disk full?)");
    });
}

std::string stem(const std::string& path) { return std::filesystem::path(path).stem().string(); }

}  // namespace cocola::fsutil
