// Audio input/output: any file libsndfile reads -> mono float32 at 16 kHz; float WAV out.
#pragma once
#include <cstddef>
#include <string>
#include <vector>

namespace cocola::audio {

constexpr int kSampleRate = 16000;  // every model in COCOLA works at 16 kHz

struct FileInfo {
    int sample_rate = 0;
    int channels = 0;
    long long frames = 0;
    std::string format;  // e.g. "WAV (PCM 24-bit)"
};

// Header facts without decoding the samples. Throws cocola::Error if the file cannot be opened as audio.
FileInfo probe(const std::string& path);

// Decode `path`, average its channels to mono (as the reference does), resample to `target_rate` with soxr
// (high quality) when the file has another rate. Throws cocola::Error naming the file for: a missing file, a
// file that is not audio, a truncated file, zero samples, NaN/Inf samples. Silence is valid.
std::vector<float> load_mono(const std::string& path, int target_rate = kSampleRate);

// Resample mono float audio with soxr HQ. Returns the input unchanged when the rates are equal.
std::vector<float> resample(const std::vector<float>& x, int from_rate, int to_rate);

// Write interleaved float samples as a 32-bit float WAV, atomically (temp file + rename).
void write_wav(const std::string& path, const float* samples, size_t frames, int sample_rate, int channels = 1);
inline void write_wav(const std::string& path, const std::vector<float>& mono, int sample_rate = kSampleRate) {
    write_wav(path, mono.data(), mono.size(), sample_rate, 1);
}

}  // namespace cocola::audio
