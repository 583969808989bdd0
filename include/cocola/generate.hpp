// The generative half, part 1: the generator's spectrogram, the way back to sound (Griffin-Lim), distances
// between audio, and the mel autoencoder (VAE) whose latents a diffusion model denoises.
//
// The generator works on COCOLA's own `mel` front-end (16 kHz, hop 160, 64 log-mel bands in dB), so a COCOLA
// model reads generated spectrograms directly, in chunks of 5.12 s (512 frames), the length of a COCOLA window.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "cocola/evaluate.hpp"
#include "cocola/train_core.hpp"

namespace cocola::generate {

constexpr int kChunkFrames = 512;                 // frames of a generator chunk (5.12 s)
constexpr int64_t kHopSamples = 160;              // samples per frame
constexpr int64_t kChunkSamples = kChunkFrames * kHopSamples;  // 81920
constexpr int kMelBands = 64;
constexpr double kMelFloorDb = -100.0;            // the front-end's floor: 10 log10(1e-10)
// Above anything audio in [-1, 1] gives (a full-scale sine or square wave reaches 44 dB): decoded or generated
// spectrograms are clamped to [kMelFloorDb, kMelCeilingDb] before vocoding, so that a decoder's overshoot on
// input it never saw cannot become audio of 10^15 (and a spectrogram of Inf).
constexpr double kMelCeilingDb = 60.0;

// ---------------------------------------------------------------- the spectrogram
// Log-mel [64, frames] (dB) of a clip of n samples at 16 kHz: COCOLA's mel front-end, frames = n / 160 (the
// front-end's last, half-padded frame is dropped, so a chunk of 81920 samples gives 512 frames).
at::Tensor mel_spectrogram(const float* samples, size_t n);
// Mel spectrograms [B, 64, n / 160] of B clips of n samples (rows of `clips`, [B, n] float32 on the CPU).
at::Tensor mel_spectrograms(const at::Tensor& clips);

// ---------------------------------------------------------------- Griffin-Lim
struct GriffinLimOptions {
    int iterations = 32;
    double momentum = 0.99;  // the "fast" Griffin-Lim of Perraudin et al. (librosa's default)
    uint64_t seed = 0;       // of the initial random phases
};
// Audio [frames * 160] samples from a log-mel spectrogram [64, frames] (dB): the linear magnitudes are the
// non-negative least-squares fit through the mel filterbank, then phases by Griffin-Lim on the front-end's
// STFT (n_fft 1024, Hann window of 400, hop 160). No weights: always available, the baseline.
std::vector<float> griffin_lim(const at::Tensor& mel_db, const GriffinLimOptions& options = {});
// The linear STFT magnitudes [513, frames] that fit a log-mel spectrogram best (non-negative least squares);
// the spectrogram is first clamped to [kMelFloorDb, kMelCeilingDb].
at::Tensor mel_to_linear_magnitude(const at::Tensor& mel_db);

// ---------------------------------------------------------------- distances between two clips
// Mean absolute difference of the log-mel spectrograms (dB) of two clips of n samples.
double log_mel_l1(const float* a, const float* b, size_t n);
// Multi-resolution STFT distance (Yamamoto et al. 2020): the mean over FFT sizes 512, 1024, 2048 (hops 128,
// 256, 512, Hann windows of the FFT size) of spectral convergence plus the L1 distance of log magnitudes.
double multi_resolution_stft_distance(const float* a, const float* b, size_t n);

// ---------------------------------------------------------------- the autoencoder
// An AudioLDM-style KL autoencoder on log-mel spectrograms: conv ResNet encoder and decoder with self-attention
// in the middle, a diagonal Gaussian latent with `latent_channels` channels and 2^(levels-1) times fewer bins and
// frames (3 levels: a 64 x 512 chunk -> 8 x 16 x 128).
struct VaeConfig {
    int base_channels = 32;
    std::vector<int> channel_mult = {1, 2, 4};
    int res_blocks = 1;             // per level
    int latent_channels = 8;
    bool mid_attention = true;
    // The spectrogram is normalised as (dB - mel_mean) / mel_std before the encoder (and back after the decoder);
    // both measured on the training data when training starts.
    double mel_mean = -40, mel_std = 20;
    // Latents are multiplied by this after encoding (and divided before decoding), so they have unit variance on
    // the training data: 1 / std of the latent means, measured on training chunks when the model is written.
    double scale_factor = 1;
    int downsampling() const { return 1 << (static_cast<int>(channel_mult.size()) - 1); }
};

class VaeNet;  // the torch::nn module tree (src/generate/vae_net.hpp)

class Vae {
   public:
    explicit Vae(const VaeConfig& config, uint64_t seed = 0);
    ~Vae();
    Vae(Vae&&) noexcept;
    Vae& operator=(Vae&&) noexcept;

