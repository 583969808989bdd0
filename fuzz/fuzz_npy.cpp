// Fuzz target: any bytes as a .npy file -> npy::load. Either an array whose data matches its shape, or a
// cocola::Error.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "cocola/error.hpp"
#include "cocola/npy.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const std::string path = "/tmp/cocola_fuzz_npy_" + std::to_string(getpid()) + ".npy";
    FILE* f = std::fopen(path.c_str(), "wb");
    if (!f) return 0;
    if (size) std::fwrite(data, 1, size, f);
    std::fclose(f);
    try {
        const auto a = cocola::npy::load(path);
        if (a.numel() != static_cast<int64_t>(a.data.size())) std::abort();
    } catch (const cocola::Error&) {
    }
    return 0;
}
