// Process-wide settings: thread count for libtorch and our own OpenMP loops.
#pragma once

namespace cocola::runtime {

// n <= 0 means all cores. libtorch starts with 1 thread on some builds; COCOLA uses every core by default.
void set_threads(int n);
int threads();

// Which allocator serves malloc in this process: "tcmalloc" (the programs link it: training steps up to 1.8x
// faster than with glibc's, see CMakeLists.txt) or "system".
const char* allocator();

}  // namespace cocola::runtime
