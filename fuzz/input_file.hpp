// For fuzz targets whose reader takes a path (libsndfile, the .npy loader): the input bytes in a file of this
// process, rewritten for every input.
#pragma once
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>

// The file's path, or "" when it could not be written.
inline std::string write_input_file(const char* suffix, const uint8_t* data, size_t size) {
    const std::string path =
        (std::filesystem::temp_directory_path() / ("cocola_fuzz_" + std::to_string(getpid()) + suffix)).string();
    FILE* f = std::fopen(path.c_str(), "wb");
    if (!f) return {};
    const bool ok = size == 0 || std::fwrite(data, 1, size, f) == size;
    return std::fclose(f) == 0 && ok ? path : std::string();
}
