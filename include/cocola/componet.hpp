// The generative half, part 2: CompoNet (the paper's section 3.3), a latent diffusion model prompted with stem
// tags ("in: piano, strings; out: bass, drums") whose ControlNet adapter reads the input sub-mix, so that one
// model accompanies, extracts, adds and removes stems.
//
// Stage 1 trains a U-Net denoiser (epsilon prediction, 1000 steps) over VAE latents of 5.12 s chunks, prompted
// with `out: <stems>`; stage 2 freezes it and trains the ControlNet adapter (a trainable copy of the U-Net's
// encoder whose input is z_t + conv_in(w), w the input sub-mix's latent, and whose outputs enter the frozen
// U-Net's skips through zero-initialised 1x1 convolutions), with input and output stems drawn independently.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cocola/generate.hpp"
#include "cocola/model.hpp"
#include "cocola/train_core.hpp"

namespace cocola::componet {

// ---------------------------------------------------------------- prompts
// A tag names a stem class: lower case, words separated by single spaces ("chromatic percussion"); a stem of a
// class that repeats is numbered ("other_1", "other_2").
struct Tag {
    std::string name;
    int number = 0;  // 0: not numbered
    bool operator==(const Tag& o) const { return name == o.name && number == o.number; }
};
struct Prompt {
    std::vector<Tag> in, out;  // out is non-empty for a real prompt; both empty: the unconditional prompt
    bool empty() const { return in.empty() && out.empty(); }
};

// The tag of a class name as datasets spell it ("Chromatic Percussion", "other_keys", "french_horn").
std::string canonical_tag(const std::string& class_name);
// The built-in vocabulary: the General MIDI families and drums (cocola synth, openmsx, Slakh2100), the classes of
// MUSDB18-HQ, MoisesDB and CocoChorales, and "mix" (an input described by no stem list).
const std::vector<std::string>& builtin_tags();
// Tags for a list of stem classes, numbered where a class repeats, in the order given.
std::vector<Tag> tags_for_classes(const std::vector<std::string>& classes);

// Parses "in: piano, strings; out: bass, drums" (either part may be missing, "out:" must not be empty; a leading
// genre part is refused). Every tag must be in `vocabulary`, else the error lists the known ones.
Prompt parse_prompt(const std::string& text, const std::vector<std::string>& vocabulary);
std::string format_prompt(const Prompt& p);  // the canonical text, e.g. "in: piano; out: bass, drums"

// ---------------------------------------------------------------- the model
struct ComponetConfig {
    int latent_channels = 8;
    std::vector<int> channels = {64, 128, 256};  // U-Net widths per level (2 halvings of the latent)
    int res_blocks = 2;
    int cross_attention_from = 1;  // levels >= this attend to the prompt; the lowest level and the middle also
                                   // attend to themselves
    int head_channels = 32;        // channels per attention head
    int prompt_dim = 128;          // the prompt encoder's width (the U-Net's context)
    int prompt_layers = 2;
    int max_prompt_tokens = 32;
    int diffusion_steps = 1000;
    double beta_start = 0.0015, beta_end = 0.0195;  // "scaled linear" (linear in sqrt(beta)), as latent diffusion
    // What the network outputs: "epsilon", the noise (DDPM, the paper's CompoNet), or "v" = sqrt(a) eps - sqrt(1 - a) x0
    // (Salimans & Ho 2022). At the top of the schedule (a ~ 2e-4 at t = 980) an epsilon model's clean estimate
    // x0 = (x_t - sqrt(1 - a) eps) / sqrt(a) multiplies its error 70-fold, and the first DDIM steps fix the latent's
    // per-channel means (the chunk's loudness and spectral balance) from that estimate; a v model's x0 is its own
    // output there. Files without the key are epsilon models.
    std::string prediction = "epsilon";
    bool controlnet = false;       // stage 2: the adapter is present
    std::vector<std::string> vocabulary;  // tags the prompt encoder knows (builtin_tags() and the data's classes)
    nlohmann::json vae;            // the VAE config the latents came from (generation checks it)
    // Non-empty: an MSDM-style joint model (the paper's baseline) over these fixed sources (tags, e.g. bass, drums,
    // guitar, piano): its latent is the sources' VAE latents stacked as channels (latent_channels = sources x the
    // VAE's), it is trained and sampled with the empty prompt, and it accompanies by inpainting.
    std::vector<std::string> sources;
    bool is_msdm() const { return !sources.empty(); }
    int downsampling() const { return 1 << (static_cast<int>(channels.size()) - 1); }
};
nlohmann::json config_to_json(const ComponetConfig& c);
ComponetConfig config_from_json(const nlohmann::json& j);  // throws on a malformed config

class ComponetNet;  // the module tree (src/generate/componet_net.hpp)

class Componet {
   public:
    explicit Componet(const ComponetConfig& config, uint64_t seed = 0);
    ~Componet();
    Componet(Componet&&) noexcept;
    Componet& operator=(Componet&&) noexcept;
    // Refuses a file that is not a cocola CompoNet, or has missing, mis-shaped or non-finite tensors, naming it.
    static Componet load(const std::string& path);
    void save(const std::string& path, const std::map<std::string, std::string>& extra_metadata = {},
              bool half = false) const;
    const ComponetConfig& config() const;
    void to(const at::Device& device);
    at::Device device() const;
    int64_t parameter_count() const;

