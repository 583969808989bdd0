// SiLU (= swish) for every network of the project: a vectorised kernel (model/activation_kernels.hpp) on CPU
// float tensors, at::silu elsewhere (GPU, other dtypes, overlapping views). Debian's libtorch computes SiLU with a
// per-element exp: it was 23% of the model's inference time and 9% of a training step.
#pragma once
#include "model/torch_includes.hpp"

namespace cocola::model {

// With autograd (its gradient by the same kernel family); not twice differentiable on the fast path.
at::Tensor silu(const at::Tensor& x);
// In place, no autograd: for inference under InferenceMode / NoGradGuard.
void silu_(at::Tensor& x);

}  // namespace cocola::model
