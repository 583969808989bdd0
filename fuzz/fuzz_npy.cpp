// Fuzz target: any bytes as a .npy file -> npy::load. Either an array whose data matches its shape, or a
// cocola::Error.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "cocola/error.hpp"
#include "cocola/npy.hpp"
#include "input_file.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string path = write_input_file(".npy", data, size);
    if (path.empty()) return 0;
    try {
        const auto a = cocola::npy::load(path);
        if (a.numel() != static_cast<int64_t>(a.data.size())) std::abort();
    } catch (const cocola::Error&) {
    }
    return 0;
}
