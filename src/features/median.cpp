// Sliding-window median filter, the hot spot of HPSS (two 31-tap medians over every STFT bin).
// A sorted window is updated in place: the outgoing sample's slot receives the incoming one, which is then
// moved to its sorted position. Cost per output is the distance it moves (often a few slots), not a sort.
#include <algorithm>
#include <vector>

#include "cocola/features.hpp"

namespace cocola::features {
namespace {

// scipy.ndimage 'reflect' (half-sample symmetric: d c b a | a b c d | d c b a), valid for any overshoot.
inline int reflect_index(int i, int n) {
    if (n == 1) return 0;
    const int period = 2 * n;
    i %= period;
    if (i < 0) i += period;
    return i < n ? i : period - 1 - i;
}

void median_1d(const float* x, int n, int size, float* out, std::vector<float>& ext, std::vector<float>& win) {
    const int half = size / 2;
    ext.resize(static_cast<size_t>(n) + size - 1);
    for (int i = 0; i < n + size - 1; ++i) {
        int src = i - half;
        ext[i] = (src >= 0 && src < n) ? x[src] : x[reflect_index(src, n)];
    }
    win.assign(ext.begin(), ext.begin() + size);
    std::sort(win.begin(), win.end());
    out[0] = win[half];
    float* w = win.data();
    for (int i = 1; i < n; ++i) {
        const float old_v = ext[i - 1], new_v = ext[i + size - 1];
        int p = static_cast<int>(std::lower_bound(w, w + size, old_v) - w);
        if (new_v > old_v) {
            while (p + 1 < size && w[p + 1] < new_v) { w[p] = w[p + 1]; ++p; }
        } else {
            while (p > 0 && w[p - 1] > new_v) { w[p] = w[p - 1]; --p; }
        }
        w[p] = new_v;
        out[i] = w[half];
    }
}

}  // namespace

void median_filter(const float* in, float* out, int rows, int cols, int size, int axis) {
    if (axis == 1) {
#pragma omp parallel for schedule(static) if (rows > 64)
        for (int r = 0; r < rows; ++r) {
            thread_local std::vector<float> ext, win;
            median_1d(in + static_cast<size_t>(r) * cols, cols, size, out + static_cast<size_t>(r) * cols, ext, win);
        }
        return;
    }
    // Along columns: work on contiguous copies of each column (a transpose), which keeps the inner loop linear.
#pragma omp parallel for schedule(static) if (cols > 64)
    for (int c = 0; c < cols; ++c) {
        thread_local std::vector<float> col, res, ext, win;
        col.resize(rows);
        res.resize(rows);
        for (int r = 0; r < rows; ++r) col[r] = in[static_cast<size_t>(r) * cols + c];
        median_1d(col.data(), rows, size, res.data(), ext, win);
        for (int r = 0; r < rows; ++r) out[static_cast<size_t>(r) * cols + c] = res[r];
    }
}

}  // namespace cocola::features
