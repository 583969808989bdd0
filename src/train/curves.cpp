// Training curves as a self-contained SVG (no plotting dependency): loss and accuracy against steps, training
// (smoothed) and validation.
#include <cmath>
#include <fstream>
#include <sstream>
#include <vector>

#include "cocola/error.hpp"
#include "cocola/fsutil.hpp"
#include "cocola/train.hpp"

namespace cocola::train {
namespace {

struct Series {
    std::string label, color;
    std::vector<std::pair<double, double>> pts;
    bool dashed = false;
};

std::vector<std::pair<double, double>> smooth(const std::vector<std::pair<double, double>>& p, size_t window) {
    std::vector<std::pair<double, double>> out;
    double sum = 0;
    for (size_t i = 0; i < p.size(); ++i) {
        sum += p[i].second;
        if (i >= window) sum -= p[i - window].second;
        out.push_back({p[i].first, sum / static_cast<double>(std::min(i + 1, window))});
    }
    return out;
}

void panel(std::ostringstream& svg, double x0, double y0, double w, double h, const std::string& title,
           const std::vector<Series>& series, double ymin, double ymax) {
    double xmax = 1;
    for (const auto& s : series)
        for (const auto& p : s.pts) xmax = std::max(xmax, p.first);
    if (ymax <= ymin) ymax = ymin + 1;
    auto X = [&](double v) { return x0 + 50 + (w - 60) * v / xmax; };
    auto Y = [&](double v) { return y0 + h - 30 - (h - 60) * (v - ymin) / (ymax - ymin); };
    svg << "<text x='" << x0 + w / 2 << "' y='" << y0 + 18 << "' text-anchor='middle' font-size='14'>" << title << "</text>\n";
    svg << "<rect x='" << X(0) << "' y='" << Y(ymax) << "' width='" << X(xmax) - X(0) << "' height='" << Y(ymin) - Y(ymax)
        << "' fill='none' stroke='#888'/>\n";
    for (int i = 0; i <= 4; ++i) {
        const double v = ymin + (ymax - ymin) * i / 4;
        svg << "<text x='" << X(0) - 4 << "' y='" << Y(v) + 4 << "' text-anchor='end' font-size='10'>" << std::round(v * 100) / 100
            << "</text><line x1='" << X(0) << "' x2='" << X(xmax) << "' y1='" << Y(v) << "' y2='" << Y(v)
            << "' stroke='#eee'/>\n";
    }
    svg << "<text x='" << X(xmax) << "' y='" << Y(ymin) + 14 << "' text-anchor='end' font-size='10'>step " << xmax << "</text>\n";
    int legend = 0;
    for (const auto& s : series) {
        if (s.pts.empty()) continue;
        svg << "<polyline fill='none' stroke='" << s.color << "' stroke-width='1.5'"
            << (s.dashed ? " stroke-dasharray='4 3'" : "") << " points='";
        for (const auto& p : s.pts) svg << X(p.first) << "," << Y(std::min(ymax, std::max(ymin, p.second))) << " ";
        svg << "'/>\n";
        svg << "<text x='" << X(0) + 8 << "' y='" << Y(ymax) + 14 + 14 * legend++ << "' font-size='11' fill='" << s.color
            << "'>" << s.label << "</text>\n";
    }
}

struct RunLog {
    std::vector<std::pair<double, double>> loss, acc, vloss, vacc, vk2;  // vk2: K = 2 validation (newer logs)
};

RunLog read_log(const std::string& run_dir) {
    std::ifstream in(run_dir + "/log.csv");
    if (!in) throw Error(run_dir + "/log.csv: cannot open (not a training run?)");
    std::string line;
    std::getline(in, line);
    RunLog r;
    auto& [loss, acc, vloss, vacc, vk2] = r;
    while (std::getline(in, line)) {
        std::vector<std::string> f;
        std::stringstream ss(line);
        std::string x;
        while (std::getline(ss, x, ',')) f.push_back(x);
        if (f.size() < 6) continue;
        const double step = std::stod(f[0]);
        loss.push_back({step, std::stod(f[2])});
        acc.push_back({step, std::stod(f[3])});
        if (!f[4].empty()) {
            vloss.push_back({step, std::stod(f[4])});
            vacc.push_back({step, std::stod(f[5])});
        }
        if (f.size() > 8 && !f[8].empty()) vk2.push_back({step, std::stod(f[8])});
    }
    return r;
}

}  // namespace

void write_curves_svg(const std::string& run_dir) {
    const auto [loss, acc, vloss, vacc, vk2] = read_log(run_dir);
    const size_t win = std::max<size_t>(1, loss.size() / 50);
    double lmax = 0.1;
    for (const auto& p : loss) lmax = std::max(lmax, p.second);
    for (const auto& p : vloss) lmax = std::max(lmax, p.second);
    std::ostringstream svg;
    svg << "<svg xmlns='http://www.w3.org/2000/svg' width='900' height='340' font-family='sans-serif'>\n"
        << "<rect width='900' height='340' fill='white'/>\n";
    panel(svg, 0, 0, 450, 340, "contrastive loss",
          {{"training (moving average)", "#1f77b4", smooth(loss, win)}, {"validation", "#d62728", vloss, true}}, 0, lmax);
    panel(svg, 450, 0, 450, 340, "accuracy (row argmax = own pair)",
          {{"training (moving average)", "#1f77b4", smooth(acc, win)},
           {"validation", "#d62728", vacc, true},
           {"validation, K = 2 (cocola eval)", "#2ca02c", vk2, true}},
          0, 1);
    svg << "</svg>\n";
    fsutil::write_file_atomically(run_dir + "/curves.svg", svg.str());
}

void write_comparison_svg(const std::vector<std::string>& run_dirs, const std::vector<std::string>& labels,
                          const std::string& out_path, const std::string& title) {
    static const char* colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"};
    std::vector<Series> acc, loss;
    double lmax = 0.1;
    for (size_t i = 0; i < run_dirs.size(); ++i) {
        const auto r = read_log(run_dirs[i]);
        const size_t win = std::max<size_t>(1, r.loss.size() / 30);
        const std::string label = i < labels.size() ? labels[i] : run_dirs[i];
        const std::string color = colors[i % 6];
        acc.push_back({label, color, smooth(r.acc, win)});
        loss.push_back({label, color, smooth(r.loss, win)});
        for (const auto& p : loss.back().pts) lmax = std::max(lmax, p.second);
    }
    std::ostringstream svg;
    svg << "<svg xmlns='http://www.w3.org/2000/svg' width='900' height='360' font-family='sans-serif'>\n"
        << "<rect width='900' height='360' fill='white'/>\n"
        << "<text x='450' y='14' text-anchor='middle' font-size='13'>" << title << "</text>\n";
    std::ostringstream body;
    panel(body, 0, 16, 450, 340, "training accuracy (moving average)", acc, 0, 1);
    panel(body, 450, 16, 450, 340, "training loss (moving average)", loss, 0, lmax);
    svg << body.str() << "</svg>\n";
    fsutil::write_file_atomically(out_path, svg.str());
}

}  // namespace cocola::train