    // Adds the ControlNet adapter: a copy of the U-Net's encoder, zero-initialised input and output convolutions.
    void add_controlnet();

    // Tokens [B, S, 3] (tag id, number, section) and their mask [B, S] (true where a token is) for prompts (the
    // empty prompt: the unconditional one), on the model's device.
    void tokenize(const std::vector<Prompt>& prompts, at::Tensor& tokens, at::Tensor& mask) const;
    // The network's own output (its config's `prediction`) for latents x_t [B, C, H, W] at timesteps t [B] (int64),
    // prompts as tokens, and (with the adapter) the control latents w [B, C, H, W] (undefined: no adapter
    // contribution). With autograd.
    at::Tensor predict(const at::Tensor& x_t, const at::Tensor& t, const at::Tensor& tokens, const at::Tensor& mask,
                       const at::Tensor& control = {});
    // The predicted noise, whatever the network outputs (what samplers use). With autograd.
    at::Tensor predict_noise(const at::Tensor& x_t, const at::Tensor& t, const at::Tensor& tokens,
                             const at::Tensor& mask, const at::Tensor& control = {});
    // What predict() should output for clean latents z0 noised by `noise` at timesteps t (the training target).
    at::Tensor prediction_target(const at::Tensor& z0, const at::Tensor& noise, const at::Tensor& t) const;

    // alpha_bar(t) for t = 0 .. diffusion_steps - 1 (float64).
    const at::Tensor& alphas_cumprod() const;

    ComponetNet& net();
    const ComponetNet& net() const;

