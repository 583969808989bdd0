// The contrastive run's charts (loss and accuracy, training smoothed and validation), from its log.csv by
// column name, drawn by the core's SVG writer.
#include <algorithm>

#include "cocola/train.hpp"
#include "cocola/train_core.hpp"

namespace cocola::train {
namespace {

double top_of(const std::vector<std::pair<double, double>>& p, double at_least) {
    for (const auto& x : p) at_least = std::max(at_least, x.second);
    return at_least;
}

}  // namespace

void write_curves_svg(const std::string& run_dir) {
    const std::string log = run_dir + "/log.csv";
    const auto loss = read_log_column(log, "loss"), acc = read_log_column(log, "accuracy");
    const auto vloss = read_log_column(log, "val_loss"), vacc = read_log_column(log, "val_accuracy");
    const auto vk2 = read_log_column(log, "val_k2_accuracy");
    const size_t win = std::max<size_t>(1, loss.size() / 50);
    const double lmax = top_of(vloss, top_of(loss, 0.1));
    write_panels_svg({{"contrastive loss",
                       {{"training (moving average)", "#1f77b4", smooth(loss, win)}, {"validation", "#d62728", vloss, true}},
                       0,
                       lmax},
                      {"accuracy (row argmax = own pair)",
                       {{"training (moving average)", "#1f77b4", smooth(acc, win)},
                        {"validation", "#d62728", vacc, true},
                        {"validation, K = 2 (cocola eval)", "#2ca02c", vk2, true}},
                       0,
                       1}},
                     run_dir + "/curves.svg");
}

void write_comparison_svg(const std::vector<std::string>& run_dirs, const std::vector<std::string>& labels,
                          const std::string& out_path, const std::string& title) {
    static const char* colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"};
    CurvePanel acc{"training accuracy (moving average)", {}, 0, 1}, loss{"training loss (moving average)", {}, 0, 0.1};
    for (size_t i = 0; i < run_dirs.size(); ++i) {
        const std::string log = run_dirs[i] + "/log.csv";
        const auto l = read_log_column(log, "loss");
        const size_t win = std::max<size_t>(1, l.size() / 30);
        const std::string label = i < labels.size() ? labels[i] : run_dirs[i];
        const std::string color = colors[i % 6];
        acc.series.push_back({label, color, smooth(read_log_column(log, "accuracy"), win)});
        loss.series.push_back({label, color, smooth(l, win)});
        loss.ymax = top_of(loss.series.back().points, loss.ymax);
    }
    write_panels_svg({acc, loss}, out_path, title);
}

}  // namespace cocola::train
