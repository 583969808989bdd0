// Training step throughput at batch 32 (64 windows of 5 s through EfficientNet-B0, forward and backward, Adam
// update excluded), mel and hpss models, at 1 thread and all threads:
//   cocola   : channels-last with fused SiLU (what `cocola train` runs on CPU)
//   baseline : the same module channels-first, as the reference's eager PyTorch step runs
//   python   : the network in eager PyTorch from Python (reference_model.py, Debian's python3-torch), same run;
//              when this program runs on tcmalloc, also with tcmalloc preloaded into Python, to show how much
//              of the ratio is the allocator (Python could have it too) and how much the rest
// Usage: bench_train [--batch K] [--steps N] [--no-python]
#include <dlfcn.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>

#include "bench_timing.hpp"
#include "cocola/features.hpp"
#include "cocola/model.hpp"
#include "cocola/runtime.hpp"
#include "model/cocola_net.hpp"

using namespace cocola;

namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

// LD_PRELOAD=<the tcmalloc this process runs on>, or "" when it runs on the system allocator.
std::string preload_our_allocator() {
    Dl_info info{};
    void* tc = dlsym(RTLD_DEFAULT, "tc_malloc");
    if (std::string(runtime::allocator()) != "tcmalloc" || !tc || !dladdr(tc, &info) || !info.dli_fname) return "";
    return std::string("LD_PRELOAD=") + info.dli_fname;
}

double seconds_per_step(model::Model& m, const at::Tensor& feats, int steps) {
    auto& net = m.net();
    net.train();
    const int64_t K = feats.size(0) / 2;
    auto step = [&] {
        at::Tensor e = net.embed(feats);
        at::Tensor S = net.similarity(e.slice(0, 0, K), e.slice(0, K));
        at::Tensor loss = at::nll_loss(at::log_softmax(S, 1), at::arange(K, at::kLong));
        for (auto& p : net.parameters())
            if (p.grad().defined()) p.mutable_grad().zero_();
        loss.backward();
    };
    step();  // warm-up: oneDNN primitive creation
    const double t0 = now();
    for (int i = 0; i < steps; ++i) step();
    return (now() - t0) / steps;
}

}  // namespace

int main(int argc, char** argv) {
    int batch = 32, steps = 2;
    bool python = true;
    for (int i = 1; i < argc; ++i) {
        if (!std::strcmp(argv[i], "--no-python")) python = false;
        if (!std::strcmp(argv[i], "--batch") && i + 1 < argc) batch = std::atoi(argv[++i]);
        if (!std::strcmp(argv[i], "--steps") && i + 1 < argc) steps = std::atoi(argv[++i]);
    }
    const int all = static_cast<int>(std::thread::hardware_concurrency());
    std::printf("training step, batch %d (forward + backward), mean of %d steps, allocator: %s\n", batch, steps,
                runtime::allocator());
    for (const auto frontend : {features::Frontend::Mel, features::Frontend::Hpss}) {
        model::Config config;
        config.frontend = frontend;
        const at::Tensor feats = at::randn({2L * batch, config.in_channels(), 64, 501}) * 10 - 40;
        for (int threads : {1, all}) {
            runtime::set_threads(threads);
            model::Model fast(config, 0), base(config, 0);
            fast.net().use_channels_last(true);
            const double tf = seconds_per_step(fast, feats, steps);
            const double tb = seconds_per_step(base, feats, steps);
            std::printf("  %-4s %d thread(s): cocola %.2f s/step | channels-first baseline %.2f s/step -> %.2fx",
                        features::frontend_name(frontend).c_str(), threads, tf, tb, tb / tf);
            const std::string weights = std::string(COCOLA_TEST_DATA) + "/golden/models/cocola_" +
                                        features::frontend_name(frontend) + "_seed0.safetensors";
            const std::string py_args = "train " + weights + " --batch " + std::to_string(batch) + " --steps " +
                                        std::to_string(steps) + " --threads " + std::to_string(threads);
            const double py = python ? bench::python_reference(py_args) : 0;
            const std::string preload = py > 0 ? preload_our_allocator() : "";
            const double py_tc = preload.empty() ? 0 : bench::python_reference(py_args, preload);
            if (py > 0) {
                std::printf(" | python eager %.2f s/step -> %.2fx", py, py / tf);
                if (py_tc > 0) std::printf(" | python eager on tcmalloc %.2f s/step -> %.2fx", py_tc, py_tc / tf);
                std::printf("\n");
            } else
                std::printf("%s\n", python ? " | python reference unavailable (needs python3-torch)" : "");
        }
    }
    return 0;
}
