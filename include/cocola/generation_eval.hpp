// Measuring generation (docs/generation.md, `cocola eval-generation`): test chunks of held-out songs, each with an
// input sub-mix and the target sub-mix a task asks for, and what each generator makes of the input: its COCOLA
// score against the input (the paper's CCS), and its distance to the target (log-mel L1, SI-SDR).
//
// Tasks: accompany (input: a random non-empty proper subset of the chunk's active stems; target: the others) and
// extract (input: all active stems; target: one of them). Generators: componet (the model), truth (the target
// itself: the upper bound), resynth (the target through the VAE and vocoder: what the generator's way to sound
// keeps at best), random (a real sub-mix of another test song at a random place: the lower bound).
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
};

const std::vector<std::string>& generation_tasks();       // accompany, extract
const std::vector<std::string>& generation_generators();  // componet, truth, resynth, random

// Draws n items of `task` from the `split` of a cache: chunks where at least two stems whose tags `vocabulary`
// knows are active (data::ActivityRule), in songs of at least one chunk. Deterministic given the seed; the same
// for every generator, so rows are compared on the same items. Throws when the split has no such chunk.
std::vector<GenerationItem> draw_generation_items(const data::StemCache& cache, const std::string& set,
                                                  const std::string& split, const std::string& task, size_t n,
                                                  uint64_t seed, const std::vector<std::string>& vocabulary);

// Scale-invariant signal-to-distortion ratio (dB) of an estimate against a reference (both made zero-mean);
// NaN when the reference is silent, +inf when they are equal up to scale.
double si_sdr(const float* estimate, const float* reference, size_t n);

struct OutputMeasures {
    double cocola = NAN;      // COCOLA score of the output against the item's input (NaN without a judge)
    double log_mel_l1 = NAN;  // dB, against the target
    double si_sdr = NAN;      // dB, against the target
};
OutputMeasures measure_output(const model::Model* judge, const GenerationItem& item, const std::vector<float>& output);

struct GenerationRow {
    std::string set, task, generator;
    size_t items = 0;
    double cocola = NAN, cocola_ci95 = NAN;  // mean over items and the 95% half-width (normal approximation)
    double log_mel_l1 = NAN, log_mel_l1_ci95 = NAN;
    double si_sdr = NAN, si_sdr_ci95 = NAN;  // over the items where it is finite
};
struct MeasuredItem {
    std::string set, task, generator;
    size_t index = 0;
    OutputMeasures m;
};
// One row per (set, task, generator), in the order they first appear, and rows of set "all" over the sets.
std::vector<GenerationRow> summarize_generation(const std::vector<MeasuredItem>& items);

}  // namespace cocola::componet
