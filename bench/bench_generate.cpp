// The generator's speeds, at 1 thread and all threads, on 5.12 s chunks:
//   VAE encode and decode : chunks per second (log-mel 64 x 512 <-> latents 8 x 16 x 128)
//   neural vocoder        : real-time factor (seconds of audio made per second), against
//   Griffin-Lim (32 it.)  : the baseline, measured in the same run on the same spectrograms
// Weights: models/vae_default and models/vocoder_default when they ship, else freshly initialised models of the
// default configs (the speed does not depend on the weights).
// Usage: bench_generate [--chunks N]
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <thread>

#include "cocola/generate.hpp"
#include "bench_timing.hpp"
#include "cocola/runtime.hpp"

using namespace cocola;

using bench::seconds_each;

int main(int argc, char** argv) {
    int chunks = 3;
    for (int i = 1; i < argc; ++i)
        if (!std::strcmp(argv[i], "--chunks") && i + 1 < argc) chunks = std::atoi(argv[++i]);
    const std::string models = std::string(COCOLA_BENCH_DIR) + "/../models/";
    const bool shipped_vae = std::filesystem::exists(models + "vae_default.safetensors");
    const bool shipped_voc = std::filesystem::exists(models + "vocoder_default.safetensors");
    generate::Vae vae = shipped_vae ? generate::Vae::load(models + "vae_default.safetensors") : generate::Vae(generate::VaeConfig{}, 0);
    generate::Vocoder voc = shipped_voc ? generate::Vocoder::load(models + "vocoder_default.safetensors")
                                        : generate::Vocoder(generate::VocoderConfig{}, 0);
    std::printf("VAE %s (%lld parameters), vocoder %s (%lld parameters); 5.12 s chunks, mean of %d\n",
                shipped_vae ? "models/vae_default" : "fresh default config", static_cast<long long>(vae.parameter_count()),
                shipped_voc ? "models/vocoder_default" : "fresh default config", static_cast<long long>(voc.parameter_count()),
                chunks);
    const at::Tensor mel = at::randn({1, 64, generate::kChunkFrames}) * 15 - 45;
    const int all = static_cast<int>(std::thread::hardware_concurrency());
    const double audio_seconds = generate::kChunkSamples / 16000.0;
    for (int threads : {1, all}) {
        runtime::set_threads(threads);
        const at::Tensor z = vae.encode(mel);
        const double enc = seconds_each(chunks, [&] { vae.encode(mel); });
        const double dec = seconds_each(chunks, [&] { vae.decode(z); });
        const int passes = voc.config().mel_matching_passes;
        const double neural = seconds_each(chunks, [&] { voc.vocode(mel[0]); });
        voc.mutable_config().mel_matching_passes = 0;
        const double network = seconds_each(chunks, [&] { voc.vocode(mel[0]); });
        voc.mutable_config().mel_matching_passes = passes;
        const double gl = seconds_each(chunks, [&] { generate::griffin_lim(mel[0]); });
        std::printf("  %d thread(s): VAE encode %.2f chunks/s, decode %.2f chunks/s | vocoder %.1fx real time "
                    "(%d mel-matching passes; the network alone %.1fx), Griffin-Lim %.1fx real time -> neural %.1fx faster\n",
                    threads, 1 / enc, 1 / dec, audio_seconds / neural, passes, audio_seconds / network, audio_seconds / gl,
                    gl / neural);
    }
    std::printf("issue's goal: the neural vocoder at least 50x real time on one CPU thread\n");
    return 0;
}
