// Fuzz target: any bytes as an audio file -> load_mono (libsndfile + our checks), then both front-ends on a bounded
// prefix. A cocola::Error is the right answer to bad bytes; a crash, a hang, a sanitizer report or an uncaught
// exception of another type is a bug.
#include <cstdint>
#include <string>

#include "cocola/audio.hpp"
#include "cocola/error.hpp"
#include "cocola/features.hpp"
#include "input_file.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    // libsndfile reads files: one per process, rewritten for every input.
    const std::string path = write_input_file(".bin", data, size);
    if (path.empty()) return 0;
    try {
        auto x = cocola::audio::load_mono(path);
        if (x.size() > 48000) x.resize(48000);  // 3 s: the front-ends' cost, not their length, is not the point here
        for (auto fe : {cocola::features::Frontend::Mel, cocola::features::Frontend::Hpss})
            if (x.size() >= cocola::features::min_samples(fe)) cocola::features::compute(fe, x.data(), x.size());
    } catch (const cocola::Error&) {
    }
    return 0;
}
