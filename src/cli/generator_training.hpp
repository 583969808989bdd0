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

#include "cli/progress.hpp"
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

}  // namespace cocola::cli