    // Loads a .safetensors written by save(): the config from its metadata; refuses a file that is not a cocola
    // VAE, or has missing or mis-shaped tensors, naming the file.
    static Vae load(const std::string& path);
    // Writes the weights (float32, or float16 with `half`) and the config as metadata, atomically.
    void save(const std::string& path, const std::map<std::string, std::string>& extra_metadata = {},
              bool half = false) const;

    const VaeConfig& config() const;
    VaeConfig& mutable_config();
    void to(const at::Device& device);
    at::Device device() const;

    // mel dB [B, 64, T] (T a multiple of downsampling()) -> scaled latent [B, latent_channels, 64/d, T/d]: the
    // posterior mean (or a draw from it with `sample`). Eval mode, no gradients.
    at::Tensor encode(const at::Tensor& mel_db, bool sample = false) const;
    // scaled latent -> mel dB [B, 64, T]. Eval mode; no gradients unless `with_grad` (COCOLA-guided sampling
    // differentiates a score through the decoder).
    at::Tensor decode(const at::Tensor& latent, bool with_grad = false) const;
    // mel dB -> posterior mean, log-variance (unscaled) and reconstruction (dB), with autograd (for training).
    void forward(const at::Tensor& mel_db, at::Tensor& mean, at::Tensor& logvar, at::Tensor& reconstruction,
                 bool sample, at::Generator* gen = nullptr);

    VaeNet& net();
    const VaeNet& net() const;
    int64_t parameter_count() const;

