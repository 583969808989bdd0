// Distances between two sets of embeddings (generated vs real), the columns of the generation table beside the
// COCOLA score: FAD (Frechet distance between Gaussians fitted to each set), its sample-size-free extrapolation
// FAD-inf, and KAD (kernel audio distance: unbiased MMD^2 with a Gaussian kernel). FAD judges whether outputs sound
// like real audio, not whether they fit their input: the paper's point is that the two disagree.
//
// Embeddings are [N, D] tensors (any float type; computed in float64).
#pragma once
#include <ATen/ATen.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace cocola::eval {

// ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)) for means [D] and covariances [D, D]. The matrix square root is
// taken as sqrt(S1)^(1/2) S2 sqrt(S1)^(1/2) through symmetric eigendecompositions, so it is real and never NaN
// (eigenvalues below zero from rounding are clamped).
double frechet_distance(const at::Tensor& mean1, const at::Tensor& cov1, const at::Tensor& mean2, const at::Tensor& cov2);

// FAD between two embedding sets (sample covariances, N-1 normalised). Each set needs at least 2 rows.
double fad(const at::Tensor& generated, const at::Tensor& reference);

// FAD-inf: FAD of random subsets of the generated set of growing size n against the whole reference set, a line
// fitted in 1/n, its intercept (FAD at n -> infinity). `points` sizes between n_min and all rows.
struct FadInf {
    double value = NAN;   // the intercept
    double slope = NAN;   // d FAD / d(1/n)
    std::vector<std::pair<int64_t, double>> curve;  // (n, FAD) measured
};
FadInf fad_inf(const at::Tensor& generated, const at::Tensor& reference, int points = 8, int64_t n_min = 0,
               uint64_t seed = 0);

// Median of the pairwise Euclidean distances between distinct rows (KAD's bandwidth for the reference set).
double median_pairwise_distance(const at::Tensor& x);

// KAD: 100 x unbiased MMD^2 with k(x, y) = exp(-||x - y||^2 / (2 bandwidth^2)); bandwidth <= 0: the median pairwise
// distance of the reference set. Can be slightly negative (unbiased). Each set needs at least 2 rows.
// `paired` (row i of each set belongs to one item, e.g. an output and its target): the cross term leaves out the
// pairs (i, i) too (Gretton et al.'s U-statistic), which the independent-samples estimate would count although
// an output and its own target are not independent.
double kad(const at::Tensor& generated, const at::Tensor& reference, double bandwidth = 0, bool paired = false);

// A bootstrap 95% interval of a set distance: the 2.5th and 97.5th percentiles of the resamples' values, shifted by
// their bias (their mean minus the estimate; repeated rows make sets look less diverse, which raises FAD and KAD).
// Rows of both sets are resampled with the same indices when `paired` (the sets are items' outputs and targets),
// independently otherwise.
struct Interval {
    double low = NAN, high = NAN;
};
enum class SetDistance { fad, kad };
Interval bootstrap_interval(SetDistance which, const at::Tensor& generated, const at::Tensor& reference, bool paired,
                            int resamples = 200, uint64_t seed = 0, double kad_bandwidth = 0);

}  // namespace cocola::eval
