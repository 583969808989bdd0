// Element-wise kernels on float arrays (no torch): SiLU = x * sigmoid(x) and its gradient, vectorised (AVX2 + FMA
// when the CPU has them; relative error ~3e-7 against the exact function), for model/activations.hpp.
#pragma once
#include <cstdint>

namespace cocola::model::kernels {

void silu(const float* x, float* y, int64_t n);  // y may equal x (element i is read before it is written)
void silu_inplace(float* x, int64_t n);
// out = grad * d silu(x) / dx; out may equal grad.
void silu_backward(const float* grad, const float* x, float* out, int64_t n);

}  // namespace cocola::model::kernels
