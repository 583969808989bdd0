// What the generators' training commands share: indexing --data sources with a progress bar, and running a
// training with a progress bar, Ctrl-C stopping it safely after the current step.
#pragma once
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <iostream>
#include <string>
#include <vector>

#include "cli/commands.hpp"
#include "cli/progress.hpp"
#include "cocola/error.hpp"
#include "cocola/generate.hpp"
#include "cocola/data.hpp"
#include "cocola/train_core.hpp"

namespace cocola::cli {

// Caches (absolute paths) for dataset roots or caches, indexing roots on first use.
inline std::vector<std::string> index_sources(const std::vector<std::string>& sources, const std::string& cache_dir) {
    std::vector<std::string> out;
    for (const auto& d : sources) {
        Progress bar("index " + d, 1);
        out.push_back(std::filesystem::absolute(data::ensure_cache(d, cache_dir, [&](size_t done, size_t total, const std::string&) {
                          bar.set_total(total);
                          bar.update(done);
                      })).string());
        bar.finish();
    }
    return out;
}

inline volatile std::sig_atomic_t g_generator_stop = 0;

// Runs train(on_row, stop) under a progress bar that shows the moving average of `metric` and the last value of
// `val_metric` (both log columns, in `unit`). Returns the exit code: 130 after Ctrl-C, else 0.
inline int run_generator_training(const std::string& label, int64_t steps, const std::string& run_dir,
                                  const std::string& metric, const std::string& val_metric, const std::string& unit,
                                  const std::function<void(const train::RowCallback&, const std::function<bool()>&)>& train) {
    std::signal(SIGINT, [](int) { g_generator_stop = 1; });
    std::signal(SIGTERM, [](int) { g_generator_stop = 1; });
    Progress bar(label, static_cast<size_t>(steps));
    bool first = true;
    double avg = -1;
    std::string last_val;
    train(
        [&](const train::Metrics& row, int64_t) {
            const auto step = static_cast<size_t>(row.at("step"));
            if (first) bar.resume_from(step), first = false;  // the rate counts from here
            const double v = row.count(metric) ? row.at(metric) : 0.0;
            avg = avg < 0 ? v : 0.95 * avg + 0.05 * v;
            char buf[200];
            if (row.count(val_metric)) {
                std::snprintf(buf, sizeof(buf), " val %s %.3g%s", val_metric.c_str(), row.at(val_metric), unit.c_str());
                last_val = buf;
                bar.message("step " + std::to_string(step) + ":" + last_val);
            }
            std::snprintf(buf, sizeof(buf), "%s %.3g%s (%.2f s/step)%s", metric.c_str(), avg, unit.c_str(),
                          row.at("step_seconds"), last_val.c_str());
            bar.set_suffix(buf);
            bar.update(step);
        },
        [] { return g_generator_stop != 0; });
    bar.finish();
    std::cout << "run: " << run_dir << " (last.safetensors, best.safetensors, log.csv, curves.svg)\n";
    return g_generator_stop ? 130 : 0;
}

// The CLI-only values of a generator's training command.
struct GeneratorCli {
    std::vector<std::string> data;
    std::string resume, cache_dir = data::default_cache_dir();
};

// The flags every generator's training has (generate::GeneratorTraining), with the defaults of `t`.
inline void add_generator_training_flags(CLI::App& app, generate::GeneratorTraining& t, GeneratorCli& cli) {
    app.add_option("--data", cli.data, "Dataset roots (any layout) or caches; examples are random sub-mixes of their "
                                       "\"train\" split, validation chunks come from \"valid\" (or \"test\")")
        ->delimiter(',');
    app.add_option("-o,--out", t.run_dir, "Run folder: checkpoint, log.csv, curves.svg, last/best.safetensors");
    app.add_option("--resume", cli.resume, "Continue the run in this folder where it stopped (--steps, --lr, "
                                           "--checkpoint-every, --checkpoint-minutes, --keep-snapshots, --device may "
                                           "be given anew)");
    app.add_option("--steps", t.steps, "Total optimizer steps")->capture_default_str();
    app.add_option("--batch", t.batch, "Crops per batch")->capture_default_str()->check(CLI::Range(1, 4096));
    app.add_option("--crop-frames", t.crop_frames, "Frames per training crop (10 ms each)")->capture_default_str();
    app.add_option("--lr", t.lr, "Learning rate")->capture_default_str();
    app.add_option("--warmup", t.warmup_steps, "Linear warm-up steps")->capture_default_str()->check(CLI::NonNegativeNumber);
    app.add_option("--lr-decay", t.lr_decay, "none or cosine (down to 0 at --steps)")
        ->check(CLI::IsMember({"none", "cosine"}))->capture_default_str();
    app.add_option("--clip-grad-norm", t.clip_grad_norm, "Clip the gradients' global norm (0: off)")->capture_default_str();
    app.add_option("--ema", t.ema_decay, "EMA decay of the weights the model files hold (0: off)")
        ->check(CLI::Range(0.0, 0.99999))->capture_default_str();
    app.add_option("--seed", t.seed, "Seed of the init, the crops and any random draws")->capture_default_str();
    app.add_option("--val-every", t.val_every, "Steps between validations (0: none)")->capture_default_str();
    app.add_option("--val-chunks", t.val_chunks, "Fixed 5.12 s validation chunks")->capture_default_str();
    app.add_option("--checkpoint-every", t.checkpoint_every, "Steps between checkpoints")->capture_default_str();
    app.add_option("--checkpoint-minutes", t.checkpoint_minutes, "Also checkpoint after this much wall time")->capture_default_str();
    app.add_option("--keep-snapshots", t.keep_snapshots, "Model snapshots kept (snap_STEP.safetensors at validations)")
        ->capture_default_str();
    app.add_option("--device", t.device, "cpu, or cuda with a CUDA build of LibTorch")
        ->check(CLI::IsMember({"cpu", "cuda"}))->capture_default_str();
    app.add_option("--cache-dir", cli.cache_dir, "Where dataset roots are indexed")->capture_default_str();
}

// What a generator's training command does once its flags are parsed: a fresh run (its data indexed) or a resumed
// one (its options.json, with the resumable flags given anew), then the training under a progress bar.
template <class O>
struct GeneratorCommand {
    O (*read)(const std::string& run_dir);
    void (*apply)(const O& given, O& run, const std::function<bool(const std::string&)>& was_given);
    std::vector<std::string> (*fixed)();
    void (*train)(O, bool, const train::RowCallback&, const std::function<bool()>&);
    std::string label, metric, val_metric;
    std::string unit = " dB";  // of metric and val_metric in the progress bar

    int run(CLI::App& app, const O& given, const GeneratorCli& cli, const std::function<void(O&)>& fresh = {}) const {
        O t = given;
        const bool resume = !cli.resume.empty();
        if (resume) {
            t = read(cli.resume);
            apply(given, t, [&](const std::string& f) { return app.count(f) > 0; });
            for (const auto& flag : fixed())
                if (app.count(flag)) std::cerr << "note: " << flag << " is ignored with --resume (the run keeps its options.json)\n";
        } else {
            if (cli.data.empty()) throw Error("--data is required (dataset roots or caches)");
            if (t.run_dir.empty()) throw Error("-o/--out RUN_DIR is required");
            if (fresh) fresh(t);
            t.caches = index_sources(cli.data, cli.cache_dir);
        }
        return run_generator_training(label, t.steps, t.run_dir, metric, val_metric, unit,
                                      [&](const train::RowCallback& row, const std::function<bool()>& stop) {
                                          train(t, resume, row, stop);
                                      });
    }
};

}  // namespace cocola::cli
