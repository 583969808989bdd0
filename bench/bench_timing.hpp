// Wall-clock timing shared by the bench programs.
#pragma once
#include <chrono>

namespace bench {

inline double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

// Seconds per call of f, the mean of n calls after one warm-up call (first-call allocations and lazy set-up
// would otherwise count).
template <class F>
double seconds_each(int n, F&& f) {
    f();
    const double t0 = now();
    for (int i = 0; i < n; ++i) f();
    return (now() - t0) / n;
}

}  // namespace bench
