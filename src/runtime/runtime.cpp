#include "cocola/runtime.hpp"

#include <dlfcn.h>
#include <omp.h>

#include <thread>

#include "model/torch_includes.hpp"

namespace cocola::runtime {

void set_threads(int n) {
    if (n <= 0) n = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    at::set_num_threads(n);
    // Denormal floats (|x| < 1e-38) take a slow path on x86; they appear in the activations of some
    // checkpoints and cost up to 2x. Flushing them to zero changes results far below any tolerance.
    at::globalContext().setFlushDenormal(true);
    omp_set_num_threads(n);
    // libtorch parallelises over the batch and channels and calls BLAS from each of its threads; OpenBLAS's
    // pthread build would start its own n threads inside each of them and busy-wait, oversubscribing the cores
    // (measured by bench_componet on 2 cores: the denoiser at 2 threads ran 2.2 passes/s with OpenBLAS threads,
    // 3.5 without). So BLAS runs single-threaded inside torch's threads. Looked up at run time: other BLAS
    // builds (MKL in official LibTorch) lack the symbol and manage their threads themselves.
    using SetBlasThreads = void (*)(int);
    static const auto set_blas_threads =
        reinterpret_cast<SetBlasThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
    if (set_blas_threads) set_blas_threads(1);
}

int threads() { return at::get_num_threads(); }

const char* allocator() {
    // tcmalloc's malloc is an alias of its tc_malloc: the same address only when tcmalloc is the one the process
    // calls (loaded later with dlopen, it would be present without serving malloc).
    void* tc = dlsym(RTLD_DEFAULT, "tc_malloc");
    return tc && tc == dlsym(RTLD_DEFAULT, "malloc") ? "tcmalloc" : "system";
}

}  // namespace cocola::runtime
