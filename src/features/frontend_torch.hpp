// The two front-ends written with tensor operations, for training on a GPU: the same features as
// features::compute_batch (src/features/frontend.cpp), computed on the tensor's own device.
//
// Why: on a GPU the CPU front-end is the bottleneck of training (measured on an H200 with 16 cores: 0.100 s of
// features per 0.115 s step at K = 24, docs/training.md section 8). Here the STFT is a matrix product with the
// DFT basis of the reference's 400-tap window (float64), the HPSS median filters are unfold + median over the
// 31-wide windows (float32 magnitudes, as librosa filters them), and the masks, mel projection and dB run in
// float64 as on the CPU. On the CPU this path is slower than the FFTW one and is used only by its parity test.
#pragma once
#include <ATen/ATen.h>

#include "cocola/features.hpp"

namespace cocola::features {

// clips: [B, n] float32 on any device (n >= min_samples(f)); returns [B, C, 64, 1 + n/160] float32 on the
// same device, equal to compute_batch's features up to float rounding. Throws cocola::Error on a bad shape.
at::Tensor compute_batch_tensor(Frontend f, const at::Tensor& clips);

}  // namespace cocola::features
