// FAD, FAD-inf, KAD and their bootstrap intervals (distribution_distance.hpp).
#include "cocola/distribution_distance.hpp"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>

#include "cocola/error.hpp"
#include "cocola/rng.hpp"

namespace cocola::eval {

namespace {

at::Tensor as_rows(const at::Tensor& x, const char* what, int64_t min_rows = 2) {
    if (!x.defined() || x.dim() != 2) throw Error(std::string(what) + ": embeddings must be a [N, D] matrix");
    if (x.size(0) < min_rows)
        throw Error(std::string(what) + ": " + std::to_string(x.size(0)) + " embedding(s); at least " +
                    std::to_string(min_rows) + " are needed");
    at::Tensor d = x.to(at::kCPU, at::kDouble).contiguous();
    if (!at::isfinite(d).all().item<bool>()) throw Error(std::string(what) + ": embeddings hold NaN or infinity");
    return d;
}

void same_width(const at::Tensor& a, const at::Tensor& b) {
    if (a.size(1) != b.size(1))
        throw Error("the two embedding sets have different widths (" + std::to_string(a.size(1)) + " and " +
                    std::to_string(b.size(1)) + ")");
}

void moments(const at::Tensor& x, at::Tensor& mean, at::Tensor& cov) {
    mean = x.mean(0);
    const at::Tensor c = x - mean;
    cov = at::matmul(c.t(), c) / static_cast<double>(x.size(0) - 1);
}

// Symmetric PSD square root through an eigendecomposition (negative rounding eigenvalues clamped to zero).
at::Tensor psd_sqrt(const at::Tensor& s) {
    const auto [values, vectors] = at::linalg_eigh(0.5 * (s + s.t()));
    return at::matmul(vectors * values.clamp_min(0).sqrt().unsqueeze(0), vectors.t());
}

double fad_of(const at::Tensor& g, const at::Tensor& r) {
    at::Tensor m1, c1, m2, c2;
    moments(g, m1, c1);
    moments(r, m2, c2);
    return frechet_distance(m1, c1, m2, c2);
}

at::Tensor squared_distances(const at::Tensor& a, const at::Tensor& b) {
    const at::Tensor na = (a * a).sum(1, true), nb = (b * b).sum(1, true);
    return (na + nb.t() - 2 * at::matmul(a, b.t())).clamp_min(0);
}

double kad_of(const at::Tensor& g, const at::Tensor& r, double bandwidth, bool paired) {
    const double gamma = 1.0 / (2 * bandwidth * bandwidth);
    const double m = static_cast<double>(g.size(0)), n = static_cast<double>(r.size(0));
    const at::Tensor kgg = at::exp(-gamma * squared_distances(g, g)), krr = at::exp(-gamma * squared_distances(r, r));
    const at::Tensor kgr = at::exp(-gamma * squared_distances(g, r));
    // Unbiased: the diagonals (a point with itself, k = 1) are left out of the within-set means.
    const double gg = (kgg.sum().item<double>() - m) / (m * (m - 1));
    const double rr = (krr.sum().item<double>() - n) / (n * (n - 1));
    const double gr = paired ? (kgr.sum().item<double>() - kgr.trace().item<double>()) / (m * (m - 1))
                             : kgr.sum().item<double>() / (m * n);
    return 100.0 * (gg + rr - 2 * gr);
}

double percentile(std::vector<double> v, double q) {
    std::sort(v.begin(), v.end());
    const double pos = q * static_cast<double>(v.size() - 1);
    const size_t lo = static_cast<size_t>(pos);
    const size_t hi = std::min(lo + 1, v.size() - 1);
    return v[lo] + (pos - static_cast<double>(lo)) * (v[hi] - v[lo]);
}

at::Tensor rows_at(const at::Tensor& x, const std::vector<int64_t>& idx) {
    return x.index_select(0, at::tensor(idx, at::kLong));
}

}  // namespace

double frechet_distance(const at::Tensor& mean1, const at::Tensor& cov1, const at::Tensor& mean2, const at::Tensor& cov2) {
    const at::Tensor m1 = mean1.to(at::kDouble), m2 = mean2.to(at::kDouble);
    const at::Tensor s1 = cov1.to(at::kDouble), s2 = cov2.to(at::kDouble);
    const int64_t d = m1.numel();
    if (m2.numel() != d || s1.dim() != 2 || s2.dim() != 2 || s1.size(0) != d || s1.size(1) != d || s2.size(0) != d ||
        s2.size(1) != d)
        throw Error("frechet_distance: means [D] and covariances [D, D] of one width are needed");
    const at::Tensor r1 = psd_sqrt(s1);
    const at::Tensor inner = at::matmul(at::matmul(r1, s2), r1);
    const at::Tensor eig = at::linalg_eigvalsh(0.5 * (inner + inner.t()));
    const double tr_sqrt = eig.clamp_min(0).sqrt().sum().item<double>();
    const double diff = (m1 - m2).pow(2).sum().item<double>();
    return diff + s1.trace().item<double>() + s2.trace().item<double>() - 2 * tr_sqrt;
}

double fad(const at::Tensor& generated, const at::Tensor& reference) {
    const at::Tensor g = as_rows(generated, "FAD (generated set)"), r = as_rows(reference, "FAD (reference set)");
    same_width(g, r);
    return fad_of(g, r);
}

FadInf fad_inf(const at::Tensor& generated, const at::Tensor& reference, int points, int64_t n_min, uint64_t seed) {
    const at::Tensor g = as_rows(generated, "FAD-inf (generated set)", 3), r = as_rows(reference, "FAD-inf (reference set)");
    same_width(g, r);
    const int64_t n_all = g.size(0);
    if (n_min <= 1) n_min = std::max<int64_t>(2, n_all / 2);
    n_min = std::min(n_min, n_all - 1);
    points = std::max(2, points);
    at::Tensor mr, cr;
    moments(r, mr, cr);
    FadInf out;
    Rng rng(mix_seed(seed, 0xfad));
    std::vector<int64_t> order(static_cast<size_t>(n_all));
    for (int p = 0; p < points; ++p) {
        const int64_t n = n_min + (n_all - n_min) * p / (points - 1);
        for (int64_t i = 0; i < n_all; ++i) order[static_cast<size_t>(i)] = i;
        for (int64_t i = n_all - 1; i > 0; --i) std::swap(order[static_cast<size_t>(i)], order[static_cast<size_t>(rng.range(0, i))]);
        at::Tensor mg, cg;
        moments(rows_at(g, std::vector<int64_t>(order.begin(), order.begin() + n)), mg, cg);
        out.curve.emplace_back(n, frechet_distance(mg, cg, mr, cr));
    }
    // Least squares of FAD on 1/n.
    double sx = 0, sy = 0, sxx = 0, sxy = 0;
    const double k = static_cast<double>(out.curve.size());
    for (const auto& [n, f] : out.curve) {
        const double x = 1.0 / static_cast<double>(n);
        sx += x, sy += f, sxx += x * x, sxy += x * f;
    }
    const double den = k * sxx - sx * sx;
    if (den > 0) {
        out.slope = (k * sxy - sx * sy) / den;
        out.value = (sy - out.slope * sx) / k;
    }
    return out;
}

double median_pairwise_distance(const at::Tensor& x) {
    const at::Tensor r = as_rows(x, "median pairwise distance");
    const at::Tensor d2 = squared_distances(r, r);
    const int64_t n = r.size(0);
    std::vector<double> d;
    d.reserve(static_cast<size_t>(n * (n - 1) / 2));
    const auto a = d2.accessor<double, 2>();
    for (int64_t i = 0; i < n; ++i)
        for (int64_t j = i + 1; j < n; ++j) d.push_back(std::sqrt(a[i][j]));
    return percentile(d, 0.5);
}

double kad(const at::Tensor& generated, const at::Tensor& reference, double bandwidth, bool paired) {
    const at::Tensor g = as_rows(generated, "KAD (generated set)"), r = as_rows(reference, "KAD (reference set)");
    same_width(g, r);
    if (!(bandwidth > 0)) bandwidth = median_pairwise_distance(r);
    if (!(bandwidth > 0)) throw Error("KAD: every reference embedding is the same point (bandwidth 0)");
    if (paired && g.size(0) != r.size(0)) throw Error("KAD: paired sets must have as many rows");
    return kad_of(g, r, bandwidth, paired);
}

Interval bootstrap_interval(SetDistance which, const at::Tensor& generated, const at::Tensor& reference, bool paired,
                            int resamples, uint64_t seed, double kad_bandwidth) {
    const at::Tensor g = as_rows(generated, "bootstrap (generated set)"), r = as_rows(reference, "bootstrap (reference set)");
    same_width(g, r);
    if (paired && g.size(0) != r.size(0)) throw Error("bootstrap: paired sets must have as many rows");
    if (which == SetDistance::kad && !(kad_bandwidth > 0)) kad_bandwidth = median_pairwise_distance(r);
    Rng rng(mix_seed(seed, 0xb007));
    std::vector<double> values;
    for (int b = 0; b < std::max(2, resamples); ++b) {
        std::vector<int64_t> ig(static_cast<size_t>(g.size(0))), ir(static_cast<size_t>(r.size(0)));
        for (auto& i : ig) i = rng.range(0, g.size(0) - 1);
        if (paired) ir = ig;
        else
            for (auto& i : ir) i = rng.range(0, r.size(0) - 1);
        const at::Tensor gb = rows_at(g, ig), rb = rows_at(r, ir);
        values.push_back(which == SetDistance::fad ? fad_of(gb, rb) : kad_of(gb, rb, kad_bandwidth, paired));
    }
    // Resampling with replacement repeats items, and a set with repeats looks less diverse than its source: FAD and
    // KAD of resamples sit above the estimate (with 20 items, often entirely), so the raw percentiles need not even
    // hold it. The percentiles are shifted by that bias (the resamples' mean minus the estimate).
    const double point = which == SetDistance::fad ? fad_of(g, r) : kad_of(g, r, kad_bandwidth, paired);
    double mean = 0;
    for (double v : values) mean += v;
    mean /= static_cast<double>(values.size());
    const double bias = mean - point;
    Interval out{percentile(values, 0.025) - bias, percentile(values, 0.975) - bias};
    if (which == SetDistance::fad) out.low = std::max(0.0, out.low);  // a Frechet distance is never negative
    return out;
}

}  // namespace cocola::eval
