// Process-wide settings: thread count for libtorch and our own OpenMP loops.
#pragma once

namespace cocola::runtime {

// n <= 0 means all cores. libtorch starts with 1 thread on some builds; COCOLA uses every core by default.
void set_threads(int n);
int threads();

}  // namespace cocola::runtime