   private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// ---------------------------------------------------------------- sampling
struct SampleOptions {
    int steps = 50;          // DDIM steps
    double eta = 0;          // 0: deterministic DDIM; 1: DDPM-like noise
    double guidance = 2.0;   // classifier-free guidance scale (1: the conditional prediction alone)
    uint64_t seed = 0;
};
using StepProgress = std::function<void(int done, int total)>;
// Inpainting (MSDM): channels where `mask` is 1 are known: at every step they are replaced by the known latents
// noised to the step's noise level (fresh noise), so that the rest is drawn given them.
struct Inpainting {
    at::Tensor known;  // [1 or B, C, H, W]
    at::Tensor mask;   // [1, C, 1, 1] of 0 / 1
    bool active() const { return known.defined(); }
};
// COCOLA-guided sampling (beyond the paper, which lists it as future work): at every DDIM step the gradient of the
// COCOLA score between the input and the decoded clean estimate (VAE decoder -> mel COCOLA model, which reads the
// decoder's spectrogram directly) is added to the denoising direction: eps <- eps - scale sqrt(1 - a_t) g / rms(g),
// g = d score / d x_t through the clean estimate (the U-Net's prediction held fixed).
struct CocolaGuidance {
    model::Model* guide = nullptr;         // a COCOLA model of the mel front-end
    const generate::Vae* vae = nullptr;    // the decoder the gradient flows through
    at::Tensor input_embedding;            // [1, D]: the guide's embedding of the input chunk
    double scale = 0;
    // The score averaged over this many views of the decoded spectrogram (view 0 itself; the others shifted crops
    // 64 frames shorter, some louder or quieter): a gradient that also holds for slightly other spectrograms
    // follows what the views share rather than one model's quirks at one exact input (as adversarial examples are
    // made robust by averaging over transformations).
    int views = 1;
    bool active() const { return guide && vae && scale > 0; }
};
// The guide's embedding of a 16 kHz chunk (its mel spectrogram, as the decoder makes them); throws unless the guide
// reads the mel front-end.
at::Tensor guide_embedding(model::Model& guide, const std::vector<float>& chunk);
// The guide's score of each latent's decoded spectrogram against the input embedding (the mean over `views`), and
// its gradient wrt the latents (for tests and the sampler).
at::Tensor guidance_gradient(const CocolaGuidance& g, const at::Tensor& clean_latents, at::Tensor* scores = nullptr);

// x with its masked channels set to sqrt(a) known + sqrt(1 - a) noise (a = alpha_bar at the noise level, 1: clean).
at::Tensor inpaint(const at::Tensor& x, const Inpainting& in, double alpha_bar, at::Generator& gen);

// Latents [B, C, H, W] drawn by DDIM for one prompt (and control latents [B, C, H, W] with the adapter, or known
// channels to inpaint). Deterministic given the seed.
at::Tensor sample(Componet& model, const Prompt& prompt, const at::Tensor& control, int64_t batch, int64_t height,
                  int64_t width, const SampleOptions& o, const StepProgress& progress = {},
                  const Inpainting& inpainting = {}, const CocolaGuidance& guidance = {});

// ---------------------------------------------------------------- generating audio
struct GenerateOptions {
    SampleOptions sampling;
    int candidates = 1;            // per chunk; the one kept is chosen by `select`
    // "cocola": the highest score of the judge against the input; "guide": the highest score of `guide` (selection
    // by a model that is not the judge, so that the judge's score stays honest); "norm": the highest L2 norm.
    std::string select = "cocola";
    double overlap_seconds = 0.64; // chunks of 5.12 s overlap this much and are crossfaded
    double cocola_guidance = 0;    // COCOLA-guided sampling scale (0: off); needs a guide model
    model::Model* guide = nullptr; // the mel COCOLA model that guides
    int guide_views = 1;           // views of the decoded spectrogram the guide's score is averaged over
    // "input": the output's loudness (RMS over the whole piece) is brought to the input's, never clipping (new stems
    // as loud as the stems they join); "keep": the generator's own level (lowered only where it would clip); "auto":
    // keep where the prompt takes stems out of the input (extraction, removal: the output is a part of the input,
    // not as loud), input otherwise (accompaniment, adding).
    std::string level = "keep";
};
// What level "auto" means for this prompt ("input" or "keep"); other levels are returned as they are.
std::string resolve_level(const std::string& level, const Prompt& prompt);
struct Generated {
    std::vector<float> audio;       // the input's length
    std::vector<double> chunk_scores;  // score of each kept chunk against its input chunk by the model that picks
                                       // (the judge; the guide for select "guide"), if there is one
    double level_gain_db = 0;       // the gain applied: level "input"'s, or limit_peak's for "keep" (0 unless it clipped)
};
// Generates the output stems for `input` (16 kHz mono, any length) chunk by chunk, each chunk conditioned on
// its input chunk, joined by raised-cosine crossfades. The vocoder null: Griffin-Lim. The judge may be null
// unless select is "cocola" with several candidates.
Generated generate_audio(Componet& model, const generate::Vae& vae, const generate::Vocoder* vocoder,
                         const model::Model* judge, const std::vector<float>& input, const Prompt& prompt,
                         const GenerateOptions& o, const std::function<void(size_t, size_t)>& progress = {});

// MSDM: generates the `wanted` sources given the `given` ones (source tag -> 16 kHz mono audio, any length, all
// the same length), chunk by chunk by inpainting; each chunk's kept candidate is chosen by `select` ("norm": the
// highest L2 norm of the output, as the paper did, since MSDM tends to generate silence). Returns the sum of the
// wanted sources. The judge scores the output against the sum of the given sources (may be null for "norm").
Generated generate_msdm_audio(Componet& model, const generate::Vae& vae, const generate::Vocoder* vocoder,
                              const model::Model* judge, const std::vector<std::pair<std::string, std::vector<float>>>& given,
                              const std::vector<std::string>& wanted, const GenerateOptions& o,
                              const std::function<void(size_t, size_t)>& progress = {});

// Scales `audio` so that its RMS equals `reference`'s, by at most `max_gain_db` either way and never so far that a
// sample would pass +-0.99 (full scale keeps a margin for the WAV writer). Silent audio or reference: unchanged.
// Returns the gain applied, in dB.
double match_level(std::vector<float>& audio, const std::vector<float>& reference, double max_gain_db = 40);
// Level "keep": the generator's own level, lowered only as far as its peak must to stay at 0.99 (a spectrogram
// decoded louder than audio in [-1, 1] can be is rendered faithfully by the vocoder, and a file past full scale
// clips wherever it is played). Returns the gain in dB: 0, or below 0 where it acted.
double limit_peak(std::vector<float>& audio);

// Chunk starts for n samples (chunk, hop = chunk - overlap; the last chunk may run past the end).
std::vector<int64_t> chunk_starts(int64_t n, int64_t chunk, int64_t overlap);
// Joins chunks placed at `starts` into n samples, crossfading overlaps with raised-cosine ramps that sum to 1.
std::vector<float> join_chunks(const std::vector<std::vector<float>>& chunks, const std::vector<int64_t>& starts,
                               int64_t n);

// ---------------------------------------------------------------- training
struct ComponetTrainOptions : generate::GeneratorTraining {
    int stage = 1;                 // 1: the U-Net and prompt encoder; 2: the ControlNet (U-Net frozen)
    std::string vae;               // VAE weights the latents come from
    std::string base;              // stage 2: the stage-1 model file
    std::string pool;              // latent pool file (default RUN/pool.safetensors); built when absent
    int pool_size = 2000;          // training examples encoded once (5.12 s chunks, input and output sub-mixes)
    std::vector<int> channels = {64, 128, 256};
    int res_blocks = 2;
    int prompt_dim = 128;
    int prompt_layers = 2;
    double prompt_drop = 0.1;      // prompts dropped for classifier-free guidance
    double mix_tag = 0.2;          // stage 2: input tags replaced by "mix" this often
    double weight_decay = 1e-3;
    std::vector<std::string> sources;  // non-empty: train an MSDM-style joint model over these sources (stage 1 only)
    std::string prediction;        // ComponetConfig::prediction; empty: epsilon in stage 1, the base's in stage 2
    // A model file whose weights the trained modules start from (stage 1: prompt encoder and U-Net; stage 2: the
    // adapter), e.g. to turn an epsilon model into a v model by fine-tuning rather than from scratch.
    std::string init;
    ComponetTrainOptions() {
        steps = 2000;
        batch = 8;
        crop_frames = 256;
        lr = 1e-4;
        warmup_steps = 100;
        val_chunks = 16;
    }
};
// Draws and encodes the run's latent pool (--pool, default RUN/pool.safetensors) unless it exists; train_componet
// does this too, without progress. Lets a command show progress for the encoding.
void prepare_latent_pool(ComponetTrainOptions options, const std::function<void(size_t, size_t)>& progress);
void train_componet(ComponetTrainOptions options, bool resume, const train::RowCallback& on_row = {},
                    const std::function<bool()>& stop = {});
ComponetTrainOptions read_componet_run_options(const std::string& run_dir);
std::vector<std::string> componet_fixed_on_resume_flags();
void apply_componet_resumable_options(const ComponetTrainOptions& given, ComponetTrainOptions& run,
                                      const std::function<bool(const std::string&)>& was_given);

}  // namespace cocola::componet
