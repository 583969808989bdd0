// The non-negative least-squares inversion of a mel filterbank, shared by Griffin-Lim's start
// (mel_to_linear_magnitude, float64, 50 updates) and the vocoder's prior (mel_inverse_magnitudes, float32, 16).
#pragma once
#include <torch/torch.h>

namespace cocola::generate {

// min |F S - P| over S >= 0 by multiplicative updates (Lee & Seung) from the clamped pseudo-inverse solution.
// power P [..., bands, T], filterbank F [bands, bins], F_pinv [bins, bands]; returns S [..., bins, T]. Bins no
// filter covers stay at the clamp. F^T (F S) rather than (F^T F) S: with 64 bands against 513 bins, 4x fewer
// operations. `eps` keeps the denominators away from zero in the tensors' precision.
inline at::Tensor nnls_through_filterbank(const at::Tensor& P, const at::Tensor& F, const at::Tensor& F_pinv,
                                          int updates, double eps) {
    at::Tensor S = at::matmul(F_pinv, P).clamp_min(1e-12);
    const at::Tensor Ft = F.t(), FtP = at::matmul(Ft, P);
    for (int i = 0; i < updates; ++i) S = S * FtP / (at::matmul(Ft, at::matmul(F, S)) + eps);
    return S;
}

}  // namespace cocola::generate
