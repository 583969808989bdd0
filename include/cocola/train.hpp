// Contrastive training of COCOLA (the paper's section 3): batches of K windows from K tracks, two disjoint
// sub-mixes per window, cross-entropy over the K x K similarity matrix with the positives on the diagonal.
// It is one objective on the shared training core (cocola/train_core.hpp).
#pragma once
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cocola/data.hpp"
#include "cocola/model.hpp"

namespace cocola::train {

enum class LossKind { Paper, Symmetric };

struct TrainOptions {
    std::vector<std::string> caches;  // stem caches (cocola data index); several = the paper's "All" mix
    std::string run_dir;              // checkpoints, log.csv, curves.svg
    features::Frontend frontend = features::Frontend::Hpss;
    model::Similarity similarity = model::Similarity::Bilinear;
    data::PairMode pair_mode = data::PairMode::SubMix;
    int batch = 32;
    double lr = 1e-3;
    int64_t steps = 1000;       // total optimizer steps (the run stops there; --resume continues up to it)
    double noise_sigma = 1e-3;  // Gaussian noise on the positive sub-mixes
    double max_overlap = 0.5;
    double dropout = 0.1;
    uint64_t seed = 0;
    int val_every = 100;       // steps between validations (and best-checkpoint checks)
    int val_batches = 8;       // batches of K from the fixed protocol of the validation split
    int checkpoint_every = 25; // steps between "last" checkpoints
    std::string device = "cpu";
    std::string init_from;     // optional .safetensors to start from (fine-tuning)
    LossKind loss = LossKind::Paper;  // see contrastive_logits in src/train/trainer.cpp
    bool channel_masks = true;  // hpss: the reference's random harmonic-only / percussive-only / both per pair
    bool swap_roles = false;    // anchor and positive of each pair swapped with probability 1/2 (data::SamplerOptions)
    int windows_per_track = 1;  // N > 1: batches of K/N tracks, N non-overlapping windows each (data::SamplerOptions)
    double similarity_init_std = model::kReferenceSimilarityInitStd;  // std of the initial bilinear W
    double similarity_init_identity = 0;  // added to the initial W on its diagonal
    double similarity_lr = 0;  // Adam rate of the bilinear matrix W; 0 = the same as lr (the paper)
    // Data-dependent init of the projection 1280 -> D (fresh runs only): its outputs start centred and of unit
    // spread over the first training batches (see trainer.cpp).
    bool center_projection = false;
    // Linear learning-rate warm-up over the first warmup_steps steps (0: none, the paper): Adam's first steps
    // move every weight by about lr whatever the size of its gradient.
    int64_t warmup_steps = 0;
    // After the warm-up, the rates stay constant ("none", the paper) or follow a half cosine from their full value
    // down to zero at `steps` ("cosine"), so a run ends settled rather than wandering at its full rate
    // (docs/training.md section 11). A function of the step and `steps`: giving --steps anew on --resume
    // stretches the rest of the curve.
    std::string lr_decay = "none";
    // Fresh runs only: the last BatchNorm of every residual MBConv branch starts with scale 0, so each block
    // starts as the identity and the network as a shallow one (Goyal et al. 2017's "zero-gamma").
    bool zero_init_residual = false;
    // Weight of an auxiliary, training-only loss (0: off, the paper's recipe): a linear head on the encoder's
    // pooled 1280 features predicts each window's tempo profile (the autocorrelation of its onset envelope at
    // lags 0.15-2 s), computed from the window's own features. It points the encoder at rhythm, the cue a
    // shift-invariant embedding can use that our runs did not pick up (docs/training.md section 7); the
    // head is not part of the model that is saved.
    double aux_tempo = 0;
    // Weight of a second auxiliary, training-only loss (0: off): two linear heads on the pooled features classify
    // each window's tempo (24 bins of a twelfth of an octave from 48 BPM) and key signature (12 classes: the
    // tonic of the relative major), read from the meta.json `cocola synth` writes beside each procedural song.
    // Windows of songs without those labels (openmsx, user data), and the key of drum-only sub-mixes, are left
    // out of it. Clean labels for the two cues a pooled embedding can carry (docs/training.md section 13).
    double aux_labels = 0;
    // Where the features of training windows are computed: "threads" (the FFTW front-end on CPU threads,
    // beside the model), "tensor" (features::compute_batch_tensor on the training device) or "auto" (tensor on
    // a GPU, whose speed the CPU threads cannot match; threads on the CPU). The same features either way.
    std::string feature_path = "auto";
    // The share of training batches drawn from each of `caches`, in their order (normalised; 0 = never trained
    // on, still validated on). Empty: every source in proportion to its size, as the paper mixes its "All".
    // A small dataset mixed with a large one is otherwise seen for a few percent of the steps.
    std::vector<double> data_weights;
    // Augmentation (0: off, the paper): the probability that each stem of a training window goes through a random
    // production chain (synth::random_effect_chain, scaled back to the stem's level) before the sub-mixes are
    // summed, drawn anew for every window, so that no song keeps one chain the model could learn
    // (docs/training.md section 20). Validation windows stay dry.
    double stem_effects = 0;
    // Augmentation (0: off): each stem of a training window is scaled by a gain drawn uniformly in +-stem_gain_db
    // dB, anew for every window, before the sub-mixes are summed: other balances within each sub-mix than the
    // songs' own mixing levels (after the effects, when both are on).
    double stem_gain_db = 0;
};

struct StepLog {
    int64_t step = 0;
    int epoch = 0;
    double loss = 0, accuracy = 0;
    double val_loss = -1, val_accuracy = -1;  // < 0 when not validated at this step
    double val_k2_accuracy = -1;              // cocola eval's K = 2 accuracy on the validation split(s)
    double aux_loss = -1;                     // the auxiliary losses, unweighted sum (tempo profile 1 - cosine,
                                              // label cross-entropies); < 0 when off
    double seconds = 0;                        // wall time of this step
    double feature_seconds = 0;                // of which computing features
};

using StepCallback = std::function<void(const StepLog&, int64_t total_steps)>;

// Data-parallel training over processes and machines (docs/training.md, "Training on many machines"): world_size
// processes, each computing its share of the same global batch of TrainOptions::batch windows. Not part of the
// run's options: a run may be resumed with another world size (any that divides the batch).
struct DistributedOptions {
    int world_size = 1;                    // 1: one process, no process group
    int rank = 0;                          // 0 writes the run folder (log, checkpoints, models); the others nothing
    std::string master = "127.0.0.1:29500";  // HOST:PORT of rank 0, where the ranks meet (rank 0 listens there)
    double timeout_seconds = 1800;         // how long a rank waits for the others (rank 0 validates alone meanwhile)
};
// Whether this build can train over several processes (LibTorch with Gloo, built with the gloo headers).
bool distributed_available();

// Trains from scratch in run_dir, or continues the run in run_dir exactly where its last checkpoint stopped
// (same data order, same random draws: on CPU the result equals an uninterrupted run). Throws cocola::Error.
// `stop` is polled between steps (e.g. set by SIGINT): the run then writes its checkpoint and returns.
// With dist.world_size > 1, every rank calls it with the same options (ranks other than 0 may leave out
// run_dir and, on --resume, take the run's options from rank 0; their caches must hold the same data) and only
// rank 0 reports steps to `on_step`; a stop on any rank stops all of them after the same step.
void train(TrainOptions opt, bool resume, const StepCallback& on_step = {}, const std::function<bool()>& stop = {},
           const DistributedOptions& dist = {});

// The factor on every learning rate at the step with 0-based index `step`: the linear warm-up, then the decay.
double learning_rate_scale(const TrainOptions& o, int64_t step);

// Which data a step trains on: the index of its source in TrainOptions::caches, that source's epoch, and the
// batch of that epoch's plan (data::PairSampler::batch).
struct ScheduledBatch {
    int source = 0;
    int epoch = 0;
    size_t batch = 0;
};
// The data order of a run with these options, steps first .. first + count - 1 (0-based): a pure function of
// the options and the step, which is what makes --resume exact. Throws on weights that do not fit the sources.
std::vector<ScheduledBatch> data_schedule(const TrainOptions& o, int64_t first, int64_t count);

// Labels of a track for --aux-labels: -1 where unknown.
struct MusicLabels {
    int tempo_class = -1;  // round(12 * log2(bpm / 48)), clamped to [0, kTempoClasses)
    int key_class = -1;    // pitch class of the relative major's tonic (0 = C)
};
constexpr int kTempoClasses = 24, kKeyClasses = 12;
// Per track of `cache` (in its order): read from <root>/<split>/<id>/meta.json (bpm, tonic, mode), as
// `cocola synth` writes them; tracks without that file or those fields get -1. Files that exist but are not a
// JSON object are listed in `unreadable` (when given): their tracks get -1 too.
std::vector<MusicLabels> music_labels(const data::StemCache& cache, std::vector<std::string>* unreadable = nullptr);

// Reads the options a run was started with (run_dir/options.json).
TrainOptions read_run_options(const std::string& run_dir);
// The options as options.json holds them (one mapping, src/train/contrastive_options.cpp), and back (throws on
// a malformed object).
nlohmann::json options_json(const TrainOptions& o);
TrainOptions train_options_from_json(const nlohmann::json& j);
// CLI flags of the options a run keeps for its life (given with --resume, they are ignored).
std::vector<std::string> fixed_on_resume_flags();
// On --resume: the options a resume may change (--steps, --lr, --similarity-lr, --feature-path) are copied from
// `given` into `run` where `was_given(flag)` says the user gave them anew.
void apply_resumable_options(const TrainOptions& given, TrainOptions& run,
                             const std::function<bool(const std::string&)>& was_given);

// The auxiliary loss's target (--aux-tempo): tempo profiles [B, 185] of feature windows [B, C, 64, T] (dB), the
// centred, unit-norm autocorrelation of the onset envelope at lags of 15-199 frames (0.15-2 s).
at::Tensor tempo_profiles(const at::Tensor& features);

// Writes run_dir/curves.svg from run_dir/log.csv (loss and accuracy, training and validation).
void write_curves_svg(const std::string& run_dir);

// Training accuracy and loss of several runs on one chart (e.g. the paper's cosine vs bilinear ablation).
void write_comparison_svg(const std::vector<std::string>& run_dirs, const std::vector<std::string>& labels,
                          const std::string& out_path, const std::string& title);

}  // namespace cocola::train
