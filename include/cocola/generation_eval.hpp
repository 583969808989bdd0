// Measuring generation (docs/generation.md, `cocola eval-generation`): test chunks of held-out songs, each with an
// input sub-mix and the target sub-mix a task asks for, and what each generator makes of the input: its COCOLA
// score against the input (the paper's CCS), and its distance to the target (log-mel L1, SI-SDR).
//
// Tasks: accompany (input: a random non-empty proper subset of the chunk's active stems; target: the others) and
// extract (input: all active stems; target: one of them). Generators: componet (the model), truth (the target
// itself: the upper bound), resynth (the target through the VAE and vocoder: what the generator's way to sound
// keeps at best), random (a real sub-mix of another test song at a random place: the lower bound), and msdm (the
// MSDM baseline, accompaniment only: it inpaints the input's sources, so the items keep each tag on one side).
//
// Beside the per-item scores, set distances between each generator's outputs and the real targets: FAD, FAD-inf
// and KAD on COCOLA embeddings, on VAE latents (mean and spread over time) and on embeddings users compute
// elsewhere (distribution_distance.hpp).
#pragma once
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "cocola/componet.hpp"
#include "cocola/data.hpp"
#include "cocola/model.hpp"

namespace cocola::componet {

struct GenerationItem {
    std::string set, task;      // the test set's name; "accompany" or "extract"
    size_t index = 0;           // its place among the set's items of the task
    std::string track, random_track;
    int64_t offset = 0;         // samples
    Prompt prompt;              // in: the input's stems; out: the target's
    std::vector<float> input, target, random;  // generate::kChunkSamples each
    std::vector<std::pair<std::string, std::vector<float>>> input_sources;  // the input per tag (stems of a tag summed)
};

const std::vector<std::string>& generation_tasks();       // accompany, extract
const std::vector<std::string>& generation_generators();  // componet, msdm, truth, resynth, random

// Draws n items of `task` from the `split` of a cache: chunks where at least two stems whose tags `vocabulary`
// knows are active (data::ActivityRule), in songs of at least one chunk. Deterministic given the seed; the same
// for every generator, so rows are compared on the same items. With `whole_tags` the stems of one tag (guitar_1,
// guitar_2) stay on one side, as MSDM's sources require. Throws when the split has no such chunk.
std::vector<GenerationItem> draw_generation_items(const data::StemCache& cache, const std::string& set,
                                                  const std::string& split, const std::string& task, size_t n,
                                                  uint64_t seed, const std::vector<std::string>& vocabulary,
                                                  bool whole_tags = false);

// Scale-invariant signal-to-distortion ratio (dB) of an estimate against a reference (both made zero-mean);
// NaN when the reference is silent, +inf when they are equal up to scale.
double si_sdr(const float* estimate, const float* reference, size_t n);
// How much louder `audio` is than `reference` (dB, RMS over each whole clip); NaN when either is silent.
double level_difference_db(const std::vector<float>& audio, const std::vector<float>& reference);

struct OutputMeasures {
    double cocola = NAN;      // COCOLA score of the output against the item's input (NaN without a judge)
    double cocola2 = NAN;     // the same with a second COCOLA model (NaN without one)
    double log_mel_l1 = NAN;  // dB, against the target
    double si_sdr = NAN;      // dB, against the target
    double level = NAN;       // dB: the output's RMS over the target's (NaN where either is silent)
    std::vector<float> cocola_embedding;  // the output's first-window embedding by the judge (empty without one)
};
OutputMeasures measure_output(const model::Model* judge, const GenerationItem& item, const std::vector<float>& output,
                              const model::Model* second_judge = nullptr);

// A clip's VAE latent summarised for set distances: the per-channel-and-band mean and standard deviation over time
// (2 x latent_channels x bands values; 256 for the shipped VAE), so that a few dozen clips can fit a Gaussian.
std::vector<float> vae_embedding(const generate::Vae& vae, const std::vector<float>& clip);

// Set distances of one generator's outputs to the real targets of the same items, in one embedding space.
struct DistanceRow {
    std::string set, task, generator, space;
    size_t items = 0;
    double fad = NAN, fad_low = NAN, fad_high = NAN;  // with the bootstrap 95% interval (paired over items)
    double fad_inf = NAN;
    double kad = NAN, kad_low = NAN, kad_high = NAN;
};
// `outputs[i]` and `targets[i]` are the embeddings of item i's output and target. Needs 3 items or more (FAD-inf
// and the intervals need more to mean much; they are NaN below 6).
DistanceRow set_distances(const std::vector<std::vector<float>>& outputs, const std::vector<std::vector<float>>& targets,
                          uint64_t seed = 0);

struct GenerationRow {
    std::string set, task, generator;
    size_t items = 0;
    double cocola = NAN, cocola_ci95 = NAN;  // mean over items and the 95% half-width (normal approximation)
    double cocola2 = NAN, cocola2_ci95 = NAN;
    double log_mel_l1 = NAN, log_mel_l1_ci95 = NAN;
    double si_sdr = NAN, si_sdr_ci95 = NAN;  // over the items where it is finite
    double level = NAN, level_ci95 = NAN;    // likewise
};
struct MeasuredItem {
    std::string set, task, generator;
    size_t index = 0;
    OutputMeasures m;
};
// One row per (set, task, generator), in the order they first appear, and rows of set "all" over the sets.
std::vector<GenerationRow> summarize_generation(const std::vector<MeasuredItem>& items);

// How well a CompoNet recovers the clean latents of real targets at each noise level, given their prompt and input:
// the RMS error of its clean estimate x0 = (x_t - sqrt(1 - a) eps) / sqrt(a), and of that estimate's per-channel
// means (what sets a chunk's loudness and spectral balance; the first DDIM steps fix them). The bar is the error of
// knowing nothing: the items' own per-channel mean latent. Where a model's error passes it (an epsilon model at the
// top of the schedule, docs/generation.md section 7), its clean estimate is worse than none.
struct DenoiserProbeRow {
    int64_t t = 0;
    double alpha_bar = 0;
    double x0_rmse = 0, mean_rmse = 0;
};
struct DenoiserProbe {
    size_t items = 0;
    double prior_rmse = 0, prior_mean_rmse = 0;  // the bar
    std::vector<DenoiserProbeRow> rows;
};
// Noise drawn from `seed`, the same for every model, so that two models are compared on the same x_t. Stage-1
// models are probed without the input.
DenoiserProbe probe_denoiser(Componet& model, const generate::Vae& vae, const std::vector<GenerationItem>& items,
                             const std::vector<int64_t>& timesteps, uint64_t seed = 0);

// ---------------------------------------------------------------- reports (src/generate/generation_report.cpp)
// A bar chart of the mean COCOLA score per generator, grouped by test set and task, with 95% intervals; the
// axis starts at the lowest mean minus its interval (raw scores sit far from zero), which the chart says.
void write_score_chart_svg(const std::string& path, const std::vector<GenerationRow>& rows, const std::string& title);

// One item of the listening page: its files are relative to the page's folder.
struct PageItem {
    std::string set, task, prompt;
    size_t index = 0;
    std::string input_audio, target_audio, spectrogram;       // relative paths ("" if absent)
    std::vector<std::string> generators;                      // in column order
    std::vector<std::string> outputs;                         // relative audio path per generator ("" if absent)
    std::vector<double> scores;                               // COCOLA score per generator (NaN if none)
};
// DIR/index.html: the tables and chart at the top, then one row per item with audio players and scores, sortable
// by clicking a column's header; self-contained (relative paths, no network). When every player has loaded its
// file (or failed to), the page writes "audio loaded: N of M" in #load-status (for the browser test).
void write_listening_page(const std::string& path, const std::string& title, const std::vector<GenerationRow>& rows,
                          const std::vector<DistanceRow>& distances, const std::string& chart, const std::vector<PageItem>& items,
                          const std::string& settings);

}  // namespace cocola::componet
