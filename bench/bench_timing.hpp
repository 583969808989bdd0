// Wall-clock timing and the Python baselines shared by the bench programs.
#pragma once
#include <chrono>
#include <cstdio>
#include <string>

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

// Runs bench/reference_model.py (the network in eager PyTorch, Debian's python3-torch) with `args` and returns
// the number it prints, or 0 when it is unavailable or fails. `env`: assignments put before the command.
inline double python_reference(const std::string& args, const std::string& env = "") {
    const std::string cmd = env + " /usr/bin/python3 " + COCOLA_BENCH_DIR + "/reference_model.py " + args + " 2>/dev/null";
    FILE* p = popen(cmd.c_str(), "r");
    double v = 0;
    if (!p || std::fscanf(p, "%lf", &v) != 1) v = 0;
    if (p) pclose(p);
    return v;
}

}  // namespace bench
