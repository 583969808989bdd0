// Charts of training logs as self-contained SVG (no plotting dependency): panels side by side, each a set of
// (step, value) series. Every text that reaches the file is escaped (labels are user input: run folders).
#include <algorithm>
#include <cmath>
#include <sstream>

#include "cocola/fsutil.hpp"
#include "cocola/train_core.hpp"

namespace cocola::train {

std::string svg_escape(const std::string& text) {
    std::string out;
    for (char c : text) switch (c) {
            case '&': out += "&amp;"; break;
            case '<': out += "&lt;"; break;
            case '>': out += "&gt;"; break;
            case '"': out += "&quot;"; break;
            case '\'': out += "&apos;"; break;
            default: out += c;
        }
    return out;
}

std::vector<std::pair<double, double>> smooth(const std::vector<std::pair<double, double>>& p, size_t window) {
    window = std::max<size_t>(1, window);
    std::vector<std::pair<double, double>> out;
    double sum = 0;
    for (size_t i = 0; i < p.size(); ++i) {
        sum += p[i].second;
        if (i >= window) sum -= p[i - window].second;
        out.push_back({p[i].first, sum / static_cast<double>(std::min(i + 1, window))});
    }
    return out;
}

namespace {

void panel(std::ostringstream& svg, double x0, double y0, double w, double h, const CurvePanel& pn) {
    double xmax = 1, ymin = pn.ymin, ymax = pn.ymax;
    auto tr = [&](double v) { return pn.log_y ? std::log10(v) : v; };
    const bool auto_y = ymax < ymin;
    if (auto_y) {
        ymin = 1e300;
        ymax = -1e300;
    }
    for (const auto& s : pn.series)
        for (const auto& p : s.points) {
            xmax = std::max(xmax, p.first);
            if (auto_y && std::isfinite(p.second) && (!pn.log_y || p.second > 0)) {
                ymin = std::min(ymin, tr(p.second));
                ymax = std::max(ymax, tr(p.second));
            }
        }
    if (auto_y && ymin > ymax) ymin = 0, ymax = 1;
    if (!auto_y && pn.log_y) ymin = tr(std::max(ymin, 1e-12)), ymax = tr(std::max(ymax, 1e-12));
    if (ymax <= ymin) ymax = ymin + 1;
    auto X = [&](double v) { return x0 + 50 + (w - 60) * v / xmax; };
    auto Y = [&](double v) { return y0 + h - 30 - (h - 60) * (v - ymin) / (ymax - ymin); };
    svg << "<text x='" << x0 + w / 2 << "' y='" << y0 + 18 << "' text-anchor='middle' font-size='14'>"
        << svg_escape(pn.title) << "</text>\n";
    svg << "<rect x='" << X(0) << "' y='" << Y(ymax) << "' width='" << X(xmax) - X(0) << "' height='" << Y(ymin) - Y(ymax)
        << "' fill='none' stroke='#888'/>\n";
    for (int i = 0; i <= 4; ++i) {
        const double v = ymin + (ymax - ymin) * i / 4;
        const double shown = pn.log_y ? std::pow(10.0, v) : v;
        std::ostringstream label;
        if (pn.log_y) label.precision(3), label << shown;
        else label << std::round(shown * 100) / 100;
        svg << "<text x='" << X(0) - 4 << "' y='" << Y(v) + 4 << "' text-anchor='end' font-size='10'>" << label.str()
            << "</text><line x1='" << X(0) << "' x2='" << X(xmax) << "' y1='" << Y(v) << "' y2='" << Y(v)
            << "' stroke='#eee'/>\n";
    }
    svg << "<text x='" << X(xmax) << "' y='" << Y(ymin) + 14 << "' text-anchor='end' font-size='10'>step " << xmax << "</text>\n";
    int legend = 0;
    for (const auto& s : pn.series) {
        if (s.points.empty()) continue;
        svg << "<polyline fill='none' stroke='" << svg_escape(s.color) << "' stroke-width='1.5'"
            << (s.dashed ? " stroke-dasharray='4 3'" : "") << " points='";
        for (const auto& p : s.points) {
            if (!std::isfinite(p.second) || (pn.log_y && p.second <= 0)) continue;
            svg << X(p.first) << "," << Y(std::min(ymax, std::max(ymin, tr(p.second)))) << " ";
        }
        svg << "'/>\n";
        svg << "<text x='" << X(0) + 8 << "' y='" << Y(ymax) + 14 + 14 * legend++ << "' font-size='11' fill='"
            << svg_escape(s.color) << "'>" << svg_escape(s.label) << "</text>\n";
    }
}

}  // namespace

void write_panels_svg(const std::vector<CurvePanel>& panels, const std::string& out_path, const std::string& title) {
    const double pw = 450, ph = 340, top = title.empty() ? 0 : 16;
    const double width = pw * static_cast<double>(std::max<size_t>(1, panels.size())), height = ph + top;
    std::ostringstream svg;
    svg << "<svg xmlns='http://www.w3.org/2000/svg' width='" << width << "' height='" << height
        << "' font-family='sans-serif'>\n<rect width='" << width << "' height='" << height << "' fill='white'/>\n";
    if (!title.empty())
        svg << "<text x='" << width / 2 << "' y='14' text-anchor='middle' font-size='13'>" << svg_escape(title) << "</text>\n";
    for (size_t i = 0; i < panels.size(); ++i) panel(svg, pw * static_cast<double>(i), top, pw, ph, panels[i]);
    svg << "</svg>\n";
    fsutil::write_file_atomically(out_path, svg.str());
}

}  // namespace cocola::train
