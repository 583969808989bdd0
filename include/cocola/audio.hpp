// Audio input/output: any file libsndfile reads -> mono float32 at 16 kHz; float WAV out.
#pragma once
#include <cstddef>
#include <functional>
#include <string>
#include <vector>

namespace cocola::audio {

constexpr int kSampleRate = 16000;  // every model in COCOLA works at 16 kHz

// What load_mono decodes (a file outside these is refused with a message that says why): sample rates from 1 kHz to
// 768 kHz, at most 4 hours and at most 2^29 frames (2 GiB of float samples) before resampling.
constexpr int kMinSampleRate = 1000;
constexpr int kMaxSampleRate = 768000;
constexpr long long kMaxSeconds = 4 * 3600;
constexpr long long kMaxFrames = 1LL << 29;
constexpr float kMaxAmplitude = 1e6f;  // float samples beyond +-1e6 (120 dB over full scale) are refused

struct FileInfo {
    int sample_rate = 0;
    int channels = 0;
    long long frames = 0;
    std::string format;  // e.g. "WAV (PCM 24-bit)"
};

// Where the audio module's warnings go (a file decoded with a caveat, e.g. a data chunk that ends inside a frame).
// The library never prints: the CLI sets a handler that prints to stderr, the Python module one that warns. No
// handler: warnings are dropped. Calls are serialised (load_mono may run on several threads).
using WarningHandler = std::function<void(const std::string& message)>;
void set_warning_handler(WarningHandler handler);
void warn(const std::string& message);

// Header facts without decoding the samples. Throws cocola::Error if the file cannot be opened as audio.
FileInfo probe(const std::string& path);

// Decode `path`, average its channels to mono (as the reference does), resample to `target_rate` with soxr
// (high quality) when the file has another rate. Throws cocola::Error naming the file for: a missing file, a
// file that is not audio, a truncated file, zero samples, NaN/Inf samples, a sample rate or length outside the
// limits above, samples beyond kMaxAmplitude, and a file too large for the memory at hand. Silence is valid.
std::vector<float> load_mono(const std::string& path, int target_rate = kSampleRate);

// Audio already in memory (e.g. a numpy array from the Python module): `channels` planes of `frames` samples each
// ([channels, frames], row-major) at `rate` Hz, averaged to mono and resampled exactly as load_mono does a file, with
// the same checks; errors name `what`.
std::vector<float> mono_from_planar(const float* data, int channels, long long frames, int rate, const std::string& what,
                                    int target_rate = kSampleRate);

// Resample mono float audio with soxr HQ. Returns the input unchanged when the rates are equal; throws
// cocola::Error for a rate outside kMinSampleRate..kMaxSampleRate.
std::vector<float> resample(const std::vector<float>& x, int from_rate, int to_rate);

// Write interleaved float samples as a 32-bit float WAV, atomically (temp file + rename).
void write_wav(const std::string& path, const float* samples, size_t frames, int sample_rate, int channels = 1);
inline void write_wav(const std::string& path, const std::vector<float>& mono, int sample_rate = kSampleRate) {
    write_wav(path, mono.data(), mono.size(), sample_rate, 1);
}

// Runs mono audio `x` at `rate` Hz through a chain of SoX effects (libsox), each given as its SoX command-line
// words, e.g. {{"equalizer", "1000", "1q", "-6"}, {"reverb", "50"}}. Returns as many samples as came in (a tail
// such as reverb's is cut). The chain runs 18 dB below the input's level, so boosts do not clip. Throws
// cocola::Error naming the effect on an unknown effect or options SoX refuses.
using EffectChain = std::vector<std::vector<std::string>>;
std::vector<float> apply_effects(const std::vector<float>& x, int rate, const EffectChain& chain);
// The chain as one line, effects separated by " : " (SoX's own notation).
std::string effect_chain_text(const EffectChain& chain);

}  // namespace cocola::audio
