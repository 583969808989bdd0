// Sliding-window median filter, the hot spot of HPSS (two 31-tap medians over every STFT bin).
//
// Eight independent series are filtered at once, one per SIMD lane. Each lane keeps its window sorted in slots
// 1..size, with -inf in slot 0 and +inf in slot size+1. One step removes the outgoing sample `a` and inserts
// the incoming `b`, branch-free, in one ascending pass over the slots:
//   removal   r[k]  = w[k] < a ? w[k] : w[k+1]        (slots from a's on shift left; +inf enters at the top)
//   insertion w'[k] = min(r[k], max(r[k-1], b))       (b lands where it belongs, the slots above shift right)
// Four vector operations per slot and step for 8 outputs, no sort and no data-dependent branch. The result is
// the same multiset as a sort would give, so the medians are bit-identical to scipy's. Built for AVX-512
// (x86-64-v4: mask blends), AVX2 and baseline x86-64, picked at run time (target_clones).
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

// An 8 x 8 block transpose in registers: rows r[0..7] -> columns c[0..7] (c[j][i] = r[i][j]).
inline void transpose8(const v8f r[8], v8f c[8]) {
    typedef int v8i __attribute__((vector_size(32)));
    v8f t[8], u[8];
    for (int i = 0; i < 4; ++i) {
        t[2 * i] = __builtin_shuffle(r[2 * i], r[2 * i + 1], v8i{0, 8, 1, 9, 4, 12, 5, 13});
        t[2 * i + 1] = __builtin_shuffle(r[2 * i], r[2 * i + 1], v8i{2, 10, 3, 11, 6, 14, 7, 15});
    }
    for (int h = 0; h < 2; ++h)
        for (int i = 0; i < 2; ++i) {
            u[4 * h + 2 * i] = __builtin_shuffle(t[4 * h + i], t[4 * h + 2 + i], v8i{0, 1, 8, 9, 4, 5, 12, 13});
            u[4 * h + 2 * i + 1] = __builtin_shuffle(t[4 * h + i], t[4 * h + 2 + i], v8i{2, 3, 10, 11, 6, 7, 14, 15});
        }
    for (int j = 0; j < 4; ++j) {
        c[j] = __builtin_shuffle(u[j], u[4 + j], v8i{0, 1, 2, 3, 8, 9, 10, 11});
        c[4 + j] = __builtin_shuffle(u[j], u[4 + j], v8i{4, 5, 6, 7, 12, 13, 14, 15});
    }
}

#if defined(__x86_64__) && !defined(__clang__)
#define COCOLA_MEDIAN_CLONES __attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
#else
#define COCOLA_MEDIAN_CLONES
#endif

// ext[j][l] = row[l][source[j]]: 8 x 8 blocks transposed in registers where the positions are the rows' own
// (unreflected) samples, one value at a time at the reflected borders and the tail.
COCOLA_MEDIAN_CLONES
void gather_rows(const float* const row[kLanes], const int* source, int ext_len, int half, float* ext) {
    int j = 0;
    while (j < ext_len) {
        if (j + kLanes <= ext_len && source[j] == j - half && source[j + kLanes - 1] == j + kLanes - 1 - half) {
            v8f r[kLanes], c[kLanes];
            for (int l = 0; l < kLanes; ++l) std::memcpy(&r[l], row[l] + (j - half), sizeof(v8f));
            transpose8(r, c);
            std::memcpy(ext + static_cast<size_t>(j) * kLanes, c, sizeof(c));
            j += kLanes;
        } else {
            for (int l = 0; l < kLanes; ++l) ext[static_cast<size_t>(j) * kLanes + l] = row[l][source[j]];
            ++j;
        }
    }
}

// row[l][p] = res[p][l] for the first `lanes` lanes.
COCOLA_MEDIAN_CLONES
void scatter_rows(const float* res, int len, int lanes, float* const row[kLanes]) {
    int p = 0;
    if (lanes == kLanes)
        for (; p + kLanes <= len; p += kLanes) {
            v8f r[kLanes], c[kLanes];
            std::memcpy(r, res + static_cast<size_t>(p) * kLanes, sizeof(r));
            transpose8(r, c);
            for (int l = 0; l < kLanes; ++l) std::memcpy(row[l] + p, &c[l], sizeof(v8f));
        }
    for (int l = 0; l < lanes; ++l)
        for (int q = p; q < len; ++q) row[l][q] = res[static_cast<size_t>(q) * kLanes + l];
}

