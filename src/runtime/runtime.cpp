#include "cocola/runtime.hpp"

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
}

int threads() { return at::get_num_threads(); }

}  // namespace cocola::runtime