   private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// The KL divergence of the diagonal Gaussians (mean, logvar) from N(0, I), summed over latent elements and
// averaged over the batch.
at::Tensor kl_divergence(const at::Tensor& mean, const at::Tensor& logvar);

// Encodes audio of any length to latents [chunks, C, 16, 128]: 5.12 s chunks, the last zero-padded.
at::Tensor encode_audio(const Vae& vae, const std::vector<float>& audio);
// Decodes latents [chunks, C, h, w] to one mel spectrogram [64, chunks * w * d] (dB), clamped to
// [kMelFloorDb, kMelCeilingDb].
at::Tensor decode_to_mel(const Vae& vae, const at::Tensor& latents);

// ---------------------------------------------------------------- training a generator's model
// What every generator's training shares (the VAE's and the vocoder's options extend it): data, run folder,
// length, rate schedule, clipping, EMA, validation and checkpoint cadence.
struct GeneratorTraining {
    std::vector<std::string> caches;  // stem caches (cocola data index); examples are random sub-mixes of "train"
    std::string run_dir;
    int64_t steps = 2000;
    int batch = 8;
    int crop_frames = 128;    // training crops (the models are convolutional; whole chunks at use)
    double lr = 1e-4;
    int64_t warmup_steps = 100;
    std::string lr_decay = "cosine";
    double clip_grad_norm = 1.0;
    double ema_decay = 0;     // > 0: the model files hold the moving average of the weights
    uint64_t seed = 0;
    int val_every = 100;
    int val_chunks = 16;      // fixed 5.12 s validation chunks of the valid (or test) split
    int checkpoint_every = 50;
    double checkpoint_minutes = 10;
    int keep_snapshots = 3;
    std::string device = "cpu";
};

// ---------------------------------------------------------------- the neural vocoder
// A Vocos-style vocoder (Siuzdenko 2023): a ConvNeXt backbone at the frame rate (100 frames/s) predicts, per
// frame, the magnitude and phase of an STFT (n_fft 640, hop 160), and an inverse STFT makes the audio. All its work
// is at the frame rate, so it runs many times faster than real time on one CPU thread.
struct VocoderConfig {
    int channels = 256;
    int blocks = 8;
    int n_fft = 640;  // 4 x hop, Hann window of n_fft
    double mel_mean = -40, mel_std = 20;  // input normalisation, measured on the training data
    // "none": the network predicts the log-magnitudes outright. "mel-inverse": it predicts a correction to the
    // magnitudes the spectrogram implies through the filterbank (mel_inverse_magnitudes), as FreeV (Lv et al.
    // 2024) does, so that it starts with the magnitudes right and spends its training on the phase.
    std::string prior = "none";
    // After the network, passes of match_log_mel that re-level its audio band by band towards the input spectrogram
    // (inference only: vocode applies them, forward does not). 0 in files written before the option existed.
    int mel_matching_passes = 0;
};

class VocoderNet;  // src/generate/vocoder.cpp

class Vocoder {
   public:
    explicit Vocoder(const VocoderConfig& config, uint64_t seed = 0);
    ~Vocoder();
    Vocoder(Vocoder&&) noexcept;
    Vocoder& operator=(Vocoder&&) noexcept;
    // Refuses a file that is not a cocola vocoder, or has missing or mis-shaped tensors, naming the file.
    static Vocoder load(const std::string& path);
    void save(const std::string& path, const std::map<std::string, std::string>& extra_metadata = {},
              bool half = false) const;
    const VocoderConfig& config() const;
    VocoderConfig& mutable_config();
    void to(const at::Device& device);
    at::Device device() const;
    // mel dB [B, 64, T] -> audio [B, T * 160], with autograd (training).
    at::Tensor forward(const at::Tensor& mel_db);
    // One spectrogram [64, T] (dB) -> T * 160 samples. Eval mode, no gradients.
    std::vector<float> vocode(const at::Tensor& mel_db) const;
    VocoderNet& net();
    int64_t parameter_count() const;