// ext: [n + size - 1][8] extended series, lane-interleaved. out: [n][8]. `Size` > 0 fixes the window at compile
// time (the slot loops unroll; HPSS's 31), 0 takes it from `size`.
template <int Size>
COCOLA_MEDIAN_CLONES
void median_lanes(const float* ext, int n, int size, float* out) {
    if (Size > 0) size = Size;
    v8f w[kMaxSize + 2];
    const float inf = std::numeric_limits<float>::infinity();
    const v8f neg_inf = v8f{} - inf, pos_inf = v8f{} + inf;
    w[0] = neg_inf;
    for (int k = 1; k <= size + 1; ++k) w[k] = pos_inf;
    // The first window: insertions alone into the empty (all +inf) window.
    for (int i = 0; i < size; ++i) {
        v8f b;
        std::memcpy(&b, ext + i * kLanes, sizeof(v8f));
        v8f prev = neg_inf;
        for (int k = 1; k <= size; ++k) {
            const v8f wk = w[k];
            const v8f m = prev > b ? prev : b;
            w[k] = wk < m ? wk : m;
            prev = wk;
        }
    }
    const int mid = size / 2 + 1;
    std::memcpy(out, &w[mid], sizeof(v8f));
    for (int i = 1; i < n; ++i) {
        v8f a, b;
        std::memcpy(&a, ext + (i - 1) * kLanes, sizeof(v8f));
        std::memcpy(&b, ext + (i + size - 1) * kLanes, sizeof(v8f));
        v8f prev = neg_inf;  // r[k-1]
        v8f wk = w[1];
#pragma GCC unroll 64
        for (int k = 1; k <= size; ++k) {
            const v8f wn = w[k + 1];
            const v8f r = wk < a ? wk : wn;
            const v8f m = prev > b ? prev : b;
            w[k] = r < m ? r : m;
            prev = r;
            wk = wn;
        }
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
    const int ext_len = len + size - 1;
    // Where each position of the extended series reads from (the reflection, once, not per lane).
    std::vector<int> source(ext_len);
    for (int j = 0; j < ext_len; ++j) source[j] = reflect_index(j - half, len);
    const int groups = (count + kLanes - 1) / kLanes;
#pragma omp parallel for schedule(static) if (groups > 8)
    for (int g = 0; g < groups; ++g) {
        thread_local std::vector<float> ext, res;
        ext.resize(static_cast<size_t>(ext_len) * kLanes);
        res.resize(static_cast<size_t>(len) * kLanes);
        const int first = g * kLanes;
        const int lanes = std::min(kLanes, count - first);  // spare lanes repeat the last series
        if (axis == 0) {
            // Series are columns: the 8 lanes of a position are 8 neighbouring floats of one row.
            for (int j = 0; j < ext_len; ++j) {
                const float* row = in + static_cast<size_t>(source[j]) * cols + first;
                float* e = ext.data() + static_cast<size_t>(j) * kLanes;
                for (int l = 0; l < kLanes; ++l) e[l] = row[std::min(l, lanes - 1)];
            }
        } else {
            // Series are rows: read along each row, 8 rows at a time.
            const float* row[kLanes];
            for (int l = 0; l < kLanes; ++l) row[l] = in + static_cast<size_t>(first + std::min(l, lanes - 1)) * cols;
            gather_rows(row, source.data(), ext_len, half, ext.data());
        }
        if (size == 31) median_lanes<31>(ext.data(), len, size, res.data());
        else median_lanes<0>(ext.data(), len, size, res.data());
        if (axis == 0) {
            for (int p = 0; p < len; ++p)
                std::memcpy(out + static_cast<size_t>(p) * cols + first, res.data() + static_cast<size_t>(p) * kLanes,
                            sizeof(float) * lanes);
        } else {
            float* row[kLanes];
            for (int l = 0; l < lanes; ++l) row[l] = out + static_cast<size_t>(first + l) * cols;
            scatter_rows(res.data(), len, lanes, row);
        }
    }
}

}  // namespace cocola::features
