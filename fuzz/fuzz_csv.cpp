// Fuzz target: any bytes as CSV text -> csv::parse (score --pairs). Must never crash; records and the error
// must describe the text (every record's line within the text's lines).
#include <cstdint>
#include <cstdlib>
#include <string>

#include "cocola/csv.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string text(reinterpret_cast<const char*>(data), size);
    const auto parsed = cocola::csv::parse(text);
    int lines = 1;
    for (char c : text) lines += c == '\n';
    for (const auto& r : parsed.records)
        if (r.line < 1 || r.line > lines) std::abort();
    return 0;
}
