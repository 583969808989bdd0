// Fuzz target: any bytes as a .safetensors file -> its header reader (length, JSON, dtypes, shapes, offsets, byte
// ownership). Either a header every entry of which lies inside the data section, or a cocola::Error.
#include <cstdint>
#include <cstdlib>
#include <sstream>
#include <string>

#include "cocola/error.hpp"
#include "cocola/safetensors_header.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::istringstream in(std::string(reinterpret_cast<const char*>(data), size));
    try {
        const auto h = cocola::safetensors::read_header(in, static_cast<int64_t>(size), "fuzz.safetensors");
        for (const auto& e : h.entries)
            if (e.begin < 0 || e.end < e.begin || e.end > h.data_size || h.data_start + h.data_size != static_cast<int64_t>(size))
                std::abort();
    } catch (const cocola::Error&) {
    }
    return 0;
}
