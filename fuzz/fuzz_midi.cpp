// Fuzz target: any bytes as a Standard MIDI File -> synth::summarize_midi (cocola synth --midi). Either a summary
// or a cocola::Error naming the file.
#include <cstdint>
#include <vector>

#include "cocola/error.hpp"
#include "cocola/synth.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::vector<uint8_t> bytes(data, data + size);
    try {
        cocola::synth::summarize_midi(bytes, "fuzz.mid");
    } catch (const cocola::Error&) {
    }
    return 0;
}