   private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// Log-mel [B, 64, n / 160] (dB) of audio [B, n] with autograd: the front-end's STFT, HTK filterbank and dB on
// tensors (float32), equal to mel_spectrograms up to float rounding. The vocoder's training target and loss.
at::Tensor mel_spectrograms_differentiable(const at::Tensor& audio);
// The multi-resolution STFT loss of Yamamoto et al. (spectral convergence + log-magnitude L1 at FFT sizes 512,
// 1024, 2048), averaged over resolutions, with autograd: audio [B, n] against reference [B, n].
at::Tensor multi_resolution_stft_loss(const at::Tensor& audio, const at::Tensor& reference);
// The STFT magnitudes [B, n_fft / 2 + 1, T] that log-mel spectrograms [B, 64, T] (dB) imply for a Hann window of
// n_fft taps: the non-negative least-squares fit through the front-end's filterbank (the start Griffin-Lim uses,
// here batched in float32 on the spectrogram's device), moved onto the n_fft bins. No gradient.
at::Tensor mel_inverse_magnitudes(const at::Tensor& mel_db, int64_t n_fft);
// Audio [B, T * 160] re-levelled so that its log-mel comes closer to `target_db` [B, 64, T]: each pass takes the
// front-end's STFT, measures the log-mel, spreads the band-by-band dB differences (clamped, with steps that adapt) onto the
// bins the bands cover, scales the STFT by them and inverts it; phases are kept. What Griffin-Lim's iterations
// do for its magnitudes, at the cost of one of them per pass. No gradient.
at::Tensor match_log_mel(const at::Tensor& audio, const at::Tensor& target_db, int passes);

struct VocoderTrainOptions : GeneratorTraining {
    double mel_weight = 10.0;  // log-mel L1 (normalised units): what COCOLA reads, so it leads
    double stft_weight = 1.0;  // multi-resolution STFT loss
    int channels = 256;
    int blocks = 8;
    int n_fft = 640;
    std::string prior = "none";  // VocoderConfig::prior
    int mel_matching_passes = 0;  // VocoderConfig::mel_matching_passes, written into the weights' config
    VocoderTrainOptions() {
        steps = 3000;
        lr = 5e-4;
    }
};
void train_vocoder(VocoderTrainOptions options, bool resume, const train::RowCallback& on_row = {},
                   const std::function<bool()>& stop = {});
VocoderTrainOptions read_vocoder_run_options(const std::string& run_dir);
std::vector<std::string> vocoder_fixed_on_resume_flags();
void apply_vocoder_resumable_options(const VocoderTrainOptions& given, VocoderTrainOptions& run,
                                     const std::function<bool(const std::string&)>& was_given);

// ---------------------------------------------------------------- resynthesis and what it keeps
// Audio -> log-mel (-> VAE latents -> log-mel when `vae` is given) -> Griffin-Lim -> audio of the same length
// (rounded down to whole 10 ms frames, the rest silent).
// With a vocoder, it makes the audio instead of Griffin-Lim.
std::vector<float> resynthesize(const std::vector<float>& audio, const Vae* vae, const GriffinLimOptions& gl = {},
                                const Vocoder* vocoder = nullptr);

struct ReconstructionResult {
    std::string path;                       // e.g. "mel + griffin-lim"
    double log_mel_l1 = 0, log_mel_l1_ci95 = 0;  // dB, mean over clips and its 95% half-width
    double mr_stft = 0, mr_stft_ci95 = 0;
    size_t clips = 0;
    eval::EvalResult k2;                    // the K = 2 accuracy with every sub-mix resynthesized
    // The first few (original, resynthesized) anchor clips, for listening.
    std::vector<std::pair<std::vector<float>, std::vector<float>>> examples;
};
using ResynthesisFn = std::function<std::vector<float>(const std::vector<float>&)>;
// Runs `eo`'s K = 2 protocol on the cache with every anchor and positive passed through `resynth` (empty: the
// original audio, distances 0), and measures each resynthesized clip against its original.
ReconstructionResult evaluate_reconstruction(const model::Model& model, const data::StemCache& cache,
                                             eval::EvalOptions eo, const std::string& name, const ResynthesisFn& resynth,
                                             size_t keep_examples = 0, const eval::EvalProgress& progress = {});

// A picture of log-mel spectrograms [64, T] stacked top to bottom, each titled, as an SVG holding one PNG
// (dB from -100 to the loudest value, a perceptual colour map), written atomically.
void write_spectrogram_svg(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& panels);
// The same picture as a PNG (no titles).
void write_spectrogram_png(const std::string& path, const std::vector<at::Tensor>& mels);

// ---------------------------------------------------------------- training the autoencoder
struct VaeTrainOptions : GeneratorTraining {
    double kl_weight = 1e-5;  // per input element, against the L1 of the normalised spectrogram
    int base_channels = 32;
    std::vector<int> channel_mult = {1, 2, 4};
    int res_blocks = 1;
    int latent_channels = 8;
    bool mid_attention = true;
};

// Trains the autoencoder from scratch in run_dir, or continues the run there exactly where its checkpoint
// stopped (resume equals uninterrupted on the CPU). Writes options.json, checkpoint.safetensors, log.csv
// (step, loss, l1_db, kl, ... ), curves.svg, last.safetensors and best.safetensors (by validation L1).
void train_vae(VaeTrainOptions options, bool resume, const train::RowCallback& on_row = {},
               const std::function<bool()>& stop = {});
VaeTrainOptions read_vae_run_options(const std::string& run_dir);
std::vector<std::string> vae_fixed_on_resume_flags();
void apply_vae_resumable_options(const VaeTrainOptions& given, VaeTrainOptions& run,
                                 const std::function<bool(const std::string&)>& was_given);

}  // namespace cocola::generate
