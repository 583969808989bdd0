// The two COCOLA front-ends: waveforms at 16 kHz -> log-mel features [C, 64, T], T = 1 + samples/160.
//   mel  : torchaudio MelSpectrogram + AmplitudeToDB as the reference configures them (1 channel)
//   hpss : librosa 0.10.1 STFT -> median-filter HPSS -> Slaney mel -> power_to_db per channel (2 channels,
//          0 = harmonic, 1 = percussive); the input of the released COCOLA_HP_v1 checkpoint.
// Both are computed in float64 internally, so they sit inside the reference's own float32 rounding noise.
#pragma once
#include <cstddef>
#include <string>
#include <vector>

namespace cocola::features {

enum class Frontend { Mel, Hpss };

constexpr int kNFft = 1024;
constexpr int kNBins = kNFft / 2 + 1;  // 513
constexpr int kWinLength = 400;
constexpr int kHop = 160;
constexpr int kNMels = 64;
constexpr int kHpssKernel = 31;

Frontend parse_frontend(const std::string& name);  // "mel" | "hpss"; throws cocola::Error otherwise
std::string frontend_name(Frontend f);
int num_channels(Frontend f);
inline int num_frames(size_t samples) { return 1 + static_cast<int>(samples / kHop); }
// Fewest samples a front-end accepts (torch's reflect padding needs more than n_fft/2 samples).
size_t min_samples(Frontend f);

// Features of one clip: [C, 64, T] in C order. Throws cocola::Error if the clip is too short.
std::vector<float> compute(Frontend f, const float* samples, size_t n);

// Features of B clips of equal length n, written to out[B, C, 64, T]; clips run in parallel on OpenMP threads.
void compute_batch(Frontend f, const std::vector<const float*>& clips, size_t n, float* out);

// ---- the stages, exposed for per-stage parity tests and benchmarks ----

// Filterbanks as [n_mels][513] row-major, in float64.
std::vector<double> htk_mel_filterbank();     // torchaudio melscale_fbanks(norm=None, mel_scale="htk"), 60-7800 Hz
std::vector<double> slaney_mel_filterbank();  // librosa.filters.mel(sr=16000, n_fft=1024, n_mels=64, 60, 7800)

// |STFT| squared [513][T] (torchaudio path: reflect padding) or |STFT| [513][T] (librosa path: zero padding,
// magnitude rounded through complex64 as librosa stores it).
std::vector<double> torch_power_spectrogram(const float* x, size_t n);
std::vector<float> librosa_magnitude(const float* x, size_t n);

// Median filter of a [rows][cols] float matrix with window `size` along rows (axis=1) or columns (axis=0),
// scipy.ndimage 'reflect' borders. Sliding-window median: O(size) per output, not a sort.
void median_filter(const float* in, float* out, int rows, int cols, int size, int axis);

// librosa.decompose.hpss magnitudes (kernel 31, power 2, margin 1): harmonic and percussive [513][T].
void hpss_magnitudes(const std::vector<float>& mag, int frames, std::vector<double>& harmonic,
                     std::vector<double>& percussive);

}  // namespace cocola::features
