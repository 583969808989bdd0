// CompoNet's speed, at 1 thread and all threads, on one 5.12 s chunk (latents 8 x 16 x 128):
//   denoiser          : U-Net + ControlNet forward passes per second, batch 2 (the prompt and the empty prompt,
//                       as classifier-free guidance runs them together)
//   one chunk         : seconds to sample a chunk with DDIM (--steps, default 50) and guidance, and its
//                       real-time factor (5.12 s / that time)
// The baseline of the ratio printed: --steps denoiser passes alone, measured in the same run, against the whole
// sampler (its overhead: the prompt encoding, the DDIM update, the adapter's input convolution).
// Weights: models/componet_default when it ships, else a freshly initialised model of the default config with
// its adapter (the speed does not depend on the weights).
// Usage: bench_componet [--steps N] [--repeats N]
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <thread>

#include <torch/torch.h>

#include "cocola/componet.hpp"
#include "bench_timing.hpp"
#include "cocola/runtime.hpp"

using namespace cocola;

using bench::seconds_each;

int main(int argc, char** argv) {
    int steps = 50, repeats = 1;
    for (int i = 1; i < argc; ++i) {
        if (!std::strcmp(argv[i], "--steps") && i + 1 < argc) steps = std::max(1, std::atoi(argv[++i]));
        if (!std::strcmp(argv[i], "--repeats") && i + 1 < argc) repeats = std::max(1, std::atoi(argv[++i]));
    }
    const std::string shipped = std::string(COCOLA_BENCH_DIR) + "/../models/componet_default.safetensors";
    const bool have = std::filesystem::exists(shipped);
    componet::ComponetConfig config;
    config.vocabulary = componet::builtin_tags();
    componet::Componet model = have ? componet::Componet::load(shipped) : componet::Componet(config, 0);
    if (!model.config().controlnet) model.add_controlnet();
    const auto& c = model.config();
    const int64_t H = 16, W = generate::kChunkFrames / 4;  // the VAE's latent grid of a chunk
    std::printf("CompoNet %s (%lld parameters with the adapter), latents %d x %lld x %lld, DDIM %d steps with "
                "guidance\n",
                have ? "models/componet_default" : "fresh default config", static_cast<long long>(model.parameter_count()),
                c.latent_channels, static_cast<long long>(H), static_cast<long long>(W), steps);
    const componet::Prompt prompt = componet::parse_prompt("in: piano; out: bass, drums", c.vocabulary);
    at::Tensor tokens, mask;
    model.tokenize({prompt, componet::Prompt{}}, tokens, mask);
    const at::Tensor x = at::randn({2, c.latent_channels, H, W});
    const at::Tensor control = at::randn({1, c.latent_channels, H, W});
    const at::Tensor control2 = control.expand({2, -1, -1, -1}).contiguous();
    const at::Tensor t = at::full({2}, 500, at::kLong);
    componet::SampleOptions so;
    so.steps = steps;
    const int all = static_cast<int>(std::thread::hardware_concurrency());
    for (int threads : {1, all}) {
        runtime::set_threads(threads);
        torch::NoGradGuard no_grad;
        const double pass = seconds_each(3, [&] { model.predict_noise(x, t, tokens, mask, control2); });
        const double chunk = seconds_each(repeats, [&] { componet::sample(model, prompt, control, 1, H, W, so); });
        std::printf("  %d thread(s): denoiser %.2f passes/s | one chunk %.2f s (%.2fx real time); %d passes "
                    "alone %.2f s -> sampler overhead %.1f%%\n",
                    threads, 1 / pass, chunk, (generate::kChunkSamples / 16000.0) / chunk, steps, steps * pass,
                    100 * (chunk / (steps * pass) - 1));
    }
    return 0;
}
