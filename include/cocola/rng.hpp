// A small deterministic random generator. The standard library's distributions are implementation-defined, so
// seeds would give different songs and batches with another compiler; everything seeded in COCOLA uses this instead.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace cocola {

// SplitMix64: turns any 64-bit value into a well-mixed one. Used to derive independent seeds from (seed, index).
inline uint64_t splitmix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}
inline uint64_t mix_seed(uint64_t a, uint64_t b) { return splitmix64(splitmix64(a) ^ (b * 0xD1B54A32D192ED03ull)); }

// FNV-1a: a stable hash of a name (track ids), independent of the platform.
inline uint64_t hash_name(const std::string& s) {
    uint64_t h = 1469598103934665603ull;
    for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
    return splitmix64(h);
}

// xoshiro256** with portable helpers.
class Rng {
   public:
    explicit Rng(uint64_t seed = 0) {
        uint64_t x = seed;
        for (auto& w : s_) w = x = splitmix64(x);
    }
    uint64_t next() {
        const uint64_t r = rotl(s_[1] * 5, 7) * 9, t = s_[1] << 17;
        s_[2] ^= s_[0];
        s_[3] ^= s_[1];
        s_[1] ^= s_[2];
        s_[0] ^= s_[3];
        s_[2] ^= t;
        s_[3] = rotl(s_[3], 45);
        return r;
    }
    // Uniform in [0, 1).
    double uniform() { return (next() >> 11) * 0x1.0p-53; }
    double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
    // Uniform integer in [lo, hi] (inclusive), without modulo bias worth caring about (64-bit source, small ranges).
    int64_t range(int64_t lo, int64_t hi) {
        if (hi <= lo) return lo;
        const uint64_t span = static_cast<uint64_t>(hi - lo) + 1;
        return lo + static_cast<int64_t>(static_cast<unsigned __int128>(next()) * span >> 64);
    }
    bool chance(double p) { return uniform() < p; }
    template <class T>
    const T& pick(const std::vector<T>& v) {
        return v[static_cast<size_t>(range(0, static_cast<int64_t>(v.size()) - 1))];
    }
    // Index drawn with probability proportional to weights.
    size_t weighted(const std::vector<double>& w) {
        double total = 0;
        for (double x : w) total += x;
        double u = uniform() * total;
        size_t last_positive = 0;
        for (size_t i = 0; i < w.size(); ++i) {
            if (u < w[i]) return i;
            u -= w[i];
            if (w[i] > 0) last_positive = i;
        }
        return last_positive;  // rounding at the top end: never an index of weight 0
    }
    // Adds Gaussian noise of std sigma to x[0, n): Box-Muller, two normal draws from each pair of uniforms.
    void add_gaussian(float* x, size_t n, double sigma) {
        for (size_t i = 0; i < n; i += 2) {
            const double u1 = std::max(uniform(), 1e-300), u2 = uniform();
            const double r = sigma * std::sqrt(-2 * std::log(u1));
            x[i] += static_cast<float>(r * std::cos(2 * M_PI * u2));
            if (i + 1 < n) x[i + 1] += static_cast<float>(r * std::sin(2 * M_PI * u2));
        }
    }
    template <class T>
    void shuffle(std::vector<T>& v) {
        for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[static_cast<size_t>(range(0, i - 1))]);
    }

   private:
    static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
    uint64_t s_[4];
};

}  // namespace cocola
