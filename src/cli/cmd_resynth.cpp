// cocola resynth: audio -> log-mel (-> VAE latents -> log-mel) -> audio, and how far the result is from the input.
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/commands.hpp"
#include "cocola/audio.hpp"
#include "cocola/error.hpp"
#include "cocola/generate.hpp"

namespace cocola::cli {

Runner add_resynth_command(CLI::App& app) {
    struct Opts {
        std::string in, out, via = "mel", vae, vocoder = "griffin-lim", vocoder_model;
        int iterations = 32;
        uint64_t seed = 0;
        bool json = false;
    };
    auto o = std::make_shared<Opts>();
    app.add_option("IN", o->in, "Audio file")->required();
    app.add_option("-o,--out", o->out, "Output WAV (16 kHz mono float)")->required();
    app.add_option("--via", o->via, "mel: the log-mel spectrogram only; vae: through the autoencoder's latents too")
        ->check(CLI::IsMember({"mel", "vae"}))->capture_default_str();
    app.add_option("--vae", o->vae, "VAE weights for --via vae (default: models/vae_default.safetensors)");
    app.add_option("--vocoder", o->vocoder, "Spectrogram to audio: griffin-lim (no weights) or neural")
        ->check(CLI::IsMember({"griffin-lim", "neural"}))->capture_default_str();
    app.add_option("--vocoder-model", o->vocoder_model, "Weights of the neural vocoder (default: "
                                                        "models/vocoder_default.safetensors)");
    app.add_option("--iterations", o->iterations, "Griffin-Lim iterations")->capture_default_str()->check(CLI::Range(0, 10000));
    app.add_option("--seed", o->seed, "Seed of Griffin-Lim's initial phases")->capture_default_str();
    app.add_flag("--json", o->json, "Print the distances as JSON");
    app.footer("Prints the log-mel L1 (dB) and the multi-resolution STFT distance of the output against the input:\n"
               "what the spectrogram (and the autoencoder) lose, heard and measured.");
    return [o]() {
        const auto x = audio::load_mono(o->in);
        const size_t frames = x.size() / static_cast<size_t>(generate::kHopSamples);
        if (frames < 8) throw Error(o->in + ": too short to resynthesize (under 80 ms)");
        std::unique_ptr<generate::Vae> vae;
        if (o->via == "vae")
            vae = std::make_unique<generate::Vae>(generate::Vae::load(o->vae.empty() ? default_generator_path("vae_default", "--vae") : o->vae));
        std::unique_ptr<generate::Vocoder> neural;
        if (o->vocoder == "neural")
            neural = std::make_unique<generate::Vocoder>(generate::Vocoder::load(
                o->vocoder_model.empty() ? default_generator_path("vocoder_default", "--vocoder-model") : o->vocoder_model));
        generate::GriffinLimOptions g;
        g.iterations = o->iterations;
        g.seed = o->seed;
        const auto y = generate::resynthesize(x, vae.get(), g, neural.get());
        audio::write_wav(o->out, y);
        const size_t n = std::min(x.size(), y.size());
        const double l1 = generate::log_mel_l1(x.data(), y.data(), n);
        const double mr = n >= 2048 ? generate::multi_resolution_stft_distance(x.data(), y.data(), n) : -1;
        if (o->json) {
            std::cout << nlohmann::json{{"input", o->in}, {"output", o->out}, {"via", o->via}, {"vocoder", o->vocoder},
                                        {"log_mel_l1_db", l1}, {"mr_stft_distance", mr}, {"seconds", n / 16000.0}}
                             .dump(2)
                      << "\n";
        } else {
            std::printf("%s  (via %s, %s)  log-mel L1 %.3f dB  MR-STFT %.4f\n", o->out.c_str(), o->via.c_str(),
                        o->vocoder.c_str(), l1, mr);
        }
        return 0;
    };
}

}  // namespace cocola::cli
