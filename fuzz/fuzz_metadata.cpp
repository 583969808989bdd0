// Fuzz target: any bytes as a stem dataset's metadata -> data::scan. The first byte picks the file: a Slakh2100
// track's metadata.yaml (yaml-cpp) or a generic track's meta.json (cocola synth's classes, nlohmann-json). A bad
// file must become a warning (the track skipped or its classes unused) or a cocola::Error, never a crash or an
// exception of the parsers' own types.
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "cocola/data.hpp"
#include "cocola/error.hpp"

namespace fs = std::filesystem;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const fs::path root = fs::temp_directory_path() / ("cocola_fuzz_metadata_" + std::to_string(getpid()));
    static bool made = false;
    if (!made) {
        // One tiny silent WAV per layout, so that the readers get as far as matching stems to the metadata.
        const char wav[] = "RIFF\x28\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00\x80\x3e\x00\x00\x00\x7d\x00\x00"
                           "\x02\x00\x10\x00" "data\x04\x00\x00\x00\x00\x00\x00\x00";
        for (const char* p : {"slakh/Track00001/stems", "generic/song1"}) fs::create_directories(root / p);
        for (const char* p : {"slakh/Track00001/stems/S00.wav", "slakh/Track00001/stems/S01.flac", "generic/song1/bass.wav",
                              "generic/song1/drums.wav"})
            std::ofstream(root / p, std::ios::binary).write(wav, sizeof(wav) - 1);
        made = true;
    }
    if (size == 0) return 0;
    const bool yaml = data[0] & 1;
    const fs::path file = yaml ? root / "slakh/Track00001/metadata.yaml" : root / "generic/song1/meta.json";
    std::ofstream(file, std::ios::binary).write(reinterpret_cast<const char*>(data + 1), static_cast<std::streamsize>(size - 1));
    try {
        cocola::data::scan((root / (yaml ? "slakh" : "generic")).string(),
                           yaml ? cocola::data::Layout::Slakh : cocola::data::Layout::Generic);
    } catch (const cocola::Error&) {
    }
    return 0;
}
