// Sliding-window median filter, the hot spot of HPSS (two 31-tap medians over every STFT bin).
//
// Eight independent series are filtered at once, one per SIMD lane. Each lane keeps its window sorted; one
// step removes the outgoing sample `a` and inserts the incoming `b` with a branch-free update of every slot k:
//   b >= a: w'[k] = w[k] < a ? w[k] : min(w[k+1], max(b, w[k]))   (slots from a's up to b's shift left)
//   b <  a: w'[k] = w[k] > a ? w[k] : max(w[k-1], min(b, w[k]))   (slots from b's up to a's shift right)
// with -inf/+inf sentinels at both ends. No sort and no data-dependent branches: O(size) vector operations
// per step for 8 outputs. Built for AVX2 and for baseline x86-64, picked at run time (target_clones).
#include <algorithm>
#include <cstring>
#include <limits>
#include <vector>

#include "cocola/features.hpp"

namespace cocola::features {
namespace {

typedef float v8f __attribute__((vector_size(32)));
constexpr int kLanes = 8;
constexpr int kMaxSize = 63;

// scipy.ndimage 'reflect' (half-sample symmetric: d c b a | a b c d | d c b a), valid for any overshoot.
inline int reflect_index(int i, int n) {
    if (n == 1) return 0;
    const int period = 2 * n;
    i %= period;
    if (i < 0) i += period;
    return i < n ? i : period - 1 - i;
}

// ext: [n + size - 1][8] extended series, lane-interleaved. out: [n][8].
#if defined(__x86_64__) && !defined(__clang__)
__attribute__((target_clones("avx2", "default")))
#endif
void median_lanes(const float* ext, int n, int size, float* out) {
    v8f buf_a[kMaxSize + 2], buf_b[kMaxSize + 2];
    v8f* w = buf_a;
    v8f* nw = buf_b;
    const float inf = std::numeric_limits<float>::infinity();
    for (int l = 0; l < kLanes; ++l) {
        float tmp[kMaxSize];
        for (int k = 0; k < size; ++k) tmp[k] = ext[k * kLanes + l];
        std::sort(tmp, tmp + size);
        for (int k = 0; k < size; ++k) w[k + 1][l] = tmp[k];
        w[0][l] = nw[0][l] = -inf;
        w[size + 1][l] = nw[size + 1][l] = inf;
    }
    const int mid = size / 2 + 1;
    std::memcpy(out, &w[mid], sizeof(v8f));
    for (int i = 1; i < n; ++i) {
        v8f a, b;
        std::memcpy(&a, ext + (i - 1) * kLanes, sizeof(v8f));
        std::memcpy(&b, ext + (i + size - 1) * kLanes, sizeof(v8f));
        const auto up = b >= a;
        for (int k = 1; k <= size; ++k) {
            const v8f wk = w[k], wn = w[k + 1], wp = w[k - 1];
            const v8f mx = wk > b ? wk : b;
            const v8f mn = wk < b ? wk : b;
            const v8f c1 = wk < a ? wk : (wn < mx ? wn : mx);
            const v8f c2 = wk > a ? wk : (wp > mn ? wp : mn);
            nw[k] = up ? c1 : c2;
        }
        std::swap(w, nw);
        std::memcpy(out + i * kLanes, &w[mid], sizeof(v8f));
    }
}

}  // namespace

void median_filter(const float* in, float* out, int rows, int cols, int size, int axis) {
    const int half = size / 2;
    if (size > kMaxSize || size < 1 || size % 2 == 0) {
        // Only odd windows up to kMaxSize are supported (HPSS uses 31).
        std::copy(in, in + static_cast<size_t>(rows) * cols, out);
        return;
    }
    // The series run along `len`; there are `count` of them, grouped 8 at a time.
    const int len = axis == 1 ? cols : rows;
    const int count = axis == 1 ? rows : cols;
    auto at = [&](int series, int pos) -> float {
        return axis == 1 ? in[static_cast<size_t>(series) * cols + pos] : in[static_cast<size_t>(pos) * cols + series];
    };
    const int groups = (count + kLanes - 1) / kLanes;
#pragma omp parallel for schedule(static) if (groups > 8)
    for (int g = 0; g < groups; ++g) {
        thread_local std::vector<float> ext, res;
        ext.resize(static_cast<size_t>(len + size - 1) * kLanes);
        res.resize(static_cast<size_t>(len) * kLanes);
        for (int j = 0; j < len + size - 1; ++j) {
            const int src = reflect_index(j - half, len);
            for (int l = 0; l < kLanes; ++l) {
                const int s = std::min(g * kLanes + l, count - 1);  // spare lanes repeat the last series
                ext[static_cast<size_t>(j) * kLanes + l] = at(s, src);
            }
        }
        median_lanes(ext.data(), len, size, res.data());
        for (int l = 0; l < kLanes && g * kLanes + l < count; ++l) {
            const int s = g * kLanes + l;
            for (int p = 0; p < len; ++p) {
                const float v = res[static_cast<size_t>(p) * kLanes + l];
                if (axis == 1) out[static_cast<size_t>(s) * cols + p] = v;
                else out[static_cast<size_t>(p) * cols + s] = v;
            }
        }
    }
}

}  // namespace cocola::features
